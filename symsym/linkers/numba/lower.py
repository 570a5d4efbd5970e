"""The numba linker: each maximal elementwise region of the schedule becomes one compiled loop.

``lower(order, outs)`` (the :mod:`symsym.linkers` interface) finds the
regions (:mod:`.fuse`) of nodes that have a scalar form (the op table's
``scalar`` trait) and float64 values (or bool, from a comparison), writes
one loop per region of two or more nodes, or of one whose value a row sum
reads (:mod:`.loops`), loads it through
the on-disk cache (:mod:`.cache`) and compiles it for the argument types the
graph implies, and returns the schedule with each region replaced by one
node that calls the kernel. A sum over the last axis of a region value read
by nothing else joins the region's loop (:mod:`.reductions`). Everything
else (matmul and einsum on BLAS, other reductions with numpy's pairwise
summation, shape ops, ops without a scalar form, control-flow ops) stays a
numpy call in the driver between kernels.
A 0-d region (a scalar chain) skips numba: :mod:`symsym.linkers.llvm.chains` writes it as
one LLVM function straight from the forms, and only a region it cannot
translate comes back to numba's loops. First of all, a ``scan`` or
``while_loop`` whose values are all scalars becomes one kernel with the loop
inside (:mod:`.loop_kernels`); other loops run as the numpy linker runs them.

Exactness: numba compiles without fast-math and with numpy's error model
(x/0 is inf, not an exception), and each scalar form equals its numpy impl,
so a kernel's results equal the numpy linker's up to the last-bit
differences of the math library (``tests/test_numba_*``).

A kernel is compiled inside ``function()`` for the argument types the graph
implies (:func:`.driver.precompile`); a value whose type the graph does not fix (a
view: a slice, a broadcast, an item of a Python loop's tuple) is made so on
its way in (:func:`.driver.conversion`), so the first call compiles nothing. A
region (or loop) whose lowering or compile raises keeps the numpy path, and
``function()`` says so in one :class:`CompileFallbackWarning` naming the
cause: a compiler that changed under us costs speed, never values.
"""

from __future__ import annotations

import heapq
import warnings

import numpy as np

from common.graph import Node

from ..llvm import chains as llvm_scalar
from ..lowering import Lowered
from . import cut
from .driver import (
    MAX_KERNEL_NODES,
    MAX_KERNEL_VALUES,
    converted,
    driver_op,
    failure,
    numba_cache,
    precompile,
)
from .fuse import fusable, regions
from .loop_kernels import lower_scans
from .loopnest import MISMATCH, Kernel, kernel_source
from .rowsums import fused_sums

__all__ = ["CompileFallbackWarning", "lower"]

_F8 = np.dtype(np.float64)
_BOOL = np.dtype(np.bool_)


_PICK = driver_op("kernel_output", "{0}[{k}]", lambda t, k: t[k], ("k",))
#: 0-d results leave a kernel as Python scalars; numpy code after it gets numpy scalars, as numpy gives
_AS_NUMPY = {(_F8, False): driver_op("kernel_scalar", "np.float64({0})", np.float64),
             (_BOOL, False): driver_op("kernel_bool", "np.bool_({0})", np.bool_),
             (_F8, True): driver_op("kernel_output_scalar", "np.float64({0}[{k}])",
                                     lambda t, k: np.float64(t[k]), ("k",)),
             (_BOOL, True): driver_op("kernel_output_bool", "np.bool_({0}[{k}])", lambda t, k: np.bool_(t[k]), ("k",))}


#: the most nodes fused in one function (about a minute and a half of compiling, cold); regions past
#: it, in schedule order, stay numpy calls, so a 10^5-node graph compiles in bounded time
MAX_FUSED_NODES = 30_000
class CompileFallbackWarning(RuntimeWarning):
    """Some regions of a graph could not be compiled and run as numpy calls: the same values, slower."""


def lower(order: list[Node], outs: list[Node]) -> Lowered:
    failed: list[str] = []  # what raised while lowering or compiling a region, said once at the end
    lowered = _lower(order, outs, failed, lower_scans)
    if failed:
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        warnings.warn(f"symsym.function(linker='numba'): {failed[0]}{more}; the numpy path runs there instead "
                      "(the same values, without the compiled speed)", CompileFallbackWarning, stacklevel=6)
    return lowered


