"""What a generated module computes, line by line, read from a proof derive/ made.

`make_plan(proof)` takes a `derive.proofs.concrete.Proof` that is ok and prints only
what it proved: the proof's matrix forms (the forward forms z{l}, BP1, BP2 and the
gradient forms, SymPy matrix expressions over MatrixSymbols) on the proof's network.
The elementwise parts come from derive too: the cost gradient g is the `sympy.diff`
that matrix.py took, sigma' is the activation table's output form (or its `sympy.diff`
in z), the stable logs and output ranges are the table's. Nothing here differentiates:
the planner only re-orients, splits and simplifies (`cancel`, exact) what it is given.

The forms do not depend on the widths, so they are proven and read at widths of at
most 3 (and two examples for a batch spec, so that the batch scale 1/B is a visible
coefficient): `prove_forms(spec)` is that proof, fast for a network of any size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from derive.errors import DeriveError
from derive.proofs import budget
from derive.proofs.concrete import Proof, prove
from derive.proofs.identity import deep_stack, has_denominator
from derive.spec import Spec, validate
from derive.tables.activations import ACTIVATIONS, OutputRange
from derive.tables.costs import COSTS

from .printers import formula, rowsum

SMALL = 3  # the widths the forms are read at
INV_B = sp.Symbol("inv_B")  # 1/B, the batch mean's scale, known only at run time
Y = sp.Symbol("y")


@cache
def helper_names(kind: str) -> tuple[str, ...]:
    """Names of the stable helpers the templates define: kind "py" or "cu"."""
    folder = resources.files("codegen").joinpath("templates", "helpers")
    suffix = f".{kind}.j2"
    return tuple(sorted(p.name[: -len(suffix)] for p in folder.iterdir() if p.name.endswith(suffix)))


def helper(name: str):
    """A SymPy function that prints as a call to the generated module's helper `name`."""
    return sp.Function(name)


@dataclass(frozen=True)
class Line:
    """One line of generated code, lhs = expr (a CUDA backend fuses runs of elementwise ones)."""

    lhs: str
    kind: str  # "matrix" (products, sums over the batch), "elementwise" (scalar expr over arrays), "call"
    expr: object
    note: str = ""  # why the line is there, when its left side does not say: the form it computes
    out: str | None = None  # a buffer the result may overwrite (dead afterwards)


class NotElementwise(DeriveError):
    """A part of a form that is not elementwise (a cost gradient that mixes outputs, say)."""


@dataclass
class Plan:
    spec: Spec
    forward: list[Line] = field(default_factory=list)
    backward: list[Line] = field(default_factory=list)
    cache_keys: list[str] = field(default_factory=list)
    equations: list[tuple[str, str]] = field(default_factory=list)  # (key, formula) for docstrings
    forward_equations: list[tuple[str, str]] = field(default_factory=list)
    cost_term: sp.Expr | None = None  # one entry's cost in a{L}, y
    cost_term_z: sp.Expr | None = None  # the same through z{L} (stable logs), or None
    kinds: dict[str, str] = field(default_factory=dict)  # array name -> "full" | "col" | "row" | "scalar"
    names: dict[str, str] = field(default_factory=dict)  # symbol name -> code
    sigma_prime: dict[int, sp.Expr] = field(default_factory=dict)
    g: sp.Expr | None = None  # dC/da{L} of one entry
    updates: list[str] = field(default_factory=list)  # the proven update forms, for sgd_step
    output_range: OutputRange | None = None  # the output activation's values (the table's), where a cost takes logs
    output_delta: sp.Expr | None = None  # BP1 as the code computes it
    output_delta_cancelled: bool = False  # g * sigma' had a common factor that cancel() removed
    carried_scale: bool = False  # the mean's 1/B is applied once, to delta{L}, and carried by BP2 (see carry_scale)


def small_spec(spec: Spec) -> Spec:
    data = spec.as_dict()
    data["sizes"] = [min(n, SMALL) for n in spec.sizes]
    if spec.batch != "single":
        data["examples"] = 2
    return validate(data, spec.source)


