"""Type-rule helpers: numpy's broadcasting, promotion and axis arguments on static shapes.

Every op family's type rule is written with these (and :mod:`common.ops.params`),
as are the printers' and evaluator's messages; ``None`` is a dim unknown until
evaluation.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .params import is_int, shown


def shape_str(shape) -> str:
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"({dims},)" if len(shape) == 1 else f"({dims})"


def broadcast_shapes(*shapes) -> tuple:
    """numpy's broadcasting of static shapes, with ``None`` for unknown dims."""
    if len(shapes) == 2:  # the common cases, without the general loop
        a, b = shapes
        if a == b and None not in a:
            return tuple(a)
        if not a or not b:  # a scalar broadcasts to the other shape, unknown dims included
            return tuple(b or a)
    ndim = max((len(s) for s in shapes), default=0)
    padded = [(1,) * (ndim - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ShapeError("cannot broadcast shapes " + " and ".join(shape_str(s) for s in shapes))
        if known:
            out.append(known.pop())
        elif None in dims:
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def result_dtype(*xs) -> np.dtype:
    """numpy's type promotion over the inputs' dtypes."""
    first = xs[0].dtype
    for x in xs:
        if x.dtype != first:
            return np.result_type(*[x.dtype for x in xs])
    return first


def float_dtype(dtype) -> np.dtype:
    """The dtype a float-valued ufunc gives for ``dtype`` (numpy's loop choice)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return dtype
    if dtype.kind in "biu":
        return np.result_type(dtype, np.float16)
    raise DTypeError(f"dtype {dtype} is not supported")


def numeric_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise DTypeError(f"dtype {dtype} is not supported")
    return dtype


def norm_axis(axis, ndim: int, name: str = "axis") -> tuple:
    """An axis argument (None, int or tuple) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    if axis.__class__ is int and -ndim <= axis < ndim:  # the common case, checked as one_axis would
        return (axis % ndim,)
    if is_int(axis):
        axis = (axis,)
    elif not isinstance(axis, (tuple, list)):
        raise ShapeError(f"param {name!r} must be None, an int or a tuple of ints, got {shown(axis)}")
    out = []
    for a in axis:
        out.append(one_axis(a, ndim, name))
    if len(set(out)) != len(out):
        raise ShapeError(f"param {name!r}: repeated axis in {tuple(axis)}")
    return tuple(sorted(out))


def one_axis(axis: int, ndim: int, name: str = "axis") -> int:
    """One axis argument (an int, negative from the end) as a non-negative int."""
    if not (axis.__class__ is int or is_int(axis)):
        raise ShapeError(f"param {name!r} must be an int, got {shown(axis)}")
    if not -ndim <= axis < ndim:
        raise ShapeError(f"param {name!r} = {axis} is out of range for {ndim}-d input")
    return int(axis) % ndim
