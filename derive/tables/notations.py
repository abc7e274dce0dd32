"""Names of things: the text vocabulary of the terminal and claims, and the LaTeX profiles.

Internal symbol names are w{l}_{j}_{k}, b{l}_{j}, a{l}_{j}, z{l}_{j}, ap{l}_{j} (sigma'
where no output form exists) and y_{j}, with _e{e} appended for example e of a batch.
Layer numbers are the same in every profile (0 is the input); a profile changes only
how a layer, an index and a quantity are written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sympy as sp
from sympy.printing.latex import LatexPrinter
from sympy.printing.str import StrPrinter

_NAME = re.compile(r"^(w|b|a|z|ap|y)(\d*)_(\d+(?:_\d+)*)(?:_e(\d+))?$")


def parse_name(name: str):
    """'w2_0_1' -> ('w', 2, (0, 1), None); 'y_1_e0' -> ('y', None, (1,), 0)."""
    m = _NAME.match(name)
    if not m:
        return None
    base, layer, idx, ex = m.groups()
    return base, int(layer) if layer else None, tuple(int(i) for i in idx.split("_")), (int(ex) if ex else None)


def text_name(sym: sp.Symbol) -> str:
    """The claims vocabulary: w2[0,1], b1[0], a1[0], y[0], sigma_prime(z1[0]); example e as {e}."""
    parsed = parse_name(sym.name)
    if parsed is None:
        return sym.name
    base, layer, idx, ex = parsed
    inner = ",".join(map(str, idx))
    tail = f"{{{ex}}}" if ex is not None else ""
    if base == "y":
        return f"y[{inner}]{tail}"
    if base == "ap":
        return f"sigma_prime(z{layer}[{inner}]{tail})"
    return f"{base}{layer}[{inner}]{tail}"


_MATRIX_TEXT = [
    (re.compile(r"^deltac(\d+)(_e\d+)?$"), r"delta\1"),
    (re.compile(r"^g_col(_e\d+)?$"), "grad_a(C)"),
    (re.compile(r"^([DJ]\d+)_e\d+$"), r"\1"),
    (re.compile(r"^dC_dW(\d+)_T$"), r"(dC/dW\1).T"),
    (re.compile(r"^dC_d([Wb]\d+)$"), r"dC/d\1"),
    (re.compile(r"^([Wb]\d+)_new$"), r"\1'"),
    (re.compile(r"^sp(\d+)$"), r"sigma_prime(z\1)"),
    (re.compile(r"^g(_col)?$"), "grad_a(C)"),
    (re.compile(r"^ones_B$"), "ones"),
]


def matrix_text_name(name: str) -> str:
    for pattern, repl in _MATRIX_TEXT:
        if pattern.match(name):
            return pattern.sub(repl, name)
    return name


class TextPrinter(StrPrinter):
    def _print_Symbol(self, expr):
        return text_name(expr)

    def _print_MatrixSymbol(self, expr):
        return matrix_text_name(expr.name)

    def _print_HadamardProduct(self, expr):
        return " * ".join(self.parenthesize(arg, 51) for arg in expr.args)

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_mmul()
        body = " @ ".join(self.parenthesize(arg, 51) for arg in mats.args)
        return body if coeff == 1 else f"{self._print(coeff)}*{body}"

    def _print_Transpose(self, expr):
        inner = self._print(expr.arg)
        return (inner if expr.arg.is_symbol else f"({inner})") + ".T"

    def _print_OneMatrix(self, expr):
        return "ones"


def text(expr) -> str:
    """An expression in the claims vocabulary, factored where that reads better."""
    return TextPrinter({"order": "none"}).doprint(expr)


# ---------------------------------------------------------------------------
# LaTeX profiles
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    layer_style: str  # "paren": a^{(l)}_j; "bare": a^l_j; "sub": h_{l,j} (layer as first subscript)
    activation: str  # symbol for activations: a or h
    weight: str  # w or W
    target: str  # T or y
    rate: str  # gamma or eta
    cost: str  # C or L
    sigma: str  # sigma or f
    delta: str  # \delta or dZ
    output: str | None = None  # the output written on its own (\hat{y}), or None
    input: str | None = None  # the input written on its own (x), or None
    bp_labels: bool = False  # label the equations BP1-BP4
    gradient: str | None = None  # the source's own name for the cost's gradient in the outputs, or None: \nabla_a C


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("net222", "the 2-2-2 note", "paren", "a", "w", "T", r"\gamma", "C", r"\sigma", r"\delta", gradient="c"),
        Profile("nielsen", "Nielsen, chapter 2", "bare", "a", "w", "y", r"\eta", "C", r"\sigma", r"\delta", bp_labels=True),
        Profile("nobias3", "the three-matrix derivation", "sub", "h", "W", "y", r"\eta", "L", "f", r"\delta", output=r"\hat{y}", input="x"),
        Profile("rowmajor", "the row-major batch form", "sub", "A", "W", "y", r"\eta", "C", "g", "dZ"),
    ]
}


def layer(profile: Profile, base: str, l, idx: str = "") -> str:
    """base with layer l and subscript idx in the profile's style."""
    if profile.layer_style == "paren":
        sup = f"^{{({l})}}"
        return f"{base}{sup}_{{{idx}}}" if idx else f"{base}{sup}"
    if profile.layer_style == "bare":
        return f"{base}^{{{l}}}_{{{idx}}}" if idx else f"{base}^{{{l}}}"
    sub = f"{l},{idx}" if idx else f"{l}"
    return f"{base}_{{{sub}}}"


