"""An oracle on every partial: SymEngine's derivative of the composed cost, compared in a prime field.

The scalable proof closes every partial exactly against the matrix forms; this is the
independent cross-check, and it shares no code with the chain rule (derive.chain):

1. the differentiation: the cost is composed through the network's own forward
   definition (Network.z, the layer table) with every activation applied to its
   argument as an undefined SymEngine function, one name per neuron, so the composed
   cost stays a graph (each neuron's node appears once, however many paths lead
   through it). Every parameter p is moved along a random direction, p -> p + t c_p,
   and SymEngine's `diff` by t gives the directional derivative
   d/dt C(theta + t c) at t = 0, which is sum_p c_p dC/dp: every partial at once.
2. the comparison: each activation application is replaced by its atom (its neuron's
   a, and sigma' by the activation table's form in a, or by the atom sigma'(z) where
   there is none, as the exact proofs do; the labels make identical arguments give
   identical atoms), so both sides are polynomials, or rational functions for the
   logarithmic costs, in the weights, inputs, targets, atoms and the c_p. The identity
   D(c) = sum_p c_p * (chain rule's dC/dp) is tested at random points of the field of
   P = 2^127 - 1 elements, nothing expanded: the graph is evaluated once per point,
   denominators by modular inverses (a point where one vanishes is drawn again).

If any partial differs from the chain rule's, the difference Q = D - sum_p c_p dC/dp is a
nonzero rational function N/M, with deg N <= n computed from the graphs; by the
Schwartz-Zippel lemma a point passes with probability at most n / (P - m) (m the degree of
the product of every denominator, which the redraw excludes). With c random, one test
covers every partial; a failing test is split over halves of the parameters until it
names the partials that differ.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from fractions import Fraction

import symengine as se
import sympy as sp

from derive.network import Network, Param
from derive.tables.activations import z as Z_SYMBOL

PRIME = 2**127 - 1  # a Mersenne prime: the field the identity is tested in
MAX_REDRAWS = 8  # points drawn again because a denominator vanished, per trial, before the test is undecided
_T = se.Symbol("_t")  # the direction's parameter


class _Redraw(Exception):
    """A denominator vanished at the point drawn."""


@dataclass
class OracleCheck:
    """What the all-partials oracle found: how many partials, in how many trials, with what bound."""

    checked: int = 0
    trials: int = 0
    seed: int = 0
    prime: int = PRIME
    degree: int = 0  # a bound on the degree of the difference's numerator
    denominator_degree: int = 0  # of the product of every denominator met (0: polynomials)
    redraws: int = 0
    agree: bool = False
    undecided: bool = False  # every point drawn made a denominator vanish
    wrong: list[str] = field(default_factory=list)  # partials named by splitting a failing test
    seconds: float = 0.0

    @property
    def bound_per_trial(self) -> Fraction:
        """The chance that a wrong partial passes one trial: deg N / (P - deg M), Schwartz-Zippel."""
        return Fraction(max(self.degree, 1), self.prime - self.denominator_degree)

    @property
    def bound(self) -> Fraction:
        return self.bound_per_trial ** max(self.trials, 1)

    def bound_text(self) -> str:
        """The bound as a power of two, rounded up: <= 2^-120."""
        b = self.bound
        exponent = (b.denominator // b.numerator).bit_length() - 1  # 2^exponent <= 1/b
        return f"2^-{exponent}"

    def method(self) -> str:
        """The oracle in one line of a report: what it did, what it found, and its error bound."""
        found = ("all agree" if self.agree else "undecided (every point drawn made a denominator vanish)"
                 if self.undecided else f"they differ at {', '.join(self.wrong) or 'a partial it did not name'}")
        return (f"cross-check (randomized, independent of the chain rule): every one of the {self.checked} partials, "
                "by SymEngine's diff of the composed cost along a random direction c (d/dt C(theta + t c) = sum_p c_p "
                "dC/dp, each activation an atom, its derivative the activation table's) against sum_p c_p times the "
                f"chain rule's dC/dp, at {self.trials} random point{'s' if self.trials > 1 else ''} of the field of "
                f"2^127 - 1 elements (seed {self.seed}): {found}; a wrong partial passes with probability at most "
                f"{self.bound_text()} (Schwartz-Zippel: numerator degree {self.degree}"
                + (f", denominators of degree {self.denominator_degree}, a point where one vanishes drawn again"
                   if self.denominator_degree else "") + ")")

    def to_json(self) -> dict:
        return {"method": "directional derivative of the composed cost (SymEngine diff) against sum_p c_p dC/dp, "
                          "at random points of GF(2^127 - 1)",
                "checked": self.checked, "agree": self.agree, "undecided": self.undecided, "trials": self.trials,
                "seed": self.seed, "prime": str(self.prime), "degree": self.degree,
                "denominator_degree": self.denominator_degree, "redraws": self.redraws,
                "bound": f"{self.bound.numerator}/{self.bound.denominator}", "bound_power_of_two": self.bound_text(),
                "wrong": self.wrong, "seconds": round(self.seconds, 3)}


# ---------------------------------------------------------------------------
# the composed cost, moved along a direction, and its derivative
# ---------------------------------------------------------------------------

@dataclass
class Composed:
    """The composed cost's derivative by t, and what its carriers and symbols stand for.

    SymEngine's `diff` walks a graph of undefined functions once per path (exponential in
    depth), but a graph of its own functions once per node. So each activation application
    is carried by one of those, loggamma(u), and its derivative, which `diff` writes as
    polygamma(0, u) u', by polygamma(0, u): only first derivatives are taken, so nothing
    of loggamma but d loggamma(u) = polygamma(0, u) du is used, and `carriers` says what each
    argument u stands for (loggamma's constructor, unlike sin's, does not walk its argument).
    A softmax layer is written as its definition exp(z_j) / sum_m exp(z_m), exp carried by
    loggamma (and exp' = exp by polygamma).
    """

    derivative: se.Basic
    carriers: dict  # argument u -> (e, l, j, softmax?)
    direction: dict  # Param -> its c symbol
    z: list  # [e][l][j]: the network's pre-activation in SymEngine (atoms as they stand)


def compose(net: Network) -> Composed:
    """d/dt of C(theta + t c), every activation carried by loggamma of its composed argument."""
    conv = _Converter()
    direction = {p: se.Symbol(f"_c{i}") for i, p in enumerate(net.params)}
    moved = {conv(p.symbol): conv(p.symbol) + _T * c for p, c in direction.items()}
    by_neuron: dict = {}
    for p in net.params:
        by_neuron.setdefault((p.layer, p.j), []).append(conv(p.symbol))
    carriers: dict = {}
    zs_all = []
    total = []
    for e in range(net.E):
        inputs: dict = {}  # a^{(l-1)}_k -> its composed node
        z_e: list = [[]]
        for l in range(1, net.L + 1):
            act = net.acts[l]
            zl = [conv(z) for z in net.z[e][l]]
            z_e.append(zl)
            composed = []
            for j, z in enumerate(zl):
                rule = dict(inputs)
                rule.update({s: moved[s] for s in by_neuron[(l, j)]})
                u = z.subs(rule) if rule else z
                composed.append(u)
                if not act.polynomial:
                    if u in carriers:  # two neurons with one argument cannot be told apart
                        raise ValueError(f"the oracle cannot label neuron {j} of layer {l}: its argument is another's")
                    carriers[u] = (e, l, j, not act.elementwise)
            syms = [conv(s) for s in net.a[e][l]]
            if act.polynomial:  # identity: a = sigma(z) exactly, no atom
                inputs = {a: conv(act.definition(Z_SYMBOL)).subs({conv(Z_SYMBOL): u}) for a, u in zip(syms, composed)}
            elif act.elementwise:
                inputs = {a: se.loggamma(u) for a, u in zip(syms, composed)}
            else:
                exps = [se.loggamma(u) for u in composed]
                total_exp = se.Add(*exps)
                inputs = {a: x / total_exp for a, x in zip(syms, exps)}
        zs_all.append(z_e)
        total.append(conv(net.cost_example[e]).subs(inputs))
    C = conv(net.scale) * se.Add(*total) if net.E > 1 else se.Add(*total)
    return Composed(C.diff(_T), carriers, direction, zs_all)


class _Converter:
    """SymPy -> SymEngine, each symbol once."""

    def __init__(self):
        self.symbols: dict = {}

    def __call__(self, x):
        if isinstance(x, sp.Symbol):
            y = self.symbols.get(x)
            if y is None:
                y = self.symbols[x] = se.Symbol(x.name)
            return y
        return se.sympify(x)


# ---------------------------------------------------------------------------
# evaluation in the field, with a bound on the degree
# ---------------------------------------------------------------------------

_NO_DEN: dict = {}  # a polynomial's denominators: none (shared, never written)


class FieldEval:
    """Values mod PRIME of SymEngine graphs at one point, each node once; and each node's degree.

    A node's degree is (n, den): its value is N / prod(base^k for base, k in den.items()) with
    deg N <= n; bases are the inverted nodes (keyed by the node, with their own numerator's
    degree in `base_degree`). Sums take the least common multiple of the denominators, so a
    sum over many partials does not multiply their (shared) denominators.
    """

    def __init__(self, point: dict, degree: dict, carriers: dict, atoms):
        self.point, self.sym_degree, self.carriers, self.atoms = point, degree, carriers, atoms
        self.base_degree: dict = {}
        self.reset()

    def reset(self) -> None:
        """Forget every node's value (the symbols' are read from the point again)."""
        self.memo = {}

    def __call__(self, node):
        got = self.memo.get(node)
        if got is None:
            got = self.memo[node] = self._eval(node)
        return got

    def _args(self, node) -> list:
        """The (value, degree, denominators) of each argument, each node evaluated once."""
        memo, out = self.memo, []
        for arg in node.args:
            got = memo.get(arg)
            if got is None:
                got = memo[arg] = self._eval(arg)
            out.append(got)
        return out

    def _eval(self, node):
        kind = type(node)
        if kind is se.Symbol:
            v = self.point.get(node)
            if v is None:
                raise ValueError(f"the oracle has no value for the symbol {node}")
            return v, self.sym_degree.get(node, 1), _NO_DEN
        if kind is se.Mul:
            value, n, den = 1, 0, _NO_DEN
            for v, m, d in self._args(node):
                value = value * v % PRIME
                n += m
                if d:
                    den = _merge(den, d, sum)
            return value, n, den
        if kind is se.Add:
            (value, n, den), *rest = self._args(node)
            for v, m, d in rest:
                value += v
                if d or den:
                    n, den = _add_degree(n, den, m, d, self.base_degree)
                elif m > n:
                    n = m
            return value % PRIME, n, den
        if node.is_Number:
            if node.is_Integer:
                return int(node) % PRIME, 0, _NO_DEN
            if node.is_Rational:
                return int(node.p) * pow(int(node.q), -1, PRIME) % PRIME, 0, _NO_DEN
            raise ValueError(f"the oracle cannot evaluate the number {node} exactly")
        if node.is_Symbol:  # a Dummy, say: no point gives it a value
            raise ValueError(f"the oracle has no value for the symbol {node}")
        if node.is_Pow:
            base, exp = node.args
            if not exp.is_Integer:
                raise ValueError(f"the oracle cannot evaluate {node}: not an integer power")
            k = int(exp)
            v, m, d = self(base)
            if k >= 0:
                return pow(v, k, PRIME), m * k, {b: e * k for b, e in d.items()} if d else _NO_DEN
            if v == 0:
                raise _Redraw
            self.base_degree[base] = m
            num = -k * sum(self.base_degree[b] * e for b, e in d.items())
            return pow(v, k, PRIME), num, {base: -k}
        if isinstance(node, (se.loggamma, se.polygamma)):
            derivative = isinstance(node, se.polygamma)
            if derivative and node.args[0] != 0:
                raise ValueError(f"the oracle cannot evaluate {node}: a second derivative of an activation")
            u = node.args[-1]
            if u not in self.carriers:
                raise ValueError(f"the oracle cannot evaluate {node}: its argument is no neuron's")
            return self.atoms.carried(self.carriers[u], derivative)
        raise ValueError(f"the oracle cannot evaluate {type(node).__name__}: {node}")


def _merge(a: dict, b: dict, how) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = how((out[k], v)) if k in out else v
    return out


def _add_degree(n1: int, d1: dict, n2: int, d2: dict, base_degree: dict) -> tuple[int, dict]:
    """Degree of N1/D1 + N2/D2 over their least common multiple L: max(n1 + deg L/D1, n2 + deg L/D2)."""
    if not d1 and not d2:
        return max(n1, n2), _NO_DEN
    lcm = _merge(d1, d2, max)

    def lift(d):
        return sum(base_degree[b] * (k - d.get(b, 0)) for b, k in lcm.items())

    return max(n1 + lift(d1), n2 + lift(d2)), lcm


class _Atoms:
    """What each carrier stands for at one point: a or sigma' of its neuron; for softmax, exp(z_j) = a_j s."""

    def __init__(self, net: Network, a: dict, ap: dict, scale: dict, evaluate):
        self.net, self.a, self.ap, self.scale, self.evaluate = net, a, ap, scale, evaluate
        self.cache: dict = {}

    def carried(self, neuron: tuple, derivative: bool):
        """The value, degree and denominators of the activation (or its derivative) at u's neuron."""
        e, l, j, softmax = neuron
        if softmax:  # exp(z_j) = a_j * S with S = sum_m exp(z_m): the same for exp', and s stands for S
            return self.a[e, l, j] * self.scale[e, l] % PRIME, 2, _NO_DEN
        if not derivative:
            return self.a[e, l, j], 1, _NO_DEN
        key = (e, l, j)
        if key not in self.cache:
            form = self.net.acts[l].output_form
            if form is None:
                self.cache[key] = (self.ap[key], 1, _NO_DEN)
            else:  # sigma' written through a (the activation table's, proven there)
                self.cache[key] = self.evaluate(se.sympify(form.xreplace({sp.Symbol("a"): self.net.a[e][l][j]})))
        return self.cache[key]


