"""How the general proof prints: w^{l+1}_{k,j} in LaTeX, w^(l+1)[k,j] in text, and evidence (words and SymPy
objects) in either."""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

_TEX_BASE = {"delta": r"\delta", "Delta": r"\Delta", "gamma": r"\gamma", "beta": r"\beta", "mu": r"\mu",
             "var": r"\sigma^{2}", "xhat": r"\hat{x}"}
_TEXT_BASE = {"delta": "δ", "Delta": "Δ", "gamma": "γ", "beta": "β", "mu": "μ", "var": "σ²", "xhat": "x̂"}


def compact(s: str) -> str:
    """A printed layer or bound without spaces: l+1, not l + 1."""
    return s.replace(" ", "")


class _Latex(LatexPrinter):
    printmethod = "_general_latex"  # Indexed has its own _latex, which would win over _print_Indexed

    def _print_Indexed(self, expr):
        base = _TEX_BASE.get(expr.base.name, expr.base.name)
        if not getattr(expr.base, "layered", True):  # a norm's entries: no layer index
            return f"{base}_{{{','.join(self._print(i) for i in expr.indices)}}}"
        n = getattr(expr.base, "layer_indices", 1)  # a residual block's inner layer: z^{r,p}_m
        layer, idx = ",".join(compact(self._print(i)) for i in expr.indices[:n]), expr.indices[n:]
        return f"{base}^{{{layer}}}_{{{','.join(self._print(i) for i in idx)}}}"

    def _print_KroneckerDelta(self, expr, exp=None):
        i, j = (self._print(a) for a in expr.args)
        return rf"\delta_{{{i},{j}}}"


class _Text(StrPrinter):
    printmethod = "_general_text"  # likewise Indexed's _sympystr

    def _print_Indexed(self, expr):
        base = _TEXT_BASE.get(expr.base.name, expr.base.name)
        if not getattr(expr.base, "layered", True):  # a norm's entries: no layer index
            return f"{base}[{','.join(self._print(i) for i in expr.indices)}]"
        n = getattr(expr.base, "layer_indices", 1)  # a residual block's inner layer: z^(r,p)[m]
        layer, idx = ",".join(compact(self._print(i)) for i in expr.indices[:n]), expr.indices[n:]
        return f"{base}^({layer})[{','.join(self._print(i) for i in idx)}]"

    def _print_Sum(self, expr):
        out = self._print(expr.function)
        for var, lo, hi in expr.limits:  # innermost first
            out = f"Σ_{{{self._print(var)}={self._print(lo)}..{compact(self._print(hi))}}}({out})"
        return out

    def _print_KroneckerDelta(self, expr):
        i, j = (self._print(a) for a in expr.args)
        return f"δ_({i},{j})"

    def _print_Equality(self, expr):
        return f"{self._print(expr.lhs)} = {self._print(expr.rhs)}"

    def _print_Unequality(self, expr):
        return f"{self._print(expr.lhs)} ≠ {self._print(expr.rhs)}"

    def _print_Piecewise(self, expr):
        parts = [f"{self._print(e)} if {self._print(c)}" if c is not sp.true else f"{self._print(e)} otherwise"
                 for e, c in expr.args]
        return "{" + "; ".join(parts) + "}"


_LATEX = _Latex()
_TEXTP = _Text()


def latex(expr) -> str:
    """An expression of the general proof in LaTeX."""
    return _LATEX.doprint(expr)


def text(expr) -> str:
    """An expression of the general proof as terminal text."""
    return _TEXTP.doprint(expr)


_TEX_ESCAPE = str.maketrans({"_": r"\_", "%": r"\%", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                             "^": r"\^{}", "≤": r"$\le$", "≥": r"$\ge$", "→": r"$\to$", "≠": r"$\neq$",
                             "·": r"$\cdot$", "Σ": r"$\Sigma$", "σ": r"$\sigma$", "δ": r"$\delta$",
                             "∂": r"$\partial$", "≡": r"$\equiv$",
                             "γ": r"$\gamma$", "β": r"$\beta$", "μ": r"$\mu$", "²": r"$^2$", "Δ": r"$\Delta$",
                             "ε": r"$\varepsilon$", "∈": r"$\in$",
                             "\u0302": r"\^{}"})  # x̂: x and a combining circumflex


def tex_words(s: str) -> str:
    """Plain words (rule names, messages) for a LaTeX text paragraph."""
    return s.translate(_TEX_ESCAPE)


def render_parts(parts, fmt: str) -> str:
    """Evidence and assumptions (lists of words, SymPy objects and ranges) printed as fmt: "text" or "latex"."""
    out = []
    for p in parts:
        if isinstance(p, sp.Basic):
            out.append(text(p) if fmt == "text" else f"${latex(p)}$")
        elif isinstance(p, Range):
            out.append(p.text() if fmt == "text" else f"${p.latex()}$")
        else:
            out.append(p if fmt == "text" else tex_words(p))
    return "".join(out)


@dataclass(frozen=True)
class Range:
    """lo <= var <= hi, for display."""

    var: sp.Symbol
    lo: sp.Expr
    hi: sp.Expr

    def text(self) -> str:
        return f"{text(self.lo)} ≤ {text(self.var)} ≤ {compact(text(self.hi))}"

    def latex(self) -> str:
        return rf"{latex(self.lo)} \le {latex(self.var)} \le {latex(self.hi)}"
