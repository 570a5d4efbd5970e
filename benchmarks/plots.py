"""Plots from a results dict (matplotlib, Agg): each titled and labelled to stand alone.

Every function takes the results and an output folder, writes ``NAME.png``
and ``NAME.svg`` and returns the PNG's file name, or None when the results
hold nothing to draw.
"""

from __future__ import annotations

import json
import os

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator

STYLE = {"hand": ("k", "o", "--"), "symnum": ("tab:blue", "s", "-"), "symnum-static": ("tab:cyan", "d", "-."),
         "symsym": ("tab:orange", "^", "-"), "symsym-numba": ("tab:olive", "<", "-"),
         "torch": ("tab:red", "v", ":"), "torch-compile": ("tab:pink", "v", "--"), "jax": ("tab:green", "D", ":"),
         "autograd": ("tab:purple", "P", ":"), "pytensor-numba": ("tab:brown", "X", ":"),
         "pytensor-cvm": ("tab:gray", "X", "--")}


class ResultsError(ValueError):
    """A results file that cannot be read, or is not what ``twograd bench`` writes."""


_CELL_KEYS = {"status": str, "workload": str, "backend": str, "size": str}
_OK_CELL_KEYS = {"family": str, "scale": (int, float)}


def _check_schema(results, path: str) -> None:
    """The fields every plot reads, with their types; anything else is a ResultsError naming the first miss."""
    if not isinstance(results, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(results).__name__}")
    for key in ("cells", "orders", "curves", "checkpointing"):
        if not isinstance(results.get(key, []), list):
            raise ResultsError(f"{path}: {key!r} must be a list")
    for k, c in enumerate(results.get("cells", [])):
        want = {**_CELL_KEYS, **(_OK_CELL_KEYS if isinstance(c, dict) and c.get("status") == "ok" else {})}
        if not isinstance(c, dict):
            raise ResultsError(f"{path}: cell {k} is not an object")
        for key, kind in want.items():
            if not isinstance(c.get(key), kind) or isinstance(c.get(key), bool):
                raise ResultsError(f"{path}: cell {k} has no {key!r} of the right type (got {c.get(key)!r})")
    for key in ("orders", "curves", "checkpointing"):
        for k, row in enumerate(results.get(key, [])):
            if not isinstance(row, dict):
                raise ResultsError(f"{path}: {key}[{k}] is not an object")


def load_results(path: str) -> dict:
    """A results.json written by ``twograd bench``, or a ResultsError saying in one line what is wrong
    (missing, unreadable, not UTF-8, not JSON, not the schema)."""
    try:
        with open(path, encoding="utf-8") as fh:
            results = json.load(fh)
    except OSError as e:
        raise ResultsError(f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ResultsError(f"{path} is not UTF-8 text (is it a results.json?)") from None
    except (ValueError, RecursionError) as e:
        raise ResultsError(f"{path} is not valid JSON: {str(e) or type(e).__name__}") from None
    _check_schema(results, path)
    results.setdefault("cells", [])
    results.setdefault("orders", [])
    results.setdefault("curves", [])
    return results


def _style(name):
    return STYLE.get(name, ("tab:gray", ".", ":"))


def _save(fig, folder: str, name: str, rect=(0, 0, 1, 1)) -> str:
    fig.tight_layout(rect=rect)
    for ext in ("png", "svg"):
        fig.savefig(os.path.join(folder, f"{name}.{ext}"), dpi=110)
    plt.close(fig)
    return f"{name}.png"


def _ok(results):
    return [c for c in results["cells"] if c["status"] == "ok"]


def _finish(ax, title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True,
            legend: int = 8, grid_axis: str = "both") -> None:
    """The labelling every panel gets: log scales, title, axis labels, grid, legend."""
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis=grid_axis, which="both", alpha=0.3)
    ax.legend(fontsize=legend)


def _grid(n):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def _panels(results, measure) -> list[tuple]:
    """One panel per (workload, family) with more than one size: ``{backend: [(scale, *measure(cell))]}``."""
    series: dict[tuple, dict[str, list]] = {}
    for c in _ok(results):
        m = measure(c)
        if m is not None:
            series.setdefault((c["workload"], c["family"]), {}).setdefault(c["backend"], []).append((c["scale"], *m))
    return [(k, v) for k, v in series.items() if max(len(p) for p in v.values()) > 1]


