"""What a claim sees of the layer kinds over shaped inputs: attention, a recurrent layer, convolution, pooling.

derive.claims.layers gives a layer list's named arrays as examples × features in the spec's
layout. The kinds of derive.tables.spatial add three views of their own:

- attention: every array is one example's, its rows the sequence positions (T × d for x and
  y, T × d_k for q, k, v, o, T × T for the scores s and the softmax a, Vaswani's P), whatever
  the convention; the claim's `example` picks which. dC/da (∂C/∂P) is the gradient of C by P as
  O = P V reads it, entry by entry, so also at the entries a causal mask sets to 0 (there it is
  Σ_k ∂C/∂O[i,k] V[j,k]: what the textbook's ∂C/∂O Vᵀ gives); everywhere else it is the chain rule.
- rnn: names carry the step, h1t2 (h of layer 1 at step 2), z1t2, delta1t2 (∂C/∂z at step 2),
  x1t2 (that step's input) and y1t2: the layer's output at step t, whose gradient dC/dy1t2 is
  what reaches h_t from above (the upstream gradient's step t, zero before the last step when the
  layer outputs only h_T). dC/dh1t2 is the whole gradient of C by h_t, so δ_t = dC/dh_t ∘ σ'(z_t)
  and dC/dh_t = δ_{t+1} W_hhᵀ + dC/dy_t. h1t0 is h_0 = 0 and delta1t{T+1} is 0: a formula written
  for every t reads at its ends as the textbook means it. In a sum over the steps the step is a
  variable, h1[t-1], delta1[t].
- conv and pooling: arrays stay flat per example in C, H, W order (as the layer list carries
  them); z, a and delta of a convolution are its output's, O channels by the output positions.
  Operators on them, per example: corr(x, delta) (the kernel's gradient: each window of the
  input times δ at its position, summed over positions and examples; in W's layout), rot180(W)
  (the kernel turned by 180°), full_conv(delta, K) (δ dilated by the stride, padded by
  k − 1 − p, correlated with the kernel K: the textbook's full convolution, whose kernel is
  written rotated), upsample(dC/dy) (each window's value copied to every entry of its window,
  summed where windows overlap) and a max pool's mask (1 at each window's first arg-max, laid
  out as the input).
"""

from __future__ import annotations

import re
from math import prod

import sympy as sp

from derive.claims.tree import ClaimError
from derive.graph import gather, scatter
from derive.tables import windows as win
from derive.tables.spatial import pool_index

SEQUENCE = ("attention",)  # arrays one example at a time, rows the positions
STEPPED = ("rnn",)  # names with a step
CONV = ("conv2d", "conv1d")
POOL = ("avgpool2d", "maxpool2d")
STEP_NAMES = ("x", "y", "z", "h", "delta")  # what a recurrent layer names at a step
SAVED = {("attention", "a"): "P", ("rnn", "h"): "Hs", ("rnn", "z"): "Zs", ("rnn", "x"): "xs"}
# attention's arrays as Vaswani writes them: Q1 is q1 (text); the softmax P is a1
UPPER = {"Q": "q", "K": "k", "V": "v", "S": "s", "P": "a", "O": "o"}
OPERATORS = ("corr", "full_conv", "rot180", "upsample")
_STEP = re.compile(r"^([A-Za-z]+)@(?:(-?\d+)|([a-z])([+-]\d+))$")


def with_step(kind: str, step) -> str:
    """h and step 2 -> "h@2"; h and ("t", -1) -> "h@t-1": a Leaf's kind that carries its step."""
    if isinstance(step, tuple):
        return f"{kind}@{step[0]}{step[1]:+d}"
    return f"{kind}@{step}"


def split_step(kind: str):
    """"h@2" -> ("h", 2); "h@t-1" -> ("h", ("t", -1)); "h" -> ("h", None)."""
    m = _STEP.match(kind)
    if m is None:
        return kind, None
    if m.group(2) is not None:
        return m.group(1), int(m.group(2))
    return m.group(1), (m.group(3), int(m.group(4)))


def step_text(kind: str, layer) -> str:
    """h@2 of layer 1 -> h1t2; h@t-1 -> h1[t-1] (the text names)."""
    base, step = split_step(kind)
    if step is None:
        return f"{base}{layer}"
    if isinstance(step, int):
        return f"{base}{layer}t{step}"
    var, off = step
    return f"{base}{layer}[{var}{'' if off == 0 else f'{off:+d}'}]"


