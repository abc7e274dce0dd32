"""The cost table: the cost of one example as a SymPy expression in the outputs a and targets y.

A batch cost is the sum or the mean of these over the examples (the spec's `batch`).
The gradient of the cost with respect to the outputs is `sympy.diff` of the definition.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import sympy as sp


@dataclass(frozen=True)
class Cost:
    name: str
    definition: Callable[[Sequence[sp.Expr], Sequence[sp.Expr]], sp.Expr]
    latex: str  # the per-example cost with {a} and {y} standing for the output and target names
    output_activations: tuple[str, ...] | None  # None: any output activation
    one_hot: bool = False  # targets sum to 1 (a probability distribution)
    rational: bool = False  # derivatives are rational in the outputs: proofs use cancel/together


def _quadratic(outs, ys):
    return sp.Rational(1, 2) * sp.Add(*[(o - t) ** 2 for o, t in zip(outs, ys)])


def _cross_entropy(outs, ys):
    return -sp.Add(*[t * sp.log(o) + (1 - t) * sp.log(1 - o) for o, t in zip(outs, ys)])


def _log_likelihood(outs, ys):
    return -sp.Add(*[t * sp.log(o) for o, t in zip(outs, ys)])


#        name              definition        LaTeX (per example)                                                   output activations
COSTS: dict[str, Cost] = {
    c.name: c
    for c in [
        Cost("quadratic",      _quadratic,      r"\tfrac{1}{2}\sum_j ({a}_j - {y}_j)^2",                                None),
        Cost("cross_entropy",  _cross_entropy,  r"-\sum_j \left[{y}_j \ln {a}_j + (1 - {y}_j)\ln(1 - {a}_j)\right]",  ("sigmoid",), rational=True),
        Cost("log_likelihood", _log_likelihood, r"-\sum_j {y}_j \ln {a}_j",                                             ("softmax",), one_hot=True, rational=True),
    ]
}
