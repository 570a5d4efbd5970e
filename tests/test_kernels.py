"""The fast kernels (common.kernels) against their plain numpy spellings, and codegen calling the same ones."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import symsym
from common import api, kernels
from symsym import emit

DTYPES = [np.float64, np.float32]


def _array(rng, shape, dtype=np.float64):
    return rng.standard_normal(shape).astype(dtype)


@st.composite
def _broadcast_pair(draw):
    """(small shape, big shape) where the small one broadcasts to the big one: dims dropped in front, some set to 1."""
    big = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4))
    lead = draw(st.integers(0, len(big)))
    small = tuple(1 if draw(st.booleans()) else d for d in big[lead:])
    return small, big


# --- broadcast_view -------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(_broadcast_pair(), st.sampled_from(DTYPES), st.integers(0, 2 ** 32 - 1))
def test_broadcast_view_is_numpys_broadcast_to(pair, dtype, seed):
    small, big = pair
    x = _array(np.random.default_rng(seed), small, dtype)
    got = kernels.broadcast_view(x, big)
    want = np.broadcast_to(x, big)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    assert not got.flags.writeable  # a view that must not be written through
    if got.size:
        assert np.shares_memory(got, x)


def test_broadcast_view_of_non_contiguous_and_0d_inputs():
    x = np.arange(12.0).reshape(3, 4)[:, ::2]  # not C-contiguous: numpy's own path
    np.testing.assert_array_equal(kernels.broadcast_view(x, (2, 3, 2)), np.broadcast_to(x, (2, 3, 2)))
    assert not kernels.broadcast_view(x, (2, 3, 2)).flags.writeable
    z = np.array(2.5, np.float32)
    got = kernels.broadcast_view(z, (3, 2))
    assert got.dtype == np.float32 and not got.flags.writeable
    np.testing.assert_array_equal(got, np.full((3, 2), 2.5, np.float32))
    assert kernels.broadcast_view(np.ones(3), (0, 3)).shape == (0, 3)


def test_broadcast_view_refuses_what_numpy_refuses():
    with pytest.raises(ValueError):
        kernels.broadcast_view(np.ones(3), (2, 4))
    with pytest.raises(ValueError):
        kernels.broadcast_view(np.ones((2, 3)), (3,))


# --- sum_to ---------------------------------------------------------------------------------------

def _sum_to_reference(x, shape):
    """Sum the leading axes away, then every axis where ``shape`` has 1: np.sum, axis by axis."""
    lead = x.ndim - len(shape)
    out = np.sum(x, axis=tuple(range(lead))) if lead else x
    for i, d in enumerate(shape):
        if d == 1 and out.shape[i] != 1:
            out = np.sum(out, axis=i, keepdims=True)
    return np.asarray(out)


@settings(max_examples=80, deadline=None)
@given(_broadcast_pair(), st.sampled_from(DTYPES), st.integers(0, 2 ** 32 - 1))
def test_sum_to_sums_the_broadcast_axes(pair, dtype, seed):
    small, big = pair
    rng = np.random.default_rng(seed)
    x = _array(rng, big, dtype)
    got = kernels.sum_to(x, small)
    want = _sum_to_reference(x, small)
    assert np.shape(got) == small and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-5)
    # the adjoint of broadcasting: <sum_to(x), y> == <x, broadcast(y)>
    y = _array(rng, small)
    np.testing.assert_allclose(np.sum(got * y), np.sum(x * np.broadcast_to(y, big)), rtol=1e-4, atol=1e-4)


def test_sum_to_returns_x_for_equal_shapes_and_a_0d_array_for_a_full_sum():
    x = np.arange(6.0).reshape(2, 3)
    assert kernels.sum_to(x, (2, 3)) is x
    total = kernels.sum_to(x, ())
    assert isinstance(total, np.ndarray) and total.shape == () and total == 15.0
    assert kernels.sum_to(x, [1, 3]).shape == (1, 3)  # a list shape is read as a tuple


@settings(max_examples=60, deadline=None)
@given(_broadcast_pair())
def test_sum_to_axes_is_the_reduce_that_sum_to_does(pair):
    small, big = pair
    x = np.arange(int(np.prod(big)), dtype=float).reshape(big)
    axes, keepdims = kernels.sum_to_axes(big, small)
    out = np.add.reduce(x, axes, keepdims=keepdims)
    np.testing.assert_array_equal(np.reshape(out, small), _sum_to_reference(x, small))
    if not keepdims:
        assert np.shape(out) == small  # no reshape needed: the code generator writes none


# --- the small ones: expand_dims, transpose, mean -------------------------------------------------

@pytest.mark.parametrize("shape,axis", [((), (0,)), ((3,), (0, 2)), ((2, 0), (1,)), ((2, 3), (0, 1, 4))])
def test_expand_dims_is_numpys(shape, axis, rng):
    x = _array(rng, shape, np.float32)
    got = kernels.expand_dims(x, axis)
    np.testing.assert_array_equal(got, np.expand_dims(x, axis))
    assert got.shape == np.expand_dims(x, axis).shape and got.dtype == np.float32


@pytest.mark.parametrize("shape,axes", [((), ()), ((3, 2), (1, 0)), ((2, 0, 3), (2, 0, 1))])
def test_transpose_is_numpys(shape, axes, rng):
    x = _array(rng, shape)
    np.testing.assert_array_equal(kernels.transpose(x, axes), np.transpose(x, axes))
    assert kernels.transpose(x, axes).shape == np.transpose(x, axes).shape


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32])
@pytest.mark.parametrize("shape,axis,keepdims", [((4, 5), (0,), False), ((4, 5), (0, 1), True),
                                                 ((2, 3, 4), (1, 2), False), ((3,), (), False)])
def test_mean_is_numpys(dtype, shape, axis, keepdims, rng):
    x = (rng.standard_normal(shape) * 10).astype(dtype)
    got = kernels.mean(x, axis, keepdims)
    want = np.mean(x, axis=axis, keepdims=keepdims)
    assert np.shape(got) == np.shape(want) and np.asarray(got).dtype == np.asarray(want).dtype
    np.testing.assert_array_equal(got, want)  # the same arithmetic, bit for bit


# --- reduce_by_slices --------------------------------------------------------------------------

def _pool_windows(x):
    """2x2 windows of x's last two dims, stride 2, as the strided view pooling reduces."""
    return np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(-2, -1))[..., ::2, ::2, :, :]


