"""A claim's cost: refused from its estimate before the work; BP1-BP4 over a batch proven with the deltas held."""

import pytest
import sympy as sp

from derive.claims import Claim, Context, check_claim, read_claim
from derive.claims import check as claim_check
from derive.claims import cost as claim_cost
from derive.claims import fast as claim_fast
from derive.claims.cost import estimate, leaf_shape, size
from derive.claims.evaluate import Evaluator
from derive.claims.printing import text_of
from derive.claims.text import Lhs
from derive.claims.tree import ClaimError
from derive.claims.truth import SymLeaves
from derive.proofs.identity import is_identity
from derive.spec import load_spec, validate


def _spec(name, **changes):
    data = load_spec(name).as_dict()
    data.update(changes)
    return validate(data)


@pytest.fixture(scope="module")
def wide():
    """The issue's network: Nielsen's at widths 40-40-8 (1968 parameters), the mean over 2 examples."""
    return Context(_spec("nielsen", sizes=[40, 40, 8]))


@pytest.fixture(scope="module")
def batch64():
    return Context(_spec("nielsen", sizes=[3, 4, 2], examples=64))


SMALL = {
    "net222": lambda: Context("net222"),  # row convention, augmented bias
    "colaug": lambda: Context(_spec("nielsen", sizes=[2, 3, 2], bias="augmented", activation=["tanh", "sigmoid"])),
    "rowmajor": lambda: Context("rowmajor"),  # ReLU, cross-entropy, a batch of 3
    "nobias": lambda: Context(_spec("nobias3", examples=1)),
    "softmax": lambda: Context(_spec("nielsen", sizes=[2, 3, 3], activation=["sigmoid", "softmax"],
                                     cost="log_likelihood", batch="single", examples=1)),
    "batch": lambda: Context(_spec("nielsen", sizes=[3, 4, 2])),
}


@pytest.fixture(scope="module")
def small():
    made = {}

    def get(name):
        if name not in made:
            made[name] = SMALL[name]()
        return made[name]

    return get


def _read(ctx, lhs=None, rhs=None, latex=None):
    lhs_, tree, _ = read_claim(ctx, Claim("c", lhs, rhs, latex))
    return lhs_, tree


@pytest.fixture
def no_full_check(monkeypatch):
    """The exact check's ClaimCheck (truth by the chain rule, evaluation in SymPy) must not run."""
    def refuse(*args, **kwargs):
        raise AssertionError("the full check ran")

    monkeypatch.setattr(claim_check, "ClaimCheck", refuse)


def _chain(products: int) -> str:
    """w1 @ w1.T @ ... @ delta1 @ x.T with the given number of products."""
    factors = (["w1", "w1.T"] * products)[:products - 1] + ["delta1", "x.T"]
    return " @ ".join(factors)


# ---------------------------------------------------------------------------
# the work bounded before it is done
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("products", [3, 7, 15])
def test_product_chains_are_refused_from_their_estimate(wide, no_full_check, monkeypatch, products):
    def no_evaluation(*args, **kwargs):
        raise AssertionError("the chain was evaluated")

    monkeypatch.setattr(claim_fast, "_Eval", no_evaluation)
    rhs = _chain(products)
    assert rhs.count("@") == products
    v = check_claim(wide, Claim("chain", "dC/dw1", rhs))
    assert v.verdict == "ERROR" and v.error_field == "rhs", (v.verdict, v.message)
    assert "too large to prove exactly" in v.message and "more than 50000 terms" in v.message
    assert "sizes = [3, 4, 2] and examples = 1; now 40-40-8 with 2 examples" in v.message  # the way out
    est = estimate(wide, *_read(wide, "dC/dw1", rhs), broadcast=True)
    assert est.entry_terms > claim_cost.MAX_TERMS and est.entries == 40 * 40


