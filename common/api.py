"""The builder API: numpy-like functions that add nodes to a graph.

Every op of the table is a function here (``sin``, ``matmul``, ``sum``, ...),
made by the symbolic namespace, plus ``var``/``const`` for leaves. Python
scalars mixed with nodes are weakly typed as in numpy 2 (``x32 * 2.0`` stays
float32). Type errors surface here, at build time, naming the op, the shapes
and the user's line.
"""

from __future__ import annotations

import functools
from numbers import Number

import numpy as np

from .body import ACTIVE as _TRACING
from .body import note
from .errors import TwogradError, op_error
from .graph import Node, constant, variable
from .ops import OPS
from .ops.composed import FUNCTIONS, bound
from .ops.core import Namespace
from .overloads import install_operators
from .site import user_site


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
    if _TRACING[0]:  # a Python function is being traced into a body: note what it makes
        note(node)
    return node


symbolic = Namespace(apply, "symbolic")
"""Ops on nodes: VJP rules run here add nodes to the graph (symsym's grad)."""


install_operators(Node, symbolic)

const = constant

for _name in OPS:
    globals()[_name] = getattr(symbolic, _name)
for _name, _fn in FUNCTIONS.items():  # numpy's functions made of ops (sort, topk, pad, ...)
    globals()[_name] = bound(_fn, symbolic)
_variance = globals().pop("var")


def var(*args, **kwargs) -> Node:
    """A graph input, ``var(name, shape=(), dtype="float64")``; or, given a node first, numpy's variance
    ``var(x, axis=None, ddof=0, keepdims=False)``. One name for both: ``var`` has named graph inputs here
    from the start, and numpy users type it for the variance; a name (a str) tells them apart."""
    if (args and isinstance(args[0], str)) or "name" in kwargs:
        return variable(*args, **kwargs)
    return _variance(*args, **kwargs)


# the loop and branch builders trace Python functions (the ops of those names take bodies: symbolic.scan)
from .linalg_nn import linalg_for, nn_for  # noqa: E402
from .loops import cond, scan, while_loop  # noqa: E402, F401  (in __all__ by their op names)

linalg = linalg_for(symbolic)
"""numpy.linalg's names on nodes: solve, solve_triangular, cholesky, inv, det, slogdet, eigh, svd, qr, norm."""
nn = nn_for(symbolic)
"""torch.nn.functional's names on nodes: conv1d, conv2d, max_pool2d, avg_pool2d."""

__all__ = ["apply", "const", "linalg", "lift", "nn", "symbolic", "var", *OPS, *FUNCTIONS]
