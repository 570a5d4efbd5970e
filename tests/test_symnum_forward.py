"""symnum's forward mode (``jvp`` on dual numbers, ``jacfwd``) against reverse mode and finite differences.

Every op case of ``tests/opcases.py`` is run through ``symnum.jvp`` with the
case written against ``symnum.tape`` (as user code is: the tape namespace
hands duals to forward mode), then checked against central differences in float64 (the independent
reference) and against the reverse-mode Jacobian (``symnum.jacrev``, a sweep of
the VJP rules of the same op table: an engine check) to 1e-10. The same on workloads, for nesting
(jvp of jvp, grad of jvp, jvp of grad) and for dtypes.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcases import CASES

import symnum as S
from benchmarks.finite import central_differences
from benchmarks.workloads import get
from common.errors import DTypeError, ShapeError, TwogradError

DIFF = [c for c in CASES if c.wrt]


def _setup(case, seed=3):
    rng = np.random.default_rng(seed)
    arrays = case.inputs(rng)
    tangents = [rng.standard_normal(np.shape(arrays[i])) for i in case.wrt]

    def f(*xs):
        args = list(arrays)
        for i, x in zip(case.wrt, xs):
            args[i] = x
        return case.fn(S.tape, *args)

    return f, [arrays[i] for i in case.wrt], tangents


def _reverse_jv(f, xs, us):
    """J u from the reverse-mode Jacobian, contracted with u over each input's axes."""
    jacs = S.jacrev(f, argnums=tuple(range(len(xs))))(*xs)
    return sum(np.tensordot(j, u, axes=u.ndim) for j, u in zip(jacs, us))


