"""Sparse Hessians and Jacobians: structural patterns, colouring, compressed evaluation."""

import numpy as np
import pytest

import common
from benchmarks.finite import second_differences
from common import api as T
from symsym import function, grad, hessian, jacobian
from symsym.higher import _cotangent
from symsym.sparsity import colour_rows, compressed_jacobian, pattern
from symsym.vectorize import vectorize


def _rosenbrock(ns, x):
    head = x[:-1]
    return ns.sum(100.0 * ns.square(x[1:] - ns.square(head)) + ns.square(1.0 - head))


def _rosenbrock_hessian(x):
    """The tridiagonal closed form, written independently of the code under test."""
    n = len(x)
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] = h[i + 1, i] = -400 * x[i]
    return h


def test_rosenbrock_hessian_is_compressed_and_exact():
    n = 50
    x = T.var("x", (n,))
    h = hessian(_rosenbrock(T.symbolic, x), x)
    assert h.shape == (n, n)
    f = function([x], h)
    # assembled from the compressed rows; the bands' positions are constants naming each element once,
    # so the scatter is an assignment, not np.add.at
    assert "scatter_set" in f.source and "scatter_at" not in f.source
    xv = np.random.default_rng(0).uniform(-1.5, 1.5, n)
    np.testing.assert_allclose(f(xv), _rosenbrock_hessian(xv), rtol=1e-12, atol=1e-9)


def test_pattern_of_the_rosenbrock_hessian_is_tridiagonal():
    n = 8
    x = T.var("x", (n,))
    g = grad(_rosenbrock(T.symbolic, x), x)
    u = _cotangent(g)
    row = grad(g, x, known_grads={g: u})
    basis = T.const(np.eye(n))
    (dense,) = vectorize([row], {u: basis}, n)
    p = pattern(dense, basis)
    expected = np.abs(np.subtract.outer(np.arange(n), np.arange(n))) <= 1
    np.testing.assert_array_equal(p, expected)
    colours = colour_rows(p)
    assert colours.max() + 1 == 3
    for c in range(3):  # rows of one colour touch disjoint columns
        assert p[colours == c].sum(axis=0).max() <= 1


@pytest.mark.parametrize("name", ["exp-chain", "where-relu", "matmul", "dense-softmax", "sum-products"])
def test_sparse_and_dense_hessians_agree(name):
    rng = np.random.default_rng(1)
    n = 9
    x = T.var("x", (n,))
    a = rng.standard_normal((n, n))
    if name == "exp-chain":       # banded: exp of neighbour differences
        cost = T.sum(T.exp(x[1:] - x[:-1]) * T.sin(x[1:]))
    elif name == "where-relu":    # a data-dependent branch: the pattern must hold on both sides
        cost = T.sum(T.where(x > 0, x * x * x, T.relu(-x) * x[::-1]))
    elif name == "matmul":        # dense through a matrix
        cost = T.sum(T.tanh(T.const(a) @ x) ** 2)
    elif name == "dense-softmax":
        cost = T.sum(T.softmax(x) * T.const(a[0]))
    else:                         # diagonal plus one coupling
        cost = T.sum(x * x * x) + x[0] * x[n - 1]
    hs = function([x], hessian(cost, x))
    hd = function([x], hessian(cost, x, sparse=False))
    for _ in range(3):
        xv = rng.standard_normal(n)
        np.testing.assert_allclose(hs(xv), hd(xv), rtol=1e-12, atol=1e-12)
    fwd = function([x], cost)
    xv = rng.standard_normal(n)
    np.testing.assert_allclose(hs(xv), second_differences(lambda v: float(fwd(v)), xv), rtol=1e-4, atol=1e-5)


def test_a_dense_jacobian_is_not_compressed():
    n = 6
    x = T.var("x", (n,))
    y = T.tanh(T.const(np.random.default_rng(2).standard_normal((n, n))) @ x)
    u = _cotangent(y)
    row = grad(y, x, known_grads={y: u})
    basis = T.const(np.eye(n))
    (dense,) = vectorize([row], {u: basis}, n)
    assert compressed_jacobian(row, u, dense, basis, n) is None


def test_sparse_jacobian_of_a_banded_map():
    n = 12
    x = T.var("x", (n,))
    y = T.sin(x[1:]) * x[:-1]
    j = jacobian(y, x)
    xv = np.random.default_rng(3).standard_normal(n)
    expected = np.zeros((n - 1, n))
    for i in range(n - 1):
        expected[i, i] = np.sin(xv[i + 1])
        expected[i, i + 1] = xv[i] * np.cos(xv[i + 1])
    np.testing.assert_allclose(common.evaluate(j, {x: xv}), expected, rtol=1e-12)
    np.testing.assert_allclose(function([x], j)(xv), expected, rtol=1e-12)


def test_a_huge_declared_intermediate_makes_the_analysis_give_up_without_allocating_it():
    """A node of 2e7 elements on the way (a broadcast in a loaded graph, say) would cost gigabytes of
    patterns; the analysis gives up on it and the Hessian is built dense, in a few megabytes."""
    import tracemalloc

    x = T.var("x", (5,))
    big = T.broadcast_to(T.reshape(x, (1, 5)), (4_000_000, 5))
    cost = T.sum(T.sin(big) * T.reshape(T.sin(x), (1, 5)))
    tracemalloc.start()
    try:
        h = hessian(cost, x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert h.shape == (5, 5)
    assert peak < 50e6, f"building the Hessian allocated {peak / 1e6:.0f} MB"