@pytest.mark.parametrize("ufunc", [np.add, np.maximum, np.minimum])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("make,axis", [(lambda x: _pool_windows(x), (4, 5)),
                                       (lambda x: x.reshape(4, 3, 32, 2, 32, 2), (3, 5)),
                                       (lambda x: x.reshape(-1, 4), (1,)),
                                       (lambda x: x[:2, :2, :3, :5], (2, 3)),  # too few outputs: numpy's
                                       (lambda x: x.reshape(4, 3, 4096), (2,))])  # too many per output
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduce_by_slices_is_numpys_reduce(ufunc, dtype, make, axis, keepdims, rng):
    x = (rng.standard_normal((4, 3, 64, 64)) * 100).astype(dtype)
    if dtype != np.int64:
        x.flat[[5, 77, 1000]] = np.nan  # NaN through, as numpy's max and sum
    x = make(x)
    got = kernels.reduce_by_slices(ufunc, x, axis, keepdims)
    want = ufunc.reduce(x, axis=axis, keepdims=keepdims)
    assert got.shape == want.shape and got.dtype == want.dtype
    if ufunc is np.add and dtype != np.int64:
        # the same sums in another order: equal to a few roundings of the largest term
        np.testing.assert_allclose(got, want, rtol=0, atol=8 * np.finfo(dtype).eps * np.nanmax(np.abs(x)))
    else:
        np.testing.assert_array_equal(got, want)


def test_few_reduced_picks_small_windows_over_many_outputs():
    assert kernels.few_reduced((16, 6, 12, 12, 2, 2), (4, 5))
    assert not kernels.few_reduced((2, 3, 4, 4, 2, 2), (4, 5))      # few outputs
    assert not kernels.few_reduced((4096, 64), (1,))                # a long row
    assert not kernels.few_reduced((4096, 1), (1,))                 # nothing to reduce


# --- softmax --------------------------------------------------------------------------------------

def _softmax_reference(x, axis):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(hnp.array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=5), st.sampled_from(DTYPES), st.data())
def test_softmax_is_the_plain_spelling_bit_for_bit(shape, dtype, data):
    axis = data.draw(st.integers(0, len(shape) - 1))
    if shape[axis] == 0:
        shape = shape[:axis] + (1,) + shape[axis + 1:]  # max over an empty axis has no value in numpy either
    x = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-50, 50, width=32)))
    before = x.copy()
    got = kernels.softmax(x, axis)
    assert got.shape == shape and got.dtype == dtype
    np.testing.assert_array_equal(got, _softmax_reference(x, axis))
    np.testing.assert_array_equal(x, before)  # in place in its own buffer, never the input's


