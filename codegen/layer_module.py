"""The module of a layer-list spec: the traced lines (codegen/layers.py) printed by a backend, laid out by
templates/module_layers.py.j2, one template for NumPy and CuPy (the backend is its record)."""

from __future__ import annotations

from pathlib import Path

import sympy as sp

from derive.errors import DeriveError
from derive.proofs.layered import LayeredProof
from derive.spec import LayeredSpec
from derive.tables.layers import KINDS, ROW

from .backends import BACKENDS
from .index_maps import hex_literal, outer_form
from .index_maps import literal as literal_ints
from .layers import B, INV_B, MOMENTUM, Line, Trace, base, flip, prove_layer_forms, trace_module
from .plan import helper_names
from .printers import formula
from .render import checked, command, environment, import_written, literal, log_floors, plain


# ---------------------------------------------------------------------------
# printing
# ---------------------------------------------------------------------------

class LinePrinter:
    """The lines of one function in one backend's array code."""

    def __init__(self, lines: list[Line], shapes: dict, backend, printer, like: str = "a0", constant_names=None,
                 returned: set[str] = frozenset(), function: str = ""):
        for line in lines:  # a gather is a step of its own, named, even when read once: the lines stay readable
            line.inline = line.inline and line.kind != "gather"
        self.lines = {line.lhs: line for line in lines}
        self.order = lines
        self.shapes, self.backend, self.p = shapes, backend, printer
        self.like = like  # an array of the function's dtype (new arrays take it)
        self.constant_names = constant_names or {}  # an index map's name in the trace -> in the module
        self.used_helpers: set[str] = set()
        self.used_ones = False
        self.used_zero = False  # a gather reads the padding: _with_zero appends the zero column
        self.used_max = False  # _row_max and _first_max (max pooling)
        # the takes whose values stay inside the function: written into buffers kept between calls (Backend.scratch)
        takes = {line.lhs for line in lines if line.kind == "gather" and line.args[1].how == "take"}
        self.kept = takes - escaping(lines, returned) if backend.scratch else set()
        self.function = function  # the buffers' keys: "<function>.<line>"
        self.used_scratch = False

    def batch(self, name: str) -> bool:
        return self.shapes.get(base(name), (None,))[0] == "B"

    def ref(self, name: str) -> str:
        """A name as code: an inline line's own code in parentheses (then .T when transposed)."""
        line = self.lines.get(base(name))
        if line is None or not line.inline:
            return name
        code = self.code(line)
        code = code if code.isidentifier() else f"({code})"
        return code + ".T" if name.endswith(".T") else code

    def code(self, line: Line) -> str:
        if line.kind == "expr":
            expr = line.args[0]
            if isinstance(expr, sp.Symbol) and expr.name in self.lines and self.lines[expr.name].inline:
                inner = self.lines[expr.name]
                return self.code(Line(line.lhs, inner.kind, inner.args, line.transposed))
            self.p.names = {n: self.ref(n) for n in map(str, expr.free_symbols)}
            text = self.p.doprint(expr)
            return (f"{text}.T" if isinstance(expr, sp.Symbol) else f"({text}).T") if line.transposed else text
        if line.kind == "matmul":
            left, right = line.args
            if line.transposed:  # (L R)ᵀ = Rᵀ Lᵀ
                left, right = flip(right), flip(left)
            dot = self.backend.batch_dot
            if dot and left.endswith(".T") and not right.endswith(".T") and self.batch(left) and self.batch(right):
                self.used_helpers.add(dot)
                return f"{dot}({self.ref(base(left))}, {self.ref(right)})"
            return f"{self.ref(left)} @ {self.ref(right)}"
        if line.kind == "sum":
            name, axis = line.args
            ones = self.backend.batch_ones  # a sum over the batch as one matrix-vector product, where the record says
            if ones and axis == 0 and self.batch(name):
                self.used_ones = True
                return f"{self.ref(flip(name))} @ {ones}" if line.transposed else f"{ones}.T @ {self.ref(name)}"
            code = self.ref(name)
            if axis == 0 and code.isidentifier() and isinstance(self.shapes.get(base(name), (0,))[0], tuple):
                # rows in groups (a convolution's positions): a product with ones, as for the batch's rows
                row = f"{self.backend.xp}.ones((1, {code}.shape[0]), dtype={code}.dtype)"
                return f"({row} @ {code}).T" if line.transposed else f"{row} @ {code}"
            return f"{code}.sum(axis={axis}, keepdims=True)" + (".T" if line.transposed else "")
        if line.kind != "call":
            code = self.shape_step(line)
            return f"({code}).T" if line.transposed else code
        helper_name, arg = line.args
        self.used_helpers.add(helper_name)
        return f"{helper_name}({self.ref(arg)})"

    def shape_step(self, line: Line) -> str:
        """A step of derive.tables.spatial's algebra: gathers, reshapes, products per group, max, masks."""
        xp, args = self.backend.xp, line.args
        if line.kind == "gather":
            return self.gather(self.ref(args[0]), args[1], line.lhs)
        if line.kind == "reshape":
            return f"{self.ref(args[0])}.reshape(-1, {args[1]})"
        if line.kind == "bmm":  # rows in groups: 3-D views, one batched product
            a_name, b_name, a, ka, b, kb, ta, tb, cols = args
            left = f"{self.ref(a_name)}.reshape(-1, {a}, {ka})" + (".swapaxes(1, 2)" if ta else "")
            right = f"{self.ref(b_name)}.reshape(-1, {b}, {kb})" + (".swapaxes(1, 2)" if tb else "")
            return f"({left} @ {right}).reshape(-1, {cols})"
        if line.kind in ("max", "argmax"):  # module helpers: a reduction along a short row is slow
            self.used_max = True
            return f"_row_max({self.ref(args[0])})" if line.kind == "max" else \
                f"_first_max({self.ref(args[0])}, {self.ref(args[1])})"
        if line.kind == "causal":  # entry (i, j) of each group of n rows with j > i is left out of the softmax
            name, n, cols = args
            return (f"{xp}.where({xp}.tri({n}, {cols}, dtype=bool), {self.ref(name)}.reshape(-1, {n}, {cols}), "
                    f"-{xp}.inf).reshape(-1, {cols})")
        if line.kind == "concat":
            return f"{xp}.concatenate(({', '.join(self.ref(a) for a in args)}), axis=1)"
        assert line.kind == "zeros", line.kind
        return f"{xp}.zeros(({args[0]}, {args[1]}), dtype={self.like}.dtype)"

    def gather(self, name: str, plan, lhs: str) -> str:
        """Columns of `name` by an index map, as its plan says (codegen/index_maps.py); a take the function keeps
        to itself into its buffer (_take)."""
        xp = self.backend.xp
        if plan.how == "slice":
            start, stop, step = plan.args
            return f"{name}[:, {start}:{stop}{'' if step == 1 else f':{step}'}]"
        if plan.how == "transpose":
            rows, cols = plan.args
            return f"{name}.reshape(-1, {rows}, {cols}).swapaxes(1, 2).reshape(-1, {rows * cols})"
        if plan.how == "repeat":
            return f"{xp}.repeat({name}, {plan.args[0]}, axis=1)"
        if plan.padded:
            self.used_zero = True
            name = f"_with_zero({name})"
        index = self.constant_names[plan.args[0]]
        if lhs in self.kept:
            self.used_scratch = True
            code = f'_take({name}, {index}, "{self.function}.{lhs}")'
        else:
            code = f"{xp}.take({name}, {index}, axis=1)"
        return code + ".sum(axis=1)" if plan.summed else code

    def text(self) -> list[str]:
        out = [f"{line.lhs} = {self.code(line)}" for line in self.order if not line.inline]
        self.used_helpers |= self.p.used_helpers
        return out


