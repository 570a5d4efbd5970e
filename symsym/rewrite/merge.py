"""Merge (common-subexpression elimination) by hash-consing.

Two nodes are the same computation when they apply the same op with the same
params to the same (already merged) inputs; small constants are the same when
their bytes are. One dictionary lookup per node keeps the pass O(n), and it
catches what ``grad`` duplicates freely (each consumer's rule rebuilds
``cos(x)``, ``transpose(w)``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

from common.graph import Node

from .core import run_rules

_SMALL = 64  # constants up to this many elements are compared by value


def merge_key(n: Node):
    """A hashable identity for what ``n`` computes, or None to never merge it."""
    op = n.op
    if op is None:
        v = n.value
        if v is None or v.size > _SMALL:
            return None
        return ("const", v.dtype.str, v.shape, v.tobytes())
    params = n.params
    if not params:
        return (op, (), tuple(map(id, n.inputs)))  # hashable: no need to try
    key = (op, tuple(params.items()), tuple(map(id, n.inputs)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def merge(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with every repeated subcomputation shared."""
    return run_rules(outputs, (), merge=True, counts=counts)
