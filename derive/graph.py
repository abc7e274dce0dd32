"""The scalar graph of a layer-list spec: every parameter, input, target and intermediate as a SymPy symbol.

derive.tables.layers writes each kind of block once, against an array algebra; `SymbolicOps`
runs it on SymPy scalars. Forward, it records every named intermediate (z, a, μ, σ², s, x̂, y)
as a node: a symbol with its definition in the nodes before it. Three kinds of node are atoms
(fresh symbols a proof never expands): an activation applied to its argument (a = σ(z)), its
derivative where σ' has no form in a (ap = σ'(z)), and a norm's inverse standard deviation
s = (σ² + ε)^(-1/2). Identical arguments give identical atoms, so treating them as free
symbols is sound, and square roots stay exact: the chain rule meets s only through its
defining relation ds/dσ² = −s³/2, which sympy.diff of the definition gives.

Backward, the same algebra evaluates the textbook forms on matrices of these symbols.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cached_property

import mpmath
import sympy as sp

from derive.spec import LayeredSpec, load_spec
from derive.tables import activations
from derive.tables.costs import COSTS
from derive.tables.layers import KINDS, ROW, backward_pass, forward_pass


def _rational(c) -> sp.Expr:
    if isinstance(c, Fraction):
        return sp.Rational(c.numerator, c.denominator)
    return sp.sympify(c)


def gather(A: sp.Matrix, index) -> sp.Matrix:
    """Column f of the result is column index[f] of A, 0 where index[f] is -1 (the padding)."""
    return sp.Matrix(A.rows, len(index), lambda i, f: A[i, index[f]] if index[f] >= 0 else sp.Integer(0))


def scatter(A: sp.Matrix, index, n: int) -> sp.Matrix:
    """The adjoint of gather: n columns, column m the sum of A's columns f with index[f] == m."""
    out = sp.zeros(A.rows, n)
    for f, m in enumerate(index):
        if m >= 0:
            for i in range(A.rows):
                out[i, m] += A[i, f]
    return out


