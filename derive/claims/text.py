"""Claims written as text: Python's expression syntax, read by a whitelisted walk of its ast.

`ast.parse` only parses; the walk below turns the handful of node types a claim may
use into the claim tree and refuses every other one with its column. Nothing is
evaluated as Python: no eval, exec or parse_expr.

Vocabulary (layer numbers are part of names, j indexes layer l, k the layer before):
w2[j,k] b2[j] a1[j] a0[k] x[k] z1[j] T[j] y[j] delta2[j] C; w2 W2 b2 a1 A1 z1 delta1 D1
T y x; sigma(), sigma_prime(), the spec's activation names (tanh(), tanh_prime()),
diag(), grad_a(C), ones (a column of ones, one per example); + - * / (elementwise, as in NumPy) @ .T ** and parentheses.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

import sympy as sp

from derive.claims.tree import (LAYERED, MAX_NUMBER_DIGITS, TEXT_HINTS, ClaimError, Leaf, Node, Num, Op, Shape,
                                check_exponent, check_layer, check_size, fold_power, number, partial_ratio, precheck)
from derive.tables.activations import ACTIVATIONS

_LAYERED_NAME = re.compile(rf"^({'|'.join(LAYERED)})(\d+)$")
_SCALAR_NAMES = ("w", "b", "a", "z", "delta")  # a name of one of these kinds followed by [...] is one scalar
FUNCTIONS = ("sigma", "sigma_prime", "diag", "grad_a") + tuple(ACTIVATIONS) + tuple(f"{a}_prime" for a in ACTIVATIONS)
VOCABULARY = ("w2[j,k] b2[j] a1[j] x[k] z1[j] T[j] y[j] delta2[j] C w2 W2 b2 a1 A1 z1 delta1 D1 T x ones "
              "sigma() sigma_prime() diag() grad_a(C)")


class TextReader:
    def __init__(self, source: str, shape: Shape):
        self.source = source
        self.shape = shape
        self.lead = len(source) - len(source.lstrip())
        # parsed as "(" + text + "\n)", so that a claim may run over several lines
        self.wrapped = "(" + source.strip() + "\n)"
        starts = [0]
        for i, ch in enumerate(self.wrapped):
            if ch == "\n":
                starts.append(i + 1)
        self._starts = starts

    # -- positions -----------------------------------------------------------------
    def _offset(self, lineno: int, col: int) -> int:
        lineno = min(max(lineno, 1), len(self._starts))
        at = self._starts[lineno - 1] + col - 1  # -1 for the "(" in front
        return min(max(at, 0), len(self.source.strip())) + self.lead

    def span(self, n: ast.AST) -> tuple[int, int]:
        return (self._offset(n.lineno, n.col_offset),
                self._offset(n.end_lineno or n.lineno, n.end_col_offset or n.col_offset))

    def snippet(self, n: ast.AST) -> str:
        s, e = self.span(n)
        return self.source[s:e]

    def fail(self, n: ast.AST, message: str):
        raise ClaimError(message, self.span(n))

    # -- the walk --------------------------------------------------------------------
    def read(self) -> Node:
        return check_size(self.walk(self.parse()))

    def parse(self) -> ast.AST:
        """Python's tree of the source, its characters, size and depth checked: both sides of a claim start here."""
        return self.python(self.wrapped, "eval", "a formula").body

    def python(self, text: str, mode: str, what: str) -> ast.AST:
        """ast.parse of the source (which only parses), after the character and bracket checks, its size checked."""
        precheck(self.source, TEXT_HINTS)
        try:
            tree = ast.parse(text, mode=mode)
        except SyntaxError as exc:
            at = self._offset(exc.lineno or 1, max((exc.offset or 1) - 1, 0))
            raise ClaimError(f"not {what}: {exc.msg}", (at, at + 1)) from None
        except (RecursionError, MemoryError, ValueError):
            raise ClaimError("cannot be read: nested too deeply or too large", (0, 0)) from None
        self._check_tree(tree)
        return tree

    def _check_tree(self, tree: ast.AST) -> None:
        """Depth and size of Python's tree, iteratively, before the recursive walk."""
        from derive.claims.tree import MAX_DEPTH, MAX_NODES

        stack, count = [(tree, 0)], 0
        while stack:
            n, d = stack.pop()
            count += 1
            if d > MAX_DEPTH + 2:
                raise ClaimError(f"the claim is nested more than {MAX_DEPTH} deep", self.span(n) if hasattr(n, "lineno") else (0, 0))
            if count > 4 * MAX_NODES:
                raise ClaimError(f"the claim has more than {MAX_NODES} parts", (0, 0))
            stack.extend((c, d + 1) for c in ast.iter_child_nodes(n))

    def walk(self, n: ast.AST) -> Node:
        span = self.span(n)
        if isinstance(n, ast.BinOp):
            if isinstance(n.op, ast.Pow):
                base = self.walk(n.left)
                exp = check_exponent(self.const_int(n.right), self.span(n.right))
                if isinstance(base, Num):
                    return Num(fold_power(base.value, exp, span), span=span)
                return Op("epow", (base,), exp, span=span)
            ops = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.MatMult: "matmul"}
            op = ops.get(type(n.op))
            if op is None:
                self.fail(n, f"'{self._op_text(n)}' is not a claims operator (use + - * / @ ** and .T)")
            return Op(op, (self.walk(n.left), self.walk(n.right)), span=span)
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.UAdd):
                return self.walk(n.operand)
            if isinstance(n.op, ast.USub):
                inner = self.walk(n.operand)
                if isinstance(inner, Num):
                    return Num(-inner.value, span=span)
                return Op("neg", (inner,), span=span)
            self.fail(n, "only - and + may stand before a term")
        if isinstance(n, ast.Constant):
            return Num(self._number(n), span=span)
        if isinstance(n, ast.Name):
            return self.name(n)
        if isinstance(n, ast.Subscript):
            return self.subscript(n)
        if isinstance(n, ast.Attribute):
            if n.attr != "T":
                self.fail(n, f"'.{n.attr}' is not in the vocabulary; '.T' transposes")
            return Op("T", (self.walk(n.value),), span=span)
        if isinstance(n, ast.Call):
            return self.call(n)
        what = type(n).__name__
        self.fail(n, f"'{self.snippet(n)}' ({what}) is not part of a claim; the vocabulary is {VOCABULARY}")

    def _op_text(self, n: ast.BinOp) -> str:
        between = self.source[self.span(n.left)[1]:self.span(n.right)[0]]
        return between.strip().strip("()") or type(n.op).__name__

    def _number(self, n: ast.Constant) -> sp.Rational:
        """A literal, read exactly as Python writes it: 16, 1_000, 0x10, 0o20, 0b10000, 0.5, 1.6e1."""
        v = n.value
        if isinstance(v, complex):
            self.fail(n, f"{self.snippet(n)} is not a real number: a claim's numbers are real (write it without the j)")
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            self.fail(n, f"{self.snippet(n)} is not a number")
        return sp.Integer(self._int(n)) if isinstance(v, int) else self._float(n)

    def _int(self, n: ast.Constant) -> int:
        """An integer literal in any base, by its value (its decimal text may exceed Python's int-to-str limit)."""
        if abs(n.value) >= 10**MAX_NUMBER_DIGITS:
            self.fail(n, f"a number of more than {MAX_NUMBER_DIGITS} digits; at most {MAX_NUMBER_DIGITS}")
        return int(n.value)

    def _float(self, n: ast.Constant) -> sp.Rational:
        """A decimal literal, exactly (0.1 is 1/10, not the nearest binary float); its exponent bounded."""
        text = self.snippet(n).replace("_", "")
        m = re.fullmatch(r"(\d*\.?\d*)(?:[eE]([+-]?\d+))?", text)
        if not m:
            self.fail(n, f"{text}: write numbers as digits with an optional decimal point and exponent, such as 0.5 or 1e-3")
        value = number(m.group(1), self.span(n))
        exp = int(m.group(2) or 0)
        if abs(exp) > MAX_NUMBER_DIGITS:
            self.fail(n, f"{text}: exponent {exp} is out of range; a number's exponent runs from -{MAX_NUMBER_DIGITS} "
                         f"to {MAX_NUMBER_DIGITS}")
        return value * sp.Integer(10) ** exp

    def const_int(self, n: ast.AST) -> int:
        """An exponent: an integer built from literals by + - * and **, each step bounded."""
        span = self.span(n)
        if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
            return self._int(n)
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
            v = self.const_int(n.operand)
            return -v if isinstance(n.op, ast.USub) else v
        if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Add, ast.Sub, ast.Mult, ast.Pow)):
            a, b = self.const_int(n.left), self.const_int(n.right)
            if isinstance(n.op, ast.Pow):
                if b < 0:
                    self.fail(n, "an exponent must be an integer")
                v = fold_power(sp.Integer(a), b, span)
                return check_exponent(int(v), span)
            v = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(n.op)]
            return check_exponent(v, span)
        if isinstance(n, ast.Constant):
            self.fail(n, "an exponent must be an integer")
        self.fail(n, "an exponent must be a whole number such as 2")

    # -- names ---------------------------------------------------------------------
    def name(self, n: ast.Name) -> Node:
        span = self.span(n)
        ident = n.id
        if ident in ("C", "ones"):
            return Leaf(ident, None, span=span)
        if ident in ("T", "y"):
            return Leaf("y", None, alias=ident, span=span)
        if ident == "x":
            return Leaf("a", 0, alias="x", span=span)
        m = _LAYERED_NAME.match(ident)
        if m:
            kind, layer = m.group(1), int(m.group(2))
            return Leaf(kind, check_layer(kind, layer, self.shape, span), span=span)
        if ident in FUNCTIONS:
            self.fail(n, f"{ident} is a function: write {ident}(...)")
        self.fail(n, f"unknown name '{ident}'; the vocabulary is {VOCABULARY}")

    def subscript(self, n: ast.Subscript) -> Node:
        span = self.span(n)
        index = self.index(n.slice)
        if isinstance(n.value, ast.Name):
            ident = n.value.id
            if ident in ("T", "y", "x") or (_LAYERED_NAME.match(ident) and _LAYERED_NAME.match(ident).group(1) in _SCALAR_NAMES):
                leaf = self.name(n.value)
                want = 2 if leaf.kind == "w" else 1
                if len(index) != want:
                    self.fail(n, f"{ident} takes {want} ind{'ices' if want == 2 else 'ex'}: "
                                 + (f"{ident}[j,k]" if want == 2 else f"{ident}[j]"))
                return Leaf(leaf.kind, leaf.layer, index, alias=leaf.alias, span=span)
        return Op("entry", (self.walk(n.value),), index, span=span)

    def index(self, s: ast.AST) -> tuple[int, ...]:
        items = s.elts if isinstance(s, ast.Tuple) else [s]
        out = []
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, int) and not isinstance(item.value, bool):
                out.append(self._int(item))
            elif isinstance(item, ast.UnaryOp) and isinstance(item.op, ast.USub):
                self.fail(item, "indices count from 0; negative ones are not allowed")
            else:
                self.fail(item, f"an index is a whole number, not '{self.snippet(item)}'")
        if not out or len(out) > 2:
            self.fail(s, "one or two indices, such as [0] or [0,1]")
        return tuple(out)

    def call(self, n: ast.Call) -> Node:
        span = self.span(n)
        if not isinstance(n.func, ast.Name) or n.func.id not in FUNCTIONS:
            what = self.snippet(n.func)
            self.fail(n.func, f"'{what}' is not a function of the vocabulary (sigma, sigma_prime, "
                              f"{', '.join(ACTIVATIONS)}, their _prime, diag, grad_a)")
        if n.keywords or len(n.args) != 1 or isinstance(n.args[0], ast.Starred):
            self.fail(n, f"{n.func.id}() takes exactly one argument")
        fn, arg = n.func.id, n.args[0]
        if fn == "grad_a":
            if not (isinstance(arg, ast.Name) and arg.id == "C"):
                self.fail(arg, "grad_a takes C: grad_a(C) is the gradient of the cost with respect to the outputs")
            return Leaf("g", None, span=span)
        inner = self.walk(arg)
        if fn == "diag":
            return Op("diag", (inner,), span=span)
        prime = fn.endswith("_prime")
        name = fn[:-6] if prime else fn
        return Op("sigma_prime" if prime else "sigma", (inner,), None if name == "sigma" else name, span=span)


