"""Run workloads on backends: timings, one-off costs, memory, graph sizes, cross-checks.

:func:`run` returns one plain dict (the results JSON): ``cells`` (one per
workload, size and backend), ``checks`` (every comparison with its error and
tolerance), ``curves`` (training losses), ``orders`` (higher derivatives),
``notes`` (skipped peers) and the settings and machine it ran with. Checks
are always on: finite differences on the reference interpreter, every backend
against symnum (the define-by-run tape), symsym against the hand-written
reference too, and every installed peer against symnum.

Peers run in worker processes of their own (:mod:`benchmarks.peerworker`), each
request within ``Settings.peer_budget`` seconds, so that no peer can stall a run.
"""

from __future__ import annotations

import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

from common import count_nodes, evaluate, optim

from . import __version__
from .backends import BACKENDS, COMPILED, OWN, TWOGRAD, Unsupported
from .finite import GradientOracle, HessianOracle, JacobianOracle, derivative_error, rel_err
from .peers import PEERS  # noqa: F401  (importing it adds the peers to BACKENDS)
from .peerworker import Remote
from .timing import (
    MeasureError,
    Stats,
    enforce_threads,
    measure_interleaved,
    once,
    paired_ratio,
    peak_memory,
    thread_limits,
)
from .workloads import Problem, Workload

SCHEMA = "twograd-bench/1"
FULL_FD_INPUTS = 200        # finite differences one coordinate at a time up to this many inputs
FULL_FD_WORK = 200_000      # ... and while inputs x graph nodes stays under this


@dataclass
class Settings:
    """What a run measures and how hard it tries."""

    min_time: float = 0.2           # seconds of repeats per timed cell, at least
    min_count: int = 5              # repeats per timed cell, at least
    max_time: float = 2.0           # seconds per timed cell, at most
    timing: bool = True             # False: cross-checks only (``twograd check``)
    memory: bool = True
    backends: tuple = OWN
    peers: tuple = ()
    peer_budget: float = 60.0       # seconds for a peer's one-off (trace + compile + first call), or any call
    selection: list = field(default_factory=list)   # [(workload, [sizes])]


class Progress:
    """Progress on stderr: a one-line bar on a terminal; elsewhere (a log, CI) one line per finished
    cell, so that a long run shows where it is and what each cell came to."""

    def __init__(self, total: int, enabled: bool = True, stream=None):
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream or sys.stderr
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = enabled and tty
        self.lines = enabled and not tty
        self.ended = 0
        self.start = time.perf_counter()

    def step(self, what: str) -> None:
        """A cell starts: the bar moves."""
        self.done += 1
        if not self.bar:
            return
        width = 30
        fill = int(width * self.done / self.total)
        bar = "#" * fill + "." * (width - fill)
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {elapsed:5.0f}s  {what[:40]:<40}")
        self.stream.flush()

    def finished(self, what: str) -> None:
        """A cell is done: one line, when not drawing the bar."""
        self.ended += 1
        if not self.lines:
            return
        elapsed = time.perf_counter() - self.start
        self.stream.write(f"[{self.ended}/{self.total} {elapsed:.0f} s] {what}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.bar:
            self.stream.write("\n")
            self.stream.flush()


def machine() -> dict:
    """Where the numbers came from."""
    import os

    import matplotlib
    import tabulate

    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "numpy": np.__version__, "matplotlib": matplotlib.__version__,
            "tabulate": getattr(tabulate, "__version__", ""), "twograd": __version__,
            "threads": thread_limits()}


def reference_cost(problem: Problem) -> Callable:
    """The cost on the reference interpreter, which no backend uses: the oracle's f."""
    cost, variables = problem.graph()
    return lambda *arrays: float(evaluate(cost, dict(zip(variables, arrays))))


