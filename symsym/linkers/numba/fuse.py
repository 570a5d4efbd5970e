"""Fusion regions: maximal groups of elementwise nodes of one shape that can run as one loop.

A pure function of the schedule. Nodes are visited in schedule order; a node
that can be fused (``fusable``) joins the region of one of its inputs of the
same shape, and the regions of its other same-shaped inputs merge in, as long
as no path leaves the region and comes back into it through a node outside
(that node would have to run both before and after the loop). Such paths are
found with one bitset per node: the regions it depends on, each region owning
one bit. The test is conservative (a region that merely depends on another is
never merged with it), so a region is always a valid single step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.errors import TwogradError
from common.graph import Node
from common.ops import Kind
from common.ops.table import Op

from ..lowering import lowering
from .vforms import small, vectorises

__all__ = ["Region", "fusable", "regions"]

_F8 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)


def fusable(n: Node) -> bool:
    """Whether ``n`` can be a statement of a fused loop: an elementwise op with a scalar form on float64
    values, a comparison's bool output, or a bool where the op's type rule asks for one (a condition)."""
    op = n.op
    form = lowering(op, "numba")
    if not isinstance(form, str) or op.kind is not Kind.ELEMENTWISE or not (n.dtype == _F8 or n.dtype == _BOOL):
        return False
    if n.shape and op.ufunc is not None and "math." in form and not (vectorises(form) or small(n.shape)):
        return False  # on arrays numpy's SIMD loop beats a libm call per element; vmath's forms vectorise too
    for pos, i in enumerate(n.inputs):
        if i.dtype != _F8 and not (i.dtype == _BOOL and _wants_bool(op, pos, len(n.inputs))):
            return False
    return True


_BOOL_SLOTS: dict = {}


def _wants_bool(op: Op, pos: int, nin: int) -> bool:
    """Whether ``op``'s type rule refuses a float at input ``pos`` (a condition): then a bool there is the
    form's own case, which the scalar-form tests check. Asked once per op and position."""
    key = (op, pos, nin)
    got = _BOOL_SLOTS.get(key)
    if got is None:
        probe = [np.zeros((), _F8)] * nin
        try:
            op.infer(*probe)
            got = False
        except TwogradError:
            got = True
        _BOOL_SLOTS[key] = got
    return got


class Region:
    """Nodes that become one loop: ``shape`` is every member's shape, ``nodes`` in schedule order."""

    __slots__ = ("bit", "mask", "ext", "shape", "nodes", "merged_into")

    def __init__(self, bit: int, shape: tuple):
        self.bit = bit          # this region's own bit
        self.mask = bit         # its bit and those of the regions merged into it
        self.ext = 0            # what its outside inputs depend on (bits), for merge tests
        self.shape = shape
        self.nodes: list[Node] = []
        self.merged_into: Region | None = None

    def root(self) -> Region:
        r = self
        while r.merged_into is not None:
            r = r.merged_into
        return r


def regions(order: list[Node], fusable: Callable[[Node], bool]) -> list[Region]:
    """The fusion regions of ``order`` with at least one node, each's nodes in schedule order."""
    deps: dict[int, int] = {}       # node -> bits of the regions it depends on, its own included
    member: dict[int, Region] = {}  # node -> the region it joined (follow .root())
    made: list[Region] = []
    for n in order:
        up = 0
        for i in n.inputs:
            up |= deps[id(i)]
        if n.op is None or not fusable(n):
            deps[id(n)] = up
            continue
        region = _join(n, member, deps, made)
        member[id(n)] = region
        deps[id(n)] = up | region.bit
    out = [r for r in made if r.merged_into is None]
    position = {id(n): k for k, n in enumerate(order)}
    for r in out:
        r.nodes.sort(key=lambda n: position[id(n)])
    return out


def _join(n: Node, member: dict, deps: dict, made: list) -> Region:
    """The region ``n`` joins (merging its same-shaped input regions where safe), or a new one."""
    candidates: list[Region] = []
    for i in n.inputs:
        r = member.get(id(i))
        if r is not None:
            r = r.root()
            if r.shape == n.shape and r not in candidates:
                candidates.append(r)
    base = None
    for r in candidates:
        if _outside_free_of(n, r.mask, member, deps, r):
            base = r
            break
    if base is None:
        base = Region(1 << len(made), n.shape)
        made.append(base)
        _note_inputs(base, n, member, deps)
        base.nodes.append(n)
        return base
    for r in candidates:
        if r is base or r.merged_into is not None:
            continue
        if r.ext & base.mask or base.ext & r.mask or not _outside_free_of(n, r.mask, member, deps, base, r):
            continue
        r.merged_into = base
        base.mask |= r.mask
        base.ext |= r.ext
        base.nodes.extend(r.nodes)
    _note_inputs(base, n, member, deps)
    base.nodes.append(n)
    return base


def _outside_free_of(n: Node, mask: int, member: dict, deps: dict, *inside: Region) -> bool:
    """Whether no input of ``n`` outside the regions ``inside`` depends on a region in ``mask``: an input in
    another region counts with all that region's loop reads (``ext``), since the loop runs as one step."""
    for i in n.inputs:
        r = member.get(id(i))
        if r is not None and r.root() in inside:
            continue
        if (deps[id(i)] | (r.root().ext if r is not None else 0)) & mask:
            return False
    return True


def _note_inputs(region: Region, n: Node, member: dict, deps: dict) -> None:
    for i in n.inputs:
        r = member.get(id(i))
        if r is None or r.root() is not region:
            region.ext |= deps[id(i)]
