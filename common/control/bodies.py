"""What the loop and branch ops' rules share: a body's VJP, JVP and batched form, each made once per body.

Every rule of a loop op is again a loop op whose body is made from the
forward body by the body's own ops' rules, swept by the sweeps every backend
shares (:func:`common.backward.sweep` for the VJP, :mod:`common.forward_sweeps`
for the JVP and batching) in the symbolic namespace: the calculus stays in the
op table. The derived bodies are cached on the forward body
(``Body.cache``), so a numeric sweep (symnum's program) builds them on its
first run only, then runs them per step like any body.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..backward import TupleCotangent, sweep
from ..body import Body, inner_nodes
from ..forward_sweeps import batch_sweep, tangent_sweep
from ..graph import Node, replace, toposort, variable
from ..ops import NO_GRAD, OPS, ZERO, symbolic
from .item_op import item

# ------------------------------------------------------------------ reverse mode

def pullback_of(fn: Callable) -> Callable:
    """A loop op's ``vjp_all`` from ``fn(ns, g, out, inputs, params) -> one cotangent per input``: one
    reverse loop answers every input at once, so the op answers the pullback protocol directly."""
    def vjp_all(ns, g, out, inputs, params, wanted):
        cts = fn(ns, g, out, inputs, params)
        return [cts[i] if i in wanted else NO_GRAD for i in range(len(cts))]
    return vjp_all


def stack_steps(parts: list, like: Node, n: int) -> np.ndarray:
    if n:
        return np.stack(parts)
    return np.empty((0, *[d or 0 for d in like.shape]), like.dtype)


def body_vjp(body: Body, outs: list[int], ins: list[int]) -> tuple[list[Node], list[Node]]:
    """The VJP of ``body`` as graph: a cotangent variable for each output in ``outs``, and the cotangent
    node of each input in ``ins`` (zeros for one no path reaches), by the body's ops' own rules."""
    gs = [variable(f"g_{body.outputs[k].name or k}", body.outputs[k].shape, body.outputs[k].dtype) for k in outs]
    seeds: dict[int, list] = {}
    for k, g in zip(outs, gs):
        seeds.setdefault(id(body.outputs[k]), []).append(g)
    wrt = [body.inputs[j] for j in ins]
    order = toposort([*body.outputs, *body.inputs])
    table = sweep(order, seeds, {id(w) for w in wrt}, symbolic)
    cts = []
    for w in wrt:
        ct = table.get(id(w))
        cts.append(symbolic.zeros_like(w) if ct is None else ct)
    return gs, cts


def float_positions(nodes, offset: int = 0) -> list[int]:
    return [offset + k for k, n in enumerate(nodes) if n.dtype.kind == "f"]


def add_at(cts: list[Node], positions: list[int], extra: list[Node], at: tuple) -> list[Node]:
    """``cts`` (one per position) with ``extra[m]`` added to the one at position ``at[m]``."""
    out = list(cts)
    for e, p in zip(extra, at):
        k = positions.index(p)
        out[k] = symbolic.add(out[k], e)
    return out


def given(g, positions) -> tuple:
    """The positions among ``positions`` whose output got a cotangent in ``g``."""
    if not isinstance(g, TupleCotangent):
        return ()
    return tuple(k for k in positions if g[k] is not ZERO)


def vars_like(nodes, positions: list[int], prefix: str) -> list[Node]:
    """Fresh variables of the types of ``nodes`` at ``positions``."""
    return [variable(f"{prefix}_{nodes[j].name or j}", nodes[j].shape, nodes[j].dtype) for j in positions]


def sums(a: list[Node], b: list[Node]) -> list[Node]:
    """``a[k] + b[k]``, or ``a`` itself when ``b`` is empty."""
    return [symbolic.add(x, y) for x, y in zip(a, b)] if b else list(a)


def output_cotangent(ns, g, out, k: int):
    """The cotangent of output ``k`` of the tuple node ``out``: given, or zeros."""
    part = g[k] if isinstance(g, TupleCotangent) else ZERO
    return ns.zeros_like(item(ns, out, k)) if part is ZERO else part


def saving_copy(ns, out, inputs, params, op: str):
    """The node (or value) holding the stacked carry-ins: ``out`` itself, or a saving copy of it."""
    return out if params.get("save") else ns.apply(OPS[op], tuple(inputs), {**params, "save": True})


# ------------------------------------------------------------------ forward mode

def is_float(x) -> bool:
    return np.dtype(x.dtype).kind == "f"


def like_var(x, name: str, lead: tuple = ()) -> Node:
    """A fresh variable of ``x``'s type (with ``lead`` dims in front)."""
    return variable(name, (*lead, *x.shape), x.dtype)


