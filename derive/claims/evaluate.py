"""A claim's tree evaluated: exactly in SymPy, for the proof, and in floating point, to sift repairs.

Both evaluations share one set of shape rules, so a shape error reads the same either
way. The values of the network's named quantities come from a Leaves implementation
(derive.claims.truth's SymLeaves and NumLeaves).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable

import numpy as np
import sympy as sp

from derive.claims.tree import MAX_WORK, ClaimError, Invalid, Leaf, Node, Num, Op, ShapeError, partial_ratio, work_of


def is_matrix(v) -> bool:
    return isinstance(v, (sp.MatrixBase, np.ndarray))


def shape_of(v) -> tuple[int, int] | None:
    return tuple(v.shape) if is_matrix(v) else None


def size_text(shape) -> str:
    return "a scalar" if shape is None else f"{shape[0]}×{shape[1]}"


class Leaves(ABC):
    """What an evaluation needs from the network: leaf values and the activations.

    derive.claims.truth implements it for SymPy values (SymLeaves) and for numbers at a point (NumLeaves).
    """

    numeric: bool = False

    @abstractmethod
    def scalar(self, kind: str, layer: int | None, index: tuple[int, ...], node: Leaf):
        """One named scalar (index resolved)."""

    @abstractmethod
    def matrix(self, kind: str, layer: int | None, node: Leaf):
        """A named vector or matrix (or C, the cost)."""

    @abstractmethod
    def activate(self, value, name: str | None, prime: bool, node: Op):
        """sigma (or sigma') of a value that must be a neuron's pre-activation, entry by entry."""

    def is_zero(self, value) -> bool:
        """Whether a denominator is 0 at every point of the network (SymLeaves adds the network's relations)."""
        return value == 0

    @abstractmethod
    def local(self, top: Leaf, by: Leaf, node: Op):
        """d(top)/d(by) for two scalars of one example: a factor of the chain rule (da/dz, dz/dw, dz/da)."""

    @abstractmethod
    def gradient(self, leaf: Leaf, scale: str, node: Op, example: int | None = None):
        """dC/dX of a named quantity (a source's dZ, dW, \\nabla_{h} J): its value, whole or one entry."""


def _total(terms: list):
    first = terms[0]
    if isinstance(first, np.ndarray) or isinstance(first, float):
        return sum(terms[1:], first)
    if isinstance(first, sp.MatrixBase):
        return sp.Matrix(first.rows, first.cols, lambda i, j: sp.Add(*[t[i, j] for t in terms]))
    return sp.Add(*terms)


class Evaluator:
    """Evaluate a tree over Leaves; shape rules as in NumPy for '*', as in mathematics for products."""

    def __init__(self, leaves: Leaves, describe: Callable[[Node], str], broadcast: bool = True):
        self.leaves = leaves
        self.describe = describe
        self.broadcast = broadcast  # text's + - * / broadcast as NumPy's do; LaTeX's operators do not

    def __call__(self, node: Node):
        cost = work_of(node)
        if cost > MAX_WORK:
            raise ClaimError(f"the claim takes about {cost} steps to evaluate (its sums multiply out); at most "
                             f"{MAX_WORK}", (0, 0))
        return self.eval(node, {})

    # -- helpers -----------------------------------------------------------------
    def _bad(self, node: Node, message: str):
        if self.leaves.numeric:
            raise Invalid(message)
        raise ClaimError(message, node.span)

    def _const(self, q):
        return float(q) if self.leaves.numeric else q

    def _index(self, node: Node, items, env) -> tuple[int, ...]:
        out = []
        for item in items:
            if isinstance(item, tuple):
                var, off = item
                if var not in env:
                    self._bad(node, f"index {var} is not bound by a \\sum (write a number, or \\sum_{{{var}=0}}^{{1}} ...)")
                out.append(env[var] + off)
            else:
                out.append(item)
        return tuple(out)

    def _same(self, node: Node, a, b, what: str):
        """Sizes of an elementwise operation: equal, or (in text) broadcast as NumPy broadcasts them."""
        sa, sb = shape_of(a), shape_of(b)
        if sa is None or sb is None or sa == sb:
            return
        l, r = node.args
        sizes = f"{self.describe(l)} is {size_text(sa)} but {self.describe(r)} is {size_text(sb)}"
        if all(x == y or 1 in (x, y) for x, y in zip(sa, sb)):
            if self.broadcast:
                return
            self._bad(node, f"{what}: {sizes}; LaTeX's operators do not broadcast, so it reads either as NumPy's "
                            "broadcasting or as a mistake in the sizes: make the sizes equal, or write the claim as "
                            "text (rhs), where + - * / broadcast as in NumPy")
        raise ShapeError(f"{what}: {sizes}")

    def _nonzero(self, den: Node, value) -> None:
        """Refuse a denominator that is 0 everywhere, judged on its own value, before anything can cancel it."""
        if self.leaves.numeric:
            return
        for x in (value if is_matrix(value) else [value]):
            try:
                zero = self.leaves.is_zero(x)
            except ClaimError as exc:
                raise ClaimError(exc.message, exc.span or den.span) from None
            if zero:
                if isinstance(den, Num):
                    self._bad(den, "division by zero")
                entry = "an entry of " if is_matrix(value) else ""
                self._bad(den, f"division by zero: {entry}{self.describe(den)} is 0 at every point of the network "
                               "(whatever the weights, inputs and targets)")

    def _elementwise(self, a, b, f):
        if is_matrix(a) and is_matrix(b):
            if isinstance(a, np.ndarray):
                return f(a, b)
            rows, cols = max(a.rows, b.rows), max(a.cols, b.cols)  # a size of 1 stretches, as in NumPy
            return sp.Matrix(rows, cols, lambda i, j: f(a[i % a.rows, j % a.cols], b[i % b.rows, j % b.cols]))
        if is_matrix(a):
            return f(a, b) if isinstance(a, np.ndarray) else a.applyfunc(lambda x: f(x, b))
        if is_matrix(b):
            return f(a, b) if isinstance(b, np.ndarray) else b.applyfunc(lambda x: f(a, x))
        return f(a, b)

    def _matmul(self, node: Node, a, b):
        sa, sb = shape_of(a), shape_of(b)
        if sa[1] != sb[0]:
            l, r = node.args
            raise ShapeError(f"{self.describe(node)}: {self.describe(l)} is {size_text(sa)} and {self.describe(r)} is "
                             f"{size_text(sb)}; a matrix product needs the {sa[1]} columns of the first to meet "
                             f"{sb[0]} rows of the second")
        return a @ b if isinstance(a, np.ndarray) else a * b

    # -- the walk ----------------------------------------------------------------
    def eval(self, node: Node, env: dict):
        if isinstance(node, Num):
            return self._const(node.value)
        if isinstance(node, Leaf):
            if node.index is None:
                return self.leaves.matrix(node.kind, node.layer, node)
            return self.leaves.scalar(node.kind, node.layer, self._index(node, node.index, env), node)
        op = node.op
        if op == "sum":
            var, lo, hi = node.param
            terms = [self.eval(node.args[0], {**env, var: v}) for v in range(lo, hi + 1)]
            return _total(terms)  # an index never changes a term's size, so the terms add
        if op in ("sigma", "sigma_prime"):
            arg = self.eval(node.args[0], env)
            return self.leaves.activate(arg, node.param, op == "sigma_prime", node)
        if op == "grad":
            return self.leaves.gradient(node.args[0], node.param, node)
        ratio = partial_ratio(node)
        if ratio is not None:
            top, x = ratio
            if isinstance(top, Leaf) and top.kind == "C" and isinstance(x, Leaf) and x.kind in ("z", "a", "w", "W", "b"):
                per_example = top.example is not None
                if per_example and x.kind not in ("z", "a") and x.index is None:
                    self._bad(node, "one example's cost is differentiated here by one weight, a pre-activation or an "
                                    "activation")
                return self.leaves.gradient(x, "example" if per_example else "batch", node,
                                            top.example if isinstance(top.example, int) else None)
            if isinstance(top, Leaf) and isinstance(x, Leaf) and top.index is not None and x.index is not None:
                return self.leaves.local(top, x, node)  # a factor of the chain rule: da_j/dz_j, dz_j/dw_jk
            self._bad(node, "a partial on the right is of the cost, or of one neuron's value by another quantity: "
                            "\\frac{\\partial C}{\\partial z^{(l)}_j}, \\frac{\\partial a_j}{\\partial z_j}")
        if op == "partial":
            self._bad(node, "\\partial belongs on the left-hand side, as in \\frac{\\partial C}{\\partial w^{(2)}_{01}}")
        if op == "change":
            self._bad(node, "a weight's change \\Delta w stands on the left-hand side")
        args = [self.eval(a, env) for a in node.args]
        if op == "neg":
            return -args[0]
        if op == "T":
            return args[0].T if is_matrix(args[0]) else args[0]
        if op in ("pow", "epow"):
            base, n = args[0], node.param
            if is_matrix(base):
                if op == "pow":  # elementwise, or a matrix power: the notation does not say which
                    self._bad(node, f"{self.describe(node)}: a power of the {size_text(shape_of(base))} matrix "
                                    f"{self.describe(node.args[0])} has two readings, entry by entry or the matrix's "
                                    "power: write \\odot between the factors, or the matrix product out")
                if n < 0:
                    self._nonzero(node.args[0], base)
                return base**n if isinstance(base, np.ndarray) else base.applyfunc(lambda x: x**n)
            if n < 0:
                self._nonzero(node.args[0], base)
            return base**n
        if op == "diag":
            v = args[0]
            s = shape_of(v)
            if s is None or 1 not in s:
                raise ShapeError(f"{self.describe(node)}: diag needs a vector, and {self.describe(node.args[0])} is {size_text(s)}")
            entries = list(v.ravel()) if isinstance(v, np.ndarray) else list(v)
            return np.diag(np.array(entries, dtype=float)) if isinstance(v, np.ndarray) else sp.diag(*entries)
        if op == "axis_sum":
            v = args[0]
            if not is_matrix(v):
                raise ShapeError(f"{self.describe(node)}: np.sum over an axis needs a matrix")
            if node.param is None:  # np.sum(x): every entry
                return float(v.sum()) if isinstance(v, np.ndarray) else sp.Add(*list(v))
            if isinstance(v, np.ndarray):
                return v.sum(axis=node.param, keepdims=True)
            if node.param == 0:
                return sp.Matrix(1, v.cols, lambda i, j: sp.Add(*[v[r, j] for r in range(v.rows)]))
            return sp.Matrix(v.rows, 1, lambda i, j: sp.Add(*[v[i, c] for c in range(v.cols)]))
        if op == "entry":
            v = args[0]
            s = shape_of(v)
            asked = self._index(node, node.param, env)
            if s is None:
                self._bad(node, f"{self.describe(node.args[0])} is a scalar and has no entries")
            idx = asked
            if len(idx) == 1 and 1 in s:
                idx = (idx[0], 0) if s[1] == 1 else (0, idx[0])
            if len(idx) != 2 or not (0 <= idx[0] < s[0] and 0 <= idx[1] < s[1]):
                self._bad(node, f"no entry {list(asked)} in {self.describe(node.args[0])}, which is {size_text(s)}")
            return v[idx[0], idx[1]]
        a, b = args
        if op in ("add", "sub"):
            self._same(node, a, b, "a sum of different sizes" if op == "add" else "a difference of different sizes")
            return self._elementwise(a, b, (lambda x, y: x + y) if op == "add" else (lambda x, y: x - y))
        if op in ("mul", "had"):
            self._same(node, a, b, "an elementwise product of different sizes")
            return self._elementwise(a, b, lambda x, y: x * y)
        if op == "dot":
            if is_matrix(a) and is_matrix(b):
                return self._matmul(node, a, b)
            return a * b
        if op == "matmul":
            if not (is_matrix(a) and is_matrix(b)):
                which = node.args[0] if not is_matrix(a) else node.args[1]
                raise ShapeError(f"{self.describe(node)}: @ multiplies matrices, and {self.describe(which)} is a scalar")
            return self._matmul(node, a, b)
        if op == "div":
            self._same(node, a, b, "an elementwise quotient of different sizes")
            self._nonzero(node.args[1], b)
            return self._elementwise(a, b, lambda x, y: x / y)
        raise ClaimError(f"unknown operation {op}", node.span)  # pragma: no cover - the readers make only the above

