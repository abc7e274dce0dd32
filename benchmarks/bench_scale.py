"""Scale: every partial of Nielsen's 784-30-10, and how proof cost grows.

    python benchmarks/bench_scale.py            # nielsen + the scaling table and plot
    python benchmarks/bench_scale.py --nielsen  # only 784-30-10

1. `python -m derive prove nielsen` (784-30-10, 23,860 partials, every one exact,
   the sampled oracle included): target at most 60 s and 4 GB on a 2-core machine.
2. Proof time and peak memory for widths 2..128 at depth 2 and 3, and depth 2..6 at
   width 8, in each mode: "full" (every path listed and sympy.diff on every partial)
   and "scalable" (reverse accumulation, sampled oracle). Each run is a fresh
   process; a series stops, in each mode, once a size takes longer than BUDGET
   seconds, and a run is stopped at twice that (the oracle's composed expression
   grows with the product of the widths it crosses). The growth exponent k in
   time ~ params^k is fitted by least squares on log-log. Writes
   benchmarks/scaling.md and benchmarks/scaling.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import tempfile

from _measure import ROOT, run_module

BUDGET = 120.0  # seconds: once a size takes longer, the larger ones of that series and mode are skipped
WIDTHS = [2, 4, 8, 16, 32, 64, 128]
DEPTHS = [2, 3, 4, 5, 6]


def n_params(sizes):
    return sum((sizes[i - 1] + 1) * sizes[i] for i in range(1, len(sizes)))


def spec_file(folder: str, sizes) -> str:
    path = os.path.join(folder, "s_" + "_".join(map(str, sizes)) + ".toml")
    with open(path, "w") as fh:
        fh.write(f'name = "scaling"\nsizes = {list(sizes)}\nactivation = "sigmoid"\ncost = "quadratic"\n'
                 'convention = "row"\nbias = "augmented"\nbatch = "single"\nnotation = "net222"\n')
    return path


def measure(sizes, mode: str, folder: str, over_budget: bool) -> dict | None:
    if over_budget:
        return None
    args = ["prove", spec_file(folder, sizes), "--mode", mode, "--brief" if mode == "full" else "--json"]
    try:
        stats = run_module("derive", args, timeout=2 * BUDGET)
    except subprocess.TimeoutExpired:
        return {"timeout": True, "wall": 2 * BUDGET}
    assert stats["rc"] == 0, stats
    if mode == "scalable":
        stats["oracle"] = json.loads(stats["stdout"])["seconds"]["oracle sample"]
    return stats


def fit(points):
    """Least-squares slope of log(time) against log(params)."""
    xs = [math.log(p) for p, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def nielsen() -> None:
    stats = run_module("derive", ["prove", "nielsen"])
    last = stats["stdout"].strip().splitlines()[-1]
    print(f"`python -m derive prove nielsen`: {stats['wall']:.1f} s wall, peak {stats['peak_mb']:.0f} MB, exit {stats['rc']}")
    print(f"  {last}")
    print(f"  targets: ≤ 60 s {'met' if stats['wall'] <= 60 else 'NOT met'}, ≤ 4 GB {'met' if stats['peak_mb'] <= 4096 else 'NOT met'}")
    stats = run_module("derive", ["prove", "nielsen", "--jobs", "2"])
    print(f"`python -m derive prove nielsen --jobs 2`: {stats['wall']:.1f} s wall, peak {stats['peak_mb']:.0f} MB (parent)")


def scaling() -> None:
    rows = []
    grids = [("depth 2", [(w, w, w) for w in WIDTHS]), ("depth 3", [(w, w, w, w) for w in WIDTHS]),
             ("width 8", [(8,) * (d + 1) for d in DEPTHS])]
    with tempfile.TemporaryDirectory() as folder:
        for label, grid in grids:
            slow = {"full": False, "scalable": False}
            for sizes in grid:
                for mode in ("full", "scalable"):
                    st = measure(sizes, mode, folder, slow[mode])
                    slow[mode] = slow[mode] or (st is not None and st["wall"] > BUDGET)
                    rows.append((label, sizes, mode, st))
                    shown = "skipped" if st is None else (f"over {st['wall']:.0f} s, stopped" if st.get("timeout")
                                                          else f"{st['wall']:.2f} s, {st['peak_mb']:.0f} MB")
                    if st is not None and "oracle" in st:
                        shown += f" (sampled oracle {st['oracle']:.2f} s)"
                    print(f"{label:8} {'-'.join(map(str, sizes)):>20} {n_params(sizes):>7} {mode:9} {shown}", flush=True)
    lines = ["| series | sizes | parameters | full: time | full: peak MB | scalable: time | of which sampled oracle | scalable: peak MB |",
             "|---|---|---|---|---|---|---|---|"]
    fits = {}
    for label, grid in grids:
        for sizes in grid:
            cell = {m: st for (lb, sz, m, st) in rows if lb == label and sz == sizes}
            f, s = cell["full"], cell["scalable"]
            lines.append(f"| {label} | {'-'.join(map(str, sizes))} | {n_params(sizes)} | "
                         + (f"> {f['wall']:.0f} s (stopped) | —" if f and f.get("timeout") else
                            f"{f['wall']:.2f} s | {f['peak_mb']:.0f}" if f else "— | —")
                         + (f" | > {s['wall']:.0f} s (stopped) | — | — |" if s and s.get("timeout") else
                            f" | {s['wall']:.2f} s | {s['oracle']:.2f} s | {s['peak_mb']:.0f} |" if s else " | — | — | — |"))
        for mode in ("full", "scalable"):
            pts = [(n_params(sz), st["wall"]) for (lb, sz, m, st) in rows
                   if lb == label and m == mode and st and not st.get("timeout")]
            if len(pts) >= 3:
                fits[(label, mode)] = fit(pts[1:])  # the smallest is all start-up
        own = [(n_params(sz), st["wall"] - st["oracle"]) for (lb, sz, m, st) in rows
               if lb == label and m == "scalable" and st and not st.get("timeout")]
        if len(own) >= 3:
            fits[(label, "scalable without the sampled oracle")] = fit(own[1:])
    lines.append("")
    lines.append("Fitted growth exponent k (time ∝ parameters^k, the smallest size left out as it is all start-up):")
    lines.append("")
    for (label, mode), k in fits.items():
        lines.append(f"- {label}, {mode}: k = {k:.2f}")
    table = "\n".join(lines)
    print(table)
    with open(os.path.join(ROOT, "benchmarks", "scaling.md"), "w") as fh:
        fh.write(table + "\n")
    plot(rows, os.path.join(ROOT, "benchmarks", "scaling.png"))


def plot(rows, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in ("depth 2", "depth 3", "width 8"):
        for mode, style in (("full", "o--"), ("scalable", "s-")):
            pts = [(n_params(sz), st["wall"]) for (lb, sz, m, st) in rows
                   if lb == label and m == mode and st and not st.get("timeout")]
            if pts:
                ax.loglog(*zip(*pts), style, label=f"{label}, {mode}")
        own = [(n_params(sz), st["wall"] - st["oracle"]) for (lb, sz, m, st) in rows
               if lb == label and m == "scalable" and st and not st.get("timeout")]
        if own:
            ax.loglog(*zip(*own), "^:", label=f"{label}, scalable without the sampled oracle")
    ax.set_xlabel("parameters")
    ax.set_ylabel("proof time, s (fresh process)")
    ax.set_title("Proof cost against network size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--nielsen", action="store_true", help="only 784-30-10")
    args = parser.parse_args()
    nielsen()
    if not args.nielsen:
        scaling()
