"""The general proof (issue 5): BP1-BP4 for symbolic widths and any depth.

The proof must pass, and a checker that cannot fail proves nothing: wrong general
formulas must be refuted with a counterexample that really is one, tampered steps
must lose their verdict, and the general formulas at widths 2-3-2 must agree with
the concrete proofs of the core.
"""

import copy
import json
import shutil
import subprocess
import sys
import types

import pytest
import sympy as sp

from derive.proofs import general
from derive.proofs.general import instance, rules
from derive.errors import DeriveError
from derive.proofs.general import (
    RULES, SETTINGS, CostPartial, LocalPartial, Model, canonical, check_theorem, concrete_agreement,
    equal_by_linearity, prove_general, prove_setting, prove_theorem, sigma, sigma_prime, text,
)
from derive.report.general import to_latex
from derive.proofs.concrete import prove
from derive.spec import validate
from tests.conftest import needs_pdflatex


@pytest.fixture(scope="module")
def proof():
    return prove_general()


def spec_of(sizes, convention="column", batch="single", examples=1):
    return validate({"name": "general_instance", "sizes": list(sizes), "activation": "sigmoid", "cost": "quadratic",
                     "convention": convention, "bias": "separate", "batch": batch, "notation": "nielsen",
                     "examples": examples})


# -- the proof passes, as data ---------------------------------------------------

def test_every_theorem_in_every_setting_is_proven(proof):
    assert proof.ok and proof.verdict == "PROVEN"
    assert [s.key for s in proof.settings] == list(SETTINGS)
    assert [(t.setting, t.key) for t in proof.theorems] == [(s, k) for s in SETTINGS for k in ("BP1", "BP2", "BP3", "BP4")]
    assert all(t.verdict == "PROVEN" for t in proof.theorems)
    assert all(s.verdict in ("GIVEN", "PROVEN") for s in proof.steps)
    assert all(r.verdict == "PROVEN" for r in proof.rule_checks)
    assert "BP1 and BP2 together cover every depth by induction" in proof.summary()


def test_the_proof_is_a_result_its_json_plain_data(proof):
    from derive.verdict import Result, Verdict

    assert isinstance(proof, Result) and proof.exit_code == 0 and proof.verdict is Verdict.PROVEN
    data = proof.to_json()
    assert json.loads(json.dumps(data)) == data
    assert data["verdict"] == "PROVEN" and data["summary"] == proof.summary()
    assert [s["setting"] for s in data["settings"]] == list(SETTINGS)
    assert data["settings"][0]["theorems"][0] == {
        "theorem": "BP1", "verdict": "PROVEN", "statement": "δ^(L)[j] = ∂C/∂a^(L)[j]*σ'(z^(L)[j])", "failed": []}
    assert [r["verdict"] for r in data["rule_checks"]] == ["PROVEN", "PROVEN"]
    M = Model("column")
    _, wrong = _wrong(M, "a^l in BP4")
    bad = prove_general(["column"], candidates={"column": {"BP4": wrong}})
    data = json.loads(json.dumps(bad.to_json()))
    assert not bad.ok and bad.exit_code == 1 and data["verdict"] == "REFUTED"
    bp4 = data["settings"][0]["theorems"][3]
    thm = bad.theorems[3]
    assert bp4["theorem"] == "BP4" and bp4["verdict"] == "REFUTED"
    assert bp4["statement"] == f"{text(thm.lhs)} = {text(wrong)}"
    (failed,) = bp4["failed"]  # the formula step; every step before it holds
    assert failed["rule"] == "formula" and failed["verdict"] == "REFUTED"
    assert failed["evidence"] == thm.steps[-1].evidence_text() and failed["evidence"].startswith("counterexample at ")
    assert all(t["failed"] == [] for t in data["settings"][0]["theorems"][:3])


def test_steps_are_data_with_statement_rule_and_verdict(proof):
    for step in proof.steps:
        assert isinstance(step.lhs, sp.Basic) and isinstance(step.rhs, sp.Basic)
        assert isinstance(step.statement, sp.Eq)
        assert step.latex == f"{general.latex(step.lhs)} = {general.latex(step.rhs)}"
        rule = RULES[step.rule]
        assert rule.name and rule.justification and rule.tex
    # the given steps are the definitions only; everything else is proven
    assert {s.rule for s in proof.steps if s.verdict == "GIVEN"} == {"definition"}
    used = {s.rule for s in proof.steps}
    assert {"chain", "diff", "kronecker", "range", "lemma", "hypothesis", "def-delta", "def-a"} <= used


def test_the_statements_are_the_textbook_ones(proof):
    M = proof.setting("column").model
    l, L, j, k, e = M.l, M.L, M.j, M.k, M.e
    col = proof.setting("column")
    assert col.theorem("BP1").formula == CostPartial(M.a[L, j]) * sigma_prime(M.z[L, j])
    bp2 = sp.Sum(M.w[l + 1, k, j] * M.delta[l + 1, k], (k, 0, M.width(l + 1) - 1)) * sigma_prime(M.z[l, j])
    assert col.theorem("BP2").formula == bp2
    assert col.theorem("BP3").lhs == CostPartial(M.b[l, j]) and col.theorem("BP3").formula == M.delta[l, j]
    assert col.theorem("BP4").lhs == CostPartial(M.w[l, j, k])
    assert col.theorem("BP4").formula == M.a[l - 1, k] * M.delta[l, j]
    R = proof.setting("row").model
    assert proof.setting("row").theorem("BP4").lhs == CostPartial(R.w[l, k, j])  # W^l_{kj} holds w_{jk}
    B = proof.setting("column-batch").model
    assert proof.setting("column-batch").theorem("BP4").formula == sp.Sum(
        B.a[l - 1, e, k] * B.delta[l, e, j], (e, 0, B.B - 1))


