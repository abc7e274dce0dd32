"""The derivation document of a layer-list spec: it compiles to pages with no overfull box, shows every layer's
forward equations and proven backward forms with their verdicts, and says what is not proven."""

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from derive.proofs.layered import prove_layers
from derive.report.latex_layers import render_layers, symbol_tex
from tests.conftest import needs_pdflatex

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["bn_mlp", "ln_mlp", "residual_mlp"]  # every kind; row and column; quadratic and log-likelihood costs


@pytest.fixture(scope="module")
def documents(tmp_path_factory):
    """Each example layer list's document, written and compiled twice: name -> (tex, log)."""
    folder = tmp_path_factory.mktemp("layers")
    out = {}
    for name in SPECS:
        tex = render_layers(prove_layers(ROOT / "examples" / "specs" / f"{name}.toml"))
        (folder / f"{name}.tex").write_text(tex)
        log = ""
        if _have_pdflatex():
            for _ in range(2):
                run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                                     cwd=folder, capture_output=True, text=True, timeout=300)
                assert run.returncode == 0, run.stdout[-2000:]
            log = (folder / f"{name}.log").read_text(errors="replace")
        out[name] = (tex, log)
    return out


def _have_pdflatex() -> bool:
    import shutil

    return shutil.which("pdflatex") is not None


@needs_pdflatex
@pytest.mark.parametrize("name", SPECS)
def test_the_document_compiles_with_no_overfull_box(documents, name):
    _, log = documents[name]
    bad = [ln for ln in log.splitlines() if ln.startswith(("Overfull", "Underfull \\vbox"))]
    assert bad == [], bad[:5]


def test_every_layer_has_its_equations_forms_and_verdicts(documents):
    tex, _ = documents["bn_mlp"]
    for n, kind in enumerate(["dense", "batchnorm", "activation", "residual", "dense", "layernorm", "dense"], 1):
        assert tex.count(rf"\paragraph{{Layer {n}: {kind}") == 2  # forward and backward
    # batch norm's consolidated form, its input named from the layer below, its entries in scalars
    assert r"\frac{\partial C}{\partial \gamma^{(2)}} = \sum_{b}" in tex and r"x = a^{(1)}" in tex
    assert r"\frac{\partial C}{\partial \gamma^{(2)}_{0}} &= G^{(2)}_{0,0} \hat{x}^{(2)}_{0,0}" in tex
    assert "three paths & PROVEN" in tex and "NOT PROVEN" not in tex
    assert r"$G^{(5)} = G^{(4)}$" in tex  # the residual's inner layer gets the block's upstream gradient
    assert tex.index(r"\paragraph{Layer 7: dense}", tex.index(r"\section{Backward")) < \
        tex.index(r"\paragraph{Layer 1: dense}", tex.index(r"\section{Backward"))  # from the cost down
    col, _ = documents["residual_mlp"]
    assert "transposes of the spec's column-major arrays" in col
    assert r"z^{(4)} = a^{(3)} W^{(4)}" in col and "b^{(4)}" not in col  # layer 4 has no bias
    assert r"\ln a^{(3)}_{bj}" in documents["ln_mlp"][0]  # the cost in the output's own name


def test_a_layer_whose_form_fails_is_named_not_proven():
    from derive.tables.layers import KINDS

    right = KINDS["batchnorm"].backward

    def dropped(ops, G, X, S, P, block, inner):  # the σ² path dropped: the mean's and the direct ones only
        dX, grads = right(ops, G, X, S, P, block, inner)
        n = ops.rows(X)
        dxhat = ops.mul(G, P["gamma"])
        third = ops.mul(ops.scale(Fraction(1, n), S["s"]), ops.mul(S["xhat"], ops.sum_rows(ops.mul(dxhat, S["xhat"]))))
        return ops.add(dX, third), grads

    spec = ROOT / "examples" / "claims" / "specs" / "batchnorm.toml"
    tex = render_layers(prove_layers(spec, backward={"batchnorm": dropped}, oracle=False))
    assert "backward & NOT PROVEN" in tex and r"\item \texttt{dC/dx2[" in tex


def test_symbols_are_written_as_a_reader_reads_them():
    assert symbol_tex(sp.Symbol("xhat2_e0_1")) == r"\hat{x}^{(2)}_{0,1}"
    assert symbol_tex(sp.Symbol("var6_e1")) == r"\sigma^{2(6)}_{1}" and symbol_tex(sp.Symbol("s2_3")) == "s^{(2)}_{3}"
    assert symbol_tex(sp.Symbol("w1_2_0")) == r"w^{(1)}_{2,0}" and symbol_tex(sp.Symbol("x_e0_1")) == "x_{0,1}"


def test_the_command_writes_the_document(tmp_path):
    out = tmp_path / "bn.tex"
    run = subprocess.run([sys.executable, "-m", "derive", "latex", str(ROOT / "examples/claims/specs/batchnorm.toml"),
                          "-o", str(out)], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {out}: ") and "partials of C proven" in run.stdout
    assert r"\end{document}" in out.read_text()
