"""The derivation and its proof as a standalone LaTeX document (Jinja2 + sympy.latex).

Written the way a textbook would: every symbol defined before it is used, the
errors δ defined once, layer by layer, each partial as its short product of an
activation and a δ with the chain-rule paths behind it, and the fully expanded
polynomial only where it fits the page (derive.report.breaking places the breaks).
A network too large to write every partial out gets a summary document instead.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import jinja2
import sympy as sp

from derive.errors import DeriveError
from derive.files import check_writable, write_atomically
from derive.chain import ChainRule
from derive.matrix import MatrixForms
from derive.network import Network
from derive.tables.notations import PROFILES, Profile, latex_names, layer, matrix_latex_names
from derive.proofs import budget
from derive.proofs.concrete import Proof, prove
from derive.report.breaking import TEXT_WIDTH, Breaker, Token, pack, width
from derive.spec import Spec, load_spec

MAX_LISTED = 24  # partials written out in full, spread over every parameter matrix
MAX_PATHS = 4  # chain-rule paths written out per partial
MAX_NEURONS = 12  # deltas written out per layer
MAX_MATRIX = 12  # rows or columns of a matrix written out explicitly
MAX_DOCUMENT_PARAMS = budget.FULL_AUTO_PARAMS  # the full document rests on the full proof; beyond it, a summary
SUMMARY_SAMPLE = 2  # partials per parameter matrix in a summary document
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


_TEXT_ESCAPES = {"\\": r"\textbackslash{}", "^": r"\^{}", "~": r"\~{}", **{ch: "\\" + ch for ch in "_&%#${}"}}


# symbols a summary or a note may carry that inputenc's utf8 cannot typeset in text mode
_TEXT_SYMBOLS = {"δ": r"$\delta$", "ᵀ": "$^T$", "·": r"$\cdot$", "≤": r"$\le$", "≥": r"$\ge$", "≠": r"$\neq$",
                 "→": r"$\to$", "×": r"$\times$", "∘": r"$\circ$", "⊙": r"$\odot$", "σ": r"$\sigma$",
                 "ε": r"$\varepsilon$", "μ": r"$\mu$", "γ": r"$\gamma$", "β": r"$\beta$", "Σ": r"$\Sigma$",
                 "∂": r"$\partial$", "∇": r"$\nabla$", "η": r"$\eta$", "²": "$^2$", "³": "$^3$", "′": "$'$",
                 "−": "$-$", "–": "--", "—": "---", "…": r"\ldots{}"}


def tex_text(s: str) -> str:
    """Plain text (a spec name, a note, a summary) made safe for LaTeX's text mode."""
    s = s.replace("\x00", "").replace("x\u0302", "\x00")  # x̂ (x and a combining hat): one symbol
    s = "".join(_TEXT_ESCAPES.get(ch, ch) for ch in s).replace("\x00", r"$\hat{x}$")
    for ch, tex in _TEXT_SYMBOLS.items():
        s = s.replace(ch, tex)
    return s


