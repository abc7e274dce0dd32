"""backprop-derive: backpropagation derived by the chain rule and proven equal to its matrix forms."""

from derive.chain import ChainRule
from derive.errors import DeriveError, SpecError
from derive.report.latex import to_latex
import derive.report.notebook  # noqa: F401  (fills in the results' Jupyter display: derive.report.notebook)
from derive.matrix import MatrixForms
from derive.network import Network, build_network
from derive.proofs.concrete import Proof, check_form, prove
from derive.spec import Spec, builtin_names, load_spec

__all__ = ["ChainRule", "DeriveError", "MatrixForms", "Network", "Proof", "Spec", "SpecError", "build_network",
           "builtin_names", "check_form", "load_spec", "prove", "to_latex"]
