"""Convolution and pooling (``ns.nn``): values, gradients and Hessian-vector products.

Values against loops written out position by position (``tests/opcases.py``)
and PyTorch; gradients against central differences of those loops and
PyTorch; H v against second differences and PyTorch's double backward, on
the tape and both linkers. Batched (vmap) forms against a loop, bad input
against the errors a user should see.
"""

from __future__ import annotations

import numpy as np
import pytest
from derivchecks import Models, grad_hvp, torch_grad_hvp
from opcases import _conv_ref, _padded

import symnum
import symsym
from common import api as T
from common.errors import ShapeError

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional: its comparisons are skipped
    torch = None

RNG = np.random.default_rng(21)
X0 = RNG.standard_normal((2, 4, 7, 6))
W0 = RNG.standard_normal((6, 2, 3, 2))
X1 = RNG.standard_normal((2, 3, 9))
W1 = RNG.standard_normal((4, 3, 3))
C2 = RNG.standard_normal((2, 6, 4, 6))
GEOM = dict(stride=(2, 1), padding=(1, 1), dilation=(1, 2), groups=2)


def _pool_ref(x, k, s, p, how):
    xp = _padded(x, (p, p), -np.inf if how == "max" else 0.0)
    n = [(d - k) // s + 1 for d in xp.shape[-2:]]
    out = np.zeros((*x.shape[:-2], *n))
    for i, j in np.ndindex(*n):
        win = xp[..., i * s:i * s + k, j * s:j * s + k]
        out[..., i, j] = win.max(axis=(-2, -1)) if how == "max" else win.mean(axis=(-2, -1))
    return out


def _tt(a):
    return torch.tensor(a)


# name -> (twograd f(ns, x), numpy f(x), torch f(x), inputs(rng))
MODELS = {
    "conv2d-input": (lambda ns, x: ns.sum(C2[:1, :, :3, :4] * ns.nn.conv2d(x, W0, **GEOM) ** 2),
                     lambda x: np.sum(C2[:1, :, :3, :4] * _conv_ref(x, W0, **GEOM) ** 2),
                     lambda x: (_tt(C2[:1, :, :3, :4]) * F.conv2d(x, _tt(W0), **GEOM) ** 2).sum(),
                     lambda rng: rng.standard_normal((1, 4, 5, 4))),
    "conv2d-weight": (lambda ns, w: ns.sum(C2 * ns.tanh(ns.nn.conv2d(X0, w, **GEOM))),
                      lambda w: np.sum(C2 * np.tanh(_conv_ref(X0, w, **GEOM))),
                      lambda w: (_tt(C2) * torch.tanh(F.conv2d(_tt(X0), w, **GEOM))).sum(),
                      lambda rng: rng.standard_normal(W0.shape) * 0.5),
    "conv2d-both": (lambda ns, w: ns.sum(ns.nn.conv2d(X0[:, :2, :5, :5] * w[0, 0, 0, 0], w[:3, :, :, :1] ** 2,
                                                      stride=1, padding=2) ** 2),
                    lambda w: np.sum(_conv_ref(X0[:, :2, :5, :5] * w[0, 0, 0, 0], w[:3, :, :, :1] ** 2,
                                               (1, 1), (2, 2), (1, 1), 1) ** 2),
                    lambda w: (F.conv2d(_tt(X0[:, :2, :5, :5]) * w[0, 0, 0, 0], w[:3, :, :, :1] ** 2,
                                        stride=1, padding=2) ** 2).sum(),
                    lambda rng: rng.standard_normal(W0.shape) * 0.5),
    "conv1d": (lambda ns, x: ns.sum(ns.sin(ns.nn.conv1d(x, W1, stride=2, padding=1, dilation=2))),
               lambda x: np.sum(np.sin(_conv_ref(x, W1, (2,), (1,), (2,), 1))),
               lambda x: torch.sin(F.conv1d(x, _tt(W1), stride=2, padding=1, dilation=2)).sum(),
               lambda rng: rng.standard_normal(X1.shape)),
    "max_pool2d": (lambda ns, x: ns.sum(ns.nn.max_pool2d(x * x, 3, stride=2, padding=1) ** 2),
                   lambda x: np.sum(_pool_ref(x * x, 3, 2, 1, "max") ** 2),
                   lambda x: (F.max_pool2d(x * x, 3, stride=2, padding=1) ** 2).sum(),
                   lambda rng: (rng.permutation(2 * 3 * 6 * 7) * 0.03 + 0.5).reshape(2, 3, 6, 7)),
    "avg_pool2d": (lambda ns, x: ns.sum(ns.nn.avg_pool2d(x * x, 2, padding=1) ** 2),
                   lambda x: np.sum(_pool_ref(x * x, 2, 2, 1, "avg") ** 2),
                   lambda x: (F.avg_pool2d(x * x, 2, padding=1) ** 2).sum(),
                   lambda rng: rng.standard_normal((2, 3, 5, 6))),
}
CHECKS = Models(MODELS, numba=("conv2d-input", "conv2d-both", "max_pool2d"))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_value_matches_the_loops(name):
    f, ref, _, _ = MODELS[name]
    x, _ = CHECKS.inputs(name)
    np.testing.assert_allclose(np.asarray(f(symnum, symnum.tensor(x))), ref(x), rtol=1e-10)
    xs = T.var("x", x.shape)
    np.testing.assert_allclose(symsym.function([xs], f(T, xs))(x), ref(x), rtol=1e-10)


@pytest.mark.parametrize("name, backend", CHECKS.runs)
def test_gradient_and_hvp_match_differences(name, backend):
    CHECKS.against_differences(name, backend, atol=1e-6, hvp_atol=1e-4)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name, backend", CHECKS.runs)
def test_gradient_and_hvp_match_pytorch(name, backend):
    CHECKS.against_pytorch(name, backend, rtol=1e-9, atol=1e-10)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("kw", [dict(), dict(stride=2), dict(padding=2, dilation=3), dict(groups=3),
                                dict(stride=(1, 3), padding=(0, 2), groups=6)])
def test_conv2d_matches_pytorch(kw):
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((2, 6, 11, 12)), rng.standard_normal((6, 6 // kw.get("groups", 1), 3, 4))
    got = symsym.function([], T.nn.conv2d(T.const(x), T.const(w), **kw))()
    np.testing.assert_allclose(got, F.conv2d(_tt(x), _tt(w), **kw).numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("backend", ["tape", "numpy"])
def test_a_large_pool_matches_pytorch(backend):
    """Pools big enough for the fast paths: the max and sums over each 2x2 window by slices, the
    non-overlapping windows put back by one copy (and a 3x3 stride-3 pool that leaves a border no
    window reaches). Relu before the pool makes windows of tied zeros, as a network does."""
    rng = np.random.default_rng(5)
    x, v, c = rng.standard_normal((3, 4, 4, 32, 32)), rng.standard_normal((3, 4, 4, 32, 32)), rng.standard_normal(10)

    def f(ns, x):
        two = ns.nn.max_pool2d(ns.relu(x[0]), 2) ** 2 + ns.nn.avg_pool2d(x[1] * x[1], 2)
        return ns.sum(two) + ns.sum(ns.nn.max_pool2d(ns.sin(x[2]), 3) * c)

    def tf(x):
        two = F.max_pool2d(torch.relu(x[0]), 2) ** 2 + F.avg_pool2d(x[1] * x[1], 2)
        return two.sum() + (F.max_pool2d(torch.sin(x[2]), 3) * _tt(c)).sum()

    (g, h), (tg, th) = grad_hvp(backend, f, x, v), torch_grad_hvp(tf, x, v)
    np.testing.assert_allclose(g, tg, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h, th, rtol=1e-12, atol=1e-12)


def test_vmap_of_conv_and_pool_matches_a_loop():
    rng = np.random.default_rng(3)
    xs, w = rng.standard_normal((3, 2, 2, 6, 6)), rng.standard_normal((3, 2, 3, 3))

    def f(x):
        return symnum.nn.max_pool2d(symnum.nn.conv2d(x, w, padding=1), 2)

    got = np.asarray(symnum.vmap(f)(xs))
    np.testing.assert_allclose(got, np.stack([np.asarray(f(symnum.tensor(x))) for x in xs]), rtol=1e-12)


@pytest.mark.parametrize("build, words", [
    (lambda: T.nn.conv2d(T.var("x", (1, 2, 3, 3)), T.var("w", (4, 2, 5, 5))), "larger than the padded input"),
    (lambda: T.nn.conv2d(T.var("x", (1, 6, 8, 8)), T.var("w", (4, 3, 3, 3)), groups=3), "does not divide"),
    (lambda: T.nn.conv2d(T.var("x", (1, 6, 8, 8)), T.var("w", (4, 4, 3, 3))), "input channels"),
    (lambda: T.nn.conv2d(T.var("x", (6, 8, 8)), T.var("w", (4, 6, 3, 3))), "conv2d"),
    (lambda: T.nn.max_pool2d(T.var("x", (1, 2, 3, 3)), 5), "larger than the padded input"),
    (lambda: T.nn.avg_pool2d(T.var("x", (1, 2, 6, 6)), 2, padding=2), "at most half"),
])
def test_bad_geometry_is_refused_at_build_time(build, words):
    with pytest.raises(ShapeError) as e:
        build()
    assert words in str(e.value) and __file__ in str(e.value), str(e.value)


def test_bad_geometry_is_refused_on_the_tape():
    with pytest.raises(ShapeError) as e:
        symnum.nn.conv2d(symnum.tensor(np.ones((1, 2, 3, 3))), symnum.tensor(np.ones((4, 2, 5, 5))))
    assert "larger than the padded input" in str(e.value) and __file__ in str(e.value)


def test_nan_in_nan_out():
    x = np.ones((1, 1, 4, 4))
    x[0, 0, 1, 1] = np.nan
    out = symsym.function([], T.nn.max_pool2d(T.nn.conv2d(T.const(x), T.const(np.ones((1, 1, 2, 2)))), 1))()
    assert np.isnan(out[0, 0, :2, :2]).all() and np.isfinite(out[0, 0, 2:, 2:]).all()
