"""``ns.linalg`` and ``ns.nn`` for the peers: each library's own routines under twograd's spellings.

The workloads call ``ns.linalg.cholesky``, ``ns.linalg.solve_triangular(a, b,
lower=True)`` and ``ns.nn.conv2d``/``max_pool2d``; each peer adapter in
:mod:`benchmarks.peers` answers ``linalg`` and ``nn`` with the groups made
here from the library's own differentiable routines (PyTorch's
``torch.linalg`` and ``torch.nn.functional``; JAX's ``jax.scipy.linalg`` and
``lax.conv_general_dilated``/``reduce_window``). HIPS autograd has no
convolution, so its ``conv2d`` is the usual im2col in ``autograd.numpy`` (a
gather by index arrays and a ``tensordot``), and its pooling a reshape.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def _pair(v) -> tuple:
    return (v, v) if isinstance(v, int) else tuple(v)


def torch_groups(torch) -> tuple[SimpleNamespace, SimpleNamespace]:
    """(linalg, nn) over PyTorch."""
    import torch.nn.functional as F

    def solve_triangular(a, b, lower=True):
        vec = b.ndim == 1
        out = torch.linalg.solve_triangular(a, b[:, None] if vec else b, upper=not lower)
        return out[:, 0] if vec else out

    lin = torch.linalg
    linalg = SimpleNamespace(cholesky=lin.cholesky, solve=lin.solve, solve_triangular=solve_triangular, inv=lin.inv,
                             det=lin.det, slogdet=lin.slogdet, norm=lin.norm,
                             eigh=lin.eigh, qr=lin.qr, svd=lambda a, full_matrices=False: lin.svd(a, full_matrices))
    nn = SimpleNamespace(conv1d=F.conv1d, conv2d=F.conv2d, max_pool2d=F.max_pool2d, avg_pool2d=F.avg_pool2d)
    return linalg, nn


def numpy_like_groups(xp) -> tuple[SimpleNamespace, SimpleNamespace]:
    """(linalg, nn) over ``jax.numpy`` or ``autograd.numpy`` (or numpy itself)."""
    if xp.__name__.startswith("jax"):
        import jax.scipy.linalg as sl
        from jax import lax

        def conv2d(x, w, stride=1, padding=0, dilation=1, groups=1):
            return lax.conv_general_dilated(x, w, _pair(stride), [(p, p) for p in _pair(padding)],
                                            rhs_dilation=_pair(dilation), feature_group_count=groups)

        def max_pool2d(x, kernel_size, stride=None, padding=0):
            k, p = _pair(kernel_size), _pair(padding)
            s = k if stride is None else _pair(stride)
            pads = ((0, 0), (0, 0), *((q, q) for q in p))
            return lax.reduce_window(x, -xp.inf, lax.max, (1, 1, *k), (1, 1, *s), pads)

        nn = SimpleNamespace(conv2d=conv2d, max_pool2d=max_pool2d)
    else:
        if xp.__name__.startswith("autograd"):
            import autograd.scipy.linalg as sl
        else:  # numpy itself (the adapter's own tests)
            import scipy.linalg as sl

        nn = SimpleNamespace(conv2d=lambda x, w, **kw: _im2col_conv2d(xp, x, w, **kw),
                             max_pool2d=lambda x, k, stride=None, padding=0: _block_max(xp, x, k, stride, padding))
    lin = xp.linalg
    linalg = SimpleNamespace(cholesky=lin.cholesky, solve=lin.solve, inv=lin.inv, det=lin.det, slogdet=lin.slogdet,
                             norm=lin.norm, eigh=lin.eigh, qr=getattr(lin, "qr", None), svd=lin.svd,
                             solve_triangular=lambda a, b, lower=True: sl.solve_triangular(a, b, lower=lower))
    return linalg, nn


def _im2col_conv2d(xp, x, w, stride=1, padding=0, dilation=1, groups=1):
    """A stride-1, unpadded, ungrouped conv2d by im2col in a numpy-like module (what the workloads use)."""
    if (stride, padding, dilation, groups) != (1, 0, 1, 1):
        raise NotImplementedError("this im2col conv2d covers stride 1, no padding, no dilation, one group")
    k1, k2 = w.shape[2:]
    h, v = x.shape[2] - k1 + 1, x.shape[3] - k2 + 1
    rows = (np.arange(h)[:, None, None, None] + np.arange(k1)[None, None, :, None])
    cols = (np.arange(v)[None, :, None, None] + np.arange(k2)[None, None, None, :])
    patches = x[:, :, rows, cols]                                  # (N, C, h, v, k1, k2)
    out = xp.tensordot(patches, w, axes=([1, 4, 5], [1, 2, 3]))   # (N, h, v, O)
    return xp.transpose(out, (0, 3, 1, 2))


def _block_max(xp, x, kernel_size, stride, padding):
    """Max pooling over non-overlapping windows (stride = kernel, no padding) by a reshape."""
    k = kernel_size
    if (stride not in (None, k)) or padding:
        raise NotImplementedError("this max pool covers stride = kernel size and no padding")
    n, c, h, v = x.shape
    return xp.max(xp.reshape(x, (n, c, h // k, k, v // k, k)), axis=(3, 5))
