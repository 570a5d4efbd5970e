"""Shape ops: reshape, broadcasting and its adjoint, axes, indexing, joins.

``sum_to`` is the adjoint of broadcasting that every broadcasting VJP uses;
its own VJP is ``broadcast_to``. Every shape op is linear in its value
inputs, so its JVP rule is the op itself applied to the tangents
(:func:`jvp_linear`, :func:`jvp_linear_together`); the constructors carry
none (:func:`jvp_zero`). The ``*_like`` variants take a reference node
instead of a static shape, so gradient graphs stay valid when dims are unknown
until evaluation (``None``): symsym's ``grad`` never needs a number.
"""

from __future__ import annotations

import math

import numpy as np

from .. import kernels
from ..errors import DTypeError, ShapeError
from ..sentinel import Sentinel
from . import batching
from .index import parse_key, take, view
from .params import (
    axes_param,
    axis_param,
    dims_param,
    dtype_name,
    dtype_param,
    float_param,
    float_value,
    index_param,
    int_param,
    is_int,
    shape_param,
    shown,
    tuple_param,
)
from .rules import expand_to, jvp_linear, jvp_linear_together, jvp_zero, reshape_to, unbroadcast
from .shapes import broadcast_shapes, norm_axis, numeric_dtype, one_axis, result_dtype, shape_str
from .table import NO_GRAD, OPS, defop
from .traits import Kind, inputs_from


def _ndim(x):
    return x.ndim if hasattr(x, "ndim") else np.ndim(x)


def _shape_param(shape, minus_one=False):
    return dims_param(shape, "shape", minus_one)


# --- reshape ---------------------------------------------------------------

def _reshape_bind(x, *shape):
    if len(shape) == 1 and not isinstance(shape[0], (int, np.integer)):
        shape = shape[0]
    return (x,), {"shape": _shape_param(shape, minus_one=True)}


