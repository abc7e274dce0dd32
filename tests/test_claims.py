"""Checking claims: verdicts, witnesses, wrong entries, shape errors, repairs, errors, the command."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from derive.claims.repair import KINDS
from derive.claims import Claim, Context, check_claim, check_file, load_claims
from derive.errors import DeriveError
from derive.spec import load_spec, validate

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "claims"


def _spec(name, **changes):
    data = load_spec(name).as_dict()
    data.update(changes)
    return validate(data)


@pytest.fixture(scope="module")
def net222():
    return Context("net222")


@pytest.fixture(scope="module")
def nielsen():
    """Nielsen's network at widths 3-4-2 for one example: BP1-BP4 as he states them."""
    return Context(_spec("nielsen", sizes=[3, 4, 2], examples=1))


@pytest.fixture(scope="module")
def batch():
    return Context(_spec("nielsen", sizes=[3, 4, 2]))  # the mean over 2 examples


@pytest.fixture(scope="module")
def rowmajor():
    return Context("rowmajor")  # ReLU hidden layers, cross-entropy, a batch of 3


@pytest.fixture(scope="module")
def nobias():
    return Context(_spec("nobias3", examples=1))  # tanh, no biases


@pytest.fixture(scope="module")
def softmax():
    return Context(_spec("nielsen", sizes=[2, 3, 3], activation=["sigmoid", "softmax"], cost="log_likelihood",
                         batch="single", examples=1))


def check(ctx, lhs=None, rhs=None, latex=None, example=0):
    return check_claim(ctx, Claim("claim", lhs, rhs, latex, example))


# ---------------------------------------------------------------------------
# every item of the vocabulary, in claims that hold
# ---------------------------------------------------------------------------

TEXT_222 = [
    ("dC/dw2[0,0]", "(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[0]"),  # a, T, dC/dw
    ("dC/dw2[0,0]", "(a2[0] - y[0]) * sigmoid_prime(z2[0]) * a1[0]"),  # y, z, the activation's own name
    ("dC/dw1[1,0]", "delta1[1] * x[0]"),  # delta, x
    ("dC/dw1[1,0]", "delta1[1] * a0[0]"),  # a0
    ("dC/dw1[1,2]", "delta1[1]"),  # the augmented bias weight
    ("dC/db1[1]", "delta1[1]"),  # b names the bias weight of an augmented spec
    ("delta1[0]", "(w2[0,0]*delta2[0] + w2[1,0]*delta2[1]) * sigma(z1[0]) * (1 - sigma(z1[0]))"),  # sigma of z
    ("delta2[0]", "(sigma(w2[0,0]*a1[0] + w2[0,1]*a1[1] + b2[0]) - T[0]) * sigma_prime(z2[0])"),  # b, sigma of z written out
    ("delta2[0]", "(a2[0] - T[0]) * a2[0] * (1 - a2[0]) + C - (a2[0] - T[0])**2 / 2 - (a2[1] - T[1])**2 / 2"),  # C ** /
    ("dC/dW2", "A1.T @ delta2.T"),  # W in its own layout, A, @, .T
    ("(dC/dW2).T", "delta2 @ A1"),  # a transposed left-hand side
    ("dC/dw2", "delta2 @ a1.T"),  # the non-bias weights as a matrix
    ("dC/dw1", "delta1 @ x.T"),
    ("dC/db2", "delta2.T"),  # b in the spec's own (row) layout
    ("delta1", "D1 @ w2.T @ delta2"),  # D
    ("delta1", "diag(sigma_prime(z1)) @ w2.T @ delta2"),  # diag, sigma_prime of a vector
    ("delta2", "grad_a(C) * sigma_prime(z2)"),  # the gradient of C
    ("delta2", "(a2 - y) * a2 * (1 - a2)"),  # vectors, elementwise *
    ("delta2", "(sigma((A1 @ W2).T) - T) * sigma_prime(z2)"),  # W2 as a value, sigma of a vector expression
    ("delta1[0]", "(w2.T @ delta2)[0] * sigma_prime(z1[0])"),  # an entry of a product
    ("delta1[1]", "(D1 @ w2.T @ delta2)[1,0]"),
    ("dC/dw2[1,0]", "(a2.T @ a2 - a2.T @ a2 + 1) * delta2[1] * a1[0]"),  # a 1x1 product is a number
]


@pytest.mark.parametrize("lhs,rhs", TEXT_222)
def test_text_vocabulary_is_proven(net222, lhs, rhs):
    v = check(net222, lhs, rhs)
    assert v.verdict == "PROVEN", (v.message, v.shape_error, v.witness)


@pytest.mark.parametrize("fixture,lhs,rhs", [
    ("nielsen", "delta2", "(sigma(w2 @ a1 + b2) - y) * sigma_prime(z2)"),  # the separate bias vector b2
    ("nielsen", "dC/db2", "delta2"),
    ("nielsen", "dC/db2[1]", "delta2[1]"),
    ("nielsen", "dC/dW1", "delta1 @ A0"),
    ("batch", "dC/db2", "delta2 @ ones / 2"),  # ones, the batch mean
    ("batch", "dC/dw2", "delta2 @ a1.T / 2"),
    ("nobias", "delta1[0]", "(w2.T @ delta2)[0] * tanh_prime(z1[0])"),
    ("nobias", "delta1[0]", "(w2.T @ delta2)[0] * (1 - tanh(z1[0])**2)"),
    ("nobias", "delta1", "D1 @ w2.T @ D2 @ w3.T @ D3 @ grad_a(C)"),  # the unrolled product
    ("rowmajor", "delta3", "a3 - y"),  # sigmoid with cross-entropy: a rational identity
    ("rowmajor", "dC/dW3", "A2.T @ delta3.T"),
    ("rowmajor", "dC/db3", "(delta3 @ ones).T"),
    ("softmax", "delta2", "a2 - y"),  # needs the relations: outputs and one-hot targets sum to 1
])
def test_text_vocabulary_on_other_specs(request, fixture, lhs, rhs):
    v = check(request.getfixturevalue(fixture), lhs, rhs)
    assert v.verdict == "PROVEN", (v.message, v.shape_error, v.witness)


