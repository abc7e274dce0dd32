"""The checks: each rule checks a step on its own statement, after the step was built."""

from __future__ import annotations

import sympy as sp
from sympy import Sum

from derive.proofs.general.forms import canonical
from derive.proofs.general.functions import CostPartial, LocalPartial
from derive.proofs.general.instance import COUNTER_POINTS, COUNTER_WIDTHS, search
from derive.proofs.general.model import Model
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import (
    chain_sum, clean, discharge, equal_by_linearity, node, only_through, path_parts, replace_fact, sift, siftable,
    sites,
)
from derive.proofs.general.steps import Step, Theorem
from derive.proofs.general.written import as_written
from derive.verdict import Verdict


def check(step: Step, thm: Theorem, model: Model) -> None:
    step.verdict, step.evidence = _CHECKS[step.rule](step, thm, model)


def check_rule(step: Step, thm: Theorem, model):
    """(verdict, evidence) of a step by a rule that reads only the step and the scope (Kronecker, range, linear)."""
    return _CHECKS[step.rule](step, thm, model)


def _check_definition(step, thm, model):
    head = step.lhs
    if step.rhs == model.definition(head, step.data.get("dummy")):
        return Verdict.GIVEN, ["the model's definition of ", head]
    return Verdict.UNPROVEN, ["not the model's definition of ", head]


def _check_fact(step, thm, model):
    fact, layer = step.rule, step.data["layer"]
    assumed = thm.scope.hypothesis_layer
    if fact == "hypothesis" and (assumed is None or sp.expand(layer - assumed) != 0):
        return Verdict.UNPROVEN, ["no induction hypothesis at layer ", layer]
    if step.rhs == replace_fact(model, step.lhs, fact, layer) and step.rhs != step.lhs:
        what = {"def-a": "a", "def-delta": "∂C/∂z", "hypothesis": "∂C/∂z"}[fact]
        return Verdict.PROVEN, [f"every {what} of layer ", layer, " replaced"]
    return Verdict.UNPROVEN, ["the step is not that replacement"]


def _check_chain(step, thm, model):
    d = step.data
    x = d["x"]
    if step.lhs != CostPartial(x) or step.rhs != chain_sum(model, x, d["base"], d["layer"], d["i"], d["e"],
                                                          d["inside"]):
        return Verdict.UNPROVEN, ["the step is not the chain rule through ", d["base"], " at layer ", d["layer"]]
    paths = only_through(model, x, (d["base"], d["layer"]), thm.scope)
    if paths is None:
        return Verdict.UNPROVEN, ["premise not shown: C may depend on ", x, " other than through layer ", d["layer"]]
    parts: list = ["C depends on ", x, " only through ", node(d["base"], d["layer"]), ": "]
    for p in paths:
        parts += path_parts(p) + ["; "]
    where = ["the output layer ", model.L] if thm.scope.layer_range is None else [thm.scope.layer_range]
    return Verdict.PROVEN, parts[:-1] + [" (", *where, ")"]


def _check_diff(step, thm, model):
    src, x = step.data["source"], step.data["x"]
    if not src.ok:
        return Verdict.UNPROVEN, ["the expression differentiated is not established"]
    if step.lhs != LocalPartial(src.head, x):
        return Verdict.UNPROVEN, ["the step does not differentiate ", src.head]
    if step.rhs == clean(sp.diff(src.final, x)):
        return Verdict.PROVEN, ["sympy.diff of ", src.final, " with respect to ", x]
    return Verdict.UNPROVEN, ["sympy.diff gives something else"]


def _check_kronecker(step, thm, model):
    s = step.data["sum"]
    if not (siftable(s) and step.lhs.has(s)):
        return Verdict.UNPROVEN, ["no such sum in the expression"]
    value = sift(s)
    if value != s and step.rhs == step.lhs.xreplace({s: value}):
        one = Sum(s.function, s.limits[0])  # the innermost sum on its own
        return Verdict.PROVEN, ["SymPy: ", sp.Eq(one, sift(one), evaluate=False)]
    return Verdict.UNPROVEN, ["SymPy's delta summation gives something else"]


