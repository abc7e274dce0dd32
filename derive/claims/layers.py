"""The truth for claims about a layer-list spec: its scalar graph, each layer's upstream gradient, its points.

A layer-list spec (dense, batch norm, layer norm, residual and activation layers; derive.spec
LayeredSpec) is built once as its scalar graph (derive.graph.LayeredNetwork). A claim names the
graph's quantities by layer number (its position in the list, a residual's inner layers right
after it): x2 (the layer's input), y2 (its output), mu2, var2, s2 = (var2 + eps2)^(-1/2), xhat2,
gamma2, beta2 for a norm layer, W1, b1, z1, a1, delta1 for a dense one.

The truth of dC/dQ for a quantity Q of layer l is the chain rule over layer l's own nodes from
its upstream gradient G = dC/dy{l}, held as free symbols g{l}_e{e}_{j} (the lemma
derive.proofs.layered proves). A claim equal to it as a polynomial in the atoms (parameters,
inputs, σ(z), σ'(z), s) and G holds for every upstream gradient, so also for this network's:
PROVEN. A claim that is not is evaluated at points of the real network, where G is this
network's dC/dy (every layer's G is read off the layer above it, down from the cost): a point
where the sides differ is the witness. Only a claim that no point tells apart goes on to the
exact check with G replaced by its true value (expensive: it reaches the cost).

Arrays are laid out as the spec's convention lays them: `row` has one row per example (x2 is
B×n, a batch norm's statistics and gamma2, beta2 are 1×n, a layer norm's are B×1), `column`
one column per example (the transposes). Parameters are in the spec's own layout.
"""

from __future__ import annotations

import math
from functools import cached_property

import mpmath
import numpy as np
import sympy as sp

from derive.claims import layers_spatial as sv
from derive.claims.tree import ClaimError, Invalid
from derive.claims.truth import Point, Undefined  # one point of the network, and a value it has none of
from derive.graph import LayeredNetwork
from derive.proofs.identity import is_identity
from derive.proofs.layered import _accumulate
from derive.spec import LayeredSpec
from derive.tables import activations
from derive.tables.layers import KINDS

NORMS = ("batchnorm", "layernorm")
# the names of the kinds' parameters (derive.tables.layers and derive.tables.spatial, Kind.params)
PARAMS = ("W", "b", "gamma", "beta", "Wq", "Wk", "Wv", "Wo", "Wxh", "Whh")
# a layer's values, one per example or feature: its input, its output and what each kind names (KINDS' claim_names)
ARRAYS = tuple(dict.fromkeys(("x", "y") + tuple(n for k in KINDS.values() for n in k.claim_names if n not in PARAMS)))
CONSTANTS = ("B", "eps", "n", "dk")  # the batch's size, a norm layer's eps, a layer's width, attention's d_k
MAX_EXPANSION = 200_000  # terms an exact check with the true upstream gradient may expand to


def upstream_symbols(position: int, rows: int, cols: int) -> sp.Matrix:
    """dC/dy of a layer as free symbols g{l}_e{e}_{j}, examples by rows (the names derive.proofs.layered uses)."""
    return sp.Matrix(rows, cols, lambda e, j: sp.Symbol(f"g{position}_e{e}_{j}"))


