"""Claims read as their sources print them: the notation fields, free letters, sequences, and the ambiguity errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from derive.claims import Claim, Context, check_claim, check_file
from derive.claims.latex import read_latex
from derive.claims.tree import ClaimError, Leaf, Op, Shape
from derive.errors import DeriveError
from derive.spec import load_spec, validate
from derive.tables.reading import READINGS, Reading, field_names, with_fields
from derive.verdict import Verdict

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = ROOT / "examples" / "claims"


def check(spec, latex: str, reading: Reading | None, sizes=(2, 3, 2), examples=1):
    s = load_spec(spec).with_sizes(tuple(sizes))
    data = s.as_dict() | {"examples": examples}
    ctx = Context(validate(data, s.source), None, reading)
    return check_claim(ctx, Claim("c", latex=latex))


def verdict(*args, **kw) -> Verdict:
    return check(*args, **kw).verdict


def shape(name: str, L: int = 2) -> Shape:
    return Shape(L, ("sigmoid",) * L, "paren", READINGS[name])


# -- the sources' files: every claim gets the verdict its comment expects ------------------

@pytest.mark.parametrize("source", ["ng", "cs231n", "goodfellow", "bishop", "wikipedia", "rumelhart1986", "ng_code",
                                    "cs231n_code"])
def test_each_source_file_gets_the_verdicts_it_expects(source):
    path = CLAIMS / f"{source}.toml"
    expected = [line.split(":")[1].split()[0] for line in path.read_text().splitlines() if line.startswith("# expect:")]
    report = check_file(path)
    assert [str(v.verdict) for v in report.verdicts] == expected
    assert any(v.verdict == Verdict.REFUTED for v in report.verdicts) or source == "wikipedia"


# -- operators: what each means in the notation, and the two readings refused --------------

def test_star_is_elementwise_in_latex():
    """Ng's * is the elementwise product (it was read as a matrix product once, and a correct claim refuted)."""
    _, rhs = read_latex(r"a^{(1)} * a^{(1)}", shape("net222"))
    assert rhs.op == "had"
    assert verdict("nielsen", r"\delta^{(1)} = ((w^{(2)})^T \delta^{(2)}) * \sigma'(z^{(1)})", None) == Verdict.PROVEN


def test_a_product_mixed_with_an_elementwise_one_has_two_readings():
    with pytest.raises(ClaimError) as info:
        read_latex(r"\sigma'(z^{(1)}) \odot (w^{(2)})^T \cdot \delta^{(2)}", shape("net222"))
    assert "two readings" in info.value.message and "write the parentheses" in info.value.message


def test_a_notation_that_says_how_mixed_products_group_reads_them_so():
    _, rhs = read_latex(r"(f^l)' \circ (W^{l+1})^T \cdot \delta^{l+1}", shape("wikipedia", 3))
    assert rhs.op == "had" and rhs.args[1].op == "dot"
    unrolled = r"\delta^1 = (f^1)' \circ (W^2)^T \cdot (f^2)' \circ (W^3)^T \cdot (f^3)' \circ \nabla_{a^3} C"
    assert verdict("nielsen", unrolled, READINGS["wikipedia"], sizes=(2, 3, 3, 2)) == Verdict.PROVEN  # from the right
    tighter = with_fields(READINGS["wikipedia"], {"mixed": "error", "tighter": [r"\cdot"]}, "notation")
    _, rhs = read_latex(r"(f^l)' \circ (W^{l+1})^T \cdot \delta^{l+1}", Shape(3, ("sigmoid",) * 3, "bare", tighter))
    assert rhs.op == "had" and rhs.args[1].op == "dot"
    neither = with_fields(READINGS["wikipedia"], {"mixed": "error"}, "notation")
    with pytest.raises(ClaimError, match="two readings"):
        read_latex(r"(f^l)' \circ (W^{l+1})^T \cdot \delta^{l+1}", Shape(3, ("sigmoid",) * 3, "bare", neither))


def test_powers_of_vectors():
    """Ng's (a^{[1]})^2 is elementwise; elsewhere a vector's power has two readings and is an ERROR, not REFUTED."""
    spec = CLAIMS / "specs" / "shallow.toml"
    ng = r"dZ^{[1]} = W^{[2]T} dZ^{[2]} * (1 - (A^{[1]})^2)"
    assert verdict(spec, ng, READINGS["ng"], examples=3) == Verdict.PROVEN
    r = check("nielsen", r"\delta^2 = (a^2)^2", Reading(layers="bare"))
    assert r.verdict == Verdict.ERROR and "two readings" in r.message


def test_an_operator_the_notation_leaves_undefined_is_an_error():
    fields = with_fields(READINGS["ng"], {"operators": {"*": "undefined", "juxtaposition": "product"}}, "n")
    with pytest.raises(ClaimError, match="has no meaning in this notation"):
        read_latex(r"A^{[1]} * A^{[1]}", Shape(2, ("sigmoid",) * 2, "paren", fields))


def test_a_letter_two_quantities_share_names_both_readings():
    with pytest.raises(ClaimError) as info:
        read_latex("y_1 = 1", shape("wikipedia"))
    assert "two readings" in info.value.message and "target" in info.value.message and "output" in info.value.message


def test_an_error_names_a_macro_as_written():
    with pytest.raises(ClaimError, match=r"'\\zeta'"):
        read_latex(r"a^{(1)}_0 + \zeta", shape("net222"))


def test_typography_is_ignored():
    plain = read_latex(r"\delta^{(1)} = W^{(2)} \delta^{(2)}", shape("net222"))
    bold = read_latex(r"\boldsymbol{\delta}^{(1)} = \mathbf{W}^{(2)} \bm{\delta}^{(2)}", shape("net222"))
    assert plain == bold


# -- the fields -------------------------------------------------------------------------------

def test_letters_layers_and_gradient_names():
    lhs, rhs = read_latex(r"dZ^{[2]} = A^{[2]} - Y", shape("ng"))
    assert lhs == Op("grad", (Leaf("z", 2),), "example") and rhs.args[1].kind == "y"
    lhs, _ = read_latex(r"\delta_j = h'(a_j) \sum_k w_{kj} \delta_k", shape("bishop"))
    assert lhs == Leaf("delta", ("#j", 0), (("j", 0),))  # Bishop's a is the pre-activation; the letter j its layer


def test_delta_sign_index_base_and_the_example_letter():
    lhs, _ = read_latex(r"\delta_{pj} = (t_{pj} - o_{pj}) f'_j(net_{pj})", shape("rumelhart1986"))
    assert lhs.op == "neg" and lhs.args[0].example == "p"
    good = r"\delta_{pj} = (t_{pj} - o_{pj}) f'_j(net_{pj})"
    bad = r"\delta_{pj} = (o_{pj} - t_{pj}) f'_j(net_{pj})"
    assert verdict("nielsen", good, READINGS["rumelhart1986"], examples=2) == Verdict.PROVEN
    assert verdict("nielsen", bad, READINGS["rumelhart1986"], examples=2) == Verdict.REFUTED


def test_bias_at_index_zero():
    """Bishop's w_{j0} is the bias and z_0 = 1: the forward sum over i includes it."""
    assert verdict("nielsen", r"a_j = \sum_i w_{ji} z_i", READINGS["bishop"]) == Verdict.PROVEN
    assert verdict("nielsen", r"a_j = \sum_{i=1}^{2} w_{ji} z_i", READINGS["bishop"]) == Verdict.REFUTED


def test_weight_order_from_to():
    assert verdict("nielsen", r"\frac{\partial E}{\partial w_{ij}} = o_i \delta_j", READINGS["wikipedia"]) == Verdict.PROVEN
    assert verdict("nielsen", r"\frac{\partial E}{\partial w_{ij}} = o_j \delta_i", READINGS["wikipedia"]) == Verdict.REFUTED


def test_every_field_can_be_set_and_bad_values_are_named():
    for name in field_names():
        assert hasattr(Reading(), name)
    with pytest.raises(ValueError, match="unknown field"):
        with_fields(Reading(), {"colour": 1}, "notation")
    with pytest.raises(ValueError, match="delta_sign"):
        with_fields(Reading(), {"delta_sign": 2}, "notation")
    with pytest.raises(ValueError, match="layers"):
        with_fields(Reading(), {"layers": "curly"}, "notation")
    r = with_fields(Reading(), {"activation": ["o"], "index_base": 1, "bias_index": 0, "capitals": True,
                                "examples": "rows", "gradient_prefix": "d", "gradient_scale": "batch",
                                "weight_order": "from-to", "example_letter": "p", "unmarked": "implied",
                                "delta_sign": -1, "functions": ["f"], "tighter": [r"\cdot"]}, "notation")
    assert r.activation == ("o",) and r.bias_index == 0 and r.examples == "rows" and r.delta_sign == -1


# -- free letters ------------------------------------------------------------------------------

def test_a_free_layer_is_checked_wherever_the_formula_applies():
    report = check("nielsen", r"\delta^l = ((w^{l+1})^T \delta^{l+1}) \odot \sigma'(z^l)",
                     Reading(layers="bare"), sizes=(2, 3, 3, 2))
    assert report.verdict == Verdict.PROVEN
    assert [i["values"] for i in report.instances] == ["l = 1", "l = 2"]  # not at the output, where w^{L+1} is not


