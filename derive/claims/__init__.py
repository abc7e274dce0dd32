"""Claims: a person's own formulas, checked against the chain rule, with the mistake pointed out.

`python -m derive check CLAIMS.toml` reads a TOML file naming a spec and a list of
claims, each a left-hand side (dC/dw2[0,1], dC/dW2, delta1, ...) and a right-hand
side in text (`rhs`, read by derive.claims.text) or LaTeX (`latex`, read by
derive.claims.latex). The truth comes from the core: partials from
ChainRule(net).derive(param).value, deltas from ChainRule.delta, matrices from
MatrixForms(net).values. A claim is PROVEN when every entry is an exact identity
(derive.proofs.concrete.is_identity with derive.proofs.concrete.relations); REFUTED with a numeric
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
per example of a batch, and `ones` is a column of ones, one per example; A1 is the row (a1, 1) with an augmented bias, else a1 as a
row, one row per example; w2 is [j, k]; W2, b2, dC/dW2 and dC/db2 are in the spec's
own layout. Scalars of one example (a1[0], delta2[0], ...) name the claim's
`example` (0 unless it says), while dC/dw2[j,k] is the derivative of the whole C.

Exit codes: 0 every claim PROVEN, 1 any REFUTED or UNPROVEN, 2 the file or a claim
cannot be read (one line on stderr naming the claim and the position).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import sympy as sp

from derive.claims import cost as claim_cost
from derive.claims import fast as claim_fast
from derive.chain import ChainRule
from derive.claims.tree import (MAX_TERMS, ClaimError, Evaluator, Invalid, Leaves, Node, ShapeError, expanded_terms,
                       is_matrix, latex_of, position, shape_of, size_text, text_of)
from derive.claims.latex import read_latex
from derive.claims.repair import Repair, find, ratio
from derive.claims.text import Lhs, Shape, lhs_from_tree, read_lhs, read_text
from derive.errors import EXIT_BAD_INPUT, EXIT_OK, EXIT_REFUTED, DeriveError, brief, shown
from derive.files import exists, read_user_file  # a regular file only, read with a bound (st_size is 0 for devices)
from derive.matrix import MatrixForms
from derive.network import Network
from derive.tables.notations import PROFILES, text_name
from derive.proofs.concrete import is_identity, relations
from derive.spec import MAX_EXAMPLES, Spec, builtin_names, load_spec, parse_sizes, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_CLAIMS = 500
MAX_PARAMS = 2_000  # claims build every matrix explicitly; larger specs are checked at reduced sizes
TOP_KEYS = ("spec", "sizes", "examples", "layers", "description", "claim")
CLAIM_KEYS = ("name", "lhs", "rhs", "latex", "example", "note")
WITNESS_TRIES = 8
REL_TOL = 1e-9


# ---------------------------------------------------------------------------
# the network a file's claims are about
# ---------------------------------------------------------------------------

class Undefined(ArithmeticError):
    """A value with no number at a point: a denominator is 0 there."""


@dataclass
class Point:
    """One random point of the network: the free values and every atom's value (forward pass)."""

    free: dict
    vals: dict
    cache: dict = field(default_factory=dict)
    z: list = field(default_factory=list)  # (value, example, layer, neuron) of every pre-activation


