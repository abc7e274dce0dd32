"""The structure docs/layout.md draws: the import contracts, one result protocol,
the tables as the only place a name is tested, templates that only lay out text."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from derive.claims import check_file
from derive.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUTED
from derive.proofs.concrete import prove
from derive.proofs.general import Model, prove_general, prove_theorem, sigma_prime
from derive.proofs.scalable import prove_scalable
from derive.spec import load_spec
from derive.tables.activations import ACTIVATIONS
from derive.tables.notations import PROFILES
from derive.verdict import Result, Verdict, exit_code

ROOT = Path(__file__).resolve().parent.parent
SOURCES = sorted(p for d in ("derive", "codegen") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.skipif(shutil.which("lint-imports") is None, reason="import-linter is not installed (pip install -e '.[test]')")
def test_the_import_contracts_hold():
    run = subprocess.run(["lint-imports"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "3 kept, 0 broken" in run.stdout


def test_every_result_follows_the_protocol(network222):
    import sympy as sp

    results = [prove(network222), prove_scalable("net222", sample=2), prove_general(("column",)),
               check_file(ROOT / "examples/claims/net222.toml")]
    for r in results:
        assert isinstance(r, Result), type(r)
        assert isinstance(r.summary(), str) and "\n" not in r.summary()
        json.dumps(r.to_json())  # plain data
        assert (r.exit_code == EXIT_OK) == r.ok and r.exit_code in (EXIT_OK, EXIT_REFUTED, EXIT_BAD_INPUT)
    assert [r.ok for r in results[:3]] == [True, True, True]
    assert results[3].exit_code == EXIT_REFUTED  # the file holds wrong claims on purpose
    M = Model("column")
    l, j, k = M.l, M.j, M.k
    wrong = sp.Sum(M.w[l + 1, j, k] * M.delta[l + 1, k], (k, 0, M.width(l + 1) - 1)) * sigma_prime(M.z[l, j])
    assert prove_theorem(M, "BP2", wrong).verdict is Verdict.REFUTED


def test_a_verdict_is_its_word():
    assert Verdict.PROVEN == "PROVEN" and f"{Verdict.REFUTED}" == "REFUTED" and repr(Verdict.ERROR) == "'ERROR'"
    assert json.dumps([Verdict.UNPROVEN]) == '["UNPROVEN"]'
    assert exit_code([Verdict.PROVEN, Verdict.GIVEN]) == EXIT_OK
    assert exit_code(["PROVEN", "REFUTED"]) == EXIT_REFUTED
    assert exit_code([Verdict.REFUTED, Verdict.ERROR]) == EXIT_BAD_INPUT


def _code(path: Path) -> str:
    """The source without comments and docstrings' prose: only what runs."""
    return "\n".join(line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines())


def test_no_name_of_an_activation_or_a_notation_is_tested_outside_the_tables():
    names = "|".join(map(re.escape, [*ACTIVATIONS, *PROFILES]))
    test = re.compile(rf"""(==|!=|\bin)\s*\(?\s*["']({names})["']|["']({names})["']\s*(==|!=)""")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in SOURCES if "tables" not in p.parts
             for m in test.finditer(_code(p))]
    assert found == []


def test_templates_lay_out_text_and_never_test_a_backend():
    templates = sorted((ROOT / "codegen" / "templates").rglob("*.j2")) + sorted((ROOT / "derive").rglob("*.j2"))
    assert templates
    for t in templates:
        assert not re.search(r"backend(\.name)?\s*==|==\s*['\"](numpy|cupy)['\"]", t.read_text()), t.name


def test_no_module_is_longer_than_about_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in SOURCES if (n := len(p.read_text().splitlines())) > 650}
    assert long == {}


def test_a_spec_names_its_notation_from_the_table():
    assert load_spec("nielsen").notation in PROFILES