def test_a_free_index_that_fails_somewhere_says_where():
    r = check("nielsen", r"\delta^2_j = (a^2_j - y_j) a^2_j (1 - a^2_0)", Reading(layers="bare"))
    assert r.verdict == Verdict.REFUTED
    fails = [i["values"] for i in r.instances if i["verdict"] != Verdict.PROVEN]
    assert fails == ["j = 1"]


# -- sequences ---------------------------------------------------------------------------------

def test_goodfellow_steps_point_at_the_first_wrong_line():
    report = check_file(CLAIMS / "goodfellow.toml")
    wrong = report.verdicts[1]
    assert wrong.verdict == Verdict.REFUTED and wrong.shape_error.startswith("at line 4, k = 2")


def test_a_running_name_used_before_it_is_set():
    latex = "g \\leftarrow \\nabla_{\\hat{y}} J\n\\nabla_{b^{(k)}} J = h"
    assert verdict("nielsen", latex, READINGS["goodfellow"]) == Verdict.ERROR


# -- the claims file ------------------------------------------------------------------------------

def test_a_notation_file_and_a_notation_table(tmp_path):
    (tmp_path / "mine.toml").write_text('base = "nielsen"\npreactivation = ["u"]\n')
    (tmp_path / "c.toml").write_text('spec = "nielsen"\nsizes = [2, 3, 2]\nnotation = "mine.toml"\n'
                                     '[[claim]]\nname = "u"\nlatex = \'\'\'\\delta^2 = (a^2 - y) \\odot \\sigma\'(u^2)\'\'\'\n')
    assert check_file(tmp_path / "c.toml").verdicts[0].verdict == Verdict.PROVEN
    (tmp_path / "t.toml").write_text('spec = "nielsen"\nsizes = [2, 3, 2]\n[notation]\nbase = "wikipedia"\n'
                                     'output = []\n[[claim]]\nname = "y"\n'
                                     'latex = \'\'\'\\delta_j = (o_j - y_j) o_j (1 - o_j)\'\'\'\n')
    assert check_file(tmp_path / "t.toml").verdicts[0].verdict == Verdict.PROVEN


@pytest.mark.parametrize("text,needle", [
    ('notation = "klingon"', "notation = 'klingon'"),
    ('[notation]\nbase = "nielsen"\ncolour = 1', "unknown field"),
    ('notation = "ng"', "runs a batch's examples along columns"),
])
def test_bad_notations_are_one_line_errors(tmp_path, text, needle):
    spec = 'spec = "rowmajor"\nsizes = [2, 3, 2]\n' if "ng" in text else 'spec = "nielsen"\nsizes = [2, 3, 2]\n'
    path = tmp_path / "c.toml"
    path.write_text(spec + text + '\n[[claim]]\nname = "x"\nlatex = "1 = 1"\n')
    with pytest.raises(DeriveError) as info:
        check_file(path)
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- NumPy backward code --------------------------------------------------------------------------

def code_verdict(tmp_path, code: str, spec: str = "specs/cs231n.toml", notation: str = "cs231n", extra: str = ""):
    path = tmp_path / "c.toml"
    path.write_text(f'spec = "{(CLAIMS / spec).as_posix()}"\nnotation = "{notation}"\n{extra}'
                    f"[[claim]]\nname = \"code\"\ncode = '''\n{code}\n'''\n")
    return check_file(path).verdicts[0]


def test_code_points_at_the_first_wrong_line(tmp_path):
    v = code_verdict(tmp_path, "dscores = probs.copy()\ndscores[range(N), y] -= 1\ndscores /= N\n"
                               "dW2 = np.dot(dscores.T, hidden_layer)\n")
    assert v.verdict == Verdict.REFUTED
    assert [i["values"] for i in v.instances if i["verdict"] != Verdict.PROVEN] == ["line 4, dW2"]


def test_code_mask_is_the_relu_gate_and_nothing_else(tmp_path):
    ok = "dscores = (probs - y) / N\ndhidden = np.dot(dscores, W2.T)\ndhidden[hidden_layer <= 0] = 0\n" \
         "dW1 = np.dot(X.T, dhidden)\n"
    assert code_verdict(tmp_path, ok).verdict == Verdict.PROVEN
    wrong = ok.replace("<= 0", "> 0")
    assert code_verdict(tmp_path, wrong).verdict == Verdict.REFUTED
    not_relu = "dZ1 = np.dot(W2.T, A2 - Y)\ndZ1[A1 <= 0] = 0\n"
    v = code_verdict(tmp_path, not_relu, spec="specs/shallow.toml", notation="ng")
    assert v.verdict == Verdict.ERROR and "ReLU" in v.message


