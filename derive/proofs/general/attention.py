"""Scaled dot-product attention at symbolic sizes: the backward forms derived from the scalar definitions.

One sequence of T positions, queries and keys of width d_k and values of width d_v, all symbols:

    S[t,u] = (1/√d_k) Σ_a Q[t,a] K[u,a],  P[t,u] = exp(S[t,u]) / Σ_v exp(S[t,v]),  O[t,e] = Σ_u P[t,u] V[u,e]

and C reads O (∂C/∂O, the upstream gradient, free). Proven: ∂C/∂V = Pᵀ ∂C/∂O, ∂C/∂P = ∂C/∂O Vᵀ,
∂C/∂S = P ∘ (∂C/∂P − rowsum(∂C/∂P ∘ P)) (the softmax's Jacobian applied by rows), ∂C/∂Q = ∂C/∂S K/√d_k and
∂C/∂K = (∂C/∂S)ᵀ Q/√d_k. The projections Q = X W_q (and K, V, W_o) are dense layers: BP3/BP4's forms.
With the causal mask (key "attention-causal") P[t,u] = [u ≤ t] exp(S[t,u]) / Σ_{v=0}^{t} exp(S[t,v]): the row
sum runs to t (a range that depends on the row), the guard the sift leaves, [u' ≤ t], is kept as a bracket and
absorbed when the quotients are named P; the five forms are the same.
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import Sum

from derive.proofs.general.entries import Definition, Entry
from derive.proofs.general.functions import CostPartial
from derive.proofs.general.model import INDEX, WIDTH
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck
from derive.proofs.general.spatial import Bracket, SpatialBuilder, check_spatial_theorem, normal_condition, split_sums
from derive.proofs.general.steps import Scope, Setting, Theorem

ATTENTION_THEOREMS = ("V", "P", "S", "Q", "K")
_TITLES = {  # plain words: the LaTeX document sets them as text
    "V": "∂C/∂V = P^T ∂C/∂O", "P": "∂C/∂P = ∂C/∂O V^T",
    "S": "∂C/∂S = P (∂C/∂P - rowsum(∂C/∂P P)) entrywise: the softmax's Jacobian by rows",
    "Q": "∂C/∂Q = ∂C/∂S K / sqrt(d_k)", "K": "∂C/∂K = (∂C/∂S)^T Q / sqrt(d_k)",
}


class AttentionModel:
    """The scalar graph of single-head scaled dot-product attention at symbolic T, d_k, d_v."""

    formula_note = "linearity of Σ and polynomial identity, summation indices renamed"

    def __init__(self, causal: bool = False):
        self.causal = causal
        self.key = "attention-causal" if causal else "attention"
        self.T, self.dk, self.dv = (sp.Symbol(n, **WIDTH) for n in ("T", "d_k", "d_v"))
        self.t, self.u, self.v, self.a, self.e, self.t1, self.u1, self.a1, self.e1 = sp.symbols(
            "t u v a e t' u' a' e'", **INDEX)
        self.Q, self.K, self.V, self.S, self.P, self.O = (Entry(n) for n in ("Q", "K", "V", "S", "P", "O"))
        t, u, a, e, T = self.t, self.u, self.a, self.e, self.T
        self.root = sp.sqrt(self.dk)
        self.outputs = self.O
        self.definitions = [
            Definition(self.S[t, u], Sum(self.Q[t, a] * self.K[u, a], (a, 0, self.dk - 1)) / self.root,
                       {t: (0, T - 1), u: (0, T - 1)}),
            Definition(self.P[t, u], self._softmax(t, u), {t: (0, T - 1), u: (0, T - 1)}),
            Definition(self.O[t, e], Sum(self.P[t, u] * self.V[u, e], (u, 0, T - 1)),
                       {t: (0, T - 1), e: (0, self.dv - 1)}),
        ]
        self.ranges = {self.t1: (0, T - 1), self.u1: (0, T - 1), self.a1: (0, self.dk - 1),
                       self.e1: (0, self.dv - 1)}
        self.helpers = {}

    def _softmax(self, t, u):
        """P[t,u]: exp(S[t,u]) over its row's sum; causal: [u ≤ t] exp(S[t,u]) over the sum up to t (S = −∞ above
        the diagonal, written as the bracket and the shorter sum, so no infinity is written)."""
        v = self.v  # the row sum's index
        if not self.causal:
            return sp.exp(self.S[t, u]) / Sum(sp.exp(self.S[t, v]), (v, 0, self.T - 1))
        return Bracket(normal_condition(sp.Ge(t - u, 0))) * sp.exp(self.S[t, u]) / Sum(sp.exp(self.S[t, v]), (v, 0, t))

    def title_tex(self) -> str:
        if self.causal:
            return (r"causal attention: $T$ positions, $S = Q K^\top/\sqrt{d_k}$, $P_{t,u} = [u \le t]\, e^{S_{t,u}}"
                    r" / \sum_{v \le t} e^{S_{t,v}}$, $O = P V$, values of width $d_v$")
        return (r"attention: $T$ positions, $S = Q K^\top/\sqrt{d_k}$, $P = \mathrm{softmax}(S)$ by rows, "
                r"$O = P V$, values of width $d_v$")

    def title(self) -> str:
        if self.causal:
            return ("causal attention: T positions, S = Q Kᵀ/√d_k, P[t,u] = [u ≤ t] exp(S[t,u]) / Σ_(v ≤ t) "
                    "exp(S[t,v]), O = P V, values of width d_v")
        return "attention: T positions, S = Q Kᵀ/√d_k, P = softmax(S) by rows, O = P V, values of width d_v"

    def lhs(self, key: str):
        t1, u1, a1, e1 = self.t1, self.u1, self.a1, self.e1
        return CostPartial({"V": self.V[u1, e1], "P": self.P[t1, u1], "S": self.S[t1, u1], "Q": self.Q[t1, a1],
                            "K": self.K[u1, a1]}[key])

    def formula(self, key: str, scaled: bool = True) -> sp.Expr:
        """The textbook right-hand side; scaled=False drops the 1/√d_k (a wrong form, for mutants)."""
        t, u, v, e, t1, u1, a1, e1, T = self.t, self.u, self.v, self.e, self.t1, self.u1, self.a1, self.e1, self.T
        dO, dP, dS = (lambda i, j, base=base: CostPartial(base[i, j]) for base in (self.O, self.P, self.S))
        scale = 1 / self.root if scaled else 1
        return {
            "V": lambda: Sum(self.P[t, u1] * dO(t, e1), (t, 0, T - 1)),
            "P": lambda: Sum(dO(t1, e) * self.V[u1, e], (e, 0, self.dv - 1)),
            "S": lambda: self.P[t1, u1] * (dP(t1, u1) - Sum(dP(t1, v) * self.P[t1, v], (v, 0, T - 1))),
            "Q": lambda: Sum(dS(t1, u) * self.K[u, a1], (u, 0, T - 1)) * scale,
            "K": lambda: Sum(dS(t, u1) * self.Q[t, a1], (t, 0, T - 1)) * scale,
        }[key]()

    def scope(self, key: str) -> Scope:
        return Scope(dict(self.ranges), {}, None)

    def canonical(self, expr, ranges: dict):
        return expr

    def expand_helpers(self, expr):
        return expr

    # -- counterexamples ---------------------------------------------------------------
    def witness_sizes(self):
        for T, dk, dv in ((2, 4, 1), (3, 4, 2), (2, 1, 2)):
            yield {self.T: T, self.dk: dk, self.dv: dv}

    def concrete(self, sizes: dict, rng) -> dict:
        """Q, K, V and ∂C/∂O drawn (small integers); S, P exact; every ∂C/∂ by sympy.diff of C = Σ ∂C/∂O·O."""
        T, dk, dv = sizes[self.T], sizes[self.dk], sizes[self.dv]
        draw = lambda: sp.Integer(int(rng.integers(-2, 3)))  # noqa: E731
        grid = lambda m, n: itertools.product(range(m), range(n))  # noqa: E731
        Qs = {ix: sp.Symbol(f"q{ix}") for ix in grid(T, dk)}
        Ks = {ix: sp.Symbol(f"k{ix}") for ix in grid(T, dk)}
        Vs = {ix: sp.Symbol(f"v{ix}") for ix in grid(T, dv)}
        Ss = {ix: sp.Symbol(f"s{ix}") for ix in grid(T, T)}
        Ps = {ix: sp.Symbol(f"p{ix}") for ix in grid(T, T)}
        vals, at = {}, {}
        for base, syms in ((self.Q, Qs), (self.K, Ks), (self.V, Vs)):
            for ix, sym in syms.items():
                vals[base[ix]] = at[sym] = draw()
        g = {ix: draw() for ix in grid(T, dv)}
        for ix in g:
            vals[CostPartial(self.O[ix])] = g[ix]
        S_of = {(t, u): sp.Add(*[Qs[t, a] * Ks[u, a] for a in range(dk)]) / sp.sqrt(dk) for t, u in grid(T, T)}
        last = (lambda t: t) if self.causal else (lambda t: T - 1)  # noqa: E731
        P_of = lambda S: {(t, u): (sp.exp(S[t, u]) / sp.Add(*[sp.exp(S[t, w]) for w in range(last(t) + 1)])  # noqa: E731
                                   if u <= last(t) else sp.S.Zero) for t, u in grid(T, T)}
        cost = lambda P: sp.Add(*[g[t, e] * sp.Add(*[P[t, u] * Vs[u, e] for u in range(T)])  # noqa: E731
                                  for t, e in grid(T, dv)])
        s_at = {Ss[ix]: S_of[ix].xreplace(at) for ix in Ss}
        p_at = {Ps[ix]: P_of(Ss)[ix].xreplace(s_at) for ix in Ps}
        for ix in Ss:
            vals[self.S[ix]], vals[self.P[ix]] = s_at[Ss[ix]], p_at[Ps[ix]]
            vals[CostPartial(self.P[ix])] = sp.diff(cost(Ps), Ps[ix]).xreplace(at)
            vals[CostPartial(self.S[ix])] = sp.diff(cost(P_of(Ss)), Ss[ix]).xreplace(at).xreplace(s_at)
        full = cost(P_of(S_of))
        for base, syms in ((self.Q, Qs), (self.K, Ks), (self.V, Vs)):
            for ix, sym in syms.items():
                vals[CostPartial(base[ix])] = sp.diff(full, sym).xreplace(at)
        return vals

    def shown(self, atom) -> bool:
        if isinstance(atom, CostPartial):
            return atom.args[0].base == self.O
        return isinstance(atom, sp.Indexed) and atom.base in (self.Q, self.K, self.V)


# ---------------------------------------------------------------------------
# the derivations
# ---------------------------------------------------------------------------

def _through(b: SpatialBuilder, M: AttentionModel, x, reader) -> None:
    """∂C/∂x by the chain rule over the one family that reads x, the local partial a sympy.diff of its definition
    with its Kronecker sums taken (and the softmax's quotients named P), then the sums split and taken."""
    (d,) = [d for d in M.definitions if d.head.base == reader]
    lem = b.local(d, x)
    if reader == M.P:
        b.name(lem, M.P)
    main = b.chain("main", b.thm.lhs)
    b.graph(main, x)
    b.substitute(main, lem)
    new = split_sums(main.final)
    if new != main.final:
        b._add(main, new, "linear")
    b.sift_all(main)


_READER = {"V": "O", "P": "O", "S": "P", "Q": "S", "K": "S"}


def prove_attention(candidates: dict | None = None, causal: bool = False) -> Setting:
    """The attention theorems (ATTENTION_THEOREMS), with the causal mask or without; candidates maps a theorem to a
    formula to prove instead."""
    M = AttentionModel(causal)
    candidates = candidates or {}
    theorems = []
    for key in ATTENTION_THEOREMS:
        thm = Theorem(key, M.key, _TITLES[key], M.lhs(key), candidates.get(key, M.formula(key)), M.scope(key))
        free = sorted(thm.lhs.free_symbols & set(thm.scope.ranges), key=str)
        thm.assumptions.append(["for every "] + [x for v in free for x in (Range(v, *thm.scope.ranges[v]), ", ")][:-1])
        b = SpatialBuilder(M, thm)
        try:
            _through(b, M, thm.lhs.args[0], getattr(M, _READER[key]))
            b.formula(thm.main)
        except Stuck as exc:
            thm.stuck = str(exc)
        theorems.append(check_spatial_theorem(thm, M))
    return Setting(M.key, M, theorems)
