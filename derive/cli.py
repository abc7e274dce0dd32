"""The command line: python -m derive [prove|latex|check|general] ...: every subcommand's arguments and handler.

Exit codes: 0 everything proven, 1 something refuted or unproven, 2 bad input,
3 an unexpected internal error (a bug; BACKPROP_DERIVE_DEBUG=1 shows its traceback),
130 interrupted, 141 stdout closed by its reader.
Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from derive.arguments import Parser, seconds, whole
from derive.errors import DeriveError, SpecError, guarded, shown
from derive.files import check_writable, named, write_atomically
from derive.proofs import budget
from derive.spec import LayeredSpec, load_with_sizes
from derive.verdict import Verdict

DEFAULT_SPEC = "net222"
MAX_JOBS = 64
_positive = whole(1, 10**9, "a positive integer (1 to 10^9)")
_seed = whole(0, 2**64 - 1, "a seed: a whole number from 0 to 2^64 - 1")
_jobs = whole(1, MAX_JOBS, f"a positive integer of at most {MAX_JOBS}")


COMMANDS = ("prove", "latex", "check", "general", "serve")
EXIT_CODES = ("exit codes: 0 everything proven, 1 something refuted or unproven, 2 bad input (one line on stderr), "
              "3 an unexpected internal error (a bug: one line on stderr; BACKPROP_DERIVE_DEBUG=1 shows the traceback)")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand."""
    parser = Parser(prog=program(), description="Prove backpropagation's matrix forms from the chain rule.",
                     epilog=EXIT_CODES)
    sub = parser.add_subparsers(dest="command", parser_class=Parser)

    p = sub.add_parser("prove", help="prove every partial of a network (the default)")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC, help="a built-in spec name or a spec file")
    p.add_argument("--sizes", help="replace the widths, e.g. 3-4-2")
    p.add_argument("--mode", choices=("auto", "full", "scalable"), default="auto",
                   help="full: every path listed and sympy.diff on every partial; scalable: reverse accumulation "
                        f"and a sampled oracle; auto picks full up to {budget.FULL_AUTO_PARAMS} parameters")
    p.add_argument("--sample", type=_positive, default=None,
                   help="also run the exact sympy.diff oracle on N partials spread over every weight matrix and bias "
                        "(scalable mode; default none: every partial is cross-checked by the randomized oracle either way, "
                        "and the exact one's cost grows exponentially with depth)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the oracle's random point and of the --sample partials (a whole number from 0)")
    p.add_argument("--jobs", type=_jobs, default=None,
                   help=f"processes for the entry comparisons (scalable mode; at most {MAX_JOBS})")
    _cluster_argument(p, "runs the entry comparisons (scalable mode)")
    _budget_argument(p)
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--brief", action="store_true", help="only the summary and any failures")

    p = sub.add_parser("latex", help="write the derivation and proof as a LaTeX document")
    p.add_argument("spec", nargs="?", default=DEFAULT_SPEC)
    p.add_argument("--sizes")
    p.add_argument("-o", "--output", default="derivation.tex", help="the .tex file to write")
    p.add_argument("--pdf", action="store_true", help="also compile it with pdflatex")
    _budget_argument(p)

    p = sub.add_parser("check", help="check your own formulas (claims TOML files)")
    p.add_argument("claims", nargs="+", metavar="CLAIMS",
                   help="a claims TOML file: spec = ..., then [[claim]] tables with name, lhs, rhs or latex; "
                        "several: each is checked and reported in turn, then one summary line")
    p.add_argument("--json", action="store_true",
                   help="print the verdicts as a JSON list (several files: one object per file)")
    p.add_argument("--jobs", type=_jobs, default=None,
                   help=f"processes checking the files at once (at most {MAX_JOBS})")
    _cluster_argument(p, "checks the files")

    p = sub.add_parser("general", help="prove BP1-BP4 for every width and depth, and batch norm, layer norm and "
                                       "residual blocks for every batch size, width and depth, convolutions and "
                                       "attention at symbolic sizes")
    p.add_argument("spec", nargs="?", metavar="SPEC",
                   help="a layer-list spec: prove the general forms of its layers (its dense layers' BP1-BP4 in its "
                        "convention, its norms, residual blocks, convolutions and attention at symbolic sizes)")
    p.add_argument("--latex", metavar="FILE.tex", help="also write the proof as a standalone LaTeX document")
    settings = layers = None
    if command in ("general", None):  # SymPy loads only for the command that needs it (or for --help)
        from derive.proofs.general import LAYERS as layers, SETTINGS as settings
    p.add_argument("--setting", action="append", choices=settings,
                   help="prove this setting of BP1-BP4 (repeatable; with neither --setting nor --layer: all of both)")
    p.add_argument("--layer", action="append", choices=layers,
                   help="prove this layer beyond dense (repeatable; with neither --setting nor --layer: all of both)")
    p.add_argument("--brief", action="store_true", help="only each theorem's verdict and the summary")
    p.add_argument("--json", action="store_true", help="print each theorem's verdict as JSON")

    p = sub.add_parser("serve", help="a local page to paste claims and see their verdicts typeset (extra: serve)")
    p.add_argument("--host", default="127.0.0.1",
                   help="the address to listen on (default 127.0.0.1: this machine only; the page has no login)")
    p.add_argument("--port", type=whole(1, 65535, "a port number from 1 to 65535"), default=8000,
                   help="the port (default 8000)")
    p.add_argument("--workers", type=whole(1, 16, "a number of processes from 1 to 16"), default=2,
                   help="processes that check claims, each claim under a time limit (default 2)")
    return parser


