"""The tree a claim is read into, its limits, and what both readers share.

Both readers (derive.claims.text walks Python's ast with a whitelist, derive.claims.latex
runs a Lark grammar) produce the same small tree of Num, Leaf and Op nodes; nothing a
user wrote is ever executed. Each node keeps the span of the source it came from, so
errors point at a column and repairs quote the claim. The tree is evaluated by
derive.claims.evaluate and printed back in the claim's own syntax by
derive.claims.printing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import sympy as sp

from derive.tables.layers import DENSE
from derive.tables.reading import Reading

# -- limits: checked before and during parsing, so hostile input fails fast ----------
MAX_CLAIM_CHARS = 10_000  # characters in one right-hand side
MAX_NESTING = 100  # depth of ( [ { in the source
MAX_DEPTH = 200  # depth of the parsed tree
MAX_NODES = 2_000  # nodes of the parsed tree
MAX_EXPONENT = 32  # largest |n| in a power x**n
MAX_NUMBER_DIGITS = 30  # digits of one number literal
MAX_BITS = 4_096  # size of a constant folded from literals
MAX_SUM_RANGE = 1_000  # terms of one \sum
MAX_WORK = 20_000  # nodes visited while evaluating (sums multiply it)
MAX_TERMS = 50_000  # estimated terms of the expanded claim

TEXT_HINTS = {"σ": "sigma", "δ": "delta", "−": "-", "·": "*", "×": "*", "⊙": "*", "ᵀ": ".T", "′": "_prime", "∂": "dC/d"}
LATEX_HINTS = {"σ": r"\sigma", "δ": r"\delta", "−": "-", "·": r"\cdot", "×": r"\times", "⊙": r"\odot", "ᵀ": "^T",
               "′": "'", "∂": r"\partial", "∑": r"\sum", "∇": r"\nabla"}


class ClaimError(Exception):
    """A claim that cannot be read: the message and the span of the source at fault."""

    def __init__(self, message: str, span: tuple[int, int] | None = None, sides: list | None = None):
        super().__init__(message)
        self.message = message
        self.span = span
        self.sides = sides  # a chain of equalities: the spans of its sides, to check one pair at a time


class ShapeError(Exception):
    """Sizes that do not fit: the claim reads, but it is wrong (a REFUTED verdict)."""


class Invalid(Exception):
    """A candidate repair that cannot be evaluated (an index out of range, a sigma of no neuron)."""


def position(source: str, offset: int) -> str:
    """'column 7', or 'line 2, column 3' in a multi-line claim (1-based)."""
    offset = max(0, min(offset, len(source)))
    line = source.count("\n", 0, offset)
    col = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return f"line {line + 1}, column {col}" if "\n" in source else f"column {col}"


def precheck(source: str, hints: dict[str, str]) -> None:
    """Length, characters and bracket depth, before any parser sees the source."""
    if len(source) > MAX_CLAIM_CHARS:
        raise ClaimError(f"{len(source)} characters; a claim has at most {MAX_CLAIM_CHARS}", (0, 0))
    if not source.strip():
        raise ClaimError("empty", (0, 0))
    for i, ch in enumerate(source):
        if ord(ch) > 127 or (ord(ch) < 32 and ch not in "\t\n\r"):
            hint = f"; write {hints[ch]!r}" if ch in hints else ""
            raise ClaimError(f"character {ch!r} is not allowed{hint}", (i, i + 1))
    for m in re.finditer(r"\d(?:_?\d)*", source):  # Python allows 1_000: the digits count, not the runs
        digits = len(m.group().replace("_", ""))
        if digits > MAX_NUMBER_DIGITS:
            raise ClaimError(f"a number of {digits} digits; at most {MAX_NUMBER_DIGITS}", m.span())
    opened: list[int] = []
    for i, ch in enumerate(source):
        if ch in "([{":
            opened.append(i)
            if len(opened) > MAX_NESTING:
                raise ClaimError(f"brackets nested more than {MAX_NESTING} deep", (i, i + 1))
        elif ch in ")]}":
            if not opened:
                raise ClaimError(f"'{ch}' closes no bracket", (i, i + 1))
            opened.pop()
    if opened:
        i = opened[-1]
        raise ClaimError(f"'{source[i]}' is never closed", (i, i + 1))


def fold_power(base: sp.Rational, exp: int, span) -> sp.Rational:
    """base**exp for numbers, refusing anything whose size would explode."""
    check_exponent(exp, span)
    if base == 0 and exp < 0:
        raise ClaimError("division by zero", span)
    bits = max(abs(base.p).bit_length(), base.q.bit_length()) * abs(exp)
    if bits > MAX_BITS:
        raise ClaimError(f"the number is too large (about {bits} bits; at most {MAX_BITS})", span)
    return base**exp


def check_exponent(exp, span) -> int:
    if not isinstance(exp, int):
        raise ClaimError("an exponent must be an integer", span)
    if abs(exp) > MAX_EXPONENT:
        raise ClaimError(f"exponent {exp} is out of range; a claim's powers run from -{MAX_EXPONENT} to {MAX_EXPONENT}", span)
    return exp


def number(text: str, span) -> sp.Rational:
    digits = sum(ch.isdigit() for ch in text)
    if digits > MAX_NUMBER_DIGITS:
        raise ClaimError(f"a number of {digits} digits; at most {MAX_NUMBER_DIGITS}", span)
    return sp.Rational(text)


@dataclass(frozen=True)
class Shape:
    """What a reader needs to know of the network: its depth and the activations by layer."""

    L: int
    activations: tuple[str, ...]  # layer 1..L
    style: str = "paren"  # how LaTeX writes a layer: "paren" a^{(l)}_j, "bare" a^l_j
    reading: Reading | None = None  # the notation claims are read in (None: the project's own, in `style`)
    examples: int = 1  # examples in the claims' batch
    widths: tuple[int, ...] = ()  # n_0 .. n_L

    @property
    def notation(self) -> Reading:
        return self.reading if self.reading is not None else Reading(layers=self.style)


def check_layer(kind: str, layer: int, shape: Shape, span) -> int:
    low = 0 if kind in ("a", "A") else 1
    if not low <= layer <= shape.L:
        what = "0 (the inputs)" if low == 0 else "1"
        raise ClaimError(f"{kind}{layer}: there is no layer {layer}; {kind} runs over layers {what} to {shape.L}", span)
    return layer


# ---------------------------------------------------------------------------
# the tree
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    span: tuple[int, int] | None = field(default=None, compare=False, kw_only=True)


@dataclass(frozen=True)
class Num(Node):
    value: sp.Rational

    def __post_init__(self):
        object.__setattr__(self, "value", sp.Rational(self.value))


# An index item is an int or (variable, offset) for an index bound by a \sum.
Index = tuple


@dataclass(frozen=True)
class Leaf(Node):
    """A named quantity of the network: a scalar when `index` is given, else a vector or matrix.

    kind: w W b a A z delta y D g C ones rate; layer: None for y, g, C and rate, a number, or
    (variable, offset) for a layer a claim leaves free (Ng's [l-1], Bishop's unit j); alias:
    the word the claim used where two name the same thing (x for a0, T or y for the targets);
    example: the index variable that names the example (RHW's p in o_{pj}), or None.
    """

    kind: str
    layer: int | tuple | None
    index: Index | None = None
    alias: str | None = field(default=None, compare=False)
    example: str | int | None = None


@dataclass(frozen=True)
class Op(Node):
    """op: add sub neg mul (NumPy '*') dot (a LaTeX product) matmul had div pow epow T diag
    sigma sigma_prime entry sum partial grad change axis_sum mask; param: the exponent, the
    activation's name, the entry's index, a sum's (variable, low, high) (None where the claim
    leaves the range to the index), grad's scale ("example" or "batch"), change's example
    variable, axis_sum's axis."""

    op: str
    args: tuple[Node, ...]
    param: object = None


