"""symnum never returns a silently wrong gradient, and its misuse errors are clear.

Saved values cannot change between the forward and the backward (numpy
operands, ``.numpy()``, ``.data``, arrays given to ``Tensor``/``vjp``); a
replaced leaf is caught by its version; threads may sweep one tape at once;
float32 inputs get float32 gradients; every gradient entry point has
symsym's ``disconnected=`` policy; bad hooks, ``argnums`` and ``gradcheck``
inputs are TwogradErrors naming the user's line. Expected gradients are
closed forms or float64 central differences.
"""

from __future__ import annotations

import inspect
import sys
import threading

import numpy as np
import pytest

import symnum as S
import symsym
from benchmarks.finite import central_differences
from common import api as T
from common.errors import DTypeError, GradError, TwogradError
from common.site import Site, pinned_site


def here(offset: int = 0) -> str:
    """``file:line`` of the caller (or of the line ``offset`` below it): the line an error should name."""
    frame = inspect.currentframe().f_back
    return f"{frame.f_code.co_filename}:{frame.f_lineno + offset}"


@pytest.fixture
def busy_switching():
    """Let threads change hands every microsecond, so that sharing bugs show within a short test."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


# ------------------------------------------------------- values saved on the tape cannot change

@pytest.mark.parametrize("container", [np.array, list])
def test_writing_a_numpy_operand_after_the_forward_leaves_the_gradient_alone(container):
    x = S.tensor([0.3, -0.2], requires_grad=True)
    c = container([2.0, 3.0])
    y = S.sum(x * c)  # mul saves c for x's gradient: d/dx sum(x * c) = c
    c[0], c[1] = 100.0, 100.0
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 3.0])


def test_a_leafs_numpy_and_data_are_read_only():
    xv = np.array([0.5, 1.0])
    x = S.tensor(xv, requires_grad=True)
    y = S.sum(S.sin(x))
    for view in (x.numpy(), x.data, np.asarray(x)):
        with pytest.raises(ValueError, match="read-only"):
            view[0] = 9.0
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), np.cos(xv))
    assert np.array(x).flags.writeable  # np.array copies: a copy is the caller's to write


def test_an_outputs_numpy_is_read_only():
    xv = np.array([0.5, 1.0])
    x = S.tensor(xv, requires_grad=True)
    a = S.sin(x)
    loss = S.sum(a * a)  # mul saves a: d/dx sin(x)^2 = 2 sin(x) cos(x)
    with pytest.raises(ValueError, match="read-only"):
        a.numpy()[:] = 0.0
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.sin(xv) * np.cos(xv))


def test_tensor_and_Tensor_copy_the_callers_array():
    for make in (lambda a: S.tensor(a, requires_grad=True), lambda a: S.Tensor(a, requires_grad=True)):
        arr = np.array([0.5, 1.0])
        x = make(arr)
        y = S.sum(S.exp(x))
        arr[:] = 7.0
        y.backward()
        np.testing.assert_allclose(x.grad.numpy(), np.exp([0.5, 1.0]))
        np.testing.assert_array_equal(x.numpy(), [0.5, 1.0])


def test_a_vjp_function_differentiates_at_the_values_of_the_call():
    xv = np.array([0.5, 1.0])
    out, vjp_fn = S.vjp(S.sin, xv)
    xv[:] = 3.0
    (g,) = vjp_fn(np.ones(2))
    np.testing.assert_allclose(g, np.cos([0.5, 1.0]))
    np.testing.assert_allclose(out, np.sin([0.5, 1.0]))


def test_replacing_a_saved_leaf_raises_naming_the_op_and_the_line():
    x = S.tensor([0.5, 1.0], requires_grad=True)
    y = S.sum(S.sin(x)); saved_at = here()  # noqa: E702  (the error names this line)
    x.data = [2.0, 3.0]
    with pytest.raises(S.VersionError) as info:
        y.backward()
    message = str(info.value)
    assert isinstance(info.value, GradError)
    assert message.startswith("sin: ")
    assert f"saved at {saved_at}" in message
    assert "version 1, expected 0" in message
    assert x.grad is None


@pytest.mark.parametrize("kind", ["rmul", "mul", "function", "neg"])
def test_a_replaced_leaf_is_reported_where_an_operator_saved_it(kind):
    x = S.tensor([0.5, 1.0], requires_grad=True)
    if kind == "rmul":
        y = S.sum(S.sin(2.0 * x)); saved_at = here()  # noqa: E702
    elif kind == "mul":
        y = S.sum(S.sin(x * x)); saved_at = here()  # noqa: E702
    elif kind == "function":
        y = S.sum(S.sin(S.mul(x, 3.0))); saved_at = here()  # noqa: E702
    else:
        y = S.sum(S.sin(-x)); saved_at = here()  # noqa: E702
    x.data = [2.0, 3.0]; assigned_at = here()  # noqa: E702
    x.data = [4.0, 5.0]
    with pytest.raises(S.VersionError) as info:
        y.backward()
    assert f"saved at {saved_at}" in str(info.value)
    assert f"assigned at {assigned_at}" in str(info.value)
    assert "version 2, expected 0" in str(info.value)


def test_replacing_a_leaf_before_a_second_order_backward_raises():
    x = S.tensor([0.5, 1.0], requires_grad=True)
    y = S.sum(x * x * x)
    (g,) = S.grad(y, x, create_graph=True)  # 3 x^2, recorded on the tape
    x.data = [5.0, 5.0]
    with pytest.raises(S.VersionError, match="mul"):
        S.sum(g).backward()


def test_an_optimiser_step_between_backward_and_the_next_forward_is_fine():
    w = S.tensor([1.0, -2.0], requires_grad=True)
    for _ in range(3):
        loss = S.sum(w * w)
        loss.backward()
        with S.no_grad():
            w.data = w.data - 0.25 * w.grad.data  # w <- w - 0.25 * 2w = w / 2
        w.grad = None
    np.testing.assert_allclose(w.numpy(), [0.125, -0.25])
    assert w._version == 3


def test_the_value_of_a_tensor_with_history_cannot_be_replaced():
    x = S.tensor([0.5, 1.0], requires_grad=True)
    y = S.sin(x)
    with pytest.raises(GradError, match="detach"):
        y.data = [0.0, 0.0]
    d = y.detach()
    d.data = [0.0, 0.0]  # a detached copy can be: the tape never saw it
    np.testing.assert_allclose(y.numpy(), np.sin([0.5, 1.0]))


# ------------------------------------------------------------------------------------ threads

def _shared_tape(rng):
    """A tape with fan-out at every step (h is read three times), so sweeps count and sum."""
    xv = rng.standard_normal(16)

    def f(x):
        h = x
        for _ in range(60):
            h = S.sin(h) * S.cos(h) + h * 0.5
        return S.sum(h)

    x = S.tensor(xv, requires_grad=True)
    loss = f(x)
    with S.no_grad():
        expected = central_differences(lambda v: float(f(S.tensor(v))), xv)
    return x, loss, expected


def _in_threads(work, n_threads: int = 8) -> None:
    errors = []

    def run():
        try:
            work()
        except Exception as e:  # reported below, in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def test_threads_sweeping_one_tape_all_get_the_gradient(rng, busy_switching):
    x, loss, expected = _shared_tape(rng)
    reference = S.grad(loss, x, retain_graph=True)[0].numpy().copy()
    np.testing.assert_allclose(reference, expected, rtol=1e-6, atol=1e-8)
    results = []

    def work():
        for _ in range(50):
            results.append(S.grad(loss, x, retain_graph=True)[0].numpy())

    _in_threads(work)
    assert len(results) == 8 * 50
    for r in results:
        np.testing.assert_allclose(r, reference, rtol=1e-12, atol=1e-14)


def test_threads_running_backward_on_one_tape_all_accumulate(rng, busy_switching):
    x, loss, expected = _shared_tape(rng)

    def work():
        for _ in range(50):
            loss.backward(retain_graph=True)

    _in_threads(work)
    np.testing.assert_allclose(x.grad.numpy(), 400 * expected, rtol=1e-6, atol=1e-6)


def test_a_pinned_site_belongs_to_its_thread():
    pinned, built = threading.Event(), threading.Event()

    def elsewhere():
        with pinned_site(Site("elsewhere.py", 1)):
            pinned.set()
            built.wait(10)

    t = threading.Thread(target=elsewhere)
    t.start()
    pinned.wait(10)
    try:
        x = T.var("x", (3,)); line = here()  # noqa: E702
    finally:
        built.set()
        t.join()
    assert str(x.site) == line


def test_nodes_built_while_another_thread_runs_symsym_grad_name_their_line(busy_switching):
    w = T.var("w", (4,))
    cost = w
    for _ in range(200):
        cost = T.sin(cost) * 1.5
    cost = T.sum(cost)
    stop = threading.Event()

    def differentiate():
        while not stop.is_set():
            symsym.grad(cost, w)

    t = threading.Thread(target=differentiate)
    t.start()
    sites = []
    try:
        x = T.var("x", (3,))
        for _ in range(3000):
            sites.append(str(T.cos(x).site)); line = here()  # noqa: E702
    finally:
        stop.set()
        t.join()
    assert set(sites) == {line}


# ---------------------------------------------------------------------------------- float32

def test_a_float32_leaf_gets_a_float32_grad():
    xv = np.array([0.5, 1.5], np.float32)
    c = np.array([2.0, 3.0])  # a float64 operand: the output and its cotangents are float64
    x = S.tensor(xv, requires_grad=True)
    S.sum(S.sin(x) * c).backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad.numpy(), c * np.cos(xv.astype(np.float64)), rtol=1e-6)

    x = S.tensor(xv, requires_grad=True)
    (g,) = S.grad(S.sum(S.sin(x) * c), x)
    assert g.dtype == np.float32
    (g2,) = S.grad(S.sum(x * x * c), x, create_graph=True)
    assert g2.dtype == np.float32 and g2.requires_grad
    np.testing.assert_allclose(g2.numpy(), 2 * xv * c, rtol=1e-6)


def test_functional_grad_of_a_float32_argument_is_float32():
    c = np.array([2.0, 3.0])
    xv = np.array([0.5, 1.5], np.float32)
    g = S.grad(lambda x: S.sum(S.exp(x) * c))(xv)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, c * np.exp(xv.astype(np.float64)), rtol=1e-6)


# ---------------------------------------------------------------------- the disconnected policy

def _engine(policy):
    x, lonely = S.tensor([0.5, 1.0], requires_grad=True), S.tensor([1.0, 2.0, 3.0], requires_grad=True)
    gx, gl = S.grad(S.sum(S.sin(x)), [x, lonely], **policy)
    return np.asarray(gx.data), None if gl is None else np.asarray(gl.data)


def _gradients(policy):
    x, lonely = T.var("x", (2,)), T.var("lonely", (3,))
    gx, gl = S.gradients(T.sum(T.sin(x)), [x, lonely], {x: np.array([0.5, 1.0]), lonely: np.ones(3)}, **policy)
    return gx, gl


def _functional(policy):
    return S.grad(lambda x, lonely: S.sum(S.sin(x)), (0, 1), **policy)(np.array([0.5, 1.0]), np.ones(3))


def _symsym(policy):
    x, lonely = T.var("x", (2,)), T.var("lonely", (3,))
    gs = symsym.grad(T.sum(T.sin(x)), [x, lonely], **policy)
    return [None if g is None else symsym.function([x, lonely], [g])(np.array([0.5, 1.0]), np.ones(3))[0]
            for g in gs]


@pytest.mark.parametrize("entry", [_engine, _gradients, _functional, _symsym])
def test_one_disconnected_policy_on_every_entry_point(entry):
    with pytest.raises(GradError, match="disconnected") as info:
        entry({})
    assert __file__ in str(info.value)
    with pytest.raises(GradError, match="disconnected"):
        entry({"disconnected": "raise"})
    gx, gl = entry({"disconnected": "zero"})
    np.testing.assert_allclose(gx, np.cos([0.5, 1.0]))
    np.testing.assert_array_equal(gl, np.zeros(3))
    gx, gl = entry({"disconnected": "none"})
    np.testing.assert_allclose(gx, np.cos([0.5, 1.0]))
    assert gl is None
    with pytest.raises(GradError, match="'raise', 'zero' or 'none'"):
        entry({"disconnected": "ignore"})


def test_allow_unused_still_means_none():
    x, lonely = S.tensor([0.5], requires_grad=True), S.tensor([1.0], requires_grad=True)
    assert S.grad(S.sum(S.sin(x)), [x, lonely], allow_unused=True)[1] is None


def test_a_function_that_ignores_its_argument_is_disconnected():
    with pytest.raises(GradError, match="disconnected"):
        S.grad(lambda x: S.tensor(2.0))(np.ones(2))
    np.testing.assert_array_equal(S.grad(lambda x: S.tensor(2.0), disconnected="zero")(np.ones(2)), np.zeros(2))
    np.testing.assert_array_equal(S.jacobian(lambda x, y: x * 2.0, 1)(np.ones(2), np.ones(3)), np.zeros((2, 3)))
    np.testing.assert_array_equal(S.hvp(lambda x: S.sum(x * 3.0), np.ones(2), np.ones(2)), np.zeros(2))


# ---------------------------------------------------------------------- hooks, argnums, gradcheck

def test_a_hook_returning_the_wrong_shape_is_named():
    x = S.tensor([0.5, 1.0], requires_grad=True)

    def widen(g):
        return np.ones(5)

    x.register_hook(widen)
    with pytest.raises(GradError) as info:
        S.sum(S.sin(x)).backward()
    message = str(info.value)
    assert "widen" in message and "leaf of shape (2,)" in message and "(5,)" in message
    assert f"{__file__}:{widen.__code__.co_firstlineno}" in message
    assert x.grad is None


def test_a_hook_returning_the_wrong_dtype_is_named():
    x = S.tensor([0.5, 1.0], requires_grad=True)
    h = S.sin(x)

    def narrow(g):
        return g.numpy().astype(np.float32)

    h.register_hook(narrow)
    with pytest.raises(GradError) as info:
        S.sum(h * 2.0).backward()
    message = str(info.value)
    assert "narrow" in message and "output of sin" in message and "float32" in message
    assert f"{__file__}:{narrow.__code__.co_firstlineno}" in message


def test_a_hook_returning_a_good_replacement_is_used():
    x = S.tensor([0.5, 1.0], requires_grad=True)
    x.register_hook(lambda g: g.numpy() * 3.0)  # an array of the same shape and dtype is fine
    S.sum(S.sin(x)).backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * np.cos([0.5, 1.0]))


def test_gradcheck_without_float_inputs_says_so():
    line = here(2)
    with pytest.raises(DTypeError, match="gradcheck") as info:
        S.gradcheck(lambda a: a * 2, [np.array([1, 2])])
    assert isinstance(info.value, TwogradError) and line in str(info.value)
    with pytest.raises(DTypeError, match="gradcheck"):
        S.gradcheck(lambda a: a * 2.0, [S.tensor([1.0, 2.0])])  # a float tensor that does not require grad


def test_argnums_out_of_range_is_a_twograd_error():
    line = here(2)
    with pytest.raises(GradError, match="argnums 3") as info:
        S.grad(lambda x: S.sum(x), argnums=3)(np.ones(2))
    assert line in str(info.value) and "1 positional argument" in str(info.value)
    with pytest.raises(GradError, match="argnums"):
        S.jacobian(lambda x, y: x * y, (0, 2))(np.ones(2), np.ones(2))
    with pytest.raises(GradError, match="argnums"):
        S.grad(lambda x: S.sum(x), argnums="0")
    with pytest.raises(GradError, match="twice"):
        S.grad(lambda x, y: S.sum(x * y), argnums=(0, 0))
    g = S.grad(lambda x, y: S.sum(x * y), argnums=-1)(np.array([2.0]), np.array([3.0]))
    np.testing.assert_allclose(g, [2.0])
