"""Layer lists: [[layers]] specs are validated layer by layer, and each kind's backward forms are proven.

A checker that cannot fail proves nothing: the classic wrong batch-norm backward passes (the σ²
path dropped, the 1/B in the wrong place, the mean's path forgotten), layer norm's statistics
taken over the batch, and a residual block without its identity path must each be refused
with a witness, by the same proof that proves the right forms.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp

from derive.errors import SpecError
from derive.graph import LayeredNetwork
from derive.proofs.layered import prove_layers
from derive.spec import LayeredSpec, load_spec, validate
from derive.tables.layers import KINDS
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples" / "specs").glob("*.toml"))
LAYER_LISTS = [p for p in EXAMPLES if "[[layers]]" in p.read_text()]

BASE = dict(name="t", inputs=2, cost="quadratic", convention="row", batch="mean", examples=3, notation="nielsen")


def spec_of(*layers, **over) -> LayeredSpec:
    return validate({**BASE, **over, "layers": list(layers)}, "t.toml")


def dense(width, activation="identity", **kw):
    return {"kind": "dense", "width": width, "activation": activation, **kw}


# ---------------------------------------------------------------------------
# the spec
# ---------------------------------------------------------------------------

def test_the_issue_format_reads_with_positions_widths_and_exact_eps():
    spec = load_spec(str(ROOT / "examples" / "specs" / "bn_mlp.toml"))
    assert isinstance(spec, LayeredSpec)
    kinds = [(b.position, b.kind, b.n_in, b.width) for b in spec.blocks]
    assert kinds == [(1, "dense", 3, 4), (2, "batchnorm", 4, 4), (3, "activation", 4, 4), (4, "residual", 4, 4),
                     (5, "dense", 4, 4), (6, "layernorm", 4, 4), (7, "dense", 4, 2)]
    assert spec.blocks[1].eps == Fraction(1, 100) and spec.blocks[1].affine
    assert spec.blocks[0].activation == "identity" and spec.blocks[0].bias == "separate"  # the defaults
    assert spec.n_params == len(LayeredNetwork(spec).param_list) == 16 + 8 + 20 + 8 + 10


@pytest.mark.parametrize("eps,exact", [("1/100", Fraction(1, 100)), (1e-5, Fraction(1, 100000)),
                                       ("1e-3", Fraction(1, 1000)), (2, Fraction(2))])
def test_eps_is_an_exact_rational(eps, exact):
    assert spec_of(dense(2), {"kind": "batchnorm", "eps": eps}).blocks[1].eps == exact


@pytest.mark.parametrize("layers,over,needle", [
    ([], {}, "non-empty array of tables"),
    ([{"kind": "conv"}], {}, "layer 1)': kind 'conv' is not one of"),
    ([dense(2), {"kind": "dense"}], {}, "layer 2, dense)': missing 'width'"),
    ([dense(2), {"kind": "batchnorm", "eps": 0}], {}, "layer 2, batchnorm)': eps 0 is not a positive number"),
    ([dense(2), {"kind": "batchnorm", "eps": "tiny"}], {}, "eps 'tiny' is not a number"),
    ([dense(2), {"kind": "batchnorm", "eps": True}], {}, "eps True is not a number"),
    ([dense(2), {"kind": "layernorm", "affine": "yes"}], {}, "affine 'yes' is not true or false"),
    ([dense(2), {"kind": "layernorm", "width": 3}], {}, "unknown key 'width'"),
    ([dense(2, "sigmoidal")], {}, "activation 'sigmoidal' is not one of"),
    ([dense(2, bias="augmented")], {}, "bias 'augmented' is not one of separate, none"),
    ([dense(2, "softmax"), dense(2)], {}, "layer 1, dense)': 'softmax' is only allowed on the last layer"),
    ([dense(2), {"kind": "residual", "layers": [dense(3)]}], {}, "layer 2, residual)': its layers end at width 3"),
    ([dense(2), {"kind": "residual"}], {}, "layer 2, residual).layers': None is not a non-empty array"),
    ([dense(2), {"kind": "residual", "layers": [dense(2), {"kind": "pool"}]}], {}, "layer 4)': kind 'pool'"),
    ([dense(2), {"kind": "batchnorm"}], {"batch": "single", "examples": 1}, "batch norm needs a batch"),
    ([dense(2)], {"cost": "log_likelihood"}, "needs the last layer's activation in (softmax)"),
    ([dense(2)], {"sizes": [2, 2]}, "field 'sizes': a spec lists its layers or gives sizes"),
    ([dense(2)], {"inputs": 0}, "field 'inputs': 0 is neither a width nor a shape"),
    ([dense(2)] * 65, {}, "at most 64"),
])
def test_a_wrong_layer_list_is_one_line_naming_the_layer(layers, over, needle):
    with pytest.raises(SpecError) as err:
        validate({**BASE, **over, "layers": layers}, "t.toml")
    message = str(err.value)
    assert message.startswith("t.toml: field ") and "\n" not in message
    assert needle in message, message


def test_the_cli_says_it_in_one_line_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name="b"\ninputs=2\ncost="quadratic"\nconvention="row"\nbatch="mean"\nnotation="nielsen"\n'
                   '[[layers]]\nkind="dense"\nwidth=2\n[[layers]]\nkind="batchnorm"\neps=-1\n')
    run = subprocess.run([sys.executable, "-m", "derive", "prove", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.startswith("error: ") and "layer 2, batchnorm" in run.stderr and run.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", LAYER_LISTS, ids=lambda p: p.stem)
def test_every_example_layer_list_is_proven_with_exit_0(path):
    run = subprocess.run([sys.executable, "-m", "derive", "prove", str(path), "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["proven"] and report["mode"] == "layers" and not report["failures"]
    forms = {(row["kind"], row["form"]) for row in report["per_layer"]}
    kinds = {b["kind"] for b in report["spec"]["layers"]}
    for kind in kinds:  # every kind's textbook form and the oracle met, entry by entry
        assert (kind, "backward") in forms and (kind, "oracle") in forms
    assert all(row["input"][0] == row["input"][1] and row["partials"][0] == row["partials"][1]
               for row in report["per_layer"])


def test_batch_norm_forms_are_proven_in_both_conventions_and_without_affine():
    for convention in ("row", "column"):
        spec = spec_of(dense(3, "tanh"), {"kind": "batchnorm", "eps": "1/10"}, dense(2, "sigmoid"),
                       convention=convention)
        proof = prove_layers(spec)
        assert proof.ok and {(c.block, c.form) for c in proof.checks} >= {("batchnorm", "three paths")}
    plain = prove_layers(spec_of(dense(2), {"kind": "batchnorm", "affine": False}, {"kind": "layernorm", "affine": False},
                                 dense(2)))
    assert plain.ok and not any("gamma" in c.name for c in plain.checks)


def test_softmax_and_cross_entropy_outputs_are_proven():
    proof = prove_layers(spec_of(dense(3), {"kind": "layernorm"}, dense(3, "softmax"), cost="log_likelihood"))
    assert proof.ok
    proof = prove_layers(spec_of(dense(2, "relu"), {"kind": "activation", "activation": "sigmoid"},
                                 cost="cross_entropy", examples=2))
    assert proof.ok


def test_the_batch_norm_scalars_and_their_atoms():
    net = LayeredNetwork(spec_of(dense(2), {"kind": "batchnorm", "eps": "1/100"}))
    s = sp.Symbol("s2_0")
    assert s in net.atoms and net.definitions[s] == (sp.Symbol("var2_0") + sp.Rational(1, 100)) ** sp.Rational(-1, 2)
    # the chain rule meets s only through its defining relation ds/dσ² = -s³/2
    assert dict(net.local(s))[sp.Symbol("var2_0")] == -s**3 / 2
    mu = net.values[sp.Symbol("mu2_1")]
    assert sp.expand(mu - sum(net.values[sp.Symbol(f"z1_e{e}_1")] for e in range(3)) / 3) == 0


# -- mutants: each wrong form refused with a witness --------------------------------

def _norm(ops, X, S, P, axis):
    total = ops.sum_rows if axis == "rows" else ops.sum_cols
    n = ops.rows(X) if axis == "rows" else ops.cols(X)
    return total, n


def no_variance_path(ops, G, X, S, P, block, inner):
    """σ² path dropped: (γ s / B)(B ∂C/∂y − Σ ∂C/∂y)."""
    total, n = _norm(ops, X, S, P, "rows")
    dxhat = ops.mul(G, P["gamma"])
    return ops.mul(ops.scale(Fraction(1, n), S["s"]), ops.sub(ops.scale(n, dxhat), total(dxhat))), {
        "gamma": total(ops.mul(G, S["xhat"])), "beta": total(G)}


def no_mean_path(ops, G, X, S, P, block, inner):
    """The mean's path forgotten: ∂C/∂x̂ s + ∂C/∂σ² · 2(x − μ)/B, no ∂C/∂μ / B."""
    total, n = _norm(ops, X, S, P, "rows")
    dxhat = ops.mul(G, P["gamma"])
    dvar = ops.mul(total(ops.mul(dxhat, S["xc"])), ops.scale(Fraction(-1, 2), ops.power(S["s"], 3)))
    dX = ops.add(ops.mul(dxhat, S["s"]), ops.mul(dvar, ops.scale(Fraction(2, n), S["xc"])))
    return dX, {"gamma": total(ops.mul(G, S["xhat"])), "beta": total(G)}


