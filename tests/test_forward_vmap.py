"""Forward mode and reverse mode under ``symnum.vmap``: a jvp inside a vmap, ``vmap(grad(f))`` and
``vmap(value_and_grad(f))`` directly, against per-example loops of the plain transforms, reverse-mode
Jacobians and central finite differences in float64."""

import numpy as np
import pytest

import symnum as S
from common.errors import GradError

RNG = np.random.default_rng(7)
W = RNG.standard_normal((4, 3)) / 2
X = RNG.standard_normal((5, 3))


def loss(w, x):
    return S.sum(S.tanh(w @ x) ** 2)


def loss_np(w, x):
    return np.sum(np.tanh(w @ x) ** 2)


def _fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for k in range(x.size):
        e = np.zeros_like(x)
        e.flat[k] = h
        g.flat[k] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_jvp_inside_vmap_pushes_each_examples_tangent():
    f = lambda x: S.sin(x) * S.exp(x)
    xs, ts = np.linspace(-1.0, 1.0, 6), RNG.standard_normal(6)
    outs, tangents = S.vmap(lambda x, t: S.jvp(f, [x], [t]))(xs, ts)
    np.testing.assert_allclose(outs, np.sin(xs) * np.exp(xs), rtol=1e-14)
    np.testing.assert_allclose(tangents, (np.cos(xs) + np.sin(xs)) * np.exp(xs) * ts, rtol=1e-12)


def test_vmap_of_jvp_over_the_basis_is_the_jacobian():
    """JAX's jacfwd: the tangent mapped over the identity's rows, the primal shared."""
    f = lambda x: S.tanh(W @ x)
    x = X[0]
    cols = S.vmap(lambda t: S.jvp(f, [x], [t])[1])(np.eye(3))
    np.testing.assert_allclose(cols.T, S.jacobian(f, mode="reverse")(x), rtol=1e-10)


def test_jvp_inside_vmap_with_mapped_primals_and_vector_examples_matches_differences():
    f = lambda x: S.sum(S.tanh(W @ x) * x[0])
    t = np.array([0.5, -1.0, 2.0])
    _, tangents = S.vmap(lambda x: S.jvp(f, [x], [t]))(X)
    plain = lambda x: np.sum(np.tanh(W @ x) * x[0])
    want = [(plain(x + 1e-6 * t) - plain(x - 1e-6 * t)) / 2e-6 for x in X]
    np.testing.assert_allclose(tangents, want, rtol=1e-7)


def test_vmap_of_grad_is_each_examples_gradient():
    g = S.vmap(S.grad(loss), in_axes=(None, 0))(W, X)
    assert g.shape == (5, *W.shape)
    for k, x in enumerate(X):
        np.testing.assert_allclose(g[k], S.grad(loss)(W, x), rtol=1e-12)
        np.testing.assert_allclose(g[k], _fd_grad(lambda w: loss_np(w, x), W), rtol=1e-6, atol=1e-9)


def test_vmap_of_grad_with_respect_to_the_mapped_argument():
    g = S.vmap(S.grad(loss, argnums=1), in_axes=(None, 0))(W, X)
    for k, x in enumerate(X):
        np.testing.assert_allclose(g[k], _fd_grad(lambda v: loss_np(W, v), x), rtol=1e-6, atol=1e-9)


def test_vmap_of_value_and_grad_with_two_argnums_and_out_axes():
    values, (gw, gx) = S.vmap(S.value_and_grad(loss, argnums=(0, 1)), in_axes=(None, 0), out_axes=-1)(W, X)
    np.testing.assert_allclose(values, [loss_np(W, x) for x in X], rtol=1e-14)
    assert gw.shape == (*W.shape, 5) and gx.shape == (3, 5)
    for k, x in enumerate(X):
        wk, xk = S.grad(loss, argnums=(0, 1))(W, x)
        np.testing.assert_allclose(gw[..., k], wk, rtol=1e-12)
        np.testing.assert_allclose(gx[:, k], xk, rtol=1e-12)


def test_vmap_of_grad_refuses_a_function_that_is_not_scalar_per_example():
    with pytest.raises(GradError, match="single element per example, got shape \\(4,\\)"):
        S.vmap(S.grad(lambda w, x: S.tanh(w @ x)), in_axes=(None, 0))(W, X)


def test_vmap_of_grad_inside_grad_is_refused_with_the_reason():
    """A batch of tensors with history (grad around vmap(grad)) is not a batch of numbers."""
    def outer(w):
        return S.sum(S.vmap(S.grad(loss, argnums=1), in_axes=(None, 0))(w, X))

    with pytest.raises(GradError, match="takes batches of numbers: argument 0"):
        S.grad(outer)(W)


def test_jacfwd_and_jacobian_inside_vmap_are_each_examples_jacobian():
    f = lambda x: S.tanh(W @ x) * x[1]
    for jac in (S.jacfwd(f), S.jacobian(f)):
        got = S.vmap(jac)(X)
        assert got.shape == (5, 4, 3)
        for k, x in enumerate(X):
            np.testing.assert_allclose(got[k], S.jacobian(f, mode="reverse")(x), rtol=1e-10)
            plain = lambda v: np.tanh(W @ v) * v[1]
            fd = np.stack([(plain(x + 1e-6 * e) - plain(x - 1e-6 * e)) / 2e-6 for e in np.eye(3)], axis=-1)
            np.testing.assert_allclose(got[k], fd, rtol=1e-6, atol=1e-9)


def test_reverse_jacobian_inside_vmap_is_refused_with_the_reason():
    with pytest.raises(GradError, match="inside a vmap it is built in forward mode"):
        S.vmap(S.jacobian(lambda x: S.tanh(x), mode="reverse"))(X)
