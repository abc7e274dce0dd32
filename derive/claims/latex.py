"""Claims written in LaTeX, read by a Lark grammar (derive/claims/latex.lark) into the claim tree.

The grammar is LALR, so a parse takes time linear in the claim; the source's size and
bracket depth are checked before it runs and the tree's depth after, so the recursive
conversion below never meets a tree it cannot walk.

Superscripts: on a name that has a layer (a z w b W A D \\delta), ^{(2)} is the layer in
every notation; in a spec whose notation writes the layer bare (Nielsen's a^l_j), ^2 is
the layer too and a power is written on parentheses, (a^2_0)^2. Elsewhere ^2 is a power.
^T, ^{T}, ^\\top and ^{\\top} transpose; ^L (or ^{(L)}) is the output layer.
Subscripts are indices: one character each (w_{01} is w_{0,1}), or separated by commas
(w_{10,1}); letters are indices bound by a \\sum, or left free (checked for every value).

The names, the layer marks, the operators' meanings and which binds tighter come from
the notation (derive.tables.reading): Bishop's a_j is a pre-activation, Ng's * is
elementwise, Wikipedia's \\cdot binds tighter than its \\circ. Where the notation leaves
a formula with two readings (an elementwise and a matrix product side by side with no
rule between them, a letter two quantities share), the reader refuses it and names both.
"""

from __future__ import annotations

import re
from dataclasses import replace
from functools import cache
from importlib import resources

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedToken

from derive.claims.tree import (LATEX_HINTS, LATEX_NAMES, LAYERED, MAX_DEPTH, MAX_NODES, ClaimError, Leaf, Node, Num,
                                Op, Shape, check_layer, check_size, number, precheck)
from derive.claims.latex_parts import Calls, Scripts, _Fn, _span
from derive.tables.reading import Reading

_LAYERED = {latex: kind for kind, latex in LATEX_NAMES.items()}  # \delta -> delta, a -> a, ...


@cache
def parser(names: tuple[str, ...] = ()) -> Lark:
    """The grammar, with a notation's names of more than one letter (net, dW) as single tokens."""
    grammar = resources.files("derive.claims").joinpath("latex.lark").read_text(encoding="utf-8")
    words = " | ".join(f'"{n}"' for n in sorted(names, key=lambda n: (-len(n), n)))
    grammar += f"\nNAME.3: {words}\n" if words else "\nNAME: /(?!)x/\n"
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True)


def _words(reading: Reading) -> tuple[str, ...]:
    """A notation's plain names of two letters or more, and its gradients' names (dW, dZ, ...)."""
    plain = [n for n in reading.names() if len(n) > 1 and n.isalpha()]
    if reading.gradient_prefix:
        plain += [reading.gradient_prefix + n for n in reading.names() if n.isalpha()]
    return tuple(sorted(set(plain)))


# typography a source prints and a claim ignores: \boldsymbol{W} is W (\mathbf{1} stays the ones vector)
_TYPOGRAPHY = re.compile(r"\\(?:boldsymbol|bm|mathbf|pmb|mathbfit|mathrm|vec)\s*(?:\{\s*(\\?[A-Za-z]+)\s*\}|(\\[A-Za-z]+))")


_TEXT = re.compile(r"\\(?:text|textrm|textit|texttt|mathrm|mathit|mathtt|operatorname)\s*\{\s*(np\.[a-z]+|[A-Za-z]+)\s*\}")


def strip_typography(source: str, names=()) -> str:
    """The source with bold and upright wrappers removed, spaces in their place so columns stay put; a name of
    the notation in \\text{} or \\mathrm{} (Wikipedia's \\text{net}_j) is the name."""
    def plain(m: re.Match) -> str:
        if m.group(1) not in names and not m.group(1).startswith("np."):
            return m.group(0)
        return m.group(1) + " " * (len(m.group(0)) - len(m.group(1)))

    source = _TEXT.sub(plain, source)

    def keep(m: re.Match) -> str:
        inner = m.group(1) or m.group(2)
        if inner == "1" or (m.group(0).startswith("\\mathrm") and len(inner) > 1):
            return m.group(0)
        return inner + " " * (len(m.group(0)) - len(inner))  # d\\mathbf{W} is dW: the name stays where it began
    return _TYPOGRAPHY.sub(keep, source)


