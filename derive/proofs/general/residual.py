"""Residual blocks for every depth: h^r = h^(r-1) + F^r(h^(r-1)), the δ recursion by induction on the blocks.

Block r (1 <= r <= R) keeps the width n: its inner dense layer is z^r_m = Σ_q w^r_{m,q} h^(r-1)_q + b^r_m,
a^r_m = σ(z^r_m), and its output h^r_m = h^(r-1)_m + a^r_m; h^0 is the input and C reads h^R only. With
Δ^r_j ≡ ∂C/∂h^r_j the base case is Δ^R = ∂C/∂h^R (the cost's own partial), and the inductive step, read off the
definitions by the chain rule on the graph, is Δ^(r-1)_j = Δ^r_j + Σ_m w^r_{m,j} δ^r_m with δ^r_m = Δ^r_m σ'(z^r_m):
δ from above plus δ through the block. Together they give Δ^r for every block of a stack of any depth R, and
∂C/∂w^r, ∂C/∂b^r follow as for a dense layer. (A block whose F is several dense layers passes δ through them by
BP2 before the same last step.)
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

RESIDUAL_THEOREMS = ("base", "delta", "step", "w", "b")
_TITLES = {
    "base": "the base case: Δ at the last block",
    "delta": "δ of a block's inner layer",
    "step": "the inductive step: δ from above plus δ through the block",
    "w": "the gradient of a block's weight",
    "b": "the gradient of a block's bias",
}
WITNESS_WIDTHS = (2, 1, 3)
WITNESS_BLOCKS = ((1, 2), (2, 3), (1, 1))  # (r, R)


class ResidualModel:
    """The scalar graph of a stack of R residual blocks of width n (both symbols)."""

    key = "residual"

    def __init__(self):
        self.r = sp.Symbol("r", integer=True, positive=True)
        self.R = sp.Symbol("R", integer=True, positive=True)
        self.n = sp.Symbol("n", **WIDTH)
        self.j, self.k, self.m, self.q = sp.symbols("j k m q", **INDEX)
        p = sp.Symbol("p", **INDEX)  # the definition's own summation index: never an index a theorem names
        self.h, self.z, self.a, self.w, self.b = (IndexedBase(s) for s in ("h", "z", "a", "w", "b"))
        self.Delta, self.delta = IndexedBase("Delta"), IndexedBase("delta")
        lam = sp.Symbol("lambda", integer=True, positive=True)
        m, last = self.m, self.n - 1
        defs = [
            Definition(self.z[lam, m], Sum(self.w[lam, m, p] * self.h[lam - 1, p], (p, 0, last)) + self.b[lam, m],
                       {lam: (1, self.R), m: (0, last)}),
            Definition(self.a[lam, m], sigma(self.z[lam, m]), {lam: (1, self.R), m: (0, last)}),
            Definition(self.h[lam, m], self.h[lam - 1, m] + self.a[lam, m], {lam: (1, self.R), m: (0, last)}),
        ]
        self.graph = Graph(defs, self.h, output_layer=self.R, layer_range=(lam, 1, self.R))
        self.ranges = {self.j: (0, last), self.k: (0, last), m: (0, last), self.q: (0, last), p: (0, last)}

    def definition(self, head):
        if isinstance(head, sp.Indexed) and head.base == self.Delta:
            return CostPartial(self.h[head.indices])
        if isinstance(head, sp.Indexed) and head.base == self.delta:
            return CostPartial(self.z[head.indices])
        return self.graph.definition(head)

    def names_ok(self, base, name) -> bool:
        """δ names ∂C/∂z."""
        return base == self.z and name == self.delta

    def title_tex(self) -> str:
        return (r"residual blocks $h^{r} = h^{r-1} + \sigma(W^{r} h^{r-1} + b^{r})$ of width $n$, "
                r"$1 \le r \le R$ for any depth $R$ ($C$ reads $h^{R}$)")

    def title(self) -> str:
        return ("residual blocks h^r = h^(r-1) + σ(W^r h^(r-1) + b^r) of width n, 1 ≤ r ≤ R for any depth R "
                "(C reads h^R)")

    def formula(self, key: str):
        r, R, j, m, q = self.r, self.R, self.j, self.m, self.q
        if key == "base":
            return CostPartial(self.h[R, j])
        if key == "delta":
            return self.Delta[r, m] * sigma_prime(self.z[r, m])
        if key == "step":
            return self.Delta[r, j] + Sum(self.w[r, m, j] * self.Delta[r, m] * sigma_prime(self.z[r, m]),
                                          (m, 0, self.n - 1))
        if key == "w":
            return self.delta[r, m] * self.h[r - 1, q]
        if key == "b":
            return self.delta[r, m]
        raise KeyError(key)

    def lhs(self, key: str):
        r, R = self.r, self.R
        return {"base": self.Delta[R, self.j], "delta": self.delta[r, self.m], "step": self.Delta[r - 1, self.j],
                "w": CostPartial(self.w[r, self.m, self.q]), "b": CostPartial(self.b[r, self.m])}[key]

    def scope(self, key: str) -> Scope:
        s = sp.Symbol("s", integer=True, nonnegative=True)
        if key == "base":
            return Scope(dict(self.ranges), {}, None)
        hyp = self.r if key in ("delta", "step") else None
        return Scope(dict(self.ranges), {self.R: self.r + s}, Range(self.r, sp.S.One, self.R), hypothesis_layer=hyp)

    def canonical(self, expr):
        """δ written as Δ σ'(z): the one way of writing it (δ^r = Δ^r σ'(z^r) is the theorem proven above)."""
        return expr

    def witness(self, thm: Theorem, lhs, rhs):
        return residual_witness(self, thm, lhs, rhs)


# ---------------------------------------------------------------------------
# the derivations
# ---------------------------------------------------------------------------

def _base(b: LayerBuilder, M: ResidualModel) -> None:
    main = b.chain("main", b.thm.lhs)
    b.define(main)


def _delta_of(b: LayerBuilder, M: ResidualModel, m) -> object:
    """The lemmas ∂C/∂a^r_m = Δ^r_m and ∂C/∂z^r_m = Δ^r_m σ'(z^r_m): the chain rule on the graph, twice."""
    r = M.r
    da = b.local(M.h[r, m], M.a[r, m])
    up = b.chain("lemma", CostPartial(M.a[r, m]))
    b.graph_rule(up, M.a[r, m])
    b.substitute(up, da)
    b.rename(up, "res-hypothesis", M.h, M.Delta, r)
    dz = b.local(M.a[r, m], M.z[r, m])
    lem = b.chain("lemma", CostPartial(M.z[r, m]))
    b.graph_rule(lem, M.z[r, m])
    b.substitute(lem, dz)
    b.substitute(lem, up)
    return lem