# ---------------------------------------------------------------------------
# the test
# ---------------------------------------------------------------------------

def _draw(net: Network, comp: Composed, rng: random.Random):
    """A random point: every free symbol and atom uniform in the field, the related ones computed.

    Softmax outputs and one-hot targets: the last is 1 minus the others (derive.proofs.identity's
    relations); an identity neuron's a is its z, with the degree of its z.
    """
    point: dict = {_T: 0}
    degree: dict = {_T: 1}

    def draw():
        return rng.randrange(PRIME)

    for p, c in comp.direction.items():
        point[se.Symbol(p.symbol.name)] = draw()
        point[c] = draw()
    a: dict = {}
    ap: dict = {}
    scale: dict = {}  # per softmax layer: S, the sum of exp(z_m)
    ev = FieldEval(point, degree, {}, None)
    for e in range(net.E):
        for s in net.a[e][0]:
            point[se.Symbol(s.name)] = draw()
        ys = [se.Symbol(s.name) for s in net.y[e]]
        for s in ys:
            point[s] = draw()
        if net.cost.one_hot:
            point[ys[-1]] = (1 - sum(point[s] for s in ys[:-1])) % PRIME
        for l in range(1, net.L + 1):
            act = net.acts[l]
            syms = [se.Symbol(s.name) for s in net.a[e][l]]
            for j, s in enumerate(syms):
                if act.polynomial:
                    v, n, _ = ev(comp.z[e][l][j])
                    form = sp.Poly(act.expr, Z_SYMBOL)
                    point[s] = sum(int(cf.p) * pow(int(cf.q), -1, PRIME) * pow(v, k, PRIME)
                                   for (k,), cf in form.terms()) % PRIME
                    degree[s] = form.degree() * n
                else:
                    point[s] = draw()
                    if act.elementwise and act.output_form is None:
                        point[se.Symbol(net.ap[e][l][j].name)] = ap[e, l, j] = draw()
            if not act.elementwise:
                point[syms[-1]] = (1 - sum(point[s] for s in syms[:-1])) % PRIME
                scale[e, l] = draw()
            for j, s in enumerate(syms):
                a[e, l, j] = point[s]
    return point, degree, a, ap, scale