def test_kronecker_deltas_and_range_guards_are_discharged_step_by_step(proof):
    M = proof.setting("column").model
    thm = proof.setting("column").theorem("BP2")
    lemma = thm.chains[1]
    assert thm.chains[0].head == M.z[M.l + 1, M.k]
    assert lemma.head == LocalPartial(M.z[M.l + 1, M.k], M.z[M.l, M.j])
    kinds = [s.rule for s in lemma.steps]
    assert kinds == ["diff", "kronecker", "range"]
    diff, kron, guard = lemma.steps
    assert diff.rhs.has(sp.KroneckerDelta) and isinstance(diff.rhs, sp.Sum)
    assert isinstance(kron.rhs, sp.Piecewise)
    assert not guard.rhs.has(sp.Piecewise) and not guard.rhs.has(sp.KroneckerDelta)
    assert "SymPy reduces it to True" in guard.evidence_text()
    chain = next(s for s in thm.steps if s.rule == "chain")
    assert "z^{l} → a^{l} → z^{l+1}" in chain.evidence_text()


# -- wrong formulas are not proven -----------------------------------------------------

def _wrong(M: Model, kind: str):
    l, j, k = M.l, M.j, M.k
    if kind == "swapped weight":  # w^{l+1}_{jk} in place of w^{l+1}_{kj}
        return "BP2", M.formula("BP2").xreplace({M.weight(l + 1, k, j): M.weight(l + 1, j, k)})
    if kind == "sigma' of layer l+1":
        e = M.e if M.batch else None
        return "BP2", M.formula("BP2").xreplace({sigma_prime(M.Z(l, j, e)): sigma_prime(M.Z(l + 1, j, e))})
    if kind == "a^l in BP4":  # a^l_k in place of a^{l-1}_k
        e = M.e if M.batch else None
        return "BP4", M.formula("BP4").xreplace({M.A(l - 1, k, e): M.A(l, k, e)})
    if kind == "BP1 without sigma'":
        e = M.e if M.batch else None
        return "BP1", CostPartial(M.A(M.L, j, e))
    if kind == "BP3 not summed":
        return "BP3", M.D(l, j, M.e) if M.batch else 2 * M.D(l, j)
    raise KeyError(kind)


def _recheck_counterexample(step, ce):
    """Evaluate both sides at the counterexample, independently of find_counterexample."""
    values = dict(ce.values)
    out = []
    for side in (step.lhs, step.rhs):
        v = side.xreplace(dict(ce.sizes)).subs(dict(ce.indices)).doit()
        v = v.xreplace({x: values[x] for x in v.atoms(sigma, sigma_prime, CostPartial) if x in values})
        v = v.xreplace({x: values[x] for x in v.atoms(sp.Indexed)})
        out.append(v)
    _assert_consistent(ce)
    return out


def _assert_consistent(ce):
    """The values of a counterexample obey the model's definitions, and every entry exists in its network."""
    values = dict(ce.values)
    widths = dict(ce.layer_widths)
    examples = dict(ce.sizes).get(sp.Symbol("B", integer=True, positive=True), 1)
    for x, v in values.items():
        if isinstance(x, CostPartial) and isinstance(x.args[0], sp.Indexed) and x.args[0].base.name == "z":
            same = sp.Indexed("delta", *x.args[0].indices)
            assert values.get(same, v) == v, (x, v, same, values.get(same))  # δ ≡ ∂C/∂z
        if isinstance(x, sigma) and isinstance(x.args[0], sp.Indexed):
            same = sp.Indexed("a", *x.args[0].indices)
            assert values.get(same, v) == v, (x, v, same, values.get(same))  # a = σ(z)
        if isinstance(x, CostPartial) and isinstance(x.args[0], sigma):
            same = CostPartial(sp.Indexed("a", *x.args[0].args[0].indices))
            assert values.get(same, v) == v, (x, v, same, values.get(same))
        for entry in ({x} if isinstance(x, sp.Indexed) else x.atoms(sp.Indexed)):
            layer, *idx = (int(i) for i in entry.indices)
            L = max(widths)
            assert 0 <= layer <= L and layer in widths
            if entry.base.name in ("w", "W"):
                out, inp = (idx[1], idx[0]) if entry.base.name == "W" else idx
                assert layer >= 1 and 0 <= out < widths[layer] and 0 <= inp < widths[layer - 1], entry
            else:
                *ex, i = idx
                assert 0 <= i < widths[layer] and all(0 <= e < examples for e in ex), entry
                assert layer >= 1 or entry.base.name == "a", entry


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("kind", ["swapped weight", "sigma' of layer l+1", "a^l in BP4", "BP1 without sigma'",
                                  "BP3 not summed"])
def test_wrong_formula_is_refuted_with_a_real_counterexample(setting, kind):
    M = Model(setting)
    key, candidate = _wrong(M, kind)
    thm = prove_theorem(M, key, candidate)
    assert thm.verdict == "REFUTED" and not thm.ok
    last = thm.steps[-1]
    assert last.rule == "formula" and last.rhs == candidate and last.verdict == "REFUTED"
    ce = last.counterexample
    assert ce is not None and ce.lhs != ce.rhs
    left, right = _recheck_counterexample(last, ce)
    assert (left, right) == (ce.lhs, ce.rhs)
    # the derivation before the formula is untouched: every other step still holds
    assert all(s.ok for s in thm.steps[:-1])