def test_softmax_of_integers_and_huge_values():
    n = np.array([[1, 2, 3], [1000, 1000, -5]], np.int64)
    got = kernels.softmax(n, 1)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, _softmax_reference(n, 1))
    big = np.array([1e308, 1e308, -1e300])
    np.testing.assert_allclose(kernels.softmax(big, 0), [0.5, 0.5, 0.0])


# --- scatters -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_set_writes_once_where_basic_indexing_selects(dtype, rng):
    shape, key = (4, 5), (slice(1, None, 2), 3)
    g = _array(rng, (2,), dtype)
    want = np.zeros(shape, dtype)
    np.add.at(want, key, g)
    got = kernels.scatter_set(g, shape, key)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    # g broadcasts to the selection, and a Python float takes numpy's dtype for it
    np.testing.assert_array_equal(kernels.scatter_set(2.0, (3,), (slice(None),)), np.full(3, 2.0))


@pytest.mark.parametrize("dtype", DTYPES)
def test_scatter_at_accumulates_repeated_indices(dtype, rng):
    rows = np.array([0, 2, 0, 0])
    g = _array(rng, (4, 3), dtype)
    want = np.zeros((3, 3), dtype)
    for k, r in enumerate(rows):  # the loop the kernel must agree with
        want[r] += g[k]
    got = kernels.scatter_at(g, (3, 3), (rows,))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert kernels.scatter_at(g[:0], (3, 3), (rows[:0],)).sum() == 0  # empty: zeros


@pytest.mark.parametrize("shape, key, distinct", [
    ((3, 3), (np.array([0, 1, 2]), np.array([2, 1, 0])), True),
    ((3, 3), (np.array([0, 1, 0]), np.array([2, 1, 2])), False),          # (0, 2) twice
    ((4,), (np.array([1, -3]),), False),                                  # -3 is 1 again
    ((3, 4), (np.array([[0], [2]]), np.array([1, 3])), True),            # broadcast index arrays
    ((3, 4), (np.array([[0], [0]]), np.array([1, 3])), False),
    ((3, 4), (slice(None), np.array([1, 1])), False),                     # a slice beside an array
    ((3, 4), (slice(None), np.array([1, 2])), True),
    ((5,), (np.array([], np.int64),), True),
])
def test_distinct_positions_agrees_with_add_at_and_assignment(shape, key, distinct, rng):
    assert kernels.distinct_positions(shape, key) is distinct
    g = rng.standard_normal(np.zeros(shape)[key].shape)
    added = np.zeros(shape)
    np.add.at(added, key, g)
    # where it says distinct, writing (scatter_set) is adding; where not, writing loses an addition
    assert np.array_equal(kernels.scatter_set(g, shape, key), added) is distinct or g.size == 0


def test_distinct_positions_does_not_probe_a_huge_target():
    assert kernels.distinct_positions((kernels.DISTINCT_PROBE_LIMIT + 1,), (np.array([0]),)) is False


# --- the code generator calls these very functions --------------------------------------------------

def test_generated_code_calls_the_shared_kernels(rng):
    x, rows = api.var("x", (4, 6)), np.array([0, 2, 2])
    cost = api.sum(api.softmax(x, axis=1)[rows] * x[rows]) + api.sum(api.sin(x[1:3])) + api.sum(api.mean(x, axis=0))
    g = symsym.grad(cost, x)
    fn = symsym.function([x], [g, api.softmax(x, axis=1)])
    src = fn.source
    for name in ("softmax(", "scatter_at(", "scatter_set("):
        assert name in src
    for name, kernel in emit.KERNELS.items():
        assert getattr(kernels, kernel.__name__) is kernel, name
    xv = _array(rng, (4, 6))
    gv, sv = fn(xv)
    np.testing.assert_array_equal(sv, _softmax_reference(xv, 1))
    # the same gradient from the op impls (symnum's numbers), which call the same kernels
    import symnum

    t = symnum.tensor(xv, requires_grad=True)
    c = (symnum.sum(symnum.softmax(t, axis=1)[rows] * t[rows]) + symnum.sum(symnum.sin(t[1:3]))
         + symnum.sum(symnum.mean(t, axis=0)))
    c.backward()
    np.testing.assert_allclose(gv, t.grad, rtol=1e-12, atol=1e-12)
