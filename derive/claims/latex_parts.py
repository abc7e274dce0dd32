"""The LaTeX reader's superscripts, subscripts and indices (Scripts), and its functions, sums and NumPy calls (Calls).

Mixins of derive.claims.latex.LatexReader, kept apart to keep each module short: they
read the parse tree the grammar (latex.lark) makes, through the reader's notation
(self.reading), shape (self.shape) and fail/snippet helpers.
"""

from __future__ import annotations

from lark import Token, Tree

from derive.claims.tree import MAX_SUM_RANGE, Leaf, Node, Num, Op, check_exponent, fold_power, number
from derive.tables.activations import ACTIVATIONS

# a function's name in a claim -> the activation it applies (None: the spec's own sigma), or diag
_FUNCTIONS = ({"sigma": None} | {alias: name for name, act in ACTIVATIONS.items() for alias in (name, *act.claim_names)}
              | {"diag": "diag"})

def _span(t) -> tuple[int, int] | None:
    if isinstance(t, Token):
        return (t.start_pos, t.end_pos)
    meta = getattr(t, "meta", None)
    if meta is None or getattr(meta, "empty", True):
        return None
    return (meta.start_pos, meta.end_pos)



class _Fn:
    """A function's name as written (f, g^{[l]}, h', \\varphi'_j): it needs its argument next."""

    def __init__(self, name: str, prime: bool, layer, t):
        self.name, self.prime, self.layer, self.t = name, prime, layer, t



