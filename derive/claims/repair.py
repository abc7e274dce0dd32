"""The nearest repair of a refuted claim: one change that makes it hold, said concretely.

Candidates are single edits of the claim's tree, in this order: transpose an operand
(or drop a transpose), swap the operands of a matrix product, transpose the whole
right-hand side, swap two indices, another neuron's factor, another layer's factor,
add or drop the bias's constant 1, a sign, a constant factor. Each is evaluated in
floating point at two points of the network and kept only if it matches there; a
survivor is then proven exactly, like any claim. Only proven repairs are reported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Callable, Protocol

import numpy as np

from derive.claims.tree import LAYERED, Leaf, Node, Num, Op, at, substitute, walk, work_of
from derive.tables.layers import DENSE

KINDS = ("transpose", "order", "transpose result", "swap indices", "neuron", "layer", "bias", "sign", "factor")
MAX_CANDIDATES = 3_000
MAX_SEARCH_NODES = 200_000  # candidates times the claim's evaluation steps: long claims get the first candidates only
MAX_REPAIRS = 6


@dataclass(frozen=True)
class Repair:
    kind: str  # one of KINDS
    text: str  # "holds with W2.T in place of W2"
    old: str  # the part of the claim that changes, as written ("" for the whole)
    new: str  # what it becomes, in the claim's own syntax
    claim: str  # the whole repaired right-hand side

    def as_json(self) -> dict:
        return {"kind": self.kind, "text": self.text, "replaced": self.old, "by": self.new, "claim": self.claim}


@dataclass(frozen=True)
class Candidate:
    kind: str
    tree: Node
    old: str
    new: str
    text: str


class Search(Protocol):
    """Everything the search needs from a claim being checked (derive.claims.check.ClaimCheck provides it)."""

    printer: Callable[[Node], str]
    sizes: tuple[int, ...]
    bias: str  # "augmented", "separate", "none"
    row: bool
    product: str  # the op of a scalar times the claim: "mul" in text, "dot" in LaTeX

    def describe(self, node: Node) -> str:
        """A part of the claim as written (its span of the source), else printed in the claim's syntax."""

    def numeric_close(self, tree: Node) -> bool:
        """The tree's value matches the truth at two sample points (a filter, never a proof)."""

    def exact_holds(self, tree: Node) -> bool:
        """The tree's value equals the truth exactly, entry by entry."""

    def factor(self, tree: Node) -> Fraction | None:
        """truth / value, if it is one small constant at the sample points."""


def _index_ranges(search: Search, leaf: Leaf) -> list[range]:
    n, L = search.sizes, len(search.sizes) - 1
    l = leaf.layer
    if leaf.kind == "w":
        return [range(n[l]), range(DENSE.fan_in(n[l - 1], search.bias))]
    if leaf.kind == "y":
        return [range(n[L])]
    return [range(n[l])]


def _layers(search: Search, kind: str) -> range:
    L = len(search.sizes) - 1
    if kind in ("a", "A"):
        return range(0, L + 1)
    if kind not in LAYERED:
        return range(0)
    return range(1, L + 1)


def candidates(search: Search, tree: Node) -> list[Candidate]:
    """Every single edit, grouped by kind in the order of KINDS."""
    P = search.printer
    by_kind: dict[str, list[Candidate]] = {k: [] for k in KINDS}

    def sub(kind: str, path: tuple, new: Node, note: str = ""):
        if path and isinstance(new, Op) and new.op == "T":
            parent = at(tree, path[:-1])
            if isinstance(parent, Op) and parent.op == "T":  # a1.T -> (A1.T).T is A1 in place of a1.T
                path, new = path[:-1], new.args[0]
        old_node = at(tree, path)
        new_tree = substitute(tree, path, new)
        old, shown = search.describe(old_node), P(new)
        if kind == "bias" and isinstance(new, Num):
            text = f"holds with 1 (the bias's constant input) in place of {old}"
        else:
            text = f"holds with {shown} in place of {old}" + (f" ({note})" if note else "")
        by_kind[kind].append(Candidate(kind, new_tree, old, shown, text))

    nodes = list(walk(tree))
    for node, path in nodes:
        parent = at(tree, path[:-1]) if path else None
        under_T = isinstance(parent, Op) and parent.op == "T"
        # transposes
        if isinstance(node, Op) and node.op == "T":
            sub("transpose", path, node.args[0])
        elif path and not under_T and not isinstance(node, Num) and not (isinstance(node, Leaf) and node.index is not None):
            sub("transpose", path, Op("T", (node,), span=node.span))
        # the order of a product
        if isinstance(node, Op) and node.op in ("dot", "matmul"):
            a, b = node.args
            sub("order", path, replace(node, args=(b, a)))
        if isinstance(node, Leaf):
            _leaf_edits(search, node, path, sub)
        # signs
        if isinstance(node, Op) and node.op == "sub":
            sub("sign", path, replace(node, args=node.args[::-1]))
        if isinstance(node, Op) and node.op in ("add", "sub"):
            sub("sign", path, replace(node, op="sub" if node.op == "add" else "add"))
        if isinstance(node, Op) and node.op == "neg":
            sub("sign", path, node.args[0])
    # the whole right-hand side
    if not (isinstance(tree, Op) and tree.op == "T"):
        t = Op("T", (tree,))
        by_kind["transpose result"].append(Candidate("transpose result", t, "", P(t),
                                                     f"holds with the right-hand side transposed: {P(t)}"))
    neg = tree.args[0] if isinstance(tree, Op) and tree.op == "neg" else Op("neg", (tree,))
    if not (isinstance(tree, Op) and tree.op == "neg"):
        by_kind["sign"].append(Candidate("sign", neg, "", P(neg), f"holds with the opposite sign: {P(neg)}"))
    out = [c for k in KINDS for c in by_kind[k]]
    return out[:MAX_CANDIDATES]


