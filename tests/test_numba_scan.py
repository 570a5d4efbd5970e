"""The numba linker compiles a scan of scalars whole: one njit function with the loop inside.

Every value is checked three ways: against the numpy linker (the same graph,
a Python loop over a generated body) to 1e-12 relative, NaN and inf included;
against the same recurrence written in plain numpy; and, for gradients,
against central finite differences in float64. The kernels are compiled into
the session's tmp cache folder (conftest), shared by the tests.
"""

from __future__ import annotations

import numpy as np
import pytest
from derivchecks import central

from common import api as T
from common.errors import TwogradError
from symsym import function, grad

pytest.importorskip("numba")

from symsym.linkers.numba import diskcache

KERNEL = "# scan_kernel"


def both(inputs, outputs, arrays, rtol=1e-12):
    """Compile with both linkers, run, compare (shapes, dtypes, values); returns the numba function."""
    fast = function(inputs, outputs, linker="numba")
    ref = function(inputs, outputs)
    got, want = fast(*arrays), ref(*arrays)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0, equal_nan=True)
    return fast


def scan_kernels(f) -> int:
    return f.source.count(KERNEL)



# ---------------------------------------------------------------------------- a recurrence of several carries

def rnn(h0, w, b, xs, reverse=False):
    """Carries (h, acc), sequence xs, invariants (w, b); stacks h, a sigmoid and a bool-led where."""
    def step(carry, x):
        h, acc = carry
        z = w * h + T.sin(x) + b
        h = T.tanh(z) + T.where(z > 0.0, z, 0.01 * z) / (1.0 + T.exp(-x)) - T.abs(x) * 0.1
        acc = acc + T.where(h > 0.1, h * h, 0.5 * x)
        return (h, acc), (h, T.sigmoid(z) * acc)

    return T.scan(step, (h0, T.const(0.0)), xs, reverse=reverse)


def rnn_numpy(h0, w, b, xs, reverse=False):
    """The same recurrence in plain numpy, step by step."""
    h, acc = np.float64(h0), np.float64(0.0)
    hs, ss = np.empty(len(xs)), np.empty(len(xs))
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        x = xs[t]
        z = w * h + np.sin(x) + b
        h = np.tanh(z) + np.where(z > 0.0, z, 0.01 * z) / (1.0 + np.exp(-x)) - np.abs(x) * 0.1
        acc = acc + np.where(h > 0.1, h * h, 0.5 * x)
        hs[t], ss[t] = h, 1.0 / (1.0 + np.exp(-z)) * acc
    return h, acc, hs, ss


