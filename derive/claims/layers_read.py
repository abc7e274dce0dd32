"""Claims about a layer-list spec, read: text (a whitelisted walk of Python's ast) and LaTeX (a Lark grammar).

Text names a layer's quantities with its number: x2, y2, mu2, var2, s2, xhat2, gamma2, beta2,
W1, b1, z1, a1, delta1, w1[j,k]; B (the batch's size), eps2 (or eps), n2 (a layer's width),
x and T (the network's inputs and targets); dC/dQ2 for a gradient (dC/dy2 is the layer's
upstream gradient); sum(M) over the batch and sum_features(M) over the features, np.sum and
np.mean with axis=0 or 1 (every sum keeps the summed axis, as keepdims=True), sqrt(var2 +
eps2), mean(M) = sum(M)/B, the activations (sigma(z1), relu_prime(z1)); + - * / ** as NumPy
(broadcasting), @ and .T. A norm layer's names may leave out the number (gamma, xhat, mu, var,
s, beta): they are then of the claim's layer, or of the only layer that has them.

LaTeX writes the same quantities as textbooks print them: \\mu^{(2)}, \\sigma^{2(2)} or
(\\sigma^{(2)})^2 or \\sigma^2_B, \\hat{x}^{(2)}, \\gamma^{(2)}, \\beta^{(2)}, \\varepsilon or \\epsilon,
s^{(2)}, x^{(2)}, y^{(2)}, W^{(1)}, z, a, \\delta; \\frac{\\partial C}{\\partial \\gamma^{(2)}} (C, L or
\\ell the cost); \\sum over the batch or the features (by its bound: B or m, n; in a batch norm
claim, the batch; else by its letter: b, e, m, p the batch, i, j, k the features); \\sqrt{...}
and half powers, (\\sigma^2 + \\epsilon)^{-3/2}; B or m the batch's size, n a layer's width. So
Ioffe and Szegedy's Algorithm 1 reads as printed. A name written without its layer (x_b,
\\hat{x}, \\gamma, y) is of the claim's own layer (the one its left-hand side names, or the only
one with those names); T are the targets. A subscript of letters (x_b, \\hat{x}_{b'}) names the
whole array, entry by entry, and one of numbers names one entry. Products written side by
side, \\cdot, \\odot and \\circ are entry by entry (broadcast), as the per-feature formulas mean
them; a product with a transposed factor or a weight matrix W is the matrix product.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from derive.claims import layers_spatial as sv
from derive.claims.layers import ARRAYS, CONSTANTS, PARAMS
from derive.claims.latex_parts import _span
from derive.claims.text import TextReader
from derive.claims.tree import (LATEX_HINTS, MAX_DEPTH, MAX_NODES, ClaimError, Leaf, Node, Num, Op, Shape, check_size,
                                number, precheck)
from derive.tables.activations import ACTIVATIONS

NAMES = ARRAYS + PARAMS  # with a layer number
_NAME = re.compile(rf"^({'|'.join(sorted(NAMES + ('w', 'eps', 'n', 'dk'), key=len, reverse=True))})(\d+)$")
_STEPPED = re.compile(rf"^({'|'.join(sv.STEP_NAMES)})(\d+)t(\d+)$")  # h1t2: h of layer 1 at step 2
_GRAD = re.compile(r"\bd[CL]/d(?=[A-Za-z]+\d*(?:t\d+)?\b)")  # dC/dgamma2, or the loss's dL/dgamma2
FUNCTIONS = ("sum", "sum_features", "mean", "sqrt", "sigma", "sigma_prime", "rowsum", "sum_steps") \
    + sv.OPERATORS + tuple(ACTIVATIONS) + tuple(f"{a}_prime" for a in ACTIVATIONS)
TWO = ("corr", "full_conv")  # the operators of two arrays
VOCABULARY = ("x2 y2 mu2 var2 s2 xhat2 gamma2 beta2 W1 b1 z1 a1 delta1 w1[j,k] B eps2 n2 x T dC/dgamma2 dC/dy2, "
              "attention's q1 k1 v1 s1 a1 o1 Wq1 dk1, a recurrent layer's h1t2 delta1t2 Whh1; "
              "sum() sum_features() mean() sqrt() sigma() relu_prime() rowsum() sum_steps() corr() ...")
SHAPE = Shape(1, ("identity",))  # the readers' own checks need one; the layers are checked by the context


@dataclass(frozen=True)
class LayeredLhs:
    """What a claim is about: dC/dQ{l} (gradient) or the value of Q{l}, whole or one entry."""

    kind: str
    layer: int | None
    index: tuple | None = None
    gradient: bool = True
    transposed: bool = False

    def text(self) -> str:
        body = self.kind if self.layer is None else sv.step_text(self.kind, self.layer)  # h1t2: a step
        body = f"dC/d{body}" if self.gradient else body
        if self.index is not None:
            body += f"[{','.join(map(str, self.index))}]"
        return f"({body}).T" if self.transposed else body


def _hide_gradients(source: str) -> str:
    """dC/dgamma2 -> dC_dgamma2, one identifier of the same length (columns stay where they were)."""
    return _GRAD.sub("dC_d", source)


class LayeredTextReader(TextReader):
    """The text reader with a layer list's names."""

    def __init__(self, source: str):
        super().__init__(_hide_gradients(source), SHAPE)
        self.original = source

    def leaf(self, ident: str, span, n) -> Leaf:
        if ident.startswith("dC_d"):
            inner = self.leaf(ident[4:], span, n)
            if inner.index is not None or inner.kind in CONSTANTS + ("X", "T"):
                self.fail(n, f"dC/d{ident[4:]}: a gradient is of a layer's named quantity (dC/dgamma2, dC/dy2)")
            return Op("grad", (inner,), "batch", span=span)
        if ident in ("B", "m"):  # the batch's size (m in Ioffe and Szegedy)
            return Leaf("B", None, span=span)
        if ident == "eps":
            return Leaf("eps", None, span=span)
        if ident in BARE:  # a norm layer's name without its number: the claim's layer, or the only one that has it
            return Leaf(ident, None, span=span)
        if ident == "x":
            return Leaf("X", None, alias="x", span=span)
        if ident in ("T", "y"):
            return Leaf("T", None, alias=ident, span=span)
        m = _STEPPED.match(ident)
        if m:
            return Leaf(sv.with_step(m.group(1), int(m.group(3))), int(m.group(2)), span=span)
        m = _NAME.match(ident)
        if m:
            kind = "W" if m.group(1) == "w" else m.group(1)
            return Leaf(kind, int(m.group(2)), alias=m.group(1), span=span)
        m = re.match(r"^([QKVSPO])(\d+)$", ident)
        if m:  # attention's arrays as Vaswani writes them
            return Leaf(sv.UPPER[m.group(1)], int(m.group(2)), alias=m.group(1), span=span)
        if ident in FUNCTIONS:
            self.fail(n, f"{ident} is a function: write {ident}(...)")
        self.fail(n, f"unknown name '{ident}'; the vocabulary of a layer list is {VOCABULARY}")

    def name(self, n: ast.Name) -> Node:
        return self.leaf(n.id, self.span(n), n)

    def walk(self, n: ast.AST) -> Node:
        """Python's tree as a claim's, with half powers: (var2 + eps2)**(-1/2) is a power of the square root."""
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            half = _half(n.right)
            if half is not None:
                return Op("epow", (Op("sqrt", (self.walk(n.left),), span=self.span(n)),), half, span=self.span(n))
        return super().walk(n)

    def subscript(self, n: ast.Subscript) -> Node:
        span = self.span(n)
        step = _step_index(n.slice)
        if step is not None:  # h1[t-1], dC/dh1[t]: a recurrent layer's name at the step of a sum_steps
            if not isinstance(n.value, ast.Name):
                self.fail(n, "a step [t] goes on a name: h1[t-1], delta1[t], dC/dy1[t]")
            base = self.leaf(n.value.id, self.span(n.value), n.value)
            leaf = base.args[0] if isinstance(base, Op) else base
            if not isinstance(leaf, Leaf) or leaf.layer is None or leaf.index is not None \
                    or leaf.kind not in sv.STEP_NAMES:
                self.fail(n, f"[{self.snippet(n.slice)}] is a step: it goes on {', '.join(sv.STEP_NAMES)} of a "
                             "recurrent layer, h1[t-1]")
            leaf = Leaf(sv.with_step(leaf.kind, step), leaf.layer, span=span)
            return Op("grad", (leaf,), "batch", span=span) if isinstance(base, Op) else leaf
        index = self.index(n.slice)
        if isinstance(n.value, ast.Name):
            base = self.leaf(n.value.id, self.span(n.value), n.value)
            if isinstance(base, Op):  # dC/dgamma2[1]: one entry of the gradient
                return Op("entry", (base,), index, span=span)
            if base.kind == "W" and base.alias == "w":
                if len(index) != 2:
                    self.fail(n, f"{n.value.id} takes two indices: [j,k], to unit j from unit k")
                return Leaf("w", base.layer, index, span=span)
            if base.kind not in CONSTANTS:
                return Leaf(base.kind, base.layer, index, alias=base.alias, span=span)
        return Op("entry", (self.walk(n.value),), index, span=span)

    def call(self, n: ast.Call) -> Node:
        span = self.span(n)
        fn = _function_name(n.func)
        if fn not in FUNCTIONS:
            self.fail(n.func, f"'{self.snippet(n.func)}' is not a function of the vocabulary ({', '.join(FUNCTIONS[:6])}, "
                              "np.sum, np.mean, np.sqrt, the activations and their _prime)")
        want = 2 if fn in TWO else 1
        if len(n.args) != want or any(isinstance(a, ast.Starred) for a in n.args):
            self.fail(n, f"{fn}() takes {'two arrays' if want == 2 else 'one array'}")
        if fn in sv.OPERATORS:
            if n.keywords:
                self.fail(n, f"{fn}() takes no keywords")
            return Op(fn, tuple(self.walk(a) for a in n.args), span=span)
        axis = self.keywords(n, fn)
        inner = self.walk(n.args[0])
        if fn in ("sum", "mean") and axis is not _BATCH:  # NumPy's axis, as the arrays are laid out (kept)
            total = Op("axis_sum", (inner,), axis, span=span)
            return total if fn == "sum" else Op("axis_mean", (inner,), axis, span=span)
        if fn == "sum":
            return Op("batch_sum", (inner,), span=span)
        if fn == "sum_features":
            return Op("feature_sum", (inner,), span=span)
        if fn == "rowsum":  # each row's sum, kept: softmax's rowsum(dC/dP * P)
            return Op("rowsum", (inner,), span=span)
        if fn == "sum_steps":
            return Op("step_sum", (inner,), "t", span=span)
        if fn == "mean":
            return Op("div", (Op("batch_sum", (inner,), span=span), Leaf("B", None, span=span)), span=span)
        if fn == "sqrt":
            return Op("sqrt", (inner,), span=span)
        prime = fn.endswith("_prime")
        name = fn[:-6] if prime else fn
        return Op("sigma_prime" if prime else "sigma", (inner,), None if name == "sigma" else name, span=span)

    def keywords(self, n: ast.Call, fn: str):
        """axis=0 or 1 (and keepdims=True) of np.sum and np.mean; the batch when no axis is given to sum or mean."""
        axis = _BATCH if not n.func.__class__ is ast.Attribute else None  # np.sum(x) sums every entry
        for k in n.keywords:
            v = k.value
            if k.arg == "axis" and fn in ("sum", "mean") and isinstance(v, ast.Constant) and v.value in (0, 1) \
                    and not isinstance(v.value, bool):
                axis = v.value
            elif k.arg == "keepdims" and isinstance(v, ast.Constant) and v.value is True:
                continue
            else:
                self.fail(k.value, f"{fn}() takes axis=0 or axis=1 (and keepdims=True): the summed axis is always kept")
        return axis


