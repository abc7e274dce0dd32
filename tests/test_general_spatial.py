"""The general proof of the spatial layers (issue 16): conv2d and conv1d with the channels, input size, kernel,
stride and padding as symbols, and scaled dot-product attention with T, d_k and d_v as symbols.

Each theorem must be proven from the scalar definitions with every step checked by its rule; the wrong forms
people write (an unrotated kernel, a forgotten stride, a missing 1/√d_k, a softmax Jacobian without its P) must
be refuted by a concrete layer whose gradients sympy.diff of the layer written out computes; a tampered step must
lose its verdict; SymPy's strided delta summation, which is wrong, must never be used.
"""

import json
import subprocess
import sys

import pytest
import sympy as sp
from sympy import KroneckerDelta, Sum

from derive.errors import DeriveError
from derive.proofs.general import RULES, prove_general, prove_layer, spec_targets, text
from derive.proofs.general.attention import ATTENTION_THEOREMS, AttentionModel
from derive.proofs.general.conv import CONV_THEOREMS, ConvModel
from derive.proofs.general.functions import CostPartial
from derive.proofs.general.model import INDEX, WIDTH
from derive.proofs.general.spatial import check_spatial_theorem, unit_var, witness
from derive.spec import load_spec


@pytest.fixture(scope="module")
def proof():
    return prove_general((), layers=("conv2d", "conv1d", "attention", "attention-causal"))


def theorem(proof, layer, key):
    return next(t for t in next(s for s in proof.layers if s.key == layer).theorems if t.key == key)


# -- the theorems are proven, from the scalars, each step by its rule ---------------------------------

def test_every_spatial_theorem_is_proven_with_every_step_checked(proof):
    assert proof.ok and proof.exit_code == 0
    keys = [(t.setting, t.key) for t in proof.layer_theorems]
    assert keys == ([("conv2d", k) for k in CONV_THEOREMS] + [("conv1d", k) for k in CONV_THEOREMS]
                    + [("attention", k) for k in ATTENTION_THEOREMS]
                    + [("attention-causal", k) for k in ATTENTION_THEOREMS])
    steps = [st for t in proof.layer_theorems for st in t.steps]
    assert all(st.rule in RULES and st.verdict in ("GIVEN", "PROVEN") for st in steps)
    assert {st.rule for st in steps} >= {"definition", "graph", "diff", "kronecker", "guard", "lemma", "name",
                                          "linear", "formula"}
    assert [r.rule for r in proof.rule_checks][-1] == "shifted Kronecker sum"
    assert all(r.verdict == "PROVEN" for r in proof.rule_checks)
    assert proof.layers_summary().startswith("layers beyond dense: 18/18 theorems proven")


def test_the_sizes_are_symbols_not_numbers(proof):
    M = next(s for s in proof.layers if s.key == "conv2d").model
    thm = theorem(proof, "conv2d", "x_pad")
    atoms = thm.main.final.free_symbols | {a for st in thm.steps for a in st.rhs.free_symbols}
    assert {M.C, M.O, *M.k, *M.s, *M.Ho} <= atoms  # each axis's stride and kernel size stay symbols to the end
    assert all(v.is_integer and v.is_positive for v in (M.B, M.C, M.O, *M.H, *M.k, *M.s, *M.Ho))
    assert all(p.is_integer and p.is_nonnegative for p in M.p)  # a padding may be 0
    assert len(set(M.k)) == len(set(M.s)) == len(set(M.p)) == 2  # one per axis: a kernel need not be square


def test_the_weight_gradient_is_the_correlation_of_the_input_with_delta(proof):
    M = next(s for s in proof.layers if s.key == "conv2d").model
    thm = theorem(proof, "conv2d", "W")
    o1, c1, (m1, n1), (i, j) = M.o1, M.c1, M.ker1, M.pos
    (s1, s2), (h1, h2) = M.s, M.Ho
    want = Sum(sp.Function("g")(M.b, o1, i, j) * M.xp[M.b, c1, s1 * i + m1, s2 * j + n1], (M.b, 0, M.B - 1),
               (i, 0, h1 - 1), (j, 0, h2 - 1))
    got = thm.main.final.replace(lambda e: isinstance(e, CostPartial),
                                 lambda e: sp.Function("g")(*e.args[0].indices))
    assert got == want and thm.ok


