"""The general proof (issue 5): BP1-BP4 for symbolic widths and any depth.

The proof must pass, and a checker that cannot fail proves nothing: wrong general
formulas must be refuted with a counterexample that really is one, tampered steps
must lose their verdict, and the general formulas at widths 2-3-2 must agree with
the concrete proofs of the core.
"""

import copy
import shutil
import subprocess
import sys
import types

import pytest
import sympy as sp

from derive import general
from derive.errors import DeriveError
from derive.general import (
    RULES, SETTINGS, CostPartial, LocalPartial, Model, check_theorem, concrete_agreement, equal_by_linearity,
    prove_general, prove_setting, prove_theorem, sigma_prime, text, to_latex,
)
from derive.proof import prove
from derive.spec import validate
from tests.conftest import needs_pdflatex


@pytest.fixture(scope="module")
def proof():
    return prove_general()


def spec_of(sizes, convention="column", batch="single", examples=1):
    return validate({"name": "general_instance", "sizes": list(sizes), "activation": "sigmoid", "cost": "quadratic",
                     "convention": convention, "bias": "separate", "batch": batch, "notation": "nielsen",
                     "examples": examples})


# -- the proof passes, as data ---------------------------------------------------

def test_every_theorem_in_every_setting_is_proven(proof):
    assert proof.ok and proof.verdict == "PROVEN"
    assert [s.key for s in proof.settings] == list(SETTINGS)
    assert [(t.setting, t.key) for t in proof.theorems] == [(s, k) for s in SETTINGS for k in ("BP1", "BP2", "BP3", "BP4")]
    assert all(t.verdict == "PROVEN" for t in proof.theorems)
    assert all(s.verdict in ("GIVEN", "PROVEN") for s in proof.steps)
    assert all(r.verdict == "PROVEN" for r in proof.rule_checks)
    assert "BP1 and BP2 together cover every depth by induction" in proof.summary()


def test_steps_are_data_with_statement_rule_and_verdict(proof):
    for step in proof.steps:
        assert isinstance(step.lhs, sp.Basic) and isinstance(step.rhs, sp.Basic)
        assert isinstance(step.statement, sp.Eq)
        assert step.latex == f"{general.latex(step.lhs)} = {general.latex(step.rhs)}"
        rule = RULES[step.rule]
        assert rule.name and rule.justification and rule.tex
    # the given steps are the definitions only; everything else is proven
    assert {s.rule for s in proof.steps if s.verdict == "GIVEN"} == {"definition"}
    used = {s.rule for s in proof.steps}
    assert {"chain", "diff", "kronecker", "range", "lemma", "hypothesis", "def-delta", "def-a"} <= used


def test_the_statements_are_the_textbook_ones(proof):
    M = proof.setting("column").model
    l, L, j, k, e = M.l, M.L, M.j, M.k, M.e
    col = proof.setting("column")
    assert col.theorem("BP1").formula == CostPartial(M.a[L, j]) * sigma_prime(M.z[L, j])
    bp2 = sp.Sum(M.w[l + 1, k, j] * M.delta[l + 1, k], (k, 0, M.width(l + 1) - 1)) * sigma_prime(M.z[l, j])
    assert col.theorem("BP2").formula == bp2
    assert col.theorem("BP3").lhs == CostPartial(M.b[l, j]) and col.theorem("BP3").formula == M.delta[l, j]
    assert col.theorem("BP4").lhs == CostPartial(M.w[l, j, k])
    assert col.theorem("BP4").formula == M.a[l - 1, k] * M.delta[l, j]
    R = proof.setting("row").model
    assert proof.setting("row").theorem("BP4").lhs == CostPartial(R.w[l, k, j])  # W^l_{kj} holds w_{jk}
    B = proof.setting("column-batch").model
    assert proof.setting("column-batch").theorem("BP4").formula == sp.Sum(
        B.a[l - 1, e, k] * B.delta[l, e, j], (e, 0, B.B - 1))