def escaping(lines: list[Line], returned: set[str]) -> set[str]:
    """The lines whose arrays leave the function: those it returns (or caches) and every array one of them may
    be a view of (a reshape, a slice or transpose of columns, a plain name, each maybe printed inline)."""
    by_name = {line.lhs: line for line in lines}
    out: set[str] = set()
    todo = [base(n) for n in returned]
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        line = by_name.get(name)
        if line is None:
            continue
        if line.kind == "reshape" or (line.kind == "gather" and line.args[1].how != "take"):
            todo.append(base(line.args[0]))
        elif line.kind == "expr" and isinstance(line.args[0], sp.Symbol):
            todo.append(base(line.args[0].name))
    return out


# ---------------------------------------------------------------------------
# the module
# ---------------------------------------------------------------------------

# how init_params starts a parameter, by its name in the layer table (every other one at 0): a weight matrix
# (W, a kernel, attention's Wq, Wk, Wv, Wo, an rnn's Wxh, Whh: every name that starts with W) from
# N(0, 1/fan_in) as the dense modules, a norm's scale gamma at 1 (PyTorch's and the papers' start). A
# weight at 0 would never move where two of them multiply (Q Kᵀ with Wq = Wk = 0 has zero gradients).
START = {"W": '"normal"', "gamma": "1.0"}


