"""Matrix functions: solve, solve_triangular, cholesky, inv, det and slogdet's two halves.

Each works on a stack of matrices ``(..., n, n)`` as numpy's ``linalg`` does,
and each derivative is the textbook one, written with the ops themselves so it
can be differentiated again: a solve's cotangents are another solve (with the
transposed matrix) and a product; Cholesky's is Murray's (2016) two triangular
solves, ``A_bar = sym(L^-T Phi(L^T L_bar) L^-1)``. The symmetric
factorisations (cholesky here, eigh in :mod:`common.ops.spectral`) factor
``(a + a^T) / 2``, as JAX's do: the same matrix for a symmetric ``a``, and a
derivative that is the symmetric one (PyTorch's and JAX's) at every input,
so a cotangent is symmetrised and a tangent ``dA`` enters as ``(dA + dA^T) / 2``.

numpy's complaints (a singular or non-positive-definite matrix) are
``numpy.linalg.LinAlgError``s with the op's words, which every evaluator (the
tape, its backward sweep, the reference interpreter, compiled functions on
either linker) turns into a :class:`common.errors.LinAlgError` naming the op,
the shapes and the user's line; it is numpy's class too. A NaN in gives
NaNs out: LAPACK propagates them, and a factorisation that would stop on one
returns NaNs instead.
"""

from __future__ import annotations

import numpy as np

from ..errors import DTypeError, ShapeError
from .batching import NotBatchable, lift_rank
from .params import bool_param
from .rules import call, jvp_zero, unbroadcast
from .shape import swap_last
from .shapes import broadcast_shapes, result_dtype, shape_str
from .table import ZERO, defop
from .traits import Kind

LINALG = Kind.LINALG


# ------------------------------------------------------------ type rules and helpers

def linalg_dtype(*xs) -> np.dtype:
    """The dtype LAPACK computes in: float32 or float64 (integers and bools become float64)."""
    dtype = result_dtype(*xs)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    if dtype not in (np.float32, np.float64):
        raise DTypeError(f"dtype {dtype} is not supported by linear algebra (float32 or float64)")
    return dtype


def square(a, name: str = "matrix") -> None:
    """Refuse anything but a stack of square matrices ``(..., n, n)``."""
    if len(a.shape) < 2:
        raise ShapeError(f"{name} must be at least 2-d (..., n, n), got {shape_str(a.shape)}")
    n, m = a.shape[-2:]
    if n is not None and m is not None and n != m:
        raise ShapeError(f"{name} must be square (..., n, n), got {shape_str(a.shape)}")


def _square_infer(a):
    square(a)
    return a.shape, linalg_dtype(a)


def _scalar_infer(a):
    square(a)
    return a.shape[:-2], linalg_dtype(a)


def _solve_infer(a, b):
    square(a, "coefficient matrix")
    n = a.shape[-1]
    if len(b.shape) == 0:
        raise ShapeError("right-hand side must be (n,) or (..., n, k), got a scalar")
    rows = b.shape[0] if len(b.shape) == 1 else b.shape[-2]
    if n is not None and rows is not None and n != rows:
        raise ShapeError(f"right-hand side has {rows} rows for a {n}x{n} system: "
                         f"{shape_str(a.shape)} and {shape_str(b.shape)}")
    if len(b.shape) == 1:
        return a.shape[:-1], linalg_dtype(a, b)
    try:
        batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ShapeError:
        raise ShapeError(f"batch dims do not broadcast: {shape_str(a.shape)} and {shape_str(b.shape)}") from None
    return batch + b.shape[-2:], linalg_dtype(a, b)


def eye(n: int, dtype=np.float64) -> np.ndarray:
    """The identity, read-only (a constant rules share)."""
    out = np.eye(n, dtype=dtype)
    out.setflags(write=False)
    return out