def cross_check(net: Network, chain: dict, seed: int = 0, trials: int = 1, comp: Composed | None = None,
                find: int = 3) -> OracleCheck:
    """Test sum_p c_p * chain[p] against the composed cost's directional derivative, for every partial.

    `chain` maps each Param to the chain rule's dC/dp (a SymEngine expression in the atoms).
    A failing test is split over halves of the parameters to name up to `find` partials.
    """
    t0 = time.perf_counter()
    comp = comp or compose(net)
    result = OracleCheck(checked=len(chain), trials=trials, seed=seed)
    rng = random.Random(seed)
    params = [p for p in net.params if p in chain]
    passed = 0
    for _ in range(trials):
        for _attempt in range(MAX_REDRAWS):
            try:
                state = _evaluate(net, comp, chain, params, rng)
            except _Redraw:
                result.redraws += 1
                continue
            break
        else:
            result.undecided = True
            break
        diff, n, m = state["difference"], state["degree"], state["denominator_degree"]
        result.degree = max(result.degree, n)
        result.denominator_degree = max(result.denominator_degree, m)
        if diff != 0:
            result.wrong = _split(net, comp, chain, params, state, find)
            break
        passed += 1
    result.agree = passed == trials and not result.undecided
    result.seconds = time.perf_counter() - t0
    return result


