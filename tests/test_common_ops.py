"""Every op of the table: numpy impl against numpy, type rule against evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from opcases import BODIED, CASES

import symsym
from common import OPS, Node, api, evaluate, numeric
from common.ops.index import parse_key

IDS = [c.id for c in CASES]


def test_every_op_has_a_case():
    covered = {c.op for c in CASES}
    missing = sorted(set(OPS) - covered - BODIED)
    assert not missing, f"ops without a test case in tests/opcases.py: {missing}"


def test_every_op_is_documented():
    undocumented = [name for name, op in OPS.items() if len(op.doc) < 10]
    assert not undocumented


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_impl_matches_numpy(c, rng):
    xs = c.inputs(rng)
    got = c.fn(numeric, *xs)
    want = c.ref(*xs)
    assert np.shape(got) == np.shape(want)
    assert np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


DATA_SHAPED = frozenset({"argwhere", "getitem"})
"""Ops whose result's length can depend on the input's values (a computed mask's count)."""


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_graph_evaluates_like_numpy(c, rng):
    """Building the case as a graph infers the shape and dtype numpy gives (a dim that depends on the data,
    as a computed mask's count, unknown)."""
    xs = c.inputs(rng)
    vs = [api.var(f"x{i}", x.shape, x.dtype) for i, x in enumerate(xs)]
    out = c.fn(api.symbolic, *vs)
    want = np.asarray(c.ref(*xs))
    assert len(out.shape) == want.ndim
    assert all(d == w for d, w in zip(out.shape, want.shape) if d is not None)
    assert None not in out.shape or c.op in DATA_SHAPED
    assert out.dtype == want.dtype
    np.testing.assert_allclose(evaluate(out, dict(zip(vs, xs))), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("c", CASES, ids=IDS)
def test_unknown_dims_infer_consistently(c, rng):
    """With every dim unknown, the inferred shape agrees wherever it is known."""
    xs = c.inputs(rng)
    vs = [api.var(f"x{i}", (None,) * x.ndim, x.dtype) for i, x in enumerate(xs)]
    try:
        out = c.fn(api.symbolic, *vs)
    except Exception as e:  # only ops that need a known dim may refuse, and clearly
        assert "unknown" in str(e) or "squeeze" in str(e), e
        return
    want = np.asarray(c.ref(*xs))
    assert len(out.shape) == want.ndim
    assert all(d is None or d == w for d, w in zip(out.shape, want.shape))
    np.testing.assert_allclose(evaluate(out, dict(zip(vs, xs))), want, rtol=1e-12, atol=1e-12)


# --- random shapes ---------------------------------------------------------------

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=1, max_side=4)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_broadcasting_matches_numpy(data):
    a, b = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=4, max_side=4)).input_shapes
    name = data.draw(st.sampled_from(["add", "sub", "mul", "div", "maximum", "lt", "pow"]))
    x, y = np.full(a, 1.5), np.full(b, 0.5)
    out = getattr(api, name)(api.var("x", a), api.var("y", b))
    want = getattr(numeric, name)(x, y)
    assert out.shape == np.shape(want)
    assert evaluate(out, {"x": x, "y": y}).shape == np.shape(want)


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_broadcast_to_and_sum_to_match_numpy(data):
    """The impls' own fast paths (a zero-stride view, a reduce over leading axes) against numpy,
    on contiguous and strided inputs, empty ones included."""
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=1, max_dims=4, min_side=0, max_side=4))
    small, big = shapes.input_shapes[0], shapes.result_shape
    if small and data.draw(st.booleans()):  # not contiguous: every other column of a wider array
        x = np.arange(1.0, 1.0 + 2 * int(np.prod(small))).reshape(*small[:-1], 2 * small[-1])[..., ::2]
    else:
        x = np.arange(1.0, 1.0 + int(np.prod(small))).reshape(small)
    view = numeric.broadcast_to(x, big)
    np.testing.assert_array_equal(view, np.broadcast_to(x, big))
    assert view.shape == big and not view.flags.writeable and (np.shares_memory(view, x) or not x.size)
    g = np.arange(float(int(np.prod(big)))).reshape(big)
    np.testing.assert_array_equal(numeric.sum_to(g, small), np.sum(g, axis=tuple(range(len(big) - len(small))))
                                  .sum(axis=tuple(i for i, d in enumerate(small) if d == 1), keepdims=True))
    with pytest.raises(ValueError):
        numeric.broadcast_to(np.ones(5), (3,))


