"""Convolution, pooling, flatten, attention and recurrence in a layer list: shapes, proofs and mutants.

Each kind's textbook backward pass (derive/tables/spatial.py) is proven equal to the chain rule
over its scalar graph and to sympy.diff of its composed output, entry by entry; the mistakes
people make deriving them by hand (an unrotated kernel, a forgotten stride in the full
convolution, a lost σ', the gradient sent to every entry of a max-pool window, a missing
1/√d_k, the softmax Jacobian's rowsum term dropped, W_hh untransposed through time) must each
be refused with a witness by the same proof.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view

from derive.errors import SpecError
from derive.graph import LayeredNetwork
from derive.proofs.layered import prove_layers
from derive.spec import load_spec, validate
from derive.tables import windows as win
from derive.tables.layers import KINDS
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parents[1]
BASE = dict(name="t", cost="quadratic", convention="column", batch="mean", examples=2, notation="nielsen")


def spec_of(inputs, *layers, **over):
    return validate({**BASE, **over, "inputs": inputs, "layers": list(layers)}, "t.toml")


def conv(out_channels, kernel_size, **kw):
    return {"kind": "conv2d", "out_channels": out_channels, "kernel_size": kernel_size, **kw}


FLAT = {"kind": "flatten"}


# ---------------------------------------------------------------------------
# shapes in the spec
# ---------------------------------------------------------------------------

def test_the_example_cnn_reads_its_shapes_layer_by_layer():
    spec = load_spec(str(ROOT / "examples" / "specs" / "cnn.toml"))
    assert spec.shape == (1, 4, 4) and spec.inputs == 16
    assert [(b.kind, b.shape_in, b.shape) for b in spec.blocks] == [
        ("conv2d", (1, 4, 4), (2, 4, 4)), ("maxpool2d", (2, 4, 4), (2, 2, 2)), ("flatten", (2, 2, 2), (8,)),
        ("dense", (8,), (3,))]
    conv_block = spec.blocks[0]
    assert conv_block.kernel_size == (3, 3) and conv_block.stride == (1, 1) and conv_block.padding == (1, 1)
    assert spec.blocks[1].stride == (2, 2)  # a pooling layer's stride is its kernel size unless given
    net = LayeredNetwork(spec)
    assert spec.n_params == len(net.param_list) == 2 * 9 + 2 + 8 * 3 + 3
    assert validate(spec.as_dict(), spec.source) == spec  # the spec round-trips through its dict


@pytest.mark.parametrize("inputs,layers,needle", [
    ([0, 4], [FLAT], "field 'inputs': [0, 4] is neither a width nor a shape"),
    ([1, 2, 3, 4], [FLAT], "is neither a width nor a shape of 1 to 3 positive sizes"),
    ([1, 4, 4], [{"kind": "dense", "width": 2}], "layer 1, dense)': its input has shape [1, 4, 4]; a dense layer "
                                                 "takes a flat input; put a flatten layer before it"),
    (16, [conv(2, 3), FLAT], "layer 1, conv2d)': its input has shape [16]; a conv2d layer takes an input [C, H, W]"),
    ([1, 4, 4], [conv(2, 5), FLAT], "kernel size 5 is larger than the input (4, padded by 0 on each side)"),
    ([1, 4, 4], [conv(2, [3]), FLAT], "kernel_size [3] is not an integer of at least 1, or a list of 2 of them"),
    ([1, 4, 4], [conv(2, 3, stride=0), FLAT], "stride 0 is not an integer of at least 1"),
    ([1, 4, 4], [conv(2, 3, padding=-1), FLAT], "padding -1 is not an integer of at least 0"),
    ([1, 4, 4], [conv(0, 3), FLAT], "out_channels 0 is not an integer from 1"),
    ([1, 4, 4], [conv(2, 3, dilation=2), FLAT], "unknown key 'dilation'; a conv2d layer takes kind, out_channels"),
    ([1, 4, 4], [{"kind": "maxpool2d"}, FLAT], "layer 1, maxpool2d)': missing 'kernel_size'"),
    ([1, 4, 4], [{"kind": "maxpool2d", "kernel_size": 5}, FLAT], "kernel size 5 is larger than the input (4)"),
    ([1, 4, 4], [conv(2, 3)], "the last layer's output has shape [2, 2, 2]; the cost needs a flat output"),
    ([3, 2], [{"kind": "rnn"}], "layer 1, rnn)': missing 'hidden_size'"),
    ([3, 2], [{"kind": "rnn", "hidden_size": 2, "nonlinearity": "sigmoid"}], "nonlinearity 'sigmoid' is not one of relu, tanh"),
    ([3, 2], [{"kind": "rnn", "hidden_size": 2, "output": "every"}], "output 'every' is not one of last, all"),
    ([3, 2], [{"kind": "attention", "causal": "yes"}, FLAT], "causal 'yes' is not true or false"),
    ([1, 4, 4], [{"kind": "attention"}, FLAT], "a attention layer takes an input [C, L] or [T, d]"),
    ([1, 4, 4], [{"kind": "residual", "layers": [conv(3, 3, padding=1)]}, FLAT],
     "its layers end at shape [3, 4, 4], not at its input's shape [1, 4, 4]"),
])
def test_a_wrong_shape_or_setting_is_one_line_naming_the_layer(inputs, layers, needle):
    with pytest.raises(SpecError) as err:
        spec_of(inputs, *layers)
    message = str(err.value)
    assert message.startswith("t.toml: field ") and "\n" not in message
    assert needle in message, message


def test_the_cli_refuses_a_shape_in_one_line_with_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\ninputs = [1, 4, 4]\ncost = "quadratic"\nconvention = "row"\nbatch = "single"\n'
                    'notation = "nielsen"\n[[layers]]\nkind = "dense"\nwidth = 2\n')
    run = subprocess.run([sys.executable, "-m", "derive", "prove", str(path)], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1 and "put a flatten layer before it" in run.stderr


# ---------------------------------------------------------------------------
# the index maps, against NumPy's own windows
# ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(C=st.integers(1, 3), H=st.integers(1, 6), W=st.integers(1, 6), kh=st.integers(1, 3), kw=st.integers(1, 3),
       s=st.integers(1, 3), p=st.integers(0, 2))
def test_windows_are_numpys_sliding_windows_of_the_padded_input(C, H, W, kh, kw, s, p):
    if H + 2 * p < kh or W + 2 * p < kw:
        return
    x = np.arange(1, C * H * W + 1, dtype=float).reshape(C, H, W)
    padded = np.pad(x, ((0, 0), (p, p), (p, p)))
    expected = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::s, ::s]  # (C, OH, OW, kh, kw)
    flat = np.concatenate([x.ravel(), [0.0]])  # index -1 reads the appended 0: the padding
    got = flat[list(win.windows(C, (H, W), (kh, kw), (s, s), (p, p)))]
    OH, OW = win.out_spatial((H, W), (kh, kw), (s, s), (p, p))
    assert np.array_equal(got.reshape(OH, OW, C, kh, kw), expected.transpose(1, 2, 0, 3, 4))
    pooled = flat[list(win.windows(C, (H, W), (kh, kw), (s, s), (p, p), channel_major=True))]
    assert np.array_equal(pooled.reshape(C, OH, OW, kh, kw), expected)


@settings(max_examples=30, deadline=None)
@given(O=st.integers(1, 2), C=st.integers(1, 2), H=st.integers(2, 6), k=st.integers(1, 3), s=st.integers(1, 3),
       p=st.integers(0, 2), seed=st.integers(0, 99))
def test_the_full_convolution_is_the_adjoint_of_the_windows(O, C, H, k, s, p, seed):
    """⟨windows(x) W, g⟩ = ⟨x, full_conv(g, rot180 W)⟩ for numbers: the maps agree before any proof runs."""
    if H + 2 * p < k:
        return
    rng = np.random.default_rng(seed)
    x, Wt = rng.normal(size=C * H * H), rng.normal(size=(O, C * k * k))
    OH = win.out_size(H, k, s, p)
    g = rng.normal(size=O * OH * OH)
    cols = np.concatenate([x, [0.0]])[list(win.windows(C, (H, H), (k, k), (s, s), (p, p)))].reshape(OH * OH, -1)
    y = cols @ Wt.T  # (positions, O)
    lhs = float(np.sum(y.T.ravel() * g))
    full = np.concatenate([g, [0.0]])[list(win.full_windows(O, (H, H), (k, k), (s, s), (p, p)))].reshape(H * H, -1)
    kernel = Wt.ravel()[list(win.rotated(O, C, (k, k)))].reshape(-1, C)
    dx = (full @ kernel).T.ravel()
    assert np.isclose(lhs, float(np.dot(x, dx)))


# ---------------------------------------------------------------------------
# the proofs
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("inputs,layers,over", [
    ([2, 5, 5], [conv(2, [3, 2], stride=2, padding=[1, 0], activation="tanh"),
                 {"kind": "maxpool2d", "kernel_size": 2, "stride": 1}, {"kind": "avgpool2d", "kernel_size": [2, 1]}, FLAT],
     {"convention": "row", "batch": "sum"}),
    ([2, 5], [{"kind": "conv1d", "out_channels": 3, "kernel_size": 2, "stride": 2, "padding": 1},
              {"kind": "rnn", "hidden_size": 2, "output": "all", "nonlinearity": "relu"},
              {"kind": "attention", "head_dim": 3}, FLAT], {"batch": "single", "examples": 1}),
    ([3, 2], [{"kind": "residual", "layers": [{"kind": "attention", "causal": True, "out_proj": True}]},
              {"kind": "rnn", "hidden_size": 2, "bias": "none"}], {}),
], ids=["conv-pools", "conv1d-rnn-attention", "residual-attention"])
def test_every_kind_and_setting_is_proven_three_ways(inputs, layers, over):
    proof = prove_layers(spec_of(inputs, *layers, **over))
    assert proof.ok and proof.exit_code == 0
    forms = {(c.block, c.form) for c in proof.checks}
    for b in proof.spec.blocks:
        assert (b.kind, "backward") in forms and (b.kind, "oracle") in forms


def test_a_conv_layer_of_2_channels_6x6_with_a_3x3_kernel_is_proven_entry_by_entry():
    spec = spec_of([2, 6, 6], conv(2, 3, activation="sigmoid"), FLAT, batch="single", examples=1)
    proof = prove_layers(spec)
    assert proof.ok
    conv_checks = [c for c in proof.checks if c.block == "conv2d"]
    # every input entry (2·6·6) and every weight and bias (2·2·9 + 2), each against the form and the oracle
    assert len(conv_checks) == 2 * (72 + 38)


def test_max_pool_sends_the_gradient_to_the_arg_max_through_mask_atoms():
    net = LayeredNetwork(spec_of([1, 2, 2], {"kind": "maxpool2d", "kernel_size": 2}, FLAT, batch="single",
                                 examples=1))
    (top,) = [s for s in net.order if s.name.startswith("m1")]
    masks = [s for s in net.order if s.name.startswith("mask1")]
    assert len(masks) == 4 and {top} | set(masks) <= net.atoms
    # ∂max/∂x_i by sympy.diff is Heaviside(x_i − max of the others): the mask atom, 1 at a unique maximum
    assert {d for _, d in net.local(top)} == set(masks)


def test_a_causal_mask_leaves_the_future_out_of_each_softmax_row():
    net = LayeredNetwork(spec_of([3, 2], {"kind": "attention", "causal": True}, FLAT, batch="single", examples=1))
    rows = net.softmax_rows
    assert [len(r) for r in rows] == [1, 2, 3]  # position t attends to positions 1..t
    assert net.relations[rows[0][0]] == 1


# -- mutants --------------------------------------------------------------------------

class Swapped:
    """The array algebra with some operations replaced: a textbook pass with one slip in it."""

    def __init__(self, ops, **replaced):
        self._ops, self._replaced = ops, replaced

    def __getattr__(self, name):
        return self._replaced.get(name) or getattr(self._ops, name)


def slipped(kind: str, **make):
    """kind's own backward pass run on an algebra where each named operation is make[name](ops, block, P)."""
    def backward(ops, G, X, S, P, block, inner):
        return KINDS[kind].backward(Swapped(ops, **{k: f(ops, block, P) for k, f in make.items()}), G, X, S, P, block,
                                    inner)
    backward.__name__ = "_".join([kind] + sorted(make))
    return backward


