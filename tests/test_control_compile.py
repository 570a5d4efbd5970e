"""symsym.function on scan, while_loop and cond: a real Python loop (or ``if``) over generated body code.

Every compiled value is checked against the reference interpreter (``common.evaluate``) and against
the same computation written out without loop ops (the unrolled graph, or plain numpy), to 1e-12
relative; gradients against central finite differences in float64.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import common
from common import api as T
from symsym import function, grad

H, X = 4, 3  # hidden and input sizes of the small recurrent body


def _rnn_inputs(steps: int):
    w = T.var("w", (H, H))
    u = T.var("u", (H, X))
    h0 = T.var("h0", (H,))
    xs = T.var("xs", (steps, X))
    return w, u, h0, xs


def _rnn_values(rng, steps: int):
    return [0.5 * rng.standard_normal((H, H)), rng.standard_normal((H, X)), rng.standard_normal(H),
            rng.standard_normal((steps, X))]


def _rnn_scan(steps: int, reverse: bool = False):
    """h_t = tanh(W h + U x_t), with the per-step outputs sum(h_t)**2 stacked."""
    w, u, h0, xs = _rnn_inputs(steps)

    def step(h, x):
        h = T.tanh(w @ h + u @ x)
        return h, T.sum(h) ** 2

    h, ys = T.scan(step, h0, xs, reverse=reverse)
    return [w, u, h0, xs], h, ys


def _rnn_unrolled(steps: int, reverse: bool = False):
    """The same recurrence as one straight-line graph: a Python loop over builder calls."""
    w, u, h0, xs = _rnn_inputs(steps)
    h, ys = h0, [None] * steps
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h = T.tanh(w @ h + u @ xs[t])
        ys[t] = T.sum(h) ** 2
    return [w, u, h0, xs], h, T.stack(ys, axis=0)


def _close(a, b, rtol=1e-12, atol=1e-14):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_equals_evaluate_and_the_unrolled_graph(rng, reverse):
    values = _rnn_values(rng, 7)
    inputs, h, ys = _rnn_scan(7, reverse)
    expected = common.evaluate([h, ys], dict(zip(inputs, values)))
    uin, uh, uys = _rnn_unrolled(7, reverse)
    unrolled = function(uin, [uh, uys])(*values)
    for opt in (True, False):
        got = function(inputs, [h, ys], optimize=opt)(*values)
        for a, b, c in zip(got, expected, unrolled):
            assert isinstance(a, np.ndarray) and a.shape == b.shape
            _close(a, b)
            _close(a, c)


def test_scan_source_is_a_loop_whose_size_does_not_grow_with_the_length():
    sources = []
    for steps in (10, 1000):
        inputs, h, ys = _rnn_scan(steps)
        f = function(inputs, [h, ys])
        assert "for " in f.source
        assert "np_tanh" in f.source  # the body is generated code, not a call into the interpreter
        sources.append(f.source)
    assert len(sources[0].splitlines()) == len(sources[1].splitlines())
    assert abs(len(sources[0]) - len(sources[1])) <= 8  # only the length's digits differ


def test_scan_with_tuple_carries_several_outputs_and_no_sequence(rng):
    a = T.var("a", ())
    v = T.var("v", (3,))

    def step(carry, _):
        s, p = carry
        p = p * a
        return (s + p, p), (T.sum(p), p + 1.0)

    (s, p), (totals, shifted) = T.scan(step, (v, v), None, length=5)
    av, vv = 0.9, rng.standard_normal(3)
    got = function([a, v], [s, p, totals, shifted])(np.asarray(av), vv)
    powers = [vv * av ** k for k in range(1, 6)]
    _close(got[0], vv + sum(powers))
    _close(got[1], powers[-1])
    _close(got[2], [q.sum() for q in powers])
    _close(got[3], np.stack(powers) + 1.0)


def test_while_loop_runs_a_data_dependent_number_of_steps(rng):
    """Newton's method for sqrt(c): the trip count depends on c; compared with the same loop in numpy."""
    c = T.var("c", ())

    def more(state):
        x, k = state
        return T.abs(x * x - c) > 1e-12

    def newton(state):
        x, k = state
        return 0.5 * (x + c / x), k + 1

    x, k = T.while_loop(more, newton, (c, T.const(np.asarray(0, np.int64))))
    f = function([c], [x, k])
    assert "while " in f.source
    for cv in (2.0, 150.0, 1e-3):
        ref, steps = cv, 0
        while abs(ref * ref - cv) > 1e-12:
            ref, steps = 0.5 * (ref + cv / ref), steps + 1
        got = f(np.asarray(cv))
        _close(got[0], ref)
        assert int(got[1]) == steps
        _close(got[0], common.evaluate(x, {c: np.asarray(cv)}))


def test_cond_runs_only_the_taken_branch():
    x = T.var("x", ())
    y = T.cond(x > 0, T.sqrt, T.square, x)
    f = function([x], y)
    assert "if " in f.source
    with np.errstate(invalid="raise"):  # sqrt(-1) would raise here if the branch not taken ran
        _close(f(np.asarray(-1.5)), 2.25)
        _close(f(np.asarray(4.0)), 2.0)
    _close(f(np.asarray(-1.5)), common.evaluate(y, {x: np.asarray(-1.5)}))


