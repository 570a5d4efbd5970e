"""The spelled-out log-softmax, softmax, cross-entropy, logsumexp, softplus and sigmoid compile as the fused ops.

Each spelling is checked three ways: the rewritten graph computes what numpy
computes for the spelling as written (NaN and inf inputs included), its
gradient matches central differences of that numpy spelling, and the
derivative graph holds no trace of the ``max`` shift (no tie mask) and is the
fused model's, node for node.
"""

from __future__ import annotations

import numpy as np
import pytest

import symsym as Y
from common import api as T
from common.graph import toposort
from symsym.rewrite import optimize
from tests.derivchecks import fd_grad

RNG = np.random.default_rng(7)
SHAPE = (5, 4)
X = RNG.standard_normal(SHAPE) * 3
TARGETS = RNG.dirichlet(np.ones(SHAPE[1]), SHAPE[0])
SPECIAL = np.array([[np.nan, 1.0, 2.0, 0.0], [np.inf, 1.0, -1.0, 0.5], [-np.inf, 0.0, 1.0, 2.0],
                    [800.0, -800.0, 0.0, 1.0], [-750.0, 0.0, 0.0, 0.0]])


def _lsm_np(x):
    z = x - np.max(x, axis=1, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))


def _lsm(ns, x):
    z = x - ns.max(x, axis=1, keepdims=True)
    return z - ns.log(ns.sum(ns.exp(z), axis=1, keepdims=True))


def _softmax(ns, x):
    e = ns.exp(x - ns.max(x, axis=1, keepdims=True))
    return e / ns.sum(e, axis=1, keepdims=True)


def _lse(ns, x):
    m = ns.max(x, axis=1, keepdims=True)
    return m + ns.log(ns.sum(ns.exp(x - m), axis=1, keepdims=True))


def _xent(ns, x, t):
    return -ns.sum(t * _lsm(ns, x), axis=1)


def _softplus(ns, x):
    return ns.maximum(x, 0.0) + ns.log1p(ns.exp(-ns.abs(x)))


def _sigmoid(ns, x):
    return 1.0 / (1.0 + ns.exp(-x))


_LSE = {"max", "stop_gradient", "sub", "exp", "sum", "log", "add"}
#: name -> (spelling, the ops of its rewritten graph, whether the fused value is the spelling's bit for bit)
CASES = {
    "log_softmax": (_lsm, {"log_softmax"}, True),
    "softmax": (_softmax, {"softmax"}, True),
    "logsumexp": (_lse, _LSE, True),
    "cross_entropy": (_xent, {"softmax_cross_entropy"}, True),
    "softplus": (_softplus, {"softplus"}, True),
    "sigmoid": (_sigmoid, {"sigmoid"}, False),
}


def _args(name, x):
    return (x, TARGETS) if name == "cross_entropy" else (x,)


def _graph(name):
    spell = CASES[name][0]
    xs = [T.var("x", SHAPE)] + ([T.var("t", SHAPE)] if name == "cross_entropy" else [])
    return spell(T, *xs), xs


@pytest.mark.parametrize("name", sorted(CASES))
def test_rewritten_to_the_fused_op(name):
    out, _ = _graph(name)
    new, report = optimize(out)
    assert report["passes"]["stability"] >= 1
    assert {n.op.name for n in toposort([new]) if n.op is not None} == CASES[name][1]


@pytest.mark.parametrize("x", [X, SPECIAL], ids=["normal", "nan-inf-overflow"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_value_is_the_spellings(name, x):
    spell, _, exact = CASES[name]
    out, xs = _graph(name)
    new, _ = optimize(out)
    got = Y.function(xs, new)(*_args(name, x))
    with np.errstate(all="ignore"):
        want = spell(np, *_args(name, x))
    if exact:
        np.testing.assert_array_equal(got, want)  # NaN where NaN, inf where inf, every bit elsewhere
    else:
        np.testing.assert_allclose(got, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradient_against_differences(name):
    spell = CASES[name][0]
    out, xs = _graph(name)
    w = RNG.standard_normal(out.shape)
    cost = T.sum(out * T.const(w))
    g = Y.function(xs, Y.grad(cost, [xs[0]]))(*_args(name, X))
    rest = _args(name, X)[1:]
    want = fd_grad(lambda x: float(np.sum(spell(np, x, *rest) * w)), X)
    np.testing.assert_allclose(np.asarray(g[0] if isinstance(g, (list, tuple)) else g), want,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["log_softmax", "softmax", "logsumexp", "cross_entropy"])
def test_no_tie_mask_in_the_derivative(name):
    """The max shift's derivative is identically zero: nothing of max's tie-splitting mask is built."""
    out, xs = _graph(name)
    g = Y.grad(T.sum(out), [xs[0]])
    names = {n.op.name for n in toposort(list(g)) if n.op is not None}
    assert "eq" not in names  # max's VJP splits ties with an eq mask


def test_spelled_mlp_compiles_to_the_fused_model():
    from benchmarks.workloads.mlp import mlp_fn, spelled_fn

    shapes = [(6, 5), (5,), (5, 3), (3,), (4, 6), (4, 3)]
    xs = [T.var(f"a{i}", s) for i, s in enumerate(shapes)]
    sources = [Y.function(xs, Y.grad(fn(T, *xs), xs[:4])).source for fn in (spelled_fn, mlp_fn)]
    assert sources[0] == sources[1]


@pytest.mark.parametrize("spelling", [
    lambda ns, x: x - ns.max(x, axis=0, keepdims=True)
    - ns.log(ns.sum(ns.exp(x - ns.max(x, axis=1, keepdims=True)), axis=1, keepdims=True)),  # two shifts
    lambda ns, x: (x - ns.max(x, axis=1, keepdims=True))
    - ns.log(ns.sum(ns.exp(x - ns.max(x, axis=1, keepdims=True)), axis=0, keepdims=True)),  # two axes
    lambda ns, x: 2.0 / (1.0 + ns.exp(-x)),                                                    # not a unit
    lambda ns, x: ns.maximum(x, 1.0) + ns.log1p(ns.exp(-ns.abs(x))),                          # not a zero
], ids=["shift-axis", "sum-axis", "sigmoid-scale", "softplus-floor"])
def test_near_misses_are_left_alone(spelling):
    x = T.var("x", SHAPE)
    out = spelling(T, x)
    new, _ = optimize(out)
    assert new.op.name == out.op.name  # the root is still the spelling's, not a fused op
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(Y.function([x], new)(X), spelling(np, X), rtol=1e-14)
