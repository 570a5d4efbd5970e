"""The control-flow builders users call: ``scan``, ``while_loop``, ``cond``, with JAX's signatures.

Each traces the user's Python functions once into bodies (:mod:`common.body`:
fresh variables in, closed-over outer nodes made explicit inputs), adds one
loop or branch node (:mod:`common.ops.control`) and returns its outputs as
``item`` nodes in the user's own nesting of lists and tuples. Mistakes (a
carry that changes shape or dtype, branches that disagree, a structure that
changes) are errors naming the op, the types and the user's line.
"""

from __future__ import annotations

from collections.abc import Callable

from .body import close_over, flatten, lift_leaves, recording, unflatten
from .errors import ShapeError, TwogradError, op_error
from .graph import Node, variable
from .ops import OPS
from .ops.params import bool_param, int_param
from .site import user_site

__all__ = ["cond", "scan", "while_loop"]


def _apply(name: str, inputs, params, site) -> Node:
    from .api import apply

    return apply(OPS[name], tuple(inputs), params, site=site)


def _items(node: Node, start: int, count: int) -> list[Node]:
    from .api import apply

    return [apply(OPS["item"], (node,), {"index": start + k}, site=node.site) for k in range(count)]


def _formals(leaves: list[Node], prefix: str, drop_axis: bool = False) -> list[Node]:
    """Fresh variables standing for ``leaves`` (one slice of each along axis 0 where ``drop_axis``)."""
    return [variable(leaf.name or f"{prefix}{k}", leaf.shape[1:] if drop_axis else leaf.shape, leaf.dtype)
            for k, leaf in enumerate(leaves)]


def _call(fn: Callable, args, op: str, site):
    """``fn(*args)``, its TwogradErrors kept, anything else about its result checked by the caller."""
    if not callable(fn):
        raise op_error(TwogradError, op, f"expected a function, got a {type(fn).__name__}", site=site)
    return fn(*args)


def _check_structure(got, want, what: str, op: str, site) -> None:
    if got != want:
        raise op_error(ShapeError, op, f"{what} changes structure: the function returns a nest "
                       f"{_shown(got)} for {_shown(want)}", site=site)


def _shown(struct) -> str:
    if struct is None:
        return "leaf"
    kind, kids = struct
    inner = ", ".join(_shown(s) for s, _ in kids)
    return f"[{inner}]" if kind == "list" else f"({inner}{',' if len(kids) == 1 else ''})"


def scan(fn: Callable, init, xs, length: int | None = None, reverse: bool = False):
    """``(final_carry, ys)`` of ``carry, y = fn(carry, x)`` over the leading axis of ``xs`` (JAX's lax.scan).

    ``init`` and ``xs`` may be nodes or nests of lists/tuples of them (``xs``
    may be None with a ``length``); ``ys`` stacks each ``y`` along a new
    leading axis. ``reverse`` runs from the last slice to the first (ys stay
    in index order). ``fn`` is traced once: the graph holds one body, whatever
    the number of steps.
    """
    site = user_site(2)
    init_leaves, init_struct = flatten(init)
    init_leaves = lift_leaves(init_leaves, None, "init carry", "scan", site)
    xs_leaves, xs_struct = flatten(xs) if xs is not None else ([], None)
    xs_leaves = lift_leaves(xs_leaves, None, "xs", "scan", site)
    try:
        bool_param(reverse, "reverse")
        if length is not None:
            length = int_param(length, "length", 0)
    except TwogradError as e:
        raise op_error(type(e), "scan", str(e), site=site) from None
    for k, x in enumerate(xs_leaves):
        if x.ndim == 0:
            raise op_error(ShapeError, "scan", f"xs {k} is a scalar: a scan reads one slice of its leading "
                           "axis per step", [x], site)
    carries, slices = _formals(init_leaves, "carry"), _formals(xs_leaves, "x", drop_axis=True)
    with recording() as made:
        result = _call(fn, (unflatten(init_struct, carries), unflatten(xs_struct, slices) if xs is not None
                            else None), "scan", site)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise op_error(ShapeError, "scan", "the function must return a pair (carry, y)", site=site)
        new_leaves, new_struct = flatten(result[0])
        _check_structure(new_struct, init_struct, "the carry", "scan", site)
        new_leaves = lift_leaves(new_leaves, init_leaves, "carry", "scan", site)
        y_leaves, y_struct = flatten(result[1]) if result[1] is not None else ([], None)
        y_leaves = lift_leaves(y_leaves, None, "y", "scan", site)
    (body,), closures = close_over([*carries, *slices], [[*new_leaves, *y_leaves]], made)
    params = {"body": body, "ncarry": len(init_leaves), "nx": len(xs_leaves), "length": length,
              "reverse": reverse, "save": False}
    node = _apply("scan", [*init_leaves, *xs_leaves, *closures], params, site)
    final = _items(node, 0, len(init_leaves))
    ys = _items(node, len(init_leaves), len(y_leaves))
    return unflatten(init_struct, final), (unflatten(y_struct, ys) if result[1] is not None else None)


