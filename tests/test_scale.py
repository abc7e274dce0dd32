"""The scalable proof mode: SymEngine agrees with SymPy, mutations are caught at 16-16-10, jobs agree."""

import json
import subprocess
import sys

import pytest
import sympy as sp
from sympy import HadamardProduct, MatrixSymbol

from derive.chain import ChainRule
from derive.matrix import Form, MatrixForms
from derive.network import Network
from derive.proofs.concrete import prove
from derive.proofs.identity import is_identity
from derive.proofs.scalable import accumulation, prove_scalable
from derive.spec import load_spec, validate


SOFTMAX = {"name": "softmax_out", "activation": ["tanh", "softmax"], "cost": "log_likelihood",
           "convention": "column", "bias": "separate", "batch": "mean", "notation": "nielsen"}


@pytest.mark.parametrize("spec", ["net222", "nobias3", "rowmajor", "softmax"])
def test_symengine_accumulation_agrees_with_sympy_chain_rule(spec):
    """The reverse accumulation in SymEngine against the path-by-path chain rule in SymPy (softmax: a full Jacobian)."""
    spec = validate({**SOFTMAX, "sizes": [2, 3, 2]}) if spec == "softmax" else load_spec(spec)
    net = Network(spec.with_sizes((2, 3, 2)))
    graph, chain = accumulation(net), ChainRule(net)
    for p in net.params:
        assert is_identity(sp.sympify(graph.accumulated(p)), chain.derive(p, list_paths=True).value, backend="sympy")


def test_symengine_and_sympy_give_the_same_verdicts(proof222):
    forms = proof222.forms
    pairs = [(c.chain, c.matrix) for c in proof222.checks[:20]]
    pairs += [(c.chain, c.matrix + sp.Symbol("w1_0_0") * 1e-30) for c in proof222.checks[:3]]
    pairs += [(c.chain, -c.matrix) for c in proof222.checks[:3]]
    for lhs, rhs in pairs:
        assert is_identity(lhs, rhs, backend="sympy") == is_identity(lhs, rhs, backend="symengine")
    assert forms is not None


def test_scalable_and_full_modes_agree():
    spec = load_spec("rowmajor").with_sizes((2, 3, 2))
    full, scal = prove(spec), prove_scalable(spec, sample=10)
    assert full.ok and scal.ok
    assert scal.partials_proven == len(full.partials) == spec.n_params
    assert len(scal.oracle_sample) == 10 and scal.oracle_proven == 10


def test_scalable_mode_proves_a_softmax_output_through_its_full_jacobian():
    spec = validate({**SOFTMAX, "sizes": [3, 4, 3]})
    scal = prove_scalable(spec, sample=5)
    full = prove(spec)
    assert full.ok and scal.ok and scal.partials_proven == spec.n_params == len(full.partials)


@pytest.fixture(scope="module")
def net161610():
    return Network(load_spec("net222").with_sizes((16, 16, 10)))


def _mutants(net):
    forms = MatrixForms(net, evaluate=False)
    S = forms.sym
    swap = MatrixSymbol("P", 10, 10)
    perm = sp.eye(10)
    perm[0, 0] = perm[1, 1] = 0
    perm[0, 1] = perm[1, 0] = 1
    no_bias = MatrixSymbol("A0_no_bias", 1, 17)
    row = list(net.a[0][0]) + [0]
    extra = {swap: perm, no_bias: sp.Matrix([row])}
    return extra, {
        "lost sigma'": Form("BP1", "", S["delta2"], S["g"], "delta", 2),
        "two swapped indices": Form("dC/dW2", "", S["dC_dW2"], S["A1"].T * S["delta2"] * swap, "grad", 2, "W2"),
        "sign flip": Form("BP1", "", S["delta2"], -HadamardProduct(S["g"], S["sp2"]), "delta", 2),
        "bias 1 dropped from A0": Form("dC/dW1", "", S["dC_dW1"], no_bias.T * S["delta1"], "grad", 1, "W1"),
    }


@pytest.mark.parametrize("mutation", ["lost sigma'", "two swapped indices", "sign flip", "bias 1 dropped from A0"])
def test_mutations_caught_at_16_16_10(net161610, mutation):
    extra, mutants = _mutants(net161610)
    result = prove_scalable(net161610, forms=[mutants[mutation]], extra=extra)
    assert not result.ok
    first = result.failures[0]
    assert first.counterexample is not None
    assert abs(first.counterexample["chain_rule"] - first.counterexample["matrix"]) > 1e-9


def test_w_instead_of_wT_caught_at_16_16_10(net161610):
    """At 16-16-10 the untransposed w2 does not even fit: the shape is refused."""
    S = MatrixForms(net161610, evaluate=False).sym
    with pytest.raises(sp.ShapeError, match="not aligned"):
        wrong = Form("BP2[1]", "", S["delta1"], HadamardProduct(S["delta2"] * S["w2"].T, S["sp1"]), "delta", 1)
        prove_scalable(net161610, forms=[wrong])


def test_w_instead_of_wT_caught_in_a_square_scalable_network():
    net = Network(load_spec("net222").with_sizes((16, 16, 16)))
    S = MatrixForms(net, evaluate=False).sym
    wrong = Form("BP2[1]", "", S["delta1"], HadamardProduct(S["delta2"] * S["w2"].T, S["sp1"]), "delta", 1)
    result = prove_scalable(net, forms=[wrong])
    assert not result.ok and result.failures[0].counterexample is not None


_JOBS = """
import json
from derive.proofs.scalable import prove_scalable
from derive.spec import load_spec
spec = load_spec("nielsen").with_sizes((20, 6, 4))
one, two = prove_scalable(spec, sample=8, jobs=1), prove_scalable(spec, sample=8, jobs=2)
print(json.dumps([one.ok and two.ok,
                  (one.per_layer, one.per_form, one.oracle_sample) == (two.per_layer, two.per_form, two.oracle_sample)]))
"""


def test_jobs_give_the_same_report():
    # a process of its own: the pool forks, and this suite's process may have started threads (JAX's) by now
    r = subprocess.run([sys.executable, "-c", _JOBS], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [True, True]


def test_oracle_sample_spreads_over_every_layer_and_bias():
    result = prove_scalable(load_spec("nielsen").with_sizes((12, 5, 3)), sample=20)
    layers = {name.split("[")[0] for name in result.oracle_sample}
    assert layers == {"w1", "b1", "w2", "b2"} and len(result.oracle_sample) >= 20


def test_cli_scalable_json():
    r = subprocess.run([sys.executable, "-m", "derive", "prove", "nielsen", "--sizes", "30-8-10", "--json",
                        "--sample", "12", "--jobs", "2", "--mode", "scalable"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["mode"] == "scalable" and data["proven"]
    assert data["per_layer"]["W1"] == {"proven": 240, "total": 240}
    assert len(data["oracle"]["sample"]) == 12


def test_cli_scalable_text_report():
    r = subprocess.run([sys.executable, "-m", "derive", "prove", "nobias3", "--mode", "scalable"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "partials by layer and kind" in r.stdout and "methods:" in r.stdout
    assert r.stdout.strip().splitlines()[-1].startswith("36/36 partials of C proven")
