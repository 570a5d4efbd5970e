"""Kepler's equation solved by Newton's method to a tolerance: a loop whose trip count the data decide.

For n orbits of eccentricity ``ecc`` at mean anomalies ``mean`` (n,), the
eccentric anomaly E solves E - ecc sin E = mean; Newton's method runs until
the largest residual is under a tolerance, so how many steps run depends on
the inputs, and no fixed unrolling can express it. The cost is
sum(weights * E^2) / 2, differentiated with respect to ``ecc`` and ``mean``.

On the tape (``ns = symnum``) the loop is a Python ``while`` that records the
steps that ran; on a graph (``ns = common.api``) it is one ``while_loop`` op,
and symsym's reverse mode replays the recorded trip count backwards. The
hand-written gradient needs no loop at all: by the implicit-function theorem,
dE/dmean = 1 / (1 - ecc cos E) and dE/decc = sin E / (1 - ecc cos E).

One Newton step after the loop makes the derivative of the iterates agree
with the implicit one: a Newton step's derivative errs by the residual of the
iterate it starts from, and the loop's last step started from an iterate that
was not yet converged (its residual was still over the tolerance).
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload

SIZES = ("n8", "n1000", "n100000")
TOL = 1e-12
MAX_ITER = 50


def kepler(ns, ecc, mean, weights):
    """sum(weights * E^2) / 2 where E - ecc sin E = mean, E by Newton's method from E = mean."""
    def newton(e):
        return e - (e - ecc * ns.sin(e) - mean) / (1.0 - ecc * ns.cos(e))

    def unsolved(e):
        return ns.max(ns.abs(e - ecc * ns.sin(e) - mean)) > TOL

    e = newton(ns.while_loop(unsolved, newton, mean, max_iter=MAX_ITER))
    return 0.5 * ns.sum(weights * e * e)


def solve(ecc, mean) -> np.ndarray:
    """E by Newton's method in numpy, the same iteration (and the same polishing step)."""
    newton = lambda e: e - (e - ecc * np.sin(e) - mean) / (1.0 - ecc * np.cos(e))
    e, steps = mean, 0
    while steps < MAX_ITER and np.max(np.abs(e - ecc * np.sin(e) - mean)) > TOL:
        e, steps = newton(e), steps + 1
    return newton(e)


def hand_forward(ecc, mean, weights):
    e = solve(ecc, mean)
    return 0.5 * np.sum(weights * e * e)


def hand_grad(ecc, mean, weights):
    """The implicit-function theorem's gradient at the solution: no derivative of the iteration."""
    e = solve(ecc, mean)
    upstream = weights * e / (1.0 - ecc * np.cos(e))
    return [np.sum(upstream * np.sin(e)), upstream]


@workload("newton", sizes=SIZES, default=SIZES[1:], check=SIZES[:1], rtol=1e-9, fd_rtol=1e-6,
          doc="Kepler's equation by Newton's method to a tolerance: a data-dependent while loop")
def newton(size: str) -> Problem:
    n = int(size[1:])
    rng = seeded("newton", size)
    args = {"ecc": np.array(0.3 + 0.4 * rng.random()), "mean": rng.uniform(0.0, 2 * np.pi, n),
            "weights": rng.uniform(0.5, 1.5, n)}
    return Problem(kepler, args, ("ecc", "mean"), hand_grad=hand_grad, hand_forward=hand_forward, scale=n,
                   family="newton", label=f"{n} orbits, Newton to {TOL:g}")
