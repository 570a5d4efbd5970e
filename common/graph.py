"""The graph: immutable nodes and the iterative traversals over them.

A :class:`Node` is one of three things, as in Theano's Variable/Apply split
folded into one class:

* a *variable*: a named graph input with a dtype and a shape whose dims may be
  ``None`` (unknown until evaluation);
* a *constant*: a numpy value baked into the graph;
* an *application*: an op from the op table, its static params and its input
  nodes; the node is the op's single output. A loop or branch (``scan``,
  ``while_loop``, ``cond``: :mod:`common.control`) has several: its
  node's value is a tuple (shape ``()``, object dtype), and an ``item`` node
  reads each output with its own shape and dtype.

Nodes are made here too: :func:`apply` adds an op's node after checking its
type rule (the one door every builder, rewrite and loader goes through),
:func:`lift` makes a node of a Python or numpy value, and :func:`run_op` runs a
node's impl with numpy's complaints worded as twograd errors. While a Python
function is traced into a loop's body (:mod:`common.control`), :func:`apply`
notes each node it makes (:class:`recording`): the tracing hook.

Nodes never change once made, so a graph can be shared, cloned and extended
(``symsym.grad`` adds nodes to it) without anyone's view of it moving. Every
traversal here is a loop over an explicit stack: graphs of 10^6 nodes (an
unrolled LSTM, a deep chain) must not hit Python's recursion limit.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from numbers import Number

import numpy as np

from .errors import GraphError, TwogradError, failure_kind, op_error
from .site import Site, user_site

Shape = tuple  # of int | None


class Node:
    """One value in a graph: a variable, a constant or an op applied to nodes.

    Operator overloads (``+ - * / ** @``, comparisons, indexing) and numpy-like
    methods are installed by :mod:`common.api`, which builds nodes through the
    op table. ``__eq__`` builds an ``eq`` node, so nodes hash by identity.
    """

    __slots__ = ("op", "inputs", "params", "shape", "dtype", "name", "value", "site", "__weakref__")
    __array_ufunc__ = None  # make numpy defer to our reflected operators
    __hash__ = object.__hash__

    def __init__(self, op, inputs: tuple, params: dict, shape: Shape, dtype: np.dtype,
                 name: str | None = None, value: np.ndarray | None = None, site: Site | None = None):
        _set_op(self, op)
        _set_inputs(self, inputs)
        _set_params(self, params)
        _set_shape(self, shape)
        _set_dtype(self, dtype)
        _set_name(self, name)
        _set_value(self, value)
        _set_site(self, site)

    def __setattr__(self, key, value):
        raise GraphError(f"nodes are immutable: cannot set {key!r} (build a new node instead)")

    def __delattr__(self, key):
        raise GraphError(f"nodes are immutable: cannot delete {key!r}")

    # kind
    @property
    def is_var(self) -> bool:
        return self.op is None and self.value is None

    @property
    def is_const(self) -> bool:
        return self.op is None and self.value is not None

    @property
    def is_apply(self) -> bool:
        return self.op is not None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int | None:
        n = 1
        for d in self.shape:
            if d is None:
                return None
            n *= d
        return n

    def __len__(self) -> int:
        if not self.shape or self.shape[0] is None:
            raise GraphError(f"len() of a node with shape {self.shape} is not known statically")
        return self.shape[0]

    def __bool__(self):
        raise GraphError(
            "the truth value of a symbolic node is unknown until evaluation; "
            f"use where()/comparisons in the graph instead (node made at {self.site})")

    def __iter__(self):
        raise GraphError("symbolic nodes are not iterable; index them explicitly")

    def __repr__(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        if len(self.shape) == 1:
            dims += ","
        what = "var" if self.is_var else "const" if self.is_const else self.op.name
        label = f" {self.name!r}" if self.name else ""
        return f"<Node {what}{label} ({dims}):{self.dtype}>"

    def label(self) -> str:
        """A short human name: the variable name, the constant, or the op name."""
        if self.name:
            return self.name
        if self.is_const:
            v = self.value
            return np.array2string(v, threshold=4, precision=4) if v.ndim else f"{v.item():g}"
        return "?" if self.is_var else self.op.name

    def renamed(self, name: str | None) -> Node:
        """The same value under another name (a new node: nodes are immutable)."""
        if self.op is None:
            return Node(None, (), {}, self.shape, self.dtype, name, self.value, self.site)
        return made(self.op, self.inputs, self.params, self.shape, self.dtype, name, self.site)


# Slot setters that bypass the refusing __setattr__: only __init__ uses them.
(_set_op, _set_inputs, _set_params, _set_shape, _set_dtype, _set_name, _set_value, _set_site) = (
    Node.__dict__[k].__set__ for k in ("op", "inputs", "params", "shape", "dtype", "name", "value", "site"))


def variable(name: str, shape: Sequence[int | None] = (), dtype="float64") -> Node:
    """A graph input: a name, a dtype and a shape (``None`` for an unknown dim)."""
    shape = tuple(None if d is None else int(d) for d in shape)
    for d in shape:
        if d is not None and d < 0:
            raise GraphError(f"var {name!r}: negative dim in shape {shape}")
    return Node(None, (), {}, shape, np.dtype(dtype), name, None, user_site(2))


def constant(value, dtype=None, name: str | None = None) -> Node:
    """A numpy value baked into the graph (copied, read-only)."""
    arr = np.array(value, dtype=dtype)
    arr.setflags(write=False)
    return Node(None, (), {}, arr.shape, arr.dtype, name, arr, user_site(2))


# ---------------------------------------------------------------- node construction

def lift(x, dtypes=()) -> Node:
    """A node for ``x``: nodes pass through, numbers become constants.

    A Python scalar takes numpy 2's weak typing against ``dtypes``, the dtypes
    of the node inputs it meets.
    """
    if isinstance(x, Node):
        return x
    if isinstance(x, (bool, int, float)) and not isinstance(x, np.generic):
        return _scalar_const(type(x), x, tuple(dtypes))
    if isinstance(x, Number) or isinstance(x, (np.ndarray, np.generic, list, tuple)):
        arr = _frozen(np.array(x))
        return Node(None, (), {}, arr.shape, arr.dtype, None, arr, None)
    raise TwogradError(f"cannot use a {type(x).__name__} as a graph value")


@functools.lru_cache(maxsize=4096)
def _scalar_const(kind: type, value, dtypes: tuple) -> Node:
    """One shared node per Python scalar and context: constants are immutable."""
    dtype = np.result_type(*dtypes, value) if dtypes else np.asarray(value).dtype
    return Node(None, (), {}, (), dtype, None, _frozen(np.asarray(value, dtype=dtype)), None)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.setflags(write=False)
    return arr


def apply(op, inputs, params, site=None, name=None) -> Node:
    """Add ``op(*inputs, **params)`` to the graph, after checking its type rule."""
    if site is None:
        site = user_site(2)
    nodes = inputs
    for i in inputs:
        if not isinstance(i, Node):
            dtypes = [i.dtype for i in inputs if isinstance(i, Node)]
            nodes = tuple([lift(i, dtypes) for i in inputs])
            break
    else:
        nodes = tuple(inputs)
    try:
        shape, dtype = op.infer(*nodes, **params)
    except TwogradError as e:
        raise op_error(type(e), op.name, str(e), nodes, site) from None
    if type(shape) is not tuple:
        shape = tuple(shape)
    if not isinstance(dtype, np.dtype):
        dtype = np.dtype(dtype)
    node = Node(op, nodes, params, shape, dtype, name, None, site)
    if ACTIVE[0]:  # a Python function is being traced into a body: note what it makes (made()'s two lines,
        note(node)  # inline: every node a builder makes passes here)
    return node


def made(op, inputs: tuple, params: dict, shape: tuple, dtype: np.dtype, name=None, site=None) -> Node:
    """A new op node whose type is already known, noted by the tracing hook like every node :func:`apply`
    makes: a rewrite that rebuilds nodes inside a traced body (``symsym.grad`` called in a loop's body) must
    not make them look like nodes from outside it."""
    node = Node(op, inputs, params, shape, dtype, name, None, site)
    if ACTIVE[0]:  # a Python function is being traced into a body: note what it makes
        note(node)
    return node


def run_op(node: Node, args):
    """``node``'s impl on ``args``; numpy's complaints become twograd errors (a refused matrix a
    :class:`~common.errors.LinAlgError`)."""
    try:
        return node.op.impl(*args, **node.params)
    except TwogradError:
        raise
    except (ValueError, IndexError, TypeError) as e:
        raise op_error(failure_kind(e), node.op.name, str(e), args, node.site) from None


# ---------------------------------------------------------------- the tracing hook

class _Recording(threading.local):
    """The sets of node ids being recorded in this thread, one per function being traced (innermost last)."""

    def __init__(self):
        self.frames: list[dict[int, Node]] = []


_RECORDING = _Recording()
_COUNTING = threading.Lock()
ACTIVE = [0]
"""How many traces run in any thread: :func:`apply` looks here first (one list read per node)."""


def note(node: Node) -> None:
    """Record ``node`` as made during the traces running in this thread (called by :func:`apply`)."""
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
        with _COUNTING:  # (a lost update would hide another thread's trace from apply)
            ACTIVE[0] -= 1
        frames = _RECORDING.frames
        del frames[next(k for k in range(len(frames) - 1, -1, -1) if frames[k] is self.made)]


# ---------------------------------------------------------------- traversals

def _as_list(outputs) -> list[Node]:
    if isinstance(outputs, Node):
        return [outputs]
    return list(outputs)


def toposort(outputs: Node | Iterable[Node]) -> list[Node]:
    """Every ancestor of ``outputs`` (themselves included), inputs before users.

    Iterative depth-first post-order; deterministic (follows input order).
    A node goes back on the stack under its inputs and is emitted when it
    resurfaces (``state``: False while its inputs are pending, True once
    emitted); leaves are emitted at once. No per-visit tuples: this runs over
    every node several times per compile.
    """
    order: list[Node] = []
    emit = order.append
    state: dict[int, bool] = {}
    stack = _as_list(outputs)[::-1]
    push = stack.append
    pop = stack.pop
    while stack:
        node = pop()
        k = id(node)
        s = state.get(k)
        if s is None:
            inputs = node.inputs
            if not inputs:
                state[k] = True
                emit(node)
                continue
            state[k] = False
            push(node)
            for i in reversed(inputs):
                if id(i) not in state:
                    push(i)
        elif s is False:
            state[k] = True
            emit(node)
    return order


def ancestors(outputs) -> list[Node]:
    """All nodes ``outputs`` depend on, in topological order (alias of toposort)."""
    return toposort(outputs)


def inputs_of(outputs) -> list[Node]:
    """The variables ``outputs`` depend on, in topological order."""
    return [n for n in toposort(outputs) if n.is_var]


def consumers(outputs) -> dict[int, list[Node]]:
    """For each node id under ``outputs``, the nodes that take it as an input."""
    users: dict[int, list[Node]] = {}
    for n in toposort(outputs):
        users.setdefault(id(n), [])
        for i in n.inputs:
            users.setdefault(id(i), []).append(n)
    return users


def count_nodes(outputs, kind: str = "all") -> int:
    """How many nodes ``outputs`` reach: ``all``, ``apply`` (ops) or ``var``."""
    nodes = toposort(outputs)
    if kind == "apply":
        return sum(1 for n in nodes if n.op is not None)
    if kind == "var":
        return sum(1 for n in nodes if n.is_var)
    return len(nodes)


def rebuild(outputs, fn: Callable[[Node, tuple], Node]) -> list[Node]:
    """Rebuild a graph bottom-up: ``fn(node, new_inputs)`` gives each new node.

    The one engine behind clone, replace and every rewrite pass: ``fn`` sees
    the original node and its already-rebuilt inputs, and returns the node to
    stand for it. Nodes are visited once each, iteratively.
    """
    outs = _as_list(outputs)
    new: dict[int, Node] = {}
    for n in toposort(outs):
        new[id(n)] = fn(n, tuple(new[id(i)] for i in n.inputs))
    return [new[id(o)] for o in outs]


def replace(outputs, mapping: dict[Node, Node]) -> list[Node]:
    """``outputs`` with each key of ``mapping`` replaced by its value.

    Only nodes downstream of a replaced node are rebuilt; the rest are shared.
    """
    repl = {id(k): v for k, v in mapping.items()}

    def fn(node, new_inputs):
        if id(node) in repl:
            return repl[id(node)]
        if all(a is b for a, b in zip(new_inputs, node.inputs)):
            return node
        return apply_like(node, new_inputs)

    return rebuild(outputs, fn)


def clone(outputs, mapping: dict[Node, Node] | None = None) -> list[Node]:
    """A copy of the graph sharing no application node with the original."""
    repl = {id(k): v for k, v in (mapping or {}).items()}

    def fn(node, new_inputs):
        if id(node) in repl:
            return repl[id(node)]
        if node.op is None:
            return node
        return apply_like(node, new_inputs)

    return rebuild(outputs, fn)


def apply_like(node: Node, inputs: tuple) -> Node:
    """``node``'s op and params applied to other inputs (types re-inferred)."""
    out = apply(node.op, inputs, node.params, site=node.site)
    return out.renamed(node.name) if node.name and node.name != out.name else out
