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

from derive import files
from derive.proofs import budget
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
    assert err.startswith("error: -o folder.tex: that is a folder")
    assert [p.name for p in tmp_path.iterdir()] == ["folder.tex"] and not any((tmp_path / "folder.tex").iterdir())


def test_latex_pdf_onto_a_folder_is_refused_before_the_proof(tmp_path):
    (tmp_path / "d.pdf").mkdir()
    err = one_line_error(run("latex", "net222", "-o", "d.tex", "--pdf", cwd=tmp_path))
    assert "--pdf d.pdf: that is a folder" in err
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
    with pytest.raises(DeriveError, match="cannot write there .*No space left on device"):
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
    assert "file: not a folder" in err
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


# -- item 12: an unexpected error is exit 3, one line, never a verdict ---------------------------

def _boom(*args, **kwargs):
    raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize("error", [RuntimeError("boom\nsecond line"), RecursionError("too deep"), MemoryError()])
def test_an_internal_error_is_exit_3(monkeypatch, capsys, error):
    import derive.cli
    from derive.cli import main

    def fail(args):
        raise error

    monkeypatch.delenv("BACKPROP_DERIVE_DEBUG", raising=False)
    monkeypatch.setattr(derive.cli, "run_prove", fail)
    assert main(["prove", "net222"]) == EXIT_INTERNAL == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"internal error: {type(error).__name__}")
    assert "please report" in err and "BACKPROP_DERIVE_DEBUG=1" in err


def test_debug_shows_the_traceback(monkeypatch):
    import derive.cli
    from derive.cli import main

    monkeypatch.setenv("BACKPROP_DERIVE_DEBUG", "1")
    monkeypatch.setattr(derive.cli, "run_prove", _boom)
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


