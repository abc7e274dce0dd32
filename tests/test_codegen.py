"""Generated modules: three independent oracles, numerics, validation, determinism, the CLI.

Oracles for every gradient (tests/oracles.py): (1) SymPy composes the cost from the table
definitions, differentiates it exactly and lambdifies the partials (rtol 1e-10); (2) central
finite differences of the module's own cost; (3) HIPS autograd on the same math written
plainly. Built-in specs are tested as checked in and, where the widths are large, at
reduced widths; Hypothesis draws random specs.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import itertools
import os
import re
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen import BACKENDS, load_generated, make_plan, prove_forms
from codegen.__main__ import expected_files, write_all
from codegen.__main__ import main as codegen_main
from codegen.layers import layer_examples
from codegen.render import generate, literal, plain
from codegen.plan import helper_names
from codegen.render import param_shapes
from derive.errors import DeriveError
from derive.tables.activations import ACTIVATIONS, _softmax_def
from derive.tables.costs import COSTS
from derive.errors import SpecError
from derive.spec import builtin_names, load_spec, validate
from tests.oracles import (PLAIN_ACTIVATIONS, PLAIN_COSTS, assert_gradients, autograd_gradients, batch_of, data,
                           fd_gradients, sympy_gradients, three_oracles)

ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


# ---------------------------------------------------------------------------
# loading a module generated for any spec
# ---------------------------------------------------------------------------

def builtin(name: str, backend: str = "numpy"):
    return importlib.import_module(f"generated.{name}_{backend}")


def module_for(spec, tmp_path: Path, proof=None):
    """Generate the NumPy module of `spec` (from `proof` when given) into a fresh folder under tmp_path and import it.

    Hypothesis reuses one tmp_path for every example: each module gets its own folder."""
    folder = tmp_path / str(next(_counter))
    folder.mkdir()
    return load_generated(spec, folder, proof=proof)


def reduced(name: str):
    """The spec itself when it is small, else the same spec at widths 3-4-...-4-2."""
    spec = load_spec(name)
    if max(spec.sizes) <= 4:
        return spec
    return spec.with_sizes(tuple([3] + [4] * (spec.depth - 1) + [2]))


def reduced_module(name: str, tmp_path: Path):
    """The reduced spec and its module: the checked-in one where the spec is small, else generated."""
    spec = reduced(name)
    return spec, builtin(name) if spec.sizes == load_spec(name).sizes else module_for(spec, tmp_path)


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", builtin_names())
def test_builtin_three_oracles(name, tmp_path):
    """Every built-in spec: the checked-in module where it is small, else the same spec at small widths."""
    spec, module = reduced_module(name, tmp_path)
    rng = np.random.default_rng(7)
    params, x, y = data(spec, batch_of(spec, rng), rng)
    three_oracles(module, spec, params, x, y)


def test_nielsen_full_width_against_autograd_and_differences():
    """The checked-in 784-30-10 module: autograd for every entry, finite differences for a sample."""
    spec, module = load_spec("nielsen"), builtin("nielsen")
    rng = np.random.default_rng(3)
    params, x, y = data(spec, 5, rng, scale=0.1)
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    assert_gradients(grads, autograd_gradients(spec, params, x, y), 1e-10, 1e-15, "autograd")
    entries = {k: [tuple(int(rng.integers(0, s)) for s in v.shape) for _ in range(6)] for k, v in params.items()}
    assert_gradients(grads, fd_gradients(module, params, x, y, entries), 1e-5, 1e-9, "finite differences")


@st.composite
def random_specs(draw):
    depth = draw(st.integers(1, 3))
    sizes = draw(st.lists(st.integers(1, 3), min_size=depth + 1, max_size=depth + 1))
    cost = draw(st.sampled_from(sorted(COSTS)))
    elementwise = sorted(n for n, a in ACTIVATIONS.items() if a.elementwise)
    outputs = COSTS[cost].output_activations or sorted(ACTIVATIONS)
    out = draw(st.sampled_from(sorted(outputs)))
    if out == "softmax":
        sizes[-1] = max(2, sizes[-1])
    hidden = [draw(st.sampled_from(elementwise)) for _ in range(depth - 1)]
    table = dict(
        name=f"random{draw(st.integers(0, 10**6))}",
        sizes=sizes,
        activation=hidden + [out],
        cost=cost,
        convention=draw(st.sampled_from(["row", "column"])),
        bias=draw(st.sampled_from(["augmented", "separate", "none"])),
        batch=draw(st.sampled_from(["single", "mean", "sum"])),
        notation="net222",
    )
    return validate(table, "<hypothesis>")


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(spec=random_specs(), seed=st.integers(0, 2**31))
def test_random_specs_three_oracles(spec, seed, tmp_path):
    module = module_for(spec, tmp_path)
    rng = np.random.default_rng(seed)
    params, x, y = data(spec, batch_of(spec, rng), rng)
    three_oracles(module, spec, params, x, y)


def test_a_small_slip_in_one_entry_is_caught():
    """Move one gradient entry by 1e-9 of its size: below what finite differences resolve, and the
    exact oracle refuses it. Without the slip the same comparison passes."""
    spec, module = load_spec("net222"), builtin("net222")
    rng = np.random.default_rng(11)
    params, x, y = data(spec, 1, rng)
    grads = module.backward(params, module.forward(params, x)[1], y)
    exact = sympy_gradients(spec, params, x, y)
    assert_gradients(grads, exact, 1e-10, 1e-13, "sympy")
    slipped = {k: v.copy() for k, v in grads.items()}
    slipped["W1"][1, 0] *= 1 + 1e-9
    with pytest.raises(AssertionError, match="W1"):
        assert_gradients(slipped, exact, 1e-10, 1e-13, "sympy")
    assert_gradients(slipped, fd_gradients(module, params, x, y), 1e-5, 1e-8, "finite differences")


def test_plain_oracle_covers_the_tables():
    """A new activation or cost needs its plain autograd line here: the tests fail loudly without it."""
    assert set(PLAIN_ACTIVATIONS) == set(ACTIVATIONS)
    assert set(PLAIN_COSTS) == set(COSTS)


@pytest.mark.parametrize("name", builtin_names())
def test_float32_in_float32_out(name, tmp_path):
    spec, module = reduced_module(name, tmp_path)
    rng = np.random.default_rng(5)
    params, x, y = data(spec, batch_of(spec, rng), rng)
    out64, cache64 = module.forward(params, x)
    g64 = module.backward(params, cache64, y)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    out32, cache32 = module.forward(p32, x.astype(np.float32))
    g32 = module.backward(p32, cache32, y.astype(np.float32))
    assert out32.dtype == np.float32 and all(v.dtype == np.float32 for v in cache32.values())
    assert all(g.dtype == np.float32 for g in g32.values())
    np.testing.assert_allclose(out32, out64, rtol=1e-5, atol=1e-6)
    scale = max(np.abs(g).max() for g in g64.values())
    for k in g64:
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-4, atol=1e-5 * scale, err_msg=k)
    assert isinstance(module.cost(out32, y.astype(np.float32)), float)


# -- numerics ------------------------------------------------------------------

def _mp(f, z):
    with mpmath.workdps(50):
        return float(f(mpmath.mpf(float(z))))


HELPER_TRUTH = {
    "sigmoid": lambda z: 1 / (1 + mpmath.exp(-z)),
    "softplus": lambda z: mpmath.log1p(mpmath.exp(z)),
}


@pytest.mark.parametrize("name", sorted(HELPER_TRUTH))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_stable_helpers_match_the_definition(name, dtype):
    """The helpers against 50-digit mpmath on z up to ±1e4: no warning, relative error near eps."""
    module = builtin("nielsen")  # any module that defines the helper
    if not hasattr(module, name):
        module = module_for(_spec_with(name), Path(__import__("tempfile").mkdtemp()))
    z = np.concatenate([np.linspace(-30, 30, 121), [-1e4, -700, -80, -1, 0, 1, 80, 700, 1e4]]).astype(dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        got = getattr(module, name)(z)
    want = np.array([_mp(HELPER_TRUTH[name], v) for v in z])
    tiny = np.finfo(dtype).tiny
    assert got.dtype == dtype
    ok = np.isclose(got, want, rtol=8 * np.finfo(dtype).eps, atol=0) | ((want < 1e3 * tiny) & (got < 1e3 * tiny))
    assert ok.all(), list(zip(z[~ok], got[~ok], want[~ok]))


def _spec_with(helper_name):
    return validate(dict(name="h", sizes=[2, 2], activation=helper_name, cost="quadratic",
                         convention="row", bias="none", batch="sum", notation="net222"))


def _extreme_spec(output, cost, hidden="sigmoid"):
    return validate(dict(name=f"x_{output}_{cost}", sizes=[3, 4, 3], activation=[hidden, output], cost=cost,
                         convention="column", bias="separate", batch="mean", notation="nielsen"))


EXTREMES = [("sigmoid", "quadratic", "softplus"), ("sigmoid", "cross_entropy", "relu"),
            ("softmax", "log_likelihood", "tanh"), ("softmax", "quadratic", "leaky_relu")]


@pytest.mark.parametrize("output,cost,hidden", EXTREMES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_preactivations_up_to_1e4(output, cost, hidden, dtype, tmp_path):
    """z of ±1e4 in every layer: no overflow, NaN or RuntimeWarning; the cost through z is exact."""
    spec = _extreme_spec(output, cost, hidden)
    module = module_for(spec, tmp_path)
    rng = np.random.default_rng(2)
    params, _, y = data(spec, 4, rng, dtype)
    # |z1| reaches 1e4: x = ±3, W1 and b1 = ±1e3; W2 is scaled so that |z2| reaches 1e4 as well
    signs = {k: np.where(v < 0, -1.0, 1.0) for k, v in params.items()}
    x = np.where(rng.standard_normal((4, 3)) < 0, -3.0, 3.0)
    z1 = x @ (1e3 * signs["W1"]).T + 1e3 * signs["b1"].T
    with np.errstate(over="ignore"):  # the plain sigmoid and softplus overflow to the right limit here
        a1 = PLAIN_ACTIVATIONS[hidden](z1)
    w2 = 1e4 / (np.abs(a1).sum(axis=1).max() + 1.0)
    params = {"W1": 1e3 * signs["W1"], "b1": 1e3 * signs["b1"], "W2": w2 * signs["W2"], "b2": signs["b2"]}
    params = {k: v.astype(dtype) for k, v in params.items()}
    x = x.astype(dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        out, cache = module.forward(params, x)
        grads = module.backward(params, cache, y)
        C = module.cost(out, y, cache)
        with warnings.catch_warnings(record=True) as caught:  # saturated outputs: a log floored, said so
            warnings.simplefilter("always")
            C_plain = module.cost(out, y)
    assert all("the cost is not exact" in str(w.message) for w in caught), [str(w.message) for w in caught]
    assert np.isfinite(out).all() and all(np.isfinite(g).all() for g in grads.values())
    if "z2" in cache:
        assert 1e2 < np.abs(cache["z2"]).max() <= 1e4 * (1 + 1e-6)
    assert np.isfinite(C) and np.isfinite(C_plain)
    if "z2" in cache:  # the cost through z against log-sum-exp in float64
        z = cache["z2"].astype(np.float64)
        if output == "softmax":
            m = z.max(axis=1, keepdims=True)
            logs = z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))
            want = -(y * logs).sum() / 4
        else:
            want = (y * np.logaddexp(0, -z) + (1 - y) * np.logaddexp(0, z)).sum() / 4
        assert C == pytest.approx(want, rel=1e-5 if dtype == np.float32 else 1e-12)


def _one_layer(output, cost, n=3):
    """One layer, no bias, the row convention and two rows: with x = I, z is W itself."""
    return validate(dict(name=f"one_{cost}", sizes=[2, n], activation=output, cost=cost,
                         convention="row", bias="none", batch="mean", notation="rowmajor"))


def _mp_cost(cost, z, y):
    """The batch mean of the cost's definition at the outputs of z, in 50-digit arithmetic."""
    with mpmath.workdps(50):
        total = mpmath.mpf(0)
        for zr, yr in zip(z.tolist(), y.tolist()):
            zr, yr = [mpmath.mpf(v) for v in zr], [mpmath.mpf(v) for v in yr]
            if cost == "log_likelihood":  # log softmax, exactly
                top = max(zr)
                logs = [v - top - mpmath.log(sum(mpmath.exp(u - top) for u in zr)) for v in zr]
                total += -sum(t * l for t, l in zip(yr, logs))
                continue
            for v, t in zip(zr, yr):
                a = 1 / (1 + mpmath.exp(-v))
                if cost == "quadratic":
                    total += (a - t) ** 2 / 2
                else:  # log(1 - sigma(v)) = -v + log sigma(v), written so it does not round to log(0)
                    log_a = -mpmath.log1p(mpmath.exp(-v))
                    total += -(t * log_a + (1 - t) * (log_a - v))
        return float(total / len(z))