class Scripts:
    """Superscripts (a layer, a transpose, a power, a prime), subscripts and index lists, and small integers."""

    def _layered_sup(self, sup, kind):
        """(layer, transpose, power, prime) from the superscript on a name that has a layer."""
        data = sup.data
        if data == "top":
            return None, True, None, False
        if data == "script_prime":
            return None, False, None, True
        if data in ("layer_top", "layer_prime"):
            layer = self._layer_expr(sup.children[0])
            if layer is None:
                self.fail(sup, f"'{self.snippet(sup)}' is not a layer")
            return layer, data == "layer_top", None, data == "layer_prime"
        if data == "letter":
            v = sup.children[0].value
            if v == "T":
                return None, True, None, False
            if v in self.reading.depth:
                return self.shape.L, False, None, False
            if self.bare and len(v) == 1:
                return (v, 0), False, None, False
            self.fail(sup, f"superscript {v}: only T (transpose), L (the output layer) or a number stand there")
        if data == "number":
            n = int(sup.children[0].value)
            return (n, False, None, False) if self.bare else (None, False, n, False)
        items = [c for c in sup.children]
        if len(items) != 1:
            self.fail(sup, "a superscript holds one thing")
        e = items[0]
        if e.data == "paren":
            layer = self._layer_expr(e.children[1])
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, False, None, False
        if e.data == "superscript" and e.children[0].data == "paren" and (
                e.children[1].data == "top" or (e.children[1].data == "letter" and e.children[1].children[0].value == "T")):
            layer = self._layer_expr(e.children[0].children[1])  # A^{[l-1]^T}: the layer, then the transpose
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, True, None, False
        if e.data == "primed" and e.children[0].data == "paren":
            layer = self._layer_expr(e.children[0].children[1])
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, False, None, True
        if e.data == "implicit" and e.children[0].data == "paren" and e.children[1].data == "letter" \
                and e.children[1].children[0].value == "T":
            layer = self._layer_expr(e.children[0].children[1])
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, True, None, False
        if e.data == "letter" and e.children[0].value == "T":
            return None, True, None, False
        if self.bare:
            layer = self._layer_expr(e)
            if layer is not None:
                return layer, False, None, False
        power = self._int(e, allow_L=False)
        if power is None:
            self.fail(sup, f"superscript '{self.snippet(sup)}' is neither a layer, a transpose nor a whole-number power")
        return None, False, check_exponent(power, _span(sup)), False

    def _layer_expr(self, t):
        """A layer: a number, L, or a letter plus or minus a number (a layer the claim leaves free)."""
        value = self._int(t, allow_L=True)
        if value is not None:
            return value
        if isinstance(t, Tree) and t.data in ("paren", "group", "scriptgroup") and len(t.children) in (1, 3):
            return self._layer_expr(t.children[1] if t.data == "paren" else t.children[0])
        if isinstance(t, Tree) and t.data == "letter" and t.children[0].type == "LETTER" \
                and t.children[0].value != "T" and t.children[0].value not in self.reading.depth:
            return (t.children[0].value, 0)
        if isinstance(t, Tree) and t.data in ("add", "sub") and t.children[0].data == "letter":
            var = self._layer_expr(t.children[0])
            off = self._int(t.children[1], allow_L=False)
            if isinstance(var, tuple) and off is not None:
                return (var[0], off if t.data == "add" else -off)
        return None

    def _plain_sup(self, sup):
        """(transpose, power) from the superscript on something without a layer."""
        if sup.data == "top" or (sup.data == "letter" and sup.children[0].value == "T"):
            return True, None
        if sup.data == "scriptgroup" and len(sup.children) == 1:
            e = sup.children[0]
            if e.data == "letter" and e.children[0].value == "T":
                return True, None
            if e.data == "paren":
                self.fail(sup, f"'{self.snippet(sup)}': a layer in parentheses on something that has no layer")
        if sup.data in ("layer_top", "layer_prime", "script_prime"):
            self.fail(sup, f"'{self.snippet(sup)}': a layer or a prime on something that has no layer")
        power = self._int(sup, allow_L=False)
        if power is None:
            self.fail(sup, f"superscript '{self.snippet(sup)}' is neither a transpose nor a whole-number power")
        return False, check_exponent(power, _span(sup))

    def scripted(self, node: Node, scripts, whole) -> Node:
        """Superscripts on a parenthesized or other unnamed base: transposes and powers."""
        for kind, s in scripts:
            if kind == "subscript":
                self.fail(s, "a subscript indexes a named quantity (a_0, w_{01}); it cannot stand here")
            if kind == "primed":
                self.fail(whole, f"'{self.snippet(whole)}': a prime belongs on the activation function, f'(z)")
            transpose, power = self._plain_sup(s)
            span = (_span(whole)[0], _span(s)[1])
            if transpose:
                node = Op("T", (node,), span=span)
            elif isinstance(node, Num):
                node = Num(fold_power(node.value, power, span), span=span)
            else:
                node = Op("epow" if self.reading.powers == "elementwise" else "pow", (node,), power, span=span)
        return node

    def _int(self, t, allow_L: bool):
        """An integer written with numbers, L, + and - (None if it is not one); each step bounded."""
        if isinstance(t, Token):
            return None
        d = t.data
        if d == "number":
            text = t.children[0].value
            return None if "." in text else int(number(text, _span(t)))
        if d == "letter":
            return self.shape.L if allow_L and t.children[0].value in self.reading.depth else None
        if d in ("paren", "group", "pos"):
            return self._int(t.children[1] if d == "paren" else t.children[0], allow_L)
        if d == "scriptgroup":
            return self._int(t.children[0], allow_L) if len(t.children) == 1 else None
        if d == "neg":
            v = self._int(t.children[0], allow_L)
            return None if v is None else -v
        if d in ("add", "sub"):
            a, b = self._int(t.children[0], allow_L), self._int(t.children[1], allow_L)
            if a is None or b is None:
                return None
            return a + b if d == "add" else a - b
        if d == "superscript" and not allow_L:  # a power of numbers, as in 2^{2^{99}}
            base = self._int(t.children[0], False)
            exp = self._int(t.children[1], False) if t.children[1].data != "top" else None
            if base is None or exp is None:
                return None
            if exp < 0:
                self.fail(t, "an exponent must be a whole number")
            return int(fold_power(number(str(base), _span(t)), check_exponent(exp, _span(t)), _span(t)))
        return None

    def _index(self, sub) -> tuple:
        d = sub.data
        if d == "number":
            return (int(sub.children[0].value),)
        if d == "letter":
            v = sub.children[0].value
            if len(v) > 1 and not v.startswith("\\"):
                return tuple((ch, 0) for ch in v)
            return ((v, 0),)
        if d != "scriptgroup":
            self.fail(sub, "an index is a number or a letter")
        items = list(sub.children)
        if len(items) == 1:
            parts = self._chain(items[0])
            if parts is not None:
                out = []
                for p in parts:
                    if p.data == "number":
                        if "." in p.children[0].value:
                            self.fail(p, "an index is a whole number")
                        out.extend(int(ch) for ch in p.children[0].value)
                    elif p.children[0].value.startswith("\\"):
                        out.append((p.children[0].value, 0))
                    else:
                        out.extend((ch, 0) for ch in p.children[0].value)
                return tuple(out)
        return tuple(self._index_item(e) for e in items)

    def _chain(self, t):
        """w_{j0}: letters and digit strings side by side, each character one index."""
        if t.data == "number" or (t.data == "letter" and (t.children[0].value.isalpha()
                                                          or t.children[0].value == "\\ell")):
            return [t]
        if t.data == "implicit":
            left = self._chain(t.children[0])
            right = self._chain(t.children[1])
            return None if left is None or right is None else left + right
        return None

    def _index_item(self, e):
        if e.data == "number":
            if "." in e.children[0].value:
                self.fail(e, "an index is a whole number")
            return int(number(e.children[0].value, _span(e)))
        if e.data == "letter" and (len(e.children[0].value) == 1 or e.children[0].value == "\\ell"):
            return (e.children[0].value, 0)
        if e.data in ("add", "sub") and e.children[0].data == "letter" and e.children[1].data == "number":
            off = int(number(e.children[1].children[0].value, _span(e)))
            return (e.children[0].children[0].value, off if e.data == "add" else -off)
        self.fail(e, f"'{self.snippet(e)}' is not an index (a number, a letter, or a letter plus a number)")