LATEX_222 = [
    ("dC/dw2[0,0]", "(a_0^{(2)} - T_0)a_0^{(2)}(1 - a_0^{(2)})a_0^{(1)}"),
    (None, r"\frac{\partial C}{\partial w^{(2)}_{01}} = \delta^{(2)}_0 \cdot a^{(1)}_1"),
    (None, r"\frac{\partial C}{\partial w_{01}^{(2)}} = \delta_0^{(2)} a_1^{(1)}"),
    (None, r"\frac{\partial C}{\partial w^{(1)}_{10}} = \delta^{(1)}_1 x_0"),
    (None, r"\frac{\partial C}{\partial b^{(1)}_1} = \delta^{(1)}_1"),
    (None, r"\delta^{(1)}_0 = \sum_{j=0}^{1} w_{j0}^{(2)} \delta_j^{(2)} \sigma'(z_0^{(1)})"),
    (None, r"\delta^{(2)} = \left(a^{(2)} - T\right) \odot \sigma'(z^{(2)})"),
    (None, r"\delta^{(2)} = (\sigma(z^{(2)}) - y) \circ \sigma^{\prime}(z^{(2)})"),
    (None, r"\delta^{(2)} = (\hat{y} - y) \odot \sigma'(z^{(L)})"),
    (None, r"\delta^{(2)} = \nabla_a C \odot \sigma'(z^{(2)})"),
    (None, r"\left(\frac{\partial C}{\partial W^{(2)}}\right)^T = \delta^{(2)} A^{(1)}"),
    (None, r"\frac{\partial C}{\partial W^{(2)}} = (A^{(1)})^{\top} (\delta^{(2)})^T"),
    (None, r"\delta^{(1)} = D^{(1)} (w^{(2)})^T \delta^{(2)}"),
    (None, r"\delta^{(1)} = \operatorname{diag}(\sigma'(z^{(1)})) \, (w^{(2)})^T \times \delta^{(2)}"),
    (None, r"\delta^{(2)}_0 = \frac{2 (a^{(2)}_0 - T_0)^2}{2 (a^{(2)}_0 - T_0)} a^{(2)}_0 (1 - a^{(2)}_0)"),
    (None, r"\delta^{(2)}_0 = \tfrac12 \cdot 2 (a^{(2)}_0 - T_0) \sigma'(z^{(2)}_0)"),
    (None, r"\delta^{(2)}_0 = \frac{(a^{(2)}_0 - T_0) \sigma'(z^{(2)}_0)}{(a^{(1)}_0)^{-1} a^{(1)}_0}"),
    ("delta2[0]", r"(a^{(2)}_0 - T_0) \left(a^{(2)}_0 - (a^{(2)}_0)^2\right)"),
]


@pytest.mark.parametrize("lhs,latex", LATEX_222)
def test_latex_vocabulary_is_proven(net222, lhs, latex):
    v = check(net222, lhs, latex=latex)
    assert v.verdict == "PROVEN", (v.message, v.shape_error, v.witness)


@pytest.mark.parametrize("latex", [
    r"\delta^L = \nabla_a C \odot \sigma'(z^L)",  # BP1
    r"\delta^1 = ((w^2)^T \delta^2) \odot \sigma'(z^1)",  # BP2
    r"\frac{\partial C}{\partial b^2_1} = \delta^2_1",  # BP3
    r"\frac{\partial C}{\partial w^2_{13}} = a^1_3 \delta^2_1",  # BP4
    r"\frac{\partial C}{\partial w^2} = \delta^2 (a^1)^T",
    r"\frac{\partial C}{\partial b^1} = \delta^1",
    r"\delta^L_0 = (a^L_0 - y_0)\left(a^L_0 - (a^L_0)^2\right)",  # powers on parentheses
    r"\delta^{2}_{1} = (a^{L}_{1} - y_{1}) a^{2}_1 (1 - a^2_1)",
    r"\frac{\partial C}{\partial w^2_{0,3}} = a^{L-1}_3 \delta^2_0",
    r"\delta^{(1)} = ((w^{(2)})^T \delta^{(2)}) \odot \sigma'(z^{(1)})",  # parenthesized layers read here too
])
def test_nielsen_bare_superscripts(nielsen, latex):
    v = check(nielsen, latex=latex)
    assert v.verdict == "PROVEN", (v.message, v.shape_error, v.witness)


def test_batch_ones_in_latex(batch):
    assert check(batch, latex=r"\frac{\partial C}{\partial b^2} = \frac{1}{2} \delta^2 \mathbf{1}").verdict == "PROVEN"


def test_both_forms_give_the_same_verdicts(net222):
    pairs = [("(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[1]", "(a_0^{(2)} - T_0)a_0^{(2)}(1 - a_0^{(2)})a_1^{(1)}"),
             ("(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[0]", "(a_0^{(2)} - T_0)a_0^{(2)}(1 - a_0^{(2)})a_0^{(1)}")]
    for text, latex in pairs:
        a, b = check(net222, "dC/dw2[0,1]", text), check(net222, "dC/dw2[0,1]", latex=latex)
        assert a.verdict == b.verdict
        assert a.witness == b.witness


# ---------------------------------------------------------------------------
# verdicts: witness, entries, shapes, UNPROVEN
# ---------------------------------------------------------------------------

def _forward_222(values):
    """An independent forward pass of net222 in NumPy from a witness's values."""
    W1 = np.array([[values[f"w1[{j},{k}]"] for j in range(2)] for k in range(3)])
    W2 = np.array([[values[f"w2[{j},{k}]"] for j in range(2)] for k in range(3)])
    x = np.array([values["a0[0]"], values["a0[1]"]])
    t = np.array([values["y[0]"], values["y[1]"]])

    def run(W2):
        a1 = 1 / (1 + np.exp(-(np.append(x, 1) @ W1)))
        a2 = 1 / (1 + np.exp(-(np.append(a1, 1) @ W2)))
        return a1, a2, 0.5 * np.sum((a2 - t) ** 2)

    return run, W2


def test_witness_is_a_real_point_where_the_sides_differ(net222):
    v = check(net222, "dC/dw2[0,1]", "(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[0]")
    assert v.verdict == "REFUTED"
    w = v.witness
    assert len(w["values"]) == 12 + 2 + 2  # every weight, input and target
    assert set(w["neurons"]) == {"a1[0]", "a1[1]", "a2[0]", "a2[1]"}
    run, W2 = _forward_222(w["values"])
    a1, a2, _ = run(W2)
    assert np.allclose([w["neurons"][f"a1[{j}]"] for j in range(2)], a1)
    # the true partial by central differences of C, the claim by hand: both as the witness says
    h = 1e-6
    up, down = W2.copy(), W2.copy()
    up[1, 0] += h  # W2[k=1, j=0] is w2[0,1]
    down[1, 0] -= h
    fd = (run(up)[2] - run(down)[2]) / (2 * h)
    claimed = (a2[0] - w["values"]["y[0]"]) * a2[0] * (1 - a2[0]) * a1[0]
    assert w["lhs"] == pytest.approx(fd, rel=1e-6)
    assert w["rhs"] == pytest.approx(claimed, rel=1e-9)
    assert abs(w["lhs"] - w["rhs"]) > 1e-6


def test_matrix_claim_reports_wrong_and_holding_entries(net222):
    v = check(net222, "delta2", "(a2 - T) * a2 * (1 - a2[0])")  # a2[0] where the vector belongs
    assert v.verdict == "REFUTED"
    assert v.wrong_entries == [{"entry": [1, 0], "name": "delta2[1]"}]
    assert v.holding_entries == [{"entry": [0, 0], "name": "delta2[0]"}]
    assert v.witness["entry"] == [1, 0] and v.witness["lhs"][1][0] != v.witness["rhs"][1][0]
    assert v.witness["lhs"][0][0] == pytest.approx(v.witness["rhs"][0][0])