def test_an_equivalent_rewriting_is_proven():
    M = Model("column")
    l, j = M.l, M.j
    i = sp.Symbol("i", integer=True, nonnegative=True)
    inside = sp.Sum(sigma_prime(M.z[l, j]) * M.delta[l + 1, i] * M.w[l + 1, i, j], (i, 0, M.width(l + 1) - 1))
    thm = prove_theorem(M, "BP2", inside)
    assert thm.verdict == "PROVEN" and thm.steps[-1].rule == "formula"
    assert equal_by_linearity(inside, M.formula("BP2"))
    assert not equal_by_linearity(inside, M.formula("BP2").xreplace({M.w[l + 1, M.k, j]: M.w[l + 1, j, M.k]}))


def test_a_wrong_candidate_makes_the_whole_proof_fail():
    M = Model("row")
    _, wrong = _wrong(M, "swapped weight")
    p = prove_general(["row"], candidates={"row": {"BP2": wrong}})
    assert not p.ok and p.verdict == "REFUTED"
    assert "NOT proven: row BP2 (refuted)" in p.summary()
    assert "cover every depth" not in p.summary()


# -- a defined quantity written another way (issue 12) -----------------------------------

def _defined_another_way(M: Model, case: str):
    """A true formula with a quantity the model defines written by its definition."""
    l, L, j, k = M.l, M.L, M.j, M.k
    e = M.e if M.batch else None
    i = sp.Symbol("i", integer=True, nonnegative=True)
    if case == "BP3 with dC/dz for delta":
        return "BP3", M.over_examples(CostPartial(M.Z(l, j, e)), e)
    if case == "BP2 with dC/dz^{l+1} for delta^{l+1}":
        return "BP2", M.formula("BP2").xreplace({M.D(l + 1, k, e): CostPartial(M.Z(l + 1, k, e))})
    if case == "BP1 with dC/dsigma(z) for dC/da":
        return "BP1", M.formula("BP1").xreplace({CostPartial(M.A(L, j, e)): CostPartial(sigma(M.Z(L, j, e)))})
    if case == "BP4 with dC/dz for delta":
        return "BP4", M.over_examples(M.A(l - 1, k, e) * CostPartial(M.Z(l, j, e)), e)
    if case == "BP1 with z^L by its definition":
        return "BP1", M.formula("BP1").xreplace({M.Z(L, j, e): M.z_definition(L, j, e, i)})
    if case == "BP2 with dC/d(W a + b) for delta^{l+1}":
        return "BP2", M.formula("BP2").xreplace({M.D(l + 1, k, e): CostPartial(M.z_definition(l + 1, k, e, i))})
    if case == "BP1 with dC/dsigma(W a + b) for dC/da":
        return "BP1", M.formula("BP1").xreplace({CostPartial(M.A(L, j, e)):
                                                 CostPartial(sigma(M.z_definition(L, j, e, i)))})
    if case == "BP4 plus delta^l (W a + b - z^l): a bare z is its definition":
        return "BP4", M.formula("BP4") + M.D(l, j, e) * (M.z_definition(l, j, e, i) - M.Z(l, j, e))
    raise KeyError(case)


THE_REPORTED = ["BP3 with dC/dz for delta", "BP2 with dC/dz^{l+1} for delta^{l+1}", "BP1 with dC/dsigma(z) for dC/da"]
RELATED = ["BP4 with dC/dz for delta", "BP1 with z^L by its definition", "BP2 with dC/d(W a + b) for delta^{l+1}",
           "BP1 with dC/dsigma(W a + b) for dC/da", "BP4 plus delta^l (W a + b - z^l): a bare z is its definition"]


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("case", THE_REPORTED + RELATED)
def test_a_defined_quantity_written_by_its_definition_is_proven(setting, case):
    M = Model(setting)
    key, candidate = _defined_another_way(M, case)
    assert candidate != M.formula(key)
    thm = prove_theorem(M, key, candidate)
    assert thm.verdict == "PROVEN", (thm.steps[-1].evidence_text())
    last = thm.steps[-1]
    assert last.rule == "formula" and last.rhs == candidate and last.counterexample is None
    assert "written one way" in last.evidence_text()


def test_canonical_writes_each_defined_quantity_one_way():
    for setting in SETTINGS:
        M = Model(setting)
        ctx = prove_theorem(M, "BP2").scope  # 1 <= l <= L - 1
        l, k, e = M.l, M.k, (M.e if M.batch else None)
        i = sp.Symbol("i", integer=True, nonnegative=True)
        assert canonical(M, CostPartial(M.Z(l + 1, k, e)), ctx) == M.D(l + 1, k, e)
        assert canonical(M, sigma(M.Z(l, k, e)), ctx) == M.A(l, k, e)
        assert canonical(M, CostPartial(sigma(M.z_definition(l, k, e, i))), ctx) == CostPartial(M.A(l, k, e))
        assert canonical(M, sigma_prime(M.z_definition(l + 1, k, e, i)), ctx) == sigma_prime(M.Z(l + 1, k, e))
        assert equal_by_linearity(canonical(M, M.Z(l, k, e), ctx), M.z_definition(l, k, e, i))
        # sigma(z^{l-1}) is not a^{l-1} when l = 1: z^0 does not exist, a^0 is the input
        assert canonical(M, sigma(M.Z(l - 1, k, e)), ctx) == sigma(M.Z(l - 1, k, e))


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_counterexample_gives_a_defined_quantity_one_value(setting):
    M = Model(setting)
    l, L, j, e = M.l, M.L, M.j, (M.e if M.batch else None)
    wrong = {  # each mixes a quantity with its definition and is wrong (twice the truth)
        "BP3": M.over_examples(M.D(l, j, e) + CostPartial(M.Z(l, j, e)), e),
        "BP1": M.formula("BP1") + CostPartial(sigma(M.Z(L, j, e))) * sigma_prime(M.Z(L, j, e)),
        "BP2": M.formula("BP2") + M.formula("BP2").xreplace({M.D(l + 1, M.k, e): CostPartial(M.Z(l + 1, M.k, e))}),
    }
    for key, candidate in wrong.items():
        thm = prove_theorem(M, key, candidate)
        assert thm.verdict == "REFUTED", key
        last = thm.steps[-1]
        ce = last.counterexample
        left, right = _recheck_counterexample(last, ce)
        assert (left, right) == (ce.lhs, ce.rhs) and right == 2 * left and left != 0
        values = dict(ce.values)
        pairs = [(x, M.delta[x.args[0].indices]) for x in values
                 if isinstance(x, CostPartial) and isinstance(x.args[0], sp.Indexed) and x.args[0].base == M.z]
        pairs += [(x, CostPartial(M.a[x.args[0].args[0].indices])) for x in values
                  if isinstance(x, CostPartial) and isinstance(x.args[0], general.sigma)]
        assert pairs and all(values[x] == values[y] for x, y in pairs), key  # both named, one value


