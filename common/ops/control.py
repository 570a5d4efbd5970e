"""Loops and branches: ``scan``, ``while_loop``, ``cond``, and ``item``, which reads one of their outputs.

Each op runs *bodies*, closed subgraphs held in its params (see
:mod:`common.body` for what a body is, how a Python function becomes one and
how several outputs are represented). The builders users call are in
:mod:`common.api` (``scan(fn, init, xs)``, ...); these entries are what the
graph holds.

Signatures (inputs; params) and the tuple each op's value is:

* ``scan``: inputs ``(*init carries, *xs, *consts)``; params ``body``
  (inputs: carries, one slice of each x, consts; outputs: new carries, ys),
  ``ncarry``, ``nx``, ``length`` (needed when ``nx == 0``), ``reverse``,
  ``save``. Value: ``(*final carries, *stacked ys[, *stacked carry-ins])``,
  the last group when ``save``: what the reverse loop reads.
* ``while_loop``: inputs ``(*init carries, *consts)``; params ``cond_body``
  (carries, consts -> one bool scalar), ``body`` (carries, consts -> carries),
  ``ncarry``, ``max_iter`` (None: unbounded), ``save``. Value: ``(*final
  carries[, *stacked carry-ins])``; the stack's length is the trip count.
* ``cond``: inputs ``(pred, *operands)``; params ``true_body``, ``false_body``
  (same inputs, same output types). Value: the taken body's outputs. Lazy:
  only that body runs.
* ``item``: input a tuple-valued node; param ``index``. Value: that output.

**How loops keep the one rule.** Every op inside a body keeps its one shared
VJP rule; what is written here, once, against ``ns``, is the VJP of the loop
op itself, and it is again a loop op:

* scan's VJP is a ``scan`` running the other way, whose body is the VJP of the
  forward body (:func:`body_vjp`: the body's own ops' rules, swept by
  :func:`common.backward.sweep` in the symbolic namespace), carrying the
  carries' cotangents and the sums of the consts' cotangents, reading the
  stacked carry-ins, the xs and the ys' cotangents per step (Theano's scan
  gradient). Its graph does not grow with the number of steps, and its VJP is
  again a scan (higher order works);
* while_loop's VJP is a reverse ``scan`` over the stacked carry-ins of the
  iterations that ran (TensorFlow's way; JAX refuses reverse mode here);
* cond's VJP is a ``cond`` over the two branches' VJP bodies: lazy too, so the
  gradient of ``cond(x > 0, sqrt, square)`` at -1 is -2, never NaN (the
  ``where`` trap).

The stacked carry-ins come from the node itself when it was made with
``save=True``, else from a copy of the node with ``save=True`` (a rewrite can
merge the two, since the copy computes the same carries). The derived bodies
are built once per body (cached in ``Body.cache``), so the numeric namespace
(symnum's program) builds them on the first sweep only, then runs them per
step like any body. In the numeric namespace each op is its impl: a plain
Python loop over :meth:`Body.run`.

A reverse body, built from the forward body's nodes, would compute the forward
values it reads (the ``tanh``, the gates) once more per step. symsym's
residuals rewrite makes the forward scan stack them instead; symnum's program
runs a differentiated scan as :func:`scan_keeping_residuals`, whose value
(a :class:`Kept` tuple) carries the same stacks, and the VJP below hands them
to a reverse body that reads them (:func:`residuals_of` finds them, once per
body): the forward body's ops run once per step in all.

One reverse loop answers every input, so a loop op answers the pullback
protocol (:meth:`common.ops.Op.pullback`: all cotangents in one call) directly.

The loop ops' JVP and batching rules are registered on these entries from
their own module (:mod:`common.ops.control_rules`, imported with the
package); until it has run, each place holds a rule that raises
:class:`NotYet` (never a silent wrong answer).
"""

from __future__ import annotations

import numpy as np

from ..backward import TupleCotangent, sweep
from ..body import TUPLE, Body, is_tuple
from ..errors import DTypeError, ShapeError, TwogradError
from ..graph import Node, replace, toposort, variable
from .core import NO_GRAD, OPS, ZERO, Kind, defop, shape_str
from .params import bool_param, int_param

CONTROL = Kind.CONTROL


# ------------------------------------------------------------------ type rules

