"""Function transforms (grad, value_and_grad, vjp, jvp, jacobian, hessian, hvp),
higher-order derivatives against closed forms, and gradcheck's own failure report."""

from math import factorial

import numpy as np
import pytest

import symnum as S
from common.errors import GradError

# --- closed forms for z = f(f(f(w))) -----------------------------------------------


def _sin_derivs(x):
    return [np.sin(x + k * np.pi / 2) for k in range(5)]  # sin^(k)(x) = sin(x + k pi/2)


def _tanh_derivs(x):
    t = np.tanh(x)
    s = 1 - t * t
    return [t, s, -2 * t * s, s * (6 * t * t - 2), 8 * t * s * (2 - 3 * t * t)]


def _compose(derivs, jet):
    """Taylor coefficients of f(x(t)) from those of x(t): sum_k f^(k)(x0)/k! (x - x0)^k."""
    n = len(jet)
    d = derivs(jet[0])
    delta = np.array(jet, dtype=float)
    delta[0] = 0.0
    out = np.zeros(n)
    power = np.zeros(n)
    power[0] = 1.0
    for k in range(n):
        out += d[k] / factorial(k) * power
        power = np.convolve(power, delta)[:n]
    return out


def _closed_form(derivs, w, order):
    jet = np.zeros(order + 1)
    jet[0], jet[1] = w, 1.0
    for _ in range(3):
        jet = _compose(derivs, jet)
    return jet[order] * factorial(order)


def test_jet_oracle_matches_a_hand_derivative():
    # d/dw sin(sin(sin w)) = cos(sin(sin w)) cos(sin w) cos w
    w = 0.4
    assert np.isclose(_closed_form(_sin_derivs, w, 1), np.cos(np.sin(np.sin(w))) * np.cos(np.sin(w)) * np.cos(w))


@pytest.mark.parametrize("name, derivs", [("sin", _sin_derivs), ("tanh", _tanh_derivs)])
def test_third_and_fourth_derivatives_of_a_composition(name, derivs):
    f = getattr(S, name)
    z = lambda w: f(f(f(w)))
    d = z
    got = {}
    for order in range(1, 5):
        d = S.grad(d)
        got[order] = d(0.6)
    for order in (1, 2, 3, 4):
        np.testing.assert_allclose(got[order], _closed_form(derivs, 0.6, order), rtol=1e-10, atol=1e-12)


def test_fourth_derivative_through_the_tape_api():
    w = S.tensor(0.6, requires_grad=True)
    g = S.tanh(S.tanh(S.tanh(w)))
    for _ in range(4):
        (g,) = S.grad(g, w, create_graph=True)
    np.testing.assert_allclose(g.data, _closed_form(_tanh_derivs, 0.6, 4), rtol=1e-10)


# --- transforms ------------------------------------------------------------------------

