"""Factorisations with several results: eigh, svd and qr, one op per result.

``eigh(a) -> (w, v)`` is two ops, ``eigh_w`` and ``eigh_v``, each returning
one array, and likewise ``svd_u``/``svd_s``/``svd_vh`` and ``qr_q``/``qr_r``
(``common.api.linalg.eigh`` and friends return the tuple). A factorisation's
VJP is linear in its results' cotangents, so the sum of one rule per result
is the whole rule; each rule names the other results it needs as ops on the
same input, which the symbolic graph merges with the forward's (CSE), so
nothing in the engines, the printer or the serializer needs a tuple-valued
node. The price is that symnum's tape factorises once per result it uses.

The rules are the standard ones (Giles 2008; Townsend 2016 for the SVD):
with ``F_ij = 1 / (l_j - l_i)`` off the diagonal (``l`` the eigenvalues, or
the squared singular values), 0 on it. They hold where those values are
distinct (and singular values nonzero); where two coincide F is infinite and
the gradient through the vectors is inf/NaN, as in PyTorch and JAX, while
the values' own gradients (``eigh_w``, ``svd_s``) stay finite. Eigenvectors
and singular vectors are defined up to sign, so only sign-invariant functions
of them have a gradient that means anything. eigh factors (a + a^T) / 2,
and its cotangent is symmetric (see :mod:`common.ops.matrix`). qr's
gradient needs ``m >= n`` (reduced), svd's ``full_matrices=False`` or a
square matrix: otherwise it is a :class:`GradError`.
"""

from __future__ import annotations

import numpy as np

from ..errors import GradError, ShapeError
from .matrix import linalg_dtype, mat, nan_on_failure, on_stack, square, sym, symmetrised
from .params import bool_param
from .rules import call
from .shape import swap_last
from .table import defop
from .traits import Kind

LINALG = Kind.LINALG


def _tr(ns, x):
    return swap_last(ns, x)


def _col(ns, x):
    """A vector stack (..., k) as rows (..., 1, k): scales a matrix's columns."""
    return call(ns, "expand_dims", x, axis=(x.ndim - 1,))


def _row(ns, x):
    """A vector stack (..., k) as a column (..., k, 1): scales a matrix's rows."""
    return call(ns, "expand_dims", x, axis=(x.ndim,))


def _gaps(ns, lam):
    """F_ij = 1 / (lam_j - lam_i) off the diagonal, 0 on it."""
    k = lam.shape[-1]
    one = np.eye(k, dtype=lam.dtype)
    return (1 - one) / (_col(ns, lam) - _row(ns, lam) + one)


# ------------------------------------------------------------ eigh

def _eigh(a):
    n = np.shape(a)[-1]
    return nan_on_failure(np.linalg.eigh, symmetrised(a), np.shape(a)[:-1], np.shape(a)[:-2] + (n, n))


def _eigh_w_infer(a):
    square(a)
    return a.shape[:-1], linalg_dtype(a)


def _eigh_v_infer(a):
    square(a)
    return a.shape, linalg_dtype(a)


def _eigh_w_vjp(ns, g, out, a):
    v = call(ns, "eigh_v", a)
    return mat(ns, v * _col(ns, g), _tr(ns, v))


def _eigh_v_vjp(ns, g, out, a):
    f = _gaps(ns, call(ns, "eigh_w", a))
    inner = f * mat(ns, _tr(ns, out), g)
    return sym(ns, mat(ns, mat(ns, out, inner), _tr(ns, out)))


def _eigh_w_jvp(ns, tangents, out, a):
    v = call(ns, "eigh_v", a)
    return call(ns, "sum", v * mat(ns, sym(ns, tangents[0]), v), axis=(a.ndim - 2,), keepdims=False)


def _eigh_v_jvp(ns, tangents, out, a):
    f = _gaps(ns, call(ns, "eigh_w", a))
    return mat(ns, out, f * mat(ns, _tr(ns, out), mat(ns, sym(ns, tangents[0]), out)))


defop("eigh_w", _eigh_w_infer, lambda a: np.asarray(_eigh(a)[0]), _eigh_w_vjp, jvp=_eigh_w_jvp, kind=LINALG,
      fresh=True, batch=on_stack,
      doc="The eigenvalues of a symmetric matrix, ascending (eigh's first result; of (a + a^T) / 2, as "
          "JAX's). VJP: V diag(g) V^T.")
defop("eigh_v", _eigh_v_infer, lambda a: np.asarray(_eigh(a)[1]), _eigh_v_vjp, jvp=_eigh_v_jvp, kind=LINALG,
      fresh=True, batch=on_stack,
      doc="The eigenvectors of a symmetric matrix, as columns (eigh's second result; each up to sign). "
          "VJP: sym(V (F o V^T g) V^T), F_ij = 1/(w_j - w_i): inf/NaN where eigenvalues repeat.")


