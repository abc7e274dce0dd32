"""Claims about attention, a recurrent layer, convolution and pooling, in text and LaTeX.

The truth is the chain rule over the layer's own scalar graph from its upstream gradient held
free (derive.claims.layers), so a claim proven holds for every upstream gradient. The textbook
forms are proven; the slips people make (P not transposed, 1/√d_k lost, the softmax's rowsum
lost, (1 − h²) lost, ∂C/∂h_t for the gradient from above, a step off, the kernel not turned, the
max pool's gradient to every window entry) are refused with a witness and the slip named.
"""

import json
import re
from pathlib import Path

import pytest

from derive.claims import Claim, check_file
from derive.claims.layers import LayeredContext
from derive.claims.layers_check import check_layered
from derive.claims.layers_print import latex_text, text
from derive.claims.layers_read import fill_layers, read_layered_latex, read_layered_text
from derive.spec import load_spec
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "claims"
EXPECT = re.compile(r"# expect: ([A-Z]+)(?: \(([a-z ]+)\))?:")


def _spec(tmp, name: str, inputs, body: str, **top) -> Path:
    head = {"name": name, "inputs": inputs, "cost": "quadratic", "convention": "row", "batch": "mean",
            "examples": 2, "notation": "nielsen", **top}
    path = tmp / f"{name}.toml"
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in head.items()) + body)
    return path


def verdict(ctx, lhs=None, rhs=None, latex=None, example=0):
    return check_layered(ctx, Claim("c", lhs=lhs, rhs=rhs, latex=latex, example=example))


@pytest.mark.parametrize("name", ["attention", "attention_latex", "rnn", "cnn"])
def test_the_examples_get_the_verdicts_they_state(name):
    path = EXAMPLES / f"{name}.toml"
    expected = EXPECT.findall(path.read_text())
    report = check_file(path)
    got = [(v.verdict, v.repair.kind if v.repair else "") for v in report.verdicts]
    assert got == expected
    for v in report.verdicts:
        if v.verdict == Verdict.REFUTED and not v.shape_error:  # a point of the network where the sides differ
            assert v.witness["values"] and v.witness["lhs"] != v.witness["rhs"]


# ---------------------------------------------------------------------------
# attention: one example's arrays, whatever the convention
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def plain_attention(tmp_path_factory):
    """Non-causal, no W_o, d_k = 1 (head_dim), column convention: the per-example view does not depend on it."""
    body = ('[[layers]]\nkind = "attention"\nhead_dim = 1\n[[layers]]\nkind = "flatten"\n'
            '[[layers]]\nkind = "dense"\nwidth = 1\nactivation = "sigmoid"\n')
    return LayeredContext(load_spec(_spec(tmp_path_factory.mktemp("att"), "att", [2, 2], body, convention="column")))


@pytest.mark.parametrize("lhs,rhs", [
    ("dC/dv1", "a1.T @ dC/dy1"),  # no W_o: the layer's output is O
    ("dC/da1", "dC/dy1 @ v1.T"),
    ("dC/ds1", "a1 * (dC/da1 - rowsum(dC/da1 * a1))"),
    ("dC/dq1", "dC/ds1 @ k1 / sqrt(dk1)"),
    ("dC/dk1", "dC/ds1.T @ q1 / sqrt(1)"),  # d_k = 1: the scale is 1
    ("dC/dWq1", "sum(dC/dq1.T @ x1)"),  # column convention: W_q is d_k × d, Q = X W_qᵀ
    ("s1", "q1 @ k1.T / sqrt(dk1)"),
])
def test_attention_forms_hold_in_the_column_convention_too(plain_attention, lhs, rhs):
    for example in (0, 1):
        assert verdict(plain_attention, lhs, rhs, example=example).verdict == Verdict.PROVEN


def test_attention_arrays_are_one_examples_and_the_weights_sum_them(plain_attention):
    v = verdict(plain_attention, "dC/dWq1", "dC/dq1.T @ x1")  # one example's share only
    assert v.verdict == Verdict.REFUTED and v.witness is not None
    assert verdict(plain_attention, "dC/dx1[0]", "dC/dq1").verdict == Verdict.ERROR  # two indices, a matrix


def test_a_causal_masks_entries_of_dP_are_the_products(tmp_path):
    body = '[[layers]]\nkind = "attention"\ncausal = true\n[[layers]]\nkind = "flatten"\n[[layers]]\nkind = "dense"\nwidth = 1\n'
    ctx = LayeredContext(load_spec(_spec(tmp_path, "causal", [3, 1], body)))
    assert verdict(ctx, "dC/da1", "dC/dy1 @ v1.T").verdict == Verdict.PROVEN
    assert ctx.matrix("a", 1, example=1)[0, 2] == 0  # masked: P's entry is the constant 0
    assert verdict(ctx, "dC/ds1[0,1]", "0").verdict == Verdict.PROVEN  # and S's entry there reaches nothing


