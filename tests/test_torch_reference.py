"""Every op case through PyTorch (float64), where PyTorch has the op: value, gradient and Hessian-vector
product against symnum's tape.

PyTorch's derivative formulas are written apart from twograd's op table, so this is a reference no
rule shares. :data:`TORCH` maps op names to torch functions with twograd's signature; a case runs
with the table as its namespace (``ns.sum(x, axis=1)`` is ``torch.sum(x, dim=1)``), and a case that
uses an op the table lacks (the adjoint helpers sum_to, scatter_add, ...) is skipped with that reason.
Skips as a whole where torch is not installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import refchecks
from opcases import BODIED, CASES

import symnum as S
from common import OPS

torch = pytest.importorskip("torch")
F = torch.nn.functional


def _dims(axis, ndim):
    return tuple(range(ndim)) if axis is None else (axis,) if isinstance(axis, int) else tuple(axis)


def _reduce(fn):
    """A torch reduction over one or several axes (None: all) with twograd's ``axis``/``keepdims``."""
    def reduce(x, axis=None, keepdims=False):
        return fn(x, dim=_dims(axis, x.ndim), keepdim=keepdims)
    return reduce


def _prod(x, axis=None, keepdims=False):
    """torch.prod takes one dim: reduce the axes one at a time, from the last."""
    for d in sorted(_dims(axis, x.ndim), reverse=True):
        x = torch.prod(x, dim=d, keepdim=keepdims)
    return x


def _expand_dims(x, axis):
    axis = (axis,) if isinstance(axis, int) else axis
    for d in sorted(a % (x.ndim + len(axis)) for a in axis):
        x = torch.unsqueeze(x, d)
    return x


def _vector_rhs(solve, a, b):
    """numpy's and scipy's b of shape (..., n) as torch's (..., n, 1)."""
    if b.ndim == 1:
        return solve(a, b.unsqueeze(-1)).squeeze(-1)
    return solve(a, b)


def _along(fn):
    """A numpy-style ``f(x, axis=None)`` from torch's ``f(x, dim)``: ``axis=None`` runs on the flattened x."""
    return lambda x, axis=None: fn(x.reshape(-1), 0) if axis is None else fn(x, axis)


def _same_name(*names):
    """Ops that torch spells as twograd does."""
    return {n: getattr(torch, n) for n in names}


TORCH = {
    **_same_name("neg", "exp", "log", "log1p", "expm1", "sin", "cos", "tan", "tanh", "sinh", "cosh", "sigmoid",
               "relu", "sqrt", "square", "abs", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "where",
               "lt", "le", "gt", "ge", "eq", "ne", "matmul", "einsum", "reshape", "sign",
               "zeros_like", "ones_like"),
    "broadcast_to": lambda x, shape: torch.broadcast_to(x, tuple(shape) if np.iterable(shape) else (shape,)),
    "arcsin": torch.asin,
    "arctan": torch.atan,
    "softplus": F.softplus,
    "sum": _reduce(torch.sum),
    "mean": _reduce(torch.mean),
    "max": _reduce(torch.amax),
    "min": _reduce(torch.amin),
    "prod": _prod,
    "logsumexp": _reduce(torch.logsumexp),
    "transpose": lambda x, axes=None: x.permute(*(axes or reversed(range(x.ndim)))),
    "expand_dims": _expand_dims,
    "squeeze": lambda x, axis=None: torch.squeeze(x) if axis is None else torch.squeeze(x, axis),
    "concatenate": lambda xs, axis=0: torch.cat(xs, dim=axis),
    "stack": lambda xs, axis=0: torch.stack(xs, dim=axis),
    "tril": lambda x, k=0: torch.tril(x, k),
    "triu": lambda x, k=0: torch.triu(x, k),
    "softmax": lambda x, axis: torch.softmax(x, dim=axis),
    "log_softmax": lambda x, axis: torch.log_softmax(x, dim=axis),
    # class probabilities as targets (any nonnegative weights: the loss is -sum(t * log_softmax(z)))
    "softmax_cross_entropy": lambda z, t, axis=-1: F.cross_entropy(z.movedim(axis, 1), t.movedim(axis, 1),
                                                                   reduction="none"),
    "stop_gradient": torch.Tensor.detach,
    "full_like": torch.full_like,
    "cast": lambda x, dtype: x.to(getattr(torch, np.dtype(dtype).name)),
    "arccos": torch.acos,
    "arccosh": torch.acosh,
    "arcsinh": torch.asinh,
    "arctanh": torch.atanh,
    **_same_name("erf", "erfc", "hypot", "logaddexp"),
    "arctan2": torch.atan2,
    "clip": torch.clamp,
    "cumsum": _along(torch.cumsum),
    "cumprod": _along(torch.cumprod),
    "logcumsumexp": _along(torch.logcumsumexp),
    "argsort": lambda x, axis=-1: _along(lambda y, dim: torch.argsort(y, dim=dim, stable=True))(x, axis),
    "argmax": lambda x, axis=None, keepdims=False: torch.argmax(x, dim=axis, keepdim=keepdims),
    "argwhere": torch.argwhere,
    "argmin": lambda x, axis=None, keepdims=False: torch.argmin(x, dim=axis, keepdim=keepdims),
    "sparse_softmax_cross_entropy": lambda z, labels, axis=-1: F.cross_entropy(
        z.movedim(axis, 1), torch.as_tensor(labels).long(), reduction="none"),
    "solve": torch.linalg.solve,
    "solve_triangular": lambda a, b, lower=True: _vector_rhs(
        lambda a, b: torch.linalg.solve_triangular(a, b, upper=not lower), a, b),
    "cholesky": torch.linalg.cholesky,
    "inv": torch.linalg.inv,
    "det": torch.linalg.det,
    "slogdet_sign": lambda a: torch.linalg.slogdet(a)[0],
    "slogdet_logabs": lambda a: torch.linalg.slogdet(a)[1],
    "eigh_w": lambda a: torch.linalg.eigh(a)[0],
    "eigh_v": lambda a: torch.linalg.eigh(a)[1],
    "svd_u": lambda a, full_matrices=False: torch.linalg.svd(a, full_matrices=full_matrices)[0],
    "svd_s": lambda a, full_matrices=False: torch.linalg.svd(a, full_matrices=full_matrices)[1],
    "svd_vh": lambda a, full_matrices=False: torch.linalg.svd(a, full_matrices=full_matrices)[2],
    "qr_q": lambda a: torch.linalg.qr(a)[0],
    "qr_r": lambda a: torch.linalg.qr(a)[1],
    "conv": lambda x, w, stride=1, padding=0, dilation=1, groups=1: (F.conv1d if w.ndim == 3 else F.conv2d)(
        x, w, stride=stride, padding=padding, dilation=dilation, groups=groups),
}
"""twograd op name -> the torch function computing it, with twograd's arguments."""