class Context:
    """One network and everything a claim about it is checked against."""

    def __init__(self, spec: Spec | str, layers: str | None = None):
        spec = load_spec(spec)
        self.spec = spec
        self.net = net = Network(spec)
        self.chain = ChainRule(net)
        self.forms = MatrixForms(net, evaluate=False)
        self.rule = relations(net)
        self.row = spec.convention == "row"
        self.sizes, self.L, self.E = net.sizes, net.L, net.E
        if layers is None:
            layers = "bare" if PROFILES[spec.notation].layer_style == "bare" else "paren"
        self.shape = Shape(net.L, spec.activation, layers)
        self._partials: dict = {}
        self._matrices: dict = {}
        self._points: list[Point] = []
        self._seed = -1
        self._zero: dict = {}  # denominators already judged (the repair search re-evaluates the same ones)

    # -- symbols -------------------------------------------------------------------------
    def _check(self, value: int, n: int, what: str, span, extra: str = "") -> int:
        if not 0 <= value < n:
            raise ClaimError(f"index {value} is out of range: {what} runs from 0 to {n - 1}{extra}", span)
        return value

    def scalar(self, kind: str, l, idx: tuple[int, ...], e: int, span=None):
        """The SymPy value of one named scalar of example e."""
        net, n = self.net, self.sizes
        if kind == "C":
            return net.C
        if kind == "w":
            return self._param(l, idx[0], idx[1], False, span).symbol
        if kind == "y":
            return net.y[e][self._check(idx[0], n[self.L], "j", span, f" ({n[self.L]} outputs)")]
        j = self._check(idx[0], n[l], "j", span, f" ({n[l]} neurons in layer {l})")
        if kind == "b":
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            return net.w[l][j, n[l - 1]] if self.spec.bias == "augmented" else net.b[l][j]
        if kind == "a":
            return net.a[e][l][j]
        if kind == "z":
            return net.z[e][l][j]
        if kind == "delta":
            return self.chain.delta(e, l, j)
        raise ClaimError(f"{kind} takes no index", span)  # pragma: no cover - the readers allow no other

    def matrix(self, kind: str, l, span=None):
        """The SymPy value of a named vector or matrix (vectors as columns, one per example)."""
        key = (kind, l)
        if key in self._matrices:
            return self._matrices[key]
        net, n, E, V, S = self.net, self.sizes, self.E, self.forms.values, self.forms.sym

        def cols(rows: int, f) -> sp.Matrix:
            return sp.Matrix(rows, E, lambda j, e: f(e, j))

        def oriented(name: str) -> sp.Matrix:
            m = V[S[name]]
            return m.T if self.row else m

        if kind == "C":
            value = net.C
        elif kind in ("w", "W"):
            value = V[S[f"{kind}{l}"]]
        elif kind == "b":
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            if self.spec.bias == "separate":
                value = V[S[f"b{l}"]]
            else:
                entries = [net.w[l][j, n[l - 1]] for j in range(n[l])]
                value = sp.Matrix(1, n[l], entries) if self.row else sp.Matrix(n[l], 1, entries)
        elif kind == "a":
            value = oriented(f"a{l}")
        elif kind == "A":
            aug = self.spec.bias == "augmented"
            value = sp.Matrix(E, n[l] + aug, lambda e, j: net.a[e][l][j] if j < n[l] else sp.Integer(1))
        elif kind == "z":
            value = cols(n[l], lambda e, j: net.z[e][l][j])
        elif kind == "y":
            value = cols(n[self.L], lambda e, j: net.y[e][j])
        elif kind == "delta":
            value = cols(n[l], lambda e, j: self.chain.delta(e, l, j))
        elif kind == "g":
            value = oriented("g")
        elif kind == "ones":
            value = sp.ones(E, 1)
        elif kind == "D":
            if E > 1:
                raise ClaimError(f"D{l} = diag(sigma'(z{l})) is defined for one example; this batch has {E}", span)
            if not net.acts[l].elementwise:
                raise ClaimError(f"layer {l} is {self.spec.activation[l - 1]}: its derivative is a full Jacobian, "
                                 "not a diagonal D", span)
            value = V[S[f"D{l}"]]
        else:  # pragma: no cover - the readers make no other kind
            raise ClaimError(f"unknown quantity {kind}", span)
        self._matrices[key] = value
        return value

    @cached_property
    def z_index(self) -> dict:
        """Each pre-activation, expanded, to (example, layer, neuron): sigma(arg) finds its neuron here."""
        out = {}
        for e in range(self.E):
            for l in range(1, self.L + 1):
                for j in range(self.sizes[l]):
                    out[sp.expand(self.net.z[e][l][j])] = (e, l, j)
        return out

    def activation(self, e: int, l: int, j: int, name, prime: bool, span):
        act = self.spec.activation[l - 1]
        if name is not None and name != act:
            raise ClaimError(f"layer {l}'s activation is {act}, not {name}", span)
        if prime:
            if not self.net.acts[l].elementwise:
                raise ClaimError(f"layer {l} is {act}: its derivative is a Jacobian, not an elementwise sigma_prime", span)
            return self.net.sigma_prime[e][l][j]
        return self.net.a[e][l][j]

    # -- the truth -----------------------------------------------------------------------
    def partial(self, p) -> sp.Expr:
        if p.symbol not in self._partials:
            # reverse accumulation: the same value as the sum over listed paths, without listing them
            self._partials[p.symbol] = self.chain.derive(p, list_paths=False).value
        return self._partials[p.symbol]

    def _param(self, l: int, j: int, k, bias: bool, span):
        n = self.sizes
        if bias:
            if self.spec.bias == "none":
                raise ClaimError(f"the spec {self.spec.name} has no biases", span)
            self._check(j, n[l], "j", span, f" ({n[l]} neurons in layer {l})")
            if self.spec.bias == "augmented":
                return self.net.param_by_symbol[self.net.w[l][j, n[l - 1]]]
            return self.net.param_by_symbol[self.net.b[l][j]]
        aug = self.spec.bias == "augmented"
        self._check(j, n[l], "j", span, f" ({n[l]} neurons in layer {l})")
        self._check(k, n[l - 1] + aug, "k", span, f" ({n[l - 1]} neurons in layer {l - 1}"
                    + (", then the bias weight)" if aug else ")"))
        return self.net.param_by_symbol[self.net.w[l][j, k]]

    def truth(self, lhs: Lhs, e: int, span=None):
        """The value of a left-hand side by the chain rule: a SymPy scalar or Matrix."""
        l, n, E = lhs.layer, self.sizes, self.E
        if lhs.kind == "delta":
            if lhs.index is not None:
                return self.chain.delta(e, l, self._check(lhs.index[0], n[l], "j", span, f" ({n[l]} neurons in layer {l})"))
            value = sp.Matrix(n[l], E, lambda j, ex: self.chain.delta(ex, l, j))
        elif lhs.index is not None:
            p = self._param(l, lhs.index[0], lhs.index[1] if lhs.kind == "w" else None, lhs.kind == "b", span)
            return self.partial(p)
        elif lhs.kind == "w":
            value = sp.Matrix(n[l], n[l - 1], lambda j, k: self.partial(self.net.param_by_symbol[self.net.w[l][j, k]]))
        elif lhs.kind == "W":
            W = self.forms.values[self.forms.sym[f"W{l}"]]
            value = sp.zeros(*W.shape)
            for p in self.net.layer_params(l):
                if p.matrix == f"W{l}":
                    value[p.index] = self.partial(p)
        else:
            entries = [self.partial(self._param(l, j, None, True, span)) for j in range(n[l])]
            value = sp.Matrix(1, n[l], entries) if self.row else sp.Matrix(n[l], 1, entries)
        return value.T if lhs.transposed else value

    def entry_name(self, lhs: Lhs, r: int, c: int) -> str:
        """What entry (r, c) of a matrix left-hand side is, in the text vocabulary."""
        if lhs.transposed:
            r, c = c, r
        l = lhs.layer
        if lhs.kind == "delta":
            return f"delta{l}[{r}]" + (f" of example {c}" if self.E > 1 else "")
        if lhs.kind == "w":
            return f"dC/dw{l}[{r},{c}]"
        if lhs.kind == "W":
            return f"dC/d{self.net.param_at[f'W{l}', (r, c)].name}"
        j = c if self.row else r
        return f"dC/db{l}[{j}]"

    # -- numbers -------------------------------------------------------------------------
    def point(self, i: int) -> Point:
        while len(self._points) <= i:
            self._seed += 1
            if self._seed > 64 * (i + 1):  # pragma: no cover - the forward pass failed at every point tried
                raise DeriveError(f"{self.spec.name}: no point found where the forward pass can be evaluated "
                                  "off the activations' kinks")
            rng = np.random.default_rng(1000 + self._seed)
            free = self.net.free_values(rng)
            try:
                vals = self.net.forward_values(free)
            except (TypeError, ValueError, ArithmeticError):
                continue
            pt = Point(free, vals)
            for e in range(self.E):
                for l in range(1, self.L + 1):
                    for j in range(self.sizes[l]):
                        pt.z.append((float(vals[self.net.zsym[e][l][j]]), e, l, j))
            if self.net.on_kink(vals):
                continue  # sigma' has no value there (SymPy's Heaviside(0) is 1/2): a witness must be off the kinks
            self._points.append(pt)
        return self._points[i]

    def number(self, value, pt: Point):
        """A SymPy value (scalar or Matrix) at a point, as a float or a float array (nan where an entry is undefined).

        A scalar with no value there (a denominator 0 at this point) raises Undefined.
        """
        if is_matrix(value):
            def entry(x):
                try:
                    return self.number(x, pt)
                except Undefined:
                    return math.nan
            return np.array([[entry(value[r, c]) for c in range(value.cols)] for r in range(value.rows)], dtype=float)
        x = sp.sympify(value).xreplace(pt.vals)
        try:
            f = float(x)
        except TypeError:
            if x.free_symbols:
                raise
            raise Undefined("no value at this point") from None
        if not math.isfinite(f):
            raise Undefined("no value at this point")
        return f

    def choices(self, expr) -> tuple[dict, list[tuple[sp.Symbol, int]]]:
        """The finitely-valued atoms in expr, each group written through one choice symbol t in 0..m-1.

        A one-hot target is one of the unit vectors; a piecewise-linear neuron (ReLU) is on one
        of its pieces, where sigma' is the piece's slope and a = slope * z + offset. Each group's
        values are interpolated in its t (Lagrange), so expr becomes a polynomial in the t's whose
        values at the grid points are exactly expr on every joint case.
        """
        net, free, groups = self.net, expr.free_symbols, []
        for e in range(self.E):
            if net.cost.one_hot and free & set(net.y[e]):
                ys = net.y[e]
                groups.append([{y: sp.Integer(int(i == hot)) for i, y in enumerate(ys)} for hot in range(len(ys))])
            for l in range(1, self.L + 1):
                ps = net.acts[l].pieces
                for j in range(self.sizes[l] if ps else 0):
                    a, ap = net.a[e][l][j], net.ap[e][l][j]
                    if a in free or ap in free:
                        groups.append([{a: v * net.z[e][l][j] + c, ap: v} for v, c in ps])
        sub, grid = {}, []
        for g, values in enumerate(groups):
            t, m = sp.Dummy(f"t{g}"), len(values)
            basis = [sp.prod([(t - i) / sp.Integer(k - i) for i in range(m) if i != k]) for k in range(m)]
            for atom in values[0]:
                sub[atom] = sp.Add(*[b * case[atom] for b, case in zip(basis, values)])
            grid.append((t, m))
        return sub, grid

    def is_zero(self, value) -> bool:
        """value is 0 at every point of the network: exactly, given the relations, on every joint case of its atoms.

        The joint cases are decided all at once, not one by one: a polynomial whose degree in each
        choice symbol t is below the number m of its values is 0 on the grid only if it is 0 as a
        polynomial, so the numerator is reduced modulo t(t - 1)...(t - m + 1) in each t and then
        tested as an identity.
        """
        value = sp.sympify(value)
        if value.is_number:
            return value == 0
        if value not in self._zero:
            if expanded_terms(value) > MAX_TERMS:
                raise ClaimError(f"too large to prove exactly: a denominator's expansion may have more than {MAX_TERMS} "
                                 "terms")
            zero = is_identity(value, sp.Integer(0), self.rule)
            if not zero:
                sub, grid = self.choices(value)
                if grid:
                    numerator = sp.expand(sp.numer(sp.together(value.xreplace(sub))))
                    for t, m in grid:
                        numerator = sp.rem(numerator, sp.prod([t - i for i in range(m)]), t)
                    zero = is_identity(sp.expand(numerator), sp.Integer(0), self.rule)
            self._zero[value] = zero
        return self._zero[value]


