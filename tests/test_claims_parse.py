"""Reading claims: the text walk and the LaTeX grammar, their errors, and the safety limits."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from derive.claims.latex import read_latex
from derive.claims.printing import latex_of, text_of
from derive.claims.text import Lhs, read_lhs, read_text
from derive.claims.tree import ClaimError, Leaf, Num, Op, Shape, position

PAREN = Shape(2, ("sigmoid", "sigmoid"), "paren")
BARE = Shape(2, ("sigmoid", "sigmoid"), "bare")


def fails(reader, source, shape=PAREN):
    with pytest.raises(ClaimError) as info:
        reader(source, shape)
    return info.value


# ---------------------------------------------------------------------------
# text
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("source,tree", [
    ("w2[0,1]", Leaf("w", 2, (0, 1))),
    ("b2[1]", Leaf("b", 2, (1,))),
    ("a1[0]", Leaf("a", 1, (0,))),
    ("a0[1]", Leaf("a", 0, (1,))),
    ("x[1]", Leaf("a", 0, (1,))),
    ("z1[0]", Leaf("z", 1, (0,))),
    ("T[1]", Leaf("y", None, (1,))),
    ("y[1]", Leaf("y", None, (1,))),
    ("delta2[0]", Leaf("delta", 2, (0,))),
    ("C", Leaf("C", None)),
    ("w2", Leaf("w", 2)),
    ("W2", Leaf("W", 2)),
    ("b1", Leaf("b", 1)),
    ("A1", Leaf("A", 1)),
    ("D1", Leaf("D", 1)),
    ("x", Leaf("a", 0)),
    ("ones", Leaf("ones", None)),
    ("grad_a(C)", Leaf("g", None)),
    ("sigma(z1[0])", Op("sigma", (Leaf("z", 1, (0,)),))),
    ("sigma_prime(z1)", Op("sigma_prime", (Leaf("z", 1),))),
    ("sigmoid(z2[1])", Op("sigma", (Leaf("z", 2, (1,)),), "sigmoid")),
    ("tanh_prime(z1[0])", Op("sigma_prime", (Leaf("z", 1, (0,)),), "tanh")),
    ("diag(a1)", Op("diag", (Leaf("a", 1),))),
    ("W2.T", Op("T", (Leaf("W", 2),))),
    ("W2[0,1]", Op("entry", (Leaf("W", 2),), (0, 1))),
    ("(w2.T @ delta2)[1]", Op("entry", (Op("matmul", (Op("T", (Leaf("w", 2),)), Leaf("delta", 2))),), (1,))),
    ("a1[0] + 1", Op("add", (Leaf("a", 1, (0,)), Num(1)))),
    ("a1[0] - 0.5", Op("sub", (Leaf("a", 1, (0,)), Num(0.5)))),
    ("-a1[0]", Op("neg", (Leaf("a", 1, (0,)),))),
    ("+a1[0]", Leaf("a", 1, (0,))),
    ("a1 * a1", Op("mul", (Leaf("a", 1), Leaf("a", 1)))),
    ("a1[0] / 2", Op("div", (Leaf("a", 1, (0,)), Num(2)))),
    ("a1[0]**2", Op("epow", (Leaf("a", 1, (0,)),), 2)),
    ("2**-3", Num(sorted([1, 8])[0] / 8)),
    ("(a1[0]\n  - a1[1])", Op("sub", (Leaf("a", 1, (0,)), Leaf("a", 1, (1,))))),
])
def test_text_vocabulary(source, tree):
    assert read_text(source, PAREN) == tree


@pytest.mark.parametrize("source", [
    "(a2[0] - T[0]) * a2[0] * (1 - a2[0]) * a1[0]",
    "(w2.T @ delta2) * sigma_prime(z1)",
    "diag(sigma_prime(z2)) @ (a2 - y)",
    "(delta2 @ A1).T",
    "a1[0] - (a1[1] - x[0])",
    "a1[0] / (a1[1] * 2)",
    "-(a1[0] + 1)**3",
    "delta2 @ ones / 2",
    "W2[0,1] * grad_a(C)[1]",
])
def test_text_printing_reads_back_the_same_tree(source):
    tree = read_text(source, PAREN)
    assert read_text(text_of(tree), PAREN) == tree


@pytest.mark.parametrize("source,needle,column", [
    ("q + 1", "unknown name 'q'", 1),
    ("a3[0]", "there is no layer 3", 1),
    ("z0[0]", "there is no layer 0", 1),
    ("a1[0", "'[' is never closed", 3),
    ("a1[0]]", "']' closes no bracket", 6),
    ("a1[0] % 2", "'%' is not a claims operator", 1),
    ("f(x)", "'f' is not a function of the vocabulary", 1),
    ("a1[0]; 1", "not a formula", 6),
    ("lambda: 1", "(Lambda) is not part of a claim", 1),
    ("a1[0] if C else 1", "(IfExp) is not part of a claim", 1),
    ("'text'", "is not a number", 1),
    ("True", "is not a number", 1),
    ("sigma", "sigma is a function: write sigma(...)", 1),
    ("sigma(z1[0], z1[1])", "takes exactly one argument", 1),
    ("sigma(x=1)", "takes exactly one argument", 1),
    ("grad_a(a1)", "grad_a takes C", 8),
    ("w2[0]", "w2 takes 2 indices", 1),
    ("a1[0,1]", "a1 takes 1 index", 1),
    ("a1[-1]", "indices count from 0", 4),
    ("a1[j]", "an index is a whole number, not 'j'", 4),
    ("a1[0,1,2]", "one or two indices", 4),
    ("a1.shape", "'.shape' is not in the vocabulary", 1),
    ("a1.__class__", "'.__class__' is not in the vocabulary", 1),
    ("__import__('os')", "'__import__' is not a function", 1),
    ("σ(z1[0])", "character 'σ' is not allowed; write 'sigma'", 1),
    ("a1[0] − 1", "write '-'", 7),
    ("1e5j", "not a real number", 1),
    ("1e99", "exponent 99 is out of range", 1),
    ("0x1p3", "not a formula", 3),
    ("a1[0]**0.5", "an exponent must be an integer", 8),
    ("a1[0]**x[0]", "an exponent must be a whole number", 8),
    ("a1[0] == 1", "(Compare) is not part of a claim", 1),
    ("   ", "empty", 1),
    ("a1[0] @@ 1", "not a formula", 8),
])
def test_text_errors_name_the_column(source, needle, column):
    err = fails(read_text, source)
    assert needle in err.message
    assert position(source, err.span[0]) == f"column {column}"


def test_text_error_in_a_multiline_claim_names_the_line():
    source = "(a1[0]\n + q[0])"
    err = fails(read_text, source)
    assert position(source, err.span[0]) == "line 2, column 4" and "unknown name 'q'" in err.message


# ---------------------------------------------------------------------------
# left-hand sides
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("source,lhs", [
    ("dC/dw2[0,1]", Lhs("w", 2, (0, 1))),
    (" dC / dw1[1, 2] ", Lhs("w", 1, (1, 2))),
    ("dC/db2[1]", Lhs("b", 2, (1,))),
    ("dC/dW2", Lhs("W", 2)),
    ("dC/dw2", Lhs("w", 2)),
    ("dC/db1", Lhs("b", 1)),
    ("delta2", Lhs("delta", 2)),
    ("delta1[1]", Lhs("delta", 1, (1,))),
    ("(dC/dW2).T", Lhs("W", 2, None, True)),
])
def test_left_hand_sides(source, lhs):
    assert read_lhs(source, PAREN) == lhs
    assert read_lhs(lhs.text(), PAREN) == lhs


@pytest.mark.parametrize("source,needle", [
    ("dC/dx", "is not a left-hand side"),
    ("dC/dW2[0,0]", "dC/dW2 is the whole matrix"),
    ("dC/dw3[0,0]", "there is no layer 3"),
    ("delta1[0,0]", "delta1 takes one index"),
    ("dC/dw2[0]", "takes 2 indices"),
    ("(dC/dw2[0,0]).T", "a single partial has no transpose"),
    ("dC/dw2[0,0]" + " " * 300, "a left-hand side is a name"),
])
def test_left_hand_side_errors(source, needle):
    assert needle in fails(read_lhs, source).message


@pytest.mark.parametrize("literal,value", [("1", 1), ("0x1", 1), ("0o1", 1), ("0b1", 1), ("1_0", 10), ("(1)", 1)])
def test_an_index_literal_reads_the_same_on_both_sides(literal, value):
    """One number reader: a literal the right-hand side reads as n is n on the left too."""
    assert read_text(f"w2[{literal},0]", PAREN).index == (value, 0)
    assert read_lhs(f"dC/dw2[{literal},0]", PAREN).index == (value, 0)
    assert read_lhs(f"delta1[{literal}]", PAREN).index == (value,)


@pytest.mark.parametrize("literal", ["١", "１", "²", "True", "1.0", "1e0", "1j", "-1", "j", "0:1"])
def test_an_index_literal_is_the_same_error_on_both_sides(literal):
    """Not a whole number as Python writes one (an Arabic-Indic or full-width digit is none): an error on either
    side, for the same reason."""
    right = fails(read_text, f"w2[{literal},0]").message
    assert right in fails(read_lhs, f"dC/dw2[{literal},0]").message
    assert fails(read_text, f"delta1[{literal}]").message in fails(read_lhs, f"delta1[{literal}]").message


@pytest.mark.parametrize("name", ["w٢", "ｗ2", "w２"])
def test_a_layer_is_written_in_ascii_digits_on_both_sides(name):
    right = fails(read_text, f"{name}[0,0]").message
    assert right.startswith("character") and right in fails(read_lhs, f"dC/d{name}[0,0]").message


def test_claims_file_reads_each_literal_the_same_on_both_sides(tmp_path):
    """Through check_file: the same digit is the same ERROR in lhs and rhs, and 0x1 is 1 in both."""
    from derive.claims import check_file

    right = "(a2[1] - T[1]) * a2[1] * (1 - a2[1]) * a1[0]"
    claims = [("dC/dw2[١,0]", right), ("dC/dw2[1,0]", right.replace("a2[1] - T", "a2[١] - T")),
              ("dC/dw2[0x1,0]", right), ("dC/dw2[1,0]", right.replace("a2[1] - T", "a2[0x1] - T"))]
    body = 'spec = "net222"\n' + "".join(f'[[claim]]\nname = "c{i}"\nlhs = "{lhs}"\nrhs = "{rhs}"\n'
                                       for i, (lhs, rhs) in enumerate(claims))
    path = tmp_path / "digits.toml"
    path.write_text(body, encoding="utf-8")
    verdicts = check_file(path).verdicts
    assert [v.verdict for v in verdicts] == ["ERROR", "ERROR", "PROVEN", "PROVEN"]
    assert all("character '١' is not allowed" in v.message for v in verdicts[:2]), [v.message for v in verdicts]


# ---------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------

A20 = Leaf("a", 2, (0,))


@pytest.mark.parametrize("source,tree", [
    ("(a_0^{(2)} - T_0)a_0^{(2)}(1 - a_0^{(2)})a_0^{(1)}",
     Op("dot", (Op("dot", (Op("dot", (Op("sub", (A20, Leaf("y", None, (0,)))), A20)), Op("sub", (Num(1), A20)))),
                Leaf("a", 1, (0,))))),
    ("a^{(2)}_0", A20),
    ("w_{01}^{(2)}", Leaf("w", 2, (0, 1))),
    ("w^{(2)}_{0,1}", Leaf("w", 2, (0, 1))),
    ("w^{(2)}_{10,1}", Leaf("w", 2, (10, 1))),
    (r"\delta_0^{(2)}", Leaf("delta", 2, (0,))),
    (r"\delta^{(L)}", Leaf("delta", 2)),
    ("b^{(1)}_1", Leaf("b", 1, (1,))),
    ("z^{(1)}_0", Leaf("z", 1, (0,))),
    ("x_1", Leaf("a", 0, (1,))),
    ("y_0", Leaf("y", None, (0,))),
    ("T", Leaf("y", None)),
    ("W^{(2)}", Leaf("W", 2)),
    ("A^{(1)}", Leaf("A", 1)),
    ("D^{(1)}", Leaf("D", 1)),
    ("C", Leaf("C", None)),
    (r"\sigma(z^{(1)}_0)", Op("sigma", (Leaf("z", 1, (0,)),))),
    (r"\sigma'(z^{(1)})", Op("sigma_prime", (Leaf("z", 1),))),
    (r"\sigma^{\prime}\left(z^{(1)}\right)", Op("sigma_prime", (Leaf("z", 1),))),
    (r"\tanh(z^{(1)}_0)", Op("sigma", (Leaf("z", 1, (0,)),), "tanh")),
    (r"\operatorname{ReLU}'(z^{(1)}_0)", Op("sigma_prime", (Leaf("z", 1, (0,)),), "relu")),
    (r"\operatorname{diag}(a^{(1)})", Op("diag", (Leaf("a", 1),))),
    (r"\nabla_a C", Leaf("g", None)),
    (r"\nabla_{a^{(L)}} C", Leaf("g", None)),
    (r"\hat{y}", Leaf("a", 2)),
    (r"\mathbf{1}", Leaf("ones", None)),
    ("(W^{(2)})^T", Op("T", (Leaf("W", 2),))),
    (r"(W^{(2)})^{\top}", Op("T", (Leaf("W", 2),))),
    (r"{W^{(2)}}^\intercal", Op("T", (Leaf("W", 2),))),
    ("a^{(1)T}", Op("T", (Leaf("a", 1),))),
    ("x^T", Op("T", (Leaf("a", 0),))),
    ("(a^{(2)}_0)^2", Op("pow", (A20,), 2)),
    ("a^{(2)2}_0", None),  # a layer and a power in one superscript: refused below
    (r"a^{(2)}_0 \cdot a^{(1)}_0", Op("dot", (A20, Leaf("a", 1, (0,))))),
    (r"a^{(2)}_0 \times 2", Op("dot", (A20, Num(2)))),
    (r"a^{(2)} \odot a^{(2)}", Op("had", (Leaf("a", 2), Leaf("a", 2)))),
    (r"a^{(2)} \circ a^{(2)}", Op("had", (Leaf("a", 2), Leaf("a", 2)))),
    (r"\frac{a^{(2)}_0}{2}", Op("div", (A20, Num(2)))),
    (r"\tfrac12", Op("div", (Num(1), Num(2)))),
    (r"\dfrac{1}{2}", Num(sorted([1, 2])[0] / 2)),
    (r"\frac{1}{2}", Op("div", (Num(1), Num(2)))),
    ("a^{(2)}_0 / 2", Op("div", (A20, Num(2)))),
    (r"\left[ a^{(2)}_0 \right]", A20),
    (r"\bigl( a^{(2)}_0 \bigr)", A20),
    (r"a^{(2)}_0 \, \cdot \; 1", Op("dot", (A20, Num(1)))),
    (r"\sum_{j=0}^{1} a^{(1)}_j", Op("sum", (Leaf("a", 1, (("j", 0),)),), ("j", 0, 1))),
    (r"\sum\limits_{k=0}^{2} w^{(2)}_{0k}", Op("sum", (Leaf("w", 2, (0, ("k", 0))),), ("k", 0, 2))),
    (r"\sum_{j=1}^{1} a^{(1)}_{j-1}", Op("sum", (Leaf("a", 1, (("j", -1),)),), ("j", 1, 1))),
    ("-a^{(2)}_0 + 3", Op("add", (Op("neg", (A20,)), Num(3)))),
    ("2^{10}", Num(1024)),
])
def test_latex_vocabulary_paren_style(source, tree):
    if tree is None:
        fails(read_latex, source)
        return
    if tree == Num(sorted([1, 2])[0] / 2):  # \dfrac{1}{2} is a quotient of numbers
        tree = Op("div", (Num(1), Num(2)))
    lhs, rhs = read_latex(source, PAREN)
    assert lhs is None and rhs == tree


@pytest.mark.parametrize("source,tree", [
    ("a^2_0", A20),
    ("a^{2}_{0}", A20),
    ("(a^2_0)^2", Op("pow", (A20,), 2)),
    ("a^L_0", A20),
    ("a^{L-1}_1", Leaf("a", 1, (1,))),
    ("w^2_{jk}", Leaf("w", 2, (("j", 0), ("k", 0)))),
    (r"\delta^1", Leaf("delta", 1)),
    (r"(w^2)^T", Op("T", (Leaf("w", 2),))),
    ("a^{(2)}_0", A20),  # the parenthesized layer reads in every notation
])
def test_latex_bare_superscripts_are_layers(source, tree):
    assert read_latex(source, BARE) == (None, tree)


def test_latex_equations_give_the_left_hand_side():
    lhs, rhs = read_latex(r"\delta^1 = ((w^2)^T \delta^2) \odot \sigma'(z^1)", BARE)
    assert lhs == Leaf("delta", 1)
    assert rhs == Op("had", (Op("dot", (Op("T", (Leaf("w", 2),)), Leaf("delta", 2))), Op("sigma_prime", (Leaf("z", 1),))))
    lhs, _ = read_latex(r"\frac{\partial C}{\partial w^2_{01}} = 1", BARE)
    assert lhs == Op("div", (Op("partial", (Leaf("C", None),)), Op("partial", (Leaf("w", 2, (0, 1)),))))


def test_implicit_products_bind_tighter_than_odot():
    _, rhs = read_latex(r"\sigma'(z^{(1)}) \odot (w^{(2)})^T \delta^{(2)}", PAREN)
    assert rhs.op == "had" and rhs.args[1].op == "dot"


@pytest.mark.parametrize("source", [
    "(a_0^{(2)} - T_0)a_0^{(2)}(1 - a_0^{(2)})a_0^{(1)}",
    r"\sum_{j=0}^{1} w_{j0}^{(2)} \delta_j^{(2)} \sigma'(z_0^{(1)})",
    r"\operatorname{diag}(\sigma'(z^{(1)})) (w^{(2)})^T \delta^{(2)}",
    r"\frac{1}{2} \delta^{(2)} \mathbf{1} - (a^{(2)}_0)^{3}",
    r"\nabla_a C \odot \sigma'(z^{(2)}) + \tanh(z^{(1)}_0) \cdot 2",
])
@pytest.mark.parametrize("shape", [PAREN, BARE], ids=["paren", "bare"])
def test_latex_printing_reads_back_the_same_tree(source, shape):
    _, tree = read_latex(source, PAREN)
    assert read_latex(latex_of(tree, shape.style), shape) == (None, tree)


@pytest.mark.parametrize("source,needle,column", [
    (r"\alpha + 1", r"unknown symbol '\alpha'", 1),
    (r"a^{(1)}_0 + \beta", r"unknown symbol '\beta'", 13),
    (r"a^{(1)}_0 + \zeta", r"unknown or misplaced '\zeta'", 13),
    (r"\sigma z^{(1)}_0", r"a function takes its argument in parentheses", 8),
    ("1 +", "the formula ends too early", 4),
    ("a^{(1)}_0 +* 2", "unexpected '*'", 12),
    ("a_0^2", "the layer is written in parentheses", 1),
    (r"\delta^1", "the layer is written in parentheses", 1),
    ("a_0", "needs a layer", 1),
    ("a^{(3)}_0", "there is no layer 3", 1),
    ("w_{0}^{(1)}", "w takes 2 indices", 3),
    ("a_{01}^{(1)}", "a takes 1 index", 3),
    ("W_{01}^{(1)}", "W is a whole matrix", 3),
    ("q", "unknown symbol 'q'", 1),
    ("L", "L is the number of the output layer", 1),
    ("a_0_1^{(1)}", "double subscript", 1),
    ("a^{(1)}^{(1)}_0", "double superscript", 1),
    (r"a^{(1)}_{0.5}", "an index is a whole number", 10),
    (r"\left( a^{(1)}_0 \right.", "'(' is never closed", 6),
    (r"\sum_{j=0}^{x} a^{(1)}_j", "explicit whole-number bounds", 1),
    (r"\sum_{j=2}^{1} a^{(1)}_j", "has no terms", 1),
    (r"\sum_{j=0}^{5000} a^{(1)}_j", "at most 1000", 1),
    (r"a^q", "only T (transpose), L (the output layer) or a number", 3),
    (r"a^{q}", "is neither a layer, a transpose nor a whole-number power", 3),
    (r"x^{(1)}", "a layer in parentheses on something that has no layer", 3),
    ("C_0", "C takes no index", 3),
    (r"\operatorname{softsign}(x_0)", "unknown function 'softsign'", 1),
    (r"\operatorname{diag}'(x)", "diag has no derivative", 1),
    (r"\nabla_x C", r"\nabla_a C is the gradient", 1),
    (r"\hat{x}", r"unknown symbol '\hat{x}'", 1),
    ("δ_0^{(1)}", r"write '\\delta'", 1),
    ("a^{(2)}_0 = b = c", "a chain of equalities", 15),
    ("(x_0)_1", "a subscript indexes a named quantity", 7),
    ("x_0^{1/2}", "neither a transpose nor a whole-number power", 5),
    (r"x_0 \cdot 1\,000", "two numbers side by side", 11),  # a thousands separator, not 1 times 000
    ("2 3", "two numbers side by side", 1),  # shown as 23
    ("{2}{3}", "two numbers side by side", 1),
    ("1e5", "unknown symbol 'e'", 2),
])
def test_latex_errors_name_the_column(source, needle, column):
    err = fails(read_latex, source)
    assert needle in err.message, err.message
    assert position(source, err.span[0]) == f"column {column}"


# ---------------------------------------------------------------------------
# safety: size, depth, exponents
# ---------------------------------------------------------------------------

BIG = "a1[0] + " * 125_000 + "1"  # 1 MB


@pytest.mark.parametrize("reader,source,needle", [
    (read_text, BIG, "characters; a claim has at most 10000"),
    (read_latex, BIG.replace("a1[0]", "a^{(1)}_0"), "characters; a claim has at most 10000"),
    (read_text, "(" * 10_000 + "x[0]" + ")" * 10_000, "characters; a claim has at most 10000"),
    (read_latex, "(" * 10_000 + "x_0" + ")" * 10_000, "characters; a claim has at most 10000"),
    (read_text, "(" * 150 + "x[0]" + ")" * 150, "brackets nested more than 100 deep"),
    (read_latex, "{" * 150 + "x_0" + "}" * 150, "brackets nested more than 100 deep"),
    (read_text, "2**2**2**99", "exponent 99 is out of range"),
    (read_latex, "2^{2^{2^{99}}}", "exponent 99 is out of range"),
    (read_text, "x[0]**2**2**99", "exponent 99 is out of range"),
    (read_text, "((10**30)**30)**30", "the number is too large"),
    (read_text, "9" * 40, "a number of 40 digits"),
    (read_latex, "9" * 40, "a number of 40 digits"),
    (read_text, "9" * 5000, "a number of 5000 digits"),
    (read_text, "-" * 9_000 + "x[0]", "nested too deeply"),
    (read_latex, "-" * 9_000 + "x_0", "nested more than 200 deep"),
    (read_text, "+".join(["x[0]"] * 1_900), "nested more than 200 deep"),
    (read_latex, "+".join(["x_0"] * 2_000), "nested more than 200 deep"),
    (read_text, "x[0]**33", "exponent 33 is out of range"),
])
def test_hostile_claims_get_a_clean_error(reader, source, needle):
    err = fails(reader, source)
    assert needle in err.message, err.message


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ax01T_^{}()[]+-*/@.\\ 2=,'sigmadelt", max_size=40))
def test_any_text_is_a_tree_or_a_claim_error(source):
    for reader, shape in ((read_text, PAREN), (read_latex, PAREN), (read_latex, BARE)):
        try:
            reader(source, shape)
        except ClaimError as exc:
            assert exc.message and "\n" not in exc.message
