"""Batching rules: each op applied to a batch of values at once (JAX's vmap rules).

A rule says how to run an op when some of its inputs carry an extra leading
*batch axis* (axis 0), so that a loop over the batch becomes one op. Like a VJP
rule it is written once, against a namespace ``ns``, and never told what it
runs on:

* on the symbolic namespace it adds batched nodes: symsym's ``vectorize``
  turns a graph into its batched graph (PyTensor's ``vectorize_graph``), so a
  Jacobian or Hessian is one reverse pass over a batch of basis cotangents;
* on :data:`~common.ops.table.numeric` it computes batched numbers: a batched
  interpreter (autodidax's ``BatchTrace``) runs a recorded backward once for a
  whole batch of cotangents.

A rule lives on its op (``op.batch``, the ``batch=`` of its ``defop``); an op
that names none gets the rule its kind implies (:func:`default_rule`): every
elementwise op batches alike, so a new one needs nothing here. The contract:
``op.batch(op, ns, inputs, batched, **params) -> (output, out_batched)``.
``inputs`` are the op's inputs, each with the batch axis in front where
``batched[i]`` is true (at least one is); ``params`` are the op's normalised
params (rules call :meth:`Namespace.apply` with raw params). ``out_batched``
says whether the output has the batch axis (a value that only depends on a
shape, like ``zeros_like``, need not). A rule that cannot handle a case raises
:class:`NotBatchable`. The caller then falls back to :func:`per_element`: the
op on each batch element, stacked. Always right, only slower; an op may name
:func:`one_at_a_time` as its rule to say that this is all it has.
:func:`apply_batched` does both steps.

Most rules shift an ``axis`` param by one, or insert size-1 axes after the
batch axis so numpy's right-aligned broadcasting keeps the batch apart. This
module imports only the op traits (:mod:`common.ops.traits`) and index specs, so the op table
and the families can name its
rules in their ``defop`` calls.
"""

from __future__ import annotations

import string
from collections.abc import Callable

from ..errors import GradError
from .index import behind, span, take, view
from .traits import Kind

__all__ = ["NotBatchable", "apply_batched", "default_rule", "one_at_a_time", "per_element"]


class NotBatchable(Exception):
    """A batching rule that does not cover this case: fall back to :func:`per_element`."""


def apply_batched(ns, op, inputs: tuple, batched: tuple, params: dict):
    """``op`` on partly batched ``inputs``: its rule, else per element. Returns (output, out_batched)."""
    if not any(batched):
        return ns.apply(op, inputs, params), False
    rule = op.batch
    if rule is not None:
        try:
            return rule(op, ns, inputs, batched, **params)
        except NotBatchable:
            pass
    return per_element(ns, op, inputs, batched, params), True


def per_element(ns, op, inputs: tuple, batched: tuple, params: dict):
    """The fallback: ``op`` on each batch element, stacked along a new axis 0."""
    size = batch_size(inputs, batched)
    if size is None:
        raise GradError(f"batching: op {op.name!r} has no batching rule and the batch size is unknown")
    rows = []
    for k in range(size):
        args = tuple(ns.getitem(x, index=take(k)) if b else x for x, b in zip(inputs, batched))
        rows.append(ns.apply(op, args, params))
    return ns.stack(rows, axis=0)


def batch_size(inputs, batched):
    """The length of the batch axis (None if unknown)."""
    return next(x.shape[0] for x, b in zip(inputs, batched) if b)


def default_rule(op) -> Callable | None:
    """The batching rule an op gets when its ``defop`` names none: the one its kind implies.

    An op without inputs never sees a batch; one whose inputs are all read
    for their shapes only gives the same value for every batch element; any
    elementwise op batches by broadcasting; a reduction shifts its axes. Other
    ops name their rule (None here: ``tests/test_op_traits.py`` says so).
    """
    if op.nin == 0:
        return no_inputs
    if op.nin is not None and op.shape_only.of(op.nin) == tuple(range(op.nin)):
        return from_shapes
    if op.kind is Kind.ELEMENTWISE:
        return elementwise
    if op.kind is Kind.REDUCTION:
        return reduction
    return None