# -- widths other than 2 -------------------------------------------------------------------

def _width_dependent(M: Model, case: str):
    l, j, k = M.l, M.j, M.k
    n_l, n_up = M.width(l), M.width(l + 1)
    if case == "BP2 summed over n_l, not n_{l+1}":
        return "BP2", M.formula("BP2").xreplace({n_up: n_l})
    if case == "BP2 times (n_{l+1} - 1)":
        return "BP2", M.formula("BP2") * (n_up - 1)
    if case == "BP2 times (n_l - 1)":
        return "BP2", M.formula("BP2") * (n_l - 1)
    if case == "BP4 times n_{l-1} / 2":
        return "BP4", M.formula("BP4") * M.width(l - 1) / 2
    if case == "BP3 over the first two examples only":
        return "BP3", sp.Sum(M.D(l, j, M.e), (M.e, 0, 1)) if M.batch else M.formula("BP3") * (n_l - 1)
    raise KeyError(case)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("case", ["BP2 summed over n_l, not n_{l+1}", "BP2 times (n_{l+1} - 1)", "BP2 times (n_l - 1)",
                                  "BP4 times n_{l-1} / 2", "BP3 over the first two examples only"])
def test_a_formula_wrong_at_other_widths_is_refuted_with_a_witness(setting, case):
    M = Model(setting)
    key, candidate = _width_dependent(M, case)
    thm = prove_theorem(M, key, candidate)
    assert thm.verdict == "REFUTED", thm.steps[-1].evidence_text()
    last = thm.steps[-1]
    ce = last.counterexample
    sizes = dict(ce.sizes)
    assert any(v != 2 for s, v in sizes.items() if s not in (M.l, M.L)), ce.text()  # 2 everywhere agrees
    left, right = _recheck_counterexample(last, ce)
    assert (left, right) == (ce.lhs, ce.rhs) and left != right
    assert all(v.is_Rational for v in (left, right))


def test_the_sum_over_n_l_needs_n_l_below_n_l_plus_1():
    """Where n_l > n_{l+1} the sum over n_l uses entries that do not exist: no verdict from there."""
    M = Model("column")
    _, candidate = _width_dependent(M, "BP2 summed over n_l, not n_{l+1}")
    ce = prove_theorem(M, "BP2", candidate).steps[-1].counterexample
    sizes = dict(ce.sizes)
    assert sizes[M.width(M.l)] < sizes[M.width(M.l + 1)], ce.text()


def test_a_formula_wrong_only_below_the_output_layer_is_refuted_there():
    """delta^L for delta^{l+1} in BP2 is right only when l + 1 = L: the counterexample has L > l + 1."""
    for setting in SETTINGS:
        M = Model(setting)
        l, L, k, e = M.l, M.L, M.k, (M.e if M.batch else None)
        thm = prove_theorem(M, "BP2", M.formula("BP2").xreplace({M.D(l + 1, k, e): M.D(L, k, e)}))
        assert thm.verdict == "REFUTED"
        ce = thm.steps[-1].counterexample
        sizes = dict(ce.sizes)
        assert sizes[M.L] > sizes[M.l] + 1, ce.text()
        left, right = _recheck_counterexample(thm.steps[-1], ce)
        assert (left, right) == (ce.lhs, ce.rhs)


def _true_but_not_in_the_proofs_shape(M: Model, case: str):
    l, j, k, e = M.l, M.j, M.k, (M.e if M.batch else None)
    bp2 = M.formula("BP2")
    if case == "the first neuron, then the rest (an empty rest at n_{l+1} = 1)":
        term = next(a for a in bp2.args if isinstance(a, sp.Sum)).function
        rest = sp.Sum(term, (k, 0, 0)) + sp.Sum(term, (k, 1, M.width(l + 1) - 1))
        return "BP2", rest * sigma_prime(M.Z(l, j, e))
    if case == "dC/da^l sigma'(z^l) (the chain rule, not a definition)":
        return "BP2", CostPartial(M.A(l, j, e)) * sigma_prime(M.Z(l, j, e))
    if case == "dC/da^{l+1} sigma'(z^{l+1}) for delta^{l+1}":
        output_form = CostPartial(M.A(l + 1, k, e)) * sigma_prime(M.Z(l + 1, k, e))
        return "BP2", bp2.xreplace({M.D(l + 1, k, e): output_form})
    if case == "delta^l itself":
        return "BP2", M.D(l, j, e)
    if case == "dC/dw itself":
        return "BP4", CostPartial(M.weight(l, j, k))
    if case == "a^{l-1} dC/db^l (one example), sum_e a^{l-1} dC/da^l sigma'(z^l) (a batch)":
        if M.batch:  # dC/dw is a sum of products there, not a^{l-1} dC/db
            return "BP4", M.over_examples(M.A(l - 1, k, e) * CostPartial(M.A(l, j, e)) * sigma_prime(M.Z(l, j, e)), e)
        return "BP4", M.A(l - 1, k) * CostPartial(M.bias(l, j))
    raise KeyError(case)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("case", ["the first neuron, then the rest (an empty rest at n_{l+1} = 1)",
                                  "dC/da^l sigma'(z^l) (the chain rule, not a definition)",
                                  "dC/da^{l+1} sigma'(z^{l+1}) for delta^{l+1}", "delta^l itself", "dC/dw itself",
                                  "a^{l-1} dC/db^l (one example), sum_e a^{l-1} dC/da^l sigma'(z^l) (a batch)"])
