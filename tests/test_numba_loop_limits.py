"""The numba linker's limits: compiled loops stop on Ctrl-C and at a cap on their saved steps, loop kernels
compile within a node budget, ``function()`` pays every compile, and a compile that raises costs speed, never
values (one warning, the numpy path).

Values are checked against the numpy linker (an engine check) and against closed forms or plain numpy
written here (the evidence).
"""

from __future__ import annotations

import gc
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
from derivchecks import central

from common import api as T
from common.errors import TwogradError
from symsym import function, grad

pytest.importorskip("numba")

from symsym.linkers.llvm import jit as llvm_jit
from symsym.linkers.numba import diskcache
from symsym.linkers.numba import loop_kernels as scan_kernels
from symsym.linkers.numba import lower as numba_linker

pytestmark = pytest.mark.usefixtures("module_kernel_cache")

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- Ctrl-C

_INTERRUPTED = textwrap.dedent('''
    import numpy as np
    from common import api as T
    from symsym import function

    x = T.var("x", ())
    forever = T.while_loop(lambda c: c > -1.0, lambda c: c + 1.0, x)       # never false, no max_iter
    (_, total), _ = T.scan(lambda c, _: ((c[0] * 0.5 + 1.0, c[1] + c[0]), None), (x, x), None, length=2**62)
    cases = [("while", function([x], forever, linker="numba")), ("scan", function([x], total, linker="numba"))]
    for name, f in cases:
        assert name + "_loop_kernel" in f.source or "scan_kernel" in f.source, f.source
    for name, f in cases:
        print("ready", name, flush=True)
        try:
            f(np.asarray(0.0))
        except KeyboardInterrupt:
            print("interrupted", name, flush=True)
            continue
        print("finished", name, flush=True)
    # the interrupted kernels run again, to the end, and right: 100 steps of c -> c / 2 + 1 from 0
    y = T.var("y", ())
    (c, _), _ = T.scan(lambda c, _: ((c[0] * 0.5 + 1.0, c[1] + c[0]), None), (y, y), None, length=100)
    print("after", float(function([y], c, linker="numba")(np.asarray(0.0))), flush=True)
''')


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.strip())
    into.put(None)