def one_at_a_time(op, ns, inputs, batched, **params):
    """The rule of an op that has no better one: :func:`per_element` (always right, only slower)."""
    return per_element(ns, op, inputs, batched, params), True


# ------------------------------------------------------------------- helpers

def lift_rank(ns, x, ndim: int):
    """Batched ``x`` with size-1 axes after the batch axis, up to ``1 + ndim`` dims."""
    k = ndim - (x.ndim - 1)
    return ns.expand_dims(x, tuple(range(1, 1 + k))) if k > 0 else x


def tile_batch(ns, x, size):
    """An unbatched ``x`` repeated along a new batch axis (a broadcast view)."""
    if size is None or None in x.shape:
        raise NotBatchable
    return ns.broadcast_to(ns.expand_dims(x, 0), (size, *x.shape))


def _shape(x, b) -> tuple:
    """``x``'s shape without the batch axis."""
    return tuple(x.shape[1:]) if b else tuple(x.shape)


def _blank(ns, x, b):
    """Zeros of ``x``'s unbatched static shape and dtype, depending on nothing (for shape-only uses)."""
    shape = _shape(x, b)
    if None in shape:
        raise NotBatchable
    return ns.full(shape, 0.0, x.dtype)


def _shift(axis) -> tuple:
    return tuple(a + 1 for a in axis)


# --------------------------------------------------------------------- rules

def no_inputs(op, ns, inputs, batched, **params):
    """An op without inputs (``full``): nothing of it is batched."""
    return ns.apply(op, inputs, params), False


def elementwise(op, ns, inputs, batched, **params):
    """Batched inputs get size-1 axes after the batch axis, so broadcasting keeps the batch apart."""
    nd = max(x.ndim - b for x, b in zip(inputs, batched))
    args = tuple(lift_rank(ns, x, nd) if b else x for x, b in zip(inputs, batched))
    return ns.apply(op, args, params), True


def filled_like(fill: float | None = None) -> Callable:
    """The rule of a ``*_like`` constant: ``full`` of the unbatched shape, with ``fill`` (or the ``value`` param)."""
    def rule(op, ns, inputs, batched, dtype=None, value=None):
        (x,), (b,) = inputs, batched
        shape = _shape(x, b)
        if None in shape:
            raise NotBatchable
        return ns.full(shape, fill if value is None else value, dtype or x.dtype), False
    return rule


def from_shapes(op, ns, inputs, batched, **params):
    """Every input read only for its shape (``count``): the op on an unbatched stand-in of each batched one."""
    stand_ins = tuple(_blank(ns, x, b) if b else x for x, b in zip(inputs, batched))
    return ns.apply(op, stand_ins, params), False


def reduction(op, ns, inputs, batched, axis, **params):
    return ns.apply(op, inputs, {**params, "axis": _shift(axis)}), True


def along_axis(op, ns, inputs, batched, axis):
    return ns.apply(op, inputs, {"axis": axis + 1}), True


def softmax_cross_entropy(op, ns, inputs, batched, axis):
    (z, t), (bz, bt) = inputs, batched
    nd = z.ndim - bz
    z = lift_rank(ns, z, nd) if bz else tile_batch(ns, z, batch_size(inputs, batched))
    t = lift_rank(ns, t, nd) if bt else t
    return ns.apply(op, (z, t), {"axis": axis + 1}), True


def axes(op, ns, inputs, batched, axis):
    return ns.apply(op, inputs, {"axis": _shift(axis)}), True


def transpose(op, ns, inputs, batched, axes):
    return ns.transpose(inputs[0], (0, *_shift(axes))), True


def triangle(op, ns, inputs, batched, k):
    return ns.apply(op, inputs, {"k": k}), True


def reshape(op, ns, inputs, batched, shape):
    (x,) = inputs
    if -1 in shape and None in x.shape[1:]:
        raise NotBatchable
    return ns.reshape(x, (x.shape[0], *shape)), True


def like(static) -> Callable:
    """The rule of a ``*_like`` op (x, ref): its ``static`` form (a ``shape`` param), with ref's shape put in."""
    def rule(op, ns, inputs, batched):
        x, bx = inputs[0], batched[0]
        shape = _infer(op, inputs, batched, {})
        if None in shape:
            raise NotBatchable
        if not bx:  # only the reference is batched, and it gives only a shape
            return ns.apply(static, (x,), {"shape": shape}), False
        return static.batch(static, ns, (x,), (True,), shape=shape)
    return rule


