"""The truth a claim is checked against: one network, its named quantities and its values at random points.

A Context builds the network of a spec once: every named scalar, vector and matrix a
claim may use (in the spec's layout), the chain rule's value of every left-hand side,
random points off the activations' kinks, and the judgement that a denominator is 0 at
every point. SymLeaves and NumLeaves hand its values to derive.claims.evaluate, exactly
and at a point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import sympy as sp

from derive.chain import ChainRule
from derive.claims.cost import expanded_terms
from derive.claims.evaluate import Leaves, is_matrix
from derive.claims.text import Lhs
from derive.claims.tree import MAX_TERMS, ClaimError, Invalid, Shape
from derive.errors import DeriveError
from derive.matrix import MatrixForms
from derive.network import Network
from derive.proofs.identity import is_identity, relations
from derive.spec import Spec, load_spec
from derive.tables.notations import PROFILES
from derive.tables.reading import Reading

ETA = sp.Symbol("eta", positive=True)  # a learning rate a claim names (a weight's change is -eta dC/dw)
REG = sp.Symbol("reg", positive=True)  # L2 regularization's strength: the cost C + reg/2 * sum of the squared weights


class Undefined(ArithmeticError):
    """A value with no number at a point: a denominator is 0 there."""


@dataclass
class Point:
    """One random point of the network: the free values and every atom's value (forward pass)."""

    free: dict
    vals: dict
    cache: dict = field(default_factory=dict)
    z: list = field(default_factory=list)  # (value, example, layer, neuron) of every pre-activation


