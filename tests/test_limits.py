"""Limits: what a user's files, numbers and sizes can make the tools do, and the exit codes that say so.

Every command reads only regular files, with a bound; integers too long for Python's int() are a
one-line error; sizes whose proof cannot finish are refused before anything starts; an unexpected
error is exit 3, never a verdict; an output file is written whole or not at all.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive import budget, files
from derive.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, DeriveError, SpecError
from derive.spec import load_spec, parse_sizes, validate

ROOT = Path(__file__).resolve().parent.parent
HUGE = "1" * 5000  # more digits than int() converts (sys.get_int_max_str_digits() is 4300)
SPEC = ('name = "mine"\nsizes = [{sizes}]\nactivation = "sigmoid"\ncost = "quadratic"\nconvention = "row"\n'
        'bias = "augmented"\nbatch = "single"\nnotation = "net222"\n')
CLAIMS = 'spec = "{spec}"\n{extra}[[claim]]\nname = "BP1"\nlhs = "delta2"\nrhs = "(a2 - T) * a2 * (1 - a2)"\n'
DEEP = ", ".join(["2"] * 65)  # 64 weight layers of width 2: valid, and far beyond any proof's reach


def run(*args, module="derive", cwd=None, timeout=120):
    """A command as a user runs it; a hang fails the test instead of blocking it."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def one_line_error(r, code=EXIT_BAD_INPUT):
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert len(r.stderr) < 1000, "the error line quotes what it refuses, not all of it"
    return r.stderr


# -- item 13: only regular files, read with a bound ------------------------------------------

@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "pipe.toml"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("command", [("prove",), ("check",), ("latex", "-o", "x.tex")])
@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_devices_and_pipes_are_refused_not_read(tmp_path, fifo, command, target):
    path = "/dev/zero" if target == "/dev/zero" else str(fifo)
    if not os.path.exists(path):
        pytest.skip("no /dev/zero here")
    r = run(command[0], path, *command[1:], cwd=tmp_path, timeout=60)
    err = one_line_error(r)
    assert path in err and ("character device" in err or "named pipe" in err) and "regular file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pipe.toml"]


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_codegen_refuses_devices_and_pipes(tmp_path, fifo, target):
    path = "/dev/zero" if target == "/dev/zero" else str(fifo)
    r = run(path, "--out", str(tmp_path / "out"), module="codegen", timeout=60)
    assert "regular file" in one_line_error(r)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("target", ["/dev/zero", "fifo"])
def test_a_claims_files_spec_that_is_a_device_or_pipe(tmp_path, fifo, target):
    path = "/dev/zero" if target == "/dev/zero" else fifo.name  # a spec file relative to the claims file
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS.format(spec=path, extra=""))
    err = one_line_error(run("check", str(claims), timeout=60))
    assert "claims.toml: spec:" in err and "regular file" in err


def test_codegen_check_does_not_block_on_a_pipe_named_like_a_generated_file(tmp_path):
    os.mkfifo(tmp_path / "net222_numpy.py")
    r = run("net222", "--backend", "numpy", "--check", "--out", str(tmp_path), module="codegen", timeout=60)
    assert r.returncode == 1 and "net222_numpy.py" in r.stderr


def test_read_is_bounded_when_the_size_is_not_known(tmp_path):
    """/proc files are regular with st_size 0: the read itself stops at the limit."""
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc here")
    with pytest.raises(DeriveError, match=r"more than 100 bytes; a test file has at most 100 bytes"):
        files.read_user_file(status, 100, "test file")
    assert len(files.read_user_file(status, 1 << 20, "test file")) > 100


def test_a_pipe_swapped_in_after_the_check_is_refused_without_blocking(tmp_path, fifo, monkeypatch):
    """stat says regular (as it did a moment before), open finds a pipe: opened non-blocking and refused."""
    regular = tmp_path / "regular.toml"
    regular.write_text("x")

    class Swapped:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def stat(path):
            return os.stat(regular)

    monkeypatch.setattr(files, "os", Swapped())
    with pytest.raises(SpecError, match="is a named pipe, not a spec file"):
        files.read_user_file(fifo, 1000, "spec file", SpecError)