def run(selection: list[tuple[Workload, list[str]]], settings: Settings, progress: bool = True) -> dict:
    """Measure and cross-check every (workload, size) of ``selection`` on the chosen backends."""
    backends = [Remote(BACKENDS[b], settings.peer_budget) if BACKENDS[b].role == "peer" else BACKENDS[b]
                for b in settings.backends + tuple(settings.peers)]
    results = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
               "settings": {k: v for k, v in asdict(settings).items() if k != "selection"},
               "selection": {w.name: list(sizes) for w, sizes in selection},
               "versions": {}, "peer_settings": {}, "cells": [], "checks": [], "curves": [], "orders": [],
               "notes": [], "timeline": []}
    usable = []
    for b in backends:
        why = b.missing()
        if why:
            results["notes"].append(why)
            continue
        try:
            results["versions"][b.name] = b.version()
        except Exception as e:  # a peer that imports but breaks: skip it, say so
            results["notes"].append(f"{b.name}: cannot load ({type(e).__name__}: {e})")
            continue
        usable.append(b)
    total = sum(len(sizes) * (len(usable) if w.kind != "order" else 1) for w, sizes in selection)
    bar = Progress(total, progress)
    t0 = time.perf_counter()
    workers = [b for b in usable if isinstance(b, Remote)]
    try:
        for b in workers:   # they import their libraries meanwhile, side by side
            b.worker.start()
        for b in workers:
            results["peer_settings"][b.name] = _peer_settings(b)
        with enforce_threads(1):
            for w, sizes in selection:
                for size in sizes:
                    run_size(w, size, usable, settings, results, bar)
    finally:
        for b in workers:
            b.close()
    bar.close()
    results["wall_time"] = time.perf_counter() - t0
    derive(results)
    return results


def _peer_settings(peer) -> dict:
    """How a peer runs (threads, mode, what its timed region holds), as its worker reports it."""
    try:
        return peer.settings()
    except Exception as e:  # a worker that cannot say: its cells will say why
        return {"error": f"{type(e).__name__}: {e}"}


def make_problem(w: Workload, size: str) -> Problem:
    """``w.make(size)``, marked with where it came from, so that a peer's worker can make it again."""
    problem = w.make(size)
    problem.origin = (w.make.__module__, w.name, size)
    return problem


def run_size(w: Workload, size: str, backends, settings: Settings, results: dict, bar: Progress) -> None:
    """One (workload, size) on every backend, its time into the timeline, a progress line per cell."""
    start = time.perf_counter()
    problem = make_problem(w, size)
    if w.kind == "order":
        rows = len(results["orders"])
        run_orders(w, size, problem, backends, settings, results)
        bar.step(f"{w.name} {size}")
        bar.finished(_order_line(w, size, results["orders"][rows:]))
    else:
        cells = len(results["cells"])
        run_problem(w, size, problem, backends, settings, results, bar)
        for cell in results["cells"][cells:]:
            bar.finished(_cell_line(cell))
    results["timeline"].append({"workload": w.name, "size": size, "seconds": time.perf_counter() - start})


def _cell_line(cell: dict) -> str:
    """What a finished cell came to, in one line: its time per derivative or why it has none."""
    what = f"{cell['workload']} {cell['size']} {cell['backend']}"
    if cell["status"] != "ok":
        return f"{what}: {cell['status']}: {cell['note'].splitlines()[0] if cell['note'] else ''}"
    parts = [f"{cell['time']['median'] * 1e3:.3g} ms per derivative" if "time" in cell else "ok"]
    total = cell.get("one_off", {}).get("total")
    if total is not None and cell["role"] != "reference":
        parts.append(f"one-off {total:.3g} s")
    return f"{what}: {', '.join(parts)}"


def _order_line(w: Workload, size: str, rows: list[dict]) -> str:
    """A finished order cell: the orders each backend computed, and the notes of those it did not."""
    got: dict[str, int] = {}
    notes: dict[str, str] = {}
    for row in rows:
        for name in row["values"]:
            got[name] = row["order"]
        notes.update(row["notes"])
    done = ", ".join(f"{name} 1..{k}" for name, k in got.items())
    missed = "".join(f"; {name}: {note}" for name, note in notes.items() if name not in got)
    return f"{w.name} {size}: orders {done}{missed}"


def _cell(w: Workload, size: str, problem: Problem, backend) -> dict:
    return {"workload": w.name, "size": size, "label": problem.label, "kind": w.kind,
            "family": problem.family, "scale": problem.scale, "backend": backend.name,
            "role": backend.role, "status": "ok", "note": ""}


def _failed(cell: dict, e: BaseException) -> None:
    cell["status"] = "error"
    cell["note"] = f"{type(e).__name__}: {e}"
    cell["traceback"] = "".join(traceback.format_exception(e, limit=6))


@contextmanager
def _guard(cell: dict) -> Iterator[None]:
    """One backend's step: Unsupported skips its cell, any other error fails it; the others go on."""
    try:
        yield
    except Unsupported as e:
        cell["status"] = "skipped"
        cell["note"] = str(e)
    except Exception as e:
        _failed(cell, e)


