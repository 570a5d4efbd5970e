"""Pytrees of graph nodes: ``grad``, ``jacobian``, ``hessian`` and ``function`` over parameters kept as
dicts, lists, tuples or namedtuples of variables (:mod:`common.tree` has the model).

A transform takes the tree apart, works on its leaves, and hands back the
same structure; a leaf that is not a node is a :class:`~common.errors.TreeError`
naming the transform and the structure.
"""

from __future__ import annotations

from collections.abc import Callable

from common.errors import TreeError
from common.graph import Node
from common.site import user_site
from common.tree import TreeDef, tree_flatten, tree_unflatten


def node_leaves(tree, what: str, where: str) -> tuple[list[Node], TreeDef]:
    """The leaves of a tree of nodes and its structure, or a TreeError naming ``what`` and ``where``."""
    leaves, treedef = tree_flatten(tree)
    for i, n in enumerate(leaves):
        if not isinstance(n, Node):
            raise TreeError(f"{what}: {where} is a tree {treedef!r} whose leaf {i} is a {type(n).__name__}, not a "
                            f"graph node (at {user_site()})")
    return leaves, treedef


def over_pairs(fn: Callable[[Node, Node], Node], y, x, what: str):
    """``fn(y_i, x_j)`` for each leaf of ``y`` and of ``x``: ``y``'s structure of ``x``'s structure of blocks
    (JAX's order for a Jacobian); ``fn(y, x)`` itself when both are nodes."""
    if isinstance(y, Node) and isinstance(x, Node):
        return fn(y, x)
    ys, y_def = node_leaves(y, what, "the output")
    xs, x_def = node_leaves(x, what, "the input")
    return tree_unflatten(y_def, [tree_unflatten(x_def, [fn(yi, xj) for xj in xs]) for yi in ys])
