"""What one entry of the layer table (derive.tables.layers.KINDS) gives: the `Kind` record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ROW = "row"  # the spec's convention whose vectors are rows; every other is `column`


def same_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    """A layer whose output has its input's shape (an activation, a norm, a residual block)."""
    return shape_in


def flat_shape(values: dict, shape_in: tuple[int, ...]) -> tuple[int, ...]:
    """A layer of `width` outputs (dense)."""
    return (values["width"],)


def vector_shape(n: int, convention: str) -> tuple[int, int]:
    return (1, n) if convention == ROW else (n, 1)


@dataclass(frozen=True)
class Kind:
    """One kind of block in a layer list: its spec keys, shapes, parameters, forward and backward passes, names."""

    name: str
    keys: tuple[str, ...]  # the settings a spec may give it (besides kind)
    required: tuple[str, ...]
    params: Callable  # (block, convention) -> ((name, shape in the spec's layout), ...)
    forward: Callable  # (ops, X, P, block, inner) -> (Y, saved)
    backward: Callable  # (ops, G, X, saved, P, block, inner) -> (dX, {param: gradient})
    forms: tuple[tuple[str, Callable], ...] = ()  # further textbook backward forms, each proven equal
    latex_forward: tuple[str, ...] = ()  # its equations in a document ({l} the layer, {m} the layer below)
    latex_backward: tuple[str, ...] = ()
    latex_forms: tuple[tuple[str, tuple[str, ...]], ...] = ()  # each further form's equations, by its name
    claim_names: tuple[str, ...] = ()  # what a claim may name of it, with the layer's number appended
    doc: str = ""
    # (settings, input shape) -> output shape; raises ValueError naming what does not fit
    out_shape: Callable[[dict, tuple[int, ...]], tuple[int, ...]] = same_shape
    inputs: tuple[int, ...] = (1,)  # the input shapes' lengths it takes: 1 flat, 2 [C, L] or [T, d], 3 [C, H, W]
    defaults: tuple[tuple[str, object], ...] = ()  # settings that default to another's value ("stride" -> kernel)
