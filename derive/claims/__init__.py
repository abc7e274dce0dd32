"""Claims: a person's own formulas, checked against the chain rule, with the mistake pointed out.

`python -m derive check CLAIMS.toml` reads a TOML file naming a spec and a list of
claims, each a left-hand side (dC/dw2[0,1], dC/dW2, delta1, ...) and a right-hand
side in text (`rhs`, read by derive.claims.text) or LaTeX (`latex`, read by
derive.claims.latex). The truth comes from the core: partials from
ChainRule(net).derive(param).value, deltas from ChainRule.delta, matrices from
MatrixForms(net).values. A claim is PROVEN when every entry is an exact identity
(derive.proofs.identity.is_identity with derive.proofs.identity.relations); REFUTED with a numeric
witness, the wrong and the holding entries, a plain shape error, and the nearest
repair that is itself proven; UNPROVEN when it is not an identity in the atoms
and no sample point tells the sides apart; ERROR when it cannot be read, or when a
denominator is 0 at every point (judged on the denominator as written, before SymPy
can cancel it). Sample points are never on an activation's kink (ReLU at z = 0, where
sigma' does not exist), and a witness is a point where both sides are defined.

Cost: a claim through deltas is first compared with one layer's deltas held as
symbols (derive.claims.fast: exact, and BP1-BP4 over a batch of 64 in a second); what
that does not prove goes to the full check, whose work is estimated from the tree's
shapes first (derive.claims.cost) and refused as an ERROR, naming the estimate and the
limit, when it is beyond the limits.

Activations: sigma(z1[0]) is the atom a1[0], sigma_prime(z1[0]) the network's
sigma'(z^{(1)}_0). The argument may be written any way that expands to a neuron's
pre-activation; sigma of anything else is an ERROR, because the proof knows the
activation only as a neuron's output (an atom), and a sigma of some other quantity
has no atom that would keep the proof exact.

Vectors (a1, z1, delta1, T or y, x, grad_a(C), sigma_prime(z1)) are columns, one
per example of a batch, and `ones` is a column of ones, one per example; A1 is the
row (a1, 1) with an augmented bias, else a1 as a row, one row per example; w2 is
[j, k]; W2, b2, dC/dW2 and dC/db2 are in the spec's own layout. Scalars of one example (a1[0], delta2[0], ...) name the claim's
`example` (0 unless it says), while dC/dw2[j,k] is the derivative of the whole C.

Exit codes: 0 every claim PROVEN, 1 any REFUTED or UNPROVEN, 2 the file or a claim
cannot be read (one line on stderr naming the claim and the position).

The package, one idea a module: tree (the claim tree, its limits and what both readers
share), text and latex (the readers), evaluate (the tree's value, exactly or at a
point), printing (the tree in the claim's own syntax), truth (the network a claim is
checked against), check (one claim's verdict, witness and repair), repair (the repair
search), cost and fast (a check's size estimated, and the fast exact path), file (a
claims file and its Report). A claims file whose spec is a layer list (batch norm, layer norm,
residual blocks) is checked by layers (its truth: each layer's chain rule from its upstream
gradient), layers_read (its text and LaTeX, layers.lark), layers_check (verdicts, witnesses and
the repairs that name a lost path) and layers_print.
"""

from derive.claims.check import Claim, ClaimCheck, ClaimVerdict, check_claim, read_claim
from derive.claims.file import Report, check_file, load_claims
from derive.claims.truth import Context

__all__ = ["Claim", "ClaimCheck", "ClaimVerdict", "Context", "Report", "check_claim", "check_file", "load_claims",
           "read_claim"]
