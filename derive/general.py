"""The general proof: BP1-BP4 for symbolic widths and any depth (issue 5, in progress)."""

from __future__ import annotations

from .errors import DeriveError


def add_arguments(parser) -> None:
    parser.add_argument("--latex", help="write the proof as a LaTeX document")


def run(args) -> int:
    raise DeriveError("general: the general proof is not implemented yet")
