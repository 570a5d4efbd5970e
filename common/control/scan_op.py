"""The ``scan`` op: every fact of it in one place (JAX's ``scan_p``).

``scan(fn, init, xs)`` traces ``fn`` once into a body (:mod:`common.control.trace`)
and adds one node. The node's inputs are ``(*init carries, *xs, *consts)``;
its params ``body`` (inputs: carries, one slice of each x, consts; outputs:
new carries, ys), ``ncarry``, ``nx``, ``length`` (needed when ``nx == 0``),
``reverse``, ``save``. Its value is ``(*final carries, *stacked ys[, *stacked
carry-ins])``, the last group when ``save``: what the reverse loop reads.

**VJP.** A ``scan`` running the other way, whose body is the VJP of the
forward body (:func:`~common.control.bodies.body_vjp`), carrying the carries'
cotangents and the sums of the consts' cotangents, reading the stacked
carry-ins, the xs and the ys' cotangents per step (Theano's scan gradient).
Its graph does not grow with the number of steps, and its VJP is again a scan
(higher order works). One reverse loop answers every input, so the op answers
the pullback protocol (:meth:`common.ops.Op.pullback`) directly. The stacked
carry-ins come from the node itself when it was made with ``save=True``, else
from a copy of the node with ``save=True`` (a rewrite can merge the two, since
the copy computes the same carries).

A reverse body, built from the forward body's nodes, would compute the forward
values it reads (the ``tanh``, the gates) once more per step. symsym's
residuals rewrite makes the forward scan stack them instead; symnum's program
runs a differentiated scan as :func:`scan_keeping_residuals` (the op's
``saving`` impl), whose value (a :class:`Kept` tuple) carries the same
stacks, and the VJP hands them to a reverse body that reads them
(:func:`residuals_of` finds them, once per body): the forward body's ops run
once per step in all.

**JVP.** A scan carrying (carries, their tangents), reading (xs, their
tangents) and (consts, their tangents), returning ys and their tangents. A
carry whose initial value has no tangent gets one (zeros) when the body gives
its update one: found as a fixed point over the carries, as JAX does. The
tangent loop recomputes the primal carries it needs, and names the loop it is
the tangent of in its ``primal`` param (:func:`~common.control.checks.primal_param`,
saved and loaded like any param), so that a rewrite may drop the primal loop's
duplicate work. ``while_loop`` and ``cond`` record theirs the same way.

**Batching.** A scan of the batched body. A sequence with the batch axis in
front is swapped to (steps, batch, ...) so each step reads a batch of slices;
a carry is batched when its initial value is or when the body makes its
update batched (the fixed point above; the initial value is then broadcast
along the batch); stacked outputs come out (steps, batch, ...) and are
swapped back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..body import TUPLE, Body, inner_nodes, is_tuple
from ..errors import ShapeError, TwogradError, op_error
from ..graph import Node, apply, recording, replace, variable
from ..ops import NO_GRAD, OPS, ZERO, Kind, defop
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
    saving_copy,
    seeded,
    stack_steps,
    sums,
    swap01,
    tangent_inputs,
    tile,
    vars_like,
)
from .checks import body_param, check_carries, check_inputs, count_param, primal_param, type_of
from .item_op import BatchedTuple, TupleTangent, item
from .trace import call_user, check_structure, close_over, formal_vars, items, lift_leaves

__all__ = ["Kept", "reading_body", "residual_nodes", "residuals_of", "scan", "scan_keeping_residuals"]


def scan(fn: Callable, init, xs, length: int | None = None, reverse: bool = False):
    """``(final_carry, ys)`` of ``carry, y = fn(carry, x)`` over the leading axis of ``xs`` (JAX's lax.scan).

    ``init`` and ``xs`` may be nodes or nests of lists/tuples of them (``xs``
    may be None with a ``length``); ``ys`` stacks each ``y`` along a new
    leading axis. ``reverse`` runs from the last slice to the first (ys stay
    in index order). ``fn`` is traced once: the graph holds one body, whatever
    the number of steps.
    """
    site = user_site(2)
    init_leaves, init_struct = flatten(init)
    init_leaves = lift_leaves(init_leaves, None, "init carry", "scan", site)
    xs_leaves, xs_struct = flatten(xs) if xs is not None else ([], None)
    xs_leaves = lift_leaves(xs_leaves, None, "xs", "scan", site)
    try:
        bool_param(reverse, "reverse")
        if length is not None:
            length = int_param(length, "length", 0)
    except TwogradError as e:
        raise op_error(type(e), "scan", str(e), site=site) from None
    for k, x in enumerate(xs_leaves):
        if x.ndim == 0:
            raise op_error(ShapeError, "scan", f"xs {k} is a scalar: a scan reads one slice of its leading "
                           "axis per step", [x], site)
    carries, slices = formal_vars(init_leaves, "carry"), formal_vars(xs_leaves, "x", drop_axis=True)
    with recording() as made:
        result = call_user(fn, (unflatten(init_struct, carries), unflatten(xs_struct, slices) if xs is not None
                            else None), "scan", site)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise op_error(ShapeError, "scan", "the function must return a pair (carry, y)", site=site)
        new_leaves, new_struct = flatten(result[0])
        check_structure(new_struct, init_struct, "the carry", "scan", site)
        new_leaves = lift_leaves(new_leaves, init_leaves, "carry", "scan", site)
        y_leaves, y_struct = flatten(result[1]) if result[1] is not None else ([], None)
        y_leaves = lift_leaves(y_leaves, None, "y", "scan", site)
    (body,), closures = close_over([*carries, *slices], [[*new_leaves, *y_leaves]], made)
    params = {"body": body, "ncarry": len(init_leaves), "nx": len(xs_leaves), "length": length,
              "reverse": reverse, "save": False}
    node = apply(OPS["scan"], tuple([*init_leaves, *xs_leaves, *closures]), params, site=site)
    final = items(node, 0, len(init_leaves))
    ys = items(node, len(init_leaves), len(y_leaves))
    return unflatten(init_struct, final), (unflatten(y_struct, ys) if result[1] is not None else None)


# ------------------------------------------------------------------ type rule

def _scan_infer(*inputs, body, ncarry, nx, length=None, reverse=False, save=False, primal=None):
    body = body_param(body, "body")
    nc = count_param(inputs, ncarry)
    nx = int_param(nx, "nx", 0, len(inputs) - nc)
    bool_param(reverse, "reverse")
    bool_param(save, "save")
    if length is not None:
        int_param(length, "length", 0)
    if nx == 0 and length is None:
        raise ShapeError("a scan over no xs needs param 'length'")
    _scan_length(inputs, nc, nx, length)  # (the xs and the length must agree)
    xs = inputs[nc:nc + nx]
    for k, x in enumerate(xs):
        if len(x.shape) < 1:
            raise ShapeError(f"xs {k} is a scalar {type_of(x)}: a scan reads xs one leading-axis slice per step")
    slices = [_Slice(x.shape[1:], x.dtype) for x in xs]
    check_inputs(body, "body", [*inputs[:nc], *slices, *inputs[nc + nx:]], "inputs (carries, x slices, consts)")
    if len(body.outputs) < nc:
        raise ShapeError(f"the body returns {len(body.outputs)} outputs, fewer than its {nc} carries")
    check_carries(body, "body", inputs[:nc])
    primal_param(primal, "scan", inputs, {"body": body, "ncarry": nc, "nx": nx, "length": length, "save": save})
    return (), TUPLE


class _Slice:
    """The type of one step's slice of an x."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape, self.dtype = tuple(shape), dtype


def _scan_length(inputs, nc: int, nx: int, length) -> int | None:
    """The number of steps, where known statically: ``length`` or the xs' common leading dim."""
    known = {x.shape[0] for x in inputs[nc:nc + nx] if len(x.shape) and x.shape[0] is not None}
    if length is not None:
        known.add(length)
    if len(known) > 1:
        raise ShapeError(f"the xs' leading dims and the length disagree: {sorted(known)}")
    return known.pop() if known else None


def _scan_types(node) -> list[tuple]:
    p, ins = node.params, node.inputs
    nc, nx, body = p["ncarry"], p["nx"], p["body"]
    n = _scan_length(ins, nc, nx, p.get("length"))
    types = [(c.shape, c.dtype) for c in ins[:nc]]
    types += [((n, *y.shape), y.dtype) for y in body.outputs[nc:]]
    if p.get("save"):
        types += [((n, *c.shape), c.dtype) for c in ins[:nc]]
    return types


# ------------------------------------------------------------------ impl

def _scan_impl(*arrays, body, ncarry, nx, length=None, reverse=False, save=False, primal=None):
    carry = list(arrays[:ncarry])
    xs, consts = arrays[ncarry:ncarry + nx], list(arrays[ncarry + nx:])
    sizes = {len(x) for x in xs} | ({length} if length is not None else set())
    if len(sizes) > 1:
        # a ValueError: the caller (evaluate, the program) names the scan node, its inputs and the user's line
        raise ValueError(f"the xs' leading dims and the length disagree: {sorted(sizes)}")
    n = sizes.pop()
    ny = len(body.outputs) - ncarry
    ys = [[None] * n for _ in range(ny)]
    saved = [[None] * n for _ in range(ncarry)] if save else []
    run = body.run
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        for k in range(len(saved)):
            saved[k][t] = carry[k]
        outs = run([*carry, *[x[t] for x in xs], *consts])
        carry = outs[:ncarry]
        for j in range(ny):
            ys[j][t] = outs[ncarry + j]
    stacked = [stack_steps(ys[j], body.outputs[ncarry + j], n) for j in range(ny)]
    kept = [stack_steps(saved[k], body.inputs[k], n) for k in range(len(saved))]
    return (*carry, *stacked, *kept)


class Kept(tuple):
    """A saving scan's value (a tuple, as :func:`_scan_impl` returns) that also holds its stacked residuals."""

    residuals: tuple = ()


def scan_keeping_residuals(*arrays, body, ncarry, nx, length=None, reverse=False, save=True, primal=None):
    """A saving scan's value that also keeps, stacked, the forward values its VJP body reads (numbers only).

    The forward runs the body with its residuals (:func:`residuals_of`) as
    extra outputs, once per step, as it runs anyway; the VJP finds them on the
    value (a :class:`Kept`) and its reverse body reads each step's slice
    instead of running the forward step again (symsym's residuals rewrite
    does the same to the graph).
    """
    aug, res = residuals_of(body, ncarry, nx)
    params = {"ncarry": ncarry, "nx": nx, "length": length, "reverse": reverse, "save": True}
    if not res:
        return _scan_impl(*arrays, body=body, **params)
    outs = _scan_impl(*arrays, body=aug, **params)
    nout = len(body.outputs)
    value = Kept((*outs[:nout], *outs[nout + len(res):]))
    value.residuals = outs[nout:nout + len(res)]
    return value


# ------------------------------------------------------------------ VJP

def _scan_reverse(body: Body, nc: int, nx: int, ys: tuple, saved: tuple) -> tuple:
    """The body of scan's reverse loop, and which positions it serves (built once per body and use).

    Its carries are the carries' cotangents and the consts' summed cotangents;
    its xs are the stacked carry-ins, the xs, the cotangents of the ys at
    positions ``ys`` (those that got one) and, for a saving scan, those of its
    stacked carry-ins at carry positions ``saved``, which add to the carries'
    cotangents at their step.
    """
    key = ("scan", nc, nx, ys, saved)
    hit = body.cache.get(key)
    if hit is not None:
        return hit
    ins = body.inputs
    fc, fx = float_positions(ins[:nc]), float_positions(ins[nc:nc + nx], nc)
    fz = float_positions(ins[nc + nx:], nc + nx)
    gs, cts = body_vjp(body, fc + list(ys), fc + fx + fz)
    accs = vars_like(ins, fz, "acc")
    saved_cts = vars_like(ins, saved, "gsaved")
    ct_c, ct_x, ct_z = cts[:len(fc)], cts[len(fc):len(fc) + len(fx)], cts[len(fc) + len(fx):]
    rev = Body([*gs[:len(fc)], *accs, *ins[:nc + nx], *gs[len(fc):], *saved_cts, *ins[nc + nx:]],
               [*add_at(ct_c, fc, saved_cts, saved), *sums(accs, ct_z), *ct_x])
    hit = body.cache[key] = (rev, fc, fx, fz)
    return hit


def residual_nodes(fb: Body, rb: Body, nc: int, nx: int) -> list[Node]:
    """The forward-body nodes that nodes of the reverse body ``rb`` alone read, which vary per step.

    The two bodies share node identities (``rb`` is built from ``fb``'s nodes
    by the ops' VJP rules), which is how they are found. A residual depends on
    a carry or a sequence and has a static shape; views, shape-only ops and
    loops are left to be recomputed.
    """
    formals = {id(v) for v in fb.inputs}
    forward = inner_nodes(fb.outputs, formals)
    mine = {id(n) for n in forward}
    variant = {id(v) for v in fb.inputs[:nc + nx]}
    for n in forward:
        if n.op is not None and any(id(i) in variant for i in n.inputs):
            variant.add(id(n))
    picked: dict[int, Node] = {}
    for n in inner_nodes(rb.outputs, {id(v) for v in rb.inputs}):
        if id(n) in mine or n.op is None:
            continue
        for i in n.inputs:
            if (id(i) in mine and i.op is not None and id(i) in variant and i.op.kind is not Kind.SHAPE
                    and not is_tuple(i) and None not in i.shape and i.op.kind is not Kind.CONTROL):
                picked.setdefault(id(i), i)
    return list(picked.values())


def residuals_of(body: Body, nc: int, nx: int) -> tuple[Body, list[Node]]:
    """``body`` with its residuals as extra outputs after its own, and the residuals (made once per body).

    They are those of the VJP body for every float carry and y: a reverse
    body asked for fewer cotangents reads a part of them.
    """
    key = ("residuals", nc, nx)
    hit = body.cache.get(key)
    if hit is None:
        rev = _scan_reverse(body, nc, nx, tuple(float_positions(body.outputs[nc:], nc)), ())[0]
        res = residual_nodes(body, rev, nc, nx)
        hit = body.cache[key] = (Body(body.inputs, [*body.outputs, *res]), res)
    return hit


def _scan_reverse_reading(body: Body, nc: int, nx: int, ys: tuple, saved: tuple) -> tuple:
    """:func:`_scan_reverse`'s body reading the residuals as sequences after its own, instead of computing
    them (the residuals of :func:`residuals_of`, in its order), with the positions it serves."""
    key = ("scan reading", nc, nx, ys, saved)
    hit = body.cache.get(key)
    if hit is not None:
        return hit
    rev, fc, fx, fz = _scan_reverse(body, nc, nx, ys, saved)
    res = residuals_of(body, nc, nx)[1]
    reading = reading_body(rev, res, len(fc) + len(fz) + nc + nx + len(ys) + len(saved))
    hit = body.cache[key] = (reading, fc, fx, fz)
    return hit


def reading_body(rev: Body, res: list[Node], at: int) -> Body:
    """``rev`` reading each residual of ``res`` from a new input (inserted at position ``at``, in order)
    instead of computing it: what only fed the residuals becomes dead code in the body."""
    stand_ins = [variable(f"residual{k}", r.shape, r.dtype) for k, r in enumerate(res)]
    outputs = replace(list(rev.outputs), dict(zip(res, stand_ins)))
    return Body([*rev.inputs[:at], *stand_ins, *rev.inputs[at:]], outputs)


def _scan_cotangents(ns, g, out, inputs, params) -> list:
    body, nc, nx = params["body"], params["ncarry"], params["nx"]
    nout = len(body.outputs)
    ys = given(g, float_positions(body.outputs[nc:], nc))
    saved = tuple(k - nout for k in given(g, range(nout, nout + nc))) if params.get("save") else ()
    res = getattr(out, "residuals", ())  # kept by the forward (a Kept value: numbers only)
    rev, fc, fx, fz = (_scan_reverse_reading if res else _scan_reverse)(body, nc, nx, ys, saved)
    result: list = [NO_GRAD] * len(inputs)
    if not (fc or fx or fz):
        return result
    stacked_node = saving_copy(ns, out, inputs, params, "scan")
    stacked = [item(ns, stacked_node, nout + k) for k in range(nc)]
    accs = [ns.zeros_like(inputs[j]) for j in fz]
    args = (*[output_cotangent(ns, g, out, k) for k in fc], *accs, *stacked, *inputs[nc:nc + nx],
            *[g[k] for k in ys], *[g[nout + k] for k in saved], *res, *inputs[nc + nx:])
    back = ns.apply(OPS["scan"], args, {"body": rev, "ncarry": len(fc) + len(fz),
                                        "nx": nc + nx + len(ys) + len(saved) + len(res),
                                        "length": params.get("length"),
                                        "reverse": not params.get("reverse", False), "save": False})
    for m, j in enumerate(fc + fz):
        result[j] = item(ns, back, m)
    for m, j in enumerate(fx):
        result[j] = item(ns, back, len(fc) + len(fz) + m)
    return result


# ------------------------------------------------------------------ JVP and batching

def _scan_jvp(ns, tangents, out, *inputs, body, ncarry, nx, length=None, reverse=False, save=False,
              primal=None):
    nc, nin = ncarry, len(inputs)
    tx, tz = seeded(tangents, inputs, nc, nc + nx), seeded(tangents, inputs, nc + nx, nin)
    tc = carry_fixed_point(body, nc, set(seeded(tangents, inputs, 0, nc)), tx + tz)
    tvars, touts = body_jvp(body, tc + tx + tz)
    ins, outs, nout = body.inputs, body.outputs, len(body.outputs)
    ty = [j for j in range(nc, nout) if touts[j] is not ZERO]
    vc, vx, vz = tvars[:len(tc)], tvars[len(tc):len(tc) + len(tx)], tvars[len(tc) + len(tx):]
    jbody = Body([*ins[:nc], *vc, *ins[nc:nc + nx], *vx, *ins[nc + nx:], *vz],
                 [*outs[:nc], *[filled(touts[k], outs[k]) for k in tc], *outs[nc:], *[touts[j] for j in ty]])
    args = (*inputs[:nc], *tangent_inputs(ns, tangents, inputs, tc), *inputs[nc:nc + nx],
            *[tangents[k] for k in tx], *inputs[nc + nx:], *[tangents[k] for k in tz])
    params = {"body": jbody, "ncarry": nc + len(tc), "nx": nx + len(tx), "length": length, "reverse": reverse,
              "save": save}
    ltc, ltx, nj = len(tc), len(tx), len(jbody.outputs)
    params["primal"] = (
        (("body", body), ("ncarry", nc), ("nx", nx), ("length", length), ("reverse", reverse)),
        (*range(nc), *range(nc + ltc, nc + ltc + nx), *range(nc + ltc + nx + ltx, nin + ltc + ltx)),
        (*[(k, k) for k in range(nc)], *[(j, j + ltc) for j in range(nc, nout)],
         *([(nout + k, nj + k) for k in range(nc)] if save else [])))
    loop = ns.apply(OPS["scan"], args, params)
    parts: list = [ZERO] * (nout + (nc if save else 0))
    for m, k in enumerate(tc):
        parts[k] = item(ns, loop, nc + m)
        if save:
            parts[nout + k] = item(ns, loop, len(jbody.outputs) + nc + m)
    for m, j in enumerate(ty):
        parts[j] = item(ns, loop, nout + len(tc) + m)
    return TupleTangent(parts)


def _scan_batch(op, ns, inputs, batched, body, ncarry, nx, length=None, reverse=False, save=False,
                primal=None):
    nc, size = ncarry, batch_size_of(inputs, batched)
    flags = promoted(body, list(batched), nc, size)
    formals, outs = body_batched(body, flags, size)
    carries = [tile(ns, x, size) if f and not b else x for x, f, b in zip(inputs[:nc], flags, batched)]
    xs = [swap01(ns, x) if b else x for x, b in zip(inputs[nc:nc + nx], batched[nc:nc + nx])]
    jbody = Body(formals, carried(outs, flags, nc, size))
    loop = ns.apply(op, (*carries, *xs, *inputs[nc + nx:]),
                    {"body": jbody, "ncarry": nc, "nx": nx, "length": length, "reverse": reverse, "save": save})
    nout = len(body.outputs)
    parts = [(item(ns, loop, k), flags[k]) for k in range(nc)]
    for j in range(nc, nout):
        y = item(ns, loop, j)
        parts.append((swap01(ns, y), True) if outs[j][1] else (y, False))
    if save:
        for k in range(nc):
            s = item(ns, loop, nout + k)
            parts.append((swap01(ns, s), True) if flags[k] else (s, False))
    return BatchedTuple(parts), True

# ------------------------------------------------------------------ what symsym's loop rewrites ask

@dataclass(frozen=True)
class ResidualRules:
    """How a reverse loop comes to read the values its forward loop computes (a loop op's ``residuals``
    trait, which :mod:`symsym.rewrite.residuals` follows without knowing the op).

    ``reverses(forward, reverse)``: whether ``reverse`` is the loop the VJP rule made from ``forward``.
    ``nodes(forward, reverse)``: the residuals, nodes of the forward body that the reverse body reads.
    ``stacking(params, res)``: the forward's params with the residuals stacked as extra outputs, where
    each old output now is, and where the first residual's stack is. ``reading(params, ins, res,
    stacks)``: the reverse loop's inputs and params with the stacks as extra inputs, its body reading
    their slice instead of computing the residuals.
    """

    reverses: Callable
    nodes: Callable
    stacking: Callable
    reading: Callable


def _reverses(forward: Node, reverse: Node) -> bool:
    body = reverse.params["body"]
    return any(isinstance(v, tuple) and v and v[0] is body for v in forward.params["body"].cache.values())


def _residuals(forward: Node, reverse: Node) -> list[Node]:
    p = forward.params
    return residual_nodes(p["body"], reverse.params["body"], p["ncarry"], p["nx"])


def _stacking(params: dict, res: list[Node]) -> tuple[dict, dict, int]:
    body, nc = params["body"], params["ncarry"]
    nout = len(body.outputs)
    index = {k: k for k in range(nout)}
    index.update({nout + k: nout + len(res) + k for k in range(nc)})  # the stacked carry-ins move behind
    return {**params, "body": Body(body.inputs, [*body.outputs, *res])}, index, nout


def _reading(params: dict, ins: tuple, res: list[Node], stacks: list[Node]) -> tuple[tuple, dict]:
    at = params["ncarry"] + params["nx"]
    return ((*ins[:at], *stacks, *ins[at:]),
            {**params, "body": reading_body(params["body"], res, at), "nx": params["nx"] + len(res)})


RESIDUALS = ResidualRules(_reverses, _residuals, _stacking, _reading)


def _prune_scan(node: Node, inputs: tuple, used: set):
    """(new node, old output index -> new) when some of ``node`` is dead (only ``used`` is read), else None."""
    p = node.params
    body, nc, nx = p["body"], p["ncarry"], p["nx"]
    nout = len(body.outputs)
    outs, formals = body.outputs, body.inputs
    live = {k for k in range(nc) if k in used or (p.get("save") and nout + k in used)}
    ys = [j for j in range(nc, nout) if j in used]
    carries = live_carries(lambda c: [outs[k] for k in sorted(c)] + [outs[j] for j in ys], formals, nc, live)
    roots = [outs[k] for k in carries] + [outs[j] for j in ys]
    found = reached(roots, formals)
    xs = [k for k in range(nc, nc + nx) if id(formals[k]) in found]
    length = p.get("length")
    if not xs and length is None:
        length = next((x.shape[0] for x in inputs[nc:nc + nx] if x.shape[0] is not None), None)
        if length is None:
            xs = [nc]  # the number of steps is only known from a sequence at run time
    consts = [k for k in range(nc + nx, len(formals)) if id(formals[k]) in found]
    save = bool(p.get("save")) and any(nout + k in used for k in carries)
    keep_in = carries + xs + consts
    if len(keep_in) == len(formals) and len(roots) == nout and save == bool(p.get("save")):
        return None
    new_body = Body([formals[k] for k in keep_in], roots)
    params = {**p, "body": new_body, "ncarry": len(carries), "nx": len(xs), "length": length, "save": save}
    new = apply(node.op, tuple(inputs[k] for k in keep_in), params, site=node.site)
    index = {k: m for m, k in enumerate(carries)}
    index.update({j: len(carries) + m for m, j in enumerate(ys)})
    if save:
        index.update({nout + k: len(roots) + m for m, k in enumerate(carries)})
    return new, index


SCAN = defop("scan", _scan_infer, _scan_impl, vjp_all=pullback_of(_scan_cotangents), jvp=_scan_jvp, batch=_scan_batch,
             outputs=_scan_types, saving=scan_keeping_residuals, kind=Kind.CONTROL, nin=None,
             invariant_from=lambda params: params["ncarry"] + params["nx"], prune=_prune_scan, residuals=RESIDUALS,
             params=("body", "ncarry", "nx", "length", "reverse", "save", "primal"),
             doc="A loop over the leading axis of xs, carrying state: (*final carries, *stacked ys). Its VJP is a "
                 "reverse scan over the VJP of its body.")