def while_loop(cond_fn: Callable, body_fn: Callable, init, max_iter: int | None = None):
    """The final carry of ``while cond_fn(carry): carry = body_fn(carry)`` (at most ``max_iter`` times).

    The trip count is data-dependent, and the loop is differentiable in
    reverse mode: its VJP is a reverse scan over the carries of the
    iterations that ran.
    """
    site = user_site(2)
    leaves, struct = flatten(init)
    leaves = lift_leaves(leaves, None, "init carry", "while_loop", site)
    if not leaves:
        raise op_error(ShapeError, "while_loop", "the loop needs at least one carry", site=site)
    try:
        if max_iter is not None:
            max_iter = int_param(max_iter, "max_iter", 0)
    except TwogradError as e:
        raise op_error(type(e), "while_loop", str(e), site=site) from None
    carries = _formals(leaves, "carry")
    with recording() as made:
        pred = lift_leaves([_call(cond_fn, (unflatten(struct, carries),), "while_loop", site)], None,
                           "condition", "while_loop", site)
        new_leaves, new_struct = flatten(_call(body_fn, (unflatten(struct, carries),), "while_loop", site))
        _check_structure(new_struct, struct, "the carry", "while_loop", site)
        new_leaves = lift_leaves(new_leaves, leaves, "carry", "while_loop", site)
    (cond_body, body), closures = close_over(carries, [pred, new_leaves], made)
    params = {"cond_body": cond_body, "body": body, "ncarry": len(leaves), "max_iter": max_iter, "save": False}
    node = _apply("while_loop", [*leaves, *closures], params, site)
    return unflatten(struct, _items(node, 0, len(leaves)))


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``; only the taken branch runs.

    Both branches must return the same nest of nodes of the same shapes and
    dtypes. Lazy in value and gradient: ``cond(x > 0, sqrt, square)``'s
    gradient at -1 is -2, not NaN.
    """
    from .api import lift

    site = user_site(2)
    pred = lift(pred)
    leaves, struct = flatten(list(operands))
    leaves = lift_leaves(leaves, None, "operand", "cond", site)
    formals = _formals(leaves, "arg")
    args = unflatten(struct, formals)
    with recording() as made:
        outs_t, struct_t = flatten(_call(true_fn, args, "cond", site))
        outs_f, struct_f = flatten(_call(false_fn, args, "cond", site))
        _check_structure(struct_f, struct_t, "the false branch's result", "cond", site)
        outs_t = lift_leaves(outs_t, [o for o in outs_f if isinstance(o, Node)] if all(
            isinstance(o, Node) for o in outs_f) else None, "true branch output", "cond", site)
        outs_f = lift_leaves(outs_f, outs_t, "false branch output", "cond", site)
    (t, f), closures = close_over(formals, [outs_t, outs_f], made)
    node = _apply("cond", [pred, *leaves, *closures], {"true_body": t, "false_body": f}, site)
    return unflatten(struct_t, _items(node, 0, len(outs_t)))
