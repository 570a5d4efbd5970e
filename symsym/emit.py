"""Nodes as the cheapest numpy source their static types allow, and in-place updates.

The op table's ``code`` templates are generic (``np.transpose(x, axes)``,
``np.sum(x, axis=..., keepdims=...)``). With shapes and dtypes known at
compile time most of them have a cheaper spelling: ``x.T``, an ``x.reshape``
method call, ``np.add.reduce`` without ``np.sum``'s argument handling, a
``sum_to`` whose axes are worked out once here instead of on every call.
Each saves a microsecond or two per node, which is what small graphs cost.

An elementwise ufunc whose input dies at that statement may write into the
input's buffer (``np.sin(x, out=x)``): no allocation, and the working set
stays in cache. :func:`inplace_input` decides when that is safe: the buffer
must be one the function itself allocated, and no view of it may be alive.

Params and shapes enter the source only through :func:`literal`: the
``repr`` of a plain int, finite float, bool, None, string or tuple of them,
which is always a literal and never code. Anything else makes
:func:`expression` give up, and the caller binds the value as a global. An
index spec enters as its :class:`~common.ops.index.IndexSpec`'s text, which
is made of the ``repr`` of exact ints, ``None``, ``...`` and ``slice``.

Where a node is best computed by a kernel (:mod:`common.kernels`: softmax in
one buffer, scatters, a zero-stride broadcast view), the source calls the
kernel by its name in :data:`KERNELS`, which the compiler binds as globals:
the code generator never re-implements one.
"""

from __future__ import annotations

import math

import numpy as np

from common import kernels
from common.graph import Node
from common.ops import OPS
from common.ops.index import view

__all__ = ["KERNELS", "UFUNCS", "aliases", "expression", "inplace_input", "literal"]

#: the shared kernels generated code calls, by the names it calls them (bound as globals)
KERNELS = {"softmax": kernels.softmax, "scatter_set": kernels.scatter_set, "scatter_at": kernels.scatter_at,
           "broadcast_view": kernels.broadcast_view, "mean": kernels.mean,
           "reduce_by_slices": kernels.reduce_by_slices}

#: reductions whose small windows run as elementwise calls over slices (kernels.reduce_by_slices)
_BY_SLICES = {"sum": "np.add", "max": "np.maximum", "min": "np.minimum"}

#: ops that are one numpy ufunc (the op's ``ufunc`` trait), and that ufunc's name
UFUNCS = {name: op.ufunc.__name__ for name, op in OPS.items() if op.ufunc is not None}
#: ops that always return a freshly allocated array, never a view of an input (the ``fresh`` trait)
FRESH = frozenset(name for name, op in OPS.items() if op.fresh)


