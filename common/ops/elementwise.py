"""Elementwise ops: numpy ufuncs with numpy broadcasting.

Each op is one paragraph: type rule, numpy impl, one VJP rule per input and
one JVP rule. The VJP rules undo broadcasting with :func:`unbroadcast` (the
shared ``sum_to``). A unary op's Jacobian is diagonal, hence symmetric, so its
JVP rule is its VJP rule run on the tangent (:func:`jvp_self_adjoint`); a
binary op that is not linear gives each input's local derivative once
(:func:`binary_rules`), from which both its VJP rules and its JVP rule are made.
Non-differentiable points follow PyTorch: abs'(0) = 0, relu'(0) = 0, a tie in
maximum/minimum splits the cotangent 0.5/0.5, sqrt'(0) = inf.
"""

from __future__ import annotations

import numpy as np
import scipy.special

from ..errors import DTypeError
from .params import dtype_name, dtype_param
from .rules import expand_to, jvp_linear_together, jvp_product, jvp_self_adjoint, jvp_zero, unbroadcast
from .shapes import broadcast_shapes, float_dtype, numeric_dtype, result_dtype
from .table import NO_GRAD, OPS, ZERO, defop
from .traits import Kind


def same(x):
    return x.shape, numeric_dtype(x.dtype)


def floating(x):
    return x.shape, float_dtype(x.dtype)


def binary(x, y):
    return broadcast_shapes(x.shape, y.shape), result_dtype(x, y)


def binary_float(x, y):
    return broadcast_shapes(x.shape, y.shape), float_dtype(result_dtype(x, y))


def compare(x, y):
    return broadcast_shapes(x.shape, y.shape), np.dtype(bool)


def _mask(ns, cond, like):
    """A 0/1 array of ``like``'s dtype from a boolean condition."""
    return ns.cast(cond, like.dtype)


ELEMENTWISE = Kind.ELEMENTWISE


def elementwise_unary(name, infer, impl, vjp, doc, **traits):
    """An elementwise op of one input: its JVP rule is its VJP rule (a diagonal Jacobian is its own transpose)."""
    return defop(name, infer, impl, vjp, jvp=jvp_self_adjoint(vjp), kind=ELEMENTWISE, doc=doc, **traits)


def unary(name, ufunc, vjp, doc, **traits):
    """An elementwise op that is one float-valued numpy ufunc of one input: its whole paragraph.

    Its scalar form is the ``math`` module's function of the same name (numpy's ``arcsin`` is
    ``math.asin``): each agrees with the ufunc on float64, NaN, inf and signed zeros.
    """
    fn = {"arcsin": "asin", "arccos": "acos", "arctan": "atan", "arcsinh": "asinh", "arccosh": "acosh",
          "arctanh": "atanh"}.get(name, name)
    return elementwise_unary(name, floating, ufunc, vjp, doc, ufunc=ufunc, scalar=f"math.{fn}({{0}})", **traits)


def binary_rules(d0, d1):
    """VJP rules and the JVP rule of a binary elementwise op from its local derivatives
    ``d_i(ns, out, x, y)`` (d out / d input i, broadcast against out), written once."""
    def vjp0(ns, g, out, x, y):
        return unbroadcast(ns, g * d0(ns, out, x, y), x)

    def vjp1(ns, g, out, x, y):
        return unbroadcast(ns, g * d1(ns, out, x, y), y)

    def jvp(ns, tangents, out, x, y):
        tx, ty = tangents
        if ty is ZERO:
            return expand_to(ns, tx * d0(ns, out, x, y), out)
        term = ty * d1(ns, out, x, y)
        return expand_to(ns, term if tx is ZERO else tx * d0(ns, out, x, y) + term, out)

    return vjp0, vjp1, jvp


# --- unary -----------------------------------------------------------------

elementwise_unary("neg", same, np.negative, lambda ns, g, out, x: -g, code="(-{0})", ufunc=np.negative, scalar="(-{0})",
                  zero=True, linear=(0,), infix="-", doc="Negation, -x.")
