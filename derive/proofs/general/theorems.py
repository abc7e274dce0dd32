"""The derivations of BP1-BP4, built step by step (each step computed, then checked by its rule), and the API
that proves a theorem, a setting or the whole general proof."""

from __future__ import annotations

import time

import sympy as sp
from sympy import KroneckerDelta, Piecewise, Sum

from derive.errors import DeriveError
from derive.proofs.general.checks import check
from derive.proofs.general.functions import CostPartial, LocalPartial
from derive.proofs.general.model import INDEX, SETTINGS, THEOREMS, WIDTH, Model, unknown_theorem
from derive.proofs.general.norms import NORM_THEOREMS, NORMS, prove_norm
from derive.proofs.general.residual import RESIDUAL_THEOREMS, prove_residual
from derive.proofs.general.attention import ATTENTION_THEOREMS, prove_attention
from derive.proofs.general.conv import CONV_THEOREMS, CONVS, prove_conv
from derive.proofs.general.spatial import spatial_rule_checks
from derive.proofs.general.printing import Range, text
from derive.proofs.general.rules import (
    Stuck, chain_sum, clean, discharge, factor_sums, innermost_siftable, replace_fact, sift, sites,
)
from derive.proofs.general.steps import Builder, Chain, GeneralProof, RuleCheck, Scope, Setting, Theorem
from derive.verdict import Verdict


LAYERS = (*NORMS, "residual", *CONVS, "attention", "attention-causal")  # the layers beyond dense covered (15, 16)
SPATIAL = (*CONVS, "attention", "attention-causal")  # at symbolic channels, sizes, kernel, stride, padding, T


# ---------------------------------------------------------------------------
# the builder and the derivations
# ---------------------------------------------------------------------------

class _Builder(Builder):
    """The steps of BP1-BP4's chains."""

    def define(self, c: Chain, dummy=None) -> None:
        self._add(c, self.M.definition(c.head, dummy), "definition", dummy=dummy)

    def fact(self, c: Chain, fact: str, layer) -> None:
        self._add(c, replace_fact(self.M, c.final, fact, layer), fact, layer=layer)

    def chain_rule(self, c: Chain, x, base: str, layer, i, e=None, inside=False) -> None:
        self._add(c, chain_sum(self.M, x, base, layer, i, e, inside), "chain", x=x, base=base, layer=layer, i=i,
                  e=e, inside=inside)

    def diff(self, c: Chain, source: Chain, x) -> None:
        self._add(c, clean(sp.diff(source.final, x)), "diff", source=source, x=x)

    def sift(self, c: Chain) -> None:
        """The Kronecker sum, then the range guard it leaves dropped (two steps)."""
        s = innermost_siftable(c.final)
        if s is None:
            raise Stuck("no sum with a Kronecker delta in its index")
        self._add(c, c.final.xreplace({s: sift(s)}), "kronecker", sum=s)
        self.guard(c)

    def guard(self, c: Chain) -> None:
        site = next(sites(c.final, self.thm.scope.ranges, lambda n: isinstance(n, Piecewise)), None)
        if site is None:
            raise Stuck("no guard to discharge")
        pw, ranges = site
        found = discharge(pw, ranges)
        if found is None:
            raise Stuck(f"SymPy cannot decide the guard of {text(pw)}")
        self._add(c, c.final.xreplace({pw: found[0]}), "range", piecewise=pw)

    def substitute(self, c: Chain, lemma: Chain) -> None:
        self._add(c, c.final.xreplace({lemma.head: lemma.final}), "lemma", lemma=lemma)

    def linear(self, c: Chain) -> None:
        new = factor_sums(c.final)
        if new != c.final:
            self._add(c, new, "linear")

    def formula(self, c: Chain) -> None:
        if c.final != self.thm.formula:
            self._add(c, self.thm.formula, "formula")


def _scope(model: Model, ranges: dict, layers: str) -> Scope:
    """The scope of a theorem: at the output layer L ("L"), below it ("l<L", BP2's induction) or anywhere ("l<=L")."""
    l, L = model.l, model.L
    s = sp.Symbol("s", **INDEX)
    if layers == "L":
        return Scope(ranges, {}, None)
    if layers == "l<L":
        return Scope(ranges, {L: l + 1 + s}, Range(l, sp.S.One, L - 1), hypothesis_layer=l + 1)
    return Scope(ranges, {L: l + s}, Range(l, sp.S.One, L))


_TITLES = {
    "BP1": "BP1 (base case): the output error",
    "BP2": "BP2 (inductive step): the error one layer down",
    "BP3": "BP3: the gradient of a bias",
    "BP4": "BP4: the gradient of a weight",
}


