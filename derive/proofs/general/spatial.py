"""The spatial layers (convolution, attention) at symbolic sizes: the shared rules, their operations and checks.

A spatial model is a handful of definitions written once for pattern entries (z[b,o,i,j] = Σ W x_pad + β[o],
P[t,u] = exp(S[t,u]) / Σ_v exp(S[t,v]), ...), every size a positive integer symbol. A theorem is derived by
the chain rule over the entries whose definitions read x (every entry of each such family, summed: an entry
that does not read x contributes ∂u/∂x = 0, so the sum is exact), each local partial ∂u/∂x a sympy.diff of u's
definition, then SymPy's Kronecker sums. Two things are new against the norms' rules:

- A Kronecker sum is taken only over an index whose coefficient in the delta is ±1. SymPy's delta summation
  over a strided index is wrong: Σ_{i=0}^{n-1} f(i) δ(2i, j) comes back as f(j/2) for j ≤ 2n − 2, odd j
  included (where the sum is 0). So a convolution's input gradient is sifted over the kernel index, never
  over the output position, and a stride stays a symbol.
- The guard a sift leaves that SymPy cannot decide (0 ≤ u − s·i ≤ k − 1: which output positions see input u)
  is kept as an Iverson bracket [c] (1 where c holds, else 0), each inequality written e ≥ 0 with e expanded,
  so two brackets of the same condition are the same expression.

The formula step compares the derived expression with the textbook form once each side is written one way
(the formula's helper arrays, like δ dilated and padded, written by their Kronecker-sum definitions; every
unit-coefficient delta sifted; nested sums flattened into one sum with its indices in name order); a formula
that differs is refuted by a concrete layer (a few sizes, exact values) where the two sides differ.
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import KroneckerDelta, Piecewise, Sum

from derive.proofs.general.entries import Definition
from derive.proofs.general.functions import CostPartial, LocalPartial
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck, decide, equal_by_linearity, sites
from derive.proofs.general.steps import Builder, Chain, Theorem, check_by_rules
from derive.proofs.identity import Counterexample
from derive.verdict import Verdict


class Bracket(sp.Function):
    """[c]: 1 where the condition c holds, 0 where it does not (an Iverson bracket)."""

    nargs = 1

    @classmethod
    def eval(cls, cond):
        if cond is sp.true:
            return sp.S.One
        if cond is sp.false:
            return sp.S.Zero
        return None

    def _general_text(self, printer):
        return f"[{printer._print(self.args[0])}]"

    def _general_latex(self, printer, exp=None):
        out = rf"\left[{printer._print(self.args[0])}\right]"
        return out if exp is None else f"{out}^{{{exp}}}"


# ---------------------------------------------------------------------------
# the operations (used to build a step, and again to check it)
# ---------------------------------------------------------------------------

def definition_of(definitions: list[Definition], head) -> sp.Expr:
    """The defining expression of one entry; KeyError when no definition gives it, or its indices would be
    captured by the definition's own summation indices."""
    for d in definitions:
        if d.head.base != head.base or len(d.head.indices) != len(head.indices):
            continue
        binding = dict(zip(d.head.indices, head.indices))
        bound = {v for s in d.rhs.atoms(Sum) for v, *_ in s.limits}
        if any(x.free_symbols & bound for x in binding.values()):
            raise KeyError(head)
        return d.rhs.xreplace(binding)
    raise KeyError(head)


def readers(definitions: list[Definition], base) -> list[Definition]:
    """The definitions whose right-hand side reads an entry of base, in order."""
    return [d for d in definitions if any(e.base == base for e in d.rhs.atoms(sp.Indexed))]


def family_sum(d: Definition, x) -> sp.Expr:
    """Σ over every entry u of d's family of ∂C/∂u · ∂u/∂x (the family's indices over their ranges)."""
    body = CostPartial(d.head) * LocalPartial(d.head, x)
    limits = [(i, *d.ranges[i]) for i in d.head.indices]
    return Sum(body, *limits) if limits else body