def read_text(source: str, shape: Shape) -> Node:
    """A right-hand side in text: the claim tree, or ClaimError with the span at fault."""
    return TextReader(source, shape).read()


# ---------------------------------------------------------------------------
# left-hand sides
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Lhs:
    """The derived quantity a claim is about.

    kind "w": dC/dw{l}[j,k] (index) or the n_l x n_{l-1} matrix dC/dw{l}; "W": dC/dW{l} in
    W's own layout; "b": dC/db{l}[j] or the vector in b's layout; "delta": delta{l}[j] or
    the vector (one column per example); "z", "a": dC/dz{l}, dC/da{l} (a source's dZ, dA),
    of the whole cost (scale "batch") or of each example's own (scale "example").
    factor: what the derivative is multiplied by (-1 for RHW's delta, -eta for a weight's
    change); example_cost: the cost is one example's own (Bishop's E_n), not C.
    """

    kind: str
    layer: int
    index: tuple[int, ...] | None = None
    transposed: bool = False
    scale: str = "batch"
    factor: object = 1
    example_cost: bool = False
    rows: bool = False  # the notation runs a batch's examples along rows (CS231n): z, a, delta transposed
    by: tuple | None = None  # a chain rule's factor d(top)/d(by): (top's kind, by's kind, layer, index)

    @property
    def plain(self) -> bool:
        """A left-hand side the project's own vocabulary writes (the fast exact path knows only these)."""
        return (self.kind in ("w", "W", "b", "delta") and self.factor == 1 and not self.example_cost
                and not self.rows)

    def text(self) -> str:
        if self.kind == "local":
            top, kind, layer, index = self.by
            body = (f"d{top}{self.layer}[{','.join(map(str, self.index))}]/"
                    f"d{kind}{layer}[{','.join(map(str, index))}]")
        elif self.kind == "value:C":
            body = "C"
        elif self.kind.startswith("value:"):
            body = f"{self.kind[6:]}{self.layer}"
        elif self.kind == "delta":
            body = f"delta{self.layer}"
        else:
            body = f"dC/d{self.kind}{self.layer}"
        if self.index is not None:
            body += f"[{','.join(map(str, self.index))}]"
        body = f"({body}).T" if self.transposed else body
        if self.factor == -1:
            return f"-{body}"
        if self.factor != 1:
            return f"{self.factor}*{body}"
        return body


