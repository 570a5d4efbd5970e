"""scan, while_loop and cond in the IR: values against plain Python loops, laziness, type rules, tracing."""

from __future__ import annotations

import numpy as np
import pytest

import symnum
import symsym
from common import DTypeError, ShapeError, TwogradError, debugprint, evaluate, pprint, to_dot
from common import api as T
from common.body import Body, is_tuple
from common.control.item_op import output_types


def test_scan_values_match_a_python_loop(rng):
    xs, w0, c0 = rng.standard_normal((6, 3)), rng.standard_normal(3), rng.standard_normal(3)
    x, w, c = T.var("x", (6, 3)), T.var("w", (3,)), T.var("c", (3,))
    final, ys = T.scan(lambda h, xi: (T.tanh(h * w + xi), T.sum(h)), c, x)
    got_final, got_ys = evaluate([final, ys], {x: xs, w: w0, c: c0})
    h, want = c0, []
    for xi in xs:
        want.append(h.sum())
        h = np.tanh(h * w0 + xi)
    np.testing.assert_allclose(got_final, h, rtol=1e-14)
    np.testing.assert_allclose(got_ys, want, rtol=1e-14)
    assert ys.shape == (6,) and final.shape == (3,)


def test_scan_reverse_keeps_ys_in_index_order(rng):
    xs = rng.standard_normal(5)
    x = T.var("x", (5,))
    final, ys = T.scan(lambda c, xi: (c * 0.5 + xi, c), 0.0, x, reverse=True)
    got_final, got_ys = evaluate([final, ys], {x: xs})
    c, want = 0.0, [None] * 5
    for t in range(4, -1, -1):
        want[t] = c
        c = c * 0.5 + xs[t]
    np.testing.assert_allclose(got_final, c)
    np.testing.assert_allclose(got_ys, want)


def test_scan_with_nested_carries_and_length_only():
    a = T.var("a", ())
    (s, (p, n)), ys = T.scan(lambda c, _: ((c[0] + c[1][1], (c[1][0] * a, c[1][1] + 1.0)), None),
                             (T.const(0.0), (T.const(1.0), T.const(0.0))), None, length=4)
    assert ys is None
    got = evaluate([s, p, n], {a: np.array(2.0)})
    np.testing.assert_allclose(got, [0 + 1 + 2 + 3, 16.0, 4.0])


def test_closed_over_nodes_become_inputs():
    w = T.var("w", ())
    hidden = T.exp(w)  # made before tracing: an input of the loop, computed once outside
    final, _ = T.scan(lambda c, xi: (c + hidden * xi, None), 0.0, T.var("x", (3,)))
    loop = final.inputs[0]
    assert any(i is hidden for i in loop.inputs)
    body = loop.params["body"]
    assert all(v.is_var for v in body.inputs) and len(body.inputs) == 3


def test_while_loop_newton_sqrt():
    a = T.var("a", ())
    r = T.while_loop(lambda s: T.abs(s * s - a) > 1e-12, lambda s: (s + a / s) / 2, a)
    for v in (2.0, 9.0, 0.25):
        np.testing.assert_allclose(evaluate(r, {a: np.array(v)}), np.sqrt(v), rtol=1e-12)


def test_while_loop_max_iter_bounds_the_trip_count():
    r = T.while_loop(lambda c: c < 100.0, lambda c: c + 1.0, T.var("c", ()), max_iter=3)
    assert evaluate(r, {"c": np.array(0.0)}) == 3.0


def test_cond_runs_only_the_taken_branch():
    x = T.var("x", ())
    y = T.cond(x > 0, T.sqrt, T.square, x)
    with np.errstate(invalid="raise"):  # sqrt(-1) would raise here if the untaken branch ran
        assert evaluate(y, {x: np.array(-1.0)}) == 1.0
        assert evaluate(y, {x: np.array(4.0)}) == 2.0


def test_cond_with_several_outputs_and_closure():
    x, z = T.var("x", (2,)), T.var("z", (2,))
    a, b = T.cond(T.sum(x) > 0, lambda u: (u * z, T.sum(u)), lambda u: (u - z, 0.0), x)
    got = evaluate([a, b], {x: np.array([1.0, 2.0]), z: np.array([3.0, 4.0])})
    np.testing.assert_allclose(got[0], [3.0, 8.0])
    assert got[1] == 3.0


def test_nested_scan_in_scan():
    x = T.var("x", (3, 4))
    final, _ = T.scan(lambda c, row: (c + T.scan(lambda d, v: (d * v, None), 1.0, row)[0], None), 0.0, x)
    xs = np.arange(1.0, 13.0).reshape(3, 4)
    np.testing.assert_allclose(evaluate(final, {x: xs}), np.prod(xs, axis=1).sum())


def test_loop_nodes_are_tuples_read_by_item():
    final, ys = T.scan(lambda c, xi: (c + xi, c * 2), 0.0, T.var("x", (7,)))
    loop = final.inputs[0]
    assert is_tuple(loop) and final.op.name == "item" and ys.op.name == "item"
    assert output_types(loop) == [((), np.dtype("float64")), ((7,), np.dtype("float64"))]


# ------------------------------------------------------------------ type rules

def test_carry_that_changes_shape_is_refused_at_the_users_line():
    x = T.var("x", (4, 3))
    with pytest.raises(ShapeError, match=r"scan: .*carry 0 goes in as \(3,\):float64 but comes out as "
                                         r"\(\):float64.*test_control_ops.py:\d+") as e:
        T.scan(lambda c, xi: (T.sum(c * xi), None), T.var("c", (3,)), x)
    assert isinstance(e.value, TwogradError)


