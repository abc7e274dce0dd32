"""Specs at the edges of what the validator allows: identity neurons, outputs of width 1, deep networks."""

import itertools
import subprocess
import sys
import threading

import numpy as np
import pytest
import sympy as sp

from codegen.plan import small_spec
from codegen.render import BACKENDS, generate
from derive.tables.activations import ACTIVATIONS
from derive.chain import ChainRule
from derive.claims import check_file
from derive.tables.costs import COSTS
from derive.errors import DeriveError
from derive.matrix import Form, MatrixForms
from derive.network import Network
from derive.tables.notations import text
from derive.proofs.concrete import check_form, oracle_partial, prove
from derive.proofs.identity import is_identity, relations
from derive.proofs.scalable import prove_scalable
from derive.spec import MAX_DEPTH, validate
from tests.conftest import needs_pdflatex
from tests.oracles import assert_gradients, autograd_gradients, data, three_oracles
from tests.test_codegen import module_for


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


@pytest.mark.parametrize("convention", ["row", "column"])
def test_width_one_softmax_forms_keep_their_shape(convention):
    """BP1 of a softmax output reads a ∘ g - ((a ∘ g) 1 1ᵀ) ∘ a at every width; SymPy's a∘2 is never in the form."""
    forms = MatrixForms(Network(_spec([2, 1], "softmax", "log_likelihood", convention)), evaluate=False)
    bp1 = forms.form("BP1").expr
    assert not bp1.has(sp.HadamardPower) and bp1.has(sp.OneMatrix)
    assert text(bp1) == ("-1*(((a1 * grad_a(C)) @ ones) * a1) + a1 * grad_a(C)" if convention == "row"
                         else "-1*((ones @ (a1 * grad_a(C))) * a1) + a1 * grad_a(C)")


