"""The general proof of the layers beyond dense (issue 15): batch norm and layer norm with B and n symbols, and
the residual δ recursion for every depth.

Each theorem must be proven from the scalars with every step checked by its rule; the classic wrong versions
must be refuted by a concrete layer whose gradients an independent oracle (sympy.diff of the layer written out
at that size) computes; a tampered step must lose its verdict; the command must name the theorems.
"""

import json
import shutil
import subprocess
import sys

import pytest
import sympy as sp
from sympy import Sum

from derive.errors import DeriveError
from derive.proofs.general import LAYERS, RULES, CostPartial, prove_general, prove_layer, render_parts, text
from derive.proofs.general.entries import TotalPartial
from derive.proofs.general.functions import LocalPartial
from derive.proofs.general.layer_proof import check_layer_theorem
from derive.proofs.general.norms import NORM_THEOREMS, NormModel, norm_witness
from derive.proofs.general.residual import RESIDUAL_THEOREMS
from derive.report.general import to_latex
from tests.conftest import needs_pdflatex


@pytest.fixture(scope="module")
def proof():
    return prove_general((), layers=LAYERS[:3])  # the norms and residual (spatial: test_general_spatial)


def theorem(proof, layer, key):
    return next(t for t in next(s for s in proof.layers if s.key == layer).theorems if t.key == key)


# -- the theorems are proven, from the scalars, each step by its rule ---------------------------------

def test_every_layer_theorem_is_proven_with_every_step_checked(proof):
    assert proof.ok and proof.verdict == "PROVEN" and proof.exit_code == 0
    assert [s.key for s in proof.layers] == ["batchnorm", "layernorm", "residual"]
    keys = [(t.setting, t.key) for t in proof.layer_theorems]
    assert keys == ([("batchnorm", k) for k in NORM_THEOREMS] + [("layernorm", k) for k in NORM_THEOREMS]
                    + [("residual", k) for k in RESIDUAL_THEOREMS])
    steps = [st for t in proof.layer_theorems for st in t.steps]
    assert all(st.rule in RULES and st.verdict in ("GIVEN", "PROVEN") for st in steps)
    assert {st.rule for st in steps} >= {"graph", "through", "diff", "kronecker", "range", "linear", "constant",
                                          "fold", "unfold", "lemma", "res-hypothesis", "formula"}
    assert [r.verdict for r in proof.rule_checks][-1] == "PROVEN"  # ds/dσ² = -s³/2, by SymPy on the root
    assert proof.layers_summary().startswith("layers beyond dense: 24/24 theorems proven")  # 8 + 8 + 8


def test_batch_norm_consolidated_form_is_the_textbook_one_with_B_symbolic(proof):
    thm = theorem(proof, "batchnorm", "x")
    assert text(thm.lhs) == "∂C/∂x[k,i]"
    assert text(thm.formula) == ("(B*∂C/∂y[k,i] - x̂[k,i]*Σ_{b=0..B-1}(∂C/∂y[b,i]*x̂[b,i]) - Σ_{b=0..B-1}(∂C/∂y[b,i]))"
                                 "*s[i]*γ[i]/B")
    M = NormModel("batchnorm")
    assert M.B in thm.formula.free_symbols and M.B.is_integer and M.B.is_positive
    # from the chain rule on the scalars: dy_b/dx_k by sympy.diff of y_b written out in x, never the textbook form
    (lemma_diff,) = [s for s in thm.steps if s.rule == "diff"]
    assert isinstance(lemma_diff.lhs, TotalPartial)
    assert not [e for e in lemma_diff.data["source"].final.atoms(sp.Indexed) if e.base.name in ("mu", "var", "xhat")]
    first = thm.main.steps[0]
    assert first.rule == "through" and "every output that depends on x[k,i] is y[b,i]" in first.evidence_text()


def test_the_three_paths_are_read_off_the_definitions_and_agree_with_the_consolidated_form(proof):
    paths = theorem(proof, "batchnorm", "x-paths")
    step = paths.main.steps[0]
    assert step.rule == "graph"
    assert step.evidence_text() == "what reads x[k,i] in the definitions: μ[i]; σ²[i]; x̂[k,i]"
    assert text(paths.formula) == "∂C/∂x̂[k,i]*s[i] + 2*(-μ[i] + x[k,i])*∂C/∂σ²[i]/B + ∂C/∂μ[i]/B"
    both = theorem(proof, "batchnorm", "x-paths=x")
    assert both.formula == theorem(proof, "batchnorm", "x").formula
    used = [s.data["lemma"] for s in both.steps if s.rule == "lemma"]
    for key in ("mu", "var", "xhat"):  # the proven adjoints are substituted, not retyped
        assert theorem(proof, "batchnorm", key).main in used
    assert "Σ_{d=0..B-1}(x[d,i]) = B*μ[i]" in both.steps[-2].evidence_text()  # Σ_b (x_b - μ) = 0 by μ's definition


