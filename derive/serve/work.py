"""What the page's worker processes do: read the setting (spec, sizes, notation), check one claim, write the document.

Everything here runs in a worker process of derive.serve.pool, under a time limit, and
returns plain data (dicts of strings and numbers) for the page to lay out. The claims are
read by derive.claims' own readers, with the same limits as `derive check`; nothing a
user typed is executed. A setting that cannot be read is a DeriveError naming what is
wrong, shown as one line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from derive.claims import Claim, Context, check_claim
from derive.claims.file import MAX_PARAMS, notation_misfit
from derive.claims.printing import latex_of
from derive.claims.text import read_text
from derive.claims.tree import ClaimError
from derive.errors import DeriveError, brief
from derive.spec import LayeredSpec, builtin_names, load_spec, parse_sizes, parse_spec
from derive.tables.reading import READINGS
from derive.verdict import Verdict

FORMS = ("latex", "text")
MAX_SPEC_CHARS = 16_000  # a spec is a few lines
_EQUALS = re.compile(r"(?<![<>=!])=(?!=)")  # the '=' between a text claim's sides, not <=, >=, == or !=


@dataclass(frozen=True)
class Setting:
    """What the page's form chose: a built-in spec or a pasted one, optional sizes, the notation ('' for the spec's)."""

    spec: str = "net222"
    spec_text: str = ""  # a pasted spec (TOML); when given, it is used instead of `spec`
    sizes: str = ""
    notation: str = ""


_contexts: dict[Setting, tuple[Context, str]] = {}  # per worker process: a network is built once per setting


def warm() -> None:
    """A worker's start: this module (and SymPy with it) is imported by now; build the default network too."""
    try:
        context(Setting("nielsen", "", "3-4-2", ""))
    except DeriveError:  # pragma: no cover - the built-in spec reads
        pass


def context(setting: Setting) -> tuple[Context, str]:
    """The network the claims are checked against, and a note on reduced sizes; DeriveError naming what is wrong."""
    if setting not in _contexts:
        if len(_contexts) > 16:
            _contexts.clear()
        _contexts[setting] = _build(setting)
    return _contexts[setting]


def _build(setting: Setting) -> tuple[Context, str]:
    if setting.spec_text.strip():
        if len(setting.spec_text) > MAX_SPEC_CHARS:
            raise DeriveError(f"the pasted spec has {len(setting.spec_text)} characters; a spec has at most "
                              f"{MAX_SPEC_CHARS}")
        spec = parse_spec(setting.spec_text.encode("utf-8", "replace"), "the pasted spec")
    elif setting.spec in builtin_names():
        spec = load_spec(setting.spec)
    else:
        raise DeriveError(f"spec {brief(setting.spec)}: choose a built-in spec ({', '.join(builtin_names())}) "
                          "or paste one")
    if isinstance(spec, LayeredSpec):
        raise DeriveError(f"spec {spec.name} lists its layers: the page checks claims on specs that give sizes; "
                          "check a layer list's claims with python -m derive check FILE")
    own = spec.sizes
    if setting.sizes.strip():
        spec = spec.with_sizes(parse_sizes(setting.sizes.strip(), "sizes"))
    if spec.n_params > MAX_PARAMS:
        raise DeriveError(f"spec {spec.name} has {spec.n_params} parameters; claims are checked on networks of at "
                          f"most {MAX_PARAMS}: give sizes such as 3-4-2 (any small widths) to check it at reduced widths")
    reading = None
    if setting.notation:
        if setting.notation not in READINGS:
            raise DeriveError(f"notation {brief(setting.notation)}: one of {', '.join(READINGS)}")
        reading = READINGS[setting.notation]
        misfit = notation_misfit(reading, spec)
        if misfit:
            raise DeriveError(f"{setting.notation}: {misfit}")
    note = f"at sizes {'-'.join(map(str, spec.sizes))}" if spec.sizes != own else ""
    return Context(spec, None, reading), note


def describe(setting: Setting) -> dict:
    """The network a setting names, in one line, or the one-line error."""
    try:
        ctx, note = context(setting)
    except DeriveError as exc:
        return {"error": str(exc)}
    s = ctx.spec
    parts = [s.name, "-".join(map(str, s.sizes)), ", ".join(dict.fromkeys(s.activation)), f"{s.cost} cost",
             f"{s.convention} convention", f"bias {s.bias}", f"notation {setting.notation or s.notation}"]
    return {"line": ", ".join(parts) + (f" ({note})" if note else "")}


