"""Every op of the table through symnum: values against numpy, first derivatives
against central differences and second derivatives against second differences of
each case's numpy reference (float64), broadcasting included.

Parametrised by the cases in ``opcases``, so a new op with a case is covered here
without touching this file, and an op without one fails ``test_every_op_has_a_case``.
"""

import numpy as np
import pytest
from opcases import BODIED, CASES

import symnum
from common import OPS


def _tensors(case, arrays):
    return [symnum.Tensor(np.asarray(a), requires_grad=k in case.wrt) for k, a in enumerate(arrays)]


def test_every_op_has_a_case():
    assert set(OPS) - BODIED <= {c.op for c in CASES}


def test_every_op_is_a_symnum_function():
    for name in OPS:
        assert callable(getattr(symnum, name)), name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_matches_numpy(case, rng):
    arrays = case.inputs(rng)
    out = case.fn(symnum.tape, *[symnum.tensor(a) for a in arrays])
    np.testing.assert_allclose(np.asarray(out.data), case.ref(*arrays), rtol=1e-6, atol=1e-12)
    assert not out.requires_grad  # nothing required grad: nothing recorded
    assert out.grad_fn is None


@pytest.mark.parametrize("case", [c for c in CASES if c.wrt], ids=[c.id for c in CASES if c.wrt])
def test_gradcheck(case, rng):
    arrays = case.inputs(rng)
    assert symnum.gradcheck(lambda *xs: case.fn(symnum.tape, *xs), _tensors(case, arrays), reference=case.ref)


DENSE_SECOND_ORDER = 64
"""The most input elements whose whole second-derivative matrix is checked against the reference's."""


@pytest.mark.parametrize("case", [c for c in CASES if c.wrt and c.second_order],
                         ids=[c.id for c in CASES if c.wrt and c.second_order])
def test_gradgradcheck(case, rng):
    """Second derivatives against the numpy reference's: a numeric Jacobian of its numeric Jacobian, so
    n^2 reference calls; past :data:`DENSE_SECOND_ORDER` inputs (the convolutions, whose references are
    loops written out) against differences of the tape's own gradient here, the reference's second
    differences checking them along directions instead (``tests/refchecks.py``, every case)."""
    arrays = case.inputs(rng)
    small = sum(np.size(a) for a in arrays) <= DENSE_SECOND_ORDER
    assert symnum.gradgradcheck(lambda *xs: case.fn(symnum.tape, *xs), _tensors(case, arrays),
                                reference=case.ref if small else None)


@pytest.mark.parametrize("case", [c for c in CASES if not c.wrt], ids=[c.id for c in CASES if not c.wrt])
def test_non_differentiated_cases_record_consistently(case, rng):
    """Cases without ``wrt``: when the output still requires grad (a cast), a backward runs and
    every float input gets a gradient of its own shape; otherwise nothing was recorded."""
    arrays = case.inputs(rng)
    xs = [symnum.Tensor(np.asarray(a), requires_grad=np.asarray(a).dtype.kind == "f") for a in arrays]
    out = case.fn(symnum.tape, *xs)
    if not out.requires_grad:
        assert out.grad_fn is None
        return
    out.backward(np.ones(out.shape, out.dtype))
    for x in xs:
        if x.grad is not None:
            assert x.grad.shape == x.shape


def test_cast_roundtrip_gradient_is_identity():
    x = symnum.tensor([0.5, -1.25, 3.0], requires_grad=True)
    symnum.cast(symnum.cast(x, "float32"), "float64").sum().backward()
    np.testing.assert_array_equal(x.grad.data, np.ones(3))
    assert x.grad.dtype == np.float64


def test_sign_and_stop_gradient_pass_no_gradient():
    x = symnum.tensor([0.5, -1.0], requires_grad=True)
    assert not symnum.sign(x).requires_grad
    assert not symnum.stop_gradient(x).requires_grad
    (symnum.stop_gradient(x) * x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, x.data)  # only the direct path counts