def test_the_estimate_counts_products_and_terms(wide):
    # w1 w1ᵀ: 40·40·40 products of 40-term entries; δ1 is 64 terms (8 outputs × (a - y) a(1 - a) σ'); then xᵀ
    est = estimate(wide, *_read(wide, "dC/dw1", "w1 @ w1.T @ delta1 @ x.T"), broadcast=True)
    assert est.entry_terms == 2 * 40 * 40 * 64
    adjoints = 0 if wide.chain.has_adjoints else 2 * 8 * 40 * 41  # once per Context: every dz2/da1
    truth_ops = adjoints + 1600 * 2 * 41  # and every partial's dz/dw, over both examples
    assert est.ops == 40**3 + 40 * 2 * 40 + 40 * 40 * 2 + (40 * 40 + 2 * 40) + truth_ops  # products, transposes
    held = estimate(wide, *_read(wide, "dC/dw1", "w1 @ w1.T @ delta1 @ x.T"), broadcast=True, top=1)
    assert held.entry_terms == 2 * 40 * 40  # delta1 held: one symbol an entry


def test_too_many_operations_are_refused_naming_the_count_and_the_limit(small, monkeypatch):
    ctx = small("batch")
    monkeypatch.setattr(claim_cost, "MAX_OPS", 50)
    v = check_claim(ctx, Claim("c", "dC/dw1", "delta1 @ x.T"))  # wrong (no 1/2): the full check would run
    assert v.verdict == "ERROR"
    assert "scalar operations to evaluate it and its truth; at most 50" in v.message and "sizes = " in v.message


def test_too_many_terms_over_all_entries_are_refused(small, monkeypatch):
    ctx = small("batch")
    monkeypatch.setattr(claim_cost, "MAX_TOTAL_TERMS", 100)
    v = check_claim(ctx, Claim("c", "dC/dw1", "delta1 @ x.T"))
    assert v.verdict == "ERROR" and "terms to expand over its 12 entries; at most 100" in v.message


def test_a_left_hand_side_out_of_range_is_said_before_the_size(wide):
    v = check_claim(wide, Claim("c", "dC/dw1[99,0]", "(w1 @ w1.T @ delta1 @ x.T)[0,0]"))
    assert v.verdict == "ERROR" and v.error_field == "lhs" and "index 99 is out of range" in v.message


def test_a_claim_within_the_limits_is_checked_as_before(small):
    v = check_claim(small("batch"), Claim("c", "dC/dw2", "delta2 @ a1.T"))  # the sum, not the mean
    assert v.verdict == "REFUTED" and v.witness is not None and "1/2" in v.repair.text


KINDS = ["w", "W", "b", "a", "A", "z", "delta", "y", "g", "ones", "D"]


@pytest.mark.parametrize("name", sorted(SMALL))
def test_leaf_shapes_are_the_evaluated_ones(small, name):
    ctx = small(name)
    for kind in KINDS:
        layers = [None] if kind in ("y", "g", "ones") else range(0 if kind in ("a", "A") else 1, ctx.L + 1)
        for l in layers:
            try:
                value = ctx.matrix(kind, l)
            except ClaimError:  # no biases, D of a batch or of softmax
                continue
            assert leaf_shape(ctx, kind, l) == tuple(value.shape), (name, kind, l)


@pytest.mark.parametrize("fixture,lhs,rhs", [
    ("net222", "dC/dW2", "A1.T @ delta2.T"),
    ("net222", "delta1", "diag(sigma_prime(z1)) @ w2.T @ delta2"),
    ("net222", "dC/dw2[1,0]", "(a2.T @ a2 - a2.T @ a2 + 1) * delta2[1] * a1[0]"),
    ("net222", "delta2", "(sigma((A1 @ W2).T) - T) * sigma_prime(z2)"),
    ("batch", "dC/db2", "delta2 @ ones / 2"),
    ("batch", "delta2", "(a2 - y) * sigma_prime(z2) + b2"),  # text broadcasts b2 over the batch
    ("rowmajor", "dC/db3", "(delta3 @ ones).T"),
    ("nobias", "delta1", "D1 @ w2.T @ D2 @ w3.T @ D3 @ grad_a(C)"),
])
def test_estimated_shapes_are_the_evaluated_ones(small, fixture, lhs, rhs):
    ctx = small(fixture)
    lhs_, tree = _read(ctx, lhs, rhs)
    value = Evaluator(SymLeaves(ctx, 0), text_of, broadcast=True)(tree)
    expected = tuple(value.shape) if isinstance(value, sp.MatrixBase) else None
    assert size(ctx, tree, broadcast=True).shape == expected


