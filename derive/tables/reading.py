"""How a source writes its formulas: the fields a claim is read by, one Reading per notation profile.

A Reading says which written name is which quantity of the network (the letters of the
pre-activation, the activation, the weight, ...), how a layer is marked, how units are
numbered, what each product operator means and which binds tighter, and what a
gradient's name (Ng's dW) stands for. derive.claims.latex and derive.claims.code read
claims through it; nothing outside this table branches on a notation's name.

A claims file picks one with `notation = "bishop"` and may override any field in a
`[notation]` table; a user's own notation is a TOML file of these fields
(`notation = "mine.toml"`, with `base = "nielsen"` for the fields it does not give).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace

# the quantities a name may stand for (the claim tree's Leaf kinds, and a few that only reading has)
QUANTITIES = ("z", "a", "w", "W", "b", "x", "y", "output", "C", "rate", "delta")
OPERATORS = ("*", r"\circ", r"\odot", r"\cdot", r"\times", "juxtaposition")
MEANINGS = ("hadamard", "product")  # elementwise, or the matrix product (a scalar's product either way)
LAYER_STYLES = ("paren", "bare", "bracket", "implied")


@dataclass(frozen=True)
class Reading:
    """The fields a claim is read by (see the module docstring); every field has the project's own default."""

    # letters: each a tuple of the names a source writes for the quantity ("" entries never occur)
    preactivation: tuple[str, ...] = ("z",)
    activation: tuple[str, ...] = ("a",)
    weight: tuple[str, ...] = ("w", "W")
    bias: tuple[str, ...] = ("b",)
    input: tuple[str, ...] = ("x",)
    target: tuple[str, ...] = ("y", "T")
    output: tuple[str, ...] = (r"\hat{y}",)  # the network's output written on its own; else a^L
    cost: tuple[str, ...] = ("C",)
    rate: tuple[str, ...] = ()  # the learning rate's letter, where a source writes weight changes
    error: tuple[str, ...] = (r"\delta",)
    delta_sign: int = 1  # +1: delta is dC/dz; -1: Rumelhart-Hinton-Williams' -dE/dnet
    # layers and units
    layers: str = "paren"  # paren a^{(l)}, bare a^l, bracket a^{[l]}, implied (the index letters say it)
    unmarked: str = "error"  # a name written without its layer: "error", or "implied" from its index letters
    index_base: int = 0  # the first unit's number
    bias_index: int | None = None  # where the bias sits among a weight's inputs (Bishop's w_{j0}), or None
    weight_order: str = "to-from"  # an unmarked w_{jk}: j the neuron fed, k the one feeding; "from-to": w_{ij} i to j
    example_letter: tuple[str, ...] = ()  # a first subscript naming the example (RHW's o_{pj}, Bishop's E_n)
    depth: tuple[str, ...] = ("L",)  # the letter of the output layer's number (Goodfellow's l)
    examples_count: tuple[str, ...] = ()  # the batch's size, as the source writes it (Ng's m, CS231n's N)
    # batches
    capitals: bool = False  # Z, A, X, Y (capital letters of the vectors) are batch matrices
    examples: str = "columns"  # which way a batch matrix runs its examples: "columns" (Ng) or "rows" (CS231n)
    # gradients
    gradient_prefix: str = ""  # "d": dW is dC/dW, dZ is dC/dZ (Ng, CS231n)
    gradient_scale: str = "example"  # d of a per-example quantity (dZ, dA): its example's own cost ("example") or C's
    # the activation
    functions: tuple[str, ...] = (r"\sigma",)  # names of the layer's activation; f'(z), f^{(l)\prime}, (f^l)' all read
    # operators: meaning of each, and those that bind tighter than the others (juxtaposition always binds tightest)
    operators: tuple[tuple[str, str], ...] = (("*", "hadamard"), (r"\circ", "hadamard"), (r"\odot", "hadamard"),
                                              (r"\cdot", "product"), (r"\times", "product"),
                                              ("juxtaposition", "product"))
    tighter: tuple[str, ...] = ()
    mixed: str = "error"  # elementwise and matrix products side by side: "error", or "right" (grouped from the right)
    powers: str = "matrix"  # a vector's or matrix's power: "matrix" (read only where it is a matrix power, else an
    #                         ERROR naming both readings) or "elementwise" (Ng's (a^{[1]})^2, NumPy's **)
    code_names: tuple[tuple[str, str], ...] = ()  # NumPy code's names: ("hidden_layer", "a1"), ("scores", "z2"), ...

    def meaning(self, op: str) -> str | None:
        return dict(self.operators).get(op)

    def names(self) -> dict[str, str]:
        """Every written name -> the quantity it stands for ('ambiguous:q1,q2' for a name two fields claim).

        A weight written as a capital is the matrix in the spec's layout (W); lower case, w.
        """
        out: dict[str, str] = {}
        for q, f in _FIELD.items():
            for n in getattr(self, f):
                if q in ("w", "W") and (n[:1].isupper()) != (q == "W"):
                    continue
                if n in out and out[n] != q:
                    q_all = out[n].removeprefix("ambiguous:") + "," + q
                    out[n] = "ambiguous:" + q_all
                else:
                    out[n] = q
        return out


