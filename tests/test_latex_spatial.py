"""What a reader sees of the shaped layer kinds (conv2d, conv1d, avgpool2d, maxpool2d, flatten, attention, rnn):
the LaTeX document compiles with no overfull box and shows each kind's equations, settings, shapes and entries
with PyTorch's indices; the terminal names each layer with its settings; the notebook shows their forms."""

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import sympy as sp
from rich.console import Console

from derive.proofs.layered import prove_layers
from derive.report.latex_layers import Namer, render_layers
from derive.report.layers import layer_line, render_layers as render_terminal
from derive.report.notebook import layers_markdown
from derive.tables.layers import KINDS
from tests.conftest import needs_pdflatex

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ["cnn", "attention", "rnn"]

# the settings the examples leave at their defaults: a stride with rows left over, no padding, no bias, average
# pooling; conv1d, an rnn with every step out, attention without a mask or an output projection
VARIANTS = {
    "strided": """
name = "strided"
inputs = [1, 5, 5]
cost = "quadratic"
convention = "row"
batch = "single"
notation = "nielsen"

[[layers]]
kind = "conv2d"
out_channels = 1
kernel_size = 2
stride = 2
bias = "none"
activation = "tanh"

[[layers]]
kind = "avgpool2d"
kernel_size = 2

[[layers]]
kind = "flatten"

[[layers]]
kind = "dense"
width = 1
activation = "sigmoid"
""",
    "sequence": """
name = "sequence"
inputs = [2, 3]
cost = "quadratic"
convention = "column"
batch = "single"
notation = "nielsen"

[[layers]]
kind = "conv1d"
out_channels = 2
kernel_size = 2
activation = "identity"

[[layers]]
kind = "rnn"
hidden_size = 2
nonlinearity = "relu"
output = "all"

[[layers]]
kind = "attention"
head_dim = 1

[[layers]]
kind = "flatten"

[[layers]]
kind = "dense"
width = 1
activation = "sigmoid"
""",
}


@pytest.fixture(scope="module")
def proofs(tmp_path_factory):
    """Each example's and variant's proof: name -> LayeredProof."""
    folder = tmp_path_factory.mktemp("specs")
    out = {name: prove_layers(ROOT / "examples" / "specs" / f"{name}.toml") for name in EXAMPLES}
    for name, text in VARIANTS.items():
        (folder / f"{name}.toml").write_text(text)
        out[name] = prove_layers(folder / f"{name}.toml")
    assert all(p.ok for p in out.values())
    return out


@pytest.fixture(scope="module")
def documents(proofs, tmp_path_factory):
    """Each proof's document, and its pdflatex log when pdflatex is installed: name -> (tex, log)."""
    folder = tmp_path_factory.mktemp("documents")
    out = {}
    for name, proof in proofs.items():
        tex = render_layers(proof)
        (folder / f"{name}.tex").write_text(tex)
        log = ""
        if shutil.which("pdflatex"):
            for _ in range(2):  # the second run settles the longtables' widths
                run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", f"{name}.tex"],
                                     cwd=folder, capture_output=True, text=True, timeout=300)
                assert run.returncode == 0, run.stdout[-2000:]
            log = (folder / f"{name}.log").read_text(errors="replace")
        out[name] = (tex, log)
    return out


@needs_pdflatex
@pytest.mark.parametrize("name", EXAMPLES + list(VARIANTS))
def test_the_document_compiles_with_no_overfull_box(documents, name):
    _, log = documents[name]
    bad = [ln for ln in log.splitlines() if ln.startswith(("Overfull", "Underfull \\vbox"))]
    assert bad == [], bad[:5]


@pytest.mark.parametrize("name", EXAMPLES + list(VARIANTS))
def test_no_raw_python_name_reaches_the_page(documents, name):
    tex, _ = documents[name]
    body = tex[tex.index(r"\section{Symbols}"):]
    assert not re.search(r"[A-Za-z]+\d+(t\d+)?_e?\d", body)  # a graph symbol's name: z1_e0_5_1, a1t2_e0_1, wq1_0_1
    assert not re.search(r"\b(Wq|Wk|Wv|Wo|Wxh|Whh|None|True|False|head_dim|out_proj)\b", body)
    assert "{l}" not in body and "{act}" not in body and "{m}" not in body  # every placeholder filled


def _paragraph(tex: str, title: str, backward: bool) -> str:
    """The forward or backward paragraph of one layer."""
    parts = tex.split(r"\section{Backward pass}")
    part = parts[1] if backward else parts[0]
    start = part.index(rf"\paragraph{{{title}}}")
    end = part.find(r"\paragraph{", start + 1)
    return part[start:end if end > 0 else None]


