"""The general proof: BP1-BP4 for every width and every depth (issue 5).

The concrete proofs check one network at a time. Here the widths are positive
integer symbols (n_{l-1}, n_l, n_{l+1}, n_L, and B examples in a batch), the
weights, activations and pre-activations are SymPy `Indexed` entries whose first
index is the layer, sigma is an undefined function whose derivative is sigma', and
the cost C is an undefined function of the output activations a^L only.

Each theorem is a list of chains of equalities. Every step names its rule and is
checked on its own statement, after it was built:

- sympy.diff and the Kronecker sum (SymPy's delta summation) are recomputed by SymPy;
- a Piecewise range guard is dropped only when SymPy decides the guard is True
  with the index ranges as assumptions (0 <= j <= n-1 is written n = j + 1 + r, r >= 0);
- the chain rule, the induction hypothesis, substitutions and the linearity of a
  sum are rules SymPy cannot apply to a symbolic number of terms: the step is
  rebuilt from the rule's bindings and must be identical, and the chain rule's
  premise (C depends on x only through u) is read off the model's definitions;
- the last step compares the derived expression with the formula (the textbook one,
  or a candidate a caller passes in), each quantity the model defines written one way
  (dC/dz as delta, sigma(z) as a, z by its definition); one that is not equal is
  refuted by a counterexample: a concrete network that obeys every definition, each
  width tried at 1, 2, 3 and 5, where both sides are defined and differ, in exact rationals.
  Each denominator of the formula is judged first, as written (SymPy cancels x/x before
  it knows x): one that is 0 anywhere, or not shown nonzero, leaves the formula unproven.

BP1 is the base case and BP2 the inductive step: together they give delta^l for
every layer of a network of any depth; BP3 and BP4 then give every gradient.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import sympy as sp
from sympy import Function, IndexedBase, KroneckerDelta, Piecewise, Sum
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter
from sympy.simplify.simplify import factor_sum

from derive.errors import DeriveError

INDEX = {"integer": True, "nonnegative": True}
WIDTH = {"integer": True, "positive": True}
SETTINGS = ("column", "row", "column-batch", "row-batch")
THEOREMS = ("BP1", "BP2", "BP3", "BP4")


def _unknown_theorem(key) -> DeriveError:
    return DeriveError(f"unknown theorem {key!r}; the theorems are {', '.join(THEOREMS)}")


# ---------------------------------------------------------------------------
# the undefined functions: sigma, sigma', dC/dx and the chain rule's local factor
# ---------------------------------------------------------------------------

class _Printed(Function):
    """An undefined function printed by a format string per subclass: one "{}" per argument."""

    _tex_format = ""
    _text_format = ""

    def _latex(self, printer):
        return self._tex_format.format(*(printer._print(a) for a in self.args))

    def _sympystr(self, printer):
        return self._text_format.format(*(printer._print(a) for a in self.args))

    _general_latex, _general_text = _latex, _sympystr


class sigma_prime(_Printed):
    """sigma'(x): the derivative of the activation, left undefined."""

    nargs = 1
    _tex_format = r"\sigma'\left({}\right)"
    _text_format = "σ'({})"


class sigma(_Printed):
    """The activation, left undefined; its derivative is sigma'."""

    nargs = 1
    _tex_format = r"\sigma\left({}\right)"
    _text_format = "σ({})"

    def fdiff(self, argindex=1):
        return sigma_prime(self.args[0])


class CostPartial(_Printed):
    """dC/dx for one entry x: it exists because C is differentiable; it is never expanded."""

    nargs = 1
    _tex_format = r"\frac{{\partial C}}{{\partial {}}}"
    _text_format = "∂C/∂{}"


class LocalPartial(_Printed):
    """dy/dx, the chain rule's local factor, until a step differentiates y's definition."""

    nargs = 2
    _tex_format = r"\frac{{\partial {}}}{{\partial {}}}"
    _text_format = "∂{}/∂{}"


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


# ---------------------------------------------------------------------------
# printing: w^{l+1}_{k,j} in LaTeX, w^(l+1)[k,j] in text
# ---------------------------------------------------------------------------

_TEX_BASE = {"delta": r"\delta"}
_TEXT_BASE = {"delta": "δ"}


def _compact(s: str) -> str:
    return s.replace(" ", "")


class _Latex(LatexPrinter):
    printmethod = "_general_latex"  # Indexed has its own _latex, which would win over _print_Indexed

    def _print_Indexed(self, expr):
        layer, *idx = expr.indices
        base = _TEX_BASE.get(expr.base.name, expr.base.name)
        return f"{base}^{{{_compact(self._print(layer))}}}_{{{','.join(self._print(i) for i in idx)}}}"

    def _print_KroneckerDelta(self, expr, exp=None):
        i, j = (self._print(a) for a in expr.args)
        return rf"\delta_{{{i},{j}}}"


class _Text(StrPrinter):
    printmethod = "_general_text"  # likewise Indexed's _sympystr

    def _print_Indexed(self, expr):
        layer, *idx = expr.indices
        base = _TEXT_BASE.get(expr.base.name, expr.base.name)
        return f"{base}^({_compact(self._print(layer))})[{','.join(self._print(i) for i in idx)}]"

    def _print_Sum(self, expr):
        out = self._print(expr.function)
        for var, lo, hi in expr.limits:  # innermost first
            out = f"Σ_{{{self._print(var)}={self._print(lo)}..{_compact(self._print(hi))}}}({out})"
        return out

    def _print_KroneckerDelta(self, expr):
        i, j = (self._print(a) for a in expr.args)
        return f"δ_({i},{j})"

    def _print_Equality(self, expr):
        return f"{self._print(expr.lhs)} = {self._print(expr.rhs)}"

    def _print_Unequality(self, expr):
        return f"{self._print(expr.lhs)} ≠ {self._print(expr.rhs)}"

    def _print_Piecewise(self, expr):
        parts = [f"{self._print(e)} if {self._print(c)}" if c is not sp.true else f"{self._print(e)} otherwise"
                 for e, c in expr.args]
        return "{" + "; ".join(parts) + "}"


_LATEX = _Latex()
_TEXTP = _Text()


def latex(expr) -> str:
    """An expression of the general proof in LaTeX."""
    return _LATEX.doprint(expr)


def text(expr) -> str:
    """An expression of the general proof as terminal text."""
    return _TEXTP.doprint(expr)


_TEX_ESCAPE = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                             "^": r"\^{}", "≤": r"$\le$", "≥": r"$\ge$", "→": r"$\to$", "≠": r"$\neq$",
                             "·": r"$\cdot$", "Σ": r"$\Sigma$", "σ": r"$\sigma$", "δ": r"$\delta$",
                             "∂": r"$\partial$", "≡": r"$\equiv$"})


def tex_words(s: str) -> str:
    """Plain words (rule names, messages) for a LaTeX text paragraph."""
    return s.translate(_TEX_ESCAPE)


def _render(parts, fmt: str) -> str:
    """Evidence and assumptions are lists of words and SymPy objects, printed per format."""
    out = []
    for p in parts:
        if isinstance(p, sp.Basic):
            out.append(text(p) if fmt == "text" else f"${latex(p)}$")
        elif isinstance(p, _Range):
            out.append(p.text() if fmt == "text" else f"${p.latex()}$")
        else:
            out.append(p if fmt == "text" else tex_words(p))
    return "".join(out)


