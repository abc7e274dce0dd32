"""Errors that reach the user as one line, with a documented exit code."""

from __future__ import annotations

import os
import sys

EXIT_OK = 0
EXIT_REFUTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3  # an unexpected error: a bug to report, never a verdict
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (as shells report SIGPIPE)
DEBUG_ENV = "BACKPROP_DERIVE_DEBUG"  # set to 1 to get the traceback of an internal error


class DeriveError(Exception):
    """A user-facing error: the message is the whole story, no traceback."""

    exit_code = EXIT_BAD_INPUT


class SpecError(DeriveError):
    """A spec that cannot be read or has a wrong value in a field."""


def debugging() -> bool:
    """Whether internal errors should show their traceback (BACKPROP_DERIVE_DEBUG=1)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report_internal(exc: BaseException) -> int:
    """One line on stderr for an unexpected exception; EXIT_INTERNAL."""
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:300] + " …"
    print(f"internal error: {type(exc).__name__}" + (f": {message}" if message else "")
          + f" (a bug: please report it; {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def report_broken_pipe() -> int:
    """stdout's reader is gone: say nothing more (a later flush would fail again); EXIT_BROKEN_PIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE
