"""The JAX modules (generated/<spec>_jax.py): pure and jit-compatible, the NumPy module's numbers, the
three oracles, jax.grad of their own forward pass, and a custom_vjp carrying the proven backward."""

from __future__ import annotations

import importlib
import itertools

import numpy as np
import pytest

from codegen import load_generated
from derive.spec import builtin_names, load_spec, validate
from tests.oracles import ThroughNumPy, data, three_oracles

jax = pytest.importorskip("jax", reason="JAX is not installed: pip install -e '.[jax]'")
jnp = pytest.importorskip("jax.numpy")
from jax.test_util import check_grads  # noqa: E402

NAMES = sorted(builtin_names())
_folders = itertools.count()


@pytest.fixture(autouse=True, scope="module")
def x64():
    """float64 arrays, for this module's tests only: JAX makes float32 unless jax_enable_x64 is set."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def modules(name):
    return importlib.import_module(f"generated.{name}_numpy"), importlib.import_module(f"generated.{name}_jax")


def arrays(values: dict) -> dict:
    return {k: jnp.asarray(v) for k, v in values.items()}


def batch(spec) -> int:
    return 1 if spec.batch == "single" else 5


def close(got: dict, want: dict, rtol, what):
    assert set(got) == set(want), what
    for key, value in want.items():
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(value), rtol=rtol, atol=rtol, err_msg=f"{what}: {key}")


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize("name", NAMES)
def test_the_jax_module_computes_what_the_numpy_module_computes(name, dtype, rtol):
    numpy_module, jax_module = modules(name)
    spec = load_spec(name)
    params, x, y = data(spec, batch(spec), np.random.default_rng(3), dtype)
    out, cache = numpy_module.forward(params, x)
    grads = numpy_module.backward(params, cache, y)
    j_out, j_cache = jax_module.forward(arrays(params), jnp.asarray(x))
    assert j_out.dtype == x.dtype
    close({"out": j_out}, {"out": out}, rtol, "forward")
    close(jax_module.backward(arrays(params), j_cache, jnp.asarray(y)), grads, rtol, "backward")
    assert float(jax_module.cost(j_out, jnp.asarray(y), j_cache)) == pytest.approx(numpy_module.cost(out, y, cache), rel=rtol)


@pytest.mark.parametrize("name", NAMES)
def test_jit_changes_no_number_and_the_proven_backward_is_jax_grad(name):
    """jax.jit of every function gives what it gives eagerly; jax.grad(loss) (the custom_vjp, the proven
    backward) equals backward and equals jax.grad of the module's own forward pass and cost, which JAX traces."""
    _, module = modules(name)
    spec = load_spec(name)
    params, x, y = (arrays(v) if isinstance(v, dict) else jnp.asarray(v)
                    for v in data(spec, batch(spec), np.random.default_rng(5)))
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    jit_out, jit_cache = jax.jit(module.forward)(params, x)
    close({"out": jit_out, **jit_cache}, {"out": out, **cache}, 1e-13, "jit(forward)")
    close(jax.jit(module.backward)(params, cache, y), grads, 1e-13, "jit(backward)")
    assert float(jax.jit(module.cost)(out, y, cache)) == pytest.approx(float(module.cost(out, y, cache)), rel=1e-13)
    close(jax.jit(module.sgd_step)(params, grads, 0.1), module.sgd_step(params, grads, 0.1), 1e-13, "jit(sgd_step)")
    close(jax.grad(module.loss)(params, x, y), grads, 1e-12, "grad(loss)")
    close(jax.jit(jax.grad(module.loss))(params, x, y), grads, 1e-12, "jit(grad(loss))")

    def traced(p):  # the same cost with JAX differentiating the forward pass itself, not the proven backward
        output, cache = module.forward(p, x)
        return module.cost(output, y, cache)

    close(jax.grad(traced)(params), grads, 1e-10, "jax.grad of forward and cost")


