"""symsym.function(..., linker="numba"): fused loops agree with the numpy linker, and fall back where they must.

Every comparison is against the numpy linker (the same graph, every node a
numpy call), to 1e-12 relative, NaN and inf included. Kernels are compiled
into a cache folder under the session's tmp folder and shared by the tests
(small graphs, few distinct regions), so numba compiles each region once.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import symsym
from common import api as T
from common.errors import TwogradError
from common.graph import Node
from common.ops import Kind
from common.ops.table import Op
from symsym import function, grad
from symsym.linkers import LINKERS, LinkerError

pytest.importorskip("numba")

from symsym.linkers.numba import diskcache

pytestmark = pytest.mark.usefixtures("module_kernel_cache")


def agree(inputs, outputs, arrays, rtol=1e-12):
    """Compile with both linkers, run, compare; returns the numba function."""
    fast = function(inputs, outputs, linker="numba")
    ref = function(inputs, outputs)
    got, want = fast(*arrays), ref(*arrays)
    if not isinstance(got, list):
        got, want = [got], [want]
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=rtol, atol=0, equal_nan=True)
    return fast


def kernels(f) -> int:
    """Fused kernels in ``f``: numba loops and the LLVM functions of 0-d regions (symsym.linkers.llvm.chains)."""
    return f.source.count("\ndef kernel(") + f.source.count("\ndefine ptr @twograd_")


@pytest.fixture
def numba_scalars(monkeypatch):
    """0-d regions on numba's path (the one a region takes when its forms have no LLVM translation)."""
    from symsym.linkers.llvm import chains as llvm_scalar

    monkeypatch.setattr(llvm_scalar, "ENABLED", False)


# ---------------------------------------------------------------------------- interface


def test_default_linker_is_numpy_and_unknown_linkers_are_refused():
    x = T.var("x", (3,))
    assert kernels(function([x], T.sin(T.sin(x)))) == 0
    with pytest.raises(LinkerError, match="unknown linker 'fortran'"):
        function([x], T.sin(x), linker="fortran")


def test_a_missing_numba_is_a_clear_twograd_error(monkeypatch):
    monkeypatch.setattr(type(LINKERS["numba"]), "missing", lambda self: "numba is not installed (pip ...)")
    x = T.var("x", (3,))
    with pytest.raises(TwogradError, match="linker 'numba' cannot run here: numba is not installed"):
        function([x], T.sin(x), linker="numba")


def test_source_shows_the_driver_and_each_kernel():
    x = T.var("x", (4,))
    f = agree([x], [T.sum(T.sigmoid(x * 2.0 - 1.0) * x)], [np.linspace(-1, 1, 4)])
    assert f.source.startswith("def fn(a0):") and "kernel0_impl(a0)" in f.source
    assert kernels(f) == 1 and "math_exp(" in f.source
    assert "fastmath" not in f.source and 'error_model="numpy"' in f.source


# ---------------------------------------------------------------------------- fusion boundaries


def test_libm_ops_fuse_in_scalar_chains_and_as_vectorised_math_on_arrays(rng, numba_scalars):
    """On scalars the loop calls libm; on arrays it calls vmath's vectorisable forms (a libm call per
    element would lose to numpy's SIMD exp); a form vmath lacks (pow) stays on numpy for arrays."""
    s, x = T.var("s", ()), T.var("x", (100,))
    f = agree([s, x], [T.exp(T.sin(s) * 2.0) + 1.0, T.exp(T.sin(x) * 2.0) + 1.0, T.abs(x) ** x],
              [np.asarray(0.3), rng.standard_normal(100)])
    assert kernels(f) == 2 and "vmath_exp(" in f.source and "np_exp(" not in f.source
    assert "np_power(" in f.source


def test_a_scalar_chain_and_its_gradient_are_one_native_function():
    w = T.var("w", ())
    z = w
    for _ in range(20):
        z = T.sin(z)
    f = agree([w], [z, grad(z, w)], [np.asarray(0.9)])
    assert kernels(f) == 1 and "for i0" not in f.source


def test_broadcast_operands_are_read_in_place_in_one_loop(rng):
    x, b, c, s = T.var("x", (3, 4)), T.var("b", (4,)), T.var("c", (3, 1)), T.var("s", ())
    y = T.sigmoid(x * b + c) - s * x
    f = agree([x, b, c, s], [y], [rng.standard_normal((3, 4)), rng.standard_normal(4),
                                   rng.standard_normal((3, 1)), np.asarray(0.3)])
    assert kernels(f) == 1 and "a1[i1]" in f.source and "a2[i0, 0]" in f.source


def test_reductions_run_on_numpy_after_the_loop_that_feeds_them(rng):
    x, y = T.var("x", (5, 6)), T.var("y", (5, 6))
    h = T.sin(x) * y + 1.0
    outs = [T.sum(h), T.sum(h * h, axis=0), T.max(T.exp(h), axis=1)]
    f = agree([x, y], outs + list(grad(outs[0] + T.sum(outs[1]), [x, y])), [rng.standard_normal((5, 6))] * 2)
    assert kernels(f) >= 1 and "np_add_reduce" in f.source


