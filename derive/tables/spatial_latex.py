"""The LaTeX of the spatial layer kinds (derive.tables.spatial): each kind's forward and backward equations.

{l} is the layer's number and {act} its activation (filled in by derive.report); x is the layer's
input, which a document names after the layer that feeds it. `forward(block)` and `backward(block)`
write one layer's equations for its own settings (no bias, a stride, a causal mask, an output
projection, the last step or every step); LATEX holds each kind's general form, all parts present.

Notation, shared with the dense and norm kinds: b is the example, ⊙ the entrywise product,
δ^{(l)} = ∂C/∂z^{(l)}. Shaped arrays are indexed like PyTorch's tensors: x_{b,c} is channel c of
example b (an H × W image, or a sequence of length L), W^{(l)}_{o,c} the kernel from input channel c
to output channel o (torch's weight[o, c]), i and j positions in an image. ⋆ is the correlation
PyTorch's conv2d computes, written with its stride s: (x ⋆_s w)_i = Σ_u x_{s i + u} w_u.
"""

from __future__ import annotations

from sympy import Symbol, latex

from derive.tables.activations import ACTIVATIONS

_D = r"\frac{{\partial C}}{{\partial {0}}}"


def _d(of: str) -> str:
    """∂C/∂(of) as a document writes it."""
    return _D.format(of)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------

def _leftover(block) -> bool:
    """Whether the stride leaves rows (or columns) of the padded input that no window reads."""
    return any((n + 2 * p - k) % s for n, k, s, p in zip(block.shape_in[1:], block.kernel_size, block.stride,
                                                          block.padding))


def _conv_forward(block) -> tuple[str, ...]:
    padded = r"\operatorname{pad}_{p}(x_{b,c})" if any(block.padding) else "x_{b,c}"
    star = r"\star_{s}" if any(s > 1 for s in block.stride) else r"\star"
    bias = " + b^{({l})}_{o}" if block.bias == "separate" else ""
    return (rf"z^{{({{l}})}}_{{b,o}} = \sum_{{c}} {padded} {star} W^{{({{l}})}}_{{o,c}}{bias}",
            r"a^{({l})} = {act}(z^{({l})})")


def _conv_backward(block) -> tuple[str, ...]:
    strided = any(s > 1 for s in block.stride)
    padded = r"\operatorname{pad}_{p}(x_{b,c})" if any(block.padding) else "x_{b,c}"
    delta = r"\operatorname{dilate}_{s}(\delta^{({l})}_{b,o})" if strided else r"\delta^{({l})}_{b,o}"
    weight = rf"{padded} \star {delta}"
    if _leftover(block):  # the correlation is longer than the kernel: its first k entries per axis
        weight = rf"\bigl[{weight}\bigr]_{{k}}"
    lines = [r"\delta^{({l})} = " + _d("a^{({l})}") + r" \odot {act}'(z^{({l})})",
             _d("W^{({l})}_{o,c}") + rf" = \sum_{{b}} {weight}"]
    if block.bias == "separate":
        lines.append(_d("b^{({l})}_{o}") + r" = \sum_{b} \sum_{i} \delta^{({l})}_{b,o,i}")
    lines.append(_d("x_{b,c}") + rf" = \sum_{{o}} \operatorname{{pad}}_{{k-1-p}}\bigl({delta}\bigr) \star "
                 r"\operatorname{rot}_{180}\bigl(W^{({l})}_{o,c}\bigr)")
    return tuple(lines)


# ---------------------------------------------------------------------------
# pooling and flatten
# ---------------------------------------------------------------------------

def _window(block) -> str:
    """1/|w| as a number: the entries of a window."""
    n = 1
    for k in block.kernel_size:
        n *= k
    return rf"\frac{{1}}{{{n}}}"


def _avgpool_forward(block) -> tuple[str, ...]:
    return (rf"y^{{({{l}})}}_{{b,c,i}} = {_window(block)} \sum_{{j \in w(i)}} x_{{b,c,j}}",)