# ---------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------

_WEIGHTS = {"q": "Wq", "k": "Wk", "v": "Wv", "o": "Wo", "hh": "Whh", "xh": "Wxh", "ih": "Wxh"}
_OPERATORS = {"rowsum": "rowsum", "corr": "corr", "rot180": "rot180", "rot": "rot180", "full_conv": "full_conv",
              "fullconv": "full_conv", "conv_full": "full_conv", "upsample": "upsample"}


def latex_name(word: str, index: tuple):
    """(kind, index left) for the names these kinds add to LaTeX: W_q, W_{hh}, d_k, Q, K, V, S, P, O, h, M (a max
    pool's mask); else None."""
    letters = "".join(i for i in index if isinstance(i, str)) if index and all(isinstance(i, str) for i in index) \
        else None
    if word == "W" and letters in _WEIGHTS:
        return _WEIGHTS[letters], ()
    if word == "d" and letters == "k":
        return "dk", ()
    if word in UPPER:
        return UPPER[word], index
    if word in ("h", "M"):  # a recurrent layer's h; a max pool's mask, M
        return ("h" if word == "h" else "mask"), index
    return None


def latex_operator(word: str) -> str | None:
    """\\operatorname{rowsum} (or \\mathrm, \\text) -> rowsum; the operators of derive.claims.layers_spatial."""
    m = re.fullmatch(r"\\(?:operatorname|mathrm|text)\{(.*)\}", word)
    return _OPERATORS.get(m.group(1).replace("\\_", "_")) if m else None


def numbered_step(node):
    """A recurrent layer's name with a number subscript, h^{(1)}_2 (or the gradient's entry 2): its step 2."""
    from dataclasses import replace

    from derive.claims.tree import Leaf, Op

    def plain(leaf) -> bool:
        return isinstance(leaf, Leaf) and leaf.kind in STEP_NAMES and isinstance(leaf.layer, int)

    if plain(node) and node.index is not None and len(node.index) == 1 and isinstance(node.index[0], int):
        return Leaf(with_step(node.kind, node.index[0]), node.layer, span=node.span)
    if isinstance(node, Op) and node.op == "entry" and len(node.param) == 1 and isinstance(node.param[0], int) \
            and isinstance(node.args[0], Op) and node.args[0].op == "grad" and plain(node.args[0].args[0]):
        leaf = node.args[0].args[0]
        return replace(node.args[0], args=(Leaf(with_step(leaf.kind, node.param[0]), leaf.layer, span=leaf.span),))
    return node


def lhs_step(ctx, node):
    """A LaTeX left-hand side about a recurrent layer, \\delta^{(1)}_2: its step 2."""
    inner = node.args[0] if node.__class__.__name__ == "Op" and node.op == "entry" else node
    leaf = inner.args[0] if inner.__class__.__name__ == "Op" and inner.op == "grad" else inner
    block = ctx.blocks.get(getattr(leaf, "layer", None))
    return numbered_step(node) if block is not None and block.kind in STEPPED else node


def steps_of(ctx, lhs) -> list[int]:
    """The steps a left-hand side written at step t (\\delta^{(1)}_t, delta1[t]) is claimed at: every t whose step is
    one of the layer's; [] for any other left-hand side."""
    base, step = split_step(lhs.kind)
    block = ctx.blocks.get(lhs.layer)
    if not isinstance(step, tuple) or block is None or block.kind not in STEPPED:
        return []
    return [t for t in range(1, steps(block) + 1) if 1 <= t + step[1] <= steps(block)]


def at_step(lhs, tree, t: int):
    """The left-hand side and the tree with the step t put in (not inside a sum_steps, which binds its own)."""
    from dataclasses import replace

    from derive.claims.tree import Leaf, Op

    def put(node):
        if isinstance(node, Leaf):
            base, step = split_step(node.kind)
            return replace(node, kind=with_step(base, t + step[1])) if isinstance(step, tuple) else node
        if isinstance(node, Op) and node.op != "step_sum":
            return replace(node, args=tuple(put(a) for a in node.args))
        return node
    base, step = split_step(lhs.kind)
    return replace(lhs, kind=with_step(base, t + step[1])), put(tree)