class Names:
    """Every symbol of a network in one profile's LaTeX, with the δ's of the document as symbols of their own."""

    def __init__(self, net: Network, forms: MatrixForms, profile: Profile, examples: int | None = None):
        self.net, self.profile = net, profile
        E = net.E if examples is None else examples
        syms = [p.symbol for p in net.params] + [forms.gamma]
        for e in range(E):
            syms += net.y[e] + [s for row in net.a[e] for s in row] + [s for row in net.ap[e] for s in row]
            syms += [s for row in net.zsym[e] for s in row]
        self.scalar = latex_names(profile, syms, net.L)
        # sigma' where no output form exists is the layer's own activation's derivative (ReLU', not the profile's g')
        for e in range(E):
            for l in range(1, net.L + 1):
                for j, s in enumerate(net.ap[e][l]):
                    if s in self.scalar:
                        self.scalar[s] = rf"{self.function(l)}'\left({self.scalar[net.zsym[e][l][j]]}\right)"
        self.matrix = matrix_latex_names(profile, forms.sym.values(), net.L)
        for l in range(1, net.L + 1):
            if f"sp{l}" in forms.sym:
                self.matrix[forms.sym[f"sp{l}"]] = rf"{self.function(l)}'\left({layer(profile, 'z', l)}\right)"
        self.delta: dict = {}  # (e, l, j) -> its symbol
        for e in range(E):
            for l in range(1, net.L + 1):
                for j in range(net.sizes[l]):
                    s = sp.Symbol(f"delta{l}_{j}" + (f"_e{e}" if net.E > 1 else ""))
                    self.delta[e, l, j] = s
                    self.scalar[s] = layer(profile, profile.delta, l, self.index(j, e))
        self.grads = [sp.Symbol(f"_grad_{m}") for m in range(net.sizes[net.L])]  # the output gradient's entries
        self.scalar.update({g: _gradient_label(net, profile, m) for m, g in enumerate(self.grads)})
        self.all = {**self.scalar, **self.matrix}
        self.breaker = Breaker(self.all)

    def index(self, j, e: int | None = None) -> str:
        """A neuron's subscript, with the example after a semicolon in a batch (as the scalar names write it)."""
        return f"{j};{e}" if self.net.E > 1 and e is not None else f"{j}"

    def function(self, l: int) -> str:
        """The activation of layer l: the notation's own letter where it names this function, else its name."""
        act = self.net.acts[l]
        return self.profile.sigma if act.notation_sigma else act.latex

    def __call__(self, expr) -> str:
        return self.breaker.latex(_tidy(expr))

    def sym(self, s) -> str:
        return self.all[s]

    def lines(self, lhs: str, expr, limit: float = TEXT_WIDTH) -> list[str] | None:
        """lhs = expr in display lines (the first after `lhs &=`), or None where it does not fit in MAX_LINES."""
        return self.breaker.lines(_tidy(expr), limit - width(lhs) - _REL_INDENT)


_REL_INDENT = 30.0  # the relation and the continuation lines' \quad


def _tidy(expr):
    """Common numeric factors taken out of sums: (a - y)/2, never a/2 - y/2."""
    if isinstance(expr, sp.MatrixBase):
        return expr.applyfunc(sp.factor_terms)
    if isinstance(expr, sp.Expr) and not isinstance(expr, sp.MatrixExpr):
        return sp.factor_terms(expr)
    return expr


def _display(lhs: str, lines: list[str] | None, *more: list[str] | None) -> dict:
    """Rows of an align*: `lhs &= line`, its continuation lines, then each further `&= ...` of `more` that fits."""
    if not lines:
        return {"lhs": lhs, "rows": None}
    rows = [(lhs, "= " + lines[0])] + [("", r"\quad " + ln) for ln in lines[1:]]
    for extra in more:
        if extra:
            rows += [("", "= " + extra[0])] + [("", r"\quad " + ln) for ln in extra[1:]]
    return {"lhs": lhs, "rows": rows}


def _rows(displays: list[dict]) -> dict:
    """Several displays in one align*; any too long to print are named after it."""
    rows = [r for d in displays if d["rows"] for r in d["rows"]]
    return {"rows": rows, "too_long": [d["lhs"] for d in displays if not d["rows"]]}


def _matrix(names: Names, value: sp.Matrix) -> str | None:
    """An explicit matrix when its entries fit on the page side by side, else None."""
    if value.rows > MAX_MATRIX or value.cols > MAX_MATRIX:
        return None
    cells = [[names(value[r, c]) for c in range(value.cols)] for r in range(value.rows)]
    total = sum(max(width(cells[r][c]) for r in range(value.rows)) + 12 for c in range(value.cols)) + 12
    if total > TEXT_WIDTH - 120:
        return None
    body = r" \\ ".join(" & ".join(row) for row in cells)
    return rf"\begin{{bmatrix}} {body} \end{{bmatrix}}"


# ---------------------------------------------------------------------------
# the parts of the document
# ---------------------------------------------------------------------------