def test_wrong_entries_of_a_gradient_matrix_are_named_by_parameter(net222):
    v = check(net222, "dC/dW2", "A1.T @ (delta2.T * diag(a1.T @ a1 * 0 + 1)[0,0])")
    assert v.verdict == "PROVEN"
    v = check(net222, "dC/dW2", "A0.T @ delta2.T")  # the previous layer's activations
    assert v.verdict == "REFUTED"
    names = {e["name"] for e in v.wrong_entries}
    assert "dC/dw2[0,0]" in names and "dC/dw2[1,0]" in names
    assert {e["name"] for e in v.holding_entries} == {"dC/dw2[0,2]", "dC/dw2[1,2]"}  # the bias row holds
    assert v.repair.text == "holds with A1 in place of A0 (another layer's factor)"


def test_shape_error_is_said_plainly(net222):
    v = check(net222, "dC/dW1", "delta1 @ A0")
    assert v.verdict == "REFUTED"
    assert v.shape_error == "delta1 @ A0 is 2×3 but dC/dW1 is 3×2"
    assert v.witness is None


def test_inner_shape_error(nielsen):
    v = check(nielsen, latex=r"\delta^1 = (w^2 \delta^2) \odot \sigma'(z^1)")
    assert v.shape_error == (r"w^2 \delta^2: w^2 is 2×4 and \delta^2 is 2×1; a matrix product needs the 4 columns "
                             "of the first to meet 2 rows of the second")
    v = check(nielsen, "delta2", "(a2 - y) * sigma_prime(z1)")
    assert v.shape_error == "an elementwise product of different sizes: a2 - y is 2×1 but sigma_prime(z1) is 4×1"
    v = check(nielsen, "delta2", "a2 - y + a1")
    assert v.shape_error == "a sum of different sizes: a2 - y is 2×1 but a1 is 4×1"
    v = check(nielsen, "delta2", "2 @ a2")
    assert v.shape_error == "2 @ a2: @ multiplies matrices, and 2 is a scalar"
    v = check(nielsen, "delta2", "diag(w2) @ a2")
    assert v.shape_error == "diag(w2): diag needs a vector, and w2 is 2×4"
    v = check(nielsen, "delta2[0]", "a2[0]")
    assert v.verdict == "REFUTED" and v.shape_error is None
    v = check(nielsen, "delta2[0]", "a2")
    assert v.shape_error == "a2 is 2×1 but delta2[0] is a scalar"
    v = check(nielsen, latex=r"\delta^2 = (a^2)^2")
    assert v.verdict == "ERROR" and "a power of the 2×1 matrix a^2 has two readings" in v.message


def test_unproven_when_no_point_tells_the_sides_apart(rowmajor):
    # ReLU: sigma'(z)^2 = sigma'(z) for every z, but not as polynomials in the atoms
    v = check(rowmajor, "delta2[0]", "(w3.T @ delta3)[0,0] * sigma_prime(z2[0]) * sigma_prime(z2[0])")
    assert v.verdict == "UNPROVEN" and v.witness is None and "not an identity" in v.message
    assert check(rowmajor, "delta2[0]", "(w3.T @ delta3)[0,0] * sigma_prime(z2[0])").verdict == "PROVEN"


def test_relu_points_have_every_atom(rowmajor):
    pt = rowmajor.point(0)
    net = rowmajor.net
    for e in range(net.E):
        for l in range(1, net.L + 1):
            for j in range(net.sizes[l]):
                assert net.a[e][l][j] in pt.vals
                if l < net.L:
                    assert net.ap[e][l][j] in pt.vals


def test_example_selects_the_example_of_scalars(batch):
    claim = ("delta2[0]", "(a2[0] - y[0]) * a2[0] * (1 - a2[0])")
    assert check(batch, *claim, example=1).verdict == "PROVEN"
    assert check(batch, *claim, example=0).verdict == "PROVEN"
    v = check(batch, *claim, example=2)
    assert v.verdict == "ERROR" and "example 2 does not exist" in v.message


# ---------------------------------------------------------------------------
# repairs: every kind, said concretely, and each one proven
# ---------------------------------------------------------------------------

REPAIRS = [
    ("net222", "delta1", "D1 @ w2 @ delta2", None, "transpose", "holds with w2.T in place of w2"),
    ("nielsen", "dC/dw2", "delta2.T @ a1.T", None, "transpose", "holds with delta2 in place of delta2.T"),
    ("nielsen", None, None, r"\delta^1 = (w^2 \delta^2) \odot \sigma'(z^1)", "transpose",
     "holds with (w^2)^T in place of w^2"),
    ("nielsen", "dC/dw2", "a1.T @ delta2", None, "order", "holds with delta2 @ a1.T in place of a1.T @ delta2"),
    ("net222", "dC/dW1", "delta1 @ A0", None, "transpose result",
     "holds with the right-hand side transposed: (delta1 @ A0).T"),
    ("net222", "delta1[0]", "(w2[0,0]*delta2[0] + w2[0,1]*delta2[1]) * sigma_prime(z1[0])", None, "swap indices",
     "holds with w2[1,0] in place of w2[0,1]"),
    ("net222", "dC/dw1[0,1]", None, r"\sum_{j=0}^{1} \delta_j^{(2)} w_{0j}^{(2)} a_0^{(1)}(1 - a_0^{(1)}) x_1",
     "swap indices", "holds with w_{j0}^{(2)} in place of w_{0j}^{(2)}"),
    ("net222", "dC/dw2[0,1]", "(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[0]", None, "neuron",
     "holds with a1[1] in place of a1[0] (another neuron's factor)"),
    ("nielsen", None, None, r"\frac{\partial C}{\partial w^2_{13}} = a^1_1 \delta^2_1", "neuron",
     "holds with a^1_3 in place of a^1_1 (another neuron's factor)"),
    ("net222", "delta2", "(a2 - T) * sigma_prime(z1)", None, "layer",
     "holds with z2 in place of z1 (another layer's factor)"),
    ("net222", "dC/db2[1]", "delta2[1] * a1[0]", None, "bias",
     "holds with 1 (the bias's constant input) in place of a1[0]"),
    ("net222", "(dC/dW2).T", "delta2 @ a1.T", None, "bias", "holds with A1 in place of a1.T (the bias's 1 added)"),
    ("net222", "(dC/dW2).T", None, r"\delta^{(2)} (a^{(1)})^T", "bias",
     "holds with A^{(1)} in place of (a^{(1)})^T (the bias's 1 added)"),
    ("net222", "delta1", "D1 @ W2 @ delta2", None, "bias", "holds with w2.T in place of W2 (the bias's weights dropped)"),
    ("net222", "delta2", "(T - a2) * sigma_prime(z2)", None, "sign", "holds with a2 - T in place of T - a2"),
    ("net222", "delta2", "-(a2 - T) * sigma_prime(z2)", None, "sign", "holds with a2 - T in place of -(a2 - T)"),
    ("net222", "dC/db2[0]", "delta2[0] * -1", None, "sign", "holds with the opposite sign: -(delta2[0] * (-1))"),
    ("batch", "dC/dw2", "delta2 @ a1.T", None, "factor", "holds multiplied by 1/2: 1/2 * (delta2 @ a1.T)"),
    ("nielsen", None, None, r"\frac{\partial C}{\partial w^2} = 2 \delta^2 (a^1)^T", "factor",
     r"holds multiplied by 1/2: \frac{1}{2} (2 \delta^2 (a^1)^T)"),
]


