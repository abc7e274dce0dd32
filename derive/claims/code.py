"""NumPy backward code as CS231n and Ng's assignments write it, read statement by statement and never run.

`ast.parse` only parses; a whitelisted walk (derive.claims.text's, extended with statements)
turns assignments, augmented assignments, mask assignments (`dhidden[hidden_layer <= 0] = 0`)
and integer-label assignments (`dscores[range(N), y] -= 1`) into claim trees. Each name is
what the notation says it is: a layer's quantity by its letter and number (A1, Z2, W2, b1),
by the notation's own names (CS231n's X, hidden_layer, scores, probs), the batch size (N, m),
the regularization strength `reg`, and a gradient by its prefix (dW2 is dL/dW2, dscores is
dL/dscores). A name's value, as it stands after its last assignment, is checked exactly; the
first line whose name is wrong is the verdict's, with a witness. A line the proof cannot
evaluate exactly (np.exp, np.log: the loss and the softmax's own lines) is not checked and is
said so; a name it defines that the notation knows (probs) takes the notation's value.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from derive.claims.text import TextReader
from derive.claims.tree import ClaimError, Leaf, Node, Num, Op, Shape, walk
from derive.tables.activations import ACTIVATIONS

_LAYER_NAME = re.compile(r"^([A-Za-z]+?)(\d+|L)$")
_ACTIVATION_NAMES = {alias: name for name, act in ACTIVATIONS.items() for alias in (name, *act.claim_names)}
_OPAQUE = ("exp", "log", "max", "min", "zeros_like", "zeros", "ones_like", "random")


@dataclass(frozen=True)
class Line:
    """One checked name: the line that last set it, the quantity it is, its value as a tree."""

    line: int
    name: str
    quantity: Node
    value: Node


class CodeReader(TextReader):
    """The text reader, over statements (mode 'exec'), with the notation's names for the code's variables."""

    def __init__(self, source: str, shape: Shape):
        super().__init__(source, shape)
        self.reading = shape.notation
        self.values: dict[str, Node] = {}  # each local name's value so far
        self.opaque: set[str] = set()  # names whose value the proof cannot know exactly
        self.gate_layer: int | None = None  # the layer whose ReLU gate the current line applies
        self.uses_labels = False  # integer class labels (dscores[range(N), y] -= 1): the cost must be one-hot
        self._starts = [0] + [i + 1 for i, ch in enumerate(source) if ch == "\n"]

    def _offset(self, lineno: int, col: int) -> int:
        lineno = min(max(lineno, 1), len(self._starts))
        return min(self._starts[lineno - 1] + col, len(self.source))

    # -- the statements ------------------------------------------------------------------
    def lines(self) -> tuple[list[Line], list[int]]:
        """(the names to check, each at its last assignment; the lines not checked, the proof cannot evaluate them)."""
        module = self.python(self.source, "exec", "Python")
        last: dict[str, int] = {}
        for i, st in enumerate(module.body):
            last[self._target_name(st)] = i
        checks, skipped, self.unchecked_gradients = [], [], []
        meaning: dict[str, Node | None] = {}  # what each name stands for now (a ReLU's gate changes it)
        before: dict[str, tuple[int, Node]] = {}  # each name's last line and value
        for i, st in enumerate(module.body):
            name = self._target_name(st)
            self.gate_layer = None
            value = self.statement(st)
            quantity = meaning.get(name, self.quantity(name, st))
            gated = quantity
            if self.gate_layer is not None and isinstance(quantity, Op) and quantity.op == "grad" \
                    and quantity.args[0].kind == "a" and quantity.args[0].layer == self.gate_layer:
                # dhidden[hidden_layer <= 0] = 0 backpropagates through the ReLU in place: before it the name
                # is dL/da of the layer (checked there), after it dL/dz
                if name in before and not self._is_opaque(before[name][1]):
                    checks.append(Line(before[name][0], name, quantity, before[name][1]))
                gated = Op("grad", (Leaf("z", self.gate_layer, span=quantity.span),), quantity.param, span=quantity.span)
            meaning[name] = gated
            quantity = gated
            before[name] = (st.lineno, value)
            prefix = self.reading.gradient_prefix
            if prefix and name.startswith(prefix) and len(name) > len(prefix) and (
                    quantity is None or self._is_opaque(value)):
                self.unchecked_gradients.append((st.lineno, name))  # a gradient the proof could not check
            if self._is_opaque(value):
                skipped.append(st.lineno)
                if isinstance(quantity, Leaf):  # a forward quantity the notation names (probs): its own value
                    self.values[name] = quantity
                    self.opaque.discard(name)
                else:
                    self.opaque.add(name)
                continue
            self.values[name] = value
            if quantity is not None and last[name] == i:
                checks.append(Line(st.lineno, name, quantity, value))
        if not checks:
            raise ClaimError("no line sets a name the notation knows, with a value the proof can evaluate (dW2, db2, "
                             "dscores, dhidden, ...)", (0, 0))
        return checks, skipped

    def _target_name(self, st: ast.stmt) -> str:
        target = st.targets[0] if isinstance(st, ast.Assign) and len(st.targets) == 1 else getattr(st, "target", None)
        if isinstance(st, ast.Assign) and len(st.targets) != 1:
            self.fail(st, "one name on the left of each line")
        if not isinstance(st, (ast.Assign, ast.AugAssign)):
            self.fail(st, "each line is an assignment: name = ..., name += ..., name[mask] = 0")
        if isinstance(target, ast.Subscript):
            target = target.value
        if not isinstance(target, ast.Name):
            self.fail(st, "the left of each line is a name, or a name with a mask or labels in brackets")
        return target.id

    def statement(self, st: ast.stmt) -> Node:
        """The value the line gives its name."""
        span = self.span(st)
        name = self._target_name(st)
        if isinstance(st, ast.Assign) and isinstance(st.targets[0], ast.Name):
            return self.walk(st.value)
        if isinstance(st, ast.AugAssign) and isinstance(st.target, ast.Name):
            ops = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div"}
            if type(st.op) not in ops:
                self.fail(st, "an augmented assignment here is += -= *= or /=")
            return Op(ops[type(st.op)], (self._current(name, st), self.walk(st.value)), span=span)
        target = st.targets[0] if isinstance(st, ast.Assign) else st.target
        index = target.slice
        old = self._current(name, st)
        if isinstance(index, ast.Compare):  # dhidden[hidden_layer <= 0] = 0: the ReLU's gate
            if not (isinstance(st, ast.Assign) and isinstance(st.value, ast.Constant) and st.value.value == 0):
                self.fail(st, "a mask assignment here sets the masked entries to 0")
            return Op("mul", (old, self._gate(index)), span=span)
        if isinstance(index, ast.Tuple) and len(index.elts) == 2 and self._is_range(index.elts[0]) \
                and isinstance(index.elts[1], ast.Name) and index.elts[1].id == "y":
            if not isinstance(st, ast.AugAssign) or not isinstance(st.op, (ast.Add, ast.Sub)):
                self.fail(st, "the labels' entries are changed here with += or -=, as in dscores[range(N), y] -= 1")
            labels = Op("mul", (self.walk(st.value), self._labels(st)), span=span)
            return Op("add" if isinstance(st.op, ast.Add) else "sub", (old, labels), span=span)
        self.fail(target, "brackets on the left hold a mask (x <= 0) or the labels [range(N), y]")

    def _current(self, name: str, st) -> Node:
        if name not in self.values and name not in self.opaque:
            self.fail(st, f"{name} is changed before any line sets it")
        return self._name_value(name, st)

    def _is_range(self, n: ast.AST) -> bool:
        """range(N) or np.arange(N) over the batch."""
        f = n.func if isinstance(n, ast.Call) else None
        named = (isinstance(f, ast.Name) and f.id == "range") or (
            isinstance(f, ast.Attribute) and f.attr == "arange" and isinstance(f.value, ast.Name) and f.value.id == "np")
        return named and len(n.args) == 1 and isinstance(self.walk(n.args[0]), Leaf) \
            and self.walk(n.args[0]).kind == "count"

    def _labels(self, st) -> Node:
        """The one-hot targets, one example per row (CS231n's y holds class indices: row i is 1 at y[i])."""
        self.uses_labels = True
        return Leaf("y", None, alias="y", span=self.span(st))

    def _indicator(self, cmp: ast.Compare) -> Node:
        """[x > 0] as a value (1 where it holds): the complement of the mask that zeroes where x > 0."""
        keep = self._gate(cmp)  # keeps where cmp does not hold
        self.gate_layer = None  # a value, not the gate of an assignment
        return Op("sub", (Num(1), keep), span=keep.span)

    def _gate(self, cmp: ast.Compare) -> Node:
        """What a mask assignment keeps, 1 - [x op 0], exactly: x is a ReLU layer's a or z, whose sign sigma' is.

        For a = max(0, z): a <= 0 and a == 0 where z <= 0, a < 0 nowhere, a > 0 and a != 0 where z > 0, a >= 0
        everywhere; for z off its kink (where no point of the proof lies): z < 0 and z <= 0 where z <= 0, z == 0
        nowhere, z > 0 and z >= 0 where z > 0, z != 0 everywhere.
        """
        if len(cmp.ops) != 1 or not isinstance(cmp.comparators[0], ast.Constant) or cmp.comparators[0].value != 0:
            self.fail(cmp, "a mask compares a layer's values with 0, as in hidden_layer <= 0")
        known = self.known(cmp.left.id, cmp) if isinstance(cmp.left, ast.Name) else None
        x = known if known is not None else self.walk(cmp.left)
        if not (isinstance(x, Leaf) and x.kind in ("a", "z") and isinstance(x.layer, int) and x.layer >= 1
                and _is_step(ACTIVATIONS[self.shape.activations[x.layer - 1]].pieces)):
            self.fail(cmp, "a mask is exact here only on a ReLU layer's values (hidden_layer <= 0)")
        self.gate_layer = x.layer
        step = Op("sigma_prime", (Leaf("z", x.layer, span=x.span),), None, span=self.span(cmp))  # [z > 0]
        below = Op("sub", (Num(1), step), span=step.span)  # [z <= 0]
        op = type(cmp.ops[0])
        where = _WHERE_A if x.kind == "a" else _WHERE_Z
        if op not in where:
            self.fail(cmp, "a mask here compares with <, <=, ==, !=, > or >= 0")
        holds = {"positive": step, "not positive": below, "nowhere": Num(0), "everywhere": Num(1)}[where[op]]
        return Op("sub", (Num(1), holds), span=step.span)

    def walk(self, n: ast.AST) -> Node:
        """1 / (1 + np.exp(-x)) is the sigmoid of x, as Ng's sigmoid() writes it; the rest as the text reader reads it."""
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and _is_number(n.left, 1) \
                and isinstance(n.right, ast.BinOp) and isinstance(n.right.op, ast.Add) and _is_number(n.right.left, 1):
            e = n.right.right
            if isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute) and e.func.attr == "exp" \
                    and isinstance(e.func.value, ast.Name) and e.func.value.id == "np" and len(e.args) == 1 \
                    and isinstance(e.args[0], ast.UnaryOp) and isinstance(e.args[0].op, ast.USub):
                return Op("sigma", (self.walk(e.args[0].operand),), "sigmoid", span=self.span(n))
        return super().walk(n)

    # -- names and calls ---------------------------------------------------------------------
    def quantity(self, name: str, st) -> Node | None:
        """What the notation says a name is: a gradient (dW2, dscores) or a forward quantity (hidden_layer), or None."""
        r = self.reading
        if r.gradient_prefix and name.startswith(r.gradient_prefix):
            inner = self.known(name[len(r.gradient_prefix):], st)
            if isinstance(inner, Leaf) and inner.kind in ("z", "a", "W", "b") and inner.layer:
                scale = "batch" if inner.kind in ("W", "b") else r.gradient_scale
                return Op("grad", (inner,), scale, span=self.span(st))
        known = self.known(name, st)
        if isinstance(known, Leaf) and known.kind in ("a", "z") and known.layer:
            return known
        return None

    def known(self, name: str, st) -> Leaf | None:
        """A name of the notation: its code names (hidden_layer), or a letter and a layer (A1, Z2, W2, b1, X, Y)."""
        span = self.span(st)
        table = dict(self.reading.code_names)
        if name in table:
            m = _LAYER_NAME.match(table[name])
            layer = self.shape.L if m.group(2) == "L" else int(m.group(2))
            if not (0 if m.group(1) == "a" else 1) <= layer <= self.shape.L:
                self.fail(st, f"{name} is layer {layer}'s in this notation, and this network has {self.shape.L} "
                              f"layer{'s' if self.shape.L > 1 else ''}")
            return Leaf(m.group(1), layer, span=span)
        names = self.reading.names()
        m = _LAYER_NAME.match(name)
        if m and m.group(1) in names and names[m.group(1)] in ("z", "a", "w", "W", "b"):
            kind, layer = names[m.group(1)], (self.shape.L if m.group(2) == "L" else int(m.group(2)))
            if kind == "w":
                kind = "W"
            if 0 <= layer <= self.shape.L and (layer >= 1 or kind == "a"):
                return Leaf(kind, layer, span=span)
        if name in names and names[name] == "x":
            return Leaf("a", 0, alias="x", span=span)
        if name in names and names[name] == "y":
            return Leaf("y", None, alias=name, span=span)
        return None

    def _name_value(self, ident: str, n) -> Node:
        if ident in self.opaque:
            return Leaf("opaque", None, alias=ident, span=self.span(n))
        if ident in self.values:
            return self.values[ident]
        r = self.reading
        if ident in r.examples_count or ident == "num_examples":
            return Leaf("count", None, span=self.span(n))
        if ident == "reg":
            return Leaf("reg", None, span=self.span(n))
        known = self.known(ident, n)
        if known is not None:
            return known
        self.fail(n, f"'{ident}' is not set by an earlier line and is not a name of this notation "
                     f"({', '.join(dict(r.code_names)) or 'A1, Z2, W2, b1, X, Y'}, reg, "
                     f"{'/'.join(r.examples_count) or 'N'})")

    def name(self, n: ast.Name) -> Node:
        return self._name_value(n.id, n)

    def subscript(self, n: ast.Subscript) -> Node:
        """X.shape[1]: the batch size or a layer's width; anything else (probs[range(N), y]) only in the loss's lines."""
        v, i = n.value, n.slice
        if isinstance(v, ast.Attribute) and v.attr == "shape" and isinstance(i, ast.Constant) and i.value in (0, 1):
            x = self.walk(v.value)
            if isinstance(x, Leaf) and x.kind in ("a", "z", "y") and x.index is None:
                across = 0 if self.reading.examples == "rows" else 1
                if i.value == across:
                    return Leaf("count", None, span=self.span(n))
                width = self.shape.widths[x.layer if x.layer is not None else self.shape.L]
                return Num(width, span=self.span(n))
        return Leaf("opaque", None, alias=self.snippet(n), span=self.span(n))

    def call(self, n: ast.Call) -> Node:
        span = self.span(n)
        f = n.func
        if isinstance(f, ast.Attribute) and f.attr == "copy" and not n.args and not n.keywords:
            return self.walk(f.value)
        if isinstance(f, ast.Name) and f.id in _ACTIVATION_NAMES and len(n.args) == 1 and not n.keywords:
            return Op("sigma", (self.walk(n.args[0]),), _ACTIVATION_NAMES[f.id], span=span)  # Ng's sigmoid(Z)
        if isinstance(f, ast.Attribute) and f.attr == "astype" and isinstance(f.value, ast.Compare):
            return self._indicator(f.value)  # (A > 0).astype(int)
        if not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "np"):
            self.fail(n.func, f"'{self.snippet(n.func)}' is not a NumPy call this reader knows (np.dot, np.sum, "
                              "np.multiply, np.power, np.maximum, np.exp, np.log, .copy())")
        fn = f.attr
        kw = {k.arg: k.value for k in n.keywords}
        if fn == "array" and len(n.args) == 1 and set(kw) <= {"copy"}:
            return self.walk(n.args[0])  # np.array(dA, copy=True): the same values
        if fn in ("int64", "int32", "float64", "float32") and len(n.args) == 1 and isinstance(n.args[0], ast.Compare):
            return self._indicator(n.args[0])  # np.int64(A > 0): the ReLU's step
        if fn in _ACTIVATION_NAMES and len(n.args) == 1:  # np.tanh(x): the activation of that name
            return Op("sigma", (self.walk(n.args[0]),), _ACTIVATION_NAMES[fn], span=span)
        if fn in _OPAQUE and fn != "max":
            return Op("opaque", tuple(self.walk(a) for a in n.args), fn, span=span)
        if fn == "maximum":
            if len(n.args) != 2 or not (isinstance(n.args[0], ast.Constant) and n.args[0].value == 0):
                self.fail(n, "np.maximum reads here as the ReLU, np.maximum(0, x)")
            return Op("sigma", (self.walk(n.args[1]),), "relu", span=span)
        if fn == "sum":
            axis = kw.get("axis")
            if len(n.args) != 1 or not isinstance(axis, ast.Constant) or axis.value not in (0, 1):
                self.fail(n, "np.sum reads here with axis=0 or axis=1")
            keep = kw.get("keepdims")
            if axis.value == 1 and not (isinstance(keep, ast.Constant) and keep.value is True):
                self.fail(n, "np.sum(..., axis=1) without keepdims=True is a 1-D array NumPy lines up as a row")
            return Op("axis_sum", (self.walk(n.args[0]),), axis.value, span=span)
        binary = {"dot": "matmul", "multiply": "mul", "divide": "div", "add": "add", "subtract": "sub"}
        if fn in binary:
            if len(n.args) != 2 or n.keywords:
                self.fail(n, f"np.{fn} takes two arguments here")
            return Op(binary[fn], (self.walk(n.args[0]), self.walk(n.args[1])), span=span)
        if fn == "power":
            if len(n.args) != 2:
                self.fail(n, "np.power takes two arguments")
            return Op("epow", (self.walk(n.args[0]),), self.const_int(n.args[1]), span=span)
        if fn == "transpose":
            return Op("T", (self.walk(n.args[0]),), span=span)
        self.fail(n, f"np.{fn} is not read here (np.dot, np.sum, np.multiply, np.divide, np.power, np.maximum, "
                     "np.transpose; np.exp and np.log lines are left unchecked)")

    @staticmethod
    def _is_opaque(node: Node) -> bool:
        return any((isinstance(x, Op) and x.op == "opaque") or (isinstance(x, Leaf) and x.kind == "opaque")
                   for x, _ in walk(node))


