"""The tape and its backward sweep: accumulation, retain_graph, hooks, no_grad,
leaf semantics, errors, memory release, deep chains, kink conventions."""

import gc
import weakref

import numpy as np
import pytest

import symnum as S
from common.errors import DTypeError, GradError, ShapeError, TwogradError


def leaf(*values):
    return S.tensor(np.array(values, dtype=float), requires_grad=True)


def test_fan_out_gradients_are_summed():
    x = leaf(0.5, -1.5, 2.0)
    y = S.sin(x) * x + S.exp(x) * x  # x used four times
    y.sum().backward()
    xv = x.data
    np.testing.assert_allclose(x.grad.data, np.cos(xv) * xv + np.sin(xv) + np.exp(xv) * (xv + 1))


def test_broadcasting_is_undone():
    a = S.tensor(np.ones((2, 3, 4)) * 0.5, requires_grad=True)
    b = S.tensor(np.arange(3.0).reshape(3, 1), requires_grad=True)
    (a * b).sum().backward()
    np.testing.assert_allclose(b.grad.data, np.full((3, 1), 0.5 * 8))
    np.testing.assert_allclose(a.grad.data, np.broadcast_to(b.data, (2, 3, 4)))


def test_gradient_accumulates_across_backward_calls_and_zero_grad():
    x = leaf(1.0, 2.0)
    (x * x).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, 2 * x.data + 3)
    x.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.data, [3.0, 3.0])


def test_grads_never_share_memory():
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    (x + y).sum().backward()  # add passes the cotangent on unchanged to both
    assert not np.shares_memory(x.grad.numpy(), y.grad.numpy())  # (values are read-only: no write can tell)
    x.grad.data = [100.0, 100.0]
    assert y.grad.data[0] == 1.0


def test_implicit_seed_only_for_single_element_outputs():
    x = leaf(1.0, 2.0)
    with pytest.raises(GradError, match="gradient"):
        (x * 2.0).backward()
    (x * 2.0).backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad.data, [2.0, 20.0])
    with pytest.raises(GradError, match="shape"):
        (x * 2.0).backward(np.ones(3))


def test_double_backward_raises_and_retain_graph_allows_it():
    x = leaf(0.3)
    y = S.exp(S.sin(x)).sum()
    y.backward(retain_graph=True)
    y.backward()
    expected = np.exp(np.sin(0.3)) * np.cos(0.3)
    np.testing.assert_allclose(x.grad.data, [2 * expected])
    with pytest.raises(GradError, match="second time"):
        y.backward()


def test_backward_on_tensor_without_grad_is_an_error():
    x = S.tensor([1.0, 2.0])
    with pytest.raises(GradError, match="does not require grad"):
        S.sin(x).sum().backward()


@pytest.mark.parametrize("output, said", [
    (np.ones(3), r"output 0 is ndarray of shape \(3,\) and dtype float64, not a Tensor"),
    ("loss", r"output 0 is of type str, not a Tensor"),
])
def test_grad_of_something_not_a_tensor_names_it_whole_and_the_callers_line(output, said):
    """A numpy array passed as the output is one output, not a sequence of floats to complain about."""
    x = S.tensor([1.0, 2.0, 3.0], requires_grad=True)
    line = _line() + 2
    with pytest.raises(GradError, match=rf"grad: {said}.*{__file__}:{line}"):
        S.grad(output, [x])
    with pytest.raises(GradError, match=r"grad: output 0 \(float64 of shape \(\) .*does not require grad"):
        S.grad(S.tensor([1.0]).sum(), [x])


def _line() -> int:
    import sys
    return sys._getframe(1).f_lineno


def test_no_grad_records_nothing():
    x = leaf(1.0, 2.0)
    with S.no_grad():
        y = S.sin(x) * x
        assert S.is_grad_enabled() is False
        with S.enable_grad():
            z = S.sin(x)
    assert S.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None
    assert z.requires_grad and z.grad_fn is not None


