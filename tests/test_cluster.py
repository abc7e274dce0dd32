"""Many claims files at once, and the Dask engine: a real scheduler and 2 workers, one of them killed mid-run.

The cluster is started as a person would start one on several machines (`dask scheduler`,
`dask worker ADDRESS`, here on this machine), once for the module; the commands under test
reach it by its address. A worker is killed through derive.proofs.engine's test hook: the
workers run with BACKPROP_DERIVE_KILL_WORKER naming a file, and the first chunk a worker
starts after that file is deleted exits its process (the nanny starts a new one).
"""

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derive.proofs import engine as engine_module
from derive.proofs.engine import KILL_HOOK, Engine, Recipe

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "examples" / "claims"
HAVE_DASK = importlib.util.find_spec("distributed") is not None and shutil.which("dask") is not None
needs_dask = pytest.mark.skipif(not HAVE_DASK, reason="Dask distributed or its dask command is not installed "
                                                    "(pip install -e \".[cluster]\")")

GOOD = 'spec = "net222"\n[[claim]]\nname = "ok"\nlhs = "delta2"\nrhs = "(a2 - T) * a2 * (1 - a2)"\n'


def derive(*args, env=None, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "derive", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


# ---------------------------------------------------------------------------
# many claims files, in this process or forked (no cluster needed)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def class_files(tmp_path_factory):
    """A class's derivations: one all proven, two with slips, one that names a layer the network lacks, one missing."""
    folder = tmp_path_factory.mktemp("class")
    (folder / "ada.toml").write_text(GOOD)
    shutil.copy(CLAIMS / "net222.toml", folder / "bob.toml")
    shutil.copy(ROOT / "docs" / "examples" / "first.toml", folder / "cy.toml")
    shutil.copy(ROOT / "docs" / "examples" / "typo.toml", folder / "dee.toml")
    return folder, ["ada.toml", "bob.toml", "cy.toml", "dee.toml", "eve.toml"]


@pytest.fixture(scope="module")
def alone(class_files):
    """What each file gives alone: (exit code, its claims as `check --json` prints them, or its error line)."""
    from derive.claims import check_file
    from derive.report.claims import json_text

    folder, names = class_files
    out = []
    for name in names[:-1]:
        report = check_file(folder / name)
        out.append((report.exit_code, json.loads(json_text(report.to_json()))))
    return out + [(2, f"{names[-1]}: no such claims file")]


def _as_alone(data: list) -> list:
    return [(d["exit_code"], d["claims"] if "claims" in d else d["error"]) for d in data]


def test_many_files_one_result_each_as_alone(class_files, alone):
    folder, names = class_files
    r = derive("check", *names, "--json", cwd=folder)
    data = json.loads(r.stdout)
    assert [d["path"] for d in data] == names
    assert _as_alone(data) == alone
    assert [code for code, _ in alone] == [0, 1, 1, 2, 2]
    assert r.returncode == 2  # the worst of the files': an unreadable file or claim


def here(capsys, *args) -> tuple[int, str, str]:
    """python -m derive ARGS in this process (nothing forks): exit code, stdout, stderr."""
    from derive.cli import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_many_files_exit_code_is_the_worst(class_files, capsys, monkeypatch):
    folder, _ = class_files
    monkeypatch.chdir(folder)
    assert here(capsys, "check", "ada.toml", "ada.toml")[0] == 0
    code, out, err = here(capsys, "check", "ada.toml", "cy.toml")
    assert code == 1 and err == ""
    lines = out.strip().splitlines()
    assert lines[-1] == "2 files: 1 all proven, 1 with refuted or unproven claims, 0 with errors"
    assert "1 claim: 1 proven, 0 refuted" in lines and "2 claims: 1 proven, 1 refuted" in lines


def test_many_files_text_report_names_each_error(class_files):
    folder, names = class_files
    r = derive("check", *names, "--jobs", "2", cwd=folder)
    assert r.returncode == 2
    assert r.stdout.strip().splitlines()[-1] == "5 files: 1 all proven, 2 with refuted or unproven claims, 2 with errors"
    assert "error: eve.toml: no such claims file" in r.stdout
    assert r.stderr.splitlines() == [
        "error: dee.toml: claim 2 'typo': rhs, column 18: a3: there is no layer 3; a runs over layers 0 (the inputs) to 2",
        "error: eve.toml: no such claims file"]


def test_one_missing_file_is_still_one_error_line(class_files, capsys, monkeypatch):
    folder, _ = class_files
    monkeypatch.chdir(folder)
    assert here(capsys, "check", "eve.toml") == (2, "", "error: eve.toml: no such claims file\n")


def test_jobs_redo_what_a_dead_process_left(tmp_path, in_one_process):
    # the pool forks in a process of its own (this suite's may hold JAX's threads); one forked process dies
    env = {**os.environ, KILL_HOOK: str(tmp_path / "kill")}
    r = derive(*PROVE[:-1], "--jobs", "2", env=env)
    assert (tmp_path / "kill").exists(), "no process was killed"
    assert r.returncode == 0 and r.stderr == ""
    assert re.search(r"; a process died with \d+ chunks? unfinished \(the chunk of .+\): redone in new processes$",
                     r.stdout.splitlines()[1])
    assert r.stdout.strip().splitlines()[-1] == in_one_process["summary"]


@pytest.mark.parametrize("args, message", [
    (("--cluster", "local:0"), "local:N takes a number of worker processes from 1 to 64"),
    (("--cluster", "local:two"), "local:N takes a number of worker processes from 1 to 64"),
    (("--cluster", "tcp://a b"), "a Dask scheduler's address"),
    (("--cluster", "local:2", "--jobs", "2"), "--jobs 2 and --cluster local:2: give one of them"),
])
def test_bad_cluster_arguments(args, message, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    for command in (("check", "docs/examples/first.toml"), ("prove", "net222", "--mode", "scalable")):
        code, out, err = here(capsys, *command, *args)
        assert code == 2 and out == "" and len(err.splitlines()) == 1 and message in err, err


def test_cluster_without_dask_is_one_line(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails, as where it is not installed
    for args in (("check", "docs/examples/first.toml"), ("prove", "net222", "--mode", "scalable")):
        assert here(capsys, *args, "--cluster", "local:2") == (
            2, "", "error: --cluster local:2: needs Dask's distributed scheduler: pip install -e \".[cluster]\"\n")


# ---------------------------------------------------------------------------
# a cluster: `dask scheduler` and two `dask worker`s on this machine
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(the scheduler's address, the kill hook's file): the file exists, so no worker dies until a test deletes it."""
    if not HAVE_DASK:
        pytest.skip("Dask distributed or its dask command is not installed (pip install -e \".[cluster]\")")
    folder = tmp_path_factory.mktemp("dask")
    marker = folder / "kill-a-worker"
    marker.write_text("")
    # the workers import this module for the engine's own test functions (_total, _numbers)
    path = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, KILL_HOOK: str(marker), "PYTHONPATH": path}
    info = folder / "scheduler.json"
    common = ["--no-dashboard"]
    procs = [subprocess.Popen(["dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file",
                               str(info), "--dashboard-address", "127.0.0.1:0"], env=env, cwd=folder, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)]
    try:
        address = _wait_for_address(info)
        procs += [subprocess.Popen(["dask", "worker", address, "--nthreads", "1", "--host", "127.0.0.1", *common],
                                   env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(2)]
        _wait_for_workers(address, 2)
        yield address, marker
    finally:
        _close(procs)


def _close(procs: list) -> None:
    """As Ctrl-C closes them; a worker process still there a few seconds on (a restarted one can hang) is killed."""
    import psutil

    every = [psutil.Process(p.pid) for p in procs if p.poll() is None]
    every += [c for p in every for c in p.children(recursive=True)]
    for p in reversed(procs):
        p.send_signal(signal.SIGINT)
    gone, alive = psutil.wait_procs(every, timeout=1.5)
    for p in alive:
        p.kill()
    for p in procs:
        p.wait(timeout=20)


def _wait_for_address(info: Path) -> str:
    for _ in range(600):
        if info.exists():
            try:
                return json.loads(info.read_text())["address"]
            except (ValueError, KeyError):
                pass
        time.sleep(0.05)
    raise RuntimeError("dask scheduler wrote no address in 30 s")


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(n, timeout=60)


def _total(state, task):
    """A task for the engine's own tests: a sum over the state a worker built."""
    return sum(state[task[0]:task[1]])


def _numbers(n):
    return list(range(n))


@needs_dask
def test_engine_on_a_cluster_as_in_process(cluster):
    address, _ = cluster
    tasks = [(s, s + 7) for s in range(0, 70, 7)]
    recipe = Recipe(_numbers, (70,), "numbers 70")
    with Engine() as here:
        expected = here.map(_total, tasks, Recipe(_numbers, (70,), "numbers 70", value=_numbers(70)))
    heard = []
    with Engine(cluster=address) as eng:
        assert eng.workers == 2 and eng.describe() == f"a Dask cluster of 2 workers ({address})"
        got = eng.map(_total, tasks, recipe, done=lambda task, result: heard.append(task))
    assert got == expected and sum(got) == sum(range(70))
    assert sorted(heard) == tasks and eng.notes == []
    assert [t.label for t in eng.timings] == [f"chunk {n} of 10" for n in range(1, 11)]
    assert {t.worker for t in eng.timings} <= set(_worker_addresses(address)) and all(t.seconds >= 0 for t in eng.timings)


def _worker_addresses(address: str) -> list[str]:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return list(client.scheduler_info(n_workers=-1)["workers"])


@needs_dask
def test_workers_that_cannot_import_the_task_are_one_line(cluster, tmp_path, monkeypatch):
    from derive.errors import DeriveError

    (tmp_path / "elsewhere.py").write_text("def task(state, n):\n    return n\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable here, not on the workers
    import elsewhere

    address, _ = cluster
    with Engine(cluster=address) as eng, pytest.raises(
            DeriveError, match=r"the workers cannot load the task \(elsewhere\.task\); install this backprop-derive"):
        eng.map(elsewhere.task, [1, 2])


@needs_dask
def test_no_scheduler_there_is_one_line(monkeypatch):
    from derive.errors import DeriveError

    monkeypatch.setattr(engine_module, "CONNECT_SECONDS", 1)
    with pytest.raises(DeriveError, match=r"--cluster tcp://127\.0\.0\.1:9: no Dask scheduler answered there within 1 s"):
        Engine(cluster="tcp://127.0.0.1:9")


@needs_dask
def test_a_scheduler_without_workers_is_one_line(monkeypatch):
    from distributed import LocalCluster

    from derive.errors import DeriveError

    monkeypatch.setattr(engine_module, "CONNECT_SECONDS", 1)
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address="127.0.0.1:0") as empty:
        with pytest.raises(DeriveError, match=r"the scheduler has no workers \(none joined within 1 s\); start some "
                                              r"with `dask worker tcp://"):
            Engine(cluster=empty.scheduler_address)


@needs_dask
def test_many_files_on_a_cluster_with_a_killed_worker(cluster, class_files, alone):
    address, marker = cluster
    folder, names = class_files
    marker.unlink()  # the first file a worker starts now kills that worker; the file is checked again elsewhere
    r = derive("check", *names, "--json", "--cluster", address, cwd=folder)
    assert marker.exists(), "no worker was killed"
    assert _as_alone(json.loads(r.stdout)) == alone and r.returncode == 2
    redone = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert redone and all(" was on a worker that died: redone on tcp://" in line for line in redone)
    _wait_for_workers(address, 2)  # the dead worker's nanny started a new one (the tests below count 2)


# ---------------------------------------------------------------------------
# the scalable proof on the cluster: the same report, the same exit codes, the same result as --jobs
# ---------------------------------------------------------------------------

PROVE = ("prove", "nielsen", "--sizes", "30-8-10", "--mode", "scalable", "--json")
VARIES = ("seconds", "jobs", "cluster", "redone")  # how it ran, not what it proved


@pytest.fixture(scope="module")
def in_one_process():
    """What `prove ... --json` prints without --cluster (the command passes these arguments)."""
    from derive.proofs.scalable import prove_scalable
    from derive.spec import load_spec

    return json.loads(json.dumps(prove_scalable(load_spec("nielsen").with_sizes((30, 8, 10)), sample=0).to_json()))


def _what(data: dict) -> dict:
    """What a report proved: not how long it took, nor where the comparisons ran (its methods' one suffix)."""
    where = re.compile(r", in chunks on the Dask cluster \S+ \(\d+ workers\)$|, in \d+ processes$")
    seen = {**data, "oracle": {**data["oracle"], "seconds": None}, "methods": [where.sub("", m) for m in data["methods"]]}
    return {k: v for k, v in seen.items() if k not in VARIES}


@needs_dask
def test_prove_on_a_cluster_as_in_one_process(cluster, in_one_process):
    address, _ = cluster
    r = derive(*PROVE, "--cluster", address)
    assert r.returncode == 0 and r.stderr == ""
    data = json.loads(r.stdout)
    assert _what(data) == _what(in_one_process) and data["proven"]
    assert data["methods"][1].endswith(f", in chunks on the Dask cluster {address} (2 workers)")
    assert (data["cluster"], data["jobs"], data["redone"]) == (address, 2, [])
    assert (in_one_process["cluster"], in_one_process["redone"]) == (None, [])


@needs_dask
def test_prove_with_a_killed_worker_redoes_its_chunk_and_says_so(cluster, in_one_process):
    address, marker = cluster
    marker.unlink()
    r = derive(*PROVE[:-1], "--cluster", address)  # the text report
    assert marker.exists(), "no worker was killed"
    assert r.returncode == 0 and r.stderr == ""
    note = r.stdout.splitlines()[1]
    assert note.startswith("proven at sizes 30-8-10 (the spec's own are 784-30-10); the chunk of ")
    assert re.search(r"the chunk of [^;]+, entries \d+ to \d+, was on a worker that died: redone on tcp://", note)
    assert r.stdout.strip().splitlines()[-1] == in_one_process["summary"]
    _wait_for_workers(address, 2)  # the dead worker's nanny started a new one


@needs_dask
def test_a_wrong_form_is_refuted_on_a_cluster_as_in_process(cluster):
    from sympy import HadamardProduct

    from derive.matrix import Form, MatrixForms
    from derive.network import Network
    from derive.proofs.scalable import prove_scalable
    from derive.spec import load_spec

    address, _ = cluster
    net = Network(load_spec("net222").with_sizes((6, 6, 6)))
    S = MatrixForms(net, evaluate=False).sym
    wrong = Form("BP2[1]", "", S["delta1"], HadamardProduct(S["delta2"] * S["w2"].T, S["sp1"]), "delta", 1)
    here, there = prove_scalable(net, forms=[wrong]), prove_scalable(net, forms=[wrong], cluster=address)
    assert not there.ok and there.exit_code == here.exit_code == 1
    assert [(f.name, f.form, f.entry) for f in there.failures] == [(f.name, f.form, f.entry) for f in here.failures]
    assert there.failures[0].counterexample is not None and (there.per_form, there.per_layer) == (here.per_form, here.per_layer)
    assert {t.worker for t in there.chunks} <= set(_worker_addresses(address))


@needs_dask
def test_a_chunk_that_kills_its_workers_is_one_line(tmp_path, monkeypatch):
    import dask

    from derive.errors import DeriveError

    # a LocalCluster (local:1) whose scheduler gives up on a chunk after one dead worker, and whose worker dies
    monkeypatch.setenv(KILL_HOOK, str(tmp_path / "kill"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                   os.environ.get("PYTHONPATH")])))
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), Engine(cluster="local:1") as eng:
        assert eng.workers == 1
        with pytest.raises(DeriveError, match=r"^--cluster local:1: chunk 1 of 1 killed every worker that ran it "
                                              r"\(1 in a row\); see the workers' logs$"):
            eng.map(_total, [(0, 5)], Recipe(_numbers, (5,), "numbers 5"))
    assert (tmp_path / "kill").exists()
