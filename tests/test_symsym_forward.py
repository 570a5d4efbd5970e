"""symsym's forward mode (``jvp`` as a tangent graph, ``jacfwd``) against reverse mode and finite differences.

Each op case of ``tests/opcases.py`` is built as a graph, its tangent graph
made by ``symsym.jvp`` (a forward sweep of the JVP rules), compiled and
compared with central differences in float64 (the independent reference) and
with symnum's reverse-mode Jacobian to 1e-10 (an engine check: another backend
and direction over the same op table, so it cannot show a rule wrong);
``jacfwd`` against ``jacobian`` (reverse), an engine check likewise. Workloads, forward over reverse (agreeing with
``hvp``), float32, unknown dims and a long chain (the sweep is iterative).
"""

from __future__ import annotations

import numpy as np
import pytest
from opcases import CASES

import symnum
from benchmarks.workloads import get
from common import api
from common.errors import GradError
from symsym import function, grad, hvp, jacfwd, jacobian, jacrev, jvp

DIFF = [c for c in CASES if c.wrt]


def _graph(case, seed=3):
    rng = np.random.default_rng(seed)
    arrays = case.inputs(rng)
    xs = [api.var(f"x{i}", a.shape, a.dtype) for i, a in enumerate(arrays)]
    y = case.fn(api.symbolic, *xs)
    return arrays, xs, y, rng


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_tangent_graph_matches_reverse_and_finite_differences(case):
    arrays, xs, y, rng = _graph(case)
    wrt = [xs[i] for i in case.wrt]
    vs = [api.var(f"v{i}", x.shape, x.dtype) for i, x in zip(case.wrt, wrt)]
    us = [rng.standard_normal(arrays[i].shape) for i in case.wrt]
    got = function(xs + vs, jvp(y, wrt, vs))(*arrays, *us)
    assert len(np.shape(got)) == len(y.shape)
    assert all(d is None or d == g for d, g in zip(y.shape, np.shape(got)))  # None: a computed count

    def f(*ws):
        full = list(arrays)
        for i, w in zip(case.wrt, ws):
            full[i] = w
        return case.fn(symnum.tape, *full)

    jacs = symnum.jacrev(f, argnums=tuple(range(len(us))))(*[arrays[i] for i in case.wrt])
    expect = sum(np.tensordot(j, u, axes=u.ndim) for j, u in zip(jacs, us))
    np.testing.assert_allclose(got, expect, rtol=1e-10, atol=1e-12)
    h = 1e-6
    plus = np.asarray(f(*[arrays[i] + h * u for i, u in zip(case.wrt, us)]))
    minus = np.asarray(f(*[arrays[i] - h * u for i, u in zip(case.wrt, us)]))
    np.testing.assert_allclose(got, (plus - minus) / (2 * h), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_jacfwd_matches_reverse(case):
    """Against symnum's reverse Jacobian and against symsym's own ``jacrev``."""
    arrays, xs, y, _ = _graph(case)
    i = case.wrt[0]
    if None in y.shape:  # a result whose size is computed has no static Jacobian block
        with pytest.raises(GradError, match="jacfwd: needs a static shape"):
            jacfwd(y, xs[i])
        return
    fwd = function(xs, jacfwd(y, xs[i]))(*arrays)
    assert fwd.shape == y.shape + xs[i].shape

    def f(w):
        return case.fn(symnum.tape, *arrays[:i], w, *arrays[i + 1:])

    np.testing.assert_allclose(fwd, symnum.jacrev(f)(arrays[i]), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fwd, function(xs, jacrev(y, xs[i]))(*arrays), rtol=1e-10, atol=1e-12)


WORKLOADS = [("mlp", "small"), ("rosenbrock", "n10"), ("chain", "sin-d10"), ("chain", "tanh-d100")]


@pytest.mark.parametrize("name, size", WORKLOADS, ids=[f"{n}-{s}" for n, s in WORKLOADS])
def test_workload_tangent_is_the_gradient_dotted_with_v(name, size):
    p = get(name).make(size)
    cost, variables = p.graph()
    wrt = [variables[i] for i in p.wrt_index]
    vs = [api.var(f"v{k}", x.shape, x.dtype) for k, x in enumerate(wrt)]
    values = list(p.args.values())
    rng = np.random.default_rng(4)
    us = [rng.standard_normal(x.shape) for x in wrt]
    got = function(variables + vs, jvp(cost, wrt, vs))(*values, *us)
    grads = function(variables, grad(cost, wrt))(*values)
    expect = sum(float(np.sum(g * u)) for g, u in zip(grads, us))
    np.testing.assert_allclose(got, expect, rtol=1e-10)


def test_forward_over_reverse_agrees_with_hvp():
    p = get("rosenbrock").make("n10")
    cost, (x,) = p.graph()
    v = api.var("v", x.shape, x.dtype)
    xv = p.args["x"]
    vv = np.random.default_rng(0).standard_normal(xv.shape)
    fwd = function([x, v], jvp(grad(cost, x), x, v))(xv, vv)
    rev = function([x, v], hvp(cost, x, v))(xv, vv)
    np.testing.assert_allclose(fwd, rev, rtol=1e-10)
    np.testing.assert_allclose(fwd, p.hand_hessian(xv)[0] @ vv, rtol=1e-10)


def test_float32_tangents_stay_float32():
    x = api.var("x", (4,), np.float32)
    v = api.var("v", (4,), np.float32)
    y = api.tanh(x) * 2.0 + api.sum(x * x)
    t = jvp(y, x, v)
    assert t.dtype == np.float32
    xv = np.linspace(0.1, 1, 4, dtype=np.float32)
    got = function([x, v], t)(xv, np.ones(4, np.float32))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, 2 * (1 - np.tanh(xv) ** 2) + 2 * xv.sum(), rtol=1e-5)
    assert jacfwd(y, x).dtype == np.float32