def test_code_is_never_run(tmp_path):
    v = code_verdict(tmp_path, "dW2 = __import__('os').system('echo no')\n")
    assert v.verdict == Verdict.ERROR and "not a NumPy call" in v.message
    v = code_verdict(tmp_path, "import os\n")
    assert v.verdict == Verdict.ERROR and "assignment" in v.message


def test_code_regularization(tmp_path):
    code = "dscores = (probs - y) / N\ndW2 = np.dot(hidden_layer.T, dscores)\ndW2 += reg * W2\n"
    assert code_verdict(tmp_path, code, extra='regularization = "l2"\n').verdict == Verdict.PROVEN
    assert code_verdict(tmp_path, code).verdict == Verdict.REFUTED  # no regularization in the cost: reg*W2 is wrong
    with pytest.raises(DeriveError, match="regularization"):
        code_verdict(tmp_path, code, extra='regularization = "l1"\n')


def test_code_labels_need_a_one_hot_cost(tmp_path):
    v = code_verdict(tmp_path, "dZ2 = A2.copy()\ndZ2[range(m), y] -= 1\n", spec="specs/identity_out.toml",
                     notation="ng")
    assert v.verdict == Verdict.ERROR


def test_the_api_names_scalars_as_the_command_line_does():
    from derive.chain import ChainRule
    from derive.network import Network

    net = Network(load_spec("net222"))
    d = ChainRule(net).derive(net.params[0])
    assert str(d.paths[0]) == "w1[0,0] -> z1[0] -> a1[0] -> z2[0] -> a2[0] -> C"
    assert str(d.paths[0].factors[0]) == "dz1[0]/dw1[0,0] = a0[0]"


