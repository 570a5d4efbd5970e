"""Tensor: a numpy array that may remember how it was made.

A tensor is ``data`` (a numpy array, or a numpy scalar for 0-d results, which
numpy returns and which behave the same) plus ``requires_grad``. A tensor made
by an op on tensors that require grad points at its tape node (``grad_fn``);
a tensor the user made is a *leaf* (``grad_fn is None``) and collects its
gradient in ``.grad`` after :meth:`Tensor.backward`.

In-place ops are not offered: every op makes a new tensor, so a value saved on
the tape for the backward sweep can never change under it (PyTorch needs
version counters for that; twograd does not). The operators, indexing and the
numpy-like methods are installed by :mod:`symnum.tape`, through the same
namespace as the ``symnum.<op>`` functions.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable

import numpy as np

from common.errors import DTypeError, GradError


class Tensor:
    """An array with an optional gradient history; see the module docstring."""

    # ``grad`` and ``hooks`` are set on few tensors (leaves): they live in a lazily made
    # __dict__, so making an op's output writes three slots
    __slots__ = ("data", "requires_grad", "grad_fn", "__dict__", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * t`` is a Tensor
    grad = None
    hooks = None

    def __init__(self, data, requires_grad: bool = False, grad_fn=None):
        self.data = data
        self.requires_grad = requires_grad
        self.grad_fn = grad_fn

    # --- array-like facts
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """Made by the user (or detached), not by an op on tensors that require grad."""
        return self.grad_fn is None

    def __len__(self) -> int:
        if not self.data.ndim:
            raise TypeError("len() of a 0-d tensor")
        return len(self.data)

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self.data, dtype=dtype)
        return arr.copy() if copy else arr

    def numpy(self) -> np.ndarray:
        """The value as a numpy array (shared, not copied)."""
        return np.asarray(self.data)

    def item(self):
        return self.data.item()

    def __float__(self) -> float:
        return float(self.data)

    def __int__(self) -> int:
        return int(self.data)

    def __bool__(self) -> bool:
        return bool(self.data)

    def __repr__(self) -> str:
        extra = ""
        if self.grad_fn is not None:
            extra = f", grad_fn=<{self.grad_fn.op.name}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(np.asarray(self.data), separator=", ", prefix="tensor(")
        return f"tensor({body}{extra})"

    # --- gradient bookkeeping
    def backward(self, gradient=None, retain_graph: bool | None = None, create_graph: bool = False) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``gradient`` is d(loss)/d(self); it may be left out only when ``self``
        has one element (then it is 1). ``retain_graph`` (default: as
        ``create_graph``) keeps the saved values for another backward;
        ``create_graph`` records the backward itself, so ``.grad`` can be
        differentiated again.
        """
        from .engine import backward

        backward([self], None if gradient is None else [gradient], retain_graph, create_graph)

    def detach(self) -> Tensor:
        """The same data with no history: a new leaf that does not require grad."""
        return Tensor(self.data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf as needing ``.grad`` (only floating leaves can)."""
        if self.grad_fn is not None:
            raise GradError("requires_grad_ can only change leaf tensors; use detach() for a non-leaf")
        if requires_grad:
            check_float(self.data, "requires_grad_")
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradient (or set it to zeros)."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad = Tensor(np.zeros_like(np.asarray(self.grad.data)))

    def register_hook(self, fn: Callable) -> Callable[[], None]:
        """Call ``fn(grad)`` when this tensor's gradient is computed.

        ``fn`` gets the total gradient for this tensor in one backward sweep as
        a Tensor and may return a replacement. Returns a function that removes
        the hook.
        """
        if not self.requires_grad:
            raise GradError("cannot register a hook on a tensor that does not require grad")
        node = self.grad_fn
        if node is None:
            if self.hooks is None:
                self.hooks = []
            hooks = self.hooks
        else:
            if node.hooks is None:
                node.hooks = []
            hooks = node.hooks
        hooks.append(fn)
        return lambda: fn in hooks and hooks.remove(fn)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` (leaves always do)."""
        if not self.requires_grad:
            raise GradError("cannot retain_grad on a tensor that does not require grad")
        node = self.grad_fn
        if node is not None and not any(isinstance(h, _Retain) for h in node.hooks or ()):
            if node.hooks is None:
                node.hooks = []
            node.hooks.append(_Retain(self))


class _Retain:
    """The hook behind :meth:`Tensor.retain_grad`: accumulate into the tensor's ``.grad``
    (held weakly: the tape must not keep a tensor alive)."""

    __slots__ = ("ref",)

    def __init__(self, t: Tensor):
        self.ref = weakref.ref(t)

    def __call__(self, g: Tensor) -> None:
        from .engine import accumulate

        t = self.ref()
        if t is not None:
            t.grad = accumulate(t.grad, g)


def check_float(data, what: str) -> None:
    """Only floating values have gradients; say so instead of failing later."""
    dtype = getattr(data, "dtype", None)
    if dtype is None or dtype.kind != "f":
        raise DTypeError(f"{what}: only floating tensors can require grad, got dtype {dtype}")


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` (like ``torch.tensor``)."""
    if isinstance(data, Tensor):
        data = data.data
    arr = np.array(data, dtype=dtype)
    if requires_grad:
        check_float(arr, "tensor")
    return Tensor(arr, bool(requires_grad))
