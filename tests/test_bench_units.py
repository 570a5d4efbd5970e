"""The harness's parts: finite-difference oracles, timing, memory, derived ratios, tables, registry."""

import io

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




class FakeMachine:
    """A clock that moves only when a fake function works: deterministic timings for the harness.

    ``slowdown(t)`` is the machine's drift, how much longer the same work takes at time ``t``;
    ``log`` records which function ran, call by call.
    """

    def __init__(self, slowdown=lambda t: 1.0):
        self.t = 0.0
        self.log = []
        self.slowdown = slowdown

    def clock(self):
        return self.t

    def work(self, name, seconds):
        def fn():
            self.log.append(name)
            self.t += seconds * self.slowdown(self.t)
        return fn


def test_measure_reports_the_per_call_time():
    m = FakeMachine()
    stats = timing.measure(m.work("f", 2e-3), min_time=0.03, min_count=3, max_time=0.5, clock=m.clock)
    assert stats.samples >= 3
    assert stats.median == pytest.approx(2e-3)        # per call, whatever the calls per sample
    assert stats.q1 <= stats.median <= stats.q3
    assert stats.samples * stats.number * 2e-3 >= 0.03


def test_interleaved_samples_take_turns_in_a_rotating_order():
    m = FakeMachine()
    costs = {"a": 1e-3, "b": 2e-3, "c": 0.5e-3}
    stats = timing.measure_interleaved({n: m.work(n, c) for n, c in costs.items()}, min_time=0.02, min_count=4,
                                       min_sample=4.2e-3, clock=m.clock)
    numbers = {n: s.number for n, s in stats.items()}
    assert numbers == {"a": 4, "b": 2, "c": 8}          # each its own calls per sample, >= min_sample
    rounds = stats["a"].samples
    assert all(s.samples == rounds for s in stats.values())
    expected = ["a", "b", "c"]                          # the warm-ups
    for r in range(rounds):
        for n in ["abc"[(r + i) % 3] for i in range(3)]:
            expected += [n] * numbers[n]
    assert m.log == expected


def test_interleaved_timing_stops_at_min_count_and_min_time_or_max_time():
    m = FakeMachine()
    stats = timing.measure_interleaved({"a": m.work("a", 1e-3), "b": m.work("b", 3e-3)}, min_time=0.0,
                                       min_count=7, min_sample=1e-3, clock=m.clock)
    assert [s.samples for s in stats.values()] == [7, 7]
    assert stats["b"].median == pytest.approx(3e-3) and len(stats["b"].rounds) == 7
    m = FakeMachine()
    stats = timing.measure_interleaved({"a": m.work("a", 1e-3), "b": m.work("b", 1e-3)}, min_time=0.1,
                                       min_count=2, min_sample=2.5e-3, clock=m.clock)
    assert all(s.samples * s.number * 1e-3 >= 0.1 for s in stats.values())    # min_time each, not shared
    m = FakeMachine()
    stats = timing.measure_interleaved({"a": m.work("a", 1.0), "b": m.work("b", 1.0)}, min_time=0.1,
                                       min_count=100, max_time=5.0, clock=m.clock)
    assert [s.samples for s in stats.values()] == [5, 5]                      # max_time wins


def test_paired_ratio_cancels_a_drift_that_sequential_timing_sees():
    slower = lambda t: 1.5 if t >= 0.055 else 1.0       # the machine slows down halfway
    m = FakeMachine(slower)
    alone = {n: timing.measure(m.work(n, c), min_time=0.05, min_count=5, min_sample=2.5e-3, clock=m.clock)
             for n, c in (("a", 1e-3), ("b", 2e-3))}
    assert alone["b"].median / alone["a"].median == pytest.approx(3.0)       # b does 2x a's work
    m = FakeMachine(slower)
    both = timing.measure_interleaved({"a": m.work("a", 1e-3), "b": m.work("b", 2e-3)}, min_time=0.05,
                                      min_count=5, min_sample=2.5e-3, clock=m.clock)
    assert both["a"].rounds[0] < both["a"].rounds[-1]                        # the drift hit both
    assert timing.paired_ratio(both["b"].rounds, both["a"].rounds) == pytest.approx(2.0, rel=0.05)