def test_attention_inside_a_residual_block(tmp_path):
    """The block's claims see the attention layer's input and output as the batch's (its own claims: one example's)."""
    body = ('[[layers]]\nkind = "residual"\n  [[layers.layers]]\n  kind = "attention"\n[[layers]]\nkind = "flatten"\n'
            '[[layers]]\nkind = "dense"\nwidth = 1\n')
    ctx = LayeredContext(load_spec(_spec(tmp_path, "block", [2, 2], body)))
    assert verdict(ctx, "dC/dx1", "dC/dy1 + dC/dx2").verdict == Verdict.PROVEN
    v = verdict(ctx, "dC/dx1", "dC/dx2")
    assert v.verdict == Verdict.REFUTED and v.repair.kind == "path"  # the identity path, named
    assert verdict(ctx, "dC/dv2", "a2.T @ dC/dy2", example=1).verdict == Verdict.PROVEN


def test_two_attention_layers_meet_one_example_at_a_time(tmp_path):
    body = ('[[layers]]\nkind = "attention"\n[[layers]]\nkind = "attention"\ncausal = true\n[[layers]]\nkind = "flatten"\n'
            '[[layers]]\nkind = "dense"\nwidth = 1\n')
    ctx = LayeredContext(load_spec(_spec(tmp_path, "two", [2, 2], body)))
    assert verdict(ctx, "dC/dy1", "dC/dx2").verdict == Verdict.PROVEN
    assert verdict(ctx, "dC/dv1", "a1.T @ dC/dx2", example=1).verdict == Verdict.PROVEN


# ---------------------------------------------------------------------------
# a recurrent layer: the last step's output only, row convention
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def last_rnn(tmp_path_factory):
    body = '[[layers]]\nkind = "rnn"\nhidden_size = 2\nbias = "none"\n[[layers]]\nkind = "dense"\nwidth = 1\n'
    return LayeredContext(load_spec(_spec(tmp_path_factory.mktemp("rnn"), "last", [3, 1], body)))


@pytest.mark.parametrize("lhs,rhs,want", [
    ("delta1t3", "dC/dy1 * (1 - h1t3**2)", Verdict.PROVEN),  # the output is h_T: its gradient is dC/dy1
    ("delta1t2", "(delta1t3 @ Whh1.T + dC/dy1t2) * (1 - h1t2**2)", Verdict.PROVEN),  # dC/dy1t2 is 0 here
    ("delta1t2", "delta1t3 @ Whh1.T * (1 - h1t2**2)", Verdict.PROVEN),
    ("dC/dWhh1", "sum_steps(h1[t-1].T @ delta1[t])", Verdict.PROVEN),
    ("dC/dWhh1", "h1t1.T @ delta1t2 + h1t2.T @ delta1t3", Verdict.PROVEN),
    ("dC/dWhh1", "sum_steps(delta1[t].T @ h1[t-1])", Verdict.REFUTED),
    ("h1t2", "tanh(z1t2)", Verdict.PROVEN),
    ("z1t2", "x1t2 @ Wxh1 + h1t1 @ Whh1", Verdict.PROVEN),
    ("z1t1", "x1t1 @ Wxh1 + h1t0 @ Whh1", Verdict.PROVEN),  # h_0 = 0
    ("delta1[t]", "(delta1[t+1] @ Whh1.T + dC/dy1[t]) * (1 - h1[t]**2)", Verdict.PROVEN),  # at every step
    ("delta1[t]", "delta1[t+1] @ Whh1.T * (1 - h1[t]**2)", Verdict.REFUTED),  # the last step has dC/dy1
])
def test_back_propagation_through_time(last_rnn, lhs, rhs, want):
    assert verdict(last_rnn, lhs, rhs).verdict == want


@pytest.mark.parametrize("lhs,rhs,words", [
    ("delta1t2", "h1 * 2", "with its step, h1t1"),
    ("delta1t5", "delta1t3", "steps 1 to 3"),  # delta1t4 is δ_{T+1} = 0
    ("y1t2", "h1t2", "outputs only its last step"),
    ("dC/dWhh1", "sum_steps(h1.T @ delta1t1)", "with its step"),
    ("dC/dWhh1", "h1[t-1].T @ delta1[t]", "bound by sum_steps"),
    ("dC/dWhh1", "sum_steps(W2)", "recurrent layer's steps"),
    ("dC/dWhh1", "b1", "no b"),
    ("dC/dWhh1", "Whh1 / sqrt(dk1)", "d_k is an attention layer's"),
    ("dC/dWhh1", "corr(x1, h1t1)", "a convolution's arrays"),
])
def test_what_does_not_name_a_value_is_an_error_naming_it(last_rnn, lhs, rhs, words):
    v = verdict(last_rnn, lhs, rhs)
    assert v.verdict == Verdict.ERROR and words in v.message, v.message


