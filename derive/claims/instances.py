"""A claim with free letters, checked at every value: each layer where the formula applies, each unit, each example.

A claim may leave letters free: a layer (Ng's dW^{[l]}, Nielsen's delta^l, Wikipedia's l+1),
a unit (Bishop's delta_j, where the letter also carries the unit's layer: i feeds j feeds k),
an example (Rumelhart-Hinton-Williams' p), or a sum's range (\\sum_k with no bounds runs over
every k the summand can take). The layers are solved first (a weight w_{kj} puts k one layer
above j; a target t_k puts k at the output), then every admissible assignment is made
concrete: written unit numbers become the network's (the notation's first unit and bias
position), sums are written out, and each instance is an ordinary claim. A layer where a
quantity of the formula does not exist is not an instance (BP2 has none at the output).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

from derive.claims.tree import MAX_SUM_RANGE, ClaimError, Leaf, Node, Num, Op, partial_ratio, walk
from derive.tables.reading import Reading

MAX_INSTANCES = 256


@dataclass(frozen=True)
class Network:
    """What the instances need of the network: widths by layer, examples, whether it has biases."""

    sizes: tuple[int, ...]
    examples: int
    bias: str  # "separate", "augmented" or "none"
    activations: tuple[str, ...] = ()  # layer 1..L

    @property
    def L(self) -> int:
        return len(self.sizes) - 1


@dataclass(frozen=True)
class Instance:
    values: tuple[tuple[str, int], ...]  # the letters' values, as written ("l", 2), ("j", 1)
    lhs: Node | None
    rhs: Node
    example: int | None  # the example an example letter took, or None

    def text(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.values)


def needs_instances(nodes: list[Node | None], reading: Reading) -> bool:
    """Whether any letter is left free, or the notation numbers units in its own way."""
    if reading.index_base != 0 or reading.bias_index is not None or reading.unmarked == "implied":
        return True
    for root in nodes:
        if root is None:
            continue
        bound: set[str] = set()
        for n, _ in walk(root):
            if isinstance(n, Op) and n.op == "sum":
                var, lo, hi = n.param
                if var is None or lo is None or hi is None:
                    return True
                bound.add(var)
            if isinstance(n, Op) and n.op == "change":
                return True
            if isinstance(n, Leaf) and (isinstance(n.layer, tuple) or n.example is not None or n.kind == "count"):
                return True
            if isinstance(n, Op) and n.op in ("sigma", "sigma_prime") and isinstance(n.param, tuple):
                return True
            if isinstance(n, Leaf) and n.index and any(isinstance(i, tuple) and i[0] not in bound for i in n.index):
                return True
    return False


class _Layers:
    """Layer letters joined by offsets (union-find): layer(a) = layer(b) + d, and letters fixed to a layer."""

    def __init__(self):
        self.parent: dict[str, tuple[str, int]] = {}
        self.fixed: dict[str, int] = {}

    def find(self, v: str) -> tuple[str, int]:
        off = 0
        while v in self.parent:
            v, d = self.parent[v]
            off += d
        return v, off

    def join(self, a: str, b: str, d: int, span) -> None:
        """layer(a) = layer(b) + d."""
        ra, oa = self.find(a)
        rb, ob = self.find(b)
        if ra == rb:
            if oa != ob + d:
                raise ClaimError("the layers of this formula's letters contradict each other", span)
            return
        self.parent[ra] = (rb, ob + d - oa)
        if ra in self.fixed:
            self.fix(rb, self.fixed.pop(ra) - (ob + d - oa), span)

    def fix(self, v: str, layer: int, span) -> None:
        r, off = self.find(v)
        value = layer - off
        if r in self.fixed and self.fixed[r] != value:
            raise ClaimError("the layers of this formula's letters contradict each other", span)
        self.fixed[r] = value


def instances(lhs: Node | None, rhs: Node, reading: Reading, net: Network) -> list[Instance]:
    """Every admissible concrete claim, or ClaimError when the formula applies nowhere or is too large to list."""
    rhs = _name_bare_sums(rhs)
    roots = [r for r in (lhs, rhs) if r is not None]
    layers = _Layers()
    leaves = [n for r in roots for n, _ in walk(r) if isinstance(n, Leaf)]
    derived = {id(n.args[0]) for r in roots for n, _ in walk(r)
               if isinstance(n, Op) and n.op in ("grad", "change")}  # a gradient is of layers 1 to L
    for r in roots:
        for n, _ in walk(r):
            ratio = partial_ratio(n)
            if ratio is not None:
                top, by = ratio
                if isinstance(top, Leaf) and top.kind == "C":
                    derived.add(id(by))  # dC/da_j: of layers 1 to L, as every gradient
                elif isinstance(top, Leaf) and isinstance(by, Leaf) and top.kind == by.kind == "z" \
                        and top.index and by.index and reading.unmarked == "implied" \
                        and isinstance(top.index[0], tuple) and isinstance(by.index[0], tuple):
                    layers.join(f"#{top.index[0][0]}", f"#{by.index[0][0]}", 1, n.span)  # Bishop's da_k/da_j
    for leaf in leaves:
        _constrain(leaf, layers, reading, net)
    marked = {n.param[1] for r in roots for n, _ in walk(r)
              if isinstance(n, Op) and n.op in ("sigma", "sigma_prime") and isinstance(n.param, tuple)}
    names = sorted(({layers.find(v)[0] for leaf in leaves for v in _layer_vars(leaf)}
                    | {layers.find(v)[0] for v in marked}) - set(layers.fixed))
    loose = sorted({v[2:] for v in names if v.startswith("#=")})
    if len(loose) > 1:
        raise ClaimError(f"{' and '.join(loose)} carry no layer and no index letter, so their layers are not known "
                         "relative to each other: write the layers, or index them (w_{ji}, o_i)", rhs.span)
    examples = sorted(_example_letters(roots))
    out: list[Instance] = []
    for choice in itertools.product(range(net.L + 1), repeat=len(names)):
        value = dict(zip(names, choice)) | layers.fixed
        layer_of = {}
        ok = True
        for v in [v for leaf in leaves for v in _layer_vars(leaf)] + sorted(marked):
            r, off = layers.find(v)
            layer_of[v] = value[r] + off
        for leaf in leaves:
            layer = _layer(leaf, layer_of)
            if not _exists(leaf, layer, net) or (id(leaf) in derived and layer is not None and layer < 1):
                ok = False
                break
        if not ok or (names and not _same_functions(roots, layer_of, net)):
            continue  # a layer the formula does not apply to: its activation is another than the one it names
        free = _free_letters(roots)
        ranges = {}
        for var in free:
            rng = _range(var, roots, layer_of, reading, net)
            if not rng:
                ok = False
                break
            ranges[var] = rng
        if not ok:
            continue
        for pick in itertools.product(*[ranges[v] for v in free], *[range(net.examples) for _ in examples]):
            env = dict(zip(free, pick[:len(free)]))
            ex = dict(zip(examples, pick[len(free):]))
            units = tuple((k if f"#{k}" not in layer_of else f"{k} (layer {layer_of[f'#{k}']})", v)
                          for k, v in sorted(env.items()))
            shown = tuple((k if not k.startswith("#=") else f"layer of {k[2:]}", v) for k, v in value.items()
                          if (not k.startswith("#") or k.startswith("#=")) and k in names) \
                + units + tuple(sorted(ex.items()))
            concrete = [_concrete(r, env, layer_of, ex, reading, net) for r in (lhs, rhs)]
            out.append(Instance(shown, concrete[0], concrete[1], next(iter(ex.values()), None)))
            if len(out) > MAX_INSTANCES:
                raise ClaimError(f"the formula's letters take more than {MAX_INSTANCES} values at this network; check it "
                                 "at smaller sizes", rhs.span)
    if not out:
        raise ClaimError("the formula applies at no layer of this network (a quantity it names does not exist "
                         "wherever its letters can stand)", rhs.span)
    return out


def _same_functions(roots, layer_of: dict, net: Network) -> bool:
    """Every activation the formula names (\\tanh(a_j)) is the one of the layer it is applied at."""
    for r in roots:
        for n, _ in walk(r):
            if isinstance(n, Op) and n.op in ("sigma", "sigma_prime") and isinstance(n.param, str) \
                    and isinstance(n.args[0], Leaf) and n.args[0].kind == "z" and net.activations:
                layer = _layer(n.args[0], layer_of)
                if isinstance(layer, int) and 1 <= layer <= net.L and net.activations[layer - 1] != n.param:
                    return False
    return True


def _example_letters(roots) -> set[str]:
    """Example letters left free (E_n, o_{pj}, Delta_p w), not those a sum runs over (Bishop's sum over n)."""
    out: set[str] = set()

    def visit(n: Node, bound: frozenset):
        if isinstance(n, Op):
            if n.op == "sum":
                bound = bound | {n.param[0]}
            if n.op == "change" and isinstance(n.param, str) and n.param not in bound:
                out.add(n.param)
            for a in n.args:
                visit(a, bound)
        elif isinstance(n, Leaf) and isinstance(n.example, str) and n.example not in bound:
            out.add(n.example)

    for r in roots:
        visit(r, frozenset())
    return out


def _name_bare_sums(node: Node) -> Node:
    """\\sum with no index written: the one letter of its summand that nothing outside binds."""
    if not isinstance(node, Op):
        return node
    args = tuple(_name_bare_sums(a) for a in node.args)
    if node.op == "sum" and node.param[0] is None:
        letters = _free_letters([args[0]])
        if len(letters) != 1:
            raise ClaimError("a \\sum without its index must have one index letter in its summand; write \\sum_k",
                             node.span)
        return replace(node, args=args, param=(letters[0], None, None))
    return replace(node, args=args)


def _layer_vars(leaf: Leaf) -> list[str]:
    return [leaf.layer[0]] if isinstance(leaf.layer, tuple) else []


def _layer(leaf: Leaf, layer_of: dict):
    if isinstance(leaf.layer, tuple):
        return layer_of[leaf.layer[0]] + leaf.layer[1]
    return leaf.layer


def _constrain(leaf: Leaf, layers: _Layers, reading: Reading, net: Network) -> None:
    """What a leaf says of its letters' layers: written layers, a weight's two units, a target at the output."""
    if isinstance(leaf.layer, tuple):
        v, off = leaf.layer
        if leaf.index and reading.unmarked == "implied":
            lead = leaf.index[0]
            if isinstance(lead, tuple) and f"#{lead[0]}" != v:
                layers.join(f"#{lead[0]}", v, -off, leaf.span)
    if reading.unmarked != "implied" or not leaf.index:
        return
    units = [i for i in leaf.index if isinstance(i, tuple)]
    if leaf.kind == "w" and len(leaf.index) == 2 and isinstance(leaf.index[1], tuple):
        to = leaf.index[0]
        if isinstance(to, tuple):
            layers.join(f"#{leaf.index[1][0]}", f"#{to[0]}", -1, leaf.span)
        elif isinstance(leaf.layer, int):
            layers.fix(f"#{leaf.index[1][0]}", leaf.layer - 1, leaf.span)
        elif isinstance(leaf.layer, tuple):
            layers.join(f"#{leaf.index[1][0]}", leaf.layer[0], leaf.layer[1] - 1, leaf.span)
        units = [to] if isinstance(to, tuple) else []
    for u in units[:1]:
        if leaf.kind == "y":
            layers.fix(f"#{u[0]}", net.L, leaf.span)
        elif isinstance(leaf.layer, int):
            layers.fix(f"#{u[0]}", leaf.layer, leaf.span)


def _exists(leaf: Leaf, layer, net: Network) -> bool:
    if layer is None:
        return True
    if leaf.kind in ("a", "A"):
        return 0 <= layer <= net.L
    if leaf.kind in ("z", "w", "W", "b", "delta", "D"):
        return 1 <= layer <= net.L and not (leaf.kind == "b" and net.bias == "none")
    return True


def _free_letters(roots) -> list[str]:
    """Index letters no sum with bounds binds, in order of appearance (sums without bounds bind theirs too)."""
    seen: list[str] = []

    def visit(n: Node, bound: frozenset):
        if isinstance(n, Op):
            if n.op == "sum":
                bound = bound | {n.param[0]}
            for a in n.args:
                visit(a, bound)
        elif isinstance(n, Leaf) and n.index:
            for i in n.index:
                if isinstance(i, tuple) and i[0] not in bound and i[0] not in seen:
                    seen.append(i[0])

    for r in roots:
        visit(r, frozenset())
    return seen


def _units(kind: str, layer: int, position: int, reading: Reading, net: Network) -> set[int]:
    """The written numbers a unit index may take at a leaf's position."""
    base = reading.index_base
    if kind == "w" and position == 1:
        n = range(base, base + net.sizes[layer - 1])
        return set(n) | ({reading.bias_index} if reading.bias_index is not None and net.bias != "none" else set())
    if kind == "y":
        return set(range(base, base + net.sizes[net.L]))
    n = set(range(base, base + net.sizes[layer]))
    if kind == "a" and reading.bias_index is not None:
        n.add(reading.bias_index)  # Bishop's z_0 = 1: the bias's input
    return n


def _range(var: str, roots, layer_of: dict, reading: Reading, net: Network, body: Node | None = None) -> list[int]:
    """The values a letter can take: every leaf that indexes with it must have that unit."""
    allowed: set[int] | None = None
    for r in ([body] if body is not None else roots):
        for n, _ in walk(r):
            if isinstance(n, Leaf) and n.index:
                layer = _layer(n, layer_of)
                for pos, i in enumerate(n.index):
                    if isinstance(i, tuple) and i[0] == var:
                        ok = {u - i[1] for u in _units(n.kind, layer if layer is not None else net.L, pos, reading, net)}
                        allowed = ok if allowed is None else allowed & ok
    return sorted(allowed or ())


def _concrete(node: Node | None, env: dict, layer_of: dict, ex: dict, reading: Reading, net: Network):
    """The tree with every letter given its value and every unit in the network's own numbering."""
    if node is None:
        return None
    if isinstance(node, Num):
        return node
    if isinstance(node, Leaf):
        if node.kind == "count":
            return Num(net.examples, span=node.span)
        layer = _layer(node, layer_of)
        example = env.get(node.example, ex.get(node.example)) if isinstance(node.example, str) else node.example
        node = replace(node, example=example)  # an example letter's value: that example's own quantity
        if node.index is None:
            return replace(node, layer=layer)
        written = tuple(env[i[0]] + i[1] if isinstance(i, tuple) else i for i in node.index)
        for i in written:
            if isinstance(i, tuple):  # pragma: no cover - every letter has a value here
                raise ClaimError(f"index {i[0]} has no value", node.span)
        return _unit(node, layer, written, reading, net)
    if node.op == "sum":
        var, lo, hi = node.param
        if var in env:
            raise ClaimError(f"the \\sum's letter {var} is already in use", node.span)
        if var in reading.example_letter:  # Bishop's sum over n of E_n: every example of the batch
            values = list(range(net.examples))
        else:
            values = _range(var, [], layer_of, reading, net, body=node.args[0])
        values = [v for v in values if (lo is None or v >= lo) and (hi is None or v <= hi)]
        if hi is not None and lo is not None and values != list(range(lo, hi + 1)) and var not in reading.example_letter:
            raise ClaimError(f"\\sum_{{{var}={lo}}}^{{{hi}}} runs past the units its summand has at this layer "
                             f"({values[0] if values else '-'} to {values[-1] if values else '-'})", node.span)
        if not values or len(values) > MAX_SUM_RANGE:
            raise ClaimError(f"the \\sum over {var} has no terms at this network", node.span)
        terms = [_concrete(node.args[0], env | {var: v}, layer_of, ex, reading, net) for v in values]
        out = terms[0]
        for t in terms[1:]:
            out = Op("add", (out, t), span=node.span)
        return out
    if node.op == "change" and isinstance(node.param, str):
        node = replace(node, param=ex.get(node.param))
    if node.op in ("sigma", "sigma_prime") and isinstance(node.param, tuple):  # f^{[l]}: the activation of layer l
        layer = layer_of[node.param[1]] + node.param[2]
        if not 1 <= layer <= net.L:
            raise ClaimError(f"the activation of layer {layer}: there is no such layer", node.span)
        node = replace(node, param=net.activations[layer - 1])
    return replace(node, args=tuple(_concrete(a, env, layer_of, ex, reading, net) for a in node.args))


def _unit(leaf: Leaf, layer, written: tuple, reading: Reading, net: Network) -> Node:
    """A written unit in the network's numbering: Bishop's w_{j0} is the bias b_j and z_0 = 1."""
    base, bias = reading.index_base, reading.bias_index
    if leaf.kind == "w":
        to, frm = written
        if bias is not None and frm == bias:
            return Leaf("b", layer, (to - base,), alias=leaf.alias, span=leaf.span)
        return replace(leaf, layer=layer, index=(to - base, frm - base))
    if leaf.kind == "a" and bias is not None and written[0] == bias:
        return Num(1, span=leaf.span)
    return replace(leaf, layer=layer, index=tuple(i - base for i in written))
