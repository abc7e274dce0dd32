"""Counterexamples: a concrete network that obeys every definition of the model, in exact rationals, and the
search for a point where both sides of a formula are defined and differ."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy import Sum

from derive.proofs.general.functions import CostPartial, LocalPartial, sigma, sigma_prime
from derive.proofs.general.model import Model
from derive.proofs.general.steps import Scope
from derive.proofs.general.written import divisors_kept
from derive.proofs.identity import Counterexample


COUNTER_WIDTHS = (2, 1, 3, 5)  # tried for each symbolic width (and B) on its own; 2 everywhere first
COUNTER_LAYERS = ((1, 2), (2, 3), (1, 1), (2, 2), (1, 3))  # (l, L), those the theorem's layer range admits
COUNTER_POINTS = 300  # (network, indices) points a search tries before it gives up
_APPLIED = (sigma, sigma_prime, CostPartial, LocalPartial)


def _draw(rng) -> Fraction:
    """A free value: a nonzero k/8 with |k| <= 16 (a zero could hide a difference)."""
    k = int(rng.integers(1, 17))
    return Fraction(k if rng.integers(2) else -k, 8)


def _pick(table, *keys):
    """table[k1][k2]...; None where an index is out of range: the network has no such entry."""
    for key in keys:
        inside = 0 <= key < len(table) if isinstance(table, list) else key in table
        if not inside:
            return None
        table = table[key]
    return table


class Instance:
    """A concrete network at layers 0..L in which every definition of the model holds, in exact rationals.

    Free: the inputs a^0, every weight and bias, dC/da^L (C is arbitrary) and sigma,
    sigma' at each distinct argument they are asked for (sigma is arbitrary, so one
    pair per argument). The rest follows: z = W a + b, a = sigma(z), delta = dC/dz and
    every dC/dx by the chain rule over the written-out graph. activation, a pair of
    callables (sigma, sigma'), replaces the arbitrary sigma (for a test against sympy.diff).
    """

    def __init__(self, model: Model, L: int, widths: dict, examples: int, rng, activation=None):
        self.M, self.L, self.n, self.B = model, L, dict(widths), examples
        self._rng, self._activation, self._sigma = rng, activation, {}
        n, E = self.n, range(examples)

        def draws(count):
            return [_draw(rng) for _ in range(count)]

        self.a = {0: [draws(n[0]) for _ in E]}
        self.w, self.b, self.z = {}, {}, {}
        for lay in range(1, L + 1):
            self.w[lay] = [draws(n[lay - 1]) for _ in range(n[lay])]  # w[lay][out][in], whatever the layout
            self.b[lay] = draws(n[lay])
            self.z[lay] = [[sum(wi[k] * self.a[lay - 1][e][k] for k in range(n[lay - 1])) + bi
                            for wi, bi in zip(self.w[lay], self.b[lay])] for e in E]
            self.a[lay] = [[self.sigma(t)[0] for t in row] for row in self.z[lay]]
        self.da = {L: [draws(n[L]) for _ in E]}  # dC/da^L: C is an arbitrary function of a^L
        self.dz = {}
        for lay in range(L, 0, -1):  # z^lay reaches C only through a^lay; a^(lay-1) only through z^lay
            self.dz[lay] = [[d * self.sigma(t)[1] for d, t in zip(drow, zrow)]
                            for drow, zrow in zip(self.da[lay], self.z[lay])]
            self.da[lay - 1] = [[sum(self.w[lay][i][k] * self.dz[lay][e][i] for i in range(n[lay]))
                                 for k in range(n[lay - 1])] for e in E]
        self.dw = {lay: [[sum(self.dz[lay][e][i] * self.a[lay - 1][e][k] for e in E) for k in range(n[lay - 1])]
                         for i in range(n[lay])] for lay in self.w}
        self.db = {lay: [sum(self.dz[lay][e][i] for e in E) for i in range(n[lay])] for lay in self.b}

    def sigma(self, t: Fraction) -> tuple:
        """(sigma(t), sigma'(t)): drawn once per distinct argument, so equal arguments get equal values."""
        if self._activation is not None:
            f, df = self._activation
            return f(t), df(t)
        if t not in self._sigma:
            self._sigma[t] = (_draw(self._rng), _draw(self._rng))
        return self._sigma[t]

    def _locate(self, x):
        """(kind, layer, ...) of an entry w, b, a, z or delta with integer indices; None for anything else."""
        M = self.M
        if not isinstance(x, sp.Indexed) or not all(i.is_Integer for i in x.indices):
            return None
        name, idx = x.base.name, [int(i) for i in x.indices]
        if name == M.w.name and len(idx) == 3:  # row: W^l[k, j] is w^l_{jk}
            return ("w", idx[0], idx[2], idx[1]) if M.convention == "row" else ("w", *idx)
        if name == "b" and len(idx) == 2:
            return ("b", *idx)
        if name in ("a", "z", "delta") and len(idx) == (3 if M.batch else 2):
            return (name, *idx) if M.batch else (name, idx[0], 0, idx[1])
        return None

    def entry(self, x) -> Fraction | None:
        """The value of an entry w, b, a, z or delta; None where the network has no such entry."""
        where = self._locate(x)
        if where is None:
            return None
        tables = {"w": self.w, "b": self.b, "a": self.a, "z": self.z, "delta": self.dz}
        return _pick(tables[where[0]], *where[1:])

    def _z_of(self, x):
        """(layer, example, neuron) when x is an entry z or its definition sum_k w a + b written out; else None."""
        where = self._locate(x)
        if where is not None:
            return where[1:] if where[0] == "z" and _pick(self.z, *where[1:]) is not None else None
        if not isinstance(x, sp.Add):
            return None
        M = self.M
        for term in x.args:
            where = self._locate(term)
            if where is None or where[0] != "b" or _pick(self.b, *where[1:]) is None:
                continue
            _, lay, i = where
            for e in range(self.B):
                written = term + sum(M.weight(lay, i, k) * M.A(lay - 1, k, e if M.batch else None)
                                     for k in range(self.n[lay - 1]))
                if sp.expand(x - written) == 0:
                    return lay, e, i
        return None

    def gradient(self, x) -> Fraction | None:
        """dC/dx for x an entry w, b, a or z, sigma(z) (that is a) or z written out; None for anything else."""
        if isinstance(x, sigma):
            z = self._z_of(x.args[0])
            return None if z is None else _pick(self.da, *z)
        z = self._z_of(x)
        if z is not None:
            return _pick(self.dz, *z)
        where = self._locate(x)
        if where is None or where[0] not in ("w", "b", "a"):
            return None
        return _pick({"w": self.dw, "b": self.db, "a": self.da}[where[0]], *where[1:])

    def value(self, x) -> sp.Rational | None:
        """The value of a written-out expression in this network; None where it is not defined."""
        if x.is_Rational:
            return x
        if isinstance(x, sp.Indexed):
            v = self.entry(x)
        elif isinstance(x, (sigma, sigma_prime)):
            t = self.value(x.args[0])
            v = None if t is None else self.sigma(Fraction(int(t.p), int(t.q)))[x.func is sigma_prime]
        elif isinstance(x, CostPartial):
            v = self.gradient(x.args[0])
        elif isinstance(x, LocalPartial) or not x.args:
            return None
        else:
            found = {y: self.value(y) for y in x.atoms(sp.Indexed, *_APPLIED)}
            out = x.xreplace({y: v for y, v in found.items() if v is not None})
            return out if out.is_Rational else None  # nan, zoo: divided by zero
        return None if v is None else sp.Rational(v.numerator, v.denominator)


def _with_widths(x, widths: dict):
    """A sum with the widths in its limits, an entry with them in its indices, a guard with them in it."""
    if isinstance(x, Sum):
        return Sum(x.function, *[(v, lo.xreplace(widths), hi.xreplace(widths)) for v, lo, hi in x.limits])
    return x.xreplace(widths)


def _limits_defined(x, bound=frozenset()) -> bool:
    """Every sum's limits are integers or outer summation indices, and no sum runs backwards.

    SymPy's Karr convention makes sum_{k=2}^{0} f(k) = -f(1) where a reader sees an empty
    sum: such a point is not one where the formula as written has a value.
    """
    if isinstance(x, Sum):
        inner = set(bound)
        for var, lo, hi in reversed(x.limits):  # the outermost limit is the last
            if (lo.free_symbols | hi.free_symbols) - inner:
                return False
            if lo.is_Integer and hi.is_Integer and hi < lo - 1:
                return False
            inner.add(var)
        return _limits_defined(x.function, frozenset(inner))
    return all(_limits_defined(a, bound) for a in x.args)


def _written_out(expr, layers: dict, widths: dict):
    """expr at concrete layers and widths, its sums written out where their limits allow (the free indices
    stay symbols).

    The widths go into sum limits, entries' indices and guards only: into the rest once
    every entry was found in the network (_at), so that a factor n - 1 = 0 does not hide
    an entry the formula names that does not exist at that width.
    """
    x = expr.xreplace(layers)
    x = x.replace(lambda y: isinstance(y, (Sum, sp.Indexed, sp.core.relational.Relational)),
                  lambda y: _with_widths(y, widths))
    return x.doit() if _limits_defined(x) else x  # limits with a free index in them: written out at each point


def _at(net: Instance, template, widths: dict, at: dict):
    """(value, {atom: value}) of a written-out expression at the free indices `at`, atoms as written;
    where it is not defined, why, as words and SymPy objects (a list)."""
    if template.has(Sum):
        x = template.subs(at)  # subs, not xreplace: a summation index of the same name stays bound
        if not _limits_defined(x):
            return ["a sum runs backwards or over a range that is not a number"]
        x = x.doit()
    else:
        x = template.xreplace(at)
    entries = x.atoms(sp.Indexed)
    unknown = {s for s in x.free_symbols if type(s) is sp.Symbol} - set(widths) - {y.base.label for y in entries}
    if unknown:
        return ["it names ", min(unknown, key=str), ", which is not a symbol of the model"]
    missing = sorted((y for y in entries if net.entry(y) is None), key=str)
    if missing:
        kind = "that network does not have" if net._locate(missing[0]) else "is not an entry of the model"
        return ["it names ", missing[0], f", which {kind}"]
    x = x.xreplace(widths)
    x = x.xreplace({f: sp.Rational(f) for f in x.atoms(sp.Float)})  # a float as written is an exact binary fraction
    values = {y: net.value(y) for y in x.atoms(*_APPLIED)}
    rest = x.xreplace({y: v for y, v in values.items() if v is not None})
    values.update({y: net.value(y) for y in rest.atoms(sp.Indexed)})
    total = rest.xreplace({y: v for y, v in values.items() if v is not None})
    if total.is_Rational and None not in values.values():
        return total, values
    nameless = sorted((y for y, v in values.items() if v is None), key=str)
    if nameless:
        return ["it names ", nameless[0], ", which the model does not define"]
    return ["it divides by zero there"]


def _value_at(net: Instance, template, widths: dict, at: dict):
    """_at for a template that _written_out made, or the reason it could not make one."""
    return template if isinstance(template, list) else _sympy_can(_at, net, template, widths, at)


def _sympy_can(fn, *args):
    """fn(*args), or why SymPy could not evaluate a formula it was given there (a list, like _at's reasons)."""
    try:
        return fn(*args)
    except (ValueError, TypeError, ArithmeticError, NotImplementedError) as exc:  # SymPy's ways of refusing
        return [f"SymPy cannot evaluate it there ({type(exc).__name__})"]


def _is_width(model: Model, s) -> bool:
    """A width symbol n_{layer} of the model, or the batch size B."""
    return type(s) is sp.Symbol and (s == model.B or (s.name.startswith("n_{") and s == model.width(s.name[3:-1])))


def _layer_exprs(model: Model, exprs) -> set:
    """The layers an expression may name: l, L and its entries' layers, each give or take a few."""
    base = {model.l, model.L} | {y.indices[0] for x in exprs for y in x.atoms(sp.Indexed)}
    return {lam + c for lam in base for c in range(-3, 4)}


def _plans(model: Model, scope: Scope, exprs: list, free: list) -> list:
    """The networks to try, as (sizes, widths per layer, examples): 2 everywhere first, then one symbolic
    width (or B) at 1, 3 or 5, then two, ...; at each (l, L) the theorem's layer range admits."""
    M = model
    syms = set().union(*(x.free_symbols for x in exprs), *(scope.ranges[s][1].free_symbols for s in free))
    widths = sorted((s for s in syms if _is_width(M, s)), key=str)
    layer_of_width = {M.width(lam): lam for lam in _layer_exprs(M, exprs)}
    if any(s != M.B and s not in layer_of_width for s in widths):
        return []  # a width of no layer the model knows: nothing to evaluate
    l_matters = M.l in syms or any(M.l in layer_of_width[s].free_symbols for s in widths if s != M.B)
    plans, seen = [], set()
    for option, (lv, Lv) in enumerate(COUNTER_LAYERS):
        span = scope.layer_range
        if span is not None and not span.lo <= lv <= span.hi.xreplace({M.L: Lv}):
            continue
        if (Lv, lv if l_matters else None) in seen:
            continue
        seen.add((Lv, lv if l_matters else None))
        concrete = {s: layer_of_width[s].xreplace({M.l: sp.Integer(lv), M.L: sp.Integer(Lv)}) for s in widths
                    if s != M.B}
        if not all(c.is_Integer and 0 <= c <= Lv for c in concrete.values()):
            continue  # the formula names a layer this network does not have
        dims = sorted({int(c) for c in concrete.values()}) + (["B"] if M.B in widths else [])
        for order, combo in enumerate(itertools.product(COUNTER_WIDTHS, repeat=len(dims))):
            chosen = dict(zip(dims, combo))
            n = {lay: chosen.get(lay, 2) for lay in range(Lv + 1)}
            examples = chosen.get("B", 2) if M.batch else 1
            sizes = {M.l: lv, M.L: Lv}
            for s in sorted(widths, key=lambda s: (s == M.B, concrete.get(s, 0))):  # widths by layer, then B
                sizes[s] = chosen["B"] if s == M.B else n[int(concrete[s])]
            plans.append((sum(v != 2 for v in combo), option, order, sizes, n, examples))
    plans.sort(key=lambda p: p[:3])
    return [p[3:] for p in plans]


def find_counterexample(model: Model, scope: Scope, lhs: sp.Expr, rhs: sp.Expr, seed: int = 0,
                        points: int = COUNTER_POINTS) -> Counterexample | None:
    """A concrete network, layer and indices where both sides are defined and differ; None if none is found.

    The network obeys every definition (Instance), so delta and dC/dz, a and sigma(z)
    get one value each. Each symbolic width (and B) is tried at 1, 2, 3 and 5 on its own,
    l and L at each pair the theorem admits; a point where a side names an entry the
    network lacks, divides by zero or runs a sum backwards is skipped, never a counterexample.
    """
    return search(model, scope, lhs, rhs, seed, points)[0]


def search(model: Model, scope: Scope, lhs, rhs, seed: int = 0, points: int = COUNTER_POINTS):
    """find_counterexample, and why rhs had no value where it had none at any point tried (or None)."""
    rng = np.random.default_rng(seed)
    lhs, rhs = (divisors_kept(sp.sympify(x)) for x in (lhs, rhs))  # x/x has no value where x = 0
    free = sorted((lhs.free_symbols | rhs.free_symbols) & set(scope.ranges), key=str)
    tried, defined, why = 0, 0, None
    for sizes, n, examples in _plans(model, scope, [lhs, rhs], free):
        if tried == points:
            break
        net = Instance(model, sizes[model.L], n, examples, rng)
        subs = {s: sp.Integer(v) for s, v in sizes.items()}
        layers = {model.l: subs.pop(model.l), model.L: subs.pop(model.L)}
        widths = subs
        spans = []
        for s in free:
            lo, hi = (int(sp.sympify(x).xreplace(widths)) for x in scope.ranges[s])
            spans.append(sorted({lo, lo + 1, hi} & set(range(lo, hi + 1))))  # the first two and the last
        templates = [_sympy_can(_written_out, x, layers, widths) for x in (lhs, rhs)]
        for combo in itertools.product(*spans):
            if tried == points:
                break
            tried += 1
            at = {s: sp.Integer(v) for s, v in zip(free, combo)}
            right = _value_at(net, templates[1], widths, at)  # the formula first: often it has no value
            if isinstance(right, list):
                if why is None:
                    where: list = []
                    for sym, v in (*sizes.items(), *zip(free, combo)):
                        where += [sp.Eq(sym, v, evaluate=False), ", "]
                    why = ["at "] + where[:-1] + [": "] + right
                continue
            defined += 1
            left = _value_at(net, templates[0], widths, at)
            if isinstance(left, tuple) and left[0] != right[0]:
                values = {**left[1], **right[1]}
                ordered = sorted(values, key=lambda y: (isinstance(y, sp.Indexed), str(y)))
                return Counterexample(values=tuple((y, values[y]) for y in ordered), lhs=left[0], rhs=right[0],
                                      sizes=tuple(sizes.items()), indices=tuple(zip(free, combo)),
                                      layer_widths=tuple(n.items())), None
    return None, (why if tried and not defined else None)
