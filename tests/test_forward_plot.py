"""The forward-versus-reverse crossover plot: written by the default bench, with the series it promises."""

import json
import subprocess
import sys

import pytest

from benchmarks import plots
from benchmarks.workloads import get, visible

SIZES = "+".join(f"n{n}-m{m}-{mode}" for n, m in ((10, 1000), (1000, 10)) for mode in ("forward", "reverse", "auto"))


@pytest.fixture(scope="module")
def jacobian_run(tmp_path_factory):
    """A tiny ``twograd bench`` of the jacobian workload, in a fresh process, as a user runs it."""
    out = tmp_path_factory.mktemp("jacobian")
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "bench", "-w", f"jacobian:{SIZES}", "--peers", "none",
                           "--min-time", "0.005", "--min-count", "2", "--max-time", "0.02", "--no-memory",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def test_the_default_bench_runs_the_crossover_on_both_sides_of_n_equals_m():
    w = get("jacobian")
    assert w in visible()
    shapes = {tuple(int(p[1:]) for p in s.split("-")[:2]) for s in w.default}
    assert any(n < m for n, m in shapes) and any(n > m for n, m in shapes)
    assert {s.split("-")[2] for s in w.default} == {"forward", "reverse", "auto"}


def test_bench_writes_the_crossover_plot_and_links_it(jacobian_run):
    for ext in ("png", "svg"):
        f = jacobian_run / f"jacobian_crossover.{ext}"
        assert f.exists() and f.stat().st_size > 1000, f
    assert "(jacobian_crossover.png)" in (jacobian_run / "report.md").read_text()


def test_auto_cells_record_the_mode_the_book_picks(jacobian_run):
    """auto must build forward mode for fewer inputs than outputs and reverse mode otherwise (section 6.5.9)."""
    cells = json.loads((jacobian_run / "results.json").read_text())["cells"]
    autos = {(c["backend"], c["size"]): c.get("chosen") for c in cells
             if c["size"].endswith("auto") and c["backend"] in ("symnum", "symsym")}
    assert autos == {(b, s): want for b in ("symnum", "symsym")
                     for s, want in (("n10-m1000-auto", "forward"), ("n1000-m10-auto", "reverse"))}


def test_the_plot_has_forward_and_reverse_lines_and_auto_marks_per_backend(jacobian_run, tmp_path, monkeypatch):
    results = plots.load_results(str(jacobian_run / "results.json"))
    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, folder, name: figs.append(fig) or f"{name}.png")
    assert plots.jacobian_crossover(results, str(tmp_path)) == "jacobian_crossover.png"
    axes = [ax for ax in figs[0].axes if ax.get_visible()]
    titles = [ax.get_title() for ax in axes]
    assert titles[:2] == ["symnum", "symsym"]  # then any other backend the run had
    for ax in axes:
        lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines()}
        assert lines["forward mode"] == lines["reverse mode"] == [0.01, 100.0]
        assert "hand-written numpy" in lines
        stars = [c for c in ax.collections if c.get_label().startswith("auto")]
        if ax.get_title() in ("symnum", "symsym"):
            assert len(stars) == 1 and sorted(stars[0].get_offsets()[:, 0].tolist()) == [0.01, 100.0]
            assert sorted(t.get_text() for t in ax.texts) == ["fwd", "rev"]
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_no_jacobian_cells_no_crossover_plot(tmp_path):
    assert plots.jacobian_crossover({"cells": [], "orders": [], "curves": []}, str(tmp_path)) is None
    assert not list(tmp_path.iterdir())
