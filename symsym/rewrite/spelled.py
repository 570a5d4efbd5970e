"""The fused op behind what users spell out: log-softmax, softmax, cross-entropy, softplus, sigmoid.

A model written as people write it computes a log-softmax as
``z = x - max(x); z - log(sum(exp(z)))``. Its value is exact, but its
derivative is not what a graph compiler should build: the path through the
``max`` shift is identically zero (every function of ``x - m`` that is
invariant under shifts has a zero derivative in ``m``), yet differentiating
it as written builds ``max``'s tie-splitting mask (an ``==``, a cast, a sum
and a division) on every call. These rules find the spelled-out forms and
replace them by the op that the table already differentiates well, so the
model the user wrote compiles to the graph of the fused one.

Each replacement computes the same numbers as the spelling it replaces,
down to NaN and inf: ``log_softmax``'s and ``softmax``'s kernels and
``softmax_cross_entropy``'s are the plain spellings' arithmetic, bit for bit,
and ``softplus`` is numpy's ``logaddexp(0, x)``, which branches exactly as
``max(x, 0) + log1p(exp(-|x|))`` rounds. ``1 / (1 + exp(-x))`` becomes the
overflow-free ``sigmoid``, which differs from it by rounding only. Where
no fused op exists (the spelled-out logsumexp ``m + log(sum(exp(x - m)))``,
whose op treats infinities differently), the shift is made a
``stop_gradient``: the value is unchanged and the zero path goes.

The rules run in the ``stability`` pass, so both :func:`~symsym.rewrite.optimize`
and :func:`symsym.grad` (which stabilises the forward graph before
differentiating it) apply them.
"""

from __future__ import annotations

from common.api import symbolic
from common.graph import Node

from .rules import is_value

#: the ops the patterns start from
ROOTS = frozenset({"sub", "div", "add", "neg"})


def _op(n: Node, name: str, opaque) -> bool:
    return n.op is not None and n.op.name == name and id(n) not in opaque


def _same(a: Node, b: Node) -> bool:
    """Whether ``a`` and ``b`` surely compute the same: one node, or one op with the same params and inputs."""
    if a is b:
        return True
    return (a.op is not None and a.op is b.op and a.params == b.params and len(a.inputs) == len(b.inputs)
            and all(p is q for p, q in zip(a.inputs, b.inputs)))


def _one_axis_kept(n: Node) -> int | None:
    """The axis of a ``max``/``sum`` over exactly one axis with ``keepdims``, else None."""
    axis = n.params.get("axis")
    if n.params.get("keepdims") and axis is not None and len(axis) == 1:
        return axis[0]
    return None


def _shifted(z: Node, opaque) -> tuple[Node, Node, int] | None:
    """``(x, m, axis)`` for ``z = x - m`` with ``m = max(x, axis, keepdims=True)`` (or its stop_gradient)."""
    if not _op(z, "sub", opaque):
        return None
    x, m = z.inputs
    if m.op is not None and m.op.name == "stop_gradient":
        m = m.inputs[0]
    if m.op is None or m.op.name != "max" or m.inputs[0] is not x or z.shape != x.shape:
        return None
    axis = _one_axis_kept(m)
    return None if axis is None else (x, m, axis)


def _sum_of_exp(s: Node, axis: int, opaque) -> Node | None:
    """``e``'s argument for ``s = sum(exp(e), axis, keepdims=True)``, else None."""
    if not (_op(s, "sum", opaque) and _one_axis_kept(s) == axis and _op(s.inputs[0], "exp", opaque)):
        return None
    return s.inputs[0].inputs[0]


def _log_softmax(n: Node, opaque) -> Node | None:
    """``z - log(sum(exp(z)))`` with ``z = x - max(x)`` along one kept axis -> ``log_softmax(x)``."""
    z, log = n.inputs
    found = _shifted(z, opaque)
    if found is None or not _op(log, "log", opaque):
        return None
    x, _, axis = found
    inner = _sum_of_exp(log.inputs[0], axis, opaque)
    if inner is None or not _same(inner, z) or n.dtype != x.dtype or n.shape != x.shape:
        return None
    return symbolic.log_softmax(x, axis=axis)


