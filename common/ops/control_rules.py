"""Forward-mode (JVP) and batching rules of the loop and branch ops, written once against ``ns``.

Like the VJP of a loop (:mod:`common.ops.control`), each rule here is again a
loop or branch op, whose body is made from the forward body by the body's own
ops' rules (:mod:`common.sweeps`): the calculus stays in the op table.

**JVP.** A loop's tangent is the loop over the body's JVP:

* ``scan``: a scan carrying (carries, their tangents), reading (xs, their
  tangents) and (consts, their tangents), returning ys and their tangents. A
  carry whose initial value has no tangent gets one (zeros) when the body
  gives its update one: found as a fixed point over the carries, as JAX does;
* ``while_loop``: a while loop carrying the tangents along, the condition
  reading the primal carries only (the trip count is locally constant);
* ``cond``: a cond over the two branches' JVPs; only the taken one runs.

The rule returns a :class:`TupleTangent`, one tangent per output of the
primal node (:data:`~common.ops.ZERO` for one that has none), which ``item``'s
JVP rule reads. The tangent loop recomputes the primal carries it needs (a
rewrite may drop the primal loop's duplicate work); in the symbolic namespace
that is two loop nodes, in the numeric one two runs.

**Batching.** A rule returns a :class:`BatchedTuple`: per output, the value
and whether it carries the batch axis in front, which ``item``'s batching rule
hands out. So unbatched outputs stay unbatched.

* ``scan``: a scan of the batched body. A sequence with the batch axis in
  front is swapped to (steps, batch, ...) so each step reads a batch of
  slices; a carry is batched when its initial value is or when the body makes
  its update batched (the fixed point above; the initial value is then
  broadcast along the batch); stacked outputs come out (steps, batch, ...) and
  are swapped back.
* ``while_loop``: with an unbatched condition, a while loop of the batched
  body. With a batched condition every element runs until the last one is
  done: the loop runs while *any* element's condition holds, and an element
  whose condition is false keeps its carries (``where``), which is JAX's rule.
  A loop that saves its carry-ins for reverse mode refuses this case (the
  frozen steps would be swept back as real ones).
* ``cond``: with an unbatched predicate, a cond of the batched branches; with
  a batched predicate the laziness cannot hold per element, so **both**
  branches run on the whole batch and each output is selected per element
  (``where``): the value is right, but a branch's NaN or warning on elements
  that did not take it is computed (and dropped), and both branches cost time.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import numpy as np

from ..body import TUPLE, Body, inner_nodes
from ..errors import GradError
from ..graph import Node, variable
from ..sweeps import batch_sweep, tangent_sweep
from .control import item
from .core import OPS, ZERO

__all__ = ["PRIMAL_OF", "BatchedTuple", "TupleTangent"]

PRIMAL_OF: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Tangent loop body -> ``(primal params, positions, outputs)``: the loop it is the JVP of.

A tangent loop computes its primal loop's outputs too: ``primal params`` are
the primal node's params but ``save``, ``positions`` the tangent loop's inputs
that are the primal node's inputs (in order), and ``outputs`` maps each
primal output index to the tangent loop's output holding the same value. The
loop rewrites (:mod:`symsym.rewrite.loops`) read it to run the loop once when a
graph holds both."""


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


def _symbolic():
    from ..api import symbolic  # late: the builders import the op table

    return symbolic


def _floating(x) -> bool:
    return np.dtype(x.dtype).kind == "f"


def _like(x, name: str, lead: tuple = ()) -> Node:
    """A fresh variable of ``x``'s type (with ``lead`` dims in front)."""
    return variable(name, (*lead, *x.shape), x.dtype)


# ------------------------------------------------------------------ JVP

