"""Gradients as stable as values, and rewrites that keep IEEE semantics.

Each unstable composition that ``optimize`` turns into a stable op must also
have a finite, correct gradient, whichever comes first: ``optimize`` then
``grad``, or ``grad`` on the graph as written then ``function`` (or no rewrite
at all). References are closed forms computed in numpy with stable formulas,
and central finite differences in float64 at moderate inputs.
"""

import numpy as np
import pytest

import common
import symsym
from benchmarks.finite import central_differences
from common import api as T
from symsym import function, grad, optimize

X_BIG = np.array([[1000.0, -1000.0, 0.5], [-1000.0, 1000.0, 3.0]])
W = np.array([[0.3, -1.2, 0.7], [1.5, 0.4, -0.6]])
R = np.array([0.8, -1.7])
PROBS = np.array([[0.2, 0.5, 0.3], [0.0, 0.9, 0.1]])


def _sigmoid(v):
    return np.exp(-np.logaddexp(0.0, -v))  # never overflows


def _softmax(v):
    e = np.exp(v - v.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# name: (cost of x written the unstable way, d cost / dx in closed form)
CASES = {
    "log(softmax)": (lambda x: T.sum(T.const(W) * T.log(T.softmax(x, axis=-1))),
                     lambda v: W - _softmax(v) * W.sum(axis=-1, keepdims=True)),
    "softmax cross-entropy by hand": (lambda x: -T.sum(T.const(PROBS) * T.log(T.softmax(x, axis=-1))),
                                      lambda v: _softmax(v) * PROBS.sum(axis=-1, keepdims=True) - PROBS),
    "log(sum(exp))": (lambda x: T.sum(T.const(R) * T.log(T.sum(T.exp(x), axis=-1))),
                      lambda v: R[:, None] * _softmax(v)),
    "log(sigmoid)": (lambda x: T.sum(T.const(W) * T.log(T.sigmoid(x))),
                     lambda v: W * _sigmoid(-v)),
    "log(1 - sigmoid)": (lambda x: T.sum(T.const(W) * T.log(1.0 - T.sigmoid(x))),
                         lambda v: -W * _sigmoid(v)),
    "log(1 + exp)": (lambda x: T.sum(T.const(W) * T.log(1.0 + T.exp(x))),
                     lambda v: W * _sigmoid(v)),
    "log1p(exp)": (lambda x: T.sum(T.const(W) * T.log1p(T.exp(x))),
                   lambda v: W * _sigmoid(v)),
    "log(exp)": (lambda x: T.sum(T.const(W) * T.log(T.exp(x))),
                 lambda v: W),
}


def _evaluate(outputs, feed):
    """``common.evaluate`` fed only the variables the outputs read (a gradient may read none)."""
    used = {id(n) for n in common.toposort(outputs if isinstance(outputs, list) else [outputs])}
    return common.evaluate(outputs, {k: v for k, v in feed.items() if id(k) in used})


def _orders(cost, x):
    """d cost / dx at each order of rewriting and differentiating, as functions of x's value."""
    stable, _ = optimize(cost)
    g_after = function([x], [stable, grad(stable, x)])          # (a) optimize, then grad
    g_raw = function([x], [cost, grad(cost, x)])                # (b) grad on the raw graph, then function
    g_plain = grad(cost, x)                                     # (c) no rewrite at all after grad
    return {
        "optimize then grad": lambda v: g_after(v)[1],
        "grad then function": lambda v: g_raw(v)[1],
        "grad, unoptimised": lambda v: _evaluate(g_plain, {x: v}),
    }


@pytest.mark.parametrize("case", CASES)
def test_gradient_is_finite_and_right_at_large_inputs_in_every_order(case):
    build, closed = CASES[case]
    x = T.var("x", X_BIG.shape)
    cost = build(x)
    want = closed(X_BIG)
    for order, d in _orders(cost, x).items():
        got = d(X_BIG)
        assert np.all(np.isfinite(got)), (case, order, got)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{case}: {order}")


@pytest.mark.parametrize("case", CASES)
def test_gradient_matches_finite_differences_at_moderate_inputs(case):
    build, closed = CASES[case]
    x = T.var("x", X_BIG.shape)
    cost = build(x)
    v = np.random.default_rng(7).standard_normal(X_BIG.shape) * 2.0
    fd = central_differences(lambda a: common.evaluate(cost, {x: a}), v)
    np.testing.assert_allclose(closed(v), fd, rtol=1e-6, atol=1e-7)  # the reference itself
    for order, d in _orders(cost, x).items():
        np.testing.assert_allclose(d(v), fd, rtol=1e-6, atol=1e-7, err_msg=f"{case}: {order}")


@pytest.mark.parametrize("case", ["log(softmax)", "log(sum(exp))", "log(sigmoid)"])
def test_the_graph_as_written_really_has_a_nan_gradient_there(case):
    """What the default prevents: differentiated exactly as written, the gradient is not finite."""
    x = T.var("x", X_BIG.shape)
    cost = CASES[case][0](x)
    with np.errstate(all="ignore"):
        raw = common.evaluate(grad(cost, x, stable=False), {x: X_BIG})
    assert not np.all(np.isfinite(raw))


def test_stable_op_gradients_agree_with_the_rewritten_patterns():
    """The stable ops differentiated directly give what the patterns give."""
    x = T.var("x", X_BIG.shape)
    pairs = [(T.log(T.softmax(x, axis=-1)), T.log_softmax(x, axis=-1)),
             (T.log(T.sum(T.exp(x), axis=-1)), T.logsumexp(x, axis=-1)),
             (T.log(1.0 + T.exp(x)), T.softplus(x)),
             (T.log(T.sigmoid(x)), -T.softplus(-x))]
    for pattern, op in pairs:
        weights = T.const(np.resize(W.ravel(), op.shape))
        got = function([x], grad(T.sum(weights * pattern), x))(X_BIG)
        want = common.evaluate(grad(T.sum(weights * op), x), {x: X_BIG})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_grad_leaves_the_users_graph_as_it_was():
    x = T.var("x", (2, 3))
    s = T.softmax(x)
    y = T.log(s)
    cost = T.sum(y)
    before = [(n.op and n.op.name, tuple(map(id, n.inputs))) for n in common.toposort(cost)]
    grad(cost, x)
    assert [(n.op and n.op.name, tuple(map(id, n.inputs))) for n in common.toposort(cost)] == before
    assert y.op.name == "log" and y.inputs[0] is s


def test_a_node_asked_for_by_identity_is_never_absorbed():
    """wrt, known gradients and constants keep standing for themselves inside a stable pattern."""
    x = T.var("x", (3,))
    s = T.softmax(x)
    cost = T.sum(T.const(np.array([0.5, -1.0, 2.0])) * T.log(s))
    v = np.array([0.3, -0.2, 1.1])
    p = _softmax(v)
    d_s, d_x = grad(cost, [s, x])
    np.testing.assert_allclose(common.evaluate(d_s, {x: v}), np.array([0.5, -1.0, 2.0]) / p, rtol=1e-12)
    np.testing.assert_allclose(common.evaluate(d_x, {x: v}), np.array([0.5, -1.0, 2.0]) - p * 1.5,
                               rtol=1e-12, atol=1e-14)
    # the softmax held constant: no gradient reaches x, as without the rewrite
    assert grad(cost, x, consider_constant=[s], disconnected="none") is None
    # a known gradient on the softmax replaces whatever flows into it
    seed = T.const(np.array([1.0, 2.0, 3.0]))
    d_known = grad(cost, x, known_grads={s: seed})
    np.testing.assert_allclose(common.evaluate(d_known, {x: v}), p * (np.array([1.0, 2.0, 3.0]) - p @ [1, 2, 3]),
                               rtol=1e-12, atol=1e-14)


def test_intermediate_wrt_rewritten_to_an_existing_node_keeps_its_own_gradient():
    """log(exp(y)) -> y must not make u one node with y, which reaches the cost on its own too."""
    x = T.var("x", (2,))
    y = T.sin(x)
    u = T.log(T.exp(y))
    cost = T.sum(u * 3.0 + y * 5.0)
    d_u, d_y = grad(cost, [u, y])
    v = np.array([0.4, -0.9])
    np.testing.assert_allclose(_evaluate(d_u, {x: v}), [3.0, 3.0])
    np.testing.assert_allclose(_evaluate(d_y, {x: v}), [8.0, 8.0])  # both paths from y: through u too


def test_second_order_of_a_stable_form_at_large_inputs():
    x = T.var("x", (3,))
    cost = T.log(T.sum(T.exp(x)))
    v = np.array([1000.0, -1000.0, 999.0])
    p = _softmax(v)
    want = np.diag(p) - np.outer(p, p)
    h = function([x], symsym.hessian(cost, x))(v)
    np.testing.assert_allclose(h, want, rtol=1e-12, atol=1e-14)
    direction = np.array([1.0, 2.0, -1.0])
    hv = function([x], symsym.hvp(cost, x, T.const(direction)))(v)
    np.testing.assert_allclose(hv, want @ direction, rtol=1e-12, atol=1e-14)
    j = function([x], symsym.jacobian(T.log(T.softmax(x)), x))(v)
    np.testing.assert_allclose(j, np.eye(3) - p[None, :], rtol=1e-12, atol=1e-14)


def test_float32_gradient_stays_float32_and_finite():
    x = T.var("x", (3,), np.float32)
    cost = T.sum(T.log(T.softmax(x)))
    g = function([x], grad(cost, x))(np.array([100.0, -100.0, 0.0], np.float32))
    assert g.dtype == np.float32 and np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [-2.0, 1.0, 1.0], rtol=1e-6, atol=1e-6)


