"""symnum.vmap against per-example Python loops, and the batched Jacobian (one sweep, forward or
reverse by shape) against central differences and forward mode."""

from __future__ import annotations

import numpy as np
import pytest
from opcases import CASES

import symnum as S
from benchmarks.finite import central_differences
from common.errors import GradError, ShapeError, TwogradError
from symnum import functional

DIFF = [c for c in CASES if c.wrt]


def _one_input(case, seed=1, batch=3):
    """``f(x)`` of the case's first differentiated input, and a batch of such inputs stacked on axis 0."""
    rng = np.random.default_rng(seed)
    draws = [case.inputs(rng) for _ in range(batch)]
    k = case.wrt[0]
    base = list(draws[0])

    def f(x):
        args = list(base)
        args[k] = x
        return case.fn(S.tape, *args)

    return f, np.stack([np.asarray(d[k]) for d in draws])


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_vmap_of_every_op_case_matches_a_loop(case):
    f, xs = _one_input(case)
    got = S.vmap(f)(xs)
    expect = np.stack([np.asarray(f(x)) for x in xs])
    assert isinstance(got, np.ndarray) and got.shape == expect.shape
    np.testing.assert_allclose(got, expect, rtol=1e-12, atol=1e-14)


def test_in_axes_per_argument_and_out_axes():
    rng = np.random.default_rng(2)
    xs, ms, w = rng.standard_normal((5, 4)), rng.standard_normal((5, 3, 4)), rng.standard_normal(4)

    def f(x, m, v):
        return m @ S.tanh(x * v) + S.sum(x)

    got = S.vmap(f, in_axes=(1, -1, None), out_axes=1)(xs.T, np.moveaxis(ms, 0, -1), w)
    loop = np.stack([ms[i] @ np.tanh(xs[i] * w) + xs[i].sum() for i in range(5)], axis=1)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, loop, rtol=1e-12)


def test_out_axes_moves_the_batch_axis():
    x = np.arange(24.0).reshape(4, 2, 3)
    got = S.vmap(lambda v: S.exp(v * 0.1), out_axes=2)(x)
    expect = np.moveaxis(np.stack([np.exp(v * 0.1) for v in x]), 0, 2)
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_unmapped_result_is_repeated_and_tuples_are_mapped_each():
    x = np.ones((3, 2))
    out, const = S.vmap(lambda v: (S.sin(v), S.zeros_like(v) + 2.0))(x)
    np.testing.assert_allclose(out, np.sin(x))
    np.testing.assert_allclose(const, np.full((3, 2), 2.0))


def test_nested_vmap_matches_a_double_loop():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((3, 4))

    def f(x, y):
        return S.sum(S.tanh(x) * y) * x[0]

    inner = S.vmap(f, in_axes=(0, 0))
    got = S.vmap(inner, in_axes=(0, None))(a, b)
    expect = np.array([[np.sum(np.tanh(a[i, j]) * b[j]) * a[i, j, 0] for j in range(3)] for i in range(2)])
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    # the inner map over the outer batch's other axis
    got = S.vmap(S.vmap(lambda x: S.sum(S.exp(x)), in_axes=1), in_axes=0)(a)
    np.testing.assert_allclose(got, np.exp(a).sum(axis=1), rtol=1e-12)


def test_per_example_gradients_through_the_tape():
    rng = np.random.default_rng(4)
    xs, w = rng.standard_normal((6, 3)), rng.standard_normal(3)

    def loss(x):
        return S.tanh(x @ w) ** 2 + S.sum(S.sin(x))

    per_example = S.grad(lambda b: S.sum(S.vmap(loss)(b)))(xs)
    loop = np.stack([S.grad(loss)(x) for x in xs])
    np.testing.assert_allclose(per_example, loop, rtol=1e-12)
    fd = np.stack([central_differences(loss, x) for x in xs])
    np.testing.assert_allclose(per_example, fd, rtol=1e-6, atol=1e-8)


