"""Bodies: the closed subgraphs that loops and branches run.

This is the interface the control-flow ops (:mod:`common.control`) are built
on; everything that walks, prints, saves, rewrites or compiles a loop reads
it, so it sits just above the graph, below the op table: a body is graph, and
nothing here knows which op runs it.

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
output with its real shape and dtype. The op's ``outputs`` trait
(:class:`common.ops.Op`) gives the types of a tuple node's outputs. Passes that assume array values
treat tuple-valued nodes as opaque (:func:`is_tuple`). In a reverse sweep, the
cotangent of a tuple node is a :class:`~common.backward.TupleCotangent` (the
``item`` op's VJP makes one; ``+`` merges them), never an array.

How a Python function becomes a body (tracing, closure conversion) is the
loop builders' business: :mod:`common.control.trace`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from .errors import GraphError, describe
from .graph import Node, run_op, toposort

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
        loop); numpy's complaints are worded as :func:`common.graph.run_op`
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
    """Run the steps again, each through :func:`common.graph.run_op`, which names the failing node."""
    for node, (_, ins, _, out) in zip(plan[5], plan[3]):
        env[out] = run_op(node, [env[i] for i in ins])


def _make_plan(body: Body) -> tuple:
    """Slots for the body's nodes and its op steps in topological order (made once per body)."""
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
    return describe(nodes)
