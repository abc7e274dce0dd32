"""Worker processes for the page: each check runs in one, under a time limit, and a check past it is killed.

Pebble's ProcessPool ends the worker whose task ran past its timeout and starts a fresh
one, so one slow claim costs its own time limit and never holds the server or the other
claims. Workers are spawned (not forked from the server's threads) and keep the networks
they have built (derive.serve.work), so a page of claims on one spec builds it once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool

from pebble import ProcessExpired, ProcessPool

from derive.serve import work

CHECK_SECONDS = 20.0  # one claim: the parser's limits refuse hostile input in milliseconds; this bounds the rest
SETTING_SECONDS = 30.0  # the network of a spec: built once a worker, in a fraction of a second at the sizes claims take
DOCUMENT_SECONDS = 120.0  # the LaTeX document: a full proof of the network


class Workers:
    """A pool of worker processes; `call` runs a function of derive.serve.work in one, with a time limit."""

    def __init__(self, processes: int = 2):
        self.processes = processes
        self._pool: ProcessPool | None = None

    def start(self) -> None:
        if self._pool is None:
            # each worker imports the checker as it starts, so a claim's time limit is spent on the claim
            self._pool = ProcessPool(max_workers=self.processes, initializer=work.warm,
                                     context=multiprocessing.get_context("spawn"))

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop()
            self._pool.join(timeout=10)
            self._pool = None

    async def call(self, seconds: float, function, *args):
        """function(*args) in a worker; TimeoutError when it ran past `seconds` (its worker is then replaced)."""
        self.start()
        future = self._pool.schedule(function, args=args, timeout=seconds)
        try:
            return await asyncio.wrap_future(future)
        except FutureTimeout:
            raise TimeoutError(f"stopped after the time limit of {seconds:g} s") from None
        except ProcessExpired as exc:  # the worker died (out of memory, killed): a fresh one takes its place
            raise TimeoutError(f"stopped: its worker process ended ({exc})") from None
        except BrokenProcessPool:  # no worker could start: the next call starts a fresh pool
            self.stop()
            raise TimeoutError("stopped: the worker processes could not start") from None


def check_many(workers: Workers, setting: work.Setting, form: str, lines: list[str], seconds: float = CHECK_SECONDS):
    """The checks of a page's claims, each its own task with its own time limit, all at once."""
    async def one(number: int, line: str) -> dict:
        try:
            return await workers.call(seconds, work.check, setting, form, number, line)
        except TimeoutError as exc:
            return work.failed(number, line, f"the check {exc}; a claim this large is beyond what the page checks "
                                             "(try it at smaller sizes, or with derive check)")
        except Exception as exc:  # a bug in the checker: one line on the page, and the other claims go on
            return work.failed(number, line, f"an unexpected internal error (a bug): {type(exc).__name__}")
    return asyncio.gather(*(one(i, line) for i, line in enumerate(lines, 1)))