class LayeredContext:
    """One layer-list network and everything a claim about it is checked against."""

    def __init__(self, spec: LayeredSpec):
        self.spec = spec
        self.net = net = LayeredNetwork(spec)
        self.E = spec.examples
        self.row = spec.convention == "row"
        self.blocks = {b.position: b for b in spec.blocks}
        self.L = max(self.blocks)
        self.sizes = (spec.inputs,) + tuple(self.blocks[p].width for p in range(1, self.L + 1))
        self.rule = net.relations
        self.G = {p: upstream_symbols(p, *net.state[p][2].shape) for p in self.blocks}
        self.g_symbols = {g: p for p, M in self.G.items() for g in M}
        self.reader: dict[int, tuple[str, int | None]] = {}  # who reads a layer's output: ("next", q), ("in", r), ("cost", None)

        def walk(blocks, parent):
            for i, b in enumerate(blocks):
                if i + 1 < len(blocks):
                    self.reader[b.position] = ("next", blocks[i + 1].position)
                else:
                    self.reader[b.position] = ("in", parent) if parent is not None else ("cost", None)
                walk(b.inner, b.position)
        walk(spec.layers, None)
        self._adj: dict = {}
        self._compiled: dict = {}
        self._points: list[Point] = []
        self._seed = -1
        self._zero: dict = {}

    # -- the graph, by layer ----------------------------------------------------------
    def block(self, position: int, kind: str, span=None):
        if position not in self.blocks:
            raise ClaimError(f"{kind}{position}: there is no layer {position}; the layers are 1 to {self.L}", span)
        return self.blocks[position]

    def lay(self, M: sp.Matrix) -> sp.Matrix:
        """An examples × features array in the spec's layout (transposed in the column convention)."""
        return M if self.row else M.T

    def unlay(self, M: sp.Matrix) -> sp.Matrix:
        return M if self.row else M.T

    def rowwise(self, kind: str, position: int, span=None) -> sp.Matrix:
        """A named array of a layer as examples × features (statistics 1×n or B×1), or a parameter as rows × features."""
        b = self.block(position, kind, span)
        X, saved, Y = self.net.state[position]
        if kind in PARAMS:
            P = self.net.P[position]
            if kind not in P:
                raise ClaimError(f"{kind}{position}: layer {position} ({_what(b)}) has no {kind}", span)
            return P[kind]
        base, step = sv.split_step(kind)
        stepped = b.kind in sv.STEPPED and base in sv.STEP_NAMES
        if base not in _names(b) or (step is not None and not stepped) or (step is None and stepped
                                                                            and base not in ("x", "y")):
            why = f" with its step, {base}{position}t1" if stepped and step is None else ""
            raise ClaimError(f"{sv.step_text(kind, position)}: layer {position} is {_what(b)}; its names are "
                             f"{_have(b)}{why}", span)
        if isinstance(step, tuple):
            raise ClaimError(f"{sv.step_text(kind, position)}: the step {step[0]} is bound by sum_steps(...); a "
                             f"left-hand side names one step, {base}{position}t2", span)
        if step is not None:
            return sv.step_array(self, b, base, step, span)
        if b.kind == "maxpool2d" and kind == "mask":
            return sv.pool_mask(self, b)
        if kind == "x":
            return X
        if kind == "delta":  # dC/dz, by the chain rule from G
            adj = self.adjoint(position)
            D = saved["Z"].applyfunc(lambda s: adj.get(s, sp.Integer(0)))
            return sv.conv_flat(self, b, D) if b.kind in sv.CONV else D
        if b.kind in sv.CONV and kind in ("z", "a"):
            return sv.conv_flat(self, b, saved[kind.upper()])
        if (b.kind, kind) in sv.SAVED:
            return saved[sv.SAVED[(b.kind, kind)]]
        for key in (kind, kind.upper()):  # what the kind's forward pass saved under the name (dense's Z and A)
            if key in saved:
                return saved[key]
        if kind in ("y", "a"):  # the layer's output
            return Y
        raise ClaimError(f"{kind}{position}: layer {position} is {_what(b)}; its names are {_have(b)}", span)

    def view(self, kind: str, position: int, M: sp.Matrix, example: int | None) -> sp.Matrix:
        """An array as a claim sees it: in the spec's layout, or one example's, rows the positions (attention; None:
        the batch's, laid out)."""
        b = self.blocks[position]
        if b.kind in sv.SEQUENCE and example is not None:
            return sv.sequence_view(self, b, kind, M, example)
        return self.lay(M)

    def matrix(self, kind: str, position: int | None, span=None, example: int | None = 0):
        """A named quantity as a claim sees it: arrays in the spec's layout, parameters in their own."""
        if kind == "B":
            return sp.Integer(self.E)
        if kind == "eps":
            return self.eps(position, span)
        if kind == "n":
            self.block(position, "n", span)
            return sp.Integer(self.sizes[position])
        if kind == "dk":
            b = self.block(position, "dk", span)
            if b.kind not in sv.SEQUENCE:
                raise ClaimError(f"dk{position}: layer {position} is {_what(b)}; d_k is an attention layer's", span)
            return sp.Integer(b.head_dim or b.shape_in[1])
        if kind == "X":
            return self.lay(self.net.X)
        if kind == "T":
            return self.lay(self.net.Y)
        if kind in PARAMS:
            self.rowwise(kind, position, span)
            return self.net.params[position][kind]
        return self.view(kind, position, self.rowwise(kind, position, span), example)

    def eps(self, position, span=None) -> sp.Rational:
        norms = [b for b in self.spec.blocks if b.kind in NORMS]
        if position is None:
            values = {b.eps for b in norms}
            if len(values) != 1:
                raise ClaimError("eps: " + ("no layer is a batch or layer norm" if not norms else
                                           "the norm layers have different eps: name one, " +
                                           ", ".join(f"eps{b.position}" for b in norms)), span)
            e = values.pop()
        else:
            b = self.block(position, "eps", span)
            if b.kind not in NORMS:
                raise ClaimError(f"eps{position}: layer {position} is {_what(b)}, not a batch or layer norm", span)
            e = b.eps
        return sp.Rational(e.numerator, e.denominator)

    def scalar(self, kind: str, position, index: tuple, example: int, span=None):
        """One entry: w{l}[j,k] (to unit j from unit k), or an array's entry j (of the claim's example for
        per-example arrays), or [r,c] of the array as laid out."""
        if kind == "w":
            W = self.net.P[position].get("W") if position in self.blocks else None
            if W is None or len(index) != 2:
                raise ClaimError(f"w{position}[j,k] is a dense layer's weight to unit j from unit k", span)
            j, k = index
            if not (0 <= j < W.cols and 0 <= k < W.rows):
                raise ClaimError(f"w{position}[{j},{k}]: j runs from 0 to {W.cols - 1}, k from 0 to {W.rows - 1}", span)
            return W[k, j]
        M = self.matrix(kind, position, span, example)
        if not isinstance(M, sp.MatrixBase):
            raise ClaimError(f"{kind} is a number and has no entries", span)
        if len(index) == 2:
            r, c = index
        elif 1 in M.shape:
            r, c = (0, index[0]) if M.rows == 1 else (index[0], 0)
        elif kind in PARAMS or self.blocks.get(position) is not None and self.blocks[position].kind in sv.SEQUENCE:
            raise ClaimError(f"{kind}{position} takes two indices", span)
        else:  # one feature of the claim's example
            r, c = (example, index[0]) if self.row else (index[0], example)
        if not (0 <= r < M.rows and 0 <= c < M.cols):
            raise ClaimError(f"no entry {list(index)} in {kind}{position if position is not None else ''}, which is "
                             f"{M.rows}×{M.cols}", span)
        return M[r, c]

    # -- the chain rule ------------------------------------------------------------------
    def adjoint(self, position: int) -> dict:
        """dC/d(every node and parameter of layer l, its inner layers', and its input through it), from G_l."""
        if position not in self._adj:
            inside = {b.position for b in self.blocks[position].flat()}
            nodes = [s for s in self.net.order if self.net.position_of[s] in inside]
            Y, G = self.net.state[position][2], self.G[position]
            seeds: dict = {}
            for e in range(Y.rows):
                for j in range(Y.cols):
                    seeds[Y[e, j]] = seeds.get(Y[e, j], 0) + G[e, j]
            self._adj[position] = _accumulate(self.net, seeds, nodes)
        return self._adj[position]

    def gradient(self, kind: str, position: int, span=None, example: int | None = 0) -> sp.Matrix:
        """dC/dQ of a named quantity of layer l, in Q's layout: the chain rule from G_l (dC/dy{l} itself is G_l)."""
        if kind in CONSTANTS + ("X", "T"):
            raise ClaimError(f"dC/d{kind}: a gradient is of a layer's named quantity (x2, y2, W1, gamma2, ...)", span)
        if kind == "delta":
            raise ClaimError("delta is already a gradient, dC/dz", span)
        b = self.block(position, kind, span)
        base, step = sv.split_step(kind)
        if base == "y" and isinstance(step, int) and b.kind in sv.STEPPED:  # what reaches h_t from above
            if not 1 <= step <= sv.steps(b):
                raise ClaimError(f"dC/dy{position}t{step}: layer {position} runs over steps 1 to {sv.steps(b)}", span)
            return self.lay(sv.step_upstream(self, b, step))
        M = self.rowwise(kind, position, span)
        if kind in PARAMS:  # the same symbols in the spec's own layout
            M = self.net.params[position][kind]
        if base == "h" and step == 0:
            raise ClaimError(f"dC/dh{position}t0: h0 = 0 is not a value of the network", span)
        adj = self.adjoint(position)  # y's own is G: its seed
        value = M.applyfunc(lambda s: adj.get(s, sp.Integer(0)))
        if b.kind in sv.SEQUENCE and kind == "a":  # ∂C/∂P as O = P V reads it, also where a causal mask put a 0
            value = self._softmax_gradient(b, M, value)
        return value if kind in PARAMS else self.view(kind, position, value, example)

    def _softmax_gradient(self, block, P: sp.Matrix, value: sp.Matrix) -> sp.Matrix:
        """An attention layer's ∂C/∂P: the chain rule's, and at a masked entry (a constant 0, which nothing
        differentiates) Σ_k ∂C/∂O[i,k] V[j,k], the derivative of O = P V by that entry."""
        saved, T = self.net.state[block.position][1], block.shape_in[0]
        adj = self.adjoint(block.position)
        dO = saved["O"].applyfunc(lambda s: adj.get(s, sp.Integer(0)))
        V = saved["V"]
        out = value.copy()
        for r in range(P.rows):
            g = r // T
            for j in range(P.cols):
                if P[r, j] == 0:
                    out[r, j] = sp.Add(*[dO[r, k] * V[g * T + j, k] for k in range(V.cols)])
        return out

    def upstream_value(self, position: int) -> sp.Matrix:
        """G_l in what reads the layer's output: the next layer's G, the enclosing residual's, or the cost."""
        how, other = self.reader[position]
        Y = self.net.state[position][2]
        if how == "cost":
            return Y.applyfunc(lambda o: sp.diff(self.net.C, o))
        adj = self.adjoint(other)
        return Y.applyfunc(lambda s: adj.get(s, sp.Integer(0)))

    def chain_to(self, position: int, top: int) -> list[int] | None:
        """The layers whose output is read on the way from layer l's output up to layer top's, or None."""
        path = [position]
        while path[-1] != top:
            how, other = self.reader[path[-1]]
            if how == "cost":
                return None
            path.append(other)
        return path

    def relate(self, *exprs) -> dict:
        """The upstream gradients the expressions name, each written through the highest of them (the one every
        other reaches by following who reads its output): {G symbol: value in that layer's G}. Empty if none is."""
        named = set()
        for x in exprs:
            free = sp.Matrix([x]).free_symbols if isinstance(x, sp.MatrixBase) else sp.sympify(x).free_symbols
            named |= {self.g_symbols[g] for g in free if g in self.g_symbols}
        top = next((t for t in named if all(self.chain_to(p, t) for p in named)), None)
        if top is None or len(named) < 2:
            return {}
        out: dict = {}
        for p in named - {top}:
            path = self.chain_to(p, top)
            for q in reversed(path[:-1]):  # from just below top down to p
                if self.G[q][0] in out:
                    continue
                for g, v in zip(self.G[q], self.upstream_value(q)):
                    out[g] = v.xreplace(out)
        return out

    def true_upstream(self, symbols) -> dict:
        """The G symbols among `symbols` (and those they are read from) -> their true values, in nodes, atoms and
        leaves: each layer's G from the layer that reads its output, down from the cost."""
        out: dict = {}

        def value(p: int) -> None:
            if self.G[p][0] in out:
                return
            M = self.upstream_value(p)
            how, other = self.reader[p]
            if how != "cost":
                value(other)
                M = M.xreplace(out)
            out.update(zip(self.G[p], M))
        for p in sorted({self.g_symbols[g] for g in symbols if g in self.g_symbols}):
            value(p)
        return out

    # -- exactness -----------------------------------------------------------------------
    @cached_property
    def within(self) -> dict:
        """Each node that is not an atom -> its value within its own layer: in the layer's input, parameters and
        atoms, but for a norm layer in its centred inputs and mean (kept, with `centred`)."""
        keep = set()
        for b in self.spec.blocks:
            if b.kind in NORMS:
                saved = self.net.state[b.position][1]
                keep |= set(saved["xc"]) | set(saved["mu"])
        out: dict = {}
        for s in self.net.order:
            if s in self.net.atoms or s in keep:
                continue
            p = self.net.position_of[s]
            d = self.net.definitions[s]
            out[s] = d.xreplace({k: v for k, v in out.items() if k in d.free_symbols
                                 and self.net.position_of[k] == p})
        return out

    @cached_property
    def centred(self) -> dict:
        """A norm layer's inputs as centred value plus mean, x = xc + mu, and in each group the last centred value
        as minus the others' sum: a linear change of variables, so the remaining symbols are independent and an
        identity in them is an identity in the inputs (the centred values of a group sum to 0)."""
        out: dict = {}
        for b in self.spec.blocks:
            if b.kind not in NORMS:
                continue
            X, saved, _ = self.net.state[b.position]
            XC, MU = saved["xc"], saved["mu"]
            batch = b.kind == "batchnorm"
            groups = [list(XC[:, j]) for j in range(XC.cols)] if batch else [list(XC[e, :]) for e in range(XC.rows)]
            for group in groups:
                if len(group) > 1:
                    out[group[-1]] = -sp.Add(*group[:-1])
            for e in range(X.rows):
                for j in range(X.cols):
                    if X[e, j] not in out:
                        out[X[e, j]] = out.get(XC[e, j], XC[e, j]) + (MU[0, j] if batch else MU[e, 0])
        return out

    def lowered(self, expr, full: bool = False):
        """expr with nodes replaced by their values within their layer, a norm layer's in its centred inputs (cheap
        and, for a claim about one layer, complete), or all the way down to the leaves."""
        expr = sp.sympify(expr)
        if full:
            return self.net.reduce(expr)
        previous = None
        while previous != expr:  # a node's value may name another node of its layer only through atoms: a few rounds
            # a norm layer's input first: it may be a node of the layer below, which `within` would expand
            previous, expr = expr, expr.xreplace(self.centred).xreplace(self.within)
        return expr.xreplace(self.rule)

    def identical(self, a, b, level: str = "layer") -> bool:
        """a == b exactly: "layer", with the upstream gradients free and nodes of other layers kept as symbols;
        "leaves", all the way down to the leaves; "true", each upstream gradient replaced by its true value."""
        if level == "true":
            a, b = sp.sympify(a), sp.sympify(b)
            g = self.true_upstream(a.free_symbols | b.free_symbols)
            a, b = self.lowered(a.xreplace(g), True), self.lowered(b.xreplace(g), True)
            from derive.claims.cost import expanded_terms

            if expanded_terms(a - b, MAX_EXPANSION) > MAX_EXPANSION:
                return False
            return is_identity(a, b)
        full = level == "leaves"
        if is_identity(self.lowered(a, full), self.lowered(b, full)):
            return True
        related = self.relate(a, b)  # dC/dy4 and dC/dx5 inside it: both through the highest upstream gradient
        if not related:
            return False
        a, b = sp.sympify(a).xreplace(related), sp.sympify(b).xreplace(related)
        return is_identity(self.lowered(a, full), self.lowered(b, full))

    def is_zero(self, value) -> bool:
        value = sp.sympify(value)
        if value.is_number:
            return value == 0
        if value not in self._zero:
            self._zero[value] = self.identical(value, sp.Integer(0))
        return self._zero[value]

    # -- activations and square roots ------------------------------------------------------
    @cached_property
    def activations(self) -> dict:
        """Each pre-activation symbol -> (the activation's name, its output atom), for sigma(z) and sigma'(z)."""
        out = {}
        for b in self.spec.blocks:
            X, saved, Y = self.net.state[b.position]
            if b.kind in ("dense", "activation"):
                pairs = zip(saved["Z"] if b.kind == "dense" else X, Y)
            elif b.kind in sv.CONV:
                pairs = zip(saved["Z"], saved["A"])
            elif b.kind in sv.STEPPED:
                pairs = ((z, a) for Z, A in zip(saved["Zs"], saved["Hs"]) for z, a in zip(Z, A))
            else:
                continue
            act = b.nonlinearity if b.kind in sv.STEPPED else b.activation
            for z, a in pairs:
                out[z] = (act, a)
        return out

    def activate(self, z, name: str | None, prime: bool, span=None):
        hit = self.activations.get(z)
        if hit is None:
            raise ClaimError("an activation applies to a layer's pre-activation (sigma(z1), relu_prime(z1), or an "
                             "activation layer's input x3): the checker knows it only as that layer's output", span)
        act, a = hit
        if name is not None and name != act:
            raise ClaimError(f"that layer's activation is {act}, not {name}", span)
        if not prime:
            return a
        if not activations.get(act).elementwise:
            raise ClaimError(f"{act}'s derivative is a Jacobian, not an elementwise {act}_prime", span)
        return self.net.prime_atom(act, z, a)

    @cached_property
    def roots(self) -> dict:
        """var + eps (as nodes, and as the variance's value within its layer) -> 1/s: what sqrt(var + eps) is."""
        out = {}
        for b in self.spec.blocks:
            if b.kind not in NORMS:
                continue
            saved = self.net.state[b.position][1]
            eps = sp.Rational(b.eps.numerator, b.eps.denominator)
            for v, s in zip(saved["var"], saved["s"]):
                out[sp.expand(v + eps)] = 1 / s
                out[sp.expand(self.lowered(v) + eps)] = 1 / s
        return out

    def sqrt(self, x, span=None):
        if isinstance(x, sp.Rational) and x > 0:  # attention's √d_k: a number, exact
            return sp.sqrt(x)
        hit = self.roots.get(sp.expand(x))
        if hit is None:
            hit = self.roots.get(sp.expand(self.lowered(x)))
        if hit is None:
            raise ClaimError("sqrt applies to a norm layer's variance plus its eps, sqrt(var2 + eps2), or to a positive "
                             "number (attention's sqrt(dk1)): the checker knows the square root of a variance only as "
                             "that layer's s = 1/sqrt(var + eps), which keeps the proof exact", span)
        return hit

    # -- numbers -------------------------------------------------------------------------
    def point(self, i: int) -> Point:
        while len(self._points) <= i:
            self._seed += 1
            if self._seed > 64 * (i + 1):  # pragma: no cover - every point tried lay on a kink
                raise ArithmeticError(f"{self.spec.name}: no point found off the activations' kinks")
            rng = np.random.default_rng(2000 + self._seed)
            free = self.net.free_values(rng)
            vals = self.net.forward_values(free)
            if self._on_kink(vals):
                continue
            for g, v in self.true_upstream_numbers(vals).items():
                vals[g] = v
            self._points.append(Point(free, vals))
        return self._points[i]

    def _on_kink(self, vals: dict) -> bool:
        for z, (name, _) in self.activations.items():
            for k in activations.get(name).kinks or ():
                if abs(float(vals[z]) - float(k)) <= 1e-9 * (1 + abs(float(k))):
                    return True
        return False

    def true_upstream_numbers(self, vals: dict) -> dict:
        """Each G symbol's value at a point: the cost's gradient, then each layer's from the one that reads it."""
        out: dict = {}

        def value(p: int) -> None:
            how, other = self.reader[p]
            if how != "cost" and self.G[other][0] not in out:
                value(other)
            args, fn = self._upstream_function(p)
            with mpmath.workdps(30):
                got = fn(*[mpmath.mpf(str(out[a] if a in out else vals[a])) for a in args])
            out.update((g, sp.Float(str(v), 30)) for g, v in zip(self.G[p], got))
        for p in sorted(self.blocks):
            if self.G[p][0] not in out:
                value(p)
        return out

    def _upstream_function(self, p: int):
        """upstream_value(p) compiled once (mpmath, 30 digits): a point's gradients without substituting into trees."""
        if p not in self._compiled:
            M = self.upstream_value(p)
            args = sorted(sp.Matrix([M]).free_symbols, key=str)
            self._compiled[p] = (args, sp.lambdify(args, list(M), modules="mpmath"))
        return self._compiled[p]

    def number(self, value, pt: Point, free_g: dict | None = None):
        """A value at a point (a float, or a float array); free_g replaces the true upstream gradients."""
        vals = pt.vals if free_g is None else {**pt.vals, **free_g}
        if isinstance(value, sp.MatrixBase):
            return np.array([[self.number(value[r, c], pt, free_g) for c in range(value.cols)]
                             for r in range(value.rows)], dtype=float)
        x = sp.sympify(value).xreplace(vals)
        try:
            f = float(x)
        except TypeError:
            if x.free_symbols:
                raise Invalid(f"no value for {sorted(map(str, x.free_symbols))[:3]}") from None
            raise Undefined("no value at this point") from None
        if not math.isfinite(f):
            raise Undefined("no value at this point")
        return f