def test_a_max_shifted_logsumexp_by_hand_is_left_as_written():
    """x - max(x) inside is already stable: no second shift, and still a finite gradient."""
    x = T.var("x", (4,))
    cost = T.stop_gradient(T.max(x)) + T.log(T.sum(T.exp(x - T.stop_gradient(T.max(x)))))
    f = function([x], [cost, grad(cost, x)])
    assert "logsumexp" not in [n.op.name for n in common.toposort(f.graph) if n.op is not None]
    v = np.array([1000.0, -1000.0, 999.0, 0.0])
    value, g = f(v)
    np.testing.assert_allclose(value, 1000.0 + np.log1p(np.exp(-1.0)), rtol=1e-15)
    np.testing.assert_allclose(g, _softmax(v), rtol=1e-12, atol=1e-15)


def test_stabilising_a_deep_graph_is_iterative():
    x = T.var("x", (2,))
    h = x
    for _ in range(5000):
        h = T.sin(h)
    g = grad(T.log(T.sum(T.exp(h))), x)
    assert "logsumexp" in [n.op.name for n in common.toposort(g) if n.op is not None]


# ------------------------------------------------------------------- IEEE semantics

SPECIAL = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 2.5])


def _ieee_graphs(x, y):
    zero, one = T.const(0.0), T.const(1.0)
    return [x * 0.0, zero * x, x * T.zeros_like(y), T.exp(x) * 0.0 + y, (x * 2.0) * 0.0,
            (x * y) * 0.0, x - x, x / x, x * 1.0 + 0.0, x - zero, zero - x, x / one, T.neg(T.neg(x)),
            T.sum_to(x, (6,)) * T.broadcast_to(one, (6,)), x * T.ones_like(y)]


