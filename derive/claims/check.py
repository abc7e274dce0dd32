"""One claim: read, checked exactly against the truth, and when it fails, a witness and the nearest repair.

A claim is PROVEN when every entry is an exact identity (derive.proofs.identity's
is_identity with the network's relations); REFUTED with a numeric witness, the wrong
and the holding entries, a plain shape error, and the nearest repair that is itself
proven; UNPROVEN when it is not an identity in the atoms and no sample point tells the
sides apart; ERROR when it cannot be read or judged as written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import sympy as sp

from derive.claims import cost as claim_cost
from derive.claims import fast as claim_fast
from derive.claims.cost import expanded_terms
from derive.claims.evaluate import Evaluator, is_matrix, shape_of, size_text
from derive.claims.instances import Network, instances, needs_instances
from derive.claims.code import read_code
from derive.claims.sequence import is_sequence, read_steps, run
from derive.claims.latex import read_latex
from derive.claims.printing import latex_of, text_of
from derive.claims.repair import Repair, find, ratio
from derive.claims.text import Lhs, lhs_from_tree, read_lhs, read_text
from derive.claims.tree import MAX_TERMS, ClaimError, Invalid, Leaf, Node, Num, Op, ShapeError, position, shifted, walk
from derive.claims.truth import Context, NumLeaves, Point, SymLeaves, Undefined
from derive.errors import shown
from derive.proofs.identity import is_identity
from derive.tables.notations import text_name
from derive.verdict import Verdict

WITNESS_TRIES = 8
REL_TOL = 1e-9


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
    code: str | None = None  # NumPy backward code, read by derive.claims.code

    @property
    def form(self) -> str:
        return "latex" if self.latex is not None else "code" if self.code is not None else "text"

    @property
    def source(self) -> str:
        return self.latex if self.latex is not None else self.code if self.code is not None else (self.rhs or "")


@dataclass
class ClaimVerdict:
    """The verdict on one claim, with what shows why: a witness, the wrong entries, a shape error, a repair."""

    claim: Claim
    verdict: Verdict  # PROVEN, REFUTED, UNPROVEN or ERROR
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
    instances: list[dict] = field(default_factory=list)  # a claim with free letters: each value's verdict
    unchecked: list[int] = field(default_factory=list)  # code's lines the proof cannot evaluate (np.exp, np.log)

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
        if self.instances:
            out["instances"] = self.instances
        if self.unchecked:
            out["unchecked_lines"] = self.unchecked
        if self.verdict in (Verdict.ERROR, Verdict.UNPROVEN):
            out["error" if self.verdict == Verdict.ERROR else "reason"] = self.message
        if self.verdict == Verdict.ERROR:
            out["error_field"] = self.error_field
            out["error_position"] = self.error_position
        return out

    def error_line(self) -> str:
        """One line, safe to print: what it quotes from the file is escaped."""
        where = ", ".join(x for x in (self.error_field, self.error_position) if x)
        return shown(f"claim {self.claim.number} '{self.claim.name}': {where}: {self.message}")

    # Jupyter: derive.report.notebook (a layer above, which this module cannot import) fills _shows in when imported
    _shows = {}  # not annotated: a class attribute, not a dataclass field

    def _repr_markdown_(self) -> str:
        """The claim typeset with its verdict, witness and repair for Jupyter (derive.report.notebook), or its verdict."""
        show = self._shows.get("markdown")
        return show(self) if show else f"{self.verdict}: claim {self.claim.number}"


class ClaimCheck:
    """A claim being checked: its parsed sides, the truth, and the hooks the repair search uses."""

    def __init__(self, ctx: Context, claim: Claim, lhs: Lhs, tree: Node):
        self.ctx, self.claim, self.lhs, self.tree = ctx, claim, lhs, tree
        self.source = claim.source
        self.latex = claim.latex is not None
        style = ctx.shape.style
        self.printer = (lambda node: latex_of(node, style, self._written)) if self.latex else text_of
        self._original = {id(n) for n, _ in walk(tree)}  # the claim's own parts, quoted as written in a repair
        self.product = "dot" if self.latex else "mul"
        self.sizes, self.bias, self.row = ctx.sizes, ctx.spec.bias, ctx.row
        self.e = claim.example
        self.truth = ctx.truth(lhs, self.e)
        self._truth_num: dict[int, object] = {}

    def _written(self, node: Node) -> str | None:
        """A part as the claim wrote it, in a source's notation (a project notation prints its own)."""
        if self.ctx.shape.reading is None or node.span is None or isinstance(node, Num) \
                or id(node) not in self._original:
            return None
        text = self.source[node.span[0]:node.span[1]].strip()
        return text or None

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