def prove_theorem(model: Model, key: str, candidate: sp.Expr | None = None) -> Theorem:
    """Derive and check one of BP1..BP4 in the model's setting; candidate replaces the textbook formula."""
    M = model
    formula = M.formula(key) if candidate is None else sp.sympify(candidate)
    l, L, j, k, m, q, e, e2 = M.l, M.L, M.j, M.k, M.m, M.q, M.e, M.e2
    ex = {e: (0, M.B - 1), e2: (0, M.B - 1)} if M.batch else {}
    if key == "BP1":
        lhs, x = M.D(L, j, e), M.Z(L, j, e)
        scope = _scope(M, {j: (0, M.last(L)), m: (0, M.last(L)), **ex}, "L")
    elif key == "BP2":
        lhs, x = M.D(l, j, e), M.Z(l, j, e)
        scope = _scope(M, {j: (0, M.last(l)), k: (0, M.last(l + 1)), **ex}, "l<L")
    elif key == "BP3":
        x = M.bias(l, j)
        lhs = CostPartial(x)
        scope = _scope(M, {j: (0, M.last(l)), m: (0, M.last(l)), q: (0, M.last(l - 1)), **ex}, "l<=L")
    elif key == "BP4":
        x = M.weight(l, j, k)
        lhs = CostPartial(x)
        scope = _scope(M, {j: (0, M.last(l)), k: (0, M.last(l - 1)), m: (0, M.last(l)), q: (0, M.last(l - 1)),
                           **ex}, "l<=L")
    else:
        raise unknown_theorem(key)
    thm = Theorem(key, M.setting, _TITLES[key], lhs, formula, scope)
    free = [s for s in (j, k, e) if s in lhs.free_symbols or s in x.free_symbols]
    thm.assumptions.append(["the output layer ", L] if scope.layer_range is None else [scope.layer_range])
    for s in free:
        thm.assumptions.append([Range(s, *scope.ranges[s])])
    if key == "BP2":
        thm.assumptions.append(["induction hypothesis: ", sp.Eq(M.D(l + 1, k, e2 if M.batch else None),
                                                                 CostPartial(M.Z(l + 1, k, e2 if M.batch else None)),
                                                                 evaluate=False),
                                " for every ", Range(k, *scope.ranges[k])]
                               + ([" and every ", Range(e2, *scope.ranges[e2])] if M.batch else []))
    b = _Builder(M, thm)
    try:
        _DERIVATIONS[key](b, M, x)
        b.formula(thm.main)
    except Stuck as exc:
        thm.stuck = str(exc)
    return check_theorem(thm, M)


def check_theorem(thm: Theorem, model: Model) -> Theorem:
    """Check every step of a theorem on its own statement (again), in order; returns the theorem."""
    for c in thm.chains:
        for st in c.steps:
            st.counterexample = None
            check(st, thm, model)
    return thm


def _bp1(b: _Builder, M: Model, x) -> None:
    L, m, e2 = M.L, M.m, (M.e2 if M.batch else None)
    u = M.A(L, m, e2)
    lem = b.chain("lemma", u)
    b.define(lem)
    dlem = b.chain("lemma", LocalPartial(u, x))
    b.diff(dlem, lem, x)
    main = b.chain("main", b.thm.lhs)
    b.define(main)
    b.chain_rule(main, x, "a", L, m, e2, inside=True)
    b.substitute(main, dlem)
    for _ in range(2 if M.batch else 1):  # the neuron sum, then the example sum
        b.sift(main)


def _bp2(b: _Builder, M: Model, x) -> None:
    l, k, m, e2 = M.l, M.k, M.m, (M.e2 if M.batch else None)
    u = M.Z(l + 1, k, e2)
    lem = b.chain("lemma", u)
    b.define(lem, m)
    b.fact(lem, "def-a", l)
    dlem = b.chain("lemma", LocalPartial(u, x))
    b.diff(dlem, lem, x)
    b.sift(dlem)
    main = b.chain("main", b.thm.lhs)
    b.define(main)
    b.chain_rule(main, x, "z", l + 1, k, e2, inside=True)
    b.fact(main, "hypothesis", l + 1)
    b.substitute(main, dlem)
    if M.batch:  # the example sum: only e' = e is left
        b.sift(main)
    b.linear(main)


