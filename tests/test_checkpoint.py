"""Checkpointing: ``symnum.checkpoint(f)`` and ``common.api.checkpoint(f)`` give f's values and derivatives
(first and second order, inside a scan body too), equal to the plain function's and to finite differences,
while a gradient keeps f's inputs only: peak memory (tracemalloc) at most a third of the plain one on a deep
chain of large arrays, on the tape and on symsym's compiled graph. Errors a user can cause are named."""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
from benchmarks.finite import central_differences
from benchmarks.timing import peak_memory
from common import api
from common.errors import GradError, TwogradError
from common.graph import toposort
from symsym import function, grad

RNG = np.random.default_rng(7)
X = RNG.uniform(-1.0, 1.0, 5)
Y = RNG.uniform(-1.0, 1.0, 5)


def two_outputs(ns):
    """A function of two arguments with a nest of two outputs of different shapes (packed on the tape)."""
    def f(a, pair):
        b, scale = pair
        h = ns.tanh(a * b + scale)
        return ns.sin(h) * b, ns.sum(h * h)
    return f


def cost(ns, wrap, a, b):
    f = wrap(two_outputs(ns))
    u, s = f(a, (b, 0.5))
    return ns.sum(u * u) + s * s


def _tape(wrap, x, y):
    """Value, gradient and the gradient of sum(g^2) (second order) on the tape."""
    a, b = S.tensor(x, requires_grad=True), S.tensor(y, requires_grad=True)
    value = cost(S, wrap, a, b)
    ga, gb = S.grad(value, [a, b], create_graph=True)
    ha, hb = S.grad(S.sum(ga * ga) + S.sum(gb * ga), [a, b])
    return [value.numpy(), ga.numpy(), gb.numpy(), ha.numpy(), hb.numpy()]


def _graph(wrap, x, y, linker="numpy"):
    a, b = api.var("a", x.shape), api.var("b", y.shape)
    value = cost(api, wrap, a, b)
    ga, gb = grad(value, [a, b])
    ha, hb = grad(api.sum(ga * ga) + api.sum(gb * ga), [a, b])
    return [np.asarray(v) for v in function([a, b], [value, ga, gb, ha, hb], linker=linker)(x, y)]


def _numpy_cost(x, y):
    h = np.tanh(x * y + 0.5)
    return float(np.sum((np.sin(h) * y) ** 2) + np.sum(h * h) ** 2)


@pytest.mark.parametrize("backend", ["tape", "graph", "graph-numba"])
def test_checkpointed_derivatives_equal_the_plain_ones_at_first_and_second_order(backend):
    if backend == "graph-numba":
        pytest.importorskip("numba")
        run = lambda wrap: _graph(wrap, X, Y, "numba")
    else:
        run = (lambda wrap: _tape(wrap, X, Y)) if backend == "tape" else (lambda wrap: _graph(wrap, X, Y))
    plain = run(lambda f: f)
    checkpointed = run(S.checkpoint if backend == "tape" else api.checkpoint)
    for p, c in zip(plain, checkpointed):
        np.testing.assert_allclose(c, p, rtol=1e-13, atol=1e-14)
    # and both right: the value is numpy's, the gradient the central differences'
    np.testing.assert_allclose(checkpointed[0], _numpy_cost(X, Y), rtol=1e-13)
    np.testing.assert_allclose(checkpointed[1], central_differences(lambda a: _numpy_cost(a, Y), X, 1e-6),
                               rtol=1e-7, atol=1e-9)
    # second order: d/dx sum(g_a^2 + g_b g_a), with g from central differences of the gradient
    def second(a):
        ga = central_differences(lambda u: _numpy_cost(u, Y), a, 1e-5)
        gb = central_differences(lambda v: _numpy_cost(a, v), Y, 1e-5)
        return float(np.sum(ga * ga) + np.sum(gb * ga))
    np.testing.assert_allclose(checkpointed[3], central_differences(second, X, 1e-4), rtol=1e-4, atol=1e-6)


