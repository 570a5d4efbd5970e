"""symsym.grad: Algorithms 6.5/6.6 on symbols, its options, explain and the pictures."""

import numpy as np
import pytest
from matplotlib.colors import to_rgba

import common
from benchmarks.finite import central_differences
from common import api as T
from common.errors import GradError, TwogradError
from common.gcpause import paused_gc
from common.ops import OPS
from symsym import draw_grad, explain, function, grad, optimize, pprint, stop_gradient, to_dot
from symsym.draw import ADDED, added_nodes


def test_grad_returns_graph_nodes_in_the_same_language():
    x = T.var("x", (3,))
    g = grad(T.sum(T.sin(x)), x)
    assert isinstance(g, common.Node)
    assert g.shape == (3,) and g.dtype == np.float64
    xv = np.array([0.1, -0.4, 2.0])
    np.testing.assert_allclose(common.evaluate(g, {x: xv}), np.cos(xv))


def test_grad_never_evaluates_anything(monkeypatch):
    """With unknown dims and every impl disabled, grad still builds the graph."""
    x = T.var("x", (None, 3))
    w = T.var("w", (3, None))
    b = T.var("b", (None,))
    cost = T.mean(T.tanh(x @ w + b) ** 2) + T.sum(T.softmax(x, axis=-1) * 0.5)
    impls = {name: op.impl for name, op in OPS.items()}

    def refuse(*args, **kwargs):
        raise AssertionError("grad evaluated an op")

    for op in OPS.values():
        monkeypatch.setattr(op, "impl", refuse)
    gx, gw, gb = grad(cost, [x, w, b])
    for name, impl in impls.items():
        monkeypatch.setattr(OPS[name], "impl", impl)
    assert gx.shape == (None, 3) and gw.shape == (3, None) and gb.shape == (None,)

    rng = np.random.default_rng(0)
    xv, wv, bv = rng.standard_normal((5, 3)), rng.standard_normal((3, 4)), rng.standard_normal(4)

    def f(xv, wv, bv):
        e = np.exp(xv - xv.max(-1, keepdims=True))
        return np.mean(np.tanh(xv @ wv + bv) ** 2) + np.sum(e / e.sum(-1, keepdims=True) * 0.5)

    got = function([x, w, b], [gx, gw, gb])(xv, wv, bv)
    np.testing.assert_allclose(got[0], central_differences(lambda v: f(v, wv, bv), xv), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got[1], central_differences(lambda v: f(xv, v, bv), wv), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(got[2], central_differences(lambda v: f(xv, wv, v), bv), rtol=1e-6, atol=1e-8)


def test_gradient_nodes_are_named():
    w = T.var("w", ())
    z = T.exp(T.sin(w)).renamed("z")
    assert grad(z, w).name == "d(z)/d(w)"
    assert grad(T.sin(w), w).name == "d(cost)/d(w)"


def test_shared_subexpression_sums_consumers():
    x = T.var("x", (2,))
    y = T.sin(x)
    cost = T.sum(y * y + y)  # y has three uses
    xv = np.array([0.3, -1.2])
    expected = (2 * np.sin(xv) + 1) * np.cos(xv)
    np.testing.assert_allclose(common.evaluate(grad(cost, x), {x: xv}), expected)


def test_disconnected_input_raise_zero_none():
    x = T.var("x", (2,))
    lonely = T.var("lonely", (3,))
    cost = T.sum(x * 2.0)
    with pytest.raises(GradError, match="lonely"):
        grad(cost, [x, lonely])
    gx, gl = grad(cost, [x, lonely], disconnected="zero")
    np.testing.assert_array_equal(common.evaluate(gl, {lonely: np.ones(3)}), np.zeros(3))
    assert grad(cost, [x, lonely], disconnected="none")[1] is None
    with pytest.raises(GradError, match="disconnected"):
        grad(cost, x, disconnected="maybe")


def test_integer_inputs_get_no_gradient():
    k = T.var("k", (2,), "int64")
    with pytest.raises(GradError, match="int64"):
        grad(T.sum(k * 2), k)
    x = T.var("x", (2,))
    cost = T.sum(x * T.cast(k, "float64"))
    assert isinstance(grad(cost, x), common.Node)
    assert issubclass(GradError, TwogradError)


def test_known_grads_is_grad_ys():
    x = T.var("x", (3,))
    y = T.exp(x)
    u = T.var("u", (3,))
    g = grad(y, x, known_grads={y: u})  # u^T dy/dx
    xv, uv = np.array([0.1, 0.2, -0.5]), np.array([1.0, -2.0, 3.0])
    np.testing.assert_allclose(common.evaluate(g, {x: xv, u: uv}), uv * np.exp(xv))
    # a known gradient for an intermediate node replaces what flows above it
    h = T.sin(x)
    cost = T.sum(T.square(h))
    g2 = grad(cost, x, known_grads={h: T.const(np.ones(3))})
    np.testing.assert_allclose(common.evaluate(g2, {x: xv}), np.cos(xv))
    g3 = grad(cost + T.sum(x), x, known_grads={h: T.const(np.full(3, 2.0))})  # other paths still count
    np.testing.assert_allclose(common.evaluate(g3, {x: xv}), 2 * np.cos(xv) + 1)
    with pytest.raises(GradError, match="shape"):
        grad(y, x, known_grads={y: T.var("wrong", (4,))})


def test_stop_gradient_and_consider_constant():
    x = T.var("x", (2,))
    y = T.square(x)
    xv = np.array([1.5, -2.0])
    g = grad(T.sum(stop_gradient(y) * x), x)  # y treated as a constant
    np.testing.assert_allclose(common.evaluate(g, {x: xv}), xv ** 2)
    g = grad(T.sum(y * x), x, consider_constant=[y])
    np.testing.assert_allclose(common.evaluate(g, {x: xv}), xv ** 2)
    g = grad(T.sum(y * x), x)
    np.testing.assert_allclose(common.evaluate(g, {x: xv}), 3 * xv ** 2)
    with pytest.raises(GradError):
        grad(T.sum(stop_gradient(x)), x)


def test_grad_of_a_non_scalar_cost_is_grad_of_its_sum():
    x = T.var("x", (3,))
    xv = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(common.evaluate(grad(T.log(x), x), {x: xv}), 1 / xv)


def _figure_6_10():
    w = T.var("w", ())
    x = T.sin(w).renamed("x")
    y = T.sin(x).renamed("y")
    z = T.sin(y).renamed("z")
    return w, x, y, z


def test_figure_6_10_reads_in_the_forward_ops():
    w, x, y, z = _figure_6_10()
    g, _ = optimize(grad(z, w), passes=("algebra",))
    text = pprint(g)
    assert text == "cos(sin(sin(w))) * cos(sin(w)) * cos(w)"
    added = added_nodes([z], [z, g])
    names = sorted(n.op.name for n in added)
    assert names == ["cos", "cos", "cos", "mul", "mul"]  # f'(y), f'(x), f'(w) and the two products
    cos_args = {n.inputs[0].name for n in added if n.op.name == "cos"}
    assert cos_args == {"w", "x", "y"}
    wv = 0.7
    expected = np.cos(np.sin(np.sin(wv))) * np.cos(np.sin(wv)) * np.cos(wv)
    np.testing.assert_allclose(common.evaluate(g, {w: wv}), expected)


def test_figure_6_10_drawing_and_dot(tmp_path):
    w, x, y, z = _figure_6_10()
    fig = draw_grad(z, w)
    fig.savefig(tmp_path / "fig.png")
    assert (tmp_path / "fig.png").stat().st_size > 1000
    texts = [t for t in fig.axes[0].texts if t.get_bbox_patch() is not None]  # nodes, not edges
    orange = [t.get_text() for t in texts if t.get_bbox_patch().get_facecolor() == to_rgba(ADDED)]
    assert sorted(s.split("\n")[0] for s in orange) == ["cos", "cos", "cos", "mul", "mul"]
    assert len(texts) == 4 + 5
    dot = draw_grad(z, w, dot=True)
    assert dot.count("fillcolor") == 5 and dot.startswith("digraph")
    assert to_dot([z]).count("fillcolor") == 0


def test_explain_follows_algorithm_6_6():
    w, x, y, z = _figure_6_10()
    e = explain(z, w)
    assert [(s.node.name, s.consumer.name, s.slot) for s in e.steps] == [("y", "z", 0), ("x", "y", 0),
                                                                          ("w", "x", 0)]
    assert all(s.consumer.op.name == "sin" for s in e.steps)
    assert [sorted(n.op.name for n in s.added if n.op) for s in e.steps] == [["cos", "mul"], ["cos", "mul"],
                                                                             ["cos", "mul"]]
    text = str(e)
    assert "sin.vjp[0]" in text and "grad_table[y]" in text and "seed" in text
    np.testing.assert_allclose(common.evaluate(e.grads[0], {w: 0.3}),
                               common.evaluate(grad(z, w), {w: 0.3}))


@pytest.mark.slow
def test_deep_chain_grad_and_compile():
    """A 10^6-op chain: grad and compile are iterative and linear (no RecursionError)."""
    n = 1_000_000
    x = T.var("x", ())
    c = T.const(1.0 + 1e-7)
    y = x
    with paused_gc():  # the nodes are acyclic: collections would only rescan them
        for _ in range(n):
            y = y * c
    g = grad(y, x)
    f = function([x], [y, g], optimize=False)
    yv, gv = f(np.float64(2.0))
    np.testing.assert_allclose(gv, (1.0 + 1e-7) ** n, rtol=1e-9)
    np.testing.assert_allclose(yv, 2.0 * (1.0 + 1e-7) ** n, rtol=1e-9)


def test_kink_conventions_in_the_gradient_graph():
    """PyTorch's documented choices at non-differentiable points, in symsym's graph, interpreted and compiled:
    abs'(0) = relu'(0) = 0, a tie in maximum/minimum splits the cotangent 0.5/0.5, a tie in max splits it
    evenly, sqrt'(0) = inf."""
    a, b = T.var("a", (3,)), T.var("b", (3,))
    m = T.var("m", (4,))
    z = T.var("z", ())
    costs = {"maximum": T.sum(T.maximum(a, b)), "minimum": T.sum(T.minimum(a, b)), "abs": T.sum(T.abs(a)),
             "relu": T.sum(T.relu(a)), "max": T.max(m), "sqrt": T.sqrt(z)}
    wrt = {"maximum": [a, b], "minimum": [a, b], "abs": [a], "relu": [a], "max": [m], "sqrt": [z]}
    feed = {a: np.array([1.0, 2.0, 0.0]), b: np.array([1.0, 3.0, 0.0]), m: np.array([3.0, 1.0, 3.0, 2.0]),
            z: np.array(0.0)}
    want = {"maximum": [[0.5, 0.0, 0.5], [0.5, 1.0, 0.5]], "minimum": [[0.5, 1.0, 0.5], [0.5, 0.0, 0.5]],
            "abs": [[1.0, 1.0, 0.0]], "relu": [[1.0, 1.0, 0.0]], "max": [[0.5, 0.0, 0.5, 0.0]], "sqrt": [np.inf]}
    for name, cost in costs.items():
        grads = grad(cost, wrt[name])
        inputs = wrt[name]
        with np.errstate(divide="ignore"):
            interpreted = common.evaluate(grads, {x: feed[x] for x in inputs})
            compiled = function(inputs, grads)(*[feed[x] for x in inputs])
        for got in (interpreted, compiled):
            for g, w in zip(got, want[name], strict=True):
                np.testing.assert_array_equal(g, w, err_msg=name)
