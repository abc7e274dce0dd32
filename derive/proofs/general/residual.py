"""Residual blocks for every depth: h^r = h^(r-1) + F^r(h^(r-1)), the δ recursion by induction on the blocks.

Block r (1 <= r <= R) keeps the width n; its F is P dense layers (P a symbol too):
z^(r,1)_m = Σ_q w^(r,1)_{m,q} h^(r-1)_q + b^(r,1)_m, z^(r,p)_m = Σ_q w^(r,p)_{m,q} a^(r,p-1)_q + b^(r,p)_m for
2 <= p <= P, a^(r,p)_m = σ(z^(r,p)_m), and the block's output h^r_m = h^(r-1)_m + a^(r,P)_m; h^0 is the input
and C reads h^R only. With Δ^r_j ≡ ∂C/∂h^r_j and δ^(r,p)_m ≡ ∂C/∂z^(r,p)_m:

- base: Δ^R = ∂C/∂h^R (the cost's own partial);
- top: δ^(r,P)_m = Δ^r_m σ'(z^(r,P)_m), given Δ^r = ∂C/∂h^r;
- inner: δ^(r,p)_j = σ'(z^(r,p)_j) Σ_k w^(r,p+1)_{k,j} δ^(r,p+1)_k for 1 <= p <= P-1 (BP2 inside the block);
- step: Δ^(r-1)_j = Δ^r_j + Σ_m w^(r,1)_{m,j} δ^(r,1)_m: δ from above plus δ through the block, given
  Δ^r = ∂C/∂h^r and δ^(r,1) = ∂C/∂z^(r,1) (top and inner give every δ^(r,p) by induction on p, from P down);
- the gradients of the weights and biases: the first inner layer's (it reads h^(r-1)) and layer p+1's.

Base and step give Δ^r for every block of a stack of any depth R, each block of any inner depth P.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy import IndexedBase, Sum

from derive.proofs.general.entries import Definition, Graph
from derive.proofs.general.functions import CostPartial, sigma, sigma_prime
from derive.proofs.general.layer_proof import LayerBuilder, check_layer_theorem
from derive.proofs.general.model import INDEX, WIDTH
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck
from derive.proofs.general.steps import Scope, Setting, Theorem
from derive.proofs.identity import Counterexample

RESIDUAL_THEOREMS = ("base", "top", "inner", "step", "w-first", "w", "b-first", "b")
_TITLES = {
    "base": "the base case: Δ at the last block",
    "top": "δ of a block's last inner layer",
    "inner": "δ one inner layer down (BP2 inside the block)",
    "step": "the inductive step: δ from above plus δ through the block",
    "w-first": "the gradient of a weight of a block's first inner layer",
    "w": "the gradient of a weight of a later inner layer (p+1)",
    "b-first": "the gradient of a bias of a block's first inner layer",
    "b": "the gradient of a bias of a later inner layer (p+1)",
}
WITNESS_WIDTHS = (2, 1, 3)
WITNESS_LAYERS = ((1, 2, 1, 2), (2, 3, 1, 3), (1, 1, 1, 1), (1, 2, 2, 3), (2, 2, 1, 1))  # (r, R, p, P)


class _Inner(IndexedBase):
    """An entry of a block's inner layer: [block, inner layer, neuron...], printed z^(r,p)[m]."""

    layer_indices = 2