def test_no_grad_is_per_thread():
    import threading

    seen = []
    with S.no_grad():
        t = threading.Thread(target=lambda: seen.append(S.is_grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_no_grad_as_decorator():
    @S.no_grad()
    def f(x):
        return S.sin(x)
    assert not f(leaf(1.0)).requires_grad


def test_detach_cuts_history():
    x = leaf(2.0)
    y = (x * x).detach()
    assert y.is_leaf and not y.requires_grad
    (y * x).sum().backward()
    np.testing.assert_allclose(x.grad.data, [4.0])


def test_leaf_and_non_leaf_semantics_and_retain_grad():
    x = leaf(1.0, 2.0)
    h = x * 3.0
    h2 = x * 4.0
    h.retain_grad()
    ((h * h).sum() + h2.sum()).backward()
    assert x.is_leaf and not h.is_leaf
    np.testing.assert_allclose(h.grad.data, 2 * h.data)
    assert h2.grad is None  # non-leaf without retain_grad
    np.testing.assert_allclose(x.grad.data, 18 * x.data + 4)


def test_hooks_fire_and_can_replace_the_gradient():
    x = leaf(1.0, 2.0)
    h = S.sin(x)
    seen = []
    h.register_hook(lambda g: seen.append(np.array(g.data)))
    remove = x.register_hook(lambda g: g * 2.0)
    (h * 3.0).sum().backward()
    np.testing.assert_allclose(seen[0], [3.0, 3.0])
    np.testing.assert_allclose(x.grad.data, 2 * 3 * np.cos(x.data))
    remove()
    x.zero_grad()
    S.sin(x).sum().backward()  # the hook is gone: the plain gradient
    np.testing.assert_allclose(x.grad.data, np.cos(x.data))


def test_grad_returns_without_accumulating_and_prunes():
    x, y = leaf(1.0, 2.0), leaf(3.0, 4.0)
    z = (S.exp(x) * y).sum()
    (gx,) = S.grad(z, [x], retain_graph=True)
    np.testing.assert_allclose(gx.data, np.exp(x.data) * y.data)
    assert x.grad is None and y.grad is None
    with pytest.raises(GradError, match="not used"):
        S.grad(z, [x, leaf(1.0)], retain_graph=True)
    gx2, unused = S.grad(z, [x, leaf(1.0)], allow_unused=True, retain_graph=True)
    assert unused is None
    # gradient with respect to a non-leaf
    e = S.exp(x)
    (ge,) = S.grad((e * y).sum(), e)
    np.testing.assert_allclose(ge.data, y.data)


def test_grad_pruning_skips_branches_that_do_not_lead_to_inputs():
    x, y = leaf(1.0), leaf(2.0)
    calls = []
    side = S.sin(y)
    side.register_hook(lambda g: calls.append(1))
    z = (S.exp(x) * side).sum()
    S.grad(z, x)
    assert calls == []  # the sin(y) branch never reaches x


def test_create_graph_gives_differentiable_gradients():
    x = leaf(0.7)
    y = (x ** 3).sum()
    (g,) = S.grad(y, x, create_graph=True)
    assert g.requires_grad
    (h,) = S.grad(g.sum(), x)
    np.testing.assert_allclose(h.data, [6 * 0.7])
    # backward(create_graph=True) leaves a .grad with history
    x2 = leaf(0.7)
    (x2 ** 3).sum().backward(create_graph=True)
    x2.grad.sum().backward()  # accumulates d(3x^2)/dx into x2.grad
    np.testing.assert_allclose(x2.grad.data, [3 * 0.49 + 6 * 0.7])


def test_kink_conventions():
    x = S.tensor([0.0, 0.0, 0.0], requires_grad=True)
    S.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0, 0.0])
    x.zero_grad()
    S.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [0.0, 0.0, 0.0])
    a, b = leaf(1.0, 2.0), leaf(1.0, 3.0)
    S.maximum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [0.5, 0.0])
    np.testing.assert_array_equal(b.grad.data, [0.5, 1.0])
    a.zero_grad(), b.zero_grad()
    S.minimum(a, b).sum().backward()
    np.testing.assert_array_equal(a.grad.data, [0.5, 1.0])
    m = leaf(3.0, 1.0, 3.0, 2.0)
    S.max(m).backward()
    np.testing.assert_array_equal(m.grad.data, [0.5, 0.0, 0.5, 0.0])
    m.zero_grad()
    S.min(leaf(1.0) * 0 + m).backward()
    np.testing.assert_array_equal(m.grad.data, [0.0, 1.0, 0.0, 0.0])
    z = S.tensor(0.0, requires_grad=True)
    with np.errstate(divide="ignore"):
        S.sqrt(z).backward()
    assert z.grad.data == np.inf


def test_operators_and_indexing_record():
    x = S.tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    y = (2.0 - x[1:, ::2] / 4.0) ** 2 @ np.ones((2, 5))
    y = -y.T.sum(axis=0) + abs(x[0]).mean() + x[np.array([0, 0, 2]), 1].sum()
    y.sum().backward()
    expected = np.zeros((3, 4))
    sub = x.data[1:, ::2]
    expected[1:, ::2] = -(2 * (2.0 - sub / 4.0) * (-1 / 4.0)) * 5
    # the scalar terms broadcast against the (2,) row sums: each counts twice
    expected[0] += 2 * np.sign(x.data[0]) / 4
    expected[0, 1] += 2 * 2
    expected[2, 1] += 2 * 1
    np.testing.assert_allclose(x.grad.data, expected)
    assert isinstance(np.ones(3) * S.tensor([1.0, 2.0, 3.0]), S.Tensor)


