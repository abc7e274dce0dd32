"""A layer list's evaluator, for the kinds over shaped inputs: steps, sums over steps and examples, the operators.

derive.claims.layers_check's LayeredEvaluator mixes this in; derive.claims.layers_spatial says
what each name and operator means.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import sympy as sp

from derive.claims import layers_spatial as sv
from derive.claims.evaluate import is_matrix, shape_of
from derive.claims.layers import CONSTANTS, PARAMS
from derive.claims.tree import ClaimError, Leaf, Node, Op, ShapeError, substitute, walk


def layered_leaves(node: Node) -> list[Leaf]:
    return [n for n, _ in walk(node) if isinstance(n, Leaf) and isinstance(n.layer, int)]


class SpatialEvaluation:
    """The evaluator's steps for attention, a recurrent layer, convolution and pooling (self.leaves: LayeredLeaves)."""

    def _block_of(self, node: Node, kinds: tuple, what: str):
        ctx = self.leaves.ctx
        for leaf in layered_leaves(node):
            b = ctx.blocks.get(leaf.layer)
            if b is not None and b.kind in kinds:
                return b
        raise ClaimError(f"{self.describe(node)}: {what}", node.span)

    def _sequence(self, node: Node) -> bool:
        """Whether a sum over the batch is of one example's arrays (an attention layer's): then Σ over examples."""
        ctx = self.leaves.ctx
        return any(ctx.blocks.get(leaf.layer) is not None and ctx.blocks[leaf.layer].kind in sv.SEQUENCE
                   and leaf.kind not in CONSTANTS + PARAMS and self.leaves.example(leaf.kind, leaf.layer) is not None
                   for leaf in layered_leaves(node))

    def _channels(self, node: Node):
        """(O, positions) when the sum is of a convolution's output arrays: its bias's gradient sums the positions
        too."""
        ctx = self.leaves.ctx
        for leaf in layered_leaves(node):
            b = ctx.blocks.get(leaf.layer)
            if b is not None and b.kind in sv.CONV and sv.split_step(leaf.kind)[0] in ("z", "a", "delta", "y"):
                return b.out_channels, int(np.prod(b.shape[1:]))
        return None

    def _at_step(self, node: Node, env: dict) -> Node:
        """h1[t-1] at the step a sum_steps gives t (a leaf, or its gradient)."""
        leaf = node.args[0] if isinstance(node, Op) and node.op == "grad" and node.args else node
        if not isinstance(leaf, Leaf):
            return node
        base, step = sv.split_step(leaf.kind)
        if not isinstance(step, tuple):
            return node
        var, off = step
        if var not in env:
            raise ClaimError(f"{self.describe(node)}: the step {var} is bound by sum_steps(...)", node.span)
        new = replace(leaf, kind=sv.with_step(base, env[var] + off))
        return replace(node, args=(new,)) if node is not leaf else new

    def _example_sum(self, node: Op, env: dict):
        """Σ over the examples of an expression in one example's arrays (attention's): each evaluated at each."""
        ctx, here = self.leaves.ctx, self.leaves.e
        try:
            terms = []
            for e in range(ctx.E):
                self.leaves.e = e
                terms.append(self.eval(node.args[0], env))
        finally:
            self.leaves.e = here
        return sum(terms[1:], terms[0])

    def _rowsum(self, node: Op, env: dict):
        """Each row's sum, kept (rows × 1): the softmax's rowsum(dC/dP ∘ P)."""
        value = self.eval(node.args[0], env)
        if not is_matrix(value):
            raise ShapeError(f"{self.describe(node)}: rowsum needs an array")
        return sp.Matrix(value.rows, 1, lambda i, j: sp.Add(*value[i, :]))

    def _step_sum(self, node: Op, env: dict):
        """Σ_t over a recurrent layer's steps 1 to T (h0 and δ_{T+1} are 0)."""
        b = self._block_of(node, sv.STEPPED, "sum_steps sums over a recurrent layer's steps; name its arrays at "
                                             "step t, h1[t-1] @ delta1[t]")
        terms = [self.eval(node.args[0], {**env, node.param: t}) for t in range(1, sv.steps(b) + 1)]
        shapes = {shape_of(x) for x in terms}
        if len(shapes) != 1:
            raise ShapeError(f"{self.describe(node)}: its terms differ in size from step to step")
        return sum(terms[1:], terms[0])

    def _operator(self, node: Op, env: dict):
        ctx = self.leaves.ctx
        if node.op == "upsample":
            b = self._block_of(node, sv.POOL, "upsample spreads a pooling layer's gradient over its windows: "
                                              "upsample(dC/dy2)")
        else:
            b = self._block_of(node, sv.CONV, f"{node.op} is of a convolution's arrays: corr(x1, delta1), "
                                              "full_conv(delta1, rot180(W1))")
        args = [self.eval(a, env) for a in node.args]
        if not all(is_matrix(a) for a in args):
            raise ShapeError(f"{self.describe(node)}: {node.op} takes arrays")
        try:
            return getattr(sv, node.op)(ctx, b, *args)
        except ValueError as exc:
            raise ShapeError(f"{self.describe(node)}: {exc}") from None


