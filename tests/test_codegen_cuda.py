"""The CuPy modules: the CUDA kernels compile (nvcc -ptx, sm_90), the Python side launches them
with the right arguments, and on a GPU the results equal the NumPy module's.

Without a GPU the CUDA text itself runs on the CPU (tests/cuda_cpu): each .cu file is compiled by
the system C++ compiler with a header for the CUDA built-ins and a launcher that loops over
grid x block, and the CuPy module's launches reach it as CuPy sends them (raw pointers, C types).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cuda_cpu
from codegen.render import DTYPES, generate
from derive.spec import builtin_names, load_spec, validate
from derive.tables.activations import ACTIVATIONS
from test_codegen import ARRAY_ARGUMENTS, NOT_ARRAYS
from tests.conftest import gpu_reason

ROOT = Path(__file__).resolve().parent.parent
SPECS = builtin_names()


def _import_file(path: Path, name: str):
    mod_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


gpu_check = _import_file(ROOT / "benchmarks" / "gpu_check.py", "gpu_check")  # its CPU parts run here


def _nvcc():
    found = shutil.which("nvcc")
    if found:
        return found
    path = "/usr/local/cuda/bin/nvcc"
    return path if os.path.exists(path) else None


def _mixed_spec():
    """Every elementwise kind the printer knows: softplus, leaky ReLU, identity, tanh, and a softmax row sum."""
    return validate(dict(name="mixed", sizes=[3, 4, 4, 4, 3], activation=["softplus", "leaky_relu", "identity", "softmax"],
                         cost="quadratic", convention="column", bias="separate", batch="mean", notation="nielsen"))


def _relu_tanh_spec():
    return validate(dict(name="reluce", sizes=[3, 4, 4, 2], activation=["relu", "tanh", "sigmoid"],
                         cost="cross_entropy", convention="row", bias="augmented", batch="sum", notation="rowmajor"))


# ---------------------------------------------------------------------------
# nvcc
# ---------------------------------------------------------------------------

@pytest.mark.skipif(_nvcc() is None, reason="nvcc is not installed (CUDA toolkit); the kernel sources are not compiled")
def test_kernel_sources_compile_with_nvcc(tmp_path):
    sources = sorted((ROOT / "generated").glob("*_kernels.cu"))
    assert len(sources) == len(SPECS)
    for spec in (_mixed_spec(), _relu_tanh_spec()):
        path = tmp_path / f"{spec.name}_kernels.cu"
        path.write_text(generate(spec, ["cupy"])[f"{spec.name}_kernels.cu"])
        sources.append(path)
    out = tmp_path / "ptx"
    out.mkdir()
    r = subprocess.run([_nvcc(), "-ptx", "-arch=sm_90", "--output-directory", str(out), *map(str, sources)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for src in sources:
        ptx = (out / (src.stem + ".ptx")).read_text()
        text = src.read_text()
        kernels = [line.split("void ")[1].split("(")[0] for line in text.splitlines() if line.startswith('extern "C"')]
        assert kernels, src.name
        for name in kernels:
            assert f".entry {name}(" in ptx, (src.name, name)


# ---------------------------------------------------------------------------
# the CUDA text itself, built for the CPU (tests/cuda_cpu)
# ---------------------------------------------------------------------------

needs_cxx = pytest.mark.skipif(cuda_cpu.compiler() is None,
                               reason="no C++ compiler (g++, c++ or clang++): the CPU build of the CUDA kernels is skipped")


def use_cpu_build(monkeypatch):
    """`cupy` as the CPU build: NumPy arrays, RawModule compiled from the .cu text itself (skips without g++)."""
    if cuda_cpu.compiler() is None:
        pytest.skip("no C++ compiler (g++, c++ or clang++): the CPU build of the CUDA kernels is skipped")
    fake = cuda_cpu.cupy_module()
    monkeypatch.setitem(sys.modules, "cupy", fake)
    return fake


@pytest.fixture
def cpu_cupy(monkeypatch):
    return use_cpu_build(monkeypatch)


_FILES: dict[str, dict[str, str]] = {}


def generated_files(spec) -> dict[str, str]:
    """generate(spec, numpy and cupy), once per spec in a session (each proves the spec's forms)."""
    key = repr(sorted(spec.as_dict().items()))
    if key not in _FILES:
        _FILES[key] = generate(spec, ["numpy", "cupy"])
    return _FILES[key]


def _pair(spec, tmp_path):
    """The NumPy and CuPy modules of a spec: the checked-in ones for a built-in spec, else generated into tmp_path."""
    if spec.name in SPECS and spec == load_spec(spec.name):
        folder = ROOT / "generated"
    else:
        folder = tmp_path
        for fname, text in generated_files(spec).items():
            (folder / fname).write_text(text, encoding="utf-8")
    return tuple(_import_file(folder / f"{spec.name}_{b}.py", f"_cuda_cpu_{spec.name}_{b}") for b in ("numpy", "cupy"))


def _drawn_specs():
    """Specs drawn with a fixed seed, so that every elementwise activation is a hidden layer and an output,
    a softmax output has rows summed (with and without an elementwise BP1), and every bias kind occurs."""
    rng = random.Random(20)
    hidden = sorted(a for a, act in ACTIVATIONS.items() if act.elementwise)
    outputs = [(a, "quadratic") for a in hidden] + [("sigmoid", "cross_entropy"), ("softmax", "log_likelihood"),
                                                    ("softmax", "quadratic")]
    specs = []
    for i, (output, cost) in enumerate(outputs):
        convention = ("row", "column")[i % 2]
        specs.append(validate(dict(
            name=f"drawn{i}", sizes=[rng.randint(2, 5) for _ in range(4)],
            activation=[hidden[i % len(hidden)], rng.choice(hidden), output], cost=cost, convention=convention,
            bias=("augmented", "separate", "none")[i % 3], batch=rng.choice(["mean", "sum"]),
            notation={"row": "rowmajor", "column": "nielsen"}[convention])))
    return specs


DRAWN = {s.name: s for s in _drawn_specs()}


def _spec(which):
    return {"mixed": _mixed_spec(), "reluce": _relu_tanh_spec(), **DRAWN}.get(which) or load_spec(which)


@pytest.mark.parametrize("which", SPECS + ["mixed", "reluce"] + sorted(DRAWN))
def test_cuda_kernels_on_the_cpu_match_numpy(which, cpu_cupy, tmp_path):
    """Every built-in spec (its checked-in .cu) and drawn ones: both dtypes, C, Fortran and strided inputs."""
    spec = _spec(which)
    ref, mod = _pair(spec, tmp_path)
    for dtype in (np.float64, np.float32):
        for layout, B in (("C", 7), ("F", 3), ("strided", 2)):
            row = gpu_check.agreement(cpu_cupy, ref, mod, spec, dtype, 1 if spec.batch == "single" else B, layout)
            assert row["failed"] == [], row


def test_every_kernel_has_both_precisions():
    for name in SPECS:
        text = (ROOT / "generated" / f"{name}_kernels.cu").read_text()
        f64 = {l.split("void ")[1].split("(")[0][:-4] for l in text.splitlines() if "_f64(" in l}
        f32 = {l.split("void ")[1].split("(")[0][:-4] for l in text.splitlines() if "_f32(" in l}
        assert f64 == f32 and f64, name
        assert [s for s, _ in DTYPES] == ["f64", "f32"]


# ---------------------------------------------------------------------------
# on a GPU
# ---------------------------------------------------------------------------

gpu = pytest.mark.skipif(gpu_reason() is not None, reason=gpu_reason() or "")


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", SPECS)
def test_cupy_equals_numpy_on_the_gpu(name):
    import cupy

    ref = importlib.import_module(f"generated.{name}_numpy")
    mod = importlib.import_module(f"generated.{name}_cupy")
    spec = load_spec(name)
    rng = np.random.default_rng(2)
    B = 1 if spec.batch == "single" else 64
    params = ref.init_params(5)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in params.items()}
    x = rng.standard_normal((B, spec.sizes[0]))
    y = rng.uniform(0.1, 0.9, (B, spec.sizes[-1]))
    out, cache = ref.forward(params, x)
    grads = ref.backward(params, cache, y)
    gparams = {k: cupy.asarray(v) for k, v in params.items()}
    gout, gcache = mod.forward(gparams, cupy.asarray(x))
    ggrads = mod.backward(gparams, gcache, cupy.asarray(y))
    np.testing.assert_allclose(cupy.asnumpy(gout), out, rtol=1e-12, atol=1e-14)
    for k in grads:
        np.testing.assert_allclose(cupy.asnumpy(ggrads[k]), grads[k], rtol=1e-12, atol=1e-14, err_msg=k)
    for dtype in (np.float32,):
        p32 = {k: v.astype(dtype) for k, v in gparams.items()}
        o32, c32 = mod.forward(p32, cupy.asarray(x, dtype=dtype))
        g32 = mod.backward(p32, c32, cupy.asarray(y, dtype=dtype))
        assert o32.dtype == dtype and all(g.dtype == dtype for g in g32.values())


