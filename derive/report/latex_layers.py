"""The derivation document of a layer-list spec (dense, norm, residual, activation, convolution, pooling, flatten,
attention and recurrent layers).

A reader's document: the symbols, the layers, the forward equations layer by layer (each kind's
own LaTeX in derive.tables.layers), the backward forms each layer's proof established for any
upstream gradient G = ∂C/∂y (and how each layer's G comes from the layer above, down from the
cost), one entry of each parameter's gradient written out in scalars, and the verdicts with
their counts. Written with the same Jinja2 environment and line breaking as the dense documents.
Shaped arrays' entries are named like PyTorch's tensors' ([b, c, h, w], [b, t, j]): a symbol of the
graph, flat per example in C, H, W order, gets its multi-index back here (`Namer`).
"""

from __future__ import annotations

import re

import numpy as np
import sympy as sp

from derive.proofs.layered import LayeredProof
from derive.report.breaking import TEXT_WIDTH, Breaker, pack, width
from derive.report.latex import environment, tex_text
from derive.report.layers import shape_text
from derive.tables import spatial_latex
from derive.tables.activations import ACTIVATIONS
from derive.tables.costs import COSTS
from derive.tables.layers import KINDS, latex_backward
from derive.verdict import Verdict

_GREEK = {"mu": r"\mu", "gamma": r"\gamma", "beta": r"\beta", "xhat": r"\hat{x}",
          "xc": r"\bar{x}", "g": "G", "delta": r"\delta", "dxhat": r"\hat{g}"}
_NAME = re.compile(r"^([A-Za-z]+?)(\d+)((?:_e?\d+)*)$")
_NODE = re.compile(r"^([A-Za-z]+?)(\d+)(?:t(\d+))?(?:_e(\d+))?((?:_\d+)*)$")  # label, layer, step, example, rest
_PARAM_TEX = {"W": "w", "Wq": "w_q", "Wk": "w_k", "Wv": "w_v", "Wo": "w_o", "Wxh": "w_{xh}", "Whh": "w_{hh}",
              "b": "b", "gamma": r"\gamma", "beta": r"\beta"}  # an entry of each parameter
_MATRIX_TEX = {"Wq": "W_q", "Wk": "W_k", "Wv": "W_v", "Wo": "W_o", "Wxh": "W_{xh}", "Whh": "W_{hh}"}
# a node's letter where a kind's equations call it otherwise: attention's softmax is P, a recurrent layer's h,
# max pooling's output y
_NODE_TEX = {"attention": {"a": "p"}, "rnn": {"a": "h"}, "maxpool2d": {"m": "y", "mask": r"\mathbb{1}"}}
ENTRY_LINES = 14  # an entry of a convolution's gradient sums over every position: allow it a third of a page
_CONV = ("conv2d", "conv1d")
_POOL = ("avgpool2d", "maxpool2d")
_CHECK = re.compile(r"^dC/d([A-Za-z]+)(\d+)\[([\d,]+)\]$")  # a check's name: dC/dw1[0,5], dC/dx2[1,6]
_TEXT = {"⋆": r"$\star$", "°": r"$^\circ$", "j*": r"$j^*$", "x_j": "$x_j$", "P_tu": "$P_{tu}$", "δ_t": r"$\delta_t$",
         "d_k": "$d_k$"}


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


def _names(expr, namer=symbol_tex) -> dict:
    return {s: namer(s) for s in sp.sympify(expr).free_symbols}


def _index(*parts) -> str:
    return "_{" + ",".join(str(int(p)) for p in parts) + "}"


