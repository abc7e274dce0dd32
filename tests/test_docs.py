"""Every command and Python snippet in README.md and docs/*.md runs, and prints what the page shows.

The conventions the pages follow (docs/layout.md, "Writing these pages"):

- A ```bash or ```sh block is one command a line; each must exit 0, or the N its trailing
  comment names (`python -m derive check x.toml   # exits 1: ...`), or the N of a paragraph
  right after the block that starts `(exits N` (then for every command of the block).
- A ```console block is `$ command` lines, each followed by what it prints. The shown lines must
  match what the command prints (stdout, then stderr), in order; a line `...` stands for any
  number of lines, and lines carrying a time (`0.83 s`, `12 ms`, `0:00:01`) are not compared.
- A ```python block is run as a script and must exit 0; it states its facts with `assert`.
- An HTML comment right above a block changes how it is tested: `<!-- not run: REASON -->` for a
  block the suite cannot run (it installs packages, takes minutes, needs a GPU), and
  `<!-- excerpt: PATH -->` for lines quoted from a checked-in file, which must appear there in order;
  `<!-- needs: NAME -->` for a block that runs where that program or Python module is installed
  and skips elsewhere.

Each block runs in its own temporary folder that holds a link to every top-level entry of the
checkout, so relative paths work as they do from the repository root, and whatever a command
writes (`-o derivation.tex`, `--out mine`) lands in that folder, never in the checkout.
"""

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGUAGES = {"bash", "sh", "console", "python"}
MAX_NOT_RUN = 8
README_LIMIT = 15_000  # bytes
COMMAND_TIMEOUT = 120  # seconds, per command

FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*(not run|excerpt|needs)\s*:\s*(.*?)\s*-->\s*$")
EXITS = re.compile(r"#.*\bexits? (\d+)\b")
EXITS_AFTER = re.compile(r"^\(exits (\d+)\b")
TIMING = re.compile(r"\d(?:\.\d+)?\s?(?:s|ms|µs|min|seconds?)\b|\d+:\d\d:\d\d")
LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    directive: str | None  # "not run" | "excerpt" | "needs" | None
    argument: str  # the reason, the excerpt's path, or the program or module needed
    exits: int = 0  # the exit code a paragraph right after the block states

    @property
    def id(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page):
    """The fenced blocks of one page, each with the directive right above it."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, language = i, m.group(1).lower()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        assert end is not None, f"{page.name}:{start + 1}: a code block is never closed"
        above = next((lines[j] for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        d = DIRECTIVE.match(above.strip())
        below = next((ln for ln in lines[end + 1:] if ln.strip()), "")
        e = EXITS_AFTER.match(below.strip())
        found.append(Block(page, start + 1, language, "\n".join(lines[start + 1:end]) + "\n",
                           d.group(1) if d else None, d.group(2) if d else "", int(e.group(1)) if e else 0))
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
RUN = [b for b in ALL if b.language in RUN_LANGUAGES and b.directive in (None, "needs")]
EXCERPTS = [b for b in ALL if b.directive == "excerpt"]


@pytest.fixture
def farm(tmp_path):
    """A folder that looks like the repository root (a link to each top-level entry) and holds what commands write."""
    for entry in ROOT.iterdir():
        if entry.name not in (".git",):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def environment(farm):
    env = dict(os.environ, COLUMNS="80", PYTHONPATH=str(farm), PYTHONDONTWRITEBYTECODE="1")
    env.pop("BACKPROP_DERIVE_DEBUG", None)
    return env


def run(command, farm):
    """Run one shell command from the farm; its exit code and its stdout then stderr."""
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=farm, env=environment(farm),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    return done.returncode, done.stdout + done.stderr


def expected_exit(command, default=0):
    m = EXITS.search(command)
    return int(m.group(1)) if m else default


def compared(lines):
    """The lines that are compared: trailing spaces dropped, lines carrying a time left out."""
    return [ln.rstrip() for ln in lines if not TIMING.search(ln)]


def matches(shown, printed):
    """Whether the shown lines are the printed ones, `...` standing for any run of lines."""
    segments, current = [], []
    for ln in shown:
        if ln.strip() == "...":
            segments.append(current)
            current = []
        else:
            current.append(ln)
    segments.append(current)
    segments = [compared(s) for s in segments]
    printed = compared(printed)
    if len(segments) == 1:
        return segments[0] == printed
    first, *middle, last = segments
    if printed[:len(first)] != first or (last and printed[len(printed) - len(last):] != last):
        return False
    pos, stop = len(first), len(printed) - len(last)
    for seg in middle:
        at = next((p for p in range(pos, stop - len(seg) + 1) if printed[p:p + len(seg)] == seg), None)
        if at is None:
            return False
        pos = at + len(seg)
    return pos <= stop


def console_commands(text):
    """(command, shown output lines) for each `$ ` line of a console block."""
    found = []
    for ln in text.splitlines():
        if ln.startswith("$ "):
            found.append((ln[2:], []))
        else:
            assert found, f"output before any command: {ln!r}"
            found[-1][1].append(ln)
    return found


def shell_commands(text):
    return [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_pages_exist_and_readme_is_short():
    assert len(PAGES) >= 7, [p.name for p in PAGES]
    size = len((ROOT / "README.md").read_bytes())
    assert size < README_LIMIT, f"README.md is {size} bytes; keep it under {README_LIMIT} and move reference to docs/"


def test_blocks_not_run_are_few_and_say_why():
    skipped = [b for b in ALL if b.directive == "not run"]
    assert len(skipped) <= MAX_NOT_RUN, [b.id for b in skipped]
    for b in skipped:
        assert len(b.argument.split()) >= 2, f"{b.id}: say why the block is not run"
        assert b.language in RUN_LANGUAGES, f"{b.id}: only runnable blocks need a reason not to run"
    assert len(RUN) >= 20


def anchors(page):
    """The anchors GitHub makes for a page's headings: lower case, punctuation dropped, spaces as '-'."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)  # no code blocks
    return {re.sub(r"[^\w\- ]", "", ln.lstrip("#").strip().lower()).replace(" ", "-")
            for ln in text.splitlines() if ln.startswith("#")}


