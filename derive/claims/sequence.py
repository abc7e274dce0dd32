"""A claim written as steps: Goodfellow's Algorithm 6.4, g <- ... with a running g, checked step by step.

Each line of the claim is a step: `g \\leftarrow \\nabla_{a^{(k)}} J = g \\odot f'(a^{(k)})` sets the
running name g to its value and claims that value is the quantity named; `\\nabla_{W^{(k)}} J =
g\\, h^{(k-1)\\top}` claims a quantity from the running g. The steps that name the layer k
are the loop's body and run for k = L, L-1, ..., 1, as backpropagation does; the steps
before run once first. A step is an ordinary claim once g is replaced by the value the steps
before gave it (as a tree, so the proof stays exact), so every step's verdict is exact, and
the verdict on the whole is the first step that fails, with its line and its k. A step
whose quantities do not exist at some k (the inputs' gradient, at k = 1) is skipped there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from derive.claims.instances import Network, instances, needs_instances
from derive.claims.latex import LatexReader, strip_typography
from derive.claims.tree import ClaimError, Leaf, Node, Op, Shape, shifted, walk

_LOOP_LINE = re.compile(r"^\s*(?:\\text\w*\s*\{\s*)?(?:for|end|return)\b", re.IGNORECASE)
_LEFT = re.compile(r"^\s*([A-Za-z])\s*\\leftarrow")


@dataclass(frozen=True)
class Step:
    line: int  # from 1
    offset: int  # where the line starts in the claim
    target: str | None
    quantity: Node | None
    value: Node


def is_sequence(source: str) -> bool:
    source = strip_typography(source)
    return "\\leftarrow" in source and bool(_LEFT.search(source, 0) or re.search(r"\n\s*[A-Za-z]\s*\\leftarrow", source))


def read_steps(source: str, shape: Shape) -> list[Step]:
    """Each line a step (loop markers such as 'for k = l, ..., 1' skipped); ClaimError naming the line."""
    variables = frozenset(m.group(1) for m in re.finditer(r"(?m)^\s*([A-Za-z])\s*\\leftarrow",
                                                          strip_typography(source)))
    steps, offset = [], 0
    for number, line in enumerate(re.split(r"\n|\\\\", source), 1):
        start = source.find(line, offset)
        offset = start + len(line)
        if not line.strip() or _LOOP_LINE.match(line):
            continue
        try:
            target, quantity, value = LatexReader(line, shape, variables).statement()
        except ClaimError as exc:
            span = (exc.span[0] + start, exc.span[1] + start) if exc.span else None
            raise ClaimError(f"line {number}: {exc.message}", span) from None
        steps.append(Step(number, start, target, shifted(quantity, start), shifted(value, start)))
    if not steps:
        raise ClaimError("no steps", (0, 0))
    return steps


def _layer_letters(node: Node | None) -> set[str]:
    if node is None:
        return set()
    return {n.layer[0] for n, _ in walk(node) if isinstance(n, Leaf) and isinstance(n.layer, tuple)
            and not n.layer[0].startswith("#")}


def _with(node: Node | None, values: dict, layer: dict):
    """The tree with the running names replaced by their values and the loop's layer letter set."""
    if node is None:
        return None
    if isinstance(node, Leaf):
        if node.kind == "var":
            if node.alias not in values:
                raise ClaimError(f"{node.alias} is used before a step gives it a value", node.span)
            return values[node.alias]
        if isinstance(node.layer, tuple) and node.layer[0] in layer:
            return replace(node, layer=layer[node.layer[0]] + node.layer[1])
        return node
    if isinstance(node, Op):
        if node.op in ("sigma", "sigma_prime") and isinstance(node.param, tuple) and node.param[1] in layer:
            node = replace(node, param=("at", layer[node.param[1]] + node.param[2]))
        return replace(node, args=tuple(_with(a, values, layer) for a in node.args))
    return node


def _named(node: Node | None, net: Network):
    """f^{(k)} at a known k: the activation of that layer, by name (None where there is no such layer)."""
    if not isinstance(node, Op):
        return node
    args = tuple(_named(a, net) for a in node.args)
    if node.op in ("sigma", "sigma_prime") and isinstance(node.param, tuple) and node.param[0] == "at":
        k = node.param[1]
        return replace(node, args=args, param=net.activations[k - 1] if 1 <= k <= net.L else None)
    return replace(node, args=args)


def _exists(node: Node | None, net: Network) -> bool:
    """Every layer the step names exists, and a gradient is of layers 1 to L."""
    if node is None:
        return True
    for n, _ in walk(node):
        if isinstance(n, Leaf) and isinstance(n.layer, int):
            low = 0 if n.kind in ("a", "A") else 1
            if not low <= n.layer <= net.L:
                return False
        if isinstance(n, Op) and n.op in ("grad", "change") and isinstance(n.args[0], Leaf) \
                and isinstance(n.args[0].layer, int) and n.args[0].layer < 1:
            return False
    return True


def run(steps: list[Step], shape: Shape, net: Network):
    """The checks the steps make, in order: (step, the loop's letters' values, quantity, value) for each claim."""
    loop = sorted({v for s in steps for v in _layer_letters(s.quantity) | _layer_letters(s.value)})
    if len(loop) > 1:
        raise ClaimError(f"the steps loop over one layer letter; these use {', '.join(loop)}", (0, 0))
    body = [i for i, s in enumerate(steps) if loop and (_layer_letters(s.quantity) | _layer_letters(s.value))]
    first, last = (body[0], body[-1]) if body else (len(steps), len(steps) - 1)
    order = [(s, {}) for s in steps[:first]]
    for k in range(net.L, 0, -1):
        order += [(s, {loop[0]: k}) for s in steps[first:last + 1]]
    order += [(s, {}) for s in steps[last + 1:]]
    values: dict[str, Node] = {}
    checks = []
    for step, layer in order:
        quantity, value = _with(step.quantity, values, layer), _with(step.value, values, layer)
        quantity, value = _named(quantity, net), _named(value, net)
        if not (_exists(quantity, net) and _exists(value, net)):
            continue
        if quantity is not None:
            if needs_instances([quantity, value], shape.notation):
                for inst in instances(quantity, value, shape.notation, net):
                    checks.append((step, layer, inst, inst.lhs, inst.rhs))
            else:
                checks.append((step, layer, None, quantity, value))
        if step.target is not None:
            values[step.target] = value
    if not checks:
        raise ClaimError("no step names a quantity to check (write g \\leftarrow \\nabla_{a^{(k)}} J = ...)", (0, 0))
    return checks
