"""Every document the project writes compiles with pdflatex to pages with no overfull box, in the spec's notation."""

import re
import subprocess
from pathlib import Path

import pytest

from derive.proofs.concrete import prove
from derive.report.breaking import Breaker, TEXT_WIDTH, width
from derive.report.latex import MAX_DOCUMENT_PARAMS, render, render_summary
from derive.spec import load_with_sizes
from tests.conftest import needs_pdflatex

ROOT = Path(__file__).resolve().parent.parent
# (built-in or example spec, --sizes): every built-in spec, nielsen at a size a document writes in full, every example
DOCUMENTS = [("net222", None), ("nielsen", "3-4-2"), ("nobias3", None), ("rowmajor", None)] + [
    (str(p), None) for p in sorted((ROOT / "examples" / "specs").glob("*.toml"))
    if "[[layers]]" not in p.read_text()]  # layer lists have their own document (tests/test_latex_layers.py)
SUMMARY = ("nielsen", "50-12-4")  # more parameters than a full document writes: the summary document


def _document(spec_name, sizes) -> str:
    spec, _ = load_with_sizes(spec_name, sizes)
    return render(prove(spec))


def _compile(tex: str, folder: Path, stem: str) -> str:
    """pdflatex twice (references settle), returning the log of the last run."""
    (folder / f"{stem}.tex").write_text(tex)
    for _ in range(2):
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{stem}.tex"], cwd=folder,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout[-2000:]
    return (folder / f"{stem}.log").read_text(errors="replace")


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """Each document written and compiled once: name -> (tex, log)."""
    folder = tmp_path_factory.mktemp("latex")
    out = {}
    for spec_name, sizes in DOCUMENTS:
        stem = Path(spec_name).stem
        tex = _document(spec_name, sizes)
        out[stem] = (tex, _compile(tex, folder, stem))
    from derive.proofs.scalable import prove_scalable
    spec, _ = load_with_sizes(*SUMMARY)
    assert spec.n_params > MAX_DOCUMENT_PARAMS
    tex = render_summary(prove_scalable(spec))
    out["summary"] = (tex, _compile(tex, folder, "summary"))
    from derive.proofs.general import prove_general
    from derive.report.general import to_latex
    tex = to_latex(prove_general())
    out["general"] = (tex, _compile(tex, folder, "general"))
    return out


@needs_pdflatex
@pytest.mark.parametrize("name", [Path(s).stem for s, _ in DOCUMENTS] + ["summary", "general"])
def test_no_overfull_box_and_no_undefined_reference(documents, name):
    tex, log = documents[name]
    overfull = [ln for ln in log.splitlines() if ln.startswith(("Overfull", "Underfull \\vbox"))]
    assert overfull == [], overfull[:5]
    assert "There were undefined references" not in log


@needs_pdflatex
def test_the_summary_document_is_a_summary(documents):
    tex, _ = documents["summary"]
    assert "a summary of its proof" in tex and "Partials proven, per parameter matrix" in tex
    assert r"\cdots" in tex  # z of a 50-input neuron is elided, not cut off


def _headings(tex: str) -> list[str]:
    return re.findall(r"\\paragraph\{([^}]*)\}", tex)


@needs_pdflatex
@pytest.mark.parametrize("name", [Path(s).stem for s, _ in DOCUMENTS])
def test_headings_in_words_and_every_form_shown(documents, name):
    tex, _ = documents[name]
    heads = _headings(tex)
    assert heads, "no matrix form headings"
    for h in heads:
        assert h.count("(") <= 1, h  # "dC/dW1 (transposed) (transposed change matrix)" read twice
        assert "/" not in h and "[" not in h, h


@needs_pdflatex
def test_net222_defines_c_before_using_it(documents):
    tex, _ = documents["net222"]
    first = tex.index("c_{0}")
    assert tex[first:first + 60].startswith(r"c_{0} = \frac{\partial C}{\partial a^{(2)}_{0}}")
    assert r"$c$ is the gradient" in tex


@needs_pdflatex
def test_rowmajor_writes_relu_derivative_not_the_sigmoid_letter(documents):
    tex, _ = documents["rowmajor"]
    assert r"\operatorname{ReLU}'\left(z_{1,0;0}\right)" in tex
    assert not re.search(r"g'\\left\(z_\{[12],", tex)  # g is the sigmoid of layer 3 in this profile
    assert r"\operatorname{ReLU}'\left(z_{1}\right)" in tex  # in the matrix forms too


@needs_pdflatex
def test_nielsen_takes_the_batch_mean_out_of_sums(documents):
    tex, _ = documents["nielsen"]
    assert not re.search(r"\\frac\{a\^\{2\}_\{[^}]*\}\}\{2\} - \\frac\{y", tex)  # a/2 - y/2
    assert r"\frac{1}{2} \sum_{e} C_{e}" in tex


def test_a_long_sum_is_broken_into_lines_that_fit():
    import sympy as sp

    xs = sp.symbols("x0:40")
    expr = sp.Add(*[x * (1 - x) for x in xs]) * (xs[0] + xs[1])
    lines = Breaker({}).lines(expr)
    assert lines and len(lines) > 1
    assert all(width(line) <= TEXT_WIDTH + 14 for line in lines)  # a continuation's \times lead may add one operator
    assert "".join(lines).count(r"\bigl(") == "".join(lines).count(r"\bigr)") == 1
