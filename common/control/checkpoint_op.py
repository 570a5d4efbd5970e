"""The ``checkpoint`` op: every fact of it in one place.

``checkpoint(fn)`` (JAX's ``jax.checkpoint`` spelling) returns a function
that traces ``fn`` into a body and adds one node whose inputs are its
arguments (and the outer nodes it closes over) and whose value is the body's
outputs. Only those outputs are values of the graph around it: ``fn``'s
intermediates live inside the body, so nothing outside can keep them.

**VJP.** Another ``checkpoint`` node, over the body's VJP (the body's own ops'
rules, :func:`common.control.bodies.body_vjp`), whose inputs are the forward
node's inputs and the output cotangents. Its body computes ``fn`` again
before its reverse sweep: the backward recomputes the intermediates instead
of reading saved ones. A body is closed, so no rewrite of the outer graph
(CSE above all) can merge the recomputation with the forward values; the
memory plan frees the forward intermediates when the forward body returns.
Its VJP is again a checkpoint, so any order works.

**JVP.** A checkpoint over the body with its tangents (the body's outputs,
then the tangents of those that get one). **Batching.** A checkpoint over the
batched body.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..body import TUPLE, Body
from ..errors import TwogradError, op_error
from ..graph import apply, recording
from ..ops import NO_GRAD, OPS, ZERO, Kind, defop
from ..site import user_site
from ..tree import flatten, unflatten
from .bodies import (
    batch_size_of,
    body_batched,
    body_jvp,
    body_vjp,
    float_positions,
    is_float,
    output_cotangent,
    pullback_of,
)
from .checks import body_param, check_inputs
from .item_op import BatchedTuple, TupleTangent, item
from .trace import call_user, close_over, formal_vars, items, lift_leaves

__all__ = ["checkpoint"]


def checkpoint(fn: Callable) -> Callable:
    """``fn`` whose intermediates are recomputed in the backward pass instead of kept for it.

    The returned function takes and returns what ``fn`` does (nests of
    nodes); its value and derivatives are ``fn``'s, at every order. What a
    gradient keeps of it is its inputs and outputs only: the usual trade of
    time (``fn`` runs twice) for memory, on a deep chain or a long ``scan``.
    """
    if not callable(fn):
        raise op_error(TwogradError, "checkpoint", f"expected a function, got a {type(fn).__name__}",
                       site=user_site(2))

    @functools.wraps(fn)
    def remat(*args):
        site = user_site(2)
        leaves, struct = flatten(list(args))
        leaves = lift_leaves(leaves, None, "argument", "checkpoint", site)
        formals = formal_vars(leaves, "arg")
        with recording() as made:
            outs, struct_out = flatten(call_user(fn, unflatten(struct, formals), "checkpoint", site))
            outs = lift_leaves(outs, None, "output", "checkpoint", site)
        (body,), closures = close_over(formals, [outs], made)
        node = apply(OPS["checkpoint"], tuple([*leaves, *closures]), {"body": body}, site=site)
        return unflatten(struct_out, items(node, 0, len(outs)))

    return remat


# ------------------------------------------------------------------ type rule and impl

def _infer(*operands, body):
    b = body_param(body, "body")
    check_inputs(b, "body", operands, "operands")
    return (), TUPLE


def _types(node) -> list[tuple]:
    return [(o.shape, o.dtype) for o in node.params["body"].outputs]


def _impl(*operands, body):
    return body.run(operands)


# ------------------------------------------------------------------ VJP, JVP and batching

def _derived(body: Body, key: tuple, make: Callable[[], tuple]) -> tuple:
    """A body derived from ``body`` (with what its rule needs), made once per ``key``."""
    hit = body.cache.get(key)
    if hit is None:
        hit = body.cache[key] = make()
    return hit


def _reverse(body: Body) -> tuple:
    def make():
        ins, outs = float_positions(body.inputs), float_positions(body.outputs)
        gs, cts = body_vjp(body, outs, ins)
        return Body([*body.inputs, *gs], cts), ins, outs
    return _derived(body, ("checkpoint-vjp",), make)


def _cotangents(ns, g, out, inputs, params) -> list:
    back, ins, outs = _reverse(params["body"])
    result: list = [NO_GRAD] * len(inputs)
    if not ins:
        return result
    args = (*inputs, *[output_cotangent(ns, g, out, k) for k in outs])
    node = ns.apply(OPS["checkpoint"], args, {"body": back})
    for m, j in enumerate(ins):
        result[j] = item(ns, node, m)
    return result


def _jvp(ns, tangents, out, *operands, body):
    seeded = tuple(k for k in range(len(operands)) if tangents[k] is not ZERO and is_float(operands[k]))
    n = len(body.outputs)

    def make():
        ts, touts = body_jvp(body, seeded)
        given = [k for k in range(n) if touts[k] is not ZERO]
        return Body([*body.inputs, *ts], [*body.outputs, *[touts[k] for k in given]]), given

    forward, given = _derived(body, ("checkpoint-jvp", seeded), make)
    parts: list = [ZERO] * n
    if given:
        node = ns.apply(OPS["checkpoint"], (*operands, *[tangents[k] for k in seeded]), {"body": forward})
        for m, k in enumerate(given):
            parts[k] = item(ns, node, n + m)
    return TupleTangent(parts)


def _batch(op, ns, inputs, batched, body):
    size = batch_size_of(inputs, batched)
    flags = tuple(bool(b) for b in batched)

    def make():
        formals, outs = body_batched(body, flags, size)
        return Body(formals, [o for o, _ in outs]), [b for _, b in outs]

    inner, out_batched = _derived(body, ("checkpoint-batch", flags, size), make)
    node = ns.apply(op, tuple(inputs), {"body": inner})
    return BatchedTuple([(item(ns, node, k), b) for k, b in enumerate(out_batched)]), True


CHECKPOINT = defop("checkpoint", _infer, _impl, vjp_all=pullback_of(_cotangents), jvp=_jvp, batch=_batch,
                   outputs=_types, kind=Kind.CONTROL, nin=None, params=("body",),
                   doc="A body run on its operands whose intermediates the backward pass recomputes "
                       "(jax.checkpoint): its VJP is a checkpoint over the body's VJP, which runs the body again.")