def half_eye(x) -> np.ndarray:
    """I / 2 in ``x``'s dtype, for the matrices of ``x``."""
    return np.eye(x.shape[-1], dtype=x.dtype) * np.asarray(0.5, x.dtype)


def mat(ns, a, b):
    return call(ns, "matmul", a, b)


def sym(ns, x):
    """(x + x^T) / 2: a symmetric matrix's cotangent (and the part of a tangent it sees)."""
    return (x + swap_last(ns, x)) * 0.5


def scale_mats(ns, g, x):
    """Each matrix of ``x`` times the matching scalar of ``g`` (shape ``x.shape[:-2]``)."""
    return call(ns, "expand_dims", g, axis=(g.ndim, g.ndim + 1)) * x


def trace_with(ns, m, t):
    """sum_ij m_ij t_ij per matrix: <m, t>, the JVP of a scalar whose gradient is ``m``."""
    return call(ns, "sum", m * t, axis=(t.ndim - 2, t.ndim - 1), keepdims=False)


def inv_t(ns, a):
    """A^-T: the gradient of log|det A| (and, times det, of det)."""
    return swap_last(ns, call(ns, "inv", a))


def on_stack(op, ns, inputs, batched, **params):
    """A one-matrix op on a stack: the batch axis is one more leading dim."""
    return ns.apply(op, inputs, params), True


def nan_on_failure(fn, a, *outs):
    """``fn(a)``, or NaNs of the shapes of ``outs`` when ``a`` holds a NaN or inf and LAPACK gives up."""
    try:
        return fn(a)
    except np.linalg.LinAlgError:
        if np.all(np.isfinite(a)):
            raise
        return tuple(np.full(s, np.nan, np.result_type(a, np.float64)) for s in outs)


# ------------------------------------------------------------ solve

def _solve(a, b):
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("matrix is singular: the system has no unique solution") from None


def _rhs_matrix(ns, x, b):
    """A right-hand-side-shaped value as a stack of matrices (a vector b gets a trailing axis)."""
    return call(ns, "expand_dims", x, axis=(x.ndim,)) if b.ndim == 1 else x


def _solve_cotangents(ns, g, out, a, b, solver, transposed, mask):
    """(a_bar, b_bar) of X = solve(A, B): B_bar = solve(A^T, g), A_bar = -B_bar X^T (masked to A's triangle)."""
    gm = _rhs_matrix(ns, g, b)
    gb = solver(swap_last(ns, a), gm, transposed)
    xt = swap_last(ns, _rhs_matrix(ns, out, b))
    n, k = a.shape[-1], gb.shape[-1]
    # the minus sign on the smaller factor: a vector's n entries rather than the n x n outer product
    ga = mat(ns, -gb, xt) if n is not None and k is not None and k < n else -mat(ns, gb, xt)
    if mask is not None:
        ga = call(ns, mask, ga, k=0)
    if b.ndim == 1:
        gb = call(ns, "squeeze", gb, axis=(gb.ndim - 1,))
    return unbroadcast(ns, ga, a), unbroadcast(ns, gb, b)


def _solve_tangent(ns, tangents, out, a, b, solver, mask):
    """dX = solve(A, dB - dA X)."""
    ta, tb = tangents
    rhs = ZERO if tb is ZERO else _rhs_matrix(ns, tb, b)
    if ta is not ZERO:
        ta = ta if mask is None else call(ns, mask, ta, k=0)
        prod = -mat(ns, ta, _rhs_matrix(ns, out, b))
        rhs = prod if rhs is ZERO else rhs + prod
    x = solver(a, rhs, False)
    return call(ns, "squeeze", x, axis=(x.ndim - 1,)) if b.ndim == 1 else x


def _plain(ns):
    return lambda a, b, transposed: call(ns, "solve", a, b)


