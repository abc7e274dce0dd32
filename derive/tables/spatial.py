"""Layer kinds over shaped inputs: convolution, pooling, flatten, self-attention and a recurrent layer.

Each is an entry of the layer table (derive.tables.layers.KINDS), written once against the
array algebra documented there, with a forward pass and the textbook backward pass a person
derives by hand:

- conv2d / conv1d: windows of the input (im2col, a gather by derive.tables.windows), a matrix
  product with the kernel, a bias per channel and an activation. Backward: δ = ∂C/∂a ∘ σ'(z);
  ∂C/∂W = X ⋆ δ (each window of the input times δ at its position, summed: the correlation of
  the input with δ, per channel pair); ∂C/∂b = Σ δ over examples and positions; ∂C/∂X = δ
  dilated by the stride, padded by k − 1 − p and correlated with the kernel rotated by 180°
  (its channels swapped): a full convolution.
- avgpool2d / maxpool2d: the mean or the maximum of each window, per channel. Backward: ∂C/∂y
  spread evenly over its window, or routed to the window's arg-max (the first one where
  several entries tie, as PyTorch does; the maximum is not differentiable at a tie, and this
  is the subgradient every framework takes).
- flatten: [C, H, W] -> [C·H·W]; the flat layout is the same, so both passes are the identity.
- attention: single-head scaled dot-product self-attention on a sequence [T, d]:
  Q = X W_q, K = X W_k, V = X W_v, S = Q Kᵀ/√d_k (optionally causal), P = softmax(S) by rows,
  O = P V (times W_o with out_proj). Backward: ∂C/∂V = Pᵀ ∂C/∂O, ∂C/∂P = ∂C/∂O Vᵀ,
  ∂C/∂S = P ∘ (∂C/∂P − rowsum(∂C/∂P ∘ P)), ∂C/∂Q = ∂C/∂S K/√d_k, ∂C/∂K = (∂C/∂S)ᵀ Q/√d_k.
- rnn: h_t = tanh(x_t W_xh + h_{t−1} W_hh + b) over T steps from h_0 = 0, its output the last
  h or every h. Backward through time: δ_t = (δ_{t+1} W_hhᵀ + ∂C/∂h_t) ∘ σ'(z_t) (with tanh,
  1 − h_t²), ∂C/∂W_xh = Σ_t x_tᵀ δ_t, ∂C/∂W_hh = Σ_t h_{t−1}ᵀ δ_t, ∂C/∂b = Σ_t Σ δ_t.

Parameters sit in PyTorch's layout in the `column` convention (a kernel (O, C·kh·kw), which
is torch's weight flattened; W_q (d_k, d); W_xh (H, d)), transposed in the `row` convention;
the equations read them as rows × features, like a dense layer's.
"""

from __future__ import annotations

from math import prod

import sympy as sp

from derive.tables import windows as win
from derive.tables.kind import ROW, Kind, vector_shape
from derive.tables.spatial_latex import LATEX


def _mat(rows: int, cols: int, convention: str) -> tuple[int, int]:
    """A weight the equations read as rows × cols (x W), in the spec's layout: transposed in the column convention."""
    return (rows, cols) if convention == ROW else (cols, rows)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------

def _conv_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    spatial = shape_in[1:]
    k, s, p = values["kernel_size"], values["stride"], values["padding"]
    for n, kk, pp in zip(spatial, k, p):
        if n + 2 * pp < kk:
            raise ValueError(f"kernel size {kk} is larger than the input ({n}, padded by {pp} on each side)")
    return (values["out_channels"],) + win.out_spatial(spatial, k, s, p)


def _conv_params(block, convention: str):
    K = block.shape_in[0] * prod(block.kernel_size)
    out = [("W", _mat(K, block.out_channels, convention))]
    if block.bias == "separate":
        out.append(("b", vector_shape(block.out_channels, convention)))
    return tuple(out)


