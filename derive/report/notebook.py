"""Results as Jupyter shows them: Markdown with the mathematics typeset (MathJax), the verdict, witness and repair.

Each result class (a proof, a scalable proof, the general proof, a claim's verdict, a claims
report) has a `_repr_markdown_` that asks its class's `_shows` hook. The result classes sit
below the report layer and cannot import it, so importing this module fills the hooks in;
until then a result shows its one-line summary. In a notebook: `import derive.report.notebook`
(or `%load_ext derive.report.notebook`).

What came from a user's file (claim names, notes, LaTeX) is escaped: it cannot close the
mathematics it sits in, start HTML, or run anything.
"""

from __future__ import annotations

import html
import re

from derive.claims import ClaimVerdict, Report
from derive.matrix import MatrixForms
from derive.network import Network
from derive.proofs.concrete import Proof
from derive.proofs.layered import LayeredProof
from derive.proofs.general import RULES, GeneralProof, latex as general_latex
from derive.proofs.general.printing import Range
from derive.proofs.scalable import ScaleProof
from derive.report.latex import Names, heading
from derive.report.latex_layers import equations, input_names
from derive.report.layers import layer_line, shape_text
from derive.spec import LayeredSpec
from derive.tables.spatial_latex import NOTES, WRITERS as SPATIAL
from derive.tables.notations import PROFILES
from derive.verdict import Verdict

MARK = {Verdict.PROVEN: "✓", Verdict.GIVEN: "·", Verdict.REFUTED: "✗", Verdict.UNPROVEN: "?", Verdict.ERROR: "!"}
SHOWN_ENTRIES = 8  # wrong or holding entries named in full; the rest are counted
SHOWN_VALUES = 3  # a claim's letters' values where it fails, named; the rest are counted
MAX_MATH = 4_000  # characters of one typeset formula; a longer one is named, not shown
_ENTITIES = str.maketrans({c: f"&#{ord(c)};" for c in "\\`*_[]|$~"})  # Markdown's and MathJax's marks


# ---------------------------------------------------------------------------
# escaping: words and mathematics from a result, safe in Jupyter's Markdown
# ---------------------------------------------------------------------------

def words(s: str) -> str:
    """Plain text as Markdown on one line: HTML escaped, and every character Markdown or MathJax would act on
    (a backslash, a backtick, *, _, brackets, |, $, ~) written as its character reference, shown as itself."""
    return html.escape(re.sub(r"\s+", " ", str(s)), quote=False).translate(_ENTITIES)  # edges kept: words between math


def code(s: str) -> str:
    """Text in a code span (the text vocabulary `W2.T @ delta2`, names like w1[0,1]); Markdown escapes its content."""
    s = " ".join(str(s).split())
    return f"`` {s} ``" if "`" in s else f"`{s}`"


def math(tex: str, display: bool = False) -> str:
    """LaTeX between dollars, each $ in it escaped so that it cannot end the formula; a huge one is named, not shown.

    Jupyter takes the mathematics out before Markdown and escapes it for HTML itself.
    """
    tex = " ".join(str(tex).split())
    if len(tex) > MAX_MATH:
        return f"(a formula of {len(tex)} characters, too long to typeset here)"
    tex = re.sub(r"\\.|\$", lambda m: r"\$" if m.group() == "$" else m.group(), tex)  # pairs first: \\$ ends nothing
    return f"$$ {tex} $$" if display else f"${tex}$"


def paragraph(tex: str) -> str:
    """A LaTeX text paragraph with $...$ in it (a rule's statement, a setting's title) as Markdown."""
    parts = re.split(r"(?<!\\)\$", tex)
    return "".join(math(p) if i % 2 else words(p.replace("\\,", " ")) for i, p in enumerate(parts))


