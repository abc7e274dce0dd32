"""python -m codegen [SPEC ...] [--backend numpy|cupy|torch|jax|all] [--out DIR] [--check]

Every file is printed from a proof: each spec's forms are proven first (at the widths they
are read at), and nothing is written or compared unless every partial is proven; --check
then only compares.
Exit codes: 0 done (or up to date), 1 --check found stale files, 2 bad input or an unproven form,
3 an unexpected internal error (BACKPROP_DERIVE_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path

from derive.arguments import Parser, seconds
from derive.errors import DeriveError, guarded, shown
from derive.files import exists, named, read_user_file
from derive.proofs import budget
from derive.spec import builtin_names, load_spec

from derive.spec import LayeredSpec

from .backends import BACKENDS
from .layer_module import generate_layers, layer_backends
from .layers import layer_examples, prove_layer_forms
from .plan import check_budget, prove_forms
from .render import default_out, generate, package_init

GENERATED = (*(f"_{name}.py" for name in BACKENDS), "_kernels.cu")  # what --check may find stale
MAX_GENERATED_BYTES = 64 * 1024 * 1024  # --check reads at most this much of a file it compares


def parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="python -m codegen",
        description="Print the proven matrix forms as NumPy, CuPy, PyTorch and JAX forward/backward modules.",
    )
    p.add_argument("specs", nargs="*", metavar="SPEC",
                   help=f"built-in names ({', '.join(builtin_names())}) or TOML files; default: every built-in spec "
                        "and the layer lists of examples/specs")
    p.add_argument("--backend", choices=(*BACKENDS, "all"), default="all", help="which modules to write (default all)")
    p.add_argument("--out", type=Path, default=None, help="folder to write into (default: generated/)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 naming every file in the folder that differs from a fresh generation")
    p.add_argument("--max-seconds", type=seconds, default=budget.MAX_SECONDS, metavar="S",
                   help=f"refuse a spec whose proof is estimated to take longer (default {budget.MAX_SECONDS:g})")
    return p


def expected_files(specs, backends, with_init: bool, proofs=None) -> dict[str, str]:
    """specs: names, TOML paths or Spec objects; proofs: each one's `prove_forms` (made here when None)."""
    files: dict[str, str] = {}
    for spec, proof in zip(specs, proofs or [None] * len(specs)):
        spec = load_spec(spec)
        make = generate_layers if isinstance(spec, LayeredSpec) else generate  # a layer list: codegen/layers.py
        files.update(make(spec, backends, proof))
    if with_init:
        files["__init__.py"] = package_init(sorted(builtin_names()))
    return files


def write_all(out: Path, files: dict[str, str]) -> None:
    """Every file or none: each is written beside its target and renamed into place.

    Raises DeriveError naming what could not be written; then no temporary file is left,
    no folder this call made, and nothing is replaced unless every file was staged.
    """
    try:
        for name in files:
            if (out / name).is_dir() or ((out / name).exists() and not (out / name).is_file()):
                raise DeriveError(f"--out {named(out)}: {name} exists there and is not a regular file; nothing written")
        made = [p for p in (out, *out.parents) if not p.exists()]
    except OSError as exc:  # a name longer than the file system allows, a folder that cannot be searched
        raise DeriveError(f"--out {named(out)}: cannot write there ({exc.strerror or exc})") from None
    staged: list[tuple[str, Path]] = []
    mask = os.umask(0)
    os.umask(mask)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in sorted(files):
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=out)  # short: any name the target may have fits
            staged.append((tmp, out / name))
            with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
                f.write(files[name])
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp's 0600 is for the temporary file only
        while staged:
            tmp, target = staged[0]
            os.replace(tmp, target)
            staged.pop(0)
    except BaseException as exc:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        for folder in made:  # innermost first; only the empty ones this call made
            try:
                folder.rmdir()
            except OSError:
                break
        if isinstance(exc, OSError):
            raise DeriveError(f"--out {named(out)}: cannot write there ({exc.strerror or exc}); nothing written") from None
        raise


def _check_out(out: Path, checking: bool) -> None:
    """--out must be a folder, or (when writing) a name where one can be made; --check needs it to exist."""
    try:
        there = exists(out, "folder")
    except DeriveError as exc:
        raise DeriveError(f"--out {exc}") from None
    if there and not out.is_dir():
        raise DeriveError(f"--out {named(out)}: not a folder")
    if checking and not out.is_dir():
        raise DeriveError(f"--out {named(out)}: no such folder; --check compares the files of an existing one")


def check(out: Path, files: dict[str, str], all_builtins: bool) -> list[str]:
    """Names of files that differ from `files`, are missing, or are generated files no spec makes."""
    stale = []
    for name in sorted(files):
        try:  # a regular file, read with a bound: a pipe or a device under that name cannot hang the check
            same = read_user_file(out / name, MAX_GENERATED_BYTES, "generated file") == files[name].encode("utf-8")
        except DeriveError:
            same = False
        if not same:
            stale.append(name)
    if all_builtins and out.is_dir():
        for path in sorted(out.iterdir()):
            if path.name.endswith(GENERATED) and path.name not in files:
                stale.append(f"{path.name} (no built-in spec makes it: remove it)")
    return stale


def main(argv=None) -> int:
    return guarded(run, argv)


def run(argv=None) -> int:
    args = parser().parse_args(argv)
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    # by default also the layer lists of examples/specs, for the backends that print layer lists
    names = args.specs or builtin_names() + (layer_examples() if layer_backends(backends) else [])
    out = args.out or default_out()
    everything = not args.specs and args.backend == "all"
    specs = [load_spec(name) for name in names]  # a bad name or file fails before anything is written
    _check_out(out, args.check)
    for spec in specs:  # every spec whose proof cannot finish is refused before any is proven
        if not isinstance(spec, LayeredSpec):
            check_budget(spec, args.max_seconds)
    # nothing is printed that derive/ has not proven: the forms of each spec at the planner's
    # widths, every partial proven exactly (a layer list: each layer's backward forms)
    proofs = [prove_layer_forms(spec) if isinstance(spec, LayeredSpec) else prove_forms(spec, args.max_seconds)
              for spec in specs]
    for proof in proofs:
        if not proof.ok:
            raise DeriveError(f"{proof.spec.source}: the matrix forms are not proven ({proof.summary()}); nothing written")
    files = expected_files(specs, backends, with_init=everything or out == default_out(), proofs=proofs)
    if args.check:
        stale = check(out, files, everything)
        if stale:
            parts = ["python -m codegen", *([] if everything else map(shlex.quote, args.specs))]
            parts += [] if args.backend == "all" else [f"--backend {args.backend}"]
            parts += [] if args.out is None else [f"--out {shlex.quote(str(args.out))}"]
            fix = " ".join(parts)
            print(shown(f"{out}: {len(stale)} stale file(s):"), file=sys.stderr)
            for name in stale:
                print(shown(f"  {name}"), file=sys.stderr)
            print(shown(f"regenerate with: {fix}"), file=sys.stderr)
            return 1
        print(shown(f"{out}: {len(files)} generated files up to date"))
        return 0
    for proof in proofs:
        print(f"{proof.spec.name} at {'-'.join(map(str, proof.spec.sizes))}: {proof.summary()}")
    write_all(out, files)
    for name in sorted(files):
        print(shown(str(out / name)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
