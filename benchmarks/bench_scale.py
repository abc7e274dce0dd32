"""Scale: every partial proven and cross-checked by the oracle, and how the whole proof's cost grows.

    python benchmarks/bench_scale.py              # the targets, the scaling table and plot
    python benchmarks/bench_scale.py --targets    # only the targets
    python benchmarks/bench_scale.py --scaling    # only the table and plot

1. Targets, each `python -m derive prove ...` in a fresh process (the scalable mode: every
   partial proven exactly against the matrix forms and cross-checked by the oracle on
   every partial), on this 2-core machine:
   - `prove nielsen` (784-30-10, 23,860 partials): at most 60 s and 4 GB;
   - width 8, depth 6 (8-8-8-8-8-8-8): at most 10 s; 64-64-64-64: at most 60 s;
   - `prove nielsen --sizes 784-256-256-10 --jobs 2` (269,322 partials): at most 120 s and 8 GB
     (the peak of the parent and of its largest worker, added: an upper bound, since the
     forked workers share the parent's pages until they write them).
2. Scaling: the whole proof's time (`prove_scalable` of a spec file in a fresh process, spec to
   report: its CPU time, steady on a loaded machine, and its wall time; the process's wall time
   with Python's start-up beside them) and peak memory for
   widths at depth 2 and 3 and depths at width 8 and 32, in the scalable mode, and the full
   mode (every path listed, sympy.diff on every partial) while it takes less than FULL_BUDGET.
   The growth exponent k in time ~ parameters^k is fitted by least squares on log-log over
   the sizes past the first (all set-up); targets: k <= 1.1 at fixed depth, <= 1.2 in depth
   at fixed width (parameters grow linearly with depth there). Writes benchmarks/scaling.md
   and benchmarks/scaling.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FULL_BUDGET = 20.0  # seconds: once the full mode takes longer, its larger sizes in that series are skipped
SERIES = [
    ("depth 2", [(w, w, w) for w in (16, 32, 64, 128, 256)]),
    ("depth 3", [(w, w, w, w) for w in (16, 32, 64, 128)]),
    ("width 8", [(8,) * (d + 1) for d in (2, 4, 8, 16)]),
    ("width 32", [(32,) * (d + 1) for d in (2, 4, 8, 12)]),
]
CHILD = r"""
import json, os, resource, runpy, sys, time
sys.argv = ARGV
load = os.getloadavg()[0]
try:
    runpy.run_module("derive", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": code, "peak_mb": me.ru_maxrss / 1024, "children_mb": kids.ru_maxrss / 1024,
                  "cpu": me.ru_utime + me.ru_stime, "children_cpu": kids.ru_utime + kids.ru_stime,
                  "load": max(load, os.getloadavg()[0])}), file=sys.stderr)
"""


API = r"""
import json, os, resource, sys, time
from derive.proofs.scalable import prove_scalable
from derive.spec import load_spec
load = os.getloadavg()[0]
data = prove_scalable(load_spec(PATH)).to_json()
print(json.dumps(data))
me = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rc": 0, "peak_mb": me.ru_maxrss / 1024, "children_mb": 0.0, "cpu": me.ru_utime + me.ru_stime,
                  "children_cpu": 0.0, "load": max(load, os.getloadavg()[0])}), file=sys.stderr)