def test_unknown_dims():
    x = api.var("x", (None, 3))
    v = api.var("v", (None, 3))
    w = api.const(np.arange(6.0).reshape(3, 2) / 5)
    y = api.sum(api.sin(x @ w), axis=0) + api.mean(x)
    t = jvp(y, x, v)
    f = function([x, v], t)
    for n in (2, 5):
        xv = np.random.default_rng(n).standard_normal((n, 3))
        vv = np.random.default_rng(n + 1).standard_normal((n, 3))
        expect = np.sum(np.cos(xv @ w.value) * (vv @ w.value), axis=0) + vv.mean()
        np.testing.assert_allclose(f(xv, vv), expect, rtol=1e-10)


def test_a_long_chain_is_swept_without_recursion():
    x = api.var("x", (3,))
    y = x
    for _ in range(20000):
        y = api.sin(y) * 0.5
    t = jvp(y, x, api.var("v", (3,)))
    assert t.shape == (3,)


def test_disconnected_output_gets_zeros_and_bad_tangent_is_an_error():
    x = api.var("x", (3,))
    z = api.var("z", (2,))
    y = z * 2.0
    np.testing.assert_array_equal(function([x, z], jvp(y, x, api.var("v", (3,))))(
        np.ones(3), np.ones(2)), np.zeros(2))
    with pytest.raises(GradError, match="tangent of shape"):
        jvp(api.sin(x), x, api.var("v", (4,)))


def test_jacfwd_matches_the_reverse_jacobian_on_a_tall_map():
    # y has more elements than x, so jacobian's auto mode would itself take jacfwd: reverse is forced
    x = api.var("x", (3,))
    a = api.const(np.random.default_rng(1).standard_normal((8, 3)))
    y = api.tanh(a @ x) ** 2
    xv = np.array([0.1, -0.3, 0.5])
    rev = function([x], jacobian(y, x, mode="reverse"))(xv)
    np.testing.assert_allclose(function([x], jacfwd(y, x))(xv), rev, rtol=1e-10)
