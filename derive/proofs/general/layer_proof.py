"""The derivations of the layers beyond dense (norms, residual blocks): each step built by its rule's operation on
the layer's scalar graph (entries.py), then checked by that rule on its own statement.

The rules shared with BP1-BP4 (the Kronecker sum, the index range, linearity of Σ) are checked by the same code;
the rest are the graph's: the chain rule read off the readers of an entry (reverse accumulation, each local
partial a sympy.diff of one definition), the chain rule through the layer's outputs (each du/dx a sympy.diff of
u written out in x), a definition written out or a statistic's sum named, a sum of a constant, a proven value
used at an instance of its index, and the formula, compared exactly or refuted by a concrete witness.
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import Sum
from sympy.simplify.simplify import factor_sum

from derive.proofs.general import checks
from derive.proofs.general.entries import Graph, TotalPartial
from derive.proofs.general.functions import CostPartial, LocalPartial
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck, clean, discharge, equal_by_linearity, innermost_siftable, sift, sites
from derive.proofs.general.steps import Builder, Chain, Theorem, check_by_rules
from derive.verdict import Verdict


# ---------------------------------------------------------------------------
# the rules' operations (used to build a step, and again to check it)
# ---------------------------------------------------------------------------

def unfold(graph: Graph, expr, base, scope) -> sp.Expr:
    """Every entry of `base` in expr replaced by its definition."""
    return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base == base, lambda e: graph.definition(e, scope))


def alpha(s: Sum) -> tuple:
    """A one-index sum up to the name of its index: (summand at a fixed dummy, lo, hi)."""
    (var, lo, hi), = s.limits
    return s.function.xreplace({var: _ALPHA}), lo, hi


_ALPHA = sp.Dummy("alpha", integer=True, nonnegative=True)


def fold(graph: Graph, expr, base) -> sp.Expr:
    """Each sum that is N times a statistic's definition (mu = (1/N) Σ_d x_d) replaced by N times its name."""
    d = graph.defined(base)
    total, head = _statistic(d)
    if total is None:
        raise Stuck(f"{base} is not a mean of a sum")
    want, count = total
    pattern = list(d.pattern)

    def named(s):
        if not (isinstance(s, Sum) and len(s.limits) == 1):
            return None
        f, lo, hi = alpha(s)
        wf, wlo, whi = alpha(want)
        if (lo, hi) != (wlo, whi):
            return None
        for guess in _instances(wf, f, pattern):
            if wf.xreplace(guess) == f:
                return count * head.xreplace(guess)
        return None

    return expr.replace(lambda s: named(s) is not None, lambda s: named(s))


def _statistic(d):
    """((the sum, N), head) when d defines its head as (1/N) times one sum; (None, None) otherwise."""
    if d is None:
        return None, None
    sums = [f for f in sp.Mul.make_args(d.rhs) if isinstance(f, Sum)]
    if len(sums) != 1:
        return None, None
    count = 1 / (d.rhs / sums[0])
    if count == 0 or count.free_symbols & set(d.pattern):
        return None, None
    return (sums[0], count), d.head


def _instances(pattern_expr, expr, pattern):
    """Bindings of the pattern symbols that could make pattern_expr equal expr (read off the entries)."""
    want = sorted(pattern_expr.atoms(sp.Indexed), key=str)
    have = sorted(expr.atoms(sp.Indexed), key=str)
    out = [{}]
    for w in want:
        nxt = []
        for b in out:
            for h in have:
                if h.base != w.base or len(h.indices) != len(w.indices):
                    continue
                cand, ok = dict(b), True
                for a, t in zip(w.indices, h.indices):
                    if a in pattern:
                        if cand.setdefault(a, t) != t:
                            ok = False
                    elif a != t:
                        ok = False
                if ok:
                    nxt.append(cand)
        out = nxt or out
    return out


def constant_sums(expr) -> sp.Expr:
    """Every sum whose summand is free of its index, computed by SymPy (N terms of the same value)."""
    return expr.replace(lambda s: isinstance(s, Sum) and all(v not in s.function.free_symbols for v, *_ in s.limits),
                        lambda s: s.doit())


def linear(expr) -> sp.Expr:
    """Linearity of Σ, applied as a person would: a summand that is a sum of terms is split into one sum per term,
    a factor that holds a Kronecker delta is multiplied out (so the delta can be sifted), and every factor free
    of the summation index is pulled out. Other factors, like (x_c - mu), stay whole."""
    def split(s: Sum) -> sp.Expr:
        f = s.function
        if isinstance(f, sp.Add):
            terms = f.args
        else:
            factors = sp.Mul.make_args(f)
            open_ = [a for a in factors if isinstance(a, sp.Add) and a.has(sp.KroneckerDelta)]
            kept = sp.Mul(*[a for a in factors if not any(a is o for o in open_)])
            # each open factor's terms, multiplied out one level only: the terms keep their own products whole
            terms = [kept * sp.Mul(*combo) for combo in itertools.product(*[o.args for o in open_])] if open_ else (f,)
        return sp.Add(*[factor_sum(Sum(t, *s.limits)) for t in terms])
    for _ in range(8):  # a split can leave a sum with a factor to open in turn: until nothing changes
        new = expr.replace(lambda e: isinstance(e, Sum), split)
        if new == expr:
            break
        expr = new
    return expr


