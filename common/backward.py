"""The reverse sweep over a graph, in any namespace: Algorithm 6.6's ``build_grad`` as one loop.

One function, used twice: ``symsym.grad`` runs it over the user's graph in
the symbolic namespace (adding derivative nodes), and the loop ops run it
over a *body* to build the body of their reverse loop (:mod:`common.control`),
so a loop's derivative is made by the same rules, the same way, as the
derivative of the graph around it. Nodes are visited in reverse topological
order, so every consumer has added its term before a node's cotangent is
summed: the book's memo (the ``grad_table``) without its recursion.

A tuple-valued node (a loop or branch) gets a :class:`TupleCotangent` from the
``item`` nodes that read it; ``+`` merges those, so the sum below needs no
special case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from .body import TUPLE
from .graph import Node
from .ops.table import NO_GRAD, ZERO


class TupleCotangent:
    """The cotangent of a tuple-valued node: one cotangent per output that got one (by output index).

    Made by the ``item`` op's VJP rule; summed with ``+`` (outputs present in
    both are added with the namespace's own ``+``), read by the loop's VJP
    rule with ``ct[k]`` (:data:`ZERO` for an output that got none). Shape
    ``()`` and dtype :data:`common.body.TUPLE`, like the node it belongs to, so
    a sweep's dtype check passes it through.
    """

    __slots__ = ("parts",)
    shape = ()
    dtype = TUPLE

    def __init__(self, parts: dict):
        self.parts = parts

    def __add__(self, other: TupleCotangent) -> TupleCotangent:
        parts = dict(self.parts)
        for k, v in other.parts.items():
            old = parts.get(k)
            parts[k] = v if old is None else old + v
        return TupleCotangent(parts)

    __radd__ = __add__

    def __getitem__(self, k: int):
        return self.parts.get(k, ZERO)

    def __repr__(self) -> str:
        return f"TupleCotangent({sorted(self.parts)})"


def floating(n) -> bool:
    """Whether ``n`` can carry a gradient: a float value, or a tuple (a loop) whose outputs may be float."""
    return n.dtype.kind in "fO"


def relevant_nodes(order: list[Node], wrt_ids: set[int], blocked: set[int]) -> set[int]:
    """Ids of the nodes in ``order`` that depend on ``wrt`` through differentiable edges.

    ``order`` is already the cost's ancestors, so what is kept is Algorithm
    6.5's pruned graph: ancestors of the cost that are descendants of ``wrt``.
    A node in ``blocked`` (``consider_constant``) passes nothing on.
    """
    keep: set[int] = set(wrt_ids)
    for n in order:
        if n.op is None or id(n) in blocked or not floating(n):
            continue
        op = n.op
        for i, x in enumerate(n.inputs):
            if id(x) in keep and op.differentiable(i):
                keep.add(id(n))
                break
    return keep


def accumulate(ns, terms: list, like: Node):
    """The sum of a node's cotangent terms, in the node's dtype."""
    total = terms[0]
    for t in terms[1:]:
        total = total + t
    if total.dtype != like.dtype:
        total = ns.cast(total, like.dtype)
    return total


Trace = Callable[[Node, Node, int, object], None]


def sweep(order: list[Node], seeds: dict[int, list], wrt_ids: set[int], ns, blocked: Iterable[int] = (),
          known: dict | None = None, trace: Trace | None = None) -> dict[int, object]:
    """The grad_table (node id -> cotangent) of the nodes of ``order`` that the ``wrt`` ids reach.

    ``order`` is a toposort holding the seeded nodes; ``seeds`` maps node ids
    to their initial cotangent terms. A node in ``known`` gets that cotangent
    whatever flows from above (Theano's known_grads); one in ``blocked``
    passes nothing on. ``trace(V, C, i, term)`` sees each term.
    """
    known = known or {}
    blocked = set(blocked)
    keep = relevant_nodes(order, wrt_ids, blocked)
    table: dict[int, object] = {}
    pending: dict[int, list] = {k: list(v) for k, v in seeds.items()}
    for node in reversed(order):
        k = id(node)
        terms = pending.pop(k, None)
        if terms is None or k not in keep:
            continue
        if k in known:
            terms = [known[k]]
        g = accumulate(ns, terms, node) if len(terms) > 1 or terms[0].dtype != node.dtype else terms[0]
        table[k] = g
        op = node.op
        if op is None or k in blocked:
            continue
        inputs = node.inputs
        wanted = [i for i, x in enumerate(inputs) if id(x) in keep and op.differentiable(i)]
        if not wanted:
            continue
        terms = op.pullback(ns, g, node, inputs, node.params, wanted)
        for i in wanted:
            term = terms[i]
            if term is NO_GRAD:
                continue
            x = inputs[i]
            if trace is not None:
                trace(x, node, i, term)
            pending.setdefault(id(x), []).append(term)
    return table