def test_the_summary_counts_errors_in_words(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('spec = "net222"\n' + "".join(f'[[claim]]\nname = "e{i}"\nlhs = "delta2"\nrhs = "q"\n' for i in range(3)))
    assert check_file(path).summary() == "3 claims: 0 proven, 0 refuted, 3 errors"


def test_local_factors_of_the_chain_rule():
    """Bishop's 5.50 and Wikipedia's chain: dE/dw = dE/da da/dw, each factor one neuron's local derivative."""
    assert verdict("nielsen", r"\frac{\partial E_n}{\partial w_{ji}} = \frac{\partial E_n}{\partial a_j} "
                              r"\frac{\partial a_j}{\partial w_{ji}}", READINGS["bishop"]) == Verdict.PROVEN
    assert verdict("nielsen", r"\frac{\partial E}{\partial w_{ij}} = \frac{\partial E}{\partial o_j} "
                              r"\frac{\partial o_j}{\partial net_j} \frac{\partial net_j}{\partial w_{ij}}",
                   READINGS["wikipedia"]) == Verdict.PROVEN
    assert verdict("nielsen", r"\frac{\partial E}{\partial w_{ij}} = \frac{\partial E}{\partial o_j} "
                              r"\frac{\partial net_j}{\partial w_{ij}}", READINGS["wikipedia"]) == Verdict.REFUTED


def test_a_free_unit_in_the_projects_own_notation_is_checked_for_each():
    r = check("net222", r"\delta^{(2)}_j = (a^{(2)}_j - T_j) a^{(2)}_j (1 - a^{(2)}_j)", None)
    assert r.verdict == Verdict.PROVEN and [i["values"] for i in r.instances] == ["j = 0", "j = 1"]


def test_ng_lowercase_is_one_example():
    """Ng's lowercase dz^{[2]} a^{[1]T} is one example's: with a batch it is an ERROR, never a wrong verdict."""
    one = r"dW^{[2]} = dz^{[2]} a^{[1]T}"
    spec = CLAIMS / "specs" / "canonical.toml"
    assert verdict(spec, one, READINGS["ng"], examples=1) == Verdict.PROVEN
    r = check(spec, one, READINGS["ng"], examples=3)
    assert r.verdict == Verdict.ERROR and "one example's vector" in r.message


def test_chains_local_factors_costs_and_forward_values_on_the_left():
    report = check_file(CLAIMS / "bishop.toml")  # the file's own claims, then these
    assert report.verdicts
    spec = CLAIMS / "specs" / "identity_out.toml"
    bishop = READINGS["bishop"]
    chain = (r"\frac{\partial E_n}{\partial w_{ji}} = \frac{\partial E_n}{\partial a_j} \frac{\partial a_j}{\partial w_{ji}}"
             r" = \delta_j z_i")
    assert verdict(spec, chain, bishop) == Verdict.PROVEN
    assert verdict(spec, chain.replace(r"\delta_j z_i", r"\delta_i z_j"), bishop) == Verdict.REFUTED
    assert verdict(spec, r"\frac{\partial a_j}{\partial w_{ji}} = z_i", bishop) == Verdict.PROVEN
    assert verdict(spec, r"E_n = \frac{1}{2} \sum_{k=1}^{K} (y_k - t_k)^2", bishop) == Verdict.PROVEN
    assert verdict(spec, r"E_n = \sum_{k=1}^{K} (y_k - t_k)^2", bishop) == Verdict.REFUTED
    goodfellow = READINGS["goodfellow"]
    assert verdict("nielsen", r"a^{(k)} = b^{(k)} + W^{(k)} h^{(k-1)}", goodfellow) == Verdict.PROVEN
    assert verdict("nielsen", r"\hat{y} = h^{(l)}", goodfellow) == Verdict.PROVEN  # Goodfellow's l is the depth


def test_ng_logistic_regression_needs_no_layer():
    spec = load_spec(CLAIMS / "specs" / "canonical.toml").with_sizes((2, 1))
    ng = READINGS["ng"]

    def v(latex):
        ctx = Context(validate(spec.as_dict() | {"examples": 3}, spec.source), None, ng)
        return check_claim(ctx, Claim("c", latex=latex)).verdict

    assert v(r"dZ = A - Y") == Verdict.PROVEN
    assert v(r"dw = \frac{1}{m} X dZ^T") == Verdict.PROVEN  # Ng's w is the column W^T
    assert v(r"db = \frac{1}{m} np.sum(dZ)") == Verdict.PROVEN
    assert v(r"dw = \frac{1}{m} dZ X^T") == Verdict.REFUTED


@pytest.mark.parametrize("mask,holds", [("<= 0", True), ("== 0", True), ("< 0", False), ("> 0", False)])
def test_code_masks_are_read_exactly(tmp_path, mask, holds):
    """On a ReLU's output a < 0 holds nowhere: that mask zeroes nothing, and the gradient through it is wrong."""
    code = f"dscores = (probs - y) / N\ndhidden = np.dot(dscores, W2.T)\ndhidden[hidden_layer {mask}] = 0\n" \
           "dW1 = np.dot(X.T, dhidden)\n"
    assert code_verdict(tmp_path, code).verdict == (Verdict.PROVEN if holds else Verdict.REFUTED)


def test_one_examples_cost_inside_a_sum(tmp_path):
    spec = load_spec(CLAIMS / "specs" / "identity_out.toml")
    ctx = Context(validate(spec.as_dict() | {"examples": 2}, spec.source), None, READINGS["bishop"])
    assert check_claim(ctx, Claim("c", latex=r"E = \sum_n E_n")).verdict == Verdict.PROVEN
    assert check_claim(ctx, Claim("c", latex=r"E = \frac{1}{2} \sum_n E_n")).verdict == Verdict.REFUTED


def test_a_slash_before_a_product_has_two_readings():
    with pytest.raises(ClaimError, match="two readings"):
        read_latex(r"dW^{[2]} = 1/m \, dZ^{[2]} A^{[1]T}", shape("ng"))


def test_the_readme_and_the_notations_page_name_every_field():
    readme = (ROOT / "README.md").read_text()
    page = (ROOT / "docs" / "notations.md").read_text()
    for name in field_names():
        assert f"`{name}`" in readme, name
        assert f"`{name}`" in page or name in ("weight", "bias", "input", "target", "output", "cost"), name


def test_the_logistic_written_out(tmp_path):
    """RHW's y_j = 1/(1 + e^{-x_j}) and Ng's s = 1/(1+np.exp(-Z)): the sigmoid, where the layer's is one."""
    assert verdict("nielsen", r"o_j = \frac{1}{1 + e^{-net_j}}", READINGS["rumelhart1986"]) == Verdict.PROVEN
    assert verdict("nielsen", r"o_j = \frac{1}{1 + e^{net_j}}", READINGS["rumelhart1986"]) == Verdict.ERROR
    code = "s = 1/(1+np.exp(-Z2))\ndZ2 = (A2 - Y) * 0 + dA2 * s * (1 - s)\n"
    spec = "specs/canonical.toml"
    v = code_verdict(tmp_path, "dA2 = - (np.divide(Y, A2) - np.divide(1 - Y, 1 - A2))\n" + code, spec, "ng")
    assert v.verdict == Verdict.PROVEN
