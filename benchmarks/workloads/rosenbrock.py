"""The full Hessian of the extended (chained) Rosenbrock function.

f(x) = sum_i 100 (x[i+1] - x[i]^2)^2 + (1 - x[i])^2. Its Hessian is
tridiagonal, known in closed form, so the reference is exact and cheap: what
the backends pay is the price of second-order differentiation itself.
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload


def rosenbrock_fn(ns, x):
    head = x[:-1]
    return ns.sum(100.0 * ns.square(x[1:] - ns.square(head)) + ns.square(1.0 - head))


def hand_forward(x):
    head = x[:-1]
    return np.sum(100.0 * np.square(x[1:] - head * head) + np.square(1.0 - head))


def hand_hessian(x):
    """The tridiagonal Hessian in closed form, as a dense n x n array."""
    n = x.shape[0]
    head = x[:-1]
    diag = np.zeros(n)
    diag[:-1] = 1200.0 * head * head - 400.0 * x[1:] + 2.0
    diag[1:] += 200.0
    off = -400.0 * head
    h = np.zeros((n, n))
    i = np.arange(n)
    h[i, i] = diag
    h[i[:-1], i[1:]] = off
    h[i[1:], i[:-1]] = off
    return [h]


@workload("rosenbrock", sizes=("n10", "n100", "n1000"), default=("n10", "n100", "n1000"),
          check=("n10",), kind="hessian", rtol=1e-9, fd_rtol=1e-5,
          doc="full Hessian of the extended Rosenbrock function (second order)")
def rosenbrock(size: str) -> Problem:
    n = int(size[1:])
    x = seeded("rosenbrock", size).uniform(-1.5, 1.5, n)
    return Problem(rosenbrock_fn, {"x": x}, ("x",), hand_hessian=hand_hessian, hand_forward=hand_forward,
                   scale=n, family="hessian", label=f"n = {n}, {n}x{n} Hessian")
