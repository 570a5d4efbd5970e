"""symbol-to-symbol: gradients as new graph nodes, compiled to numpy code.

``grad`` extends a graph with nodes that describe its derivatives (the Deep
Learning book's Algorithms 6.5/6.6), never touching a number; ``optimize``
rewrites graphs; ``function`` compiles them to straight-line numpy code.
Because derivatives are graphs, ``grad`` applies to its own output:
``hessian``, ``jacobian`` (= ``jacrev``) and ``hvp`` are built that way.
Forward mode (``jvp``, ``jacfwd``) sweeps the ops' JVP rules forward instead.
"""

from common.printing import debugprint, pprint, to_dot

from .compile import Function, function
from .draw import added_nodes, draw, draw_grad, draw_jvp, draw_panels
from .explain import Explanation, ForwardExplanation, explain, explain_jacobian, explain_jvp
from .forward import jacfwd
from .grad import DISCONNECTED, build_grad, grad, stop_gradient
from .higher import hessian, hvp, jacobian, jacrev, jvp
from .jacmode import jacobian_mode
from .rewrite import optimize
from .vectorize import vectorize

__all__ = [
    "DISCONNECTED", "Explanation", "Function", "added_nodes", "build_grad", "debugprint", "draw",
    "ForwardExplanation", "draw_grad", "draw_jvp", "draw_panels", "explain", "explain_jacobian", "explain_jvp",
    "function", "grad", "hessian", "hvp", "jacfwd", "jacobian",
    "jacobian_mode", "jacrev", "jvp", "optimize", "pprint", "stop_gradient", "to_dot", "vectorize",
]
