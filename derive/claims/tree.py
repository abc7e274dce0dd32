"""The tree a claim is read into, its limits, its evaluation and its printing.

Both readers (derive.claims.text walks Python's ast with a whitelist, derive.claims.latex
runs a Lark grammar) produce the same small tree of Num, Leaf and Op nodes; nothing a
user wrote is ever executed. The tree is evaluated exactly in SymPy, for the proof, and
in floating point, to sift candidate repairs quickly; both evaluations share one set of
shape rules, so a shape error reads the same either way. Each node keeps the span of
the source it came from, so errors point at a column and repairs quote the claim.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Callable

import numpy as np
import sympy as sp

from derive.tables.activations import ACTIVATIONS

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

    def __init__(self, message: str, span: tuple[int, int] | None = None):
        super().__init__(message)
        self.message = message
        self.span = span


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

    kind: w W b a A z delta y D g C ones; layer: None for y, g and C; alias: the word the
    claim used where two name the same thing (x for a0, T or y for the targets).
    """

    kind: str
    layer: int | None
    index: Index | None = None
    alias: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Op(Node):
    """op: add sub neg mul (NumPy '*') dot (a LaTeX product) matmul had div pow epow T diag
    sigma sigma_prime entry sum partial; param: the exponent, the activation's name, the
    entry's index or a sum's (variable, low, high)."""

    op: str
    args: tuple[Node, ...]
    param: object = None


LAYERED = ("w", "W", "b", "a", "A", "z", "delta", "D")


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


# ---------------------------------------------------------------------------
# evaluation
# ---------------------------------------------------------------------------

def is_matrix(v) -> bool:
    return isinstance(v, (sp.MatrixBase, np.ndarray))


def shape_of(v) -> tuple[int, int] | None:
    return tuple(v.shape) if is_matrix(v) else None


def size_text(shape) -> str:
    return "a scalar" if shape is None else f"{shape[0]}×{shape[1]}"


class Leaves(ABC):
    """What an evaluation needs from the network: leaf values and the activations.

    derive.claims implements it for SymPy values (SymLeaves) and for numbers at a point (NumLeaves).
    """

    numeric: bool = False

    @abstractmethod
    def scalar(self, kind: str, layer: int | None, index: tuple[int, ...], node: Leaf):
        """One named scalar (index resolved)."""

    @abstractmethod
    def matrix(self, kind: str, layer: int | None, node: Leaf):
        """A named vector or matrix (or C, the cost)."""

    @abstractmethod
    def activate(self, value, name: str | None, prime: bool, node: Op):
        """sigma (or sigma') of a value that must be a neuron's pre-activation, entry by entry."""

    def is_zero(self, value) -> bool:
        """Whether a denominator is 0 at every point of the network (SymLeaves adds the network's relations)."""
        return value == 0


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


def _total(terms: list):
    first = terms[0]
    if isinstance(first, np.ndarray) or isinstance(first, float):
        return sum(terms[1:], first)
    if isinstance(first, sp.MatrixBase):
        return sp.Matrix(first.rows, first.cols, lambda i, j: sp.Add(*[t[i, j] for t in terms]))
    return sp.Add(*terms)