class SymbolicOps:
    """The array algebra of derive.tables.layers on SymPy matrices; forward, it records nodes in a Graph."""

    def __init__(self, graph: "LayeredNetwork", recording: bool):
        self.graph, self.recording, self.position = graph, recording, 0

    def at(self, position: int) -> None:
        self.position = position
        self.graph.tag = ""

    def step(self, t: int) -> None:
        self.graph.tag = f"t{t}" if t else ""

    # -- elementwise with broadcasting of a 1×n row or an E×1 column ------------------
    @staticmethod
    def _zip(A: sp.Matrix, B: sp.Matrix, f) -> sp.Matrix:
        rows, cols = max(A.rows, B.rows), max(A.cols, B.cols)
        for M in (A, B):
            if M.rows not in (1, rows) or M.cols not in (1, cols):
                raise ValueError(f"shapes {A.shape} and {B.shape} do not broadcast")
        return sp.Matrix(rows, cols, lambda i, j: f(A[i if A.rows > 1 else 0, j if A.cols > 1 else 0],
                                                    B[i if B.rows > 1 else 0, j if B.cols > 1 else 0]))

    def add(self, A, B):
        return self._zip(A, B, lambda x, y: x + y)

    def sub(self, A, B):
        return self._zip(A, B, lambda x, y: x - y)

    def mul(self, A, B):
        return self._zip(A, B, lambda x, y: x * y)

    def matmul(self, A, B):
        return A * B

    def T(self, A):
        return A.T

    def scale(self, c, A):
        return _rational(c) * A

    def power(self, A, k: int):
        return A.applyfunc(lambda x: x ** k)

    def sum_rows(self, A):
        return sp.Matrix(1, A.cols, lambda i, j: sp.Add(*A[:, j]))

    def sum_cols(self, A):
        return sp.Matrix(A.rows, 1, lambda i, j: sp.Add(*A[i, :]))

    def ratio(self, p: int, n: int) -> Fraction:
        return Fraction(p, n)

    def rows(self, A) -> int:
        return A.rows

    def cols(self, A) -> int:
        return A.cols

    def zeros(self, rows: int, cols: int):
        return sp.zeros(rows, cols)

    # -- shapes: windows, groups of rows, products per group ----------------------------
    def gather(self, A, index):
        return gather(A, index)

    def scatter(self, A, index, n: int):
        return scatter(A, index, n)

    def split_rows(self, A, k: int):
        n = A.cols // k
        return sp.Matrix(A.rows * n, k, lambda r, c: A[r // n, (r % n) * k + c])

    def merge_rows(self, A, n: int):
        return sp.Matrix(A.rows // n, n * A.cols, lambda r, c: A[r * n + c // A.cols, c % A.cols])

    def bmm(self, A, B, a: int, b: int, ta: bool, tb: bool):
        blocks = []
        for g in range(A.rows // a):
            left, right = A[g * a:(g + 1) * a, :], B[g * b:(g + 1) * b, :]
            blocks.append((left.T if ta else left) * (right.T if tb else right))
        return sp.Matrix.vstack(*blocks)

    def concat(self, *As):
        return sp.Matrix.hstack(*As)

    def causal(self, S, n: int):
        return sp.Matrix(S.rows, S.cols, lambda r, c: S[r, c] if c <= r % n else sp.S.NegativeInfinity)

    def max_cols(self, A):
        """Each row's maximum (an atom, defined as Max of the row) and the mask of its arg-max: atoms defined as
        Heaviside(x_i − max of the others), which is what sympy.diff of Max gives for ∂max/∂x_i."""
        if A.cols == 1:
            return A, sp.ones(A.rows, 1)
        if not self.recording:
            raise ValueError("max_cols is a forward step")
        A = self.graph.nodes_for("x", self.position, A)
        top = self.graph.atoms_for("m", self.position, sp.Matrix(A.rows, 1, lambda r, c: sp.Max(*A[r, :])),
                                   lambda d: {d: None})
        heaviside = sp.Matrix(A.rows, A.cols, lambda r, c: sp.Heaviside(A[r, c] - sp.Max(*[A[r, k] for k in range(A.cols)
                                                                                            if k != c])))
        mask = self.graph.atoms_for("mask", self.position, heaviside, lambda d: {d: None})
        return top, mask

    # -- nodes and atoms ------------------------------------------------------------
    def name(self, label: str, A):
        if not self.recording:
            return A
        return self.graph.nodes_for(label, self.position, A)

    def rsqrt(self, V, eps):
        if not self.recording:
            raise ValueError("rsqrt is a forward step")
        V = self.graph.nodes_for("var", self.position, V)
        e = _rational(eps)
        defs = V.applyfunc(lambda v: (v + e) ** sp.Rational(-1, 2))
        return self.graph.atoms_for("s", self.position, defs, lambda d: _rsqrt_rule(d))

    def activation(self, name: str, Z):
        act = activations.get(name)
        if act.polynomial:  # identity: a = z exactly, no atom of its own
            return self.name("a", Z.applyfunc(act.definition))
        if not self.recording:
            raise ValueError("activation is a forward step")
        Z = self.graph.nodes_for("z", self.position, Z)
        if act.elementwise:
            defs = Z.applyfunc(lambda z: act.function(z))
        else:  # by rows; an entry at −∞ (a causal mask's) is left out: its value is 0
            defs = sp.zeros(Z.rows, Z.cols)
            for i in range(Z.rows):
                kept = [j for j in range(Z.cols) if Z[i, j] != sp.S.NegativeInfinity]
                for n, j in enumerate(kept):
                    defs[i, j] = act.function(n, *[Z[i, k] for k in kept])
        A = self.graph.atoms_for("a", self.position, defs, lambda d: {d: None})
        if act.elementwise:  # σ'(z) gets its atom now, before the chain rule differentiates σ(z)
            for i in range(Z.rows):
                for j in range(Z.cols):
                    self.graph.prime_atom(name, Z[i, j], A[i, j])
        return A

    def activation_vjp(self, name: str, Z, A, G):
        act = activations.get(name)
        if act.polynomial:
            return self.mul(G, Z.applyfunc(lambda z: act.prime.xreplace({activations.z: z})))
        if not act.elementwise:  # softmax by rows: a ∘ (g − rowsum(g ∘ a))
            return self.mul(A, self.sub(G, self.sum_cols(self.mul(G, A))))
        return self.mul(G, sp.Matrix(Z.rows, Z.cols, lambda i, j: self.graph.prime_atom(name, Z[i, j], A[i, j])))


def _rsqrt_rule(d: sp.Pow) -> dict:
    """(v + ε)^(-1/2) -> s; its powers (-3/2, -5/2, ...) -> s³, s⁵: what sympy.diff of the definition gives."""
    return {d: None, **{sp.Pow(d.base, sp.Rational(-k, 2)): k for k in (3, 5, 7)}}


class LayeredNetwork:
    """A layer-list spec built out of scalars: parameters, inputs, targets, nodes, atoms and the cost."""

    def __init__(self, spec: LayeredSpec | str):
        spec = load_spec(spec)
        if not isinstance(spec, LayeredSpec):
            raise TypeError("LayeredNetwork takes a layer-list spec; a sizes spec is a derive.network.Network")
        self.spec, self.E = spec, spec.examples
        self.definitions: dict[sp.Symbol, sp.Expr] = {}  # node or atom -> its definition in earlier symbols
        self.order: list[sp.Symbol] = []  # nodes and atoms as created
        self.position_of: dict[sp.Symbol, int] = {}
        self.atoms: set[sp.Symbol] = set()
        self.atom_rule: dict = {}  # a definition (σ(z), (v + ε)^(-1/2), σ'(z)) and its powers -> the atom
        self.primes: dict[sp.Symbol, tuple[str, sp.Expr, sp.Symbol]] = {}  # ap atom -> (activation, z, a)
        self.softmax_rows: list[list[sp.Symbol]] = []
        self.tag = ""  # a recurrent layer's step, in the names of the nodes it makes

        # parameters, in the spec's layout and, for the equations, as rows × features
        self.params: dict[int, dict[str, sp.Matrix]] = {}  # position -> name -> matrix in the spec's layout
        self.P: dict[int, dict[str, sp.Matrix]] = {}  # position -> name -> matrix as the equations read it
        self.param_list: list[tuple[sp.Symbol, int, str, tuple[int, int]]] = []  # (symbol, position, name, index)
        for block in spec.blocks:
            own, rowwise = {}, {}
            for pname, shape in KINDS[block.kind].params(block, spec.convention):
                M = sp.Matrix(*shape, lambda r, c: self._param_symbol(pname, block.position, r, c))
                own[pname] = M
                rowwise[pname] = M if spec.convention == ROW else M.T
                self.param_list += [(M[r, c], block.position, pname, (r, c))
                                    for r in range(shape[0]) for c in range(shape[1])]
            self.params[block.position], self.P[block.position] = own, rowwise
        self.X = sp.Matrix(self.E, spec.inputs, lambda e, k: sp.Symbol(f"x_e{e}_{k}"))  # flat in C, H, W order
        self.Y = sp.Matrix(self.E, spec.outputs, lambda e, j: sp.Symbol(f"y_e{e}_{j}"))

        ops = SymbolicOps(self, recording=True)
        self.state: dict = {}
        self.output = forward_pass(ops, spec.layers, self.X, self.P, self.state)
        self.cost = COSTS[spec.cost]
        total = sp.Add(*[self.cost.definition(list(self.output[e, :]), list(self.Y[e, :])) for e in range(self.E)])
        self.scale = sp.Rational(1, self.E) if spec.batch == "mean" else sp.Integer(1)
        self.C = self.scale * total if self.E > 1 else total

    def _param_symbol(self, pname: str, position: int, r: int, c: int) -> sp.Symbol:
        """w{l}_{j}_{k} (to unit j from unit k) whatever the layout, wq{l}_{j}_{k} for W_q;
        gamma{l}_{j}, beta{l}_{j}, b{l}_{j}."""
        if pname.startswith("W"):
            j, k = (c, r) if self.spec.convention == ROW else (r, c)
            return sp.Symbol(f"{pname.lower()}{position}_{j}_{k}")
        return sp.Symbol(f"{pname}{position}_{c if self.spec.convention == ROW else r}")

    # -- building ------------------------------------------------------------------
    def _symbol(self, label: str, position: int, shape: tuple[int, int], i: int, j: int) -> sp.Symbol:
        label = f"{label}{position}{self.tag}"
        if shape[0] == 1 and self.E > 1:  # one value per feature (a batch statistic)
            return sp.Symbol(f"{label}_{j}")
        if shape[0] > self.E and shape[0] % self.E == 0:  # rows in groups, one per example: a position, a window
            e, r = divmod(i, shape[0] // self.E)
            return sp.Symbol(f"{label}_e{e}_{r}" + (f"_{j}" if shape[1] > 1 else ""))
        if shape[1] == 1 and shape[0] > 1:  # one value per example (a layer statistic)
            return sp.Symbol(f"{label}_e{i}")
        return sp.Symbol(f"{label}_e{i}_{j}")

    def _record(self, symbol: sp.Symbol, definition: sp.Expr, position: int) -> None:
        if symbol in self.definitions:
            raise ValueError(f"two nodes named {symbol}")
        self.definitions[symbol] = definition
        self.order.append(symbol)
        self.position_of[symbol] = position

    def nodes_for(self, label: str, position: int, A: sp.Matrix) -> sp.Matrix:
        """A's entries as nodes named label{position}_..., unless an entry is a node or a leaf already."""
        out = sp.zeros(A.rows, A.cols)
        for i in range(A.rows):
            for j in range(A.cols):
                v = A[i, j]
                if isinstance(v, sp.Symbol) or v.is_number:  # a node or a leaf already, or a constant
                    out[i, j] = v
                    continue
                s = self._symbol(label, position, A.shape, i, j)
                self._record(s, v, position)
                out[i, j] = s
        return out

    def atoms_for(self, label: str, position: int, defs: sp.Matrix, powers) -> sp.Matrix:
        """One atom per entry of defs, recorded as a node whose definition is that entry."""
        out = sp.zeros(defs.rows, defs.cols)
        for i in range(defs.rows):
            for j in range(defs.cols):
                d = defs[i, j]
                if d.is_number:  # a masked softmax entry: 0, no atom
                    continue
                s = self._symbol(label, position, defs.shape, i, j)
                self._record(s, d, position)
                self.atoms.add(s)
                for key, k in powers(d).items():
                    self.atom_rule[key] = s if k is None else s ** k
                out[i, j] = s
        if label == "a" and any(isinstance(d, activations.Softmax) for d in defs):
            self.softmax_rows += [[s for s in out[i, :] if s != 0] for i in range(out.rows)]
        return out

    def prime_atom(self, name: str, z: sp.Symbol, a: sp.Symbol) -> sp.Expr:
        """σ'(z) in atoms: its form in a where one is proven (a(1 − a)), else an atom ap of its own."""
        act = activations.get(name)
        if act.output_form is not None:
            return act.output_form.xreplace({activations.a: a})
        ap = sp.Symbol("ap" + a.name[1:])
        if ap not in self.primes:
            self.primes[ap] = (name, z, a)
            self.atoms.add(ap)
            self.atom_rule[act.prime_function(z)] = ap
        return ap

    # -- what proofs read ------------------------------------------------------------
    @cached_property
    def relations(self) -> dict:
        """Each softmax row sums to 1: its last output is 1 minus the others (as derive.proofs.identity does)."""
        return {row[-1]: 1 - sp.Add(*row[:-1]) for row in self.softmax_rows}

    @cached_property
    def values(self) -> dict:
        """Every node that is not an atom -> its value in leaves and atoms."""
        out: dict = {}
        for s in self.order:
            if s not in self.atoms:
                out[s] = self.definitions[s].xreplace(out)
        return out

    def reduce(self, expr: sp.Expr) -> sp.Expr:
        """expr in leaves and atoms: every other node replaced by its value, each softmax row's relation applied."""
        return expr.xreplace(self.values).xreplace(self.relations)

    def local(self, node: sp.Symbol) -> list[tuple[sp.Symbol, sp.Expr]]:
        """∂node/∂parent for each symbol its definition reads, by sympy.diff, written in the atoms."""
        return self._locals[node]

    @cached_property
    def _locals(self) -> dict:
        out = {}
        for s in self.order:
            d = self.definitions[s]
            out[s] = [(p, sp.diff(d, p).xreplace(self.atom_rule)) for p in sorted(d.free_symbols, key=str)]
        return out

    def textbook(self, G: sp.Matrix, backward: dict | None = None, blocks=None) -> tuple[sp.Matrix, dict]:
        """The textbook backward pass from G = ∂C/∂(the blocks' output): ∂C/∂(their input) and every parameter's."""
        grads: dict = {}
        ops = SymbolicOps(self, recording=False)
        dX = backward_pass(ops, blocks if blocks is not None else self.spec.layers, G, self.P, self.state, grads,
                           backward)
        return dX, grads

    # -- composition, for the oracle ----------------------------------------------------
    def composed_within(self, nodes: list[sp.Symbol]) -> tuple[dict, dict]:
        """Each of the given nodes composed down to what lies outside them (the block's input, its parameters),
        and the rule taking each composed activation, derivative and inverse square root back to its atom."""
        value: dict = {}
        rule: dict = {}
        inside = set(nodes)
        for s in nodes:
            d = self.definitions[s].xreplace(value)
            value[s] = d
            if s in self.atoms:
                if isinstance(d, sp.Pow):
                    for key, k in _rsqrt_rule(d).items():
                        rule[key] = s if k is None else s ** k
                else:
                    rule[d] = s
        for ap, (name, z, a) in self.primes.items():
            if a in inside:
                rule[activations.get(name).prime_function(z.xreplace(value))] = ap
        return value, rule

    # -- numbers, for counterexamples --------------------------------------------------
    def free_values(self, rng) -> dict:
        """Random rational values for parameters, inputs and targets (one-hot targets for a one-hot cost)."""
        def r(lo, hi):
            return sp.Rational(int(rng.integers(int(lo * 8), int(hi * 8) + 1)), 8)
        vals = {p[0]: r(-1.5, 1.5) for p in self.param_list}
        for s in self.X:
            vals[s] = r(-2, 2)
        for e in range(self.E):
            row = list(self.Y[e, :])
            if self.cost.one_hot:
                hot = int(rng.integers(0, len(row)))
                vals.update({s: sp.Integer(int(j == hot)) for j, s in enumerate(row)})
            else:
                vals.update({s: sp.Rational(int(rng.integers(1, 8)), 8) for s in row})
        return vals

    def forward_values(self, free: dict, dps: int = 30) -> dict:
        """Every node's and atom's value at the given leaves, at dps digits."""
        vals = dict(free)
        with mpmath.workdps(dps):
            for s in self.order:
                vals[s] = sp.Float(sp.N(self.definitions[s].xreplace(vals), dps), dps)
            for ap, (name, z, _) in self.primes.items():
                vals[ap] = sp.Float(sp.N(activations.get(name).prime_function(vals[z]), dps), dps)
        return vals
