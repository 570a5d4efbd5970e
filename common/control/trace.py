"""How a Python function becomes a body, and what the loop builders share.

The user's function is called once on fresh variables (the formal inputs).
Every node made while it runs is recorded (:func:`common.graph.apply` notes it
while a :class:`~common.graph.recording` is open), so afterwards the body's
graph splits in two: what was made during tracing stays inside, and every
outer node it reaches (a node made before the call, or a variable that is not
a formal input) becomes an extra formal input, in order of discovery, and the
op gets that outer node as an explicit input: Theano's non-sequences, JAX's
closure conversion. Constants stay inside. Carries and outputs may be nested
lists/tuples of nodes (:mod:`common.tree`); Python scalars among them are
lifted to constants. Mistakes (a carry that changes shape or dtype, branches
that disagree, a structure that changes) are errors naming the op, the types
and the user's line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..body import Body, inner_nodes
from ..errors import ShapeError, TwogradError, op_error
from ..graph import Node, apply, apply_like, lift, variable
from ..ops import OPS


def close_over(formals: Sequence[Node], results: Sequence[Sequence[Node]], made: dict[int, Node]
               ) -> tuple[list[Body], list[Node]]:
    """Bodies for the traced ``results`` (one list of output nodes per function traced on ``formals``).

    Outer nodes (not made during tracing, not formal) become extra formal
    inputs shared by all the bodies, returned in order of discovery as the
    op's explicit inputs. Each body's inputs are ``formals`` followed by one
    fresh variable per outer node.
    """
    formal_ids = {id(v) for v in formals}
    outer: dict[int, Node] = {}

    def is_outer(n: Node) -> bool:
        return id(n) not in formal_ids and not n.is_const and (n.is_var or id(n) not in made)

    for outs in results:
        for n in _walk_inside(outs, formal_ids, is_outer):
            if is_outer(n):
                outer.setdefault(id(n), n)
    closures = list(outer.values())
    stand_ins = {id(c): variable(c.name or f"outer{k}", c.shape, c.dtype) for k, c in enumerate(closures)}
    inputs = [*formals, *stand_ins.values()]
    bodies = [Body(inputs, _substitute(outs, stand_ins, formal_ids, is_outer)) for outs in results]
    return bodies, closures


def _walk_inside(outputs, formal_ids: set, is_outer: Callable[[Node], bool]) -> list[Node]:
    stop = set(formal_ids)
    order: list[Node] = []
    seen: set[int] = set()
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        order.append(n)
        if id(n) in stop or is_outer(n):
            continue
        stack.extend(n.inputs)
    return order


def _substitute(outputs, stand_ins: dict[int, Node], formal_ids: set, is_outer) -> list[Node]:
    """``outputs`` with each outer node replaced by its stand-in variable (nodes above them rebuilt)."""
    if not stand_ins:
        return list(outputs)
    stop = set(formal_ids) | set(stand_ins)
    new: dict[int, Node] = {}
    for n in inner_nodes(outputs, stop):
        k = id(n)
        if k in stand_ins:
            new[k] = stand_ins[k]
        elif n.op is None or k in formal_ids:
            new[k] = n
        else:
            ins = tuple([new[id(i)] for i in n.inputs])
            new[k] = n if all(a is b for a, b in zip(ins, n.inputs)) else apply_like(n, ins)
    return [new[id(o)] for o in outputs]


def lift_leaves(leaves: Sequence, like: Sequence | None, what: str, op: str, site) -> list[Node]:
    """Leaves as nodes: Python scalars become constants, of ``like[k]``'s dtype where there is one."""
    out = []
    for k, v in enumerate(leaves):
        try:
            out.append(lift(v, (like[k].dtype,) if like is not None and k < len(like) else ()))
        except TwogradError:
            raise op_error(ShapeError, op, f"{what} {k} is a {type(v).__name__}, not a node or a number",
                           site=site) from None
    return out


def items(node: Node, start: int, count: int) -> list[Node]:
    return [apply(OPS["item"], (node,), {"index": start + k}, site=node.site) for k in range(count)]


def formal_vars(leaves: list[Node], prefix: str, drop_axis: bool = False) -> list[Node]:
    """Fresh variables standing for ``leaves`` (one slice of each along axis 0 where ``drop_axis``)."""
    return [variable(leaf.name or f"{prefix}{k}", leaf.shape[1:] if drop_axis else leaf.shape, leaf.dtype)
            for k, leaf in enumerate(leaves)]


def call_user(fn: Callable, args, op: str, site):
    """``fn(*args)``, its TwogradErrors kept, anything else about its result checked by the caller."""
    if not callable(fn):
        raise op_error(TwogradError, op, f"expected a function, got a {type(fn).__name__}", site=site)
    return fn(*args)


def check_structure(got, want, what: str, op: str, site) -> None:
    if got != want:
        raise op_error(ShapeError, op, f"{what} changes structure: the function returns a nest "
                       f"{got!r} for {want!r} (* a leaf)", site=site)
