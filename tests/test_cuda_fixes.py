"""What only a GPU would show in the CuPy modules, checked on the CPU build of their CUDA text and with NVRTC:
non-finite values flagged, never lost (NaN through ReLU); launches sized by the array written; small
powers as products; bias gradients as products with ones; one transfer per call; the float32 bound.
Also that the CPU build refuses what a GPU would get silently wrong, and the GPU check script's CPU parts.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import cuda_cpu
from cuda_cpu import nvrtc
from derive.spec import load_spec
from test_codegen_cuda import (DRAWN, ROOT, SPECS, _mixed_spec, _pair, _relu_tanh_spec, _spec, generated_files, gpu_check,
                               use_cpu_build)

GENERATED = ROOT / "generated"
# the stand-in cupy is NumPy, which warns where cuBLAS overflows silently; the modules' own checks are tested
pytestmark = [pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]
NVRTC = nvrtc.library_path()
needs_nvrtc = pytest.mark.skipif(NVRTC is None, reason="libnvrtc not found: pip install '.[nvrtc]' (the "
                                 "nvidia-cuda-nvrtc wheel, no GPU needed) or install the CUDA toolkit")


@pytest.fixture
def cpu_cupy(monkeypatch):
    return use_cpu_build(monkeypatch)


def _sources():
    """Every checked-in .cu file, and those of the mixed, relu-tanh and drawn specs."""
    texts = {p.name: p.read_text() for p in sorted(GENERATED.glob("*_kernels.cu"))}
    for spec in (_mixed_spec(), _relu_tanh_spec(), *DRAWN.values()):
        name = f"{spec.name}_kernels.cu"
        texts[name] = generated_files(spec)[name]
    return texts


def _entries(ptx: str) -> dict[str, str]:
    """The PTX of each kernel, by name."""
    parts = re.split(r"\.visible \.entry (\w+)\(", ptx)
    return dict(zip(parts[1::2], parts[2::2]))


# ---------------------------------------------------------------------------
# NVRTC, as CuPy calls it
# ---------------------------------------------------------------------------

@needs_nvrtc
def test_nvrtc_compiles_every_kernel_with_cupys_options_and_no_warning():
    texts = _sources()
    assert len(texts) == len(SPECS) + 2 + len(DRAWN)
    for name, text in texts.items():
        ptx, log = nvrtc.compile_ptx(text, name, NVRTC)
        assert log == "", f"{name}: NVRTC says\n{log}"
        kernels = re.findall(r'extern "C" __global__ void (\w+)\(', text)
        assert kernels and sorted(_entries(ptx)) == sorted(kernels), name


@needs_nvrtc
def test_nvrtc_warnings_are_seen():
    """The check above can fail: an unused variable is a warning in NVRTC's log."""
    _, log = nvrtc.compile_ptx('extern "C" __global__ void k(float* p) { int unused; p[0] = 1.0f; }', "k.cu", NVRTC)
    assert "warning" in log and "unused" in log


@needs_nvrtc
def test_small_powers_compile_to_products():
    """Item 3: tanh' = 1 - a*a, and no kernel calls pow: its float version is a long library sequence."""
    texts = _sources()
    for name, text in texts.items():
        assert not re.search(r"\bpowf?\(", text), name
    text = texts["reluce_kernels.cu"]
    assert "(a2*a2)" in text
    tanh_prime = _entries(nvrtc.compile_ptx(text, "reluce_kernels.cu", NVRTC)[0])["reluce_backward_delta2_f32"]
    as_pow = 'extern "C" __global__ void k(float* p) { p[0] = 1 - powf(p[0], 2); }'
    pow_ptx = _entries(nvrtc.compile_ptx(as_pow, "k.cu", NVRTC)[0])["k"]
    assert _instructions(tanh_prime) < 40 < 100 < _instructions(pow_ptx)  # 124 for powf alone (NVRTC 13.5)


def _instructions(ptx: str) -> int:
    """PTX instructions (tab-indented lines that are not directives)."""
    return sum(1 for line in ptx.splitlines() if re.match(r"^\t[a-z]", line))


# ---------------------------------------------------------------------------
# the CPU build refuses what a GPU would get silently wrong
# ---------------------------------------------------------------------------