def test_rewrites_propagate_nan_and_inf_as_numpy_does():
    x, y = T.var("x", (6,)), T.var("y", (6,))
    outs = _ieee_graphs(x, y)
    feeds = [(SPECIAL, SPECIAL[::-1].copy()), (np.full(6, 1e300), np.full(6, 1e300))]
    for xv, yv in feeds:
        with np.errstate(all="ignore"):
            want = common.evaluate(outs, {x: xv, y: yv})
            got = function([x, y], outs)(xv, yv)
        for k, (a, b) in enumerate(zip(want, got)):
            np.testing.assert_array_equal(b, a, err_msg=f"graph {k}")


def test_gradients_of_non_finite_inputs_are_not_cleaned_by_rewrites():
    x = T.var("x", (6,))
    cost = T.sum(T.exp(x) * 0.0 + T.sin(x))
    d = grad(cost, x)
    with np.errstate(all="ignore"):
        want = common.evaluate(d, {x: SPECIAL})
        got = function([x], d)(SPECIAL)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(got[1])  # d/dx exp(x) * 0 at inf is inf * 0


def test_fast_math_simplifies_what_ieee_keeps():
    x, y = T.var("x", (6,)), T.var("y", (6,))
    for out in [T.exp(x) * 0.0 + y, (x - x) + y, (x / x) * y, T.zeros_like(y) * x + y]:
        ieee = function([x, y], out)
        fast = function([x, y], out, fast_math=True)
        assert fast.report["nodes_after"] < ieee.report["nodes_after"]
        assert "x" not in [n.name for n in common.toposort(fast.graph)]  # x is no longer read
        finite = np.array([0.5, -2.0, 3.0, 1.0, 7.0, -0.25])
        np.testing.assert_allclose(fast(finite, finite + 1.0), ieee(finite, finite + 1.0), rtol=1e-15)
    new, report = optimize(T.exp(x) * 0.0, fast_math=True)
    assert new.op is None or new.op.name != "mul"
    assert report["passes"]["algebra"] >= 1


def test_multiplication_by_zero_still_folds_where_nothing_can_be_nan():
    i = T.var("i", (3,), np.int64)
    x = T.var("x", (3,))
    ints = function([i], i * 0)  # an integer holds no NaN or inf
    assert ints.report["nodes_after"] == 1
    np.testing.assert_array_equal(ints(np.array([1, -2, 3])), [0, 0, 0])
    known = T.zeros_like(x) * T.const(np.full(3, 2.0)) + x  # both factors known and finite
    f = function([x], known)
    assert f.report["nodes_after"] == 1 and f.graph[0] is x
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(f(np.array([np.inf, np.nan, 1.0])), [np.inf, np.nan, 1.0])


@pytest.mark.parametrize("seed", range(4))
def test_optimize_keeps_nan_and_inf_on_random_graphs(seed):
    rng = np.random.default_rng(100 + seed)
    x = T.var("x", (6,))
    nodes = [x, T.const(1.0), T.const(0.0), T.const(2.0)]
    unary = [T.sin, T.exp, T.tanh, lambda a: -a, T.sigmoid, lambda a: T.log(1.0 + T.square(a))]
    binary = [lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a - b, lambda a, b: a / b]
    for _ in range(30):
        if rng.random() < 0.4:
            n = unary[rng.integers(len(unary))](nodes[rng.integers(len(nodes))])
        else:
            n = binary[rng.integers(len(binary))](nodes[rng.integers(len(nodes))], nodes[rng.integers(len(nodes))])
        nodes.append(n)
    outs = [n for n in nodes[4:] if n.shape == (6,)]
    with np.errstate(all="ignore"):
        want = common.evaluate(outs, {x: SPECIAL})
        got = function([x], outs)(SPECIAL)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-300, equal_nan=True)
