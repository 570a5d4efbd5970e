"""symnum.cond under symnum.vmap with a predicate that differs across the batch: each element runs its branch."""

import numpy as np
import pytest

import symnum as S
from common.errors import GraphError


def _branchy(x):
    return S.cond(x > 0, S.sqrt, S.square, x)


XS = np.array([-2.0, -0.5, 0.25, 9.0])


def test_values_are_each_elements_taken_branch():
    with np.errstate(all="raise"):  # sqrt never runs on a negative element
        got = S.vmap(_branchy)(XS)
    np.testing.assert_array_equal(got, np.where(XS > 0, np.sqrt(np.abs(XS)), XS * XS))


def test_per_example_gradients_have_no_where_trap():
    """d/dx of sqrt is 1/(2 sqrt x), of x^2 is 2x: at the negative elements -4 and -1, not NaN."""
    with np.errstate(all="raise"):
        got = S.vmap(S.grad(_branchy))(XS)
    want = np.where(XS > 0, 0.5 / np.sqrt(np.abs(XS)), 2 * XS)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    h = 1e-6
    fd = [(float(_branchy(x + h)) - float(_branchy(x - h))) / (2 * h) for x in XS]
    np.testing.assert_allclose(got, fd, rtol=1e-7)


def test_nested_outputs_and_an_unmapped_operand():
    def f(x, y):
        return S.cond(x > 0, lambda a, b: (a * b, [a]), lambda a, b: (a - b, [b]), x, y)

    prod, (kept,) = S.vmap(f, in_axes=(0, None))(XS, 3.0)
    np.testing.assert_array_equal(prod, np.where(XS > 0, XS * 3.0, XS - 3.0))
    np.testing.assert_array_equal(kept, np.where(XS > 0, XS, 3.0))


def test_branches_disagreeing_across_elements_is_an_error():
    def f(x):
        return S.cond(x > 0, lambda a: a, lambda a: (a, a), x)

    with pytest.raises(GraphError, match="structure"):
        S.vmap(f)(XS)
