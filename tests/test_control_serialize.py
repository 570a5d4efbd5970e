"""Loops in graph files: round trips, and hostile bodies refused at load, naming the node and the param.

A body is nested in its loop node's params as a node list of its own; it is
rebuilt node by node through each op's type rule, exactly as the top level is,
so everything tests/test_security_load.py refuses at the top level is refused
inside a body too, and the loop's own type rule then checks the body's
signature.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import symsym
from common import SerializationError, evaluate, load, pprint, save, toposort
from common import api as T
from common.serialize import MAX_DEPTH, from_json, to_json


def _rnn():
    x, w = T.var("x", (4, 2)), T.var("w", (2,))
    h, ys = T.scan(lambda h, xi: (T.tanh(h * w + xi), T.sum(h)), T.const(np.zeros(2)), x)
    return T.sum(ys) + T.sum(h * h), x, w


FEED = {"x": np.arange(8.0).reshape(4, 2) / 10, "w": np.array([0.3, -0.7])}


def _roundtrip(outputs, tmp_path):
    save(outputs, tmp_path / "g.json")
    return load(tmp_path / "g.json")


def test_scan_and_its_gradient_round_trip(tmp_path):
    cost, x, w = _rnn()
    g = symsym.grad(cost, [x, w])
    loaded = _roundtrip([cost, *g], tmp_path)
    for a, b in zip(evaluate(loaded, FEED), evaluate([cost, *g], {x: FEED["x"], w: FEED["w"]})):
        np.testing.assert_array_equal(a, b)
    # the loaded graph is differentiable again (its bodies are real bodies)
    lx = next(n for n in __import__("common").inputs_of(loaded[0]) if n.name == "x")
    np.testing.assert_allclose(evaluate(symsym.grad(loaded[0], lx), FEED), evaluate(g[0], {x: FEED["x"],
                                                                                            w: FEED["w"]}))


def test_while_cond_and_nested_loops_round_trip(tmp_path):
    a = T.var("a", ())
    r = T.while_loop(lambda s: T.abs(s * s - a) > 1e-12, lambda s: (s + a / s) / 2, a + 1.0, max_iter=50)
    b = T.cond(a > 1, lambda u: T.scan(lambda c, _: (c * u, None), 1.0, None, length=3)[0], T.sin, a)
    loaded = _roundtrip([r, b], tmp_path)
    for v in (0.5, 2.0):
        np.testing.assert_allclose(evaluate(loaded, {"a": np.array(v)}), evaluate([r, b], {a: np.array(v)}))
    assert "body" in pprint(loaded)


# ------------------------------------------------------------------ hostile bodies

def _data():
    cost, _, _ = _rnn()
    data = to_json(cost)
    index = next(k for k, rec in enumerate(data["nodes"]) if rec.get("op") == "scan")
    return data, index


def _body(data, index):
    return data["nodes"][index]["params"]["body"]["body"]


def _refused(data, *patterns):
    with pytest.raises(SerializationError) as e:
        from_json(json.loads(json.dumps(data)))
    for p in patterns:
        assert re.search(p, str(e.value)), str(e.value)
    return e.value


def _inner(body, op):
    return next(k for k, rec in enumerate(body["nodes"]) if rec.get("op") == op)


def test_unknown_op_inside_a_body(tmp_path):
    data, index = _data()
    body = _body(data, index)
    body["nodes"][_inner(body, "tanh")]["op"] = "__import__('os').system"
    _refused(data, rf"node {index}\b", r"param 'body'", r"unknown op")


def test_python_in_a_param_inside_a_body_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    data, index = _data()
    body = _body(data, index)
    k = _inner(body, "sum")
    body["nodes"][k]["params"]["axis"] = f"__import__('pathlib').Path({str(marker)!r}).touch() or 0"
    _refused(data, rf"node {index}\b", r"param 'body'", rf"node {k}\b", r"axis")
    assert not marker.exists()


def test_body_reaching_a_variable_that_is_not_an_input():
    data, index = _data()
    body = _body(data, index)
    body["inputs"] = body["inputs"][1:]  # the carry's variable is still used, no longer an input
    _refused(data, rf"node {index}\b", r"param 'body'", r"not a valid body", r"not one of its inputs")


def test_body_input_that_is_not_a_variable():
    data, index = _data()
    body = _body(data, index)
    body["inputs"][0] = _inner(body, "tanh")
    _refused(data, rf"node {index}\b", r"param 'body'", r"must be variables")


def test_body_fed_a_carry_of_another_type():
    data, index = _data()
    init = data["nodes"][index]["inputs"][0]
    data["nodes"][init]["dtype"] = "float32"  # the body's carry variable stays float64
    _refused(data, rf"node {index}\b", r"scan", r"declared \(2,\):float64, but gets \(2,\):float32")


def test_body_with_the_wrong_number_of_inputs():
    data, index = _data()
    data["nodes"][index]["params"]["nx"] = 0
    _refused(data, rf"node {index}\b", r"scan")


def test_body_indices_out_of_range_and_extra_keys():
    data, index = _data()
    _body(data, index)["outputs"].append(10 ** 6)
    _refused(data, rf"node {index}\b", r"must refer to its nodes")
    data, index = _data()
    _body(data, index)["code"] = "print('hi')"
    _refused(data, rf"node {index}\b", r"exactly 'nodes', 'inputs' and 'outputs'")


def test_a_string_where_a_body_goes():
    data, index = _data()
    data["nodes"][index]["params"]["body"] = "lambda c, x: (c, x)"
    _refused(data, rf"node {index}\b", r"param 'body' must be a body")


def _nested(x, depth: int):
    """x * 2 inside a scan inside a scan ... ``depth`` deep (each scan runs once)."""
    if depth == 0:
        return x * 2.0
    return T.scan(lambda c, _: (_nested(c, depth - 1), None), x, None, length=1)[0]


def test_bodies_nested_too_deep():
    x = T.var("x", ())
    np.testing.assert_allclose(evaluate(from_json(to_json(_nested(x, 4))), {"x": np.array(1.5)}), 3.0)
    _refused(to_json(_nested(x, MAX_DEPTH + 1)), r"node \d+: param 'body'", rf"more than {MAX_DEPTH} deep")


def test_item_out_of_range_and_item_of_an_array():
    data, _ = _data()
    k = next(k for k, rec in enumerate(data["nodes"]) if rec.get("op") == "item")
    data["nodes"][k]["params"]["index"] = 7
    _refused(data, rf"node {k}\b", r"index")
    data, _ = _data()
    x = next(k for k, rec in enumerate(data["nodes"]) if rec.get("kind") == "var")
    data["nodes"][k]["inputs"] = [x]
    _refused(data, rf"node {k}\b", r"item reads an output of a loop or branch")


def test_declared_tuple_dtype_must_match():
    data, index = _data()
    data["nodes"][index]["dtype"] = "float64"
    _refused(data, rf"node {index}\b", r"declared dtype")


@pytest.mark.parametrize("param, value, pattern", [
    ("max_iter", -1, r"max_iter"), ("max_iter", 2 ** 70, r"max_iter"), ("ncarry", 5, r"ncarry"),
    ("save", 1, r"save"), ("cond_body", {"tuple": [1]}, r"cond_body"),
])
def test_hostile_while_params(param, value, pattern):
    a = T.var("a", ())
    r = T.while_loop(lambda s: s < 10.0, lambda s: s * 2.0, a)
    data = to_json(r)
    index = next(k for k, rec in enumerate(data["nodes"]) if rec.get("op") == "while_loop")
    data["nodes"][index]["params"][param] = value
    _refused(data, rf"node {index}\b", pattern)


def test_cond_branches_that_disagree_in_a_file():
    a = T.var("a", (2,))
    b = T.cond(T.sum(a) > 0, T.sin, T.cos, a)
    data = to_json(b)
    index = next(k for k, rec in enumerate(data["nodes"]) if rec.get("op") == "cond")
    fb = data["nodes"][index]["params"]["false_body"]["body"]
    k = _inner(fb, "cos")
    fb["nodes"][k]["op"] = "sum"
    fb["nodes"][k]["params"] = {"axis": {"tuple": [0]}, "keepdims": False}
    fb["nodes"][k]["shape"] = []
    _refused(data, rf"node {index}\b", r"true branch is \(2,\):float64, of the false branch \(\):float64")


def test_a_body_shared_by_two_nodes_is_written_once_and_shared_again(tmp_path):
    cost, x, w = _rnn()
    g = symsym.grad(cost, w)
    loops = [n for n in toposort([cost, g]) if n.op is not None and n.op.name == "scan"]
    assert len({id(n.params["body"]) for n in loops}) == 2  # the forward body (twice: the loop and its saving copy)
    data = to_json([cost, g])
    assert json.dumps(data).count('"body_ref"') == 1
    loaded = from_json(json.loads(json.dumps(data)))
    again = [n for n in toposort(loaded) if n.op is not None and n.op.name == "scan"]
    assert len({id(n.params["body"]) for n in again}) == 2


@pytest.mark.parametrize("ref", [1, -1, 10 ** 30, "0", None])
def test_a_body_ref_must_name_a_body_read_before_it(ref):
    data, index = _data()
    data["nodes"][index]["params"]["body"] = {"body_ref": ref}
    _refused(data, rf"node {index}\b", r"param 'body'")
