"""Reverse mode through scan, while_loop and cond, in both backends, first and second order.

Every gradient is checked against central finite differences in float64 of
the reference interpreter (no backend's derivative code is involved), and
against the same computation unrolled into plain IR and differentiated there
(symsym.grad of the unrolled graph, and symnum.gradients of it).
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum
import symsym
from benchmarks.finite import central_differences, second_differences
from common import api as T
from common import count_nodes, evaluate

RTOL = 1e-6


def _row(x, t):
    return T.getitem(x, t)


def _rnn(length: int, unrolled: bool, reverse: bool = False):
    """A small recurrent cell over a sequence: h' = tanh(W h + x_t * u), y_t = sum(h' * v); cost = sum(y) + |h|^2.

    Returns (cost, [W, u, v, h0, xs]) built with scan or, ``unrolled``, with a Python loop.
    """
    W, u, v, h0 = T.var("W", (3, 3)), T.var("u", (3,)), T.var("v", (3,)), T.var("h0", (3,))
    xs = T.var("xs", (length,))

    def step(h, x):
        h2 = T.tanh(T.matmul(W, h) + x * u)
        return h2, T.sum(h2 * v)

    if unrolled:
        h, ys = h0, [None] * length
        for t in (range(length - 1, -1, -1) if reverse else range(length)):
            h, ys[t] = step(h, _row(xs, t))
        ys = T.stack(ys)
    else:
        h, ys = T.scan(step, h0, xs, reverse=reverse)
    cost = T.sum(ys * T.const(np.linspace(0.5, 1.5, length))) + T.sum(h * h)
    return cost, [W, u, v, h0, xs]


def _values(rng, length: int):
    return [rng.standard_normal((3, 3)) * 0.5, rng.standard_normal(3), rng.standard_normal(3),
            rng.standard_normal(3), rng.standard_normal(length)]


def _fd_grads(cost, wrt, values):
    """Central differences of the interpreted cost along every element of every input."""
    def at(k):
        return lambda a: evaluate(cost, {w: (a if j == k else v) for j, (w, v) in enumerate(zip(wrt, values))})
    return [central_differences(at(k), values[k]) for k in range(len(wrt))]


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradient_matches_finite_differences_and_the_unrolled_graph(rng, reverse):
    vals = _values(rng, 6)
    cost, wrt = _rnn(6, unrolled=False, reverse=reverse)
    feed = dict(zip(wrt, vals))
    sym = evaluate(symsym.grad(cost, wrt), feed)
    num = symnum.gradients(cost, wrt, feed)
    fd = _fd_grads(cost, wrt, vals)
    ucost, uwrt = _rnn(6, unrolled=True, reverse=reverse)
    ufeed = dict(zip(uwrt, vals))
    np.testing.assert_allclose(evaluate(cost, feed), evaluate(ucost, ufeed), rtol=1e-13)
    unrolled = evaluate(symsym.grad(ucost, uwrt), ufeed)
    unrolled_num = symnum.gradients(ucost, uwrt, ufeed)
    for k in range(len(wrt)):
        np.testing.assert_allclose(sym[k], fd[k], rtol=RTOL, atol=1e-8)
        np.testing.assert_allclose(sym[k], unrolled[k], rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(num[k], unrolled_num[k], rtol=1e-12, atol=1e-13)


def test_scan_second_order_matches_the_unrolled_hessian(rng):
    vals = _values(rng, 4)
    cost, wrt = _rnn(4, unrolled=False)
    ucost, uwrt = _rnn(4, unrolled=True)
    u = wrt[1]
    # grad of grad: the Hessian of the cost in u, row by row
    g = symsym.grad(cost, u)
    rows = [symsym.grad(T.getitem(g, k), u) for k in range(3)]
    ug = symsym.grad(ucost, uwrt[1])
    urows = [symsym.grad(T.getitem(ug, k), uwrt[1]) for k in range(3)]
    feed, ufeed = dict(zip(wrt, vals)), dict(zip(uwrt, vals))
    hess = np.stack(evaluate(rows, feed))
    np.testing.assert_allclose(hess, np.stack(evaluate(urows, ufeed)), rtol=1e-11, atol=1e-12)

    def f(a):
        return evaluate(cost, {**feed, u: a})
    np.testing.assert_allclose(hess, second_differences(f, vals[1]), rtol=1e-4, atol=1e-6)
    # the same second derivative by symnum on the graph symsym built (symnum differentiates the reverse scan)
    gnum = symnum.gradients(T.getitem(g, 0), u, feed)
    np.testing.assert_allclose(gnum, hess[0], rtol=1e-11, atol=1e-12)


def test_third_order_through_scan():
    """d^3/dw^3 of sum_t c_t with c' = c * w + 1: grad of grad of grad, against the closed form."""
    w = T.var("w", ())
    c, _ = T.scan(lambda c, _: (c * w + 1.0, None), 0.0, None, length=4)  # c4 = 1 + w + w^2 + w^3
    g3 = symsym.grad(symsym.grad(symsym.grad(c, w), w), w)
    assert evaluate(g3, {w: np.array(0.7)}) == pytest.approx(6.0, rel=1e-12)