def _start(key: str) -> str:
    name = key.rstrip("0123456789")
    return START["W"] if name.startswith("W") else START.get(name, "0.0")


def _shape_text(shape) -> str:
    """A shape as the module writes it: None for the batch's rows, (None, n) for n rows per example."""
    def one(n) -> str:
        return "None" if n == "B" else f"(None, {n[1]})" if isinstance(n, tuple) else str(n)
    return "(" + ", ".join(map(one, shape)) + ("," if len(shape) == 1 else "") + ")"


def _reads(lines: list[Line], symbol: sp.Symbol) -> bool:
    return any(line.kind == "expr" and symbol in line.args[0].free_symbols for line in lines)


def layer_docs(spec: LayeredSpec) -> tuple[list[str], list[str], list[str]]:
    """The layer list as the module's docstring gives it, and each kind's forward and backward formulas (the table's)."""
    listing, fwd, bwd = [], [], []

    def walk(blocks, depth):
        for b in blocks:
            kind = KINDS[b.kind]  # its settings, as the table lists them
            what = b.kind + (f" {b.activation}" if "activation" in kind.keys else "")
            head = f"{'  ' * depth}layer {b.position}: {what}, width {b.width}"
            if len(b.shape_in) > 1 or len(b.shape) > 1:  # a shaped layer: its shapes and settings
                settings = [f"{key} {_setting(getattr(b, key))}" for key in kind.keys if key not in ("activation",)]
                head += f", {list(b.shape_in)} -> {list(b.shape)}" + "".join(f", {x}" for x in settings)
            listing.append(head + (f", eps = {b.eps}" if "eps" in kind.keys else ""))
            fwd.append(f"{'  ' * depth}layer {b.position} ({b.kind}): {_one_line(kind.forward.__doc__ or kind.doc)}")
            walk(b.inner, depth + 1)
    walk(spec.layers, 0)
    for b in reversed(spec.blocks):
        bwd.append(f"layer {b.position} ({b.kind}): {_one_line(KINDS[b.kind].backward.__doc__ or '')}")
    return listing, fwd, bwd


