"""Proofs at scale: reverse accumulation over the scalar graph, every matrix entry compared exactly.

The chain rule is accumulated backwards over the graph, so the work grows with the
number of edges: each local derivative is the derivative of one node's own
expression (of the one term of a pre-activation that holds the weight or the
activation, since the other terms are free of it), and each node's adjoint is the
sum over its successors. Every entry of every matrix form is then compared
exactly with the accumulated partial: the difference must expand to 0.

The heavy expanding and differentiating runs in SymEngine; SymPy stays the
reference (tests check that both agree). The sympy.diff oracle of the composed cost
runs on a random sample of partials spread over every layer and the biases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import symengine as se
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from derive.chain import ReverseAccumulation
from derive.errors import EXIT_OK, EXIT_REFUTED
from derive.matrix import Form, MatrixForms
from derive.network import Network, Param
from derive.proofs.concrete import group as per_layer_group, oracle_partial
from derive.proofs.identity import (ToSymEngine, deep_stack, find_counterexample, has_denominator, is_identity, rational_zero,
                                    relations)
from derive.spec import Spec, load_spec

CHUNK = 2000  # entries per task when the work is spread over processes


# ---------------------------------------------------------------------------
# SymEngine evaluation of the abstract matrix forms
# ---------------------------------------------------------------------------

def to_se_matrix(m: sp.Matrix, conv) -> se.DenseMatrix:
    return se.DenseMatrix(m.rows, m.cols, [conv(x) for x in m])


def evaluate_form(expr, values: dict) -> se.DenseMatrix:
    """The explicit value of a matrix expression, every product done in SymEngine."""
    if isinstance(expr, MatrixSymbol):
        return values[expr]
    if isinstance(expr, Transpose):
        return evaluate_form(expr.arg, values).T
    if isinstance(expr, OneMatrix):
        return se.ones(*expr.shape)
    if isinstance(expr, MatMul):
        coeff, mats = expr.as_coeff_mmul()
        scalars = [a for a in mats.args if not a.is_Matrix]
        result = None
        for arg in (a for a in mats.args if a.is_Matrix):
            m = evaluate_form(arg, values)
            result = m if result is None else result * m
        factor = se.sympify(coeff) * se.Mul(*[se.sympify(s) for s in scalars]) if scalars else se.sympify(coeff)
        return result if factor == 1 else result.mul_scalar(factor)
    if isinstance(expr, MatAdd):
        parts = [evaluate_form(a, values) for a in expr.args]
        total = parts[0]
        for m in parts[1:]:
            total = total + m
        return total
    if isinstance(expr, HadamardProduct):
        parts = [evaluate_form(a, values) for a in expr.args]
        rows, cols = parts[0].shape
        flat = [se.Mul(*[m[i, j] for m in parts]) for i in range(rows) for j in range(cols)]
        return se.DenseMatrix(rows, cols, flat)
    if isinstance(expr, HadamardPower):  # a ∘ a: what a Hadamard product becomes at width 1 (ones 1x1 = identity)
        base, exp = evaluate_form(expr.base, values), se.sympify(expr.exp)
        return se.DenseMatrix(base.rows, base.cols, [x**exp for x in base])
    raise TypeError(f"no SymEngine evaluation for {type(expr).__name__}")


# ---------------------------------------------------------------------------
# the chain rule in SymEngine, with the proven deltas held as symbols
# ---------------------------------------------------------------------------

def accumulation(net: Network) -> ReverseAccumulation:
    """The network's reverse accumulation in SymEngine values."""
    return ReverseAccumulation(net, ToSymEngine(), se.Add)


def partial_through(graph: ReverseAccumulation, p: Param, lemma: dict):
    """dC/dp with each example's delta^{(l)}_j written as its proven symbol."""
    return graph.partial_step(p, lambda e: lemma[e, p.layer, p.j])


def delta_through(graph: ReverseAccumulation, e: int, l: int, j: int, lemma: dict):
    """delta^{(l)}_j of example e from the proven deltas of layer l+1, held as symbols (l < L)."""
    return graph.delta_step(e, l, j, lambda q: lemma[e, l + 1, q])


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------

@dataclass
class Failure:
    name: str
    form: str
    entry: tuple[int, int]
    counterexample: dict | None = None