def _type(x) -> str:
    return f"{shape_str(x.shape)}:{x.dtype}"


def _agree(a, b) -> bool:
    """Whether ``a`` and ``b`` can have the same type: dtype equal, shapes equal where both are known."""
    return a.dtype == b.dtype and len(a.shape) == len(b.shape) and all(
        i is None or j is None or i == j for i, j in zip(a.shape, b.shape))


def body_param(v, name: str) -> Body:
    """A body param: a :class:`common.body.Body`, nothing else."""
    if not isinstance(v, Body):
        raise ShapeError(f"param {name!r} must be a body (a subgraph), got {type(v).__name__}")
    for o in v.outputs:
        if is_tuple(o):
            raise ShapeError(f"param {name!r}: a body's outputs must be arrays, not a loop's tuple {o!r}")
    return v


def _check_inputs(body: Body, name: str, given, what: str) -> None:
    if len(body.inputs) != len(given):
        raise ShapeError(f"param {name!r} takes {len(body.inputs)} inputs, but the op has {len(given)} {what}")
    for k, (v, x) in enumerate(zip(body.inputs, given)):
        if not _agree(v, x):
            raise _mismatch(f"{name} input {k} is declared {_type(v)}, but gets {_type(x)}", v, x)


def _mismatch(message: str, a, b) -> TwogradError:
    return DTypeError(message) if a.dtype != b.dtype else ShapeError(message)


def _check_carries(body: Body, name: str, carries) -> None:
    for k, c in enumerate(carries):
        out = body.outputs[k]
        if not _agree(out, c):
            raise _mismatch(f"the body's carry {k} goes in as {_type(c)} but comes out as {_type(out)} "
                            f"(carry out must equal carry in, in shape and dtype)", out, c)


def _counts(inputs, ncarry, name: str = "ncarry", lo: int = 0) -> int:
    return int_param(ncarry, name, lo, len(inputs))


def _scan_infer(*inputs, body, ncarry, nx, length=None, reverse=False, save=False):
    body = body_param(body, "body")
    nc = _counts(inputs, ncarry)
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
            raise ShapeError(f"xs {k} is a scalar {_type(x)}: a scan reads xs one leading-axis slice per step")
    slices = [_Slice(x.shape[1:], x.dtype) for x in xs]
    _check_inputs(body, "body", [*inputs[:nc], *slices, *inputs[nc + nx:]], "inputs (carries, x slices, consts)")
    if len(body.outputs) < nc:
        raise ShapeError(f"the body returns {len(body.outputs)} outputs, fewer than its {nc} carries")
    _check_carries(body, "body", inputs[:nc])
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


def _while_infer(*inputs, cond_body, body, ncarry, max_iter=None, save=False):
    cond_body = body_param(cond_body, "cond_body")
    body = body_param(body, "body")
    nc = _counts(inputs, ncarry, lo=1)
    bool_param(save, "save")
    if max_iter is not None:
        int_param(max_iter, "max_iter", 0)
    _check_inputs(cond_body, "cond_body", inputs, "inputs (carries, consts)")
    _check_inputs(body, "body", inputs, "inputs (carries, consts)")
    if len(cond_body.outputs) != 1 or cond_body.outputs[0].shape != () or cond_body.outputs[0].dtype != np.bool_:
        raise ShapeError(f"the condition must return one bool scalar, got ({_types(cond_body.outputs)})")
    if len(body.outputs) != nc:
        raise ShapeError(f"the body returns {len(body.outputs)} outputs for {nc} carries")
    _check_carries(body, "body", inputs[:nc])
    return (), TUPLE


def _types(nodes) -> str:
    return ", ".join(_type(n) for n in nodes)


def _while_types(node) -> list[tuple]:
    nc = node.params["ncarry"]
    carries = node.inputs[:nc]
    types = [(c.shape, c.dtype) for c in carries]
    if node.params.get("save"):
        types += [((None, *c.shape), c.dtype) for c in carries]
    return types


