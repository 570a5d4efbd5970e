"""``linalg`` and ``nn``: numpy's and PyTorch's spellings over the op table, for any namespace.

``T.linalg.solve(a, b)``, ``symnum.linalg.eigh(a)``, ``T.nn.conv2d(x, w)``:
each group is made once per namespace (:func:`linalg_for`, :func:`nn_for`)
from the ops of :mod:`common.ops.matrix`, :mod:`common.ops.spectral` and
:mod:`common.ops.conv`, so a workload written against ``ns`` writes
``ns.linalg.cholesky`` whatever ``ns`` is. What is here is only spelling:
the functions that return tuples (slogdet, eigh, svd, qr) gather their
one-result ops, ``norm`` is numpy's ``norm`` composed of reductions (and
singular values for the spectral norms), and the pooling functions are a
reduction over ``windows``. Every derivative is the ops' own.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np

from .errors import ShapeError, op_error
from .ops.conv import dims, window_view
from .site import user_site


def _refuse(op: str, message: str, x=None):
    return op_error(ShapeError, op, message, [x] if hasattr(x, "shape") else [], user_site())


def linalg_for(ns) -> SimpleNamespace:
    """numpy.linalg's functions over ``ns``."""
    def slogdet(a):
        return ns.slogdet_sign(a), ns.slogdet_logabs(a)

    def eigh(a):
        return ns.eigh_w(a), ns.eigh_v(a)

    def svd(a, full_matrices=False):
        return (ns.svd_u(a, full_matrices=full_matrices), ns.svd_s(a, full_matrices=full_matrices),
                ns.svd_vh(a, full_matrices=full_matrices))

    def qr(a):
        return ns.qr_q(a), ns.qr_r(a)

    def norm(x, ord=None, axis=None, keepdims=False):
        return _norm(ns, x, ord, axis, keepdims)

    return SimpleNamespace(solve=ns.solve, solve_triangular=ns.solve_triangular, cholesky=ns.cholesky, inv=ns.inv,
                           det=ns.det, slogdet=slogdet, eigh=eigh, svd=svd, qr=qr, norm=norm)


def _norm(ns, x, ord, axis, keepdims):
    """numpy.linalg.norm: a vector norm over one axis, a matrix norm over two, 2-norm of all when neither."""
    nd = x.ndim
    if axis is None:
        if ord is None:
            out = ns.sqrt(ns.sum(x * x, axis=None, keepdims=keepdims))
            return out
        if nd not in (1, 2):
            raise _refuse("norm", f"ord={ord!r} without axis needs a 1-d or 2-d input, got {nd}-d", x)
        axis = tuple(range(nd))
    elif isinstance(axis, int):
        axis = (axis,)
    if not isinstance(axis, tuple) or len(axis) not in (1, 2) or not all(isinstance(a, int) for a in axis):
        raise _refuse("norm", f"axis must be None, an int or a pair of ints, got {axis!r}", x)
    if not all(-nd <= a < nd for a in axis) or len({a % nd for a in axis}) != len(axis):
        raise _refuse("norm", f"axis {axis} is out of range or repeated for a {nd}-d input", x)
    axis = tuple(a % nd for a in axis)
    if len(axis) == 1:
        return _vector_norm(ns, x, ord, axis, keepdims)
    return _matrix_norm(ns, x, ord, axis, keepdims)


def _vector_norm(ns, x, ord, axis, keepdims):
    if ord is None or ord == 2:
        return ns.sqrt(ns.sum(x * x, axis=axis, keepdims=keepdims))
    if isinstance(ord, str):
        raise _refuse("norm", f"ord={ord!r} is a matrix norm; a vector norm takes a number", x)
    if ord == math.inf:
        return ns.max(ns.abs(x), axis=axis, keepdims=keepdims)
    if ord == -math.inf:
        return ns.min(ns.abs(x), axis=axis, keepdims=keepdims)
    if ord == 0:
        return ns.sum(ns.cast(ns.ne(x, 0), x.dtype), axis=axis, keepdims=keepdims)
    if ord == 1:
        return ns.sum(ns.abs(x), axis=axis, keepdims=keepdims)
    p = float(ord)
    return ns.sum(ns.abs(x) ** p, axis=axis, keepdims=keepdims) ** (1.0 / p)


def _matrix_norm(ns, x, ord, axis, keepdims):
    row, col = axis
    if ord is None or ord == "fro":
        return ns.sqrt(ns.sum(x * x, axis=axis, keepdims=keepdims))
    if ord in (2, -2, "nuc"):
        rest = [a for a in range(x.ndim) if a not in axis]
        s = ns.svd_s(ns.transpose(x, tuple(rest) + axis), full_matrices=False)
        out = ns.sum(s, axis=-1) if ord == "nuc" else (ns.max if ord == 2 else ns.min)(s, axis=-1)
        return ns.expand_dims(out, tuple(sorted(axis))) if keepdims else out
    if ord in (1, -1):
        summed, over = row, col
    elif ord in (math.inf, -math.inf):
        summed, over = col, row
    else:
        raise _refuse("norm", f"ord={ord!r} is not a matrix norm (None, 'fro', 'nuc', 1, -1, 2, -2, inf, -inf)", x)
    pick = ns.max if ord in (1, math.inf) else ns.min
    out = pick(ns.sum(ns.abs(x), axis=summed, keepdims=True), axis=over, keepdims=True)
    return out if keepdims else ns.squeeze(out, tuple(sorted(axis)))


def nn_for(ns) -> SimpleNamespace:
    """PyTorch's torch.nn.functional convolution and pooling over ``ns``."""
    def conv(d, x, w, stride, padding, dilation, groups):
        if x.ndim != d + 2 or w.ndim != d + 2:
            raise _refuse(f"conv{d}d", f"needs a {d + 2}-d input and weight, got {x.ndim}-d and {w.ndim}-d", x)
        return ns.conv(x, w, stride=stride, padding=padding, dilation=dilation, groups=groups)

    def conv1d(x, w, stride=1, padding=0, dilation=1, groups=1):
        return conv(1, x, w, stride, padding, dilation, groups)

    def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
        return conv(2, x, w, stride, padding, dilation, groups)

    def pool(name, x, kernel_size, stride, padding):
        if x.ndim not in (3, 4):
            raise _refuse(name, f"needs a (C, H, W) or (N, C, H, W) input, got {x.ndim}-d", x)
        k = dims(kernel_size, "kernel_size", 2, 1)
        p = dims(padding, "padding", 2, 0)
        if any(2 * pi > ki for pi, ki in zip(p, k)):
            raise _refuse(name, f"padding {p} must be at most half the kernel size {k}", x)
        s = k if stride is None else dims(stride, "stride", 2, 1)
        return ns.windows(x, k, s, p, 1), (k, s, p)

    def max_pool2d(x, kernel_size, stride=None, padding=0):
        win, (k, s, p) = pool("max_pool2d", x, kernel_size, stride, padding)
        if any(p):  # padding never wins: -inf there (PyTorch's implicit padding)
            inside = window_view(np.ones(x.shape[-2:], bool), k, s, p, (1, 1))
            win = ns.where(inside, win, -math.inf)
        return ns.max(win, axis=(-2, -1))

    def avg_pool2d(x, kernel_size, stride=None, padding=0):
        return ns.mean(pool("avg_pool2d", x, kernel_size, stride, padding)[0], axis=(-2, -1))

    return SimpleNamespace(conv1d=conv1d, conv2d=conv2d, max_pool2d=max_pool2d, avg_pool2d=avg_pool2d)