def _by_size(results, folder, name: str, measure, ylabel: str, title: str):
    """One log-log panel per workload family: ``measure(cell)`` gives (y,) or (y, low, high),
    the latter drawn with a shaded band."""
    panels = _panels(results, measure)
    if not panels:
        return None
    fig, axes = _grid(len(panels))
    for ax, ((w, fam), lines) in zip(axes, panels):
        for b, pts in lines.items():
            pts.sort()
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            color, marker, ls = _style(b)
            ax.plot(xs, ys, color=color, marker=marker, ls=ls, label=b)
            if len(pts[0]) == 4:
                ax.fill_between(xs, [p[2] for p in pts], [p[3] for p in pts], color=color, alpha=0.15)
        _finish(ax, f"{w} ({fam})", _xlabel(w), ylabel)
    fig.suptitle(title)
    return _save(fig, folder, name)


def time_vs_size(results, folder):
    """Time per derivative against problem size, one panel per workload family, log-log."""
    return _by_size(results, folder, "time_vs_size",
                    lambda c: (c["time"]["median"], c["time"]["q1"], c["time"]["q3"])
                    if "time" in c and c.get("kind") != "jacobian" else None,  # the crossover plot has those
                    "seconds per derivative",
                    "Time per derivative vs problem size (median, IQR shaded; lower is better)")


def _xlabel(workload):
    return {"chain": "depth d", "rosenbrock": "n (Hessian is n x n)", "elementwise": "vector length",
            "mlp": "parameters x batch"}.get(workload, "size")


MODE_STYLE = {"forward": ("-", ">"), "reverse": ("--", "<")}


def _jacobian_series(results) -> dict[str, dict[str, list]]:
    """``{backend: {mode: [(n/m, seconds, mode built in)]}}`` from the ok jacobian cells that were timed; the
    mode is the one asked for (forward, reverse, auto), the built-in one what auto chose."""
    series: dict[str, dict[str, list]] = {}
    for c in _ok(results):
        if c.get("kind") == "jacobian" and "time" in c and c.get("mode"):
            point = (c["scale"], c["time"]["median"], c.get("chosen", c["mode"]))
            series.setdefault(c["backend"], {}).setdefault(c["mode"], []).append(point)
    for modes in series.values():
        for pts in modes.values():
            pts.sort()
    return series


def _hand_line(ax, points: list) -> None:
    """The hand-written Jacobian (one closed form, whatever the mode): the median time at each n/m."""
    by_x: dict[float, list] = {}
    for x, t, _ in points:
        by_x.setdefault(x, []).append(t)
    xs = sorted(by_x)
    ax.plot(xs, [float(np.median(by_x[x])) for x in xs], "k:", marker=".", label="hand-written numpy")


def _auto_marks(ax, points: list, color) -> None:
    """auto's time at each n/m as a star, labelled with the mode it picked."""
    ax.scatter([p[0] for p in points], [p[1] for p in points], marker="*", s=170, color=color,
               edgecolors="k", linewidths=0.7, zorder=5, label="auto (its pick written beside)")
    for x, t, chosen in points:
        ax.annotate({"forward": "fwd", "reverse": "rev"}.get(chosen, chosen), (x, t), fontsize=7,
                    xytext=(6, 4), textcoords="offset points")


def jacobian_crossover(results, folder):
    """Forward against reverse mode by the Jacobian's shape (book section 6.5.9): one panel per backend,
    time against n/m, the two lines crossing near n = m, and where ``auto`` landed."""
    series = _jacobian_series(results)
    names = [b for b, modes in series.items() if b != "hand" and {"forward", "reverse"} & modes.keys()]
    if not names:
        return None
    cols = min(len(names), 2 if len(names) <= 4 else 3)
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows + 0.4), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    hand = [p for pts in series.get("hand", {}).values() for p in pts]
    for ax, b in zip(axes.flat, names):
        color = _style(b)[0]
        for mode, (ls, marker) in MODE_STYLE.items():
            pts = series[b].get(mode, [])  # a peer without forward mode (PyTensor) has the reverse line only
            ax.plot([p[0] for p in pts], [p[1] for p in pts], color=color, ls=ls, marker=marker,
                    label=f"{mode} mode")
        if "auto" in series[b]:
            _auto_marks(ax, series[b]["auto"], color)
        if hand:
            _hand_line(ax, hand)
        ax.axvline(1.0, color="gray", lw=0.8, ls="-.", label="n = m")
        _finish(ax, b, "n / m  (inputs / outputs)", "seconds per Jacobian",
                legend=7)
        if ax is not axes.flat[0]:
            ax.get_legend().remove()  # one legend: the line styles mean the same in every panel
    top = max(p[1] for b in names for pts in series[b].values() for p in pts)
    axes.flat[0].set_ylim(top=top * 30)  # room above the lines for the legend
    axes.flat[0].legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle("Jacobian of tanh(W2 tanh(W1 x)), R^n -> R^m: forward mode wins left of n = m, "
                 "reverse mode right of it (lower is better)\n", fontsize=10)  # the blank line keeps it off the titles
    return _save(fig, folder, "jacobian_crossover")