class Evaluator:
    """Evaluate a tree over Leaves; shape rules as in NumPy for '*', as in mathematics for products."""

    def __init__(self, leaves: Leaves, describe: Callable[[Node], str], broadcast: bool = True):
        self.leaves = leaves
        self.describe = describe
        self.broadcast = broadcast  # text's + - * / broadcast as NumPy's do; LaTeX's operators do not

    def __call__(self, node: Node):
        cost = work_of(node)
        if cost > MAX_WORK:
            raise ClaimError(f"the claim takes about {cost} steps to evaluate (its sums multiply out); at most "
                             f"{MAX_WORK}", (0, 0))
        return self.eval(node, {})

    # -- helpers -----------------------------------------------------------------
    def _bad(self, node: Node, message: str):
        if self.leaves.numeric:
            raise Invalid(message)
        raise ClaimError(message, node.span)

    def _const(self, q):
        return float(q) if self.leaves.numeric else q

    def _index(self, node: Node, items, env) -> tuple[int, ...]:
        out = []
        for item in items:
            if isinstance(item, tuple):
                var, off = item
                if var not in env:
                    self._bad(node, f"index {var} is not bound by a \\sum (write a number, or \\sum_{{{var}=0}}^{{1}} ...)")
                out.append(env[var] + off)
            else:
                out.append(item)
        return tuple(out)

    def _same(self, node: Node, a, b, what: str):
        """Sizes of an elementwise operation: equal, or (in text) broadcast as NumPy broadcasts them."""
        sa, sb = shape_of(a), shape_of(b)
        if sa is None or sb is None or sa == sb:
            return
        l, r = node.args
        sizes = f"{self.describe(l)} is {size_text(sa)} but {self.describe(r)} is {size_text(sb)}"
        if all(x == y or 1 in (x, y) for x, y in zip(sa, sb)):
            if self.broadcast:
                return
            self._bad(node, f"{what}: {sizes}; LaTeX's operators do not broadcast, so it reads either as NumPy's "
                            "broadcasting or as a mistake in the sizes: make the sizes equal, or write the claim as "
                            "text (rhs), where + - * / broadcast as in NumPy")
        raise ShapeError(f"{what}: {sizes}")

    def _nonzero(self, den: Node, value) -> None:
        """Refuse a denominator that is 0 everywhere, judged on its own value, before anything can cancel it."""
        if self.leaves.numeric:
            return
        for x in (value if is_matrix(value) else [value]):
            try:
                zero = self.leaves.is_zero(x)
            except ClaimError as exc:
                raise ClaimError(exc.message, exc.span or den.span) from None
            if zero:
                if isinstance(den, Num):
                    self._bad(den, "division by zero")
                entry = "an entry of " if is_matrix(value) else ""
                self._bad(den, f"division by zero: {entry}{self.describe(den)} is 0 at every point of the network "
                               "(whatever the weights, inputs and targets)")

    def _elementwise(self, a, b, f):
        if is_matrix(a) and is_matrix(b):
            if isinstance(a, np.ndarray):
                return f(a, b)
            rows, cols = max(a.rows, b.rows), max(a.cols, b.cols)  # a size of 1 stretches, as in NumPy
            return sp.Matrix(rows, cols, lambda i, j: f(a[i % a.rows, j % a.cols], b[i % b.rows, j % b.cols]))
        if is_matrix(a):
            return f(a, b) if isinstance(a, np.ndarray) else a.applyfunc(lambda x: f(x, b))
        if is_matrix(b):
            return f(a, b) if isinstance(b, np.ndarray) else b.applyfunc(lambda x: f(a, x))
        return f(a, b)

    def _matmul(self, node: Node, a, b):
        sa, sb = shape_of(a), shape_of(b)
        if sa[1] != sb[0]:
            l, r = node.args
            raise ShapeError(f"{self.describe(node)}: {self.describe(l)} is {size_text(sa)} and {self.describe(r)} is "
                             f"{size_text(sb)}; a matrix product needs the {sa[1]} columns of the first to meet "
                             f"{sb[0]} rows of the second")
        return a @ b if isinstance(a, np.ndarray) else a * b

    # -- the walk ----------------------------------------------------------------
    def eval(self, node: Node, env: dict):
        if isinstance(node, Num):
            return self._const(node.value)
        if isinstance(node, Leaf):
            if node.index is None:
                return self.leaves.matrix(node.kind, node.layer, node)
            return self.leaves.scalar(node.kind, node.layer, self._index(node, node.index, env), node)
        op = node.op
        if op == "sum":
            var, lo, hi = node.param
            terms = [self.eval(node.args[0], {**env, var: v}) for v in range(lo, hi + 1)]
            return _total(terms)  # an index never changes a term's size, so the terms add
        if op in ("sigma", "sigma_prime"):
            arg = self.eval(node.args[0], env)
            return self.leaves.activate(arg, node.param, op == "sigma_prime", node)
        if op == "partial":
            self._bad(node, "\\partial belongs on the left-hand side, as in \\frac{\\partial C}{\\partial w^{(2)}_{01}}")
        args = [self.eval(a, env) for a in node.args]
        if op == "neg":
            return -args[0]
        if op == "T":
            return args[0].T if is_matrix(args[0]) else args[0]
        if op in ("pow", "epow"):
            base, n = args[0], node.param
            if is_matrix(base):
                if op == "pow":
                    raise ShapeError(f"{self.describe(node)}: a power of the {size_text(shape_of(base))} matrix "
                                     f"{self.describe(node.args[0])}; write the product out, or use \\odot")
                if n < 0:
                    self._nonzero(node.args[0], base)
                return base**n if isinstance(base, np.ndarray) else base.applyfunc(lambda x: x**n)
            if n < 0:
                self._nonzero(node.args[0], base)
            return base**n
        if op == "diag":
            v = args[0]
            s = shape_of(v)
            if s is None or 1 not in s:
                raise ShapeError(f"{self.describe(node)}: diag needs a vector, and {self.describe(node.args[0])} is {size_text(s)}")
            entries = list(v.ravel()) if isinstance(v, np.ndarray) else list(v)
            return np.diag(np.array(entries, dtype=float)) if isinstance(v, np.ndarray) else sp.diag(*entries)
        if op == "entry":
            v = args[0]
            s = shape_of(v)
            asked = self._index(node, node.param, env)
            if s is None:
                self._bad(node, f"{self.describe(node.args[0])} is a scalar and has no entries")
            idx = asked
            if len(idx) == 1 and 1 in s:
                idx = (idx[0], 0) if s[1] == 1 else (0, idx[0])
            if len(idx) != 2 or not (0 <= idx[0] < s[0] and 0 <= idx[1] < s[1]):
                self._bad(node, f"no entry {list(asked)} in {self.describe(node.args[0])}, which is {size_text(s)}")
            return v[idx[0], idx[1]]
        a, b = args
        if op in ("add", "sub"):
            self._same(node, a, b, "a sum of different sizes" if op == "add" else "a difference of different sizes")
            return self._elementwise(a, b, (lambda x, y: x + y) if op == "add" else (lambda x, y: x - y))
        if op in ("mul", "had"):
            self._same(node, a, b, "an elementwise product of different sizes")
            return self._elementwise(a, b, lambda x, y: x * y)
        if op == "dot":
            if is_matrix(a) and is_matrix(b):
                return self._matmul(node, a, b)
            return a * b
        if op == "matmul":
            if not (is_matrix(a) and is_matrix(b)):
                which = node.args[0] if not is_matrix(a) else node.args[1]
                raise ShapeError(f"{self.describe(node)}: @ multiplies matrices, and {self.describe(which)} is a scalar")
            return self._matmul(node, a, b)
        if op == "div":
            self._same(node, a, b, "an elementwise quotient of different sizes")
            self._nonzero(node.args[1], b)
            return self._elementwise(a, b, lambda x, y: x / y)
        raise ClaimError(f"unknown operation {op}", node.span)  # pragma: no cover - the readers make only the above


