"""Network specs: TOML files (built-in ones in derive/specs/) validated into a frozen Spec."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from fractions import Fraction
from math import prod
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from derive.tables.activations import ACTIVATIONS
from derive.tables.costs import COSTS
from derive.tables.layers import DENSE, KINDS
from derive.tables.notations import PROFILES
from derive.arguments import whole
from derive.errors import SpecError, shown
from derive.errors import brief as _brief
from derive.files import exists, read_user_file

CONVENTIONS = ("row", "column")
BIASES = ("augmented", "separate", "none")
BATCHES = ("single", "mean", "sum")
REQUIRED = ("name", "sizes", "activation", "cost", "convention", "bias", "batch", "notation")
OPTIONAL = ("examples", "description")
MAX_WIDTH = 4096
MAX_DEPTH = 64
MAX_EXAMPLES = 64  # examples in a batch
MAX_SPEC_BYTES = 1024 * 1024  # a spec is a few lines; this bounds what a wrong path can make us read


@dataclass(frozen=True)
class Spec:
    """A fully connected network and the conventions it is written in."""

    name: str
    sizes: tuple[int, ...]
    activation: tuple[str, ...]  # one per layer 1..L
    cost: str
    convention: str
    bias: str
    batch: str
    notation: str
    examples: int = 1  # examples in a batch proof (1 when batch is "single")
    description: str = ""
    source: str = "<spec>"

    @property
    def depth(self) -> int:
        """Number of weight layers L."""
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        """The number of scalar parameters: every entry of every layer's parameter matrices."""
        return sum(rows * cols for l in range(1, len(self.sizes))
                   for _, (rows, cols) in DENSE.params(self.sizes[l - 1], self.sizes[l], self.convention, self.bias))

    def with_sizes(self, sizes: tuple[int, ...]) -> "Spec":
        """The same settings with other widths (one activation per layer is kept or spread)."""
        data = self.as_dict()
        data["sizes"] = list(sizes)
        acts = self.activation
        if len(set(acts)) == 1:
            data["activation"] = acts[0]
        elif len(sizes) - 1 != len(acts):
            # hidden layers share the first activation, the output keeps its own
            data["activation"] = [acts[0]] * (len(sizes) - 2) + [acts[-1]]
        return validate(data, self.source)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("source")
        data["sizes"] = list(self.sizes)
        data["activation"] = list(self.activation)
        return data


