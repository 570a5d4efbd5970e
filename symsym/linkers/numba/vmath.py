"""Branch-free float64 math that LLVM's loop vectoriser can turn into SIMD code.

numba compiles ``math.exp`` and friends to one scalar libm call per element
(this project's llvmlite has no SVML), which no loop vectoriser can widen: a
fused loop through ``tanh`` ran at 28 ns an element against numpy's SIMD
2 ns. The functions here compute the same values from fused multiply-adds,
integer arithmetic on the exponent bits and selects only (no calls, no
loops, no data-dependent branches in the common case), so a loop that calls
them vectorises like one of plain arithmetic (AVX-512 or AVX2 where the CPU
has it; :func:`wide` asks LLVM for 512-bit vectors). The numba linker binds
them in place of ``math.*`` inside its array loops (:mod:`.loops`); 0-d
kernels and small arrays keep libm, whose latency is lower.

Each function is a plain Python function with a numba overload of itself
(``register_jitable``): called from Python it computes the very same
operations on Python floats (its helpers :func:`fma`, :func:`_bits` and
:func:`_float` have pure-Python meanings), so tests can check one element in
Python against the compiled loop bit for bit, and the compiled loop against
a long-double reference on millions of points (``tests/test_numba_vmath.py``).

Polynomials are Taylor series, truncated where the first omitted term is
below 2^-57 of the result on the reduced range, so their coefficients are
exact rationals rounded once (no fitted constants to trust) and the error
bound of each function is the rounding of its last few operations, stated in
its docstring and measured by the tests against ``np.longdouble``.
"""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic, overload, register_jitable

from .vforms import NAMES, RANGED, VERSION

__all__ = ["FUNCTIONS", "NAMES", "RANGED", "TRIG_BOUND", "VERSION", "cos", "exp", "expm1", "far", "fma", "log",
           "log1p", "sin", "sqrt", "tanh", "wide"]


def _jitable(fn):
    """``fn`` callable from numba code as well, with numpy's error model: x/0 is inf, never an exception
    (an exception path is a branch out of the loop, which keeps it scalar). Each function marks itself
    ``alwaysinline`` for LLVM (:func:`_inline`): the vectoriser sees one loop body only once the calls are
    inlined, and LLVM's cost model refuses the larger ones (numba's own IR inlining would do it, at minutes
    of compile time for a kernel of fifty calls)."""
    return register_jitable(error_model="numpy")(fn)


# --- three primitives, each a Python function with a one-instruction numba meaning -------------------------

def fma(a: float, b: float, c: float) -> float:
    """a * b + c rounded once (an FMA instruction when compiled): exact rationals in Python."""
    if not (math.isfinite(a) and math.isfinite(b) and math.isfinite(c)):
        return a * b + c
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    if exact == 0:
        return a * b + c  # the zero's sign, as IEEE gives it
    try:
        return float(exact)  # correctly rounded
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _bits(x: float) -> int:
    """The IEEE bits of ``x`` as a signed 64-bit integer."""
    return struct.unpack("<q", struct.pack("<d", x))[0]


def _float(n: int) -> float:
    """The float whose IEEE bits are the 64-bit integer ``n``."""
    return struct.unpack("<d", struct.pack("<q", n))[0]


def _llvm_fma(context, builder, sig, args):
    t = args[0].type
    fn = builder.module.declare_intrinsic("llvm.fma", [t], ir.FunctionType(t, [t, t, t]))
    return builder.call(fn, args)


@intrinsic
def _fma_intrinsic(typingctx, a, b, c):
    return types.float64(types.float64, types.float64, types.float64), _llvm_fma


@intrinsic
def _bits_intrinsic(typingctx, x):
    return types.int64(types.float64), lambda context, builder, sig, args: builder.bitcast(
        args[0], context.get_value_type(types.int64))


@intrinsic
def _float_intrinsic(typingctx, n):
    return types.float64(types.int64), lambda context, builder, sig, args: builder.bitcast(
        args[0], context.get_value_type(types.float64))


def _inline() -> None:
    """Marks the compiled function that calls it ``alwaysinline`` for LLVM; nothing in Python."""


@intrinsic
def _inline_intrinsic(typingctx):
    def codegen(context, builder, sig, args):
        builder.function.attributes.add("alwaysinline")
        return context.get_dummy_value()
    return types.none(), codegen


@overload(_inline, inline="always")  # inlined into the caller, so the attribute lands on the caller
def _inline_overload():
    return lambda: _inline_intrinsic()