def test_compiled_loops_that_never_end_stop_on_ctrl_c():
    """A while loop whose condition never fails and a scan of 2**62 steps, compiled whole, each get SIGINT
    a second into their run and must raise KeyboardInterrupt within seconds (they used to hold the process
    until SIGKILL); the same kernels then run a finite loop to its closed-form end."""
    proc = subprocess.Popen([sys.executable, "-c", _INTERRUPTED], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    try:
        for name in ("while", "scan"):
            assert lines.get(timeout=180) == f"ready {name}", proc.stderr.read() if proc.poll() is not None else ""
            try:  # it is running: still nothing more after a second
                assert lines.get(timeout=1.0) is None, f"the {name} loop ended by itself"
            except queue.Empty:
                pass
            proc.send_signal(signal.SIGINT)
            try:
                got = lines.get(timeout=5.0)
            except queue.Empty:
                pytest.fail(f"the compiled {name} loop did not stop within 5 s of SIGINT")
            assert got == f"interrupted {name}"
        after = lines.get(timeout=120)
        assert after is not None and after.startswith("after "), proc.stderr.read()
        assert float(after.split()[1]) == pytest.approx(2.0 * (1.0 - 0.5 ** 100), rel=1e-15)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def recurrence(h, xs, reverse):
    """h -> tanh(0.9 h + x) + 0.1 sin(h) over xs, stacking h * x."""
    return T.scan(lambda c, x: ((T.tanh(c[0] * 0.9 + x) + T.sin(c[0]) * 0.1,), c[0] * x), (h,), xs, reverse=reverse)


def recurrence_numpy(h, xs, reverse):
    ys = np.empty(len(xs))
    for t in (range(len(xs) - 1, -1, -1) if reverse else range(len(xs))):
        ys[t] = h * xs[t]
        h = np.tanh(h * 0.9 + xs[t]) + np.sin(h) * 0.1
    return h, ys


@pytest.mark.parametrize("reverse", [False, True])
def test_loops_run_in_chunks_give_the_values_of_one_run(monkeypatch, rng, reverse):
    """With chunks of a few steps (the stacks and sequences cut into slices, a while loop's saved carries
    grown between chunks), a scan, its gradient's reverse scan and a saving while loop give the plain-numpy
    values, at lengths that are not a multiple of the chunk."""
    monkeypatch.setattr(scan_kernels, "CHUNK_WORK", 20)  # 2-3 steps a chunk
    h, xs = T.var("h", ()), T.var("xs", (None,))
    (last,), ys = recurrence(h, xs, reverse)
    a, step = T.var("a", ()), T.var("step", ())
    c, k = counting(a, step)
    outs = [last, ys, *grad(last + T.sum(ys), [h, xs]), c, k, grad(c * c, step)]
    f = function([h, xs, a, step], outs, linker="numba")
    assert f.source.count("# scan_kernel") == 3 and f.source.count("# while_loop_kernel") == 1  # (3: its reverse)
    ref = function([h, xs, a, step], outs)
    value = function([h, xs], last + T.sum(ys))
    for n in (0, 1, 2, 3, 37):
        vals = [np.asarray(0.3), rng.standard_normal(n), np.asarray(40.0 + n), np.asarray(1.0)]
        got = f(*vals)
        want_h, want_ys = recurrence_numpy(0.3, vals[1], reverse)
        np.testing.assert_allclose(got[0], want_h, rtol=1e-13)
        np.testing.assert_allclose(got[1], want_ys, rtol=1e-13)
        np.testing.assert_allclose(got[2], central(lambda v: value(v, vals[1]), vals[0]), rtol=1e-6)
        if n:
            np.testing.assert_allclose(got[3], central(lambda v: value(vals[0], v), vals[1]), rtol=1e-6, atol=1e-9)
        assert float(got[4]) == float(got[5]) == 40.0 + n  # 40 + n steps of 1 from 0
        np.testing.assert_allclose(got[6], 2 * (40.0 + n) ** 2, rtol=1e-15)
        for g, w in zip(got, ref(*vals)):
            np.testing.assert_allclose(g, w, rtol=1e-12)



# ---------------------------------------------------------------------------- the cap on saved steps

def counting(a, step):
    """c -> c + step while c < a (and the steps counted): ceil(a / step) steps from 0."""
    c, k = T.while_loop(lambda s: s[0] < a, lambda s: (s[0] + step, s[1] + 1.0), (T.const(0.0), T.const(0.0)))
    return c, k


def test_a_saving_while_loop_stops_at_the_cap_with_a_clear_error(monkeypatch):
    """The gradient of a while loop keeps every step's carries: past TWOGRAD_MAX_SAVED_STEPS steps it stops
    with a TwogradError naming the loop and this file's line, instead of doubling its stacks until memory
    runs out; a loop of exactly the cap still runs, and its gradient is right."""
    monkeypatch.setenv("TWOGRAD_MAX_SAVED_STEPS", "100")
    a, step = T.var("a", ()), T.var("step", ())
    c, k = counting(a, step)
    line = sys._getframe().f_lineno + 1  # the saving loop is made where its gradient is taken
    (gstep,) = grad(c * c, [step])  # d(c^2)/dstep with c = k * step: 2 c k
    f = function([a, step], [c, k, gstep], linker="numba")
    assert "# while_loop_kernel" in f.source and "def loop" not in f.source
    got = f(np.asarray(100.0), np.asarray(1.0))  # exactly 100 steps: the condition fails at the cap
    assert float(got[1]) == 100.0 and float(got[0]) == 100.0 and float(got[2]) == pytest.approx(2 * 100.0 * 100)
    with pytest.raises(TwogradError, match=r"while_loop: ran 100 steps .*TWOGRAD_MAX_SAVED_STEPS") as info:
        f(np.asarray(1e300), np.asarray(1.0))
    assert isinstance(info.value, scan_kernels.SavedStepsError)
    assert f"test_numba_loop_limits.py:{line})" in str(info.value)
    monkeypatch.setenv("TWOGRAD_MAX_SAVED_STEPS", "1000")  # read at each run: a larger cap lets it finish
    got = f(np.asarray(500.0), np.asarray(1.0))
    assert float(got[1]) == 500.0 and float(got[2]) == pytest.approx(2 * 500.0 * 500)
    value = function([a, step], c, linker="numba")  # a loop that saves nothing has no cap
    assert float(value(np.asarray(5000.0), np.asarray(1.0))) == 5000.0
    monkeypatch.setenv("TWOGRAD_MAX_SAVED_STEPS", "many")
    with pytest.raises(TwogradError, match="TWOGRAD_MAX_SAVED_STEPS must be a positive integer"):
        f(np.asarray(5.0), np.asarray(1.0))


# ---------------------------------------------------------------------------- the compile budget

def chain_step(c, x, n: int):
    """n sin-and-affine steps of c: 3n body nodes."""
    for _ in range(n):
        c = T.sin(c) * 0.5 + x
    return c


def chain_numpy(c, xs, n: int):
    for x in xs:
        for _ in range(n):
            c = np.sin(c) * 0.5 + x
    return c


def test_loops_compile_within_the_node_budget_smallest_first(monkeypatch, rng):
    """With room for the small loop only, the small one becomes a kernel and the large one keeps the
    numpy linker's Python loop; both give the plain-numpy recurrence's values."""
    monkeypatch.setattr(scan_kernels, "MAX_LOOP_NODES", 40)
    h, xs = T.var("h", ()), T.var("xs", (30,))
    (big,), _ = T.scan(lambda c, x: ((chain_step(c[0], x, 20),), None), (h,), xs)   # about 60 nodes a step
    (small,), _ = T.scan(lambda c, x: ((chain_step(c[0], x, 3),), None), (h,), xs)  # about 9
    f = function([h, xs], [big, small], linker="numba")
    assert f.source.count("# scan_kernel") == 1 and "def scan" in f.source
    vals = [np.asarray(0.3), rng.standard_normal(30)]
    got = f(*vals)
    np.testing.assert_allclose(got[0], chain_numpy(0.3, vals[1], 20), rtol=1e-13)
    np.testing.assert_allclose(got[1], chain_numpy(0.3, vals[1], 3), rtol=1e-13)
    monkeypatch.setattr(scan_kernels, "MAX_LOOP_NODES", 1000)
    assert function([h, xs], [big, small], linker="numba").source.count("# scan_kernel") == 2


# ---------------------------------------------------------------------------- function() pays every compile

def _overloads() -> dict:
    return {k: len(fn.overloads) for k, fn in diskcache.LOADED.items()}


def test_the_first_call_compiles_nothing(rng):
    """After function() the kernels are compiled for every argument the driver gives them (a broadcast, a
    slice of a variable, a strided column, an item of a Python loop's tuple), and the collector has had its
    pass over what compiling made: the first call compiles nothing and starts no collection."""
    from benchmarks.workloads.euler import euler

    p = euler("t100")
    cost, variables = p.graph()
    x, m = T.var("x", (40,)), T.var("m", (8, 5))
    col = m[:, 1]  # a strided view
    (acc,), ys = T.scan(lambda c, r: ((c[0] + T.sum(r * r),), T.exp(r)), (T.sum(x),), m)  # an array body
    other = T.sin(x[1:] * 2.0 + x[:-1]) * T.cos(x[1:]) + 1.5                    # slices of a variable
    third = T.tanh(col * acc + 0.5) * T.exp(-col) + T.sin(ys[:, 2])            # a column, a Python loop's
    outs = [cost, *grad(cost, variables), other, third, *grad(T.sum(third) + T.sum(other), [x, m])]
    vals = [*p.arrays, rng.standard_normal(40), rng.standard_normal((8, 5))]
    f = function([*variables, x, m], outs, linker="numba")
    pending = gc.get_count()[0]  # (read before anything else allocates: the next allocation would collect)
    assert pending < gc.get_threshold()[0]
    assert f.source.count("# scan_kernel") == 2 and "# kernel" in f.source
    before = _overloads()
    got = f(*vals)
    assert _overloads() == before
    ref = function([*variables, x, m], outs)(*vals)
    for g, w in zip(got, ref):
        np.testing.assert_allclose(g, w, rtol=1e-12)
    xv, mv = vals[2], vals[3]
    np.testing.assert_allclose(got[3], np.sin(xv[1:] * 2 + xv[:-1]) * np.cos(xv[1:]) + 1.5, rtol=1e-13)
    total = np.sum(xv) + np.sum(mv * mv)
    np.testing.assert_allclose(got[4], np.tanh(mv[:, 1] * total + 0.5) * np.exp(-mv[:, 1]) + np.sin(np.exp(mv[:, 2])),
                               rtol=1e-13)


# ---------------------------------------------------------------------------- a compile that raises

def _fallbacks(record) -> list:
    return [w for w in record if issubclass(w.category, numba_linker.CompileFallbackWarning)]


def test_an_llvm_compile_that_raises_keeps_the_numpy_path_with_one_warning(monkeypatch):
    """llvmlite changing under us (here: the pipeline options refusing an argument, as llvmlite 0.50 does)
    makes the 0-d regions numpy calls, with one warning naming the cause, and the same values."""
    def refuse(self, text):
        raise TypeError("create_pipeline_tuning_options() got an unexpected keyword argument 'size_level'")

    monkeypatch.setattr(llvm_jit._Jit, "compile", refuse)
    monkeypatch.setattr(llvm_jit, "LOADED", {})  # nothing this process compiled before
    w = T.var("w", ())
    z = T.sin(T.sin(T.sin(w) * 1.7311) + 0.2113)  # a chain of constants no other test compiles
    outs = [z, grad(z, w), T.exp(w * 0.37) * T.cos(w)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        f = function([w], outs, linker="numba")
    fallbacks = _fallbacks(record)
    assert len(fallbacks) == 1 and "size_level" in str(fallbacks[0].message)
    assert fallbacks[0].filename == __file__  # the warning points at the user's call of function()
    assert "LLVM IR" not in f.source
    v = 0.45
    inner = np.sin(np.sin(v) * 1.7311) + 0.2113
    got = f(np.asarray(v))
    np.testing.assert_allclose(got[0], np.sin(inner), rtol=1e-15)
    np.testing.assert_allclose(got[1], np.cos(inner) * np.cos(np.sin(v) * 1.7311) * 1.7311 * np.cos(v), rtol=1e-14)
    np.testing.assert_allclose(got[2], np.exp(v * 0.37) * np.cos(v), rtol=1e-15)


def test_a_numba_compile_that_raises_keeps_the_numpy_path_with_one_warning(monkeypatch, rng):
    """Every numba compile raising (an array region, a loop of scalars): one warning naming the cause, no
    kernel, and the values of the plain-numpy formula."""
    import numba.core.dispatcher

    def refuse(self, sig):
        raise RuntimeError("LLVM ERROR: unsupported relocation")

    monkeypatch.setattr(numba.core.dispatcher.Dispatcher, "compile", refuse)
    monkeypatch.setattr(diskcache, "LOADED", {})
    x, h = T.var("x", (50,)), T.var("h", ())
    (last,), hs = T.scan(lambda c, xi: ((T.tanh(c[0] * 0.9 + xi),), c[0] * 2.0), (h,), x)
    y = T.sin(x) * T.exp(-x * x) + T.cos(x * 3.0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        f = function([x, h], [y, last, hs], linker="numba")
    fallbacks = _fallbacks(record)
    assert len(fallbacks) == 1 and "RuntimeError: LLVM ERROR: unsupported relocation" in str(fallbacks[0].message)
    assert "more" in str(fallbacks[0].message)  # the loop and the region: both named in the one warning's count
    assert "@numba.njit" not in f.source
    xv = rng.standard_normal(50)
    got = f(xv, np.asarray(0.2))
    np.testing.assert_allclose(got[0], np.sin(xv) * np.exp(-xv * xv) + np.cos(xv * 3.0), rtol=1e-15)
    c, stacked = 0.2, []
    for xi in xv:
        stacked.append(c * 2.0)
        c = np.tanh(c * 0.9 + xi)
    np.testing.assert_allclose(got[1], c, rtol=1e-15)
    np.testing.assert_allclose(got[2], stacked, rtol=1e-15)


def test_a_linker_that_raises_while_lowering_leaves_every_node_to_numpy(monkeypatch, rng):
    def broken(order, outs):
        raise IndexError("a lowering bug")

    monkeypatch.setattr(numba_linker, "lower", broken)
    x = T.var("x", (7,))
    with pytest.warns(RuntimeWarning, match="IndexError: a lowering bug") as record:
        f = function([x], T.sin(x) * 2.0 + 1.0, linker="numba")
    assert record[0].filename == __file__
    xv = rng.standard_normal(7)
    np.testing.assert_allclose(f(xv), np.sin(xv) * 2.0 + 1.0, rtol=1e-15)
