"""The derivation document of a layer-list spec (batch norm, layer norm, residual, activation and dense layers).

A reader's document: the symbols, the layers, the forward equations layer by layer (each kind's
own LaTeX in derive.tables.layers), the backward forms each layer's proof established for any
upstream gradient G = ∂C/∂y (and how each layer's G comes from the layer above, down from the
cost), one entry of each parameter's gradient written out in scalars, and the verdicts with
their counts. Written with the same Jinja2 environment and line breaking as the dense documents.
"""

from __future__ import annotations

import re

import sympy as sp

from derive.proofs.layered import LayeredProof
from derive.report.breaking import TEXT_WIDTH, Breaker, width
from derive.report.latex import environment, tex_text
from derive.tables.activations import ACTIVATIONS
from derive.tables.costs import COSTS
from derive.tables.layers import KINDS, latex_backward
from derive.verdict import Verdict

_GREEK = {"mu": r"\mu", "gamma": r"\gamma", "beta": r"\beta", "xhat": r"\hat{x}",
          "xc": r"\bar{x}", "g": "G", "delta": r"\delta", "dxhat": r"\hat{g}"}
_NAME = re.compile(r"^([A-Za-z]+?)(\d+)((?:_e?\d+)*)$")


def symbol_tex(s: sp.Symbol) -> str:
    """A graph symbol as a document writes it: xhat2_e0_1 -> \\hat{x}^{(2)}_{0,1}, w1_2_0 -> w^{(1)}_{2,0}."""
    name = s.name
    if name.startswith(("x_e", "y_e")):  # the network's inputs and targets: x_e0_1, y_e0_0
        letter, e, j = name.split("_")
        return f"{letter if letter == 'x' else 'T'}_{{{e[1:]},{j}}}"
    m = _NAME.match(name)
    if not m:
        return name
    base, layer, rest = m.groups()
    if base == "ap":  # an activation's derivative where it has no form in a
        base = "a'"
    idx = ",".join(p.lstrip("e") for p in rest.split("_") if p)
    head = rf"\sigma^{{2({layer})}}" if base == "var" else _GREEK.get(base, base) + f"^{{({layer})}}"
    return head + (f"_{{{idx}}}" if idx else "")


def _names(expr) -> dict:
    return {s: symbol_tex(s) for s in sp.sympify(expr).free_symbols}


def _input_names(spec) -> dict:
    """Each layer's input as a document names it: x, or the output of the layer that feeds it."""
    out: dict = {}

    def output(b) -> str:
        if b.kind == "dense" or b.kind == "activation":
            return rf"a^{{({b.position})}}"
        return rf"y^{{({b.position})}}"

    def walk(blocks, given: str):
        for b in blocks:
            out[b.position] = given
            if b.inner:
                walk(b.inner, given)
            given = output(b)
    walk(spec.layers, "x")
    return out


def _fill(template: str, block, given: str) -> str:
    act = ACTIVATIONS[block.activation].latex if block.kind in ("dense", "activation") else r"\sigma"
    l = str(block.position)
    return (template.replace("a^{({m})}", given).replace("{l}", l).replace("{m}", str(block.position - 1))
            .replace("{act}", act).replace(r"(x)^{\top}", r"x^{\top}"))


def _without(tex: str, missing: set) -> str:
    """A forward equation without the parameters a layer lacks (a dense layer's bias, a norm's γ and β)."""
    if "b" in missing:
        tex = re.sub(r"\s*\+\s*b\^\{\(\d+\)\}", "", tex)
    if "gamma" in missing:
        tex = re.sub(r"\\gamma\^\{\(\d+\)\}(_[a-z])?\s*(\\odot)?\s*", "", tex)
    if "beta" in missing:
        tex = re.sub(r"\s*\+\s*\\beta\^\{\(\d+\)\}(_[a-z])?", "", tex)
    return tex


def _missing(block, convention: str) -> set:
    own = {p for p, _ in KINDS[block.kind].params(block, convention)}
    possible = {"dense": {"b"}, "batchnorm": {"gamma", "beta"}, "layernorm": {"gamma", "beta"}}.get(block.kind, set())
    return possible - own


def _where(block, spec) -> str:
    """Where a layer sits: 'in residual block 4', or ''."""
    for b in spec.blocks:
        if block in b.inner:
            return f" (inside residual block {b.position})"
    return ""


def _entry(net, block, limit: float) -> list[dict]:
    """One entry of each parameter's gradient from the layer's textbook form, in scalars."""
    X, _, Y = net.state[block.position]
    G = sp.Matrix(Y.rows, Y.cols, lambda e, j: sp.Symbol(f"g{block.position}_e{e}_{j}"))
    _, grads = net.textbook(G, blocks=[block])
    out = []
    for pname, M in grads.get(block.position, {}).items():
        symbol = net.params[block.position][pname][0, 0]
        lhs = rf"\frac{{\partial C}}{{\partial {symbol_tex(symbol)}}}"
        rowwise = net.P[block.position][pname]
        r, c = next((r, c) for r in range(rowwise.rows) for c in range(rowwise.cols) if rowwise[r, c] == symbol)
        value = M[r, c]
        lines = Breaker(_names(value), limit - width(lhs) - 30).lines(value)
        out.append({"lhs": lhs, "lines": lines})
    return out


