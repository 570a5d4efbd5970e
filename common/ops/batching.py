"""Batching rules: each op applied to a batch of values at once (JAX's vmap rules).

A rule says how to run an op when some of its inputs carry an extra leading
*batch axis* (axis 0), so that a loop over the batch becomes one op. Like a VJP
rule it is written once, against a namespace ``ns``, and never told what it
runs on:

* on the symbolic namespace it adds batched nodes: symsym's ``vectorize``
  turns a graph into its batched graph (PyTensor's ``vectorize_graph``), so a
  Jacobian or Hessian is one reverse pass over a batch of basis cotangents;
* on :data:`~common.ops.core.numeric` it computes batched numbers: a batched
  interpreter (autodidax's ``BatchTrace``) runs a recorded backward once for a
  whole batch of cotangents.

The contract: ``RULES[op.name](ns, inputs, batched, **params) -> (output,
out_batched)``. ``inputs`` are the op's inputs, each with the batch axis in
front where ``batched[i]`` is true (at least one is); ``params`` are the op's
normalised params (rules call :meth:`Namespace.apply` with raw params).
``out_batched`` says whether the output has the batch axis (a value that only
depends on a shape, like ``zeros_like``, need not). A rule that cannot handle a
case raises :class:`NotBatchable`; so does a missing rule. The caller then
falls back to :func:`per_element`: the op on each batch element, stacked.
Always right, only slower. :func:`apply_batched` does both steps.

Most rules shift an ``axis`` param by one, or insert size-1 axes after the
batch axis so numpy's right-aligned broadcasting keeps the batch apart.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Callable

from ..errors import GradError
from . import elementwise, linalg, nn, reduce  # noqa: F401  (the ops the rules name)
from . import shape as _shape_ops  # noqa: F401
from .core import OPS, broadcast_shapes
from .index import behind, span, take

__all__ = ["RULES", "NotBatchable", "apply_batched", "per_element"]

RULES: dict[str, Callable] = {}


class NotBatchable(Exception):
    """A batching rule that does not cover this case: fall back to :func:`per_element`."""


def apply_batched(ns, op, inputs: tuple, batched: tuple, params: dict):
    """``op`` on partly batched ``inputs``: its rule, else per element. Returns (output, out_batched)."""
    if not any(batched):
        return ns.apply(op, inputs, params), False
    rule = RULES.get(op.name)
    if rule is not None:
        try:
            return rule(ns, inputs, batched, **params)
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


def _rule(*names: str):
    """Register ``fn(op, ns, inputs, batched, **params)`` as the rule of each op named."""
    def register(fn):
        for name in names:
            RULES[name] = functools.partial(fn, OPS[name])
        return fn
    return register


# ------------------------------------------------------------------- helpers

def _lift(ns, x, ndim: int):
    """Batched ``x`` with size-1 axes after the batch axis, up to ``1 + ndim`` dims."""
    k = ndim - (x.ndim - 1)
    return ns.expand_dims(x, tuple(range(1, 1 + k))) if k > 0 else x


def _tile(ns, x, size):
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

@_rule("neg", "exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sigmoid", "relu",
       "softplus", "sqrt", "square", "abs", "sign", "cast", "stop_gradient", "add", "sub", "mul",
       "div", "pow", "maximum", "minimum", "lt", "le", "gt", "ge", "eq", "ne", "where")
def _elementwise(op, ns, inputs, batched, **params):
    nd = max(x.ndim - b for x, b in zip(inputs, batched))
    args = tuple(_lift(ns, x, nd) if b else x for x, b in zip(inputs, batched))
    return ns.apply(op, args, params), True


@_rule("zeros_like", "ones_like", "full_like")
def _constant_like(op, ns, inputs, batched, dtype=None, value=None):
    (x,), (b,) = inputs, batched
    shape = _shape(x, b)
    if None in shape:
        raise NotBatchable
    if value is None:
        value = 0.0 if op.name == "zeros_like" else 1.0
    return ns.full(shape, value, dtype or x.dtype), False


@_rule("count")
def _count(op, ns, inputs, batched, **params):
    (x,), (b,) = inputs, batched
    return ns.apply(op, (_blank(ns, x, b),), params), False


@_rule("sum", "mean", "max", "min", "prod", "logsumexp")
def _reduction(op, ns, inputs, batched, axis, **params):
    return ns.apply(op, inputs, {**params, "axis": _shift(axis)}), True


@_rule("softmax", "log_softmax")
def _along_axis(op, ns, inputs, batched, axis):
    return ns.apply(op, inputs, {"axis": axis + 1}), True


@_rule("softmax_cross_entropy")
def _xent(op, ns, inputs, batched, axis):
    (z, t), (bz, bt) = inputs, batched
    nd = z.ndim - bz
    z = _lift(ns, z, nd) if bz else _tile(ns, z, batch_size(inputs, batched))
    t = _lift(ns, t, nd) if bt else t
    return ns.apply(op, (z, t), {"axis": axis + 1}), True


@_rule("expand_dims", "squeeze")
def _axes(op, ns, inputs, batched, axis):
    return ns.apply(op, inputs, {"axis": _shift(axis)}), True


@_rule("transpose")
def _transpose(op, ns, inputs, batched, axes):
    return ns.transpose(inputs[0], (0, *_shift(axes))), True


@_rule("tril", "triu")
def _triangle(op, ns, inputs, batched, k):
    return ns.apply(op, inputs, {"k": k}), True


@_rule("reshape")
def _reshape(op, ns, inputs, batched, shape):
    (x,) = inputs
    if -1 in shape and None in x.shape[1:]:
        raise NotBatchable
    return ns.reshape(x, (x.shape[0], *shape)), True


@_rule("reshape_like", "sum_like", "broadcast_like")
def _like(op, ns, inputs, batched):
    (x, ref), (bx, bref) = inputs, batched
    if op.name == "broadcast_like":
        shape = broadcast_shapes(_shape(x, bx), _shape(ref, bref))
    else:
        shape = _shape(ref, bref)
    if None in shape:
        raise NotBatchable
    static = {"reshape_like": "reshape", "sum_like": "sum_to", "broadcast_like": "broadcast_to"}
    target = OPS[static[op.name]]
    if not bx:  # only the reference is batched, and it gives only a shape
        return ns.apply(target, (x,), {"shape": shape}), False
    return RULES[target.name](ns, (x,), (True,), shape=shape)


@_rule("broadcast_to")
def _broadcast_to(op, ns, inputs, batched, shape):
    (x,) = inputs
    return ns.broadcast_to(_lift(ns, x, len(shape)), (x.shape[0], *shape)), True


@_rule("sum_to")
def _sum_to(op, ns, inputs, batched, shape):
    (x,) = inputs
    size = x.shape[0]
    lead = (x.ndim - 1) - len(shape)
    out = ns.sum_to(x, (size, *(1,) * lead, *shape))
    return (ns.reshape(out, (size, *shape)) if lead else out), True


@_rule("matmul")
def _matmul(op, ns, inputs, batched):
    """Promote 1-d operands, align batch dims, multiply, drop what was added."""
    (a, b), (fa, fb) = inputs, batched
    a_vec = a.ndim - fa == 1
    b_vec = b.ndim - fb == 1
    if a_vec:
        a = ns.expand_dims(a, a.ndim - 1)
    if b_vec:
        b = ns.expand_dims(b, b.ndim)
    nd = max(a.ndim - fa, b.ndim - fb)
    a = _lift(ns, a, nd) if fa else a
    b = _lift(ns, b, nd) if fb else b
    out = ns.matmul(a, b)
    if b_vec:
        out = ns.squeeze(out, out.ndim - 1)
    if a_vec:
        out = ns.squeeze(out, out.ndim - 1 - (not b_vec))
    return out, True


@_rule("einsum")
def _einsum(op, ns, inputs, batched, spec):
    lhs, rhs = spec.split("->")
    z = next(c for c in string.ascii_letters if c not in spec)
    terms = [z + t if b else t for t, b in zip(lhs.split(","), batched)]
    return ns.einsum(",".join(terms) + "->" + z + rhs, *inputs), True


@_rule("getitem")
def _getitem(op, ns, inputs, batched, index):
    if any(batched[1:]):
        raise NotBatchable
    x, *arrays = inputs
    expected = _infer("getitem", inputs, batched, {"index": index})
    return _checked(ns.getitem(x, *arrays, index=behind(index)), x.shape[0], expected), True


@_rule("scatter_add")
def _scatter_add(op, ns, inputs, batched, index):
    (g, like, *arrays), (bg, blike, *barrays) = inputs, batched
    if any(barrays) or (blike and None in _shape(like, True)):
        raise NotBatchable
    if not bg:  # ``like`` gives only a shape
        return ns.scatter_add(g, _blank(ns, like, blike), *arrays, index=index), False
    size = g.shape[0]
    like = like if blike else _tile(ns, like, size)
    out = ns.scatter_add(g, like, *arrays, index=behind(index))
    return _checked(out, size, _shape(like, True)), True


@_rule("concatenate", "stack")
def _join(op, ns, inputs, batched, axis):
    size = batch_size(inputs, batched)
    xs = tuple(x if b else _tile(ns, x, size) for x, b in zip(inputs, batched))
    return ns.apply(op, xs, {"axis": axis + 1}), True


@_rule("concat_part")
def _concat_part(op, ns, inputs, batched, axis, part):
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


def _infer(name, inputs, batched, params) -> tuple:
    """The unbatched output shape of op ``name``."""
    avals = [_Aval(_shape(x, b), x.dtype) for x, b in zip(inputs, batched)]
    shape, _ = OPS[name].infer(*avals, **params)
    return tuple(shape)