def test_links_point_at_files_and_headings():
    for page in PAGES:
        for target, anchor in LINK.findall(page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            linked = page.parent / target if target else page
            where = f"{page.relative_to(ROOT)}: link to {target}#{anchor}"
            assert linked.exists(), f"{where}: no such file"
            if anchor and linked.suffix == ".md":
                assert anchor in anchors(linked), f"{where}: no such heading"


@pytest.mark.parametrize("block", RUN, ids=[b.id for b in RUN])
def test_block_runs(block, farm):
    if block.directive == "needs" and shutil.which(block.argument) is None and find_spec(block.argument) is None:
        pytest.skip(f"{block.argument} is not installed")
    if block.language == "python":
        script = farm / "_snippet.py"
        script.write_text(block.text, encoding="utf-8")
        code, out = run(f"{sys.executable} _snippet.py", farm)
        assert code == 0, f"{block.id}: the snippet failed:\n{out[-3000:]}"
        return
    pairs = (console_commands(block.text) if block.language == "console"
             else [(c, None) for c in shell_commands(block.text)])
    assert pairs, f"{block.id}: no command in the block"
    for command, shown in pairs:
        code, out = run(command, farm)
        want = expected_exit(command, block.exits)
        assert code == want, f"{block.id}: `{command}` exited {code}, the page says {want}:\n{out[-3000:]}"
        if shown is not None and any(ln.strip() for ln in shown):
            assert matches(shown, out.splitlines()), (
                f"{block.id}: `{command}` printed other lines than the page shows:\n{out[-4000:]}")


@pytest.mark.parametrize("block", EXCERPTS, ids=[b.id for b in EXCERPTS])
def test_excerpt_is_in_its_file(block):
    source = [ln for ln in (ROOT / block.argument).read_text(encoding="utf-8").splitlines() if ln.strip()]
    shown = [ln for ln in block.text.splitlines() if ln.strip()]
    assert matches(["...", *shown, "..."], source), f"{block.id}: the lines are not in {block.argument} in this order"


def test_matching_rules():
    printed = ["a", "b 0.5 s", "c", "d"]
    assert matches(["a", "c", "d"], printed)
    assert matches(["a", "...", "d"], printed)
    assert matches(["...", "c", "..."], printed)
    assert not matches(["a", "d"], printed)
    assert not matches(["...", "x", "..."], printed)
    assert not matches(["d", "..."], printed)
    assert expected_exit("python -m derive check x.toml   # exits 1: refuted on purpose") == 1
    assert expected_exit("python -m derive") == 0