def instance_of(head, value, node, free: list):
    """value at the instance node of head (head's free indices bound by node); None if node is no instance."""
    if node.func != head.func or len(node.args) != len(head.args):
        return None
    binding: dict = {}
    for h, n in zip(sp.preorder_traversal(head), sp.preorder_traversal(node)):
        if h in free:
            if binding.setdefault(h, n) != n:
                return None
        elif not isinstance(h, sp.Indexed) and h.func != n.func:
            return None
    if head.xreplace(binding) != node:
        return None
    bound = {v for s in value.atoms(Sum) for v, *_ in s.limits}
    if bound & (set(binding) | set().union(*(n.free_symbols for n in binding.values()))):
        return None  # a summation index of the value is the lemma's index or would capture the instance's
    return value.xreplace(binding), binding


def substitute(expr, lemma: Chain, free: list) -> sp.Expr:
    """Every instance of the lemma's head in expr replaced by the lemma's value there."""
    return expr.replace(lambda n: instance_of(lemma.head, lemma.final, n, free) is not None,
                        lambda n: instance_of(lemma.head, lemma.final, n, free)[0])


def rename(expr, base, name, prefix) -> sp.Expr:
    """Every dC/du for an entry u of base whose indices start with prefix (all of them if None) replaced by its
    name: name[u's indices]."""
    def hit(x):
        return (isinstance(x, CostPartial) and isinstance(x.args[0], sp.Indexed) and x.args[0].base == base
                and (prefix is None or tuple(x.args[0].indices[:len(prefix)]) == tuple(prefix)))
    return expr.replace(hit, lambda x: name[x.args[0].indices])


# ---------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------

class LayerBuilder(Builder):
    """The steps of the layer theorems' chains (batch norm, layer norm, residual blocks)."""

    def define(self, c: Chain) -> None:
        self._add(c, self.M.definition(c.head, self.thm.scope), "definition")

    def unfold(self, c: Chain, base) -> None:
        self._add(c, unfold(self.M.graph, c.final, base, self.thm.scope), "unfold", base=base)

    def fold(self, c: Chain, base) -> None:
        new = fold(self.M.graph, c.final, base)
        if new != c.final:
            self._add(c, new, "fold", base=base)

    def graph_rule(self, c: Chain, x) -> None:
        readers = self.M.graph.readers(x, self.thm.scope)
        if readers is None:
            raise Stuck(f"who reads {x} is not decided")
        self._add(c, sp.Add(*[r.term(x) for r in readers]), "graph", x=x)

    def through(self, c: Chain, x, family: sp.Indexed, limits: tuple) -> None:
        body = CostPartial(family) * TotalPartial(family, x)
        self._add(c, Sum(body, *limits) if limits else body, "through", x=x, family=family, limits=limits)

    def diff(self, c: Chain, source: Chain, x) -> None:
        self._add(c, clean(sp.diff(source.final, x)), "diff", source=source, x=x)

    def local(self, u, x) -> Chain:
        """The lemmas u = its definition and ∂u/∂x = sympy.diff of it, Kronecker sums sifted: the last chain."""
        lem = self.chain("lemma", u)
        self.define(lem)
        dlem = self.chain("lemma", LocalPartial(u, x))
        self.diff(dlem, lem, x)
        self.sift_all(dlem)
        return dlem

    def sift_all(self, c: Chain) -> None:
        while innermost_siftable(c.final) is not None:
            self.sift(c)

    def sift(self, c: Chain) -> None:
        """The Kronecker sum, then the range guard it leaves dropped (two steps)."""
        s = innermost_siftable(c.final)
        if s is None:
            raise Stuck("no sum with a Kronecker delta in its index")
        self._add(c, c.final.xreplace({s: sift(s)}), "kronecker", sum=s)
        site = next(sites(c.final, self.thm.scope.ranges, lambda n: isinstance(n, sp.Piecewise)), None)
        if site is None:
            raise Stuck("no guard to discharge")
        pw, ranges = site
        found = discharge(pw, ranges)
        if found is None:
            raise Stuck("SymPy cannot decide a range guard")
        self._add(c, c.final.xreplace({pw: found[0]}), "range", piecewise=pw)

    def linear(self, c: Chain) -> None:
        new = linear(c.final)
        if new != c.final:
            self._add(c, new, "linear")

    def constant(self, c: Chain) -> None:
        new = constant_sums(c.final)
        if new != c.final:
            self._add(c, new, "constant")

    def substitute(self, c: Chain, lemma: Chain, free: tuple = ()) -> None:
        self._add(c, substitute(c.final, lemma, list(free)), "lemma", lemma=lemma, free=tuple(free))

    def rename(self, c: Chain, rule: str, base, name, prefix=None) -> None:
        self._add(c, rename(c.final, base, name, prefix), rule, base=base, name=name, prefix=prefix)

    def formula(self, c: Chain) -> None:
        if c.final != self.thm.formula:
            self._add(c, self.thm.formula, "formula")


