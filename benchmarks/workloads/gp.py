"""A Gaussian process's negative log marginal likelihood: derivatives through a Cholesky factorisation.

The cost is the textbook (Rasmussen & Williams, Algorithm 2.1) one for an RBF
kernel ``K = sf^2 exp(-|x - x'|^2 / 2 l^2) + sn^2 I``, through ``L =
cholesky(K)`` and a triangular solve, differentiated with respect to the log
length scale, log signal and log noise. It is bound by O(n^3) LAPACK and BLAS
calls, so it measures how close each backend's derivative comes to the
hand-written one's few factorisations. The hand gradient is the textbook
``0.5 tr((K^-1 - a a^T) dK/dtheta)`` with ``K^-1`` from the Cholesky factor.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from . import Problem, seeded, workload

SIZES = ("n200", "n1000")


def gp_fn(ns, log_ell, log_sf, log_sn, d2, y, eye):
    """NLML: y^T K^-1 y / 2 + log|L| + n log(2 pi) / 2, with d2 the squared distances and eye = I."""
    k = ns.exp(2.0 * log_sf) * ns.exp(d2 * (-0.5 * ns.exp(-2.0 * log_ell))) + ns.exp(2.0 * log_sn) * eye
    chol = ns.linalg.cholesky(k)
    a = ns.linalg.solve_triangular(chol, y, lower=True)
    n = y.shape[0]
    return 0.5 * ns.sum(a * a) + ns.sum(ns.log(ns.sum(chol * eye, axis=1))) + 0.5 * n * math.log(2 * math.pi)


def _kernel(log_ell, log_sf, log_sn, d2, eye):
    kf = np.exp(d2 * (-0.5 * math.exp(-2.0 * float(log_ell))))
    kf *= math.exp(2.0 * float(log_sf))
    k = kf + math.exp(2.0 * float(log_sn)) * eye
    return kf, k


def hand_forward(log_ell, log_sf, log_sn, d2, y, eye):
    _, k = _kernel(log_ell, log_sf, log_sn, d2, eye)
    chol = np.linalg.cholesky(k)
    a = scipy.linalg.solve_triangular(chol, y, lower=True, check_finite=False)
    return 0.5 * a @ a + np.log(np.diagonal(chol)).sum() + 0.5 * len(y) * math.log(2 * math.pi)


def hand_grad(log_ell, log_sf, log_sn, d2, y, eye):
    """0.5 tr((K^-1 - alpha alpha^T) dK) per parameter, K^-1 = L^-T L^-1 from one triangular inverse."""
    kf, k = _kernel(log_ell, log_sf, log_sn, d2, eye)
    chol = np.linalg.cholesky(k)
    linv, _ = scipy.linalg.lapack.dtrtri(chol, lower=1)
    kinv = np.matmul(linv.T, linv, out=k)                 # K^-1 (K's buffer)
    alpha = kinv @ y
    # K^-1 - alpha alpha^T in place: a rank-1 update of the transposed (Fortran-ordered) view, K^-1 being symmetric
    m = scipy.linalg.blas.dger(-1.0, alpha, alpha, a=kinv.T, overwrite_a=True).T
    kf_m = np.multiply(kf, m, out=kf)
    g_sf = kf_m.sum()                                     # 0.5 tr(M 2 Kf)
    g_ell = 0.5 * math.exp(-2.0 * float(log_ell)) * np.vdot(kf_m, d2)   # 0.5 tr(M Kf d2 / l^2)
    g_sn = math.exp(2.0 * float(log_sn)) * np.trace(m)   # 0.5 tr(M 2 sn^2 I)
    return [np.asarray(g_ell), np.asarray(g_sf), np.asarray(g_sn)]


@workload("gp", sizes=SIZES, default=SIZES, check=SIZES[:1], rtol=1e-8, fd_rtol=1e-5,
          doc="d GP negative log marginal likelihood (RBF, Cholesky) / d log length scale, signal, noise")
def gp(size: str) -> Problem:
    n = int(size[1:])
    rng = seeded("gp", size)
    x = rng.uniform(-3, 3, (n, 2))
    y = np.sin(x[:, 0]) * np.cos(x[:, 1]) + 0.1 * rng.standard_normal(n)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    args = {"log_ell": np.array(0.2), "log_sf": np.array(0.1), "log_sn": np.array(-1.5), "d2": d2, "y": y,
            "eye": np.eye(n)}
    return Problem(gp_fn, args, ("log_ell", "log_sf", "log_sn"), hand_grad=hand_grad, hand_forward=hand_forward,
                   scale=n, family="rbf", label=f"n = {n}")
