"""The general proof as a person reads it: the terminal report and the LaTeX document."""

from __future__ import annotations

import sympy as sp

from derive.proofs.general import RULES, GeneralProof, latex, render_parts, tex_words, text
from derive.verdict import Verdict

_SHOWN = ("chain", "range", "graph", "through")  # rules whose evidence (premise, witness) the terminal shows


def render(proof: GeneralProof, console, brief: bool = False) -> None:
    """The proof step by step: each line the equation and the rule used (Rich Text: no markup in the math)."""
    from rich.text import Text

    mark = {Verdict.GIVEN: ("·", "dim"), Verdict.PROVEN: ("✓", "green"), Verdict.REFUTED: ("✗", "bold red"),
            Verdict.UNPROVEN: ("?", "yellow")}
    console.print(Text("Rules SymPy cannot apply to a symbolic number of terms, each checked on its own:", style="bold"))
    for r in proof.rule_checks:
        sym, style = mark[r.verdict]
        console.print(Text.assemble((f"  {sym} ", style), f"{r.rule}: {r.what}"))
    for st in proof.settings + proof.layers:
        console.print()
        console.print(Text(st.title, style="bold"))
        for thm in st.theorems:
            sym, style = mark[thm.verdict]
            console.print(Text.assemble((f"{sym} {thm.key} ", style), f"{text(thm.lhs)} = {text(thm.formula)}   ",
                                        (thm.verdict, style)))
            if brief and thm.ok:
                continue
            for a in thm.assumptions:
                console.print(Text("      assuming " + render_parts(a, "text"), style="dim"))
            for c in thm.chains:
                for i, s in enumerate(c.steps):
                    sym, style = mark[s.verdict]
                    tag = "lemma " if c.name == "lemma" else ""
                    left = f"{tag}{text(s.lhs)} = " if i == 0 else " " * len(tag) + "  = "
                    console.print(Text.assemble((f"  {sym}   ", style), left + text(s.rhs),
                                                (f"   [{RULES[s.rule].name}]", "cyan")))
                    if not s.ok:
                        console.print(Text(f"          {s.verdict}: {s.evidence_text()}", style=style))
                    elif s.rule in _SHOWN and not brief:
                        console.print(Text(f"          {s.evidence_text()}", style="dim"))
            if thm.stuck:
                console.print(Text(f"      stuck: {thm.stuck}", style="yellow"))


def _latex_context(proof: GeneralProof) -> dict:
    """Everything the template lays out, already printed: the template holds no logic."""
    settings = []
    for st in proof.settings + proof.layers:
        theorems = []
        for thm in st.theorems:
            chains = []
            for c in thm.chains:
                lines = [{"lhs": latex(s.lhs) if i == 0 else "", "rhs": broken(s.rhs),
                          "rule": tex_words(RULES[s.rule].name), "verdict": s.verdict.lower(), "ok": s.ok,
                          "evidence": "" if s.ok else s.evidence_latex()}  # shown for failed steps only
                         for i, s in enumerate(c.steps)]
                chains.append({"lemma": c.name == "lemma", "lines": lines})
            theorems.append({
                "title": tex_words(thm.title), "statement": f"{latex(thm.lhs)} = {latex(thm.formula)}",
                "verdict": thm.verdict.lower(), "stuck": tex_words(thm.stuck),
                "assumptions": [render_parts(a, "latex") for a in thm.assumptions],
                "chains": chains,
            })
        settings.append({"title": st.model.title_tex(), "theorems": theorems})
    return {
        "settings": settings,
        "rules": [{"name": tex_words(r.name), "tex": r.tex, "closed_by": r.closed_by} for r in RULES.values()],
        "rule_checks": [{"rule": tex_words(r.rule), "what": r.tex, "verdict": r.verdict.lower()}
                        for r in proof.rule_checks],
        "summary": tex_words(proof.summary() if proof.settings else proof.layers_summary()),
        "layers_summary": tex_words(proof.layers_summary()) if proof.layers and proof.settings else "",
        "layers": bool(proof.layers),
    }


def broken(expr, width: int = 90) -> str:
    """expr in LaTeX, a long sum broken into lines of an align* (each continued under the first)."""
    tex = latex(expr)
    if len(tex) <= width or not isinstance(expr, sp.Add):
        return tex
    lines, line = [], ""
    for term in expr.as_ordered_terms():
        t = latex(term)
        piece = t if not line and not lines else (f" {t}" if t.startswith("-") else f" + {t}")
        if line and len(line) + len(piece) > width:
            lines.append(line)
            line = piece.strip() if piece.strip().startswith("-") else "+ " + t
        else:
            line += piece
    lines.append(line)
    return r" \\ &\quad ".join(lines)


def to_latex(proof: GeneralProof) -> str:
    """The proof as a standalone LaTeX document (Jinja2 template general.tex.j2)."""
    from derive.report.latex import environment

    return environment().get_template("general.tex.j2").render(**_latex_context(proof))


