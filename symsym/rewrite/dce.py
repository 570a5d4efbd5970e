"""Dead-code elimination.

Nodes are immutable and a graph is whatever its outputs reach, so a rewrite
that replaces a node leaves the old one unreachable: it is dead the moment
nothing refers to it, and the rewritten schedule (a toposort of the new
outputs) already leaves it out. What is left to this pass is the count that
``optimize`` reports.
"""

from __future__ import annotations

from collections.abc import Iterable

from common.graph import Node


def dropped(before: Iterable[Node], after: Iterable[Node]) -> int:
    """How many nodes of ``before`` the rewritten graph ``after`` no longer holds."""
    alive = {id(n) for n in after}
    return sum(1 for n in before if id(n) not in alive)