def test_layer_norm_is_the_same_over_features_with_gamma_inside_the_sum(proof):
    thm = theorem(proof, "layernorm", "x")
    assert text(thm.formula) == ("(n*∂C/∂y[e,k]*γ[k] - x̂[e,k]*Σ_{j=0..n-1}(∂C/∂y[e,j]*γ[j]*x̂[e,j]) "
                                 "- Σ_{j=0..n-1}(∂C/∂y[e,j]*γ[j]))*s[e]/n")
    gamma = theorem(proof, "layernorm", "gamma")  # per feature: the sum runs over the examples
    assert text(gamma.lhs) == "∂C/∂γ[k]" and text(gamma.formula) == "Σ_{e=0..B-1}(∂C/∂y[e,k]*x̂[e,k])"
    assert text(theorem(proof, "batchnorm", "gamma").formula) == "Σ_{b=0..B-1}(∂C/∂y[b,i]*x̂[b,i])"


def test_the_residual_step_is_delta_from_above_plus_delta_through_the_block(proof):
    step = theorem(proof, "residual", "step")
    assert text(step.lhs) == "Δ^(r-1)[j]"
    assert text(step.formula) == "Δ^(r)[j] + Σ_{m=0..n-1}(δ^(r,1)[m]*w^(r,1)[m,j])"
    assert text(step.scope.layer_range.var) == "r"
    graph = next(s for s in step.main.steps if s.rule == "graph")
    assert graph.evidence_text() == ("what reads h^(r-1)[j] in the definitions: z^(r,1)[m] for every "
                                     "0 ≤ m ≤ n-1; h^(r)[j]")
    assert [s.data["name"].name for s in step.main.steps if s.rule == "res-hypothesis"] == ["Delta", "delta"]
    assert theorem(proof, "residual", "base").ok and theorem(proof, "residual", "base").scope.layer_range is None


def test_inside_a_block_the_delta_goes_down_its_dense_layers_from_the_top(proof):
    top, inner = theorem(proof, "residual", "top"), theorem(proof, "residual", "inner")
    assert text(top.lhs) == "δ^(r,P)[m]" and text(top.formula) == "σ'(z^(r,P)[m])*Δ^(r)[m]"
    assert text(inner.formula) == "σ'(z^(r,p)[j])*Σ_{k=0..n-1}(δ^(r,p+1)[k]*w^(r,p+1)[k,j])"
    assert [render_parts(a, "text") for a in inner.assumptions][:2] == ["1 ≤ r ≤ R", "1 ≤ p ≤ P-1"]
    # who reads a^(r,p) is decided by the layer ranges: z^(r,p+1) (2 <= p+1 <= P), never h^r (p = P is excluded)
    graph = next(s for s in inner.steps if s.rule == "graph" and "a^(r,p)" in s.evidence_text())
    assert graph.evidence_text() == "what reads a^(r,p)[j] in the definitions: z^(r,p+1)[m] for every 0 ≤ m ≤ n-1"


@pytest.mark.parametrize("kind", ["batchnorm", "layernorm"])
def test_the_oracle_agrees_with_the_proven_consolidated_form(proof, kind):
    """The witness search compares against gradients computed by sympy.diff of the layer written out (B = 1, 2, 3, 5):
    on a true formula it finds nothing, so a witness it reports is a real disagreement."""
    thm = theorem(proof, kind, "x")
    assert norm_witness(NormModel(kind), thm.lhs, thm.formula, tries=1) is None


# -- the classic wrong versions are refused -----------------------------------------------------------------------