def _conv_layout(block):
    C, spatial = block.shape_in[0], block.shape_in[1:]
    L = prod(block.shape[1:])
    return C, spatial, L, C * prod(block.kernel_size)


def _conv_forward(ops, X, P, block, inner):
    """Each window of x as a row (im2col), z = windows · W + b per position, a = σ(z), back to C, H, W order."""
    C, spatial, L, K = _conv_layout(block)
    rows = ops.split_rows(ops.gather(X, win.windows(C, spatial, block.kernel_size, block.stride, block.padding)), K)
    Z = ops.matmul(rows, P["W"])
    if "b" in P:
        Z = ops.add(Z, P["b"])
    Z = ops.name("z", Z)
    A = ops.activation(block.activation, Z)
    Y = ops.gather(ops.merge_rows(A, L), win.channels_last(block.out_channels, L))
    return Y, {"windows": rows, "Z": Z, "A": A}


def _conv_backward(ops, G, X, S, P, block, inner):
    """δ = ∂C/∂a ∘ σ'(z); ∂C/∂W = X ⋆ δ (windowsᵀ δ); ∂C/∂b = Σ δ; ∂C/∂X = δ dilated by the stride, padded by
    k − 1 − p, correlated with the kernel rotated by 180°."""
    C, spatial, L, K = _conv_layout(block)
    O = block.out_channels
    D = ops.name("delta", ops.activation_vjp(block.activation, S["Z"], S["A"],
                                             ops.split_rows(ops.gather(G, win.channels_first(O, L)), O)))
    grads = {"W": ops.matmul(ops.T(S["windows"]), D)}
    if "b" in P:
        grads["b"] = ops.sum_rows(D)
    flat_delta = ops.gather(ops.merge_rows(D, L), win.channels_last(O, L))
    full = ops.split_rows(ops.gather(flat_delta, win.full_windows(O, spatial, block.kernel_size, block.stride,
                                                                  block.padding)), O * prod(block.kernel_size))
    kernel = ops.split_rows(ops.gather(ops.merge_rows(ops.T(P["W"]), O), win.rotated(O, C, block.kernel_size)), C)
    positions = prod(spatial)
    dX = ops.gather(ops.merge_rows(ops.matmul(full, kernel), positions), win.channels_last(C, positions))
    return dX, grads


# ---------------------------------------------------------------------------
# pooling and flatten
# ---------------------------------------------------------------------------

def _pool_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    spatial = shape_in[1:]
    for n, k in zip(spatial, values["kernel_size"]):
        if k > n:
            raise ValueError(f"kernel size {k} is larger than the input ({n})")
    return (shape_in[0],) + win.out_spatial(spatial, values["kernel_size"], values["stride"], (0,) * len(spatial))


def pool_index(block):
    """A pooling layer's windows, channel by channel (its output is then in C, H, W order already)."""
    C, spatial = block.shape_in[0], block.shape_in[1:]
    return win.windows(C, spatial, block.kernel_size, block.stride, (0,) * len(spatial), channel_major=True)


def _avgpool_forward(ops, X, P, block, inner):
    """y = the mean of each window, per channel."""
    k = prod(block.kernel_size)
    rows = ops.split_rows(ops.gather(X, pool_index(block)), k)
    return ops.name("y", ops.merge_rows(ops.scale(ops.ratio(1, k), ops.sum_cols(rows)), prod(block.shape))), {}


def _avgpool_backward(ops, G, X, S, P, block, inner):
    """∂C/∂x = each window's ∂C/∂y / k, spread over the window and summed where windows overlap."""
    k = prod(block.kernel_size)
    spread = ops.scale(ops.ratio(1, k), ops.gather(G, win.repeat(prod(block.shape), k)))
    return ops.scatter(spread, pool_index(block), prod(block.shape_in)), {}


def _maxpool_forward(ops, X, P, block, inner):
    """y = the maximum of each window, per channel; the mask marks its (first) arg-max."""
    k = prod(block.kernel_size)
    top, mask = ops.max_cols(ops.split_rows(ops.gather(X, pool_index(block)), k))
    return ops.merge_rows(top, prod(block.shape)), {"mask": mask}


