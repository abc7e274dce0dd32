"""The scalar graph of a layer beyond dense (batch norm, layer norm, residual): entries, the inverse standard
deviation as an atom, definitions with pattern indices, and who reads what (the chain rule's sums).

A definition is written once for a pattern entry (xhat[b, i] = (x[b, i] - mu[i]) s(var[i])); an index of the
pattern ranges over its declared range. The readers of an entry are found by unifying it with every entry the
definitions read: a pattern index is bound, a summation index matches any entry of its range, any other index
must be equal. The chain rule's sums are read off these readers, never typed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import Function, IndexedBase, Sum

from derive.proofs.general.functions import CostPartial, LocalPartial
from derive.proofs.general.rules import layer_decide
from derive.proofs.general.steps import Scope


class Entry(IndexedBase):
    """An indexed quantity with no layer index (x[b, i] of a norm): printed x[b,i], not x^(b)[i]."""

    layered = False


class InvStd(Function):
    """s = (sigma^2 + eps)^(-1/2), an atom of its argument sigma^2: ds/dsigma^2 = -s^3/2, no square root written."""

    nargs = 1

    def fdiff(self, argindex=1):
        return -InvStd(self.args[0]) ** 3 / 2

    def _eval_is_positive(self):
        return True  # an inverse square root of sigma^2 + eps > 0

    def _eval_is_real(self):
        return True

    def _general_text(self, printer):
        v = self.args[0]
        if isinstance(v, sp.Indexed):
            return f"s[{','.join(printer._print(i) for i in v.indices)}]"
        return f"s({printer._print(v)})"

    def _general_latex(self, printer, exp=None):
        v = self.args[0]
        if isinstance(v, sp.Indexed):
            out = f"s_{{{','.join(printer._print(i) for i in v.indices)}}}"
        else:
            out = rf"s\left({printer._print(v)}\right)"
        return out if exp is None else f"{out}^{{{exp}}}"


class TotalPartial(Function):
    """du/dx: the derivative of u as a function of x through every path (u's inputs written out in x)."""

    nargs = 2

    def _general_latex(self, printer, exp=None):
        out = r"\frac{{d {}}}{{d {}}}".format(*(printer._print(a) for a in self.args))
        return out if exp is None else rf"\left({out}\right)^{{{exp}}}"

    def _general_text(self, printer):
        return "d{}/d{}".format(*(printer._print(a) for a in self.args))


@dataclass(frozen=True)
class Definition:
    """head = rhs for every value of the head's pattern indices in their ranges."""

    head: sp.Indexed  # a pattern: its indices are symbols, or lam - 1 style expressions of a layer symbol
    rhs: sp.Expr
    ranges: dict = field(default_factory=dict, hash=False, compare=False)  # pattern symbol -> (lo, hi)

    @property
    def pattern(self) -> list:
        """The pattern's symbols, in the order of the head's indices."""
        out = []
        for ix in self.head.indices:
            out += [s for s in sorted(ix.free_symbols, key=str) if s not in out]
        return out


def bound_ranges(expr, ranges: dict | None = None):
    """(node, the ranges of the summation indices enclosing it) for every Indexed of expr."""
    ranges = dict(ranges or {})
    if isinstance(expr, Sum):
        inner = dict(ranges)
        for var, lo, hi in expr.limits:
            inner[var] = (lo, hi)
        yield from bound_ranges(expr.function, inner)
        return
    if isinstance(expr, sp.Indexed):
        yield expr, ranges
        return
    for arg in expr.args:
        yield from bound_ranges(arg, ranges)


class Unmatched(Exception):
    """An entry and a read entry that are not the same entry, whatever the symbols' values."""


class Undecided(Exception):
    """An entry and a read entry that may be the same entry: who reads what is not shown."""


def solve_index(index, sym, target):
    """The value of sym that makes index (sym, or lam - 1 and the like) equal target; Undecided if none is one."""
    if index == sym:
        return target
    sol = sp.solve(sp.Eq(index, target), sym)
    if len(sol) != 1:
        raise Undecided
    return sol[0]


def unify(read: sp.Indexed, entry: sp.Indexed, pattern: list, bound: dict, scope: Scope) -> dict:
    """The pattern bindings under which `read` (in a definition) is `entry`.

    A summation index matches an index of the same range (the scope's); a pattern index is bound
    (lam - 1 = r - 1 solved for lam); any other index must be identical. Unmatched when the two are
    different entries for every value of the symbols, Undecided when that is not shown either way.
    """
    if read.base != entry.base or len(read.indices) != len(entry.indices):
        raise Unmatched
    binding: dict = {}
    for a, t in zip(read.indices, entry.indices):
        if a in bound:
            if scope.ranges.get(t) != bound[a]:
                raise Undecided  # the entry's index is not shown to run over the sum's range
            continue
        mine = [s for s in a.free_symbols if s in pattern]
        if len(mine) == 1:
            (p,) = mine
            sol = solve_index(a, p, t)
            if p in binding and sp.expand(binding[p] - sol) != 0:
                raise Undecided
            binding[p] = sol
        elif sp.expand(a - t) != 0:
            same = layer_decide(sp.Eq(a, t), scope)  # a^(r,P) read, a^(r,p) asked: is p = P here?
            if same is False or (a - t).is_number:
                raise Unmatched
            if same is None:
                raise Undecided
    return binding


@dataclass(frozen=True)
class Reader:
    """An entry that reads x, summed over its free pattern indices: (head, ((index, lo, hi), ...))."""

    head: sp.Expr
    limits: tuple

    def term(self, x) -> sp.Expr:
        """dC/dhead * dhead/dx summed over the free indices: one term of the chain rule on the graph."""
        body = CostPartial(self.head) * LocalPartial(self.head, x)
        return Sum(body, *self.limits) if self.limits else body


class Graph:
    """The definitions of a layer and the quantity C reads (its outputs): who reads what."""

    def __init__(self, definitions: list[Definition], outputs: IndexedBase, output_layer=None,
                 names: dict | None = None):
        self.definitions = definitions
        self.outputs = outputs
        self.output_layer = output_layer  # residual: C reads h^R only
        self.names = names or {}  # a free pattern index -> the summation index used for it in the chain rule

    def defined(self, base) -> Definition | None:
        return next((d for d in self.definitions if d.head.base == base), None)

    def definition(self, head: sp.Indexed, scope: Scope | None = None) -> sp.Expr:
        """The defining expression of one entry: the one definition whose pattern holds there (z^(r,1) reads
        h^(r-1), z^(r,p) for 2 <= p reads a^(r,p-1)); KeyError when none is shown to, or more than one."""
        scope = scope or Scope({}, {}, None)
        found = []
        for d in self.definitions:
            if d.head.base != head.base or len(d.head.indices) != len(head.indices):
                continue
            try:
                binding = unify(d.head, head, d.pattern, {}, scope)
            except (Unmatched, Undecided):
                continue
            if self._inside(d, binding, scope) is True:
                found.append(d.rhs.xreplace(binding))
        if len(found) != 1:
            raise KeyError(head)
        return found[0]

    @staticmethod
    def _inside(d: Definition, binding: dict, scope: Scope):
        """Whether each bound pattern symbol lies in its range: True, False or None (undecided)."""
        verdicts = []
        for sym, value in binding.items():
            if sym not in d.ranges:
                continue
            lo, hi = d.ranges[sym]
            if scope.ranges.get(value) == (lo, hi):
                verdicts.append(True)  # an index of the same range
                continue
            verdicts += [layer_decide(sp.Le(lo, value), scope), layer_decide(sp.Le(value, hi), scope)]
        if False in verdicts:
            return False
        return None if None in verdicts else True

    def reads_output(self, entry: sp.Indexed, scope: Scope):
        """Whether C reads entry: True, False or None (a layer bound undecided)."""
        if entry.base != self.outputs:
            return False
        if self.output_layer is None:
            return True
        return layer_decide(sp.Eq(entry.indices[0], self.output_layer), scope)

    def readers(self, entry: sp.Indexed, scope: Scope) -> list[Reader] | None:
        """Every entry whose definition reads `entry`, in the definitions' order; None if not decided."""
        if self.reads_output(entry, scope) is not False:
            return None  # C reads it directly, or that is undecided: no chain rule over the definitions
        out: list[Reader] = []
        for d in self.definitions:
            for read, bound in bound_ranges(d.rhs):
                try:
                    binding = unify(read, entry, d.pattern, bound, scope)
                except Unmatched:
                    continue
                except Undecided:
                    return None
                inside = self._inside(d, binding, scope)
                if inside is None:
                    return None
                if not inside:
                    continue
                free = [p for p in d.pattern if p not in binding]
                rename = {p: self.names.get(p, p) for p in free}
                head = d.head.xreplace({**binding, **rename})
                limits = tuple((rename[p], *(sp.sympify(v).xreplace(binding) for v in d.ranges[p])) for p in free)
                reader = Reader(head, limits)
                if reader not in out:
                    out.append(reader)
        return out

    def reachable(self, entry: sp.Indexed, scope: Scope, depth: int = 8):
        """Every output entry reached from entry (free indices as their summation indices); None if undecided."""
        found, frontier = [], [entry]
        for _ in range(depth):
            nxt = []
            for node in frontier:
                if self.reads_output(node, scope):
                    if node not in found:
                        found.append(node)
                    continue
                rs = self.readers(node, scope)
                if rs is None:
                    return None
                nxt += [r.head for r in rs]
            frontier = nxt
            if not frontier:
                return found
        return None  # deeper than any layer here: not shown
