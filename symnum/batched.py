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
from common.ops.index import view
from common.ops.shapes import broadcast_shapes
from common.overloads import install_operators

from .tape import weak_scalar


class PerElement:
    """``dtype`` and ``size`` of one element of a batch held in ``value`` along a leading axis.

    :class:`Batched` and :class:`symnum.vmap.Mapped` both hold such a batch and
    say their own ``shape`` (an element's); the rest follows from it.
    """

    __slots__ = ()

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Batched(PerElement):
    """An array whose axis 0 runs over the batch, times a factor; ``shape``/``ndim`` describe one element.

    The element values are ``value * scale``, where ``scale`` is a scalar or
    an unbatched array that broadcasts to one element's shape. Negations and
    products with unbatched numbers (which VJP rules make everywhere: ``-g``,
    ``g * 100``, ``g * cos(x)``) only change ``scale``, and two factors of one
    ``value`` add up as factors, so none of them costs a pass over the (big)
    batch: the runtime form of pushing constant factors onto the smallest
    operand. The factor is applied when another op needs the numbers.

    A batch of vectors may also be *windowed*: ``n`` is then the element
    length and ``value`` holds only columns ``lo .. lo + value.shape[1]``, every
    other column being zero (``scale`` still indexes the whole element). Basis
    cotangents are such batches (a block of identity rows is nonzero on a
    window as wide as the block), and slicing, scattering a slice, adding and
    scaling keep a window narrow, so a banded Jacobian's rows cost the band,
    not the full width. Any other op gets the zero-padded :meth:`dense` batch.
    """

    __slots__ = ("value", "scale", "lo", "n")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * b`` is Batched

    def __init__(self, value: np.ndarray, scale=1.0, lo: int = 0, n: int | None = None):
        self.value = value
        self.scale = scale
        self.lo = lo
        self.n = n

    @property
    def shape(self) -> tuple:
        return self.value.shape[1:] if self.n is None else (self.n,)

    @property
    def ndim(self) -> int:
        return self.value.ndim - 1

    @property
    def hi(self) -> int:
        """One past the last column of a window."""
        return self.lo + self.value.shape[1]

    @property
    def unscaled(self) -> bool:
        scale = self.scale
        return scale.__class__ is float and scale == 1.0

    def rescaled(self, scale) -> Batched:
        """The same batch (and window) with another factor."""
        return Batched(self.value, scale, self.lo, self.n)

    def window(self, scale=None) -> np.ndarray:
        """The window's values (everything, when not windowed) times ``scale`` (default: the factor)."""
        scale = self.scale if scale is None else scale
        if scale.__class__ is float and scale == 1.0:
            return self.value
        if self.n is not None and _per_column(scale):
            scale = scale[..., self.lo:self.hi]
        return self.value * scale

    def dense(self) -> np.ndarray:
        """The stacked element values, the factor applied (``value`` itself when it is 1)."""
        if self.n is None:
            return self.window()
        out = np.zeros((self.value.shape[0], self.n), self.dtype)
        out[:, self.lo:self.hi] = self.window()
        return out

    def __repr__(self) -> str:
        window = "" if self.n is None else f", columns {self.lo}:{self.hi}"
        return f"Batched({self.value.shape[0]} x {self.shape}, {self.dtype}, scale {self.scale}{window})"


def _per_column(scale) -> bool:
    """Whether a windowed batch's factor has one entry per column (to be sliced with the window)."""
    return np.ndim(scale) > 0 and scale.shape[-1] != 1


def basis(rows: int, start: int, n: int, dtype) -> Batched:
    """Rows ``start .. start + rows`` of the n x n identity, as a windowed batch."""
    return Batched(np.eye(rows, dtype=dtype), 1.0, start, n)


def same_scale(a: Batched, b: Batched) -> bool:
    """Whether two batches carry the very same factor and window (so their values can be summed as they are)."""
    if a.lo != b.lo or a.n != b.n:
        return False
    sa, sb = a.scale, b.scale
    return sa is sb or (np.ndim(sa) == 0 and np.ndim(sb) == 0 and sa == sb)


# ops linear in input 0 on its own (the op's ``linear`` trait): with it alone batched, a scalar factor passes
# through them untouched, op(x * s, y) = op(x, y) * s
_CARRY_SCALE = frozenset(name for name, op in OPS.items() if 0 in op.linear)
_SCALARS = (bool, int, float)
# ops linear in some input (alone or together with others): where moving a factor may beat applying it
_SCALE_AWARE = frozenset(name for name, op in OPS.items() if op.linear or op.linear_together)


