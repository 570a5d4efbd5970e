"""symnum on the shared IR (symnum.program): gradients()/evaluate() of a ``common`` graph against
define-by-run on the same function, numpy and the reference interpreter; and the cached program
behind them: values dropped after their last use, the cache keyed by graph and wrt, errors from the
forward worded by the reference interpreter, and fan-out sums against numpy."""

import tracemalloc

import numpy as np
import pytest
from opcases import CASES

import common
import symnum as S
from common import api as T
from common.errors import FeedError, GradError, ShapeError
from symnum import program as P

N = 100_000  # 800 kB per float64 value


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_evaluate_drops_each_value_after_its_last_reader():
    x = T.var("x", (N,))
    y = x
    for _ in range(30):
        y = T.sin(y)
    xv = np.linspace(-1, 1, N)
    np.testing.assert_allclose(S.evaluate(y, {x: xv}), _sin30(xv))
    # 30 values of 800 kB would be 24 MB; one or two are alive at a time
    assert _peak(lambda: S.evaluate(y, {x: xv})) < 4 * N * 8


def _sin30(v):
    for _ in range(30):
        v = np.sin(v)
    return v


def test_values_the_backward_never_reads_are_dropped_in_the_forward():
    x = T.var("x", (N,))
    c = T.var("c", (N,))
    u = c
    for _ in range(30):  # a long branch that does not depend on x: its values are not kept
        u = T.cos(u)
    loss = T.sum(x * u)
    xv, cv = np.linspace(-1, 1, N), np.linspace(0, 2, N)
    want = cv.copy()
    for _ in range(30):
        want = np.cos(want)
    np.testing.assert_allclose(S.gradients(loss, x, {x: xv, c: cv}), want, rtol=1e-14)
    assert _peak(lambda: S.gradients(loss, x, {x: xv, c: cv})) < 6 * N * 8


def test_programs_are_cached_per_graph_and_wrt():
    x, y = T.var("x", (3,)), T.var("y", (3,))
    loss = T.sum(x * y)
    feed = {x: np.ones(3), y: np.arange(3.0)}
    S.gradients(loss, [x], feed)
    first = P.program([loss], [x])
    assert P.program([loss], [x]) is first
    assert P.program([loss], [y]) is not first
    gx, gy = S.gradients(loss, [x, y], feed)
    np.testing.assert_array_equal(gx, np.arange(3.0))
    np.testing.assert_array_equal(gy, np.ones(3))


def test_a_runtime_shape_error_names_the_op():
    x = T.var("x", (None,))
    y = T.var("y", (None,))
    loss = T.sum(T.sin(x) * y)
    with pytest.raises(ShapeError, match="mul"):
        S.gradients(loss, x, {x: np.ones(3), y: np.ones(4)})
    # the same program still runs on a good feed afterwards
    np.testing.assert_allclose(S.gradients(loss, x, {x: np.zeros(4), y: np.full(4, 2.0)}), np.full(4, 2.0))


def test_fan_out_into_one_value_is_summed_exactly():
    x = T.var("x", (4,))
    terms = [T.sin(x) * float(k) for k in range(1, 8)]
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    loss = T.sum(total * x)  # x reaches the loss 8 ways
    xv = np.array([0.1, -0.4, 0.9, 2.0])
    want = 28 * (np.cos(xv) * xv + np.sin(xv))
    np.testing.assert_allclose(S.gradients(loss, x, {x: xv}), want, rtol=1e-13)
    # a name-keyed feed takes the checked path to the same numbers
    np.testing.assert_allclose(S.gradients(loss, x, {"x": xv}), want, rtol=1e-13)


