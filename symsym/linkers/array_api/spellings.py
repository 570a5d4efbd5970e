"""Each op's Array-API spelling, registered with :func:`~symsym.linkers.lowering.register_lowering`.

A spelling is a function ``(e, *arrays, **params)`` where ``e`` is the call's
:class:`~.env.Env` (the namespace ``e.xp``, the library's name ``e.lib`` and
the device ``e.device``). The standard's own functions come first; where the
standard has no function (scatter-add, ``einsum``, ``erf``) the library's
own call is used, and a spelling that only some libraries can follow says so
with :func:`only`, so that a call on another library is refused before
anything runs instead of running through numpy behind the user's back.

A spelling that must know its output's dtype (``sigmoid`` of an integer array
is a float) is marked :func:`typed`: the driver passes the node's dtype name
as ``out=``.
"""

from __future__ import annotations

import math

from common import kernels
from common.ops.index import view

from ..lowering import register_lowering

LINKER = "array_api"


def only(*libraries: str):
    """Mark a spelling as written for ``libraries`` only (names as :func:`.env.library` gives them)."""
    names = frozenset(libraries)

    def mark(fn):
        fn.libraries = lambda node: names
        return fn
    return mark


def typed(fn):
    """Mark a spelling that takes its node's dtype name as ``out=``."""
    fn.typed = True
    return fn


def _register(table: dict) -> None:
    for name, fn in table.items():
        register_lowering(name, LINKER, fn)


def _method(name: str):
    return lambda e, x: getattr(e.xp, name)(x)


def _binary(name: str):
    return lambda e, a, b: getattr(e.xp, name)(a, b)


# --- elementwise ---------------------------------------------------------------------------------

_UNARY = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "sin": "sin", "cos": "cos",
          "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "arcsin": "asin", "arctan": "atan",
          "arccos": "acos", "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "sqrt": "sqrt",
          "square": "square", "abs": "abs", "sign": "sign", "neg": "negative"}
_BINARY = {"add": "add", "sub": "subtract", "mul": "multiply", "div": "divide", "pow": "pow",
           "maximum": "maximum", "minimum": "minimum", "lt": "less", "le": "less_equal", "gt": "greater",
           "ge": "greater_equal", "eq": "equal", "ne": "not_equal", "logaddexp": "logaddexp",
           "arctan2": "atan2", "hypot": "hypot"}


def _floated(e, x, out: str):
    dt = e.dtype(out)
    return x if x.dtype == dt else e.xp.astype(x, dt)


@typed
def _sigmoid(e, x, out):
    xp = e.xp
    x = _floated(e, x, out)
    z = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + z), z / (1 + z))


@typed
def _softplus(e, x, out):
    x = _floated(e, x, out)
    return e.xp.logaddexp(e.xp.zeros_like(x), x)


def _special(name: str):
    """``erf``/``erfc``: not in the standard; torch.special's, or the op's own numpy impl on numpy arrays."""
    @only("torch", "numpy")
    @typed
    def spelled(e, x, out):
        x = _floated(e, x, out)
        if e.lib == "torch":
            import torch
            return getattr(torch.special, name)(x)
        from common.ops import OPS
        return OPS[name].impl(x)
    return spelled


def _relu(e, x):
    return e.xp.where(x > 0, x, e.xp.zeros_like(x))


def _clip(e, x, lo, hi):
    return e.xp.minimum(e.xp.maximum(x, lo), hi)


def _cast(e, x, dtype):
    return e.xp.astype(x, e.dtype(dtype))


_register({**{op: _method(f) for op, f in _UNARY.items()}, **{op: _binary(f) for op, f in _BINARY.items()},
           "sigmoid": _sigmoid, "softplus": _softplus, "erf": _special("erf"), "erfc": _special("erfc"), "relu": _relu,
           "clip": _clip, "cast": _cast, "stop_gradient": lambda e, x: x,
           "where": lambda e, c, a, b: e.xp.where(c, a, b)})


# --- shapes --------------------------------------------------------------------------------------

def _sum_to(e, x, shape):
    have = tuple(x.shape)
    shape = tuple(shape)
    if have == shape:
        return x
    axes, keepdims = kernels.sum_to_axes(have, shape)
    out = e.xp.sum(x, axis=axes, keepdims=keepdims)
    return e.xp.reshape(out, shape) if tuple(out.shape) != shape else out


def _expand_dims(e, x, axis):
    ndim = x.ndim + len(axis)
    for a in sorted(a % ndim for a in axis):
        x = e.xp.expand_dims(x, axis=a)
    return x


