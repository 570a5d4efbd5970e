"""The ``while_loop`` op: every fact of it in one place.

``while_loop(cond_fn, body_fn, init)`` traces both functions into bodies that
take the same arguments and adds one node. Its inputs are ``(*init carries,
*consts)``; its params ``cond_body`` (carries, consts -> one bool scalar),
``body`` (carries, consts -> carries), ``ncarry``, ``max_iter`` (None:
unbounded), ``save``. Its value is ``(*final carries[, *stacked carry-ins])``;
the stack's length is the trip count.

**VJP.** A reverse ``scan`` over the stacked carry-ins of the iterations that
ran (TensorFlow's way; JAX refuses reverse mode here), whose body is the VJP
of the loop's body.

**JVP.** A while loop carrying the tangents along, the condition reading the
primal carries only (the trip count is locally constant).

**Batching.** With an unbatched condition, a while loop of the batched body.
With a batched condition every element runs until the last one is done: the
loop runs while *any* element's condition holds, and an element whose
condition is false keeps its carries (``where``), which is JAX's rule. A loop
that saves its carry-ins for reverse mode refuses this case (the frozen steps
would be swept back as real ones).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..body import TUPLE, Body
from ..errors import GradError, ShapeError, TwogradError, op_error
from ..graph import Node, apply, recording
from ..ops import NO_GRAD, OPS, ZERO, Kind, defop, symbolic
from ..ops.params import bool_param, int_param
from ..site import user_site
from ..tree import flatten, unflatten
from .bodies import (
    add_at,
    batch_size_of,
    body_batched,
    body_jvp,
    body_vjp,
    carried,
    carry_fixed_point,
    filled,
    float_positions,
    given,
    live_carries,
    output_cotangent,
    promoted,
    pullback_of,
    reached,
    renamed_outputs,
    saving_copy,
    seeded,
    stack_steps,
    sums,
    swap01,
    tangent_inputs,
    tile,
    vars_like,
)
from .checks import body_param, check_carries, check_inputs, count_param, primal_param, types_of
from .item_op import BatchedTuple, TupleTangent, item
from .trace import call_user, check_structure, close_over, formal_vars, items, lift_leaves

__all__ = ["while_loop"]


def while_loop(cond_fn: Callable, body_fn: Callable, init, max_iter: int | None = None):
    """The final carry of ``while cond_fn(carry): carry = body_fn(carry)`` (at most ``max_iter`` times).

    The trip count is data-dependent, and the loop is differentiable in
    reverse mode: its VJP is a reverse scan over the carries of the
    iterations that ran.
    """
    site = user_site(2)
    leaves, struct = flatten(init)
    leaves = lift_leaves(leaves, None, "init carry", "while_loop", site)
    if not leaves:
        raise op_error(ShapeError, "while_loop", "the loop needs at least one carry", site=site)
    try:
        if max_iter is not None:
            max_iter = int_param(max_iter, "max_iter", 0)
    except TwogradError as e:
        raise op_error(type(e), "while_loop", str(e), site=site) from None
    carries = formal_vars(leaves, "carry")
    with recording() as made:
        pred = lift_leaves([call_user(cond_fn, (unflatten(struct, carries),), "while_loop", site)], None,
                           "condition", "while_loop", site)
        new_leaves, new_struct = flatten(call_user(body_fn, (unflatten(struct, carries),), "while_loop", site))
        check_structure(new_struct, struct, "the carry", "while_loop", site)
        new_leaves = lift_leaves(new_leaves, leaves, "carry", "while_loop", site)
    (cond_body, body), closures = close_over(carries, [pred, new_leaves], made)
    params = {"cond_body": cond_body, "body": body, "ncarry": len(leaves), "max_iter": max_iter, "save": False}
    node = apply(OPS["while_loop"], tuple([*leaves, *closures]), params, site=site)
    return unflatten(struct, items(node, 0, len(leaves)))


# ------------------------------------------------------------------ type rule and impl

def _while_infer(*inputs, cond_body, body, ncarry, max_iter=None, save=False, primal=None):
    cond_body = body_param(cond_body, "cond_body")
    body = body_param(body, "body")
    nc = count_param(inputs, ncarry, lo=1)
    bool_param(save, "save")
    if max_iter is not None:
        int_param(max_iter, "max_iter", 0)
    check_inputs(cond_body, "cond_body", inputs, "inputs (carries, consts)")
    check_inputs(body, "body", inputs, "inputs (carries, consts)")
    if len(cond_body.outputs) != 1 or cond_body.outputs[0].shape != () or cond_body.outputs[0].dtype != np.bool_:
        raise ShapeError(f"the condition must return one bool scalar, got ({types_of(cond_body.outputs)})")
    if len(body.outputs) != nc:
        raise ShapeError(f"the body returns {len(body.outputs)} outputs for {nc} carries")
    check_carries(body, "body", inputs[:nc])
    primal_param(primal, "while_loop", inputs, {"ncarry": nc, "save": save})
    return (), TUPLE


def _while_types(node) -> list[tuple]:
    nc = node.params["ncarry"]
    carries = node.inputs[:nc]
    types = [(c.shape, c.dtype) for c in carries]
    if node.params.get("save"):
        types += [((None, *c.shape), c.dtype) for c in carries]
    return types


def _while_impl(*arrays, cond_body, body, ncarry, max_iter=None, save=False, primal=None):
    carry, consts = tuple(arrays[:ncarry]), list(arrays[ncarry:])
    saved: list = []
    steps = 0
    while (max_iter is None or steps < max_iter) and bool(cond_body.run([*carry, *consts])[0]):
        if save:
            saved.append(carry)
        carry = body.run([*carry, *consts])
        steps += 1
    kept = [stack_steps([c[k] for c in saved], body.inputs[k], len(saved)) for k in range(ncarry)] if save else []
    return (*carry, *kept)


# ------------------------------------------------------------------ VJP, JVP and batching

def _while_reverse(body: Body, nc: int, saved: tuple) -> tuple:
    """The body of while_loop's reverse scan (as :func:`_scan_reverse`, with no xs and no ys)."""
    key = ("while", nc, saved)
    hit = body.cache.get(key)
    if hit is not None:
        return hit
    ins = body.inputs
    fc, fz = float_positions(ins[:nc]), float_positions(ins[nc:], nc)
    gs, cts = body_vjp(body, fc, fc + fz)
    accs = vars_like(ins, fz, "acc")
    saved_cts = vars_like(ins, saved, "gsaved")
    rev = Body([*gs, *accs, *ins[:nc], *saved_cts, *ins[nc:]],
               [*add_at(cts[:len(fc)], fc, saved_cts, saved), *sums(accs, cts[len(fc):])])
    hit = body.cache[key] = (rev, fc, fz)
    return hit