class SymLeaves(Leaves):
    numeric = False

    def __init__(self, ctx: Context, example: int):
        self.ctx, self.e = ctx, example

    def scalar(self, kind, layer, index, node):
        return self.ctx.scalar(kind, layer, index, self.e, node.span)

    def matrix(self, kind, layer, node):
        return self.ctx.matrix(kind, layer, node.span)

    def activate(self, value, name, prime, node):
        def one(x):
            if expanded_terms(x, 10_000) > 10_000:
                raise ClaimError("the argument of the activation is too large", node.span)
            hit = self.ctx.z_index.get(sp.expand(x))
            if hit is None:
                fn = (name or "sigma") + ("_prime" if prime else "")
                raise ClaimError(f"{fn} is applied to something that is not a neuron's pre-activation z{{l}}[j]: the "
                                 "checker knows the activation only as a neuron's output (sigma(z1[0]) is a1[0])",
                                 node.span)
            return self.ctx.activation(*hit, name, prime, node.span)

        return value.applyfunc(one) if is_matrix(value) else one(value)

    def is_zero(self, value) -> bool:
        return self.ctx.is_zero(value)


class NumLeaves(Leaves):
    numeric = True

    def __init__(self, ctx: Context, pt: Point, example: int):
        self.ctx, self.pt, self.e = ctx, pt, example

    def scalar(self, kind, layer, index, node):
        key = ("s", kind, layer, index, self.e)
        if key not in self.pt.cache:
            self.pt.cache[key] = self.ctx.number(self.ctx.scalar(kind, layer, index, self.e), self.pt)
        return self.pt.cache[key]

    def matrix(self, kind, layer, node):
        key = ("m", kind, layer)
        if key not in self.pt.cache:
            self.pt.cache[key] = self.ctx.number(self.ctx.matrix(kind, layer), self.pt)
        return self.pt.cache[key]

    def activate(self, value, name, prime, node):
        def one(x):
            for zv, e, l, j in self.pt.z:
                if abs(zv - x) <= 1e-12 * (1 + abs(zv)):
                    return self.ctx.number(self.ctx.activation(e, l, j, name, prime, None), self.pt)
            raise Invalid("not a pre-activation")

        if isinstance(value, np.ndarray):
            return np.vectorize(one, otypes=[float])(value)
        return one(float(value))