def _body_jvp(body: Body, seeded: Sequence[int]) -> tuple[list[Node], list]:
    """Tangent variables for the inputs at ``seeded`` and the tangent of each output (ZERO for none)."""
    key = ("jvp", tuple(seeded))
    hit = body.cache.get(key)
    if hit is None:
        ts = [_like(body.inputs[j], f"t_{body.inputs[j].name or j}") for j in seeded]
        table = {id(body.inputs[j]): t for j, t in zip(seeded, ts)}
        order = inner_nodes(body.outputs, {id(v) for v in body.inputs})
        tangent_sweep(order, table, _symbolic())
        hit = body.cache[key] = (ts, [table.get(id(o), ZERO) for o in body.outputs])
    return hit


def _filled(t, like: Node):
    """A body output's tangent as a node: zeros where the output has none."""
    return _symbolic().zeros_like(like) if t is ZERO else t


def _seeded(tangents, inputs, lo: int, hi: int) -> list[int]:
    return [k for k in range(lo, hi) if tangents[k] is not ZERO and _floating(inputs[k])]


def _carry_fixed_point(body: Body, nc: int, seeded: set[int], others: list[int]) -> list[int]:
    """The carries that carry a tangent: the seeded ones and those the body's update gives one (fixed point)."""
    while True:
        _, outs = _body_jvp(body, sorted(seeded) + others)
        more = {k for k in range(nc) if outs[k] is not ZERO and _floating(body.outputs[k])} - seeded
        if not more:
            return sorted(seeded)
        seeded |= more


def _tangent_inputs(ns, tangents, inputs, positions) -> list:
    return [ns.zeros_like(inputs[k]) if tangents[k] is ZERO else tangents[k] for k in positions]


def _scan_jvp(ns, tangents, out, *inputs, body, ncarry, nx, length=None, reverse=False, save=False):
    nc, nin = ncarry, len(inputs)
    tx, tz = _seeded(tangents, inputs, nc, nc + nx), _seeded(tangents, inputs, nc + nx, nin)
    tc = _carry_fixed_point(body, nc, set(_seeded(tangents, inputs, 0, nc)), tx + tz)
    tvars, touts = _body_jvp(body, tc + tx + tz)
    ins, outs, nout = body.inputs, body.outputs, len(body.outputs)
    ty = [j for j in range(nc, nout) if touts[j] is not ZERO]
    vc, vx, vz = tvars[:len(tc)], tvars[len(tc):len(tc) + len(tx)], tvars[len(tc) + len(tx):]
    jbody = Body([*ins[:nc], *vc, *ins[nc:nc + nx], *vx, *ins[nc + nx:], *vz],
                 [*outs[:nc], *[_filled(touts[k], outs[k]) for k in tc], *outs[nc:], *[touts[j] for j in ty]])
    args = (*inputs[:nc], *_tangent_inputs(ns, tangents, inputs, tc), *inputs[nc:nc + nx],
            *[tangents[k] for k in tx], *inputs[nc + nx:], *[tangents[k] for k in tz])
    params = {"body": jbody, "ncarry": nc + len(tc), "nx": nx + len(tx), "length": length, "reverse": reverse,
              "save": save}
    loop = ns.apply(OPS["scan"], args, params)
    ltc, ltx, nj = len(tc), len(tx), len(jbody.outputs)
    PRIMAL_OF[jbody] = ({"body": body, "ncarry": nc, "nx": nx, "length": length, "reverse": reverse},
                        [*range(nc), *range(nc + ltc, nc + ltc + nx), *range(nc + ltc + nx + ltx, nin + ltc + ltx)],
                        {**{k: k for k in range(nc)}, **{j: j + ltc for j in range(nc, nout)},
                         **({nout + k: nj + k for k in range(nc)} if save else {})})
    parts: list = [ZERO] * (nout + (nc if save else 0))
    for m, k in enumerate(tc):
        parts[k] = item(ns, loop, nc + m)
        if save:
            parts[nout + k] = item(ns, loop, len(jbody.outputs) + nc + m)
    for m, j in enumerate(ty):
        parts[j] = item(ns, loop, nout + len(tc) + m)
    return TupleTangent(parts)