def test_kronecker_deltas_and_range_guards_are_discharged_step_by_step(proof):
    M = proof.setting("column").model
    thm = proof.setting("column").theorem("BP2")
    lemma = thm.chains[1]
    assert thm.chains[0].head == M.z[M.l + 1, M.k]
    assert lemma.head == LocalPartial(M.z[M.l + 1, M.k], M.z[M.l, M.j])
    kinds = [s.rule for s in lemma.steps]
    assert kinds == ["diff", "kronecker", "range"]
    diff, kron, guard = lemma.steps
    assert diff.rhs.has(sp.KroneckerDelta) and isinstance(diff.rhs, sp.Sum)
    assert isinstance(kron.rhs, sp.Piecewise)
    assert not guard.rhs.has(sp.Piecewise) and not guard.rhs.has(sp.KroneckerDelta)
    assert "SymPy reduces it to True" in guard.evidence_text()
    chain = next(s for s in thm.steps if s.rule == "chain")
    assert "z^{l} → a^{l} → z^{l+1}" in chain.evidence_text()


# -- wrong formulas are not proven -----------------------------------------------------

def _wrong(M: Model, kind: str):
    l, j, k = M.l, M.j, M.k
    if kind == "swapped weight":  # w^{l+1}_{jk} in place of w^{l+1}_{kj}
        return "BP2", M.formula("BP2").xreplace({M.weight(l + 1, k, j): M.weight(l + 1, j, k)})
    if kind == "sigma' of layer l+1":
        e = M.e if M.batch else None
        return "BP2", M.formula("BP2").xreplace({sigma_prime(M.Z(l, j, e)): sigma_prime(M.Z(l + 1, j, e))})
    if kind == "a^l in BP4":  # a^l_k in place of a^{l-1}_k
        e = M.e if M.batch else None
        return "BP4", M.formula("BP4").xreplace({M.A(l - 1, k, e): M.A(l, k, e)})
    if kind == "BP1 without sigma'":
        e = M.e if M.batch else None
        return "BP1", CostPartial(M.A(M.L, j, e))
    if kind == "BP3 not summed":
        return "BP3", M.D(l, j, M.e) if M.batch else 2 * M.D(l, j)
    raise KeyError(kind)


def _recheck_counterexample(step, ce):
    """Evaluate both sides at the counterexample, independently of find_counterexample."""
    values = dict(ce.values)
    out = []
    for side in (step.lhs, step.rhs):
        v = side.xreplace(dict(ce.sizes)).subs(dict(ce.indices)).doit()
        v = v.xreplace({x: values[x] for x in v.atoms(sigma_prime, CostPartial) if x in values})
        v = v.xreplace({x: values[x] for x in v.atoms(sp.Indexed)})
        out.append(v)
    return out


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("kind", ["swapped weight", "sigma' of layer l+1", "a^l in BP4", "BP1 without sigma'",
                                  "BP3 not summed"])
def test_wrong_formula_is_refuted_with_a_real_counterexample(setting, kind):
    M = Model(setting)
    key, candidate = _wrong(M, kind)
    thm = prove_theorem(M, key, candidate)
    assert thm.verdict == "REFUTED" and not thm.ok
    last = thm.steps[-1]
    assert last.rule == "formula" and last.rhs == candidate and last.verdict == "REFUTED"
    ce = last.counterexample
    assert ce is not None and ce.lhs != ce.rhs
    left, right = _recheck_counterexample(last, ce)
    assert (left, right) == (ce.lhs, ce.rhs)
    # the derivation before the formula is untouched: every other step still holds
    assert all(s.ok for s in thm.steps[:-1])


def test_an_equivalent_rewriting_is_proven():
    M = Model("column")
    l, j = M.l, M.j
    i = sp.Symbol("i", integer=True, nonnegative=True)
    inside = sp.Sum(sigma_prime(M.z[l, j]) * M.delta[l + 1, i] * M.w[l + 1, i, j], (i, 0, M.width(l + 1) - 1))
    thm = prove_theorem(M, "BP2", inside)
    assert thm.verdict == "PROVEN" and thm.steps[-1].rule == "formula"
    assert equal_by_linearity(inside, M.formula("BP2"))
    assert not equal_by_linearity(inside, M.formula("BP2").xreplace({M.w[l + 1, M.k, j]: M.w[l + 1, j, M.k]}))


def test_a_wrong_candidate_makes_the_whole_proof_fail():
    M = Model("row")
    _, wrong = _wrong(M, "swapped weight")
    p = prove_general(["row"], candidates={"row": {"BP2": wrong}})
    assert not p.ok and p.verdict == "REFUTED"
    assert "NOT proven: row BP2 (refuted)" in p.summary()
    assert "cover every depth" not in p.summary()