@needs_pdflatex
def test_width_one_softmax_document_compiles(tmp_path):
    spec_file = tmp_path / "one.toml"
    spec_file.write_text('name = "one"\nsizes = [2, 1]\nactivation = "softmax"\ncost = "log_likelihood"\n'
                         'convention = "row"\nbias = "augmented"\nbatch = "single"\nnotation = "net222"\n')
    r = subprocess.run([sys.executable, "-m", "derive", "latex", str(spec_file), "-o", str(tmp_path / "one.tex"), "--pdf"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "one.pdf").exists()


@pytest.mark.parametrize("cost, output", WIDTH_ONE)
@pytest.mark.parametrize("convention, bias, batch", [("row", "augmented", "mean"), ("column", "none", "single")])
def test_width_one_outputs_generate_correct_modules(cost, output, convention, bias, batch, tmp_path):
    spec = _spec([2, 2, 1], ["tanh", output], cost, convention, bias, batch)
    files = generate(spec, BACKENDS)
    assert sorted(files) == ["edge_cupy.py", "edge_jax.py", "edge_kernels.cu", "edge_numpy.py", "edge_torch.py"]
    module = module_for(spec, tmp_path)
    rng = np.random.default_rng(5)
    params, x, y = data(spec, 1 if batch == "single" else 3, rng)
    three_oracles(module, spec, params, x, y)


# ---------------------------------------------------------------------------
# deep networks (issue 12, item 9): SymPy recurses once per level of the composed cost
# ---------------------------------------------------------------------------

def test_forty_layers_proven_with_the_oracle_on_every_partial():
    proof = prove(_spec([1] * 41, "sigmoid"))
    assert proof.ok and all(c.oracle is not None for c in proof.partials)


def test_the_deepest_network_the_validator_allows():
    spec = _spec([1] * (MAX_DEPTH + 1), ["tanh"] * (MAX_DEPTH - 1) + ["sigmoid"], "cross_entropy")
    net = Network(spec)
    first = net.params[0]  # w1[0,0]: its path to C passes through every layer
    chain = ChainRule(net).derive(first).value
    assert is_identity(oracle_partial(net, first), chain, relations(net))
    proof = prove(net, oracle="none")  # the chain rule = every matrix entry; sympy.diff of the deep cost is the test above
    assert proof.ok
    assert sorted(generate(spec, BACKENDS, proof)) == ["edge_cupy.py", "edge_jax.py", "edge_kernels.cu", "edge_numpy.py", "edge_torch.py"]


def test_the_deepest_network_is_generated_and_correct(tmp_path):
    spec = _spec([1] * (MAX_DEPTH + 1), "tanh", batch="mean")
    # the forms proven equal to the chain rule, exactly, without sympy.diff of every partial of this cost (80 s):
    # the test above takes it for a 64-layer partial, and autograd checks the module below
    module = module_for(spec, tmp_path, prove(small_spec(spec), oracle="none"))
    rng = np.random.default_rng(11)
    params, x, y = data(spec, 2, rng)
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    assert_gradients(grads, autograd_gradients(spec, params, x, y), 1e-9, 1e-13, "autograd")


def test_a_network_whose_forms_cannot_be_proven_in_time_is_not_generated(tmp_path):
    """64 layers of width 2: its forms have 2^63 paths to list; nothing unproven is printed, and the
    refusal is one line that says why, before any work."""
    spec = _spec([2] * (MAX_DEPTH + 1), "tanh", batch="mean")
    with pytest.raises(DeriveError, match=r"proving its forms at sizes 2-2-2-\.\.\.-2 \(65 widths\): estimated .*give it fewer layers") as refused:
        generate(spec, BACKENDS)
    assert "\n" not in str(refused.value)


def test_scalable_mode_at_forty_layers():
    assert prove_scalable(_spec([1] * 41, "softplus", bias="augmented"), sample=1).ok


def test_a_difference_of_long_products_is_decided_without_expanding_them():
    """Expanding prod(1 - a_i^2) over 40 layers makes 2^40 terms; the shared factor is taken out instead."""
    a = sp.symbols("a0:40")
    b, y = sp.symbols("b y")
    P = sp.Mul(*[1 - s**2 for s in a])
    assert is_identity(P * (b + 1) ** 2, P * (b**2 + 2 * b + 1))
    assert not is_identity(P * (b + 1) ** 2, P * (b**2 + 1))
    assert is_identity(P * b * (1 - b) * ((1 - y) / (1 - b) - y / b), P * (b - y))  # sigmoid with cross-entropy
    assert not is_identity(P * b * (1 - b) * ((1 - y) / (1 - b) - y / b), P * (y - b))
    for backend in ("sympy", "symengine"):
        assert is_identity(P * (b + 1) ** 2 - P * b**2, P * (2 * b + 1), backend=backend)


def test_a_batch_of_long_products_is_decided_example_by_example():
    """Two examples, each its own product of 40 sigma' factors, inside an update's -gamma*(...)."""
    a, c = sp.symbols("a0:40"), sp.symbols("c0:40")
    b, y, gamma = sp.symbols("b y gamma")
    P, Q = sp.Mul(*[1 - s**2 for s in a]), sp.Mul(*[s * (1 - s) for s in c])
    cross_entropy = b * (1 - b) * ((1 - y) / (1 - b) - y / b)
    lhs = -gamma * (P * cross_entropy + Q * (b + 1) ** 2)
    assert is_identity(lhs, -gamma * (P * (b - y) + Q * (b**2 + 2 * b + 1)))
    assert not is_identity(lhs, -gamma * (P * (b - y) + Q * (b**2 + 1)))  # refused without 2^80 terms


def test_a_slip_in_a_deep_batch_network_is_refuted_with_a_counterexample():
    net = Network(_spec([1] * 41, ["tanh"] * 39 + ["sigmoid"], "cross_entropy", batch="mean"))
    forms = MatrixForms(net)
    S = forms.sym
    right = Form("BP2[1]", "", S["delta1"], sp.HadamardProduct(S["w2"].T * S["delta2"], S["sp1"]), "delta", 1)
    assert all(c.proven for c in check_form(net, right, forms))
    slip = Form("BP2[1]", "", S["delta1"], sp.HadamardProduct(S["w2"].T * S["delta2"], S["a1"]), "delta", 1)
    checks = check_form(net, slip, forms)  # a instead of sigma'
    assert checks and all(not c.proven and c.counterexample is not None for c in checks)


def test_deep_stack_runs_in_place_when_nested_and_restores_the_limit():
    from derive.proofs.identity import deep_stack

    limit = sys.getrecursionlimit()
    inner = deep_stack(lambda: sys.getrecursionlimit())
    outer = deep_stack(lambda: (inner(), threading.current_thread().name))
    seen, name = outer()
    assert seen > limit and name.startswith("deep")
    assert sys.getrecursionlimit() == limit
    with pytest.raises(ZeroDivisionError):  # an error in the thread reaches the caller
        deep_stack(lambda: 1 / 0)()
    assert sys.getrecursionlimit() == limit
