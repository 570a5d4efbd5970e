"""The control-flow workloads (lstm-scan, newton, euler): their hand-written references against finite
differences of plain numpy, every backend against them, on graphs (scan, while_loop) and on the tape
(Python loops); and a workload whose graph cannot be built fails its check without stopping the run.

(The harness's own cross-checks of every visible workload, these included, are in test_bench_workloads.)
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum
from benchmarks import harness
from benchmarks.backends import BACKENDS
from benchmarks.finite import central_differences, rel_err
from benchmarks.workloads import Problem, get, workload
from common import count_nodes, evaluate

SMALL = [("lstm-scan", "l1-c6-b3"), ("newton", "n8"), ("euler", "t100"), ("euler", "t1000")]


def _hand_fd(problem: Problem) -> list:
    """Central differences of the hand-written numpy cost: a reference that shares no code with a backend."""
    arrays = problem.arrays
    return [central_differences(lambda v, i=i: problem.hand_forward(*arrays[:i], v, *arrays[i + 1:]), arrays[i])
            for i in problem.wrt_index]


@pytest.mark.parametrize("name, size", SMALL)
def test_hand_gradient_matches_finite_differences_of_the_hand_cost(name, size):
    problem = get(name).make(size)
    assert rel_err(problem.hand_grad(*problem.arrays), _hand_fd(problem)) < 1e-7


@pytest.mark.parametrize("name, size", SMALL)
def test_the_tape_gradient_through_python_loops_matches_the_hand_one(name, size):
    problem = get(name).make(size)
    grad = BACKENDS["symnum"].prepare(problem, "grad").grad(problem.arrays)
    assert rel_err(grad, problem.hand_grad(*problem.arrays)) < 1e-9


def test_newton_through_the_iterations_is_the_implicit_gradient():
    """The tape differentiates the Newton steps that ran; the hand gradient has no loop (implicit
    function theorem): they agree because of the polishing step after the loop."""
    w = get("newton")
    for size in ("n8", "n1000"):
        problem = w.make(size)
        grad = BACKENDS["symnum"].prepare(problem, "grad").grad(problem.arrays)
        assert rel_err(grad, problem.hand_grad(*problem.arrays)) < 1e-10


def test_lstm_scan_is_the_unrolled_lstm_to_the_bit_on_the_tape():
    unrolled, scanned = get("lstm").make("l2-c128-b7"), get("lstm-scan").make("l2-c128-b7")
    assert all(np.array_equal(a, b) for a, b in zip(unrolled.arrays, scanned.arrays))
    a = BACKENDS["symnum"].prepare(unrolled, "grad").grad(unrolled.arrays)
    b = BACKENDS["symnum"].prepare(scanned, "grad").grad(scanned.arrays)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name, size", SMALL)
def test_the_graph_evaluates_to_the_hand_cost(name, size):
    problem = get(name).make(size)
    cost, variables = problem.graph()
    value = evaluate(cost, dict(zip(variables, problem.arrays)))
    assert rel_err(value, problem.hand_forward(*problem.arrays)) < 1e-12


@pytest.mark.parametrize("backend", ["symnum-static", "symsym"])
@pytest.mark.parametrize("name, size", SMALL)
def test_graph_backends_differentiate_the_loops_like_the_hand_gradient(backend, name, size):
    problem = get(name).make(size)
    grad = BACKENDS[backend].prepare(problem, "grad").grad(problem.arrays)
    assert rel_err(grad, problem.hand_grad(*problem.arrays)) < 1e-9


def test_scan_graphs_do_not_grow_with_the_sequence():
    """The scan lstm's graph (and symsym's derivative graph) has the same size at every length; the
    unrolled one grows with it."""
    sizes = {}
    for name in ("lstm", "lstm-scan"):
        for c in (6, 24):
            problem = get(name).make(f"l1-c{c}-b3")
            runner = BACKENDS["symsym"].prepare(problem, "grad")
            sizes[name, c] = (count_nodes(problem.graph()[0]), runner.nodes["grad_raw"], runner.nodes["grad_opt"])
    assert sizes["lstm-scan", 6] == sizes["lstm-scan", 24]
    assert all(u < v for u, v in zip(sizes["lstm", 6], sizes["lstm", 24]))


def test_long_euler_graph_is_small_and_its_gradient_runs():
    problem = get("euler").make("t10000")
    assert count_nodes(problem.graph()[0]) < 100
    grad = BACKENDS["symsym"].prepare(problem, "grad").grad(problem.arrays)
    assert rel_err(grad, problem.hand_grad(*problem.arrays)) < 1e-9


@workload("test-no-graph", sizes=("n3",), hidden=True, doc="an op the IR lacks: its graph cannot be built")
def _no_graph(size: str) -> Problem:
    fn = lambda ns, x: ns.sum(x * x) if ns is symnum else ns.no_such_op(x)
    return Problem(fn, {"x": np.arange(3.0)}, ("x",), hand_grad=lambda x: [2 * x])


def test_a_workload_whose_graph_fails_is_reported_and_the_run_goes_on():
    w, ok = get("test-no-graph"), get("euler")
    settings = harness.Settings(timing=False, memory=False, backends=("hand", "symnum", "symsym"))
    results = harness.run([(w, ["n3"]), (ok, ["t100"])], settings, progress=False)
    failed = harness.failures(results)
    assert any("test-no-graph n3: the IR graph builds" in line for line in failed)
    assert any("test-no-graph n3 symsym" in line and "no_such_op" in line for line in failed)
    checks = {(c["workload"], c["check"]): c["ok"] for c in results["checks"]}
    assert checks["test-no-graph", "hand vs symnum"]               # the backends still compared
    assert checks["euler", "symsym vs finite differences"]        # and the next workload ran