@dataclass(frozen=True)
class _Range:
    """lo <= var <= hi, for display."""

    var: sp.Symbol
    lo: sp.Expr
    hi: sp.Expr

    def text(self) -> str:
        return f"{text(self.lo)} ≤ {text(self.var)} ≤ {_compact(text(self.hi))}"

    def latex(self) -> str:
        return rf"{latex(self.lo)} \le {latex(self.var)} \le {latex(self.hi)}"


# ---------------------------------------------------------------------------
# the model: the symbols of one setting and its definitions
# ---------------------------------------------------------------------------

class Model:
    """The symbols and definitions of one setting: convention column|row, one example or a batch.

    Entries are Indexed with the layer first: w[l, j, k] (column: from neuron k of
    layer l-1 to neuron j of layer l), W[l, k, j] (row: the same weight, stored at
    [k, j]), b[l, j], a[l, j], z[l, j], delta[l, j]; in a batch the example comes
    second: a[l, e, j], z[l, e, j], delta[l, e, j] (weights and biases are shared).
    """

    def __init__(self, setting: str = "column"):
        if setting not in SETTINGS:
            raise DeriveError(f"unknown setting {setting!r}; the settings are {', '.join(SETTINGS)}")
        self.setting = setting
        self.convention = setting.split("-")[0]
        self.batch = setting.endswith("-batch")
        self.l = sp.Symbol("l", integer=True, positive=True)
        self.L = sp.Symbol("L", integer=True, positive=True)
        self.j, self.k, self.m, self.q, self.e = sp.symbols("j k m q e", **INDEX)
        self.e2 = sp.Symbol("e'", **INDEX)
        self.B = sp.Symbol("B", **WIDTH)
        self.w = IndexedBase("W" if self.convention == "row" else "w")
        self.b, self.a, self.z, self.delta = (IndexedBase(n) for n in ("b", "a", "z", "delta"))

    # -- symbols -----------------------------------------------------------
    def width(self, layer) -> sp.Symbol:
        """n_{layer}: the number of neurons of a layer, a positive integer symbol."""
        return sp.Symbol(f"n_{{{_compact(str(layer))}}}", **WIDTH)

    def last(self, layer) -> sp.Expr:
        return self.width(layer) - 1

    def _entry(self, base, layer, i, e=None):
        return base[layer, e, i] if self.batch else base[layer, i]

    def A(self, layer, i, e=None):
        return self._entry(self.a, layer, i, e)

    def Z(self, layer, i, e=None):
        return self._entry(self.z, layer, i, e)

    def D(self, layer, i, e=None):
        return self._entry(self.delta, layer, i, e)

    def weight(self, layer, out, inp):
        """The weight from neuron inp of layer-1 to neuron out of layer, in the convention's layout."""
        return self.w[layer, inp, out] if self.convention == "row" else self.w[layer, out, inp]

    def bias(self, layer, j):
        return self.b[layer, j]

    def over_examples(self, expr, e):
        return Sum(expr, (e, 0, self.B - 1)) if self.batch else expr

    # -- definitions ---------------------------------------------------------
    def z_definition(self, layer, j, e, dummy) -> sp.Expr:
        """z^layer_j = sum_k w^layer_{jk} a^{layer-1}_k + b^layer_j (row: sum_k a_k W_{kj} + b_j)."""
        term = self.weight(layer, j, dummy) * self.A(layer - 1, dummy, e)
        return Sum(term, (dummy, 0, self.last(layer - 1))) + self.bias(layer, j)

    def definition(self, head, dummy=None) -> sp.Expr:
        """The defining expression of an entry: z (with dummy as the summation index), a, or delta."""
        if isinstance(head, sp.Indexed):
            layer, *idx = head.indices
            e, i = (idx if self.batch else (None, idx[0]))
            if head.base == self.z:
                return self.z_definition(layer, i, e, dummy)
            if head.base == self.a:
                return sigma(self.Z(layer, i, e))
            if head.base == self.delta:
                return CostPartial(self.Z(layer, i, e))
        raise DeriveError(f"{text(head)} has no definition in the model")

    def reads(self) -> list[tuple[str, sp.Expr, list[tuple[str, sp.Expr]]]]:
        """The schematic definitions as (what, at layer lam, what it reads): the dependency graph.

        Read off the definitions themselves, so the chain rule's premise is checked
        against the same expressions the proof differentiates.
        """
        lam = sp.Symbol("lambda", integer=True, positive=True)
        out = []
        for name, rhs in (("a", self.definition(self.A(lam, self.j, self.e))),
                          ("z", self.z_definition(lam, self.j, self.e, self.q))):
            used = sorted({(x.base.name, x.indices[0]) for x in rhs.atoms(sp.Indexed)}, key=str)
            out.append((name, lam, used))
        out.append(("C", None, [("a", self.L)]))  # the cost reads the output activations only
        return out

    # -- the textbook formulas ---------------------------------------------
    def formula(self, key: str) -> sp.Expr:
        """The right-hand side of BP1..BP4 as the textbooks write it, in this setting."""
        l, L, j, k, e = self.l, self.L, self.j, self.k, self.e
        if key == "BP1":
            return CostPartial(self.A(L, j, e)) * sigma_prime(self.Z(L, j, e))
        if key == "BP2":
            inner = Sum(self.weight(l + 1, k, j) * self.D(l + 1, k, e), (k, 0, self.last(l + 1)))
            return inner * sigma_prime(self.Z(l, j, e))
        if key == "BP3":
            return self.over_examples(self.D(l, j, e), e)
        if key == "BP4":
            return self.over_examples(self.A(l - 1, k, e) * self.D(l, j, e), e)
        raise _unknown_theorem(key)

    def title_tex(self) -> str:
        conv = {"column": "column convention, $z = W a + b$", "row": "row convention, $z = a W + b$"}[self.convention]
        return conv + (", a batch of $B$ examples ($C$ summed over the batch)" if self.batch else ", one example")

    def title(self) -> str:
        return self.title_tex().replace("$", "")


# ---------------------------------------------------------------------------
# the proof as data
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Rule:
    """A rule a step may use, and why it holds."""

    key: str
    name: str
    justification: str
    tex: str  # the justification in LaTeX
    closed_by: str  # "given", "sympy" (SymPy computes the step) or "rule" (an explicit rule, instance checked)


