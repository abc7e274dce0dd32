"""One way of writing each quantity the model defines: dC/dz as delta, sigma(z) as a, z by its definition."""

from __future__ import annotations

import sympy as sp
from sympy import Sum

from derive.proofs.general.functions import CostPartial, LocalPartial, sigma, sigma_prime
from derive.proofs.general.model import INDEX, Model
from derive.proofs.general.rules import equal_by_linearity, layer_decide
from derive.proofs.general.steps import Scope


def _entry_parts(model: Model, x):
    """(base name, layer, example, neuron) of an a, z or delta entry of the model's shape; None otherwise."""
    if not isinstance(x, sp.Indexed) or x.base not in (model.a, model.z, model.delta):
        return None
    if len(x.indices) != (3 if model.batch else 2):
        return None
    layer, *idx = x.indices
    e, i = idx if model.batch else (None, idx[0])
    return x.base.name, layer, e, i


def _has_z(layer, scope: Scope) -> bool:
    """z^layer exists for every admissible layer: layer >= 1 (a^0 is the input, not sigma of a z)."""
    return layer_decide(sp.Le(1, layer), scope) is True


def _as_z(model: Model, x, scope: Scope):
    """The entry z^layer_i (of example e) when x is its definition sum_k w a + b, in any order or index name."""
    if not isinstance(x, sp.Add):
        return None
    for b in x.args:
        if not (isinstance(b, sp.Indexed) and b.base == model.b and len(b.indices) == 2):
            continue
        layer, i = b.indices
        below = [y for y in x.atoms(sp.Indexed) if y.base == model.a and y.indices[0] == layer - 1]
        examples = {y.indices[1] for y in below if len(y.indices) == 3} if model.batch else {None}
        if not _has_z(layer, scope):
            continue
        for e in sorted(examples, key=str):
            if equal_by_linearity(x, model.z_definition(layer, i, e, sp.Dummy("k", **INDEX))):
                return model.Z(layer, i, e)
    return None


def _canonical(model: Model, expr, scope: Scope, done: list, inside: bool = False):
    """canonical(), recording each rewrite in done; inside: expr is what sigma, sigma' or dC/d is applied to."""
    if isinstance(expr, sp.Indexed):
        parts = _entry_parts(model, expr)
        if not inside and parts and parts[0] == "z" and _has_z(parts[1], scope):
            out = model.z_definition(parts[1], parts[3], parts[2], sp.Dummy("k", **INDEX))
            done.append((expr, out))
            return out
        return expr
    if isinstance(expr, (sigma, sigma_prime, CostPartial)):
        x = _canonical(model, expr.args[0], scope, done, inside=True)
        parts = _entry_parts(model, x)
        if parts and parts[0] == "z" and _has_z(parts[1], scope) and expr.func in (sigma, CostPartial):
            out = model.A(parts[1], parts[3], parts[2]) if expr.func is sigma else model.D(parts[1], parts[3], parts[2])
            done.append((expr.func(x), out))
            return out
        return expr.func(x)
    if not expr.args or isinstance(expr, (LocalPartial, sp.Derivative, sp.Subs, sp.Lambda)):
        return expr  # a derivative's variables are what they are: nothing to rewrite in them
    if isinstance(expr, Sum):
        return Sum(_canonical(model, expr.function, scope, done, inside), *expr.limits)
    out = expr.func(*(_canonical(model, a, scope, done, inside) for a in expr.args))
    if inside:
        z = _as_z(model, out, scope)
        if z is not None:
            done.append((out, z))
            return z
    return out


def canonical(model: Model, expr: sp.Expr, scope: Scope, done: list | None = None) -> sp.Expr:
    """expr with each quantity the model defines written one way, wherever its layer has it.

    dC/dz is delta (delta == dC/dz), sigma(z) is a (a = sigma(z): also inside dC/d),
    sum_k w a + b is z where sigma, sigma' or dC/d is applied to it, and a z standing
    alone is its definition sum_k w a + b. Only for layers >= 1 in the scope: z^0
    does not exist, and a^0 is the input. done, if given, gets each rewrite as a pair (before, after).
    """
    return _canonical(model, sp.sympify(expr), scope, [] if done is None else done)
