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

from dataclasses import dataclass
from typing import Callable, Sequence

import sympy as sp

ROW = "row"  # the spec's convention whose vectors are rows; every other is `column`


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