@contextlib.contextmanager
def patched(name: str, replacement):
    original = getattr(win, name)
    setattr(win, name, replacement)
    try:
        yield
    finally:
        setattr(win, name, original)


def unrotated(O, C, kernel):
    """The kernel read as it is, not rotated by 180°."""
    size = int(np.prod(kernel))
    return tuple((o * C + c) * size + inner for o in range(O) for inner in range(size) for c in range(C))


def conv_kernel_not_rotated(ops, G, X, S, P, block, inner):
    with patched("rotated", unrotated):
        return KINDS["conv2d"].backward(ops, G, X, S, P, block, inner)


def undilated(O, spatial, kernel, stride, padding):
    """The full convolution's windows over δ padded by k − 1 − p but not dilated by the stride."""
    outs = win.out_spatial(spatial, kernel, stride, padding)
    index = []
    for y, x in np.ndindex(*spatial):
        for o in range(O):
            for p, q in np.ndindex(*kernel):
                i, j = y + p - (kernel[0] - 1 - padding[0]), x + q - (kernel[1] - 1 - padding[1])
                inside = 0 <= i < outs[0] and 0 <= j < outs[1]
                index.append((o * outs[0] + i) * outs[1] + j if inside else -1)
    return tuple(index)


def conv_stride_not_dilated(ops, G, X, S, P, block, inner):
    with patched("full_windows", undilated):
        return KINDS["conv2d"].backward(ops, G, X, S, P, block, inner)


