"""The local page in a real browser: headless Chromium loads it, pastes a correct and a wrong claim, reads the verdicts.

Needs Debian's chromium and chromium-driver (installed by .ci/run) and Selenium (the browser
extra). Screenshots of each state go to a temporary folder, or to SERVE_SCREENSHOTS when set:
    SERVE_SCREENSHOTS=docs/images python -m pytest tests/test_serve_browser.py
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the page needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("uvicorn", reason="the page needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("selenium", reason="the browser test needs the browser extra: pip install -e '.[browser]'")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if CHROMIUM is None or DRIVER is None:
    pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ready  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CORRECT = r"\delta^1 = (W^2)^T \delta^2 \odot \sigma'(z^1)"
WRONG = r"\frac{\partial C}{\partial W^2} = \delta^2 (a^1)^T"
PATIENCE = 60  # seconds the waits allow a loaded machine; never asserted as a speed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "derive", "serve", "--port", str(port), "--workers", "1"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the page did not start: {process.stderr.read().decode(errors='replace')[-500:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1500"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(PATIENCE)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = os.environ.get("SERVE_SCREENSHOTS")
    return Path(folder) if folder else tmp_path_factory.mktemp("screenshots")


def _gone(element):
    """The element has left the document: chromium says so as a stale reference or as another inspector error."""
    def check(_):
        try:
            element.is_enabled()
        except WebDriverException:
            return True
        return False
    return check


def _submit(browser, claims: str) -> None:
    box = browser.find_element(By.ID, "claims")
    box.clear()
    box.send_keys(claims)
    before = browser.find_element(By.TAG_NAME, "body")
    browser.find_element(By.ID, "check").click()
    WebDriverWait(browser, PATIENCE).until(_gone(before))  # the answer's page, not the one asked from
    wait = WebDriverWait(browser, PATIENCE, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(ready.presence_of_element_located((By.ID, "results")))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))


def _shot(browser, path: Path) -> None:
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1100, max(800, min(height + 200, 3000)))
    assert browser.save_screenshot(str(path)) and path.stat().st_size > 10_000


def test_a_correct_and_a_wrong_claim_in_the_browser(server, browser, shots):
    browser.get(server)
    WebDriverWait(browser, PATIENCE).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert browser.find_element(By.ID, "spec").get_attribute("value") == "nielsen"
    _shot(browser, shots / "serve-page.png")

    _submit(browser, CORRECT)
    (claim,) = browser.find_elements(By.CSS_SELECTOR, "article.claim")
    assert claim.find_element(By.CLASS_NAME, "verdict").text == "PROVEN"
    typeset = claim.find_element(By.CSS_SELECTOR, "[data-tex]")
    assert typeset.get_attribute("data-typeset") == "yes" and typeset.find_elements(By.CLASS_NAME, "katex")
    assert "δ" in typeset.text or "\u03b4" in typeset.text  # KaTeX drew the symbol, not the source
    _shot(browser, shots / "serve-proven.png")

    _submit(browser, CORRECT + "\n" + WRONG)
    verdicts = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "article.claim .verdict")]
    assert verdicts == ["PROVEN", "REFUTED"]
    wrong = browser.find_element(By.ID, "claim-2")
    assert len(wrong.find_elements(By.CSS_SELECTOR, "td.wrong")) == 8  # every entry of the claim's 2x4 matrix
    assert "holds multiplied by 1/2" in wrong.find_element(By.CLASS_NAME, "repair").text
    assert len(wrong.find_elements(By.CSS_SELECTOR, ".katex")) >= 2  # the claim and its repair, typeset
    fonts = browser.execute_script("return document.fonts.check('16px KaTeX_Main')")
    assert fonts, "KaTeX's fonts did not load from the package"
    _shot(browser, shots / "serve-refuted.png")
    link = browser.find_element(By.ID, "latex-link").get_attribute("href")
    assert link.startswith(server + "latex?spec=nielsen")
