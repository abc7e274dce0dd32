"""The command line: python -m derive [prove|latex|check|general] ...

Exit codes: 0 everything proven, 1 something refuted or unproven, 2 bad input.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .errors import EXIT_BAD_INPUT, DeriveError

DEFAULT_SPEC = "net222"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2, as for every other bad input
        raise DeriveError(f"{self.prog}: {message}")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)


COMMANDS = ("prove", "latex", "check", "general")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the check and general modules are imported only when their command runs (or for --help)."""
    parser = _Parser(prog="python -m derive", description="Prove backpropagation's matrix forms from the chain rule.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    p = sub.add_parser("prove", help="prove every partial of a network (the default)")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help="a built-in spec name or a spec file")
    p.add_argument("--sizes", help="replace the widths, e.g. 3-4-2")
    p.add_argument("--mode", choices=("auto", "full", "scalable"), default="auto",
                   help="full: every path listed and sympy.diff on every partial; scalable: reverse accumulation "
                        "and a sampled oracle; auto picks full up to 600 parameters")
    p.add_argument("--sample", type=_positive, default=50, help="partials the sampled sympy.diff oracle checks (scalable mode)")
    p.add_argument("--seed", type=int, default=0, help="seed of the oracle sample")
    p.add_argument("--jobs", type=_positive, default=1, help="processes for the entry comparisons (scalable mode)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--brief", action="store_true", help="only the summary and any failures")

    p = sub.add_parser("latex", help="write the derivation and proof as a LaTeX document")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC)
    p.add_argument("--sizes")
    p.add_argument("-o", "--output", default="derivation.tex", help="the .tex file to write")
    p.add_argument("--pdf", action="store_true", help="also compile it with pdflatex")

    check = sub.add_parser("check", help="check your own formulas (a claims TOML file)")
    every = sub.add_parser("general", help="prove BP1-BP4 for every width and depth")
    if command in ("check", None):
        from . import claims  # it owns its subcommand's arguments

        claims.add_arguments(check)
    if command in ("general", None):
        from . import general

        general.add_arguments(every)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
            argv = ["prove", *argv]  # the default command
        args = build_parser(argv[0] if argv[0] in COMMANDS else None).parse_args(argv)
        if args.command == "prove":
            from .report import run_prove

            return run_prove(args)
        if args.command == "latex":
            from .latex import run_latex

            return run_latex(args)
        if args.command == "check":
            from . import claims

            return claims.run(args)
        if args.command == "general":
            from . import general

            return general.run(args)
        raise DeriveError(f"unknown command {args.command!r}")
    except DeriveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