def test_the_cnn_document(documents):
    tex, _ = documents["cnn"]
    assert r"1 & conv2d & [1,4,4] $\to$ [2,4,4] & 2 channels out, kernel 3$\times$3, stride 1, padding 1, relu" in tex
    assert r"$W^{(1)}$ 2$\times$1$\times$3$\times$3, $b^{(1)}$ 2$\times$1" in tex  # PyTorch's O × C × kh × kw
    assert r"2 & maxpool2d & [2,4,4] $\to$ [2,2,2] & kernel 2$\times$2, stride 2 & none" in tex
    assert r"3 & flatten & [2,2,2] $\to$ 8" in tex
    conv = _paragraph(tex, "Layer 1: conv2d", False)
    assert r"z^{(1)}_{b,o} = \sum_{c} \operatorname{pad}_{p}(x_{b,c}) \star W^{(1)}_{o,c} + b^{(1)}_{o}" in conv
    assert r"a^{(1)} = \operatorname{ReLU}(z^{(1)})" in conv and "$k = 3 \\times 3$, $s = 1$, $p = 1$" in conv
    back = _paragraph(tex, "Layer 1: conv2d", True)
    assert r"\delta^{(1)} = \frac{\partial C}{\partial a^{(1)}} \odot \operatorname{ReLU}'(z^{(1)})" in back
    assert (r"\frac{\partial C}{\partial W^{(1)}_{o,c}} = \sum_{b} \operatorname{pad}_{p}(x_{b,c}) \star "
            r"\delta^{(1)}_{b,o}") in back
    assert r"\frac{\partial C}{\partial b^{(1)}_{o}} = \sum_{b} \sum_{i} \delta^{(1)}_{b,o,i}" in back
    assert (r"\frac{\partial C}{\partial x_{b,c}} = \sum_{o} \operatorname{pad}_{k-1-p}\bigl(\delta^{(1)}_{b,o}\bigr)"
            r" \star \operatorname{rot}_{180}\bigl(W^{(1)}_{o,c}\bigr)") in back
    assert "dilate" not in back  # stride 1: nothing to dilate
    pool = _paragraph(tex, "Layer 2: maxpool2d", True)
    assert r"j^{*}_{b,c}(i) = \min \operatorname*{arg\,max}_{j \in w(i)} x_{b,c,j}" in pool
    assert "Ties:" in pool and "first maximal entry" in pool  # the tie rule, stated
    assert r"\operatorname{vec}^{-1}" in _paragraph(tex, "Layer 3: flatten", True)
    assert r"x = a^{(1)}" in _paragraph(tex, "Layer 2: maxpool2d", False)  # its input named after layer 1


def test_a_conv_entry_is_indexed_like_torch_and_reads_the_right_window(documents):
    """∂C/∂w⁽¹⁾[0,0,0,0] (kernel entry (0, 0), padding 1) multiplies x[b,0,h,w] with δ at output (h+1, w+1): the
    names carry the real positions, so x's last row and column never meet this kernel entry."""
    tex, _ = documents["cnn"]
    back = _paragraph(tex, "Layer 1: conv2d", True)
    entry = back[back.index(r"\frac{\partial C}{\partial w^{(1)}_{0,0,0,0}}"):]
    entry = entry[:entry.index(r"\end{align*}")]
    assert r"a'^{(1)}_{0,0,1,1} G^{(1)}_{0,0,1,1} x_{0,0,0,0}" in entry
    assert r"a'^{(1)}_{1,0,3,3} G^{(1)}_{1,0,3,3} x_{1,0,2,2}" in entry
    assert not re.search(r"x_\{\d,0,3,", entry) and not re.search(r"x_\{\d,0,\d,3\}", entry)
    terms = re.findall(r"x_\{(\d),0,(\d),(\d)\}", entry)
    assert terms == sorted(terms, key=lambda t: tuple(map(int, t))) and len(terms) == 18  # 9 per example, in order


