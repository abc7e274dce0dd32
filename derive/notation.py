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


class TextPrinter(StrPrinter):
    def _print_Symbol(self, expr):
        return text_name(expr)


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


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in [
        Profile("net222", "the 2-2-2 note", "paren", "a", "w", "T", r"\gamma", "C", r"\sigma", r"\delta"),
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
            out[s] = layer(profile, profile.weight.lower() if profile.weight == "W" and False else profile.weight, l, ix)
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