def test_matmul_stays_on_blas_between_kernels(rng):
    x, w1, w2 = T.var("x", (4, 3)), T.var("w1", (3, 5)), T.var("w2", (5, 2))
    h = T.tanh(x @ w1) * 2.0 + 1.0
    loss = T.sum(T.square(T.sigmoid(h @ w2) - 0.5))
    f = agree([x, w1, w2], [loss, *grad(loss, [w1, w2])],
              [rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal((5, 2))])
    assert kernels(f) >= 2 and ("np_matmul(" in f.source or " @ " in f.source)


def test_views_and_transposed_inputs_compile_for_their_layout(rng):
    x, y = T.var("x", (4, 3)), T.var("y", (3, 4))
    out = T.sin(T.transpose(x)) * y + T.cos(x[::2].T.sum(axis=1, keepdims=True))
    xv = rng.standard_normal((4, 3))
    agree([x, y], [out], [xv, rng.standard_normal((3, 4))])
    f = function([x, y], [out], linker="numba")
    ref = function([x, y], [out])
    strided = rng.standard_normal((3, 4)).T        # a non-contiguous input: compiled for it on first sight
    np.testing.assert_allclose(f(strided, xv.T)[0], ref(strided, xv.T)[0], rtol=1e-12)


def test_a_kernel_output_reused_later_is_not_overwritten(rng):
    """The driver reuses dead buffers in place (np.sin(x, out=x)); a kernel's output is never one of them
    while something still reads it."""
    x, w = T.var("x", (6, 6)), T.var("w", (6, 6))
    a = T.sin(x) * 2.0 + x
    b = T.exp(a @ w)
    c = T.tanh(b) + a
    agree([x, w], [a, c, T.sum(c * a)], [rng.standard_normal((6, 6)), rng.standard_normal((6, 6)) * 0.1])


def test_unknown_dims_use_one_generic_kernel_for_every_size(rng):
    x, b = T.var("x", (None, 3)), T.var("b", (3,))
    y = T.exp(T.sin(x) * b) - b
    f = agree([x, b], [y, grad(T.sum(y * y), x)], [rng.standard_normal((2, 3)), rng.standard_normal(3)])
    ref = function([x, b], [y, grad(T.sum(y * y), x)])
    for n in (1, 5, 0):
        xs = [rng.standard_normal((n, 3)), rng.standard_normal(3)]
        for g, w in zip(f(*xs), ref(*xs)):
            np.testing.assert_allclose(g, w, rtol=1e-12)
    used = [fn for k, fn in diskcache.LOADED.items() if f"cache key {k}" in f.source]
    assert len(used) == kernels(f) >= 1
    assert all(len(fn.signatures) == 1 for fn in used)    # compiled once, for every size


def test_unknown_dims_broadcast_at_run_time_fall_back_to_numpy(rng):
    """(None,) against (None,) may be 1 against 4 at run time: numpy broadcasts, and so must the kernel."""
    x, y = T.var("x", (None,)), T.var("y", (None,))
    z = T.sin(x) * T.cos(y) + x
    f = function([x, y], [z], linker="numba")
    ref = function([x, y], [z])
    for xs in ([np.array([0.5]), rng.standard_normal(4)], [rng.standard_normal(4), rng.standard_normal(4)],
               [rng.standard_normal(3), np.array([2.0])]):
        np.testing.assert_allclose(f(*xs)[0], ref(*xs)[0], rtol=1e-12)
    with pytest.raises(TwogradError):
        f(rng.standard_normal(3), rng.standard_normal(4))


def test_nan_and_inf_propagate_as_numpy_propagates_them():
    x = T.var("x", (8,))
    y = T.log(x) * T.exp(x) / (x - 1.0) + T.sqrt(x) - T.maximum(x, 0.5)
    xs = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -2.0, 800.0])
    with np.errstate(all="ignore"):
        agree([x], [y, grad(T.sum(y), x)], [xs])


def test_bool_conditions_and_comparisons_fuse(rng):
    x = T.var("x", (7,))
    y = T.where(x > 0.0, T.sin(x), T.exp(x) - 1.0) * (x < 0.5)
    agree([x], [y, grad(T.sum(y), x)], [rng.standard_normal(7)])


# ---------------------------------------------------------------------------- fallback


def _unknown_op():
    """An elementwise op the linker has never seen (not in the table, no scalar form), as a control-flow op
    added later would be: it must run its impl between kernels."""
    return Op("mystery", lambda x: (x.shape, x.dtype), lambda x: np.cbrt(x) + 1.0, kind=Kind.ELEMENTWISE)


