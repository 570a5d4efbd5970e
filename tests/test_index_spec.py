"""IndexSpec, the one reader of getitem/scatter_add's index param: keys, shapes and text against numpy.

The graph-level round trips (builders, evaluation, compiled code, gradients)
are in tests/test_common_ops.py; here the view's own operations.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symsym
from common import api, pprint
from common.errors import ShapeError
from common.ops.index import FULL, IndexSpec, behind, parse_key, span, take, view
from common.serialize import from_json, to_json


@st.composite
def _keys(draw):
    """A shape and a numpy key on it: basic indices, sometimes with integer arrays in place of some ints."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5))
    key = draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    key = key if isinstance(key, tuple) else (key,)
    out, length = [], draw(st.integers(1, 3))  # one length: the arrays broadcast together
    for k in key:
        if isinstance(k, int) and draw(st.booleans()):
            out.append(np.full(length, k))
        else:
            out.append(k)
    return shape, tuple(out)


def _names(arrays):
    return [f"a{k}" for k in range(len(arrays))]


@settings(max_examples=100, deadline=None)
@given(_keys())
def test_key_shape_and_every_text_select_what_numpy_selects(case):
    shape, key = case
    x = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    want = x[key]
    spec, arrays = parse_key(key)
    v = view(spec)
    np.testing.assert_array_equal(x[v.key(arrays)], want)
    assert v.shape(shape, [a.shape for a in arrays]) == want.shape
    env = {"x": x, **dict(zip(_names(arrays), arrays))}
    # the source generated code writes: inside brackets, and as a key value for the scatters
    np.testing.assert_array_equal(eval(f"x[{v.subscript(_names(arrays))}]", {"__builtins__": {}}, env), want)
    key_value = eval(v.key_source(_names(arrays)), {"__builtins__": {"slice": slice}}, env)
    np.testing.assert_array_equal(x[key_value], want)
    # the text printing shows
    if spec:
        np.testing.assert_array_equal(eval(f"x[{', '.join(v.parts(_names(arrays)))}]", {"__builtins__": {}}, env),
                                      want)


@settings(max_examples=40, deadline=None)
@given(_keys())
def test_a_spec_survives_json_unchanged(case):
    shape, key = case
    node = api.var("x", shape)[key]
    spec = node.params["index"]
    loaded = from_json(json.loads(json.dumps(to_json(node))))
    assert loaded.params["index"] == spec
    assert view(loaded.params["index"]).entries == view(spec).entries


def test_an_ellipsis_of_no_axes_still_parts_advanced_indices():
    """numpy puts the broadcast shape first when an ellipsis stands between advanced indices, even an empty one."""
    x = np.zeros((2, 1, 1, 1))
    for key in [(slice(None), 0, Ellipsis, np.array([0]), slice(None)), (slice(None), 0, np.array([0]), slice(None))]:
        spec, arrays = parse_key(key)
        assert view(spec).shape(x.shape, [a.shape for a in arrays]) == x[key].shape


def test_unknown_dims_stay_unknown():
    v = view(parse_key((slice(1, None), 0, None))[0])
    assert v.shape((None, 4, 3), []) == (None, 1, 3)
    assert v.shape((5, None), []) == (4, 1)


def test_out_of_range_and_too_many_indices_are_shape_errors():
    with pytest.raises(ShapeError, match="out of bounds"):
        view((("int", 3),)).shape((3,), [])
    with pytest.raises(ShapeError, match="too many indices"):
        view((("int", 0), ("int", 0))).shape((3,), [])


def test_views_are_shared_and_canonical():
    spec = (("int", np.int64(2)), ("slice", np.int32(1), None, None))
    v = view(spec)
    assert view(spec) is v
    assert v.entries == (("int", 2), ("slice", 1, None, None))
    assert all(type(i) is int for e in v.entries for i in e[1:] if i is not None)
    assert v.subscript([]) == "2, 1:"  # numpy ints are written as plain ints, never np.int64(2)
    assert v.key_source([]) == "(2, slice(1, None, None), )"
    assert "IndexSpec" in repr(v)