def _standard_key(ndim: int, key: tuple) -> tuple[tuple, tuple]:
    """``key`` as the standard takes it: every axis named (no implicit trailing ``:``, no ellipsis) and
    every slice stepping forwards, with the axes to flip first so that ``flip(x, axes)[key']`` is ``x[key]``."""
    consumed = sum(1 for k in key if k is not None and k is not Ellipsis)
    full = []
    for k in key:
        full.extend([slice(None)] * (ndim - consumed) if k is Ellipsis else [k])
    if not any(k is Ellipsis for k in key):
        full.extend([slice(None)] * (ndim - consumed))
    flips, axis = [], 0
    for pos, k in enumerate(full):
        if k is None:
            continue
        if k.__class__ is slice and k.step is not None and k.step < 0:
            flips.append((pos, axis))
        axis += 1
    return tuple(full), tuple(flips)


def _forwards(x, full: tuple, flips: tuple, xp) -> tuple:
    """``full`` with each backward slice made a forward one over the flipped axis (``_standard_key``)."""
    if not flips:
        return full
    full = list(full)
    for pos, axis in flips:
        n = x.shape[axis]
        picked = range(*full[pos].indices(n))
        if not picked:
            full[pos] = slice(0, 0)
        else:
            full[pos] = slice(n - 1 - picked[0], n - 1 - picked[-1] + 1, -full[pos].step)
    return tuple(full)


def _basic(e, x, key: tuple):
    """``x[key]`` for an int/slice/None/ellipsis key, in the standard's form."""
    full, flips = _standard_key(x.ndim, key)
    if flips:
        x_f = e.xp.flip(x, axis=tuple(a for _, a in flips))
        return x_f[_forwards(x, full, flips, e.xp)]
    return x[full]


def _getitem(e, x, *arrays, index):
    spec = view(index)
    if not spec.has_arrays:
        return _basic(e, x, spec.key())
    entries = spec.entries
    arrays_at = [pos for pos, en in enumerate(entries) if en[0] == "array"]
    if (len(arrays_at) == 1 and arrays[0].ndim == 1
            and all(en == ("slice", None, None, None) for pos, en in enumerate(entries) if pos != arrays_at[0])):
        return e.xp.take(x, arrays[0], axis=arrays_at[0])  # x[:, i]: the standard's take
    key = spec.key(arrays)
    if not any(k is Ellipsis for k in key) and sum(k is not None for k in key) < x.ndim:
        key = (*key, Ellipsis)  # numpy's implicit trailing axes, which the standard wants named
    return x[key]


def _scatter_add(e, g, like, *arrays, index):
    xp = e.xp
    spec = view(index)
    shape = tuple(like.shape)
    out = xp.zeros(shape, dtype=g.dtype, device=e.device)
    if not spec.has_arrays:  # a new axis (None) is no place to write: g has it as a length-1 axis
        full, flips = _standard_key(len(shape), spec.key())
        key = tuple(k for k in _forwards(out, full, flips, xp) if k is not None)
        out[key] = xp.reshape(g, tuple(out[key].shape))
        return xp.flip(out, axis=tuple(a for _, a in flips)) if flips else out
    # an index array may name an element twice: add at the flat positions the key picks
    size = math.prod(shape)
    picked = _getitem(e, xp.reshape(xp.arange(size, device=e.device), shape), *arrays, index=index)
    where, values = xp.reshape(picked, (-1,)), xp.reshape(xp.broadcast_to(g, tuple(picked.shape)), (-1,))
    flat = xp.reshape(out, (size,))
    if e.lib == "torch":  # the standard has no scatter-add: each library's own
        flat = flat.index_add(0, where, values)
    else:
        import numpy as np
        np.add.at(flat, where, values)
    return xp.reshape(flat, shape)


# ints and slices are a plain assignment, which every library has; index arrays need a scatter-add
_scatter_add.libraries = lambda node: frozenset(("torch", "numpy")) if view(node.params["index"]).has_arrays else None


def _concat_part(e, g, *refs, axis, part):
    start = sum(r.shape[axis] for r in refs[:part])
    key = (slice(None),) * axis + (slice(start, start + refs[part].shape[axis]), Ellipsis)
    return g[key]


def _tri(e, x, k, lower: bool):
    xp = e.xp
    rows = xp.reshape(xp.arange(x.shape[-2], device=e.device), (-1, 1))
    cols = xp.reshape(xp.arange(x.shape[-1], device=e.device), (1, -1))
    keep = (cols - rows <= k) if lower else (cols - rows >= k)
    return xp.where(keep, x, xp.zeros_like(x))