@dataclass
class ScaleProof:
    """Counts of what the scalable proof closed, per layer and per form, and its first failures (a derive.verdict.Result)."""

    spec: Spec
    n_params: int
    per_layer: dict = field(default_factory=dict)  # "W1" / "b1" -> [proven, total]
    per_form: dict = field(default_factory=dict)  # form key -> [proven, total]
    oracle_sample: list[str] = field(default_factory=list)
    oracle_proven: int = 0
    oracle_seed: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    jobs: int = 1
    note: str = ""

    @property
    def partials_proven(self) -> int:
        return sum(v[0] for v in self.per_layer.values())

    @property
    def ok(self) -> bool:
        return not self.failures and self.oracle_proven == len(self.oracle_sample)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_REFUTED

    def methods(self) -> list[str]:
        return [
            f"chain rule accumulated in reverse over the scalar graph for all {self.n_params} partials "
            "(local derivatives of each node's own expression, SymEngine)",
            f"every entry of {len(self.per_form)} matrix forms compared exactly with it (difference expanded to 0): "
            "delta^L in full, each lower delta with the deltas of the layer above held as the symbols just "
            "proven equal to them (induction down the layers), then each gradient and update entry through "
            "the proven deltas (an entry this cannot close is expanded in full)",
            f"sympy.diff of the composed cost on a random sample of {len(self.oracle_sample)} partials "
            f"(seed {self.oracle_seed}) spread over every weight matrix"
            + (" and bias" if self.spec.bias != "none" else "") + f": {self.oracle_proven} agree",
        ]

    def summary(self) -> str:
        return (f"{self.partials_proven}/{self.n_params} partials of C proven equal to the matrix form "
                f"(chain rule = matrix form; sympy.diff on a sample of {len(self.oracle_sample)})")

    def to_json(self) -> dict:
        return {
            "spec": self.spec.as_dict(), "mode": "scalable", "summary": self.summary(), "proven": self.ok,
            "n_params": self.n_params,
            "per_layer": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_layer.items()},
            "per_form": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_form.items()},
            "methods": self.methods(),
            "oracle": {"checked": len(self.oracle_sample), "agree": self.oracle_proven, "seed": self.oracle_seed,
                       "sample": self.oracle_sample},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "jobs": self.jobs,
            "failures": [{"name": f.name, "form": f.form, "entry": list(f.entry),
                          "counterexample": f.counterexample} for f in self.failures],
        }

    # Jupyter: derive.report.notebook (a layer above, which this module cannot import) fills _shows in when imported
    _shows = {}  # not annotated: a class attribute, not a dataclass field

    def _repr_markdown_(self) -> str:
        """The scalable proof typeset for Jupyter (derive.report.notebook), or its summary until that is imported."""
        show = self._shows.get("markdown")
        return show(self) if show else self.summary()



# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

PHASES = ("comparing entries", "sympy.diff oracle sample")  # the progress callback hears of each in turn


def _targets(net: Network, forms: MatrixForms, graph: ReverseAccumulation, form: Form, value, lemma: dict | None = None) -> list:
    """For each entry of a form (row-major): (name, the parameter of a gradient entry or None, truth).

    With `lemma` (symbols standing for the proven deltas), gradient and update truths
    are written through those symbols: dC/dp = scale * sum_e Delta_e * dz/dp.
    """
    gamma = graph.conv(forms.gamma)
    out = []
    for r in range(value.rows):
        for c in range(value.cols):
            if form.truth == "z":
                e, j = forms.example_neuron(form, r, c)
                out.append((f"z{form.layer}[{j}]", None, graph.z(e, form.layer, j)))
            elif form.truth in ("delta", "delta_col"):
                e, j = forms.example_neuron(form, r, c)
                truth = graph.delta(e, form.layer, j) if lemma is None else delta_through(graph, e, form.layer, j, lemma)
                out.append((f"delta{form.layer}[{j}]", None, truth))
            else:
                p = forms.param_of(form, r, c)
                truth = graph.accumulated(p) if lemma is None else partial_through(graph, p, lemma)
                if form.truth == "update":
                    truth = graph.conv(p.symbol) - gamma * truth
                out.append((f"dC/d{p.name}", p if form.truth == "grad" else None, truth))
    return out