def _while_jvp(ns, tangents, out, *inputs, cond_body, body, ncarry, max_iter=None, save=False):
    nc, nin = ncarry, len(inputs)
    tz = _seeded(tangents, inputs, nc, nin)
    tc = _carry_fixed_point(body, nc, set(_seeded(tangents, inputs, 0, nc)), tz)
    if not tc:
        return TupleTangent([ZERO] * (nc * (2 if save else 1)))
    tvars, touts = _body_jvp(body, tc + tz)
    ins, outs = body.inputs, body.outputs
    vc, vz = tvars[:len(tc)], tvars[len(tc):]
    formals = [*ins[:nc], *vc, *ins[nc:], *vz]
    test = _renamed(cond_body, ins)
    jbody = Body(formals, [*outs, *[_filled(touts[k], outs[k]) for k in tc]])
    args = (*inputs[:nc], *_tangent_inputs(ns, tangents, inputs, tc), *inputs[nc:], *[tangents[k] for k in tz])
    params = {"cond_body": Body(formals, test), "body": jbody, "ncarry": nc + len(tc), "max_iter": max_iter,
              "save": save}
    loop = ns.apply(OPS["while_loop"], args, params)
    ltc = len(tc)
    PRIMAL_OF[jbody] = ({"cond_body": cond_body, "body": body, "ncarry": nc, "max_iter": max_iter},
                        [*range(nc), *range(nc + ltc, nin + ltc)],
                        {**{k: k for k in range(nc)}, **({nc + k: nc + ltc + k for k in range(nc)} if save else {})})
    parts: list = [ZERO] * (nc * (2 if save else 1))
    for m, k in enumerate(tc):
        parts[k] = item(ns, loop, nc + m)
        if save:
            parts[nc + k] = item(ns, loop, 2 * (nc + len(tc)) - len(tc) + m)
    return TupleTangent(parts)


def _renamed(body: Body, formals: Sequence[Node]) -> list[Node]:
    """``body``'s outputs over ``formals`` in place of its own inputs (the bodies of one op may differ in them)."""
    if all(a is b for a, b in zip(body.inputs, formals)):
        return list(body.outputs)
    from ..graph import replace

    return replace(list(body.outputs), dict(zip(body.inputs, formals)))


def _cond_jvp(ns, tangents, out, pred, *operands, true_body, false_body):
    seeded = [k for k in range(len(operands)) if tangents[1 + k] is not ZERO and _floating(operands[k])]
    tt, touts_t = _body_jvp(true_body, seeded)
    ft, touts_f = _body_jvp(false_body, seeded)
    n = len(true_body.outputs)
    tout = [k for k in range(n) if touts_t[k] is not ZERO or touts_f[k] is not ZERO]
    if not tout:
        return TupleTangent([ZERO] * n)
    f_formals = [*false_body.inputs, *ft]
    t_formals = [*true_body.inputs, *tt]
    branches = {}
    for name, b, formals, touts in (("true_body", true_body, t_formals, touts_t),
                                    ("false_body", false_body, f_formals, touts_f)):
        branches[name] = Body(formals, [*b.outputs, *[_filled(touts[k], b.outputs[k]) for k in tout]])
    args = (pred, *operands, *[tangents[1 + k] for k in seeded])
    branch = ns.apply(OPS["cond"], args, branches)
    PRIMAL_OF[branches["true_body"]] = ({"true_body": true_body, "false_body": false_body},
                                        list(range(1 + len(operands))), {k: k for k in range(n)})
    parts: list = [ZERO] * n
    for m, k in enumerate(tout):
        parts[k] = item(ns, branch, n + m)
    return TupleTangent(parts)


# ------------------------------------------------------------------ batching

def _batch_size(inputs, batched) -> int:
    return next(x.shape[0] for x, b in zip(inputs, batched) if b)


def _tile(ns, x, size: int):
    """An unbatched ``x`` repeated along a new batch axis in front."""
    return ns.broadcast_to(ns.expand_dims(x, 0), (size, *x.shape))


