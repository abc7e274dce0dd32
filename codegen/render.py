"""Turn a plan into code: the lines of each function for one backend, the CUDA kernels, the files.

What differs between backends is read from their records (codegen/backends.py). A backend
that runs lines as written does elementwise lines in place where the equation allows and the
record lets it (`z1 += b1`, `delta1 *= a1*(1 - a1)`, `sigmoid(z1, out=z1)`); a fused one
(CuPy) keeps the matrix products as cuBLAS calls and fuses each run of elementwise lines
into one CUDA kernel whose body the C printer writes from the same SymPy expressions.
"""

from __future__ import annotations

import importlib.util
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import sympy as sp

from derive.errors import SpecError
from derive.proofs.concrete import Proof
from derive.spec import Spec, builtin_names, validate
from derive.tables.layers import DENSE

from .backends import BACKENDS, Backend
from .plan import Line, Plan, helper_names, make_plan, names_in, prove_forms
from .printers import CudaPrinter, formula, rowsum

DTYPES = (("f64", "double"), ("f32", "float"))
THREADS = 256


def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("codegen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


# Text a user supplies (a spec file's name above all) reaches a generated file only through
# `plain`: it may sit in a Python comment, docstring or string literal and in a CUDA comment.
PLAIN = frozenset(string.ascii_letters + string.digits + " !#$%&()+,-./:;<=>@[]^_{|}~")


def plain(text: str) -> str:
    """text with every character outside PLAIN written as its Python escape (\\xNN, \\uNNNN, \\UNNNNNNNN)."""
    # no line break, quote, backslash, `*` or `?` is left as itself: nothing can end a comment,
    # docstring or literal, continue a C comment onto the next line, or form a trigraph
    return "".join(c if c in PLAIN else _escape(ord(c)) for c in str(text))


def _escape(n: int) -> str:
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def literal(text: str) -> str:
    """A Python string literal whose value is text."""
    return f'"{plain(text)}"'


def command(spec: Spec) -> str:
    target = spec.name if spec.name in builtin_names() and spec.source.startswith("derive/specs/") else spec.source
    # quoted for a POSIX shell: pasted there, the line names the file and runs nothing else
    return f"python -m codegen {shlex.quote(plain(target))}"


@dataclass
class Kernel:
    """One fused elementwise kernel: its arrays, its per-element expressions, its launch."""

    name: str
    pointers: list[tuple[str, str, bool]]  # (name, kind "full"/"col"/"row", written)
    loads: list[tuple[str, str]]  # (name, kind) of the pointers the body reads, in pointer order
    scalars: list[str]
    temps: list[tuple[str, sp.Expr]]
    stores: list[tuple[str, sp.Expr]]
    like: str  # the array it writes first: the launch covers its size and last axis
    checks: list[tuple[sp.Expr, int]] = field(default_factory=list)  # (value, k): p_flags[k] = 1 where not finite


@dataclass
class Function:
    lines: list[str] = field(default_factory=list)
    kernels: list[Kernel] = field(default_factory=list)


class Renderer:
    def __init__(self, plan: Plan, backend: Backend):
        self.plan, self.backend = plan, backend
        helpers = helper_names("py")
        batch = {f"{p}{l}" for l in range(plan.spec.depth + 1) for p in ("a", "A", "delta")}
        self.printer = backend.printer(plan.names, helpers, batch_dot=backend.batch_dot, batch=batch,
                                       ones=backend.batch_ones)
        self.cost_printer = backend.printer(plan.names, helpers, floor_logs="tiny")
        self.xp = backend.xp

    # -- one function's body ---------------------------------------------------
    def body(self, lines: list[Line], live_at_end: list[str], fn: str, checks: dict[str, list[str]],
             flagged: dict[str, int] | None = None) -> Function:
        """The lines of one function. checks: lines after the last line of a name (a backend that runs lines
        as written); flagged: name -> k for a backend whose kernels flag non-finite values into flags[k]."""
        out = Function()
        defined: set[str] = set()
        flagged = dict(flagged or {})
        pending = {n for n in flagged if not any(line.lhs == n for line in lines)}  # inputs: checked where read
        temps = sp.numbered_symbols("t")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.kind == "elementwise" and self.backend.fused:
                j = i
                while j < len(lines) and lines[j].kind == "elementwise":
                    j += 1
                live = set(live_at_end)
                for later in lines[j:]:
                    live |= names_in(later.expr)
                candidates = {n: flagged[n] for n in pending | {s.lhs for s in lines[i:j]} if n in flagged}
                kernel_lines, covered = self.fuse(lines[i:j], live, defined, fn, out, candidates)
                out.lines += kernel_lines
                pending = (pending | set(candidates)) - covered
                out.lines += self.flag_lines(pending, flagged)  # not read by the kernel: checked on their own now
                pending = set()
                defined |= {s.lhs for s in lines[i:j]}
                i = j
                continue
            out.lines += self.line(line, defined, temps)
            defined.add(line.lhs)
            if i + 1 == len(lines) or lines[i + 1].lhs != line.lhs:
                out.lines += checks.get(line.lhs, [])
                if line.lhs in flagged:  # the next kernel checks it if it reads it; else it is checked now
                    pending.add(line.lhs)
                    if not (i + 1 < len(lines) and lines[i + 1].kind == "elementwise" and self.backend.fused):
                        out.lines += self.flag_lines(pending, flagged)
                        pending = set()
            i += 1
        out.lines += self.flag_lines(pending, flagged)
        return out

    def flag_lines(self, names, flagged: dict[str, int]) -> list[str]:
        """A launch per array that sets flags[k] when the array is not finite."""
        return [f"_flag({n}, flags, {flagged[n]})" for n in sorted(names, key=flagged.get)]

    def line(self, line: Line, defined: set[str], temps) -> list[str]:
        p = self.printer
        note = f"  # {line.note}" if line.note else ""
        expr = line.expr
        if line.kind == "matrix":
            return [f"{line.lhs} = {p.doprint(expr)}{note}"]
        in_place = self.backend.in_place
        if line.kind == "elementwise" and line.lhs in defined and in_place:
            own = sp.Symbol(line.lhs)
            for cls, op in ((sp.Add, "+="), (sp.Mul, "*=")):
                if isinstance(expr, cls) and own in expr.args:
                    rest = cls(*[a for a in expr.args if a != own])
                    return [f"{line.lhs} {op} {p.doprint(rest)}{note}"]
        code = p.call_into(expr, line.out) if line.out and in_place else None
        if code or line.kind == "call":  # into the dead buffer, or a call as it prints
            return [f"{line.lhs} = {code or p.doprint(expr)}{note}"]
        replacements, (reduced,) = sp.cse([expr], symbols=temps)
        lines = [f"{t} = {p.doprint(v)}" for t, v in replacements]
        return lines + [f"{line.lhs} = {p.doprint(reduced)}{note}"]

    # -- CuPy: a run of elementwise steps as one kernel -------------------------
    def fuse(self, group: list[Line], live: set[str], defined: set[str], fn: str, function: Function,
             flagged: dict[str, int]) -> tuple[list[str], set[str]]:
        """One kernel for a run of elementwise lines, and the names of `flagged` (name -> k) it checks are
        finite: those it computes (their final value) or reads."""
        value: dict[str, sp.Expr] = {}
        order: list[str] = []
        for line in group:
            expr = line.expr.xreplace({sp.Symbol(n): v for n, v in value.items()})
            value[line.lhs] = expr
            if line.lhs not in order:
                order.append(line.lhs)
        outputs = [n for n in order if n in live]
        lines: list[str] = []
        # sums over a row are not elementwise: computed first, read per row
        sums: dict[sp.Expr, sp.Symbol] = {}
        for n in outputs:
            for r in sorted(value[n].atoms(rowsum), key=sp.default_sort_key):
                if r not in sums:
                    sums[r] = sp.Symbol(f"{fn[0]}sum{len(function.kernels)}_{len(sums)}")
                    lines.append(f"{sums[r]} = {self.printer.doprint(r)}")
        stores = [(n, value[n].xreplace(sums)) for n in outputs]
        # a flagged name is checked as the group computes it, or as the group reads it
        read_any = set().union(*[e.free_symbols for _, e in stores])
        covered = sorted((n for n in flagged if n in value or sp.Symbol(n) in read_any), key=flagged.get)
        checks = [(value.get(n, sp.Symbol(n)).xreplace(sums), flagged[n]) for n in covered]
        exprs = [e for _, e in stores] + [e for e, _ in checks]
        reads = sorted(set().union(*[e.free_symbols for e in exprs]), key=lambda s: s.name)
        row_sums = set(sums.values())
        kind = {s.name: self.plan.kinds.get(s.name, "row" if s in row_sums else "full") for s in reads}
        full = [s.name for s in reads if kind[s.name] == "full"]
        if not full:
            raise AssertionError(f"{fn}: an elementwise group reads no (B, n) array: {stores}")
        shape_of = full[0]
        for n in outputs:  # where each result goes: in place, a dead buffer it may take, or a new array
            src = next(s for s in reversed(group) if s.lhs == n)
            if n in defined:
                continue
            if src.out and src.out not in live:
                lines.append(f"{n} = {src.out}")
            else:
                lines.append(f"{n} = {self.xp}.empty_like({shape_of})")
        written = list(outputs)
        pointers: list[tuple[str, str, bool]] = []
        scalars: list[str] = []
        for s in reads:
            if kind[s.name] == "scalar":
                scalars.append(s.name)
            elif s.name not in written:
                pointers.append((s.name, kind[s.name], False))
        pointers += [(n, "full", True) for n in written]
        pointers.sort(key=lambda p: (not p[2], p[0]))  # outputs first, then inputs, each by name
        like = pointers[0][0]  # the launch is sized by an array it writes, never by one it only reads
        replacements, reduced = sp.cse(exprs, symbols=sp.numbered_symbols("t"))
        used = {s.name for e in [*reduced, *(v for _, v in replacements)] for s in e.free_symbols}
        loads = [(n, k) for n, k, _ in pointers if n in used]  # an output whose old value is not read: no load
        kname = f"{fn}_{'_'.join(outputs)}"
        kernel = Kernel(kname, pointers, loads, scalars, list(replacements),
                        list(zip([n for n, _ in stores], reduced[:len(stores)])), like,
                        [(e, k) for e, (_, k) in zip(reduced[len(stores):], checks)])
        function.kernels.append(kernel)
        args = [p[0] for p in pointers] + (["flags"] if checks else []) + [f"_scalar({s}, {kernel.like})" for s in scalars]
        notes = "; ".join(s.note for s in group if s.note)
        lines.append(f"_run({kname!r}, {kernel.like}, {', '.join(args)})" + (f"  # {notes}" if notes else ""))
        return lines, set(covered)


# ---------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------

def _shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def param_shapes(spec: Spec) -> list[tuple[str, tuple[int, int]]]:
    """(W1, shape), (b1, shape), ... in the spec's layout, as the layer table gives them (every layer is dense)."""
    n, out = spec.sizes, []
    for l in range(1, spec.depth + 1):
        out += [(f"{name}{l}", shape) for name, shape in DENSE.params(n[l - 1], n[l], spec.convention, spec.bias)]
    return out


def orientation_note(spec: Spec) -> list[str]:
    if spec.convention == "row":
        return [
            "Arrays are batch-first: x is (B, n0), one example per row. The spec is written in",
            "the row convention (z = a W + b with row vectors), which is batch-first already, so",
            "each line is the equation as the spec writes it.",
        ]
    example = {"separate": "z1 = a0 @ W1.T + b1.T is (W1 a0 + b1)ᵀ", "none": "z1 = a0 @ W1.T is (W1 a0)ᵀ",
               "augmented": "z1 = A0 @ W1.T is (W1 A0)ᵀ"}[spec.bias]
    return [
        "Arrays are batch-first: x is (B, n0), one example per row. The spec is written in the",
        "column convention (z = W a + b, examples as columns), so every batch quantity (a, z,",
        f"delta) is stored as the transpose of the spec's: {example}",
        "and w2.T @ delta2 becomes delta2 @ W2. The parameters keep the spec's own layout.",
    ]


def backend_code(backend: Backend, output: str) -> dict[str, str | None]:
    """The lines of the argument checks and of init_params where backends differ, from the record."""
    kept = backend.contiguous or "{}"
    return dict(
        params_in_forward="_params(params, a0.dtype)",
        param_layout=f" or not {backend.is_contiguous.format('v')}" if backend.is_contiguous else "",
        param_kept=kept.format("value"),
        cache_fast=f"[{kept.format('v')} for v in values]" if backend.contiguous else "values",
        cache_kept=kept.format("value"),
        target_finite=backend.target_finite.format("y"),
        target_kept=kept.format("y"),
        output_finite=backend.finite.format(output),
        from_host=backend.from_host.format("value"),
        read_only=backend.read_only.format("params[key]") if backend.read_only else None,
    )


def render_module(plan: Plan, backend: str, env: jinja2.Environment | None = None) -> tuple[str, list[Kernel]]:
    """The module of `plan` for the backend of that name, and the CUDA kernels it launches (fused backends)."""
    env = env or environment()
    spec, L = plan.spec, plan.spec.depth
    backend = BACKENDS[backend]
    r = Renderer(plan, backend)
    params = param_shapes(spec)
    p = r.printer
    # every pre-activation z{l} is checked for a NaN or inf (the inputs' and an overflow's): after each
    # one, or flagged where the kernels compute or read it and read once at the end (one transfer);
    # the targets likewise
    checks: dict[str, list[str]] = {}
    if backend.flags:
        fwd_flags, bwd_flags = {f"z{l}": l - 1 for l in range(1, L + 1)}, {"y": 0}
        fwd_start = [f"flags = {backend.xp}.zeros({L}, dtype=numpy.uint32)  # flags[l - 1]: z{{l}} has a NaN or inf"]
        fwd_end = ["bad = _first_flag(flags)  # the one transfer from the device",
                   "if bad is not None:", "    _not_finite(f\"z{bad + 1}\", x, params)"]
        bwd_start = [f"flags = {backend.xp}.zeros(1, dtype=numpy.uint32)  # flags[0]: y has a NaN or inf"]
        bwd_end = ["if _first_flag(flags) is not None:  # the one transfer from the device", "    _target_not_finite(y)"]
    else:
        fwd_flags, bwd_flags, fwd_start, fwd_end, bwd_end = {}, {}, [], [], []
        bwd_start = [f"if not {backend.target_finite.format('y')}:", "    _target_not_finite(y)"]
        for l in range(1, L + 1):
            checks[f"z{l}"] = [f"if not {backend.finite.format(f'z{l}')}:", f"    _not_finite(\"z{l}\", x, params)"]
    fwd = r.body(plan.forward, plan.cache_keys + [f"a{L}"], "forward", checks, fwd_flags)
    bwd = r.body(plan.backward, [name for name, _ in _grad_names(spec)], "backward", {}, bwd_flags)
    term = formula(plan.cost_term)
    cost_plain = r.cost_printer.doprint(plan.cost_term)
    cost_z = p.doprint(plan.cost_term_z) if plan.cost_term_z is not None else None
    floored = log_floors(plan.cost_term, r.cost_printer)
    output_range, output_of_z = None, None
    if floored:  # the cost takes logs of the output: only the activation's own values have them
        if plan.output_range is None:
            raise AssertionError(f"{spec.name}: the cost takes logs of a {spec.activation[-1]} output, "
                                 "whose row in the activation table gives no output_range")
        output_range = plan.output_range
    if cost_z is not None:  # the cost through z{L}: the output it belongs to, computed again from z{L}
        line = next(s for s in reversed(plan.forward) if s.lhs == f"a{L}")
        output_of_z = r.cost_printer.doprint(line.expr)
    helpers = sorted(p.used_helpers | r.cost_printer.used_helpers)
    kernels = fwd.kernels + bwd.kernels
    std = {"math", "numbers"} | ({"os"} if backend.fused else set()) | ({"warnings"} if floored else set())
    context = dict(
        backend=backend,
        xp=backend.xp,
        std_imports=sorted(std),
        lib_imports=sorted({backend.import_line, "import numpy"}),
        code=backend_code(backend, f"a{L}"),
        scale="inv_B*" if spec.batch == "mean" else "",  # the mean's 1/B on the summed cost
        depth=L,
        command=command(spec),
        source=plain(spec.source),
        spec_name=plain(spec.name),
        name_literal=literal(spec.name),
        choices={k: plain(getattr(spec, k)) for k in ("cost", "batch", "convention", "bias")},
        sizes=list(spec.sizes),
        batch_dim="1" if spec.batch == "single" else "None",
        params=[(k, _shape_text(s)) for k, s in params],
        orientation=orientation_note(spec),
        forward_lines=fwd_start + fwd.lines + fwd_end,
        backward_lines=bwd_start + bwd.lines + bwd_end,
        forward_equations=plan.forward_equations,
        equations=plan.equations,
        updates=plan.updates,
        sigma_prime=[(l, formula(e)) for l, e in sorted(plan.sigma_prime.items())],
        g=formula(plan.g),
        output_delta=formula(plan.output_delta) if plan.output_delta_cancelled else None,
        carried_scale=plan.carried_scale,
        activations=[plain(a) for a in spec.activation],
        cache_keys=plan.cache_keys,
        cache_names=_unpack(plan.cache_keys),
        param_names=_unpack([k for k, _ in params]),
        cache_tuple=repr(tuple(plan.cache_keys)).replace("'", '"'),
        cache_widths=_shape_text([cache_width(spec, key) for key in plan.cache_keys]),
        output=f"a{L}",
        grads=_grad_names(spec),
        mean=spec.batch == "mean",
        ones_B=p.used_ones,
        cost_term=cost_plain,
        cost_term_doc=term,
        cost_term_z=cost_z,
        cost_term_z_doc=formula(plan.cost_term_z) if plan.cost_term_z is not None else None,
        cost_floored=floored,
        output_range=output_range,
        output_of_z=output_of_z,
        helpers=helpers,
        kernels_file=plain(f"{spec.name}_kernels.cu"),
        has_kernels=backend.fused,
        threads=THREADS,
    )
    text = env.get_template(backend.template).render(**context)
    return text, kernels


def cache_width(spec: Spec, key: str) -> int:
    """Columns of a cached batch array: a{l} and z{l} have n_l, A{l} = [a{l}, 1] one more."""
    return spec.sizes[int(key[1:])] + (key[0] == "A")


def log_floors(term: sp.Expr, printer) -> str | None:
    """Code true where flooring the cost's logs at `tiny` changes the cost: a log's argument is
    below tiny and the log's coefficient is not 0 (0*log(0) is 0 either way). None: no logs."""
    logs = sorted(term.atoms(sp.log), key=sp.default_sort_key)
    dummies = [sp.Dummy() for _ in logs]
    linear = sp.expand(term.xreplace(dict(zip(logs, dummies))))
    coeffs = [linear.coeff(d) for d in dummies]
    rest = sp.expand(linear - sum(c * d for c, d in zip(coeffs, dummies)))
    is_linear = not set(dummies) & set().union(rest.free_symbols, *(c.free_symbols for c in coeffs))
    parts = []
    for log, coeff in zip(logs, coeffs):
        below = f"({printer.doprint(log.args[0])} < tiny)"
        if is_linear:  # a term c*log(u) changes only where c is not 0
            parts.append(f"({below} & ({printer.doprint(coeff.as_coeff_Mul()[1])} != 0))")
        else:
            parts.append(below)
    return " | ".join(parts) if parts else None


def _unpack(names: list[str]) -> str:
    """The left side that unpacks a list: `a, b` or `a,` for one."""
    return ", ".join(names) + ("," if len(names) == 1 else "")


def _grad_names(spec: Spec) -> list[tuple[str, str]]:
    return [(f"dC_d{k}", k) for k, _ in param_shapes(spec)]


def render_kernels(plan: Plan, kernels: list[Kernel], env: jinja2.Environment | None = None) -> str:
    env = env or environment()
    spec = plan.spec
    cuda_helpers = helper_names("cu")
    rendered = []
    used: set[str] = set()
    index = {"full": "i", "col": "i % cols", "row": "i / cols"}
    for suffix, ctype in DTYPES:
        pr = CudaPrinter(ctype, cuda_helpers)
        for k in kernels:
            rendered.append(dict(
                name=f"{spec.name}_{k.name}_{suffix}",
                ctype=ctype,
                pointers=[(n, "" if written else "const ") for n, _, written in k.pointers],
                scalars=k.scalars,
                loads=[(n, index[kind]) for n, kind in k.loads],
                temps=[(t.name, pr.doprint(v)) for t, v in k.temps],
                stores=[(n, pr.doprint(v)) for n, v in k.stores],
                checks=[(pr.doprint(v), flag) for v, flag in k.checks],
            ))
        used |= pr.used_helpers
    flag_kernels = [(f"{spec.name}_flag_not_finite_{suffix}", ctype) for suffix, ctype in DTYPES]
    return env.get_template("kernels.cu.j2").render(
        command=command(spec), source=plain(spec.source), spec_name=plain(spec.name), kernels=rendered, helpers=sorted(used),
        flag_kernels=flag_kernels,
    )


def checked(spec: Spec) -> Spec:
    """The spec validated again (a Spec may be built by hand), with a name that can name files and kernels."""
    spec = validate(spec.as_dict(), spec.source)
    if not spec.name.isascii():
        raise SpecError(f"{spec.source}: field 'name': {spec.name!r} is not ASCII; generated files and CUDA kernels "
                        "are named after it, so use ASCII letters, digits and _")
    return spec


def generate(spec: Spec, backends=BACKENDS, proof: Proof | None = None) -> dict[str, str]:
    """File name -> text for one spec: <name>_<backend>.py for each backend named, <name>_kernels.cu for a fused one.

    proof: the proof of the spec's forms that the modules print (`prove_forms(spec)`); made here when not given.
    """
    spec = checked(spec)
    plan = make_plan(proof or prove_forms(spec), spec)
    env = environment()
    files: dict[str, str] = {}
    for name in backends:
        text, kernels = render_module(plan, name, env)
        files[f"{spec.name}_{name}.py"] = text
        if BACKENDS[name].fused:
            files[f"{spec.name}_kernels.cu"] = render_kernels(plan, kernels, env)
    return files


def load_generated(spec: Spec, folder: Path, backend: str = "numpy", proof: Proof | None = None):
    """Prove the spec's forms (or take `proof`, as generate does), generate its `backend` module into
    `folder` (its kernels file too) and import it."""
    return import_written(generate(spec, [backend], proof), Path(folder), f"{spec.name}_{backend}")


def import_written(files: dict[str, str], folder: Path, name: str):
    """Write generated files into `folder` and import the module `name` from there."""
    for fname, text in files.items():
        (folder / fname).write_text(text, encoding="utf-8")
    mod_spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def package_init(names: list[str], env: jinja2.Environment | None = None) -> str:
    env = env or environment()
    return env.get_template("package_init.py.j2").render(names=[plain(n) for n in names], command="python -m codegen",
                                                         backends=BACKENDS.values())


def default_out() -> Path:
    return Path(__file__).resolve().parent.parent / "generated"
