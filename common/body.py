"""Bodies: the subgraphs that loops and branches run, and how a Python function becomes one.

This is the interface the control-flow ops (:mod:`common.ops.control`) are
built on; everything that walks, prints, saves, rewrites or compiles a loop
reads it.

**A body** (:class:`Body`) is a closed graph: a tuple of formal ``inputs``
(variable nodes, each used as a name for one argument) and a tuple of
``outputs`` (nodes). Every variable its outputs reach is one of its inputs,
so a body can be run, printed, saved or differentiated on its own; constants
may sit inside it. Bodies are immutable and compare by identity, like nodes.
A body lives in a *param* of the op that runs it (``scan``'s ``body``,
``cond``'s ``true_body``/``false_body``, ``while_loop``'s ``cond_body`` and
``body``), so graph traversals (:func:`common.graph.toposort`) see a loop node
as one node with explicit inputs and never walk into it; a pass that wants
the inside reads ``node.params`` (:func:`bodies_of` lists them). Two bodies of
one op may share their input variables (``cond``'s branches and a
``while_loop``'s condition and step take the same arguments).

**Several outputs.** A node is still one value. A loop or branch node's value
is a *tuple* of arrays: its shape is ``()`` and its dtype is :data:`TUPLE`
(numpy's object dtype), and the ``item`` op (param ``index``) picks each
output with its real shape and dtype. ``common.ops.control.output_types(node)``
gives the types of a tuple node's outputs. Passes that assume array values
treat tuple-valued nodes as opaque (:func:`is_tuple`). In a reverse sweep, the
cotangent of a tuple node is a :class:`TupleCotangent` (the ``item`` op's VJP
makes one; ``+`` merges them), never an array.

**Tracing** (:func:`trace`): the user's Python function is called once on fresh
variables (the formal inputs). Every node made while it runs is recorded
(:func:`common.api.apply` notes it), so afterwards the body's graph splits in
two: what was made during tracing stays inside, and every outer node it
reaches (a node made before the call, or a variable that is not a formal
input) becomes an extra formal input, in order of discovery, and the op gets
that outer node as an explicit input: Theano's non-sequences, JAX's closure
conversion. Constants stay inside. Carries and outputs may be nested
lists/tuples of nodes (:func:`flatten`); Python scalars among them are lifted
to constants.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence

import numpy as np

from .errors import GraphError, ShapeError, TwogradError, op_error
from .graph import Node, variable

TUPLE = np.dtype(object)
"""The dtype of a tuple-valued node (a loop or a branch): its outputs are read with ``item``."""


def is_tuple(n) -> bool:
    """Whether ``n`` is a tuple-valued node (or cotangent): the output of a loop or branch op."""
    return n.dtype is TUPLE or n.dtype == TUPLE


_SERIAL = itertools.count(1)


class Body:
    """A closed subgraph: formal ``inputs`` (variables) and ``outputs`` (nodes), run as one function.

    Refuses to be made open: a variable the outputs reach that is not an
    input would have no value when the body runs.
    """

    __slots__ = ("inputs", "outputs", "_plan", "cache", "label", "__weakref__")

    def __init__(self, inputs: Sequence[Node], outputs: Sequence[Node]):
        inputs, outputs = tuple(inputs), tuple(outputs)
        for v in inputs:
            if not isinstance(v, Node) or not v.is_var:
                raise GraphError(f"a body's inputs must be variables, got {v!r}")
        for o in outputs:
            if not isinstance(o, Node):
                raise GraphError(f"a body's outputs must be nodes, got {type(o).__name__}")
        if len({id(v) for v in inputs}) != len(inputs):
            raise GraphError("a body names one variable as two of its inputs")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "outputs", outputs)
        object.__setattr__(self, "_plan", None)
        object.__setattr__(self, "cache", {})  # derived bodies (the VJP body), by what they were made for
        object.__setattr__(self, "label", f"body{next(_SERIAL)}")  # how printers refer to it
        ids = {id(v) for v in inputs}
        free = [n for n in inner_nodes(outputs, ids) if n.is_var and id(n) not in ids]
        if free:
            raise GraphError(f"a body reaches the variable {free[0]!r} (made at {free[0].site}), which is "
                             "not one of its inputs")

    def __setattr__(self, key, value):
        raise GraphError("bodies are immutable")

    def __repr__(self) -> str:
        return self.label

    def signature(self) -> str:
        """``(inputs' types) -> (outputs' types)``, for messages and printers."""
        return f"({types_text(self.inputs)}) -> ({types_text(self.outputs)})"

    def run(self, args: Sequence) -> tuple:
        """The outputs' values for the inputs' values ``args`` (numpy arrays): one step of a loop.

        Each op's impl is called directly (this runs once per step of every
        loop); numpy's complaints are worded as :func:`common.evaluate.run_op`
        words them, naming the body's node that failed.
        """
        plan = self._plan
        if plan is None:
            plan = _make_plan(self)
            object.__setattr__(self, "_plan", plan)
        size, in_slots, consts, steps, out_slots, _ = plan
        env = [None] * size
        for s, a in zip(in_slots, args):
            env[s] = a
        for s, value in consts:
            env[s] = value
        try:
            for impl, ins, params, out in steps:
                env[out] = impl(*[env[i] for i in ins], **params)
        except (ValueError, IndexError, TypeError):
            _reword(plan, env)
            raise
        return tuple([env[s] for s in out_slots])


def _reword(plan: tuple, env: list) -> None:
    """Run the steps again, each through :func:`common.evaluate.run_op`, which names the failing node."""
    from .evaluate import run_op  # late: evaluate imports the op table, which imports this module

    for node, (_, ins, _, out) in zip(plan[5], plan[3]):
        env[out] = run_op(node, [env[i] for i in ins])


def _make_plan(body: Body) -> tuple:
    """Slots for the body's nodes and its op steps in topological order (made once per body)."""
    from .graph import toposort

    order = toposort([*body.outputs, *body.inputs])
    slot = {id(n): k for k, n in enumerate(order)}
    consts = [(k, n.value) for k, n in enumerate(order) if n.is_const]
    nodes = [n for n in order if n.op is not None]
    steps = [(n.op.impl, tuple([slot[id(i)] for i in n.inputs]), n.params, slot[id(n)]) for n in nodes]
    return (len(order), [slot[id(v)] for v in body.inputs], consts, steps, [slot[id(o)] for o in body.outputs],
            nodes)


