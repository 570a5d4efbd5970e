"""symbol-to-number: a tape recorded while evaluating, swept backwards (PyTorch style).

The book's §6.5.5 "symbol-to-number" approach: given a graph and numbers for
its inputs, return numbers for the gradient. Two entry points share one
engine (:mod:`symnum.engine`):

* define-by-run: ``x = symnum.tensor(data, requires_grad=True)``, then any op
  of the table (``symnum.sin(x)``, ``x @ w``, ``x[1:, None]``, ...) records a
  tape; ``loss.backward()`` fills ``x.grad``;
* the shared IR: ``symnum.gradients(outputs, wrt, values)`` evaluates a
  ``common`` graph on numbers with the same tape and returns numpy arrays
  (``symnum.evaluate`` for values only).

``symnum.grad`` has two forms, told apart by its first argument: a function
(``grad(f, argnums=0)`` returns the gradient function, as in HIPS autograd
and JAX) or tensors (``grad(outputs, inputs, grad_outputs=None, ...)``
returns a tuple of tensors, as ``torch.autograd.grad``).

Values saved for the backward sweep can never change under it: there are no
in-place ops, tensors copy the arrays they are made from, ``.data`` and
``.numpy()`` are read-only views, numpy operands are copied when saved, and
replacing a leaf's value (``x.data = ...``) after an op saved it makes the
backward raise :class:`VersionError`. Sweeps hold no state on the tape, so
threads may sweep one tape at once. An input the outputs do not depend on is
an error by default in ``grad``, ``gradients`` and ``grad(f)``
(``disconnected="zero"`` or ``"none"`` to allow it, as in ``symsym.grad``).
Non-differentiable points
follow PyTorch: abs'(0) = 0, relu'(0) = 0, ties in maximum/minimum and in
max/min reductions share the cotangent evenly, sqrt'(0) = inf.
"""

from __future__ import annotations

from common.ops import OPS

from . import engine as _engine
from . import functional as _functional
from .engine import backward
from .forward import Dual, jacfwd, jacrev
from .functional import hessian, hvp, jacobian, jvp, value_and_grad, vjp
from .gradcheck import gradcheck, gradgradcheck
from .mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .program import evaluate, gradients
from .tape import TapeNode, tape
from .tensor import Tensor, VersionError, tensor

__version__ = "0.1.0"

for _name in OPS:
    globals()[_name] = getattr(tape, _name)


def grad(fn_or_outputs, *args, **kwargs):
    """Both gradients in one name, chosen by the first argument.

    ``grad(f, argnums=0, disconnected="raise")`` with a callable ``f``: the
    gradient function (:func:`symnum.functional.grad`). ``grad(outputs,
    inputs, grad_outputs=None, retain_graph=None, create_graph=False,
    allow_unused=False, disconnected=None)`` with tensors: the gradients now,
    as a tuple of tensors (:func:`symnum.engine.grad`).
    """
    if callable(fn_or_outputs) and not isinstance(fn_or_outputs, Tensor):
        return _functional.grad(fn_or_outputs, *args, **kwargs)
    return _engine.grad(fn_or_outputs, *args, **kwargs)


__all__ = [
    "Dual", "Tensor", "TapeNode", "VersionError", "backward", "enable_grad", "evaluate", "grad", "gradcheck",
    "gradgradcheck", "gradients", "hessian", "hvp", "is_grad_enabled", "jacfwd", "jacobian", "jacrev", "jvp",
    "no_grad", "set_grad_enabled", "tape", "tensor", "value_and_grad", "vjp", *OPS,
]