def _cond_infer(pred, *operands, true_body, false_body):
    t = body_param(true_body, "true_body")
    f = body_param(false_body, "false_body")
    if pred.shape != () or pred.dtype != np.bool_:
        raise DTypeError(f"the predicate must be a bool scalar, got {_type(pred)}")
    _check_inputs(t, "true_body", operands, "operands")
    _check_inputs(f, "false_body", operands, "operands")
    if len(t.outputs) != len(f.outputs):
        raise ShapeError(f"the branches return {len(t.outputs)} and {len(f.outputs)} outputs")
    for k, (a, b) in enumerate(zip(t.outputs, f.outputs)):
        if not _agree(a, b):
            raise _mismatch(f"output {k} of the true branch is {_type(a)}, of the false branch {_type(b)}", a, b)
    return (), TUPLE


def _cond_types(node) -> list[tuple]:
    t, f = node.params["true_body"].outputs, node.params["false_body"].outputs
    return [(tuple(i if i is not None else j for i, j in zip(a.shape, b.shape)), a.dtype) for a, b in zip(t, f)]


OUTPUT_TYPES = {"scan": _scan_types, "while_loop": _while_types, "cond": _cond_types}
"""Per tuple-valued op: ``node -> [(shape, dtype), ...]``, the types of its outputs (read by ``item``)."""


def output_types(node: Node) -> list[tuple]:
    """The (shape, dtype) of each output of a loop or branch node."""
    return OUTPUT_TYPES[node.op.name](node)


def _item_infer(t, index):
    if not is_tuple(t) or getattr(t, "op", None) is None or t.op.name not in OUTPUT_TYPES:
        raise ShapeError(f"item reads an output of a loop or branch node, got {_type(t)}")
    types = output_types(t)
    index = int_param(index, "index", 0, len(types) - 1)
    return types[index]


# ------------------------------------------------------------------ impls

def _stack(parts: list, like: Node, n: int) -> np.ndarray:
    if n:
        return np.stack(parts)
    return np.empty((0, *[d or 0 for d in like.shape]), like.dtype)


def _scan_impl(*arrays, body, ncarry, nx, length=None, reverse=False, save=False):
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
    stacked = [_stack(ys[j], body.outputs[ncarry + j], n) for j in range(ny)]
    kept = [_stack(saved[k], body.inputs[k], n) for k in range(len(saved))]
    return (*carry, *stacked, *kept)


class Kept(tuple):
    """A saving scan's value (a tuple, as :func:`_scan_impl` returns) that also holds its stacked residuals."""

    residuals: tuple = ()


def scan_keeping_residuals(*arrays, body, ncarry, nx, length=None, reverse=False, save=True):
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


def _while_impl(*arrays, cond_body, body, ncarry, max_iter=None, save=False):
    carry, consts = tuple(arrays[:ncarry]), list(arrays[ncarry:])
    saved: list = []
    steps = 0
    while (max_iter is None or steps < max_iter) and bool(cond_body.run([*carry, *consts])[0]):
        if save:
            saved.append(carry)
        carry = body.run([*carry, *consts])
        steps += 1
    kept = [_stack([c[k] for c in saved], body.inputs[k], len(saved)) for k in range(ncarry)] if save else []
    return (*carry, *kept)


def _cond_impl(pred, *operands, true_body, false_body):
    return (true_body if bool(pred) else false_body).run(operands)


def _item_impl(t, index):
    return t[index]


# ------------------------------------------------------------------ VJPs

def body_vjp(body: Body, outs: list[int], ins: list[int]) -> tuple[list[Node], list[Node]]:
    """The VJP of ``body`` as graph: a cotangent variable for each output in ``outs``, and the cotangent
    node of each input in ``ins`` (zeros for one no path reaches), by the body's ops' own rules."""
    from ..api import symbolic

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


def _floats(nodes, offset: int = 0) -> list[int]:
    return [offset + k for k, n in enumerate(nodes) if n.dtype.kind == "f"]


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
    fc, fx, fz = _floats(ins[:nc]), _floats(ins[nc:nc + nx], nc), _floats(ins[nc + nx:], nc + nx)
    gs, cts = body_vjp(body, fc + list(ys), fc + fx + fz)
    accs = _like(ins, fz, "acc")
    saved_cts = _like(ins, saved, "gsaved")
    ct_c, ct_x, ct_z = cts[:len(fc)], cts[len(fc):len(fc) + len(fx)], cts[len(fc) + len(fx):]
    rev = Body([*gs[:len(fc)], *accs, *ins[:nc + nx], *gs[len(fc):], *saved_cts, *ins[nc + nx:]],
               [*_add_at(ct_c, fc, saved_cts, saved), *_sums(accs, ct_z), *ct_x])
    hit = body.cache[key] = (rev, fc, fx, fz)
    return hit