def _solve_batch(op, ns, inputs, batched, **params):
    """Batch axes in front of both operands; a vector right-hand side solved as one column."""
    (a, b), (ba, bb) = inputs, batched
    vec = b.ndim - bb == 1
    if vec:
        b = call(ns, "expand_dims", b, axis=(b.ndim,))
    nd = max(a.ndim - ba, b.ndim - bb)
    if None in a.shape[:1] + b.shape[:1]:
        raise NotBatchable
    a = lift_rank(ns, a, nd) if ba else a
    b = lift_rank(ns, b, nd) if bb else b
    out = ns.apply(op, (a, b), params)
    return (call(ns, "squeeze", out, axis=(out.ndim - 1,)) if vec else out), True


defop("solve", _solve_infer, _solve,
      lambda ns, g, out, a, b: _solve_cotangents(ns, g, out, a, b, _plain(ns), False, None)[0],
      lambda ns, g, out, a, b: _solve_cotangents(ns, g, out, a, b, _plain(ns), False, None)[1],
      jvp=lambda ns, ts, out, a, b: _solve_tangent(ns, ts, out, a, b, _plain(ns), None),
      kind=LINALG, linear=(1,), fresh=True, batch=_solve_batch,
      doc="x with a @ x = b, numpy's semantics: a (..., n, n); b (n,) or (..., n, k), batch dims broadcast. "
          "A singular a is an error. VJPs: b_bar = solve(a^T, g), a_bar = -b_bar x^T.")


# ------------------------------------------------------------ solve_triangular

def _solve_triangular(a, b, lower):
    from scipy.linalg import solve_triangular

    dtype = np.result_type(a, b, np.float32) if np.result_type(a, b).kind == "f" else np.float64
    a, b = np.asarray(a, dtype), np.asarray(b, dtype)
    if np.any(np.diagonal(a, axis1=-2, axis2=-1) == 0):
        raise np.linalg.LinAlgError("triangular matrix is singular (a zero on its diagonal)")
    if a.ndim == 2 and (b.ndim <= 2):
        return solve_triangular(a, b, lower=lower, check_finite=False)
    vec = b.ndim == 1
    bm = b[..., None] if vec else b
    batch = np.broadcast_shapes(a.shape[:-2], bm.shape[:-2])
    aa = np.broadcast_to(a, batch + a.shape[-2:])
    bb = np.broadcast_to(bm, batch + bm.shape[-2:])
    out = np.empty(batch + bm.shape[-2:], dtype)
    for i in np.ndindex(*batch):
        out[i] = solve_triangular(aa[i], bb[i], lower=lower, check_finite=False)
    return out[..., 0] if vec else out


def _tri(ns, lower):
    return lambda a, b, transposed: call(ns, "solve_triangular", a, b, lower=lower != transposed)


def _tri_infer(a, b, lower):
    bool_param(lower, "lower")
    return _solve_infer(a, b)


def _tri_bind(a, b, lower=True):
    return (a, b), {"lower": bool_param(lower, "lower")}


defop("solve_triangular", _tri_infer, _solve_triangular,
      lambda ns, g, out, a, b, lower: _solve_cotangents(ns, g, out, a, b, _tri(ns, lower), True,
                                                        "tril" if lower else "triu")[0],
      lambda ns, g, out, a, b, lower: _solve_cotangents(ns, g, out, a, b, _tri(ns, lower), True, None)[1],
      jvp=lambda ns, ts, out, a, b, lower: _solve_tangent(ns, ts, out, a, b, _tri(ns, lower),
                                                          "tril" if lower else "triu"),
      bind=_tri_bind, kind=LINALG, linear=(1,), fresh=True, batch=_solve_batch,
      doc="x with a @ x = b for a triangular a (its lower triangle when lower, else its upper; the other "
          "is never read), by LAPACK's trtrs. A zero on the diagonal is an error. VJPs: "
          "b_bar = solve_triangular(a^T, g, not lower), a_bar = the triangle of -b_bar x^T.")


# ------------------------------------------------------------ cholesky