def _mutants(kind):
    M = NormModel(kind)
    t, u, k, N, s = M.t, M.u, M.k, M.N, M.s()
    xh = lambda i: M.at(M.xhat, i, u)  # noqa: E731
    G = (lambda i: M.gamma[u] * M.g(i)) if M.batch else (lambda i: M.gamma[i] * M.g(i))  # noqa: E731
    over = M.over
    out = {
        "the σ² path dropped": ("x", s / N * (N * G(k) - over(G(t)))),
        "1/B² instead of 1/B": ("x", s / N ** 2 * (N * G(k) - over(G(t)) - xh(k) * over(G(t) * xh(t)))),
        "the 1/B missing": ("x", s * (N * G(k) - over(G(t)) - xh(k) * over(G(t) * xh(t)))),
        "the mean's path forgotten": ("x", s / N * (N * G(k) - xh(k) * over(G(t) * xh(t)))),
        "γ missing": ("x", s / N * (N * M.g(k) - over(M.g(t)) - xh(k) * over(M.g(t) * xh(t)))),
        "three paths, the σ² path dropped": ("x-paths", CostPartial(xh(k)) * s + CostPartial(M.mu[u]) / N),
        "three paths, the mean's path dropped": ("x-paths", CostPartial(xh(k)) * s + CostPartial(M.var[u]) * 2
                                                 * (M.at(M.x, k, u) - M.mu[u]) / N),
    }
    if not M.batch:  # layer norm's statistics summed over the batch instead of the features
        e = sp.Symbol("f", integer=True, nonnegative=True)
        over_batch = lambda body: Sum(body, (e, 0, M.B - 1))  # noqa: E731
        g_at = lambda i: M.gamma[k] * CostPartial(M.y[i, k])  # noqa: E731
        out["summed over the batch, not the features"] = (
            "x", s / N * (N * G(k) - over_batch(g_at(e)) - xh(k) * over_batch(g_at(e) * M.xhat[e, k])))
    return [(kind, name, key, f) for name, (key, f) in out.items()]


