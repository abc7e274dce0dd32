"""The model of one setting: the symbols (symbolic widths, indexed entries with the layer first) and the
definitions the proof starts from."""

from __future__ import annotations

import sympy as sp
from sympy import IndexedBase, Sum

from derive.errors import DeriveError
from derive.proofs.general.functions import CostPartial, sigma, sigma_prime
from derive.proofs.general.printing import compact, text
from derive.tables.layers import DENSE

INDEX = {"integer": True, "nonnegative": True}
WIDTH = {"integer": True, "positive": True}
SETTINGS = ("column", "row", "column-batch", "row-batch")
THEOREMS = ("BP1", "BP2", "BP3", "BP4")


def unknown_theorem(key) -> DeriveError:
    """The one-line error for a theorem that is not BP1..BP4."""
    return DeriveError(f"unknown theorem {key!r}; the theorems are {', '.join(THEOREMS)}")


class Model:
    """The symbols and definitions of one setting: convention column|row, one example or a batch.

    Entries are Indexed with the layer first: w[l, j, k] (column: from neuron k of
    layer l-1 to neuron j of layer l), W[l, k, j] (row: the same weight, stored at
    [k, j]), b[l, j], a[l, j], z[l, j], delta[l, j]; in a batch the example comes
    second: a[l, e, j], z[l, e, j], delta[l, e, j] (weights and biases are shared).
    """

    def __init__(self, setting: str = "column"):
        if setting not in SETTINGS:
            raise DeriveError(f"unknown setting {setting!r}; the settings are {', '.join(SETTINGS)}")
        self.setting = setting
        self.convention = setting.split("-")[0]
        self.batch = setting.endswith("-batch")
        self.l = sp.Symbol("l", integer=True, positive=True)
        self.L = sp.Symbol("L", integer=True, positive=True)
        self.j, self.k, self.m, self.q, self.e = sp.symbols("j k m q e", **INDEX)
        self.e2 = sp.Symbol("e'", **INDEX)
        self.B = sp.Symbol("B", **WIDTH)
        self.w = IndexedBase("W" if self.convention == "row" else "w")
        self.b, self.a, self.z, self.delta = (IndexedBase(n) for n in ("b", "a", "z", "delta"))

    # -- symbols -----------------------------------------------------------
    def width(self, layer) -> sp.Symbol:
        """n_{layer}: the number of neurons of a layer, a positive integer symbol."""
        return sp.Symbol(f"n_{{{compact(str(layer))}}}", **WIDTH)

    def last(self, layer) -> sp.Expr:
        return self.width(layer) - 1

    def _entry(self, base, layer, i, e=None):
        return base[layer, e, i] if self.batch else base[layer, i]

    def A(self, layer, i, e=None):
        return self._entry(self.a, layer, i, e)

    def Z(self, layer, i, e=None):
        return self._entry(self.z, layer, i, e)

    def D(self, layer, i, e=None):
        return self._entry(self.delta, layer, i, e)

    def weight(self, layer, out, inp):
        """The weight from neuron inp of layer-1 to neuron out of layer, in the convention's layout."""
        return self.w[layer, inp, out] if self.convention == "row" else self.w[layer, out, inp]

    def bias(self, layer, j):
        return self.b[layer, j]

    def over_examples(self, expr, e):
        return Sum(expr, (e, 0, self.B - 1)) if self.batch else expr

    # -- definitions ---------------------------------------------------------
    def z_definition(self, layer, j, e, dummy) -> sp.Expr:
        """z^layer_j = sum_k w^layer_{jk} a^{layer-1}_k + b^layer_j (row: sum_k a_k W_{kj} + b_j): the dense layer's."""
        return DENSE.symbolic_z(lambda k: self.weight(layer, j, k), lambda k: self.A(layer - 1, k, e),
                                self.bias(layer, j), dummy, self.last(layer - 1))

    def definition(self, head, dummy=None) -> sp.Expr:
        """The defining expression of an entry: z (with dummy as the summation index), a, or delta."""
        if isinstance(head, sp.Indexed):
            layer, *idx = head.indices
            e, i = (idx if self.batch else (None, idx[0]))
            if head.base == self.z:
                return self.z_definition(layer, i, e, dummy)
            if head.base == self.a:
                return sigma(self.Z(layer, i, e))
            if head.base == self.delta:
                return CostPartial(self.Z(layer, i, e))
        raise DeriveError(f"{text(head)} has no definition in the model")

    def reads(self) -> list[tuple[str, sp.Expr, list[tuple[str, sp.Expr]]]]:
        """The schematic definitions as (what, at layer lam, what it reads): the dependency graph.

        Read off the definitions themselves, so the chain rule's premise is checked
        against the same expressions the proof differentiates.
        """
        lam = sp.Symbol("lambda", integer=True, positive=True)
        out = []
        for name, rhs in (("a", self.definition(self.A(lam, self.j, self.e))),
                          ("z", self.z_definition(lam, self.j, self.e, self.q))):
            used = sorted({(x.base.name, x.indices[0]) for x in rhs.atoms(sp.Indexed)}, key=str)
            out.append((name, lam, used))
        out.append(("C", None, [("a", self.L)]))  # the cost reads the output activations only
        return out

    # -- the textbook formulas ---------------------------------------------
    def formula(self, key: str) -> sp.Expr:
        """The right-hand side of BP1..BP4 as the textbooks write it, in this setting."""
        l, L, j, k, e = self.l, self.L, self.j, self.k, self.e
        if key == "BP1":
            return CostPartial(self.A(L, j, e)) * sigma_prime(self.Z(L, j, e))
        if key == "BP2":
            inner = Sum(self.weight(l + 1, k, j) * self.D(l + 1, k, e), (k, 0, self.last(l + 1)))
            return inner * sigma_prime(self.Z(l, j, e))
        if key == "BP3":
            return self.over_examples(self.D(l, j, e), e)
        if key == "BP4":
            return self.over_examples(self.A(l - 1, k, e) * self.D(l, j, e), e)
        raise unknown_theorem(key)

    def title_tex(self) -> str:
        conv = {"column": "column convention, $z = W a + b$", "row": "row convention, $z = a W + b$"}[self.convention]
        return conv + (", a batch of $B$ examples ($C$ summed over the batch)" if self.batch else ", one example")

    def title(self) -> str:
        return self.title_tex().replace("$", "")