def residual_nodes(fb: Body, rb: Body, nc: int, nx: int) -> list[Node]:
    """The forward-body nodes that nodes of the reverse body ``rb`` alone read, which vary per step.

    The two bodies share node identities (``rb`` is built from ``fb``'s nodes
    by the ops' VJP rules), which is how they are found. A residual depends on
    a carry or a sequence and has a static shape; views, shape-only ops and
    loops are left to be recomputed.
    """
    from ..body import inner_nodes
    from .core import Kind

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
        rev = _scan_reverse(body, nc, nx, tuple(_floats(body.outputs[nc:], nc)), ())[0]
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


def _add_at(cts: list[Node], positions: list[int], extra: list[Node], at: tuple) -> list[Node]:
    """``cts`` (one per position) with ``extra[m]`` added to the one at position ``at[m]``."""
    from ..api import symbolic

    out = list(cts)
    for e, p in zip(extra, at):
        k = positions.index(p)
        out[k] = symbolic.add(out[k], e)
    return out


def _given(g, positions) -> tuple:
    """The positions among ``positions`` whose output got a cotangent in ``g``."""
    if not isinstance(g, TupleCotangent):
        return ()
    return tuple(k for k in positions if g[k] is not ZERO)


def _like(nodes, positions: list[int], prefix: str) -> list[Node]:
    """Fresh variables of the types of ``nodes`` at ``positions``."""
    return [variable(f"{prefix}_{nodes[j].name or j}", nodes[j].shape, nodes[j].dtype) for j in positions]


def _sums(a: list[Node], b: list[Node]) -> list[Node]:
    """``a[k] + b[k]``, or ``a`` itself when ``b`` is empty."""
    from ..api import symbolic

    return [symbolic.add(x, y) for x, y in zip(a, b)] if b else list(a)


def _ct(ns, g, out, k: int):
    """The cotangent of output ``k`` of the tuple node ``out``: given, or zeros."""
    part = g[k] if isinstance(g, TupleCotangent) else ZERO
    return ns.zeros_like(item(ns, out, k)) if part is ZERO else part


def item(ns, t, k: int):
    """Output ``k`` of the tuple ``t`` in namespace ``ns``."""
    return ns.apply(OPS["item"], (t,), {"index": k})


def _saved(ns, out, inputs, params, op: str):
    """The node (or value) holding the stacked carry-ins: ``out`` itself, or a saving copy of it."""
    return out if params.get("save") else ns.apply(OPS[op], tuple(inputs), {**params, "save": True})


