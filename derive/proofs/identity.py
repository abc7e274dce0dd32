"""What counts as proven: an exact identity in the atoms, and a counterexample when there is none.

Both sides of every identity are polynomials (or, for logarithmic costs, rational
functions) in the atoms: weights, biases, inputs, targets and one fresh symbol per
activation applied to its argument. An identity is proven when the difference
expands (over one common denominator, for rational ones) to 0. Random points only look for a
counterexample when that fails; they never prove anything.
"""

from __future__ import annotations

import functools
import sys
import threading
from dataclasses import dataclass

import numpy as np
import sympy as sp

from derive.network import Network

try:
    import symengine as se
except ImportError:  # pragma: no cover - symengine is a dependency, SymPy is the fallback
    se = None

BACKEND = "symengine" if se is not None else "sympy"


class ToSymEngine:
    """SymPy -> SymEngine, each symbol converted once (a SymEngine graph shares its symbols)."""

    def __init__(self):
        self._symbols: dict = {}

    def __call__(self, x):
        if isinstance(x, sp.Symbol):
            y = self._symbols.get(x)
            if y is None:
                y = self._symbols[x] = se.Symbol(x.name)
            return y
        return se.sympify(x)


# ---------------------------------------------------------------------------
# deep networks: SymPy recurses once per level of an expression
# ---------------------------------------------------------------------------

DEEP_RECURSION_LIMIT = 50_000  # frames; 64 layers (the validator's limit) need about 3,000
DEEP_STACK_BYTES = 512 * 2**20  # SymPy's recursion passes through C calls, so the C stack must grow with it
_deep = threading.local()
_deep_lock = threading.Lock()
_deep_runs: list[int] = []  # the recursion limit to restore, one entry per run in progress


def deep_stack(fn):
    """fn, run in a thread with a large stack and a raised recursion limit (a call from inside one runs in place).

    sympy.diff, xreplace, sympify and the printers recurse once per level of an expression,
    and a network's composed cost nests about 25 levels of calls per layer: past Python's
    default limit of 1000 at about 40 layers. The main thread's stack is fixed by the
    system; a new thread's is not, so the deep work runs in one.
    """

    @functools.wraps(fn)
    def run(*args, **kwargs):
        if getattr(_deep, "active", False):
            return fn(*args, **kwargs)
        outcome: dict = {}

        def target():
            _deep.active = True
            try:
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                outcome["error"] = exc

        with _deep_lock:
            _deep_runs.append(sys.getrecursionlimit())
            sys.setrecursionlimit(max(_deep_runs[0], DEEP_RECURSION_LIMIT))
            size = threading.stack_size(DEEP_STACK_BYTES)
            try:
                thread = threading.Thread(target=target, name=f"deep {fn.__name__}", daemon=True)
                thread.start()
            finally:
                threading.stack_size(size)
        try:
            thread.join()
        finally:
            with _deep_lock:
                first = _deep_runs[0]
                _deep_runs.pop()
                if not _deep_runs:
                    sys.setrecursionlimit(first)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return run


# ---------------------------------------------------------------------------
# exact identity and counterexamples
# ---------------------------------------------------------------------------

class Relations(dict):
    """Every relation the atoms satisfy, as a substitution; `kept` is the part that leaves every atom in place."""

    def __init__(self, kept: dict, reduction: dict):
        super().__init__({**{k: v.xreplace(kept) for k, v in reduction.items()}, **kept})
        self.kept = kept


def relations(net: Network) -> Relations:
    """Identities every value of the atoms satisfies.

    Softmax outputs and one-hot targets sum to 1; an identity neuron's a is its z
    (Network.reduction), written in the atoms below.
    """
    rule = {}
    for e in range(net.E):
        for l in range(1, net.L + 1):
            if not net.acts[l].elementwise:
                a = net.a[e][l]
                rule[a[-1]] = 1 - sp.Add(*a[:-1])
        if net.cost.one_hot:
            y = net.y[e]
            rule[y[-1]] = 1 - sp.Add(*y[:-1])
    return Relations(rule, net.reduction)