unary("exp", np.exp, lambda ns, g, out, x: g * out, doc="e**x; its derivative reuses the output.")
unary("log", np.log, lambda ns, g, out, x: g / x, doc="Natural log; log'(0) = inf, as numpy's 1/0.")
unary("log1p", np.log1p, lambda ns, g, out, x: g / (x + 1), zero=True, doc="log(1 + x), accurate for small x.")
unary("expm1", np.expm1, lambda ns, g, out, x: g * (out + 1), zero=True, doc="exp(x) - 1, accurate for small x.")
unary("sin", np.sin, lambda ns, g, out, x: g * ns.cos(x), zero=True, doc="Sine; sin' = cos.")
unary("cos", np.cos, lambda ns, g, out, x: -(g * ns.sin(x)), doc="Cosine; cos' = -sin.")
unary("tan", np.tan, lambda ns, g, out, x: g * (out * out + 1), zero=True, doc="Tangent; tan' = 1 + tan**2.")
unary("tanh", np.tanh, lambda ns, g, out, x: g * (1 - out * out), zero=True,
      doc="Hyperbolic tangent; tanh' = 1 - tanh**2.")
unary("sinh", np.sinh, lambda ns, g, out, x: g * ns.cosh(x), zero=True, doc="Hyperbolic sine; sinh' = cosh.")
unary("cosh", np.cosh, lambda ns, g, out, x: g * ns.sinh(x), doc="Hyperbolic cosine; cosh' = sinh.")
unary("arcsin", np.arcsin, lambda ns, g, out, x: g / ns.sqrt(1 - x * x), zero=True,
      doc="Inverse sine on [-1, 1]; arcsin' = 1/sqrt(1 - x**2) (inf at +-1).")
unary("arctan", np.arctan, lambda ns, g, out, x: g / (x * x + 1), zero=True,
      doc="Inverse tangent; arctan' = 1/(1 + x**2).")
unary("arccos", np.arccos, lambda ns, g, out, x: -(g / ns.sqrt(1 - x * x)),
      doc="Inverse cosine on [-1, 1]; arccos' = -1/sqrt(1 - x**2) (-inf at +-1, as PyTorch).")
unary("arcsinh", np.arcsinh, lambda ns, g, out, x: g / ns.sqrt(x * x + 1), zero=True,
      doc="Inverse hyperbolic sine; arcsinh' = 1/sqrt(x**2 + 1).")
unary("arccosh", np.arccosh, lambda ns, g, out, x: g / ns.sqrt(x * x - 1),
      doc="Inverse hyperbolic cosine on [1, inf); arccosh' = 1/sqrt(x**2 - 1) (inf at 1).")
unary("arctanh", np.arctanh, lambda ns, g, out, x: g / (1 - x * x), zero=True,
      doc="Inverse hyperbolic tangent on (-1, 1); arctanh' = 1/(1 - x**2).")

_TWO_OVER_SQRT_PI = 1.1283791670955126


def _erf_rule(sign: float):
    """erf's (sign 1) and erfc's (sign -1) VJP: +-2/sqrt(pi) exp(-x**2)."""
    def vjp(ns, g, out, x):
        d = ns.exp(-(x * x)) * (sign * _TWO_OVER_SQRT_PI)
        return g * d
    return vjp


def _special(fn):
    """scipy's ufunc ``fn`` (numpy has no erf) as a plain function giving numpy's float dtype for the input.

    Not declared as the op's ``ufunc``: generated code names ufuncs as ``np.<name>``, and these live in
    scipy.special. The scalar forms are libm's erf/erfc, which agree with scipy's to an ulp or two.
    """
    def impl(x):
        return np.asarray(fn(x)).astype(float_dtype(np.result_type(x)), copy=False)
    impl.__name__ = fn.__name__
    return impl


elementwise_unary("erf", floating, _special(scipy.special.erf), _erf_rule(1.0), scalar="math.erf({0})", zero=True,
                  fresh=True,
                  doc="The error function 2/sqrt(pi) int_0^x exp(-t**2) dt (GELU's); erf' = 2/sqrt(pi) exp(-x**2).")