def builtin_names() -> list[str]:
    """Names of the specs shipped in derive/specs/."""
    folder = resources.files("derive.specs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_spec(name_or_path: "str | Path | Spec | LayeredSpec") -> "Spec | LayeredSpec":
    """A built-in spec by name, or a user's TOML file by path."""
    if isinstance(name_or_path, (Spec, LayeredSpec)):
        return name_or_path
    text_name = str(name_or_path)
    if text_name in builtin_names():
        data = resources.files("derive.specs").joinpath(text_name + ".toml").read_bytes()
        return parse_spec(data, f"derive/specs/{text_name}.toml")
    path = Path(text_name)
    if not path.suffix and not exists(path, "spec file", SpecError):
        raise SpecError(
            f"unknown spec {_brief(text_name)}: not a built-in name ({', '.join(builtin_names())}) "
            "and no such file"
        )
    data = read_user_file(path, MAX_SPEC_BYTES, "spec file", SpecError,
                          missing=f"no such spec file (built-in names: {', '.join(builtin_names())})")
    return parse_spec(data, str(path))


def parse_spec(data: bytes, source: str) -> Spec:
    """A spec from the bytes of a TOML file, with the limits and one-line errors of load_spec."""
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SpecError(f"{source}: not UTF-8 text; a spec is a TOML file")
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: malformed TOML: {exc}")
    except ValueError:  # Python refuses to convert an integer of more than sys.get_int_max_str_digits() digits
        raise SpecError(f"{source}: malformed TOML: an integer of more than {_max_digits()} digits; "
                        f"a spec's numbers are at most {MAX_WIDTH}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{source}: malformed TOML: nested too deeply") from None
    return validate(table, source)


def _max_digits() -> int:
    return sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300


def _name(table: dict, source: str) -> str:
    name = table["name"]
    if not isinstance(name, str) or not name.isidentifier():
        _fail(source, "name", f"{_brief(name)} is not a name (letters, digits and _, not starting with a digit)")
    return name


def _examples_and_description(table: dict, source: str, batch: str) -> tuple[int, str]:
    """`examples` (default 1 for a single example, else 2) and `description`, checked."""
    examples = table.get("examples", 1 if batch == "single" else 2)
    if not isinstance(examples, int) or isinstance(examples, bool) or not 1 <= examples <= MAX_EXAMPLES:
        _fail(source, "examples", f"{_brief(examples)} is not an integer from 1 to {MAX_EXAMPLES}")
    if batch == "single" and examples != 1:
        _fail(source, "examples", f"{_brief(examples)} examples with batch = 'single'; use 'mean' or 'sum'")
    description = table.get("description", "")
    if not isinstance(description, str):
        _fail(source, "description", "must be a string")
    return examples, description


def _fail(source: str, field: str, problem: str) -> None:
    raise SpecError(f"{source}: field '{field}': {problem}")


def _choice(table: dict, source: str, field: str, choices) -> str:
    value = table[field]
    if not isinstance(value, str) or value not in choices:
        _fail(source, field, f"{_brief(value)} is not one of {', '.join(choices)}")
    return value


def validate(table: dict, source: str = "<spec>") -> "Spec | LayeredSpec":
    """Check every field of a spec table; raise SpecError naming the first wrong one.

    A table with `layers` is a layer list (a LayeredSpec); one with `sizes` a stack of dense layers.
    """
    if not isinstance(table, dict):
        raise SpecError(f"{source}: a spec is a TOML table with keys {', '.join(REQUIRED)}")
    if "layers" in table or "inputs" in table:
        return validate_layers(table, source)
    for key in table:
        if key not in REQUIRED + OPTIONAL:
            key = str(key) if len(str(key)) <= 60 else str(key)[:59] + "…"
            _fail(source, shown(key), f"unknown key; valid keys: {', '.join(REQUIRED + OPTIONAL)}")
    for key in REQUIRED:
        if key not in table:
            _fail(source, key, f"missing; a spec needs {', '.join(REQUIRED)}")

    name = _name(table, source)

    sizes = table["sizes"]
    if (
        not isinstance(sizes, list)
        or len(sizes) < 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in sizes)
    ):
        _fail(source, "sizes", f"{_brief(sizes)} is not a list of at least two positive integers, inputs first")
    if len(sizes) - 1 > MAX_DEPTH or max(sizes) > MAX_WIDTH:
        _fail(source, "sizes", f"{_brief(sizes)} is too large (at most {MAX_DEPTH} layers of width {MAX_WIDTH})")
    depth = len(sizes) - 1

    act = table["activation"]
    names = sorted(ACTIVATIONS)
    if isinstance(act, str):
        acts = [act] * depth
    elif isinstance(act, list) and all(isinstance(a, str) for a in act):
        if len(act) != depth:
            _fail(source, "activation", f"{len(act)} names for {depth} layers; give one name, or one per layer")
        acts = act
    else:
        _fail(source, "activation", f"{_brief(act)} is not a name or a list of names ({', '.join(names)})")
    for a in acts:
        if a not in ACTIVATIONS:
            _fail(source, "activation", f"{_brief(a)} is not one of {', '.join(names)}")
    for a in acts[:-1]:
        if not ACTIVATIONS[a].elementwise:
            _fail(source, "activation", f"{a!r} is only allowed on the output layer")

    cost = _choice(table, source, "cost", sorted(COSTS))
    allowed = COSTS[cost].output_activations
    if allowed is not None and acts[-1] not in allowed:
        _fail(
            source,
            "cost",
            f"{cost!r} needs an output activation in ({', '.join(allowed)}), not {acts[-1]!r}",
        )
    convention = _choice(table, source, "convention", CONVENTIONS)
    bias = _choice(table, source, "bias", BIASES)
    batch = _choice(table, source, "batch", BATCHES)
    notation = _choice(table, source, "notation", tuple(PROFILES))

    examples, description = _examples_and_description(table, source, batch)

    return Spec(
        name=name,
        sizes=tuple(sizes),
        activation=tuple(acts),
        cost=cost,
        convention=convention,
        bias=bias,
        batch=batch,
        notation=notation,
        examples=examples,
        description=description,
        source=source,
    )


