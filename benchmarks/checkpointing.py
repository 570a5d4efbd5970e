"""Checkpointing's trade, measured: peak memory and time per gradient with and without ``checkpoint``.

Two models, each on both backends, plain and checkpointed (the same cost,
the same gradient, checked equal here): a deep chain of ``sin`` over a large
array, split into segments that are each checkpointed (the classic sqrt(n)
schedule: the gradient keeps one array per segment and one segment's
intermediates while it runs backwards), and ``lstm-scan`` with its step
checkpointed (the gradient keeps the carries, not every gate of every step).
Each gradient is the benchmark's own runner (:mod:`benchmarks.backends`),
timed by :func:`benchmarks.timing.measure` and measured by
:func:`benchmarks.timing.peak_memory` (tracemalloc, numpy's buffers
included). ``twograd bench`` stores the rows under ``checkpointing`` and
draws them as ``memory_vs_checkpointing.png``.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .backends import BACKENDS
from .gradbench.models import lstm_scan
from .timing import measure, peak_memory
from .workloads import Problem, get

CHAIN_DEPTH, CHAIN_SEGMENTS, CHAIN_LENGTH = 100, 10, 50_000
LSTM_SIZE = "l2-c1024-b7"
BACKEND_NAMES = ("symnum", "symsym")


def deep_chain(ns, x, checkpoint: bool = False):
    """sum(sin^CHAIN_DEPTH(x)), its segments of CHAIN_DEPTH / CHAIN_SEGMENTS sines each checkpointed or not."""
    def segment(a):
        for _ in range(CHAIN_DEPTH // CHAIN_SEGMENTS):
            a = ns.sin(a)
        return a

    run = ns.checkpoint(segment) if checkpoint else segment
    for _ in range(CHAIN_SEGMENTS):
        x = run(x)
    return ns.sum(x)


def problems() -> dict[str, tuple[Problem, Problem]]:
    """Each model as (plain, checkpointed) problems: the same inputs, the cost with the flag set."""
    x = np.random.default_rng(0).uniform(-1.0, 1.0, CHAIN_LENGTH)
    chain = Problem(deep_chain, {"x": x}, ("x",), label=f"depth {CHAIN_DEPTH} in {CHAIN_SEGMENTS} segments, "
                    f"{CHAIN_LENGTH} elements")
    lstm = get("lstm-scan").make(LSTM_SIZE)
    out = {}
    for name, plain, fn in (("deep chain", chain, deep_chain), (f"lstm-scan {LSTM_SIZE}", lstm, lstm_scan)):
        out[name] = (plain, dataclasses.replace(plain, fn=functools.partial(fn, checkpoint=True), _graph=None))
    return out


def measure_all(min_time: float = 0.2) -> list[dict]:
    """One row per (model, backend, checkpointed): peak bytes and median seconds of one gradient."""
    rows = []
    for model, pair in problems().items():
        for backend in BACKEND_NAMES:
            grads = []
            for checkpointed, problem in zip((False, True), pair):
                runner = BACKENDS[backend].prepare(problem, "grad")
                arrays = problem.arrays
                grads.append(runner.grad(arrays))
                stats = measure(lambda runner=runner, arrays=arrays: runner.grad(arrays), min_time=min_time,
                                min_count=3)
                rows.append({"model": model, "label": problem.label, "backend": backend,
                             "checkpointed": checkpointed, "memory": peak_memory(lambda: runner.grad(arrays)),
                             "time": stats.median})
            error = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(*grads))
            for row in rows[-2:]:
                row["max_difference"] = error  # checkpointed vs plain gradient: equal up to rounding
    return rows
