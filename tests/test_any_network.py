"""Any fully connected network, in every convention: properties and mutations."""

import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sympy import HadamardProduct

from derive.tables.activations import ACTIVATIONS
from derive.matrix import Form, MatrixForms
from derive.network import Network
from derive.proofs.concrete import check_form, prove
from derive.proofs.identity import is_identity
from derive.spec import load_spec, validate
from tests.conftest import needs_pdflatex

ELEMENTWISE = sorted(n for n, a in ACTIVATIONS.items() if a.elementwise)


@st.composite
def specs(draw):
    depth = draw(st.integers(1, 4))
    sizes = [draw(st.integers(1, 4)) for _ in range(depth + 1)]
    acts = [draw(st.sampled_from(ELEMENTWISE)) for _ in range(depth)]
    cost = draw(st.sampled_from(["quadratic", "cross_entropy", "log_likelihood"]))
    if cost == "cross_entropy":
        acts[-1] = "sigmoid"
    elif cost == "log_likelihood":
        acts[-1] = "softmax"
    batch = draw(st.sampled_from(["single", "mean", "sum"]))
    # keep the oracle cheap: two examples only on small networks (a 4-4-4-4-4 softmax network's proof over two
    # examples takes about a minute, over one about 25 s)
    examples = 1 if batch == "single" or sum(sizes) > 8 else draw(st.integers(1, 2))
    return validate(dict(name="random", sizes=sizes, activation=acts, cost=cost,
                         convention=draw(st.sampled_from(["row", "column"])),
                         bias=draw(st.sampled_from(["augmented", "separate", "none"])),
                         batch=batch, examples=examples, notation=draw(st.sampled_from(["net222", "nielsen"]))))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_every_partial_of_a_random_network_is_proven(spec):
    proof = prove(spec, oracle="all")
    assert proof.ok, [(c.name, c.form) for c in proof.checks if not c.proven][:3]
    assert len(proof.partials) == spec.n_params


@pytest.mark.parametrize("name", ["nobias3", "rowmajor"])
def test_builtin_specs_are_proven(name):
    assert prove(name).ok


@pytest.mark.parametrize("sizes", [(3, 4, 2), (2, 3, 3, 2)])
def test_nielsen_at_reduced_widths(sizes):
    proof = prove(load_spec("nielsen").with_sizes(sizes))
    assert proof.ok and proof.net.E == 2  # the mean over two examples


def test_activation_output_forms_found_symbolically():
    assert ACTIVATIONS["sigmoid"].output_form == sp.Symbol("a") * (1 - sp.Symbol("a"))
    assert sp.expand(ACTIVATIONS["tanh"].output_form - (1 - sp.Symbol("a") ** 2)) == 0
    assert ACTIVATIONS["identity"].output_form == 1
    for name in ("relu", "leaky_relu", "softplus"):
        assert ACTIVATIONS[name].output_form is None, name


@pytest.mark.parametrize("act,cost,expected", [
    ("sigmoid", "cross_entropy", True), ("softmax", "log_likelihood", True), ("sigmoid", "quadratic", False)])
def test_output_delta_is_a_minus_y(act, cost, expected):
    spec = validate(dict(name="t", sizes=[2, 3], activation=act, cost=cost, convention="column",
                         bias="separate", batch="single", notation="nielsen"))
    proof = prove(spec)
    assert proof.ok and proof.output_delta_is_a_minus_y is expected


def test_batch_gradient_is_sum_of_per_example_gradients():
    """dW over the batch equals the sum of single-example gradients, each proven on its own."""
    batch = load_spec("rowmajor").with_sizes((2, 2, 1))
    proof = prove(batch)
    assert proof.ok and proof.net.E == 3
    W1 = proof.forms.evaluated["dC/dW1"]
    net = proof.net
    singles = []
    for e in range(net.E):
        one = Network(validate(dict(batch.as_dict(), batch="single", examples=1)))
        rename = {one.a[0][l][j]: net.a[e][l][j] for l in range(net.L + 1) for j in range(net.sizes[l])}
        rename.update({one.ap[0][l][j]: net.ap[e][l][j] for l in range(net.L + 1) for j in range(net.sizes[l])})
        rename.update({one.y[0][j]: net.y[e][j] for j in range(net.sizes[-1])})
        singles.append(MatrixForms(one).evaluated["dC/dW1"].xreplace(rename))
    assert all(is_identity(W1[i], sum(s[i] for s in singles)) for i in range(len(W1)))


# ---------------------------------------------------------------------------
# mutations in the column convention too
# ---------------------------------------------------------------------------

def _column_net():
    return Network(validate(dict(name="c", sizes=[2, 2, 2], activation="sigmoid", cost="quadratic",
                                 convention="column", bias="separate", batch="single", notation="nielsen")))


def test_column_mutations_are_refused():
    net = _column_net()
    forms = MatrixForms(net)
    S = forms.sym
    mutants = [
        Form("BP2[1]", "", S["delta1"], HadamardProduct(S["w2"] * S["delta2"], S["sp1"]), "delta", 1),
        Form("BP1", "", S["delta2"], S["g"], "delta", 2),
        Form("dC/dW1", "", S["dC_dW1"], S["a0"] * S["delta1"].T, "grad", 1, "W1"),  # transposed
        Form("dC/db2", "", S["dC_db2"], -S["delta2"], "grad", 2, "b2"),
    ]
    for m in mutants:
        checks = check_form(net, m, forms)
        bad = [c for c in checks if not c.proven]
        assert bad and all(c.counterexample for c in bad), m.key


@needs_pdflatex
@pytest.mark.parametrize("name,sizes", [("net222", None), ("nielsen", "2-3-2"), ("nobias3", "2-2-2-2"),
                                        ("rowmajor", "2-3-2")])
def test_each_profile_compiles(tmp_path, name, sizes):
    import subprocess
    import sys
    args = ["latex", name, "-o", str(tmp_path / f"{name}.tex"), "--pdf"] + (["--sizes", sizes] if sizes else [])
    r = subprocess.run([sys.executable, "-m", "derive", *args], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / f"{name}.pdf").exists()


@pytest.mark.parametrize("settings", [
    dict(activation=["tanh", "softmax"], cost="log_likelihood", convention="row", bias="augmented", batch="sum", examples=2),
    dict(activation=["relu", "sigmoid"], cost="cross_entropy", convention="column", bias="separate", batch="mean", examples=2),
    dict(activation=["softplus", "identity"], cost="quadratic", convention="column", bias="none", batch="single"),
])
def test_oracle_patterns_equal_the_fully_composed_diff(settings):
    """The fast oracle (path-only composition, one diff per neuron) = sympy.diff of the whole composed C."""
    from derive.proofs.concrete import oracle_partial
    from derive.proofs.identity import relations
    net = Network(validate(dict(name="t", sizes=[2, 2, 3], notation="nielsen", **settings)))
    C, rule = net.composed
    for p in net.params:
        direct = sp.diff(C, p.symbol).xreplace(rule)
        assert is_identity(oracle_partial(net, p), direct, relations(net)), p.name
