"""symsym.function: generated straight-line numpy code, its memory plan and its input checks."""

import numpy as np
import pytest

import common
from common import api as T
from common.errors import FeedError, GradError, ShapeError, TwogradError
from symsym import compile as compile_module
from symsym import function, grad


def _mlp():
    x = T.var("x", (None, 5))
    w1 = T.var("w1", (5, 8))
    b1 = T.var("b1", (8,))
    w2 = T.var("w2", (8, 3))
    t = T.var("t", (None, 3))
    h = T.relu(x @ w1 + b1)
    loss = T.mean(T.softmax_cross_entropy(h @ w2, t))
    return [x, w1, b1, w2, t], loss


def _mlp_values(rng, n=7):
    t = np.eye(3)[rng.integers(3, size=n)]
    return [rng.standard_normal((n, 5)), rng.standard_normal((5, 8)), rng.standard_normal(8),
            rng.standard_normal((8, 3)), t]


def test_outputs_equal_the_reference_interpreter():
    inputs, loss = _mlp()
    outs = [loss, *grad(loss, inputs[1:4])]
    values = _mlp_values(np.random.default_rng(0))
    expected = common.evaluate(outs, dict(zip(inputs, values)))
    for opt in (True, False):
        got = function(inputs, outs, optimize=opt)(*values)
        assert isinstance(got, list) and len(got) == 4
        for a, b in zip(got, expected):
            assert isinstance(a, np.ndarray)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_single_output_gives_an_array_and_attributes():
    x = T.var("x", (3,))
    f = function([x], T.sum(T.sin(x) * 2.0))
    out = f(np.array([0.1, 0.2, 0.3]))
    assert isinstance(out, np.ndarray) and out.shape == ()
    np.testing.assert_allclose(out, 2 * np.sin([0.1, 0.2, 0.3]).sum())
    assert f.source.startswith("def fn(a0):") and "np_sin" in f.source
    assert set(f.timings) == {"optimize", "compile"} and all(t >= 0 for t in f.timings.values())
    assert isinstance(f.graph, list) and f.report["nodes_after"] <= f.report["nodes_before"]


def test_generated_code_is_straight_line_and_frees_dead_values():
    x = T.var("x", (compile_module.INLINE_SIZE + 1,))  # big enough to get a statement per node
    y = x
    for _ in range(6):
        y = T.tanh(y) * 1.5
    f = function([x], grad(T.sum(y), x))
    body = f.source.splitlines()[1:]
    assert not any(line.strip().startswith(("for ", "while ", "if ")) for line in body)
    # one register per live value: far fewer names than statements
    registers = {line.split("=")[0].strip() for line in body if "=" in line}
    assert len(registers) < len(body) // 2
    assert "del " in f.source
    xv = np.linspace(-2.0, 2.0, compile_module.INLINE_SIZE + 1)
    ref = common.evaluate(grad(T.sum(y), x), {x: xv})
    np.testing.assert_allclose(f(xv), ref, rtol=1e-12)


def test_memory_plan_releases_intermediates():
    """Peak memory is that of the live values, not of every intermediate."""
    import tracemalloc

    x = T.var("x", (200_000,))  # 1.6 MB per value
    y = x
    for _ in range(12):
        y = T.sin(y) + 0.5
    f = function([x], T.sum(y))
    xv = np.linspace(0, 1, 200_000)
    tracemalloc.start()
    try:
        out = f(xv)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * xv.nbytes  # keeping all 24 intermediates would take 24x
    ref = xv
    for _ in range(12):
        ref = np.sin(ref) + 0.5
    np.testing.assert_allclose(out, ref.sum(), rtol=1e-12)


def test_input_checks():
    x = T.var("x", (None, 3))
    k = T.var("k", (), "int64")
    f = function([x, k], T.sum(x) * T.cast(k, "float64"))
    np.testing.assert_allclose(f(np.ones((2, 3)), np.int64(2)), 12.0)
    with pytest.raises(FeedError, match="shape"):
        f(np.ones((2, 4)), np.int64(2))
    with pytest.raises(FeedError, match="dtype"):
        f(np.ones((2, 3), np.float32), np.int64(2))
    with pytest.raises(FeedError, match="2 inputs"):
        f(np.ones((2, 3)))
    with pytest.raises(FeedError, match="not listed"):
        function([k], T.sum(x))
    with pytest.raises(FeedError, match="variables"):
        function([T.sin(x)], T.sum(x))
    with pytest.raises(GradError, match="disconnected"):
        function([x], [None])
    assert issubclass(FeedError, TwogradError)


def test_runtime_shape_errors_name_the_op_and_the_user_line():
    a = T.var("a", (None,))
    b = T.var("b", (None,))
    f = function([a, b], a + b)
    with pytest.raises(ShapeError, match=r"add.*test_symsym_compile.py"):
        f(np.ones(2), np.ones(3))