def channel_sum(value, channels: int, positions: int, row: bool):
    """Σ over the batch and each channel's positions of a convolution's flat arrays: the bias's layout."""
    A = value if row else value.T
    out = sp.Matrix(1, channels, lambda i, o: sp.Add(*[A[e, o * positions + l] for e in range(A.rows)
                                                      for l in range(positions)]))
    return out if row else out.T


# ---------------------------------------------------------------------------
# the mistakes these kinds invite, each named, each candidate proven before it is reported
# ---------------------------------------------------------------------------

def spatial_repairs(check) -> list:
    """The named slips of attention, a recurrent layer, convolution and max pooling: the 1/√d_k lost, the softmax's
    Jacobian without its rowsum, ∂C/∂h_t (all of it) where the gradient from above at step t belongs, σ'(z_t) lost, a
    step off by one, the kernel not turned, the gradient to every window entry instead of the arg-max."""
    from derive.claims.repair import Repair

    ctx, lhs, tree = check.ctx, check.lhs, check.tree
    block = ctx.blocks.get(lhs.layer)
    if block is None:
        return []
    l, P = lhs.layer, check.printer
    tried: list[tuple[str, Node, str, str, str]] = []  # (kind, new tree, old, new, note)
    shifts: list = []  # a step's edits, tried after the rest, one step back before one forward

    def edit(kind: str, path: tuple, new: Node, note: str) -> None:
        old = at_path(tree, path)
        tried.append((kind, substitute(tree, path, new), check.describe(old) if old.span else P(old), P(new), note))

    if block.kind in sv.SEQUENCE:
        root = Op("sqrt", (Leaf("dk", l),))
        for new, note in ((Op("div", (tree, root)), "the scale 1/√d_k of S = Q Kᵀ/√d_k reaches ∂C/∂Q and ∂C/∂K"),
                          (Op("mul", (tree, root)), "√d_k where 1/√d_k belongs")):
            tried.append(("scale", new, "", P(new), note))
    for node, path in walk(tree):
        if isinstance(node, Op) and node.op in ("mul", "had", "dot") and block.kind in sv.SEQUENCE:
            for i, a in enumerate(node.args):
                if isinstance(a, Leaf) and a.kind == "a" and a.layer == l and a.index is None:
                    g = node.args[1 - i]
                    edit("softmax", path, Op("mul", (a, Op("sub", (g, Op("rowsum", (Op("mul", (g, a)),)))))),
                         "the softmax's Jacobian by rows, P ∘ (g − rowsum(g ∘ P)), not P ∘ g")
        if isinstance(node, Op) and node.op == "grad" and isinstance(node.args[0], Leaf):
            base, step = sv.split_step(node.args[0].kind)
            if base == "h" and step is not None:
                edit("step", path, Op("grad", (replace(node.args[0], kind=sv.with_step("y", step)),), "batch"),
                     "dC/dh_t is all of h_t's gradient, δ_{t+1} W_hhᵀ included; what reaches h_t from above is dC/dy_t")
        leaf = node.args[0] if isinstance(node, Op) and node.op == "grad" else node
        if isinstance(leaf, Leaf):
            base, step = sv.split_step(leaf.kind)
            if isinstance(step, tuple):  # one step back first: h_{t-1} is the textbook's, δ_{t+1} h_tᵀ its shift
                for off in (-1, 1):
                    moved = replace(leaf, kind=sv.with_step(base, (step[0], step[1] + off)))
                    shifts.append((off, path, replace(node, args=(moved,)) if node is not leaf else moved))
        if isinstance(node, Leaf) and node.kind == "W" and node.layer == l and block.kind in sv.CONV \
                and node.index is None:
            parent = at_path(tree, path[:-1]) if path else None
            if not (isinstance(parent, Op) and parent.op == "rot180"):
                edit("rotation", path, Op("rot180", (node,)), "the input's gradient meets the kernel turned by 180°")
        if isinstance(node, Op) and node.op == "grad" and block.kind in sv.CONV and node.args[0] == Leaf("a", l):
            edit("activation", path, Leaf("delta", l), "δ = ∂C/∂a ∘ σ'(z): the activation's derivative comes first")
        if isinstance(node, Op) and node.op == "corr":
            edit("order", path, replace(node, args=node.args[::-1]), "corr(x, δ): the input first, δ the window's weights")
        if isinstance(node, Op) and node.op == "rot180" and block.kind in sv.CONV:
            edit("rotation", path, node.args[0], "the kernel's gradient and the forward pass read it unturned")
        if isinstance(node, Op) and node.op == "upsample" and block.kind == "maxpool2d":
            parent = at_path(tree, path[:-1]) if path else None
            if not (isinstance(parent, Op) and parent.op in ("mul", "had")):
                edit("argmax", path, Op("mul", (Leaf("mask", l), node)),
                     "a max pool's gradient goes to each window's arg-max only, not to every entry")
    for off, path, new in sorted(shifts, key=lambda x: x[0]):
        edit("step", path, new, "another step")
    base, step = sv.split_step(lhs.kind)
    if block.kind in sv.STEPPED and isinstance(step, int) and (base == "delta" or (lhs.gradient and base == "z")):
        new = Op("mul", (tree, Op("sigma_prime", (Leaf(sv.with_step("z", step), l),), block.nonlinearity)))
        tried.append(("activation", new, "", P(new), "δ_t is the gradient at h_t times σ'(z_t) (1 − h_t² for tanh)"))
    out = []
    for kind, new_tree, old, new, note in tried:
        if check.exact_holds(new_tree):
            whole = P(new_tree)
            text = f"holds with {new} in place of {old} ({note})" if old else f"holds as {whole} ({note})"
            out.append(Repair(kind, text, old, new, whole))
            if len(out) >= 2:
                break
    return out


def at_path(node: Node, path: tuple) -> Node:
    for i in path:
        node = node.args[i]
    return node


def worst(results: list, claim, label: str):
    """The worst of several checks of one claim (its sides, or its steps), named by `label` and number; all PROVEN:
    PROVEN."""
    from derive.verdict import Verdict

    order = (Verdict.ERROR, Verdict.REFUTED, Verdict.UNPROVEN)
    k, bad = next(((k, v) for w in order for k, v in results if v.verdict == w), results[0])
    out = replace(bad, claim=claim)
    if out.verdict != Verdict.PROVEN:
        out.message = f"{label} {k}: {out.message}" if out.message else f"{label} {k}"
        if out.shape_error:
            out.shape_error = f"{label} {k}: {out.shape_error}"
        if out.witness is not None:
            out.witness = {label: k, **out.witness}
    return out
