"""symnum.jvp on plain numbers (its fast path: rules in the numeric namespace) against reverse mode and
central finite differences in float64; nesting, tapes and float32 still take the general path."""

import numpy as np
import pytest

import symnum


def _chain(x, c):
    for k in range(12):  # derivative of order one at each step: neither vanishes nor blows up
        x = symnum.sin(x) * c + 0.5 * symnum.tanh(x) + 0.3 * x if k % 2 else symnum.exp(-x * x) + x / 1.5
    return x


def _fd(f, x, t, h=1e-6):
    return (f(x + h * t) - f(x - h * t)) / (2 * h)


@pytest.mark.parametrize("x0", [np.array(0.4), np.array([0.1, -0.7, 1.3])])
def test_jvp_of_a_scalar_chain_of_unary_and_binary_ops_matches_reverse_mode_and_differences(x0):
    c = np.float64(0.9)
    t = np.full(x0.shape, 1.5)
    f = lambda x: _chain(x, c)
    out, tangent = symnum.jvp(f, [x0], [t])
    reverse = symnum.grad(lambda x: symnum.sum(f(x)))(x0) if x0.ndim else symnum.grad(f)(x0)
    np.testing.assert_allclose(out, f(x0).numpy() if hasattr(f(x0), "numpy") else f(x0), rtol=1e-14)
    np.testing.assert_allclose(tangent, np.asarray(reverse) * t, rtol=1e-10)
    plain = lambda x: np.asarray(f(x).numpy() if hasattr(f(x), "numpy") else f(x))
    np.testing.assert_allclose(tangent, _fd(plain, x0, t), rtol=1e-6, atol=1e-8)


def test_nested_jvp_gives_the_second_derivative():
    f = lambda x: symnum.sin(x) * symnum.exp(x)
    second = lambda x: symnum.jvp(lambda y: symnum.jvp(f, [y], [np.array(1.0)])[1], [x], [np.array(1.0)])[1]
    x = np.array(0.7)
    want = 2 * np.cos(0.7) * np.exp(0.7)  # (sin e^x)'' = 2 cos(x) e^x
    assert float(second(x)) == pytest.approx(want, rel=1e-12)


def test_float32_primals_keep_their_dtype_through_the_fast_path():
    x = np.array([0.5, 1.0], np.float32)
    out, tangent = symnum.jvp(lambda v: symnum.tanh(symnum.sin(v)) * 2.0, [x], [np.ones(2, np.float32)])
    assert out.dtype == tangent.dtype == np.float32
    want = 2.0 * (1 - np.tanh(np.sin(x.astype(np.float64))) ** 2) * np.cos(x.astype(np.float64))
    np.testing.assert_allclose(tangent, want, rtol=1e-6)


def test_grad_through_jvp_records_on_the_tape():
    """Primals that require grad leave the fast path: reverse over forward still works."""
    x = symnum.tensor(np.array(0.3), requires_grad=True)
    _, t = symnum.jvp(lambda v: symnum.sin(v) * v, [x], [np.array(1.0)])
    (g,) = symnum.grad(t, [x])
    # d/dx (cos x * x + sin x) = -sin x * x + 2 cos x
    assert float(g.numpy()) == pytest.approx(-np.sin(0.3) * 0.3 + 2 * np.cos(0.3), rel=1e-12)


def test_unary_ops_with_params_and_linear_rules_on_numbers_match_reverse_mode():
    """Ops with params (sum over an axis, reshape) and linear JVP rules, not only the diagonal ones."""
    f = lambda x: symnum.sum(symnum.tanh(symnum.reshape(symnum.sin(x), (2, 3))) ** 2, axis=0)
    x = np.linspace(-1.0, 1.0, 6)
    t = np.array([0.3, -1.0, 2.0, 0.5, 0.0, 1.0])
    _, tangent = symnum.jvp(f, [x], [t])
    jac = symnum.jacobian(f, mode="reverse")(x)
    np.testing.assert_allclose(tangent, jac @ t, rtol=1e-10)
    plain = lambda v: np.sum(np.tanh(np.sin(v).reshape(2, 3)) ** 2, axis=0)
    np.testing.assert_allclose(tangent, _fd(plain, x, t), rtol=1e-7)
