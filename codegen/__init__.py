"""Code generation: the proven matrix forms printed as NumPy and CuPy forward/backward modules.

`python -m codegen` writes generated/<spec>_numpy.py, <spec>_cupy.py and <spec>_kernels.cu
for every built-in spec; `python -m codegen --check` fails when generated/ is stale.

    >>> from codegen import generate
    >>> from derive.spec import load_spec
    >>> sorted(generate(load_spec("net222"), ["numpy"]))
    ['net222_numpy.py']
"""

from .plan import Plan, Step, make_plan
from .render import BACKENDS, generate, load_generated

__all__ = ["BACKENDS", "Plan", "Step", "generate", "load_generated", "make_plan"]
