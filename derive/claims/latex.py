"""Claims written in LaTeX, read by a Lark grammar (derive/claims/latex.lark) into the claim tree.

The grammar is LALR, so a parse takes time linear in the claim; the source's size and
bracket depth are checked before it runs and the tree's depth after, so the recursive
conversion below never meets a tree it cannot walk.

Superscripts: on a name that has a layer (a z w b W A D \\delta), ^{(2)} is the layer in
every notation; in a spec whose notation writes the layer bare (Nielsen's a^l_j), ^2 is
the layer too and a power is written on parentheses, (a^2_0)^2. Elsewhere ^2 is a power.
^T, ^{T}, ^\\top and ^{\\top} transpose; ^L (or ^{(L)}) is the output layer.
Subscripts are indices: one character each (w_{01} is w_{0,1}), or separated by commas
(w_{10,1}); letters are indices bound by \\sum_{j=0}^{1} with explicit bounds.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from derive.claims.tree import (LATEX_HINTS, LATEX_NAMES, MAX_DEPTH, MAX_NODES, MAX_SUM_RANGE, ClaimError, Leaf, Node,
                                Num, Op, Shape, check_exponent, check_layer, check_size, fold_power, number, precheck)
from derive.tables.activations import ACTIVATIONS

# a function's name in a claim -> the activation it applies (None: the spec's own sigma), or diag
_FUNCTIONS = ({"sigma": None} | {alias: name for name, act in ACTIVATIONS.items() for alias in (name, *act.claim_names)}
              | {"diag": "diag"})
_LAYERED = {latex: kind for kind, latex in LATEX_NAMES.items()}  # \delta -> delta, a -> a, ...


@cache
def parser() -> Lark:
    grammar = resources.files("derive.claims").joinpath("latex.lark").read_text(encoding="utf-8")
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True)


def _span(t) -> tuple[int, int] | None:
    if isinstance(t, Token):
        return (t.start_pos, t.end_pos)
    meta = getattr(t, "meta", None)
    if meta is None or getattr(meta, "empty", True):
        return None
    return (meta.start_pos, meta.end_pos)


def _bare_number(t) -> bool:
    """A number with nothing on it (2, {2}): two of them side by side are shown as one number."""
    while isinstance(t, Tree) and t.data == "group":
        t = t.children[0]
    return isinstance(t, Tree) and t.data == "number"


class LatexReader:
    def __init__(self, source: str, shape: Shape):
        self.source = source
        self.shape = shape
        self.bare = shape.style == "bare"

    def fail(self, t, message: str):
        raise ClaimError(message, _span(t))

    def snippet(self, t) -> str:
        s = _span(t)
        return self.source[s[0]:s[1]] if s else ""

    # -- parsing -----------------------------------------------------------------------
    def read(self) -> tuple[Node | None, Node]:
        """(the left-hand side, if the LaTeX is an equation; the right-hand side)."""
        precheck(self.source, LATEX_HINTS)
        try:
            tree = parser().parse(self.source)
        except UnexpectedCharacters as exc:
            pos = exc.pos_in_stream
            rest = self.source[pos:]
            if rest.startswith("\\"):
                word = "\\" + "".join(ch for ch in rest[1:].split(" ")[0] if ch.isalpha())[:20]
                raise ClaimError(f"unknown or misplaced '{word}'", (pos, pos + len(word))) from None
            raise ClaimError(f"unexpected '{rest[:1]}'", (pos, pos + 1)) from None
        except (UnexpectedToken, UnexpectedEOF) as exc:
            tok = getattr(exc, "token", None)
            if tok is None or tok.type == "$END":
                n = len(self.source)
                raise ClaimError("the formula ends too early (a missing operand, '}' or ')'?)", (n, n)) from None
            expected = set(getattr(exc, "expected", ()) or ())
            hint = ""
            if "LPAR" in expected and not expected & {"LETTER", "NUMBER", "LBRACE"}:
                hint = "; a function takes its argument in parentheses, \\sigma(z)"
            raise ClaimError(f"unexpected '{tok.value}'{hint}", (tok.start_pos, tok.end_pos)) from None
        except LarkError as exc:  # pragma: no cover - any other parser complaint, still one line
            raise ClaimError(f"cannot be read: {str(exc).splitlines()[0]}", (0, 0)) from None
        self._check_tree(tree)
        parts = [c for c in tree.children if not (isinstance(c, Token) and c.type == "EQUALS")]
        if len(parts) == 2:
            return check_size(self.conv(parts[0])), check_size(self.conv(parts[1]))
        return None, check_size(self.conv(parts[0]))

    def _check_tree(self, tree: Tree) -> None:
        stack, count = [(tree, 0)], 0
        while stack:
            t, d = stack.pop()
            count += 1
            if d > MAX_DEPTH:
                self.fail(t, f"the claim is nested more than {MAX_DEPTH} deep")
            if count > 4 * MAX_NODES:
                raise ClaimError(f"the claim has more than {MAX_NODES} parts", (0, 0))
            if isinstance(t, Tree):
                stack.extend((c, d + 1) for c in t.children)

    # -- the tree ------------------------------------------------------------------------
    def conv(self, t) -> Node:
        span = _span(t)
        data = t.data
        kids = [c for c in t.children]
        if data == "number":
            return Num(self._number(kids[0]), span=span)
        if data == "letter":
            return self.named(kids[0], [], t)
        if data in ("paren", "group"):
            inner = kids[1] if data == "paren" else kids[0]
            return self.conv(inner)
        if data in ("add", "sub"):
            return Op(data, (self.conv(kids[0]), self.conv(kids[1])), span=span)
        if data == "neg":
            inner = self.conv(kids[0])
            return Num(-inner.value, span=span) if isinstance(inner, Num) else Op("neg", (inner,), span=span)
        if data == "pos":
            return self.conv(kids[0])
        if data in ("dot", "had"):
            return Op(data, (self.conv(kids[0]), self.conv(kids[2])), span=span)
        if data == "implicit":
            last = kids[0]
            while isinstance(last, Tree) and last.data == "implicit":
                last = last.children[1]
            if _bare_number(last) and _bare_number(kids[1]):  # "1\,000" and "2 3" show as one number, not a product
                self.fail(t, f"'{self.snippet(t)}': two numbers side by side read as one number or as a product; "
                             "write the digits together, or \\cdot between them for a product")
            return Op("dot", (self.conv(kids[0]), self.conv(kids[1])), span=span)
        if data in ("div", "frac"):
            a, b = (kids[0], kids[1]) if data == "div" else (kids[1], kids[2])
            return Op("div", (self.conv(a), self.conv(b)), span=span)
        if data == "frac_digits":  # \frac12
            tok = kids[1]
            a, b = (tok.start_pos, tok.start_pos + 1), (tok.start_pos + 1, tok.end_pos)
            return Op("div", (Num(number(tok.value[0], a), span=a), Num(number(tok.value[1], b), span=b)), span=span)
        if data == "func":
            return self.func(t, kids)
        if data == "partial":
            return Op("partial", (self.conv(kids[1]),), span=span)
        if data == "nabla":
            return self.nabla(t, kids)
        if data == "hat":
            if kids[1].value != "y":
                self.fail(t, "\\hat{y} is the output; no other letter takes a hat")
            return Leaf("a", self.shape.L, span=span)
        if data == "sum":
            return self.sum(t, kids)
        if data == "ones":
            return Leaf("ones", None, span=span)
        if data in ("subscript", "superscript"):
            scripts = []
            base = t
            while isinstance(base, Tree) and base.data in ("subscript", "superscript"):
                scripts.append((base.data, base.children[1]))
                base = base.children[0]
            scripts.reverse()
            if isinstance(base, Tree) and base.data == "letter":
                return self.named(base.children[0], scripts, t)
            return self.scripted(self.conv(base), scripts, t)
        self.fail(t, f"'{self.snippet(t)}' cannot stand here")  # pragma: no cover - the grammar makes no other trees

    def _number(self, tok: Token):
        if "." in tok.value and len(tok.value.split(".")[1]) == 0:
            self.fail(tok, f"{tok.value} is not a number")
        return number(tok.value, _span(tok))

    # -- names, scripts ----------------------------------------------------------------------
    def named(self, tok: Token, scripts, whole) -> Node:
        span = _span(whole)
        name = tok.value
        subs = [s for k, s in scripts if k == "subscript"]
        sups = [s for k, s in scripts if k == "superscript"]
        if len(subs) > 1:
            self.fail(whole, "double subscript: write the indices together, w_{01} or w_{0,1}")
        if len(sups) > 1:
            self.fail(whole, "double superscript: put the name in parentheses first, (a_0^{(2)})^2")
        sub = subs[0] if subs else None
        sup = sups[0] if sups else None
        if name in _LAYERED:
            kind = _LAYERED[name]
            layer, transpose, power = None, False, None
            if sup is not None:
                layer, transpose, power = self._layered_sup(sup, kind)
            if layer is None:
                shown = self.snippet(whole)
                if power is not None and not self.bare:
                    written = "\\delta" if kind == "delta" else name
                    self.fail(whole, f"'{shown}': in this notation the layer is written in parentheses, as in "
                                     f"{written}^{{(2)}}; a bare superscript is a power "
                                     "(for Nielsen's a^l_j set layers = \"bare\" in the claims file)")
                self.fail(whole, f"'{shown}' needs a layer, as in {name}^{{(2)}}" if not self.bare
                          else f"'{shown}' needs a layer, as in {name}^2")
            check_layer(kind, layer, self.shape, span)
            index = None
            if sub is not None:
                if kind in ("W", "A", "D"):
                    self.fail(sub, f"{name} is a whole matrix; one weight is w^{{(l)}}_{{jk}}, one activation a^{{(l)}}_j")
                index = self._index(sub)
                want = 2 if kind == "w" else 1
                if len(index) != want:
                    self.fail(sub, f"{name} takes {want} ind{'ices' if want == 2 else 'ex'}, not {len(index)}"
                              + (" (write w_{jk} or w_{j,k})" if kind == "w" else ""))
            node: Node = Leaf(kind, layer, index, span=span)
        elif name in ("x", "y", "T"):
            index = None
            if sub is not None:
                index = self._index(sub)
                if len(index) != 1:
                    self.fail(sub, f"{name} takes one index")
            kind, layer = ("a", 0) if name == "x" else ("y", None)
            node = Leaf(kind, layer, index, alias=name, span=span)
            transpose, power = False, None
            if sup is not None:
                transpose, power = self._plain_sup(sup)
        elif name == "C":
            if sub is not None:
                self.fail(sub, "C takes no index")
            node = Leaf("C", None, span=span)
            transpose, power = False, None
            if sup is not None:
                transpose, power = self._plain_sup(sup)
        elif name == "L":
            self.fail(whole, "L is the number of the output layer; it stands in a superscript, as in \\delta^L")
        else:
            self.fail(tok, f"unknown symbol '{name}'; the vocabulary is a z w b W A D \\delta x y T C, "
                           "\\sigma, \\sigma', \\nabla_a C, \\operatorname{diag}")
        if power is not None:
            node = Op("pow", (node,), power, span=span)
        if transpose:
            node = Op("T", (node,), span=span)
        return node

    def _layered_sup(self, sup, kind):
        """(layer, transpose, power) from the superscript on a name that has a layer."""
        data = sup.data
        if data == "top":
            return None, True, None
        if data == "letter":
            v = sup.children[0].value
            if v == "T":
                return None, True, None
            if v == "L":
                return self.shape.L, False, None
            self.fail(sup, f"superscript {v}: only T (transpose), L (the output layer) or a number stand there")
        if data == "number":
            n = int(sup.children[0].value)
            return (n, False, None) if self.bare else (None, False, n)
        items = [c for c in sup.children]
        if len(items) != 1:
            self.fail(sup, "a superscript holds one thing")
        e = items[0]
        if e.data == "paren":
            layer = self._int(e.children[1], allow_L=True)
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, False, None
        if e.data == "implicit" and e.children[0].data == "paren" and e.children[1].data == "letter" \
                and e.children[1].children[0].value == "T":
            layer = self._int(e.children[0].children[1], allow_L=True)
            if layer is None:
                self.fail(e, f"'{self.snippet(e)}' is not a layer number")
            return layer, True, None
        if e.data == "letter" and e.children[0].value == "T":
            return None, True, None
        if self.bare:
            layer = self._int(e, allow_L=True)
            if layer is not None:
                return layer, False, None
        power = self._int(e, allow_L=False)
        if power is None:
            self.fail(sup, f"superscript '{self.snippet(sup)}' is neither a layer, a transpose nor a whole-number power")
        return None, False, check_exponent(power, _span(sup))

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
        power = self._int(sup, allow_L=False)
        if power is None:
            self.fail(sup, f"superscript '{self.snippet(sup)}' is neither a transpose nor a whole-number power")
        return False, check_exponent(power, _span(sup))

    def scripted(self, node: Node, scripts, whole) -> Node:
        """Superscripts on a parenthesized or other unnamed base: transposes and powers."""
        for kind, s in scripts:
            if kind == "subscript":
                self.fail(s, "a subscript indexes a named quantity (a_0, w_{01}); it cannot stand here")
            transpose, power = self._plain_sup(s)
            span = (_span(whole)[0], _span(s)[1])
            if transpose:
                node = Op("T", (node,), span=span)
            elif isinstance(node, Num):
                node = Num(fold_power(node.value, power, span), span=span)
            else:
                node = Op("pow", (node,), power, span=span)
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
            return self.shape.L if allow_L and t.children[0].value == "L" else None
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
            return ((sub.children[0].value, 0),)
        if d != "scriptgroup":
            self.fail(sub, "an index is a number or a letter bound by \\sum")
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
                    else:
                        out.append((p.children[0].value, 0))
                return tuple(out)
        return tuple(self._index_item(e) for e in items)

    def _chain(self, t):
        """w_{j0}: letters and digit strings side by side, each character one index."""
        if t.data in ("number", "letter"):
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
        if e.data == "letter":
            return (e.children[0].value, 0)
        if e.data in ("add", "sub") and e.children[0].data == "letter" and e.children[1].data == "number":
            off = int(number(e.children[1].children[0].value, _span(e)))
            return (e.children[0].children[0].value, off if e.data == "add" else -off)
        self.fail(e, f"'{self.snippet(e)}' is not an index (a number, a letter, or a letter plus a number)")

    # -- functions, \nabla, \sum ----------------------------------------------------------
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
        inner = self.conv(arg)
        name = _FUNCTIONS[word]
        if name == "diag":
            if prime:
                self.fail(t, "diag has no derivative here")
            return Op("diag", (inner,), span=_span(t))
        return Op("sigma_prime" if prime else "sigma", (inner,), name, span=_span(t))

    def nabla(self, t, kids) -> Node:
        script, letter = kids[1], kids[2]
        ok_sub = (script.data == "letter" and script.children[0].value == "a") or (
            script.data == "scriptgroup" and len(script.children) == 1 and self._is_output_a(script.children[0]))
        if not ok_sub or letter.value != "C":
            self.fail(t, "\\nabla_a C is the gradient of the cost with respect to the outputs; no other \\nabla is known")
        return Leaf("g", None, span=_span(t))

    def _is_output_a(self, e) -> bool:
        if e.data == "letter":
            return e.children[0].value == "a"
        if e.data == "superscript" and e.children[0].data == "letter" and e.children[0].children[0].value == "a":
            node = self.named(e.children[0].children[0], [("superscript", e.children[1])], e)
            return isinstance(node, Leaf) and node.layer == self.shape.L
        return False

    def sum(self, t, kids) -> Node:
        var = kids[1].value
        lo = self._int(kids[2], allow_L=True)
        hi = self._int(kids[3], allow_L=True)
        if lo is None or hi is None:
            self.fail(t, "a \\sum needs explicit whole-number bounds, as in \\sum_{j=0}^{1}")
        if hi < lo:
            self.fail(t, f"\\sum from {lo} to {hi} has no terms")
        if hi - lo + 1 > MAX_SUM_RANGE:
            self.fail(t, f"\\sum of {hi - lo + 1} terms; at most {MAX_SUM_RANGE}")
        return Op("sum", (self.conv(kids[4]),), (var, lo, hi), span=_span(t))


def read_latex(source: str, shape: Shape) -> tuple[Node | None, Node]:
    """(left-hand side or None, right-hand side) of a LaTeX claim, or ClaimError with the span at fault."""
    return LatexReader(source, shape).read()