def _reshape_infer(x, shape):
    shape_param(shape, minus_one=True)
    known = math.prod(d for d in shape if d != -1)
    if None in x.shape:
        return tuple(None if d == -1 else d for d in shape), x.dtype
    size = math.prod(x.shape)
    if -1 in shape:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {shape_str(x.shape)} into shape {shape}")
        shape = tuple(size // known if d == -1 else d for d in shape)
    elif known != size:
        raise ShapeError(f"cannot reshape {shape_str(x.shape)} ({size} elements) into shape {shape}")
    return shape, x.dtype


SHAPE = Kind.SHAPE
_reshape = defop("reshape", _reshape_infer, lambda x, shape: np.reshape(x, shape),
                 lambda ns, g, out, x, shape: reshape_to(ns, g, x), jvp=jvp_linear("reshape"),
                 bind=_reshape_bind, code="np.reshape({0}, {shape})", kind=SHAPE, linear=(0,),
                 noop_on_same_type=True, batch=batching.reshape,
      doc="Same elements, C order, another shape (one dim may be -1).")
defop("reshape_like", lambda x, ref: (ref.shape, x.dtype), lambda x, ref: np.reshape(x, np.shape(ref)),
      lambda ns, g, out, x, ref: reshape_to(ns, g, x), None, jvp=jvp_linear("reshape_like"), kind=SHAPE, linear=(0,),
      shape_only=(1,),
      noop_on_same_type=True, batch=batching.like(_reshape), code="np.reshape({0}, np.shape({1}))",
      doc="Reshape x to ref's shape, known only at evaluation (gradient graphs with unknown dims).")


# --- broadcasting and its adjoint -------------------------------------------

def _shape_bind(x, shape):
    return (x,), {"shape": _shape_param(shape)}


def _broadcast_infer(x, shape):
    shape_param(shape)
    if len(shape) < len(x.shape) or broadcast_shapes(x.shape, shape) != tuple(shape):
        raise ShapeError(f"cannot broadcast {shape_str(x.shape)} to shape {shape_str(shape)}")
    return tuple(shape), x.dtype


def _sum_to_infer(x, shape):
    shape_param(shape)
    lead = len(x.shape) - len(shape)
    if lead < 0 or any(t != 1 and d is not None and d != t for t, d in zip(shape, x.shape[lead:])):
        raise ShapeError(f"cannot sum {shape_str(x.shape)} down to shape {shape_str(shape)}")
    return tuple(shape), x.dtype


_broadcast_to = defop("broadcast_to", _broadcast_infer, kernels.broadcast_view,
                      lambda ns, g, out, x, shape: unbroadcast(ns, g, x), jvp=jvp_linear("broadcast_to"),
                      bind=_shape_bind, code="np.broadcast_to({0}, {shape})", kind=SHAPE, linear=(0,),
                      noop_on_same_type=True, batch=batching.broadcast_to,
      doc="Broadcast to a shape (a read-only view); the VJP is sum_to.")
_sum_to = defop("sum_to", _sum_to_infer, kernels.sum_to,
                lambda ns, g, out, x, shape: expand_to(ns, g, x), jvp=jvp_linear("sum_to"), kind=SHAPE, linear=(0,),
                noop_on_same_type=True, batch=batching.sum_to, bind=_shape_bind,
                doc="The inverse of broadcasting: sum the broadcast axes away. VJP: broadcast_to.")
defop("sum_like", lambda x, ref: (ref.shape, x.dtype), lambda x, ref: kernels.sum_to(x, np.shape(ref)),
      lambda ns, g, out, x, ref: expand_to(ns, g, x), None, jvp=jvp_linear("sum_like"), kind=SHAPE, linear=(0,),
      shape_only=(1,),
      noop_on_same_type=True, batch=batching.like(_sum_to), doc="sum_to ref's shape, known only at evaluation.")
defop("broadcast_like", lambda x, ref: (broadcast_shapes(x.shape, ref.shape), x.dtype),
      lambda x, ref: kernels.broadcast_view(x, np.shape(ref)),
      lambda ns, g, out, x, ref: unbroadcast(ns, g, x), None, jvp=jvp_linear("broadcast_like"), kind=SHAPE,
      linear=(0,), shape_only=(1,),
      noop_on_same_type=True, batch=batching.like(_broadcast_to),
      doc="broadcast_to ref's shape, known only at evaluation.")


# --- axes ------------------------------------------------------------------

def _expand_bind(x, axis):
    n = (1 if isinstance(axis, (int, np.integer)) else len(axis))
    return (x,), {"axis": norm_axis(axis, _ndim(x) + n)}


def _expand_infer(x, axis):
    axes_param(axis, len(x.shape) + (len(axis) if isinstance(axis, tuple) else 0))
    dims = iter(x.shape)
    return tuple(1 if i in axis else next(dims) for i in range(len(x.shape) + len(axis))), x.dtype


defop("expand_dims", _expand_infer, kernels.expand_dims,
      lambda ns, g, out, x, axis: ns.squeeze(g, axis), jvp=jvp_linear("expand_dims"),
      bind=_expand_bind, code="np.expand_dims({0}, {axis})", kind=SHAPE, linear=(0,), noop_on_same_type=True,
      batch=batching.axes, doc="Insert length-1 axes.")


def _squeeze_bind(x, axis=None):
    shape = x.shape if hasattr(x, "shape") else np.shape(x)
    if axis is None:
        if None in shape:
            raise ShapeError(f"squeeze with unknown dims {shape_str(shape)} needs an explicit axis")
        axis = tuple(i for i, d in enumerate(shape) if d == 1)
    return (x,), {"axis": norm_axis(axis, len(shape))}


def _squeeze_infer(x, axis):
    for a in axes_param(axis, len(x.shape)):
        if x.shape[a] not in (1, None):
            raise ShapeError(f"cannot squeeze axis {a} of length {x.shape[a]}")
    return tuple(d for i, d in enumerate(x.shape) if i not in axis), x.dtype


defop("squeeze", _squeeze_infer, lambda x, axis: np.squeeze(x, axis),
      lambda ns, g, out, x, axis: ns.expand_dims(g, axis), jvp=jvp_linear("squeeze"),
      bind=_squeeze_bind, code="np.squeeze({0}, {axis})", kind=SHAPE, linear=(0,), noop_on_same_type=True,
      batch=batching.axes, doc="Remove length-1 axes.")


def _transpose_bind(x, *axes):
    if len(axes) == 1 and (axes[0] is None or not isinstance(axes[0], (int, np.integer))):
        axes = axes[0]
    n = _ndim(x)
    if axes is None or axes == ():
        axes = tuple(range(n))[::-1]
    else:
        axes = tuple(one_axis(a, n, "axes") for a in tuple_param(axes, "axes"))
    return (x,), {"axes": axes}


def _transpose_infer(x, axes):
    if not isinstance(axes, tuple) or not all(is_int(a) for a in axes) or sorted(axes) != list(range(len(x.shape))):
        raise ShapeError(f"param 'axes' = {shown(axes)} is not a permutation of {len(x.shape)} axes")
    return tuple(x.shape[a] for a in axes), x.dtype


defop("transpose", _transpose_infer, kernels.transpose,
      lambda ns, g, out, x, axes: ns.transpose(g, tuple(int(i) for i in np.argsort(axes))),
      jvp=jvp_linear("transpose"), bind=_transpose_bind, code="np.transpose({0}, {axes})", kind=SHAPE, linear=(0,),
      batch=batching.transpose,
      doc="Permute axes (reverse them by default); the VJP applies the inverse permutation.")


_SWAPS: dict[int, dict] = {}


def swap_last(ns, x):
    """``x`` with its last two axes swapped (a matrix transpose per batch).

    The permutation is made once per rank and applied without ``bind``: this
    sits in matmul's VJP, on every backward sweep of every MLP.
    """
    params = _SWAPS.get(x.ndim)
    if params is None:
        perm = list(range(x.ndim))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        params = _SWAPS[x.ndim] = {"axes": tuple(perm)}
    return ns.apply(OPS["transpose"], (x,), params)


# --- indexing ----------------------------------------------------------------

def _getitem_bind(x, *rest, index=None):
    if index is not None:
        return (x, *rest), {"index": index}
    (key,) = rest
    spec, arrays = parse_key(key, getattr(x, "shape", None))
    return (x, *arrays), {"index": spec}


def _index_infer(x, arrays, index):
    """The shape ``x[index]`` selects, after checking the spec and the index arrays."""
    index_param(index, len(arrays))
    for a in arrays:
        if np.dtype(a.dtype).kind not in "iu":
            raise DTypeError(f"param 'index': array indices must be integers, got {a.dtype}")
    return view(index).shape(x.shape, [a.shape for a in arrays])


def _getitem_infer(x, *arrays, index):
    return _index_infer(x, arrays, index), x.dtype


def _scatter_add_infer(g, like, *arrays, index):
    target = _index_infer(like, arrays, index)
    if len(g.shape) > len(target) or broadcast_shapes(g.shape, target) != target:
        raise ShapeError(f"param 'index' selects shape {shape_str(target)}, which g of shape "
                         f"{shape_str(g.shape)} does not broadcast to")
    return like.shape, g.dtype


def _getitem_impl(x, *arrays, index):
    return x[view(index).key(arrays)]


def _scatter_add_impl(g, like, *arrays, index):
    spec = view(index)
    scatter = kernels.scatter_at if spec.has_arrays else kernels.scatter_set
    return scatter(g, np.shape(like), spec.key(arrays))


def _getitem_vjp(ns, i, g, out, x, *arrays, index):
    if i != 0:
        return NO_GRAD
    return ns.scatter_add(g, x, *arrays, index=index)


def _scatter_add_vjp(ns, i, g, out, gin, like, *arrays, index):
    if i != 0:
        return NO_GRAD
    return ns.getitem(g, *arrays, index=index)


defop("getitem", _getitem_infer, _getitem_impl, vjp_n=_getitem_vjp, jvp=jvp_linear("getitem"), bind=_getitem_bind,
      kind=SHAPE, linear=(0,),
      index=inputs_from(1), batch=batching.getitem,
      doc="x[key] with ints, slices, None, Ellipsis, integer arrays and boolean masks (numpy's rules; a mask "
          "is its coordinates, x[mask.nonzero()]). Index arrays are inputs and get no gradient. VJP: scatter_add.")
defop("scatter_add", _scatter_add_infer, _scatter_add_impl,
      vjp_n=_scatter_add_vjp, jvp=jvp_linear("scatter_add"),
      bind=lambda g, like, *arrays, index: ((g, like, *arrays), {"index": index}),
      kind=SHAPE, linear=(0,), shape_only=(1,), index=inputs_from(2), batch=batching.scatter_add,
      doc="Zeros of like's shape with g added at x[key] (repeated indices accumulate): "
          "the adjoint of getitem. VJP: getitem.")


# --- joins -------------------------------------------------------------------

def _concat_bind(xs, axis=0):
    xs = tuple(xs)
    if not xs:
        raise ShapeError("need at least one array to concatenate")
    return xs, {"axis": one_axis(axis, _ndim(xs[0]))}


def _concat_infer(*xs, axis):
    if not xs:
        raise ShapeError("need at least one array to concatenate")
    nd = len(xs[0].shape)
    axis_param(axis, nd)
    for x in xs:
        if len(x.shape) != nd:
            raise ShapeError("all inputs must have the same number of dimensions")
    out = []
    for d in range(nd):
        dims = [x.shape[d] for x in xs]
        if d == axis:
            out.append(None if None in dims else sum(dims))
            continue
        known = {v for v in dims if v is not None}
        if len(known) > 1:
            raise ShapeError(f"sizes differ along axis {d}: {dims}")
        out.append(known.pop() if known else None)
    return tuple(out), result_dtype(*xs)


defop("concatenate", _concat_infer, lambda *xs, axis: np.concatenate(xs, axis=axis),
      vjp_n=lambda ns, i, g, out, *xs, axis: ns.concat_part(g, *xs, axis=axis, part=i),
      jvp=jvp_linear_together("concatenate"),
      bind=_concat_bind, code="np.concatenate(({args},), axis={axis})", kind=SHAPE, linear_together=True,
      batch=batching.join,
      doc="Join along an existing axis; each input's cotangent is its slice of g.")


def _concat_part_impl(g, *refs, axis, part):
    start = sum(np.shape(r)[axis] for r in refs[:part])
    key = (slice(None),) * axis + (slice(start, start + np.shape(refs[part])[axis]),)
    return g[key]


def _concat_part_vjp(ns, i, g, out, gin, *refs, axis, part):
    if i != 0:
        return NO_GRAD
    pieces = [g if j == part else ns.zeros_like(r) for j, r in enumerate(refs)]
    return ns.concatenate(pieces, axis=axis)


def _concat_part_infer(g, *refs, axis, part):
    ref = refs[int_param(part, "part", 0, len(refs) - 1)]
    axis_param(axis, len(ref.shape))
    return ref.shape, g.dtype


defop("concat_part", _concat_part_infer, _concat_part_impl,
      vjp_n=_concat_part_vjp, jvp=jvp_linear("concat_part"), kind=SHAPE, linear=(0,), shape_only=inputs_from(1),
      batch=batching.concat_part,
      bind=lambda g, *refs, axis, part: ((g, *refs), {"axis": axis, "part": part}),
      doc="The slice of g that concatenate took from refs[part] (offsets from the refs' shapes).")


def _stack_bind(xs, axis=0):
    xs = tuple(xs)
    if not xs:
        raise ShapeError("need at least one array to stack")
    return xs, {"axis": one_axis(axis, _ndim(xs[0]) + 1)}


def _stack_infer(*xs, axis):
    if not xs:
        raise ShapeError("need at least one array to stack")
    shape = xs[0].shape
    axis_param(axis, len(shape) + 1)
    for x in xs:
        if len(x.shape) != len(shape):
            raise ShapeError("all inputs must have the same shape")
        merged = []
        for a, b in zip(shape, x.shape):
            if a is not None and b is not None and a != b:
                raise ShapeError(f"all inputs must have the same shape, got {shape_str(shape)} "
                                 f"and {shape_str(x.shape)}")
            merged.append(a if a is not None else b)
        shape = tuple(merged)
    return shape[:axis] + (len(xs),) + shape[axis:], result_dtype(*xs)


def _stack_vjp(ns, i, g, out, *xs, axis):
    return ns.getitem(g, index=take(i, axis))


defop("stack", _stack_infer, lambda *xs, axis: np.stack(xs, axis=axis), vjp_n=_stack_vjp,
      jvp=jvp_linear_together("stack"),
      bind=_stack_bind, code="np.stack(({args},), axis={axis})", kind=SHAPE, linear_together=True,
      batch=batching.join,
      doc="Join along a new axis; each input's cotangent is g indexed at its position.")


def _tri_bind(x, k=0):
    return (x,), {"k": int_param(k, "k")}


def _tri_infer(x, k):
    int_param(k, "k")
    if len(x.shape) < 2:
        raise ShapeError("tril/triu need at least 2 dimensions")
    return x.shape, x.dtype


defop("tril", _tri_infer, lambda x, k: np.tril(x, k), lambda ns, g, out, x, k: ns.tril(g, k), jvp=jvp_linear("tril"),
      bind=_tri_bind, code="np.tril({0}, {k})", kind=SHAPE, linear=(0,), batch=batching.triangle,
      doc="Lower triangle (k-th diagonal and below); the rest zero.")
defop("triu", _tri_infer, lambda x, k: np.triu(x, k), lambda ns, g, out, x, k: ns.triu(g, k), jvp=jvp_linear("triu"),
      bind=_tri_bind, code="np.triu({0}, {k})", kind=SHAPE, linear=(0,), batch=batching.triangle,
      doc="Upper triangle (k-th diagonal and above); the rest zero.")


# --- constructors used by rules ------------------------------------------------

_OWN = Sentinel("OWN")  # a ``*_like`` op without a dtype param keeps x's dtype


def _like_infer(x, dtype=_OWN):
    return x.shape, numeric_dtype(x.dtype if dtype is _OWN else dtype_name(dtype))


def _like_bind(x, dtype=None):
    return (x,), ({} if dtype is None else {"dtype": dtype_param(dtype)})


defop("zeros_like", _like_infer, lambda x, dtype=None: np.zeros(np.shape(x), dtype or np.result_type(x)),
      None, jvp=jvp_zero, bind=_like_bind, kind=Kind.CONSTANT, shape_only=(0,), batch=batching.filled_like(0.0),
      doc="Zeros of x's shape (and dtype unless given). Constant: no gradient.")
defop("ones_like", _like_infer, lambda x, dtype=None: np.ones(np.shape(x), dtype or np.result_type(x)),
      None, jvp=jvp_zero, bind=_like_bind, kind=Kind.CONSTANT, shape_only=(0,), batch=batching.filled_like(1.0),
      doc="Ones of x's shape (and dtype unless given). Constant: no gradient.")


def _full_like_bind(x, value, dtype=None):
    return (x,), {"value": float_param(value, "value"), **({} if dtype is None else {"dtype": dtype_param(dtype)})}


def _full_like_infer(x, value, dtype=_OWN):
    float_value(value, "value")
    return _like_infer(x, dtype)


defop("full_like", _full_like_infer,
      lambda x, value, dtype=None: np.full(np.shape(x), value, dtype or np.result_type(x)),
      None, jvp=jvp_zero, bind=_full_like_bind, kind=Kind.CONSTANT, shape_only=(0,), batch=batching.filled_like(),
      doc="value everywhere, in x's shape. Constant: no gradient.")


def _full_bind(shape, value, dtype="float64"):
    return (), {"shape": _shape_param(shape), "value": float_param(value, "value"), "dtype": dtype_param(dtype)}


def _full_infer(shape, value, dtype):
    float_value(value, "value")
    return shape_param(shape), np.dtype(dtype_name(dtype))


defop("full", _full_infer,
      lambda shape, value, dtype: np.full(shape, value, dtype), jvp=jvp_zero, bind=_full_bind, nin=0,
      kind=Kind.CONSTANT,
      code="np.full({shape}, {value!r}, {dtype!r})", doc="A constant array of a static shape.")