def rosenbrock(x):
    return S.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def rosenbrock_hessian(x):
    n = x.size
    h = np.zeros((n, n))
    for i in range(n - 1):
        h[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        h[i + 1, i + 1] += 200
        h[i, i + 1] += -400 * x[i]
        h[i + 1, i] += -400 * x[i]
    return h


def rosenbrock_grad(x):
    g = np.zeros_like(x)
    g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
    g[1:] += 200 * (x[1:] - x[:-1] ** 2)
    return g


def test_grad_and_value_and_grad_with_argnums():
    f = lambda x, y: S.sum(S.sin(x) * y)
    x, y = np.array([0.1, 0.2]), np.array([3.0, 4.0])
    gx = S.grad(f)(x, y)
    assert isinstance(gx, np.ndarray)
    np.testing.assert_allclose(gx, np.cos(x) * y)
    v, (gx, gy) = S.value_and_grad(f, (0, 1))(x, y)
    np.testing.assert_allclose(v, np.sum(np.sin(x) * y))
    np.testing.assert_allclose(gy, np.sin(x))
    with pytest.raises(GradError, match="single element"):
        S.grad(lambda x: S.sin(x))(x)


def test_grad_has_two_forms_told_apart_by_the_first_argument():
    """grad(f, argnums) returns a function (HIPS autograd, JAX); grad(outputs, inputs) returns the
    gradients now (torch.autograd.grad); either may be called by keyword."""
    xv = np.array([0.3, -1.2])
    f = lambda v: S.sum(S.sin(v))
    for grad_f in (S.grad(f), S.grad(f, 0), S.grad(f=f, argnums=0)):
        assert callable(grad_f)
        np.testing.assert_allclose(grad_f(xv), np.cos(xv))
    x = S.tensor(xv, requires_grad=True)
    y = f(x)
    for now in (S.grad(y, x, retain_graph=True), S.grad([y], [x], retain_graph=True),
                S.grad(outputs=y, inputs=[x], retain_graph=True)):
        assert isinstance(now, tuple) and len(now) == 1 and isinstance(now[0], S.Tensor)
        np.testing.assert_allclose(now[0].numpy(), np.cos(xv))
    assert x.grad is None  # the tensor form accumulates nothing


@pytest.mark.parametrize("call, why", [
    (lambda y, x: S.grad(y), "needs the inputs"),
    (lambda y, x: S.grad(lambda v: S.sum(v), x), "argument positions"),
    (lambda y, x: S.grad(lambda v: S.sum(v), [x]), "argument positions"),
    (lambda y, x: S.grad(), "no function and no outputs"),
    (lambda y, x: S.grad(argnums=0), "no function and no outputs"),
])
def test_a_grad_call_that_fits_neither_form_names_both_and_the_line(call, why):
    x = S.tensor(np.ones(2), requires_grad=True)
    y = S.sum(x * x)
    with pytest.raises(GradError, match=why) as e:
        call(y, x)
    message = str(e.value)
    assert "grad(f, argnums=0)" in message and "grad(outputs, inputs)" in message
    assert f"{__file__}:{call.__code__.co_firstlineno}" in message


def test_grad_with_respect_to_an_unused_argument_is_zero():
    with pytest.raises(GradError, match="disconnected"):  # as symsym.grad: raise by default
        S.grad(lambda x, y: S.sum(x), 1)(np.ones(2), np.ones(3))
    np.testing.assert_array_equal(S.grad(lambda x, y: S.sum(x), 1, disconnected="zero")(np.ones(2), np.ones(3)),
                                  np.zeros(3))


def test_no_perturbation_confusion():
    # d/dx [x * d/dy (x * y)] = d/dx [x * x] = 2x (a confused nesting would give 3x or x)
    f = lambda x: x * S.grad(lambda y: x * y)(S.tensor(1.5))
    np.testing.assert_allclose(S.grad(f)(2.0), 4.0)


def test_vjp_and_jvp_against_the_jacobian():
    f = lambda x: S.tanh(x[None, :] * np.arange(1.0, 4.0)[:, None]).sum(axis=1)
    x = np.array([0.3, -0.2, 0.5, 0.1])
    J = S.jacobian(f)(x)
    expected = (1 - np.tanh(np.outer(np.arange(1.0, 4.0), x)) ** 2) * np.arange(1.0, 4.0)[:, None]
    np.testing.assert_allclose(J, expected)
    out, vjp_fn = S.vjp(f, x)
    u = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(vjp_fn(u)[0], u @ expected)
    np.testing.assert_allclose(vjp_fn(2 * u)[0], 2 * u @ expected)  # the tape is kept
    v = np.array([0.5, 1.0, -1.0, 2.0])
    out2, jv = S.jvp(f, [x], [v])
    np.testing.assert_allclose(out2, out)
    np.testing.assert_allclose(jv, expected @ v)


def test_hessian_and_hvp_of_rosenbrock():
    x = np.random.default_rng(3).uniform(-1, 1, 30)
    H = S.hessian(rosenbrock)(x)
    np.testing.assert_allclose(H, rosenbrock_hessian(x), rtol=1e-10, atol=1e-9)
    v = np.random.default_rng(4).standard_normal(30)
    np.testing.assert_allclose(S.hvp(rosenbrock, x, v), rosenbrock_hessian(x) @ v, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(S.grad(rosenbrock)(x), rosenbrock_grad(x), rtol=1e-12)


def test_hessian_of_rosenbrock_at_n_1000_is_feasible():
    x = np.random.default_rng(5).uniform(-1, 1, 1000)
    H = S.hessian(rosenbrock)(x)
    assert H.shape == (1000, 1000)
    idx = np.arange(999)
    np.testing.assert_allclose(np.diag(H, 1), -400 * x[idx])
    np.testing.assert_allclose(np.diag(H)[:-1], 1200 * x[:-1] ** 2 - 400 * x[1:] + 2 + np.r_[0, [200] * 998])


# --- gradcheck itself --------------------------------------------------------------------

def test_gradcheck_reports_a_wrong_gradient():
    x = S.tensor([0.5, 1.0, 2.0], requires_grad=True)

    def wrong(x):  # a hook corrupts one element of the gradient
        y = S.sin(x)
        if y.requires_grad:  # not during the finite differences, which run under no_grad
            y.register_hook(lambda g: g * np.array([1.0, 1.3, 1.0]))
        return y

    with pytest.raises(GradError) as e:
        S.gradcheck(wrong, [x])
    text = str(e.value)
    assert "input 0" in text and "(1,)" in text and "analytic" in text and "numeric" in text
    assert not S.gradcheck(wrong, [x], raise_exception=False)
    assert S.gradcheck(lambda x: S.sin(x), [x])


def test_gradgradcheck_checks_second_order():
    assert S.gradgradcheck(lambda x, y: S.sum(S.exp(x) * y, axis=0), [np.ones((2, 3)) * 0.3, np.ones(3)])


def test_gradcheck_catches_a_relative_error_of_one_in_ten_thousand():
    """Central differences in float64 are good to about 1e-9 here, so a gradient 1e-4 off is wrong."""
    x = S.tensor([0.5, 1.0, 2.0], requires_grad=True)

    def slightly_off(x):
        y = S.exp(x)
        if y.requires_grad:
            y.register_hook(lambda g: g * (1 + 1e-4))
        return y

    assert not S.gradcheck(slightly_off, [x], raise_exception=False)
    assert S.gradcheck(lambda x: S.exp(x), [x])


def test_gradgradcheck_against_a_reference_catches_a_rule_right_only_at_the_point():
    """A dL/dz of softmax cross-entropy without its sum(t) factor is right wherever the targets sum to 1,
    so gradcheck passes there, and so does gradgradcheck when it differences the first derivative
    (the wrong d/dt of dL/dz is what the first derivative's own differences give); second
    differences of the numpy reference show the mixed second derivative wrong."""
    from mutation import replaced_vjp, xent_dz_without_the_target_sum

    from common import OPS

    rng = np.random.default_rng(2)
    t = rng.uniform(0.1, 1, (2, 3))
    inputs = [rng.standard_normal((2, 3)), t / t.sum(-1, keepdims=True)]

    def xent(z, t):
        return S.softmax_cross_entropy(z, t)

    def reference(z, t):
        return -np.sum(t * (z - np.log(np.exp(z).sum(-1, keepdims=True))), axis=-1)

    assert S.gradgradcheck(xent, inputs, reference=reference)
    with replaced_vjp(OPS["softmax_cross_entropy"], 0, xent_dz_without_the_target_sum):
        assert S.gradcheck(xent, inputs, reference=reference)
        assert S.gradgradcheck(xent, inputs)
        with pytest.raises(GradError, match="input 1"):
            S.gradgradcheck(xent, inputs, reference=reference)