def _what(block) -> str:
    return "a dense layer" if block.kind == "dense" else f"a {block.kind} layer" if block.kind != "activation" \
        else f"a {block.activation} activation layer"


def _have(block) -> str:
    """A layer's names as a claim writes them (a recurrent layer's with a step: h1t2)."""
    l = block.position
    return ", ".join(f"{k}{l}t1" if block.kind in sv.STEPPED and k in sv.STEP_NAMES else f"{k}{l}"
                     for k in _names(block)) + (f", x{l}, y{l}" if block.kind in sv.STEPPED else "")


def _names(block) -> tuple[str, ...]:
    """What a claim may name of a layer: its input x, its output y, and its kind's names (derive.tables.layers)."""
    own = KINDS[block.kind].claim_names
    if block.kind in sv.STEPPED:
        own = own + ("x", "y")
    if block.kind in sv.SEQUENCE and not block.out_proj:
        own = tuple(k for k in own if k != "Wo")
    if block.kind in NORMS and not block.affine:
        own = tuple(k for k in own if k not in ("gamma", "beta"))
    if block.kind in ("dense",) + sv.CONV + sv.STEPPED:
        own = tuple(k for k in own if k != "b" or block.bias == "separate")
    return tuple(dict.fromkeys(("x",) + own + ("y",)))
