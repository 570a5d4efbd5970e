"""JSON round trip over every op; corrupt and hostile files are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from opcases import CASES

from common import SerializationError, api, evaluate, load, pprint, save, toposort


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_round_trip_every_op(c, rng, tmp_path):
    xs = c.inputs(rng)
    vs = [api.var(f"x{i}", x.shape, x.dtype) for i, x in enumerate(xs)]
    out = c.fn(api.symbolic, *vs).renamed("out")
    save(out, tmp_path / "g.json")
    back = load(tmp_path / "g.json")
    assert back.name == "out" and back.shape == out.shape and back.dtype == out.dtype
    assert pprint(back) == pprint(out)
    assert [n.op.name for n in toposort(back) if n.op] == [n.op.name for n in toposort(out) if n.op]
    feed = {f"x{i}": x for i, x in enumerate(xs)}
    np.testing.assert_array_equal(evaluate(back, feed), evaluate(out, feed))


def test_round_trip_keeps_unknown_dims_sites_and_several_outputs(tmp_path):
    x = api.var("x", (None, 3), "float32")
    a, b = api.sum(x, axis=1), api.exp(x)
    save([a, b], tmp_path / "g.json")
    a2, b2 = load(tmp_path / "g.json")
    assert b2.shape == (None, 3) and b2.dtype == np.float32
    assert str(a2.site) == str(a.site)
    assert a2.inputs[0] is b2.inputs[0]  # the shared input stays shared


def _graph(**node):
    return {"format": "twograd-graph", "version": 1, "single": True, "outputs": [1], "nodes": [
        {"kind": "var", "name": "x", "shape": [2], "dtype": "float64"},
        {"kind": "apply", "inputs": [0], "params": {}, **node}]}


@pytest.mark.parametrize("data, match", [
    (_graph(op="os.system"), "unknown op 'os.system'"),
    (_graph(op="builtins.eval"), "unknown op"),
    (_graph(op="__import__"), "unknown op"),
    (_graph(op={"py/function": "os.system"}), "unknown op"),
    (_graph(op="sum", params={"axis": {"py/object": "subprocess.Popen"}}), "bad param value"),
    (_graph(op="sin", inputs=[5]), "earlier nodes"),
    ({"format": "pickle"}, "not a twograd graph"),
    ({"format": "twograd-graph", "version": 99}, "version"),
    ([1, 2, 3], "not a twograd graph"),
])
def test_hostile_or_corrupt_files_are_refused(tmp_path, data, match):
    p = tmp_path / "g.json"
    p.write_text(json.dumps(data))
    with pytest.raises(SerializationError, match=match):
        load(p)


def test_dtype_names_are_checked(tmp_path):
    data = _graph(op="sin")
    data["nodes"][0]["dtype"] = "object"
    p = tmp_path / "g.json"
    p.write_text(json.dumps(data))
    with pytest.raises(SerializationError, match="unknown dtype 'object'"):
        load(p)


def test_truncated_file_is_refused(tmp_path):
    x = api.var("x", (2,))
    save(api.sin(x) + 1, tmp_path / "g.json")
    text = (tmp_path / "g.json").read_text()
    (tmp_path / "g.json").write_text(text[: len(text) // 2])
    with pytest.raises(SerializationError):
        load(tmp_path / "g.json")


@pytest.mark.parametrize("make", [lambda p: p / "missing.json", lambda p: p])
def test_unreadable_paths_are_a_serialization_error(tmp_path, make):
    """A missing file or a directory in its place is the user's error, said in one line."""
    path = make(tmp_path)
    with pytest.raises(SerializationError, match="cannot read the graph file"):
        load(path)
