"""Modules for layer-list specs: derive.tables.layers' own equations, run on a tracer that prints them.

Each kind of block writes its forward and textbook backward pass once, against an array
algebra (`ops`, documented above `class Kind` in derive/tables/layers.py); derive runs them on
SymPy scalars and proves every backward form (derive.proofs.layered). Here `TraceOps` runs
the very same functions (`forward_pass`, `backward_pass`) on named arrays and records one
line of code per step. Nothing is differentiated here: the lines are the table's, and the
one derivative the table does not give, the cost's dC/d(output), is `sympy.diff` of the
cost's definition, as the dense planner takes it.

Elementwise steps stay SymPy expressions until a product, a sum or a name needs them as an
array; each is then printed by the backend's printer, brought to lowest terms when it has a
denominator (so that a sigmoid's cross-entropy δ is a - y, never (1 - y)/(1 - a) ∘ a(1 - a)).
The batch size is known only at run time: `rows` of a batch array is the symbol B, and the
table's `ratio(p, rows(X))` is p times inv_B (1/B, computed once by the module).

Batch statistics (a batch norm's μ and σ²) get running averages in PyTorch's convention
(momentum 0.1, the unbiased σ²), updated by a training-mode forward given a `state`, and read
by `forward(..., training=False)`: that trace replaces each named batch statistic by its
running average, and the lines that computed it from the batch fall away.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import sympy as sp

from derive.errors import DeriveError
from derive.proofs.layered import LayeredProof, prove_layers
from derive.spec import LayeredSpec, load_spec, validate
from derive.tables import activations
from derive.tables.costs import COSTS
from derive.tables.layers import KINDS, ROW, backward_pass, forward_pass

from .index_maps import Plan, gather_plan, scatter_plan
from .plan import as_helper, helper, helper_names, log_rule, lowest_terms, renamed

B, INV_B = sp.Symbol("B"), sp.Symbol("inv_B")
Y = sp.Symbol("y")
SMALL = 3  # the widths the forms are proven at (they do not depend on the widths)
# a named batch statistic (the table's label) -> its running average's name and whether it takes
# Bessel's correction B/(B - 1), as torch.nn.BatchNorm1d keeps running_mean and running_var
# and its start (torch's: mean 0, variance 1)
RUNNING = {"mu": ("running_mean", False, 0.0), "var": ("running_var", True, 1.0)}
MOMENTUM = 0.1


def examples_folder() -> Path:
    return Path(__file__).resolve().parent.parent / "examples" / "specs"


def layer_examples() -> list[str]:
    """The layer-list specs of examples/specs, by path relative to the repository: generated/ has their modules."""
    root = examples_folder().parent.parent
    out = []
    for path in sorted(examples_folder().glob("*.toml")):
        if isinstance(load_spec(str(path)), LayeredSpec):
            out.append(str(path.relative_to(root)))
    return out


# ---------------------------------------------------------------------------
# the proof the module prints
# ---------------------------------------------------------------------------

# the settings that count units (shrunk to SMALL) and those that count channels (shrunk to 2)
UNITS, CHANNELS = ("width", "hidden_size", "head_dim"), ("out_channels",)


def small_layers(spec: LayeredSpec) -> LayeredSpec:
    """The spec at widths of at most SMALL and two examples: its forms are those of the spec at any size.

    A shaped input keeps every spatial size where a layer has windows (its kernels, strides and padding
    stay valid), with at most 2 channels; a sequence [T, d] without windows is cut to at most SMALL steps
    of SMALL entries. The module's own index maps are always the spec's (trace_module reads the spec)."""
    def shrink(layer: dict) -> dict:
        out = dict(layer)
        for key in UNITS + CHANNELS:
            if out.get(key):
                out[key] = min(out[key], SMALL if key in UNITS else 2)
        if "layers" in out:
            out["layers"] = [shrink(i) for i in out["layers"]]
        return out
    data = spec.as_dict()
    data["layers"] = [shrink(layer) for layer in data["layers"]]
    if not spec.input_shape:
        data["inputs"] = min(spec.inputs, SMALL)
    elif any(b.kernel_size for b in spec.blocks):  # windows: the spatial sizes stay, the channels shrink
        data["inputs"] = [min(spec.input_shape[0], 2), *spec.input_shape[1:]]
    else:
        data["inputs"] = [min(n, SMALL) for n in spec.input_shape]
    if spec.batch != "single":
        data["examples"] = 2
    try:
        return validate(data, spec.source)
    except DeriveError:  # a shape the cut sizes do not fit: proven as given
        data.update(inputs=spec.as_dict()["inputs"], layers=spec.as_dict()["layers"])
        return validate(data, spec.source)


def prove_layer_forms(spec: LayeredSpec) -> LayeredProof:
    """Every block's backward forms proven (chain rule = textbook form = sympy.diff) at the small widths."""
    return prove_layers(small_layers(spec))