def ratio_bars(results, folder):
    """Each backend's time over the hand-written numpy time: one panel per workload (its sizes along x,
    a bar per backend), all on one log scale so that panels compare, with a line at 1x."""
    cells = [c for c in _ok(results) if c.get("ratio_to_hand") and c["backend"] != "hand"]
    if not cells:
        return None
    workloads = list(dict.fromkeys(c["workload"] for c in cells))
    present = {c["backend"] for c in cells}
    names = [b for b in STYLE if b in present] + sorted(present - set(STYLE))
    cols = min(len(workloads), 4)
    rows = (len(workloads) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows + 0.9), squeeze=False, sharey=True)
    for ax in axes.flat[len(workloads):]:
        ax.set_visible(False)
    width = 0.8 / len(names)
    for ax, w in zip(axes.flat, workloads):
        mine = [c for c in cells if c["workload"] == w]
        sizes = list(dict.fromkeys(c["size"] for c in mine))
        for j, b in enumerate(names):
            vals = {c["size"]: c["ratio_to_hand"] for c in mine if c["backend"] == b}
            xs = [i + (j - (len(names) - 1) / 2) * width for i in range(len(sizes))]
            ax.bar(xs, [vals.get(s, 0) for s in sizes], width, color=_style(b)[0], label=b)
        ax.axhline(1.0, color="k", lw=1, ls="--", label="hand-written numpy")
        ax.set_yscale("log")
        ax.set_title(w, fontsize=10)
        ax.set_xticks(range(len(sizes)))
        ax.set_xticklabels(sizes, fontsize=7, rotation=30, ha="right")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        times = FuncFormatter(lambda v, _: f"{v:g}x")
        ax.yaxis.set_major_formatter(times)
        ax.yaxis.set_minor_locator(LogLocator(base=10, subs=(2, 5)))
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    for ax in axes[:, 0]:
        ax.set_ylabel("time / hand (log)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    height = fig.get_figheight()
    fig.suptitle("Cost of automatic differentiation relative to a hand-written backward (lower is better)",
                 y=1 - 0.08 / height, va="top", fontsize=11)
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 1 - 0.4 / height), ncol=len(labels),
               fontsize=8, frameon=False)
    return _save(fig, folder, "ratio_to_hand", rect=(0, 0, 1, 1 - 0.62 / height))


def amortisation(results, folder, limit: int = 4):
    """Cumulative time of n evaluations: symsym's one-off cost against symnum's per-call cost (the tape's,
    which the break-even is against; the static program's drawn too where it ran)."""
    groups = {}
    for c in _ok(results):
        groups.setdefault((c["workload"], c["size"]), {})[c["backend"]] = c
    picks = [(k, g) for k, g in groups.items() if "symsym" in g and "symnum" in g
             and "time" in g["symsym"] and "time" in g["symnum"] and g["symsym"].get("one_off")]
    picks.sort(key=lambda kg: -(kg[1]["symsym"]["one_off"].get("total", 0)))
    picks = picks[:limit]
    if not picks:
        return None
    fig, axes = _grid(len(picks))
    for ax, ((w, s), g) in zip(axes, picks):
        c0 = g["symsym"]["one_off"]["total"]
        ts, tn = g["symsym"]["time"]["median"], g["symnum"]["time"]["median"]
        be = g["symsym"].get("break_even")
        top = max(10.0, 3 * be) if be else 1000.0
        calls = np.geomspace(1, top, 60)
        ax.plot(calls, c0 + calls * ts, color=_style("symsym")[0], label="symsym: one-off + n x call")
        ax.plot(calls, calls * tn, color=_style("symnum")[0], label="symnum: n x call")
        static = g.get("symnum-static", {}).get("time")
        if static:
            ax.plot(calls, calls * static["median"], color=_style("symnum-static")[0], ls=_style("symnum-static")[2],
                    label="symnum-static: n x call")
        if "hand" in g and "time" in g["hand"]:
            ax.plot(calls, calls * g["hand"]["time"]["median"], "k--", label="hand: n x call")
        if be:
            ax.axvline(be, color="gray", ls=":")
            ax.annotate(f"break-even\n{be:.3g} calls", (be, c0 + be * ts), fontsize=8,
                        xytext=(5, -25), textcoords="offset points")
        _finish(ax, f"{w} {s}", "number of evaluations n", "cumulative seconds", legend=7)
    fig.suptitle("Amortisation: when symsym's one-off cost is repaid")
    return _save(fig, folder, "amortisation")


