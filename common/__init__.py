"""twograd's shared expression IR: the one language both backends speak.

``from common import api as T`` gives numpy-like builders (``T.var``,
``T.sin``, ``T.matmul``, ...); :mod:`common.ops` holds the op table,
:func:`evaluate` the reference interpreter.
"""

from . import api
from .api import const, var
from .errors import (
    DTypeError,
    FeedError,
    GradError,
    GraphError,
    SerializationError,
    ShapeError,
    TwogradError,
)
from .evaluate import evaluate
from .graph import Node, ancestors, clone, consumers, count_nodes, inputs_of, replace, toposort
from .ops import NO_GRAD, OPS, Namespace, Op, defop, numeric
from .printing import debugprint, pprint, to_dot
from .serialize import load, save

__version__ = "0.1.0"

__all__ = [
    "DTypeError", "FeedError", "GradError", "GraphError", "NO_GRAD", "Namespace", "Node", "OPS", "Op",
    "SerializationError", "ShapeError", "TwogradError", "ancestors", "api", "clone", "const",
    "consumers", "count_nodes", "debugprint", "defop", "evaluate", "inputs_of", "load", "numeric",
    "pprint", "replace", "save", "to_dot", "toposort", "var",
]