class ResidualModel:
    """The scalar graph of a stack of R residual blocks of width n, each with P inner dense layers (symbols)."""

    key = "residual"

    def __init__(self):
        self.r = sp.Symbol("r", integer=True, positive=True)
        self.R = sp.Symbol("R", integer=True, positive=True)
        self.p = sp.Symbol("p", integer=True, positive=True)
        self.P = sp.Symbol("P", integer=True, positive=True)
        self.n = sp.Symbol("n", **WIDTH)
        self.j, self.k, self.m, self.q = sp.symbols("j k m q", **INDEX)
        c = sp.Symbol("c", **INDEX)  # the definitions' own summation index: never an index a theorem names
        self.h, self.Delta = IndexedBase("h"), IndexedBase("Delta")
        self.z, self.a, self.w, self.b, self.delta = (_Inner(s) for s in ("z", "a", "w", "b", "delta"))
        lam = sp.Symbol("lambda", integer=True, positive=True)
        pi = sp.Symbol("pi", integer=True, positive=True)
        m, last = self.m, self.n - 1
        blocks, inner = {lam: (1, self.R), m: (0, last)}, {pi: (1, self.P)}
        defs = [
            Definition(self.z[lam, 1, m], Sum(self.w[lam, 1, m, c] * self.h[lam - 1, c], (c, 0, last))
                       + self.b[lam, 1, m], blocks),
            Definition(self.z[lam, pi, m], Sum(self.w[lam, pi, m, c] * self.a[lam, pi - 1, c], (c, 0, last))
                       + self.b[lam, pi, m], {**blocks, pi: (2, self.P)}),
            Definition(self.a[lam, pi, m], sigma(self.z[lam, pi, m]), {**blocks, **inner}),
            Definition(self.h[lam, m], self.h[lam - 1, m] + self.a[lam, self.P, m], blocks),
        ]
        self.graph = Graph(defs, self.h, output_layer=self.R)
        self.ranges = {self.j: (0, last), self.k: (0, last), m: (0, last), self.q: (0, last), c: (0, last)}

    def definition(self, head, scope=None):
        if isinstance(head, sp.Indexed) and head.base == self.Delta:
            return CostPartial(self.h[head.indices])
        if isinstance(head, sp.Indexed) and head.base == self.delta:
            return CostPartial(self.z[head.indices])
        return self.graph.definition(head, scope)

    def names_ok(self, base, name) -> bool:
        """δ names ∂C/∂z."""
        return base == self.z and name == self.delta

    def hypotheses(self, key: str) -> list:
        """(base, name, index prefix) a theorem may rename by its induction hypotheses."""
        r, p = self.r, self.p
        return {"top": [(self.h, self.Delta, (r,))], "inner": [(self.z, self.delta, (r, p + 1))],
                "step": [(self.h, self.Delta, (r,)), (self.z, self.delta, (r, 1))]}.get(key, [])

    def title_tex(self) -> str:
        return (r"residual blocks $h^{r} = h^{r-1} + F^{r}(h^{r-1})$ of width $n$, $F^{r}$ with $P$ dense layers, "
                r"$1 \le r \le R$ for any depth $R$ ($C$ reads $h^{R}$)")

    def title(self) -> str:
        return ("residual blocks h^r = h^(r-1) + F^r(h^(r-1)) of width n, F^r with P dense layers, 1 ≤ r ≤ R for any "
                "depth R (C reads h^R)")

    def formula(self, key: str):
        r, R, p, P, j, k, m, q = self.r, self.R, self.p, self.P, self.j, self.k, self.m, self.q
        last = self.n - 1
        return {
            "base": lambda: CostPartial(self.h[R, j]),
            "top": lambda: self.Delta[r, m] * sigma_prime(self.z[r, P, m]),
            "inner": lambda: sigma_prime(self.z[r, p, j]) * Sum(self.w[r, p + 1, k, j] * self.delta[r, p + 1, k],
                                                                (k, 0, last)),
            "step": lambda: self.Delta[r, j] + Sum(self.w[r, 1, m, j] * self.delta[r, 1, m], (m, 0, last)),
            "w-first": lambda: self.delta[r, 1, m] * self.h[r - 1, q],
            "w": lambda: self.delta[r, p + 1, m] * self.a[r, p, q],
            "b-first": lambda: self.delta[r, 1, m],
            "b": lambda: self.delta[r, p + 1, m],
        }[key]()

    def lhs(self, key: str):
        r, R, p, P, m, q = self.r, self.R, self.p, self.P, self.m, self.q
        return {"base": self.Delta[R, self.j], "top": self.delta[r, P, m], "inner": self.delta[r, p, self.j],
                "step": self.Delta[r - 1, self.j], "w-first": CostPartial(self.w[r, 1, m, q]),
                "w": CostPartial(self.w[r, p + 1, m, q]), "b-first": CostPartial(self.b[r, 1, m]),
                "b": CostPartial(self.b[r, p + 1, m])}[key]

    def scope(self, key: str) -> Scope:
        """The blocks (1 <= r <= R) and, for the layers past the first, 1 <= p <= P - 1 (inner, w and b at p+1)."""
        s, t = sp.Symbol("s", integer=True, nonnegative=True), sp.Symbol("t", integer=True, nonnegative=True)
        if key == "base":
            return Scope(dict(self.ranges), {}, None)
        layers = {self.R: self.r + s}
        if key in ("inner", "w", "b"):
            layers[self.P] = self.p + 1 + t
        return Scope(dict(self.ranges), layers, Range(self.r, sp.S.One, self.R))

    def layer_assumptions(self, key: str) -> list:
        if key in ("inner", "w", "b"):
            return [[Range(self.p, sp.S.One, self.P - 1)]]
        return []

    def canonical(self, expr):
        return expr

    def witness(self, thm: Theorem, lhs, rhs):
        return residual_witness(self, thm, lhs, rhs)


