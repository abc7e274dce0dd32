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
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np
import symengine as se
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from derive.matrix import Form, MatrixForms
from derive.network import Network, Param
from derive.proofs.concrete import oracle_partial
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
# the graph in SymEngine
# ---------------------------------------------------------------------------

class Graph:
    """Local derivatives and adjoints of one network, in SymEngine."""

    def __init__(self, net: Network):
        self.net = net
        self.conv = ToSymEngine()
        self._index: dict = {}  # edge lists grouped by neuron, built on first use
        n, L = net.sizes, net.L
        c = self.conv
        # local derivatives of each pre-activation: the one term holding the variable
        self.dz_dp: list[dict] = []  # per example: param symbol -> dz/dp
        self.dz_da: list[list[dict]] = []  # per example, layer: (j, k) -> dz^l_j / da^{l-1}_k
        params = set(net.param_by_symbol)
        for e in range(net.E):
            dp: dict = {}
            da: list[dict] = [{}]
            for l in range(1, L + 1):
                prev = {s: k for k, s in enumerate(net.a[e][l - 1])}
                layer: dict = {}
                for j, z in enumerate(net.z[e][l]):
                    for term in sp.Add.make_args(z):
                        term_se = c(term)
                        for s in term.free_symbols:
                            if s in params:
                                dp[s] = term_se.diff(c(s))
                            elif l > 1 and s in prev:
                                layer[j, prev[s]] = term_se.diff(c(s))
                da.append(layer)
            self.dz_dp.append(dp)
            self.dz_da.append(da)
        # d a / d z and dC / d a^L
        self.da_dz = [[{} for _ in range(L + 1)] for _ in range(net.E)]
        for e in range(net.E):
            for l in range(1, L + 1):
                if net.acts[l].elementwise:
                    for j in range(n[l]):
                        self.da_dz[e][l][j, j] = c(net.sigma_prime[e][l][j])
                else:
                    for m in range(n[l]):
                        for j in range(n[l]):
                            self.da_dz[e][l][m, j] = c(net.da_dz(e, l, m, j))
        self.dC_da = [[c(sp.diff(net.C, a)) for a in net.a[e][L]] for e in range(net.E)]
        self.adjoint = self._accumulate()

    def _accumulate(self) -> list[list[list]]:
        """dC/dz^{(l)}_j for every example, from C backwards: one pass over the edges."""
        net = self.net
        out = []
        for e in range(net.E):
            dz: list[list] = [[] for _ in range(net.L + 1)]
            da = self.dC_da[e]
            for l in range(net.L, 0, -1):
                local = self._local_to(e, l)
                dz[l] = [se.Add(*[da[m] * d for m, d in local[j]]) for j in range(net.sizes[l])]
                if l > 1:
                    acc = [[] for _ in range(net.sizes[l - 1])]
                    for (j, k), d in self.dz_da[e][l].items():
                        acc[k].append(dz[l][j] * d)
                    da = [se.Add(*terms) for terms in acc]
            out.append(dz)
        return out

    def partial(self, p: Param):
        return se.Add(*[self.adjoint[e][p.layer][p.j] * self.dz_dp[e][p.symbol] for e in range(self.net.E)])

    def partial_through(self, p: Param, lemma: dict):
        """dC/dp with each example's delta^{(l)}_j written as its proven symbol."""
        scale = self.conv(self.net.scale)
        return se.Add(*[scale * lemma[e, p.layer, p.j] * self.dz_dp[e][p.symbol] for e in range(self.net.E)])

    def delta_through(self, e: int, l: int, j: int, lemma: dict):
        """delta^{(l)}_j of example e from the proven deltas of layer l+1, held as symbols (l < L)."""
        scale = self.conv(self.net.scale)
        into = self._edges_from(e, l)
        dz = se.Add(*[se.Add(*[scale * lemma[e, l + 1, q] * d for q, d in into[m]]) * dadz
                      for m, dadz in self._local_to(e, l)[j]])
        return dz / scale

    def _edges_from(self, e: int, l: int) -> list[list]:
        """For each neuron k of layer l: the (q, dz^{(l+1)}_q/da^{(l)}_k) of the edges leaving it."""
        key = ("from", e, l)
        if key not in self._index:
            out: list[list] = [[] for _ in range(self.net.sizes[l])]
            for (q, k), d in self.dz_da[e][l + 1].items():
                out[k].append((q, d))
            self._index[key] = out
        return self._index[key]

    def _local_to(self, e: int, l: int) -> list[list]:
        """For each neuron j of layer l: the (m, da^{(l)}_m/dz^{(l)}_j) it feeds (only m = j unless softmax)."""
        key = ("to", e, l)
        if key not in self._index:
            out: list[list] = [[] for _ in range(self.net.sizes[l])]
            for (m, j), d in self.da_dz[e][l].items():
                out[j].append((m, d))
            self._index[key] = out
        return self._index[key]

    def delta(self, e: int, l: int, j: int):
        return self.adjoint[e][l][j] / self.conv(self.net.scale)


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

    def as_json(self) -> dict:
        return {
            "spec": self.spec.as_dict(), "mode": "scalable", "summary": self.summary(), "proven": self.ok,
            "n_params": self.n_params,
            "per_layer": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_layer.items()},
            "per_form": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_form.items()},
            "methods": self.methods(),
            "oracle": {"seed": self.oracle_seed, "sample": self.oracle_sample, "agree": self.oracle_proven},
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "jobs": self.jobs,
            "failures": [{"name": f.name, "form": f.form, "entry": list(f.entry),
                          "counterexample": f.counterexample} for f in self.failures],
        }


