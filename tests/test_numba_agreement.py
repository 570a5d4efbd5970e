"""The numba linker against the numpy linker on every op case of the table and on random graphs.

Each op case (tests/opcases.py) is compiled as its value and its gradient
with both linkers; the results must agree to 1e-12 relative (an engine check of
the lowering: both linkers run the same rules, which tests/test_symsym_ops.py
checks against the numpy references). Random graphs
mix the elementwise ops that have scalar forms with broadcasting, reductions,
matmuls and shape ops, so regions start, end and merge at random places.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcases import CASES

from common import api as T
from common.ops import OPS, Kind
from symsym import function, grad

pytest.importorskip("numba")

pytestmark = pytest.mark.usefixtures("module_kernel_cache")


def _agree(inputs, outputs, arrays, rtol=1e-12):
    got = function(inputs, outputs, linker="numba")(*arrays)
    want = function(inputs, outputs)(*arrays)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=1e-300, equal_nan=True)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_op_case_agrees_with_the_numpy_linker(case):
    arrays = case.inputs(np.random.default_rng(3))
    xs = [T.var(f"x{k}", np.shape(a), np.asarray(a).dtype) for k, a in enumerate(arrays)]
    out = case.fn(T.symbolic, *xs)
    outs = [out]
    if case.wrt and out.dtype.kind == "f":
        weights = T.const(np.random.default_rng(4).standard_normal(np.shape(case.ref(*arrays))))  # a count is data
        outs += list(grad(T.sum(out * weights), [xs[k] for k in case.wrt]))
    _agree(xs, outs, [np.asarray(a) for a in arrays])


UNARY = [name for name, op in OPS.items() if op.kind is Kind.ELEMENTWISE and op.scalar is not None and op.nin == 1
         and name not in ("sign", "stop_gradient")]
SAFE = {"log": lambda ns, x: ns.log(ns.abs(x) + 0.5), "sqrt": lambda ns, x: ns.sqrt(ns.abs(x)),
        "arcsin": lambda ns, x: ns.arcsin(ns.tanh(x)), "log1p": lambda ns, x: ns.log1p(ns.abs(x)),
        "exp": lambda ns, x: ns.exp(ns.tanh(x)), "expm1": lambda ns, x: ns.expm1(ns.tanh(x)),
        "sinh": lambda ns, x: ns.sinh(ns.tanh(x)), "cosh": lambda ns, x: ns.cosh(ns.tanh(x)),
        "tan": lambda ns, x: ns.tan(ns.tanh(x))}


def _random_graph(rng, n_ops: int):
    """A random differentiable graph of x (4, 3), b (3,), c (4, 1), s () and w (3, 3), and its inputs."""
    x, b, c, s, w = T.var("x", (4, 3)), T.var("b", (3,)), T.var("c", (4, 1)), T.var("s", ()), T.var("w", (3, 3))
    pool = [x, b, c, s, x * b]
    for _ in range(n_ops):
        pick = rng.integers(8)
        a = pool[rng.integers(len(pool))]
        if pick < 4:
            name = UNARY[rng.integers(len(UNARY))]
            pool.append(SAFE.get(name, lambda ns, v, name=name: getattr(ns, name)(v))(T.symbolic, a))
        elif pick == 4:
            other = pool[rng.integers(len(pool))]
            op = ["add", "sub", "mul", "maximum", "minimum"][rng.integers(5)]
            pool.append(getattr(T.symbolic, op)(a, other))
        elif pick == 5:
            other = pool[rng.integers(len(pool))]
            pool.append(T.where(a > other, a, other * 0.5))
        elif pick == 6 and a.ndim == 2:
            pool.append(T.tanh(a @ w) if a.shape[1] == 3 else T.sum(a, axis=1, keepdims=True))
        else:
            pool.append(T.sum(a) * 0.1 if a.ndim else a / (1.0 + a * a))
    cost = T.sum(pool[-1]) + T.sum(pool[-2]) + T.sum(T.square(pool[-3]))
    arrays = [rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((4, 1)),
              np.asarray(rng.standard_normal()), rng.standard_normal((3, 3)) * 0.5]
    return [x, b, c, s, w], cost, arrays


@pytest.mark.parametrize("seed", range(6))
def test_random_graphs_agree_with_the_numpy_linker(seed):
    rng = np.random.default_rng(100 + seed)
    inputs, cost, arrays = _random_graph(rng, 14)
    _agree(inputs, [cost, *grad(cost, inputs, disconnected="zero")], arrays)
