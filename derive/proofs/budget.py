"""What a proof will cost, from the spec alone, said (and refused when too much) before it starts.

The model counts what the work grows with; its coefficients are fitted to timings of
derive.proofs.concrete.prove (24 networks) and of single oracle partials (29, widths 2 to 784, depths 1 to 8)
on the 2-core machine while it was busy with other work, and checked against the README's
"How proof cost grows" table (sigmoid): within about a factor of 3.5 either way (8-8-8-8-8:
105 s estimated, 47 s measured; 16-16-16-16: 144 s and 43 s; 32-32-32: 62 s and 54 s;
64-64-64-64 scalable: 50 s and 101 s), and against deep networks whose expansion does not
grow (measured on the same machine, full mode): width 1, identity, 40 and 64 layers: 0.9 s
and 2.8 s estimated, 1.1 s and 2.8 s measured; width 1, ReLU or sigmoid, 20 layers: 0.3 s
estimated, 0.5 s and 0.8 s measured; width 2, ReLU, 12 layers, augmented bias: 57 s
estimated, 34 s measured.

- the full mode lists every chain-rule path and expands every partial: a weight of layer l
  has P(l) = n_{l+1} ... n_L paths to C, and each path's product of σ' factors expands to
  G(l) monomials, the product of each σ''s growth (`growth`: the monomials of σ' written
  through a, 2 for sigmoid's a(1 - a) and tanh's 1 - a², 1 for a constant or an atom such
  as ReLU's) over the layers after l of width above 1 (a factor every path shares cancels
  as it stands); the work is Σ_l (parameters of layer l) · P(l) · G(l) · L, plus the paths
  listed, the explicit matrix forms, and sympy.diff through L compositions for each parameter;
- the scalable mode's own work (building the graph, the matrix forms, the staged
  comparison) grows with the parameters (a little faster with the fan-in) and with the
  unrolled products' n_{l-1} n_l n_{l+1}; its sampled sympy.diff oracle costs, per sampled
  partial, the path from the parameter to C composed and expanded: the same
  P(l) · G(l) growth, which is what makes a deep, wide sigmoid network infeasible in either mode.

A batch of E examples multiplies the work by E; a logarithmic cost (rational identities)
by 3; a softmax output (a full Jacobian) by n_L and the growth of the hidden layers after the first.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import sympy as sp

from derive.tables.activations import ACTIVATIONS
from derive.tables.costs import COSTS
from derive.errors import DeriveError
from derive.spec import Spec

MAX_SECONDS = 600.0  # the default budget: a proof estimated longer is refused before it starts
ANNOUNCE_SECONDS = 10.0  # a proof estimated longer says so before it starts, and shows progress
FULL_AUTO_SECONDS = 60.0  # --mode auto picks full only up to this estimate (and 600 parameters)
FULL_AUTO_PARAMS = 600
BASE_MB = 95.0  # Python, SymPy, SymEngine and the package, imported

# fitted coefficients: seconds (or MB) per unit of the counts above
_FULL = dict(start=0.21, forms=3.6e-5, paths=1.56e-3, terms=6.2e-5, depth=8.4e-6, mb_paths=1.7e-3, mb_terms=1.8e-3)
_SCALE = dict(start=0.3, params=3.5e-5, unrolled=1.5e-6, mb_params=9e-3)
# one sampled partial of layer l: the composition it walks (the parameters downstream) and its
# expansion; the larger of a linear fit (right for large expansions) and a power-law fit (mid-range)
_ORACLE_LINEAR = (4.5e-3, 8.2e-5, 2.9e-5)
_ORACLE_POWER = (1.3e-3, 7.2e-4, 0.78, 1.24e-3, 0.64)


@dataclass(frozen=True)
class Estimate:
    """The cost of one run: seconds and peak megabytes, and what it is of."""

    seconds: float
    megabytes: float
    what: str

    def text(self) -> str:
        return f"{duration(self.seconds)} and {memory(self.megabytes)}"


def sizes_text(spec: Spec) -> str:
    """3-4-2, or 2-2-2-...-2 (65 widths) for a long one."""
    n = spec.sizes
    return "-".join(map(str, n)) if len(n) <= 8 else f"{'-'.join(map(str, n[:3]))}-...-{n[-1]} ({len(n)} widths)"


def duration(seconds: float) -> str:
    """A rough duration in words: about 45 s, about 12 min, about 3 h, more than a year."""
    if not math.isfinite(seconds):
        return "more than 10^999 years"
    for unit, size in (("s", 1), ("min", 60), ("h", 3600), ("days", 86400)):
        if seconds < 120 * size or unit == "days" and seconds < 365 * 86400:
            return f"about {max(1, round(seconds / size))} {unit}"
    years = seconds / (365 * 86400)
    return "more than a year" if years < 1e3 else f"more than 10^{min(int(math.log10(years)), 999)} years"


def memory(mb: float) -> str:
    """A rough amount of memory in words: 450 MB, 3.5 GB, more than 10^6 GB."""
    if not math.isfinite(mb):
        return "more than 10^999 GB"
    if mb < 1024:
        return f"{mb:.0f} MB"
    gb = mb / 1024
    return f"{gb:.1f} GB" if gb < 1e4 else f"more than 10^{min(int(math.log10(gb)), 999)} GB"


def physical_mb() -> float:
    """This machine's memory in MB (8 GB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 8192.0