@pytest.mark.parametrize("kind,name,key,wrong", _mutants("batchnorm") + _mutants("layernorm"),
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_classic_wrong_form_is_refuted_with_a_concrete_layer(kind, name, key, wrong):
    setting = prove_layer(kind, {key: wrong})
    thm = next(t for t in setting.theorems if t.key == key)
    assert thm.verdict == "REFUTED"
    failed = [s for s in thm.steps if not s.ok]
    assert [s.rule for s in failed] == ["formula"] and failed[0].verdict == "REFUTED"  # every step before it holds
    ce = failed[0].counterexample
    assert ce is not None and ce.lhs != ce.rhs and ce.lhs.is_Rational and ce.rhs.is_Rational
    sizes = dict(ce.sizes)
    assert sizes[NormModel(kind).N] in (1, 2, 3, 5)
    assert failed[0].evidence_text().startswith("counterexample at ") and "ε = " in failed[0].evidence_text()
    others = [t for t in setting.theorems if t.key != key and t.key != "x-paths=x"]
    assert all(t.ok for t in others)


def test_a_wrong_residual_step_is_refuted():
    from derive.proofs.general.residual import ResidualModel

    M = ResidualModel()
    only_through = Sum(M.w[M.r, 1, M.m, M.j] * M.delta[M.r, 1, M.m], (M.m, 0, M.n - 1))  # the skip path forgotten
    thm = next(t for t in prove_layer("residual", {"step": only_through}).theorems if t.key == "step")
    assert thm.verdict == "REFUTED" and thm.steps[-1].rule == "formula"
    assert thm.steps[-1].evidence_text().startswith("counterexample at n = ")


def test_a_wrong_candidate_makes_the_command_fail(proof):
    M = NormModel("batchnorm")
    bad = prove_general((), candidates={"batchnorm": {"x": M.formula("x") * 2}}, layers=("batchnorm",))
    assert not bad.ok and bad.exit_code == 1 and bad.verdict == "REFUTED"
    assert bad.layers_summary().endswith("NOT proven: batchnorm x (refuted)")
    data = json.loads(json.dumps(bad.to_json()))
    (failed,) = data["layers"][0]["theorems"][6]["failed"]
    assert failed["rule"] == "formula" and failed["evidence"].startswith("counterexample at ")


# -- a tampered step loses its verdict --------------------------------------------------------------------------

def _retry(thm, chain_at, step_at, **change):
    """The theorem with one step changed (rhs, rule or data), every step checked again."""
    import copy

    thm = copy.deepcopy(thm)
    st = thm.chains[chain_at].steps[step_at]
    if "rhs" in change:
        st.rhs = change.pop("rhs")
    if "rule" in change:
        st.rule = change.pop("rule")
    st.data.update(change)
    check_layer_theorem(thm, NormModel(thm.setting) if thm.setting != "residual" else _residual_model())
    return thm, st


def _residual_model():
    from derive.proofs.general.residual import ResidualModel

    return ResidualModel()


def test_a_chain_rule_that_forgets_a_reader_is_not_proven(proof):
    thm = theorem(proof, "batchnorm", "x-paths")
    main = thm.chains.index(thm.main)
    st = thm.main.steps[0]
    dropped = sp.Add(*[a for a in sp.Add.make_args(st.rhs) if not a.has(CostPartial(NormModel("batchnorm").var[
        sp.Symbol("i", integer=True, nonnegative=True)]))])
    bad, step = _retry(thm, main, 0, rhs=dropped)
    assert step.verdict == "UNPROVEN" and bad.verdict != "PROVEN"


def test_the_chain_rule_through_the_outputs_needs_every_output_that_depends_on_x(proof):
    thm = theorem(proof, "batchnorm", "x")
    main = thm.chains.index(thm.main)
    M = NormModel("batchnorm")
    only_k = M.y[M.k, M.u]  # y[k, i] alone: the mean and the variance reach every y[b, i]
    body = CostPartial(only_k) * TotalPartial(only_k, M.x[M.k, M.u])
    _, step = _retry(thm, main, 0, rhs=body, family=only_k, limits=())
    assert step.verdict == "UNPROVEN" and "premise not shown" in step.evidence_text()
    other = M.y[M.t, sp.Symbol("i2", integer=True, nonnegative=True)]  # another feature's outputs
    body = Sum(CostPartial(other) * TotalPartial(other, M.x[M.k, M.u]), (M.t, 0, M.B - 1))
    _, step = _retry(thm, main, 0, rhs=body, family=other, limits=((M.t, 0, M.B - 1),))
    assert step.verdict == "UNPROVEN"


def test_the_chain_rule_through_the_outputs_must_sum_over_every_output(proof):
    thm = theorem(proof, "batchnorm", "x")
    main = thm.chains.index(thm.main)
    M = NormModel("batchnorm")
    y = M.y[M.t, M.u]
    short = ((M.t, 0, M.B - 2),)  # y[B-1, i] left out
    body = Sum(CostPartial(y) * TotalPartial(y, M.x[M.k, M.u]), *short)
    _, step = _retry(thm, main, 0, rhs=body, limits=short)
    assert step.verdict == "UNPROVEN" and "does not run over every output" in step.evidence_text()


def test_who_reads_an_entry_of_unknown_range_is_not_decided():
    from derive.proofs.general.steps import Scope

    M = NormModel("batchnorm")
    somewhere = sp.Symbol("z", integer=True)  # no range: μ's sum over 0..B-1 may or may not hold x[z, i]
    assert M.graph.readers(M.x[somewhere, M.u], Scope(dict(M.ranges), {}, None)) is None
    assert [r.head for r in M.graph.readers(M.x[M.k, M.u], Scope(dict(M.ranges), {}, None))] == [
        M.mu[M.u], M.var[M.u], M.xhat[M.k, M.u]]
    assert M.graph.readers(M.gamma[M.u], Scope(dict(M.ranges), {}, None))[0].limits == ((M.t, 0, M.B - 1),)


def test_a_local_partial_must_differentiate_the_definition_itself(proof):
    thm = theorem(proof, "batchnorm", "x-paths")
    M = NormModel("batchnorm")
    at = next(i for i, c in enumerate(thm.chains) if c.head == LocalPartial(M.var[M.u], M.x[M.k, M.u]))
    import copy

    bad = copy.deepcopy(thm)
    src = bad.chains[at - 1]
    src.steps[0].rhs = src.steps[0].rhs.xreplace({M.mu[M.u]: M.definition(M.mu[M.u])})  # μ written out: not local
    check_layer_theorem(bad, M)
    assert src.steps[0].verdict == "UNPROVEN" and bad.chains[at].steps[0].verdict == "UNPROVEN"
    assert bad.verdict != "PROVEN"


def test_a_sum_index_that_captures_the_variable_is_not_differentiated():
    from derive.proofs.general.layer_proof import LayerBuilder
    from derive.proofs.general.steps import Theorem

    R = _residual_model()
    c = sp.Symbol("c", integer=True, nonnegative=True)
    thm = Theorem("w-first", "residual", "", CostPartial(R.w[R.r, 1, R.m, c]), R.formula("w-first"), R.scope("w"))
    b = LayerBuilder(R, thm)
    b.local(R.z[R.r, 1, R.m], R.w[R.r, 1, R.m, c])  # the definition's own Σ_c: ∂/∂w[r,1,m,c] would read the bound c
    check_layer_theorem(thm, R)
    diff = thm.chains[1].steps[0]
    assert diff.verdict == "UNPROVEN" and "summation index" in diff.evidence_text()


def test_the_hypothesis_is_used_only_at_its_layer(proof):
    thm = theorem(proof, "residual", "step")
    main = thm.chains.index(thm.main)
    at = next(i for i, s in enumerate(thm.main.steps) if s.rule == "res-hypothesis")
    R = _residual_model()
    _, step = _retry(thm, main, at, prefix=(R.r + 1,))
    assert step.verdict == "UNPROVEN" and "no induction hypothesis" in step.evidence_text()
    weights = theorem(proof, "residual", "w")
    main = weights.chains.index(weights.main)
    at = next(i for i, s in enumerate(weights.main.steps) if s.rule == "def-delta")
    _, step = _retry(weights, main, at, rule="res-hypothesis")  # a name is not an induction hypothesis
    assert step.verdict == "UNPROVEN"


def test_a_mean_named_with_the_wrong_count_is_not_proven(proof):
    thm = theorem(proof, "batchnorm", "x-paths=x")
    main = thm.chains.index(thm.main)
    at = next(i for i, s in enumerate(thm.main.steps) if s.rule == "fold")
    st = thm.main.steps[at]
    M = NormModel("batchnorm")
    wrong = st.lhs.replace(lambda e: isinstance(e, Sum) and e.function == M.x[M.t, M.u], lambda e: M.mu[M.u])
    _, step = _retry(thm, main, at, rhs=wrong)
    assert step.verdict == "UNPROVEN"


# -- the API and the command ---------------------------------------------------------------------------------

def test_bad_api_input_is_one_line_error():
    with pytest.raises(DeriveError, match="unknown layer 'conv'; the layers are batchnorm, layernorm, residual"):
        prove_general((), layers=("conv",))
    with pytest.raises(DeriveError, match="unknown theorem 'delta' of batchnorm"):
        prove_layer("batchnorm", {"delta": sp.S.One})
    with pytest.raises(DeriveError, match="must be a SymPy expression"):
        prove_layer("residual", {"step": "Delta"})


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "derive", "general", *args], capture_output=True, text=True, cwd=cwd)


