"""The GradBench tool as the harness sees it: a process answering JSON lines.

A whole session runs against ``python -m benchmarks.gradbench`` for each
backend, one message at a time, checking every reply's shape and values and
that the process is still alive after bad messages. Finer points (parsing
errors, repetition until ``min_runs``/``min_seconds``, the program cache) are
checked in-process on :class:`~benchmarks.gradbench.tool.Tool`.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from test_gradbench_models import BACKENDS, gmm_input, gmm_naive, lstm_input, lstm_naive

from benchmarks.gradbench.tool import Tool, repeat, serve

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Session:
    """A tool process driven line by line, as GradBench's eval does."""

    def __init__(self, backend: str):
        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gradbench", "--backend", backend],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.next_id = 0

    def send(self, message) -> dict:
        if isinstance(message, dict):
            message = {"id": self.next_id, **message}
            self.next_id += 1
            line = json.dumps(message)
        else:
            line = message
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        assert self.proc.poll() is None, "the tool exited"
        if isinstance(message, dict):
            assert reply["id"] == message["id"]
        return reply

    def evaluate(self, module, function, input) -> dict:
        reply = self.send({"kind": "evaluate", "module": module, "function": function, "input": input})
        assert reply["success"] is True, reply.get("error")
        timings = reply["timings"]
        assert all(set(t) == {"name", "nanoseconds"} and isinstance(t["nanoseconds"], int)
                   and t["nanoseconds"] >= 0 for t in timings)
        runs = [t for t in timings if t["name"] == "evaluate"]
        want = input.get("min_runs", 1) if isinstance(input, dict) else 1
        assert len(runs) >= want
        return reply

    def close(self) -> int:
        self.proc.stdin.close()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.wait(timeout=30)


def arrays(input, *names):
    return [np.array(input[k], dtype=float) for k in names]


@pytest.mark.parametrize("backend", BACKENDS)
def test_full_session(backend, rng):
    s = Session(backend)
    try:
        start = s.send({"kind": "start", "eval": "gmm", "config": {"n": 5}})
        assert start["tool"] == f"twograd-{backend}"
        for module in ("hello", "lse", "gmm", "lstm"):
            assert s.send({"kind": "define", "module": module}) == {"id": s.next_id - 1, "success": True}

        # hello: the eval's own chain, square then double of the result
        x = 1.0
        for _ in range(3):
            y = s.evaluate("hello", "square", x)["output"]
            assert y == x * x
            x = s.evaluate("hello", "double", y)["output"]
            assert x == 2 * y
        assert s.send({"kind": "analysis", "of": 3, "valid": True}) == {"id": s.next_id - 1}

        v = rng.normal(size=9) * 30
        primal = s.evaluate("lse", "primal", {"x": v.tolist(), "min_runs": 3, "min_seconds": 0})
        assert primal["output"] == pytest.approx(np.max(v) + math.log(np.sum(np.exp(v - np.max(v)))),
                                                 rel=1e-14)
        grad = s.evaluate("lse", "gradient", {"x": v.tolist(), "min_runs": 1, "min_seconds": 0})
        soft = np.exp(v - np.max(v))
        assert np.allclose(grad["output"], soft / soft.sum(), rtol=1e-12, atol=1e-300)

        g = gmm_input(rng, 3, 4, 6, m=1, gamma=0.9)
        obj = s.evaluate("gmm", "objective", {**g, "min_runs": 2, "min_seconds": 0})
        want = gmm_naive(*arrays(g, "alpha", "mu", "q", "l", "x"), 1, 0.9)
        assert obj["output"] == pytest.approx(want, rel=1e-11)
        jac = s.evaluate("gmm", "jacobian", {**g, "min_runs": 1, "min_seconds": 0})["output"]
        assert set(jac) == {"alpha", "mu", "q", "l"}
        assert np.shape(jac["alpha"]) == (4,) and np.shape(jac["mu"]) == (4, 3)
        assert np.shape(jac["q"]) == (4, 3) and np.shape(jac["l"]) == (4, 3)

        lstm = lstm_input(rng, 2, 5, 3)
        obj = s.evaluate("lstm", "objective", {**lstm, "min_runs": 1, "min_seconds": 0})
        want = lstm_naive(*arrays(lstm, "main_params", "extra_params", "state", "sequence"))
        assert obj["output"] == pytest.approx(want, rel=1e-12)
        jac = s.evaluate("lstm", "jacobian", {**lstm, "min_runs": 1, "min_seconds": 0})["output"]
        assert len(jac) == 4 * 12 + 3 * 3 and all(isinstance(t, float) for t in jac)

        # what the tool must survive
        bad = s.send({"kind": "define", "module": "nope"})
        assert bad["success"] is False and "nope" in bad["error"]
        bad = s.send({"kind": "evaluate", "module": "nope", "function": "objective", "input": {}})
        assert bad["success"] is False and bad["error"]
        bad = s.send({"kind": "evaluate", "module": "gmm", "function": "hessian", "input": g})
        assert bad["success"] is False and "hessian" in bad["error"]
        bad = s.send({"kind": "evaluate", "module": "gmm", "function": "objective",
                      "input": {**g, "mu": [[1.0, 2.0]]}})
        assert bad["success"] is False and "mu" in bad["error"]
        bad = s.send({"kind": "evaluate", "module": "lstm", "function": "objective",
                      "input": {**lstm, "sequence": [[0, 1], [1]]}})
        assert bad["success"] is False and "sequence" in bad["error"]
        bad = s.send({"kind": "evaluate", "module": "gmm", "function": "objective", "input": {**g, "m": 1e308}})
        assert bad["success"] is False and bad["error"].startswith("FeedError") and "'m'" in bad["error"]
        bad = s.send({"kind": "evaluate", "module": "gmm", "function": "jacobian", "input": {**g, "x": []}})
        assert bad["success"] is False and bad["error"].startswith("FeedError") and "'x'" in bad["error"]
        bad = s.send("{this is not json")
        assert bad["success"] is False and bad["id"] is None
        assert s.send({"kind": "unheard-of"}) == {"id": s.next_id - 1}

        # and it still works afterwards
        assert s.evaluate("hello", "square", 3.0)["output"] == 9.0
        assert s.send({"kind": "end"}) == {"id": s.next_id - 1}
    finally:
        code = s.close()
    assert code == 0


