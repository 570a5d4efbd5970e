"""Reductions over an axis (None, an int or a tuple) with ``keepdims``.

The VJP of a reduction re-inserts the reduced axes (``keep_axes``) and lets
broadcasting spread the cotangent back over the input. A linear reduction's
JVP is the reduction of the tangent; another's is made with its VJP from one
local derivative (:func:`reduction_rules`). Convention (PyTorch):
a tie in max/min splits the cotangent evenly among the tied elements.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from .params import axes_param, bool_param
from .rules import call, expand_to, jvp_linear, jvp_zero, keep_axes
from .shapes import float_dtype, norm_axis, numeric_dtype
from .table import defop
from .traits import Kind


def _bind(x, axis=None, keepdims=False):
    return (x,), {"axis": norm_axis(axis, x.ndim if hasattr(x, "ndim") else np.ndim(x)),
                  "keepdims": bool_param(keepdims, "keepdims")}


def reduced_shape(shape, axis, keepdims):
    if keepdims:
        return tuple(1 if i in axis else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axis)


def _accumulator(dtype):
    """numpy's result dtype for sum/prod: small ints widen to the platform int."""
    dtype = numeric_dtype(dtype)
    if dtype.kind in "bi":
        return np.result_type(dtype, np.int_)
    if dtype.kind == "u":
        return np.result_type(dtype, np.uint)
    return dtype


def _infer(kind):
    def infer(x, axis, keepdims):
        shape = reduced_shape(x.shape, axes_param(axis, len(x.shape)), bool_param(keepdims, "keepdims"))
        if kind == "acc":
            return shape, _accumulator(x.dtype)
        if kind == "mean":
            d = numeric_dtype(x.dtype)
            return shape, d if d.kind == "f" else np.dtype(np.float64)
        if kind in ("float", "count"):
            return (() if kind == "count" else shape), float_dtype(x.dtype)
        return shape, numeric_dtype(x.dtype)
    return infer


def reduction_rules(local):
    """The VJP and JVP rules of a reduction from its local derivative ``local(ns, out, x, axis, keepdims)``
    (d out / d x, in x's shape): the VJP spreads g over it, the JVP sums the tangent weighted by it."""
    def vjp(ns, g, out, x, axis, keepdims):
        return keep_axes(ns, g, axis, keepdims) * local(ns, out, x, axis, keepdims)

    def jvp(ns, tangents, out, x, axis, keepdims):
        return call(ns, "sum", tangents[0] * local(ns, out, x, axis, keepdims), axis=axis, keepdims=keepdims)

    return vjp, jvp


def _count(ns, x, axis):
    """How many elements each reduction averages: static where the dims are known."""
    dims = [x.shape[a] for a in axis]
    if None in dims:
        return ns.count(x, axis=axis)
    return float(math.prod(dims))


def _count_impl(x, axis, keepdims=False):
    return np.asarray(float(math.prod([x.shape[a] for a in axis])),
                      dtype=float_dtype(x.dtype) if x.dtype.kind != "f" else x.dtype)


def _sum(x, axis, keepdims):
    if isinstance(x, np.ndarray) and x.dtype.kind == "f":
        return kernels.reduce_by_slices(np.add, x, axis, keepdims)
    return np.add.reduce(x, axis=axis, keepdims=keepdims)


defop("sum", _infer("acc"), _sum,
      lambda ns, g, out, x, axis, keepdims: expand_to(ns, keep_axes(ns, g, axis, keepdims), x),
      jvp=jvp_linear("sum"), bind=_bind, code="np.sum({0}, axis={axis}, keepdims={keepdims})",
      kind=Kind.REDUCTION, zero=True, linear=(0,),
      doc="Sum over axis; the cotangent is broadcast back.")


defop("mean", _infer("mean"), kernels.mean,
      lambda ns, g, out, x, axis, keepdims:
          expand_to(ns, keep_axes(ns, g / _count(ns, x, axis), axis, keepdims), x),
      jvp=jvp_linear("mean"), bind=_bind, code="np.mean({0}, axis={axis}, keepdims={keepdims})",
      kind=Kind.REDUCTION, zero=True,
      linear=(0,), doc="Mean over axis; the cotangent is divided by the count (before broadcasting: fewer "
          "divisions) and broadcast back.")