def test_a_true_formula_is_never_refuted(setting, case):
    """True, but not in the shape the proof compares: never REFUTED (the counterexample's network knows them all)."""
    M = Model(setting)
    key, candidate = _true_but_not_in_the_proofs_shape(M, case)
    thm = prove_theorem(M, key, candidate)
    assert thm.verdict in ("PROVEN", "UNPROVEN"), thm.steps[-1].evidence_text()
    if case in ("delta^l itself", "dC/dw itself"):  # the theorem's own left-hand side, by the chain above
        assert thm.verdict == "PROVEN" and "is the value derived above" in thm.steps[-1].evidence_text()


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_formula_not_defined_everywhere_is_neither_proven_nor_refuted(setting):
    M = Model(setting)
    l, k, e = M.l, M.k, (M.e if M.batch else None)
    n_up = M.width(l + 1)
    # 0/0 at n_{l+1} = 1, equal elsewhere
    ratio = sp.Mul(n_up ** 2 - 1, sp.Pow((n_up - 1) * (n_up + 1), -1), evaluate=False)
    thm = prove_theorem(M, "BP2", sp.Mul(M.formula("BP2"), ratio, evaluate=False))
    assert thm.verdict == "UNPROVEN"
    assert "divides by zero at n_{l+1} = 1" in thm.steps[-1].evidence_text()
    # twice that: wrong wherever it is defined, so refuted at a width where it is
    thm = prove_theorem(M, "BP2", sp.Mul(2, M.formula("BP2"), ratio, evaluate=False))
    assert thm.verdict == "REFUTED"
    assert dict(thm.steps[-1].counterexample.sizes)[n_up] != 1
    # sigma(z^{l-1}) for a^{l-1}: true for l >= 2, but z^0 does not exist at l = 1
    thm = prove_theorem(M, "BP4", M.formula("BP4").xreplace({M.A(l - 1, k, e): sigma(M.Z(l - 1, k, e))}))
    assert thm.verdict == "UNPROVEN", thm.steps[-1].evidence_text()


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_formula_with_no_value_anywhere_says_why(setting):
    """Never REFUTED (no point has both sides defined), and the step names what the formula lacks."""
    M = Model(setting)
    l, j, e = M.l, M.j, (M.e if M.batch else None)
    n_up = M.width(l + 1)
    cases = {
        M.formula("BP2").xreplace({n_up - 1: n_up}): "which that network does not have",  # one neuron too far
        M.formula("BP2") * CostPartial(sigma_prime(M.Z(l, j, e))): "∂C/∂σ'(z^(1)[",  # not a quantity of the model
        M.formula("BP2") * sp.Symbol("t"): "it names t, which is not a symbol of the model",
        M.formula("BP2").xreplace({M.w: sp.IndexedBase("V")}): "which is not an entry of the model",
        sp.Derivative(sp.Function("f")(M.Z(l, j, e)), M.Z(l, j, e)): "SymPy cannot evaluate it there",
    }
    for candidate, needle in cases.items():
        thm = prove_theorem(M, "BP2", candidate)
        evidence = thm.steps[-1].evidence_text()
        assert thm.verdict == "UNPROVEN" and "has a value at none of the points tried" in evidence
        assert needle in evidence, evidence
    # a float as written is its exact binary value: 0.5 of the formula is wrong, 1.0 of it is the formula
    assert prove_theorem(M, "BP2", 0.5 * M.formula("BP2")).verdict == "REFUTED"
    assert prove_theorem(M, "BP2", 1.0 * M.formula("BP2")).verdict == "PROVEN"


_AS_WRITTEN = {"evaluate": False}


def _over(x, formula, *more):
    """formula * more * x / x, built as written: SymPy would cancel x against 1/x before anything could judge x."""
    return sp.Mul(formula, *more, x, sp.Pow(x, -1, **_AS_WRITTEN), **_AS_WRITTEN)