def test_scan_gradient_with_an_integer_carry_and_nested_outputs(rng):
    x = T.var("x", (5, 2))

    def step(carry, xi):
        n, (s, p) = carry
        return (n + 1, (s + xi * T.cast(n, "float64"), p * T.sin(xi))), T.sum(s)

    (n, (s, p)), ys = T.scan(step, (T.const(np.int64(0)), (T.const(np.zeros(2)), T.const(np.ones(2)))), x)
    cost = T.sum(s * s) + T.sum(p) + T.sum(ys)
    xv = rng.standard_normal((5, 2))
    got = evaluate(symsym.grad(cost, x), {x: xv})
    fd = central_differences(lambda a: evaluate(cost, {x: a}), xv)
    np.testing.assert_allclose(got, fd, rtol=RTOL, atol=1e-8)
    np.testing.assert_allclose(symnum.gradients(cost, x, {x: xv}), got, rtol=1e-12)
    assert evaluate(n, {x: xv}) == 5


# ------------------------------------------------------------------ while_loop

def _newton_sqrt(a):
    return T.while_loop(lambda s: T.abs(s * s - a) > 1e-13 * a, lambda s: (s + a / s) * 0.5, a + 1.0)


@pytest.mark.parametrize("a", [0.3, 2.0, 50.0])
def test_while_newton_sqrt_gradient(a):
    """The trip count depends on a; the gradient through the iterations that ran is 1 / (2 sqrt a)."""
    av = T.var("a", ())
    r = _newton_sqrt(av)
    feed = {av: np.array(a)}
    np.testing.assert_allclose(evaluate(r, feed), np.sqrt(a), rtol=1e-13)
    want = 1 / (2 * np.sqrt(a))
    np.testing.assert_allclose(evaluate(symsym.grad(r, av), feed), want, rtol=1e-9)
    np.testing.assert_allclose(symnum.gradients(r, av, feed), want, rtol=1e-9)
    # second order: -1 / (4 a^1.5), by grad of grad through the reverse scan
    np.testing.assert_allclose(evaluate(symsym.grad(symsym.grad(r, av), av), feed), -0.25 * a ** -1.5, rtol=1e-7)


