"""Index maps for convolution and pooling: which entry of a flat array each window reads.

A per-example array of shape [C, H, W] (or [C, L] in one dimension) is flat in C, H, W order,
as `torch.flatten` lays it out. A layer's windows are then a gather of its flat input by an
index map (im2col), and each map here is a tuple of flat positions, -1 where the window reads
the zero padding. derive.tables.layers writes convolution and pooling as gathers, matrix
products and the adjoint of a gather (a scatter) with these maps; the proofs run them on SymPy
scalars and the generated modules index NumPy or CuPy arrays with the same tuples.

Everything here works on spatial shapes of one or two dimensions: `spatial` is (H, W) or (L,),
`kernel`, `stride` and `padding` have one entry per spatial dimension.
"""

from __future__ import annotations

from itertools import product
from math import prod


def out_size(n: int, k: int, s: int, p: int) -> int:
    """Positions of a window of size k, stride s, over n entries padded by p on both sides: ⌊(n + 2p − k)/s⌋ + 1."""
    return (n + 2 * p - k) // s + 1


def out_spatial(spatial: tuple[int, ...], kernel, stride, padding) -> tuple[int, ...]:
    return tuple(out_size(n, k, s, p) for n, k, s, p in zip(spatial, kernel, stride, padding))


def _flat(c: int, pos: tuple[int, ...], spatial: tuple[int, ...]) -> int:
    """The flat position of channel c at spatial position pos (C, H, W order)."""
    out = c
    for i, n in zip(pos, spatial):
        out = out * n + i
    return out


def windows(channels: int, spatial: tuple[int, ...], kernel, stride, padding, channel_major: bool = False):
    """im2col: for each output position l (row-major) and each window entry (c, p, q), the input's flat position
    (-1 in the padding). Order: position-major, (l, c, p, q), so that each output position's window is one row of
    C·kh·kw entries (a convolution's); with `channel_major`, (c, l, p, q): each channel's windows one after another
    (a pooling layer's, whose output is then flat in C, H, W order already)."""
    outs = out_spatial(spatial, kernel, stride, padding)
    index = []

    def window(c, l_pos):
        for offs in product(*(range(k) for k in kernel)):
            pos = tuple(s * i + o - p for i, o, s, p in zip(l_pos, offs, stride, padding))
            inside = all(0 <= x < n for x, n in zip(pos, spatial))
            index.append(_flat(c, pos, spatial) if inside else -1)

    if channel_major:
        for c in range(channels):
            for l_pos in product(*(range(n) for n in outs)):
                window(c, l_pos)
    else:
        for l_pos in product(*(range(n) for n in outs)):
            for c in range(channels):
                window(c, l_pos)
    return tuple(index)


def full_windows(out_channels: int, spatial: tuple[int, ...], kernel, stride, padding):
    """The windows of a convolution's input gradient: the upstream gradient (flat, O channels at the output's
    spatial shape) dilated by the stride (s − 1 zeros between entries), padded by k − 1 − p, and read in windows of
    the kernel's size at every input position. Order (input position, o, p', q'); -1 for a dilation zero or the
    padding. The window's entry (p', q') meets the kernel rotated by 180°, W[o, c, k − 1 − p', k − 1 − q']."""
    outs = out_spatial(spatial, kernel, stride, padding)
    index = []
    for pos in product(*(range(n) for n in spatial)):
        for o in range(out_channels):
            for offs in product(*(range(k) for k in kernel)):
                # the dilated, padded gradient at pos + offs: entry (pos + offs − (k − 1 − p)) / s of the gradient
                src = []
                for x, o2, k, s, p, n in zip(pos, offs, kernel, stride, padding, outs):
                    d = x + o2 - (k - 1 - p)
                    src.append(d // s if d >= 0 and d % s == 0 and d // s < n else None)
                index.append(-1 if None in src else _flat(o, tuple(src), outs))
    return tuple(index)


def rotated(out_channels: int, channels: int, kernel) -> tuple[int, ...]:
    """The kernel rotated by 180° with its channels swapped, as a gather of the flat weights W[o, c, p, q]
    (O·C·kh·kw, o-major): entry (o, p', q', c) reads W[o, c, k − 1 − p', k − 1 − q']."""
    size = prod(kernel)
    index = []
    for o in range(out_channels):
        for offs in product(*(range(k) for k in kernel)):
            flipped = tuple(k - 1 - x for k, x in zip(kernel, offs))
            inner = 0
            for x, k in zip(flipped, kernel):
                inner = inner * k + x
            for c in range(channels):
                index.append((o * channels + c) * size + inner)
    return tuple(index)


def channels_last(channels: int, positions: int) -> tuple[int, ...]:
    """A gather from (position, channel) order to (channel, position) order: entry (c, l) reads l·C + c."""
    return tuple(l * channels + c for c in range(channels) for l in range(positions))


def channels_first(channels: int, positions: int) -> tuple[int, ...]:
    """The inverse gather, from (channel, position) to (position, channel): entry (l, c) reads c·L + l."""
    return tuple(c * positions + l for l in range(positions) for c in range(channels))


def repeat(n: int, k: int) -> tuple[int, ...]:
    """Each of n entries k times in a row: a value per window spread over the window's k entries."""
    return tuple(i for i in range(n) for _ in range(k))


def columns(start: int, stop: int) -> tuple[int, ...]:
    return tuple(range(start, stop))
