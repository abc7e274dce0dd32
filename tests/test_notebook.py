"""Results in Jupyter: each result's Markdown (verdict, typeset forms, witness, repair), its escaping,
examples/tour.ipynb run end to end in a kernel (nbclient and ipykernel: pip install -e '.[notebook]'), and
one of its cells rendered by nbconvert in headless chromium with Debian's MathJax. The screenshot of that
cell goes to a temporary folder, or to NOTEBOOK_SCREENSHOTS when set:
    NOTEBOOK_SCREENSHOTS=docs/images python -m pytest tests/test_notebook.py
"""

import importlib.util
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest
import sympy as sp

import derive.report.notebook as notebook
from derive.claims import Claim, ClaimVerdict, Context, Report, check_claim, check_file
from derive.proofs.concrete import Proof, prove
from derive.proofs.general import GeneralProof, Model, prove_general, prove_theorem, sigma_prime
from derive.proofs.general.steps import Setting
from derive.proofs.scalable import Failure, ScaleProof, prove_scalable
from derive.report.latex import Names, heading
from derive.tables.notations import PROFILES
from derive.tables.reading import READINGS
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
TOUR = ROOT / "examples" / "tour.ipynb"
BISHOP_NET = ROOT / "examples" / "claims" / "specs" / "identity_out.toml"


def _outside_math(md: str) -> str:
    """The Markdown with every $...$ and $$...$$ taken out (an escaped \\$ stays in its formula)."""
    return re.sub(r"\$\$.*?(?<!\\)\$\$|\$.*?(?<!\\)\$", "", md, flags=re.S)


def test_a_proof_shows_its_verdict_and_every_matrix_form_typeset(network222):
    proof = prove(network222)
    md = proof._repr_markdown_()
    assert md.startswith(f"✓ **{Verdict.PROVEN}**: 12/12 partials")
    names = Names(proof.net, proof.forms, PROFILES[proof.spec.notation])
    for form in proof.forms.forms:
        if form.key in proof.to_json()["per_form"]:
            assert f"${names(form.lhs)} = {names(form.expr)}$" in md, form.key
            assert heading(form, proof.net, PROFILES[proof.spec.notation]) in md


def test_a_scalable_proof_shows_its_counts_and_a_failure_with_its_witness():
    proof = prove_scalable("net222", sample=2)
    md = proof._repr_markdown_()
    assert md.startswith(f"✓ **{Verdict.PROVEN}**") and "| `W1` | 4/4 | ✓ |" in md
    failed = ScaleProof(proof.spec, proof.n_params, proof.per_layer, proof.per_form, proof.oracle_sample,
                        proof.oracle_proven, failures=[Failure("dC/dw1[0,1]", "dC/dW1", (0, 1), {
                            "values": {"w1[0,0]": 0.5, "a0[1]": -2.0}, "chain_rule": 0.25, "other": -0.75})])
    md = failed._repr_markdown_()
    assert md.startswith(f"✗ **{Verdict.REFUTED}**")
    assert "**Witness**: the chain rule is 0.25, the claim gives -0.75" in md
    assert "| `w1` | `[0,0]` = 0.5 |" in md and "| `a0` | `[1]` = -2 |" in md


def test_the_general_proof_shows_each_theorem_and_a_refuted_step_with_its_counterexample():
    md = prove_general(("column",))._repr_markdown_()
    assert md.count("✓ **BP") == 4 and r"$$ \delta^{L}_{j}" in md
    M = Model("column")
    l, j, k = M.l, M.j, M.k
    wrong = sp.Sum(M.w[l + 1, j, k] * M.delta[l + 1, k], (k, 0, M.width(l + 1) - 1)) * sigma_prime(M.z[l, j])
    md = GeneralProof([Setting("column", M, [prove_theorem(M, "BP2", wrong)])], [])._repr_markdown_()
    assert md.startswith(f"✗ **{Verdict.REFUTED}**") and "✗ **BP2** (refuted)" in md
    assert "counterexample at $l = 1$" in md and r"\neq" in md


def test_a_refuted_claim_shows_the_witness_and_the_repair_typeset():
    ctx = Context(str(BISHOP_NET), reading=READINGS["bishop"])
    v = check_claim(ctx, Claim("target first", latex=r"\delta_k = t_k - y_k"))
    md = v._repr_markdown_()
    assert md.startswith(f"### ✗ **{Verdict.REFUTED}** target first") and r"$$ \delta_k = t_k - y_k $$" in md
    assert "**Witness**: `delta2[0]` (at k (layer 2) = 1)" in md
    assert f"is {v.witness['lhs']:.6g}, the claim gives {v.witness['rhs']:.6g}" in md
    assert "**Repair** (sign): $y_k - t_k$ in place of $t_k - y_k$" in md and r"$$ \delta_k = y_k - t_k $$" in md
    proven = check_claim(ctx, Claim("5.56", latex=r"\delta_j = h'(a_j) \sum_k w_{kj} \delta_k"))._repr_markdown_()
    assert proven.startswith(f"### ✓ **{Verdict.PROVEN}** 5.56") and "Witness" not in proven