def render_layers(proof: LayeredProof) -> str:
    """The document of a layer-list proof."""
    spec, net = proof.spec, proof.net
    inputs = _input_names(spec)
    rows, forward, backward = [], [], []
    per = {}
    for row in proof.per_block():
        per.setdefault(row["layer"], []).append(row)
    for b in spec.blocks:
        kind = KINDS[b.kind]
        settings = []
        if b.kind in ("dense", "activation"):
            settings.append(tex_text(b.activation.replace("_", " ")))
        if b.kind == "dense" and b.bias != "separate":
            settings.append("no bias")
        if b.kind in ("batchnorm", "layernorm"):
            settings.append(rf"$\varepsilon = {sp.latex(sp.Rational(b.eps.numerator, b.eps.denominator))}$")
            settings.append("affine" if b.affine else "no affine")
        params = ", ".join(rf"${_GREEK.get(p, p)}^{{({b.position})}}$ {r}$\times${c}"
                           for p, (r, c) in kind.params(b, spec.convention)) or "none"
        rows.append({"layer": b.position, "kind": tex_text(b.kind) + tex_text(_where(b, spec)),
                     "width": f"{b.n_in} $\\to$ {b.width}", "settings": ", ".join(settings) or "--",
                     "params": params})
        given = inputs[b.position]
        missing = _missing(b, spec.convention)
        eqs = [_without(_fill(f, b, given), missing) for f in kind.latex_forward]
        if b.kind in ("batchnorm", "layernorm", "residual"):
            eqs.insert(0, rf"x = {given}")
        if b.inner:
            inner = ", ".join(str(i.position) for i in b.inner)
            eqs.append(rf"\text{{$F^{{({b.position})}}$: layer{'s' if len(b.inner) > 1 else ''} {inner}, below}}")
        forward.append({"title": f"Layer {b.position}: {tex_text(b.kind)}{tex_text(_where(b, spec))}",
                        "equations": eqs})
        forms = []
        for row in per.get(b.position, []):
            (gi, ti), (gp, tp) = row["input"], row["partials"]
            ok = gi == ti and gp == tp
            forms.append({"form": tex_text(row["form"]), "verdict": Verdict.PROVEN if ok else "NOT PROVEN",
                          "input": f"{gi}/{ti}", "params": f"{gp}/{tp}" if tp else "--"})
        how, other = _reader(spec, b)
        lacks = [rf"\partial {_GREEK.get(p, p)}^{{(" for p in missing]  # the gradient of a parameter it lacks
        back = [_without(_fill(f, b, given), missing) for f in latex_backward(b) if not any(x in f for x in lacks)]
        further = [{"name": tex_text(name), "equations": [_without(_fill(f, b, given), missing) for f in lines]}
                   for name, lines in getattr(kind, "latex_forms", ())]  # further forms, where the table writes them
        backward.append({"title": f"Layer {b.position}: {tex_text(b.kind)}{tex_text(_where(b, spec))}",
                         "upstream": how, "equations": back, "forms": forms, "further": further,
                         "entries": _entry(net, b, TEXT_WIDTH)})
    backward.reverse()  # from the cost down, as backpropagation runs
    cost = COSTS[spec.cost]
    last = spec.layers[-1]
    out_name = rf"a^{{({last.position})}}" if last.kind in ("dense", "activation") else rf"y^{{({last.position})}}"
    per_example = (cost.latex.replace("{a}_j", f"{out_name}_{{bj}}").replace("{y}_j", "T_{bj}")
                   .replace("{a}", f"{out_name}_{{b}}").replace("{y}", "T_{b}"))
    scale = r"\frac{1}{B} \sum_{b}" if spec.batch == "mean" and spec.examples > 1 else (
        r"\sum_{b}" if spec.examples > 1 else "")
    failures = [c for c in proof.checks if not c.proven][:6]
    context = {
        "name": tex_text(spec.name),
        "about": (f"Inputs {spec.inputs}; {len(spec.blocks)} layers; {tex_text(spec.cost.replace('_', ' '))} cost; "
                  f"{spec.convention} convention; batch {spec.batch}"
                  + (f" of $B = {spec.examples}$ examples" if spec.batch != "single" else "") + "."),
        "row": spec.convention == "row",
        "layers": rows, "forward": forward, "backward": backward,
        "cost": rf"C = {scale} {per_example}".replace("  ", " "),
        "summary": tex_text(proof.summary()),
        "ok": proof.ok,
        "failures": [{"name": tex_text(c.name), "layer": c.position, "form": tex_text(c.form),
                      "verdict": c.verdict} for c in failures],
        "note": tex_text(proof.note),
    }
    return environment().get_template("layers.tex.j2").render(**context)


def _reader(spec, block) -> tuple[str, int | None]:
    """How a layer's upstream gradient G is found: from the cost, the layer above, or the enclosing block."""
    siblings = list(spec.layers)
    parent = None
    for b in spec.blocks:
        if block in b.inner:
            siblings, parent = list(b.inner), b
    i = siblings.index(block)
    l = block.position
    if i + 1 < len(siblings):
        q = siblings[i + 1].position
        return (rf"$G^{{({l})}} = \partial C / \partial x^{{({q})}}$, what layer {q} hands down.", q)
    if parent is not None:
        return (rf"$G^{{({l})}} = G^{{({parent.position})}}$: the block adds its input to this layer's output.",
                parent.position)
    return (r"$G^{(" + str(l) + r")} = \partial C / \partial y^{(" + str(l) + r")}$, from the cost.", None)