class Calls:
    """Functions (\\sigma, the notation's f, g, h), \\nabla, \\sum and NumPy's calls written in a formula."""

    def func(self, t, kids) -> Node:
        tok = kids[0]
        raw = tok.value
        if raw.startswith("\\") and "{" in raw:
            word = raw[raw.index("{") + 1:raw.rindex("}")].strip()
        else:
            word = raw[1:]
        if word not in _FUNCTIONS:
            self.fail(tok, f"unknown function '{word}'; known: \\sigma, \\tanh, \\operatorname{{diag}}, "
                           "\\operatorname{ReLU}, \\operatorname{softplus}, ...")
        prime = any(isinstance(k, Tree) and k.data == "prime" for k in kids)
        arg = next(k for k in kids if isinstance(k, Tree) and k.data != "prime")
        inner = self.node(arg)
        name = _FUNCTIONS[word]
        if name == "diag":
            if prime:
                self.fail(t, "diag has no derivative here")
            return Op("diag", (inner,), span=_span(t))
        return Op("sigma_prime" if prime else "sigma", (inner,), name, span=_span(t))

    def apply(self, fn: _Fn, arg: Node | None, t) -> Node:
        """The notation's activation letter applied: f(z), f'(z), g^{[l]\\prime}(Z), (f^l)' (at layer l's z)."""
        if arg is None:
            if fn.layer is None:
                self.fail(t, f"'{self.snippet(t)}' needs its layer, (f^l)', or an argument, f'(z^l)")
            arg = Leaf("z", fn.layer, span=_span(t))
        which = None  # the function of the layer the name marks (g^{[2]} is layer 2's), else the neuron's own
        if isinstance(fn.layer, int):
            if not 1 <= fn.layer <= self.shape.L:
                self.fail(t, f"'{self.snippet(t)}': there is no layer {fn.layer}")
            which = self.shape.activations[fn.layer - 1]
        elif isinstance(fn.layer, tuple):
            which = ("layer", *fn.layer)
        return Op("sigma_prime" if fn.prime else "sigma", (arg,), which, span=_span(t))

    def nabla(self, t, kids) -> Node:
        script, of = kids[1], self.node(kids[2])
        if not (isinstance(of, Leaf) and of.kind == "C"):
            self.fail(t, "\\nabla_x C is the gradient of the cost; it takes the cost after the subscript")
        if script.data == "letter" and script.children[0].value == "a" and "a" in self.reading.activation:
            return Leaf("g", None, span=_span(t))  # \nabla_a C: the outputs' gradient
        inner = script.children[0] if script.data == "scriptgroup" and len(script.children) == 1 else script
        x = self.node(inner)
        if isinstance(x, Leaf) and x.kind == "a" and x.layer == self.shape.L and x.index is None \
                and "a" in self.reading.activation and self.reading.layers != "implied":
            return Leaf("g", None, span=_span(t))
        if isinstance(x, Leaf) and x.kind == "a" and x.layer == 0:
            self.fail(t, "\\nabla_a C is the gradient of the cost with respect to the outputs; the inputs' gradient "
                         "is not derived here")
        if not (isinstance(x, Leaf) and x.kind in ("a", "z", "w", "W", "b") and x.index is None):
            self.fail(t, "\\nabla_{x} C takes a whole vector or matrix of the network after the \\nabla: "
                         "\\nabla_a C, \\nabla_{W^{(k)}} J, \\nabla_{h^{(k)}} J")
        return Op("grad", (x,), "batch", span=_span(t))

    def sum(self, t, kids) -> Node:
        if t.data == "sum":
            var = kids[1].value
            lo = self._int(kids[2], allow_L=True)
            hi = self._int(kids[3], allow_L=True)
            if lo is None:
                self.fail(t, "a \\sum needs a whole-number lower bound, as in \\sum_{j=0}^{1}")
            if hi is None:
                bound = kids[3].children[0] if kids[3].data == "scriptgroup" and len(kids[3].children) == 1 else kids[3]
                if isinstance(bound, Tree) and bound.data == "letter" and bound.children[0].value != "T" \
                        and bound.children[0].value not in self.names:  # \sum_{k=1}^{K}: every k there is
                    return Op("sum", (self.node(kids[4]),), (var, lo, None), span=_span(t))
                self.fail(t, "a \\sum needs explicit whole-number bounds, as in \\sum_{j=0}^{1}")
            if hi < lo:
                self.fail(t, f"\\sum from {lo} to {hi} has no terms")
            if hi - lo + 1 > MAX_SUM_RANGE:
                self.fail(t, f"\\sum of {hi - lo + 1} terms; at most {MAX_SUM_RANGE}")
            return Op("sum", (self.node(kids[4]),), (var, lo, hi), span=_span(t))
        if t.data == "sum_over":
            script = kids[1]
            if script.data == "script_in":  # \sum_{\ell \in L}: every unit of the layer its summand names
                return Op("sum", (self.node(kids[2]),), (script.children[0].value, None, None), span=_span(t))
            inner = script.children[0] if script.data == "scriptgroup" and len(script.children) == 1 else script
            if not (isinstance(inner, Tree) and inner.data == "letter"
                    and (len(inner.children[0].value) == 1 or inner.children[0].value == "\\ell")):
                self.fail(t, "a \\sum runs over one index letter, \\sum_k, or between bounds, \\sum_{k=0}^{1}")
            return Op("sum", (self.node(kids[2]),), (inner.children[0].value, None, None), span=_span(t))
        return Op("sum", (self.node(kids[1]),), (None, None, None), span=_span(t))

    def npcall(self, t, kids) -> Node:
        """NumPy's calls as Ng and CS231n write them in formulas: np.sum(X, axis=1, keepdims=True), np.dot, ..."""
        fn = kids[0].value.split(".")[1]
        args = [k for k in kids[1:] if isinstance(k, Tree) and k.data != "kwarg"]
        kw = {k.children[0].value: k.children[1].value for k in kids[1:] if isinstance(k, Tree) and k.data == "kwarg"}
        want = {"sum": 1, "transpose": 1, "dot": 2, "multiply": 2, "divide": 2, "power": 2}[fn]
        if len(args) != want:
            self.fail(t, f"np.{fn} takes {want} argument{'s' if want > 1 else ''} here")
        if fn != "sum" and kw:
            self.fail(t, f"np.{fn} takes no keyword arguments here")
        span = _span(t)
        if fn == "sum":
            axis, keep = kw.get("axis"), kw.get("keepdims", "False")
            if axis is None:
                return Op("axis_sum", (self.node(args[0]),), None, span=span)  # every entry: a number
            if axis not in ("0", "1"):
                self.fail(t, "np.sum reads with axis=0 (down the columns) or axis=1 (along the rows)")
            if keep != "True" and axis == "1":
                self.fail(t, "np.sum(..., axis=1) without keepdims=True is a 1-D array, which NumPy lines up as a "
                             "row: write keepdims=True")
            return Op("axis_sum", (self.node(args[0]),), int(axis), span=span)
        if fn == "transpose":
            return Op("T", (self.node(args[0]),), span=span)
        a = self.node(args[0])
        if fn == "power":
            n = self._int(args[1], allow_L=False)
            if n is None:
                self.fail(args[1], "np.power takes a whole-number exponent here")
            return Op("epow", (a,), check_exponent(n, _span(args[1])), span=span)
        op = {"dot": "dot", "multiply": "had", "divide": "div"}[fn]
        return Op(op, (a, self.node(args[1])), span=span)