# ---------------------------------------------------------------------------
# one claim
# ---------------------------------------------------------------------------

@dataclass
class Claim:
    """One [[claim]] table of a claims file."""

    name: str
    lhs: str | None = None
    rhs: str | None = None
    latex: str | None = None
    example: int = 0
    number: int = 1  # its place in the file, from 1
    note: str = ""  # the file's own words about the claim, shown with it

    @property
    def form(self) -> str:
        return "latex" if self.latex is not None else "text"

    @property
    def source(self) -> str:
        return self.latex if self.latex is not None else (self.rhs or "")


@dataclass
class Verdict:
    claim: Claim
    verdict: str  # PROVEN, REFUTED, UNPROVEN, ERROR
    lhs: str = ""  # the left-hand side, in the text vocabulary
    message: str = ""  # for ERROR: what cannot be read; for UNPROVEN: why no verdict
    error_field: str | None = None
    error_position: str | None = None
    witness: dict | None = None
    wrong_entries: list[dict] = field(default_factory=list)
    holding_entries: list[dict] = field(default_factory=list)
    shape_error: str | None = None
    repair: Repair | None = None
    other_repairs: list[Repair] = field(default_factory=list)

    def as_json(self) -> dict:
        c = self.claim
        out = {"name": c.name, "verdict": self.verdict, "lhs": self.lhs, "claim": c.source, "form": c.form,
               "witness": self.witness, "wrong_entries": self.wrong_entries, "holding_entries": self.holding_entries,
               "shape_error": self.shape_error, "repair": self.repair.as_json() if self.repair else None,
               "other_repairs": [r.as_json() for r in self.other_repairs]}
        if c.example:
            out["example"] = c.example
        if c.note:
            out["note"] = c.note
        if self.verdict in ("ERROR", "UNPROVEN"):
            out["error" if self.verdict == "ERROR" else "reason"] = self.message
        if self.verdict == "ERROR":
            out["error_field"] = self.error_field
            out["error_position"] = self.error_position
        return out

    def error_line(self) -> str:
        """One line, safe to print: what it quotes from the file is escaped."""
        where = ", ".join(x for x in (self.error_field, self.error_position) if x)
        return shown(f"claim {self.claim.number} '{self.claim.name}': {where}: {self.message}")