def program() -> str:
    """How the user ran us: the console script's own name, else python -m derive."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name and not name.endswith(".py") and name != "-c" else "python -m derive"


def _budget_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-seconds", type=seconds, default=budget.MAX_SECONDS, metavar="S",
                   help=f"refuse, before starting, a proof estimated to take longer (default {budget.MAX_SECONDS:g})")


def _cluster(text: str) -> str:
    """--cluster's value: local:N (N from 1 to 64) or a scheduler's address."""
    from derive.proofs.engine import local_workers

    if text.startswith("local:"):
        try:
            local_workers(text)
        except DeriveError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"--cluster {text}: ")) from None
    elif not text or not text.isprintable() or " " in text or len(text) > 300:
        raise argparse.ArgumentTypeError("a Dask scheduler's address, e.g. tcp://10.0.0.5:8786, or local:N")
    return text


def _cluster_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--cluster", type=_cluster, metavar="ADDRESS",
                   help=f"a Dask cluster {what}: a scheduler's address (tcp://HOST:8786) or local:N, N worker "
                        "processes started here (extra: cluster; see docs/cluster.md)")


def _one_engine(args) -> None:
    """--jobs and --cluster both say where the work runs: one of them, not both."""
    if args.cluster is not None and args.jobs is not None:
        raise DeriveError(f"--jobs {args.jobs} and --cluster {args.cluster}: give one of them "
                          f"(--cluster local:{args.jobs} runs {args.jobs} worker processes of a local Dask cluster)")


def main(argv: list[str] | None = None) -> int:
    return guarded(_main, sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    if argv and argv[0] not in COMMANDS and not argv[0].startswith("-"):
        _check_command(argv[0])
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help")):
        argv = ["prove", *argv]  # the default command
    args = build_parser(argv[0] if argv[0] in COMMANDS else None).parse_args(argv)
    handlers = {"prove": run_prove, "latex": run_latex, "check": run_check, "general": run_general,
                "serve": run_serve}
    if args.command not in handlers:
        raise DeriveError(f"unknown command {args.command!r}")
    return handlers[args.command](args)


def _check_command(word: str) -> None:
    """A first word that is neither a command nor a spec, but close to a command, is a typo of the command."""
    import difflib

    from derive.spec import builtin_names

    if word in builtin_names() or Path(word).exists() or word.endswith(".toml"):
        return
    close = difflib.get_close_matches(word, COMMANDS, n=1, cutoff=0.6)
    if close:
        raise DeriveError(f"unknown command {word!r}: did you mean {close[0]!r}? "
                          f"(commands: {', '.join(COMMANDS)}; with none, prove)")


# ---------------------------------------------------------------------------
# before a proof starts: its estimated cost
# ---------------------------------------------------------------------------

def check_budget(spec, mode: str, args, command: str = "prove") -> budget.Estimate:
    """Refuse, before anything starts, a run estimated beyond --max-seconds or this machine's memory."""
    max_seconds = getattr(args, "max_seconds", budget.MAX_SECONDS)
    sample = getattr(args, "sample", None) or 0  # the exact sympy.diff sample is opt-in (--sample N)
    estimate = budget.full(spec) if mode == "full" else budget.scalable(spec, sample)
    instead = "prove it at smaller widths or depth with --sizes"
    if command == "prove":
        least = budget.oracle_groups(spec)  # the sample takes at least one partial of each group
        other = budget.scalable(spec, sample if mode == "full" else least)
        if mode == "full" and budget.fits(other, max_seconds):
            instead = f"use --mode scalable ({other.text()})"
        elif mode == "scalable" and sample > least and budget.fits(other, max_seconds):
            instead = f"sample fewer partials with --sample {least} ({other.text()})"
    budget.check(estimate, max_seconds, f"{command} {spec.name} at sizes {budget.sizes_text(spec)}", instead)
    return estimate


