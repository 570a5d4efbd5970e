"""Algebraic simplification: identities that ``grad`` leaves behind.

The VJP rules are written for the general case, so a gradient graph is full of
``g * 1`` (the seed), ``x + 0``, ``sum_to`` of an already-right shape and
broadcasts of a scalar one. Each identity fires only where it cannot change
the result's shape or dtype, since a broadcast against the "neutral" operand
may be what gives the result its shape.

Every identity kept by default holds in IEEE arithmetic too, NaN and inf
included (``x * 1``, ``x + 0``, ``x - 0``, ``x / 1``, ``-(-x)``; only the sign
of a zero can differ, as in ``-0.0 + 0``), so a NaN or inf fed to the graph
comes out as numpy gives it on the graph as written. ``x * 0 -> 0``,
``x - x -> 0`` and ``x / x -> 1`` are not such identities (inf * 0 is NaN):
they fire by default only where x cannot hold a NaN or inf (an integer, a
known finite constant), and everywhere under ``fast_math``. Scalar constant
factors are gathered (``(x * 2) * 3 -> x * 6``) only when finite and nonzero,
so no NaN or inf is lost; the rounding of the product may differ in the last bit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from common.api import const, symbolic
from common.graph import Node, made

from .rules import constant_value, is_value, run_rules, same_type


def _keeps(out: Node, x: Node, other: Node) -> bool:
    """Whether ``out = op(x, other)`` has ``x``'s type for a constant-valued ``other``."""
    if out.dtype != x.dtype:
        return False
    if out.shape == x.shape and None not in x.shape:
        return True
    # unknown dims: safe only when ``other`` cannot broadcast x (a single element, no more dims)
    return out.shape == x.shape and other.ndim <= x.ndim and other.size == 1


def _filled(like: Node, value: float) -> Node:
    """``value`` in ``like``'s shape and dtype, as a constant instruction where the shape is static."""
    if None in like.shape:
        return symbolic.full_like(like, value)
    return symbolic.full(like.shape, value, like.dtype)


def _factor(c: Node, base: Node) -> float | None:
    """``c``'s value if it is one finite nonzero number everywhere and multiplying ``base`` by it
    keeps base's shape.

    A zero or non-finite factor is left where it is: moved onto another operand of a
    product, ``(p * q) * 0`` would become ``(p * 0) * q``, which is 0 where ``p * q`` overflows.
    """
    if c.value is None or c.ndim > base.ndim:
        return None
    for cd, bd in zip(reversed(c.shape), reversed(base.shape)):
        if cd != 1 and cd != bd:
            return None
    v = constant_value(c)
    if v is None:
        return None
    v = float(v)
    return v if v != 0.0 and math.isfinite(v) else None


def _scale(n: Node, dtype) -> tuple[Node, float]:
    """``(base, k)`` with ``n == base * k`` for a constant factor ``k`` (seen through neg and mul)."""
    op = n.op
    if op is None or n.dtype != dtype:
        return n, 1.0
    if op.name == "neg":
        return n.inputs[0], -1.0
    if op.name == "mul":
        a, b = n.inputs
        for x, c in ((a, b), (b, a)):
            if x.dtype == dtype and x.shape == n.shape:
                k = _factor(c, x)
                if k is not None:
                    return x, k
    return n, 1.0


def _scaled(base: Node, k: float) -> Node:
    if k == 1.0:
        return base
    if k == -1.0:
        return symbolic.neg(base)
    return symbolic.mul(base, const(np.asarray(k, base.dtype)))


def _push(x: Node, k: float) -> Node | None:
    """``x * k`` for a product ``x = p * q``, with ``k`` applied to the smaller of p and q."""
    if x.op is None or x.op.name != "mul":
        return None
    p, q = x.inputs
    if p.dtype != x.dtype or q.dtype != x.dtype:
        return None
    if _size(p) <= _size(q) and _size(p) < _size(x):
        base, kp = _scale(p, x.dtype)
        return symbolic.mul(_scaled(base, kp * k), q)
    if _size(q) < _size(p) and _size(q) < _size(x):
        base, kq = _scale(q, x.dtype)
        return symbolic.mul(p, _scaled(base, kq * k))
    return None


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
        return _scaled(base, -k) if base is not n.inputs[0] else _push(base, -1.0)
    a, b = n.inputs
    if a.dtype != dtype or b.dtype != dtype:
        return None
    for x, c in ((a, b), (b, a)):
        kc = _factor(c, x) if x.shape == n.shape else None
        if kc is not None:
            base, k = _scale(x, dtype)
            return _scaled(base, k * kc) if base is not x else _push(x, kc)
    (ba, ka), (bb, kb) = _scale(a, dtype), _scale(b, dtype)
    if ka == 1.0 and kb == 1.0:
        return None
    if ka != 1.0 and kb != 1.0:
        k = ka * kb
        return symbolic.mul(_scaled(ba, k), bb) if _size(ba) <= _size(bb) else symbolic.mul(ba, _scaled(bb, k))
    if ka != 1.0 and _size(ba) > _size(b):
        return symbolic.mul(ba, _scaled(b, ka))
    if kb != 1.0 and _size(bb) > _size(a):
        return symbolic.mul(_scaled(a, kb), bb)
    return None