def wide() -> None:
    """Asks LLVM to vectorise the calling function's loops with 512-bit registers where the CPU has them
    (it prefers 256 bits on most AVX-512 CPUs); nothing in Python."""


@intrinsic
def _wide_intrinsic(typingctx):
    def codegen(context, builder, sig, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')  # a string attribute llvmlite's
        return context.get_dummy_value()                                   # list of known ones lacks
    return types.none(), codegen


@overload(wide, inline="always")
def _wide_overload():
    return lambda: _wide_intrinsic()


@overload(fma)
def _fma_overload(a, b, c):
    return lambda a, b, c: _fma_intrinsic(float(a), float(b), float(c))


@overload(_bits)
def _bits_overload(x):
    return lambda x: _bits_intrinsic(x)


@overload(_float)
def _float_overload(n):
    return lambda n: _float_intrinsic(n)


def _polynomial(coeffs: tuple):
    """p(x) = sum_k coeffs[k] x**k (lowest power first) by Estrin's scheme: pairs c_2k + c_2k+1 x by FMAs,
    then pairs of those with x**2, x**4, ...: a dependency chain of about log2(n) FMAs instead of Horner's
    n, which matters once a fused loop chains several functions (the out-of-order window then covers
    fewer iterations than the latency needs). Written out as straight-line source with the coefficients as
    literals: numba iterates a tuple with a switch per step, which no vectoriser can widen."""
    lines, terms, power = [], [repr(c) for c in coeffs], "x"
    level = 0
    while len(terms) > 1:
        pairs = [f"fma({terms[k + 1]}, {power}, {terms[k]})" for k in range(0, len(terms) - 1, 2)]
        pairs += terms[len(terms) - len(terms) % 2:]
        terms = [f"p{level}_{j}" for j in range(len(pairs))]
        lines += [f"{t} = {e}" for t, e in zip(terms, pairs)]
        if len(terms) > 1:
            lines.append(f"x{level + 1} = {power} * {power}")
            power = f"x{level + 1}"
        level += 1
    body = "".join(f"    {line}\n" for line in lines)
    scope = {"fma": fma, "_inline": _inline}
    exec(f"def polynomial(x):\n    _inline()\n{body}    return {terms[0]}\n", scope)
    return _jitable(scope["polynomial"])


def _taylor(terms: list[Fraction]):
    """The polynomial of exact rational coefficients (lowest power first), each rounded once to float."""
    return _polynomial(tuple(float(t) for t in terms))


_SHIFT = 6755399441055744.0  # 1.5 * 2**52: x + _SHIFT - _SHIFT rounds x to an integer for |x| < 2**51
_EXP_ONE = 4607182418800017408  # the bits of 1.0
_MANT = (1 << 52) - 1


# --- exp --------------------------------------------------------------------------------------------------

_LN2_HI = 6.93147180369123816490e-01  # ln 2's leading 32 bits: k * _LN2_HI is exact for |k| < 2**21
_LN2_LO = 1.90821492927058770002e-10  # ln 2 - _LN2_HI
_INV_LN2 = 1.44269504088896338700e+00
#: (exp(r) - 1 - r) / r**2 on |r| <= ln2/2 = 1/2! + r/3! + ... + r**11/13!; the first omitted term of
#: exp(r) (r**14/14!) is below 2**-57
_EXP = _taylor([Fraction(1, math.factorial(n)) for n in range(2, 14)])


@_jitable
def _pow2(k):
    """2.0**k for an integer |k| <= 1022, from its exponent bits."""
    _inline()
    return _float((k + 1023) << 52)


@_jitable
def _exp_reduced(x):
    """(k, s) with x = k ln 2 + r, |r| <= ln2/2, and s = expm1(r), for x in [-750, 710] (no NaN).

    r is x - k ln 2 in two parts (the first exact), its rounding error below 2**-54 |r|; s = r + r**2 T(r)
    with T the rest of the Taylor series to r**13 (truncation below 2**-57) by Estrin's scheme, r's own
    term added last so s rounds once against it.
    """
    _inline()
    kf = fma(x, _INV_LN2, _SHIFT) - _SHIFT
    r = fma(-kf, _LN2_LO, fma(-kf, _LN2_HI, x))
    return int(kf), fma(r * r, _EXP(r), r)


@_jitable
def exp(x):
    """e**x within 1.06 ulp (1.052 the worst seen, at x = -683.095, over 5 * 10**7 points; subnormal results
    within ~1 ulp of their spacing).

    Method: exp(x) = 2**k (1 + s) from :func:`_exp_reduced`, scaled as two factors 2**(k//2) 2**(k - k//2)
    (each a normal float), so an overflow or a subnormal result rounds once. x is clamped to [-750, 710]
    first, which keeps k's integer conversion defined and gives inf and 0 past the thresholds; NaN passes.
    """
    _inline()
    xc = 710.0 if x > 710.0 else x
    xc = -750.0 if xc < -750.0 else xc
    k, s = _exp_reduced(0.0 if xc != xc else xc)
    half = k >> 1
    y = (1.0 + s) * _pow2(half) * _pow2(k - half)
    return x if x != x else y


@_jitable
def _expm1_core(x):
    """expm1(x) for x in [-50, 40] (no NaN): 2**k (1 + expm1(r)) - 1 with r = r_hi + r_lo a double-double,
    as (2**k - 1 + 2**k r_hi) + 2**k (r_hi**2 T(r_hi) + r_lo (1 + r_hi)) where the first sum is kept
    exactly (a two-sum; 2**k - 1 and 2**k r_hi are exact for k <= 53) and the small terms are added to
    its error: one rounding that counts. Rounding s = expm1(r) to one float first, as :func:`exp` may,
    would cost up to 2 ulp here: the -1 cancels up to half the result."""
    _inline()
    kf = fma(x, _INV_LN2, _SHIFT) - _SHIFT
    t = fma(-kf, _LN2_HI, x)
    r = fma(-kf, _LN2_LO, t)
    r_lo = fma(-kf, _LN2_LO, t - r)
    p = _pow2(int(kf))
    a, b = p * r, p - 1.0  # both exact
    h = a + b
    back = h - a
    err = (a - (h - back)) + (b - back)  # a + b = h + err exactly (Knuth's two-sum)
    return h + fma(p, fma(r * r, _EXP(r), r_lo * (1.0 + r)), err)


@_jitable
def expm1(x):
    """e**x - 1 within 1.15 ulp (measured on 10**7 points), exact near 0 where exp(x) - 1 would cancel.

    Method: :func:`_expm1_core` below x = 40; past it the -1 is below 2**-57 of the result and
    :func:`exp` gives it. x is clamped to [-50, 710] (expm1 is -1 to the last bit below -38); +-0 and
    NaN pass.
    """
    _inline()
    xc = 710.0 if x > 710.0 else x
    xc = -50.0 if xc < -50.0 else xc
    xc = 0.0 if xc != xc else xc
    y = _expm1_core(xc if xc < 40.0 else 0.0)
    y = y if xc < 40.0 else exp(xc)  # -1 is below 2**-57 of the result there
    y = x if x == 0.0 else y
    return x if x != x else y


# --- log, log1p -------------------------------------------------------------------------------------------

_SQRT2 = 1.4142135623730951
#: R(z) = sum_{n>=1} 2 z**n / (2n + 1), with z = s**2 <= 0.0295: 2 atanh(s) = 2s + s R(z); to z**11
_LOG = _taylor([Fraction(2, 2 * n + 1) for n in range(1, 12)])


@_jitable
def _log_core(u, c):
    """log(u) + c for a finite u > 0 and a small correction c (fdlibm's arrangement).

    u = 2**e m with m in [sqrt(2)/2, sqrt(2)), f = m - 1 (exact), s = f / (2 + f), and
    log(m) = f - (f**2/2 - s (f**2/2 + R(s**2))) with R the atanh series; e ln 2 in two parts.
    """
    _inline()
    tiny = u < 2.2250738585072014e-308
    us = u * 18014398509481984.0 if tiny else u  # 2**54: a subnormal u becomes normal
    bits = _bits(us)
    e = (bits >> 52) - (1023 + 54 if tiny else 1023)
    m = _float((bits & _MANT) | _EXP_ONE)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    r = z * _LOG(z)
    hfsq = 0.5 * f * f
    dk = float(e)
    return dk * _LN2_HI - ((hfsq - (s * (hfsq + r) + (dk * _LN2_LO + c))) - f)


@_jitable
def log(x):
    """The natural log within 0.85 ulp (measured on 10**7 points).

    Method: fdlibm's: x = 2**e m with m in [sqrt(2)/2, sqrt(2)) from the exponent bits (a
    subnormal x scaled by 2**54 first), f = m - 1 exact, s = f / (2 + f) (|s| <= 0.172),
    log(1 + f) = f - (f**2/2 - s (f**2/2 + R)) where R is the series of 2 atanh(s) / s - 2 to
    s**22 (truncation below 2**-70 of the result), plus e ln 2 in two parts. Only the last few
    roundings count: below 1 ulp. log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN passes.
    """
    _inline()
    ok = x > 0.0 and x < math.inf
    y = _log_core(x if ok else 1.0, 0.0)
    if ok:  # a select all the same; written as a return, LLVM's 512-bit code for it runs 3x faster
        return y
    return -math.inf if x == 0.0 else (math.nan if x < 0.0 else x + x)  # 0, < 0, inf and NaN


@_jitable
def log1p(x):
    """log(1 + x) within 0.85 ulp (measured on 10**7 points), x itself for tiny x.

    Method: u = 1 + x rounded, c = the rounding error's negative (1 - (u - x) for x >= 1, else
    x - (u - 1); both exact by Sterbenz), then log(u) + c/u by :func:`log`'s core. For
    |x| < 2**-54 this returns x itself (u = 1, c = x). log1p(-1) = -inf, log1p(x < -1) = NaN,
    log1p(+-0) = +-0, log1p(inf) = inf, NaN passes.
    """
    _inline()
    ok = x > -1.0 and x < math.inf
    xs = x if ok else 0.0
    u = 1.0 + xs
    c = 1.0 - (u - xs) if xs >= 1.0 else xs - (u - 1.0)
    y = _log_core(u, c / u)
    y = y if ok else (-math.inf if x == -1.0 else (x if x == math.inf else math.nan))
    y = x if x == 0.0 else y
    return x if x != x else y


# --- sin, cos ---------------------------------------------------------------------------------------------

_INV_PIO2 = 6.36619772367581382433e-01
# pi/2 as four parts (fdlibm's): the first three 33 bits each, so q * part is exact for |q| < 2**20
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_3 = 2.02226624871116645580e-21
_PIO2_3T = 8.47842766036889956997e-32
#: past this |x| the three-part reduction is not exact (q * part no longer exact): see :func:`far`
TRIG_BOUND = 1048576.0
_S1 = -1.0 / 6.0
#: (sin(r) - r + r**3/6) / r**5 = sum_{n>=2} (-1)**n r**(2n-4) / (2n+1)!, over z = r**2, to r**17: on
#: |r| <= pi/4 the first omitted term, r**19/19!, is below 2**-62 of sin(r)
_SIN = _taylor([Fraction((-1) ** n, math.factorial(2 * n + 1)) for n in range(2, 9)])
#: (cos(r) - 1 + r**2/2) / r**4 = sum_{n>=2} (-1)**n r**(2n-4) / (2n)!, over z, to r**16 (the first
#: omitted term, r**18/18!, is below 2**-58 of cos(r) >= 0.7)
_COS = _taylor([Fraction((-1) ** n, math.factorial(2 * n)) for n in range(2, 9)])


@_jitable
def _two_sum(a, b):
    """(s, e) with s = a + b rounded and a + b = s + e exactly (Knuth: no condition on the magnitudes)."""
    _inline()
    s = a + b
    back = s - a
    return s, (a - (s - back)) + (b - back)


@_jitable
def _reduce(x):
    """(q, hi, lo): x = q pi/2 + hi + lo with |hi| <= pi/4 + tiny, for |x| < TRIG_BOUND.

    Cody-Waite against pi/2 in three 33-bit parts and a tail: q * part is exact for |q| < 2**20, the
    first subtraction is exact (Sterbenz), the next two are two-sums whose errors join the tail, so
    hi + lo carries x - q pi/2 to ~2**-100 of x even where it cancels to 2**-60 of x (the worst case
    for doubles). (fdlibm's sequence, which overwrites a step's error with the next step, holds only
    when each step cancels, which its branches check; here every step always runs.)
    """
    _inline()
    qf = fma(x, _INV_PIO2, _SHIFT) - _SHIFT
    r, e2 = _two_sum(x - qf * _PIO2_1, -(qf * _PIO2_2))
    r, e3 = _two_sum(r, -(qf * _PIO2_3))
    tail = (e2 + e3) - qf * _PIO2_3T
    hi = r + tail
    return int(qf), hi, tail - (hi - r)


@_jitable
def _sin_kernel(x, y):
    """sin(x + y) for |x| <= pi/4 + tiny, |y| <= ulp(x) (fdlibm's __kernel_sin arrangement)."""
    _inline()
    z = x * x
    v = z * x
    r = _SIN(z)
    return x - ((z * (0.5 * y - v * r) - y) - v * _S1)


@_jitable
def _cos_kernel(x, y):
    """cos(x + y) for |x| <= pi/4 + tiny (fdlibm's __kernel_cos arrangement)."""
    _inline()
    z = x * x
    r = z * z * _COS(z)
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (r - x * y))