def replies(backend, *messages):
    lines = [json.dumps({"id": i, **m}) for i, m in enumerate(messages)]
    out = io.StringIO()
    serve(Tool(backend), lines, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_parsing_errors_name_the_field():
    g = gmm_input(np.random.default_rng(0), 2, 2, 3)
    cases = [
        ({**g, "gamma": "one"}, "gamma"),
        ({**g, "k": -1}, "'k'"),
        ({k: v for k, v in g.items() if k != "x"}, "'x'"),
        ({**g, "l": [[1.0, 2.0], [3.0, 4.0]]}, "'l'"),
        ([1, 2, 3], "JSON object"),
    ]
    messages = [{"kind": "evaluate", "module": "gmm", "function": "objective", "input": i} for i, _ in cases]
    messages.append({"kind": "evaluate", "module": "lstm", "function": "jacobian",
                     "input": {"main_params": [[1.0, 2.0, 3.0]], "extra_params": [], "state": [],
                               "sequence": []}})
    messages.append({"kind": "evaluate", "module": "hello", "function": "square", "input": "2"})
    messages.append({"kind": "evaluate", "module": "hello", "function": "square"})
    out = replies("symnum", *messages)
    assert len(out) == len(messages)
    for reply, (_, word) in zip(out, cases, strict=False):
        assert reply["success"] is False and word in reply["error"], reply
    assert "main_params" in out[len(cases)]["error"]
    assert out[-2]["success"] is False and out[-1]["success"] is False and "input" in out[-1]["error"]


def test_inputs_past_the_builders_limits_get_a_feed_error_naming_the_field():
    g = gmm_input(np.random.default_rng(1), 2, 2, 3)
    lstm = lstm_input(np.random.default_rng(1), 1, 3, 2)
    big = 10 ** 400  # a JSON integer no float64 holds
    cases = [
        ("gmm", {**g, "m": 1e308}, "'m'"),         # int(1e308) then float arithmetic overflowed
        ("gmm", {**g, "m": float("nan")}, "'m'"),
        ("gmm", {**g, "k": float("inf")}, "'k'"),
        ("gmm", {**g, "d": 2.0 ** 60}, "'d'"),      # past MAX_DIM, as a shape param would be
        ("gmm", {**g, "gamma": big}, "'gamma'"),
        ("gmm", {**g, "gamma": float("inf")}, "'gamma'"),
        ("gmm", {**g, "x": []}, "'x'"),            # empty where 3 x 2 numbers are needed
        ("gmm", {**g, "x": [[big, 0.0]] * 3}, "'x'"),
        ("gmm", {**g, "x": [["1", 0.0]] * 3}, "'x'"),  # numpy would read these as numbers; a builder would not
        ("gmm", {**g, "alpha": [True, False]}, "'alpha'"),
        ("gmm", {**g, "q": [[None, 0.0]] * 2}, "'q'"),
        ("lstm", {**lstm, "state": []}, "'state'"),
        ("lstm", {**lstm, "extra_params": []}, "'extra_params'"),
        ("lse", {"x": [1.0], "min_runs": big}, None),  # capped, not an error
        ("hello", big, "hello"),
    ]
    function = {"gmm": "objective", "lstm": "objective", "lse": "primal", "hello": "square"}
    messages = [{"kind": "evaluate", "module": m, "function": function[m], "input": i} for m, i, _ in cases]
    messages.append({"kind": "evaluate", "module": "hello", "function": "square", "input": 3.0})
    out = replies("symnum", *messages)
    assert len(out) == len(messages)
    for reply, (_, _, word) in zip(out, cases, strict=False):
        if word is None:
            assert reply["success"] is True and reply["output"] == 1.0
        else:
            assert reply["success"] is False and reply["error"].startswith("FeedError: "), reply
            assert word in reply["error"], reply
    assert out[-1]["output"] == 9.0  # still serving


def test_repeat_meets_both_minimums():
    calls = []
    results, times = repeat(lambda values: calls.append(1) or [values[0]], [np.ones(1)], 5, 0.0)
    assert len(times) == len(calls) == 5 and results == [np.ones(1)]
    # each run sleeps, so 0.02 s is met long before the run limit, however fast the machine
    results, times = repeat(lambda values: time.sleep(1e-3) or [values[0]], [np.ones(1)], 1, 0.02)
    assert sum(times) >= 0.02e9 and len(times) >= 1
    _, times = repeat(lambda values: [values[0]], [np.ones(1)], 0, 0.0)
    assert len(times) == 1  # the function always runs at least once


@pytest.mark.parametrize("backend", BACKENDS)
def test_graph_is_prepared_once_per_shape(backend):
    x = {"x": [1.0, 2.0, 3.0], "min_runs": 2, "min_seconds": 0}
    out = replies(backend, *[{"kind": "evaluate", "module": "lse", "function": "gradient", "input": i}
                             for i in (x, {**x, "x": [3.0, 1.0, 2.0]}, {**x, "x": [1.0, 2.0]})])
    names = [[t["name"] for t in r["timings"]] for r in out]
    prepared = {"symnum": [], "symnum-static": ["build"]}.get(backend, ["build", "compile"])
    assert names[0] == prepared + ["evaluate", "evaluate"]
    assert names[1] == ["evaluate", "evaluate"]          # same shape: cached
    assert names[2] == prepared + ["evaluate", "evaluate"]  # new shape: prepared again
    assert out[1]["output"] == pytest.approx(np.roll(out[0]["output"], 1).tolist(), rel=1e-15)


def test_twograd_cli_serves_the_protocol():
    messages = [{"id": 0, "kind": "start"}, {"id": 1, "kind": "define", "module": "lse"},
                {"id": 2, "kind": "evaluate", "module": "hello", "function": "double", "input": 4.5}]
    done = subprocess.run([sys.executable, "-m", "benchmarks", "gradbench", "--backend", "symnum"],
                          input="".join(json.dumps(m) + "\n" for m in messages), capture_output=True,
                          text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["id"] for r in out] == [0, 1, 2]
    assert out[0]["tool"] == "twograd-symnum" and out[1]["success"] is True and out[2]["output"] == 9.0


FAKE_EVAL = """
import json, sys
def send(m):
    print(json.dumps(m), flush=True)
    return json.loads(sys.stdin.readline()) if m["kind"] != "end" else None
send({"id": 0, "kind": "start", "eval": "hello"})
send({"id": 1, "kind": "define", "module": "hello"})
for i, (x, want) in enumerate([(3.0, 9.0), (2.0, 5.0)]):
    r = send({"id": 2 + 2 * i, "kind": "evaluate", "module": "hello", "function": "square", "input": x})
    send({"id": 3 + 2 * i, "kind": "analysis", "of": 2 + 2 * i, "valid": r["output"] == want})
send({"id": 6, "kind": "evaluate", "module": "nope", "function": "square", "input": 1.0})
send({"id": 7, "kind": "end"})
"""


def test_pipe_relays_an_eval_and_counts_its_analyses(tmp_path):
    script = tmp_path / "fake_eval.py"
    script.write_text(FAKE_EVAL)
    done = subprocess.run([sys.executable, "-m", "benchmarks.gradbench.pipe", "--eval", f"{sys.executable} {script}",
                           "--tool", f"{sys.executable} -m benchmarks.gradbench --backend symnum"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 1, done.stderr      # one answer judged invalid, one evaluation failed
    rows = done.stdout.splitlines()
    assert rows[-1] == "1 VALID, 1 invalid, 1 failed"
    assert [row.split("\t")[2] for row in rows[:-1]] == ["VALID", "invalid", "FAILED"]
