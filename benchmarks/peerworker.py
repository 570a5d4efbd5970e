"""A peer in a process of its own, so that no peer can stall a run.

A peer's one-off (tracing and compiling, e.g. JAX's XLA compile of an
unrolled graph) can take minutes and gigabytes, inside C++ code that no Python
thread can interrupt. So each peer runs in one worker process, started once
per run and reused from cell to cell (its library is imported once); every
request waits at most the peer's budget, and a worker that overruns it is
killed and started afresh for the next cell. The cell says "compile over
budget" with the time and the run goes on.

The main process sees a :class:`Remote` backend whose runners forward their
calls to the worker. Timing stays paired with the other backends of the cell:
a remote runner's timed function carries a ``sample(number)`` that the
worker times on its side (:func:`benchmarks.timing.per_call`), so the
round-trip is not counted, and the samples still take turns with the rest.

Workers are spawned (fresh interpreters), so a script that runs
:func:`benchmarks.harness.run` with peers guards its entry point with
``if __name__ == "__main__":``, as :mod:`multiprocessing` asks.
"""

from __future__ import annotations

import gc
import importlib
import itertools
import multiprocessing
import pickle
import time
import traceback
from collections.abc import Callable

import numpy as np

from .backends import Backend, Runner, Unsupported
from .timing import once, peak_memory, per_call

START_TIMEOUT = 300.0   # seconds for a worker to start and import its library (not the one-off budget)


class OverBudget(Unsupported):
    """A peer's request ran past its budget; its worker was killed (a note, not a failure)."""


class PeerError(Exception):
    """An error raised in a peer's worker that could not be sent back as itself."""


class RemoteTraceback(Exception):
    """The worker's traceback, chained to the error it raised, so that reports show where it came from."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f"\n--- in the peer's worker ---\n{self.text}"


# --- the worker's side ---------------------------------------------------------------------------------

class _Served:
    """The worker's state: its peer and the runners of the current (workload, size)."""

    def __init__(self, peer: Backend):
        self.peer = peer
        self.cell: tuple | None = None
        self.runners: dict[int, tuple[Runner, object]] = {}
        self.staged: dict[tuple[int, str], Callable[[], object]] = {}

    def describe(self) -> dict:
        """The peer's settings as this process runs it (threads, mode, what its timed region holds)."""
        return self.peer.settings()

    def prepare(self, rid: int, module: str, workload: str, size: str, args: dict, kind: str,
                order: int) -> dict:
        """Make the problem, prepare the peer on it and call it once: the one-off the budget covers."""
        from .workloads import get

        if (workload, size) != self.cell:   # a new cell: the previous cell's runners go
            self.runners.clear()
            self.staged.clear()
            self.cell = (workload, size)
        importlib.import_module(module)      # the module that registers the workload (tests add their own)
        problem = get(workload).make(size)
        problem.args = dict(args)
        seconds, runner = once(lambda: self.peer.prepare(problem, kind, order))
        first, out = once(lambda: runner.grad(problem.arrays))
        self.runners[rid] = (runner, problem)
        return {"one_off": runner.one_off or {"total": seconds}, "nodes": runner.nodes, "first_call": first,
                "out": [np.asarray(o) for o in out], "forward": runner.forward is not None}

    def _target(self, rid: int, which: str) -> tuple[Callable, list]:
        runner, problem = self.runners[rid]
        return getattr(runner, which), problem.arrays

    def call(self, rid: int, which: str, arrays: list | None):
        fn, own = self._target(rid, which)
        out = fn(own if arrays is None else arrays)
        if which == "value_and_grad":
            return float(out[0]), [np.asarray(g) for g in out[1]]
        return float(out) if which == "forward" else [np.asarray(o) for o in out]

    def sample(self, rid: int, which: str, number: int, clock: Callable[[], float] = time.perf_counter) -> float:
        """Seconds per call over ``number`` calls, the collector off (as the main process times). The
        function timed is the runner's :meth:`~benchmarks.backends.Runner.timed`, made on the first
        sample and kept: its inputs are converted to the peer's own values once, outside every sample."""
        key = (rid, which)
        if key not in self.staged:
            runner, problem = self.runners[rid]
            self.staged[key] = runner.timed(which, problem.arrays)
        fn = self.staged[key]
        enabled = gc.isenabled()
        gc.disable()
        try:
            return per_call(fn, number, clock)
        finally:
            if enabled:
                gc.enable()

    def memory(self, rid: int) -> int:
        fn, arrays = self._target(rid, "grad")
        return peak_memory(lambda: fn(arrays))

    def train(self, rid: int) -> list[float]:
        """The whole training run here: one request, not two per step."""
        from .workloads import train

        return train(*self.runners[rid])


def _pack(e: BaseException) -> tuple:
    """An exception as something the pipe can carry: itself if it pickles, else its type name and text."""
    text = "".join(traceback.format_exception(e, limit=8))
    try:
        return pickle.dumps(e), type(e).__name__, str(e), text
    except Exception:
        return None, type(e).__name__, str(e), text


def _unpack(packed: tuple) -> BaseException:
    data, name, message, text = packed
    e: BaseException | None = None
    if data is not None:
        try:
            e = pickle.loads(data)
        except Exception:
            e = None
    if e is None:
        e = PeerError(f"{name}: {message}")
    if not isinstance(e, Unsupported):
        e.__cause__ = RemoteTraceback(text)
    return e


