"""The command line as a user runs it: exit codes, one-line errors, nothing half-written."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


# -- the rough edges a new user met (issue 17) -------------------------------------------------

def _one_line(r, code=2):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    return r.stderr


def test_brief_in_scalable_mode_is_the_summary_only():
    r = run("prove", "nielsen", "--sizes", "6-5-3", "--mode", "scalable", "--brief")
    assert r.returncode == 0, r.stderr
    [line] = r.stdout.strip().splitlines()
    assert line.startswith("53/53 partials of C proven equal to the matrix form (chain rule = matrix form; every "
                           "partial cross-checked by the SymEngine oracle, error ≤ 2^-1"), line


@pytest.mark.parametrize("flags", [("--sample", "5"), ("--jobs", "2")])
def test_scalable_flags_in_full_mode_are_a_note(flags):
    r = run("prove", "net222", "--mode", "full", "--brief", *flags)
    assert r.returncode == 0
    assert f"note: {flags[0]} applies to --mode scalable only" in r.stderr


def test_a_long_full_run_is_announced_with_the_faster_mode(capsys):
    from derive.cli import announce
    from derive.proofs import budget
    from derive.spec import load_with_sizes

    spec, _ = load_with_sizes("nielsen", "30-20-10")
    estimate = budget.full(spec)
    assert estimate.seconds >= budget.ANNOUNCE_SECONDS
    assert announce(spec, estimate, "--mode scalable would take about 1 s")
    err = capsys.readouterr().err
    assert "nielsen at sizes 30-20-10: estimated" in err and "--mode scalable would take" in err


def test_sizes_that_drop_an_activation_say_so():
    r = run("prove", "nobias3", "--sizes", "2-2-2", "--brief")
    assert r.returncode == 0, r.stderr
    assert "activations tanh, sigmoid (the spec's own are tanh, tanh, sigmoid" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (("prove", "net222", "--sizes", "0-2"), "--sizes: 0 is not a positive width"),
    (("prove", "net222", "--sizes", "100000-100000-10"), "--sizes: width 100000 is too large"),
    (("proof", "net222"), "unknown command 'proof': did you mean 'prove'?"),
    (("lattex", "net222"), "did you mean 'latex'?"),
])
def test_errors_name_the_flag_or_the_word(args, needle):
    assert needle in _one_line(run(*args))


def test_codegen_unknown_backend_is_one_line():
    assert "--backend: invalid choice: 'tensorflow'" in _one_line(run("--backend", "tensorflow", module="codegen"))


@pytest.mark.parametrize("plot,needle", [("nodir/x.png", "folder nodir does not exist"),
                                         ("x.txt", "the learning curve is a PNG")])
def test_train_checks_plot_before_training(tmp_path, plot, needle):
    r = subprocess.run([sys.executable, "-m", "codegen.train", "--plot", plot], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60)
    assert needle in _one_line(r)
    assert list(tmp_path.iterdir()) == []


def test_console_script_names_itself_in_usage():
    code = "import sys; sys.argv[0] = '/usr/bin/backprop-derive'; from derive.cli import main; raise SystemExit(main(['--bogus']))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stderr.startswith("error: backprop-derive:") or "backprop-derive" in r.stderr
    assert "python -m derive" not in r.stderr


def test_outputs_follow_the_umask(tmp_path):
    def umask():
        os.umask(0o027)

    r = subprocess.run([sys.executable, "-m", "derive", "latex", "net222", "-o", "d.tex"], cwd=tmp_path,
                       capture_output=True, text=True, preexec_fn=umask)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "d.tex").stat().st_mode & 0o777 == 0o640
    r = subprocess.run([sys.executable, "-m", "codegen", "net222", "--backend", "numpy", "--out", str(tmp_path / "g")],
                       capture_output=True, text=True, preexec_fn=umask)
    assert r.returncode == 0, r.stderr
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "g").iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes


def test_prove_json_has_one_schema_in_both_modes():
    full = json.loads(run("prove", "net222", "--json", "--mode", "full").stdout)
    scal = json.loads(run("prove", "net222", "--json", "--mode", "scalable").stdout)
    shared = {"spec", "mode", "summary", "proven", "n_params", "per_layer", "per_form", "oracle", "seconds", "failures"}
    assert shared <= set(full) and shared <= set(scal)
    assert (full["mode"], scal["mode"]) == ("full", "scalable")
    assert full["per_layer"] == scal["per_layer"] == {
        "W1": {"proven": 4, "total": 4}, "W1 (bias weights)": {"proven": 2, "total": 2},
        "W2": {"proven": 4, "total": 4}, "W2 (bias weights)": {"proven": 2, "total": 2}}
    assert set(full["oracle"]) == {"checked", "agree", "seed", "sample"} <= set(scal["oracle"])
    assert full["oracle"]["checked"] == full["oracle"]["agree"] == 12
    assert "total" in full["seconds"] and "total" in scal["seconds"]
    assert full["failures"] == scal["failures"] == []


def test_suite_runs_from_another_folder(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        str(Path(__file__).resolve().parent / "test_spec.py")], capture_output=True, text=True,
                       cwd=tmp_path, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, r.stdout[-2000:]
