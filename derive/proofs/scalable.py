"""Proofs at scale: reverse accumulation over the scalar graph, every matrix entry compared exactly.

The chain rule is accumulated backwards over the graph, so the work grows with the
number of edges: each local derivative is the derivative of one node's own
expression (of the one term of a pre-activation that holds the weight or the
activation, since the other terms are free of it), and each node's adjoint is the
sum over its successors. Every entry of every matrix form is then compared
exactly with the accumulated partial: the difference must expand to 0.

The heavy expanding and differentiating runs in SymEngine; SymPy stays the
reference (tests check that both agree). Every partial is then cross-checked by an
oracle that shares no code with the chain rule (derive.proofs.oracle: SymEngine's
derivative of the composed cost along a random direction, compared at random points of a
prime field, with a stated error bound); `sample` adds the exact sympy.diff oracle on a
random sample of partials spread over every layer and the biases.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import symengine as se
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from derive.chain import ReverseAccumulation
from derive.errors import EXIT_OK, EXIT_REFUTED
from derive.matrix import Form, MatrixForms
from derive.network import Network, Param
from derive.proofs.concrete import group as per_layer_group, oracle_partial
from derive.proofs.engine import Engine, Recipe
from derive.proofs.identity import (ToSymEngine, deep_stack, find_counterexample, has_denominator, is_identity, rational_zero,
                                    relations)
from derive.proofs.oracle import OracleCheck, cross_check
from derive.spec import Spec, load_spec, validate

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
        result = _chain_product([evaluate_form(a, values) for a in mats.args if a.is_Matrix])
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


def _chain_product(ms: list) -> se.DenseMatrix:
    """The product of the matrices in the order that multiplies fewest entries (matrix products associate exactly).

    D^l w^T D^{l+1} w^T ... grad C taken from the left multiplies square matrices (n^3 products
    of symbolic entries); from the right, each step is a matrix times a column.
    """
    n = len(ms)
    dims = [ms[0].rows] + [m.cols for m in ms]
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for span in range(1, n):
        for i in range(n - span):
            j = i + span
            cost[i][j], split[i][j] = min((cost[i][k] + cost[k + 1][j] + dims[i] * dims[k + 1] * dims[j + 1], k)
                                          for k in range(i, j))

    def product(i, j):
        if i == j:
            return ms[i]
        k = split[i][j]
        return _matmul(product(i, k), product(k + 1, j))

    return product(0, n - 1)


def _matmul(a: se.DenseMatrix, b: se.DenseMatrix) -> se.DenseMatrix:
    """a b, each entry one sum built at once: SymEngine's own product adds term by term (quadratic in the inner width)."""
    if a.cols <= 8:
        return a * b
    rows = [[x for x in a.row(i)] for i in range(a.rows)]
    cols = [[x for x in b.col(j)] for j in range(b.cols)]
    return se.DenseMatrix(a.rows, b.cols, [se.Add(*[x * y for x, y in zip(r, c) if x != 0 and y != 0])
                                           for r in rows for c in cols])


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
    oracle_sample: list[str] = field(default_factory=list)  # the exact sympy.diff oracle's partials (`sample`)
    oracle_proven: int = 0
    oracle_seed: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    jobs: int = 1
    note: str = ""
    oracle: OracleCheck | None = None  # the oracle on every partial (derive.proofs.oracle)
    cluster: str | None = None  # the Dask cluster the comparisons ran on (--cluster), else None
    redone: list[str] = field(default_factory=list)  # chunks run again because their worker died, one line each
    chunks: list = field(default_factory=list, repr=False)  # every chunk's derive.proofs.engine.Timing (not in JSON)

    @property
    def partials_proven(self) -> int:
        return sum(v[0] for v in self.per_layer.values())

    @property
    def ok(self) -> bool:
        return (not self.failures and self.oracle_proven == len(self.oracle_sample)
                and (self.oracle is None or self.oracle.agree))

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.ok else EXIT_REFUTED

    def methods(self) -> list[str]:
        out = [
            f"proof (exact): chain rule accumulated in reverse over the scalar graph for all {self.n_params} partials "
            "(local derivatives of each node's own expression, SymEngine)",
            f"proof (exact): every entry of {len(self.per_form)} matrix forms compared exactly with it (difference "
            "expanded to 0): delta^L in full, each lower delta with the deltas of the layer above held as the symbols "
            "just proven equal to them (induction down the layers), then each gradient and update entry through "
            "the proven deltas (an entry this cannot close is expanded in full)" + self._where(),
        ]
        if self.oracle is not None:
            out.append(self.oracle.method())
        if self.oracle_sample:
            out.append(f"exact cross-check: sympy.diff of the composed cost on a random sample of {len(self.oracle_sample)} "
                       f"partials (seed {self.oracle_seed}) spread over every weight matrix"
                       + (" and bias" if self.spec.bias != "none" else "") + f": {self.oracle_proven} agree")
        return out

    def _where(self) -> str:
        """Where the entry comparisons ran: in chunks on a Dask cluster, or in forked processes."""
        if self.cluster:
            return f", in chunks on the Dask cluster {self.cluster} ({self.jobs} workers)"
        return f", in {self.jobs} processes" if self.jobs > 1 else ""

    def summary(self) -> str:
        how = "chain rule = matrix form"
        if self.oracle is not None:
            o = self.oracle
            how += (f"; every partial cross-checked by the SymEngine oracle, error ≤ {o.bound_text()}" if o.agree else
                    "; the SymEngine oracle on every partial undecided" if o.undecided else
                    f"; the SymEngine oracle on every partial disagrees ({', '.join(o.wrong) or 'partial not named'})")
        if self.oracle_sample:
            how += f"; sympy.diff on a sample of {len(self.oracle_sample)}"
        return f"{self.partials_proven}/{self.n_params} partials of C proven equal to the matrix form ({how})"

    def to_json(self) -> dict:
        o = self.oracle
        oracle = {"checked": len(self.oracle_sample), "agree": self.oracle_proven, "seed": self.oracle_seed,
                  "sample": self.oracle_sample or None}
        if o is not None:  # every partial cross-checked; the exact sample, if any, under "sample"
            oracle = {**o.to_json(), "seed": self.oracle_seed, "sample": self.oracle_sample or None,
                      "checked": o.checked, "agree": o.checked - len(o.wrong) if o.agree or o.wrong else 0,
                      "sample_agree": self.oracle_proven}
        return {
            "spec": self.spec.as_dict(), "mode": "scalable", "summary": self.summary(), "proven": self.ok,
            "n_params": self.n_params,
            "per_layer": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_layer.items()},
            "per_form": {k: {"proven": v[0], "total": v[1]} for k, v in self.per_form.items()},
            "methods": self.methods(), "oracle": oracle,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "jobs": self.jobs,
            "cluster": self.cluster, "redone": self.redone,
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

