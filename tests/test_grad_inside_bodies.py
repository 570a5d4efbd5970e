"""``symsym.grad`` called inside a loop's body: the derivative nodes it builds belong to the body.

The rewrites that ``grad`` runs rebuild nodes; while a body is being traced,
each rebuilt node must count as made inside it, or the body would close over
its own formal inputs as if they came from outside (and ``function`` would
ask for them). Checked on the values of gradient descent written as a loop,
and on the derivative of the whole loop against central differences.
"""

from __future__ import annotations

import numpy as np
import pytest

import symsym as Y
from common import api as T
from tests.derivchecks import fd_grad

STEPS, LR = 12, 0.1


def _descent_numpy(a: float, x0: float) -> float:
    """x <- x - lr * d/dx (a x^2 + sin(x)), STEPS times."""
    x = x0
    for _ in range(STEPS):
        x = x - LR * (2 * a * x + np.cos(x))
    return x


def _step(a):
    def body(x, _):
        g = Y.grad(a * x * x + T.sin(x), [x])[0]
        new = x - LR * g
        return new, new
    return body


@pytest.mark.parametrize("linker", ["numpy", "numba"])
def test_gradient_descent_in_a_scan_body(linker):
    if linker == "numba":
        pytest.importorskip("numba")
    a, x0 = T.var("a", ()), T.var("x0", ())
    last, _ = T.scan(_step(a), x0, None, length=STEPS)
    f = Y.function([a, x0], [last, *Y.grad(last, [a, x0])], linker=linker)
    value, da, dx0 = f(np.array(0.7), np.array(1.3))
    assert float(value) == pytest.approx(_descent_numpy(0.7, 1.3), rel=1e-12)
    want = fd_grad(lambda v: _descent_numpy(v[0], v[1]), np.array([0.7, 1.3]))
    np.testing.assert_allclose([float(da), float(dx0)], want, rtol=1e-6)


def test_gradient_descent_in_a_while_loop_body():
    x0 = T.var("x0", ())

    def body(carry):
        (x,) = carry
        return (x - LR * Y.grad(x * x, [x])[0],)

    (last,) = T.while_loop(lambda c: c[0] > 0.01, body, (x0,), max_iter=100)
    got = float(Y.function([x0], last)(np.array(1.0)))
    x = 1.0
    while x > 0.01:
        x = x - LR * 2 * x
    assert got == pytest.approx(x, rel=1e-12)