def _apply(op, inputs, params):
    """``op`` on plain and batched numbers: the impl if none is batched, else its batching rule."""
    flags = tuple([x.__class__ is Batched for x in inputs])
    if True not in flags:
        return op.impl(*inputs, **params)
    for x in inputs:
        if x.__class__ in _SCALARS:
            inputs = tuple([weak_scalar(x, inputs) if x.__class__ in _SCALARS else x for x in inputs])
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
        return x.rescaled(-x.scale)
    if name in ("mul", "div") and flags[0] != flags[1]:
        b, u = inputs if flags[0] else inputs[::-1]
        if u.dtype != b.dtype or (name == "div" and not flags[0]):
            return None  # the product's dtype is numpy's business; u / batch is not linear
        if u.ndim <= b.ndim and broadcast_shapes(u.shape, b.shape) == b.shape:
            return b.rescaled(b.scale * u if name == "mul" else b.scale / u)  # O(u.size): the batch is untouched
        return None
    if name in ("add", "sub") and flags[0] and flags[1]:
        x, y = inputs
        ys = y.scale if name == "add" else -y.scale
        if x.n is not None or y.n is not None:
            return _add_windows(x, y, ys) if x.n == y.n else None
        if x.value.shape != y.value.shape:
            return None
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
    if not flags[0] or True in flags[1:]:
        return None
    x = inputs[0]
    if x.n is not None:
        return _windowed(name, x, inputs[1:], params)
    if name in _CARRY_SCALE and np.ndim(x.scale) == 0:
        out, out_batched = apply_batched(numeric, OPS[name], (x.value, *inputs[1:]), flags, params)
        return Batched(out, x.scale) if out_batched else out * x.scale
    return None


def _add_windows(x: Batched, y: Batched, ys) -> Batched:
    """``x + y * ys`` of two windowed batches: the union of their windows."""
    if x.lo == y.lo and x.value is y.value:
        return x.rescaled(x.scale + ys)
    lo, hi = min(x.lo, y.lo), max(x.hi, y.hi)
    if (x.lo, x.hi) == (lo, hi) == (y.lo, y.hi):
        other = y.window(ys)
        if x.unscaled and other is not y.value and other.dtype == x.value.dtype:
            out = other  # a new array: x + y * ys summed into it, no copy of x's window
            out += x.value
        else:
            out = np.array(x.window(), copy=True) if x.unscaled else x.window()
            out += other
    else:
        out = np.zeros((x.value.shape[0], hi - lo), np.result_type(x.dtype, y.dtype))
        out[:, x.lo - lo:x.hi - lo] = x.window()
        out[:, y.lo - lo:y.hi - lo] += y.window(ys)
    return Batched(out, 1.0, lo, x.n)


def _windowed(name: str, x: Batched, rest: tuple, params: dict):
    """Slicing, scattering a slice and summing a windowed batch of vectors (None for other ops)."""
    if name in ("sum", "mean"):
        if params["axis"] != (0,):
            return None
        total = x.window().sum(axis=1, keepdims=params["keepdims"])
        return Batched(total / x.n if name == "mean" else total)
    if name not in ("getitem", "scatter_add"):
        return None
    spec = view(params["index"])
    s = x.scale
    full_scale = _per_column(s)
    k = spec.single_int if name == "getitem" else None
    if k is not None:
        k %= x.n
        if not x.lo <= k < x.hi:
            return Batched(np.zeros(x.value.shape[0], x.dtype))
        if np.ndim(s):  # the factor of column k, as a scalar's factor
            s = s[..., k] if full_scale else s.reshape(())
        return Batched(x.value[:, k - x.lo], s)
    if name == "getitem":
        span = spec.unit_range(x.n)
        if span is None:
            return None
        start, stop = span
        m = max(stop - start, 0)
        lo, hi = max(x.lo - start, 0), min(x.hi - start, m)
        if hi <= lo:
            return Batched(x.value[:, :0], 1.0, 0, m)
        return Batched(x.value[:, lo + start - x.lo:hi + start - x.lo], s[..., start:stop] if full_scale else s,
                       lo, m)
    like = np.shape(rest[0])
    span = spec.unit_range(like[0]) if len(like) == 1 else None
    if span is None:
        return None
    n = like[0]
    start, stop = span
    if full_scale:
        s = np.zeros(n, s.dtype)
        s[start:stop] = x.scale
    return Batched(x.value, s, x.lo + start, n)


batched = Namespace(_apply, "batched")
"""Every op of the table over plain and :class:`Batched` numbers."""

install_operators(Batched, batched)


def unbatch(g, size: int, shape: tuple) -> np.ndarray:
    """``g`` as an array of ``size`` stacked elements of ``shape`` (a plain ``g`` is the same for all)."""
    if g.__class__ is Batched:
        return g.dense()
    return np.broadcast_to(np.asarray(g), (size, *shape))