@_jitable
def _trig(x, shift):
    """sin(x) (shift 0) or cos(x) (shift 1) for |x| < TRIG_BOUND: quadrant (q + shift) mod 4 picks
    +-sin or +-cos of the reduced argument."""
    _inline()
    q, hi, lo = _reduce(x)
    s = _sin_kernel(hi, lo)
    c = _cos_kernel(hi, lo)
    n = (q + shift) & 3
    y = c if (n & 1) == 1 else s
    return -y if n >= 2 else y


@_jitable
def sin(x):
    """sin(x) within 0.8 ulp (measured on 10**7 points) for |x| < TRIG_BOUND (2**20); NaN for a finite x
    past it (see :func:`far`).

    Method: x = q pi/2 + r with r a double-double from a branch-free Cody-Waite reduction (:func:`_reduce`,
    pi/2 to ~130 bits), exact enough that r keeps its relative accuracy
    even next to a multiple of pi/2; then the Taylor series of sin or cos on |r| <= pi/4 (to r**17
    and r**16: truncation below 2**-58) in fdlibm's kernel arrangement, which folds in r's low part,
    and the quadrant's sign. |x| < 2**-27 gives x itself (sin x rounds to x there; keeps -0 and
    subnormals). inf and NaN give NaN. Past the bound an exact reduction needs Payne-Hanek's many
    bits of 2/pi, which no cheap branch-free code has: a loop that may see such x counts them with
    :func:`far` and recomputes with libm when any was seen.
    """
    _inline()
    a = abs(x)
    ok = a < TRIG_BOUND
    y = _trig(x if ok else 0.0, 0)
    y = x if a < 7.450580596923828e-09 else y
    return y if ok else x - x + math.nan


