"""Vectorising a graph: one batched graph instead of a loop of copies.

``vectorize(outputs, {v: V}, batch)`` rewrites ``outputs`` so that a variable
``v`` of shape ``s`` is replaced by ``V`` of shape ``(batch, *s)``: every node
that depends on ``v`` gains a leading batch axis, everything else is shared
unchanged. This is PyTensor's ``vectorize_graph`` (and JAX's ``vmap`` as a
graph transform): the Jacobian and the Hessian run the reverse pass once, on a
batch of basis cotangents, instead of once per row.

Each op's batching rule says how to apply it with the batch axis in front,
usually by shifting an ``axis`` param or by inserting size-1 axes so numpy's
right-aligned broadcasting keeps the batch axis apart. An op without a rule
(or a case a rule does not cover) falls back to applying the op to each batch
element and stacking: always right, only slower.
"""

from __future__ import annotations

import string

from common.api import apply
from common.api import symbolic as S
from common.errors import GradError
from common.graph import Node, toposort

__all__ = ["vectorize"]

ELEMENTWISE = frozenset(
    "neg exp log log1p expm1 sin cos tan tanh sigmoid relu softplus sqrt square abs sign cast "
    "stop_gradient add sub mul div pow maximum minimum lt le gt ge eq ne where".split())
REDUCTIONS = frozenset("sum mean max min prod logsumexp".split())
SHAPE_ONLY = frozenset("zeros_like ones_like full_like count".split())
_FULL = ("slice", None, None, None)


class _Fallback(Exception):
    """A batching rule that cannot handle this case."""


def _lift(x: Node, ndim: int) -> Node:
    """Batched ``x`` with size-1 axes after the batch axis, up to ``1 + ndim`` dims."""
    k = ndim - (x.ndim - 1)
    return S.expand_dims(x, tuple(range(1, 1 + k))) if k > 0 else x


def _tile(x: Node, batch: int) -> Node:
    """An unbatched ``x`` repeated along a new batch axis (a broadcast view)."""
    if None in x.shape:
        raise _Fallback
    return S.broadcast_to(S.expand_dims(x, 0), (batch, *x.shape))


def _shift(axis) -> tuple:
    return tuple(a + 1 for a in axis)


def _rule(n: Node, ins: tuple, flags: tuple, batch: int) -> tuple[Node, bool]:
    """``n`` applied to the (partly batched) inputs ``ins``; returns (node, batched)."""
    name = n.op.name
    p = n.params
    if name in SHAPE_ONLY:  # the value depends on a shape only: rebuild it without the batched input
        if None in n.shape or (name == "count" and ins[0].ndim - 1 != n.inputs[0].ndim):
            raise _Fallback
        if name == "count":
            return apply(n.op, (_blank(n.inputs[0]),), p), False
        value = {"zeros_like": 0.0, "ones_like": 1.0}.get(name, p.get("value"))
        return S.full(n.shape, value, n.dtype), False
    if name in ELEMENTWISE:
        return apply(n.op, tuple(_lift(x, n.ndim) if f else x for x, f in zip(ins, flags)), p), True
    x = ins[0]
    if name in REDUCTIONS:
        return apply(n.op, (x,), {**p, "axis": _shift(p["axis"])}), True
    if name in ("softmax", "log_softmax"):
        return apply(n.op, (x,), {"axis": p["axis"] + 1}), True
    if name == "softmax_cross_entropy":
        z, t = (_lift(v, ins[0].ndim - flags[0]) if f else v for v, f in zip(ins, flags))
        if not flags[0]:
            z = _tile(z, batch)
        return apply(n.op, (z, t), {"axis": p["axis"] + 1}), True
    if name in ("expand_dims", "squeeze"):
        return apply(n.op, (x,), {"axis": _shift(p["axis"])}), True
    if name == "transpose":
        return S.transpose(x, (0, *_shift(p["axes"]))), True
    if name in ("tril", "triu"):
        return apply(n.op, (x,), p), True
    if name in ("sum_like", "broadcast_like", "reshape_like"):
        if None in n.shape:
            raise _Fallback
        static = {"sum_like": S.sum_to, "broadcast_like": S.broadcast_to, "reshape_like": S.reshape}[name]
        if not flags[0]:  # only the reference is batched, and it gives only a shape
            return static(x, n.shape), False
        name = static.__name__
        p = {"shape": n.shape}
    if name == "reshape":
        if None in n.shape:
            raise _Fallback
        return S.reshape(x, (batch, *n.shape)), True
    if name == "broadcast_to":
        return S.broadcast_to(_lift(x, len(p["shape"])), (batch, *p["shape"])), True
    if name == "sum_to":
        shape = p["shape"]
        lead = (x.ndim - 1) - len(shape)
        out = S.sum_to(x, (batch, *(1,) * lead, *shape))
        return (S.reshape(out, (batch, *shape)) if lead else out), True
    if name == "matmul":
        return _matmul(n, ins, flags), True
    if name == "einsum":
        lhs, rhs = p["spec"].split("->")
        z = next(c for c in string.ascii_letters if c not in p["spec"])
        terms = [z + t if f else t for t, f in zip(lhs.split(","), flags)]
        return S.einsum(",".join(terms) + "->" + z + rhs, *ins), True
    if name == "getitem":
        if any(flags[1:]):
            raise _Fallback
        return _checked(S.getitem(x, *ins[1:], index=(_FULL, *p["index"])), n, batch), True
    if name == "scatter_add":
        if any(flags[2:]) or (flags[1] and None in n.shape):
            raise _Fallback
        if not flags[0]:  # ``like`` gives only a shape
            return S.scatter_add(x, _blank(n.inputs[1]), *ins[2:], index=p["index"]), False
        like = ins[1] if flags[1] else _tile(ins[1], batch)
        return _checked(S.scatter_add(x, like, *ins[2:], index=(_FULL, *p["index"])), n, batch), True
    if name in ("concatenate", "stack"):
        xs = [v if f else _tile(v, batch) for v, f in zip(ins, flags)]
        return apply(n.op, tuple(xs), {"axis": p["axis"] + 1}), True
    if name == "concat_part":
        if any(r.shape[p["axis"]] is None for r in n.inputs[1:]):
            raise _Fallback
        start = sum(r.shape[p["axis"]] for r in n.inputs[1:1 + p["part"]])
        stop = start + n.inputs[1 + p["part"]].shape[p["axis"]]
        lead = (_FULL,) * (p["axis"] + flags[0])
        return S.getitem(x, index=lead + (("slice", start, stop, None),)), flags[0]
    raise _Fallback


