"""Stability rewrites: replace an unstable composition with its stable op.

``log(softmax(x))`` is -inf where softmax underflows, ``log(1 + x)`` loses x
below machine epsilon, ``log(sum(exp(x)))`` and ``log(exp(x))`` overflow for
x > 709, ``log(1 + exp(x))`` too, and ``log(sigmoid(x))`` is -inf for x < -745.
The stable ops are in the op table with VJPs that are stable as well, so a
graph rewritten *before* it is differentiated has a stable gradient: that is
why :func:`symsym.grad` runs :func:`stabilize` on the forward graph first.

Every rule replaces an expression by one equal to it in exact arithmetic for
every input, so NaN and inf inputs give what the original gives; only where
the original rounds to 0 or overflows does the result differ (and is right).
The pass also holds :mod:`.spelled`'s rules: the fused op behind a spelled-out
log-softmax, softmax, cross-entropy, softplus or sigmoid.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from common.api import symbolic
from common.graph import Node

from .rules import is_value, run_rules
from .spelled import ROOTS as SPELLED_ROOTS
from .spelled import spelled_rule

_NOTHING: frozenset[int] = frozenset()

#: the ops every pattern starts from (the spelled-out functions' too): a graph without them has nothing to do
ROOTS = frozenset({"log", "log1p"}) | SPELLED_ROOTS


def _is(n: Node, name: str, opaque) -> bool:
    """Whether ``n`` is a ``name`` node that a pattern may look into (and so replace)."""
    return n.op is not None and n.op.name == name and id(n) not in opaque


def _plus_one(x: Node, n: Node, opaque) -> Node | None:
    """``rest`` for ``x = 1 + rest`` (either order) of ``n``'s floating dtype, else None."""
    if not _is(x, "add", opaque):
        return None
    a, b = x.inputs
    for one, rest in ((a, b), (b, a)):
        if _unit(one, rest, n):
            return rest
    return None


def _unit(one: Node, rest: Node, n: Node) -> bool:
    """Whether ``one`` is a single 1 that gives ``one (+/-) rest`` no shape or dtype of its own."""
    return (is_value(one, 1) and one.size == 1 and one.ndim <= rest.ndim
            and rest.dtype == n.dtype and rest.dtype.kind == "f")


def _log_rule(n: Node, x: Node, opaque) -> Node | None:
    if _is(x, "softmax", opaque):
        return symbolic.log_softmax(x.inputs[0], axis=x.params["axis"])
    rest = _plus_one(x, n, opaque)
    if rest is not None:
        return symbolic.log1p(rest)  # and log1p(exp(y)) below makes log(1 + exp(y)) a softplus
    if _is(x, "sub", opaque) and _unit(x.inputs[0], x.inputs[1], n):
        return symbolic.log1p(symbolic.neg(x.inputs[1]))  # log(1 - y); log1p(-sigmoid(y)) follows below
    if _is(x, "sum", opaque) and _is(x.inputs[0], "exp", opaque):
        inner = x.inputs[0].inputs[0]
        if inner.dtype == n.dtype and not _shifted_by_max(inner, x.params["axis"]):
            return symbolic.logsumexp(inner, axis=x.params["axis"], keepdims=x.params["keepdims"])
    if _is(x, "sigmoid", opaque):
        return symbolic.neg(symbolic.softplus(symbolic.neg(x.inputs[0])))
    if _is(x, "exp", opaque):
        inner = x.inputs[0]
        if inner.dtype == n.dtype and inner.shape == n.shape:
            return inner
    return None


def _shifted_by_max(z: Node, axis: tuple) -> bool:
    """Whether ``z = x - max(x)`` over exactly ``axis``: ``log(sum(exp(z)))`` is then stable as written.

    Each exp is at most 1 and each sum holds a 1, so nothing overflows or
    rounds to 0; a logsumexp would shift by the max a second time.
    """
    if z.op is None or z.op.name != "sub":
        return False
    x, m = z.inputs
    if m.op is not None and m.op.name == "stop_gradient":
        m = m.inputs[0]
    return (m.op is not None and m.op.name == "max" and m.inputs[0] is x and z.shape == x.shape
            and tuple(m.params["axis"]) == tuple(axis) and (m.params["keepdims"] or m.shape == ()))


def _log1p_rule(n: Node, x: Node, opaque) -> Node | None:
    if _is(x, "exp", opaque) and x.inputs[0].dtype == n.dtype:
        return symbolic.softplus(x.inputs[0])  # log(1 + exp(y))
    if _is(x, "neg", opaque) and _is(x.inputs[0], "sigmoid", opaque):
        return symbolic.neg(symbolic.softplus(x.inputs[0].inputs[0]))  # log(1 - sigmoid(y)) = -softplus(y)
    return None


def stability_rule(n: Node, opaque=_NOTHING) -> Node | None:
    """The stable (or fused: :mod:`.spelled`) form of ``n``, or None; nodes whose id is in ``opaque`` are
    never looked into."""
    name = n.op.name
    if name == "log":
        return _log_rule(n, n.inputs[0], opaque)
    if name == "log1p":
        return _log1p_rule(n, n.inputs[0], opaque)
    return spelled_rule(n, opaque)


def stability(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with unstable compositions replaced by stable ops."""
    return run_rules(outputs, [("stability", stability_rule)], merge=False, counts=counts)


def stabilize(roots: Sequence[Node], order: list[Node], keep: Iterable[Node]) -> dict[int, Node] | None:
    """Old id -> new node for the graph of ``roots`` in stable forms; None when nothing would change.

    This is what :func:`symsym.grad` differentiates, so every derivative is
    built from the stable ops' own VJPs. ``order`` is ``toposort(roots)``.
    The nodes in ``keep`` are the ones the caller refers to by identity (the
    ``wrt``, the keys of known gradients, the constants): they are rebuilt
    but never rewritten or absorbed into a stable op, so each still stands
    for exactly what it stood for. Linear in ``len(order)``; a graph with no
    unstable pattern costs one scan and no new node.
    """
    opaque = {id(k) for k in keep}
    rule = partial(stability_rule, opaque=opaque)
    if not any(n.op is not None and n.op.name in ROOTS and id(n) not in opaque and rule(n) is not None
               for n in order):
        return None
    memo: dict[int, Node] = {}
    run_rules(roots, [("stability", rule)], merge=False, order=order, opaque=opaque, memo=memo)
    return memo
