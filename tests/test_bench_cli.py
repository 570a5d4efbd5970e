"""The twograd command line: bench writes JSON/markdown/plots, check fails loudly, plot/show/explain."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.backends import BACKENDS, OWN
from benchmarks.cli import main
from benchmarks.peers import PEERS, installed
from benchmarks.workloads import WORKLOADS, Problem, workload

TINY = ["-w", "chain:sin-d3+sin-d10", "-w", "xor", "-w", "order:gauss", "-w", "rosenbrock:n10",
        "--min-time", "0.005", "--min-count", "2", "--max-time", "0.02"]
PEERS_HERE = installed()   # whatever extras this environment has: none, some or all of the peers


@workload("test-wrong-hand", sizes=("n4",), kind="grad", hidden=True,
          doc="sum(sin(x)) with a hand gradient that is deliberately 1% off")
def _wrong_hand(size):
    return Problem(lambda ns, x: ns.sum(ns.sin(x)), {"x": np.linspace(-1.0, 1.0, 4)}, ("x",),
                   hand_grad=lambda x: [1.01 * np.cos(x)], hand_forward=lambda x: np.sum(np.sin(x)))


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One tiny ``python -m benchmarks bench`` in a fresh process (as a user runs it; stderr is a pipe)."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "bench", *TINY, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    return proc, out


def test_bench_writes_results_report_and_plots(bench_run):
    proc, out = bench_run
    assert proc.returncode == 0, proc.stderr
    assert "Time per derivative" in proc.stdout and "Time / hand-written numpy" in proc.stdout
    assert "cross-checks passed" in proc.stderr
    report = (out / "report.md").read_text()
    assert "# twograd benchmark report" in report and "All cross-checks passed" in report
    for name in OWN:
        assert f"* *{name}*: " in report        # what each column is
    for name in ("time_vs_size", "ratio_to_hand", "amortisation", "order_nodes", "loss_curves",
                 "one_off_vs_nodes", "memory_vs_size", "figure_6_10"):
        for ext in ("png", "svg"):
            f = out / f"{name}.{ext}"
            assert f.exists() and f.stat().st_size > 1000, f
        assert f"({name}.png)" in report


def test_results_json_schema(bench_run):
    _, out = bench_run
    r = json.loads((out / "results.json").read_text())
    assert r["schema"] == "twograd-bench/1"
    assert {"machine", "settings", "versions", "cells", "checks", "curves", "orders", "notes", "ok",
            "selection", "wall_time"} <= set(r)
    assert r["ok"] is True
    assert r["machine"]["threads"]["OPENBLAS_NUM_THREADS"] == "1"
    assert {"python", "numpy", "platform", "cpus"} <= set(r["machine"])
    assert {"min_time", "min_count", "backends", "peers"} <= set(r["settings"])
    assert list(r["settings"]["peers"]) == PEERS_HERE
    assert set(PEERS_HERE) <= set(r["versions"])
    keys = {(c["workload"], c["size"], c["backend"]) for c in r["cells"]}
    for size in ("sin-d3", "sin-d10"):
        assert {("chain", size, b) for b in (*OWN, *PEERS_HERE)} == \
            {k for k in keys if k[:2] == ("chain", size)}
    for c in r["cells"]:
        if c["status"] == "skipped" and (c["role"] == "peer" or c["kind"] not in BACKENDS[c["backend"]].kinds):
            assert c["note"].startswith(c["backend"]), c    # a backend may not do a workload: it says why
            continue
        assert c["status"] == "ok", c
        assert {"median", "q1", "q3", "iqr", "samples", "number"} <= set(c["time"])
        assert c["time"]["q1"] <= c["time"]["median"] <= c["time"]["q3"]
        assert c["memory"] >= 0
        if c["backend"] != "hand":
            assert c["ratio_to_hand"] > 0
        if c["backend"] == "symsym":
            assert {"build", "optimise", "compile", "total"} <= set(c["one_off"])
            assert {"forward", "grad_raw", "grad_opt"} <= set(c["nodes"])
            assert "break_even" in c
    skipped = {(c["workload"], c["backend"]) for c in r["cells"] if c["status"] == "skipped" and c["role"] != "peer"}
    assert skipped == {("rosenbrock", "symnum-static")}     # the static program does first derivatives only
    for chk in r["checks"]:
        assert {"workload", "size", "check", "error", "tol", "ok"} <= set(chk) and chk["ok"]
    checked = {chk["check"] for chk in r["checks"]}
    assert {"symnum vs finite differences", "symnum-static vs symnum", "symsym vs symnum"} <= checked
    trained = {c["backend"] for c in r["cells"] if c["workload"] == "xor" and c["status"] == "ok"}
    assert set(OWN) <= trained
    assert {c["backend"] for c in r["curves"]} == trained
    assert [o["order"] for o in r["orders"]] == [1, 2, 3, 4, 5, 6]
    assert all(o["nodes_raw"] >= o["nodes_opt"] for o in r["orders"])


def test_bench_prints_a_line_per_finished_cell_when_stderr_is_not_a_terminal(bench_run):
    proc, out = bench_run
    r = json.loads((out / "results.json").read_text())
    lines = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    cells = r["cells"]
    assert len(lines) == len(cells) + len(r["selection"]["order"])
    for c in cells:
        assert any(f"] {c['workload']} {c['size']} {c['backend']}: " in line for line in lines), c
    assert lines[-1].startswith(f"[{len(lines)}/{len(lines)} ")
    # no bar into a pipe (a '#' alone may come from a peer's warning: PyTensor's links to its docs)
    assert "\r" not in proc.stderr and not re.search(r"\[[#.]{30}\]", proc.stderr)


def test_plot_redraws_from_the_json(bench_run, tmp_path):
    _, out = bench_run
    assert main(["plot", str(out / "results.json"), "--out", str(tmp_path)]) == 0
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "time_vs_size.png" in pngs and "amortisation.png" in pngs
    assert all((tmp_path / p).stat().st_size > 1000 for p in pngs)


def test_check_exits_nonzero_on_a_wrong_gradient(capsys):
    assert "test-wrong-hand" in WORKLOADS
    assert main(["check", "-w", "test-wrong-hand", "--no-progress", "--peers", "none"]) == 1
    err = capsys.readouterr().err
    assert "MISMATCH" in err and "hand vs finite differences" in err and "FAILED" in err


def test_check_passes_on_a_right_one(capsys):
    assert main(["check", "-w", "chain:sin-d3", "--no-progress", "--format", "csv", "--peers", "none"]) == 0
    out = capsys.readouterr().out
    assert "symsym vs symnum" in out and "symnum-static vs symnum" in out


def test_unknown_size_is_a_clean_error():
    with pytest.raises(SystemExit, match="no size"):
        main(["check", "-w", "chain:d7"])


def test_show_prints_the_chain_and_draws_it(tmp_path, capsys):
    png = tmp_path / "fig.png"
    assert main(["show", "chain", "--order", "1", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "sin(sin(sin(w)))" in out
    for name in ("'x'", "'y'", "'z'"):
        assert name in out
    assert "cos(w)" in out
    assert png.stat().st_size > 1000


def test_explain_traces_build_grad_on_the_chain(capsys):
    assert main(["explain", "chain"]) == 0
    out = capsys.readouterr().out
    for name in ("grad_table[z]", "grad_table[y]", "grad_table[x]", "grad_table[w]"):
        assert name in out


def test_list_names_workloads_backends_and_peers_with_their_versions(capsys):
    from importlib.metadata import version

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("chain", "mlp", "rosenbrock", "elementwise", "xor", "order", *OWN):
        assert word in out
    backends = {line.split()[0]: line for line in out.split("backends:")[1].split("peers:")[0].splitlines()
                if line.strip()}
    assert list(backends) == list(OWN)
    assert "define-by-run" in backends["symnum"] and "symnum.gradients" in backends["symnum-static"]
    assert "test-wrong-hand" not in out
    peer_lines = {line.split()[0]: line for line in out.split("peers:")[1].splitlines() if line.strip()}
    assert set(peer_lines) == set(PEERS)
    for name, line in peer_lines.items():
        if name in PEERS_HERE:
            assert version(PEERS[name].module) in line and "not installed" not in line
        else:
            assert "not installed" in line


def test_peer_budget_must_be_positive(capsys):
    for bad in ("0", "-1", "nan", "soon"):
        with pytest.raises(SystemExit) as e:
            main(["check", "-w", "chain:sin-d3", "--peer-budget", bad])
        assert e.value.code == 2
        assert "--peer-budget" in capsys.readouterr().err


def test_help_describes_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("bench", "check", "plot", "show", "explain", "list", "gradbench"):
        assert cmd in out


@pytest.mark.skipif(importlib.util.find_spec("benchmarks.gradbench.tool") is None,
                    reason="the GradBench tool is not there")
def test_gradbench_is_wired_lazily(capsys):
    with pytest.raises(SystemExit) as e:
        main(["gradbench", "--help"])
    assert e.value.code == 0
    assert "usage: twograd gradbench" in capsys.readouterr().out


def test_thread_limits_are_set_before_numpy_in_the_cli_process():
    code = "import benchmarks.cli, os; print(os.environ['OPENBLAS_NUM_THREADS'])"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.stdout.strip() == "1"