def _avgpool_backward(block) -> tuple[str, ...]:
    return (_d("x_{b,c,j}") + rf" = {_window(block)} \sum_{{i \,:\, j \in w(i)}} " + _d("y^{({l})}_{b,c,i}"),)


def _maxpool_forward(block) -> tuple[str, ...]:
    return (r"y^{({l})}_{b,c,i} = \max_{j \in w(i)} x_{b,c,j}",)


def _maxpool_backward(block) -> tuple[str, ...]:
    return (_d("x_{b,c,j}") + r" = \sum_{i \,:\, j = j^{*}_{b,c}(i)} " + _d("y^{({l})}_{b,c,i}"),
            r"j^{*}_{b,c}(i) = \min \operatorname*{arg\,max}_{j \in w(i)} x_{b,c,j}")


def _flatten_forward(block) -> tuple[str, ...]:
    return (r"y^{({l})}_{b} = \operatorname{vec}(x_{b})",)


def _flatten_backward(block) -> tuple[str, ...]:
    return (_d("x_{b}") + r" = \operatorname{vec}^{-1}\Bigl(" + _d("y^{({l})}_{b}") + r"\Bigr)",)


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------

def _attention_forward(block) -> tuple[str, ...]:
    mask = r" + M" if block.causal else ""
    out = [r"Q = X W_q^{({l})}, \quad K = X W_k^{({l})}, \quad V = X W_v^{({l})}",
           rf"S = \frac{{1}}{{\sqrt{{d_k}}}}\, Q K^{{\top}}{mask}, \quad P = \operatorname{{softmax}}(S) "
           r"\text{ by rows}"]
    if block.causal:
        out.append(r"M_{tu} = -\infty \text{ for } u > t, \quad M_{tu} = 0 \text{ for } u \le t")
    out.append(r"O = P V, \quad y^{({l})} = O W_o^{({l})}" if block.out_proj else r"y^{({l})} = O = P V")
    return tuple(out)


def _attention_backward(block) -> tuple[str, ...]:
    out = []
    if block.out_proj:
        out += [_d("O") + " = " + _d("y^{({l})}") + r" W_o^{({l})\top}, \quad "
                + _d("W_o^{({l})}") + r" = \sum_{b} O^{\top} " + _d("y^{({l})}")]
    out += [_d("V") + r" = P^{\top} " + _d("O") + r", \quad " + _d("P") + " = " + _d("O") + r" V^{\top}",
            _d("S") + r" = P \odot \Bigl(" + _d("P") + r" - \operatorname{rowsum}\Bigl(" + _d("P")
            + r" \odot P\Bigr)\Bigr)",
            _d("Q") + r" = \frac{1}{\sqrt{d_k}}\, " + _d("S") + r" K, \quad " + _d("K")
            + r" = \frac{1}{\sqrt{d_k}} \Bigl(" + _d("S") + r"\Bigr)^{\top} Q",
            _d("W_q^{({l})}") + r" = \sum_{b} X^{\top} " + _d("Q") + r", \quad "
            + _d("W_k^{({l})}") + r" = \sum_{b} X^{\top} " + _d("K") + r", \quad "
            + _d("W_v^{({l})}") + r" = \sum_{b} X^{\top} " + _d("V"),
            _d("X") + " = " + _d("Q") + r" W_q^{({l})\top} + " + _d("K") + r" W_k^{({l})\top} + "
            + _d("V") + r" W_v^{({l})\top}"]
    return tuple(out)


# ---------------------------------------------------------------------------
# a recurrent layer
# ---------------------------------------------------------------------------

def _rnn_forward(block) -> tuple[str, ...]:
    bias = " + b^{({l})}" if block.bias == "separate" else ""
    out = r"y^{({l})} = (h_1, \dots, h_T)" if block.output == "all" else r"y^{({l})} = h_T"
    return (rf"z_t = x_t W_{{xh}}^{{({{l}})}} + h_{{t-1}} W_{{hh}}^{{({{l}})}}{bias}, \quad h_t = {{act}}(z_t), "
            r"\quad t = 1, \dots, T, \quad h_0 = 0",
            out)


