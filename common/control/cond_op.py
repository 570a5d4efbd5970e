"""The ``cond`` op: every fact of it in one place.

``cond(pred, true_fn, false_fn, *operands)`` traces both branches into bodies
over the same operands and adds one node. Its inputs are ``(pred,
*operands)``; its params ``true_body``, ``false_body`` (same inputs, same
output types). Its value is the taken body's outputs. Lazy: only that body
runs.

**VJP.** A ``cond`` over the two branches' VJP bodies: lazy too, so the
gradient of ``cond(x > 0, sqrt, square)`` at -1 is -2, never NaN (the
``where`` trap).

**JVP.** A cond over the two branches' JVPs; only the taken one runs.

**Batching.** With an unbatched predicate, a cond of the batched branches;
with a batched predicate the laziness cannot hold per element, so **both**
branches run on the whole batch and each output is selected per element
(``where``): the value is right, but a branch's NaN or warning on elements
that did not take it is computed (and dropped), and both branches cost time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..body import TUPLE, Body, inner_nodes
from ..errors import DTypeError, ShapeError
from ..graph import Node, apply, lift, recording
from ..ops import NO_GRAD, OPS, ZERO, Kind, defop, symbolic
from ..site import user_site
from ..tree import flatten, unflatten
from .bodies import (
    batch_size_of,
    body_batched,
    body_jvp,
    body_vjp,
    filled,
    float_positions,
    is_float,
    output_cotangent,
    pullback_of,
    reached,
    renamed_outputs,
    tile,
)
from .checks import agree, body_param, check_inputs, mismatch, primal_param, type_of
from .item_op import BatchedTuple, TupleTangent, item
from .trace import call_user, check_structure, close_over, formal_vars, items, lift_leaves

__all__ = ["cond"]


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``; only the taken branch runs.

    Both branches must return the same nest of nodes of the same shapes and
    dtypes. Lazy in value and gradient: ``cond(x > 0, sqrt, square)``'s
    gradient at -1 is -2, not NaN.
    """
    site = user_site(2)
    pred = lift(pred)
    leaves, struct = flatten(list(operands))
    leaves = lift_leaves(leaves, None, "operand", "cond", site)
    formals = formal_vars(leaves, "arg")
    args = unflatten(struct, formals)
    with recording() as made:
        outs_t, struct_t = flatten(call_user(true_fn, args, "cond", site))
        outs_f, struct_f = flatten(call_user(false_fn, args, "cond", site))
        check_structure(struct_f, struct_t, "the false branch's result", "cond", site)
        outs_t = lift_leaves(outs_t, [o for o in outs_f if isinstance(o, Node)] if all(
            isinstance(o, Node) for o in outs_f) else None, "true branch output", "cond", site)
        outs_f = lift_leaves(outs_f, outs_t, "false branch output", "cond", site)
    (t, f), closures = close_over(formals, [outs_t, outs_f], made)
    node = apply(OPS["cond"], tuple([pred, *leaves, *closures]), {"true_body": t, "false_body": f}, site=site)
    return unflatten(struct_t, items(node, 0, len(outs_t)))


# ------------------------------------------------------------------ type rule and impl

def _cond_infer(pred, *operands, true_body, false_body, primal=None):
    t = body_param(true_body, "true_body")
    f = body_param(false_body, "false_body")
    if pred.shape != () or pred.dtype != np.bool_:
        raise DTypeError(f"the predicate must be a bool scalar, got {type_of(pred)}")
    check_inputs(t, "true_body", operands, "operands")
    check_inputs(f, "false_body", operands, "operands")
    if len(t.outputs) != len(f.outputs):
        raise ShapeError(f"the branches return {len(t.outputs)} and {len(f.outputs)} outputs")
    for k, (a, b) in enumerate(zip(t.outputs, f.outputs)):
        if not agree(a, b):
            raise mismatch(f"output {k} of the true branch is {type_of(a)}, of the false branch {type_of(b)}", a, b)
    primal_param(primal, "cond", (pred, *operands), {"true_body": t, "false_body": f})
    return (), TUPLE


def _cond_types(node) -> list[tuple]:
    t, f = node.params["true_body"].outputs, node.params["false_body"].outputs
    return [(tuple(i if i is not None else j for i, j in zip(a.shape, b.shape)), a.dtype) for a, b in zip(t, f)]


def _cond_impl(pred, *operands, true_body, false_body, primal=None):
    return (true_body if bool(pred) else false_body).run(operands)


# ------------------------------------------------------------------ VJP, JVP and batching

def _cond_reverse(t: Body, f: Body) -> tuple:
    key = ("cond", id(f))
    hit = t.cache.get(key)
    if hit is not None and hit[-1] is f:
        return hit
    fo, fr = float_positions(t.inputs), float_positions(t.outputs)
    bodies = []
    for b in (t, f):
        gs, cts = body_vjp(b, fr, fo)
        bodies.append(Body([*b.inputs, *gs], cts))
    hit = t.cache[key] = (*bodies, fo, fr, f)
    return hit


