"""symnum.scan / while_loop / cond: plain Python loops on the tape, checked against numpy loops
(values), central finite differences in float64 (gradients, first and second order) and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

import symnum
from benchmarks.finite import central_differences, rel_err
from common.errors import DTypeError, GraphError, ShapeError, TwogradError


def _np_recurrence(w, h0, xs, reverse=False):
    """The reference: h <- tanh(w * h + x), y = h * h, as a numpy loop; (h, ys) in the order of xs."""
    h, ys = h0.copy(), [None] * len(xs)
    for i in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        h = np.tanh(w * h + xs[i])
        ys[i] = h * h
    return h, np.array(ys)


def _sn_recurrence(w, h0, xs, reverse=False):
    def step(h, x):
        h = symnum.tanh(w * h + x)
        return h, h * h
    return symnum.scan(step, h0, xs, reverse=reverse)


@pytest.fixture
def seq(rng):
    return rng.normal(size=3), rng.normal(size=3), rng.normal(size=(7, 3))


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_values_match_a_numpy_loop(seq, reverse):
    w, h0, xs = seq
    h, ys = _sn_recurrence(symnum.tensor(w), symnum.tensor(h0), xs, reverse)
    h_ref, ys_ref = _np_recurrence(w, h0, xs, reverse)
    assert rel_err(h.numpy(), h_ref) < 1e-15 and rel_err(ys.numpy(), ys_ref) < 1e-15
    assert ys.shape == (7, 3)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_gradient_matches_finite_differences(seq, reverse):
    w, h0, xs = seq
    weights = np.linspace(0.5, 1.5, 21).reshape(7, 3)

    def loss_np(w_, h0_, xs_):
        h, ys = _np_recurrence(w_, h0_, xs_, reverse)
        return np.sum(h) + np.sum(weights * ys)

    def loss_sn(w_, h0_, xs_):
        h, ys = _sn_recurrence(w_, h0_, xs_, reverse)
        return symnum.sum(h) + symnum.sum(weights * ys)

    grads = symnum.grad(loss_sn, argnums=(0, 1, 2))(w, h0, xs)
    refs = [central_differences(lambda v: loss_np(v, h0, xs), w),
            central_differences(lambda v: loss_np(w, v, xs), h0),
            central_differences(lambda v: loss_np(w, h0, v), xs)]
    for g, ref in zip(grads, refs):
        assert rel_err(g, ref) < 1e-8


def test_scan_tuple_carry_no_xs_and_list_outputs():
    """A tuple carry, xs=None with length, and a list of outputs: damped oscillator by explicit Euler."""
    def euler_sn(k):
        def step(state, _):
            p, v = state
            p2, v2 = p + 0.1 * v, v - 0.1 * k * p
            return (p2, v2), [p2, v2 * v2]
        (p, v), (ps, vv) = symnum.scan(step, (symnum.tensor(1.0), symnum.tensor(0.0)), None, length=30)
        return p + v + symnum.sum(ps) + 0.5 * symnum.sum(vv)

    def euler_np(k):
        p, v, total = 1.0, 0.0, 0.0
        for _ in range(30):
            p, v = p + 0.1 * v, v - 0.1 * k * p
            total += p + 0.5 * v * v
        return p + v + total

    k = np.array(2.0)
    value = euler_sn(symnum.tensor(k))
    assert abs(float(value.item()) - euler_np(k)) < 1e-12
    g = symnum.grad(euler_sn)(k)
    assert rel_err(g, central_differences(euler_np, k)) < 1e-8


def test_scan_second_order_with_create_graph(seq):
    """d2/dw2 through a scan: the backward recorded with create_graph and differentiated again."""
    w, h0, xs = seq

    def loss_sn(w_):
        h, ys = _sn_recurrence(w_, h0, xs)
        return symnum.sum(h * h) + symnum.sum(ys)

    def grad_np(w_):  # the first derivative by differences of a numpy loop, differenced again below
        return central_differences(lambda v: (lambda h, ys: np.sum(h * h) + np.sum(ys))(
            *_np_recurrence(v, h0, xs)), w_, h=1e-5)

    wt = symnum.tensor(w, requires_grad=True)
    (g,) = symnum.grad(loss_sn(wt), [wt], create_graph=True)
    rows = [symnum.grad(g[k], [wt], retain_graph=True)[0].numpy() for k in range(3)]
    hessian = np.array(rows)
    ref = central_differences(grad_np, w, h=1e-4)
    assert rel_err(hessian, ref) < 1e-5
    assert rel_err(symnum.hessian(loss_sn)(w), ref) < 1e-5


def test_scan_of_length_zero_gives_empty_outputs():
    h, ys = symnum.scan(lambda c, x: (c + x, (c * x, c)), np.zeros(2), np.zeros((0, 2)))
    assert np.array_equal(np.asarray(h), np.zeros(2))
    assert ys[0].shape == (0, 2) and ys[1].shape == (0, 2)


def _newton_sqrt_np(a, tol=1e-13):
    x = 1.0 + a
    while abs(x * x - a) > tol * a:
        x = 0.5 * (x + a / x)
    return x


def test_while_loop_newton_gradient_is_the_implicit_one():
    """sqrt(a) by Newton's method to a tolerance: the tape's gradient through the steps that ran
    agrees with the implicit-function theorem's 1 / (2 sqrt a) and with finite differences."""
    def newton(a):
        return symnum.while_loop(lambda x: symnum.abs(x * x - a) > 1e-13 * a,
                                 lambda x: 0.5 * (x + a / x), 1.0 + a)

    for a in (0.3, 2.0, 50.0):
        assert abs(float(newton(symnum.tensor(a)).item()) - np.sqrt(a)) < 1e-12 * np.sqrt(a)
        g = float(symnum.grad(newton)(np.array(a)))
        assert rel_err(g, 0.5 / np.sqrt(a)) < 1e-10
        assert rel_err(g, central_differences(_newton_sqrt_np, np.array(a))) < 1e-7