def graph_sum(definitions: list[Definition], x) -> sp.Expr:
    return sp.Add(*[family_sum(d, x) for d in readers(definitions, x.base)])


def clean(expr) -> sp.Expr:
    """A sum of zeros is zero (what sympy.diff leaves of the terms that do not read x)."""
    return expr.replace(lambda s: isinstance(s, Sum) and s.function == 0, lambda s: sp.S.Zero)


def unit_var(s) -> sp.Symbol | None:
    """An index of the sum s that occurs in Kronecker delta factors, each with coefficient ±1, and whose range no
    other index of s bounds; None if there is none (a strided index is never sifted: see the module's note)."""
    if not isinstance(s, Sum):
        return None
    deltas = [f for f in sp.Mul.make_args(s.function) if isinstance(f, KroneckerDelta)]
    others = lambda v: set().union(*[sp.sympify(lo).free_symbols | sp.sympify(hi).free_symbols  # noqa: E731
                                     for w, lo, hi in s.limits if w != v])
    def unit(dl, v) -> bool:
        diff = sp.expand(dl.args[0] - dl.args[1])
        return diff.coeff(v) in (1, -1) and v not in (diff - diff.coeff(v) * v).free_symbols

    for v, lo, hi in s.limits:
        mine = [dl for dl in deltas if v in dl.free_symbols]
        # every delta of v unit: SymPy's delta summation may pick any of them, and none may be a strided one
        if mine and v not in others(v) and all(unit(dl, v) for dl in mine):
            return v
    return None


def innermost_unit(expr):
    for node in sp.postorder_traversal(expr):  # children first: the first one found is innermost
        if unit_var(node) is not None:
            return node
    return None


def sift(s: Sum) -> sp.Expr:
    """SymPy's delta summation over the unit index of s; the other indices of s are kept around it."""
    v = unit_var(s)
    lim = next(lim for lim in s.limits if lim[0] == v)
    rest = [lim2 for lim2 in s.limits if lim2[0] != v]
    inner = Sum(s.function, lim).doit(deep=False)
    return Sum(inner, *rest) if rest else inner


def normal_condition(cond) -> sp.Basic:
    """cond with each inequality written e ≥ 0, e expanded (a < b over integers as b − a − 1 ≥ 0), in order."""
    parts = []
    for rel in (cond.args if isinstance(cond, sp.And) else (cond,)):
        if isinstance(rel, (sp.GreaterThan, sp.StrictGreaterThan)):
            e = rel.lhs - rel.rhs
        elif isinstance(rel, (sp.LessThan, sp.StrictLessThan)):
            e = rel.rhs - rel.lhs
        else:
            return cond
        if isinstance(rel, (sp.StrictGreaterThan, sp.StrictLessThan)):
            if not all(s.is_integer for s in e.free_symbols):
                return cond
            e -= 1
        parts.append(sp.Ge(sp.expand(e), 0))
    return sp.And(*sorted(parts, key=str))


def is_guarded(p) -> bool:
    """Piecewise((e, c), (0, True)): a sift's result still carrying its guard."""
    return isinstance(p, Piecewise) and len(p.args) == 2 and tuple(p.args[1]) == (0, sp.true)


def _decided_parts(cond, ranges: dict):
    """The conjuncts of cond that hold for every index in range (SymPy decides), and the rest."""
    dropped, kept = [], []
    for c in (cond.args if isinstance(cond, sp.And) else (cond,)):
        (dropped if decide(c, ranges)[0] is True else kept).append(c)
    return dropped, kept


def _guard_site(node, ranges: dict) -> bool:
    """A sift's guard still a Piecewise, or a bracket with a part that holds for every index in range."""
    return is_guarded(node) or (isinstance(node, Bracket) and bool(_decided_parts(node.args[0], ranges)[0]))