def worst(verdicts) -> Verdict:
    """The headline of many verdicts: an ERROR over a REFUTED over an UNPROVEN over PROVEN (a GIVEN counts as one)."""
    order = (Verdict.ERROR, Verdict.REFUTED, Verdict.UNPROVEN)
    found = set(map(Verdict, verdicts))
    return next((v for v in order if v in found), Verdict.PROVEN)


def verdict_word(v: Verdict) -> str:
    return f"{MARK[Verdict(v)]} **{Verdict(v)}**"


def _number(x) -> str:
    return f"{x:.6g}" if isinstance(x, float) else words(str(x))


def _table(head: tuple[str, ...], rows: list[tuple]) -> list[str]:
    """A Markdown table; cells are already Markdown."""
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(map(str, row)) + " |" for row in rows]  # words() and math() keep | out of cells
    return out + [""]


def _counts(table: dict, label) -> list[str]:
    """Proven/total per row of a per-layer or per-form count (values [p, t] or {'proven', 'total'})."""
    rows = []
    for key, v in table.items():
        p, t = (v["proven"], v["total"]) if isinstance(v, dict) else v
        rows.append((label(key), f"{p}/{t}", MARK[Verdict.PROVEN if p == t else Verdict.REFUTED]))
    return rows


def _spec_line(spec) -> str:
    batch = f"batch {spec.batch}" + (f" of {spec.examples} examples" if spec.batch != "single" else "")
    if isinstance(spec, LayeredSpec):
        return words(f"{spec.name}: inputs {shape_text(spec.shape)}, layers {' → '.join(layer_line(b) for b in spec.layers)}, "
                     f"{spec.cost} cost, {spec.convention} convention, {batch}")
    return words(f"{spec.name}: sizes {'-'.join(map(str, spec.sizes))}, {', '.join(dict.fromkeys(spec.activation))}, "
                 f"{spec.cost} cost, {spec.convention} convention, bias {spec.bias}, {batch}")


def _witness(values: dict, lhs, rhs, what: str) -> list[str]:
    """A counterexample: both sides' values, then the point, one row per matrix (w1, b1, a0, ...)."""
    rows: dict[str, list[str]] = {}
    for name, x in values.items():
        head, bracket, rest = str(name).partition("[")
        rows.setdefault(head if bracket else "", []).append(f"{code(bracket + rest if bracket else name)} = {_number(x)}")
    out = [f"**Witness**: {what} is {_number(lhs)}, the claim gives {_number(rhs)}, at", ""]
    return out + _table(("", "values"), [(code(k) if k else "", ", ".join(v)) for k, v in rows.items()])


# ---------------------------------------------------------------------------
# proofs of one network
# ---------------------------------------------------------------------------

def _forms(net: Network, forms: MatrixForms, counts: dict, spec) -> list[str]:
    """Each matrix form typeset in the spec's notation, with how many of its entries were proven."""
    profile = PROFILES[spec.notation]
    names = Names(net, forms, profile)
    rows = []
    for form in forms.forms:
        got = counts.get(form.key)
        if got is None:
            continue
        p, t = (got["proven"], got["total"]) if isinstance(got, dict) else got
        tex = f"{names(form.lhs)} = {names(form.expr)}".replace("|", r"\vert ")  # a bar would split the row
        rows.append((MARK[Verdict.PROVEN if p == t else Verdict.REFUTED], words(heading(form, net, profile)),
                     math(tex), f"{p}/{t}"))
    return _table(("", "matrix form", "", "entries proven"), rows)


def _failures(failures: list[dict]) -> list[str]:
    out = []
    for f in failures[:SHOWN_ENTRIES]:
        r, c = f["entry"]
        out += [f"- ✗ {code(f['name'])}, entry ({r}, {c}) of {code(f['form'])}", ""]
        ce = f.get("counterexample")
        if ce:
            out += _witness(ce["values"], ce["chain_rule"] if "chain_rule" in ce else ce.get("lhs"),
                            ce["other"] if "other" in ce else ce.get("rhs"), "the chain rule")
    if len(failures) > SHOWN_ENTRIES:
        out += [f"and {len(failures) - SHOWN_ENTRIES} more failures (in `to_json()`)", ""]
    return out