# ---------------------------------------------------------------------------
# the proof
# ---------------------------------------------------------------------------

_STATE: dict = {}  # what forked workers read: the graph, the evaluated forms, the targets


def _targets(net: Network, forms: MatrixForms, graph: Graph, form: Form, value, lemma: dict | None = None) -> list:
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
                out.append((f"z{form.layer}[{j}]", None, graph.conv(net.z[e][form.layer][j])))
            elif form.truth in ("delta", "delta_col"):
                e, j = forms.example_neuron(form, r, c)
                truth = graph.delta(e, form.layer, j) if lemma is None else graph.delta_through(e, form.layer, j, lemma)
                out.append((f"delta{form.layer}[{j}]", None, truth))
            else:
                p = forms.param_of(form, r, c)
                truth = graph.partial(p) if lemma is None else graph.partial_through(p, lemma)
                if form.truth == "update":
                    truth = graph.conv(p.symbol) - gamma * truth
                out.append((f"dC/d{p.name}", p if form.truth == "grad" else None, truth))
    return out


def _compare(task: tuple[int, int, int]) -> list[int]:
    """Indices of the entries in [start, stop) of form i that are not identically equal.

    Where a form has a lemma version (deltas held as proven symbols), that is tried
    first; only an entry it cannot close is expanded in full.
    """
    i, start, stop = task
    value, targets = _STATE["values"][i], _STATE["targets"][i]
    lemma_value, lemma_targets = _STATE["lemma_values"][i], _STATE["lemma_targets"][i]
    rule, kept = _STATE["rule"], _STATE["kept"]
    if len(kept) == len(rule):
        kept = None
    bad = []
    cols = value.cols
    for idx in range(start, stop):
        r, c = idx // cols, idx % cols
        if lemma_value is not None and _zero(lemma_targets[idx][2] - lemma_value[r, c], rule, kept):
            continue
        if not _zero(targets[idx][2] - value[r, c], rule, kept):
            bad.append(idx)
    return bad


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
                   forms: list[Form] | None = None, extra: dict | None = None, progress: bool = False) -> ScaleProof:
    """Prove every partial of a (large) network.

    `forms` replaces the matrix forms under test (for mutation tests), `extra` gives
    explicit values for MatrixSymbols they use that the network does not have.
    """
    times: dict = {}
    t0 = time.perf_counter()
    net = spec if isinstance(spec, Network) else Network(load_spec(spec))
    mf = MatrixForms(net, evaluate=False)
    times["network"] = time.perf_counter() - t0

    t = time.perf_counter()
    graph = Graph(net)
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
    _STATE.update(values=[v for _, v in evaluated], targets=targets, rule=rule, kept=kept,
                  lemma_values=[None] * len(evaluated), lemma_targets=[None] * len(evaluated))
    total = sum(len(tg) for tg in targets)
    bad: dict[int, list[int]] = {}
    with _Progress(total, "comparing entries", progress) as bar:
        # the deltas layer by layer from the output: delta^L in full, each lower one with the
        # deltas of the layer above held as the symbols just proven equal to them
        proven_above = False
        for l in range(net.L, 0, -1):
            at = [i for i in range(len(evaluated)) if is_delta[i] and evaluated[i][0].layer == l]
            if proven_above:
                for i in at:
                    lv = evaluate_form(_through_layer_above(mf, evaluated[i][0]), lemma_values)
                    _STATE["lemma_values"][i] = lv
                    _STATE["lemma_targets"][i] = _targets(net, mf, graph, evaluated[i][0], lv, lemma)
            _run(at, targets, bad, jobs, bar)
            proven_above = not any(bad.get(i) for i in at)
        # then the gradients and updates through the proven deltas
        if not any(bad.get(i) for i in range(len(evaluated)) if is_delta[i]):
            for i, (form, _) in enumerate(evaluated):
                if not is_delta[i]:
                    lv = evaluate_form(form.expr, lemma_values)
                    if lemma_values.get(form.lhs) is values.get(form.lhs):  # the gradient an update uses
                        lemma_values[form.lhs] = lv
                    _STATE["lemma_values"][i] = lv
                    _STATE["lemma_targets"][i] = _targets(net, mf, graph, form, lv, lemma)
        _run([i for i in range(len(evaluated)) if not is_delta[i]], targets, bad, jobs, bar)
    _STATE.clear()
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
                group = f"{p.matrix} (bias weights)" if p.is_bias and p.kind == "w" else p.matrix
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
    with _Progress(len(picked), "sympy.diff oracle sample", progress) as bar:
        for p in picked:
            ok = is_identity(oracle_partial(net, p), sp.sympify(graph.partial(p)), sp_rule)
            result.oracle_sample.append(p.name)
            result.oracle_proven += ok
            if not ok:
                result.failures.append(Failure(f"dC/d{p.name}", "sympy.diff oracle", (0, 0)))
            bar.advance(1)
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