def timed_together(fns: dict[str, Callable[[], object]], failed: Callable[[str, BaseException], None],
                   min_time: float, min_count: int, max_time: float) -> dict[str, Stats]:
    """:func:`measure_interleaved` on ``fns``; one that raises is reported to ``failed`` and dropped,
    and the rest are timed again (without it), so one backend's crash costs the others nothing."""
    fns = dict(fns)
    while fns:
        try:
            return measure_interleaved(fns, min_time, min_count, max_time)
        except MeasureError as e:
            failed(e.name, e.__cause__ or e)
            del fns[e.name]
    return {}


def run_problem(w: Workload, size: str, problem: Problem, backends, settings: Settings, results: dict,
                bar: Progress) -> None:
    """One (workload, size) on every backend, then its cross-checks.

    Every backend is prepared and called once first; then all of them are timed together, their
    samples interleaved (see :func:`benchmarks.timing.measure_interleaved`), so that the
    machine's drift does not move their ratios; memory and training come last, one at a time.
    """
    cells: dict[str, dict] = {}
    runners: dict[str, object] = {}
    outs: dict[str, list] = {}
    for b in backends:
        cells[b.name] = cell = _cell(w, size, problem, b)
        results["cells"].append(cell)
        bar.step(f"{w.name} {size} {b.name}")
        with _guard(cell):
            runners[b.name], outs[b.name] = _first_call(w, problem, b, cell)
    if settings.timing:
        time_cells(cells, runners, problem.arrays, settings)
    curves: dict[str, list] = {}
    for name, runner in runners.items():
        cell = cells[name]
        if cell["status"] != "ok":
            continue
        with _guard(cell):
            if settings.memory:
                cell["memory"] = _memory(runner, problem.arrays)
            if w.kind == "train":
                remote = getattr(runner, "train", None)
                curves[name] = remote() if remote is not None else train(runner, problem)
    cross_check(w, size, problem, outs, results["checks"])
    check_curves(w, size, curves, results)


def _first_call(w: Workload, problem: Problem, b, cell: dict) -> tuple[object, list]:
    """Prepare ``b`` (its one-off cost and graph sizes into ``cell``) and call it once."""
    b.supports(w.kind)
    seconds, runner = once(lambda: b.prepare(problem, w.kind))
    cell["one_off"] = runner.one_off or ({"total": seconds} if b.role != "reference" else {})
    cell["nodes"] = runner.nodes
    cell["first_call"], out = _called_once(runner, problem.arrays)
    if w.kind == "jacobian":  # the mode asked for, and the one auto built the Jacobian in (for the crossover plot)
        cell["mode"] = problem.mode
        chosen = getattr(runner, "mode", None)
        if chosen is not None:
            cell["chosen"] = chosen()
    return runner, [np.asarray(o) for o in out]


def _called_once(runner, arrays: list) -> tuple[float, list]:
    """Seconds of the runner's first call and its outputs; a peer's worker made that call already,
    within its budget (:class:`benchmarks.peerworker.RemoteRunner`)."""
    first = getattr(runner, "first_call", None)
    return first if first is not None else once(lambda: runner.grad(arrays))


def _timed(runner, which: str, arrays: list) -> Callable[[], object]:
    """``runner.<which>(arrays)`` as a function to time (:meth:`benchmarks.backends.Runner.timed`: inputs
    converted once, outside it); a remote runner's is sampled in its worker."""
    return runner.timed(which, arrays)


def _memory(runner, arrays: list) -> int:
    """Peak bytes of one derivative call, measured in the process that makes it."""
    remote = getattr(runner, "peak_memory", None)
    return remote(arrays) if remote is not None else peak_memory(lambda: runner.grad(arrays))


def time_cells(cells: dict[str, dict], runners: dict, arrays: list, settings: Settings) -> None:
    """Derivative times of every ready backend, interleaved, into ``cell["time"]``; then the
    forward times likewise (half the time budget) into ``cell["forward"]``."""
    def failed(name: str, e: BaseException) -> None:
        _failed(cells[name], e)

    grads = {n: _timed(r, "grad", arrays) for n, r in runners.items() if cells[n]["status"] == "ok"}
    for name, stats in timed_together(grads, failed, settings.min_time, settings.min_count,
                                      settings.max_time).items():
        cells[name]["time"] = stats.as_dict()
    forwards = {n: _timed(r, "forward", arrays) for n, r in runners.items()
                if cells[n]["status"] == "ok" and r.forward is not None}
    for name, stats in timed_together(forwards, failed, settings.min_time / 2, settings.min_count,
                                      settings.max_time / 2).items():
        cells[name]["forward"] = stats.as_dict()