def announce(spec, estimate: budget.Estimate, faster: str = "") -> bool:
    """Say on stderr what a long run will cost (and a faster way, if any); whether it is long (then progress is shown)."""
    if estimate.seconds < budget.ANNOUNCE_SECONDS:
        return False
    print(f"{spec.name} at sizes {budget.sizes_text(spec)}: estimated {estimate.text()} ({estimate.what})"
          + (f"; {faster}" if faster else ""), file=sys.stderr)
    return True


def _scalable_flags(args) -> list[str]:
    """Which of --sample, --jobs and --cluster (they steer the scalable proof only) were given."""
    return [f for f, v in (("--sample", args.sample), ("--jobs", args.jobs), ("--cluster", args.cluster))
            if v is not None]


def _shown(proof, args, render) -> int:
    """A proof as --json prints it, or rendered by `render` on the terminal; its exit code."""
    if args.json:
        json.dump(proof.to_json(), sys.stdout, indent=1)
        print()
    else:
        from rich.console import Console

        render(proof, Console(highlight=False), brief=args.brief)
    return proof.exit_code


def _not_in_full_mode(args) -> None:
    """--sample, --jobs and --cluster steer the scalable proof only: say so rather than ignore them."""
    given = _scalable_flags(args)
    if given:
        print(f"note: {', '.join(given[:-1])}{' and ' if len(given) > 1 else ''}{given[-1]} "
              f"appl{'y' if len(given) > 1 else 'ies'} to --mode scalable only; "
              "full mode runs sympy.diff on every partial, in one process", file=sys.stderr)


# ---------------------------------------------------------------------------
# the handlers: each proves or checks, renders through derive.report, returns the exit code
# ---------------------------------------------------------------------------

def run_prove(args) -> int:
    from derive.proofs.concrete import prove
    from derive.report.terminal import render, working

    _one_engine(args)
    spec, note = load_with_sizes(args.spec, args.sizes)
    if isinstance(spec, LayeredSpec):
        return _prove_layers(spec, args)
    mode = args.mode if args.mode != "auto" else budget.auto_mode(spec)
    estimate = check_budget(spec, mode, args)
    terminal = not args.json and sys.stderr.isatty()
    faster = ""
    if mode == "full":
        _not_in_full_mode(args)
        other = budget.scalable(spec, args.sample or 0)
        if other.seconds < estimate.seconds / 2:
            faster = f"--mode scalable would take {other.text()}"
    long = announce(spec, estimate, faster)
    if mode == "scalable":
        from derive.proofs.scalable import prove_scalable
        from derive.report.terminal import render_scale, scale_progress

        proof = prove_scalable(spec, sample=args.sample or 0, seed=args.seed, jobs=args.jobs or 1,
                               progress=scale_progress(terminal), cluster=args.cluster)
        proof.note = "; ".join(filter(None, [note, *proof.redone]))  # a chunk redone on a cluster is said here
        return _shown(proof, args, render_scale)
    with working(f"proving {spec.n_params} partials in full mode (estimated {budget.duration(estimate.seconds)})",
                 terminal and long):
        proof = prove(spec, oracle="all")
    proof.note = note
    return _shown(proof, args, render)