def _symbols(net: Network, forms: MatrixForms, profile: Profile, names: Names) -> list[dict]:
    """What each letter means, before any equation uses it."""
    spec, L = net.spec, net.L
    a_l = layer(profile, profile.activation, "l", "j")
    out = [(a_l, f"the activation of neuron $j$ in layer $l$; layer 0 is the input and layer {L} the output")]
    if profile.input:
        out.append((f"{profile.input}_{{j}}", rf"the input, ${layer(profile, profile.activation, 0, 'j')}$ written on its own"))
    if profile.output:
        out.append((f"{profile.output}_{{j}}", rf"the output, ${layer(profile, profile.activation, L, 'j')}$ written on its own"))
    out.append((layer(profile, "z", "l", "j"), "its weighted input, before the activation"))
    w = layer(profile, profile.weight, "l", "jk")
    what = "the weight from neuron $k$ of layer $l-1$ to neuron $j$ of layer $l$"
    if spec.bias == "augmented":
        what += ("; the last $k$ is the bias, the weight of a constant input 1 "
                 "(the augmented activations, the matrix $A$, end in that 1)")
    out.append((w, what))
    if spec.bias == "separate":
        out.append((layer(profile, "b", "l", "j"), "the bias of neuron $j$ in layer $l$"))
    out.append((f"{profile.target}_{{j}}", "the target of output $j$"))
    if net.E > 1:
        out.append((r"{}_{j;e}", f"a subscript $e$ after the semicolon: example $e$ of the batch of {net.E}"))
    seen: dict[str, list[int]] = {}
    for l in range(1, L + 1):
        seen.setdefault(names.function(l), []).append(l)
    for f, layers in seen.items():
        act = net.acts[layers[0]]
        where = "layer" + ("s " if len(layers) > 1 else " ") + ", ".join(map(str, layers))
        out.append((f, f"the activation function of {where}: {tex_text(act.name.replace('_', ' '))}"
                       + (f", applied to each neuron's $z$; ${f}'$ is its derivative" if act.elementwise else
                          ", which mixes every neuron of its layer")))
    out.append((layer(profile, profile.delta, "l", "j"), rf"the error of neuron $j$ in layer $l$, "
                rf"$\partial {profile.cost}/\partial {layer(profile, 'z', 'l', 'j')}$, found layer by layer in section 4"))
    return [{"symbol": s, "meaning": m} for s, m in out]


def _forward(net: Network, forms: MatrixForms, profile: Profile, names: Names, full: bool) -> dict:
    spec = net.spec
    scalar = []
    per_layer = MAX_NEURONS if full else 2
    for l in range(1, net.L + 1):
        for j in range(min(net.sizes[l], per_layer)):
            zj = names.sym(net.zsym[0][l][j])
            scalar.append(_display(zj, names.lines(zj, net.z[0][l][j])
                                  or _elided(names, zj, net.z[0][l][j], net.a[0][l - 1])))
            act = net.acts[l]
            rhs = (rf"{names.function(l)}\left({zj}\right)" if act.elementwise else
                   rf"{act.latex}_{{{j}}}\left({layer(profile, 'z', l)}\right)")
            scalar.append(_display(names.sym(net.a[0][l][j]), [rhs]))
    A = layer(profile, profile.activation.upper() if spec.bias == "augmented" else profile.activation, "l-1")
    W, b = layer(profile, "W", "l"), layer(profile, "b", "l")
    core = net.layers[net.L].latex_forward(W, A, b if spec.bias == "separate" else None, spec.convention)
    same = len({names.function(l) for l in range(1, net.L + 1)}) == 1
    if same:
        matrix = [rf"{layer(profile, profile.activation, 'l')} = {names.function(1)}\left({core}\right)"]
    else:
        matrix = []
        for l in range(1, net.L + 1):
            A = layer(profile, profile.activation.upper() if spec.bias == "augmented" else profile.activation, l - 1)
            c = net.layers[l].latex_forward(layer(profile, "W", l), A, layer(profile, "b", l)
                                            if spec.bias == "separate" else None, spec.convention)
            matrix.append(rf"{layer(profile, profile.activation, l)} = {names.function(l)}\left({c}\right)")
    explicit = []
    if full:
        for l in range(1, net.L + 1):
            Wl = forms.sym[f"W{l}"]
            shown = _matrix(names, forms.values[Wl])
            if shown:
                explicit.append(f"{names.sym(Wl)} = {shown}")
    cut = any(net.sizes[l] > per_layer for l in range(1, net.L + 1))
    return {"scalar": _rows(scalar), "cut": cut, "matrix": matrix, "explicit": explicit, "example": net.E > 1}