def test_vmap_errors_are_twograd_errors():
    x = np.ones((3, 2))
    with pytest.raises(ShapeError, match="4 examples"):
        S.vmap(lambda a, b: a + b)(x, np.ones((4, 2)))
    with pytest.raises(GradError, match="in_axes has 1 entries"):
        S.vmap(lambda a, b: a + b, in_axes=(0,))(x, x)
    with pytest.raises(GradError, match="all None"):
        S.vmap(lambda a: a, in_axes=None)(x)
    with pytest.raises(ShapeError, match="out of range"):
        S.vmap(lambda a: a, in_axes=2)(x)
    with pytest.raises(GradError, match="single element per example"):
        S.vmap(S.grad(lambda a: a * 2.0))(x)
    with pytest.raises(TwogradError):
        S.vmap(lambda a: a, out_axes="x")


# --- the Jacobian as one batched sweep ----------------------------------------------------

@pytest.mark.parametrize("case", DIFF[::3], ids=[c.id for c in DIFF[::3]])
@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_batched_jacobian_against_central_differences(case, mode):
    f, xs = _one_input(case, seed=5, batch=1)
    x = xs[0]
    got = S.jacobian(f, mode=mode)(x)
    out = np.asarray(f(x))
    fd = central_differences(f, x).reshape(out.shape + x.shape)
    np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-7)


def _wide(x):
    return S.tanh(x[:, None] * np.linspace(0.5, 2.0, 40)).reshape(-1)


def _tall(x):
    return S.sum(S.tanh(x.reshape(8, 5) @ np.linspace(-1.0, 1.0, 5)))


@pytest.mark.parametrize("f, n, mode", [(_wide, 3, "forward"), (_tall, 40, "reverse")])
def test_auto_mode_picks_the_smaller_batch_and_says_so(f, n, mode):
    x = np.linspace(-0.5, 0.5, n)
    jac = S.jacobian(f)
    first = jac(x)
    assert jac.mode == mode
    second = jac(x)  # the choice is remembered for these shapes
    assert jac.mode == mode
    np.testing.assert_allclose(first, second, rtol=1e-12)
    out = np.asarray(f(x))
    np.testing.assert_allclose(first, central_differences(f, x).reshape(out.shape + x.shape), rtol=1e-6, atol=1e-8)


def test_jacobian_in_blocks_of_rows_equals_forward_mode(monkeypatch):
    x = np.random.default_rng(6).uniform(-1, 1, 7)

    def f(x):
        return S.concatenate([S.sin(x) * x[0], S.tanh(x[1:] * x[:-1]), S.exp(x[::2])])

    monkeypatch.setattr(functional, "WINDOW_ROWS", 3)
    rev = S.jacrev(f)(x)
    np.testing.assert_allclose(rev, S.jacfwd(f)(x), rtol=1e-12, atol=1e-14)
    assert rev.shape == (7 + 6 + 4, 7)


def test_jacobian_of_two_arguments_and_disconnected_ones():
    x, y = np.array([0.3, -0.2]), np.array([1.5, 0.5, -1.0])
    jx, jy = S.jacobian(lambda x, y: S.sin(x)[:, None] * y, argnums=(0, 1))(x, y)
    # y has 6 elements, x 2 and y 3: auto mode is forward itself, so reverse mode is the reference
    fx, fy = S.jacrev(lambda x, y: S.sin(x)[:, None] * y, argnums=(0, 1))(x, y)
    np.testing.assert_allclose(jx, fx, rtol=1e-12)
    np.testing.assert_allclose(jy, fy, rtol=1e-12)
    np.testing.assert_array_equal(S.jacrev(lambda x, y: S.sin(x), argnums=1)(x, y), np.zeros((2, 3)))
    with pytest.raises(GradError, match="disconnected"):
        S.jacrev(lambda x, y: S.sin(x), argnums=1, disconnected="raise")(x, y)
    with pytest.raises(GradError, match="mode"):
        S.jacobian(S.sin, mode="sideways")
