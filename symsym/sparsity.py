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
IEEE corner cases where the dense evaluation would form ``0 * inf``. What an
op does to zeros is read off its traits (see :class:`common.ops.Op`), never
off a list of op names here: an elementwise op is zero where an input it is
linear in is, or where all of its inputs are if it keeps zeros; a reduction
that keeps zeros is zero where its whole slice is; an op linear in all of its
value inputs (the shape ops, matmul, einsum) is run on the pattern itself.
"""

from __future__ import annotations

import numpy as np

from common.api import const, symbolic
from common.graph import Node, toposort
from common.ops import Kind, Op

from .vectorize import vectorize

__all__ = ["colour_rows", "compressed_jacobian", "pattern"]

#: at most this many elements in a dense pattern (m * n), or no compression is tried
MAX_PATTERN = 4_000_000
#: at most this many elements in any one node's pattern while reading the zeros off the graph: a node of a
#: huge declared shape (a broadcast of a loaded graph, say) makes the analysis give up, never allocate it
MAX_NODE_PATTERN = 4 * MAX_PATTERN


def pattern(out: Node, seed: Node) -> np.ndarray | None:
    """Where ``out`` may be nonzero, as a bool array, given the constant ``seed`` it is linear in.

    None when some shape is unknown or some node on the way has more than
    :data:`MAX_NODE_PATTERN` elements (the analysis would cost more than the
    dense Jacobian it tries to save). A node that does not depend on
    ``seed`` counts as nonzero everywhere unless it is a constant.
    """
    maybe: dict[int, np.ndarray | None] = {}  # None: independent of the seed
    for n in toposort([out]):
        if n is seed:
            maybe[id(n)] = n.value != 0
            continue
        if n.op is None or all(maybe[id(i)] is None for i in n.inputs):
            maybe[id(n)] = None
            continue
        if not _affordable(n) or not all(_affordable(i) for i in n.inputs):
            return None
        maybe[id(n)] = _transfer(n, [_known(i, maybe[id(i)]) for i in n.inputs])
    result = maybe[id(out)]
    return np.ones(out.shape, bool) if result is None else np.broadcast_to(result, out.shape)


def _affordable(n: Node) -> bool:
    """Whether ``n``'s pattern is known statically and small enough to hold as a bool array."""
    size = n.size
    return size is not None and size <= MAX_NODE_PATTERN


def _known(n: Node, p):
    """The pattern of an input: its own, a constant's nonzeros, or everywhere."""
    if p is not None:
        return p
    if n.value is not None:
        return n.value != 0
    return np.ones(n.shape, bool)


def _transfer(n: Node, ps: list) -> np.ndarray:
    """Where ``n`` may be nonzero given where its inputs may be (sound over-approximation)."""
    op = n.op
    if op.kind is Kind.ELEMENTWISE:
        p = _elementwise(op, ps)
        return np.ones(n.shape, bool) if p is None else np.broadcast_to(p, n.shape)
    if _runs_on_patterns(op, len(ps)):
        return _on_patterns(n, ps)
    if op.kind is Kind.REDUCTION and op.zero:
        return np.any(ps[0], axis=n.params["axis"], keepdims=n.params["keepdims"])
    return np.ones(n.shape, bool)


def _elementwise(op: Op, ps: list) -> np.ndarray | None:
    """Zero where an input the op is linear in is zero, and where all inputs it keeps zeros of are (None: anywhere)."""
    p = None
    for i in op.linear.of(len(ps)):  # mul: x * y is zero where x is, and where y is
        p = ps[i] if p is None else p & ps[i]
    together = op.linear_together.of(len(ps)) or (tuple(range(len(ps))) if op.zero else ())
    if together:  # add, where's two values, sin: zero where all of them are
        union = ps[together[0]]
        for i in together[1:]:
            union = union | ps[i]
        p = union if p is None else p & union
    return p


def _runs_on_patterns(op: Op, n: int) -> bool:
    """Whether the op's zeros are found by running its impl on 0/1 patterns: every input is one it is linear
    in (so the impl only moves, sums and multiplies entries, which tests/test_op_traits.py checks), one read
    for its shape, or an index array."""
    for i in range(n):
        if not (i in op.linear or i in op.linear_together or i in op.shape_only or i in op.index):
            return False
    return True


def _on_patterns(n: Node, ps: list) -> np.ndarray:
    """The op's impl on the 0/1 patterns of its inputs (index arrays as they are: they must be constants)."""
    args = []
    for k, (i, p) in enumerate(zip(n.inputs, ps)):
        if k in n.op.index:
            if i.value is None:
                return np.ones(n.shape, bool)
            args.append(i.value)
        else:
            args.append(p.astype(np.int64))
    return np.asarray(n.op.impl(*args, **n.params)) != 0


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
    values = symbolic.getitem(symbolic.reshape(packed, (k, n)), (const(colours[rows]), const(cols)))
    blank = symbolic.broadcast_to(const(np.zeros((), row.dtype)), (m, n))
    return symbolic.scatter_add(values, blank, const(rows), const(cols), index=(("array", 0), ("array", 1)))
