"""Errors that reach the user as one line, with a documented exit code."""

from __future__ import annotations

import math
import os
import re
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


def shown(text: str, pad: str | None = None) -> str:
    """Text from a user, safe to print: every control or invisible character escaped (\\x1b, \\u202e).

    With pad, a new line stays one and is indented by pad, so that nothing quoted can
    begin a line of its own (a forged verdict); without, it is escaped as \\n too.
    """
    out = []
    for ch in text:
        if ch == "\n" and pad is not None:
            out.append("\n" + pad)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def brief(value, limit: int = 60) -> str:
    """Any value a user wrote, for a message: one short printable line, whatever its size or nesting.

    An integer of thousands of digits (TOML reads hex ones with no limit, and repr refuses
    more than 4300 digits) is "an integer of about N digits"; strings, lists and tables are
    cut to about `limit` characters; control characters are escaped.
    """
    return shown(_brief(value, max(limit, 12), 0))


def _brief(value, limit: int, depth: int) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    inner = max(36, limit // 2)
    if isinstance(value, (dict, list, tuple)):
        ends = "{}" if isinstance(value, dict) else "[]"
        if depth >= 3 and value:
            return ends[0] + "…" + ends[1]
        parts = ([f"{_key(str(k), inner)} = {_brief(v, inner, depth + 1)}" for k, v in list(value.items())[:6]]
                 if isinstance(value, dict) else [_brief(v, inner, depth + 1) for v in value[:6]])
        body, more = ", ".join(parts), f", ... ({len(value)} items)" if len(value) > 6 else ""
        room = limit - len(more) - 2
        return ends[0] + (body if len(body) <= room else body[: max(room - 1, 8)] + "…") + more + ends[1]
    if isinstance(value, str):
        text = repr(value[: limit + 1])  # repr escapes control characters; only what is shown is copied
        if len(text) > limit:
            return f"{text[: max(limit - 20, 8)]}… ({len(value)} characters)"
        return text
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _key(key: str, limit: int) -> str:
    """A table's key as TOML writes it: bare when it may be, quoted otherwise."""
    bare = re.fullmatch(r"[A-Za-z0-9_-]+", key[: limit + 1]) is not None
    text = key[: limit + 1] if bare else repr(key[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _more(items) -> list[str]:
    return [f"... ({len(items)} items)"] if len(items) > 6 else []


def decimal(text: str) -> float | None:
    """A finite number written in ASCII (12, 0.5, 1e-3, any leading zeros), or None: float() also takes '٣', 'nan'."""
    text = text.strip()
    if not re.fullmatch(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", text):
        return None
    value = float(text)  # no digit limit, unlike int()
    return value if math.isfinite(value) else None


def short_words(message: str, limit: int = 80) -> str:
    """argparse's message with each word of more than `limit` characters cut (it quotes a bad value whole)."""
    return re.sub(rf"\S{{{limit + 1},}}", lambda m: f"{m.group()[: limit - 20]}… ({len(m.group())} characters)", message)


def debugging() -> bool:
    """Whether internal errors should show their traceback (BACKPROP_DERIVE_DEBUG=1)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def report_internal(exc: BaseException) -> int:
    """One line on stderr for an unexpected exception; EXIT_INTERNAL."""
    message = shown(" ".join(str(exc).split()))
    if len(message) > 300:
        message = message[:300] + " …"
    print(f"internal error: {type(exc).__name__}" + (f": {message}" if message else "")
          + f" (a bug: please report it; {DEBUG_ENV}=1 shows the traceback)", file=sys.stderr)
    return EXIT_INTERNAL


def guarded(run, *args) -> int:
    """run(*args)'s exit code, every failure turned into one line on stderr and its documented exit code."""
    try:
        return run(*args)
    except DeriveError as exc:
        print(shown(f"error: {exc}"), file=sys.stderr)  # one line, whatever a path or a value held
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return report_broken_pipe()
    except Exception as exc:  # RecursionError and MemoryError too: a bug, never a verdict
        if debugging():
            raise
        return report_internal(exc)


def report_broken_pipe() -> int:
    """stdout's reader is gone: say nothing more (a later flush would fail again); EXIT_BROKEN_PIPE."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_BROKEN_PIPE