def _softmax(n: Node, opaque) -> Node | None:
    """``exp(z) / sum(exp(z))`` with ``z = x - max(x)`` along one kept axis -> ``softmax(x)``."""
    e, s = n.inputs
    if not _op(e, "exp", opaque):
        return None
    found = _shifted(e.inputs[0], opaque)
    if found is None:
        return None
    x, _, axis = found
    if not _op(s, "sum", opaque) or _one_axis_kept(s) != axis or not _same(s.inputs[0], e):
        return None
    if n.dtype != x.dtype or n.shape != x.shape:
        return None
    return symbolic.softmax(x, axis=axis)


def _logsumexp(n: Node, opaque) -> Node | None:
    """``m + log(sum(exp(x - m)))``, ``m = max(x)`` kept: the same with ``m`` a ``stop_gradient``."""
    for m, log in (n.inputs, n.inputs[::-1]):
        if not (_op(m, "max", opaque) and _op(log, "log", opaque)):
            continue
        axis = _one_axis_kept(m)
        if axis is None:
            continue
        z = _sum_of_exp(log.inputs[0], axis, opaque)
        if z is None or not _op(z, "sub", opaque) or z.inputs[1] is not m or z.inputs[0] is not m.inputs[0]:
            continue
        x, fixed = m.inputs[0], symbolic.stop_gradient(m)
        return symbolic.add(fixed, symbolic.log(symbolic.sum(symbolic.exp(symbolic.sub(x, fixed)),
                                                             axis=axis, keepdims=True)))
    return None


def _cross_entropy(n: Node, opaque) -> Node | None:
    """``-sum(t * log_softmax(x), axis)`` over the log-softmax's own axis -> ``softmax_cross_entropy(x, t)``."""
    s = n.inputs[0]
    if not _op(s, "sum", opaque) or s.params["keepdims"] or len(s.params["axis"]) != 1:
        return None
    prod = s.inputs[0]
    if not _op(prod, "mul", opaque):
        return None
    for t, lsm in (prod.inputs, prod.inputs[::-1]):
        if not _op(lsm, "log_softmax", opaque):
            continue
        x, axis = lsm.inputs[0], lsm.params["axis"]
        if (s.params["axis"][0] == axis and t.shape == x.shape and t.dtype == x.dtype
                and prod.shape == x.shape and n.dtype == x.dtype):
            return symbolic.softmax_cross_entropy(x, t, axis=axis)
    return None


def _softplus(n: Node, opaque) -> Node | None:
    """``max(x, 0) + log1p(exp(-|x|))`` (either order; or its ``softplus(-|x|)``) -> ``softplus(x)``."""
    for mx, rest in (n.inputs, n.inputs[::-1]):
        if not (_op(mx, "maximum", opaque) and (_op(rest, "log1p", opaque) or _op(rest, "softplus", opaque))):
            continue
        a, b = mx.inputs
        x = a if is_value(b, 0) else b if is_value(a, 0) else None
        if x is None:
            continue
        if _op(rest, "log1p", opaque):  # the stability pass makes log1p(exp(y)) a softplus(y) first
            rest = rest.inputs[0]
            if not _op(rest, "exp", opaque):
                continue
        neg = rest.inputs[0]
        if not _op(neg, "neg", opaque):
            continue
        ab = neg.inputs[0]
        if _op(ab, "abs", opaque) and ab.inputs[0] is x and x.dtype.kind == "f" and n.shape == x.shape \
                and n.dtype == x.dtype:
            return symbolic.softplus(x)
    return None


def _sigmoid(n: Node, opaque) -> Node | None:
    """``1 / (1 + exp(-x))`` -> ``sigmoid(x)``, which never overflows."""
    one, den = n.inputs
    if not (is_value(one, 1) and one.size == 1 and _op(den, "add", opaque)):
        return None
    for unit, e in (den.inputs, den.inputs[::-1]):
        if is_value(unit, 1) and unit.size == 1 and _op(e, "exp", opaque) and _op(e.inputs[0], "neg", opaque):
            x = e.inputs[0].inputs[0]
            if x.dtype.kind == "f" and n.dtype == x.dtype and n.shape == x.shape:
                return symbolic.sigmoid(x)
    return None


_BY_ROOT = {"sub": (_log_softmax,), "div": (_softmax, _sigmoid), "add": (_logsumexp, _softplus),
            "neg": (_cross_entropy,)}


def spelled_rule(n: Node, opaque) -> Node | None:
    """The fused form of the spelled-out function rooted at ``n``, or None."""
    for rule in _BY_ROOT.get(n.op.name, ()):
        rep = rule(n, opaque)
        if rep is not None:
            return rep
    return None
