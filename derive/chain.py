"""The chain rule over the scalar graph.

Nodes are z^{(l)}_j and a^{(l)}_j of each example, and the cost C. Every edge carries a
local derivative: sympy.diff of the head node's own expression with respect to the
tail (dz/dw = a, dz/da = w, da/dz = sigma'(z) written through a, dC/da). A partial
dC/dp is the sum over all paths from p to C of the product of the local factors.
Paths are listed for display while there are few of them; the value is always also
accumulated in reverse order over the graph, so the work grows with the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from derive.network import Network, Param

MAX_LISTED_PATHS = 64


@dataclass(frozen=True)
class Factor:
    """One local derivative d(head)/d(tail) along a path."""

    head: str  # node names as in the network's symbols: "C", "a2_0", "z2_0"
    tail: str
    value: sp.Expr


@dataclass(frozen=True)
class Path:
    example: int
    nodes: tuple[str, ...]  # from the parameter to C
    factors: tuple[Factor, ...]

    @property
    def product(self) -> sp.Expr:
        return sp.Mul(*[f.value for f in self.factors])


@dataclass(frozen=True)
class Derivation:
    """dC/dp by the chain rule: its paths (when listed) and its value."""

    param: Param
    paths: tuple[Path, ...] | None  # None when there are too many to list
    n_paths: int
    value: sp.Expr  # sum of the path products (or the accumulated value)


class ChainRule:
    """Local derivatives of one network, cached, and the chain rule built from them."""

    def __init__(self, net: Network):
        self.net = net

    # -- local derivatives --------------------------------------------------
    @cached_property
    def dC_da(self) -> list[list[sp.Expr]]:
        net = self.net
        return [[sp.diff(net.C, a) for a in net.a[e][net.L]] for e in range(net.E)]

    def dz_da(self, e: int, l: int, j: int, k: int) -> sp.Expr:
        """d z^{(l)}_j / d a^{(l-1)}_k."""
        return sp.diff(self.net.z[e][l][j], self.net.a[e][l - 1][k])

    def dz_dp(self, e: int, p: Param) -> sp.Expr:
        return sp.diff(self.net.z[e][p.layer][p.j], p.symbol)

    def da_dz(self, e: int, l: int, m: int, j: int) -> sp.Expr:
        net = self.net
        if net.acts[l].elementwise:
            return net.sigma_prime[e][l][j] if m == j else sp.Integer(0)
        return net.da_dz(e, l, m, j)

    def _a_successors(self, l: int, j: int) -> range:
        """Neurons m of layer l whose activation depends on z^{(l)}_j."""
        return range(j, j + 1) if self.net.acts[l].elementwise else range(self.net.sizes[l])

    # -- reverse accumulation ------------------------------------------------
    @cached_property
    def adjoints(self) -> list[list[list[sp.Expr]]]:
        """dC/dz^{(l)}_j for every example, layer and neuron, accumulated from C backwards."""
        net = self.net
        out = []
        for e in range(net.E):
            dz: list[list[sp.Expr]] = [[] for _ in range(net.L + 1)]
            da = self.dC_da[e]
            for l in range(net.L, 0, -1):
                dz[l] = [
                    sp.Add(*[da[m] * self.da_dz(e, l, m, j) for m in self._a_successors(l, j)])
                    for j in range(net.sizes[l])
                ]
                if l > 1:
                    da = [
                        sp.Add(*[dz[l][j] * self.dz_da(e, l, j, k) for j in range(net.sizes[l])])
                        for k in range(net.sizes[l - 1])
                    ]
            out.append(dz)
        return out

    def accumulated(self, p: Param) -> sp.Expr:
        net = self.net
        return sp.Add(*[self.adjoints[e][p.layer][p.j] * self.dz_dp(e, p) for e in range(net.E)])

    # -- paths -----------------------------------------------------------------
    def count_paths(self, p: Param) -> int:
        net = self.net
        count = 1
        for l in range(p.layer, net.L + 1):
            if not net.acts[l].elementwise:
                count *= net.sizes[l]
            if l < net.L:
                count *= net.sizes[l + 1]
        return count * net.E

    def paths(self, p: Param) -> list[Path]:
        net = self.net
        found: list[Path] = []
        for e in range(net.E):
            z0 = net.zsym[e][p.layer][p.j]
            start = Factor(str(z0), str(p.symbol), self.dz_dp(e, p))

            def walk(l: int, j: int, nodes: list[str], factors: list[Factor]) -> None:
                # we stand at z^{(l)}_j
                for m in self._a_successors(l, j):
                    a_m = net.a[e][l][m]
                    f_a = Factor(str(a_m), nodes[-1], self.da_dz(e, l, m, j))
                    if l == net.L:
                        f_c = Factor("C", str(a_m), self.dC_da[e][m])
                        found.append(Path(e, tuple(nodes + [str(a_m), "C"]), tuple(factors + [f_a, f_c])))
                        continue
                    for q in range(net.sizes[l + 1]):
                        z_q = net.zsym[e][l + 1][q]
                        f_z = Factor(str(z_q), str(a_m), self.dz_da(e, l + 1, q, m))
                        walk(l + 1, q, nodes + [str(a_m), str(z_q)], factors + [f_a, f_z])

            walk(p.layer, p.j, [str(p.symbol), str(z0)], [start])
        return found

    def derive(self, p: Param, list_paths: bool | None = None) -> Derivation:
        n = self.count_paths(p)
        if list_paths is None:
            list_paths = n <= MAX_LISTED_PATHS
        if list_paths:
            paths = self.paths(p)
            return Derivation(p, tuple(paths), n, sp.Add(*[q.product for q in paths]))
        return Derivation(p, None, n, self.accumulated(p))

    def delta(self, e: int, l: int, j: int) -> sp.Expr:
        """delta^{(l)}_j of example e by the chain rule: dC_e/dz^{(l)}_j (unscaled by the batch mean)."""
        return self.adjoints[e][l][j] / self.net.scale
