"""Claims: what a claim costs beyond building its network, and what is refused before the work.

    python benchmarks/bench_claims.py          # 3-4-2 with 64 examples, 40-40-8 with 2
    python benchmarks/bench_claims.py --large  # and the issue's 40-40-8 with 64 examples (a minute)

Each claim is timed in-process after its Context (the network, the chain rule and the
matrix forms) is built, and reported as a ratio to that build in the same run: the
Context is what every claims file pays once, so the ratio says what a claim adds.

Targets (issue 12, item 15), on a 2-core machine:
- BP1-BP4 over a batch of 64 examples proven in a few seconds (the deltas held,
  derive.claims.fast); the "exact check" column times the same claim through the full
  evaluation (every delta in the atoms) for comparison, where it is quick enough;
- the 40-40-8 chains w1 @ w1.T @ ... @ delta1 @ x.T of 3, 7 and 15 products refused
  within a second, from their estimate (derive.claims.cost), before anything is evaluated.
"""

from __future__ import annotations

import argparse
import time

from derive.claims import cost as claim_cost
from derive.claims import fast as claim_fast
from derive.claims import Claim, Context, check_claim
from derive.spec import load_spec, validate


def context(sizes, examples) -> tuple[Context, float]:
    data = load_spec("nielsen").with_sizes(tuple(sizes)).as_dict()
    data["examples"] = examples
    t = time.perf_counter()
    ctx = Context(validate(data))
    return ctx, time.perf_counter() - t


def timed(ctx, lhs, rhs, exact: bool = False) -> tuple[str, float]:
    """(verdict, seconds); exact: through the full check, the held-delta path and the limits switched off."""
    fast, ops, terms = claim_fast.prove, claim_cost.MAX_OPS, claim_cost.MAX_TOTAL_TERMS
    if exact:
        claim_fast.prove = lambda *args, **kwargs: False
        claim_cost.MAX_OPS = claim_cost.MAX_TOTAL_TERMS = 10**15
    try:
        t = time.perf_counter()
        v = check_claim(ctx, Claim("c", lhs, rhs))
        return v.verdict, time.perf_counter() - t
    finally:
        claim_fast.prove, claim_cost.MAX_OPS, claim_cost.MAX_TOTAL_TERMS = fast, ops, terms


def chain(products: int) -> str:
    return " @ ".join((["w1", "w1.T"] * products)[:products - 1] + ["delta1", "x.T"])


SETTINGS = [
    ((3, 4, 2), 64, [("BP4", "dC/dw2", "delta2 @ a1.T / 64", True),
                     ("BP4, layer 1", "dC/dw1", "delta1 @ x.T / 64", True),
                     ("BP3", "dC/db2", "delta2 @ ones / 64", True),
                     ("BP2", "delta1", "(w2.T @ delta2) * sigma_prime(z1)", True),
                     ("BP1", "delta2", "(a2 - y) * sigma_prime(z2)", True),
                     ("BP4 without the 1/64 (a slip)", "dC/dw2", "delta2 @ a1.T", False)]),
    ((40, 40, 8), 2, [("BP4", "dC/dw1", "delta1 @ x.T / 2", False),
                      ("chain of 3 products", "dC/dw1", chain(3), False),
                      ("chain of 7 products", "dC/dw1", chain(7), False),
                      ("chain of 15 products", "dC/dw1", chain(15), False)]),
]
LARGE = [((40, 40, 8), 64, [("BP4", "dC/dw1", "delta1 @ x.T / 64", False),
                            ("BP4, layer 2", "dC/dw2", "delta2 @ a1.T / 64", False),
                            ("BP4 without the 1/64 (a slip)", "dC/dw1", "delta1 @ x.T", False)])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="also 40-40-8 with 64 examples (its Context takes 15 s)")
    args = parser.parse_args()
    print("| network | claim | verdict | seconds | ratio to the Context | exact check |")
    print("|---|---|---|---|---|---|")
    for sizes, examples, rows in SETTINGS + (LARGE if args.large else []):
        ctx, build = context(sizes, examples)
        net = f"{'-'.join(map(str, sizes))}, {examples} examples"
        print(f"| {net} | (building the Context) | | {build:.2f} | 1.00× | |")
        for name, lhs, rhs, exact in rows:
            verdict, seconds = timed(ctx, lhs, rhs)
            full = ""
            if exact:
                fv, fs = timed(ctx, lhs, rhs, exact=True)
                full = f"{fv} in {fs:.2f} s"
            print(f"| {net} | {name}: `{lhs} = {rhs}` | {verdict} | {seconds:.3f} | {seconds / build:.3f}× | {full} |")


if __name__ == "__main__":
    main()