def test_file_size_limits(tmp_path):
    spec = tmp_path / "big.toml"
    spec.write_bytes(SPEC.format(sizes="2, 2").encode() + b"#" * (1024 * 1024))
    with pytest.raises(SpecError, match="a spec file has at most 1 MiB"):
        load_spec(str(spec))
    with pytest.raises(SpecError, match="is a folder, not a spec file"):
        load_spec(str(tmp_path))


# -- item 10: integers of more than 4,300 digits ----------------------------------------------

def test_a_huge_integer_in_a_spec_file(tmp_path):
    spec = tmp_path / "huge.toml"
    spec.write_text(SPEC.format(sizes=f"{HUGE}, 2"))
    err = one_line_error(run("prove", str(spec)))
    assert "huge.toml: malformed TOML: an integer of more than 4300 digits" in err
    assert "an integer of more than 4300 digits" in one_line_error(run(str(spec), module="codegen"))


@pytest.mark.parametrize("extra", [f"sizes = [{HUGE}, 2, 2]\n", f"examples = {HUGE}\n", f"x = -{HUGE}\n"],
                         ids=["sizes", "examples", "unknown key"])
def test_a_huge_integer_in_a_claims_file(tmp_path, extra):
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIMS.format(spec="net222", extra=extra))
    assert "malformed TOML: an integer of more than 4300 digits" in one_line_error(run("check", str(claims)))


@pytest.mark.parametrize("sizes", [f"{HUGE}-2", f"2-{HUGE}", f"2-0000{HUGE}-2"], ids=["first", "last", "zeros"])
def test_a_huge_width_in_sizes(tmp_path, sizes):
    err = one_line_error(run("prove", "net222", "--sizes", sizes))
    assert "--sizes: width 11111111… (5000 digits) is too large; at most 4096" in err
    with pytest.raises(SpecError, match="too large"):
        parse_sizes(sizes)


@pytest.mark.parametrize("flag", ["--sample", "--jobs", "--seed"])
def test_huge_numbers_in_flags(flag):
    err = one_line_error(run("prove", "net222", flag, HUGE))
    assert f"argument {flag}" in err and "(5000 characters)" in err