def numbered_lhs(ctx, lhs):
    """A left-hand side whose layer was found from its names: a recurrent layer's \\delta_2 is its step 2."""
    from dataclasses import replace

    block = ctx.blocks.get(lhs.layer)
    if block is not None and block.kind in STEPPED and lhs.kind in STEP_NAMES and lhs.index is not None \
            and len(lhs.index) == 1 and isinstance(lhs.index[0], int):
        return replace(lhs, kind=with_step(lhs.kind, lhs.index[0]), index=None)
    return lhs


# ---------------------------------------------------------------------------
# arrays
# ---------------------------------------------------------------------------

def sequence_view(ctx, block, kind: str, M: sp.Matrix, example: int) -> sp.Matrix:
    """One example's block of an attention layer's array: T rows. x and y are flat per example (T·width), the
    others stacked (E·T rows); a parameter stays as it is."""
    T = block.shape_in[0]
    if M.rows == ctx.E and kind in ("x", "y"):
        w = M.cols // T
        return sp.Matrix(T, w, lambda i, j: M[example, i * w + j])
    if M.rows == ctx.E * T:
        return M[example * T:(example + 1) * T, :]
    return M


def flat_view(ctx, kind: str, layer, home) -> bool:
    """Whether an attention layer's input or output, named in a claim about a layer of another kind, is seen as
    every other layer's arrays are (the batch, laid out) rather than one example's."""
    block, own = ctx.blocks.get(layer), ctx.blocks.get(home)
    return block is not None and block.kind in SEQUENCE and own is not None and own.kind not in SEQUENCE \
        and split_step(kind)[0] in ("x", "y")


def steps(block) -> int:
    return block.shape_in[0]


def step_array(ctx, block, kind: str, step: int, span=None) -> sp.Matrix:
    """A recurrent layer's value at a step, examples × features (the layer's own layout, before `lay`)."""
    T, E, H = steps(block), ctx.E, block.hidden_size
    X, saved, Y = ctx.net.state[block.position]
    name = f"{kind}{block.position}t{step}"
    if kind == "h" and step == 0:
        return sp.zeros(E, H)
    if kind == "delta" and step == T + 1:
        return sp.zeros(E, H)
    if not 1 <= step <= T:
        raise ClaimError(f"{name}: layer {block.position} runs over steps 1 to {T}"
                         + (" (h0 = 0 before the first)" if kind == "h" else ""), span)
    if kind == "delta":
        adj = ctx.adjoint(block.position)
        return saved["Zs"][step - 1].applyfunc(lambda s: adj.get(s, sp.Integer(0)))
    if kind == "y":
        if block.output == "all":
            return Y[:, (step - 1) * H:step * H]
        if step == T:
            return Y
        raise ClaimError(f"{name}: layer {block.position} outputs only its last step, y{block.position}t{T} = "
                         f"h{block.position}t{T}", span)
    return saved[SAVED[("rnn", kind)]][step - 1]


def step_upstream(ctx, block, step: int) -> sp.Matrix:
    """dC/dy_t: the part of the layer's upstream gradient that reaches h_t from above (0 before the last step when
    only h_T is the output)."""
    T, H, G = steps(block), block.hidden_size, ctx.G[block.position]
    if block.output == "all":
        return G[:, (step - 1) * H:step * H]
    return G if step == T else sp.zeros(ctx.E, H)