@settings(max_examples=60, deadline=None)
@given(shapes, st.data())
def test_reductions_match_numpy(shape, data):
    ndim = len(shape)
    axis = data.draw(st.one_of(st.none(), st.lists(st.integers(-ndim, ndim - 1), unique_by=lambda a: a % ndim,
                                                    max_size=ndim).map(tuple))) if ndim else None
    keepdims = data.draw(st.booleans())
    name = data.draw(st.sampled_from(["sum", "mean", "max", "min", "prod", "logsumexp"]))
    x = np.arange(1, 1 + int(np.prod(shape)), dtype=float).reshape(shape) / 7
    out = getattr(api, name)(api.var("x", shape), axis=axis, keepdims=keepdims)
    got = evaluate(out, {"x": x})
    if name == "logsumexp":
        ref = lambda v, **k: np.log(np.sum(np.exp(v), **k))
    else:
        ref = getattr(np, name)
    want = ref(x, axis=axis, keepdims=keepdims)
    assert out.shape == np.shape(want) == got.shape
    np.testing.assert_allclose(got, want)


@settings(max_examples=60, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), st.data())
def test_transpose_reshape_match_numpy(shape, data):
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    x = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    t = api.transpose(api.var("x", shape), perm)
    flat = api.reshape(t, (-1,))
    assert t.shape == np.transpose(x, perm).shape
    np.testing.assert_array_equal(evaluate(flat, {"x": x}), np.transpose(x, perm).reshape(-1))


@settings(max_examples=80, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=5), st.data())
def test_indexing_matches_numpy(shape, data):
    key = data.draw(hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True))
    x = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    out = api.var("x", shape)[key]
    assert out.shape == x[key].shape
    np.testing.assert_array_equal(evaluate(out, {"x": x}), x[key])
    _compiled_indexing_matches_numpy(shape, key, x)


@settings(max_examples=60, deadline=None)
@given(hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=4), st.data())
def test_integer_array_indexing_matches_numpy(shape, data):
    """Advanced indices: broadcast together, placed first unless adjacent."""
    key = []
    for d in shape:
        kind = data.draw(st.sampled_from(["slice", "array", "int"]))
        if kind == "slice":
            key.append(slice(None, None, data.draw(st.sampled_from([1, -1, 2]))))
        elif kind == "int":
            key.append(data.draw(st.integers(-d, d - 1)))
        else:
            key.append(data.draw(hnp.arrays(np.int64, data.draw(st.sampled_from([(2,), (1,), (3, 1)])),
                                            elements=st.integers(-d, d - 1))))
    key = tuple(key)
    x = np.arange(int(np.prod(shape)), dtype=float).reshape(shape)
    out = api.var("x", shape)[key]
    try:
        want = x[key]
    except IndexError:  # arrays whose shapes do not broadcast: we must refuse too
        with pytest.raises(Exception, match="broadcast"):
            parse_key(key) and api.var("y", shape)[key]
        return
    assert out.shape == want.shape
    np.testing.assert_array_equal(evaluate(out, {"x": x}), want)
    _compiled_indexing_matches_numpy(shape, key, x)


def _compiled_indexing_matches_numpy(shape, key, x):
    """x[key] and its gradient (a scatter) in symsym's generated code against numpy's indexing and np.add.at."""
    v = api.var("x", shape)
    w = np.linspace(0.5, 1.5, x[key].size).reshape(x[key].shape)
    picked = v[key]
    grad = symsym.grad(api.sum(api.sin(picked) * w), v)
    got, dx = symsym.function([v], [picked, grad])(x)
    np.testing.assert_array_equal(got, x[key])
    want = np.zeros(shape)
    np.add.at(want, key, np.cos(x[key]) * w)
    np.testing.assert_allclose(dx, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_matmul_shapes_match_numpy(data):
    batch = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2, max_side=3)).input_shapes
    m, k, n = (data.draw(st.integers(1, 4)) for _ in range(3))
    a_shape = data.draw(st.sampled_from([(k,), batch[0] + (m, k)]))
    b_shape = data.draw(st.sampled_from([(k,), batch[1] + (k, n)]))
    a = np.arange(int(np.prod(a_shape)), dtype=float).reshape(a_shape)
    b = np.ones(b_shape)
    out = api.matmul(api.var("a", a_shape), api.var("b", b_shape))
    want = np.matmul(a, b)
    assert out.shape == want.shape
    np.testing.assert_allclose(evaluate(out, {"a": a, "b": b}), want)


def test_python_scalars_are_weakly_typed():
    x = api.var("x", (3,), "float32")
    assert (x * 2.0).dtype == np.float32
    assert (2 + x).dtype == np.float32
    assert (api.var("n", (3,), "int32") * 2).dtype == np.int32
    assert (api.var("n", (3,), "int32") * 2.5).dtype == np.float64


def test_numpy_arrays_mix_with_nodes():
    x = api.var("x", (3,))
    out = np.arange(3.0) + x  # numpy defers to the node
    assert isinstance(out, Node) and out.op.name == "add"
    np.testing.assert_allclose(evaluate(out, {"x": np.ones(3)}), np.arange(3.0) + 1)