def test_paired_ratio_needs_samples_that_pair_up():
    assert timing.paired_ratio([2.0, 9.0, 3.0], [1.0, 3.0, 1.0]) == pytest.approx(3.0)
    assert timing.paired_ratio([1.0, 2.0], [1.0]) is None
    assert timing.paired_ratio(None, [1.0]) is None
    assert timing.paired_ratio([], []) is None


def test_timing_drops_a_function_that_raises_and_times_the_rest():
    m = FakeMachine()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) > 2:
            raise ValueError("broke")
        m.t += 1e-3

    failed = {}
    stats = harness.timed_together({"ok": m.work("ok", 1e-3), "flaky": flaky},
                                   lambda name, e: failed.setdefault(name, e), 0.0, 3, 1.0)
    assert set(stats) == {"ok"} and stats["ok"].samples == 3
    assert isinstance(failed["flaky"], ValueError)
    with pytest.raises(ValueError, match="broke"):
        timing.measure(flaky, min_time=0.0, min_count=3)


def test_a_cells_backends_are_timed_together_and_ratios_paired():
    w = load_all()["chain"]
    results = harness.run([(w, ["sin-d3"])], harness.Settings(min_time=0.005, min_count=3, max_time=0.02,
                                                              memory=False), progress=False)
    cells = [c for c in results["cells"] if c["status"] == "ok"]
    assert {c["backend"] for c in cells} >= {"hand", "symnum", "symsym"}
    assert len({len(c["time"]["rounds"]) for c in cells}) == 1
    assert all(c["ratio_paired"] and c["time"]["samples"] >= 3 for c in cells)
    by = {c["backend"]: c for c in cells}
    assert by["hand"]["ratio_to_hand"] == pytest.approx(1.0)


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
    assert not by["symnum"]["ratio_paired"]                     # no rounds: median over median
    assert by["symsym"]["ratio_to_hand"] == pytest.approx(2.0)
    assert by["symnum"]["memory_ratio_to_hand"] == pytest.approx(1.5)
    assert by["symnum"]["grad_over_forward"] == pytest.approx(3.0)
    assert by["symsym"]["break_even"] == pytest.approx(10.0)   # 10 ms / (3 ms - 2 ms)
    by["symsym"]["time"]["median"] = 4e-3
    harness.derive(results)
    assert by["symsym"]["break_even"] is None                   # never repaid
    assert results["ok"]


def test_derive_pairs_the_rounds_of_backends_timed_together():
    hand = {"median": 2.0, "rounds": [1.0, 2.0, 4.0]}
    symnum = {"median": 2.0, "rounds": [2.0, 1.0, 8.0]}       # ratios 2, 0.5, 2: paired median 2
    cells = [{"workload": "w", "size": "s", "backend": "hand", "status": "ok", "time": hand},
             {"workload": "w", "size": "s", "backend": "symnum", "status": "ok", "time": symnum}]
    harness.derive({"cells": cells, "checks": []})
    assert cells[1]["ratio_to_hand"] == pytest.approx(2.0) and cells[1]["ratio_paired"]
    symnum["rounds"] = [2.0, 1.0]                               # not paired: median over median
    harness.derive({"cells": cells, "checks": []})
    assert cells[1]["ratio_to_hand"] == pytest.approx(1.0) and not cells[1]["ratio_paired"]


