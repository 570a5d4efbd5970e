"""The harness's parts: finite-difference oracles, timing, memory, derived ratios, tables, registry."""

import io
import time

import numpy as np
import pytest

from benchmarks import harness, report, timing
from benchmarks.finite import GradientOracle, HessianOracle, rel_err
from benchmarks.workloads import Problem, load_all, workload


def cube_sum(x, y):
    return float(np.sum(x ** 3) + np.sum(np.sin(y)))


@pytest.mark.parametrize("full_limit", [1000, 0], ids=["full", "directional"])
def test_gradient_oracle_accepts_the_right_gradient_and_rejects_a_wrong_one(rng, full_limit):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(5)
    oracle = GradientOracle(cube_sum, [x, y], [0, 1], full_limit=full_limit, directions=3)
    assert oracle.full == (full_limit > 0)
    right = [3 * x ** 2, np.cos(y)]
    assert oracle.error(right) < 1e-8
    wrong = [3 * x ** 2, np.cos(y) * 1.001]
    assert oracle.error(wrong) > 1e-5


@pytest.mark.parametrize("full_limit", [100, 0], ids=["full", "directional"])
def test_hessian_oracle_matches_a_quadratic_form(rng, full_limit):
    a = rng.standard_normal((6, 6))
    f = lambda x: float(x @ a @ x + np.sum(x ** 3))
    x = rng.standard_normal(6)
    oracle = HessianOracle(f, [x], 0, full_limit=full_limit)
    exact = a + a.T + np.diag(6 * x)
    assert oracle.error([exact]) < 1e-6
    assert oracle.error([exact + 1e-2 * np.eye(6)]) > 1e-4


def test_rel_err_is_scale_free_and_shape_strict():
    assert rel_err([np.ones(3)], [np.ones(3)]) == 0.0
    assert rel_err(1e6 * np.ones(2), 1e6 * np.ones(2) + 1.0) == pytest.approx(1e-6)
    assert rel_err(np.ones(2), np.ones(3)) == float("inf")


def test_measure_reports_the_per_call_time():
    stats = timing.measure(lambda: time.sleep(0.002), min_time=0.03, min_count=3, max_time=0.5)
    assert stats.samples >= 3
    assert 0.002 <= stats.median < 0.02
    assert stats.q1 <= stats.median <= stats.q3


def test_peak_memory_sees_numpy_buffers():
    peak = timing.peak_memory(lambda: np.ones(1_000_000).sum())
    assert peak >= 8_000_000


def test_derive_computes_ratios_and_break_even():
    cells = [
        {"workload": "w", "size": "s", "backend": "hand", "time": {"median": 1e-3}, "memory": 100},
        {"workload": "w", "size": "s", "backend": "symnum", "time": {"median": 3e-3}, "memory": 150,
         "forward": {"median": 1e-3}},
        {"workload": "w", "size": "s", "backend": "symsym", "time": {"median": 2e-3}, "memory": 120,
         "one_off": {"total": 10e-3}},
    ]
    results = {"cells": cells, "checks": []}
    for c in cells:
        c["status"] = "ok"
    harness.derive(results)
    by = {c["backend"]: c for c in cells}
    assert by["symnum"]["ratio_to_hand"] == pytest.approx(3.0)
    assert by["symsym"]["ratio_to_hand"] == pytest.approx(2.0)
    assert by["symnum"]["memory_ratio_to_hand"] == pytest.approx(1.5)
    assert by["symnum"]["grad_over_forward"] == pytest.approx(3.0)
    assert by["symsym"]["break_even"] == pytest.approx(10.0)   # 10 ms / (3 ms - 2 ms)
    by["symsym"]["time"]["median"] = 4e-3
    harness.derive(results)
    assert by["symsym"]["break_even"] is None                   # never repaid
    assert results["ok"]


def test_a_failed_check_or_a_crash_makes_the_run_not_ok():
    results = {"cells": [{"workload": "w", "size": "s", "backend": "symnum", "status": "error", "note": "boom"}],
               "checks": [{"workload": "w", "size": "s", "check": "a vs b", "error": 1.0, "tol": 1e-9,
                           "ok": False}]}
    harness.derive(results)
    assert not results["ok"]
    lines = harness.failures(results)
    assert any(line.startswith("MISMATCH") for line in lines)
    assert any("boom" in line for line in lines)


def test_progress_bar_writes_to_a_terminal_only():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = harness.Progress(2, stream=stream)
        bar.step("one")
        bar.step("two")
        bar.close()
    assert "2/2" in tty.getvalue() and "[" in tty.getvalue()
    assert pipe.getvalue() == ""


def test_registry_discovers_every_module_and_rejects_bad_kinds():
    names = set(load_all())
    assert {"chain", "xor", "mlp", "mlp-train", "rosenbrock", "elementwise", "order"} <= names
    with pytest.raises(ValueError):
        workload("nope", sizes=("a",), kind="third-order")


def test_seeded_inputs_are_the_same_on_every_make():
    w = load_all()["mlp"]
    a, b = w.make("small"), w.make("small")
    for x, y in zip(a.arrays, b.arrays):
        np.testing.assert_array_equal(x, y)


def test_tables_render_in_every_format():
    w = load_all()["chain"]
    results = harness.run([(w, ["sin-d3"])], harness.Settings(min_time=0.005, min_count=2, max_time=0.02),
                          progress=False)
    tabs = report.tables(results, checks="all")
    titles = [t[0] for t in tabs]
    assert any(t.startswith("Time per derivative") for t in titles)
    assert any(t.startswith("Cross-checks") for t in titles)
    for fmt in report.FORMATS:
        text = report.render(tabs, fmt)
        assert "sin-d3" in text
    assert report.render(tabs, "markdown").count("|") > 10
    import json

    assert isinstance(json.loads(report.render(tabs, "json")), list)


def test_problem_graph_is_built_once():
    p = Problem(lambda ns, x: ns.sum(ns.sin(x)), {"x": np.ones(3)}, ("x",))
    assert p.graph() is p.graph()
    assert p.wrt_index == [0]


def test_numpy_like_peer_namespace_computes_every_workload_cost():
    """The adapter jax/autograd use, run on numpy itself: every op the workloads call is mapped."""
    from benchmarks.peers import NumpyLike

    def logsumexp(x, axis=None, keepdims=False):
        m = np.max(x, axis=axis, keepdims=True)
        s = np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True)) + m
        return s if keepdims else np.squeeze(s, axis=axis)

    ns = NumpyLike(np, logsumexp, stop_gradient=lambda x: x)
    for w in load_all().values():
        if w.hidden:
            continue
        p = w.make(w.check[0])
        if p.hand_forward is not None:
            np.testing.assert_allclose(p.fn(ns, *p.arrays), p.hand_forward(*p.arrays), rtol=1e-10,
                                       err_msg=w.name)
