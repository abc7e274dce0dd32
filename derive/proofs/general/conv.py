"""Convolution (conv2d, conv1d) at symbolic sizes: the backward forms derived from the scalar definition.

With B examples, C input and O output channels, and per axis an input size H, a kernel size k, a stride s and
a padding p, all symbols (H_o output positions per axis, ⌊(H + 2p − k)/s⌋ + 1, a symbol too; conv2d's axes
carry subscripts 1 and 2, so neither the input nor the kernel need be square). In 2-D:

    x_pad[b,c,u,v] = Σ_{u2,v2} x[b,c,u2,v2] δ(u2 + p_1, u) δ(v2 + p_2, v)    (zero padding, as a Kronecker sum)
    z[b,o,i,j]     = Σ_{c,m,n} W[o,c,m,n] x_pad[b,c,s_1·i + m, s_2·j + n] + β[o]

and C reads z (δ ≡ ∂C/∂z, the upstream gradient, free: the activation after z is elementwise, BP1's form).
Proven: ∂C/∂W = x_pad ⋆ δ (the correlation), ∂C/∂β = Σ δ, ∂C/∂x_pad = the full convolution of δ dilated by s
and padded by k − 1 with the kernel rotated by 180° (its channels swapped), and ∂C/∂x = the same with δ padded
by k − 1 − p (the padding's rows dropped). conv1d is the same with one spatial axis.

Reached with the stride a symbol because every Kronecker sum is taken over a kernel index (coefficient 1); the
dilated δ is written as a Kronecker sum over the output position i, δ(y, s·i + k − 1), and that sum is never
taken: SymPy's delta summation over s·i drops the divisibility condition (see spatial.py).
"""

from __future__ import annotations

import itertools

import sympy as sp
from sympy import KroneckerDelta, Sum

from derive.proofs.general.entries import Definition, Entry
from derive.proofs.general.functions import CostPartial
from derive.proofs.general.model import INDEX, WIDTH
from derive.proofs.general.printing import Range
from derive.proofs.general.rules import Stuck
from derive.proofs.general.spatial import (
    SpatialBuilder, canonical_form, check_spatial_theorem, definition_of, shift_inside,
)
from derive.proofs.general.steps import Chain, Scope, Setting, Theorem

CONVS = ("conv2d", "conv1d")
CONV_THEOREMS = ("W", "b", "x_pad", "x")
_TITLES = {
    "W": "∂C/∂W: the correlation of the padded input with δ",
    "b": "∂C/∂β: δ summed over examples and positions",
    "x_pad": "∂C/∂x_pad: δ dilated by the stride, padded by k - 1, convolved with the kernel rotated by 180 degrees",
    "x": "∂C/∂x: the same with δ padded by k - 1 - p (the padding's gradient dropped)",
}