# ---------------------------------------------------------------------------
# BP1-BP4 over a batch, proven with the deltas held
# ---------------------------------------------------------------------------

BATCH64 = [
    ("dC/dw2", "delta2 @ a1.T / 64", None),  # BP4 over the batch
    ("dC/dw1", "delta1 @ x.T / 64", None),
    ("dC/db2", "delta2 @ ones / 64", None),  # BP3
    ("dC/dW1", "delta1 @ A0 / 64", None),  # the spec's own layout
    ("(dC/dw2).T", "a1 @ delta2.T / 64", None),
    ("delta2", "(a2 - y) * sigma_prime(z2)", None),  # BP1: per example, whatever the batch
    ("delta1", "(w2.T @ delta2) * sigma_prime(z1)", None),  # BP2
    ("dC/dw1", "((w2.T @ delta2) * a1 * (1 - a1)) @ x.T / 64", None),  # BP2 inside BP4
    (None, None, r"\frac{\partial C}{\partial w^2} = \frac{1}{64} \delta^2 (a^1)^T"),
    (None, None, r"\delta^1 = ((w^2)^T \delta^2) \odot \sigma'(z^1)"),
]


@pytest.mark.parametrize("lhs,rhs,latex", BATCH64)
def test_bp1_to_bp4_over_64_examples_are_proven_without_the_full_check(batch64, no_full_check, lhs, rhs, latex):
    v = check_claim(batch64, Claim("c", lhs, rhs, latex))
    assert v.verdict == "PROVEN", (v.verdict, v.message)


@pytest.fixture(scope="module")
def rational():
    """Sigmoid with cross-entropy, softmax with log-likelihood: their deltas cancel only over one denominator."""
    return {"rowmajor": Context(_spec("rowmajor", examples=16)),
            "softmax": Context(_spec("nielsen", sizes=[2, 3, 3], activation=["sigmoid", "softmax"],
                                     cost="log_likelihood", examples=16))}


@pytest.mark.parametrize("name,lhs,rhs,holds", [
    ("rowmajor", "delta3", "a3 - y", True),
    ("rowmajor", "dC/dW3", "A2.T @ (a3 - y).T", True),  # the batch is a sum here
    ("rowmajor", "dC/dW2", "A1.T @ delta2.T", True),
    ("rowmajor", "delta3", "a3 + y", False),
    ("rowmajor", "dC/dW3", "A2.T @ (a3 - y).T / 16", False),
    ("softmax", "delta2", "a2 - y", True),
    ("softmax", "dC/dw2", "(a2 - y) @ a1.T / 16", True),
    ("softmax", "delta2", "y - a2", False),
    ("softmax", "dC/dw2", "(a2 - y) @ a1.T", False),
])
def test_rational_deltas_over_a_batch(rational, name, lhs, rhs, holds):
    ctx = rational[name]
    assert claim_fast.prove(ctx, *_read(ctx, lhs, rhs), 0, True) is holds


def test_bp4_at_the_issues_sizes_is_proven_with_the_deltas_held(wide, no_full_check):
    v = check_claim(wide, Claim("BP4", "dC/dw1", "delta1 @ x.T / 2"))
    assert v.verdict == "PROVEN"


