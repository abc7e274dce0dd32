"""A concrete instance: the general formulas at fixed widths, against derive.chain and derive.proofs.concrete."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from derive.errors import DeriveError
from derive.proofs.general.functions import CostPartial, sigma_prime
from derive.proofs.general.printing import text
from derive.proofs.general.steps import GeneralProof
from derive.proofs.general.theorems import prove_general


@dataclass
class Agreement:
    """One entry of a concrete network: the general formula's value against the concrete proof's."""

    name: str  # "delta1[0]", "dC/dw2[0,1]"
    general: sp.Expr  # the general formula, widths substituted, sums written out, entries mapped (nan: an
    # entry the network does not have)
    concrete: sp.Expr  # the concrete proof's chain-rule value
    matrix: sp.Expr | None  # the concrete proof's matrix-form entry (gradients)
    agrees: bool


def concrete_agreement(spec, proof: GeneralProof | None = None) -> list[Agreement]:
    """Substitute a concrete network's widths into the general formulas and compare exactly.

    The spec must have separate biases, elementwise activations and batch "single" or
    "sum". delta^L comes from BP1 and every lower delta from BP2 applied layer by layer
    (the induction, written out); BP3 and BP4 then give each gradient. Each is compared
    with the concrete chain rule (derive.chain) and the matrix-form entry of derive.proofs.concrete.prove.
    """
    from derive.network import Network
    from derive.proofs.concrete import prove
    from derive.proofs.identity import is_identity, relations
    from derive.spec import load_spec

    spec = load_spec(spec)
    if spec.bias != "separate" or spec.batch == "mean":
        raise DeriveError(f"{spec.name}: the general proof has separate biases and sums over the batch; "
                          f"this spec has bias {spec.bias!r}, batch {spec.batch!r}")
    setting = spec.convention + ("-batch" if spec.batch == "sum" else "")
    if proof is None or setting not in [s.key for s in proof.settings]:
        proof = prove_general([setting])
    st = proof.setting(setting)
    M = st.model
    net = Network(spec)
    if not all(act.elementwise for act in net.acts[1:]):
        raise DeriveError(f"{spec.name}: the general proof covers elementwise activations, not softmax")
    concrete = prove(net)
    chain = concrete.chain
    rule = relations(net)
    L, n, E = net.L, net.sizes, net.E
    examples = range(E) if M.batch else [None]

    def entry(x):  # one Indexed entry or applied function of the general proof -> the network's symbol
        inner = x.args[0] if isinstance(x, (sigma_prime, CostPartial)) else x
        if not isinstance(inner, sp.Indexed) or any(not i.is_Integer or i < 0 for i in inner.indices):
            raise KeyError(text(x))
        if isinstance(x, sigma_prime):
            lay, *idx = x.args[0].indices
            ex, i = idx if M.batch else (0, idx[0])
            return net.sigma_prime[int(ex)][int(lay)][int(i)]
        if isinstance(x, CostPartial):
            lay, *idx = x.args[0].indices
            ex, i = idx if M.batch else (0, idx[0])
            return chain.dC_da[int(ex)][int(i)] / net.scale
        base, (lay, *idx) = x.base.name, x.indices
        if base in ("w", "W"):
            jj, kk = (idx[1], idx[0]) if base == "W" else idx
            return net.w[int(lay)][int(jj), int(kk)]
        if base == "b":
            return net.b[int(lay)][int(idx[0])]
        ex, i = idx if M.batch else (0, idx[0])
        if base == "a":
            return net.a[int(ex)][int(lay)][int(i)]
        if base == "delta":
            return deltas[int(lay)][int(ex)][int(i)]
        raise KeyError(base)

    def instance(expr, layer, **index):
        subs = {M.l: layer, M.L: L, M.B: E, M.width(M.L): n[L]}
        for lay, sym in ((layer - 1, M.l - 1), (layer, M.l), (layer + 1, M.l + 1)):
            if 0 <= lay <= L:
                subs[M.width(sym)] = n[lay]
        at = {getattr(M, k): v for k, v in index.items()}
        value = expr.xreplace(subs).subs(at).doit()  # subs keeps summation indices bound
        apps = sorted(value.atoms(sigma_prime, CostPartial), key=str)
        try:
            value = value.xreplace({x: entry(x) for x in apps})
            return value.xreplace({x: entry(x) for x in sorted(value.atoms(sp.Indexed), key=str)})
        except (KeyError, IndexError):  # an entry the network does not have (a wrong formula's index)
            return sp.nan

    formulas = {t.key: t.formula for t in st.theorems}
    deltas: dict = {}
    out = []
    for layer in range(L, 0, -1):
        key = "BP1" if layer == L else "BP2"
        deltas[layer] = [[None] * n[layer] for _ in range(E)]
        for ex in examples:
            for jj in range(n[layer]):
                idx = {"j": jj, **({"e": ex} if ex is not None else {})}
                value = instance(formulas[key], layer, **idx)
                deltas[layer][ex or 0][jj] = value
                truth = chain.delta(ex or 0, layer, jj)
                out.append(Agreement(f"delta{layer}[{jj}]" + (f", example {ex}" if ex is not None else ""),
                                     value, truth, None, value is not sp.nan and is_identity(value, truth, rule)))
    for check in concrete.partials:
        p = check.derivation.param
        if p.kind == "b":
            value = instance(formulas["BP3"], p.layer, j=p.j)
        else:
            value = instance(formulas["BP4"], p.layer, j=p.j, k=p.k)
        same = value is not sp.nan and is_identity(value, check.chain, rule) and is_identity(value, check.matrix, rule)
        out.append(Agreement(check.name, value, check.chain, check.matrix, same))
    return out