# ------------------------------------------------------------ svd

def _svd_dims(a, full_matrices):
    bool_param(full_matrices, "full_matrices")
    if len(a.shape) < 2:
        raise ShapeError(f"svd needs a matrix (..., m, n), got {len(a.shape)}-d")
    m, n = a.shape[-2:]
    k = None if m is None or n is None else min(m, n)
    return a.shape[:-2], m, n, k


def _svd_u_infer(a, full_matrices):
    batch, m, n, k = _svd_dims(a, full_matrices)
    return batch + (m, m if full_matrices else k), linalg_dtype(a)


def _svd_s_infer(a, full_matrices):
    batch, m, n, k = _svd_dims(a, full_matrices)
    return batch + (k,), linalg_dtype(a)


def _svd_vh_infer(a, full_matrices):
    batch, m, n, k = _svd_dims(a, full_matrices)
    return batch + (n if full_matrices else k, n), linalg_dtype(a)


def _svd(a, full_matrices):
    m, n = np.shape(a)[-2:]
    batch = np.shape(a)[:-2]
    k = min(m, n)
    shapes = (batch + ((m, m) if full_matrices else (m, k)), batch + (k,),
              batch + ((n, n) if full_matrices else (k, n)))
    return nan_on_failure(lambda x: np.linalg.svd(x, full_matrices=full_matrices), a, *shapes)


def _svd_bind(a, full_matrices=False):
    return (a,), {"full_matrices": bool_param(full_matrices, "full_matrices")}


def _svd_parts(ns, a, full_matrices):
    """(u, s, vh) of the reduced SVD, for the rules (which need it reduced)."""
    if full_matrices and a.shape[-1] != a.shape[-2]:
        raise GradError("svd: no gradient with full_matrices=True for a non-square matrix "
                        "(the extra singular vectors are not unique); use full_matrices=False")
    return tuple(call(ns, name, a, full_matrices=full_matrices) for name in ("svd_u", "svd_s", "svd_vh"))


def _svd_u_vjp(ns, g, out, a, full_matrices):
    u, s, vh = _svd_parts(ns, a, full_matrices)
    utg = mat(ns, _tr(ns, u), g)
    j = _gaps(ns, s * s) * (utg - _tr(ns, utg))
    inner = mat(ns, u, j * _col(ns, s)) + (g - mat(ns, u, utg)) / _col(ns, s)
    return mat(ns, inner, vh)


def _svd_s_vjp(ns, g, out, a, full_matrices):
    u, s, vh = _svd_parts(ns, a, full_matrices)
    return mat(ns, u * _col(ns, g), vh)


def _svd_vh_vjp(ns, g, out, a, full_matrices):
    u, s, vh = _svd_parts(ns, a, full_matrices)
    vtg = mat(ns, vh, _tr(ns, g))                      # V^T V_bar
    k = _gaps(ns, s * s) * (vtg - _tr(ns, vtg))
    return (mat(ns, u, _row(ns, s) * mat(ns, k, vh))
            + mat(ns, u / _col(ns, s), g - mat(ns, mat(ns, g, _tr(ns, vh)), vh)))


def _svd_dp(ns, tangents, a, full_matrices):
    u, s, vh = _svd_parts(ns, a, full_matrices)
    da = tangents[0]
    dav = mat(ns, da, _tr(ns, vh))                     # dA V
    return u, s, vh, da, dav, mat(ns, _tr(ns, u), dav)


def _svd_u_jvp(ns, tangents, out, a, full_matrices):
    u, s, vh, da, dav, dp = _svd_dp(ns, tangents, a, full_matrices)
    f = _gaps(ns, s * s)
    return mat(ns, u, f * (dp * _col(ns, s) + _tr(ns, dp) * _row(ns, s))) + (dav - mat(ns, u, dp)) / _col(ns, s)


def _svd_s_jvp(ns, tangents, out, a, full_matrices):
    u, s, vh = _svd_parts(ns, a, full_matrices)
    return call(ns, "sum", u * mat(ns, tangents[0], _tr(ns, vh)), axis=(a.ndim - 2,), keepdims=False)


def _svd_vh_jvp(ns, tangents, out, a, full_matrices):
    u, s, vh, da, dav, dp = _svd_dp(ns, tangents, a, full_matrices)
    f = _gaps(ns, s * s)
    v = _tr(ns, vh)
    dv = (mat(ns, v, f * (dp * _row(ns, s) + _tr(ns, dp) * _col(ns, s)))
          + (mat(ns, _tr(ns, da), u) - mat(ns, v, _tr(ns, dp))) / _col(ns, s))
    return _tr(ns, dv)


