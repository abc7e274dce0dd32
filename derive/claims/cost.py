"""What checking a claim costs, estimated from its tree's shapes before anything is evaluated.

The exact check evaluates the claim with explicit SymPy matrices, builds the truth by
the chain rule and expands every entry of the difference. Its cost follows from the
sizes alone: each matrix product of r×k by k×c makes r·c·k scalar products, an entry
of a product of entries of s and t terms expands to s·t terms, and the truth of a
gradient entry is a sum over the examples of δ times an input. So the sizes of every
node are estimated first (shape, and terms of an entry once expanded), and a claim
beyond the limits is refused with an ERROR that names the estimate and the limit,
instead of running for minutes and being refused afterwards.

A delta is counted either in full (an expression in the network's atoms, as the exact
check has it) or held from a layer up (derive.claims.fast keeps δ of that layer as a
symbol), which is what makes a batch's BP4 cheap.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import sympy as sp

from derive.claims.tree import MAX_TERMS, MAX_WORK, ClaimError, Leaf, Node, Num, partial_ratio, work_of

# measured on the 2-core machine: some 60 µs an operation and 20 µs a term (the witness and the repair
# search included), so a check at both limits takes about half a minute
MAX_OPS = 300_000  # scalar operations: the evaluation's products and sums, and the chain rule's truth
MAX_TOTAL_TERMS = 1_000_000  # terms expanded in the comparison, over every entry and both sides
CAP = 10**18  # estimates saturate here


def _cap(x: int) -> int:
    return min(CAP, x)


def _power(b: int, n: int) -> int:
    """Terms of (t_1 + ... + t_b)**n expanded: at most the monomials of degree n in b terms."""
    if b <= 1 or n == 0:
        return 1 if n == 0 else b
    return _cap(math.comb(n + b - 1, b - 1)) if b < 10**6 else CAP


@dataclass(frozen=True)
class Size:
    """A node's shape (None for a scalar) and the terms of one of its entries, expanded."""

    shape: tuple[int, int] | None
    terms: int


@dataclass
class Estimate:
    """The work of one check: scalar operations, the largest entry and all entries expanded."""

    ops: int
    entry_terms: int  # the largest entry of either side, expanded
    total_terms: int  # every compared entry of both sides, expanded
    entries: int  # entries compared (0: the sides' shapes differ, nothing is expanded)

    def over(self, ops: int | None = None, total: int | None = None, entry: int | None = None) -> str | None:
        """What exceeds the limits (the exact check's unless given), in words; None when the check fits."""
        ops, total, entry = ops or MAX_OPS, total or MAX_TOTAL_TERMS, entry or MAX_TERMS
        if self.entries and self.entry_terms > entry:
            return f"its expansion may have more than {entry} terms (about {_n(self.entry_terms)} in one entry)"
        if self.ops > ops:
            return f"about {_n(self.ops)} scalar operations to evaluate it and its truth; at most {_n(ops)}"
        if self.entries and self.total_terms > total:
            return f"about {_n(self.total_terms)} terms to expand over its {self.entries} entries; at most {_n(total)}"
        return None


def _n(x: int) -> str:
    """300,000 or 2.6e+11: exact while it reads at a glance."""
    return f"{x:,}" if x < 10**7 else f"{x:.2g}"


class _Stop(Exception):
    """The evaluation stops here (sizes that do not fit): only the work before it counts."""


