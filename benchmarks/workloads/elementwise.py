"""A long vector through 50 elementwise ops: memory-bound, few nodes, big arrays.

The cycle sin, exp(-y*y), y*x, y+x, tanh mixes ops whose derivative reuses
the output (exp, tanh), the input (sin) or both operands (y*x), so the
backward must keep all of it alive: this is where a backend's buffer
handling shows.
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload

CYCLE = 5


def elementwise_fn(ns, x, nops: int):
    y = x
    for k in range(nops):
        step = k % CYCLE
        if step == 0:
            y = ns.sin(y)
        elif step == 1:
            y = ns.exp(-(y * y))
        elif step == 2:
            y = y * x
        elif step == 3:
            y = y + x
        else:
            y = ns.tanh(y)
    return ns.sum(y)


def hand_forward(x, nops: int):
    return hand_grad(x, nops, forward_only=True)


def hand_grad(x, nops: int, forward_only: bool = False):
    """The forward keeps what each local derivative needs; the backward multiplies it in."""
    kept = []
    y = x
    for k in range(nops):
        step = k % CYCLE
        if step == 0:
            kept.append(y)
            y = np.sin(y)
        elif step == 1:
            e = np.exp(-(y * y))
            kept.append((y, e))
            y = e
        elif step == 2:
            kept.append(y)
            y = y * x
        elif step == 3:
            y = y + x
        else:
            y = np.tanh(y)
            kept.append(y)
    if forward_only:
        return np.sum(y)
    g = np.ones_like(x)
    gx = np.zeros_like(x)
    for k in reversed(range(nops)):
        step = k % CYCLE
        if step == 0:
            g = g * np.cos(kept.pop())
        elif step == 1:
            y, e = kept.pop()
            g = g * (-2.0 * y * e)
        elif step == 2:
            y = kept.pop()
            gx += g * y
            g = g * x
        elif step == 3:
            gx += g
        else:
            t = kept.pop()
            g = g * (1.0 - t * t)
    return [gx + g]


def _make(n: int, nops: int) -> Problem:
    x = seeded("elementwise", f"{n}").uniform(-1.0, 1.0, n)
    return Problem(lambda ns, x: elementwise_fn(ns, x, nops), {"x": x}, ("x",),
                   hand_grad=lambda x: hand_grad(x, nops), hand_forward=lambda x: hand_forward(x, nops),
                   scale=n, family=f"{nops} ops", label=f"{n:.0e} elements x {nops} ops")


@workload("elementwise", sizes=("n1e3", "n1e4", "n1e5"), default=("n1e4", "n1e5"), check=("n1e3",),
          rtol=1e-9, fd_rtol=1e-6,
          doc="a vector through 50 elementwise ops (sin, exp(-y*y), y*x, y+x, tanh), d sum / dx")
def elementwise(size: str) -> Problem:
    return _make(int(float(size[1:])), 50)
