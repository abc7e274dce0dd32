"""The CuPy modules on a real GPU: one prepared check for a session lent one (under 5 minutes on an H100/H200).

    python benchmarks/gpu_check.py [--quick] [--json PATH]

1. agreement: each built-in spec's CuPy module (generated/) against its NumPy module, float64 and
   float32, B in {1, 7, 1000, 100000} (1 for a one-example spec), x, y, params and cache given
   C-ordered, Fortran-ordered and strided: forward, backward, cost and sgd_step. float64 must
   agree to rounding (`float64_close`); float32 must be no farther from the float64 truth than 4
   times the NumPy module's largest float32 error in the array plus 16 float32 ulps of its largest
   entry (`float32_close`).
2. one kernel over more than 2**32 elements: the flag kernel finds the one NaN at the last index
   of a float32 array of 2**32 + 3 entries, and a forward kernel writes its last element right.
3. step time (forward + backward + sgd_step) of nielsen 784-30-10 against the cuBLAS-only bound,
   the five GEMMs any implementation must do, at B = 64, 2**16 and 2**20, float32 and float64
   (target on an H100/H200: time within 1/0.7 of the bound at B >= 2**16 in float32).
4. the overflow case: rowmajor, float32, x = +-3e38 raises ValueError naming z1.

Prints one table per part and exits 0 when every check passes, 1 when one fails, 2 (one line
on stderr) when CuPy or a CUDA device is missing. The parts that need no GPU (`agreement`,
`overflow_case`, `float32_close`, `layouts`) take the array module as an argument, and the
test suite runs them on the CPU build of the CUDA text (tests/test_cuda_gpu_check.py).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SPECS = ("net222", "nielsen", "nobias3", "rowmajor")
BATCHES = (1, 7, 1000, 100000)
LAYOUTS = ("C", "F", "strided")
STEP_BATCHES = (64, 2**16, 2**20)
TARGET = 0.7  # bound / step time at B >= 2**16 in float32


def float32_close(got, want, truth) -> tuple[bool, float]:
    """(whether got is within the float32 bound, the largest |got - truth|): no entry of got farther from the
    float64 truth than 4 times the NumPy module's largest float32 error in that array (want), plus 16 float32
    ulps of the array's largest entry. A fixed rtol is wrong here: 1 - a*a near a = 1 (a saturated tanh) keeps
    no relative precision, and cuBLAS sums a batch in another order than NumPy's BLAS."""
    got, want, truth = (np.asarray(v, dtype=np.float64) for v in (got, want, truth))
    eps = float(np.finfo(np.float32).eps)
    bound = 4 * np.abs(want - truth).max() + 16 * eps * (np.abs(truth).max() + float(np.finfo(np.float32).tiny))
    error = np.abs(got - truth)
    return bool((error <= bound).all()), float(error.max())