def _lower(order: list[Node], outs: list[Node], failed: list[str], lower_scans) -> Lowered:
    order, outs, loop_sources = lower_scans(order, outs, failed)  # a loop of scalars: one kernel, loop inside
    consumers = _consumers(order, outs)
    found = [r for r in regions(order, fusable) if len(r.nodes) > 1 or fused_sums(r.nodes, consumers, len(r.shape))]
    member: dict[int, int] = {}
    kernels: list[tuple[list[Node], Kernel]] = []
    budget = MAX_FUSED_NODES
    scalar_budget = llvm_scalar.MAX_TOTAL_NODES
    for r in found:
        if not r.shape and _scalar_pieces(r.nodes, consumers, member, kernels, scalar_budget, failed):
            scalar_budget -= len(r.nodes)  # 0-d: LLVM functions written from the forms (llvm.chains)
            continue
        for nodes in cut.pieces(r.nodes, consumers, MAX_KERNEL_NODES, MAX_KERNEL_VALUES):  # schedule order
            sums = fused_sums(nodes, consumers, len(r.shape))  # row sums end the loop (.reductions)
            if len(nodes) + len(sums) < 2 or len(nodes) > budget:
                continue
            budget -= len(nodes)
            nodes = nodes + sums
            inside = {id(n) for n in nodes}
            needed = _needed(nodes, inside, consumers)
            if len(needed) + len(_outside_inputs(nodes, inside)) > MAX_KERNEL_VALUES:
                continue
            try:
                k = kernel_source(nodes, needed, r.shape)
            except Exception as e:  # a writer's bug must not cost the function: that region stays numpy
                failed.append(failure(f"the loop of {len(nodes)} nodes ending at {nodes[-1].site}", e))
                continue
            if k is None:
                continue
            for n in nodes:
                member[id(n)] = len(kernels)
            kernels.append((nodes, k))
    if not kernels:
        return Lowered(order, outs, loop_sources)
    lowered = _rebuild(order, outs, kernels, member, consumers, failed)
    lowered.kernels[:0] = loop_sources
    return lowered


def _scalar_pieces(nodes: list[Node], consumers, member: dict, kernels: list, budget: int, failed: list) -> bool:
    """A 0-d region as LLVM functions (:mod:`symsym.linkers.llvm.chains`) added to ``kernels``; False (nothing added)
    where it takes numba's path. One that LLVM fails to compile stays numpy calls (True, nothing added):
    numba would compile it with the same LLVM."""
    try:
        pieces = llvm_scalar.scalar_kernels(nodes, lambda piece: _needed(piece, {id(n) for n in piece}, consumers),
                                            budget)
    except Exception as e:
        failed.append(failure(f"the scalar chain of {len(nodes)} nodes ending at {nodes[-1].site}", e))
        return True
    if pieces is None:
        return False
    for piece, k in pieces:
        for n in piece:
            member[id(n)] = len(kernels)
        kernels.append((piece, k))
    return True


def _needed(nodes: list[Node], inside: set, consumers) -> list[Node]:
    """The nodes of a piece whose values are read outside it (or are outputs of the function)."""
    return [n for n in nodes if any(c is None or id(c) not in inside for c in consumers[id(n)])]


def _outside_inputs(nodes: list[Node], inside: set) -> set:
    """The ids of the values a piece reads from outside it."""
    return {id(i) for n in nodes for i in n.inputs if id(i) not in inside}


def _consumers(order: list[Node], outs: list[Node]) -> dict[int, list]:
    """Each node's consumers in the schedule; None stands for "an output of the function"."""
    uses: dict[int, list] = {id(n): [] for n in order}
    for n in order:
        for i in n.inputs:
            uses[id(i)].append(n)
    for o in outs:
        uses[id(o)].append(None)
    return uses


def _rebuild(order, outs, kernels, member, consumers, failed: list) -> Lowered:
    """The schedule with each region one kernel call: units (a kernel, or a node left alone) in an order
    that keeps the original schedule where the kernels allow (a heap keyed by original position)."""
    position = {id(n): k for k, n in enumerate(order)}
    impls: dict[int, object] = {}  # id(kernel) -> what the driver calls
    while True:
        units = _units(order, kernels, member, position)
        # kernels on a cycle (a path from one region through another back into it): numpy calls instead
        dropped = set(range(len(kernels))).difference([u for u in units if isinstance(u, int)])
        if not dropped:  # compiled only now, so a kernel dropped above costs no compile
            for j, (nodes, k) in enumerate(kernels):
                if id(k) not in impls:
                    try:
                        impls[id(k)] = _kernel_impl(nodes, k)
                    except Exception as e:  # (leaving kernels out can only remove cycles, never make one)
                        failed.append(failure(f"kernel{j} ({len(nodes)} nodes ending at {nodes[-1].site})", e))
                        dropped.add(j)
        if not dropped:
            break
        kernels = [kernel for j, kernel in enumerate(kernels) if j not in dropped]
        member = {id(n): j for j, (nodes, _) in enumerate(kernels) for n in nodes}
    done: dict[int, Node] = {}   # original node -> the node of the lowered schedule that holds its value
    lowered: list[Node] = []
    sources = []
    for unit in units:
        if isinstance(unit, Node):
            ins = tuple([done[id(i)] for i in unit.inputs])
            same = all(a is b for a, b in zip(ins, unit.inputs))
            new = unit if same else Node(unit.op, ins, unit.params, unit.shape, unit.dtype, unit.name,
                                         unit.value, unit.site)
            done[id(unit)] = new
            lowered.append(new)
            continue
        j = unit
        nodes, k = kernels[j]
        call = _kernel_node(j, nodes, k, impls[id(k)], done)
        what = k.describe() if isinstance(k, llvm_scalar.ScalarKernel) else f"cache key {numba_cache().key(k.source)}"
        sources.append(f"# kernel{j}: {len(nodes)} nodes, {what}\n{k.source}")
        lowered.append(call)
        for pos, o in enumerate(k.outputs):
            held = _picked(call, pos, o, len(k.outputs), _leaves_kernels(o, consumers, member, j))
            if held is not call:
                lowered.append(held)
            done[id(o)] = held
    outs = [done[id(o)] for o in outs]
    read = {id(i) for n in lowered for i in n.inputs} | {id(o) for o in outs}
    # a broadcast a loop reads through its source (.loops) and nothing else reads: not made at all
    lowered = [n for n in lowered if id(n) in read or n.op is None or n.op.name != "broadcast_to"]
    return Lowered(lowered, outs, sources)