RULES = {r.key: r for r in (
    Rule("definition", "definition", "the model's definitions: z^l_j = Σ_k w^l_{jk} a^{l-1}_k + b^l_j "
         "(row: Σ_k a^{l-1}_k W^l_{kj} + b^l_j), a^l_j = σ(z^l_j), δ^l_j ≡ ∂C/∂z^l_j",
         r"the model's definitions: $z^{l}_{j} = \sum_k w^{l}_{j,k} a^{l-1}_{k} + b^{l}_{j}$ (row: "
         r"$\sum_k a^{l-1}_{k} W^{l}_{k,j} + b^{l}_{j}$), $a^{l}_{j} = \sigma(z^{l}_{j})$, "
         r"$\delta^{l}_{j} \equiv \partial C / \partial z^{l}_{j}$", "given"),
    Rule("def-a", "a = σ(z)", "every a^l_m replaced by its definition σ(z^l_m)",
         r"every $a^{l}_{m}$ replaced by its definition $\sigma(z^{l}_{m})$", "rule"),
    Rule("def-delta", "δ ≡ ∂C/∂z", "every ∂C/∂z^l_m replaced by δ^l_m, its name by definition",
         r"every $\partial C/\partial z^{l}_{m}$ replaced by $\delta^{l}_{m}$, its name by definition", "rule"),
    Rule("hypothesis", "induction hypothesis", "δ^{l+1}_k = ∂C/∂z^{l+1}_k for every k: BP1 when l+1 = L, "
         "this same theorem one layer up otherwise",
         r"$\delta^{l+1}_{k} = \partial C/\partial z^{l+1}_{k}$ for every $k$: BP1 when $l+1 = L$, this same "
         r"theorem one layer up otherwise", "rule"),
    Rule("chain", "chain rule", "∂C/∂x = Σ_u ∂C/∂u · ∂u/∂x when C depends on x only through the entries u "
         "(multivariable chain rule); the premise is read off the definitions",
         r"$\partial C/\partial x = \sum_u \partial C/\partial u \cdot \partial u/\partial x$ when $C$ depends on "
         r"$x$ only through the entries $u$ (multivariable chain rule); the premise is read off the definitions",
         "rule"),
    Rule("diff", "sympy.diff", "SymPy differentiates the definition: ∂x[i]/∂x[j] = δ_(i,j) for entries of one "
         "IndexedBase, σ' is the derivative of σ, a sum of zeros is zero",
         r"SymPy differentiates the definition: $\partial x_i/\partial x_j = \delta_{i,j}$ for entries of one "
         r"IndexedBase, $\sigma'$ is the derivative of $\sigma$, a sum of zeros is zero", "sympy"),
    Rule("kronecker", "Kronecker sum", "Σ_{m=0..n-1} f(m) δ_(j,m) = f(j) if 0 ≤ j ≤ n-1, else 0 "
         "(SymPy's delta summation)",
         r"$\sum_{m=0}^{n-1} f(m)\,\delta_{j,m} = f(j)$ if $0 \le j \le n-1$, else $0$ (SymPy's delta summation)",
         "sympy"),
    Rule("range", "index range", "a guard that holds for every index in its range is dropped: 0 ≤ j ≤ n-1 is "
         "written n = j + 1 + r with an integer r ≥ 0, and SymPy decides the guard",
         r"a guard that holds for every index in its range is dropped: $0 \le j \le n-1$ is written "
         r"$n = j + 1 + r$ with an integer $r \ge 0$, and SymPy decides the guard", "rule"),
    Rule("lemma", "substitution", "a term replaced by the value proven for it above, for every index in the "
         "range it runs over here",
         r"a term replaced by the value proven for it above, for every index in the range it runs over here",
         "rule"),
    Rule("linear", "linearity of Σ", "Σ_k c·f(k) = c·Σ_k f(k) for c free of k; sums over one range add "
         "termwise; a summation index may be renamed",
         r"$\sum_k c\,f(k) = c \sum_k f(k)$ for $c$ free of $k$; sums over one range add termwise; a "
         r"summation index may be renamed", "rule"),
    Rule("formula", "the formula", "the derived expression equals the formula (linearity of Σ and polynomial "
         "identity), each quantity the model defines written one way (∂C/∂z as δ, σ(z) as a, z by its definition), "
         "each denominator as written shown nonzero first; "
         "when it does not, a counterexample: a network that obeys every definition, widths 1, 2, 3, 5, where both "
         "sides are defined and differ",
         r"the derived expression equals the formula (linearity of $\Sigma$ and polynomial identity), each quantity "
         r"the model defines written one way ($\partial C/\partial z$ as $\delta$, $\sigma(z)$ as $a$, $z$ by its "
         r"definition), each denominator as written shown nonzero first; when it does not, a counterexample: a "
         r"network that obeys every definition, widths 1, 2, 3, "
         r"5, where both sides are defined and differ", "rule"),
)}

GIVEN, PROVEN, REFUTED, UNPROVEN = "GIVEN", "PROVEN", "REFUTED", "UNPROVEN"


@dataclass(frozen=True)
class Counterexample:
    """Exact values at which the two sides differ: layer, widths, indices and every entry (σ, C arbitrary)."""

    sizes: tuple  # (symbol, int): l, L, the widths, B
    indices: tuple  # (symbol, int): the free indices
    values: tuple  # (entry, Rational): sigma'(z), dC/da, delta, w, a ... as SymPy objects
    lhs: sp.Rational
    rhs: sp.Rational
    layer_widths: tuple = ()  # (layer, width) of the whole network, 0..L

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
        return _render(self.parts(), "text")


@dataclass
class Step:
    """One equality lhs = rhs, the rule that licenses it, and the verdict of its check."""

    lhs: sp.Expr
    rhs: sp.Expr
    rule: str  # a key of RULES
    data: dict = field(default_factory=dict)  # the rule's bindings, what the check needs
    verdict: str = UNPROVEN
    evidence: list = field(default_factory=list)  # words and SymPy objects: what the check found
    counterexample: Counterexample | None = None

    @property
    def statement(self) -> sp.Eq:
        return sp.Eq(self.lhs, self.rhs, evaluate=False)

    @property
    def latex(self) -> str:
        return f"{latex(self.lhs)} = {latex(self.rhs)}"

    @property
    def ok(self) -> bool:
        return self.verdict in (GIVEN, PROVEN)

    def evidence_text(self) -> str:
        return _render(self.evidence, "text")

    def evidence_latex(self) -> str:
        return _render(self.evidence, "latex")


@dataclass
class Chain:
    """head = e1 = e2 = ...: each step's lhs is the previous right-hand side."""

    name: str  # "lemma" or "main"
    head: sp.Expr
    steps: list[Step] = field(default_factory=list)

    @property
    def final(self) -> sp.Expr:
        return self.steps[-1].rhs if self.steps else self.head

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


@dataclass
class Context:
    """What a theorem assumes: index ranges (free indices, and those a lemma holds for) and layers."""

    ranges: dict  # index symbol -> (lo, hi)
    layers: dict  # L -> its value in terms of l and a fresh integer s >= 0
    layer_range: _Range | None  # 1 <= l <= L - 1, or None: the output layer L
    hypothesis_layer: sp.Expr | None = None  # BP2: delta^{l+1} = dC/dz^{l+1} is assumed


@dataclass
class Theorem:
    key: str  # "BP1"
    setting: str
    title: str
    lhs: sp.Expr
    formula: sp.Expr
    context: Context
    assumptions: list = field(default_factory=list)  # lists of words and SymPy objects
    chains: list[Chain] = field(default_factory=list)
    stuck: str = ""  # why the derivation could not go on, if it could not

    @property
    def steps(self) -> list[Step]:
        return [s for c in self.chains for s in c.steps]

    @property
    def main(self) -> Chain:
        return self.chains[-1]

    @property
    def verdict(self) -> str:
        if any(s.verdict == REFUTED for s in self.steps):
            return REFUTED
        done = not self.stuck and self.main.final == self.formula and self.main.head == self.lhs
        return PROVEN if done and all(s.ok for s in self.steps) else UNPROVEN

    @property
    def ok(self) -> bool:
        return self.verdict == PROVEN