def literal(v) -> str | None:
    """Python source for ``v`` when it is a plain literal (int, finite float, bool, None, str, or a
    tuple of them), else None. ``repr`` of these types is always a literal: no value can become code."""
    if v is None or v is True or v is False:
        return repr(v)
    cls = v.__class__
    if cls is int or cls is str:
        return repr(v)
    if cls is float:
        return repr(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return repr(int(v))
    if cls is tuple:
        parts = [literal(x) for x in v]
        if None in parts:
            return None
        return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return None


class _NotLiteral(Exception):
    """A param or shape that :func:`literal` cannot write: use the generic path."""


def _lit(v) -> str:
    text = literal(v)
    if text is None:
        raise _NotLiteral
    return text


def _static(n: Node) -> bool:
    return None not in n.shape


def _floating(n: Node) -> bool:
    return n.dtype.kind == "f"


def _reduce(x: str, axis: tuple, keepdims: bool) -> str:
    return f"np_add_reduce({x}, {_lit(axis)}, None, None, {_lit(keepdims)})"


def expression(n: Node, args: list[str]) -> str | None:
    """A faster source expression for ``n`` than its op's template, or None."""
    try:
        return _expression(n, args)
    except _NotLiteral:
        return None


def _expression(n: Node, args: list[str]) -> str | None:
    name = n.op.name
    p = n.params
    if name == "transpose":
        return f"{args[0]}.T" if p["axes"] == (1, 0) else f"{args[0]}.transpose({_lit(p['axes'])})"
    if name in ("reshape", "squeeze", "expand_dims") and _static(n) and n.shape:
        return f"{args[0]}.reshape({_lit(n.shape)})"
    if name in _BY_SLICES and (name != "sum" or _floating(n.inputs[0])) and _static(n.inputs[0]) and p["axis"] \
            and kernels.few_reduced(n.inputs[0].shape, p["axis"]):
        return f"reduce_by_slices({_BY_SLICES[name]}, {args[0]}, {_lit(p['axis'])}, {_lit(p['keepdims'])})"
    if name == "sum" and _floating(n.inputs[0]) and p["axis"]:
        return _reduce(args[0], p["axis"], p["keepdims"])
    if name == "sum_to" and _floating(n) and _static(n.inputs[0]):
        return _sum_to(args[0], n.inputs[0].shape, p["shape"])
    if name == "softmax" and _floating(n):
        return f"softmax({args[0]}, {_lit(p['axis'])})"
    if name == "getitem":
        return f"{args[0]}[{view(p['index']).subscript(args[1:])}]"
    if name == "scatter_add" and _static(n):
        spec = view(p["index"])
        kernel = "scatter_at" if spec.has_arrays and not _distinct_constant_key(n, spec) else "scatter_set"
        return f"{kernel}({args[0]}, {_lit(n.shape)}, {spec.key_source(args[2:])})"
    if name == "broadcast_to":
        return f"broadcast_view({args[0]}, {_lit(p['shape'])})"
    if name == "mean":
        return f"mean({args[0]}, {_lit(p['axis'])}, {_lit(p['keepdims'])})"
    return None


def _distinct_constant_key(n: Node, spec) -> bool:
    """Whether a scatter's index arrays are constants that name each target element once (a Hessian's
    diagonal bands, say): then it is an assignment, not ``np.add.at``, decided here once."""
    arrays = n.inputs[2:]
    if not all(a.is_const for a in arrays):
        return False
    return kernels.distinct_positions(n.shape, spec.key([a.value for a in arrays]))


def _sum_to(x: str, have: tuple, want: tuple) -> str:
    """``sum_to`` with its axes worked out now (the kernel does it on every call)."""
    if have == want:
        return x
    axes, keepdims = kernels.sum_to_axes(have, want)
    out = _reduce(x, axes, keepdims)
    return f"{out}.reshape({_lit(want)})" if keepdims and len(have) > len(want) else out


def aliases(order: list[Node], last: dict[int, int]) -> dict[int, int]:
    """For each freshly allocated value, the last statement at which it or a view of it is used.

    A view-making op (transpose, reshape, getitem, ...) may share its input's
    buffer, and any op outside :data:`FRESH` is assumed to, so a buffer stays
    pinned until every value that may point into it is dead.
    """
    bases: dict[int, tuple] = {}
    end: dict[int, int] = {}
    for n in order:
        if n.op is None:
            bases[id(n)] = ()
            continue
        if n.op.name in FRESH:
            mine = (id(n),)
        else:
            mine = tuple({b for i in n.inputs for b in bases[id(i)]})
        bases[id(n)] = mine
        t = last.get(id(n), -1)
        for b in mine:
            if end.get(b, -1) < t:
                end[b] = t
    return end


def inplace_input(n: Node, k: int, last: dict[int, int], end: dict[int, int]) -> int | None:
    """The position of an input of ``n`` (statement ``k``) that ``n`` may overwrite, or None."""
    if n.op.name not in UFUNCS or not n.shape or not _static(n):
        return None
    for pos, i in enumerate(n.inputs):
        if (i.op is not None and i.op.name in FRESH and last.get(id(i)) == k and end.get(id(i)) == k
                and i.shape == n.shape and i.dtype == n.dtype):
            return pos
    return None