def one_over_b_outside(ops, G, X, S, P, block, inner):
    """The 1/B in the wrong place: (γ s / B)(∂C/∂y − Σ ∂C/∂y − x̂ Σ ∂C/∂y x̂)."""
    total, n = _norm(ops, X, S, P, "rows")
    dxhat = ops.mul(G, P["gamma"])
    inside = ops.sub(ops.sub(dxhat, total(dxhat)), ops.mul(S["xhat"], total(ops.mul(dxhat, S["xhat"]))))
    return ops.mul(ops.scale(Fraction(1, n), S["s"]), inside), {"gamma": total(ops.mul(G, S["xhat"])),
                                                                "beta": total(G)}


def gamma_without_xhat(ops, G, X, S, P, block, inner):
    """∂C/∂γ = Σ ∂C/∂y (x̂ forgotten); the input gradient right."""
    dX, grads = KINDS["batchnorm"].backward(ops, G, X, S, P, block, inner)
    return dX, {**grads, "gamma": ops.sum_rows(G)}


def layernorm_over_the_batch(ops, G, X, S, P, block, inner):
    """Layer norm's backward written with batch norm's sums (over examples, not features)."""
    return KINDS["batchnorm"].backward(ops, G, X, S, P, block, inner)


def residual_without_identity(ops, G, X, S, P, block, inner):
    """δ through the block only: the identity path's ∂C/∂y forgotten."""
    return inner.backward(G), {}