def test_while_gradient_matches_the_unrolled_loop(rng):
    """A fixed trip count known from the values: the unrolled graph must agree exactly."""
    x, w = T.var("x", (3,)), T.var("w", (3,))
    c, k = T.while_loop(lambda c: c[1] < 4, lambda c: (T.sin(c[0] * w) + x, c[1] + 1), (x, T.const(np.int64(0))))
    cost = T.sum(c * c)
    uc = x
    for _ in range(4):
        uc = T.sin(uc * w) + x
    ucost = T.sum(uc * uc)
    feed = {x: rng.standard_normal(3), w: rng.standard_normal(3)}
    assert evaluate(k, feed) == 4
    got = evaluate(symsym.grad(cost, [x, w]), feed)
    want = evaluate(symsym.grad(ucost, [x, w]), feed)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    for a, b in zip(symnum.gradients(cost, [x, w], feed), want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    fd = central_differences(lambda a: evaluate(cost, {**feed, w: a}), feed[w])
    np.testing.assert_allclose(got[1], fd, rtol=RTOL, atol=1e-8)


def test_while_that_never_runs_passes_the_cotangent_through():
    x = T.var("x", ())
    r = T.while_loop(lambda c: c > 10.0, lambda c: c * c, x)
    assert evaluate(symsym.grad(r, x), {x: np.array(3.0)}) == 1.0
    assert symnum.gradients(r, x, {x: np.array(3.0)}) == 1.0


# ------------------------------------------------------------------ cond

def test_cond_gradient_at_the_where_trap():
    x = T.var("x", ())
    y = T.cond(x > 0, T.sqrt, T.square, x)
    with np.errstate(all="raise"):
        assert evaluate(symsym.grad(y, x), {x: np.array(-1.0)}) == -2.0
        assert symnum.gradients(y, x, {x: np.array(-1.0)}) == -2.0
        np.testing.assert_allclose(evaluate(symsym.grad(y, x), {x: np.array(4.0)}), 0.25)
    # where() is the trap: the untaken branch's NaN leaks into the gradient
    with np.errstate(all="ignore"):
        assert np.isnan(evaluate(symsym.grad(T.where(x > 0, T.sqrt(x), T.square(x)), x), {x: np.array(-1.0)}))


def test_cond_with_closures_first_and_second_order(rng):
    x, z = T.var("x", (3,)), T.var("z", (3,))
    a, b = T.cond(T.sum(x) > 0, lambda u: (T.sin(u) * z, T.sum(u * u * u)), lambda u: (u * z * z, T.sum(u)), x)
    cost = T.sum(a) + b
    for sign in (1.0, -1.0):
        feed = {x: sign * np.abs(rng.standard_normal(3)), z: rng.standard_normal(3)}
        gx, gz = evaluate(symsym.grad(cost, [x, z]), feed)
        np.testing.assert_allclose(gx, central_differences(lambda v: evaluate(cost, {**feed, x: v}), feed[x]),
                                   rtol=RTOL, atol=1e-8)
        np.testing.assert_allclose(gz, central_differences(lambda v: evaluate(cost, {**feed, z: v}), feed[z]),
                                   rtol=RTOL, atol=1e-8)
        for got, want in zip(symnum.gradients(cost, [x, z], feed), (gx, gz)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
        hvp = symsym.hvp(cost, x, z)
        fd = central_differences(lambda v: evaluate(symsym.grad(cost, x), {**feed, x: v}), feed[x])
        np.testing.assert_allclose(evaluate(hvp, feed), fd @ feed[z], rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------ graph size

def test_grad_of_scan_does_not_grow_with_the_length():
    sizes = []
    for length in (10, 1000):
        cost, wrt = _rnn(length, unrolled=False)
        sizes.append(count_nodes(symsym.grad(cost, wrt)))
    assert sizes[0] == sizes[1]


def test_hessian_through_scan(rng):
    """symsym.hessian (a Jacobian of the gradient) through a scan, against second differences."""
    vals = _values(rng, 3)
    cost, wrt = _rnn(3, unrolled=False)
    feed = dict(zip(wrt, vals))
    h = evaluate(symsym.hessian(cost, wrt[1]), feed)
    np.testing.assert_allclose(h, second_differences(lambda a: evaluate(cost, {**feed, wrt[1]: a}), vals[1]),
                               rtol=1e-4, atol=1e-6)


def test_while_gradient_when_max_iter_stops_the_loop():
    """c' = c * w while c < 100, at most 3 times: from c0 = 2, w = 1.5 the bound stops it, so r = c0 w^3."""
    c0, w = T.var("c0", ()), T.var("w", ())
    r = T.while_loop(lambda c: c < 100.0, lambda c: c * w, c0, max_iter=3)
    feed = {c0: np.array(2.0), w: np.array(1.5)}
    assert evaluate(r, feed) == pytest.approx(2.0 * 1.5 ** 3, rel=1e-15)
    gc, gw = evaluate(symsym.grad(r, [c0, w]), feed)
    assert (gc, gw) == (pytest.approx(1.5 ** 3, rel=1e-14), pytest.approx(3 * 2.0 * 1.5 ** 2, rel=1e-14))
    assert symnum.gradients(r, w, feed) == pytest.approx(3 * 2.0 * 1.5 ** 2, rel=1e-14)


def test_python_scalars_in_a_carry_are_lifted_to_its_dtype():
    x = T.var("x", (3,), "float32")
    c, ys = T.scan(lambda c, xi: (0.5, c * xi), T.const(np.float32(1.0)), x)
    assert c.dtype == np.float32 and ys.dtype == np.float32
    np.testing.assert_allclose(evaluate(ys, {x: np.ones(3, np.float32)}), [1.0, 0.5, 0.5])


def test_gradient_through_a_body_uses_its_stable_forms():
    """log(softmax(1000 x)) inside a scan body: as written its derivative is inf * 0; symsym.grad rewrites
    the body to log_softmax first, as it does the graph around it."""
    x = T.var("x", (2, 4))
    c, _ = T.scan(lambda c, xi: (c + T.sum(T.log(T.softmax(xi * 1000.0))), None), 0.0, x)
    xv = np.array([[0.0, 0.1, 0.2, 0.3], [1.0, -1.0, 0.5, 0.0]])
    with np.errstate(all="ignore"):
        got = evaluate(symsym.grad(c, x), {x: xv})
        raw = evaluate(symsym.grad(c, x, stable=False), {x: xv})
    z = 1000.0 * xv
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(got, 1000.0 * (1 - 4 * p), rtol=1e-12, atol=1e-9)
    assert not np.all(np.isfinite(raw))


def test_symnum_gradients_runs_the_forward_loop_once(monkeypatch):
    from common.body import Body

    x = T.var("x", (6,))
    c, _ = T.scan(lambda c, xi: (T.sin(c) * xi, None), 0.5, x)
    body = c.inputs[0].params["body"]
    calls = {}
    run = Body.run

    def counted(self, args):
        calls[self.label] = calls.get(self.label, 0) + 1
        return run(self, args)

    monkeypatch.setattr(Body, "run", counted)
    symnum.gradients(c, x, {x: np.linspace(0.1, 0.6, 6)})
    # the forward body (run with its residuals as extra outputs) and the reverse body, once per step each
    assert sorted(calls.values()) == [6, 6] and body.label not in calls


def test_while_second_order_matches_the_unrolled_loop(rng):
    x, w = T.var("x", (3,)), T.var("w", (3,))
    c, _ = T.while_loop(lambda c: c[1] < 3, lambda c: (T.sin(c[0] * w) + x, c[1] + 1), (x, T.const(np.int64(0))))
    uc = x
    for _ in range(3):
        uc = T.sin(uc * w) + x
    feed = {x: rng.standard_normal(3), w: rng.standard_normal(3)}
    for cost, ucost in ((T.sum(c * c), T.sum(uc * uc)),):
        g, ug = symsym.grad(cost, w), symsym.grad(ucost, w)
        rows = [evaluate(symsym.grad(T.getitem(g, k), [x, w]), feed) for k in range(3)]
        urows = [evaluate(symsym.grad(T.getitem(ug, k), [x, w]), feed) for k in range(3)]
        for a, b in zip(rows, urows):
            for p, q in zip(a, b):
                np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-13)
        np.testing.assert_allclose(symnum.gradients(T.getitem(g, 1), x, feed), urows[1][0], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("xv", [0.7, -0.4])
def test_cond_first_and_second_order_match_the_taken_branch(xv):
    x = T.var("x", ())
    y = T.cond(x > 0, lambda u: T.sin(u) * u, lambda u: u * u * u, x)
    taken = T.sin(x) * x if xv > 0 else x * x * x
    feed = {x: np.array(xv)}
    g, tg = symsym.grad(y, x), symsym.grad(taken, x)
    np.testing.assert_allclose(evaluate(g, feed), evaluate(tg, feed), rtol=1e-14)
    np.testing.assert_allclose(symnum.gradients(y, x, feed), evaluate(tg, feed), rtol=1e-14)
    np.testing.assert_allclose(evaluate(symsym.grad(g, x), feed), evaluate(symsym.grad(tg, x), feed), rtol=1e-13)
    np.testing.assert_allclose(symnum.gradients(g, x, feed), evaluate(symsym.grad(tg, x), feed), rtol=1e-13)
    fd = central_differences(lambda a: evaluate(g, {x: a}), np.array(xv))
    np.testing.assert_allclose(evaluate(symsym.grad(g, x), feed), fd, rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_scan_over_a_sequence_of_unknown_length(n):
    x, w = T.var("x", (None, 2)), T.var("w", (2,))
    c, ys = T.scan(lambda c, xi: (c * w + xi, T.sum(c * c)), T.const(np.ones(2)), x)
    cost = T.sum(ys) + T.sum(c)
    feed = {x: np.arange(2.0 * n).reshape(n, 2) / 3, w: np.array([0.5, -0.3])}
    gx, gw = evaluate(symsym.grad(cost, [x, w]), feed)
    fdx = central_differences(lambda a: evaluate(cost, {**feed, x: a}), feed[x])
    fdw = central_differences(lambda a: evaluate(cost, {**feed, w: a}), feed[w])
    np.testing.assert_allclose(gx, fdx, rtol=RTOL, atol=1e-8)
    np.testing.assert_allclose(gw, fdw, rtol=RTOL, atol=1e-8)
    for got, want in zip(symnum.gradients(cost, [x, w], feed), (gx, gw)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
