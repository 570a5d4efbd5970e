"""Gradient and Hessian-vector product of a one-input scalar model on each backend, and their references.

A model is ``f(ns, x)``, written against a namespace: symnum's tape runs it on
tensors, symsym builds it on nodes and compiles its gradient and H v with a
linker. The references are central differences of a plain numpy twin (first
and second) and PyTorch's double backward.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

import symnum
import symsym
from benchmarks.finite import central_differences
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
    """The gradient of scalar ``f`` by central differences with an absolute step."""
    return central_differences(f, x, h)


def central(fn, x, eps: float = 1e-6) -> np.ndarray:
    """The derivative of the scalar ``fn`` at ``x`` by central differences, entry by entry, in float64, each
    step relative to its entry (``eps * max(1, |x_i|)``)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.empty(x.shape)
    for i in np.ndindex(*x.shape):
        up, down = x.copy(), x.copy()
        h = eps * max(1.0, abs(float(x[i])))
        up[i] += h
        down[i] -= h
        out[i] = (float(fn(up)) - float(fn(down))) / (2 * h)
    return out


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


class Models:
    """A table of one-input models, ``name -> (f(ns, x), numpy f(x), torch f(x) or None, inputs(rng))``:
    each model's inputs (seeded by its name), its derivatives on each backend and its differences, each
    computed once for every test that compares them. ``numba`` names the models also compiled with the
    numba linker (each costs seconds of compiling)."""

    def __init__(self, table: dict, numba=()):
        self.table = table
        self.runs = [(n, b) for n in sorted(table) for b in BACKENDS if b != "numba" or n in numba]
        self.results = functools.cache(self._results)
        self.differences = functools.cache(self._differences)

    def inputs(self, name: str):
        """The model's point x and direction v."""
        rng = np.random.default_rng(sum(map(ord, name)))
        x = self.table[name][3](rng)
        return x, rng.standard_normal(x.shape)

    def _results(self, name: str, backend: str):
        x, v = self.inputs(name)
        return grad_hvp(backend, self.table[name][0], x, v)

    def _differences(self, name: str):
        x, v = self.inputs(name)
        return fd_grad(self.table[name][1], x), fd_hvp(self.table[name][1], x, v)

    def against_differences(self, name: str, backend: str, atol: float, hvp_atol: float) -> None:
        """The gradient to 1e-6 and H v to 1e-4, relative (second differences lose about half the digits)."""
        g, h = self.results(name, backend)
        fg, fh = self.differences(name)
        np.testing.assert_allclose(g, fg, rtol=1e-6, atol=atol)
        np.testing.assert_allclose(h, fh, rtol=1e-4, atol=hvp_atol)

    def against_pytorch(self, name: str, backend: str, rtol: float, atol: float) -> None:
        """The gradient and H v against PyTorch's double backward."""
        x, v = self.inputs(name)
        g, h = self.results(name, backend)
        tg, th = torch_grad_hvp(self.table[name][2], x, v)
        np.testing.assert_allclose(g, tg, rtol=rtol, atol=atol)
        np.testing.assert_allclose(h, th, rtol=rtol, atol=atol)