def _bp34(b: _Builder, M: Model, x) -> None:
    l, m, q, e = M.l, M.m, M.q, (M.e if M.batch else None)
    u = M.Z(l, m, e)
    lem = b.chain("lemma", u)
    b.define(lem, q)
    dlem = b.chain("lemma", LocalPartial(u, x))
    b.diff(dlem, lem, x)
    if innermost_siftable(dlem.final) is not None:  # a weight: the input's sum
        b.sift(dlem)
    main = b.chain("main", b.thm.lhs)
    b.chain_rule(main, x, "z", l, m, e)
    b.fact(main, "def-delta", l)
    b.substitute(main, dlem)
    b.sift(main)


_DERIVATIONS = {"BP1": _bp1, "BP2": _bp2, "BP3": _bp34, "BP4": _bp34}


# ---------------------------------------------------------------------------
# the rules themselves, checked on small instances
# ---------------------------------------------------------------------------

def _held(good: bool) -> Verdict:
    """A rule check's verdict: it held at every size tried, or it did not."""
    return Verdict.PROVEN if good else Verdict.REFUTED


def _rule_checks() -> list[RuleCheck]:
    """The explicit rules SymPy can check at fixed sizes, written out at those sizes."""
    t, F = sp.Symbol("t"), sp.Function("F")
    good = True
    for n in (1, 2, 3):
        us = [sp.Function(f"u{i}")(t) for i in range(n)]
        xs = sp.symbols(f"x0:{n}")
        lhs = sp.diff(F(*us), t)
        rhs = sp.Add(*[sp.Subs(sp.Derivative(F(*xs), xs[i]), xs, us) * sp.diff(us[i], t) for i in range(n)])
        good &= (lhs - rhs).doit() == 0
    chain = RuleCheck("chain rule", "d/dt F(u_0(t), ..., u_(n-1)(t)) = Σ_i ∂F/∂u_i · u_i'(t) by sympy.diff, "
                      "for n = 1, 2, 3",
                      r"$\frac{d}{dt} F(u_0(t), \dots, u_{n-1}(t)) = \sum_i \frac{\partial F}{\partial u_i}\, "
                      r"u_i'(t)$ by sympy.diff, for $n = 1, 2, 3$", _held(good))
    f, j, m = sp.Function("f"), sp.Symbol("j", **INDEX), sp.Symbol("m", **INDEX)
    n = sp.Symbol("n", **WIDTH)
    symbolic = sift(Sum(f(m) * KroneckerDelta(j, m), (m, 0, n - 1)))
    good = True
    for nc in range(1, 5):
        for jc in range(0, nc + 1):
            written = sp.Add(*[f(i) * KroneckerDelta(jc, i) for i in range(nc)])
            good &= symbolic.subs({n: nc, j: jc}) == written == (f(jc) if jc < nc else 0)
    kron = RuleCheck("Kronecker sum", "SymPy's Σ_(m=0..n-1) f(m) δ_(j,m) for symbolic n against the written-out "
                     "sum, n = 1..4, j = 0..n",
                     r"SymPy's $\sum_{m=0}^{n-1} f(m)\,\delta_{j,m}$ for symbolic $n$ against the written-out sum, "
                     r"$n = 1, \dots, 4$, $j = 0, \dots, n$", _held(good))
    return [chain, kron]


# ---------------------------------------------------------------------------
# the API
# ---------------------------------------------------------------------------

def prove_setting(setting: str, candidates: dict | None = None) -> Setting:
    """BP1..BP4 in one setting; candidates maps "BP2" (etc.) to a formula to prove instead of the textbook one."""
    model = Model(setting)
    candidates = dict(candidates or {})
    unknown = sorted(set(candidates) - set(THEOREMS))
    if unknown:
        raise unknown_theorem(unknown[0])
    for key, value in candidates.items():
        if not isinstance(value, sp.Expr):
            raise DeriveError(f"the candidate for {key} must be a SymPy expression, not {type(value).__name__}")
    return Setting(setting, model, [prove_theorem(model, key, candidates.get(key)) for key in THEOREMS])


def prove_layer(key: str, candidates: dict | None = None) -> Setting:
    """The theorems of one layer beyond dense (LAYERS); candidates maps a theorem key to a formula to prove instead."""
    if key not in LAYERS:
        raise DeriveError(f"unknown layer {key!r}; the layers are {', '.join(LAYERS)}")
    candidates = dict(candidates or {})
    known = {"residual": RESIDUAL_THEOREMS, "attention": ATTENTION_THEOREMS, "attention-causal": ATTENTION_THEOREMS,
             **{c: CONV_THEOREMS for c in CONVS}}.get(key, NORM_THEOREMS)
    for name, value in candidates.items():
        if name not in known:
            raise DeriveError(f"unknown theorem {name!r} of {key}; its theorems are {', '.join(known)}")
        if not isinstance(value, sp.Expr):
            raise DeriveError(f"the candidate for {key} {name} must be a SymPy expression, not {type(value).__name__}")
    if key in CONVS:
        return prove_conv(key, candidates)
    if key in ("attention", "attention-causal"):
        return prove_attention(candidates, causal=key == "attention-causal")
    return prove_residual(candidates) if key == "residual" else prove_norm(key, candidates)


