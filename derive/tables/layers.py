"""The layer table: one entry per kind of layer, the only place a layer's equations are written.

Dense is the one kind today. An entry gives, as data and small pure functions:

- `z`: its scalar forward definition, one neuron's pre-activation from its weight row,
  the layer's inputs and its bias (the scalar network and every proof read it);
- `fan_in`, `weight_index`, `bias_index`, `params`: the length of one neuron's weight
  row, where each scalar sits in the parameter matrices, and their names and shapes, in
  the spec's layout (convention `column` or `row`, bias `separate`, `augmented` or `none`);
- `forward`, `back`, `back_column`, `grad_weights`, `grad_bias`, `change_transposed`:
  its matrix forms over MatrixSymbols (the forward pass, BP2's back step, BP3 and BP4),
  oriented by the convention;
- `symbolic_z`: the pre-activation at symbolic widths (derive.proofs.general), built
  from the model's own Indexed entries; `latex_forward`: the layer's z as a document
  writes it (derive.report.latex);
- `claim_params`, `claim_values`: the names a claim may use for its parameters and for
  the values it reads (derive.claims).

A new kind (batch norm, layer norm, a residual connection, convolution, attention) is
a new entry with these fields. Where its forward reads more than one example's inputs
(batch norm) or an earlier layer (residual), the functions take those as further
arguments, and a new entry says so in its own docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import sympy as sp

from derive.tables.activations import ACTIVATIONS
from derive.tables.kind import ROW, Kind, flat_shape, vector_shape
from derive.tables.spatial import SPATIAL_KINDS



@dataclass(frozen=True)
class Layer:
    """One kind of layer: its scalar, matrix and symbolic-width equations and its names."""

    name: str
    z: Callable[[Sequence[sp.Expr], Sequence[sp.Expr], sp.Expr | None], sp.Expr]
    fan_in: Callable[[int, str], int]
    weight_index: Callable[[int, int, str], tuple[int, int]]
    bias_index: Callable[[int, str], tuple[int, int]]
    params: Callable[[int, int, str, str], tuple[tuple[str, tuple[int, int]], ...]]
    forward: Callable[..., sp.MatrixExpr]
    back: Callable[[sp.MatrixExpr, sp.MatrixExpr, str], sp.MatrixExpr]
    back_column: Callable[[sp.MatrixExpr], sp.MatrixExpr]
    grad_weights: Callable[[sp.MatrixExpr, sp.MatrixExpr, str], sp.MatrixExpr]
    grad_bias: Callable[[sp.MatrixExpr, sp.MatrixExpr, str], sp.MatrixExpr]
    change_transposed: Callable[[sp.MatrixExpr, sp.MatrixExpr], sp.MatrixExpr]
    symbolic_z: Callable[..., sp.Expr]
    latex_forward: Callable[[str, str, str | None, str], str]  # z in a document: (W, A, b or None, convention) -> LaTeX
    claim_params: tuple[str, ...]  # w[j,k] and b[j] by entry; W as the parameter matrix
    claim_values: tuple[str, ...]  # what a claim reads of the layer's neurons

    @property
    def claim_names(self) -> tuple[str, ...]:
        """Every layered name a claim may use (w2, W2, b2, a1, A1, z1, delta1, D1)."""
        return self.claim_params + self.claim_values


# ---------------------------------------------------------------------------
# dense: z_j = sum_k w_jk a_k + b_j
# ---------------------------------------------------------------------------

def _dense_z(weights: Sequence[sp.Expr], inputs: Sequence[sp.Expr], bias: sp.Expr | None) -> sp.Expr:
    """z_j = sum_k w_jk a_k + b_j; an augmented row has one weight more, that of the constant input 1."""
    terms = [w * a for w, a in zip(weights, inputs)]
    terms += list(weights[len(inputs):])
    if bias is not None:
        terms.append(bias)
    return sp.Add(*terms)


def _dense_fan_in(n_in: int, bias: str) -> int:
    """The weights of one neuron: one per input, and one for the constant input 1 when the bias is augmented."""
    return n_in + (1 if bias == "augmented" else 0)


def _dense_weight_index(j: int, k: int, convention: str) -> tuple[int, int]:
    """w_jk (to neuron j from neuron k) sits at [j, k] of W, or at [k, j] in the row convention."""
    return (k, j) if convention == ROW else (j, k)


def _dense_bias_index(j: int, convention: str) -> tuple[int, int]:
    """b_j in a column vector, or in a row vector in the row convention."""
    return (0, j) if convention == ROW else (j, 0)


def _dense_params(n_in: int, n_out: int, convention: str, bias: str) -> tuple[tuple[str, tuple[int, int]], ...]:
    """("W", shape) and, for a separate bias, ("b", shape); augmented W has a row (column) more."""
    rows = _dense_fan_in(n_in, bias)
    out = [("W", (rows, n_out) if convention == ROW else (n_out, rows))]
    if bias == "separate":
        out.append(("b", (1, n_out) if convention == ROW else (n_out, 1)))
    return tuple(out)


def _dense_forward(W, A, b, ones, convention: str):
    """z = W A (+ b 1ᵀ), or A W (+ 1 b) in the row convention; A carries the 1s when augmented."""
    row = convention == ROW
    z = A * W if row else W * A
    if b is not None:
        z = z + (ones * b if row else b * ones.T)
    return z


def _dense_back(w, delta, convention: str):
    """BP2's back step: wᵀ δ, or δ w in the row convention (w the non-bias weights, [j, k])."""
    return delta * w if convention == ROW else w.T * delta


