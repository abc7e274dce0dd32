"""Modules generated for convolution, pooling, attention and rnn layers, against PyTorch's own layers as a fourth oracle.

tests/test_codegen_layers.py checks every example (cnn, attention, rnn among them) against three oracles
(SymEngine's exact derivative, finite differences, autograd on a plain forward pass). Here the same
modules, and layer lists drawn around them (stride 2, padding, kernels that are not square, overlapping
and tied max-pool windows, a 1-D convolution, overlapping average pooling, every rnn output, an rnn into
attention, attention with and without its mask, W_o and head_dim), meet torch.nn.functional.conv2d/conv1d, max_pool2d/avg_pool2d,
scaled_dot_product_attention and torch.nn.RNN: the forward values and every parameter's gradient by
torch's autograd, in float64. The parameters are PyTorch's tensors in the spec's layout (the column
convention is torch's own; the row convention its transpose), which the modules' docstrings state.
"""

from __future__ import annotations

import importlib
from functools import cache

import numpy as np
import pytest

from codegen.index_maps import gather_plan, outer_form, scatter_plan
from codegen.layer_module import render_layers
from codegen.render import import_written
from derive.spec import load_spec, validate
from derive.tables import windows as win
from derive.tables.costs import COSTS
from tests.test_codegen_layers import three_oracles

torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]'): the fourth oracle is PyTorch")
F = torch.nn.functional

ACTIVATIONS = {"identity": lambda z: z, "relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid,
               "softmax": lambda z: torch.softmax(z, dim=1), "leaky_relu": lambda z: F.leaky_relu(z, 0.01),
               "softplus": F.softplus}


# ---------------------------------------------------------------------------
# the layer list in PyTorch
# ---------------------------------------------------------------------------

def torch_output(spec, P: dict, x):
    """The spec's output for a batch x (B, features) from torch's layers; P the parameters in the spec's layout."""
    column = spec.convention != "row"

    def weight(key):  # torch's (out, in) layout: the column convention's own, the row convention's transpose
        return P[key] if column else P[key].T

    def bias(key):
        return P[key].reshape(-1)

    a = x
    for b in spec.blocks:
        B, n = a.shape[0], b.position
        if b.kind in ("conv2d", "conv1d"):
            conv = F.conv2d if b.kind == "conv2d" else F.conv1d
            W = weight(f"W{n}").reshape((b.out_channels,) + b.shape_in[:1] + b.kernel_size)
            z = conv(a.reshape((B,) + b.shape_in), W, bias(f"b{n}") if b.bias == "separate" else None,
                     stride=b.stride, padding=b.padding)
            a = ACTIVATIONS[b.activation](z).flatten(1)
        elif b.kind in ("maxpool2d", "avgpool2d"):
            pool = F.max_pool2d if b.kind == "maxpool2d" else F.avg_pool2d
            a = pool(a.reshape((B,) + b.shape_in), b.kernel_size, b.stride).flatten(1)
        elif b.kind == "attention":
            X = a.reshape((B,) + b.shape_in)
            q, k, v = (X @ weight(f"{w}{n}").T for w in ("Wq", "Wk", "Wv"))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=b.causal)
            a = (o @ weight(f"Wo{n}").T if b.out_proj else o).flatten(1)
        elif b.kind == "rnn":
            T, d = b.shape_in
            rnn = torch.nn.RNN(d, b.hidden_size, nonlinearity=b.nonlinearity, batch_first=True,
                               bias=b.bias == "separate").double()
            weights = {"weight_ih_l0": weight(f"Wxh{n}"), "weight_hh_l0": weight(f"Whh{n}")}
            if b.bias == "separate":  # b = b_ih + b_hh: torch's b_hh held at 0
                weights.update(bias_ih_l0=bias(f"b{n}"), bias_hh_l0=torch.zeros(b.hidden_size, dtype=torch.float64))
            out, h = torch.func.functional_call(rnn, weights, (a.reshape(B, T, d),))
            a = out.flatten(1) if b.output == "all" else h[0]
        elif b.kind == "dense":
            z = a @ weight(f"W{n}").T + (bias(f"b{n}") if b.bias == "separate" else 0)
            a = ACTIVATIONS[b.activation](z)
        else:
            assert b.kind == "flatten", b.kind
    return a


def torch_cost(spec, a, y):
    if spec.cost == "quadratic":
        total = ((a - y) ** 2).sum() / 2
    elif spec.cost == "cross_entropy":
        total = -(y * a.log() + (1 - y) * (1 - a).log()).sum()
    else:
        total = -(y * a.log()).sum()
    return total / a.shape[0] if spec.batch == "mean" else total