def test_weak_typing_of_python_scalars():
    x = S.tensor(np.ones(3, np.float32), requires_grad=True)
    y = x * 2.0 + 1
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32


def test_errors_name_the_op_shapes_and_user_line():
    a, b = S.tensor(np.ones((2, 3))), S.tensor(np.ones((4, 5)))
    with pytest.raises(ShapeError) as e:
        a @ b
    assert "matmul" in str(e.value) and "(2, 3)" in str(e.value) and "test_symnum_engine.py" in str(e.value)
    with pytest.raises(ShapeError, match="add"):
        a + b
    with pytest.raises(DTypeError):
        S.tensor([1, 2], requires_grad=True)
    with pytest.raises(TwogradError):
        S.sum(a, axis=5)


def test_memory_is_released_after_backward():
    x = S.tensor(np.random.default_rng(0).standard_normal(1000), requires_grad=True)
    a = S.sin(x)
    b = S.exp(a)
    loss = (b * a).sum()
    refs = [weakref.ref(a.data.base), weakref.ref(b.data.base)]  # .data is a read-only view of the value
    del a, b
    gc.collect()
    assert all(r() is not None for r in refs)  # held by the tape
    loss.backward(retain_graph=True)
    gc.collect()
    assert all(r() is not None for r in refs)  # retained
    loss.backward()
    gc.collect()
    assert all(r() is None for r in refs)  # freed


@pytest.mark.slow
def test_deep_chain_of_a_million_ops():
    n = 1_000_000
    c = np.array(1.0 - 1e-6)
    x = S.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(n):
        y = y * c
    y.backward()
    np.testing.assert_allclose(x.grad.data, (1.0 - 1e-6) ** n, rtol=1e-9)
    del y  # freeing a million-node tape must not recurse either


def test_grad_order_when_a_consumer_is_reached_before_its_input():
    # r = f(x1, a) with a = g(x1): the sweep must finish a before x1's node
    w = leaf(0.4)
    x1 = S.sin(w)
    a = S.exp(x1)
    r = (x1 * a).sum()
    (gw,) = S.grad(r, w)
    s = np.sin(0.4)
    np.testing.assert_allclose(gw.data, [(np.exp(s) + s * np.exp(s)) * np.cos(0.4)])


def test_a_node_reached_by_a_short_and_a_long_path_gets_both_before_its_rules_run():
    # a = sin(w) feeds r directly and through five exps: the sweep must wait for the long branch
    w = leaf(0.3, -0.4)
    a = S.sin(w)
    b = a
    for _ in range(5):
        b = S.exp(b) * 0.5
    r = (a + a * b).sum()  # a is add's first input: met before the branch that also leads to it
    (gw,) = S.grad(r, w)
    # float64 central differences of the same function written in numpy
    def f(v):
        av = np.sin(v)
        bv = av
        for _ in range(5):
            bv = np.exp(bv) * 0.5
        return np.sum(av + av * bv)
    eps = 1e-6
    expected = [(f(w.data + eps * e) - f(w.data - eps * e)) / (2 * eps) for e in np.eye(2)]
    np.testing.assert_allclose(gw.data, expected, rtol=1e-6)


def test_a_node_used_twice_by_one_op_gets_both_cotangents():
    w = leaf(0.3, 1.1)
    y = S.sin(w)
    (gw,) = S.grad((y * y).sum(), w)
    np.testing.assert_allclose(gw.data, 2 * np.sin(w.data) * np.cos(w.data))


def test_grad_with_respect_to_an_inner_node_of_a_one_leaf_tape_still_prunes():
    x = leaf(0.5, 2.0)
    calls = []
    below = S.exp(x)
    below.register_hook(lambda g: calls.append(1))
    inner = S.sin(below)
    (g,) = S.grad((inner * 3.0).sum(), inner)
    np.testing.assert_allclose(g.data, [3.0, 3.0])
    assert calls == []  # exp(x) lies behind the input asked for: its hook never runs


def test_python_scalars_on_either_side_keep_a_float32_tensor_float32():
    x = S.tensor(np.array([0.5, 2.0], np.float32), requires_grad=True)
    y = 2 - x / 4 + 3.0 ** x - 1.0 / x
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    xv = np.array([0.5, 2.0])
    np.testing.assert_allclose(x.grad.data, -0.25 + np.log(3.0) * 3.0 ** xv + 1 / xv ** 2, rtol=1e-5)
