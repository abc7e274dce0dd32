"""Proofs for layer-list specs: each block's textbook backward form, and every partial three ways.

Each block is proven on its own, for an upstream gradient G = ∂C/∂y of free symbols: three
derivations of every ∂C/∂x (of the block's input) and every ∂C/∂parameter meet exactly
(derive.proofs.identity), and a witness refutes any that does not:

- the chain rule over the block's own scalar graph (G times local partials, summed over
  the block's nodes: μ, σ², s, x̂, y, z, a);
- the oracle: differentiation of Σ G ∘ y, y the block's output composed all the way down to
  its input (SymEngine's diff where that is algebraic, as in a norm; sympy.diff where it
  applies an activation), independent of the chain rule's accumulation;
- the block's textbook backward form (derive.tables.layers), and each further form it has
  (batch norm's three paths through μ and σ²).

The block's input and its atoms (σ(z), σ'(z), s = (σ² + ε)^(-1/2)) are free symbols, so each
identity holds for every input and every G, at any place in any network. Every partial of
C then follows layer by layer, as the dense proofs' staged mode argues: the last block's G
is ∂C/∂y by sympy.diff of the cost, and each block's G is the ∂C/∂x of the block above, which
that block's own identities proved equal to its textbook form. Nothing is expanded across
layers, so the proof's size is the sum of its blocks', not their product.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

try:
    import symengine as se
except ImportError:  # pragma: no cover - symengine is a dependency; SymPy differentiates alone without it
    se = None

from derive.graph import LayeredNetwork
from derive.proofs.identity import Counterexample, is_identity
from derive.spec import LayeredSpec, load_spec
from derive.tables.layers import KINDS
from derive.verdict import Verdict, exit_code


@dataclass
class LayerCheck:
    """One identity: a block's backward form for one entry, or one partial of C."""

    name: str  # "dC/dx[0,1]" in a lemma, "dC/dgamma2[1]" for a partial
    kind: str  # "input" (∂C/∂x of the block's input) or "partial" (∂C/∂ one of its parameters)
    position: int
    block: str  # the block's kind
    form: str  # the textbook form judged ("backward", "three paths"), or "oracle" for the oracle
    proven: bool = False
    counterexample: Counterexample | None = None

    @property
    def verdict(self) -> Verdict:
        if self.proven:
            return Verdict.PROVEN
        return Verdict.REFUTED if self.counterexample else Verdict.UNPROVEN

    def to_json(self) -> dict:
        out = {"name": self.name, "kind": self.kind, "layer": self.position, "block": self.block, "form": self.form,
               "verdict": self.verdict}
        if self.counterexample:
            out["counterexample"] = self.counterexample.to_json()
        return out


@dataclass
class LayeredProof:
    """Every lemma and partial of one layer-list network (a derive.verdict.Result)."""

    spec: LayeredSpec
    net: LayeredNetwork
    checks: list[LayerCheck] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    @property
    def partials(self) -> list[LayerCheck]:
        return [c for c in self.checks if c.kind == "partial"]

    @property
    def ok(self) -> bool:
        return all(c.proven for c in self.checks)

    @property
    def exit_code(self) -> int:
        return exit_code(c.verdict for c in self.checks)

    def per_block(self) -> list[dict]:
        """One row per block and form: its input entries and its parameters' partials, proven of total."""
        rows: dict = {}
        for c in self.checks:
            key = (c.position, c.block, c.form)
            row = rows.setdefault(key, {"layer": c.position, "kind": c.block, "form": c.form, "input": [0, 0],
                                        "partials": [0, 0]})
            slot = row["input" if c.kind == "input" else "partials"]
            slot[0] += c.proven
            slot[1] += 1
        return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[2] == "oracle", k[2]))]

    def unproven_partials(self) -> set[str]:
        """Partials not proven: their own identities fail, or the ∂C/∂x of a layer above them does (their G
        then is not what the textbook pass hands down)."""
        broken = [c.position for c in self.checks if c.kind == "input" and not c.proven]
        return {c.name for c in self.partials
                if not c.proven or any(position > c.position for position in broken)}

    def summary(self) -> str:
        names = list(dict.fromkeys(c.name for c in self.partials))
        bad = self.unproven_partials()
        forms = {(c.position, c.form) for c in self.checks if c.form != "oracle"}
        good_forms = forms - {(c.position, c.form) for c in self.checks if not c.proven and c.form != "oracle"}
        oracle = any(c.form == "oracle" for c in self.checks)
        how = "chain rule = textbook form = diff of the composed layer" if oracle else "chain rule = textbook form; no oracle"
        return (f"{len(names) - len(bad)}/{len(names)} partials of C proven ({how}), layer by layer; "
                f"{len(good_forms)}/{len(forms)} backward forms of {len(self.spec.blocks)} layers proven "
                "for any upstream gradient")

    def to_json(self) -> dict:
        return {"spec": self.spec.as_dict(), "mode": "layers", "summary": self.summary(), "proven": self.ok,
                "n_params": len(self.net.param_list), "per_layer": self.per_block(),
                "seconds": {"total": round(self.seconds, 3)},
                "failures": [c.to_json() for c in self.checks if not c.proven],
                "checks": [c.to_json() for c in self.checks]}

    _shows = {}  # Jupyter: derive.report.notebook fills it in (a layer above this module)

    def _repr_markdown_(self) -> str:
        show = self._shows.get("markdown")
        return show(self) if show else self.summary()


# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

def prove_layers(spec: LayeredSpec | str | LayeredNetwork, backward: dict | None = None,
                 forms: dict | None = None, oracle: bool = True, seed: int = 0) -> LayeredProof:
    """Prove every block's backward forms, entry by entry, three ways where the oracle runs.

    `backward` replaces a kind's backward pass by name (a form under test, or a mutant), and
    `forms` a kind's further forms ({kind: ((name, function), ...)}); the proof then judges those.
    """
    start = time.perf_counter()
    net = spec if isinstance(spec, LayeredNetwork) else LayeredNetwork(load_spec(spec))
    proof = LayeredProof(net.spec, net)
    rng = np.random.default_rng(seed)
    for block in net.spec.blocks:
        steps = [("backward", (backward or {}).get(block.kind, KINDS[block.kind].backward))]
        steps += list((forms or {}).get(block.kind, KINDS[block.kind].forms))
        proof.checks += _lemma(net, block, [(form, {**(backward or {}), block.kind: step}) for form, step in steps],
                               rng, oracle)
    proof.seconds = time.perf_counter() - start
    return proof


def _upstream(net: LayeredNetwork, position: int, Y: sp.Matrix) -> sp.Matrix:
    """Free symbols for ∂C/∂y of a block: g{l}_e{e}_{j}."""
    return sp.Matrix(Y.rows, Y.cols, lambda e, j: sp.Symbol(f"g{position}_e{e}_{j}"))


def _accumulate(net: LayeredNetwork, seeds: dict, nodes: list[sp.Symbol]) -> dict:
    """The chain rule backwards over the given nodes: adjoint[s] = Σ over s's readers of adjoint · ∂reader/∂s."""
    adj = dict(seeds)
    for s in reversed(nodes):
        g = adj.get(s)
        if g is None:
            continue
        for parent, d in net.local(s):
            if d != 0:
                adj[parent] = adj.get(parent, 0) + g * d
    return adj


