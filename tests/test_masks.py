"""Boolean masks, ``x[mask]`` with numpy's meaning: a constant mask (its count known, so the shape is static)
and a mask computed from data, on the tape and on symsym's compiled graphs (numpy and numba linkers). Values
against numpy, gradients against central differences (float64), second order against a closed form, and the
error for a mask of the wrong shape. The generic checks of every op case (tests/opcases.py) run elsewhere."""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
from benchmarks.finite import central_differences
from common import api
from common.errors import ShapeError
from symsym import function, grad, hvp

LINKERS = ["numpy", "numba"]

X = np.random.default_rng(3).standard_normal((4, 3, 2))
W = np.random.default_rng(4).standard_normal(X.shape)
MASK2 = np.array([[True, False, True], [False, False, False], [True, True, True], [False, True, False]])

KEYS = [  # (id, key as a function of a boolean mask maker) : numpy's positions of a mask in a key
    ("leading-2d", lambda x: MASK2),
    ("leading-1d", lambda x: np.array([True, False, True, True])),
    ("after-slice", lambda x: (slice(None), np.array([False, True, True]))),
    ("after-ellipsis", lambda x: (Ellipsis, np.array([True, False]))),
    ("with-int-array", lambda x: (MASK2[:, 0], np.array([1, 0]))),
]


def _linker(name: str) -> str:
    if name == "numba":
        pytest.importorskip("numba")
    return name


def _fd(f, x):
    return central_differences(lambda a: float(f(a)), x, 1e-6)


@pytest.mark.parametrize("name, key", KEYS, ids=[k[0] for k in KEYS])
def test_a_constant_mask_matches_numpy_on_the_tape(name, key):
    k = key(X)
    t = S.tensor(X, requires_grad=True)
    y = t[k]
    np.testing.assert_array_equal(y.numpy(), X[k])
    S.sum(S.sin(y) * W[k]).backward()
    np.testing.assert_allclose(np.asarray(t.grad.data), _fd(lambda a: np.sum(np.sin(a[k]) * W[k]), X),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("name, key", KEYS, ids=[k[0] for k in KEYS])
def test_a_constant_mask_has_a_static_shape_and_scatters_back(name, key, linker):
    k = key(X)
    v = api.var("x", X.shape)
    y = v[k]
    assert y.shape == X[k].shape  # the count is the mask's, known when the graph is built
    cost = api.sum(api.sin(y) * api.const(W[k]))
    (g,) = grad(cost, [v])
    value, got = function([v], [y, g], linker=_linker(linker))(X)
    np.testing.assert_array_equal(value, X[k])
    np.testing.assert_allclose(got, _fd(lambda a: np.sum(np.sin(a[k]) * W[k]), X), rtol=1e-7, atol=1e-8)


def test_a_computed_mask_on_the_tape_scatters_the_gradient_back():
    t = S.tensor(X, requires_grad=True)
    y = t[t > 0.3]
    np.testing.assert_array_equal(y.numpy(), X[X > 0.3])
    S.sum(y ** 3).backward()
    np.testing.assert_allclose(np.asarray(t.grad.data), _fd(lambda a: np.sum(a[X > 0.3] ** 3), X),
                               rtol=1e-7, atol=1e-8)


def test_a_computed_mask_over_leading_axes_on_the_tape():
    t = S.tensor(X, requires_grad=True)
    m = S.sum(t, axis=2) > 0  # a mask over the two leading axes of x
    y = t[m]
    keep = X.sum(axis=2) > 0
    np.testing.assert_array_equal(y.numpy(), X[keep])
    S.sum(S.sin(y) * W[keep]).backward()
    np.testing.assert_allclose(np.asarray(t.grad.data), _fd(lambda a: np.sum(np.sin(a[keep]) * W[keep]), X),
                               rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("linker", LINKERS)
def test_a_computed_mask_in_a_graph_has_an_unknown_count(linker):
    v = api.var("x", X.shape)
    y = v[v > 0.3]
    assert y.shape == (None,)
    (g,) = grad(api.sum(y ** 3), [v])
    u = api.var("u", X.shape)
    hv = hvp(api.sum(y ** 3), v, u)
    d = np.random.default_rng(5).standard_normal(X.shape)
    value, got, second = function([v, u], [y, g, hv], linker=_linker(linker))(X, d)
    np.testing.assert_array_equal(value, X[X > 0.3])
    np.testing.assert_allclose(got, _fd(lambda a: np.sum(a[X > 0.3] ** 3), X), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(second, np.where(X > 0.3, 6 * X * d, 0.0), rtol=1e-12)  # d^2/dx^2 x^3 = 6x


def test_a_mask_fed_as_a_graph_input():
    v, m = api.var("x", X.shape), api.var("m", X.shape[:2], "bool")
    (g,) = grad(api.sum(api.sin(v[m])), [v])
    value, got = function([v, m], [v[m], g])(X, MASK2)
    np.testing.assert_array_equal(value, X[MASK2])
    np.testing.assert_allclose(got, np.where(MASK2[..., None], np.cos(X), 0.0), rtol=1e-12)


def test_forward_mode_and_vmap_through_a_constant_mask():
    d = np.random.default_rng(6).standard_normal(X.shape)
    value, tangent = S.jvp(lambda x: S.sin(x[MASK2]), (X,), (d,))
    np.testing.assert_allclose(value, np.sin(X[MASK2]), rtol=1e-12)
    np.testing.assert_allclose(tangent, np.cos(X[MASK2]) * d[MASK2], rtol=1e-12)
    batch = np.stack([X, 2 * X, -X])
    got = S.vmap(lambda x: S.sum(x[MASK2] ** 2))(batch)
    np.testing.assert_allclose(got, [np.sum(b[MASK2] ** 2) for b in batch], rtol=1e-12)


def test_at_set_with_a_mask_matches_numpy():
    want = X.copy()
    want[MASK2] = 0.0
    t = S.tensor(X)
    np.testing.assert_array_equal(t.at[MASK2].set(0.0).numpy(), want)
    v = api.var("x", X.shape)
    np.testing.assert_array_equal(function([v], v.at[MASK2].set(0.0))(X), want)


@pytest.mark.parametrize("where", ["tape", "graph", "tape-computed"])
def test_a_mask_of_the_wrong_shape_names_the_op_the_shapes_and_the_line(where):
    x = api.var("x", X.shape) if where == "graph" else S.tensor(X)
    mask = MASK2[:3] if where != "tape-computed" else S.tensor(np.ones((4, 2), bool))
    with pytest.raises(ShapeError) as info:
        x[mask]
    text = str(info.value)
    assert "getitem" in text and "(4, 3, 2)" in text and "test_masks.py" in text, text
    assert "boolean mask of shape" in text, text


def test_vmap_with_a_computed_mask_of_equal_counts_and_a_ragged_one():
    even = np.array([[1.0, -2, 3, 4], [-1, 5, 6, 2], [7, 8, -1, 1]])  # three positives in every row
    got = S.vmap(lambda x: S.sum(x[x > 0] ** 2))(even)
    np.testing.assert_allclose(got, [np.sum(r[r > 0] ** 2) for r in even], rtol=1e-12)
    ragged = even.copy()
    ragged[2, 3] = -1.0
    with pytest.raises(ShapeError) as info:
        S.vmap(lambda x: S.sum(x[x > 0]))(ragged)
    text = str(info.value)
    assert "different counts [3, 3, 2]" in text and "test_masks.py" in text, text
