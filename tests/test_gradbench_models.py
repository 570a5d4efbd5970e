"""The GradBench functions: values against independent numpy, gradients against finite differences.

The references here are written from the evals' definitions in a different
form from the models: gmm as log(likelihood * prior) with explicit Gaussian and
Wishart densities (determinants, inverses), lstm as ADBench's scalar loops.
Gradients from symnum and symsym are compared with each other, with central
differences of the reference interpreter in float64, and with the workloads'
hand-written backpropagation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.finite import central_differences
from benchmarks.gradbench import models
from benchmarks.gradbench.functions import MODULES
from common import api as T
from common.evaluate import evaluate

# ------------------------------------------------------------ the references


def gmm_naive(alpha, mu, q, l, x, m, gamma):
    """log(prod_i sum_k phi_k N(x_i; mu_k, (Q_k^T Q_k)^-1) * prod_k Wishart(Q_k^T Q_k))."""
    k, d = mu.shape
    phi = np.exp(alpha) / np.sum(np.exp(alpha))
    precisions = []
    for j in range(k):
        factor = np.diag(np.exp(q[j]))
        p = 0
        for col in range(d):
            for row in range(col + 1, d):
                factor[row, col] = l[j][p]
                p += 1
        precisions.append(factor.T @ factor)
    loglik = 0.0
    for xi in x:
        density = 0.0
        for j in range(k):
            r = xi - mu[j]
            norm = math.sqrt((2 * math.pi) ** d / np.linalg.det(precisions[j]))
            density += phi[j] * math.exp(-0.5 * r @ precisions[j] @ r) / norm
        loglik += math.log(density)
    dof = d + m + 1
    scale = np.eye(d) / gamma ** 2
    log_gamma_d = 0.25 * d * (d - 1) * math.log(math.pi) + sum(
        math.lgamma(dof / 2 + (1 - j) / 2) for j in range(1, d + 1))
    logprior = 0.0
    for prec in precisions:
        logprior += ((dof - d - 1) / 2 * math.log(np.linalg.det(prec))
                     - np.trace(np.linalg.inv(scale) @ prec) / 2 - d * dof / 2 * math.log(2)
                     - dof / 2 * math.log(np.linalg.det(scale)) - log_gamma_d)
    return loglik + logprior


def lstm_naive(main_params, extra_params, state, sequence):
    """ADBench's loops: characters, then layers, then units; the softmax normaliser has +2."""
    layers, b, c = len(main_params) // 2, len(main_params[0]) // 4, len(sequence)
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))
    hid = [list(state[2 * i]) for i in range(layers)]
    cel = [list(state[2 * i + 1]) for i in range(layers)]
    total = 0.0
    for t in range(c - 1):
        inp = [sequence[t][j] * extra_params[0][j] for j in range(b)]
        for i in range(layers):
            w, bias = main_params[2 * i], main_params[2 * i + 1]
            for j in range(b):
                f = sig(inp[j] * w[j] + bias[j])
                ig = sig(hid[i][j] * w[b + j] + bias[b + j])
                o = sig(inp[j] * w[2 * b + j] + bias[2 * b + j])
                ch = math.tanh(hid[i][j] * w[3 * b + j] + bias[3 * b + j])
                cel[i][j] = cel[i][j] * f + ig * ch
                hid[i][j] = o * math.tanh(cel[i][j])
            inp = list(hid[i])
        y = [inp[j] * extra_params[1][j] + extra_params[2][j] for j in range(b)]
        lse = math.log(sum(math.exp(v) for v in y) + 2)
        total += sum(sequence[t + 1][j] * (y[j] - lse) for j in range(b))
    return -total / ((c - 1) * b)


