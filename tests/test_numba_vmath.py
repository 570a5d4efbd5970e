"""The numba linker's vectorisable math (symsym/linkers/vmath.py) and its use in fused array loops.

Each function is compiled in a loop, as the linker uses it, and its error is
measured in ulps against long-double numpy (an independent libm, 11 more
bits) on dense random points in each range, and compared with ``math``
(glibc) and float64 numpy; special values (signed zeros, infinities, NaN,
subnormals, the overflow and underflow thresholds) must come out exactly as
``math`` gives them. The pure-Python meaning of each function must equal the
compiled one bit for bit. Then the wiring: a fused loop through exp, sin and
tanh is one kernel, equal to the numpy linker to 1e-12 relative with a
gradient that matches central finite differences, and sin of an argument
past 2**20 takes the libm rerun.
"""

from __future__ import annotations

import math
import re
import zlib

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from common import api as T  # noqa: E402
from symsym import function, grad  # noqa: E402
from symsym.linkers.numba import vforms, vmath  # noqa: E402

pytestmark = pytest.mark.usefixtures("module_kernel_cache")


_LOOPS: dict = {}


def _loop(name: str):
    """A compiled loop applying vmath's ``name`` to each element of a float64 array (cached per name)."""
    if name not in _LOOPS:
        f = vmath.FUNCTIONS[name]

        @numba.njit(error_model="numpy")
        def run(a):
            out = np.empty_like(a)
            for i in range(a.shape[0]):
                out[i] = f(a[i])
            return out
        _LOOPS[name] = run
    return _LOOPS[name]


REFERENCE = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "sin": np.sin, "cos": np.cos,
             "tanh": np.tanh, "sqrt": np.sqrt}
#: the largest error each function may have, in ulps of the correctly rounded result (its docstring's bound)
BOUND = {"exp": 1.1, "expm1": 1.2, "log": 1.0, "log1p": 1.0, "sin": 0.8, "cos": 0.8, "tanh": 1.7, "sqrt": 0.5}
#: per function, intervals sampled uniformly: the whole domain, the reduced range, the edges
RANGES = {
    "exp": [(-745.2, 709.79), (-1.0, 1.0), (-1e-8, 1e-8), (700.0, 709.78), (-745.2, -700.0), (-0.35, 0.35)],
    "expm1": [(-1.0, 1.0), (-1e-8, 1e-8), (-0.35, 0.35), (0.3, 0.8), (-0.8, -0.3), (-60.0, 60.0),
              (680.0, 709.78), (-745.0, 709.78)],
    "log": [(0.0, 1e-300), (0.0, 2.0), (0.7, 1.45), (1.0, 1e300), (1 - 1e-6, 1 + 1e-6), (0.0, 1e-310)],
    "log1p": [(-1.0, 1.0), (-1e-9, 1e-9), (-1.0, -0.99), (1.0, 1e300), (-0.3, 0.5), (0.9, 1.1)],
    "sin": [(-10.0, 10.0), (-1048575.0, 1048575.0), (-1e-6, 1e-6), (3.14, 3.15), (-0.8, 0.8)],
    "cos": [(-10.0, 10.0), (-1048575.0, 1048575.0), (1.57, 1.58), (-0.8, 0.8)],
    "tanh": [(-1.0, 1.0), (0.5, 0.6), (-20.0, 20.0), (-1e-5, 1e-5), (18.0, 40.0), (-0.2, 0.2)],
    "sqrt": [(0.0, 1e-300), (0.0, 4.0), (1.0, 1e300)],
}
CASES = [(name, lo, hi) for name, rs in RANGES.items() for lo, hi in rs]


def _ulp_error(got: np.ndarray, x: np.ndarray, name: str) -> np.ndarray:
    """|got - f(x)| in ulps of the float64 result, f computed in long double; 0 where both are the same
    non-finite value."""
    with np.errstate(all="ignore"):
        ref = REFERENCE[name](x.astype(np.longdouble))
        r64 = ref.astype(np.float64)
    finite = np.isfinite(r64)
    err = np.zeros(x.shape, np.longdouble)
    spacing = np.spacing(np.abs(r64[finite])).astype(np.longdouble)
    err[finite] = np.abs(got[finite].astype(np.longdouble) - ref[finite]) / spacing
    same = (got[~finite] == r64[~finite]) | (np.isnan(got[~finite]) & np.isnan(r64[~finite]))
    err[~finite] = np.where(same, 0, np.inf)
    return err