# ---------------------------------------------------------------------------
# the derivations
# ---------------------------------------------------------------------------

def _adjoint(b: LayerBuilder, M: ResidualModel, x, head=None):
    """∂C/∂x by the chain rule over what reads x, each local partial substituted: the main chain, or a lemma's
    when head is given (the lemma ∂C/∂x = ...)."""
    readers = M.graph.readers(x, b.thm.scope)
    if not readers:
        raise Stuck(f"who reads {x} is not decided")
    lemmas = [b.local(r.head, x) for r in readers]
    c = b.chain("lemma" if head is not None else "main", CostPartial(x) if head is not None else b.thm.lhs)
    if head is None and b.thm.lhs != CostPartial(x):
        b.define(c)  # Δ ≡ ∂C/∂h, δ ≡ ∂C/∂z: the name's definition first
    b.graph_rule(c, x)
    for lem in lemmas:
        b.substitute(c, lem)
    return c


def _hypotheses(b: LayerBuilder, M: ResidualModel, c) -> None:
    for base, name, prefix in M.hypotheses(b.thm.key):
        if any(isinstance(x, CostPartial) and isinstance(x.args[0], sp.Indexed) and x.args[0].base == base
               and tuple(x.args[0].indices[:len(prefix)]) == prefix for x in c.final.atoms(CostPartial)):
            b.rename(c, "res-hypothesis", base, name, prefix)


def _base(b: LayerBuilder, M: ResidualModel) -> None:
    b.define(b.chain("main", b.thm.lhs))


def _through_a(b: LayerBuilder, M: ResidualModel, z) -> None:
    """δ of an inner layer: ∂C/∂a^(r,p)_m by the graph (a lemma), then ∂C/∂z^(r,p)_m = ∂C/∂a σ'(z)."""
    a = M.a[z.indices]
    up = _adjoint(b, M, a, head=True)
    _hypotheses(b, M, up)
    b.linear(up)
    main = _adjoint(b, M, z)
    b.substitute(main, up)


def _top(b: LayerBuilder, M: ResidualModel) -> None:
    _through_a(b, M, M.z[M.r, M.P, M.m])


def _inner(b: LayerBuilder, M: ResidualModel) -> None:
    _through_a(b, M, M.z[M.r, M.p, M.j])
    b.linear(b.thm.main)


def _step(b: LayerBuilder, M: ResidualModel) -> None:
    main = _adjoint(b, M, M.h[M.r - 1, M.j])
    _hypotheses(b, M, main)
    b.linear(main)


def _weights(b: LayerBuilder, M: ResidualModel) -> None:
    x = b.thm.lhs.args[0]
    main = _adjoint(b, M, x)
    b.rename(main, "def-delta", M.z, M.delta, tuple(x.indices[:2]))  # ∂C/∂z^(r,p) named δ^(r,p)


_DERIVATIONS = {"base": _base, "top": _top, "inner": _inner, "step": _step}