def dense_without_transpose(ops, G, X, S, P, block, inner):
    """∂C/∂x = δ W (the transpose lost, where W is square and so the shapes let it pass)."""
    dX, grads = KINDS["dense"].backward(ops, G, X, S, P, block, inner)
    if block.n_in != block.width:
        return dX, grads
    D = ops.activation_vjp(block.activation, S["Z"], S["A"], G)
    return ops.matmul(D, P["W"]), grads


MUTANT_LAYERS = [dense(3, "tanh"), {"kind": "batchnorm", "eps": "1/10"}, {"kind": "layernorm", "eps": "1/10"},
                 {"kind": "residual", "layers": [dense(3, "tanh")]}, dense(3, "sigmoid")]


@pytest.mark.parametrize("kind,mutant,wrong", [
    ("batchnorm", no_variance_path, "input"),
    ("batchnorm", no_mean_path, "input"),
    ("batchnorm", one_over_b_outside, "input"),
    ("batchnorm", gamma_without_xhat, "partial"),
    ("layernorm", layernorm_over_the_batch, "input"),
    ("residual", residual_without_identity, "input"),
    ("dense", dense_without_transpose, "input"),
], ids=lambda v: getattr(v, "__name__", v))
def test_each_wrong_form_is_refused_with_a_witness(kind, mutant, wrong):
    spec = spec_of(*MUTANT_LAYERS)
    proof = prove_layers(spec, backward={kind: mutant}, forms={}, oracle=False)
    failed = [c for c in proof.checks if not c.proven]
    assert failed and not proof.ok and proof.exit_code == 1
    # the layer itself, and a residual block whose backward runs its inner layers' forms
    assert kind in {c.block for c in failed} <= {kind, "residual"} and any(c.kind == wrong for c in failed)
    witness = next(c for c in failed if c.kind == wrong)
    assert witness.verdict == Verdict.REFUTED and witness.counterexample is not None
    ce = witness.counterexample
    assert abs(ce.lhs - ce.rhs) > 1e-9 and ce.values
    # a wrong ∂C/∂x breaks every partial below it, which the summary counts as not proven
    if wrong == "input":
        below = {c.name for c in proof.partials if c.position < witness.position}
        assert below and below <= proof.unproven_partials()


