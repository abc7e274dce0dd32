"""The backends generated modules are written for: one record each, read by render.py and the templates.

A backend is data: the printer of its array code, the array module, whether its steps
may overwrite arrays, whether runs of elementwise steps become CUDA kernels, and the few
lines of code where its arrays differ (the finiteness tests, contiguity, the copy from
the host). A new backend (PyTorch, JAX) is one record here and one printer subclass in
codegen/printers.py (and, where its arrays differ from NumPy's in more than a few
lines, its own module template and helpers); nothing else branches on which backend it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .printers import ArrayPrinter, CuPyArrayPrinter, JaxArrayPrinter, TorchArrayPrinter


@dataclass(frozen=True)
class Backend:
    """How one array library runs the plan: every field is read, none is a name to test."""

    name: str  # the file suffix (<spec>_<name>.py) and the --backend choice
    title: str  # the library as the module's docstring names it
    needs: str | None  # what it runs on beyond the CPU, said in generated/__init__.py
    printer: type[ArrayPrinter]  # prints its array code (codegen/printers.py)
    xp: str  # the array module the code calls
    import_line: str  # the import of that module (numpy is imported too: dtypes and the random draw)
    in_place: bool  # a step may overwrite an array it owns (`z1 += b1`, `sigmoid(z1, out=z1)`)
    fused: bool  # each run of elementwise steps is one CUDA kernel, in a <spec>_kernels.cu file
    batch_dot: str | None  # the helper that computes Xᵀ Y over the batch; None: X.T @ Y as printed
    batch_ones: str | None  # a (B, 1) array of ones that sums over the batch multiply; None: .sum()
    finite_helpers: str  # the definitions of the finiteness tests the lines below call (and _not_finite_keys)
    finite: str  # code: whether the array {} is finite
    target_finite: str  # code: whether the target array {} is finite
    flags: bool  # kernels flag non-finite z and y into a device array read once per call (finite_helpers: _flag, _first_flag)
    contiguous: str | None  # code: the array {} laid out as the kernels index it (rows, columns); None: used as given
    is_contiguous: str | None  # code: whether the array {} is laid out so already; None with contiguous
    from_host: str  # code: the NumPy array {} as this backend's array of dtype `kind`
    read_only: str | None  # code: whether the parameter array {} cannot be written in place; None: never
    template: str = "module.py.j2"  # the module's template (codegen/templates): its library's types, checks, autodiff hook
    helper_folder: str = "helpers"  # the folder of its stable helpers' .py.j2 templates, one per name in helpers/
    layer_lists: bool = False  # layer-list specs are printed for it (codegen/layers.py, module_layers.py.j2)
    scratch: bool = False  # a take whose value the function neither returns nor caches writes into a buffer kept
    # between calls, per thread (_take): glibc hands the freed top of the heap back to the system after each call,
    # so a fresh multi-MB temporary (a convolution's windows) page-faults on every call; CuPy's memory pool
    # keeps its blocks already


NUMPY = Backend(
    name="numpy",
    title="NumPy",
    needs=None,
    printer=ArrayPrinter,
    xp="numpy",
    import_line="import numpy",
    in_place=True,
    fused=False,
    batch_dot="tdot",  # OpenBLAS's K = 1 product is slow: one row goes through einsum
    batch_ones="ones_B",  # one BLAS matrix-vector product beats NumPy's strided sum over the batch
    finite_helpers='''def _finite(a):
    """Whether every entry of a is finite. a·a is one BLAS dot, finite when every entry is;
    when it is not (an inf, a NaN, or a sum that overflowed) the entries are tested one by one."""
    return math.isfinite(numpy.vdot(a, a)) or bool(numpy.isfinite(a).all())


def _not_finite_keys(*lists):
    """For each list of arrays in PARAM_SHAPES order, the first key whose array has a NaN or inf, or None."""
    return [None if all(map(_finite, values)) else next(
        key for key, value in zip(PARAM_SHAPES, values) if not numpy.isfinite(value).all()) for values in lists]''',
    finite="_finite({})",
    target_finite="_finite({})",
    flags=False,
    contiguous=None,
    is_contiguous=None,
    from_host="{}.astype(kind)",
    read_only="not {}.flags.writeable",
    layer_lists=True,
    scratch=True,
)

CUPY = Backend(
    name="cupy",
    title="CuPy",
    needs="a CUDA device",
    printer=CuPyArrayPrinter,
    xp="cupy",
    import_line="import cupy",
    in_place=True,
    fused=True,
    batch_dot=None,  # cuBLAS has no slow K = 1 case to avoid
    batch_ones="ones_B",  # a cuBLAS matrix-vector product: a reduction over the strided batch axis runs on a few SMs
    finite_helpers='''def _flag(a, flags, k):
    """Set flags[k] on the device when the C-contiguous array a has a NaN or inf: one kernel, no sync."""
    _run("flag_not_finite", a, a, flags, numpy.int64(k))


def _first_flag(flags):
    """The index of the first flag set, or None: the one transfer from the device."""
    hits = numpy.flatnonzero(cupy.asnumpy(flags))
    return int(hits[0]) if hits.size else None


def _finite(a):
    """Whether every entry of a is finite: one kernel and one transfer, no boolean array."""
    flags = cupy.zeros(1, dtype=numpy.uint32)
    _flag(cupy.ascontiguousarray(a), flags, 0)
    return _first_flag(flags) is None


def _not_finite_keys(*lists):
    """For each list of arrays in PARAM_SHAPES order, the first key whose array has a NaN or inf, or None:
    one kernel per array, one transfer for all."""
    n = len(PARAM_SHAPES)
    flags = cupy.zeros(len(lists) * n, dtype=numpy.uint32)
    for i, values in enumerate(lists):
        for j, value in enumerate(values):
            _flag(value, flags, i * n + j)
    bad = cupy.asnumpy(flags).reshape(len(lists), n)
    return [list(PARAM_SHAPES)[int(numpy.argmax(row))] if row.any() else None for row in bad]''',
    finite="_finite({})",
    target_finite="_finite({})",
    flags=True,
    contiguous="cupy.ascontiguousarray({})",
    is_contiguous="{}.flags.c_contiguous",
    from_host="cupy.asarray({}, dtype=kind)",
    read_only=None,
    layer_lists=True,
)

TORCH = Backend(
    name="torch",
    title="PyTorch",
    needs="the torch package; tensors on the CPU or a CUDA device",
    printer=TorchArrayPrinter,
    xp="torch",
    import_line="import torch",
    in_place=True,  # the passes run under torch.no_grad(): their own tensors may be overwritten
    fused=False,
    batch_dot=None,  # torch's K = 1 product has no slow case to avoid
    batch_ones=None,  # torch's reduction over the batch is one kernel: .sum(axis=0)
    finite_helpers='''def _finite(a):
    """Whether every entry of a is finite. a·a is one dot product, finite when every entry is; when it
    is not (an inf, a NaN, or a sum that overflowed) the entries are tested one by one. One value is
    read back from the device either way."""
    flat = a.reshape(-1)
    return math.isfinite(float(torch.dot(flat, flat))) or bool(torch.isfinite(a).all())


def _not_finite_keys(*lists):
    """For each list of tensors in PARAM_SHAPES order, the first key whose tensor has a NaN or inf, or None."""
    return [next((key for key, value in zip(PARAM_SHAPES, values) if not _finite(value)), None) for values in lists]''',
    finite="_finite({})",
    target_finite="_finite({})",
    flags=False,
    contiguous=None,
    is_contiguous=None,
    from_host="torch.as_tensor({}, dtype=kind, device=device)",
    read_only=None,
    template="module_torch.py.j2",
    helper_folder="helpers_torch",
)

JAX = Backend(
    name="jax",
    title="JAX",
    needs="the jax package; float64 needs jax_enable_x64",
    printer=JaxArrayPrinter,
    xp="jnp",
    import_line="import jax.numpy as jnp",
    in_place=False,  # JAX arrays are immutable: every line makes a new array, which jit fuses
    fused=False,
    batch_dot=None,
    batch_ones=None,
    finite_helpers='''def _known(test):
    """bool(test), or True under a trace (jit, grad, vmap), where the values are not known yet."""
    try:
        return bool(test)
    except jax.errors.ConcretizationTypeError:
        return True


def _finite(a):
    """Whether every entry of a is finite; True under a trace, where only shapes and dtypes are checked."""
    return _known(jnp.isfinite(a).all())


def _not_finite_keys(*lists):
    """For each list of arrays in PARAM_SHAPES order, the first key whose array has a NaN or inf, or None."""
    return [next((key for key, value in zip(PARAM_SHAPES, values) if not _finite(value)), None) for values in lists]''',
    finite="_finite({})",
    target_finite="_finite({})",
    flags=False,
    contiguous=None,
    is_contiguous=None,
    from_host="jnp.asarray({}, dtype=kind)",
    read_only=None,
    template="module_jax.py.j2",
    helper_folder="helpers_jax",
)

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (NUMPY, CUPY, TORCH, JAX)}