@_jitable
def cos(x):
    """cos(x) within 0.8 ulp for |x| < TRIG_BOUND: :func:`sin`'s method, the quadrant shifted by one.
    cos(+-0) = 1; inf and NaN give NaN; NaN for a finite x past the bound (see :func:`far`)."""
    _inline()
    ok = abs(x) < TRIG_BOUND
    y = _trig(x if ok else 0.0, 1)
    return y if ok else x - x + math.nan


@_jitable
def far(x):
    """1 where :func:`sin` and :func:`cos` give no answer for ``x`` (a finite |x| >= TRIG_BOUND), else 0:
    a loop sums it (a vectorisable reduction) and, when nonzero, recomputes with libm."""
    _inline()
    a = abs(x)
    return 1 if a >= TRIG_BOUND and a < math.inf else 0


# --- tanh -------------------------------------------------------------------------------------------------

@_jitable
def tanh(x):
    """tanh(x) within 1.7 ulp (measured on 10**7 points: 1.62).

    Method: a = |x|, t = expm1(2a) (:func:`_expm1_core`; 2a clamped to 40, where tanh is 1 to the last
    bit), tanh(a) = t / (t + 2) with t + 2 kept exactly as a two-sum and the quotient corrected by its
    residual (one division, three FMAs): only t's error (half an ulp for a < 0.17, below 1.3 ulp past
    it, scaled by 2 / (t + 2) <= 1) and the last rounding remain. For tiny a, t = 2a and the result is a.
    The sign is copied back (tanh(-0) = -0); NaN passes.
    """
    _inline()
    a = abs(x)
    t = _expm1_core(a + a if a < 20.0 else 40.0)
    d = t + 2.0
    back = d - t
    d_lo = (t - (d - back)) + (2.0 - back)  # t + 2 = d + d_lo exactly (Knuth's two-sum)
    inv = 1.0 / d
    q = t * inv
    y = math.copysign(fma(fma(-q, d, t) - q * d_lo, inv, q), x)  # q corrected by its residual
    return x if x != x else y


@_jitable
def sqrt(x):
    """The square root, correctly rounded: numba's ``math.sqrt`` is already LLVM's sqrt instruction,
    which vectorises; named here so the linker's list of vector-safe functions is one table."""
    _inline()
    return math.sqrt(x) if x >= 0.0 else math.nan  # the condition is Python's: numba's sqrt gives NaN there


#: the ``math`` functions that have a vectorisable form here, by name (the names are :mod:`.vforms`'s)
FUNCTIONS = {name: globals()[name] for name in sorted(NAMES)}
