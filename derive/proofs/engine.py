"""Chunks of work spread over processes: forked on this machine (--jobs) or a Dask cluster (--cluster).

A task function is top-level (picklable by name) and called as fn(state, task). The
state is what every chunk reads (a proof's comparisons, say): forked processes inherit
the caller's, but a cluster's workers share no memory with it, so a `Recipe` says how
to build it there: build(*args), deterministic, once per worker process (cached under
the recipe's key). A worker that dies mid-chunk has its chunks run again by the Dask
scheduler on another worker; the engine asks the scheduler which chunks were on a
dying worker and says so in `notes`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

from derive.errors import DeriveError
from derive.proofs.identity import deep_stack

# Test hook: where this names a file that does not exist yet, the first cluster worker to start a chunk
# creates it and exits at once (a worker killed mid-run, exactly once per file); see docs/cluster.md.
KILL_HOOK = "BACKPROP_DERIVE_KILL_WORKER"
CONNECT_SECONDS = 10  # how long a scheduler's address is tried before it is an error


@dataclass(frozen=True)
class Recipe:
    """How a process gets the state its chunks read: build(*args), cached per process under key.

    `value` is the state itself where the caller has it: run in process and inherited by
    forked processes, never pickled (a cluster's workers build their own).
    """

    build: Callable[..., Any] | None = None
    args: tuple = ()
    key: str = ""
    value: Any = field(default=None, compare=False, repr=False)

    def __reduce__(self):
        return Recipe, (self.build, self.args, self.key)  # without the value: a worker builds it

    @classmethod
    def of(cls, build: Callable[..., Any], *args, value: Any = None) -> Recipe:
        """build(*args), keyed by what it is built from (a worker keeps one state at a time, so a new key rebuilds)."""
        what = pickle.dumps((build.__module__, build.__qualname__, args))
        return cls(build, args, hashlib.sha256(what).hexdigest()[:20], value)


@dataclass(frozen=True)
class Timing:
    """One chunk as it ran: its label, the seconds it took (wall, and CPU: what a core of its own would take on a
    loaded machine), where, the seconds spent building the state first, and which map it was in (a map waits
    for all of its chunks: a stage)."""

    label: str
    seconds: float
    worker: str
    build_seconds: float = 0.0
    stage: int = 0
    cpu_seconds: float = 0.0


_STATES: dict[str, Any] = {}  # per process: recipe key -> state
_LOCK = threading.Lock()  # a Dask worker may run chunks on several threads


def _state(recipe: Recipe) -> tuple[Any, float]:
    """The recipe's state in this process, built on first use; and the seconds building it took here (0 if cached)."""
    if recipe.value is not None:
        return recipe.value, 0.0
    with _LOCK:
        if recipe.key not in _STATES:
            if recipe.build is None:
                _STATES[recipe.key] = None
                return None, 0.0
            t = time.perf_counter()
            _STATES.clear()  # one run's state at a time: a long-lived worker does not keep every run's
            _STATES[recipe.key] = recipe.build(*recipe.args)
            return _STATES[recipe.key], time.perf_counter() - t
        return _STATES[recipe.key], 0.0


def _where() -> str:
    """This process, as a timing names it: the Dask worker's address, else the process id."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _die_if_asked() -> None:
    """The test hook: the first chunk on any worker after KILL_HOOK names a new file kills its worker process."""
    marker = os.environ.get(KILL_HOOK)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os._exit(70)  # no cleanup, no goodbye to the scheduler: as a crash or an OOM kill looks to it


def _chunk(fn: Callable, recipe: Recipe, task, elsewhere: bool = False):
    """fn(state, task) in this process: (its result, seconds, where, seconds building the state).

    `elsewhere`: in a worker or a forked process, which the test hook may end."""
    if elsewhere:
        _die_if_asked()
    result, seconds, built = _deep_chunk(fn, recipe, task)
    return result, seconds, _where(), built  # here: a Dask worker knows itself in its task's thread only


@deep_stack  # a proof's expressions nest once per layer: a worker's thread needs the stack the proof has here
def _deep_chunk(fn: Callable, recipe: Recipe, task):
    state, built = _state(recipe)
    t, cpu = time.perf_counter(), time.process_time()
    result = fn(state, task)
    return result, (time.perf_counter() - t, time.process_time() - cpu), built


@deep_stack
def _prepare(recipe: Recipe) -> float:
    """On a worker: the recipe's state built ahead of its chunks; the seconds it took (0 if it was there)."""
    return _state(recipe)[1]


_FORKED: Recipe | None = None  # in a forked process: the recipe, with its value, inherited from the caller


def _adopt(recipe: Recipe) -> None:
    global _FORKED
    _FORKED = recipe


def _chunk_forked(fn: Callable, task):
    return _chunk(fn, _FORKED, task, True)


def _some(labels, most: int = 3) -> str:
    """The first few labels, and how many more."""
    labels = [label.strip(",") for label in labels]
    more = f" and {len(labels) - most} more" if len(labels) > most else ""
    return "; ".join(labels[:most]) + more


def _suspicious(dask_scheduler, keys: list[str]) -> dict[str, int]:
    """On the scheduler: how many times each task was on a worker that died while holding it."""
    return {k: dask_scheduler.tasks[k].suspicious for k in keys if k in dask_scheduler.tasks}


class Engine:
    """Maps a task function over chunks: in this process (jobs 1), over forked processes, or on a Dask cluster.

    `cluster` is a scheduler's address (tcp://host:8786, or host:port) or local:N, which
    starts a LocalCluster of N worker processes on this machine for the engine's lifetime.
    After each map, `timings` holds every chunk's Timing and `notes` what was redone.
    """

    def __init__(self, jobs: int = 1, cluster: str | None = None):
        self.jobs, self.cluster = jobs, cluster
        self.timings: list[Timing] = []
        self.notes: list[str] = []
        self._client = self._local = None
        self._preparing: list = []
        self._stage = 0  # maps so far
        self._workers = jobs
        if cluster is not None:
            self._client, self._local = connect(cluster)
            self._workers = len(self._client.scheduler_info(n_workers=-1)["workers"])

    @property
    def workers(self) -> int:
        """Processes the chunks run in: jobs, or the cluster's workers when the engine connected."""
        return self._workers

    def describe(self) -> str:
        """'a Dask cluster of 2 workers (local:2)', or '2 processes'."""
        if self._client is None:
            return f"{self.jobs} process{'es' if self.jobs > 1 else ''}"
        n = self.workers
        return f"a Dask cluster of {n} worker{'s' if n != 1 else ''} ({self.cluster})"

    def prepare(self, recipe: Recipe) -> None:
        """On a cluster, have every worker build the recipe's state now, while this process builds its own."""
        if self._client is None or recipe.build is None:
            return
        workers = list(self._client.scheduler_info(n_workers=-1)["workers"])
        self._preparing = [self._client.submit(_prepare, recipe, key=f"derive-prepare-{uuid.uuid4().hex[:12]}",
                                               workers=[w], allow_other_workers=False, pure=False, priority=10)
                           for w in workers]

    def map(self, fn: Callable, tasks: Sequence, recipe: Recipe = Recipe(),
            labels: Sequence[str] | None = None, done: Callable[[Any, Any], None] | None = None) -> list:
        """fn(state, task) for every task, results in task order; done(task, result) hears of each as it finishes."""
        labels = list(labels) if labels is not None else [f"chunk {n + 1} of {len(tasks)}" for n in range(len(tasks))]
        self._stage += 1
        if self._client is not None and tasks:
            return self._map_cluster(fn, list(tasks), recipe, labels, done)
        if self.jobs > 1 and len(tasks) > 1:
            return self._map_forked(fn, list(tasks), recipe, labels, done)
        results: list = [None] * len(tasks)
        for n, task in enumerate(tasks):
            self._finish(n, task, labels[n], *_chunk(fn, recipe, task), done, results)
        return results

    def _map_forked(self, fn, tasks, recipe, labels, done) -> list:
        """Over `jobs` forked processes; the chunks a dead process left unfinished go to a new pool (three times)."""
        results: list = [None] * len(tasks)
        pending = list(range(len(tasks)))
        for attempt in range(4):
            # forked: the state reaches the processes with the caller's memory, never pickled
            try:
                with ProcessPoolExecutor(self.jobs, mp_context=get_context("fork"), initializer=_adopt,
                                         initargs=(recipe,)) as pool:
                    futures = {pool.submit(_chunk_forked, fn, tasks[n]): n for n in pending}
                    for future in as_completed(futures):
                        n = futures[future]
                        self._finish(n, tasks[n], labels[n], *future.result(), done, results)
                        pending.remove(n)
                return results
            except BrokenProcessPool:
                # which chunk the dead process held is not known: every unfinished one is run again
                self.notes.append(f"a process died with {len(pending)} chunk{'s' if len(pending) > 1 else ''} "
                                  f"unfinished ({_some(labels[n] for n in pending)}): redone in new processes")
        raise DeriveError(f"--jobs {self.jobs}: processes died four times in a row with "
                          f"{_some(labels[n] for n in pending)} unfinished (out of memory?)")

    def _finish(self, n, task, label, result, seconds, where, built, done, results) -> None:
        self.timings.append(Timing(label, seconds[0], where, built, self._stage, seconds[1]))
        results[n] = result
        if done is not None:
            done(task, result)

    def _map_cluster(self, fn, tasks, recipe, labels, done) -> list:
        from distributed import as_completed as arriving
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        run = uuid.uuid4().hex[:12]
        futures = [self._client.submit(_chunk, fn, recipe, task, True, key=f"derive-{run}-{n}", pure=False)
                   for n, task in enumerate(tasks)]
        index = {f.key: n for n, f in enumerate(futures)}
        results: list = [None] * len(tasks)
        timings: list = [None] * len(tasks)
        try:
            for future, (result, seconds, where, built) in arriving(futures, with_results=True):
                n = index[future.key]
                results[n], timings[n] = result, Timing(labels[n], seconds[0], where, built, self._stage, seconds[1])
                if done is not None:
                    done(tasks[n], result)
            died = self._client.run_on_scheduler(_suspicious, keys=list(index))
        except KilledWorker as exc:
            n = index.get(getattr(exc, "task", None))
            what = labels[n] if n is not None else "a chunk"
            raise DeriveError(f"--cluster {self.cluster}: {what} killed every worker that ran it "
                              f"({exc.allowed_failures + 1} in a row); see the workers' logs") from None
        except FutureCancelledError:
            raise DeriveError(f"--cluster {self.cluster}: the scheduler went away mid-run") from None
        except RuntimeError as exc:
            if "deserializ" not in str(exc):
                raise
            # the task names a module the workers cannot import: not this package, or another version of it
            raise DeriveError(f"--cluster {self.cluster}: the workers cannot load the task "
                              f"({fn.__module__}.{fn.__qualname__}); install this backprop-derive in every worker's "
                              "Python environment (pip install -e \".[cluster]\" from the same checkout)") from None
        finally:
            self._client.cancel(futures)
        self.timings.extend(timings)
        for n, future in enumerate(futures):
            times = died.get(future.key, 0)
            if times:
                self.notes.append(f"{labels[n]} was on a worker that died{'' if times == 1 else f' ({times} times)'}: "
                                  f"redone on {timings[n].worker}")
        return results

    def close(self) -> None:
        if self._client is not None:
            self._client.cancel(self._preparing)
            self._client.close()
            if self._local is not None:
                self._local.close()
            self._client = self._local = None

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(cluster: str):
    """(a Dask client, the LocalCluster it started or None) for an address or local:N; a clear error without Dask."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise DeriveError(f"--cluster {cluster}: needs Dask's distributed scheduler: "
                          "pip install -e \".[cluster]\"") from None
    if cluster.startswith("local:"):
        n = local_workers(cluster)
        # one thread a worker: the chunks are CPU-bound Python, so threads would share one GIL; this machine only
        # (loopback), and its HTTP server on a free port (on 8787, taken or not, it would warn or clash)
        local = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                             dashboard_address="127.0.0.1:0", silence_logs=50)
        return Client(local), local
    try:
        client = Client(cluster, timeout=CONNECT_SECONDS)
    except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as exc:  # asyncio's is its own before 3.11
        raise DeriveError(f"--cluster {cluster}: no Dask scheduler answered there within {CONNECT_SECONDS} s "
                          f"({type(exc).__name__}); start one with `dask scheduler` and give its tcp://HOST:PORT, "
                          "or use local:N") from None
    try:
        client.wait_for_workers(1, timeout=CONNECT_SECONDS)
    except (TimeoutError, asyncio.TimeoutError):
        client.close()
        raise DeriveError(f"--cluster {cluster}: the scheduler has no workers (none joined within {CONNECT_SECONDS} s); "
                          f"start some with `dask worker {cluster}`") from None
    return client, None


def local_workers(cluster: str) -> int:
    """N of local:N, a whole number from 1 to 64."""
    text = cluster[len("local:"):].lstrip("0")
    if not (text.isascii() and text.isdigit() and len(text) <= 2 and 1 <= int(text) <= 64):
        raise DeriveError(f"--cluster {cluster}: local:N takes a number of worker processes from 1 to 64, "
                          f"e.g. local:2")
    return int(text)
