"""Pytrees: the leaves of a nest of containers, and the nest rebuilt around other leaves (jax.tree_util's model).

Users keep parameters as they think of them (``{"W": W, "b": b}``, a list of
layers, a namedtuple), and every transform of both backends (``grad``,
``jacobian``, ``vmap``, ``symsym.function``, ...) and the loop builders of
:mod:`common.control` take them and hand results back in the same nesting.
They all go through :func:`tree_flatten` and :func:`tree_unflatten`: a
transform works on the flat list of leaves and rebuilds the user's structure
at the end, so no transform knows about containers.

Lists, tuples, dicts (keys in sorted order, as JAX does, so two dicts with the
same keys have one structure whatever order they were built in), namedtuples
and None (an empty subtree: no leaves) are nodes; a new container type joins
with :func:`register_pytree_node`. Everything else is a leaf: each transform
says which leaves it takes (arrays, tensors, graph nodes) and names any other
with :class:`~common.errors.TreeError`. User pytrees are a few levels deep, so
the recursion below is bounded by the user's own nesting, never by a graph.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .errors import TreeError


class _NodeType(NamedTuple):
    flatten: Callable[[Any], tuple[Sequence, Any]]
    unflatten: Callable[[Any, list], Any]


_REGISTRY: dict[type, _NodeType] = {}
"""Container type -> how to take it apart (children, aux data) and put it back (aux data, children)."""


def register_pytree_node(cls: type, flatten: Callable[[Any], tuple[Sequence, Any]],
                         unflatten: Callable[[Any, list], Any]) -> None:
    """Make ``cls`` a node: ``flatten(x) -> (children, aux)``, ``unflatten(aux, children) -> x``.

    ``aux`` is whatever else identifies the node (a dict's keys); it must
    compare with ``==``, since two trees have one structure when their types,
    auxes and children's structures are equal.
    """
    if not isinstance(cls, type):
        raise TreeError(f"register_pytree_node: expected a class, got {cls!r}")
    _REGISTRY[cls] = _NodeType(flatten, unflatten)


def _sorted_keys(d: dict) -> tuple:
    try:
        return tuple(sorted(d))
    except TypeError:  # keys that do not order (mixed types): the dict's own order
        return tuple(d)


register_pytree_node(list, lambda x: (x, None), lambda _, kids: list(kids))
register_pytree_node(tuple, lambda x: (x, None), lambda _, kids: tuple(kids))
def _dict_children(d: dict) -> tuple[list, tuple]:
    keys = _sorted_keys(d)
    return [d[k] for k in keys], keys


register_pytree_node(dict, _dict_children, lambda keys, kids: dict(zip(keys, kids)))
register_pytree_node(type(None), lambda _: ((), None), lambda _, kids: None)


def _node_type(x) -> tuple[type, _NodeType] | None:
    """``x``'s registered type and its rules, or None for a leaf (a namedtuple is its own type)."""
    cls = type(x)
    rules = _REGISTRY.get(cls)
    if rules is not None:
        return cls, rules
    if isinstance(x, tuple) and hasattr(cls, "_fields"):
        return cls, _NodeType(lambda t: (tuple(t), None), lambda _, kids, cls=cls: cls(*kids))
    return None


class TreeDef:
    """A tree's structure without its leaves: compare two with ``==``; ``num_leaves`` counts the leaves."""

    __slots__ = ("cls", "aux", "children", "num_leaves", "_unflatten")

    def __init__(self, cls: type | None, aux, children: tuple, unflatten=None):
        self.cls = cls  # None for a leaf
        self.aux = aux
        self.children = children
        self.num_leaves = 1 if cls is None else sum(c.num_leaves for c in children)
        self._unflatten = unflatten

    def __eq__(self, other) -> bool:
        return isinstance(other, TreeDef) and self.cls is other.cls and self.aux == other.aux \
            and self.children == other.children

    def __hash__(self) -> int:
        return hash((self.cls, len(self.children), self.num_leaves))

    @property
    def is_leaf(self) -> bool:
        return self.cls is None

    def __repr__(self) -> str:
        if self.cls is None:
            return "*"
        if self.cls is type(None):
            return "None"
        if self.cls is dict:
            return "{" + ", ".join(f"{k!r}: {c!r}" for k, c in zip(self.aux, self.children)) + "}"
        inner = ", ".join(map(repr, self.children))
        if self.cls is list:
            return f"[{inner}]"
        if self.cls is tuple:
            return f"({inner}{',' if len(self.children) == 1 else ''})"
        fields = getattr(self.cls, "_fields", None)
        if fields is not None:
            inner = ", ".join(f"{f}={c!r}" for f, c in zip(fields, self.children))
        return f"{self.cls.__name__}({inner})"


LEAF = TreeDef(None, None, ())
"""The structure of a single leaf."""


def tree_flatten(tree) -> tuple[list, TreeDef]:
    """The leaves of ``tree`` in a fixed order (dicts by sorted key) and its structure."""
    leaves: list = []
    return leaves, _flatten(tree, leaves)


def _flatten(tree, leaves: list) -> TreeDef:
    found = _node_type(tree)
    if found is None:
        leaves.append(tree)
        return LEAF
    cls, rules = found
    kids, aux = rules.flatten(tree)
    return TreeDef(cls, aux, tuple(_flatten(k, leaves) for k in kids), rules.unflatten)


def tree_unflatten(treedef: TreeDef, leaves: Sequence):
    """The tree of structure ``treedef`` with ``leaves`` (in :func:`tree_flatten` order) as its leaves."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise TreeError(f"tree_unflatten: the structure {treedef!r} has {treedef.num_leaves} leaves, "
                        f"got {len(leaves)}")
    return _unflatten(treedef, iter(leaves))


def _unflatten(treedef: TreeDef, leaves):
    if treedef.cls is None:
        return next(leaves)
    return treedef._unflatten(treedef.aux, [_unflatten(c, leaves) for c in treedef.children])


def tree_leaves(tree) -> list:
    """The leaves of ``tree`` (:func:`tree_flatten`'s order)."""
    return tree_flatten(tree)[0]


def is_leaf(x) -> bool:
    """Whether ``x`` is a leaf (an array, a number, a tensor), told without flattening it: what a transform
    asks of every argument, so that plain arrays pay for no tree."""
    return _node_type(x) is None


def tree_structure(tree) -> TreeDef:
    """The structure of ``tree``."""
    return tree_flatten(tree)[1]


def tree_map(f: Callable, tree, *rest):
    """``f`` on each leaf of ``tree`` (and the matching leaves of ``rest``, trees of the same structure)."""
    leaves, treedef = tree_flatten(tree)
    others = []
    for k, r in enumerate(rest):
        r_leaves, r_def = tree_flatten(r)
        if r_def != treedef:
            raise TreeError(f"tree_map: tree {k + 1} has structure {r_def!r}, but the first has {treedef!r}")
        others.append(r_leaves)
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])


def broadcast_prefix(prefix, tree, what: str) -> list:
    """One value per leaf of ``tree``: ``prefix`` is ``tree`` cut off above some leaves (each of its leaves
    stands for the whole subtree at that place: vmap's ``in_axes``), or a TreeError naming ``what``."""
    out: list = []
    _broadcast(prefix, tree, out, what)
    return out


def _broadcast(prefix, tree, out: list, what: str) -> None:
    found = _node_type(prefix)
    if found is None or prefix is None and tree is not None:  # a leaf (None as a prefix leaf: "not mapped")
        out.extend([prefix] * tree_structure(tree).num_leaves)
        return
    cls, rules = found
    kids, aux = rules.flatten(prefix)
    t_found = _node_type(tree)
    t_kids, t_aux = t_found[1].flatten(tree) if t_found else (None, None)
    if t_found is None or t_found[0] is not cls or t_aux != aux or len(t_kids) != len(kids):
        raise TreeError(f"{what}: {tree_structure(prefix)!r} is not a prefix of the argument's structure "
                        f"{tree_structure(tree)!r}")
    for p, t in zip(kids, t_kids):
        _broadcast(p, t, out, what)


flatten = tree_flatten
unflatten = tree_unflatten
"""The names the loop builders use."""