@pytest.mark.parametrize("name,lo,hi", CASES, ids=[f"{n}[{lo:g},{hi:g}]" for n, lo, hi in CASES])
def test_ulp_error_against_long_double(name, lo, hi):
    # a seed of the case's own (Python's str hash changes per process: the points, and the worst error, did)
    x = np.random.default_rng(zlib.crc32(f"{name} {lo!r} {hi!r}".encode())).uniform(lo, hi, 500_000)
    err = _ulp_error(_loop(name)(x), x, name)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[name], f"{name}({x[worst]!r}) is {float(err[worst]):.3f} ulp off"
    assert np.mean(err) < 0.4  # typical errors are a correctly rounded result's 0.25 ulp


@pytest.mark.parametrize("name", sorted(vforms.RANGED))
def test_ulp_error_next_to_multiples_of_half_pi(name):
    """Where x - q pi/2 cancels to a few ulps of x, the reduction must still carry r's every bit."""
    k = np.arange(1, 667_000, 7, dtype=np.float64)
    near = k * (np.pi / 2)
    x = np.concatenate([np.nextafter(near, np.inf), near, np.nextafter(near, -np.inf)])
    x = x[np.abs(x) < vmath.TRIG_BOUND]
    err = _ulp_error(_loop(name)(x), x, name)
    worst = int(np.argmax(err))
    assert err[worst] <= BOUND[name], f"{name}({x[worst]!r}) is {float(err[worst]):.3f} ulp off"


def _libm(name: str, x: float) -> float:
    """``math``'s value, with numpy's answers where ``math`` raises (a domain error, an overflow)."""
    try:
        return getattr(math, name)(x)
    except (ValueError, OverflowError):
        with np.errstate(all="ignore"):
            return float(REFERENCE[name](np.float64(x)))


def _ulps_apart(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """How many float64 steps lie between a and b (0 for equal values, NaN with NaN included)."""
    def ordered(v):  # the bits as integers that count float64 steps from +0 (-0 and +0 both 0)
        bits = np.ascontiguousarray(v, np.float64).view(np.int64)
        return np.where(bits < 0, np.int64(-(2**63)) - bits, bits)
    both_nan = np.isnan(a) & np.isnan(b)
    with np.errstate(over="ignore"):
        steps = np.abs(ordered(a) - ordered(b)).astype(np.float64)
    return np.where(both_nan, 0.0, steps)


@pytest.mark.parametrize("name", sorted(vforms.NAMES))
def test_close_to_math_and_numpy(name):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(lo, hi, 2_000) for lo, hi in RANGES[name]])
    got = _loop(name)(x)
    want = np.array([_libm(name, float(v)) for v in x])
    assert np.max(_ulps_apart(got, want)) <= 2
    with np.errstate(all="ignore"):
        assert np.max(_ulps_apart(got, REFERENCE[name](x))) <= 3  # numpy's own SIMD loops err by up to ~1 ulp


TINY = 5e-324
SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, TINY, -TINY, 2.2250738585072014e-308, 1e-310, -1e-310,
           1.0, -1.0, 0.5, 2.0, 1e-300, 1e300, -1e300, 1.7976931348623157e308, -1.7976931348623157e308,
           709.782712893384, 709.7827128933841, 710.0, -708.3964185322641, -708.4, -745.1332191019411,
           -745.1332191019412, -746.0, 0.55, -0.55, 0.5493061443340549, 19.0, 20.0, 40.0, -1e-20, 1e-20,
           math.pi, -math.pi, math.pi / 2, math.pi / 4, 3 * math.pi / 4, 1e5 * math.pi, 1048575.0, -1048575.9,
           0.9999999999999999, 1.0000000000000002, -0.9999999999999999, 7.450580596923828e-09, 3.725e-09]