def proof_markdown(proof: Proof) -> str:
    """A concrete proof: the verdict, the summary, every matrix form typeset with its count, the failures."""
    data = proof.to_json()
    word = Verdict.PROVEN if proof.ok else worst(c.verdict for c in proof.checks)
    out = [f"{verdict_word(word)}: {words(proof.summary())}", "", _spec_line(proof.spec), ""]
    if proof.note:
        out += [words(proof.note), ""]
    out += [words(proof.forms_summary()), ""]
    out += _forms(proof.net, proof.forms, data["per_form"], proof.spec)
    out += _failures(data["failures"])
    return "\n".join(out)


def scale_markdown(proof: ScaleProof) -> str:
    """A scalable proof: the verdict, the per-layer counts, the forms typeset (not evaluated), the methods, failures."""
    word = Verdict.PROVEN if proof.ok else Verdict.REFUTED if proof.failures else Verdict.UNPROVEN
    out = [f"{verdict_word(word)}: {words(proof.summary())}", "", _spec_line(proof.spec), ""]
    if proof.note:
        out += [words(proof.note), ""]
    out += _table(("partials of", "proven", ""), _counts(proof.per_layer, code))
    net = Network(proof.spec)
    out += _forms(net, MatrixForms(net, evaluate=False), proof.per_form, proof.spec)
    out += ["How:", ""] + [f"- {words(m)}" for m in proof.methods()] + [""]
    out += _failures(proof.to_json()["failures"])
    return "\n".join(out)


