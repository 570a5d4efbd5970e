"""One model function, two paradigms: ``fn(ns, ...)`` with ``ns = symnum`` (Python loops on the tape) and
with ``ns = common.api`` (scan / while_loop / cond ops on a graph, differentiated by symnum.gradients and by
symsym.grad), against each other and against central finite differences of a numpy loop, first and second
order."""

from __future__ import annotations

import numpy as np
import pytest

import symnum
import symsym
from benchmarks.finite import central_differences, rel_err
from common import api as T
from common import evaluate


def recurrence(ns, w, h0, xs):
    """Two carries (one a tuple), a reversed scan over its outputs, a cond on the result."""
    def step(carry, x):
        h, (c,) = carry
        h2 = ns.tanh(w * h + x + 0.3 * c)
        return (h2, (c + h2,)), h2 * h2

    (h, (c,)), ys = ns.scan(step, (h0, (h0 * 0.5,)), xs)
    back, zs = ns.scan(lambda acc, y: (acc * 0.9 + y, acc), ys[0] * 0.0, ys, reverse=True)
    total = ns.sum(h * c) + ns.sum(back) + ns.sum(zs)
    return ns.cond(total > 0, lambda t: t * t, lambda t: ns.sin(t), total)


def recurrence_np(w, h0, xs):
    """The same in plain numpy loops."""
    h, c, ys = h0, h0 * 0.5, []
    for x in xs:
        h = np.tanh(w * h + x + 0.3 * c)
        c = c + h
        ys.append(h * h)
    acc, zs = np.zeros(3), [None] * len(ys)
    for i in range(len(ys) - 1, -1, -1):
        zs[i] = acc
        acc = acc * 0.9 + ys[i]
    total = np.sum(h * c) + np.sum(acc) + np.sum(zs)
    return total * total if total > 0 else np.sin(total)


def newton_sqrt(ns, a):
    """sqrt of every entry by Newton's method to a tolerance, plus one polishing step; summed with weights."""
    step = lambda x: 0.5 * (x + a / x)
    x = ns.while_loop(lambda x: ns.max(ns.abs(x * x - a)) > 1e-13, step, a + 1.0, max_iter=60)
    return ns.sum(step(x) * np.array([1.0, 2.0, 3.0]))


def _graph(fn, *arrays):
    """``fn`` built on the graph: (cost, variables)."""
    variables = [T.var(f"a{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    return fn(T, *variables), variables


@pytest.fixture
def inputs(rng):
    return [np.array(0.8), rng.normal(size=3), rng.normal(size=(6, 3))]


def _wrt(fn_np, arrays):
    return [central_differences(lambda v, i=i: fn_np(*arrays[:i], v, *arrays[i + 1:]), a)
            for i, a in enumerate(arrays)]


def test_values_agree_on_tape_graph_and_numpy(inputs):
    cost, variables = _graph(recurrence, *inputs)
    want = recurrence_np(*inputs)
    assert rel_err(evaluate(cost, dict(zip(variables, inputs))), want) < 1e-14
    assert rel_err(recurrence(symnum, *[symnum.tensor(a) for a in inputs]).numpy(), want) < 1e-14


def test_first_derivatives_agree_on_tape_program_and_graph(inputs):
    fd = _wrt(recurrence_np, inputs)
    tape = symnum.grad(lambda *a: recurrence(symnum, *a), argnums=(0, 1, 2))(*inputs)
    cost, variables = _graph(recurrence, *inputs)
    program = symnum.gradients(cost, variables, dict(zip(variables, inputs)))
    compiled = symsym.function(variables, list(symsym.grad(cost, variables)))(*inputs)
    assert rel_err(list(tape), fd) < 1e-8
    assert rel_err(list(program), list(tape)) < 1e-13
    assert rel_err(list(compiled), list(tape)) < 1e-13


def test_second_derivatives_agree_on_tape_and_graph(inputs):
    """d2 cost / dw dh0 and d2 / dw2: the tape's create_graph backward differentiated again, symsym's grad
    of its grad (a scan over the reverse scan), and differences of the numpy loop's differences."""
    w, h0, xs = inputs
    tape = symnum.hessian(lambda v: recurrence(symnum, v[0], v[1:], xs))(np.concatenate([[w], h0]))
    wv = T.var("v", (4,), np.float64)
    cost = recurrence(T, wv[0], wv[1:], T.const(xs))
    grad = symsym.grad(cost, wv)
    hess = np.array([symsym.function([wv], [symsym.grad(grad[k], wv)])(np.concatenate([[w], h0]))[0]
                     for k in range(4)])
    g_np = lambda v: central_differences(lambda u: recurrence_np(u[0], u[1:], xs), v, h=1e-5)
    fd = central_differences(g_np, np.concatenate([[w], h0]), h=1e-4)
    assert rel_err(tape, fd) < 1e-5
    assert rel_err(hess, tape) < 1e-12


def test_while_loop_gradient_on_tape_and_graph_is_the_implicit_one():
    a = np.array([0.3, 2.0, 7.0])
    want = 0.5 / np.sqrt(a) * np.array([1.0, 2.0, 3.0])   # d sqrt(a) / da, the implicit-function theorem's
    tape = symnum.grad(lambda v: newton_sqrt(symnum, v))(a)
    cost, (var,) = _graph(newton_sqrt, a)
    program = symnum.gradients(cost, [var], {var: a})[0]
    compiled = symsym.function([var], [symsym.grad(cost, var)])(a)[0]
    for got in (tape, program, compiled):
        assert rel_err(got, want) < 1e-10
    assert rel_err(program, tape) < 1e-14 and rel_err(compiled, tape) < 1e-14


@pytest.mark.parametrize("x, expected", [(-1.0, -2.0), (4.0, 0.25)])
def test_cond_gradient_is_the_taken_branch_on_both(x, expected):
    f = lambda ns, v: ns.cond(v > 0, ns.sqrt, ns.square, v)
    tape = float(symnum.grad(lambda v: f(symnum, v))(np.array(x)))
    cost, (var,) = _graph(f, np.array(x))
    graph = float(symsym.function([var], [symsym.grad(cost, var)])(np.array(x))[0])
    assert tape == expected and graph == expected


def test_the_same_mistake_is_refused_on_tape_and_graph():
    """A carry that changes from a tuple to a list, and one that changes shape: errors on both paradigms,
    each naming this file."""
    from common.errors import TwogradError

    for ns, init, xs in ((symnum, (np.zeros(2),), np.ones((3, 2))),
                         (T, (T.var("h", (2,), np.float64),), T.var("xs", (3, 2), np.float64))):
        with pytest.raises(TwogradError, match="test_control_symnum_ir.py"):
            ns.scan(lambda c, x: ([c[0] + x], x), init, xs)
        with pytest.raises(TwogradError, match="test_control_symnum_ir.py"):
            ns.scan(lambda c, x: ((ns.sum(c[0] + x),), x), init, xs)