def test_no_kronecker_sum_is_taken_over_a_strided_index(proof):
    for thm in proof.layer_theorems:
        for st in thm.steps:
            if st.rule == "kronecker":
                v = unit_var(st.data["sum"])
                deltas = [f for f in sp.Mul.make_args(st.data["sum"].function) if isinstance(f, KroneckerDelta)]
                assert any(sp.expand(d.args[0] - d.args[1]).coeff(v) in (1, -1) for d in deltas)


def test_sympys_strided_delta_sum_is_wrong_and_is_refused():
    """The limitation the proofs work around: Σ_i f(i) δ(2i, j) is 0 at odd j, SymPy says f(j/2)."""
    f, i, j = sp.Function("f"), *sp.symbols("i j", **INDEX)
    n = sp.Symbol("n", **WIDTH)
    s = Sum(f(i) * KroneckerDelta(2 * i, j), (i, 0, n - 1))
    assert s.doit().subs({j: 1, n: 3}) == f(sp.Rational(1, 2))  # written out, the sum is 0
    assert sum(f(k) * KroneckerDelta(2 * k, 1) for k in range(3)) == 0
    assert unit_var(s) is None


# -- the wrong forms are refuted by a concrete layer ------------------------------------------------

def _refuted(kind, key, formula):
    st = prove_layer(kind, {key: formula})
    thm = st.theorem(key)
    ce = thm.main.steps[-1].counterexample
    assert thm.verdict == "REFUTED" and ce is not None, text(formula)
    assert ce.lhs != ce.rhs and dict(ce.sizes)  # a concrete size, the two sides' values there
    return ce


@pytest.mark.parametrize("kind", ["conv1d", "conv2d"])
def test_an_unrotated_kernel_is_refuted(kind):
    M = ConvModel(kind)
    _refuted(kind, "x_pad", M.formula("x_pad", rotated=False))
    _refuted(kind, "x", M.formula("x", rotated=False))


def test_a_forgotten_stride_and_a_padding_of_k_minus_1_are_refuted():
    M = ConvModel("conv1d")
    ce = _refuted("conv1d", "W", M.formula("W").xreplace({M.s[0]: 1}))
    assert dict(ce.sizes)[M.s[0]] == 2
    ce = _refuted("conv1d", "x", M.formula("x").xreplace({M.E: M.D}))  # δ padded by k − 1, not k − 1 − p
    assert dict(ce.sizes)[M.p[0]] >= 1


def test_the_axes_swapped_are_refuted():
    """Per-axis symbols: a formula that reads the first axis's stride (or kernel size) on the second is wrong."""
    M = ConvModel("conv2d")
    (s1, s2), (k1, k2) = M.s, M.k
    ce = _refuted("conv2d", "W", M.formula("W").xreplace({s2: s1}))
    assert dict(ce.sizes)[s1] != dict(ce.sizes)[s2]
    _refuted("conv2d", "x_pad", M.formula("x_pad").xreplace({k2: k1}))


def test_attention_without_the_scale_or_with_a_wrong_softmax_jacobian_is_refuted():
    M = AttentionModel()
    for key in ("Q", "K"):
        ce = _refuted("attention", key, M.formula(key, scaled=False))
        assert dict(ce.sizes)[M.dk] == 4  # d_k = 1 cannot tell 1/√d_k from 1
    t1, u1, v = M.t1, M.u1, M.v
    no_p = M.P[t1, u1] * (CostPartial(M.P[t1, u1]) - Sum(CostPartial(M.P[t1, v]), (v, 0, M.T - 1)))
    _refuted("attention", "S", no_p)
    _refuted("attention", "V", Sum(M.P[u1, M.t] * CostPartial(M.O[M.t, M.e1]), (M.t, 0, M.T - 1)))  # P, not Pᵀ


def test_causal_attention_sums_each_row_to_its_own_position_and_gives_the_same_forms(proof):
    M = AttentionModel(causal=True)
    P = next(d for d in M.definitions if d.head.base == M.P)
    (row,) = [x for x in P.rhs.atoms(Sum)]
    assert row.limits == ((M.v, 0, M.t),)  # the row sum stops at t: no -∞ is written
    thm = theorem(proof, "attention-causal", "S")
    assert thm.ok and thm.formula == AttentionModel().formula("S")
    assert any(st.rule == "guard" and "kept as a bracket" in st.evidence_text() for st in thm.steps)
    t1, u1, v = M.t1, M.u1, M.v
    no_p = M.P[t1, u1] * (CostPartial(M.P[t1, u1]) - Sum(CostPartial(M.P[t1, v]), (v, 0, M.T - 1)))
    _refuted("attention-causal", "S", no_p)
    _refuted("attention-causal", "Q", M.formula("Q", scaled=False))


