"""Higher-order derivatives, all by applying ``grad`` to graphs it produced.

* ``jacobian(y, x)``: the rows of dy/dx. The loop form takes one ``grad`` per
  element of ``y``; the vectorised form (the default) builds the VJP of ``y``
  for a symbolic cotangent ``u`` once and then :func:`~symsym.vectorize` s it
  over the batch of all basis cotangents: ONE graph, whatever the size of y.
* ``hessian(cost, x)``: the vectorised Jacobian of the gradient.
* ``hvp(cost, x, v)``: the R-op of §6.5.10, grad(grad(cost, x) . v, x), which
  never forms H.
* ``jvp(y, x, v)``: forward mode, in :mod:`symsym.forward` (a forward sweep
  of the ops' JVP rules, not two reverse passes).
"""

from __future__ import annotations

import functools
import operator

import numpy as np

from common.api import const, symbolic, var
from common.errors import GradError, TreeError
from common.graph import Node
from common.site import user_site
from common.tree import tree_unflatten

from .forward import jacfwd, jvp, static_size
from .grad import grad
from .jacmode import pick_mode, remember
from .sparsity import compressed_jacobian
from .trees import node_leaves, over_pairs
from .vectorize import vectorize

__all__ = ["hessian", "hvp", "jacobian", "jacrev", "jvp"]


def _cotangent(like: Node) -> Node:
    return var(f"cotangent of {like.name or (like.op.name if like.op else 'input')}", like.shape, like.dtype)


def jacobian(y, x, vectorized: bool = True, disconnected: str = "zero", sparse: bool = True,
             mode: str = "auto"):
    """dy/dx as a node of shape ``y.shape + x.shape`` (both shapes static).

    ``y`` and ``x`` may be pytrees of nodes (``[W, b]``, a dict): the result
    is then ``y``'s structure of ``x``'s structure of blocks
    ``y_i.shape + x_j.shape``, as JAX's.

    ``mode="auto"`` builds it by forward mode (:func:`symsym.jacfwd`, a
    column per element of x) when x has fewer elements than y, else by
    reverse mode (a row per element of y): the smaller batch (book section
    6.5.9). ``"forward"`` or ``"reverse"`` forces one;
    :func:`symsym.jacobian_mode` says which a result was built in, and
    :func:`symsym.explain_jacobian` shows the sizes and the chain's cheapest
    multiplication order. In reverse mode with ``sparse`` (the default), a
    Jacobian with structural zeros is computed from one batched row per colour
    of :func:`~symsym.sparsity.colour_rows` instead of one per row; the result
    is the same dense array.
    """
    if mode not in ("auto", "forward", "reverse"):
        raise GradError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r} (at {user_site()})")
    return over_pairs(lambda yi, xj: _jacobian(yi, xj, vectorized, disconnected, sparse, mode), y, x, "jacobian")


def _jacobian(y: Node, x: Node, vectorized: bool, disconnected: str, sparse: bool, mode: str) -> Node:
    m = static_size(y, "jacobian")
    n = static_size(x, "jacobian")
    if mode == "auto":
        mode = pick_mode(y, x) if vectorized else "reverse"
    if mode == "forward":
        return remember(jacfwd(y, x), "forward")
    if not vectorized:
        flat = symbolic.reshape(y, (m,))
        rows = [grad(symbolic.getitem(flat, index=(("int", k),)), x, disconnected=disconnected) for k in range(m)]
        return remember(symbolic.reshape(symbolic.stack(rows, axis=0), y.shape + x.shape), "reverse")
    u = _cotangent(y)
    row = grad(y, x, known_grads={y: u}, disconnected=disconnected)
    basis = const(np.eye(m, dtype=y.dtype).reshape((m, *y.shape)))
    (rows,) = vectorize([row], {u: basis}, m)
    if sparse:
        packed = compressed_jacobian(row, u, rows, basis, n)
        if packed is not None:
            rows = packed
    return remember(symbolic.reshape(rows, y.shape + x.shape), "reverse")


def hessian(cost: Node, x, sparse: bool = True):
    """d2 cost/dx2 as a node of shape ``x.shape + x.shape``: one vectorised graph.

    A banded or otherwise sparse Hessian costs a few batched rows, not n (see
    ``jacobian``). ``x`` may be a pytree of nodes: the result is then its
    structure of its structure of blocks ``x_i.shape + x_j.shape``.
    """
    if not isinstance(cost, Node):
        raise GradError(f"hessian: cost must be a graph node, got {type(cost).__name__} (at {user_site()})")
    if cost.shape != ():
        raise GradError(f"hessian: cost must be a scalar, got shape {cost.shape} (made at {cost.site})")
    return jacobian(grad(cost, x), x, vectorized=True, sparse=sparse, mode="reverse")


def hvp(cost: Node, x, v):
    """The Hessian-vector product H v, as grad(grad(cost, x) . v, x) (never forms H).

    ``x`` may be a pytree of nodes, ``v`` then of its structure, and so is ``H v``.
    """
    xs, x_def = ([x], None) if isinstance(x, Node) else node_leaves(x, "hvp", "x")
    vs, v_def = ([v], None) if isinstance(v, Node) else node_leaves(v, "hvp", "v")
    if x_def != v_def:
        raise TreeError(f"hvp: v has structure {v_def!r}, but x has {x_def!r} (* a leaf; at {user_site()})")
    for xi, vi in zip(xs, vs):
        if vi.shape != xi.shape and None not in vi.shape + xi.shape:
            raise GradError(f"hvp: v has shape {vi.shape}, expected x's {xi.shape}")
    gs = grad(cost, xs)
    dot = functools.reduce(operator.add, [symbolic.sum(g * vi) for g, vi in zip(gs, vs)])
    out = grad(dot, xs, disconnected="zero")
    return out[0] if x_def is None else tree_unflatten(x_def, out)


def jacrev(y, x, **options):
    """dy/dx by reverse mode: :func:`jacobian` (one batched row per element of ``y``)."""
    return jacobian(y, x, **{**options, "mode": "reverse"})
