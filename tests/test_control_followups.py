"""Loops: deterministic printouts, numeric residuals for the reverse sweep, one forward loop for value and gradient."""

from __future__ import annotations

import numpy as np

from common import api as T
from common import debugprint, pprint, to_dot

# ------------------------------------------------------------------ printed body names

def _nested_loops():
    """A scan whose body holds another scan, then a cond on the result: three bodies, one nested."""
    x, w = T.var("x", (3, 2)), T.var("w", ())
    final, ys = T.scan(lambda c, row: (c * w + T.scan(lambda d, v: (d * v, None), 1.0, row)[0], T.sin(c)), 0.0, x)
    return T.cond(final > 0.0, lambda a: a * 2.0, lambda a: a - 1.0, T.sum(ys))


def test_the_same_graph_prints_the_same_text_whatever_was_made_before():
    first = _nested_loops()
    texts = pprint(first), debugprint(first), to_dot(first)
    for _ in range(3):  # other loops made in between: bodies with their own (process-wide) labels
        T.scan(lambda c, xi: (c + xi, None), 0.0, T.var("z", (2,)))
    second = _nested_loops()
    assert (pprint(second), debugprint(second), to_dot(second)) == texts


def test_bodies_are_numbered_from_one_in_each_printout():
    text = pprint(_nested_loops())
    headers = sorted(line.strip().split("(")[0] for line in text.splitlines()
                     if line.lstrip().startswith("body") and line.endswith(":"))
    assert headers == ["body1", "body2", "body3", "body4"]  # the two branches, the outer and the inner scan
    assert "body1" in debugprint(_nested_loops()) and 'label="body1"' in to_dot(_nested_loops())


# ------------------------------------------------------------------ numeric residuals

def _count_node_runs(monkeypatch) -> dict:
    """Count how often each body node's op runs, by node: every body's plan calls its ops through here."""
    import common.body as body_module

    runs: dict[int, int] = {}
    make = body_module._make_plan

    def counting(body):
        size, ins, consts, steps, outs, nodes = make(body)

        def counted(impl, key):
            def run(*args, **params):
                runs[key] = runs.get(key, 0) + 1
                return impl(*args, **params)
            return run

        steps = [(counted(impl, id(n)), i, p, o) for (impl, i, p, o), n in zip(steps, nodes)]
        return size, ins, consts, steps, outs, nodes

    monkeypatch.setattr(body_module, "_make_plan", counting)
    return runs


def test_symnum_gradients_runs_each_forward_body_op_once_per_step(monkeypatch, rng):
    import symnum
    from common.body import inner_nodes

    x, w = T.var("x", (7, 3)), T.var("w", (3,))
    h, _ = T.scan(lambda c, xi: (T.tanh(c * w + xi) * T.sin(c), None), T.const(np.full(3, 0.3)), x)
    cost = T.sum(h * h)
    body = h.inputs[0].params["body"]
    forward_ops = [n for n in inner_nodes(body.outputs, {id(v) for v in body.inputs}) if n.op is not None]
    runs = _count_node_runs(monkeypatch)
    xs, ws = rng.standard_normal((7, 3)), rng.standard_normal(3)
    gx, gw = symnum.gradients(cost, [x, w], {x: xs, w: ws})
    assert [runs.get(id(n), 0) for n in forward_ops] == [7] * len(forward_ops)  # once per step, in all
    for k, got in ((0, gw), (1, gx)):  # against central differences in float64
        args = [ws, xs]
        want = np.zeros_like(args[k])
        for i in np.ndindex(args[k].shape):
            plus, minus = [a.copy() for a in args], [a.copy() for a in args]
            plus[k][i] += 1e-6
            minus[k][i] -= 1e-6
            want[i] = (_loop_cost(*plus) - _loop_cost(*minus)) / 2e-6
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


def _loop_cost(ws: np.ndarray, xs: np.ndarray) -> float:
    c = np.full(3, 0.3)
    for xi in xs:
        c = np.tanh(c * ws + xi) * np.sin(c)
    return float(np.sum(c * c))


# ------------------------------------------------------------------ one forward loop for value and gradient

def _loop_ops(outs) -> list[str]:
    from common.graph import toposort

    return sorted(n.op.name for n in toposort(outs) if n.op is not None and n.op.name in ("scan", "while_loop"))


def test_value_and_gradient_of_a_stabilised_scan_body_run_one_forward_loop(rng):
    import symsym

    x, w = T.var("x", (5, 3)), T.var("w", (3,))
    h, ys = T.scan(lambda c, xi: (T.tanh(c * w + xi), T.log(T.sigmoid(c * w))), T.const(np.full(3, 0.2)), x)
    cost = T.sum(ys) + T.sum(h)
    f = symsym.function([x, w], [cost, symsym.grad(cost, w)])
    assert _loop_ops(f.graph) == ["scan", "scan"]  # the forward (value and saving at once) and the reverse
    xs, ws = rng.standard_normal((5, 3)), rng.standard_normal(3)

    def value(wv):
        c, total = np.full(3, 0.2), 0.0
        for xi in xs:
            total += np.sum(-np.logaddexp(0.0, -c * wv))  # log(sigmoid(z)), in numpy's stable form
            c = np.tanh(c * wv + xi)
        return total + np.sum(c)

    got_cost, got_grad = f(xs, ws)
    np.testing.assert_allclose(got_cost, value(ws), rtol=1e-12)
    want = [(value(ws + e) - value(ws - e)) / 2e-6 for e in np.eye(3) * 1e-6]
    np.testing.assert_allclose(got_grad, want, rtol=1e-6)


def test_value_and_gradient_of_a_stabilised_while_body_run_one_forward_loop(rng):
    import symsym

    x, w = T.var("x", (3,)), T.var("w", (3,))
    c, _ = T.while_loop(lambda c: c[1] < 4, lambda c: (T.log(T.sigmoid(c[0] * w)) + x, c[1] + 1),
                        (x, T.const(np.int64(0))))
    cost = T.sum(c * c)
    f = symsym.function([x, w], [cost, symsym.grad(cost, w)])
    assert _loop_ops(f.graph) == ["scan", "while_loop"]  # one while loop: the value is read off its saving copy
    xv, wv = rng.standard_normal(3), rng.standard_normal(3)

    def value(wv):
        c = xv
        for _ in range(4):
            c = -np.logaddexp(0.0, -c * wv) + xv
        return np.sum(c * c)

    got_cost, got_grad = f(xv, wv)
    np.testing.assert_allclose(got_cost, value(wv), rtol=1e-12)
    want = [(value(wv + e) - value(wv - e)) / 2e-6 for e in np.eye(3) * 1e-6]
    np.testing.assert_allclose(got_grad, want, rtol=1e-6)
