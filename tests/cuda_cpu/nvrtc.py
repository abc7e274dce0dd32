"""NVRTC, the compiler CuPy calls, with the options CuPy passes: found in the nvidia-cuda-nvrtc wheel
(which needs no GPU) or the CUDA toolkit, called through ctypes.

CuPy's RawModule(code=...) compiles with compile_with_cache(..., prepend_cupy_headers=False), which
adds its include directories (nothing here includes a header), and
cupy.cuda.compiler._compile_with_cache_cuda appends `-ftz=true` to the caller's options (none from
the generated modules); compile_using_nvrtc adds the device's architecture. OPTIONS is that list
for an H100/H200 (sm_90) as PTX, so that the instructions can be read.
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
from pathlib import Path

OPTIONS = ("-ftz=true", "--gpu-architecture=compute_90")


def library_path() -> str | None:
    """libnvrtc from the nvidia-cuda-nvrtc wheel (nvidia/cu13/lib or nvidia/cuda_nvrtc/lib) or the CUDA toolkit."""
    roots = [Path(p) / "nvidia" for p in sys.path if p and os.path.isdir(os.path.join(p, "nvidia"))]
    patterns = [str(r / "*" / "lib" / "libnvrtc.so*") for r in roots]
    cuda = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    patterns += [os.path.join(cuda, "lib64", "libnvrtc.so*"), os.path.join(cuda, "targets", "*", "lib", "libnvrtc.so*")]
    for pattern in patterns:
        found = sorted(p for p in glob.glob(pattern) if "builtins" not in os.path.basename(p) and "alt" not in p)
        if found:
            return found[-1]
    return None


class NvrtcError(RuntimeError):
    """NVRTC refused the program; the message is its log."""


def _check(lib, status, what):
    if status != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise NvrtcError(f"{what}: {lib.nvrtcGetErrorString(status).decode()}")


def version(path: str) -> tuple[int, int]:
    lib = ctypes.CDLL(path)
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(lib, lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)), "nvrtcVersion")
    return major.value, minor.value


def compile_ptx(source: str, name: str, path: str, options=OPTIONS) -> tuple[str, str]:
    """(PTX, log) of source compiled by NVRTC with options; NvrtcError (with the log) when it fails."""
    lib = ctypes.CDLL(path)
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), name.encode(), 0, None, None),
           "nvrtcCreateProgram")
    try:
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        status = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size)), "nvrtcGetProgramLogSize")
        log = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetProgramLog(prog, log), "nvrtcGetProgramLog")
        log_text = log.value.decode(errors="replace").strip()
        if status != 0:
            raise NvrtcError(f"{name}: NVRTC failed:\n{log_text}")
        _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), "nvrtcGetPTXSize")
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(prog, ptx), "nvrtcGetPTX")
        return ptx.value.decode(), log_text
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
