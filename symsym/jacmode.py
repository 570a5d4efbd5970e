"""Which way to build a Jacobian: forward, reverse, or (for a chain of ops) which multiplication order.

Book section 6.5.9: the Jacobian of y = f_k(...f_1(x)) is the product
J_k ... J_1 of the ops' Jacobians, J_i of shape (d_i, d_{i-1}), with d_0 the
size of x and d_k the size of y. Reverse mode multiplies from the left
(a row vector at a time: cost grows with d_k), forward mode from the right (a
column at a time: cost grows with d_0), so forward wins when x has fewer
elements than y. Any other bracketing of the product is also valid, and the
cheapest is the matrix-chain problem: dynamic programming over the chain's
intermediate sizes (:func:`chain_order`).

:func:`pick_mode` picks forward or reverse from the two ends; :func:`chain_plan`
finds the chain of single-path ops from x to y and its cheapest bracketing, for
``symsym.explain_jacobian`` to show. The builder itself (``symsym.jacobian``)
uses forward or reverse: its vectorised graphs never form an op's Jacobian as
a dense matrix (an elementwise op's is diagonal), so a mixed order would only
pay off with dense segment Jacobians; the plan says what the book's count gives.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import numpy as np

from common.graph import Node, toposort

__all__ = ["ChainPlan", "chain_order", "chain_plan", "jacobian_mode", "pick_mode", "remember"]

# id(Jacobian node) -> (a weak reference to it, the mode it was built in); by id, since a node's == builds a node
_CHOSEN: dict[int, tuple] = {}

SEARCH_LINKS = 200
"""The longest chain whose multiplication order is searched: the programme costs links^3 steps."""


def _size(n: Node) -> int:
    return int(np.prod(n.shape, dtype=np.int64))


def pick_mode(y: Node, x: Node) -> str:
    """``"forward"`` when x has fewer elements than y (a column per element of x is the smaller batch), else
    ``"reverse"``."""
    return "forward" if _size(x) < _size(y) else "reverse"


def remember(jac: Node, mode: str) -> Node:
    """Note the mode ``jac`` was built in (see :func:`jacobian_mode`); returns ``jac``."""
    key = id(jac)
    _CHOSEN[key] = (weakref.ref(jac, lambda _: _CHOSEN.pop(key, None)), mode)
    return jac


def jacobian_mode(jac: Node) -> str | None:
    """The mode ``symsym.jacobian`` built ``jac`` in: ``"forward"``, ``"reverse"`` (None for another node)."""
    ref, mode = _CHOSEN.get(id(jac), (None, None))
    return mode if ref is not None and ref() is jac else None


def chain_order(dims: list[int]) -> tuple[int, str]:
    """(cost, bracketing) of the cheapest product J_k ... J_1, J_i of shape (dims[i], dims[i-1]).

    The classic matrix-chain dynamic programme, O(k^3) for k matrices: the
    cost of a product of (a, b) by (b, c) is a*b*c multiply-adds.
    """
    k = len(dims) - 1
    if k < 1:
        return 0, ""
    # best[i][j]: cheapest product J_j ... J_i (1 <= i <= j <= k); split[i][j]: where it splits
    best = [[0] * (k + 1) for _ in range(k + 1)]
    split = [[0] * (k + 1) for _ in range(k + 1)]
    for length in range(2, k + 1):
        for i in range(1, k - length + 2):
            j = i + length - 1
            best[i][j] = None
            for s in range(i, j):  # (J_j ... J_{s+1}) (J_s ... J_i)
                c = best[i][s] + best[s + 1][j] + dims[j] * dims[s] * dims[i - 1]
                if best[i][j] is None or c < best[i][j]:
                    best[i][j], split[i][j] = c, s
    return best[1][k], _bracket(split, 1, k)


def _bracket(split, i: int, j: int) -> str:
    """The bracketing of J_j ... J_i, built with an explicit stack (chains may be long)."""
    out: list[str] = []
    stack: list = [(i, j)]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        a, b = item
        if a == b:
            out.append(f"J{a}")
            continue
        s = split[a][b]
        stack.extend([")", (a, s), " ", (s + 1, b), "("])
    return "".join(out)


def _forward_cost(dims: list[int]) -> int:
    return sum(dims[i] * dims[i - 1] * dims[0] for i in range(2, len(dims)))


def _reverse_cost(dims: list[int]) -> int:
    k = len(dims) - 1
    return sum(dims[k] * dims[i] * dims[i - 1] for i in range(1, k))


@dataclass
class ChainPlan:
    """The chain of ops from x to y, its sizes, and the three costs of section 6.5.9 (multiply-adds of
    dense Jacobians)."""

    nodes: list
    dims: list
    order: str
    cost: int
    forward: int
    reverse: int
    mode: str

    def lines(self) -> list[str]:
        """A few lines, one per chain link at most: linear in the chain's length."""
        out = [f"Jacobian of {_name(self.nodes[-1])} {tuple(self.nodes[-1].shape)} with respect to "
               f"{_name(self.nodes[0])} {tuple(self.nodes[0].shape)}: a chain of {len(self.dims) - 1} "
               f"Jacobians J1 .. J{len(self.dims) - 1}"]
        for i in range(1, len(self.nodes)):
            out.append(f"  J{i}: d {_name(self.nodes[i])} / d {_name(self.nodes[i - 1])}, "
                       f"{self.dims[i]} x {self.dims[i - 1]}")
        out.append(f"  forward (J{len(self.dims) - 1} (... (J2 J1))): {self.forward} multiply-adds; "
                   f"reverse (((J{len(self.dims) - 1} J{len(self.dims) - 2}) ...) J1): {self.reverse}")
        out.append(f"  cheapest order: {self.order}: {self.cost}")
        out.append(f"  symsym.jacobian(mode='auto') builds it in {self.mode} mode")
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    __repr__ = __str__


def _name(n: Node) -> str:
    return n.name or (n.op.name if n.op is not None else "const")


def chain(y: Node, x: Node) -> list[Node]:
    """The nodes x = n_0, ..., n_k = y where each n_i is the only input of n_{i+1} that depends on x.

    Where an op has several inputs that depend on x (the chain forks), the
    fork and what lies below it down to x count as one link.
    """
    depends = _depends_on(y, x)
    nodes = [y]
    n = y
    while n is not x:
        ins = [i for i in n.inputs if id(i) in depends]
        if len(ins) != 1:
            nodes.append(x)
            break
        n = ins[0]
        nodes.append(n)
    return nodes[::-1]


def _depends_on(y: Node, x: Node) -> set[int]:
    """The ids of the nodes up to y that depend on x (x included): one pass in topological order."""
    dep = {id(x)}
    for n in toposort([y]):
        if n is not x and any(id(i) in dep for i in n.inputs):
            dep.add(id(n))
    return dep


def chain_plan(y: Node, x: Node) -> ChainPlan:
    """The chain from x to y, its cheapest bracketing and the forward and reverse costs."""
    nodes = chain(y, x)
    dims = [_size(n) for n in nodes]
    forward, reverse = _forward_cost(dims), _reverse_cost(dims)
    if len(dims) - 1 <= SEARCH_LINKS:
        cost, order = chain_order(dims)
    else:  # the programme is cubic in the links: past the limit only the two ends' orders are compared
        cost = min(forward, reverse)
        order = f"not searched ({len(dims) - 1} links > {SEARCH_LINKS}); the cheaper of forward and reverse"
    return ChainPlan(nodes, dims, order, cost, forward, reverse, pick_mode(y, x))