def broadcast_to(op, ns, inputs, batched, shape):
    (x,) = inputs
    return ns.broadcast_to(lift_rank(ns, x, len(shape)), (x.shape[0], *shape)), True


def sum_to(op, ns, inputs, batched, shape):
    (x,) = inputs
    size = x.shape[0]
    lead = (x.ndim - 1) - len(shape)
    out = ns.sum_to(x, (size, *(1,) * lead, *shape))
    return (ns.reshape(out, (size, *shape)) if lead else out), True


def matmul(op, ns, inputs, batched):
    """Promote 1-d operands, align batch dims, multiply, drop what was added."""
    (a, b), (fa, fb) = inputs, batched
    a_vec = a.ndim - fa == 1
    b_vec = b.ndim - fb == 1
    if a_vec:
        a = ns.expand_dims(a, a.ndim - 1)
    if b_vec:
        b = ns.expand_dims(b, b.ndim)
    nd = max(a.ndim - fa, b.ndim - fb)
    a = lift_rank(ns, a, nd) if fa else a
    b = lift_rank(ns, b, nd) if fb else b
    out = ns.matmul(a, b)
    if b_vec:
        out = ns.squeeze(out, out.ndim - 1)
    if a_vec:
        out = ns.squeeze(out, out.ndim - 1 - (not b_vec))
    return out, True


def einsum(op, ns, inputs, batched, spec):
    lhs, rhs = spec.split("->")
    z = next(c for c in string.ascii_letters if c not in spec)
    terms = [z + t if b else t for t, b in zip(lhs.split(","), batched)]
    return ns.einsum(",".join(terms) + "->" + z + rhs, *inputs), True


def getitem(op, ns, inputs, batched, index):
    if any(batched[1:]):
        raise NotBatchable
    x, *arrays = inputs
    expected = _infer(op, inputs, batched, {"index": index})
    return _checked(ns.getitem(x, *arrays, index=behind(index)), x.shape[0], expected), True


def scatter_add(op, ns, inputs, batched, index):
    (g, like, *arrays), (bg, blike, *barrays) = inputs, batched
    if any(barrays) or (blike and None in _shape(like, True)):
        raise NotBatchable
    if not bg:  # ``like`` gives only a shape
        return ns.scatter_add(g, _blank(ns, like, blike), *arrays, index=index), False
    size = g.shape[0]
    like = like if blike else tile_batch(ns, like, size)
    spec = behind(index)
    if tuple(g.shape) != view(spec).shape(tuple(like.shape), [a.shape for a in arrays]):
        raise NotBatchable  # numpy moves separated advanced indices in front of the batch axis
    out = ns.scatter_add(g, like, *arrays, index=spec)
    return _checked(out, size, _shape(like, True)), True


def join(op, ns, inputs, batched, axis):
    size = batch_size(inputs, batched)
    xs = tuple(x if b else tile_batch(ns, x, size) for x, b in zip(inputs, batched))
    return ns.apply(op, xs, {"axis": axis + 1}), True


def concat_part(op, ns, inputs, batched, axis, part):
    g, *refs = inputs
    dims = [_shape(r, b)[axis] for r, b in zip(refs, batched[1:])]
    if None in dims:
        raise NotBatchable
    start = sum(dims[:part])
    return ns.getitem(g, index=span(start, start + dims[part], axis + batched[0])), batched[0]


def _checked(out, size, shape):
    """``out`` if it has shape ``(size, *shape)`` (numpy may move advanced-index axes)."""
    if tuple(out.shape) != (size, *shape):
        raise NotBatchable
    return out


class _Aval:
    """A shape and dtype without a value, for asking an op's type rule about unbatched inputs."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = shape
        self.dtype = dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


def _infer(op, inputs, batched, params) -> tuple:
    """The unbatched output shape of ``op``."""
    avals = [_Aval(_shape(x, b), x.dtype) for x, b in zip(inputs, batched)]
    shape, _ = op.infer(*avals, **params)
    return tuple(shape)