def parse_sizes(text: str, flag: str = "--sizes") -> tuple[int, ...]:
    """'3-4-2' -> (3, 4, 2), for --sizes (or a claims file's sizes = "3-4-2")."""
    parts = text.split("-")
    if len(parts) < 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise SpecError(f"{flag}: {_brief(text)} is not widths joined by '-', such as 3-4-2")
    if len(parts) - 1 > MAX_DEPTH:
        raise SpecError(f"{flag}: {len(parts) - 1} layers; at most {MAX_DEPTH}")
    width = whole(0, MAX_WIDTH)  # refuses only a width too large, once the parts are known to be digits
    widths = []
    for part in parts:
        try:
            widths.append(width(part))
        except argparse.ArgumentTypeError:
            digits = part.lstrip("0")
            written = digits if len(digits) <= 12 else f"{digits[:8]}… ({len(digits)} digits)"
            raise SpecError(f"{flag}: width {written} is too large; at most {MAX_WIDTH}") from None
        if widths[-1] < 1:
            raise SpecError(f"{flag}: 0 is not a positive width (in {_brief(text)}); widths are positive integers "
                            "joined by '-', such as 3-4-2")
    return tuple(widths)


def load_with_sizes(name_or_path: str, sizes_text: str | None) -> tuple[Spec, str]:
    """A spec, with --sizes applied, and the note a report makes of reduced widths ("" if none)."""
    spec = load_spec(name_or_path)
    if sizes_text is None:
        return spec, ""
    if isinstance(spec, LayeredSpec):
        raise SpecError(f"--sizes: {spec.name} lists its layers, each with its own width; "
                        "change the widths in the spec file (--sizes is for specs that give sizes)")
    sizes = parse_sizes(sizes_text)
    if sizes == spec.sizes:
        return spec, ""
    note = f"proven at sizes {'-'.join(map(str, sizes))} (the spec's own are {'-'.join(map(str, spec.sizes))})"
    reduced = spec.with_sizes(sizes)
    if len(set(spec.activation)) > 1 and reduced.activation != spec.activation:  # spread or dropped: say how
        note += (f", activations {', '.join(reduced.activation)} (the spec's own are {', '.join(spec.activation)}: "
                 "the hidden layers take the first, the output keeps its own)")
    return reduced, note


# ---------------------------------------------------------------------------
# layer lists: [[layers]] with kind = "dense", "batchnorm", "layernorm", "residual", "activation"
# ---------------------------------------------------------------------------

LAYERED_REQUIRED = ("name", "inputs", "layers", "cost", "convention", "batch", "notation")
LAYERED_OPTIONAL = ("examples", "description")
MAX_LAYERS = 64  # layers in a list, nested ones counted


@dataclass(frozen=True)
class Block:
    """One entry of a layer list: its kind (a row of derive.tables.layers.KINDS) and its settings."""

    kind: str
    position: int  # 1, 2, ... in the order the file lists them, a residual's inner layers after it
    n_in: int
    width: int  # the width of its output
    activation: str = "identity"  # dense and activation layers
    bias: str = "separate"  # dense layers: separate or none
    eps: Fraction = Fraction(1, 100000)  # batch and layer norm: added to the variance
    affine: bool = True  # batch and layer norm: a scale gamma and a shift beta per feature
    inner: tuple["Block", ...] = ()  # a residual block's layers
    shape_in: tuple[int, ...] = ()  # its input's shape per example: (n,), [C, L], [T, d] or [C, H, W]
    shape: tuple[int, ...] = ()  # its output's
    out_channels: int = 0  # convolution
    kernel_size: tuple[int, ...] = ()  # convolution and pooling, one per spatial dimension
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    head_dim: int = 0  # attention: the width of Q, K and V (0: the input's d)
    causal: bool = False
    out_proj: bool = False  # attention: an output projection W_o back to d
    hidden_size: int = 0  # rnn
    nonlinearity: str = "tanh"
    output: str = "last"  # rnn: the last step's h, or "all" of them

    def flat(self) -> list["Block"]:
        """This block and every block inside it, in position order."""
        return [self] + [b for blk in self.inner for b in blk.flat()]


