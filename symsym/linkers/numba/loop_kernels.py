"""A loop of scalars as one compiled loop: the numba linker's kernel for a whole ``scan`` or ``while_loop``.

symsym's numpy linker runs a loop as a Python ``for``/``while`` calling a
generated body function per step (:mod:`symsym.loopgen`); for a body of a
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
scalars (:func:`.numba.fusable`) or of statically known value (a constant, a
``zeros_like`` a VJP made). Anything else (an array in a body, a matmul, a
cast, a nested loop, ``cond``) keeps the numpy linker's path, unchanged.

The trip count (a while loop's bound, -1 for none) is the kernel's first
argument, read at run time from the sequences (or the ``length`` param), so
one kernel serves every length, length 0 included; 0-d constant inputs are
literals in the source (the driver holds them as numpy scalars), the rest
arguments. The source names nothing of the graph, so equal loops share a
kernel and its on-disk cache entry (:mod:`.cache`). Sequences whose
run-time lengths differ make the kernel raise :data:`.loops.MISMATCH`, and
the function then runs the reference interpreter, which says what is wrong.
There is no fast-math and the error model is numpy's, so the values equal
the numpy linker's up to the math library's last bits, NaN and inf included.
"""

from __future__ import annotations

import numpy as np

from common.body import TUPLE, inner_nodes
from common.graph import Node, constant

from ...loop_source import tuple_source
from ...rewrite.rules import constant_value as scalar_value
from .. import cache
from .loopnest import DECORATOR, DTYPES, HEADER, MISMATCH, libm_globals, libm_statement, literal_of
from .lower import MAX_KERNEL_NODES, MAX_KERNEL_VALUES, driver_op, fusable, precompile
from .vforms import MATH_CALL

__all__ = ["eligible", "loop_source", "lower_scans"]

_SCALARS = (np.dtype(np.float64), np.dtype(np.bool_))
_LOOPS = ("scan", "while_loop")
#: dtype -> the scalar type a 0-d carry leaves the kernel as
_AS_NUMPY = {np.dtype(np.float64): np.float64, np.dtype(np.bool_): np.bool_}


def eligible(node: Node) -> bool:
    """Whether ``node`` is a scan or while loop this module compiles whole (the module docstring's shape)."""
    if node.op is None or node.op.name not in _LOOPS:
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
    p = node.params
    return [p["body"]] if node.op.name == "scan" else [p["cond_body"], p["body"]]


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
    :func:`symsym.rewrite.core.scalar_value` sees them) as a literal, else None."""
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
    """The kernel module for an :func:`eligible` loop: ``kernel(n, a0, ...)`` over the loop's inputs,
    returning the loop's tuple. For a scan ``n`` is the trip count; for a while loop, the most steps
    (-1: unbounded)."""
    p, ins = node.params, node.inputs
    nc, nx = p["ncarry"], p.get("nx", 0)
    body = p["body"]
    names: dict[int, str] = {}
    for b in _bodies(node):  # (a while loop's two bodies take the same inputs)
        names.update({id(v): f"c{k}" if k < nc else f"x{k - nc}" if k < nc + nx else f"k{k - nc - nx}"
                      for k, v in enumerate(b.inputs)})
    passed = _passed(node)
    lines = [f"def kernel(n, {', '.join(f'a{k}' for k in passed)}):"]
    lines += [f"    if a{nc + j}.shape[0] != n:\n        raise ValueError({MISMATCH!r})" for j in range(nx)]
    lines += [f"    {names[id(v)]} = {f'as_scalar(a{k})' if k in passed else _known(ins[k])}"
              for k, v in enumerate(body.inputs) if k < nc or k >= nc + nx]
    calls: set[str] = set()
    write = _Writer(names, calls)
    carries = [f"c{k}" for k in range(nc)]
    if node.op.name == "scan":
        lines += _scan_lines(node, write, carries)
    else:
        lines += _while_lines(node, write, carries)
    return HEADER + libm_globals(calls) + "\n" + DECORATOR + "\n".join(lines) + "\n"


def _passed(node: Node) -> list[int]:
    """The positions of the loop's inputs its kernel takes as arguments: all but its 0-d constants,
    which the source holds as literals, as fused loops hold theirs (and numba folds them)."""
    return [k for k, i in enumerate(node.inputs) if not (i.is_const and _known(i) is not None)]


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
            self.calls.update(MATH_CALL.findall(n.op.scalar))
            out.append(libm_statement(t, n.op.scalar, [names[id(i)] for i in n.inputs]))
        return out, [names[id(o)] for o in body.outputs]


def _scan_lines(node: Node, write: _Writer, carries: list[str]) -> list[str]:
    """The scan's stacks, its loop over ``n`` steps (either way) and its return."""
    p, nc, nx = node.params, node.params["ncarry"], node.params.get("nx", 0)
    stacks = [(f"y{j}", o) for j, o in enumerate(p["body"].outputs[nc:])]
    if p.get("save"):
        stacks += [(f"s{k}", c) for k, c in enumerate(node.inputs[:nc])]
    lines = [f"    {s} = np.empty(n, {DTYPES[o.dtype]})" for s, o in stacks]
    lines.append(f"    for t in {'range(n - 1, -1, -1)' if p.get('reverse') else 'range(n)'}:")
    step = [f"s{k}[t] = c{k}" for k in range(nc)] if p.get("save") else []
    step += [f"x{j} = a{nc + j}[t]" for j in range(nx)]
    statements, outs = write(p["body"])
    step += statements + [f"y{j}[t] = {o}" for j, o in enumerate(outs[nc:])]
    if nc:
        step.append(f"{tuple_source(carries)} = {tuple_source(outs[:nc])}")
    return lines + ["        " + s for s in step] + [f"    return {tuple_source(carries + [s for s, _ in stacks])}"]


