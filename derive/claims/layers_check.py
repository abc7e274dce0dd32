"""One claim about a layer-list spec: read, judged exactly, and when it fails, a witness and the nearest repair.

PROVEN when every entry is an exact identity with the upstream gradients free (so it holds
for any upstream gradient, this network's among them), or, for a claim no point tells apart,
with every upstream gradient replaced by its true value. REFUTED with a witness: a point of
the real network (every value computed forward, every upstream gradient read down from the
cost) where the sides differ; for a claim that names an upstream gradient (dC/dy2), which
must hold for any, a point where that gradient is chosen freely when the network's own does
not tell the sides apart. The nearest repair: for a norm layer's input gradient, the paths
the claim lost or scaled wrongly (the mean's, the σ²'s, the 1/B on the wrong term), found by
fitting the difference to the three terms of the textbook form and proven exactly; then a
sum over the batch, and the single edits of derive.claims.repair (a transpose, the order of
a product, a sign, a constant factor), each proven before it is reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np
import sympy as sp

from derive.claims import layers_spatial as sv
from derive.claims.layers_eval import SpatialEvaluation, channel_sum, spatial_repairs, worst
from derive.claims.check import Claim, ClaimVerdict, _close, _fail, _round, no_such_example
from derive.claims.evaluate import Evaluator, Leaves, is_matrix, shape_of, size_text
from derive.claims.layers import NORMS, LayeredContext, Undefined, _names
from derive.claims.layers_read import (LayeredLhs, fill_layers, lhs_of, named_kinds, read_layered_latex,
                                       read_layered_lhs, read_layered_text)
from derive.claims.layers_print import latex_text, text
from derive.claims.repair import Repair, find
from derive.claims.cost import expanded_terms
from derive.claims.tree import MAX_TERMS, ClaimError, Invalid, Leaf, Node, Op, ShapeError, substitute, walk
from derive.verdict import Verdict

WITNESS_TRIES = 6


class LayeredLeaves(Leaves):
    """The network's values for an evaluation: exact (SymPy), in nodes, atoms and the upstream gradients."""

    numeric = False

    def __init__(self, ctx: LayeredContext, example: int, home: int | None = None):
        self.ctx, self.e, self.home = ctx, example, home  # home: the layer the claim is about

    def example(self, kind, layer) -> int | None:
        """The claim's example, or None (the batch, laid out as every layer's) for an attention layer's input or
        output in a claim about another layer (a residual block's dC/dx1 = dC/dy1 + dC/dx2)."""
        return None if sv.flat_view(self.ctx, kind, layer, self.home) else self.e

    def scalar(self, kind, layer, index, node):
        return self.ctx.scalar(kind, layer, index, self.e, node.span)

    def matrix(self, kind, layer, node):
        if kind == "C":
            return self.ctx.net.C
        return self.ctx.matrix(kind, layer, node.span, self.example(kind, layer))

    def activate(self, value, name, prime, node):
        if is_matrix(value):
            return value.applyfunc(lambda z: self.ctx.activate(z, name, prime, node.span))
        return self.ctx.activate(value, name, prime, node.span)

    def sqrt(self, value, node):
        if is_matrix(value):
            return value.applyfunc(lambda x: self.ctx.sqrt(x, node.span))
        return self.ctx.sqrt(value, node.span)

    def is_zero(self, value) -> bool:
        return self.ctx.is_zero(value)

    def local(self, top, by, node):
        raise ClaimError("a factor of the chain rule is not written here: name gradients of the cost, dC/dQ", node.span)

    def gradient(self, leaf, scale, node, example=None):
        if not isinstance(leaf, Leaf) or leaf.layer is None:
            raise ClaimError("a gradient is of a layer's named quantity, dC/dgamma2 (a name with its layer)", node.span)
        if leaf.kind == "w":
            M = self.ctx.gradient("W", leaf.layer, node.span)
            j, k = leaf.index
            r, c = (k, j) if self.ctx.row else (j, k)
            if not (0 <= r < M.rows and 0 <= c < M.cols):
                raise ClaimError(f"dC/dw{leaf.layer}[{j},{k}] is not an entry of W{leaf.layer}", node.span)
            return M[r, c]
        return self.ctx.gradient(leaf.kind, leaf.layer, node.span, self.example(leaf.kind, leaf.layer))


