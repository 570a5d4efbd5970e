"""The GradBench evals beyond gmm and lstm, on every backend, against references written apart.

Each reference follows the eval's definition in plain numpy and Python loops
(cmpad's llsq and an_ode as loops, the determinant by numpy's LU and its
gradient as the adjugate, k-means' Newton step as the distance to the
cluster mean, the particle's Euler loop with the potential's gradient by
hand), and derivatives are compared with it or with central differences of
it, never with another twograd backend.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from test_gradbench_models import BACKENDS, answer, rel

from benchmarks.finite import central_differences
from benchmarks.gradbench import engines, models
from benchmarks.gradbench.functions import MODULES, _Host
from benchmarks.gradbench.tool import Tool

# ------------------------------------------------------------------ references


def llsq_loops(x, n):
    total = 0.0
    for i in range(n):
        t = -1 + i * 2 / (n - 1)
        r, power = float(np.sign(t)), 1.0
        for xj in x:
            r -= xj * power
            power *= t
        total += r * r
    return total / 2


def ode_loops(x, steps):
    n = len(x)

    def rate(y):
        return np.array([x[0]] + [x[i] * y[i - 1] for i in range(1, n)])

    y, h = np.zeros(n), 2.0 / steps
    for _ in range(steps):
        k1 = rate(y)
        k2 = rate(y + h * k1 / 2)
        k3 = rate(y + h * k2 / 2)
        k4 = rate(y + h * k3)
        y = y + h * (k1 + 2 * k2 + 2 * k3 + k4) / 6
    return y


def det_recursive(a):
    """Expansion by minors along the first row, the textbook recursion."""
    if len(a) == 1:
        return a[0][0]
    return sum((-1) ** j * a[0][j] * det_recursive([row[:j] + row[j + 1:] for row in a[1:]])
               for j in range(len(a)))


def particle_loops(w):
    """The squared miss for control w; the potential's gradient in x written out by hand."""
    charges = [(10.0, 10.0 - w), (10.0, 0.0)]
    x, xdot, dt = [0.0, 8.0], [0.75, 0.0], 0.1
    while x[1] + dt * xdot[1] > 0:
        grad = [0.0, 0.0]
        for cx, cy in charges:
            r = math.hypot(x[0] - cx, x[1] - cy)
            grad[0] -= (x[0] - cx) / r ** 3
            grad[1] -= (x[1] - cy) / r ** 3
        x = [x[0] + dt * xdot[0], x[1] + dt * xdot[1]]
        xdot = [xdot[0] - dt * grad[0], xdot[1] - dt * grad[1]]
    t_f = -x[1] / xdot[1]
    return (x[0] + t_f * xdot[0]) ** 2


def saddle_max_loops(p1, start):
    """max over p2 of |p1|^2 - |p2|^2 by the eval's gradient ascent, on floats (gradient -2 p2 by hand)."""
    def value_and_grad(p2):
        return -(p1 @ p1 - p2 @ p2), 2 * p2
    p2 = models.argmin(_Host, value_and_grad, np.array(start, dtype=float))
    return p1 @ p1 - p2 @ p2


# ----------------------------------------------------------------- objectives

@pytest.mark.parametrize("backend", BACKENDS)
def test_llsq_matches_loops_and_its_gradient_the_normal_equations(rng, backend):
    x, n = rng.random(6), 17
    assert float(answer(backend, "llsq", "primal", {"x": x.tolist(), "n": n})[0]) \
        == pytest.approx(llsq_loops(x, n), rel=1e-12)
    t = -1 + np.arange(n) * 2 / (n - 1)
    powers = t[:, None] ** np.arange(6)
    want = powers.T @ (powers @ x - np.sign(t))
    assert rel(answer(backend, "llsq", "gradient", {"x": x.tolist(), "n": n})[0], want) < 1e-12


@pytest.mark.parametrize("backend", BACKENDS)
def test_ode_matches_rk4_loops_and_central_differences(rng, backend):
    x, steps = rng.random(5), 4
    got = answer(backend, "ode", "primal", {"x": x.tolist(), "s": steps})[0]
    assert rel(got, ode_loops(x, steps)) < 1e-13
    grad = answer(backend, "ode", "gradient", {"x": x.tolist(), "s": steps})[0]
    assert rel(grad, central_differences(lambda v: ode_loops(v, steps)[-1], x, 1e-6)) < 1e-7


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("ell", [1, 2, 4, 6])
def test_det_matches_the_recursion_and_its_gradient_the_adjugate(rng, backend, ell):
    a = rng.random((ell, ell))
    got = float(answer(backend, "det", "primal", {"A": a.ravel().tolist(), "ell": ell})[0])
    assert got == pytest.approx(det_recursive(a.tolist()), rel=1e-12, abs=1e-15)
    assert got == pytest.approx(np.linalg.det(a), rel=1e-10)
    grad = answer(backend, "det", "gradient", {"A": a.ravel().tolist(), "ell": ell})[0]
    assert rel(grad, (np.linalg.det(a) * np.linalg.inv(a).T).ravel()) < 1e-10


