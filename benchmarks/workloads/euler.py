"""A long scan: explicit Euler on the Lotka-Volterra equations, up to 10^4 steps.

Prey x and predators z follow x' = a x - b x z, z' = d x z - g z with
parameters theta = (a, b, d, g); explicit Euler with step ``DT`` from the
initial state ``y0 = (x0, z0)``. The cost, dt * sum_k ((x_k - 1)^2 + (z_k - 1)^2)
+ x_T z_T, reads every step's state (the scan's stacked outputs) and the
final one (its carry), and is differentiated with respect to theta and y0.

Each step is a handful of scalar ops, so, as for the lstm, what is measured is
each backend's cost per op and per step: on the tape a Python loop recording
~20 nodes a step; on a graph one ``scan`` whose derivative is a reverse scan.
The hand-written gradient is the discrete adjoint, swept back in a Python loop.
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload

SIZES = ("t100", "t1000", "t10000")
DT = 1e-3


def lotka_volterra(ns, theta, y0, steps: int):
    """The Euler trajectory's cost (see the module docstring), as one scan of ``steps`` steps."""
    a, b, d, g = theta[0], theta[1], theta[2], theta[3]

    def step(state, _):
        x, z = state
        xz = x * z
        x, z = x + DT * (a * x - b * xz), z + DT * (d * xz - g * z)
        return (x, z), (x, z)

    (x, z), (xs, zs) = ns.scan(step, (y0[0], y0[1]), None, length=steps)
    return DT * ns.sum((xs - 1.0) * (xs - 1.0) + (zs - 1.0) * (zs - 1.0)) + x * z


def _trajectory(theta, y0, steps: int) -> tuple[list, list]:
    """The states x_0..x_T and z_0..z_T, in Python floats (the fastest plain way for scalars)."""
    a, b, d, g = (float(v) for v in theta)
    xs, zs = [float(y0[0])], [float(y0[1])]
    x, z = xs[0], zs[0]
    for _ in range(steps):
        xz = x * z
        x, z = x + DT * (a * x - b * xz), z + DT * (d * xz - g * z)
        xs.append(x)
        zs.append(z)
    return xs, zs


def hand_forward(theta, y0, steps):
    xs, zs = _trajectory(theta, y0, int(steps))
    x, z = np.array(xs[1:]), np.array(zs[1:])
    return DT * np.sum((x - 1.0) ** 2 + (z - 1.0) ** 2) + xs[-1] * zs[-1]


def hand_grad(theta, y0, steps):
    """The discrete adjoint: lambda_k = J_k' lambda_{k+1} + dcost/dy_k, swept from T back to 0."""
    a, b, d, g = (float(v) for v in theta)
    xs, zs = _trajectory(theta, y0, int(steps))
    lx = zs[-1] + 2 * DT * (xs[-1] - 1.0)
    lz = xs[-1] + 2 * DT * (zs[-1] - 1.0)
    ga = gb = gd = gg = 0.0
    for k in range(int(steps) - 1, -1, -1):
        x, z = xs[k], zs[k]
        xz = x * z
        ga += DT * lx * x
        gb -= DT * lx * xz
        gd += DT * lz * xz
        gg -= DT * lz * z
        lx, lz = lx * (1.0 + DT * (a - b * z)) + lz * DT * d * z, -lx * DT * b * x + lz * (1.0 + DT * (d * x - g))
        if k:
            lx += 2 * DT * (x - 1.0)
            lz += 2 * DT * (z - 1.0)
    return [np.array([ga, gb, gd, gg]), np.array([lx, lz])]


@workload("euler", sizes=SIZES, default=SIZES[2:], check=SIZES[:1], rtol=1e-9, fd_rtol=1e-6,
          doc="explicit Euler on Lotka-Volterra, up to 10^4 steps: a long scan and its reverse")
def euler(size: str) -> Problem:
    steps = int(size[1:])
    rng = seeded("euler", size)
    args = {"theta": np.array([1.1, 0.4, 0.1, 0.4]) * rng.uniform(0.9, 1.1, 4), "y0": rng.uniform(1.0, 3.0, 2)}
    fn = lambda ns, theta, y0: lotka_volterra(ns, theta, y0, steps)
    return Problem(fn, args, ("theta", "y0"), hand_grad=lambda theta, y0: hand_grad(theta, y0, steps),
                   hand_forward=lambda theta, y0: hand_forward(theta, y0, steps), scale=steps, family="euler",
                   label=f"{steps} Euler steps of dt {DT:g}")