def check_curves(w: Workload, size: str, curves: dict[str, list], results: dict) -> None:
    """Record the training losses and check every backend's against hand's (or the first one's)."""
    for name, curve in curves.items():
        results["curves"].append({"workload": w.name, "size": size, "backend": name, "loss": curve})
    if curves:
        ref = curves.get("hand") or next(iter(curves.values()))
        ref_name = "hand" if "hand" in curves else next(iter(curves))
        for name, curve in curves.items():
            if name != ref_name:
                _check(results["checks"], w, size, f"{name} vs {ref_name} loss curve", rel_err(curve, ref),
                       w.rtol * 100, f"{len(curve)} steps")


def train(runner, problem: Problem) -> list[float]:
    """The problem's optimiser (plain SGD unless it names one) from its initial values; the loss at every
    step. The optimiser is :mod:`common.optim`'s, so every backend's gradients take the very same steps."""
    arrays = list(problem.arrays)
    idx = problem.wrt_index
    opt = problem.optimizer or optim.sgd(problem.lr)
    params = [arrays[i] for i in idx]
    state = opt.init(params)
    losses = []
    for _ in range(problem.steps):
        loss, grads = runner.value_and_grad(arrays)
        losses.append(float(loss))
        params, state = opt.update([np.asarray(g) for g in grads], state, params)
        for i, p in zip(idx, params):
            arrays[i] = p
    return losses


def _check(checks: list, w: Workload, size: str, what: str, err: float, tol: float, how: str = "") -> None:
    checks.append({"workload": w.name, "size": size, "check": what, "error": float(err), "tol": tol,
                   "how": how, "ok": bool(err <= tol)})


def cross_check(w: Workload, size: str, problem: Problem, outs: dict, checks: list) -> None:
    """Every result against finite differences, and the backends against each other."""
    if not outs:
        return
    try:
        problem.graph()
    except Exception as e:  # no IR graph (an op the IR lacks): no reference interpreter, no finite differences
        _check(checks, w, size, "the IR graph builds", float("inf"), 0.0, f"{type(e).__name__}: {e}")
    else:
        _fd_checks(w, size, problem, outs, checks)
    base = "symnum" if "symnum" in outs else next(iter(outs))
    for name, out in outs.items():
        if name == base:
            continue
        _check(checks, w, size, f"{name} vs {base}", rel_err(out, outs[base]), w.rtol)
    if "hand" in outs and base != "hand" and "symsym" in outs:
        _check(checks, w, size, "symsym vs hand", rel_err(outs["symsym"], outs["hand"]), w.rtol)


def _fd_checks(w: Workload, size: str, problem: Problem, outs: dict, checks: list) -> None:
    """Every result against finite differences of the reference interpreter."""
    f = reference_cost(problem)
    if w.kind == "hessian":
        oracle = HessianOracle(f, problem.arrays, problem.wrt_index[0])
    elif w.kind == "jacobian":
        cost, variables = problem.graph()
        value = lambda *arrays: np.asarray(evaluate(cost, dict(zip(variables, arrays))))
        oracle = JacobianOracle(value, problem.arrays, problem.wrt_index[0], h=w.fd_step)
    else:
        # in full only while it stays cheap: inputs x graph size bounds the evaluations' work
        n = sum(problem.arrays[i].size for i in problem.wrt_index)
        full = FULL_FD_INPUTS if n * count_nodes(problem.graph()[0]) <= FULL_FD_WORK else 0
        oracle = GradientOracle(f, problem.arrays, problem.wrt_index, full_limit=full, h=w.fd_step)
    fd_tol = w.fd_rtol * (10 if not oracle.full else 1)
    for name, out in outs.items():
        _check(checks, w, size, f"{name} vs finite differences", oracle.error(out), fd_tol, oracle.how)


