"""Row sums fused into their region's loop (symsym/linkers/reductions.py).

A sum over the last axis of a fused region's value, read by nothing else,
joins the kernel: the driver has no numpy reduce for it, and since the kernel
repeats numpy's pairwise summation the result equals the numpy linker's bit
for bit (where the elementwise part is exact). Other sums stay numpy calls.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import api as T
from symsym import function, grad

numba = pytest.importorskip("numba")

from symsym.linkers.numba.pairwise import pairwise_sum  # noqa: E402  (needs numba)


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(tmp_path))


def _rows(rng, n: int) -> np.ndarray:
    """A row of mixed signs and magnitudes (where summation order shows in the last bits)."""
    return rng.standard_normal(n) * 10.0 ** rng.integers(-6, 6, n)


def _driver(f) -> str:
    return f.source.split("\n# kernel")[0]


def _bits(a) -> list[str]:
    return [float(v).hex() for v in np.ravel(np.asarray(a, dtype=np.float64))]


#: numpy before 2.3 hands a reduction's inner loop at most its buffer size (8192 elements) at a time and adds
#: each piece's pairwise sum in order; pairwise.py repeats the whole-row pairwise sum of numpy 2.3 and later,
#: so on an older numpy a longer row agrees to rounding only
WHOLE_ROW = np.lib.NumpyVersion(np.__version__) >= "2.3.0"


def test_pairwise_sum_is_numpys_bit_for_bit():
    compiled = numba.njit(lambda a, n: pairwise_sum(a, n))
    rng = np.random.default_rng(0)
    for n in [*range(1001), 8191, 8192, 8193, 100_003]:
        a = _rows(rng, n)
        if n <= 8192 or WHOLE_ROW:
            assert float(compiled(a, n)).hex() == float(np.add.reduce(a)).hex(), n
        else:
            np.testing.assert_allclose(compiled(a, n), np.add.reduce(a), rtol=1e-14, atol=0)
    for n in (0, 3, 8, 13, 200):  # rows of -0.0: numpy adds the identity 0.0, so +0.0
        a = np.full(n, -0.0)
        assert float(compiled(a, n)).hex() == float(np.add.reduce(a)).hex(), n


def test_row_sums_join_the_loop_and_equal_numpy_bit_for_bit():
    """Sums over the last axis (keepdims or not, rows past numpy's 128-element block) and over a whole
    1-d value: no numpy reduce left in the driver, the same bits as the numpy linker."""
    x, y, z = T.var("x", (5, 300)), T.var("y", (300,)), T.var("z", (1000,))
    outs = [T.sum(x * y + x, axis=-1), T.sum(x * x - y, axis=1, keepdims=True), T.sum(z * z + z), T.sum(y * y)]
    f = function([x, y, z], outs, linker="numba")
    assert "np_add_reduce" not in _driver(f) and " * " not in _driver(f)  # y * y alone is a kernel with its sum
    assert "pairwise_sum(" in f.source
    rng = np.random.default_rng(1)
    args = _rows(rng, 1500).reshape(5, 300), _rows(rng, 300), _rows(rng, 1000)
    want = function([x, y, z], outs, linker="numpy")(*args)
    got = f(*args)
    assert [np.shape(g) for g in got] == [(5,), (5, 1), (), ()]
    for g, w in zip(got, want):
        assert _bits(g) == _bits(w)
        assert np.asarray(g).dtype == np.float64


def test_a_row_sum_after_a_cut_loop_equals_numpy():
    """Three vectorised math calls cut the loop into blocks (segments.py); the sum comes after them."""
    x = T.var("x", (4, 600))
    out = T.sum(T.sin(T.exp(T.tanh(x))) * x, axis=-1)
    f = function([x], [out], linker="numba")
    assert "np_add_reduce" not in _driver(f) and "for s in range(" in f.source
    a = np.random.default_rng(2).standard_normal((4, 600))
    a[1, 7] = 3e7  # a sin argument past vmath's range: the loop reruns on libm, the sums with it
    got, = f(a)
    want, = function([x], [out], linker="numpy")(a)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def test_gradient_through_a_fused_row_sum_matches_finite_differences():
    x, w = T.var("x", (6, 9)), T.var("w", (9,))
    cost = T.sum(T.log1p(T.sum(x * x * w, axis=-1)))
    gx, gw = grad(cost, [x, w])
    f = function([x, w], [cost, gx, gw], linker="numba")
    assert "pairwise_sum(" in f.source
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((6, 9)), rng.uniform(0.5, 2.0, 9)
    got = f(a, b)
    for g, want in zip(got, function([x, w], [cost, gx, gw], linker="numpy")(a, b)):
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=0)

    def value(a, b):
        return np.sum(np.log1p(np.sum(a * a * b, axis=-1)))

    h = 1e-6
    for arr, g in ((a, got[1]), (b, got[2])):
        fd = np.empty_like(arr)
        for k in np.ndindex(arr.shape):
            old = arr[k]
            arr[k] = old + h
            up = value(a, b)
            arr[k] = old - h
            fd[k] = (up - value(a, b)) / (2 * h)
            arr[k] = old
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_other_sums_stay_numpy_calls_and_equal_numpy():
    """A sum over axis 0, and a sum of a value that a max reads too: both numpy reduces in the driver."""
    x, y = T.var("x", (7, 20)), T.var("y", (20,))
    u = x * x - y
    outs = [T.sum(x * y + x, axis=0), T.sum(u, axis=-1), T.max(u, axis=-1)]
    f = function([x, y], outs, linker="numba")
    assert _driver(f).count("np_add_reduce") == 2 and "pairwise_sum(" not in f.source
    rng = np.random.default_rng(4)
    args = _rows(rng, 140).reshape(7, 20), _rows(rng, 20)
    for g, w in zip(f(*args), function([x, y], outs, linker="numpy")(*args)):
        assert _bits(g) == _bits(w)