"""


def n_params(sizes) -> int:
    return sum((sizes[i - 1] + 1) * sizes[i] for i in range(1, len(sizes)))


def spec_file(folder: str, sizes) -> str:
    path = os.path.join(folder, "s_" + "_".join(map(str, sizes)) + ".toml")
    with open(path, "w") as fh:
        fh.write(f'name = "scaling"\nsizes = {list(sizes)}\nactivation = "sigmoid"\ncost = "quadratic"\n'
                 'convention = "row"\nbias = "augmented"\nbatch = "single"\nnotation = "net222"\n')
    return path


def prove(args: list[str], timeout: float = 900, api: bool = False) -> dict:
    """`python -m derive prove ARGS --json` in a fresh process: wall time, peak memory, and the JSON it printed.

    api: prove_scalable(spec file) instead, for the scaling series (the command line first estimates the run's
    cost, and refuses what it estimates beyond this machine).
    """
    code = (API.replace("PATH", repr(args[0])) if api else
            CHILD.replace("ARGV", repr(["derive", "prove", *args, "--json", "--max-seconds", "100000"])))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t
    try:
        stats = json.loads(r.stderr.strip().splitlines()[-1])
        data = json.loads(r.stdout)
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"`python -m derive prove {' '.join(args)}` failed (exit {r.returncode}):\n{r.stderr[-2000:]}")
    seconds = data["seconds"]
    return {**stats, "wall": wall, "data": data, "total": seconds["total"], "proof_cpu": seconds.get("CPU of this process")}


def targets() -> list[str]:
    lines = ["| target | command | measured | goal |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as folder:
        runs = [
            ("784-30-10, 23,860 partials", ["nielsen"], 60, 4096),
            ("width 8, depth 6", [spec_file(folder, (8,) * 7)], 10, None),
            ("64-64-64-64", [spec_file(folder, (64,) * 4)], 60, None),
            ("784-256-256-10, 269,322 partials, 2 processes", ["nielsen", "--sizes", "784-256-256-10", "--jobs", "2"],
             120, 8192),
        ]
        for what, args, seconds, mb in runs:
            shown = "python -m derive prove " + " ".join(os.path.basename(a) if a.startswith(folder) else a for a in args)
            st = prove(args)
            d = st["data"]
            peak = st["peak_mb"] + (st["children_mb"] if "--jobs" in args else 0)
            oracle = d["oracle"]
            assert d["proven"] and oracle["checked"] == d["n_params"] == oracle["agree"], d["summary"]
            met = st["wall"] <= seconds and (mb is None or peak <= mb)
            phases = ", ".join(f"{k} {v:.1f} s" for k, v in d["seconds"].items() if k != "total")
            cpu = st["cpu"] + st["children_cpu"]
            lines.append(f"| {what} | `{shown}` | {st['wall']:.1f} s wall ({phases}); {cpu:.1f} s CPU"
                         + (f" (workers {st['children_cpu']:.1f} s)" if "--jobs" in args else "")
                         + f"; load average {st['load']:.1f} on 2 cores; peak {peak:.0f} MB; "
                         f"every partial cross-checked, error ≤ {oracle['bound_power_of_two']} | "
                         f"≤ {seconds} s" + (f", ≤ {mb // 1024} GB" if mb else "") + f": {'met' if met else 'NOT met'} |")
            print(lines[-1], flush=True)
    return lines


def fit(points) -> float:
    """Least-squares slope of log(time) against log(parameters)."""
    xs = [math.log(p) for p, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def scaling() -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for label, grid in SERIES:
            full_slow = False
            for sizes in grid:
                path = spec_file(folder, sizes)
                scal = prove([path], api=True)
                full = None
                if not full_slow:
                    try:
                        full = prove([path, "--mode", "full"], timeout=2 * FULL_BUDGET)
                        full_slow = full["total"] > FULL_BUDGET
                    except (subprocess.TimeoutExpired, SystemExit):  # stopped, or refused from its estimate
                        full, full_slow = {"timeout": True}, True
                rows.append((label, sizes, scal, full))
                print(f"{label:8} {'-'.join(map(str, sizes)):>22} {n_params(sizes):>7}  scalable {scal['proof_cpu']:.2f} s CPU, {scal['total']:.2f} s "
                      f"({scal['wall']:.1f} s wall, {scal['peak_mb']:.0f} MB)  full "
                      + ("—" if full is None else "stopped" if full.get("timeout") else f"{full['total']:.2f} s"), flush=True)
    lines = ["| series | sizes | parameters | scalable: proof, CPU | proof, wall | of which oracle (wall) | command wall | "
             "load | peak MB | full mode: proof, wall |", "|---|---|---|---|---|---|---|---|---|---|"]
    fits = {}
    for label, grid in SERIES:
        mine = [r for r in rows if r[0] == label]
        for _, sizes, s, f in mine:
            oracle = s["data"]["seconds"].get("oracle (every partial)", 0.0)
            lines.append(f"| {label} | {'-'.join(map(str, sizes))} | {n_params(sizes)} | {s['proof_cpu']:.2f} s | "
                         f"{s['total']:.2f} s | {oracle:.2f} s | {s['wall']:.1f} s | {s['load']:.1f} | {s['peak_mb']:.0f} | "
                         + ("—" if f is None else f"> {2 * FULL_BUDGET:.0f} s (stopped)" if f.get("timeout") else f"{f['total']:.2f} s")
                         + " |")
        fits[label] = (fit([(n_params(sz), s["proof_cpu"]) for _, sz, s, _ in mine][1:]),
                       fit([(n_params(sz), s["total"]) for _, sz, s, _ in mine][1:]))
    lines += ["", "Fitted growth exponent k of the whole scalable proof (time ∝ parameters^k, least squares on log-log, the "
              "smallest size left out; at fixed width the parameters grow linearly with depth, so k is also the exponent "
              "in depth), on the proof's CPU time (steady however loaded the machine) and on its wall time:", ""]
    for label, (k_cpu, k_wall) in fits.items():
        goal = 1.2 if label.startswith("width") else 1.1
        lines.append(f"- {label}: k = {k_cpu:.2f} on CPU time (target ≤ {goal}: {'met' if k_cpu <= goal else 'NOT met'}); "
                     f"{k_wall:.2f} on wall time")
    plot(rows, os.path.join(ROOT, "benchmarks", "scaling.png"))
    return lines


def plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, _ in SERIES:
        pts = [(n_params(sz), s["proof_cpu"]) for lb, sz, s, _ in rows if lb == label]
        ax.loglog(*zip(*pts), "s-", label=f"{label}, scalable (every partial cross-checked)")
        full = [(n_params(sz), f["total"]) for lb, sz, _, f in rows if lb == label and f and not f.get("timeout")]
        if full:
            ax.loglog(*zip(*full), "o--", alpha=0.6, label=f"{label}, full mode")
    ax.set_xlabel("parameters")
    ax.set_ylabel("proof time, s (CPU; full mode: wall)")
    ax.set_title("Whole-proof cost against network size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--targets", action="store_true", help="only the targets")
    group.add_argument("--scaling", action="store_true", help="only the scaling table and plot")
    args = parser.parse_args()
    out = []
    if not args.scaling:
        out += ["## Targets", ""] + targets() + [""]
    if not args.targets:
        out += ["## How the whole proof grows", ""] + scaling() + [""]
    text = "\n".join(out)
    print(text)
    if not args.targets and not args.scaling:
        with open(os.path.join(ROOT, "benchmarks", "scaling.md"), "w") as fh:
            fh.write(f"Measured by `python benchmarks/bench_scale.py` on a 2-core machine; {time.strftime('%Y-%m-%d')}.\n\n"
                     + text)