@pytest.mark.parametrize("fixture,lhs,rhs,latex,kind,text", REPAIRS)
def test_repairs(request, fixture, lhs, rhs, latex, kind, text):
    ctx = request.getfixturevalue(fixture)
    v = check(ctx, lhs, rhs, latex)
    assert v.verdict == "REFUTED"
    assert (v.repair.kind, v.repair.text) == (kind, text)
    # the repaired right-hand side, read back and checked like any claim, is proven
    fixed = check(ctx, v.lhs, v.repair.claim) if rhs is not None else check(ctx, v.lhs, latex=v.repair.claim)
    assert fixed.verdict == "PROVEN"


def test_every_repair_kind_is_tested():
    assert {r[4] for r in REPAIRS} == set(KINDS)


def test_no_repair_when_no_single_change_helps():
    ctx = Context(EXAMPLES / "specs" / "colaug.toml")
    v = check(ctx, "delta1", "(w2.T @ delta2) * a1 * (1 - a1)")  # sigmoid's derivative in a tanh layer
    assert v.verdict == "REFUTED" and v.repair is None and v.witness is not None


def test_a_claim_whose_exact_check_would_explode_is_refused(net222):
    fraction = "a1[0]"
    for i in range(40):  # a continued fraction: over one denominator it has Fibonacci-many terms
        fraction = f"(a1[{i % 2}] + T[{i % 2}]/{fraction})" if i % 3 else f"(a1[{i % 2}] + T[{i % 2}]/({fraction}))"
    v = check(net222, "dC/dw2[0,0]", fraction)
    assert v.verdict == "ERROR" and "too large to prove exactly" in v.message


def test_long_lists_of_entries_are_shortened_in_the_terminal(tmp_path):
    from rich.console import Console

    from derive.report.claims import render

    f = _write(tmp_path, 'spec = "nielsen"\nsizes = [6, 5, 2]\nexamples = 1\n[[claim]]\nname = "t"\nlatex = '
                         "'\\frac{\\partial C}{\\partial w^1} = (\\delta^1 (x)^T) \\odot 2'\n"
                         'note = "every entry twice too large"\n')
    report = check_file(f)
    console = Console(record=True, width=200)
    render(report, console)
    out = console.export_text()
    assert "wrong entries (30 of 30): [0,0] dC/dw1[0,0]," in out and "... (22 more in --json)" in out
    assert "every entry twice too large" in out and "repair: holds multiplied by 1/2" in out
    assert report.verdicts[0].as_json()["note"] == "every entry twice too large"


def test_other_repairs_are_listed(net222):
    v = check(net222, "delta2", "(T - a2) * sigma_prime(z2)")
    texts = [r.text for r in [v.repair, *v.other_repairs]]
    assert "holds with the opposite sign: -((T - a2) * sigma_prime(z2))" in texts


# ---------------------------------------------------------------------------
# claims that cannot be read: ERROR with the field and the position
# ---------------------------------------------------------------------------

ERRORS = [
    ("net222", "dC/dw2[0,0]", "a1[0] * q", None, "rhs", "column 9", "unknown name 'q'"),
    ("net222", "dC/dw2[0,0]", "a1[5]", None, "rhs", "column 1", "index 5 is out of range: j runs from 0 to 1"),
    ("net222", "dC/dw2[0,0]", "w2[0,3]", None, "rhs", "column 1",
     "k runs from 0 to 2 (2 neurons in layer 1, then the bias weight)"),
    ("net222", "dC/dw2[0,9]", "a1[0]", None, "lhs", "column 1", "index 9 is out of range"),
    ("net222", "dC/dw2[0,0]", "sigma(a1[0])", None, "rhs", "column 1", "not a neuron's pre-activation"),
    ("net222", "dC/dw2[0,0]", "tanh(z1[0])", None, "rhs", "column 1", "layer 1's activation is sigmoid, not tanh"),
    ("net222", "dC/dw2[0,0]", "a1[0] / (a1[0] - a1[0])", None, "rhs", "column 10", "division by zero"),
    ("net222", "dC/dw2[0,0]", "(x[0] + x[1] + a1[0] + a1[1] + T[0] + T[1])**32", None, "rhs", "column 1",
     "too large to prove exactly"),
    ("net222", "dC/dw2[0,0]", None, r"\sum_{k=0}^{1} a_j^{(1)}", "latex", "column 16", "index j is not bound by a \\sum"),
    ("net222", "dC/dw2[0,0]", None, r"\partial C", "latex", "column 1", "\\partial belongs on the left-hand side"),
    ("net222", "dC/dw2[0,0]", None, r"\delta^{(2)}_0 = a^{(1)}_0", "lhs", "column 1",
     "lhs names dC/dw2[0,0] but the LaTeX's left-hand side is delta2[0]"),
    ("net222", None, None, r"a^{(1)}_0", "latex", "column 1", "no left-hand side"),
    ("net222", None, None, r"\sigma(z^{(1)}_0) = a^{(1)}_0", "latex", "column 1", "the left-hand side must be"),
    ("nobias", "dC/db2[0]", "delta2[0]", None, "lhs", "column 1", "the spec nobias3 has no biases"),
    ("nobias", "delta2[0]", "b2[0]", None, "rhs", "column 1", "the spec nobias3 has no biases"),
    ("batch", "delta1", "D1 @ w2.T @ delta2", None, "rhs", "column 1", "is defined for one example; this batch has 2"),
    ("softmax", "delta2[0]", "sigma_prime(z2[0])", None, "rhs", "column 1", "its derivative is a Jacobian"),
    ("softmax", "delta2", "D2 @ grad_a(C)", None, "rhs", "column 1", "its derivative is a full Jacobian"),
    ("net222", "delta2[0]", "(a1[0])[0]", None, "rhs", "column 1", "a1[0] is a scalar and has no entries"),
    ("net222", "delta2[0]", "(w2.T @ delta2)[5]", None, "rhs", "column 1", "no entry [5] in w2.T @ delta2, which is 2×1"),
    ("net222", "delta2[0]", "sigma((x[0] + x[1] + a1[0] + a1[1] + T[0] + T[1] + w2[0,0] + w2[0,1])**20)", None, "rhs", "column 1",
     "the argument of the activation is too large"),
    ("net222", "delta2[0]", None, r"\sum_{i=0}^{999} \sum_{j=0}^{999} x_0", "latex", "column 1",
     "steps to evaluate (its sums multiply out); at most 20000"),
    ("net222", None, None, r"\left(\frac{\partial C}{\partial w^{(2)}_{00}}\right)^T = 1", "latex", "column 7",
     "a single partial has no transpose"),
    ("net222", "delta2[0]", None, r"a^{1,2}_0", "latex", "column 3", "a superscript holds one thing"),
    ("net222", "delta2[0]", None, r"a^{(1.5)}_0", "latex", "column 4", "'(1.5)' is not a layer number"),
    ("net222", "delta2[0]", None, r"a^{(1)}_\top", "latex", "column 9", "an index is a number or a letter"),
    ("net222", "delta2[0]", None, r"w^{(1)}_{0,2j}", "latex", "column 12", "'2j' is not an index"),
    ("net222", "delta2[0]", None, r"2^{2^{-1}}", "latex", "column 4", "an exponent must be a whole number"),
]


