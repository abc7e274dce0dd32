"""The verdicts every check gives, and the protocol every result follows.

A verdict is a `str` as well as an enum member, so it prints, compares and goes into
JSON as the word itself (`Verdict.PROVEN == "PROVEN"`, `json.dumps` gives `"PROVEN"`).
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol, runtime_checkable

from derive.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUTED


class Verdict(str, Enum):
    PROVEN = "PROVEN"  # an exact identity
    REFUTED = "REFUTED"  # a counterexample: a point where both sides are defined and differ
    UNPROVEN = "UNPROVEN"  # neither, with the reason
    ERROR = "ERROR"  # the formula cannot be judged as written (unreadable, ambiguous, undefined)
    GIVEN = "GIVEN"  # a definition or premise a derivation starts from, not checked

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    def __repr__(self) -> str:
        return repr(self.value)  # in a list or a dict it reads as the word, as before the enum

    @property
    def ok(self) -> bool:
        return self in (Verdict.PROVEN, Verdict.GIVEN)


def exit_code(verdicts) -> int:
    """0 when every verdict holds, 2 when one is an ERROR (bad input), 1 otherwise."""
    verdicts = list(verdicts)
    if any(v == Verdict.ERROR for v in verdicts):
        return EXIT_BAD_INPUT
    return EXIT_OK if all(Verdict(v).ok for v in verdicts) else EXIT_REFUTED


@runtime_checkable
class Result(Protocol):
    """What every result of a proof or a check offers: a proof, a scalable proof, a general
    proof, a file of claims."""

    @property
    def ok(self) -> bool: ...  # everything it checked holds

    def summary(self) -> str: ...  # one line

    @property
    def exit_code(self) -> int: ...  # the command line's exit status for it

    def to_json(self) -> dict | list: ...  # what `--json` prints