@dataclass
class Comparison:
    """What the entry comparisons read: per form compared, its value and truths, and their lemma versions.

    The lemma versions (deltas held as proven symbols) are filled in layer by layer as the
    layer above is proven; a form's is None until then.
    """

    values: list  # per form: its SymEngine matrix
    targets: list  # per form, per entry (row-major): (name, param or None, truth)
    rule: dict  # every relation of the atoms (derive.proofs.identity.relations), in SymEngine
    kept: dict | None  # the part that leaves every atom in place; None when that is all of rule
    lemma_values: list
    lemma_targets: list

    def bad_entries(self, task: tuple[int, int, int]) -> list[int]:
        """Indices of the entries in [start, stop) of form i that are not identically equal.

        Where a form has a lemma version, that is tried first; only an entry it cannot
        close is expanded in full.
        """
        i, start, stop = task
        value, targets = self.values[i], self.targets[i]
        lemma_value, lemma_targets = self.lemma_values[i], self.lemma_targets[i]
        bad = []
        cols = value.cols
        for idx in range(start, stop):
            r, c = idx // cols, idx % cols
            if lemma_value is not None and _zero(lemma_targets[idx][2] - lemma_value[r, c], self.rule, self.kept):
                continue
            if not _zero(targets[idx][2] - value[r, c], self.rule, self.kept):
                bad.append(idx)
        return bad


# In a worker process only: the Comparison it was started with. The pool forks, so it reaches
# the worker as the initializer's argument with the process's memory, never pickled.
_WORKER_COMPARISON: Comparison | None = None


def _adopt(comparison: Comparison) -> None:
    global _WORKER_COMPARISON
    _WORKER_COMPARISON = comparison


def _bad_entries_in_worker(task: tuple[int, int, int]) -> list[int]:
    return _WORKER_COMPARISON.bad_entries(task)


class _Count:
    """Work done out of `total`, told to the progress callback as (done, total), starting with (0, total)."""

    def __init__(self, progress: Callable[[int, int], None] | None, total: int):
        self.progress, self.total, self.done = progress, total, 0
        if progress is not None:
            progress(0, total)

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)


def _zero(d, rule, kept=None) -> bool:
    """d is identically 0; with `kept`, first in the atoms as they stand (identity neurons not yet replaced by z)."""
    if kept is not None and _zero(d, kept):
        return True
    if rule:
        d = d.subs(rule)
    return se.expand(d) == 0 or _rational_zero(d)


def _rational_zero(d) -> bool:
    """Exact check in SymPy for a difference with denominators (logarithmic costs), once SymEngine's expansion left it."""
    expr = sp.sympify(d)
    return has_denominator(expr) and rational_zero(expr)