KERNEL = '''extern "C" __global__ void k(double* p_out, const double* p_b, const double s, const long long size,
                                     const long long cols)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size) {
        return;
    }
    p_out[i] = p_b[i % cols] * s + (double)(i / cols);
}
'''


def test_cpu_build_launches_over_grid_and_block(cpu_cupy):
    f = cpu_cupy.RawModule(code=KERNEL).get_function("k")
    out, b = np.zeros((5, 3)), np.array([1.0, 2.0, 3.0])
    f((2,), (8,), (out, b, np.float64(2.0), np.int64(15), np.int64(3)))
    np.testing.assert_array_equal(out, 2 * b + np.arange(5)[:, None])


@pytest.mark.parametrize("bad, error", [
    (lambda out, b: (np.zeros((3, 5)).T, b, np.float64(2), np.int64(15), np.int64(3)), "not C-contiguous"),
    (lambda out, b: (out.astype(np.float32), b, np.float64(2), np.int64(15), np.int64(3)), "is double\\*, got an array of float32"),
    (lambda out, b: (out, b, np.float32(2), np.int64(15), np.int64(3)), "s is double, got float32"),
    (lambda out, b: (out, b, np.float64(2), np.int32(15), np.int64(3)), "size is long long, got int32"),
    (lambda out, b: (out[:4], b, np.float64(2), np.int64(15), np.int64(3)), "p_out\\[i\\] reaches 15 elements"),
    (lambda out, b: (out, b[:2], np.float64(2), np.int64(15), np.int64(3)), "p_b\\[i % cols\\] reaches 3 elements"),
    (lambda out, b: (out, b, np.float64(2), np.int64(15)), "4 arguments for 5 parameters"),
])
def test_cpu_build_refuses_what_a_gpu_would_misread(bad, error, cpu_cupy):
    f = cpu_cupy.RawModule(code=KERNEL).get_function("k")
    with pytest.raises((TypeError, ValueError, IndexError), match=error):
        f((2,), (8,), bad(np.zeros((5, 3)), np.array([1.0, 2.0, 3.0])))


def test_a_wrong_kernel_is_caught(cpu_cupy, tmp_path):
    """The comparison can fail: a kernel that reads the bias of column 0 for every column differs from NumPy."""
    spec = load_spec("rowmajor")
    ref, mod = _pair(spec, tmp_path)
    mod._KERNELS = str(tmp_path / "wrong_kernels.cu")
    (tmp_path / "wrong_kernels.cu").write_text((GENERATED / "rowmajor_kernels.cu").read_text().replace("[i % cols]", "[0]"))
    mod._MODULE.clear()
    mod._FUNCTIONS.clear()
    row = gpu_check.agreement(cpu_cupy, ref, mod, spec, np.float64, 4, "C")
    assert any(f.startswith("output") for f in row["failed"]), row


# ---------------------------------------------------------------------------
# item 1: no silent non-finite result
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("which", SPECS + ["drawn7", "drawn8"])
def test_an_overflowing_z_is_refused_like_numpy(which, cpu_cupy, tmp_path):
    """float32, a finite x whose z1 overflows: the same ValueError from both modules, and a NaN in x names x."""
    spec = _spec(which)
    ref, mod = _pair(spec, tmp_path)
    params = {k: v.astype(np.float32) + np.float32(1) for k, v in ref.init_params(0).items()}
    x = np.full((1 if spec.batch == "single" else 2, spec.sizes[0]), 3e38, dtype=np.float32)
    messages = []
    for module in (ref, mod):
        with pytest.raises(ValueError) as caught:
            module.forward(params, x)
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and messages[0].startswith("z1: overflowed to inf from finite x and params")
    x[0, -1] = np.nan
    for module in (ref, mod):
        with pytest.raises(ValueError, match=r"^x: contains NaN or inf"):
            module.forward(params, x)


def test_the_overflow_case_of_the_gpu_check(cpu_cupy):
    ref, mod = _pair(load_spec("rowmajor"), None)
    row = gpu_check.overflow_case(cpu_cupy, ref, mod)
    assert row["failed"] == [] and row["cupy"].startswith("z1: overflowed"), row


