"""``as_scalar``: a 0-d input of a fused loop as a scalar, whatever form it arrives in.

A 0-d value reaches a kernel as a 0-d array (a function input, a constant) or
as a scalar (what numpy and other kernels return for 0-d results). numba
compiles one version per argument type; this overload makes the one source
read both.
"""

from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload

__all__ = ["as_scalar"]


def as_scalar(x):
    """The element of a 0-d array, or the scalar itself (the pure-Python meaning of the overload)."""
    return x[()] if isinstance(x, np.ndarray) else x


@overload(as_scalar)
def _as_scalar(x):
    if isinstance(x, types.Array):
        return lambda x: x[()]
    return lambda x: x