# ---------------------------------------------------------------------------
# printing, in the claim's own syntax
# ---------------------------------------------------------------------------

_PREC = {"add": 10, "sub": 10, "neg": 20, "mul": 30, "dot": 30, "matmul": 30, "had": 30, "div": 30,
         "pow": 40, "epow": 40, "T": 50, "entry": 50}


def _prec(node: Node) -> int:
    if isinstance(node, Num):
        if node.value < 0:
            return 20
        return 30 if node.value.q != 1 else 100
    if isinstance(node, Op):
        return _PREC.get(node.op, 100)
    return 100


def _paren(show: Callable[[Node], str], op: str, child: Node, level: int, right: bool = False) -> str:
    """A child of an `op` node, printed by `show`, in parentheses where its precedence needs them."""
    s = show(child)
    cp = _prec(child)
    mixed = cp == level == 30 and isinstance(child, Op) and child.op != op and {child.op, op} != {"mul", "had"}
    return f"({s})" if cp < level or mixed or (right and cp == level and level < 40) else s


def text_of(node: Node) -> str:
    """The tree in the text vocabulary (parses back to the same tree)."""
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Leaf):
        return _text_leaf(node)
    op, args = node.op, node.args
    p = partial(_paren, text_of, op)

    if op in ("add", "sub"):
        return f"{p(args[0], 10)} {'+' if op == 'add' else '-'} {p(args[1], 10, right=True)}"
    if op == "neg":
        return f"-{p(args[0], 30)}"
    if op in ("mul", "had", "dot", "matmul", "div"):
        sym = {"mul": "*", "had": "*", "dot": "*", "matmul": "@", "div": "/"}[op]
        return f"{p(args[0], 30)} {sym} {p(args[1], 30, right=True)}"
    if op in ("pow", "epow"):
        return f"{p(args[0], 41)}**{node.param}"
    if op == "T":
        return f"{p(args[0], 50)}.T"
    if op == "entry":
        return f"{p(args[0], 50)}[{','.join(_idx_text(i) for i in node.param)}]"
    if op in ("sigma", "sigma_prime"):
        name = node.param or "sigma"
        return f"{name}{'_prime' if op == 'sigma_prime' else ''}({text_of(args[0])})"
    if op == "diag":
        return f"diag({text_of(args[0])})"
    if op == "sum":
        var, lo, hi = node.param
        return f"sum({text_of(args[0])} for {var} in range({lo}, {hi + 1}))"
    return f"{op}({', '.join(text_of(a) for a in args)})"


