"""A loop of scalars as one compiled loop: the numba linker's kernel for a whole ``scan`` or ``while_loop``.

symsym's numpy linker runs a loop as a Python ``for``/``while`` calling a
generated body function per step (:mod:`symsym.loop_source`); for a body of a
handful of scalar ops (an ODE step, and the reverse scan of its gradient)
that call and the numpy scalars' arithmetic are nearly all the time. Here a
loop whose every value is a scalar becomes one ``@numba.njit`` function with
the loop inside: the carries are local variables, each step's body (and a
while loop's condition) is written from the op table's scalar forms by the
statement writer the fused loops use (:func:`.loops.libm_statement`), each
sequence is read one element a step, and the stacked outputs (and, for a
saving loop, the stacked carry-ins its reverse scan reads) are written into
arrays allocated once (a while loop's, of unknown length, double when full).

The shape it takes (:func:`eligible`): carries and loop-invariant inputs 0-d,
sequences 1-d, every body output 0-d (so every stack is 1-d), all float64 or
bool, and every node inside the bodies an op the linker would fuse on
scalars (:func:`.fuse.fusable`) or of statically known value (a constant, a
``zeros_like`` a VJP made). Anything else (an array in a body, a matmul, a
cast, a nested loop, ``cond``) keeps the numpy linker's path, unchanged.

The kernel runs a bounded chunk of steps and returns, and a small Python
loop (:func:`_runner`) calls it again from the carries it returned until the
loop is done: a chunk is about :data:`CHUNK_WORK` node evaluations (a few
milliseconds), so Ctrl-C is seen between two chunks, as the numpy linker's
Python loop sees it between two steps, and a ``while_loop`` that never ends,
or a scan of 2**62 steps, raises ``KeyboardInterrupt`` at once, its partial
stacks dropped with the call. The chunk bounds are the kernel's first two
arguments and the trip count is read at run time (from the sequences or the
``length`` param), so one kernel serves every length, length 0 included; the
stacks are allocated by the runner (a saving while loop's grow by doubling,
up to :func:`saved_steps_limit` steps: past it the loop stops with a
:class:`SavedStepsError` naming it and the user's line, before its saved
carries exhaust memory). The carries go in and out as Python scalars (so a
resumed chunk runs the very version the first one ran), 0-d constants of
the other inputs are literals in the source, the rest arguments. The source
names nothing of the graph, so equal loops share a kernel and its on-disk
cache entry (:mod:`.cache`). Sequences whose run-time lengths differ raise
:data:`.loops.MISMATCH`, and the function then runs the reference
interpreter, which says what is wrong.

Compiling costs about a millisecond or two per body node, against nothing
for the Python loop, so a graph's loops compile whole up to
:data:`MAX_LOOP_NODES` body nodes in all, smallest first (where compiling
pays most for its time); the others keep the numpy path. A loop whose
lowering or compile raises keeps it too, with a warning
(:class:`.numba.CompileFallbackWarning`).
There is no fast-math and the error model is numpy's, so the values equal
the numpy linker's up to the math library's last bits, NaN and inf included.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.body import TUPLE, inner_nodes
from common.control.scan_op import SCAN
from common.control.while_op import WHILE_LOOP
from common.errors import TwogradError, op_error
from common.graph import Node, constant

from ...loop_source import tuple_source
from ...rewrite.rules import constant_value as scalar_value
from ..lowering import lowering, register_lowering
from .driver import MAX_KERNEL_NODES, MAX_KERNEL_VALUES, conversion, driver_op, failure, numba_cache, precompile
from .fuse import fusable
from .loopnest import DECORATOR, HEADER, MISMATCH, libm_globals, libm_statement, literal_of
from .vforms import MATH_CALL

__all__ = ["CHUNK_WORK", "MAX_LOOP_NODES", "MAX_SAVED_STEPS", "SavedStepsError", "eligible", "loop_source",
           "lower_scans", "saved_steps_limit"]

#: the most body nodes compiled as loop kernels for one graph (their sum over the loops). Measured cold,
#: numba compiles a loop body at 1.2-2.6 ms a node after about a second of its own start, so these cost
#: 0.6-1.3 s and a graph's function() stays within about 3 s however many loops it has; the loops are
#: taken smallest first, and one past what is left keeps the numpy path
MAX_LOOP_NODES = 500
#: body nodes evaluated per kernel call (a chunk of steps: a few milliseconds at most, one call of overhead,
#: about a microsecond, per 10^6 node evaluations); between two chunks Python sees Ctrl-C
CHUNK_WORK = 1 << 20
#: the most steps a saving while loop (one whose gradient is taken) keeps, each step 8 bytes per carry
#: (2**26 steps: 512 MiB a carry); ``TWOGRAD_MAX_SAVED_STEPS`` overrides it
MAX_SAVED_STEPS = 1 << 26


class SavedStepsError(TwogradError, MemoryError):
    """A while loop whose gradient is taken ran past the steps it may save (:func:`saved_steps_limit`)."""


def saved_steps_limit() -> int:
    """The most steps a compiled saving while loop keeps: ``$TWOGRAD_MAX_SAVED_STEPS`` if set (a positive
    integer), else :data:`MAX_SAVED_STEPS`. Read at each run of such a loop, so it can be changed any time."""
    text = os.environ.get("TWOGRAD_MAX_SAVED_STEPS")
    if not text:
        return MAX_SAVED_STEPS
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit < 1:
        raise TwogradError(f"TWOGRAD_MAX_SAVED_STEPS must be a positive integer, got {text!r}")
    return limit

_F8 = np.dtype(np.float64)
_SCALARS = (_F8, np.dtype(np.bool_))
#: dtype -> the scalar type a 0-d carry leaves the kernel as
_AS_NUMPY = {np.dtype(np.float64): np.float64, np.dtype(np.bool_): np.bool_}


@dataclass(frozen=True)
class LoopForm:
    """How a loop op is written as a kernel: its spelling for the ``"numba"`` linker (registered below in
    :mod:`symsym.linkers.lowering`), so that nothing here asks a loop op its name."""

    bodies: tuple[str, ...]  # the params holding the bodies a step runs, in the order it runs them
    counted: bool            # steps known before the loop (a scan's length), not found by a test
    lines: Callable          # (node, writer, carries) -> the kernel's loop statements and return


def _form(node: Node) -> LoopForm | None:
    form = lowering(node.op, "numba") if node.op is not None else None
    return form if isinstance(form, LoopForm) else None


def eligible(node: Node) -> bool:
    """Whether ``node`` is a scan or while loop this module compiles whole (the module docstring's shape)."""
    if _form(node) is None:
        return False
    p, ins = node.params, node.inputs
    nc, nx, bodies = p["ncarry"], p.get("nx", 0), _bodies(node)
    if len(ins) + sum(len(b.outputs) for b in bodies) > MAX_KERNEL_VALUES:
        return False
    if not all(_scalar(v) for v in (*ins[:nc], *ins[nc + nx:], *[o for b in bodies for o in b.outputs])):
        return False
    if not all(len(x.shape) == 1 and x.dtype in _SCALARS for x in ins[nc:nc + nx]):
        return False
    nodes = [n for b in bodies for n in _body_nodes(b)]
    return len(nodes) <= MAX_KERNEL_NODES and all(_writable(n) for n in nodes)


def _bodies(node: Node) -> list:
    """The bodies a loop runs per step, in the order it runs them."""
    return [node.params[name] for name in _form(node).bodies]


def _scalar(n: Node) -> bool:
    return n.shape == () and n.dtype in _SCALARS


def _body_nodes(body) -> list[Node]:
    """The body's nodes in topological order, its formal inputs left out, and nothing under a node of
    known value (a ``zeros_like`` a VJP made is a literal, whatever it reads)."""
    formals = {id(v) for v in body.inputs}
    known = {id(n) for n in inner_nodes(body.outputs, formals) if n.op is not None and _known(n) is not None}
    return [n for n in inner_nodes(body.outputs, formals | known) if id(n) not in formals]


def _known(n: Node) -> str | None:
    """A 0-d float or bool body node of statically known value (a constant, ``zeros_like``, ... as
    :func:`symsym.rewrite.rules.constant_value` sees them) as a literal, else None."""
    if not _scalar(n):
        return None
    if n.is_const:
        return literal_of(n)
    v = scalar_value(n)
    return None if v is None else literal_of(constant(np.asarray(v, n.dtype)))


def _writable(n: Node) -> bool:
    """A body node the kernel can write: one of known value (inlined), or a 0-d op with a scalar form."""
    return _known(n) is not None or (n.op is not None and _scalar(n) and fusable(n))


def loop_source(node: Node) -> str:
    """The kernel module for an :func:`eligible` loop, run on one chunk of steps. A scan's is
    ``kernel(n, <stacks>, a0, ...)``: ``n`` steps (down, for a reverse scan), the stacks and sequences being
    the chunk's own (views the runner cuts), returning the carries; a while loop's is
    ``kernel(stop, <stacks>, a0, ...)``: until the condition fails (tested at ``stop`` too) or ``stop``
    steps, the stacks starting at the chunk's first step, returning ``(done, steps, *carries)``. ``a0, ...``
    are the loop's inputs but its 0-d constants other than the carries (literals in the source). Each chunk
    counts its steps from 0, so numba knows every index is non-negative (no wraparound test per access)."""
    p, ins = node.params, node.inputs
    nc, nx = p["ncarry"], p.get("nx", 0)
    body = p["body"]
    names: dict[int, str] = {}
    for b in _bodies(node):  # (a while loop's two bodies take the same inputs)
        names.update({id(v): f"c{k}" if k < nc else f"x{k - nc}" if k < nc + nx else f"k{k - nc - nx}"
                      for k, v in enumerate(b.inputs)})
    passed = _passed(node)
    form = _form(node)
    bounds = "n" if form.counted else "stop"
    lines = [f"def kernel({', '.join([bounds, *[s for s, _ in _stacks(node)], *[f'a{k}' for k in passed]])}):"]
    lines += [f"    {names[id(v)]} = {f'a{k}' if k < nc else f'as_scalar(a{k})' if k in passed else _known(ins[k])}"
              for k, v in enumerate(body.inputs) if k < nc or k >= nc + nx]
    calls: set[str] = set()
    write = _Writer(names, calls)
    carries = [f"c{k}" for k in range(nc)]
    lines += form.lines(node, write, carries)
    return HEADER + libm_globals(calls) + "\n" + DECORATOR + "\n".join(lines) + "\n"


def _passed(node: Node) -> list[int]:
    """The positions of the loop's inputs its kernel takes as arguments: the carries (a chunk starts from
    the last one's), and the others but the 0-d constants, which the source holds as literals, as fused
    loops hold theirs (and numba folds them)."""
    nc = node.params["ncarry"]
    return [k for k, i in enumerate(node.inputs) if k < nc or not (i.is_const and _known(i) is not None)]


def _stacks(node: Node) -> list[tuple[str, np.dtype]]:
    """The arrays a loop's steps write (name in the kernel, dtype): a scan's stacked outputs, and, for a
    saving loop, the carry-ins its reverse scan reads."""
    p, nc = node.params, node.params["ncarry"]
    out = [(f"y{j}", o.dtype) for j, o in enumerate(p["body"].outputs[nc:])] if _form(node).counted else []
    if p.get("save"):
        out += [(f"s{k}", c.dtype) for k, c in enumerate(node.inputs[:nc])]
    return out


class _Writer:
    """Writes a body's statements from the scalar forms, naming each value (``t0``, ``t1``, ... across the
    loop's bodies) and noting the math functions they call."""

    def __init__(self, names: dict, calls: set):
        self.names, self.calls = names, calls

    def __call__(self, body) -> tuple[list[str], list[str]]:
        """The statements computing ``body``'s outputs, and the outputs' names."""
        names, out = self.names, []
        for n in _body_nodes(body):
            if id(n) in names:  # (a node both of a while loop's bodies read)
                continue
            text = _known(n)
            if text is not None:
                names[id(n)] = text
                continue
            names[id(n)] = t = f"t{len(names)}"
            form = lowering(n.op, "numba")
            self.calls.update(MATH_CALL.findall(form))
            out.append(libm_statement(t, form, [names[id(i)] for i in n.inputs]))
        return out, [names[id(o)] for o in body.outputs]


def _scan_lines(node: Node, write: _Writer, carries: list[str]) -> list[str]:
    """The scan's ``n`` steps (either way) and its return."""
    p, nc, nx = node.params, node.params["ncarry"], node.params.get("nx", 0)
    lines = [f"    for t in {'range(n - 1, -1, -1)' if p.get('reverse') else 'range(n)'}:"]
    step = [f"s{k}[t] = c{k}" for k in range(nc)] if p.get("save") else []
    step += [f"x{j} = a{nc + j}[t]" for j in range(nx)]
    statements, outs = write(p["body"])
    step += statements + [f"y{j}[t] = {o}" for j, o in enumerate(outs[nc:])]
    if nc:
        step.append(f"{tuple_source(carries)} = {tuple_source(outs[:nc])}")
    return lines + ["        " + s for s in step] + [f"    return {tuple_source(carries)}"]


def _while_lines(node: Node, write: _Writer, carries: list[str]) -> list[str]:
    """The while loop's chunk: test; stop if false, or after ``stop`` steps; save the carry-ins; step."""
    p = node.params
    lines = ["    done = False", "    t = 0", "    while True:"]
    test, (pred,) = write(p["cond_body"])
    step = test + [f"if not {pred}:", "    done = True", "    break", "if t == stop:", "    break"]
    if p.get("save"):
        step += [f"s{k}[t] = {c}" for k, c in enumerate(carries)]
    statements, outs = write(p["body"])
    step += statements + [f"{tuple_source(carries)} = {tuple_source(outs)}", "t += 1"]
    return lines + ["        " + s for s in step] + [f"    return {tuple_source(['done', 't', *carries])}"]


def lower_scans(order: list[Node], outs: list[Node], failed: list[str]) -> tuple[list[Node], list[Node], list[str]]:
    """The schedule with each :func:`eligible` scan a call of its kernel (the ``item`` nodes after it
    read the call's tuple as they read the scan's), the outputs, and each kernel's source. Loops compile
    smallest first while :data:`MAX_LOOP_NODES` allows; one whose kernel cannot be made is noted in
    ``failed`` and keeps the numpy path."""
    found = sorted(((_steps(n), k, n) for k, n in enumerate(order) if eligible(n)), key=lambda e: e[:2])
    calls: dict[int, Node] = {}
    sources: list[str] = []
    budget = MAX_LOOP_NODES
    for steps, _, n in found:
        if steps > budget:
            continue
        try:
            calls[id(n)] = _kernel_call(n, steps, len(sources), sources)
        except Exception as e:  # the loop runs as the numpy linker runs it
            failed.append(failure(f"the {n.op.name} made at {n.site}", e))
            continue
        budget -= steps
    if not calls:
        return order, outs, sources
    done: dict[int, Node] = {}
    lowered = []
    for n in order:
        m = calls.get(id(n), n)
        ins = tuple([done.get(id(i), i) for i in m.inputs])
        if any(a is not b for a, b in zip(ins, m.inputs)):
            m = Node(m.op, ins, m.params, m.shape, m.dtype, m.name, m.value, m.site)
        done[id(n)] = m
        lowered.append(m)
    return lowered, [done.get(id(o), o) for o in outs], sources


def _steps(node: Node) -> int:
    """The nodes a loop's kernel evaluates per step (its bodies' nodes but those of known value)."""
    return sum(1 for b in _bodies(node) for n in _body_nodes(b) if _known(n) is None)


def _kernel_call(node: Node, steps: int, j: int, sources: list[str]) -> Node:
    """The node calling loop ``node``'s kernel (loaded through the cache and compiled now, for the types
    the graph implies); its source is added to ``sources``."""
    from numba.core import types

    source = loop_source(node)
    fn = numba_cache().load(source)
    passed = _passed(node)
    nc = node.params["ncarry"]
    carries = [types.float64 if c.dtype == _F8 else types.boolean for c in node.inputs[:nc]]
    stacks = [types.Array(types.float64 if d == _F8 else types.boolean, 1, "C") for _, d in _stacks(node)]
    precompile(fn, [node.inputs[k] for k in passed[nc:]], lead=(types.intp, *stacks, *carries))
    name = f"{node.op.name}_kernel{j}"
    args = [node.inputs[k] for k in passed]
    op = driver_op(name, impl=_runner(fn, node, args, steps))
    sources.append(f"# {name}: {steps} nodes a step, cache key {numba_cache().key(source)}\n{source}")
    return Node(op, tuple(args), {}, (), TUPLE, node.name, None, node.site)


def _runner(fn, node: Node, args: list[Node], steps: int):
    """The loop's impl: the kernel called chunk after chunk of about :data:`CHUNK_WORK` node evaluations,
    from the carries the last chunk returned (as Python scalars, the types it was compiled for; the other
    arguments converted as :func:`.driver.conversion` says), into stacks allocated here. It returns the
    loop's tuple, the 0-d carries as numpy scalars (as the numpy linker's loop returns them, so numpy code
    after it divides by zero as numpy does). Sequences of different run-time lengths raise
    :data:`.loops.MISMATCH`, a ValueError, on which the function runs the reference interpreter to name
    the scan and the user's line."""
    p = node.params
    nc = p["ncarry"]
    scalars = [_AS_NUMPY[c.dtype] for c in node.inputs[:nc]]
    python = [float if c.dtype == _F8 else bool for c in node.inputs[:nc]]
    converts = [(k, c) for k, c in enumerate(map(conversion, args)) if k >= nc and c is not None]
    dtypes = [d for _, d in _stacks(node)]
    chunk = max(1, CHUNK_WORK // max(1, steps))

    def start(values):
        carries = [f(c) for f, c in zip(python, values[:nc])]
        rest = list(values[nc:])
        for k, c in converts:
            rest[k - nc] = c(rest[k - nc])
        return carries, rest

    if not _form(node).counted:
        bound = -1 if p.get("max_iter") is None else p["max_iter"]
        save = bool(p.get("save"))

        def run(*values):
            carries, rest = start(values)
            t, size = 0, 16
            stacks = [np.empty(size, d) for d in dtypes]
            limit = saved_steps_limit() if save else -1
            while True:
                stop = chunk if bound < 0 else min(chunk, bound - t)
                views = stacks
                if save:
                    if t + stop > size:
                        stacks, size = _grown(stacks, t, size, t + stop, limit)
                        stop = min(stop, size - t)
                    views = stacks if t == 0 else [a[t:] for a in stacks]
                done, steps, *carries = fn(stop, *views, *carries, *rest)
                t += steps
                if done or t == bound:
                    break
                if t == limit:
                    raise _too_many(node, limit)
            return (*[s(c) for s, c in zip(scalars, carries)], *[a[:t].copy() for a in stacks])
    else:
        length, reverse = p.get("length"), p.get("reverse")
        nx = p.get("nx", 0)

        def run(*values):
            n = length if length is not None else len(values[nc])  # (carries first, then the sequences)
            for j in range(nc, nc + nx):
                if len(values[j]) != n:
                    raise ValueError(MISMATCH)
            carries, rest = start(values)
            stacks = [np.empty(n, d) for d in dtypes]
            if n <= chunk:
                carries = fn(n, *stacks, *carries, *rest)
            else:  # each chunk on its own slices of the stacks and sequences
                for lo in (range(n - (n - 1) % chunk - 1, -1, -chunk) if reverse else range(0, n, chunk)):
                    hi = min(n, lo + chunk)
                    carries = fn(hi - lo, *[a[lo:hi] for a in stacks], *carries,
                                 *[x[lo:hi] for x in rest[:nx]], *rest[nx:])
            return (*[s(c) for s, c in zip(scalars, carries)], *stacks)

    return run


def _grown(stacks: list, t: int, size: int, stop: int, limit: int) -> tuple[list, int]:
    """The saved-carry stacks doubled until they hold ``stop`` steps (at most ``limit``), the first ``t``
    kept."""
    new = size
    while new < stop and new < limit:
        new *= 2
    new = min(new, limit)
    if new == size:
        return stacks, size
    grown = []
    for a in stacks:
        b = np.empty(new, a.dtype)
        b[:t] = a[:t]
        grown.append(b)
    return grown, new


def _too_many(node: Node, limit: int) -> SavedStepsError:
    nc = node.params["ncarry"]
    return op_error(SavedStepsError, "while_loop",
                    f"ran {limit} steps and its condition still holds; its gradient keeps every step's "
                    f"{nc} carr{'y' if nc == 1 else 'ies'} (8 bytes each), and past {limit} steps "
                    f"({limit * nc * 8 / 2**20:.0f} MiB) the loop stops here instead of exhausting memory: give "
                    "it a max_iter, or set TWOGRAD_MAX_SAVED_STEPS to allow more", node.inputs, node.site)


register_lowering(SCAN, "numba", LoopForm(("body",), True, _scan_lines))
register_lowering(WHILE_LOOP, "numba", LoopForm(("cond_body", "body"), False, _while_lines))