@dataclass(frozen=True)
class LayeredSpec:
    """A network given as a list of layers of several kinds (dense, batch norm, layer norm, residual, activation)."""

    name: str
    inputs: int
    layers: tuple[Block, ...]
    cost: str
    convention: str
    batch: str
    notation: str
    examples: int = 1
    description: str = ""
    source: str = "<spec>"
    input_shape: tuple[int, ...] = ()  # x's shape per example when it is not flat ([C, H, W], [T, d]); () if flat

    @property
    def shape(self) -> tuple[int, ...]:
        """x's shape per example: (inputs,) when flat."""
        return self.input_shape or (self.inputs,)

    @property
    def blocks(self) -> list[Block]:
        """Every block, nested ones included, in position order."""
        return [b for blk in self.layers for b in blk.flat()]

    @property
    def outputs(self) -> int:
        return self.layers[-1].width

    @property
    def sizes(self) -> tuple[int, ...]:
        """The input width and the width after each top-level layer."""
        return (self.inputs,) + tuple(b.width for b in self.layers)

    @property
    def output_activation(self) -> str:
        last = self.layers[-1]
        return last.activation if last.kind in ("dense", "activation") else "identity"

    @property
    def n_params(self) -> int:
        return sum(r * c for b in self.blocks for _, (r, c) in KINDS[b.kind].params(b, self.convention))

    def as_dict(self) -> dict:
        def one(b: Block) -> dict:
            out = {"kind": b.kind}
            keys = KINDS[b.kind].keys
            for key in keys:
                value = getattr(b, key)
                out[key] = str(value) if isinstance(value, Fraction) else list(value) if isinstance(value, tuple) \
                    else value
            if b.inner:
                out["layers"] = [one(i) for i in b.inner]
            return out
        return {"name": self.name, "inputs": list(self.input_shape) if self.input_shape else self.inputs, "layers": [one(b) for b in self.layers], "cost": self.cost,
                "convention": self.convention, "batch": self.batch, "notation": self.notation,
                "examples": self.examples, "description": self.description}