def test_the_true_forms_have_no_witness_and_an_equal_rewriting_is_proven(proof):
    """The witness is a filter: it must find nothing between a derived value and its true formula."""
    for layer in ("conv1d", "attention", "attention-causal"):
        st = next(s for s in proof.layers if s.key == layer)
        for thm in st.theorems:
            derived = thm.main.steps[-2].rhs if thm.main.steps[-1].rule == "formula" else thm.main.final
            assert witness(st.model, thm, derived, thm.formula) is None, (layer, thm.key)
    M = AttentionModel()
    t1, u1, v = M.t1, M.u1, M.v
    expanded = (M.P[t1, u1] * CostPartial(M.P[t1, u1])
                - Sum(M.P[t1, u1] * M.P[t1, v] * CostPartial(M.P[t1, v]), (v, 0, M.T - 1)))
    assert prove_layer("attention", {"S": expanded}).theorem("S").ok


# -- a tampered step loses its verdict ------------------------------------------------------------------

def test_a_tampered_step_is_not_proven(proof):
    st = next(s for s in proof.layers if s.key == "conv1d")
    thm = theorem(proof, "conv1d", "x_pad")
    for rule in ("diff", "kronecker", "guard"):
        step = next(s for s in thm.steps if s.rule == rule)
        saved = step.rhs
        step.rhs = saved * 2
        try:
            check_spatial_theorem(thm, st.model)
            assert step.verdict == "UNPROVEN" and not thm.ok
        finally:
            step.rhs = saved
            check_spatial_theorem(thm, st.model)
    assert thm.ok


@pytest.mark.parametrize("name, settings, layers, noted", [
    ("cnn", ("column-batch",), ("conv2d",), ["maxpool2d", "flatten"]),
    ("attention", ("row-batch",), ("attention-causal",), ["flatten"]),
    ("bn_mlp", ("row-batch",), ("batchnorm", "residual", "layernorm"), []),
    ("residual_mlp", None, ("residual",), []),
    ("rnn", None, (), ["rnn"]),
])
def test_a_specs_layers_map_to_their_general_theorems(name, settings, layers, noted):
    got_settings, got_layers, notes = spec_targets(load_spec(f"examples/specs/{name}.toml"))
    assert got_layers == layers and (settings is None or got_settings == settings)
    assert [n.split("(")[1].split(":")[0] for n in notes] == noted


def test_bad_api_input_is_one_line_error():
    with pytest.raises(DeriveError, match="unknown theorem 'Z' of conv2d; its theorems are W, b, x_pad, x"):
        prove_layer("conv2d", {"Z": sp.S.One})
    with pytest.raises(DeriveError, match="not a layer list"):
        spec_targets(load_spec("nielsen"))


# -- the command ---------------------------------------------------------------------------------------------

def _general(*args):
    return subprocess.run([sys.executable, "-m", "derive", "general", *args], capture_output=True, text=True)


def test_cli_proves_a_specs_conv_layers_and_names_what_it_does_not_cover():
    r = _general("examples/specs/cnn.toml", "--brief")
    assert r.returncode == 0, r.stderr
    assert "✓ x_pad ∂C/∂x_pad[b',c',u',v'] =" in r.stdout
    assert "note: layer 2 (maxpool2d: pooling) not covered here" in r.stdout
    assert "layers beyond dense: 4/4 theorems proven (conv2d)" in r.stdout
    r = _general("examples/specs/attention.toml", "--brief")  # causal = true
    assert r.returncode == 0 and "5/5 theorems proven (attention-causal)" in r.stdout, r.stderr


def test_cli_json_for_attention_and_errors():
    r = _general("--layer", "attention", "--json")
    data = json.loads(r.stdout)
    assert r.returncode == 0 and [t["verdict"] for t in data["layers"][0]["theorems"]] == ["PROVEN"] * 5
    r = _general("nielsen")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "not a layer list" in r.stderr
    r = _general("--layer", "maxpool2d")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "invalid choice" in r.stderr
