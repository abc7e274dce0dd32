"""The local page over HTTP (Starlette's TestClient): verdicts, hostile claims, the body limit, time limits, downloads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the page needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("pebble", reason="the page needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("httpx2", reason="Starlette's TestClient needs httpx2 (the serve extra)")

from starlette.testclient import TestClient  # noqa: E402

from derive.serve import pool, work  # noqa: E402
from derive.serve.app import MAX_BODY, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PROVEN_LATEX = r"\delta^1 = (W^2)^T \delta^2 \odot \sigma'(z^1)"
WRONG_LATEX = r"\frac{\partial C}{\partial W^2} = \delta^2 (a^1)^T"  # the mean's 1/2 dropped: a factor repair
NIELSEN = {"spec": "nielsen", "sizes": "3-4-2", "notation": "", "form": "latex", "spec_text": ""}
SPEC_TEXT = """name = "tiny"
sizes = [2, 3, 1]
activation = "sigmoid"
cost = "quadratic"
convention = "column"
bias = "separate"
batch = "single"
notation = "nielsen"
"""


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(processes=2, check_seconds=5)) as c:
        yield c


def check(client, claims: str, **fields):
    response = client.post("/api/check", json={**NIELSEN, **fields, "claims": claims})
    assert response.status_code == 200, response.text
    return response.json()


def test_the_page_and_its_offline_katex(client):
    page = client.get("/")
    assert page.status_code == 200
    assert 'name="claims"' in page.text and 'value="nielsen" selected' in page.text
    assert "Content-Security-Policy" in page.headers
    for asset in ("/static/katex/katex.min.js", "/static/katex/katex.min.css", "/static/page.js",
                  "/static/katex/fonts/KaTeX_Main-Regular.woff2", "/static/katex/LICENSE"):
        assert asset.rsplit("/", 1)[-1] in page.text or asset.endswith(("woff2", "LICENSE"))
        assert client.get(asset).status_code == 200, asset
    assert "MIT" in client.get("/static/katex/LICENSE").text
    css = client.get("/static/katex/katex.min.css").text
    assert "fonts/KaTeX_Main-Regular.woff2" in css  # the fonts the CSS names are the ones served


def test_verdicts_with_witness_entries_and_repair(client):
    data = check(client, f"{PROVEN_LATEX}\n{WRONG_LATEX}\n")
    assert data["network"].startswith("nielsen, 3-4-2")
    proven, wrong = data["results"]
    assert proven["verdict"] == "PROVEN" and proven["witness"] is None
    assert proven["sides"]["equation"] == PROVEN_LATEX
    assert wrong["verdict"] == "REFUTED"
    assert wrong["repair"]["kind"] == "factor" and "1/2" in wrong["repair"]["text"]
    assert len(wrong["wrong_entries"]) == 8 and not wrong["holding_entries"]  # every entry of the 2x4 dC/dW2
    w = wrong["witness"]
    r, c = w["entry"]
    assert w["lhs"][r][c] != w["rhs"][r][c]
    assert w["lhs"][r][c] == pytest.approx(w["rhs"][r][c] / 2, rel=1e-9)  # what the repair's factor says
    assert data["summary"] == {"PROVEN": 1, "REFUTED": 1, "UNPROVEN": 0, "ERROR": 0}


def test_the_page_marks_wrong_entries_and_typesets_both_sides(client):
    # a scalar claim with w_{0j} in place of w_{j0}, and a matrix claim every entry of which is wrong
    claims = r"\delta^1_0 = \sum_{j=0}^{1} w^2_{0j} \delta^2_j \sigma'(z^1_0)" + "\n" + WRONG_LATEX
    response = client.post("/", data={**NIELSEN, "claims": claims})
    assert response.status_code == 200
    html = response.text
    assert html.count('class="claim v-REFUTED"') == 2
    matrix_claim = html[html.index('id="claim-2"'):]
    assert matrix_claim.count('<td class="wrong"') == 8  # the claim's matrix (2x4), every entry of which is wrong
    assert html[:html.index('id="claim-2"')].count('<td class="wrong"') == 1  # the scalar claim's value
    assert 'data-tex="\\frac{\\partial C}{\\partial W^2} = \\delta^2 (a^1)^T"' in html
    assert "Nearest repair" in html and 'id="latex-link"' in html and "/latex?spec=nielsen&amp;sizes=3-4-2" in html


def test_text_claims_are_typeset_from_their_tree(client):
    data = check(client, "delta2 = (a2 - y) * sigma_prime(z2)\ndC/dW2 = a1 @ delta2.T\na2 * 2\n= a2", form="text")
    one, two, three, four = data["results"]
    assert one["verdict"] == "PROVEN" and one["sides"]["equation"].startswith(r"\delta^2 = ")
    assert two["verdict"] == "REFUTED" and two["shape_error"]
    assert two["sides"]["equation"].startswith(r"\frac{\partial C}{\partial W^2} = ")
    assert three["verdict"] == four["verdict"] == "ERROR"
    assert "left-hand side is missing" in three["error"] and "left-hand side is missing" in four["error"]


def test_a_notation_and_a_pasted_spec(client):
    ng = check(client, r"dW^{[2]} = \frac{1}{m} dZ^{[2]} A^{[1]T}" + "\n" + r"dW^{[2]} = dZ^{[2]} A^{[1]T}",
               notation="ng")
    assert [r["verdict"] for r in ng["results"]] == ["PROVEN", "REFUTED"]
    rows = check(client, PROVEN_LATEX, notation="cs231n")
    assert "row-major" in rows["error"] and "results" not in rows
    pasted = check(client, r"\delta^2 = (a^2 - y) \odot \sigma'(z^2)", spec_text=SPEC_TEXT, sizes="")
    assert pasted["network"].startswith("tiny, 2-3-1") and pasted["results"][0]["verdict"] == "PROVEN"
    broken = check(client, PROVEN_LATEX, spec_text="sizes = [2, 3\n")
    assert broken["error"].startswith("the pasted spec: malformed TOML")
    too_big = check(client, PROVEN_LATEX, sizes="")
    assert "give sizes such as 3-4-2" in too_big["error"]
    layers = check(client, PROVEN_LATEX, spec_text=(ROOT / "examples/specs/bn_mlp.toml").read_text(), sizes="")
    assert "lists its layers" in layers["error"] and "python -m derive check" in layers["error"]


@pytest.mark.parametrize("claim, form, says", [
    ("x" * 60_000, "latex", "a claim has at most 10000"),  # a 1 MB claim is over the body limit: see below
    ("(" * 10_000 + "x" + ")" * 10_000, "latex", "a claim has at most 10000"),
    (r"\delta^2 = " + "(" * 4_000 + "a^2" + ")" * 4_000, "latex", "nested"),
    ("delta2 = " + "(" * 4_000 + "a2" + ")" * 4_000, "text", "nested"),
    ("delta2 = 2**2**2**99", "text", "exponent 99 is out of range"),
    (r"\delta^2 = 2^{2^{2^{99}}}", "latex", "out of range"),
], ids=["60KB-claim", "10000-brackets", "nested-latex", "nested-text", "power-tower-text", "power-tower-latex"])
def test_hostile_claims_get_the_parsers_error(client, claim, form, says):
    """Each is refused by the parser's limits, not by the time limit: its error is the parser's, not 'stopped after'."""
    data = check(client, claim, form=form)
    (result,) = data["results"]
    assert result["verdict"] == "ERROR"
    assert says in result["error"], result["error"]
    assert len(result["error"]) < 300 and "\n" not in result["error"]
    assert client.get("/").status_code == 200  # and the page keeps serving


def test_bodies_over_the_limit_are_refused(client):
    big = "x" * (MAX_BODY + 1)
    response = client.post("/api/check", json={**NIELSEN, "claims": big})
    assert response.status_code == 413 and "64 KB" in response.json()["error"]
    response = client.post("/", data={**NIELSEN, "claims": "x" * 1_000_000})
    assert response.status_code == 413 and "at most 64 KB" in response.text

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for _ in range(100):
            yield b"x" * 1024

    response = client.post("/api/check", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert client.get("/").status_code == 200


def test_bad_requests_are_one_line(client):
    assert client.post("/api/check", content=b"{not json").status_code == 400
    assert client.post("/api/check", json={"claims": 3}).status_code == 400
    assert client.post("/api/check", json={**NIELSEN, "claims": "a\n" * 51}).json()["error"].startswith("51 claims")
    assert client.post("/api/check", json={**NIELSEN, "claims": "  \n"}).json()["error"].startswith("no claims")
    assert client.post("/api/check", json={**NIELSEN, "form": "python", "claims": "1"}).status_code == 400
    page = client.post("/", data={**NIELSEN, "claims": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_the_latex_document(client):
    response = client.get("/latex", params={"spec": "nielsen", "sizes": "3-4-2"})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="nielsen.tex"'
    assert response.text.startswith("\\documentclass") and "\\end{document}" in response.text
    pasted = client.post("/latex", data={"spec_text": SPEC_TEXT, "sizes": ""})
    assert pasted.status_code == 200 and 'filename="tiny.tex"' in pasted.headers["content-disposition"]
    bad = client.get("/latex", params={"spec": "nielsen", "sizes": "3-x"})
    assert bad.status_code == 400 and bad.text.count("\n") == 1 and "sizes" in bad.text
    too_big = client.get("/latex", params={"spec": "nielsen"})
    assert too_big.status_code == 400 and "parameters" in too_big.text


# a claim whose check takes seconds (its activation's argument expands to thousands of terms): far past a
# limit of 1 ms, whatever the machine's load, so the limit is what ends it
SLOW = "delta2[0] = sigma((x[0] + x[1] + x[2] + a1[0] + a1[1] + y[0] + y[1] + w2[0,0] + w2[0,1])**20)"


def test_a_check_past_its_time_limit_is_stopped_and_the_page_goes_on():
    with TestClient(create_app(processes=1, check_seconds=0.001)) as slow:
        data = slow.post("/api/check", json={**NIELSEN, "form": "text", "claims": f"{SLOW}\n{SLOW}"}).json()
        assert [r["verdict"] for r in data["results"]] == ["ERROR", "ERROR"]
        assert all("stopped after the time limit of 0.001 s" in r["error"] for r in data["results"])
        assert slow.get("/").status_code == 200


def test_a_killed_worker_is_replaced():
    async def run():
        workers = pool.Workers(1)
        try:
            with pytest.raises(TimeoutError):  # a task that cannot end within its limit: a minute's sleep
                await workers.call(0.5, time.sleep, 60)
            result = await workers.call(30, work.check, work.Setting("nielsen", "", "3-4-2"), "latex", 1, PROVEN_LATEX)
            return result["verdict"]
        finally:
            workers.stop()

    assert asyncio.run(run()) == "PROVEN"


def test_serve_binds_to_loopback_by_default():
    from derive.cli import build_parser

    args = build_parser("serve").parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)


def test_a_port_in_use_is_one_line_and_exit_2(capsys):
    import socket

    from derive.cli import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
