"""A claims file: its TOML read and checked against the limits, every claim checked, and the result.

The file names a spec (built in, or a file next to it), optionally smaller sizes, a
batch and the layer style, and a list of [[claim]] tables; what is wrong with it is one
line naming the key or the claim.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path

from derive.claims.check import Claim, ClaimVerdict, check_claim
from derive.claims.truth import Context
from derive.errors import DeriveError, brief, shown
from derive.files import exists, read_user_file  # a regular file only, read with a bound (st_size is 0 for devices)
from derive.spec import MAX_EXAMPLES, LayeredSpec, Spec, builtin_names, load_spec, parse_sizes, validate
from derive.tables.reading import READINGS, Reading, with_fields
from derive.verdict import Verdict, exit_code

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_CLAIMS = 500
MAX_PARAMS = 2_000  # claims build every matrix explicitly; larger specs are checked at reduced sizes
TOP_KEYS = ("spec", "sizes", "examples", "layers", "notation", "regularization", "description", "claim")
CLAIM_KEYS = ("name", "lhs", "rhs", "latex", "code", "example", "note")


@dataclass
class Report:
    """The verdicts on every claim of a file (a derive.verdict.Result)."""

    path: str
    spec: Spec
    note: str  # the sizes it was checked at, when not the spec's own
    verdicts: list[ClaimVerdict]

    @property
    def ok(self) -> bool:
        return all(v.verdict.ok for v in self.verdicts)

    def counts(self) -> dict[Verdict, int]:
        """How many claims got each verdict a claim can get."""
        words = (Verdict.PROVEN, Verdict.REFUTED, Verdict.UNPROVEN, Verdict.ERROR)
        return {k: sum(v.verdict == k for v in self.verdicts) for k in words}

    def summary(self) -> str:
        """'3 claims: 2 proven, 1 refuted' (proven and refuted always named, the others when there are any)."""
        counts, n = self.counts(), len(self.verdicts)
        named = ", ".join(f"{c} {k.lower()}{'s' if k == Verdict.ERROR and c != 1 else ''}" for k, c in counts.items()
                          if c or k in (Verdict.PROVEN, Verdict.REFUTED))
        return f"{n} claim{'s' if n != 1 else ''}: {named}"

    @property
    def exit_code(self) -> int:
        return exit_code(v.verdict for v in self.verdicts)

    def to_json(self) -> list[dict]:
        return [v.as_json() for v in self.verdicts]

    # Jupyter: derive.report.notebook (a layer above, which this module cannot import) fills _shows in when imported
    _shows = {}  # not annotated: a class attribute, not a dataclass field

    def _repr_markdown_(self) -> str:
        """Every claim typeset with its verdict for Jupyter (derive.report.notebook), or the summary until imported."""
        show = self._shows.get("markdown")
        return show(self) if show else self.summary()


def _bad(path, message: str):
    raise DeriveError(shown(f"{path}: {message}"))  # one line, whatever the file put in a key or a name


def load_claims(path: str | Path) -> tuple[Spec, str, list[Claim], str, Reading | None, bool]:
    """(spec, layer style or '', claims, a note on reduced sizes, the notation or None, whether the cost has L2
    regularization) from a claims file; DeriveError naming what is wrong."""

    path = Path(path)
    data = read_user_file(path, MAX_FILE_BYTES, "claims file")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        _bad(path, "not UTF-8 text; a claims file is TOML")
    except tomllib.TOMLDecodeError as exc:
        _bad(path, f"malformed TOML: {exc}")
    except ValueError:  # Python converts integers of at most sys.get_int_max_str_digits() digits
        _bad(path, f"malformed TOML: an integer of more than {sys.get_int_max_str_digits()} digits; "
                   "the numbers of a claims file are small")
    except (RecursionError, MemoryError):
        _bad(path, "malformed TOML: nested too deeply")
    for key in table:
        if key not in TOP_KEYS:
            _bad(path, f"unknown key {brief(key)}; a claims file has {', '.join(TOP_KEYS)}")
    spec, note = _spec_of(path, table)
    if isinstance(spec, LayeredSpec) and ({"notation", "regularization", "layers"} & set(table)):
        _bad(path, "notation, regularization and layers are for sizes specs; a layer list's claims use its own names "
                   "(mu2, xhat2, gamma2, dC/dgamma2) and LaTeX (\\mu^{(2)}, \\hat{x}^{(2)})")
    layers = table.get("layers", "")
    if layers not in ("", "paren", "bare"):
        _bad(path, f"layers = {brief(layers)}: 'paren' (a^{{(l)}}_j) or 'bare' (Nielsen's a^l_j)")
    reading = _notation_of(path, table, spec)
    if table.get("regularization", "none") not in ("none", "l2"):
        _bad(path, f"regularization = {brief(table['regularization'])}: \"l2\" (the cost plus reg/2 times the sum of "
                   "the squared weights) or \"none\"")
    raw = table.get("claim")
    if raw is None:
        _bad(path, "no claims: add [[claim]] tables with name, lhs and rhs (or latex)")
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        _bad(path, "'claim' must be an array of tables: [[claim]]")
    if not raw:
        _bad(path, "no claims")
    if len(raw) > MAX_CLAIMS:
        _bad(path, f"{len(raw)} claims; at most {MAX_CLAIMS} in one file")
    claims, names = [], set()
    for i, c in enumerate(raw, 1):
        claims.append(_claim_of(path, i, c, names))
    return spec, layers, claims, note, reading, table.get("regularization", "none") == "l2"


def _notation_of(path: Path, table: dict, spec: Spec) -> Reading | None:
    """The notation the claims are read in: a built-in name or a TOML file of fields, and [notation]'s overrides."""
    name = table.get("notation")
    if name is None:
        return None
    if isinstance(name, dict):  # [notation] with base = "bishop" and the fields it changes
        overrides = {k: v for k, v in name.items() if k != "base"}
        name = name.get("base", spec.notation)
        if name not in READINGS:
            _bad(path, f"notation.base = {brief(name)}: one of {', '.join(READINGS)}")
        base = READINGS[name]
    elif isinstance(name, str) and name in READINGS:
        base, overrides = READINGS[name], {}
    elif isinstance(name, str) and name.endswith(".toml"):
        own = read_user_file(path.parent / name, MAX_FILE_BYTES, "notation file")
        try:
            overrides = tomllib.loads(own.decode("utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            _bad(path, f"notation file {brief(name)}: malformed TOML ({str(exc).splitlines()[0] if str(exc) else exc})")
        base_name = overrides.pop("base", "net222")
        if base_name not in READINGS:
            _bad(path, f"notation file {brief(name)}: base = {brief(base_name)}: one of {', '.join(READINGS)}")
        base = READINGS[base_name]
    else:
        _bad(path, f"notation = {brief(name)}: one of {', '.join(READINGS)}, a notation file (name.toml), or a "
                   "[notation] table of fields")
    try:
        reading = with_fields(base, overrides, "notation")
    except ValueError as exc:
        _bad(path, str(exc))
    misfit = notation_misfit(reading, spec)
    if misfit:
        _bad(path, misfit)
    return reading


def notation_misfit(reading: Reading, spec: Spec) -> str | None:
    """Why a notation cannot read claims about a spec (its batches run the other way), or None."""
    row = spec.convention == "row"
    if reading.capitals and (reading.examples == "rows") != row:
        want = "row" if reading.examples == "rows" else "column"
        return (f"notation runs a batch's examples along {reading.examples}, but the spec {spec.name} is "
                f"{'row' if row else 'column'}-major: choose a {want}-major spec (convention = \"{want}\")")
    return None


def _spec_of(path: Path, table: dict) -> tuple[Spec, str]:
    name = table.get("spec")
    if not isinstance(name, str) or not name:
        _bad(path, "spec: give a built-in name (" + ", ".join(builtin_names()) + ") or a spec file, relative to this file")
    try:
        if name not in builtin_names() and not Path(name).suffix and not exists(path.parent / name, "spec"):
            _bad(path, f"spec: unknown spec {brief(name)}: not a built-in name ({', '.join(builtin_names())}) "
                       "and no such file next to the claims file")
        spec = load_spec(name) if name in builtin_names() else load_spec(path.parent / name)
        own = spec.sizes
        if isinstance(spec, LayeredSpec) and "sizes" in table:
            _bad(path, "sizes: the spec lists its layers, each with its own width; change the widths in the spec")
        if "sizes" in table:
            sizes = table["sizes"]
            if isinstance(sizes, str):
                sizes = parse_sizes(sizes)
            elif not (isinstance(sizes, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in sizes)):
                _bad(path, f"sizes = {brief(sizes)}: a list of widths, inputs first, such as [3, 4, 2]")
            spec = spec.with_sizes(tuple(sizes))
        if "examples" in table:
            data = spec.as_dict()
            data["examples"] = table["examples"]
            spec = validate(data, spec.source)
    except DeriveError as exc:
        if str(exc).startswith(str(path)):
            raise
        _bad(path, f"spec: {exc}")
    if spec.n_params > MAX_PARAMS:
        _bad(path, f"spec {spec.name} has {spec.n_params} parameters; claims are checked on networks of at most "
                   f"{MAX_PARAMS}: add sizes = [3, 4, 2] (any small widths) to check it at reduced widths")
    note = ""
    if spec.sizes != own:
        note = f"at sizes {'-'.join(map(str, spec.sizes))} (the spec's own are {'-'.join(map(str, own))})"
    return spec, note


def _claim_of(path: Path, i: int, c: dict, names: set) -> Claim:
    name = c.get("name")
    label = f"claim {i}" + (f" '{name}'" if isinstance(name, str) and name.isprintable() and len(name) <= 200 else "")
    for key in c:
        if key not in CLAIM_KEYS:
            _bad(path, f"{label}: unknown key {brief(key)}; a claim has {', '.join(CLAIM_KEYS)}")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        _bad(path, f"{label}: name must be a short string on one line")
    if name in names:
        _bad(path, f"{label}: another claim has the same name")
    names.add(name)
    for key in ("lhs", "rhs", "latex", "code", "note"):
        if key in c and not isinstance(c[key], str):
            _bad(path, f"{label}: {key} must be a string")
    if ("rhs" in c) + ("latex" in c) + ("code" in c) != 1:
        _bad(path, f"{label}: give the right-hand side as rhs (text) or as latex, or NumPy code as code: one of them")
    if "lhs" not in c and "rhs" in c:
        _bad(path, f"{label}: lhs is missing (dC/dw2[0,1], dC/db2[0], dC/dW2, delta2, delta2[0], ...)")
    example = c.get("example", 0)
    if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < MAX_EXAMPLES:
        _bad(path, f"{label}: example must be a whole number from 0 to {MAX_EXAMPLES - 1} (an example of the batch; "
                   f"a batch has at most {MAX_EXAMPLES}), not {brief(example)}")
    return Claim(name, c.get("lhs"), c.get("rhs"), c.get("latex"), example, i, c.get("note", ""), c.get("code"))


def check_file(path: str | Path) -> Report:
    """Read a claims file and check every claim in it."""
    spec, layers, claims, note, reading, regularization = load_claims(path)
    if isinstance(spec, LayeredSpec):  # a layer list: its own vocabulary and truth (derive.claims.layers)
        from derive.claims.layers import LayeredContext
        from derive.claims.layers_check import check_layered

        ctx = LayeredContext(spec)
        return Report(str(path), spec, note, [check_layered(ctx, c) for c in claims])
    if reading is not None and layers:
        reading = replace(reading, layers=layers)
    ctx = Context(spec, layers or None, reading, regularization)
    return Report(str(path), spec, note, [check_claim(ctx, c) for c in claims])
