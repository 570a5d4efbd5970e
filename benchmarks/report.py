"""Tables from a results dict: for the terminal (text), a report (markdown), csv and json.

Each table is built once as ``(title, headers, rows)`` of plain values and
rendered in any format, so what the terminal shows and what the report files
hold cannot disagree.
"""

from __future__ import annotations

import csv
import io
import json

from tabulate import tabulate

from .backends import BACKENDS, COMPILED, TWOGRAD

FORMATS = ("text", "markdown", "csv", "json")


def fmt_time(seconds) -> str:
    """Seconds in the unit that keeps three significant digits readable."""
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("kB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} B"


def fmt_ratio(r) -> str:
    return "-" if r is None else f"{r:.3g}x"


def backends_in(results: dict, roles=("reference", "twograd", "peer")) -> list[str]:
    seen = []
    for c in results["cells"]:
        if c["role"] in roles and c["backend"] not in seen:
            seen.append(c["backend"])
    return seen


def _grouped(results: dict) -> list[tuple[str, str, str, dict]]:
    """(workload, size, label, {backend: cell}) in run order."""
    groups: dict[tuple, dict] = {}
    labels = {}
    for c in results["cells"]:
        key = (c["workload"], c["size"])
        groups.setdefault(key, {})[c["backend"]] = c
        labels[key] = c["label"]
    return [(w, s, labels[(w, s)], cells) for (w, s), cells in groups.items()]


def _shown(cell: dict | None, value: str) -> str:
    if cell is None:
        return "-"
    if cell["status"] != "ok":
        if cell["status"] == "error":
            return "ERROR"
        return "over budget" if "over budget" in cell.get("note", "") else "skip"
    return value


def time_table(results):
    names = backends_in(results)
    rows = []
    for w, s, _label, cells in _grouped(results):
        row = [w, s]
        for b in names:
            c = cells.get(b)
            t = (c or {}).get("time", {})
            row.append(_shown(c, f"{fmt_time(t.get('median'))} ±{fmt_time(t.get('iqr'))}" if t else "-"))
        rows.append(row)
    return "Time per derivative (median ± IQR)", ["workload", "size", *names], rows


def ratio_table(results):
    names = [b for b in backends_in(results) if b != "hand"]
    rows = []
    for w, s, label, cells in _grouped(results):
        if "hand" not in cells:
            continue
        rows.append([w, s, label, *[_shown(cells.get(b), fmt_ratio(cells.get(b, {}).get("ratio_to_hand")))
                                    for b in names]])
    return "Time / hand-written numpy (lower is better)", ["workload", "size", "what", *names], rows


def one_off_table(results):
    rows = []
    for w, s, _label, cells in _grouped(results):
        for name in COMPILED:
            ss = cells.get(name)
            if not ss or ss["status"] != "ok" or "one_off" not in ss:
                continue
            o = ss["one_off"]
            be = ss.get("break_even")
            rows.append([w, s, name, fmt_time(o.get("build")), fmt_time(o.get("optimise")),
                         fmt_time(o.get("compile")), fmt_time(o.get("total")),
                         *[fmt_time(cells.get(b, {}).get("time", {}).get("median")) for b in TWOGRAD],
                         "never" if be is None and "break_even" in ss else ("-" if be is None else f"{be:.3g}")])
    return ("symsym one-off cost (grad + optimise + compile) and break-even against symnum (the tape)",
            ["workload", "size", "backend", "build", "optimise", "compile", "one-off",
             *[f"{b}/call" for b in TWOGRAD], "break-even calls"], rows)


def memory_table(results):
    names = backends_in(results)
    rows = []
    for w, s, _label, cells in _grouped(results):
        row = [w, s]
        for b in names:
            c = cells.get(b) or {}
            m = c.get("memory")
            r = c.get("memory_ratio_to_hand")
            row.append(_shown(cells.get(b), fmt_bytes(m) + (f" ({r:.2g}x)" if r and b != "hand" else "")))
        rows.append(row)
    return "Peak memory of one derivative call (tracemalloc; ratio to hand)", ["workload", "size", *names], rows


def graph_table(results):
    names = backends_in(results)
    rows = []
    for w, s, _label, cells in _grouped(results):
        n = next((cells[b]["nodes"] for b in ("symsym", "symnum-static") if cells.get(b, {}).get("nodes")), {})
        rows.append([w, s, n.get("forward", "-"), n.get("grad_raw", "-"), n.get("grad_opt", "-"),
                     *[fmt_ratio(cells.get(b, {}).get("grad_over_forward")) for b in names]])
    return ("Graph sizes (nodes) and derivative/forward time",
            ["workload", "size", "forward", "grad raw", "grad optimised", *[f"{b} d/fwd" for b in names]], rows)


def check_table(results, failed_only: bool = False):
    rows = [[c["workload"], c["size"], c["check"], f"{c['error']:.2g}", f"{c['tol']:.0e}", c["how"],
             "ok" if c["ok"] else "MISMATCH"]
            for c in results["checks"] if not (failed_only and c["ok"])]
    n_bad = sum(not c["ok"] for c in results["checks"])
    title = f"Cross-checks: {len(results['checks']) - n_bad} passed, {n_bad} failed"
    return title, ["workload", "size", "check", "error", "tol", "how", "result"], rows


def order_table(results):
    rows = []
    for r in results["orders"]:
        rows.append([r["workload"], r["size"], r["order"], r.get("nodes_raw", "-"), r.get("nodes_opt", "-"),
                     fmt_time(r["time"].get("symnum")), fmt_time(r["time"].get("symsym")),
                     ", ".join(f"{k}={v:.10g}" for k, v in r["values"].items())])
    return ("Higher derivatives: symsym graph size, raw and optimised, and time per evaluation",
            ["workload", "size", "order", "nodes raw", "nodes opt", "symnum", "symsym", "values"], rows)


def curve_table(results):
    rows = [[c["workload"], c["size"], c["backend"], len(c["loss"]), f"{c['loss'][0]:.6g}",
             f"{c['loss'][-1]:.6g}"] for c in results["curves"]]
    return "Training (plain SGD, same start)", ["workload", "size", "backend", "steps", "first loss",
                                                "final loss"], rows


def error_table(results):
    rows = [[c["workload"], c["size"], c["backend"], c["status"], c["note"]]
            for c in results["cells"] if c["status"] != "ok"]
    rows += [["(run)", "", "", "note", n] for n in results.get("notes", [])]
    return "Skipped and failed", ["workload", "size", "backend", "status", "note"], rows


def tables(results: dict, checks: str = "failed") -> list[tuple]:
    """Every table that has rows; ``checks``: "all", "failed" or "none"."""
    measured_memory = results.get("settings", {}).get("memory", True)
    out = [time_table(results), ratio_table(results), one_off_table(results),
           *([memory_table(results)] if measured_memory else []),
           graph_table(results), order_table(results), curve_table(results)]
    if checks != "none":
        out.append(check_table(results, failed_only=checks == "failed"))
    out.append(error_table(results))
    return [t for t in out if t[2] or t[0].startswith("Cross-checks")]


def render(tabs: list[tuple], fmt: str = "text") -> str:
    """The tables as one string in ``fmt``."""
    if fmt == "json":
        return json.dumps([{"title": t, "rows": [dict(zip(h, r)) for r in rows]} for t, h, rows in tabs],
                          indent=1, default=str)
    parts = []
    for title, headers, rows in tabs:
        if fmt == "csv":
            buf = io.StringIO()
            writer = csv.writer(buf)
            writer.writerow([f"# {title}"])
            writer.writerow(headers)
            writer.writerows(rows)
            parts.append(buf.getvalue())
        elif fmt == "markdown":
            parts.append(f"### {title}\n\n" + (tabulate(rows, headers, tablefmt="pipe") if rows else "(none)"))
        else:
            parts.append(f"{title}\n" + (tabulate(rows, headers, tablefmt="simple") if rows else "(none)"))
    return "\n\n".join(parts) + "\n"


def peer_versions(results: dict) -> str:
    """The peers that ran, each with its version: ``torch 2.13.0, jax 0.10.2``."""
    versions = results.get("versions", {})
    return ", ".join(f"{p} {versions.get(p, '')}".strip() for p in results["settings"].get("peers", ()))


def peer_budget(settings: dict) -> str:
    budget = settings.get("peer_budget")
    if not settings.get("peers") or budget is None:
        return ""
    return f" (each in its own process, {budget:g} s for a one-off or a call before it is stopped)"


def columns(results: dict) -> list[str]:
    """One markdown bullet per own backend in the results: what its column is."""
    return [f"* *{name}*: {BACKENDS[name].about}." for name in backends_in(results, ("reference", "twograd"))
            if name in BACKENDS and BACKENDS[name].about]


def _runtime(runtime) -> str:
    return ", ".join(f"{k} {v}" for k, v in runtime.items()) if isinstance(runtime, dict) else str(runtime)


def peer_settings(results: dict) -> list[str]:
    """One markdown bullet per peer that ran: its version, mode, threads, what its timed region holds
    and what stays outside it, what its one-off counts and the graphs it skips."""
    lines = []
    for name, s in results.get("peer_settings", {}).items():
        if "error" in s:
            lines.append(f"* *{name}*: settings unavailable ({s['error']})")
            continue
        blas = ", ".join(f"{p.get('api')} {p.get('threads')}" for p in s.get("blas") or [])
        parts = [f"mode {s.get('mode')}", f"runtime: {_runtime(s.get('runtime')) or '-'}"
                 + (f"; BLAS: {blas}" if blas else ""),
                 f"timed: {s.get('timed')}", f"outside the timed calls: {s.get('outside')}",
                 f"one-off: {s.get('one_off')}"]
        if s.get("max_nodes"):
            parts.append(s["max_nodes"])
        lines.append(f"* *{name}* {s.get('version', '')}: " + "; ".join(parts) + ".")
    return lines


def markdown_report(results: dict, plots: list[str]) -> str:
    """The whole run as one markdown page: settings, tables, every check, the plots."""
    m = results["machine"]
    s = results["settings"]
    head = [
        "# twograd benchmark report", "",
        f"Run {results['created']} on {m['platform']} ({m['processor']}, {m['cpus']} CPUs), Python "
        f"{m['python']}, numpy {m['numpy']}; BLAS threads: {m['threads'].get('OPENBLAS_NUM_THREADS')}.",
        f"Backends: {', '.join(s['backends'])}; peers: {peer_versions(results) or 'none'}"
        f"{peer_budget(s)}. "
        f"Each cell: median of at least {s['min_count']} repeats and {s['min_time']} s per backend after a "
        "warm-up, the backends' samples taken in turn. "
        f"Wall time {results.get('wall_time', 0):.0f} s.", "",
        "**All cross-checks passed.**" if results.get("ok") else "**SOME CROSS-CHECKS FAILED: see below.**",
        "", "How to read it: *time / hand* is the median, over rounds, of each backend's time per derivative "
        "over the hand-written numpy one in the same round (1x = as fast as writing the backward by hand). "
        "symsym's one-off cost (building the derivative graph, optimising it, generating code) is paid once; "
        "*break-even* is "
        "how many evaluations make symsym cheaper overall than symnum (the define-by-run tape, which pays "
        "nothing up front).", "", *columns(results), ""]
    peers = peer_settings(results)
    if peers:
        head += ["Each peer at its best, under the same one-thread rule:", "", *peers, ""]
    body = render(tables(results, checks="all"), "markdown")
    figs = ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots if p.endswith(".png")]
    return "\n".join(head) + "\n" + body + "\n".join(figs) + "\n"