WRONG = [
    ("batch64", "dC/dw2", "delta2 @ a1.T"),  # the sum, not the mean
    ("batch64", "dC/dw2", "delta2 @ a1.T / 32"),
    ("batch64", "dC/dw1", "delta2.T @ w2 @ a1 @ x.T / 64"),  # a wrong chain of the right size
    ("batch64", "dC/db2", "delta2 @ ones"),
    ("batch64", "delta1", "(w2.T @ delta2) * sigma_prime(z2[0])"),  # sigma' of the wrong layer (a number)
    ("batch64", "delta1", "(w2.T @ delta2)"),  # a lost sigma'
    ("batch64", "delta2", "(y - a2) * sigma_prime(z2)"),  # the sign
    ("batch64", "dC/dw2[1,3]", "delta2[1] * a1[3]"),  # one example is not the batch
    ("batch64", "dC/dw2[1,3]", "delta2[1] * a1[2] / 64"),
    ("net222", "dC/dW2", "A1.T @ delta2.T * 2"),
    ("net222", "dC/dW1", "A0.T @ delta1.T + A0.T @ delta1.T"),
    ("net222", "delta1[0]", "(w2.T @ delta2)[1] * sigma_prime(z1[0])"),  # swapped index
    ("net222", "delta1", "(w2 @ delta2) * sigma_prime(z1)"),  # the transpose missing (a square w2)
    ("rowmajor", "dC/dW3", "A2.T @ delta3.T / 3"),
    ("rowmajor", "delta2", "(w3.T @ delta3) * sigma_prime(z3[0])"),
    ("softmax", "delta2", "y - a2"),
    ("nobias", "delta1", "D1 @ w2 @ D2 @ w3.T @ D3 @ grad_a(C)"),
]


@pytest.mark.parametrize("fixture,lhs,rhs", WRONG)
def test_a_wrong_claim_is_never_proven_with_the_deltas_held(request, small, fixture, lhs, rhs):
    ctx = request.getfixturevalue(fixture) if fixture == "batch64" else small(fixture)
    lhs_, tree = _read(ctx, lhs, rhs)
    assert not claim_fast.prove(ctx, lhs_, tree, 0, True)
    if fixture != "batch64" or "/ 32" in rhs or lhs == "dC/db2":  # the full check, where it is quick
        v = check_claim(ctx, Claim("c", lhs, rhs))
        assert v.verdict == "REFUTED" and (v.witness is not None or v.shape_error), (v.verdict, v.message)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_held_truth_is_the_chain_rule(small, name):
    """Every left-hand side, written in the atoms (top past L) and through the held deltas, is Context.truth."""
    ctx = small(name)
    held = claim_fast.held_of(ctx)
    lhss = []
    for l in range(1, ctx.L + 1):
        lhss += [Lhs("delta", l), Lhs("delta", l, (0,)), Lhs("w", l), Lhs("W", l),
                 Lhs("W", l, transposed=True), Lhs("w", l, (0, 1))]
        if ctx.spec.bias != "none":
            lhss += [Lhs("b", l), Lhs("b", l, (0,))]
    deltas = {held.held(e, l, j): ctx.chain.delta(e, l, j) for e in range(ctx.E) for l in range(1, ctx.L + 1)
              for j in range(ctx.sizes[l])}
    by_name = {str(k): v for k, v in deltas.items()}
    for lhs in lhss:
        truth = ctx.truth(lhs, 0)
        cells = [truth] if not isinstance(truth, sp.MatrixBase) else list(truth)
        for top in (ctx.L + 1, lhs.layer):
            shape, entry = held.truth(lhs, 0, top)
            assert shape == (tuple(truth.shape) if isinstance(truth, sp.MatrixBase) else None), (lhs, top)
            rows, cols = shape or (1, 1)
            ours = [sp.sympify(entry(r, c)) for r in range(rows) for c in range(cols)]
            ours = [x.xreplace({s: by_name[s.name] for s in x.free_symbols if s.name in by_name}) for x in ours]
            assert all(is_identity(t, o, ctx.rule) for t, o in zip(cells, ours)), (name, lhs, top)