class Context:
    """One network and everything a claim about it is checked against."""

    def __init__(self, spec: Spec | str, layers: str | None = None, reading: Reading | None = None,
                 regularization: bool = False):
        spec = load_spec(spec)
        self.regularization = regularization
        self.spec = spec
        self.net = net = Network(spec)
        self.chain = ChainRule(net)
        self.forms = MatrixForms(net, evaluate=False)
        self.rule = relations(net)
        self.row = spec.convention == "row"
        self.sizes, self.L, self.E = net.sizes, net.L, net.E
        if layers is None:
            layers = "bare" if PROFILES[spec.notation].layer_style == "bare" else "paren"
        self.shape = Shape(net.L, spec.activation, layers, reading, net.E, tuple(net.sizes))
        self.rows = reading is not None and reading.examples == "rows"  # z, y, delta and gradients as rows
        self._partials: dict = {}
        self._matrices: dict = {}
        self._points: list[Point] = []
        self._seed = -1
        self._zero: dict = {}  # denominators already judged (the repair search re-evaluates the same ones)

    # -- symbols -------------------------------------------------------------------------
    def _check(self, value: int, n: int, what: str, span, extra: str = "") -> int:
        if not 0 <= value < n:
            raise ClaimError(f"index {value} is out of range: {what} runs from 0 to {n - 1}{extra}", span)
        return value

    def scalar(self, kind: str, l, idx: tuple[int, ...], e: int, span=None):
        """The SymPy value of one named scalar of example e."""
        net, n = self.net, self.sizes
        if kind == "C":
            return net.C
        if kind == "rate":
            return ETA
        if kind == "count":
            return sp.Integer(self.E)
        if kind == "reg":
            return REG
        if kind == "w":
            return self._param(l, idx[0], idx[1], False, span).symbol
        if kind == "y":
            return net.y[e][self._check(idx[0], n[self.L], "j", span, f" ({n[self.L]} outputs)")]
        j = self._check(idx[0], n[l], "j", span, f" ({n[l]} neurons in layer {l})")
        if kind == "b":
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            return net.w[l][j, n[l - 1]] if self.spec.bias == "augmented" else net.b[l][j]
        if kind == "a":
            return net.a[e][l][j]
        if kind == "z":
            return net.z[e][l][j]
        if kind == "delta":
            return self.chain.delta(e, l, j)
        raise ClaimError(f"{kind} takes no index", span)  # pragma: no cover - the readers allow no other

    def matrix(self, kind: str, l, span=None):
        """The SymPy value of a named vector or matrix (vectors as columns, one per example)."""
        key = (kind, l)
        if key in self._matrices:
            return self._matrices[key]
        net, n, E, V, S = self.net, self.sizes, self.E, self.forms.values, self.forms.sym

        def cols(rows: int, f) -> sp.Matrix:
            return sp.Matrix(rows, E, lambda j, e: f(e, j))

        def oriented(name: str) -> sp.Matrix:
            m = V[S[name]]
            return m.T if self.row else m

        if kind == "C":
            value = net.C
        elif kind == "rate":
            value = ETA
        elif kind == "count":
            value = sp.Integer(self.E)
        elif kind == "reg":
            value = REG
        elif kind in ("w", "W"):
            value = V[S[f"{kind}{l}"]]
        elif kind == "b":
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            if self.spec.bias == "separate":
                value = V[S[f"b{l}"]]
            else:  # each neuron's weight of the constant input 1, laid out as the layer's own b would be
                layer, conv = net.layers[l], self.spec.convention
                value = sp.zeros(*dict(layer.params(n[l - 1], n[l], conv, "separate"))["b"])
                for j in range(n[l]):
                    value[layer.bias_index(j, conv)] = net.w[l][j, n[l - 1]]
        elif kind == "a":
            value = oriented(f"a{l}")
        elif kind == "A":
            aug = self.spec.bias == "augmented"
            value = sp.Matrix(E, n[l] + aug, lambda e, j: net.a[e][l][j] if j < n[l] else sp.Integer(1))
        elif kind == "z":
            value = cols(n[l], lambda e, j: net.z[e][l][j])
        elif kind == "y":
            value = cols(n[self.L], lambda e, j: net.y[e][j])
        elif kind == "delta":
            value = cols(n[l], lambda e, j: self.chain.delta(e, l, j))
        elif kind == "g":
            value = oriented("g")
        elif kind == "ones":
            value = sp.ones(E, 1)
        elif kind == "D":
            if E > 1:
                raise ClaimError(f"D{l} = diag(sigma'(z{l})) is defined for one example; this batch has {E}", span)
            if not net.acts[l].elementwise:
                raise ClaimError(f"layer {l} is {self.spec.activation[l - 1]}: its derivative is a full Jacobian, "
                                 "not a diagonal D", span)
            value = V[S[f"D{l}"]]
        else:  # pragma: no cover - the readers make no other kind
            raise ClaimError(f"unknown quantity {kind}", span)
        if self.rows and kind in ("a", "z", "y", "delta"):
            value = value.T
        self._matrices[key] = value
        return value

    def gradient(self, kind: str, l: int, scale: str, span=None) -> sp.Matrix:
        """dC/dX for a whole X (a source's dZ, dA, dW): z and a one column per example (of the whole cost C, or of
        each example's own cost where scale is "example"); w, W and b in their own layout."""
        if kind in ("w", "W", "b"):
            return self.truth(Lhs(kind, l), 0, span)
        if kind == "a" and l == 0:
            raise ClaimError("the inputs' gradient is not derived here", span)
        value = sp.Matrix(self.sizes[l], self.E, lambda j, e: self.entry_gradient(kind, l, j, e, scale))
        return value.T if self.rows else value

    def entry_gradient(self, kind: str, l: int, j: int, e: int, scale: str):
        """dC/dz^{(l)}_j or dC/da^{(l)}_j of example e (divided by the batch's scale where scale is "example")."""
        net, per = self.net, self.chain.scale
        if kind == "z":
            return self.chain.delta(e, l, j) * (1 if scale == "example" else per)
        if l == self.L:
            whole = sp.diff(net.C, net.a[e][l][j])
        else:
            whole = sp.Add(*[net.w[l + 1][q, j] * self.chain.delta(e, l + 1, q) * per for q in range(self.sizes[l + 1])])
        return whole / per if scale == "example" else whole

    @cached_property
    def z_index(self) -> dict:
        """Each pre-activation, expanded, to (example, layer, neuron): sigma(arg) finds its neuron here."""
        out = {}
        for e in range(self.E):
            for l in range(1, self.L + 1):
                for j in range(self.sizes[l]):
                    out[sp.expand(self.net.z[e][l][j])] = (e, l, j)
        return out

    def activation(self, e: int, l: int, j: int, name, prime: bool, span):
        act = self.spec.activation[l - 1]
        if name is not None and name != act:
            raise ClaimError(f"layer {l}'s activation is {act}, not {name}", span)
        if prime:
            if not self.net.acts[l].elementwise:
                raise ClaimError(f"layer {l} is {act}: its derivative is a Jacobian, not an elementwise sigma_prime", span)
            return self.net.sigma_prime[e][l][j]
        return self.net.a[e][l][j]

    # -- the truth -----------------------------------------------------------------------
    def partial(self, p) -> sp.Expr:
        if p.symbol not in self._partials:
            # reverse accumulation: the same value as the sum over listed paths, without listing them
            self._partials[p.symbol] = self.chain.derive(p, list_paths=False).value
        return self._partials[p.symbol]

    def _param(self, l: int, j: int, k, bias: bool, span):
        n = self.sizes
        if bias:
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            self._check(j, n[l], "j", span, f" ({n[l]} neurons in layer {l})")
            if self.spec.bias == "augmented":
                return self.net.param_by_symbol[self.net.w[l][j, n[l - 1]]]
            return self.net.param_by_symbol[self.net.b[l][j]]
        aug = self.spec.bias == "augmented"
        self._check(j, n[l], "j", span, f" ({n[l]} neurons in layer {l})")
        self._check(k, n[l - 1] + aug, "k", span, f" ({n[l - 1]} neurons in layer {l - 1}"
                    + (", then the bias weight)" if aug else ")"))
        return self.net.param_by_symbol[self.net.w[l][j, k]]

    def truth(self, lhs: Lhs, e: int, span=None):
        """The value of a left-hand side by the chain rule: a SymPy scalar or Matrix."""
        value = self._truth(lhs, e, span)
        if self.regularization and lhs.kind in ("w", "W") and not lhs.example_cost:
            weights = self.matrix(lhs.kind, lhs.layer, span)
            if lhs.index is not None:
                weights = self.scalar("w", lhs.layer, lhs.index, e, span)
            elif lhs.transposed:
                weights = weights.T
            value = value + REG * weights  # d/dW of reg/2 * sum W^2
        return value * lhs.factor if lhs.factor != 1 else value

    def _truth(self, lhs: Lhs, e: int, span=None):
        l, n, E = lhs.layer, self.sizes, self.E
        if lhs.kind == "value:C":  # the cost itself, or one example's (Bishop's E_n)
            return self.net.cost_example[e] if lhs.example_cost else self.net.C
        if lhs.kind == "local":
            top, kind, layer, index = lhs.by
            return _local(self, _Named(top, l, lhs.index), _Named(kind, layer, index), e, _Named("", None, None))
        if lhs.kind.startswith("value:") and lhs.index is None:  # the whole batch's values, as the notation lays them
            value = self.matrix(lhs.kind[6:], l, span)
            return value.T if lhs.transposed else value
        if lhs.kind.startswith("value:"):  # a forward quantity of example e: z (its sum) or a (its atom)
            j = self._check(lhs.index[0], n[l], "j", span, f" ({n[l]} neurons in layer {l})")
            return (self.net.z if lhs.kind == "value:z" else self.net.a)[e][l][j]
        if lhs.kind in ("delta", "z", "a"):
            scale = "example" if lhs.kind == "delta" else lhs.scale
            kind = "z" if lhs.kind == "delta" else lhs.kind
            if lhs.index is not None:
                j = self._check(lhs.index[0], n[l], "j", span, f" ({n[l]} neurons in layer {l})")
                return self.entry_gradient(kind, l, j, e, scale)
            value = sp.Matrix(n[l], E, lambda j, ex: self.entry_gradient(kind, l, j, ex, scale))
            value = value.T if self.rows else value
        elif lhs.example_cost and lhs.kind in ("w", "b") and lhs.index is not None:
            p = self._param(l, lhs.index[0], lhs.index[1] if lhs.kind == "w" else None, lhs.kind == "b", span)
            return self.chain.delta(e, l, lhs.index[0]) * self.chain.dz_dp(e, p)  # dC_e/dp: example e's own cost
        elif lhs.example_cost and self.E > 1:
            raise ClaimError("one example's cost is derived here for one weight or bias at a time", span)
        elif lhs.index is not None:
            p = self._param(l, lhs.index[0], lhs.index[1] if lhs.kind == "w" else None, lhs.kind == "b", span)
            return self.partial(p)
        elif lhs.kind == "w":
            value = sp.Matrix(n[l], n[l - 1], lambda j, k: self.partial(self.net.param_by_symbol[self.net.w[l][j, k]]))
        elif lhs.kind == "W":
            W = self.forms.values[self.forms.sym[f"W{l}"]]
            value = sp.zeros(*W.shape)
            for p in self.net.layer_params(l):
                if p.matrix == f"W{l}":
                    value[p.index] = self.partial(p)
        else:
            entries = [self.partial(self._param(l, j, None, True, span)) for j in range(n[l])]
            value = sp.Matrix(1, n[l], entries) if self.row else sp.Matrix(n[l], 1, entries)
        return value.T if lhs.transposed else value

    def entry_name(self, lhs: Lhs, r: int, c: int) -> str:
        """What entry (r, c) of a matrix left-hand side is, in the text vocabulary."""
        if lhs.transposed:
            r, c = c, r
        l = lhs.layer
        if lhs.kind in ("delta", "z", "a"):
            if self.rows:
                r, c = c, r
            name = "delta" if lhs.kind == "delta" else f"dC/d{lhs.kind}"
            return f"{name}{l}[{r}]" + (f" of example {c}" if self.E > 1 else "")
        if lhs.kind == "w":
            return f"dC/dw{l}[{r},{c}]"
        if lhs.kind == "W":
            return f"dC/d{self.net.param_at[f'W{l}', (r, c)].name}"
        j = c if self.row else r
        return f"dC/db{l}[{j}]"

    # -- numbers -------------------------------------------------------------------------
    def point(self, i: int) -> Point:
        while len(self._points) <= i:
            self._seed += 1
            if self._seed > 64 * (i + 1):  # pragma: no cover - the forward pass failed at every point tried
                raise DeriveError(f"{self.spec.name}: no point found where the forward pass can be evaluated "
                                  "off the activations' kinks")
            rng = np.random.default_rng(1000 + self._seed)
            free = self.net.free_values(rng)
            try:
                vals = self.net.forward_values(free)
            except (TypeError, ValueError, ArithmeticError):
                continue
            vals[ETA] = sp.Rational(int(rng.integers(1, 100)), 100)
            vals[REG] = sp.Rational(int(rng.integers(1, 100)), 1000)
            pt = Point(free, vals)
            for e in range(self.E):
                for l in range(1, self.L + 1):
                    for j in range(self.sizes[l]):
                        pt.z.append((float(vals[self.net.zsym[e][l][j]]), e, l, j))
            if self.net.on_kink(vals):
                continue  # sigma' has no value there (SymPy's Heaviside(0) is 1/2): a witness must be off the kinks
            self._points.append(pt)
        return self._points[i]

    def number(self, value, pt: Point):
        """A SymPy value (scalar or Matrix) at a point, as a float or a float array (nan where an entry is undefined).

        A scalar with no value there (a denominator 0 at this point) raises Undefined.
        """
        if is_matrix(value):
            def entry(x):
                try:
                    return self.number(x, pt)
                except Undefined:
                    return math.nan
            return np.array([[entry(value[r, c]) for c in range(value.cols)] for r in range(value.rows)], dtype=float)
        x = sp.sympify(value).xreplace(pt.vals)
        try:
            f = float(x)
        except TypeError:
            if x.free_symbols:
                raise
            raise Undefined("no value at this point") from None
        if not math.isfinite(f):
            raise Undefined("no value at this point")
        return f

    def choices(self, expr) -> tuple[dict, list[tuple[sp.Symbol, int]]]:
        """The finitely-valued atoms in expr, each group written through one choice symbol t in 0..m-1.

        A one-hot target is one of the unit vectors; a piecewise-linear neuron (ReLU) is on one
        of its pieces, where sigma' is the piece's slope and a = slope * z + offset. Each group's
        values are interpolated in its t (Lagrange), so expr becomes a polynomial in the t's whose
        values at the grid points are exactly expr on every joint case.
        """
        net, free, groups = self.net, expr.free_symbols, []
        for e in range(self.E):
            if net.cost.one_hot and free & set(net.y[e]):
                ys = net.y[e]
                groups.append([{y: sp.Integer(int(i == hot)) for i, y in enumerate(ys)} for hot in range(len(ys))])
            for l in range(1, self.L + 1):
                ps = net.acts[l].pieces
                for j in range(self.sizes[l] if ps else 0):
                    a, ap = net.a[e][l][j], net.ap[e][l][j]
                    if a in free or ap in free:
                        groups.append([{a: v * net.z[e][l][j] + c, ap: v} for v, c in ps])
        sub, grid = {}, []
        for g, values in enumerate(groups):
            t, m = sp.Dummy(f"t{g}"), len(values)
            basis = [sp.prod([(t - i) / sp.Integer(k - i) for i in range(m) if i != k]) for k in range(m)]
            for atom in values[0]:
                sub[atom] = sp.Add(*[b * case[atom] for b, case in zip(basis, values)])
            grid.append((t, m))
        return sub, grid

    def is_zero(self, value) -> bool:
        """value is 0 at every point of the network: exactly, given the relations, on every joint case of its atoms.

        The joint cases are decided all at once, not one by one: a polynomial whose degree in each
        choice symbol t is below the number m of its values is 0 on the grid only if it is 0 as a
        polynomial, so the numerator is reduced modulo t(t - 1)...(t - m + 1) in each t and then
        tested as an identity.
        """
        value = sp.sympify(value)
        if value.is_number:
            return value == 0
        if value not in self._zero:
            if expanded_terms(value) > MAX_TERMS:
                raise ClaimError(f"too large to prove exactly: a denominator's expansion may have more than {MAX_TERMS} "
                                 "terms")
            zero = is_identity(value, sp.Integer(0), self.rule)
            if not zero:
                sub, grid = self.choices(value)
                if grid:
                    numerator = sp.expand(sp.numer(sp.together(value.xreplace(sub))))
                    for t, m in grid:
                        numerator = sp.rem(numerator, sp.prod([t - i for i in range(m)]), t)
                    zero = is_identity(sp.expand(numerator), sp.Integer(0), self.rule)
            self._zero[value] = zero
        return self._zero[value]


