"""The generated CUDA text itself, built for the CPU and launched the way CuPy launches it.

Each `extern "C" __global__` kernel of a .cu file is compiled by the system C++ compiler with
cuda_cpu.h (the CUDA built-ins) and a launcher that loops over grid x block, setting blockIdx
and threadIdx before each call. `cupy_module()` is a stand-in `cupy`: NumPy arrays, and a
RawModule whose functions receive what CuPy would send: an array as its raw data pointer, a
NumPy scalar as its own C type, a Python int as long long and a float as double. What a GPU
would get silently wrong is refused here with the kernel's and the parameter's name: an array
that is not C-contiguous, of another dtype than the pointer, or smaller than the indices the
kernel body reads or writes through it; a scalar of another C type than the parameter.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

import numpy

HEADER = Path(__file__).with_name("cuda_cpu.h")
FLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-Wall", "-Werror", "-ffp-contract=off")
KERNEL = re.compile(r'extern "C" __global__ void (\w+)\(([^)]*)\)\s*\{(.*?)\n\}', re.S)
ACCESS = re.compile(r"\bp_(\w+)\[([^\]]+)\]")
C_TYPES = {  # a C parameter type -> (NumPy dtype, ctypes type)
    "double": (numpy.dtype(numpy.float64), ctypes.c_double),
    "float": (numpy.dtype(numpy.float32), ctypes.c_float),
    "long long": (numpy.dtype(numpy.int64), ctypes.c_longlong),
    "int": (numpy.dtype(numpy.int32), ctypes.c_int),
    "unsigned int": (numpy.dtype(numpy.uint32), ctypes.c_uint),
}
MAX_BLOCKS, MAX_THREADS = 2**31 - 1, 1024  # CUDA's limits on gridDim.x and on threads per block


def compiler() -> str | None:
    """The system C++ compiler ($CXX when it names one), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


@dataclass(frozen=True)
class Param:
    """One kernel parameter: `const double* p_a1` is Param("p_a1", "double", pointer=True)."""

    name: str
    ctype: str
    pointer: bool


@dataclass(frozen=True)
class Kernel:
    name: str
    params: tuple[Param, ...]
    accesses: tuple[tuple[str, str], ...]  # (array name without p_, index text) for every p_x[...] in the body


def parse(source: str) -> dict[str, Kernel]:
    """The kernels of a .cu text by name, with their parameters and the indices their bodies use."""
    kernels = {}
    for name, params, body in KERNEL.findall(source):
        out = []
        for text in params.split(","):
            words = text.replace("*", " * ").split()
            pointer = "*" in words
            words = [w for w in words if w not in ("const", "*")]
            ctype, pname = " ".join(words[:-1]), words[-1]
            if ctype not in C_TYPES:
                raise ValueError(f"{name}: parameter {pname} of type {ctype!r}, which the CPU build does not map")
            out.append(Param(pname, ctype, pointer))
        kernels[name] = Kernel(name, tuple(out), tuple(sorted(set(ACCESS.findall(body)))))
    return kernels


def launcher(kernel: Kernel) -> str:
    """C text of launch_<name>(grid, block, params...): the kernel called once per thread of the grid."""
    decl = ", ".join(f"{p.ctype}{'*' if p.pointer else ''} {p.name}" for p in kernel.params)
    names = ", ".join(p.name for p in kernel.params)
    return f"""
extern "C" void launch_{kernel.name}(unsigned int grid, unsigned int block, {decl})
{{
    gridDim.x = grid;
    blockDim.x = block;
    for (unsigned int b = 0; b < grid; ++b) {{
        blockIdx.x = b;
        for (unsigned int t = 0; t < block; ++t) {{
            threadIdx.x = t;
            {kernel.name}({names});
        }}
    }}
}}
"""


_BUILT: dict[str, ctypes.CDLL] = {}