def _maxpool_backward(ops, G, X, S, P, block, inner):
    """∂C/∂x = ∂C/∂y routed to each window's arg-max (mask ∘ ∂C/∂y), summed where windows overlap."""
    k = prod(block.kernel_size)
    rows = ops.split_rows(ops.gather(G, win.repeat(prod(block.shape), k)), k)
    routed = ops.merge_rows(ops.mul(S["mask"], rows), prod(block.shape))
    return ops.scatter(routed, pool_index(block), prod(block.shape_in)), {}


def _flatten_forward(ops, X, P, block, inner):
    """[C, H, W] -> [C·H·W]: the flat layout is already C, H, W order."""
    return X, {}


def _flatten_backward(ops, G, X, S, P, block, inner):
    """∂C/∂x = ∂C/∂y, back in the input's shape (the same flat layout)."""
    return G, {}


# ---------------------------------------------------------------------------
# attention
# ---------------------------------------------------------------------------

def _attention_dims(block):
    T, d = block.shape_in
    return T, d, block.head_dim


def _attention_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    T, d = shape_in
    return (T, d if values.get("out_proj") else values["head_dim"])


def _attention_params(block, convention: str):
    T, d, dk = _attention_dims(block)
    out = [(name, _mat(d, dk, convention)) for name in ("Wq", "Wk", "Wv")]
    if block.out_proj:
        out.append(("Wo", _mat(dk, d, convention)))
    return tuple(out)


def _attention_forward(ops, X, P, block, inner):
    """Q = X W_q, K = X W_k, V = X W_v per position; S = Q Kᵀ/√d_k; P = softmax(S) by rows; O = P V (W_o)."""
    T, d, dk = _attention_dims(block)
    rows = ops.split_rows(X, d)
    Q, K, V = (ops.name(n, ops.matmul(rows, P[w])) for n, w in (("q", "Wq"), ("k", "Wk"), ("v", "Wv")))
    scores = ops.name("s", ops.scale(1 / sp.sqrt(dk), ops.bmm(Q, K, T, T, False, True)))
    Pm = ops.activation("softmax", ops.causal(scores, T) if block.causal else scores)
    O = ops.name("o", ops.bmm(Pm, V, T, T, False, False))
    Y = ops.name("y", ops.matmul(O, P["Wo"])) if block.out_proj else O
    width = d if block.out_proj else dk
    return ops.merge_rows(Y, T), {"rows": rows, "Q": Q, "K": K, "V": V, "S": scores, "P": Pm, "O": O,
                                  "width": width}


def _attention_backward(ops, G, X, S, P, block, inner):
    """∂C/∂V = Pᵀ ∂C/∂O, ∂C/∂P = ∂C/∂O Vᵀ, ∂C/∂S = P ∘ (∂C/∂P − rowsum(∂C/∂P ∘ P)), ∂C/∂Q = ∂C/∂S K/√d_k,
    ∂C/∂K = (∂C/∂S)ᵀ Q/√d_k; each weight's gradient xᵀ times its output's, ∂C/∂x the sum of the three paths."""
    T, d, dk = _attention_dims(block)
    dO = ops.split_rows(G, S["width"])
    grads = {}
    if block.out_proj:
        grads["Wo"] = ops.matmul(ops.T(S["O"]), dO)
        dO = ops.name("dO", ops.matmul(dO, ops.T(P["Wo"])))
    dV = ops.bmm(S["P"], dO, T, T, True, False)
    dP = ops.name("dP", ops.bmm(dO, S["V"], T, T, False, True))
    dS = ops.name("dS", ops.activation_vjp("softmax", S["S"], S["P"], dP))
    dQ = ops.scale(1 / sp.sqrt(dk), ops.bmm(dS, S["K"], T, T, False, False))
    dK = ops.scale(1 / sp.sqrt(dk), ops.bmm(dS, S["Q"], T, T, True, False))
    grads.update({"Wq": ops.matmul(ops.T(S["rows"]), dQ), "Wk": ops.matmul(ops.T(S["rows"]), dK),
                  "Wv": ops.matmul(ops.T(S["rows"]), dV)})
    dX = ops.add(ops.add(ops.matmul(dQ, ops.T(P["Wq"])), ops.matmul(dK, ops.T(P["Wk"]))),
                 ops.matmul(dV, ops.T(P["Wv"])))
    return ops.merge_rows(dX, T), grads


