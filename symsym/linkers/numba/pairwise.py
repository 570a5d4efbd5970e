"""numpy's pairwise summation of a contiguous float64 row, compiled into the kernels that call it.

``np.add.reduce`` over a contiguous row is ``pairwise_sum`` of
``numpy/_core/src/umath/loops_utils.h.src`` added to the identity 0.0: runs
under 8 elements summed in order, up to ``PW_BLOCKSIZE`` (128) with eight
accumulators, longer ones split in two at a multiple of 8. :func:`pairwise_sum`
repeats it step for step, so its result is numpy's bit for bit
(``tests/test_numba_reductions.py`` checks every length to 1000 and a few
past 8192). Each function is ``register_jitable``: it compiles into the kernel
that calls it (no call across modules per row), and the recursion is a loop
over an explicit stack for the same reason. A kernel names a hash of this file in
its source (:mod:`.reductions`), so a change here changes the kernels' cache key.
"""

from __future__ import annotations

import numpy as np
from numba.extending import register_jitable

__all__ = ["BLOCK", "pairwise_sum"]

#: numpy's ``PW_BLOCKSIZE``: rows up to this long are summed with eight accumulators, longer ones split
BLOCK = 128


@register_jitable(error_model="numpy")
def _block(a, start: int, n: int) -> float:
    """numpy's pairwise sum of ``a[start:start + n]`` for ``n <= BLOCK``: sequential below 8, else eight
    accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then the tail in order."""
    if n < 8:
        res = -0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    r0, r1, r2, r3 = a[start], a[start + 1], a[start + 2], a[start + 3]
    r4, r5, r6, r7 = a[start + 4], a[start + 5], a[start + 6], a[start + 7]
    i = start + 8
    stop = start + n - n % 8
    while i < stop:
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < start + n:
        res += a[i]
        i += 1
    return res


@register_jitable(error_model="numpy")
def _half(n: int) -> int:
    """Where numpy splits a run longer than ``BLOCK``: at n / 2 rounded down to a multiple of 8."""
    n2 = n // 2
    return n2 - n2 % 8


@register_jitable(error_model="numpy")
def _split(a, n: int) -> float:
    """numpy's recursion past ``BLOCK`` (sum of the left half plus sum of the right), as a loop over an
    explicit stack, so it compiles into the calling kernel: ``starts``/``sizes`` the pending runs, ``left``
    the sum of a run's left half once known (``state`` 1), to be added to its right half's."""
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    state = np.zeros(64, np.int8)
    left = np.empty(64, np.float64)
    top = 0
    starts[0], sizes[0] = 0, n
    while True:
        if sizes[top] > BLOCK:  # descend into the left half
            h = _half(sizes[top])
            state[top] = 0
            starts[top + 1], sizes[top + 1] = starts[top], h
            top += 1
            continue
        v = _block(a, starts[top], sizes[top])
        while top > 0 and state[top - 1] == 1:  # a right half done: its parent's sum is done too
            top -= 1
            v = left[top] + v
        if top == 0:
            return v
        parent = top - 1  # a left half done: keep it, go to the right half
        left[parent] = v
        state[parent] = 1
        h = _half(sizes[parent])
        starts[top], sizes[top] = starts[parent] + h, sizes[parent] - h


@register_jitable(error_model="numpy")
def pairwise_sum(a, n: int) -> float:
    """``np.add.reduce(a[:n])`` for a contiguous float64 ``a``, bit for bit: the identity 0.0 plus
    numpy's pairwise sum (so a row of -0.0 sums to 0.0, as numpy's does)."""
    if n <= BLOCK:
        return 0.0 + _block(a, 0, n)
    return 0.0 + _split(a, n)
