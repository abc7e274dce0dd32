"""The activation table: one entry per activation, everything else is derived from it.

Each entry gives the SymPy definition sigma(z), the LaTeX name, the name of the
numerically stable function the generated code calls, and the range of z that
tests sample. Derivatives are never typed in: `prime` is `sympy.diff` of the
definition, and `output_form` searches for sigma' written through a = sigma(z)
(sigma' = a(1 - a), tanh' = 1 - a**2) and keeps it only when SymPy proves it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import combinations
from typing import Callable

import mpmath
import sympy as sp

z = sp.Symbol("z")
a = sp.Symbol("a")
LEAK = sp.Rational(1, 100)


@dataclass(frozen=True)
class OutputRange:
    """The values an output activation takes (as rounded), where a cost takes their logs."""

    low: int
    high: int
    rows_sum_to_one: bool  # each row is a distribution (its sum is 1 up to rounding)
    text: str  # the range, for an error message


def _helper(name: str) -> type[sp.Function]:
    """A function that the generated code prints as a call to its stable helper `name`."""
    return sp.Function(name)


@dataclass(frozen=True)
class Activation:
    name: str
    definition: Callable[[sp.Expr], sp.Expr]
    latex: str  # in documents and claims' output
    sample: tuple[float, float]  # the range of z that tests sample
    elementwise: bool = True
    stable: str | None = None  # the generated module's stable helper that computes it (templates/helpers/<stable>.*.j2)
    stable_logs: Callable[[sp.Expr], dict] | None = None  # z -> {log a: ..., log(1 - a): ...}, finite for every z
    output_range: OutputRange | None = None  # its values, where a cost takes their logs
    claim_names: tuple[str, ...] = ()  # other names a claim may call it by (text and LaTeX)
    claim_latex: str | None = None  # how a claim's formula prints it, when not `latex`
    notation_sigma: bool = False  # a document writes it as the notation's own sigma letter

    # -- derived from the definition, never typed in ----------------------
    @property
    def expr(self) -> sp.Expr:
        return self.definition(z)

    @property
    def polynomial(self) -> bool:
        """sigma(z) is a polynomial in z (identity): a = sigma(z) needs no atom of its own."""
        return self.elementwise and self.expr.is_polynomial(z) is True

    @property
    def prime(self) -> sp.Expr:
        """sigma'(z) by sympy.diff of the definition."""
        return _prime(self.name)

    @property
    def kinks(self) -> tuple[sp.Expr, ...] | None:
        """The z where sigma is not differentiable (ReLU: 0), found in the definition; None if unknown."""
        return _kinks(self.name)

    @property
    def pieces(self) -> tuple[tuple[sp.Expr, sp.Expr], ...] | None:
        """(slope, offset) on each piece between the kinks of a piecewise-linear sigma; None otherwise."""
        return _pieces(self.name)

    @property
    def output_form(self) -> sp.Expr | None:
        """sigma'(z) as a polynomial in a = sigma(z), when one exists and is proven."""
        return _output_form(self.name)

    @property
    def function(self) -> type[sp.Function]:
        """A SymPy function class sigma whose derivative rule comes from `prime`."""
        return _function(self.name)

    @property
    def prime_function(self) -> type[sp.Function]:
        """A SymPy function class for sigma' (used when no output form exists)."""
        return _prime_function(self.name)


def _softmax_def(j: int, zs) -> sp.Expr:
    return sp.exp(zs[j]) / sp.Add(*[sp.exp(v) for v in zs])


UNIT = OutputRange(0, 1, False, "entries in [0, 1]")
SIMPLEX = OutputRange(0, 1, True, "rows of entries in [0, 1] that sum to 1")


def _sigmoid_logs(z: sp.Expr) -> dict:
    """log sigma(z) = -softplus(-z), log(1 - sigma(z)) = -softplus(z) (tests/test_codegen.py proves both)."""
    return {"log_a": -_helper("softplus")(-z), "log_one_minus_a": -_helper("softplus")(z)}


def _softmax_logs(z: sp.Expr) -> dict:
    """log softmax(z) = log_softmax(z), taken along each row."""
    return {"log_a": _helper("log_softmax")(z)}