class LayeredEvaluator(SpatialEvaluation, Evaluator):
    """The claims' evaluator with a layer list's sums over the batch or the features and sqrt."""

    def __init__(self, leaves: LayeredLeaves, describe, row: bool):
        super().__init__(leaves, describe, broadcast=True)
        self.row = row

    def eval(self, node: Node, env: dict):
        node = self._at_step(node, env)
        if isinstance(node, Op) and node.op == "step_sum":
            return self._step_sum(node, env)
        if isinstance(node, Op) and node.op == "rowsum":
            return self._rowsum(node, env)
        if isinstance(node, Op) and node.op in sv.OPERATORS:
            return self._operator(node, env)
        if isinstance(node, Op) and node.op == "batch_sum" and self._sequence(node):  # Σ over the examples
            return self._example_sum(node, env)
        if isinstance(node, Op) and node.op in ("batch_sum", "feature_sum"):
            axis = 0 if (node.op == "batch_sum") == self.row else 1
            value = self.eval(node.args[0], env)
            channels = self._channels(node)
            if node.op == "batch_sum" and channels and is_matrix(value) and channels[1] > 1 \
                    and channels[0] * channels[1] == (value.cols if self.row else value.rows):
                return channel_sum(value, *channels, self.row)
            if not is_matrix(value):
                raise ShapeError(f"{self.describe(node)}: a sum over the {'batch' if node.op == 'batch_sum' else 'features'}"
                                 " needs an array, and its argument is a scalar")
            if axis == 0:
                return sp.Matrix(1, value.cols, lambda i, j: sp.Add(*value[:, j]))
            return sp.Matrix(value.rows, 1, lambda i, j: sp.Add(*value[i, :]))
        if isinstance(node, Op) and node.op == "sqrt":
            return self.leaves.sqrt(self.eval(node.args[0], env), node)
        if isinstance(node, Op) and node.op == "pick":  # x_{b1}: one feature of every example, or the reverse
            value = self.eval(node.args[0], env)
            what, k = node.param
            if not is_matrix(value):
                raise ShapeError(f"{self.describe(node)}: a scalar has no {what} {k}")
            along_rows = (what == "example") == self.row  # the index runs along the rows of the layout
            n = value.rows if along_rows else value.cols
            if n == 1:  # a per-feature statistic has every example's value in its one row
                return value
            if not 0 <= k < n:
                raise ClaimError(f"{self.describe(node)}: no {what} {k}; there are {n}", node.span)
            return value[k, :] if along_rows else value[:, k]
        if isinstance(node, Op) and node.op == "axis_mean":  # np.mean: the sum over the axis, over its length
            value = self.eval(node.args[0], env)
            if not is_matrix(value):
                raise ShapeError(f"{self.describe(node)}: np.mean needs an array")
            count = value.rows * value.cols if node.param is None else value.shape[node.param]
            total = self.eval(Op("axis_sum", node.args, node.param, span=node.span), env)
            return total / count
        return super().eval(node, env)


