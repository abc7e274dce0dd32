"""Modules generated for layer-list specs (codegen/layers.py): gradients against three oracles, stability, determinism.

The oracles are those of the dense modules (tests/oracles.py), written here for layer lists, each
independent of derive.tables.layers and of the tracer: (1) SymPy composes the cost from the layers'
definitions written plainly (mean, variance, (x - μ)/sqrt(σ² + ε)) and differentiates it exactly, then
lambdifies the partials; (2) central finite differences of the module's own cost; (3) HIPS autograd on
the same plain forward pass. The same plain forward runs on NumPy object arrays of SymPy expressions
and on autograd's arrays.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import warnings
from fractions import Fraction
from pathlib import Path

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
import symengine as se
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.layer_module import generate_layers, load_layers
from codegen.layers import layer_examples, trace_module
from derive.errors import DeriveError
from derive.spec import load_spec, validate
from derive.tables.costs import COSTS
from tests.conftest import gpu_reason
from tests.oracles import fd_gradients, plain_spatial

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [Path(p).stem for p in layer_examples()]


def example(name: str):
    return load_spec(f"examples/specs/{name}.toml")


def checked_in(name: str, backend: str = "numpy"):
    return importlib.import_module(f"generated.{name}_{backend}")


# ---------------------------------------------------------------------------
# the plain forward pass, on any array library
# ---------------------------------------------------------------------------

T = se.Symbol("t")  # the one symbol of the symbolic oracle: a parameter entry is θ + t


class SymbolicLib:
    """Elementwise functions on NumPy object arrays of SymEngine expressions (SymPy's C++ core: the same
    exact differentiation, fast enough to compose a batch-norm network's cost once per parameter entry)."""

    exp, tanh, sqrt, log = (np.vectorize(f, otypes=[object]) for f in (se.exp, se.tanh, se.sqrt, se.log))
    # max(0, z) is z or 0 on a neighbourhood of t = 0 (no drawn z sits on the kink): that piece, exactly
    relu = np.vectorize(lambda z: z if float(z.subs({T: 0})) > 0 else 0 * z, otypes=[object])
    leaky = np.vectorize(lambda z: z if float(z.subs({T: 0})) > 0 else z / 100, otypes=[object])

    @staticmethod
    def rational(q: Fraction):
        return se.Rational(q.numerator, q.denominator)

    # shaped layers (tests/oracles.plain_spatial)
    matmul, concatenate, swapaxes = np.matmul, np.concatenate, np.swapaxes

    @staticmethod
    def zeros(shape):
        return np.full(shape, se.Integer(0), dtype=object)

    @staticmethod
    def root(n: int):
        return se.sqrt(se.Integer(n))

    @staticmethod
    def window_max(pieces):
        """The max over the windows' entries: the piece that is largest at t = 0 (the first where they tie)."""
        stacked = np.stack(pieces)
        values = np.vectorize(lambda z: float(se.sympify(z).subs({T: 0})), otypes=[float])(stacked)
        return np.take_along_axis(stacked, values.argmax(axis=0)[None], 0)[0]


class AutogradLib:
    exp, tanh, sqrt, log = anp.exp, anp.tanh, anp.sqrt, anp.log
    matmul, concatenate, swapaxes, zeros = anp.matmul, anp.concatenate, anp.swapaxes, anp.zeros

    @staticmethod
    def root(n: int):
        return float(np.sqrt(n))

    @staticmethod
    def window_max(pieces):
        return anp.max(anp.stack(pieces), axis=0)

    @staticmethod
    def relu(z):
        return anp.maximum(z, 0.0)

    @staticmethod
    def leaky(z):
        return anp.maximum(z, z / 100)

    @staticmethod
    def rational(q: Fraction):
        return float(q)


def act(lib, name, z):
    if name == "sigmoid":
        return 1 / (1 + lib.exp(-z))
    if name == "tanh":
        return lib.tanh(z)
    if name == "relu":
        return lib.relu(z)
    if name == "leaky_relu":
        return lib.leaky(z)
    if name == "softplus":
        return lib.log(1 + lib.exp(z))
    if name == "softmax":
        e = lib.exp(z)
        return e / e.sum(axis=1, keepdims=True)
    assert name == "identity", name
    return z


PARAM_NAMES = ("W", "b", "gamma", "beta", "Wq", "Wk", "Wv", "Wo", "Wxh", "Whh")
SHAPED = ("conv2d", "conv1d", "maxpool2d", "avgpool2d", "flatten", "attention", "rnn")  # tests/oracles.plain_spatial


def plain_output(spec, P, x, lib):
    """The layer list's output, each kind written as a textbook states its forward pass."""
    row = spec.convention == "row"

    def run(blocks, a):
        for b in blocks:
            own = {k[: -len(str(b.position))]: v for k, v in P.items() if k.endswith(str(b.position))
                   and k[: -len(str(b.position))] in PARAM_NAMES}
            own = {k: (v if row else v.T) for k, v in own.items()}
            if b.kind in SHAPED:
                a = plain_spatial(b, own, a, lib, lambda name, z: act(lib, name, z))
            elif b.kind == "dense":
                z = a @ own["W"]
                a = act(lib, b.activation, z + own["b"] if b.bias == "separate" else z)
            elif b.kind == "activation":
                a = act(lib, b.activation, a)
            elif b.kind in ("batchnorm", "layernorm"):
                axis = 0 if b.kind == "batchnorm" else 1  # over the examples, or over the features
                n = a.shape[axis]
                mu = a.sum(axis=axis, keepdims=True) / n
                var = ((a - mu) ** 2).sum(axis=axis, keepdims=True) / n
                a = (a - mu) / lib.sqrt(var + lib.rational(b.eps))
                if b.affine:
                    a = a * own["gamma"] + own["beta"]
            else:
                a = a + run(b.inner, a)
        return a
    return run(spec.layers, x)


def plain_cost(spec, a, y, lib):
    if spec.cost == "quadratic":
        total = (((a - y) ** 2) / 2).sum()
    elif spec.cost == "cross_entropy":
        total = -(y * lib.log(a) + (1 - y) * lib.log(1 - a)).sum()
    else:
        total = -(y * lib.log(a)).sum()
    return total / a.shape[0] if spec.batch == "mean" else total


def symbolic_gradients(spec, params, x, y):
    """(1) exact differentiation of the composed cost, one parameter entry at a time: that entry is θ + t,
    every other number a float, the cost composed from the plain definitions as an expression in t,
    differentiated exactly (SymEngine's diff) and read at t = 0."""
    t = T
    X, Y = (np.vectorize(se.RealDouble, otypes=[object])(a) for a in (x, y))
    base = {k: np.vectorize(se.RealDouble, otypes=[object])(v) for k, v in params.items()}
    out = {}
    for k, value in params.items():
        g = np.zeros(value.shape)
        for i in np.ndindex(value.shape):
            P = dict(base)
            P[k] = base[k].copy()
            P[k][i] = P[k][i] + t
            C = plain_cost(spec, plain_output(spec, P, X, SymbolicLib), Y, SymbolicLib)
            g[i] = float(C.diff(t).subs({t: 0}))
        out[k] = g
    return out


def autograd_gradients(spec, params, x, y):
    """(3) autograd on the plain forward pass."""
    return autograd.grad(lambda p: plain_cost(spec, plain_output(spec, p, x, AutogradLib), y, AutogradLib))(params)


def data(spec, module, B: int, seed: int):
    """Parameters near their start (gamma near 1), inputs and targets that suit the cost."""
    rng = np.random.default_rng(seed)
    params = {k: v + 0.4 * rng.standard_normal(v.shape) for k, v in module.init_params(seed).items()}
    x = rng.standard_normal((B, spec.inputs))
    n = spec.outputs
    y = np.eye(n)[rng.integers(0, n, B)] if COSTS[spec.cost].one_hot else rng.uniform(0.05, 0.95, (B, n))
    return params, x, y


def three_oracles(spec, module, B: int = 3, seed: int = 0):
    params, x, y = data(spec, module, B, seed)
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    assert list(grads) == list(module.PARAM_SHAPES)
    for k, g in grads.items():
        assert g.shape == params[k].shape and g.dtype == params[k].dtype, k
    for what, want, rtol, atol in (("symbolic", symbolic_gradients(spec, params, x, y), 1e-9, 1e-12),
                                   ("finite differences", fd_gradients(module, params, x, y, through_cache=True), 1e-5, 1e-8),
                                   ("autograd", autograd_gradients(spec, params, x, y), 1e-9, 1e-12)):
        for k in params:
            np.testing.assert_allclose(grads[k], want[k], rtol=rtol, atol=atol, err_msg=f"{what}: {k}")


# ---------------------------------------------------------------------------
# the three oracles
# ---------------------------------------------------------------------------

def test_the_examples_are_generated_and_checked_in():
    assert EXAMPLES == ["attention", "bn_mlp", "cnn", "ln_mlp", "residual_mlp", "rnn"]
    for name in EXAMPLES:
        for fname, text in generate_layers(example(name), ["numpy", "cupy"]).items():
            assert (ROOT / "generated" / fname).read_text(encoding="utf-8") == text, f"{fname} is stale: python -m codegen"


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_against_three_oracles(name):
    spec = example(name)
    three_oracles(spec, checked_in(name), B=spec.examples)


def dense(width, activation="identity", **kw):
    return {"kind": "dense", "width": width, "activation": activation, **kw}


HIDDEN = ("identity", "tanh", "relu", "leaky_relu", "sigmoid", "softplus")


@st.composite
def layer_lists(draw):
    """A small layer list: dense layers of width 2-3, batch and layer norms, activation layers, a residual block."""
    width = draw(st.integers(2, 3))
    convention = draw(st.sampled_from(["row", "column"]))
    kinds = draw(st.lists(st.sampled_from(["batchnorm", "layernorm", "activation", "residual", "dense"]),
                          min_size=1, max_size=3))
    layers = [dense(width, draw(st.sampled_from(HIDDEN)))]
    for kind in kinds:
        if kind in ("batchnorm", "layernorm"):
            layers.append({"kind": kind, "eps": draw(st.sampled_from(["1/100", "1e-5"])), "affine": draw(st.booleans())})
        elif kind == "activation":
            layers.append({"kind": kind, "activation": draw(st.sampled_from(HIDDEN))})
        elif kind == "residual":
            inner = [dense(width, draw(st.sampled_from(HIDDEN)), bias=draw(st.sampled_from(["separate", "none"])))]
            layers.append({"kind": "residual", "layers": inner + ([{"kind": "layernorm"}] if draw(st.booleans()) else [])})
        else:
            layers.append(dense(width, draw(st.sampled_from(HIDDEN))))
    output, cost = draw(st.sampled_from([("sigmoid", "cross_entropy"), ("softmax", "log_likelihood"),
                                         ("identity", "quadratic"), ("tanh", "quadratic")]))
    layers.append(dense(2, output))
    return validate(dict(name="drawn", inputs=draw(st.integers(1, 3)), layers=layers, cost=cost, convention=convention,
                         batch=draw(st.sampled_from(["mean", "sum"])), examples=3, notation="nielsen"), "drawn.toml")


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=layer_lists())
def test_drawn_layer_lists_against_three_oracles(spec, tmp_path):
    three_oracles(spec, load_layers(spec, tmp_path), B=3, seed=1)


