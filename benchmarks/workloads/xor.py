"""Learning XOR (the book's §6.1): a 2-2-1 network with a ReLU hidden layer.

The four points of XOR cannot be fit linearly; two ReLU units suffice. Every
backend trains from the same initialisation with the same plain gradient
descent, so their loss curves must coincide to rounding.
"""

from __future__ import annotations

import numpy as np

from . import Problem, workload

POINTS = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
TARGETS = np.array([0.0, 1.0, 1.0, 0.0])


def xor_fn(ns, W, c, w, b, x, t):
    h = ns.relu(x @ W + c)
    return ns.mean(ns.square(h @ w + b - t))


def hand_forward(W, c, w, b, x, t):
    h = np.maximum(x @ W + c, 0.0)
    return np.mean(np.square(h @ w + b - t))


def hand_grad(W, c, w, b, x, t):
    a = x @ W + c
    h = np.maximum(a, 0.0)
    r = (h @ w + b - t) * (2.0 / len(t))
    da = np.outer(r, w) * (a > 0)
    return [x.T @ da, da.sum(axis=0), h.T @ r, r.sum()]


@workload("xor", sizes=("2-2-1",), kind="train", rtol=1e-8,
          doc="learning XOR with a 2-2-1 ReLU network (book §6.1): same loss curve on every backend")
def xor(size: str) -> Problem:
    # Seed 0 reaches the exact XOR fit; many other draws stall at the linear fit (loss 0.25),
    # the local minimum the book warns about.
    rng = np.random.default_rng(0)
    args = {"W": rng.standard_normal((2, 2)), "c": rng.uniform(-0.1, 0.1, 2), "w": rng.standard_normal(2),
            "b": np.array(0.0), "x": POINTS, "t": TARGETS}
    return Problem(xor_fn, args, ("W", "c", "w", "b"), hand_grad=hand_grad, hand_forward=hand_forward,
                   steps=400, lr=0.1, scale=4, family="xor", label="2-2-1 ReLU, 4 points, 400 steps")