def _setting(value) -> str:
    return "x".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_layers(spec: LayeredSpec, backend_name: str, trace: Trace | None = None, env=None) -> str:
    """The module of a layer-list spec for one backend (its record's printer, array module and helpers)."""
    backend = BACKENDS[backend_name]
    trace = trace or trace_module(spec)
    env = env or environment()
    helpers = helper_names("py")

    with_zero = with_max = scratch = False
    constants = _used_constants(trace)

    def printed(lines, rows: str, returned: set[str], function: str):
        nonlocal with_zero, with_max, scratch
        lp = LinePrinter(lines, trace.shapes, backend, backend.printer({}, helpers), rows,
                         {old: new for new, (old, _, _) in constants.items()}, returned, function)
        text = lp.text()
        if lp.used_ones:  # sums over the batch are products with it
            text.insert(0, f"{backend.batch_ones} = {backend.xp}.ones(({rows}.shape[0], 1), dtype={rows}.dtype)")
        with_zero |= lp.used_zero
        with_max |= lp.used_max
        scratch |= lp.used_scratch
        return text, lp.used_helpers

    fwd, used_f = printed(trace.forward, "a0", {trace.output} | {n for n, _ in trace.cache}
                          | {name for _, name, _ in trace.running}, "forward")
    bwd, used_b = printed(trace.backward, trace.output, {n for n, _ in trace.grads}, "backward")
    inf, used_i = printed(trace.inference, "a0", {trace.inference_output}, "inference")
    cost_printer = backend.printer({}, helpers, floor_logs="tiny")
    cost_term = cost_printer.doprint(trace.cost_term)
    cost_z = cost_printer.doprint(trace.cost_term_z) if trace.cost_term_z is not None else None
    output_of_z = cost_printer.doprint(trace.output_of_z) if trace.output_of_z is not None else None
    floored = log_floors(trace.cost_term, cost_printer)
    row = spec.convention == ROW
    listing, fwd_doc, bwd_doc = layer_docs(spec)
    output_activation = spec.output_activation
    init = [(key, _start(key), fan_in) for key, _, fan_in in trace.params]
    context = dict(
        backend=backend, xp=backend.xp,
        std_imports=sorted({"math", "numbers"} | ({"warnings"} if floored else set()) | ({"threading"} if scratch else set())),
        lib_imports=sorted({backend.import_line, "import numpy"}),
        command=command(spec), source=plain(spec.source), spec_name=plain(spec.name), name_literal=literal(spec.name),
        choices={k: plain(getattr(spec, k)) for k in ("cost", "batch", "convention")},
        layers=[plain(s) for s in listing], row=row, sizes=list(spec.sizes),
        params=[(k, _shape_text(s)) for k, s, _ in trace.params],
        state=[(k, _shape_text(s)) for k, s in trace.state],
        state_start=[(k, repr(trace.starts[k])) for k, _ in trace.state],
        cache_keys=[n for n, _ in trace.cache],
        cache_tuple=repr(tuple(n for n, _ in trace.cache)).replace("'", '"'),
        cache_shapes=_shape_text([_shape_text(s) for _, s in trace.cache]).replace("'", ""),
        cache_names=", ".join(n for n, _ in trace.cache) + ("," if len(trace.cache) == 1 else ""),
        batch_dim="1" if spec.batch == "single" else "None", momentum=MOMENTUM,
        forward_doc=fwd_doc, backward_doc=bwd_doc,
        param_names=(", ".join(k for k, _, _ in trace.params) + ("," if len(trace.params) == 1 else "")) or "_",
        uses_B=_reads(trace.forward, B), uses_inv_B=_reads(trace.forward, INV_B),
        backward_uses_B=_reads(trace.backward, B), backward_uses_inv_B=_reads(trace.backward, INV_B),
        forward_lines=fwd, backward_lines=bwd, inference_lines=inf,
        output=trace.output, output_finite=f"_finite({trace.output})",
        inference_output=trace.inference_output, inference_finite=f"_finite({trace.inference_output})",
        updates=[(k, name if row else f"{name}.T", bessel) for k, name, bessel in trace.running],
        g=formula(trace.g), mean=spec.batch == "mean", grads=trace.grads,
        cost_term=cost_term, cost_term_doc=formula(trace.cost_term), cost_term_z=cost_z,
        cost_term_z_doc=formula(trace.cost_term_z) if trace.cost_term_z is not None else None,
        z_name=trace.z_name, output_of_z=output_of_z, cost_floored=floored, output_range=trace.output_range,
        activations=[plain(output_activation)], scale="inv_B*" if spec.batch == "mean" else "",
        from_host=backend.from_host.format("value"), init=init,
        helpers=sorted(used_f | used_b | used_i | cost_printer.used_helpers),
        constants=[(name, _constant(backend, index, shape)) for name, (_, index, shape) in constants.items()],
        outer=any(outer_form(index) is not None for _, index, _ in constants.values()),
        shaped=bool(spec.input_shape), with_zero=with_zero, with_max=with_max, scratch=scratch,
        grouped_cache=any(isinstance(shape[0], tuple) for _, shape in trace.cache),
        input_layout=_input_layout(spec), param_layouts=_param_layouts(spec),
    )
    return env.get_template("module_layers.py.j2").render(**context)