def rnn(ns, wrap, h, w, xs):
    """A scan whose step is checkpointed (the long-sequence use): the weights are the step's arguments."""
    def cell(h, x, w):
        return ns.tanh(ns.tanh(h @ w + x) * 1.5)

    run = wrap(cell)

    def body(h, x):
        h2 = run(h, x, w)
        return h2, ns.sum(h2)

    last, ys = ns.scan(body, h, xs)
    return ns.sum(last * last) + ns.sum(ys)


def _rnn_numpy(h, w, xs):
    total = 0.0
    for x in xs:
        h = np.tanh(np.tanh(h @ w + x) * 1.5)
        total += np.sum(h)
    return float(np.sum(h * h) + total)


@pytest.mark.parametrize("backend", ["tape", "graph"])
def test_a_checkpointed_scan_body_gives_the_plain_derivatives(backend):
    rng = np.random.default_rng(2)
    w0, xs, h0 = rng.standard_normal((4, 4)) * 0.5, rng.standard_normal((6, 4)), rng.standard_normal(4)
    results = []
    for wrap in ((lambda f: f), S.checkpoint if backend == "tape" else api.checkpoint):
        if backend == "tape":
            h, w = S.tensor(h0, requires_grad=True), S.tensor(w0, requires_grad=True)
            value = rnn(S, wrap, h, w, xs)
            gh, gw = S.grad(value, [h, w], create_graph=True)
            (hw,) = S.grad(S.sum(gw * gw), [w])
            results.append([value.numpy(), gh.numpy(), gw.numpy(), hw.numpy()])
        else:
            h, w = api.var("h", (4,)), api.var("w", (4, 4))
            value = rnn(api, wrap, h, w, api.const(xs))
            gh, gw = grad(value, [h, w])
            (hw,) = grad(api.sum(gw * gw), [w])
            results.append(list(function([h, w], [value, gh, gw, hw])(h0, w0)))
    for p, c in zip(*results):
        np.testing.assert_allclose(c, p, rtol=1e-12, atol=1e-13)
    fd = central_differences(lambda m: _rnn_numpy(h0, m, xs), w0, 1e-6)
    np.testing.assert_allclose(results[1][2], fd, rtol=1e-6, atol=1e-8)


DEPTH, SEGMENTS, LENGTH = 100, 10, 40_000