@pytest.mark.parametrize("fixture,lhs,rhs,latex,field,where,needle", ERRORS)
def test_errors(request, fixture, lhs, rhs, latex, field, where, needle):
    v = check(request.getfixturevalue(fixture), lhs, rhs, latex)
    assert v.verdict == "ERROR"
    assert (v.error_field, v.error_position) == (field, where)
    assert needle in v.message, v.message
    assert "\n" not in v.error_line()


# ---------------------------------------------------------------------------
# claims files
# ---------------------------------------------------------------------------

def _write(tmp_path, text, name="claims.toml"):
    f = tmp_path / name
    f.write_text(text)
    return f


GOOD = 'spec = "net222"\n[[claim]]\nname = "ok"\nlhs = "delta2"\nrhs = "(a2 - T) * a2 * (1 - a2)"\n'


@pytest.mark.parametrize("text,needle", [
    ('spec = "net222"\n[[claim]\n', "malformed TOML"),
    ('spec = "net222"\nx = ' + "[" * 5000 + "]" * 5000 + "\n", "malformed TOML: nested too deeply"),
    ('spec = "net999"\n[[claim]]\nname="a"\nlhs="delta2"\nrhs="a2"\n', "unknown spec 'net999'"),
    ('spec = "missing.toml"\n[[claim]]\nname="a"\nlhs="delta2"\nrhs="a2"\n', "no such spec file"),
    ('[[claim]]\nname="a"\nlhs="delta2"\nrhs="a2"\n', "spec: give a built-in name"),
    ('spec = "net222"\n', "no claims"),
    ('spec = "net222"\nclaim = []\n', "no claims"),
    ('spec = "net222"\nclaim = 3\n', "'claim' must be an array of tables"),
    ('spec = "net222"\nbogus = 1\n' + GOOD[16:], "unknown key 'bogus'"),
    ('spec = "net222"\nlayers = "sub"\n' + GOOD[16:], "layers = 'sub'"),
    ('spec = "net222"\nsizes = [2, -1]\n' + GOOD[16:], "field 'sizes'"),
    ('spec = "net222"\nsizes = "2-x"\n' + GOOD[16:], "--sizes"),
    ('spec = "net222"\nsizes = 3\n' + GOOD[16:], "sizes = 3"),
    ('spec = "net222"\nexamples = 2\n' + GOOD[16:], "field 'examples'"),
    ('spec = "nielsen"\n' + GOOD[16:], "has 23860 parameters; claims are checked on networks of at most 2000"),
    (GOOD + '[[claim]]\nname = "ok"\nlhs = "delta2"\nrhs = "a2"\n', "claim 2 'ok': another claim has the same name"),
    ('spec = "net222"\n[[claim]]\nlhs = "delta2"\nrhs = "a2"\n', "claim 1: name must be a short string"),
    ('spec = "net222"\n[[claim]]\nname = "two\\nlines"\nlhs = "delta2"\nrhs = "a2"\n', "claim 1: name must be a short "
     "string on one line"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2"\n', "claim 1 'a': give the right-hand side as rhs"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2"\nrhs = "a2"\nlatex = "a"\n', "one of them"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nrhs = "a2"\n', "claim 1 'a': lhs is missing"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2"\nrhs = 3\n', "rhs must be a string"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2"\nrhs = "a2"\nwhy = 1\n', "unknown key 'why'"),
    ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2"\nrhs = "a2"\nexample = -1\n', "example must be"),
])
def test_file_errors(tmp_path, text, needle):
    f = _write(tmp_path, text)
    with pytest.raises(DeriveError) as info:
        load_claims(f)
    assert needle in str(info.value), str(info.value)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


def test_file_level_read_errors(tmp_path):
    for path, needle in [(tmp_path / "none.toml", "no such claims file"), (tmp_path, "is a folder")]:
        with pytest.raises(DeriveError, match=needle):
            load_claims(path)
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b'spec = "net222" # \xe9\n')
    with pytest.raises(DeriveError, match="not UTF-8"):
        load_claims(bad)
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (5 * 1024 * 1024))
    with pytest.raises(DeriveError, match="a claims file has at most"):
        load_claims(big)