def _bp2_with(M, *factors):
    """BP2 with more factors inside the sum over k, built as written."""
    l, j, k, e = M.l, M.j, M.k, (M.e if M.batch else None)
    body = sp.Mul(M.weight(l + 1, k, j), M.D(l + 1, k, e), *factors, **_AS_WRITTEN)
    return sp.Mul(sp.Sum(body, (k, 0, M.width(l + 1) - 1)), sigma_prime(M.Z(l, j, e)), **_AS_WRITTEN)


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_formula_that_divides_by_zero_everywhere_is_never_proven(setting):
    """A denominator is judged as written, before SymPy cancels it: 0/0 and x/0 are no value, at no width."""
    M = Model(setting)
    l, j, k, e = M.l, M.j, M.k, (M.e if M.batch else None)
    n_up, f = M.width(l + 1), M.formula("BP2")
    zero = sp.Add(n_up, -n_up, **_AS_WRITTEN)
    every = "the formula divides by zero at every width"
    cases = {
        sp.Add(f, sp.Mul(0, sp.Pow(zero, -1, **_AS_WRITTEN), **_AS_WRITTEN), **_AS_WRITTEN): every,  # f + 0/0
        _over(zero, f): every,  # f * 0/0
        _over(zero, f, 2): every,  # never REFUTED either: where 0/0 is, there is no value to differ
        _over(sp.Pow(zero, 2, **_AS_WRITTEN), f): every,
        sp.Mul(f, sp.Pow(zero, l, **_AS_WRITTEN), sp.Pow(zero, -l, **_AS_WRITTEN), **_AS_WRITTEN): every,
        _over((n_up + 1) ** 2 - n_up ** 2 - 2 * n_up - 1, f): every,  # 0 once expanded
        _over(sp.Add(sp.Sum(M.weight(l + 1, k, j), (k, 0, n_up - 1)),
                     -sp.Sum(M.weight(l + 1, M.q, j), (M.q, 0, n_up - 1)), **_AS_WRITTEN), f): every,  # renamed index
        _over(sp.Add(M.D(l, j, e), -CostPartial(M.Z(l, j, e)), **_AS_WRITTEN), f): every,  # delta is dC/dz
        _over(sp.Add(M.A(l, j, e), -sigma(M.Z(l, j, e)), **_AS_WRITTEN), f): every,  # a is sigma(z)
        _bp2_with(M, sp.Add(k, -k, **_AS_WRITTEN), sp.Pow(sp.Add(k, -k, **_AS_WRITTEN), -1, **_AS_WRITTEN)): every,
        sp.Add(f, sp.Mul(n_up, sp.Pow(0, -1, **_AS_WRITTEN), **_AS_WRITTEN), **_AS_WRITTEN): every,  # n/0
        _over(sigma(sp.Mul(M.Z(l, j, e), zero, sp.Pow(zero, -1, **_AS_WRITTEN), **_AS_WRITTEN)), f): every,
        sp.Add(f, sp.Mul(0, sp.log(zero, evaluate=False), **_AS_WRITTEN), **_AS_WRITTEN): "has no value at any width",
        f * sp.zoo: "has no value at any width",
    }
    for candidate, needle in cases.items():
        thm = prove_theorem(M, "BP2", candidate)
        step = thm.steps[-1]
        assert step.rule == "formula" and thm.verdict == "UNPROVEN", (text(candidate), step.evidence_text())
        assert needle in step.evidence_text() and step.counterexample is None, step.evidence_text()


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_denominator_zero_somewhere_is_judged_before_it_cancels(setting):
    """x/x where x is 0 at some width, layer or index (or is not shown nonzero) is not proven; a counterexample
    is taken only where every denominator as written is nonzero."""
    M = Model(setting)
    l, j, k, e = M.l, M.j, M.k, (M.e if M.batch else None)
    n_l, n_up, f = M.width(l), M.width(l + 1), M.formula("BP2")
    cases = {
        _over(n_up - 1, f): "divides by zero at n_{l+1} = 1",
        _over(j, f): "divides by zero at j = 0",
        _over(l - 1, f): "divides by zero at l = 1",
        _over(n_up - 1.0, f): "divides by zero at n_{l+1} = 1",  # a float is its exact value
        _over(n_l - n_up, f): "divides by zero at n_{l+1} = 1, n_{l} = 1",
        _bp2_with(M, k, sp.Pow(k, -1, **_AS_WRITTEN)): "divides by zero at k = 0",  # the sum's first term
        _bp2_with(M, k - 5, sp.Pow(k - 5, -1, **_AS_WRITTEN)): "divides by zero at k = 5",  # from n_{l+1} = 6 on
        _over(sigma_prime(M.Z(l, j, e)), f): "which is not shown nonzero",  # sigma is arbitrary: sigma' may be 0
        _over(M.D(l + 1, j, e), f): "which is not shown nonzero",
        _over(n_l * n_up - 36, f): "which is not shown nonzero",  # 0 at 6 x 6, beyond the widths tried
    }
    for candidate, needle in cases.items():
        thm = prove_theorem(M, "BP2", candidate)
        assert thm.verdict == "UNPROVEN" and needle in thm.steps[-1].evidence_text(), thm.steps[-1].evidence_text()
    # twice the formula is wrong wherever it has a value: refuted, but never at j = 0, where j/j has none
    thm = prove_theorem(M, "BP2", _over(j, f, 2))
    ce = thm.steps[-1].counterexample
    assert thm.verdict == "REFUTED" and dict(ce.indices)[j] != 0
    assert ce.rhs == 2 * ce.lhs != 0


@pytest.mark.parametrize("setting", SETTINGS)
def test_a_denominator_nonzero_as_written_is_proven(setting):
    """x/x for an x shown nonzero everywhere is 1, whatever shape it was written in."""
    M = Model(setting)
    l, k = M.l, M.k
    n_l, n_up, f = M.width(l), M.width(l + 1), M.formula("BP2")
    one = sp.Add(n_up ** 2, -n_up * n_up, 1, **_AS_WRITTEN)  # 1 once evaluated
    for candidate in (sp.Mul(f, sp.Pow(one, -1, **_AS_WRITTEN), **_AS_WRITTEN), _over(n_up, f), _over(M.B, f),
                      _over(n_l + n_up, f), _over(2 * n_up, f), _over(l, f), _over(n_up - sp.Rational(1, 2), f),
                      _bp2_with(M, k + 1, sp.Pow(k + 1, -1, **_AS_WRITTEN))):
        thm = prove_theorem(M, "BP2", candidate)
        assert thm.verdict == "PROVEN", (text(candidate), thm.steps[-1].evidence_text())