def _scan_cotangents(ns, g, out, inputs, params) -> list:
    body, nc, nx = params["body"], params["ncarry"], params["nx"]
    nout = len(body.outputs)
    ys = _given(g, _floats(body.outputs[nc:], nc))
    saved = tuple(k - nout for k in _given(g, range(nout, nout + nc))) if params.get("save") else ()
    res = getattr(out, "residuals", ())  # kept by the forward (a Kept value: numbers only)
    rev, fc, fx, fz = (_scan_reverse_reading if res else _scan_reverse)(body, nc, nx, ys, saved)
    result: list = [NO_GRAD] * len(inputs)
    if not (fc or fx or fz):
        return result
    stacked_node = _saved(ns, out, inputs, params, "scan")
    stacked = [item(ns, stacked_node, nout + k) for k in range(nc)]
    accs = [ns.zeros_like(inputs[j]) for j in fz]
    args = (*[_ct(ns, g, out, k) for k in fc], *accs, *stacked, *inputs[nc:nc + nx],
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


def _while_reverse(body: Body, nc: int, saved: tuple) -> tuple:
    """The body of while_loop's reverse scan (as :func:`_scan_reverse`, with no xs and no ys)."""
    key = ("while", nc, saved)
    hit = body.cache.get(key)
    if hit is not None:
        return hit
    ins = body.inputs
    fc, fz = _floats(ins[:nc]), _floats(ins[nc:], nc)
    gs, cts = body_vjp(body, fc, fc + fz)
    accs = _like(ins, fz, "acc")
    saved_cts = _like(ins, saved, "gsaved")
    rev = Body([*gs, *accs, *ins[:nc], *saved_cts, *ins[nc:]],
               [*_add_at(cts[:len(fc)], fc, saved_cts, saved), *_sums(accs, cts[len(fc):])])
    hit = body.cache[key] = (rev, fc, fz)
    return hit


def _while_cotangents(ns, g, out, inputs, params) -> list:
    body, nc = params["body"], params["ncarry"]
    saved = tuple(k - nc for k in _given(g, range(nc, 2 * nc))) if params.get("save") else ()
    rev, fc, fz = _while_reverse(body, nc, saved)
    result: list = [NO_GRAD] * len(inputs)
    if not (fc or fz):
        return result
    stacked_node = _saved(ns, out, inputs, params, "while_loop")
    stacked = [item(ns, stacked_node, nc + k) for k in range(nc)]
    accs = [ns.zeros_like(inputs[j]) for j in fz]
    args = (*[_ct(ns, g, out, k) for k in fc], *accs, *stacked, *[g[nc + k] for k in saved], *inputs[nc:])
    back = ns.apply(OPS["scan"], args, {"body": rev, "ncarry": len(fc) + len(fz), "nx": nc + len(saved),
                                        "length": None, "reverse": True, "save": False})
    for m, j in enumerate(fc + fz):
        result[j] = item(ns, back, m)
    return result


def _cond_reverse(t: Body, f: Body) -> tuple:
    key = ("cond", id(f))
    hit = t.cache.get(key)
    if hit is not None and hit[-1] is f:
        return hit
    fo, fr = _floats(t.inputs), _floats(t.outputs)
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
    args = (inputs[0], *inputs[1:], *[_ct(ns, g, out, k) for k in fr])
    back = ns.apply(OPS["cond"], args, {"true_body": rt, "false_body": rf})
    for m, j in enumerate(fo):
        result[1 + j] = item(ns, back, m)
    return result


def _pullback(fn):
    """A loop op's ``vjp_all`` from ``fn(ns, g, out, inputs, params) -> one cotangent per input``: one
    reverse loop answers every input at once, so the op answers the pullback protocol directly."""
    def vjp_all(ns, g, out, inputs, params, wanted):
        cts = fn(ns, g, out, inputs, params)
        return [cts[i] if i in wanted else NO_GRAD for i in range(len(cts))]
    return vjp_all


def _item_vjp(ns, g, out, t, index):
    return TupleCotangent({index: g})


def _item_jvp(ns, tangents, out, t, index):
    return tangents[0][index]


class NotYet(TwogradError):
    """A rule of a loop op that is not written yet: a placeholder raises this instead of a wrong answer."""


def _not_yet(what: str):
    def rule(*args, **kwargs):
        raise NotYet(f"{what} is not yet implemented for loops and branches (scan, while_loop, cond)")
    return rule


_JVP = _not_yet("forward mode (jvp)")
_BATCH = _not_yet("batching (vmap)")

defop("scan", _scan_infer, _scan_impl, vjp_all=_pullback(_scan_cotangents), jvp=_JVP, batch=_BATCH, kind=CONTROL,
      nin=None, params=("body", "ncarry", "nx", "length", "reverse", "save"),
      doc="A loop over the leading axis of xs, carrying state: (*final carries, *stacked ys). Its VJP is a "
          "reverse scan over the VJP of its body.")
defop("while_loop", _while_infer, _while_impl, vjp_all=_pullback(_while_cotangents), jvp=_JVP, batch=_BATCH,
      kind=CONTROL, nin=None, params=("cond_body", "body", "ncarry", "max_iter", "save"),
      doc="A loop while cond_body holds (at most max_iter times): the final carries. Its VJP is a reverse scan "
          "over the carries each iteration began with.")
defop("cond", _cond_infer, _cond_impl, vjp_all=_pullback(_cond_cotangents), jvp=_JVP, batch=_BATCH, kind=CONTROL,
      nin=None, params=("true_body", "false_body"),
      doc="One of two bodies on the operands, by a bool scalar; only the taken one runs. Its VJP is a cond "
          "over the branches' VJPs.")
defop("item", _item_infer, _item_impl, _item_vjp, jvp=_item_jvp, batch=_not_yet("batching (vmap) of item"),
      kind=CONTROL, params=("index",),
      doc="Output ``index`` of a loop or branch node (whose value is a tuple), with its own shape and dtype.")