def _elided(names: Names, lhs: str, expr, order: list) -> list[str] | None:
    """A sum too long to write out, as its first terms, a dots and its last term (in the order of `order`'s symbols)."""
    rank = {s: i for i, s in enumerate(order)}
    terms = sorted(sp.Add.make_args(expr), key=lambda t: min((rank.get(s, len(rank)) for s in t.free_symbols),
                                                            default=len(rank)))
    if len(terms) < 6:
        return None
    shown = sp.Add(*terms[:3], evaluate=False)
    first = names.lines(lhs, shown)
    last = names(terms[-1])
    return [first[0] + r" + \cdots + " + last] if first and len(first) == 1 else None


def _cost(net: Network, profile: Profile, names: Names, full: bool) -> dict:
    C = profile.cost
    per = None
    if net.E > 1:
        e0 = f"{C}_{{0}}"
        per = _display(e0, names.lines(e0, net.cost_example[0]))
        total = rf"\frac{{1}}{{{net.E}}} \sum_{{e}} {C}_{{e}}" if net.scale != 1 else rf"\sum_{{e}} {C}_{{e}}"
        whole = _display(C, [total])
    else:
        whole = _display(C, names.lines(C, net.C))
    return {"whole": whole, "per_example": per, "E": net.E, "mean": net.scale != 1}


def _gradient_label(net: Network, profile: Profile, m: int) -> str:
    """The output gradient's entry m, in the profile's own letter where it has one."""
    a = layer(profile, profile.activation, net.L, str(m)) if not profile.output else f"{profile.output}_{{{m}}}"
    cost = f"{profile.cost}_{{0}}" if net.E > 1 else profile.cost
    full = rf"\frac{{\partial {cost}}}{{\partial {a}}}"
    return f"{profile.gradient}_{{{m}}}" if profile.gradient else full


def _errors(net: Network, chain: ChainRule, profile: Profile, names: Names, full: bool) -> dict:
    """δ of example 0, layer by layer from the output: each in terms of the layer above, then (where it fits) in full."""
    L = net.L
    grads = names.grads
    labels = {g: names.sym(g) for g in grads}
    gradient = []
    for m, g in enumerate(grads[:MAX_NEURONS if full else 2]):
        value = sp.diff(net.cost_example[0], net.a[0][L][m])
        lhs = labels[g]
        a = names.sym(net.a[0][L][m])
        if profile.gradient:
            lhs = rf"{labels[g]} = \frac{{\partial {profile.cost}{'_{0}' if net.E > 1 else ''}}}{{\partial {a}}}"
        gradient.append(_display(lhs, names.lines(lhs, value)))
    gradient = _rows(gradient)
    layers = []
    per_layer = MAX_NEURONS if full else 2
    for l in range(L, 0, -1):
        rows = []
        for j in range(min(net.sizes[l], per_layer)):
            d = names.delta[0, l, j]
            lhs = names.sym(d)
            if l == L:
                local = chain.local_to(0, l)[j]
                step = sp.Add(*[grads[m] * v for m, v in local])
                value = chain.delta_step(0, l, j)
            else:
                step = chain.delta_step(0, l, j, above=lambda q, l=l: names.delta[0, l + 1, q])
                value = None
            rows.append(_display(lhs, names.lines(lhs, step), names.lines(lhs, value) if value is not None else None))
        layers.append({"layer": l, "rows": _rows(rows), "cut": net.sizes[l] > per_layer})
    return {"gradient": gradient, "gradient_cut": len(grads) > (MAX_NEURONS if full else 2), "layers": layers, "output": layer(profile, profile.activation, L),
            "symbol": profile.gradient}