class Planner:
    def __init__(self, proof: Proof, spec: Spec):
        self.spec = spec
        self.net = proof.net
        self.forms = proof.forms
        self.row = spec.convention == "row"
        self.L = spec.depth
        self.aug = spec.bias == "augmented"
        self.helpers = helper_names("py")
        batch = {"g"} | {f"{p}{l}" for l in range(self.L + 1) for p in ("a", "A", "z", "delta", "sp")}
        self.batch = {n for n in batch if n in self.forms.sym}
        self.arrays = {f"{p}{l}" for l in range(self.L + 1) for p in ("a", "z", "delta", "b")} | {"y"}
        self._sp: dict[int, sp.Expr] = {}  # sp_of, per layer (as_helper simplifies: worth doing once)

    # -- orientation: every batch quantity is an array with the batch first -----
    def weights(self, l: int) -> sp.MatrixExpr:
        """w{l} (n_l x n_{l-1}, indexed [j, k]) written in the parameter W{l}: the layer table says where
        w_jk sits in W (at [k, j] when transposed) and W's shape (a bias row or column more when augmented)."""
        n, spec, layer = self.net.sizes, self.spec, self.net.layers[l]
        shape = dict(layer.params(n[l - 1], n[l], spec.convention, spec.bias))["W"]
        transposed = layer.weight_index(1, 0, spec.convention) == (0, 1)
        rows, cols = (n[l - 1], n[l]) if transposed else (n[l], n[l - 1])
        code = f"W{l}" + ("[:-1]" if shape[0] > rows else "[:, :-1]" if shape[1] > cols else "")
        w = MatrixSymbol(code, rows, cols)
        return Transpose(w) if transposed else w

    def orient(self, lhs: MatrixSymbol, expr):
        """The form with batch-first arrays: in the column convention each batch quantity X is
        stored as its transpose, so the equation is transposed when its left side is one."""
        rule = {self.forms.sym[f"w{l}"]: self.weights(l) for l in range(1, self.L + 1)}
        if not self.row:
            for name in self.batch:
                s = self.forms.sym[name]
                rule[s] = Transpose(MatrixSymbol(s.name, s.shape[1], s.shape[0]))
        out = expr.xreplace(rule)
        if not self.row and lhs.name in self.batch:
            out = Transpose(out)
        return out.doit()

    def unscaled(self, expr):
        """The gradient form without its batch scale: for a mean the 1/B is already in the deltas
        (carry_scale); a sum or one example has none."""
        coeff, mats = expr.as_coeff_matrices()
        if coeff != self.net.scale:
            raise AssertionError(f"unexpected coefficient {coeff} in {expr}")
        return MatMul(*mats)

    def carry_scale(self, plan: Plan) -> None:
        """Apply the mean's 1/B once, to delta{L}, instead of once per gradient.

        Every BP2 form and every gradient form is linear in the delta it reads (checked here,
        on the explicit matrices of the forms), so scaling delta{L} by 1/B scales each delta{l}
        and each gradient by 1/B: the gradients need no factor of their own. One product with
        a (B, n_L) array replaces one per weight and bias gradient.
        """
        deltas = [self.forms.sym[f"delta{l}"] for l in range(1, self.L + 1)]
        for form in self.forms.forms:
            if (form.truth == "delta" and form.key != "BP1") or form.truth == "grad":
                if not linear_in(form.expr, deltas):
                    raise AssertionError(f"{form.key} is not linear in delta: the 1/B cannot be carried")
        lhs = f"delta{self.L}"
        at = max(i for i, line in enumerate(plan.backward) if line.lhs == lhs)
        note = "the mean's 1/B, once: BP2 and the gradients are linear in delta"
        plan.backward.insert(at + 1, Line(lhs, "elementwise", INV_B * sp.Symbol(lhs), note))
        plan.carried_scale = True

    # -- elementwise parts, as scalar expressions over whole arrays ------------------
    @cached_property
    def g(self) -> sp.Expr:
        """dC/da^L of one entry, in a{L} and y: the sympy.diff that matrix.py took."""
        net, L = self.net, self.L
        values = self.forms.values[self.forms.sym["g"]]
        A = sp.Symbol(f"a{L}")
        found = set()
        for e in range(net.E):
            for j in range(net.sizes[L]):
                entry = values[e, j] if self.forms.row else values[j, e]
                entry = entry.xreplace({net.a[e][L][j]: A, net.y[e][j]: Y})
                if not entry.free_symbols <= {A, Y}:
                    raise NotElementwise(f"the cost gradient of output {j} involves other outputs: {entry}")
                found.add(entry)
        if len(found) != 1:
            raise NotElementwise(f"the cost gradient differs between outputs: {sorted(map(str, found))}")
        return found.pop()

    def sp_of(self, l: int) -> sp.Expr:
        """sigma'(z{l}): through a{l} when the table proved an output form, else in z{l}."""
        if l not in self._sp:
            act = self.net.acts[l]
            if act.output_form is not None:
                self._sp[l] = renamed(act.output_form, sp.Symbol(f"a{l}"))
            else:
                zl = sp.Symbol(f"z{l}")
                self._sp[l] = as_helper(renamed(act.prime, zl), zl)
        return self._sp[l]

    def activation(self, l: int, arg: sp.Expr) -> sp.Expr:
        act = self.net.acts[l]
        if act.stable in self.helpers:
            return helper(act.stable)(arg)
        return act.definition(arg)

    def scalar(self, expr) -> sp.Expr:
        """A matrix expression built only of elementwise operations, as one scalar expression."""
        if isinstance(expr, MatrixSymbol):
            name = expr.name
            if name == "g":
                return self.g
            if name.startswith("sp") and name[2:].isdigit():
                return self.sp_of(int(name[2:]))
            if name in self.arrays:
                return sp.Symbol(name)
            raise NotElementwise(name)
        if isinstance(expr, Transpose) and isinstance(expr.arg, MatrixSymbol) and expr.arg.name.startswith("b"):
            return sp.Symbol(expr.arg.name)  # a bias broadcast over the batch
        if isinstance(expr, HadamardProduct):
            return sp.Mul(*[self.scalar(a) for a in expr.args])
        if isinstance(expr, HadamardPower):  # a ∘ a, as SymPy writes a Hadamard square (a width-1 softmax)
            return self.scalar(expr.base) ** expr.exp
        if isinstance(expr, MatAdd):
            return sp.Add(*[self.scalar(a) for a in expr.args])
        if isinstance(expr, MatMul):
            coeff, mats = expr.as_coeff_matrices()
            if len(mats) == 1:
                return coeff * self.scalar(mats[0])
            if len(mats) == 2 and isinstance(mats[1], OneMatrix):
                return coeff * rowsum(self.scalar(mats[0]))
            if len(mats) == 2 and getattr(mats[0], "name", "") == "ones_B":
                return coeff * self.scalar(mats[1])
        raise NotElementwise(str(expr))

    def scalar_or_none(self, expr) -> sp.Expr | None:
        """self.scalar(expr), or None when expr is not elementwise."""
        try:
            return self.scalar(expr)
        except NotElementwise:
            return None

    def split(self, lhs: str, expr, note: str) -> list[Line]:
        """A matrix product or sum first, then the elementwise rest applied in place."""
        whole = self.scalar_or_none(expr)
        if whole is not None:
            return [Line(lhs, "elementwise", lowest_terms(whole), note)]
        own = sp.Symbol(lhs)
        for cls, op in ((HadamardProduct, sp.Mul), (MatAdd, sp.Add)):
            if isinstance(expr, cls):
                parts = [(a, self.scalar_or_none(a)) for a in expr.args]
                inner = [a for a, s in parts if s is None]
                if len(inner) == 1:
                    rest = [s for a, s in parts if a is not inner[0]]
                    lines = [Line(lhs, "matrix", inner[0], note)]
                    if op(own, *rest) != own:  # sigma' = 1 (identity) leaves nothing to do
                        lines.append(Line(lhs, "elementwise", op(own, *rest)))
                    return lines
        return [Line(lhs, "matrix", expr, note)]

    # -- the plan --------------------------------------------------------------
    def plan(self) -> Plan:
        spec, L = self.spec, self.L
        plan = Plan(spec)
        doc_rule = {self.net.scale: sp.Symbol("(1/B)")} if spec.batch == "mean" else {}
        for l in range(1, L + 1):
            if self.net.acts[l].elementwise:
                plan.sigma_prime[l] = self.sp_of(l)
        plan.g = self.g

        # backward: BP1, BP2 (in place), then the gradients, in the order derive lists them
        for form in self.forms.forms:
            if form.truth == "delta":
                oriented = self.orient(form.lhs, form.expr)
                lines = self.split(form.lhs.name, oriented, form.key)
                if form.key == "BP1" and lines[0].kind == "elementwise":
                    plan.output_delta = lines[0].expr
                    plan.output_delta_cancelled = lines[0].expr != self.scalar(oriented)
                plan.backward += lines
                plan.equations.append((form.key, f"{form.lhs.name} = {formula(oriented)}"))
            elif form.truth == "grad":
                oriented = self.orient(form.lhs, form.expr)
                plan.backward.append(Line(form.lhs.name, "matrix", self.unscaled(oriented)))  # its name says what it is
                plan.equations.append((form.key, f"{form.lhs.name} = {formula(oriented.xreplace(doc_rule))}"))
        for form in self.forms.forms:
            if form.truth == "update":
                M = self.forms.sym[form.matrix]
                expected = M - self.forms.gamma * self.forms.sym[f"dC_d{form.matrix}"]
                if form.expr != expected:  # sgd_step does exactly this, in place
                    raise AssertionError(f"{form.key}: {form.expr} is not {expected}")
                plan.updates.append(f"{form.lhs.name} = {M.name} - gamma*dC_d{form.matrix}")
        if spec.batch == "mean":
            self.carry_scale(plan)
        needs = set()
        for line in plan.backward:
            needs |= names_in(line.expr)

        # the cost, and through z{L} where the logs need it to stay finite
        cost = COSTS[spec.cost]
        A, Z = sp.Symbol(f"a{L}"), sp.Symbol(f"z{L}")
        plan.cost_term = cost.definition([A], [Y])
        output = self.net.acts[L]
        logs = log_rule(output.stable_logs(Z), A) if output.stable_logs else {}
        if plan.cost_term.has(sp.log) and logs:
            plan.cost_term_z = plan.cost_term.xreplace(logs)
            needs.add(f"z{L}")
        plan.output_range = output.output_range

        # forward
        for form in self.forms.forward:
            l = form.layer
            z = self.orient(form.lhs, form.expr)
            if self.aug:
                plan.forward.append(Line(f"A{l - 1}", "call", helper("with_ones")(sp.Symbol(f"a{l - 1}")), "A = [a, 1]"))
            plan.forward += self.split(f"z{l}", z, "")
            plan.forward_equations.append((form.key, f"z{l} = {formula(z)}"))
            zl = sp.Symbol(f"z{l}")
            out = None if f"z{l}" in needs else f"z{l}"
            kind = "elementwise" if self.net.acts[l].elementwise else "call"
            plan.forward.append(Line(f"a{l}", kind, self.activation(l, zl), out=out))
        needs |= {f"a{L}"}
        order = [f"{p}{l}" for l in range(L + 1) for p in ("A", "a", "z")]
        plan.cache_keys = [n for n in order if n in needs]

        # code names and broadcast kinds
        for l in range(1, L + 1):
            plan.names[f"b{l}"] = f"b{l}" if self.row else f"b{l}.T"
            plan.kinds[f"b{l}"] = "col"
        plan.kinds["inv_B"] = "scalar"
        return plan