elementwise_unary("erfc", floating, _special(scipy.special.erfc), _erf_rule(-1.0), scalar="math.erfc({0})",
                  fresh=True,
                  doc="1 - erf(x), accurate where erf(x) is near 1; erfc' = -2/sqrt(pi) exp(-x**2).")


def _sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.result_type(x, np.float16), copy=False)


elementwise_unary("sigmoid", floating, _sigmoid, lambda ns, g, out, x: g * (out * (1 - out)),
                  scalar="(1.0 / (1.0 + math.exp(-{0})) if {0} >= 0.0 else math.exp({0}) / (1.0 + math.exp({0})))",
                  doc="Logistic 1/(1+exp(-x)), computed without overflow for any x.")
elementwise_unary("relu", same, lambda x: np.maximum(x, 0).astype(x.dtype, copy=False),
                  lambda ns, g, out, x: g * _mask(ns, ns.gt(x, 0), g), zero=True,
                  scalar="({0} if {0} > 0.0 or {0} != {0} else 0.0)",
                  doc="max(x, 0). Convention (PyTorch): relu'(0) = 0.")
#: numpy's logaddexp(0, x) branch for branch (log 2 at 0, NaN through)
_SOFTPLUS = ("(0.6931471805599453 if {0} == 0.0 else (math.log1p(math.exp({0})) if {0} < 0.0 else "
             "({0} + math.log1p(math.exp(-{0})) if {0} > 0.0 else {0})))")
elementwise_unary("softplus", floating, lambda x: np.logaddexp(np.zeros((), np.result_type(x, np.float16)), x),
                  lambda ns, g, out, x: g * ns.sigmoid(x), scalar=_SOFTPLUS,
                  doc="log(1 + exp(x)), stable for large |x|; softplus' = sigmoid.")
unary("sqrt", np.sqrt, lambda ns, g, out, x: g / (out * 2), zero=True,
      doc="Square root. Convention (PyTorch): sqrt'(0) = inf.")
elementwise_unary("square", same, np.square, lambda ns, g, out, x: g * (x * 2), ufunc=np.square, zero=True,
                  scalar="({0} * {0})", doc="x * x; square' = 2x.")
elementwise_unary("abs", same, np.abs, lambda ns, g, out, x: g * ns.sign(x), code="np.abs({0})",
                  ufunc=np.absolute, zero=True, scalar="abs({0})",
                  doc="|x|. Convention (PyTorch): abs'(0) = 0, since sign(0) = 0.")
defop("sign", same, np.sign, None, jvp=jvp_zero, kind=ELEMENTWISE, ufunc=np.sign, zero=True,
      scalar="(1.0 if {0} > 0.0 else (-1.0 if {0} < 0.0 else ({0} if {0} != {0} else 0.0)))",
      doc="-1, 0 or 1. Piecewise constant: no gradient (or tangent) flows through it.")


def _cast_bind(x, dtype):
    return (x,), {"dtype": dtype_param(dtype)}


def _cast_infer(x, dtype):
    return x.shape, np.dtype(dtype_name(dtype))


def _cast_vjp(ns, g, out, x, dtype):
    if np.dtype(x.dtype).kind != "f":
        return NO_GRAD
    return ns.cast(g, x.dtype)


def _cast_jvp(ns, tangents, out, x, dtype):
    if np.dtype(x.dtype).kind != "f" or np.dtype(dtype_name(dtype)).kind != "f":
        return ZERO
    return ns.apply(OPS["cast"], (tangents[0],), {"dtype": dtype})


defop("cast", _cast_infer, lambda x, dtype: np.asarray(x).astype(dtype, copy=False), _cast_vjp, jvp=_cast_jvp,
      bind=_cast_bind, code="np.asarray({0}).astype({dtype!r}, copy=False)", kind=ELEMENTWISE, zero=True,
      noop_on_same_type=True, doc="Convert to another dtype; the gradient is cast back. Integer inputs get none.")


def _stop_gradient_impl(x):
    return x


defop("stop_gradient", same, _stop_gradient_impl, None, jvp=jvp_zero, code="{0}", scalar="{0}", kind=ELEMENTWISE,
      zero=True,
      linear=(0,),
      doc="Identity whose gradient is cut: what flows through it is a constant.")