def _delta(b: LayerBuilder, M: ResidualModel) -> None:
    lem = _delta_of(b, M, M.m)
    main = b.chain("main", b.thm.lhs)
    b.define(main)
    b.substitute(main, lem)


def _step(b: LayerBuilder, M: ResidualModel) -> None:
    r, j, m = M.r, M.j, M.m
    x = M.h[r - 1, j]
    through = b.local(M.z[r, m], x)
    skip = b.local(M.h[r, j], x)
    lem = _delta_of(b, M, m)
    main = b.chain("main", b.thm.lhs)
    b.define(main)
    b.graph_rule(main, x)
    b.substitute(main, through)
    b.substitute(main, skip)
    b.substitute(main, lem)
    b.rename(main, "res-hypothesis", M.h, M.Delta, r)
    b.linear(main)


def _weights(b: LayerBuilder, M: ResidualModel, key: str) -> None:
    x = M.lhs(key).args[0]
    readers = M.graph.readers(x, b.thm.scope)
    if not readers:
        raise Stuck(f"nothing reads {x}")
    dlem = b.local(readers[0].head, x)
    main = b.chain("main", b.thm.lhs)
    b.graph_rule(main, x)
    b.substitute(main, dlem)
    b.rename(main, "def-delta", M.z, M.delta, M.r)


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
        for s in sorted(thm.lhs.free_symbols & set(M.ranges), key=str):
            thm.assumptions.append([Range(s, *M.ranges[s])])
        if scope.hypothesis_layer is not None:
            thm.assumptions.append(["induction hypothesis: ", sp.Eq(M.Delta[M.r, M.k], CostPartial(M.h[M.r, M.k]),
                                                                     evaluate=False),
                                    " for every ", Range(M.k, *M.ranges[M.k])])
        b = LayerBuilder(M, thm)
        try:
            {"base": _base, "delta": _delta, "step": _step}.get(key, lambda b, M: _weights(b, M, key))(b, M)
            b.formula(thm.main)
        except Stuck as exc:
            thm.stuck = str(exc)
        out.append(check_layer_theorem(thm, M))
    return Setting("residual", M, out)


# ---------------------------------------------------------------------------
# a witness: each atom a value at small sizes
# ---------------------------------------------------------------------------

def residual_witness(M: ResidualModel, thm: Theorem, lhs, rhs, tries: int = 3, seed: int = 0):
    """Sizes, block and indices where lhs and rhs differ, every atom a free value (Δ^r: C is any function of
    h^R; z and σ' at distinct z: σ is any activation; w, b, h free); None if none is found."""
    rng = np.random.default_rng(seed)
    free = sorted((lhs.free_symbols | rhs.free_symbols) & {M.j, M.m, M.q, M.k}, key=str)
    for n, (r, R) in itertools.product(WITNESS_WIDTHS, WITNESS_BLOCKS):
        if thm.scope.layer_range is None and r != R:
            continue
        for _ in range(tries):
            for point in itertools.product(*[range(n) for _ in free]):
                idx = dict(zip(free, point))
                sub = {M.n: n, M.r: r, M.R: R}
                left = lhs.xreplace(sub).subs(idx).doit()
                right = rhs.xreplace(sub).subs(idx).doit()
                vals = _values(M, left + right, rng)
                lv, rv = left.xreplace(vals), right.xreplace(vals)
                if lv.is_Rational and rv.is_Rational and lv != rv:
                    shown = tuple(sorted(vals.items(), key=lambda kv: str(kv[0])))
                    return Counterexample(shown, lv, rv, ((M.n, n), (M.r, r), (M.R, R)), tuple(idx.items()))
    return None


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