def body_jvp(body: Body, seeded: Sequence[int]) -> tuple[list[Node], list]:
    """Tangent variables for the inputs at ``seeded`` and the tangent of each output (ZERO for none)."""
    key = ("jvp", tuple(seeded))
    hit = body.cache.get(key)
    if hit is None:
        ts = [like_var(body.inputs[j], f"t_{body.inputs[j].name or j}") for j in seeded]
        table = {id(body.inputs[j]): t for j, t in zip(seeded, ts)}
        order = inner_nodes(body.outputs, {id(v) for v in body.inputs})
        tangent_sweep(order, table, symbolic)
        hit = body.cache[key] = (ts, [table.get(id(o), ZERO) for o in body.outputs])
    return hit


def filled(t, like: Node):
    """A body output's tangent as a node: zeros where the output has none."""
    return symbolic.zeros_like(like) if t is ZERO else t


def seeded(tangents, inputs, lo: int, hi: int) -> list[int]:
    return [k for k in range(lo, hi) if tangents[k] is not ZERO and is_float(inputs[k])]


def carry_fixed_point(body: Body, nc: int, seeded: set[int], others: list[int]) -> list[int]:
    """The carries that carry a tangent: the seeded ones and those the body's update gives one (fixed point)."""
    while True:
        _, outs = body_jvp(body, sorted(seeded) + others)
        more = {k for k in range(nc) if outs[k] is not ZERO and is_float(body.outputs[k])} - seeded
        if not more:
            return sorted(seeded)
        seeded |= more


def tangent_inputs(ns, tangents, inputs, positions) -> list:
    return [ns.zeros_like(inputs[k]) if tangents[k] is ZERO else tangents[k] for k in positions]


def renamed_outputs(body: Body, formals: Sequence[Node]) -> list[Node]:
    """``body``'s outputs over ``formals`` in place of its own inputs (the bodies of one op may differ in them)."""
    if all(a is b for a, b in zip(body.inputs, formals)):
        return list(body.outputs)

    return replace(list(body.outputs), dict(zip(body.inputs, formals)))


# ------------------------------------------------------------------ batching

def batch_size_of(inputs, batched) -> int:
    return next(x.shape[0] for x, b in zip(inputs, batched) if b)


def tile(ns, x, size: int):
    """An unbatched ``x`` repeated along a new batch axis in front."""
    return ns.broadcast_to(ns.expand_dims(x, 0), (size, *x.shape))


def swap01(ns, x):
    """Axes 0 and 1 exchanged: (batch, steps, ...) <-> (steps, batch, ...)."""
    return ns.transpose(x, (1, 0, *range(2, len(x.shape))))


def body_batched(body: Body, flags: Sequence[bool], size: int) -> tuple[list[Node], list[tuple]]:
    """Input variables for ``body`` batched as ``flags`` says, and each output's (node, batched)."""
    key = ("batch", tuple(flags), size)
    hit = body.cache.get(key)
    if hit is None:
        formals, table = [], {}
        for v, b in zip(body.inputs, flags):
            w = like_var(v, v.name or "x", (size,)) if b else v
            formals.append(w)
            table[id(v)] = (w, b)
        batch_sweep(inner_nodes(body.outputs, {id(v) for v in body.inputs}), table, symbolic)
        hit = body.cache[key] = (formals, [table[id(o)] for o in body.outputs])
    return hit


def carried(outs: list[tuple], flags: Sequence[bool], nc: int, size: int) -> list[Node]:
    """A batched body's outputs, each carry that goes in batched coming out batched too (a carry whose
    update ignores the batch, ``c = 0 * c + 1``, is repeated along it: carry in and out have one type)."""
    sym = symbolic
    return [tile(sym, o, size) if k < nc and flags[k] and not b else o for k, (o, b) in enumerate(outs)]


def promoted(body: Body, flags: list[bool], nc: int, size: int) -> list[bool]:
    """``flags`` with every carry whose batched update is batched made batched too (a fixed point)."""
    while True:
        _, outs = body_batched(body, flags, size)
        more = [k for k in range(nc) if outs[k][1] and not flags[k]]
        if not more:
            return flags
        for k in more:
            flags[k] = True


def reached(roots: list[Node], formals: Sequence[Node]) -> set[int]:
    """Ids of the formal inputs that ``roots`` reach (what a pruned loop must keep)."""
    ids = {id(v) for v in formals}
    return {id(n) for n in inner_nodes(roots, ids) if id(n) in ids}


def live_carries(roots: Callable[[set], list[Node]], formals: Sequence[Node], ncarry: int, live: set) -> list[int]:
    """The carries that must stay: ``live`` and every carry the live outputs (``roots(carries)``) reach,
    through any number of steps (a fixed point: a carry read by a live carry's update is live)."""
    while True:
        found = reached(roots(live), formals)
        more = {k for k in range(ncarry) if id(formals[k]) in found} - live
        if not more:
            return sorted(live)
        live |= more
