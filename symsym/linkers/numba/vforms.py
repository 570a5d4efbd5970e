"""Which scalar forms an array loop can compute with :mod:`.vmath` (vectorisable math) instead of libm.

The numba linker's choice of math library, read from the op table's
``scalar`` forms as they are (``math.sin({0})``): a form vectorises when every
``math`` function it calls is in :data:`NAMES`, and every call of a
:data:`RANGED` function (sin, cos: exact only for |x| < 2**20) takes one bare
operand, so the loop can check that operand with ``vmath.far`` and rerun with
libm when any element is past the range. This module does not import numba
(the linker decides what to fuse before it needs numba), so the names live
here and :mod:`.vmath` builds its table from them.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

__all__ = ["MATH_CALL", "NAMES", "RANGED", "SMALL", "VERSION", "ranged_operands", "small", "vectorises"]

#: the ``math`` functions :mod:`.vmath` computes branch-free
NAMES = frozenset({"exp", "expm1", "log", "log1p", "sin", "cos", "tanh", "sqrt"})
#: those that answer only for a finite |x| below a bound (``vmath.far`` says where not)
RANGED = frozenset({"sin", "cos"})
#: changes with vmath.py's text: array kernels name it, so the disk cache (keyed by a kernel's source)
#: never serves a kernel compiled against an older vmath
VERSION = hashlib.sha256(Path(__file__).with_name("vmath.py").read_bytes()).hexdigest()[:12]

#: arrays of fewer elements than this (all dims known) are looped like scalars: libm for every math call
#: (no SIMD lane to fill; libm's shorter latency wins, and a numpy call costs a microsecond)
SMALL = 64

#: a call of a ``math`` function in a scalar form (the name is group 1)
MATH_CALL = re.compile(r"\bmath\.(\w+)\(")
_BARE = re.compile(r"\bmath\.(\w+)\(\{(\d+)\}\)")


def vectorises(scalar: str) -> bool:
    """Whether every math call of the scalar form ``scalar`` has a vmath form usable in an array loop."""
    calls = MATH_CALL.findall(scalar)
    if not all(f in NAMES for f in calls):
        return False
    ranged = sum(f in RANGED for f in calls)
    return ranged == sum(f in RANGED for f, _ in _BARE.findall(scalar))


def ranged_operands(scalar: str) -> list[int]:
    """The operand positions that a vectorised ``scalar`` passes to a RANGED function (to be checked)."""
    return sorted({int(k) for f, k in _BARE.findall(scalar) if f in RANGED})


def small(shape: tuple) -> bool:
    """Whether a loop over ``shape`` is short enough to call libm like a 0-d kernel (every dim known)."""
    size = 1
    for d in shape:
        if d is None:
            return False
        size *= d
    return size < SMALL
