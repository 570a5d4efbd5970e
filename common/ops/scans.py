"""Running (prefix) ops along an axis: cumsum, cumprod, logcumsumexp.

``axis=None`` scans the flattened input, as numpy does. Each VJP is a scan
running the other way (a *suffix* sum, :func:`suffix_sum`), written with the
ops themselves, so the rules run on numbers, tapes and symbols and their own
derivatives come from the same table. cumprod's rules never divide by an
input that is zero: before the first zero of a row the gradient is the usual
suffix sum over the input, at the first zero it is the suffix sum with that
zero replaced by one, after it zero (PyTorch's result, exactly).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from . import batching
from .core import Kind, call, defop, float_dtype, numeric_dtype, one_axis, reshape_to
from .index import FULL
from .params import axis_param, shown


def _scan_bind(x, axis=None):
    ndim = x.ndim if hasattr(x, "ndim") else np.ndim(x)
    return (x,), {"axis": None if axis is None else one_axis(axis, ndim)}


def _scan_shape(x, axis):
    if axis is None:
        return (None if None in x.shape else math.prod(x.shape),)
    if len(x.shape) == 0:
        raise ShapeError(f"param 'axis' = {shown(axis)} needs at least a 1-d input (axis=None scans a scalar)")
    axis_param(axis, len(x.shape))
    return tuple(x.shape)


def _infer(floating: bool):
    def infer(x, axis):
        shape = _scan_shape(x, axis)
        if floating:
            return shape, float_dtype(x.dtype)
        d = numeric_dtype(x.dtype)
        return shape, (np.result_type(d, np.int_) if d.kind in "bi" else d)
    return infer


def _flat(ns, x, axis):
    """``x`` as the op sees it (flattened for ``axis=None``) and the axis it scans."""
    if axis is None:
        return (x if len(x.shape) == 1 else ns.reshape(x, (-1,))), 0
    return x, axis


def _reverse(ns, x, axis: int):
    """``x`` backwards along ``axis`` (a step -1 slice)."""
    return call(ns, "getitem", x, index=(FULL,) * axis + (("slice", None, None, -1),))


def suffix_sum(ns, g, axis: int):
    """sum_{j >= i} g_j along ``axis``: cumsum's adjoint, and the core of every VJP here."""
    return _reverse(ns, call(ns, "cumsum", _reverse(ns, g, axis), axis=axis), axis)


def _scan_batch(op, ns, inputs, batched, axis):
    """The scan one axis further in; ``axis=None`` flattens each batch element first."""
    (x,) = inputs
    if axis is not None:
        return ns.apply(op, inputs, {"axis": axis + 1}), True
    if None in x.shape:
        raise batching.NotBatchable
    return ns.apply(op, (ns.reshape(x, (x.shape[0], -1)),), {"axis": 1}), True


def _cumsum_vjp(ns, g, out, x, axis):
    _, a = _flat(ns, x, axis)
    return reshape_to(ns, suffix_sum(ns, g, a), x)


def _cumsum_jvp(ns, tangents, out, x, axis):
    return call(ns, "cumsum", tangents[0], axis=axis)


defop("cumsum", _infer(False), lambda x, axis: np.cumsum(x, axis=axis), _cumsum_vjp, jvp=_cumsum_jvp,
      bind=_scan_bind, kind=Kind.SHAPE, linear=(0,), batch=_scan_batch, fresh=True,
      code="np.cumsum({0}, axis={axis})",
      doc="Running sum along axis (the flattened input for axis=None, numpy's default); VJP: the "
          "running sum from the other end.")


# --- cumprod ------------------------------------------------------------------------------

def _zeros(ns, x, a):
    """(before, first): where a row has no zero up to here, and where its first zero is (0/1 in x's dtype)."""
    z = ns.cast(ns.eq(x, 0), x.dtype)
    seen = call(ns, "cumsum", z, axis=a)
    return ns.eq(seen, 0), ns.eq(z * ns.cast(ns.eq(seen, 1), x.dtype), 1)