class Namer:
    """Every symbol of a layer-list graph as a document writes it, shaped entries with PyTorch's multi-index:
    x_e0_5 of a [1, 4, 4] input -> x_{0,0,1,1}; w1_1_5 of a conv2d on one channel -> w^{(1)}_{1,0,1,2};
    z1_e0_5_1 of a conv2d (example 0, position 5, channel 1) -> z^{(1)}_{0,1,1,1}; q1_e1_2_0 of attention ->
    q^{(1)}_{1,2,0}; a1t2_e0_1 of an rnn -> h^{(1)}_{0,2,1}."""

    def __init__(self, net):
        self.net, self.spec = net, net.spec
        self.block = {b.position: b for b in net.spec.blocks}
        self.params = {p[0]: p for p in net.param_list}

    def __call__(self, s: sp.Symbol) -> str:
        name = s.name
        if name.startswith("x_e"):
            _, e, k = name.split("_")
            return "x" + _index(e[1:], *self._unravel(int(k), self.spec.shape))
        if s in self.params:
            return self._param(s)
        m = _NODE.match(name)
        if not m or name.startswith("y_e") or int(m.group(2)) not in self.block:
            return symbol_tex(s)
        label, layer, step, e, rest = m.groups()
        block = self.block[int(layer)]
        if e is None or block.kind not in spatial_latex.WRITERS:
            return symbol_tex(s)  # a flat layer's entry: [b, j]
        rest = [int(p) for p in rest.split("_") if p]
        prime = label == "ap"
        label = "a" if prime else label
        letter = _NODE_TEX.get(block.kind, {}).get(label, _GREEK.get(label, label))
        head = f"{letter}{chr(39) if prime else ''}^{{({layer})}}"
        if label == "g":  # an upstream gradient: flat per example in the layer's output shape
            return head + _index(e, *self._unravel(rest[-1], block.shape))
        r, col = rest[0], rest[1] if len(rest) > 1 else 0
        if step is not None:  # a recurrent layer's step t: [b, t, j]
            return head + _index(e, step, rest[-1])
        if block.kind in _CONV:  # rows are (example, position), columns the channels: [b, o, h, w]
            return head + _index(e, col, *self._unravel(r, block.shape[1:]))
        if block.kind in _POOL:  # one entry per output entry [b, c, h, w]; a mask's, per window entry too
            return head + _index(e, *self._unravel(r, block.shape), *rest[1:])
        return head + _index(e, r, col)  # rows are (example, position): [b, t, j]

    def check(self, name: str) -> str:
        """A check's name as mathematics: dC/dw1[0,5] -> ∂C/∂w^{(1)}_{0,0,1,2}; dC/dx2[1,6], an entry of layer 2's
        input, -> ∂C/∂x^{(2)}_{1,1,1,0}; '' for a name it does not know."""
        m = _CHECK.match(name)
        if not m or int(m.group(2)) not in self.block:
            return ""
        head, layer, idx = m.group(1), int(m.group(2)), [int(i) for i in m.group(3).split(",")]
        if head == "x" and len(idx) == 2:
            block = self.block[layer]
            inner = self._unravel(idx[1], block.shape_in or (block.n_in,))
            return rf"\partial C / \partial x^{{({layer})}}" + _index(idx[0], *inner)
        symbol = sp.Symbol(f"{head}{layer}_" + "_".join(map(str, idx)))
        return rf"\partial C / \partial {self._param(symbol)}" if symbol in self.params else ""

    def _param(self, s: sp.Symbol) -> str:
        _, layer, pname, _ = self.params[s]
        block = self.block[layer]
        head = _PARAM_TEX.get(pname, pname)
        head = f"({head})^{{({layer})}}" if "_" in head else f"{head}^{{({layer})}}"
        parts = s.name.split("_")[1:]
        if pname == "W" and block.kind in _CONV:  # to output channel o from (c, kernel position): torch's weight
            o, k = map(int, parts)
            return head + _index(o, *self._unravel(k, (block.shape_in[0],) + tuple(block.kernel_size)))
        return head + _index(*parts)

    @staticmethod
    def _unravel(k: int, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(np.unravel_index(k, shape)) if len(shape) > 1 else (k,)


def _natural(s: sp.Symbol) -> sp.Symbol:
    """A symbol renamed so that SymPy's order of terms is numeric: x_e0_10 after x_e0_9, not before x_e0_2."""
    return sp.Symbol(re.sub(r"\d+", lambda m: m.group().zfill(5), s.name), **s.assumptions0)


def input_names(spec) -> dict:
    """Each layer's input as a document names it: x, or the output of the layer that feeds it."""
    out: dict = {}

    def output(b) -> str:
        if b.kind in ("dense", "activation") + _CONV:
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


def _activation(block) -> str | None:
    """The activation a layer applies: a dense, activation or convolution layer's, a recurrent layer's
    nonlinearity; None for the others."""
    if "nonlinearity" in KINDS[block.kind].keys:
        return block.nonlinearity
    if block.kind in ("dense", "activation") or "activation" in KINDS[block.kind].keys:
        return block.activation
    return None


def _fill(template: str, block, given: str) -> str:
    name = _activation(block)
    act = ACTIVATIONS[name].latex if name else r"\sigma"
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


def equations(block, spec, given: str = "x") -> tuple[list[str], list[str]]:
    """A layer's forward and backward equations for its own settings, its input called `given`: the table's
    (derive.tables.layers, derive.tables.spatial_latex) with its number, activation and input filled in."""
    if block.kind in spatial_latex.WRITERS:
        return ([_fill(f, block, given) for f in spatial_latex.forward(block)],
                [_fill(f, block, given) for f in spatial_latex.backward(block)])
    missing = _missing(block, spec.convention)
    lacks = [rf"\partial {_GREEK.get(p, p)}^{{(" for p in missing]  # the gradient of a parameter it lacks
    return ([_without(_fill(f, block, given), missing) for f in KINDS[block.kind].latex_forward],
            [_without(_fill(f, block, given), missing) for f in latex_backward(block)
             if not any(x in f for x in lacks)])


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


def _entry(net, block, limit: float, namer=symbol_tex) -> list[dict]:
    """One entry of each parameter's gradient from the layer's textbook form, in scalars, its terms in the order
    of their indices."""
    X, _, Y = net.state[block.position]
    G = sp.Matrix(Y.rows, Y.cols, lambda e, j: sp.Symbol(f"g{block.position}_e{e}_{j}"))
    _, grads = net.textbook(G, blocks=[block])
    out = []
    for pname, M in grads.get(block.position, {}).items():
        symbol = net.params[block.position][pname][0, 0]
        lhs = rf"\frac{{\partial C}}{{\partial {namer(symbol)}}}"
        rowwise = net.P[block.position][pname]
        r, c = next((r, c) for r in range(rowwise.rows) for c in range(rowwise.cols) if rowwise[r, c] == symbol)
        renamed = {s: _natural(s) for s in M[r, c].free_symbols}
        value = M[r, c].xreplace(renamed)
        names = {new: namer(old) for old, new in renamed.items()}
        breaker = Breaker(names, limit - width(lhs) - 30)
        lines = pack(breaker.tokens(value), breaker.limit, ENTRY_LINES)
        out.append({"lhs": lhs, "lines": lines})
    return out


def render_layers(proof: LayeredProof) -> str:
    """The document of a layer-list proof."""
    spec, net = proof.spec, proof.net
    inputs = input_names(spec)
    rows, forward, backward = [], [], []
    per = {}
    for row in proof.per_block():
        per.setdefault(row["layer"], []).append(row)
    namer = Namer(net)
    for b in spec.blocks:
        kind = KINDS[b.kind]
        shaped = b.kind in spatial_latex.WRITERS
        rows.append({"layer": b.position, "kind": tex_text(b.kind) + tex_text(_where(b, spec)),
                     "width": " $\\to$ ".join(tex_text(shape_text(sh)) for sh in _shapes(b)),
                     "settings": ", ".join(_settings_tex(b)) or "--", "params": _params_tex(b, spec.convention)})
        given = inputs[b.position]
        eqs, back = equations(b, spec, given)
        if (b.kind in ("batchnorm", "layernorm", "residual") or shaped) and given != "x":
            eqs.insert(0, rf"x = {given}")
        if b.inner:
            inner = ", ".join(str(i.position) for i in b.inner)
            eqs.append(rf"\text{{$F^{{({b.position})}}$: layer{'s' if len(b.inner) > 1 else ''} {inner}, below}}")
        forward.append({"title": f"Layer {b.position}: {tex_text(b.kind)}{tex_text(_where(b, spec))}",
                        "equations": eqs, "sizes": _sizes_tex(b) if shaped else ""})
        forms = []
        for row in per.get(b.position, []):
            (gi, ti), (gp, tp) = row["input"], row["partials"]
            ok = gi == ti and gp == tp
            forms.append({"form": tex_text(row["form"]), "verdict": Verdict.PROVEN if ok else "NOT PROVEN",
                          "input": f"{gi}/{ti}", "params": f"{gp}/{tp}" if tp else "--"})
        how, other = _reader(spec, b)
        missing = _missing(b, spec.convention)
        further = [{"name": tex_text(name), "equations": [_without(_fill(f, b, given), missing) for f in lines]}
                   for name, lines in getattr(kind, "latex_forms", ())]  # further forms, where the table writes them
        backward.append({"title": f"Layer {b.position}: {tex_text(b.kind)}{tex_text(_where(b, spec))}",
                         "upstream": how, "equations": back, "forms": forms, "further": further,
                         "note": _note(b), "entries": _entry(net, b, TEXT_WIDTH, namer)})
    backward.reverse()  # from the cost down, as backpropagation runs
    cost = COSTS[spec.cost]
    last = spec.layers[-1]
    out_name = (rf"a^{{({last.position})}}" if last.kind in ("dense", "activation") + _CONV
                else rf"y^{{({last.position})}}")
    per_example = (cost.latex.replace("{a}_j", f"{out_name}_{{bj}}").replace("{y}_j", "T_{bj}")
                   .replace("{a}", f"{out_name}_{{b}}").replace("{y}", "T_{b}"))
    scale = r"\frac{1}{B} \sum_{b}" if spec.batch == "mean" and spec.examples > 1 else (
        r"\sum_{b}" if spec.examples > 1 else "")
    failures = [c for c in proof.checks if not c.proven][:6]
    context = {
        "name": tex_text(spec.name),
        "about": (f"Inputs {shape_text(spec.shape)}; {len(spec.blocks)} layers; {tex_text(spec.cost.replace('_', ' '))} cost; "
                  f"{spec.convention} convention; batch {spec.batch}"
                  + (f" of $B = {spec.examples}$ examples" if spec.batch != "single" else "") + "."),
        "row": spec.convention == "row",
        "shaped": _shaped_tex(spec),
        "has": {k for b in spec.blocks for k in (b.kind, "conv" if b.kind in _CONV else "",
                                                  "pool" if b.kind in _POOL else "")},
        "layers": rows, "forward": forward, "backward": backward,
        "cost": rf"C = {scale} {per_example}".replace("  ", " "),
        "summary": tex_text(proof.summary()),
        "ok": proof.ok,
        "failures": [{"name": tex_text(c.name), "tex": namer.check(c.name), "layer": c.position,
                      "form": tex_text(c.form), "verdict": c.verdict} for c in failures],
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


def _shaped_tex(spec) -> str:
    """How an entry of the shaped input is written ('' for a flat input): x_{b,c,h,w} of a [B, C, H, W] batch."""
    if len(spec.shape) < 2:
        return ""
    first = spec.layers[0].kind
    axes = {3: "c,h,w", 2: "c,i" if first in _CONV else "t,j"}[len(spec.shape)]
    dims = {3: "C, H, W", 2: "C, L" if first in _CONV else "T, d"}[len(spec.shape)]
    return (rf"$x_{{b,{axes}}}$ is entry ${axes.replace(',', ', ')}$ of example $b$, the batch being a tensor "
            rf"$[B, {dims}]$")


def _shapes(block) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A layer's input and output shapes per example: (n,) and (width,) when flat."""
    return (block.shape_in or (block.n_in,)), (block.shape or (block.width,))


def _by(values, math: bool = False) -> str:
    """3×3 in text mode, or in math mode."""
    return (r" \times " if math else r"$\times$").join(map(str, values))


def _one(values) -> str:
    """A stride or a padding: 1 when the same along every axis, else (1, 2)."""
    return str(values[0]) if len(set(values)) == 1 else f"({', '.join(map(str, values))})"


def _settings_tex(block) -> list[str]:
    """A layer's settings for the table of layers, in words."""
    out = []
    name = _activation(block)
    if block.kind in _CONV:
        out += [f"{block.out_channels} channel{'s' if block.out_channels > 1 else ''} out", f"kernel {_by(block.kernel_size)}",
                f"stride {_one(block.stride)}", f"padding {_one(block.padding)}"]
    elif block.kind in _POOL:
        out += [f"kernel {_by(block.kernel_size)}", f"stride {_one(block.stride)}"]
    elif block.kind == "attention":
        out += [f"$d_k = {block.head_dim or block.shape_in[1]}$"] + (["causal"] if block.causal else []) \
            + (["output projection"] if block.out_proj else [])
    elif block.kind == "rnn":
        out += [f"hidden size {block.hidden_size}", "every step out" if block.output == "all" else "last step out"]
    if name and block.kind not in ("batchnorm", "layernorm"):
        out.append(tex_text(name.replace("_", " ")))
    if block.kind in ("dense", "rnn") + _CONV and block.bias != "separate":
        out.append("no bias")
    if block.kind in ("batchnorm", "layernorm"):
        out.append(rf"$\varepsilon = {sp.latex(sp.Rational(block.eps.numerator, block.eps.denominator))}$")
        out.append("affine" if block.affine else "no affine")
    return out


def _params_tex(block, convention: str) -> str:
    """A layer's parameters and their shapes (a convolution's kernel as PyTorch's O × C × kh × kw)."""
    out = []
    for p, (r, c) in KINDS[block.kind].params(block, convention):
        shape = (r, c)
        if p == "W" and block.kind in _CONV:
            shape = (block.out_channels, block.shape_in[0]) + tuple(block.kernel_size)
        head = _MATRIX_TEX.get(p, _GREEK.get(p, p))
        out.append(rf"${head}^{{({block.position})}}$ {_by(shape)}")
    return ", ".join(out) or "none"


def _sizes_tex(block) -> str:
    """What a shaped layer's equations range over, in words: its k, s and p, its positions, its T and d."""
    if block.kind in _CONV + _POOL:
        spatial = block.shape_in[1:]
        what = "a sequence of " if len(spatial) == 1 else ""
        out = [rf"$x_{{b,c}}$ is {what}{_by(spatial)} ($c < {block.shape_in[0]}$)",
               rf"the output {_by(block.shape[1:])} per channel ($i$ its positions)"]
        if block.kind in _CONV:
            out = [f"$k = {_by(block.kernel_size, True)}$, $s = {_one(block.stride)}$, "
                   f"$p = {_one(block.padding)}$"] + out
            out[-1] = rf"$z_{{b,o}}$ is {_by(block.shape[1:])} ($o < {block.out_channels}$; $i$ its positions)"
        else:
            out.append(rf"$w(i)$: the {_by(block.kernel_size)} window of output position $i$, stride "
                       f"{_one(block.stride)}")
        return "; ".join(out) + "."
    if block.kind == "flatten":
        order = "C, H, W" if len(block.shape_in) == 3 else "row-major"
        return f"$x_b$ is {_by(block.shape_in)}, flat in {order} order (as torch.flatten)."
    if block.kind == "attention":
        T, d = block.shape_in
        return (rf"For each example $b$, $X$ is $x_b$ as a $T \times d$ matrix, $T = {T}$, $d = {d}$, "
                rf"$d_k = {block.head_dim or d}$; $Q$, $K$, $V$, $S$, $P$, $O$ are that example's.")
    if block.kind == "rnn":
        T, d = block.shape_in
        return (rf"$x_t$ is step $t$ of $x$ ({d} entries per example, one row per example), $T = {T}$; "
                rf"$h_t$ has {block.hidden_size} entries.")
    return ""


def _note(block) -> str:
    """What the reader must know besides the equations (derive.tables.spatial_latex.NOTES), in text mode."""
    note = spatial_latex.NOTES.get(block.kind, "")
    pieces = re.split("(" + "|".join(map(re.escape, _TEXT)) + ")", note)
    return "".join(_TEXT[p] if p in _TEXT else tex_text(p) for p in pieces)
