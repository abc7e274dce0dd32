"""SymPy printers for the generated modules: batch-first NumPy/CuPy/PyTorch/JAX array code and CUDA C.

The array printers subclass SymPy's NumPyPrinter, CuPyPrinter and JaxPrinter; the CuPy and
JAX ones only change the module name (SymPy's own printers underneath). The PyTorch one is
the NumPy printer with torch's names: SymPy's TorchPrinter prints matrices as torch calls
rather than `@` and imports torch when it is loaded, so generating a module would need
torch installed. The CUDA printer
subclasses the C99 printer, with SymPy's `type_aliases` choosing float or double
functions and literals. Nothing here knows a network: names, helpers and the symbols
that stand for whole arrays come in as settings.
"""

from __future__ import annotations

import sympy as sp
from sympy.codegen.ast import float32, float64, real
from sympy.matrices.expressions import MatrixSymbol, OneMatrix, Transpose
from sympy.printing.c import C99CodePrinter
from sympy.printing.numpy import CuPyPrinter, JaxPrinter, NumPyPrinter, _numpy_known_functions
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter


class rowsum(sp.Function):
    """The sum of an array over its last axis, kept as a column (B x 1): X 1 1ᵀ in matrix form."""

    nargs = 1


class _HelperCalls:
    """A function the template defines (a stable helper) is called by its name; what it uses is kept."""

    helpers: set
    used_helpers: set

    def _print_Function(self, expr):
        name = expr.func.__name__
        if name in self.helpers:
            self.used_helpers.add(name)
            return f"{name}({', '.join(self._print(a) for a in expr.args)})"
        return super()._print_Function(expr)


class ArrayPrinter(_HelperCalls, NumPyPrinter):
    """Readable batch-first array code: `@` for products, `*` for Hadamard products.

    names: symbol name -> code (`w2` -> `W2[:-1, :]`); helpers: function names the
    module defines (stable sigmoid, softplus, ...); ones: the name of a (B, 1) array of
    ones, when a sum over the batch is to be printed as the product with it that the form
    writes (one BLAS matrix-vector product, several times faster than NumPy's strided sum
    over the batch axis).
    """

    def __init__(self, names=None, helpers=(), floor_logs=None, batch_dot=None, batch=(), ones=None):
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": True})
        self.batch_dot = batch_dot  # helper for Xᵀ Y over the batch axis (None: print X.T @ Y)
        self.ones = ones  # name of a (B, 1) array of ones: sums over the batch as products with it
        self.used_ones = False
        self.batch = set(batch)  # names of batch-first arrays
        self.names = dict(names or {})
        self.helpers = set(helpers)
        self.floor_logs = floor_logs  # code of the smallest positive value logs are floored at
        self.used_helpers: set[str] = set()

    # -- names -------------------------------------------------------------
    def _print_Symbol(self, expr):
        return self.names.get(expr.name, expr.name)

    _print_MatrixSymbol = _print_Symbol
    _print_Dummy = _print_Symbol

    # -- products, sums over the batch ----------------------------------------
    def _print_Transpose(self, expr):
        return f"{self.parenthesize(expr.arg, PRECEDENCE['Func'])}.T"

    def _factor(self, m) -> str:
        """One matrix factor, parenthesised unless it is a name or a transpose of one."""
        if isinstance(m, (MatrixSymbol, Transpose)):
            return self._print(m)
        return f"({self._print(m)})"

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        code = self._product(list(mats))
        return code if coeff == 1 else f"{self._print(coeff)}*({code})"

    def _product(self, mats) -> str:
        # products with a column of ones: sums over the batch (1ᵀ X, X 1), as written or as .sum
        if len(mats) == 2 and _is_ones(mats[1]):
            if self.ones:
                self.used_ones = True
                return f"{self._factor(mats[0])} @ {self.ones}"
            return f"{self._factor(mats[0])}.sum(axis=1, keepdims=True)"
        if len(mats) == 2 and isinstance(mats[0], Transpose) and _is_ones(mats[0].arg):
            if self.ones:
                self.used_ones = True
                return f"{self.ones}.T @ {self._factor(mats[1])}"
            return f"{self._factor(mats[1])}.sum(axis=0, keepdims=True)"
        if (self.batch_dot and len(mats) == 2 and isinstance(mats[0], Transpose)
                and _base_name(mats[0]) in self.batch and _base_name(mats[1]) in self.batch):
            self.used_helpers.add(self.batch_dot)  # Xᵀ Y summed over the batch: batch_dot(X, Y)
            return f"{self.batch_dot}({self._factor(mats[0].arg)}, {self._factor(mats[1])})"
        return " @ ".join(self._factor(m) for m in mats)

    def _print_HadamardProduct(self, expr):
        return " * ".join(self.parenthesize(a, PRECEDENCE["Mul"]) for a in expr.args)

    def _print_HadamardPower(self, expr):
        return f"{self.parenthesize(expr.base, PRECEDENCE['Pow'])}**{self.parenthesize(expr.exp, PRECEDENCE['Pow'])}"

    def _print_MatAdd(self, expr):
        return " + ".join(self._print(a) for a in expr.args).replace("+ -", "- ")

    def _print_rowsum(self, expr):
        return f"{self.parenthesize(expr.args[0], PRECEDENCE['Func'])}.sum(axis=1, keepdims=True)"

    # -- elementwise functions ---------------------------------------------
    def _print_Max(self, expr):
        return self._binary_ufunc("maximum", expr.args)

    def _print_Min(self, expr):
        return self._binary_ufunc("minimum", expr.args)

    def _binary_ufunc(self, name, args):
        out = self._print(args[0])
        for arg in args[1:]:
            out = f"{self._module_format(self._module + '.' + name)}({out}, {self._print(arg)})"
        return out

    def _print_Heaviside(self, expr):
        half = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        return f"{self._module_format(self._module + '.heaviside')}({self._print(expr.args[0])}, {self._print(sp.Float(half))})"

    def _print_log(self, expr):
        arg = self._print(expr.args[0])
        if self.floor_logs:
            arg = f"{self._module_format(self._module + '.maximum')}({arg}, {self.floor_logs})"
        return f"{self._module_format(self._module + '.log')}({arg})"

    def _print_Rational(self, expr):
        return f"{expr.p}/{expr.q}"

    def call_into(self, expr, out: str) -> str | None:
        """`f(x, out=out)` when expr is one helper or ufunc call; None when it is not."""
        one_call = (
            (isinstance(expr, sp.Function) and expr.func.__name__ in self.helpers)
            or (isinstance(expr, (sp.Max, sp.Min)) and len(expr.args) == 2)
            or (isinstance(expr, sp.Function) and expr.func.__name__ in self._kf)
        )
        return f"{self._print(expr)[:-1]}, out={out})" if one_call else None


