"""The batched second sweep behind symnum.hessian: every op case's Hessian against its rows
one forward-over-reverse pass each (``jvp`` of ``grad``, an engine check) and against second differences
of the case's numpy reference (which no rule touches), the
scale-carrying batched numbers against dense numpy, and in-place fan-out sums
that never touch the caller's arrays."""

import numpy as np
import pytest
from opcases import CASES

import symnum as S
from benchmarks.finite import bilinear_difference, second_differences
from symnum import functional
from symnum.batched import Batched, batched

SECOND = [c for c in CASES if c.wrt and c.second_order]


def _scalar(case, inputs, weights):
    """x -> sum(weights * case(x, other inputs)): a scalar function of the case's first wrt input."""
    k = case.wrt[0]

    def f(x):
        args = list(inputs)
        args[k] = x
        return S.sum(case.fn(S, *args) * weights)

    return f, inputs[k]


def _rows(f, x):
    """The Hessian a row at a time by forward over reverse (jvp of grad): a path that shares no batched sweep."""
    eye = np.eye(x.size).reshape((x.size, *x.shape))
    return np.stack([S.jvp(S.grad(f), [x], [e])[1] for e in eye]).reshape(x.shape + x.shape)


def _setup(case, seed=7, reference=False):
    """The case as ``f(x)`` (see :func:`_scalar`), and with ``reference`` the same cost in plain numpy."""
    rng = np.random.default_rng(seed)
    inputs = case.inputs(rng)
    weights = rng.standard_normal(np.shape(case.ref(*inputs)))
    f, x = _scalar(case, inputs, weights)
    if not reference:
        return f, x
    k = case.wrt[0]
    return f, x, lambda a: float(np.sum(case.ref(*inputs[:k], a, *inputs[k + 1:]) * weights))


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_batched_hessian_equals_the_row_by_row_sweep(case):
    f, x = _setup(case)
    got = S.hessian(f)(x)
    rows = _rows(f, x)  # a different path to the same numbers
    assert got.shape == x.shape + x.shape
    np.testing.assert_allclose(got, rows, rtol=1e-10, atol=1e-12)


MAX_DENSE = 48
"""The largest input whose Hessian is compared entry by entry with second differences of the reference."""


@pytest.mark.parametrize("case", SECOND, ids=[c.id for c in SECOND])
def test_batched_hessian_against_second_differences_of_the_reference(case):
    f, x, cost = _setup(case, seed=11, reference=True)
    got = S.hessian(f)(x).reshape(x.size, x.size)
    x = np.asarray(x, np.float64)
    if x.size <= MAX_DENSE:
        want = second_differences(cost, x)
    else:  # every entry would cost 4 x.size^2 reference calls: u' H v for random pairs instead (4 calls each)
        rng = np.random.default_rng(12)
        pairs = [(rng.standard_normal(x.shape), rng.standard_normal(x.shape)) for _ in range(6)]
        want = np.array([bilinear_difference(cost, x, u, v) for u, v in pairs])
        got = np.array([u.reshape(-1) @ got @ v.reshape(-1) for u, v in pairs])
    # a second difference's rounding error is about ulp * |cost| / h^2 (h = 1e-4), or 1e-6 of the Hessian's scale
    rounding = 4 * np.finfo(np.float64).eps * abs(cost(x)) / 1e-8
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=max(rounding, 1e-6 * max(1.0, float(np.max(np.abs(want))))))