def _oracle_sample(net: Network, sample: int, seed: int) -> list[Param]:
    """`sample` partials (at least one per group), spread over every weight matrix and bias vector."""
    rng = np.random.default_rng(seed)
    groups: dict[str, list[Param]] = {}
    for p in net.params:
        groups.setdefault(p.matrix if not p.is_bias else f"bias of {p.matrix}", []).append(p)
    sample = min(sample, len(net.params))
    per_group = max(1, sample // len(groups))
    picked, rest = [], []
    for key in sorted(groups):
        g = list(groups[key])
        order = rng.permutation(len(g))
        picked += [g[i] for i in order[:per_group]]
        rest += [g[i] for i in order[per_group:]]
    if len(picked) < sample:  # small groups ran out: top up from the others
        extra = rng.choice(len(rest), size=sample - len(picked), replace=False)
        picked += [rest[i] for i in extra]
    return sorted(picked, key=net.params.index)


@deep_stack
def prove_scalable(spec: Spec | str | Network, sample: int = 50, seed: int = 0, jobs: int = 1,
                   forms: list[Form] | None = None, extra: dict | None = None,
                   progress: Callable[[int, int], None] | None = None) -> ScaleProof:
    """Prove every partial of a (large) network.

    `forms` replaces the matrix forms under test (for mutation tests), `extra` gives
    explicit values for MatrixSymbols they use that the network does not have.
    `progress(done, total)` hears of each of PHASES in turn, (0, total) first
    (derive.report.terminal.scale_progress() makes one that draws bars).
    """
    times: dict = {}
    t0 = time.perf_counter()
    net = spec if isinstance(spec, Network) else Network(load_spec(spec))
    mf = MatrixForms(net, evaluate=False)
    times["network"] = time.perf_counter() - t0

    t = time.perf_counter()
    graph = accumulation(net)
    graph.adjoints  # every adjoint and local derivative here, so that this time is the chain rule's
    for p in net.params:
        for e in range(net.E):
            graph.dz_dp(e, p)
    times["chain rule"] = time.perf_counter() - t

    t = time.perf_counter()
    values = {ms: to_se_matrix(v, graph.conv) for ms, v in {**mf.values, **(extra or {})}.items()}
    chosen = forms if forms is not None else mf.forward + mf.forms
    defining = [f for f in mf.forms if f.truth in ("delta", "delta_col")]
    evaluated = []
    # with forms under test, the proven forms that define each delta come first
    for form in chosen if forms is None else defining + [f for f in forms if f not in defining]:
        v = evaluate_form(form.expr, values)
        if form.lhs not in values:
            values[form.lhs] = v
        evaluated.append((form, v))
    # the deltas' defining forms are always compared: the lemma below rests on them
    evaluated = [(f, v) for f, v in evaluated if f in chosen or f in defining]
    for form, v in evaluated:
        if v.shape != form.lhs.shape:
            raise ValueError(f"{form.key}: the form is {v.shape[0]}×{v.shape[1]} but {form.lhs.name} "
                             f"is {form.lhs.shape[0]}×{form.lhs.shape[1]}")
    targets = [_targets(net, mf, graph, f, v) for f, v in evaluated]
    # the lemma: one symbol per proven delta entry, shared by delta{l} and its column form
    lemma = {(e, l, j): se.Symbol(f"_delta{l}_{j}_e{e}") for e in range(net.E) for l in range(1, net.L + 1)
             for j in range(net.sizes[l])}
    lemma_values = dict(values)
    for l in range(1, net.L + 1):
        lemma_values[mf.sym[f"delta{l}"]] = se.DenseMatrix(
            *mf.sym[f"delta{l}"].shape,
            [lemma[(e, l, j)] for e, j in _entries(mf, l)])
        for e in range(net.E):
            name = f"deltac{l}" + ("" if net.E == 1 else f"_e{e}")
            lemma_values[mf.sym[name]] = se.DenseMatrix(net.sizes[l], 1, [lemma[e, l, j] for j in range(net.sizes[l])])
    times["matrix forms"] = time.perf_counter() - t

    t = time.perf_counter()
    sp_rule = relations(net)
    rule = {graph.conv(k): graph.conv(v) for k, v in sp_rule.items()}
    kept = {graph.conv(k): graph.conv(v) for k, v in sp_rule.kept.items()}
    is_delta = [f.truth in ("delta", "delta_col") for f, _ in evaluated]
    comparison = Comparison([v for _, v in evaluated], targets, rule, None if len(kept) == len(rule) else kept,
                            [None] * len(evaluated), [None] * len(evaluated))
    count = _Count(progress, sum(len(tg) for tg in targets))
    bad: dict[int, list[int]] = {}
    # the deltas layer by layer from the output: delta^L in full, each lower one with the
    # deltas of the layer above held as the symbols just proven equal to them
    proven_above = False
    for l in range(net.L, 0, -1):
        at = [i for i in range(len(evaluated)) if is_delta[i] and evaluated[i][0].layer == l]
        if proven_above:
            for i in at:
                lv = evaluate_form(_through_layer_above(mf, evaluated[i][0]), lemma_values)
                comparison.lemma_values[i] = lv
                comparison.lemma_targets[i] = _targets(net, mf, graph, evaluated[i][0], lv, lemma)
        _run(comparison, at, bad, jobs, count)
        proven_above = not any(bad.get(i) for i in at)
    # then the gradients and updates through the proven deltas
    if not any(bad.get(i) for i in range(len(evaluated)) if is_delta[i]):
        for i, (form, _) in enumerate(evaluated):
            if not is_delta[i]:
                lv = evaluate_form(form.expr, lemma_values)
                if lemma_values.get(form.lhs) is values.get(form.lhs):  # the gradient an update uses
                    lemma_values[form.lhs] = lv
                comparison.lemma_values[i] = lv
                comparison.lemma_targets[i] = _targets(net, mf, graph, form, lv, lemma)
    _run(comparison, [i for i in range(len(evaluated)) if not is_delta[i]], bad, jobs, count)
    times["comparison"] = time.perf_counter() - t
    evaluated_all = evaluated
    evaluated = [(f, v) for f, v in evaluated_all if f in chosen]
    keep = [i for i, (f, _) in enumerate(evaluated_all) if f in chosen]
    targets = [targets[i] for i in keep]
    bad = {new: bad.get(old, []) for new, old in enumerate(keep)}

    result = ScaleProof(net.spec, len(net.params), jobs=jobs, oracle_seed=seed)
    for i, (form, v) in enumerate(evaluated):
        wrong = set(bad.get(i, []))
        result.per_form[form.key] = [len(targets[i]) - len(wrong), len(targets[i])]
        for idx, (name, p, _) in enumerate(targets[i]):
            if p is not None:
                group = per_layer_group(p)
                tally = result.per_layer.setdefault(group, [0, 0])
                tally[0] += idx not in wrong
                tally[1] += 1
        if wrong and not result.failures:
            idx = min(wrong)
            name = targets[i][idx][0]
            truth = sp.sympify(targets[i][idx][2])
            other = sp.sympify(v[idx // v.cols, idx % v.cols])
            ce = find_counterexample(net, truth, other)
            result.failures.append(Failure(name, form.key, (idx // v.cols, idx % v.cols),
                                           None if ce is None else {"values": ce.values, "chain_rule": ce.lhs,
                                                                    "matrix": ce.rhs}))
        elif wrong:
            result.failures.extend(Failure(targets[i][k][0], form.key, (k // v.cols, k % v.cols)) for k in sorted(wrong)[:3])

    t = time.perf_counter()
    picked = _oracle_sample(net, sample, seed) if forms is None else []
    count = _Count(progress, len(picked))
    patterns: dict = {}  # the oracle's, per neuron
    for p in picked:
        ok = is_identity(oracle_partial(net, p, patterns), sp.sympify(graph.accumulated(p)), sp_rule)
        result.oracle_sample.append(p.name)
        result.oracle_proven += ok
        if not ok:
            result.failures.append(Failure(f"dC/d{p.name}", "sympy.diff oracle", (0, 0)))
        count.advance(1)
    times["oracle sample"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t0
    result.seconds = times
    return result


def _through_layer_above(mf: MatrixForms, form: Form):
    """The form with what stands for delta^{(l+1)} written as that delta.

    An unrolled product D^l w^T D^{l+1} ... grad C is D^l w^T times the unrolled product
    of layer l+1 (matrix products associate exactly), and that one is proven equal to
    delta^{(l+1)}: so it becomes D^l w^T delta^{(l+1)}, whose symbol the lemma holds.
    """
    if "(unrolled)" not in form.key:
        return form.expr
    suffix = "" if mf.net.E == 1 else f"_e{form.example}"
    head = form.expr.args[:2]
    return sp.MatMul(*head, mf.sym[f"deltac{form.layer + 1}{suffix}"])


def _run(comparison: Comparison, forms_idx: list[int], bad: dict, jobs: int, count: _Count) -> None:
    """Compare the entries of the given forms, in chunks, over `jobs` processes."""
    targets = comparison.targets
    tasks = [(i, s, min(s + CHUNK, len(targets[i]))) for i in forms_idx for s in range(0, len(targets[i]), CHUNK)]
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(jobs, mp_context=get_context("fork"), initializer=_adopt,
                                 initargs=(comparison,)) as pool:
            for task, result in zip(tasks, pool.map(_bad_entries_in_worker, tasks)):
                bad.setdefault(task[0], []).extend(result)
                count.advance(task[2] - task[1])
    else:
        for task in tasks:
            bad.setdefault(task[0], []).extend(comparison.bad_entries(task))
            count.advance(task[2] - task[1])


def _entries(mf: MatrixForms, l: int) -> list[tuple[int, int]]:
    """(example, neuron) of each entry of delta{l}, row-major, in the convention's orientation."""
    rows, cols = mf.sym[f"delta{l}"].shape
    return [((r, c) if mf.row else (c, r)) for r in range(rows) for c in range(cols)]


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