def float64_close(got, want) -> tuple[bool, float]:
    """(whether got equals want to rounding, the largest |got - want|): 1e-9 relative, or 1e-10 of the array's
    largest entry where a sum over the batch cancels (cuBLAS and NumPy's BLAS sum in other orders)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    error = np.abs(got - want)
    return bool((error <= 1e-9 * np.abs(want) + 1e-10 * (np.abs(want).max() + 1e-300)).all()), float(error.max())


def layouts(xp, a, layout):
    """The same values on the device as a C-ordered, Fortran-ordered or strided (every other row and column) array."""
    a = xp.asarray(a)
    if layout == "C":
        return xp.ascontiguousarray(a)
    if layout == "F":
        return xp.asfortranarray(a)
    wide = xp.full((2 * a.shape[0], 2 * a.shape[1]), np.nan, dtype=a.dtype)
    wide[::2, ::2] = a
    return wide[::2, ::2]


def agreement(xp, ref, mod, spec, dtype, B, layout, seed=1) -> dict:
    """One row of part 1: the CuPy module `mod` (arrays of `xp`) against the NumPy module `ref`."""
    rng = np.random.default_rng(seed)
    truth_params = {k: v + 0.1 * rng.standard_normal(v.shape) for k, v in ref.init_params(3).items()}
    x64 = rng.standard_normal((B, spec.sizes[0]))
    y64 = rng.uniform(0.1, 0.9, (B, spec.sizes[-1]))
    if spec.cost == "log_likelihood":
        y64 = np.eye(spec.sizes[-1])[rng.integers(0, spec.sizes[-1], B)]
    truth_out, truth_cache = ref.forward(truth_params, x64)
    truth_grads = ref.backward(truth_params, truth_cache, y64)
    params = {k: v.astype(dtype) for k, v in truth_params.items()}
    x, y = x64.astype(dtype), y64.astype(dtype)
    out, cache = ref.forward({k: v.copy() for k, v in params.items()}, x)
    grads = ref.backward(params, cache, y)
    host = getattr(xp, "asnumpy", np.asarray)
    given = {k: layouts(xp, v, layout) for k, v in params.items()}
    out2, cache2 = mod.forward(given, layouts(xp, x, layout))
    grads2 = mod.backward(given, {k: layouts(xp, host(v), layout) for k, v in cache2.items()}, layouts(xp, y, layout))
    results = [("output", out2, out, truth_out)]
    results += [(f"cache[{k!r}]", cache2[k], cache[k], truth_cache[k]) for k in cache]
    results += [(f"grads[{k!r}]", grads2[k], grads[k], truth_grads[k]) for k in grads]
    failed, worst = [], 0.0
    for what, got, want, truth in results:
        got = host(got)
        if got.dtype != dtype or got.shape != want.shape:
            failed.append(f"{what}: {got.dtype} {got.shape}, expected {np.dtype(dtype)} {want.shape}")
            continue
        ok, error = float64_close(got, want) if dtype == np.float64 else float32_close(got, want, truth)
        worst = max(worst, error)
        if not ok:
            failed.append(f"{what}: off by {error:.3g}")
    rel = 1e-10 if dtype == np.float64 else 1e-3
    c, c2 = ref.cost(out, y, cache), mod.cost(out2, layouts(xp, y, layout), cache2)
    if abs(c2 - c) > rel * (1 + abs(c)):
        failed.append(f"cost: {c2!r}, NumPy {c!r}")
    stepped = {k: v.copy() for k, v in params.items()}
    stepped2 = {k: xp.asarray(v).copy() for k, v in params.items()}
    ref.sgd_step(stepped, grads, 0.5)
    mod.sgd_step(stepped2, grads2, 0.5)
    for k in stepped:
        if not np.allclose(host(stepped2[k]), stepped[k], rtol=rel, atol=rel):
            failed.append(f"sgd_step: params[{k!r}] differs")
    return dict(spec=spec.name, dtype=np.dtype(dtype).name, B=B, layout=layout, worst=worst, failed=failed)


def overflow_case(xp, ref, mod) -> dict:
    """Part 4: rowmajor, float32, a finite x whose z1 overflows is refused by both modules with the same message."""
    params = {k: v.astype(np.float32) + np.float32(1) for k, v in ref.init_params(0).items()}
    x = np.array([[3e38, -3e38, 3e38], [3e38, 3e38, 3e38]], dtype=np.float32)
    messages = []
    for module, arrays in ((ref, np.asarray), (mod, xp.asarray)):
        try:
            module.forward({k: arrays(v) for k, v in params.items()}, arrays(x))
            messages.append(None)
        except ValueError as exc:
            messages.append(str(exc))
    ok = messages[0] is not None and messages[0] == messages[1] and messages[0].startswith("z1: overflowed")
    return dict(numpy=messages[0], cupy=messages[1], failed=[] if ok else [f"messages {messages}"])


# ---------------------------------------------------------------------------
# the parts that need the GPU
# ---------------------------------------------------------------------------

def _modules(name):
    return importlib.import_module(f"generated.{name}_numpy"), importlib.import_module(f"generated.{name}_cupy")


def part_agreement(cupy, quick) -> list[dict]:
    from derive.spec import load_spec

    rows = []
    for name in SPECS:
        ref, mod = _modules(name)
        spec = load_spec(name)
        for dtype in (np.float64, np.float32):
            for B in (1,) if spec.batch == "single" else BATCHES[:3] if quick else BATCHES:
                for layout in LAYOUTS:
                    rows.append(agreement(cupy, ref, mod, spec, dtype, B, layout))
    return rows


def part_big_kernel(cupy) -> list[dict]:
    """A kernel over 2**32 + 3 elements: the flag kernel, and nielsen's forward kernel (sigmoid(b + z))."""
    ref, mod = _modules("nielsen")
    n = 2**32 + 3
    a = cupy.zeros(n, dtype=np.float32)
    a[-1] = np.nan
    flags = cupy.zeros(1, dtype=np.uint32)
    mod._flag(a, flags, 0)
    flagged = mod._first_flag(flags) == 0
    del a
    cols = mod.SIZES[1]
    rows = -(-n // cols)
    z = cupy.full((rows, cols), 0.5, dtype=np.float32)
    z[-1, -1] = 2.0
    out = cupy.empty_like(z)
    b = cupy.zeros((cols, 1), dtype=np.float32)
    mod._run("forward_a1", out, out, b, z, cupy.zeros(2, dtype=np.uint32))
    last, first = float(out[-1, -1]), float(out[0, 0])
    want_last, want_first = 1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(-0.5))
    ok = flagged and abs(last - want_last) < 1e-6 and abs(first - want_first) < 1e-6
    return [dict(elements=rows * cols, flag_at_last=flagged, last=last, want=want_last,
                 failed=[] if ok else ["a kernel over 2**32 elements did not reach its last element"])]


