"""symsym and symnum on the same graphs: one op table, so any difference is a bug in an engine.

An engine check only: both backends run the same rules, so a wrong rule passes here; the rules
themselves are checked against numpy references (tests/test_symsym_ops.py, tests/test_rule_mutants.py).
"""

import numpy as np
import pytest
from opcases import CASES

import symnum
from common import api as T
from symsym import function, grad

DIFF = [c for c in CASES if c.wrt]


def _graphs():
    """A few whole models, as (builder, input arrays)."""
    rng = np.random.default_rng(11)

    def mlp(x, w1, b1, w2, t):
        return T.mean(T.softmax_cross_entropy(T.tanh(x @ w1 + b1) @ w2, t))

    def rosen(x):
        return T.sum(100.0 * T.square(x[1::2] - T.square(x[0::2])) + T.square(1.0 - x[0::2]))

    def attention(q, k, v):
        s = T.softmax(q @ k.T / 2.0, axis=-1)
        return T.sum(T.square(s @ v)) + T.logsumexp(q, axis=None)

    t = np.eye(3)[rng.integers(3, size=4)]
    return [
        ("mlp", mlp, [rng.standard_normal((4, 5)), rng.standard_normal((5, 6)), rng.standard_normal(6),
                      rng.standard_normal((6, 3)), t], (0, 1, 2, 3)),
        ("rosenbrock", rosen, [rng.uniform(-1, 1, 8)], (0,)),
        ("attention", attention, [rng.standard_normal((3, 4)), rng.standard_normal((5, 4)),
                                  rng.standard_normal((5, 2))], (0, 1, 2)),
    ]


def _compare(build, arrays, wrt):
    xs = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    out = build(*xs)
    shape = out.shape if None not in out.shape else np.shape(function(xs, out)(*arrays))  # a computed count
    weights = np.random.default_rng(0).standard_normal(shape)
    cost = T.sum(out * T.const(weights))
    targets = [xs[k] for k in wrt]
    ours = function(xs, grad(cost, targets))(*arrays)
    theirs = symnum.gradients(cost, targets, dict(zip(xs, arrays)))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_every_op_same_gradient(case):
    arrays = [np.asarray(a, dtype=np.float64) for a in case.inputs(np.random.default_rng(1))]
    _compare(lambda *xs: case.fn(T.symbolic, *xs), arrays, case.wrt)


@pytest.mark.parametrize("name,build,arrays,wrt", _graphs(), ids=[g[0] for g in _graphs()])
def test_models_same_gradient(name, build, arrays, wrt):
    _compare(build, arrays, wrt)