def _step_index(s: ast.AST):
    """t, t-1, t+1 (a sum_steps' step) as ("t", offset); None for anything else."""
    if isinstance(s, ast.Name) and s.id == "t":
        return ("t", 0)
    if isinstance(s, ast.BinOp) and isinstance(s.op, (ast.Add, ast.Sub)) and isinstance(s.left, ast.Name) \
            and s.left.id == "t" and isinstance(s.right, ast.Constant) and type(s.right.value) is int \
            and s.right.value < 100:
        return ("t", s.right.value if isinstance(s.op, ast.Add) else -s.right.value)
    return None


def _half(n: ast.AST) -> int | None:
    """p for an exponent p/2 with p odd: -1/2, (-3/2), -0.5, 1.5; None for anything else."""
    sign = 1
    while isinstance(n, ast.UnaryOp) and isinstance(n.op, (ast.USub, ast.UAdd)):
        sign, n = (-sign if isinstance(n.op, ast.USub) else sign), n.operand
    if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div):
        top, bottom = n.left, n.right
        neg = isinstance(top, ast.UnaryOp) and isinstance(top.op, ast.USub)
        top = top.operand if neg else top
        if isinstance(top, ast.Constant) and isinstance(bottom, ast.Constant) and bottom.value == 2 \
                and type(top.value) is int and type(bottom.value) is int and top.value % 2 == 1 and top.value < 64:
            return sign * (-1 if neg else 1) * top.value
    if isinstance(n, ast.Constant) and type(n.value) is float and (2 * n.value) % 2 == 1 and abs(n.value) < 32:
        return sign * int(2 * n.value)
    return None