def test_while_loop_tuple_carry_and_max_iter():
    body = lambda s: (s[0] + 1, s[1] * 2.0)
    count, value = symnum.while_loop(lambda s: s[0] < 100, body, (0, symnum.tensor(1.0)), max_iter=5)
    assert count == 5 and float(value.item()) == 32.0
    count, value = symnum.while_loop(lambda s: s[0] < 3, body, (0, symnum.tensor(1.0)))
    assert count == 3 and float(value.item()) == 8.0
    assert symnum.while_loop(lambda x: x > 10.0, lambda x: x + 1.0, 0.0) == 0.0  # no step runs


@pytest.mark.parametrize("x, expected", [(-1.0, -2.0), (4.0, 0.25)])
def test_cond_runs_and_differentiates_only_the_taken_branch(x, expected):
    f = lambda v: symnum.cond(v > 0, symnum.sqrt, symnum.square, v)
    g = float(symnum.grad(f)(np.array(x)))
    assert g == expected and np.isfinite(g)


def test_cond_with_several_operands_second_order():
    f = lambda v, w: symnum.cond(symnum.sum(v) > 0, lambda a, b: symnum.sum(a * a * b),
                                 lambda a, b: symnum.sum(symnum.sin(a) * b), v, w)
    v, w = np.array([0.3, -0.1]), np.array([2.0, 5.0])
    assert rel_err(symnum.hessian(f)(v, w), np.diag(2 * w)) < 1e-15
    assert rel_err(symnum.hessian(f)(-v, w), np.diag(-np.sin(-v) * w)) < 1e-15


