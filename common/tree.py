"""Pytrees: the leaves of a nest of lists and tuples, and the nest rebuilt around other leaves.

The loop builders (:mod:`common.control`) take carries and outputs in the
user's own nesting, as symnum's Python loops do: both take them apart and put
them together here.
"""

from __future__ import annotations

from collections.abc import Sequence

LEAF = None


def flatten(tree) -> tuple[list, object]:
    """The leaves of a nest of lists/tuples, and its structure (``None`` for a single leaf).

    A structure is ``("list" | "tuple", ((child structure, its leaf count), ...))``,
    hashable, so equal nests can share one. User pytrees are a few levels deep,
    so this recursion is bounded by the user's own nesting.
    """
    if isinstance(tree, (list, tuple)):
        leaves: list = []
        kids = []
        for t in tree:
            sub, struct = flatten(t)
            leaves.extend(sub)
            kids.append((struct, len(sub)))
        return leaves, ("list" if isinstance(tree, list) else "tuple", tuple(kids))
    return [tree], LEAF


def unflatten(struct, leaves: Sequence):
    """The nest :func:`flatten` took apart, with ``leaves`` in place of its leaves."""
    if struct is LEAF:
        return leaves[0]
    kind, kids = struct
    out, at = [], 0
    for sub, n in kids:
        out.append(unflatten(sub, leaves[at:at + n]))
        at += n
    return out if kind == "list" else tuple(out)
