"""A formula as written: each denominator judged on its own value before SymPy cancels it (x/x is not 1 where
x = 0)."""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import Function, Sum

from derive.proofs.general.forms import canonical
from derive.proofs.general.model import Model
from derive.proofs.general.rules import equal_by_linearity
from derive.proofs.general.steps import Scope


class _Divisor(Function):
    """A divisor as written, kept apart until it is a number: x/x is not 1 where x = 0 (SymPy would cancel it first)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_number:
            return x
        return None

    def _latex(self, printer):
        return r"\left(" + printer._print(self.args[0]) + r"\right)"

    def _sympystr(self, printer):
        return "(" + printer._print(self.args[0]) + ")"

    _general_latex, _general_text = _latex, _sympystr


def _is_denominator(x) -> bool:
    """x is a power whose exponent may be negative: its base divides."""
    return isinstance(x, sp.Pow) and not x.exp.is_nonnegative


def _rebuilt(x, args):
    """x with these arguments, evaluated as SymPy builds a new expression; x itself where its class refuses them."""
    try:
        return x.func(*args)
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        return x


def divisors_kept(expr):
    """expr evaluated, each divisor as written wrapped in _Divisor: no evaluation cancels it before it is a number."""
    if not expr.args or isinstance(expr, _Divisor):
        return expr
    args = [divisors_kept(a) for a in expr.args]
    if _is_denominator(expr):
        args[0] = _Divisor(args[0])
    return _rebuilt(expr, args)


def _small_values(s, ranges: dict) -> range | None:
    """The few smallest values of an integer symbol (a summation index is one); None for any other symbol."""
    if not (s.is_integer or s in ranges):
        return None
    if s.is_positive:
        return range(1, 6)
    lo = sp.sympify(ranges[s][0]) if s in ranges else None
    start = 0 if s.is_nonnegative else int(lo) if lo is not None and lo.is_Integer else -5
    return range(start, start + 6)


def _attainable(point: dict, ranges: dict) -> bool:
    """No range bound, once the point is put in, rules the point out (a bound in other widths can grow)."""
    for s, v in point.items():
        if s not in ranges:
            continue
        lo, hi = (sp.sympify(x).xreplace(point) for x in ranges[s])
        if (lo.is_number and v < lo) or (hi.is_number and v > hi):
            return False
    return True


def _zero_at(den, ranges: dict) -> dict | None | bool:
    """An integer point where den, a rational function of integer symbols alone, is 0; None if it is 0 at no
    admissible point; False where that is not decided."""
    den = den.xreplace({f: sp.Rational(f) for f in den.atoms(sp.Float)})  # a float as written: its exact value
    syms = sorted(den.free_symbols, key=str)
    values = [_small_values(s, ranges) for s in syms]
    num = sp.numer(sp.together(den))
    if any(v is None for v in values) or den.has(sp.Indexed, sp.core.function.AppliedUndef) \
            or not num.is_polynomial(*syms):
        return False
    if len(syms) == 1:  # every rational root: the polynomial factored over QQ
        poly = sp.Poly(num, syms[0])
        if not (poly.domain.is_ZZ or poly.domain.is_QQ):
            return False
        s = syms[0]
        for r in sorted(poly.ground_roots()):
            if r.is_integer and r >= values[0].start and _attainable({s: r}, ranges):
                return {s: r}
        return None
    if len(syms) <= 4:  # several: the small values only, which proves nothing when none is a root
        for combo in itertools.product(*values):
            point = dict(zip(syms, map(sp.Integer, combo)))
            if num.xreplace(point) == 0 and _attainable(point, ranges):
                return point
    return False


def as_written(model: Model, scope: Scope, expr):
    """(expr evaluated, why it is not defined everywhere or None), each denominator judged as written first.

    SymPy cancels x/x (and 0 * 1/x) as it builds an expression, before it knows
    whether x is 0: each denominator is decided on its own value, in the tree as the
    caller built it. The reason is (how, words): "everywhere" (a denominator
    identically 0, or a part that is zoo or nan), "somewhere" (0 at an integer
    point: a width, a layer or an index) or "unknown" (not shown nonzero).
    """
    found: list = []

    def judge(written, den, ranges):
        if den.is_zero is False:
            return
        if den.is_zero or equal_by_linearity(den, 0) or equal_by_linearity(canonical(model, den, scope), 0):
            found.append(("everywhere", ["the formula divides by zero at every width: it divides by ", written,
                                         ", which is 0"]))
            return
        try:
            point = _zero_at(den, ranges)
        except (ValueError, TypeError, ArithmeticError, NotImplementedError, sp.PolynomialError):
            point = False  # SymPy could not decide it: not shown nonzero
        if point is None:
            return
        if point is False:
            found.append(("unknown", ["the formula divides by ", written, ", which is not shown nonzero for every "
                                      "network, width and index"]))
            return
        words: list = ["the formula divides by zero at "]
        for sym, v in point.items():
            words += [sp.Eq(sym, v, evaluate=False), ", "]
        words[-1] = ": it is not defined for every width and index"
        found.append(("somewhere", words))

    def walk(x, ranges):
        if x in (sp.zoo, sp.nan):
            found.append(("everywhere", ["the formula has no value at any width: it contains ", x]))
        if not x.args:
            return x
        inner = ranges
        if isinstance(x, Sum):
            inner = {**ranges, **{v: (lo, hi) for v, lo, hi in x.limits}}
        args = [walk(a, inner if pos == 0 else ranges) for pos, a in enumerate(x.args)]  # a sum's body: pos 0
        if _is_denominator(x):
            judge(x.base, args[0], ranges)
        out = _rebuilt(x, args)
        if out.has(sp.zoo, sp.nan) and not any(a.has(sp.zoo, sp.nan) for a in args):
            found.append(("everywhere", ["the formula has no value at any width: ", x, " is ", out]))
        return out

    evaluated = walk(sp.sympify(expr), dict(scope.ranges))
    order = ("everywhere", "somewhere", "unknown")
    found.sort(key=lambda f: order.index(f[0]))
    return evaluated, (found[0] if found else None)
