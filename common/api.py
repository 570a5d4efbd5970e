"""The builder API: numpy-like functions that add nodes to a graph.

Every op of the table is a function here (``sin``, ``matmul``, ``sum``, ...),
made by the symbolic namespace, plus ``var``/``const`` for leaves and the
loop and branch builders (``scan``, ``while_loop``, ``cond``). Python scalars
mixed with nodes are weakly typed as in numpy 2 (``x32 * 2.0`` stays
float32). Type errors surface here, at build time, naming the op, the shapes
and the user's line. This is the top of :mod:`common`: the one public face of
the IR, importing every layer below it.
"""

from __future__ import annotations

from .control import cond, scan, while_loop  # noqa: F401  (in __all__ by their op names)
from .graph import Node, apply, constant, lift, variable
from .ops import OPS, symbolic
from .overloads import install_operators

install_operators(Node, symbolic)

var = variable
const = constant

for _name in OPS:  # (a builder imported above, which traces Python functions, keeps its op's name)
    globals().setdefault(_name, getattr(symbolic, _name))

__all__ = ["apply", "const", "lift", "symbolic", "var", *OPS]