def against_torch(spec, module, params, x, y):
    """forward's output and backward's gradients equal torch's forward and autograd's gradients."""
    out, cache_ = module.forward(params, x)
    grads = module.backward(params, cache_, y)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    a = torch_output(spec, P, torch.tensor(x))
    torch_cost(spec, a, torch.tensor(y)).backward()
    np.testing.assert_allclose(out, a.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg="forward")
    assert list(grads) == list(params)
    for k in params:
        np.testing.assert_allclose(grads[k], P[k].grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=f"torch: {k}")


def data(spec, module, B: int, seed: int):
    rng = np.random.default_rng(seed)
    params = {k: v + 0.3 * rng.standard_normal(v.shape) for k, v in module.init_params(seed).items()}
    x = rng.standard_normal((B, spec.inputs))
    n = spec.outputs
    y = np.eye(n)[rng.integers(0, n, B)] if COSTS[spec.cost].one_hot else rng.uniform(0.05, 0.95, (B, n))
    return params, x, y


# ---------------------------------------------------------------------------
# the examples and the drawn layer lists
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cnn", "attention", "rnn"])
def test_the_examples_equal_torch(name):
    spec = load_spec(f"examples/specs/{name}.toml")
    module = importlib.import_module(f"generated.{name}_numpy")
    for B, seed in ((1, 0), (4, 1)):
        against_torch(spec, module, *data(spec, module, B, seed))


def _spec(name, inputs, layers, cost="quadratic", convention="column", batch="mean"):
    return validate(dict(name=name, inputs=inputs, layers=layers, cost=cost, convention=convention, batch=batch,
                         examples=2, notation="nielsen"), f"{name}.toml")


def _dense(width, activation="sigmoid"):
    return {"kind": "dense", "width": width, "activation": activation}


# each a layer list a reader might write, drawn to cover one setting the examples leave out
DRAWN = {
    "conv_stride2_pad": (_spec("conv_stride2_pad", [2, 5, 5], [
        {"kind": "conv2d", "out_channels": 2, "kernel_size": 3, "stride": 2, "padding": 1, "activation": "tanh"},
        {"kind": "flatten"}, _dense(2)], convention="row"), 3),
    "conv_not_square": (_spec("conv_not_square", [1, 4, 5], [
        {"kind": "conv2d", "out_channels": 2, "kernel_size": [2, 3], "stride": [1, 2], "padding": [0, 1],
         "activation": "relu", "bias": "none"},
        {"kind": "avgpool2d", "kernel_size": [2, 1]}, {"kind": "flatten"}, _dense(3, "softmax")],
        cost="log_likelihood", batch="sum"), 3),
    "maxpool_overlapping": (_spec("maxpool_overlapping", [1, 4, 4], [
        {"kind": "conv2d", "out_channels": 2, "kernel_size": 2, "padding": 1, "activation": "identity"},
        {"kind": "maxpool2d", "kernel_size": 3, "stride": 1}, {"kind": "flatten"}, _dense(2, "identity")]), 3),
    "conv1d": (_spec("conv1d", [2, 6], [
        {"kind": "conv1d", "out_channels": 3, "kernel_size": 3, "stride": 2, "padding": 1, "activation": "sigmoid"},
        {"kind": "flatten"}, _dense(2)], convention="row"), 3),
    "attention_plain": (_spec("attention_plain", [3, 2], [
        {"kind": "attention", "head_dim": 3}, {"kind": "flatten"}, _dense(2)]), 3),
    "attention_causal_row": (_spec("attention_causal_row", [4, 2], [
        {"kind": "attention", "causal": True, "head_dim": 3, "out_proj": True}, {"kind": "flatten"},
        _dense(2, "softmax")], cost="log_likelihood", convention="row"), 2),
    "rnn_all_relu": (_spec("rnn_all_relu", [3, 2], [
        {"kind": "rnn", "hidden_size": 2, "nonlinearity": "relu", "output": "all"}, {"kind": "flatten"}, _dense(2)],
        convention="row"), 3),
    "rnn_one_step": (_spec("rnn_one_step", [1, 2], [
        {"kind": "rnn", "hidden_size": 2, "bias": "none"}, _dense(2, "tanh")]), 3),
    "conv_avgpool_overlapping_conv": (_spec("conv_avgpool_overlapping_conv", [2, 6, 5], [
        {"kind": "conv2d", "out_channels": 3, "kernel_size": [3, 2], "stride": [2, 1], "padding": [1, 0],
         "activation": "leaky_relu"},
        {"kind": "avgpool2d", "kernel_size": 2, "stride": 1},
        {"kind": "conv2d", "out_channels": 2, "kernel_size": 2, "activation": "softplus"}, {"kind": "flatten"},
        _dense(2)]), 3),
    "rnn_into_attention": (_spec("rnn_into_attention", [4, 3], [
        {"kind": "rnn", "hidden_size": 3, "output": "all"}, {"kind": "attention", "causal": True}, {"kind": "flatten"},
        _dense(2)]), 3),
}


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Each drawn spec's NumPy module, printed once. The proof codegen runs before printing (prove_layer_forms)
    is left out: the tests of derive prove every kind (tests/test_spatial.py), and an overlapping 3×3 max pool's proof alone takes
    minutes; the module printed is render_layers' text, the one generate_layers writes once proven."""
    folder = tmp_path_factory.mktemp("spatial")

    @cache
    def load(name):
        return import_written({f"{name}_numpy.py": render_layers(DRAWN[name][0], "numpy")}, folder, f"{name}_numpy")
    return load