def one_off_vs_nodes(results, folder):
    """symsym's one-off cost against graph size: it should grow no faster than linearly."""
    pts = [(c["nodes"]["forward"], c["one_off"]["total"], c["workload"]) for c in _ok(results)
           if c["backend"] == "symsym" and c.get("one_off") and c.get("nodes", {}).get("forward")]
    if len(pts) < 2:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for w in dict.fromkeys(p[2] for p in pts):
        sel = sorted((n, t) for n, t, ww in pts if ww == w)
        ax.plot([p[0] for p in sel], [p[1] for p in sel], marker="o", label=w)
    lo = min(p[0] for p in pts)
    hi = max(p[0] for p in pts)
    per = max(t / n for n, t, _ in pts)
    ax.plot([lo, hi], [per * lo, per * hi], "k:", label="linear (slope 1)")
    _finish(ax, "symsym one-off cost vs graph size", "forward graph nodes", "grad + optimise + compile (s)")
    return _save(fig, folder, "one_off_vs_nodes")


def order_nodes(results, folder):
    """Derivative graph size against derivative order, raw and after rewrites."""
    rows = [r for r in results["orders"] if r.get("nodes_raw")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for k, size in enumerate(dict.fromkeys((r["workload"], r["size"]) for r in rows)):
        sel = [r for r in rows if (r["workload"], r["size"]) == size]
        color = f"C{k}"
        ax.plot([r["order"] for r in sel], [r["nodes_raw"] for r in sel], color=color, marker="o", ls="--",
                label=f"{size[1]}: raw")
        if any(r.get("nodes_opt") for r in sel):
            ax.plot([r["order"] for r in sel], [r.get("nodes_opt") or float("nan") for r in sel], color=color,
                    marker="s", label=f"{size[1]}: optimised")
    _finish(ax, "symsym: derivative graph size by order, raw vs rewritten", "derivative order",
            "nodes in the derivative graph", logx=False)
    return _save(fig, folder, "order_nodes")


def memory_vs_size(results, folder):
    """Peak memory of one derivative call against problem size."""
    return _by_size(results, folder, "memory_vs_size",
                    lambda c: (c["memory"] / 2**20,) if c.get("memory") else None,
                    "peak MiB (tracemalloc)", "Peak memory of one derivative call vs problem size")


def loss_curves(results, folder):
    """Each backend's training loss: the curves must lie on top of each other."""
    keys = list(dict.fromkeys((c["workload"], c["size"]) for c in results["curves"]))
    if not keys:
        return None
    fig, axes = _grid(len(keys))
    for ax, key in zip(axes, keys):
        for c in results["curves"]:
            if (c["workload"], c["size"]) == key:
                color, _, ls = _style(c["backend"])
                ax.plot(c["loss"], color=color, ls=ls, label=c["backend"])
        _finish(ax, f"{key[0]} ({key[1]})", "SGD step", "loss", logx=False)
    fig.suptitle("Training loss from one initialisation, per backend (identical curves expected)")
    return _save(fig, folder, "loss_curves")


def _loop_series(results) -> dict[tuple, list]:
    """symsym's ``{(workload, family): [(scale, forward nodes, derivative nodes, one-off s)]}`` for each workload
    that has a ``-scan`` twin in the results (the same model with its loop as one scan op), and for the twin."""
    cells = [c for c in _ok(results) if c["backend"] == "symsym" and c.get("one_off", {}).get("total") is not None
             and c.get("nodes", {}).get("grad_opt")]
    names = {c["workload"] for c in cells}
    series: dict[tuple, list] = {}
    for c in cells:
        if f"{c['workload']}-scan" in names or (c["workload"].endswith("-scan") and c["workload"][:-5] in names):
            series.setdefault((c["workload"], c["family"]), []).append(
                (c["scale"], c["nodes"]["forward"], c["nodes"]["grad_opt"], c["one_off"]["total"]))
    return {k: sorted(v) for k, v in series.items() if len(v) > 1}


def loops_unrolled_vs_scan(results, folder):
    """symsym's graph size and one-off cost against sequence length, the loop unrolled vs one scan op:
    the unrolled graph grows with the sequence, the scan's stays one body (and its reverse)."""
    series = _loop_series(results)
    if not series:
        return None
    fig, (nodes, cost) = plt.subplots(1, 2, figsize=(11, 4.4))
    for k, ((w, fam), pts) in enumerate(series.items()):
        ls, marker = ("-", "o") if w.endswith("-scan") else ("--", "s")
        xs = [p[0] for p in pts]
        label = f"{'scan' if w.endswith('-scan') else 'unrolled'} ({fam})"
        nodes.plot(xs, [p[2] for p in pts], color=f"C{k}", ls=ls, marker=marker, label=f"{label}: derivative")
        nodes.plot(xs, [p[1] for p in pts], color=f"C{k}", ls=":", marker=".", label=f"{label}: forward")
        cost.plot(xs, [p[3] for p in pts], color=f"C{k}", ls=ls, marker=marker, label=label)
    _finish(nodes, "graph size (after rewrites)", "sequence length x layers", "nodes", legend=7)
    _finish(cost, "one-off: grad + optimise + compile", "sequence length x layers", "seconds", legend=7)
    fig.suptitle("symsym: a loop unrolled vs one scan op, against sequence length")
    return _save(fig, folder, "loops_unrolled_vs_scan")


def memory_vs_checkpointing(results, folder):
    """Peak memory and time of one gradient, plain and checkpointed, per model and backend: the memory a
    checkpoint saves and the recomputation it costs (:mod:`benchmarks.checkpointing`)."""
    rows = results.get("checkpointing") or []
    groups = list(dict.fromkeys((r["model"], r["backend"]) for r in rows))
    if not groups:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    at = np.arange(len(groups))
    for ax, key, scale, ylabel, title in (
            (axes[0], "memory", 2**20, "peak MiB (tracemalloc)", "peak memory of one gradient"),
            (axes[1], "time", 1.0, "seconds per gradient (median)", "time of one gradient")):
        for offset, checkpointed, hatch in ((-0.2, False, ""), (0.2, True, "//")):
            values = [next((r[key] / scale for r in rows if (r["model"], r["backend"]) == g
                            and r["checkpointed"] == checkpointed), np.nan) for g in groups]
            colors = [_style(g[1])[0] for g in groups]
            ax.bar(at + offset, values, 0.4, color=colors, hatch=hatch, edgecolor="k", alpha=0.85 if hatch else 1,
                   label="checkpointed" if checkpointed else "plain")
        for k, g in enumerate(groups):  # the checkpointed/plain ratio over each pair
            pair = {r["checkpointed"]: r[key] for r in rows if (r["model"], r["backend"]) == g}
            if pair.get(False) and True in pair:
                top = max(pair.values()) / scale
                ax.annotate(f"x{pair[True] / pair[False]:.2f}", (at[k], top), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(at, [f"{m.replace(' ', chr(10))}\n{b}" for m, b in groups], fontsize=8)
        _finish(ax, title, "", ylabel, logx=False, logy=True, grid_axis="y")
    fig.suptitle("Checkpointing: memory kept vs time recomputing (ratio = checkpointed / plain)")
    return _save(fig, folder, "memory_vs_checkpointing")


ALL = (time_vs_size, jacobian_crossover, ratio_bars, amortisation, one_off_vs_nodes, order_nodes, memory_vs_size,
       loss_curves, loops_unrolled_vs_scan, memory_vs_checkpointing)


def draw_all(results: dict, folder: str) -> list[str]:
    """Every plot the results allow; the PNG file names written."""
    os.makedirs(folder, exist_ok=True)
    return [name for name in (plot(results, folder) for plot in ALL) if name]
