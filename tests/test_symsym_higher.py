"""Higher-order derivatives: grad applied to graphs that grad produced."""

import numpy as np
import pytest

import common
from benchmarks.finite import central_differences
from common import api as T
from common.errors import GradError
from symsym import function, grad, hessian, hvp, jacobian, jvp, vectorize


def test_fourth_derivative_of_the_sin_chain_matches_closed_form():
    x = T.var("x", ())
    y = T.sin(T.sin(x))
    d = y
    for _ in range(4):
        d = grad(d, x)
    xv = 0.7
    s, c = np.sin(xv), np.cos(xv)
    su, cu = np.sin(s), np.cos(s)
    # u = sin x: u1 = c, u2 = -s, u3 = -c, u4 = s (its derivatives). Differentiating y = sin(u) four times:
    # y4 = sin(u) u1^4 - 6 cos(u) u1^2 u2 - 3 sin(u) u2^2 - 4 sin(u) u1 u3 + cos(u) u4
    d4_closed = su * c ** 4 + 6 * cu * c ** 2 * s - 3 * su * s ** 2 + 4 * su * c ** 2 + cu * s
    d3 = lambda t: (-np.cos(np.sin(t)) * np.cos(t) ** 3 + 3 * np.sin(np.sin(t)) * np.sin(t) * np.cos(t)
                    - np.cos(np.sin(t)) * np.cos(t))
    np.testing.assert_allclose(d4_closed, central_differences(d3, np.asarray(xv), 1e-5), rtol=1e-6)
    got = common.evaluate(d, {x: xv})
    np.testing.assert_allclose(got, d4_closed, rtol=1e-10)
    np.testing.assert_allclose(function([x], d)(xv), d4_closed, rtol=1e-10)


def test_nth_derivative_of_sin_cycles():
    x = T.var("x", ())
    d = T.sin(x)
    xv = 0.4
    expected = [np.cos(xv), -np.sin(xv), -np.cos(xv), np.sin(xv), np.cos(xv), -np.sin(xv)]
    for k in range(6):
        d = grad(d, x)
        np.testing.assert_allclose(common.evaluate(d, {x: xv}), expected[k], rtol=1e-12)


def _rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return T.sum(100.0 * T.square(even - T.square(odd)) + T.square(1.0 - odd))


def _rosenbrock_grad_np(v):
    odd, even = v[0::2], v[1::2]
    g = np.zeros_like(v)
    g[0::2] = -400 * odd * (even - odd ** 2) - 2 * (1 - odd)
    g[1::2] = 200 * (even - odd ** 2)
    return g


def test_hessian_matches_finite_differences_of_the_gradient():
    x = T.var("x", (6,))
    cost = _rosenbrock(x) + T.sum(T.sin(x) * x[::-1])
    h = hessian(cost, x)
    assert h.shape == (6, 6)
    rng = np.random.default_rng(1)
    xv = rng.uniform(-1, 1, 6)
    gfun = function([x], grad(cost, x))
    expected = central_differences(gfun, xv)
    np.testing.assert_allclose(function([x], h)(xv), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(common.evaluate(h, {x: xv}), expected, rtol=1e-6, atol=1e-6)


def test_hessian_is_one_vectorised_graph():
    """The graph size does not grow with n: no per-row copies of the reverse pass."""
    sizes = []
    for n in (4, 40):
        x = T.var("x", (n,))
        sizes.append(common.count_nodes(hessian(_rosenbrock(x), x)))
    assert sizes[0] == sizes[1]
    n = 200
    x = T.var("x", (n,))
    f = function([x], hessian(_rosenbrock(x), x))
    xv = np.random.default_rng(2).uniform(-1, 1, n)
    expected = central_differences(_rosenbrock_grad_np, xv)
    np.testing.assert_allclose(f(xv), expected, rtol=1e-6, atol=1e-5)


def test_vectorised_jacobian_matches_loop_and_finite_differences():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 4))
    x = T.var("x", (4,))
    y = T.tanh(T.const(a) @ x) * T.sum(x ** 2) + T.softmax(T.const(a) @ T.exp(x))
    jv = jacobian(y, x)
    jl = jacobian(y, x, vectorized=False)
    assert jv.shape == jl.shape == (3, 4)
    xv = rng.standard_normal(4)
    yfun = function([x], y)
    expected = central_differences(yfun, xv)
    np.testing.assert_allclose(function([x], jv)(xv), expected, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(function([x], jl)(xv), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("build", [
    lambda x, w: T.matmul(w, x), lambda x, w: T.matmul(x, w.T), lambda x, w: T.einsum("ij,j->i", w, x),
    lambda x, w: T.sum(w * x, axis=1) + T.max(w * x, axis=1), lambda x, w: T.concatenate([x[1:], x[:2] * 2.0]),
    lambda x, w: T.stack([x, x * x], axis=1).reshape(-1)[:3], lambda x, w: T.log_softmax(w @ x),
    lambda x, w: T.where(x > 0, x, x * 0.1)[np.array([0, 2, 2])],
    lambda x, w: T.transpose(T.expand_dims(x, 1) * w.T).sum(axis=0),
], ids=["matmul-mv", "matmul-vm", "einsum", "reduce", "concat", "stack-reshape", "log_softmax", "where-index",
        "transpose"])
def test_vectorised_jacobian_covers_many_ops(build):
    rng = np.random.default_rng(4)
    wv = rng.standard_normal((3, 4))
    x = T.var("x", (4,))
    y = build(x, T.const(wv))
    xv = rng.standard_normal(4) + 0.05
    expected = central_differences(function([x], y), xv)
    np.testing.assert_allclose(function([x], jacobian(y, x))(xv), expected, rtol=1e-6, atol=1e-8)


def test_hvp_matches_hessian_times_v():
    x = T.var("x", (5,))
    v = T.var("v", (5,))
    cost = _rosenbrock(x[:4]) + T.sum(T.exp(x) * T.cos(x[::-1]))
    hv = hvp(cost, x, v)
    rng = np.random.default_rng(5)
    xv, vv = rng.uniform(-1, 1, 5), rng.standard_normal(5)
    h = function([x], hessian(cost, x))(xv)
    np.testing.assert_allclose(function([x, v], hv)(xv, vv), h @ vv, rtol=1e-10, atol=1e-10)
    # hvp never forms an n x n node
    assert all(len(n.shape) <= 1 for n in common.toposort(hv))


def test_jvp_is_jacobian_times_v():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 4))
    x = T.var("x", (4,))
    v = T.var("v", (4,))
    y = T.sin(T.const(a) @ x) * 2.0
    xv, vv = rng.standard_normal(4), rng.standard_normal(4)
    j = function([x], jacobian(y, x))(xv)
    got = function([x, v], jvp(y, x, v))(xv, vv)
    np.testing.assert_allclose(got, j @ vv, rtol=1e-10)


def test_vectorize_checks_batch_shapes():
    x = T.var("x", (3,))
    with pytest.raises(GradError, match="batch"):
        vectorize([T.sin(x)], {x: T.const(np.zeros((2, 4)))}, 2)


def test_hessian_needs_a_scalar_cost():
    x = T.var("x", (3,))
    with pytest.raises(GradError, match="scalar"):
        hessian(T.sin(x), x)