def test_a_failed_check_or_a_crash_makes_the_run_not_ok():
    results = {"cells": [{"workload": "w", "size": "s", "backend": "symnum", "status": "error", "note": "boom"}],
               "checks": [{"workload": "w", "size": "s", "check": "a vs b", "error": 1.0, "tol": 1e-9,
                           "ok": False}]}
    harness.derive(results)
    assert not results["ok"]
    lines = harness.failures(results)
    assert any(line.startswith("MISMATCH") for line in lines)
    assert any("boom" in line for line in lines)


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_finished_cell_elsewhere():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty, pipe, quiet = Tty(), io.StringIO(), io.StringIO()
    for stream, enabled in ((tty, True), (pipe, True), (quiet, False)):
        bar = harness.Progress(2, enabled=enabled, stream=stream)
        bar.step("one")
        bar.finished("cell one: done")
        bar.step("two")
        bar.finished("cell two: done")
        bar.close()
    assert "2/2" in tty.getvalue() and "\r[" in tty.getvalue() and "cell one" not in tty.getvalue()
    lines = pipe.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("[1/2 ") and lines[0].endswith("] cell one: done")
    assert lines[1].startswith("[2/2 ") and "#" not in pipe.getvalue()
    assert quiet.getvalue() == ""


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

    from scipy.special import erf  # numpy has none; jax and autograd hand the adapter their own

    ns = NumpyLike(np, logsumexp, stop_gradient=lambda x: x, erf=erf)
    for w in load_all().values():
        if w.hidden:
            continue
        p = w.make(w.check[0])
        if p.hand_forward is not None:
            np.testing.assert_allclose(p.fn(ns, *p.arrays), p.hand_forward(*p.arrays), rtol=1e-10,
                                       err_msg=w.name)


def test_report_names_peer_versions_and_a_cell_over_budget():
    results = {"settings": {"peers": ["jax"], "peer_budget": 60.0}, "versions": {"jax": "0.10.2"},
               "cells": [{"workload": "chain", "size": "sin-d3", "label": "", "backend": b, "role": role,
                          "status": status, "note": note, "time": {"median": 1e-3, "iqr": 0.0}}
                         for b, role, status, note in (("hand", "reference", "ok", ""),
                                                       ("jax", "peer", "skipped",
                                                        "jax: compile over budget: killed after 60 s"))]}
    assert report.peer_versions(results) == "jax 0.10.2"
    assert "60 s" in report.peer_budget(results["settings"])
    assert report.peer_budget({"peers": [], "peer_budget": 60.0}) == ""
    title, headers, rows = report.time_table(results)
    assert rows[0][headers.index("jax")] == "over budget"


def _sin_problem():
    """sum(sin(x) * y) with respect to x: the gradient is cos(x) * y (closed form)."""
    calls = []

    def fn(ns, x, y):
        calls.append(ns.__name__ if hasattr(ns, "__name__") else type(ns).__name__)
        return ns.sum(ns.sin(x) * y)

    x, y = np.linspace(-1.0, 2.0, 5), np.linspace(0.5, 1.5, 5)
    return Problem(fn, {"x": x, "y": y}, ("x",)), calls, [np.cos(x) * y]


@pytest.mark.parametrize("name", ["symnum", "symnum-static", "symsym"])
def test_each_twograd_backend_gives_the_closed_form_gradient_value_and_training_step(name):
    from benchmarks.backends import BACKENDS

    problem, _, want = _sin_problem()
    runner = BACKENDS[name].prepare(problem, "grad")
    arrays = problem.arrays
    np.testing.assert_allclose(runner.grad(arrays)[0], want[0], rtol=1e-14)
    value = float(np.sum(np.sin(arrays[0]) * arrays[1]))
    assert float(np.asarray(runner.forward(arrays))) == pytest.approx(value, rel=1e-14)
    loss, grads = runner.value_and_grad(arrays)
    assert loss == pytest.approx(value, rel=1e-14)
    np.testing.assert_allclose(np.asarray(grads[0]), want[0], rtol=1e-14)


def test_symnum_records_the_function_on_every_call_and_symnum_static_runs_the_graph():
    """define-by-run: the workload's function runs on symnum each call; the static program never calls it."""
    from benchmarks.backends import BACKENDS

    problem, calls, _ = _sin_problem()
    tape = BACKENDS["symnum"].prepare(problem, "grad")
    for _ in range(3):
        tape.grad(problem.arrays)
    assert calls == ["symnum"] * 3
    calls.clear()
    static = BACKENDS["symnum-static"].prepare(problem, "grad")
    for _ in range(3):
        static.grad(problem.arrays)
    assert "symnum" not in calls and len(calls) <= 1   # at most the one graph build, on common.api


