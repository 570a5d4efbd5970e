"""What every function transform of symnum shares: the recording switch, the output check, ``argnums``.

``grad``/``jacrev`` (:mod:`symnum.functional`), ``jvp``/``jacfwd``
(:mod:`symnum.forward`) and ``vmap`` nest inside one another; each marks
itself running with :func:`transforming`, so an inner one keeps its results
differentiable for the outer.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from common.errors import GradError
from common.site import user_site

from .mode import MODE
from .tensor import Tensor, wrap


@contextmanager
def transforming():
    """Mark a transform as running (nested ones record their backward) and turn recording on."""
    prev = MODE.enabled
    MODE.enabled = True
    MODE.depth += 1
    try:
        yield
    finally:
        MODE.depth -= 1
        MODE.enabled = prev


def output_tensor(y, what: str) -> Tensor:
    """``y`` as the one tensor a transformed function must return, or a GradError naming ``what``."""
    if isinstance(y, Tensor):
        return y
    try:
        return wrap(np.asarray(y))
    except Exception:
        raise GradError(f"{what}: the function must return one tensor, got {type(y).__name__} "
                        f"(at {user_site()})") from None


def argnums_of(argnums, what: str) -> tuple[bool, tuple[int, ...]]:
    """``(single, positions)``; checked here, their range when the function is called."""
    if argnums.__class__ is int:  # the usual argnums=0: what the checks below would make of it
        return True, (argnums,)
    single = not isinstance(argnums, (tuple, list))
    nums = (argnums,) if single else tuple(argnums)
    if not nums or not all(isinstance(i, (int, np.integer)) and not isinstance(i, bool) for i in nums):
        raise GradError(f"{what}: argnums must be an int or a non-empty tuple of ints, got {argnums!r} "
                        f"(at {user_site()})")
    if len(set(nums)) != len(nums):
        raise GradError(f"{what}: argnums {argnums!r} names an argument twice (at {user_site()})")
    return single, tuple(int(i) for i in nums)