def chain(ns, wrap, x):
    def segment(a):
        for _ in range(DEPTH // SEGMENTS):
            a = ns.sin(a)
        return a

    run = wrap(segment)
    for _ in range(SEGMENTS):
        x = run(x)
    return ns.sum(x)


def test_checkpointing_a_deep_chain_keeps_a_third_of_the_memory_or_less_on_the_tape():
    x0 = np.random.default_rng(1).uniform(-1.0, 1.0, LENGTH)

    def gradient(wrap):
        t = S.tensor(x0, requires_grad=True)
        chain(S, wrap, t).backward()
        return t.grad.numpy()

    plain, checkpointed = peak_memory(lambda: gradient(lambda f: f)), peak_memory(lambda: gradient(S.checkpoint))
    assert checkpointed <= plain / 3, (plain, checkpointed)
    np.testing.assert_array_equal(gradient(S.checkpoint), gradient(lambda f: f))


def test_checkpointing_a_deep_chain_keeps_a_third_of_the_memory_or_less_in_a_compiled_graph():
    x0 = np.random.default_rng(1).uniform(-1.0, 1.0, LENGTH)
    v = api.var("x", (LENGTH,))
    fns = [function([v], grad(chain(api, wrap, v), [v])) for wrap in ((lambda f: f), api.checkpoint)]
    plain, checkpointed = (peak_memory(lambda fn=fn: fn(x0)) for fn in fns)
    assert checkpointed <= plain / 3, (plain, checkpointed)
    np.testing.assert_array_equal(fns[1](x0)[0], fns[0](x0)[0])


def test_the_derivative_graph_recomputes_inside_a_checkpoint_body():
    """The optimised derivative graph reads no intermediate of a checkpointed function: its sines live in
    bodies only (the backward's body runs them again), none at the top level for CSE to share."""
    v = api.var("x", (5,))
    fn = function([v], grad(chain(api, api.checkpoint, v), [v]))
    top = [n.op.name for n in toposort(fn.graph) if n.op is not None]
    assert "sin" not in top and "cos" not in top
    assert top.count("checkpoint") >= 2 * SEGMENTS - 1  # (the last forward one is dead: sum's VJP needs no value)


def test_a_closed_over_tensor_that_requires_grad_is_an_error_on_the_tape():
    w = S.tensor(Y, requires_grad=True)
    x = S.tensor(X, requires_grad=True)
    f = S.checkpoint(lambda a: S.sin(a * w))  # w is read, not passed: its gradient would be lost
    with pytest.raises(GradError) as info:
        f(x)
    assert "checkpoint" in str(info.value) and "test_checkpoint.py" in str(info.value), str(info.value)


@pytest.mark.parametrize("make", [S.checkpoint, api.checkpoint])
def test_checkpoint_of_something_not_callable_names_itself_and_the_line(make):
    with pytest.raises(TwogradError) as info:
        make(3)
    assert "checkpoint" in str(info.value) and "test_checkpoint.py" in str(info.value), str(info.value)


def test_forward_mode_and_vectorizing_through_a_checkpoint():
    """symsym's jvp and jacobian go through the checkpoint op's JVP and batching rules."""
    from symsym import jacobian, jvp

    v, t = api.var("x", (5,)), api.var("t", (5,))
    y = api.checkpoint(lambda a: api.sin(a) * a)(v)
    d = np.random.default_rng(3).standard_normal(5)
    (tangent, jac) = function([v, t], [jvp(y, v, t), jacobian(y, v)])(X, d)
    np.testing.assert_allclose(tangent, (np.cos(X) * X + np.sin(X)) * d, rtol=1e-13)
    np.testing.assert_allclose(jac, np.diag(np.cos(X) * X + np.sin(X)), rtol=1e-13, atol=1e-15)


def test_the_program_runs_a_checkpoint_op_on_numbers():
    """symnum's program (an IR graph evaluated on numbers, with the tape's sweep) differentiates the op too."""
    a, b = api.var("a", X.shape), api.var("b", Y.shape)
    ga, gb = S.gradients(cost(api, api.checkpoint, a, b), [a, b], {a: X, b: Y})
    np.testing.assert_allclose(ga, central_differences(lambda u: _numpy_cost(u, Y), X, 1e-6), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(gb, central_differences(lambda v: _numpy_cost(X, v), Y, 1e-6), rtol=1e-7, atol=1e-9)


def test_the_benchmark_measures_both_models_and_draws_them(tmp_path, monkeypatch):
    """``twograd bench``'s checkpointing rows (small sizes here, each gradient timed once): every model,
    backend and variant, the checkpointed gradient equal to the plain one, and the plot drawn from them."""
    from types import SimpleNamespace

    from benchmarks import checkpointing, plots
    from benchmarks.timing import once

    monkeypatch.setattr(checkpointing, "measure", lambda fn, **_: SimpleNamespace(median=once(fn)[0]))

    monkeypatch.setattr(checkpointing, "CHAIN_LENGTH", 64)
    monkeypatch.setattr(checkpointing, "CHAIN_DEPTH", 6)
    monkeypatch.setattr(checkpointing, "CHAIN_SEGMENTS", 2)
    monkeypatch.setattr(checkpointing, "LSTM_SIZE", "l1-c6-b3")
    rows = checkpointing.measure_all(min_time=0.0)
    assert {(r["model"], r["backend"], r["checkpointed"]) for r in rows} == {
        (m, b, c) for m in ("deep chain", "lstm-scan l1-c6-b3") for b in ("symnum", "symsym") for c in (False, True)}
    assert all(r["memory"] > 0 and r["time"] > 0 and r["max_difference"] < 1e-12 for r in rows), rows
    assert plots.memory_vs_checkpointing({"checkpointing": rows}, str(tmp_path)) == "memory_vs_checkpointing.png"
    assert (tmp_path / "memory_vs_checkpointing.png").stat().st_size > 0
    assert plots.memory_vs_checkpointing({"cells": []}, str(tmp_path / "none")) is None