def _blank(like: Node) -> Node:
    """A node of ``like``'s static shape and dtype that depends on nothing (for shape-only uses)."""
    if None in like.shape:
        raise _Fallback
    return S.full(like.shape, 0.0, like.dtype)


def _checked(out: Node, n: Node, batch: int) -> Node:
    """``out`` if it has the batched shape of ``n`` (numpy may move advanced-index axes)."""
    if out.shape != (batch, *n.shape):
        raise _Fallback
    return out


def _matmul(n: Node, ins: tuple, flags: tuple) -> Node:
    """Batched matmul: promote 1-d operands, align batch dims, multiply, drop what was added."""
    (a, b), (fa, fb) = ins, flags
    a_vec = a.ndim - fa == 1
    b_vec = b.ndim - fb == 1
    if a_vec:
        a = S.expand_dims(a, a.ndim - 1)
    if b_vec:
        b = S.expand_dims(b, b.ndim)
    nd = max(a.ndim - fa, b.ndim - fb)
    a = _lift(a, nd) if fa else a
    b = _lift(b, nd) if fb else b
    out = S.matmul(a, b)
    if b_vec:
        out = S.squeeze(out, out.ndim - 1)
    if a_vec:
        out = S.squeeze(out, out.ndim - 1 - (not b_vec))
    return out


def _per_element(n: Node, ins: tuple, flags: tuple, batch: int) -> Node:
    """The fallback: ``n``'s op on each batch element, stacked."""
    if batch is None:
        raise GradError(f"vectorize: op {n.op.name!r} has no batching rule and the batch size is unknown")
    rows = []
    for k in range(batch):
        args = tuple(S.getitem(x, index=(("int", k),)) if f else x for x, f in zip(ins, flags))
        rows.append(apply(n.op, args, n.params))
    return S.stack(rows, axis=0)


def vectorize(outputs, mapping: dict[Node, Node], batch: int) -> list[Node]:
    """``outputs`` with each key of ``mapping`` replaced by a batch of values.

    Every value in ``mapping`` has shape ``(batch, *key.shape)``. Returns one
    node per output, each of shape ``(batch, *output.shape)`` (an output that
    does not depend on the keys is broadcast along the batch axis).
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    new: dict[int, tuple[Node, bool]] = {id(k): (v, True) for k, v in mapping.items()}
    for k, v in mapping.items():
        if v.shape[1:] != k.shape or v.shape[0] != batch:
            raise GradError(f"vectorize: batch for {k!r} has shape {v.shape}, expected "
                            f"({batch}, *{k.shape})")
    for n in toposort(outs):
        if id(n) in new:
            continue
        if n.op is None:
            new[id(n)] = (n, False)
            continue
        pairs = [new[id(i)] for i in n.inputs]
        flags = tuple(f for _, f in pairs)
        if not any(flags):
            same = all(x is i for (x, _), i in zip(pairs, n.inputs))
            new[id(n)] = (n if same else apply(n.op, tuple(x for x, _ in pairs), n.params), False)
            continue
        ins = tuple(x for x, _ in pairs)
        try:
            new[id(n)] = _rule(n, ins, flags, batch)
        except _Fallback:
            new[id(n)] = (_per_element(n, ins, flags, batch), True)
    result = []
    for o in outs:
        node, batched = new[id(o)]
        result.append(node if batched else _tile(node, batch))
    return result