# ---------------------------------------------------------------------------
# the tracer
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Arr:
    """An array of the trace: an elementwise SymPy expression over named arrays, and its shape."""

    expr: sp.Expr
    rows: object  # "B" for one row per example, ("B", n) for n rows per example, else a number
    cols: int
    batch_stat: bool = False  # one row computed from the whole batch (a sum over the examples)


@dataclass
class Line:
    """lhs = an elementwise expression, a matrix product, a sum along an axis, or a helper's call."""

    lhs: str
    kind: str  # "expr", "matmul", "sum", "call", or a shape step: "gather", "reshape", "bmm", "max", "argmax",
    # "causal", "concat", "zeros" (codegen/layer_module.py prints each)
    args: tuple
    transposed: bool = False  # the result is stored transposed (a gradient in the column layout)
    inline: bool = False  # a product or sum read once: printed where it is read

    def reads(self) -> set[str]:
        if self.kind == "expr":
            return {base(s.name) for s in self.args[0].free_symbols}
        return {base(a) for a in self.args if isinstance(a, str)}


def scaled_rows(rows, num: int, den: int = 1):
    """rows × num / den: a batch array's rows per example change, a fixed array's count does."""
    if isinstance(rows, int):
        return rows * num // den
    n = (1 if rows == "B" else rows[1]) * num
    if n % den:
        raise ValueError(f"{n} rows per example do not split into groups of {den}")
    return "B" if n // den == 1 else ("B", n // den)


def is_batch(rows) -> bool:
    """Rows that depend on the batch: one or more per example."""
    return not isinstance(rows, int)


def base(name: str) -> str:
    return name[:-2] if name.endswith(".T") else name


def flip(name: str) -> str:
    return name[:-2] if name.endswith(".T") else name + ".T"