def claim_of(form: str, number: int, line: str) -> Claim | None:
    """One line of the page's claims as a Claim: LaTeX as written, or text as lhs = rhs (None without the '=')."""
    name = f"claim {number}"
    if form == "latex":
        return Claim(name, latex=line, number=number)
    match = _EQUALS.search(line)
    if match is None or not line[:match.start()].strip():
        return None
    return Claim(name, lhs=line[:match.start()].strip(), rhs=line[match.end():].strip(), number=number)


def check(setting: Setting, form: str, number: int, line: str) -> dict:
    """One claim's verdict with what the page shows of it: both sides in LaTeX, the witness, the entries, the repair."""
    if form not in FORMS:
        return failed(number, line, f"form {brief(form)}: latex or text")
    try:
        ctx, _ = context(setting)
    except DeriveError as exc:
        return failed(number, line, str(exc))
    claim = claim_of(form, number, line)
    if claim is None:
        return failed(number, line, "a text claim is lhs = rhs, such as dC/dW2 = delta2 @ a1.T (the left-hand side "
                                    "is missing)")
    verdict = check_claim(ctx, claim)
    out = verdict.as_json()
    out["number"] = number
    out["written"] = line
    out["verdict"] = str(verdict.verdict)
    out["sides"] = _sides(ctx, claim)
    if verdict.repair is not None:
        out["repair"]["tex"] = _tex(ctx, claim, verdict.repair.claim)
    if verdict.verdict == Verdict.ERROR:
        where = ", ".join(x for x in (verdict.error_field, verdict.error_position) if x)
        out["error"] = f"{where}: {verdict.message}" if where else verdict.message
    return out


def failed(number: int, line: str, message: str) -> dict:
    return {"number": number, "name": f"claim {number}", "written": line, "verdict": str(Verdict.ERROR),
            "error": message, "sides": None, "witness": None, "wrong_entries": [], "holding_entries": [],
            "repair": None, "other_repairs": []}


def _sides(ctx: Context, claim: Claim) -> dict | None:
    """The claim's two sides as LaTeX for KaTeX: as written for a LaTeX claim, printed from the tree for text."""
    if claim.latex is not None:
        return {"equation": claim.latex}
    try:
        left = _lhs_tex(ctx, claim.lhs) if claim.lhs else None
        right = latex_of(read_text(claim.rhs, ctx.shape), ctx.shape.style)
    except ClaimError:
        return None  # a claim that cannot be read is shown as written, with its error
    return {"equation": f"{left} = {right}" if left else right}


def _lhs_tex(ctx: Context, lhs: str) -> str:
    """dC/dW2 as \\frac{\\partial C}{\\partial W^{(2)}}; delta2 as \\delta^{(2)}."""
    if lhs.replace(" ", "").startswith("dC/d"):
        rest = lhs.replace(" ", "")[4:]
        return rf"\frac{{\partial C}}{{\partial {latex_of(read_text(rest, ctx.shape), ctx.shape.style)}}}"
    return latex_of(read_text(lhs, ctx.shape), ctx.shape.style)


def _tex(ctx: Context, claim: Claim, repaired: str) -> str | None:
    """A repair's right-hand side in LaTeX: it is LaTeX already for a LaTeX claim; text is read and printed."""
    if claim.latex is not None:
        return repaired
    try:
        return latex_of(read_text(repaired, ctx.shape), ctx.shape.style)
    except ClaimError:
        return None


def document(setting: Setting) -> tuple[str, str]:
    """(file name, the LaTeX document of the setting's network: the derivation and its proof, as `derive latex`)."""
    from derive.proofs import budget
    from derive.proofs.concrete import prove
    from derive.report.latex import MAX_DOCUMENT_PARAMS, render

    ctx, note = context(setting)
    spec = ctx.spec
    if spec.n_params > MAX_DOCUMENT_PARAMS:
        raise DeriveError(f"{spec.name} has {spec.n_params} parameters; the page writes the full document of at most "
                          f"{MAX_DOCUMENT_PARAMS}: give smaller sizes, or run derive latex")
    budget.check(budget.full(spec), budget.MAX_SECONDS, f"the document of {spec.name}", "give smaller sizes")
    proof = prove(spec, oracle="all")
    proof.note = note[:1].upper() + note[1:] + "." if note else ""
    return f"{re.sub(r'[^A-Za-z0-9_-]', '_', spec.name)}.tex", render(proof)
