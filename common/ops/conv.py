"""Convolution and pooling, PyTorch's layouts: inputs (N, C, *spatial), weights (O, C / groups, *kernel).

Three bilinear ops, closed under differentiation, make any convolution's
derivatives of every order:

* ``conv(x, w)``: the cross-correlation (PyTorch's ``conv1d``/``conv2d``);
* ``conv_transpose(g, w)``: its adjoint in ``x`` (the input's cotangent,
  PyTorch's transposed convolution with the input's ``size``);
* ``conv_weight(x, g)``: its adjoint in ``w`` (the weight's cotangent).

Each is the adjoint of another in each argument, so each VJP is one of the
three, and each JVP the product rule. They run as im2col: a
``sliding_window_view`` of the padded input (no copy), one copy into columns,
and one BLAS matmul; the transposed convolution scatters its columns back with
one strided add per kernel offset (25 for a 5x5 kernel), never a loop over
pixels.

Pooling is ``windows(x)`` (the same strided view as an op, each window's
elements in trailing axes, zero-padded) followed by the ``max`` or ``mean``
reduction (max pooling first puts -inf where the padding is, with ``where``
and a constant mask); its adjoint ``unwindows`` sums each window back into
place. Both are linear and each is the other's VJP: max pooling's gradient is
max's (ties share the cotangent evenly, where PyTorch picks one element)
scattered back.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import DTypeError, ShapeError
from .batching import NotBatchable, one_at_a_time
from .params import int_param, shown, tuple_param
from .rules import call, jvp_linear, jvp_product
from .shapes import float_dtype, result_dtype, shape_str
from .table import defop
from .traits import Kind

NN = Kind.NN


# ------------------------------------------------------------ params and shapes

def dims(v, name: str, d: int, lo: int) -> tuple:
    """A per-spatial-dim param (an int for all, or a tuple of ``d`` ints), each at least ``lo``."""
    if v.__class__ is int or isinstance(v, np.integer):
        v = (v,) * d
    v = tuple_param(v, name)
    if len(v) != d:
        raise ShapeError(f"param {name!r} = {v} needs {d} values, one per spatial dim")
    return tuple(int_param(x, name, lo, 2 ** 31) for x in v)


def out_size(size, ksize, stride, padding, dilation, what: str) -> tuple:
    """Each spatial dim's number of windows; a kernel larger than the padded input is an error."""
    out = []
    for s, k, st, p, dl in zip(size, ksize, stride, padding, dilation):
        if s is None or k is None:
            out.append(None)
            continue
        span = dl * (k - 1) + 1
        if span > s + 2 * p:
            raise ShapeError(f"{what} of extent {tuple(dl * (k - 1) + 1 for k, dl in zip(ksize, dilation) if k)} "
                             f"is larger than the padded input {tuple(s + 2 * p for s, p in zip(size, padding))}")
        out.append((s + 2 * p - span) // st + 1)
    return tuple(out)


def _floating(*xs):
    dtype = result_dtype(*xs)
    if dtype.kind not in "biuf":
        raise DTypeError(f"dtype {dtype} is not supported")
    return float_dtype(dtype)


def _geometry(x, d, stride, padding, dilation, groups, name):
    """Check the common params and ``x`` of layout (N, C, *spatial); return (N, C)."""
    if len(x.shape) != d + 2:
        raise ShapeError(f"{name} must be (N, C, {', '.join('LHW'[-d:] if d < 3 else 'DHW')}) for a {d}-d "
                         f"convolution, got {shape_str(x.shape)}")
    for v, n, lo in ((stride, "stride", 1), (padding, "padding", 0), (dilation, "dilation", 1)):
        if dims(v, n, d, lo) != v:
            raise ShapeError(f"param {n!r} must be a tuple of {d} ints, got {v!r}")
    int_param(groups, "groups", 1, 2 ** 31)
    return x.shape[:2]


def _check_weight(c, w, groups):
    o, cg = w.shape[:2]
    if o is not None and o % groups:
        raise ShapeError(f"groups = {groups} does not divide the {o} output channels")
    if c is not None and c % groups:
        raise ShapeError(f"groups = {groups} does not divide the {c} input channels")
    if c is not None and cg is not None and cg * groups != c:
        raise ShapeError(f"weight {shape_str(w.shape)} expects {cg * groups} input channels "
                         f"({cg} per group x {groups} groups), the input has {c}")


def _conv_infer(x, w, stride, padding, dilation, groups):
    d = len(w.shape) - 2
    if d < 1:
        raise ShapeError(f"weight must be (O, C / groups, *kernel), got {shape_str(w.shape)}")
    n, c = _geometry(x, d, stride, padding, dilation, groups, "input")
    _check_weight(c, w, groups)
    spatial = out_size(x.shape[2:], w.shape[2:], stride, padding, dilation, "kernel")
    return (n, w.shape[0], *spatial), _floating(x, w)


def _conv_transpose_infer(g, w, size, stride, padding, dilation, groups):
    d = len(w.shape) - 2
    size = dims(size, "size", d, 1)
    n, o = _geometry(g, d, stride, padding, dilation, groups, "cotangent")
    _check_weight(w.shape[1] * groups if w.shape[1] is not None else None, w, groups)
    want = out_size(size, w.shape[2:], stride, padding, dilation, "kernel")
    if not _fits((o, *g.shape[2:]), (w.shape[0], *want)):
        raise ShapeError(f"cotangent {shape_str(g.shape)} does not fit weight {shape_str(w.shape)} "
                         f"and input size {size}")
    return (n, None if w.shape[1] is None else w.shape[1] * groups, *size), _floating(g, w)


def _conv_weight_infer(x, g, ksize, stride, padding, dilation, groups):
    d = len(x.shape) - 2
    ksize = dims(ksize, "ksize", d, 1)
    n, c = _geometry(x, d, stride, padding, dilation, groups, "input")
    o = g.shape[1]
    want = out_size(x.shape[2:], ksize, stride, padding, dilation, "kernel")
    if len(g.shape) != d + 2 or not _fits((g.shape[0], *g.shape[2:]), (n, *want)):
        raise ShapeError(f"cotangent {shape_str(g.shape)} does not fit input {shape_str(x.shape)} and kernel {ksize}")
    if (o or 0) % groups or (c or 0) % groups:
        raise ShapeError(f"groups = {groups} does not divide the channels ({c} in, {o} out)")
    return (o, None if c is None else c // groups, *ksize), _floating(x, g)


def _fits(have, want) -> bool:
    """Dims that agree wherever both are known."""
    return len(have) == len(want) and all(a is None or b is None or a == b for a, b in zip(have, want))


# ------------------------------------------------------------ numpy: im2col and col2im

def window_view(x, ksize, stride, padding, dilation):
    """A view (..., *out, *ksize) of each window of ``x``'s last ``len(ksize)`` dims (zero-padded)."""
    if any(padding):
        x = np.pad(x, ((0, 0),) * (x.ndim - len(ksize)) + tuple((p, p) for p in padding))
    return _strided_windows(x, ksize, stride, dilation)


def _strided_windows(x, ksize, stride, dilation, writeable: bool = False):
    """:func:`window_view` of an already padded ``x``; a writeable one writes each element once where
    the windows do not overlap."""
    d = len(ksize)
    span = tuple(dl * (k - 1) + 1 for k, dl in zip(ksize, dilation))
    v = sliding_window_view(x, span, axis=tuple(range(x.ndim - d, x.ndim)), writeable=writeable)
    if any(s != 1 for s in stride) or any(dl != 1 for dl in dilation):
        v = v[(...,) + tuple(slice(None, None, s) for s in stride) + tuple(slice(None, None, dl) for dl in dilation)]
    return v


def _unwindows(cols, size, stride, padding, dilation):
    """The adjoint of :func:`window_view`: add each window (..., *out, *ksize) back into an input of ``size``."""
    d = len(size)
    lead = cols.shape[:cols.ndim - 2 * d]
    out_sp, ksize = cols.shape[cols.ndim - 2 * d:cols.ndim - d], cols.shape[cols.ndim - d:]
    full = tuple(s + 2 * p for s, p in zip(size, padding))
    if all(st >= dl * (k - 1) + 1 for k, st, dl in zip(ksize, stride, dilation)):
        # windows that do not overlap (pooling's): one copy into their view of the output, zeros only
        # where no window reaches
        tiled = all(dl == 1 and st == k and o * st == s for k, st, dl, o, s in
                    zip(ksize, stride, dilation, out_sp, full))
        padded = (np.empty if tiled else np.zeros)(lead + full, cols.dtype)
        np.copyto(_strided_windows(padded, ksize, stride, dilation, writeable=True), cols)
    else:
        padded = _scatter_windows(cols, lead + full, ksize, out_sp, stride, dilation)
    if any(padding):
        padded = padded[(...,) + tuple(slice(p, p + s) for p, s in zip(padding, size))]
    return padded


def _scatter_windows(cols, shape, ksize, out_sp, stride, dilation):
    """Overlapping windows added back: one strided add per kernel offset."""
    padded = np.zeros(shape, cols.dtype)
    for offset in np.ndindex(*ksize):
        where = tuple(slice(k * dl, k * dl + st * (o - 1) + 1, st)
                      for k, dl, st, o in zip(offset, dilation, stride, out_sp))
        padded[(...,) + where] += cols[(...,) + offset]
    return padded


def _columns(x, ksize, stride, padding, dilation, groups):
    """im2col: (N, G, C/G * prod(ksize), P) with P the number of output positions, and the output dims."""
    d = len(ksize)
    v = window_view(x, ksize, stride, padding, dilation)            # (N, C, *out, *k)
    n, c = x.shape[:2]
    out_sp = v.shape[2:2 + d]
    perm = (0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))   # (N, C, *k, *out)
    cols = v.transpose(perm).reshape(n, groups, (c // groups) * int(np.prod(ksize)), int(np.prod(out_sp)))
    return cols, out_sp


def _conv(x, w, stride, padding, dilation, groups):
    cols, out_sp = _columns(x, w.shape[2:], stride, padding, dilation, groups)
    o = w.shape[0]
    wm = w.reshape(groups, o // groups, -1)                        # (G, O/G, C/G * k)
    out = np.matmul(wm, cols)                                      # (N, G, O/G, P)
    return out.reshape(x.shape[0], o, *out_sp)


def _conv_transpose(g, w, size, stride, padding, dilation, groups):
    n, o = g.shape[:2]
    d = len(size)
    ksize = w.shape[2:]
    cg = w.shape[1]
    wm = w.reshape(groups, o // groups, -1)
    gm = g.reshape(n, groups, o // groups, -1)
    cols = np.matmul(wm.transpose(0, 2, 1), gm)                    # (N, G, C/G * k, P)
    cols = cols.reshape(n, groups * cg, *ksize, *g.shape[2:])     # (N, C, *k, *out)
    perm = (0, 1, *range(2 + d, 2 + 2 * d), *range(2, 2 + d))     # (N, C, *out, *k)
    return _unwindows(cols.transpose(perm), size, stride, padding, dilation)


def _conv_weight(x, g, ksize, stride, padding, dilation, groups):
    cols, out_sp = _columns(x, ksize, stride, padding, dilation, groups)   # (N, G, C/G * k, P)
    n, o = g.shape[:2]
    gm = g.reshape(n, groups, o // groups, -1)                               # (N, G, O/G, P)
    gw = np.matmul(gm.transpose(1, 2, 0, 3).reshape(groups, o // groups, -1),
                   cols.transpose(1, 0, 3, 2).reshape(groups, -1, cols.shape[2]))
    return gw.reshape(o, x.shape[1] // groups, *ksize)


# ------------------------------------------------------------ rules

def _spatial(x):
    return tuple(x.shape[2:])


def _conv_dx(ns, g, out, x, w, stride, padding, dilation, groups):
    return call(ns, "conv_transpose", g, w, size=_spatial(x), stride=stride, padding=padding, dilation=dilation,
                groups=groups)


def _conv_dw(ns, g, out, x, w, stride, padding, dilation, groups):
    return call(ns, "conv_weight", x, g, ksize=_spatial(w), stride=stride, padding=padding, dilation=dilation,
                groups=groups)


def _merge_batch(op, ns, inputs, batched, **params):
    """Batch axis on input 0 only: fold it into N (one call on a bigger batch), unfold the result."""
    (x, w), bw = inputs, batched[1]
    if bw or None in x.shape[:2]:
        raise NotBatchable
    b, n = x.shape[:2]
    out = ns.apply(op, (call(ns, "reshape", x, shape=(b * n, *x.shape[2:])), w), params)
    return call(ns, "reshape", out, shape=(b, n, *out.shape[1:])), True


def _conv_bind(x, w, stride=1, padding=0, dilation=1, groups=1):
    d = (w.ndim if hasattr(w, "ndim") else np.ndim(w)) - 2
    return (x, w), {"stride": dims(stride, "stride", d, 1), "padding": dims(padding, "padding", d, 0),
                    "dilation": dims(dilation, "dilation", d, 1), "groups": int_param(groups, "groups", 1, 2 ** 31)}


defop("conv", _conv_infer, _conv, _conv_dx, _conv_dw, jvp=jvp_product("conv"), bind=_conv_bind, kind=NN,
      linear=(0, 1), fresh=True, batch=_merge_batch,
      doc="Cross-correlation with PyTorch's conv1d/conv2d meaning: x (N, C, *spatial), w (O, C/groups, *k), "
          "out[n, o] = sum over the group's channels and the kernel of w * x's padded, strided, dilated "
          "window. VJPs: conv_transpose(g, w) and conv_weight(x, g).")


def _sized_bind(name):
    def bind(a, b, stride=1, padding=0, dilation=1, groups=1, **size):
        nd = (a.ndim if hasattr(a, "ndim") else np.ndim(a)) - 2
        if list(size) != [name]:
            raise ShapeError(f"param {name!r} is needed (and no other), got {sorted(size)}")
        return (a, b), {name: dims(size[name], name, nd, 1), "stride": dims(stride, "stride", nd, 1),
                        "padding": dims(padding, "padding", nd, 0), "dilation": dims(dilation, "dilation", nd, 1),
                        "groups": int_param(groups, "groups", 1, 2 ** 31)}
    return bind


def _ct_dg(ns, c, out, g, w, size, stride, padding, dilation, groups):
    return call(ns, "conv", c, w, stride=stride, padding=padding, dilation=dilation, groups=groups)


def _ct_dw(ns, c, out, g, w, size, stride, padding, dilation, groups):
    return call(ns, "conv_weight", c, g, ksize=_spatial(w), stride=stride, padding=padding, dilation=dilation,
                groups=groups)


defop("conv_transpose", _conv_transpose_infer, _conv_transpose, _ct_dg, _ct_dw, jvp=jvp_product("conv_transpose"),
      bind=_sized_bind("size"), kind=NN, linear=(0, 1), fresh=True, batch=_merge_batch,
      doc="The adjoint of conv in its input (a transposed convolution): g (N, O, *out), w (O, C/groups, *k) "
          "-> (N, C, *size). VJPs: conv(c, w) and conv_weight(c, g).")


def _cw_dx(ns, c, out, x, g, ksize, stride, padding, dilation, groups):
    return call(ns, "conv_transpose", g, c, size=_spatial(x), stride=stride, padding=padding, dilation=dilation,
                groups=groups)


def _cw_dg(ns, c, out, x, g, ksize, stride, padding, dilation, groups):
    return call(ns, "conv", x, c, stride=stride, padding=padding, dilation=dilation, groups=groups)


defop("conv_weight", _conv_weight_infer, _conv_weight, _cw_dx, _cw_dg, jvp=jvp_product("conv_weight"),
      bind=_sized_bind("ksize"), kind=NN, linear=(0, 1), fresh=True,
      batch=one_at_a_time,
      doc="The adjoint of conv in its weight: x (N, C, *spatial), g (N, O, *out) -> (O, C/groups, *ksize), "
          "the sum over the batch and the positions. VJPs: conv_transpose(g, c) and conv(x, c).")


# ------------------------------------------------------------ windows (pooling)

def _windows_params(x, ksize, stride, padding, dilation):
    d = len(ksize) if isinstance(ksize, tuple) else 0
    if not 1 <= d <= len(x.shape):
        raise ShapeError(f"param 'ksize' must be a tuple of 1 to {len(x.shape)} window sizes, got {ksize!r}")
    for v, n, lo in ((ksize, "ksize", 1), (stride, "stride", 1), (padding, "padding", 0), (dilation, "dilation", 1)):
        if isinstance(v, tuple) and len(v) != d:
            raise ShapeError(f"params 'ksize' = {ksize!r} and {n!r} = {shown(v)} differ in length")
        if dims(v, n, d, lo) != v:
            raise ShapeError(f"param {n!r} must be a tuple of {d} ints, got {v!r}")
    return d


def _windows_infer(x, ksize, stride, padding, dilation):
    d = _windows_params(x, ksize, stride, padding, dilation)
    spatial = out_size(x.shape[-d:], ksize, stride, padding, dilation, "window")
    return (*x.shape[:-d], *spatial, *ksize), x.dtype


def _unwindows_infer(g, size, ksize, stride, padding, dilation):
    d = _windows_params(g, ksize, stride, padding, dilation)
    size = dims(size, "size", d, 1)
    want = out_size(size, ksize, stride, padding, dilation, "window")
    if len(g.shape) < 2 * d or not _fits(g.shape[-2 * d:], (*want, *ksize)):
        raise ShapeError(f"windows {shape_str(g.shape)} do not fit an input of size {size}")
    return (*g.shape[:-2 * d], *size), g.dtype


def _windows_bind(x, ksize, stride=None, padding=0, dilation=1):
    d = len(ksize) if isinstance(ksize, (tuple, list)) else 2
    ksize = dims(ksize, "ksize", d, 1)
    return (x,), {"ksize": ksize, "stride": ksize if stride is None else dims(stride, "stride", d, 1),
                  "padding": dims(padding, "padding", d, 0), "dilation": dims(dilation, "dilation", d, 1)}


def _windows_vjp(ns, g, out, x, ksize, stride, padding, dilation):
    return call(ns, "unwindows", g, size=tuple(x.shape[-len(ksize):]), ksize=ksize, stride=stride,
                padding=padding, dilation=dilation)


def on_stack(op, ns, inputs, batched, **params):
    return ns.apply(op, inputs, params), True


defop("windows", _windows_infer, window_view, _windows_vjp, jvp=jvp_linear("windows"), bind=_windows_bind,
      kind=Kind.SHAPE, linear=(0,), batch=on_stack,
      doc="Every window of x's last len(ksize) dims, zero-padded, as a view (..., *out, *ksize): "
          "pooling is a reduction over its trailing axes. VJP: unwindows (each window added back).")


def _unwindows_vjp(ns, g, out, cols, size, ksize, stride, padding, dilation):
    return call(ns, "windows", g, ksize=ksize, stride=stride, padding=padding, dilation=dilation)


def _unwindows_bind(g, size, ksize, stride=None, padding=0, dilation=1):
    d = len(ksize)
    ksize = dims(ksize, "ksize", d, 1)
    return (g,), {"size": dims(size, "size", d, 1), "ksize": ksize,
                  "stride": ksize if stride is None else dims(stride, "stride", d, 1),
                  "padding": dims(padding, "padding", d, 0), "dilation": dims(dilation, "dilation", d, 1)}


defop("unwindows", _unwindows_infer,
      lambda g, size, ksize, stride, padding, dilation: _unwindows(g, size, stride, padding, dilation),
      _unwindows_vjp, jvp=jvp_linear("unwindows"), bind=_unwindows_bind, kind=Kind.SHAPE, linear=(0,),
      fresh=True, batch=on_stack,
      doc="The adjoint of windows: each window (..., *out, *ksize) added back into an input of size "
          "(..., *size) (overlaps summed, padding dropped). VJP: windows.")