PHASES = ("comparing entries", "oracle on every partial", "sympy.diff oracle sample")  # heard of in turn


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

    A lemma version (the deltas held as proven symbols) is used for a form only once the
    deltas it rests on are proven: a task says so (use_lemma). None where a form has none.
    """

    values: list  # per form: its SymEngine matrix, or a _Lazy that makes it (see value())
    targets: list  # per form, per entry (row-major): (name, param or None, truth); a _Lazy until read
    rule: dict  # every relation of the atoms (derive.proofs.identity.relations), in SymEngine
    kept: dict | None  # the part that leaves every atom in place; None when that is all of rule
    lemma_values: list
    lemma_targets: list
    forms: list = field(default_factory=list)  # per form: the Form compared
    chosen: list = field(default_factory=list)  # per form: whether it is one under test (else a defining delta form)
    net: Network | None = None
    graph: ReverseAccumulation | None = None
    seconds: dict = field(default_factory=dict)

    def is_delta(self, i: int) -> bool:
        return self.forms[i].truth in ("delta", "delta_col")

    def bad_entries(self, task: tuple) -> list[int]:
        """Indices of the entries in [start, stop) of form i that are not identically equal.

        With use_lemma, the lemma version is tried first; only an entry it cannot close is
        expanded in full.
        """
        i, start, stop, use_lemma = task
        lemma_value, lemma_targets = (self.lemma_values[i], self.lemma_targets[i]) if use_lemma else (None, None)
        bad = []
        cols = int(self.forms[i].lhs.shape[1])
        for idx in range(start, stop):
            r, c = idx // cols, idx % cols
            if lemma_value is not None and _zero(lemma_targets[idx][2] - lemma_value[r, c], self.rule, self.kept):
                continue
            if not _zero(self.targets[i][idx][2] - self.value(i)[r, c], self.rule, self.kept):
                bad.append(idx)
        return bad

    def value(self, i: int) -> se.DenseMatrix:
        """Form i evaluated with the network's own matrices (on first use: most forms are closed by their lemma version)."""
        v = self.values[i]
        return v.get() if isinstance(v, _Lazy) else v

    def entries(self, i: int) -> list:
        """(name, param or None, truth) per entry of form i: the lemma version's where there is one (names, params)."""
        return self.lemma_targets[i] if self.lemma_targets[i] is not None else self.targets[i]


