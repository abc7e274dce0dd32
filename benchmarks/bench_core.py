"""`python -m derive` end to end (interpreter start and SymPy import included).

Target: at most 1.5 s on a 2-core machine. The reference in the same run is the
bare `python -c "import sympy"`, so the ratio says what the derivation itself costs.

    python benchmarks/bench_core.py
"""

import sys

from _measure import wall


def main() -> None:
    derive = wall([sys.executable, "-m", "derive"], repeat=7)
    sympy_only = wall([sys.executable, "-c", "import sympy"], repeat=7)
    print("| what | median wall time | ratio to `import sympy` |")
    print("|---|---|---|")
    print(f"| `python -m derive` (2-2-2, 12 partials, every path and the oracle) | {derive:.2f} s | {derive / sympy_only:.2f}× |")
    print(f"| `python -c 'import sympy'` | {sympy_only:.2f} s | 1.00× |")
    print(f"\ntarget ≤ 1.5 s: {'met' if derive <= 1.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
