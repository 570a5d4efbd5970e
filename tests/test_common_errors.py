"""Each error class: raised for the user's mistake, naming op, shapes/dtypes and line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from common import (
    DTypeError,
    FeedError,
    GradError,
    GraphError,
    SerializationError,
    ShapeError,
    TwogradError,
    api,
    evaluate,
    load,
)
from common.ops.table import NO_GRAD


def here(offset: int = 0) -> str:
    """``this_file:line`` of the caller (plus ``offset`` lines), as errors must show it."""
    f = sys._getframe(1)
    return f"{f.f_code.co_filename}:{f.f_lineno + offset}"


def test_every_error_class_derives_from_the_base():
    for cls in (ShapeError, DTypeError, FeedError, SerializationError, GradError, GraphError):
        assert issubclass(cls, TwogradError)


def test_shape_error_names_op_shapes_and_line():
    x, y = api.var("x", (3, 4)), api.var("y", (5, 3))
    with pytest.raises(ShapeError) as e:
        site = here(1)
        x @ y
    msg = str(e.value)
    assert "matmul" in msg and "(3, 4)" in msg and "(5, 3)" in msg and site in msg


def test_bind_errors_name_the_op_and_line():
    x = api.var("x", (3, 4))
    with pytest.raises(ShapeError) as e:
        site = here(1)
        api.sum(x, axis=5)
    assert "sum" in str(e.value) and "(3, 4)" in str(e.value) and site in str(e.value)


def test_dtype_error_names_op_and_dtypes():
    c = api.var("c", (3,), "float64")
    with pytest.raises(DTypeError) as e:
        site = here(1)
        api.where(c, c, c)
    assert "where" in str(e.value) and "float64" in str(e.value) and site in str(e.value)


def test_feed_errors_missing_extra_shape_dtype():
    x = api.var("x", (2, None)); site = here()  # noqa: E702
    out = api.sin(x)
    with pytest.raises(FeedError, match="no value fed for 'x'") as e:
        evaluate(out, {})
    assert site in str(e.value)
    with pytest.raises(FeedError, match="not an input"):
        evaluate(out, {"x": np.ones((2, 1)), "z": 1.0})
    with pytest.raises(FeedError, match=r"shape \(3, 1\), expected \(2, \?\)"):
        evaluate(out, {"x": np.ones((3, 1))})
    with pytest.raises(FeedError, match="dtype float32, expected float64"):
        evaluate(out, {"x": np.ones((2, 1), np.float32)})


def test_runtime_shape_error_points_at_the_node():
    x, y = api.var("x", (None,)), api.var("y", (None,))
    out = x + y; site = here()  # noqa: E702
    with pytest.raises(ShapeError) as e:
        evaluate(out, {"x": np.ones(2), "y": np.ones(3)})
    assert "add" in str(e.value) and site in str(e.value) and "(2,)" in str(e.value)


def test_serialization_error_for_a_corrupt_file(tmp_path):
    p = tmp_path / "g.json"
    p.write_text("{not json")
    with pytest.raises(SerializationError, match="not valid JSON"):
        load(p)


def test_graph_error_on_mutation():
    with pytest.raises(GraphError, match="immutable"):
        api.var("x", ()).op = None


def test_grad_error_for_repeated_einsum_index():
    from common import numeric
    from common.ops import OPS
    a = np.ones((3, 3))
    with pytest.raises(GradError, match="repeated index"):
        OPS["einsum"].vjp(numeric, 0, np.ones(3), None, [a], {"spec": "ii->i"})
    assert OPS["lt"].vjp(numeric, 0, a, None, [a, a], {}) is NO_GRAD


def test_errors_survive_json_of_a_graph_with_bad_shapes(tmp_path):
    p = tmp_path / "g.json"
    p.write_text(json.dumps({"format": "twograd-graph", "version": 1, "single": True, "outputs": [2], "nodes": [
        {"kind": "var", "name": "a", "shape": [2], "dtype": "float64"},
        {"kind": "var", "name": "b", "shape": [3], "dtype": "float64"},
        {"kind": "apply", "op": "add", "inputs": [0, 1], "params": {}}]}))
    with pytest.raises(SerializationError, match=r"node 2 \(add\) is inconsistent.*broadcast"):
        load(p)
