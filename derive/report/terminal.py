"""The terminal report of a proof (Rich), and the progress of a long one on stderr."""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from derive.proofs.concrete import Check, Proof
from derive.proofs.scalable import PHASES
from derive.tables.notations import text


def _matrix_entry(check: Check) -> str:
    r, c = check.entry
    return f"{check.form}[{r},{c}] = {text(check.matrix)}"


def _factors(check: Check) -> str:
    d = check.derivation
    if d is None:
        return ""
    if d.paths is None:
        return f"{d.n_paths} paths, accumulated"
    lines = []
    for path in d.paths:
        lines.append(" · ".join(f"({text(f.value)})" if f.value.is_Add else text(f.value) for f in path.factors))
    return "\n+ ".join(lines)


def _headline(spec, console: Console, note: str, counted: str = "") -> None:
    """The spec in one line (`counted`, e.g. the parameters, after the sizes), then the note on reduced widths."""
    console.print(
        f"[bold]{spec.name}[/]: sizes {'-'.join(map(str, spec.sizes))}, {counted}{', '.join(dict.fromkeys(spec.activation))}, "
        f"{spec.cost} cost, {spec.convention} convention, bias {spec.bias}, batch {spec.batch}"
        + (f" of {spec.examples} examples" if spec.batch != "single" else ""),
        soft_wrap=True,
    )
    if note:
        console.print(note, soft_wrap=True)


def render(proof: Proof, console: Console, brief: bool = False) -> None:
    spec = proof.spec
    _headline(spec, console, proof.note)
    if proof.net.E > 1:
        console.print(f"batch: the matrix forms over the {proof.net.E} examples are compared with the {spec.batch} of "
                      "the per-example chain-rule gradients", soft_wrap=True)
    if not brief:
        table = Table(show_lines=True)
        table.add_column("partial")
        table.add_column("chain rule: product of local factors, summed over paths")
        table.add_column("matrix entry")
        table.add_column("verdict")
        for c in proof.partials:
            style = "green" if c.proven else "red"
            table.add_row(c.name, _factors(c), _matrix_entry(c), f"[{style}]{c.verdict}[/]")
        console.print(table)
        others = [c for c in proof.checks if c.kind not in ("weight", "bias")]
        by_form: dict[str, list[Check]] = {}
        for c in others:
            by_form.setdefault(c.form, []).append(c)
        for key, group in by_form.items():
            ok = sum(c.proven for c in group)
            form = proof.forms.form(key)
            console.print(f"{'✓' if ok == len(group) else '✗'} {key}: {text(form.lhs)} = {text(form.expr)}  ({ok}/{len(group)} entries)", soft_wrap=True)
    for c in proof.checks:
        if not c.proven:
            console.print(f"[red]{c.verdict}[/] {c.name} ({c.form}[{c.entry[0]},{c.entry[1]}])")
            if c.counterexample:
                ce = c.counterexample
                vals = ", ".join(f"{k}={v:.6g}" for k, v in ce.values.items())
                console.print(f"  counterexample: chain rule {ce.lhs:.12g} ≠ {ce.rhs:.12g} at {vals}")
            break
    if proof.output_delta_is_a_minus_y:
        console.print(f"BP1 simplifies exactly to δ^L = a^L − y ({proof.spec.activation[-1]} output with "
                      f"{proof.spec.cost} cost): the activation's derivative cancels", soft_wrap=True)
    console.print(proof.forms_summary(), soft_wrap=True)
    console.print(proof.summary(), soft_wrap=True)


def _tally(title: str, columns: tuple[str, str, str], counts: dict) -> Table:
    table = Table(title=title)
    table.add_column(columns[0])
    table.add_column(columns[1], justify="right")
    table.add_column(columns[2], justify="right")
    for key, (ok, total) in counts.items():
        table.add_row(key, str(ok), str(total))
    return table


def render_scale(proof, console: Console, brief: bool = False) -> None:
    """The scalable proof's tables, methods and time; brief: only the summary and any failure."""
    if brief:
        _failure(proof, console)
        console.print(proof.summary(), soft_wrap=True)
        return
    _headline(proof.spec, console, proof.note, f"{proof.n_params} parameters, ")
    console.print(_tally("partials by layer and kind", ("parameters", "proven", "total"), proof.per_layer))
    console.print(_tally("matrix forms, entry by entry", ("form", "proven", "entries"), proof.per_form))
    console.print("methods:", soft_wrap=True)
    for m in proof.methods():
        console.print(f"  - {m}", soft_wrap=True)
    secs = proof.seconds
    cpu = secs.get("CPU of this process")
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items() if k not in ("total", "CPU of this process"))
                  + f"; total {secs['total']:.1f} s "
                  + (f"with the Dask cluster {proof.cluster} ({proof.jobs} workers)" if proof.cluster
                     else f"with {proof.jobs} process{'es' if proof.jobs > 1 else ''}")
                  + (f" ({cpu:.1f} s of CPU in this process)" if cpu is not None else ""),
                  soft_wrap=True)
    _failure(proof, console)
    console.print(proof.summary(), soft_wrap=True)


def _failure(proof, console: Console) -> None:
    if proof.failures:
        f = proof.failures[0]
        console.print(f"[red]first failure[/]: {f.name} ({f.form}[{f.entry[0]},{f.entry[1]}])", soft_wrap=True)
        if f.counterexample:
            ce = f.counterexample
            vals = ", ".join(f"{k}={v:.6g}" for k, v in list(ce["values"].items())[:40])
            console.print(f"  counterexample: chain rule {ce['chain_rule']:.12g} ≠ {ce['matrix']:.12g} at {vals}"
                          + (" …" if len(ce["values"]) > 40 else ""), soft_wrap=True)


def working(label: str, enabled: bool):
    """A spinner with the elapsed time on stderr (on a terminal) for work that reports no steps."""
    if not enabled:
        return nullcontext()
    progress = Progress(SpinnerColumn(), TextColumn(label), TimeElapsedColumn(),
                        console=Console(file=sys.stderr), transient=True)
    progress.add_task(label, total=None)
    return progress


class ScaleProgress:
    """derive.proofs.scalable's progress callback: a Rich bar on stderr per phase, shown once the phase has run a second."""

    def __init__(self):
        self.phase = -1
        self.bar = None
        self.start = 0.0

    def __call__(self, done: int, total: int) -> None:
        if done == 0:  # a phase starts
            self._stop()
            self.phase += 1
            self.start = time.perf_counter()
            return
        if self.bar is None and total > 0 and time.perf_counter() - self.start > 1.0:
            label = PHASES[self.phase]
            self.bar = Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                console=Console(file=sys.stderr), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(label, total=total, completed=done)
        elif self.bar is not None:
            self.bar.update(self.task, completed=done)
        if done >= total:
            self._stop()

    def _stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def scale_progress(enabled: bool):
    """What derive.proofs.scalable.prove_scalable's `progress` takes: bars on stderr, or None for none."""
    return ScaleProgress() if enabled else None