@pytest.mark.parametrize("spec", [
    [("int", 0)],                       # a list, not a tuple
    (("int", True),),                   # a bool is not an int
    (("int", 1.5),),
    (("int", "__import__('os')"),),
    (("array", -1),),
    (("slice", 1, 2),),                 # wrong arity
    (("slice", 1, 2, 3, 4),),
    (("new", 1),),
    (("what",),),
    (("ellipsis",), ("ellipsis",)),
    ((0,),),
])
def test_malformed_specs_are_refused(spec):
    with pytest.raises((ValueError, TypeError)):
        IndexSpec(spec)


def test_empty_spec_selects_everything():
    v = view(())
    x = np.arange(3.0)
    assert v.subscript([]) == "()"
    np.testing.assert_array_equal(eval(f"x[{v.subscript([])}]", {"__builtins__": {}}, {"x": x}), x)
    assert v.shape((3,), []) == (3,)
    x_node = api.var("x", (3,))  # generated code once wrote x[] here: a SyntaxError
    np.testing.assert_array_equal(symsym.function([x_node], [api.sin(x_node[()])])(x)[0], np.sin(x))


def test_single_int_and_unit_range():
    assert view(take(3)).single_int == 3
    assert view(take(3, axis=1)).single_int is None
    assert view(span(2, 5)).single_int is None
    assert view(span(2, 5)).unit_range(10) == (2, 5)
    assert view(span(-3, None)).unit_range(10) == (7, 10)
    assert view((("slice", None, None, 1),)).unit_range(4) == (0, 4)
    assert view((("slice", None, None, 2),)).unit_range(4) is None
    assert view(take(0)).unit_range(4) is None
    assert view((FULL, FULL)).unit_range(4) is None


def test_take_span_and_behind_are_numpys_indexing():
    x = np.arange(60.0).reshape(3, 4, 5)
    np.testing.assert_array_equal(x[view(take(2, axis=1)).key()], x[:, 2])
    np.testing.assert_array_equal(x[view(span(1, 3, axis=2)).key()], x[:, :, 1:3])
    spec, arrays = parse_key((np.array([0, 2]), slice(None, None, -1)))
    batched = np.stack([x, x + 100])  # a batch axis in front
    want = np.stack([x[[0, 2], ::-1], (x + 100)[[0, 2], ::-1]])
    np.testing.assert_array_equal(batched[view(behind(spec)).key(arrays)], want)


def test_parse_key_refuses_what_the_ir_cannot_index_with():
    with pytest.raises(ShapeError, match="boolean mask of shape \\(2,\\) does not match axes 1 to 1"):
        parse_key((0, np.array([True, False])), (4, 3))
    with pytest.raises(ShapeError, match="boolean mask of shape \\(2, 3\\) does not match axes 1 to 2"):
        parse_key((Ellipsis, np.ones((2, 3), bool)), (4, 3, 2))
    with pytest.raises(ShapeError, match="0-d boolean"):
        parse_key(np.array(True))
    with pytest.raises(ShapeError, match="boolean"):
        parse_key(True)
    with pytest.raises(ShapeError, match="integers"):
        parse_key(np.array([0.5]))
    with pytest.raises(ShapeError, match="single ellipsis"):
        parse_key((Ellipsis, Ellipsis))
    with pytest.raises(ShapeError, match="slice bounds"):
        parse_key(slice(0.5, None))
    with pytest.raises(ShapeError, match="unsupported"):
        parse_key("a")
    spec, arrays = parse_key(([],))
    assert spec == (("array", 0),) and arrays[0].dtype == np.int64 and arrays[0].shape == (0,)


def test_printing_shows_the_key_as_numpy_writes_it():
    x = api.var("x", (4, 5))
    assert "x[1:, ::2]" in pprint(x[1:, ::2])
    assert "x[None, 0, ...]" in pprint(x[None, 0, ...])
    assert "x[-1]" in pprint(x[-1])
