"""A layer-list claim's tree printed back: as text (it parses back to the same tree) and as LaTeX (for documents)."""

from __future__ import annotations

from functools import partial

from derive.claims import layers_spatial as sv
from derive.claims.printing import _idx_text, _paren, text_of
from derive.claims.tree import Leaf, Node, Num, Op

_LATEX = {"mu": r"\mu", "var": r"\sigma^{2}", "gamma": r"\gamma", "beta": r"\beta", "delta": r"\delta",
          "xhat": r"\hat{x}", "xc": r"\bar{x}"}


def _leaf_text(leaf: Leaf) -> str:
    if leaf.kind == "X":
        base = "x"
    elif leaf.kind == "T":
        base = leaf.alias or "T"
    elif leaf.kind in ("B", "C") or (leaf.kind == "eps" and leaf.layer is None):
        base = leaf.kind
    else:
        base = sv.step_text(leaf.kind, leaf.layer)  # h1t2 and h1[t-1] for a recurrent layer's steps
    return base if leaf.index is None else f"{base}[{','.join(_idx_text(i) for i in leaf.index)}]"


def text(node: Node) -> str:
    """The tree in the layer list's text vocabulary."""
    return text_of(node, leaf=_leaf_text, calls={"batch_sum": "sum", "feature_sum": "sum_features", "sqrt": "sqrt",
                                                   "step_sum": "sum_steps", "rowsum": "rowsum"})


def _leaf_latex(leaf: Leaf) -> str:
    if leaf.kind == "X":
        return "x"
    if leaf.kind == "T":
        return "T"
    if leaf.kind in ("B", "C"):
        return leaf.kind
    if leaf.kind == "eps":
        return r"\varepsilon" if leaf.layer is None else rf"\varepsilon^{{({leaf.layer})}}"
    if leaf.kind == "dk":
        return "d_k"
    if leaf.kind == "mask":
        return f"M^{{({leaf.layer})}}"
    kind, step = sv.split_step(leaf.kind)
    if step is not None:  # a recurrent layer's step: h^{(1)}_{t-1}
        shown = step if isinstance(step, int) else step[0] + ("" if step[1] == 0 else f"{step[1]:+d}")
        return f"{_LATEX.get(kind, kind)}^{{({leaf.layer})}}_{{{shown}}}"
    if leaf.alias in sv.UPPER:  # attention's Q, K, V, S, P, O as the claim wrote them
        base = leaf.alias
    elif kind in _WEIGHTS:
        base = _WEIGHTS[kind]
    else:
        base = _LATEX.get(leaf.kind, leaf.kind)
    idx = "" if leaf.index is None else "_{" + ",".join(_idx_text(i) for i in leaf.index) + "}"
    if leaf.kind == "var":
        return rf"\sigma^{{2({leaf.layer})}}" + idx
    return f"{base}^{{({leaf.layer})}}" + idx


_WEIGHTS = {"Wq": "W_q", "Wk": "W_k", "Wv": "W_v", "Wo": "W_o", "Wxh": "W_{xh}", "Whh": "W_{hh}"}


def _scalar(node: Node) -> bool:
    """A number, or made of the batch's size, a width and eps only: written before an array without a ⊙."""
    if isinstance(node, Num):
        return True
    if isinstance(node, Leaf):
        return node.kind in ("B", "n", "eps")
    return isinstance(node, Op) and all(_scalar(a) for a in node.args)


def latex_text(node: Node) -> str:
    """The tree in LaTeX: sums as \\sum_b (the batch) and \\sum_i (the features), gradients as fractions."""
    if isinstance(node, Num):
        v = node.value
        return rf"\frac{{{abs(v.p)}}}{{{v.q}}}" if v.q != 1 and v > 0 else str(v)
    if isinstance(node, Leaf):
        return _leaf_latex(node)
    op, args = node.op, node.args
    p = partial(_paren, latex_text, op)
    if op in ("add", "sub"):
        return f"{p(args[0], 10)} {'+' if op == 'add' else '-'} {p(args[1], 10, right=True)}"
    if op == "neg":
        return f"-{p(args[0], 30)}"
    if op == "div":
        return rf"\frac{{{latex_text(args[0])}}}{{{latex_text(args[1])}}}"
    if op in ("mul", "had", "dot"):
        joiner = " " if any(_scalar(a) for a in args) else r" \odot "
        left, right = (latex_text(a) if isinstance(a, Op) and a.op == "div" else p(a, 30, right=n == 1)
                       for n, a in enumerate(args))  # a fraction needs no parentheses
        return f"{left}{joiner}{right}"
    if op == "matmul":
        return f"{p(args[0], 30)} {p(args[1], 30, right=True)}"
    if op in ("pow", "epow"):
        return f"({latex_text(args[0])})^{{{node.param}}}"
    if op == "T":
        return f"({latex_text(args[0])})^\\top"
    if op == "entry":
        return f"({latex_text(args[0])})_{{{','.join(_idx_text(i) for i in node.param)}}}"
    if op == "grad":
        return rf"\frac{{\partial C}}{{\partial {latex_text(args[0])}}}"
    if op == "batch_sum":
        return rf"\sum_b {p(args[0], 30)}"
    if op == "feature_sum":
        return rf"\sum_i {p(args[0], 30)}"
    if op == "sqrt":
        return rf"\sqrt{{{latex_text(args[0])}}}"
    if op == "step_sum":
        return rf"\sum_t {p(args[0], 30)}"
    if op in sv.OPERATORS + ("rowsum",):
        return rf"\operatorname{{{op.replace('_', chr(92) + '_')}}}(" + ", ".join(latex_text(a) for a in args) + ")"
    if op in ("sigma", "sigma_prime"):
        name = r"\sigma" if node.param is None else rf"\operatorname{{{node.param}}}"
        return f"{name}{chr(39) if op == 'sigma_prime' else ''}({latex_text(args[0])})"
    return op  # pragma: no cover