_BATCH = object()  # sum() without an axis: over the batch
BARE = ("mu", "var", "s", "xhat", "gamma", "beta")


def _function_name(func: ast.AST) -> str | None:
    """sum, or np.sum -> sum (np.mean, np.sqrt likewise)."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "np" \
            and func.attr in ("sum", "mean", "sqrt"):
        return func.attr
    return None


def read_layered_text(source: str) -> Node:
    return LayeredTextReader(source).read()


def read_layered_lhs(source: str) -> LayeredLhs:
    """dC/dgamma2, dC/dx2[0,1], dC/dW1, delta1, (dC/dW1).T, or a value: xhat2, mu2[0]."""
    if len(source) > 200:
        raise ClaimError("a left-hand side is a name such as dC/dgamma2 or xhat2", (0, 0))
    try:
        node = LayeredTextReader(source).read()
    except ClaimError as exc:
        raise ClaimError(f"'{source.strip()}' is not a left-hand side: {exc.message}", exc.span) from None
    return lhs_of(node, (0, len(source)))


def lhs_of(node: Node, span) -> LayeredLhs:
    """The left-hand side a tree names (from text or LaTeX)."""
    transposed = False
    if isinstance(node, Op) and node.op == "T":
        transposed, node = True, node.args[0]
    index = None
    if isinstance(node, Op) and node.op == "entry" and isinstance(node.args[0], Op) and node.args[0].op == "grad":
        index, node = tuple(node.param), node.args[0]
    if isinstance(node, Op) and node.op == "grad" and isinstance(node.args[0], Leaf):
        leaf = node.args[0]
        if leaf.index is not None:
            index = tuple(leaf.index)
        return LayeredLhs(leaf.kind, leaf.layer, index, True, transposed)
    if isinstance(node, Leaf) and node.kind not in CONSTANTS + ("X", "T", "C"):
        if node.kind == "w":
            raise ClaimError("a weight is a parameter: a claim is about dC/dw1[j,k], not about w1 itself", span)
        if node.kind in PARAMS:
            raise ClaimError(f"{node.kind}{node.layer} is a parameter: a claim is about its gradient, "
                             f"dC/d{node.kind}{node.layer}", span)
        return LayeredLhs(node.kind, node.layer, None if node.index is None else tuple(node.index),
                          False, transposed)
    raise ClaimError("the left-hand side is a gradient, dC/dgamma2, dC/dx2, dC/dW1 (one entry: dC/dgamma2[0]), "
                     "delta1, or a layer's value, xhat2, mu2", span)


# ---------------------------------------------------------------------------
# LaTeX
# ---------------------------------------------------------------------------

@cache
def _parser() -> Lark:
    grammar = resources.files("derive.claims").joinpath("layers.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", propagate_positions=True)


# \sigma^{2(2)}, \sigma^{2\,(2)}, (\sigma^{(2)})^2, \sigma^2: the variance, rewritten as one name (columns kept)
_VARIANCE = [re.compile(r"\(\s*\\sigma\s*\^\s*\{\s*\(\s*(\d+)\s*\)\s*\}\s*\)\s*\^\s*\{?\s*2\s*\}?"),
             re.compile(r"\\sigma\s*\^\s*\{\s*2\s*(?:\\,)?\s*\(\s*(\d+)\s*\)\s*\}"),
             re.compile(r"\\sigma\s*_\s*\{?\s*\(\s*(\d+)\s*\)\s*\}?\s*\^\s*\{?\s*2\s*\}?"),
             re.compile(r"\\sigma\s*_\s*\{?\s*[A-Za-z]\s*\}?\s*\^\s*\{?\s*2\s*\}?"),
             re.compile(r"\\sigma\s*\^\s*\{?\s*2\s*\}?(?![\s(]*\()")]
_TYPE = re.compile(r"\\(?:mathbf|boldsymbol|bm|mathrm|operatorname)\s*\{\s*([A-Za-z])\s*\}")
_FUNCTIONS = {**{act.latex: name for name, act in ACTIVATIONS.items()},
              **{f"\\operatorname{{{n}}}": name for name, act in ACTIVATIONS.items() for n in (name, *act.claim_names)},
              **{f"\\mathrm{{{n}}}": name for name, act in ACTIVATIONS.items() for n in (name, *act.claim_names)}}
EXAMPLE_LETTERS = "bemp"
FEATURE_LETTERS = "ijk"


def _normalise(source: str) -> str:
    """The variance's spellings as \\VAR^{(l)} (or \\VAR), padded to the same length; bold and upright dropped."""
    def var(m: re.Match) -> str:
        layer = m.group(1) if m.groups() and m.group(1) else None
        text = r"\VAR" + (f"^{{({layer})}}" if layer else "")
        return text + " " * max(0, len(m.group(0)) - len(text))
    for pattern in _VARIANCE:
        source = pattern.sub(var, source)
    return _TYPE.sub(lambda m: m.group(1) + " " * (len(m.group(0)) - len(m.group(1))), source)