def _prove_layers(spec, args) -> int:
    """A layer list: each layer's backward forms and every partial, layer by layer (derive.proofs.layered)."""
    from derive.proofs.layered import prove_layers
    from derive.report.layers import render_layers
    from derive.report.terminal import working

    if args.mode == "scalable":
        raise SpecError(f"--mode scalable: {spec.name} lists its layers, and a layer list is proven layer by layer "
                        "(its proof grows with the sum of its layers' sizes); leave --mode out")
    given = _scalable_flags(args)
    if given:
        print(f"note: {' and '.join(given)} steer{'s' if len(given) == 1 else ''} the scalable proof of a sizes spec; "
              "a layer list is proven layer by layer, in one process", file=sys.stderr)
    terminal = not args.json and sys.stderr.isatty()
    with working(f"proving the backward forms of {len(spec.blocks)} layers, {spec.n_params} parameters", terminal):
        proof = prove_layers(spec)
    return _shown(proof, args, render_layers)


def run_latex(args) -> int:
    from derive.proofs.concrete import prove
    from derive.report.latex import MAX_DOCUMENT_PARAMS, render
    from derive.report.terminal import working

    spec, note = load_with_sizes(args.spec, args.sizes)
    if not args.output.endswith(".tex"):
        raise DeriveError(f"-o {args.output}: the output must be a .tex file")
    check_writable(args.output, "-o")  # before the proof, so a wrong path costs nothing
    if args.pdf:
        check_writable(Path(args.output).with_suffix(".pdf"), "--pdf")
    if isinstance(spec, LayeredSpec):
        return _latex_layers(spec, args)
    if spec.n_params > MAX_DOCUMENT_PARAMS:
        return _latex_summary(spec, note, args)
    estimate = check_budget(spec, "full", args, "latex")
    with working(f"proving {spec.n_params} partials for the document", announce(spec, estimate) and sys.stderr.isatty()):
        proof = prove(spec, oracle="all")
    proof.note = note[:1].upper() + note[1:] + "." if note else ""
    write_atomically(Path(args.output), render(proof), "-o")
    print(shown(f"wrote {args.output}: {proof.summary()}"))
    _pdf(args)
    return proof.exit_code


def _latex_layers(spec, args) -> int:
    """A layer list: each layer's forward equations and proven backward forms (derive.report.latex_layers)."""
    from derive.proofs.layered import prove_layers
    from derive.report.latex_layers import render_layers

    proof = prove_layers(spec)
    write_atomically(Path(args.output), render_layers(proof), "-o")
    print(shown(f"wrote {args.output}: {proof.summary()}"))
    _pdf(args)
    return proof.exit_code


def _latex_summary(spec, note: str, args) -> int:
    """A network too large to write every partial out: a summary document on a scalable proof."""
    from derive.proofs.scalable import prove_scalable
    from derive.report.latex import MAX_DOCUMENT_PARAMS, render_summary
    from derive.report.terminal import scale_progress

    estimate = check_budget(spec, "scalable", args, "latex")
    print(f"note: {spec.name} has {spec.n_params} parameters, more than the {MAX_DOCUMENT_PARAMS} a full document "
          "writes out: writing a summary (its forms, the per-layer counts of a scalable proof, a sample of partials)",
          file=sys.stderr)
    proof = prove_scalable(spec, progress=scale_progress(announce(spec, estimate) and sys.stderr.isatty()))
    note = note[:1].upper() + note[1:] + "." if note else ""
    write_atomically(Path(args.output), render_summary(proof, note), "-o")
    print(shown(f"wrote {args.output}: {proof.summary()}"))
    _pdf(args)
    return proof.exit_code


def _pdf(args) -> None:
    if args.pdf:
        from derive.report.latex import compile_pdf

        print(shown(f"wrote {compile_pdf(Path(args.output))}"))