def _run(forms_idx: list[int], targets: list, bad: dict, jobs: int, bar) -> None:
    """Compare the entries of the given forms, in chunks, over `jobs` processes."""
    tasks = [(i, s, min(s + CHUNK, len(targets[i]))) for i in forms_idx for s in range(0, len(targets[i]), CHUNK)]
    if jobs > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(jobs, mp_context=get_context("fork")) as pool:
            for task, result in zip(tasks, pool.map(_compare, tasks)):
                bad.setdefault(task[0], []).extend(result)
                bar.advance(task[2] - task[1])
    else:
        for task in tasks:
            bad.setdefault(task[0], []).extend(_compare(task))
            bar.advance(task[2] - task[1])


def _entries(mf: MatrixForms, l: int) -> list[tuple[int, int]]:
    """(example, neuron) of each entry of delta{l}, row-major, in the convention's orientation."""
    rows, cols = mf.sym[f"delta{l}"].shape
    return [((r, c) if mf.row else (c, r)) for r in range(rows) for c in range(cols)]


class _Progress:
    """A Rich progress bar on stderr that appears only once the work has run for a second."""

    def __init__(self, total: int, label: str, enabled: bool):
        self.total, self.label, self.enabled = total, label, enabled and total > 0
        self.bar = None
        self.done = 0

    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def advance(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        if self.bar is None and time.perf_counter() - self.start > 1.0:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)
        elif self.bar is not None:
            self.bar.update(self.task, completed=self.done)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        return False


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
