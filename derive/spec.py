"""Network specs: TOML files (built-in ones in derive/specs/) validated into a frozen Spec."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from derive.tables.activations import ACTIVATIONS
from derive.tables.costs import COSTS
from derive.tables.layers import DENSE
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


def load_spec(name_or_path: str | Path | Spec) -> Spec:
    """A built-in spec by name, or a user's TOML file by path."""
    if isinstance(name_or_path, Spec):
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


def _fail(source: str, field: str, problem: str) -> None:
    raise SpecError(f"{source}: field '{field}': {problem}")


def _choice(table: dict, source: str, field: str, choices) -> str:
    value = table[field]
    if not isinstance(value, str) or value not in choices:
        _fail(source, field, f"{_brief(value)} is not one of {', '.join(choices)}")
    return value


def validate(table: dict, source: str = "<spec>") -> Spec:
    """Check every field of a spec table; raise SpecError naming the first wrong one."""
    if not isinstance(table, dict):
        raise SpecError(f"{source}: a spec is a TOML table with keys {', '.join(REQUIRED)}")
    for key in table:
        if key not in REQUIRED + OPTIONAL:
            key = str(key) if len(str(key)) <= 60 else str(key)[:59] + "…"
            _fail(source, shown(key), f"unknown key; valid keys: {', '.join(REQUIRED + OPTIONAL)}")
    for key in REQUIRED:
        if key not in table:
            _fail(source, key, f"missing; a spec needs {', '.join(REQUIRED)}")

    name = table["name"]
    if not isinstance(name, str) or not name.isidentifier():
        _fail(source, "name", f"{_brief(name)} is not a name (letters, digits and _, not starting with a digit)")

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

    examples = table.get("examples", 1 if batch == "single" else 2)
    if not isinstance(examples, int) or isinstance(examples, bool) or not 1 <= examples <= MAX_EXAMPLES:
        _fail(source, "examples", f"{_brief(examples)} is not an integer from 1 to {MAX_EXAMPLES}")
    if batch == "single" and examples != 1:
        _fail(source, "examples", f"{_brief(examples)} examples with batch = 'single'; use 'mean' or 'sum'")
    description = table.get("description", "")
    if not isinstance(description, str):
        _fail(source, "description", "must be a string")

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
    sizes = parse_sizes(sizes_text)
    if sizes == spec.sizes:
        return spec, ""
    note = f"proven at sizes {'-'.join(map(str, sizes))} (the spec's own are {'-'.join(map(str, spec.sizes))})"
    reduced = spec.with_sizes(sizes)
    if len(set(spec.activation)) > 1 and reduced.activation != spec.activation:  # spread or dropped: say how
        note += (f", activations {', '.join(reduced.activation)} (the spec's own are {', '.join(spec.activation)}: "
                 "the hidden layers take the first, the output keeps its own)")
    return reduced, note
