"""The derivation and its proof as a standalone LaTeX document (Jinja2 + sympy.latex)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import sympy as sp

from derive.errors import DeriveError
from derive.files import check_writable, write_atomically
from derive.tables.notations import PROFILES, Profile, latex, latex_names, layer, matrix_latex_names
from derive.proofs import budget
from derive.proofs.concrete import Proof, prove
from derive.spec import Spec, load_spec

MAX_LISTED = 24  # partials whose chain-rule derivation is written out in full
MAX_EXPLICIT = 40  # entries of a matrix written out explicitly
MAX_DOCUMENT_PARAMS = budget.FULL_AUTO_PARAMS  # the document rests on the full proof: no larger than auto proves in full
PDFLATEX_SECONDS = 120


def environment() -> jinja2.Environment:
    """Jinja2 set up strictly: LaTeX braces are left alone with custom delimiters."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("derive.report", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        block_start_string="<%",
        block_end_string="%>",
        variable_start_string="<<",
        variable_end_string=">>",
        comment_start_string="<#",
        comment_end_string="#>",
        autoescape=False,
    )


class Names:
    """Every symbol of a proof in one profile's LaTeX."""

    def __init__(self, proof: Proof, profile: Profile):
        net = proof.net
        syms = [p.symbol for p in net.params] + [proof.forms.gamma]
        for e in range(net.E):
            syms += net.y[e] + [s for row in net.a[e] for s in row] + [s for row in net.ap[e] for s in row]
            syms += [s for row in net.zsym[e] for s in row]
        self.scalar = latex_names(profile, syms, net.L)
        self.matrix = matrix_latex_names(profile, proof.forms.sym.values(), net.L)
        self.all = {**self.scalar, **self.matrix}

    def __call__(self, expr) -> str:
        return latex(expr, self.all)

    def sym(self, s) -> str:
        return self.all[s]


def _forward(proof: Proof, profile: Profile, names: Names) -> tuple[list[str], str]:
    net, spec = proof.net, proof.spec
    scalar = []
    sig = profile.sigma
    for l in range(1, net.L + 1):
        for j in range(net.sizes[l]):
            zj = names.sym(net.zsym[0][l][j])
            scalar.append(f"{zj} &= {names(net.z[0][l][j])}")
            act = net.acts[l]
            rhs = rf"{sig}\left({zj}\right)" if act.elementwise else rf"\operatorname{{softmax}}_{{{j}}}\left({layer(profile, 'z', l)}\right)"
            if not act.notation_sigma and act.elementwise:
                rhs = rf"{act.latex}\left({zj}\right)"
            scalar.append(f"{names.sym(net.a[0][l][j])} &= {rhs}")
    # the matrix form of one layer
    A, W, b = ("A^{(l-1)}", "W^{(l)}", "b^{(l)}")
    if profile.layer_style != "paren":
        A, W, b = (layer(profile, "A", "l-1"), layer(profile, "W", "l"), layer(profile, "b", "l"))
    a_prev = A if spec.bias == "augmented" else A.replace("A", profile.activation)
    core = net.layers[net.L].latex_forward(W, a_prev, b if spec.bias == "separate" else None, spec.convention)
    matrix = rf"{layer(profile, profile.activation, 'l')} = {sig}\left({core}\right)"
    return scalar, matrix


def _partials(proof: Proof, names: Names, profile: Profile) -> list[dict]:
    out = []
    cost = profile.cost
    for check in proof.partials[:MAX_LISTED]:
        d = check.derivation
        p = d.param
        form = proof.forms.form(check.form)
        r, c = check.entry
        item = {"lhs": rf"\frac{{\partial {cost}}}{{\partial {names.sym(p.symbol)}}}", "paths": [], "value": names(d.value),
                "matrix": names(check.matrix), "verdict": check.verdict.lower(), "param": names.sym(p.symbol),
                "entry": rf"\left[{names(form.expr)}\right]_{{{r}{c}}}"}
        if d.paths is not None:
            for path in d.paths:
                factors = []
                for f in path.factors:
                    head = cost if f.head == "C" else names.sym(sp.Symbol(f.head))
                    tail = names.sym(sp.Symbol(f.tail))
                    factors.append({"label": rf"\frac{{\partial {head}}}{{\partial {tail}}}", "value": names(f.value)})
                item["paths"].append(factors)
        out.append(item)
    return out