def validate_layers(table: dict, source: str) -> LayeredSpec:
    """A layer-list spec: every key checked, every layer checked by its kind, errors naming the layer by position."""
    for key in table:
        if key not in LAYERED_REQUIRED + LAYERED_OPTIONAL:
            if key in ("sizes", "activation", "bias"):
                _fail(source, key, "a spec lists its layers or gives sizes/activation/bias, not both; "
                                   "in a layer list each dense layer has its own width, activation and bias")
            key = str(key) if len(str(key)) <= 60 else str(key)[:59] + "…"
            _fail(source, shown(key), f"unknown key; valid keys of a layer list: "
                                      f"{', '.join(LAYERED_REQUIRED + LAYERED_OPTIONAL)}")
    for key in LAYERED_REQUIRED:
        if key not in table:
            _fail(source, key, f"missing; a layer list needs {', '.join(LAYERED_REQUIRED)}")
    name = _name(table, source)
    inputs = table["inputs"]
    shape = tuple(inputs) if isinstance(inputs, list) else (inputs,)
    if not 1 <= len(shape) <= 3 or not all(_positive(n) for n in shape) or prod(shape) > MAX_WIDTH:
        _fail(source, "inputs", f"{_brief(inputs)} is neither a width nor a shape of 1 to 3 positive sizes "
                                f"([C, H, W] or [T, d]) of at most {MAX_WIDTH} entries (the shape of x)")
    inputs = prod(shape)
    cost = _choice(table, source, "cost", sorted(COSTS))
    convention = _choice(table, source, "convention", CONVENTIONS)
    batch = _choice(table, source, "batch", BATCHES)
    notation = _choice(table, source, "notation", tuple(PROFILES))
    examples, description = _examples_and_description(table, source, batch)

    counter = [0]
    layers, _ = _layer_list(table["layers"], shape, source, "layers", counter)
    if counter[0] > MAX_LAYERS:
        _fail(source, "layers", f"{counter[0]} layers; at most {MAX_LAYERS}, nested ones counted")
    spec = LayeredSpec(name=name, inputs=inputs, layers=layers, cost=cost, convention=convention, batch=batch,
                       notation=notation, examples=examples, description=description, source=source,
                       input_shape=shape if len(shape) > 1 else ())
    if len(layers[-1].shape) > 1:
        _fail(source, f"layers (layer {layers[-1].position}, {layers[-1].kind})",
              f"the last layer's output has shape {list(layers[-1].shape)}; the cost needs a flat output "
              "(add a flatten layer, or a dense one after it)")
    for b in spec.blocks:
        if b.kind == "batchnorm" and examples < 2:
            _fail(source, f"layers (layer {b.position}, batchnorm)",
                  "batch norm needs a batch: batch = 'mean' or 'sum' and examples = 2 or more")
        act = ACTIVATIONS[b.activation] if b.kind in ("dense", "activation") else None
        if act is not None and not act.elementwise and b is not spec.layers[-1]:
            _fail(source, f"layers (layer {b.position}, {b.kind})", f"{b.activation!r} is only allowed on the last layer")
    allowed = COSTS[cost].output_activations
    if allowed is not None and spec.output_activation not in allowed:
        _fail(source, "cost", f"{cost!r} needs the last layer's activation in ({', '.join(allowed)}), "
                              f"not {spec.output_activation!r}")
    return spec


