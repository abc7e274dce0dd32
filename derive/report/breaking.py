"""Displayed equations that fit the page: LaTeX widths estimated, long expressions broken where a reader would.

The document's generator places every line break itself (between the terms of a sum,
between the factors of a product, inside a parenthesised sum with \\bigl( ... \\bigr)),
because LaTeX cannot break a display and breqn cannot break inside \\left( ... \\right).
Widths are estimated in points of an 11 pt Computer Modern font, on the generous side:
an estimate a little too wide only moves a break earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from derive.tables.notations import Printer

TEXT_WIDTH = 420.0  # pt a display may use: the 2 cm-margin letter page's 500 pt, less align's indent and a margin
MAX_LINES = 8  # a longer expansion is not written out: the reader is told its size instead

_BIN = 13.5  # a binary operator with its spaces
_REL = 15.0  # a relation with its spaces
_COMMANDS = {
    r"\cdot": _BIN, r"\times": _BIN, r"\odot": _BIN, r"\pm": _BIN, r"\equiv": _REL, r"\approx": _REL,
    r"\to": _REL, r"\leq": _REL, r"\geq": _REL, r"\partial": 6.0, r"\nabla": 8.5, r"\quad": 11.0, r"\qquad": 22.0,
    r"\,": 2.0, r"\;": 3.1, r"\:": 2.5, r"\!": -1.8, r"\sum": 16.0, r"\prod": 16.0, r"\log": 15.0, r"\exp": 17.0,
    r"\tanh": 23.0, r"\ldots": 15.0, r"\dots": 15.0, r"\cdots": 15.0, r"\infty": 11.0,
}
_ACCENTS = (r"\hat", r"\bar", r"\tilde", r"\vec")
_ROMAN = (r"\operatorname", r"\mathrm", r"\text", r"\textrm", r"\mathbf", r"\texttt")
_SIZERS = (r"\left", r"\right", r"\bigl", r"\bigr", r"\Bigl", r"\Bigr", r"\big", r"\Big")
_WIDE = set("mwMW")


def _group(tex: str, i: int) -> tuple[str, int]:
    """The braced group (or single character or command) starting at i, and the index after it."""
    while i < len(tex) and tex[i] == " ":
        i += 1
    if i >= len(tex):
        return "", i
    if tex[i] == "{":
        depth, j = 0, i
        while j < len(tex):
            depth += {"{": 1, "}": -1}.get(tex[j], 0)
            if depth == 0:
                return tex[i + 1:j], j + 1
            j += 1
        return tex[i + 1:], len(tex)
    if tex[i] == "\\":
        j = i + 1
        while j < len(tex) and tex[j].isalpha():
            j += 1
        return tex[i:max(j, i + 2)], max(j, i + 2)
    return tex[i], i + 1


def width(tex: str, scale: float = 1.0) -> float:
    """Estimated width in pt of math-mode LaTeX."""
    total, i = 0.0, 0
    while i < len(tex):
        ch = tex[i]
        if ch == "\\":
            cmd, i = _group(tex, i)
            if cmd == r"\frac":
                num, i = _group(tex, i)
                den, i = _group(tex, i)
                total += max(width(num, scale), width(den, scale)) + 3 * scale
            elif cmd in _ROMAN:
                body, i = _group(tex, i)
                total += len(body) * 5.8 * scale
            elif cmd in _ACCENTS:
                body, i = _group(tex, i)
                total += width(body, scale)
            elif cmd in _SIZERS:
                delim, i = _group(tex, i)
                total += 0 if delim == "." else 5.0 * scale
            elif cmd in (r"\begin", r"\end"):
                _, i = _group(tex, i)
            elif cmd == "\\\\":
                pass
            else:
                total += _COMMANDS.get(cmd, 7.0) * scale
        elif ch in "^_":
            body, i = _group(tex, i + 1)
            total += width(body, scale * 0.72)
        elif ch == "{":
            body, i = _group(tex, i)
            total += width(body, scale)
        else:
            i += 1
            if ch in "+-":
                total += _BIN * scale if scale == 1.0 else 8.6 * scale
            elif ch in "=<>":
                total += _REL * scale if scale == 1.0 else 8.6 * scale
            elif ch in "()[]|":
                total += 4.4 * scale
            elif ch in ",;":
                total += 3.5 * scale
            elif ch in " &}":
                pass
            elif ch.isdigit():
                total += 5.6 * scale
            else:
                total += (9.0 if ch in _WIDE else 6.2) * scale
    return total


@dataclass(frozen=True)
class Token:
    """An unbreakable piece of an expression; `lead` is written before it when it starts a line."""

    text: str
    lead: str = ""

    @property
    def width(self) -> float:
        return width(self.text)


class Breaker:
    """Tokens of an expression in a profile's names, split finely enough to fit `limit`."""

    def __init__(self, names: dict, limit: float = TEXT_WIDTH):
        self.printer = Printer({"symbol_names": names, "mul_symbol": None})
        self.limit = limit

    def latex(self, expr) -> str:
        return self.printer.doprint(expr)

    def tokens(self, expr, limit: float | None = None) -> list[Token]:
        limit = self.limit if limit is None else limit
        tex = self.latex(expr)
        if width(tex) <= limit or not isinstance(expr, sp.Basic):
            return [Token(tex)]
        if expr.is_Add:
            return self._sum(expr, limit)
        if expr.is_Mul:
            return self._product(expr, limit)
        return [Token(tex)]  # an unbreakable piece: the caller sees it is too wide

    def _sum(self, expr, limit: float) -> list[Token]:
        out: list[Token] = []
        for n, term in enumerate(self.printer._as_ordered_terms(expr)):
            sign = "-" if term.could_extract_minus_sign() else "+"
            body = self.tokens(-term if sign == "-" else term, limit - _BIN)
            prefix = ("- " if sign == "-" else "") if n == 0 else f"{sign} "
            out.append(Token(prefix + body[0].text))
            out += body[1:]
        return out

    def _product(self, expr, limit: float) -> list[Token]:
        coeff, rest = expr.as_coeff_Mul()
        out: list[Token] = []
        if coeff == -1:
            return [Token("- " + self.tokens(rest, limit)[0].text)] + self.tokens(rest, limit)[1:]
        if coeff != 1:
            out.append(Token(self.latex(coeff)))
        factors = rest.as_ordered_factors() if rest.is_Mul else [rest]
        for f in factors:
            tex = self.printer.parenthesize(f, PRECEDENCE["Mul"], strict=False)
            if f.is_Add and width(tex) > limit:
                inner = self._sum(f, limit - 10)
                inner[0] = Token(r"\bigl(" + inner[0].text, r"\times ")
                inner[-1] = Token(inner[-1].text + r"\bigr)", inner[-1].lead)
                out += inner
            elif width(tex) > limit:
                out += [Token(t.text, t.lead or r"\times ") for t in self.tokens(f, limit)]
            else:
                out.append(Token(tex, r"\times "))
        return out

    def lines(self, expr_or_tokens, limit: float | None = None) -> list[str] | None:
        """The expression in lines of at most `limit` pt; None when it needs more than MAX_LINES or a piece is too wide."""
        limit = self.limit if limit is None else limit
        toks = self.tokens(expr_or_tokens, limit) if isinstance(expr_or_tokens, sp.Basic) else expr_or_tokens
        return pack(toks, limit)


def pack(tokens: list[Token], limit: float, max_lines: int = MAX_LINES) -> list[str] | None:
    """Greedy line filling; None when a token alone is too wide or more than max_lines are needed."""
    lines: list[list[str]] = []
    used = 0.0
    for t in tokens:
        w = t.width
        if w > limit:
            return None
        if lines and used + w <= limit:
            lines[-1].append(t.text)
            used += w + 2
        else:
            text = (t.lead + t.text) if lines else t.text
            lines.append([text])
            used = width(text) + 2
    if len(lines) > max_lines:
        return None
    return [" ".join(line) for line in lines]


def fits(tex: str, limit: float = TEXT_WIDTH) -> bool:
    return width(tex) <= limit
