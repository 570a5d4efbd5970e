"""Integer positions: argsort, argmax, argmin by order; argwhere by truth.

Their results are indices, piecewise constant in the input, so no gradient
or tangent flows through them (as in PyTorch); the values they locate are
taken with ``take_along_axis``, whose gradient scatters back. argsort is
stable, so ties keep their input order (numpy's ``kind="stable"``; numpy's
default sort gives the same order on distinct values).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ShapeError
from . import batching
from .index import take
from .params import axis_param, bool_param, shown
from .rules import jvp_zero
from .scans import axis_or_flat_batch
from .shapes import numeric_dtype, one_axis
from .table import defop
from .traits import Kind

_INDEX = np.dtype(np.intp)


def _ndim(x):
    return x.ndim if hasattr(x, "ndim") else np.ndim(x)


def _check_axis(x, axis, what: str):
    if axis is not None:
        if len(x.shape) == 0:
            raise ShapeError(f"param 'axis' = {shown(axis)} needs at least a 1-d input ({what})")
        axis_param(axis, len(x.shape))
    numeric_dtype(x.dtype)


def _argsort_bind(x, axis=-1):
    return (x,), {"axis": None if axis is None else one_axis(axis, max(_ndim(x), 1))}


def _argsort_infer(x, axis):
    _check_axis(x, axis, "axis=None sorts the flattened input")
    if axis is None:
        return (None if None in x.shape else math.prod(x.shape),), _INDEX
    return tuple(x.shape), _INDEX


defop("argsort", _argsort_infer, lambda x, axis: np.argsort(x, axis=axis, kind="stable"), None, jvp=jvp_zero,
      bind=_argsort_bind, kind=Kind.SHAPE, batch=axis_or_flat_batch, fresh=True,
      code="np.argsort({0}, axis={axis}, kind='stable')",
      doc="The indices that sort x along axis (default -1; None: the flattened input), stable: tied "
          "elements keep their order. Integer-valued: no gradient.")


def _arg_bind(x, axis=None, keepdims=False):
    return (x,), {"axis": None if axis is None else one_axis(axis, max(_ndim(x), 1)),
                  "keepdims": bool_param(keepdims, "keepdims")}


def _arg_infer(x, axis, keepdims):
    _check_axis(x, axis, "axis=None searches the flattened input")
    keepdims = bool_param(keepdims, "keepdims")
    if axis is None:
        return ((1,) * len(x.shape) if keepdims else ()), _INDEX
    return tuple(1 if i == axis else d for i, d in enumerate(x.shape) if keepdims or i != axis), _INDEX


def _arg_batch(op, ns, inputs, batched, axis, keepdims):
    (x,) = inputs
    if axis is not None:
        return ns.apply(op, inputs, {"axis": axis + 1, "keepdims": keepdims}), True
    if keepdims or None in x.shape:
        raise batching.NotBatchable
    return ns.apply(op, (ns.reshape(x, (x.shape[0], -1)),), {"axis": 1, "keepdims": False}), True


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    defop(_name, _arg_infer, (lambda f: lambda x, axis, keepdims: np.asarray(f(x, axis=axis, keepdims=keepdims)))(_fn),
          None, jvp=jvp_zero, bind=_arg_bind, kind=Kind.SHAPE, batch=_arg_batch,
          doc=f"The index of the first {_name[3:]}imum along axis (None: of the flattened input, numpy's "
              "default). Integer-valued: no gradient.")


def _argwhere_infer(x):
    if len(x.shape) == 0:
        raise ShapeError("needs at least a 1-d input (a 0-d truth value selects no axis)")
    value = getattr(x, "value", None)  # a constant node: its count is known
    count = int(np.count_nonzero(value)) if isinstance(value, np.ndarray) else None
    return (count, len(x.shape)), _INDEX


def _argwhere_batch(op, ns, inputs, batched):
    """Each element's coordinates, stacked: only when every element has the same count (a batch of masks
    selecting different counts is ragged, which no array holds)."""
    (x,) = inputs
    rows = [ns.apply(op, (ns.getitem(x, index=take(k)),), {}) for k in range(x.shape[0])]
    counts = [r.shape[0] for r in rows]
    if None not in counts and len(set(counts)) > 1:
        raise ShapeError(f"argwhere: the elements of a batch have different counts {counts}: a mask computed "
                         "per element selects a ragged batch; use where() instead")
    return ns.stack(rows, axis=0), True


defop("argwhere", _argwhere_infer, np.argwhere, None, jvp=jvp_zero, kind=Kind.SHAPE, batch=_argwhere_batch,
      fresh=True, code="np.argwhere({0})",
      doc="numpy's argwhere: the coordinates of x's nonzero (true) elements, one row each, in row-major "
          "order; shape (count, x.ndim), the count unknown until evaluation unless x is a constant. "
          "Column d is x.nonzero()[d], so x[mask] is a gather by its columns. Integer-valued: no gradient; "
          "batched one element at a time (the elements' counts must agree).")