def test_the_same_model_on_symnum_and_numpy_loops_with_while_and_cond():
    """A Python while and if on the tape give the gradient the control-flow functions give."""
    def plain(a):
        x = 1.0 + a
        while bool(symnum.abs(x * x - a) > 1e-13 * a):
            x = 0.5 * (x + a / x)
        return symnum.sqrt(x) if bool(a > 1) else x * x

    def structured(a):
        x = symnum.while_loop(lambda x: symnum.abs(x * x - a) > 1e-13 * a, lambda x: 0.5 * (x + a / x), 1.0 + a)
        return symnum.cond(a > 1, symnum.sqrt, lambda v: v * v, x)

    for a in (0.5, 3.0):
        assert float(symnum.grad(plain)(np.array(a))) == float(symnum.grad(structured)(np.array(a)))


# ----------------------------------------------------------------------------------- errors

def test_carry_that_changes_shape_names_the_user_line():
    with pytest.raises(ShapeError, match=r"scan: carry leaf 0 changes shape from \(2,\) to \(1, 2\).*"
                                         r"test_control_symnum.py"):
        symnum.scan(lambda c, x: (c[None] + x, x), np.zeros(2), np.ones((3, 2)))


def test_carry_that_changes_dtype_or_structure_is_refused():
    with pytest.raises(DTypeError, match="while_loop: carry leaf 0 changes dtype from float64 to int64"):
        symnum.while_loop(lambda c: True, lambda c: np.zeros(2, dtype=np.int64), np.zeros(2))
    with pytest.raises(GraphError, match="scan: the body must return a carry of the structure"):
        symnum.scan(lambda c, x: ((c, c), x), np.zeros(2), np.ones((3, 2)))
    with pytest.raises(GraphError, match="scan: the body must return a pair"):
        symnum.scan(lambda c, x: c, np.zeros(2), np.ones((3, 2)))


def test_bad_sequences_and_predicates_are_user_errors():
    step = lambda c, x: (c, x)
    cases = [lambda: symnum.scan(step, 0.0, (np.ones(3), np.ones(4))),
             lambda: symnum.scan(step, 0.0, np.ones(3), length=4),
             lambda: symnum.scan(step, 0.0, None),
             lambda: symnum.scan(step, 0.0, np.array(1.0)),
             lambda: symnum.scan(step, 0.0, None, length=-1),
             lambda: symnum.while_loop(lambda c: True, lambda c: c, 0.0, max_iter=1.5),
             lambda: symnum.cond(np.array([True, False]), lambda: 1, lambda: 2),
             lambda: symnum.while_loop(lambda c: symnum.tensor([True, True]), lambda c: c, 0.0)]
    for case in cases:
        with pytest.raises(TwogradError, match="test_control_symnum.py"):
            case()


def test_outputs_may_be_none_and_lists_and_tuples_are_told_apart():
    """As on the graph (common.body.flatten): y None gives ys None; a tuple carry coming back as a list is
    a different structure."""
    carry, ys = symnum.scan(lambda c, x: (c + x, None), np.zeros(2), np.ones((3, 2)))
    assert ys is None and np.array_equal(np.asarray(carry), [3.0, 3.0])
    with pytest.raises(GraphError, match=r"got list\(leaf\) for tuple\(leaf\)"):
        symnum.scan(lambda c, x: ([c[0] + x], x), (np.zeros(2),), np.ones((3, 2)))


@pytest.mark.parametrize("n", [63, 64, 65, 4200])
def test_long_scans_stack_their_outputs_exactly(n, rng):
    """Outputs of many steps (stacked as a tree of at most 64 inputs per op, so the backward stays linear)
    are the steps' values in order, and the gradient through them is the closed form."""
    xs, weights = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    w = np.array(0.7)
    f = lambda w_: symnum.sum(weights * symnum.scan(lambda c, x: (c + w_ * x, (c + w_ * x) * 1.0), np.zeros(2),
                                                    xs)[1])
    cums = np.cumsum(xs, axis=0)
    _, ys = symnum.scan(lambda c, x: (c + w * x, c + w * x), np.zeros(2), xs)
    assert ys.shape == (n, 2) and rel_err(ys.numpy(), w * cums) < 1e-12
    assert rel_err(symnum.grad(f)(w), np.sum(weights * cums)) < 1e-12