def test_a_nan_stays_nan_through_relu_and_its_derivative(cpu_cupy):
    """fmax(0, NaN) is 0 in CUDA: the kernels use numpy.maximum's NaN rule, and the NaN is flagged too."""
    ref, mod = _pair(load_spec("rowmajor"), None)
    z = np.array([[np.nan, -1.0, 2.0, 0.0]])
    a, flags = np.empty_like(z), np.zeros(3, dtype=np.uint32)
    mod._run("forward_z1_a1", z, a, z, np.zeros((1, 4)), flags)
    assert np.isnan(a[0, 0]) and list(a[0, 1:]) == [0.0, 2.0, 0.0] and list(flags) == [1, 0, 0]
    rng = np.random.default_rng(3)
    params = ref.init_params(1)
    x, y = rng.standard_normal((3, 3)), rng.uniform(0.1, 0.9, (3, 2))
    grads = {}
    for module in (ref, mod):
        out, cache = module.forward(params, x)
        cache["z1"] = cache["z1"].copy()
        cache["z1"][1, 2] = np.nan  # a cache from elsewhere: backward reads it as given
        grads[module] = module.backward(params, cache, y)
    for k in grads[ref]:
        np.testing.assert_array_equal(np.isnan(grads[mod][k]), np.isnan(grads[ref][k]), err_msg=k)
    assert np.isnan(grads[mod]["W1"]).any()


@pytest.mark.parametrize("which", ["rowmajor", "drawn8"])
def test_an_overflow_in_the_last_layer_is_refused_like_numpy(which, cpu_cupy, tmp_path):
    """z{L} overflows, z1 ... z{L-1} do not. drawn8 has a softmax output and no bias: no kernel reads z{L},
    and the flag kernel checks it on its own before softmax overwrites it."""
    spec = _spec(which)
    ref, mod = _pair(spec, tmp_path)
    L = len(spec.sizes) - 1
    params = {k: np.ones_like(v, dtype=np.float32) for k, v in ref.init_params(0).items()}
    params[f"W{L}"] *= np.float32(3e38)
    x = np.ones((2, spec.sizes[0]), dtype=np.float32)
    for module in (ref, mod):
        with pytest.raises(ValueError, match=rf"^z{L}: overflowed to inf from finite x and params"):
            module.forward(params, x)
    if which == "drawn8":
        assert f"_flag(z{L}, flags, {L - 1})" in (tmp_path / "drawn8_cupy.py").read_text()


@pytest.mark.parametrize("which", ["rowmajor", "nielsen", "drawn8"])
def test_a_target_with_nan_is_refused_by_backward_and_cost(which, cpu_cupy, tmp_path):
    """drawn8 (softmax, quadratic cost): BP1's kernel reads a row sum and y."""
    spec = _spec(which)
    ref, mod = _pair(spec, tmp_path)
    rng = np.random.default_rng(0)
    params = ref.init_params(1)
    x, y = rng.standard_normal((2, spec.sizes[0])), rng.uniform(0.1, 0.9, (2, spec.sizes[-1]))
    y[1, 0] = np.inf
    for module in (ref, mod):
        out, cache = module.forward(params, x)
        with pytest.raises(ValueError, match=r"^y: contains NaN or inf"):
            module.backward(params, cache, y)
        with pytest.raises(ValueError, match=r"^y: contains NaN or inf"):
            module.cost(out, y, cache)


# ---------------------------------------------------------------------------
# item 2: launches sized by the array written; the cache checked
# ---------------------------------------------------------------------------

def test_every_launch_is_sized_by_an_array_it_writes():
    for name in SPECS:
        text = (GENERATED / f"{name}_cupy.py").read_text()
        launches = re.findall(r"_run\('(\w+)', (\w+), (\w+)", text)
        assert launches, name
        for kernel, like, first in launches:
            assert like == first, f"{name}: {kernel} is sized by {like}, but writes {first} first"


