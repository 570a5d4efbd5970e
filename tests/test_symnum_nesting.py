"""Transforms nested the way users nest them: ``jacfwd(jacrev(f))`` and ``jacfwd(grad(f))`` (the usual
Hessians, forward over reverse) and ``vmap`` over a ``while_loop`` whose trip count differs across the
batch, against ``torch.func`` and central differences of numpy twins in float64.
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
from benchmarks.finite import central_differences

torch = pytest.importorskip("torch")


def scalar_model(ns, x):
    return ns.sum(ns.sin(x) * x[0]) + ns.sum(x ** 3) * ns.exp(x[1])


def vector_model(ns, x):
    return ns.sin(x) * ns.sum(x * x) + ns.exp(x) * x[0]


NS_TORCH = type("TorchNS", (), {"sin": staticmethod(torch.sin), "exp": staticmethod(torch.exp),
                                "sum": staticmethod(torch.sum)})


@pytest.fixture
def x(rng):
    return rng.normal(size=4)


def second_differences(f, x, h=1e-4):
    """The Hessian (or the second derivative of each output) of the numpy ``f`` by central differences of
    central differences."""
    return central_differences(lambda v: central_differences(f, v, h), x, h)


@pytest.mark.parametrize("name", ["jacfwd(jacrev)", "jacfwd(grad)", "jacfwd(jacobian)"])
def test_forward_over_reverse_hessian(x, name):
    f = lambda t: scalar_model(S, t)
    outer, inner = name.rstrip(")").split("(")
    got = getattr(S, outer)(getattr(S, inner)(f))(x)
    want = torch.func.jacfwd(torch.func.jacrev(lambda t: scalar_model(NS_TORCH, t)))(torch.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, second_differences(lambda v: scalar_model(np, v), x), rtol=1e-5, atol=1e-5)


def test_jacfwd_of_jacrev_of_a_vector_function(x):
    got = S.jacfwd(S.jacrev(lambda t: vector_model(S, t)))(x)
    want = torch.func.jacfwd(torch.func.jacrev(lambda t: vector_model(NS_TORCH, t)))(torch.tensor(x)).numpy()
    assert got.shape == (4, 4, 4)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, second_differences(lambda v: vector_model(np, v), x), rtol=1e-5, atol=1e-5)


def test_jvp_of_jacrev_is_the_hessian_times_v(x, rng):
    v = rng.normal(size=4)
    _, tangent = S.jvp(S.jacrev(lambda t: vector_model(S, t)), [x], [v])
    want = torch.func.jvp(torch.func.jacrev(lambda t: vector_model(NS_TORCH, t)), (torch.tensor(x),),
                          (torch.tensor(v),))[1].numpy()
    np.testing.assert_allclose(tangent, want, rtol=1e-12, atol=1e-12)


def _grow(ns, c):
    return ns.sin(c) + c * 1.5


def _loop_np(y):
    """The numpy twin of :func:`_loop`: grow the carry while its squared norm stays under 10."""
    c = np.array(y, dtype=float)
    while np.sum(c * c) < 10.0:
        c = _grow(np, c)
    return c


def _loop(y):
    return S.while_loop(lambda c: S.sum(c * c) < 10.0, lambda c: _grow(S, c), y)


def test_vmap_over_a_while_loop_runs_each_element_its_own_steps():
    xs = np.array([[1.0, 2.0], [0.5, 0.2], [20.0, 1.0], [0.1, -0.3]])  # 1, several, 0 and many steps
    got = S.vmap(_loop)(xs)
    np.testing.assert_allclose(got, np.stack([_loop_np(v) for v in xs]), rtol=1e-14)


def test_vmap_over_a_while_loop_on_scalars():
    xs = np.array([1.0, 2.0, 0.5, 11.0])
    got = S.vmap(lambda y: S.while_loop(lambda c: c < 10.0, lambda c: c * 2.0, y))(xs)
    np.testing.assert_allclose(got, [16.0, 16.0, 16.0, 11.0])


def test_per_example_gradients_through_a_batched_while_loop():
    xs = np.array([[1.0, 2.0], [0.5, 0.2], [20.0, 1.0], [0.1, -0.3]])
    f = lambda y: S.sum(_loop(y) ** 2)
    per_example = S.vmap(S.grad(f))(xs)
    summed = S.grad(lambda X: S.sum(S.vmap(f)(X)))(xs)
    for i, v in enumerate(xs):
        want = central_differences(lambda u: np.sum(_loop_np(u) ** 2), v)  # the trip count is locally constant
        np.testing.assert_allclose(per_example[i], want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(summed[i], want, rtol=1e-6, atol=1e-6)