class ClaimCheck:
    """A claim being checked: its parsed sides, the truth, and the hooks the repair search uses."""

    def __init__(self, ctx: Context, claim: Claim, lhs: Lhs, tree: Node):
        self.ctx, self.claim, self.lhs, self.tree = ctx, claim, lhs, tree
        self.source = claim.source
        self.latex = claim.latex is not None
        style = ctx.shape.style
        self.printer = (lambda node: latex_of(node, style)) if self.latex else text_of
        self.product = "dot" if self.latex else "mul"
        self.sizes, self.bias, self.row = ctx.sizes, ctx.spec.bias, ctx.row
        self.e = claim.example
        self.truth = ctx.truth(lhs, self.e)
        self._truth_num: dict[int, object] = {}

    def describe(self, node: Node) -> str:
        if node.span is not None:
            return self.source[node.span[0]:node.span[1]].strip()
        return self.printer(node)

    def symbolic(self, tree: Node):
        value = Evaluator(SymLeaves(self.ctx, self.e), self.describe, broadcast=not self.latex)(tree)
        return _as_lhs_shape(value, self.truth)

    def numeric(self, tree: Node, i: int):
        pt = self.ctx.point(i)
        value = Evaluator(NumLeaves(self.ctx, pt, self.e), self.describe, broadcast=not self.latex)(tree)
        return _as_lhs_shape(value, self.truth)

    def truth_at(self, i: int):
        if i not in self._truth_num:
            self._truth_num[i] = self.ctx.number(self.truth, self.ctx.point(i))
        return self._truth_num[i]

    # -- the repair search's hooks -------------------------------------------------------
    def numeric_close(self, tree: Node) -> bool:
        try:
            with np.errstate(all="raise"):
                for i in (0, 1):
                    v, t = self.numeric(tree, i), self.truth_at(i)
                    if shape_of(v) != shape_of(t) or not _close(t, v):
                        return False
        except (ShapeError, Invalid, ClaimError, ArithmeticError, FloatingPointError, ValueError, TypeError):
            return False
        return True

    def exact_holds(self, tree: Node) -> bool:
        try:
            value = self.symbolic(tree)
        except (ShapeError, ClaimError, Invalid, ArithmeticError):
            return False
        if shape_of(value) != shape_of(self.truth):
            return False
        pairs = _entries(self.truth, value)
        if any(expanded_terms(v) > MAX_TERMS for _, _, v in pairs):
            return False
        return all(is_identity(t, v, self.ctx.rule) for t, _, v in pairs)

    def factor(self, tree: Node):
        try:
            with np.errstate(all="raise"):
                c0 = ratio(self.truth_at(0), self.numeric(tree, 0))
                c1 = ratio(self.truth_at(1), self.numeric(tree, 1))
        except (ShapeError, Invalid, ClaimError, ArithmeticError, FloatingPointError, ValueError, TypeError):
            return None
        return c0 if c0 is not None and c0 == c1 else None


def _as_lhs_shape(value, truth):
    """A 1×1 matrix and a scalar stand for each other (a1.T @ a1 is a number; delta2 may be 1×1)."""
    if is_matrix(value) and not is_matrix(truth) and tuple(value.shape) == (1, 1):
        return value[0, 0]
    if not is_matrix(value) and is_matrix(truth) and tuple(truth.shape) == (1, 1):
        return np.array([[value]], dtype=float) if isinstance(value, float) else sp.Matrix([[value]])
    return value