def _prime(block) -> str:
    """σ'(z_t) in h_t where the activation has such a form (tanh: 1 − h_t²), else ''."""
    form = ACTIVATIONS[block.nonlinearity].output_form
    if form is None or not form.free_symbols:
        return ""
    return r", \quad {act}'(z_t) = " + latex(form.xreplace({s: Symbol("h_t") for s in form.free_symbols}))


def _rnn_backward(block) -> tuple[str, ...]:
    if block.output == "all":
        upstream = _d("h_t") + " = " + _d("y^{({l})}_t")
    else:
        upstream = (_d("h_T") + " = " + _d("y^{({l})}") + r", \quad " + _d("h_t") + r" = 0 \text{ for } t < T")
    out = [upstream,
           r"\delta_t = \Bigl(\delta_{t+1} W_{hh}^{({l})\top} + " + _d("h_t") + r"\Bigr) \odot {act}'(z_t), \quad \delta_{T+1} = 0"
           + _prime(block),
           _d("W_{xh}^{({l})}") + r" = \sum_{t=1}^{T} x_t^{\top} \delta_t, \quad "
           + _d("W_{hh}^{({l})}") + r" = \sum_{t=2}^{T} h_{t-1}^{\top} \delta_t"]
    if block.bias == "separate":
        out[-1] += r", \quad " + _d("b^{({l})}") + r" = \sum_{t=1}^{T} \sum_{b} \delta_t"
    out.append(_d("x_t") + r" = \delta_t W_{xh}^{({l})\top}")
    return tuple(out)


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

WRITERS = {
    "conv2d": (_conv_forward, _conv_backward),
    "conv1d": (_conv_forward, _conv_backward),
    "avgpool2d": (_avgpool_forward, _avgpool_backward),
    "maxpool2d": (_maxpool_forward, _maxpool_backward),
    "flatten": (_flatten_forward, _flatten_backward),
    "attention": (_attention_forward, _attention_backward),
    "rnn": (_rnn_forward, _rnn_backward),
}


def forward(block) -> tuple[str, ...]:
    """A spatial layer's forward equations for its own settings."""
    return WRITERS[block.kind][0](block)


def backward(block) -> tuple[str, ...]:
    """A spatial layer's backward equations for its own settings."""
    return WRITERS[block.kind][1](block)


class _General:
    """A block with every optional part present, for each kind's general equations."""

    shape_in = (1, 5, 5)
    kernel_size, stride, padding = (3, 3), (2, 2), (1, 1)
    bias, causal, out_proj, output, nonlinearity = "separate", True, True, "last", "tanh"


LATEX: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    kind: (f(_General()), b(_General())) for kind, (f, b) in WRITERS.items()}

# What a reader must know besides the equations, per kind (the document and the terminal print these).
NOTES = {
    "conv2d": "Here ⋆ is cross-correlation, as in PyTorch's conv2d: no kernel flip in the forward pass; the "
              "input's gradient is the full correlation of δ with the kernel rotated by 180°.",
    "conv1d": "Here ⋆ is cross-correlation along the sequence, as in PyTorch's conv1d; the input's gradient is "
              "the full correlation of δ with the kernel reversed (rotated by 180°).",
    "maxpool2d": "Ties: the maximum has no derivative at a tie; the gradient goes to the first maximal entry of "
                 "the window in row-major order (j*), as PyTorch's max_pool2d does: a subgradient. The proof's "
                 "mask is Heaviside(x_j − the window's other maximum), what sympy.diff gives for ∂max/∂x_j: "
                 "exact wherever the maximum is unique.",
    "attention": "A causal mask makes P_tu = 0 where position u comes after t: the same backward forms hold, with "
                 "those entries 0.",
    "rnn": "Back-propagation through time: δ_t from t = T down to 1, each weight's gradient summed over the steps.",
}