# ---------------------------------------------------------------------------
# the checks: each rule on its own statement
# ---------------------------------------------------------------------------

def check_layer_theorem(thm: Theorem, model) -> Theorem:
    """Check every step of a layer theorem, in order; returns the theorem."""
    return check_by_rules(thm, model, _CHECKS)


def _check_definition(step, thm, model):
    try:
        if step.rhs == model.definition(step.lhs, thm.scope):
            return Verdict.GIVEN, ["the definition of ", step.lhs]
    except KeyError:
        pass
    return Verdict.UNPROVEN, ["not the definition of ", step.lhs]


def _check_unfold(step, thm, model):
    base = step.data["base"]
    if step.rhs != step.lhs and step.rhs == unfold(model.graph, step.lhs, base, thm.scope):
        return Verdict.PROVEN, [f"every {base} entry written by its definition"]
    return Verdict.UNPROVEN, ["the step is not that replacement"]


def _check_fold(step, thm, model):
    base = step.data["base"]
    try:
        ok = step.rhs != step.lhs and step.rhs == fold(model.graph, step.lhs, base)
    except Stuck:
        ok = False
    if ok:
        (total, count), head = _statistic(model.graph.defined(base))
        return Verdict.PROVEN, ["by definition ", sp.Eq(total, count * head, evaluate=False)]
    return Verdict.UNPROVEN, ["the step is not that replacement"]


def _check_graph(step, thm, model):
    x = step.data["x"]
    readers = model.graph.readers(x, thm.scope)
    if step.lhs != CostPartial(x) or readers is None or step.rhs != sp.Add(*[r.term(x) for r in readers]):
        return Verdict.UNPROVEN, ["the step is not the chain rule over what reads ", x]
    parts: list = ["what reads ", x, " in the definitions: "]
    for r in readers:
        parts += [r.head] + ([" for every ", Range(*r.limits[0])] if r.limits else []) + ["; "]
    return Verdict.PROVEN, parts[:-1]


def _check_through(step, thm, model):
    d = step.data
    x, family, limits = d["x"], d["family"], d["limits"]
    body = CostPartial(family) * TotalPartial(family, x)
    if step.lhs != CostPartial(x) or step.rhs != (Sum(body, *limits) if limits else body):
        return Verdict.UNPROVEN, ["the step is not the chain rule through ", family]
    if family.base != model.graph.outputs:
        return Verdict.UNPROVEN, [family, " is not what C reads"]
    reached = model.graph.reachable(x, thm.scope)
    summed = {v for v, *_ in limits}
    out = model.graph.defined(family.base)
    for v, lo, hi in limits:
        if v not in family.indices:
            return Verdict.UNPROVEN, ["a summation index the outputs do not carry"]
        slot = out.head.indices[list(family.indices).index(v)]  # the outputs' own index at that place
        if out.ranges.get(slot) != (lo, hi):
            return Verdict.UNPROVEN, ["the sum does not run over every output: ", Range(v, lo, hi)]
    for r in reached or [None]:
        if r is None or len(r.indices) != len(family.indices) or any(
                f not in summed and f != t for f, t in zip(family.indices, r.indices)):
            return Verdict.UNPROVEN, ["premise not shown: C may depend on ", x, " other than through ", family]
    return Verdict.PROVEN, ["C reads the outputs only, and every output that depends on ", x, " is ", family,
                            " for some ", *[Range(*lim) for lim in limits]]