_GREEK = {r"\ell": "C", r"\mu": "mu", r"\gamma": "gamma", r"\beta": "beta", r"\VAR": "var", r"\delta": "delta",
          r"\varepsilon": "eps", r"\epsilon": "eps"}
_LETTERS = {"x": "x", "y": "y", "z": "z", "a": "a", "W": "W", "w": "W", "b": "b", "s": "s", "B": "B", "n": "n",
            "T": "T", "C": "C", "L": "C", "m": "B"}  # Ioffe and Szegedy's loss and batch size, as they print them


class LayeredLatexReader:
    """LaTeX claims about a layer list, into the claim tree."""

    def __init__(self, source: str):
        self.original = source
        self.source = _normalise(source)

    def fail(self, t, message: str):
        raise ClaimError(message, _span(t) or (0, 0))

    def read(self) -> tuple[Node | None, Node]:
        precheck(self.original, LATEX_HINTS)
        try:
            tree = _parser().parse(self.source)
        except UnexpectedCharacters as exc:
            pos = exc.pos_in_stream
            m = re.match(r"\\([A-Za-z]+|.)", self.original[pos:])
            word = m.group(0) if m else self.original[pos:pos + 1]
            raise ClaimError(f"unknown or misplaced '{word}'", (pos, pos + len(word))) from None
        except (UnexpectedToken, UnexpectedEOF) as exc:
            tok = getattr(exc, "token", None)
            if tok is None or tok.type == "$END":
                n = len(self.source)
                raise ClaimError("the formula ends too early (a missing operand, '}' or ')'?)", (n, n)) from None
            raise ClaimError(f"unexpected '{tok.value}'", (tok.start_pos, tok.end_pos)) from None
        except LarkError as exc:  # pragma: no cover - any other parser complaint, still one line
            raise ClaimError(f"cannot be read: {str(exc).splitlines()[0]}", (0, 0)) from None
        stack, count = [(tree, 0)], 0
        while stack:
            t, d = stack.pop()
            count += 1
            if d > MAX_DEPTH or count > 4 * MAX_NODES:
                raise ClaimError("the claim is too large or nested too deeply", (0, 0))
            if isinstance(t, Tree):
                stack.extend((c, d + 1) for c in t.children)
        sides = [c for c in tree.children if not (isinstance(c, Token) and c.type == "EQUALS")]
        if len(sides) > 2:  # A = B = C: each side after the first is checked against the first (sides)
            raise ClaimError("a chain of equalities", _span(sides[2]), sides=[_span(x) for x in sides])
        nodes = [check_size(self.conv(s)) for s in sides]
        return (nodes[0], nodes[1]) if len(nodes) == 2 else (None, nodes[0])

    # -- the tree -----------------------------------------------------------------------
    def conv(self, t) -> Node:
        span = _span(t)
        data, kids = t.data, list(t.children)
        if data == "number":
            return Num(number(str(kids[0]), span), span=span)
        if data in ("group", "paren"):
            inner = [k for k in kids if not isinstance(k, Token)]
            return self.conv(inner[0])
        if data == "name":
            return self.name(kids[0], None, (), span)
        if data in ("add", "sub"):
            return Op(data, (self.conv(kids[0]), self.conv(kids[-1])), span=span)
        if data == "neg":
            return Op("neg", (self.conv(kids[-1]),), span=span)
        if data == "pos":
            return self.conv(kids[-1])
        if data in ("implicit", "binop"):
            a, b = self.conv(kids[0]), self.conv(kids[-1])
            elementwise = data == "binop" and str(kids[1]).strip() in (r"\odot", r"\circ")
            matrix = _matrix_factor(a) or _matrix_factor(b) or (not elementwise and (_upper(a) or _upper(b)))
            return Op("matmul" if matrix and not (_scalar(a) or _scalar(b)) else "mul", (a, b), span=span)
        if data == "div":  # \partial C / \partial \gamma, inline, is the gradient too
            grad = self.gradient(kids[0], kids[-1], span)
            return grad if grad is not None else Op("div", (self.conv(kids[0]), self.conv(kids[-1])), span=span)
        if data == "frac":
            top, bottom = [k for k in kids if not isinstance(k, Token)]
            grad = self.gradient(top, bottom, span)
            if grad is not None:
                return grad
            return Op("div", (self.conv(top), self.conv(bottom)), span=span)
        if data == "frac_digits":
            return Op("div", (Num(int(str(kids[1])), span=span), Num(int(str(kids[2])), span=span)), span=span)
        if data == "sqrt":
            return Op("sqrt", (self.conv(kids[-1]),), span=span)
        if data == "hat":
            letter = str(kids[-1])
            if letter != "x":
                self.fail(t, f"\\hat{{{letter}}}: the hat names batch and layer norm's x̂, \\hat{{x}}")
            return Leaf("xhat", None, span=span)
        if data == "sum":
            letter = str([k for k in kids if isinstance(k, Token) and k.type == "LETTER"][0])
            top = next((k for k in kids if isinstance(k, Tree) and k.data == "sum_to"), None)
            bound = self.source[_span(top)[0]:_span(top)[1]].lstrip("^").strip().strip("{}").strip() if top else ""
            return Op("sum_any", (self.conv(kids[-1]),), (letter, bound), span=span)
        if data == "star":  # X \star \delta: the correlation of a convolution's input with δ
            return Op("corr", (self.conv(kids[0]), self.conv(kids[-1])), span=span)
        if data == "func":
            word = re.sub(r"\s+", "", str(kids[0]))
            prime = any(isinstance(k, Tree) and k.data == "prime" for k in kids)
            args = [self.conv(k) for k in kids if isinstance(k, Tree) and k.data != "prime"]
            op = sv.latex_operator(word)
            if op is not None:
                if len(args) != (2 if op in TWO else 1) or prime:
                    self.fail(t, f"{word} takes {'two arrays' if op in TWO else 'one array'}")
                return Op(op, tuple(args), span=span)
            if len(args) != 1:
                self.fail(t, f"{word} takes one argument")
            arg = args[0]
            if word != r"\sigma" and word not in _FUNCTIONS:
                self.fail(t, f"{word} is not an activation (\\sigma, or one the spec names: {', '.join(ACTIVATIONS)})")
            return Op("sigma_prime" if prime else "sigma", (arg,), None if word == r"\sigma" else _FUNCTIONS[word],
                      span=span)
        if data in ("sup", "sub_"):
            return self.scripted(t)
        self.fail(t, f"'{self.original[span[0]:span[1]] if span else data}' is not part of a claim")

    def scripted(self, t) -> Node:
        """A name or a parenthesised expression with its ^ and _: a layer (l), a transpose, a power, indices."""
        base, layer, index, sups = t, None, (), []
        while isinstance(base, Tree) and base.data in ("sup", "sub_"):
            script = base.children[-1]
            if base.data == "sub_":
                index = self.indices(script) + index
            else:
                sups.insert(0, script)
            base = base.children[0]
        rest = []
        for s in sups:
            text = self.source[_span(s)[0]:_span(s)[1]].strip().strip("{}").strip()
            m = re.fullmatch(r"\(\s*(\d+)\s*\)", text)
            if m and layer is None and not rest:
                layer = int(m.group(1))
            else:
                rest.append((s, re.sub(r"\s+", "", text)))
        node = self.name(base.children[0], layer, index, _span(t)) if isinstance(base, Tree) and base.data == "name" \
            else self.hatted(base, layer, index, _span(t)) if isinstance(base, Tree) and base.data == "hat" \
            else self._base(base, layer, index, t)
        for s, text in rest:
            if text in ("T", r"\top", r"\intercal", r"\mathsf{T}"):
                node = Op("T", (node,), span=_span(t))
            elif re.fullmatch(r"-?\d+", text):
                node = Op("epow", (node,), int(text), span=_span(t))
            elif re.fullmatch(r"-?\d+/2", text):  # (σ² + ε)^{-3/2}: a power of the square root
                node = Op("epow", (Op("sqrt", (node,), span=_span(t)),), int(text[:-2]), span=_span(t))
            else:
                self.fail(s, f"^{{{text}}}: a superscript is a layer (2), a transpose T, a whole power such as 2, or "
                             "a half one such as -3/2")
        return node

    def _base(self, base, layer, index, t) -> Node:
        if layer is not None:
            self.fail(t, "a layer mark ^{(l)} goes on a name")
        node = self.conv(base)
        if index:
            if any(isinstance(i, str) for i in index):
                return node  # x_b of a whole expression: entry by entry
            return Op("entry", (node,), tuple(index), span=_span(t))
        return node

    def hatted(self, base, layer, index, span) -> Node:
        letter = str(base.children[-1])
        if letter != "x":
            self.fail(base, f"\\hat{{{letter}}}: the hat names batch and layer norm's x̂, \\hat{{x}}")
        return self._leaf("xhat", layer, index, span)

    def indices(self, script) -> tuple:
        text = self.source[_span(script)[0]:_span(script)[1]].strip().strip("{}").replace(" ", "")
        m = re.fullmatch(r"t([+-]\d{1,2})?", text)
        if m:  # h_t, \delta_{t+1}: a recurrent layer's step (t is never an example or a feature)
            return (("t", int(m.group(1) or 0)),)
        parts = text.split(",") if "," in text else list(re.findall(r"[A-Za-z]'*|\d", text))
        out = []
        for p in parts:
            if re.fullmatch(r"\d+", p):
                out.append(int(p))
            elif re.fullmatch(r"[A-Za-z]'*", p):
                out.append(p)
            else:
                self.fail(script, f"_{{{text}}}: indices are numbers (one entry) or letters (every entry)")
        return tuple(out)

    def name(self, tok, layer, index, span) -> Node:
        word = str(tok)
        kind = _GREEK.get(word) or _LETTERS.get(word)
        named = sv.latex_name(word, index)  # W_q, W_{hh}, d_k, Q, K, V, P, h_t
        if named is not None:
            leaf = self._leaf(named[0], layer, named[1], span)
            return replace(leaf, alias=word) if isinstance(leaf, Leaf) and word in sv.UPPER else leaf
        if kind is None:
            raise ClaimError(f"'{word}' is not a name of a layer list (\\mu, \\sigma^2, \\hat{{x}}, \\gamma, \\beta, "
                             "\\varepsilon, s, x, y, z, a, W, b, \\delta, B, n)", span)
        return self._leaf(kind, layer, index, span)

    def _leaf(self, kind, layer, index, span) -> Node:
        if kind in ("B",):
            return Leaf("B", None, span=span)
        if kind == "n":
            return Leaf("n", layer, span=span)
        if kind == "eps":
            return Leaf("eps", layer, span=span)
        if kind == "C":
            return Leaf("C", None, span=span)
        if kind == "T":
            return self._indexed(Leaf("T", None, span=span), index, span)
        return self._indexed(Leaf(kind, layer, span=span), index, span)

    def _indexed(self, leaf: Leaf, index, span) -> Node:
        if index and isinstance(index[0], tuple):  # a step: h_{t-1}
            if leaf.kind not in sv.STEP_NAMES or len(index) != 1:
                raise ClaimError(f"a subscript t is a recurrent layer's step, of {', '.join(sv.STEP_NAMES)}", span)
            return Leaf(sv.with_step(leaf.kind, index[0]), leaf.layer, span=span)
        if not index or all(isinstance(i, str) for i in index):
            return leaf
        if all(isinstance(i, int) for i in index):
            return Leaf(leaf.kind, leaf.layer, tuple(index), span=span)
        if len(index) == 2:  # x_{b1}: feature 1 of every example; x_{0i}: every feature of example 0
            return Op("pick", (leaf,), ("feature", index[1]) if isinstance(index[1], int) else ("example", index[0]),
                      span=span)
        raise ClaimError("indices are numbers (one entry), letters (every entry), or an example and a feature, "
                         "one of them a number (x_{b1})", span)

    def gradient(self, top, bottom, span) -> Node | None:
        """\\frac{\\partial C}{\\partial Q}: dC/dQ."""
        def partial(t):
            while isinstance(t, Tree) and t.data == "group":
                t = t.children[0]
            return t.children[-1] if isinstance(t, Tree) and t.data == "partial" else None
        a, b = partial(top), partial(bottom)
        if a is None or b is None:
            if a is not None or b is not None:
                self.fail(top, "a derivative here is \\frac{\\partial C}{\\partial Q}, of the cost C")
            return None
        if not (isinstance(a, Tree) and a.data == "name" and _LETTERS.get(str(a.children[0]),
                                                                         _GREEK.get(str(a.children[0]))) == "C"):
            self.fail(top, "a derivative here is of the cost: \\frac{\\partial C}{\\partial Q}")
        q = self.conv(b)
        leaf = q.args[0] if isinstance(q, Op) and q.op in ("entry", "pick") else q
        if not isinstance(leaf, Leaf) or leaf.kind in ("B", "n", "eps", "C"):
            self.fail(b, "\\partial of a layer's named quantity, such as \\gamma^{(2)} or y^{(2)}")
        grad = Op("grad", (Leaf(leaf.kind, leaf.layer, alias=leaf.alias, span=leaf.span),), "batch", span=span)
        if leaf.index is not None:
            return Op("entry", (grad,), leaf.index, span=span)
        if q is not leaf:
            return Op(q.op, (grad,), q.param, span=span)
        return grad


