"""The scalable proof on a cluster: per-chunk timings measured here, and the time projected for 8 and 32 workers.

    python benchmarks/bench_cluster.py                         # 784-256-256-10 (269,322 partials): benchmarks/cluster.txt
    python benchmarks/bench_cluster.py --sizes 784-64-64-10 --check-local 2

1. The proof runs once in this process (`prove_scalable(spec, jobs=1)`): every chunk of
   entry comparisons is timed as it runs, with the stage it belongs to (the deltas layer by
   layer from the output, then the gradients and updates: a stage waits for all of its
   chunks), and so are the parts that stay in the asking process (building the
   comparisons, the oracle on every partial, the tally). The projection reads CPU seconds
   (what the work takes on a core of its own, whatever else this shared machine runs); the
   asking process's parts are its CPU seconds split in the proportion of their wall times.
2. A LocalCluster of 2 workers measures what sending a chunk costs: a map of empty chunks.
3. The projection for W workers, each a process on a core of its own: the build (every
   worker builds its own comparisons while the asking process builds its own, so it is
   paid once), then per stage the longest worker's share when the stage's chunks go out
   longest first to the least loaded worker (the scheduler hands a chunk to whichever
   worker is free), each chunk costing its measured time plus the dispatch overhead, then
   the oracle and the tally. This is a projection, not a measurement: it assumes workers
   as fast as this machine's cores and a network as fast as its loopback.
4. --check-local N runs the same proof with --cluster local:N here and prints it beside
   the projection for N (on this 2-core machine the asking process and the workers share
   the cores, so the measurement is an upper bound on what the model says).
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from derive.proofs.engine import Engine  # noqa: E402
from derive.proofs.scalable import prove_scalable  # noqa: E402
from derive.spec import load_spec  # noqa: E402

BUILD = ("network", "chain rule", "matrix forms")


def makespan(seconds: list[float], workers: int) -> float:
    """The longest worker's total when chunks go out longest first, each to the least loaded worker."""
    loads = [0.0] * workers
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def overhead(chunks: int = 200) -> float:
    """Seconds a chunk costs to send, run empty and return on a LocalCluster of 2 workers (per worker slot)."""
    with Engine(cluster="local:2") as engine:
        engine.map(_empty, list(range(20)))  # the workers warm
        t = time.perf_counter()
        engine.map(_empty, list(range(chunks)))
        return (time.perf_counter() - t) * 2 / chunks


def _empty(_state, task):
    return task


def project(proof, cpu: float, workers: int, per_chunk: float) -> dict:
    """The projected seconds on `workers` workers, by part, from the proof's CPU seconds `cpu`."""
    stages = defaultdict(list)
    for t in proof.chunks:
        stages[t.stage].append(t.cpu_seconds + per_chunk)
    secs = proof.seconds
    serial_wall = secs["total"] - secs["comparison"]  # what stays in the asking process
    serial_cpu = cpu - sum(t.cpu_seconds for t in proof.chunks)
    build = sum(secs.get(k, 0.0) for k in BUILD) / serial_wall * serial_cpu
    rest = serial_cpu - build  # the oracle on every partial and the tally
    comparisons = sum(makespan(s, workers) for s in stages.values())
    return {"build": build, "comparisons": comparisons, "rest": rest, "total": build + comparisons + rest}


OUT = Path(__file__).resolve().parent / "cluster.txt"  # what the default run printed (docs/cluster.md quotes it)
LINES: list[str] = []


def say(line: str) -> None:
    print(line, flush=True)
    LINES.append(line)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="784-256-256-10")
    parser.add_argument("--workers", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--check-local", type=int, metavar="N", help="also run --cluster local:N here")
    args = parser.parse_args()
    spec = load_spec("nielsen").with_sizes(tuple(int(s) for s in args.sizes.split("-")))

    load = os.getloadavg()[0]
    t, cpu = time.perf_counter(), time.process_time()
    proof = prove_scalable(spec, jobs=1)
    wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    assert proof.ok, proof.summary()
    chunk_secs = [c.cpu_seconds for c in proof.chunks]
    say(f"nielsen {args.sizes}: {proof.n_params} partials, {len(proof.chunks)} chunks in "
          f"{len(set(c.stage for c in proof.chunks))} stages; one process: {wall:.1f} s wall, {cpu:.1f} s CPU "
          f"(load average {load:.1f} on {os.cpu_count()} cores; wall: "
          f"{', '.join(f'{k} {v:.1f} s' for k, v in proof.seconds.items() if k != 'total' and 'CPU' not in k)})")
    say(f"  per chunk, CPU: median {sorted(chunk_secs)[len(chunk_secs) // 2]:.3f} s, longest {max(chunk_secs):.2f} s, "
          f"sum {sum(chunk_secs):.1f} s; the longest: {max(proof.chunks, key=lambda c: c.cpu_seconds).label.strip(',')}")
    per_chunk = overhead()
    say(f"  dispatch overhead per chunk (LocalCluster of 2, empty chunks): {per_chunk * 1000:.1f} ms")
    say("projection (not a measurement: each worker a core as fast as this machine's, the network as fast as "
          "loopback, every worker building its comparisons while the asking process builds its own):")
    for w in [1, *args.workers]:
        p = project(proof, cpu, w, per_chunk if w > 1 else 0.0)
        say(f"  {w:>3} worker{'s' if w > 1 else ' '}: {p['total']:7.1f} s = build {p['build']:.1f} s + comparisons "
              f"{p['comparisons']:.1f} s + oracle and tally {p['rest']:.1f} s")
    if args.sizes == parser.get_default("sizes"):
        OUT.write_text("\n".join(LINES) + "\n")
    if args.check_local:
        n = args.check_local
        t = time.perf_counter()
        on = prove_scalable(spec, cluster=f"local:{n}")
        measured = time.perf_counter() - t
        p = project(proof, cpu, n, per_chunk)
        print(f"--cluster local:{n} measured here: {measured:.1f} s (the cluster's start included; proof "
              f"{on.seconds['total']:.1f} s), projected {p['total']:.1f} s; {os.cpu_count()} cores shared by "
              f"the asking process and {n} workers; same result: {on.ok == proof.ok and on.per_form == proof.per_form}")


if __name__ == "__main__":
    main()