def test_an_op_without_a_scalar_form_runs_its_numpy_impl_between_kernels(rng):
    x = T.var("x", (5,))
    a = T.sin(x) * 2.0 + 1.0
    mid = Node(_unknown_op(), (a,), {}, a.shape, a.dtype)
    out = T.exp(mid) * x - T.cast(x > 0.0, "float64") * a
    f = function([x], [out], optimize=False, linker="numba")
    xs = rng.standard_normal(5)
    a_ = np.sin(xs) * 2.0 + 1.0
    want = np.exp(np.cbrt(a_) + 1.0) * xs - (xs > 0) * a_
    np.testing.assert_allclose(f(xs)[0], want, rtol=1e-12)
    assert "mystery_impl(" in f.source and kernels(f) == 2


def test_float32_and_integer_graphs_stay_on_numpy(rng):
    x, n = T.var("x", (4,), "float32"), T.var("n", (4,), "int64")
    f = agree([x, n], [T.sin(T.sin(x)) * 2.0, n * n + 1], [rng.standard_normal(4).astype(np.float32),
                                                            np.arange(4)])
    assert kernels(f) == 0


# ---------------------------------------------------------------------------- cache


_SCRIPT = """
import numpy as np
from common import api as T
import symsym
from symsym.linkers import cache
from symsym.linkers.numba import diskcache
x = T.var("x", (3,))
f = symsym.function([x], [T.sum(T.tanh(T.sin(x) * 3.0 + 0.25))], linker="numba")
v = np.array([0.1, 0.2, 0.3])
assert abs(float(f(v)[0]) - float(np.sum(np.tanh(np.sin(v) * 3.0 + 0.25)))) < 1e-12
(fn,) = diskcache.LOADED.values()
print(sum(fn.stats.cache_hits.values()), sum(fn.stats.cache_misses.values()))
"""


def test_a_second_process_loads_the_kernel_from_disk(tmp_path):
    env = {**os.environ, "TWOGRAD_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([os.getcwd(), *sys.path])}
    runs = [subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=300)
            for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    (hits1, misses1), (hits2, misses2) = [tuple(map(int, r.stdout.split())) for r in runs]
    assert (hits1, misses2) == (0, 0) and misses1 >= 1 and hits2 >= 1
    assert len(list((tmp_path / "cache").glob("k*.py"))) == 1


def test_a_cleared_registry_reloads_from_disk(monkeypatch):
    x = T.var("x", (2,))
    out = [T.sigmoid(T.square(x) + 0.125) * x]
    function([x], out, linker="numba")
    monkeypatch.setattr(diskcache, "LOADED", {})
    f = function([x], out, linker="numba")
    (fn,) = diskcache.LOADED.values()
    assert sum(fn.stats.cache_hits.values()) >= 1 and sum(fn.stats.cache_misses.values()) == 0
    v = np.array([0.5, -1.0])
    np.testing.assert_allclose(f(v)[0], v / (1.0 + np.exp(-(v * v + 0.125))), rtol=1e-14)


def test_symsym_exports_function_with_the_linker_argument():
    assert "linker" in symsym.function.__code__.co_varnames


def test_a_long_region_is_cut_into_kernels_in_schedule_order(monkeypatch, numba_scalars):
    from symsym.linkers.numba import lower as linker

    monkeypatch.setattr(linker, "MAX_KERNEL_NODES", 7)
    w = T.var("w", ())
    z = w
    for _ in range(12):
        z = T.tanh(z) * 1.25
    f = agree([w], [z, grad(z, w)], [np.asarray(0.4)])
    assert kernels(f) >= 4
    monkeypatch.setattr(linker, "MAX_FUSED_NODES", 10)   # past the budget the rest stays numpy
    f = agree([w], [z, grad(z, w)], [np.asarray(0.4)])
    assert kernels(f) == 1 and "np_tanh(" in f.source


def test_a_piece_with_more_values_crossing_it_than_allowed_is_cut_smaller(monkeypatch, numba_scalars):
    """A cut chain's backward piece reads every forward value: the cut (symsym.linkers.numba.cut) ends a piece
    before MAX_KERNEL_VALUES (numba's compile time and memory explode on signatures that long), so there
    are more, smaller kernels, and the results still agree."""
    from symsym.linkers.numba import lower as linker

    monkeypatch.setattr(linker, "MAX_KERNEL_NODES", 7)
    w = T.var("w", ())
    z = w
    for _ in range(12):
        z = T.tanh(z) * 1.25
    many = kernels(agree([w], [z, grad(z, w)], [np.asarray(0.4)]))
    monkeypatch.setattr(linker, "MAX_KERNEL_VALUES", 3)
    f = agree([w], [z, grad(z, w)], [np.asarray(0.4)])
    assert kernels(f) > many


def test_kernels_run_in_the_table_driven_loop_of_very_large_graphs(monkeypatch, rng):
    from symsym import compile as compile_module

    monkeypatch.setattr(compile_module, "MAX_STRAIGHT_LINE", 2)
    x, s = T.var("x", (5,)), T.var("s", ())
    y = T.sin(T.sin(x) * s + 1.0)
    f = agree([x, s], [y, T.cos(s) * T.exp(s), grad(T.sum(y), [x, s])[1]], [rng.standard_normal(5), np.asarray(0.3)])
    assert "for impl, out, ins, kw, dead in program" in f.source and kernels(f) >= 2