# ---------------------------------------------------------------------------
# a recurrent layer
# ---------------------------------------------------------------------------

def _rnn_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    T = shape_in[0]
    H = values["hidden_size"]
    return (T, H) if values.get("output") == "all" else (H,)


def _rnn_params(block, convention: str):
    T, d = block.shape_in
    H = block.hidden_size
    out = [("Wxh", _mat(d, H, convention)), ("Whh", _mat(H, H, convention))]
    if block.bias == "separate":
        out.append(("b", vector_shape(H, convention)))
    return tuple(out)


def _rnn_forward(ops, X, P, block, inner):
    """h_t = σ(x_t W_xh + h_{t−1} W_hh + b) for t = 1 … T from h_0 = 0; the output h_T, or every h_t."""
    T, d = block.shape_in
    xs, Zs, Hs = [], [], []
    for t in range(T):
        ops.step(t + 1)
        x = ops.gather(X, win.columns(t * d, (t + 1) * d))
        Z = ops.matmul(x, P["Wxh"])
        if Hs:
            Z = ops.add(Z, ops.matmul(Hs[-1], P["Whh"]))
        if "b" in P:
            Z = ops.add(Z, P["b"])
        Z = ops.name("z", Z)
        xs.append(x)
        Zs.append(Z)
        Hs.append(ops.activation(block.nonlinearity, Z))
    ops.step(0)
    Y = ops.concat(*Hs) if block.output == "all" else Hs[-1]
    return Y, {"xs": xs, "Zs": Zs, "Hs": Hs}


def _rnn_backward(ops, G, X, S, P, block, inner):
    """δ_t = (δ_{t+1} W_hhᵀ + ∂C/∂h_t) ∘ σ'(z_t) from t = T down; ∂C/∂W_xh = Σ_t x_tᵀ δ_t, ∂C/∂W_hh =
    Σ_t h_{t−1}ᵀ δ_t, ∂C/∂b = Σ_t Σ δ_t, ∂C/∂x_t = δ_t W_xhᵀ."""
    T, d = block.shape_in
    H = block.hidden_size
    deltas: list = [None] * T
    for t in reversed(range(T)):
        ops.step(t + 1)
        upstream = None
        if block.output == "all":
            upstream = ops.gather(G, win.columns(t * H, (t + 1) * H))
        elif t == T - 1:
            upstream = G
        if t + 1 < T:
            back = ops.matmul(deltas[t + 1], ops.T(P["Whh"]))
            upstream = back if upstream is None else ops.add(upstream, back)
        deltas[t] = ops.name("delta", ops.activation_vjp(block.nonlinearity, S["Zs"][t], S["Hs"][t], upstream))
    ops.step(0)
    grads = {"Wxh": _total(ops, [ops.matmul(ops.T(S["xs"][t]), deltas[t]) for t in range(T)]),
             "Whh": _total(ops, [ops.matmul(ops.T(S["Hs"][t - 1]), deltas[t]) for t in range(1, T)], (H, H))}
    if "b" in P:
        grads["b"] = _total(ops, [ops.sum_rows(deltas[t]) for t in range(T)])
    return ops.concat(*[ops.matmul(deltas[t], ops.T(P["Wxh"])) for t in range(T)]), grads