def _entries(truth, value) -> list[tuple]:
    if not is_matrix(truth):
        return [(truth, None, value)]
    return [(truth[r, c], (r, c), value[r, c]) for r in range(truth.rows) for c in range(truth.cols)]


def _close(t, v) -> bool:
    t, v = np.asarray(t, dtype=float), np.asarray(v, dtype=float)
    return bool(np.all(np.isfinite(v)) and np.allclose(v, t, rtol=REL_TOL, atol=1e-12))


def _fail(claim: Claim, field_name: str, source: str, exc: ClaimError, lhs_text: str = "") -> Verdict:
    where = position(source, exc.span[0]) if exc.span is not None else None
    return Verdict(claim, "ERROR", lhs_text, exc.message, field_name, where)


def read_claim(ctx: Context, claim: Claim) -> tuple[Lhs, Node, str] | Verdict:
    """The claim's left-hand side, its right-hand side's tree and how the left side was written; or an ERROR."""
    lhs = None
    shown = ""
    if claim.latex is not None:
        try:
            left, tree = read_latex(claim.latex, ctx.shape)
            if left is not None:
                lhs = lhs_from_tree(left, ctx.shape)
                shown = claim.latex[left.span[0]:left.span[1]].strip() if left.span else lhs.text()
        except ClaimError as exc:
            return _fail(claim, "latex", claim.latex, exc)
    else:
        try:
            tree = read_text(claim.rhs, ctx.shape)
        except ClaimError as exc:
            return _fail(claim, "rhs", claim.rhs, exc)
    if claim.lhs is not None:
        try:
            from_key = read_lhs(claim.lhs, ctx.shape)
        except ClaimError as exc:
            return _fail(claim, "lhs", claim.lhs, exc)
        if lhs is not None and from_key != lhs:
            return _fail(claim, "lhs", claim.lhs, ClaimError(
                f"lhs names {from_key.text()} but the LaTeX's left-hand side is {lhs.text()}", (0, len(claim.lhs))))
        lhs, shown = from_key, claim.lhs.strip()
    if lhs is None:
        field_name = "latex" if claim.latex is not None else "rhs"
        return _fail(claim, field_name, claim.source, ClaimError(
            "no left-hand side: give lhs = \"dC/dw2[0,1]\" (or write the LaTeX as an equation, \\delta^{(2)} = ...)",
            (0, 0)))
    return lhs, tree, shown


def check_claim(ctx: Context, claim: Claim) -> Verdict:
    """The verdict on one claim."""
    if not 0 <= claim.example < ctx.E:
        return Verdict(claim, "ERROR", "", f"example {claim.example} does not exist; this network has "
                       f"{ctx.E} example{'s' if ctx.E > 1 else ''} (0 to {ctx.E - 1})", "example")
    read = read_claim(ctx, claim)
    if isinstance(read, Verdict):
        return read
    lhs, tree, shown = read
    field_name = "latex" if claim.latex is not None else "rhs"
    if claim_fast.prove(ctx, lhs, tree, claim.example, claim.latex is None):
        return Verdict(claim, "PROVEN", lhs.text())  # exact, one layer's deltas held as symbols (derive.claims.fast)
    too_large = claim_cost.refusal(ctx, lhs, tree, claim.latex is None)  # before the truth and the evaluation
    if too_large is not None:
        return _fail(claim, field_name, claim.source, too_large, lhs.text())
    try:
        check = ClaimCheck(ctx, claim, lhs, tree)
    except ClaimError as exc:  # the left-hand side names no quantity of this network
        exc.span = exc.span or (0, 0)
        return _fail(claim, "lhs" if claim.lhs is not None else field_name, claim.lhs or claim.source, exc, lhs.text())
    verdict = Verdict(claim, "PROVEN", lhs.text())
    try:
        value = check.symbolic(tree)
    except ClaimError as exc:
        return _fail(claim, field_name, claim.source, exc, lhs.text())
    except ShapeError as exc:
        verdict.verdict = "REFUTED"
        verdict.shape_error = str(exc)
        _repair(check, verdict)
        return verdict
    truth = check.truth
    if shape_of(value) != shape_of(truth):
        verdict.verdict = "REFUTED"
        verdict.shape_error = (f"{check.describe(tree)} is "
                               f"{size_text(shape_of(value))} but {shown} is {size_text(shape_of(truth))}")
        _repair(check, verdict)
        return verdict
    pairs = _entries(truth, value)
    for _, rc, v in pairs:
        terms = expanded_terms(v)
        if terms > MAX_TERMS:
            where = f" (entry {list(rc)})" if rc else ""
            return _fail(claim, field_name, claim.source, ClaimError(
                f"too large to prove exactly: its expansion{where} may have more than {MAX_TERMS} terms", (0, 0)),
                lhs.text())
    holds = [is_identity(t, v, ctx.rule) for t, _, v in pairs]
    if all(holds):
        return verdict
    if is_matrix(truth):
        for (t, rc, v), ok in zip(pairs, holds):
            item = {"entry": list(rc), "name": ctx.entry_name(lhs, *rc)}
            (verdict.holding_entries if ok else verdict.wrong_entries).append(item)
    verdict.witness, undefined = _witness(check, value, [rc for (_, rc, _), ok in zip(pairs, holds) if not ok])
    if verdict.witness is None:
        verdict.verdict = "UNPROVEN"
        if undefined == WITNESS_TRIES:
            verdict.message = (f"not an identity in the network's atoms, and not defined (a denominator is 0) at any of "
                               f"the {WITNESS_TRIES} random points tried, so no point tells the sides apart")
        elif undefined:
            verdict.message = (f"not an identity in the network's atoms, yet equal at the {WITNESS_TRIES - undefined} of "
                               f"{WITNESS_TRIES} random points where it is defined (a denominator is 0 at the others); "
                               "it may hold through a relation the proof does not use")
        else:
            verdict.message = (f"not an identity in the network's atoms, yet equal at {WITNESS_TRIES} random points; "
                               "it may hold through a relation the proof does not use")
        return verdict
    verdict.verdict = "REFUTED"
    _repair(check, verdict)
    return verdict


