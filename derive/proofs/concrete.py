"""Exact proofs: the chain rule, the sympy.diff oracle and the matrix forms meet.

Every entry is proven by derive.proofs.identity (an exact identity in the atoms);
random points only look for a counterexample when that fails.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from derive.chain import ChainRule, Derivation
from derive.matrix import Form, MatrixForms
from derive.network import Network, Param
from derive.proofs.identity import Counterexample, deep_stack, find_counterexample, is_identity, relations
from derive.spec import Spec, load_spec
from derive.tables.notations import text
from derive.verdict import Verdict, exit_code

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
    def verdict(self) -> Verdict:
        if self.proven:
            return Verdict.PROVEN
        return Verdict.REFUTED if self.counterexample else Verdict.UNPROVEN

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "form": self.form, "entry": list(self.entry), "verdict": self.verdict,
               "matrix": text(self.matrix), "chain_rule": text(self.chain), "oracle": self.oracle is not None}
        if self.derivation and self.derivation.paths is not None:
            out["paths"] = [[text(f.value) for f in p.factors] for p in self.derivation.paths]
        if self.counterexample:
            out["counterexample"] = self.counterexample.to_json()
        return out


@dataclass
class Proof:
    """Every check of one network's proof (a derive.verdict.Result)."""

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

    @property
    def exit_code(self) -> int:
        return exit_code(c.verdict for c in self.checks)

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

    def to_json(self) -> dict:
        """What `prove --json` prints: the keys every mode shares (see derive.proofs.scalable), then the checks."""
        per_layer: dict = {}
        per_form: dict = {}
        for c in self.checks:
            if c.derivation is not None:
                _count(per_layer, group(c.derivation.param), c.proven)
            _count(per_form, c.form, c.proven)
        with_oracle = [c for c in self.partials if c.oracle is not None]
        return {"spec": self.spec.as_dict(), "mode": "full", "summary": self.summary(), "proven": self.ok,
                "n_params": len(self.net.params), "per_layer": per_layer, "per_form": per_form,
                "oracle": {"checked": len(with_oracle), "agree": sum(c.proven for c in with_oracle), "seed": None,
                           "sample": None if self.oracle == "all" else [c.name for c in with_oracle]},
                "seconds": {"total": round(self.seconds, 3)},
                "failures": [{"name": c.name, "form": c.form, "entry": list(c.entry),
                              "counterexample": c.to_json().get("counterexample")} for c in self.checks if not c.proven],
                "forms_summary": self.forms_summary(), "output_delta": [text(e) for e in self.output_delta],
                "output_delta_is_a_minus_y": self.output_delta_is_a_minus_y,
                "checks": [c.to_json() for c in self.checks]}

    # Jupyter: derive.report.notebook (a layer above, which this module cannot import) fills _shows in when imported
    _shows = {}  # not annotated: a class attribute, not a dataclass field

    def _repr_markdown_(self) -> str:
        """The proof typeset for Jupyter (derive.report.notebook), or its summary until that is imported."""
        show = self._shows.get("markdown")
        return show(self) if show else self.summary()


def group(p: Param) -> str:
    """A partial's row of the per-layer counts: its matrix, the augmented bias weights apart."""
    return f"{p.matrix} (bias weights)" if p.is_bias and p.kind == "w" else p.matrix


def _count(table: dict, key: str, proven: bool) -> None:
    entry = table.setdefault(key, {"proven": 0, "total": 0})
    entry["proven"] += bool(proven)
    entry["total"] += 1


# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

_W = sp.Symbol("_W")  # stands for the parameter in an oracle pattern
_X = [sp.Symbol(f"_X{e}") for e in range(64)]  # and for the input it multiplies, per example


@deep_stack
def oracle_partial(net: Network, p: Param, patterns: dict | None = None) -> sp.Expr:
    """dC/dp by sympy.diff of the composed cost, then written in the atoms.

    What does not depend on p is held as a symbol (Network.composed_for): its
    derivative is 0 either way, and the expression sympy.diff walks stays small.
    Every weight into the same neuron gives the same composed expression up to the
    names of the weight and of the input it multiplies, so sympy.diff runs once per
    neuron on that pattern (parameter and input as the symbols _W, _X) and each
    partial is the pattern's derivative with the names put back: renaming symbols
    commutes with differentiation. `patterns` keeps them per neuron: pass the same dict
    for every partial of one network, and each pattern is differentiated once.
    """
    cache = {} if patterns is None else patterns
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
    patterns: dict = {}  # the oracle's, per neuron

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
                        check.oracle = oracle_partial(net, p, patterns)
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