# --- binary ----------------------------------------------------------------

def _sum_jvp(ns, tangents, out, sign: float):
    """add's (sign 1) and sub's (sign -1) JVP: tx + sign * ty, the missing one skipped."""
    tx, ty = tangents
    if ty is not ZERO:
        ty = ty if sign > 0 else -ty
        if tx is not ZERO:
            return tx + ty
        tx = ty
    return expand_to(ns, tx, out)


def _div_jvp(ns, tangents, out, x, y):
    """d(x/y) = (tx - out * ty) / y."""
    tx, ty = tangents
    if ty is ZERO:
        return tx / y
    return (-(ty * out) if tx is ZERO else tx - ty * out) / y


defop("add", binary, np.add,
      lambda ns, g, out, x, y: unbroadcast(ns, g, x),
      lambda ns, g, out, x, y: unbroadcast(ns, g, y), jvp=lambda ns, ts, out, x, y: _sum_jvp(ns, ts, out, 1.0),
      code="({0} + {1})", scalar="({0} + {1})",
      kind=ELEMENTWISE, ufunc=np.add, zero=True, linear_together=True, infix="+", doc="x + y, broadcasting.")
defop("sub", binary, np.subtract,
      lambda ns, g, out, x, y: unbroadcast(ns, g, x),
      lambda ns, g, out, x, y: unbroadcast(ns, -g, y), jvp=lambda ns, ts, out, x, y: _sum_jvp(ns, ts, out, -1.0),
      code="({0} - {1})", scalar="({0} - {1})",
      kind=ELEMENTWISE, ufunc=np.subtract, zero=True, linear_together=True, infix="-", doc="x - y, broadcasting.")
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _mul_vjp(ns, g, x, other):
    """x's cotangent through x * other: g * other summed to x's shape. For a scalar x against an array of
    g's own shape, one contraction (``einsum('ab,ab->')``: one pass, no array-sized temporary) instead of
    a product and its sum: a scale factor's gradient (a kernel's amplitude, a learning-rate-like weight)."""
    if x.ndim == 0 and g.__class__ is other.__class__ and 0 < g.ndim <= len(_LETTERS) and g.shape == other.shape \
            and None not in g.shape and g.dtype == other.dtype:  # (not a batch of cotangents: symnum's vmap)
        letters = _LETTERS[:g.ndim]
        return ns.apply(OPS["einsum"], (g, other), {"spec": f"{letters},{letters}->"})
    return unbroadcast(ns, g * other, x)


defop("mul", binary, np.multiply,
      lambda ns, g, out, x, y: _mul_vjp(ns, g, x, y),
      lambda ns, g, out, x, y: _mul_vjp(ns, g, y, x), jvp=jvp_product("mul"), code="({0} * {1})",
      scalar="({0} * {1})", kind=ELEMENTWISE, ufunc=np.multiply, zero=True, linear=(0, 1), infix="*",
      doc="x * y, broadcasting.")
defop("div", binary_float, np.true_divide,
      lambda ns, g, out, x, y: unbroadcast(ns, g / y, x),
      lambda ns, g, out, x, y: unbroadcast(ns, -(g * out) / y, y), jvp=_div_jvp, code="({0} / {1})",
      scalar="({0} / {1})", kind=ELEMENTWISE, ufunc=np.true_divide, linear=(0,), infix="/",
      doc="x / y (true division), broadcasting.")


def _pow_dy(ns, out, x, y):
    # d/dy x**y = x**y log x; masked to 0 where x == 0 (PyTorch's convention).
    zero = ns.eq(x, 0)
    safe = ns.where(zero, ns.ones_like(x), x)
    return ns.where(zero, 0.0, out * ns.log(safe))


_pow_vjp0, _pow_vjp1, _pow_jvp = binary_rules(lambda ns, out, x, y: y * x ** (y - 1), _pow_dy)
defop("pow", binary, np.power, _pow_vjp0, _pow_vjp1, jvp=_pow_jvp, kind=ELEMENTWISE, ufunc=np.power, infix="**",
      scalar="math.pow({0}, {1})",
      doc="x ** y. d/dy is taken as 0 where x == 0 (PyTorch's convention).")