def _swap01(ns, x):
    """Axes 0 and 1 exchanged: (batch, steps, ...) <-> (steps, batch, ...)."""
    return ns.transpose(x, (1, 0, *range(2, len(x.shape))))


def _body_batched(body: Body, flags: Sequence[bool], size: int) -> tuple[list[Node], list[tuple]]:
    """Input variables for ``body`` batched as ``flags`` says, and each output's (node, batched)."""
    key = ("batch", tuple(flags), size)
    hit = body.cache.get(key)
    if hit is None:
        formals, table = [], {}
        for v, b in zip(body.inputs, flags):
            w = _like(v, v.name or "x", (size,)) if b else v
            formals.append(w)
            table[id(v)] = (w, b)
        batch_sweep(inner_nodes(body.outputs, {id(v) for v in body.inputs}), table, _symbolic())
        hit = body.cache[key] = (formals, [table[id(o)] for o in body.outputs])
    return hit


def _carried(outs: list[tuple], flags: Sequence[bool], nc: int, size: int) -> list[Node]:
    """A batched body's outputs, each carry that goes in batched coming out batched too (a carry whose
    update ignores the batch, ``c = 0 * c + 1``, is repeated along it: carry in and out have one type)."""
    sym = _symbolic()
    return [_tile(sym, o, size) if k < nc and flags[k] and not b else o for k, (o, b) in enumerate(outs)]


def _promoted(body: Body, flags: list[bool], nc: int, size: int) -> list[bool]:
    """``flags`` with every carry whose batched update is batched made batched too (a fixed point)."""
    while True:
        _, outs = _body_batched(body, flags, size)
        more = [k for k in range(nc) if outs[k][1] and not flags[k]]
        if not more:
            return flags
        for k in more:
            flags[k] = True


def _scan_batch(op, ns, inputs, batched, body, ncarry, nx, length=None, reverse=False, save=False):
    nc, size = ncarry, _batch_size(inputs, batched)
    flags = _promoted(body, list(batched), nc, size)
    formals, outs = _body_batched(body, flags, size)
    carries = [_tile(ns, x, size) if f and not b else x for x, f, b in zip(inputs[:nc], flags, batched)]
    xs = [_swap01(ns, x) if b else x for x, b in zip(inputs[nc:nc + nx], batched[nc:nc + nx])]
    jbody = Body(formals, _carried(outs, flags, nc, size))
    loop = ns.apply(op, (*carries, *xs, *inputs[nc + nx:]),
                    {"body": jbody, "ncarry": nc, "nx": nx, "length": length, "reverse": reverse, "save": save})
    nout = len(body.outputs)
    parts = [(item(ns, loop, k), flags[k]) for k in range(nc)]
    for j in range(nc, nout):
        y = item(ns, loop, j)
        parts.append((_swap01(ns, y), True) if outs[j][1] else (y, False))
    if save:
        for k in range(nc):
            s = item(ns, loop, nout + k)
            parts.append((_swap01(ns, s), True) if flags[k] else (s, False))
    return BatchedTuple(parts), True