_FIELD = {"z": "preactivation", "a": "activation", "w": "weight", "W": "weight", "b": "bias", "x": "input",
          "y": "target", "output": "output", "C": "cost", "rate": "rate", "delta": "error"}


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Reading))


def with_fields(base: Reading, table: dict, where: str) -> Reading:
    """base with the fields of a TOML table; ValueError naming the field and what it accepts."""
    changes = {}
    for key, value in table.items():
        if key not in field_names():
            raise ValueError(f"{where}: unknown field {key!r}; a notation has {', '.join(field_names())}")
        changes[key] = _field_value(key, value, where)
    return replace(base, **changes)


def _strings(value, key: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 40 and v.isprintable()
                                              for v in value):
        raise ValueError(f"{where}: {key} is a name or a list of names, such as \"z\" or [\"a\", \"net\"]")
    return tuple(value)


def _field_value(key: str, value, where: str):
    one_of = {"layers": LAYER_STYLES, "unmarked": ("error", "implied"), "mixed": ("error", "right"),
              "powers": ("matrix", "elementwise"), "weight_order": ("to-from", "from-to"), "examples": ("columns", "rows"),
              "gradient_scale": ("example", "batch")}
    if key in one_of:
        if value not in one_of[key]:
            raise ValueError(f"{where}: {key} = {value!r}; one of {', '.join(one_of[key])}")
        return value
    if key == "delta_sign":
        if value not in (1, -1) or isinstance(value, bool):
            raise ValueError(f"{where}: delta_sign is 1 (delta = dC/dz) or -1 (delta = -dC/dz)")
        return value
    if key == "index_base":
        if value not in (0, 1) or isinstance(value, bool):
            raise ValueError(f"{where}: index_base is 0 or 1 (the first unit's number)")
        return value
    if key == "bias_index":
        if value is False or (value not in (0,) and value != "none"):
            raise ValueError(f"{where}: bias_index is 0 (the bias is weight 0, its input 1) or \"none\"")
        return None if value == "none" else 0
    if key == "capitals":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: capitals is true or false")
        return value
    if key == "gradient_prefix":
        if value not in ("", "d"):
            raise ValueError(f"{where}: gradient_prefix is \"d\" (dW is dC/dW) or \"\"")
        return value
    if key == "operators":
        if not isinstance(value, dict) or not all(k in OPERATORS and v in MEANINGS + ("undefined",)
                                                  for k, v in value.items()):
            raise ValueError(f"{where}: operators is a table from {', '.join(OPERATORS)} to "
                             f"{', '.join(MEANINGS)} or \"undefined\"")
        return tuple((k, v) for k, v in value.items() if v != "undefined")
    if key == "tighter":
        names = _strings(value, key, where)
        if not all(n in OPERATORS for n in names):
            raise ValueError(f"{where}: tighter lists operators among {', '.join(OPERATORS)}")
        return names
    if key == "code_names":
        if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier() and isinstance(v, str)
                                                  and re.fullmatch(r"[azWb](\d+|L)", v) for k, v in value.items()):
            raise ValueError(f"{where}: code_names is a table from a Python name to a quantity: a, z, W or b and a "
                             "layer number or L (\"a1\", \"zL\")")
        return tuple(value.items())
    return _strings(value, key, where)