def _fail(claim: Claim, field_name: str, source: str, exc: ClaimError, lhs_text: str = "") -> ClaimVerdict:
    where = position(source, exc.span[0]) if exc.span is not None else None
    return ClaimVerdict(claim, Verdict.ERROR, lhs_text, exc.message, field_name, where)


def read_claim(ctx: Context, claim: Claim) -> tuple[Lhs, Node, str] | ClaimVerdict | list:
    """The claim's left-hand side, its right-hand side's tree and how the left side was written; or an ERROR;
    or, for a claim with free letters, its instances (derive.claims.instances)."""
    lhs = None
    shown = ""
    if claim.code is not None:
        try:
            return _code_checks(ctx, claim)
        except ClaimError as exc:
            return _fail(claim, "code", claim.code, exc)
    if claim.latex is not None:
        try:
            if is_sequence(claim.latex):
                if claim.lhs is not None:
                    raise ClaimError("a claim written as steps names its quantities in the steps, not in lhs", (0, 0))
                net = Network(tuple(ctx.sizes), ctx.E, ctx.spec.bias, tuple(ctx.spec.activation))
                out = []
                for step, layer, inst, left, right in run(read_steps(claim.latex, ctx.shape), ctx.shape, net):
                    where = f"line {step.line}" + "".join(f", {k} = {v}" for k, v in layer.items())
                    if inst is not None and inst.text():
                        where += ", " + inst.text()
                    shown = claim.latex[left.span[0]:left.span[1]].strip() if left.span else ""
                    out.append((_Where(where, inst.example if inst is not None else None),
                                lhs_from_tree(left, ctx.shape), right, shown))
                return out
            left, tree = read_latex(claim.latex, ctx.shape)
            if needs_instances([left, tree], ctx.shape.notation):
                if claim.lhs is not None or left is None:
                    raise _free_letter(tree)
                net = Network(tuple(ctx.sizes), ctx.E, ctx.spec.bias, tuple(ctx.spec.activation))
                found = instances(left, tree, ctx.shape.notation, net)
                shown = claim.latex[left.span[0]:left.span[1]].strip() if left.span else ""
                return [(inst, lhs_from_tree(inst.lhs, ctx.shape), inst.rhs, shown) for inst in found]
            if left is not None:
                lhs = lhs_from_tree(left, ctx.shape)
                shown = claim.latex[left.span[0]:left.span[1]].strip() if left.span else lhs.text()
        except ClaimError as exc:
            if exc.sides and not is_sequence(claim.latex) and claim.lhs is None:
                return _chain(ctx, claim, exc.sides)
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


def no_such_example(ctx, claim: Claim) -> ClaimVerdict | None:
    """The ERROR for a claim's `example` that the network does not have, else None."""
    if 0 <= claim.example < ctx.E:
        return None
    return ClaimVerdict(claim, Verdict.ERROR, "", f"example {claim.example} does not exist; this network has "
                        f"{ctx.E} example{'s' if ctx.E > 1 else ''} (0 to {ctx.E - 1})", "example")