def _matrix_factor(node: Node) -> bool:
    return (isinstance(node, Op) and node.op == "T") or (isinstance(node, Leaf) and node.kind in PARAMS
                                                          and node.kind.startswith("W") and node.index is None)


def _upper(node: Node) -> bool:
    """Attention's Q, K, V, S, P, O (or their gradients): matrices, so a product side by side is the matrix one."""
    leaf = node.args[0] if isinstance(node, Op) and node.op == "grad" else node
    return isinstance(leaf, Leaf) and leaf.alias in sv.UPPER and leaf.index is None


def _scalar(node: Node) -> bool:
    """A number, or one made of numbers, sizes and square roots (1/\\sqrt{d_k}): a factor, never a matrix."""
    if isinstance(node, Num):
        return True
    if isinstance(node, Leaf):
        return node.kind in CONSTANTS
    return isinstance(node, Op) and node.op in ("div", "mul", "sqrt", "epow", "neg", "add", "sub") \
        and all(_scalar(a) for a in node.args)


def read_layered_latex(source: str) -> tuple[Node | None, Node]:
    return LayeredLatexReader(source).read()


def fill_layers(node: Node, layer: int | None, kind: str = "") -> Node:
    """A name written without its layer (\\hat{x}, \\gamma) takes the claim's layer; a \\sum is over the batch
    or the features by its bound (B or m; n), else over the batch in a batch norm claim (Ioffe and Szegedy's
    \\sum_i), else by its letter (b, e, m, p the batch; i, j, k the features)."""
    if isinstance(node, Leaf):
        if node.layer is None and node.kind not in ("B", "eps", "X", "T", "C") and layer is not None:
            node = replace(node, layer=layer)
        return sv.numbered_step(node) if kind in sv.STEPPED else node
    if isinstance(node, Op):
        node = replace(node, args=tuple(fill_layers(a, layer, kind) for a in node.args))
        if node.op == "sum_any" and node.param[0] == "t":  # \sum_t: over a recurrent layer's steps
            return Op("step_sum", node.args, "t", span=node.span)
        if kind in sv.STEPPED:  # h^{(1)}_2 of a recurrent layer: its step 2
            node = sv.numbered_step(node)
        if node.op == "sum_any":
            letter, bound = node.param
            batch = (bound in ("B", "m") or (bound not in ("n", "d", "N") and kind == "batchnorm")
                     or (not bound and letter in EXAMPLE_LETTERS))
            if not batch and not (bound in ("n", "d", "N") or letter in FEATURE_LETTERS):
                raise ClaimError(f"\\sum_{letter}: sum over the batch with b, e, m or p (or up to B), over the "
                                 "features with i, j or k (or up to n)", node.span)
            return Op("batch_sum" if batch else "feature_sum", node.args, span=node.span)
    return node


def named_kinds(node: Node) -> set[str]:
    """The kinds of the names a tree writes without their layer."""
    out = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Leaf) and n.layer is None and n.kind not in ("B", "eps", "X", "T", "C", "n", "dk"):
            out.add(sv.split_step(n.kind)[0])  # h_t: a name of the layer that has h
        elif isinstance(n, Op):
            stack.extend(n.args)
    return out