class SymLeaves(Leaves):
    numeric = False

    def __init__(self, ctx: Context, example: int):
        self.ctx, self.e = ctx, example

    def scalar(self, kind, layer, index, node):
        return self.ctx.scalar(kind, layer, index, _example(node, self.e), node.span)

    def matrix(self, kind, layer, node):
        if kind == "C" and isinstance(node.example, int):  # E_p: one example's own cost
            return self.ctx.net.cost_example[node.example]
        return self.ctx.matrix(kind, layer, node.span)

    def activate(self, value, name, prime, node):
        def one(x):
            if expanded_terms(x, 10_000) > 10_000:
                raise ClaimError("the argument of the activation is too large", node.span)
            hit = self.ctx.z_index.get(sp.expand(x))
            if hit is None:
                fn = (name or "sigma") + ("_prime" if prime else "")
                raise ClaimError(f"{fn} is applied to something that is not a neuron's pre-activation z{{l}}[j]: the "
                                 "checker knows the activation only as a neuron's output (sigma(z1[0]) is a1[0])",
                                 node.span)
            return self.ctx.activation(*hit, name, prime, node.span)

        return value.applyfunc(one) if is_matrix(value) else one(value)

    def is_zero(self, value) -> bool:
        return self.ctx.is_zero(value)

    def gradient(self, leaf, scale, node, example=None):
        return _gradient(self.ctx, leaf, scale, self.e if example is None else example, node)

    def local(self, top, by, node):
        return _local(self.ctx, top, by, _example(top, self.e), node)


