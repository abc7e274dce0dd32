"""Speed of the generated NumPy module: one forward + backward, as a ratio to a GEMM-only bound.

    python benchmarks/bench_codegen.py [--quick] [--threads N] [--json PATH]

For 784-30-10 (generated/nielsen_numpy.py, checked in) and 784-256-256-10 (the same spec at
those widths, generated into a temporary folder), float64 and float32, batch sizes 1, 10,
128 and 1024, every implementation computes the same thing: sigmoid layers, quadratic cost
averaged over the batch, the gradient of every W and b. Each time is a ratio to the GEMM
bound measured in the same run: only the matrix products any implementation must do
(L forward products, L-1 error products, L weight-gradient products) on arrays that are
already initialised. Implementations run interleaved, round after round, and each keeps its
best round; the clock is the CPU time of this process (all its threads) unless --clock wall,
which is what a shared machine measures least noisily. A GPU run (CuPy) uses wall time,
synchronised.

  generated   generated/<spec>_numpy.py: forward() then backward(), input checks included
  numpy       a plain hand-written NumPy backprop, as one writes it from the equations
  bare        the fewest NumPy calls: no checks, no overflow guard, 1/B applied once
  torch       PyTorch CPU autograd (loss.backward())
  jax         jax.jit(jax.grad(loss)), block_until_ready()
  torch mod   generated/<spec>_torch.py: forward() then backward() on CPU tensors, input checks included
  jax mod     generated/<spec>_jax.py: jax.jit of forward() then backward(), block_until_ready()

The last two columns are the generated PyTorch and JAX modules' times over their framework's
own autograd in the same run (below 1: faster; the issue's target is at most 1 at B >= 128
and below 1 at B = 1 and 10).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def configure_threads(n: int) -> None:
    """Before NumPy, PyTorch and JAX load their thread pools: n threads each."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(n))
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1 and "intra_op_parallelism_threads" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1").strip()


def load_module(spec, backend="numpy"):
    """The spec's module for `backend` (its kernels too), printed from the proof of its forms into a temporary
    folder and imported (load_generated proves them first)."""
    from codegen import load_generated

    return load_generated(spec, Path(tempfile.mkdtemp(prefix="bench_codegen_")), backend)


# ---------------------------------------------------------------------------
# the implementations (column convention, as the nielsen spec: W is n_l x n_(l-1), b is n_l x 1)
# ---------------------------------------------------------------------------

def gemm_bound(params, x, y, L, tdot):
    """Only the products: z_l = a_(l-1) W_l^T, delta_(l-1) = delta_l W_l, dC/dW_l = delta_l^T a_(l-1).

    The weight gradients go through the module's tdot, which is u.T @ v except for one row,
    where einsum beats OpenBLAS's K = 1 product several times over.
    """
    xp = sys.modules[type(x).__module__.split(".")[0]]  # numpy, or cupy on a GPU
    B, dt = x.shape[0], x.dtype
    Ws = [params[f"W{l}"] for l in range(1, L + 1)]
    acts = [x] + [xp.random.random((B, W.shape[0])).astype(dt) for W in Ws]
    deltas = [None] + [xp.random.random((B, W.shape[0])).astype(dt) for W in Ws]

    def run():
        for l in range(1, L + 1):
            acts[l - 1] @ Ws[l - 1].T
        for l in range(L, 1, -1):
            deltas[l] @ Ws[l - 1]
        for l in range(1, L + 1):
            tdot(deltas[l], acts[l - 1])

    return run


def generated(module, params, x, y):
    def run():
        out, cache = module.forward(params, x)
        return module.backward(params, cache, y)

    return run


def numpy_plain(params, x, y, L):
    """A plain NumPy backprop, written as the equations read (Nielsen's network.py, batch-first)."""
    import numpy as np

    def run():
        B = x.shape[0]
        a, acts = x, [x]
        for l in range(1, L + 1):
            z = a @ params[f"W{l}"].T + params[f"b{l}"].T
            a = 1 / (1 + np.exp(-z))
            acts.append(a)
        delta = (a - y) * a * (1 - a)
        grads = {}
        for l in range(L, 0, -1):
            grads[f"W{l}"] = delta.T @ acts[l - 1] / B
            grads[f"b{l}"] = delta.sum(axis=0, keepdims=True).T / B
            if l > 1:
                delta = (delta @ params[f"W{l}"]) * acts[l - 1] * (1 - acts[l - 1])
        return grads

    return run