def serve(conn, peer: Backend) -> None:
    """The worker's loop: import the peer's library and the workloads, then answer requests until told
    to stop. The imports happen before the worker says it is ready: they are not part of any budget."""
    from .timing import enforce_threads
    from .workloads import load_all

    try:
        peer.setup()    # what the library reads once, at import (JAX's XLA_FLAGS)
        importlib.import_module(peer.module)
        load_all()
    except BaseException as e:
        conn.send(("error", _pack(e)))
        return
    conn.send(("ok", None))
    served = _Served(peer)
    with enforce_threads(1):
        while True:
            try:
                op, args = conn.recv()
            except (EOFError, OSError):
                return
            if op == "stop":
                return
            try:
                reply = ("ok", getattr(served, op)(*args))
            except BaseException as e:
                reply = ("error", _pack(e))
            conn.send(reply)


# --- the main process's side ---------------------------------------------------------------------------

def _context():
    """Spawn: a fresh interpreter, never a fork of this one (a forked JAX or torch deadlocks)."""
    return multiprocessing.get_context("spawn")


class PeerWorker:
    """One worker process for one peer: started on demand, killed and restarted when a request overruns."""

    def __init__(self, peer: Backend, budget: float):
        self.peer = peer
        self.budget = budget
        self.proc = None
        self.conn = None
        self.ready = False
        self.ids = itertools.count()

    def start(self) -> None:
        """Start the process (it imports its library meanwhile); :meth:`request` waits for it."""
        if self.proc is not None:
            return
        ctx = _context()
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(child, self.peer), daemon=True,
                                name=f"twograd-peer-{self.peer.name}")
        self.proc.start()
        child.close()
        self.ready = False

    def stop(self, kill: bool = False) -> None:
        """End the worker: politely (``stop``), or killed when it overran."""
        if self.proc is None:
            return
        if not kill:
            try:
                self.conn.send(("stop", ()))
            except (OSError, ValueError):
                kill = True
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()
        self.proc = self.conn = None

    def _receive(self, timeout: float, what: str):
        """The next reply within ``timeout`` seconds; past it the worker is killed."""
        if not self.conn.poll(timeout):
            self.stop(kill=True)
            raise OverBudget(f"{self.peer.name}: {what} over budget: killed after {timeout:.3g} s")
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.stop(kill=True)
            raise PeerError(f"{self.peer.name}: its worker process died (exit code {code})") from None
        if status == "error":
            raise _unpack(value)
        return value

    def request(self, op: str, *args, what: str = "call"):
        """Ask the worker for ``op(*args)``; at most the budget, restarting the worker if needed."""
        self.start()
        if not self.ready:
            try:
                self._receive(START_TIMEOUT, "start")
            except BaseException:
                self.stop(kill=True)   # e.g. its library fails to import: the next request tries afresh
                raise
            self.ready = True
        try:
            self.conn.send((op, args))
        except (OSError, ValueError):
            self.stop(kill=True)
            raise PeerError(f"{self.peer.name}: its worker process is gone") from None
        return self._receive(self.budget, what)


class RemoteRunner(Runner):
    """A runner whose calls go to the peer's worker; its first call came back with the one-off."""

    def __init__(self, worker: PeerWorker, rid: int, info: dict):
        call = lambda which: lambda arrays: worker.request("call", rid, which, arrays)
        super().__init__(call("grad"), call("forward") if info["forward"] else None,
                         call("value_and_grad") if info["forward"] else None, info["one_off"], info["nodes"])
        self.worker, self.rid = worker, rid
        self.first_call = (info["first_call"], info["out"])

    def timed(self, which: str, arrays: list) -> Callable[[], object]:
        """``which`` on the problem's own arrays, as a function the timer samples in the worker."""
        fn = lambda: getattr(self, which)(arrays)
        fn.sample = lambda number: self.worker.request("sample", self.rid, which, number)
        return fn

    def peak_memory(self, arrays: list) -> int:
        return self.worker.request("memory", self.rid)

    def train(self) -> list[float]:
        """The loss curve of plain SGD from the problem's start, run in the worker."""
        return self.worker.request("train", self.rid)


class Remote(Backend):
    """A peer seen through its worker: the same name, role and kinds; ``prepare`` under the budget."""

    def __init__(self, peer: Backend, budget: float):
        self.peer = peer
        self.name, self.role, self.kinds = peer.name, peer.role, peer.kinds
        self.worker = PeerWorker(peer, budget)

    def missing(self) -> str | None:
        return self.peer.missing()

    def version(self) -> str:
        return self.peer.version()

    def settings(self) -> dict:
        """The peer's settings as its worker runs it."""
        return self.worker.request("describe")

    def prepare(self, problem, kind: str, order: int = 1) -> Runner:
        """The peer prepared and called once in its worker, within the budget; a graph the peer is known
        not to handle is skipped here, before the worker sees it."""
        origin = getattr(problem, "origin", None)
        if origin is None:
            raise Unsupported(f"{self.name}: the problem does not say which workload it is "
                              "(make it with benchmarks.harness.make_problem)")
        check = getattr(self.peer, "check_size", None)
        if check is not None:
            check(problem)
        rid = next(self.worker.ids)
        info = self.worker.request("prepare", rid, *origin, problem.args, kind, order, what="compile")
        return RemoteRunner(self.worker, rid, info)

    def close(self) -> None:
        self.worker.stop()
