"""The book's z = f(f(f(w))) (Figure 6.10), deepened, and its higher derivatives.

``chain`` is all per-op overhead: a scalar pushed through d calls of one
function, so it measures what a backend spends per node. ``order`` takes
derivatives of order 1..6 of a short chain and of a Gaussian, whose closed
form (Hermite polynomials) is the reference, and counts how the derivative
graph grows, raw and after rewrites.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numpy.polynomial import hermite_e

from . import Problem, workload

DEPTHS = (3, 10, 100, 1000, 10000)


def chain_fn(ns, w, depth: int, f: str):
    """f applied ``depth`` times to ``w``."""
    step = getattr(ns, f)
    for _ in range(depth):
        w = step(w)
    return w


def hand_chain_grad(w, depth: int, f: str):
    """dz/dw by hand: the forward kept, then the product of the local derivatives."""
    kept = []
    x = w
    if f == "sin":
        for _ in range(depth):
            kept.append(x)
            x = np.sin(x)
        g = np.ones_like(w)
        for x in reversed(kept):
            g = g * np.cos(x)
    else:
        for _ in range(depth):
            x = np.tanh(x)
            kept.append(x)
        g = np.ones_like(w)
        for y in reversed(kept):
            g = g * (1.0 - y * y)
    return [g]


def hand_chain_forward(w, depth: int, f: str):
    step = getattr(np, f)
    for _ in range(depth):
        w = step(w)
    return w


@workload("chain", sizes=[f"{f}-d{d}" for f in ("sin", "tanh") for d in DEPTHS],
          default=("sin-d10", "sin-d100", "sin-d1000", "sin-d10000", "tanh-d1000"),
          check=("sin-d3", "tanh-d10"), fd_step=1e-4,
          doc="z = f(f(...f(w))): a scalar through d calls of sin or tanh (per-op overhead)")
def chain(size: str) -> Problem:
    f, d = size.split("-d")
    depth = int(d)
    return Problem(partial(chain_fn, depth=depth, f=f), {"w": np.array(0.7)}, ("w",),
                   hand_grad=partial(hand_chain_grad, depth=depth, f=f),
                   hand_forward=partial(hand_chain_forward, depth=depth, f=f),
                   scale=depth, family=f, label=f"{f}, depth {depth}, scalar")


def gauss_fn(ns, w):
    return ns.exp(-(w * w) * 0.5)


def gauss_exact(k: int, w):
    """d^k/dw^k exp(-w^2/2) = (-1)^k He_k(w) exp(-w^2/2)."""
    return (-1) ** k * hermite_e.hermeval(w, [0] * k + [1]) * np.exp(-w * w / 2)


@workload("order", sizes=("sin-d3", "gauss"), check=("sin-d3", "gauss"), kind="order", rtol=1e-8, fd_rtol=1e-5,
          doc="derivatives of order 1..6 of sin(sin(sin(w))) and exp(-w^2/2): values and graph sizes")
def order(size: str) -> Problem:
    if size == "gauss":
        return Problem(gauss_fn, {"w": np.array(0.8)}, ("w",), max_order=6, exact=gauss_exact,
                       hand_grad=lambda w: [-w * np.exp(-w * w / 2)],
                       hand_forward=lambda w: np.exp(-w * w / 2),
                       family="gauss", label="exp(-w^2/2), orders 1..6")
    depth = int(size.split("-d")[1])
    return Problem(partial(chain_fn, depth=depth, f="sin"), {"w": np.array(0.7)}, ("w",), max_order=6,
                   hand_grad=partial(hand_chain_grad, depth=depth, f="sin"),
                   hand_forward=partial(hand_chain_forward, depth=depth, f="sin"),
                   family="sin", label=f"sin chain depth {depth}, orders 1..6")