def _dense_back_column(w):
    """The back step for one example's δ as a column: wᵀ."""
    return w.T


def _dense_grad_weights(A, delta, convention: str):
    """∂C/∂W unscaled: δ Aᵀ, or Aᵀ δ in the row convention (the spec's layout)."""
    return A.T * delta if convention == ROW else delta * A.T


def _dense_grad_bias(delta, ones, convention: str):
    """∂C/∂b unscaled: δ 1, or 1ᵀ δ in the row convention."""
    return ones.T * delta if convention == ROW else delta * ones


def _dense_change_transposed(delta_col, A_row):
    """The 2-2-2 note's transposed change matrix δ A (one example, A as a row)."""
    return delta_col * A_row


def _dense_symbolic_z(weight: Callable, inputs: Callable, bias: sp.Expr, k: sp.Symbol, last: sp.Expr) -> sp.Expr:
    """z_j = Sum_k w_jk a_k + b_j at symbolic width: weight(k), inputs(k) are the model's Indexed entries."""
    return sp.Sum(weight(k) * inputs(k), (k, 0, last)) + bias


def _dense_latex_forward(W: str, A: str, b: str | None, convention: str) -> str:
    """z^{(l)} as a document writes it: W a + b, or a W + b in the row convention."""
    core = f"{A} {W}" if convention == ROW else f"{W} {A}"
    return core + (f" + {b}" if b is not None else "")


DENSE = Layer(
    name="dense",
    z=_dense_z,
    fan_in=_dense_fan_in,
    weight_index=_dense_weight_index,
    bias_index=_dense_bias_index,
    params=_dense_params,
    forward=_dense_forward,
    back=_dense_back,
    back_column=_dense_back_column,
    grad_weights=_dense_grad_weights,
    grad_bias=_dense_grad_bias,
    change_transposed=_dense_change_transposed,
    symbolic_z=_dense_symbolic_z,
    latex_forward=_dense_latex_forward,
    claim_params=("w", "W", "b"),
    claim_values=("a", "A", "z", "delta", "D"),
)

LAYERS: dict[str, Layer] = {DENSE.name: DENSE}