@dataclass
class Setting:
    key: str
    model: Model
    theorems: list[Theorem]

    @property
    def title(self) -> str:
        return self.model.title()

    def theorem(self, key: str) -> Theorem:
        return next(t for t in self.theorems if t.key == key)


@dataclass
class RuleCheck:
    """A rule checked on small instances by SymPy (a filter on the rule, not the proof of a step)."""

    rule: str
    what: str
    tex: str
    verdict: str


@dataclass
class GeneralProof:
    settings: list[Setting]
    rule_checks: list[RuleCheck]
    seconds: float = 0.0

    @property
    def theorems(self) -> list[Theorem]:
        return [t for s in self.settings for t in s.theorems]

    @property
    def steps(self) -> list[Step]:
        return [st for t in self.theorems for st in t.steps]

    def setting(self, key: str) -> Setting:
        return next(s for s in self.settings if s.key == key)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.theorems) and all(r.verdict == PROVEN for r in self.rule_checks)

    @property
    def verdict(self) -> str:
        if self.ok:
            return PROVEN
        return REFUTED if any(t.verdict == REFUTED for t in self.theorems) else UNPROVEN

    def summary(self) -> str:
        thms, steps = self.theorems, self.steps
        good = sum(t.ok for t in thms)
        given = sum(s.verdict == GIVEN for s in steps)
        proven = sum(s.verdict == PROVEN for s in steps)
        head = (f"general proof: {good}/{len(thms)} theorems proven (BP1-BP4; {', '.join(s.key for s in self.settings)})"
                f" with symbolic widths, {proven} steps proven from {given} definitions")
        if self.ok:
            return head + "; BP1 and BP2 together cover every depth by induction"
        bad = [f"{t.setting} {t.key} ({t.verdict.lower()})" for t in thms if not t.ok]
        bad += [f"rule {r.rule} ({r.verdict.lower()})" for r in self.rule_checks if r.verdict != PROVEN]
        return head + "; NOT proven: " + ", ".join(bad)


# ---------------------------------------------------------------------------
# the rules' operations (shared by the builder and the checks)
# ---------------------------------------------------------------------------

class _Stuck(Exception):
    """A derivation cannot go on (a guard SymPy cannot decide, a sum with nothing to sift)."""


def _replace_fact(model: Model, expr: sp.Expr, fact: str, layer) -> sp.Expr:
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


def _chain_sum(model: Model, x, base: str, layer, i, e, examples_inside: bool = False) -> sp.Expr:
    """sum over every entry u of `base` at `layer` (every example in a batch) of dC/du du/dx.

    The order of the two finite sums is free; the example sum goes inside when x
    belongs to one example (its Kronecker delta is sifted first).
    """
    u = model._entry(getattr(model, base), layer, i, e)
    body = CostPartial(u) * LocalPartial(u, x)
    if model.batch and examples_inside:
        return Sum(body, (e, 0, model.B - 1), (i, 0, model.last(layer)))
    return model.over_examples(Sum(body, (i, 0, model.last(layer))), e)


def _clean(expr: sp.Expr) -> sp.Expr:
    """A sum of zeros is zero (what sympy.diff leaves of the other terms of a definition)."""
    return expr.replace(lambda s: isinstance(s, Sum) and s.function == 0, lambda s: sp.S.Zero)


def _siftable(s) -> bool:
    """A sum whose innermost index occurs in a Kronecker delta factor of the summand."""
    if not isinstance(s, Sum):
        return False
    var = s.limits[0][0]
    return any(isinstance(f, KroneckerDelta) and var in f.free_symbols for f in sp.Mul.make_args(s.function))


def _sift(s: Sum) -> sp.Expr:
    """SymPy's delta summation over the innermost index of s (the outer ones are kept)."""
    inner = Sum(s.function, s.limits[0]).doit(deep=False)
    return Sum(inner, *s.limits[1:]) if len(s.limits) > 1 else inner


def _innermost_siftable(expr):
    for node in sp.postorder_traversal(expr):  # children first: the first one found is innermost
        if _siftable(node):
            return node
    return None


def _sites(expr, ranges: dict, want):
    """(node, ranges in force there) for each node want() accepts: free ranges plus enclosing sums' limits."""
    if isinstance(expr, Sum):
        inner = dict(ranges)
        for var, lo, hi in expr.limits:
            inner[var] = (lo, hi)
        yield from _sites(expr.function, inner, want)
        return
    for arg in expr.args:
        yield from _sites(arg, ranges, want)
    if want(expr):
        yield expr, ranges


_DECIDED: dict = {}  # (cond, the ranges of its symbols) -> (holds, witness): sp.solve is the slow part


def _decide(cond, ranges: dict):
    """Whether cond holds for every index in its range: True, False or None (SymPy cannot tell).

    Each index 0 <= i <= n - 1 of the condition is written n = i + 1 + r_i with a fresh
    integer r_i >= 0 (i >= 0 is the index symbol's own assumption); SymPy then
    evaluates the condition. Sound: every admissible (i, n) is such a substitution.
    """
    if cond in (sp.true, sp.false):
        return bool(cond), {}
    key = (cond, frozenset((s, tuple(ranges[s])) for s in cond.free_symbols & set(ranges)))
    if key not in _DECIDED:
        _DECIDED[key] = _decide_uncached(cond, ranges)
    holds, subs = _DECIDED[key]
    return holds, dict(subs)  # a copy: the cached witness stays as computed


def _decide_uncached(cond, ranges: dict):
    """_decide without the cache: it reads only cond and the ranges of cond's symbols."""
    subs = {}
    for s in sorted(cond.free_symbols & set(ranges), key=str):
        lo, hi = ranges[s]
        widths = hi.free_symbols - {s}
        if lo != 0 or len(widths) != 1:
            return None, {}
        (n,) = widths
        if n in subs:
            return None, {}
        r = sp.Symbol(f"r_{s}", **INDEX)
        sol = sp.solve(sp.Eq(hi, s + r), n)
        if len(sol) != 1:
            return None, {}
        subs[n] = sol[0]
    value = cond.subs(subs)
    if value is sp.true:
        return True, subs
    if value is sp.false:
        return False, subs
    return None, subs


def _discharge(pw: Piecewise, ranges: dict):
    """The branch of pw that applies for every index in range, with the witness; None if undecided."""
    for expr, cond in pw.args:
        holds, subs = _decide(cond, ranges)
        if holds is None:
            return None
        if holds:
            return expr, cond, subs
    return None


def _layer_decide(rel, context: Context):
    value = rel.subs(context.layers) if not isinstance(rel, bool) else sp.sympify(rel)
    if value is sp.true:
        return True
    if value is sp.false:
        return False
    return None


def _readers(model: Model, node: tuple, context: Context):
    """What reads (base, layer) in the definitions, at which layer; None if a layer bound is undecided."""
    base, layer = node
    out = []
    for what, lam, used in model.reads():
        for rb, rl in used:
            if rb != base:
                continue
            if lam is None:  # the cost reads a^L
                same = _layer_decide(sp.Eq(rl, layer), context)
                if same is None:
                    return None
                if same:
                    out.append(("C", model.L))
                continue
            (at,) = sp.solve(sp.Eq(rl, layer), lam)
            inside = [_layer_decide(sp.Le(1, at), context), _layer_decide(sp.Le(at, model.L), context)]
            if None in inside:
                return None
            if all(inside):
                out.append((what, at))
    return out