def growth(activation: str) -> float:
    """How many terms one σ' factor of this activation turns each term of an expanded product into.

    σ' as a polynomial in a = σ(z) (sigmoid's a(1 - a) = a - a², tanh's 1 - a²) multiplies the
    terms by its number of monomials; a constant σ' (identity) or one left as an atom (ReLU's
    Heaviside, softplus's) multiplies them by 1.
    """
    form = ACTIVATIONS[activation].output_form if ACTIVATIONS[activation].elementwise else None
    return float(len(sp.Add.make_args(sp.expand(form)))) if form is not None else 1.0


def _layers(spec: Spec) -> list[tuple[int, int, float, float]]:
    """(layer, parameters, paths P(l), what one partial of it expands to) for each weight layer l.

    A path from layer l to C crosses the σ' of layers l .. L-1 (the output's is the cost's
    business, in _hardness), and each σ' multiplies the terms by its growth, except a factor
    that every path shares: the partial's own neuron's, and that of a layer of width 1. Both
    sides of the identity have it in the same place (SymPy cancels what is the same, and
    derive.proofs.identity takes shared factors out of a large expansion), so it adds nothing.
    """
    n, L = spec.sizes, spec.depth
    extra = 0 if spec.bias == "none" else 1
    grows = [growth(act) for act in spec.activation]
    out = []
    for l in range(1, L + 1):
        paths = math.prod(float(w) for w in n[l + 1:])  # floats: 4096^63 has no place in an exact count
        expansion = paths * math.prod(g for m, g in enumerate(grows[:L - 1], 1) if m > l and n[m] > 1)
        out.append((l, (n[l - 1] + extra) * n[l], paths, expansion))
    return out


def _hardness(spec: Spec) -> float:
    """How much harder each expansion is than a quadratic cost on an elementwise output."""
    factor = 3.0 if COSTS[spec.cost].rational else 1.0
    if not ACTIVATIONS[spec.activation[-1]].elementwise:
        factor *= spec.sizes[-1] * math.prod(growth(act) for act in spec.activation[1:-1])
    return factor


def full(spec: Spec) -> Estimate:
    """The full mode (derive.proofs.concrete.prove with the oracle on every partial; also latex and codegen)."""
    c, E, L, hard = _FULL, spec.examples, spec.depth, _hardness(spec)
    layers = _layers(spec)
    n = spec.n_params
    paths = sum(count * paths for _, count, paths, _ in layers)
    terms = sum(count * expansion for _, count, _, expansion in layers) * L
    largest = max(expansion for *_, expansion in layers) * L
    seconds = c["start"] + E * (c["forms"] * n ** 1.5 + c["depth"] * n * L**2
                                + hard * (c["paths"] * paths + c["terms"] * terms))
    mb = BASE_MB + E * (_SCALE["mb_params"] * n + hard * (c["mb_paths"] * paths + c["mb_terms"] * largest))
    return Estimate(seconds, mb, "full mode: every path listed, sympy.diff on every partial")