@pytest.mark.parametrize("name", sorted(vforms.NAMES))
def test_special_values_exactly_as_math(name):
    """Zeros keep their sign, infinities and NaN map as libm maps them, thresholds fall on the right side."""
    xs = np.array([v for v in SPECIAL if not (name in vforms.RANGED and abs(v) >= vmath.TRIG_BOUND
                                              and math.isfinite(v))])
    got = _loop(name)(xs)
    for x, g in zip(xs, got):
        want = _libm(name, float(x))
        if math.isnan(want) or math.isinf(want) or want == 0.0 or abs(want) < 2.2250738585072014e-308:
            assert (math.isnan(g) and math.isnan(want)) or (g == want and math.copysign(1, g) == math.copysign(
                1, want)), f"{name}({x!r}) = {g!r}, libm {want!r}"
        else:
            assert _ulps_apart(np.array([g]), np.array([want]))[0] <= 2, f"{name}({x!r}) = {g!r}, libm {want!r}"


@pytest.mark.parametrize("name", sorted(vforms.NAMES))
def test_python_meaning_equals_the_compiled_loop(name):
    """The functions are plain Python too (fma by exact rationals, bit casts by struct): the same bits."""
    rng = np.random.default_rng(11)
    x = np.concatenate([rng.uniform(lo, hi, 40) for lo, hi in RANGES[name]] + [np.array(SPECIAL)])
    got = _loop(name)(x)
    py = np.array([vmath.FUNCTIONS[name](float(v)) for v in x])
    assert np.array_equal(got.view(np.int64), py.view(np.int64)) or np.array_equal(got, py, equal_nan=True)


def test_fma_rounds_once():
    a, b = 1.0 + 2.0**-30, 1.0 - 2.0**-30  # a * b = 1 - 2**-60: lost by a product, kept by an fma
    assert vmath.fma(a, b, -1.0) == -(2.0**-60)
    assert a * b - 1.0 == 0.0
    assert vmath.fma(0.0, -1.0, -0.0) == 0.0 and math.copysign(1, vmath.fma(0.0, -1.0, -0.0)) < 0
    assert vmath.fma(1e308, 10.0, 0.0) == math.inf


@numba.njit(error_model="numpy")
def _fma_loop(a, b, c):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        out[i] = vmath.fma(a[i], b[i], c[i])
    return out


def test_compiled_fma_equals_exact_rounding():
    rng = np.random.default_rng(5)
    a, b, c = (rng.standard_normal(300) * 10.0 ** rng.integers(-5, 5, 300) for _ in range(3))
    got = _fma_loop(a, b, c)
    assert [float(g) for g in got] == [vmath.fma(float(x), float(y), float(z)) for x, y, z in zip(a, b, c)]


def test_far_flags_finite_arguments_past_the_bound():
    assert [vmath.far(v) for v in (0.0, 1048575.0, 1048576.0, -3e9, math.inf, -math.inf, math.nan)] == \
        [0, 0, 1, 1, 0, 0, 0]
    assert math.isnan(vmath.sin(2e6)) and math.isnan(vmath.cos(-2e6))  # no answer rather than a wrong one


def _has_avx2() -> bool:
    from llvmlite import binding
    return bool(binding.get_host_cpu_features().get("avx2"))


@pytest.mark.skipif(not _has_avx2(), reason="needs a CPU with AVX2")
@pytest.mark.parametrize("name", sorted(vforms.NAMES))
def test_loop_vectorises(name):
    loop = _loop(name)
    loop(np.ones(4))
    asm = loop.inspect_asm(loop.signatures[0])
    assert re.search(r"\b(vfmadd\w*pd|vmulpd|vsqrtpd)\s[^\n]*%[yz]mm", asm), "no packed ymm/zmm arithmetic"
    assert not re.search(r"call\w*\s+\S*(sin|cos|exp|log|tanh)", asm)


def _chain(x):
    y = T.tanh(T.sin(x) * T.exp(-(x * x)) + x)
    c = T.cos(x)
    return T.log1p(y * y) + T.sqrt(c * c + 1.0)


