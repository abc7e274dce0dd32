"""The rules' operations, shared by the builder (theorems.py) and the checks (checks.py): applying a definition,
the chain rule's sum, the Kronecker sum, deciding a range guard, the chain rule's premise and linearity of sums."""

from __future__ import annotations

from functools import lru_cache

import sympy as sp
from sympy import KroneckerDelta, Piecewise, Sum
from sympy.simplify.simplify import factor_sum

from derive.proofs.general.functions import CostPartial, LocalPartial, sigma
from derive.proofs.general.model import INDEX, Model
from derive.proofs.general.printing import compact
from derive.proofs.general.steps import Scope


class Stuck(Exception):
    """A derivation cannot go on (a guard SymPy cannot decide, a sum with nothing to sift)."""


def replace_fact(model: Model, expr: sp.Expr, fact: str, layer) -> sp.Expr:
    """Apply a definition or the induction hypothesis at one layer, everywhere in expr."""
    if fact == "def-a":
        return expr.replace(
            lambda x: isinstance(x, sp.Indexed) and x.base == model.a and x.indices[0] == layer,
            lambda x: sigma(model.z[x.indices]))
    if fact in ("def-delta", "hypothesis"):
        return expr.replace(
            lambda x: isinstance(x, CostPartial) and isinstance(x.args[0], sp.Indexed)
            and x.args[0].base == model.z and x.args[0].indices[0] == layer,
            lambda x: model.delta[x.args[0].indices])
    raise ValueError(fact)


def chain_sum(model: Model, x, base: str, layer, i, e, examples_inside: bool = False) -> sp.Expr:
    """sum over every entry u of `base` at `layer` (every example in a batch) of dC/du du/dx.

    The order of the two finite sums is free; the example sum goes inside when x
    belongs to one example (its Kronecker delta is sifted first).
    """
    u = model._entry(getattr(model, base), layer, i, e)
    body = CostPartial(u) * LocalPartial(u, x)
    if model.batch and examples_inside:
        return Sum(body, (e, 0, model.B - 1), (i, 0, model.last(layer)))
    return model.over_examples(Sum(body, (i, 0, model.last(layer))), e)


def clean(expr: sp.Expr) -> sp.Expr:
    """A sum of zeros is zero (what sympy.diff leaves of the other terms of a definition)."""
    return expr.replace(lambda s: isinstance(s, Sum) and s.function == 0, lambda s: sp.S.Zero)


def siftable(s) -> bool:
    """A sum whose innermost index occurs in a Kronecker delta factor of the summand."""
    if not isinstance(s, Sum):
        return False
    var = s.limits[0][0]
    return any(isinstance(f, KroneckerDelta) and var in f.free_symbols for f in sp.Mul.make_args(s.function))


def sift(s: Sum) -> sp.Expr:
    """SymPy's delta summation over the innermost index of s (the outer ones are kept)."""
    inner = Sum(s.function, s.limits[0]).doit(deep=False)
    return Sum(inner, *s.limits[1:]) if len(s.limits) > 1 else inner


def innermost_siftable(expr):
    for node in sp.postorder_traversal(expr):  # children first: the first one found is innermost
        if siftable(node):
            return node
    return None


def sites(expr, ranges: dict, want):
    """(node, ranges in force there) for each node want() accepts: free ranges plus enclosing sums' limits."""
    if isinstance(expr, Sum):
        inner = dict(ranges)
        for var, lo, hi in expr.limits:
            inner[var] = (lo, hi)
        yield from sites(expr.function, inner, want)
        return
    for arg in expr.args:
        yield from sites(arg, ranges, want)
    if want(expr):
        yield expr, ranges


def decide(cond, ranges: dict):
    """Whether cond holds for every index in its range: True, False or None (SymPy cannot tell), and the witness.

    Each index 0 <= i <= n - 1 of the condition is written n = i + 1 + r_i with a fresh
    integer r_i >= 0 (i >= 0 is the index symbol's own assumption); SymPy then
    evaluates the condition. Sound: every admissible (i, n) is such a substitution.
    """
    if cond in (sp.true, sp.false):
        return bool(cond), {}
    holds, subs = _decided(cond, frozenset((s, tuple(ranges[s])) for s in cond.free_symbols & set(ranges)))
    return holds, dict(subs)


