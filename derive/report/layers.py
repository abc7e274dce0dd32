"""The terminal report of a layer-list proof (Rich): one row per layer and form, the forms, the first failure."""

from __future__ import annotations

import re

import numpy as np
from rich.console import Console
from rich.table import Table

from derive.proofs.layered import LayeredProof
from derive.tables.layers import KINDS
from derive.tables.spatial_latex import NOTES


def shape_text(shape: tuple[int, ...]) -> str:
    """A per-example shape as a spec writes it: '[1,4,4]', or the width alone when flat: '8'."""
    return f"[{','.join(map(str, shape))}]" if len(shape) > 1 else str(shape[0])


def _by(values: tuple[int, ...]) -> str:
    """A kernel size: '3×3', or '3' in one dimension."""
    return "×".join(map(str, values))


def _one(values: tuple[int, ...]) -> str:
    """A stride or a padding: '1' when the same along every axis, else '(1,2)'."""
    return str(values[0]) if len(set(values)) == 1 else f"({','.join(map(str, values))})"


def settings(block) -> list[str]:
    """A shaped layer's settings in words: ['2×3×3', 'stride 1', 'pad 1', 'relu'] for a conv2d."""
    if block.kind in ("conv2d", "conv1d"):
        out = [f"{block.out_channels}×{_by(block.kernel_size)}", f"stride {_one(block.stride)}",
               f"pad {_one(block.padding)}", block.activation]
        return out + ([] if block.bias == "separate" else ["no bias"])
    if block.kind in ("avgpool2d", "maxpool2d"):
        same = block.stride == block.kernel_size
        return [_by(block.kernel_size)] + ([] if same else [f"stride {_one(block.stride)}"])
    if block.kind == "attention":
        out = [f"d_k={block.head_dim or block.shape_in[1]}"]
        return out + (["causal"] if block.causal else []) + (["out_proj"] if block.out_proj else [])
    if block.kind == "rnn":
        out = [str(block.hidden_size), block.nonlinearity, block.output]
        return out + ([] if block.bias == "separate" else ["no bias"])
    return []


def shaped_name(check: str, spec) -> str:
    """A check's entry with the multi-index of its shape, where the flat name hides it: dC/dw1[0,5] of a conv2d
    on [1, 4, 4] -> 'w1[0,0,1,2]' (torch's weight[0, 0, 1, 2]); dC/dx2[1,6] -> 'x2[1,1,1,0]'; else ''."""
    m = re.match(r"^dC/d([A-Za-z]+)(\d+)\[(\d+),(\d+)\]$", check)
    block = next((b for b in spec.blocks if m and b.position == int(m.group(2))), None)
    if block is None:
        return ""
    head, layer, first, flat = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
    if head == "x" and len(block.shape_in) > 1:
        shape = block.shape_in
    elif head == "w" and block.kind in ("conv2d", "conv1d"):
        shape = (block.shape_in[0],) + tuple(block.kernel_size)
    else:
        return ""
    return f"{head}{layer}[{','.join(map(str, (first,) + tuple(int(i) for i in np.unravel_index(flat, shape))))}]"


def layer_line(block) -> str:
    """One layer as a reader names it: 'dense 4 tanh', 'batchnorm (eps 1/100)', 'residual [dense 4 tanh]',
    'conv2d 2×3×3 stride 1 pad 1 relu [1,4,4]→[2,4,4]', 'maxpool2d 2×2', 'rnn 3 tanh last'."""
    if block.kind == "dense":
        bias = "" if block.bias == "separate" else ", no bias"
        return f"dense {block.width} {block.activation}{bias}"
    if block.kind == "activation":
        return block.activation
    if block.kind in ("batchnorm", "layernorm"):
        return f"{block.kind} (eps {block.eps}{'' if block.affine else ', no affine'})"
    if block.inner:
        return f"{block.kind} ({', '.join(layer_line(b) for b in block.inner)})"
    shapes = f"{shape_text(block.shape_in)}→{shape_text(block.shape)}"
    return " ".join([block.kind] + settings(block) + [shapes])


def headline(spec) -> str:
    return (f"[bold]{spec.name}[/]: inputs {shape_text(spec.shape)}, layers "
            + " → ".join(layer_line(b) for b in spec.layers)
            + f"; {spec.cost} cost, {spec.convention} convention, batch {spec.batch}"
            + (f" of {spec.examples} examples" if spec.batch != "single" else ""))


def render_layers(proof: LayeredProof, console: Console, brief: bool = False) -> None:
    """Each layer's forms with their counts; brief: only the summary and any failure."""
    if not brief:
        console.print(headline(proof.spec), soft_wrap=True)
        if proof.note:
            console.print(proof.note, soft_wrap=True)
        table = Table(title="each layer's backward, for any upstream gradient G = ∂C/∂y")
        for column, justify in (("layer", "right"), ("kind", "left"), ("form", "left"), ("∂C/∂x", "right"),
                                ("∂C/∂params", "right"), ("verdict", "left")):
            table.add_column(column, justify=justify)
        for row in proof.per_block():
            (gi, ti), (gp, tp) = row["input"], row["partials"]
            good = gi == ti and gp == tp
            table.add_row(str(row["layer"]), row["kind"], row["form"], f"{gi}/{ti}", f"{gp}/{tp}" if tp else "–",
                          f"[{'green' if good else 'red'}]{'PROVEN' if good else 'NOT PROVEN'}[/]")
        console.print(table)
        console.print("forms (derive.tables.layers):", soft_wrap=True)
        for kind in dict.fromkeys(b.kind for b in proof.spec.blocks):
            entry = KINDS[kind]
            console.print(f"  {kind}: {entry.doc}", soft_wrap=True)
            console.print(f"    backward: {_first_line(entry.backward.__doc__)}", soft_wrap=True)
            for name, step in entry.forms:
                console.print(f"    {name}: {_first_line(step.__doc__)}", soft_wrap=True)
            if kind in NOTES:
                console.print(f"    note: {NOTES[kind]}", soft_wrap=True)
        console.print(f"time: {proof.seconds:.1f} s", soft_wrap=True)
    for c in proof.checks:
        if not c.proven:
            shaped = shaped_name(c.name, proof.spec)
            console.print(f"[red]{c.verdict}[/] layer {c.position} ({c.block}) {c.name}"
                          + (f" (∂C/∂{shaped})" if shaped else "") + f": chain rule ≠ {c.form}", soft_wrap=True)
            if c.counterexample:
                ce = c.counterexample
                vals = ", ".join(f"{k}={v:.6g}" for k, v in ce.values.items())
                console.print(f"  counterexample: chain rule {ce.lhs:.12g} ≠ {ce.rhs:.12g} at {vals}", soft_wrap=True)
            break
    console.print(proof.summary(), soft_wrap=True)


def _first_line(doc: str | None) -> str:
    return " ".join((doc or "").split())
