import os
import shutil
from pathlib import Path

import pytest

from derive.network import Network
from derive.proofs.concrete import prove

ROOT = Path(__file__).resolve().parent.parent
# the commands tests start (python -m derive, from a temporary folder) import this checkout, wherever pytest runs
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


@pytest.fixture(scope="session")
def network222():
    return Network("net222")


@pytest.fixture(scope="session")
def proof222():
    return prove("net222")


needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")


def gpu_reason() -> str | None:
    """Why the GPU tests cannot run here, or None when CuPy sees a CUDA device."""
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