@lru_cache(maxsize=4096)  # sp.solve is the slow part, and each theorem asks about the same few guards again
def _decided(cond, ranges: frozenset) -> tuple:
    """decide, for the ranges of cond's own symbols as (symbol, (lo, hi)) pairs: (holds, witness as pairs).

    Cached soundly: the answer reads nothing but its arguments, SymPy objects that are
    immutable and equal (and hash alike) only when their structure and assumptions are.
    """
    ranges = dict(ranges)
    subs = {}
    for s in sorted(ranges, key=str):
        lo, hi = ranges[s]
        widths = hi.free_symbols - {s}
        if lo != 0 or len(widths) != 1:
            return None, ()
        (n,) = widths
        if n in subs:
            return None, ()
        r = sp.Symbol(f"r_{s}", **INDEX)
        sol = sp.solve(sp.Eq(hi, s + r), n)
        if len(sol) != 1:
            return None, ()
        subs[n] = sol[0]
    value = cond.subs(subs)
    holds = True if value is sp.true else False if value is sp.false else None
    return holds, tuple(subs.items())


def discharge(pw: Piecewise, ranges: dict):
    """The branch of pw that applies for every index in range, with the witness; None if undecided."""
    for expr, cond in pw.args:
        holds, subs = decide(cond, ranges)
        if holds is None:
            return None
        if holds:
            return expr, cond, subs
    return None


def layer_decide(rel, scope: Scope):
    value = rel.subs(scope.layers) if not isinstance(rel, bool) else sp.sympify(rel)
    if value is sp.true:
        return True
    if value is sp.false:
        return False
    return None


def _readers(model: Model, node: tuple, scope: Scope):
    """What reads (base, layer) in the definitions, at which layer; None if a layer bound is undecided."""
    base, layer = node
    out = []
    for what, lam, used in model.reads():
        for rb, rl in used:
            if rb != base:
                continue
            if lam is None:  # the cost reads a^L
                same = layer_decide(sp.Eq(rl, layer), scope)
                if same is None:
                    return None
                if same:
                    out.append(("C", model.L))
                continue
            (at,) = sp.solve(sp.Eq(rl, layer), lam)
            inside = [layer_decide(sp.Le(1, at), scope), layer_decide(sp.Le(at, model.L), scope)]
            if None in inside:
                return None
            if all(inside):
                out.append((what, at))
    return out


def only_through(model: Model, x, through: tuple, scope: Scope):
    """Every path of the definitions from x to C passes through `through`: the paths, or None."""
    start = (x.base.name, x.indices[0])
    paths, frontier = [], [[start]]
    while frontier:
        path = frontier.pop(0)
        readers = _readers(model, path[-1], scope)
        if readers is None or not readers:
            return None  # undecided, or a dead end that is not C: the premise is not shown
        for node in readers:
            if node[0] == through[0] and sp.expand(node[1] - through[1]) == 0:
                paths.append(path + [node])
            elif node[0] == "C" or len(path) > 4:
                return None
            else:
                frontier.append(path + [node])
    return paths


def node(base: str, layer) -> sp.Symbol:
    """A layer of the dependency graph, for display: z^{l+1}."""
    return sp.Symbol(f"{base}^{{{compact(str(layer))}}}")


def path_parts(path) -> list:
    out: list = []
    for b, lay in path:
        out += [node(b, lay), " → "]
    return out[:-1]


def factor_sums(expr: sp.Expr) -> sp.Expr:
    """Pull every factor free of a summation index out of its sum (SymPy's factor_sum)."""
    return expr.replace(lambda s: isinstance(s, Sum), lambda s: factor_sum(s))


def _flatten(expr: sp.Expr, names: list, depth: int = 0) -> list:
    """expr as a list of (ranges from outer to inner, summand): factors moved into sums, indices renamed."""
    out = []
    for term in sp.Add.make_args(sp.expand(expr)):
        factors = sp.Mul.make_args(term)
        first = next((f for f in factors if isinstance(f, Sum)), None)
        if first is None:
            out.append(((), term))
            continue
        rest = sp.Mul(*[f for f in factors if f is not first])
        fn, limits, keys, d = first.function, list(first.limits), [], depth
        for pos in range(len(limits) - 1, -1, -1):  # the outermost limit is the last
            var, lo, hi = limits[pos]
            new = names[d]
            d += 1
            fn = fn.xreplace({var: new})
            limits = [(v, a.xreplace({var: new}), b.xreplace({var: new})) for v, a, b in limits]
            keys.append((lo, hi))
        for sub, body in _flatten(rest * fn, names, d):  # rest is free of the fresh names
            out.append((tuple(keys) + sub, body))
    return out


def equal_by_linearity(lhs: sp.Expr, rhs: sp.Expr) -> bool:
    """lhs == rhs exactly: polynomial identity, with sums over the same ranges compared termwise."""
    if sp.expand(lhs - rhs) == 0:
        return True
    names = [sp.Dummy(f"i{n}", **INDEX) for n in range(16)]
    groups: dict = {}
    try:
        for sign, side in ((1, lhs), (-1, rhs)):
            for keys, body in _flatten(side, names):
                groups[keys] = groups.get(keys, 0) + sign * body
    except IndexError:  # deeper than 16 nested sums: not shown
        return False
    return all(sp.expand(v) == 0 for v in groups.values())
