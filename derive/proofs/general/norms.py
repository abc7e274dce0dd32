"""Batch norm and layer norm for every batch size and width: the backward formulas derived from the scalars.

Batch norm (training mode) normalizes each feature i over the B examples of a batch; layer norm normalizes each
example e over its n features. Entries are x[example, feature]; for the normalized index t (b over examples, or
j over features, N = B or n of them) and the untouched one u (the feature i, or the example e):

    mu[u] = (1/N) Σ_d x_d,  var[u] = (1/N) Σ_c (x_c - mu)^2,  xhat_t = (x_t - mu) s,  y_t = gamma xhat_t + beta

with s = (var + eps)^(-1/2) an atom of var whose derivative is -s^3/2 (InvStd: no square root is written).
gamma and beta are per feature: batch norm's gamma[i] is one number for the whole sum over b, layer norm's
gamma[j] moves inside the sum over j, and its dC/dgamma[j] sums over the examples. Both widths, B and n, are
symbols; the untouched index stays a symbol whose entries no definition of another value of it reads (the
chain rule's premise checks this), so the statement holds for every feature (every example) at once.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy import Sum

from derive.proofs.general.entries import Definition, Entry, Graph, InvStd, TotalPartial
from derive.proofs.general.functions import CostPartial
from derive.proofs.general.layer_proof import LayerBuilder, check_layer_theorem
from derive.proofs.general.model import INDEX, WIDTH
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck
from derive.proofs.general.steps import Scope, Setting, Theorem
from derive.proofs.identity import Counterexample

NORMS = ("batchnorm", "layernorm")
NORM_THEOREMS = ("gamma", "beta", "xhat", "var", "mu", "x-paths", "x", "x-paths=x")
_TITLES = {
    "gamma": "∂C/∂γ", "beta": "∂C/∂β", "xhat": "∂C/∂ of the normalized input (the first of the three paths)",
    "var": "∂C/∂σ² (the variance's path)", "mu": "∂C/∂μ (the mean's path)",
    "x-paths": "∂C/∂x, the three paths: through the normalized input, σ² and μ",
    "x": "∂C/∂x, consolidated, from the chain rule on the scalars",
    "x-paths=x": "the three paths give the consolidated form",
}
WITNESS_SIZES = (2, 3, 1, 5)  # the normalized width N tried for a witness; the untouched one is 1 or 2


class NormModel:
    """The scalar graph of batch norm (kind "batchnorm") or layer norm ("layernorm") with symbolic B and n."""

    def __init__(self, kind: str):
        if kind not in NORMS:
            raise ValueError(kind)
        self.key = kind
        self.batch = kind == "batchnorm"
        self.B = sp.Symbol("B", **WIDTH)
        self.n = sp.Symbol("n", **WIDTH)
        self.N = self.B if self.batch else self.n  # how many entries a mean is over
        self.U = self.n if self.batch else self.B  # how many the untouched index runs over
        self.t = sp.Symbol("b" if self.batch else "j", **INDEX)  # the normalized index
        self.u = sp.Symbol("i" if self.batch else "e", **INDEX)  # the untouched index
        self.k, self.c, self.d = sp.symbols("k c d", **INDEX)
        self.x, self.xhat, self.y, self.mu, self.var, self.gamma, self.beta = (
            Entry(s) for s in ("x", "xhat", "y", "mu", "var", "gamma", "beta"))
        t, u, c, d, N = self.t, self.u, self.c, self.d, self.N
        last = N - 1
        defs = [
            Definition(self.mu[u], Sum(self.at(self.x, d, u), (d, 0, last)) / N, {u: (0, self.U - 1)}),
            Definition(self.var[u], Sum((self.at(self.x, c, u) - self.mu[u]) ** 2, (c, 0, last)) / N,
                       {u: (0, self.U - 1)}),
            Definition(self.at(self.xhat, t, u), (self.at(self.x, t, u) - self.mu[u]) * self.s(),
                       {t: (0, last), u: (0, self.U - 1)}),
            Definition(self.at(self.y, t, u), self.scale(t) * self.at(self.xhat, t, u) + self.shift(t),
                       {t: (0, last), u: (0, self.U - 1)}),
        ]
        self.graph = Graph(defs, self.y)
        self.ranges = {t: (0, last), self.k: (0, last), c: (0, last), d: (0, last), u: (0, self.U - 1)}

    # -- entries ---------------------------------------------------------------
    def at(self, base, t, u):
        """base at normalized index t and untouched index u, in the layout [example, feature]."""
        return base[t, u] if self.batch else base[u, t]

    def scale(self, t):
        """gamma of the entry at t: per feature, so batch norm's is gamma[i] and layer norm's gamma[j]."""
        return self.gamma[self.u] if self.batch else self.gamma[t]

    def shift(self, t):
        return self.beta[self.u] if self.batch else self.beta[t]

    def s(self):
        return InvStd(self.var[self.u])

    def g(self, t):
        """∂C/∂y at t: the upstream gradient."""
        return CostPartial(self.at(self.y, t, self.u))

    def definition(self, head, scope=None):
        return self.graph.definition(head, scope or Scope(dict(self.ranges), {}, None))

    def names_ok(self, base, name) -> bool:
        """A norm names no ∂C/∂ (its proofs write every adjoint as ∂C/∂ itself)."""
        return False

    def title_tex(self) -> str:
        if self.batch:
            return (r"batch norm (training mode): feature $i$ of a batch of $B$ examples, $n$ features, "
                    r"$s = (\sigma^2 + \varepsilon)^{-1/2}$")
        return (r"layer norm: example $e$ of a batch of $B$, over its $n$ features, "
                r"$s = (\sigma^2 + \varepsilon)^{-1/2}$")

    def title(self) -> str:
        return (self.title_tex().replace("$", "").replace(r"\sigma^2", "σ²").replace(r"\varepsilon", "ε")
                .replace("^{-1/2}", "^(-1/2)"))

    # -- the formulas ---------------------------------------------------------------
    def over(self, expr, t=None):
        t = t or self.t
        return Sum(expr, (t, 0, self.N - 1))

    def formula(self, key: str) -> sp.Expr:
        """The textbook right-hand side of each theorem."""
        t, u, k, N = self.t, self.u, self.k, self.N
        s, mu = self.s(), self.mu[u]
        xh = lambda i: self.at(self.xhat, i, u)  # noqa: E731
        x = lambda i: self.at(self.x, i, u)  # noqa: E731
        dxh = lambda i: CostPartial(xh(i))  # noqa: E731
        if key in ("gamma", "beta"):
            if self.batch:  # gamma[i]: every example of feature i
                return self.over(self.g(t) * xh(t) if key == "gamma" else self.g(t))
            y = self.at(self.y, k, u)  # gamma[k]: feature k of every example
            body = CostPartial(y) * self.at(self.xhat, k, u) if key == "gamma" else CostPartial(y)
            return Sum(body, (u, 0, self.B - 1))
        if key == "xhat":
            return self.scale(t) * self.g(t)
        if key == "var":
            return self.over(dxh(t) * (x(t) - mu) * (-s ** 3 / 2))
        if key == "mu":
            return self.over(-s * dxh(t)) + CostPartial(self.var[u]) * (-2 / N) * self.over(x(t) - mu)
        if key == "x-paths":
            return dxh(k) * s + CostPartial(self.var[u]) * 2 * (x(k) - mu) / N + CostPartial(mu) / N
        if key in ("x", "x-paths=x"):
            if self.batch:
                return self.gamma[u] * s / N * (N * self.g(k) - self.over(self.g(t))
                                                 - xh(k) * self.over(self.g(t) * xh(t)))
            gg = lambda i: self.gamma[i] * self.g(i)  # noqa: E731
            return s / N * (N * gg(k) - self.over(gg(t)) - xh(k) * self.over(gg(t) * xh(t)))
        raise KeyError(key)

    def lhs(self, key: str):
        t, u, k = self.t, self.u, self.k
        if key in ("gamma", "beta"):
            base = self.gamma if key == "gamma" else self.beta
            return CostPartial(base[u] if self.batch else base[k])
        return CostPartial({"xhat": self.at(self.xhat, t, u), "var": self.var[u], "mu": self.mu[u]}.get(
            key, self.at(self.x, k, u)))

    def canonical(self, expr):
        """expr with every x̂ written by its definition (x - mu) s: one way of writing each quantity."""
        d = self.graph.defined(self.xhat)  # xhat[t, u] = (x[t, u] - mu[u]) s(var[u]) wherever the entry exists
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == self.xhat,
                            lambda e: d.rhs.xreplace(dict(zip(d.head.indices, e.indices))))

    def witness(self, thm: Theorem, lhs, rhs):
        return norm_witness(self, lhs, rhs)


# ---------------------------------------------------------------------------
# the derivations
# ---------------------------------------------------------------------------

def _adjoint(b: LayerBuilder, M: NormModel, x) -> object:
    """∂C/∂x by the chain rule over what reads x, each local partial (sympy.diff of the reader's definition)
    substituted: ∂C/∂γ, ∂C/∂β, ∂C/∂x̂, ∂C/∂σ², ∂C/∂μ, and ∂C/∂x by its three paths. Returns the main chain."""
    readers = M.graph.readers(x, b.thm.scope)
    if not readers:
        raise Stuck(f"nothing reads {x}")
    lemmas = [b.local(r.head, x) for r in readers]
    main = b.chain("main", b.thm.lhs)
    b.graph_rule(main, x)
    for lem in lemmas:
        b.substitute(main, lem)
    return main


def _x_paths_consolidated(b: LayerBuilder, M: NormModel, proven: dict) -> None:
    """The three paths with the proven ∂C/∂μ, ∂C/∂σ², ∂C/∂x̂ substituted, reduced to the consolidated form."""
    main = _adjoint(b, M, M.at(M.x, M.k, M.u))
    for name in ("mu", "var", "xhat"):  # mu's value reads var's and xhat's: substitute it first
        b.substitute(main, proven[name].main, (M.t,) if name == "xhat" else ())
    _centred_sums_vanish(b, M, main)
    b.linear(main)


def _centred_sums_vanish(b: LayerBuilder, M: NormModel, c) -> None:
    """Σ_t (x_t - mu) = Σ_t x_t - N mu = 0: split by linearity, the constant summed, the mean's own sum named."""
    b.linear(c)
    b.constant(c)
    b.fold(c, M.mu)


def _x(b: LayerBuilder, M: NormModel) -> None:
    """From the scalars: y_t written out in x, differentiated, and the chain rule through every y_t."""
    t, u, k = M.t, M.u, M.k
    y, x = M.at(M.y, t, u), M.at(M.x, k, u)
    lem = b.chain("lemma", y)
    b.define(lem)
    for base in (M.xhat, M.var, M.mu):
        b.unfold(lem, base)
    dlem = b.chain("lemma", TotalPartial(y, x))
    b.diff(dlem, lem, x)
    b.sift_all(dlem)  # the mean's Kronecker sums: the others are sifted once linearity has split them
    b.fold(dlem, M.mu)
    b.fold(dlem, M.var)
    b.linear(dlem)  # the variance's Kronecker factor multiplied out, then sifted
    b.sift_all(dlem)
    _centred_sums_vanish(b, M, dlem)
    main = b.chain("main", b.thm.lhs)
    b.through(main, x, y, ((t, 0, M.N - 1),))
    b.substitute(main, dlem)
    b.linear(main)
    b.sift_all(main)


def prove_norm(kind: str, candidates: dict | None = None) -> Setting:
    """Every theorem of batch norm or layer norm; candidates maps a theorem key to a formula to prove instead."""
    M = NormModel(kind)
    candidates = dict(candidates or {})
    proven: dict = {}
    for key in NORM_THEOREMS:
        formula = M.formula(key) if key not in candidates else sp.sympify(candidates[key])
        scope = Scope(dict(M.ranges), {}, None)
        thm = Theorem(key, kind, _TITLES[key], M.lhs(key), formula, scope)
        ranges: list = []
        for s in sorted(thm.lhs.free_symbols & set(M.ranges), key=str):
            ranges += ([", "] if ranges else []) + [Range(s, *M.ranges[s])]
        thm.assumptions.append(ranges)
        b = LayerBuilder(M, thm)
        try:
            if key == "x-paths=x":
                _x_paths_consolidated(b, M, proven)
            elif key == "x":
                _x(b, M)
            else:
                _adjoint(b, M, thm.lhs.args[0])
            b.formula(thm.main)
        except Stuck as exc:
            thm.stuck = str(exc)
        proven[key] = check_layer_theorem(thm, M)
    return Setting(kind, M, [proven[k] for k in NORM_THEOREMS])


# ---------------------------------------------------------------------------
# a witness: a concrete layer at small sizes, in exact rationals
# ---------------------------------------------------------------------------

def _draw(rng) -> Fraction:
    k = int(rng.integers(1, 17))
    return Fraction(k if rng.integers(2) else -k, 8)


def concrete(M: NormModel, N: int, U: int, rng) -> dict:
    """Every atom of a concrete layer: x, gamma, beta, dC/dy drawn; mu, var, s, xhat, y computed; every other
    dC/d(entry) computed by sympy.diff of C = Σ dC/dy · y with that entry cut loose (an oracle independent of
    the proof). eps is chosen so that var + eps is a square: s is rational, and every value exact."""
    Q = sp.Rational
    vals: dict = {}
    first = [Q(_draw(rng)) for t in range(N)]
    # every untouched index gets the first one's inputs turned, rotated and shifted: the same variance, so one
    # eps makes every var + eps a square (eps is one constant of the layer)
    xs = {(t, u): (-1) ** u * first[(t + u) % N] + u * Q(_draw(rng)) for t in range(N) for u in range(U)}
    gs = {(t, u): Q(_draw(rng)) for t in range(N) for u in range(U)}
    params = {p: Q(_draw(rng)) for p in range(N if not M.batch else U)}
    shifts = {p: Q(_draw(rng)) for p in range(N if not M.batch else U)}
    for u in range(U):
        X = [sp.Symbol(f"X{t}") for t in range(N)]  # the inputs of this untouched index, as symbols
        m, v, mv = sp.Symbol("m"), sp.Symbol("v"), sp.Symbol("mv")
        mean = sp.Add(*X) / N
        variance = sp.Add(*[(xi - mv) ** 2 for xi in X]) / N
        point = {X[t]: xs[t, u] for t in range(N)}
        mu_val = mean.subs(point)
        var_val = variance.subs({**point, mv: mu_val})
        if u == 0:
            eps = (var_val + 1) ** 2 - var_val  # > 0, and var + eps = (var + 1)^2
        inv = lambda w: (w + eps) ** sp.Rational(-1, 2)  # noqa: E731
        gam = lambda t: params[u] if M.batch else params[t]  # noqa: E731
        bet = lambda t: shifts[u] if M.batch else shifts[t]  # noqa: E731
        XH = [sp.Symbol(f"H{t}") for t in range(N)]

        def cost(xh):
            return sp.Add(*[gs[t, u] * (gam(t) * xh[t] + bet(t)) for t in range(N)])
        xh_of = [(X[t] - m) * inv(v) for t in range(N)]
        by_x = cost([h.subs({m: mean, v: variance.subs(mv, mean)}) for h in xh_of])
        at_mean = {**point, m: mu_val, v: var_val}
        vals[M.mu[u]] = mu_val
        vals[M.var[u]] = var_val
        vals[InvStd(M.var[u])] = 1 / (var_val + 1)
        for t in range(N):
            vals[M.at(M.x, t, u)] = xs[t, u]
            vals[M.at(M.xhat, t, u)] = (xs[t, u] - mu_val) / (var_val + 1)
            vals[CostPartial(M.at(M.y, t, u))] = gs[t, u]
            vals[CostPartial(M.at(M.xhat, t, u))] = sp.diff(cost(XH), XH[t]).subs(at_mean)
            vals[CostPartial(M.at(M.x, t, u))] = sp.diff(by_x, X[t]).subs(point)
        vals[CostPartial(M.var[u])] = sp.diff(cost(xh_of), v).subs(at_mean)
        vals[CostPartial(M.mu[u])] = sp.diff(cost([h.subs(v, variance.subs(mv, m)) for h in xh_of]), m).subs(at_mean)
    vals["eps"] = eps
    for p in params:
        vals[M.gamma[p]], vals[M.beta[p]] = params[p], shifts[p]
    for p in params:  # dC/dgamma, dC/dbeta: C is linear in them
        idx = [(t, u) for t in range(N) for u in range(U) if (u if M.batch else t) == p]
        vals[CostPartial(M.gamma[p])] = sp.Add(*[gs[t, u] * vals[M.at(M.xhat, t, u)] for t, u in idx])
        vals[CostPartial(M.beta[p])] = sp.Add(*[gs[t, u] for t, u in idx])
    return vals


def value(M: NormModel, expr, N: int, U: int, idx: dict, vals: dict):
    """expr at a concrete layer: sizes and indices substituted, sums written out, every atom its value."""
    e = expr.xreplace({M.N: N, M.U: U}).subs(idx).doit()  # subs: an index bound by a sum keeps its own values
    e = e.xreplace({k: v for k, v in vals.items() if isinstance(k, sp.Basic)})
    return sp.nsimplify(e) if e.free_symbols else e


def norm_witness(M: NormModel, lhs, rhs, tries: int = 3, seed: int = 0):
    """A concrete layer and index values where lhs (proven equal to the gradient) and rhs differ; None if none."""
    rng = np.random.default_rng(seed)
    free = sorted((lhs.free_symbols | rhs.free_symbols) & {M.t, M.u, M.k}, key=str)
    for N, U in itertools.product(WITNESS_SIZES, (2, 1)):
        for _ in range(tries):
            vals = concrete(M, N, U, rng)
            for point in itertools.product(*[range(N if s != M.u else U) for s in free]):
                idx = dict(zip(free, point))
                left, right = value(M, lhs, N, U, idx, vals), value(M, rhs, N, U, idx, vals)
                if not (left.is_Rational and right.is_Rational) or left == right:
                    continue
                shown = [(a, vals[a]) for a in sorted(vals, key=str) if isinstance(a, sp.Basic)
                         and not isinstance(a, (InvStd,)) and _shown(a, idx)]
                return Counterexample(tuple([(sp.Symbol("ε"), vals["eps"])] + shown), left, right, ((M.N, N), (M.U, U)),
                                      tuple(idx.items()))
    return None


def _shown(atom, idx) -> bool:
    """The values a witness lists: the drawn inputs and dC/dy (the rest follow from them)."""
    if isinstance(atom, CostPartial):
        return atom.args[0].base.name == "y"
    return isinstance(atom, sp.Indexed) and atom.base.name in ("x", "gamma", "beta")
