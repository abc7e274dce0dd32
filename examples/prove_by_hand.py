"""Use the API: prove the 2-2-2 network, look at one derivation, and refuse a wrong formula.

    python examples/prove_by_hand.py
"""

from sympy import HadamardProduct

from derive import MatrixForms, Network, check_form, prove
from derive.matrix import Form
from derive.tables.notations import text

proof = prove("net222")
print(proof.summary())

# the chain rule for one hidden weight, path by path
check = next(c for c in proof.partials if c.name == "dC/dw1[0,0]")
for path in check.derivation.paths:
    print("  path", " -> ".join(path.nodes), ":", " · ".join(text(f.value) for f in path.factors))
print("  matrix entry:", text(check.matrix), "->", check.verdict)

# a slip people make: w instead of w^T in the hidden error
net = Network("net222")
forms = MatrixForms(net)
S = forms.sym
wrong = Form("BP2[1]", "hidden error with w instead of w^T", S["delta1"],
             HadamardProduct(S["delta2"] * S["w2"].T, S["sp1"]), "delta", 1)
for c in check_form(net, wrong, forms):
    print(f"  {c.name}: {c.verdict}", end="")
    if c.counterexample:
        ce = c.counterexample
        print(f"  (chain rule {ce.lhs:.6g}, the formula {ce.rhs:.6g})")
    else:
        print()