def test_the_attention_document(documents):
    tex, _ = documents["attention"]
    assert r"1 & attention & [3,2] $\to$ [3,2] & $d_k = 2$, causal, output projection" in tex
    forward = _paragraph(tex, "Layer 1: attention", False)
    assert r"S = \frac{1}{\sqrt{d_k}}\, Q K^{\top} + M" in forward and r"M_{tu} = -\infty" in forward
    assert r"O = P V, \quad y^{(1)} = O W_o^{(1)}" in forward
    back = _paragraph(tex, "Layer 1: attention", True)
    for line in (r"\frac{\partial C}{\partial V} = P^{\top} \frac{\partial C}{\partial O}",
                 r"\frac{\partial C}{\partial P} = \frac{\partial C}{\partial O} V^{\top}",
                 r"\frac{\partial C}{\partial S} = P \odot \Bigl(\frac{\partial C}{\partial P} - \operatorname{rowsum}",
                 r"\frac{\partial C}{\partial Q} = \frac{1}{\sqrt{d_k}}\, \frac{\partial C}{\partial S} K",
                 r"\frac{\partial C}{\partial K} = \frac{1}{\sqrt{d_k}} \Bigl(\frac{\partial C}{\partial S}\Bigr)^{\top} Q",
                 r"\frac{\partial C}{\partial W_q^{(1)}} = \sum_{b} X^{\top} \frac{\partial C}{\partial Q}",
                 r"\frac{\partial C}{\partial W_o^{(1)}} = \sum_{b} O^{\top}"):
        assert line in back, line
    assert r"\frac{\partial C}{\partial (w_o)^{(1)}_{0,0}} &= G^{(1)}_{0,0,0} o^{(1)}_{0,0,0}" in back
    assert r"\frac{\partial C}{\partial (w_q)^{(1)}_{0,0}}" in back and "causal mask" in back


def test_the_rnn_document(documents):
    tex, _ = documents["rnn"]
    assert r"1 & rnn & [3,2] $\to$ 3 & hidden size 3, last step out, tanh" in tex
    forward = _paragraph(tex, "Layer 1: rnn", False)
    assert r"h_t = \tanh(z_t)" in forward and r"y^{(1)} = h_T" in forward
    back = _paragraph(tex, "Layer 1: rnn", True)
    assert (r"\delta_t = \Bigl(\delta_{t+1} W_{hh}^{(1)\top} + \frac{\partial C}{\partial h_t}\Bigr) \odot "
            r"\tanh'(z_t), \quad \delta_{T+1} = 0, \quad \tanh'(z_t) = 1 - h_{t}^{2}") in back
    assert r"\frac{\partial C}{\partial W_{hh}^{(1)}} = \sum_{t=2}^{T} h_{t-1}^{\top} \delta_t" in back
    assert r"\frac{\partial C}{\partial h_t} = 0 \text{ for } t < T" in back
    assert r"\frac{\partial C}{\partial (w_{hh})^{(1)}_{0,0}}" in back
    # the dense layer reads h_T: example 0, step 3, unit 0
    assert r"h^{(1)}_{0,3,0}" in _paragraph(tex, "Layer 2: dense", True)


def test_the_settings_the_examples_leave_out(documents):
    tex, _ = documents["strided"]
    conv = _paragraph(tex, "Layer 1: conv2d", False) + _paragraph(tex, "Layer 1: conv2d", True)
    assert r"x_{b,c} \star_{s} W^{(1)}_{o,c}" in conv and "b^{(1)}" not in conv  # no padding, no bias
    assert r"\bigl[x_{b,c} \star \operatorname{dilate}_{s}(\delta^{(1)}_{b,o})\bigr]_{k}" in conv  # 5 = 2·2 + 1
    assert r"1 channel out, kernel 2$\times$2, stride 2, padding 0, tanh, no bias" in tex
    assert r"\frac{1}{4} \sum_{j \in w(i)} x_{b,c,j}" in _paragraph(tex, "Layer 2: avgpool2d", False)
    assert r"\frac{1}{4} \sum_{i \,:\, j \in w(i)}" in _paragraph(tex, "Layer 2: avgpool2d", True)
    tex, _ = documents["sequence"]
    assert r"$x_{b,c}$ is a sequence of 3" in tex
    assert r"y^{(2)} = (h_1, \dots, h_T)" in tex and r"h_t = \operatorname{ReLU}(z_t)" in tex
    assert r"\frac{\partial C}{\partial h_t} = \frac{\partial C}{\partial y^{(2)}_t}" in tex
    attention = _paragraph(tex, "Layer 3: attention", False)
    assert r"y^{(3)} = O = P V" in attention and "M_{tu}" not in attention and "W_o" not in attention