@pytest.mark.parametrize("name", list(DRAWN))
def test_drawn_layer_lists_equal_torch(name, modules):
    spec, B = DRAWN[name]
    module = modules(name)
    against_torch(spec, module, *data(spec, module, B, 3))


@pytest.mark.parametrize("name", ["conv_stride2_pad", "maxpool_overlapping", "attention_causal_row", "rnn_all_relu"])
def test_drawn_layer_lists_against_three_oracles(name, modules):
    spec, B = DRAWN[name]
    three_oracles(spec, modules(name), B=B, seed=2)


MIXED = {  # shaped kinds beside the earlier ones: torch has no layer list of these, the three oracles do
    # the convolution's upstream gradient is then an expression (the batch norm's), not a named array
    "conv_bn": _spec("conv_bn", [1, 4, 4], [{"kind": "conv2d", "out_channels": 2, "kernel_size": 2, "activation": "relu"},
                                            {"kind": "flatten"}, {"kind": "batchnorm"}, _dense(2)]),
    "residual_conv": _spec("residual_conv", [2, 4, 4], [{"kind": "residual", "layers": [
        {"kind": "conv2d", "out_channels": 2, "kernel_size": 3, "padding": 1, "activation": "tanh"}]},
        {"kind": "flatten"}, _dense(2)]),
    "residual_attention": _spec("residual_attention", [3, 2], [{"kind": "residual", "layers": [
        {"kind": "attention", "causal": True}]}, {"kind": "flatten"}, _dense(2)], convention="row"),
    "activation_pool": _spec("activation_pool", [1, 4, 4], [{"kind": "activation", "activation": "tanh"},
                                                            {"kind": "maxpool2d", "kernel_size": 2}, {"kind": "flatten"},
                                                            _dense(2)]),
}


@pytest.mark.parametrize("name", list(MIXED))
def test_shaped_kinds_among_the_others_against_three_oracles(name, tmp_path):
    spec = MIXED[name]
    module = import_written({f"{name}_numpy.py": render_layers(spec, "numpy")}, tmp_path, f"{name}_numpy")
    three_oracles(spec, module, B=3, seed=4)


def _tied(spec, module, seed):
    """Integer parameters and inputs: through the identity 2×2 convolution many windows' maximum is held by several
    entries."""
    params, x, y = data(spec, module, 4, seed)
    return {k: np.rint(2 * v) for k, v in params.items()}, np.rint(x), y


def test_max_pool_ties_go_to_the_first_arg_max_as_in_torch(modules, monkeypatch):
    """At a tie the gradient goes to the first arg-max in the window's row-major order, torch's choice."""
    spec, _ = DRAWN["maxpool_overlapping"]
    module = modules("maxpool_overlapping")
    ties, first_max = [], module._first_max
    monkeypatch.setattr(module, "_first_max",
                        lambda a, top: ties.append(int(((a == top).sum(axis=1) > 1).sum())) or first_max(a, top))
    params, x, y = _tied(spec, module, 7)
    against_torch(spec, module, params, x, y)
    assert ties[0] > 0, "the draw has no tied window: it tests nothing"


def test_a_wrong_routing_is_caught_by_torch(modules, monkeypatch):
    """The fourth oracle can fail: a max pool that routes the gradient to every tied entry is refused."""
    spec, _ = DRAWN["maxpool_overlapping"]
    module = modules("maxpool_overlapping")
    monkeypatch.setattr(module, "_first_max", lambda a, top: (a == top).astype(a.dtype))
    with pytest.raises(AssertionError, match="torch: W1"):
        against_torch(spec, module, *_tied(spec, module, 7))


# ---------------------------------------------------------------------------
# the index maps as code
# ---------------------------------------------------------------------------