def test_a_wrong_further_form_is_refused_while_the_right_backward_stands():
    spec = spec_of(dense(2), {"kind": "batchnorm"})
    proof = prove_layers(spec, forms={"batchnorm": (("no σ² path", no_variance_path),)}, oracle=False)
    by_form = {}
    for c in proof.checks:
        by_form.setdefault(c.form, []).append(c.proven)
    assert all(by_form["backward"]) and not all(by_form["no σ² path"])


def test_the_terminal_report_names_the_refuted_layer(tmp_path):
    from rich.console import Console

    from derive.report.layers import render_layers

    proof = prove_layers(spec_of(*MUTANT_LAYERS), backward={"batchnorm": no_variance_path}, forms={}, oracle=False)
    console = Console(record=True, width=200)
    render_layers(proof, console)
    out = console.export_text()
    assert "REFUTED layer 2 (batchnorm) dC/dx2[" in out and "counterexample: chain rule" in out
    assert "NOT PROVEN" in out and " ".join(proof.summary().split()) in " ".join(out.split())
    assert proof.summary().startswith("36/45 partials")  # the 9 of layer 1, below the wrong batch norm


def test_jupyter_shows_each_layer_form_typeset_and_the_witness():
    import derive  # noqa: F401  (fills the notebook hooks)

    good = prove_layers(spec_of(dense(2), {"kind": "batchnorm"}))._repr_markdown_()
    assert good.startswith("✓ **PROVEN**") and r"\frac{\partial C}{\partial \gamma^{(2)}}" in good
    bad = prove_layers(spec_of(*MUTANT_LAYERS), backward={"batchnorm": no_variance_path}, forms={},
                       oracle=False)._repr_markdown_()
    assert "**Witness**" in bad and "✗ `dC/dx2[" in bad


def test_flags_of_the_scalable_proof_are_named_not_ignored():
    path = str(ROOT / "examples" / "specs" / "ln_mlp.toml")
    run = subprocess.run([sys.executable, "-m", "derive", "prove", path, "--brief", "--jobs", "2"],
                         capture_output=True, text=True)
    assert run.returncode == 0 and "note: --jobs steers the scalable proof" in run.stderr
    run = subprocess.run([sys.executable, "-m", "derive", "prove", path, "--mode", "scalable"],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "proven layer by layer" in run.stderr and run.stdout == ""