def numpy_bare(params, x, y, L, tdot):
    """The fewest NumPy calls this computation takes, and nothing else: no input checks, no
    finiteness test, no overflow guard (exp(z) may overflow and warn), 1/B applied once to
    delta^L, the batch sums as matrix-vector products, the weight gradients through the
    module's tdot like the GEMM bound. What validation and stability cost is the distance
    from this column to `generated`."""
    import numpy as np

    def run():
        a, acts = x, [x]
        for l in range(1, L + 1):
            z = a @ params[f"W{l}"].T
            z += params[f"b{l}"].T
            t = np.exp(z)
            a = t / (t + 1)
            acts.append(a)
        delta = a - y
        delta *= a - a * a
        delta *= 1.0 / x.shape[0]
        ones = np.ones(x.shape[0], dtype=x.dtype)
        grads = {}
        for l in range(L, 0, -1):
            grads[f"W{l}"] = tdot(delta, acts[l - 1])
            grads[f"b{l}"] = (ones @ delta)[:, None]
            if l > 1:
                delta = delta @ params[f"W{l}"]
                delta *= acts[l - 1] - acts[l - 1] * acts[l - 1]
        return grads

    return run


def torch_autograd(params, x, y, L):
    import torch

    P = {k: torch.from_numpy(v.copy()).requires_grad_(True) for k, v in params.items()}
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        for p in P.values():
            p.grad = None
        a = X
        for l in range(1, L + 1):
            a = torch.sigmoid(a @ P[f"W{l}"].T + P[f"b{l}"].T)
        loss = 0.5 * ((a - Y) ** 2).sum() / X.shape[0]
        loss.backward()
        return {k: p.grad for k, p in P.items()}

    return run


def torch_module(module, params, x, y):
    """The generated PyTorch module's forward() and backward(), on CPU tensors sharing the NumPy arrays."""
    import torch

    P = {k: torch.from_numpy(v) for k, v in params.items()}
    X, Y = torch.from_numpy(x), torch.from_numpy(y)

    def run():
        out, cache = module.forward(P, X)
        return module.backward(P, cache, Y)

    return run


def jax_module(module, params, x, y):
    """The generated JAX module's forward() and backward() under one jax.jit (its checks run while tracing)."""
    import jax
    import jax.numpy as jnp

    def grads(P, X, Y):
        out, cache = module.forward(P, X)
        return module.backward(P, cache, Y)

    step = jax.jit(grads)
    P = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = jnp.asarray(x), jnp.asarray(y)
    step(P, X, Y)  # compile outside the timing

    def run():
        return jax.block_until_ready(step(P, X, Y))

    return run


def jax_jit(params, x, y, L):
    import jax
    import jax.numpy as jnp

    def loss(P, X, Y):
        a = X
        for l in range(1, L + 1):
            a = jax.nn.sigmoid(a @ P[f"W{l}"].T + P[f"b{l}"].T)
        return 0.5 * jnp.sum((a - Y) ** 2) / X.shape[0]

    grad = jax.jit(jax.grad(loss))
    P = {k: jnp.asarray(v) for k, v in params.items()}
    X, Y = jnp.asarray(x), jnp.asarray(y)
    grad(P, X, Y)  # compile outside the timing

    def run():
        return jax.block_until_ready(grad(P, X, Y))

    return run