def guard(expr, ranges: dict):
    """The first guard written as a bracket: the conditions that hold for every index in range dropped
    (decided by SymPy as in the index range rule), the rest kept as [c]. (new expr, dropped, kept); None if none."""
    for node, rng in sites(expr, ranges, lambda n: isinstance(n, (Piecewise, Bracket))):
        if not _guard_site(node, rng):
            continue
        e, cond = node.args[0] if isinstance(node, Piecewise) else (sp.S.One, node.args[0])
        dropped, kept = _decided_parts(cond, rng)
        value = e * Bracket(normal_condition(sp.And(*kept))) if kept else e
        return expr.xreplace({node: value}), dropped, kept
    return None


def flat(expr) -> sp.Expr:
    """expr as a sum of terms, each one Σ over all its summation indices (in name order) of a product; a sum
    whose summand is itself a sum must have been split first (_split)."""
    out = []
    for term in sp.Add.make_args(sp.expand(expr)):
        limits, factors, stack = [], [], list(sp.Mul.make_args(term))
        while stack:
            f = stack.pop()
            if isinstance(f, Sum):
                inner = sp.expand(f.function)
                if isinstance(inner, sp.Add):
                    raise Stuck("a sum of several terms not split")
                limits += list(f.limits)
                stack += list(sp.Mul.make_args(inner))
            else:
                factors.append(f)
        names = [v for v, *_ in limits]
        if len(set(names)) != len(names) or set(names) & term.free_symbols:
            raise Stuck("two sums over one index name, or a summation index also free")  # one would capture
        body = sp.Mul(*factors)
        out.append(Sum(body, *sorted(limits, key=lambda lim: str(lim[0]))) if limits else body)
    return sp.Add(*out)


def split_sums(expr) -> sp.Expr:
    """Every sum whose summand, multiplied out, is a sum of terms split by linearity: Σ(a + b) = Σa + Σb."""
    def split(s: Sum):
        terms = sp.Add.make_args(sp.expand(s.function))
        return sp.Add(*[Sum(t, *s.limits) for t in terms]) if len(terms) > 1 else s
    for _ in range(8):
        new = expr.replace(lambda e: isinstance(e, Sum), split)
        if new == expr:
            break
        expr = new
    return expr


def _split(expr) -> sp.Expr:
    return flat(split_sums(expr))


def canonical_form(expr, unfold: dict, ranges: dict) -> sp.Expr:
    """One way of writing expr: the helper arrays in unfold (base -> Definition) written out, nested sums
    flattened, every unit-coefficient Kronecker sum taken, every guard a normalized bracket."""
    defs = list(unfold.values())
    expr = expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in unfold,
                        lambda e: definition_of(defs, e))
    expr = _split(expr)
    for _ in range(64):
        s = innermost_unit(expr)
        if s is None:
            break
        expr = _split(expr.xreplace({s: sift(s)}))
        while (found := guard(expr, ranges)) is not None:
            expr = found[0]
    return expr.replace(lambda e: isinstance(e, Bracket), lambda e: Bracket(normal_condition(e.args[0])))


# ---------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------

class SpatialBuilder(Builder):
    """The steps of a spatial theorem's chains (each computed by its rule's operation, checked afterwards)."""

    def define(self, c: Chain) -> None:
        self._add(c, definition_of(self.M.definitions, c.head), "definition")

    def graph(self, c: Chain, x) -> None:
        if not readers(self.M.definitions, x.base):
            raise Stuck(f"nothing reads {x.base}")
        self._add(c, graph_sum(self.M.definitions, x), "graph", x=x)

    def diff(self, c: Chain, source: Chain, x) -> None:
        self._add(c, clean(sp.diff(source.final, x)), "diff", source=source, x=x)

    def local(self, d: Definition, x) -> Chain:
        """The lemmas u = its definition and ∂u/∂x = sympy.diff of it, its Kronecker sums taken: the last chain."""
        lem = self.chain("lemma", d.head)
        self.define(lem)
        dlem = self.chain("lemma", LocalPartial(d.head, x))
        self.diff(dlem, lem, x)
        self.sift_all(dlem)
        return dlem

    def sift_all(self, c: Chain) -> None:
        while innermost_unit(c.final) is not None:
            s = innermost_unit(c.final)
            self._add(c, c.final.xreplace({s: sift(s)}), "kronecker", sum=s)
            while (found := guard(c.final, self.thm.scope.ranges)) is not None:
                self._add(c, found[0], "guard")

    def substitute(self, c: Chain, lemma: Chain) -> None:
        self._add(c, c.final.xreplace({lemma.head: lemma.final}), "lemma", lemma=lemma)

    def name(self, c: Chain, base) -> None:
        """Every instance of base's definition replaced by the entry it defines (exp(S)/Σ exp(S) by P)."""
        new = name_instances(self.M.definitions, c.final, base)
        if new != c.final:
            self._add(c, new, "name", base=base)

    def formula(self, c: Chain) -> None:
        if c.final != self.thm.formula:
            self._add(c, self.thm.formula, "formula")