def _while_batch(op, ns, inputs, batched, cond_body, body, ncarry, max_iter=None, save=False):
    nc, size = ncarry, _batch_size(inputs, batched)
    flags = _promoted(body, list(batched), nc, size)
    _, (pred,) = _body_batched(cond_body, flags, size)
    if pred[1]:
        if save:
            raise GradError("batching: a while_loop whose condition depends on the batch cannot save its "
                            "carry-ins for reverse mode (the elements run different numbers of steps)")
        flags = [True] * nc + list(flags[nc:])
    formals, outs = _body_batched(body, flags, size)
    tformals, (pred,) = _body_batched(cond_body, flags, size)
    test = _renamed(Body(tformals, [pred[0]]), formals)
    new_outs = _carried(outs, flags, nc, size)
    sym = _symbolic()
    if pred[1]:
        keep = test[0]
        new_outs = [sym.where(sym.reshape(keep, (size, *(1,) * (len(o.shape) - 1))), o, c)
                    for o, c in zip(new_outs, formals[:nc])]
        test = [sym.gt(sym.sum(sym.cast(keep, np.dtype(np.float64))), 0.0)]  # any element still running
    carries = [_tile(ns, x, size) if f and not b else x for x, f, b in zip(inputs[:nc], flags, batched)]
    loop = ns.apply(op, (*carries, *inputs[nc:]), {"cond_body": Body(formals, test), "body": Body(formals, new_outs),
                                                   "ncarry": nc, "max_iter": max_iter, "save": save})
    parts = [(item(ns, loop, k), flags[k]) for k in range(nc)]
    if save:
        for k in range(nc):
            s = item(ns, loop, nc + k)
            parts.append((_swap01(ns, s), True) if flags[k] else (s, False))
    return BatchedTuple(parts), True


def _cond_batch(op, ns, inputs, batched, true_body, false_body):
    size = _batch_size(inputs, batched)
    flags = list(batched[1:])
    (tf, touts), (ff, fouts) = _body_batched(true_body, flags, size), _body_batched(false_body, flags, size)
    both = [bt or bf for (_, bt), (_, bf) in zip(touts, fouts)]
    if batched[0]:
        return _select(ns, inputs, flags, size, (true_body, false_body)), True
    sym = _symbolic()

    def outputs(outs):
        return [_tile(sym, o, size) if want and not b else o for (o, b), want in zip(outs, both)]

    ff_outs = _renamed(Body(ff, outputs(fouts)), tf)
    branch = ns.apply(op, inputs, {"true_body": Body(tf, outputs(touts)), "false_body": Body(tf, ff_outs)})
    return BatchedTuple([(item(ns, branch, k), b) for k, b in enumerate(both)]), True


def _select(ns, inputs, flags, size: int, bodies: Sequence[Body]) -> BatchedTuple:
    """Both branches of a cond with a batched predicate, run on the whole batch, selected per element."""
    pred, *operands = inputs
    branches = []
    for body in bodies:
        formals, outs = _body_batched(body, flags, size)
        branches.append(_inline(ns, formals, [o for o, _ in outs], operands))
    t, f = branches
    parts = []
    for a, b, o in zip(t, f, bodies[0].outputs):
        keep = ns.reshape(pred, (size, *(1,) * len(o.shape)))
        parts.append((ns.where(keep, a, b), True))
    return BatchedTuple(parts)


def _inline(ns, formals: Sequence[Node], outputs: Sequence[Node], args: Sequence) -> list:
    """``outputs`` (a body over ``formals``) computed in ``ns`` on ``args``: nodes built in place of the
    body (symbolic), or its values (numeric): the body's ops, one ``ns.apply`` each."""
    sym = _symbolic()
    env: dict[int, object] = {id(v): a for v, a in zip(formals, args)}
    for n in inner_nodes(outputs, set(env)):
        if id(n) in env:
            continue
        if n.op is None:
            env[id(n)] = n if ns is sym else n.value
        else:
            env[id(n)] = ns.apply(n.op, tuple([env[id(i)] for i in n.inputs]), n.params)
    return [env[id(o)] for o in outputs]


def _item_batch(op, ns, inputs, batched, index):
    (t,) = inputs
    if isinstance(t, BatchedTuple):
        return t.parts[index]
    return ns.apply(op, (t,), {"index": index}), True


def _attach() -> None:
    """Put the rules on the ops (the op table's entries live in :mod:`common.ops.control`)."""
    for name, jvp, batch in (("scan", _scan_jvp, _scan_batch), ("while_loop", _while_jvp, _while_batch),
                             ("cond", _cond_jvp, _cond_batch)):
        OPS[name].jvp = jvp
        OPS[name].batch = batch
    OPS["item"].batch = _item_batch


_attach()