def rnn_vars(n=None):
    return T.var("h0", ()), T.var("w", ()), T.var("b", ()), T.var("xs", (n,))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_scalar_recurrence_is_one_kernel_equal_to_numpy(rng, reverse):
    h0, w, b, xs = rnn_vars(50)
    (hT, accT), (hs, ss) = rnn(h0, w, b, xs, reverse)
    vals = [np.asarray(0.3), np.asarray(0.9), np.asarray(-0.2), rng.standard_normal(50)]
    f = both([h0, w, b, xs], [hT, accT, hs, ss], vals)
    assert scan_kernels(f) == 1 and "def scan" not in f.source
    assert ("for t in range(n - 1, -1, -1):" if reverse else "for t in range(n):") in f.source
    for got, want in zip(f(*vals), rnn_numpy(*[v[()] if v.ndim == 0 else v for v in vals], reverse)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_first_and_second_order_gradients_agree_with_finite_differences(rng, reverse):
    h0, w, b, xs = rnn_vars(12)
    (hT, accT), (hs, ss) = rnn(h0, w, b, xs, reverse)
    cost = hT * accT + T.sum(ss * hs)
    gw, gh, gx = grad(cost, [w, h0, xs])
    gww, gwx = grad(gw, [w, xs])
    vals = [np.asarray(0.3), np.asarray(0.9), np.asarray(-0.2), rng.standard_normal(12)]
    f = both([h0, w, b, xs], [cost, gw, gh, gx, gww, gwx], vals, rtol=1e-11)
    assert scan_kernels(f) >= 2 and "def scan" not in f.source  # forward and reverse (and the second order's)
    c, dw, dh, dx, dww, dwx = f(*vals)
    value = function([h0, w, b, xs], cost)
    first = function([h0, w, b, xs], gw)
    at = dict(zip("hwbx", vals))

    def moved(name):
        return lambda v: [v if k == name else at[k] for k in "hwbx"]

    np.testing.assert_allclose(dw, central(lambda v: value(*moved("w")(v)), vals[1]), rtol=1e-6)
    np.testing.assert_allclose(dh, central(lambda v: value(*moved("h")(v)), vals[0]), rtol=1e-6)
    np.testing.assert_allclose(dx, central(lambda v: value(*moved("x")(v)), vals[3]), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(dww, central(lambda v: first(*moved("w")(v)), vals[1]), rtol=1e-6)
    np.testing.assert_allclose(dwx, central(lambda v: first(*moved("x")(v)), vals[3]), rtol=1e-6, atol=1e-9)


def test_nan_and_inf_propagate_as_on_the_numpy_linker(rng):
    h0, w, b, xs = rnn_vars(6)
    (hT, accT), (hs, ss) = rnn(h0, w, b, xs)
    a = T.var("a", ())
    # x/0 is inf, log(-1) NaN, and maximum passes a NaN on as numpy's does
    (q,), (qs,) = T.scan(lambda c, x: ((c[0] / x + a,), (T.log(x) * T.maximum(c[0], x),)), (a,), xs)
    f = both([h0, w, b, xs, a], [hT, accT, hs, ss, q, qs],
             [np.asarray(np.inf), np.asarray(0.5), np.asarray(0.1),
              np.array([0.5, np.nan, -1.0, 0.0, np.inf, -np.inf]), np.asarray(2.0)])
    assert scan_kernels(f) == 2


def test_a_bool_carry_runs_in_the_kernel():
    """A comparison carried to the next step, read there as a where's condition."""
    x0, xs = T.var("x0", ()), T.var("xs", (9,))

    def step(carry, x):
        h, up = carry
        h = T.where(up, h * 0.5, h + x)
        return (h, h > 1.0), (h, up)

    (h, up), (hs, ups) = T.scan(step, (x0, x0 > 1.0), xs)
    vals = [np.asarray(0.7), np.linspace(-0.5, 1.5, 9)]
    f = both([x0, xs], [h, up, hs, ups], vals)
    assert scan_kernels(f) == 1
    h_, up_ = 0.7, 0.7 > 1.0
    want_h, want_up = [], []
    for x in vals[1]:
        want_up.append(up_)
        h_ = h_ * 0.5 if up_ else h_ + x
        up_ = h_ > 1.0
        want_h.append(h_)
    got = f(*vals)
    assert got[1].dtype == np.bool_ and got[3].dtype == np.bool_ and bool(got[1]) == up_
    np.testing.assert_array_equal(got[3], want_up)
    np.testing.assert_allclose(got[2], want_h, rtol=1e-15)


def test_passed_through_carries_and_constant_outputs():
    """A swap of two carries (body outputs that are its inputs), a constant stacked output, no xs."""
    a, b = T.var("a", ()), T.var("b", ())
    (p, q), (ones, ps) = T.scan(lambda c, _: ((c[1], c[0] + c[1]), (1.0, c[0])), (a, b), None, length=10)
    f = both([a, b], [p, q, ones, ps], [np.asarray(0.0), np.asarray(1.0)])
    assert scan_kernels(f) == 1
    fib = [0.0, 1.0]
    for _ in range(10):
        fib.append(fib[-1] + fib[-2])
    got = f(np.asarray(0.0), np.asarray(1.0))
    assert float(got[0]) == fib[10] and float(got[1]) == fib[11]
    np.testing.assert_array_equal(got[2], np.ones(10))
    np.testing.assert_array_equal(got[3], fib[:10])


def test_strided_and_bool_sequences_and_a_scan_without_carries(rng):
    """A reversed view and a bool mask as sequences (numba compiles their layout on first sight), and a
    scan that only stacks."""
    x, m, a = T.var("x", (8,)), T.var("m", (8,), "bool"), T.var("a", ())
    (s,), ys = T.scan(lambda c, v: ((c[0] + T.where(v[1], v[0], -v[0]),), c[0] * a), (a,), (x[::-1], m))
    _, zs = T.scan(lambda c, v: (c, T.exp(v) * a), (), x[::2])
    vals = [rng.standard_normal(8), rng.random(8) > 0.5, np.asarray(0.7)]
    f = both([x, m, a], [s, ys, zs, grad(s + T.sum(ys) + T.sum(zs), x)], vals)
    assert scan_kernels(f) == 4 and "def scan" not in f.source  # two scans and their reverse loops
    signs = np.where(vals[1], 1.0, -1.0)
    partial = 0.7 + np.concatenate([[0.0], np.cumsum((vals[0][::-1] * signs)[:-1])])
    got = f(*vals)
    np.testing.assert_allclose(got[1], partial * 0.7, rtol=1e-13)
    np.testing.assert_allclose(got[2], np.exp(vals[0][::2]) * 0.7, rtol=1e-13)


# ---------------------------------------------------------------------------- lengths

def test_one_kernel_serves_every_length_zero_included(rng):
    h0, w, b, xs = rnn_vars(None)
    (hT, accT), (hs, ss) = rnn(h0, w, b, xs)
    f = function([h0, w, b, xs], [hT, accT, hs, ss], linker="numba")
    ref = function([h0, w, b, xs], [hT, accT, hs, ss])
    assert scan_kernels(f) == 1
    for n in (0, 1, 2, 1000):
        vals = [np.asarray(0.3), np.asarray(0.9), np.asarray(-0.2), rng.standard_normal(n)]
        for g, want in zip(f(*vals), ref(*vals)):
            assert g.shape == want.shape and g.dtype == want.dtype
            np.testing.assert_allclose(g, want, rtol=1e-12, atol=0)
    fixed = [function([h0, w, b, v], list(rnn(h0, w, b, v)[1]), linker="numba")
             for v in (T.var("xs", (0,)), T.var("xs", (7,)))]
    keys = [s[s.index("cache key "):].split()[2] for s in (f.source, *[g.source for g in fixed])]
    assert len(set(keys)) == 1 and keys[0] in diskcache.LOADED


def test_length_zero_and_one_without_sequences():
    a = T.var("a", ())
    for n in (0, 1):
        (c,), (cs,) = T.scan(lambda c, _: ((T.cos(c[0]),), (c[0] * 2.0,)), (a,), None, length=n)
        f = both([a], [c, cs, grad(c + T.sum(cs), a)], [np.asarray(0.4)])
        assert scan_kernels(f) >= 1
        c_, cs_, g_ = f(np.asarray(0.4))
        assert cs_.shape == (n,) and float(c_) == (np.cos(0.4) if n else 0.4)
        assert float(g_) == pytest.approx(-np.sin(0.4) + 2.0 if n else 1.0, rel=1e-14)


def test_sequences_of_different_run_time_lengths_are_a_twograd_error():
    x, y = T.var("x", (None,)), T.var("y", (None,))
    (c,), ys = T.scan(lambda c, s: ((c[0] + s[0] * s[1],), None), (T.const(0.0),), (x, y))
    f = function([x, y], c, linker="numba")
    assert scan_kernels(f) == 1
    assert float(f(np.ones(3), np.full(3, 2.0))) == 6.0
    for x_, y_ in ((np.ones(3), np.ones(4)), (np.ones(4), np.ones(3))):
        with pytest.raises(TwogradError, match=r"scan: .*disagree: \[3, 4\]"):
            f(x_, y_)


# ---------------------------------------------------------------------------- what stays on the old path

def test_a_scan_with_an_array_body_stays_a_python_loop(rng):
    h0, xs, m = T.var("h0", (3,)), T.var("xs", (5,)), T.var("m", (3, 3))
    (h,), hs = T.scan(lambda c, x: ((T.tanh(m @ c[0]) + x,), c[0]), (h0,), xs)
    (s,), _ = T.scan(lambda c, x: ((c[0] + T.sum(T.sin(h) * x),), None), (T.const(0.0),), xs)
    f = both([h0, xs, m], [h, hs, s], [rng.standard_normal(3), rng.standard_normal(5),
                                       rng.standard_normal((3, 3))])
    assert scan_kernels(f) == 0 and f.source.count("for t in range(") == 2


def test_a_while_loop_with_an_array_body_stays_a_python_loop(rng):
    v = T.var("v", (3,))
    out = T.while_loop(lambda c: T.sum(c * c) < 100.0, lambda c: c * 1.5 + 0.1, v)
    f = both([v], [out, grad(T.sum(out), v)], [rng.uniform(0.5, 1.0, 3)])
    assert "def loop" in f.source and "while " in f.source and "while_loop_kernel" not in f.source


# ---------------------------------------------------------------------------- while loops of scalars

def decay(a, w, max_iter=None):
    """Carries (x, steps, flip): x shrinks by w and sin until below 1e-3; steps counts, flip alternates."""
    def body(c):
        x, k, flip = c
        return x * w + 0.01 * T.sin(x), k + 1.0, T.where(flip, x < -1.0, x > -1.0)

    return T.while_loop(lambda c: c[0] > 1e-3, body, (a, T.const(0.0), a < 0.0), max_iter=max_iter)


def decay_python(a, w, max_iter=None):
    x, k, flip = a, 0.0, a < 0.0
    while (max_iter is None or k < max_iter) and x > 1e-3:
        x, k, flip = x * w + 0.01 * np.sin(x), k + 1.0, (x < -1.0) if flip else (x > -1.0)
    return x, k, flip


def test_a_scalar_while_loop_and_its_gradient_are_kernels():
    """About 40 steps: the saved carry-ins outgrow the kernel's first buffer (16) and are copied on."""
    a, w = T.var("a", ()), T.var("w", ())
    x, k, flip = decay(a, w)
    ga, gw = grad(x, [a, w])
    vals = [np.asarray(5.0), np.asarray(0.8)]
    f = both([a, w], [x, k, flip, ga, gw], vals)
    assert f.source.count("# while_loop_kernel") == 1 and f.source.count(KERNEL) == 1 and "def loop" not in f.source
    got = f(*vals)
    want = decay_python(5.0, 0.8)
    assert float(got[1]) == want[1] > 16 and bool(got[2]) == want[2] and got[2].dtype == np.bool_
    np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
    value = function([a, w], x)
    np.testing.assert_allclose(got[3], central(lambda v: value(v, vals[1]), vals[0]), rtol=1e-6)
    np.testing.assert_allclose(got[4], central(lambda v: value(vals[0], v), vals[1]), rtol=1e-6)


@pytest.mark.parametrize("max_iter", [None, 0, 1, 3])
def test_while_loop_bounds_and_zero_steps(max_iter):
    a, w = T.var("a", ()), T.var("w", ())
    x, k, flip = decay(a, w, max_iter)
    for start in (5.0, 1e-4):  # 1e-4: the condition fails at once
        f = both([a, w], [x, k, flip, grad(x, a)], [np.asarray(start), np.asarray(0.8)])
        assert f.source.count("# while_loop_kernel") == 1
        got = f(np.asarray(start), np.asarray(0.8))
        want = decay_python(start, 0.8, max_iter)
        assert float(got[1]) == want[1] and float(got[0]) == pytest.approx(want[0], rel=1e-13)
        if want[1] == 0:
            assert float(got[3]) == 1.0
        alone = both([a, w], [x, k, flip], [np.asarray(start), np.asarray(0.8)])  # a loop that saves nothing
        assert "while_loop_kernel" in alone.source and "np.concatenate" not in alone.source


# ---------------------------------------------------------------------------- the euler workload

def test_the_euler_gradient_runs_its_forward_and_reverse_scans_as_kernels():
    from benchmarks.workloads.euler import euler

    p = euler("t1000")
    cost, variables = p.graph()
    outs = [cost, *grad(cost, variables)]
    f = both(variables, outs, p.arrays)
    assert scan_kernels(f) == 2 and "def scan" not in f.source
    assert "for t in range(n):" in f.source and "for t in range(n - 1, -1, -1):" in f.source
    value, *g = f(*p.arrays)
    np.testing.assert_allclose(value, p.hand_forward(*p.arrays), rtol=1e-12)
    for got, want in zip(g, p.hand_grad(*p.arrays)):
        np.testing.assert_allclose(got, want, rtol=1e-9)
    # function() compiled each loop for the types the driver passes: the calls compiled nothing more
    keys = [line.split("cache key ")[1] for line in f.source.splitlines() if line.startswith(KERNEL)]
    assert len(keys) == 2 and all(len(diskcache.LOADED[k].signatures) == 1 for k in keys)