def test_cli_names_the_layer_theorems_and_their_summary():
    r = run("--layer", "batchnorm", "--layer", "residual", "--brief")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[-1].startswith("layers beyond dense: 16/16 theorems proven (batchnorm, residual)")
    assert not any(ln.startswith("general proof:") for ln in lines)  # no setting of BP1-BP4 was named
    assert ("✓ x ∂C/∂x[k,i] = (B*∂C/∂y[k,i] - x̂[k,i]*Σ_{b=0..B-1}(∂C/∂y[b,i]*x̂[b,i]) - Σ_{b=0..B-1}(∂C/∂y[b,i]))"
            "*s[i]*γ[i]/B   PROVEN") in lines
    assert "✓ step Δ^(r-1)[j] = Δ^(r)[j] + Σ_{m=0..n-1}(δ^(r,1)[m]*w^(r,1)[m,j])   PROVEN" in lines
    assert r.stdout.count("PROVEN") == 16


def test_cli_json_lists_the_layers():
    r = run("--layer", "layernorm", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["verdict"] == "PROVEN" and data["settings"] == []
    (ln,) = data["layers"]
    assert ln["setting"] == "layernorm" and [t["theorem"] for t in ln["theorems"]] == list(NORM_THEOREMS)
    assert data["layers_summary"].startswith("layers beyond dense: 8/8 theorems proven (layernorm)")


def test_cli_bad_layer_is_one_line_exit_2():
    r = run("--layer", "conv")
    assert r.returncode == 2 and r.stdout == "" and r.stderr.count("\n") == 1 and "invalid choice" in r.stderr


@needs_pdflatex
def test_latex_with_the_layers_compiles(proof, tmp_path):
    tex = tmp_path / "layers.tex"
    tex.write_text(to_latex(proof))
    r = subprocess.run([shutil.which("pdflatex"), "-interaction=nonstopmode", "-halt-on-error", tex.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, [ln for ln in r.stdout.splitlines() if ln.startswith("!")]
    assert r"\frac{d y_{b,i}}{d x_{k,i}}" in tex.read_text() and r"\hat{x}_{k,i}" in tex.read_text()