def prove_general(settings=SETTINGS, candidates: dict | None = None, layers=()) -> GeneralProof:
    """The whole general proof: BP1-BP4 in every setting, and the layers beyond dense named in layers (LAYERS: all);
    candidates maps a setting or a layer to {theorem: formula}."""
    t0 = time.perf_counter()
    settings, layers = tuple(settings), tuple(layers)
    for s in settings:
        Model(s)  # an unknown setting is a one-line error
    for key in layers:
        if key not in LAYERS:
            raise DeriveError(f"unknown layer {key!r}; the layers are {', '.join(LAYERS)}")
    candidates = candidates or {}
    for s in candidates:
        if s not in settings + layers:
            raise DeriveError(f"candidates for {s!r}, which is not among the settings and layers proven "
                              f"({', '.join(settings + layers)})")
    checks = (_rule_checks() + (_layer_rule_checks() if set(layers) - set(SPATIAL) else [])
              + (spatial_rule_checks() if set(layers) & set(SPATIAL) else []))
    proof = GeneralProof([prove_setting(s, candidates.get(s)) for s in settings], checks,
                         layers=[prove_layer(key, candidates.get(key)) for key in layers])
    proof.seconds = time.perf_counter() - t0
    return proof


def _layer_rule_checks() -> list[RuleCheck]:
    """The inverse standard deviation's defining relation, by SymPy on its square root (once, symbolically)."""
    v, eps = sp.Symbol("v", real=True), sp.Symbol("epsilon", positive=True)
    s = (v + eps) ** sp.Rational(-1, 2)
    good = sp.simplify(sp.diff(s, v) - (-s ** 3 / 2)) == 0
    return [RuleCheck("inverse standard deviation", "s = (σ² + ε)^(-1/2) has ds/dσ² = -s³/2: SymPy differentiates "
                      "the square root once, symbolically; the proofs use the relation, never the root",
                      r"$s = (\sigma^2 + \varepsilon)^{-1/2}$ has $ds/d\sigma^2 = -s^3/2$: SymPy differentiates "
                      r"the square root once, symbolically; the proofs use the relation, never the root", _held(good))]


_NO_GENERAL = {"avgpool2d": "pooling", "maxpool2d": "pooling", "flatten": "a reshape, its gradient the identity",
               "rnn": "a recurrence over T steps"}


def spec_targets(spec) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """What the general proof covers of a layer-list spec: (settings, layers, notes on what it does not).

    Dense and activation layers are BP1-BP4 in the spec's convention (with a batch when it has one); batch norm,
    layer norm, residual blocks, convolutions and attention (causal or not) are their own theorems, at symbolic
    sizes, so every stride, padding and size the spec gives is covered. The kinds in _NO_GENERAL are not."""
    blocks = getattr(spec, "blocks", None)
    if blocks is None:
        raise DeriveError(f"{spec.source} is a dense network, not a layer list: its general proof is "
                          f"python -m derive general --setting {spec.convention}")
    settings, layers, notes, missing = [], [], [], {}
    for b in blocks:
        if b.kind in ("dense", "activation"):
            settings.append(spec.convention + ("-batch" if spec.examples > 1 else ""))
        elif b.kind == "attention":
            layers.append("attention-causal" if b.causal else "attention")
        elif b.kind in LAYERS:
            layers.append(b.kind)
        else:
            missing.setdefault(b.kind, []).append(str(b.position))
    for kind, where in missing.items():
        why = _NO_GENERAL.get(kind, "no general proof")
        notes.append(f"layer{'s' if len(where) > 1 else ''} {', '.join(where)} ({kind}: {why}) not covered here; "
                     f"python -m derive prove proves {'them' if len(where) > 1 else 'it'} at the spec's sizes")
    if not settings and not layers:
        raise DeriveError(f"{spec.source}: no layer of a kind the general proof covers (it covers dense, "
                          f"activation, {', '.join(LAYERS)}); python -m derive prove proves the spec at its sizes")
    return tuple(dict.fromkeys(settings)), tuple(dict.fromkeys(layers)), notes