def _bare_number(t) -> bool:
    """A number with nothing on it (2, {2}): two of them side by side are shown as one number."""
    while isinstance(t, Tree) and t.data == "group":
        t = t.children[0]
    return isinstance(t, Tree) and t.data == "number"


_PRODUCT_OPS = {"*": "*", "\\cdot": r"\cdot", "\\times": r"\times", "\\odot": r"\odot", "\\circ": r"\circ"}


class LatexReader(Scripts, Calls):
    def __init__(self, source: str, shape: Shape, variables: frozenset = frozenset()):
        self.variables = variables  # a sequence's running names (Goodfellow's g)
        self.original = source
        self.shape = shape
        self.reading = shape.notation
        self.source = strip_typography(source, [n for n in self.reading.names() if len(n) > 1 and n.isalpha()])
        self.bare = self.reading.layers == "bare"
        self.names = self.reading.names()
        self.fresh = 0

    def fail(self, t, message: str):
        raise ClaimError(message, _span(t))

    def snippet(self, t) -> str:
        s = _span(t)
        return self.original[s[0]:s[1]] if s else ""

    # -- parsing -----------------------------------------------------------------------
    def read(self) -> tuple[Node | None, Node]:
        """(the left-hand side, if the LaTeX is an equation; the right-hand side)."""
        precheck(self.original, LATEX_HINTS)
        try:
            tree = parser(_words(self.reading)).parse(self.source)
        except UnexpectedCharacters as exc:
            pos = exc.pos_in_stream
            rest = self.original[pos:]
            if rest.startswith("\\"):
                m = re.match(r"\\([A-Za-z]+|.)", rest)
                word = m.group(0) if m else "\\"
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
        parts = self.parts(tree)
        if len(parts) == 2:
            return check_size(self.node(parts[0])), check_size(self.node(parts[1]))
        return None, check_size(self.node(parts[0]))

    def parts(self, tree: Tree) -> list:
        """The sides of the equation: two at most, but for a sequence's step, name \\leftarrow quantity = value,
        and for a chain (Bishop's delta_j = dE_n/da_j = ...), whose sides read_claim checks one by one."""
        equals = [c for c in tree.children if isinstance(c, Token) and c.type == "EQUALS"]
        parts = [c for c in tree.children if not (isinstance(c, Token) and c.type == "EQUALS")]
        if len(parts) > 2 and not (len(parts) == 3 and equals[0].value == "\\leftarrow" and self.variables):
            tok = equals[1]
            raise ClaimError(f"a chain of equalities: each side after the first is checked against the first "
                             f"(at '{tok.value}')", (tok.start_pos, tok.end_pos), sides=[_span(p) for p in parts])
        return parts

    def statement(self) -> tuple[str | None, Node | None, Node]:
        """A step of a sequence: (the running name it sets or None, the quantity it names or None, its value)."""
        precheck(self.original, LATEX_HINTS)
        try:
            tree = parser(_words(self.reading)).parse(self.source)
        except LarkError:
            return (None, *self.read())
        parts = self.parts(tree)
        self._check_tree(tree)
        target = None
        equals = [c for c in tree.children if isinstance(c, Token) and c.type == "EQUALS"]
        if equals and equals[0].value == "\\leftarrow":
            first = parts[0]
            if not (isinstance(first, Tree) and first.data == "letter" and first.children[0].value in self.variables):
                self.fail(first, "the left of \\leftarrow is the running name the steps carry (Goodfellow's g)")
            target, parts = first.children[0].value, parts[1:]
        if len(parts) == 2:
            return target, check_size(self.node(parts[0])), check_size(self.node(parts[1]))
        return target, None, check_size(self.node(parts[0]))

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

    def node(self, t) -> Node:
        """conv, refusing a function's name that has no argument."""
        out = self.conv(t)
        if isinstance(out, _Fn):
            self.fail(t, f"'{self.snippet(t)}' is the activation function; write it with its argument, "
                         f"{out.name}(z) or {out.name}'(z)")
        return out

    # -- the tree ------------------------------------------------------------------------
    def conv(self, t):
        span = _span(t)
        data = t.data
        kids = list(t.children)
        if data == "number":
            return Num(self._number(kids[0]), span=span)
        if data == "letter":
            return self.named(kids[0], [], t)
        if data in ("paren", "group"):
            inner = kids[1] if data == "paren" else kids[0]
            return self.conv(inner)
        if data in ("add", "sub"):
            return Op(data, (self.node(kids[0]), self.node(kids[1])), span=span)
        if data == "neg":
            inner = self.node(kids[0])
            return Num(-inner.value, span=span) if isinstance(inner, Num) else Op("neg", (inner,), span=span)
        if data == "pos":
            return self.node(kids[0])
        if data in ("binop", "div"):
            return self.products(t)
        if data == "implicit":
            return self.implicit(t)
        if data == "frac":
            logistic = self._logistic(kids[1], kids[2], t)
            if logistic is not None:
                return logistic
            return Op("div", (self.node(kids[1]), self.node(kids[2])), span=span)
        if data == "frac_digits":  # \frac12
            tok = kids[1]
            a, b = (tok.start_pos, tok.start_pos + 1), (tok.start_pos + 1, tok.end_pos)
            return Op("div", (Num(number(tok.value[0], a), span=a), Num(number(tok.value[1], b), span=b)), span=span)
        if data == "func":
            return self.func(t, kids)
        if data == "partial":
            return Op("partial", (self.node(kids[1]),), span=span)
        if data == "nabla":
            return self.nabla(t, kids)
        if data == "hat":
            name = f"\\hat{{{kids[-1].value}}}" if kids[0].value.endswith("hat") else f"\\mathcal{{{kids[-1].value}}}"
            return self.named(Token("NAME", name, start_pos=span[0], end_pos=span[1]), [], t)
        if data in ("sum", "sum_over", "sum_bare"):
            return self.sum(t, kids)
        if data == "ones":
            return Leaf("ones", None, span=span)
        if data == "npcall":
            return self.npcall(t, kids)
        if data in ("subscript", "superscript", "primed"):
            scripts = []
            base = t
            while isinstance(base, Tree) and base.data in ("subscript", "superscript", "primed"):
                scripts.append((base.data, base.children[1] if base.data != "primed" else None))
                base = base.children[0]
            scripts.reverse()
            if isinstance(base, Tree) and base.data == "letter":
                return self.named(base.children[0], scripts, t)
            inner = self.conv(base)
            if isinstance(inner, _Fn) and [k for k, _ in scripts] == ["primed"]:  # (f^l)': f' at layer l's z
                return self.apply(_Fn(inner.name, True, inner.layer, t), None, t)
            if isinstance(inner, _Fn):
                self.fail(t, f"'{self.snippet(t)}': write the activation's derivative as f'(z) or (f^l)'")
            return self.scripted(inner, scripts, t)
        self.fail(t, f"'{self.snippet(t)}' cannot stand here")  # pragma: no cover - the grammar makes no other trees

    def _logistic(self, num, den, t):
        """\\frac{1}{1 + e^{-x}}: the logistic sigmoid of x (RHW's eq. 2), the only place e stands for exp."""
        def bare(x):
            while isinstance(x, Tree) and x.data in ("group", "paren"):
                x = x.children[0] if x.data == "group" else x.children[1]
            return x

        num, den = bare(num), bare(den)
        if not (isinstance(num, Tree) and num.data == "number" and num.children[0].value == "1"):
            return None
        if not (isinstance(den, Tree) and den.data == "add" and bare(den.children[0]).data == "number"
                and bare(den.children[0]).children[0].value == "1"):
            return None
        power = bare(den.children[1])
        if not (isinstance(power, Tree) and power.data == "superscript" and power.children[0].data == "letter"
                and power.children[0].children[0].value == "e" and "e" not in self.names):
            return None
        exponent = power.children[1]
        exponent = exponent.children[0] if exponent.data == "scriptgroup" and len(exponent.children) == 1 else exponent
        if not (isinstance(exponent, Tree) and exponent.data == "neg"):
            return None
        return Op("sigma", (self.node(exponent.children[0]),), "sigmoid", span=_span(t))

    def _number(self, tok: Token):
        if "." in tok.value and len(tok.value.split(".")[1]) == 0:
            self.fail(tok, f"{tok.value} is not a number")
        return number(tok.value, _span(tok))

    # -- products: what each operator means in the notation, and which binds tighter ----------
    def products(self, t) -> Node:
        """A chain of \\cdot, \\odot, *, / ... at one level, grouped as the notation says, or refused."""
        operands, ops = [], []
        node = t
        while isinstance(node, Tree) and node.data in ("binop", "div"):
            if node.data == "binop":
                ops.append(node.children[1])
                operands.append(node.children[2])
            else:
                ops.append("/")
                operands.append(node.children[1])
            node = node.children[0]
        operands.append(node)
        operands.reverse()
        ops.reverse()
        for i, op in enumerate(ops):
            after = operands[i + 1]
            if op == "/" and isinstance(after, Tree) and after.data == "implicit":
                a, b = self.snippet(operands[i]), self.snippet(after)
                self.fail(t, f"'{a}/{b}' has two readings: ({a}/{b.split()[0] if ' ' in b else b[:1]}) times the rest, "
                             f"or {a} over all of {b}; write \\frac{{{a}}}{{...}} or parentheses")
        meanings = []
        for op in ops:
            if op == "/":
                meanings.append("div")
                continue
            written = _PRODUCT_OPS[op.value]
            meaning = self.reading.meaning(written)
            if meaning is None:
                defined = ", ".join(f"{o} ({m})" for o, m in self.reading.operators if o != "juxtaposition")
                self.fail(op, f"'{written}' has no meaning in this notation; it defines {defined}")
            meanings.append("had" if meaning == "hadamard" else "dot")
        kinds = {m for m in meanings if m != "div"}
        tight = set()
        right = False
        if kinds == {"had", "dot"}:
            tight = {i for i, op in enumerate(ops) if op != "/" and _PRODUCT_OPS[op.value] in self.reading.tighter}
            tight_kinds = {meanings[i] for i in tight}
            loose_kinds = {meanings[i] for i in range(len(ops)) if i not in tight and meanings[i] != "div"}
            if self.reading.mixed == "right" and not tight:
                right = True  # Wikipedia's (f^1)' o (W^2)^T . (f^2)' o ... reads from the right
            elif not tight or tight_kinds & loose_kinds or len(tight_kinds) != 1:
                self._ambiguous(t, operands, ops, meanings)
        nodes = [self.node(o) for o in operands]
        flags = [i in tight for i in range(len(ops))]
        i = 0
        while i < len(meanings):  # the tighter operators first, left to right
            if flags[i]:
                nodes[i:i + 2] = [Op(meanings[i], (nodes[i], nodes[i + 1]), span=_join(nodes[i], nodes[i + 1]))]
                del meanings[i], flags[i]
            else:
                i += 1
        if right:
            out = nodes[-1]
            for meaning, prev in zip(reversed(meanings), reversed(nodes[:-1])):
                out = Op(meaning, (prev, out), span=_join(prev, out))
        else:
            out = nodes[0]
            for meaning, nxt in zip(meanings, nodes[1:]):  # then the rest, left to right
                out = _ratio(out, nxt) if meaning == "div" else Op(meaning, (out, nxt), span=_join(out, nxt))
        return replace(out, span=_span(t)) if isinstance(out, Op) and out.op != "div" else out

    def _ambiguous(self, t, operands, ops, meanings):
        i = next(k for k in range(1, len(meanings)) if {meanings[k - 1], meanings[k]} == {"had", "dot"}) \
            if any({meanings[k - 1], meanings[k]} == {"had", "dot"} for k in range(1, len(meanings))) else 1
        a, b, c = (self.snippet(operands[i - 1]), self.snippet(operands[i]), self.snippet(operands[i + 1]))
        o1, o2 = (_PRODUCT_OPS.get(getattr(ops[i - 1], "value", "/"), "/"), _PRODUCT_OPS.get(getattr(ops[i], "value", "/"), "/"))
        self.fail(t, f"'{self.snippet(t)}' has two readings: ({a} {o1} {b}) {o2} {c} or {a} {o1} ({b} {o2} {c}), and an "
                     "elementwise and a matrix product do not associate; write the parentheses you mean "
                     "(or give the notation's tighter = [...])")

    def implicit(self, t) -> Node:
        """Juxtaposition: a product (the tightest), a function applied to its argument, or Delta w."""
        factors = []
        node = t
        while isinstance(node, Tree) and node.data == "implicit":
            factors.append(node.children[1])
            node = node.children[0]
        factors.append(node)
        factors.reverse()
        for a, b in zip(factors, factors[1:]):
            if _bare_number(a) and _bare_number(b):  # "1\,000" and "2 3" show as one number, not a product
                self.fail(t, f"'{self.snippet(t)}': two numbers side by side read as one number or as a product; "
                             "write the digits together, or \\cdot between them for a product")
        out: list[Node] = []
        i = 0
        while i < len(factors):
            f = self.conv(factors[i])
            if isinstance(f, _Fn):
                if i + 1 >= len(factors) or factors[i + 1].data != "paren":
                    self.fail(factors[i], f"'{self.snippet(factors[i])}' is the activation function; write its "
                                          "argument in parentheses right after it")
                f = self.apply(f, self.node(factors[i + 1]), Tree("app", [factors[i], factors[i + 1]],
                                                                   meta=_meta(factors[i], factors[i + 1])))
                i += 1
            elif isinstance(f, Leaf) and f.kind == "Delta":
                if i + 1 >= len(factors):
                    self.fail(factors[i], "\\Delta names a weight's change: \\Delta w_{ji}")
                w = self.node(factors[i + 1])
                if not (isinstance(w, Leaf) and w.kind in ("w", "W", "b")):
                    self.fail(factors[i + 1], "\\Delta names a weight's change: \\Delta w_{ji}")
                f = Op("change", (w,), f.example, span=_join(f, w))
                i += 1
            out.append(f)
            i += 1
        node_out = out[0]
        for nxt in out[1:]:
            node_out = Op("dot", (node_out, nxt), span=_join(node_out, nxt))
        if isinstance(node_out, Op) and len(out) > 1:
            node_out = replace(node_out, span=_span(t))  # as written, with a closing parenthesis the factors drop
        return node_out

    # -- names, scripts ----------------------------------------------------------------------
    def _kind_of(self, name: str, tok) -> tuple[str, str | None]:
        """(quantity, gradient scale or None) of a written name, or a ClaimError naming what it could be."""
        r = self.reading
        if name in self.variables:
            return "var", None
        if name in r.functions or (name == "\\sigma"):
            return "fn", None
        kind = self.names.get(name)
        if kind is None and r.gradient_prefix and name.startswith(r.gradient_prefix) and len(name) > 1:
            inner = self.names.get(name[len(r.gradient_prefix):])
            if inner in ("z", "a", "w", "W", "b", "x", "output"):
                scale = "batch" if inner in ("w", "W", "b") else r.gradient_scale
                return "grad:" + inner, scale
        if kind is None and name == "\\Delta":
            return "Delta", None
        if kind is None and name in r.examples_count:
            return "count", None
        if kind is None and "a" in r.activation and name in ("A", "D") and not r.capitals:
            return name, None
        if kind is None and name == "L":
            self.fail(tok, "L is the number of the output layer; it stands in a superscript, as in \\delta^L")
        if kind is None:
            known = ", ".join(sorted(self.names)) + (", A, D" if "a" in r.activation and not r.capitals else "")
            self.fail(tok, f"unknown symbol '{name}'; this notation's names are {known}, "
                           f"{', '.join(r.functions)} (the activation), \\nabla, \\frac{{\\partial ...}}{{\\partial ...}}")
        if kind.startswith("ambiguous:"):
            readings = kind.split(":")[1].split(",")
            self.fail(tok, f"'{name}' has two readings in this notation: " + " or ".join(_WHAT[q] for q in readings)
                      + "; set the one you mean in the claims file's [notation] table (for example "
                      + " / ".join(f'{_FIELD_OF[q]} = ["{name}"]' for q in readings) + ")")
        return kind, None

    def named(self, tok: Token, scripts, whole):
        span = _span(whole)
        name = tok.value
        kind, scale = self._kind_of(name, tok)
        subs = [s for k, s in scripts if k == "subscript"]
        sups = [s for k, s in scripts if k == "superscript"]
        primes = sum(k == "primed" for k, _ in scripts)
        if len(subs) > 1:
            self.fail(whole, "double subscript: write the indices together, w_{01} or w_{0,1}")
        if len(sups) > 1:
            self.fail(whole, "double superscript: put the name in parentheses first, (a_0^{(2)})^2")
        sub = subs[0] if subs else None
        sup = sups[0] if sups else None
        if kind == "fn":
            layer, prime = None, primes > 0
            if sup is not None:
                layer, transpose, power, p2 = self._layered_sup(sup, "a")
                if transpose or power is not None:
                    self.fail(sup, f"'{self.snippet(whole)}': a function's superscript is its layer or a prime")
                prime = prime or p2
            return _Fn(name, prime, layer, whole)
        if primes:
            self.fail(whole, f"'{self.snippet(whole)}': a prime belongs on the activation function, f'(z)")
        if kind == "var":
            if subs or primes:
                self.fail(whole, f"{name} is the running name of the steps; it takes no index or layer")
            node = Leaf("var", None, alias=name, span=span)
            if sup is not None:
                transpose, power = self._plain_sup(sup)
                node = Op("T", (node,), span=span) if transpose else Op("epow", (node,), power, span=span)
            return node
        if kind == "count":
            if sub is not None or sup is not None:
                self.fail(whole, f"{name} is the number of examples; it takes no index")
            return Leaf("count", None, span=span)
        if kind == "Delta":
            example = None
            if sub is not None:
                example = self._example_only(sub)
            return Leaf("Delta", None, example=example, span=span)
        grad = kind.startswith("grad:")
        base = kind.split(":")[1] if grad else kind
        if base == "x":
            base_kind, fixed = "a", 0
        elif base == "output":
            base_kind, fixed = "a", self.shape.L
        else:
            base_kind, fixed = base, None
        layered = base_kind in LAYERED or base_kind in ("w", "W")
        layer, transpose, power = fixed, False, None
        if sup is not None:
            if layered and fixed is None:
                layer, transpose, power, prime = self._layered_sup(sup, base_kind)
                if prime:
                    self.fail(sup, f"'{self.snippet(whole)}': a prime belongs on the activation function")
            else:
                transpose, power = self._plain_sup(sup)
        index, example = None, None
        if sub is not None:
            if base_kind in ("W", "A", "D"):
                self.fail(sub, f"{name} is a whole matrix; one weight is w^{{(l)}}_{{jk}}, one activation a^{{(l)}}_j")
            index = self._index(sub)
            index, example = self._split_example(index, base_kind)
        if self.reading.capitals and base in ("z", "a", "x", "y", "output") and index is None \
                and self.shape.examples > 1 and _letter(name, self.reading).islower():
            self.fail(whole, f"'{self.snippet(whole)}' is one example's vector in this notation, and this batch has "
                             f"{self.shape.examples} examples: write the batch's capital "
                             f"({name.replace(_letter(name, self.reading), _letter(name, self.reading).upper())}), "
                             "or check one-example formulas with examples = 1")
        implied = False
        if layered and layer is None and self.shape.L == 1 and self.reading.unmarked != "implied":
            layer = 1  # a network of one layer (Ng's logistic regression): every unmarked name is its
            if base_kind == "w" and self.reading.capitals and _letter(name, self.reading).islower():
                if self.shape.widths and self.shape.widths[-1] != 1:
                    self.fail(whole, f"'{self.snippet(whole)}': logistic regression's column of weights is written "
                                     "for one output; this network has more")
                if index is None:  # Ng's w is the column W^T: z = w^T x + b
                    base_kind, transpose = "W", not transpose
                elif len(index) == 1:
                    index = (self.reading.index_base, index[0])
        if layered and layer is None:
            if self.reading.unmarked == "implied":
                layer, implied = self._implied_layer(base_kind, index, whole), True
            else:
                shown = self.snippet(whole)
                if power is not None and self.reading.layers != "bare":
                    written = "\\delta" if base_kind == "delta" else name
                    self.fail(whole, f"'{shown}': in this notation the layer is written in parentheses, as in "
                                     f"{written}^{{(2)}}; a bare superscript is a power "
                                     "(for Nielsen's a^l_j set layers = \"bare\" in the claims file)")
                self.fail(whole, f"'{shown}' needs a layer, as in {name}^{{(2)}}" if not self.bare
                          else f"'{shown}' needs a layer, as in {name}^2")
        if isinstance(layer, int) and base_kind in LAYERED:
            check_layer(base_kind, layer, self.shape, span)
        if index is not None and base_kind in ("w", "a", "z", "delta", "b", "y"):
            want = 2 if base_kind == "w" else 1
            if len(index) != want:
                self.fail(sub, f"{name} takes {want} ind{'ices' if want == 2 else 'ex'}, not {len(index)}"
                          + (" (write w_{jk} or w_{j,k})" if base_kind == "w" else ""))
            if base_kind == "w" and implied and self.reading.weight_order == "from-to":
                index = (index[1], index[0])
        if base_kind == "C" and index is not None:
            self.fail(sub, f"{name} takes no index" + (f" (an example's cost is {name}_{self.reading.example_letter[0]})"
                                                       if self.reading.example_letter else ""))
        if base_kind == "rate" and (index is not None or layer is not None):
            self.fail(whole, f"{name} is the learning rate; it takes no index")
        alias = name if base in ("x", "y") else None
        node: Node = Leaf(base_kind, layer if layered or fixed is not None else None, index, alias=alias,
                          example=example, span=span)
        if base_kind == "delta" and self.reading.delta_sign == -1:
            node = Op("neg", (node,), span=span)
        if grad:
            node = Op("grad", (node,), scale, span=span)
        if power is not None:
            node = Op("epow" if self.reading.powers == "elementwise" else "pow", (node,), power, span=span)
        if transpose:
            node = Op("T", (node,), span=span)
        return node

    def _example_only(self, sub):
        index = self._index(sub)
        if len(index) == 1 and isinstance(index[0], tuple) and index[0][0] in self.reading.example_letter:
            return index[0][0]
        self.fail(sub, "\\Delta's subscript names the example: \\Delta_p w_{ji}")

    def _split_example(self, index, kind):
        """The example letter (RHW's p in o_{pj}, Bishop's n in E_n) taken off the front of the indices."""
        letters = self.reading.example_letter
        if index and letters and isinstance(index[0], tuple) and index[0][0] in letters and index[0][1] == 0 \
                and kind in ("a", "z", "delta", "y", "C"):
            return (tuple(index[1:]) or None), index[0][0]
        return index, None

    def _implied_layer(self, kind, index, whole):
        """The layer of a name written without one: a variable the index letter carries (unit j's layer)."""
        if not index:  # one layer for every unindexed w of the formula (Delta w = -eta dE/dw)
            return (f"#={self.snippet(whole).strip() or kind}", 0)
        lead = index[0]
        if isinstance(lead, tuple):
            letter = lead[0]
            if kind == "w" and self.reading.weight_order == "from-to" and len(index) == 2 and isinstance(index[1], tuple):
                letter = index[1][0]
            return (f"#{letter}", 0)
        self.fresh += 1
        return (f"#{self.fresh}", 0)

    # -- functions, \nabla, \sum, NumPy's calls -----------------------------------------------
