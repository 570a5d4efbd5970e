"""``twograd show scan`` / ``explain scan`` and the unrolled-vs-scan plot."""

from __future__ import annotations

import re

import numpy as np

from benchmarks import plots
from benchmarks.cli import main
from benchmarks.recurrence import scan_example
from common import count_nodes, evaluate


def test_the_scan_example_is_the_recurrence_it_says():
    """z = h_T + sum_t h_{t-1}^2 for h_t = sin(w h_{t-1} + x_t), against a plain Python loop."""
    for length in (1, 4):
        z, w = scan_example("sin", length)
        h, total = 0.5, 0.0
        for x in np.linspace(0.0, 1.0, length):
            total += h * h
            h = np.sin(0.7 * h + x)
        assert abs(float(evaluate(z, {w: np.array(0.7)})) - (h + total)) < 1e-15


def test_show_scan_prints_the_loop_and_its_reverse_loop_at_any_length(capsys, tmp_path):
    outputs = []
    for depth in ("3", "50"):
        out = tmp_path / f"scan{depth}.png"
        assert main(["show", "scan", "--depth", depth, "--order", "2", "--out", str(out)]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"               # and drew both graphs
        outputs.append(capsys.readouterr().out)
    for out in outputs:
        assert "reverse=False" in out and "reverse=True" in out       # the loop and its reverse loop
        assert re.search(r"body\d+\(h0, x, w\):", out) and "sin(w * h0 + x)" in out  # the body, printed once
        assert "cos(w * h0 + x)" in out                                # the derivative's body
    sizes = [line for out in outputs for line in out.splitlines() if line.startswith("graph sizes:")]
    assert len(sizes) == 2 and sizes[0] == sizes[1]                    # independent of the length


def test_show_scan_refuses_forward_with_a_pointer_to_explain(capsys, tmp_path):
    try:
        main(["show", "scan", "--forward", "--out", str(tmp_path / "x.png")])
    except SystemExit as e:
        assert e.code not in (0, None)
    else:
        raise AssertionError("show scan --forward ran")
    assert "explain scan" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_explain_scan_steps_through_the_scan_rule(capsys):
    assert main(["explain", "scan", "--depth", "5"]) == 0
    out = capsys.readouterr().out
    assert "scan.vjp[2]" in out                 # w is the scan's third input: the rule that adds the reverse scan
    assert "result: w -> " in out and "reverse=True" in out


def _cell(workload, family, scale, forward, grad_opt, total):
    return {"workload": workload, "size": f"c{scale}", "backend": "symsym", "status": "ok", "family": family,
            "scale": scale, "nodes": {"forward": forward, "grad_opt": grad_opt}, "one_off": {"total": total}}


def test_unrolled_vs_scan_plot_draws_twins_only(tmp_path):
    cells = [_cell("lstm", "lstm-l2", s, 36 * s, 120 * s, 1e-3 * s) for s in (256, 2048)]
    cells += [_cell("lstm-scan", "lstm-scan-l2", s, 60, 200, 0.05) for s in (256, 2048)]
    results = {"cells": cells, "orders": [], "curves": []}
    assert plots.loops_unrolled_vs_scan(results, str(tmp_path)) == "loops_unrolled_vs_scan.png"
    assert (tmp_path / "loops_unrolled_vs_scan.png").stat().st_size > 0
    assert plots._loop_series(results)[("lstm-scan", "lstm-scan-l2")] == [(256, 60, 200, 0.05),
                                                                          (2048, 60, 200, 0.05)]
    alone = {"cells": cells[:2], "orders": [], "curves": []}        # no scan twin: nothing to compare
    assert plots.loops_unrolled_vs_scan(alone, str(tmp_path / "none")) is None


def test_the_plot_from_a_real_run(tmp_path):
    """A check-size run of both lstm forms at two lengths draws the plot, with the scan's graph flat."""
    from benchmarks import harness
    from benchmarks.workloads import get

    settings = harness.Settings(timing=False, memory=False, backends=("symsym",))
    sizes = ["l1-c6-b3", "l1-c24-b3"]
    results = harness.run([(get("lstm"), sizes), (get("lstm-scan"), sizes)], settings, progress=False)
    assert harness.failures(results) == []
    series = plots._loop_series(results)
    scan = series[("lstm-scan", "lstm-scan-l1")]
    assert scan[0][1:3] == scan[1][1:3]
    unrolled = series[("lstm", "lstm-l1")]
    assert unrolled[0][1] < unrolled[1][1]
    assert count_nodes(get("lstm-scan").make("l1-c24-b3").graph()[0]) == scan[1][1]
    assert plots.loops_unrolled_vs_scan(results, str(tmp_path))