LAYERED = DENSE.claim_names  # w W b a A z delta D: the names that carry a layer number
LATEX_NAMES = {kind: r"\delta" if kind == "delta" else kind for kind in LAYERED}  # how LaTeX writes each


def partial_ratio(node) -> tuple[Node, Node] | None:
    """\\frac{\\partial top}{\\partial by} as (top, by); None for anything else."""
    if isinstance(node, Op) and node.op == "div" and all(isinstance(a, Op) and a.op == "partial" for a in node.args):
        return node.args[0].args[0], node.args[1].args[0]
    return None


def shifted(node: Node | None, by: int):
    """The tree with every span moved by `by` characters (a part read on its own, put back in its claim)."""
    if node is None:
        return None
    span = (node.span[0] + by, node.span[1] + by) if node.span else None
    if isinstance(node, Op):
        return replace(node, args=tuple(shifted(a, by) for a in node.args), span=span)
    return replace(node, span=span)


def walk(node: Node, path: tuple = ()):
    """Every node with its path of child positions, parents first."""
    stack = [(node, path)]
    while stack:
        n, p = stack.pop()
        yield n, p
        if isinstance(n, Op):
            for i in range(len(n.args) - 1, -1, -1):
                stack.append((n.args[i], p + (i,)))


def at(node: Node, path: tuple) -> Node:
    for i in path:
        node = node.args[i]
    return node


def substitute(node: Node, path: tuple, new: Node) -> Node:
    """The tree with the node at path replaced; a transpose of a transpose cancels."""
    if not path:
        return new
    i = path[0]
    child = substitute(node.args[i], path[1:], new)
    if node.op == "T" and isinstance(child, Op) and child.op == "T":
        return child.args[0]
    return replace(node, args=node.args[:i] + (child,) + node.args[i + 1:])


def count_and_depth(node: Node) -> tuple[int, int]:
    count = depth = 0
    for _, p in walk(node):
        count += 1
        depth = max(depth, len(p))
    return count, depth


def check_size(node: Node) -> Node:
    count, depth = count_and_depth(node)
    if count > MAX_NODES:
        raise ClaimError(f"the claim has {count} parts; at most {MAX_NODES}", node.span)
    if depth > MAX_DEPTH:
        raise ClaimError(f"the claim is nested {depth} deep; at most {MAX_DEPTH}", node.span)
    return node


def work_of(node: Node) -> int:
    """Nodes an evaluation visits: a sum's body counts once per term."""
    memo: dict[int, int] = {}
    order = [n for n, _ in walk(node)]
    for n in reversed(order):  # children before parents
        if isinstance(n, Op):
            inner = sum(memo[id(a)] for a in n.args)
            if n.op == "sum":
                _, lo, hi = n.param
                inner *= hi - lo + 1
            memo[id(n)] = min(1 + inner, 10 * MAX_WORK)
        else:
            memo[id(n)] = 1
    return memo[id(node)]