def run_orders(w: Workload, size: str, problem: Problem, backends, settings: Settings, results: dict) -> None:
    """Derivatives of order 1..max_order: values on every backend, symsym's graph sizes, checks."""
    x = problem.arrays[problem.wrt_index[0]]
    f = reference_cost(problem)
    previous: Callable = lambda v: f(v)
    for k in range(1, problem.max_order + 1):
        row = {"workload": w.name, "size": size, "label": problem.label, "order": k, "values": {},
               "time": {}, "notes": {}}
        results["orders"].append(row)
        runners = {}

        def failed(name: str, e: BaseException, row=row, k=k, runners=runners) -> None:
            row["notes"][name] = f"error: {type(e).__name__}: {e}"
            _check(results["checks"], w, size, f"{name} order {k} runs", float("inf"), 0.0, row["notes"][name])
            runners.pop(name, None)

        for b in backends:
            if b.role == "reference" and k > 1:
                continue
            try:
                seconds, runner = once(lambda: b.prepare(problem, "order", order=k))
                value = float(np.asarray(_called_once(runner, problem.arrays)[1][0]))
                row["values"][b.name] = value
                if runner.one_off:
                    row.setdefault("one_off", {})[b.name] = runner.one_off
                if b.name == "symsym":
                    row["nodes_raw"] = runner.nodes.get("grad_raw")
                    row["nodes_opt"] = runner.nodes.get("grad_opt")
                    row["nodes_forward"] = runner.nodes.get("forward")
                runners[b.name] = runner
            except Unsupported as e:
                row["notes"][b.name] = str(e)
            except Exception as e:
                failed(b.name, e)
        if settings.timing:
            grads = {n: _timed(r, "grad", problem.arrays) for n, r in runners.items()}
            stats = timed_together(grads, failed, settings.min_time / 4, 3, settings.max_time / 4)
            row["time"] = {n: s.median for n, s in stats.items()}
        vals = row["values"]
        base = "symnum" if "symnum" in vals else next(iter(vals), None)
        for name, v in vals.items():
            if name != base:
                _check(results["checks"], w, size, f"{name} vs {base}, order {k}", rel_err(v, vals[base]),
                       w.rtol)
        if problem.exact is not None and base is not None:
            for name, v in vals.items():
                _check(results["checks"], w, size, f"{name} vs closed form, order {k}",
                       rel_err(v, problem.exact(k, x)), w.rtol)
        if base is not None:
            _check(results["checks"], w, size, f"{base} order {k} vs differences of order {k - 1}",
                   derivative_error(previous, x, vals[base]), w.fd_rtol)
        ref = runners.get("symsym") or runners.get(base)
        if ref is not None:
            rest = problem.arrays
            i = problem.wrt_index[0]
            previous = lambda v, r=ref: float(np.asarray(r.grad([*rest[:i], np.asarray(v), *rest[i + 1:]])[0]))
        else:
            break


def derive(results: dict) -> None:
    """Ratios to hand, gradient/forward ratios and symsym's break-even, filled into the cells.

    The break-even is against ``symnum``, the define-by-run tape: it pays nothing up front and
    runs every kind (``symnum-static`` does first derivatives only), so it is the pure
    pay-per-call side of the book's two ways.

    ``ratio_to_hand`` is the median of the per-round ratios (a backend's sample over hand's
    sample of the same round) when both cells carry paired ``rounds`` (backends timed together,
    see :func:`benchmarks.timing.paired_ratio`): the machine's drift cancels in each pair. Older
    results without them fall back to the ratio of the medians; ``ratio_paired`` says which.
    """
    by_key: dict[tuple, dict[str, dict]] = {}
    for c in results["cells"]:
        by_key.setdefault((c["workload"], c["size"]), {})[c["backend"]] = c
    for cells in by_key.values():
        hand = cells.get("hand", {})
        ht = hand.get("time", {}).get("median")
        hm = hand.get("memory")
        for c in cells.values():
            t = c.get("time", {}).get("median")
            if t and ht:
                paired = paired_ratio(c["time"].get("rounds"), hand["time"].get("rounds"))
                c["ratio_to_hand"] = paired if paired is not None else t / ht
                c["ratio_paired"] = paired is not None
            if c.get("memory") is not None and hm:
                c["memory_ratio_to_hand"] = c["memory"] / hm
            ft = c.get("forward", {}).get("median")
            if t and ft:
                c["grad_over_forward"] = t / ft
        tn = cells.get("symnum", {}).get("time", {}).get("median")
        for ss in (cells.get(name, {}) for name in COMPILED):
            ts = ss.get("time", {}).get("median")
            cost = ss.get("one_off", {}).get("total")
            if tn and ts and cost is not None:
                ss["break_even"] = cost / (tn - ts) if tn > ts else None
    results["ok"] = all(c["ok"] for c in results["checks"]) and not any(
        c["status"] == "error" for c in results["cells"])


def failures(results: dict) -> list[str]:
    """One line per failed check or crashed cell."""
    lines = [f"MISMATCH {c['workload']} {c['size']}: {c['check']}: error {c['error']:.3g} > tol {c['tol']:.1g}"
             for c in results["checks"] if not c["ok"]]
    lines += [f"ERROR {c['workload']} {c['size']} {c['backend']}: {c['note']}"
              for c in results["cells"] if c["status"] == "error"]
    return lines


__all__ = ["SCHEMA", "Progress", "Settings", "check_curves", "cross_check", "derive", "failures", "run",
           "time_cells", "timed_together", "train", "TWOGRAD"]