_SVD = dict(bind=_svd_bind, kind=LINALG, fresh=True, batch=on_stack)
defop("svd_u", _svd_u_infer, lambda a, full_matrices: np.asarray(_svd(a, full_matrices)[0]), _svd_u_vjp,
      jvp=_svd_u_jvp, **_SVD,
      doc="The left singular vectors U of a = U diag(s) Vh (columns, each up to a sign shared with Vh's row). "
          "VJP (Townsend 2016) needs distinct nonzero singular values.")
defop("svd_s", _svd_s_infer, lambda a, full_matrices: np.asarray(_svd(a, full_matrices)[1]), _svd_s_vjp,
      jvp=_svd_s_jvp, **_SVD,
      doc="The singular values of a, descending. VJP: U diag(g) Vh.")
defop("svd_vh", _svd_vh_infer, lambda a, full_matrices: np.asarray(_svd(a, full_matrices)[2]), _svd_vh_vjp,
      jvp=_svd_vh_jvp, **_SVD,
      doc="The right singular vectors of a, as the rows of Vh. VJP (Townsend 2016) needs distinct nonzero "
          "singular values.")


# ------------------------------------------------------------ qr

def _qr_dims(a):
    if len(a.shape) < 2:
        raise ShapeError(f"qr needs a matrix (..., m, n), got {len(a.shape)}-d")
    m, n = a.shape[-2:]
    return a.shape[:-2], m, n, None if m is None or n is None else min(m, n)


def _qr_q_infer(a):
    batch, m, n, k = _qr_dims(a)
    return batch + (m, k), linalg_dtype(a)


def _qr_r_infer(a):
    batch, m, n, k = _qr_dims(a)
    return batch + (k, n), linalg_dtype(a)


def _qr_parts(ns, a):
    if a.shape[-2] < a.shape[-1]:
        raise GradError(f"qr: no gradient for a wide matrix ({a.shape[-2]} x {a.shape[-1]}): it needs m >= n")
    return call(ns, "qr_q", a), call(ns, "qr_r", a)


def _times_r_inv_t(ns, x, r):
    """X R^-T, by a triangular solve."""
    return _tr(ns, call(ns, "solve_triangular", r, _tr(ns, x), lower=False))


def _times_r_inv(ns, x, r):
    """X R^-1, by a triangular solve."""
    return _tr(ns, call(ns, "solve_triangular", _tr(ns, r), _tr(ns, x), lower=True))


def _copyltu(ns, m):
    """The symmetric matrix with m's lower triangle."""
    return call(ns, "tril", m, k=0) + _tr(ns, call(ns, "tril", m, k=-1))


def _qr_q_vjp(ns, g, out, a):
    q, r = _qr_parts(ns, a)
    return _times_r_inv_t(ns, g + mat(ns, q, _copyltu(ns, -mat(ns, _tr(ns, g), q))), r)


def _qr_r_vjp(ns, g, out, a):
    q, r = _qr_parts(ns, a)
    return _times_r_inv_t(ns, mat(ns, q, _copyltu(ns, mat(ns, r, _tr(ns, g)))), r)


def _qr_dc(ns, tangents, a):
    """Q, R, dA R^-1 and Q^T dA R^-1 - Omega (the upper triangular dR R^-1)."""
    q, r = _qr_parts(ns, a)
    dar = _times_r_inv(ns, tangents[0], r)
    c = mat(ns, _tr(ns, q), dar)
    low = call(ns, "tril", c, k=-1)
    return q, r, dar, c - low + _tr(ns, low)


defop("qr_q", _qr_q_infer, lambda a: np.asarray(np.linalg.qr(a)[0]), _qr_q_vjp,
      jvp=lambda ns, ts, out, a: (lambda q, r, dar, up: dar - mat(ns, q, up))(*_qr_dc(ns, ts, a)),
      kind=LINALG, fresh=True, batch=on_stack,
      doc="Q of the reduced QR factorisation (orthonormal columns; LAPACK's signs). VJP needs m >= n: "
          "(Q_bar + Q copyltu(-Q_bar^T Q)) R^-T, by a triangular solve.")
defop("qr_r", _qr_r_infer, lambda a: np.asarray(np.linalg.qr(a)[1]), _qr_r_vjp,
      jvp=lambda ns, ts, out, a: (lambda q, r, dar, up: mat(ns, up, r))(*_qr_dc(ns, ts, a)),
      kind=LINALG, fresh=True, batch=on_stack,
      doc="R of the reduced QR factorisation (upper triangular). VJP needs m >= n: "
          "Q copyltu(R R_bar^T) R^-T, by a triangular solve.")
