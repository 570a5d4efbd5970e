"""Stability rewrites: replace an unstable composition with its stable op.

``log(softmax(x))`` is -inf where softmax underflows, ``log(1 + x)`` loses x
below machine epsilon, ``log(sum(exp(x)))`` overflows for x > 709, and
``log(sigmoid(x))`` is -inf for x < -745. The stable ops are in the op table,
so the rewritten graph can still be differentiated.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.api import symbolic as S
from common.graph import Node

from .core import is_value, run_rules


def _is(n: Node, name: str) -> bool:
    return n.op is not None and n.op.name == name


def stability_rule(n: Node) -> Node | None:
    if n.op.name != "log":
        return None
    x = n.inputs[0]
    if _is(x, "softmax"):
        return S.log_softmax(x.inputs[0], axis=x.params["axis"])
    if _is(x, "add"):
        a, b = x.inputs
        for one, rest in ((a, b), (b, a)):
            if is_value(one, 1) and one.size == 1 and one.ndim <= rest.ndim \
                    and rest.dtype == n.dtype and rest.dtype.kind == "f":
                return S.log1p(rest)
    if _is(x, "sum") and _is(x.inputs[0], "exp"):
        inner = x.inputs[0].inputs[0]
        if inner.dtype == n.dtype:
            return S.logsumexp(inner, axis=x.params["axis"], keepdims=x.params["keepdims"])
    if _is(x, "sigmoid"):
        return S.neg(S.softplus(S.neg(x.inputs[0])))
    return None


def stability(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with unstable compositions replaced by stable ops."""
    return run_rules(outputs, [("stability", stability_rule)], merge=False, counts=counts)
