"""The 2-2-2 network end to end: chain rule = sympy.diff = matrix form, exactly."""

import sympy as sp
import pytest
from sympy import HadamardProduct, MatrixSymbol

from derive.chain import ChainRule
from derive.matrix import Form, MatrixForms
from derive.network import Network
from derive.proofs.concrete import check_form, oracle_partial
from derive.proofs.identity import is_identity


def test_all_twelve_partials_proven(proof222):
    parts = proof222.partials
    assert len(parts) == 12
    assert all(c.proven and c.oracle is not None for c in parts)
    assert proof222.ok
    assert proof222.summary().startswith(
        "12/12 partials of C proven equal to the matrix form (chain rule = sympy.diff = δA)")


def test_chain_rule_is_a_real_sum_over_paths(network222):
    chain = ChainRule(network222)
    hidden = next(p for p in network222.params if p.name == "w1[0,0]")
    d = chain.derive(hidden)
    assert d.n_paths == 2 and len(d.paths) == 2
    a0, a1, a2, y = network222.a[0][0], network222.a[0][1], network222.a[0][2], network222.y[0]
    w2 = network222.w[2]
    # path through output neuron m: dz1/dw = a0[0], da1/dz1 = a1(1-a1), dz2/da1 = w2[m,0], da2/dz2, dC/da2
    for m, path in enumerate(d.paths):
        values = [f.value for f in path.factors]
        assert values == [a0[0], a1[0] * (1 - a1[0]), w2[m, 0], a2[m] * (1 - a2[m]), a2[m] - y[m]]
    assert [f.head for f in d.paths[0].factors] == ["z1_0", "a1_0", "z2_0", "a2_0", "C"]


def test_paths_equal_reverse_accumulation(network222):
    chain = ChainRule(network222)
    for p in network222.params:
        assert is_identity(chain.derive(p, list_paths=True).value, chain.accumulated(p))


def test_oracle_is_independent_sympy_diff(network222):
    """The oracle differentiates the composed cost: it contains no atom before the rule."""
    C, rule = network222.composed
    assert not (C.free_symbols & {s for row in network222.a[0][1:] for s in row})
    p = network222.params[0]
    assert is_identity(oracle_partial(network222, p), ChainRule(network222).derive(p).value)


def test_matrix_forms_have_the_notes_shapes(network222):
    forms = MatrixForms(network222)
    ev = forms.evaluated
    assert ev["dC/dW1"].shape == (3, 2) and ev["dC/dW2"].shape == (3, 2)
    assert ev["dC/dW2 (transposed)"].shape == (2, 3)
    assert ev["dC/dW2 (transposed)"] == ev["dC/dW2"].T
    # W is 3x2 with entry [k, j] = w_{jk}; the bias weight is the last row
    W1 = forms.values[forms.sym["W1"]]
    assert W1[2, 1] == sp.Symbol("w1_1_2") and W1[0, 1] == sp.Symbol("w1_1_0")


def test_diagonal_form_equals_hadamard_form(proof222):
    for key in ("BP1 (D)", "BP2[1] (D)", "BP2[1] (unrolled)"):
        checks = [c for c in proof222.checks if c.form == key]
        assert checks and all(c.proven for c in checks)
    forms = proof222.forms
    assert is_identity(sp.Matrix(forms.evaluated["BP1 (D)"]).T[0, 0], forms.evaluated["BP1"][0, 0])


def test_update_rule(proof222):
    checks = [c for c in proof222.checks if c.form.startswith("update")]
    assert len(checks) == 12 and all(c.proven for c in checks)


# ---------------------------------------------------------------------------
# a checker that cannot fail proves nothing: wrong forms must be refused
# ---------------------------------------------------------------------------

def _mutants(forms: MatrixForms):
    S = forms.sym
    d1, d2, w2, sp1, sp2, g, A0 = (S[k] for k in ("delta1", "delta2", "w2", "sp1", "sp2", "g", "A0"))
    swap = MatrixSymbol("P", 2, 2)
    A0_no_bias = MatrixSymbol("A0_no_bias", 1, 3)
    a0 = forms.net.a[0][0]
    extra = {swap: sp.Matrix([[0, 1], [1, 0]]), A0_no_bias: sp.Matrix([[a0[0], a0[1], 0]])}
    return extra, {
        "w instead of w^T": Form("BP2[1]", "", d1, HadamardProduct(d2 * w2.T, sp1), "delta", 1),
        "lost sigma'": Form("BP1", "", d2, g, "delta", 2),
        "two swapped indices": Form("dC/dW2", "", S["dC_dW2"], S["A1"].T * d2 * swap, "grad", 2, "W2"),
        "sign flip": Form("BP1", "", d2, -HadamardProduct(g, sp2), "delta", 2),
        "bias 1 dropped from A0": Form("dC/dW1", "", S["dC_dW1"], A0_no_bias.T * d1, "grad", 1, "W1"),
    }