def name_instances(definitions: list[Definition], expr, base) -> sp.Expr:
    """expr with each instance of base's defining expression (at any value of its pattern indices found in expr)
    replaced by the entry: rhs(idx) -> base[idx]. Tried at the index tuples the expr's Indexed atoms carry."""
    d = next(d for d in definitions if d.head.base == base)
    pattern = list(d.head.indices)
    candidates = set()
    for e in expr.atoms(sp.Indexed):
        for combo in itertools.permutations(e.indices, len(pattern)):
            candidates.add(combo)
    for combo in sorted(candidates, key=str):
        value = d.rhs.xreplace(dict(zip(pattern, combo)))
        head = d.head.xreplace(dict(zip(pattern, combo)))
        expr = expr.xreplace({value: head})
        expr = expr.subs(value, head)  # inside products: exp(S)·(Σ exp S)^-1 as factors of a larger term
    return expr


# ---------------------------------------------------------------------------
# the checks: each rule on its own statement
# ---------------------------------------------------------------------------

def check_spatial_theorem(thm: Theorem, model) -> Theorem:
    """Check every step of a spatial theorem, in order; returns the theorem."""
    return check_by_rules(thm, model, _CHECKS)


def _check_definition(step, thm, model):
    try:
        if step.rhs == definition_of(model.definitions, step.lhs):
            return Verdict.GIVEN, ["the definition of ", step.lhs]
    except KeyError:
        pass
    return Verdict.UNPROVEN, ["not the definition of ", step.lhs]


def _check_graph(step, thm, model):
    x = step.data["x"]
    if step.lhs != CostPartial(x) or step.rhs != graph_sum(model.definitions, x):
        return Verdict.UNPROVEN, [f"the step is not the chain rule over what reads {x.base.label}"]
    if x.base == model.outputs:
        return Verdict.UNPROVEN, ["C reads ", x, " itself"]
    parts: list = [f"C reads {model.outputs.label} only; what reads {x.base.label} in the definitions: "]
    for d in readers(model.definitions, x.base):
        parts += [d.head, " (every entry; one that does not read ", x, " has ∂u/∂x = 0); "]
    return Verdict.PROVEN, parts[:-1]


def _check_diff(step, thm, model):
    src, x = step.data["source"], step.data["x"]
    try:
        own = src.final == definition_of(model.definitions, src.head)
    except KeyError:
        own = False
    if not src.ok or not own or step.lhs != LocalPartial(src.head, x):
        return Verdict.UNPROVEN, ["a local partial differentiates the definition itself"]
    captured = {v for s in src.final.atoms(Sum) for v, *_ in s.limits} & x.free_symbols
    if captured:
        return Verdict.UNPROVEN, ["a summation index of the expression is also an index of ", x]
    if step.rhs == clean(sp.diff(src.final, x)):
        return Verdict.PROVEN, ["sympy.diff of ", src.final, " with respect to ", x]
    return Verdict.UNPROVEN, ["sympy.diff gives something else"]


def _check_kronecker(step, thm, model):
    s = step.data["sum"]
    if unit_var(s) is None:
        return Verdict.UNPROVEN, ["no index with coefficient ±1 in a Kronecker delta (a strided one is not sifted)"]
    if s in step.lhs.atoms(Sum) and step.rhs == step.lhs.xreplace({s: sift(s)}):
        return Verdict.PROVEN, ["SymPy's delta summation over ", unit_var(s), ", whose coefficient is ±1"]
    return Verdict.UNPROVEN, ["SymPy's delta summation gives something else"]