def is_identity(lhs: sp.Expr, rhs: sp.Expr, rule: dict | None = None, backend: str | None = None) -> bool:
    """lhs == rhs exactly, as polynomials or rational functions in the atoms.

    The expansion runs in SymEngine when it is installed (about 25 times faster) and
    in SymPy otherwise or when asked; the tests check that both give the same verdicts.
    An identity neuron's a is replaced by its z only when the atoms as they stand do
    not close it: that expansion can be large, and most identities need no reduction.
    """
    diff = lhs - rhs
    kept = getattr(rule, "kept", None)
    if kept is not None and len(kept) < len(rule) and _is_zero(diff.xreplace(kept), backend):
        return True  # holds whatever values the atoms take, so also where a = z
    return _is_zero(diff.xreplace(rule) if rule else diff, backend)


MAX_EXPANDED_TERMS = 20_000  # above this many terms (at most) an expansion would make, shared factors go first
MAX_DECIDED_TERMS = 10**7  # a difference that would expand to more, and that the factors do not close, is not proven


def _is_zero(diff: sp.Expr, backend: str | None) -> bool:
    """diff is 0 as a rational function of the atoms.

    A deep network's partials are long products of sigma' factors such as 1 - a^2, and
    expanding a difference of two of them makes 2^depth terms. So where the expansion
    could be that large, the products are not multiplied out: a product is 0 exactly when
    one of its factors is (these rational functions have no zero divisors), and a sum is
    split into groups of terms that share a compound factor (one example's sigma'
    factors, say), each group's shared factors taken out (gcd_terms, exact); when every
    group is 0 so is the sum, and only otherwise is the whole sum expanded. A sum that
    would still expand to more than MAX_DECIDED_TERMS terms is not decided: False, so
    the caller looks for a counterexample and says UNPROVEN if none is found.
    """
    bound = expansion_terms(diff, {})
    if bound <= MAX_EXPANDED_TERMS:
        return _expands_to_zero(diff, backend)
    if diff.is_Pow and diff.exp.is_positive:
        return _is_zero(diff.base, backend)
    if diff.is_Mul:
        return any(_is_zero(f, backend) for f in diff.args if not (f.is_Pow and f.exp.is_negative))
    if diff.is_Add and expansion_terms(diff, {}, spread=True) <= MAX_DECIDED_TERMS:
        parts = [sp.gcd_terms(sp.Add(*group), fraction=False) for group in _sharing_groups(_spread(diff))]
        if len(parts) > 1 and all(_is_zero(part, backend) for part in parts):
            return True
        if len(parts) == 1:  # the same sum, its shared factors taken out
            if not parts[0].is_Add:
                return _is_zero(parts[0], backend)
            diff, bound = parts[0], expansion_terms(parts[0], {})
    if bound > MAX_DECIDED_TERMS:
        return False  # too large to multiply out: not proven (a counterexample search follows), never a guessed PROVEN
    return _expands_to_zero(diff, backend)


def _spread(expr: sp.Expr) -> list[sp.Expr]:
    """The terms of expr, each factor that is a sum of terms with compound factors multiplied out one level.

    -gamma*(A + B) becomes -gamma*A - gamma*B, while a sum of plain monomials such as 1 - a^2
    stays one factor: what the terms share is then visible to _sharing_groups.
    """
    out = []
    for term in sp.Add.make_args(expr):
        factors = sp.Mul.make_args(term)
        for i, f in enumerate(factors):
            if f.is_Add and any(_has_compound_factor(t) for t in f.args):
                rest = sp.Mul(*factors[:i], *factors[i + 1:])
                out += _spread(sp.Add(*[rest * t for t in f.args]))
                break
        else:
            out.append(term)
    return out


def _has_compound_factor(term: sp.Expr) -> bool:
    return any((f.base if f.is_Pow else f).is_Add for f in sp.Mul.make_args(term))