def conv_flat(ctx, block, M: sp.Matrix) -> sp.Matrix:
    """A convolution's per-position array ((E·L) × O, position-major) flat per example in C, H, W order."""
    O, L = block.out_channels, prod(block.shape[1:])
    return sp.Matrix(ctx.E, O * L, lambda e, f: M[e * L + f % L, f // L])


def pool_mask(ctx, block) -> sp.Matrix:
    """A max pool's mask laid out as its input: each window's arg-max entry 1 (summed where windows overlap)."""
    mask = ctx.net.state[block.position][1]["mask"]
    n_out = prod(block.shape)
    flat = sp.Matrix(ctx.E, n_out * mask.cols, lambda e, f: mask[e * n_out + f // mask.cols, f % mask.cols])
    return scatter(flat, pool_index(block), prod(block.shape_in))


# ---------------------------------------------------------------------------
# the operators, on arrays as the claim lays them out (examples by rows in `row`, by columns in `column`)
# ---------------------------------------------------------------------------

def _flat(ctx, M, width: int, what: str) -> sp.Matrix:
    """M as examples × features, checked to be `width` wide."""
    A = M if ctx.row else M.T
    if A.shape != (ctx.E, width):
        shown = (ctx.E, width) if ctx.row else (width, ctx.E)
        raise ValueError(f"{what} is {M.rows}×{M.cols}, not {shown[0]}×{shown[1]}")
    return A


def _kernel_rows(ctx, block, K) -> sp.Matrix:
    """A kernel in W's layout as rows (c, p, q) × columns o."""
    O, Kn = block.out_channels, block.shape_in[0] * prod(block.kernel_size)
    want = (Kn, O) if ctx.row else (O, Kn)
    if K.shape != want:
        raise ValueError(f"the kernel is {K.rows}×{K.cols}, not {want[0]}×{want[1]} as W{block.position} is")
    return K if ctx.row else K.T


def _as_kernel(ctx, M: sp.Matrix) -> sp.Matrix:
    return M if ctx.row else M.T


def corr(ctx, block, A, D) -> sp.Matrix:
    """Σ over examples and positions of each window of A (the layer's input) times D at its position: X ⋆ δ, in W's
    layout."""
    C, spatial = block.shape_in[0], block.shape_in[1:]
    O, L, Kn = block.out_channels, prod(block.shape[1:]), C * prod(block.kernel_size)
    X = _flat(ctx, A, prod(block.shape_in), "the input")
    Dm = _flat(ctx, D, O * L, "δ")
    index = win.windows(C, spatial, block.kernel_size, block.stride, block.padding)
    cols = gather(X, index)
    out = sp.zeros(Kn, O)
    for e in range(ctx.E):
        for l in range(L):
            for k in range(Kn):
                x = cols[e, l * Kn + k]
                if x != 0:
                    for o in range(O):
                        out[k, o] += x * Dm[e, o * L + l]
    return _as_kernel(ctx, out)


def rot180(ctx, block, K) -> sp.Matrix:
    """The kernel turned by 180° in its spatial axes, per channel pair, in W's layout."""
    rows, kernel = _kernel_rows(ctx, block, K), block.kernel_size
    size = prod(kernel)
    flip = [_inner(tuple(k - 1 - x for k, x in zip(kernel, offs)), kernel) for offs in _offsets(kernel)]
    out = sp.Matrix(rows.rows, rows.cols, lambda r, o: rows[(r // size) * size + flip[r % size], o])
    return _as_kernel(ctx, out)


def full_conv(ctx, block, D, K) -> sp.Matrix:
    """δ dilated by the stride, padded by k − 1 − p and correlated with K (not turned: the claim turns it), per
    example: (examples × C·H·W) as laid out."""
    C, spatial, kernel = block.shape_in[0], block.shape_in[1:], block.kernel_size
    O, L, size = block.out_channels, prod(block.shape[1:]), prod(kernel)
    Dm = _flat(ctx, D, O * L, "δ")
    rows = _kernel_rows(ctx, block, K)  # [(c, p, q), o]
    index = win.full_windows(O, spatial, kernel, block.stride, block.padding)
    positions = prod(spatial)
    width = O * size
    out = sp.zeros(ctx.E, C * positions)
    for e in range(ctx.E):
        for pos in range(positions):
            for f in range(width):
                src = index[pos * width + f]
                if src < 0:
                    continue
                o, inner = f // size, f % size
                d = Dm[e, src]
                for c in range(C):
                    out[e, c * positions + pos] += d * rows[c * size + inner, o]
    return out if ctx.row else out.T


def upsample(ctx, block, G) -> sp.Matrix:
    """Each window's value copied to every entry of its window, summed where windows overlap; laid out as the
    pooling layer's input."""
    n_out, k = prod(block.shape), prod(block.kernel_size)
    Gm = _flat(ctx, G, n_out, "its argument")
    spread = gather(Gm, win.repeat(n_out, k))
    out = scatter(spread, pool_index(block), prod(block.shape_in))
    return out if ctx.row else out.T


def _offsets(kernel):
    from itertools import product

    return list(product(*(range(k) for k in kernel)))


def _inner(offs, kernel) -> int:
    out = 0
    for x, k in zip(offs, kernel):
        out = out * k + x
    return out