def _repair(check: ClaimCheck, verdict: Verdict) -> None:
    repairs = find(check, check.tree)
    if repairs:
        verdict.repair, verdict.other_repairs = repairs[0], repairs[1:]


def _round(x: float) -> float | None:
    return float(f"{x:.12g}") if math.isfinite(x) else None  # None: an entry with no value at the witness


def _witness(check: ClaimCheck, value, wrong: list) -> tuple[dict | None, int]:
    """A point where both sides are defined and differ (every free value, the neurons' values, the two sides);
    and at how many of the points tried the claim had no value."""
    ctx = check.ctx
    undefined = 0
    for i in range(WITNESS_TRIES):
        pt = ctx.point(i)
        try:
            t = check.truth_at(i)
            v = ctx.number(value, pt)
        except Undefined:
            undefined += 1
            continue
        if is_matrix(check.truth):
            defined = [rc for rc in wrong if math.isfinite(v[rc]) and math.isfinite(t[rc])]
            undefined += not defined
            bad = [rc for rc in defined if not _close(t[rc], v[rc])]
            if not bad:
                continue
            where = {"entry": list(bad[0]), "entry_name": ctx.entry_name(check.lhs, *bad[0]),
                     "lhs": [[_round(x) for x in row] for row in t], "rhs": [[_round(x) for x in row] for row in v]}
        else:
            if _close(t, v):
                continue
            where = {"lhs": _round(t), "rhs": _round(v)}
        return {"values": _free_values(ctx, pt), "neurons": _neuron_values(ctx, pt), **where}, undefined
    return None, undefined


def _free_values(ctx: Context, pt: Point) -> dict:
    net = ctx.net
    order = [p.symbol for p in net.params]
    for e in range(net.E):
        order += list(net.a[e][0]) + list(net.y[e])
    return {text_name(s): _round(float(pt.free[s])) for s in order}


def _neuron_values(ctx: Context, pt: Point) -> dict:
    net = ctx.net
    out = {}
    for e in range(net.E):
        for l in range(1, net.L + 1):
            for j in range(net.sizes[l]):
                out[text_name(net.a[e][l][j])] = _round(float(pt.vals[net.a[e][l][j]]))
                ap = net.ap[e][l][j]
                if ap in pt.vals:
                    out[text_name(ap)] = _round(float(pt.vals[ap]))
    return out


# ---------------------------------------------------------------------------
# a claims file
# ---------------------------------------------------------------------------

@dataclass
class Report:
    path: str
    spec: Spec
    note: str
    verdicts: list[Verdict]

    @property
    def exit_code(self) -> int:
        if any(v.verdict == "ERROR" for v in self.verdicts):
            return EXIT_BAD_INPUT
        if any(v.verdict != "PROVEN" for v in self.verdicts):
            return EXIT_REFUTED
        return EXIT_OK


def _bad(path, message: str):
    raise DeriveError(shown(f"{path}: {message}"))  # one line, whatever the file put in a key or a name