# where x op 0 holds, for a ReLU layer's activation a and its pre-activation z (off the kink)
_WHERE_A = {ast.LtE: "not positive", ast.Eq: "not positive", ast.Lt: "nowhere", ast.Gt: "positive",
            ast.NotEq: "positive", ast.GtE: "everywhere"}
_WHERE_Z = {ast.LtE: "not positive", ast.Lt: "not positive", ast.Eq: "nowhere", ast.Gt: "positive",
            ast.GtE: "positive", ast.NotEq: "everywhere"}


def _is_number(n: ast.AST, value) -> bool:
    return isinstance(n, ast.Constant) and not isinstance(n.value, bool) and n.value == value


def _is_step(pieces) -> bool:
    """sigma' is 0 below 0 and 1 above (the ReLU): then [x > 0] is sigma'(z) exactly, and a and z share a sign."""
    return pieces is not None and len(pieces) == 2 and all(any(p[0] == s and p[1] == 0 for p in pieces) for s in (0, 1))


def read_code(source: str, shape: Shape) -> tuple[list[Line], list[int], bool, list]:
    """The names a piece of NumPy code sets, each with its value; the lines not checked; whether it uses labels;
    the (line, name) of each gradient the proof could not check (an unknown name, or a value through np.exp)."""
    reader = CodeReader(source, shape)
    checks, skipped = reader.lines()
    return checks, skipped, reader.uses_labels, reader.unchecked_gradients