def part_step_time(cupy, quick) -> list[dict]:
    """Step time (forward, backward, sgd_step) against the five GEMMs of nielsen 784-30-10, wall time, synchronised."""
    _, mod = _modules("nielsen")
    rows = []
    for dtype in (np.float32, np.float64):
        for B in STEP_BATCHES[:2] if quick else STEP_BATCHES:
            params = {k: cupy.asarray(v) for k, v in mod.init_params(0, dtype).items()}
            x = cupy.random.random((B, mod.SIZES[0])).astype(dtype)
            y = cupy.random.random((B, mod.SIZES[-1])).astype(dtype)
            W1, W2 = params["W1"], params["W2"]

            def gemms():  # z1 = x W1ᵀ, z2 = a1 W2ᵀ, delta1 = delta2 W2, dW2 = delta2ᵀ a1, dW1 = delta1ᵀ x
                z1 = x @ W1.T
                z2 = z1 @ W2.T
                d1 = z2 @ W2
                return z2.T @ z1, d1.T @ x

            def step():
                out, cache = mod.forward(params, x)
                mod.sgd_step(params, mod.backward(params, cache, y), 1e-3)

            times = {}
            for label, fn in (("gemm", gemms), ("step", step)):
                fn()
                cupy.cuda.Device().synchronize()
                best = float("inf")
                for _ in range(5):
                    start = time.perf_counter()
                    for _ in range(3):
                        fn()
                    cupy.cuda.Device().synchronize()
                    best = min(best, (time.perf_counter() - start) / 3)
                times[label] = best
            ratio = times["gemm"] / times["step"]
            ok = not (dtype == np.float32 and B >= 2**16 and ratio < TARGET)
            rows.append(dict(dtype=np.dtype(dtype).name, B=B, gemm_us=times["gemm"] * 1e6, step_us=times["step"] * 1e6,
                             bound_over_step=ratio, failed=[] if ok else [f"bound/step {ratio:.2f} < {TARGET}"]))
    return rows


def _print(title, rows):
    print(f"\n{title}")
    if not rows:
        return
    keys = [k for k in rows[0] if k != "failed"] + ["ok"]
    print(" | ".join(keys))
    for row in rows:
        cells = [f"{row[k]:.3g}" if isinstance(row[k], float) else str(row[k]) for k in keys[:-1]]
        print(" | ".join(cells + ["ok" if not row["failed"] else "; ".join(row["failed"])]))


def gpu_reason() -> str | None:
    """Why there is no GPU to check on, or None."""
    try:
        import cupy
    except ImportError:
        return "CuPy is not installed (pip install '.[cupy]')"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return "no CUDA device"
    except Exception as exc:  # noqa: BLE001 - any driver error means no usable device
        return f"no usable CUDA device ({type(exc).__name__})"
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="B up to 1000 and step times up to 2**16")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    reason = gpu_reason()
    if reason is not None:
        print(f"gpu_check: {reason}; nothing checked", file=sys.stderr)
        return 2
    import cupy

    started = time.perf_counter()
    ref, mod = _modules("rowmajor")
    parts = {
        "agreement (CuPy vs NumPy)": part_agreement(cupy, args.quick),
        "one kernel over 2**32 elements": part_big_kernel(cupy),
        "step time / cuBLAS bound (nielsen 784-30-10)": part_step_time(cupy, args.quick),
        "overflow (rowmajor, float32, x = +-3e38)": [overflow_case(cupy, ref, mod)],
    }
    device = cupy.cuda.runtime.getDeviceProperties(0)["name"]
    print(f"device: {device.decode() if isinstance(device, bytes) else device}")
    for title, rows in parts.items():
        _print(title, rows)
    failed = sum(bool(row["failed"]) for rows in parts.values() for row in rows)
    print(f"\n{failed} failed; {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(parts, indent=1, default=str), encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