def bench_cupy(console, nets, batches, rounds) -> list[dict]:
    """The CuPy modules against a cuBLAS GEMM bound, on a GPU; skipped with the reason elsewhere."""
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as exc:  # noqa: BLE001 - ImportError, or any driver error
        console.print(f"CuPy: skipped ({type(exc).__name__}: {exc})")
        return []
    import numpy as np
    from rich.table import Table

    from derive.spec import load_spec

    table = Table(title="CuPy: forward + backward on the GPU, time / cuBLAS GEMM bound")
    for col in ("network", "dtype", "B", "GEMM bound", "generated (CuPy)"):
        table.add_column(col, justify="right")
    rows = []
    for label, module in nets:
        name = module.NAME
        cupy_module = (importlib.import_module(f"generated.{name}_cupy") if name == "nielsen"
                       else load_module(load_spec("nielsen").with_sizes(tuple(module.SIZES)), "cupy"))
        L = len(module.SIZES) - 1
        for dtype in (np.float64, np.float32):
            for B in batches:
                params = {k: cupy.asarray(v) for k, v in module.init_params(0, dtype).items()}
                x = cupy.random.random((B, module.SIZES[0])).astype(dtype)
                y = cupy.random.random((B, module.SIZES[-1])).astype(dtype)
                bound = gemm_bound(params, x, y, L, lambda u, v: u.T @ v)
                gen = generated(cupy_module, params, x, y)

                def synced(f):
                    def run():
                        f()
                        cupy.cuda.Device().synchronize()
                    return run

                t = best_times({"gemm": synced(bound), "generated": synced(gen)}, rounds, 0.02, time.perf_counter)
                rows.append(dict(network=label, dtype=np.dtype(dtype).name, batch=B, backend="cupy",
                                 gemm_us=t["gemm"] * 1e6, generated_ratio=t["generated"] / t["gemm"]))
                table.add_row(label, np.dtype(dtype).name, str(B), f"{t['gemm'] * 1e6:.1f} µs",
                              f"{t['generated'] / t['gemm']:.2f}")
    console.print(table)
    rows += bench_cupy_bias(console, cupy, batches, rounds)
    return rows


def bench_cupy_bias(console, cupy, batches, rounds) -> list[dict]:
    """A bias gradient over the batch, delta (B, 30): CuPy's reduction over the strided axis (at most 30 blocks,
    whatever B) against the product with a column of ones (a cuBLAS matrix-vector call), which the modules print."""
    import numpy as np
    from rich.table import Table

    table = Table(title="CuPy: bias gradient of a (B, 30) delta, time / product with ones")
    for col in ("dtype", "B", "ones_B.T @ delta", "delta.sum(axis=0)"):
        table.add_column(col, justify="right")
    rows = []
    for dtype in (np.float32, np.float64):
        for B in sorted(set(batches) | {2**16, 2**20}):
            delta = cupy.random.random((B, 30)).astype(dtype)
            ones = cupy.ones((B, 1), dtype=dtype)

            def synced(f):
                def run():
                    f()
                    cupy.cuda.Device().synchronize()
                return run

            t = best_times({"ones": synced(lambda: ones.T @ delta), "sum": synced(lambda: delta.sum(axis=0, keepdims=True))},
                           rounds, 0.02, time.perf_counter)
            rows.append(dict(dtype=np.dtype(dtype).name, batch=B, backend="cupy", bias_ones_us=t["ones"] * 1e6,
                             bias_sum_ratio=t["sum"] / t["ones"]))
            table.add_row(np.dtype(dtype).name, str(B), f"{t['ones'] * 1e6:.1f} µs", f"{t['sum'] / t['ones']:.2f}")
    console.print(table)
    return rows


# ---------------------------------------------------------------------------

CLOCK = time.process_time


def best_times(funcs: dict, rounds: int, min_sample: float, clock=None) -> dict:
    """Seconds per call: each function's best round, the functions interleaved round after round."""
    clock = clock or CLOCK
    calls = {}
    for name, f in funcs.items():
        f()
        t = clock()
        f()
        one = max(clock() - t, 1e-6)
        calls[name] = max(1, int(min_sample / one))
    best = {name: float("inf") for name in funcs}
    for _ in range(rounds):
        for name, f in funcs.items():
            n = calls[name]
            t = clock()
            for _ in range(n):
                f()
            best[name] = min(best[name], (clock() - t) / n)
    return best