def test_hessian_in_blocks_of_rows_equals_one_sweep(monkeypatch):
    x = np.random.default_rng(3).uniform(-1, 1, (4, 5))

    def f(x):
        return S.sum(S.tanh(x @ x.T) * S.sin(x[:, :4]).sum())

    whole = S.hessian(f)(x)
    monkeypatch.setattr(functional, "SWEEP_ELEMENTS", 7)  # 1 row per sweep: 20 sweeps of one tape
    np.testing.assert_allclose(S.hessian(f)(x), whole, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(whole, _rows(f, x), rtol=1e-10, atol=1e-12)


def test_hessian_of_a_linear_function_is_zero_and_nested_hessians_stay_differentiable():
    x = np.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(S.hessian(lambda x: S.sum(x * 2.0))(x), np.zeros((3, 3)))
    # d/dx trace(H(x)) for f = sum(x^4): H = diag(12 x^2), so the gradient of its trace is 24 x
    g = S.grad(lambda x: S.sum(S.hessian(lambda y: S.sum(y ** 4))(x) * np.eye(3)))(x)
    np.testing.assert_allclose(g, 24 * x)


def _dense(b):
    return b.dense() if isinstance(b, Batched) else np.broadcast_to(b, (3, *np.shape(b)))


def test_batched_numbers_carry_scales_and_agree_with_dense_numpy():
    rng = np.random.default_rng(5)
    a = Batched(rng.standard_normal((3, 4)))
    b = Batched(rng.standard_normal((3, 4)), -2.5)
    u = rng.standard_normal(4)
    cases = {
        "neg": (-b, -b.dense()),
        "scalar product": (b * np.float64(3.0), b.dense() * 3.0),
        "python scalar": (2.0 * b, b.dense() * 2.0),
        "vector product": (u * b, b.dense() * u),
        "sum, equal scales": (b + Batched(a.value, -2.5), b.dense() + a.value * -2.5),
        "sum, opposite scales": (a - Batched(a.value * 2, -1.0), a.value + a.value * 2),
        "difference, other scales": (a - b, a.value - b.dense()),
        "a zero scale": (a * np.float64(0.0) + b, b.dense()),
        "factors of one batch add up": (b * u - b * (2.0 * u), b.dense() * u - b.dense() * 2.0 * u),
        "vector factors of two batches": ((a * u) + (b * u[::-1]), a.value * u + b.dense() * u[::-1]),
        "a vector factor, then a reduction": (batched.sum(u * b, axis=0), (b.dense() * u).sum(axis=1)),
        "a factor wider than the batch is no factor": (b * np.ones((2, 4)), b.dense()[:, None, :] * np.ones((2, 4))),
        "linear op carries the scale": (batched.sum(b, axis=0), b.dense().sum(axis=1)),
        "getitem": (b[1:3], b.dense()[:, 1:3]),
        "other ops see dense values": (batched.sin(b), np.sin(b.dense())),
    }
    for name, (got, want) in cases.items():
        np.testing.assert_allclose(_dense(got), want, rtol=1e-14, err_msg=name)
    # a float32 batch times a float64 array follows numpy's promotion (no scale folded in)
    f32 = Batched(np.ones((3, 4), np.float32), 2.0)
    assert (f32 * u).dtype == np.float64


def test_fan_out_sums_in_place_never_write_to_the_callers_arrays():
    from common import api as T

    x = T.var("x", (5,))
    y = T.var("y", (5,))
    outs = [x * 1.0, x * 2.0, x * 3.0, y]
    seeds = [np.full(5, 1.0), np.full(5, 2.0), np.full(5, 3.0), np.arange(5.0)]
    kept = [s.copy() for s in seeds]
    xv = np.linspace(-1, 1, 5)
    gx, gy = S.gradients(outs, [x, y], {x: xv, y: xv}, grad_outputs=seeds)
    np.testing.assert_allclose(gx, np.full(5, 1.0 + 4.0 + 9.0))
    np.testing.assert_array_equal(gy, np.arange(5.0))
    for s, k in zip(seeds, kept):
        np.testing.assert_array_equal(s, k)
    gy[0] = 99.0  # the caller owns what comes back: the seed it passed is untouched
    np.testing.assert_array_equal(seeds[3], kept[3])


def _windowed(rng, rows=3, lo=2, width=4, n=9, scale=1.0):
    return Batched(rng.standard_normal((rows, width)), scale, lo, n)


def test_windowed_batches_agree_with_their_zero_padded_dense_form():
    rng = np.random.default_rng(8)
    a = _windowed(rng)                                  # columns 2:6 of 9
    b = _windowed(rng, lo=4, width=3, scale=-1.5)       # columns 4:7, overlapping a
    c = _windowed(rng, lo=7, width=2)                   # columns 7:9, disjoint from a
    d = Batched(rng.standard_normal((3, 9)))
    u = rng.standard_normal(9)
    bu = b * u                                          # a factor per column, indexed over the whole element
    # references built from the raw windows with numpy alone, not through Batched.dense
    A = np.pad(a.value, ((0, 0), (2, 3)))
    B = np.pad(b.value, ((0, 0), (4, 2))) * -1.5
    C = np.pad(c.value, ((0, 0), (7, 0)))
    BU = B * u
    cases = {
        "dense form": (a, A),
        "neg": (-b, -B),
        "vector product": (u * b, B * u),
        "quotient": (b / u, B / u),
        "sum, overlapping windows": (a + bu, A + BU),
        "difference, disjoint windows": (a - c, A - C),
        "sum, one window": (a + a * u, A * (1 + u)),
        "sum with a dense batch": (a + d, A + d.value),
        "slice inside": (bu[3:8], BU[:, 3:8]),
        "slice clipping the window": (a[4:], A[:, 4:]),
        "slice missing the window": (a[:2], A[:, :2]),
        "slice from the end": (bu[:-1], BU[:, :-1]),
        "int inside": (bu[5], BU[:, 5]),
        "int outside": (a[-1], A[:, -1]),
        "scatter a slice": (batched.scatter_add(bu[1:], u, index=(("slice", 1, None, None),)),
                            np.pad(BU[:, 1:], ((0, 0), (1, 0)))),
        "sum": (batched.sum(bu, axis=0), BU.sum(axis=1)),
        "mean, keepdims": (batched.mean(bu, axis=0, keepdims=True), BU.mean(axis=1, keepdims=True)),
        "a strided slice sees dense values": (bu[::2], BU[:, ::2]),
        "other ops see dense values": (batched.sin(a), np.sin(A)),
    }
    for name, (got, want) in cases.items():
        assert got.shape == want.shape[1:], name
        np.testing.assert_allclose(_dense(got), want, rtol=1e-14, err_msg=name)
    assert (a + bu).n == 9 and ((a + bu).lo, (a + bu).hi) == (2, 7)  # the union, not the whole element
    assert bu[3:8].n == 5 and (bu[3:8].lo, bu[3:8].hi) == (1, 4)


def _banded(x):
    """A pentadiagonal Hessian: each term couples x[i], x[i+1] and x[i+2]."""
    return S.sum(S.sin(x[2:] * x[:-2])) + S.sum(S.square(x[1:] - S.square(x[:-1])) * S.tanh(x[1:]))


def _banded_numpy(x) -> float:
    return float(np.sum(np.sin(x[2:] * x[:-2])) + np.sum((x[1:] - x[:-1] ** 2) ** 2 * np.tanh(x[1:])))


def test_windowed_hessian_rows_stay_inside_the_band():
    from symnum import engine
    from symnum.batched import basis

    x = S.tensor(np.random.default_rng(2).uniform(-1, 1, 40), requires_grad=True)
    (g,) = engine.grad([_banded(x)], [x], create_graph=True)
    (h,) = engine.sweep([g], [basis(5, 10, 40, np.float64)], [x], True, False, ns=batched)
    assert h.n == 40 and 8 <= h.lo and h.hi <= 17  # rows 10..14 reach columns 8..16 only


@pytest.mark.parametrize("rows", [1, 3, 16, 64])
def test_windowed_hessian_in_blocks_against_the_row_by_row_sweep_and_differences(monkeypatch, rows):
    x = np.random.default_rng(rows).uniform(-1, 1, 23)
    monkeypatch.setattr(functional, "WINDOW_ROWS", rows)
    got = S.hessian(_banded)(x)
    np.testing.assert_allclose(got, _rows(_banded, x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got, second_differences(_banded_numpy, x), rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(got[np.abs(np.subtract.outer(np.arange(23), np.arange(23))) > 2]) == 0
    # a dense Hessian (every pair coupled) through the same windowed blocks
    dense = lambda x: S.sum(S.tanh(x)) * S.sum(S.exp(x[::3])) + S.sum(x ** 3) * S.mean(x[1:4])
    np.testing.assert_allclose(S.hessian(dense)(x), _rows(dense, x), rtol=1e-10, atol=1e-12)
