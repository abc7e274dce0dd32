"""The general proof as data: the rules a step may use, steps, chains of equalities, theorems, settings and
the whole proof (a derive.verdict.Result)."""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from derive.proofs.general.model import Model
from derive.proofs.general.printing import Range, latex, render_parts, text
from derive.proofs.identity import Counterexample
from derive.verdict import Verdict, exit_code


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
    Rule("unfold", "written out", "every entry of a defined quantity (x̂, σ², μ) replaced by its definition",
         r"every entry of a defined quantity ($\hat{x}$, $\sigma^2$, $\mu$) replaced by its definition", "rule"),
    Rule("fold", "a mean named", "a sum that is N times a mean's definition replaced by N times its name: "
         "μ = (1/N) Σ_d x_d gives Σ_d x_d = N μ (the index of the sum may have any name)",
         r"a sum that is $N$ times a mean's definition replaced by $N$ times its name: "
         r"$\mu = \frac{1}{N} \sum_d x_d$ gives $\sum_d x_d = N \mu$", "rule"),
    Rule("graph", "chain rule on the graph", "∂C/∂x = Σ_u ∂C/∂u · ∂u/∂x over every entry u whose definition reads x "
         "(reverse accumulation); ∂u/∂x differentiates u's definition with its other inputs held, and ∂C/∂u of a "
         "computed u is C's derivative with u cut loose from its inputs; who reads x is read off the definitions",
         r"$\partial C/\partial x = \sum_u \partial C/\partial u \cdot \partial u/\partial x$ over every entry "
         r"$u$ whose definition reads $x$ (reverse accumulation); $\partial u/\partial x$ differentiates $u$'s "
         r"definition with its other inputs held, and $\partial C/\partial u$ of a computed $u$ is $C$'s derivative "
         r"with $u$ cut loose from its inputs; who reads $x$ is read off the definitions", "rule"),
    Rule("through", "chain rule through the outputs", "∂C/∂x = Σ_y ∂C/∂y · dy/dx over the layer's outputs y when C "
         "reads the outputs only and every output that depends on x is summed (read off the definitions); dy/dx "
         "differentiates y written out in the inputs",
         r"$\partial C/\partial x = \sum_y \partial C/\partial y \cdot dy/dx$ over the layer's outputs $y$ when "
         r"$C$ reads the outputs only and every output that depends on $x$ is summed (read off the definitions); "
         r"$dy/dx$ differentiates $y$ written out in the inputs", "rule"),
    Rule("constant", "sum of a constant", "Σ_{c=0..N-1} t = N t for t free of c (SymPy's summation)",
         r"$\sum_{c=0}^{N-1} t = N t$ for $t$ free of $c$ (SymPy's summation)", "sympy"),
    Rule("res-hypothesis", "induction hypothesis", "Δ^r_k = ∂C/∂h^r_k for every k: the cost's partial when r = R, "
         "this same theorem one block up otherwise",
         r"$\Delta^{r}_{k} = \partial C/\partial h^{r}_{k}$ for every $k$: the cost's partial when $r = R$, this "
         r"same theorem one block up otherwise", "rule"),
    Rule("guard", "guard as a bracket", "Piecewise((e, c), (0, True)) = e·[c], [c] being 1 where c holds and 0 where "
         "it does not; the parts of c that hold for every index in range are dropped (as in the index range rule), "
         "each inequality of the rest written t ≥ 0 with t expanded",
         r"$\{e \text{ if } c;\ 0 \text{ otherwise}\} = e\,[c]$, $[c]$ being 1 where $c$ holds and 0 where it "
         r"does not; the parts of $c$ that hold for every index in range are dropped (as in the index range rule), "
         r"each inequality of the rest written $t \ge 0$ with $t$ expanded", "rule"),
    Rule("name", "a value named", "each instance of a definition's right-hand side replaced by the entry it defines "
         "(exp(S[t,u]) / Σ_v exp(S[t,v]) by P[t,u])",
         r"each instance of a definition's right-hand side replaced by the entry it defines "
         r"($e^{S_{t,u}} / \sum_v e^{S_{t,v}}$ by $P_{t,u}$)", "rule"),
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