# ---------------------------------------------------------------------------
# layer lists: one entry per kind of block, its forward pass and its textbook backward pass
# ---------------------------------------------------------------------------
#
# A block's equations are written once, against an array algebra `ops`, and read three ways:
# derive.graph runs them on SymPy scalars (the scalar graph the chain rule and the oracle
# differentiate, and the matrix forms the proofs compare with it), and codegen runs them on a
# tracer that prints NumPy or CuPy code. Arrays are examples × features (rows are examples);
# a parameter reaches the equations in that layout whatever the spec's convention. `ops` gives:
#
#   matmul(A, B), T(A), add/sub/mul(A, B) elementwise (a 1×n or E×1 operand broadcasts),
#   scale(c, A) for a rational c, power(A, k), sum_rows(A) (over examples, 1×n),
#   sum_cols(A) (over features, E×1), rows(A), cols(A) (their counts: the batch's may be known only
#   when the code runs), ratio(p, n) (the rational p/n for such a count n), rsqrt(V, eps)
#   ((V + eps)^(-1/2), an atom in the proofs), activation(name, Z) and
#   activation_vjp(name, Z, A, G) (G times the activation's Jacobian at Z, A its value),
#   name(label, A) (an intermediate the graph keeps as a node and the code as a variable).
#
# Shaped inputs ([C, H, W], [C, L], [T, d]) are flat per example in C, H, W order (torch.flatten's);
# convolution, pooling, attention and recurrence (derive.tables.spatial) add:
#
#   gather(A, index) (column f of the result is column index[f] of A, 0 where index[f] is -1:
#   im2col by the maps of derive.tables.windows), scatter(A, index, n) (its adjoint: n columns,
#   column m the sum of A's columns f with index[f] == m), split_rows(A, k) (each row cut into
#   rows of k entries: R × nk -> Rn × k) and merge_rows(A, n) (back: Rn × k -> R × nk),
#   bmm(A, B, a, b, ta, tb) (a product per group: A's rows in groups of a, B's in groups of b,
#   group g of the result op(A_g) op(B_g), op a transpose where ta or tb), max_cols(A) (each
#   row's maximum, R × 1, and the 0/1 mask of its first arg-max, R × k: atoms in the proofs),
#   causal(S, n) (S's rows in groups of n, entry (i, j) of a group with j > i set to −∞, which
#   a softmax after it reads as left out), concat(*As) (side by side) and step(t) (names made
#   after it carry the step t: a recurrent layer's h_t).



def _block_dense_params(block, convention: str):
    W = (block.n_in, block.width) if convention == ROW else (block.width, block.n_in)
    out = [("W", W)]
    if block.bias == "separate":
        out.append(("b", vector_shape(block.width, convention)))
    return tuple(out)


def _block_dense_forward(ops, X, P, block, inner):
    """z = x W + b, a = σ(z), on rows of examples."""
    Z = ops.matmul(X, P["W"])
    if "b" in P:
        Z = ops.add(Z, P["b"])
    Z = ops.name("z", Z)
    A = ops.activation(block.activation, Z)
    return A, {"Z": Z, "A": A}


def _block_dense_backward(ops, G, X, S, P, block, inner):
    """δ = ∂C/∂a ∘ σ'(z); ∂C/∂W = xᵀ δ; ∂C/∂b = Σ_b δ; ∂C/∂x = δ Wᵀ."""
    D = ops.name("delta", ops.activation_vjp(block.activation, S["Z"], S["A"], G))
    grads = {"W": ops.matmul(ops.T(X), D)}
    if "b" in P:
        grads["b"] = ops.sum_rows(D)
    return ops.matmul(D, ops.T(P["W"])), grads


def _block_activation_forward(ops, X, P, block, inner):
    """a = σ(x), entry by entry (softmax along each row)."""
    A = ops.activation(block.activation, X)
    return A, {"A": A}


def _block_activation_backward(ops, G, X, S, P, block, inner):
    """∂C/∂x = ∂C/∂a ∘ σ'(x) (softmax: a ∘ (∂C/∂a − rowsum(∂C/∂a ∘ a)))."""
    return ops.activation_vjp(block.activation, X, S["A"], G), {}


def _norm_params(block, convention: str):
    if not block.affine:
        return ()
    return (("gamma", vector_shape(block.width, convention)), ("beta", vector_shape(block.width, convention)))


def _norm_sum(ops, axis: str):
    return ops.sum_rows if axis == "rows" else ops.sum_cols


def _norm_count(ops, X, axis: str) -> int:
    return ops.rows(X) if axis == "rows" else ops.cols(X)


def _norm_forward(axis: str):
    def forward(ops, X, P, block, inner):
        """μ = mean x, σ² = mean (x − μ)², s = (σ² + ε)^(-1/2), x̂ = (x − μ) s, y = γ x̂ + β."""
        total, n = _norm_sum(ops, axis), _norm_count(ops, X, axis)
        mu = ops.name("mu", ops.scale(ops.ratio(1, n), total(X)))
        centred = ops.name("xc", ops.sub(X, mu))
        var = ops.name("var", ops.scale(ops.ratio(1, n), total(ops.power(centred, 2))))
        s = ops.rsqrt(var, block.eps)
        xhat = ops.name("xhat", ops.mul(centred, s))
        Y = ops.name("y", ops.add(ops.mul(xhat, P["gamma"]), P["beta"])) if block.affine else xhat
        return Y, {"mu": mu, "xc": centred, "var": var, "s": s, "xhat": xhat}
    return forward


