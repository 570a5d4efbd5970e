"""symnum on the shared IR: gradients()/evaluate() of a ``common`` graph against
define-by-run on the same function, numpy, and the reference interpreter."""

import numpy as np
import pytest

import common
import symnum as S
from common import api as T
from common.errors import FeedError, GradError


def mlp(ns, x, w1, b1, w2, b2, t):
    h = ns.tanh(ns.matmul(x, w1) + b1)
    return ns.mean(ns.softmax_cross_entropy(ns.matmul(h, w2) + b2, t))


def _data(rng):
    t = np.eye(3)[rng.integers(0, 3, 5)]
    return [rng.standard_normal((5, 4)), rng.standard_normal((4, 6)) * 0.5, rng.standard_normal(6),
            rng.standard_normal((6, 3)) * 0.5, rng.standard_normal(3), t]


def test_gradients_on_an_ir_graph_equal_define_by_run(rng):
    arrays = _data(rng)
    names = ["x", "w1", "b1", "w2", "b2", "t"]
    vs = [T.var(n, a.shape) for n, a in zip(names, arrays)]
    loss = mlp(T.symbolic, *vs)
    wrt = vs[1:5]
    got = S.gradients(loss, wrt, dict(zip(names, arrays)))
    ts = [S.tensor(a, requires_grad=0 < k < 5) for k, a in enumerate(arrays)]
    mlp(S.tape, *ts).backward()
    for g, t in zip(got, ts[1:5]):
        np.testing.assert_allclose(g, t.grad.data, rtol=1e-12, atol=1e-14)
    assert S.gradcheck(lambda *p: mlp(S.tape, ts[0], *p, ts[5]), [t.data for t in ts[1:5]])


def test_evaluate_matches_the_reference_interpreter(rng):
    arrays = _data(rng)
    names = ["x", "w1", "b1", "w2", "b2", "t"]
    vs = [T.var(n, a.shape) for n, a in zip(names, arrays)]
    loss = mlp(T.symbolic, *vs)
    feed = dict(zip(vs, arrays))
    np.testing.assert_allclose(S.evaluate(loss, feed), common.evaluate(loss, feed))
    a, b = S.evaluate([loss, vs[1] * 2], feed)
    np.testing.assert_allclose(b, arrays[1] * 2)


def test_gradients_options():
    x = T.var("x", (3,))
    y = T.var("y", (None,))
    out = T.sin(x) * 2.0
    xv = np.array([0.1, 0.2, 0.3])
    # non-scalar output needs grad_outputs
    with pytest.raises(GradError, match="grad_outputs"):
        S.gradients(out, x, {"x": xv})
    g = S.gradients(out, x, {"x": xv}, grad_outputs=np.array([1.0, 2.0, 3.0]))
    np.testing.assert_allclose(g, 2 * np.cos(xv) * [1, 2, 3])
    # several outputs, several inputs; one input unused gets zeros
    s = T.sum(out)
    gx, gy = S.gradients([s, T.sum(y * y)], [x, y], {x: xv, y: np.array([1.0, 4.0])})
    np.testing.assert_allclose(gx, 2 * np.cos(xv))
    np.testing.assert_allclose(gy, [2.0, 8.0])
    with pytest.raises(GradError, match="disconnected"):  # as symsym.grad: raise by default
        S.gradients(s, [x, y], {x: xv, "y": np.ones(2)})
    gx, gz = S.gradients(s, [x, y], {x: xv, "y": np.ones(2)}, disconnected="zero")
    np.testing.assert_array_equal(gz, np.zeros(2))
    # gradient with respect to an intermediate node
    mid = T.sin(x)
    (gm,) = S.gradients(T.sum(mid * mid), [mid], {x: xv})
    np.testing.assert_allclose(gm, 2 * np.sin(xv))
    # returned arrays are the caller's own (sum's gradient is a broadcast view inside)
    g = S.gradients(T.sum(x), x, {x: xv})
    g[0] = 5.0


def test_gradients_feed_and_type_errors():
    x = T.var("x", (3,))
    i = T.var("i", (3,), dtype="int64")
    s = T.sum(T.sin(x))
    with pytest.raises(FeedError):
        S.gradients(s, x, {})
    with pytest.raises(FeedError):
        S.gradients(s, x, {"x": np.ones(4)})
    with pytest.raises(GradError, match="floating"):
        S.gradients(T.sum(x * T.cast(i, "float64")), i, {"x": np.ones(3), "i": np.ones(3, np.int64)})


def test_gradients_on_a_deep_ir_chain():
    x = T.var("x", ())
    y = x
    for _ in range(20000):
        y = T.sin(y)
    g = S.gradients(y, x, {"x": np.array(0.5)})
    v, d = 0.5, 1.0
    for _ in range(20000):
        d *= np.cos(v)
        v = np.sin(v)
    np.testing.assert_allclose(g, d, rtol=1e-9)