def _fd(f, xs, us, h=1e-6):
    plus = np.asarray(f(*[x + h * u for x, u in zip(xs, us)]))
    minus = np.asarray(f(*[x - h * u for x, u in zip(xs, us)]))
    return (plus - minus) / (2 * h)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_jvp_matches_reverse_and_finite_differences(case):
    f, xs, us = _setup(case)
    out, jv = S.jvp(f, xs, us)
    np.testing.assert_allclose(out, np.asarray(f(*xs)), rtol=1e-12)
    assert isinstance(jv, np.ndarray) and jv.shape == np.shape(out)
    np.testing.assert_allclose(jv, _reverse_jv(f, xs, us), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(jv, _fd(f, xs, us), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_jacfwd_matches_jacrev(case):
    f, xs, _ = _setup(case)
    nums = tuple(range(len(xs)))
    fwd = S.jacfwd(f, argnums=nums)(*xs)
    rev = S.jacrev(f, argnums=nums)(*xs)
    for a, b in zip(fwd, rev):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def _workload(name, size):
    p = get(name).make(size)
    args = list(p.args.values())
    wrt = p.wrt_index

    def f(*xs):
        full = list(args)
        for i, x in zip(wrt, xs):
            full[i] = x
        return p.fn(S.tape, *full)

    return f, [args[i] for i in wrt]


WORKLOADS = [("mlp", "small"), ("rosenbrock", "n10"), ("chain", "sin-d10"), ("chain", "tanh-d100")]


@pytest.mark.parametrize("name, size", WORKLOADS, ids=[f"{n}-{s}" for n, s in WORKLOADS])
def test_workload_jvp_is_the_gradient_dotted_with_the_tangent(name, size):
    f, xs = _workload(name, size)
    rng = np.random.default_rng(5)
    us = [rng.standard_normal(x.shape) for x in xs]
    out, jv = S.jvp(f, xs, us)
    grads = S.grad(f, argnums=tuple(range(len(xs))))(*xs)
    expect = sum(float(np.sum(g * u)) for g, u in zip(grads, us))
    np.testing.assert_allclose(jv, expect, rtol=1e-10)
    np.testing.assert_allclose(jv, _fd(f, xs, us), rtol=1e-5)


def test_rosenbrock_forward_over_reverse_is_the_hessian_times_v():
    p = get("rosenbrock").make("n10")
    x = p.args["x"]
    v = np.random.default_rng(1).standard_normal(x.shape)

    def f(x):
        return p.fn(S.tape, x)

    g, hv = S.jvp(S.grad(f), [x], [v])
    np.testing.assert_allclose(g, S.grad(f)(x), rtol=1e-12)
    np.testing.assert_allclose(hv, p.hand_hessian(x)[0] @ v, rtol=1e-10)
    np.testing.assert_allclose(hv, S.hvp(f, x, v), rtol=1e-10)


def test_jvp_of_jvp_is_the_second_directional_derivative():
    def f(x):
        return S.sin(x) * x[0] + S.exp(x) * x[1]

    x = np.array([0.3, -0.7, 1.1])
    u = np.array([1.0, 0.5, -2.0])
    _, d2 = S.jvp(lambda y: S.jvp(f, [y], [u])[1], [x], [u])
    h = 1e-4
    fd2 = (np.asarray(f(x + h * u)) - 2 * np.asarray(f(x)) + np.asarray(f(x - h * u))) / h ** 2
    np.testing.assert_allclose(d2, fd2, rtol=1e-6)


def test_grad_of_jvp_is_reverse_over_forward():
    def f(x):
        return S.sum(S.tanh(x) ** 3)

    x = np.array([0.2, -0.4, 0.9])
    v = np.array([0.5, 1.0, -1.5])
    got = S.grad(lambda y: S.jvp(f, [y], [v])[1])(x)
    expect = S.hessian(f)(x) @ v
    np.testing.assert_allclose(got, expect, rtol=1e-10)


def test_float32_is_kept():
    x = np.linspace(0.1, 1.0, 4, dtype=np.float32)
    v = np.ones(4, np.float32)
    out, jv = S.jvp(lambda x: S.tanh(x) * 2.0 + x @ x, [x], [v])
    assert out.dtype == np.float32 and jv.dtype == np.float32
    jac = S.jacfwd(lambda x: S.exp(x) * 3.0)(x)
    assert jac.dtype == np.float32
    np.testing.assert_allclose(jac, np.diag(np.exp(x) * 3.0), rtol=1e-6)


def test_output_without_tangent_gets_zeros():
    x = np.array([1.0, 2.0])
    out, jv = S.jvp(lambda x: S.zeros_like(x) + 1.0, [x], [np.ones(2)])
    np.testing.assert_array_equal(jv, np.zeros(2))


def test_jacfwd_of_a_tall_map_and_a_matrix_input():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((7, 3))
    w = rng.standard_normal((3, 2))

    def f(w):
        return S.tanh(a @ w)

    np.testing.assert_allclose(S.jacfwd(f)(w), S.jacrev(f)(w), rtol=1e-10)


def test_bad_tangents_are_twograd_errors():
    x = np.ones(3)
    with pytest.raises(ShapeError, match="tangent 0 has shape"):
        S.jvp(S.sin, [x], [np.ones(4)])
    with pytest.raises(DTypeError):
        S.jvp(S.sin, [np.arange(3)], [np.ones(3)])
    with pytest.raises(TwogradError, match="2 primals but 1 tangents"):
        S.jvp(S.add, [x, x], [x])


def test_jvp_of_a_function_closing_over_a_tape_tensor_stays_on_the_tape():
    """grad over jvp where only the closure carries the outer derivative: d/dw sum(d/dx sin(x w) . 1)."""
    x0 = np.array([0.3, 0.5])

    def inner(w):
        tangent = S.jvp(lambda x: S.sum(S.sin(x * w)), (x0,), (np.ones(2),))[1]
        return S.sum(tangent)

    got = S.grad(inner)(np.array([0.7]))
    want = central_differences(lambda w: np.sum(w[0] * np.cos(x0 * w[0])), np.array([0.7]), 1e-6)
    assert np.allclose(got, want, rtol=1e-8)


def test_grad_of_a_function_closing_over_an_enclosing_jvps_dual():
    """jvp over grad where only the closure carries the tangent: d/dw sum(d/dx sin(x w))."""
    x0 = np.array([0.3, 0.5])

    def inner(w):
        return S.sum(S.grad(lambda x: S.sum(S.sin(x * w)))(x0))

    _, got = S.jvp(inner, (np.array([0.7]),), (np.ones(1),))
    want = central_differences(lambda w: np.sum(w[0] * np.cos(x0 * w[0])), np.array([0.7]), 1e-6)
    assert np.allclose(got, want, rtol=1e-8)