#            name          definition                           LaTeX                      sample z
ACTIVATIONS: dict[str, Activation] = {
    act.name: act
    for act in [
        Activation("sigmoid",    lambda v: 1 / (1 + sp.exp(-v)),     r"\sigma",                 (-4.0, 4.0),
                   stable="sigmoid", stable_logs=_sigmoid_logs, output_range=UNIT,
                   claim_latex=r"\operatorname{sigmoid}", notation_sigma=True),
        Activation("tanh",       lambda v: sp.tanh(v),                r"\tanh",                  (-3.0, 3.0)),
        Activation("relu",       lambda v: sp.Max(0, v),              r"\operatorname{ReLU}",    (-3.0, 3.0), claim_names=("ReLU",)),
        Activation("leaky_relu", lambda v: sp.Max(LEAK * v, v),       r"\operatorname{LReLU}",   (-3.0, 3.0), claim_names=("LReLU",)),
        Activation("softplus",   lambda v: sp.log(1 + sp.exp(v)),     r"\operatorname{softplus}", (-4.0, 4.0), stable="softplus"),
        Activation("identity",   lambda v: v,                         r"\operatorname{id}",      (-3.0, 3.0), claim_names=("id",)),
        Activation("softmax",    _softmax_def,                        r"\operatorname{softmax}", (-4.0, 4.0), elementwise=False,
                   stable="softmax", stable_logs=_softmax_logs, output_range=SIMPLEX),
    ]
}


def get(name: str) -> Activation:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise KeyError(f"activation {name!r} not in the table ({', '.join(ACTIVATIONS)})") from None


# ---------------------------------------------------------------------------
# Derivatives, found by SymPy
# ---------------------------------------------------------------------------

@cache
def _kinks(name: str) -> tuple[sp.Expr, ...] | None:
    """The z where an elementwise activation is not differentiable (ReLU: 0), from its SymPy definition; None if unknown.

    Every Heaviside, sign, Abs or DiracDelta of u, every Max or Min of u and v, every
    Piecewise condition u < v switches where u - v = 0.
    """
    act = ACTIVATIONS[name]
    if not act.elementwise:
        return ()
    switches = []
    for expr in (act.expr, act.prime):
        for f in sp.preorder_traversal(expr):
            if isinstance(f, (sp.Heaviside, sp.sign, sp.Abs, sp.DiracDelta)):
                switches.append(f.args[0])
            elif isinstance(f, (sp.Max, sp.Min)):
                switches += [u - v for u, v in combinations(f.args, 2)]
            elif isinstance(f, sp.Piecewise):
                switches += [c.lhs - c.rhs for _, c in f.args if isinstance(c, sp.core.relational.Relational)]
    out: set = set()
    for u in switches:
        roots = sp.solveset(u, z, sp.S.Reals)
        if not isinstance(roots, sp.FiniteSet):
            return None
        out |= set(roots)
    return tuple(sorted(out, key=float))


@cache
def _pieces(name: str) -> tuple[tuple[sp.Expr, sp.Expr], ...] | None:
    """(slope, offset) of a piecewise-linear activation on each piece between its kinks (ReLU: (0, 0), (1, 0)); else None."""
    ks = _kinks(name)
    if not ks:
        return None
    act = ACTIVATIONS[name]
    bounds = [ks[0] - 3, *ks, ks[-1] + 3]
    out = []
    for lo, hi in zip(bounds, bounds[1:]):
        found = set()
        for p in (lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3):
            slope = act.prime.subs(z, p)
            found.add((slope, act.expr.subs(z, p) - slope * p))
        if len(found) != 1 or not all(x.is_Rational for x in next(iter(found))):
            return None
        out.append(found.pop())
    return tuple(out)


@cache
def _prime(name: str) -> sp.Expr:
    act = ACTIVATIONS[name]
    if not act.elementwise:
        raise ValueError(f"{name} is vector-valued: use softmax_jacobian_entry")
    return sp.diff(act.definition(z), z)


