"""The chain rule over the scalar graph: one reverse accumulation, in SymPy or SymEngine values.

Nodes are z^{(l)}_j and a^{(l)}_j of each example, and the cost C. Every edge carries a
local derivative: the derivative of the head node's own expression with respect to the
tail (dz/dw = a, dz/da = w, da/dz = sigma'(z) written through a, dC/da). A partial
dC/dp is the sum over all paths from p to C of the product of the local factors; it is
accumulated in reverse order over the graph, so the work grows with the edges.

ReverseAccumulation does that in the values its caller picks: SymPy's as they stand, or
converted (SymEngine, for the proofs at scale and the claims' fast path). ChainRule is the
SymPy one with the paths on top, listed for display while there are few of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import sympy as sp

from derive.network import Network, Param
from derive.tables.notations import text, text_name

MAX_LISTED_PATHS = 64


class ReverseAccumulation:
    """Local derivatives and adjoints of one network, each computed once, in the values `convert` gives.

    `convert` takes a SymPy expression to the backend (None: SymPy itself) and `add` sums
    the backend's values (sp.Add, se.Add). Every value this class returns is the backend's.
    """

    def __init__(self, net: Network, convert: Callable | None = None, add: Callable = sp.Add):
        self.net = net
        self.conv = convert or (lambda x: x)
        self.add = add
        self.scale = self.conv(net.scale)  # the batch mean's 1/n: dC/dz = scale * delta
        self._z: dict = {}  # (e, l, j) -> z^{(l)}_j
        self._grad: dict = {}  # (e, l, j) -> {symbol: dz^{(l)}_j / d symbol}
        self._edges: dict = {}  # (e, l) -> per neuron k of layer l: [(q, dz^{(l+1)}_q / da^{(l)}_k)]
        self._local: dict = {}  # (e, l) -> per neuron j of layer l: [(m, da^{(l)}_m / dz^{(l)}_j)]

    # -- local derivatives, each of one node's own expression ---------------------------
    def z(self, e: int, l: int, j: int):
        """z^{(l)}_j of example e."""
        key = (e, l, j)
        if key not in self._z:
            self._z[key] = self.conv(self.net.z[e][l][j])
        return self._z[key]

    def grad(self, e: int, l: int, j: int) -> dict:
        """Every derivative of z^{(l)}_j of example e, by the (backend's) symbol it is taken by."""
        key = (e, l, j)
        if key not in self._grad:
            # each term differentiated by the symbols it holds (d/dx is linear): a term is small, the sum is not
            grad: dict = {}
            z = self.z(e, l, j)
            for t in z.args if z.is_Add else (z,):
                for s in t.free_symbols:
                    d = t.diff(s)
                    grad[s] = grad[s] + d if s in grad else d
            self._grad[key] = grad
        return self._grad[key]

    def dz_dp(self, e: int, p: Param):
        """d z^{(l)}_j / d p, for the neuron p feeds."""
        return self.grad(e, p.layer, p.j)[self.conv(p.symbol)]

    def dz_da(self, e: int, l: int, j: int, k: int):
        """d z^{(l)}_j / d a^{(l-1)}_k."""
        return self.grad(e, l, j).get(self.conv(self.net.a[e][l - 1][k]), self.conv(sp.Integer(0)))

    def da_dz(self, e: int, l: int, m: int, j: int):
        """d a^{(l)}_m / d z^{(l)}_j: sigma'(z_j) or 0 for an elementwise activation, else the network's Jacobian entry."""
        net = self.net
        if net.acts[l].elementwise:
            return self.conv(net.sigma_prime[e][l][j] if m == j else sp.Integer(0))
        return self.conv(net.da_dz(e, l, m, j))

    def successors(self, l: int, j: int) -> range:
        """Neurons m of layer l whose activation depends on z^{(l)}_j."""
        return range(j, j + 1) if self.net.acts[l].elementwise else range(self.net.sizes[l])

    @cached_property
    def dC_da(self) -> list[list]:
        """dC / d a^{(L)}_m of every example."""
        net = self.net
        C = self.conv(net.C)
        return [[C.diff(self.conv(a)) for a in net.a[e][net.L]] for e in range(net.E)]

    def edges_from(self, e: int, l: int) -> list[list]:
        """For each neuron k of layer l: the (q, dz^{(l+1)}_q / da^{(l)}_k) of the edges leaving it."""
        key = (e, l)
        if key not in self._edges:
            net = self.net
            out: list[list] = [[] for _ in range(net.sizes[l])]
            into = {self.conv(s): k for k, s in enumerate(net.a[e][l])}
            for q in range(net.sizes[l + 1]):
                for s, d in self.grad(e, l + 1, q).items():
                    if s in into:
                        out[into[s]].append((q, d))
            self._edges[key] = out
        return self._edges[key]

    def local_to(self, e: int, l: int) -> list[list]:
        """For each neuron j of layer l: the (m, da^{(l)}_m / dz^{(l)}_j) of the activations it feeds."""
        key = (e, l)
        if key not in self._local:
            self._local[key] = [[(m, self.da_dz(e, l, m, j)) for m in self.successors(l, j)]
                                for j in range(self.net.sizes[l])]
        return self._local[key]

    # -- reverse accumulation ---------------------------------------------------------------
    @cached_property
    def adjoints(self) -> list[list[list]]:
        """dC/dz^{(l)}_j for every example, layer and neuron, accumulated from C backwards over every edge."""
        net = self.net
        out = []
        for e in range(net.E):
            dz: list[list] = [[] for _ in range(net.L + 1)]
            da = self.dC_da[e]
            for l in range(net.L, 0, -1):
                dz[l] = [self.add(*[da[m] * d for m, d in local]) for local in self.local_to(e, l)]
                if l > 1:
                    da = [self.add(*[dz[l][q] * d for q, d in edges]) for edges in self.edges_from(e, l - 1)]
            out.append(dz)
        return out

    @property
    def has_adjoints(self) -> bool:
        """Whether the reverse accumulation has run (it runs once, on first use of `adjoints`)."""
        return "adjoints" in self.__dict__  # where functools.cached_property keeps its value

    def accumulated(self, p: Param):
        """dC/dp: each example's adjoint of the neuron p feeds, times dz/dp."""
        return self.add(*[self.adjoints[e][p.layer][p.j] * self.dz_dp(e, p) for e in range(self.net.E)])

    def delta(self, e: int, l: int, j: int):
        """delta^{(l)}_j of example e: dC_e/dz^{(l)}_j (unscaled by the batch mean)."""
        return self.adjoints[e][l][j] / self.scale

    # -- one layer at a time, the layer above given ------------------------------------------
    def delta_step(self, e: int, l: int, j: int, above: Callable[[int], object] | None = None):
        """delta^{(l)}_j of example e, one step from the layer above.

        At the output it is sum_m dC/da_m * da_m/dz_j / scale; below, `above(q)` stands for
        delta^{(l+1)}_q (a symbol held for it, or its value) and the step is
        sum_m da_m/dz_j * sum_q above(q) * dz^{(l+1)}_q/da_m.
        """
        local = self.local_to(e, l)[j]
        if l == self.net.L:
            return self.add(*[self.dC_da[e][m] * d for m, d in local]) / self.scale
        edges = self.edges_from(e, l)
        return self.add(*[d * self.add(*[above(q) * w for q, w in edges[m]]) for m, d in local])

    def partial_step(self, p: Param, delta_of: Callable[[int], object]):
        """dC/dp = scale * sum over the examples e of delta_of(e) * dz/dp, delta_of(e) standing for e's delta at p's neuron."""
        return self.scale * self.add(*[delta_of(e) * self.dz_dp(e, p) for e in range(self.net.E)])


@dataclass(frozen=True)
class Factor:
    """One local derivative d(head)/d(tail) along a path."""

    head: str  # node names as in the network's symbols: "C", "a2_0", "z2_0"
    tail: str
    value: sp.Expr

    def __str__(self) -> str:
        """d(a2[0])/d(z2[0]) = ..., in the names the command line and the claims use."""
        return f"d{_shown(self.head)}/d{_shown(self.tail)} = {text(self.value)}"


@dataclass(frozen=True)
class Path:
    example: int
    nodes: tuple[str, ...]  # from the parameter to C
    factors: tuple[Factor, ...]

    @property
    def product(self) -> sp.Expr:
        return sp.Mul(*[f.value for f in self.factors])

    def __str__(self) -> str:
        """w2[0,0] -> z2[0] -> a2[0] -> C, in the names the command line and the claims use."""
        return " -> ".join(_shown(n) for n in self.nodes)


def _shown(name: str) -> str:
    return text_name(sp.Symbol(name))


@dataclass(frozen=True)
class Derivation:
    """dC/dp by the chain rule: its paths (when listed) and its value."""

    param: Param
    paths: tuple[Path, ...] | None  # None when there are too many to list
    n_paths: int
    value: sp.Expr  # sum of the path products (or the accumulated value)


class ChainRule(ReverseAccumulation):
    """The reverse accumulation in SymPy, with each partial's paths listed for display while there are few."""

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
                for m in self.successors(l, j):
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