def symmetrised(a):
    """(a + a^T) / 2: what the symmetric factorisations factor, as JAX's do, so that their
    derivative is the symmetric one at every input (numpy's routines read one triangle)."""
    a = np.asarray(a)
    return (a + np.swapaxes(a, -1, -2)) * np.asarray(0.5, a.dtype if a.dtype.kind == "f" else np.float64)


def _cholesky(a):
    a = symmetrised(a)
    try:
        return np.linalg.cholesky(a)
    except np.linalg.LinAlgError:
        if not np.all(np.isfinite(a)):
            return np.full(np.shape(a), np.nan, np.result_type(a, np.float32))
        raise np.linalg.LinAlgError("matrix is not symmetric positive definite") from None


def _phi(ns, x):
    """The lower triangle of x with its diagonal halved (Murray's Phi)."""
    return call(ns, "tril", x, k=0) - x * half_eye(x)


def _cholesky_vjp(ns, g, out, a):
    return call(ns, "cholesky_grad", out, g)


def _cholesky_jvp(ns, tangents, out, a):
    return _cholesky_tangent(ns, out, tangents[0])


defop("cholesky", _square_infer, _cholesky, _cholesky_vjp, jvp=_cholesky_jvp, kind=LINALG, fresh=True,
      batch=on_stack,
      doc="The lower Cholesky factor L of a symmetric positive definite a (a = L L^T; of (a + a^T) / 2, "
          "as JAX's). A matrix that is not positive definite is an error. VJP (Murray 2016): "
          "cholesky_grad(L, L_bar) = sym(L^-T Phi(L^T L_bar) L^-1), Phi = lower triangle with its diagonal "
          "halved; a's cotangent is symmetric, as PyTorch's and JAX's.")


# ------------------------------------------------------------ cholesky_grad: the VJP of cholesky

#: the block size of :func:`_cholesky_grad`: a panel's updates are BLAS-3 products this wide (measured on
#: n = 1000: 64 and 256 are within 25% of 128; 32 pays numpy's per-call cost too often)
CHOLESKY_GRAD_BLOCK = 64


def _block_grad(trsm, l, g):
    """The lower triangle of a's cotangent for one block (L lower, g its lower triangle's cotangent):
    Phi(M + M^T), M = L^-T Phi(L^T g) L^-1, by two triangular solves (the whole-matrix formula)."""
    p = _phi_array(np.tril(l).T @ g)
    y = trsm(1.0, l, p, lower=1, trans_a=1)          # L^-T P
    m = trsm(1.0, l, y, side=1, lower=1)             # L^-T P L^-1
    return _phi_array(m + m.T)


def _phi_array(x):
    out = np.tril(x)
    np.einsum("...ii->...i", out)[...] *= 0.5
    return out


