"""backprop-derive: backpropagation derived by the chain rule and proven equal to its matrix forms."""

from .chain import ChainRule
from .errors import DeriveError, SpecError
from .latex import to_latex
from .matrix import MatrixForms
from .network import Network, build_network
from .proof import Proof, check_form, prove
from .spec import Spec, builtin_names, load_spec

__all__ = ["ChainRule", "DeriveError", "MatrixForms", "Network", "Proof", "Spec", "SpecError", "build_network",
           "builtin_names", "check_form", "load_spec", "prove", "to_latex"]