def _tie_mask(ns, x, y, like, win):
    """1 where x wins, 0.5 on a tie, 0 where y wins: ties split evenly."""
    return _mask(ns, win(x, y), like) + _mask(ns, ns.eq(x, y), like) * 0.5


def _extreme_rules(win):
    """maximum's (win = gt) or minimum's (win = lt) rules: each input's derivative is its tie mask."""
    return binary_rules(lambda ns, out, x, y: _tie_mask(ns, x, y, out, win(ns)),
                        lambda ns, out, x, y: _tie_mask(ns, y, x, out, win(ns)))


_max_vjp0, _max_vjp1, _max_jvp = _extreme_rules(lambda ns: ns.gt)
_min_vjp0, _min_vjp1, _min_jvp = _extreme_rules(lambda ns: ns.lt)
defop("maximum", binary, np.maximum, _max_vjp0, _max_vjp1, jvp=_max_jvp, kind=ELEMENTWISE, ufunc=np.maximum,
      zero=True, scalar="({0} if {0} > {1} or {0} != {0} else {1})",
      doc="Elementwise max. Convention (PyTorch): a tie splits the cotangent 0.5/0.5.")
defop("minimum", binary, np.minimum, _min_vjp0, _min_vjp1, jvp=_min_jvp, kind=ELEMENTWISE, ufunc=np.minimum,
      zero=True, scalar="({0} if {0} < {1} or {0} != {0} else {1})",
      doc="Elementwise min. Convention (PyTorch): a tie splits the cotangent 0.5/0.5.")

for _name, _fn, _sym in [("lt", np.less, "<"), ("le", np.less_equal, "<="), ("gt", np.greater, ">"),
                         ("ge", np.greater_equal, ">="), ("eq", np.equal, "=="), ("ne", np.not_equal, "!=")]:
    defop(_name, compare, _fn, None, None, jvp=jvp_zero, code=f"({{0}} {_sym} {{1}})", kind=ELEMENTWISE,
          scalar=f"({{0}} {_sym} {{1}})",
          zero=not _fn(0, 0), infix=_sym, doc=f"x {_sym} y, a boolean array. Not differentiable: no gradient flows.")


def _where_infer(c, x, y):
    if np.dtype(c.dtype) != np.bool_:
        raise DTypeError(f"condition must be bool, got {c.dtype}")
    return broadcast_shapes(c.shape, x.shape, y.shape), result_dtype(x, y)


def _where_dx(ns, g, out, c, x, y):
    return unbroadcast(ns, ns.where(c, g, ns.zeros_like(g)), x)


def _where_dy(ns, g, out, c, x, y):
    return unbroadcast(ns, ns.where(c, ns.zeros_like(g), g), y)


defop("where", _where_infer, np.where, None, _where_dx, _where_dy, jvp=jvp_linear_together("where"),
      code="np.where({0}, {1}, {2})", scalar="({1} if {0} else {2})",
      kind=ELEMENTWISE, zero=True, linear_together=(1, 2),
      doc="x where the condition holds, else y; the cotangent is routed the same way.")


#: numpy's logaddexp branch for branch: equal operands (infinities too) give x + log 2, NaN passes through
_LOGADDEXP = ("({0} + 0.6931471805599453 if {0} == {1} else ({0} + math.log1p(math.exp({1} - {0})) if {0} > {1} "
              "else ({1} + math.log1p(math.exp({0} - {1})) if {0} < {1} else {0} - {1})))")
_lae_vjp0, _lae_vjp1, _lae_jvp = binary_rules(lambda ns, out, x, y: ns.exp(x - out),
                                              lambda ns, out, x, y: ns.exp(y - out))
defop("logaddexp", binary_float, np.logaddexp, _lae_vjp0, _lae_vjp1, jvp=_lae_jvp, kind=ELEMENTWISE,
      ufunc=np.logaddexp, scalar=_LOGADDEXP,
      doc="log(exp(x) + exp(y)) without overflow; d/dx = exp(x - out), at most 1.")