class TraceOps:
    """derive.tables.layers' array algebra on named arrays: each step that needs an array is a line of code."""

    def __init__(self, spec: LayeredSpec, inference: bool = False, constants: "Constants | None" = None):
        self.spec, self.inference = spec, inference
        self.position = 0
        self.lines: list[Line] = []
        self.shapes: dict[str, tuple] = {}  # name -> (rows, cols)
        self.used: set[str] = set()
        self.temps = 0
        self.running: list[tuple[str, str, bool]] = []  # (state key, batch statistic, Bessel's correction)
        self.last_activation: tuple[str, str, str] | None = None  # (activation, its argument, its value)
        self.starts: dict[str, float] = {}  # running average -> its value before any batch
        self.temp_names: set[str] = set()
        self.tag = ""  # a recurrent layer's step (_t1, _t2, ...) in the names it makes
        self.gathered: dict[str, tuple[str, tuple, int]] = {}  # a gather's line -> (its array, its map, their cols)
        self.constants = constants if constants is not None else Constants()

    def at(self, position: int) -> None:
        self.position = position
        self.tag = ""

    def step(self, t: int) -> None:
        self.tag = f"_t{t}" if t else ""

    # -- naming -----------------------------------------------------------------------
    def fresh(self, label: str) -> str:
        name = label if label not in self.used else next(f"{label}_{k}" for k in range(2, 10**6)
                                                         if f"{label}_{k}" not in self.used)
        self.used.add(name)
        return name

    def leaf(self, name: str, rows, cols: int) -> Arr:
        """An array the function is given (x, a parameter, the targets)."""
        self.used.add(base(name))
        self.shapes[base(name)] = (rows, cols) if not name.endswith(".T") else (cols, rows)
        return Arr(sp.Symbol(name), rows, cols)

    def emit(self, label: str, kind: str, args: tuple, rows, cols, batch_stat=False) -> Arr:
        name = self.fresh(label)
        self.lines.append(Line(name, kind, args))
        self.shapes[name] = (rows, cols)
        return Arr(sp.Symbol(name), rows, cols, batch_stat)

    def ref(self, A: Arr) -> str:
        """A as a name: itself when it is one, else a temporary line."""
        if isinstance(A.expr, sp.Symbol):
            return A.expr.name
        return self.temp("expr", (lowest(A.expr),), A.rows, A.cols, A.batch_stat).expr.name

    def temp(self, kind: str, args: tuple, rows, cols, batch_stat=False) -> Arr:
        """A line whose value has no name of its own in the table: t0, t1, ..."""
        self.temps += 1
        out = self.emit(f"t{self.temps - 1}", kind, args, rows, cols, batch_stat)
        self.temp_names.add(out.expr.name)
        return out

    def is_named(self, A: Arr) -> bool:
        return isinstance(A.expr, sp.Symbol) and base(A.expr.name) not in self.temp_names

    def name(self, label: str, A: Arr) -> Arr:
        label_here = f"{label}{self.position}{self.tag}"
        if A.batch_stat and label in RUNNING:
            key = f"{RUNNING[label][0]}{self.position}"
            self.starts[key] = RUNNING[label][2]
            if self.inference:  # at inference the batch statistic is its running average
                return self.leaf(key if self.spec.convention == ROW else key + ".T", 1, A.cols)
            out = self.emit(label_here, "expr", (lowest(A.expr),), A.rows, A.cols, True)
            self.running.append((key, out.expr.name, RUNNING[label][1]))
            return out
        if self.is_named(A):
            return A  # a named array already (as the scalar graph keeps a node)
        return self.emit(label_here, "expr", (lowest(A.expr),), A.rows, A.cols, A.batch_stat)

    # -- elementwise (lazy) --------------------------------------------------------
    @staticmethod
    def _shape(*arrays: Arr) -> tuple:
        batch = [a.rows for a in arrays if is_batch(a.rows)]
        rows = max(batch, key=lambda r: 1 if r == "B" else r[1]) if batch else max(a.rows for a in arrays)
        return rows, max(a.cols for a in arrays)

    def _zip(self, A: Arr, Bv: Arr, expr) -> Arr:
        rows, cols = self._shape(A, Bv)
        return Arr(expr, rows, cols, rows == 1 and (A.batch_stat or Bv.batch_stat))

    def add(self, A, Bv):
        return self._zip(A, Bv, A.expr + Bv.expr)

    def sub(self, A, Bv):
        return self._zip(A, Bv, A.expr - Bv.expr)

    def mul(self, A, Bv):
        return self._zip(A, Bv, A.expr * Bv.expr)

    def scale(self, c, A):
        c = sp.Rational(c.numerator, c.denominator) if isinstance(c, Fraction) else sp.sympify(c)
        if c.is_number and not c.is_Rational:  # 1/√d_k: a float literal, which keeps a float32 array float32
            c = sp.Float(c.evalf(20), 17)
        return Arr(c * A.expr, A.rows, A.cols, A.batch_stat)

    def ratio(self, p: int, n) -> sp.Expr:
        """p/n: for the batch's count B (known when the code runs) p times inv_B, else the rational."""
        return p * INV_B if n == B else sp.Rational(p, n)

    def power(self, A, k: int):
        return Arr(A.expr ** k, A.rows, A.cols, A.batch_stat)

    def rsqrt(self, V, eps):
        value = (V.expr + sp.Rational(eps.numerator, eps.denominator)) ** sp.Rational(-1, 2)
        return self.name("s", Arr(value, V.rows, V.cols, V.batch_stat))

    # -- products and sums: lines of their own --------------------------------------
    def matmul(self, A, Bv):
        left, right = self.ref(A), self.ref(Bv)
        return self.temp("matmul", (left, right), A.rows, Bv.cols)

    def T(self, A):
        return Arr(sp.Symbol(flip(self.ref(A))), A.cols, A.rows)

    def sum_rows(self, A):
        return self.temp("sum", (self.ref(A), 0), 1, A.cols, is_batch(A.rows) or A.batch_stat)

    def sum_cols(self, A):
        return self.temp("sum", (self.ref(A), 1), A.rows, 1, A.batch_stat)

    def rows(self, A):
        return A.rows if isinstance(A.rows, int) else B if A.rows == "B" else B * A.rows[1]

    def cols(self, A) -> int:
        return A.cols

    # -- activations: the table's stable forms and derivatives ---------------------
    def activation(self, name: str, Z):
        act = activations.get(name)
        if act.polynomial:  # identity: a = z
            return Z
        z = Z if self.is_named(Z) else self.name("z", Z)
        if act.elementwise:
            value = helper(act.stable)(z.expr) if act.stable in helper_names("py") else act.definition(z.expr)
            A = self.emit(f"a{self.position}{self.tag}", "expr", (value,), z.rows, z.cols)
        else:
            A = self.emit(f"a{self.position}{self.tag}", "call", (act.stable, z.expr.name), z.rows, z.cols)
        self.last_activation = (name, z.expr.name, A.expr.name)
        return A

    def activation_vjp(self, name: str, Z, A, G):
        act = activations.get(name)
        if not act.elementwise:  # softmax by rows: a ∘ (g − rowsum(g ∘ a))
            return self.mul(A, self.sub(G, self.sum_cols(self.mul(G, A))))
        if act.output_form is not None:
            prime = renamed(act.output_form, A.expr)
        else:
            prime = as_helper(renamed(act.prime, Z.expr), Z.expr).replace(sp.Heaviside, _step)
        return self.mul(G, Arr(prime, Z.rows, Z.cols))

    # -- shapes: windows, groups of rows, products per group (derive.tables.spatial) ------------
    def gather(self, A, index):
        index = tuple(index)
        source = self.gathered.get(A.expr.name) if isinstance(A.expr, sp.Symbol) else None
        if source is not None:  # a gather of a gather is one gather, by the composed map
            name, inner, cols = source
            A, index = Arr(sp.Symbol(name), A.rows, cols), tuple(-1 if i < 0 else inner[i] for i in index)
        plan = gather_plan(index, A.cols)
        if plan.how == "unchanged":
            return A
        name = self.ref(A)
        out = self.temp("gather", (name, self.constants.add(plan)), A.rows, len(index))
        self.gathered[out.expr.name] = (name, index, A.cols)
        return out

    def scatter(self, A, index, n: int):
        plan = scatter_plan(tuple(index), n)
        if plan.how == "unchanged":
            return A
        return self.temp("gather", (self.ref(A), self.constants.add(plan)), A.rows, n)

    def split_rows(self, A, k: int):
        return self.temp("reshape", (self.ref(A), k), scaled_rows(A.rows, A.cols // k), k)

    def merge_rows(self, A, n: int):
        return self.temp("reshape", (self.ref(A), n * A.cols), scaled_rows(A.rows, 1, n), n * A.cols)

    def bmm(self, A, Bv, a: int, b: int, ta: bool, tb: bool):
        rows = A.cols if ta else a
        cols = b if tb else Bv.cols
        args = (self.ref(A), self.ref(Bv), a, A.cols, b, Bv.cols, ta, tb, cols)
        return self.temp("bmm", args, scaled_rows(A.rows, rows, a), cols)

    def max_cols(self, A):
        if A.cols == 1:
            return A, Arr(sp.Integer(1), A.rows, 1)
        name = self.ref(A)
        top = self.temp("max", (name,), A.rows, 1)
        mask = self.emit(f"mask{self.position}{self.tag}", "argmax", (name, top.expr.name), A.rows, A.cols)
        return top, mask

    def causal(self, S, n: int):
        return self.temp("causal", (self.ref(S), n, S.cols), S.rows, S.cols)

    def concat(self, *As):
        return self.temp("concat", tuple(self.ref(A) for A in As), As[0].rows, sum(A.cols for A in As))

    def zeros(self, rows: int, cols: int):
        return self.temp("zeros", (rows, cols), rows, cols)


class Constants:
    """The index maps a module takes along the columns: one constant per distinct map, named in the order first
    met (forward, backward, inference), so that the same spec prints the same names."""

    def __init__(self):
        self.names: dict[tuple, str] = {}

    def add(self, plan: Plan) -> Plan:
        """The plan, its constant named (_INDEX0, _INDEX1, ...) when it takes one."""
        if plan.constant is None:
            return plan
        key = (plan.constant, plan.args)
        if key not in self.names:
            self.names[key] = f"_INDEX{len(self.names)}"
        return Plan(plan.how, (self.names[key],) + plan.args, plan.constant, plan.padded, plan.summed)

    def items(self) -> list[tuple[str, tuple, tuple]]:
        """(name, the index, its shape: (n,) or (sources per target, targets)) in order."""
        return [(name, constant, args or (len(constant),)) for (constant, args), name in self.names.items()]


def _step(u, h0=sp.S.Half):
    """Heaviside(u) with H(0) = h0 as (sign(u) + 1)/2 (+ (h0 − 1/2)(1 − sign(u)²), nothing when h0 is 1/2): the
    same value everywhere, and NumPy's sign is ten times faster than its heaviside (a ReLU's σ'(z) on every
    entry of a convolution's z)."""
    return sp.sign(u) / 2 + sp.S.Half + (h0 - sp.S.Half) * (1 - sp.sign(u) ** 2)


def lowest(expr: sp.Expr) -> sp.Expr:
    """An elementwise expression cancelled exactly where it divides by an array (lowest_terms), else as it is:
    (v + ε)^(-1/2) is no denominator to clear, and stays 1/sqrt(v + ε) as the table writes it."""
    divides = any(p.exp.is_negative and p.exp.is_integer and p.base.free_symbols for p in expr.atoms(sp.Pow))
    return lowest_terms(expr) if divides else expr


# ---------------------------------------------------------------------------
# the module's passes
# ---------------------------------------------------------------------------

@dataclass
class Trace:
    """The lines of forward, backward and inference, and what the module around them needs to know."""

    spec: LayeredSpec
    params: list[tuple[str, tuple[int, int], int]] = field(default_factory=list)  # (key, shape, fan-in)
    forward: list[Line] = field(default_factory=list)
    backward: list[Line] = field(default_factory=list)
    inference: list[Line] = field(default_factory=list)
    output: str = ""
    inference_output: str = ""
    cache: list[tuple[str, tuple]] = field(default_factory=list)  # (name, (rows, cols))
    grads: list[tuple[str, str]] = field(default_factory=list)  # (gradient's name, parameter key)
    running: list[tuple[str, str, bool]] = field(default_factory=list)
    state: list[tuple[str, tuple[int, int]]] = field(default_factory=list)
    g: sp.Expr | None = None  # dC/d(output) of one entry, sympy.diff of the cost
    cost_term: sp.Expr | None = None
    cost_term_z: sp.Expr | None = None  # the cost through the output activation's argument (stable logs)
    z_name: str | None = None
    output_of_z: sp.Expr | None = None
    output_range: object = None
    starts: dict = field(default_factory=dict)
    shapes: dict = field(default_factory=dict)  # name -> (rows, cols); rows "B": one per example
    constants: Constants = field(default_factory=lambda: Constants())  # the index maps the lines take


def _param_leaves(ops: TraceOps, spec: LayeredSpec, trace: Trace | None = None) -> dict:
    P: dict = {}
    for block in spec.blocks:
        own = {}
        for pname, shape in KINDS[block.kind].params(block, spec.convention):
            key = f"{pname}{block.position}"
            rows, cols = shape if spec.convention == ROW else (shape[1], shape[0])  # as the equations read it
            own[pname] = ops.leaf(key if spec.convention == ROW else key + ".T", rows, cols)
            if trace is not None:
                trace.params.append((key, shape, rows))  # its fan-in: the rows x W reads (C·kh·kw for a kernel)
        P[block.position] = own
    return P


def trace_module(spec: LayeredSpec) -> Trace:
    """Run the layer table's forward and backward passes on the tracer: the module's lines."""
    trace = Trace(spec)
    ops = TraceOps(spec, constants=trace.constants)
    P = _param_leaves(ops, spec, trace)
    X = ops.leaf("a0", "B", spec.inputs)
    state: dict = {}
    out = forward_pass(ops, spec.layers, X, P, state)
    trace.output = ops.ref(out) if not _is_leaf(out) else ops.emit("output", "expr", (out.expr,), "B", out.cols).expr.name
    trace.forward, trace.running = ops.lines, ops.running
    fshapes = dict(ops.shapes)

    # dC/d(output): sympy.diff of the cost of one entry, times the batch's scale
    cost = COSTS[spec.cost]
    A = sp.Symbol(trace.output)
    term = cost.definition([A], [Y])
    trace.cost_term, trace.g = term, sp.diff(term, A)
    scale = INV_B if spec.batch == "mean" else sp.Integer(1)
    ops.lines = []
    ops.leaf("y", "B", spec.outputs)
    grads: dict = {}
    G = Arr(scale * trace.g, "B", spec.outputs)
    backward_pass(ops, spec.layers, G, P, state, grads)
    for block in spec.blocks:
        for pname, shape in KINDS[block.kind].params(block, spec.convention):
            key = f"{pname}{block.position}"
            value = grads[block.position][pname]
            name = ops.emit(f"dC_d{key}", "expr", (lowest(value.expr),), value.rows, value.cols).expr.name
            ops.lines[-1].transposed = spec.convention != ROW
            trace.grads.append((name, key))
    trace.backward = fold(ops.lines, {n for n, _ in trace.grads}, ops.temp_names)

    # the cache: what backward reads of forward; the cost through the output activation's argument
    needs = set().union(*[line.reads() for line in trace.backward]) | {trace.output}
    if ops.last_activation and ops.last_activation[2] == trace.output:
        act = activations.get(ops.last_activation[0])
        trace.output_range = act.output_range
        if act.stable_logs and term.has(sp.log):
            Z = sp.Symbol(ops.last_activation[1])
            trace.cost_term_z = term.xreplace(log_rule(act.stable_logs(Z), A))
            trace.z_name = Z.name
            trace.output_of_z = helper(act.stable)(Z)
            needs.add(Z.name)
    trace.forward = fold(trace.forward, needs | {s for _, s, _ in trace.running}, ops.temp_names)
    defined = {"a0"} | {line.lhs for line in trace.forward}
    trace.cache = [(n, fshapes[n]) for n in ["a0"] + [line.lhs for line in trace.forward] if n in needs and n in defined]
    trace.state = [(key, _layout((1, fshapes[name][1]), spec)) for key, name, _ in trace.running]
    trace.starts = dict(ops.starts)
    trace.shapes = {**fshapes, **ops.shapes}

    # inference: the running averages in place of the batch statistics
    iops = TraceOps(spec, inference=True, constants=trace.constants)
    P = _param_leaves(iops, spec)
    out = forward_pass(iops, spec.layers, iops.leaf("a0", "B", spec.inputs), P, {})
    trace.inference_output = iops.ref(out) if not _is_leaf(out) else "a0"
    trace.inference = fold(iops.lines, {trace.inference_output}, iops.temp_names)
    return trace


def _is_leaf(A: Arr) -> bool:
    return isinstance(A.expr, sp.Symbol) and A.expr.name == "a0"


def _layout(shape: tuple[int, int], spec: LayeredSpec) -> tuple[int, int]:
    return shape if spec.convention == ROW else (shape[1], shape[0])


def fold(lines: list[Line], live: set[str], temps: set[str]) -> list[Line]:
    """The lines that compute `live`; each temporary read once is folded into the line that reads it (an
    elementwise one substituted, a product or sum printed in place), and common parts of the elementwise
    lines computed once (sympy.cse, each part just before the first line that needs it)."""
    keep, needed = [], set(live)
    for line in reversed(lines):
        if line.lhs in needed:
            keep.append(line)
            needed |= line.reads()
    keep.reverse()
    uses: dict[str, int] = {}
    for line in keep:
        for n in line.reads():
            uses[n] = uses.get(n, 0) + 1
    once = {n for n in temps if uses.get(n) == 1 and n not in live}
    # a copy `X = t` of a temporary read only there: t's line computes X
    copies = {line.args[0].name: line for line in keep if line.kind == "expr" and isinstance(line.args[0], sp.Symbol)
              and line.args[0].name in once}
    out: list[Line] = []
    value: dict[sp.Symbol, sp.Expr] = {}
    for line in keep:
        if line.lhs in copies:
            copy = copies[line.lhs]
            line = Line(copy.lhs, line.kind, line.args, copy.transposed)
        elif line.kind == "expr" and isinstance(line.args[0], sp.Symbol) and line.args[0].name in copies:
            continue
        if line.kind == "expr":
            line = Line(line.lhs, "expr", (line.args[0].xreplace(value),), line.transposed)
            if line.lhs in once:  # read by one elementwise line: substituted there
                value[sp.Symbol(line.lhs)] = line.args[0]
                if any(line.lhs in other.reads() and other.kind == "expr" for other in keep):
                    continue
        out.append(line)
    return _common_parts(out, once)


def _common_parts(lines: list[Line], inline: set[str]) -> list[Line]:
    """sympy.cse over the elementwise lines: a part two of them share is one line of its own, c0, c1, ..."""
    exprs = [line.args[0] for line in lines if line.kind == "expr"]
    taken = {line.lhs for line in lines}
    parts, reduced = sp.cse(exprs, symbols=(sp.Symbol(f"c{k}") for k in range(10**6) if f"c{k}" not in taken),
                            order="none")
    out: list[Line] = []
    done: set = set()
    it = iter(reduced)
    named: dict = {}  # a part that is a whole line's value takes that line's name
    for line in lines:
        if line.kind == "expr":
            expr = next(it).xreplace(named)
            if expr in dict(parts) and expr not in done:
                named[expr] = sp.Symbol(line.lhs)
                done.add(expr)
                expr = dict(parts)[expr].xreplace(named)
            for s, e in parts:
                if s not in done and s in _closure(expr, parts):
                    out.append(Line(s.name, "expr", (e.xreplace(named),)))
                    done.add(s)
            line = Line(line.lhs, "expr", (expr,), line.transposed)
        out.append(line)
    for line in out:
        line.inline = line.lhs in inline
    return out


def _closure(expr: sp.Expr, parts) -> set:
    """The cse symbols expr reads, directly or through other parts."""
    defs = dict(parts)
    found, todo = set(), [s for s in expr.free_symbols if s in defs]
    while todo:
        s = todo.pop()
        if s not in found:
            found.add(s)
            todo += [u for u in defs[s].free_symbols if u in defs]
    return found