def gmm_input(rng, d, k, n, m=0, gamma=1.0):
    return {"d": d, "k": k, "n": n, "m": m, "gamma": gamma,
            "alpha": rng.normal(size=k).tolist(), "mu": rng.uniform(size=(k, d)).tolist(),
            "q": rng.normal(size=(k, d)).tolist(), "l": rng.normal(size=(k, d * (d - 1) // 2)).tolist(),
            "x": rng.normal(size=(n, d)).tolist()}


def lstm_input(rng, layers, c, b):
    return {"main_params": rng.random((2 * layers, 4 * b)).tolist(),
            "extra_params": rng.random((3, b)).tolist(), "state": rng.random((2 * layers, b)).tolist(),
            "sequence": rng.integers(0, 2, size=(c, b)).tolist()}


def graph(module, function, input):
    """The function's graph for ``input``: (cost, variables by name, arrays by name, wrt nodes)."""
    fn = MODULES[module][function]
    arrays, statics = fn.parse(input)
    variables = {k: T.var(k, v.shape) for k, v in arrays.items()}
    return fn.model(T, variables, statics), variables, arrays, [variables[w] for w in fn.wrt]


def reference_gradients(cost, arrays, wrt_names, h=1e-6):
    """d cost / d each wrt input, by central differences of the reference interpreter."""
    return [central_differences(lambda a, name=name: evaluate(cost, {**arrays, name: a}), arrays[name], h)
            for name in wrt_names]


def rel(a, b):
    """Largest difference relative to the largest reference magnitude (0 for empty arrays)."""
    assert np.shape(a) == np.shape(b)
    if np.size(b) == 0:
        return 0.0
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


# ------------------------------------------------------------------ objectives

@pytest.mark.parametrize("d,k,n,m,gamma", [(1, 2, 4, 0, 1.0), (2, 3, 5, 0, 1.0), (4, 3, 6, 2, 0.7),
                                           (5, 4, 9, 1, 1.5)])
def test_gmm_objective_matches_densities(rng, d, k, n, m, gamma):
    input = gmm_input(rng, d, k, n, m, gamma)
    input["q"] = (0.3 * np.array(input["q"])).tolist()  # keep the densities representable
    cost, _, arrays, _ = graph("gmm", "objective", input)
    want = gmm_naive(arrays["alpha"], arrays["mu"], arrays["q"], arrays["l"], arrays["x"], m, gamma)
    assert evaluate(cost, arrays) == pytest.approx(want, rel=1e-12)


def test_gmm_fills_the_lower_triangle_by_columns():
    # d = 3: l = (Q[1,0], Q[2,0], Q[2,1]); the row-by-row order would read (Q[1,0], Q[2,1], Q[2,0])
    idx = models.lower_index(3)
    assert idx.tolist() == [[0, 0, 0], [1, 0, 0], [2, 3, 0]]


@pytest.mark.parametrize("layers,c,b", [(1, 2, 1), (1, 4, 3), (2, 6, 4), (3, 9, 2)])
def test_lstm_objective_matches_loops(rng, layers, c, b):
    input = lstm_input(rng, layers, c, b)
    cost, _, arrays, _ = graph("lstm", "objective", input)
    want = lstm_naive(*(np.array(input[k], dtype=float) for k in
                        ("main_params", "extra_params", "state", "sequence")))
    assert evaluate(cost, arrays) == pytest.approx(want, rel=1e-12)


def test_lstm_normaliser_is_stable_for_large_outputs(rng):
    # Shifting every output by the same s leaves y - log(sum(exp(y)) + 2) unchanged once exp(y)
    # dwarfs the 2, so outputs near 800 (where exp overflows) must give what outputs near 100 give.
    input = lstm_input(rng, 1, 3, 2)
    input["extra_params"][1] = [0.0, 0.0]
    input["extra_params"][2] = [800.0, 790.0]
    cost, _, arrays, _ = graph("lstm", "objective", input)
    shifted = [np.array(input[k], dtype=float) for k in ("main_params", "extra_params", "state", "sequence")]
    shifted[1][2] -= 700.0
    assert evaluate(cost, arrays) == pytest.approx(lstm_naive(*shifted), rel=1e-12)


def test_lse_primal_is_stable(rng):
    x = rng.normal(size=7) * 300
    cost, _, arrays, _ = graph("lse", "primal", {"x": x.tolist()})
    top = np.max(x)
    assert evaluate(cost, arrays) == pytest.approx(top + math.log(np.sum(np.exp(x - top))), rel=1e-14)


# ------------------------------------------------------------------- gradients

BACKENDS = ("symnum", "symnum-static", "symsym")
"""The project's own backends: always there, so a failed import fails these tests rather than skipping them
(``symsym-numba`` is checked where numba is installed, by the tool's session test)."""


def answer(backend, module, function, input):
    """What the tool's engine ``backend`` computes for ``input``: the results before they are written."""
    from benchmarks.gradbench.engines import ENGINES

    fn = MODULES[module][function]
    arrays, statics = fn.parse(input)
    run, _ = ENGINES[backend]().prepare(fn, {k: v.shape for k, v in arrays.items()}, statics)
    return run(list(arrays.values()))


CASES = {
    "gmm": lambda rng: ("gmm", "jacobian", gmm_input(rng, 3, 4, 6, m=1, gamma=0.8)),
    "gmm-d1": lambda rng: ("gmm", "jacobian", gmm_input(rng, 1, 2, 3)),
    "lstm": lambda rng: ("lstm", "jacobian", lstm_input(rng, 2, 5, 3)),
    "lse": lambda rng: ("lse", "gradient", {"x": (rng.normal(size=6) * 50).tolist()}),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_central_differences(rng, case, backend):
    module, function, input = CASES[case](rng)
    cost, variables, arrays, wrt = graph(module, function, input)
    got = answer(backend, module, function, input)
    want = reference_gradients(cost, arrays, [w.name for w in wrt])
    assert len(got) == len(want)
    for g, fd in zip(got, want, strict=True):
        assert g.shape == fd.shape
        assert rel(g, fd) < 1e-7


@pytest.mark.parametrize("case", ["gmm", "lstm", "lse"])
def test_backends_agree(rng, case):
    """An engine check: both backends run the same op table's rules (the references are the test above)."""
    module, function, input = CASES[case](rng)
    a, b, c = (answer(backend, module, function, input) for backend in BACKENDS)
    for x, y, z in zip(a, b, c, strict=True):
        assert rel(x, y) < 1e-12 and rel(z, y) < 1e-12


def test_hello_double_is_twice_x():
    for backend in BACKENDS:
        assert float(answer(backend, "hello", "double", 1.25)[0]) == 2.5


# ------------------------------------------------------- the workloads' references

@pytest.mark.parametrize("name", ["gmm", "lstm"])
def test_workload_hand_references(name):
    from benchmarks.workloads import get

    wl = get(name)
    problem = wl.make(wl.check[0])
    cost, variables = problem.graph()
    feed = dict(zip(variables, problem.arrays, strict=True))
    assert problem.hand_forward(*problem.arrays) == pytest.approx(evaluate(cost, feed), rel=1e-12)
    wrt = problem.wrt
    fd = reference_gradients(cost, dict(problem.args), wrt)
    for g, want in zip(problem.hand_grad(*problem.arrays), fd, strict=True):
        assert rel(g, want) < 1e-7