def _forms(proof: Proof, names: Names) -> list[dict]:
    out = []
    for form in proof.forms.forms:
        checks = [c for c in proof.checks if c.form == form.key]
        value = proof.forms.evaluated[form.key]
        out.append({
            "key": form.key,
            "label": form.label,
            "equation": f"{names(form.lhs)} = {names(form.expr)}",
            "explicit": names(value) if len(value) <= MAX_EXPLICIT else None,
            "proven": sum(c.proven for c in checks),
            "total": len(checks),
        })
    return out


def render(proof: Proof) -> str:
    spec = proof.spec
    profile = PROFILES[spec.notation]
    names = Names(proof, profile)
    net = proof.net
    scalar, matrix = _forward(proof, profile, names)
    params_explicit = []
    for l in range(1, net.L + 1):
        W = proof.forms.sym[f"W{l}"]
        if len(proof.forms.values[W]) <= MAX_EXPLICIT:
            params_explicit.append(f"{names(W)} = {names(proof.forms.values[W])}")
    context = {
        "spec": spec,
        "sizes": "-".join(map(str, spec.sizes)),
        "profile": profile,
        "scalar_forward": scalar if len(scalar) <= 2 * MAX_EXPLICIT else scalar[:8],
        "scalar_forward_cut": len(scalar) > 2 * MAX_EXPLICIT,
        "matrix_forward": matrix,
        "params_explicit": params_explicit,
        "cost": f"{profile.cost} = {names(net.C)}",
        "partials": _partials(proof, names, profile),
        "n_partials": len(proof.partials),
        "delta_def": rf"{layer(profile, profile.delta, 'l', 'j')} \equiv \frac{{\partial {profile.cost}}}{{\partial {layer(profile, 'z', 'l', 'j')}}}",
        "grouping": rf"\frac{{\partial {profile.cost}}}{{\partial {layer(profile, profile.weight, 'l', 'jk')}}} = {layer(profile, profile.delta, 'l', 'j')}\, {layer(profile, profile.activation, 'l-1', 'k')}",
        "softmax": not net.acts[net.L].elementwise,
        "forms": _forms(proof, names),
        "summary": proof.summary(),
        "oracle": proof.oracle,
        "note": proof.note,
    }
    return environment().get_template("derivation.tex.j2").render(**context)


def compile_pdf(tex: Path) -> Path:
    """pdflatex in a temporary folder; the PDF is written next to the .tex (whole, or not at all) on success."""
    exe = shutil.which("pdflatex")
    if exe is None:
        raise DeriveError("--pdf: pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    tex = Path(tex)
    target = check_writable(tex.with_suffix(".pdf"), "--pdf")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "-output-directory", tmp,
                                  str(tex.resolve())], capture_output=True, text=True, timeout=PDFLATEX_SECONDS)
        except subprocess.TimeoutExpired:
            raise DeriveError(f"--pdf: pdflatex ran longer than {PDFLATEX_SECONDS} s on {tex.name}; "
                              f"{tex} is written, compile it yourself") from None
        pdf = Path(tmp) / (tex.stem + ".pdf")
        if run.returncode != 0 or not pdf.exists():
            errors = [ln for ln in run.stdout.splitlines() if ln.startswith("!")]
            raise DeriveError(f"pdflatex failed on {tex.name}: {errors[0] if errors else 'see its log'}")
        write_atomically(target, pdf.read_bytes(), "--pdf")
    return target


def to_latex(spec: Spec | str, **prove_args) -> str:
    """Prove a spec and return the LaTeX document."""
    return render(prove(load_spec(spec), **prove_args))