def build(source: str, folder: Path | None = None) -> ctypes.CDLL:
    """The .cu text compiled for the CPU with a launcher per kernel (one build per distinct text)."""
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key in _BUILT:
        return _BUILT[key]
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler (g++, c++ or clang++) for the CPU build of the CUDA kernels")
    folder = Path(folder or tempfile.mkdtemp(prefix="cuda_cpu_"))
    text = f'#include "{HEADER}"\n#line 1 "kernels.cu"\n{source}\n' + "".join(map(launcher, parse(source).values()))
    src, lib = folder / f"k{key}.cpp", folder / f"k{key}.so"
    src.write_text(text, encoding="utf-8")
    r = subprocess.run([cxx, *FLAGS, "-o", str(lib), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"the CPU build of the kernels failed:\n{r.stderr}")
    _BUILT[key] = ctypes.CDLL(str(lib))
    return _BUILT[key]


def _as_cupy_sends(value):
    """An argument as CuPy's RawKernel sends it: an array's data pointer, a scalar with its C type."""
    if isinstance(value, numpy.ndarray):
        return value
    if isinstance(value, numpy.generic):
        return value
    if isinstance(value, bool):
        return numpy.bool_(value)
    if isinstance(value, int):
        return numpy.int64(value)
    if isinstance(value, float):
        return numpy.float64(value)
    raise TypeError(f"unsupported kernel argument type {type(value).__name__}")


def _needed(index: str, values: dict[str, int]) -> int:
    """How many elements an index text reaches for the launch's size and cols."""
    size, cols = values["size"], values.get("cols", 1)
    if index == "i":
        return size
    if index == "i % cols":
        return min(size, cols)
    if index == "i / cols":
        return -(-size // cols)
    if index.isdigit():
        return int(index) + 1
    if index in values:
        return values[index] + 1
    raise ValueError(f"index {index!r} is not one the CPU build knows how to bound")


class Function:
    """One kernel of a RawModule, called as CuPy's: f(grid, block, args)."""

    def __init__(self, lib: ctypes.CDLL, kernel: Kernel):
        self.kernel = kernel
        self.fn = getattr(lib, f"launch_{kernel.name}")
        self.fn.restype = None

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        k = self.kernel
        grid, block = tuple(grid), tuple(block)
        if len(grid) != 1 or len(block) != 1 or not 1 <= grid[0] <= MAX_BLOCKS or not 1 <= block[0] <= MAX_THREADS:
            raise ValueError(f"{k.name}: grid {grid} x block {block}: a 1-d launch within CUDA's limits expected")
        args = [_as_cupy_sends(a) for a in args]
        if len(args) != len(k.params):
            raise TypeError(f"{k.name}: {len(args)} arguments for {len(k.params)} parameters")
        values, sent = {}, []
        for p, a in zip(k.params, args):
            dtype, ctype = C_TYPES[p.ctype]
            if p.pointer:
                if not isinstance(a, numpy.ndarray):
                    raise TypeError(f"{k.name}: {p.name} is {p.ctype}*, got {type(a).__name__}")
                if a.dtype != dtype:
                    raise TypeError(f"{k.name}: {p.name} is {p.ctype}*, got an array of {a.dtype}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{k.name}: {p.name} gets an array that is not C-contiguous "
                                     f"(shape {a.shape}, strides {a.strides}); a GPU would read other elements")
                sent.append(ctypes.c_void_p(a.ctypes.data))
            else:
                if isinstance(a, numpy.ndarray) or a.dtype != dtype:
                    raise TypeError(f"{k.name}: {p.name} is {p.ctype}, got {type(a).__name__}")
                values[p.name] = int(a) if dtype.kind in "iu" else a
                sent.append(ctype(a.item()))
        for name, index in k.accesses:
            array = args[[p.name for p in k.params].index(f"p_{name}")]
            need = _needed(index, values)
            if need > array.size:
                raise IndexError(f"{k.name}: p_{name}[{index}] reaches {need} elements for size {values['size']}, "
                                 f"but the array has {array.size} (shape {array.shape}): a write or read past its end")
        self.fn(ctypes.c_uint(grid[0]), ctypes.c_uint(block[0]), *sent)


class RawModule:
    """cupy.RawModule(code=...): the kernels of `code` built for the CPU."""

    def __init__(self, code, options=(), **_):
        self.code = code
        self.kernels = parse(code)
        self.lib = build(code)
        self.functions: dict[str, Function] = {}

    def get_function(self, name):
        if name not in self.kernels:
            raise RuntimeError(f"CUDA_ERROR_NOT_FOUND: named symbol not found: {name}")
        if name not in self.functions:
            self.functions[name] = Function(self.lib, self.kernels[name])
        return self.functions[name]


def cupy_module() -> types.ModuleType:
    """A stand-in `cupy`: NumPy's namespace (arrays stay NumPy arrays) with RawModule from this CPU build."""
    fake = types.ModuleType("cupy")
    for key in dir(numpy):
        if not key.startswith("_"):
            setattr(fake, key, getattr(numpy, key))
    fake.RawModule = RawModule
    fake.asnumpy = numpy.asarray
    return fake


__all__ = ["RawModule", "Function", "build", "compiler", "cupy_module", "launcher", "parse"]