@dataclass
class LayeredCheck:
    """A claim being checked, with the hooks derive.claims.repair's search uses."""

    ctx: LayeredContext
    claim: Claim
    lhs: LayeredLhs
    tree: Node
    truth: object

    def __post_init__(self):
        self.source = self.claim.source
        self.latex = self.claim.latex is not None
        self.printer = latex_text if self.latex else text  # a repair in the claim's own syntax
        self.sizes, self.bias, self.row, self.product = self.ctx.sizes, "separate", self.ctx.row, "mul"
        self.e = self.claim.example
        self._values: dict = {}

    def describe(self, node: Node) -> str:
        if node.span is not None:
            return self.source[node.span[0]:node.span[1]].strip()
        return text(node)

    def symbolic(self, tree: Node):
        value = LayeredEvaluator(LayeredLeaves(self.ctx, self.e, self.lhs.layer), self.describe, self.ctx.row)(tree)
        return _as_shape(value, self.truth)

    def numbers(self, tree: Node, i: int, free_g: dict | None = None):
        key = (id(tree), i, free_g is not None)
        if key not in self._values:
            self._values[key] = (tree, self.ctx.number(self.symbolic(tree), self.ctx.point(i), free_g))
        return self._values[key][1]

    def numeric_close(self, tree: Node) -> bool:
        try:
            for i in (0, 1):
                v, t = self.numbers(tree, i), self.numbers_truth(i)
                if shape_of(v) != shape_of(t) or not _close(t, v):
                    return False
        except (ShapeError, Invalid, ClaimError, ArithmeticError, ValueError, TypeError):
            return False
        return True

    def numbers_truth(self, i: int, free_g: dict | None = None):
        return self.ctx.number(self.truth, self.ctx.point(i), free_g)

    def exact_holds(self, tree: Node) -> bool:
        try:
            value = self.symbolic(tree)
        except (ShapeError, ClaimError, Invalid, ArithmeticError):
            return False
        if shape_of(value) != shape_of(self.truth):
            return False
        return all(self.ctx.identical(t, v) for t, v in _pairs(self.truth, value))

    def factor(self, tree: Node):
        from derive.claims.repair import ratio

        try:
            c0 = ratio(self.numbers_truth(0), self.numbers(tree, 0))
            c1 = ratio(self.numbers_truth(1), self.numbers(tree, 1))
        except (ShapeError, Invalid, ClaimError, ArithmeticError, ValueError, TypeError):
            return None
        return c0 if c0 is not None and c0 == c1 else None


def _as_shape(value, truth):
    if is_matrix(value) and not is_matrix(truth) and tuple(value.shape) == (1, 1):
        return value[0, 0]
    if not is_matrix(value) and is_matrix(truth) and tuple(truth.shape) == (1, 1):
        return sp.Matrix([[value]])
    return value


def _pairs(truth, value) -> list[tuple]:
    if not is_matrix(truth):
        return [(truth, value)]
    return [(truth[r, c], value[r, c]) for r in range(truth.rows) for c in range(truth.cols)]


# ---------------------------------------------------------------------------
# reading and the truth
# ---------------------------------------------------------------------------

def read(ctx: LayeredContext, claim: Claim) -> tuple[LayeredLhs, Node, str] | ClaimVerdict:
    """The claim's left-hand side and right-hand side's tree, or an ERROR."""
    if claim.code is not None:
        return _fail(claim, "code", claim.code, ClaimError("code claims are read for sizes specs; write a layer list's "
                                                           "claims as text (rhs) or LaTeX", (0, 0)))
    lhs, shown = None, ""
    field = "latex" if claim.latex is not None else "rhs"
    if claim.latex is not None:
        try:
            left, tree = read_layered_latex(claim.latex)
            if left is not None:
                lhs = lhs_of(sv.lhs_step(ctx, left), left.span or (0, 0))
                shown = claim.latex[left.span[0]:left.span[1]].strip() if left.span else lhs.text()
        except ClaimError as exc:
            if exc.sides and claim.lhs is None and all(exc.sides):
                return exc.sides  # a chain: check_layered checks its sides one by one
            return _fail(claim, "latex", claim.latex, exc)
    else:
        try:
            tree = read_layered_text(claim.rhs)
        except ClaimError as exc:
            return _fail(claim, "rhs", claim.rhs, exc)
    if claim.lhs is not None:
        try:
            own = read_layered_lhs(claim.lhs)
        except ClaimError as exc:
            return _fail(claim, "lhs", claim.lhs, exc)
        if lhs is not None and (own.kind, own.layer, own.index) != (lhs.kind, lhs.layer, lhs.index):
            return _fail(claim, "lhs", claim.lhs, ClaimError(
                f"lhs names {own.text()} but the LaTeX's left-hand side is {lhs.text()}", (0, len(claim.lhs))))
        lhs, shown = own, claim.lhs.strip()
    if lhs is None:
        return _fail(claim, field, claim.source, ClaimError(
            "no left-hand side: give lhs = \"dC/dgamma2\" (or write the LaTeX as an equation)", (0, 0)))
    if lhs.layer is None:
        try:
            lhs = sv.numbered_lhs(ctx, replace(lhs, layer=_only_layer(ctx, {sv.split_step(lhs.kind)[0]}
                                                                   | named_kinds(tree))))
        except ClaimError as exc:
            return _fail(claim, "lhs" if claim.lhs is not None else field, claim.lhs or claim.source, exc)
    try:
        return lhs, fill_layers(tree, lhs.layer, ctx.blocks[lhs.layer].kind if lhs.layer in ctx.blocks else ""), shown
    except ClaimError as exc:
        return _fail(claim, field, claim.source, exc)


