"""A claim's tree printed back in the claim's own syntax: text, or LaTeX in the spec's layer style."""

from __future__ import annotations

from functools import partial
from typing import Callable

from derive.claims.tree import LATEX_NAMES, Leaf, Node, Num, Op
from derive.tables.activations import ACTIVATIONS

_PREC = {"add": 10, "sub": 10, "neg": 20, "mul": 30, "dot": 30, "matmul": 30, "had": 30, "div": 30,
         "pow": 40, "epow": 40, "T": 50, "entry": 50}


def _prec(node: Node) -> int:
    if isinstance(node, Num):
        if node.value < 0:
            return 20
        return 30 if node.value.q != 1 else 100
    if isinstance(node, Op):
        return _PREC.get(node.op, 100)
    return 100


def _paren(show: Callable[[Node], str], op: str, child: Node, level: int, right: bool = False) -> str:
    """A child of an `op` node, printed by `show`, in parentheses where its precedence needs them."""
    s = show(child)
    cp = _prec(child)
    mixed = cp == level == 30 and isinstance(child, Op) and child.op != op and {child.op, op} != {"mul", "had"}
    return f"({s})" if cp < level or mixed or (right and cp == level and level < 40) else s


def text_of(node: Node, leaf: Callable[[Leaf], str] | None = None, calls: dict | None = None) -> str:
    """The tree in the text vocabulary (parses back to the same tree).

    A vocabulary of its own (a layer list's) passes its `leaf` printer, and `calls`, the names it
    prints its own operations by (batch_sum -> sum); a gradient of a leaf is then dC/dgamma2, bare.
    """
    leaf = leaf or _text_leaf
    show = partial(text_of, leaf=leaf, calls=calls)
    if isinstance(node, Num):
        return str(node.value)
    if isinstance(node, Leaf):
        return leaf(node)
    op, args = node.op, node.args
    p = partial(_paren, show, op)

    if op in ("add", "sub"):
        return f"{p(args[0], 10)} {'+' if op == 'add' else '-'} {p(args[1], 10, right=True)}"
    if op == "neg":
        return f"-{p(args[0], 30)}"
    if op in ("mul", "had", "dot", "matmul", "div"):
        sym = {"mul": "*", "had": "*", "dot": "*", "matmul": "@", "div": "/"}[op]
        return f"{p(args[0], 30)} {sym} {p(args[1], 30, right=True)}"
    if op in ("pow", "epow"):
        return f"{p(args[0], 41)}**{node.param}"
    if op == "T":
        return f"{p(args[0], 50)}.T"
    if op == "entry":
        return f"{p(args[0], 50)}[{','.join(_idx_text(i) for i in node.param)}]"
    if op in ("sigma", "sigma_prime"):
        name = node.param or "sigma"
        return f"{name}{'_prime' if op == 'sigma_prime' else ''}({show(args[0])})"
    if op == "diag":
        return f"diag({show(args[0])})"
    if op == "grad":
        if calls is not None and isinstance(args[0], Leaf):
            return f"dC/d{leaf(args[0])}"
        return f"dC/d({show(args[0])})"
    if op == "axis_sum":
        return f"np.sum({show(args[0])}" + ("" if node.param is None else f", axis={node.param}, keepdims=True") + ")"
    if op == "sum":
        var, lo, hi = node.param
        return f"sum({show(args[0])} for {var} in range({lo}, {hi + 1}))"
    return f"{(calls or {}).get(op, op)}({', '.join(show(a) for a in args)})"


def _idx_text(item) -> str:
    if isinstance(item, tuple):
        var, off = item
        return var if off == 0 else f"{var}{off:+d}"
    return str(item)


def _text_leaf(leaf: Leaf) -> str:
    if leaf.kind in ("C", "ones"):
        return leaf.kind
    if leaf.kind == "rate":
        return "eta"
    if leaf.kind == "g":
        return "grad_a(C)"
    if leaf.kind == "y":
        base = leaf.alias if leaf.alias in ("T", "y") else "y"
    elif leaf.kind == "a" and leaf.layer == 0 and leaf.alias == "x":
        base = "x"
    else:
        base = f"{leaf.kind}{leaf.layer}"
    if leaf.index is None:
        return base
    return f"{base}[{','.join(_idx_text(i) for i in leaf.index)}]"


# each row's claim spelling (its LaTeX unless it says otherwise); a claim's bare sigma is \sigma
_ACT_LATEX = {name: act.claim_latex or act.latex for name, act in ACTIVATIONS.items()} | {None: r"\sigma"}