def _atan2_d(ns, x, y, which):
    """arctan2(x, y)'s derivative in its input ``which``: (y, -x)[which] / (x**2 + y**2)."""
    r2 = x * x + y * y
    return (y / r2) if which == 0 else -(x / r2)


_atan2_vjp0, _atan2_vjp1, _atan2_jvp = binary_rules(lambda ns, out, x, y: _atan2_d(ns, x, y, 0),
                                                    lambda ns, out, x, y: _atan2_d(ns, x, y, 1))
defop("arctan2", binary_float, np.arctan2, _atan2_vjp0, _atan2_vjp1, jvp=_atan2_jvp, kind=ELEMENTWISE,
      ufunc=np.arctan2, scalar="math.atan2({0}, {1})", zero=True,
      doc="The angle of the point (x2, x1), arctan2(x1, x2) in numpy's order: d/dx1 = x2/r**2, "
          "d/dx2 = -x1/r**2 (NaN at the origin, as PyTorch's).")
_hypot_vjp0, _hypot_vjp1, _hypot_jvp = binary_rules(lambda ns, out, x, y: x / out, lambda ns, out, x, y: y / out)
defop("hypot", binary_float, np.hypot, _hypot_vjp0, _hypot_vjp1, jvp=_hypot_jvp, kind=ELEMENTWISE,
      ufunc=np.hypot, scalar="math.hypot({0}, {1})", zero=True,
      doc="sqrt(x**2 + y**2) without overflow; d/dx = x/out (NaN at the origin, as PyTorch's).")


# --- clip --------------------------------------------------------------------

def _clip_bind(x, a_min=None, a_max=None):
    return (x, _bound(x, -np.inf if a_min is None else a_min), _bound(x, np.inf if a_max is None else a_max)), {}


def _bound(x, v):
    """A Python number as a 0-d array of the dtype numpy's weak typing gives it against x (float32 x stays
    float32), so every namespace (numbers included) sees an array; arrays, nodes and tensors pass."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and hasattr(x, "dtype"):
        return np.asarray(v, np.result_type(x.dtype, v))
    return v


def _clip_infer(x, lo, hi):
    return broadcast_shapes(x.shape, lo.shape, hi.shape), result_dtype(x, lo, hi)


def _clip_impl(x, lo, hi):
    return np.minimum(np.maximum(x, lo), hi)


def _clip_masks(ns, out, x, lo, hi):
    """Where each input is passed through (PyTorch's clamp): x inside [lo, hi], bounds included; lo
    where x < lo; hi where x > hi."""
    inside = ns.cast(ns.ge(x, lo), out.dtype) * ns.cast(ns.le(x, hi), out.dtype)
    return inside, ns.cast(ns.lt(x, lo), out.dtype), ns.cast(ns.gt(x, hi), out.dtype)


def _clip_vjp(which):
    def vjp(ns, g, out, x, lo, hi):
        return unbroadcast(ns, g * _clip_masks(ns, out, x, lo, hi)[which], (x, lo, hi)[which])
    return vjp


def _clip_jvp(ns, tangents, out, x, lo, hi):
    masks = _clip_masks(ns, out, x, lo, hi)
    total = ZERO
    for t, m in zip(tangents, masks):
        if t is not ZERO:
            total = t * m if total is ZERO else total + t * m
    return expand_to(ns, total, out)


#: numpy's minimum(maximum(x, lo), hi): the max form of maximum with its result as minimum's first operand
_CLIP_MAX = "({0} if {0} > {1} or {0} != {0} else {1})"
_CLIP = "(_m if _m < {2} or _m != _m else {2})".replace("_m", _CLIP_MAX)
defop("clip", _clip_infer, _clip_impl, _clip_vjp(0), _clip_vjp(1), _clip_vjp(2), jvp=_clip_jvp, bind=_clip_bind,
      kind=ELEMENTWISE, scalar=_CLIP, fresh=True, zero=True, params=(),
      doc="x limited to [a_min, a_max] (numpy's clip: min(max(x, a_min), a_max); None for no bound). "
          "Convention (PyTorch's clamp): at a bound the gradient goes to x (x == a_min or x == a_max counts "
          "as inside), and a bound gets the cotangent only where x is strictly beyond it.")