def test_symnum_static_says_why_it_skips_a_hessian():
    from benchmarks.backends import BACKENDS, Unsupported

    problem, _, _ = _sin_problem()
    for kind in ("hessian", "order"):
        with pytest.raises(Unsupported, match=r"^symnum-static: .*define-by-run"):
            BACKENDS["symnum-static"].prepare(problem, kind)


def test_symsym_one_off_is_read_from_the_functions_documented_timings(monkeypatch):
    import symsym
    from benchmarks.backends import BACKENDS

    compile_ = symsym.function

    def marked(*args, **kwargs):
        fn = compile_(*args, **kwargs)
        fn.timings = {"optimize": 1.5, "compile": 2.25}
        return fn

    monkeypatch.setattr(symsym, "function", marked)
    problem, _, _ = _sin_problem()
    runner = BACKENDS["symsym"].prepare(problem, "grad")
    one_off = runner.one_off
    assert one_off["optimise"] == 1.5 and one_off["compile"] == 2.25
    assert 0 <= one_off["build"] < 1.0
    assert one_off["total"] == pytest.approx(one_off["build"] + 3.75)
    assert runner.nodes["grad_raw"] >= runner.nodes["grad_opt"] >= 1


@pytest.mark.parametrize("backend", ["symnum", "symnum-static", "symsym"])
def test_gradbench_engines_are_the_benchmarks_backends(backend):
    from benchmarks.backends import BACKENDS
    from benchmarks.gradbench.engines import ENGINE_BACKENDS, ENGINES
    from benchmarks.gradbench.functions import MODULES

    engine = ENGINES[backend]()
    assert engine.name == backend
    if backend in ENGINE_BACKENDS:  # the graph columns: the benchmark's own backend objects
        assert engine.backend is BACKENDS[backend]
    x = np.linspace(-1.0, 1.0, 4)
    grad, one_off = engine.prepare(MODULES["lse"]["gradient"], {"x": x.shape}, ())
    assert [t["name"] for t in one_off] == ([] if backend == "symnum" else
                                            ["build", "compile"] if backend == "symsym" else ["build"])
    np.testing.assert_allclose(np.ravel(grad([x])[0]), np.exp(x) / np.sum(np.exp(x)), rtol=1e-14)
    value, _ = engine.prepare(MODULES["lse"]["primal"], {"x": x.shape}, ())
    assert float(np.asarray(value([x])[0])) == pytest.approx(np.log(np.sum(np.exp(x))), rel=1e-14)


def test_report_has_a_column_per_twograd_backend_and_says_what_each_is():
    from benchmarks.backends import BACKENDS, TWOGRAD

    assert TWOGRAD[:3] == ("symnum", "symnum-static", "symsym") and set(TWOGRAD[3:]) <= {"symsym-numba"}
    cells = [{"workload": "w", "size": "s", "label": "", "backend": b, "role": BACKENDS[b].role, "status": "ok",
              "note": "", "time": {"median": t, "iqr": 0.0}}
             for b, t in (("hand", 1e-3), ("symnum", 4e-3), ("symnum-static", 2e-3), ("symsym", 1e-3))]
    cells[-1]["one_off"] = {"build": 1e-3, "optimise": 1e-3, "compile": 1e-3, "total": 3e-3}
    results = {"cells": cells, "checks": []}
    harness.derive(results)
    title, headers, rows = report.one_off_table(results)
    assert "symnum (the tape)" in title
    assert [h for h in headers if h.endswith("/call")] == [f"{b}/call" for b in TWOGRAD]
    assert rows[0][headers.index("break-even calls")] == "1"   # 3 ms / (4 ms - 1 ms): against the tape
    lines = report.columns(results)
    assert [line.split("*")[2] for line in lines] == ["hand", *TWOGRAD[:3]]   # "* *name*: ...", those run
    assert "define-by-run" in lines[1] and "Caffe" in lines[2]
