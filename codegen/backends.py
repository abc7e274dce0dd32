"""The backends generated modules are written for: one record each, read by render.py and the templates.

A backend is data: the printer of its array code, the array module, whether its steps
may overwrite arrays, whether runs of elementwise steps become CUDA kernels, and the few
lines of code where its arrays differ (the finiteness tests, contiguity, the copy from
the host). A new backend (PyTorch, JAX) is one record here and one printer subclass in
codegen/printers.py; nothing else branches on which backend it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .printers import ArrayPrinter, CuPyArrayPrinter


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
)

BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (NUMPY, CUPY)}
