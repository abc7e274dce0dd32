"""Specs at the edges of what the validator allows: identity neurons, outputs of width 1, deep networks."""

import itertools

import numpy as np
import pytest
import sympy as sp

from codegen.render import BACKENDS, generate
from derive.activations import ACTIVATIONS
from derive.claims import check_file
from derive.costs import COSTS
from derive.matrix import Form, MatrixForms
from derive.network import Network
from derive.proof import is_identity, prove, relations
from derive.scale import prove_scalable
from derive.spec import validate
from tests.test_codegen import data, module_for, three_oracles


def _spec(sizes, activation, cost="quadratic", convention="column", bias="separate", batch="single", **extra):
    return validate(dict(name="edge", sizes=list(sizes), activation=activation, cost=cost, convention=convention,
                         bias=bias, batch=batch, notation="net222", **extra))


# ---------------------------------------------------------------------------
# identity neurons: a = z exactly, so a is no atom of its own (issue 12, item 5)
# ---------------------------------------------------------------------------

IDENTITY_CLAIMS = '''
spec = "ident.toml"

[[claim]]
name = "BP1 through z"
lhs = "delta{L}"
rhs = "z{L} - y"

[[claim]]
name = "change of one weight through z"
lhs = "dC/dw{L}[0,0]"
rhs = "delta{L}[0] * z{below}[0]"

[[claim]]
name = "a slip: the sign of y"
lhs = "delta{L}"
rhs = "z{L} + y"
'''


@pytest.mark.parametrize("activation, below", [
    ("identity", 1),                               # every layer the identity
    (["tanh", "identity", "identity"], 2),         # two identity layers in a row: a2 = z2 = w a1 + b
])
def test_claims_through_z_of_identity_neurons_are_proven(tmp_path, activation, below):
    L = 2 if activation == "identity" else 3
    sizes = [2] * (L + 1)
    acts = f'"{activation}"' if isinstance(activation, str) else "[" + ", ".join(f'"{a}"' for a in activation) + "]"
    (tmp_path / "ident.toml").write_text(
        f'name = "ident"\nsizes = {sizes}\nactivation = {acts}\ncost = "quadratic"\nconvention = "column"\n'
        'bias = "separate"\nbatch = "single"\nnotation = "nielsen"\n')
    (tmp_path / "claims.toml").write_text(IDENTITY_CLAIMS.replace("{L}", str(L)).replace("{below}", str(below)))
    verdicts = [v.verdict for v in check_file(tmp_path / "claims.toml").verdicts]
    assert verdicts == ["PROVEN", "PROVEN", "REFUTED"]


def test_an_identity_neuron_equals_its_preactivation_in_every_proof():
    net = Network(_spec([2, 3, 2], ["identity", "softmax"], cost="log_likelihood", batch="mean"))
    rule = relations(net)
    for e, j in itertools.product(range(net.E), range(3)):
        assert is_identity(net.a[e][1][j], net.z[e][1][j], rule)
        assert not is_identity(net.a[e][1][j], net.z[e][1][j])  # the relation is what proves it
    assert not is_identity(net.a[0][2][0], net.z[0][2][0], rule)  # a softmax output is not its z
    assert prove(net).ok


def test_no_other_activation_is_reduced():
    polynomial = [name for name, act in ACTIVATIONS.items() if act.polynomial]
    assert polynomial == ["identity"]
    net = Network(_spec([2, 2, 2], "sigmoid"))
    assert net.reduction == {} and relations(net) == {}


@pytest.mark.parametrize("output, holds", [("identity", True), ("sigmoid", False)])
def test_scalable_mode_reduces_identity_neurons(output, holds):
    """BP1 written as z - a + g: delta^L only where a = z, so proven for an identity output, refuted for a sigmoid one."""
    net = Network(_spec([3, 2, 2], ["tanh", output]))
    S = MatrixForms(net, evaluate=False).sym
    form = Form("BP1", "output error through z", S["delta2"],
                sp.HadamardProduct(S["w2"] * S["a1"] + S["b2"] - S["a2"] + S["g"], S["sp2"]), "delta", 2)
    result = prove_scalable(net, forms=[form])
    assert result.ok is holds
    if not holds:
        assert result.failures[0].counterexample is not None


# ---------------------------------------------------------------------------
# outputs of width 1 (issue 12, item 8): SymPy writes a ∘ (a ∘ g) as a∘2 ∘ g there
# ---------------------------------------------------------------------------

WIDTH_ONE = [(cost, out) for cost in sorted(COSTS)
             for out in sorted(COSTS[cost].output_activations or ACTIVATIONS)]


@pytest.mark.parametrize("cost, output", WIDTH_ONE)
@pytest.mark.parametrize("convention, bias, batch", [("row", "augmented", "single"), ("column", "separate", "mean")])
def test_width_one_outputs_are_proven_in_both_modes(cost, output, convention, bias, batch):
    spec = _spec([2, 2, 1], ["tanh", output], cost, convention, bias, batch)
    assert prove(spec).ok
    assert prove_scalable(spec).ok


@pytest.mark.parametrize("cost, output", WIDTH_ONE)
@pytest.mark.parametrize("convention, bias, batch", [("row", "augmented", "mean"), ("column", "none", "single")])
def test_width_one_outputs_generate_correct_modules(cost, output, convention, bias, batch, tmp_path):
    spec = _spec([2, 2, 1], ["tanh", output], cost, convention, bias, batch)
    files = generate(spec, BACKENDS)
    assert sorted(files) == ["edge_cupy.py", "edge_kernels.cu", "edge_numpy.py"]
    module = module_for(spec, tmp_path)
    rng = np.random.default_rng(5)
    params, x, y = data(spec, 1 if batch == "single" else 3, rng)
    three_oracles(module, spec, params, x, y)