def test_det_tables_hold_each_minor_once():
    ell = 5
    levels = models.minor_tables(ell)
    assert [len(entries) for entries, _, _ in levels] == [math.comb(ell, m) for m in range(1, ell + 1)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_kmeans_cost_and_newton_step_to_the_cluster_means(rng, backend):
    points = rng.random((30, 3))
    centroids = points[-4:]
    input = {"points": points.tolist(), "centroids": centroids.tolist()}
    near = np.array([np.argmin([np.sum((p - c) ** 2) for c in centroids]) for p in points])
    cost = sum(np.sum((p - centroids[j]) ** 2) for p, j in zip(points, near))
    assert float(answer(backend, "kmeans", "cost", input)[0]) == pytest.approx(cost, rel=1e-12)
    gradient, diagonal = answer(backend, "kmeans", "dir", input)
    counts = np.bincount(near, minlength=4)[:, None]
    means = np.array([points[near == j].mean(axis=0) for j in range(4)])
    assert rel(diagonal, np.repeat(2.0 * counts, 3, axis=1)) < 1e-12      # the Hessian's diagonal
    direction = MODULES["kmeans"]["dir"].write([gradient, diagonal])
    assert rel(np.array(direction), centroids - means) < 1e-10


# ------------------------------------------------------- nested derivatives

MODES = ["ff", "fr", "rf", "rr"]


def nested_program(backend: str, module: str, modes: str, k: int = 0):
    """The engine's ``arrays -> (value, gradient)`` for program ``k`` of ``module``'s function ``modes``."""
    nested = MODULES[module][modes].model
    fn, shapes = nested.programs[k]
    if backend == "symnum":
        return engines.tape_value_and_grad(fn, nested.inner, nested.outer)
    engine = engines.ENGINES[backend]()
    out, xs = engines.nested_graph(fn, shapes, nested.inner)
    return engine.value_and_grad(out, xs, nested.outer)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("modes", MODES)
def test_particle_derivative_through_the_euler_loop(backend, modes):
    """d/dw of the miss: the inner gradient closes over w, so a confused perturbation would show here."""
    run = nested_program(backend, "particle", modes)
    w = 0.3
    value, grad = run([np.array([w])])
    assert float(value) == pytest.approx(particle_loops(w), rel=1e-12)
    fd = central_differences(lambda v: particle_loops(float(v[0])), np.array([w]), 1e-6)
    assert rel(grad, fd) < 1e-6


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("modes", MODES)
def test_saddle_derivative_through_the_inner_ascent(backend, modes):
    """d/dp1 of max_p2 f(p1, p2), the max itself a gradient ascent: the gradient runs through it."""
    run = nested_program(backend, "saddle", modes)
    start = np.array([1.0, 1.0])
    p1 = np.array([0.4, -0.3])
    value, grad = run([p1, start])
    assert float(value) == pytest.approx(saddle_max_loops(p1, start), rel=1e-12)
    fd = central_differences(lambda v: saddle_max_loops(v, start), p1, 1e-6)
    assert rel(grad, fd) < 1e-6


# ------------------------------------------------------------------ bad input

BAD = [
    ("llsq", "primal", {"x": [1.0], "n": 1}, "'n'"),
    ("llsq", "gradient", {"x": [], "n": 4}, "'x'"),
    ("ode", "primal", {"x": [1.0, 2.0], "s": 0}, "'s'"),
    ("det", "primal", {"A": [1.0, 2.0, 3.0], "ell": 2}, "'A'"),
    ("det", "gradient", {"A": [1.0] * 400, "ell": 20}, "'ell'"),
    ("kmeans", "dir", {"points": [[1.0, 2.0]], "centroids": [[1.0, 2.0, 3.0]]}, "'centroids'"),
    ("kmeans", "cost", {"points": [], "centroids": [[1.0]]}, "'points'"),
    ("saddle", "rr", {"start": [1.0, 2.0, 3.0]}, "'start'"),
    ("particle", "ff", {"w": "zero"}, "'w'"),
    ("saddle", "fx", {"start": [1.0, 1.0]}, "'fx'"),
    ("ba", "jacobian", {"n": 2, "m": 3, "p": 5, "w": 1.0, "feat": [1.0, 2.0], "x": [1.0, 2.0, 3.0],
                        "cam": [1.0] * 10}, "'cam'"),
]


@pytest.mark.parametrize("backend", ["symnum", "symsym"])
def test_bad_inputs_get_an_error_naming_the_field_and_the_tool_keeps_serving(backend):
    tool = Tool(backend)
    for k, (module, function, input, named) in enumerate(BAD):
        reply = tool.reply({"id": k, "kind": "evaluate", "module": module, "function": function, "input": input})
        assert reply["id"] == k and reply["success"] is False and named in reply["error"], reply
    reply = tool.reply({"id": 99, "kind": "evaluate", "module": "det", "function": "primal",
                        "input": {"A": [2.0, 0.0, 0.0, 3.0], "ell": 2}})
    assert reply["success"] is True and reply["output"] == 6.0


def test_every_module_answers_every_function_the_evals_ask():
    asked = {"ba": {"objective", "jacobian"}, "llsq": {"primal", "gradient"},
             "ode": {"primal", "gradient"}, "det": {"primal", "gradient"},
             "kmeans": {"cost", "dir"}, "ht": {"objective", "jacobian"}, "saddle": set(MODES), "particle": set(MODES)}
    for module, functions in asked.items():
        assert set(MODULES[module]) == functions


def test_det_levels_sum_the_same_terms_as_the_expansion():
    """Every permutation's product appears once, with its sign: the memoised sum is the recursive one."""
    ell = 4
    a = np.arange(1.0, ell * ell + 1).reshape(ell, ell) ** 0.5
    leibniz = sum(np.prod([a[i, p[i]] for i in range(ell)])
                  * np.linalg.det(np.eye(ell)[list(p)]) for p in itertools.permutations(range(ell)))
    got = float(answer("symnum", "det", "primal", {"A": a.ravel().tolist(), "ell": ell})[0])
    assert got == pytest.approx(leibniz, rel=1e-12)


# -------------------------------------------------------------------------- ba

def ba_residuals(cams, points, w, feats, n, m):
    """Observation i: camera i mod n, point i mod m; rotation by the matrix cos I + sin [k]x + (1-cos) k k^T."""
    p = len(w)
    out = np.empty(3 * p)
    for i in range(p):
        cam, x = cams[i % n], points[i % m] - cams[i % n][3:6]
        theta = np.linalg.norm(cam[:3])
        k = cam[:3] / theta
        skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        rotated = (np.cos(theta) * np.eye(3) + np.sin(theta) * skew + (1 - np.cos(theta)) * np.outer(k, k)) @ x
        proj = rotated[:2] / rotated[2]
        r2 = proj @ proj
        proj = proj * (1 + cam[9] * r2 + cam[10] * r2 * r2) * cam[6] + cam[7:9]
        out[2 * i:2 * i + 2] = w[i] * (proj - feats[i])
        out[2 * p + i] = 1 - w[i] ** 2
    return out


BA_INPUT = {"n": 2, "m": 3, "p": 5, "w": 0.417022, "feat": [271.76, 834.21], "x": [7.2, 0.0011, 3.02],
            "cam": [-0.758, -1.11, -0.846, 34.6, 39.7, 53.9, 419.2, 5.86, -8.52, 0.0878, 0.00274]}


@pytest.mark.parametrize("backend", BACKENDS)
def test_ba_residuals_and_sparse_jacobian_against_central_differences(backend):
    from benchmarks.gradbench.functions import ba_sparse, parse_ba

    arrays, statics = parse_ba(BA_INPUT)
    n, m, p = statics
    want = ba_residuals(arrays["cams"], arrays["points"], arrays["w"], arrays["feats"], n, m)
    got = answer(backend, "ba", "objective", BA_INPUT)[0]
    assert rel(got, want) < 1e-12
    objective = MODULES["ba"]["objective"].write([got])
    assert objective["reproj_error"]["repeated"] == p and objective["w_err"]["element"] == pytest.approx(want[2 * p])

    rows, cols, vals = ba_sparse(answer(backend, "ba", "jacobian", BA_INPUT), statics)
    dense = np.zeros((3 * p, 11 * n + 3 * m + p))
    for r in range(3 * p):
        dense[r, cols[rows[r]:rows[r + 1]]] = vals[rows[r]:rows[r + 1]]
    flat = np.concatenate([arrays["cams"].ravel(), arrays["points"].ravel(), arrays["w"]])

    def residuals(v):
        cams = v[:11 * n].reshape(n, 11)
        points = v[11 * n:11 * n + 3 * m].reshape(m, 3)
        return ba_residuals(cams, points, v[11 * n + 3 * m:], arrays["feats"], n, m)

    fd = np.stack([(residuals(flat + h) - residuals(flat - h)) / (2 * h[h != 0][0])
                   for h in np.eye(flat.size) * 1e-6 * np.maximum(1, np.abs(flat))], axis=1)
    assert rel(dense, fd) < 1e-6
    assert rows[-1] == 31 * p and len(cols) == len(vals) == 31 * p