def _only_through(model: Model, x, through: tuple, context: Context):
    """Every path of the definitions from x to C passes through `through`: the paths, or None."""
    start = (x.base.name, x.indices[0])
    paths, frontier = [], [[start]]
    while frontier:
        path = frontier.pop(0)
        readers = _readers(model, path[-1], context)
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


def _node(base: str, layer) -> sp.Symbol:
    """A layer of the dependency graph, for display: z^{l+1}."""
    return sp.Symbol(f"{base}^{{{_compact(str(layer))}}}")


def _path_parts(path) -> list:
    out: list = []
    for b, lay in path:
        out += [_node(b, lay), " → "]
    return out[:-1]


def _factor_sums(expr: sp.Expr) -> sp.Expr:
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


# ---------------------------------------------------------------------------
# one way of writing each quantity the model defines
# ---------------------------------------------------------------------------

def _entry_parts(model: Model, x):
    """(base name, layer, example, neuron) of an a, z or delta entry of the model's shape; None otherwise."""
    if not isinstance(x, sp.Indexed) or x.base not in (model.a, model.z, model.delta):
        return None
    if len(x.indices) != (3 if model.batch else 2):
        return None
    layer, *idx = x.indices
    e, i = idx if model.batch else (None, idx[0])
    return x.base.name, layer, e, i


def _has_z(layer, context: Context) -> bool:
    """z^layer exists for every admissible layer: layer >= 1 (a^0 is the input, not sigma of a z)."""
    return _layer_decide(sp.Le(1, layer), context) is True


def _as_z(model: Model, x, context: Context):
    """The entry z^layer_i (of example e) when x is its definition sum_k w a + b, in any order or index name."""
    if not isinstance(x, sp.Add):
        return None
    for b in x.args:
        if not (isinstance(b, sp.Indexed) and b.base == model.b and len(b.indices) == 2):
            continue
        layer, i = b.indices
        below = [y for y in x.atoms(sp.Indexed) if y.base == model.a and y.indices[0] == layer - 1]
        examples = {y.indices[1] for y in below if len(y.indices) == 3} if model.batch else {None}
        if not _has_z(layer, context):
            continue
        for e in sorted(examples, key=str):
            if equal_by_linearity(x, model.z_definition(layer, i, e, sp.Dummy("k", **INDEX))):
                return model.Z(layer, i, e)
    return None


def _canonical(model: Model, expr, context: Context, done: list, inside: bool = False):
    """canonical(), recording each rewrite in done; inside: expr is what sigma, sigma' or dC/d is applied to."""
    if isinstance(expr, sp.Indexed):
        parts = _entry_parts(model, expr)
        if not inside and parts and parts[0] == "z" and _has_z(parts[1], context):
            out = model.z_definition(parts[1], parts[3], parts[2], sp.Dummy("k", **INDEX))
            done.append((expr, out))
            return out
        return expr
    if isinstance(expr, (sigma, sigma_prime, CostPartial)):
        x = _canonical(model, expr.args[0], context, done, inside=True)
        parts = _entry_parts(model, x)
        if parts and parts[0] == "z" and _has_z(parts[1], context) and expr.func in (sigma, CostPartial):
            out = model.A(parts[1], parts[3], parts[2]) if expr.func is sigma else model.D(parts[1], parts[3], parts[2])
            done.append((expr.func(x), out))
            return out
        return expr.func(x)
    if not expr.args or isinstance(expr, (LocalPartial, sp.Derivative, sp.Subs, sp.Lambda)):
        return expr  # a derivative's variables are what they are: nothing to rewrite in them
    if isinstance(expr, Sum):
        return Sum(_canonical(model, expr.function, context, done, inside), *expr.limits)
    out = expr.func(*(_canonical(model, a, context, done, inside) for a in expr.args))
    if inside:
        z = _as_z(model, out, context)
        if z is not None:
            done.append((out, z))
            return z
    return out


def canonical(model: Model, expr: sp.Expr, context: Context) -> sp.Expr:
    """expr with each quantity the model defines written one way, wherever its layer has it.

    dC/dz is delta (delta == dC/dz), sigma(z) is a (a = sigma(z): also inside dC/d),
    sum_k w a + b is z where sigma, sigma' or dC/d is applied to it, and a z standing
    alone is its definition sum_k w a + b. Only for layers >= 1 in the context: z^0
    does not exist, and a^0 is the input.
    """
    return _canonical(model, sp.sympify(expr), context, [])


# ---------------------------------------------------------------------------
# counterexamples: a concrete network that obeys every definition, exact rationals
# ---------------------------------------------------------------------------

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


class _Network:
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


def _at(net: _Network, template, widths: dict, at: dict):
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


def _value_at(net: _Network, template, widths: dict, at: dict):
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


def _plans(model: Model, context: Context, exprs: list, free: list) -> list:
    """The networks to try, as (sizes, widths per layer, examples): 2 everywhere first, then one symbolic
    width (or B) at 1, 3 or 5, then two, ...; at each (l, L) the theorem's layer range admits."""
    M = model
    syms = set().union(*(x.free_symbols for x in exprs), *(context.ranges[s][1].free_symbols for s in free))
    widths = sorted((s for s in syms if _is_width(M, s)), key=str)
    layer_of_width = {M.width(lam): lam for lam in _layer_exprs(M, exprs)}
    if any(s != M.B and s not in layer_of_width for s in widths):
        return []  # a width of no layer the model knows: nothing to evaluate
    l_matters = M.l in syms or any(M.l in layer_of_width[s].free_symbols for s in widths if s != M.B)
    plans, seen = [], set()
    for option, (lv, Lv) in enumerate(COUNTER_LAYERS):
        span = context.layer_range
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


def find_counterexample(model: Model, context: Context, lhs: sp.Expr, rhs: sp.Expr, seed: int = 0,
                        points: int = COUNTER_POINTS) -> Counterexample | None:
    """A concrete network, layer and indices where both sides are defined and differ; None if none is found.

    The network obeys every definition (_Network), so delta and dC/dz, a and sigma(z)
    get one value each. Each symbolic width (and B) is tried at 1, 2, 3 and 5 on its own,
    l and L at each pair the theorem admits; a point where a side names an entry the
    network lacks, divides by zero or runs a sum backwards is skipped, never a counterexample.
    """
    return _search(model, context, lhs, rhs, seed, points)[0]