def check_same(a: dict, b: dict, rtol: float) -> None:
    import numpy as np

    for k in a:
        np.testing.assert_allclose(np.asarray(b[k]).reshape(a[k].shape), a[k], rtol=rtol, atol=rtol, err_msg=k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    p.add_argument("--threads", type=int, default=1, help="threads for BLAS, PyTorch and XLA (default 1)")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--batches", default="1,10,128,1024")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                   help="cpu: CPU time of this process, all its threads (default; other work on a shared "
                        "machine disturbs it far less); wall: elapsed time")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    configure_threads(args.threads)

    import numpy as np
    from rich.console import Console
    from rich.table import Table
    from threadpoolctl import threadpool_info, threadpool_limits

    try:
        import jax

        jax.config.update("jax_enable_x64", True)
    except ImportError:
        jax = None
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        torch = None
    threadpool_limits(args.threads)
    from derive.spec import load_spec
    from generated import nielsen_numpy

    console = Console(width=210)
    blas = [f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, {i.get('num_threads')} threads)"
            for i in threadpool_info() if i.get("user_api") == "blas"]
    console.print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; numpy {np.__version__} "
                  f"with {', '.join(blas)}; torch {getattr(torch, '__version__', 'absent')}; "
                  f"jax {getattr(jax, '__version__', 'absent')}; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', 'unset')}")
    wide = load_spec("nielsen").with_sizes((784, 256, 256, 10))
    nets = [("784-30-10", nielsen_numpy), ("784-256-256-10", load_module(wide))]
    framework_modules = {}  # (label, backend) -> the generated module of that net
    for backend, present in (("torch", torch), ("jax", jax)):
        if present is not None:
            framework_modules[("784-30-10", backend)] = importlib.import_module(f"generated.nielsen_{backend}")
            framework_modules[("784-256-256-10", backend)] = load_module(wide, backend)
    rounds = 5 if args.quick else 25
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    table = Table(title=f"forward + backward, {args.clock} time / GEMM bound (best of {rounds} interleaved rounds, "
                        f"{args.threads} thread(s))")
    for col in ("network", "dtype", "B", "GEMM bound", "generated", "numpy plain", "numpy bare", "torch", "jax",
                "torch / generated", "torch mod", "jax mod", "torch mod / autograd", "jax mod / jax.grad"):
        table.add_column(col, justify="right")
    for label, module in nets:
        L = len(module.SIZES) - 1
        for dtype in (np.float64, np.float32):
            for B in batches:
                rng = np.random.default_rng(B)
                params = {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(dtype) for k, v in module.init_params(0, dtype).items()}
                x = rng.random((B, module.SIZES[0])).astype(dtype)
                y = rng.random((B, module.SIZES[-1])).astype(dtype)
                funcs = {"gemm": gemm_bound(params, x, y, L, module.tdot), "generated": generated(module, params, x, y),
                         "numpy": numpy_plain(params, x, y, L), "bare": numpy_bare(params, x, y, L, module.tdot)}
                if torch is not None:
                    funcs["torch"] = torch_autograd(params, x, y, L)
                if jax is not None:
                    funcs["jax"] = jax_jit(params, x, y, L)
                if torch is not None:
                    funcs["torch mod"] = torch_module(framework_modules[(label, "torch")], params, x, y)
                if jax is not None:
                    funcs["jax mod"] = jax_module(framework_modules[(label, "jax")], params, x, y)
                ref = funcs["generated"]()
                rtol = 1e-9 if dtype == np.float64 else 2e-3
                for name in ("numpy", "bare", "torch", "jax", "torch mod", "jax mod"):
                    if name in funcs:
                        check_same(ref, {k: np.asarray(v) for k, v in funcs[name]().items()}, rtol)
                t = best_times(funcs, rounds, 0.05 if not args.quick else 0.005)
                g = t["gemm"]
                row = dict(network=label, dtype=np.dtype(dtype).name, batch=B, gemm_us=g * 1e6,
                           **{f"{k.replace(' ', '_')}_ratio": v / g for k, v in t.items() if k != "gemm"})
                over = {}  # each generated framework module over its framework's autograd
                for mod, ref_name in (("torch mod", "torch"), ("jax mod", "jax")):
                    if mod in t:
                        over[mod] = t[mod] / t[ref_name]
                        row[f"{mod.replace(' ', '_')}_over_autograd"] = over[mod]
                rows.append(row)
                fmt = lambda k: f"{t[k] / g:.2f}" if k in t else "—"  # noqa: E731
                table.add_row(label, np.dtype(dtype).name, str(B), f"{g * 1e6:.1f} µs", fmt("generated"), fmt("numpy"),
                              fmt("bare"), fmt("torch"), fmt("jax"), f"{t['torch'] / t['generated']:.2f}×" if "torch" in t else "—",
                              fmt("torch mod"), fmt("jax mod"),
                              *(f"{over[m]:.2f}" if m in over else "—" for m in ("torch mod", "jax mod")))
    console.print(table)
    rows += bench_cupy(console, nets, batches, rounds)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