class CuPyArrayPrinter(ArrayPrinter, CuPyPrinter):
    """The same code with `cupy.` functions: SymPy's CuPyPrinter supplies the module name."""


class JaxArrayPrinter(ArrayPrinter, JaxPrinter):
    """The same code with `jax.numpy.` functions: SymPy's JaxPrinter supplies the module name."""


class TorchArrayPrinter(ArrayPrinter):
    """The same code with `torch.` functions, where torch's differ from NumPy's: a bound that is a
    number is a clamp (torch.maximum takes two tensors), heaviside takes its value at 0 as a tensor."""

    _module = "torch"
    _kf = {name: "torch." + code.split(".", 1)[1] for name, code in _numpy_known_functions.items()}

    def _binary_ufunc(self, name, args):
        numbers = [a for a in args if a.is_Number]
        tensors = [a for a in args if not a.is_Number]
        out = super()._binary_ufunc(name, tensors)
        if len(numbers) == 1 and tensors:  # Max(0, z): torch.clamp(z, min=0.0)
            bound = "min" if name == "maximum" else "max"
            out = f"{self._module_format('torch.clamp')}({out}, {bound}={self._print(sp.Float(numbers[0]))})"
        elif numbers:
            raise ValueError(f"{name} of {len(numbers)} numbers and {len(tensors)} arrays: expected one number at most")
        return out

    def _print_Heaviside(self, expr):
        half = expr.args[1] if len(expr.args) > 1 else sp.S.Half
        x = self._print(expr.args[0])
        return f"{self._module_format('torch.heaviside')}({x}, {self.parenthesize(expr.args[0], PRECEDENCE['Func'])}" \
               f".new_full((), {self._print(sp.Float(half))}))"

    def _print_log(self, expr):
        arg = self._print(expr.args[0])
        if self.floor_logs:  # the floor is a number: a clamp
            arg = f"{self._module_format('torch.clamp')}({arg}, min={self.floor_logs})"
        return f"{self._module_format('torch.log')}({arg})"


SMALL_POWER = 4  # integer powers up to this are printed as products in CUDA