def latex_of(node: Node, style: str, written: Callable[[Node], str | None] | None = None) -> str:
    """The tree in LaTeX, the layer as ^{(l)} (style 'paren') or ^{l} ('bare'); a part the claim wrote itself as
    written(part) gives it (a repair quotes a source's own notation), where that is not None."""
    if written is not None:
        own = written(node)
        if own is not None:
            return own
    if isinstance(node, Num):
        v = node.value
        if v.q != 1:
            body = rf"\frac{{{abs(v.p)}}}{{{v.q}}}"
            return "-" + body if v < 0 else body
        return str(v)
    if isinstance(node, Leaf):
        return _latex_leaf(node, style)
    op, args = node.op, node.args
    p = partial(_paren, lambda child: latex_of(child, style, written), op)

    if op in ("add", "sub"):
        return f"{p(args[0], 10)} {'+' if op == 'add' else '-'} {p(args[1], 10, right=True)}"
    if op == "neg":
        return f"-{p(args[0], 30)}"
    if op == "div":
        return rf"\frac{{{latex_of(args[0], style, written)}}}{{{latex_of(args[1], style, written)}}}"
    if op in ("mul", "had", "dot", "matmul"):
        left, right = p(args[0], 30), p(args[1], 30, right=True)
        if op in ("mul", "had"):
            return rf"{left} \odot {right}"
        joiner = r" \cdot " if right[:1].isdigit() or right[:1] == "-" else " "
        return f"{left}{joiner}{right}"
    if op in ("pow", "epow"):
        return f"{_latex_wrap(args[0], style, written)}^{{{node.param}}}"
    if op == "T":
        return f"{_latex_wrap(args[0], style, written)}^T"
    if op == "entry":
        return f"{_latex_wrap(args[0], style, written)}_{{{','.join(_idx_text(i) for i in node.param)}}}"
    if op in ("sigma", "sigma_prime"):
        name = _ACT_LATEX.get(node.param, rf"\operatorname{{{node.param}}}")
        return f"{name}{chr(39) if op == 'sigma_prime' else ''}({latex_of(args[0], style, written)})"
    if op == "diag":
        return rf"\operatorname{{diag}}({latex_of(args[0], style, written)})"
    if op == "sum":
        var, lo, hi = node.param
        return rf"\sum_{{{var}={lo}}}^{{{hi}}} {p(args[0], 30)}"
    if op == "partial":
        return rf"\partial {latex_of(args[0], style, written)}"
    if op == "grad":
        return rf"\frac{{\partial C}}{{\partial {latex_of(args[0], style, written)}}}"
    if op == "axis_sum":
        return f"np.sum({latex_of(args[0], style, written)}" + ("" if node.param is None else f", axis={node.param}, keepdims=True") + ")"
    return op  # pragma: no cover


def _latex_wrap(node: Node, style: str, written=None) -> str:
    """A base for ^: bare when it carries no superscript of its own, else in parentheses."""
    s = latex_of(node, style, written)
    if isinstance(node, Num) and node.value >= 0 and node.value.q == 1:
        return s
    if isinstance(node, Leaf) and (node.layer is None or (node.kind == "a" and node.alias == "x")) and node.kind not in ("g", "ones"):
        return s
    return f"({s})"


def _latex_leaf(leaf: Leaf, style: str) -> str:
    if leaf.kind == "C":
        return "C"
    if leaf.kind == "rate":
        return r"\eta"
    if leaf.kind == "ones":
        return r"\mathbf{1}"
    if leaf.kind == "g":
        return r"\nabla_a C"
    idx = ""
    if leaf.index is not None:
        parts = [_idx_text(i) for i in leaf.index]
        joined = "".join(parts) if all(len(x) == 1 for x in parts) else ",".join(parts)
        idx = joined if len(joined) == 1 else f"{{{joined}}}"
    if leaf.kind == "y" or (leaf.kind == "a" and leaf.layer == 0 and leaf.alias == "x"):
        base = "x" if leaf.kind == "a" else (leaf.alias if leaf.alias in ("T", "y") else "y")
        return f"{base}_{idx}" if idx else base
    base = LATEX_NAMES[leaf.kind]
    if style == "bare":
        sup = str(leaf.layer) if leaf.layer < 10 else f"{{{leaf.layer}}}"
        return f"{base}^{sup}" + (f"_{idx}" if idx else "")
    return (f"{base}_{idx}" if idx else base) + f"^{{({leaf.layer})}}"