def _while_cotangents(ns, g, out, inputs, params) -> list:
    body, nc = params["body"], params["ncarry"]
    saved = tuple(k - nc for k in given(g, range(nc, 2 * nc))) if params.get("save") else ()
    rev, fc, fz = _while_reverse(body, nc, saved)
    result: list = [NO_GRAD] * len(inputs)
    if not (fc or fz):
        return result
    stacked_node = saving_copy(ns, out, inputs, params, "while_loop")
    stacked = [item(ns, stacked_node, nc + k) for k in range(nc)]
    accs = [ns.zeros_like(inputs[j]) for j in fz]
    args = (*[output_cotangent(ns, g, out, k) for k in fc], *accs, *stacked, *[g[nc + k] for k in saved], *inputs[nc:])
    back = ns.apply(OPS["scan"], args, {"body": rev, "ncarry": len(fc) + len(fz), "nx": nc + len(saved),
                                        "length": None, "reverse": True, "save": False})
    for m, j in enumerate(fc + fz):
        result[j] = item(ns, back, m)
    return result


def _while_jvp(ns, tangents, out, *inputs, cond_body, body, ncarry, max_iter=None, save=False, primal=None):
    nc, nin = ncarry, len(inputs)
    tz = seeded(tangents, inputs, nc, nin)
    tc = carry_fixed_point(body, nc, set(seeded(tangents, inputs, 0, nc)), tz)
    if not tc:
        return TupleTangent([ZERO] * (nc * (2 if save else 1)))
    tvars, touts = body_jvp(body, tc + tz)
    ins, outs = body.inputs, body.outputs
    vc, vz = tvars[:len(tc)], tvars[len(tc):]
    formals = [*ins[:nc], *vc, *ins[nc:], *vz]
    test = renamed_outputs(cond_body, ins)
    jbody = Body(formals, [*outs, *[filled(touts[k], outs[k]) for k in tc]])
    args = (*inputs[:nc], *tangent_inputs(ns, tangents, inputs, tc), *inputs[nc:], *[tangents[k] for k in tz])
    params = {"cond_body": Body(formals, test), "body": jbody, "ncarry": nc + len(tc), "max_iter": max_iter,
              "save": save}
    ltc = len(tc)
    params["primal"] = ((("cond_body", cond_body), ("body", body), ("ncarry", nc), ("max_iter", max_iter)),
                        (*range(nc), *range(nc + ltc, nin + ltc)),
                        (*[(k, k) for k in range(nc)], *([(nc + k, nc + ltc + k) for k in range(nc)] if save else [])))
    loop = ns.apply(OPS["while_loop"], args, params)
    parts: list = [ZERO] * (nc * (2 if save else 1))
    for m, k in enumerate(tc):
        parts[k] = item(ns, loop, nc + m)
        if save:
            parts[nc + k] = item(ns, loop, 2 * (nc + len(tc)) - len(tc) + m)
    return TupleTangent(parts)