@dataclass
class Step:
    """One equality lhs = rhs, the rule that licenses it, and the verdict of its check."""

    lhs: sp.Expr
    rhs: sp.Expr
    rule: str  # a key of RULES
    data: dict = field(default_factory=dict)  # the rule's bindings, what the check needs
    verdict: Verdict = Verdict.UNPROVEN
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
        return self.verdict in (Verdict.GIVEN, Verdict.PROVEN)

    def evidence_text(self) -> str:
        return render_parts(self.evidence, "text")

    def evidence_latex(self) -> str:
        return render_parts(self.evidence, "latex")


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
class Scope:
    """Where a theorem holds: the ranges of its indices (free ones, and those a lemma holds for) and its layers."""

    ranges: dict  # index symbol -> (lo, hi)
    layers: dict  # L -> its value in terms of l and a fresh integer s >= 0
    layer_range: Range | None  # 1 <= l <= L - 1, or None: the output layer L
    hypothesis_layer: sp.Expr | None = None  # BP2: delta^{l+1} = dC/dz^{l+1} is assumed


@dataclass
class Theorem:
    key: str  # "BP1"
    setting: str
    title: str
    lhs: sp.Expr
    formula: sp.Expr
    scope: Scope
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
    def verdict(self) -> Verdict:
        if any(s.verdict == Verdict.REFUTED for s in self.steps):
            return Verdict.REFUTED
        done = not self.stuck and self.main.final == self.formula and self.main.head == self.lhs
        return Verdict.PROVEN if done and all(s.ok for s in self.steps) else Verdict.UNPROVEN

    @property
    def ok(self) -> bool:
        return self.verdict == Verdict.PROVEN


class Builder:
    """Appends the steps of a theorem's chains, each computed by its rule's operation (checked afterwards)."""

    def __init__(self, model, thm: Theorem):
        self.M, self.thm = model, thm

    def chain(self, name: str, head) -> Chain:
        c = Chain(name, head)
        self.thm.chains.append(c)
        return c

    def _add(self, c: Chain, rhs, rule: str, **data) -> None:
        c.steps.append(Step(c.final, rhs, rule, data))


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
    verdict: Verdict


