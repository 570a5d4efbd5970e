"""Pytrees through symnum's transforms: parameters as dicts, lists, tuples, namedtuples of arrays.

Every transform works on flat lists of arrays; this module puts the user's
nesting around that. An argument a transform differentiates (or maps) that is
a tree is spread into its leaves, each a differentiated argument of a flat
function that rebuilds the tree before calling the user's ``f``
(:func:`spread`); the flat results are put back into the argument's structure
(:func:`regroup`). A result that is a tree of several leaves is joined into
one vector (:func:`joined`), so a Jacobian or a ``vjp`` is one sweep over all
of them, and its rows are cut back into the result's leaves (:func:`split`).
A plain array argument or result takes none of these paths: the transforms
keep their behaviour for arrays exactly (:mod:`common.tree` has the model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

from common.errors import TreeError
from common.site import user_site
from common.tree import TreeDef, is_leaf, tree_flatten, tree_unflatten

from .tape import tape
from .tensor import Tensor

_NUMBERS = (np.ndarray, np.generic, int, float, Tensor)


def leaf_ok(x) -> bool:
    """Whether ``x`` may be a leaf of a transformed tree: an array, a number, a tensor or a traced value."""
    return isinstance(x, _NUMBERS) or getattr(x.__class__, "twograd_apply", None) is not None


def check_leaves(leaves: list, treedef: TreeDef, what: str, where: str) -> None:
    """A TreeError naming ``what`` and the structure unless every leaf is an array-like value."""
    for i, x in enumerate(leaves):
        if not leaf_ok(x):
            raise TreeError(f"{what}: {where} is a tree {treedef!r} whose leaf {i} is a {type(x).__name__}, "
                            f"not an array (every leaf must be an array, a number or a tensor; at {user_site()})")


class Spread(NamedTuple):
    fn: Callable  # the user's function over the flat arguments
    args: list  # the flat arguments
    nums: tuple  # the positions of the differentiated leaves among them
    groups: list  # per differentiated argument: its structure (None: a plain array)


def spread(f: Callable, args: Sequence, nums: Sequence[int], what: str) -> Spread | None:
    """``f`` over the arguments with each tree among ``args[nums]`` spread into its leaves; None when none is
    a tree (or a position is out of range: the flat transform says so)."""
    n = len(args)
    if any(not -n <= i < n for i in nums):
        return None
    if all(is_leaf(args[i]) for i in nums):  # plain arrays: the flat transform, no tree made
        return None
    nums = [i % n for i in nums]
    defs: dict[int, tuple] = {}
    for i in nums:
        leaves, treedef = tree_flatten(args[i])
        if not treedef.is_leaf:
            check_leaves(leaves, treedef, what, f"argument {i}")
            defs[i] = (leaves, treedef)
    if not defs:
        return None
    flat: list = []
    where: list[tuple[int, TreeDef | None]] = []
    for k, a in enumerate(args):
        leaves, treedef = defs.get(k, ([a], None))
        where.append((len(flat), treedef))
        flat.extend(leaves)

    def spread_f(*xs, **kwargs):
        return f(*[xs[at] if d is None else tree_unflatten(d, xs[at:at + d.num_leaves]) for at, d in where],
                 **kwargs)

    spread_f.__name__ = getattr(f, "__name__", "f")
    flat_nums = tuple(j for i in nums for j in range(where[i][0], where[i][0] + _count(where[i][1])))
    if not flat_nums:
        raise TreeError(f"{what}: the arguments it differentiates hold no arrays "
                        f"({', '.join(repr(where[i][1]) for i in nums)}; at {user_site()})")
    return Spread(spread_f, flat, flat_nums, [where[i][1] for i in nums])


def _count(treedef: TreeDef | None) -> int:
    return 1 if treedef is None else treedef.num_leaves


def regroup(results: Sequence, groups: Sequence[TreeDef | None]) -> list:
    """The flat results, one per differentiated leaf, put back into each argument's structure."""
    out, at = [], 0
    for d in groups:
        n = _count(d)
        out.append(results[at] if d is None else tree_unflatten(d, results[at:at + n]))
        at += n
    return out


class Joined(threading.local):
    """What :func:`joined` saw of the last result in this thread: its structure (None: one array) and its
    leaves' shapes (per thread: one transformed function may run in several threads at once)."""

    def __init__(self):
        self.treedef: TreeDef | None = None
        self.shapes: list[tuple] = []


def shape_of(x) -> tuple:
    """The shape of an array, a number, a tensor or a traced value (one example's, for a mapped one)."""
    return tuple(x.shape) if hasattr(x, "shape") else np.shape(x)


def joined(f: Callable, what: str) -> tuple[Callable, Joined]:
    """``f`` with a result tree of several leaves joined into one vector (an array result as it is), and
    the record of the last call's structure that :func:`split` cuts the vector back by."""
    seen = Joined()

    def joined_f(*args, **kwargs):
        out = f(*args, **kwargs)
        leaves, treedef = tree_flatten(out)
        if treedef.is_leaf:
            seen.treedef = None
            return out
        check_leaves(leaves, treedef, what, "the function's result")
        if not leaves:
            raise TreeError(f"{what}: the function's result {treedef!r} holds no arrays (at {user_site()})")
        seen.treedef, seen.shapes = treedef, [shape_of(x) for x in leaves]
        return tape.concatenate([tape.reshape(x, (-1,)) for x in leaves], axis=0)

    joined_f.__name__ = getattr(f, "__name__", "f")
    return joined_f, seen


def split(v, shapes: Sequence[tuple], tail: tuple = ()) -> list:
    """The leaves of a joined result, of ``shapes``, back from ``v`` (its axis 0 the joined vector, then
    ``tail``)."""
    parts, at = [], 0
    for shape in shapes:
        size = int(np.prod(shape, dtype=np.int64))
        piece = v[at:at + size]
        parts.append(piece.reshape(shape + tuple(tail)) if isinstance(piece, np.ndarray)
                     else tape.reshape(piece, shape + tuple(tail)))
        at += size
    return parts


def join_cotangent(ct, want: TreeDef, shapes: Sequence[tuple], what: str):
    """A cotangent given in the structure ``want`` of the result (leaves of ``shapes``), as the one vector
    :func:`joined` made of the result."""
    leaves, treedef = tree_flatten(ct)
    if treedef != want:
        raise TreeError(f"{what}: the cotangent has structure {treedef!r}, but the function's result has "
                        f"{want!r} (* a leaf; at {user_site()})")
    check_leaves(leaves, treedef, what, "the cotangent")
    for k, (c, shape) in enumerate(zip(leaves, shapes)):
        if shape_of(c) != shape:
            raise TreeError(f"{what}: cotangent leaf {k} has shape {shape_of(c)}, but the result's leaf has shape "
                            f"{shape} (in {treedef!r}; at {user_site()})")
    if all(isinstance(c, (np.ndarray, np.generic, int, float)) for c in leaves):
        return np.concatenate([np.ravel(c) for c in leaves])
    return tape.concatenate([tape.reshape(c, (-1,)) for c in leaves], axis=0)


def matching(primals: Sequence, tangents: Sequence, what: str) -> None:
    """A TreeError unless each tangent has its primal's structure (a plain array primal takes any array)."""
    for k, (p, t) in enumerate(zip(primals, tangents)):
        p_def, t_def = tree_flatten(p)[1], tree_flatten(t)[1]
        if not p_def.is_leaf and p_def != t_def:
            raise TreeError(f"{what}: tangent {k} has structure {t_def!r}, but its primal has {p_def!r} "
                            f"(* a leaf; at {user_site()})")