def _units(order, kernels, member, position) -> list:
    """Kahn's algorithm over units (kernel index or node), smallest original position first."""
    unit_of = {}
    for n in order:
        unit_of[id(n)] = member.get(id(n), n)
    key = {}
    ins: dict = {}
    for n in order:
        u = unit_of[id(n)]
        uid = u if isinstance(u, int) else id(u)
        key[uid] = max(key.get(uid, -1), position[id(n)])
        preds = ins.setdefault(uid, set())
        for i in n.inputs:
            p = unit_of[id(i)]
            pid = p if isinstance(p, int) else id(p)
            if pid != uid:
                preds.add(pid)
    obj = {(u if isinstance(u, int) else id(u)): u for u in unit_of.values()}
    succ: dict = {uid: [] for uid in ins}
    indeg = {uid: len(p) for uid, p in ins.items()}
    for uid, preds in ins.items():
        for p in preds:
            succ[p].append(uid)
    heap = [(key[uid], uid) for uid, d in indeg.items() if d == 0]
    heapq.heapify(heap)
    out = []
    while heap:
        _, uid = heapq.heappop(heap)
        out.append(obj[uid])
        for s in succ[uid]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(heap, (key[s], s))
    return out


def _leaves_kernels(o: Node, consumers, member, j: int) -> bool:
    """Whether region value ``o`` of kernel ``j`` is read by numpy code (a node left alone)."""
    return any(c is not None and member.get(id(c)) is None for c in consumers[id(o)])


def _kernel_impl(nodes: list[Node], k: Kernel | llvm_scalar.ScalarKernel):
    """What the driver calls for a kernel, compiled now: an LLVM builtin as it is; a numba kernel loaded
    (or compiled) for the graph's types, with its conversions and its numpy fallback around it."""
    if isinstance(k, llvm_scalar.ScalarKernel):
        return k.fn  # a builtin: needs no frame in between; it reads any float or bool
    fn = numba_cache().load(k.source)
    precompile(fn, k.args)
    if k.dynamic:
        guarded = _guarded(fn, nodes, k)
        return converted(guarded, k.args) or guarded
    return converted(fn, k.args) or _trampoline(fn)


def _kernel_node(j: int, nodes: list[Node], k: Kernel | llvm_scalar.ScalarKernel, impl, done: dict) -> Node:
    op = driver_op(f"kernel{j}", impl=impl)
    args = tuple([done[id(a)] for a in k.args])
    if len(k.outputs) == 1:
        o = k.outputs[0]
        return Node(op, args, {}, o.shape, o.dtype, site=o.site)
    return Node(op, args, {}, (), np.dtype(object), site=nodes[-1].site)


def _picked(call: Node, pos: int, o: Node, count: int, numpy_reads: bool) -> Node:
    """The node that holds kernel output ``pos``: the call itself, or a pick of it (as a numpy scalar
    when 0-d and read by numpy code)."""
    scalar = not o.shape and numpy_reads
    if count == 1:
        if not scalar:
            return call
        return Node(_AS_NUMPY[o.dtype, False], (call,), {}, o.shape, o.dtype, site=o.site)
    op = _AS_NUMPY[o.dtype, True] if scalar else _PICK
    return Node(op, (call,), {"k": pos}, o.shape, o.dtype, site=o.site)


def _trampoline(fn):
    """``fn`` called from a frame of this module. A numba dispatcher imports as it boxes its results,
    through the calling frame's builtins, and the driver runs without ``__import__`` (generated code
    needs no builtins); one Python frame in between is cheaper than giving the driver that."""
    def call(*args):
        return fn(*args)
    return call


def _guarded(fn, nodes: list[Node], k: Kernel):
    """A kernel with unknown dims: where run-time sizes would need numpy's broadcasting of a size-1
    dim, the region runs on its numpy impls instead."""
    def run(*args):
        try:
            return fn(*args)
        except ValueError as e:
            if str(e) != MISMATCH:
                raise
        return _numpy_region(nodes, k, args)
    return run


def _numpy_region(nodes: list[Node], k: Kernel, args: tuple):
    env = {id(a): v for a, v in zip(k.args, args)}
    for n in nodes:
        vals = [env[id(i)] if id(i) in env else i.value for i in n.inputs]
        env[id(n)] = n.op.impl(*vals, **n.params)
    outs = tuple([env[id(o)] for o in k.outputs])
    return outs[0] if len(outs) == 1 else outs