def test_a_claims_report_shows_the_file_the_counts_and_every_claim():
    report = check_file(ROOT / "examples/claims/net222.toml")
    md = report._repr_markdown_()
    head = md.splitlines()[0]
    assert head.startswith("✗ **") and report.summary().split(":")[0] in head
    assert md.count("\n### ") == len(report.verdicts)
    assert "**Wrong entries**" in md and "**Shape**" in md and "**Repair**" in md


def test_what_a_file_says_cannot_escape_into_html_or_close_the_mathematics():
    claim = Claim("<script>alert(1)</script> *bold* $x$ [l](javascript:x)", latex=r"a $ <img src=x> \\$ b",
                  note="<b>note</b> `tick`")
    md = ClaimVerdict(claim, Verdict.ERROR, message="<i>unreadable</i> \\( x \\)", error_field="latex")._repr_markdown_()
    outside = _outside_math(md)
    for raw in ("<script", "<img", "<b>", "<i>", "*bold*", "](", "$", "\\("):
        assert raw not in outside, raw
    assert r"$$ a \$ <img src=x> \\\$ b $$" in md  # every $ escaped: Jupyter escapes the formula's < itself
    assert notebook.math("x" * (notebook.MAX_MATH + 1)).startswith("(a formula of")


def test_until_the_report_layer_fills_the_hook_a_result_shows_its_summary(monkeypatch, network222):
    proof = prove(network222)
    monkeypatch.delitem(Proof._shows, "markdown")
    assert proof._repr_markdown_() == proof.summary()
    for cls in (ScaleProof, GeneralProof, ClaimVerdict, Report):
        assert cls._shows["markdown"] is notebook.SHOWS[cls]


def test_the_tour_is_committed_without_outputs():
    nb = json.loads(TOUR.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)


@pytest.fixture(scope="module")
def tour():
    """examples/tour.ipynb executed in a kernel that imports this checkout's derive and codegen."""
    if not all(importlib.util.find_spec(m) for m in ("nbclient", "nbformat", "ipykernel")):
        pytest.skip("nbclient, nbformat and ipykernel are not installed (pip install -e '.[notebook]')")
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(TOUR, as_version=4)
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits it, whatever else is installed
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(TOUR.parent)}}).execute()
    return nb  # execute() raised CellExecutionError on any error


def test_the_tour_runs_in_a_kernel_and_shows_its_results_typeset(tour):
    outputs = [o for c in tour.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o["output_type"] == "error"]
    shown = [o["data"]["text/markdown"] for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(shown) == 5  # the proof, the general proof, the claims file, two pasted claims
    assert shown[0].startswith(f"✓ **{Verdict.PROVEN}**") and shown[2].startswith(f"✗ **{Verdict.REFUTED}**")
    assert "**Witness**" in shown[3] and "**Repair**" in shown[3] and shown[4].startswith(f"### ✓ **{Verdict.PROVEN}**")


MATHJAX = Path("/usr/share/javascript/mathjax/MathJax.js")  # Debian's libjs-mathjax: typesets offline


def test_a_cell_renders_as_typeset_mathematics_in_a_browser(tour, tmp_path):
    """nbconvert's HTML of the executed tour in headless chromium: the pasted claim's cell typeset, no MathJax
    error; its screenshot goes to NOTEBOOK_SCREENSHOTS when set (docs/images/notebook-claim.png)."""
    pytest.importorskip("nbconvert", reason="needs nbconvert (pip install nbconvert)")
    pytest.importorskip("selenium", reason="needs Selenium (pip install -e '.[browser]')")
    if not (shutil.which("chromium") and shutil.which("chromedriver") and MATHJAX.exists()):
        pytest.skip("needs Debian's chromium, chromium-driver and libjs-mathjax (apt-get install chromium "
                    "chromium-driver libjs-mathjax)")
    from nbconvert import HTMLExporter
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    exporter = HTMLExporter(mathjax_url=f"{MATHJAX.as_uri()}?config=TeX-AMS_CHTML")
    page = tmp_path / "tour.html"
    page.write_text(exporter.from_notebook_node(tour)[0], encoding="utf-8")
    options = webdriver.ChromeOptions()
    for arg in ("--headless", "--no-sandbox", "--allow-file-access-from-files", "--window-size=1000,1400"):
        options.add_argument(arg)
    browser = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    try:
        browser.get(page.as_uri())
        typeset = "return document.querySelectorAll('.MathJax_CHTML, mjx-container').length"
        for _ in range(100):  # MathJax typesets after the page has loaded
            if browser.execute_script(typeset) > 40 and not browser.execute_script(
                    "return document.querySelectorAll('.MathJax_Processing, .MathJax_Preview:not(:empty)').length"):
                break
            time.sleep(0.2)
        cell = browser.find_element(By.XPATH, '//*[@id="A-formula-pasted-from-a-book"]'
                                              '/following::div[contains(@class, "jp-CodeCell")][1]')
        assert "REFUTED" in cell.text and "Repair" in cell.text and "$" not in cell.text  # no formula left raw
        assert cell.find_elements(By.CSS_SELECTOR, ".MathJax_CHTML, mjx-container")
        assert "Math input error" not in browser.page_source and "Math Processing Error" not in browser.page_source
        out = Path(os.environ.get("NOTEBOOK_SCREENSHOTS") or tmp_path)
        cell.screenshot(str(out / "notebook-claim.png"))
        assert (out / "notebook-claim.png").stat().st_size > 10_000
    finally:
        browser.quit()
