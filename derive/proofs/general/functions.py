"""The undefined functions of the general proof: sigma, sigma', dC/dx and the chain rule's local factor.

Each prints itself (LaTeX and text) through the general proof's own printers (printing.py).
"""

from __future__ import annotations

from sympy import Function


class _Printed(Function):
    """An undefined function printed by a format string per subclass: one "{}" per argument."""

    _tex_format = ""
    _text_format = ""

    def _latex(self, printer):
        return self._tex_format.format(*(printer._print(a) for a in self.args))

    def _sympystr(self, printer):
        return self._text_format.format(*(printer._print(a) for a in self.args))

    _general_latex, _general_text = _latex, _sympystr


class sigma_prime(_Printed):
    """sigma'(x): the derivative of the activation, left undefined."""

    nargs = 1
    _tex_format = r"\sigma'\left({}\right)"
    _text_format = "σ'({})"


class sigma(_Printed):
    """The activation, left undefined; its derivative is sigma'."""

    nargs = 1
    _tex_format = r"\sigma\left({}\right)"
    _text_format = "σ({})"

    def fdiff(self, argindex=1):
        return sigma_prime(self.args[0])


class CostPartial(_Printed):
    """dC/dx for one entry x: it exists because C is differentiable; it is never expanded."""

    nargs = 1
    _tex_format = r"\frac{{\partial C}}{{\partial {}}}"
    _text_format = "∂C/∂{}"


class LocalPartial(_Printed):
    """dy/dx, the chain rule's local factor, until a step differentiates y's definition."""

    nargs = 2
    _tex_format = r"\frac{{\partial {}}}{{\partial {}}}"
    _text_format = "∂{}/∂{}"