class _Lazy:
    """A value made on first use, with its length known before (a form's entries: len() is what the dispatch reads)."""

    def __init__(self, size: int, make: Callable):
        self.size, self.make, self.made = size, make, None

    def __len__(self) -> int:
        return self.size

    def get(self):
        if self.made is None:
            self.made = self.make()
        return self.made

    def __getitem__(self, k):
        return self.get()[k]


class _Env(dict):
    """MatrixSymbol -> SymEngine matrix; a form's left-hand side evaluated from the form that defines it when first read."""

    def __init__(self, base: dict, definers: dict, fallback: dict | None = None):
        super().__init__(base)
        self.definers, self.fallback = definers, fallback

    def __missing__(self, key):
        if key in self.definers:
            self[key] = evaluate_form(self.definers[key].expr, self)
            return self[key]
        if self.fallback is not None:
            return self.fallback[key]
        raise KeyError(key)


def build_comparison(spec: Spec | str | dict | Network, forms: list[Form] | None = None,
                     extra: dict | None = None) -> Comparison:
    """Everything the entry comparisons read, from the spec alone (deterministic: a worker can build its own).

    `forms` replaces the matrix forms under test (the deltas' defining forms are compared
    too: the lemma rests on them), `extra` gives values for MatrixSymbols they use that the
    network does not have.
    """
    times: dict = {}
    t = time.perf_counter()
    net = spec if isinstance(spec, Network) else Network(validate(spec) if isinstance(spec, dict) else load_spec(spec))
    mf = MatrixForms(net, evaluate=False)
    times["network"] = time.perf_counter() - t

    t = time.perf_counter()
    graph = accumulation(net)
    graph.adjoints  # every adjoint and local derivative here, so that this time is the chain rule's
    for p in net.params:
        for e in range(net.E):
            graph.dz_dp(e, p)
    times["chain rule"] = time.perf_counter() - t

    t = time.perf_counter()
    base = {ms: to_se_matrix(v, graph.conv) for ms, v in {**mf.values, **(extra or {})}.items()}
    chosen = forms if forms is not None else mf.forward + mf.forms
    defining = [f for f in mf.forms if f.truth in ("delta", "delta_col")]
    # with forms under test, the proven forms that define each delta come first
    order = chosen if forms is None else defining + [f for f in forms if f not in defining]
    definers: dict = {}
    for form in order:
        if form.lhs not in base:
            definers.setdefault(form.lhs, form)
        if form.expr.shape != form.lhs.shape:
            raise ValueError(f"{form.key}: the form is {form.expr.shape[0]}×{form.expr.shape[1]} but {form.lhs.name} "
                             f"is {form.lhs.shape[0]}×{form.lhs.shape[1]}")
    env = _Env(base, definers)
    compared = [f for f in order if f in chosen or f in defining]

    def plain(form):  # the form with the network's matrices, and its truths: made when first needed
        value = _Lazy(0, lambda: evaluate_form(form.expr, env))
        size = int(form.lhs.shape[0] * form.lhs.shape[1])
        return value, _Lazy(size, lambda: _targets(net, mf, graph, form, value.get()))

    made = [plain(f) for f in compared]
    # the lemma: one symbol per proven delta entry, shared by delta{l} and its column form
    lemma = {(e, l, j): se.Symbol(f"_delta{l}_{j}_e{e}") for e in range(net.E) for l in range(1, net.L + 1)
             for j in range(net.sizes[l])}
    lemma_env = _Env({}, {}, fallback=env)
    for l in range(1, net.L + 1):
        lemma_env[mf.sym[f"delta{l}"]] = se.DenseMatrix(
            *mf.sym[f"delta{l}"].shape, [lemma[(e, l, j)] for e, j in _entries(mf, l)])
        for e in range(net.E):
            name = f"deltac{l}" + ("" if net.E == 1 else f"_e{e}")
            lemma_env[mf.sym[name]] = se.DenseMatrix(net.sizes[l], 1, [lemma[e, l, j] for j in range(net.sizes[l])])
    lemma_forms: list = [None] * len(compared)
    lemma_targets: list = [None] * len(compared)
    for i, form in enumerate(compared):
        if form.truth in ("delta", "delta_col"):
            if form.layer < net.L:  # each delta below the output through the deltas of the layer above
                lemma_forms[i] = evaluate_form(_through_layer_above(mf, form), lemma_env)
        elif form.truth != "z":  # each gradient and update through the deltas
            lemma_forms[i] = evaluate_form(form.expr, lemma_env)
            if form.lhs not in lemma_env:  # the gradient an update uses
                lemma_env[form.lhs] = lemma_forms[i]
        if lemma_forms[i] is not None:
            lemma_targets[i] = _targets(net, mf, graph, form, lemma_forms[i], lemma)
    times["matrix forms"] = time.perf_counter() - t

    sp_rule = relations(net)
    shared: dict = {}  # an identity neuron's value nests the layers below: convert each shared part once
    rule = {graph.conv(k): _shared_conv(v, graph.conv, shared) for k, v in sp_rule.items()}
    kept = {graph.conv(k): _shared_conv(v, graph.conv, shared) for k, v in sp_rule.kept.items()}
    return Comparison([v for v, _ in made], [tg for _, tg in made], rule, None if len(kept) == len(rule) else kept,
                      lemma_forms, lemma_targets, compared, [f in chosen for f in compared], net, graph, times)


