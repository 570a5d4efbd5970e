"""The Jacobian of a small network f: R^n -> R^m, forward mode against reverse mode (book section 6.5.9).

f(x) = tanh(W2 tanh(W1 x)), W1 (h, n), W2 (m, h). Forward mode takes a
column per input (cost grows with n), reverse mode a row per output (cost
grows with m), so the cheaper one flips where n/m crosses 1. Each size names
n, m and the mode the backends build the Jacobian in; ``auto`` is what
``symnum.jacobian`` and ``symsym.jacobian`` pick by themselves. The family is
the mode and the plot's x axis n/m, so the time-against-size plot shows the
crossover. The reference is the chain rule written out in numpy.
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload

HIDDEN = 64
SHAPES = ((1, 1000), (10, 1000), (100, 100), (1000, 10), (1000, 1))
MODES = ("forward", "reverse", "auto")


def net(ns, x, w1, w2):
    return ns.tanh(w2 @ ns.tanh(w1 @ x))


def hand_forward(x, w1, w2):
    return np.tanh(w2 @ np.tanh(w1 @ x))


def hand_jacobian(x, w1, w2):
    """dy/dx = diag(1 - y^2) W2 diag(1 - h^2) W1."""
    h = np.tanh(w1 @ x)
    y = np.tanh(w2 @ h)
    return [(1.0 - y * y)[:, None] * (w2 @ ((1.0 - h * h)[:, None] * w1))]


def _size(n: int, m: int, mode: str) -> str:
    return f"n{n}-m{m}-{mode}"


SIZES = tuple(_size(n, m, mode) for n, m in SHAPES for mode in MODES)


@workload("jacobian", sizes=SIZES, default=tuple(_size(n, m, mode) for n, m in ((10, 1000), (100, 100), (1000, 10))
                                                   for mode in MODES),
          check=(_size(10, 1000, "auto"),), kind="jacobian", rtol=1e-9, fd_rtol=1e-6,
          doc="Jacobian of tanh(W2 tanh(W1 x)), R^n -> R^m: forward vs reverse mode vs auto")
def jacobian(size: str) -> Problem:
    n_part, m_part, mode = size.split("-")
    n, m = int(n_part[1:]), int(m_part[1:])
    rng = seeded("jacobian", f"n{n}-m{m}")
    x = rng.standard_normal(n)
    w1 = rng.standard_normal((HIDDEN, n)) / np.sqrt(n)
    w2 = rng.standard_normal((m, HIDDEN)) / np.sqrt(HIDDEN)
    return Problem(net, {"x": x, "w1": w1, "w2": w2}, ("x",), hand_forward=hand_forward,
                   hand_jacobian=hand_jacobian, mode=mode, scale=n / m, family=f"jacobian {mode}",
                   label=f"n = {n}, m = {m}, {mode} mode")
