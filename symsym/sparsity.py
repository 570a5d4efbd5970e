"""Sparse Jacobians and Hessians: structural zeros, row colouring, compressed evaluation.

A vectorised Jacobian runs the VJP graph once for each of the m basis
cotangents, so every batched op costs O(m * n) even when the Jacobian is
banded: the extended Rosenbrock Hessian is tridiagonal, yet its dense batched
reverse pass touches n^2 numbers at each of its ~20 ops. Curtis, Powell and
Reid's remedy (1974) is to seed several rows at once:

1. :func:`pattern`: which entries are zero *whatever the inputs*, read off the
   batched graph itself by running it on booleans (a value is "maybe
   nonzero"; ``a * b`` is nonzero only where both are, ``a + b`` where either
   is, a value that does not depend on the seed may be nonzero anywhere);
2. :func:`colour_rows`: rows whose nonzero columns are disjoint get the same
   colour (greedy; a tridiagonal matrix needs 3 colours);
3. :func:`compressed_jacobian`: one batched VJP per colour, seeded with the
   sum of that colour's basis cotangents, and each nonzero entry gathered
   from its colour's row. Three batched rows instead of n.

The pattern is sound: an entry called zero is zero for every input, up to
IEEE corner cases where the dense evaluation would form ``0 * inf``.
"""

from __future__ import annotations

import numpy as np

from common.api import const
from common.api import symbolic as S
from common.graph import Node, toposort

from .vectorize import vectorize

__all__ = ["colour_rows", "compressed_jacobian", "pattern"]

#: at most this many elements in a dense pattern (m * n), or no compression is tried
MAX_PATTERN = 4_000_000

_KEEP_ZERO = frozenset("neg cast stop_gradient sin tan tanh sqrt square abs sign relu expm1 log1p".split())
_UNION = frozenset("add sub maximum minimum".split())
_ANY = frozenset("sum mean max min".split())
_LINEAR = frozenset("reshape reshape_like broadcast_to broadcast_like expand_dims squeeze transpose "
                    "tril triu concatenate stack concat_part sum_to sum_like matmul einsum".split())
_INDEXED = {"getitem": 1, "scatter_add": 2}  # where the index arrays start


def pattern(out: Node, seed: Node) -> np.ndarray | None:
    """Where ``out`` may be nonzero, as a bool array, given the constant ``seed`` it is linear in.

    None when some shape is unknown. A node that does not depend on ``seed``
    counts as nonzero everywhere unless it is a constant.
    """
    maybe: dict[int, np.ndarray | None] = {}  # None: independent of the seed
    for n in toposort([out]):
        if n is seed:
            maybe[id(n)] = n.value != 0
            continue
        if n.op is None or all(maybe[id(i)] is None for i in n.inputs):
            maybe[id(n)] = None
            continue
        if None in n.shape or any(None in i.shape for i in n.inputs):
            return None
        maybe[id(n)] = _transfer(n, [_known(i, maybe[id(i)]) for i in n.inputs])
    result = maybe[id(out)]
    return np.ones(out.shape, bool) if result is None else np.broadcast_to(result, out.shape)


def _known(n: Node, p):
    """The pattern of an input: its own, a constant's nonzeros, or everywhere."""
    if p is not None:
        return p
    if n.value is not None:
        return n.value != 0
    return np.ones(n.shape, bool)


def _transfer(n: Node, ps: list) -> np.ndarray:
    """Where ``n`` may be nonzero given where its inputs may be (sound over-approximation)."""
    name = n.op.name
    everywhere = np.ones(n.shape, bool)
    if name in _KEEP_ZERO:
        return ps[0]
    if name == "mul":
        return ps[0] & ps[1]
    if name == "div":
        return np.broadcast_to(ps[0], n.shape)
    if name in _UNION:
        return ps[0] | ps[1]
    if name == "where":
        return np.broadcast_to(ps[1] | ps[2], n.shape)
    if name in _ANY:
        return np.any(ps[0], axis=n.params["axis"], keepdims=n.params["keepdims"])
    if name in _LINEAR:
        return np.asarray(n.op.impl(*[p.astype(np.int64) for p in ps], **n.params)) != 0
    if name in _INDEXED:
        start = _INDEXED[name]
        arrays = [i.value for i in n.inputs[start:]]
        if any(a is None for a in arrays):
            return everywhere
        return np.asarray(n.op.impl(*[p.astype(np.int64) for p in ps[:start]], *arrays, **n.params)) != 0
    return everywhere


def colour_rows(p: np.ndarray) -> np.ndarray:
    """A colour per row of the 2-d pattern ``p``; rows of one colour share no nonzero column.

    Greedy in row order (Curtis-Powell-Reid): each row takes the first colour
    none of its columns is taken by yet.
    """
    m, n = p.shape
    colours = np.zeros(m, np.int64)
    taken = np.zeros((0, n), bool)  # taken[c, j]: a row of colour c has a nonzero at column j
    for i in range(m):
        cols = p[i]
        free = ~(taken[:, cols].any(axis=1))
        c = int(np.argmax(free)) if free.any() else len(taken)
        if c == len(taken):
            taken = np.vstack([taken, np.zeros((1, n), bool)])
        taken[c, cols] = True
        colours[i] = c
    return colours


def compressed_jacobian(row: Node, u: Node, dense: Node, basis: Node, n: int) -> Node | None:
    """The Jacobian ``dense`` (rows ``row`` batched over the constant ``basis``), compressed.

    ``row`` is the VJP ``u^T J`` for a symbolic cotangent ``u`` of m elements,
    with respect to an input of ``n`` elements; ``dense`` is ``row`` batched
    over the m basis cotangents. Returns an (m, n) node, or None when
    compression does not pay (unknown shapes, a dense pattern, or a pattern
    too big to compute).
    """
    m = basis.shape[0]
    if m * n > MAX_PATTERN or m < 4:
        return None
    p = pattern(dense, basis)
    if p is None:
        return None
    p = p.reshape(m, n)
    colours = colour_rows(p)
    k = int(colours.max()) + 1
    if 2 * k > m:
        return None
    seeds = np.zeros((k, m), u.dtype)
    seeds[colours, np.arange(m)] = 1
    (packed,) = vectorize([row], {u: const(seeds.reshape((k, *u.shape)))}, k)
    rows, cols = np.nonzero(p)
    values = S.getitem(S.reshape(packed, (k, n)), (const(colours[rows]), const(cols)))
    blank = S.broadcast_to(const(np.zeros((), row.dtype)), (m, n))
    return S.scatter_add(values, blank, const(rows), const(cols), index=(("array", 0), ("array", 1)))