class ConvModel:
    """The scalar graph of conv2d (dims 2) or conv1d (dims 1) at symbolic sizes."""

    formula_note = ("the formula's dilated and padded δ written by its Kronecker-sum definition, each delta over a "
                    "kernel index taken, nested sums as one, guards as normalized brackets")

    def __init__(self, kind: str):
        if kind not in CONVS:
            raise ValueError(kind)
        self.key = kind
        self.dims = 2 if kind == "conv2d" else 1
        self.B, self.C, self.O = (sp.Symbol(n, **WIDTH) for n in ("B", "C", "O"))
        axes = ("",) if self.dims == 1 else ("_1", "_2")  # one symbol per axis: H_1 × H_2, k_1 × k_2, s_1, s_2, ...
        self.H, self.k, self.s = (tuple(sp.Symbol(f"{n}{a}", **WIDTH) for a in axes) for n in ("H", "k", "s"))
        self.Ho = tuple(sp.Symbol(f"H_o{a[1:]}", **WIDTH) for a in axes)  # H_o, or H_o1 and H_o2
        self.p = tuple(sp.Symbol(f"p{a}", **INDEX) for a in axes)
        sym = lambda names: sp.symbols(names, **INDEX)  # noqa: E731
        self.b, self.o, self.c, self.b1, self.o1, self.c1 = sym("b o c b' o' c'")
        self.pos = sym("i j")[:self.dims]  # output positions
        self.ker = sym("m n")[:self.dims]  # kernel offsets
        self.ker1 = sym("m' n'")[:self.dims]
        self.inp = sym("u v")[:self.dims]  # input positions (padded or not)
        self.inp1 = sym("u' v'")[:self.dims]
        self.raw = sym("u_2 v_2")[:self.dims]
        self.x, self.xp, self.z, self.W, self.beta, self.D, self.E = (
            Entry(n) for n in ("x", "x_pad", "z", "W", "beta", "D", "E"))
        b, o, c = self.b, self.o, self.c
        axis = lambda: zip(self.H, self.k, self.s, self.p, self.Ho)  # noqa: E731
        self.padded = tuple(h + 2 * p for h, p in zip(self.H, self.p))
        pad = Sum(self.x[(b, c, *self.raw)] * sp.Mul(*[KroneckerDelta(r + p, u)
                                                       for r, u, p in zip(self.raw, self.inp, self.p)]),
                  *[(r, 0, h - 1) for r, h in zip(self.raw, self.H)])
        window = [s * i + m for i, m, s in zip(self.pos, self.ker, self.s)]
        conv = Sum(self.W[(o, c, *self.ker)] * self.xp[(b, c, *window)], (c, 0, self.C - 1),
                   *[(m, 0, k - 1) for m, k in zip(self.ker, self.k)])
        self.outputs = self.z
        self.definitions = [
            Definition(self.xp[(b, c, *self.inp)], pad,
                       {b: (0, self.B - 1), c: (0, self.C - 1), **{u: (0, n - 1) for u, n in zip(self.inp,
                                                                                               self.padded)}}),
            Definition(self.z[(b, o, *self.pos)], conv + self.beta[o],
                       {b: (0, self.B - 1), o: (0, self.O - 1), **{i: (0, n - 1) for i, n in zip(self.pos, self.Ho)}}),
        ]
        y = sym("y w")[:self.dims]
        dz = CostPartial(self.z[(b, o, *self.pos)])
        dil = lambda padded: Sum(dz * sp.Mul(*[KroneckerDelta(a + (p if padded else 0), s * i + k - 1)  # noqa: E731
                                               for a, i, (_, k, s, p, _) in zip(y, self.pos, axis())]),
                                 *[(i, 0, n - 1) for i, n in zip(self.pos, self.Ho)])
        self.helpers = {  # the formula's arrays: δ dilated by s, padded by k − 1 (D) or by k − 1 − p (E)
            self.D: Definition(self.D[(b, o, *y)], dil(False), {}),
            self.E: Definition(self.E[(b, o, *y)], dil(True), {}),
        }
        self.ranges = {self.b1: (0, self.B - 1), self.o1: (0, self.O - 1), self.c1: (0, self.C - 1),
                       **{m: (0, k - 1) for m, k in zip(self.ker1, self.k)},
                       **{u: (0, n - 1) for u, n in zip(self.inp1, self.padded)}}

    # -- printing ------------------------------------------------------------------
    def title_tex(self) -> str:
        if self.dims == 1:
            sizes = r"input $H$, kernel $k$, stride $s$, padding $p$, $H_o$ outputs"
        else:
            sizes = (r"input $H_1 \times H_2$, kernel $k_1 \times k_2$, strides $s_1, s_2$, paddings $p_1, p_2$, "
                     r"$H_{o1} \times H_{o2}$ outputs")
        return rf"{self.key}: $B$ examples, $C \to O$ channels, {sizes}, $\delta \equiv \partial C/\partial z$"

    def title(self) -> str:
        if self.dims == 1:
            sizes = "input H, kernel k, stride s, padding p, H_o outputs"
        else:
            sizes = "input H_1 × H_2, kernel k_1 × k_2, strides s_1, s_2, paddings p_1, p_2, H_o1 × H_o2 outputs"
        return f"{self.key}: B examples, C → O channels, {sizes}, δ ≡ ∂C/∂z"

    # -- the theorems --------------------------------------------------------------
    def scope(self, key: str) -> Scope:
        ranges = dict(self.ranges)
        if key == "x":  # the unpadded input's positions
            ranges.update({u: (0, h - 1) for u, h in zip(self.inp1, self.H)})
        return Scope(ranges, {}, None)

    def lhs(self, key: str):
        b1, o1, c1 = self.b1, self.o1, self.c1
        return CostPartial({"W": self.W[(o1, c1, *self.ker1)], "b": self.beta[o1],
                            "x_pad": self.xp[(b1, c1, *self.inp1)], "x": self.x[(b1, c1, *self.inp1)]}[key])

    def formula(self, key: str, rotated: bool = True) -> sp.Expr:
        """The textbook right-hand side; rotated=False gives the kernel unrotated (a wrong form, for mutants)."""
        b, o, b1, o1, c1 = self.b, self.o, self.b1, self.o1, self.c1
        positions = [(i, 0, n - 1) for i, n in zip(self.pos, self.Ho)]
        if key == "W":
            window = [s * i + m for i, m, s in zip(self.pos, self.ker1, self.s)]
            return Sum(CostPartial(self.z[(b, o1, *self.pos)]) * self.xp[(b, c1, *window)], (b, 0, self.B - 1),
                       *positions)
        if key == "b":
            return Sum(CostPartial(self.z[(b, o1, *self.pos)]), (b, 0, self.B - 1), *positions)
        arr = self.D if key == "x_pad" else self.E
        kernel = [k - 1 - m for m, k in zip(self.ker, self.k)] if rotated else list(self.ker)
        return Sum(self.W[(o, c1, *kernel)] * arr[(b1, o, *[u + m for u, m in zip(self.inp1, self.ker)])],
                   (o, 0, self.O - 1), *[(m, 0, k - 1) for m, k in zip(self.ker, self.k)])

    def canonical(self, expr, ranges: dict):
        return canonical_form(expr, self.helpers, ranges)

    def expand_helpers(self, expr):
        defs = list(self.helpers.values())
        return expr.replace(lambda e: isinstance(e, sp.Indexed) and e.base in self.helpers,
                            lambda e: definition_of(defs, e))

    # -- counterexamples ---------------------------------------------------------------
    def witness_sizes(self):
        """B, C, O and per axis (H, k, s, p): small layers, with a stride 2, a padding and unequal axes among them."""
        for b_, c_, o_, per_axis in ((1, 1, 1, ((3, 2, 1, 0), (2, 1, 1, 0))), (1, 2, 2, ((3, 2, 1, 1), (3, 2, 1, 0))),
                                     (2, 1, 1, ((4, 2, 2, 1), (3, 2, 1, 1))), (1, 1, 1, ((3, 2, 1, 0), (5, 3, 2, 0))),
                                     (1, 1, 2, ((5, 3, 2, 1), (4, 2, 2, 0)))):
            sizes = {self.B: b_, self.C: c_, self.O: o_}
            for (h, k, s, p), H, K, S, P, Ho in zip(per_axis, self.H, self.k, self.s, self.p, self.Ho):
                sizes.update({H: h, K: k, S: s, P: p, Ho: (h + 2 * p - k) // s + 1})
            yield sizes

    def concrete(self, sizes: dict, rng) -> dict:
        """Every entry of a concrete layer (small integers drawn), and every ∂C/∂ by sympy.diff of C = Σ δ·z."""
        B, C, O = sizes[self.B], sizes[self.C], sizes[self.O]
        H, k, s, p, Ho = ([sizes[v] for v in axis] for axis in (self.H, self.k, self.s, self.p, self.Ho))
        draw = lambda: sp.Integer(int(rng.integers(-3, 4)))  # noqa: E731
        grid = lambda ns: itertools.product(*[range(n) for n in ns])  # noqa: E731
        xs = {(b, c, *u): sp.Symbol(f"x{b}{c}{u}") for b in range(B) for c in range(C) for u in grid(H)}
        ws = {(o, c, *m): sp.Symbol(f"w{o}{c}{m}") for o in range(O) for c in range(C) for m in grid(k)}
        bs = {o: sp.Symbol(f"b{o}") for o in range(O)}
        xps = {(b, c, *u): sp.Symbol(f"xp{b}{c}{u}") for b in range(B) for c in range(C)
               for u in grid([h + 2 * pp for h, pp in zip(H, p)])}
        padx = {key: xs.get((key[0], key[1], *[a - pp for a, pp in zip(key[2:], p)]), sp.S.Zero) for key in xps}
        vals = {**{self.x[key]: draw() for key in xs}, **{self.W[key]: draw() for key in ws},
                **{self.beta[o]: draw() for o in bs}}
        sym_vals = {xs[key]: vals[self.x[key]] for key in xs} | {ws[key]: vals[self.W[key]] for key in ws} | {
            bs[o]: vals[self.beta[o]] for o in bs}
        cost, zs = sp.S.Zero, {}
        for b, o in itertools.product(range(B), range(O)):
            for pos in grid(Ho):
                z = bs[o] + sp.Add(*[ws[(o, c, *m)] * xps[(b, c, *[ss * i + mm for i, mm, ss in zip(pos, m, s)])]
                                     for c in range(C) for m in grid(k)])
                g = draw()
                vals[CostPartial(self.z[(b, o, *pos)])] = g
                cost += g * z
                zs[(b, o, *pos)] = z
        at_pad = {xps[key]: padx[key] for key in xps}
        for key in xps:
            vals[self.xp[key]] = padx[key].xreplace(sym_vals)
            vals[CostPartial(self.xp[key])] = sp.diff(cost, xps[key]).xreplace(at_pad).xreplace(sym_vals)
        by_x = cost.xreplace(at_pad)
        for key in xs:
            vals[CostPartial(self.x[key])] = sp.diff(by_x, xs[key]).xreplace(sym_vals)
        for key in ws:
            vals[CostPartial(self.W[key])] = sp.diff(by_x, ws[key]).xreplace(sym_vals)
        for o in bs:
            vals[CostPartial(self.beta[o])] = sp.diff(by_x, bs[o]).xreplace(sym_vals)
        return vals

    def shown(self, atom) -> bool:
        """The values a witness lists: the drawn inputs and δ (the rest follow from them)."""
        if isinstance(atom, CostPartial):
            return atom.args[0].base == self.z
        return isinstance(atom, sp.Indexed) and atom.base in (self.x, self.W, self.beta)


# ---------------------------------------------------------------------------
# the derivations
# ---------------------------------------------------------------------------

def _through_z(b: SpatialBuilder, M: ConvModel, x) -> None:
    """∂C/∂x by the chain rule over every z (the one family that reads W, β and x_pad), the local partial a
    sympy.diff of z's definition with its Kronecker sums taken."""
    (dz,) = [d for d in M.definitions if d.head.base == M.z]
    lem = b.local(dz, x)
    main = b.chain("main", b.thm.lhs)
    b.graph(main, x)
    b.substitute(main, lem)
    b.sift_all(main)


def _x(b: SpatialBuilder, M: ConvModel, proven: Theorem) -> None:
    """∂C/∂x through x_pad (the padding), then ∂C/∂x_pad as derived (its chain before the formula) at u' + p."""
    (dp,) = [d for d in M.definitions if d.head.base == M.xp]
    x = M.x[(M.b1, M.c1, *M.inp1)]
    lem = b.local(dp, x)
    main = b.chain("main", b.thm.lhs)
    b.graph(main, x)
    b.substitute(main, lem)
    b.sift_all(main)
    derived = Chain("lemma", proven.main.head, [st for st in proven.main.steps if st.rule != "formula"])
    if not derived.steps or not derived.ok:  # the derivation of ∂C/∂x_pad, whatever its formula's verdict
        raise Stuck("∂C/∂x_pad is not derived")
    shift = {u: u + p for u, p in zip(M.inp1, M.p)}
    head, value = derived.head.xreplace(shift), derived.final.xreplace(shift)
    within = {u: proven.scope.ranges[u] for u in M.inp1}
    if not shift_inside(shift, within, b.thm.scope.ranges):
        raise Stuck("u' + p is not shown inside the padded input")
    b._add(main, main.final.xreplace({head: value}), "lemma", lemma=derived, shift=tuple(shift.items()),
           within=within)


def prove_conv(kind: str, candidates: dict | None = None) -> Setting:
    """The conv theorems (CONV_THEOREMS) of conv2d or conv1d; candidates maps a theorem to a formula instead."""
    M = ConvModel(kind)
    candidates = candidates or {}
    theorems = []
    for key in CONV_THEOREMS:
        thm = Theorem(key, kind, _TITLES[key], M.lhs(key), candidates.get(key, M.formula(key)), M.scope(key))
        if _ranges(thm):
            thm.assumptions.append(["for every ", *_ranges(thm)])
        if key in ("x_pad", "x"):
            d = M.helpers[M.D if key == "x_pad" else M.E]
            thm.assumptions.append(["where ", sp.Eq(d.head, d.rhs, evaluate=False),
                                    ": δ dilated by s and padded by " + ("k - 1" if key == "x_pad" else "k - 1 - p")
                                    + " (zero outside)"])
        b = SpatialBuilder(M, thm)
        try:
            if key == "x":
                _x(b, M, next(t for t in theorems if t.key == "x_pad"))
            else:
                _through_z(b, M, thm.lhs.args[0])
            b.formula(thm.main)
        except Stuck as exc:
            thm.stuck = str(exc)
        theorems.append(check_spatial_theorem(thm, M))
    return Setting(kind, M, theorems)


def _ranges(thm: Theorem) -> list:
    out: list = []
    for v in sorted(thm.lhs.free_symbols & set(thm.scope.ranges), key=str):
        out += [Range(v, *thm.scope.ranges[v]), ", "]
    return out[:-1]