def test_the_concrete_network_of_a_counterexample_is_the_chain_rule():
    """Its gradients (from a^L back to a^0) against sympy.diff of the composed cost, with a polynomial sigma."""
    from fractions import Fraction

    import numpy as np

    for setting in ("column", "row-batch"):
        M = Model(setting)
        widths, B = {0: 2, 1: 3, 2: 2}, (2 if M.batch else 1)
        f = lambda t: t * t / 2 + t / 3 + 1  # noqa: E731
        net = instance.Instance(M, 2, widths, B, np.random.default_rng(1), activation=(f, lambda t: t + Fraction(1, 3)))
        t = sp.Symbol("t")
        x = {(e, k): sp.Symbol(f"x{e}{k}") for e in range(B) for k in range(2)}
        w = {(lay, i, k): sp.Symbol(f"w{lay}{i}{k}") for lay in (1, 2) for i in range(widths[lay])
             for k in range(widths[lay - 1])}
        bias = {(lay, i): sp.Symbol(f"b{lay}{i}") for lay in (1, 2) for i in range(widths[lay])}
        g = {(e, i): sp.Symbol(f"g{e}{i}") for e in range(B) for i in range(2)}
        act = sp.Lambda(t, t ** 2 / 2 + t / 3 + 1)
        cost = 0
        for e in range(B):
            a = [x[e, k] for k in range(2)]
            for lay in (1, 2):
                a = [act(sum(w[lay, i, k] * a[k] for k in range(len(a))) + bias[lay, i]) for i in range(widths[lay])]
            cost += sum(g[e, i] * a[i] for i in range(2))
        subs = {x[e, k]: net.entry(M.A(0, k, e)) for (e, k) in x}
        subs |= {w[key]: net.entry(M.weight(*key)) for key in w}
        subs |= {bias[key]: net.entry(M.bias(*key)) for key in bias}
        subs |= {g[e, i]: net.gradient(M.A(2, i, e)) for (e, i) in g}
        subs = {s: sp.Rational(v.numerator, v.denominator) for s, v in subs.items()}
        for key in w:
            expected = sp.diff(cost, w[key]).xreplace(subs)
            assert net.gradient(M.weight(*key)) == expected, key
        for key in bias:
            assert net.gradient(M.bias(*key)) == sp.diff(cost, bias[key]).xreplace(subs), key
        for (e, k) in x:
            assert net.gradient(M.A(0, k, e)) == sp.diff(cost, x[e, k]).xreplace(subs)


# -- tampered steps lose their verdict ----------------------------------------------

def _tamper(setting, key, pick, change):
    M = Model(setting)
    thm = copy.deepcopy(prove_theorem(M, key))
    steps = thm.steps
    i = pick(steps)
    change(steps[i], M)
    check_theorem(thm, M)
    return thm, steps[i]


@pytest.mark.parametrize("what,pick,change", [
    ("diff with a sign flipped", lambda st: next(i for i, s in enumerate(st) if s.rule == "diff"),
     lambda s, M: setattr(s, "rhs", -s.rhs)),
    ("guard takes the other branch", lambda st: next(i for i, s in enumerate(st) if s.rule == "range"),
     lambda s, M: setattr(s, "rhs", s.lhs.xreplace({s.data["piecewise"]: sp.S.Zero}))),
    ("guard over the wrong width", lambda st: next(i for i, s in enumerate(st) if s.rule == "range"),
     lambda s, M: s.data.update(piecewise=s.data["piecewise"].xreplace({M.width(M.l): M.width(M.l + 1)}))),
    ("chain rule through layer l+2", lambda st: next(i for i, s in enumerate(st) if s.rule == "chain"),
     lambda s, M: (s.data.update(layer=M.l + 2),
                   setattr(s, "rhs", rules.chain_sum(M, s.data["x"], "z", M.l + 2, s.data["i"], None)))),
    ("hypothesis one layer too low", lambda st: next(i for i, s in enumerate(st) if s.rule == "hypothesis"),
     lambda s, M: s.data.update(layer=M.l)),
    ("definition of another neuron", lambda st: 0,
     lambda s, M: setattr(s, "rhs", s.rhs.xreplace({M.k: M.j}))),
])
def test_tampered_step_is_not_proven(what, pick, change):
    thm, step = _tamper("column", "BP2", pick, change)
    assert step.verdict == "UNPROVEN", (what, step.evidence_text())
    assert thm.verdict != "PROVEN"


# -- a concrete instance agrees with the concrete proofs ---------------------------------

@pytest.mark.parametrize("sizes,convention,batch,examples", [
    ((2, 3, 2), "column", "single", 1),
    ((2, 3, 2), "row", "single", 1),
    ((2, 3, 2), "column", "sum", 2),
    ((2, 3, 2, 2), "column", "single", 1),  # two applications of BP2: the induction, written out
])
def test_widths_substituted_agree_with_the_concrete_proof(proof, sizes, convention, batch, examples):
    spec = spec_of(sizes, convention, batch, examples)
    concrete = prove(spec)
    assert concrete.ok
    found = concrete_agreement(spec, proof)
    n_deltas = sum(sizes[1:]) * examples
    assert len(found) == n_deltas + len(concrete.partials)
    assert all(a.agrees for a in found), [a.name for a in found if not a.agrees]
    by_name = {a.name: a for a in found}
    assert by_name["dC/dw1[0,1]"].concrete == next(c.chain for c in concrete.partials if c.name == "dC/dw1[0,1]")