_register({"reshape": lambda e, x, shape: e.xp.reshape(x, shape),
           "reshape_like": lambda e, x, ref: e.xp.reshape(x, tuple(ref.shape)),
           "broadcast_to": lambda e, x, shape: e.xp.broadcast_to(x, shape),
           "broadcast_like": lambda e, x, ref: e.xp.broadcast_to(x, tuple(ref.shape)),
           "sum_to": _sum_to, "sum_like": lambda e, x, ref: _sum_to(e, x, tuple(ref.shape)),
           "expand_dims": _expand_dims, "squeeze": lambda e, x, axis: e.xp.squeeze(x, axis=axis),
           "transpose": lambda e, x, axes: e.xp.permute_dims(x, axes),
           "getitem": _getitem, "scatter_add": _scatter_add, "concat_part": _concat_part,
           "concatenate": lambda e, *xs, axis: e.xp.concat(xs, axis=axis),
           "stack": lambda e, *xs, axis: e.xp.stack(xs, axis=axis),
           "tril": lambda e, x, k: _tri(e, x, k, True), "triu": lambda e, x, k: _tri(e, x, k, False)})


# --- constants -----------------------------------------------------------------------------------

@typed
def _full_like(e, x, value=0.0, dtype=None, out=None):
    return e.xp.full(tuple(x.shape), value, dtype=e.dtype(out), device=e.device)


@typed
def _full(e, shape, value, dtype, out=None):
    return e.xp.full(shape, value, dtype=e.dtype(out), device=e.device)


_register({"zeros_like": typed(lambda e, x, dtype=None, out=None: _full_like(e, x, 0, dtype, out)),
           "ones_like": typed(lambda e, x, dtype=None, out=None: _full_like(e, x, 1, dtype, out)),
           "full_like": _full_like, "full": _full})


# --- reductions, softmax family, scans -----------------------------------------------------------

def _max_shifted(e, x, axis):
    m = e.xp.max(x, axis=axis, keepdims=True)
    return e.xp.where(e.xp.isfinite(m), m, e.xp.zeros_like(m))


def _log_softmax(e, x, axis):
    xp = e.xp
    s = x - xp.max(x, axis=axis, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=axis, keepdims=True))


def _softmax(e, x, axis):
    xp = e.xp
    z = xp.exp(x - xp.max(x, axis=axis, keepdims=True))
    return z / xp.sum(z, axis=axis, keepdims=True)


def _logsumexp(e, x, axis, keepdims):
    xp = e.xp
    m = _max_shifted(e, x, axis)
    s = xp.log(xp.sum(xp.exp(x - m), axis=axis, keepdims=True)) + m
    return s if keepdims else xp.squeeze(s, axis=axis)


def _sparse_xent(e, z, labels, axis):
    xp = e.xp
    rest = tuple(z.shape[:axis]) + tuple(z.shape[axis + 1:])
    rows = xp.expand_dims(xp.broadcast_to(labels, rest), axis=axis)
    picked = xp.take_along_axis(_log_softmax(e, z, axis), rows, axis=axis)
    return -xp.squeeze(picked, axis=axis)


@typed
def _count(e, x, axis, keepdims=False, out=None):
    return e.xp.asarray(float(math.prod([x.shape[a] for a in axis])), dtype=e.dtype(out), device=e.device)


@typed
def _logcumsumexp(e, x, axis, out=None):
    xp = e.xp
    x, axis = _flat(e, _floated(e, x, out), axis)
    m = _max_shifted(e, x, axis)
    return xp.log(xp.cumulative_sum(xp.exp(x - m), axis=axis)) + m


def _flat(e, x, axis):
    """numpy's ``axis=None`` for the cumulative ops: over the flattened array."""
    return (e.xp.reshape(x, (-1,)), 0) if axis is None else (x, axis)


def _cumsum(e, x, axis):
    x, axis = _flat(e, x, axis)
    return e.xp.cumulative_sum(x, axis=axis)


def _cumprod(e, x, axis):
    x, axis = _flat(e, x, axis)
    return e.xp.cumulative_prod(x, axis=axis)


_cumprod.requires = "cumulative_prod"  # new in the 2024.12 standard


