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