class CudaPrinter(_HelperCalls, C99CodePrinter):
    """CUDA C for one element of a fused kernel, in float or double.

    Helpers (`sigmoid`, `softplus`, `maximum`) are device functions the kernel file defines once.
    """

    def __init__(self, dtype: str = "double", helpers=()):
        alias = float32 if dtype == "float" else float64
        super().__init__({"type_aliases": {real: alias}, "allow_unknown_functions": True})
        self.helpers = set(helpers)
        self.used_helpers: set[str] = set()

    def _print_Symbol(self, expr):
        return expr.name

    # NumPy's semantics, which the NumPy module has: a NaN argument gives NaN. CUDA's fmax and
    # fmin return the other argument, and a comparison chain returns a branch's constant.
    def _print_Max(self, expr):
        return self._nan_keeping("maximum", expr.args)

    def _print_Min(self, expr):
        return self._nan_keeping("minimum", expr.args)

    def _nan_keeping(self, name, args):
        """numpy.maximum/minimum of the arguments, left to right, through the helper of that name."""
        self.used_helpers.add(name)
        out = self._print(_floats(args[0]))
        for arg in args[1:]:
            out = f"{name}({out}, {self._print(_floats(arg))})"
        return out

    def _print_Heaviside(self, expr):
        x = self._print(expr.args[0])
        half = self._print(sp.Float(expr.args[1] if len(expr.args) > 1 else sp.S.Half))
        one, zero = self._print(sp.Float(1)), self._print(sp.Float(0))
        return f"(({x}) > 0 ? {one} : (({x}) < 0 ? {zero} : (({x}) == 0 ? {half} : ({x}))))"

    def _print_Pow(self, expr):
        # pow/powf with an integer exponent is a library call (powf(a, 2) is some 145 PTX
        # instructions under NVRTC); a product of a few factors is what was meant
        base, exp = expr.as_base_exp()
        if exp.is_Integer and 2 <= abs(int(exp)) <= SMALL_POWER:
            factor = self.parenthesize(base, PRECEDENCE["Mul"], strict=True)
            product = f"({'*'.join([factor] * abs(int(exp)))})"
            return product if exp > 0 else f"({self._print(sp.Float(1))}/{product})"
        return super()._print_Pow(expr)

    def _print_rowsum(self, expr):  # pragma: no cover - the planner passes row sums in as inputs
        raise ValueError("a row sum is not elementwise: compute it before the kernel")


class FormulaPrinter(StrPrinter):
    """Formulas for docstrings and comments, as the code computes them: `@` for matrix products,
    `∘` for Hadamard products, `*` for a number times a matrix and for products of entries."""

    def _print_MatMul(self, expr):
        coeff, mats = expr.as_coeff_matrices()
        if len(mats) == 2 and _is_ones(mats[0]):  # ones_B @ b: the row b added to every row of the batch
            mats = mats[1:]
        code = " @ ".join(map(self._operand, mats))
        if len(mats) > 1 and coeff != 1:
            code = f"({code})"
        return code if coeff == 1 else f"-{code}" if coeff == -1 else f"{self._print(coeff)}*{code}"

    def _print_HadamardProduct(self, expr):
        return " ∘ ".join(self._operand(a) if a.is_MatMul or a.is_MatAdd else self.parenthesize(a, precedence(expr))
                          for a in expr.args)

    def _operand(self, m) -> str:
        """A factor of a product: a name or a transpose of one as it is, anything else in parentheses."""
        if isinstance(m, (MatrixSymbol, Transpose, OneMatrix)):
            return self._print(m)
        return f"({self._print(m)})"

    def _print_HadamardPower(self, expr):
        return f"{self.parenthesize(expr.base, PRECEDENCE['Pow'])}∘{self.parenthesize(expr.exp, PRECEDENCE['Pow'])}"

    def _print_rowsum(self, expr):
        return f"rowsum({self._print(expr.args[0])})"

    def _print_OneMatrix(self, expr):
        return "ones"


def _floats(arg):
    """A number as a floating literal: fmax(0, x) would pick a host integer overload in CUDA."""
    return sp.Float(arg) if arg.is_Number else arg


def _is_ones(m) -> bool:
    return isinstance(m, MatrixSymbol) and m.name == "ones_B"


def _base_name(m) -> str:
    while isinstance(m, Transpose):
        m = m.arg
    return getattr(m, "name", "")


def formula(expr) -> str:
    return FormulaPrinter().doprint(expr)


__all__ = ["ArrayPrinter", "CuPyArrayPrinter", "CudaPrinter", "FormulaPrinter", "JaxArrayPrinter", "TorchArrayPrinter",
           "formula", "rowsum"]
