"""The command line as a user runs it: exit codes, one-line errors, nothing half-written."""

import json
import subprocess
import sys

import pytest

from tests.conftest import needs_pdflatex


def run(*args, cwd=None, module="derive"):
    """The command as a user runs it, from any folder: the checkout's own package."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd)


def test_default_is_prove_net222():
    r = run()
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert "12/12 partials of C proven equal to the matrix form (chain rule = sympy.diff = δA)" in r.stdout
    assert "PROVEN" in r.stdout and "dC/dw1[0,0]" in r.stdout
    assert last == "12/12 partials of C proven equal to the matrix form (chain rule = sympy.diff = δA)"


def test_prove_json():
    r = run("prove", "net222", "--json")
    data = json.loads(r.stdout)
    assert data["proven"] is True
    parts = [c for c in data["checks"] if c["kind"] in ("weight", "bias")]
    assert len(parts) == 12 and all(c["verdict"] == "PROVEN" for c in parts)


def test_reduced_sizes_are_said():
    r = run("prove", "nielsen", "--sizes", "2-3-2", "--brief")
    assert r.returncode == 0, r.stderr
    assert "proven at sizes 2-3-2 (the spec's own are 784-30-10)" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("prove", "net999"), "unknown spec 'net999'"),
    (("prove", "missing.toml"), "no such spec file"),
    (("prove", "net222", "--sizes", "2-x"), "--sizes"),
    (("prove", "--bogus"), "unrecognized arguments"),
    (("latex", "net222", "-o", "out.pdf"), "must be a .tex file"),
    (("latex", "net222", "-o", "no/such/dir/out.tex"), "does not exist"),
    (("prove", "net222", "--jobs", "0"), "not a positive integer"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_spec_file_fields(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text('name="bad"\nsizes=[2,-1]\nactivation="sigmoid"\ncost="quadratic"\nconvention="row"\n'
                 'bias="augmented"\nbatch="single"\nnotation="net222"\n')
    r = run("latex", str(f), "-o", str(tmp_path / "x.tex"))
    assert r.returncode == 2 and "bad.toml: field 'sizes'" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "x.tex").exists()


@needs_pdflatex
def test_latex_document_compiles(tmp_path):
    r = run("latex", "net222", "-o", "derivation.tex", "--pdf", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    tex = (tmp_path / "derivation.tex").read_text()
    assert (tmp_path / "derivation.pdf").stat().st_size > 1000
    # the note's notation
    for piece in (r"w^{(1)}_{00}", r"a^{(2)}_{0}", r"T_{0}", r"\gamma", r"\delta^{(2)}"):
        assert piece in tex, piece
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_latex_of_a_network_too_large_to_write_out_is_a_summary(tmp_path):
    r = run("latex", "nielsen", "--sizes", "50-12-4", "-o", "n.tex", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "note: nielsen has 664 parameters" in r.stderr and "writing a summary" in r.stderr
    tex = (tmp_path / "n.tex").read_text()
    assert "a summary of its proof" in tex and "664/664 partials of C proven" in tex