# ---------------------------------------------------------------------------
# convolution and pooling: a rectangular kernel, a stride, a padding; one dimension; the column convention
# ---------------------------------------------------------------------------

CONV_FORMS = [("dC/dW1", "corr(x1, delta1)", Verdict.PROVEN), ("dC/db1", "sum(delta1)", Verdict.PROVEN),
              ("dC/dx1", "full_conv(delta1, rot180(W1))", Verdict.PROVEN),
              ("dC/dx1", "full_conv(delta1, W1)", Verdict.REFUTED),
              ("dC/db1", "sum(dC/dy1 * sigmoid_prime(z1))", Verdict.PROVEN)]


@pytest.fixture(scope="module")
def strided(tmp_path_factory):
    body = ('[[layers]]\nkind = "conv2d"\nout_channels = 2\nkernel_size = [3, 2]\nstride = 2\npadding = 1\n'
            'activation = "sigmoid"\n[[layers]]\nkind = "avgpool2d"\nkernel_size = 2\nstride = 1\n'
            '[[layers]]\nkind = "flatten"\n[[layers]]\nkind = "dense"\nwidth = 1\n')
    path = _spec(tmp_path_factory.mktemp("conv"), "strided", [2, 5, 4], body, convention="column", batch="sum")
    return LayeredContext(load_spec(path))


@pytest.mark.parametrize("lhs,rhs,want", CONV_FORMS + [("dC/dx2", "upsample(dC/dy2) / 4", Verdict.PROVEN)])
def test_convolution_forms_with_a_stride_and_a_rectangular_kernel(strided, lhs, rhs, want):
    assert verdict(strided, lhs, rhs).verdict == want


def test_an_average_pools_lost_one_over_k_is_named(strided):
    v = verdict(strided, "dC/dx2", "upsample(dC/dy2)")
    assert v.verdict == Verdict.REFUTED and v.repair.kind == "factor" and "1/4" in v.repair.text


@pytest.mark.parametrize("lhs,rhs,want", CONV_FORMS)
def test_a_one_dimensional_convolution(tmp_path_factory, lhs, rhs, want):
    ctx = _conv1d(tmp_path_factory)
    assert verdict(ctx, lhs, rhs).verdict == want


_CONV1D: dict = {}


def _conv1d(factory):
    if "ctx" not in _CONV1D:
        body = ('[[layers]]\nkind = "conv1d"\nout_channels = 3\nkernel_size = 3\nstride = 2\nactivation = "sigmoid"\n'
                '[[layers]]\nkind = "flatten"\n[[layers]]\nkind = "dense"\nwidth = 1\n')
        _CONV1D["ctx"] = LayeredContext(load_spec(_spec(factory.mktemp("c1"), "c1", [2, 6], body)))
    return _CONV1D["ctx"]


# ---------------------------------------------------------------------------
# reading and printing back
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("source", ["sum_steps(delta1[t] @ h1[t-1].T)", "delta1t2 * (1 - h1t2**2)",
                                    "a1 * (dC/da1 - rowsum(dC/da1 * a1))", "full_conv(delta1, rot180(W1))",
                                    "mask2 * upsample(dC/dy2)", "dC/ds1 @ k1 / sqrt(dk1)"])
def test_text_prints_back_to_the_same_tree(source):
    tree = read_layered_text(source)
    assert read_layered_text(text(tree)) == tree


@pytest.mark.parametrize("source", [r"\sum_t \delta^{(1)}_t (h^{(1)}_{t-1})^\top",
                                    r"P^{(1)} \odot (\frac{\partial C}{\partial P^{(1)}} - \operatorname{rowsum}(\frac{\partial C}{\partial P^{(1)}} \odot P^{(1)}))",
                                    r"\operatorname{full\_conv}(\delta^{(1)}, \operatorname{rot180}(W^{(1)}))",
                                    r"\frac{\partial C}{\partial S^{(1)}} K^{(1)} / \sqrt{d_k}"])
def test_latex_prints_back_to_the_same_tree(source):
    _, tree = read_layered_latex(source)
    tree = fill_layers(tree, 1, "rnn" if "_t" in source else "attention")
    _, again = read_layered_latex(latex_text(tree))
    assert fill_layers(again, 1, "rnn" if "_t" in source else "attention") == tree