def test_the_instance_of_a_wrong_formula_disagrees():
    M = Model("column")
    _, wrong = _wrong(M, "swapped weight")
    bad = prove_general(["column"], candidates={"column": {"BP2": wrong}})
    found = concrete_agreement(spec_of((2, 3, 2)), bad)
    assert not all(a.agrees for a in found)
    assert all(a.agrees for a in found if a.name.startswith("delta2"))  # BP1 is still right
    assert not all(a.agrees for a in found if a.name.startswith("delta1"))


def test_instance_refuses_what_the_general_proof_does_not_cover():
    with pytest.raises(DeriveError, match="separate biases"):
        concrete_agreement("net222")


# -- API errors ---------------------------------------------------------------------------

def test_bad_api_input_is_one_line_error():
    with pytest.raises(DeriveError, match="unknown setting 'diagonal'"):
        prove_general(["diagonal"])
    with pytest.raises(DeriveError, match="unknown theorem 'BP5'"):
        prove_setting("column", {"BP5": sp.Integer(0)})
    with pytest.raises(DeriveError, match="must be a SymPy expression"):
        prove_setting("column", {"BP1": "a*b"})


# -- the command line and LaTeX ---------------------------------------------------------------

def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", "general", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_prints_each_step_with_its_rule_and_a_summary(tmp_path):
    r = run("--latex", "proof.tex", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("general proof: 16/16 theorems proven")
    assert lines[-1].endswith("BP1 and BP2 together cover every depth by induction")
    assert "wrote proof.tex" in r.stdout
    assert "= Σ_{k=0..n_{l+1}-1}(∂C/∂z^(l+1)[k]*∂z^(l+1)[k]/∂z^(l)[j])   [chain rule]" in r.stdout
    assert "[index range]" in r.stdout and "[sympy.diff]" in r.stdout and "[Kronecker sum]" in r.stdout
    assert r.stdout.count("PROVEN") == 16 + 24 + 18  # BP1-BP4 in four settings; the layers beyond dense (own tests)
    tex = (tmp_path / "proof.tex").read_text()
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert [p.name for p in tmp_path.iterdir()] == ["proof.tex"]


def test_cli_exits_1_when_a_step_is_not_proven(monkeypatch, capsys):
    M = Model("column")
    _, wrong = _wrong(M, "a^l in BP4")
    real = general.prove_general
    monkeypatch.setattr(general, "prove_general",
                        lambda settings, **kw: real(settings, candidates={"column": {"BP4": wrong}}, **kw))
    from derive import cli

    code = cli.run_general(types.SimpleNamespace(latex=None, setting=["column"], brief=True))
    out = capsys.readouterr().out
    assert code == 1
    assert "counterexample at" in out and out.strip().splitlines()[-1].endswith("column BP4 (refuted)")


@pytest.mark.parametrize("args,needle", [
    (("--latex", "proof.pdf"), "must be a .tex file"),
    (("--latex", "no/such/dir/proof.tex"), "does not exist"),
    (("--latex", "afile/proof.tex"), "does not exist"),
    (("--latex", "adir.tex"), "that is a folder"),
    (("--setting", "diagonal"), "invalid choice"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir.tex").mkdir()
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.tex", "afile"]
    assert list((tmp_path / "adir.tex").iterdir()) == []


@needs_pdflatex
def test_latex_document_compiles(proof, tmp_path):
    tex = tmp_path / "general.tex"
    tex.write_text(to_latex(proof))
    r = subprocess.run([shutil.which("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", tex.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert (tmp_path / "general.pdf").stat().st_size > 10_000


@needs_pdflatex
def test_latex_of_a_refuted_proof_compiles_and_shows_the_counterexample(tmp_path):
    M = Model("column-batch")
    _, wrong = _wrong(M, "sigma' of layer l+1")
    bad = prove_general(["column-batch"], candidates={"column-batch": {"BP2": wrong}})
    tex = tmp_path / "bad.tex"
    tex.write_text(to_latex(bad))
    assert "counterexample at" in tex.read_text() and r"\textbf{refuted}" in tex.read_text()
    r = subprocess.run([shutil.which("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", tex.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, [ln for ln in r.stdout.splitlines() if ln.startswith("!")]


def test_latex_is_deterministic(proof):
    assert to_latex(proof) == to_latex(prove_general())
    assert text(proof.steps[0].lhs) == "a^(L)[m]"


def test_a_guard_is_dropped_only_when_sympy_decides_it_over_the_index_ranges():
    M = Model("column")
    j, k, n_l, n_up, n_down = M.j, M.k, M.width(M.l), M.width(M.l + 1), M.width(M.l - 1)
    in_layer_l = {j: (0, n_l - 1), k: (0, n_down - 1)}
    assert rules.decide(j <= n_l - 1, in_layer_l)[0] is True
    assert rules.decide(j >= n_l, in_layer_l)[0] is False
    assert rules.decide(j <= n_up - 1, in_layer_l)[0] is None  # another layer's width: not decided
    assert rules.decide(sp.And(j <= n_l - 1, k <= n_down - 1), in_layer_l)[0] is True
    same_width = {j: (0, n_l - 1), k: (0, n_l - 1)}
    assert rules.decide(sp.And(j <= n_l - 1, k <= n_l - 1), same_width)[0] is None  # conservative
    pw = sp.Piecewise((M.w[M.l, j, k], j <= n_up - 1), (0, True))
    assert rules.discharge(pw, in_layer_l) is None