def _leaf_edits(search: Search, leaf: Leaf, path: tuple, sub) -> None:
    if leaf.index is not None:
        items = leaf.index
        if len(items) == 2 and items[0] != items[1]:
            swapped = replace(leaf, index=(items[1], items[0]))
            sub("swap indices", path, swapped)
        for pos, rng in enumerate(_index_ranges(search, leaf)):
            if isinstance(items[pos], tuple):
                continue
            for v in rng:
                if v != items[pos]:
                    new_index = items[:pos] + (v,) + items[pos + 1:]
                    sub("neuron", path, replace(leaf, index=new_index), "another neuron's factor")
    for l in _layers(search, leaf.kind):
        if l != leaf.layer:
            sub("layer", path, replace(leaf, layer=l, alias=None), "another layer's factor")
    # the bias's constant 1
    if leaf.kind == "a" and leaf.index is not None and search.bias != "none":
        sub("bias", path, Num(1))
    if search.bias == "augmented" and leaf.index is None:
        l = leaf.layer
        added, dropped = "the bias's 1 added", "the bias's 1 dropped"
        if leaf.kind == "a":
            sub("bias", path, Op("T", (Leaf("A", l),)), added)
        if leaf.kind == "A":
            sub("bias", path, Op("T", (Leaf("a", l),)), dropped)
        if leaf.kind == "W":
            w = Leaf("w", l)
            sub("bias", path, Op("T", (w,)) if search.row else w, "the bias's weights dropped")
        if leaf.kind == "w":
            W = Leaf("W", l)
            sub("bias", path, Op("T", (W,)) if search.row else W, "the bias's weights added")


def find(search: Search, tree: Node) -> list[Repair]:
    """The repairs that make the claim hold, nearest first; each one proven exactly."""
    found: list[Repair] = []
    seen: set[str] = set()
    for cand in candidates(search, tree)[:max(1, MAX_SEARCH_NODES // work_of(tree))]:
        if cand.text in seen or not search.numeric_close(cand.tree):
            continue
        seen.add(cand.text)
        if search.exact_holds(cand.tree):
            found.append(Repair(cand.kind, cand.text, cand.old, cand.new, search.printer(cand.tree)))
            if len(found) >= MAX_REPAIRS:
                return found
    c = search.factor(tree)
    if c is not None:
        scaled = Op(search.product, (Num(_rational(c)), tree))
        if search.exact_holds(scaled):
            shown = search.printer(scaled)
            found.append(Repair("factor", f"holds multiplied by {c}: {shown}", "", str(c), shown))
    return found


def _rational(c: Fraction):
    import sympy as sp

    return sp.Rational(c.numerator, c.denominator)


def ratio(truth: np.ndarray, value: np.ndarray) -> Fraction | None:
    """truth / value as one small fraction, if it is one constant across the entries."""
    t, v = np.ravel(truth).astype(float), np.ravel(value).astype(float)
    if t.shape != v.shape:
        return None
    mask = np.abs(v) > 1e-9
    if not mask.any() or not np.all(np.isfinite(t)) or not np.all(np.isfinite(v)):
        return None
    if np.any(np.abs(t[~mask]) > 1e-9):
        return None
    r = t[mask] / v[mask]
    if np.max(np.abs(r - r[0])) > 1e-9 * (1 + abs(r[0])):
        return None
    c = Fraction(float(r[0])).limit_denominator(1000)
    if c in (0, 1, -1) or abs(float(c) - r[0]) > 1e-9 * (1 + abs(r[0])):
        return None
    return c
