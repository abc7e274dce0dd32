"""python -m codegen [SPEC ...] [--backend numpy|cupy|all] [--out DIR] [--check]

Writing proves each spec's forms first (at the widths they are read at) and writes nothing
unless every partial is proven; --check only compares, so it stays fast.
Exit codes: 0 done (or up to date), 1 --check found stale files, 2 bad input or an unproven form.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from derive.errors import DeriveError
from derive.proof import prove
from derive.spec import builtin_names, load_spec

from .plan import small_spec

from .render import BACKENDS, default_out, generate, package_init

GENERATED = ("_numpy.py", "_cupy.py", "_kernels.cu")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m codegen",
        description="Print the proven matrix forms as NumPy and CuPy forward/backward modules.",
    )
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help=f"built-in names ({', '.join(builtin_names())}) or TOML files; default: every built-in spec")
    p.add_argument("--backend", choices=(*BACKENDS, "all"), default="all", help="which modules to write (default all)")
    p.add_argument("--out", type=Path, default=None, help="folder to write into (default: generated/)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming every file in the folder that differs from a fresh generation")
    return p


def expected_files(specs, backends, with_init: bool) -> dict[str, str]:
    """specs: names, TOML paths or Spec objects."""
    files: dict[str, str] = {}
    for spec in specs:
        files.update(generate(load_spec(spec), backends))
    if with_init:
        files["__init__.py"] = package_init(sorted(builtin_names()))
    return files


def write_all(out: Path, files: dict[str, str]) -> None:
    """Every file or none: each is written beside its target and renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    staged = []
    try:
        for name in sorted(files):
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(files[name])
            staged.append((tmp, out / name))
    except OSError:
        for tmp, _ in staged:
            os.unlink(tmp)
        raise
    for tmp, target in staged:
        os.replace(tmp, target)


def check(out: Path, files: dict[str, str], all_builtins: bool) -> list[str]:
    """Names of files that differ from `files`, are missing, or are generated files no spec makes."""
    stale = []
    for name in sorted(files):
        path = out / name
        if not path.is_file() or path.read_text(encoding="utf-8") != files[name]:
            stale.append(name)
    if all_builtins and out.is_dir():
        for path in sorted(out.iterdir()):
            if path.name.endswith(GENERATED) and path.name not in files:
                stale.append(f"{path.name} (no built-in spec makes it: remove it)")
    return stale


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    names = args.specs or builtin_names()
    out = args.out or default_out()
    everything = not args.specs and args.backend == "all"
    try:
        specs = [load_spec(name) for name in names]  # a bad name or file fails before anything is written
        files = expected_files(specs, backends, with_init=everything or out == default_out())
    except DeriveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        stale = check(out, files, everything)
        if stale:
            fix = "python -m codegen" + ("" if everything else " " + " ".join(args.specs))
            fix += "" if args.backend == "all" else f" --backend {args.backend}"
            fix += "" if args.out is None else f" --out {args.out}"
            print(f"{out}: {len(stale)} stale file(s):", file=sys.stderr)
            for name in stale:
                print(f"  {name}", file=sys.stderr)
            print(f"regenerate with: {fix}", file=sys.stderr)
            return 1
        print(f"{out}: {len(files)} generated files up to date")
        return 0
    # nothing is written that derive/ has not proven: the forms printed are the ones of the
    # spec at the planner's widths, and each of their partials must be proven exactly
    for spec in map(small_spec, specs):
        proof = prove(spec)
        if not proof.ok:
            print(f"error: {spec.source}: the matrix forms are not proven ({proof.summary()}); nothing written",
                  file=sys.stderr)
            return 2
        print(f"{spec.name} at {'-'.join(map(str, spec.sizes))}: {proof.summary()}")
    try:
        write_all(out, files)
    except OSError as exc:
        print(f"error: cannot write to {out}: {exc.strerror}", file=sys.stderr)
        return 2
    for name in sorted(files):
        print(out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