def test_cupy_module_copes_with_strided_parameters(cpu_cupy, tmp_path):
    """A bias that is a strided view reaches the kernels as a contiguous array."""
    spec = load_spec("nielsen").with_sizes((5, 4, 3))
    ref, mod = _pair(spec, tmp_path)
    rng = np.random.default_rng(4)
    params = {k: v + rng.standard_normal(v.shape) for k, v in ref.init_params(0).items()}
    wide = np.zeros((4, 2))
    wide[:, :1] = params["b1"]
    strided = {**params, "b1": wide[:, :1]}
    assert not strided["b1"].flags.c_contiguous
    x, y = rng.standard_normal((3, 5)), rng.uniform(0.1, 0.9, (3, 3))
    out, cache = ref.forward(params, x)
    out2, cache2 = mod.forward(strided, x)
    np.testing.assert_allclose(out2, out, rtol=1e-12)
    grads, grads2 = ref.backward(params, cache, y), mod.backward(strided, cache2, y)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-12, err_msg=k)


# ---------------------------------------------------------------------------
# the CuPy module's checks and cost, on the CPU
# ---------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("argument", sorted(ARRAY_ARGUMENTS))
def test_cupy_module_checks_every_array_argument(argument, cpu_cupy, tmp_path):
    """The same refusals as the NumPy module: a ValueError naming the argument, nothing from inside."""
    spec = load_spec("rowmajor")
    ref, mod = _pair(spec, tmp_path)
    rng = np.random.default_rng(0)
    params = ref.init_params(1)
    x, y = rng.standard_normal((3, 3)), rng.uniform(0.1, 0.9, (3, 2))
    out, cache = mod.forward(params, x)
    grads = mod.backward(params, cache, y)
    name = argument.split(": ")[1]
    good = {"x": x, "y": y, "output": out, **{f"params[{k!r}]": v for k, v in params.items()},
            **{f"cache[{k!r}]": v for k, v in cache.items()}, **{f"grads[{k!r}]": v for k, v in grads.items()}}[name]
    for what, make in NOT_ARRAYS.items():
        if what == "transposed" and good.shape[0] == good.shape[1]:
            continue
        with pytest.raises(ValueError, match="^" + re.escape(name) + ": "):
            ARRAY_ARGUMENTS[argument](mod, params, x, y, out, cache, grads, make(good))