@dataclass(frozen=True)
class _Named:
    """A scalar of the network named by kind, layer and index (a factor's two ends on a left-hand side)."""

    kind: str
    layer: int | None
    index: tuple | None
    span: tuple | None = None
    example: int | None = None


def _example(node, e: int) -> int:
    """The example a leaf names itself (RHW's o_{pj} at p = 1), else the claim's."""
    return node.example if isinstance(getattr(node, "example", None), int) else e


def _local(ctx: Context, top, by, e: int, node):
    """d(top)/d(by) of example e: a neuron's z by what it sums (exact, by differentiating z's sum), its a by its z."""
    if top.kind == "z" and by.kind in ("w", "b", "a"):
        z = ctx.net.z[e][top.layer][ctx._check(top.index[0], ctx.sizes[top.layer], "j", node.span)]
        return sp.diff(z, ctx.scalar(by.kind, by.layer, tuple(by.index), e, node.span))
    if top.kind == "z" and by.kind == "z" and top.layer == by.layer + 1 and ctx.net.acts[by.layer].elementwise:
        # Bishop's da_k/da_j: through a_j's activation, then w_kj
        k, j = top.index[0], by.index[0]
        w = ctx.scalar("w", top.layer, (k, j), e, node.span)
        return w * ctx.activation(e, by.layer, j, None, True, node.span)
    if top.kind == "a" and by.kind == "z" and top.layer == by.layer:
        if top.index[0] != by.index[0]:
            if not ctx.net.acts[top.layer].elementwise:
                raise ClaimError("a softmax neuron depends on every z of its layer: its Jacobian is not written here",
                                 node.span)
            return sp.Integer(0)
        return ctx.activation(e, top.layer, top.index[0], None, True, node.span)
    raise ClaimError("a factor of the chain rule here is da/dz of one neuron, or dz/dw, dz/db, dz/da of the sum "
                     "z is", node.span)