def _check_guard(step, thm, model):
    found = guard(step.lhs, thm.scope.ranges)
    if found is None or found[0] != step.rhs:
        return Verdict.UNPROVEN, ["the step is not that bracket"]
    _, dropped, kept = found
    parts: list = []
    if dropped:
        parts += ["holds for every index in range: ", sp.And(*dropped)]
    if kept:
        parts += (["; " if dropped else ""] + ["kept as a bracket (SymPy cannot decide it for every index): ",
                                               sp.And(*kept)])
    return Verdict.PROVEN, parts


def _check_lemma(step, thm, model):
    lemma = step.data["lemma"]
    if not lemma.ok or lemma.head == lemma.final:
        return Verdict.UNPROVEN, ["the substituted value is not established"]
    shift = dict(step.data.get("shift", ()))
    head, value = lemma.head.xreplace(shift), lemma.final.xreplace(shift)
    if step.rhs == step.lhs or step.rhs != step.lhs.xreplace({head: value}):
        return Verdict.UNPROVEN, ["the step is not that substitution"]
    if shift:
        if not shift_inside(shift, step.data["within"], thm.scope.ranges):
            return Verdict.UNPROVEN, ["the value is used outside the range it is proven for"]
        return Verdict.PROVEN, [head, " = ", value, " (proven above for ",
                                *[Range(u, *step.data["within"][u]) for u in shift], ", used at ",
                                *[sp.Eq(u, e, evaluate=False) for u, e in shift.items()], ", inside that range)"]
    # the lemma holds for every value of its pattern indices in their ranges; here they are the summation indices
    # of the chain rule's sum, over the same ranges (family_sum takes them from the same definition)
    return Verdict.PROVEN, [lemma.head, " = ", lemma.final, " (proven above, for every entry of the family)"]


def shift_inside(shift: dict, within: dict, ranges: dict) -> bool:
    """Whether each index u moved to shift[u] stays inside within[u] for every u in its range here (SymPy)."""
    for u, e in shift.items():
        lo, hi = within[u]
        if decide(sp.Le(lo, e), ranges)[0] is not True or decide(sp.Le(e, hi), ranges)[0] is not True:
            return False
    return True


def _check_linear(step, thm, model):
    if step.rhs != step.lhs and step.rhs == split_sums(step.lhs):
        return Verdict.PROVEN, ["each sum of several terms split into one sum per term, the summand multiplied out"]
    return Verdict.UNPROVEN, ["the step is not that split"]


def _check_name(step, thm, model):
    base = step.data["base"]
    if step.rhs != step.lhs and step.rhs == name_instances(model.definitions, step.lhs, base):
        d = next(d for d in model.definitions if d.head.base == base)
        return Verdict.PROVEN, ["by definition ", sp.Eq(d.head, d.rhs, evaluate=False)]
    return Verdict.UNPROVEN, ["the step is not that replacement"]


def _check_formula(step, thm, model):
    bad = [p.base for p in step.rhs.atoms(sp.Pow) if p.exp.is_negative and not p.base.is_Number
           and not isinstance(p.base, Sum) and p.base.is_positive is not True]
    if bad:
        return Verdict.UNPROVEN, ["a denominator of the formula is not shown nonzero: ", bad[0]]
    try:
        left, right = model.canonical(step.lhs, thm.scope.ranges), model.canonical(step.rhs, thm.scope.ranges)
        same = left == right or equal_by_linearity(left, right)
    except (Stuck, KeyError):
        same = False
    if same:
        return Verdict.PROVEN, ["the derived expression equals the formula (" + model.formula_note + ")"]
    ce = witness(model, thm, step.lhs, step.rhs)
    step.counterexample = ce
    if ce is not None:
        return Verdict.REFUTED, ce.parts()
    return Verdict.UNPROVEN, ["not shown equal, and no concrete layer found where the sides differ"]


