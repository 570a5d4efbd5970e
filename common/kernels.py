"""Fast numpy kernels: the speed tricks behind op impls and generated code, each said once.

An op's impl (:mod:`common.ops`) says *what* the op computes; where the plain
numpy spelling costs more than it must, the impl calls a kernel here, and
symsym's code generator binds the very same functions in the generated code's
globals (or, for :func:`sum_to_axes`, asks the same question at compile time)
instead of writing its own. Each kernel computes exactly what its plain numpy
spelling does (the tests check them against it) and says why it is faster.

At the sizes small graphs run at, a numpy call costs a microsecond or two of
argument handling before any arithmetic, so most of these tricks remove
Python-level wrappers, argument normalisation or an allocation.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["broadcast_view", "expand_dims", "few_reduced", "mean", "reduce_by_slices", "scatter_at", "scatter_set",
           "softmax", "sum_to", "sum_to_axes", "transpose"]

_reduce = np.add.reduce


def broadcast_view(x, shape: tuple):
    """``np.broadcast_to(x, shape)``: a read-only view of ``x`` with zero strides on the broadcast axes.

    For a C-contiguous ndarray the view is made directly, with zero strides
    on the broadcast axes; numpy's own goes through an nditer and argument
    checks, which at small sizes cost several times the arithmetic around it
    (mean's rule makes one per sweep). Anything else (a non-contiguous or
    empty array, a shape that is not a broadcast) goes to numpy, which also
    words the error.
    """
    if x.__class__ is np.ndarray and shape.__class__ is tuple and x.flags.c_contiguous and x.size:
        have = x.shape
        lead = len(shape) - len(have)
        if lead >= 0:
            strides = [0] * len(shape)
            for i, d in enumerate(have):
                want = shape[lead + i]
                if d == want:
                    strides[lead + i] = x.strides[i]
                elif d != 1 or want < 0:
                    break  # not a broadcast: numpy words the error
            else:
                view = np.ndarray(shape, x.dtype, x, 0, strides)
                view.flags.writeable = False
                return view
    return np.broadcast_to(x, shape)


#: reductions of at most this many elements per output (a pooling window) over at least
#: _MANY_OUTPUTS outputs run as elementwise calls over slices (:func:`reduce_by_slices`)
_FEW, _MANY_OUTPUTS = 16, 1024


def few_reduced(shape: tuple, axis: tuple) -> bool:
    """Whether reducing ``shape`` over ``axis`` is a small window per output over many outputs: the
    case :func:`reduce_by_slices` is for (asked once at compile time where shapes are known)."""
    k = math.prod(shape[a] for a in axis)
    return 2 <= k <= _FEW and math.prod(shape) >= k * _MANY_OUTPUTS


def reduce_by_slices(ufunc, x, axis: tuple, keepdims: bool):
    """``ufunc.reduce(x, axis, keepdims=keepdims)`` as ``k - 1`` elementwise calls, one per element of the
    reduced axes, over slices of ``x``.

    numpy reduces by running its inner loop once per output over the
    reduced axes: for a 2x2 pooling window (four elements, often strided)
    that is tens of thousands of four-element loops, 20 to 50 times slower
    than three elementwise calls over whole slices, which is what this does
    where :func:`few_reduced` holds (elsewhere it is numpy's reduce). A max
    or min is exact, NaN through; a sum adds the elements in C order of the
    reduced axes, which numpy may not: equal to rounding.
    """
    if not few_reduced(x.shape, axis):
        return ufunc.reduce(x, axis, None, None, keepdims)
    picks = [()]
    for a in sorted(axis):
        picks = [p + (i,) for p in picks for i in range(x.shape[a])]
    keys = []
    for p in picks:
        key = [slice(None)] * x.ndim
        for a, i in zip(sorted(axis), p):
            key[a] = i
        keys.append(tuple(key))
    out = ufunc(x[keys[0]], x[keys[1]])
    for key in keys[2:]:
        ufunc(out, x[key], out=out)
    if keepdims:
        out = out.reshape(tuple(1 if a in axis else d for a, d in enumerate(x.shape)))
    return out


def sum_to_axes(have: tuple, want: tuple) -> tuple[tuple, bool]:
    """The ``np.add.reduce`` that sums shape ``have`` down to ``want`` (which broadcasts to it): ``(axes, keepdims)``.

    The leading axes ``have`` has beyond ``want`` are summed away, and so is
    every axis where ``want`` has 1 and ``have`` does not. Where only leading
    axes go (a bias's gradient), one reduce without ``keepdims`` gives the
    result; otherwise the reduce keeps its dims and the caller reshapes to
    ``want`` if there were leading axes. Worked out once per shape pair by the
    code generator, on every call by :func:`sum_to` (cheaper than
    ``np.sum`` over a computed axis list and a reshape, which is what the
    obvious spelling does).
    """
    lead = len(have) - len(want)
    inner = tuple(lead + i for i, d in enumerate(want) if d == 1 and have[lead + i] != 1)
    if not inner:
        return tuple(range(lead)), False
    return tuple(range(lead)) + inner, True


def sum_to(x, shape: tuple):
    """Sum ``x`` down to ``shape``, which ``x`` was broadcast from (the adjoint of broadcasting).

    Equal shapes return ``x`` itself; only leading axes (every bias gradient)
    take one ``np.add.reduce`` over them, no keepdims and no reshape; the
    rest is :func:`sum_to_axes`' reduce. A full reduction to ``()`` keeps its
    dims and reshapes, so the result is a 0-d array, not a numpy scalar.
    """
    have = x.shape
    if shape.__class__ is not tuple:
        shape = tuple(shape)
    if have == shape:
        return x
    lead = len(have) - len(shape)
    if shape and have[lead:] == shape:
        return _reduce(x, axis=0 if lead == 1 else tuple(range(lead)))
    axes, _ = sum_to_axes(have, shape)
    out = _reduce(x, axis=axes, keepdims=True)
    return out.reshape(shape) if lead else out


def expand_dims(x, axis: tuple):
    """``np.expand_dims(x, axis)`` for already normalised axes (sorted, non-negative): one reshape.

    numpy's own re-normalises the axes in Python on every call; an op's
    ``bind`` has done that once.
    """
    x = np.asanyarray(x)
    shape = list(x.shape)
    for a in axis:
        shape.insert(a, 1)
    return x.reshape(shape)


def transpose(x, axes: tuple):
    """``np.transpose(x, axes)``: the ndarray method directly, skipping numpy's function dispatch."""
    return x.transpose(axes) if isinstance(x, np.ndarray) else np.transpose(x, axes)


def mean(x, axis: tuple, keepdims: bool):
    """``np.mean(x, axis, keepdims=keepdims)``: for float64 arrays, numpy's own arithmetic (one sum, then
    one true division by the count) without its wrappers; anything else goes to ``np.mean``."""
    if isinstance(x, np.ndarray) and x.dtype == np.float64:
        return _reduce(x, axis=axis, keepdims=keepdims) / math.prod([x.shape[a] for a in axis])
    return np.mean(x, axis=axis, keepdims=keepdims)


def softmax(x, axis: int):
    """``e / e.sum(axis)`` with ``e = exp(x - x.max(axis))``, in one buffer.

    The shifted values are exponentiated and divided in place: one
    allocation of the output's size instead of three, and ufunc reductions
    instead of ``np.max``/``np.sum``'s wrappers. The arithmetic (and so every
    bit of the result) is the plain spelling's. Integer inputs subtract in
    their own dtype first, as the plain spelling does, and exponentiate into
    a new float array.
    """
    e = x - np.maximum.reduce(x, axis, keepdims=True)
    if e.dtype.kind == "f":
        np.exp(e, out=e)
    else:
        e = np.exp(e)
    e /= _reduce(e, axis, keepdims=True)
    return e


def _dtype(g):
    return g.dtype if hasattr(g, "dtype") else np.result_type(g)


def scatter_set(g, shape: tuple, key: tuple):
    """Zeros of ``shape`` with ``g`` written at ``key``, for a key that reaches each element at most once
    (ints and slices, or index arrays that :func:`distinct_positions` has checked).

    Then a plain assignment gives what ``np.add.at`` would, and is many times
    faster than it (no unbuffered per-element loop).
    """
    out = np.zeros(shape, _dtype(g))
    out[key] = g
    return out


#: the largest target :func:`distinct_positions` probes (a byte per element, once, at compile time)
DISTINCT_PROBE_LIMIT = 1 << 24


def distinct_positions(shape: tuple, key: tuple) -> bool:
    """Whether ``key`` (ints, slices, integer arrays) names each element of an array of ``shape`` at most
    once, so that adding at it is writing at it. Marks a probe of bools at ``key`` and counts the marks
    against the number of positions named: numpy's own indexing decides, including broadcasting of the
    index arrays and negative indices. False when the probe would exceed :data:`DISTINCT_PROBE_LIMIT`."""
    if math.prod(shape) > DISTINCT_PROBE_LIMIT:
        return False
    probe = np.zeros(shape, np.bool_)
    named = probe[key].size
    probe[key] = True
    return int(np.count_nonzero(probe)) == named


def scatter_at(g, shape: tuple, key: tuple):
    """Zeros of ``shape`` with ``g`` added at ``key``; repeated integer-array indices accumulate.

    An integer-array key may name an element twice, and ``out[key] += g``
    would then keep only one of the additions: ``np.add.at`` is the spelling
    that sums them all.
    """
    out = np.zeros(shape, _dtype(g))
    np.add.at(out, key, g)
    return out