def _gradient(ctx: Context, leaf, scale: str, e: int, node):
    """dC/dX of a leaf: the whole vector or matrix, or one entry of example e."""
    if not hasattr(leaf, "kind") or leaf.layer is None or isinstance(leaf.layer, tuple):
        raise Invalid("a gradient is of a named quantity of one layer")
    if leaf.index is None:
        return ctx.gradient(leaf.kind, leaf.layer, scale, node.span)
    if leaf.kind in ("w", "b"):
        return ctx.truth(Lhs(leaf.kind, leaf.layer, tuple(leaf.index), example_cost=scale == "example"), e, node.span)
    n = ctx.sizes[leaf.layer]
    j = ctx._check(leaf.index[0], n, "j", node.span, f" ({n} neurons in layer {leaf.layer})")
    return ctx.entry_gradient(leaf.kind, leaf.layer, j, e, scale)


class NumLeaves(Leaves):
    numeric = True

    def __init__(self, ctx: Context, pt: Point, example: int):
        self.ctx, self.pt, self.e = ctx, pt, example

    def scalar(self, kind, layer, index, node):
        e = _example(node, self.e)
        key = ("s", kind, layer, index, e)
        if key not in self.pt.cache:
            self.pt.cache[key] = self.ctx.number(self.ctx.scalar(kind, layer, index, e), self.pt)
        return self.pt.cache[key]

    def matrix(self, kind, layer, node):
        if kind == "C" and isinstance(node.example, int):
            return self.ctx.number(self.ctx.net.cost_example[node.example], self.pt)
        key = ("m", kind, layer)
        if key not in self.pt.cache:
            self.pt.cache[key] = self.ctx.number(self.ctx.matrix(kind, layer), self.pt)
        return self.pt.cache[key]

    def local(self, top, by, node):
        return self.ctx.number(_local(self.ctx, top, by, _example(top, self.e), node), self.pt)

    def gradient(self, leaf, scale, node, example=None):
        e = self.e if example is None else example
        key = ("g", leaf, scale, e)
        if key not in self.pt.cache:
            self.pt.cache[key] = self.ctx.number(_gradient(self.ctx, leaf, scale, e, node), self.pt)
        return self.pt.cache[key]

    def activate(self, value, name, prime, node):
        def one(x):
            for zv, e, l, j in self.pt.z:
                if abs(zv - x) <= 1e-12 * (1 + abs(zv)):
                    return self.ctx.number(self.ctx.activation(e, l, j, name, prime, None), self.pt)
            raise Invalid("not a pre-activation")

        if isinstance(value, np.ndarray):
            return np.vectorize(one, otypes=[float])(value)
        return one(float(value))