def _while_lines(node: Node, write: _Writer, carries: list[str]) -> list[str]:
    """The while loop: test, save the carry-ins (in arrays that double when full), step; at most ``n``
    steps unless ``n`` is -1."""
    p, nc = node.params, node.params["ncarry"]
    stacks = [f"s{k}" for k in range(nc)] if p.get("save") else []
    lines = [f"    {s} = np.empty(16, {DTYPES[c.dtype]})" for s, c in zip(stacks, node.inputs)]
    lines += ["    t = 0", "    while t != n:"]
    test, (pred,) = write(p["cond_body"])
    step = test + [f"if not {pred}:", "    break"]
    if stacks:
        step += [f"if t == {stacks[0]}.shape[0]:"] + [f"    {s} = np.concatenate(({s}, np.empty_like({s})))"
                                                     for s in stacks]
        step += [f"{s}[t] = {c}" for s, c in zip(stacks, carries)]
    statements, outs = write(p["body"])
    step += statements + [f"{tuple_source(carries)} = {tuple_source(outs)}", "t += 1"]
    kept = [f"{s}[:t].copy()" for s in stacks]
    return lines + ["        " + s for s in step] + [f"    return {tuple_source(carries + kept)}"]


def lower_scans(order: list[Node], outs: list[Node]) -> tuple[list[Node], list[Node], list[str]]:
    """The schedule with each :func:`eligible` scan a call of its kernel (the ``item`` nodes after it
    read the call's tuple as they read the scan's), the outputs, and each kernel's source."""
    calls: dict[int, Node] = {}
    sources: list[str] = []
    for n in order:
        if eligible(n):
            calls[id(n)] = _kernel_call(n, len(sources), sources)
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


def _kernel_call(node: Node, j: int, sources: list[str]) -> Node:
    """The node calling loop ``node``'s kernel (loaded through the cache and compiled now, for the types
    the graph implies); its source is added to ``sources``."""
    from numba.core import types

    source = loop_source(node)
    fn = cache.load(source)
    args = [node.inputs[k] for k in _passed(node)]
    precompile(fn, args, lead=(types.intp,))
    name = f"{node.op.name}_kernel{j}"
    steps = sum(1 for b in _bodies(node) for n in _body_nodes(b) if _known(n) is None)
    sources.append(f"# {name}: {steps} nodes a step, cache key {cache.key(source)}\n{source}")
    op = driver_op(name, impl=_runner(fn, node))
    return Node(op, tuple(args), {}, (), TUPLE, node.name, None, node.site)


def _runner(fn, node: Node):
    """The kernel as the loop's impl: the trip count (a while loop's bound) passed in, 0-d carries
    returned as numpy scalars (as the numpy linker's loop returns them, so numpy code after it divides
    by zero as numpy does). Sequences of different run-time lengths raise :data:`.loops.MISMATCH`, a
    ValueError, on which the function runs the reference interpreter to name the scan and the user's line."""
    p = node.params
    nc = p["ncarry"]
    scalars = [_AS_NUMPY[c.dtype] for c in node.inputs[:nc]]
    if node.op.name == "while_loop":
        bound = -1 if p.get("max_iter") is None else p["max_iter"]

        def run(*args):
            out = fn(bound, *args)
            return (*[s(c) for s, c in zip(scalars, out)], *out[nc:])
    else:
        length, xs0 = p.get("length"), sum(1 for k in _passed(node) if k < nc)  # (the xs are never literals)

        def run(*args):
            out = fn(length if length is not None else len(args[xs0]), *args)
            return (*[s(c) for s, c in zip(scalars, out)], *out[nc:])

    return run