def softmax_without_rowsum(ops, block, P):
    return lambda name, Z, A, G: ops.mul(A, G) if name == "softmax" else ops.activation_vjp(name, Z, A, G)


def whh_untransposed(ops, block, P):
    return lambda A: A if A is P.get("Whh") else ops.T(A)


MUTANTS = [
    ("conv2d", conv_kernel_not_rotated, "input"),
    ("conv2d", conv_stride_not_dilated, "input"),
    ("conv2d", slipped("conv2d", activation_vjp=lambda ops, block, P: lambda name, Z, A, G: G), "partial"),
    ("maxpool2d", slipped("maxpool2d", mul=lambda ops, block, P: lambda mask, G: G), "input"),
    ("avgpool2d", slipped("avgpool2d", ratio=lambda ops, block, P: lambda p, n: p), "input"),
    ("attention", slipped("attention", scale=lambda ops, block, P: lambda c, A: A), "partial"),
    ("attention", slipped("attention", activation_vjp=softmax_without_rowsum), "partial"),
    ("rnn", slipped("rnn", activation_vjp=lambda ops, block, P: lambda name, Z, A, G: G), "partial"),
    ("rnn", slipped("rnn", T=whh_untransposed), "partial"),
]
MUTANT_SPECS = {
    "conv2d": ([1, 5, 5], [conv(2, 3, stride=2, padding=1, activation="tanh"), FLAT]),
    "maxpool2d": ([1, 4, 4], [{"kind": "maxpool2d", "kernel_size": 2}, FLAT]),
    "avgpool2d": ([1, 4, 4], [{"kind": "avgpool2d", "kernel_size": 2}, FLAT]),
    "attention": ([3, 2], [{"kind": "attention"}, FLAT]),
    "rnn": ([3, 2], [{"kind": "rnn", "hidden_size": 2}]),
}


@pytest.mark.parametrize("kind,mutant,wrong", MUTANTS, ids=lambda v: getattr(v, "__name__", v))
def test_each_wrong_form_is_refused_with_a_witness(kind, mutant, wrong):
    inputs, layers = MUTANT_SPECS[kind]
    proof = prove_layers(spec_of(inputs, *layers), backward={kind: mutant}, forms={}, oracle=False)
    failed = [c for c in proof.checks if not c.proven]
    assert failed and not proof.ok and proof.exit_code == 1
    assert {c.block for c in failed} == {kind} and any(c.kind == wrong for c in failed)
    witness = next(c for c in failed if c.kind == wrong and c.counterexample is not None)
    assert witness.verdict == Verdict.REFUTED
    assert abs(witness.counterexample.lhs - witness.counterexample.rhs) > 1e-9 and witness.counterexample.values