def _only_layer(ctx: LayeredContext, kinds: set) -> int:
    """The layer a claim that writes no layer numbers is about: the only one with all its names, or the only norm
    layer among those."""
    have = [b for b in ctx.spec.blocks if kinds <= set(_names(b))]
    if len(have) > 1:
        norms = [b for b in have if b.kind in NORMS]
        have = norms if len(norms) == 1 else have
    if len(have) == 1:
        return have[0].position
    which = ", ".join(str(b.position) for b in have) or "none"
    raise ClaimError(f"the claim names no layer, and {', '.join(sorted(kinds))} could be of layers {which}: write "
                     "the layer, gamma2 or \\gamma^{(2)}", (0, 0))


def truth_of(ctx: LayeredContext, lhs: LayeredLhs, example: int, span=None):
    """The left-hand side's value: a gradient by the chain rule from its layer's upstream gradient, or a value."""
    if lhs.kind == "w":
        return LayeredLeaves(ctx, example).gradient(Leaf("w", lhs.layer, lhs.index), "batch", Op("grad", (), span=span))
    value = ctx.gradient(lhs.kind, lhs.layer, span, example) if lhs.gradient else \
        ctx.matrix(lhs.kind, lhs.layer, span, example)
    if lhs.index is not None:
        value = _entry(ctx, lhs, value, example, span)
    return value.T if lhs.transposed and is_matrix(value) else value


def _entry(ctx: LayeredContext, lhs: LayeredLhs, M, example: int, span):
    index = lhs.index
    if len(index) == 2:
        r, c = index
    elif 1 in M.shape:
        r, c = (0, index[0]) if M.rows == 1 else (index[0], 0)
    elif ctx.blocks[lhs.layer].kind in sv.SEQUENCE:
        raise ClaimError(f"{lhs.text()}: one example's {M.rows}×{M.cols} array takes two indices, [position, j]", span)
    else:
        r, c = (example, index[0]) if ctx.row else (index[0], example)
    if not (0 <= r < M.rows and 0 <= c < M.cols):
        raise ClaimError(f"no entry {list(index)}: {lhs.text()} is {M.rows}×{M.cols}", span)
    return M[r, c]


# ---------------------------------------------------------------------------
# the verdict
# ---------------------------------------------------------------------------

def check_layered(ctx: LayeredContext, claim: Claim) -> ClaimVerdict:
    """The verdict on one claim about a layer list."""
    missing = no_such_example(ctx, claim)
    if missing:
        return missing
    got = read(ctx, claim)
    if isinstance(got, ClaimVerdict):
        return got
    if isinstance(got, list):
        return _chain(ctx, claim, got)
    lhs, tree, shown = got
    steps = sv.steps_of(ctx, lhs)
    if steps:  # δ_t = ...: the claim at every step t
        return worst([(t, _judge(ctx, claim, *sv.at_step(lhs, tree, t), shown)) for t in steps], claim, "step")
    return _judge(ctx, claim, lhs, tree, shown)