def test_the_namer_gives_pytorchs_multi_index(proofs):
    name = Namer(proofs["cnn"].net)
    cases = {"x_e1_5": "x_{1,0,1,1}",  # flat 5 of [1, 4, 4]: channel 0, row 1, column 1
             "w1_1_5": "w^{(1)}_{1,0,1,2}",  # to channel 1 from (channel 0, kernel row 1, column 2)
             "z1_e1_6_1": "z^{(1)}_{1,1,1,2}",  # example 1, output position 6 = (1, 2), channel 1
             "ap1_e0_15_0": "a'^{(1)}_{0,0,3,3}", "m2_e0_6": "y^{(2)}_{0,1,1,0}",
             "g1_e0_17": "G^{(1)}_{0,1,0,1}", "w4_2_7": "w^{(4)}_{2,7}", "a4_e1_2": "a^{(4)}_{1,2}"}
    for symbol, tex in cases.items():
        assert name(sp.Symbol(symbol)) == tex, symbol


def test_the_terminal_names_each_layer_with_its_settings(proofs):
    lines = {b.kind: layer_line(b) for name in EXAMPLES + list(VARIANTS) for b in proofs[name].spec.blocks}
    assert lines["maxpool2d"] == "maxpool2d 2×2 [2,4,4]→[2,2,2]"
    assert lines["attention"] == "attention d_k=1 [2,2]→[2,1]"  # the variant's, seen last
    assert layer_line(proofs["cnn"].spec.blocks[0]) == "conv2d 2×3×3 stride 1 pad 1 relu [1,4,4]→[2,4,4]"
    assert layer_line(proofs["attention"].spec.blocks[0]) == "attention d_k=2 causal out_proj [3,2]→[3,2]"
    assert layer_line(proofs["rnn"].spec.blocks[0]) == "rnn 3 tanh last [3,2]→3"
    assert lines["conv2d"] == "conv2d 1×2×2 stride 2 pad 0 tanh no bias [1,5,5]→[1,2,2]"
    console = Console(file=io.StringIO(), width=200)
    render_terminal(proofs["cnn"], console)
    out = console.file.getvalue()
    assert out.startswith("cnn: inputs [1,4,4], layers conv2d 2×3×3")
    assert "first maximal entry" in out  # the tie rule
    backward = {m.group(1): m.group(2) for m in re.finditer(r"  (\w+): .*\n    backward: (.*)", out)}
    assert set(backward) == {"conv2d", "maxpool2d", "flatten", "dense"} and all(backward.values())


def test_the_notebook_shows_each_shaped_layers_forms(proofs):
    md = layers_markdown(proofs["attention"])
    assert "attention: inputs &#91;3,2&#93;" in md
    assert r"**Layer 1, attention**, backward for any upstream gradient:" in md
    assert r"\begin{gathered}" in md and r"\operatorname{rowsum}" in md and "causal mask" in md
    md = layers_markdown(proofs["cnn"])
    assert r"\operatorname{rot}_{180}" in md and "first maximal entry" in md


def test_a_refuted_shaped_entry_is_named_with_its_multi_index(proofs):
    """A conv2d whose backward doubles ∂C/∂W: the document and the terminal name each failing entry by its
    shaped index too (dC/dw1[1,5] is ∂C/∂w⁽¹⁾[1,0,1,2]), not only by the flat name."""
    real = KINDS["conv2d"].backward

    def doubled(ops, G, X, S, P, block, inner):
        dX, grads = real(ops, G, X, S, P, block, inner)
        return dX, {**grads, "W": ops.scale(2, grads["W"])}

    proof = prove_layers(proofs["cnn"].net, backward={"conv2d": doubled}, oracle=False)
    assert not proof.ok
    tex = render_layers(proof)
    failures = tex[tex.index("Not proven:"):]
    assert r"\item \texttt{dC/dw1[0,0]} ($\partial C / \partial w^{(1)}_{0,0,0,0}$), layer 1, backward: REFUTED" \
        in failures
    named = re.findall(r"dC/dw1\[(\d),(\d)\]\} \(\$\\partial C / \\partial w\^\{\(1\)\}_\{(\d),0,(\d),(\d)\}", failures)
    assert len(named) >= 3
    for o, k, o2, u, v in named:  # flat k over (channel 0, kernel row u, column v) of a 3×3 kernel
        assert o == o2 and int(k) == 3 * int(u) + int(v)
    console = Console(file=io.StringIO(), width=200)
    render_terminal(proof, console, brief=True)
    assert "REFUTED layer 1 (conv2d) dC/dw1[0,0] (∂C/∂w1[0,0,0,0]): chain rule ≠ backward" in console.file.getvalue()