def prove_residual(candidates: dict | None = None) -> Setting:
    """The residual theorems; candidates maps a theorem key to a formula to prove instead of the textbook one."""
    M = ResidualModel()
    candidates = dict(candidates or {})
    out = []
    for key in RESIDUAL_THEOREMS:
        formula = M.formula(key) if key not in candidates else sp.sympify(candidates[key])
        scope = M.scope(key)
        thm = Theorem(key, "residual", _TITLES[key], M.lhs(key), formula, scope)
        thm.assumptions.append(["the last block R"] if scope.layer_range is None else [scope.layer_range])
        thm.assumptions += M.layer_assumptions(key)
        for s in sorted(thm.lhs.free_symbols & set(M.ranges), key=str):
            thm.assumptions.append([Range(s, *M.ranges[s])])
        for base, name, prefix in M.hypotheses(key):
            entry = base[(*prefix, M.k)]
            thm.assumptions.append(["induction hypothesis: ", sp.Eq(name[entry.indices], CostPartial(entry),
                                                                     evaluate=False),
                                    " for every ", Range(M.k, *M.ranges[M.k])])
        b = LayerBuilder(M, thm)
        try:
            _DERIVATIONS.get(key, _weights)(b, M)
            b.formula(thm.main)
        except Stuck as exc:
            thm.stuck = str(exc)
        out.append(check_layer_theorem(thm, M))
    return Setting("residual", M, out)


# ---------------------------------------------------------------------------
# a witness: each atom a value at small sizes
# ---------------------------------------------------------------------------

def residual_witness(M: ResidualModel, thm: Theorem, lhs, rhs, tries: int = 3, seed: int = 0):
    """Sizes, layers and indices where lhs and rhs differ, every atom a free value (Δ^r: C is any function of
    h^R; z and σ' at distinct z: σ is any activation; w, b, h, a free); None if none is found."""
    rng = np.random.default_rng(seed)
    free = sorted((lhs.free_symbols | rhs.free_symbols) & {M.j, M.m, M.q, M.k}, key=str)
    for n, (r, R, p, P) in itertools.product(WITNESS_WIDTHS, WITNESS_LAYERS):
        at = {M.r: r, M.R: R, M.p: p, M.P: P}
        if not _admitted(thm.scope, at):
            continue
        for _ in range(tries):
            for point in itertools.product(*[range(n) for _ in free]):
                idx = dict(zip(free, point))
                sub = {M.n: n, **at}
                left = lhs.xreplace(sub).subs(idx).doit()
                right = rhs.xreplace(sub).subs(idx).doit()
                vals = _values(M, left + right, rng)
                lv, rv = left.xreplace(vals), right.xreplace(vals)
                if lv.is_Rational and rv.is_Rational and lv != rv:
                    shown = tuple(sorted(vals.items(), key=lambda kv: str(kv[0])))
                    sizes = tuple((s, v) for s, v in ((M.n, n), *at.items()) if s in (lhs.free_symbols
                                                                                      | rhs.free_symbols) or s == M.n)
                    return Counterexample(shown, lv, rv, sizes, tuple(idx.items()))
    return None


def _admitted(scope: Scope, at: dict) -> bool:
    """Whether the layers (r, R, p, P) lie in the theorem's range: each R = r + s (and the like) with s >= 0."""
    for sym, expr in scope.layers.items():
        slack = [x for x in expr.free_symbols if x not in at]
        gap = at[sym] - expr.xreplace({**at, **{x: 0 for x in slack}})
        if gap < 0 or (not slack and gap != 0):
            return False
    return True


def _values(M: ResidualModel, expr, rng) -> dict:
    """A value for every atom of expr: entries and ∂C/∂ drawn; σ and σ' one value per value of their argument."""
    def draw():
        return sp.Rational(Fraction(int(rng.integers(1, 17)) * (1 if rng.integers(2) else -1), 8))
    vals = {a: draw() for a in sorted(expr.atoms(sp.Indexed), key=str)}
    vals.update({a: draw() for a in sorted(expr.atoms(CostPartial), key=str)})
    table: dict = {}
    for f in sorted(expr.atoms(sigma, sigma_prime), key=str):
        at = (f.func, f.args[0].xreplace(vals))
        vals[f] = table.setdefault(at, draw())
    return vals