def test_constants_and_params_are_bound_not_pasted():
    x = T.var("x", (2, 3))
    c = T.const(np.arange(6.0).reshape(2, 3))
    y = T.max(x * c, axis=1) + T.full_like(x[:, 0], float("inf"))
    f = function([x], y, optimize=False)
    assert "value=p_" in f.source  # inf has no literal: bound as a global
    assert "np_max(" in f.source and "axis=(1,)" in f.source
    np.testing.assert_array_equal(f(np.ones((2, 3))), [np.inf, np.inf])


def test_huge_graphs_run_the_same_plan_from_a_table(monkeypatch):
    monkeypatch.setattr(compile_module, "MAX_STRAIGHT_LINE", 10)
    inputs, loss = _mlp()
    outs = [loss, *grad(loss, inputs[1:4])]
    f = function(inputs, outs)
    assert "for impl, out, ins, kw, dead in program" in f.source
    values = _mlp_values(np.random.default_rng(1))
    for a, b in zip(f(*values), common.evaluate(outs, dict(zip(inputs, values)))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_same_node_twice_and_input_as_output():
    x = T.var("x", (2,))
    y = T.exp(x)
    a, b, c = function([x], [y, y, x])(np.array([0.0, 1.0]))
    np.testing.assert_allclose(a, [1.0, np.e])
    np.testing.assert_allclose(b, a)
    np.testing.assert_allclose(c, [0.0, 1.0])


def test_elementwise_ops_overwrite_dead_intermediates_in_place():
    n = compile_module.INLINE_SIZE + 1  # small values are inlined instead
    x = T.var("x", (n,))
    y = T.tanh(T.exp(T.sin(x) * 2.0) + 1.0)
    f = function([x], y)
    assert "out=" in f.source
    xv = np.linspace(-1.0, 1.0, n)
    keep = xv.copy()
    np.testing.assert_allclose(f(xv), np.tanh(np.exp(np.sin(keep) * 2.0) + 1.0))
    np.testing.assert_array_equal(xv, keep)  # an input is never written


def test_a_buffer_with_a_live_view_is_not_overwritten():
    x = T.var("x", (30, 30))
    a = x * 2.0                  # fresh
    t = T.transpose(a)           # a view of a's buffer, made first, used after sin(a)
    out = t + T.sin(a)           # sin is a's last direct use: in place only if no view were alive
    f = function([x], out, optimize=False)
    xv = np.arange(900.0).reshape(30, 30) / 900
    np.testing.assert_allclose(f(xv), (2 * xv).T + np.sin(2 * xv))
    (line,) = [s for s in f.source.splitlines() if "np_sin(" in s]
    assert "out=" not in line


def test_inputs_are_never_written_in_place():
    x = T.var("x", (4,))
    y = T.var("y", (4,))
    z = T.exp(x) + T.square(y)
    outs = grad(T.sum(z * x), [x, y])
    f = function([x, y], outs)
    xv, yv = np.linspace(0, 1, 4), np.linspace(1, 2, 4)
    xc, yc = xv.copy(), yv.copy()
    f(xv, yv)
    np.testing.assert_array_equal(xv, xc)
    np.testing.assert_array_equal(yv, yc)


def test_small_single_use_values_are_written_into_their_consumer():
    x = T.var("x", ())
    y = x
    for _ in range(60):  # a chain of single-use nodes: nesting must stay bounded
        y = T.exp(T.sin(y) * 0.5)
    f = function([x], [y, grad(y, x)])
    statements = f.source.count("\n") - 2
    assert statements < len(common.graph.toposort(f.graph)) // 2
    deepest = max(line.count("(") for line in f.source.splitlines())
    assert deepest <= 3 * compile_module.INLINE_DEPTH
    want = common.evaluate([y, grad(y, x)], {x: 0.3})
    for got, ref in zip(f(np.float64(0.3)), want):
        np.testing.assert_allclose(got, ref, rtol=1e-13)


def test_zero_d_constants_keep_numpys_promotion_and_outputs_stay_arrays():
    # 0-d constants are bound as numpy scalars (the scalar fast path); dtypes and values must not change
    x = T.var("x", (3,), np.float32)
    s = T.var("s", ())
    outs = [x * T.const(np.array(2.0)), 1.0 - s * s, T.const(np.array(3.0)) + s,
            T.tanh(s) * T.const(np.array(0.5, np.float32)), x + T.const(np.array(1.5, np.float32))]
    xv, sv = np.arange(3, dtype=np.float32), np.array(0.25)
    f = function([x, s], outs)
    for got, want in zip(f(xv, sv), common.evaluate(outs, {x: xv, s: sv})):
        assert isinstance(got, np.ndarray) and got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