def test_each_index_map_is_printed_as_its_cheapest_step():
    """A run of columns is a slice, a grid's transpose a reshape, a spread a repeat, windows a take of a constant
    (with the padding read from an appended zero column); a scatter a gather by the inverse map."""
    assert gather_plan(win.columns(2, 4), 6).how == "slice"
    assert gather_plan(win.channels_last(3, 4), 12).args == (4, 3)
    assert gather_plan(win.repeat(5, 4), 5).args == (4,)
    padded = gather_plan(win.windows(1, (4, 4), (3, 3), (1, 1), (1, 1)), 16)
    assert padded.how == "take" and padded.padded
    pooled = win.windows(2, (4, 4), (3, 3), (1, 1), (0, 0), channel_major=True)
    plan = scatter_plan(pooled, 32)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, len(pooled)))
    want = np.zeros((3, 32))
    np.add.at(want, (slice(None), np.array(pooled)), a)  # the adjoint, the slow way
    inverse = np.array(plan.constant).reshape(plan.args)
    got = np.concatenate([a, np.zeros((3, 1))], axis=1)[:, inverse].sum(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-14)
    assert plan.summed and plan.args == (4, 32)  # a corner of an overlapping 3×3 pool is in one window, the centre in 4


def test_a_window_map_prints_as_its_outer_sum_and_reads_back(modules):
    """im2col with padding: each window's offsets shifted by its position, the padding a bitmap of holes, decoded
    by the module's own _outer to the very map; a map with no such form stays a literal."""
    module = modules("conv_stride2_pad")
    index = win.windows(2, (5, 5), (3, 3), (2, 2), (1, 1))
    base, window, holes = outer_form(index)
    assert len(base) + len(window) < len(index) // 4 and holes
    np.testing.assert_array_equal(module._outer(base, window, holes), index)
    assert outer_form(tuple(np.random.default_rng(0).permutation(40))) is None


@pytest.mark.parametrize("name", ["cnn", "attention", "rnn"])
def test_every_weight_matrix_starts_drawn_with_its_fan_in(name):
    """Wq = Wk = 0 would keep Q Kᵀ's gradients at 0 forever: every weight starts from N(0, 1/fan_in), fan_in the
    rows x W reads (a kernel's C·kh·kw, attention's d, an rnn's d and H), biases at 0."""
    module = importlib.import_module(f"generated.{name}_numpy")
    params = module.init_params(0)
    column = load_spec(f"examples/specs/{name}.toml").convention != "row"
    for key, value in params.items():
        if key.startswith("W"):
            fan_in = value.shape[1] if column else value.shape[0]
            assert module._INIT[key] == ("normal", fan_in), key
            assert np.all(value != 0), key
        else:
            assert np.all(value == 0), key


# ---------------------------------------------------------------------------
# the buffers a NumPy module keeps between calls (codegen/backends.py: Backend.scratch)
# ---------------------------------------------------------------------------

def _one_call(module, params, x, y):
    out, cache_ = module.forward(params, x)
    return out, cache_, module.backward(params, cache_, y)


def _assert_same(a, b, what):
    if isinstance(a, dict):
        assert list(a) == list(b), what
        for k in a:
            _assert_same(a[k], b[k], f"{what}[{k!r}]")
    else:
        np.testing.assert_array_equal(a, b, err_msg=what)


@pytest.mark.parametrize("name", list(DRAWN))
def test_a_later_call_leaves_what_an_earlier_call_returned_as_it_was(name, modules):
    """The takes a function keeps to itself write into buffers kept between calls; the output, the cache and the
    gradients of a call (and every view of them) are never one of those buffers: a second call, with other data,
    in training and at inference, leaves the first call's arrays as they were, and backward of the first cache
    still gives the first gradients."""
    spec, B = DRAWN[name]
    module = modules(name)
    params, x, y = data(spec, module, B, 4)
    _, x2, y2 = data(spec, module, B, 5)
    first = _one_call(module, params, x, y)
    kept = [first[0].copy()] + [{k: v.copy() for k, v in d.items()} for d in first[1:]]
    _one_call(module, params, x2, y2)
    module.forward(params, x2, training=False)
    for got, want, what in zip(first, kept, ("output", "cache", "gradients")):
        _assert_same(got, want, what)
    _assert_same(module.backward(params, first[1], y), kept[2], "backward of the first cache")


def test_the_kept_buffers_are_the_numpy_modules_own_and_each_threads_own(modules):
    """The digits-sized CNN writes its windows through _take (CuPy's memory pool keeps its blocks: no _take there);
    two threads running the same module at once each get their own serial results."""
    import threading

    spec = load_spec("examples/specs/cnn.toml")
    module = importlib.import_module("generated.cnn_numpy")
    assert "_take" in module.backward.__code__.co_names
    with open("generated/cnn_cupy.py", encoding="utf-8") as f:
        assert "_take(" not in f.read()
    draws = [data(spec, module, 8, seed) for seed in (11, 12)]
    want = [_one_call(module, *draw)[2] for draw in draws]
    failures = []

    def run(k):
        for _ in range(200):
            got = _one_call(module, *draws[k])[2]
            for key in got:
                if not np.array_equal(got[key], want[k][key]):
                    failures.append((k, key))
                    return

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
