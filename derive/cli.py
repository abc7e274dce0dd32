"""The command line: python -m derive [prove|latex|check|general] ...

Exit codes: 0 everything proven, 1 something refuted or unproven, 2 bad input,
3 an unexpected internal error (a bug; BACKPROP_DERIVE_DEBUG=1 shows its traceback),
130 interrupted, 141 stdout closed by its reader.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from derive.arguments import Parser, seconds, whole
from derive.errors import DeriveError, guarded

DEFAULT_SPEC = "net222"
MAX_JOBS = 64
_positive = whole(1, 10**9, "a positive integer (1 to 10^9)")
_seed = whole(0, 2**64 - 1, "a seed: a whole number from 0 to 2^64 - 1")
_jobs = whole(1, MAX_JOBS, f"a positive integer of at most {MAX_JOBS}")


COMMANDS = ("prove", "latex", "check", "general")
EXIT_CODES = ("exit codes: 0 everything proven, 1 something refuted or unproven, 2 bad input (one line on stderr), "
              "3 an unexpected internal error (a bug: one line on stderr; BACKPROP_DERIVE_DEBUG=1 shows the traceback)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the check and general modules are imported only when their command runs (or for --help)."""
    parser = Parser(prog="python -m derive", description="Prove backpropagation's matrix forms from the chain rule.",
                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    p = sub.add_parser("prove", help="prove every partial of a network (the default)")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help="a built-in spec name or a spec file")
    p.add_argument("--sizes", help="replace the widths, e.g. 3-4-2")
    p.add_argument("--mode", choices=("auto", "full", "scalable"), default="auto",
                   help="full: every path listed and sympy.diff on every partial; scalable: reverse accumulation "
                        "and a sampled oracle; auto picks full up to 600 parameters")
    p.add_argument("--sample", type=_positive, default=50, help="partials the sampled sympy.diff oracle checks (scalable mode)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the oracle sample (a whole number from 0)")
    p.add_argument("--jobs", type=_jobs, default=1,
                   help=f"processes for the entry comparisons (scalable mode; at most {MAX_JOBS})")
    _budget_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--brief", action="store_true", help="only the summary and any failures")

    p = sub.add_parser("latex", help="write the derivation and proof as a LaTeX document")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC)
    p.add_argument("--sizes")
    p.add_argument("-o", "--output", default="derivation.tex", help="the .tex file to write")
    p.add_argument("--pdf", action="store_true", help="also compile it with pdflatex")
    _budget_argument(p)

    check = sub.add_parser("check", help="check your own formulas (a claims TOML file)")
    every = sub.add_parser("general", help="prove BP1-BP4 for every width and depth")
    if command in ("check", None):
        from derive import claims  # it owns its subcommand's arguments

        claims.add_arguments(check)
    if command in ("general", None):
        from derive.proofs import general

        general.add_arguments(every)
    return parser


def _budget_argument(p: argparse.ArgumentParser) -> None:
    from derive.proofs.budget import MAX_SECONDS

    p.add_argument("--max-seconds", type=seconds, default=MAX_SECONDS, metavar="S",
                   help=f"refuse, before starting, a proof estimated to take longer (default {MAX_SECONDS:g})")


def main(argv: list[str] | None = None) -> int:
    return guarded(_main, sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["prove", *argv]  # the default command
    args = build_parser(argv[0] if argv[0] in COMMANDS else None).parse_args(argv)
    if args.command == "prove":
        from derive.report.terminal import run_prove

        return run_prove(args)
    if args.command == "latex":
        from derive.report.latex import run_latex

        return run_latex(args)
    if args.command == "check":
        from derive import claims

        return claims.run(args)
    if args.command == "general":
        from derive.proofs import general

        return general.run(args)
    raise DeriveError(f"unknown command {args.command!r}")
