"""Constant folding: an op whose inputs are all constants becomes its value.

The folded value is computed once, at rewrite time, with the op's own numpy
implementation. Folding is skipped for results above a size limit, so a graph
does not bloat with large baked-in arrays (``full((1000, 1000), 0.)`` stays a
cheap instruction). ``count`` depends only on a shape and folds whenever that
shape is known.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from common.graph import Node

from .rules import run_rules

MAX_FOLD = 4096


def fold_rule(n: Node) -> Node | None:
    op = n.op
    if op.name == "count":
        if n.inputs[0].size is None:
            return None
    else:
        for i in n.inputs:
            if i.value is None:
                return None
    size = n.size
    if size is None or size > MAX_FOLD:
        return None
    # count reads only its input's shape: a zero-stride view stands in for it, allocating nothing
    args = [i.value if i.value is not None else np.broadcast_to(np.zeros((), i.dtype), i.shape) for i in n.inputs]
    try:
        value = np.array(op.impl(*args, **n.params), dtype=n.dtype)
    except (ArithmeticError, ValueError, TypeError, IndexError):
        return None  # leave it for evaluation, where the error can name the user's line
    if value.shape != n.shape:
        return None
    value.setflags(write=False)
    return Node(None, (), {}, value.shape, value.dtype, n.name, value, n.site)


def fold(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with every all-constant subcomputation replaced by its value."""
    return run_rules(outputs, [("fold", fold_rule)], merge=False, counts=counts)
