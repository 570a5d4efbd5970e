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
from .index import FULL
from .params import axis_param, shown
from .rules import call, reshape_to
from .shapes import float_dtype, numeric_dtype, one_axis
from .table import ZERO, defop
from .traits import Kind


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


def axis_or_flat_batch(op, ns, inputs, batched, axis):
    """The batching rule of an op along one ``axis`` that may be None (the flattened input): the axis one
    further in, or for None each batch element flattened first (scans here, argsort)."""
    (x,) = inputs
    if axis is not None:
        return ns.apply(op, inputs, {"axis": axis + 1}), True
    if None in x.shape:
        raise batching.NotBatchable
    return ns.apply(op, (ns.reshape(x, (x.shape[0], -1)),), {"axis": 1}), True


def _cumsum_vjp(ns, g, out, x, axis):
    return reshape_to(ns, suffix_sum(ns, g, 0 if axis is None else axis), x)  # x: its shape only


def _cumsum_jvp(ns, tangents, out, x, axis):
    return call(ns, "cumsum", tangents[0], axis=axis)


defop("cumsum", _infer(False), lambda x, axis: np.cumsum(x, axis=axis), _cumsum_vjp, jvp=_cumsum_jvp,
      bind=_scan_bind, kind=Kind.SHAPE, linear=(0,), batch=axis_or_flat_batch, fresh=True,
      code="np.cumsum({0}, axis={axis})",
      doc="Running sum along axis (the flattened input for axis=None, numpy's default); VJP: the "
          "running sum from the other end.")


# --- cumprod ------------------------------------------------------------------------------

def _cumprod_grad_impl(g, x, axis):
    """sum_{j >= i} g_j d out_j / d x_i in O(n), never dividing by a zero: before a row's first zero the
    suffix sum of g * out over x; at the first zero the suffix sum of g times the running product with
    that zero made one (the product of the others); after it zero."""
    z = x == 0
    seen = np.cumsum(z, axis=axis)
    before = seen == 0
    first = z & (seen == 1)
    out = np.cumprod(x, axis=axis)
    skip = np.cumprod(np.where(first, 1, x), axis=axis)
    back = [slice(None)] * x.ndim
    back[axis] = slice(None, None, -1)
    back = tuple(back)

    def suffix(v):
        return np.cumsum(v[back], axis=axis)[back]

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before, suffix(g * out) / np.where(before, x, 1), np.where(first, suffix(g * skip), 0))


def _pairs(ns, x, a):
    """For the exact higher-order rules, which look at every pair (i, j) of positions along axis ``a``:
    (x's row with x_i made one, for each i: a new axis at ``a`` for i, j at ``a + 1``; i == j; j >= i)."""
    p = call(ns, "cumsum", ns.ones_like(x), axis=a)
    pi, pj = call(ns, "expand_dims", p, axis=(a + 1,)), call(ns, "expand_dims", p, axis=(a,))
    eye = ns.eq(pi, pj)
    return ns.where(eye, ns.ones_like(pi * pj), call(ns, "expand_dims", x, axis=(a,))), eye, ns.ge(pj, pi)


def _cumprod_tangent(ns, t, x, a):
    """sum_{i <= j} t_i d out_j / d x_i, as ops (O(n**2) per row): cumprod's JVP and the transpose of its
    gradient in g. d out_j / d x_i = prod_{l <= j, l != i} x_l is the running product of x with x_i made one."""
    rows, _, upper = _pairs(ns, x, a)
    c = call(ns, "cumprod", rows, axis=a + 1)
    picked = ns.where(upper, call(ns, "expand_dims", t, axis=(a + 1,)) * c, ns.zeros_like(c))
    return call(ns, "sum", picked, axis=(a,), keepdims=False)


def _cumprod_vjp(ns, g, out, x, axis):
    xf, a = _flat(ns, x, axis)
    return reshape_to(ns, call(ns, "cumprod_grad", g, xf, axis=a), x)


