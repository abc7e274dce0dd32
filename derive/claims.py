"""Claims: a person's own formulas, checked against the proven derivation (issue 6, in progress)."""

from __future__ import annotations

from .errors import DeriveError


def add_arguments(parser) -> None:
    parser.add_argument("claims", help="a claims TOML file")
    parser.add_argument("--json", action="store_true", help="print the verdicts as JSON")


def run(args) -> int:
    raise DeriveError("check: claims are not implemented yet")