def oracle_groups(spec: Spec) -> int:
    """The groups scale._oracle_sample spreads its sample over: each layer's weights, and its biases."""
    return spec.depth * (1 if spec.bias == "none" else 2)


def oracle_counts(spec: Spec, sample: int) -> list[int]:
    """How many partials of each layer the oracle sample takes (at least one of each group; none for sample 0)."""
    if sample <= 0:
        return [0] * spec.depth
    groups_per_layer = oracle_groups(spec) // spec.depth
    layers = _layers(spec)
    sample = min(sample, spec.n_params)
    per_group = max(1, sample // oracle_groups(spec))
    counts = [min(count, per_group * groups_per_layer) for _, count, *_ in layers]
    short = sample - sum(counts)  # topped up from the other groups
    for i, (_, count, *_) in enumerate(layers):
        if short <= 0:
            break
        more = min(short, count - counts[i])
        counts[i] += more
        short -= more
    return counts


def scalable(spec: Spec, sample: int = 50) -> Estimate:
    """The scalable mode (scale.prove_scalable): its own work plus the sampled oracle.

    --jobs is left out: it spreads only the comparisons, which are a small share of the time.
    """
    c, E, L, n, hard = _SCALE, spec.examples, spec.depth, spec.sizes, _hardness(spec)
    extra = 0 if spec.bias == "none" else 1
    fan_in = sum((n[l - 1] + extra) * n[l] * (n[l - 1] + extra) ** 0.3 for l in range(1, L + 1))
    unrolled = sum(n[l - 1] * n[l] * n[l + 1] for l in range(1, L))
    own = c["start"] + E * (c["params"] * fan_in + c["unrolled"] * unrolled)
    layers = _layers(spec)
    oracle, largest = 0.0, 0.0
    for (l, _, _, expansion), k in zip(layers, oracle_counts(spec, sample)):
        if k:
            oracle += k * _oracle_partial(spec, l, expansion, hard)
            largest = max(largest, expansion * (L - l + 1))
    mb = BASE_MB + E * (c["mb_params"] * spec.n_params + hard * _FULL["mb_terms"] * largest)
    what = f"sympy.diff on {min(sample, spec.n_params)} partials" if sample > 0 else "no sympy.diff sample"
    return Estimate(own + oracle, mb, f"scalable mode, {what}")


def _oracle_partial(spec: Spec, l: int, expansion: float, hard: float) -> float:
    """Seconds for sympy.diff of one partial of layer l, compared exactly with the chain rule."""
    n, L = spec.sizes, spec.depth
    extra = 0 if spec.bias == "none" else 1
    walked = sum((n[m - 1] + extra) * n[m] for m in range(l + 1, L + 1)) + n[l - 1] + extra
    grown = hard * expansion * (L - l + 1)
    a, b, d = _ORACLE_LINEAR
    linear = a + b * walked + d * grown
    a, b, q, d, k = _ORACLE_POWER
    power = a + b * walked ** q + d * grown ** k
    return spec.examples * max(linear, power)


def auto_mode(spec: Spec) -> str:
    """--mode auto: full (sympy.diff on every partial) for small networks it can finish soon, else scalable."""
    if spec.n_params <= FULL_AUTO_PARAMS and full(spec).seconds <= FULL_AUTO_SECONDS:
        return "full"
    return "scalable"


def fits(estimate: Estimate, max_seconds: float) -> bool:
    return estimate.seconds <= max_seconds and estimate.megabytes <= physical_mb()


def check(estimate: Estimate, max_seconds: float, what: str, instead: str) -> None:
    """Refuse, in one line, a run estimated beyond `max_seconds` or this machine's memory; `instead` says what would fit."""
    too_slow = estimate.seconds > max_seconds
    too_big = estimate.megabytes > physical_mb()
    if not (too_slow or too_big):
        return
    why = f"more than --max-seconds {max_seconds:g}" if too_slow else ""
    if too_big:
        why += (" and " if why else "") + f"more than this machine's {memory(physical_mb())} of memory"
    advice = f"it cannot finish here: {instead}" if too_big else f"raise --max-seconds to run it anyway, or {instead}"
    raise DeriveError(f"{what}: estimated {estimate.text()} ({estimate.what}), {why}; {advice}")