def _cumprod_grad(e, g, x, axis):
    """The numpy impl's O(n) rule in standard calls (its docstring says why it never divides by zero)."""
    xp = e.xp
    z = x == 0
    seen = xp.cumulative_sum(xp.astype(z, xp.int64), axis=axis)
    before, first = seen == 0, z & (seen == 1)
    out = xp.cumulative_prod(x, axis=axis)
    skip = xp.cumulative_prod(xp.where(first, xp.ones_like(x), x), axis=axis)

    def suffix(v):
        return xp.flip(xp.cumulative_sum(xp.flip(v, axis=axis), axis=axis), axis=axis)

    zero = xp.zeros_like(x)
    return xp.where(before, suffix(g * out) / xp.where(before, x, xp.ones_like(x)),
                    xp.where(first, suffix(g * skip), zero))


_cumprod_grad.requires = "cumulative_prod"


def _argsort(e, x, axis):
    x, axis = _flat(e, x, axis)
    return e.xp.argsort(x, axis=axis, stable=True)


def _argwhere(e, x):
    xp = e.xp
    if x.ndim == 0:
        return xp.zeros((int(bool(x)), 0), dtype=xp.int64, device=e.device)
    return xp.stack(xp.nonzero(x), axis=1)


_register({"sum": lambda e, x, axis, keepdims: e.xp.sum(x, axis=axis, keepdims=keepdims),
           "mean": lambda e, x, axis, keepdims: e.xp.mean(x, axis=axis, keepdims=keepdims),
           "max": lambda e, x, axis, keepdims: e.xp.max(x, axis=axis, keepdims=keepdims),
           "min": lambda e, x, axis, keepdims: e.xp.min(x, axis=axis, keepdims=keepdims),
           "prod": lambda e, x, axis, keepdims: e.xp.prod(x, axis=axis, keepdims=keepdims),
           "count": _count, "logsumexp": _logsumexp, "softmax": _softmax, "log_softmax": _log_softmax,
           "softmax_cross_entropy": lambda e, z, t, axis: -e.xp.sum(t * _log_softmax(e, z, axis), axis=axis),
           "sparse_softmax_cross_entropy": _sparse_xent,
           "cumsum": _cumsum, "cumprod": _cumprod,
           "logcumsumexp": _logcumsumexp, "cumprod_grad": _cumprod_grad,
           "argsort": _argsort,
           "argmax": lambda e, x, axis, keepdims: e.xp.argmax(x, axis=axis, keepdims=keepdims),
           "argmin": lambda e, x, axis, keepdims: e.xp.argmin(x, axis=axis, keepdims=keepdims),
           "argwhere": _argwhere})


# --- linear algebra ------------------------------------------------------------------------------

@only("torch", "numpy")
def _einsum(e, *xs, spec):
    if e.lib == "torch":
        import torch
        return torch.einsum(spec, *xs)
    import numpy as np
    return np.einsum(spec, *xs)


def _solve(e, a, b):
    if b.ndim == 1:  # numpy's rule for a vector right-hand side: a column, solved and dropped again
        return e.xp.linalg.solve(a, b[..., None])[..., 0]
    return e.xp.linalg.solve(a, b)


def _solve_triangular(e, a, b, lower):
    vec = b.ndim == 1
    rhs = b[..., None] if vec else b
    if e.lib == "torch":
        import torch
        out = torch.linalg.solve_triangular(a, rhs, upper=not lower)
    else:  # the standard has no triangular solve: a general one of the triangle alone (the other is not read)
        out = e.xp.linalg.solve(_tri(e, a, 0, lower), rhs)
    return out[..., 0] if vec else out


_register({"matmul": lambda e, a, b: e.xp.matmul(a, b), "einsum": _einsum, "solve": _solve,
           "solve_triangular": _solve_triangular,
           "cholesky": lambda e, a: e.xp.linalg.cholesky(a), "inv": lambda e, a: e.xp.linalg.inv(a),
           "det": lambda e, a: e.xp.linalg.det(a),
           "slogdet_sign": lambda e, a: e.xp.linalg.slogdet(a)[0],
           "slogdet_logabs": lambda e, a: e.xp.linalg.slogdet(a)[1],
           "eigh_w": lambda e, a: e.xp.linalg.eigh(a)[0], "eigh_v": lambda e, a: e.xp.linalg.eigh(a)[1],
           "svd_u": lambda e, a, full_matrices: e.xp.linalg.svd(a, full_matrices=full_matrices)[0],
           "svd_s": lambda e, a, full_matrices: e.xp.linalg.svdvals(a),
           "svd_vh": lambda e, a, full_matrices: e.xp.linalg.svd(a, full_matrices=full_matrices)[2],
           "qr_q": lambda e, a: e.xp.linalg.qr(a)[0], "qr_r": lambda e, a: e.xp.linalg.qr(a)[1]})