def _cumprod_parts(ns, x, a):
    """What both rules need: the zero masks, x with zeros made ones (safe to divide by), and the running
    product with the first zero of each row made one (the product of the others, from it on)."""
    before, first = _zeros(ns, x, a)
    one = ns.ones_like(x)
    safe = ns.where(before, x, one)
    skip = call(ns, "cumprod", ns.where(first, one, x), axis=a)
    return before, first, safe, skip


def _cumprod_vjp(ns, g, out, x, axis):
    xf, a = _flat(ns, x, axis)
    before, first, safe, skip = _cumprod_parts(ns, xf, a)
    zero = ns.zeros_like(xf)
    at_first = ns.where(first, suffix_sum(ns, g * skip, a), zero)
    return reshape_to(ns, ns.where(before, suffix_sum(ns, g * out, a) / safe, at_first), x)


def _cumprod_jvp(ns, tangents, out, x, axis):
    xf, a = _flat(ns, x, axis)
    t, _ = _flat(ns, tangents[0], axis)
    before, first, safe, skip = _cumprod_parts(ns, xf, a)
    zero = ns.zeros_like(xf)
    t_first = call(ns, "sum", ns.where(first, t, zero), axis=(a,), keepdims=True)
    return ns.where(before, out * call(ns, "cumsum", ns.where(before, t, zero) / safe, axis=a), t_first * skip)


defop("cumprod", _infer(False), lambda x, axis: np.cumprod(x, axis=axis), _cumprod_vjp, jvp=_cumprod_jvp,
      bind=_scan_bind, kind=Kind.NN, batch=_scan_batch, fresh=True, code="np.cumprod({0}, axis={axis})",
      doc="Running product along axis (flattened for axis=None). Exact with zeros: its rules never divide "
          "by a zero input (the first zero of a row gets the running product of the others; later "
          "elements none, as in PyTorch).")


# --- logcumsumexp ---------------------------------------------------------------------------

def _logcumsumexp(x, axis):
    if axis is None:
        x, axis = np.reshape(x, -1), 0
    return np.logaddexp.accumulate(np.asarray(x, float_dtype(np.result_type(x))), axis=axis)


def _first(ns, x, a):
    """The row's first element, kept as a length-1 axis (the shift that keeps exp in range)."""
    return call(ns, "getitem", x, index=(FULL,) * a + (("slice", 0, 1, None),))


def _shift(ns, out, a):
    """out's first element per row (its smallest, out being nondecreasing), finite: the shift the rules use."""
    c = _first(ns, out, a)
    return ns.where(ns.eq(c, -np.inf), ns.zeros_like(c), ns.stop_gradient(c))


def _lcse_vjp(ns, g, out, x, axis):
    # d out_j / d x_i = exp(x_i - out_j) for i <= j; shifted by c = out_0 so that exp(c - out_j) <= 1
    xf, a = _flat(ns, x, axis)
    c = _shift(ns, out, a)
    return reshape_to(ns, suffix_sum(ns, g * ns.exp(c - out), a) * ns.exp(xf - c), x)


def _lcse_jvp(ns, tangents, out, x, axis):
    xf, a = _flat(ns, x, axis)
    t, _ = _flat(ns, tangents[0], axis)
    c = _shift(ns, out, a)
    return call(ns, "cumsum", t * ns.exp(xf - c), axis=a) * ns.exp(c - out)


defop("logcumsumexp", _infer(True), _logcumsumexp, _lcse_vjp, jvp=_lcse_jvp, bind=_scan_bind, kind=Kind.NN,
      batch=_scan_batch, fresh=True,
      doc="log(cumsum(exp(x))) along axis (flattened for axis=None), as a running logaddexp: it "
          "never overflows. Its rules shift by each row's first output, so they stay finite while a row's "
          "values span less than about 700 (float64's exp range).")