def _sharing_groups(terms) -> list[list[sp.Expr]]:
    """The terms, grouped so that two terms sharing a compound factor (a sum, or a power of one) are together."""
    parent = list(range(len(terms)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    seen: dict = {}
    for i, term in enumerate(terms):
        for f in sp.Mul.make_args(term):
            base = f.base if f.is_Pow else f
            if base.is_Add:
                if base in seen:
                    parent[root(i)] = root(seen[base])
                else:
                    seen[base] = i
    groups: dict[int, list] = {}
    for i, term in enumerate(terms):
        groups.setdefault(root(i), []).append(term)
    return list(groups.values())


def expansion_terms(expr: sp.Expr, memo: dict, spread: bool = False) -> int:
    """An upper bound on the number of terms expanding expr (its numerator, over one denominator) can make.

    With spread, the bound on the terms _spread makes: a sum of plain monomials counts as one.
    """
    if expr not in memo:
        if expr.is_Add:
            n = sum(expansion_terms(a, memo, spread) for a in expr.args)
            if spread and not any(_has_compound_factor(a) for a in expr.args):
                n = 1
        elif expr.is_Mul:
            n = 1
            for a in expr.args:
                n *= expansion_terms(a, memo, spread)
        elif expr.is_Pow and expr.exp.is_Integer:
            n = expansion_terms(expr.base, memo, spread) ** min(abs(int(expr.exp)), 64)
        else:
            n = 1
        memo[expr] = min(n, 10**30)
    return memo[expr]


def _expands_to_zero(diff: sp.Expr, backend: str | None) -> bool:
    if (backend or BACKEND) == "symengine":
        if se.expand(se.sympify(diff)) == 0:
            return True
        if not has_denominator(diff):
            return False
    else:
        diff = sp.expand(diff)
        if diff == 0:
            return True
    return has_denominator(diff) and rational_zero(diff, backend)


def has_denominator(expr: sp.Expr) -> bool:
    return any(p.exp.is_negative for p in expr.atoms(sp.Pow))


def numerator(expr: sp.Expr) -> sp.Expr | None:
    """A polynomial N, not multiplied out, with expr = N / D for D a product of integer powers of polynomials that are
    not 0 (expr's denominators): so expr is 0 exactly when N expands to 0. None when expr has a power with an
    exponent that is not an integer (a square root): `together` decides those.

    Each subexpression is N over a product of powers of bases (a dict base -> exponent): a product multiplies the
    N's and adds the exponents, so that a base in both cancels; a sum takes each base's largest exponent,
    multiplies each term's N by the powers it lacks, and takes out the factors its terms share (as `together`
    does), so that a product above can cancel them; a negative power of N/D is D's powers over N's. Shared
    subexpressions are read once.
    """
    memo: dict = {}

    def frac(e):
        if e in memo:
            return memo[e]
        if e.is_Pow:
            if not e.exp.is_Integer:
                if e.free_symbols and (e.exp.is_negative or has_denominator(e.base)):
                    raise _NotRational
                out = (e, {})
            else:
                n, dens = frac(e.base)
                k = int(e.exp)
                if k >= 0:
                    out = (n ** k, {b: m * k for b, m in dens.items()})
                else:
                    out = (sp.Mul(*[b ** (-m * k) for b, m in dens.items()]), {n: -k})
        elif e.is_Mul:  # numerator factors and denominators as signed powers of their bases: equal ones cancel
            powers: dict = {}
            for n, d in map(frac, e.args):
                for b, k in _powers(n).items():
                    powers[b] = powers.get(b, 0) + k
                for b, m in d.items():
                    powers[b] = powers.get(b, 0) - m
            out = (sp.Mul(*[b ** k for b, k in powers.items() if k > 0]),
                   {b: -k for b, k in powers.items() if k < 0})
        elif e.is_Add:
            parts = [frac(a) for a in e.args]
            dens = {}
            for _, d in parts:
                for b, m in d.items():
                    dens[b] = max(dens.get(b, 0), m)
            terms = [_powers(n) for n, _ in parts]
            for t, (_, d) in zip(terms, parts):
                for b, m in dens.items():
                    if m > d.get(b, 0):
                        t[b] = t.get(b, 0) + m - d.get(b, 0)
            shared = {b: min(t.get(b, 0) for t in terms) for b in terms[0] if not b.is_Number}
            shared = {b: k for b, k in shared.items() if k > 0}
            rest = sp.Add(*[sp.Mul(*[b ** (k - shared.get(b, 0)) for b, k in t.items()]) for t in terms])
            out = (sp.Mul(*[b ** k for b, k in shared.items()], rest), dens)
        else:  # a symbol, a number, a function of its argument: an atom of the polynomial
            if not e.is_Atom and has_denominator(e):
                raise _NotRational  # a denominator inside a function's argument stays where it is
            out = (e, {})
        memo[e] = out
        return out

    try:
        return frac(expr)[0]
    except _NotRational:
        return None


def _powers(n: sp.Expr) -> dict:
    """A product as its bases' integer powers: x**2*(1 - a) -> {x: 2, 1 - a: 1} (a number is a base too)."""
    out: dict = {}
    for f in sp.Mul.make_args(n):
        b, k = (f.base, int(f.exp)) if f.is_Pow and f.exp.is_Integer else (f, 1)
        out[b] = out.get(b, 0) + k
    return out


class _NotRational(Exception):
    """A power numerator() does not put over a common denominator."""


def rational_zero(diff: sp.Expr, backend: str | None = None) -> bool:
    """A difference with denominators (logarithmic costs) is 0: its numerator over a common denominator expands to 0.

    The numerator is numerator()'s, whose denominators cancel where a product holds them (σ'(z) = a(1 − a) against
    cross-entropy's a(1 − a) below), else `together`'s."""
    numer = numerator(diff)
    if numer is None:
        numer, _ = sp.fraction(sp.together(diff))
    if (backend or BACKEND) == "symengine":
        return se.expand(se.sympify(numer)) == 0
    return sp.expand(numer) == 0


@dataclass(frozen=True)
class Counterexample:
    """A point where both sides are defined and differ: the values there and each side's value.

    A concrete proof's point gives every free symbol a float (`values` a dict by name); a
    general proof's gives the layer, widths and indices it picked and each entry an exact
    value (`values` pairs of SymPy objects).
    """

    values: dict[str, float] | tuple  # every free symbol; or (entry, Rational): sigma'(z), dC/da, delta, w, a ...
    lhs: float | sp.Rational
    rhs: float | sp.Rational
    sizes: tuple = ()  # (symbol, int): l, L, the widths, B
    indices: tuple = ()  # (symbol, int): the free indices
    layer_widths: tuple = ()  # (layer, width) of the whole network, 0..L

    def to_json(self) -> dict:
        """What a proof's --json says of it: the point's values and the two sides there."""
        return {"values": self.values, "chain_rule": self.lhs, "other": self.rhs}

    def parts(self) -> list:
        out: list = ["counterexample at "]
        for sym, v in (*self.sizes, *self.indices):
            out += [sp.Eq(sym, v, evaluate=False), ", "]
        out[-1] = ": the sides are "
        out += [sp.Ne(self.lhs, self.rhs, evaluate=False), " with "]
        for x, v in self.values:
            out += [sp.Eq(x, v, evaluate=False), ", "]
        return out[:-1]

    def text(self) -> str:
        from derive.proofs.general.printing import render_parts  # the general proof's printers sit above this module

        return render_parts(self.parts(), "text")


def find_counterexample(net: Network, lhs: sp.Expr, rhs: sp.Expr, tries: int = 8, seed: int = 0) -> Counterexample | None:
    """Random points of the real network (atoms computed by the forward pass) where lhs != rhs."""
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        free = net.free_values(rng)
        vals = net.forward_values(free)
        if net.on_kink(vals):
            continue  # sigma' has no value there: a witness must be a point where both sides are defined
        left = sp.N(lhs.xreplace(vals), 30)
        right = sp.N(rhs.xreplace(vals), 30)
        try:
            lf, rf = float(left), float(right)
        except TypeError:
            continue
        if abs(lf - rf) > 1e-12 * (1 + abs(lf) + abs(rf)) or (left != right and _stays_apart(net, free, lhs, rhs, left - right)):
            names = {str(k): float(v) for k, v in sorted(free.items(), key=lambda kv: str(kv[0]))}
            return Counterexample(names, lf, rf)
    return None


def _stays_apart(net: Network, free: dict, lhs: sp.Expr, rhs: sp.Expr, difference: sp.Expr) -> bool:
    """A difference too small for the test above (a deep network's vanishing gradients) is real when it
    stays the same, to 6 digits, with the point evaluated again at twice the precision; rounding does not."""
    vals = net.forward_values(free, 60)
    again = sp.N(lhs.xreplace(vals), 60) - sp.N(rhs.xreplace(vals), 60)
    return again != 0 and abs(again - difference) <= 1e-6 * abs(again)