def _check_range(step, thm, model):
    pw = step.data["piecewise"]
    found_at = list(sites(step.lhs, thm.scope.ranges, lambda n: n == pw))
    if not found_at:
        return Verdict.UNPROVEN, ["no such guard in the expression"]
    found = [discharge(pw, ranges) for _, ranges in found_at]
    if any(f is None for f in found) or len({f[0] for f in found}) != 1:
        return Verdict.UNPROVEN, ["SymPy cannot decide the guard of ", pw]
    branch, cond, subs = found[0]
    if step.rhs != step.lhs.xreplace({pw: branch}):
        return Verdict.UNPROVEN, ["the step is not that branch"]
    ranges = found_at[0][1]
    if cond is sp.true:
        return Verdict.PROVEN, ["the guard is always true"]
    parts: list = ["guard ", cond, " holds for "]
    for s in sorted(cond.free_symbols & set(ranges), key=str):
        parts += [Range(s, *ranges[s]), " "]
    parts += ["(index ranges): with "]
    for n, v in subs.items():
        (r,) = v.free_symbols - cond.free_symbols
        parts += [sp.Eq(n, v, evaluate=False), " and integer ", sp.Ge(r, 0, evaluate=False), ", "]
    parts += ["SymPy reduces it to True"]
    return Verdict.PROVEN, parts


def _check_lemma(step, thm, model):
    lemma = step.data["lemma"]
    if not lemma.ok or lemma.head == lemma.final:
        return Verdict.UNPROVEN, ["the substituted value is not established"]
    if step.rhs != step.lhs.xreplace({lemma.head: lemma.final}) or not step.lhs.has(lemma.head):
        return Verdict.UNPROVEN, ["the step is not that substitution"]
    for _, ranges in sites(step.lhs, thm.scope.ranges, lambda n: n == lemma.head):
        for s in sorted(lemma.head.free_symbols & set(thm.scope.ranges), key=str):
            if ranges.get(s) != thm.scope.ranges[s]:
                return Verdict.UNPROVEN, ["the value holds for ", Range(s, *thm.scope.ranges[s]),
                                          " but is used over another range"]
    return Verdict.PROVEN, [lemma.head, " = ", lemma.final, " (proven above)"]


def _check_linear(step, thm, model):
    if equal_by_linearity(step.lhs, step.rhs):
        return Verdict.PROVEN, ["sums over the same ranges agree termwise"]
    return Verdict.UNPROVEN, ["not shown equal by linearity"]


def _proven_up_to(thm: Theorem, step: Step) -> bool:
    """The main chain runs from the theorem's left-hand side to step, and every step before step holds."""
    steps = thm.steps
    at = next((i for i, s in enumerate(steps) if s is step), None)
    return (at is not None and any(s is step for s in thm.main.steps) and thm.main.head == thm.lhs
            and all(s.ok for s in steps[:at]))


def _check_formula(step, thm, model):
    evaluated, undefined = as_written(model, thm.scope, step.rhs)
    if undefined is not None and undefined[0] == "everywhere":
        return Verdict.UNPROVEN, undefined[1]  # no point has a value: nothing to compare, no counterexample
    undefined = [] if undefined is None else undefined[1]
    parts: list = ["the derived expression equals the formula"]
    equal = equal_by_linearity(step.lhs, evaluated)  # evaluated: sound, as every denominator was judged above
    if not equal:
        done: list = []
        sides = [canonical(model, x, thm.scope, done) for x in (step.lhs, evaluated)]
        head = canonical(model, thm.lhs, thm.scope)
        itself = sides[1].has(head) and _proven_up_to(thm, step)  # the theorem's left-hand side: proven above
        if itself:
            sides[1] = sides[1].xreplace({head: sides[0]})
        equal = bool(done or itself) and equal_by_linearity(*sides)
        if done:
            parts.append(", each quantity the model defines written one way: ")
            for before, after in dict(done).items():
                parts += [sp.Eq(before, after, evaluate=False), ", "]
            parts.pop()
        if itself:
            parts += ["; the formula's ", head, " is the value derived above"]
    if equal:
        return (Verdict.UNPROVEN, undefined) if undefined else (Verdict.PROVEN, parts)
    ce, why = search(model, thm.scope, step.lhs, step.rhs)
    step.counterexample = ce
    if ce is not None:
        return Verdict.REFUTED, ce.parts()
    if undefined:
        return Verdict.UNPROVEN, undefined
    if why is not None:
        return Verdict.UNPROVEN, ["not shown equal, and the formula has a value at none of the points tried; "] + why
    widths = ", ".join(map(str, sorted(COUNTER_WIDTHS)))
    return Verdict.UNPROVEN, ["not shown equal, and no point found where both sides are defined and differ "
                              f"(widths {widths}, {COUNTER_POINTS} points at most)"]


_CHECKS = {
    "definition": _check_definition,
    "def-a": _check_fact,
    "def-delta": _check_fact,
    "hypothesis": _check_fact,
    "chain": _check_chain,
    "diff": _check_diff,
    "kronecker": _check_kronecker,
    "range": _check_range,
    "lemma": _check_lemma,
    "linear": _check_linear,
    "formula": _check_formula,
}