def _judge(ctx: LayeredContext, claim: Claim, lhs: LayeredLhs, tree: Node, shown: str) -> ClaimVerdict:
    field = "latex" if claim.latex is not None else "rhs"
    try:
        truth = truth_of(ctx, lhs, claim.example)
    except ClaimError as exc:
        where = "lhs" if claim.lhs is not None else field
        return _fail(claim, where, claim.lhs or claim.source, ClaimError(exc.message, (0, 0)), lhs.text())
    check = LayeredCheck(ctx, claim, lhs, tree, truth)
    verdict = ClaimVerdict(claim, Verdict.PROVEN, lhs.text())
    try:
        value = check.symbolic(tree)
    except ClaimError as exc:
        return _fail(claim, field, claim.source, exc, lhs.text())
    except ShapeError as exc:
        verdict.verdict, verdict.shape_error = Verdict.REFUTED, str(exc)
        _repair(check, verdict)
        return verdict
    if shape_of(value) != shape_of(truth):
        verdict.verdict = Verdict.REFUTED
        verdict.shape_error = f"{check.describe(tree)} is {size_text(shape_of(value))} but {shown} is " \
                              f"{size_text(shape_of(truth))}"
        _repair(check, verdict)
        return verdict
    pairs = _pairs(truth, value)
    if any(expanded_terms(v) > MAX_TERMS for _, v in pairs):
        return _fail(claim, field, claim.source, ClaimError(
            f"too large to prove exactly: its expansion may have more than {MAX_TERMS} terms", (0, 0)), lhs.text())
    holds = [ctx.identical(t, v) for t, v in pairs]
    if all(holds):
        return verdict
    related = ctx.relate(truth, value)  # for a witness: the highest upstream gradient free, the others through it
    if is_matrix(truth):
        cols = truth.cols
        for n, ok in enumerate(holds):
            item = {"entry": [n // cols, n % cols], "name": _entry_name(lhs, truth, n // cols, n % cols)}
            (verdict.holding_entries if ok else verdict.wrong_entries).append(item)
    named = bool(sp.Matrix([value]).free_symbols & set(ctx.g_symbols)) if is_matrix(value) else \
        bool(sp.sympify(value).free_symbols & set(ctx.g_symbols))
    verdict.witness = _witness(check, value, free_g=False) or (_witness(check, value, True, related) if named else None)
    if verdict.witness is None:  # no point tells the sides apart: in the leaves, then with the true gradients
        if all(ok or ctx.identical(t, v, "leaves") or ctx.identical(t, v, "true")
               for (t, v), ok in zip(pairs, holds)):
            verdict.wrong_entries = verdict.holding_entries = []
            return verdict
        verdict.verdict = Verdict.UNPROVEN
        verdict.message = (f"not an identity in the network's atoms, yet equal at {WITNESS_TRIES} points of the "
                           "network; it may hold through a relation the proof does not use (s² (σ² + ε) = 1)")
        return verdict
    verdict.verdict = Verdict.REFUTED
    _repair(check, verdict)
    return verdict


def _chain(ctx: LayeredContext, claim: Claim, sides: list) -> ClaimVerdict:
    """A = B = C: each side after the first against the first, as a claim of its own; the worst verdict, its side
    named (all PROVEN: PROVEN)."""
    first = claim.latex[sides[0][0]:sides[0][1]]
    return worst([(k, check_layered(ctx, replace(claim, latex=f"{first} = {claim.latex[a:b]}")))
                  for k, (a, b) in enumerate(sides[1:], 2)], claim, "side")


def _entry_name(lhs: LayeredLhs, M, r: int, c: int) -> str:
    return lhs.text() + (f"[{c if M.rows == 1 else r}]" if 1 in M.shape else f"[{r},{c}]")


def _free_g(ctx: LayeredContext, i: int) -> dict:
    rng = np.random.default_rng(7000 + i)
    return {g: sp.Rational(int(rng.integers(-12, 13)), 8) for g in ctx.g_symbols}


def _witness(check: LayeredCheck, value, free_g: bool, related: dict | None = None) -> dict | None:
    """A point where the two sides differ: the real network's, or (free_g) with the upstream gradients chosen freely
    (the highest one the claim names, the others through it)."""
    ctx = check.ctx
    for i in range(WITNESS_TRIES):
        pt = ctx.point(i)
        g = _free_g(ctx, i) if free_g else None
        if g is not None and related:
            g.update({k: sp.sympify(v).xreplace(g).xreplace(pt.vals) for k, v in related.items()})  # free top G first
        try:
            t, v = ctx.number(check.truth, pt, g), ctx.number(value, pt, g)
        except (Undefined, Invalid):
            continue
        if is_matrix(check.truth):
            bad = np.argwhere(~np.isclose(v, t, rtol=1e-9, atol=1e-12))
            if not len(bad):
                continue
            r, c = (int(x) for x in bad[0])
            where = {"entry": [r, c], "entry_name": _entry_name(check.lhs, check.truth, r, c),
                     "lhs": [[_round(x) for x in row] for row in t], "rhs": [[_round(x) for x in row] for row in v]}
        else:
            if _close(t, v):
                continue
            where = {"lhs": _round(t), "rhs": _round(v)}
        out = {**_at(check, pt, g), **where}
        if free_g:
            out["note"] = ("the claim names an upstream gradient, so it must hold for any: here that gradient is "
                           "chosen freely, at a point of the network")
        return out
    return None


def _at(check: LayeredCheck, pt, g: dict | None) -> dict:
    """The point, as the layer sees it: its input and parameters (values), its upstream gradient and statistics
    (neurons), and every free value of the network (network)."""
    ctx, l = check.ctx, check.lhs.layer
    X, saved, _ = ctx.net.state[l]
    vals = pt.vals if g is None else {**pt.vals, **g}
    values = {f"x{l}[{e},{j}]": vals[X[e, j]] for e in range(X.rows) for j in range(X.cols)}
    for name, M in ctx.net.P[l].items():
        values.update({f"{name}{l}[{i}]" if 1 in M.shape else f"{name}{l}[{r},{c}]": vals[M[r, c]]
                       for i, (r, c) in enumerate((r, c) for r in range(M.rows) for c in range(M.cols))})
    neurons = {f"dC/dy{l}[{e},{j}]": vals[gs] for (e, j), gs in np.ndenumerate(np.array(ctx.G[l], dtype=object))}
    for name in ("mu", "var", "s"):
        if name in saved:
            M = saved[name]
            neurons.update({f"{name}{l}[{i}]": vals[x] for i, x in enumerate(M)})
    return {"values": {k: _round(float(v)) for k, v in values.items()},
            "neurons": {k: _round(float(v)) for k, v in neurons.items()},
            "network": {str(k): _round(float(v)) for k, v in pt.free.items()}}


# ---------------------------------------------------------------------------
# repairs
# ---------------------------------------------------------------------------

def _repair(check: LayeredCheck, verdict: ClaimVerdict) -> None:
    found = spatial_repairs(check) + _path_repair(check) + _identity_repair(check) + _xhat_repair(check) \
        + _sum_repair(check)
    if len(found) < 2:
        try:
            found += find(check, check.tree)
        except (ClaimError, Invalid, ShapeError):
            pass
    if found:
        verdict.repair, verdict.other_repairs = found[0], found[1:]


def _norm_terms(ctx: LayeredContext, position: int) -> list[tuple[str, str, str, sp.Matrix]]:
    """The three terms of a norm layer's input gradient, as (name, text, LaTeX, value in the spec's layout)."""
    block = ctx.blocks[position]
    X, S, Y = ctx.net.state[position]
    G = ctx.G[position]
    batch = block.kind == "batchnorm"
    n = sp.Integer(X.rows if batch else X.cols)
    P = ctx.net.P[position]
    dxhat = G.multiply_elementwise(_stretch(P["gamma"], G.shape)) if "gamma" in P else G

    def total(M):
        return _stretch(sp.Matrix(1, M.cols, lambda i, j: sp.Add(*M[:, j])) if batch else
                        sp.Matrix(M.rows, 1, lambda i, j: sp.Add(*M[i, :])), M.shape)
    s = _stretch(S["s"], G.shape)
    t1 = s.multiply_elementwise(dxhat)
    t2 = -s.multiply_elementwise(total(dxhat)) / n
    t3 = -s.multiply_elementwise(S["xhat"]).multiply_elementwise(total(dxhat.multiply_elementwise(S["xhat"]))) / n
    l, N = position, "B" if batch else f"n{position}"
    g = f"gamma{l} * " if "gamma" in P else ""
    gl = rf"\gamma^{{({l})}} " if "gamma" in P else ""
    over, sum_text = ("b", "sum") if batch else ("i", "sum_features")
    dy, dyl = f"dC/dy{l}", rf"\frac{{\partial C}}{{\partial y^{{({l})}}}}"
    return [
        ("the direct path through x̂", f"{g}s{l} * {dy}", rf"{gl}s^{{({l})}} {dyl}", ctx.lay(t1)),
        ("the mean's path", f"-{g}s{l} * {sum_text}({dy}) / {N}",
         rf"-\frac{{{gl}s^{{({l})}}}}{{{N}}} \sum_{over} {dyl}", ctx.lay(t2)),
        ("the σ² path", f"-{g}s{l} * xhat{l} * {sum_text}({dy} * xhat{l}) / {N}",
         rf"-\frac{{{gl}s^{{({l})}}}}{{{N}}} \hat{{x}}^{{({l})}} \sum_{over} {dyl} \odot \hat{{x}}^{{({l})}}", ctx.lay(t3)),
    ]


def _stretch(M: sp.Matrix, shape) -> sp.Matrix:
    return sp.Matrix(*shape, lambda i, j: M[i if M.rows > 1 else 0, j if M.cols > 1 else 0])


def _path_repair(check: LayeredCheck) -> list[Repair]:
    """A norm layer's input gradient with a path lost or scaled wrongly: the difference fitted to the three terms."""
    ctx, lhs = check.ctx, check.lhs
    block = ctx.blocks.get(lhs.layer)
    if not (lhs.gradient and lhs.kind == "x" and lhs.index is None and not lhs.transposed and block is not None
            and block.kind in NORMS):
        return []
    try:
        value = check.symbolic(check.tree)
    except (ClaimError, ShapeError, Invalid, ArithmeticError):
        return []
    if shape_of(value) != shape_of(check.truth):
        return []
    terms = _norm_terms(ctx, lhs.layer)
    rows, rhs = [], []
    for i in (0, 1):
        g = _free_g(ctx, i)
        try:
            d = ctx.number(check.truth - value, ctx.point(i), g)
            basis = [ctx.number(t[3], ctx.point(i), g) for t in terms]
        except (Undefined, Invalid):
            return []
        rows.append(np.stack([b.ravel() for b in basis], axis=1))
        rhs.append(d.ravel())
    A, y = np.vstack(rows), np.concatenate(rhs)
    k, *_ = np.linalg.lstsq(A, y, rcond=None)
    if not np.all(np.isfinite(k)) or np.max(np.abs(A @ k - y)) > 1e-8 * (1 + np.max(np.abs(y))):
        return []
    ks = [Fraction(float(x)).limit_denominator(256) for x in k]
    if all(x == 0 for x in ks):
        return []
    fix = sp.zeros(*check.truth.shape)
    for x, t in zip(ks, terms):
        fix += sp.Rational(x.numerator, x.denominator) * t[3]
    if not all(ctx.identical(a, b) for a, b in _pairs(check.truth - value, fix)):
        return []
    n = ctx.E if block.kind == "batchnorm" else block.width
    N = "B" if block.kind == "batchnorm" else f"n{lhs.layer}"
    parts, missing = [], True
    for x, (name, txt, ltx, _) in zip(ks, terms):
        if x == 0:
            continue
        c = 1 - x
        shown = ltx if check.latex else txt
        if c == 0:
            parts.append(f"{name} added, {shown}")
            continue
        missing = False
        if c == Fraction(1, n):
            parts.append(f"{name}, {shown}, not divided by {N}: the 1/{N} belongs on the sums over the "
                         f"{'batch' if N == 'B' else 'features'} only")
        elif c == n:
            parts.append(f"{name}, {shown}, divided by {N}: the claim lacks its 1/{N}")
        elif c == -1:
            parts.append(f"{name}, {shown}, with the opposite sign")
        else:
            parts.append(f"{name}, {shown}, once, not {c} times")
    shown = 2 if check.latex else 1
    times = (lambda x: "" if x == 1 else rf"\left({sp.latex(sp.Rational(x.numerator, x.denominator))}\right) ") \
        if check.latex else (lambda x: "" if x == 1 else f"({x}) * ")
    added = " + ".join(f"{times(x)}({t[shown]})" for x, t in zip(ks, terms) if x != 0)
    whole = f"{check.printer(check.tree)} + {added}"
    return [Repair("path" if missing else "term", "holds with " + "; ".join(parts), check.describe(check.tree), added,
                   whole)]


def _identity_repair(check: LayeredCheck) -> list[Repair]:
    """A residual block's input gradient without its identity path: + dC/dy{l}."""
    lhs, block = check.lhs, check.ctx.blocks.get(check.lhs.layer)
    if not (lhs.gradient and lhs.kind == "x" and lhs.index is None and block is not None and block.kind == "residual"):
        return []
    path = Op("grad", (Leaf("y", lhs.layer),), "batch")
    new = Op("add", (check.tree, path))
    if check.exact_holds(new):
        P = check.printer
        return [Repair("path", f"holds with the identity path added, + {P(path)}: the block adds its input to its "
                               "output, so its upstream gradient reaches the input unchanged", "", P(path), P(new))]
    return []


def _xhat_repair(check: LayeredCheck) -> list[Repair]:
    """A norm layer's dC/dgamma without its x̂ (each example's dC/dy times x̂), or dC/dbeta with one."""
    lhs, block = check.lhs, check.ctx.blocks.get(check.lhs.layer)
    if not (lhs.gradient and lhs.kind in ("gamma", "beta") and block is not None and block.kind in NORMS):
        return []
    xhat = Leaf("xhat", lhs.layer)
    out = []
    for node, path in walk(check.tree):
        if isinstance(node, Op) and node.op == "grad" and lhs.kind == "gamma":
            new, note = Op("mul", (node, xhat)), "each example's gradient weighed by its x̂"
        elif isinstance(node, Op) and node.op in ("mul", "dot", "had") and xhat in node.args and lhs.kind == "beta":
            new, note = node.args[1 - node.args.index(xhat)], "beta shifts every x̂ alike: no x̂ in its gradient"
        else:
            continue
        tree = substitute(check.tree, path, new)
        if check.exact_holds(tree):
            shown = check.printer(new)
            out.append(Repair("xhat", f"holds with {shown} in place of {check.describe(node)} ({note})",
                              check.describe(node), shown, check.printer(tree)))
    return out[:1]


def _sum_repair(check: LayeredCheck) -> list[Repair]:
    """A parameter's gradient written for one example: the sum over the batch it lacks."""
    if not (check.lhs.gradient and check.lhs.kind in ("gamma", "beta", "b") and check.lhs.index is None):
        return []
    new = Op("batch_sum", (check.tree,))
    if check.exact_holds(new):
        shown = check.printer(new)
        return [Repair("sum", f"holds summed over the batch: {shown}", check.describe(check.tree), shown, shown)]
    return []


__all__ = ["check_layered", "LayeredCheck", "latex_text"]