_LHS_FORMS = "dC/dw2[j,k], dC/db2[j], dC/dW2, dC/dw2, dC/db2, delta2, delta2[j] or (dC/dW2).T"


def read_lhs(source: str, shape: Shape) -> Lhs:
    """dC/dw2[j,k], dC/db2[j], dC/dW2, dC/dw2, dC/db2, delta2, delta2[j], or (dC/dW2).T.

    Read by the right-hand side's reader (its characters, Python's tree, its names and
    its indices), so that a literal means the same on both sides, or is the same error.
    """
    if len(source) > 200:
        raise ClaimError("a left-hand side is a name such as dC/dw2[0,1] or delta1", (0, 0))
    reader = TextReader(source, shape)
    whole = (0, len(source))
    try:
        tree = reader.parse()
    except ClaimError as exc:  # the right-hand side's words, and what was read
        raise ClaimError(f"'{source.strip()}' is not a left-hand side: {exc.message}", exc.span) from None
    transposed = isinstance(tree, ast.Attribute) and tree.attr == "T"
    node = tree.value if transposed else tree
    partial = (isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and isinstance(node.left, ast.Name)
               and node.left.id == "dC")
    named = node.right if partial else node  # dw2[j,k] after dC/, or delta2[j]
    base = named.value if isinstance(named, ast.Subscript) else named
    m = None
    if isinstance(base, ast.Name) and base.id.startswith("d" if partial else "delta"):
        m = _LAYERED_NAME.match(base.id[1:] if partial else base.id)
    if m is None or m.group(1) not in (("w", "W", "b") if partial else ("delta",)):
        raise ClaimError(f"'{source.strip()}' is not a left-hand side; use {_LHS_FORMS}", whole)
    kind, layer = m.group(1), int(m.group(2))
    check_layer("w" if kind != "delta" else "delta", layer, shape, whole)
    index = None
    if isinstance(named, ast.Subscript):
        index = reader.index(named.slice)  # the right-hand side's index reader
        want = 2 if kind == "w" else 1
        if kind == "W":
            raise ClaimError("dC/dW2 is the whole matrix; one partial is dC/dw2[j,k]", whole)
        if len(index) != want:
            raise ClaimError(f"dC/d{kind}{layer} takes {want} ind{'ices' if want == 2 else 'ex'}"
                             if kind != "delta" else f"delta{layer} takes one index", whole)
    if transposed and index is not None:
        raise ClaimError("a single partial has no transpose", whole)
    return Lhs(kind, layer, index, transposed)


