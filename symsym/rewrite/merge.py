"""Merge (common-subexpression elimination) by hash-consing.

Two nodes are the same computation when they apply the same op with the same
params to the same (already merged) inputs; small constants are the same when
their bytes are. One dictionary lookup per node keeps the pass O(n), and it
catches what ``grad`` duplicates freely (each consumer's rule rebuilds
``cos(x)``, ``transpose(w)``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

from common.graph import Node

from .rules import run_rules


def merge(outputs: Sequence[Node], counts: dict | None = None) -> list[Node]:
    """``outputs`` with every repeated subcomputation shared."""
    return run_rules(outputs, (), merge=True, counts=counts)
