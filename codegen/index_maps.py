"""Index maps (derive.tables.windows) as array code: a gather is printed as the cheapest step that does it.

A gather reads column index[f] of its array into column f (0 where index[f] is -1). Most maps
have a shape a reshape, a slice or a repeat says directly: the identity, a run of columns
(x_t of a sequence), a transpose of a grid ((position, channel) to (channel, position)), each
column k times (a value per window spread over the window). Every other map (im2col windows,
a full convolution's windows, a rotated kernel) is a constant the module takes along the
columns, with a zero column appended where the map reads the padding (-1 then reads that
last column, as NumPy's and CuPy's negative indices do).

A scatter (the adjoint of a gather: target m sums the columns f with index[f] == m) is a
gather too: by the inverse map, one column per target and one more per further source that
reaches it (overlapping windows), summed; never an unbuffered add.at in the forward or
backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WRAP = 96  # characters of digits per line of a printed constant


@dataclass(frozen=True)
class Plan:
    """How a gather is printed: `how` is unchanged, slice, transpose, repeat or take; the rest its numbers."""

    how: str
    args: tuple = ()
    constant: tuple | None = None  # the index a take reads (a tuple of ints), for the module's constants
    padded: bool = False  # the take reads the zero padding (index -1): a zero column is appended first
    summed: bool = False  # a scatter's inverse map: (targets, sources per target), summed over the sources


def gather_plan(index: tuple[int, ...], cols: int) -> Plan:
    """The cheapest printed step that gathers `index` from an array of `cols` columns."""
    idx = np.asarray(index, dtype=np.int64)
    n = idx.size
    if n == cols and np.array_equal(idx, np.arange(n)):
        return Plan("unchanged")
    if n and (idx >= 0).all():
        if n == 1 or (np.diff(idx) == idx[1] - idx[0]).all() and idx[1] > idx[0]:
            step = int(idx[1] - idx[0]) if n > 1 else 1
            return Plan("slice", (int(idx[0]), int(idx[-1]) + 1, step))
        if n == cols:
            grid = _transpose(idx)
            if grid is not None:
                return Plan("transpose", grid)
        k = int(np.argmax(idx != idx[0])) if (idx != idx[0]).any() else n
        if n % k == 0 and np.array_equal(idx, np.repeat(np.arange(n // k), k)) and n // k == cols:
            return Plan("repeat", (k,))
    return Plan("take", constant=tuple(int(i) for i in idx), padded=bool((idx < 0).any()))


def _transpose(idx: np.ndarray) -> tuple[int, int] | None:
    """(rows, cols) when idx reads an array laid out as a rows × cols grid into its transpose (cols × rows)."""
    n = idx.size
    f = np.arange(n)
    for rows in range(2, n):
        if n % rows == 0:
            cols = n // rows
            if cols > 1 and np.array_equal(idx, (f % rows) * cols + f // rows):
                return rows, cols
    return None


def scatter_plan(index: tuple[int, ...], n: int) -> Plan:
    """The scatter of `index` into n columns as a gather: by the inverse map, summed where sources overlap."""
    sources: list[list[int]] = [[] for _ in range(n)]
    for f, m in enumerate(index):
        if m >= 0:
            sources[m].append(f)
    width = max(1, max(len(s) for s in sources))
    if width == 1:  # each target reads at most one source: a gather, zero where none
        return gather_plan(tuple(s[0] if s else -1 for s in sources), len(index))
    inverse = tuple(s[k] if k < len(s) else -1 for s in sources for k in range(width))
    return Plan("take", (n, width), inverse, padded=any(len(s) < width for s in sources), summed=True)


def literal(values: tuple[int, ...], indent: str = "    ") -> str:
    """A tuple of ints as a Python literal wrapped at WRAP characters: deterministic, one constant per map."""
    words = [str(v) for v in values]
    lines, line = [], ""
    for w in words:
        if line and len(line) + len(w) + 2 > WRAP:
            lines.append(line + ",")
            line = ""
        line = f"{line}, {w}" if line else w
    lines.append(line)
    if len(lines) == 1:
        return f"({lines[0]}{',' if len(values) == 1 else ''})"
    return "(\n" + "\n".join(indent + part for part in lines) + "\n)"