def _idx_text(item) -> str:
    if isinstance(item, tuple):
        var, off = item
        return var if off == 0 else f"{var}{off:+d}"
    return str(item)


def _text_leaf(leaf: Leaf) -> str:
    if leaf.kind in ("C", "ones"):
        return leaf.kind
    if leaf.kind == "g":
        return "grad_a(C)"
    if leaf.kind == "y":
        base = leaf.alias if leaf.alias in ("T", "y") else "y"
    elif leaf.kind == "a" and leaf.layer == 0 and leaf.alias == "x":
        base = "x"
    else:
        base = f"{leaf.kind}{leaf.layer}"
    if leaf.index is None:
        return base
    return f"{base}[{','.join(_idx_text(i) for i in leaf.index)}]"


_LATEX_BASE = {"w": "w", "W": "W", "b": "b", "a": "a", "A": "A", "z": "z", "delta": r"\delta", "D": "D"}
# the table's own LaTeX, except that a claim's bare sigma is \sigma and a named sigmoid is spelled out
_ACT_LATEX = {name: act.latex for name, act in ACTIVATIONS.items()} | {None: r"\sigma", "sigmoid": r"\operatorname{sigmoid}"}


def latex_of(node: Node, style: str) -> str:
    """The tree in LaTeX, the layer as ^{(l)} (style 'paren') or ^{l} ('bare')."""
    if isinstance(node, Num):
        v = node.value
        if v.q != 1:
            body = rf"\frac{{{abs(v.p)}}}{{{v.q}}}"
            return "-" + body if v < 0 else body
        return str(v)
    if isinstance(node, Leaf):
        return _latex_leaf(node, style)
    op, args = node.op, node.args
    p = partial(_paren, lambda child: latex_of(child, style), op)

    if op in ("add", "sub"):
        return f"{p(args[0], 10)} {'+' if op == 'add' else '-'} {p(args[1], 10, right=True)}"
    if op == "neg":
        return f"-{p(args[0], 30)}"
    if op == "div":
        return rf"\frac{{{latex_of(args[0], style)}}}{{{latex_of(args[1], style)}}}"
    if op in ("mul", "had", "dot", "matmul"):
        left, right = p(args[0], 30), p(args[1], 30, right=True)
        if op in ("mul", "had"):
            return rf"{left} \odot {right}"
        joiner = r" \cdot " if right[:1].isdigit() or right[:1] == "-" else " "
        return f"{left}{joiner}{right}"
    if op in ("pow", "epow"):
        return f"{_latex_wrap(args[0], style)}^{{{node.param}}}"
    if op == "T":
        return f"{_latex_wrap(args[0], style)}^T"
    if op == "entry":
        return f"{_latex_wrap(args[0], style)}_{{{','.join(_idx_text(i) for i in node.param)}}}"
    if op in ("sigma", "sigma_prime"):
        name = _ACT_LATEX.get(node.param, rf"\operatorname{{{node.param}}}")
        return f"{name}{chr(39) if op == 'sigma_prime' else ''}({latex_of(args[0], style)})"
    if op == "diag":
        return rf"\operatorname{{diag}}({latex_of(args[0], style)})"
    if op == "sum":
        var, lo, hi = node.param
        return rf"\sum_{{{var}={lo}}}^{{{hi}}} {p(args[0], 30)}"
    if op == "partial":
        return rf"\partial {latex_of(args[0], style)}"
    return op  # pragma: no cover