_CHECKS = {
    "definition": _check_definition,
    "graph": _check_graph,
    "diff": _check_diff,
    "kronecker": _check_kronecker,
    "guard": _check_guard,
    "lemma": _check_lemma,
    "name": _check_name,
    "linear": _check_linear,
    "formula": _check_formula,
}


# ---------------------------------------------------------------------------
# counterexamples: concrete layers
# ---------------------------------------------------------------------------

def evaluate(expr, sizes: dict, idx: dict, vals: dict):
    """expr at a concrete layer: sizes and free indices substituted, sums written out, every entry its value."""
    e = expr.xreplace(sizes).xreplace(idx).doit()
    return e.xreplace(vals)


def witness(model, thm: Theorem, lhs, rhs, seed: int = 0):
    """A concrete layer (sizes from model.witness_sizes, values from model.concrete) and free indices where lhs
    (proven equal to the gradient) and rhs differ: exactly in rationals, or by more than 10^-30 at 50 digits
    where exp makes the values transcendental. None if none is found."""
    import numpy as np

    rng = np.random.default_rng(seed)
    lhs, rhs = model.expand_helpers(lhs), model.expand_helpers(rhs)
    free = sorted((lhs.free_symbols | rhs.free_symbols) & set(thm.scope.ranges), key=str)
    for sizes in model.witness_sizes():
        vals = model.concrete(sizes, rng)
        ranges = [range(int(thm.scope.ranges[f][1].xreplace(sizes)) + 1) for f in free]
        for point in itertools.product(*ranges):
            idx = dict(zip(free, point))
            left, right = evaluate(lhs, sizes, idx, vals), evaluate(rhs, sizes, idx, vals)
            if left.free_symbols or right.free_symbols or left.has(sp.Indexed) or right.has(sp.Indexed):
                continue
            if left.is_Rational and right.is_Rational:
                if left == right:
                    continue
            elif abs(sp.N(left - right, 50)) <= sp.Float("1e-30"):
                continue
            else:
                left, right = sp.N(left, 15), sp.N(right, 15)
            order = sorted((a for a in vals if model.shown(a)), key=lambda a: (not isinstance(a, CostPartial), str(a)))
            shown = tuple((a, vals[a]) for a in order)[:24]  # the upstream gradient first, then the inputs
            return Counterexample(shown, left, right, tuple(sizes.items()), tuple(idx.items()))
    return None


def spatial_rule_checks() -> list:
    """The shifted Kronecker sum the convolution proofs take, against the written-out sum at small sizes."""
    from derive.proofs.general.model import INDEX, WIDTH
    from derive.proofs.general.steps import RuleCheck

    f, m, i, u = sp.Function("f"), *sp.symbols("m i u", **INDEX)
    k, s = sp.symbols("k s", **WIDTH)
    symbolic = sift(Sum(f(m) * KroneckerDelta(s * i + m, u), (m, 0, k - 1)))
    good = True
    for kc, sc, ic, uc in itertools.product((1, 2, 3), (1, 2), (0, 1, 2), range(7)):
        written = sp.Add(*[f(mm) * (1 if sc * ic + mm == uc else 0) for mm in range(kc)])
        good &= symbolic.subs({k: kc, s: sc, i: ic, u: uc}) == written
    return [RuleCheck("shifted Kronecker sum", "SymPy's Σ_(m=0..k-1) f(m) δ_(s·i+m,u) for symbolic k, s against the "
                      "written-out sum, k = 1..3, s = 1, 2, i = 0..2, u = 0..6 (a strided index is never summed)",
                      r"SymPy's $\sum_{m=0}^{k-1} f(m)\,\delta_{s i + m, u}$ for symbolic $k, s$ against the "
                      r"written-out sum, $k = 1, 2, 3$, $s = 1, 2$, $i = 0, 1, 2$, $u = 0, \dots, 6$ (a strided "
                      r"index is never summed)", Verdict.PROVEN if good else Verdict.REFUTED)]
