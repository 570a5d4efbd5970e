"""symsym on every op of the op table: values, gradients and second derivatives.

Gradients (from the graph, evaluated both by the reference interpreter and by
the compiled function) are checked against central finite differences of the
case's plain-numpy reference, in float64. Second derivatives (Hessian-vector
products along a direction over every differentiated input, so the mixed
blocks too) are checked against second differences of the same reference,
which no rule touches: a first-derivative rule right only at the sampled
points still gets a wrong second derivative there.
"""

import numpy as np
import pytest
from opcases import BODIED, CASES
from refchecks import Point, hvp_atol, ref_hvp

import common
from benchmarks.finite import central_differences
from common import api as T
from common.ops import OPS
from symsym import function, grad

EPS = 1e-6
DIFF = [c for c in CASES if c.wrt]


def _setup(case, seed=0):
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) for a in case.inputs(rng)]
    xs = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    out = case.fn(T.symbolic, *xs)
    weights = rng.standard_normal(np.shape(case.ref(*arrays)))  # numpy's shape: a mask's count is data
    return rng, arrays, xs, out, weights


def _fd(f, arrays, k):
    """Central differences of the scalar ``f(arrays)`` along every element of ``arrays[k]``."""
    return central_differences(lambda a: f([*arrays[:k], a, *arrays[k + 1:]]), arrays[k], EPS)


def _eval(outputs, xs, arrays):
    """The reference interpreter, fed only the inputs the outputs depend on."""
    used = {id(v) for v in common.inputs_of(outputs)}
    return common.evaluate(outputs, {x: a for x, a in zip(xs, arrays) if id(x) in used})


def test_every_op_is_covered():
    covered = {c.op for c in CASES}
    assert covered == set(OPS) - BODIED, sorted((set(OPS) - BODIED) ^ covered)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_compiled_value_matches_reference(case):
    _, arrays, xs, out, _ = _setup(case)
    f = function(xs, out)
    got = f(*arrays)
    np.testing.assert_allclose(got, case.ref(*arrays), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got, _eval(out, xs, arrays), rtol=1e-12, atol=0)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_gradient_matches_finite_differences(case):
    _, arrays, xs, out, w = _setup(case)
    cost = T.sum(out * T.const(w))
    wrt = [xs[k] for k in case.wrt]
    grads = grad(cost, wrt)
    interpreted = _eval(grads, xs, arrays)
    compiled = function(xs, grads)(*arrays)
    ref_cost = lambda arrs: float(np.sum(case.ref(*arrs) * w))
    for k, gi, gc in zip(case.wrt, interpreted, compiled):
        expected = _fd(ref_cost, arrays, k)
        assert gi.shape == arrays[k].shape and gc.shape == arrays[k].shape
        np.testing.assert_allclose(gi, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gc, gi, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", [c for c in DIFF if c.second_order],
                         ids=[c.id for c in DIFF if c.second_order])
def test_hessian_vector_product_matches_second_differences(case):
    rng, arrays, xs, out, w = _setup(case)
    wrt = [xs[k] for k in case.wrt]
    grads = grad(T.sum(out * T.const(w)), wrt)
    vs = [rng.standard_normal(arrays[k].shape) for k in case.wrt]
    second = grad(sum((T.sum(g * T.const(v)) for g, v in zip(grads, vs)), T.const(0.0)), wrt,
                  disconnected="zero")
    got = function(xs, second)(*arrays)
    interpreted = _eval(second, xs, arrays)
    pt = Point(case, arrays, w, vs)
    for k, gc, gi, expected in zip(case.wrt, got, interpreted, ref_hvp(pt)):
        np.testing.assert_allclose(gc, expected, rtol=1e-5, atol=hvp_atol(pt), err_msg=f"(H v) block x{k}")
        np.testing.assert_allclose(gi, gc, rtol=1e-10, atol=1e-12)