def names_in(expr) -> set[str]:
    """The names of the arrays an expression reads (matrix or scalar)."""
    out = set()
    for s in expr.atoms(sp.Symbol, MatrixSymbol):
        out.add(str(s.name).split("[")[0])
    return out


def linear_in(expr: sp.MatrixExpr, symbols) -> bool:
    """Whether scaling every one of `symbols` by c scales the matrix expression by c, entry by entry."""
    c = sp.Dummy("c")
    scaled = expr.xreplace({s: c * s for s in symbols})
    difference = sp.Matrix(scaled.as_explicit()) - c * sp.Matrix(expr.as_explicit())
    return all(sp.expand(entry) == 0 for entry in difference)


def lowest_terms(expr: sp.Expr) -> sp.Expr:
    """A rational expression cancelled exactly (g * sigma' = a - y for a matched cost); others as they are."""
    if has_denominator(expr):
        return sp.factor(sp.cancel(sp.together(expr)))
    return expr


def as_helper(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """expr as a call to a stable helper when it is exactly that helper's activation.

    softplus' = exp(z)/(exp(z) + 1) overflows as written; it is the sigmoid, and the
    generated code calls the stable sigmoid. The identity is checked exactly.
    """
    if not expr.has(sp.exp):
        return expr
    helpers = helper_names("py")
    for act in sorted(ACTIVATIONS.values(), key=lambda act: act.stable or ""):
        if act.elementwise and act.stable in helpers and sp.simplify(expr - act.definition(var)) == 0:
            return helper(act.stable)(var)
    return expr


def renamed(expr: sp.Expr, var: sp.Symbol) -> sp.Expr:
    """A table's expression in its one variable (sigma' in z, or in a = sigma(z)), written in `var`."""
    return expr.xreplace({own: var for own in expr.free_symbols})  # none for a constant (identity: 1)


def log_rule(logs: dict, A: sp.Symbol) -> dict:
    """The table's stable logs of the output (`Activation.stable_logs(z)`) as a rule for a cost in A:
    log(A) and log(1 - A) written through z, finite for every z."""
    rule = {sp.log(A): logs["log_a"]}
    if "log_one_minus_a" in logs:
        rule[sp.log(1 - A)] = logs["log_one_minus_a"]
    return rule


def check_budget(spec: Spec, max_seconds: float = budget.MAX_SECONDS) -> None:
    """Refuse (DeriveError, one line) a spec whose proof at the planner's widths is estimated beyond max_seconds."""
    small = small_spec(spec)
    budget.check(budget.full(small), max_seconds, f"{small.source}: proving its forms at sizes {budget.sizes_text(small)}",
                 "give it fewer layers")


def prove_forms(spec: Spec, max_seconds: float = budget.MAX_SECONDS) -> Proof:
    """The proof make_plan reads: the spec's matrix forms, proven at the planner's widths (refused
    first when it could not finish within max_seconds: then no module can be printed)."""
    check_budget(spec, max_seconds)
    return prove(small_spec(spec))


@deep_stack
def make_plan(proof: Proof, spec: Spec | None = None) -> Plan:
    """The plan of `spec`'s module (default: the proof's spec), from the proof of its forms.

    The proof must be ok and be of small_spec(spec) (`prove_forms(spec)`): the planner prints
    the forms it proved, at the widths it proved them, and the module takes the spec's widths.
    """
    spec = spec or proof.spec
    if not proof.ok:
        raise DeriveError(f"{spec.source}: the matrix forms are not proven ({proof.summary()}); nothing is printed from them")
    if proof.spec.as_dict() != small_spec(spec).as_dict():
        raise DeriveError(f"{spec.source}: the proof is of {proof.spec.name} at sizes {'-'.join(map(str, proof.spec.sizes))}, "
                          f"not of the forms this module prints: prove them with codegen.plan.prove_forms(spec)")
    return Planner(proof, spec).plan()
