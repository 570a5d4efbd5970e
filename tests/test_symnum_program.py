"""The cached program behind symnum.gradients/evaluate on an IR graph: values dropped
after their last use, the cache keyed by graph and wrt, errors from the forward worded
by the reference interpreter, and fan-out sums against numpy."""

import tracemalloc

import numpy as np
import pytest
from opcases import CASES

import symnum as S
from common import api as T
from common.errors import ShapeError
from symnum import graph as G

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
    first = G.program([loss], [x])
    assert G.program([loss], [x]) is first
    assert G.program([loss], [y]) is not first
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
    prog = G.program([loss], [x], values=False)
    computed = {prog.nodes[step[5]] for step in prog.forward}
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