def _shared_conv(expr, conv, memo: dict):
    """SymPy -> SymEngine keeping shared parts shared (sympify walks the tree: 2^depth for a deep identity net)."""
    got = memo.get(id(expr))
    if got is None:
        if expr.is_Add or expr.is_Mul or expr.is_Pow:
            args = [_shared_conv(a, conv, memo) for a in expr.args]
            got = memo[id(expr)] = (se.Add if expr.is_Add else se.Mul if expr.is_Mul else se.Pow)(*args), expr
        else:  # the SymPy object is kept with it, so that its id stays its own
            got = memo[id(expr)] = conv(expr), expr
    return got[0]


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


def prove_scalable(spec: Spec | str | Network, sample: int = 0, seed: int = 0, jobs: int = 1,
                   forms: list[Form] | None = None, extra: dict | None = None,
                   progress: Callable[[int, int], None] | None = None, trials: int = 1,
                   cluster: str | None = None) -> ScaleProof:
    """_prove with the entry comparisons spread over `jobs` forked processes, or a Dask cluster (derive.proofs.engine)."""
    with Engine(jobs, cluster) as engine:
        # what a cluster's worker builds its own comparisons from: the spec, and the forms under test
        portable = spec.spec if isinstance(spec, Network) else spec if isinstance(spec, Spec) else load_spec(spec)
        recipe = Recipe.of(build_comparison, portable, forms, extra)
        return _prove(spec, sample, seed, engine, recipe, forms, extra, progress, trials)