def test_cupy_module_reads_strided_inputs_and_caches(cpu_cupy, tmp_path):
    """x, y and a cache that are not C-contiguous reach the kernels as contiguous arrays."""
    spec = load_spec("rowmajor")
    ref, mod = _pair(spec, tmp_path)
    rng = np.random.default_rng(5)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in ref.init_params(2).items()}
    x, y = rng.standard_normal((4, 3)), rng.uniform(0.1, 0.9, (4, 2))
    out, cache = ref.forward(params, x)
    grads = ref.backward(params, cache, y)
    out2, cache2 = mod.forward(params, np.asfortranarray(x))
    strided = {k: np.asfortranarray(v) for k, v in cache2.items()}
    grads2 = mod.backward(params, strided, np.asfortranarray(y))
    np.testing.assert_allclose(out2, out, rtol=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads2[k], grads[k], rtol=1e-12, atol=1e-15, err_msg=k)
    assert mod.cost(out2, np.asfortranarray(y), strided) == pytest.approx(ref.cost(out, y, cache), rel=1e-12)


def test_cupy_cost_from_a_saturated_output_warns_like_numpy(cpu_cupy, tmp_path):
    spec = load_spec("rowmajor")
    ref, mod = _pair(spec, tmp_path)
    params = {k: 1e3 * np.sign(v + 0.5) for k, v in ref.init_params(2).items()}
    x, y = np.ones((2, 3)), np.array([[0.0, 1.0], [1.0, 0.0]])
    out, cache = ref.forward(params, x)
    assert ((out == 0) | (out == 1)).all()
    floored = r"^cost: \d+ output entries .* the cost is not exact"
    with pytest.warns(RuntimeWarning, match=floored):
        plain = mod.cost(out, y)
    with pytest.warns(RuntimeWarning, match=floored):
        want = ref.cost(out, y)
    assert plain == want < mod.cost(out, y, cache) == ref.cost(out, y, cache)


def test_cupy_module_refuses_what_numpy_refuses(cpu_cupy, tmp_path):
    """Another output with the cache, an output no sigmoid gives, a NaN gradient, a bool seed: the same errors."""
    spec = load_spec("rowmajor")
    ref, mod = _pair(spec, tmp_path)
    rng = np.random.default_rng(6)
    params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in ref.init_params(2).items()}
    x, y = rng.standard_normal((4, 3)), rng.uniform(0.1, 0.9, (4, 2))
    out, cache = mod.forward(params, x)
    assert mod.cost(out.copy(), y, cache) == pytest.approx(ref.cost(*ref.forward(params, x)[:1], y, cache), rel=1e-12)
    for module in (ref, mod):
        with pytest.raises(ValueError, match=r"^output: not the output forward returned with cache"):
            module.cost(out * 0 + 0.5, y, cache)
        with pytest.raises(ValueError, match=r"^output: entry \(0, 0\) is .*, expected entries in \[0, 1\]"):
            module.cost(out + 5, y)
        grads = module.backward(params, cache, y)
        grads["b2"][0, 1] = np.nan
        before = {k: v.copy() for k, v in params.items()}
        with pytest.raises(ValueError, match=r"^grads\['b2'\]: contains NaN or inf"):
            module.sgd_step(params, grads, 0.1)
        assert all((params[k] == before[k]).all() for k in params)
        with pytest.raises(ValueError, match=r"^rng: True, expected a seed"):
            module.init_params(True)