def test_fused_chain_is_one_kernel_equal_to_the_numpy_linker():
    x = T.var("x", (1000,))
    out = _chain(x)
    (g,) = grad(T.sum(out), [x])
    f = function([x], [out, g], linker="numba")
    kernels = re.findall(r"^def kernel\(", f.source, re.M)
    assert len(kernels) == 1, f.source
    for name in ("sin", "exp", "tanh", "log1p", "cos", "sqrt"):
        assert f"vmath_{name}(" in f.source
    xv = np.random.default_rng(2).uniform(-3, 3, 1000)
    got = f(xv)
    want = function([x], [out, g])(xv)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def test_gradient_through_the_kernel_matches_finite_differences():
    x = T.var("x", (64,))
    (g,) = grad(T.sum(_chain(x)), [x])
    grad_fn = function([x], [g], linker="numba")
    value_fn = function([x], [_chain(x)], linker="numba")
    xv = np.random.default_rng(3).uniform(-2, 2, 64)
    h = 1e-6
    fd = (value_fn(xv + h)[0] - value_fn(xv - h)[0]) / (2 * h)  # elementwise: one column per element
    np.testing.assert_allclose(grad_fn(xv)[0], fd, rtol=1e-6, atol=1e-8)


def test_a_sine_past_the_bound_reruns_the_loop_on_libm():
    x = T.var("x", (100,))
    out = T.sin(x) * T.cos(x) + T.exp(x * 0.0)
    f = function([x], [out], linker="numba")
    assert "vmath_sin(" in f.source and "if far:" in f.source
    xv = np.linspace(-4.0, 4.0, 100)
    np.testing.assert_allclose(f(xv)[0], np.sin(xv) * np.cos(xv) + 1.0, rtol=1e-12)
    xv[[3, 50, 97]] = [3e6, -1e15, 1e300]
    np.testing.assert_allclose(f(xv)[0], np.sin(xv) * np.cos(xv) + 1.0, rtol=1e-12)


def test_scalar_kernels_keep_libm():
    x = T.var("x", ())
    f = function([x], [T.exp(T.sin(x)) * T.tanh(x)], linker="numba")
    assert "vmath" not in f.source
    assert float(f(np.float64(0.7))[0]) == pytest.approx(math.exp(math.sin(0.7)) * math.tanh(0.7), rel=1e-15)


def test_small_arrays_loop_like_scalars_on_libm():
    """Under vforms.SMALL elements there is no SIMD lane to fill: libm, and the math ops fuse all the same."""
    x = T.var("x", (vforms.SMALL - 1,))
    f = function([x], [T.exp(T.sin(x)) * T.tanh(x)], linker="numba")
    assert "vmath" not in f.source and "math_tanh(" in f.source and "np_tanh(" not in f.source
    xv = np.linspace(-2, 2, vforms.SMALL - 1)
    np.testing.assert_allclose(f(xv)[0], np.exp(np.sin(xv)) * np.tanh(xv), rtol=1e-14)
    assert vforms.small((7, 9)) and not vforms.small((8, 8)) and not vforms.small((2, None))


def test_forms_that_vectorise():
    assert vforms.vectorises("math.sin({0})") and vforms.vectorises("(1.0 / (1.0 + math.exp(-{0})))")
    assert not vforms.vectorises("math.pow({0}, {1})") and not vforms.vectorises("math.sin(2.0 * {0})")
    assert vforms.ranged_operands("(math.sin({1}) + math.cos({0}))") == [0, 1]
    assert set(vmath.FUNCTIONS) == vforms.NAMES


def test_a_long_chain_runs_in_blocks_one_loop_per_math_call():
    """2-D with a broadcast row, an inner dim past one block and an outer one: same values as numpy."""
    x, b = T.var("x", (3, 700)), T.var("b", (700,))
    y = T.tanh(T.exp(-T.square(T.sin(x + b))) * x)
    out = T.log1p(y * y) + T.cos(y)
    (g,) = grad(T.sum(out), [x])
    f = function([x, b], [out, g], linker="numba")
    assert "for s in range(0, " in f.source and len(re.findall(r"^def kernel\(", f.source, re.M)) == 1
    rng = np.random.default_rng(8)
    args = [rng.uniform(-2, 2, (3, 700)), rng.uniform(-1, 1, 700)]
    for a, w in zip(f(*args), function([x, b], [out, g])(*args)):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-300)
    args[0][1, 450] = 5e6  # a sine past the bound: the whole kernel again on libm
    for a, w in zip(f(*args), function([x, b], [out, g])(*args)):
        np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-300)
