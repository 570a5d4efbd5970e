"""Timing and memory: medians over repeats, one BLAS thread, tracemalloc peaks.

Repeats run with the garbage collector off (as :mod:`timeit` does); short
calls are looped so that one sample lasts at least ``min_sample`` seconds and
the clock's resolution does not matter; a cell runs until it has both
``min_time`` seconds and ``min_count`` samples, or ``max_time`` is spent.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit_threads(n: int = 1) -> None:
    """Ask BLAS for ``n`` threads; only effective before numpy is first imported."""
    for var in THREAD_VARS:
        os.environ.setdefault(var, str(n))


def thread_limits() -> dict:
    """What the BLAS thread settings are, and whether threadpoolctl enforces them."""
    info = {var: os.environ.get(var) for var in THREAD_VARS[:3]}
    try:
        from threadpoolctl import threadpool_info
        info["threadpoolctl"] = [{"api": p.get("internal_api"), "threads": p.get("num_threads")}
                                 for p in threadpool_info()]
    except ImportError:
        info["threadpoolctl"] = None
    return info


def enforce_threads(n: int = 1):
    """Limit BLAS threads with threadpoolctl when installed (a context); a no-op otherwise."""
    try:
        from threadpoolctl import threadpool_limits
        return threadpool_limits(n)
    except ImportError:
        import contextlib
        return contextlib.nullcontext()


@dataclass
class Stats:
    """Per-call seconds: median, quartiles, how many samples and calls per sample."""

    median: float
    q1: float
    q3: float
    samples: int
    number: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr,
                "samples": self.samples, "number": self.number}


def _quantile(sorted_xs, q):
    pos = (len(sorted_xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def measure(fn: Callable[[], object], min_time: float = 0.2, min_count: int = 5,
            max_time: float | None = None, min_sample: float = 2e-3, warmup: int = 1) -> Stats:
    """Per-call time of ``fn()``: median and quartiles of repeats after ``warmup`` calls."""
    clock = time.perf_counter
    t = 0.0
    for _ in range(max(warmup, 1)):
        t0 = clock()
        fn()
        t = clock() - t0
    number = max(1, int(min_sample / t)) if t > 0 else 1000
    max_time = max_time if max_time is not None else max(4 * min_time, min_time + 1.0)
    samples: list[float] = []
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = clock()
        while True:
            t0 = clock()
            for _ in range(number):
                fn()
            samples.append((clock() - t0) / number)
            spent = clock() - start
            if (spent >= min_time and len(samples) >= min_count) or spent >= max_time:
                break
    finally:
        if enabled:
            gc.enable()
    samples.sort()
    return Stats(_quantile(samples, 0.5), _quantile(samples, 0.25), _quantile(samples, 0.75),
                 len(samples), number)


def once(fn: Callable[[], object]) -> tuple[float, object]:
    """Seconds one call of ``fn()`` takes, and its result (for one-off costs)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes allocated during one call of ``fn()`` beyond what was live before.

    numpy reports its buffers to tracemalloc, so this counts arrays too.
    """
    gc.collect()
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
        del out
    finally:
        if not was:
            tracemalloc.stop()
    return max(0, peak - base)