def lhs_from_tree(node: Node, shape: Shape) -> Lhs:
    """A left-hand side read from LaTeX: \\frac{\\partial C}{\\partial w^{(2)}_{01}}, \\delta^{(2)}, dW^{[l]}, ..."""
    reading = shape.notation
    rows = reading.examples == "rows"
    transposed, factor = False, sp.Integer(1)
    while isinstance(node, Op) and node.op in ("T", "neg"):
        if node.op == "T":
            transposed = not transposed
        else:
            factor = -factor
        node = node.args[0]
    if isinstance(node, Leaf) and node.kind == "delta":
        return Lhs("delta", node.layer, _plain(node), transposed, "example", factor, rows=rows)
    if isinstance(node, Leaf) and node.kind in ("z", "a") and isinstance(node.layer, int) and node.layer >= 1:
        # a forward value: Bishop's a_j = sum_i w_ji z_i, Goodfellow's a^{(k)} = b^{(k)} + W^{(k)} h^{(k-1)}
        return Lhs("value:" + node.kind, node.layer, _plain(node), transposed, "example", factor, rows=rows)
    if isinstance(node, Leaf) and node.kind == "C" and node.index is None:  # E_n = 1/2 sum_k (y_k - t_k)^2
        return Lhs("value:C", 0, None, False, "example", factor, node.example is not None)
    ratio = partial_ratio(node)
    if ratio is not None and all(isinstance(x, Leaf) and x.index is not None for x in ratio) \
            and ratio[0].kind != "C":
        top, by = ratio  # a factor of the chain rule: da_j/dw_ji = z_i
        return Lhs("local", top.layer, tuple(top.index), False, "example", factor,
                   by=(top.kind, by.kind, by.layer, tuple(by.index)))
    if isinstance(node, Op) and node.op == "grad" and isinstance(node.args[0], Leaf):
        x = node.args[0]
        return _gradient_lhs(x, transposed, node.param, factor, False, rows, node)
    if isinstance(node, Op) and node.op == "change" and isinstance(node.args[0], Leaf):
        if not reading.rate:
            raise ClaimError("this notation has no learning rate; a weight's change needs one (rate = [\"\\\\eta\"])",
                             node.span)
        x = node.args[0]
        return _gradient_lhs(x, transposed, "batch", -factor * sp.Symbol("eta", positive=True), node.param is not None,
                             rows, node)
    if ratio is not None and isinstance(ratio[0], Leaf) and ratio[0].kind == "C":
        x = ratio[1]
        per_example = ratio[0].example is not None
        if isinstance(x, Leaf) and x.kind in ("w", "W", "b", "z", "a"):
            if x.kind == "W" and x.index is not None:
                raise ClaimError("one partial is \\partial w^{(l)}_{jk}", x.span)
            return _gradient_lhs(x, transposed, "example" if per_example else "batch", factor, per_example, rows, node)
    raise ClaimError("the left-hand side must be \\frac{\\partial C}{\\partial w^{(l)}_{jk}} (or b, z, a, or a whole "
                     "w or W) or \\delta^{(l)}, \\delta^{(l)}_j, or the notation's gradient name (dW)", node.span)


def _gradient_lhs(x: Leaf, transposed: bool, scale: str, factor, per_example: bool, rows: bool, node) -> Lhs:
    if x.kind not in ("w", "W", "b", "z", "a") or x.layer is None:
        raise ClaimError("a gradient on the left is of a weight, a bias, a pre-activation or an activation", node.span)
    if x.kind == "a" and x.layer == 0:
        raise ClaimError("the inputs are not derived here: the left-hand side is of a layer 1 to L", node.span)
    lhs = Lhs(x.kind, x.layer, _plain(x), transposed, scale, factor, per_example, rows and x.kind in ("z", "a"))
    if lhs.index is not None and transposed:
        raise ClaimError("a single partial has no transpose", node.span)
    return lhs


def _plain(leaf: Leaf):
    if leaf.index is None:
        return None
    if any(isinstance(i, tuple) for i in leaf.index):
        raise ClaimError("the left-hand side names one quantity: its indices are numbers", leaf.span)
    return tuple(leaf.index)


__all__ = ["Lhs", "TextReader", "lhs_from_tree", "read_lhs", "read_text"]
