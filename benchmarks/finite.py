"""Finite differences on the reference interpreter: the oracle no backend shares.

Every gradient a backend returns is checked against central differences of the
cost evaluated by :func:`common.evaluate`, which neither backend uses: in full
(one coordinate at a time) when the inputs are few, else along random
directions, where the directional derivative must equal ``g . v``.
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


def _shifted(arrays, idx, deltas):
    out = list(arrays)
    for i, d in zip(idx, deltas):
        out[i] = arrays[i] + d
    return out


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
            self.fd = []
            for i in idx:
                col = np.zeros(arrays[i].shape)
                for k in np.ndindex(arrays[i].shape):
                    e = np.zeros(arrays[i].shape)
                    e[k] = h
                    col[k] = (f(*_shifted(arrays, [i], [e])) - f(*_shifted(arrays, [i], [-e]))) / (2 * h)
                self.fd.append(col)
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


class HessianOracle:
    """Second differences of ``f`` in argument ``i``: every entry when it is small,
    else random bilinear forms ``u' H v``."""

    def __init__(self, f: Callable, arrays: Sequence[np.ndarray], i: int, full_limit: int = 12,
                 directions: int = 3, h: float = 1e-3, seed: int = 0):
        h = _step(arrays, [i], h)
        x = arrays[i]
        n = x.size

        def bilinear(u, v):
            u, v = u.reshape(x.shape), v.reshape(x.shape)
            vals = [f(*arrays[:i], x + a * u + b * v, *arrays[i + 1:])
                    for a, b in ((h, h), (h, -h), (-h, h), (-h, -h))]
            return (vals[0] - vals[1] - vals[2] + vals[3]) / (4 * h * h)

        self.n = n
        self.full = n <= full_limit
        self.how = "full" if self.full else f"{directions} random direction pairs"
        if self.full:
            eye = np.eye(n)
            self.fd = np.array([[bilinear(eye[a], eye[b]) for b in range(n)] for a in range(n)])
            return
        rng = np.random.default_rng(seed)
        self.pairs = [(rng.standard_normal(n), rng.standard_normal(n)) for _ in range(directions)]
        self.fd = [bilinear(u, v) for u, v in self.pairs]

    def error(self, hess) -> float:
        hess = np.asarray(hess[0] if isinstance(hess, (list, tuple)) else hess).reshape(self.n, self.n)
        if self.full:
            return rel_err(hess, self.fd)
        return max(rel_err(u @ hess @ v, fd) for (u, v), fd in zip(self.pairs, self.fd))


def derivative_error(f: Callable, x: np.ndarray, df, h: float = 1e-4) -> float:
    """Relative error of ``df`` against the central difference of scalar ``f`` at ``x``."""
    return rel_err(df, (f(x + h) - f(x - h)) / (2 * h))
