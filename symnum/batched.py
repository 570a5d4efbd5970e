"""Batched numbers: one sweep of VJP rules for a whole batch of cotangents (autodidax's BatchTrace).

A Jacobian or Hessian row by row is one reverse sweep per row. The sweeps
differ only in their seed, and every VJP rule is linear in its cotangent, so
stacking the seeds along a leading *batch axis* and running the rules once on
the stack gives every row at once. What makes that possible is the op table's
batching rules (:mod:`common.ops.batching`): each says how to run its op when
some inputs carry the batch axis.

:class:`Batched` is a value with that axis in front; its ``shape`` is one
element's, so the VJP rules (which look at shapes to undo broadcasting) run
on it unchanged. The :data:`batched` namespace applies an op to numbers,
plain or batched: plain inputs alone take the op's impl, any batched input
takes its batching rule.
"""

from __future__ import annotations

import numpy as np

from common.ops import OPS, Namespace, numeric
from common.ops.batching import apply_batched
from common.ops.core import broadcast_shapes
from common.overloads import install_operators

from .tape import _weak_scalar


class Batched:
    """An array whose axis 0 runs over the batch, times a factor; ``shape``/``ndim`` describe one element.

    The element values are ``value * scale``, where ``scale`` is a scalar or
    an unbatched array that broadcasts to one element's shape. Negations and
    products with unbatched numbers (which VJP rules make everywhere: ``-g``,
    ``g * 100``, ``g * cos(x)``) only change ``scale``, and two factors of one
    ``value`` add up as factors, so none of them costs a pass over the (big)
    batch: the runtime form of pushing constant factors onto the smallest
    operand. The factor is applied when another op needs the numbers.
    """

    __slots__ = ("value", "scale")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * b`` is Batched

    def __init__(self, value: np.ndarray, scale=1.0):
        self.value = value
        self.scale = scale

    @property
    def shape(self) -> tuple:
        return self.value.shape[1:]

    @property
    def ndim(self) -> int:
        return self.value.ndim - 1

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def unscaled(self) -> bool:
        scale = self.scale
        return scale.__class__ is float and scale == 1.0

    def dense(self) -> np.ndarray:
        """The stacked element values, the factor applied (``value`` itself when it is 1)."""
        return self.value if self.unscaled else self.value * self.scale

    def __repr__(self) -> str:
        return f"Batched({self.value.shape[0]} x {self.shape}, {self.dtype}, scale {self.scale})"


def same_scale(a: Batched, b: Batched) -> bool:
    """Whether two batches carry the very same factor (so their values can be summed as they are)."""
    sa, sb = a.scale, b.scale
    return sa is sb or (np.ndim(sa) == 0 and np.ndim(sb) == 0 and sa == sb)


# ops linear in input 0 and able to carry its scale through when it alone is batched
_CARRY_SCALE = frozenset(("getitem", "scatter_add", "sum_to", "sum", "mean", "reshape", "broadcast_to",
                          "expand_dims", "squeeze", "transpose", "stop_gradient"))
_SCALARS = (bool, int, float)
_SCALE_AWARE = _CARRY_SCALE | {"neg", "mul", "add", "sub"}


def _apply(op, inputs, params):
    """``op`` on plain and batched numbers: the impl if none is batched, else its batching rule."""
    flags = tuple([x.__class__ is Batched for x in inputs])
    if True not in flags:
        return op.impl(*inputs, **params)
    for x in inputs:
        if x.__class__ in _SCALARS:
            inputs = tuple([_weak_scalar(x, inputs) if x.__class__ in _SCALARS else x for x in inputs])
            break
    if op.name in _SCALE_AWARE:
        scaled = _scaled(op.name, inputs, flags, params)
        if scaled is not None:
            return scaled
    values = tuple([x.dense() if b else x for x, b in zip(inputs, flags)])
    out, out_batched = apply_batched(numeric, op, values, flags, params)
    return Batched(out) if out_batched else out


def _scaled(name: str, inputs: tuple, flags: tuple, params: dict):
    """The cases that move a factor instead of the batch (None for the others)."""
    if name == "neg":
        x = inputs[0]
        return Batched(x.value, -x.scale)
    if name == "mul" and flags[0] != flags[1]:
        b, u = inputs if flags[0] else inputs[::-1]
        if u.dtype != b.dtype:
            return None  # the product's dtype is numpy's business
        if u.ndim <= b.ndim and broadcast_shapes(u.shape, b.shape) == b.shape:
            return Batched(b.value, b.scale * u)  # O(u.size): the batch is untouched
        return None
    if name in ("add", "sub") and flags[0] and flags[1]:
        x, y = inputs
        if x.value.shape != y.value.shape:
            return None
        ys = y.scale if name == "add" else -y.scale
        if x.value is y.value:  # two factors of one batch: g * a + g * b = g * (a + b)
            return Batched(x.value, x.scale + ys)
        if x.unscaled:
            out = np.multiply(y.value, ys)
            return Batched(np.add(x.value, out, out=out))
        if np.ndim(x.scale) == 0 and np.ndim(ys) == 0 and x.scale != 0:
            ratio = ys / x.scale
            if ratio == 1 or ratio == -1:
                return Batched((np.add if ratio == 1 else np.subtract)(x.value, y.value), x.scale)
            out = np.multiply(y.value, ratio)
            return Batched(np.add(x.value, out, out=out), x.scale)
        out = np.multiply(x.value, x.scale)
        np.add(out, np.multiply(y.value, ys), out=out)
        return Batched(out)
    if name in _CARRY_SCALE and flags[0] and True not in flags[1:] and np.ndim(inputs[0].scale) == 0:
        x = inputs[0]
        out, out_batched = apply_batched(numeric, OPS[name], (x.value, *inputs[1:]), flags, params)
        return Batched(out, x.scale) if out_batched else out * x.scale
    return None


batched = Namespace(_apply, "batched")
"""Every op of the table over plain and :class:`Batched` numbers."""

install_operators(Batched, batched)


def unbatch(g, size: int, shape: tuple) -> np.ndarray:
    """``g`` as an array of ``size`` stacked elements of ``shape`` (a plain ``g`` is the same for all)."""
    if g.__class__ is Batched:
        return g.dense()
    return np.broadcast_to(np.asarray(g), (size, *shape))