# -- tampered steps lose their verdict ----------------------------------------------

def _tamper(setting, key, pick, change):
    M = Model(setting)
    thm = copy.deepcopy(prove_theorem(M, key))
    steps = thm.steps
    i = pick(steps)
    change(steps[i], M)
    check_theorem(thm, M)
    return thm, steps[i]


@pytest.mark.parametrize("what,pick,change", [
    ("diff with a sign flipped", lambda st: next(i for i, s in enumerate(st) if s.rule == "diff"),
     lambda s, M: setattr(s, "rhs", -s.rhs)),
    ("guard takes the other branch", lambda st: next(i for i, s in enumerate(st) if s.rule == "range"),
     lambda s, M: setattr(s, "rhs", s.lhs.xreplace({s.data["piecewise"]: sp.S.Zero}))),
    ("guard over the wrong width", lambda st: next(i for i, s in enumerate(st) if s.rule == "range"),
     lambda s, M: s.data.update(piecewise=s.data["piecewise"].xreplace({M.width(M.l): M.width(M.l + 1)}))),
    ("chain rule through layer l+2", lambda st: next(i for i, s in enumerate(st) if s.rule == "chain"),
     lambda s, M: (s.data.update(layer=M.l + 2),
                   setattr(s, "rhs", general._chain_sum(M, s.data["x"], "z", M.l + 2, s.data["i"], None)))),
    ("hypothesis one layer too low", lambda st: next(i for i, s in enumerate(st) if s.rule == "hypothesis"),
     lambda s, M: s.data.update(layer=M.l)),
    ("definition of another neuron", lambda st: 0,
     lambda s, M: setattr(s, "rhs", s.rhs.xreplace({M.k: M.j}))),
])
def test_tampered_step_is_not_proven(what, pick, change):
    thm, step = _tamper("column", "BP2", pick, change)
    assert step.verdict == "UNPROVEN", (what, step.evidence_text())
    assert thm.verdict != "PROVEN"


# -- a concrete instance agrees with the concrete proofs ---------------------------------

@pytest.mark.parametrize("sizes,convention,batch,examples", [
    ((2, 3, 2), "column", "single", 1),
    ((2, 3, 2), "row", "single", 1),
    ((2, 3, 2), "column", "sum", 2),
    ((2, 3, 2, 2), "column", "single", 1),  # two applications of BP2: the induction, written out
])
def test_widths_substituted_agree_with_the_concrete_proof(proof, sizes, convention, batch, examples):
    spec = spec_of(sizes, convention, batch, examples)
    concrete = prove(spec)
    assert concrete.ok
    found = concrete_agreement(spec, proof)
    n_deltas = sum(sizes[1:]) * examples
    assert len(found) == n_deltas + len(concrete.partials)
    assert all(a.agrees for a in found), [a.name for a in found if not a.agrees]
    by_name = {a.name: a for a in found}
    assert by_name["dC/dw1[0,1]"].concrete == next(c.chain for c in concrete.partials if c.name == "dC/dw1[0,1]")


def test_the_instance_of_a_wrong_formula_disagrees():
    M = Model("column")
    _, wrong = _wrong(M, "swapped weight")
    bad = prove_general(["column"], candidates={"column": {"BP2": wrong}})
    found = concrete_agreement(spec_of((2, 3, 2)), bad)
    assert not all(a.agrees for a in found)
    assert all(a.agrees for a in found if a.name.startswith("delta2"))  # BP1 is still right
    assert not all(a.agrees for a in found if a.name.startswith("delta1"))


def test_instance_refuses_what_the_general_proof_does_not_cover():
    with pytest.raises(DeriveError, match="separate biases"):
        concrete_agreement("net222")


# -- API errors ---------------------------------------------------------------------------

def test_bad_api_input_is_one_line_error():
    with pytest.raises(DeriveError, match="unknown setting 'diagonal'"):
        prove_general(["diagonal"])
    with pytest.raises(DeriveError, match="unknown theorem 'BP5'"):
        prove_setting("column", {"BP5": sp.Integer(0)})
    with pytest.raises(DeriveError, match="must be a SymPy expression"):
        prove_setting("column", {"BP1": "a*b"})