def check_claim(ctx: Context, claim: Claim) -> ClaimVerdict:
    """The verdict on one claim."""
    missing = no_such_example(ctx, claim)
    if missing:
        return missing
    read = read_claim(ctx, claim)
    if isinstance(read, ClaimVerdict):
        return read
    if isinstance(read, list):
        out = _every_value(ctx, claim, read)
        if claim.code is not None:
            _, out.unchecked, _, gradients = read_code(claim.code, ctx.shape)
            if gradients and out.verdict == Verdict.PROVEN:  # never PROVEN past a gradient it could not check
                out.verdict = Verdict.UNPROVEN
                out.message = ("every line checked holds, but " + ", ".join(f"line {i} ({n})" for i, n in gradients)
                               + " could not be checked: an unknown name, or a value through np.exp or np.log")
        return out
    return judge(ctx, claim, *read)


def _code_checks(ctx: Context, claim: Claim) -> list:
    """Each name the code sets that the notation knows, at its last assignment, as a check (derive.claims.code)."""
    if claim.lhs is not None:
        raise ClaimError("code names its quantities by its own names (dW2, dscores); it takes no lhs", (0, 0))
    lines, skipped, labels, _ = read_code(claim.code, ctx.shape)
    if labels and not ctx.net.cost.one_hot:
        raise ClaimError(f"integer class labels (y as indices) need a one-hot cost; the spec's is {ctx.spec.cost}",
                         (0, 0))
    out = []
    for line in lines:
        q = line.quantity
        lhs = (Lhs("value:" + q.kind, q.layer) if isinstance(q, Leaf) else lhs_from_tree(q, ctx.shape))
        out.append((_Where(f"line {line.line}, {line.name}", None), lhs, line.value, line.name))
    return out


def _as_deltas(ctx: Context, x):
    """A notation's dZ written as the deltas it is (dC/dz of each example, times the batch's scale for C's), so that
    the fast exact path, which holds one layer's deltas as symbols, reads Ng's and CS231n's claims too."""
    if isinstance(x, Lhs):
        if x.kind == "z" and x.scale == "example" and not x.rows and x.factor == 1 and not x.example_cost:
            return replace(x, kind="delta")
        return x
    if isinstance(x, Op):
        if x.op == "grad" and isinstance(x.args[0], Leaf) and x.args[0].kind == "z" and not ctx.rows \
                and isinstance(x.args[0].layer, int):
            z = x.args[0]
            delta = Leaf("delta", z.layer, z.index, span=x.span)
            if x.param == "example" or ctx.chain.scale == 1:
                return delta
            return Op("dot", (Num(ctx.chain.scale, span=x.span), delta), span=x.span)
        return replace(x, args=tuple(_as_deltas(ctx, a) for a in x.args))
    return x


def _chain(ctx: Context, claim: Claim, sides: list) -> list | ClaimVerdict:
    """A = B = C: each side after the first against the first, as claims of their own."""
    first = claim.latex[sides[0][0]:sides[0][1]]
    out = []
    for k, (a, b) in enumerate(sides[1:], 2):
        one = replace(claim, latex=f"{first} = {claim.latex[a:b]}")
        read = read_claim(ctx, one)
        if isinstance(read, ClaimVerdict):
            return replace(read, claim=claim, message=f"side {k}: {read.message}")
        for item in read if isinstance(read, list) else [(None, *read)]:
            where, lhs, tree, shown = item
            text = f"side {k}" + (f", {where.text()}" if where is not None and where.text() else "")
            out.append((_Where(text, getattr(where, "example", None)), lhs, shifted(tree, a - len(first) - 3), shown))
    return out


def _free_letter(tree: Node) -> ClaimError:
    """A letter left free where the claim cannot be checked for each of its values (its lhs is a key)."""
    from derive.claims.instances import _free_letters

    for n, _ in walk(tree):
        if isinstance(n, Leaf) and ((n.index and any(isinstance(i, tuple) and i[0] in _free_letters([tree])
                                                     for i in n.index)) or isinstance(n.layer, tuple)):
            letter = next((i[0] for i in n.index or () if isinstance(i, tuple)), None) or n.layer[0]
            return ClaimError(f"index {letter} is not bound by a \\sum: bind it, or write the claim as an equation "
                              "with its left-hand side in the LaTeX to check it for every value", n.span)
    return ClaimError("a formula with free letters is written as an equation, with its left-hand side in the LaTeX",
                      (0, 0))


