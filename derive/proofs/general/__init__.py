"""The general proof: BP1-BP4 for every width and every depth (issue 5).

The concrete proofs check one network at a time. Here the widths are positive
integer symbols (n_{l-1}, n_l, n_{l+1}, n_L, and B examples in a batch), the
weights, activations and pre-activations are SymPy `Indexed` entries whose first
index is the layer, sigma is an undefined function whose derivative is sigma', and
the cost C is an undefined function of the output activations a^L only.

Each theorem is a list of chains of equalities. Every step names its rule and is
checked on its own statement, after it was built:

- sympy.diff and the Kronecker sum (SymPy's delta summation) are recomputed by SymPy;
- a Piecewise range guard is dropped only when SymPy decides the guard is True
  with the index ranges as assumptions (0 <= j <= n-1 is written n = j + 1 + r, r >= 0);
- the chain rule, the induction hypothesis, substitutions and the linearity of a
  sum are rules SymPy cannot apply to a symbolic number of terms: the step is
  rebuilt from the rule's bindings and must be identical, and the chain rule's
  premise (C depends on x only through u) is read off the model's definitions;
- the last step compares the derived expression with the formula (the textbook one,
  or a candidate a caller passes in), each quantity the model defines written one way
  (dC/dz as delta, sigma(z) as a, z by its definition); one that is not equal is
  refuted by a counterexample: a concrete network that obeys every definition, each
  width tried at 1, 2, 3 and 5, where both sides are defined and differ, in exact rationals.
  Each denominator of the formula is judged first, as written (SymPy cancels x/x before
  it knows x): one that is 0 anywhere, or not shown nonzero, leaves the formula unproven.

BP1 is the base case and BP2 the inductive step: together they give delta^l for
every layer of a network of any depth; BP3 and BP4 then give every gradient.

The modules, in the order they build on each other: functions (sigma, sigma', dC/dx,
the local factor), printing (text and LaTeX), model (the symbols and definitions of
a setting), steps (the proof as data), rules (the rules' operations), forms (one way
of writing each defined quantity), written (denominators as written), instance (the
counterexample search on concrete networks), checks (each rule's check), theorems
(the derivations and the API) and agreement (the general formulas on a concrete spec).

The layers beyond dense (issue 15: batch norm, layer norm, residual blocks; LAYERS) are proven on their own
scalar graphs with the batch size B, the width n and the number of blocks R as symbols: entries (the graph: who
reads what, read off pattern definitions), layer_proof (their rules' operations and checks), norms (batch norm
and layer norm, s = (σ² + ε)^(-1/2) an atom with ds/dσ² = -s³/2) and residual (the δ recursion by induction).
Issue 16's spatial layers (SPATIAL: conv2d, conv1d, attention) with the channels, sizes, kernel, stride, padding
and sequence length as symbols: spatial (their rules: Kronecker sums over unit-coefficient indices only, guards as
brackets, concrete witnesses), conv and attention.
"""

from derive.proofs.general.agreement import Agreement, concrete_agreement
from derive.proofs.general.forms import canonical
from derive.proofs.general.functions import CostPartial, LocalPartial, sigma, sigma_prime
from derive.proofs.general.instance import find_counterexample
from derive.proofs.general.model import INDEX, SETTINGS, THEOREMS, WIDTH, Model
from derive.proofs.general.printing import latex, render_parts, tex_words, text
from derive.proofs.general.rules import equal_by_linearity
from derive.proofs.general.steps import RULES, Chain, GeneralProof, Rule, RuleCheck, Scope, Setting, Step, Theorem
from derive.proofs.general.theorems import (
    LAYERS, SPATIAL, check_theorem, prove_general, prove_layer, prove_setting, prove_theorem, spec_targets,
)
from derive.proofs.identity import Counterexample  # the one counterexample type; general's carry sizes and indices

__all__ = [
    "INDEX", "LAYERS", "RULES", "SETTINGS", "SPATIAL", "THEOREMS", "WIDTH", "Agreement", "Chain", "CostPartial",
    "Counterexample", "GeneralProof", "LocalPartial", "Model", "Rule", "RuleCheck", "Scope", "Setting", "Step", "Theorem",
    "canonical", "check_theorem", "concrete_agreement", "equal_by_linearity", "find_counterexample", "latex",
    "prove_general", "prove_layer", "prove_setting", "prove_theorem", "render_parts", "sigma", "sigma_prime",
    "spec_targets",
    "tex_words", "text",
]
