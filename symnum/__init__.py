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

``symnum.grad`` has two call forms, told apart by its first argument (see
:func:`grad`): a function (``grad(f, argnums=0)`` returns the gradient
function, as in HIPS autograd and JAX) or tensors already recorded
(``grad(outputs, inputs, grad_outputs=None, ...)`` returns their gradients
now, a tuple of tensors, as ``torch.autograd.grad``).

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

from common.errors import GradError
from common.ops import OPS
from common.ops.composed import FUNCTIONS, bound
from common.site import user_site

from . import engine as _engine
from . import functional as _functional
from .engine import backward
from .forward import Dual
from .functional import hessian, hvp, jacfwd, jacobian, jacrev, jvp, value_and_grad, vjp
from .gradcheck import gradcheck, gradgradcheck
from .mode import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .program import evaluate, gradients
from .tape import TapeNode, tape
from .tensor import Tensor, VersionError, tensor
from .vmap import Mapped, vmap

__version__ = "0.1.0"

for _name in OPS:
    globals()[_name] = getattr(tape, _name)
for _name, _fn in FUNCTIONS.items():  # numpy's functions made of ops (sort, topk, pad, ...), on the tape
    globals()[_name] = bound(_fn, tape)

# after the op table: on the tape, loops and branches are Python's own, never recorded as ops
from common.linalg_nn import linalg_for as _linalg_for  # noqa: E402
from common.linalg_nn import nn_for as _nn_for  # noqa: E402

from .checkpoint import checkpoint  # noqa: E402
from .control import cond, scan, while_loop  # noqa: E402

linalg = _linalg_for(tape)
"""numpy.linalg's names on tensors (solve, cholesky, eigh, svd, ...)."""
nn = _nn_for(tape)
"""torch.nn.functional's convolution and pooling on tensors."""


def grad(*args, **kwargs):
    """The gradient, in the two call forms the libraries symnum follows give this one name.

    * **A function of a function**, as HIPS autograd's and JAX's ``grad``:
      ``grad(f, argnums=0, disconnected="raise")`` with a callable ``f`` returns
      ``grad_f``; ``grad_f(*args)`` runs ``f`` on a fresh tape and returns
      d f / d ``args[argnums]`` as numpy arrays of the arguments' shapes (a tuple
      when ``argnums`` is; tensors when nested inside another transform). See
      :func:`symnum.functional.grad`.
    * **Gradients now**, as ``torch.autograd.grad``: ``grad(outputs, inputs,
      grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False,
      disconnected=None)`` with tensors already recorded returns d(outputs)/d(inputs)
      as a tuple of tensors, one per input, and accumulates nothing into
      ``.grad``. See :func:`symnum.engine.grad`.

    The first argument decides (a tensor is never callable), or the keyword
    it is given by: ``f=`` or ``outputs=``. One name rather than two because
    both spellings are what users of those libraries type; a call that fits
    neither form is a :class:`GradError` that shows both.
    """
    if args:
        functional = callable(args[0]) and not isinstance(args[0], Tensor)
    elif "f" in kwargs or "outputs" in kwargs:
        functional = "f" in kwargs
    else:
        raise _misuse("got no function and no outputs")
    if functional:
        if len(args) > 1 and _tensors(args[1]):
            raise _misuse("the function form takes argument positions (argnums) second, got tensors")
        return _functional.grad(*args, **kwargs)
    if len(args) < 2 and "inputs" not in kwargs:
        raise _misuse("the tensor form needs the inputs to differentiate with respect to")
    return _engine.grad(*args, **kwargs)


def _tensors(x) -> bool:
    """Whether ``x`` is a tensor or a non-empty list or tuple of them."""
    if isinstance(x, (list, tuple)):
        return bool(x) and all(isinstance(t, Tensor) for t in x)
    return isinstance(x, Tensor)


def _misuse(what: str) -> GradError:
    return GradError(f"grad: {what}; call grad(f, argnums=0) with a function f for its gradient function, "
                     f"or grad(outputs, inputs) with tensors for their gradients now (at {user_site()})")


__all__ = [
    "Dual", "Mapped", "Tensor", "TapeNode", "VersionError", "backward", "checkpoint", "cond", "enable_grad",
    "evaluate", "grad",
    "gradcheck", "scan", "while_loop",
    "gradgradcheck", "gradients", "hessian", "hvp", "is_grad_enabled", "jacfwd", "jacobian", "jacrev", "jvp",
    "linalg", "nn", "no_grad", "set_grad_enabled", "tape", "tensor", "value_and_grad", "vjp", "vmap", *OPS, *FUNCTIONS,
]