def _sample(net: Network, per_matrix: int | None) -> list:
    """The partials to write out: the first of every parameter matrix in turn, so that every layer is seen."""
    groups: dict[str, list] = {}
    for p in net.params:
        groups.setdefault(p.matrix, []).append(p)
    take = per_matrix or max(1, -(-MAX_LISTED // len(groups)))
    out = []
    for ps in groups.values():
        out += ps[:take]
    return out[:MAX_LISTED]


def _partial(net: Network, chain: ChainRule, profile: Profile, names: Names, p, derivation=None, check=None,
             form_heading: str = "") -> dict:
    cost = profile.cost
    lhs = rf"\frac{{\partial {cost}}}{{\partial {names.sym(p.symbol)}}}"
    short = chain.partial_step(p, lambda e: names.delta[e, p.layer, p.j])
    item = {"param": names.sym(p.symbol), "short": _display(lhs, names.lines(lhs, short)), "paths": None,
            "n_paths": chain.count_paths(p), "more_paths": 0, "value": None, "n_terms": None, "entry": None}
    if derivation is not None and derivation.paths is not None:
        lines = []
        for n, path in enumerate(derivation.paths[:MAX_PATHS]):
            toks = []
            for f in reversed(path.factors):
                head = cost if f.head == "C" else names.sym(sp.Symbol(f.head))
                toks.append(Token(rf"\frac{{\partial {head}}}{{\partial {names.sym(sp.Symbol(f.tail))}}}"))
            if n:
                toks[0] = Token("+ " + toks[0].text)
            packed = pack(toks, TEXT_WIDTH - width(lhs) - 40)
            lines += packed or [toks[0].text + r" \cdots"]
        item["paths"] = lines
        item["more_paths"] = len(derivation.paths) - min(len(derivation.paths), MAX_PATHS)
    if derivation is not None:
        value = names.lines(lhs, derivation.value)
        item["value"] = _display(lhs, value)
        item["n_terms"] = len(sp.Add.make_args(sp.expand(derivation.value))) if value is None else None
    if check is not None:
        r, c = check.entry
        item["entry"] = {"form": form_heading, "index": f"({r}, {c})",
                         "verdict": check.verdict.lower()}
    return item


def heading(form, net: Network, profile: Profile) -> str:
    """A matrix form's heading in words: 'Change matrix of layer 1', 'Output error (BP1)'."""
    words = form.label[0].upper() + form.label[1:]
    if form.truth == "update":
        words += " of the " + ("biases" if form.matrix.startswith("b") else "weights")
    words += f", layer {form.layer}"
    if form.truth == "delta_col" and net.E > 1:
        words += f", example {form.example}"
    bp = form.key.split("[")[0].split(" ")[0]
    if profile.bp_labels and bp.startswith("BP") and form.truth == "delta":
        words += f" ({bp})"
    return words


def _forms(forms: MatrixForms, net: Network, profile: Profile, names: Names, counts: dict, evaluated: bool) -> list[dict]:
    out = []
    for form in forms.forms:
        lhs = names(form.lhs)
        toks = [Token(t) for t in _split_matmul(names, form.expr)]
        eq = pack(toks, TEXT_WIDTH - width(lhs) - _REL_INDENT)
        explicit = _matrix(names, forms.evaluated[form.key]) if evaluated else None
        proven, total = counts.get(form.key, (0, 0))
        out.append({"heading": heading(form, net, profile), "equation": _display(lhs, eq), "explicit": explicit,
                    "proven": proven, "total": total})
    return out


def _split_matmul(names: Names, expr) -> list[str]:
    """A long product of matrices as its factors, each a place to break."""
    if isinstance(expr, sp.MatMul) and width(names(expr)) > TEXT_WIDTH - 100:
        return [names(a) for a in expr.args]
    return [names(expr)]


def _notes(net: Network, forms: MatrixForms, profile: Profile, names: Names) -> list[str]:
    """What the matrix forms' own symbols mean."""
    out = [r"$M^{T}$ is the transpose of $M$ and $\odot$ the entrywise (Hadamard) product."]
    S = forms.sym
    if any(k.startswith("D") for k in S):
        out.append(rf"${layer(profile, 'D', 'l')}$ is the diagonal matrix of the derivatives of layer $l$'s "
                   rf"activation at ${layer(profile, 'z', 'l')}$.")
    if any(k.startswith("J") for k in S):
        out.append(r"$J$ is the Jacobian of the softmax, $J_{mj} = \partial a_m / \partial z_j$.")
    if net.spec.bias == "augmented":
        out.append(rf"${layer(profile, profile.activation.upper(), 'l')}$ is ${layer(profile, profile.activation, 'l')}$ "
                   "with the constant 1 of the bias appended.")
    if "ones_B" in S and net.spec.bias == "separate":
        out.append(r"$\mathbf{1}$ is the vector of ones, which sums over the examples of the batch.")
    if any(f.truth == "update" for f in forms.forms):
        out.append(rf"${profile.rate}$ is the learning rate, and a prime marks a parameter after one step.")
    g = names.matrix.get(S.get("g"))
    if g:
        out.append(rf"${g}$ is the gradient of the cost in the outputs, the vector of the "
                   rf"${_gradient_label(net, profile, 'j')}$ of section 4.")
    return out


def _context(net: Network, forms: MatrixForms, chain: ChainRule, profile: Profile, names: Names, full: bool) -> dict:
    spec = net.spec
    acts = ", ".join(tex_text(a.name.replace("_", " ")) for a in net.acts[1:])
    return {
        "name": tex_text(spec.name),
        "about": (f"Sizes {'-'.join(map(str, spec.sizes))}; activations {acts}; {tex_text(spec.cost.replace('_', ' '))} "
                  f"cost; {spec.convention} convention; bias {spec.bias}; batch {spec.batch}"
                  + (f" of {spec.examples} examples" if spec.batch != "single" else "") + "."),
        "profile": tex_text(profile.title),
        "symbols": _symbols(net, forms, profile, names),
        "forward": _forward(net, forms, profile, names, full),
        "cost": _cost(net, profile, names, full),
        "errors": _errors(net, chain, profile, names, full),
        "cost_symbol": profile.cost,
        "delta_def": rf"{layer(profile, profile.delta, 'l', names.index('j', 'e'))} \equiv "
                     rf"\frac{{\partial {profile.cost}{'_{e}' if net.E > 1 else ''}}}"
                     rf"{{\partial {layer(profile, 'z', 'l', names.index('j', 'e'))}}}",
        "notes": _notes(net, forms, profile, names),
        "full": full,
    }


def render(proof: Proof) -> str:
    """The full document: every symbol, the forward pass, the cost, the δ's, a sample of partials, every form."""
    net, forms, chain = proof.net, proof.forms, proof.chain
    profile = PROFILES[proof.spec.notation]
    names = Names(net, forms, profile)
    by_param = {c.derivation.param.symbol: c for c in proof.partials if c.derivation is not None}
    partials = []
    for p in _sample(net, None):
        check = by_param.get(p.symbol)
        form = forms.form(check.form) if check else None
        partials.append(_partial(net, chain, profile, names, p, check.derivation if check else None, check,
                                 heading(form, net, profile) if form else ""))
    counts: dict = {}
    for c in proof.checks:
        got = counts.setdefault(c.form, [0, 0])
        got[0] += c.proven
        got[1] += 1
    context = _context(net, forms, chain, profile, names, True)
    context.update({
        "partials": partials, "n_partials": len(proof.partials),
        "forms": _forms(forms, net, profile, names, counts, True),
        "summary": tex_text(proof.summary()), "oracle": proof.oracle, "note": tex_text(proof.note),
        "per_layer": None,
    })
    return environment().get_template("derivation.tex.j2").render(**context)


def render_summary(proof, note: str = "") -> str:
    """A network too large to write out: its forms, the per-layer counts of a scalable proof, a sample of partials."""
    spec = proof.spec
    net = Network(spec)
    forms = MatrixForms(net, evaluate=False)
    chain = ChainRule(net)
    profile = PROFILES[spec.notation]
    names = Names(net, forms, profile, examples=min(net.E, 1) if net.E == 1 else net.E)
    partials = [_partial(net, chain, profile, names, p) for p in _sample(net, SUMMARY_SAMPLE)]
    context = _context(net, forms, chain, profile, names, False)
    context.update({
        "partials": partials, "n_partials": spec.n_params,
        "forms": _forms(forms, net, profile, names, {k: tuple(v) for k, v in proof.per_form.items()}, False),
        "summary": tex_text(proof.summary()), "oracle": "sample", "note": tex_text(note),
        "per_layer": [{"matrix": names.sym(forms.sym[k]) if k in forms.sym else tex_text(k),
                       "proven": v[0], "total": v[1]} for k, v in proof.per_layer.items()],
        "methods": [tex_text(m) for m in proof.methods()],
    })
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