NOT_IN_TORCH = {"getitem": "a negative slice step (x[..., ::-2]) has no torch spelling"}
"""Cases PyTorch cannot run as written, by op, with the reason (the other cases of the op run)."""


class _Torch:
    """The namespace a case runs in: ``ns.<op>`` is :data:`TORCH`'s entry."""

    def __getattr__(self, name):
        if name not in TORCH:
            pytest.skip(f"PyTorch has no op {name!r} (a twograd adjoint or graph helper)")
        return TORCH[name]


DIFF = [c for c in CASES if c.wrt]


def _torch_derivatives(pt):
    """(value, J^T w, H v) of the case in PyTorch, float64."""
    ts = [torch.tensor(a, requires_grad=k in pt.wrt) if a.dtype.kind == "f" else torch.as_tensor(a)
          for k, a in enumerate(pt.arrays)]
    wrt = [ts[k] for k in pt.wrt]
    out = pt.case.fn(_Torch(), *ts)
    cost = torch.sum(out * torch.tensor(pt.weights))
    grads = torch.autograd.grad(cost, wrt, create_graph=True)
    inner = sum(torch.sum(g * torch.tensor(v)) for g, v in zip(grads, pt.vs))
    hv = torch.autograd.grad(inner, wrt, allow_unused=True) if inner.requires_grad else [None] * len(wrt)
    hv = [np.zeros(w.shape) if h is None else h.detach().numpy(force=True) for h, w in zip(hv, wrt)]
    return out.detach().numpy(), [g.detach().numpy() for g in grads], hv


def _runs_in_torch(case) -> None:
    try:
        case.fn(_Torch(), *[torch.as_tensor(a) for a in case.inputs(np.random.default_rng(0))])
    except (TypeError, ValueError, IndexError, RuntimeError) as e:
        reason = NOT_IN_TORCH.get(case.op)
        if reason is None:
            raise
        pytest.skip(f"{case.id}: {reason} ({type(e).__name__})")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_value_matches_pytorch(case):
    _runs_in_torch(case)
    arrays = [np.asarray(a) for a in case.inputs(np.random.default_rng(3))]
    want = case.fn(_Torch(), *[torch.as_tensor(a) for a in arrays])
    got = case.fn(S.tape, *[S.tensor(a) for a in arrays])
    np.testing.assert_allclose(np.asarray(got.data), want.numpy(), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_first_and_second_derivatives_match_pytorch(case):
    """J^T w and H v (along one direction over every differentiated input) on symnum's tape and in torch."""
    _runs_in_torch(case)
    pt = refchecks.point(case, seed=3)
    _, grads, hv = _torch_derivatives(pt)
    for k, got, want in zip(pt.wrt, refchecks.tape_gradient(pt), grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"d/dx{k}")
    for k, got, want in zip(pt.wrt, refchecks.tape_hvp(pt), hv):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"(H v) block x{k}")


def test_the_table_covers_every_op_torch_has():
    """An op missing from the table is an op with no PyTorch check: only twograd's own helpers may be."""
    helpers = {"sum_to", "sum_like", "broadcast_like", "reshape_like", "scatter_add", "concat_part", "count", "full",
               "cumprod_grad", "cholesky_grad", "conv_transpose", "conv_weight", "windows",
               "unwindows"}  # (adjoints of the above)
    indexing = {"getitem"}  # x[...] on a torch tensor
    assert set(OPS) - BODIED - set(TORCH) - indexing == helpers