def _cumprod_jvp(ns, tangents, out, x, axis):
    xf, a = _flat(ns, x, axis)
    t, _ = _flat(ns, tangents[0], axis)
    return _cumprod_tangent(ns, t, xf, a)


defop("cumprod", _infer(False), lambda x, axis: np.cumprod(x, axis=axis), _cumprod_vjp, jvp=_cumprod_jvp,
      bind=_scan_bind, kind=Kind.NN, batch=axis_or_flat_batch, fresh=True, code="np.cumprod({0}, axis={axis})",
      doc="Running product along axis (flattened for axis=None). Exact with zeros: its gradient "
          "(cumprod_grad) never divides by a zero input. Its JVP is O(n**2) per row (exact at every order).")


def _grad_bind(g, x, axis):
    return (g, x), {"axis": one_axis(axis, x.ndim if hasattr(x, "ndim") else np.ndim(x))}


def _grad_infer(g, x, axis):
    axis_param(axis, len(x.shape))
    if tuple(g.shape) != tuple(x.shape):
        raise ShapeError(f"g of shape {tuple(g.shape)} must have x's shape {tuple(x.shape)}")
    return tuple(x.shape), float_dtype(np.result_type(g.dtype, x.dtype))


def _grad_vjp_x(ns, h, out, g, x, axis):
    # sum_i h_i f_i = sum_i sum_j [j >= i] h_i g_j cumprod(row_i)_j: each row is a cumprod of its own, whose
    # gradient (this op again, on the rows) reaches x_m through row_i's entry m for every i != m
    rows, eye, upper = _pairs(ns, x, axis)
    weights = call(ns, "expand_dims", h, axis=(axis + 1,)) * call(ns, "expand_dims", g, axis=(axis,))
    weights = ns.where(upper, weights, ns.zeros_like(weights))
    per_row = call(ns, "cumprod_grad", weights, rows, axis=axis + 1)
    return call(ns, "sum", ns.where(eye, ns.zeros_like(per_row), per_row), axis=(axis,), keepdims=False)


def _grad_jvp(ns, tangents, out, g, x, axis):
    tg, tx = tangents
    total = ZERO if tg is ZERO else call(ns, "cumprod_grad", tg, x, axis=axis)
    if tx is not ZERO:
        rows, eye, upper = _pairs(ns, x, axis)
        trow = call(ns, "expand_dims", tx, axis=(axis,)) * ns.ones_like(rows)
        dc = _cumprod_tangent(ns, ns.where(eye, ns.zeros_like(trow), trow), rows, axis + 1)
        terms = call(ns, "expand_dims", g, axis=(axis,)) * dc
        term = call(ns, "sum", ns.where(upper, terms, ns.zeros_like(terms)), axis=(axis + 1,), keepdims=False)
        total = term if total is ZERO else total + term
    return total


def _grad_batch(op, ns, inputs, batched, axis):
    size = batching.batch_size(inputs, batched)
    g, x = (v if b else batching.tile_batch(ns, v, size) for v, b in zip(inputs, batched))
    return ns.apply(op, (g, x), {"axis": axis + 1}), True


defop("cumprod_grad", _grad_infer, _cumprod_grad_impl,
      lambda ns, h, out, g, x, axis: _cumprod_tangent(ns, h, x, axis), _grad_vjp_x, jvp=_grad_jvp,
      bind=_grad_bind, kind=Kind.NN, linear=(0,), batch=_grad_batch, fresh=True,
      doc="cumprod's gradient: sum_{j >= i} g_j d cumprod(x)_j / d x_i along axis, in O(n) and exact with "
          "zeros (PyTorch's convention and result). Its own rules are O(n**2) per row (O(n**3) for its JVP in x) "
          "and exact at every order, as PyTorch's double-backward path.")


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
      batch=axis_or_flat_batch, fresh=True,
      doc="log(cumsum(exp(x))) along axis (flattened for axis=None), as a running logaddexp: it "
          "never overflows. Its rules shift by each row's first output, so they stay finite while a row's "
          "values span less than about 700 (float64's exp range).")