@pytest.mark.parametrize("change, error", [
    (lambda v: np.vstack([v, v]), r"^cache\['a1'\]: shape \(6, 4\), expected \(3, 4\)"),
    (lambda v: v.astype(np.float32), r"^cache\['a1'\]: dtype float32 \(shape \(3, 4\)\), expected float64"),
])
def test_a_cache_from_another_batch_or_dtype_is_refused(change, error, cpu_cupy):
    ref, mod = _pair(load_spec("rowmajor"), None)
    rng = np.random.default_rng(2)
    params = ref.init_params(1)
    x, y = rng.standard_normal((3, 3)), rng.uniform(0.1, 0.9, (3, 2))
    for module in (ref, mod):
        _, cache = module.forward(params, x)
        with pytest.raises(ValueError, match=error):
            module.backward(params, {**cache, "a1": change(cache["a1"])}, y)


# ---------------------------------------------------------------------------
# items 4 and 5: bias gradients as cuBLAS products; one transfer per call
# ---------------------------------------------------------------------------

def test_bias_gradients_are_products_with_ones():
    for name in SPECS:
        text = (GENERATED / f"{name}_cupy.py").read_text()
        assert ".sum(axis=0" not in text and ".sum(axis=1, keepdims=True)\n" not in text.split("def cost")[0], name
        spec = load_spec(name)
        if spec.bias == "separate":
            assert re.search(r"dC_db1 = (ones_B\.T @ delta1|delta1\.T @ ones_B)", text), name


@pytest.mark.parametrize("name", SPECS)
def test_one_transfer_per_call_and_no_boolean_arrays(name, cpu_cupy, monkeypatch):
    ref, mod = _pair(load_spec(name), None)
    calls = []
    for fn in ("asnumpy", "isfinite", "stack"):
        real = getattr(cpu_cupy, fn)
        monkeypatch.setattr(cpu_cupy, fn, lambda *a, _real=real, _fn=fn, **k: calls.append(_fn) or _real(*a, **k))
    rng = np.random.default_rng(1)
    B = 1 if load_spec(name).batch == "single" else 64
    params = ref.init_params(1)
    x, y = rng.standard_normal((B, ref.SIZES[0])), rng.uniform(0.1, 0.9, (B, ref.SIZES[-1]))
    out, cache = mod.forward(params, x)
    assert calls == ["asnumpy"]
    grads = mod.backward(params, cache, y)
    assert calls == ["asnumpy"] * 2
    mod.sgd_step(params, grads, 0.1)
    assert calls == ["asnumpy"] * 3


# ---------------------------------------------------------------------------
# item 6 and the GPU check script
# ---------------------------------------------------------------------------

def test_float32_bound_follows_the_numpy_error_not_a_fixed_rtol():
    truth = np.array([1.0, 1e-3, 0.5])
    want = truth + np.array([0.0, 1e-6, 0.0])  # NumPy's float32 result, off where it rounds
    ok, _ = gpu_check.float32_close(truth + np.array([0.0, 1.5e-6, 3e-6]), want, truth)
    assert ok  # 1.5e-6 on an entry of 1e-3 (rtol 1.5e-3) is as good as NumPy's own float32 result
    ok, error = gpu_check.float32_close(truth + np.array([0.0, 0.0, 1e-5]), want, truth)
    assert not ok and error == pytest.approx(1e-5)
    assert gpu_check.float64_close(truth * (1 + 1e-12), truth)[0] and not gpu_check.float64_close(truth + 1e-6, truth)[0]


@pytest.mark.parametrize("layout", gpu_check.LAYOUTS)
def test_gpu_check_agreement_runs_on_the_cpu_build(layout, cpu_cupy):
    ref, mod = _pair(load_spec("nielsen"), None)
    for dtype in (np.float64, np.float32):
        row = gpu_check.agreement(cpu_cupy, ref, mod, load_spec("nielsen"), dtype, 7, layout)
        assert row["failed"] == [] and row["B"] == 7, row


def test_gpu_check_without_a_gpu_says_so_in_one_line():
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py")], capture_output=True, text=True,
                       cwd=ROOT)
    if gpu_check.gpu_reason() is None:
        pytest.skip("a GPU is here: the script would run")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("gpu_check: ") and "nothing checked" in r.stderr


def test_cpu_build_needs_a_compiler_it_can_name(monkeypatch):
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    assert cuda_cpu.compiler() != "/nonexistent/c++"