def latex_names(profile: Profile, symbols, L: int) -> dict:
    """LaTeX for each scalar symbol of a network in a profile."""
    out = {}
    for s in symbols:
        if not isinstance(s, sp.Symbol):
            continue
        parsed = parse_name(s.name)
        if parsed is None:
            if s.name == "gamma":
                out[s] = profile.rate
            continue
        base, l, idx, ex = parsed
        ix = "".join(map(str, idx)) if all(i < 10 for i in idx) else ",".join(map(str, idx))
        if ex is not None:
            ix += f";{ex}"
        if base == "y":
            out[s] = f"{profile.target}_{{{ix}}}"
        elif base == "w":
            out[s] = layer(profile, profile.weight, l, ix)
        elif base == "b":
            out[s] = layer(profile, "b", l, ix)
        elif base == "a":
            if l == 0 and profile.input:
                out[s] = f"{profile.input}_{{{ix}}}"
            elif l == L and profile.output:
                out[s] = f"{profile.output}_{{{ix}}}"
            else:
                out[s] = layer(profile, profile.activation, l, ix)
        elif base == "z":
            out[s] = layer(profile, "z", l, ix)
        elif base == "ap":
            out[s] = f"{profile.sigma}'\\left({layer(profile, 'z', l, ix)}\\right)"
    return out


class Printer(LatexPrinter):
    """sympy.latex with the profile's names and the Hadamard product as odot."""

    def _print_HadamardProduct(self, expr):
        return r" \odot ".join(self.parenthesize(arg, 60) for arg in expr.args)

    def _print_OneMatrix(self, expr):
        return r"\mathbf{1}\mathbf{1}^{T}"


def latex(expr, names: dict) -> str:
    return Printer({"symbol_names": names, "mul_symbol": None}).doprint(expr)


_MATRIX_LATEX = re.compile(r"^(deltac|delta|dC_dW|dC_db|sp|D|J|W|w|A|a|b)(\d+)(_T|_new)?(?:_e\d+)?$")


def matrix_latex_names(profile: Profile, matrix_symbols, L: int) -> dict:
    """LaTeX for the MatrixSymbols of the matrix forms, in a profile."""
    out = {}
    cost = profile.cost
    for ms in matrix_symbols:
        name = ms.name
        if name == "g" or name.startswith("g_col"):
            out[ms] = profile.gradient or rf"\nabla_{{{profile.activation if profile.output is None else profile.output}}} {cost}"
            continue
        if name == "ones_B":
            out[ms] = r"\mathbf{1}"
            continue
        m = _MATRIX_LATEX.match(name)
        if not m:
            out[ms] = name
            continue
        base, l, tail = m.group(1), int(m.group(2)), m.group(3)
        if base in ("delta", "deltac"):
            tex = layer(profile, profile.delta, l)
        elif base in ("dC_dW", "dC_db"):
            target = layer(profile, "W" if base == "dC_dW" else "b", l)
            tex = rf"\frac{{\partial {cost}}}{{\partial {target}}}"
            if tail == "_T":
                tex = rf"\left({tex}\right)^{{T}}"
        elif base == "sp":
            tex = rf"{profile.sigma}'\left({layer(profile, 'z', l)}\right)"
        elif base == "a" and l == 0 and profile.input:
            tex = profile.input
        elif base == "a" and l == L and profile.output:
            tex = profile.output
        elif base in ("a", "A"):
            # the augmented input is the activation's capital (h -> H; the row-major form's A stays A)
            sym = profile.activation if base == "a" else profile.activation.upper()
            tex = layer(profile, sym, l)
        elif base in ("W", "w"):
            tex = layer(profile, base if profile.weight == "w" else "W", l)
            if tail == "_new":
                tex = "{" + tex + "}'"
        else:
            tex = layer(profile, base, l)
            if tail == "_new":
                tex = "{" + tex + "}'"
        out[ms] = tex
    return out
