"""Claims about layer-list specs: batch norm, layer norm, residual blocks, in text and LaTeX.

The truth is the chain rule over each layer's own nodes from its upstream gradient held free, so
a claim proven holds for every upstream gradient; the classic slips (the σ² path dropped, the
mean's path forgotten, the 1/B in the wrong place, ∂C/∂γ without x̂) are refused with a witness
at a point of the real network and the repair that names the lost path, itself proven.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from derive.claims import Claim, check_file
from derive.claims.layers import LayeredContext
from derive.claims.layers_check import check_layered
from derive.errors import DeriveError
from derive.spec import load_spec
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "claims"
EXPECT = re.compile(r"# expect: ([A-Z]+)(?: \(([a-z ]+)\))?:")

CONSOLIDATED = "gamma2 * s2 / B * (B * dC/dy2 - sum(dC/dy2) - xhat2 * sum(dC/dy2 * xhat2))"


@pytest.fixture(scope="module")
def bn():
    return LayeredContext(load_spec(EXAMPLES / "specs" / "batchnorm.toml"))


def _spec(tmp_path, name: str, body: str, **top) -> Path:
    head = {"name": name, "inputs": 2, "cost": "quadratic", "convention": "row", "batch": "mean", "examples": 3,
            "notation": "nielsen", **top}
    text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in head.items()) + body
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def verdict(ctx, lhs=None, rhs=None, latex=None):
    return check_layered(ctx, Claim("c", lhs=lhs, rhs=rhs, latex=latex))


@pytest.mark.parametrize("name", ["batchnorm", "batchnorm_latex"])
def test_the_examples_get_the_verdicts_they_state(name):
    path = EXAMPLES / f"{name}.toml"
    expected = EXPECT.findall(path.read_text())
    report = check_file(path)
    got = [(v.verdict, v.repair.kind if v.repair else "") for v in report.verdicts]
    assert got == expected
    for v in report.verdicts:
        if v.verdict == Verdict.REFUTED and v.witness is not None:  # a point of the network, both sides there
            assert v.witness["values"] and v.witness["lhs"] != v.witness["rhs"]


def test_the_classic_slips_get_the_path_they_lost(bn):
    dropped = verdict(bn, "dC/dx2", "gamma2 * s2 / B * (B * dC/dy2 - sum(dC/dy2))")
    assert dropped.verdict == Verdict.REFUTED and dropped.repair.kind == "path"
    assert "σ² path added" in dropped.repair.text and "xhat2 * sum(dC/dy2 * xhat2)" in dropped.repair.text
    mean = verdict(bn, "dC/dx2", "gamma2 * s2 / B * (B * dC/dy2 - xhat2 * sum(dC/dy2 * xhat2))")
    assert mean.repair.kind == "path" and "mean's path added" in mean.repair.text
    misplaced = verdict(bn, "dC/dx2", "gamma2 * s2 * (dC/dy2 - sum(dC/dy2) - xhat2 * sum(dC/dy2 * xhat2))")
    assert misplaced.repair.kind == "term" and "lacks its 1/B" in misplaced.repair.text
    gamma = verdict(bn, "dC/dgamma2", "sum(dC/dy2)")
    assert gamma.repair.kind == "xhat" and gamma.repair.new == "dC/dy2 * xhat2"
    beta = verdict(bn, "dC/dbeta2", "sum(dC/dy2 * xhat2)")
    assert beta.verdict == Verdict.REFUTED and beta.repair.kind == "xhat"


def test_text_and_latex_agree_and_every_spelling_of_the_variance_reads(bn):
    assert verdict(bn, "dC/dx2", CONSOLIDATED).verdict == Verdict.PROVEN
    for var in (r"\sigma^{2(2)}", r"(\sigma^{(2)})^2", r"\sigma^2", r"\sigma^{2\,(2)}"):
        v = verdict(bn, latex=rf"\hat{{x}}^{{(2)}} = \frac{{x^{{(2)}} - \mu^{{(2)}}}}{{\sqrt{{{var} + \varepsilon}}}}")
        assert v.verdict == Verdict.PROVEN, (var, v.message)
    # names without their layer take the left-hand side's
    v = verdict(bn, latex=r"\frac{\partial C}{\partial \beta^{(2)}} = \sum_b \frac{\partial C}{\partial y_b}")
    assert v.verdict == Verdict.PROVEN


def test_a_claim_in_the_upstream_gradient_holds_for_any_and_a_wrong_one_gets_a_point(bn):
    # dC/dy2 is free: the lemma; and the same quantity through the layer above (tanh's input gradient)
    assert verdict(bn, "dC/dbeta2", "sum(dC/dx3)").verdict == Verdict.PROVEN
    assert verdict(bn, "dC/dbeta2", "sum(dC/dy3 * tanh_prime(x3))").verdict == Verdict.PROVEN
    wrong = verdict(bn, "dC/dx2", "gamma2 * s2 * dC/dy2")
    assert wrong.verdict == Verdict.REFUTED
    w = wrong.witness
    assert set(w) >= {"values", "neurons", "network", "entry", "lhs", "rhs"}
    assert any(k.startswith("dC/dy2[") for k in w["neurons"]) and any(k.startswith("s2[") for k in w["neurons"])
    r, c = w["entry"]
    assert abs(w["lhs"][r][c] - w["rhs"][r][c]) > 1e-9


def test_layer_norm_sums_over_the_features_and_batch_norms_form_is_refused(tmp_path):
    spec = _spec(tmp_path, "ln", '[[layers]]\nkind = "dense"\nwidth = 3\n[[layers]]\nkind = "layernorm"\n'
                                 'eps = "1/100"\n[[layers]]\nkind = "dense"\nwidth = 1\nactivation = "sigmoid"\n')
    ctx = LayeredContext(load_spec(spec))
    right = "s2 / n2 * (n2 * gamma2 * dC/dy2 - sum_features(gamma2 * dC/dy2) - xhat2 * sum_features(dC/dy2 * gamma2 * xhat2))"
    assert verdict(ctx, "dC/dx2", right).verdict == Verdict.PROVEN
    assert verdict(ctx, "mu2", "sum_features(x2) / n2").verdict == Verdict.PROVEN
    over_batch = verdict(ctx, "dC/dx2", right.replace("sum_features", "sum").replace("n2", "B"))
    assert over_batch.verdict == Verdict.REFUTED and over_batch.witness is not None
    v = verdict(ctx, latex=r"\frac{\partial C}{\partial \gamma^{(2)}} = \sum_b \frac{\partial C}{\partial y^{(2)}} "
                           r"\odot \hat{x}^{(2)}")
    assert v.verdict == Verdict.PROVEN


def test_a_residual_block_adds_its_identity_path_and_the_column_layout_transposes(tmp_path):
    spec = _spec(tmp_path, "res", '[[layers]]\nkind = "dense"\nwidth = 2\nactivation = "tanh"\n[[layers]]\n'
                                  'kind = "residual"\n  [[layers.layers]]\n  kind = "dense"\n  width = 2\n'
                                  '  activation = "sigmoid"\n[[layers]]\nkind = "batchnorm"\n'
                                  '[[layers]]\nkind = "dense"\nwidth = 1\n', convention="column", batch="sum")
    ctx = LayeredContext(load_spec(spec))
    assert ctx.matrix("x", 2).shape == (2, 3) and ctx.matrix("gamma", 4).shape == (2, 1)
    assert verdict(ctx, "dC/dx2", "dC/dy2 + dC/dx3").verdict == Verdict.PROVEN
    lost = verdict(ctx, "dC/dx2", "dC/dx3")
    assert lost.verdict == Verdict.REFUTED and lost.repair.kind == "path" and "identity path" in lost.repair.text
    assert verdict(ctx, "dC/dW3", "delta3 @ x3.T").verdict == Verdict.PROVEN  # column layout: W is out × in
    assert verdict(ctx, "dC/dx4", CONSOLIDATED.replace("2", "4")).verdict == Verdict.PROVEN
    assert verdict(ctx, "dC/dgamma4", "sum(dC/dy4 * xhat4)").verdict == Verdict.PROVEN


@pytest.mark.parametrize("lhs, rhs, field, words", [
    ("dC/dgamma3", "sum(dC/dy3)", "lhs", "layer 3 (a tanh activation layer) has no gamma"),
    ("dC/dgamma2", "sum(dC/dy2 * xhat3)", "rhs", "xhat3: layer 3 is a tanh activation layer"),
    ("xhat2", "(x2 - mu2) / sqrt(var2)", "rhs", "sqrt applies to a norm layer's variance plus its eps"),
    ("dC/dgamma2", "sum(dC/dy9)", "rhs", "there is no layer 9"),
    ("dC/dgamma2", "sum(dC/dy2 * foo)", "rhs", "unknown name 'foo'"),
    ("gamma2", "beta2", "lhs", "is a parameter"),
])
def test_what_cannot_be_read_is_an_error_naming_it(bn, lhs, rhs, field, words):
    v = verdict(bn, lhs, rhs)
    assert v.verdict == Verdict.ERROR and v.error_field == field and words in v.message, v.message


def test_a_claims_file_on_a_layer_list_refuses_keys_for_sizes_specs(tmp_path):
    spec = EXAMPLES / "specs" / "batchnorm.toml"
    claim = '[[claim]]\nname = "a"\nlhs = "dC/dbeta2"\nrhs = "sum(dC/dy2)"\n'
    for extra, words in (('sizes = [2, 3, 2]\n', "lists its layers"), ('notation = "ng"\n', "for sizes specs")):
        f = tmp_path / "c.toml"
        f.write_text(f'spec = "{spec}"\n{extra}{claim}')
        with pytest.raises(DeriveError, match=words):
            check_file(f)


def test_the_command_checks_a_layer_list_and_says_so_in_json():
    r = subprocess.run([sys.executable, "-m", "derive", "check", str(EXAMPLES / "batchnorm_latex.toml"), "--json"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 1, r.stderr
    claims = json.loads(r.stdout)
    assert [c["verdict"] for c in claims].count("REFUTED") == 3
    assert {c["repair"]["kind"] for c in claims if c["repair"]} == {"path", "term"}


def test_names_without_a_layer_are_of_the_only_layer_that_has_them(bn, tmp_path):
    assert verdict(bn, "dC/dgamma", "np.sum(dC/dy2 * xhat, axis=0, keepdims=True)").verdict == Verdict.PROVEN
    assert verdict(bn, "mu", "np.mean(x2, axis=0, keepdims=True)").verdict == Verdict.PROVEN
    two = _spec(tmp_path, "two", '[[layers]]\nkind = "batchnorm"\n[[layers]]\nkind = "dense"\nwidth = 2\n'
                                 '[[layers]]\nkind = "layernorm"\n[[layers]]\nkind = "dense"\nwidth = 1\n')
    v = verdict(LayeredContext(load_spec(two)), "dC/dgamma", "sum(dC/dy1 * xhat)")
    assert v.verdict == Verdict.ERROR and "could be of layers 1, 3" in v.message


def test_half_powers_the_loss_and_inline_partials_read(bn):
    assert verdict(bn, "xhat2", "(x2 - mu2) * (var2 + eps2)**(-1/2)").verdict == Verdict.PROVEN
    assert verdict(bn, "dL/dvar2", "-0.5 * sum(dL/dxhat2 * (x2 - mu2)) * (var2 + eps2)**-1.5").verdict == Verdict.PROVEN
    assert verdict(bn, "dC/dvar2", "-0.5 * sum(dC/dxhat2 * (x2 - mu2)) * (var2 + eps2)**-0.5").verdict == Verdict.REFUTED
    v = verdict(bn, latex=r"\partial C / \partial \beta^{(2)} = \sum_b \partial C / \partial y^{(2)}_b")
    assert v.verdict == Verdict.PROVEN


def test_a_chain_of_equalities_checks_every_side_and_names_the_wrong_one(bn):
    ok = verdict(bn, latex=r"\mu^{(2)} = \frac{1}{B}\sum_b x^{(2)}_b = \frac{1}{B}\sum_b x^{(2)}")
    assert ok.verdict == Verdict.PROVEN
    wrong = verdict(bn, latex=r"\mu^{(2)} = \frac{1}{B}\sum_b x^{(2)}_b = \sum_b x^{(2)}")
    assert wrong.verdict == Verdict.REFUTED and wrong.witness["side"] == 3 and wrong.repair.kind == "factor"


def test_scalar_claims_name_one_feature_of_every_example(bn):
    right = (r"\frac{\partial C}{\partial \gamma^{(2)}_1} = \sum_{b} \frac{\partial C}{\partial y^{(2)}_{b1}} "
             r"\hat{x}^{(2)}_{b1}")
    assert verdict(bn, latex=right).verdict == Verdict.PROVEN
    assert verdict(bn, latex=right.replace("y^{(2)}_{b1}", "y^{(2)}_{b0}")).verdict == Verdict.REFUTED
    assert verdict(bn, latex=r"\mu^{(2)}_1 = \frac{1}{B} \sum_b x^{(2)}_{b1}").verdict == Verdict.PROVEN
    text = "gamma2[2] * s2[2] / B * (B * dC/dy2[1,2] - sum(dC/dy2)[2] - xhat2[1,2] * sum(dC/dy2 * xhat2)[2])"
    assert verdict(bn, "dC/dx2[1,2]", text).verdict == Verdict.PROVEN