def _search(model: Model, context: Context, lhs, rhs, seed: int = 0, points: int = COUNTER_POINTS):
    """find_counterexample, and why rhs had no value where it had none at any point tried (or None)."""
    rng = np.random.default_rng(seed)
    lhs, rhs = (_divisors_kept(sp.sympify(x)) for x in (lhs, rhs))  # x/x has no value where x = 0
    free = sorted((lhs.free_symbols | rhs.free_symbols) & set(context.ranges), key=str)
    tried, defined, why = 0, 0, None
    for sizes, n, examples in _plans(model, context, [lhs, rhs], free):
        if tried == points:
            break
        net = _Network(model, sizes[model.L], n, examples, rng)
        subs = {s: sp.Integer(v) for s, v in sizes.items()}
        layers = {model.l: subs.pop(model.l), model.L: subs.pop(model.L)}
        widths = subs
        spans = []
        for s in free:
            lo, hi = (int(sp.sympify(x).xreplace(widths)) for x in context.ranges[s])
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
                return Counterexample(tuple(sizes.items()), tuple(zip(free, combo)),
                                      tuple((y, values[y]) for y in ordered), left[0], right[0],
                                      tuple(n.items())), None
    return None, (why if tried and not defined else None)


# ---------------------------------------------------------------------------
# checks: each rule checks a step on its own statement
# ---------------------------------------------------------------------------

def _check(step: Step, thm: Theorem, model: Model) -> None:
    step.verdict, step.evidence = _CHECKS[step.rule](step, thm, model)


def _check_definition(step, thm, model):
    head = step.lhs
    if step.rhs == model.definition(head, step.data.get("dummy")):
        return GIVEN, ["the model's definition of ", head]
    return UNPROVEN, ["not the model's definition of ", head]


def _check_fact(step, thm, model):
    fact, layer = step.rule, step.data["layer"]
    assumed = thm.context.hypothesis_layer
    if fact == "hypothesis" and (assumed is None or sp.expand(layer - assumed) != 0):
        return UNPROVEN, ["no induction hypothesis at layer ", layer]
    if step.rhs == _replace_fact(model, step.lhs, fact, layer) and step.rhs != step.lhs:
        what = {"def-a": "a", "def-delta": "∂C/∂z", "hypothesis": "∂C/∂z"}[fact]
        return PROVEN, [f"every {what} of layer ", layer, " replaced"]
    return UNPROVEN, ["the step is not that replacement"]


def _check_chain(step, thm, model):
    d = step.data
    x = d["x"]
    if step.lhs != CostPartial(x) or step.rhs != _chain_sum(model, x, d["base"], d["layer"], d["i"], d["e"],
                                                           d["inside"]):
        return UNPROVEN, ["the step is not the chain rule through ", d["base"], " at layer ", d["layer"]]
    paths = _only_through(model, x, (d["base"], d["layer"]), thm.context)
    if paths is None:
        return UNPROVEN, ["premise not shown: C may depend on ", x, " other than through layer ", d["layer"]]
    parts: list = ["C depends on ", x, " only through ", _node(d["base"], d["layer"]), ": "]
    for p in paths:
        parts += _path_parts(p) + ["; "]
    where = ["the output layer ", model.L] if thm.context.layer_range is None else [thm.context.layer_range]
    return PROVEN, parts[:-1] + [" (", *where, ")"]


def _check_diff(step, thm, model):
    src, x = step.data["source"], step.data["x"]
    if not src.ok:
        return UNPROVEN, ["the expression differentiated is not established"]
    if step.lhs != LocalPartial(src.head, x):
        return UNPROVEN, ["the step does not differentiate ", src.head]
    if step.rhs == _clean(sp.diff(src.final, x)):
        return PROVEN, ["sympy.diff of ", src.final, " with respect to ", x]
    return UNPROVEN, ["sympy.diff gives something else"]


def _check_kronecker(step, thm, model):
    s = step.data["sum"]
    if not (_siftable(s) and step.lhs.has(s)):
        return UNPROVEN, ["no such sum in the expression"]
    value = _sift(s)
    if value != s and step.rhs == step.lhs.xreplace({s: value}):
        return PROVEN, ["SymPy: ", sp.Eq(Sum(s.function, s.limits[0]), _sift(Sum(s.function, s.limits[0])),
                                         evaluate=False)]
    return UNPROVEN, ["SymPy's delta summation gives something else"]


def _check_range(step, thm, model):
    pw = step.data["piecewise"]
    sites = list(_sites(step.lhs, thm.context.ranges, lambda n: n == pw))
    if not sites:
        return UNPROVEN, ["no such guard in the expression"]
    found = [_discharge(pw, ranges) for _, ranges in sites]
    if any(f is None for f in found) or len({f[0] for f in found}) != 1:
        return UNPROVEN, ["SymPy cannot decide the guard of ", pw]
    branch, cond, subs = found[0]
    if step.rhs != step.lhs.xreplace({pw: branch}):
        return UNPROVEN, ["the step is not that branch"]
    ranges = sites[0][1]
    if cond is sp.true:
        return PROVEN, ["the guard is always true"]
    parts: list = ["guard ", cond, " holds for "]
    for s in sorted(cond.free_symbols & set(ranges), key=str):
        parts += [_Range(s, *ranges[s]), " "]
    parts += ["(index ranges): with "]
    for n, v in subs.items():
        (r,) = v.free_symbols - cond.free_symbols
        parts += [sp.Eq(n, v, evaluate=False), " and integer ", sp.Ge(r, 0, evaluate=False), ", "]
    parts += ["SymPy reduces it to True"]
    return PROVEN, parts


def _check_lemma(step, thm, model):
    lemma = step.data["lemma"]
    if not lemma.ok or lemma.head == lemma.final:
        return UNPROVEN, ["the substituted value is not established"]
    if step.rhs != step.lhs.xreplace({lemma.head: lemma.final}) or not step.lhs.has(lemma.head):
        return UNPROVEN, ["the step is not that substitution"]
    for _, ranges in _sites(step.lhs, thm.context.ranges, lambda n: n == lemma.head):
        for s in sorted(lemma.head.free_symbols & set(thm.context.ranges), key=str):
            if ranges.get(s) != thm.context.ranges[s]:
                return UNPROVEN, ["the value holds for ", _Range(s, *thm.context.ranges[s]),
                                  " but is used over another range"]
    return PROVEN, [lemma.head, " = ", lemma.final, " (proven above)"]


def _check_linear(step, thm, model):
    if equal_by_linearity(step.lhs, step.rhs):
        return PROVEN, ["sums over the same ranges agree termwise"]
    return UNPROVEN, ["not shown equal by linearity"]


def _is_denominator(x) -> bool:
    """x is a power whose exponent may be negative: its base divides."""
    return isinstance(x, sp.Pow) and not x.exp.is_nonnegative


def _rebuilt(x, args):
    """x with these arguments, evaluated as SymPy builds a new expression; x itself where its class refuses them."""
    try:
        return x.func(*args)
    except (TypeError, ValueError, ArithmeticError, NotImplementedError):
        return x


def _divisors_kept(expr):
    """expr evaluated, each divisor as written wrapped in _Divisor: no evaluation cancels it before it is a number."""
    if not expr.args or isinstance(expr, _Divisor):
        return expr
    args = [_divisors_kept(a) for a in expr.args]
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


def _as_written(model: Model, context: Context, expr):
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
        if den.is_zero or equal_by_linearity(den, 0) or equal_by_linearity(canonical(model, den, context), 0):
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

    evaluated = walk(sp.sympify(expr), dict(context.ranges))
    order = ("everywhere", "somewhere", "unknown")
    found.sort(key=lambda f: order.index(f[0]))
    return evaluated, (found[0] if found else None)


