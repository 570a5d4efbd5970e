"""Dead-code elimination.

Nodes are immutable and a graph is whatever its outputs reach, so a rewrite
that replaces a node leaves the old one unreachable: it is dead the moment
nothing refers to it. This pass makes that explicit for a *set* of nodes (a
schedule, a drawing): it keeps those the outputs need and counts the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from common.graph import Node, toposort


def live(outputs: Sequence[Node]) -> list[Node]:
    """The nodes ``outputs`` need, inputs first: the only ones worth scheduling."""
    return toposort(list(outputs))


def dce(nodes: Iterable[Node], outputs: Sequence[Node]) -> tuple[list[Node], int]:
    """The nodes of ``nodes`` that ``outputs`` still need, and how many were dropped."""
    alive = {id(n) for n in toposort(list(outputs))}
    kept, dropped = [], 0
    for n in nodes:
        if id(n) in alive:
            kept.append(n)
        else:
            dropped += 1
    return kept, dropped
