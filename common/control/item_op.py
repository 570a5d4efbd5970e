"""The ``item`` op, which reads one output of a loop or branch node, and the tuple values it reads.

A loop or branch node's value is a tuple (:mod:`common.body`); what each of
the sweeps makes for such a node is a tuple too, one part per output: a
:class:`~common.backward.TupleCotangent` in a reverse sweep (``item``'s VJP
makes one), a :class:`TupleTangent` in a forward one, a :class:`BatchedTuple`
when batching. ``item``'s rules read them, so no sweep needs to know what a
loop is. Which outputs a tuple node has is its op's ``outputs`` trait.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..backward import TupleCotangent
from ..body import TUPLE, is_tuple
from ..errors import ShapeError
from ..graph import Node, apply
from ..ops import OPS, ZERO, Kind, defop
from ..ops.params import int_param
from .checks import type_of


class TupleTangent:
    """The tangent of a tuple-valued node: one tangent (or :data:`ZERO`) per output, read by ``item``."""

    __slots__ = ("parts",)
    shape = ()
    dtype = TUPLE

    def __init__(self, parts: Sequence):
        self.parts = list(parts)

    def __getitem__(self, k: int):
        return self.parts[k]

    def __repr__(self) -> str:
        return f"TupleTangent({['0' if p is ZERO else 't' for p in self.parts]})"


class BatchedTuple:
    """A batched tuple-valued node: per output ``(value, batched)``, read by ``item``'s batching rule."""

    __slots__ = ("parts",)
    shape = ()
    dtype = TUPLE

    def __init__(self, parts: Sequence[tuple]):
        self.parts = list(parts)

    def __getitem__(self, k: int):
        return self.parts[k][0]

    def __repr__(self) -> str:
        return f"BatchedTuple({['b' if b else '-' for _, b in self.parts]})"


def output_types(node: Node) -> list[tuple]:
    """The (shape, dtype) of each output of a loop or branch node (its op's ``outputs`` trait)."""
    return node.op.outputs(node)


def _item_infer(t, index):
    op = getattr(t, "op", None)
    if not is_tuple(t) or op is None or op.outputs is None:
        raise ShapeError(f"item reads an output of a loop or branch node, got {type_of(t)}")
    types = output_types(t)
    index = int_param(index, "index", 0, len(types) - 1)
    return types[index]


def _item_impl(t, index):
    return t[index]


def _item_vjp(ns, g, out, t, index):
    return TupleCotangent({index: g})


def _item_jvp(ns, tangents, out, t, index):
    return tangents[0][index]


def item(ns, t, k: int):
    """Output ``k`` of the tuple ``t`` in namespace ``ns``."""
    return ns.apply(OPS["item"], (t,), {"index": k})


def picked(t: Node, k: int, site=None) -> Node:
    """The graph node reading output ``k`` of the tuple-valued node ``t``, made at ``site``."""
    return apply(ITEM, (t,), {"index": k}, site=site)


def _item_batch(op, ns, inputs, batched, index):
    (t,) = inputs
    if isinstance(t, BatchedTuple):
        return t.parts[index]
    return ns.apply(op, (t,), {"index": index}), True


ITEM = defop("item", _item_infer, _item_impl, _item_vjp, jvp=_item_jvp, batch=_item_batch, kind=Kind.CONTROL,
             picks=True, params=("index",),
             doc="Output ``index`` of a loop or branch node (whose value is a tuple), with its own shape and dtype.")