def _fd_grad(fn, values, k, eps=1e-6):
    """Central finite differences of the scalar ``fn(*values)`` in input ``k``."""
    x = np.array(values[k], dtype=np.float64)
    out = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        for sign in (1, -1):
            xs = list(values)
            xp = x.copy()
            xp[idx] += sign * eps
            xs[k] = xp
            out[idx] += sign * float(fn(*xs))
    return out / (2 * eps)


def _rnn_cost(steps: int):
    inputs, h, ys = _rnn_scan(steps)
    return inputs, T.sum(h * h) + T.sum(ys)


def test_grad_of_scan_matches_finite_differences(rng):
    inputs, cost = _rnn_cost(6)
    values = _rnn_values(rng, 6)
    f = function(inputs, cost)
    g = function(inputs, grad(cost, inputs))(*values)
    for k in range(len(inputs)):
        _close(g[k], _fd_grad(f, values, k), rtol=1e-6, atol=1e-8)


def test_second_order_grad_of_scan_matches_finite_differences(rng):
    inputs, cost = _rnn_cost(4)
    values = _rnn_values(rng, 4)
    h0 = inputs[2]
    gh = grad(cost, h0)
    v = rng.standard_normal(H)
    directional = T.sum(gh * T.const(v))
    hv = function(inputs, grad(directional, h0))(*values)
    gfun = function(inputs, directional)
    _close(hv, _fd_grad(gfun, values, 2), rtol=1e-6, atol=1e-8)


def test_grad_of_while_loop_matches_finite_differences():
    """x_{k+1} = x_k - 0.5 * sin(x_k) * a until |sin x| is small: the gradient in a (fixed trip count
    near the point) against finite differences."""
    a = T.var("a", ())
    x0 = T.var("x0", ())

    def more(x):
        return T.abs(T.sin(x)) > 1e-3

    def step(x):
        return x - 0.5 * a * T.sin(x)

    x = T.while_loop(more, step, x0)
    cost = x * x + a * x
    f = function([a, x0], cost)
    values = [np.asarray(0.8), np.asarray(2.0)]
    g = function([a, x0], grad(cost, [a, x0]))(*values)
    for k in range(2):
        _close(g[k], _fd_grad(f, values, k, eps=1e-7), rtol=1e-5, atol=1e-8)


def test_second_order_grad_of_while_loop_matches_finite_differences():
    """d2/da2 of a damped fixed-point iteration: the compiled second derivative against central
    differences of the compiled first derivative."""
    a = T.var("a", ())
    x0 = T.var("x0", ())
    x = T.while_loop(lambda x: T.abs(T.sin(x)) > 1e-3, lambda x: x - 0.5 * a * T.sin(x), x0)
    cost = x * x * a
    values = [np.asarray(0.8), np.asarray(2.0)]
    d1 = function([a, x0], grad(cost, a))
    d2 = function([a, x0], grad(grad(cost, a), a))(*values)
    _close(d2, _fd_grad(d1, values, 0, eps=1e-6), rtol=1e-5, atol=1e-8)


def test_grad_of_cond_takes_the_branch_gradient_not_nan():
    x = T.var("x", ())
    y = T.cond(x > 0, T.sqrt, T.square, x)
    g = function([x], grad(y, x))
    _close(g(np.asarray(-1.0)), -2.0)
    _close(g(np.asarray(4.0)), 0.25)
    gg = function([x], grad(grad(y, x), x))
    _close(gg(np.asarray(-1.0)), 2.0)
    _close(gg(np.asarray(4.0)), -0.25 * 4.0 ** -1.5)


def test_generated_code_raises_no_warnings_for_a_clean_loop(rng):
    inputs, h, ys = _rnn_scan(5)
    f = function(inputs, [h, ys])
    values = _rnn_values(rng, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = f(*values)
    w, u, hv, xs = values  # the same recurrence in numpy
    expected = []
    for x in xs:
        hv = np.tanh(w @ hv + u @ x)
        expected.append(np.sum(hv) ** 2)
    _close(got[0], hv)
    _close(got[1], expected)


@pytest.mark.parametrize("first, second", [(3, 5), (5, 3)])
def test_sequences_of_different_run_time_lengths_raise_naming_the_scan_and_line(first, second):
    """Unknown leading dims are checked against the trip count: neither read in part nor past the end."""
    a, b = T.var("a", (None,)), T.var("b", (None,))
    line = _line() + 1
    c, _ = T.scan(lambda c, xs: (c + xs[0] * xs[1], c), T.const(0.0), (a, b))
    f = function([a, b], [c])
    with pytest.raises(common.ShapeError, match=rf"scan: .*disagree: \[3, 5\].*{__file__}:{line}"):
        f(np.ones(first), np.ones(second))
    np.testing.assert_allclose(f(np.arange(4.0), np.full(4, 2.0))[0], 2.0 * np.arange(4.0).sum())


def _line() -> int:
    import sys
    return sys._getframe(1).f_lineno
