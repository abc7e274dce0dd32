"""Exact proofs: the chain rule, the sympy.diff oracle and the matrix forms meet.

Both sides of every identity are polynomials (or, for logarithmic costs, rational
functions) in the atoms: weights, biases, inputs, targets and one fresh symbol per
activation applied to its argument. An identity is proven when the difference
expands (after `together`, for rational ones) to 0. Random points only look for a
counterexample when that fails; they never prove anything.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from derive.chain import ChainRule, Derivation
from derive.matrix import Form, MatrixForms
from derive.network import Network, Param
from derive.spec import Spec, load_spec

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
    bound = _expansion_terms(diff, {})
    if bound <= MAX_EXPANDED_TERMS:
        return _expands_to_zero(diff, backend)
    if diff.is_Pow and diff.exp.is_positive:
        return _is_zero(diff.base, backend)
    if diff.is_Mul:
        return any(_is_zero(f, backend) for f in diff.args if not (f.is_Pow and f.exp.is_negative))
    if diff.is_Add and _expansion_terms(diff, {}, spread=True) <= MAX_DECIDED_TERMS:
        parts = [sp.gcd_terms(sp.Add(*group), fraction=False) for group in _sharing_groups(_spread(diff))]
        if len(parts) > 1 and all(_is_zero(part, backend) for part in parts):
            return True
        if len(parts) == 1:  # the same sum, its shared factors taken out
            if not parts[0].is_Add:
                return _is_zero(parts[0], backend)
            diff, bound = parts[0], _expansion_terms(parts[0], {})
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


def _expansion_terms(expr: sp.Expr, memo: dict, spread: bool = False) -> int:
    """An upper bound on the number of terms expanding expr (its numerator, over one denominator) can make.

    With spread, the bound on the terms _spread makes: a sum of plain monomials counts as one.
    """
    if expr not in memo:
        if expr.is_Add:
            n = sum(_expansion_terms(a, memo, spread) for a in expr.args)
            if spread and not any(_has_compound_factor(a) for a in expr.args):
                n = 1
        elif expr.is_Mul:
            n = 1
            for a in expr.args:
                n *= _expansion_terms(a, memo, spread)
        elif expr.is_Pow and expr.exp.is_Integer:
            n = _expansion_terms(expr.base, memo, spread) ** min(abs(int(expr.exp)), 64)
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
    return has_denominator(diff) and rational_zero(diff)


def has_denominator(expr: sp.Expr) -> bool:
    return any(p.exp.is_negative for p in expr.atoms(sp.Pow))


def rational_zero(diff: sp.Expr) -> bool:
    """A difference with denominators (logarithmic costs) is 0: its numerator over a common denominator expands to 0."""
    num, _ = sp.fraction(sp.together(diff))
    return sp.expand(num) == 0


@dataclass(frozen=True)
class Counterexample:
    values: dict[str, float]  # every free symbol (weights, biases, inputs, targets)
    lhs: float
    rhs: float


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


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

@dataclass
class Check:
    """One scalar identity and its verdict."""

    name: str  # "dC/dw2[0,1]", "delta1[0]"
    kind: str  # "weight", "bias", "delta", "form"
    form: str  # the matrix form's key
    entry: tuple[int, int]
    matrix: sp.Expr
    chain: sp.Expr
    oracle: sp.Expr | None = None
    derivation: Derivation | None = None
    proven: bool = False
    counterexample: Counterexample | None = None
    layer: int = 0

    @property
    def verdict(self) -> str:
        if self.proven:
            return "PROVEN"
        return "REFUTED" if self.counterexample else "UNPROVEN"


@dataclass
class Proof:
    spec: Spec
    net: Network
    chain: ChainRule
    forms: MatrixForms
    checks: list[Check] = field(default_factory=list)
    oracle: str = "all"  # "all", "sample", "none"
    output_delta: list[sp.Expr] = field(default_factory=list)  # BP1 of example 0, simplified
    output_delta_is_a_minus_y: bool = False
    seconds: float = 0.0
    note: str = ""  # said in the report, e.g. that the widths were reduced

    @property
    def partials(self) -> list[Check]:
        return [c for c in self.checks if c.kind in ("weight", "bias")]

    @property
    def ok(self) -> bool:
        return all(c.proven for c in self.checks)

    def summary(self) -> str:
        parts = self.partials
        good = sum(c.proven for c in parts)
        with_oracle = sum(c.oracle is not None for c in parts)
        if self.net.spec.convention == "column":
            product = "δAᵀ"
        else:
            product = "δA" if self.net.E == 1 else "Aᵀδ"
        how = "chain rule = sympy.diff = " + product
        if with_oracle < len(parts):
            how = f"chain rule = matrix form; sympy.diff on {with_oracle} of them"
        return f"{good}/{len(parts)} partials of C proven equal to the matrix form ({how})"

    def forms_summary(self) -> str:
        others = [c for c in self.checks if c.kind not in ("weight", "bias")]
        keys = list(dict.fromkeys(c.form for c in others))
        kinds = ["forward pass"] if any(k.startswith("z") for k in keys) else []
        kinds.append("δ recursion")
        if any("(D)" in k for k in keys):
            kinds.append("diagonal and unrolled forms")
        if any("transposed" in k for k in keys):
            kinds.append("transposed change matrices")
        kinds.append("update")
        return (f"{sum(c.proven for c in others)}/{len(others)} entries of {len(keys)} further matrix forms proven "
                f"({', '.join(kinds)})")


# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

_W = sp.Symbol("_W")  # stands for the parameter in an oracle pattern
_X = [sp.Symbol(f"_X{e}") for e in range(64)]  # and for the input it multiplies, per example


@deep_stack
def oracle_partial(net: Network, p: Param) -> sp.Expr:
    """dC/dp by sympy.diff of the composed cost, then written in the atoms.

    What does not depend on p is held as a symbol (Network.composed_for): its
    derivative is 0 either way, and the expression sympy.diff walks stays small.
    Every weight into the same neuron gives the same composed expression up to the
    names of the weight and of the input it multiplies, so sympy.diff runs once per
    neuron on that pattern (parameter and input as the symbols _W, _X) and each
    partial is the pattern's derivative with the names put back: renaming symbols
    commutes with differentiation.
    """
    cache = net.__dict__.setdefault("_oracle_patterns", {})
    key = (p.layer, p.j, p.kind, p.is_bias)
    inputs = [_input_of(net, e, p) for e in range(net.E)]
    composed = None
    if key not in cache:
        C, rule, held = composed = net.composed_for(p.symbol)
        rename = {p.symbol: _W, **{x: _X[e] for e, x in enumerate(inputs) if x.is_Symbol}}
        pattern = C.xreplace(rename)
        if any(pattern.has(x) for x in rename):  # the names must occur only where p's term is
            cache[key] = None
        else:
            d = sp.diff(pattern, _W).xreplace({k.xreplace(rename): v for k, v in rule.items()})
            cache[key] = None if d.free_symbols & set(held) else d
    pattern = cache[key]
    if pattern is None:  # a held part survived outside an activation: no pattern, do it directly
        C, rule, held = composed or net.composed_for(p.symbol)
        return sp.diff(C, p.symbol).xreplace(rule).xreplace(held)
    return pattern.xreplace({_W: p.symbol, **{_X[e]: x for e, x in enumerate(inputs) if x.is_Symbol}})


def _input_of(net: Network, e: int, p: Param) -> sp.Expr:
    """What p multiplies in its pre-activation: a^{(l-1)}_k, or 1 for a bias."""
    return sp.Integer(1) if p.is_bias else net.a[e][p.layer - 1][p.k]


def _entry_target(forms: MatrixForms, form: Form, r: int, c: int, chain: ChainRule, partial) -> tuple[str, str, sp.Expr, Param | None]:
    """What entry (r, c) of a form must equal, by the chain rule: (name, kind, value, param)."""
    net = forms.net
    if form.truth in ("delta", "z", "delta_col"):
        e, j = forms.example_neuron(form, r, c)
        sfx = f", example {e}" if net.E > 1 else ""
        if form.truth == "z":
            return f"z{form.layer}[{j}]{sfx}", "form", net.z[e][form.layer][j], None
        kind = "delta" if form.truth == "delta" else "form"
        return f"delta{form.layer}[{j}]{sfx}", kind, chain.delta(e, form.layer, j), None
    p = forms.param_of(form, r, c)
    if form.truth == "update":
        return f"{p.name} updated", "form", p.symbol - forms.gamma * partial(p), p
    if form.truth == "gradT":
        return f"dC/d{p.name} (transposed)", "form", partial(p), p
    return f"dC/d{p.name}", "bias" if p.is_bias else "weight", partial(p), p


@deep_stack
def prove(spec: Spec | str | Network, oracle: str = "all", sample: int = 50, seed: int = 0,
          forms: MatrixForms | None = None) -> Proof:
    """Prove every partial, delta and matrix form of a network; return the checks."""
    t0 = time.perf_counter()
    net = spec if isinstance(spec, Network) else Network(load_spec(spec))
    chain = ChainRule(net)
    forms = forms or MatrixForms(net)
    rule = relations(net)
    proof = Proof(net.spec, net, chain, forms, oracle=oracle)

    oracle_for = set()
    if oracle == "all":
        oracle_for = {p.symbol for p in net.params}
    elif oracle == "sample":
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(net.params), size=min(sample, len(net.params)), replace=False)
        oracle_for = {net.params[i].symbol for i in sorted(pick)}

    derivations: dict = {}

    def partial(p: Param) -> sp.Expr:
        if p.symbol not in derivations:
            derivations[p.symbol] = chain.derive(p)
        return derivations[p.symbol].value

    for form in forms.forward + forms.forms:
        value = forms.evaluated[form.key]
        for r in range(value.rows):
            for c in range(value.cols):
                name, kind, truth, p = _entry_target(forms, form, r, c, chain, partial)
                check = Check(name, kind, form.key, (r, c), value[r, c], truth, layer=form.layer)
                if kind in ("weight", "bias"):
                    check.derivation = derivations[p.symbol]
                    if p.symbol in oracle_for:
                        check.oracle = oracle_partial(net, p)
                check.proven = is_identity(check.chain, check.matrix, rule) and (
                    check.oracle is None or is_identity(check.oracle, check.chain, rule)
                )
                if not check.proven:
                    bad = check.oracle if check.oracle is not None and not is_identity(check.oracle, check.chain, rule) else check.matrix
                    check.counterexample = find_counterexample(net, check.chain, bad)
                proof.checks.append(check)
    proof.output_delta, proof.output_delta_is_a_minus_y = simplify_output_delta(net, forms, rule)
    proof.seconds = time.perf_counter() - t0
    return proof


def simplify_output_delta(net: Network, forms: MatrixForms, rule: dict) -> tuple[list[sp.Expr], bool]:
    """BP1 of the first example, brought to lowest terms, and whether it is exactly a^L - y.

    The cancellation is symbolic: sigmoid with cross-entropy and softmax with
    log-likelihood (targets summing to 1) both reduce to a^L_j - y_j.
    """
    value = forms.evaluated["BP1"]
    L, n = net.L, net.sizes[net.L]
    entries = [value[0, j] if forms.row else value[j, 0] for j in range(n)]
    kept = getattr(rule, "kept", rule)  # shown in the atoms as they stand: a^L - y, not its z written out
    back = {v: k for k, v in kept.items()}  # show softmax/one-hot substitutions undone where they stand alone
    simplified = [sp.factor(sp.cancel(sp.together(e.xreplace(kept)))).xreplace(back) for e in entries]
    plain = all(is_identity(e, net.a[0][L][j] - net.y[0][j], rule) for j, e in enumerate(entries))
    return simplified, plain


@deep_stack
def check_form(net: Network, form: Form, forms: MatrixForms | None = None, extra: dict | None = None) -> list[Check]:
    """Check one (possibly wrong) matrix form against the chain rule, entry by entry.

    The form's expression is evaluated with the network's true matrices; for a form that
    stands for a delta, the deltas it uses are the proven ones. `extra` gives values
    for MatrixSymbols the form uses that the network does not have.
    """
    forms = forms or MatrixForms(net)
    chain = ChainRule(net)
    rule = relations(net)
    value = sp.Matrix(form.expr.xreplace({**forms.values, **(extra or {})}).doit())
    if value.shape != form.lhs.shape:
        raise ValueError(f"{form.key}: the form is {value.shape[0]}×{value.shape[1]} but "
                         f"{form.lhs.name} is {form.lhs.shape[0]}×{form.lhs.shape[1]}")
    derivs: dict = {}

    def partial(p):
        if p.symbol not in derivs:
            derivs[p.symbol] = chain.derive(p, list_paths=False).value
        return derivs[p.symbol]

    out = []
    for r in range(value.rows):
        for c in range(value.cols):
            name, kind, truth, _ = _entry_target(forms, form, r, c, chain, partial)
            chk = Check(name, kind, form.key, (r, c), value[r, c], truth, layer=form.layer)
            chk.proven = is_identity(truth, value[r, c], rule)
            if not chk.proven:
                chk.counterexample = find_counterexample(net, truth, value[r, c])
            out.append(chk)
    return out
