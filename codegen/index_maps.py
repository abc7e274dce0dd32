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
reaches it (overlapping windows), laid out source by source and summed over them; never an
unbuffered add.at in the forward or backward pass.
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
    summed: bool = False  # a scatter's inverse map: (sources per target, targets), summed over the sources


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
    # source k of every target side by side: (width, n), so that the sum adds whole rows of n, not short rows
    inverse = tuple(s[k] if k < len(s) else -1 for k in range(width) for s in sources)
    return Plan("take", (width, n), inverse, padded=any(len(s) < width for s in sources), summed=True)


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


def outer_form(values: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], str] | None:
    """(base, window, holes) when values[l·J + j] = base[l] + window[j] for a split into rows of J, with -1 where bit
    l·J + j of `holes` (hex, most significant bit first) is set: an im2col map is each window's offsets shifted by
    its position, the padding its holes. None when no split prints in under half the numbers of the literal."""
    idx = np.asarray(values, dtype=np.int64)
    n, best = idx.size, None
    for J in range(2, n // 2 + 1):
        if n % J:
            continue
        M = idx.reshape(-1, J)
        valid = M >= 0
        full = np.flatnonzero(valid.all(axis=1))
        if not full.size:
            continue
        window = M[full[0]] - M[full[0], 0]
        first = valid.argmax(axis=1)  # each row's first entry inside (a row of padding only: base 0)
        base = np.where(valid.any(axis=1), M[np.arange(M.shape[0]), first] - window[first], 0)
        if ((base[:, None] + window[None, :] == M) | ~valid).all() and (best is None or M.shape[0] + J < best[0]):
            best = (M.shape[0] + J, base, window, valid)
    if best is None or best[0] * 2 > n:
        return None
    _, base, window, valid = best
    holes = np.packbits(~valid.ravel()).tobytes().hex() if not valid.all() else ""
    return tuple(int(v) for v in base), tuple(int(v) for v in window), holes


def hex_literal(text: str, indent: str = "    ") -> str:
    """A long hex string as adjacent literals, WRAP characters a line."""
    parts = [text[i:i + WRAP] for i in range(0, len(text), WRAP)] or [""]
    if len(parts) == 1:
        return f'"{parts[0]}"'
    return "(\n" + "\n".join(f'{indent}"{p}"' for p in parts) + "\n)"