def _evaluate(net: Network, comp: Composed, chain: dict, params: list[Param], rng: random.Random) -> dict:
    """Both sides at one random point: their difference and the degree bounds."""
    point, degree, a, ap, scale = _draw(net, comp, rng)
    ev = FieldEval(point, degree, comp.carriers, None)
    ev.atoms = _Atoms(net, a, ap, scale, ev)
    left, n_left, den_left = ev(comp.derivative)
    # the chain rule's side; the partials left out of `chain` have c_p = 0 in it, so move none of them
    values = []
    right, n_right, den_right = 0, None, _NO_DEN
    for c, expr in zip([comp.direction[p] for p in params], [chain[p] for p in params]):
        v, n, d = ev(expr)
        values.append(v)
        right += point[c] * v
        if n_right is None:
            n_right, den_right = n + 1, d
        else:
            n_right, den_right = _add_degree(n_right, den_right, n + 1, d, ev.base_degree)
    unchecked = [p for p in net.params if p not in chain]
    if unchecked:  # left's directional derivative must move only the partials compared
        for p in unchecked:
            point[comp.direction[p]] = 0
        ev.reset()
        left, n_left, den_left = ev(comp.derivative)
    n, den = _add_degree(n_left, den_left, n_right, den_right, ev.base_degree)
    total_den = sum(ev.base_degree[b] for b in ev.base_degree)
    return {"difference": (left - right) % PRIME, "degree": n, "denominator_degree": total_den,
            "point": point, "values": values, "eval": ev}


def _split(net: Network, comp: Composed, chain: dict, params: list[Param], state: dict, find: int) -> list[str]:
    """The partials the failing point refutes: the direction restricted to halves of the parameters, recursively."""
    point, ev = state["point"], state["eval"]
    values = dict(zip(params, state["values"]))
    full = {p: point[comp.direction[p]] for p in params}

    def differs(group: list[Param]) -> bool:
        keep = set(group)
        for p in net.params:
            if p in full:
                point[comp.direction[p]] = full[p] if p in keep else 0
        ev.reset()
        left = ev(comp.derivative)[0]
        right = sum(full[p] * values[p] for p in group)
        return (left - right) % PRIME != 0

    found: list[str] = []

    def search(group: list[Param]) -> None:
        if len(found) >= find:
            return
        if len(group) == 1:
            found.append(f"dC/d{group[0].name}")
            return
        half = len(group) // 2
        for part in (group[:half], group[half:]):
            if len(found) < find and differs(part):
                search(part)

    search(params)
    return found
