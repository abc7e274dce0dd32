"""Proof time of the convolution, pooling, attention and recurrent layers, against `import sympy` in the same run.

    python benchmarks/bench_spatial_proof.py [--repeat N]

The issue's target: a conv layer of 2 channels, 6×6 input, 3×3 kernel, every partial proven
in under 30 s. Each row runs `python -m derive prove SPEC --json` in a fresh process (start-up
and the SymPy import included) and reads the proof's own time from its report: every ∂C/∂x of
the layer's input and every ∂C/∂parameter, the chain rule over the scalar graph = the textbook
form = sympy.diff of the composed layer, each compared exactly. The reference is a bare
`python -c "import sympy"`, so the ratio is the stable figure and the seconds depend on the
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _measure import wall  # noqa: E402

CONV = """name = "conv_2x6x6"
inputs = [2, 6, 6]
cost = "quadratic"
convention = "column"
batch = "single"
notation = "nielsen"
[[layers]]
kind = "conv2d"
out_channels = 2
kernel_size = 3
activation = "sigmoid"
[[layers]]
kind = "flatten"
"""
CONV_BATCH = CONV.replace('batch = "single"', 'batch = "mean"\nexamples = 2').replace("conv_2x6x6", "conv_2x6x6_b2")


def prove(path: str) -> tuple[float, float, int, int]:
    """(wall seconds of the command, the proof's own seconds, partials proven, partials) of one fresh run."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "derive", "prove", path, "--json"], capture_output=True, text=True,
                         cwd=ROOT)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"{path}: exit {run.returncode}: {run.stderr.strip()}")
    report = json.loads(run.stdout)
    rows = [r for r in report["per_layer"] if r["form"] != "oracle"]
    proven = sum(r["input"][0] + r["partials"][0] for r in rows)
    total = sum(r["input"][1] + r["partials"][1] for r in rows)
    return seconds, report["seconds"]["total"], proven, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sympy_only = wall([sys.executable, "-c", "import sympy"], repeat=5)
    with tempfile.TemporaryDirectory() as tmp:
        specs = []
        for text in (CONV, CONV_BATCH):
            path = Path(tmp) / (text.split('"')[1] + ".toml")
            path.write_text(text)
            specs.append((path.stem.replace("_", " "), str(path)))
        specs += [(f"examples/specs/{name}.toml", f"examples/specs/{name}.toml") for name in ("cnn", "attention", "rnn")]
        print("| spec | entries proven (∂C/∂x and ∂C/∂θ, each 3 ways) | proof (median) | command wall (median) "
              "| ratio to `import sympy` |")
        print("|---|---|---|---|---|")
        for label, path in specs:
            runs = [prove(path) for _ in range(args.repeat)]
            command = statistics.median(r[0] for r in runs)
            own = statistics.median(r[1] for r in runs)
            proven, total = runs[0][2], runs[0][3]
            print(f"| {label} | {proven}/{total} | {own:.2f} s | {command:.2f} s | {command / sympy_only:.2f}× |")
    print(f"| `python -c 'import sympy'` | | | {sympy_only:.2f} s | 1.00× |")


if __name__ == "__main__":
    main()
