"""Run a command in a fresh process and report its wall time and peak memory (Linux)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = r"""
import json, resource, sys, time, runpy
t = time.perf_counter()
sys.argv = ARGV
try:
    runpy.run_module(MODULE, run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
print(json.dumps({"seconds": time.perf_counter() - t, "rc": code,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), file=sys.stderr)
"""


def run_module(module: str, args: list[str], timeout: float = 900) -> dict:
    """`python -m module args` in a child; wall time includes interpreter start and imports."""
    code = CHILD.replace("ARGV", repr([module, *args])).replace("MODULE", repr(module))
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - t
    lines = r.stderr.strip().splitlines()
    try:
        stats = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = "\n".join(lines[-5:])
        raise SystemExit(f"`python -m {module} {' '.join(args)}` did not finish (exit {r.returncode}):\n{tail}")
    stats["wall"] = wall
    stats["stdout"] = r.stdout
    return stats


def wall(cmd: list[str], repeat: int = 5) -> float:
    """Median wall time of a whole command, start-up included."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return statistics.median(times)
