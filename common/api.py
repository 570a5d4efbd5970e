"""The builder API: numpy-like functions that add nodes to a graph.

Every op of the table is a function here (``sin``, ``matmul``, ``sum``, ...),
made by the symbolic namespace, plus ``var``/``const`` for leaves and the
loop and branch builders (``scan``, ``while_loop``, ``cond``) and ``checkpoint``. Python scalars
mixed with nodes are weakly typed as in numpy 2 (``x32 * 2.0`` stays
float32). Type errors surface here, at build time, naming the op, the shapes
and the user's line. This is the top of :mod:`common`: the one public face of
the IR, importing every layer below it.
"""

from __future__ import annotations

from .control import checkpoint, cond, scan, while_loop  # noqa: F401  (in __all__ by their op names)
from .graph import Node, apply, constant, lift, variable
from .linalg_nn import linalg_for, nn_for
from .ops import OPS, symbolic
from .ops.composed import FUNCTIONS, bound
from .overloads import install_operators

install_operators(Node, symbolic)

const = constant

for _name in OPS:  # (a builder imported above, which traces Python functions, keeps its op's name)
    globals().setdefault(_name, getattr(symbolic, _name))
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


linalg = linalg_for(symbolic)
"""numpy.linalg's names on nodes: solve, solve_triangular, cholesky, inv, det, slogdet, eigh, svd, qr, norm."""
nn = nn_for(symbolic)
"""torch.nn.functional's names on nodes: conv1d, conv2d, max_pool2d, avg_pool2d."""

__all__ = ["apply", "const", "linalg", "lift", "nn", "symbolic", "var", *OPS, *FUNCTIONS]
