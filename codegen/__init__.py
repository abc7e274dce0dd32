"""Code generation: the proven matrix forms printed as NumPy, CuPy, PyTorch and JAX forward/backward modules.

Every module is printed from a proof: `make_plan(prove_forms(spec), spec)` refuses a proof
that is not ok, and `generate` and `load_generated` prove the forms first.

`python -m codegen` writes generated/<spec>_numpy.py, <spec>_cupy.py and <spec>_kernels.cu
for every built-in spec; `python -m codegen --check` fails when generated/ is stale.

    >>> from codegen import generate
    >>> from derive.spec import load_spec
    >>> sorted(generate(load_spec("net222"), ["numpy"]))
    ['net222_numpy.py']
"""

from .backends import BACKENDS, Backend
from .plan import Line, Plan, make_plan, prove_forms
from .render import generate, load_generated

__all__ = ["BACKENDS", "Backend", "Line", "Plan", "generate", "load_generated", "make_plan", "prove_forms"]