@dataclass
class GeneralProof:
    """BP1-BP4 in each setting, and the rules checked on small instances (a derive.verdict.Result)."""

    settings: list[Setting]
    rule_checks: list[RuleCheck]
    seconds: float = 0.0
    layers: list[Setting] = field(default_factory=list)  # batch norm, layer norm, residual blocks (LAYERS)

    @property
    def theorems(self) -> list[Theorem]:
        return [t for s in self.settings for t in s.theorems]

    @property
    def steps(self) -> list[Step]:
        return [st for t in self.theorems for st in t.steps]

    def setting(self, key: str) -> Setting:
        return next(s for s in self.settings if s.key == key)

    @property
    def layer_theorems(self) -> list[Theorem]:
        return [t for s in self.layers for t in s.theorems]

    @property
    def ok(self) -> bool:
        return (all(t.ok for t in self.theorems + self.layer_theorems)
                and all(r.verdict == Verdict.PROVEN for r in self.rule_checks))

    @property
    def verdict(self) -> Verdict:
        if self.ok:
            return Verdict.PROVEN
        every = self.theorems + self.layer_theorems
        return Verdict.REFUTED if any(t.verdict == Verdict.REFUTED for t in every) else Verdict.UNPROVEN

    def layers_summary(self) -> str:
        """One line for the layers beyond dense: how many theorems and steps, and what the symbols cover."""
        thms = self.layer_theorems
        steps = [st for t in thms for st in t.steps]
        good = sum(t.ok for t in thms)
        given = sum(s.verdict == Verdict.GIVEN for s in steps)
        proven = sum(s.verdict == Verdict.PROVEN for s in steps)
        keys = [s.key for s in self.layers]
        sizes = []
        if set(keys) & {"batchnorm", "layernorm", "residual"}:
            sizes.append("the batch size B, the width n, the number of blocks R and their inner depth P")
        if set(keys) & {"conv2d", "conv1d"}:
            sizes.append("the channels C and O and, per axis, the input size H, the kernel k, the stride s and the "
                         "padding p")
        if set(keys) & {"attention", "attention-causal"}:
            sizes.append("the sequence length T and the widths d_k, d_v")
        head = (f"layers beyond dense: {good}/{len(thms)} theorems proven ({', '.join(keys)}) "
                f"with {'; '.join(sizes)} as symbols, {proven} steps proven from {given} definitions")
        bad = [f"{t.setting} {t.key} ({t.verdict.lower()})" for t in thms if not t.ok]
        if bad:
            return head + "; NOT proven: " + ", ".join(bad)
        if any(s.key == "residual" for s in self.layers):
            return head + "; base and step (top and inner within a block) cover every depth by induction"
        return head

    def summary(self) -> str:
        thms, steps = self.theorems, self.steps
        good = sum(t.ok for t in thms)
        given = sum(s.verdict == Verdict.GIVEN for s in steps)
        proven = sum(s.verdict == Verdict.PROVEN for s in steps)
        head = (f"general proof: {good}/{len(thms)} theorems proven (BP1-BP4; {', '.join(s.key for s in self.settings)})"
                f" with symbolic widths, {proven} steps proven from {given} definitions")
        if self.ok:
            return head + "; BP1 and BP2 together cover every depth by induction"
        bad = [f"{t.setting} {t.key} ({t.verdict.lower()})" for t in thms + self.layer_theorems if not t.ok]
        bad += [f"rule {r.rule} ({r.verdict.lower()})" for r in self.rule_checks if r.verdict != Verdict.PROVEN]
        return head + "; NOT proven: " + ", ".join(bad)


    @property
    def exit_code(self) -> int:
        """0 when every theorem and rule check holds, 1 otherwise."""
        return exit_code([self.verdict])

    def to_json(self) -> dict:
        """Each setting's theorems with their verdicts and statements, and the evidence of every step that failed."""
        def part(st: Setting) -> dict:
            return {"setting": st.key, "title": st.title, "theorems": [{
                "theorem": t.key,
                "verdict": t.verdict,
                "statement": f"{text(t.lhs)} = {text(t.formula)}",
                "failed": [{"rule": s.rule, "verdict": s.verdict, "statement": f"{text(s.lhs)} = {text(s.rhs)}",
                            "evidence": s.evidence_text()} for s in t.steps if not s.ok],
                **({"stuck": t.stuck} if t.stuck else {}),
            } for t in st.theorems]}

        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "settings": [part(st) for st in self.settings],
            "rule_checks": [{"rule": r.rule, "what": r.what, "verdict": r.verdict} for r in self.rule_checks],
            **({"layers": [part(st) for st in self.layers], "layers_summary": self.layers_summary()}
               if self.layers else {}),
        }

    # Jupyter: derive.report.notebook (a layer above, which this module cannot import) fills _shows in when imported
    _shows = {}  # not annotated: a class attribute, not a dataclass field

    def _repr_markdown_(self) -> str:
        """The general proof typeset for Jupyter (derive.report.notebook), or its summary until that is imported."""
        show = self._shows.get("markdown")
        return show(self) if show else self.summary()


def check_by_rules(thm: Theorem, model, rules: dict) -> Theorem:
    """Check every step of a theorem on its own statement, in order, by its rule's check (a layer's or a spatial
    theorem's table: rule -> (step, theorem, model) -> (verdict, evidence)); returns the theorem."""
    for c in thm.chains:
        for st in c.steps:
            st.counterexample = None
            st.verdict, st.evidence = rules[st.rule](st, thm, model)
    return thm