@dataclass(frozen=True)
class _Where:
    """Where in a sequence of steps a check stands: 'line 3, k = 2'."""

    where: str
    example: int | None

    def text(self) -> str:
        return self.where


def _every_value(ctx: Context, claim: Claim, found: list) -> ClaimVerdict:
    """One verdict for a claim with free letters: PROVEN at every value, else the first value that fails, shown."""
    results = []
    for inst, lhs, tree, written in found:
        one = replace(claim, example=inst.example if inst.example is not None else claim.example)
        results.append((inst, judge(ctx, one, lhs, tree, written)))
    order = (Verdict.ERROR, Verdict.REFUTED, Verdict.UNPROVEN)
    worst = next((w for w in order if any(v.verdict == w for _, v in results)), Verdict.PROVEN)
    inst, first = next(((i, v) for i, v in results if v.verdict == worst), results[0])
    out = replace(first, claim=claim)
    out.instances = [{"values": i.text(), "verdict": v.verdict, "lhs": v.lhs} for i, v in results]
    if worst == Verdict.PROVEN:
        out.lhs = "; ".join(dict.fromkeys(v.lhs for _, v in results))
        return out
    where = f"at {inst.text()}: " if inst.text() else ""
    if worst in (Verdict.ERROR, Verdict.UNPROVEN):
        out.message = where + first.message
    out.shape_error = (where + first.shape_error) if first.shape_error else None
    if out.witness is not None:
        out.witness = {"at": inst.text(), **out.witness}
    out.lhs = first.lhs
    return out


def judge(ctx: Context, claim: Claim, lhs: Lhs, tree: Node, shown: str) -> ClaimVerdict:
    """The verdict on a claim already read: its left-hand side and right-hand side's tree."""
    field_name = "latex" if claim.latex is not None else "rhs"
    low_lhs, low_tree = _as_deltas(ctx, lhs), _as_deltas(ctx, tree)
    if low_lhs.plain and not ctx.regularization and claim_fast.prove(ctx, low_lhs, low_tree, claim.example,
                                                                     claim.latex is None):
        # exact, one layer's deltas held as symbols (derive.claims.fast)
        return ClaimVerdict(claim, Verdict.PROVEN, lhs.text())
    too_large = claim_cost.refusal(ctx, lhs, tree, claim.latex is None)  # before the truth and the evaluation
    if too_large is not None:
        return _fail(claim, field_name, claim.source, too_large, lhs.text())
    try:
        check = ClaimCheck(ctx, claim, lhs, tree)
    except ClaimError as exc:  # the left-hand side names no quantity of this network
        exc.span = exc.span or (0, 0)
        return _fail(claim, "lhs" if claim.lhs is not None else field_name, claim.lhs or claim.source, exc, lhs.text())
    verdict = ClaimVerdict(claim, Verdict.PROVEN, lhs.text())
    try:
        value = check.symbolic(tree)
    except ClaimError as exc:
        return _fail(claim, field_name, claim.source, exc, lhs.text())
    except ShapeError as exc:
        verdict.verdict = Verdict.REFUTED
        verdict.shape_error = str(exc)
        _repair(check, verdict)
        return verdict
    truth = check.truth
    if shape_of(value) != shape_of(truth):
        verdict.verdict = Verdict.REFUTED
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
        verdict.verdict = Verdict.UNPROVEN
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
    verdict.verdict = Verdict.REFUTED
    _repair(check, verdict)
    return verdict


def _repair(check: ClaimCheck, verdict: ClaimVerdict) -> None:
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