def _cond_cotangents(ns, g, out, inputs, params) -> list:
    rt, rf, fo, fr, _ = _cond_reverse(params["true_body"], params["false_body"])
    result: list = [NO_GRAD] * len(inputs)
    if not fo:
        return result
    args = (inputs[0], *inputs[1:], *[output_cotangent(ns, g, out, k) for k in fr])
    back = ns.apply(OPS["cond"], args, {"true_body": rt, "false_body": rf})
    for m, j in enumerate(fo):
        result[1 + j] = item(ns, back, m)
    return result


def _cond_jvp(ns, tangents, out, pred, *operands, true_body, false_body, primal=None):
    seeded = [k for k in range(len(operands)) if tangents[1 + k] is not ZERO and is_float(operands[k])]
    tt, touts_t = body_jvp(true_body, seeded)
    ft, touts_f = body_jvp(false_body, seeded)
    n = len(true_body.outputs)
    tout = [k for k in range(n) if touts_t[k] is not ZERO or touts_f[k] is not ZERO]
    if not tout:
        return TupleTangent([ZERO] * n)
    f_formals = [*false_body.inputs, *ft]
    t_formals = [*true_body.inputs, *tt]
    branches = {}
    for name, b, formals, touts in (("true_body", true_body, t_formals, touts_t),
                                    ("false_body", false_body, f_formals, touts_f)):
        branches[name] = Body(formals, [*b.outputs, *[filled(touts[k], b.outputs[k]) for k in tout]])
    args = (pred, *operands, *[tangents[1 + k] for k in seeded])
    branches["primal"] = ((("true_body", true_body), ("false_body", false_body)), tuple(range(1 + len(operands))),
                          tuple((k, k) for k in range(n)))
    branch = ns.apply(OPS["cond"], args, branches)
    parts: list = [ZERO] * n
    for m, k in enumerate(tout):
        parts[k] = item(ns, branch, n + m)
    return TupleTangent(parts)


def _cond_batch(op, ns, inputs, batched, true_body, false_body, primal=None):
    size = batch_size_of(inputs, batched)
    flags = list(batched[1:])
    (tf, touts), (ff, fouts) = body_batched(true_body, flags, size), body_batched(false_body, flags, size)
    both = [bt or bf for (_, bt), (_, bf) in zip(touts, fouts)]
    if batched[0]:
        return _select(ns, inputs, flags, size, (true_body, false_body)), True
    sym = symbolic

    def outputs(outs):
        return [tile(sym, o, size) if want and not b else o for (o, b), want in zip(outs, both)]

    ff_outs = renamed_outputs(Body(ff, outputs(fouts)), tf)
    branch = ns.apply(op, inputs, {"true_body": Body(tf, outputs(touts)), "false_body": Body(tf, ff_outs)})
    return BatchedTuple([(item(ns, branch, k), b) for k, b in enumerate(both)]), True


def _select(ns, inputs, flags, size: int, bodies: Sequence[Body]) -> BatchedTuple:
    """Both branches of a cond with a batched predicate, run on the whole batch, selected per element."""
    pred, *operands = inputs
    branches = []
    for body in bodies:
        formals, outs = body_batched(body, flags, size)
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
    sym = symbolic
    env: dict[int, object] = {id(v): a for v, a in zip(formals, args)}
    for n in inner_nodes(outputs, set(env)):
        if id(n) in env:
            continue
        if n.op is None:
            env[id(n)] = n if ns is sym else n.value
        else:
            env[id(n)] = ns.apply(n.op, tuple([env[id(i)] for i in n.inputs]), n.params)
    return [env[id(o)] for o in outputs]


def _prune_cond(node: Node, inputs: tuple, used: set):
    """(new node, old output index -> new) when some of ``node`` is dead (only ``used`` is read), else None."""
    p = node.params
    t, f = p["true_body"], p["false_body"]
    keep_out = sorted(k for k in used if k < len(t.outputs))
    roots_t, roots_f = [t.outputs[k] for k in keep_out], [f.outputs[k] for k in keep_out]
    found = reached(roots_t, t.inputs) | reached(roots_f, f.inputs)
    keep_in = [k for k in range(len(t.inputs)) if id(t.inputs[k]) in found or id(f.inputs[k]) in found]
    if len(keep_in) == len(t.inputs) and len(keep_out) == len(t.outputs):
        return None
    params = {"true_body": Body([t.inputs[k] for k in keep_in], roots_t),
              "false_body": Body([f.inputs[k] for k in keep_in], roots_f)}
    new = apply(node.op, (inputs[0], *(inputs[1 + k] for k in keep_in)), params, site=node.site)
    return new, {k: m for m, k in enumerate(keep_out)}


COND = defop("cond", _cond_infer, _cond_impl, vjp_all=pullback_of(_cond_cotangents), jvp=_cond_jvp, batch=_cond_batch,
             outputs=_cond_types, prune=_prune_cond, kind=Kind.CONTROL, nin=None,
             params=("true_body", "false_body", "primal"),
             doc="One of two bodies on the operands, by a bool scalar; only the taken one runs. Its VJP is a cond "
                 "over the branches' VJPs.")