def _total(ops, terms: list, empty: tuple[int, int] | None = None):
    """Σ of the terms (a sum over the steps); a sequence of one step has no h_{t−1}: ∂C/∂W_hh is then zero."""
    if not terms:
        return ops.zeros(*empty)
    out = terms[0]
    for term in terms[1:]:
        out = ops.add(out, term)
    return out


# ---------------------------------------------------------------------------
# the entries
# ---------------------------------------------------------------------------

_CONV_KEYS = ("out_channels", "kernel_size", "stride", "padding", "bias", "activation")
_POOL_KEYS = ("kernel_size", "stride")
_STRIDE_IS_KERNEL = (("stride", "kernel_size"),)
SPATIAL_KINDS = [
    Kind("conv2d", _CONV_KEYS, ("out_channels", "kernel_size"), _conv_params, _conv_forward, _conv_backward,
         latex_forward=LATEX["conv2d"][0],
         latex_backward=LATEX["conv2d"][1], claim_names=("W", "b", "z", "a", "delta"),
         doc="z_o = Σ_c x_c ⋆ W_oc + b_o (the cross-correlation PyTorch computes), a = σ(z)",
         out_shape=_conv_shape, inputs=(3,)),
    Kind("conv1d", _CONV_KEYS, ("out_channels", "kernel_size"), _conv_params, _conv_forward, _conv_backward,
         latex_forward=LATEX["conv1d"][0],
         latex_backward=LATEX["conv1d"][1], claim_names=("W", "b", "z", "a", "delta"),
         doc="z_o = Σ_c x_c ⋆ W_oc + b_o along a sequence [C, L], a = σ(z)",
         out_shape=_conv_shape, inputs=(2,)),
    Kind("avgpool2d", _POOL_KEYS, ("kernel_size",), lambda block, convention: (), _avgpool_forward,
         _avgpool_backward,
         latex_forward=LATEX["avgpool2d"][0],
         latex_backward=LATEX["avgpool2d"][1],
         claim_names=("y",), doc="y = the mean of each window, per channel",
         out_shape=_pool_shape, inputs=(3,), defaults=_STRIDE_IS_KERNEL),
    Kind("maxpool2d", _POOL_KEYS, ("kernel_size",), lambda block, convention: (), _maxpool_forward,
         _maxpool_backward,
         latex_forward=LATEX["maxpool2d"][0],
         latex_backward=LATEX["maxpool2d"][1],
         claim_names=("y", "mask"), doc="y = the maximum of each window, per channel (the gradient to its arg-max)",
         out_shape=_pool_shape, inputs=(3,), defaults=_STRIDE_IS_KERNEL),
    Kind("flatten", (), (), lambda block, convention: (), _flatten_forward, _flatten_backward,
         latex_forward=LATEX["flatten"][0],
         latex_backward=LATEX["flatten"][1],
         doc="[C, H, W] -> [C·H·W] (C, H, W order, as torch.flatten)",
         out_shape=lambda values, shape_in: (prod(shape_in),), inputs=(2, 3)),
    Kind("attention", ("head_dim", "causal", "out_proj"), (), _attention_params, _attention_forward,
         _attention_backward,
         latex_forward=LATEX["attention"][0],
         latex_backward=LATEX["attention"][1],
         claim_names=("Wq", "Wk", "Wv", "Wo", "q", "k", "v", "s", "a", "o"),
         doc="single-head self-attention: softmax(Q Kᵀ/√d_k) V, Q, K, V = X W_q, X W_k, X W_v",
         out_shape=_attention_shape, inputs=(2,)),
    Kind("rnn", ("hidden_size", "nonlinearity", "bias", "output"), ("hidden_size",), _rnn_params, _rnn_forward,
         _rnn_backward,
         latex_forward=LATEX["rnn"][0],
         latex_backward=LATEX["rnn"][1],
         claim_names=("Wxh", "Whh", "b", "z", "h", "delta"),
         doc="h_t = tanh(x_t W_xh + h_{t−1} W_hh + b) over T steps (the last h, or every h)",
         out_shape=_rnn_shape, inputs=(2,)),
]
