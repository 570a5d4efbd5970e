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
reverse body has read.
"""

from __future__ import annotations

from common.api import apply
from common.body import Body
from common.control.scan_op import reading_body, residual_nodes
from common.graph import Node, toposort
from common.ops import OPS

from .rules import remake

__all__ = ["save_residuals"]


def loop_key(name: str, inputs, params: dict) -> tuple:
    """What a loop computes, ``save`` aside: its op, its inputs (by identity) and its params (bodies by
    identity; ``primal``, a record of another loop, aside too)."""
    items = tuple(sorted((k, id(v) if isinstance(v, Body) else v) for k, v in params.items()
                         if k not in ("save", "primal")))
    return (name, tuple(map(id, inputs)), items)


def _scans(order: list[Node]) -> list[Node]:
    return [n for n in order if n.op is not None and n.op.name == "scan"]


def _forward_of(rev: Node, saving: list[Node]) -> Node | None:
    """The saving scan whose body's VJP body is ``rev``'s body, and whose stacked carry-ins ``rev`` reads."""
    body = rev.params["body"]
    reads = {id(i.inputs[0]) for i in rev.inputs if i.op is not None and i.op.name == "item"}
    for f in saving:
        if id(f) in reads and any(isinstance(v, tuple) and v and v[0] is body for v in f.params["body"].cache.values()):
            return f
    return None


def save_residuals(outs: list[Node], counts: dict) -> list[Node]:
    """``outs`` with each reverse scan reading its forward scan's residuals (see the module)."""
    order = toposort(outs)
    scans = _scans(order)
    saving = [n for n in scans if n.params.get("save")]
    if not saving:
        return outs
    plans: dict[int, tuple] = {}  # forward id -> (residuals, reverse id)
    for r in scans:
        f = _forward_of(r, saving)
        if f is None or id(f) in plans:
            continue
        p = f.params
        res = residual_nodes(p["body"], r.params["body"], p["ncarry"], p["nx"])
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
    twins = {loop_key("scan", f.inputs, f.params): f for f in order if id(f) in plans}
    new: dict[int, Node] = {}
    moved: dict[int, tuple] = {}  # old loop id -> (new loop, old output index -> new)
    reverse_of = {rid: fid for fid, (_, rid) in plans.items()}
    for n in order:
        if n.op is None:
            new[id(n)] = n
            continue
        ins = tuple([new[id(i)] for i in n.inputs])
        name = n.op.name
        if id(n) in plans:
            new[id(n)] = _stacking(n, ins, plans[id(n)][0], moved)
        elif name == "item" and id(n.inputs[0]) in moved:
            loop, index = moved[id(n.inputs[0])]
            new[id(n)] = apply(OPS["item"], (loop,), {"index": index[n.params["index"]]}, site=n.site)
        elif name == "scan" and id(n) in reverse_of:
            fid = reverse_of[id(n)]
            new[id(n)] = _reading(n, ins, plans[fid][0], moved[fid][0])
        elif name == "scan" and not n.params.get("save") and loop_key("scan", n.inputs, n.params) in twins:
            twin = twins[loop_key("scan", n.inputs, n.params)]
            loop = _stacking(twin, ins, plans[id(twin)][0], moved)  # the twin's inputs are these very nodes
            new[id(n)] = n
            moved[id(n)] = (loop, {k: k for k in range(len(n.params["body"].outputs))})
        else:
            new[id(n)] = n if all(a is b for a, b in zip(ins, n.inputs)) else _remake(n, ins)
    return [new[id(o)] for o in outs]


def _stacking(forward: Node, ins: tuple, res: list[Node], moved: dict) -> Node:
    """The forward scan (over the rebuilt ``ins``) with the residuals as extra stacked outputs, made once;
    ``moved`` learns where each of its old outputs now is (the stacked carry-ins move behind the residuals)."""
    hit = moved.get(id(forward))
    if hit is not None:
        return hit[0]
    body, nc = forward.params["body"], forward.params["ncarry"]
    nout = len(body.outputs)
    node = apply(forward.op, ins, {**forward.params, "body": Body(body.inputs, [*body.outputs, *res])},
                 site=forward.site)
    index = {k: k for k in range(nout)}
    index.update({nout + k: nout + len(res) + k for k in range(nc)})
    moved[id(forward)] = (node, index)
    return node


def _reading(rev: Node, ins: tuple, res: list[Node], forward: Node) -> Node:
    """The reverse scan with one more sequence per residual, its body reading the slice instead."""
    p = rev.params
    nc, nx = p["ncarry"], p["nx"]
    nout = len(forward.params["body"].outputs) - len(res)
    stacks = [apply(OPS["item"], (forward,), {"index": nout + k}, site=rev.site) for k in range(len(res))]
    return apply(rev.op, (*ins[:nc + nx], *stacks, *ins[nc + nx:]),
                 {**p, "body": reading_body(p["body"], res, nc + nx), "nx": nx + len(res)}, site=rev.site)


def _remake(n: Node, ins: tuple) -> Node:
    return remake(n, ins)