def layers_markdown(proof: LayeredProof) -> str:
    """A layer-list proof: the verdict, each layer's forms typeset with their counts, the first failures."""
    word = Verdict.PROVEN if proof.ok else worst(c.verdict for c in proof.checks)
    out = [f"{verdict_word(word)}: {words(proof.summary())}", "", _spec_line(proof.spec), ""]
    if proof.note:
        out += [words(proof.note), ""]
    rows, below = [], []
    given = input_names(proof.spec)
    for row in proof.per_block():
        (gi, ti), (gp, tp) = row["input"], row["partials"]
        block = next(b for b in proof.spec.blocks if b.position == row["layer"])
        tex = ""
        if row["form"] == "backward":
            lines = equations(block, proof.spec, given[block.position])[1]
            if block.kind in SPATIAL:  # a shaped layer's forms are several lines: shown below the table
                below.append((block, lines))
                tex = ""
            else:
                tex = r",\quad ".join(lines)
        rows.append((MARK[Verdict.PROVEN if gi == ti and gp == tp else Verdict.REFUTED], row["layer"],
                     words(row["kind"]) if block.kind not in SPATIAL else words(layer_line(block)),
                     words(row["form"]), math(tex.replace("|", r"\vert ")) if tex else "",
                     f"{gi}/{ti}", f"{gp}/{tp}" if tp else "–"))
    out += _table(("", "layer", "kind", "form", "", "∂C/∂x", "∂C/∂params"), rows)
    for block, lines in below:
        out += [f"**Layer {block.position}, {words(block.kind)}**, backward for any upstream gradient:", "",
                math(r"\begin{gathered} " + r" \\ ".join(lines) + r" \end{gathered}", display=True), ""]
        if block.kind in NOTES:
            out += [words(NOTES[block.kind]), ""]
    failed = [c for c in proof.checks if not c.proven]
    for c in failed[:SHOWN_ENTRIES]:
        out += [f"- ✗ {code(c.name)}, layer {c.position} ({words(c.block)}), {words(c.form)}", ""]
        if c.counterexample:
            ce = c.counterexample
            out += _witness(ce.values, ce.lhs, ce.rhs, "the chain rule")
    if len(failed) > SHOWN_ENTRIES:
        out += [f"and {len(failed) - SHOWN_ENTRIES} more failures (in `to_json()`)", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# the general proof
# ---------------------------------------------------------------------------

def _parts(parts) -> str:
    """Evidence and assumptions (words, SymPy objects, index ranges) as Markdown with inline mathematics."""
    out = []
    for p in parts:
        if isinstance(p, Range):
            out.append(math(p.latex()))
        elif isinstance(p, str):
            out.append(words(p))
        else:
            out.append(math(general_latex(p)))
    return "".join(out)


def general_markdown(proof: GeneralProof) -> str:
    """BP1-BP4 in each setting typeset with their verdicts; a failed step with its evidence (the counterexample)."""
    out = [f"{verdict_word(proof.verdict)}: {words(proof.summary())}", ""]
    for st in proof.settings:
        out += [f"**{paragraph(st.model.title_tex())}**", ""]
        for thm in st.theorems:
            out += [f"{MARK[thm.verdict]} **{words(thm.key)}** ({words(thm.verdict.lower())})", "",
                    math(f"{general_latex(thm.lhs)} = {general_latex(thm.formula)}", display=True), ""]
            if thm.assumptions:
                out += ["assuming " + ", ".join(_parts(a) for a in thm.assumptions), ""]
            for s in thm.steps:
                if not s.ok:
                    out += [f"- {MARK[s.verdict]} {math(general_latex(s.lhs) + ' = ' + general_latex(s.rhs))} "
                            f"by {words(RULES[s.rule].name)}: **{s.verdict}**, {_parts(s.evidence)}", ""]
            if thm.stuck:
                out += [f"stuck: {words(thm.stuck)}", ""]
    if proof.rule_checks:
        out += ["Rules SymPy cannot apply to a symbolic number of terms, checked at small sizes:", ""]
        out += [f"- {MARK[r.verdict]} {words(r.rule)}: {paragraph(r.tex)}" for r in proof.rule_checks]
    return "\n".join(out)


# ---------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------

def _stated(v: ClaimVerdict) -> str:
    """The claim as written: LaTeX typeset, text and code in code font."""
    c = v.claim
    source = c.source.strip()
    if c.form == "latex":
        return math(source if "=" in source else f"{v.lhs or c.lhs or ''} = {source}", display=True)
    if c.form == "code":
        return "\n".join(["```python", source.replace("```", "` ` `"), "```"])
    return code(f"{v.lhs or c.lhs or ''} = {source}")


def _repaired(v: ClaimVerdict, claim: str) -> str:
    """The repaired claim whole: in LaTeX the left side as written, then the repaired right-hand side."""
    c = v.claim
    if c.form == "latex":
        source = c.source.strip()
        lhs = source.split("=", 1)[0] if "=" in source else (v.lhs or c.lhs or "")
        return math(f"{lhs} = {claim}", display=True)
    return code(f"{v.lhs or c.lhs or ''} = {claim}")


def _change(v: ClaimVerdict, repair) -> str:
    """What a repair changes: in LaTeX the new part typeset in place of the old, else the repair's own words
    (for a LaTeX claim without them up to the quoted claim, which is typeset whole below)."""
    if v.claim.form == "latex" and repair.old and repair.new:
        return f"{math(repair.new)} in place of {math(repair.old)}"
    if v.claim.form == "latex":
        return words(repair.text.split(": ", 1)[0])
    return words(repair.text)


def _entries(entries: list[dict]) -> str:
    text = ", ".join(f"({e['entry'][0]}, {e['entry'][1]}) {code(e['name'])}" for e in entries[:SHOWN_ENTRIES])
    return text + (f", and {len(entries) - SHOWN_ENTRIES} more" if len(entries) > SHOWN_ENTRIES else "")


def verdict_markdown(v: ClaimVerdict, level: int = 3) -> str:
    """One claim: its verdict and name, the claim typeset, then why: the witness, the wrong entries, the repair."""
    c = v.claim
    out = [f"{'#' * level} {verdict_word(v.verdict)} {words(c.name)}", "", _stated(v), ""]
    if c.example:
        out += [f"(example {c.example})", ""]
    if c.note:
        out += [f"*{words(c.note)}*", ""]
    if v.verdict == Verdict.ERROR:
        where = ", ".join(x for x in (v.error_field, v.error_position) if x)
        return "\n".join(out + [f"**Cannot be judged as written** ({words(where)}): {words(v.message)}", ""])
    if v.verdict == Verdict.UNPROVEN:
        out += [words(v.message), ""]
    fails = [i for i in v.instances if i["verdict"] != Verdict.PROVEN]
    if v.instances and (len(v.instances) > 1 or v.instances[0]["values"]):
        if fails:
            some = "; ".join(words(i["values"]) for i in fails[:SHOWN_VALUES])
            more = f"; and {len(fails) - SHOWN_VALUES} more" if len(fails) > SHOWN_VALUES else ""
            count = f"every one of the {len(fails)}" if len(fails) == len(v.instances) else f"{len(fails)} of {len(v.instances)}"
            out += [f"Fails at {count} values it applies to: {some}{more}", ""]
        else:
            out += [f"Holds at every value ({len(v.instances)})", ""]
    if v.unchecked:
        out += [f"Not checked (no exact value for np.exp or np.log): lines {', '.join(map(str, v.unchecked))}", ""]
    if v.shape_error:
        out += [f"**Shape**: {words(v.shape_error)}", ""]
    if v.wrong_entries:
        total = len(v.wrong_entries) + len(v.holding_entries)
        out += [f"**Wrong entries** ({len(v.wrong_entries)} of {total}): {_entries(v.wrong_entries)}", ""]
        if v.holding_entries:
            out += [f"These hold ({len(v.holding_entries)} of {total}): {_entries(v.holding_entries)}", ""]
    w = v.witness
    if w:
        if "entry" in w:
            r, cc = w["entry"]
            what, lhs, rhs = f"entry ({r}, {cc}) {code(w['entry_name'])}", w["lhs"][r][cc], w["rhs"][r][cc]
        else:
            what, lhs, rhs = code(v.lhs or c.lhs or ""), w["lhs"], w["rhs"]
        if w.get("at"):
            what += f" (at {words(w['at'])})"
        out += _witness({**w["values"], **w["neurons"]}, lhs, rhs, what)
    if v.repair:
        out += [f"**Repair** ({words(v.repair.kind)}): {_change(v, v.repair)}", "", _repaired(v, v.repair.claim), ""]
        out += [f"- or ({words(r.kind)}): {_change(v, r)}" for r in v.other_repairs] + ([""] if v.other_repairs else [])
    elif v.verdict == Verdict.REFUTED:
        out += ["No single change (a transpose, an index, a neuron, a layer, the bias's 1, a sign, a constant factor) "
                "makes it hold.", ""]
    return "\n".join(out)


def report_markdown(report: Report) -> str:
    """A claims file: the spec and the counts, then each claim as verdict_markdown shows it."""
    out = [f"{verdict_word(worst(v.verdict for v in report.verdicts))}: {words(report.summary())}", "", f"{code(report.path)}: {_spec_line(report.spec)}", ""]
    if report.note:
        out += [words(report.note), ""]
    out += [verdict_markdown(v) for v in report.verdicts]
    return "\n".join(out)


SHOWS = {Proof: proof_markdown, ScaleProof: scale_markdown, LayeredProof: layers_markdown, GeneralProof: general_markdown,
         ClaimVerdict: verdict_markdown, Report: report_markdown}
for _cls, _show in SHOWS.items():
    _cls._shows["markdown"] = _show


def load_ipython_extension(ipython) -> None:
    """`%load_ext derive.report.notebook`: importing this module is all it takes."""
