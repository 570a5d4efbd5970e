"""Row sums inside a fused loop: ``sum(f(x), axis=-1)`` without writing ``f(x)`` to memory.

A fused region's value that is read only by a ``sum`` over its last axis (or
over the whole of a 1-d value) need not be stored: the kernel writes each row's
elements into one row-sized buffer (it stays in L1 cache) and, after the
innermost loop, sums the buffer into the reduced output. The sum is numpy's
own pairwise summation, repeated step for step (:mod:`.pairwise`), so the
kernel's result equals the numpy linker's bit for bit (the kernel's region
value is always C-contiguous, as numpy's is from C-contiguous inputs). This
module writes the lines and never imports numba.

Only that narrow case is fused; a sum over another axis, or of a value read
elsewhere too, stays a numpy call after the kernel.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from common.graph import Node
from common.ops import Kind

__all__ = ["RowSums", "fused_sums", "is_row_sum", "row_sums"]

_F8 = np.dtype(np.float64)
#: a hash of :mod:`.pairwise` (read without importing numba), written into each kernel that calls it: numba's
#: cache of a kernel does not see a change in what it calls, a change of the kernel's source does
VERSION = hashlib.sha256((Path(__file__).parent / "pairwise.py").read_bytes()).hexdigest()[:12]


def _row_sum_of(c: Node | None, d: int) -> bool:
    """Whether consumer ``c`` is a float64 sum over the last axis of a ``d``-dim value."""
    return (c is not None and c.op.kind is Kind.REDUCTION and c.op.name == "sum" and d > 0
            and c.dtype == _F8 and tuple(c.params["axis"]) == (d - 1,))


def fused_sums(nodes: list[Node], consumers: dict[int, list], d: int) -> list[Node]:
    """The sums that join the kernel of ``nodes`` (a piece of a ``d``-dim region): each reads a value of the
    piece over its last axis and is that value's only reader (so the value is never stored)."""
    out = []
    for n in nodes:
        cs = consumers[id(n)]
        if len(cs) == 1 and _row_sum_of(cs[0], d):
            out.append(cs[0])
    return out


class RowSums:
    """The kernel lines of its fused sums: ``setup`` before the loops (row buffers, output arrays),
    ``stores`` in the innermost loop, ``after`` after it (inside the outer loops), ``binds`` globals."""

    __slots__ = ("setup", "stores", "after", "binds")

    def __init__(self, setup: list[str], stores: list[str], after: list[str], binds: str):
        self.setup, self.stores, self.after, self.binds = setup, stores, after, binds


def row_sums(outputs: list[Node], values: dict[int, str], bounds: list[str]) -> RowSums:
    """The lines that compute each sum among ``outputs`` (output ``j`` is ``o{j}``) from its input's value
    name in ``values``, in a loop nest over ``bounds``."""
    d = len(bounds)
    setup, stores, after = [], [], []
    outer = ", ".join(f"i{k}" for k in range(d - 1))
    for j, o in enumerate(outputs):
        if not is_row_sum(o):
            continue
        setup.append(f"w{j} = np.empty({bounds[-1]}, np.float64)")
        stores.append(f"w{j}[i{d - 1}] = {values[id(o.inputs[0])]}")
        total = f"pairwise_sum(w{j}, {bounds[-1]})"
        if not o.shape:
            after.append(f"o{j} = {total}")
            continue
        dims = bounds[:-1] + (["1"] if o.params["keepdims"] else [])
        setup.append(f"o{j} = np.empty(({', '.join(dims)},), np.float64)")
        where = ", ".join([outer] * (d > 1) + ["0"] * o.params["keepdims"])
        after.append(f"o{j}[{where}] = {total}")
    binds = ""
    if stores:
        binds = f"from symsym.linkers.numba.pairwise import pairwise_sum  # pairwise {VERSION}\n"
    return RowSums(setup, stores, after, binds)


def is_row_sum(n: Node) -> bool:
    """Whether kernel member ``n`` is a fused sum (not an elementwise statement)."""
    return n.op.kind is Kind.REDUCTION