def _lemma(net: LayeredNetwork, block, forms: list[tuple[str, dict]], rng, oracle: bool) -> list[LayerCheck]:
    """The block's backward forms (each a name and the backward passes to run) against the chain rule over its
    own nodes, entry by entry, and (with `oracle`) the chain rule against the derivative of the block's composed
    output contracted with G. The chain rule and the oracle run once, whatever the number of forms."""
    X, _, Y = net.state[block.position]
    G = _upstream(net, block.position, Y)
    inside = {b.position for b in block.flat()}
    nodes = [s for s in net.order if net.position_of[s] in inside]
    seeds: dict = {}
    for e in range(Y.rows):
        for j in range(Y.cols):
            seeds[Y[e, j]] = seeds.get(Y[e, j], 0) + G[e, j]
    adj = _accumulate(net, seeds, nodes)
    values: dict = {}
    for s in nodes:
        if s not in net.atoms:
            values[s] = net.definitions[s].xreplace(values)
    if oracle:  # Σ G ∘ y, y composed down to the block's input; each variable differentiates the terms it is in
        composed, rule = net.composed_within(nodes)
        terms = [(G[e, j], Y[e, j].xreplace(composed)) for e in range(Y.rows) for j in range(Y.cols)]
        terms = [(g, y, y.free_symbols) for g, y in terms]

    def judged(name: str, kind: str, form: str, chain: sp.Expr, lhs: sp.Expr, other: sp.Expr) -> LayerCheck:
        check = LayerCheck(name, kind, block.position, block.kind, form)
        check.proven = is_identity(lhs, _in_atoms(net, other, values))
        if not check.proven:
            check.counterexample = _witness(net, chain, other, rng, G)
        return check

    entries = [(f"dC/dx{block.position}[{e},{k}]", "input", X[e, k], (e, k), None)
               for e in range(X.rows) for k in range(X.cols)]
    entries += [(f"dC/d{_param_name(M[r, c])}", "partial", M[r, c], (r, c), pname)
                for pname, M in net.P[block.position].items() for r in range(M.rows) for c in range(M.cols)]
    textbook = [(form, net.textbook(G, backward, blocks=[block])) for form, backward in forms]
    by_form: list[list[LayerCheck]] = [[] for _ in forms]  # the oracle's checks go with the first form's
    for name, kind, variable, (r, c), pname in entries:
        chain = adj.get(variable, sp.Integer(0))
        lhs = _in_atoms(net, chain, values)
        for number, (form, (dX, grads)) in enumerate(textbook):
            mine = dX if pname is None else grads.get(block.position, {}).get(pname)
            value = mine[r, c] if mine is not None else sp.Integer(0)
            by_form[number].append(judged(name, kind, form, chain, lhs, value))
            if oracle and number == 0:
                d = _diff(sp.Add(*[g * y for g, y, free in terms if variable in free]), variable)
                by_form[0].append(judged(name, kind, "oracle", chain, lhs, d.xreplace(rule)))
    return [check for checks in by_form for check in checks]


def _diff(expr: sp.Expr, variable: sp.Symbol) -> sp.Expr:
    """d expr / d variable: by SymEngine where expr is algebraic (a norm's sums, squares and powers, which SymPy
    differentiates about ten times slower), by sympy.diff where it applies an activation (whose derivative rule
    is the table's). Either is a differentiation of the composed expression, independent of the chain rule."""
    if se is None or expr.atoms(sp.Function) or expr.has(sp.Max):
        return sp.diff(expr, variable)
    return sp.sympify(se.diff(se.sympify(expr), se.Symbol(variable.name)))


def _in_atoms(net: LayeredNetwork, expr, values: dict) -> sp.Expr:
    return sp.sympify(expr).xreplace(values).xreplace(net.relations)


def _param_name(s: sp.Symbol) -> str:
    """w3_1_0 -> w3[1,0], gamma2_1 -> gamma2[1]."""
    head, *idx = s.name.split("_")
    return f"{head}[{','.join(idx)}]"


def _witness(net: LayeredNetwork, lhs, rhs, rng, G: sp.Matrix, tries: int = 6) -> Counterexample | None:
    """A point of the real network (atoms computed forward) and of the upstream gradient G where lhs != rhs."""
    lhs, rhs = sp.sympify(lhs), sp.sympify(rhs)
    for _ in range(tries):
        free = net.free_values(rng)
        free.update({g: sp.Rational(int(rng.integers(-12, 13)), 8) for g in G})
        vals = net.forward_values(free)
        try:
            lf, rf = float(sp.N(lhs.xreplace(vals), 30)), float(sp.N(rhs.xreplace(vals), 30))
        except TypeError:
            continue
        if abs(lf - rf) > 1e-12 * (1 + abs(lf) + abs(rf)):
            used = set()  # what the identity is about: the layer's input, its parameters, G and its own nodes' parents
            for side in (lhs, rhs):
                used |= side.xreplace(net.definitions).free_symbols - net.atoms
            return Counterexample({str(k): float(vals[k]) for k in sorted(used, key=str)}, lf, rf)
    return None