def load_claims(path: str | Path) -> tuple[Spec, str, list[Claim], str]:
    """(spec, layer style or '', claims, a note on reduced sizes) from a claims file; DeriveError naming what is wrong."""

    path = Path(path)
    data = read_user_file(path, MAX_FILE_BYTES, "claims file")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        _bad(path, "not UTF-8 text; a claims file is TOML")
    except tomllib.TOMLDecodeError as exc:
        _bad(path, f"malformed TOML: {exc}")
    except ValueError:  # Python converts integers of at most sys.get_int_max_str_digits() digits
        _bad(path, f"malformed TOML: an integer of more than {sys.get_int_max_str_digits()} digits; "
                   "the numbers of a claims file are small")
    except (RecursionError, MemoryError):
        _bad(path, "malformed TOML: nested too deeply")
    for key in table:
        if key not in TOP_KEYS:
            _bad(path, f"unknown key {brief(key)}; a claims file has {', '.join(TOP_KEYS)}")
    spec, note = _spec_of(path, table)
    layers = table.get("layers", "")
    if layers not in ("", "paren", "bare"):
        _bad(path, f"layers = {brief(layers)}: 'paren' (a^{{(l)}}_j) or 'bare' (Nielsen's a^l_j)")
    raw = table.get("claim")
    if raw is None:
        _bad(path, "no claims: add [[claim]] tables with name, lhs and rhs (or latex)")
    if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
        _bad(path, "'claim' must be an array of tables: [[claim]]")
    if not raw:
        _bad(path, "no claims")
    if len(raw) > MAX_CLAIMS:
        _bad(path, f"{len(raw)} claims; at most {MAX_CLAIMS} in one file")
    claims, names = [], set()
    for i, c in enumerate(raw, 1):
        claims.append(_claim_of(path, i, c, names))
    return spec, layers, claims, note


def _spec_of(path: Path, table: dict) -> tuple[Spec, str]:
    name = table.get("spec")
    if not isinstance(name, str) or not name:
        _bad(path, "spec: give a built-in name (" + ", ".join(builtin_names()) + ") or a spec file, relative to this file")
    try:
        if name not in builtin_names() and not Path(name).suffix and not exists(path.parent / name, "spec"):
            _bad(path, f"spec: unknown spec {brief(name)}: not a built-in name ({', '.join(builtin_names())}) "
                       "and no such file next to the claims file")
        spec = load_spec(name) if name in builtin_names() else load_spec(path.parent / name)
        own = spec.sizes
        if "sizes" in table:
            sizes = table["sizes"]
            if isinstance(sizes, str):
                sizes = parse_sizes(sizes)
            elif not (isinstance(sizes, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in sizes)):
                _bad(path, f"sizes = {brief(sizes)}: a list of widths, inputs first, such as [3, 4, 2]")
            spec = spec.with_sizes(tuple(sizes))
        if "examples" in table:
            data = spec.as_dict()
            data["examples"] = table["examples"]
            spec = validate(data, spec.source)
    except DeriveError as exc:
        if str(exc).startswith(str(path)):
            raise
        _bad(path, f"spec: {exc}")
    if spec.n_params > MAX_PARAMS:
        _bad(path, f"spec {spec.name} has {spec.n_params} parameters; claims are checked on networks of at most "
                   f"{MAX_PARAMS}: add sizes = [3, 4, 2] (any small widths) to check it at reduced widths")
    note = ""
    if spec.sizes != own:
        note = f"at sizes {'-'.join(map(str, spec.sizes))} (the spec's own are {'-'.join(map(str, own))})"
    return spec, note


def _claim_of(path: Path, i: int, c: dict, names: set) -> Claim:
    name = c.get("name")
    label = f"claim {i}" + (f" '{name}'" if isinstance(name, str) and name.isprintable() and len(name) <= 200 else "")
    for key in c:
        if key not in CLAIM_KEYS:
            _bad(path, f"{label}: unknown key {brief(key)}; a claim has {', '.join(CLAIM_KEYS)}")
    if not isinstance(name, str) or not name.strip() or len(name) > 200 or not name.isprintable():
        _bad(path, f"{label}: name must be a short string on one line")
    if name in names:
        _bad(path, f"{label}: another claim has the same name")
    names.add(name)
    for key in ("lhs", "rhs", "latex", "note"):
        if key in c and not isinstance(c[key], str):
            _bad(path, f"{label}: {key} must be a string")
    if ("rhs" in c) == ("latex" in c):
        _bad(path, f"{label}: give the right-hand side as rhs (text) or as latex, one of the two")
    if "lhs" not in c and "rhs" in c:
        _bad(path, f"{label}: lhs is missing (dC/dw2[0,1], dC/db2[0], dC/dW2, delta2, delta2[0], ...)")
    example = c.get("example", 0)
    if not isinstance(example, int) or isinstance(example, bool) or not 0 <= example < MAX_EXAMPLES:
        _bad(path, f"{label}: example must be a whole number from 0 to {MAX_EXAMPLES - 1} (an example of the batch; "
                   f"a batch has at most {MAX_EXAMPLES}), not {brief(example)}")
    return Claim(name, c.get("lhs"), c.get("rhs"), c.get("latex"), example, i, c.get("note", ""))


def check_file(path: str | Path) -> Report:
    """Read a claims file and check every claim in it."""
    spec, layers, claims, note = load_claims(path)
    ctx = Context(spec, layers or None)
    return Report(str(path), spec, note, [check_claim(ctx, c) for c in claims])