def _check_diff(step, thm, model):
    src, x = step.data["source"], step.data["x"]
    if not src.ok:
        return Verdict.UNPROVEN, ["the expression differentiated is not established"]
    if isinstance(step.lhs, TotalPartial):
        defined = [e for e in src.final.atoms(sp.Indexed) if model.graph.defined(e.base) is not None]
        if step.lhs != TotalPartial(src.head, x) or defined:
            return Verdict.UNPROVEN, ["not a function of the inputs alone: ", *defined[:1]]
    elif step.lhs != LocalPartial(src.head, x) or src.final != model.definition(src.head, thm.scope):
        return Verdict.UNPROVEN, ["a local partial differentiates the definition itself"]
    captured = {v for s in src.final.atoms(Sum) for v, *_ in s.limits} & x.free_symbols
    if captured:  # Σ_q w[q] differentiated by w[q] would read the bound q as x's own index
        return Verdict.UNPROVEN, ["a summation index of the expression is also an index of ", x]
    if step.rhs == clean(sp.diff(src.final, x)):
        return Verdict.PROVEN, ["sympy.diff of ", src.final, " with respect to ", x]
    return Verdict.UNPROVEN, ["sympy.diff gives something else"]


def _check_constant(step, thm, model):
    if step.rhs != step.lhs and step.rhs == constant_sums(step.lhs):
        return Verdict.PROVEN, ["SymPy: a sum of a term free of its index is the number of terms times the term"]
    return Verdict.UNPROVEN, ["SymPy's sum gives something else"]


def _check_lemma(step, thm, model):
    lemma, free = step.data["lemma"], list(step.data["free"])
    if not lemma.ok or lemma.head == lemma.final:
        return Verdict.UNPROVEN, ["the substituted value is not established"]
    if step.rhs != substitute(step.lhs, lemma, free) or step.rhs == step.lhs:
        return Verdict.UNPROVEN, ["the step is not that substitution"]
    owner = thm.scope.ranges  # a theorem's lemma, or another theorem of the same layer: the same index ranges
    want = lambda n: instance_of(lemma.head, lemma.final, n, free) is not None  # noqa: E731
    for node, ranges in sites(step.lhs, thm.scope.ranges, want):
        _, binding = instance_of(lemma.head, lemma.final, node, free)
        for s in free:
            at = binding[s]
            if ranges.get(at, thm.scope.ranges.get(at)) != owner.get(s):
                return Verdict.UNPROVEN, ["the value holds for ", Range(s, *owner[s]), " but is used at ", at]
        for s in lemma.head.free_symbols - set(free):
            if s in owner and ranges.get(s) != owner[s]:
                return Verdict.UNPROVEN, ["the value holds for ", Range(s, *owner[s]), " only"]
    return Verdict.PROVEN, [lemma.head, " = ", lemma.final, " (proven above)"]


def _check_rename(step, thm, model):
    d = step.data
    if step.rule == "res-hypothesis":
        allowed = getattr(model, "hypotheses", lambda key: [])(thm.key)
        if (d["base"], d["name"], d["prefix"]) not in allowed:
            return Verdict.UNPROVEN, ["no induction hypothesis for ∂C/∂", d["base"], " at ", sp.Tuple(*d["prefix"])]
    elif not model.names_ok(d["base"], d["name"]):
        return Verdict.UNPROVEN, [d["name"], " is not the name of ∂C/∂", d["base"]]
    if step.rhs != step.lhs and step.rhs == rename(step.lhs, d["base"], d["name"], d["prefix"]):
        return Verdict.PROVEN, [f"every ∂C/∂{d['base']} replaced by its name {d['name']}"]
    return Verdict.UNPROVEN, ["the step is not that replacement"]


def _check_formula(step, thm, model):
    bad = [f for f in denominators(step.rhs) if f.is_positive is not True]
    if bad:
        return Verdict.UNPROVEN, ["a denominator of the formula is not shown nonzero: ", bad[0]]
    if equal_by_linearity(model.canonical(step.lhs), model.canonical(step.rhs)):
        return Verdict.PROVEN, ["the derived expression equals the formula (linearity of Σ and polynomial identity"
                                ", each quantity written by the inputs it is defined from)"]
    ce = model.witness(thm, step.lhs, step.rhs)
    step.counterexample = ce
    if ce is not None:
        return Verdict.REFUTED, ce.parts()
    return Verdict.UNPROVEN, ["not shown equal, and no concrete point found where the sides differ"]


def denominators(expr) -> list:
    """The bases of the negative powers in expr, as written (B, n, 2: each must be positive)."""
    return sorted({p.base for p in expr.atoms(sp.Pow) if p.exp.is_negative and not p.base.is_Number}, key=str)


_CHECKS = {
    "definition": _check_definition,
    "unfold": _check_unfold,
    "fold": _check_fold,
    "graph": _check_graph,
    "through": _check_through,
    "diff": _check_diff,
    "kronecker": checks.check_rule,
    "range": checks.check_rule,
    "linear": checks.check_rule,
    "constant": _check_constant,
    "lemma": _check_lemma,
    "def-delta": _check_rename,
    "res-hypothesis": _check_rename,
    "formula": _check_formula,
}