defop("count", _infer("count"), _count_impl, None, jvp=jvp_zero, kind=Kind.REDUCTION, shape_only=(0,),
      bind=_bind, doc="How many elements of x lie along axis, as a float scalar (for mean's rule "
                      "when dims are unknown until evaluation). Not differentiable.")


def _extreme_hits(ns, out, x, axis, keepdims):
    """Where x equals its extreme (1.0, else 0.0), and how many do in each reduction (kept axes)."""
    hit = ns.cast(ns.eq(x, keep_axes(ns, out, axis, keepdims)), out.dtype)
    return hit, call(ns, "sum", hit, axis=axis, keepdims=True)  # axis is bound already: no bind again


def _extreme_vjp(ns, g, out, x, axis, keepdims):
    """Every element equal to the extreme gets an even share of the cotangent: the cotangent is divided
    by the count at the output's size (a pooling window's, a quarter of the input's), then spread."""
    hit, count = _extreme_hits(ns, out, x, axis, keepdims)
    return hit * (keep_axes(ns, g, axis, keepdims) / count)


def _extreme_jvp(ns, tangents, out, x, axis, keepdims):
    """The mean of the tangent over the elements equal to the extreme."""
    hit, count = _extreme_hits(ns, out, x, axis, keepdims)
    return call(ns, "sum", tangents[0] * (hit / count), axis=axis, keepdims=keepdims)


def _extreme(ufunc, plain):
    """max or min: numpy's, or for small windows over many outputs the same by slices."""
    def impl(x, axis, keepdims):
        if isinstance(x, np.ndarray) and axis and kernels.few_reduced(x.shape, axis):
            return kernels.reduce_by_slices(ufunc, x, axis, keepdims)
        return plain(x, axis=axis, keepdims=keepdims)
    return impl


defop("max", _infer("same"), _extreme(np.maximum, np.max),
      _extreme_vjp, jvp=_extreme_jvp, bind=_bind, code="np.max({0}, axis={axis}, keepdims={keepdims})",
      kind=Kind.REDUCTION, zero=True,
      doc="Max over axis. Convention (PyTorch): tied maxima share the cotangent evenly.")
defop("min", _infer("same"), _extreme(np.minimum, np.min),
      _extreme_vjp, jvp=_extreme_jvp, bind=_bind, code="np.min({0}, axis={axis}, keepdims={keepdims})",
      kind=Kind.REDUCTION, zero=True,
      doc="Min over axis. Convention (PyTorch): tied minima share the cotangent evenly.")


def _prod_local(ns, out, x, axis, keepdims):
    # prod/x where x != 0; at a single zero, the product of the others; else 0.
    zero = ns.eq(x, 0)
    safe = ns.where(zero, ns.ones_like(x), x)
    others = ns.prod(safe, axis=axis, keepdims=True)
    nzero = ns.sum(ns.cast(zero, x.dtype), axis=axis, keepdims=True)
    at_zero = ns.where(ns.eq(nzero, 1), others, ns.zeros_like(others))
    return ns.where(zero, at_zero * ns.ones_like(x), keep_axes(ns, out, axis, keepdims) / safe)


_prod_vjp, _prod_jvp = reduction_rules(_prod_local)
defop("prod", _infer("acc"), lambda x, axis, keepdims: np.prod(x, axis=axis, keepdims=keepdims),
      _prod_vjp, jvp=_prod_jvp, bind=_bind, code="np.prod({0}, axis={axis}, keepdims={keepdims})",
      kind=Kind.REDUCTION, zero=True,
      doc="Product over axis. Exact with zeros: a lone zero gets the product of the others.")


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else np.squeeze(s, axis=axis)


_lse_vjp, _lse_jvp = reduction_rules(lambda ns, out, x, axis, keepdims: ns.exp(x - keep_axes(ns, out, axis, keepdims)))
defop("logsumexp", _infer("float"), _logsumexp, _lse_vjp, jvp=_lse_jvp, bind=_bind,
      kind=Kind.REDUCTION, doc="log(sum(exp(x))) over axis, shifted by the max so it never overflows.")