def _proven_up_to(thm: Theorem, step: Step) -> bool:
    """The main chain runs from the theorem's left-hand side to step, and every step before step holds."""
    steps = thm.steps
    at = next((i for i, s in enumerate(steps) if s is step), None)
    return (at is not None and any(s is step for s in thm.main.steps) and thm.main.head == thm.lhs
            and all(s.ok for s in steps[:at]))


def _check_formula(step, thm, model):
    evaluated, undefined = _as_written(model, thm.context, step.rhs)
    if undefined is not None and undefined[0] == "everywhere":
        return UNPROVEN, undefined[1]  # no point has a value: nothing to compare, no counterexample
    undefined = [] if undefined is None else undefined[1]
    parts: list = ["the derived expression equals the formula"]
    equal = equal_by_linearity(step.lhs, evaluated)  # evaluated: sound, as every denominator was judged above
    if not equal:
        done: list = []
        sides = [_canonical(model, x, thm.context, done) for x in (step.lhs, evaluated)]
        head = _canonical(model, thm.lhs, thm.context, [])
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
        return (UNPROVEN, undefined) if undefined else (PROVEN, parts)
    ce, why = _search(model, thm.context, step.lhs, step.rhs)
    step.counterexample = ce
    if ce is not None:
        return REFUTED, ce.parts()
    if undefined:
        return UNPROVEN, undefined
    if why is not None:
        return UNPROVEN, ["not shown equal, and the formula has a value at none of the points tried; "] + why
    return UNPROVEN, ["not shown equal, and no point found where both sides are defined and differ "
                      f"(widths {', '.join(map(str, sorted(COUNTER_WIDTHS)))}, {COUNTER_POINTS} points at most)"]


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


# ---------------------------------------------------------------------------
# building the derivations (each step computed, then checked by the rule above)
# ---------------------------------------------------------------------------

class _Builder:
    def __init__(self, model: Model, thm: Theorem):
        self.M, self.thm = model, thm

    def chain(self, name: str, head) -> Chain:
        c = Chain(name, head)
        self.thm.chains.append(c)
        return c

    def _add(self, c: Chain, rhs, rule: str, **data) -> None:
        c.steps.append(Step(c.final, rhs, rule, data))

    def define(self, c: Chain, dummy=None) -> None:
        self._add(c, self.M.definition(c.head, dummy), "definition", dummy=dummy)

    def fact(self, c: Chain, fact: str, layer) -> None:
        self._add(c, _replace_fact(self.M, c.final, fact, layer), fact, layer=layer)

    def chain_rule(self, c: Chain, x, base: str, layer, i, e=None, inside=False) -> None:
        self._add(c, _chain_sum(self.M, x, base, layer, i, e, inside), "chain", x=x, base=base, layer=layer, i=i,
                  e=e, inside=inside)

    def diff(self, c: Chain, source: Chain, x) -> None:
        self._add(c, _clean(sp.diff(source.final, x)), "diff", source=source, x=x)

    def sift(self, c: Chain) -> None:
        """The Kronecker sum, then the range guard it leaves dropped (two steps)."""
        s = _innermost_siftable(c.final)
        if s is None:
            raise _Stuck("no sum with a Kronecker delta in its index")
        self._add(c, c.final.xreplace({s: _sift(s)}), "kronecker", sum=s)
        self.guard(c)

    def guard(self, c: Chain) -> None:
        site = next(_sites(c.final, self.thm.context.ranges, lambda n: isinstance(n, Piecewise)), None)
        if site is None:
            raise _Stuck("no guard to discharge")
        pw, ranges = site
        found = _discharge(pw, ranges)
        if found is None:
            raise _Stuck(f"SymPy cannot decide the guard of {text(pw)}")
        self._add(c, c.final.xreplace({pw: found[0]}), "range", piecewise=pw)

    def substitute(self, c: Chain, lemma: Chain) -> None:
        self._add(c, c.final.xreplace({lemma.head: lemma.final}), "lemma", lemma=lemma)

    def linear(self, c: Chain) -> None:
        new = _factor_sums(c.final)
        if new != c.final:
            self._add(c, new, "linear")

    def formula(self, c: Chain) -> None:
        if c.final != self.thm.formula:
            self._add(c, self.thm.formula, "formula")


def _context(model: Model, ranges: dict, layers: str) -> Context:
    l, L = model.l, model.L
    s = sp.Symbol("s", **INDEX)
    if layers == "L":
        return Context(ranges, {}, None)
    if layers == "l<L":
        return Context(ranges, {L: l + 1 + s}, _Range(l, sp.S.One, L - 1), hypothesis_layer=l + 1)
    return Context(ranges, {L: l + s}, _Range(l, sp.S.One, L))


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
        ctx = _context(M, {j: (0, M.last(L)), m: (0, M.last(L)), **ex}, "L")
    elif key == "BP2":
        lhs, x = M.D(l, j, e), M.Z(l, j, e)
        ctx = _context(M, {j: (0, M.last(l)), k: (0, M.last(l + 1)), **ex}, "l<L")
    elif key == "BP3":
        x = M.bias(l, j)
        lhs = CostPartial(x)
        ctx = _context(M, {j: (0, M.last(l)), m: (0, M.last(l)), q: (0, M.last(l - 1)), **ex}, "l<=L")
    elif key == "BP4":
        x = M.weight(l, j, k)
        lhs = CostPartial(x)
        ctx = _context(M, {j: (0, M.last(l)), k: (0, M.last(l - 1)), m: (0, M.last(l)), q: (0, M.last(l - 1)),
                           **ex}, "l<=L")
    else:
        raise _unknown_theorem(key)
    thm = Theorem(key, M.setting, _TITLES[key], lhs, formula, ctx)
    free = [s for s in (j, k, e) if s in lhs.free_symbols or s in x.free_symbols]
    thm.assumptions.append(["the output layer ", L] if ctx.layer_range is None else [ctx.layer_range])
    for s in free:
        thm.assumptions.append([_Range(s, *ctx.ranges[s])])
    if key == "BP2":
        thm.assumptions.append(["induction hypothesis: ", sp.Eq(M.D(l + 1, k, e2 if M.batch else None),
                                                                 CostPartial(M.Z(l + 1, k, e2 if M.batch else None)),
                                                                 evaluate=False),
                                " for every ", _Range(k, *ctx.ranges[k])]
                               + ([" and every ", _Range(e2, *ctx.ranges[e2])] if M.batch else []))
    b = _Builder(M, thm)
    try:
        _DERIVATIONS[key](b, M, x)
        b.formula(thm.main)
    except _Stuck as exc:
        thm.stuck = str(exc)
    return check_theorem(thm, M)