def _norm_parameter_grads(ops, G, S, P) -> dict:
    """∂C/∂γ = Σ_b ∂C/∂y ∘ x̂, ∂C/∂β = Σ_b ∂C/∂y (both sum over the examples)."""
    if "gamma" not in P:
        return {}
    return {"gamma": ops.sum_rows(ops.mul(G, S["xhat"])), "beta": ops.sum_rows(G)}


def _norm_backward(axis: str):
    def backward(ops, G, X, S, P, block, inner):
        """The consolidated form: ∂C/∂x = (s/n)(n ∂C/∂x̂ − Σ ∂C/∂x̂ − x̂ ∘ Σ(∂C/∂x̂ ∘ x̂)), ∂C/∂x̂ = γ ∘ ∂C/∂y."""
        total, n = _norm_sum(ops, axis), _norm_count(ops, X, axis)
        dxhat = ops.name("dxhat", ops.mul(G, P["gamma"])) if "gamma" in P else G
        inside = ops.sub(ops.sub(ops.scale(n, dxhat), total(dxhat)),
                         ops.mul(S["xhat"], total(ops.mul(dxhat, S["xhat"]))))
        return ops.mul(ops.scale(ops.ratio(1, n), S["s"]), inside), _norm_parameter_grads(ops, G, S, P)
    return backward


def _norm_paths(axis: str):
    def backward(ops, G, X, S, P, block, inner):
        """The three paths: ∂C/∂x = ∂C/∂x̂ s + ∂C/∂σ² · 2(x − μ)/n + ∂C/∂μ / n, with
        ∂C/∂σ² = Σ ∂C/∂x̂ ∘ (x − μ) · (−s³/2) and ∂C/∂μ = −Σ ∂C/∂x̂ s + ∂C/∂σ² · (−2/n) Σ (x − μ)."""
        total, n = _norm_sum(ops, axis), _norm_count(ops, X, axis)
        dxhat = ops.mul(G, P["gamma"]) if "gamma" in P else G
        dvar = ops.name("dvar", ops.mul(total(ops.mul(dxhat, S["xc"])), ops.scale(Fraction(-1, 2), ops.power(S["s"], 3))))
        dmu = ops.name("dmu", ops.add(ops.scale(-1, total(ops.mul(dxhat, S["s"]))),
                                      ops.mul(dvar, ops.scale(ops.ratio(-2, n), total(S["xc"])))))
        dX = ops.add(ops.add(ops.mul(dxhat, S["s"]), ops.mul(dvar, ops.scale(ops.ratio(2, n), S["xc"]))),
                     ops.scale(ops.ratio(1, n), dmu))
        return dX, _norm_parameter_grads(ops, G, S, P)
    return backward


def _residual_forward(ops, X, P, block, inner):
    """y = x + F(x), F the block's own layers."""
    return ops.name("y", ops.add(X, inner.forward(X))), {}


def _residual_backward(ops, G, X, S, P, block, inner):
    """∂C/∂x = ∂C/∂y + (the δ back through F of ∂C/∂y): the identity path and the block's."""
    return ops.add(G, inner.backward(G)), {}


_NORM_KEYS = ("eps", "affine")


