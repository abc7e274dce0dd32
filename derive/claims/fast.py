"""A fast exact proof for claims written through deltas: BP1-BP4 over a whole batch in a second.

The exact check in derive.claims writes every delta in the network's atoms, so a
batch's BP4, dC/dW = delta A^T / n, expands n examples of a long expression in every
entry. But delta^{(l)}_j of example e is, by the chain rule's reverse accumulation
(derive.chain), one step from the layer above:

    delta^{(L)}_j = sum_m dC/da^{(L)}_m * da^{(L)}_m/dz^{(L)}_j / scale
    delta^{(l)}_j = sum_m da^{(l)}_m/dz^{(l)}_j * sum_q delta^{(l+1)}_q * dz^{(l+1)}_q/da^{(l)}_m
    dC/dp        = scale * sum_e delta^{(l)}_j(e) * dz^{(l)}_j(e)/dp

(scale is the batch mean's 1/n, which ChainRule.delta divides out). Here the deltas of
one layer, `top`, are held as fresh symbols, every lower delta is written through them
by those steps, and both sides of the claim are compared in SymEngine. A difference that
expands to 0 with the held symbols free is 0 whatever values they take, so also at the
deltas' true values: PROVEN is as exact as the full check. Anything else (a difference
that is not 0, an operation or a size this evaluator does not take, a name or an index
that is wrong) is no verdict here: the full check decides, with its witness, its error
or its repair. So a wrong claim is refuted exactly as before.

The evaluator takes a strict part of the claim language: sizes must match exactly (no
broadcasting) and denominators must be nonzero numbers; a claim outside it goes to the
full check. Its work is bounded first by derive.claims.cost's estimate, with the held
deltas counted as one symbol an entry.
"""

from __future__ import annotations

import weakref

import symengine as se
import sympy as sp

from derive.chain import ReverseAccumulation
from derive.claims.cost import estimate
from derive.claims.tree import MAX_WORK, Leaf, Node, Num, Op, walk, work_of
from derive.proofs.identity import ToSymEngine, has_denominator, rational_zero

MAX_FAST_OPS = 5_000_000  # SymEngine's scalar operations are some ten to a hundred times cheaper than SymPy's
MAX_FAST_TOTAL_TERMS = 3_000_000
MAX_FAST_ENTRY_TERMS = 200_000
MAX_RATIONAL_TERMS = 2_000  # an entry with denominators is brought over one (SymPy's together) up to this size
_ZERO = se.Integer(0)


class Bail(Exception):
    """Not for this evaluator: the full check decides."""