@cache
def _output_form(name: str) -> sp.Expr | None:
    """sigma'(z) as c0 + c1 a + c2 a^2 with a = sigma(z), if such a form exists.

    The coefficients are guessed from three points (numbers only find a candidate),
    checked at two more, and kept only when the identity is proven for every z:
    with exp(z) = t the difference is a rational function of t, and `cancel` must
    bring it to 0.
    """
    act = ACTIVATIONS[name]
    if not act.elementwise:
        return None
    s, d = act.definition(z), _prime(name)
    fit, check = [-1.0, 0.5, 2.0], [-2.5, 1.25]

    def value(expr, point):
        return float(expr.subs(z, point).evalf(30))

    A = [[1.0, value(s, p), value(s, p) ** 2] for p in fit]
    coef = mpmath.lu_solve(mpmath.matrix(A), mpmath.matrix([value(d, p) for p in fit]))
    c = [sp.Rational(str(mpmath.nstr(v, 12))).limit_denominator(1000) for v in coef]
    form = c[0] + c[1] * a + c[2] * a**2
    if any(abs(value(form.subs(a, s), p) - value(d, p)) > 1e-9 for p in check):
        return None
    t = sp.Symbol("t", positive=True)
    difference = (d - form.subs(a, s)).rewrite(sp.exp).subs(z, sp.log(t))
    if sp.cancel(sp.powsimp(difference)) != 0:
        return None
    return _readable(form)


def _readable(poly: sp.Expr) -> sp.Expr:
    """a - a**2 as a*(1 - a), 1 - a**2 as it is: the form a reader expects."""
    f = sp.factor(poly)
    if not (isinstance(f, sp.Mul) and a in f.args):
        return poly
    if f.could_extract_minus_sign():
        for arg in f.args:
            if isinstance(arg, sp.Add):
                rest = sp.Mul(*[x for x in f.args if x is not arg])
                return sp.Mul(-rest, -arg, evaluate=False) if (-rest) != 1 else -arg
    return f if isinstance(f, sp.Mul) else poly


def _evalf_via(definition):
    def _eval_evalf(self, prec):
        return definition(*self.args).evalf(mpmath.libmp.prec_to_dps(prec))

    return _eval_evalf


@cache
def _prime_function(name: str) -> type[sp.Function]:
    d = _prime(name)
    return type(
        f"{name}_prime",
        (sp.Function,),
        {"nargs": 1, "_eval_evalf": _evalf_via(lambda v: d.subs(z, v)), "__module__": __name__},
    )


@cache
def _function(name: str) -> type[sp.Function]:
    act = ACTIVATIONS[name]
    if not act.elementwise:
        return Softmax
    form = _output_form(name)

    def fdiff(self, argindex=1):
        if form is not None:
            return form.xreplace({a: self})  # sigma'(u) written through sigma(u)
        return _prime_function(name)(self.args[0])

    return type(
        name,
        (sp.Function,),
        {"nargs": 1, "fdiff": fdiff, "_eval_evalf": _evalf_via(act.definition), "__module__": __name__},
    )


# ---------------------------------------------------------------------------
# softmax: vector-valued, its Jacobian is not diagonal
# ---------------------------------------------------------------------------

@cache
def softmax_jacobian_entry(n: int, j: int, m: int) -> sp.Expr:
    """d a_j / d z_m of an n-way softmax, as a polynomial in the outputs a_0..a_{n-1}.

    sympy.diff of exp(z_j)/sum(exp(z)) is rewritten with exp(z_i) = a_i * S; the
    result is N(a)/(sum a)^2 and every softmax output has sum a = 1, so it is N(a).
    """
    zs = sp.symbols(f"z0:{n}")
    outs = sp.symbols(f"a0:{n}")
    S = sp.Symbol("S", positive=True)
    d = sp.diff(_softmax_def(j, zs), zs[m]).subs({sp.exp(zs[i]): outs[i] * S for i in range(n)})
    num, den = sp.fraction(sp.cancel(d))
    if num == 0:  # a one-way softmax is the constant 1
        return sp.Integer(0), outs
    total = sp.Add(*outs)
    ratio = sp.cancel(den / total**2)
    if ratio.free_symbols:
        raise AssertionError("softmax Jacobian did not reduce to N/(sum a)^2")
    return sp.expand(num / ratio), outs


class Softmax(sp.Function):
    """softmax(j, z_0, ..., z_{n-1}) = exp(z_j) / sum_m exp(z_m)."""

    def fdiff(self, argindex=1):
        j, zs = int(self.args[0]), self.args[1:]
        m = argindex - 2
        if m < 0:
            raise sp.ArgumentIndexError(self, argindex)
        entry, outs = softmax_jacobian_entry(len(zs), j, m)
        return entry.xreplace({outs[i]: Softmax(i, *zs) for i in range(len(zs))})

    def _eval_evalf(self, prec):
        j, zs = int(self.args[0]), self.args[1:]
        return _softmax_def(j, zs).evalf(mpmath.libmp.prec_to_dps(prec))
