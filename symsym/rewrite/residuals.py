"""Residuals: a reverse scan reads the forward values it needs instead of computing them again.

The VJP of a scan (:mod:`common.control.scan_op`) is a reverse scan whose body is
the VJP of the forward body, run on the stacked carry-ins: to get the
derivative of ``tanh(W h + x)`` at step t it computes ``tanh(W h_t + x_t)``
once more, so value and gradient cost two forward passes and one backward.
That keeps the graph small and is right at any order, but for the first
derivative it is the slower trade: the forward loop computes those values
anyway.

This pass (run by ``optimize`` on a graph holding a saving scan and the
reverse scan made from it, before their bodies are rewritten) makes the
trade the other way, as a tape does: the forward-body values that the reverse
body's own nodes read (the *residuals*: the ``tanh``, the gates) become extra
stacked outputs of the forward scan, and extra sequences of the reverse scan,
whose body reads their slice at its step instead of recomputing them. What
only fed the residuals is then dead code in the reverse body. A residual
must depend on a carry or a sequence (an invariant one is hoisted instead)
and have a static shape; views and shape-only ops are left to be recomputed.

The two bodies share node identities until they are rewritten (the reverse
body is built from the forward body's nodes by the ops' VJP rules), which is
how the residuals are found: nodes of the forward body that nodes only the
reverse body has read. The pass asks the loop op itself (its ``residuals``
trait, :class:`common.control.scan_op.ResidualRules`) which loop reverses
which, what the residuals are and how its params stack and read them; it
never names an op.
"""

from __future__ import annotations

from common.api import apply
from common.body import Body
from common.control.item_op import picked
from common.graph import Node, toposort

from .rules import remake

__all__ = ["save_residuals"]


def loop_key(name: str, inputs, params: dict) -> tuple:
    """What a loop computes, ``save`` aside: its op, its inputs (by identity) and its params (bodies by
    identity; ``primal``, a record of another loop, aside too)."""
    items = tuple(sorted((k, id(v) if isinstance(v, Body) else v) for k, v in params.items()
                         if k not in ("save", "primal")))
    return (name, tuple(map(id, inputs)), items)


def _loops(order: list[Node]) -> list[Node]:
    """The loops that can trade recomputation for stacked residuals (their op's ``residuals`` trait)."""
    return [n for n in order if n.op is not None and n.op.residuals is not None]


def _forward_of(rev: Node, saving: list[Node]) -> Node | None:
    """The saving loop whose VJP loop is ``rev``, and whose stacked carry-ins ``rev`` reads."""
    reads = {id(i.inputs[0]) for i in rev.inputs if i.op is not None and i.op.picks}
    for f in saving:
        if id(f) in reads and f.op is rev.op and f.op.residuals.reverses(f, rev):
            return f
    return None


def save_residuals(outs: list[Node], counts: dict) -> list[Node]:
    """``outs`` with each reverse scan reading its forward scan's residuals (see the module)."""
    order = toposort(outs)
    loops = _loops(order)
    saving = [n for n in loops if n.params.get("save")]
    if not saving:
        return outs
    plans: dict[int, tuple] = {}  # forward id -> (residuals, reverse id)
    for r in loops:
        f = _forward_of(r, saving)
        if f is None or id(f) in plans:
            continue
        res = f.op.residuals.nodes(f, r)
        if res:
            plans[id(f)] = (res, id(r))
    if not plans:
        return outs
    counts["loops"] = counts.get("loops", 0) + sum(len(res) for res, _ in plans.values())
    return _rewritten(outs, order, plans)


def _rewritten(outs: list[Node], order: list[Node], plans: dict[int, tuple]) -> list[Node]:
    """The graph with each planned forward scan stacking its residuals and its reverse scan reading them.

    A plain twin of a planned forward scan (the same loop without ``save``, which
    the VJP copied) reads the new forward scan too: it computes the same values.
    """
    twins = {loop_key(f.op.name, f.inputs, f.params): f for f in order if id(f) in plans}
    new: dict[int, Node] = {}
    moved: dict[int, tuple] = {}  # old loop id -> (new loop, old output index -> new)
    reverse_of = {rid: fid for fid, (_, rid) in plans.items()}
    for n in order:
        if n.op is None:
            new[id(n)] = n
            continue
        ins = tuple([new[id(i)] for i in n.inputs])
        if id(n) in plans:
            new[id(n)] = _stacking(n, ins, plans[id(n)][0], moved)
        elif n.op.picks and id(n.inputs[0]) in moved:
            loop, index = moved[id(n.inputs[0])][:2]
            new[id(n)] = picked(loop, index[n.params["index"]], n.site)
        elif id(n) in reverse_of:
            fid = reverse_of[id(n)]
            new[id(n)] = _reading(n, ins, plans[fid][0], moved[fid])
        elif n.op.residuals is not None and not n.params.get("save") and \
                loop_key(n.op.name, n.inputs, n.params) in twins:
            twin = twins[loop_key(n.op.name, n.inputs, n.params)]
            loop = _stacking(twin, ins, plans[id(twin)][0], moved)  # the twin's inputs are these very nodes
            new[id(n)] = n
            moved[id(n)] = (loop, {k: k for k in range(len(n.op.outputs(n)))}, None)
        else:
            new[id(n)] = n if all(a is b for a, b in zip(ins, n.inputs)) else _remake(n, ins)
    return [new[id(o)] for o in outs]


def _stacking(forward: Node, ins: tuple, res: list[Node], moved: dict) -> Node:
    """The forward loop (over the rebuilt ``ins``) with the residuals as extra stacked outputs, made once;
    ``moved`` learns where each of its old outputs now is, and where the residuals' stacks start."""
    hit = moved.get(id(forward))
    if hit is not None:
        return hit[0]
    params, index, first = forward.op.residuals.stacking(forward.params, res)
    node = apply(forward.op, ins, params, site=forward.site)
    moved[id(forward)] = (node, index, first)
    return node


def _reading(rev: Node, ins: tuple, res: list[Node], forward: tuple) -> Node:
    """The reverse loop with one more input per residual (its stack), its body reading the slice instead."""
    loop, _, first = forward
    stacks = [picked(loop, first + k, rev.site) for k in range(len(res))]
    ins, params = rev.op.residuals.reading(rev.params, ins, res, stacks)
    return apply(rev.op, ins, params, site=rev.site)


def _remake(n: Node, ins: tuple) -> Node:
    return remake(n, ins)