@pytest.mark.parametrize("args", [("prove", "--mode", "full"),  # scalable (auto's pick) proves it: no sympy.diff sample
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
        assert all(b > 1.5 * a for a, b in zip(times, times[1:]))  # docs/benchmarks.md: 4-4-4 0.75 s, 4-4-4-4 1.18 s scalable
        assert all(b > 2 * a for a, b in zip(times[3:], times[4:]))  # once start-up is a small part
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


# -- issue 12 review: any value a user wrote is named, never written out -------------------------

HEX = "0x" + "f" * 5000  # a valid TOML integer: tomllib reads hex with no digit limit, repr() refuses it
CLAIM = '[[claim]]\nname = "n"\nlhs = "dC/dw2[0,0]"\nrhs = "a1[0]"\n'
BASE = ('name = "b"\nsizes = [2, 2]\nactivation = "sigmoid"\ncost = "quadratic"\nconvention = "row"\n'
        'bias = "augmented"\nbatch = "single"\nnotation = "net222"\n')


@pytest.mark.parametrize("text", [f'spec = "net222"\nlayers = {HEX}\n' + CLAIM,
                                  f'spec = "net222"\nsizes = {HEX}\n' + CLAIM,
                                  f'spec = "net222"\nsizes = [2, {{a = {HEX}}}]\n' + CLAIM,
                                  'spec = "net222"\n' + CLAIM + f"example = {HEX}\n"])
def test_a_huge_hex_integer_in_a_claims_file_is_named(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    err = one_line_error(run("check", str(path), timeout=60))
    assert "an integer of about 6020 dig" in err  # cut short where it is nested


@pytest.mark.parametrize("field,value", [("cost", f"{{a = {HEX}}}"), ("sizes", f"{{a = {HEX}}}"),
                                         ("activation", f"[{{a = {HEX}}}]"), ("name", f"[[[{{b = {HEX}}}]]]")])
@pytest.mark.parametrize("module", ["derive", "codegen"])
def test_a_huge_hex_integer_inside_a_spec_table_is_named(tmp_path, field, value, module):
    path = tmp_path / "s.toml"
    path.write_text("\n".join(ln if not ln.startswith(field + " ") else f"{field} = {value}"
                              for ln in BASE.splitlines()) + "\n")
    args = ("prove", str(path)) if module == "derive" else (str(path), "--check", "--out", str(tmp_path))
    err = one_line_error(run(*args, module=module, timeout=60))
    assert f"field '{field}'" in err and ("about 6020 digits" in err or "…" in err)


def test_brief_renders_any_value_in_one_short_line():
    from derive.errors import brief

    huge = int("f" * 5000, 16)
    assert brief(huge) == "an integer of about 6020 digits"
    assert brief({"a": [huge]}) == "{a = [an integer of about 6020 digits]}"
    assert brief("x\x1b[2J\ny\u202e") == r"'x\x1b[2J\ny\u202e'"
    assert brief("q" * 5000).endswith("… (5000 characters)") and len(brief("q" * 5000)) < 80
    nested = [[[[[[huge]]]]]] * 100
    assert len(brief(nested)) < 200 and "100 items" in brief(nested)
    assert brief(list(range(100))) == "[0, 1, 2, 3, 4, 5, ... (100 items)]"
    assert brief(3) == "3" and brief(True) == "True" and brief(0.5) == "0.5"


# -- numbers on the command line: ASCII digits, any leading zeros, the flag named ---------------

def test_leading_zeros_are_read_as_the_number_they_write(tmp_path):
    zeros = "0" * 5000
    assert parse_sizes(zeros + "3-4-02") == (3, 4, 2)
    r = run("prove", "net222", "--sizes", zeros + "3-" + zeros + "2", "--seed", zeros, "--sample", zeros + "5",
            "--jobs", zeros + "1", "--max-seconds", zeros + "60", "--brief", timeout=120)
    assert r.returncode == 0 and "proven at sizes 3-2" in r.stdout, r.stderr
    path = tmp_path / "c.toml"
    path.write_text(f'spec = "net222"\nsizes = "{zeros}3-4-2"\n' + CLAIM)
    from derive.claims import load_claims

    assert load_claims(path)[0].sizes == (3, 4, 2)


@pytest.mark.parametrize("flag,value", [("--seed", "0" * 5000 + "x"), ("--sample", "0" * 5000),
                                        ("--jobs", "0" * 5000), ("--max-seconds", "0" * 5000)])
def test_a_bad_number_names_its_flag_and_is_cut_short(flag, value):
    err = one_line_error(run("prove", "net222", flag, value))
    assert f"argument {flag}:" in err and f"({len(value)} characters)" in err and "_seed" not in err


def test_an_empty_sizes_is_an_error_not_no_sizes():
    err = one_line_error(run("prove", "net222", "--sizes", ""))
    assert "--sizes: '' is not widths joined by '-'" in err


def test_latex_refusal_suggests_a_command_that_keeps_the_sizes(tmp_path):
    err = one_line_error(run("latex", "net222", "--sizes", "4096-4096", "-o", str(tmp_path / "x.tex")))
    assert "latex net222 at sizes 4096-4096: estimated" in err and "smaller widths or depth with --sizes" in err


# -- path names the file system refuses --------------------------------------------------------

@pytest.mark.parametrize("args", [("latex", "net222", "-o", "b" * 252 + ".tex"),
                                  ("general", "--latex", "l" * 300 + ".tex"),
                                  ("latex", "net222", "-o", "l" * 300 + "/x.tex"),
                                  ("prove", "p" * 300), ("prove", "p" * 300 + ".toml"), ("check", "p" * 300)])
def test_a_name_too_long_for_the_file_system_is_bad_input(tmp_path, args):
    err = one_line_error(run(*args, cwd=tmp_path, timeout=60))
    assert "File name too long" in err or "this file system allows at most" in err or "no such" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [("net222", "--out", "o" * 300), ("o" * 300,), ("o" * 300 + ".toml",),
                                  ("net222", "--check", "--out", "o" * 300)])
def test_codegen_names_too_long_are_bad_input(tmp_path, args):
    err = one_line_error(run(*args, module="codegen", cwd=tmp_path, timeout=60))
    assert "too long" in err.lower() or "no such" in err
    assert list(tmp_path.iterdir()) == []


def test_a_claims_files_spec_name_too_long(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('spec = "' + "q" * 300 + '"\n' + CLAIM)
    err = one_line_error(run("check", str(path), timeout=60))
    assert err.startswith(f"error: {path}: spec: ") and "File name too long" in err


def test_the_temporary_file_has_a_short_name(tmp_path):
    """A name the file system takes is written, whatever characters the temporary file beside it adds."""
    target = tmp_path / ("c" * 250 + ".tex")
    files.write_atomically(target, "whole")
    assert [p.name for p in tmp_path.iterdir()] == [target.name] and target.read_text() == "whole"
    with pytest.raises(DeriveError, match="a file name of 256 bytes; this file system allows at most 255"):
        files.write_atomically(tmp_path / ("c" * 252 + ".tex"), "x")


# -- training that diverges is said in one line ---------------------------------------------------

T1 = ('name = "t1"\nsizes = [64, ' + "1, " * 62 + '10]\nactivation = "identity"\ncost = "quadratic"\n'
      'convention = "column"\nbias = "separate"\nbatch = "sum"\nnotation = "net222"\n')


@pytest.mark.parametrize("args", [("--eta", "1e308", "--epochs", "2"), ("--spec", "t1.toml", "--epochs", "2")])
def test_training_that_diverges_is_one_line(tmp_path, args):
    pytest.importorskip("sklearn")
    (tmp_path / "t1.toml").write_text(T1)
    r = run(*args, module="codegen.train", cwd=tmp_path, timeout=300)
    assert r.returncode == EXIT_BAD_INPUT, r.stderr[-2000:]
    assert r.stderr.startswith("error: training diverged at epoch 1 of 2") and "try a smaller --eta" in r.stderr
    assert r.stderr.count("\n") == 1 and "Warning" not in r.stderr


@pytest.mark.parametrize("value", ["\u0663", "1e400", "nan", "inf", "0", "1_0"])
def test_eta_takes_a_finite_positive_ascii_number(value):
    err = one_line_error(run("--eta", value, module="codegen.train"))
    assert "argument --eta:" in err and "finite positive number" in err


def test_codegen_max_seconds_takes_ascii_digits_only():
    err = one_line_error(run("net222", "--check", "--max-seconds", "\u0663", module="codegen"))
    assert "argument --max-seconds" in err


# -- what a user typed is printed escaped, on one line ---------------------------------------------

def test_control_characters_in_paths_are_escaped(tmp_path):
    odd = "e\x1b[2Jx\ny"
    (tmp_path / (odd + ".tex")).mkdir()
    for r in (run("latex", "net222", "-o", odd + ".tex", cwd=tmp_path),
              run("prove", odd + ".toml", cwd=tmp_path),
              run(odd, module="codegen", cwd=tmp_path)):
        err = one_line_error(r)
        assert "\x1b" not in err and r"e\x1b[2Jx\ny" in err
    r = run("latex", "net222", "-o", "w\x1b]0;x\x07.tex", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith(r"wrote w\x1b]0;x\x07.tex: ") and r.stdout.count("\n") == 1
    r = run("net222", "--backend", "numpy", "--out", "o\x1bq", module="codegen", cwd=tmp_path)
    assert r.returncode == 0 and "\x1b" not in r.stdout and r"o\x1bq/net222_numpy.py" in r.stdout


def test_an_internal_errors_message_is_escaped(monkeypatch, capsys):
    from derive import cli

    monkeypatch.setattr(cli, "build_parser", lambda *a: (_ for _ in ()).throw(RuntimeError("x\x1b[2J\ny")))
    assert cli.main(["prove"]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "\x1b" not in err and err.count("\n") == 1


# -- codegen --check needs a folder ---------------------------------------------------------------

@pytest.mark.parametrize("kind,needle", [("file", "not a folder"), ("missing", "no such folder"),
                                         ("under a file", "no such folder")])
def test_codegen_check_out_must_be_a_folder(tmp_path, kind, needle):
    (tmp_path / "file").write_text("")
    out = {"file": tmp_path / "file", "missing": tmp_path / "nope", "under a file": tmp_path / "file" / "x"}[kind]
    err = one_line_error(run("net222", "--check", "--out", str(out), module="codegen"))
    assert f"--out {out}: {needle}" in err


# -- the cost estimate counts what each activation's σ' adds ---------------------------------------

def _deep(width, depth, activation, bias="none"):
    return validate(dict(name="d", sizes=[width] * (depth + 1), activation=activation, cost="quadratic",
                         convention="row", bias=bias, batch="single", notation="net222"))


def test_growth_comes_from_the_activation_table():
    assert budget.growth("sigmoid") == budget.growth("tanh") == 2  # a(1 - a), 1 - a²: two monomials
    assert budget.growth("identity") == budget.growth("relu") == budget.growth("leaky_relu") == 1
    assert budget.growth("softplus") == 1  # σ' stays an atom


@pytest.mark.parametrize("spec", [_deep(1, 40, "identity"), _deep(1, 40, "relu"), _deep(1, 64, "identity"),
                                  _deep(1, 40, "leaky_relu"), _deep(2, 12, "relu", "augmented")])
def test_deep_networks_whose_expansion_does_not_grow_are_not_refused(spec):
    """Each of these finishes in under a minute on the 2-core machine (measured: see derive/budget.py)."""
    estimate = budget.full(spec)
    assert estimate.seconds < budget.MAX_SECONDS and budget.fits(estimate, budget.MAX_SECONDS)


def test_codegen_plans_a_deep_identity_network_within_budget():
    from codegen.plan import small_spec

    assert budget.full(small_spec(_deep(1, 64, "identity"))).seconds < budget.MAX_SECONDS