def checked_file(_state, task: tuple[str, str]):
    """One claims file checked (a task of derive.proofs.engine): its Report, or its error line if it cannot be read.

    task is (the path as given, the path to read): a cluster's worker reads the absolute path,
    and what it reports names the file as given.
    """
    from derive.claims import check_file

    given, path = task
    try:
        report = check_file(path)
    except DeriveError as exc:
        return str(exc).replace(path, given, 1)
    report.path = given
    return report


def run_check(args) -> int:
    from rich.console import Console

    from derive.proofs.engine import Engine
    from derive.report.claims import files_exit_code, files_json, json_text, render, render_files

    _one_engine(args)
    files = list(dict.fromkeys(args.claims))  # a file named twice is checked once
    tasks = [(f, str(Path(f).absolute()) if args.cluster else f) for f in files]
    with Engine(args.jobs or 1, args.cluster) as engine:
        results = engine.map(checked_file, tasks, labels=files)
    for note in engine.notes:
        print(shown(f"note: {note}"), file=sys.stderr)
    if len(results) == 1:
        if isinstance(results[0], str):
            raise DeriveError(results[0])
        report = results[0]
        if args.json:
            print(json_text(report.to_json()))
        else:
            render(report, Console(highlight=False, soft_wrap=True))
    elif args.json:
        print(json_text(files_json(files, results)))
    else:
        render_files(files, results, Console(highlight=False, soft_wrap=True))
    for result in results:
        if isinstance(result, str):
            print(shown(f"error: {result}"), file=sys.stderr)
            continue
        errors = [v for v in result.verdicts if v.verdict == Verdict.ERROR]
        if errors:
            more = f" (and {len(errors) - 1} more claim{'s' if len(errors) > 2 else ''} that cannot be read)" if len(errors) > 1 else ""
            print(f"error: {shown(result.path)}: {errors[0].error_line()}{more}", file=sys.stderr)
    return files_exit_code(results)


def run_general(args) -> int:
    from rich.console import Console

    from derive.proofs.general import LAYERS, SETTINGS, prove_general
    from derive.report.general import render, to_latex

    target = None
    if args.latex is not None:
        target = Path(args.latex)
        if target.suffix != ".tex":
            raise DeriveError(f"--latex {named(args.latex)}: the output must be a .tex file")
        check_writable(target, "--latex")  # before the proof: a folder, a missing one, a name too long
    chosen_settings, chosen_layers = args.setting or [], getattr(args, "layer", None) or []
    notes: list[str] = []
    if getattr(args, "spec", None):  # a layer list: the general forms of its layers, with any named as well
        from derive.proofs.general import spec_targets
        from derive.spec import load_spec

        spec_settings, spec_layers, notes = spec_targets(load_spec(args.spec))
        chosen_settings, chosen_layers = [*chosen_settings, *spec_settings], [*chosen_layers, *spec_layers]
    everything = not chosen_settings and not chosen_layers  # neither named: all of both
    settings = SETTINGS if everything else tuple(dict.fromkeys(chosen_settings))
    layers = LAYERS if everything else tuple(dict.fromkeys(chosen_layers))
    proof = prove_general(settings, layers=layers)
    if target is not None:
        write_atomically(target, to_latex(proof), "--latex")
    if getattr(args, "json", False):
        json.dump(proof.to_json(), sys.stdout, indent=1)
        print()
        return proof.exit_code
    console = Console(highlight=False, soft_wrap=True)
    render(proof, console, brief=args.brief)
    console.print()
    if target is not None:
        console.print(shown(f"wrote {target}"), markup=False)
    for note in notes:
        console.print(f"note: {note}", markup=False)
    if proof.layers:
        console.print(proof.layers_summary())
    if proof.settings:
        console.print(proof.summary())
    return proof.exit_code


def run_serve(args) -> int:
    import importlib.util

    missing = [m for m in ("starlette", "uvicorn", "pebble") if importlib.util.find_spec(m) is None]
    if missing:
        raise DeriveError(f"serve needs {', '.join(missing)}: pip install -e \".[serve]\"")
    from derive.serve import serve

    serve(args.host, args.port, args.workers)
    return 0
