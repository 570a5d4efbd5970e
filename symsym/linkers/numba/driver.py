"""What the numba linker's lowered schedule is made of, apart from how it is found: the driver's own ops
(a kernel call, the pick of one of its results), the conversions that give a value the type its kernel
was compiled for, compiling for the graph's types, the kernels' size limits and how a failure is named.

Both the region kernels (:mod:`.lower`) and the loop kernels (:mod:`.loop_kernels`) are built from these,
so neither imports the other's module for them.
"""

from __future__ import annotations

import numpy as np

from common.graph import Node
from common.ops import Kind
from common.ops.table import Op

from .speedups import linear_lowering

__all__ = ["MAX_KERNEL_NODES", "MAX_KERNEL_VALUES", "conversion", "converted", "driven", "driver_op", "failure",
           "numba_cache", "precompile"]

_F8 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)

#: the most nodes one kernel holds: numba's compile time grows with a function's length (about 3 ms a
#: node here), so a longer region is cut, in schedule order, into kernels of at most this many
MAX_KERNEL_NODES = 5_000
#: the most values one kernel takes in or gives back: a piece of a cut region can have thousands (a long
#: chain's backward reads every forward value), and numba's compile time and memory explode on a
#: signature that long (a 10^4-deep chain cut in pieces took minutes and tens of GB), so such a piece
#: stays numpy calls
MAX_KERNEL_VALUES = 64


def _no_infer(*inputs, **params):
    raise TypeError("a fused kernel is made by the numba linker, never by a user")


def driver_op(name: str, code: str | None = None, impl=None, params: tuple = ()) -> Op:
    """An op of the lowered schedule only (never in the op table): a kernel call or the pick of one output."""
    return Op(name, _no_infer, impl if impl is not None else _no_infer, code=code, params=params, kind=Kind.KERNEL)


def failure(what: str, error: Exception) -> str:
    """How a region that could not be compiled is named in the warning."""
    text = str(error).strip().splitlines()
    return f"{what} could not be compiled ({type(error).__name__}: {text[0] if text else ''})"


def numba_cache():
    """numba's side of the kernel cache, imported when a numba kernel is first made: a graph whose regions
    are all 0-d compiles with llvmlite alone and never pays numba's import (about a second)."""
    from . import diskcache
    return diskcache


def driven(n: Node) -> bool:
    """Whether ``n`` is a node of the lowered schedule only (a kernel call or a pick of its results)."""
    return n.op is not None and n.op.infer is _no_infer


def _typed(n: Node) -> bool:
    """Whether ``n``'s value reaches a kernel as :func:`precompile` types it, whatever the run: a variable
    (a C array: ``Function`` checks its shape and dtype; another layout compiles on first sight), a
    constant, a kernel's result, or a fresh op's (numpy scalars for 0-d; C arrays, but for a ufunc past 1-d,
    which follows its inputs' order: a transpose's gives a Fortran array)."""
    op = n.op
    if op is None or driven(n):
        return True
    if op.picks:
        return driven(n.inputs[0])
    return op.fresh and (len(n.shape) <= 1 or op.ufunc is None)


def _c_array(x):
    """``x`` as a writable C-contiguous array, the type the kernel was compiled for (a copy if it is not)."""
    if x.__class__ is np.ndarray:
        flags = x.flags
        if flags.c_contiguous and flags.writeable:
            return x
    return np.array(x, order="C")


_FLOAT_OR_BOOL = {_F8: float, _BOOL: bool}


def conversion(n: Node):
    """The function that gives ``n``'s value the type :func:`precompile` compiled for, or None when the
    graph fixes it already (:func:`_typed`): a view may be strided or read-only, and a 0-d value a scalar
    or a 0-d array, each of which numba would compile a version for, at the first call."""
    if _typed(n):
        return None
    return _c_array if n.shape else _FLOAT_OR_BOOL[n.dtype]


def converted(fn, args: list[Node]):
    """``fn`` called with each argument converted as :func:`conversion` says, or None when none needs it."""
    steps = [(k, c) for k, c in enumerate(map(conversion, args)) if c is not None]
    if not steps:
        return None

    def call(*values):
        values = list(values)
        for k, c in steps:
            values[k] = c(values[k])
        return fn(*values)
    return call


def precompile(fn, args: list[Node], lead: tuple = ()) -> None:
    """Compile now for the types the graph implies (C-contiguous arrays, numpy's usual output), so
    ``function()`` pays the compile (or the cache load) and the first call does not. Another layout (a
    transposed view) compiles on first sight. ``lead``: numba types of arguments before ``args``'."""
    from numba import typeof
    from numba.core import types

    sig = list(lead)
    for a in args:
        t = types.float64 if a.dtype == _F8 else types.boolean
        if a.is_const and a.shape:  # bound as it is: a graph's constants are read-only
            sig.append(typeof(a.value))
        else:
            sig.append(types.Array(t, len(a.shape), "C") if a.shape or a.op is None else t)
    with linear_lowering():
        fn.compile(tuple(sig))