@pytest.mark.parametrize("mutation", ["w instead of w^T", "lost sigma'", "two swapped indices", "sign flip",
                                      "bias 1 dropped from A0"])
def test_wrong_forms_are_refused_with_a_counterexample(network222, mutation):
    forms = MatrixForms(network222)
    extra, mutants = _mutants(forms)
    checks = check_form(network222, mutants[mutation], forms, extra)
    refused = [c for c in checks if not c.proven]
    assert refused, mutation
    for c in refused:
        ce = c.counterexample
        assert ce is not None, (mutation, c.name)
        assert abs(ce.lhs - ce.rhs) > 1e-9
        # a counterexample gives a value to every weight, input and target
        assert {"w1_0_0", "a0_0", "y_0"} <= set(ce.values)


def test_right_forms_pass_check_form(network222):
    forms = MatrixForms(network222)
    for form in forms.forms:
        assert all(c.proven for c in check_form(network222, form, forms)), form.key


def test_counterexample_values_reproduce_the_difference(network222):
    """Recompute both sides from the witness alone: the forward pass, then the formulas."""
    forms = MatrixForms(network222)
    extra, mutants = _mutants(forms)
    bad = next(c for c in check_form(network222, mutants["lost sigma'"], forms, extra) if not c.proven)
    ce = bad.counterexample
    free = {s: sp.Rational(ce.values[str(s)]) for s in
            [p.symbol for p in network222.params] + network222.a[0][0] + network222.y[0]}
    vals = network222.forward_values(free)
    assert float(sp.N(bad.chain.xreplace(vals))) == pytest.approx(ce.lhs, rel=1e-12)
    assert float(sp.N(bad.matrix.xreplace(vals))) == pytest.approx(ce.rhs, rel=1e-12)


def test_a_counterexample_is_never_drawn_on_a_kink():
    # sigma'^2 for sigma' differs from the truth only at ReLU's z = 0, where SymPy's Heaviside(0) = 1/2:
    # the draws are multiples of 1/8, so z = 0 comes up; no witness may be drawn there
    from derive.spec import validate

    spec = validate({"name": "r", "sizes": [1, 8, 1], "activation": ["relu", "sigmoid"], "cost": "quadratic",
                     "convention": "column", "bias": "separate", "batch": "single", "notation": "nielsen"})
    net = Network(spec)
    forms = MatrixForms(net)
    bp2 = next(f for f in forms.forms if f.key == "BP2[1]")
    wrong = Form("BP2[1]", "", bp2.lhs, HadamardProduct(bp2.expr, forms.sym["sp1"]), "delta", 1)
    checks = check_form(net, wrong, forms)
    assert not any(c.counterexample for c in checks)
    assert not all(c.proven for c in checks)  # sigma'^2 = sigma' is no polynomial identity: unproven, not refuted


# ---------------------------------------------------------------------------
# rational differences over one denominator (derive.proofs.identity.numerator)
# ---------------------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from derive.proofs.identity import numerator, rational_zero  # noqa: E402

_A = sp.symbols("a0:3")
_LEAVES = st.sampled_from([*_A, 1 - _A[0], 1 - _A[0] - _A[1], sp.Integer(2), sp.Rational(-1, 3)])


def _rational(leaves):
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda a, b: a + b, inner, inner),
        st.builds(lambda a, b: a * b, inner, inner),
        st.builds(lambda a, k: a ** k, inner, st.sampled_from([-2, -1, 2]))), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rational(_LEAVES))
def test_the_numerator_is_the_expression_times_a_polynomial(e):
    """numerator(e) = e · D for D a product of powers of e's denominators: N / e cancels to a polynomial that is
    not 0, so e is 0 exactly when N is."""
    n = numerator(e)
    if e == 0 or e.has(sp.zoo, sp.nan):
        return
    quotient = sp.cancel(sp.together(n / e))
    assert quotient != 0 and sp.fraction(quotient)[1].is_number, (e, n)


@pytest.mark.parametrize("backend", ["symengine", "sympy"])
def test_rational_zero_decides_what_together_decides(backend):
    """Cross-entropy's dC/da = (a − y)/(a(1 − a)) times σ'(z) = a(1 − a) is a − y: proven with the denominators
    cancelled in the product; one slip in a numerator or a denominator is not 0."""
    a, y, w = sp.symbols("a y w")
    right = w * (-y / a + (1 - y) / (1 - a)) * a * (1 - a) - w * (a - y)
    assert rational_zero(right, backend) and numerator(right).has(a)
    for wrong in (right + w / (1 - a), w * (-y / a + (1 - y) / (1 - a)) * a * (1 - a) - w * (a + y),
                  w * (-y / a + (1 - y) / (1 - a) ** 2) * a * (1 - a) - w * (a - y)):
        assert not rational_zero(wrong, backend), wrong
    sq = sp.sqrt(a) / (1 + sp.sqrt(a)) - 1 / (1 / sp.sqrt(a) + 1)  # a power that is not an integer's: together decides
    assert numerator(sq) is None and rational_zero(sq, backend)