def test_spec_path_is_relative_to_the_claims_file(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.toml").write_text((EXAMPLES / "specs" / "colaug.toml").read_text())
    f = _write(tmp_path, 'spec = "specs/mine.toml"\n[[claim]]\nname = "a"\nlhs = "dC/dW2"\nrhs = "delta2 @ A1"\n')
    report = check_file(f)
    assert report.spec.name == "colaug" and [v.verdict for v in report.verdicts] == ["PROVEN"]


def test_layers_key_switches_the_latex_style(tmp_path):
    body = '[[claim]]\nname = "BP3"\nlatex = \'\\frac{\\partial C}{\\partial w^2_{01}} = \\delta^2_0 a^1_1\'\n'
    assert check_file(_write(tmp_path, 'spec = "net222"\nlayers = "bare"\n' + body)).verdicts[0].verdict == "PROVEN"
    v = check_file(_write(tmp_path, 'spec = "net222"\n' + body)).verdicts[0]
    assert v.verdict == "ERROR" and "set layers = \"bare\"" in v.message


# ---------------------------------------------------------------------------
# the examples say the verdicts they get
# ---------------------------------------------------------------------------

EXPECT = re.compile(r"# expect: ([A-Z]+)(?: \(([a-z ]+)\))?:")


@pytest.mark.parametrize("name", ["net222", "nielsen", "nielsen_batch", "colaug"])
def test_examples_get_the_verdicts_they_state(name):
    path = EXAMPLES / f"{name}.toml"
    expected = EXPECT.findall(path.read_text())
    report = check_file(path)
    assert len(expected) == len(report.verdicts)
    got = [(v.verdict, v.repair.kind if v.repair else "") for v in report.verdicts]
    assert got == expected
    kinds = {v.verdict for v in report.verdicts}
    assert "PROVEN" in kinds and "REFUTED" in kinds  # some true, some slips


# ---------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------

def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", "check", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT)


def test_cli_all_proven_exits_0(tmp_path):
    r = run(str(_write(tmp_path, GOOD)))
    assert r.returncode == 0 and r.stderr == ""
    assert "PROVEN" in r.stdout and r.stdout.strip().splitlines()[-1] == "1 claim: 1 proven, 0 refuted"


def test_cli_refuted_exits_1_with_the_report():
    r = run("examples/claims/net222.toml")
    assert r.returncode == 1 and r.stderr == ""
    out = r.stdout
    assert "repair: holds with a1[1] in place of a1[0] (another neuron's factor)" in out
    assert "shape: delta1 @ A0 is 2×3 but dC/dW1 is 3×2" in out
    assert "witness: dC/dw2[0,1] is" in out
    assert out.strip().splitlines()[-1] == "16 claims: 7 proven, 9 refuted"


def test_cli_json():
    r = run("examples/claims/nielsen.toml", "--json")
    assert r.returncode == 1
    data = json.loads(r.stdout)
    assert isinstance(data, list) and len(data) == 12
    for item in data:
        assert {"name", "verdict", "witness", "wrong_entries", "shape_error", "repair"} <= set(item)
    bp2 = next(d for d in data if d["name"] == "BP2 without the transpose")
    assert bp2["verdict"] == "REFUTED" and bp2["shape_error"].startswith("w^2 \\delta^2: w^2 is 2×4")
    assert bp2["repair"] == {"kind": "transpose", "text": "holds with (w^2)^T in place of w^2", "replaced": "w^2",
                             "by": "(w^2)^T", "claim": "((w^2)^T \\delta^2) \\odot \\sigma'(z^1)"}
    refuted = next(d for d in data if d["name"] == "BP1 with the target first")
    assert set(refuted["witness"]) >= {"values", "neurons", "lhs", "rhs", "entry"}


def test_cli_unreadable_claim_exits_2_with_one_line(tmp_path):
    f = _write(tmp_path, GOOD + '[[claim]]\nname = "typo"\nlhs = "delta2"\nrhs = "(a2 - T) * a2 * (1 - a3)"\n')
    r = run(str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == f"error: {f}: claim 2 'typo': rhs, column 22: a3: there is no layer 3; a runs over layers " \
                       "0 (the inputs) to 2\n"
    assert "ERROR" in r.stdout and "PROVEN" in r.stdout  # the other claims are still checked
    r = run(str(f), "--json")
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert [d["verdict"] for d in data] == ["PROVEN", "ERROR"]
    assert data[1]["error_field"] == "rhs" and data[1]["error_position"] == "column 22"


def test_cli_hostile_file_is_refused_in_one_line(tmp_path):
    claims = ["(" * 10_000 + "x[0]" + ")" * 10_000, "2**2**2**99", "a1[0] + " * 125_000 + "1"]
    body = 'spec = "net222"\n' + "".join(
        f'[[claim]]\nname = "c{i}"\nlhs = "delta2[0]"\nrhs = "{c}"\n' for i, c in enumerate(claims))
    r = run(str(_write(tmp_path, body)))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "claim 1 'c0': rhs, column 1: 20004 characters; a claim has at most 10000" in r.stderr
    assert "(and 2 more claims that cannot be read)" in r.stderr
    assert "exponent 99 is out of range" in r.stdout


def test_cli_file_errors_are_one_line(tmp_path):
    r = run(str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no such claims file" in r.stderr
    assert r.stdout == ""


# ---------------------------------------------------------------------------
# never a wrong verdict, never a crash (issue 12)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def relu222():
    """The 2-2-2 network with a ReLU hidden layer: its derivative has a kink at z = 0."""
    return Context(_spec("net222", activation=["relu", "sigmoid"]))


@pytest.fixture(scope="module")
def leaky222():
    return Context(_spec("net222", activation=["leaky_relu", "sigmoid"]))


BP2_222 = "(w2[0,{j}]*delta2[0] + w2[1,{j}]*delta2[1])"


def test_sample_points_are_never_at_a_kink(relu222, leaky222, rowmajor):
    # a point on the rational grid can put a pre-activation exactly on ReLU's kink, where SymPy's Heaviside(0) is 1/2
    for ctx in (relu222, leaky222, rowmajor):
        for i in range(10):
            pt = ctx.point(i)
            kinked = [zv for zv, e, l, j in pt.z if ctx.spec.activation[l - 1] in ("relu", "leaky_relu")]
            assert kinked and all(abs(zv) > 1e-9 for zv in kinked), (ctx.spec.name, i, kinked)


@pytest.mark.parametrize("j", [0, 1])
def test_relu_prime_squared_is_unproven_on_every_neuron(relu222, j):
    # the README's own example: sigma'(z)^2 = sigma'(z) holds for every z off the kink
    v = check(relu222, f"delta1[{j}]", f"relu_prime(z1[{j}])**2 * " + BP2_222.format(j=j))
    assert v.verdict == "UNPROVEN" and v.witness is None, v.witness
    assert check(relu222, f"delta1[{j}]", f"relu_prime(z1[{j}]) * " + BP2_222.format(j=j)).verdict == "PROVEN"


@pytest.mark.parametrize("j", [0, 1])
def test_leaky_relu_two_valued_derivative_is_unproven(leaky222, j):
    # leaky_relu' takes the values 1/100 and 1, so 100 s^2 + 1 = 101 s off the kink; at z = 0 SymPy gives 101/200
    v = check(leaky222, f"delta1[{j}]", f"(100*leaky_relu_prime(z1[{j}])**2 + 1) / 101 * " + BP2_222.format(j=j))
    assert v.verdict == "UNPROVEN" and v.witness is None, v.witness


def test_a_refuted_relu_claim_has_its_witness_off_the_kink(relu222):
    v = check(relu222, "delta1[0]", "2 * relu_prime(z1[0]) * " + BP2_222.format(j=0))
    assert v.verdict == "REFUTED"
    assert all(abs(z) > 1e-9 for z in _z_of_witness(relu222, v.witness))


def _z_of_witness(ctx, witness):
    values = witness["values"]
    w = lambda l, j, k: values[f"w{l}[{j},{k}]"]
    return [sum(w(1, j, k) * values[f"a0[{k}]"] for k in range(2)) + w(1, j, 2) for j in range(2)]


E0 = "((x[0]+1)**2 - x[0]**2 - 2*x[0] - 1)"  # 0 for every x[0], written so that nothing cancels it on sight
SUM1 = "(a2[0] + a2[1] + a2[2] - 1)"  # softmax outputs sum to 1
YSUM1 = "(y[0] + y[1] + y[2] - 1)"  # and so do one-hot targets
INNER = {E0: E0[1:-1], SUM1: SUM1[1:-1], YSUM1: YSUM1[1:-1]}  # the message quotes the denominator as written


@pytest.mark.parametrize("fixture,lhs,rhs,latex,needle", [
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] * {E0}/{E0}", None, E0),  # cancelled as soon as SymPy sees it
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] + 0*(1/{E0})", None, E0),
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] + 1/{E0}", None, E0),
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] + {E0}**-1", None, E0),
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] * {E0}**-2 * {E0}**2", None, E0),
    ("net222", "dC/dw2[0,0]", f"delta2[0]*a1[0] / (1/{E0})", None, E0),
    ("net222", "dC/dw2[0,0]", "delta2[0]*a1[0] + (a1[0] - a1[0])/(a1[1] - a1[1])", None, "a1[1] - a1[1]"),
    ("net222", "dC/dw2", f"delta2 @ a1.T / {E0}", None, E0),
    ("net222", "dC/dw2", f"delta2 @ a1.T / (a1 @ a1.T - a1 @ a1.T + {E0})", None, "a1 @ a1.T"),
    ("net222", "dC/dw2[0,0]", None, r"\delta^{(2)}_0 a^{(1)}_0 \frac{(x_0+1)^2 - x_0^2 - 2x_0 - 1}"
                                    r"{(x_0+1)^2 - x_0^2 - 2x_0 - 1}", "(x_0+1)^2"),
    ("softmax", "dC/db2[0]", f"delta2[0] + {SUM1}**2/{SUM1}", None, SUM1),
    ("softmax", "dC/db2[0]", f"delta2[0] + 1/{SUM1}", None, SUM1),
    ("softmax", "dC/db2[0]", f"delta2[0] + 1/{YSUM1}", None, YSUM1),
    ("softmax", "dC/db2[0]", "delta2[0] + 1/(y[0]*y[1])", None, "y[0]*y[1]"),  # one-hot: never two ones
    ("relu222", "delta1[0]", "delta1[0] + 1/(relu_prime(z1[0])**2 - relu_prime(z1[0]))", None, "relu_prime"),
    ("relu222", "delta1[0]", "delta1[0] + 1/(a1[0] - z1[0]*relu_prime(z1[0]))", None, "a1[0] -"),
    ("leaky222", "delta1[0]", "delta1[0] + 1/(a1[0] - z1[0]*leaky_relu_prime(z1[0]))", None, "a1[0] -"),
])
def test_a_denominator_that_is_zero_everywhere_is_an_error(request, fixture, lhs, rhs, latex, needle):
    v = check(request.getfixturevalue(fixture), lhs, rhs, latex)
    assert v.verdict == "ERROR", (v.verdict, v.message)
    assert "division by zero" in v.message and INNER.get(needle, needle) in v.message, v.message
    assert v.error_field == ("latex" if latex else "rhs") and "\n" not in v.error_line()


