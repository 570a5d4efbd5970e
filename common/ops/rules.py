"""Helpers that op rules are written with: broadcasting's adjoints, and the JVP rules made from facts.

A VJP or JVP rule is written once against a namespace ``ns``
(:mod:`common.ops.table`); these are the pieces many rules share, each a
function of ``ns`` too, so they run on numbers, tape tensors and symbols alike.
"""

from __future__ import annotations

from collections.abc import Callable

from .table import OPS, ZERO


def unbroadcast(ns, g, x):
    """Sum ``g`` down to ``x``'s shape: the adjoint of numpy broadcasting.

    A known shape is already ``sum_to``'s param, so it is applied without ``bind``
    (as in :func:`expand_to`): this runs for every input of every binary op.
    """
    xs = x.shape
    if g.shape == xs and None not in xs:
        return g
    if None in xs or None in g.shape:
        return ns.sum_like(g, x)
    return ns.apply(OPS["sum_to"], (g,), {"shape": xs})


def expand_to(ns, g, x):
    """Broadcast ``g`` up to ``x``'s shape (the adjoint of :func:`unbroadcast`)."""
    xs = x.shape
    if g.shape == xs and None not in xs:
        return g
    if None in xs or None in g.shape:
        return ns.broadcast_like(g, x)
    return ns.apply(OPS["broadcast_to"], (g,), {"shape": xs})


def reshape_to(ns, g, x):
    """Reshape ``g`` to ``x``'s shape, static where known."""
    xs = x.shape
    if None in xs:
        return ns.reshape_like(g, x)
    if g.shape == xs:
        return g
    return ns.reshape(g, xs)


def keep_axes(ns, g, axis, keepdims):
    """Undo a reduction's dropped axes so ``g`` broadcasts against the input.

    ``axis`` is a reduction's bound (sorted, non-negative) axes, already
    expand_dims' normal form, so the op is applied without ``bind``.
    """
    if keepdims or not axis:
        return g
    return ns.apply(OPS["expand_dims"], (g,), {"axis": axis})


def call(ns, name: str, *inputs, **params):
    """``ns.<name>(*inputs, **params)`` for params already in ``bind``'s normal form.

    Rules run on every backward sweep; skipping ``bind`` (re-validating
    params the forward op already normalised) is a measurable share of small ops.
    """
    return ns.apply(OPS[name], inputs, params)


# ------------------------------------------------------- helpers that make JVP rules

def jvp_zero(ns, tangents, out, *inputs, **params):
    """The JVP rule of an op whose output carries no tangent: constants, integer or boolean
    results, piecewise-constant ops (sign) and stop_gradient."""
    return ZERO


def jvp_self_adjoint(vjp: Callable) -> Callable:
    """The JVP rule of a one-input op whose Jacobian is symmetric (elementwise: diagonal; softmax):
    J^T = J, so the VJP rule applied to the tangent is the JVP (one formula for both modes)."""
    def rule(ns, tangents, out, x, **params):
        return vjp(ns, tangents[0], out, x, **params)
    rule.self_adjoint = vjp  # symnum.jvp on numbers calls it directly: one call fewer per op
    return rule


def jvp_linear(name: str) -> Callable:
    """The JVP rule of an op linear in input 0, its other inputs being index arrays or reference
    shapes: the op itself applied to the tangent (reshape, sum, getitem, ...)."""
    def rule(ns, tangents, out, x, *rest, **params):
        t = tangents[0]
        if t is ZERO:
            return ZERO
        return ns.apply(OPS[name], (t, *rest), params)
    return rule


def jvp_product(name: str) -> Callable:
    """The JVP rule of a multilinear op (linear in each of its ``linear`` inputs, the others held
    fixed: mul, matmul, einsum): the product rule, one op per input that has a tangent."""
    def rule(ns, tangents, out, *inputs, **params):
        op = OPS[name]
        total = ZERO
        for i, t in enumerate(tangents):
            if t is ZERO or i not in op.linear:
                continue
            term = ns.apply(op, inputs[:i] + (t,) + inputs[i + 1:], params)
            total = term if total is ZERO else total + term
        return total
    return rule


def jvp_linear_together(name: str) -> Callable:
    """The JVP rule of an op linear in its ``linear_together`` inputs taken together (where,
    concatenate, stack): the op on their tangents, zeros standing in for a missing one."""
    def rule(ns, tangents, out, *inputs, **params):
        op = OPS[name]
        if not any(t is not ZERO for i, t in enumerate(tangents) if i in op.linear_together):
            return ZERO
        args = tuple([x if i not in op.linear_together else (ns.zeros_like(x) if t is ZERO else t)
                      for i, (x, t) in enumerate(zip(inputs, tangents))])
        return ns.apply(op, args, params)
    return rule