@pytest.mark.parametrize("case", [c for c in CASES if c.wrt], ids=[c.id for c in CASES if c.wrt])
def test_every_op_case_on_the_ir_equals_define_by_run(case):
    """The program (with values the rules never read shrunk to their shapes) against the tape."""
    rng = np.random.default_rng(17)
    arrays = case.inputs(rng)
    nodes = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    out = case.fn(T.symbolic, *nodes)
    weights = rng.standard_normal(np.shape(case.ref(*arrays)))
    loss = T.sum(T.sin(out) * weights)  # sin: the output's value is read, whatever the op's rules read
    got = S.gradients(loss, [nodes[k] for k in case.wrt], dict(zip(nodes, arrays)))
    ts = [S.tensor(a, requires_grad=k in case.wrt) for k, a in enumerate(arrays)]
    S.sum(S.sin(case.fn(S.tape, *ts)) * weights).backward()
    for g, k in zip(got, case.wrt):
        np.testing.assert_allclose(g, ts[k].grad.data, rtol=1e-12, atol=1e-14)


def test_two_answers_never_share_memory():
    x = T.var("x", (3,))
    mid = x + 1.0
    loss = T.sum(mid * 2.0)
    gm, gx = S.gradients(loss, [mid, x], {x: np.zeros(3)})  # add passes mid's cotangent on unchanged
    np.testing.assert_array_equal(gm, np.full(3, 2.0))
    gm[0] = 7.0
    np.testing.assert_array_equal(gx, np.full(3, 2.0))


def test_gradients_compute_only_the_values_their_rules_read():
    x = T.var("x", (4,))
    e = T.exp(x)  # exp's rule reads its output
    loss = T.sum(T.log(T.sum(e) * 2.0))  # no rule reads log's or the outer sum's value
    xv = np.array([0.3, -1.0, 2.0, 0.5])
    np.testing.assert_allclose(S.gradients(loss, x, {x: xv}), np.exp(xv) / np.exp(xv).sum(), rtol=1e-14)
    prog = P.program([loss], [x], values=False)
    computed = {prog.nodes[step.out] for step in prog.forward}
    assert e in computed and loss not in computed and loss.inputs[0] not in computed
    assert S.evaluate(loss, {x: xv}) == pytest.approx(np.log(2 * np.exp(xv).sum()), rel=1e-14)


def test_an_index_out_of_range_is_reported_even_where_its_value_is_never_read():
    x, i = T.var("x", (5,)), T.var("i", (2,), "int64")
    loss = T.sum(x[i])  # sum's rule reads no value: only the index's range can fail
    with pytest.raises(ShapeError, match="getitem"):
        S.gradients(loss, x, {x: np.ones(5), i: np.array([0, 7])})
    np.testing.assert_array_equal(S.gradients(loss, x, {x: np.ones(5), i: np.array([0, 3])}),
                                  [1.0, 0.0, 0.0, 1.0, 0.0])


@pytest.mark.parametrize("case", [c for c in CASES if c.wrt], ids=[c.id for c in CASES if c.wrt])
def test_every_op_case_with_its_value_unread_equals_define_by_run(case):
    """Each op's own rules alone decide whether its value is computed (a product with a constant
    reads only the constant); the gradient is the same either way."""
    rng = np.random.default_rng(23)
    arrays = case.inputs(rng)
    nodes = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    weights = rng.standard_normal(np.shape(case.ref(*arrays)))
    loss = T.sum(case.fn(T.symbolic, *nodes) * weights)
    got = S.gradients(loss, [nodes[k] for k in case.wrt], dict(zip(nodes, arrays)))
    ts = [S.tensor(a, requires_grad=k in case.wrt) for k, a in enumerate(arrays)]
    S.sum(case.fn(S.tape, *ts) * weights).backward()
    for g, k in zip(got, case.wrt):
        np.testing.assert_allclose(g, ts[k].grad.data, rtol=1e-12, atol=1e-14)


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
    np.testing.assert_array_equal(g, np.ones(3))
    assert g.flags.writeable
    g[0] = 5.0  # a read-only broadcast view would raise here
    np.testing.assert_array_equal(g, [5.0, 1.0, 1.0])
    np.testing.assert_array_equal(S.gradients(T.sum(x), x, {x: xv}), np.ones(3))  # the next call is untouched


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
