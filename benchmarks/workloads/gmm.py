"""GradBench's (and ADBench's) Gaussian mixture model: a dense gradient of a big reduction.

The cost is :func:`benchmarks.gradbench.models.gmm`, the very function the
GradBench tool answers with, differentiated with respect to the weights,
means and both parts of the precision factors. It is data-parallel: a handful
of large (k, n, d) array ops, so it measures how well each backend keeps out of
numpy's way. The hand-written gradient below is the textbook one, in terms of
the responsibilities (the softmax over components of each point's terms).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks.gradbench.models import gmm as gmm_fn
from benchmarks.gradbench.models import lower_index, multigammaln

from . import Problem, seeded, workload

SIZES = ("d2-k5-n50", "d10-k25-n1000", "d20-k50-n1000", "d64-k100-n1000")
M, GAMMA = 0, 1.0   # the eval's default Wishart parameters


def _factors(q, l):
    """Q_k (k, d, d): exp(q_k) on the diagonal, l_k in the strict lower triangle by columns."""
    k, d = q.shape
    padded = np.concatenate([np.zeros((k, 1)), l], axis=1)
    return padded[:, lower_index(d)] + np.exp(q)[:, :, None] * np.eye(d)


def _terms(alpha, mu, q, l, x):
    xc = x[None, :, :] - mu[:, None, :]                     # (k, n, d)
    u = np.matmul(xc, np.transpose(_factors(q, l), (0, 2, 1)))   # Q_k (x_i - mu_k), (k, n, d)
    main = (alpha + q.sum(axis=1))[:, None] - 0.5 * np.sum(u * u, axis=2)
    return xc, u, main


def _lse(a, axis):
    top = np.max(a, axis=axis, keepdims=True)
    return np.squeeze(top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True)), axis)


def hand_forward(alpha, mu, q, l, x, m=M, gamma=GAMMA):
    """The log-posterior in plain numpy (the eval's formula, term by term)."""
    k, d = mu.shape
    n = x.shape[0]
    _, _, main = _terms(alpha, mu, q, l, x)
    dof = d + m + 1
    c = dof * d * (math.log(gamma) - 0.5 * math.log(2)) - multigammaln(0.5 * dof, d)
    frobenius = np.sum(np.exp(2 * q), axis=1) + np.sum(l * l, axis=1)
    prior = k * c - np.sum(0.5 * gamma * gamma * frobenius - m * q.sum(axis=1))
    return (-n * d * 0.5 * math.log(2 * math.pi) + np.sum(_lse(main, 0)) - n * _lse(alpha, 0)
            + prior)


def hand_grad(alpha, mu, q, l, x, m=M, gamma=GAMMA):
    """Gradients for alpha, mu, q, l by hand.

    With r_ik the responsibility of component k for point i, R_k = sum_i r_ik
    and u_ik = Q_k (x_i - mu_k): d/dalpha = R - n softmax(alpha); the term
    -|u|^2/2 gives G_k = -sum_i r_ik u_ik (x_i - mu_k)^T for Q_k, whose diagonal
    flows to q through exp and whose strict lower triangle is l's; d/dmu_k =
    sum_i r_ik Q_k^T u_ik; the prior adds m - gamma^2 exp(2q) and -gamma^2 l.
    """
    d = mu.shape[1]
    n = x.shape[0]
    xc, u, main = _terms(alpha, mu, q, l, x)
    r = np.exp(main - _lse(main, 0)[None, :])                # (k, n)
    big_r = r.sum(axis=1)
    weights = np.exp(alpha - _lse(alpha, 0))
    g_alpha = big_r - n * weights
    ru = r[:, :, None] * u
    g_factor = -np.matmul(np.transpose(ru, (0, 2, 1)), xc)   # (k, d, d)
    g_mu = np.einsum("kni,kij->knj", ru, _factors(q, l)).sum(axis=1)
    diag = np.arange(d)
    g_q = big_r[:, None] + m + g_factor[:, diag, diag] * np.exp(q) - gamma * gamma * np.exp(2 * q)
    rows, cols = np.nonzero(lower_index(d))
    order = np.argsort(lower_index(d)[rows, cols])
    g_l = g_factor[:, rows[order], cols[order]] - gamma * gamma * l
    return [g_alpha, g_mu, g_q, g_l]


def cost(ns, alpha, mu, q, l, x):
    return gmm_fn(ns, alpha, mu, q, l, x, M, GAMMA)


@workload("gmm", sizes=SIZES, default=SIZES[:3], check=SIZES[:1], rtol=1e-9, fd_rtol=1e-6,
          doc="GradBench gmm: log-posterior of a Gaussian mixture with a Wishart prior")
def gmm(size: str) -> Problem:
    d, k, n = (int(part[1:]) for part in size.split("-"))
    rng = seeded("gmm", size)
    args = {"alpha": rng.normal(size=k), "mu": rng.uniform(size=(k, d)), "q": rng.normal(size=(k, d)),
            "l": rng.normal(size=(k, d * (d - 1) // 2)), "x": rng.normal(size=(n, d))}
    return Problem(cost, args, ("alpha", "mu", "q", "l"), hand_grad=hand_grad, hand_forward=hand_forward,
                   scale=k * n * d, family="gmm", label=f"d = {d}, k = {k}, n = {n}")