def _used_constants(trace: Trace) -> dict:
    """The index maps the printed lines take (a map of a folded line is not printed), numbered in order:
    module name -> (trace name, index, shape)."""
    used = {line.args[1].args[0] for line in trace.forward + trace.backward + trace.inference
            if line.kind == "gather" and line.args[1].how == "take"}
    kept = [item for item in trace.constants.items() if item[0] in used]
    return {f"_INDEX{k}": item for k, item in enumerate(kept)}


def _constant(backend, index: tuple[int, ...], shape: tuple[int, ...]) -> str:
    """An index map as a module constant of the backend's integer arrays (codegen/index_maps.py): its outer-sum form
    where one is much shorter (windows shifted by their positions), else its literal."""
    outer = outer_form(index)
    if outer is None:
        code = f"{backend.xp}.array({literal_ints(index)}, dtype=numpy.intp)"
    else:
        base, window, holes = outer
        args = [literal_ints(base), literal_ints(window)] + ([hex_literal(holes)] if holes else [])
        code = f"{backend.xp}.asarray(_outer({', '.join(args)}), dtype=numpy.intp)"
    return code if len(shape) == 1 else f"{code}.reshape{shape}"


def _input_layout(spec: LayeredSpec) -> str:
    """How x's rows lay out a shaped example ([C, H, W], [C, L], [T, d]); empty for a flat input."""
    if not spec.input_shape:
        return ""
    return (f"Each row of x is one example of shape [{', '.join(map(str, spec.input_shape))}] flattened with its "
            f"first axis slowest (C, H, W order for an image, position by position for a sequence): "
            f"torch.flatten(x, 1) of a batch of that shape, x.reshape(B, -1) of a NumPy one.")


# what a parameter of a shaped kind is in PyTorch (the table's layout in the column convention)
TORCH_LAYOUT = {
    "conv2d": "W (out_channels, C·kh·kw) is torch's Conv2d weight.reshape(out_channels, -1), b its bias",
    "conv1d": "W (out_channels, C·k) is torch's Conv1d weight.reshape(out_channels, -1), b its bias",
    "attention": "Wq, Wk, Wv (d_k, d) and Wo (d, d_k) are bias-free nn.Linear weights: Q = x Wqᵀ per position",
    "rnn": "Wxh (H, d), Whh (H, H) and b (H, 1) are torch.nn.RNN's weight_ih_l0, weight_hh_l0 and b_ih_l0 + b_hh_l0",
}


def _param_layouts(spec: LayeredSpec) -> list[str]:
    """One line per parameter-holding shaped layer: its parameters as PyTorch holds them."""
    out = []
    for b in spec.blocks:
        if b.kind in TORCH_LAYOUT and KINDS[b.kind].params(b, spec.convention):
            out.append(f"layer {b.position} ({b.kind}): {TORCH_LAYOUT[b.kind]}.")  # the table's own text: no escapes
    return out


def layer_backends(backends) -> list[str]:
    """The backends named that print layer lists (their records say so), in the order given."""
    return [name for name in backends if BACKENDS[name].layer_lists]


def generate_layers(spec: LayeredSpec, backends, proof: LayeredProof | None = None) -> dict[str, str]:
    """File name -> text for a layer-list spec: <name>_<backend>.py for each backend named that prints layer lists.

    proof: `prove_layer_forms(spec)`, made here when not given; nothing is printed unless it is ok.
    """
    spec = checked(spec)
    proof = proof or prove_layer_forms(spec)
    if not proof.ok:
        raise DeriveError(f"{spec.source}: the layers' backward forms are not proven ({proof.summary()}); nothing is printed")
    names = layer_backends(backends)
    if not names:
        raise DeriveError(f"{spec.source}: a layer list is printed for {', '.join(layer_backends(_all()))} only, "
                          f"not {', '.join(backends)}; use --backend numpy or cupy")
    trace = trace_module(spec)
    env = environment()
    return {f"{spec.name}_{name}.py": render_layers(spec, name, trace, env) for name in names}


def _all():
    return list(BACKENDS)


def load_layers(spec: LayeredSpec, folder: Path, backend: str = "numpy", proof: LayeredProof | None = None):
    """Generate a layer-list spec's module for `backend` into `folder` and import it."""
    return import_written(generate_layers(spec, [backend], proof), Path(folder), f"{spec.name}_{backend}")
