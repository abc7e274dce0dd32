import shutil

import pytest

from derive.network import Network
from derive.proofs.concrete import prove


@pytest.fixture(scope="session")
def network222():
    return Network("net222")


@pytest.fixture(scope="session")
def proof222():
    return prove("net222")


needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
