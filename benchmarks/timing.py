"""Timing and memory: medians over repeats, one BLAS thread, tracemalloc peaks.

Repeats run with the garbage collector off (as :mod:`timeit` does); short
calls are looped so that one sample lasts at least ``min_sample`` seconds and
the clock's resolution does not matter; a cell runs until it has both
``min_time`` seconds and ``min_count`` samples, or ``max_time`` is spent.
Functions to be compared are timed together, their samples taken in turn
(:func:`measure_interleaved`), so that the machine's drift hits them alike.
"""

from __future__ import annotations

import gc
import itertools
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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
    """Per-call seconds: median, quartiles, how many samples and calls per sample.

    ``rounds`` keeps the samples in the order they were taken, one per round, so that two
    functions timed together can be compared round by round (:func:`paired_ratio`).
    """

    median: float
    q1: float
    q3: float
    samples: int
    number: int
    rounds: list[float] = field(default_factory=list, repr=False)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr,
                "samples": self.samples, "number": self.number, "rounds": list(self.rounds)}


class MeasureError(Exception):
    """A timed function raised: ``name`` says which one, the original error is the cause."""

    def __init__(self, name: str):
        super().__init__(f"{name} failed while being timed")
        self.name = name


def _quantile(sorted_xs, q):
    pos = (len(sorted_xs) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def _stats(rounds: list[float], number: int) -> Stats:
    xs = sorted(rounds)
    return Stats(_quantile(xs, 0.5), _quantile(xs, 0.25), _quantile(xs, 0.75), len(xs), number, rounds)


def _calls_per_sample(name: str, fn: Callable[[], object], warmup: int, min_sample: float,
                      clock: Callable[[], float]) -> int:
    """Warm ``fn`` up; loop it enough times that one sample lasts ``min_sample`` seconds."""
    t = 0.0
    for _ in range(max(warmup, 1)):
        t = _sample(name, fn, 1, clock)
    return max(1, int(min_sample / t)) if t > 0 else 1000


def per_call(fn: Callable[[], object], number: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call over ``number`` back-to-back calls of ``fn()``."""
    t0 = clock()
    for _ in range(number):
        fn()
    return (clock() - t0) / number


def _sample(name: str, fn: Callable[[], object], number: int, clock: Callable[[], float]) -> float:
    """Seconds per call over ``number`` calls; a function that runs elsewhere (a peer's worker
    process) carries ``fn.sample(number)``, timed where it runs, so the round trip is not counted."""
    remote = getattr(fn, "sample", None)
    try:
        return remote(number) if remote is not None else per_call(fn, number, clock)
    except Exception as e:
        raise MeasureError(name) from e


def measure_interleaved(fns: dict[str, Callable[[], object]], min_time: float = 0.2, min_count: int = 5,
                        max_time: float | None = None, min_sample: float = 2e-3, warmup: int = 1,
                        clock: Callable[[], float] = time.perf_counter) -> dict[str, Stats]:
    """Per-call times of several functions, their samples taken in turn, one per function a round.

    Timing functions one after the other lets the machine's speed drift between them (another
    process starts, the CPU clocks down), which moves their ratio; taking their samples in
    rounds exposes them all to the same drift, and the samples of one round can be paired
    (:func:`paired_ratio`). Each function loops its own number of calls per sample (from its
    warm-up) and the order rotates every round, so that none always runs first. ``min_time`` and
    ``max_time`` are per function, as if it were timed alone: the rounds go on until every
    function has ``min_count`` samples and ``min_time`` times their count is spent, or
    ``max_time`` times their count. The garbage collector is off meanwhile, as in :mod:`timeit`.
    A function that raises stops it all with a :class:`MeasureError` naming it.
    """
    names = list(fns)
    if not names:
        return {}
    numbers = {n: _calls_per_sample(n, fns[n], warmup, min_sample, clock) for n in names}
    max_time = max_time if max_time is not None else max(4 * min_time, min_time + 1.0)
    rounds: dict[str, list[float]] = {n: [] for n in names}
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        start = clock()
        for r in itertools.count():
            shift = r % len(names)
            for n in names[shift:] + names[:shift]:
                rounds[n].append(_sample(n, fns[n], numbers[n], clock))
            spent = (clock() - start) / len(names)
            if (spent >= min_time and r + 1 >= min_count) or spent >= max_time:
                break
    finally:
        if enabled:
            gc.enable()
    return {n: _stats(rounds[n], numbers[n]) for n in names}


def measure(fn: Callable[[], object], min_time: float = 0.2, min_count: int = 5,
            max_time: float | None = None, min_sample: float = 2e-3, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter) -> Stats:
    """Per-call time of ``fn()``: median and quartiles of repeats after ``warmup`` calls."""
    try:
        return measure_interleaved({"fn": fn}, min_time, min_count, max_time, min_sample, warmup, clock)["fn"]
    except MeasureError as e:
        raise e.__cause__ from None


def paired_ratio(samples: Sequence[float] | None, reference: Sequence[float] | None) -> float | None:
    """Median of the per-round ratios ``samples[i] / reference[i]``; None unless they pair up.

    A drift in the machine's speed hits both samples of a round alike and cancels in their
    ratio, so this is steadier than the ratio of the two medians.
    """
    if not samples or not reference or len(samples) != len(reference) or not all(reference):
        return None
    return statistics.median([x / h for x, h in zip(samples, reference)])


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
