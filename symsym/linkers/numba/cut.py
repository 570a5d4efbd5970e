"""Cutting a long fused region into kernels that numba compiles in bounded time.

A region is a run of elementwise nodes in schedule order; any contiguous run
of it is a valid kernel (every edge goes forward, so pieces form no cycle).
numba's compile time and memory grow with a kernel's length and, much
faster, with its number of arguments and results, so a piece ends where
either would pass its limit. Cutting by node count alone left pieces of an
unrolled LSTM with hundreds of values each, which were then dropped to numpy
calls whole.
"""

from __future__ import annotations

from common.graph import Node

__all__ = ["pieces"]


def pieces(nodes: list[Node], consumers: dict[int, list], max_nodes: int, max_values: int) -> list[list[Node]]:
    """``nodes`` (schedule order) as consecutive pieces of at most ``max_nodes`` nodes, each reading and
    giving back at most ``max_values`` values where a single node allows it (counted as the piece grows: a
    value is given back while any consumer of it, or the function's output, is outside the piece)."""
    out: list[list[Node]] = []
    piece: list[Node] = []
    inside: dict[int, int] = {}   # id -> consumers not yet in the piece (None, an output, never joins)
    reads: set[int] = set()
    open_values = 0
    for n in nodes:
        fresh = {id(i) for i in n.inputs if id(i) not in inside} - reads
        closing = sum(1 for i in {id(i) for i in n.inputs} if inside.get(i) == _uses(n, i))
        if piece and (len(piece) >= max_nodes or len(reads) + len(fresh) + open_values + 1 - closing > max_values):
            out.append(piece)
            piece, inside, reads, open_values = [], {}, set(), 0
            fresh = {id(i) for i in n.inputs}
            closing = 0
        for i in {id(i) for i in n.inputs}:
            if i in inside:
                inside[i] -= _uses(n, i)
                open_values -= inside[i] == 0
        reads |= fresh
        inside[id(n)] = len(consumers[id(n)])
        open_values += inside[id(n)] > 0
        piece.append(n)
    if piece:
        out.append(piece)
    return out


def _uses(n: Node, i: int) -> int:
    """How many times ``n`` reads the value with id ``i`` (a consumer list holds ``n`` once per read)."""
    return sum(1 for x in n.inputs if id(x) == i)
