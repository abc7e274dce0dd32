"""The general proof (BP1-BP4, symbolic widths): the whole of it, both conventions and the batch form.

Target: `python -m derive general` (16 theorems: column and row convention, one
example and a batch of B, every step checked, the rule spot checks included) in at
most 10 s on a 2-core machine, interpreter start and imports included. The
reference in the same run is the bare `python -c "import sympy"`; the in-process
time of `prove_general()` alone (imports done) is reported beside it.

    python benchmarks/bench_general.py
"""

import statistics
import sys
import time

from _measure import ROOT, run_module, wall

sys.path.insert(0, ROOT)

TARGET = 10.0


def main() -> None:
    cli = [run_module("derive", ["general"]) for _ in range(5)]
    assert all(r["rc"] == 0 for r in cli), "the general proof did not pass"
    cli_wall = statistics.median(r["wall"] for r in cli)
    peak = max(r["peak_mb"] for r in cli)
    sympy_only = wall([sys.executable, "-c", "import sympy"], repeat=5)

    from derive.proofs.general import prove_general

    prove_general()  # warm the caches SymPy builds on first use
    inside = []
    for _ in range(5):
        t = time.perf_counter()
        proof = prove_general()
        inside.append(time.perf_counter() - t)
    assert proof.ok
    steps = len(proof.steps)

    print("| what | median wall time | ratio to `import sympy` |")
    print("|---|---|---|")
    print(f"| `python -m derive general` (16 theorems, {steps} steps; peak {peak:.0f} MB) | {cli_wall:.2f} s | "
          f"{cli_wall / sympy_only:.2f}× |")
    print(f"| `prove_general()` in process (imports done) | {statistics.median(inside):.2f} s | "
          f"{statistics.median(inside) / sympy_only:.2f}× |")
    print(f"| `python -c 'import sympy'` | {sympy_only:.2f} s | 1.00× |")
    print(f"\ntarget ≤ {TARGET:.0f} s: {'met' if cli_wall <= TARGET else 'NOT met'}")
    spatial_rows(sympy_only)


def spatial_rows(sympy_only: float) -> None:
    """Issue 16: conv2d, conv1d and attention (causal or not) at symbolic sizes, each in process, and the command."""
    from derive.proofs.general import prove_layer

    print("\n| spatial layer (symbolic sizes) | theorems | steps | first call | median again (SymPy's caches warm) "
          "| first call / `import sympy` |")
    print("|---|---|---|---|---|---|")
    for key in ("conv2d", "conv1d", "attention", "attention-causal"):
        t = time.perf_counter()
        prove_layer(key)  # the first call in this process: SymPy's caches cold for this layer
        cold = time.perf_counter() - t
        times = []
        for _ in range(3):
            t = time.perf_counter()
            st = prove_layer(key)
            times.append(time.perf_counter() - t)
        assert all(t.ok for t in st.theorems), key
        steps = sum(len(t.steps) for t in st.theorems)
        med = statistics.median(times)
        print(f"| {key} | {len(st.theorems)} | {steps} | {cold:.2f} s | {med:.2f} s | {cold / sympy_only:.2f}× |")
    args = ["general", "--layer", "conv2d", "--layer", "conv1d", "--layer", "attention", "--layer", "attention-causal",
            "--brief"]
    cli = [run_module("derive", args) for _ in range(3)]
    assert all(r["rc"] == 0 for r in cli), "the spatial general proof did not pass"
    cli_wall = statistics.median(r["wall"] for r in cli)
    print(f"| `python -m derive {' '.join(args)}` | 18 | | {cli_wall:.2f} s (wall, imports included) | | "
          f"{cli_wall / sympy_only:.2f}× |")


if __name__ == "__main__":
    main()
