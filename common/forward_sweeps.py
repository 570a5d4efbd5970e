"""The forward sweeps over a graph that forward mode and batching share, in any namespace.

One function each, used twice: symsym runs them over the user's graph
(:func:`symsym.jvp`, :func:`symsym.vectorize`), and the loop ops' JVP and
batching rules (:mod:`common.control`) run them over a *body* to
build the body of the tangent or batched loop, so a loop's forward derivative
and its batched form are made by the same rules, the same way, as those of
the graph around it. Both visit a toposort once, inputs first: no recursion.
"""

from __future__ import annotations

from collections.abc import Callable

from .graph import Node
from .ops.batching import apply_batched
from .ops.table import ZERO


def tangent_sweep(order: list[Node], tangents: dict[int, object], ns,
                  trace: Callable[[Node, object], None] | None = None) -> dict[int, object]:
    """Fill ``tangents`` (node id -> tangent; the seeded inputs' already there) for the nodes of ``order``.

    Each op node whose inputs carry a tangent gets one from its op's JVP rule
    (:meth:`common.ops.Op.tangent`), cast to its floating dtype; a node none of
    whose inputs has one gets none (absent: :data:`~common.ops.ZERO`).
    ``trace(node, tangent)``, if given, hears of each tangent as it is made.
    """
    for n in order:
        if n.op is None or id(n) in tangents:
            continue
        ts = tuple([tangents.get(id(i), ZERO) for i in n.inputs])
        t = n.op.tangent(ns, ts, n, n.inputs, n.params)
        if t is not ZERO:
            t = tangents[id(n)] = t if t.dtype == n.dtype or n.dtype.kind != "f" else ns.cast(t, n.dtype)
            if trace is not None:
                trace(n, t)
    return tangents


def batch_sweep(order: list[Node], new: dict[int, tuple], ns) -> dict[int, tuple]:
    """Fill ``new`` (node id -> (value, batched); the mapped inputs' already there) for ``order``.

    A node that depends on no batched value stays itself; any other runs its
    op's batching rule (:func:`common.ops.batching.apply_batched`).
    """
    for n in order:
        if id(n) in new:
            continue
        if n.op is None:
            new[id(n)] = (n, False)
            continue
        pairs = [new[id(i)] for i in n.inputs]
        ins = tuple(x for x, _ in pairs)
        flags = tuple(f for _, f in pairs)
        if not any(flags) and all(x is i for x, i in zip(ins, n.inputs)):
            new[id(n)] = (n, False)
            continue
        new[id(n)] = apply_batched(ns, n.op, ins, flags, n.params)
    return new