#: how many sums ``_merge_scatters`` looks into for a matching scatter, at most, per node
MERGE_BUDGET = 64


def _merge_scatters(n: Node, a: Node, b: Node) -> Node | None:
    """scatter_add(u, ...) + scatter_add(v, ...) at the same places -> scatter_add(u + v, ...).

    Gradients of several uses of one slice come back as separate scatters into
    full-size zeros; one scatter of the summed (slice-sized) values does the same.
    A scatter added to a sum of sums is merged with a matching scatter inside
    it (``((s1 + s2) + s3)`` with s3 at s1's places), found by an iterative
    search of at most :data:`MERGE_BUDGET` sums: the gradient of an unrolled
    loop over ``xs[t]`` is a chain of thousands of scatters at different
    places, which must cost O(1) per node, not a walk (nor a recursion) as
    long as the chain.
    """
    if a.op is None or b.op is None:
        return None
    for x, y in ((a, b), (b, a)):  # (s1 + s2) + s3 with s3 matching s1 or s2
        if x.op.name == "add" and y.op.name == "scatter_add" and same_type(x, n):
            merged = _merge_into_sum(x, y)
            if merged is not None:
                return merged
    return _merge_pair(n, a, b)


def _merge_pair(n: Node, a: Node, b: Node) -> Node | None:
    """``a + b`` as one scatter, for two scatters at the same places (else None)."""
    if a.op is None or b.op is None or a.op.name != "scatter_add" or b.op.name != "scatter_add":
        return None
    (u, *rest_a), (v, *rest_b) = a.inputs, b.inputs
    if len(rest_a) != len(rest_b) or any(x is not y for x, y in zip(rest_a, rest_b)):
        return None
    if a.params != b.params or u.shape != v.shape or u.dtype != v.dtype or not same_type(n, a):
        return None
    return symbolic.scatter_add(u + v, *rest_a, index=a.params["index"])


def _merge_into_sum(x: Node, y: Node) -> Node | None:
    """The sum ``x`` (a tree of adds) with the scatter ``y`` merged into a matching scatter term, or None.

    Depth first, left before right, through adds of ``x``'s type; the sums on
    the path to the match are rebuilt over the merged term.
    """
    stack: list[tuple[Node, tuple]] = [(x, ())]  # (a sum, the path of (sum, other term) down to it)
    budget = MERGE_BUDGET
    while stack and budget:
        node, path = stack.pop()
        budget -= 1
        found = None
        for inner, other in (node.inputs, node.inputs[::-1]):
            if not same_type(inner, node):
                continue
            merged = _merge_pair(node, inner, y)
            if merged is not None:
                found = symbolic.add(merged, other)
                break
        if found is not None:
            for _, other in reversed(path):
                found = symbolic.add(found, other)
            return found
        for inner, other in (node.inputs[::-1], node.inputs):  # pushed right first: the left is searched first
            if inner.op is not None and inner.op.name == "add" and same_type(inner, node):
                stack.append((inner, (*path, (node, other))))
    return None


def _placeholder(ref: Node) -> Node:
    """A constant of ``ref``'s static shape and dtype that costs no memory (a broadcast zero).

    An input read only for its shape need not be computed: with this in its
    place, the computation that made it is dead code.
    """
    value = np.broadcast_to(np.zeros((), ref.dtype), ref.shape)
    return Node(None, (), {}, ref.shape, ref.dtype, None, value, ref.site)