def inner_nodes(outputs: Sequence[Node], stop: set[int]) -> list[Node]:
    """The nodes under ``outputs`` in topological order, not walking past the ids in ``stop`` (kept as leaves).

    Iterative, like every traversal: a body may be a long chain.
    """
    order: list[Node] = []
    state: dict[int, bool] = {}
    stack = list(outputs)[::-1]
    while stack:
        node = stack.pop()
        k = id(node)
        s = state.get(k)
        if s is None:
            if k in stop or not node.inputs:
                state[k] = True
                order.append(node)
                continue
            state[k] = False
            stack.append(node)
            stack.extend(i for i in reversed(node.inputs) if id(i) not in state)
        elif s is False:
            state[k] = True
            order.append(node)
    return order


def bodies_of(node: Node) -> list[tuple[str, Body]]:
    """The (param name, body) pairs of ``node``'s params: empty for every op but loops and branches."""
    return [(k, v) for k, v in node.params.items() if isinstance(v, Body)]


def types_text(nodes) -> str:
    """Shapes and dtypes as ``(3,):float64, ():bool``."""
    from .errors import describe

    return describe(nodes)


# ------------------------------------------------------------------ tracing

class _Recording(threading.local):
    """The sets of node ids being recorded in this thread, one per function being traced (innermost last)."""

    def __init__(self):
        self.frames: list[dict[int, Node]] = []


_RECORDING = _Recording()
_COUNTING = threading.Lock()
ACTIVE = [0]
"""How many traces run in any thread: :func:`common.api.apply` looks here first (one list read per node)."""


def note(node: Node) -> None:
    """Record ``node`` as made during the traces running in this thread (called by ``api.apply``)."""
    for frame in _RECORDING.frames:
        frame[id(node)] = node


class recording:
    """``with recording() as made:`` collects every node made meanwhile (in this thread), by id."""

    def __enter__(self) -> dict[int, Node]:
        self.made: dict[int, Node] = {}
        _RECORDING.frames.append(self.made)
        with _COUNTING:
            ACTIVE[0] += 1
        return self.made

    def __exit__(self, *exc) -> None:
        with _COUNTING:  # (a lost update would hide another thread's trace from api.apply)
            ACTIVE[0] -= 1
        frames = _RECORDING.frames
        del frames[next(k for k in range(len(frames) - 1, -1, -1) if frames[k] is self.made)]


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
    from .graph import apply_like

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


# ------------------------------------------------------------------ pytrees

LEAF = None


def flatten(tree) -> tuple[list, object]:
    """The leaves of a nest of lists/tuples, and its structure (``None`` for a single leaf).

    A structure is ``("list" | "tuple", [child structures])``. User pytrees
    are a few levels deep, so this recursion is bounded by the user's own nesting.
    """
    if isinstance(tree, (list, tuple)):
        leaves: list = []
        kids = []
        for t in tree:
            sub, struct = flatten(t)
            leaves.extend(sub)
            kids.append((struct, len(sub)))
        return leaves, ("list" if isinstance(tree, list) else "tuple", kids)
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


def lift_leaves(leaves: Sequence, like: Sequence | None, what: str, op: str, site) -> list[Node]:
    """Leaves as nodes: Python scalars become constants, of ``like[k]``'s dtype where there is one."""
    from .api import lift

    out = []
    for k, v in enumerate(leaves):
        try:
            out.append(lift(v, (like[k].dtype,) if like is not None and k < len(like) else ()))
        except TwogradError:
            raise op_error(ShapeError, op, f"{what} {k} is a {type(v).__name__}, not a node or a number",
                           site=site) from None
    return out