def _latex_wrap(node: Node, style: str) -> str:
    """A base for ^: bare when it carries no superscript of its own, else in parentheses."""
    s = latex_of(node, style)
    if isinstance(node, Num) and node.value >= 0 and node.value.q == 1:
        return s
    if isinstance(node, Leaf) and (node.layer is None or (node.kind == "a" and node.alias == "x")) and node.kind not in ("g", "ones"):
        return s
    return f"({s})"


def _latex_leaf(leaf: Leaf, style: str) -> str:
    if leaf.kind == "C":
        return "C"
    if leaf.kind == "ones":
        return r"\mathbf{1}"
    if leaf.kind == "g":
        return r"\nabla_a C"
    idx = ""
    if leaf.index is not None:
        parts = [_idx_text(i) for i in leaf.index]
        joined = "".join(parts) if all(len(x) == 1 for x in parts) else ",".join(parts)
        idx = joined if len(joined) == 1 else f"{{{joined}}}"
    if leaf.kind == "y" or (leaf.kind == "a" and leaf.layer == 0 and leaf.alias == "x"):
        base = "x" if leaf.kind == "a" else (leaf.alias if leaf.alias in ("T", "y") else "y")
        return f"{base}_{idx}" if idx else base
    base = _LATEX_BASE[leaf.kind]
    if style == "bare":
        sup = str(leaf.layer) if leaf.layer < 10 else f"{{{leaf.layer}}}"
        return f"{base}^{sup}" + (f"_{idx}" if idx else "")
    return (f"{base}_{idx}" if idx else base) + f"^{{({leaf.layer})}}"


# ---------------------------------------------------------------------------
# the size of an exact check, estimated before expanding
# ---------------------------------------------------------------------------

def expanded_terms(expr, cap: int = MAX_TERMS) -> int:
    """An upper bound on the terms of expr brought over one denominator and expanded, saturating above cap.

    Each subexpression is estimated as (numerator terms, denominator terms): a sum of
    fractions multiplies out every other denominator, as `together` does, so a deep
    continued fraction is seen to explode before anything is expanded.
    """
    top = cap + 1
    memo: dict = {}

    def mul(a: int, b: int) -> int:
        return min(top, a * b)

    def power(b: int, n: int) -> int:
        """Terms of (t_1 + ... + t_b)**n: at most the monomials of degree n in b terms."""
        if b <= 1:
            return b
        if n * (b - 1).bit_length() <= 64 and b**n <= top:
            return b**n
        return min(top, math.comb(n + b - 1, b - 1)) if b < 4096 else top

    def est(e) -> tuple[int, int]:
        if e in memo:
            return memo[e]
        if e.is_Atom:
            r = (1, 1)
        elif e.is_Add:
            parts = [est(a) for a in e.args]
            den = 1
            for _, d in parts:
                den = mul(den, d)
            num = 0
            for i, (n, _) in enumerate(parts):
                others = 1
                for j, (_, d) in enumerate(parts):
                    if j != i:
                        others = mul(others, d)
                num = min(top, num + mul(n, others))
            r = (num, den)
        elif e.is_Mul:
            num = den = 1
            for a in e.args:
                n, d = est(a)
                num, den = mul(num, n), mul(den, d)
            r = (num, den)
        elif e.is_Pow and e.exp.is_Integer:
            n, d = est(e.base)
            k = int(e.exp)
            r = (power(n, k), power(d, k)) if k >= 0 else (power(d, -k), power(n, -k))
        else:
            r = (min(top, sum(est(a)[0] for a in e.args) or 1), 1)
        memo[e] = r
        return r

    n, d = est(sp.sympify(expr))
    return min(top, n + (d if d > 1 else 0))