_WHAT = {"z": "the pre-activation", "a": "the activation", "w": "a weight", "W": "a weight matrix", "b": "the bias",
         "x": "the input", "y": "the target", "output": "the network's output", "C": "the cost",
         "rate": "the learning rate", "delta": "the error delta"}
_FIELD_OF = {"z": "preactivation", "a": "activation", "w": "weight", "W": "weight", "b": "bias", "x": "input",
             "y": "target", "output": "output", "C": "cost", "rate": "rate", "delta": "error"}


def _ratio(a: Node, b: Node) -> Node:
    """a / b, where -\\eta \\partial E / \\partial w is -\\eta times the partial's ratio, as its reader means."""
    if isinstance(b, Op) and b.op == "partial":
        path, node = [], a
        while isinstance(node, Op) and node.op in ("dot", "neg"):
            path.append(node)
            node = node.args[-1]
        if _is_partial(node) and path:
            inner = Op("div", (node, b), span=_join(node, b))
            for outer in reversed(path):
                inner = Op(outer.op, outer.args[:-1] + (inner,), outer.param, span=_join(outer, b))
            return inner
    return Op("div", (a, b), span=_join(a, b))


def _is_partial(n) -> bool:
    return isinstance(n, Op) and n.op == "partial"


def _letter(name: str, reading: Reading) -> str:
    """The quantity's letter in a name: dz -> z, \\hat{y} -> y."""
    if reading.gradient_prefix and name.startswith(reading.gradient_prefix) and len(name) > 1:
        name = name[len(reading.gradient_prefix):]
    return name.removeprefix("\\hat{").rstrip("}")


def _join(a: Node, b: Node):
    if a.span is None or b.span is None:
        return a.span or b.span
    return (min(a.span[0], b.span[0]), max(a.span[1], b.span[1]))


class _Meta:
    def __init__(self, start: int, end: int):
        self.start_pos, self.end_pos, self.empty = start, end, False


def _meta(a, b):
    sa, sb = _span(a), _span(b)
    return _Meta(sa[0], sb[1])


def read_latex(source: str, shape: Shape) -> tuple[Node | None, Node]:
    """(left-hand side or None, right-hand side) of a LaTeX claim, or ClaimError with the span at fault."""
    return LatexReader(source, shape).read()