class Held:
    """The chain rule of one Context in SymEngine (derive.chain's reverse accumulation), with the deltas of a
    chosen layer held as symbols."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.net = ctx.net
        self.chain = ReverseAccumulation(ctx.net, ToSymEngine(), se.Add)
        self.conv = self.chain.conv
        self._delta: dict = {}
        self._held: dict = {}
        self._neurons: dict | None = None
        self._matrices: dict = {}
        self.rule = {self.conv(k): self.conv(v) for k, v in ctx.rule.items()}

    def matrix(self, m: sp.Matrix) -> se.DenseMatrix:
        return se.DenseMatrix(m.rows, m.cols, [self.conv(x) for x in m])

    def held(self, e: int, l: int, j: int):
        key = (e, l, j)
        if key not in self._held:
            self._held[key] = se.Symbol(f"_held_delta{l}_{j}_e{e}")  # a name no claim can write, no network symbol has
        return self._held[key]

    def neuron(self, x) -> tuple[int, int, int] | None:
        """(example, layer, neuron) of the pre-activation x expands to, or None."""
        if self._neurons is None:
            net = self.net
            self._neurons = {se.expand(self.chain.z(e, l, j)): (e, l, j) for e in range(net.E)
                             for l in range(1, net.L + 1) for j in range(net.sizes[l])}
        return self._neurons.get(se.expand(x))

    # -- the chain rule, one layer at a time -----------------------------------------------
    def delta(self, e: int, l: int, j: int, top: int):
        """delta^{(l)}_j of example e, written through the held deltas of layer top (top > L: in the atoms)."""
        if l >= top:
            return self.held(e, l, j)
        key = (e, l, j, top)
        if key not in self._delta:
            self._delta[key] = self.chain.delta_step(e, l, j, lambda q: self.delta(e, l + 1, q, top))
        return self._delta[key]

    def partial(self, p, top: int):
        """dC/dp = scale * sum over the examples of delta^{(l)}_j * dz^{(l)}_j/dp."""
        return self.chain.partial_step(p, lambda e: self.delta(e, p.layer, p.j, top))

    def truth(self, lhs, e: int, top: int):
        """(shape, entry): the left-hand side's shape as Context.truth lays it out (None for a scalar), and its
        entry (r, c), built only when asked: a wrong claim stops at its first wrong entry."""
        ctx, net, l = self.ctx, self.net, lhs.layer
        n, E = ctx.sizes, ctx.E
        if lhs.index is not None:
            if lhs.kind == "delta":
                j = ctx._check(lhs.index[0], n[l], "j", None)
                return None, lambda r, c: self.delta(e, l, j, top)
            p = ctx._param(l, lhs.index[0], lhs.index[1] if lhs.kind == "w" else None, lhs.kind == "b", None)
            return None, lambda r, c: self.partial(p, top)
        if lhs.kind == "delta":
            shape = (n[l], E)  # one column per example

            def entry(r, c):
                return self.delta(c, l, r, top)
        elif lhs.kind == "w":
            shape = (n[l], n[l - 1])

            def entry(r, c):
                return self.partial(net.param_by_symbol[net.w[l][r, c]], top)
        elif lhs.kind == "W":
            shape = tuple(ctx.matrix("W", l).shape)

            def entry(r, c):
                p = net.param_at.get((f"W{l}", (r, c)))
                return _ZERO if p is None else self.partial(p, top)
        else:
            shape = (1, n[l]) if ctx.row else (n[l], 1)

            def entry(r, c):
                return self.partial(ctx._param(l, c if ctx.row else r, None, True, None), top)
        if lhs.transposed:
            return (shape[1], shape[0]), lambda r, c: entry(c, r)
        return shape, entry


_HELD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def held_of(ctx) -> Held:
    if ctx not in _HELD:
        _HELD[ctx] = Held(ctx)
    return _HELD[ctx]


def _is_matrix(v) -> bool:
    return isinstance(v, se.DenseMatrix)


class _Eval:
    """The claim's tree in SymEngine, deltas written through the held layer; Bail outside the strict part."""

    def __init__(self, held: Held, e: int, top: int):
        self.h, self.ctx, self.e, self.top = held, held.ctx, e, top

    def index(self, items, env) -> tuple[int, ...]:
        out = []
        for item in items:
            if isinstance(item, tuple):
                var, off = item
                if var not in env:
                    raise Bail
                out.append(env[var] + off)
            else:
                out.append(item)
        return tuple(out)

    def leaf(self, node: Leaf, env):
        ctx, h, l = self.ctx, self.h, node.layer
        if node.index is not None:
            idx = self.index(node.index, env)
            if node.kind == "delta":
                if len(idx) != 1 or not 0 <= idx[0] < ctx.sizes[l]:
                    raise Bail
                return h.delta(self.e, l, idx[0], self.top)
            return h.conv(ctx.scalar(node.kind, l, idx, self.e, node.span))
        if node.kind == "delta":
            n, E = ctx.sizes[l], ctx.E
            return se.DenseMatrix(n, E, [h.delta(ex, l, j, self.top) for j in range(n) for ex in range(E)])
        key = (node.kind, l)
        if key not in h._matrices:
            value = ctx.matrix(node.kind, l, node.span)
            h._matrices[key] = h.matrix(value) if isinstance(value, sp.MatrixBase) else h.conv(value)
        return h._matrices[key]

    def activate(self, node: Op, env):
        """sigma or sigma' entry by entry, of a neuron's pre-activation as SymLeaves.activate finds it: a z named
        directly is known without expanding anything; anything else must expand to exactly one neuron's z."""
        arg = node.args[0]
        ctx, h, prime = self.ctx, self.h, node.op == "sigma_prime"

        def one(e, l, j):
            return h.conv(ctx.activation(e, l, j, node.param, prime, node.span))

        if isinstance(arg, Leaf) and arg.kind == "z":
            l, n, E = arg.layer, ctx.sizes[arg.layer], ctx.E
            if arg.index is None:
                return se.DenseMatrix(n, E, [one(ex, l, j) for j in range(n) for ex in range(E)])
            idx = self.index(arg.index, env)
            if len(idx) != 1 or not 0 <= idx[0] < n:
                raise Bail
            return one(self.e, l, idx[0])

        def found(x):
            hit = h.neuron(x)
            if hit is None:  # no neuron (or a held delta inside): the full check says what it is
                raise Bail
            return one(*hit)

        value = self(arg, env)
        if _is_matrix(value):
            return se.DenseMatrix(value.rows, value.cols, [found(x) for x in value])
        return found(value)

    def __call__(self, node: Node, env: dict):
        if isinstance(node, Num):
            return se.sympify(node.value)
        if isinstance(node, Leaf):
            return self.leaf(node, env)
        op = node.op
        if op == "sum":
            var, lo, hi = node.param
            terms = [self(node.args[0], {**env, var: v}) for v in range(lo, hi + 1)]
            if not terms:
                raise Bail
            total = terms[0]
            for t in terms[1:]:
                if _is_matrix(t) != _is_matrix(total) or (_is_matrix(t) and t.shape != total.shape):
                    raise Bail
                total = total + t
            return total
        if op in ("sigma", "sigma_prime"):
            return self.activate(node, env)
        if op not in _OPS:
            raise Bail  # partials, a notation's gradients and NumPy's sums: the full check reads them
        args = [self(a, env) for a in node.args]
        if op == "neg":
            return args[0].mul_scalar(-1) if _is_matrix(args[0]) else -args[0]
        if op == "T":
            return args[0].T if _is_matrix(args[0]) else args[0]
        if op in ("pow", "epow"):
            base, k = args[0], node.param
            if k < 0 and not _nonzero_number(base):
                raise Bail
            if _is_matrix(base):
                if op == "pow":
                    raise Bail
                return base.applyfunc(lambda x: x**k)
            return base**k
        if op == "axis_sum":  # NumPy's sum over an axis (keepdims), or over every entry
            v = args[0]
            if not _is_matrix(v):
                raise Bail
            r, c = v.shape
            if node.param is None:
                return sum((v[i, j] for i in range(r) for j in range(c)), se.Integer(0))
            if node.param == 0:
                return se.DenseMatrix(1, c, [sum((v[i, j] for i in range(r)), se.Integer(0)) for j in range(c)])
            return se.DenseMatrix(r, 1, [sum((v[i, j] for j in range(c)), se.Integer(0)) for i in range(r)])
        if op == "diag":
            v = args[0]
            if not _is_matrix(v) or 1 not in v.shape:
                raise Bail
            return se.diag(*list(v))
        if op == "entry":
            v = args[0]
            if not _is_matrix(v):
                raise Bail
            idx = self.index(node.param, env)
            if len(idx) == 1 and 1 in v.shape:
                idx = (idx[0], 0) if v.shape[1] == 1 else (0, idx[0])
            if len(idx) != 2 or not (0 <= idx[0] < v.shape[0] and 0 <= idx[1] < v.shape[1]):
                raise Bail
            return v[idx[0], idx[1]]
        a, b = args
        ma, mb = _is_matrix(a), _is_matrix(b)
        if op in ("add", "sub"):
            f = (lambda x, y: x + y) if op == "add" else (lambda x, y: x - y)
            if ma and mb:
                if a.shape != b.shape:
                    raise Bail
                return f(a, b)
            if ma or mb:  # a number with a matrix: entry by entry, as the exact check has it
                return a.applyfunc(lambda x: f(x, b)) if ma else b.applyfunc(lambda x: f(a, x))
            return f(a, b)
        if op == "div":
            if mb or not _nonzero_number(b):
                raise Bail
            return a.mul_scalar(1 / b) if ma else a / b
        if op in ("mul", "had") or (op == "dot" and not (ma and mb)):
            if ma and mb:
                if a.shape != b.shape:
                    raise Bail
                return a.multiply_elementwise(b)
            if ma or mb:
                return a.mul_scalar(b) if ma else b.mul_scalar(a)
            return a * b
        if op in ("dot", "matmul"):
            if not (ma and mb) or a.shape[1] != b.shape[0]:
                raise Bail
            return a * b
        raise Bail  # pragma: no cover - the readers make only the above


