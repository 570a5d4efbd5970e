"""The graph: immutability, sites, traversals (iterative, 10^6 nodes), clone/replace."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from common import (
    GraphError,
    ancestors,
    api,
    clone,
    consumers,
    count_nodes,
    evaluate,
    inputs_of,
    replace,
    toposort,
)


def test_nodes_are_immutable():
    x = api.var("x", (2,))
    with pytest.raises(GraphError, match="immutable"):
        x.name = "y"
    with pytest.raises(GraphError):
        del x.shape


def test_nodes_record_the_users_line():
    x = api.var("x", (2,)); line = sys._getframe().f_lineno  # noqa: E702
    y = api.sin(x) * 2
    assert x.site.filename == __file__ and x.site.lineno == line
    assert y.site.filename == __file__ and y.site.lineno == line + 1
    assert y.inputs[0].site.lineno == line + 1


def test_truth_value_is_refused():
    x = api.var("x", ())
    with pytest.raises(GraphError, match="truth value"):
        bool(x > 0)


def test_toposort_orders_inputs_first_and_visits_shared_nodes_once():
    x = api.var("x", ())
    s = api.sin(x)
    out = s * s + s
    order = toposort(out)
    pos = {id(n): k for k, n in enumerate(order)}
    for n in order:
        for i in n.inputs:
            assert pos[id(i)] < pos[id(n)]
    assert len(order) == len({id(n) for n in order}) == 4
    assert ancestors(out) == order
    assert [v.name for v in inputs_of(out)] == ["x"]
    assert len(consumers(out)[id(s)]) == 3  # s is used twice by mul, once by add


@pytest.mark.slow
def test_million_node_chain_builds_sorts_and_evaluates():
    x = api.var("x", ())
    y = x
    for _ in range(1_000_000):
        y = y + 1.0
    order = toposort(y)
    assert len(order) == 1_000_002  # x, the one shared constant 1.0, and the adds
    assert count_nodes(y, "apply") == 1_000_000
    assert float(evaluate(y, {"x": 0.5})) == pytest.approx(1_000_000.5)


def test_replace_rebuilds_only_what_depends_on_the_replaced_node():
    x, y = api.var("x", (3,)), api.var("y", (3,))
    a = api.exp(x)
    b = api.sin(y)
    out = a + b
    (new,) = replace([out], {x: api.cos(y)})
    assert new is not out
    assert new.inputs[1] is b  # untouched branch shared
    vals = {"y": np.arange(3.0)}
    np.testing.assert_allclose(evaluate(new, vals), np.exp(np.cos(np.arange(3.0))) + np.sin(np.arange(3.0)))


def test_clone_shares_no_application_node():
    x = api.var("x", (3,))
    out = api.tanh(x) * 2
    (copy,) = clone([out])
    originals = {id(n) for n in toposort(out) if n.is_apply}
    assert not originals & {id(n) for n in toposort(copy) if n.is_apply}
    v = np.linspace(-1, 1, 3)
    np.testing.assert_allclose(evaluate(copy, {x: v}), evaluate(out, {x: v}))


def test_unknown_dims_resolve_at_evaluation():
    x = api.var("x", (None, 3))
    w = api.var("w", (3, None))
    out = api.sum(api.tanh(x @ w), axis=0)
    assert out.shape == (None,)
    for n in (1, 4):
        got = evaluate(out, {"x": np.ones((n, 3)), "w": np.ones((3, 2))})
        np.testing.assert_allclose(got, n * np.tanh(3.0) * np.ones(2))
