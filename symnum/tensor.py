"""Tensor: a numpy array that may remember how it was made.

A tensor is its value (a numpy array, or a numpy scalar for 0-d results, which
numpy returns and which behave the same) plus ``requires_grad``. A tensor made
by an op on tensors that require grad points at its tape node (``grad_fn``);
a tensor the user made is a *leaf* (``grad_fn is None``) and collects its
gradient in ``.grad`` after :meth:`Tensor.backward`.

The tape saves values, not copies, so a saved value must never change under
it. Hence every array a tensor holds is twograd's own and is never written:
``tensor(arr)`` and ``Tensor(arr)`` copy ``arr`` (as ``torch.tensor`` does;
there is no sharing ``from_numpy``), ``.data``, ``.numpy()`` and
``np.asarray(t)`` hand out read-only views, and numpy operands are copied when
an op that saves them is recorded (:func:`symnum.tape.record`). The one edit
is replacing a value, ``t.data = new``, allowed on tensors without history; it
bumps ``t``'s version, PyTorch's version counter, and a backward through an op
that saved ``t`` before the edit raises :class:`VersionError` instead of
returning the gradient at a value ``t`` no longer has. There are no in-place
ops. The operators, indexing and the numpy-like methods are installed by
:mod:`symnum.tape`, through the same namespace as the ``symnum.<op>`` functions.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np

from common.errors import DTypeError, GradError
from common.site import user_site

from . import memory  # noqa: F401  (glibc keeps the pages one tape frees for the next: see symnum.memory)

_KEPT_VERSIONS = 8


class VersionError(GradError):
    """A value saved for the backward sweep was replaced (``t.data = ...``) after it was saved."""


class Tensor:
    """An array with an optional gradient history; see the module docstring.

    ``Tensor(data, requires_grad=False)`` copies ``data``, so the caller's
    array can never change a recorded gradient (:func:`tensor` is the usual
    spelling). ``.data`` reads the value as a read-only view; assigning
    ``.data`` replaces it (see :attr:`data`).
    """

    # ``grad``, ``hooks`` and a bumped ``_version`` are set on few tensors (leaves): they live in
    # a lazily made __dict__, so making an op's output writes three slots
    __slots__ = ("_data", "requires_grad", "grad_fn", "__dict__", "__weakref__")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * t`` is a Tensor
    grad = None
    hooks = None
    _version = 0  # how many times ``.data`` was assigned (PyTorch's version counter)
    _saved_at = None  # where the first op that saved this version was recorded (symnum.tape)

    def __init__(self, data, requires_grad: bool = False, grad_fn=None):
        self._data = np.array(data._data if isinstance(data, Tensor) else data)
        self.requires_grad = requires_grad
        self.grad_fn = grad_fn

    @property
    def data(self) -> np.ndarray:
        """The value, as a read-only numpy view (no copy); writing its elements raises.

        Assigning ``t.data = new`` replaces the value with a copy of ``new``
        (any shape; floating when ``t`` requires grad) and bumps ``t``'s
        version: an op recorded before the assignment saved the old value, and
        a backward through it raises :class:`VersionError` (this is how an
        optimiser step may update a parameter between a backward and the next
        forward). A tensor with history (``grad_fn``) cannot be assigned:
        its value is an op's output, saved on the tape; ``detach()`` it first.
        """
        return readonly(self._data)

    @data.setter
    def data(self, value) -> None:
        if self.grad_fn is not None:
            raise GradError(f"cannot assign .data of a tensor made by {self.grad_fn.op.name} (it has history "
                            f"the tape saved); assign a detach()ed copy instead (at {user_site()})")
        arr = np.array(value._data if isinstance(value, Tensor) else value)
        if self.requires_grad:
            check_float(arr, ".data assignment")
        # what an error about a stale saved value will say, by the id of the array a node saved
        # (unique while a node holds it); the last few versions are plenty
        self._replaced = [*getattr(self, "_replaced", ())[-(_KEPT_VERSIONS - 1):],
                          (id(self._data), self._version, self._saved_at, user_site())]
        self._data = arr
        self._version += 1
        self._saved_at = None

    def replaced(self, saved) -> tuple:
        """``(version, where first saved, where replaced)`` of the value ``saved`` this tensor held
        before a ``.data`` assignment (Nones when it is not among the last few)."""
        for key, version, saved_at, assigned_at in reversed(getattr(self, "_replaced", ())):
            if key == id(saved):
                return version, saved_at, assigned_at
        return None, None, None

    # --- array-like facts
    @property
    def shape(self) -> tuple:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        """Made by the user (or detached), not by an op on tensors that require grad."""
        return self.grad_fn is None

    def __len__(self) -> int:
        if not self._data.ndim:
            raise TypeError("len() of a 0-d tensor")
        return len(self._data)

    def __array__(self, dtype=None, copy=None):
        arr = np.asarray(self._data, dtype=dtype)
        if copy:
            return arr.copy()
        return readonly(arr) if arr is self._data else arr

    def numpy(self) -> np.ndarray:
        """The value as a read-only numpy array: a view, not a copy (``np.array(t)`` copies)."""
        data = self._data
        return readonly(data if data.__class__ is np.ndarray else np.asarray(data))

    def item(self):
        return self._data.item()

    def __float__(self) -> float:
        return float(self._data)

    def __int__(self) -> int:
        return int(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __repr__(self) -> str:
        extra = ""
        if self.grad_fn is not None:
            extra = f", grad_fn=<{self.grad_fn.op.name}>"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        body = np.array2string(np.asarray(self._data), separator=", ", prefix="tensor(")
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
        """The same value with no history: a new leaf that does not require grad (no copy: values
        are never written)."""
        return wrap(self._data)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark a leaf as needing ``.grad`` (only floating leaves can)."""
        if self.grad_fn is not None:
            raise GradError("requires_grad_ can only change leaf tensors; use detach() for a non-leaf")
        if requires_grad:
            check_float(self._data, "requires_grad_")
        self.requires_grad = bool(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the accumulated gradient (or set it to zeros)."""
        if set_to_none or self.grad is None:
            self.grad = None
        else:
            self.grad = wrap(np.zeros_like(np.asarray(self.grad._data)))

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
        t = self.ref()
        if t is not None:
            with ACCUMULATING:
                t.grad = accumulate(t.grad, g)


ACCUMULATING = threading.Lock()
"""Held while a ``.grad`` is read and replaced: two threads' backward into one leaf both count."""


def accumulate(old: Tensor | None, g) -> Tensor:
    """``old + g`` as a new Tensor (``.grad`` accumulation).

    Numbers are copied when first stored: rules pass cotangents on unchanged
    or as read-only broadcast views, and two ``.grad`` must never share memory.
    A ``g`` with history (``create_graph``) is added on the tape instead.
    """
    if isinstance(g, Tensor):
        if g.requires_grad:
            return g if old is None else old + g
        g = g._data
    if old is None:
        return wrap(np.array(g))
    return wrap(np.asarray(old._data + g))


_new = object.__new__


def wrap(data, requires_grad: bool = False, grad_fn=None) -> Tensor:
    """A tensor holding ``data`` itself, not a copy: for arrays twograd made and never writes."""
    t = _new(Tensor)
    t._data = data
    t.requires_grad = requires_grad
    t.grad_fn = grad_fn
    return t


def readonly(value):
    """``value`` as a read-only view when it is an array (numpy scalars are immutable already)."""
    if value.__class__ is not np.ndarray or not value.flags.writeable:
        return value
    view = value.view()
    view.setflags(write=False)  # a method call: assigning ``view.flags.writeable`` makes a flags object first
    return view


def check_float(data, what: str) -> None:
    """Only floating values have gradients; say so instead of failing later."""
    dtype = getattr(data, "dtype", None)
    if dtype is None or dtype.kind != "f":
        raise DTypeError(f"{what}: only floating tensors can require grad, got dtype {dtype}")


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` (like ``torch.tensor``): later writes to
    ``data`` never reach the tensor or a gradient recorded from it."""
    if isinstance(data, Tensor):
        data = data._data
    arr = np.array(data, dtype=dtype)
    t = _new(Tensor)
    t._data = arr
    t.grad_fn = None
    if requires_grad:
        check_float(arr, "tensor")
        t.requires_grad = True
    else:
        t.requires_grad = False
    return t