def _positive(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n > 0


def _layer_list(items, shape: tuple[int, ...], source: str, where: str, counter: list):
    """The blocks of a [[layers]] array (or a residual's inner one), and the shape they end at."""
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        _fail(source, where, f"{_brief(items)} is not a non-empty array of tables ([[{where}]] with kind = ...; "
                             f"kinds: {', '.join(KINDS)})")
    out = []
    for item in items:
        counter[0] += 1
        if counter[0] > MAX_LAYERS:
            break
        block = _block(item, shape, source, counter)
        out.append(block)
        shape = block.shape
    return tuple(out), shape


def _sizes(key: str, value, dims: int, low: int) -> tuple[int, ...]:
    """kernel_size, stride or padding: one integer for every spatial dimension, or a list of `dims` of them."""
    values = value if isinstance(value, list) else [value] * dims
    if len(values) != dims or not all(isinstance(v, int) and not isinstance(v, bool) and low <= v <= MAX_WIDTH
                                      for v in values):
        raise ValueError(f"{key} {_brief(value)} is not an integer of at least {low}, or a list of {dims} of them")
    return tuple(values)


def _count(key: str, value, low: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= MAX_WIDTH:
        raise ValueError(f"{key} {_brief(value)} is not an integer from {low} to {MAX_WIDTH}")
    return value


def _choose(key: str, value, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{key} {_brief(value)} is not one of {', '.join(choices)}")
    return value


def _flag(key: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} {_brief(value)} is not true or false")
    return value


def _setting(key: str, value, dims: int):
    """One setting of a layer, checked and brought to its Block field's type."""
    if key in ("width", "out_channels", "hidden_size", "head_dim"):
        return _count(key, value)
    if key in ("activation", "nonlinearity"):
        choices = sorted(ACTIVATIONS) if key == "activation" else ["relu", "tanh"]
        return _choose(key, value, choices)
    if key == "bias":
        if value not in ("separate", "none"):
            raise ValueError(f"bias {_brief(value)} is not one of separate, none (an augmented bias is for sizes specs)")
        return value
    if key in ("affine", "causal", "out_proj"):
        return _flag(key, value)
    if key == "output":
        return _choose(key, value, ("last", "all"))
    if key in ("kernel_size", "stride"):
        return _sizes(key, value, dims, 1)
    if key == "padding":
        return _sizes(key, value, dims, 0)
    raise ValueError(f"unknown setting {key}")  # pragma: no cover - every key of KINDS is read above or in _block


def _block(item: dict, shape_in: tuple[int, ...], source: str, counter: list) -> Block:
    position = counter[0]
    kind = item.get("kind")
    here = f"layers (layer {position}"
    if not isinstance(kind, str) or kind not in KINDS:
        _fail(source, here + ")", f"kind {_brief(kind)} is not one of {', '.join(KINDS)}")
    here += f", {kind})"
    entry = KINDS[kind]
    allowed = ("kind",) + entry.keys + (("layers",) if kind == "residual" else ())
    for key in item:
        if key not in allowed:
            _fail(source, here, f"unknown key {_brief(key)}; a {kind} layer takes {', '.join(allowed)}")
    for key in entry.required:
        if key not in item:
            _fail(source, here, f"missing {key!r}; a {kind} layer needs {', '.join(entry.required)}")
    if len(shape_in) not in entry.inputs:
        takes = " or ".join({1: "a flat input", 2: "an input [C, L] or [T, d]", 3: "an input [C, H, W]"}[n]
                            for n in entry.inputs)
        hint = "; put a flatten layer before it" if entry.inputs == (1,) else ""
        _fail(source, here, f"its input has shape {list(shape_in)}; a {kind} layer takes {takes}{hint}")
    values: dict = {}
    dims = max(len(shape_in) - 1, 1)
    for key in entry.keys:
        if key == "eps" and key in item:
            values["eps"] = _eps(item["eps"], source, here)
        elif key in item:
            try:
                values[key] = _setting(key, item[key], dims)
            except ValueError as error:
                _fail(source, here, str(error))
    for key, other in entry.defaults:
        values.setdefault(key, values.get(other))
    if "stride" in entry.keys:
        values.setdefault("stride", (1,) * dims)
    if "padding" in entry.keys:
        values.setdefault("padding", (0,) * dims)
    if "head_dim" in entry.keys:  # attention's Q, K and V are as wide as its input unless given
        values.setdefault("head_dim", shape_in[-1])
    try:
        shape = entry.out_shape(values, shape_in)
    except ValueError as error:
        _fail(source, here, f"{error} (its input has shape {list(shape_in)})")
    inner: tuple[Block, ...] = ()
    if kind == "residual":
        inner, shape_inner = _layer_list(item.get("layers"), shape_in, source,
                                         f"layers (layer {position}, residual).layers", counter)
        if shape_inner != shape_in:
            _fail(source, here, f"its layers end at {_shape_words(shape_inner)}, not at its input's "
                                f"{_shape_words(shape_in)}; a residual block adds its input to its layers' output, "
                                "so they must keep the width")
    values.pop("width", None)
    return Block(kind=kind, position=position, n_in=prod(shape_in), width=prod(shape), inner=inner,
                 shape_in=shape_in, shape=shape, **values)


def _shape_words(shape: tuple[int, ...]) -> str:
    return f"width {shape[0]}" if len(shape) == 1 else f"shape {list(shape)}"


def _eps(value, source: str, here: str) -> Fraction:
    """eps as an exact rational: a string such as "1/100" or "1e-5", or a number; positive."""
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, str):
            eps = Fraction(value.strip())
        elif isinstance(value, (int, float)):
            eps = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
        else:
            raise ValueError
    except (ValueError, ZeroDivisionError, OverflowError):
        _fail(source, here, f"eps {_brief(value)} is not a number (an exact rational string such as \"1/100\", "
                            "or a number such as 1e-5)")
    if eps <= 0 or eps > 10**6 or eps.denominator > 10**30:
        _fail(source, here, f"eps {_brief(value)} is not a positive number of at most 1e6 with at most 30 digits")
    return eps