def _while_batch(op, ns, inputs, batched, cond_body, body, ncarry, max_iter=None, save=False, primal=None):
    nc, size = ncarry, batch_size_of(inputs, batched)
    flags = promoted(body, list(batched), nc, size)
    _, (pred,) = body_batched(cond_body, flags, size)
    if pred[1]:
        if save:
            raise GradError("batching: a while_loop whose condition depends on the batch cannot save its "
                            "carry-ins for reverse mode (the elements run different numbers of steps)")
        flags = [True] * nc + list(flags[nc:])
    formals, outs = body_batched(body, flags, size)
    tformals, (pred,) = body_batched(cond_body, flags, size)
    test = renamed_outputs(Body(tformals, [pred[0]]), formals)
    new_outs = carried(outs, flags, nc, size)
    sym = symbolic
    if pred[1]:
        keep = test[0]
        new_outs = [sym.where(sym.reshape(keep, (size, *(1,) * (len(o.shape) - 1))), o, c)
                    for o, c in zip(new_outs, formals[:nc])]
        test = [sym.gt(sym.sum(sym.cast(keep, np.dtype(np.float64))), 0.0)]  # any element still running
    carries = [tile(ns, x, size) if f and not b else x for x, f, b in zip(inputs[:nc], flags, batched)]
    loop = ns.apply(op, (*carries, *inputs[nc:]), {"cond_body": Body(formals, test), "body": Body(formals, new_outs),
                                                   "ncarry": nc, "max_iter": max_iter, "save": save})
    parts = [(item(ns, loop, k), flags[k]) for k in range(nc)]
    if save:
        for k in range(nc):
            s = item(ns, loop, nc + k)
            parts.append((swap01(ns, s), True) if flags[k] else (s, False))
    return BatchedTuple(parts), True


def _prune_while(node: Node, inputs: tuple, used: set):
    """(new node, old output index -> new) when some of ``node`` is dead (only ``used`` is read), else None."""
    p = node.params
    test, body, nc = p["cond_body"], p["body"], p["ncarry"]
    formals, outs = body.inputs, body.outputs
    live = {k for k in range(nc) if k in used or (p.get("save") and nc + k in used)}
    carries = live_carries(lambda c: [test.outputs[0]] + [outs[k] for k in sorted(c)], formals, nc, live)
    found = reached([test.outputs[0]] + [outs[k] for k in carries], formals)
    consts = [k for k in range(nc, len(formals)) if id(formals[k]) in found]
    save = bool(p.get("save")) and any(nc + k in used for k in carries)
    keep_in = carries + consts
    if len(keep_in) == len(formals) and save == bool(p.get("save")):
        return None
    new_formals = [formals[k] for k in keep_in]
    params = {**p, "cond_body": Body(new_formals, test.outputs), "body": Body(new_formals, [outs[k] for k in carries]),
              "ncarry": len(carries), "save": save}
    new = apply(node.op, tuple(inputs[k] for k in keep_in), params, site=node.site)
    index = {k: m for m, k in enumerate(carries)}
    if save:
        index.update({nc + k: len(carries) + m for m, k in enumerate(carries)})
    return new, index


WHILE_LOOP = defop("while_loop", _while_infer, _while_impl, vjp_all=pullback_of(_while_cotangents), jvp=_while_jvp,
                   batch=_while_batch, outputs=_while_types, saving=_while_impl, kind=Kind.CONTROL, nin=None,
                   invariant_from=lambda params: params["ncarry"], prune=_prune_while,
                   params=("cond_body", "body", "ncarry", "max_iter", "save", "primal"),
                   doc="A loop while cond_body holds (at most max_iter times): the final carries. Its VJP is a "
                       "reverse scan over the carries each iteration began with.")