class Sizes:
    """Terms of the network's quantities, from one representative entry each (cached per Context)."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._memo: dict = {}

    def _get(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def prime(self, l: int) -> int:
        """Terms of d a^{(l)}_m / d z^{(l)}_j (sigma', or a softmax Jacobian entry)."""
        def make():
            net = self.ctx.net
            pairs = [(0, 0)] + ([(0, 1)] if not net.acts[l].elementwise and net.sizes[l] > 1 else [])
            return max(expanded_terms(net.da_dz(0, l, m, j)) for m, j in pairs)
        return self._get(("prime", l), make)

    def cost_slope(self) -> int:
        """Terms of dC/da^{(L)}_m of one example."""
        def make():
            net = self.ctx.net
            return max(expanded_terms(sp.diff(net.cost_example[0], a)) for a in net.a[0][net.L])
        return self._get("slope", make)

    def cost(self) -> int:
        return self._get("C", lambda: expanded_terms(self.ctx.net.C))

    def delta(self, l: int, top: int) -> int:
        """Terms of delta^{(l)}_j written through the deltas of layer `top` held as symbols (top > L: in full)."""
        net, n = self.ctx.net, self.ctx.sizes
        if l >= top:
            return 1
        fan = 1 if net.acts[l].elementwise else n[l]  # softmax: every output of the layer depends on z_j
        if l == net.L:
            return _cap(fan * self.cost_slope() * self.prime(l))
        return _cap(fan * n[l + 1] * self.delta(l + 1, top) * self.prime(l))

    def leaf(self, kind: str, layer, top: int) -> int:
        n, bias = self.ctx.sizes, self.ctx.spec.bias
        if kind == "z":
            return n[layer - 1] + (bias != "none")
        if kind == "delta":
            return self.delta(layer, top)
        if kind in ("g",):
            return self.cost_slope()
        if kind == "D":
            return self.prime(layer)
        if kind == "C":
            return self.cost()
        return 1  # w W b a A y ones: one symbol (or 0, or 1) an entry


_SIZES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sizes_of(ctx) -> Sizes:
    if ctx not in _SIZES:
        _SIZES[ctx] = Sizes(ctx)
    return _SIZES[ctx]


def leaf_shape(ctx, kind: str, layer) -> tuple[int, int] | None:
    """The shape Context.matrix gives a named quantity (vectors are columns, one per example)."""
    n, E, L, row = ctx.sizes, ctx.E, ctx.L, ctx.row
    aug = ctx.spec.bias == "augmented"
    if kind == "C":
        return None
    if kind == "w":
        return (n[layer], n[layer - 1])
    if kind == "W":
        return (n[layer - 1] + aug, n[layer]) if row else (n[layer], n[layer - 1] + aug)
    if kind == "b":
        return (1, n[layer]) if row else (n[layer], 1)
    if kind == "A":
        return (E, n[layer] + aug)
    flip = getattr(ctx, "rows", False)  # a notation whose batches run their examples along rows
    if kind in ("a", "z", "delta"):
        return (E, n[layer]) if flip else (n[layer], E)
    if kind == "y":
        return (E, n[L]) if flip else (n[L], E)
    if kind == "g":
        return (n[L], E)
    if kind in ("rate", "count", "reg"):
        return None
    if kind == "ones":
        return (E, 1)
    if kind == "D":
        return (n[layer], n[layer])
    raise _Stop


def lhs_size(ctx, lhs, top: int) -> Size:
    """The shape of a left-hand side's truth and the terms of one of its entries."""
    n, E, row = ctx.sizes, ctx.E, ctx.row
    sizes, l = sizes_of(ctx), lhs.layer
    if lhs.kind in ("value:C", "local"):
        return Size(None, n[0] + 2)
    if lhs.kind.startswith("value:"):
        shape = None if lhs.index is not None else leaf_shape(ctx, lhs.kind[6:], l)
        if shape is not None and lhs.transposed:
            shape = (shape[1], shape[0])
        return Size(shape, n[l - 1] + 1 if lhs.kind == "value:z" else 1)
    d = sizes.delta(l, top)
    if lhs.kind in ("delta", "z", "a"):
        dd = d if lhs.kind != "a" or l == ctx.L else _cap(d * n[min(l + 1, ctx.L)])
        shape = None if lhs.index is not None else ((E, n[l]) if lhs.rows else (n[l], E))
        return Size(shape, dd)
    # dC/dp = sum over the examples of delta times dz/dp (an input, or 1)
    terms = _cap(E * d)
    if lhs.index is not None:
        return Size(None, terms)
    if lhs.kind == "w":
        shape = (n[l], n[l - 1])
    elif lhs.kind == "W":
        shape = leaf_shape(ctx, "W", l)
    else:
        shape = (1, n[l]) if row else (n[l], 1)
    return Size((shape[1], shape[0]) if lhs.transposed else shape, terms)


class _Walk:
    """Sizes of every node, children first, counting the scalar operations of the evaluation."""

    def __init__(self, ctx, top: int, broadcast: bool):
        self.ctx, self.top, self.broadcast = ctx, top, broadcast
        self.sizes = sizes_of(ctx)
        self.ops = 0

    def add(self, k: int) -> None:
        self.ops = _cap(self.ops + k)

    def elementwise(self, a: Size, b: Size) -> tuple[int, int] | None:
        if a.shape is None or b.shape is None or a.shape == b.shape:
            return a.shape or b.shape
        if self.broadcast and all(x == y or 1 in (x, y) for x, y in zip(a.shape, b.shape)):
            return (max(a.shape[0], b.shape[0]), max(a.shape[1], b.shape[1]))
        raise _Stop  # a shape error (or LaTeX's refusal to broadcast): the evaluation ends here

    def size(self, node: Node) -> Size:
        if isinstance(node, Num):
            return Size(None, 1)
        if isinstance(node, Leaf):
            if node.kind in ("rate", "count", "reg"):
                return Size(None, 1)
            terms = self.sizes.leaf(node.kind, node.layer, self.top)
            return Size(None if node.index is not None else leaf_shape(self.ctx, node.kind, node.layer), terms)
        op = node.op
        if op == "sum":
            _, lo, hi = node.param
            count = max(0, hi - lo + 1)
            before = self.ops
            body = self.size(node.args[0])
            self.ops = _cap(before + (self.ops - before) * count)
            return Size(body.shape, _cap(body.terms * count))
        ratio = partial_ratio(node)
        if ratio is not None and not (isinstance(ratio[0], Leaf) and ratio[0].kind == "C"):
            return Size(None, self.ctx.sizes[0] + 2)  # a factor of the chain rule: one neuron's local derivative
        if op == "grad" or ratio is not None:
            x = node.args[0] if op == "grad" else ratio[1]
            if not isinstance(x, Leaf) or not isinstance(x.layer, int) or x.kind not in ("z", "a", "w", "W", "b"):
                raise _Stop
            n, E, l = self.ctx.sizes, self.ctx.E, x.layer
            d = self.sizes.delta(min(max(l, 1), self.ctx.L), self.top)
            terms = _cap(d * (n[min(l + 1, self.ctx.L)] + E))
            if x.index is not None:
                return Size(None, terms)
            if x.kind in ("w", "W", "b"):
                return Size(leaf_shape(self.ctx, x.kind, l), terms)
            return Size((E, n[l]) if getattr(self.ctx, "rows", False) else (n[l], E), terms)
        args = [self.size(a) for a in node.args]
        cells = math.prod(args[0].shape) if args[0].shape else 1
        if op == "axis_sum":
            a = args[0]
            if a.shape is None:
                raise _Stop
            self.add(cells)
            if node.param is None:
                return Size(None, _cap(a.terms * cells))
            count = a.shape[node.param]
            shape = (1, a.shape[1]) if node.param == 0 else (a.shape[0], 1)
            return Size(shape, _cap(a.terms * count))
        if op in ("sigma", "sigma_prime"):
            self.add(cells * min(args[0].terms, 10_001))  # each entry is expanded to find its neuron (or refused)
            layer_terms = max((self.sizes.prime(l) for l in range(1, self.ctx.L + 1)
                               if self.ctx.net.acts[l].elementwise), default=1)
            return Size(args[0].shape, 1 if op == "sigma" else layer_terms)
        if op in ("neg", "T"):
            a = args[0]
            self.add(cells)
            shape = a.shape if op == "neg" or a.shape is None else (a.shape[1], a.shape[0])
            return Size(shape, a.terms)
        if op in ("pow", "epow"):
            a, k = args[0], abs(node.param)
            if op == "pow" and a.shape is not None:
                raise _Stop
            self.add(cells)
            return Size(a.shape, _power(a.terms, k))
        if op == "diag":
            a = args[0]
            if a.shape is None or 1 not in a.shape:
                raise _Stop
            m = max(a.shape)
            self.add(m * m)
            return Size((m, m), a.terms)
        if op == "entry":
            if args[0].shape is None:
                raise _Stop
            return Size(None, args[0].terms)
        if op == "partial":
            raise _Stop
        a, b = args
        if op in ("add", "sub"):
            shape = self.elementwise(a, b)
            self.add(math.prod(shape) if shape else 1)
            return Size(shape, _cap(a.terms + b.terms))
        if op in ("mul", "had", "div") or (op == "dot" and (a.shape is None or b.shape is None)):
            shape = self.elementwise(a, b)
            k = math.prod(shape) if shape else 1
            self.add(k * (1 + (b.terms if op == "div" else 0)))  # a denominator is checked for 0 first
            return Size(shape, _cap(a.terms * b.terms))
        if op in ("dot", "matmul"):
            if a.shape is None or b.shape is None or a.shape[1] != b.shape[0]:
                raise _Stop
            r, k, c = a.shape[0], a.shape[1], b.shape[1]
            self.add(_cap(r * c * k))
            return Size((r, c), _cap(k * a.terms * b.terms))
        raise _Stop  # pragma: no cover - the readers make only the above


def _truth_ops(ctx, lhs, entries: int) -> int:
    """Scalar operations of the exact truth (derive.chain): each partial differentiates every example's z."""
    n, E, L = ctx.sizes, ctx.E, ctx.L
    ops = 0
    if not ctx.chain.has_adjoints:  # reverse accumulation over every edge, once per Context
        ops += E * sum(n[l] * n[l - 1] * (n[l - 1] + 1) for l in range(2, L + 1))
    if lhs.kind != "delta":
        ops += entries * E * (n[lhs.layer - 1] + 1)
    return _cap(ops)


def size(ctx, tree: Node, broadcast: bool, top: int | None = None) -> Size | None:
    """The claim's value: its shape and the terms of an entry (None where the evaluation stops at a size error)."""
    try:
        return _Walk(ctx, ctx.L + 1 if top is None else top, broadcast).size(tree)
    except _Stop:
        return None


def estimate(ctx, lhs, tree: Node, broadcast: bool, top: int | None = None) -> Estimate | None:
    """The work of checking `lhs = tree`; top: the layer from which deltas are held (None: the exact check, in full).

    None when the tree's sizes cannot be told (the evaluation reports why).
    """
    full = top is None
    depth = ctx.L + 1 if full else top
    walk = _Walk(ctx, depth, broadcast)
    truth = lhs_size(ctx, lhs, depth)
    t_cells = math.prod(truth.shape) if truth.shape else 1
    try:
        value = walk.size(tree)
    except _Stop:
        return Estimate(walk.ops, 0, 0, 0)
    ops = walk.ops
    if full:
        ops = _cap(ops + _truth_ops(ctx, lhs, t_cells))
    elif lhs.kind != "delta":
        ops = _cap(ops + t_cells * ctx.E)  # a gradient entry sums over the examples
    shape = value.shape
    if shape == (1, 1) and truth.shape is None or shape is None and truth.shape == (1, 1):
        shape = truth.shape  # a 1×1 matrix and a scalar stand for each other
    if shape != truth.shape:
        return Estimate(ops, 0, 0, 0)
    return Estimate(ops, max(value.terms, truth.terms), _cap(t_cells * (value.terms + truth.terms)), t_cells)


def _valid(ctx, lhs) -> None:
    """Raise the ClaimError Context.truth raises for an index out of range, without building the truth."""
    if lhs.index is None:
        return
    l, j = lhs.layer, lhs.index[0]
    if lhs.kind == "local":
        return
    if lhs.kind in ("delta", "z", "a", "value:z", "value:a"):
        ctx._check(j, ctx.sizes[l], "j", None)
    else:
        ctx._param(l, j, lhs.index[1] if lhs.kind == "w" else None, lhs.kind == "b", None)


def refusal(ctx, lhs, tree: Node, broadcast: bool) -> ClaimError | None:
    """An ERROR for a claim whose exact check is beyond the limits, naming the estimate, the limit and the way out."""
    if work_of(tree) > MAX_WORK:
        return None  # the evaluator refuses it with its own message
    try:
        _valid(ctx, lhs)
    except ClaimError:
        return None  # the left-hand side names nothing: that error is said first
    est = estimate(ctx, lhs, tree, broadcast)
    why = est.over() if est is not None else None
    if why is None:
        return None
    now = "-".join(map(str, ctx.sizes))
    if ctx.E > 1:
        fewer = min(2, ctx.E - 1)
        return ClaimError(f"too large to prove exactly: {why}; check it at smaller sizes or with fewer examples (the "
                          f"claims file's sizes = [3, 4, 2] and examples = {fewer}; now {now} with {ctx.E} examples)",
                          (0, 0))
    return ClaimError(f"too large to prove exactly: {why}; check it at smaller sizes (the claims file's "
                      f"sizes = [3, 4, 2]; now {now})", (0, 0))


def expanded_terms(expr, cap: int = MAX_TERMS) -> int:
    """An upper bound on the terms of expr brought over one denominator and expanded, saturating above cap.

    Each subexpression is estimated as (numerator terms, denominator terms): a sum of
    fractions multiplies out every other denominator, as `together` does, so a deep
    continued fraction is seen to explode before anything is expanded.
    """
    top = cap + 1
    memo: dict = {}

    def mul(a: int, b: int) -> int:
        return min(top, a * b)

    def power(b: int, n: int) -> int:
        """Terms of (t_1 + ... + t_b)**n: at most the monomials of degree n in b terms."""
        if b <= 1:
            return b
        if n * (b - 1).bit_length() <= 64 and b**n <= top:
            return b**n
        return min(top, math.comb(n + b - 1, b - 1)) if b < 4096 else top

    def est(e) -> tuple[int, int]:
        if e in memo:
            return memo[e]
        if e.is_Atom:
            r = (1, 1)
        elif e.is_Add:
            parts = [est(a) for a in e.args]
            den = 1
            for _, d in parts:
                den = mul(den, d)
            num = 0
            for i, (n, _) in enumerate(parts):
                others = 1
                for j, (_, d) in enumerate(parts):
                    if j != i:
                        others = mul(others, d)
                num = min(top, num + mul(n, others))
            r = (num, den)
        elif e.is_Mul:
            num = den = 1
            for a in e.args:
                n, d = est(a)
                num, den = mul(num, n), mul(den, d)
            r = (num, den)
        elif e.is_Pow and e.exp.is_Integer:
            n, d = est(e.base)
            k = int(e.exp)
            r = (power(n, k), power(d, k)) if k >= 0 else (power(d, -k), power(n, -k))
        else:
            r = (min(top, sum(est(a)[0] for a in e.args) or 1), 1)
        memo[e] = r
        return r

    n, d = est(sp.sympify(expr))
    return min(top, n + (d if d > 1 else 0))