@pytest.mark.parametrize("name", NAMES)
def test_check_grads(name):
    _, module = modules(name)
    spec = load_spec(name)
    params, x, y = data(spec, batch(spec), np.random.default_rng(4))
    X, Y = jnp.asarray(x), jnp.asarray(y)
    # reverse mode: the custom_vjp's backward against finite differences of the cost along random directions
    check_grads(lambda p: module.loss(p, X, Y), (arrays(params),), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_three_oracles(name, tmp_path):
    spec = load_spec(name)
    if max(spec.sizes) > 8:  # the oracles differentiate every entry: nielsen at widths 5-4-3
        spec = spec.with_sizes((5, 4, 3))
        module = load_generated(spec, tmp_path, "jax")
    else:
        module = modules(name)[1]
    params, x, y = data(spec, 1 if spec.batch == "single" else 3, np.random.default_rng(8))
    three_oracles(ThroughNumPy(module, jnp.asarray), spec, params, x, y)


@pytest.mark.parametrize("spec_fields", [
    dict(sizes=[3, 4, 3], activation=["softplus", "softmax"], cost="log_likelihood", bias="augmented", batch="mean"),
    dict(sizes=[2, 3, 2], activation=["leaky_relu", "identity"], convention="row", batch="sum"),
    dict(sizes=[2, 3, 2], activation=["tanh", "sigmoid"], cost="cross_entropy", bias="none", batch="single"),
])
def test_other_activations_costs_and_layouts(spec_fields, tmp_path):
    """Helpers the built-in specs do not call (softplus, softmax, log_softmax, with_ones), maximum and
    heaviside, the cost through z: the oracles, and jit(grad(loss)) against them."""
    fields = dict(name="edge", cost="quadratic", convention="column", bias="separate", notation="net222")
    spec = validate({**fields, **spec_fields})
    folder = tmp_path / str(next(_folders))
    folder.mkdir()
    module = load_generated(spec, folder, "jax")
    params, x, y = data(spec, 1 if spec.batch == "single" else 3, np.random.default_rng(2))
    grads = three_oracles(ThroughNumPy(module, jnp.asarray), spec, params, x, y)
    close(jax.jit(jax.grad(module.loss))(arrays(params), jnp.asarray(x), jnp.asarray(y)), grads, 1e-12, "jit(grad(loss))")


def test_the_functions_are_pure():
    """sgd_step returns new params and leaves its arguments as they were; init_params draws what NumPy's does."""
    numpy_module, module = modules("nobias3")
    params = module.init_params(1)
    close(params, numpy_module.init_params(1), 0, "init_params")
    grads = {k: jnp.ones_like(v) for k, v in params.items()}
    before = {k: np.asarray(v).copy() for k, v in params.items()}
    new = module.sgd_step(params, grads, 0.25)
    close(params, before, 0, "params after sgd_step")
    close(new, {k: v - 0.25 for k, v in before.items()}, 1e-15, "sgd_step")
    bad = {**grads, "W3": grads["W3"].at[0, 0].set(jnp.nan)}
    with pytest.raises(ValueError, match=r"^grads\['W3'\]: contains NaN or inf"):
        module.sgd_step(params, bad, 0.25)


def test_bad_arguments_are_refused_with_their_names():
    module = modules("nobias3")[1]
    params = module.init_params(0)
    x = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"^x: a jax.Array of shape \(B, 3\) expected, got list$"):
        module.forward(params, [[0.0] * 3] * 2)
    with pytest.raises(ValueError, match=r"^params\['W1'\]: dtype float32 .* expected float64 like the data$"):
        module.forward({**params, "W1": params["W1"].astype(jnp.float32)}, x)
    with pytest.raises(ValueError, match=r"^x: shape \(2, 4\), expected \(B, 3\)"):
        jax.jit(module.forward)(params, jnp.zeros((2, 4)))  # shapes are checked under jit too
    with pytest.raises(ValueError, match=r"^x: contains NaN or inf"):
        module.forward(params, jnp.full((2, 3), jnp.nan))
    with pytest.raises(ValueError, match=r"^dtype: 'int8', expected numpy.float32 or numpy.float64$"):
        module.init_params(0, "int8")
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(ValueError, match=r"^dtype: float64 needs jax.config.update\('jax_enable_x64', True\)"):
            module.init_params(0)
        assert module.init_params(0, np.float32)["W1"].dtype == np.float32
    finally:
        jax.config.update("jax_enable_x64", True)


def test_one_backend_from_the_command_line(tmp_path):
    """`python -m codegen SPEC --backend jax` writes that module alone, the one generated/ holds."""
    from codegen.__main__ import main as codegen_main

    assert codegen_main(["nobias3", "--backend", "jax", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nobias3_jax.py"]
    with open(modules("nobias3")[1].__file__, encoding="utf-8") as checked_in:
        assert (tmp_path / "nobias3_jax.py").read_text(encoding="utf-8") == checked_in.read()