def test_carry_that_changes_dtype_is_refused():
    with pytest.raises(DTypeError, match=r"scan: .*carry 0 goes in as \(\):float64 but comes out as \(\):float32"):
        T.scan(lambda c, xi: (T.cast(c, "float32"), None), T.var("c", ()), T.var("x", (3,)))


def test_carry_that_changes_structure_is_refused():
    with pytest.raises(ShapeError, match=r"scan: the carry changes structure.*test_control_ops.py:\d+"):
        T.scan(lambda c, xi: ((c[0], c[1], c[0]), None), (T.var("a", ()), T.var("b", ())), T.var("x", (3,)))


def test_branches_that_disagree_are_refused():
    x = T.var("x", (3,))
    with pytest.raises(ShapeError, match=r"cond: .*true branch is \(3,\):float64, of the false branch "
                                         r"\(\):float64.*test_control_ops.py:\d+"):
        T.cond(T.sum(x) > 0, lambda u: u, lambda u: T.sum(u), x)


def test_non_bool_predicate_is_refused():
    x = T.var("x", ())
    with pytest.raises(DTypeError, match=r"cond: the predicate must be a bool scalar"):
        T.cond(x, T.sin, T.cos, x)


def test_while_condition_must_be_a_bool_scalar():
    with pytest.raises(ShapeError, match=r"while_loop: the condition must return one bool scalar"):
        T.while_loop(lambda c: c, lambda c: c + 1.0, T.var("c", ()))


def test_xs_of_different_lengths_are_refused():
    with pytest.raises(ShapeError, match=r"scan: .*leading dims and the length disagree"):
        T.scan(lambda c, xy: (c + xy[0] + xy[1], None), 0.0, (T.var("a", (3,)), T.var("b", (4,))))


def test_body_must_be_closed():
    with pytest.raises(TwogradError, match="not one of its inputs"):
        Body([T.var("a", ())], [T.var("a2", ()) + 1.0])


# ------------------------------------------------------------------ printing

def _loop():
    x, w = T.var("x", (4,)), T.var("w", ())
    c, ys = T.scan(lambda c, xi: (c * w + T.sin(xi), c * c), 0.0, x)
    return T.sum(ys) + c


def test_pprint_prints_each_body_once_indented():
    cost = _loop()
    text = pprint([cost, cost * 2.0])
    assert text.count("body1(") == 1  # the block header, once, although two outputs use the loop
    header = text.splitlines().index("body1(carry0, x, w):")
    assert text.splitlines()[header + 1:] == ["    carry0 * w + sin(x)", "    carry0 * carry0"]
    assert "body=body1" in text and "item(t1, 1)" in text


def test_pprint_indents_nested_bodies_deeper():
    x = T.var("x", (3, 2))
    final, _ = T.scan(lambda c, row: (c + T.scan(lambda d, v: (d * v, None), 1.0, row)[0], None), 0.0, x)
    lines = pprint(final).splitlines()
    headers = [k for k, line in enumerate(lines) if line.lstrip().startswith("body") and line.endswith(":")]
    assert len(headers) == 2
    assert not lines[headers[0]].startswith(" ") and lines[headers[1]].startswith("    body")
    assert lines[headers[1] + 1].startswith("        ")


def test_debugprint_and_dot_show_the_body():
    cost = _loop()
    text = debugprint(cost)
    assert text.count("body1(carry0, x, w):") == 1
    assert "scan{body=body1" in text and "\n     |sin" in text
    dot = to_dot(cost)
    assert dot.count("subgraph cluster_") == 1 and 'label="body1"' in dot and "style=dashed" in dot


def test_symnum_evaluate_runs_loops_on_ir_graphs(rng):
    cost = _loop()
    feed = {"x": rng.standard_normal(4), "w": np.array(0.3)}
    np.testing.assert_allclose(symnum.evaluate(cost, feed), evaluate(cost, feed), rtol=1e-15)


def test_jacobian_through_scan(rng):
    x = T.var("x", (3,))
    _, ys = T.scan(lambda c, xi: (c + xi, T.sin(c * xi)), 0.5, x)
    jac = symsym.jacobian(ys, x)
    xv = rng.standard_normal(3)
    from benchmarks.finite import central_differences

    np.testing.assert_allclose(evaluate(jac, {x: xv}), central_differences(lambda a: evaluate(ys, {x: a}), xv),
                               rtol=1e-6, atol=1e-9)


def test_an_error_inside_a_body_names_the_line_in_the_body():
    W, x = T.var("W", (2, 2)), T.var("x", (4, None))
    _, ys = T.scan(lambda c, xi: (c, T.matmul(W, xi)), 0.0, x)  # the matmul is made on this line
    line = ys.site.lineno
    with pytest.raises(ShapeError, match=rf"matmul: .*test_control_ops.py:{line}\b"):
        evaluate(ys, {W: np.eye(2), x: np.ones((4, 3))})


def test_threads_tracing_at_once_each_get_their_own_bodies():
    """Each thread records only the nodes it makes, so one thread's body never swallows another's."""
    import threading

    errors = []

    def work(scale: float):
        try:
            for _ in range(30):
                x = T.var("x", (3,))
                c, _ = T.scan(lambda c, xi: (c + T.sin(xi) * scale, None), 0.0, x)
                body = c.inputs[0].params["body"]
                assert len(body.inputs) == 2 and c.inputs[0].inputs[1] is x
                np.testing.assert_allclose(evaluate(c, {x: np.ones(3)}), 3 * np.sin(1.0) * scale)
        except Exception as e:  # reported below, in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in (1.0, 2.0, 3.0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
