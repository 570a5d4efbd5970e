"""Gradient and Hessian-vector product of a one-input scalar model on each backend, and their references.

A model is ``f(ns, x)``, written against a namespace: symnum's tape runs it on
tensors, symsym builds it on nodes and compiles its gradient and H v with a
linker. The references are central differences of a plain numpy twin (first
and second) and PyTorch's double backward.
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum
import symsym
from common import api as T

BACKENDS = ("tape", "numpy", "numba")


def grad_hvp(backend: str, f, x, v):
    """f's gradient and H v at x on one backend."""
    if backend == "tape":
        g = symnum.grad(lambda t: f(symnum, t))(x)
        return np.asarray(g), np.asarray(symnum.hvp(lambda t: f(symnum, t), x, v))
    if backend == "numba":
        pytest.importorskip("numba")
    xs, vs = T.var("x", x.shape), T.var("v", v.shape)
    cost = f(T, xs)
    fn = symsym.function([xs, vs], [symsym.grad(cost, xs), symsym.hvp(cost, xs, vs)], linker=backend)
    g, h = fn(x, v)
    return g, h


def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def fd_hvp(f, x, v, h=1e-4):
    """H v by second differences: d/dx_i of (f(x + h v) - f(x - h v)) / 2h."""
    out = np.zeros_like(x)
    for i in np.ndindex(*x.shape):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + h * v + e) - f(x + h * v - e) - f(x - h * v + e) + f(x - h * v - e)) / (4 * h * h)
    return out


def torch_grad_hvp(tf, x, v):
    """PyTorch's gradient and H v (its double backward) of ``tf`` at x."""
    import torch

    xt = torch.tensor(x, requires_grad=True)
    (g,) = torch.autograd.grad(tf(xt), xt, create_graph=True)
    (hv,) = torch.autograd.grad((g * torch.tensor(v)).sum(), xt)
    return g.detach().numpy(), hv.numpy()