# ---------------------------------------------------------------------------
# the sources
# ---------------------------------------------------------------------------

_NG_OPS = (("*", "hadamard"), ("juxtaposition", "product"), (r"\cdot", "product"))
# a quantity's layer is a number, or L for the output: CS231n's scores are the last layer's, one layer or two
_CS231N_CODE = (("X", "a0"), ("hidden_layer", "a1"), ("hidden", "a1"), ("scores", "zL"), ("probs", "aL"),
                ("W", "W1"), ("b", "b1"))
_NG_CODE = (("AL", "aL"), ("ZL", "zL"))

READINGS: dict[str, Reading] = {
    # the project's own notations read one vocabulary (a z w b W A D \delta x y T C), as they always have
    "net222": Reading(),
    "nielsen": Reading(layers="bare"),
    "nobias3": Reading(),
    "rowmajor": Reading(),
    # Andrew Ng, Deep Learning Specialization: A^{[l]} one column per example, dZ = dJ/dZ, g^{[l]}, * elementwise
    "ng": Reading(preactivation=("z", "Z"), activation=("a", "A"), input=("x", "X"), target=("y", "Y"),
                  output=(r"\hat{y}", r"\hat{Y}"), cost=("J", "L", r"\mathcal{L}"), rate=(r"\alpha",),
                  error=(), layers="bracket", index_base=1, capitals=True, gradient_prefix="d",
                  functions=("g", r"\sigma"), operators=_NG_OPS, examples_count=("m",), powers="elementwise",
                  code_names=_NG_CODE),
    # Stanford CS231n notes: X is N x D (examples as rows), scores = X W + b, dW = dL/dW, NumPy code
    "cs231n": Reading(preactivation=("s", "z", "Z"), activation=("h", "a", "A"), input=("x", "X"), target=("y", "Y"),
                      cost=("L",), rate=(r"\alpha",), error=(), layers="bare", capitals=True, examples="rows",
                      gradient_prefix="d", gradient_scale="batch", functions=(r"\sigma", "f"),
                      operators=_NG_OPS, examples_count=("N",), code_names=_CS231N_CODE, powers="elementwise"),
    # Goodfellow, Bengio, Courville, Deep Learning, Algorithm 6.4: a = b + W h, h = f(a), g <- ...
    "goodfellow": Reading(preactivation=("a",), activation=("h",), input=("x",), target=("y",),
                          output=(r"\hat{y}",), cost=("J", "L"), rate=(r"\epsilon", r"\eta"), error=(),
                          layers="paren", functions=("f",), depth=("l", "L")),
    # Bishop, Pattern Recognition and Machine Learning, 5.3: a_j = sum_i w_ji z_i, z_j = h(a_j), delta_j = dE_n/da_j
    "bishop": Reading(preactivation=("a",), activation=("z",), input=("x",), target=("t",), output=("y",),
                      cost=("E",), rate=(r"\eta",), error=(r"\delta",), layers="implied", unmarked="implied",
                      index_base=1, bias_index=0,
                      example_letter=("n",), functions=("h", r"\sigma"), examples_count=("N",)),
    # Wikipedia, "Backpropagation": delta^l = (f^l)' o (W^{l+1})^T . delta^{l+1}; the derivation's o_j, net_j, w_ij
    "wikipedia": Reading(preactivation=("z", "net"), activation=("a", "o"), input=("x",), target=("y", "t"),
                         output=("y", r"\hat{y}"),  # y is the target in the matrix section, the output in the derivation
                         cost=("C", "E"), layers="bare", unmarked="implied", index_base=1, weight_order="from-to",
                         functions=("f", r"\varphi", r"\phi"), mixed="right", rate=(r"\eta",)),
    # Rumelhart, Hinton, Williams 1986: net_pj = sum_i w_ji o_pi, delta_pj = -dE_p/dnet_pj, Delta_p w_ji = eta delta o
    "rumelhart1986": Reading(preactivation=("net",), activation=("o",), input=(), output=(), target=("t",), cost=("E",),
                             bias=("b", r"\theta"),
                             rate=(r"\eta", r"\varepsilon"), error=(r"\delta",), delta_sign=-1, layers="implied", unmarked="implied",
                             index_base=1, example_letter=("p",), functions=("f",), examples_count=()),
}