RELU_S = "+".join(f"(relu_prime(z1[{j}]) - relu_prime(z1[{j}])**2)" for j in range(7))  # 0 on both pieces


@pytest.fixture(scope="module")
def relu271():
    """Seven ReLU neurons: 2^7 joint cases of their pieces, too many to list one by one."""
    return Context(_spec("net222", sizes=[2, 7, 1], activation=["relu", "sigmoid"], convention="column",
                         bias="separate"))


@pytest.fixture(scope="module")
def onehot_batch():
    """Nine one-hot targets in each of two examples: 81 joint cases."""
    return Context(_spec("net222", sizes=[2, 2, 9], activation=["sigmoid", "softmax"], cost="log_likelihood",
                         batch="mean", examples=2))


@pytest.mark.parametrize("fixture,lhs,rhs", [
    ("relu271", "dC/dw2[0,0]", f"delta2[0]*a1[0] + 0/({RELU_S})"),
    ("relu271", "dC/dw2[0,0]", f"delta2[0]*a1[0] * ({RELU_S})/({RELU_S})"),
    ("relu271", "dC/dw2[0,0]", f"delta2[0]*a1[0] + 0*({RELU_S})**-1"),
    ("onehot_batch", "delta2[0]", "a2[0] - y[0] + 0/(y.T[0,0]*y.T[0,1] + y.T[1,0]*y.T[1,1])"),
    ("onehot_batch", "delta2[0]", "a2[0] - y[0] + 0/(y.T[0,0]*y.T[1,0]*y.T[0,1]*y.T[1,1])"),
])
def test_a_denominator_zero_on_every_one_of_many_joint_cases_is_an_error(request, fixture, lhs, rhs):
    # the joint cases are decided at once (a polynomial reduced modulo each choice's values), not listed
    v = check(request.getfixturevalue(fixture), lhs, rhs)
    assert v.verdict == "ERROR" and "division by zero" in v.message, (v.verdict, v.message)


def test_a_denominator_nonzero_on_one_of_many_joint_cases_is_no_error(relu271):
    # zero on one case of 128 (every neuron on its zero piece), nonzero on the others: no ERROR
    total = "+".join(f"relu_prime(z1[{j}])" for j in range(7))
    v = check(relu271, "dC/dw2[0,0]", f"delta2[0]*a1[0] * ({total})/({total})")
    assert v.verdict == "PROVEN", (v.verdict, v.message)


@pytest.mark.parametrize("fixture,lhs,rhs,verdict", [
    ("net222", "dC/dw2[0,0]", "delta2[0]*a1[0] * x[0]/x[0]", "PROVEN"),  # 0 only where x[0] = 0
    ("net222", "dC/dw2[0,0]", "delta2[0]*a1[0] * (x[0] - x[1])/(x[0] - x[1])", "PROVEN"),
    ("net222", "dC/dw2[0,0]", "delta2[0]*a1[0] + 1/x[0]", "REFUTED"),
    ("softmax", "dC/db2[0]", "delta2[0] * (a2[0] + a2[1] + a2[2])/(a2[0] + a2[1] + a2[2])", "PROVEN"),
    ("relu222", "delta1[0]", "relu_prime(z1[0]) * (w2[0,0]*delta2[0] + w2[1,0]*delta2[1]) * a1[1]/a1[1]", "PROVEN"),
])
def test_a_denominator_zero_only_somewhere_is_no_error(request, fixture, lhs, rhs, verdict):
    v = check(request.getfixturevalue(fixture), lhs, rhs)
    assert v.verdict == verdict, (v.verdict, v.message)
    if v.witness:
        assert all(np.isfinite(v.witness[k]) for k in ("lhs", "rhs"))


def test_a_witness_is_a_point_where_the_claim_is_defined(relu222):
    # (s - s^2)/s = 1 - s for ReLU's s = 0 or 1 wherever s != 0, and 0/0 where s = 0: no point tells them apart
    v = check(relu222, "delta1[0]", "delta1[0] + (relu_prime(z1[0]) - relu_prime(z1[0])**2)/relu_prime(z1[0])")
    assert v.verdict == "UNPROVEN" and v.witness is None, v.witness
    assert "defined" in v.message


@pytest.mark.parametrize("fixture,lhs,rhs", [
    ("net222", "delta2", "delta2 * (ones.T @ ones)"),  # 2×1 times 1×1, as NumPy broadcasts it
    ("net222", "delta2", "(ones.T @ ones) * delta2"),
    ("net222", "delta2", "delta2 / (ones.T @ ones)"),
    ("net222", "delta2", "delta2 + 0 * (ones.T @ ones)"),
    ("net222", "delta1", "sigma_prime(z1) * w2.T @ delta2 * (ones.T @ ones)"),
    ("batch", "delta2", "delta2 * ones.T"),  # 2×2 times 1×2: each row
    ("batch", "delta2", "delta2 - 0 * b2"),  # 2×2 minus 2×1: each column
    ("batch", "delta2", "(delta2 @ ones) * ones.T - (delta2 @ ones) * ones.T + delta2"),
])
def test_text_broadcasts_as_numpy_does(request, fixture, lhs, rhs):
    v = check(request.getfixturevalue(fixture), lhs, rhs)
    assert v.verdict == "PROVEN", (v.verdict, v.shape_error, v.message)