def check_theorem(thm: Theorem, model: Model) -> Theorem:
    """Check every step of a theorem on its own statement (again), in order; returns the theorem."""
    for c in thm.chains:
        for st in c.steps:
            st.counterexample = None
            _check(st, thm, model)
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
    if _innermost_siftable(dlem.final) is not None:  # a weight: the input's sum
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
                      r"u_i'(t)$ by sympy.diff, for $n = 1, 2, 3$", PROVEN if good else REFUTED)
    f, j, m = sp.Function("f"), sp.Symbol("j", **INDEX), sp.Symbol("m", **INDEX)
    n = sp.Symbol("n", **WIDTH)
    symbolic = _sift(Sum(f(m) * KroneckerDelta(j, m), (m, 0, n - 1)))
    good = True
    for nc in range(1, 5):
        for jc in range(0, nc + 1):
            written = sp.Add(*[f(i) * KroneckerDelta(jc, i) for i in range(nc)])
            good &= symbolic.subs({n: nc, j: jc}) == written == (f(jc) if jc < nc else 0)
    kron = RuleCheck("Kronecker sum", "SymPy's Σ_(m=0..n-1) f(m) δ_(j,m) for symbolic n against the written-out "
                     "sum, n = 1..4, j = 0..n",
                     r"SymPy's $\sum_{m=0}^{n-1} f(m)\,\delta_{j,m}$ for symbolic $n$ against the written-out sum, "
                     r"$n = 1, \dots, 4$, $j = 0, \dots, n$", PROVEN if good else REFUTED)
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
        raise _unknown_theorem(unknown[0])
    for key, value in candidates.items():
        if not isinstance(value, sp.Expr):
            raise DeriveError(f"the candidate for {key} must be a SymPy expression, not {type(value).__name__}")
    return Setting(setting, model, [prove_theorem(model, key, candidates.get(key)) for key in THEOREMS])


def prove_general(settings=SETTINGS, candidates: dict | None = None) -> GeneralProof:
    """The whole general proof: BP1-BP4 in every setting; candidates maps a setting to {theorem: formula}."""
    t0 = time.perf_counter()
    settings = tuple(settings)
    for s in settings:
        Model(s)  # an unknown setting is a one-line error
    candidates = candidates or {}
    for s in candidates:
        if s not in settings:
            raise DeriveError(f"candidates for {s!r}, which is not among the settings proven ({', '.join(settings)})")
    proof = GeneralProof([prove_setting(s, candidates.get(s)) for s in settings], _rule_checks())
    proof.seconds = time.perf_counter() - t0
    return proof


# ---------------------------------------------------------------------------
# a concrete instance: the general formulas at fixed widths against derive.chain and derive.proofs.concrete
# ---------------------------------------------------------------------------

@dataclass
class Agreement:
    name: str  # "delta1[0]", "dC/dw2[0,1]"
    general: sp.Expr  # the general formula, widths substituted, sums written out, entries mapped (nan: an
    # entry the network does not have)
    concrete: sp.Expr  # the concrete proof's chain-rule value
    matrix: sp.Expr | None  # the concrete proof's matrix-form entry (gradients)
    agrees: bool


def concrete_agreement(spec, proof: GeneralProof | None = None) -> list[Agreement]:
    """Substitute a concrete network's widths into the general formulas and compare exactly.

    The spec must have separate biases, elementwise activations and batch "single" or
    "sum". delta^L comes from BP1 and every lower delta from BP2 applied layer by layer
    (the induction, written out); BP3 and BP4 then give each gradient. Each is compared
    with the concrete chain rule (derive.chain) and the matrix-form entry of derive.proofs.concrete.prove.
    """
    from derive.network import Network
    from derive.proofs.concrete import is_identity, prove, relations
    from derive.spec import load_spec

    spec = load_spec(spec)
    if spec.bias != "separate" or spec.batch == "mean":
        raise DeriveError(f"{spec.name}: the general proof has separate biases and sums over the batch; "
                          f"this spec has bias {spec.bias!r}, batch {spec.batch!r}")
    setting = spec.convention + ("-batch" if spec.batch == "sum" else "")
    if proof is None or setting not in [s.key for s in proof.settings]:
        proof = prove_general([setting])
    st = proof.setting(setting)
    M = st.model
    net = Network(spec)
    if not all(act.elementwise for act in net.acts[1:]):
        raise DeriveError(f"{spec.name}: the general proof covers elementwise activations, not softmax")
    concrete = prove(net)
    chain = concrete.chain
    rule = relations(net)
    L, n, E = net.L, net.sizes, net.E
    examples = range(E) if M.batch else [None]

    def entry(x):  # one Indexed entry or applied function of the general proof -> the network's symbol
        inner = x.args[0] if isinstance(x, (sigma_prime, CostPartial)) else x
        if not isinstance(inner, sp.Indexed) or any(not i.is_Integer or i < 0 for i in inner.indices):
            raise KeyError(text(x))
        if isinstance(x, sigma_prime):
            lay, *idx = x.args[0].indices
            ex, i = idx if M.batch else (0, idx[0])
            return net.sigma_prime[int(ex)][int(lay)][int(i)]
        if isinstance(x, CostPartial):
            lay, *idx = x.args[0].indices
            ex, i = idx if M.batch else (0, idx[0])
            return chain.dC_da[int(ex)][int(i)] / net.scale
        base, (lay, *idx) = x.base.name, x.indices
        if base in ("w", "W"):
            jj, kk = (idx[1], idx[0]) if base == "W" else idx
            return net.w[int(lay)][int(jj), int(kk)]
        if base == "b":
            return net.b[int(lay)][int(idx[0])]
        ex, i = idx if M.batch else (0, idx[0])
        if base == "a":
            return net.a[int(ex)][int(lay)][int(i)]
        if base == "delta":
            return deltas[int(lay)][int(ex)][int(i)]
        raise KeyError(base)

    def instance(expr, layer, **index):
        subs = {M.l: layer, M.L: L, M.B: E, M.width(M.L): n[L]}
        for lay, sym in ((layer - 1, M.l - 1), (layer, M.l), (layer + 1, M.l + 1)):
            if 0 <= lay <= L:
                subs[M.width(sym)] = n[lay]
        at = {getattr(M, k): v for k, v in index.items()}
        value = expr.xreplace(subs).subs(at).doit()  # subs keeps summation indices bound
        apps = sorted(value.atoms(sigma_prime, CostPartial), key=str)
        try:
            value = value.xreplace({x: entry(x) for x in apps})
            return value.xreplace({x: entry(x) for x in sorted(value.atoms(sp.Indexed), key=str)})
        except (KeyError, IndexError):  # an entry the network does not have (a wrong formula's index)
            return sp.nan

    formulas = {t.key: t.formula for t in st.theorems}
    deltas: dict = {}
    out = []
    for layer in range(L, 0, -1):
        key = "BP1" if layer == L else "BP2"
        deltas[layer] = [[None] * n[layer] for _ in range(E)]
        for ex in examples:
            for jj in range(n[layer]):
                idx = {"j": jj, **({"e": ex} if ex is not None else {})}
                value = instance(formulas[key], layer, **idx)
                deltas[layer][ex or 0][jj] = value
                truth = chain.delta(ex or 0, layer, jj)
                out.append(Agreement(f"delta{layer}[{jj}]" + (f", example {ex}" if ex is not None else ""),
                                     value, truth, None, value is not sp.nan and is_identity(value, truth, rule)))
    for check in concrete.partials:
        p = check.derivation.param
        if p.kind == "b":
            value = instance(formulas["BP3"], p.layer, j=p.j)
        else:
            value = instance(formulas["BP4"], p.layer, j=p.j, k=p.k)
        same = value is not sp.nan and is_identity(value, check.chain, rule) and is_identity(value, check.matrix, rule)
        out.append(Agreement(check.name, value, check.chain, check.matrix, same))
    return out