def test_a_slip_in_a_generated_line_is_caught(tmp_path):
    """The oracles can fail: the batch norm's 1/B dropped from one line is refused."""
    spec = example("bn_mlp")
    text = (ROOT / "generated" / "bn_mlp_numpy.py").read_text().replace("delta1 = inv_B*", "delta1 = ", 1)
    (tmp_path / "slip.py").write_text(text)
    sys.path.insert(0, str(tmp_path))
    try:
        module = importlib.import_module("slip")
        with pytest.raises(AssertionError, match="delta1|W1"):
            three_oracles(spec, module, B=4)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slip", None)


# ---------------------------------------------------------------------------
# stability: no warning, finite values
# ---------------------------------------------------------------------------

def _quiet_pass(module, spec, x, y, state=None):
    """forward (training, then inference), backward and cost with every NumPy warning an error; all finite."""
    params = module.init_params(3, x.dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise", invalid="raise"):  # NumPy's warnings as errors (underflow, silent by default, stays so)
        warnings.simplefilter("error")
        out, cache = module.forward(params, x, state)
        grads = module.backward(params, cache, y)
        cost = module.cost(out, y, cache)
        inferred, none = module.forward(params, x, state or module.init_state(x.dtype), training=False)
    assert none is None and np.isfinite(cost)
    for value in [out, inferred, *grads.values()]:
        assert np.isfinite(value).all() and value.dtype == x.dtype
    return out, grads


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", EXAMPLES)
def test_inputs_of_1e4_are_quiet_and_finite(name, dtype):
    spec, module = example(name), checked_in(name)
    rng = np.random.default_rng(5)
    x = (1e4 * rng.choice([-1.0, 1.0], (6, spec.inputs))).astype(dtype)
    _, y = data(spec, module, 6, 5)[1:]
    _quiet_pass(module, spec, x, y.astype(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", EXAMPLES)
def test_a_constant_batch_is_quiet_and_finite(name, dtype):
    """Every row the same: the batch variance is 0 (or rounding's), and eps keeps 1/sqrt(var + eps) finite."""
    spec, module = example(name), checked_in(name)
    x = np.tile(np.linspace(-2, 3, spec.inputs), (5, 1)).astype(dtype)
    _, y = data(spec, module, 5, 2)[1:]
    out, grads = _quiet_pass(module, spec, x, y.astype(dtype), module.init_state(dtype))
    if any(b.kind == "batchnorm" for b in spec.blocks):  # what follows the batch norm sees one row five times
        assert np.allclose(out, out[0], rtol=1e-4)


def test_one_example_trains_without_a_state_and_refuses_to_update_one():
    """At B = 1 the batch variance is 0 and x̂ = 0: finite, as proven; a running variance needs 2 rows."""
    module = checked_in("bn_mlp")
    params = module.init_params(0)
    x, y = np.ones((1, 3)), np.full((1, 2), 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = module.forward(params, x)
        assert all(np.isfinite(g).all() for g in module.backward(params, cache, y).values())
    with pytest.raises(ValueError, match="x: 1 row with a state to update; the running variance needs 2 or more"):
        module.forward(params, x, module.init_state())


# ---------------------------------------------------------------------------
# inference: running statistics in PyTorch's convention
# ---------------------------------------------------------------------------

def test_running_statistics_follow_torch_batchnorm1d(tmp_path):
    """Batch norm on x itself: after the same batches the state equals torch.nn.BatchNorm1d's running buffers,
    and forward(training=False) equals its eval mode."""
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install '.[torch]')")
    spec = validate(dict(name="bn_first", inputs=4, cost="quadratic", convention="row", batch="mean", examples=2,
                         notation="nielsen", layers=[{"kind": "batchnorm", "eps": "1e-5"}, dense(4)]), "bn_first.toml")
    trace = trace_module(spec)
    assert [key for key, _, _ in trace.running] == ["running_mean1", "running_var1"]
    module = load_layers(spec, tmp_path)
    params = module.init_params(0)
    params["W2"][...] = np.eye(4)  # the output is the batch norm's
    rng = np.random.default_rng(0)
    bn = torch.nn.BatchNorm1d(4, eps=1e-5, momentum=0.1).double()
    state = module.init_state()
    for B in (5, 2, 9):
        x = 3 + 2 * rng.standard_normal((B, 4))
        out, _ = module.forward(params, x, state)
        np.testing.assert_allclose(out, bn(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state["running_mean1"][0], bn.running_mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(state["running_var1"][0], bn.running_var.numpy(), rtol=1e-13)
    bn.eval()
    x = rng.standard_normal((3, 4))
    out, cache = module.forward(params, x, state, training=False)
    assert cache is None
    np.testing.assert_allclose(out, bn(torch.from_numpy(x)).detach().numpy(), rtol=1e-12, atol=1e-12)


def test_inference_needs_the_state_and_backward_a_training_cache():
    module = checked_in("bn_mlp")
    params, x = module.init_params(0), np.ones((4, 3))
    with pytest.raises(ValueError, match=r"state: NoneType, expected the dict init_state\(\) returned with keys"):
        module.forward(params, x, training=False)
    out, cache = module.forward(params, x, module.init_state(), training=False)
    with pytest.raises(ValueError, match=r"cache: NoneType, expected the cache forward returned \(forward with training=True\)"):
        module.backward(params, cache, np.zeros((4, 2)))
    ln = checked_in("ln_mlp")  # no batch statistics: no state to give
    assert ln.init_state() == {} and ln.forward(ln.init_params(0), np.ones((2, 4)), training=False)[1] is None


# ---------------------------------------------------------------------------
# determinism, the interface, CuPy
# ---------------------------------------------------------------------------

def test_generation_is_deterministic_and_reads_like_the_table():
    spec = example("bn_mlp")
    first, second = generate_layers(spec, ["numpy", "cupy"]), generate_layers(spec, ["numpy", "cupy"])
    assert first == second and list(first) == ["bn_mlp_numpy.py", "bn_mlp_cupy.py"]
    text = first["bn_mlp_numpy.py"]
    assert text.startswith("# Generated by `python -m codegen examples/specs/bn_mlp.toml` from examples/specs/bn_mlp.toml. Do not edit.")
    for line in ("s2 = 1/numpy.sqrt(var2 + 1/100)", "xhat2 = s2*xc2", "delta1 = inv_B*s2*(B*dxhat2 - ",
                 "dC_dgamma2 = ", "The consolidated form: ∂C/∂x = (s/n)(n ∂C/∂x̂ − Σ ∂C/∂x̂ − x̂ ∘ Σ(∂C/∂x̂ ∘ x̂))"):
        assert line in text, line
    assert "import sympy" not in text and "derive" not in text.split('"""', 2)[2]
    with pytest.raises(DeriveError, match="a layer list is printed for numpy, cupy only, not torch"):
        generate_layers(spec, ["torch"])


@pytest.mark.parametrize("name", EXAMPLES)
def test_interface_and_sgd_step(name):
    module = checked_in(name)
    params = module.init_params(1, np.float32)
    assert list(params) == list(module.PARAM_SHAPES) and all(v.dtype == np.float32 for v in params.values())
    assert all(np.all(v == 1) for k, v in params.items() if k.startswith("gamma"))
    before = {k: v.copy() for k, v in params.items()}
    grads = {k: np.ones_like(v) for k, v in params.items()}
    module.sgd_step(params, grads, 0.5)
    assert all(np.allclose(params[k], before[k] - 0.5) for k in params)
    with pytest.raises(ValueError, match=r"x: shape \(2, 7\), expected \(B, "):
        module.forward(params, np.ones((2, 7), np.float32))


def _cupy_module(name, cupy):
    """generated/<name>_cupy.py imported against the given `cupy`."""
    path = ROOT / "generated" / f"{name}_cupy.py"
    spec = importlib.util.spec_from_file_location(f"_layers_{name}_cupy", path)
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = cupy
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("cupy")
        else:
            sys.modules["cupy"] = saved
    return module


def _same_as_numpy(name, cupy, to_device, to_host, B):
    ref, mod = checked_in(name), _cupy_module(name, cupy)
    spec = example(name)
    params, x, y = data(spec, ref, B, 4)
    state, dstate = ref.init_state(), mod.init_state()
    out, cache = ref.forward(params, x, state)
    grads = ref.backward(params, cache, y)
    dparams = {k: to_device(v) for k, v in params.items()}
    dout, dcache = mod.forward(dparams, to_device(x), dstate)
    dgrads = mod.backward(dparams, dcache, to_device(y))
    np.testing.assert_allclose(to_host(dout), out, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(to_host(dgrads[k]), grads[k], rtol=1e-12, atol=1e-14, err_msg=k)
    for k in state:
        np.testing.assert_allclose(to_host(dstate[k]), state[k], rtol=1e-12, err_msg=k)
    assert abs(mod.cost(dout, to_device(y), dcache) - ref.cost(out, y, cache)) <= 1e-12 * (1 + abs(ref.cost(out, y)))


@pytest.mark.parametrize("name", EXAMPLES)
def test_cupy_module_on_the_cpu_equals_numpy(name):
    """The CuPy module run against a stand-in `cupy` (NumPy's namespace, tests/cuda_cpu): no kernels to compile,
    every line is a CuPy array call, so it runs on the CPU as written."""
    sys.path.insert(0, str(ROOT / "tests"))
    import cuda_cpu

    _same_as_numpy(name, cuda_cpu.cupy_module(), np.asarray, np.asarray, 6)


@pytest.mark.gpu
@pytest.mark.skipif(gpu_reason() is not None, reason=gpu_reason() or "")
@pytest.mark.parametrize("name", EXAMPLES)
def test_cupy_equals_numpy_on_the_gpu(name):
    import cupy

    _same_as_numpy(name, cupy, cupy.asarray, cupy.asnumpy, 64)


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------

def test_digits_with_batch_norm_and_a_residual_block_reach_97_percent(tmp_path):
    """examples/digits_bn.toml, as examples/train_digits_bn.py trains it: 20 epochs, batch 16, eta 0.1 annealed."""
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install '.[demo]')")
    from codegen.train import load_digits, train

    spec = load_spec(str(ROOT / "examples" / "digits_bn.toml"))
    module = load_layers(spec, tmp_path)
    params, state = module.init_params(0), module.init_state()
    history = train(module, params, load_digits(0), 20, 16, 0.1, 0, state=state, anneal=True)
    assert history[-1][2] >= 0.97, history[-1]
