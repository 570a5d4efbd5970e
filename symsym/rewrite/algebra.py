"""Algebraic simplification: identities that ``grad`` leaves behind.

The VJP rules are written for the general case, so a gradient graph is full of
``g * 1`` (the seed), ``x + 0``, ``sum_to`` of an already-right shape and
broadcasts of a scalar one. Each identity fires only where it cannot change
the result's shape or dtype, since a broadcast against the "neutral" operand
may be what gives the result its shape.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.api import const
from common.api import symbolic as S
from common.graph import Node

from .core import is_value, run_rules, same_type


def _keeps(out: Node, x: Node, other: Node) -> bool:
    """Whether ``out = op(x, other)`` has ``x``'s type for a constant-valued ``other``."""
    if out.dtype != x.dtype:
        return False
    if out.shape == x.shape and None not in x.shape:
        return True
    # unknown dims: safe only when ``other`` cannot broadcast x (a single element, no more dims)
    return out.shape == x.shape and other.ndim <= x.ndim and other.size == 1


def _zeros(like: Node) -> Node:
    if None in like.shape:
        return S.zeros_like(like)
    return S.full(like.shape, 0.0, like.dtype)


_SAME_SHAPE = {"sum_to", "broadcast_to", "reshape"}
_SAME_AS_REF = {"sum_like", "broadcast_like", "reshape_like"}


def _scale(n: Node, dtype) -> tuple[Node, float]:
    """``(base, k)`` with ``n == base * k`` for a scalar constant ``k`` (seen through neg and mul)."""
    op = n.op
    if op is None or n.dtype != dtype:
        return n, 1.0
    if op.name == "neg":
        return n.inputs[0], -1.0
    if op.name == "mul":
        a, b = n.inputs
        if b.value is not None and b.ndim == 0 and a.dtype == dtype:
            return a, float(b.value)
        if a.value is not None and a.ndim == 0 and b.dtype == dtype:
            return b, float(a.value)
    return n, 1.0


def _scaled(base: Node, k: float) -> Node:
    if k == 1.0:
        return base
    if k == -1.0:
        return S.neg(base)
    return S.mul(base, const(np.asarray(k, base.dtype)))


def _size(n: Node) -> float:
    s = n.size
    return float("inf") if s is None else s


def _gather_scale(n: Node) -> Node | None:
    """Scalar constant factors merged into one, on the smallest operand of a product.

    Gradient graphs scale big batched values by chains of scalars (``-(c1 * (x * c2))``);
    one multiplication of the smallest operand does the same work.
    """
    dtype = n.dtype
    if dtype.kind != "f":
        return None
    if n.op.name == "neg":
        base, k = _scale(n.inputs[0], dtype)
        return _scaled(base, -k) if base is not n.inputs[0] else None
    a, b = n.inputs
    if a.dtype != dtype or b.dtype != dtype:
        return None
    for x, c in ((a, b), (b, a)):
        if c.value is not None and c.ndim == 0:
            base, k = _scale(x, dtype)
            return _scaled(base, k * float(c.value)) if base is not x else None
    (ba, ka), (bb, kb) = _scale(a, dtype), _scale(b, dtype)
    if ka == 1.0 and kb == 1.0:
        return None
    if ka != 1.0 and kb != 1.0:
        k = ka * kb
        return S.mul(_scaled(ba, k), bb) if _size(ba) <= _size(bb) else S.mul(ba, _scaled(bb, k))
    if ka != 1.0 and _size(ba) > _size(b):
        return S.mul(ba, _scaled(b, ka))
    if kb != 1.0 and _size(bb) > _size(a):
        return S.mul(_scaled(a, kb), bb)
    return None


def algebra_rule(n: Node) -> Node | None:
    name = n.op.name
    ins = n.inputs
    if name == "mul":
        a, b = ins
        if is_value(b, 1) and _keeps(n, a, b):
            return a
        if is_value(a, 1) and _keeps(n, b, a):
            return b
        if (is_value(a, 0) or is_value(b, 0)) and None not in n.shape:
            return _zeros(n)  # x * 0 -> 0, as Theano and TensorFlow's grappler do (ignoring inf/nan in x)
        return _gather_scale(n)  # a scalar factor has the shape of nothing: moving it is always safe
    elif name == "add":
        a, b = ins
        if is_value(b, 0) and _keeps(n, a, b):
            return a
        if is_value(a, 0) and _keeps(n, b, a):
            return b
    elif name == "sub":
        a, b = ins
        if is_value(b, 0) and _keeps(n, a, b):
            return a
        if is_value(a, 0) and same_type(n, b):
            return S.neg(b)
    elif name == "div":
        a, b = ins
        if is_value(b, 1) and _keeps(n, a, b):
            return a
    elif name == "neg":
        x = ins[0]
        if x.op is not None and x.op.name == "neg":
            return x.inputs[0]
        return _gather_scale(n)
    elif name in _SAME_SHAPE:
        x = ins[0]
        if x.shape == n.shape and None not in x.shape:
            return x
    elif name in _SAME_AS_REF:
        x, ref = ins
        if x.shape == ref.shape and None not in x.shape and x.shape == n.shape:
            return x
    elif name in ("expand_dims", "squeeze", "transpose", "cast"):
        x = ins[0]
        if same_type(n, x) and (name != "transpose" or n.params["axes"] == tuple(range(x.ndim))) \
                and (name not in ("expand_dims", "squeeze") or not n.params["axis"]):
            return x
    elif name == "stop_gradient":
        return ins[0]  # an identity once differentiation is over
    return None


def algebra(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with neutral-element and identity ops removed."""
    return run_rules(outputs, [("algebra", algebra_rule)], merge=False, counts=counts)