def test_validate_names_a_huge_integer_without_writing_it_out():
    good = dict(name="t", sizes=[2, 3, 2], activation="sigmoid", cost="quadratic", convention="row",
                bias="augmented", batch="single", notation="net222")
    with pytest.raises(SpecError, match=r"an integer of about (4999|5000) digits") as info:
        validate({**good, "sizes": [10**5000 // 9, 2]})
    assert len(str(info.value)) < 300
    with pytest.raises(SpecError, match=r"an integer of about 5000 digits"):
        validate({**good, "batch": "mean", "examples": -(10**5000)})


# -- item 11: flags and output paths ------------------------------------------------------------

@pytest.mark.parametrize("args,needle", [
    (("prove", "--seed", "-1"), "argument --seed: '-1' is not a seed"),
    (("prove", "--seed", "1.5"), "argument --seed: '1.5' is not a seed"),
    (("prove", "--sample", "-3"), "argument --sample: '-3' is not a positive integer"),
    (("prove", "--sample", "\u00b2"), "argument --sample"),  # a digit to str.isdigit, not to int()
    (("prove", "--jobs", "100000"), "argument --jobs: '100000' is not a positive integer of at most 64"),
    (("prove", "--max-seconds", "-1"), "argument --max-seconds"),
    (("prove", "--sizes", "\u00b2-2"), "--sizes: '\u00b2-2' is not widths joined by '-'"),
])
def test_bad_numbers_are_one_line(tmp_path, args, needle):
    assert needle in one_line_error(run(*args, cwd=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_latex_onto_a_folder_is_refused_before_the_proof(tmp_path):
    (tmp_path / "folder.tex").mkdir()
    err = one_line_error(run("latex", "net222", "-o", "folder.tex", cwd=tmp_path))
    assert err.startswith("error: -o folder.tex: is a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["folder.tex"] and not any((tmp_path / "folder.tex").iterdir())


def test_latex_pdf_onto_a_folder_is_refused_before_the_proof(tmp_path):
    (tmp_path / "d.pdf").mkdir()
    err = one_line_error(run("latex", "net222", "-o", "d.tex", "--pdf", cwd=tmp_path))
    assert "--pdf d.pdf: is a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["d.pdf"]


def test_train_refuses_a_negative_seed_and_a_plot_onto_a_folder(tmp_path):
    err = one_line_error(run("--seed", "-1", module="codegen.train"))
    assert "argument --seed: '-1' is not a whole number from 0" in err
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    err = one_line_error(run("--epochs", "1", "--plot", str(tmp_path), module="codegen.train"))
    assert "--plot" in err and "is a folder" in err


# -- nothing half-written ------------------------------------------------------------------------

def test_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.tex"

    def broken(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "replace", broken)
    with pytest.raises(DeriveError, match="-o .*out.tex: cannot write \\(No space left on device\\)"):
        files.write_atomically(target, "x" * 10_000, "-o")
    assert list(tmp_path.iterdir()) == []


def test_an_interrupted_write_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "out.tex"
    target.write_text("old")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_atomically(target, "new")
    assert [p.name for p in tmp_path.iterdir()] == ["out.tex"] and target.read_text() == "old"


def test_codegen_write_failure_leaves_no_temporary_files_and_no_new_folder(tmp_path, monkeypatch):
    import codegen.__main__ as cli

    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return os.rename(src, dst)

    monkeypatch.setattr(cli.os, "replace", second_fails)
    out = tmp_path / "new" / "out"
    with pytest.raises(DeriveError, match="cannot write to .*No space left on device"):
        cli.write_all(out, {"a.py": "a", "b.py": "b", "c.py": "c"})
    assert sorted(p.name for p in out.iterdir()) == ["a.py"]  # renamed before the failure; no .tmp left
    monkeypatch.setattr(cli.os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError(13, "Permission denied")))
    other = tmp_path / "other" / "deeper"
    with pytest.raises(DeriveError, match="Permission denied"):
        cli.write_all(other, {"a.py": "a"})
    assert not (tmp_path / "other").exists()


def test_codegen_out_onto_a_file(tmp_path):
    (tmp_path / "file").write_text("")
    err = one_line_error(run("net222", "--backend", "numpy", "--out", str(tmp_path / "file"), module="codegen"))
    assert "cannot write to" in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# -- item 12: an unexpected error is exit 3, one line, never a verdict ---------------------------

def _boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize("error", [RuntimeError("boom\nsecond line"), RecursionError("too deep"), MemoryError()])
def test_an_internal_error_is_exit_3(monkeypatch, capsys, error):
    import derive.report
    from derive.cli import main

    def fail(args):
        raise error

    monkeypatch.delenv("BACKPROP_DERIVE_DEBUG", raising=False)
    monkeypatch.setattr(derive.report, "run_prove", fail)
    assert main(["prove", "net222"]) == EXIT_INTERNAL == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"internal error: {type(error).__name__}")
    assert "please report" in err and "BACKPROP_DERIVE_DEBUG=1" in err


def test_debug_shows_the_traceback(monkeypatch):
    import derive.report
    from derive.cli import main

    monkeypatch.setenv("BACKPROP_DERIVE_DEBUG", "1")
    monkeypatch.setattr(derive.report, "run_prove", _boom)
    with pytest.raises(RuntimeError, match="boom"):
        main(["prove", "net222"])


def test_codegen_internal_error_is_exit_3(monkeypatch, capsys, tmp_path):
    import codegen.__main__ as cli

    monkeypatch.delenv("BACKPROP_DERIVE_DEBUG", raising=False)
    monkeypatch.setattr(cli, "generate", _boom)
    assert cli.main(["net222", "--out", str(tmp_path / "out")]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("internal error: RuntimeError: boom second line") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_train_internal_error_is_exit_3(monkeypatch, capsys):
    from codegen import train

    monkeypatch.delenv("BACKPROP_DERIVE_DEBUG", raising=False)
    monkeypatch.setattr(train, "load_spec", _boom)
    assert train.main(["--spec", "net222"]) == EXIT_INTERNAL
    assert capsys.readouterr().err.startswith("internal error: RuntimeError: boom")


# -- item 14: what a proof will cost, said and refused before it starts ---------------------------

def test_4096_wide_is_refused_at_once():
    err = one_line_error(run("prove", "net222", "--sizes", "4096-4096", timeout=60))
    assert "prove net222 at sizes 4096-4096: estimated" in err and "GB" in err
    assert "more than --max-seconds 600" in err


@pytest.mark.parametrize("args", [("prove", "--mode", "full"), ("prove", "--mode", "scalable"), ("prove",),
                                  ("latex", "-o", "deep.tex")])
def test_64_layers_are_refused_at_once(tmp_path, args):
    spec = tmp_path / "deep.toml"
    spec.write_text(SPEC.format(sizes=DEEP))
    err = one_line_error(run(args[0], str(spec), *args[1:], cwd=tmp_path, timeout=60))
    assert "at sizes 2-2-2-...-2 (65 widths): estimated more than 10^" in err and "years" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.toml"]


def test_codegen_refuses_64_layers_at_once(tmp_path):
    spec = tmp_path / "deep.toml"
    spec.write_text(SPEC.format(sizes=DEEP))
    err = one_line_error(run(str(spec), "--out", str(tmp_path / "g"), module="codegen", timeout=60))
    assert "proving its forms at sizes 2-2-2-...-2 (65 widths): estimated" in err
    assert not (tmp_path / "g").exists()


def test_max_seconds_is_the_lever():
    """The same run refused under a small budget; the message names the flag and a mode that fits."""
    err = one_line_error(run("prove", "net222", "--sizes", "8-8-8-8-8-8", "--mode", "full"))
    assert "more than --max-seconds 600; raise --max-seconds to run it anyway, or use --mode scalable" in err
    err = one_line_error(run("prove", "net222", "--max-seconds", "0.001"))
    assert "more than --max-seconds 0.001" in err
    assert run("prove", "net222", "--max-seconds", "30", "--brief").returncode == 0


def test_the_estimate_grows_as_the_work_does():
    def spec(sizes, **kw):
        return validate({**dict(name="t", sizes=sizes, activation="sigmoid", cost="quadratic", convention="row",
                                bias="augmented", batch="single", notation="net222"), **kw})

    # depth multiplies the paths (and their expansion), width the parameters
    for mode in (budget.full, budget.scalable):
        times = [mode(spec([4] * d)).seconds for d in range(2, 8)]
        assert all(b > 2 * a for a, b in zip(times[1:], times[2:]))
    assert budget.scalable(spec([64, 64])).seconds < budget.scalable(spec([256, 256])).seconds
    # a batch, a logarithmic cost and a softmax output make each expansion larger
    base = budget.full(spec([8, 8, 8])).seconds
    assert budget.full(spec([8, 8, 8], batch="mean", examples=4)).seconds > 2 * base
    assert budget.full(spec([8, 8, 8], cost="cross_entropy")).seconds > 2 * base
    assert budget.full(spec([8, 8, 8], activation=["sigmoid", "softmax"], cost="log_likelihood")).seconds > 5 * base
    # the oracle sample is spread over every group, so it never takes fewer than one partial per group
    assert budget.oracle_counts(spec([3, 3, 3, 3]), 1) == [1 * 2, 2, 2]
    assert sum(budget.oracle_counts(spec([3, 3, 3, 3]), 50)) == 36  # every parameter, no more
    # the largest network the validator accepts still gets a finite, printable estimate
    widest = spec([4096] * 65)
    assert "more than 10^" in budget.duration(budget.full(widest).seconds)
    assert "more than 10^" in budget.memory(budget.scalable(widest).megabytes)


def test_auto_picks_full_only_where_it_finishes_soon():
    assert budget.auto_mode(load_spec("net222")) == "full"
    assert budget.auto_mode(load_spec("nielsen")) == "scalable"
    deep8 = load_spec("net222").with_sizes((8, 8, 8, 8, 8, 8))  # 360 parameters, but 5 layers of paths
    assert deep8.n_params <= budget.FULL_AUTO_PARAMS and budget.auto_mode(deep8) == "scalable"


def test_a_long_run_says_its_estimate_on_stderr_and_keeps_json_clean(monkeypatch, capsys):
    import json

    from derive.cli import main

    monkeypatch.setattr(budget, "ANNOUNCE_SECONDS", 0.0)
    assert main(["prove", "net222", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["proven"] is True
    assert err.startswith("net222 at sizes 2-2-2: estimated about") and "full mode" in err