_OPS = ("neg", "T", "pow", "epow", "diag", "entry", "add", "sub", "div", "mul", "had", "dot", "matmul", "axis_sum")


def _rational_zero(d) -> bool:
    """A difference with denominators (cross-entropy, softmax) is 0 over one denominator, as derive.proofs.identity has it."""
    expr = sp.sympify(d)
    return has_denominator(expr) and rational_zero(expr)


def _nonzero_number(x) -> bool:
    return not _is_matrix(x) and x.is_Number and x != 0


def held_layer(ctx, lhs, tree: Node) -> int:
    """The layer whose deltas are held: the highest the claim or its left side names (past L if none)."""
    layers = {n.layer for n, _ in walk(tree) if isinstance(n, Leaf) and n.kind == "delta"}
    if not layers:
        return ctx.L + 1
    return max(layers | {lhs.layer})


def prove(ctx, lhs, tree: Node, example: int, broadcast: bool) -> bool:
    """True when lhs = tree is an exact identity with one layer's deltas held as symbols; False: no verdict here."""
    if work_of(tree) > MAX_WORK:
        return False
    top = held_layer(ctx, lhs, tree)
    try:
        est = estimate(ctx, lhs, tree, broadcast, top)
        if est is None or not est.entries or est.over(MAX_FAST_OPS, MAX_FAST_TOTAL_TERMS, MAX_FAST_ENTRY_TERMS):
            return False
        h = held_of(ctx)
        shape, truth = h.truth(lhs, example, top)
        value = _Eval(h, example, top)(tree, {})
        if _is_matrix(value) and shape is None and value.shape == (1, 1):
            value = value[0, 0]  # a 1×1 matrix and a scalar stand for each other
        if (value.shape if _is_matrix(value) else None) != shape and not (shape == (1, 1) and not _is_matrix(value)):
            return False
        rows, cols = shape or (1, 1)
        for r in range(rows):
            for c in range(cols):
                d = truth(r, c) - (value[r, c] if _is_matrix(value) else value)
                if h.rule:
                    d = d.subs(h.rule)
                if se.expand(d) != 0 and not (est.entry_terms <= MAX_RATIONAL_TERMS and _rational_zero(d)):
                    return False
    except Bail:
        return False
    except Exception:  # noqa: BLE001 - what this path cannot do (a name, an index, a conversion) the full check says
        return False
    return True
