"""Neural-network ops in their numerically stable forms.

softmax's Jacobian is symmetric, so its JVP rule is its VJP rule on the
tangent; log_softmax's is the transpose of its VJP; softmax_cross_entropy's
VJP and JVP rules share each input's local derivative.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from ..kernels import softmax
from . import batching
from .batching import batch_size, lift_rank, tile_batch
from .params import axis_param
from .rules import call, jvp_self_adjoint, keep_axes
from .shapes import broadcast_shapes, float_dtype, one_axis, result_dtype, shape_str
from .table import ZERO, defop
from .traits import Kind


def _axis_bind(x, axis=-1):
    return (x,), {"axis": one_axis(axis, x.ndim if hasattr(x, "ndim") else np.ndim(x))}


def _log_softmax(x, axis):
    s = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    return s - np.log(np.add.reduce(np.exp(s), axis=axis, keepdims=True))


def _floating(x, axis):
    axis_param(axis, len(x.shape))
    return x.shape, float_dtype(x.dtype)


def _softmax_vjp(ns, g, out, x, axis):
    return out * (g - call(ns, "sum", g * out, axis=(axis,), keepdims=True))


defop("softmax", _floating, softmax, _softmax_vjp, jvp=jvp_self_adjoint(_softmax_vjp), bind=_axis_bind, kind=Kind.NN,
      batch=batching.along_axis,
      doc="exp(x) / sum(exp(x)) along axis, shifted by the max (no overflow).")
defop("log_softmax", _floating, _log_softmax,
      lambda ns, g, out, x, axis: g - ns.exp(out) * ns.sum(g, axis=axis, keepdims=True),
      jvp=lambda ns, ts, out, x, axis: ts[0] - call(ns, "sum", ns.exp(out) * ts[0], axis=(axis,), keepdims=True),
      bind=_axis_bind, kind=Kind.NN, batch=batching.along_axis,
      doc="x - logsumexp(x) along axis: finite even where softmax underflows to 0.")


def _xent_bind(logits, targets, axis=-1):
    return (logits, targets), {"axis": one_axis(axis, logits.ndim if hasattr(logits, "ndim")
                                                 else np.ndim(logits))}


def _xent_infer(z, t, axis):
    axis_param(axis, len(z.shape))
    if broadcast_shapes(z.shape, t.shape) != tuple(z.shape):
        raise ShapeError("targets must broadcast to the logits' shape")
    return tuple(d for i, d in enumerate(z.shape) if i != axis), float_dtype(result_dtype(z, t))


def _xent(z, t, axis):
    # np.add.reduce is what np.sum calls, without its Python wrapper (a third of this op's time on a batch of 16)
    return -np.add.reduce(t * _log_softmax(z, axis), axis=axis)


def _xent_dz(ns, z, t, axis):
    return call(ns, "softmax", z, axis=axis) * call(ns, "sum", t, axis=(axis,), keepdims=True) - t


def _xent_jvp(ns, tangents, out, z, t, axis):
    tz, tt = tangents
    term = ZERO if tz is ZERO else tz * _xent_dz(ns, z, t, axis)
    if tt is not ZERO:
        dt = -(tt * call(ns, "log_softmax", z, axis=axis))
        term = dt if term is ZERO else term + dt
    return call(ns, "sum", term, axis=(axis,), keepdims=False)


defop("softmax_cross_entropy", _xent_infer, _xent,
      lambda ns, g, out, z, t, axis: keep_axes(ns, g, (axis,), False) * _xent_dz(ns, z, t, axis),
      lambda ns, g, out, z, t, axis: -(keep_axes(ns, g, (axis,), False) * call(ns, "log_softmax", z, axis=axis)),
      jvp=_xent_jvp, bind=_xent_bind, kind=Kind.NN, linear=(1,), batch=batching.softmax_cross_entropy,
      doc="-sum(targets * log_softmax(logits)) along axis, one loss per row; targets are "
          "probabilities (one-hot for class labels). Stable for any logits.")


# --- integer class labels -------------------------------------------------------------------

def _labels_infer(z, labels, axis):
    axis_param(axis, len(z.shape))
    if np.dtype(labels.dtype).kind not in "iu":
        raise DTypeError(f"labels must be integer class indices, got {labels.dtype}")
    rows = tuple(d for i, d in enumerate(z.shape) if i != axis)
    bad = ShapeError(f"labels of shape {shape_str(labels.shape)} do not match the logits' rows "
                     f"{shape_str(rows)} (the logits' shape without axis {axis})")
    if len(labels.shape) > len(rows):
        raise bad
    try:
        out = broadcast_shapes(labels.shape, rows)
    except ShapeError:
        raise bad from None
    if any(r is not None and o != r for o, r in zip(out, rows)):
        raise bad
    return out, float_dtype(z.dtype)


def _labels_impl(z, labels, axis):
    n = z.shape[axis]
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= n):
        raise ShapeError(f"sparse_softmax_cross_entropy: labels must be class indices in [0, {n}), got values "
                         f"from {labels.min()} to {labels.max()}")
    rows = np.broadcast_to(labels, z.shape[:axis] + z.shape[axis + 1:])
    picked = np.take_along_axis(_log_softmax(z, axis), np.expand_dims(rows, axis), axis)
    return -np.squeeze(picked, axis)


def _one_hot(ns, labels, z, axis):
    """1.0 at each row's label along axis, else 0, in z's shape and dtype (the class positions are a
    constant where the class count is known, else counted by a running sum)."""
    n = z.shape[axis]
    if n is None:
        positions = call(ns, "cumsum", ns.ones_like(z), axis=axis) - 1
    else:
        positions = np.arange(n).reshape((-1,) + (1,) * (len(z.shape) - axis - 1))
    at = len(labels.shape) - (len(z.shape) - 1 - axis)  # labels align with z's rows from the right
    if at >= 0:
        labels = call(ns, "expand_dims", labels, axis=(at,))
    return ns.cast(ns.eq(labels, positions), z.dtype)


def _labels_dz(ns, z, labels, axis):
    return call(ns, "softmax", z, axis=axis) - _one_hot(ns, labels, z, axis)


def _labels_batch(op, ns, inputs, batched, axis):
    (z, labels), (bz, bl) = inputs, batched
    nd = z.ndim - bz
    z = lift_rank(ns, z, nd) if bz else tile_batch(ns, z, batch_size(inputs, batched))
    labels = lift_rank(ns, labels, nd - 1) if bl else labels
    return ns.apply(op, (z, labels), {"axis": axis + 1}), True


defop("sparse_softmax_cross_entropy", _labels_infer, _labels_impl,
      lambda ns, g, out, z, labels, axis: keep_axes(ns, g, (axis,), False) * _labels_dz(ns, z, labels, axis), None,
      jvp=lambda ns, ts, out, z, labels, axis: call(ns, "sum", ts[0] * _labels_dz(ns, z, labels, axis),
                                                   axis=(axis,), keepdims=False),
      bind=_xent_bind, kind=Kind.NN, index=(1,), batch=_labels_batch,
      doc="-log_softmax(logits)[label] along axis, one loss per row, for integer class labels (PyTorch's "
          "cross_entropy; TensorFlow's sparse form): labels have the logits' shape without axis. "
          "softmax_cross_entropy(logits, labels) calls it for integer labels. Labels get no gradient.")