def _paths_latex(n: str, x: str, sums: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The three paths' equations for a norm over `n` items (x its entry, sums under the Σ)."""
    dxhat = r"\frac{\partial C}{\partial \hat{x}_{" + x + "}}"
    dvar = r"\frac{\partial C}{\partial \sigma^{2({l})}}"
    dmu = r"\frac{\partial C}{\partial \mu^{({l})}}"
    return (("three paths", (
        dvar + r" = -\frac{1}{2} \sum_{" + sums + "} " + dxhat + r" \odot (x_{" + x + r"} - \mu^{({l})}) \odot s^3",
        dmu + r" = -\sum_{" + sums + "} " + dxhat + r" \odot s - \frac{2}{" + n + "} " + dvar
        + r" \odot \sum_{" + sums + "} (x_{" + x + r"} - \mu^{({l})})",
        r"\frac{\partial C}{\partial x_{" + x + "}} = " + dxhat + r" \odot s + \frac{2}{" + n + "} " + dvar
        + r" \odot (x_{" + x + r"} - \mu^{({l})}) + \frac{1}{" + n + "} " + dmu)),)
_NORM_LATEX_BACK = (
    r"\frac{\partial C}{\partial \gamma^{({l})}} = \sum_{b} \frac{\partial C}{\partial y^{({l})}} \odot \hat{x}^{({l})}",
    r"\frac{\partial C}{\partial \beta^{({l})}} = \sum_{b} \frac{\partial C}{\partial y^{({l})}}",
)

KINDS: dict[str, Kind] = {k.name: k for k in [
    Kind("dense", ("width", "activation", "bias"), ("width",), _block_dense_params,
         _block_dense_forward, _block_dense_backward,
         latex_forward=(r"z^{({l})} = a^{({m})} W^{({l})} + b^{({l})}", r"a^{({l})} = {act}(z^{({l})})"),
         latex_backward=(r"\delta^{({l})} = \frac{\partial C}{\partial a^{({l})}} \odot {act}'(z^{({l})})",
                         r"\frac{\partial C}{\partial W^{({l})}} = (a^{({m})})^{\top} \delta^{({l})}",
                         r"\frac{\partial C}{\partial b^{({l})}} = \sum_{b} \delta^{({l})}",
                         r"\frac{\partial C}{\partial a^{({m})}} = \delta^{({l})} (W^{({l})})^{\top}"),
         claim_names=("W", "b", "z", "a", "delta"), doc="z = x W + b, a = σ(z)", out_shape=flat_shape),
    Kind("activation", ("activation",), ("activation",), lambda block, convention: (),
         _block_activation_forward, _block_activation_backward,
         latex_forward=(r"a^{({l})} = {act}(a^{({m})})",),
         latex_backward=(r"\frac{\partial C}{\partial a^{({m})}} = \frac{\partial C}{\partial a^{({l})}} \odot {act}'(a^{({m})})",),
         claim_names=("a",), doc="a = σ(x) entry by entry", inputs=(1, 2, 3)),
    Kind("batchnorm", _NORM_KEYS, (), _norm_params, _norm_forward("rows"), _norm_backward("rows"),
         forms=(("three paths", _norm_paths("rows")),), latex_forms=_paths_latex("B", "b", "b"),
         latex_forward=(r"\mu^{({l})} = \frac{1}{B} \sum_{b} x_b", r"\sigma^{2({l})} = \frac{1}{B} \sum_{b} (x_b - \mu^{({l})})^2",
                        r"\hat{x}_b = \frac{x_b - \mu^{({l})}}{\sqrt{\sigma^{2({l})} + \varepsilon}}",
                        r"y_b = \gamma^{({l})} \odot \hat{x}_b + \beta^{({l})}"),
         latex_backward=_NORM_LATEX_BACK + (
             r"\frac{\partial C}{\partial x_b} = \frac{\gamma^{({l})} s}{B} \odot \Bigl(B \frac{\partial C}{\partial y_b} - \sum_{b'} \frac{\partial C}{\partial y_{b'}} - \hat{x}_b \odot \sum_{b'} \frac{\partial C}{\partial y_{b'}} \odot \hat{x}_{b'}\Bigr)",),
         claim_names=("mu", "var", "s", "xhat", "gamma", "beta", "y"),
         doc="per feature over the batch: μ, σ², x̂ = (x − μ)/√(σ² + ε), y = γ x̂ + β"),
    Kind("layernorm", _NORM_KEYS, (), _norm_params, _norm_forward("cols"), _norm_backward("cols"),
         forms=(("three paths", _norm_paths("cols")),), latex_forms=_paths_latex("n", "bi", "i"),
         latex_forward=(r"\mu^{({l})}_b = \frac{1}{n} \sum_{i} x_{bi}", r"\sigma^{2({l})}_b = \frac{1}{n} \sum_{i} (x_{bi} - \mu^{({l})}_b)^2",
                        r"\hat{x}_{bi} = \frac{x_{bi} - \mu^{({l})}_b}{\sqrt{\sigma^{2({l})}_b + \varepsilon}}",
                        r"y_{bi} = \gamma^{({l})}_i \hat{x}_{bi} + \beta^{({l})}_i"),
         latex_backward=_NORM_LATEX_BACK + (
             r"\frac{\partial C}{\partial x_{bi}} = \frac{s_b}{n} \Bigl(n \frac{\partial C}{\partial \hat{x}_{bi}} - \sum_{i'} \frac{\partial C}{\partial \hat{x}_{bi'}} - \hat{x}_{bi} \sum_{i'} \frac{\partial C}{\partial \hat{x}_{bi'}} \hat{x}_{bi'}\Bigr)",),
         claim_names=("mu", "var", "s", "xhat", "gamma", "beta", "y"),
         doc="per example over the features: μ, σ², x̂ = (x − μ)/√(σ² + ε), y = γ x̂ + β"),
    Kind("residual", (), (), lambda block, convention: (), _residual_forward, _residual_backward,
         latex_forward=(r"y^{({l})} = x + F^{({l})}(x)",),
         latex_backward=(r"\frac{\partial C}{\partial x} = \frac{\partial C}{\partial y^{({l})}} + \frac{\partial C}{\partial y^{({l})}} \frac{\partial F^{({l})}}{\partial x}",),
         claim_names=("y",), doc="y = x + F(x), F its own layers (which keep the width)", inputs=(1, 2, 3)),
] + SPATIAL_KINDS}


class _Inner:
    """A residual block's own layers, as one forward and one backward step (what `inner` gives a block)."""

    def __init__(self, ops, blocks, P: dict, grads: dict, state: dict, backward: dict | None):
        self.ops, self.blocks, self.P, self.grads, self.state, self.backward_of = ops, blocks, P, grads, state, backward

    def forward(self, X):
        here = self.ops.position
        out = forward_pass(self.ops, self.blocks, X, self.P, self.state)
        self.ops.at(here)  # the residual's own values are named as its own
        return out

    def backward(self, G):
        here = self.ops.position
        out = backward_pass(self.ops, self.blocks, G, self.P, self.state, self.grads, self.backward_of)
        self.ops.at(here)
        return out


def forward_pass(ops, blocks, X, P: dict, state: dict):
    """Run blocks forward from X; state[position] = (its input, its saved values, its output); P[position] = its parameters."""
    for block in blocks:
        ops.at(block.position)
        inner = _Inner(ops, block.inner, P, {}, state, None)
        Y, saved = KINDS[block.kind].forward(ops, X, P.get(block.position, {}), block, inner)
        state[block.position] = (X, saved, Y)
        X = Y
    return X


def backward_pass(ops, blocks, G, P: dict, state: dict, grads: dict, backward: dict | None = None):
    """Run blocks backward from G = ∂C/∂(their output); grads[position] = {param: ∂C/∂param}; returns ∂C/∂(input).

    `backward` may replace a kind's backward pass (by kind name): a form under test, or a mutant.
    """
    for block in reversed(blocks):
        ops.at(block.position)
        X, saved, _ = state[block.position]
        inner = _Inner(ops, block.inner, P, grads, state, backward)
        step = (backward or {}).get(block.kind, KINDS[block.kind].backward)
        G, grads[block.position] = step(ops, G, X, saved, P.get(block.position, {}), block, inner)
    return G


_ELEMENTWISE_VJP = re.compile(r"\\frac\{\\partial C\}\{\\partial a\^\{\(\{l\}\)\}\} \\odot \{act\}'\((?:z|a)\^\{\(\{[lm]\}\)\}\)")
_SOFTMAX_VJP = (r"a^{({l})} \odot \Bigl(\frac{\partial C}{\partial a^{({l})}} - \operatorname{rowsum}\bigl("
                r"\frac{\partial C}{\partial a^{({l})}} \odot a^{({l})}\bigr)\Bigr)")


def latex_backward(block) -> tuple[str, ...]:
    """A block's backward equations as a document prints them ({l}, {m}, {act} still to fill): a softmax's δ is
    its Jacobian applied by rows, a ∘ (∂C/∂a − rowsum(∂C/∂a ∘ a)), not ∂C/∂a ∘ σ'(z)."""
    lines = KINDS[block.kind].latex_backward
    if block.kind in ("dense", "activation") and not ACTIVATIONS[block.activation].elementwise:
        lines = tuple(_ELEMENTWISE_VJP.sub(lambda m: _SOFTMAX_VJP, line) for line in lines)
    return lines