# -- the command line and LaTeX ---------------------------------------------------------------

def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", "general", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_prints_each_step_with_its_rule_and_a_summary(tmp_path):
    r = run("--latex", "proof.tex", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("general proof: 16/16 theorems proven")
    assert lines[-1].endswith("BP1 and BP2 together cover every depth by induction")
    assert "wrote proof.tex" in r.stdout
    assert "= Σ_{k=0..n_{l+1}-1}(∂C/∂z^(l+1)[k]*∂z^(l+1)[k]/∂z^(l)[j])   [chain rule]" in r.stdout
    assert "[index range]" in r.stdout and "[sympy.diff]" in r.stdout and "[Kronecker sum]" in r.stdout
    assert r.stdout.count("PROVEN") == 16
    tex = (tmp_path / "proof.tex").read_text()
    assert tex.startswith(r"\documentclass") and tex.rstrip().endswith(r"\end{document}")
    assert [p.name for p in tmp_path.iterdir()] == ["proof.tex"]


def test_cli_exits_1_when_a_step_is_not_proven(monkeypatch, capsys):
    M = Model("column")
    _, wrong = _wrong(M, "a^l in BP4")
    real = general.prove_general
    monkeypatch.setattr(general, "prove_general",
                        lambda settings: real(settings, candidates={"column": {"BP4": wrong}}))
    code = general.run(types.SimpleNamespace(latex=None, setting=["column"], brief=True))
    out = capsys.readouterr().out
    assert code == 1
    assert "counterexample at" in out and out.strip().splitlines()[-1].endswith("column BP4 (refuted)")


@pytest.mark.parametrize("args,needle", [
    (("--latex", "proof.pdf"), "must be a .tex file"),
    (("--latex", "no/such/dir/proof.tex"), "does not exist"),
    (("--latex", "afile/proof.tex"), "does not exist"),
    (("--latex", "adir.tex"), "that is a folder"),
    (("--setting", "diagonal"), "invalid choice"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir.tex").mkdir()
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and needle in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir.tex", "afile"]
    assert list((tmp_path / "adir.tex").iterdir()) == []


@needs_pdflatex
def test_latex_document_compiles(proof, tmp_path):
    tex = tmp_path / "general.tex"
    tex.write_text(to_latex(proof))
    r = subprocess.run([shutil.which("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", tex.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert (tmp_path / "general.pdf").stat().st_size > 10_000


@needs_pdflatex
def test_latex_of_a_refuted_proof_compiles_and_shows_the_counterexample(tmp_path):
    M = Model("column-batch")
    _, wrong = _wrong(M, "sigma' of layer l+1")
    bad = prove_general(["column-batch"], candidates={"column-batch": {"BP2": wrong}})
    tex = tmp_path / "bad.tex"
    tex.write_text(to_latex(bad))
    assert "counterexample at" in tex.read_text() and r"\textbf{refuted}" in tex.read_text()
    r = subprocess.run([shutil.which("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", tex.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, [ln for ln in r.stdout.splitlines() if ln.startswith("!")]


def test_latex_is_deterministic(proof):
    assert to_latex(proof) == to_latex(prove_general())
    assert text(proof.steps[0].lhs) == "a^(L)[m]"


def test_a_guard_is_dropped_only_when_sympy_decides_it_over_the_index_ranges():
    M = Model("column")
    j, k, n_l, n_up, n_down = M.j, M.k, M.width(M.l), M.width(M.l + 1), M.width(M.l - 1)
    in_layer_l = {j: (0, n_l - 1), k: (0, n_down - 1)}
    assert general._decide(j <= n_l - 1, in_layer_l)[0] is True
    assert general._decide(j >= n_l, in_layer_l)[0] is False
    assert general._decide(j <= n_up - 1, in_layer_l)[0] is None  # another layer's width: not decided
    assert general._decide(sp.And(j <= n_l - 1, k <= n_down - 1), in_layer_l)[0] is True
    same_width = {j: (0, n_l - 1), k: (0, n_l - 1)}
    assert general._decide(sp.And(j <= n_l - 1, k <= n_l - 1), same_width)[0] is None  # conservative
    pw = sp.Piecewise((M.w[M.l, j, k], j <= n_up - 1), (0, True))
    assert general._discharge(pw, in_layer_l) is None
