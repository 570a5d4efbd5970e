"""Finite differences on the reference interpreter: the oracle no backend shares.

Every gradient a backend returns is checked against central differences of the
cost evaluated by :func:`common.evaluate`, which neither backend uses: in full
(one coordinate at a time) when the inputs are few, else along random
directions, where the directional derivative must equal ``g . v``.
:func:`central_differences` and :func:`second_differences` are the two
formulas, shared with the test suite, so every finite difference in the
project is taken one way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def rel_err(a, b) -> float:
    """max |a - b| relative to the larger of the two magnitudes (0 when both are 0)."""
    a = flat(a)
    b = flat(b)
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0))
    diff = np.max(np.abs(a - b), initial=0.0)
    if not np.isfinite(diff):
        return 0.0 if np.array_equal(a, b, equal_nan=True) else float("inf")
    return float(diff / scale) if scale > 0 else float(diff)


def flat(values) -> np.ndarray:
    """One float64 vector from an array or a list of arrays."""
    if isinstance(values, (list, tuple)):
        if not values:
            return np.zeros(0)
        return np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in values])
    return np.ravel(np.asarray(values, dtype=np.float64))


def central_differences(f: Callable, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x at ``x`` by central differences, one element of ``x`` at a time: an array of shape
    ``f(x).shape + x.shape`` (the gradient when ``f`` is scalar), from nothing but calls of ``f``.

    Each element ``k`` costs two calls, ``(f(x + h e_k) - f(x - h e_k)) / 2h``, on copies of
    ``x`` (``f`` may keep or change what it is given).
    """
    x = np.asarray(x)
    cols = []
    for k in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[k] += h
        down[k] -= h
        cols.append((np.asarray(f(up), dtype=np.float64) - np.asarray(f(down), dtype=np.float64)) / (2 * h))
    if not cols:
        return np.zeros(np.shape(f(x)) + x.shape)
    return np.stack(cols, axis=-1).reshape(cols[0].shape + x.shape)


def bilinear_difference(f: Callable, x: np.ndarray, u: np.ndarray, v: np.ndarray, h: float = 1e-4) -> float:
    """``u' H v`` for the Hessian ``H`` of scalar ``f`` at ``x``, by second differences (four calls).

    ``u`` and ``v`` have ``x``'s shape.
    """
    vals = [f(x + a * u + b * v) for a, b in ((h, h), (h, -h), (-h, h), (-h, -h))]
    return float(vals[0] - vals[1] - vals[2] + vals[3]) / (4 * h * h)


def second_differences(f: Callable, x: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """The Hessian of scalar ``f`` at ``x`` by second differences, every entry: ``x.size x x.size``."""
    x = np.asarray(x)
    eye = np.eye(x.size).reshape((x.size, *x.shape))
    return np.array([[bilinear_difference(f, x, eye[a], eye[b], h) for b in range(x.size)]
                     for a in range(x.size)]).reshape(x.size, x.size)


def _shifted(arrays, idx, deltas):
    out = list(arrays)
    for i, d in zip(idx, deltas):
        out[i] = arrays[i] + d
    return out


def _in_argument(f, arrays, i):
    """``f(*arrays)`` as a function of argument ``i`` alone."""
    return lambda a: f(*arrays[:i], a, *arrays[i + 1:])


def _step(arrays, idx, h):
    scale = max(1.0, max(float(np.max(np.abs(arrays[i]), initial=0.0)) for i in idx))
    return h * scale


class GradientOracle:
    """Central differences of ``f`` at ``arrays`` for the arguments ``idx``, computed once.

    In full (one coordinate at a time) when there are at most ``full_limit``
    inputs, else along ``directions`` random directions ``v``, where a
    gradient ``g`` must satisfy ``g . v = (f(x + hv) - f(x - hv)) / 2h``.
    """

    def __init__(self, f: Callable, arrays: Sequence[np.ndarray], idx: Sequence[int],
                 full_limit: int = 200, directions: int = 2, h: float = 1e-6, seed: int = 0):
        h = _step(arrays, idx, h)
        self.full = sum(arrays[i].size for i in idx) <= full_limit
        self.how = "full" if self.full else f"{directions} random directions"
        if self.full:
            self.fd = [central_differences(_in_argument(f, arrays, i), arrays[i], h) for i in idx]
            return
        rng = np.random.default_rng(seed)
        self.directions = []
        self.fd = []
        for _ in range(directions):
            v = [rng.standard_normal(arrays[i].shape) for i in idx]
            up = f(*_shifted(arrays, idx, [h * x for x in v]))
            down = f(*_shifted(arrays, idx, [-h * x for x in v]))
            self.directions.append(flat(v))
            self.fd.append((up - down) / (2 * h))

    def error(self, grads) -> float:
        """Relative error of ``grads`` (a list in ``idx`` order) against the differences."""
        if self.full:
            return rel_err(grads, self.fd)
        g = flat(grads)
        return max(rel_err(float(g @ v), dd) for v, dd in zip(self.directions, self.fd))


class JacobianOracle:
    """Central differences of a vector-valued ``f`` in argument ``i``: the whole Jacobian, a column per
    element of the argument (two calls each)."""

    def __init__(self, f: Callable, arrays: Sequence[np.ndarray], i: int, h: float = 1e-6):
        x = arrays[i]
        self.full = True
        self.how = "full"
        self.fd = central_differences(_in_argument(f, arrays, i), x, _step(arrays, [i], h))

    def error(self, jac) -> float:
        return rel_err(np.asarray(jac[0] if isinstance(jac, (list, tuple)) else jac), self.fd)


class HessianOracle:
    """Second differences of ``f`` in argument ``i``: every entry when it is small,
    else random bilinear forms ``u' H v``."""

    def __init__(self, f: Callable, arrays: Sequence[np.ndarray], i: int, full_limit: int = 12,
                 directions: int = 3, h: float = 1e-3, seed: int = 0):
        h = _step(arrays, [i], h)
        x, fi = arrays[i], _in_argument(f, arrays, i)
        n = x.size
        self.n = n
        self.full = n <= full_limit
        self.how = "full" if self.full else f"{directions} random direction pairs"
        if self.full:
            self.fd = second_differences(fi, x, h)
            return
        rng = np.random.default_rng(seed)
        self.pairs = [(rng.standard_normal(n), rng.standard_normal(n)) for _ in range(directions)]
        self.fd = [bilinear_difference(fi, x, u.reshape(x.shape), v.reshape(x.shape), h) for u, v in self.pairs]

    def error(self, hess) -> float:
        hess = np.asarray(hess[0] if isinstance(hess, (list, tuple)) else hess).reshape(self.n, self.n)
        if self.full:
            return rel_err(hess, self.fd)
        return max(rel_err(u @ hess @ v, fd) for (u, v), fd in zip(self.pairs, self.fd))


def derivative_error(f: Callable, x: np.ndarray, df, h: float = 1e-4) -> float:
    """Relative error of ``df`` against the central difference of scalar ``f`` at ``x``."""
    return rel_err(df, (f(x + h) - f(x - h)) / (2 * h))