def _cholesky_grad_one(l, g, nb: int):
    """Murray's (2016) blocked reverse mode of LAPACK's blocked Cholesky (dpotrf), from the last block
    column to the first: each panel's cotangent is one triangular solve with its diagonal block, the
    blocks left of it are updated by matrix products, and the diagonal block takes the whole-matrix
    formula. About 2/3 n^3 flops, twice the factorisation's, against the formula's 3 n^3 (a product and
    two n x n triangular solves). Returns sym(A_bar) from the lower-triangular A_bar. The solves are
    BLAS's trsm called directly: scipy's solve_triangular costs more than a small block's solve."""
    from scipy.linalg.blas import get_blas_funcs

    trsm = get_blas_funcs("trsm", (l, g))
    n = l.shape[-1]
    a = np.tril(g)
    for j0 in range(((n - 1) // nb) * nb, -1, -nb):
        j1 = min(j0 + nb, n)
        diag, left = l[j0:j1, j0:j1], l[j0:j1, :j0]
        if j1 < n:
            panel = trsm(1.0, diag, a[j1:, j0:j1], side=1, lower=1)     # the panel's cotangent times D^-1
            a[j1:, j0:j1] = panel
            a[j0:j1, j0:j1] -= np.tril(panel.T @ l[j1:, j0:j1])
            if j0:
                a[j1:, :j0] -= panel @ left
                a[j0:j1, :j0] -= panel.T @ l[j1:, :j0]
        t = _block_grad(trsm, diag, a[j0:j1, j0:j1])
        a[j0:j1, j0:j1] = t
        if j0:
            a[j0:j1, :j0] -= (t + t.T) @ left
    out = a + a.T
    out *= 0.5
    return out


def _cholesky_grad(l, g):
    l, g = np.asarray(l), np.asarray(g)
    dtype = linalg_dtype(l, g)
    l, g = l.astype(dtype, copy=False), g.astype(dtype, copy=False)
    if l.ndim == 2 and g.ndim == 2:
        return _cholesky_grad_one(l, g, CHOLESKY_GRAD_BLOCK)
    batch = np.broadcast_shapes(l.shape[:-2], g.shape[:-2])
    ll, gg = np.broadcast_to(l, batch + l.shape[-2:]), np.broadcast_to(g, batch + g.shape[-2:])
    out = np.empty(batch + l.shape[-2:], dtype)
    for i in np.ndindex(*batch):
        out[i] = _cholesky_grad_one(ll[i], gg[i], CHOLESKY_GRAD_BLOCK)
    return out


def _cholesky_grad_infer(l, g):
    square(l, "cholesky factor")
    square(g, "cotangent")
    if l.shape[-1] is not None and g.shape[-1] is not None and l.shape[-1] != g.shape[-1]:
        raise ShapeError(f"cotangent {shape_str(g.shape)} does not match the factor {shape_str(l.shape)}")
    try:
        batch = broadcast_shapes(l.shape[:-2], g.shape[:-2])
    except ShapeError:
        raise ShapeError(f"batch dims do not broadcast: {shape_str(l.shape)} and {shape_str(g.shape)}") from None
    return batch + l.shape[-2:], linalg_dtype(l, g)


def _lower_solve(ns, l, x):
    """L^-1 x."""
    return call(ns, "solve_triangular", l, x, lower=True)


def _upper_solve(ns, l, x):
    """L^-T x."""
    return call(ns, "solve_triangular", swap_last(ns, l), x, lower=False)


def _grad_l_vjp(ns, h, out, l, g):
    # out = sym(M), M = L^-T Phi(L^T tril(g)) L^-1; with H = sym(h) and Z = L^-1 H L^-T:
    # L_bar = tril(-2 out H L^-T + tril(g) Phi(Z)^T)
    y = _lower_solve(ns, l, sym(ns, h))                               # L^-1 H
    z = swap_last(ns, _lower_solve(ns, l, swap_last(ns, y)))          # L^-1 H L^-T
    lb = mat(ns, call(ns, "tril", g, k=0), swap_last(ns, _phi(ns, z))) - mat(ns, out, swap_last(ns, y)) * 2.0
    return unbroadcast(ns, call(ns, "tril", lb, k=0), l)


def _grad_g_vjp(ns, h, out, l, g):
    # linear in g, its adjoint is cholesky's JVP: tril(g)'s cotangent L Phi(L^-1 sym(h) L^-T) (L's lower
    # triangle: its upper one is never read)
    return unbroadcast(ns, _cholesky_tangent(ns, call(ns, "tril", l, k=0), h), g)


def _cholesky_tangent(ns, l, t):
    """dL = L Phi(L^-1 sym(dA) L^-T): cholesky's JVP at the factor ``l``."""
    y = _lower_solve(ns, l, sym(ns, t))                                # L^-1 dA
    z = _lower_solve(ns, l, swap_last(ns, y))                          # L^-1 dA L^-T
    return mat(ns, l, _phi(ns, z))


def _grad_jvp(ns, tangents, out, l, g):
    # d out = cholesky_grad(L, dg) - 2 sym(out dL L^-1) + sym(L^-T Phi(dL^T tril(g)) L^-1), dL = tril(tl)
    tl, tg = tangents
    total = ZERO if tg is ZERO else call(ns, "cholesky_grad", l, tg)
    if tl is not ZERO:
        dl = call(ns, "tril", tl, k=0)
        right = swap_last(ns, _upper_solve(ns, l, swap_last(ns, dl)))                # dL L^-1
        q = _upper_solve(ns, l, _phi(ns, mat(ns, swap_last(ns, dl), call(ns, "tril", g, k=0))))
        inner = swap_last(ns, _upper_solve(ns, l, swap_last(ns, q)))                  # L^-T Phi(.) L^-1
        part = sym(ns, inner) - sym(ns, mat(ns, out, right)) * 2.0
        total = part if total is ZERO else total + part
    return total


defop("cholesky_grad", _cholesky_grad_infer, _cholesky_grad, _grad_l_vjp, _grad_g_vjp, jvp=_grad_jvp,
      kind=LINALG, linear=(1,), fresh=True, batch=_solve_batch,
      doc="The VJP of cholesky: a's (symmetric) cotangent given the factor L and L's cotangent g, "
          "sym(L^-T Phi(L^T tril(g)) L^-1), computed by Murray's (2016) blocked reverse mode of LAPACK's "
          "factorisation (about 2/3 n^3 flops, no inverse). Only the lower triangles of L and g are read. "
          "Linear in g: its VJP for g is cholesky's JVP, its VJP for L the second derivative.")


# ------------------------------------------------------------ inv, det, slogdet

def _inv(a):
    try:
        return np.linalg.inv(a)
    except np.linalg.LinAlgError:
        raise np.linalg.LinAlgError("matrix is singular: it has no inverse") from None


defop("inv", _square_infer, _inv,
      lambda ns, g, out, a: -mat(ns, swap_last(ns, out), mat(ns, g, swap_last(ns, out))),
      jvp=lambda ns, ts, out, a: -mat(ns, out, mat(ns, ts[0], out)),
      kind=LINALG, fresh=True, batch=on_stack,
      doc="The inverse of a square matrix (prefer solve: it is cheaper and more accurate). A singular "
          "matrix is an error. VJP: -Y^T g Y^T with Y = inv(a).")


def _det(a):
    return np.asarray(np.linalg.det(a))


defop("det", _scalar_infer, _det,
      lambda ns, g, out, a: scale_mats(ns, g * out, inv_t(ns, a)),
      jvp=lambda ns, ts, out, a: out * trace_with(ns, inv_t(ns, a), ts[0]),
      kind=LINALG, fresh=True, batch=on_stack,
      doc="The determinant of each matrix. VJP: g det(a) a^-T (Jacobi's formula), defined where a is "
          "invertible; at a singular a the gradient's inverse is an error.")


def _slogdet_sign(a):
    return np.asarray(np.linalg.slogdet(a)[0])


def _slogdet_log(a):
    return np.asarray(np.linalg.slogdet(a)[1])


defop("slogdet_sign", _scalar_infer, _slogdet_sign, None, jvp=jvp_zero, kind=LINALG, fresh=True, batch=on_stack,
      doc="The sign of each matrix's determinant (+1, -1, or 0 when singular): slogdet's first half, "
          "piecewise constant, so without gradient.")
defop("slogdet_logabs", _scalar_infer, _slogdet_log,
      lambda ns, g, out, a: scale_mats(ns, g, inv_t(ns, a)),
      jvp=lambda ns, ts, out, a: trace_with(ns, inv_t(ns, a), ts[0]),
      kind=LINALG, fresh=True, batch=on_stack,
      doc="log|det(a)| of each matrix, without overflow: slogdet's second half (-inf when singular). "
          "VJP: g a^-T.")