@deep_stack
def _prove(spec: Spec | str | Network, sample: int, seed: int, engine: Engine, recipe: Recipe,
           forms: list[Form] | None, extra: dict | None, progress: Callable[[int, int], None] | None,
           trials: int) -> ScaleProof:
    """Prove every partial of a (large) network, and cross-check every partial with the oracle.

    `sample` adds the exact sympy.diff oracle on that many partials (its cost grows with
    the paths, exponentially in depth); `trials` is the number of random points of the
    all-partials oracle (derive.proofs.oracle). `forms` replaces the matrix forms under
    test (for mutation tests), `extra` gives explicit values for MatrixSymbols they use
    that the network does not have. `progress(done, total)` hears of each of PHASES in
    turn, (0, total) first (derive.report.terminal.scale_progress() makes one that draws bars).
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    engine.prepare(recipe)  # a cluster's workers build theirs meanwhile
    comparison = build_comparison(spec, forms, extra)
    dispatch = (engine, replace(recipe, value=comparison))
    net, graph = comparison.net, comparison.graph
    times = dict(comparison.seconds)

    t = time.perf_counter()
    n_forms = len(comparison.forms)
    count = _Count(progress, sum(len(tg) for tg in comparison.targets))
    bad: dict[int, list[int]] = {}
    # the deltas layer by layer from the output: delta^L in full, each lower one with the
    # deltas of the layer above held as the symbols just proven equal to them
    proven_above = False
    for l in range(net.L, 0, -1):
        at = [i for i in range(n_forms) if comparison.is_delta(i) and comparison.forms[i].layer == l]
        _run(comparison, at, bad, dispatch, count, {i: proven_above for i in at})
        proven_above = not any(bad.get(i) for i in at)
    # then the gradients and updates through the proven deltas
    deltas_proven = not any(bad.get(i) for i in range(n_forms) if comparison.is_delta(i))
    rest = [i for i in range(n_forms) if not comparison.is_delta(i)]
    _run(comparison, rest, bad, dispatch, count, {i: deltas_proven for i in rest})
    times["comparison"] = time.perf_counter() - t

    result = ScaleProof(net.spec, len(net.params), jobs=engine.workers, oracle_seed=seed, cluster=engine.cluster,
                        redone=list(engine.notes), chunks=list(engine.timings))
    _tally(result, comparison, bad)

    t = time.perf_counter()
    count = _Count(progress, 1)
    chain = {p: graph.accumulated(p) for p in net.params}  # what the comparisons proved equal to the matrix forms
    result.oracle = cross_check(net, chain, seed=seed, trials=trials)
    for name in result.oracle.wrong:
        result.failures.append(Failure(name, "oracle on every partial", (0, 0)))
    count.advance(1)
    times["oracle (every partial)"] = time.perf_counter() - t

    if sample > 0:
        t = time.perf_counter()
        picked = _oracle_sample(net, sample, seed) if forms is None else []
        count = _Count(progress, len(picked))
        patterns: dict = {}  # the oracle's, per neuron
        sp_rule = relations(net)
        for p in picked:
            ok = is_identity(oracle_partial(net, p, patterns), sp.sympify(graph.accumulated(p)), sp_rule)
            result.oracle_sample.append(p.name)
            result.oracle_proven += ok
            if not ok:
                result.failures.append(Failure(f"dC/d{p.name}", "sympy.diff oracle", (0, 0)))
            count.advance(1)
        times["oracle sample"] = time.perf_counter() - t
    times["CPU of this process"] = time.process_time() - cpu0  # what a loaded machine leaves steady
    times["total"] = time.perf_counter() - t0
    result.seconds = times
    return result


def _tally(result: ScaleProof, comparison: Comparison, bad: dict) -> None:
    """Per layer and per form: how many entries were proven; the first failure with a counterexample."""
    net = comparison.net
    for i, form in enumerate(comparison.forms):
        if not comparison.chosen[i]:
            continue
        cols = int(form.lhs.shape[1])
        entries = comparison.entries(i)
        wrong = set(bad.get(i, []))
        result.per_form[form.key] = [len(entries) - len(wrong), len(entries)]
        for idx, (name, p, _) in enumerate(entries):
            if p is not None:
                tally = result.per_layer.setdefault(per_layer_group(p), [0, 0])
                tally[0] += idx not in wrong
                tally[1] += 1
        if wrong and not result.failures:
            idx = min(wrong)
            truth = sp.sympify(comparison.targets[i][idx][2])
            other = sp.sympify(comparison.value(i)[idx // cols, idx % cols])
            ce = find_counterexample(net, truth, other)
            result.failures.append(Failure(entries[idx][0], form.key, (idx // cols, idx % cols),
                                           None if ce is None else {"values": ce.values, "chain_rule": ce.lhs,
                                                                    "matrix": ce.rhs}))
        elif wrong:
            result.failures.extend(Failure(entries[k][0], form.key, (k // cols, k % cols)) for k in sorted(wrong)[:3])


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


def _run(comparison: Comparison, forms_idx: list[int], bad: dict, dispatch: tuple[Engine, Recipe], count: _Count,
         use_lemma: dict) -> None:
    """Compare the entries of the given forms, in chunks, on dispatch's engine (use_lemma: per form index)."""
    engine, recipe = dispatch
    targets = comparison.targets
    tasks = [(i, s, min(s + CHUNK, len(targets[i])), use_lemma[i]) for i in forms_idx
             for s in range(0, len(targets[i]), CHUNK)]
    labels = [f"the chunk of {comparison.forms[i].key}, entries {s} to {stop - 1}," for i, s, stop, _ in tasks]
    # a task of derive.proofs.engine: Comparison.bad_entries(the comparison there, task), by name
    results = engine.map(Comparison.bad_entries, tasks, recipe, labels,
                         done=lambda task, _: count.advance(task[2] - task[1]))
    for task, result in zip(tasks, results):
        bad.setdefault(task[0], []).extend(result)


def _entries(mf: MatrixForms, l: int) -> list[tuple[int, int]]:
    """(example, neuron) of each entry of delta{l}, row-major, in the convention's orientation."""
    rows, cols = mf.sym[f"delta{l}"].shape
    return [((r, c) if mf.row else (c, r)) for r in range(rows) for c in range(cols)]


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))
