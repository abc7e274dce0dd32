"""The scalar network: every weight, bias, input, target and neuron as a SymPy symbol.

Layers are numbered as in the sources: layer 0 is the input, layer L the output.
Neuron indices are 0-based, as in the 2-2-2 note (w^{(l)}_{jk}: from neuron k of
layer l-1 to neuron j of layer l). Each neuron's activation a^{(l)}_j is an atom
(a fresh symbol standing for sigma(z^{(l)}_j)), except where sigma is a polynomial
(identity): there a = sigma(z) exactly, and `reduction` gives that value to every
proof. The composed form, with sigma applied to its argument all the way down, is
built separately for the sympy.diff oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import mpmath
import sympy as sp

from derive.tables import activations
from derive.tables.costs import COSTS
from derive.tables.layers import DENSE
from derive.spec import Spec, load_spec


@dataclass(frozen=True)
class Param:
    """One scalar parameter and where it sits in its matrix (spec layout)."""

    symbol: sp.Symbol
    layer: int
    kind: str  # "w" or "b"
    j: int  # neuron of layer l
    k: int | None  # neuron of layer l-1; n_{l-1} for the augmented bias weight; None for b
    matrix: str  # "W1", "b1", ...
    index: tuple[int, int]  # position in that matrix
    is_bias: bool

    @property
    def name(self) -> str:
        if self.kind == "b":
            return f"b{self.layer}[{self.j}]"
        return f"w{self.layer}[{self.j},{self.k}]"


class Network:
    """A fully connected network built out of scalars for one spec."""

    def __init__(self, spec: Spec | str):
        spec = load_spec(spec)
        self.spec = spec
        n, L, E = spec.sizes, spec.depth, spec.examples
        self.sizes, self.L, self.E = n, L, E
        self.acts = [None] + [activations.get(name) for name in spec.activation]
        self.layers = [None] + [DENSE] * L  # a spec's layers are all dense today
        sfx = (lambda e: "") if E == 1 else (lambda e: f"_e{e}")

        # parameters ------------------------------------------------------
        self.params: list[Param] = []
        self.w: list[dict[tuple[int, int], sp.Symbol]] = [{}]
        self.b: list[list[sp.Symbol]] = [[]]
        for l in range(1, L + 1):
            wl: dict[tuple[int, int], sp.Symbol] = {}
            layer = self.layers[l]
            for j in range(n[l]):
                for k in range(layer.fan_in(n[l - 1], spec.bias)):
                    wl[j, k] = sp.Symbol(f"w{l}_{j}_{k}")
            self.w.append(wl)
            self.b.append([sp.Symbol(f"b{l}_{j}") for j in range(n[l])] if spec.bias == "separate" else [])
            at = {jk: layer.weight_index(*jk, spec.convention) for jk in wl}
            for j, k in sorted(wl, key=at.get):  # in the order the parameter matrix stores them
                self.params.append(Param(wl[j, k], l, "w", j, k, f"W{l}", at[j, k], k == n[l - 1]))
            for j, sym in enumerate(self.b[l]):
                self.params.append(Param(sym, l, "b", j, None, f"b{l}", layer.bias_index(j, spec.convention), True))
        self.param_by_symbol = {p.symbol: p for p in self.params}
        self.param_at = {(p.matrix, p.index): p for p in self.params}  # ("W2", (j, k)) -> its Param

        # neurons, one set per example -------------------------------------
        self.y = [[sp.Symbol(f"y_{j}{sfx(e)}") for j in range(n[L])] for e in range(E)]
        self.a = [[[sp.Symbol(f"a{l}_{j}{sfx(e)}") for j in range(n[l])] for l in range(L + 1)] for e in range(E)]
        self.zsym = [[[sp.Symbol(f"z{l}_{j}{sfx(e)}") for j in range(n[l])] for l in range(L + 1)] for e in range(E)]
        self.z = [[[]] + [[self._z_expr(e, l, j) for j in range(n[l])] for l in range(1, L + 1)] for e in range(E)]
        self.ap: list[list[list[sp.Symbol]]] = [
            [[sp.Symbol(f"ap{l}_{j}{sfx(e)}") for j in range(n[l])] for l in range(L + 1)] for e in range(E)
        ]

        # cost --------------------------------------------------------------
        self.cost = COSTS[spec.cost]
        self.cost_example = [self.cost.definition(self.a[e][L], self.y[e]) for e in range(E)]
        total = sp.Add(*self.cost_example)
        self.scale = sp.Rational(1, E) if spec.batch == "mean" else sp.Integer(1)
        self.C = self.scale * total if E > 1 else total

    # ------------------------------------------------------------------
    def _z_expr(self, e: int, l: int, j: int) -> sp.Expr:
        """z^{(l)}_j of example e, by the layer's own forward definition."""
        weights = [self.w[l][j, k] for k in range(self.layers[l].fan_in(self.sizes[l - 1], self.spec.bias))]
        bias = self.b[l][j] if self.b[l] else None
        return self.layers[l].z(weights, self.a[e][l - 1], bias)

    @property
    def inputs(self) -> list[list[sp.Symbol]]:
        return [self.a[e][0] for e in range(self.E)]

    def layer_params(self, l: int) -> list[Param]:
        return [p for p in self.params if p.layer == l]

    @cached_property
    def reduction(self) -> dict:
        """a^{(l)}_j -> its value in the atoms below, for each neuron whose activation is a polynomial.

        An identity neuron's a equals its z exactly, so it is no atom of its own: it stays a
        node of the graph (the chain rule differentiates with respect to it), and every proof
        replaces it by sigma(z), written in the atoms of the layers below.
        """
        out: dict = {}
        for e in range(self.E):
            for l in range(1, self.L + 1):
                act = self.acts[l]
                if act.polynomial:
                    for j in range(self.sizes[l]):
                        out[self.a[e][l][j]] = act.definition(self.z[e][l][j].xreplace(out))
        return out

    # -- local derivatives: sympy.diff of one node's own expression ----------
    def activation_of(self, e: int, l: int, j: int, zs) -> sp.Expr:
        """a^{(l)}_j as the activation function applied to the given z's of its layer."""
        act = self.acts[l]
        if act.elementwise:
            return act.function(zs[j])
        return act.function(j, *zs)

    def atom_rule(self, e: int, l: int, zs) -> dict:
        """Replace sigma(z) and sigma'(z) applied to the layer's z's by the layer's atoms."""
        act = self.acts[l]
        rule = {}
        for j, zj in enumerate(zs):
            if act.elementwise:
                rule[act.function(zj)] = self.a[e][l][j]
                if act.output_form is None:
                    rule[act.prime_function(zj)] = self.ap[e][l][j]
            else:
                rule[act.function(j, *zs)] = self.a[e][l][j]
        return rule

    def da_dz(self, e: int, l: int, m: int, j: int) -> sp.Expr:
        """d a^{(l)}_m / d z^{(l)}_j by sympy.diff, written in the atoms."""
        zs = self.zsym[e][l]
        d = sp.diff(self.activation_of(e, l, m, zs), zs[j])
        return d.xreplace(self.atom_rule(e, l, zs))

    @cached_property
    def sigma_prime(self) -> list[list[list[sp.Expr]]]:
        """sigma'(z^{(l)}_j) in atoms (elementwise layers; softmax layers use da_dz)."""
        out = []
        for e in range(self.E):
            per_layer = [[]]
            for l in range(1, self.L + 1):
                if self.acts[l].elementwise:
                    per_layer.append([self.da_dz(e, l, j, j) for j in range(self.sizes[l])])
                else:
                    per_layer.append([])
            out.append(per_layer)
        return out

    # -- the composed network, for the sympy.diff oracle ------------------
    @cached_property
    def composed(self) -> tuple[sp.Expr, dict]:
        """C with every activation applied to its composed argument, and the atom rule.

        The rule maps each composed sigma(...) (and sigma'(...)) to its atom; identical
        arguments give identical atoms, so replacing them is sound.
        """
        rule: dict = {}
        outputs = []
        for e in range(self.E):
            values = {self.a[e][0][k]: self.a[e][0][k] for k in range(self.sizes[0])}
            for l in range(1, self.L + 1):
                zs = [z.xreplace(values) for z in self.z[e][l]]
                for j in range(self.sizes[l]):
                    values[self.a[e][l][j]] = self.activation_of(e, l, j, zs)
                rule.update(self.atom_rule(e, l, zs))
            outputs.append(values)
        total = sp.Add(*[self.cost_example[e].xreplace(outputs[e]) for e in range(self.E)])
        C = self.scale * total if self.E > 1 else total
        return C, rule

    def composed_for(self, s: sp.Symbol) -> tuple[sp.Expr, dict, dict]:
        """C composed along every neuron that depends on s; the atom rule; the held parts.

        What does not depend on s is held as a symbol: a neuron that does not depend on
        s stays an atom, and in the pre-activation of one that does, the sum of the
        terms free of s becomes one symbol r (returned with its value). The derivative
        with respect to s of anything free of s is 0 however it is written, so
        sympy.diff of this expression equals sympy.diff of the fully composed C; only
        the path from s to C is composed, which is what keeps the oracle fast.
        """
        rule: dict = {}
        held: dict = {}
        total = []
        sfx = "" if self.E == 1 else "_e{}"
        param = self.param_by_symbol.get(s)
        for e in range(self.E):
            values: dict = {}
            for l in range(1, self.L + 1):
                if param is not None and l < param.layer:
                    continue  # nothing before the parameter's layer depends on it
                own = param is not None and l == param.layer and self.acts[l].elementwise
                zs = []
                for j, z in enumerate(self.z[e][l]):
                    if own and j != param.j:
                        zs.append(self.zsym[e][l][j])  # another neuron of the parameter's layer: free of it
                        continue
                    z = z.xreplace(values)
                    free = [t for t in sp.Add.make_args(z) if not t.has(s)]
                    if free:
                        r = sp.Symbol(f"_held{l}_{j}" + sfx.format(e))
                        held[r] = sp.Add(*free)
                        z = sp.Add(*[t for t in sp.Add.make_args(z) if t.has(s)]) + r
                    zs.append(z)
                deps = [z.has(s) for z in zs]
                if not self.acts[l].elementwise and any(deps):
                    deps = [True] * len(zs)  # softmax couples the whole layer
                for j in range(self.sizes[l]):
                    if deps[j]:
                        values[self.a[e][l][j]] = self.activation_of(e, l, j, zs)
                if any(deps):
                    rule.update({k: v for k, v in self.atom_rule(e, l, zs).items() if k.has(s)})
            total.append(self.cost_example[e].xreplace(values))
        C = sp.Add(*total)
        return (self.scale * C if self.E > 1 else C), rule, held

    # -- numbers, for counterexamples -------------------------------------
    def free_values(self, rng, dps: int = 30) -> dict:
        """Random rational values for weights, biases, inputs and targets."""
        def r(lo, hi):
            return sp.Rational(int(rng.integers(int(lo * 8), int(hi * 8) + 1)), 8)

        vals = {p.symbol: r(-1.5, 1.5) for p in self.params}
        for e in range(self.E):
            for s in self.a[e][0]:
                vals[s] = r(-2, 2)
            ys = self.y[e]
            if self.cost.one_hot:
                hot = int(rng.integers(0, len(ys)))
                for j, s in enumerate(ys):
                    vals[s] = sp.Integer(int(j == hot))
            else:
                for s in ys:
                    vals[s] = sp.Rational(int(rng.integers(1, 8)), 8)
        return vals

    def on_kink(self, vals: dict) -> bool:
        """Some pre-activation in vals lies on (or within rounding of) a kink of its layer's activation.

        There sigma' has no value (SymPy's Heaviside(0) = 1/2 would invent one), so no witness may be
        drawn at such a point.
        """
        for l in range(1, self.L + 1):
            ks = self.acts[l].kinks if self.acts[l].elementwise else ()
            for k in ks or ():
                k = float(k)
                for e in range(self.E):
                    if any(abs(float(vals[s]) - k) <= 1e-9 * (1 + abs(k)) for s in self.zsym[e][l]):
                        return True
        return False

    def forward_values(self, free: dict, dps: int = 30) -> dict:
        """Values of every atom (a, sigma') from values of the free symbols, at dps digits."""
        vals = dict(free)
        with mpmath.workdps(dps):
            for e in range(self.E):
                for l in range(1, self.L + 1):
                    zs = [sp.Float(z.xreplace(vals), dps) for z in self.z[e][l]]
                    for j in range(self.sizes[l]):
                        vals[self.zsym[e][l][j]] = zs[j]
                    # neuron by neuron, not through atom_rule: on numbers sigma(z) may evaluate at once
                    # (ReLU of a negative z is 0), and two neurons would then share one key
                    act = self.acts[l]
                    for j in range(self.sizes[l]):
                        vals[self.a[e][l][j]] = sp.Float(self.activation_of(e, l, j, zs).evalf(dps), dps)
                        if act.elementwise and act.output_form is None:
                            vals[self.ap[e][l][j]] = sp.Float(act.prime_function(zs[j]).evalf(dps), dps)
        return vals


def build_network(spec: Spec | str) -> Network:
    return Network(spec)
