"""The reference interpreter: a loop over the toposort, each op's numpy impl.

Deliberately plain (autodidax's ``eval_jaxpr``): the compiled evaluator in
symsym and the tape in symnum are both checked against it.
"""

from __future__ import annotations

import numpy as np

from .errors import FeedError
from .graph import Node, run_op, toposort
from .ops.shapes import shape_str


def as_feed_array(var: Node, value) -> np.ndarray:
    """``value`` as a plain ndarray (not yet checked against ``var``'s shape and dtype).

    The one conversion every entry point uses (``evaluate``, ``symnum``'s
    program, ``symsym.function``), so all refuse the same things. A plain
    ndarray passes untouched (checked first: this is on every call). An ndarray
    subclass is viewed as a plain ndarray, because the ops' numpy impls would
    otherwise follow the subclass's own rules (``np.matrix`` makes ``*`` a
    matrix product and keeps every result 2-D); its shape must then fit ``var``
    as it is, never reshaped. A masked array is refused: its mask would be
    silently dropped.
    """
    if type(value) is np.ndarray:
        return value
    if isinstance(value, np.ma.MaskedArray):
        raise FeedError(f"value for {var.name!r} is a masked array; its mask would be ignored: feed "
                        f"np.ma.filled(value, fill) or value.data explicitly (var made at {var.site})")
    if isinstance(value, np.ndarray):
        return value.view(np.ndarray)
    try:
        return np.asarray(value, dtype=var.dtype if not isinstance(value, np.generic) else None)
    except (TypeError, ValueError, OverflowError) as e:
        raise FeedError(f"value for {var.name!r} is not an array of {var.dtype}: {e}") from None


def check_value(var: Node, value) -> np.ndarray:
    """``value`` as an array fit for ``var``, or a FeedError saying why not."""
    arr = as_feed_array(var, value)
    if arr.dtype != var.dtype:
        raise FeedError(f"value for {var.name!r} has dtype {arr.dtype}, expected {var.dtype} "
                        f"(var made at {var.site})")
    if arr.ndim != len(var.shape) or any(d is not None and d != a for d, a in zip(var.shape, arr.shape)):
        raise FeedError(f"value for {var.name!r} has shape {arr.shape}, expected {shape_str(var.shape)} "
                        f"(var made at {var.site})")
    return arr


def resolve_feed(variables: list[Node], feed: dict) -> dict[int, np.ndarray]:
    """Map each variable's id to its checked value; feed keys are nodes or names."""
    by_name: dict[str, list[Node]] = {}
    for v in variables:
        by_name.setdefault(v.name, []).append(v)
    wanted = {id(v) for v in variables}
    values: dict[int, np.ndarray] = {}
    for key, value in feed.items():
        if isinstance(key, Node):
            if id(key) not in wanted:
                raise FeedError(f"fed a value for {key!r}, which the outputs do not depend on")
            var = key
        else:
            found = by_name.get(key)
            if not found:
                raise FeedError(f"fed a value for {key!r}, which is not an input of the outputs "
                                f"(inputs: {sorted(n for n in by_name if n)})")
            if len(found) > 1:
                raise FeedError(f"name {key!r} is shared by {len(found)} inputs; feed the nodes instead")
            var = found[0]
        values[id(var)] = check_value(var, value)
    missing = [v for v in variables if id(v) not in values]
    if missing:
        raise FeedError("no value fed for " + ", ".join(f"{v.name!r} (made at {v.site})" for v in missing))
    return values


def evaluate(outputs, feed: dict | None = None):
    """Values of ``outputs`` (a node or a list of nodes) for the fed inputs."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    order = toposort(outs)
    env = resolve_feed([n for n in order if n.is_var], feed or {})
    for n in order:
        if n.op is not None:
            env[id(n)] = run_op(n, [env[id(i)] for i in n.inputs])
        elif n.value is not None:
            env[id(n)] = n.value
    results = [np.asarray(env[id(o)]) for o in outs]
    return results[0] if single else results