def _shape_only(n: Node) -> Node | None:
    """``n`` with each computed input it reads only for its shape (its op's ``shape_only`` trait) stood in for."""
    ins = n.inputs
    new, changed = list(ins), False
    for k in n.op.shape_only.of(len(ins)):
        ref = ins[k]
        if ref.op is not None and None not in ref.shape:
            new[k], changed = _placeholder(ref), True
    if not changed:
        return None
    return made(n.op, tuple(new), n.params, n.shape, n.dtype, n.name, n.site)


def _noop(n: Node) -> Node | None:
    """Input 0 itself, for an op that is the identity whenever its output has input 0's type
    (its ``noop_on_same_type`` trait: reshape, broadcast_to, sum_to, squeeze, cast, ...).

    With unknown dims, equal static types mean equal shapes only when no reference input can
    set the output's shape (``broadcast_like(x, ref)`` with x and ref both of shape (?,)).
    """
    x = n.inputs[0]
    if same_type(n, x) and (None not in x.shape or not n.op.shape_only):
        return x
    return None


def _finite(x: Node, value) -> bool:
    """Whether ``x`` surely holds no NaN or inf: an integer or boolean, or a finite constant value."""
    return x.dtype.kind in "biu" or (value is not None and bool(np.isfinite(value)))


def _times_zero(n: Node, a: Node, b: Node, sa, sb, fast: bool) -> Node | None:
    """``a * b -> 0`` where one factor is 0 and the other cannot be NaN or inf (or ``fast``)."""
    if None in n.shape:
        return None
    if (sa is not None and sa == 0 and (fast or _finite(b, sb))) or \
            (sb is not None and sb == 0 and (fast or _finite(a, sa))):
        return _filled(n, 0.0)
    return None


def _fast_identity(n: Node) -> Node | None:
    """``x - x -> 0`` and ``x / x -> 1``: true for every finite x, wrong for NaN, inf and 0/0."""
    a, b = n.inputs
    if a is not b or not same_type(n, a):
        return None
    return _filled(a, 0.0 if n.op.name == "sub" else 1.0)


def fast_algebra_rule(n: Node) -> Node | None:
    """``algebra_rule`` plus the identities that hold only for finite values (``fast_math``)."""
    name = n.op.name
    if name in ("sub", "div"):
        rep = _fast_identity(n)
        if rep is not None:
            return rep
    return algebra_rule(n, fast=True)


def algebra_rule(n: Node, fast: bool = False) -> Node | None:
    op = n.op
    name = op.name
    ins = n.inputs
    if op.shape_only:
        rep = _shape_only(n)
        if rep is not None:
            return rep
    if op.noop_on_same_type:
        return _noop(n)
    if name == "mul":
        a, b = ins
        sa, sb = constant_value(a), constant_value(b)  # each looked up once: this runs for every product
        if sb is not None and sb == 1 and _keeps(n, a, b):
            return a
        if sa is not None and sa == 1 and _keeps(n, b, a):
            return b
        if sa is not None and sa == 0 or sb is not None and sb == 0:
            rep = _times_zero(n, a, b, sa, sb, fast)  # inf * 0 is NaN: only where no inf can be
            if rep is not None:
                return rep
        return _gather_scale(n)  # a scalar factor has the shape of nothing: moving it is always safe
    elif name == "add":
        a, b = ins
        sb = constant_value(b)
        if sb is not None and sb == 0 and _keeps(n, a, b):
            return a
        sa = constant_value(a)
        if sa is not None and sa == 0 and _keeps(n, b, a):
            return b
        return _merge_scatters(n, a, b)
    elif name == "sub":
        a, b = ins
        if is_value(b, 0) and _keeps(n, a, b):
            return a
        if is_value(a, 0) and same_type(n, b):
            return symbolic.neg(b)
    elif name == "div":
        a, b = ins
        if is_value(b, 1) and _keeps(n, a, b):
            return a
    elif name == "neg":
        x = ins[0]
        if x.op is not None and x.op.name == "neg":
            return x.inputs[0]
        return _gather_scale(n)
    elif name == "transpose":
        x = ins[0]
        if same_type(n, x) and n.params["axes"] == tuple(range(x.ndim)):
            return x
    elif name == "stop_gradient":
        return ins[0]  # an identity once differentiation is over
    return None


def algebra(outputs: Sequence[Node], counts: dict | None = None, fast_math: bool = False) -> list[Node]:
    """``outputs`` with neutral-element and identity ops removed (``fast_math``: see the module doc)."""
    rule = fast_algebra_rule if fast_math else algebra_rule
    return run_rules(outputs, [("algebra", rule)], merge=False, counts=counts)