COST_CASES = [("sigmoid", "quadratic"), ("sigmoid", "cross_entropy"), ("softmax", "log_likelihood")]
Z_LARGE = [[1e4, -1e4, 3.5], [-9876.5, 20.25, -0.5]]
Y_FOR = {"quadratic": [[0, 1, 0.25], [1, 0, 1]], "cross_entropy": [[0, 1, 0.25], [1, 0, 1]],
         "log_likelihood": [[0, 1, 0], [1, 0, 0]]}


@pytest.mark.parametrize("output,cost", COST_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cost_against_50_digits_at_preactivations_of_1e4(output, cost, dtype, tmp_path):
    """With the cache every cost is exact; from a saturated output a log cost warns that it is not."""
    module = module_for(_one_layer(output, cost), tmp_path)
    z, y = np.array(Z_LARGE, dtype=dtype), np.array(Y_FOR[cost], dtype=dtype)
    out, cache = module.forward({"W1": z}, np.eye(2, dtype=dtype))
    assert (cache.get("z1", z) == z).all()
    truth = _mp_cost(cost, z, y)
    rel = 1e-13 if dtype == np.float64 else 1e-6
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert module.cost(out, y, cache) == pytest.approx(truth, rel=rel)
        if cost == "quadratic":  # no log: exact from the output too
            assert module.cost(out, y) == pytest.approx(truth, rel=rel)
            return
    with pytest.warns(RuntimeWarning, match=r"^cost: [1-9]\d* output entries are within the smallest normal float of "
                                            r"0 or 1 .* the cost is not exact: pass the cache"):
        plain = module.cost(out, y)
    assert plain < truth * (1 - rel)  # a floored log: too small, and said so


@pytest.mark.parametrize("output,cost", COST_CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cost_from_the_output_is_quiet_and_close_where_nothing_is_floored(output, cost, dtype, tmp_path):
    """No warning where no log is floored: moderate z, or a saturated entry whose log has weight 0."""
    module = module_for(_one_layer(output, cost), tmp_path)
    saturated = [[1e4, -1e4, -1e4], [-1e4, 1e4, -1e4]]  # outputs that rounded to 0 and 1 where y is 0 and 1
    y_sat = [[1, 0, 0], [0, 1, 0]]
    for z, y, rel in (([[2.5, -4, 0.5], [-1, 3, 0]], Y_FOR[cost], 1e-4), (saturated, y_sat, 1e-6)):
        z, y = np.array(z, dtype=dtype), np.array(y, dtype=dtype)
        out, cache = module.forward({"W1": z}, np.eye(2, dtype=dtype))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = module.cost(out, y)
        assert got == pytest.approx(_mp_cost(cost, z, y), rel=rel, abs=1e-30)


LOG_COSTS = [("sigmoid", "cross_entropy"), ("softmax", "log_likelihood")]


def _forward_one_layer(output, cost, dtype, tmp_path, z=((2.5, -4, 0.5), (-1, 3, 0))):
    module = module_for(_one_layer(output, cost), tmp_path)
    out, cache = module.forward({"W1": np.array(z, dtype=dtype)}, np.eye(2, dtype=dtype))
    return module, out, cache, np.array(Y_FOR[cost], dtype=dtype)


@pytest.mark.parametrize("output,cost", LOG_COSTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cost_takes_the_cache_only_with_its_own_output(output, cost, dtype, tmp_path):
    """Through the cache the cost is that of the cache's z: an output that is not sigma(z) is refused."""
    module, out, cache, y = _forward_one_layer(output, cost, dtype, tmp_path)
    want = module.cost(out, y, cache)
    assert module.cost(out.copy(), y, cache) == module.cost(np.asfortranarray(out), y, cache) == want
    other, _ = module.forward({"W1": np.array([[1, 2, -3], [0.5, 0, 1]], dtype=dtype)}, np.eye(2, dtype=dtype))
    uniform = np.full_like(out, 1 / 3)
    not_its_own = r"^output: not the output forward returned with cache \(entry \(\d, \d\) is .*\); expected the output and cache of one forward call, or no cache$"
    for bad in (other, uniform, out[::-1].copy()):
        with pytest.raises(ValueError, match=not_its_own):
            module.cost(bad, y, cache)
        module.cost(bad, y)  # without the cache: the cost of that output
    out[0] = out[1]  # changed in place after forward, a distribution still
    with pytest.raises(ValueError, match=not_its_own):
        module.cost(out, y, cache)


def test_the_reported_cost_with_another_output_and_the_cache():
    module, spec = builtin("rowmajor"), load_spec("rowmajor")
    params, x, y = data(spec, 3, np.random.default_rng(0))
    out, cache = module.forward(params, x)
    with pytest.raises(ValueError, match=r"^output: not the output forward returned with cache"):
        module.cost(out * 0 + 0.5, y, cache)


@pytest.mark.parametrize("output,cost", LOG_COSTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_log_cost_refuses_an_output_outside_the_activations_range(output, cost, dtype, tmp_path):
    """An output no sigmoid or softmax gives has no cost under a log: a ValueError naming output and the range."""
    module, out, cache, y = _forward_one_layer(output, cost, dtype, tmp_path)
    entry = r"^output: entry \(\d, \d\) is .*, expected (rows of )?entries in \[0, 1\]"
    bad_entries = [out + 5, out - 1, -out, out * 2]
    if output == "softmax":  # entries in [0, 1] whose rows are not distributions
        row = r"^output: row \d sums to .*, expected rows of entries in \[0, 1\] that sum to 1 up to rounding"
        for bad in (out * 0.9, out + 0.01, out * (1 + 1e-4)):
            for cache_or_none in (None, cache):
                with pytest.raises(ValueError, match=row):
                    module.cost(bad.astype(dtype), y, cache_or_none)
    for bad in bad_entries:
        for cache_or_none in (None, cache):
            with pytest.raises(ValueError, match=entry):
                module.cost(bad.astype(dtype), y, cache_or_none)
    for bad in (np.nan, np.inf, -np.inf):
        nonfinite = out.copy()
        nonfinite[1, 2] = bad
        with pytest.raises(ValueError, match=r"^output: contains NaN or inf \(shape \(2, 3\)\), expected finite values$"):
            module.cost(nonfinite, y)
    # saturated outputs (0 and 1 as rounded) are a sigmoid's or softmax's: taken, with the floor's warning
    module, out, cache, y = _forward_one_layer(output, cost, dtype, tmp_path, z=((1e4, -1e4, 3.5), (-1e4, 20.25, -0.5)))
    assert ((out == 0) | (out == 1)).any()
    module.cost(out, y, cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        module.cost(out, y)


def test_the_reported_output_outside_the_sigmoids_range():
    module, spec = builtin("rowmajor"), load_spec("rowmajor")
    params, x, y = data(spec, 3, np.random.default_rng(0))
    out, _ = module.forward(params, x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^output: entry \(0, 0\) is .*, expected entries in \[0, 1\] \(a sigmoid's outputs"):
            module.cost(out + 5, y)


def test_a_quadratic_cost_takes_any_finite_output_but_no_nan():
    """No log: the quadratic cost of any finite array is what it says; a NaN or inf is still refused."""
    module, params, x, y = _ok()
    out, _ = module.forward(params, x)
    assert module.cost(out + 5, y) == pytest.approx(0.5 * ((out + 5 - y) ** 2).sum() / 3, rel=1e-12)
    out[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^output: contains NaN or inf"):
        module.cost(out, y)


def test_stable_log_forms_are_identities():
    """The table's rewrites the cost uses with the cache: log σ(z) = −softplus(−z), log(1 − σ(z)) = −softplus(z),
    log softmax(z) = log_softmax(z); every activation with a log form has an output range to check outputs against."""
    z = sp.Symbol("z", real=True)
    sig = ACTIVATIONS["sigmoid"].definition(z)
    softplus = ACTIVATIONS["softplus"].definition
    logs = ACTIVATIONS["sigmoid"].stable_logs(z)
    assert set(logs) == {"log_a", "log_one_minus_a"}
    for key, value in (("log_a", sp.log(sig)), ("log_one_minus_a", sp.log(1 - sig))):
        truth = logs[key].replace(sp.Function("softplus"), softplus)
        assert sp.simplify(sp.expand_log(value - truth, force=True)) == 0, (key, logs[key])
    zs = sp.symbols("z0:3", real=True)
    Z = sp.Symbol("Z")
    assert ACTIVATIONS["softmax"].stable_logs(Z) == {"log_a": sp.Function("log_softmax")(Z)}
    value = sp.expand_log(sp.log(_softmax_def(0, zs)), force=True)
    assert sp.simplify(value - (zs[0] - sp.log(sum(sp.exp(v) for v in zs)))) == 0
    assert all(act.output_range for act in ACTIVATIONS.values() if act.stable_logs)


def test_every_elementwise_helper_has_a_cuda_body():
    py, cu = set(helper_names("py")), set(helper_names("cu"))
    elementwise = {a.stable for a in ACTIVATIONS.values() if a.elementwise and a.stable}
    assert (py & elementwise) <= cu


# -- validation ------------------------------------------------------------------

def _ok(name="nielsen"):
    module, spec = builtin(name), load_spec(name)
    rng = np.random.default_rng(0)
    params, x, y = data(spec, 1 if spec.batch == "single" else 3, rng)
    return module, params, x, y


@pytest.mark.parametrize("bad,match", [
    (np.zeros((3, 5)), r"x: shape \(3, 5\), expected \(B, 784\)"),
    (np.zeros((3, 784), dtype=np.int64), r"x: dtype int64 .*expected float32 or float64 of shape \(B, 784\)"),
    ([[0.0] * 784], r"x: a numpy.ndarray of shape \(B, 784\) expected, got list"),
    (np.zeros(784), r"x: shape \(784,\), expected \(B, 784\)"),
])
def test_forward_refuses_bad_x(bad, match):
    module, params, _, _ = _ok()
    with pytest.raises(ValueError, match=match):
        module.forward(params, bad)


def test_non_finite_values_are_named():
    module, params, x, y = _ok()
    bad = x.copy()
    bad[1, 100] = np.nan
    with pytest.raises(ValueError, match=r"x: contains NaN or inf \(shape \(3, 784\)\)"):
        module.forward(params, bad)
    p = {k: v.copy() for k, v in params.items()}
    p["b2"][3, 0] = np.inf
    with pytest.raises(ValueError, match=r"params\['b2'\]: contains NaN or inf \(shape \(10, 1\)\)"):
        module.forward(p, x)
    out, cache = module.forward(params, x)
    yb = y.copy()
    yb[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"y: contains NaN or inf \(shape \(3, 10\)\), expected finite values of shape \(3, 10\)"):
        module.backward(params, cache, yb)


def test_finite_values_whose_squares_overflow_pass_the_finiteness_check():
    """_finite tests a·a first; when that overflows on finite entries the entries decide, not the sum."""
    module, params, x, y = _ok()
    params = {k: v.astype(np.float32) for k, v in params.items()}
    params["W1"][:] = 1e-6
    x = np.full((3, 784), 1e30, dtype=np.float32)  # z1 ≈ 7.8e26: finite, z1·z1 is inf in float32
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        out, cache = module.forward(params, x)
        grads = module.backward(params, cache, np.full((3, 10), 1e30, dtype=np.float32))
    assert (cache["a1"] == 1).all() and np.isfinite(out).all()
    assert all(np.isfinite(g).all() for g in grads.values())
    for bad in (np.inf, -np.inf, np.nan):
        x[2, 5] = bad
        with pytest.raises(ValueError, match=r"x: contains NaN or inf"):
            module.forward(params, x)


def test_params_cache_and_targets_are_checked():
    module, params, x, y = _ok()
    out, cache = module.forward(params, x)
    with pytest.raises(ValueError, match=r"params\['W1'\]: shape \(784, 30\), expected \(30, 784\)"):
        module.forward({**params, "W1": params["W1"].T}, x)
    with pytest.raises(ValueError, match=r"params: keys \['W1', 'W2', 'b1'\], expected a dict with keys"):
        module.forward({k: v for k, v in params.items() if k != "b2"}, x)
    with pytest.raises(ValueError, match=r"params\['W1'\]: dtype float32 .*expected float64"):
        module.forward({**params, "W1": params["W1"].astype(np.float32)}, x)
    with pytest.raises(ValueError, match=r"y: shape \(3, 9\), expected \(3, 10\)"):
        module.backward(params, cache, y[:, :9])
    with pytest.raises(ValueError, match=r"y: dtype float32 .*expected float64"):
        module.backward(params, cache, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"cache: keys \[\], expected the cache forward returned"):
        module.backward(params, {}, y)
    with pytest.raises(ValueError, match=r"eta: 'fast', expected a finite number"):
        module.sgd_step(params, module.backward(params, cache, y), "fast")


class _ArrayLike:
    """Not an array, but NumPy would make one of it."""

    def __init__(self, a):
        self.a = a

    def __array__(self, dtype=None, copy=None):
        return self.a


# what an array argument may be instead of a float ndarray of the right shape
NOT_ARRAYS = {
    "matrix": np.asmatrix, "masked": np.ma.masked_array, "memmap-like subclass": lambda a: a.view(np.recarray),
    "list": lambda a: a.tolist(), "__array__": _ArrayLike, "None": lambda a: None, "scalar": lambda a: a.flat[0],
    "int": lambda a: a.astype(np.int64), "bool": lambda a: a.astype(bool), "complex": lambda a: a.astype(complex),
    "object": lambda a: a.astype(object), "float16": lambda a: a.astype(np.float16),
    "big-endian": lambda a: a.astype(">f8"), "0-d": lambda a: np.array(a.flat[0]),
    "1-d": lambda a: a.ravel(), "3-d": lambda a: a[None], "transposed": lambda a: a.T, "no rows": lambda a: a[:0],
}

# "function: the argument's name in the message" -> the call with `bad` in the argument's place
ARRAY_ARGUMENTS = {
    "forward: x": lambda m, P, x, y, out, c, g, bad: m.forward(P, bad),
    "forward: params['W1']": lambda m, P, x, y, out, c, g, bad: m.forward({**P, "W1": bad}, x),
    "backward: params['b2']": lambda m, P, x, y, out, c, g, bad: m.backward({**P, "b2": bad}, c, y),
    "backward: cache['a1']": lambda m, P, x, y, out, c, g, bad: m.backward(P, {**c, "a1": bad}, y),
    "backward: y": lambda m, P, x, y, out, c, g, bad: m.backward(P, c, bad),
    "cost: output": lambda m, P, x, y, out, c, g, bad: m.cost(bad, y),
    "cost: y": lambda m, P, x, y, out, c, g, bad: m.cost(out, bad, c),
    "cost: cache['a0']": lambda m, P, x, y, out, c, g, bad: m.cost(out, y, {**c, "a0": bad}),
    "cost: cache['z3']": lambda m, P, x, y, out, c, g, bad: m.cost(out, y, {**c, "z3": bad}),
    "sgd_step: params['W1']": lambda m, P, x, y, out, c, g, bad: m.sgd_step({**P, "W1": bad}, g, 0.1),
    "sgd_step: grads['W3']": lambda m, P, x, y, out, c, g, bad: m.sgd_step(P, {**g, "W3": bad}, 0.1),
}


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("what", sorted(NOT_ARRAYS))
@pytest.mark.parametrize("argument", sorted(ARRAY_ARGUMENTS))
def test_every_array_argument_is_checked_for_type_shape_and_dtype(argument, what):
    """Anything but a float32/float64 numpy.ndarray of the right shape is a ValueError naming the argument."""
    module, spec = builtin("rowmajor"), load_spec("rowmajor")  # its cache keeps z3: cost reads it
    params, x, y = data(spec, 3, np.random.default_rng(0))
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    name = argument.split(": ")[1]
    good = {"x": x, "y": y, "output": out, **{f"params[{k!r}]": v for k, v in params.items()},
            **{f"cache[{k!r}]": v for k, v in cache.items()}, **{f"grads[{k!r}]": v for k, v in grads.items()}}[name]
    if what == "transposed" and good.shape[0] == good.shape[1]:
        pytest.skip("a square array transposed has the right shape")
    bad = NOT_ARRAYS[what](good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="^" + re.escape(name) + ": "):
            ARRAY_ARGUMENTS[argument](module, params, x, y, out, cache, grads, bad)


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_an_ndarray_subclass_is_named_as_such():
    module, params, x, _ = _ok()
    with pytest.raises(ValueError, match=r"^x: a numpy.ndarray of shape \(B, 784\) expected, "
                                         r"got numpy.matrix \(a subclass of numpy.ndarray\)$"):
        module.forward(params, np.asmatrix(x))


def test_strided_arrays_give_the_same_results():
    """Views that are not C-contiguous (every other column, Fortran order) are read as they are."""
    module, params, x, y = _ok()
    out, cache = module.forward(params, x)
    grads = module.backward(params, cache, y)
    wide = np.zeros((3, 2 * 784))
    wide[:, ::2] = x
    fparams = {k: np.asfortranarray(v) for k, v in params.items()}
    out2, cache2 = module.forward(fparams, wide[:, ::2])
    grads2 = module.backward(fparams, {k: np.asfortranarray(v) for k, v in cache2.items()}, np.asfortranarray(y))
    np.testing.assert_allclose(out2, out, rtol=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-12, atol=1e-15, err_msg=k)
    assert module.cost(out2, np.asfortranarray(y)) == pytest.approx(module.cost(out, y), rel=1e-13)


def test_a_cache_from_another_batch_is_refused():
    module, params, x, y = _ok("rowmajor")
    out, cache = module.forward(params, x)
    _, other = module.forward(params, x[:2])
    with pytest.raises(ValueError, match=r"^cache\['a1'\]: shape \(2, 4\), expected \(3, 4\)$"):
        module.backward(params, {**cache, "a1": other["a1"]}, y)
    with pytest.raises(ValueError, match=r"^cache\['z3'\]: shape \(2, 2\), expected \(3, 2\)$"):
        module.cost(out, y, other)
    with pytest.raises(ValueError, match=r"^cache\['a1'\]: dtype float32 .*expected float64 like cache\['a0'\]"):
        module.backward(params, {**cache, "a1": cache["a1"].astype(np.float32)}, y)
    with pytest.raises(ValueError, match=r"^cache: list, expected the cache forward returned with keys"):
        module.cost(out, y, [cache])


@pytest.mark.parametrize("keys", [{1: 0, "W1": 0}, {("W1",): 0}])
def test_dict_keys_of_any_type_are_named(keys):
    module, params, x, _ = _ok()
    with pytest.raises(ValueError, match=r"^params: keys \[.*\], expected a dict with keys \['W1', 'b1', 'W2', 'b2'\]$"):
        module.forward(keys, x)


@pytest.mark.parametrize("eta", [True, "0.1", None, np.nan, np.inf, -np.inf, 10**400, 1j, np.array(0.1), [0.1]])
def test_sgd_step_refuses_a_rate_that_is_not_a_finite_number(eta):
    module, params, x, y = _ok()
    grads = module.backward(params, module.forward(params, x)[1], y)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match=r"^eta: .*, expected a finite number$"):
        module.sgd_step(params, grads, eta)
    assert all((params[k] == before[k]).all() for k in params)


@pytest.mark.parametrize("eta", [np.float64(0.25), np.float32(0.25), np.int64(1), __import__("fractions").Fraction(1, 4)])
def test_sgd_step_takes_any_real_rate_and_keeps_float32(eta):
    module, params, x, y = _ok()
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    grads = module.backward(p32, module.forward(p32, x.astype(np.float32))[1], y.astype(np.float32))
    before = {k: v.copy() for k, v in p32.items()}
    module.sgd_step(p32, grads, eta)
    for k in p32:
        assert p32[k].dtype == np.float32
        np.testing.assert_array_equal(p32[k], before[k] - np.float32(float(eta)) * grads[k])


def test_sgd_step_refuses_read_only_parameters():
    module, params, x, y = _ok()
    grads = module.backward(params, module.forward(params, x)[1], y)
    params["b1"].flags.writeable = False
    before = params["W1"].copy()
    with pytest.raises(ValueError, match=r"^params\['b1'\]: read-only, expected a writeable array"):
        module.sgd_step(params, grads, 0.1)
    np.testing.assert_array_equal(params["W1"], before)  # nothing updated: the check comes first


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["W1", "b2"])
def test_sgd_step_refuses_a_gradient_or_parameter_that_is_not_finite(bad, key):
    module, params, x, y = _ok()
    grads = module.backward(params, module.forward(params, x)[1], y)
    before = {k: v.copy() for k, v in params.items()}
    wrong = {k: v.copy() for k, v in grads.items()}
    wrong[key].flat[-1] = bad
    with pytest.raises(ValueError, match=rf"^grads\['{key}'\]: contains NaN or inf \(shape \(\d+, \d+\)\), expected finite values$"):
        module.sgd_step(params, wrong, 0.1)
    wrong = {k: v.copy() for k, v in params.items()}
    wrong[key].flat[0] = bad
    with pytest.raises(ValueError, match=rf"^params\['{key}'\]: contains NaN or inf"):
        module.sgd_step(wrong, grads, 0.1)
    assert all((params[k] == before[k]).all() for k in params)


def test_sgd_step_refuses_a_step_that_overflows_and_writes_nothing():
    module, params, x, y = _ok()
    grads = {k: np.full_like(v, 1e10) for k, v in params.items()}
    before = {k: v.copy() for k, v in params.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^eta: 1e\+300 makes params\['W1'\] - eta\*grads\['W1'\] overflow to inf; expected a smaller eta$"):
            module.sgd_step(params, grads, 1e300)
    assert all((params[k] == before[k]).all() for k in params)


@pytest.mark.parametrize("rng,dtype,match", [
    ("seed", np.float64, r"^rng: 'seed', expected a seed"), (-1, np.float64, r"^rng: -1, expected a seed"),
    (1.5, np.float64, r"^rng: 1.5, expected a seed"), (True, np.float64, r"^rng: True, expected a seed"),
    (False, np.float64, r"^rng: False, expected a seed"), (np.True_, np.float64, r"^rng: np.True_, expected a seed"),
    ([1, True], np.float64, r"^rng: \[1, True\], expected a seed"), (np.array([0, 1]) > 0, np.float64, r"^rng: array"),
    ([], np.float64, r"^rng: \[\], expected a seed"), ([[1, 2]], np.float64, r"^rng: \[\[1, 2\]\], expected a seed"),
    (0, "no such type", r"^dtype: 'no such type', expected numpy.float32 or numpy.float64$"),
    (0, np.int32, r"^dtype: .*int32.*, expected numpy.float32"), (0, np.float16, r"^dtype: .*float16.*, expected"),
    (0, object, r"^dtype: .*object.*, expected"), (0, [1, 2], r"^dtype: \[1, 2\], expected"),
])
def test_init_params_refuses_a_bad_seed_or_dtype(rng, dtype, match):
    with pytest.raises(ValueError, match=match):
        builtin("nielsen").init_params(rng, dtype)


def test_init_params_takes_seeds_and_generators_as_numpy_does():
    init = builtin("nielsen").init_params
    w = init(3)["W1"]
    for same in (np.int64(3), np.uint8(3), [3], np.array([3]), np.random.default_rng(3), np.random.SeedSequence(3)):
        np.testing.assert_array_equal(init(same)["W1"], w)
    np.testing.assert_array_equal(init([1, 2])["W1"], np.random.default_rng([1, 2]).standard_normal((30, 784)) / np.sqrt(784))
    assert init(None)["W1"].shape == (30, 784)


def test_single_example_spec_takes_one_row():
    module, params, x, _ = _ok("net222")
    with pytest.raises(ValueError, match=r"x: shape \(2, 2\), expected \(1, 2\)"):
        module.forward(params, np.zeros((2, 2)))


def test_sgd_step_is_the_update_in_place():
    module, params, x, y = _ok()
    before = {k: v.copy() for k, v in params.items()}
    ids = {k: id(v) for k, v in params.items()}
    grads = module.backward(params, module.forward(params, x)[1], y)
    module.sgd_step(params, grads, 0.5)
    for k in params:
        assert id(params[k]) == ids[k]
        np.testing.assert_array_equal(params[k], before[k] - 0.5 * grads[k])


def test_init_params_shapes_and_dtypes():
    for name in builtin_names():
        module, spec = builtin(name), load_spec(name)
        for dtype in (np.float32, np.float64):
            params = module.init_params(1, dtype)
            assert [(k, v.shape) for k, v in params.items()] == param_shapes(spec)
            assert all(v.dtype == dtype for v in params.values())
        np.testing.assert_array_equal(module.init_params(4)["W1"], module.init_params(4)["W1"])


# -- the code itself -------------------------------------------------------------------

def test_cache_keeps_outputs_when_sigma_prime_is_written_through_them():
    assert builtin("nielsen").CACHE_KEYS == ("a0", "a1", "a2")  # sigma' = a(1 - a): no z
    assert "z1" in builtin("rowmajor").CACHE_KEYS  # ReLU' needs z


def test_generated_code_reads_like_the_equations():
    text = (ROOT / "generated" / "nielsen_numpy.py").read_text()
    assert text.startswith("# Generated by `python -m codegen nielsen` from derive/specs/nielsen.toml. Do not edit.\n")
    for line in ["delta2 = a2*(1 - a2)*(a2 - y)  # BP1", "delta1 = delta2 @ W2  # BP2[1]",
                 "delta1 *= a1*(1 - a1)\n", "dC_dW1 = tdot(delta1, a0)\n",
                 "delta2 *= inv_B  # the mean's 1/B, once: BP2 and the gradients are linear in delta",
                 "dC_db1 = delta1.T @ ones_B\n", "dC/db1   dC_db1 = (1/B)*(delta1.T @ ones_B)",
                 "The code keeps (1/B)*delta{l} in delta{l}", "z1 = a0 @ W1.T + b1.T, a1 = sigmoid(z1)",
                 "BP2[1]   delta1 = (delta2 @ W2) ∘ sp1", "a1 = sigmoid(z1, out=z1)\n"]:
        assert line in text
    ce = (ROOT / "generated" / "rowmajor_numpy.py").read_text()
    assert "delta3 = a3 - y  # BP1" in ce  # g ∘ σ' cancelled exactly
    assert "import sympy" not in text and "import derive" not in text


def test_generated_modules_put_the_mathematics_first():
    """forward, backward, cost and sgd_step come first; the argument checks follow, below their banner."""
    for path in sorted(path for name in BACKENDS for path in (ROOT / "generated").glob(f"*_{name}.py")):
        text = path.read_text()
        names = [node.name for node in ast.parse(text).body if isinstance(node, ast.FunctionDef)]
        assert names[:5] == ["forward", "backward", "cost", "sgd_step", "init_params"], path.name
        banner = text.index("# -- argument checks")
        assert text.index("def _check_array") > banner > text.index("def init_params"), path.name


def test_the_batch_scale_is_carried_only_through_linear_forms():
    """carry_scale moves the mean's 1/B into delta^L only after checking every form it passes through."""
    from codegen.plan import linear_in

    d, w, s = sp.MatrixSymbol("d", 2, 2), sp.MatrixSymbol("w", 2, 2), sp.MatrixSymbol("s", 2, 2)
    assert linear_in(sp.HadamardProduct(w.T * d, s), [d])
    assert not linear_in(sp.HadamardProduct(d, d), [d])
    assert not linear_in(d + s, [d])
    for name in ("nielsen", "rowmajor"):  # mean and sum
        plan = make_plan(prove_forms(load_spec(name)), load_spec(name))
        scale_steps = [st for st in plan.backward if st.expr.has(sp.Symbol("inv_B"))]
        assert plan.carried_scale == (load_spec(name).batch == "mean")
        assert len(scale_steps) == plan.carried_scale


def test_plan_softmax_output_error_is_exact():
    """BP1 of softmax with the log-likelihood: a Σy − y, the exact gradient (a − y for one-hot y)."""
    spec = _extreme_spec("softmax", "log_likelihood")
    delta = make_plan(prove_forms(spec), spec).output_delta
    a2, y, S = sp.Symbol("a2"), sp.Symbol("y"), sp.Symbol("S")
    assert str(delta) == "-a2*rowsum(-y) - y"
    summed = delta.replace(lambda e: e.func.__name__ == "rowsum", lambda e: e.args[0].subs(y, S))
    assert sp.expand(summed - (a2 * S - y)) == 0


# -- output on disk: deterministic, checked, refused cleanly -------------------------------

def test_generation_is_deterministic_and_checked_in(tmp_path, capsys):
    assert codegen_main(["--out", str(tmp_path)]) == 0
    assert "nielsen at 3-3-3: 24/24 partials of C proven" in capsys.readouterr().out
    again = expected_files(builtin_names() + layer_examples(), BACKENDS, with_init=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(again)
    for name, text in again.items():
        assert (tmp_path / name).read_bytes() == text.encode()
        assert (ROOT / "generated" / name).read_bytes() == text.encode(), f"{name} is stale: python -m codegen"


def test_check_names_stale_files_and_the_fix(tmp_path, capsys):
    write_all(tmp_path, expected_files(builtin_names(), BACKENDS, with_init=True))
    path = tmp_path / "rowmajor_numpy.py"
    path.write_text(path.read_text().replace("a3 - y", "y - a3"))
    (tmp_path / "gone_numpy.py").write_text("")
    assert codegen_main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "rowmajor_numpy.py" in err and "gone_numpy.py (no built-in spec makes it: remove it)" in err
    assert f"regenerate with: python -m codegen --out {tmp_path}" in err


def test_an_unproven_form_is_not_written(tmp_path, monkeypatch, capsys):
    import codegen.__main__ as cli

    class Failed:
        ok = False

        def summary(self):
            return "11/12 partials of C proven"

        spec = load_spec("net222")

    monkeypatch.setattr(cli, "prove_forms", lambda spec, max_seconds: Failed())
    assert cli.main(["net222", "--out", str(tmp_path / "out")]) == 2
    assert "the matrix forms are not proven (11/12 partials of C proven); nothing written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_plan_is_made_only_from_a_proof_of_its_forms():
    """make_plan refuses a proof that is not ok, and a proof of other forms than the module prints."""
    nielsen = load_spec("nielsen")
    proof = prove_forms(nielsen)
    assert make_plan(proof, nielsen).spec == nielsen
    with pytest.raises(DeriveError, match="the proof is of nielsen at sizes 3-3-3, not of the forms"):
        make_plan(proof, load_spec("rowmajor"))
    proof.checks[0].proven = False
    with pytest.raises(DeriveError, match="the matrix forms are not proven"):
        make_plan(proof, nielsen)
    deep = validate(dict(name="deep", sizes=[2] * 65, activation="tanh", cost="quadratic", convention="column",
                         bias="separate", batch="mean", notation="nielsen"))
    with pytest.raises(DeriveError, match=r"proving its forms at sizes 2-2-2-\.\.\.-2 \(65 widths\): estimated"):
        generate(deep)  # a spec whose forms cannot be proven here is not printed either


def test_bad_spec_is_one_line_exit_2_and_writes_nothing(tmp_path):
    r = subprocess.run([sys.executable, "-m", "codegen", "nosuchspec", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.startswith("error: unknown spec 'nosuchspec'") and r.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_user_spec_file_and_one_backend(tmp_path):
    spec_file = tmp_path / "mine.toml"
    spec_file.write_text('name = "mine"\nsizes = [2, 3, 2]\nactivation = ["tanh", "softmax"]\n'
                         'cost = "log_likelihood"\nconvention = "row"\nbias = "separate"\nbatch = "mean"\nnotation = "rowmajor"\n')
    assert codegen_main([str(spec_file), "--backend", "numpy", "--out", str(tmp_path / "g")]) == 0
    text = (tmp_path / "g" / "mine_numpy.py").read_text()
    assert text.startswith(f"# Generated by `python -m codegen {spec_file}` from {spec_file}. Do not edit.")
    assert not (tmp_path / "g" / "mine_cupy.py").exists()


# -- what a user supplies reaches generated files only escaped ---------------------------

PAYLOAD = "import builtins; builtins.PWNED = 1"
HOSTILE_NAMES = [
    f"evil\n{PAYLOAD}\n#.toml", f"evil\r{PAYLOAD}\r#.toml", f"evil\r\n{PAYLOAD}\r\n#.toml",
    f"evil\u2028{PAYLOAD}\u2029#.toml", f"evil\x85{PAYLOAD}\x0c\x0b\x1c\x1d\x1e#.toml",
    f'""" ; {PAYLOAD} ; """.toml', f"''' ; {PAYLOAD} ; '''.toml", f"evil\\\n{PAYLOAD}\n#.toml",
    f"*/ {PAYLOAD} /*.toml", f"??/\n{PAYLOAD}\n.toml", f"`{PAYLOAD}`.toml", "\\N{.toml", "\\x.toml", "end\\",
    "\u202egnp.toml", "caf\u00e9 \U0001f600.toml", os.fsdecode(b"not-utf8-\xff\xfe\n" + PAYLOAD.encode() + b".toml"),
]


def _hostile_spec_file(path: Path) -> Path:
    """net222 named "hostile", at `path` (a `/` in the hostile part makes folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((ROOT / "derive/specs/net222.toml").read_bytes().replace(b'name = "net222"', b'name = "hostile"'))
    return path


def _assert_escaped(files: dict[str, str], source: str):
    """Every generated file: one header line that names the source escaped, no line break but newlines."""
    header = f"Generated by `python -m codegen {shlex.quote(plain(source))}` from {plain(source)}. Do not edit."
    assert ast.literal_eval(f'"{plain(source)}"') == source
    for fname, text in files.items():
        assert text.splitlines() == text.split("\n")[:-1], fname  # no \r, \x85, \u2028, ... anywhere
        first = text.split("\n")[0]
        assert first.isascii() and first == ("// " if fname.endswith(".cu") else "# ") + header, fname
        if fname.endswith(".py"):
            assert ast.get_docstring(ast.parse(text)).startswith("hostile: forward and backward passes"), fname
        else:  # nothing continues a // comment onto the next line or closes a block comment; no trigraph
            assert "\\\n" not in text and "*/" not in text and "??" not in text
            assert text.split("\n")[1].startswith("// The fused elementwise kernels of generated/hostile_cupy.py")


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_a_hostile_spec_file_name_runs_nothing_and_the_module_works(name, tmp_path):
    """The spec file's name is printed escaped: importing the module runs only the module."""
    import builtins

    path = _hostile_spec_file(tmp_path / name)
    spec = load_spec(str(path))
    assert spec.source == str(path)
    _assert_escaped(generate(spec), str(path))
    module = load_generated(spec, tmp_path)
    assert not hasattr(builtins, "PWNED")
    ref = builtin("net222")
    params, x, y = data(spec, 1, np.random.default_rng(3))
    out, cache = module.forward(params, x)
    np.testing.assert_array_equal(out, ref.forward(params, x)[0])
    assert module.cost(out, y, cache) == ref.cost(out, y, cache)
    assert module.NAME == "hostile"


def test_the_reported_file_name_through_the_command_line(tmp_path):
    """The issue's file name, through `python -m codegen`, then imported: the line does not run."""
    import builtins

    path = _hostile_spec_file(tmp_path / f"evil\n{PAYLOAD}\n#.toml")
    assert codegen_main([str(path), "--out", str(tmp_path / "g")]) == 0
    files = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "g").iterdir()}
    assert sorted(files) == ["hostile_cupy.py", "hostile_jax.py", "hostile_kernels.cu", "hostile_numpy.py", "hostile_torch.py"]
    _assert_escaped(files, str(path))
    where = importlib.util.spec_from_file_location("hostile_numpy", tmp_path / "g" / "hostile_numpy.py")
    module = importlib.util.module_from_spec(where)
    where.loader.exec_module(module)
    assert not hasattr(builtins, "PWNED") and module.SIZES == (2, 2, 2)


SHELL_NAMES = ["h$(touch PW).toml", "h\u2026$(touch PW).toml", "a;touch PW;b.toml", "a|touch PW&.toml",
               "$HOME {a,b} [x] ~user #c.toml", "it's \"q\" `touch PW`.toml", "-rf.toml", "a\nb\\c.toml"]


@pytest.mark.parametrize("name", SHELL_NAMES, ids=range(len(SHELL_NAMES)))
def test_the_header_command_pasted_in_a_shell_names_the_file_and_runs_nothing(name, tmp_path):
    """The header's command is quoted for a POSIX shell after the escaping: one word, run by nothing."""
    path = _hostile_spec_file(tmp_path / "specs" / name)
    files = generate(load_spec(str(path)))
    _assert_escaped(files, str(path))
    for text in files.values():
        command = text.split("\n")[0].split("`")[1]
        assert shlex.split(command) == ["python", "-m", "codegen", plain(str(path))]
        echoed = subprocess.run(["sh", "-c", command.replace("python -m codegen", "printf %s", 1)], cwd=tmp_path,
                                capture_output=True, text=True, check=True).stdout
        assert echoed == plain(str(path)) and not (tmp_path / "PW").exists()
        if plain(name) == name:  # nothing escaped: the shell names exactly the file
            assert Path(echoed).read_bytes() == path.read_bytes()


def test_builtin_headers_are_the_bare_names():
    for name in builtin_names():
        for fname, text in generate(load_spec(name)).items():
            assert text.split("\n")[0].endswith(f"Generated by `python -m codegen {name}` from derive/specs/{name}.toml. Do not edit.")


@settings(max_examples=300, deadline=None)
@given(text=st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, categories=None)))
def test_plain_text_cannot_end_a_comment_docstring_or_literal(text):
    escaped = plain(text)
    assert escaped.isascii() and len(escaped.splitlines()) <= 1 and not escaped.endswith("\\")
    assert not set(escaped) & set("\"'`*?\r\n")
    assert ast.literal_eval(f'"{escaped}"') == text == ast.literal_eval(f'"""{escaped}"""')
    assert literal(text) == f'"{escaped}"'


@pytest.mark.parametrize("field,value", [("name", 'x"\nimport os'), ("name", "caf\u00e9"), ("cost", "quadratic\n#"),
                                         ("activation", ("sigmoid\nimport os",) * 2), ("batch", "mean */")])
def test_a_spec_built_by_hand_is_validated_before_anything_is_printed(field, value):
    spec = dataclasses.replace(load_spec("net222"), **{field: value})
    with pytest.raises(SpecError, match=f"field '{field}'"):
        generate(spec)


def test_the_description_never_reaches_the_files():
    """Only the name (an ASCII identifier) and the source (escaped) come from the user as text."""
    spec = load_spec("rowmajor")
    assert generate(dataclasses.replace(spec, description=f'"""\n{PAYLOAD}\n*/ \\')) == generate(spec)


# -- training on the digits ---------------------------------------------------------

def test_training_reaches_95_percent_on_held_out_digits(tmp_path):
    pytest.importorskip("sklearn")
    from codegen import train

    module = train.load_generated(train.digits_spec(32), tmp_path)
    params = module.init_params(0)
    history = train.train(module, params, train.load_digits(0), epochs=20, batch=16, eta=0.5, seed=0)
    assert history[-1][2] >= 0.95
    assert history[-1][1] < history[0][1]


def test_training_refuses_a_spec_that_does_not_fit_the_digits(capsys):
    from codegen import train

    assert train.main(["--spec", "nielsen", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: derive/specs/nielsen.toml: sizes 784-30-10") and err.count("\n") == 1


def test_check_passes_under_another_hash_seed():
    """No set or dict order leaks into the output: a fresh interpreter with another hash seed agrees."""
    import os

    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    r = subprocess.run([sys.executable, "-m", "codegen", "--check"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