def test_broadcasting_still_refutes_what_does_not_hold(batch):
    v = check(batch, "delta2", "2 * delta2 * ones.T")
    assert v.verdict == "REFUTED" and v.witness and v.shape_error is None
    v = check(batch, "delta2", "delta2 * a1")  # 2×2 and 4×2 do not broadcast
    assert v.verdict == "REFUTED" and v.shape_error == "an elementwise product of different sizes: delta2 is 2×2 but a1 is 4×2"


def test_latex_does_not_broadcast_but_says_so(net222):
    v = check(net222, latex=r"\delta^{(2)} = \delta^{(2)} \odot (\mathbf{1}^T \mathbf{1})")
    assert v.verdict == "ERROR" and "broadcast" in v.message, (v.verdict, v.message, v.shape_error)
    v = check(net222, latex=r"\delta^{(2)} = \delta^{(2)} \odot a^{(1)}")  # same sizes: no question
    assert v.verdict == "REFUTED"


@pytest.mark.parametrize("literal", ["16", "0x10", "0X10", "0o20", "0b10000", "0b_1_0000", "1_6", "16.", "16.0",
                                     "1_6.0_0", "1.6e1", "1.6E+1", "160e-1", "0.16e2", "1600e-2", ".16e2"])
def test_every_numeric_literal_is_read_exactly(net222, literal):
    assert check(net222, "dC/dw2[0,0]", f"{literal} * delta2[0]*a1[0] / 16").verdict == "PROVEN"
    assert check(net222, "dC/dw2[0,0]", f"{literal} * delta2[0]*a1[0] / 15").verdict == "REFUTED"


@pytest.mark.parametrize("literal,needle", [
    ("1e999", "exponent"), ("1e-999", "exponent"), ("1e31", "exponent"), ("1" + "_1" * 4400, "4401 digits"),
    ("0x" + "f" * 5000, "digits"), ("0b" + "1" * 200, "digits"), ("1j", "not a real number"), ("2.5J", "not a real number"),
    ("1" + "0" * 5000, "digits"), ("1.0" + "0" * 40, "digits"), ("0x1" + "_0" * 40, "digits"),
], ids=lambda x: x if len(x) < 20 else f"{x[:8]}..{len(x)}")
def test_numeric_literals_out_of_range_are_one_line_errors(net222, literal, needle):
    v = check(net222, "dC/dw2[0,0]", f"{literal} * delta2[0]*a1[0]")
    assert v.verdict == "ERROR" and needle in v.message, v.message
    assert "\n" not in v.error_line() and len(v.error_line()) < 300


@pytest.mark.parametrize("rhs,verdict", [
    ("delta2[0]*a1[0]**0x1", "PROVEN"), ("delta2[0]*a1[0]**0b1", "PROVEN"), ("delta2[0]*a1[0]**1_0", "REFUTED"),
    ("delta2[0]*a1[0x0]", "PROVEN"), ("delta2[0]*a1[0b0]", "PROVEN"),
    ("delta2[0]*a1[0]**0x" + "f" * 400, "ERROR"), ("delta2[0]*a1[0x" + "f" * 5000 + "]", "ERROR"),
    ("delta2[0]*a1[0]**1e1", "ERROR"),
], ids=lambda x: x if len(x) < 30 else f"{x[:20]}..{len(x)}")
def test_numeric_literals_in_exponents_and_indices(net222, rhs, verdict):
    v = check(net222, "dC/dw2[0,0]", rhs)
    assert v.verdict == verdict, (v.verdict, v.message)


HOSTILE = "\x1b[1A\x1b[2K\rPROVEN    \x9b2K\u202e\x07[bold red]markup[/]"


def _rendered(report):
    import io

    from rich.console import Console

    from derive.report.claims import render

    out = io.StringIO()
    render(report, Console(file=out, highlight=False, soft_wrap=True, color_system=None, width=200))
    return out.getvalue()


def _no_controls(text, keep="\n"):
    return not any((not ch.isprintable() and ch not in keep) for ch in text)


def test_terminal_control_characters_are_escaped(tmp_path):
    from derive.claims import Report

    ctx = Context("net222")
    claims = [Claim("note", "delta2[0]", "a2[0]", note=HOSTILE), Claim("lhs", "delta2[0]" + HOSTILE, "a2[0]"),
              Claim("name" + HOSTILE, "delta2[0]", "a2[0]"), Claim("latex", latex="a" + HOSTILE, number=4)]
    report = Report("claims" + HOSTILE + ".toml", ctx.spec, "", [check_claim(ctx, c) for c in claims])
    text = _rendered(report)
    assert _no_controls(text), repr(text)
    assert "\\x1b[1A" in text and "\\u202e" in text and "[bold red]markup[/]" in text
    for v in report.verdicts:
        assert _no_controls(v.error_line(), keep="") if v.verdict == "ERROR" else True
    lines = text.splitlines()
    assert sum(line.startswith(("PROVEN", "REFUTED", "UNPROVEN", "ERROR")) for line in lines) == 4


def test_a_note_over_several_lines_cannot_forge_a_verdict_line(net222):
    from derive.claims import Report

    v = check_claim(net222, Claim("wrong", "delta2[0]", "a2[0]", note="first\nPROVEN    forged"))
    text = _rendered(Report("f.toml", net222.spec, "", [v]))
    assert not any(line.startswith("PROVEN") for line in text.splitlines()), text


def test_control_characters_are_escaped_in_the_command_output(tmp_path):
    body = ('spec = "net222"\n[[claim]]\nname = "a"\nlhs = "delta2[0]"\nrhs = "a2[0]"\n'
            'note = "\\u001b[2K\\rPROVEN \\u009b2K \\u202e \\u2028"\n'
            '[[claim]]\nname = "b"\nlhs = "delta2[0]\\u001b[1A"\nrhs = "a2[0]"\n')
    f = _write(tmp_path, body)
    r = run(str(f))
    assert r.returncode == 2 and _no_controls(r.stdout) and _no_controls(r.stderr), (r.stdout, r.stderr)
    assert "\\x1b[1A" in r.stderr and r.stderr.count("\n") == 1
    r = run(str(f), "--json")
    assert _no_controls(r.stdout) and "\\u009b" in r.stdout and "\\u202e" in r.stdout
    data = json.loads(r.stdout)
    assert data[0]["note"] == "\x1b[2K\rPROVEN \x9b2K \u202e \u2028"  # the JSON escapes, the data is intact


def test_file_errors_escape_what_they_quote(tmp_path):
    f = _write(tmp_path, 'spec = "net222"\n"\\u001b[2Kbogus\\u202e" = 1\n' + GOOD[16:])
    with pytest.raises(DeriveError) as info:
        load_claims(f)
    assert _no_controls(str(info.value), keep="") and "\\x1b[2Kbogus\\u202e" in str(info.value)
