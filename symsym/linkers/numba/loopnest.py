"""The source of one fused loop: a region's nodes as scalar statements inside nested loops.

Each node becomes one statement from its op's scalar form (the op table's
``scalar`` trait), on scalars: ``t3 = math.sin(t2)``. The loops run over the
region's shape; an outside input is read at the loop indices, a broadcast one
at index 0 along its size-1 dims (right-aligned, as numpy broadcasts), and a
0-d one once, before the loops. Region values needed outside are stored into
fresh arrays. A 0-d region has no loop at all: it is one native function of
scalars, which is what a scalar chain wants.

In an array loop a statement whose ``math`` calls all have a branch-free
form in :mod:`.vmath` calls those (:mod:`.vforms` says which), so LLVM
vectorises the loop; sin and cos there answer for |x| < 2**20 only, so the
loop counts the arguments past that (``vmath.far``) and, if any, runs again
on libm. A 0-d kernel keeps libm, whose latency is lower.

A dim unknown until run time (``None``) is read from the first input that
has it; every input with that dim must have the same size at run time,
else the loop raises :class:`ValueError` and the caller runs the region with
numpy instead (numpy would have broadcast a size-1 dim there).

The source is a whole module and names nothing of the graph, and its trip
counts are read from its inputs, so two graphs with the same region (at any
sizes) share one kernel, in memory and in numba's disk cache.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from common.graph import Node

from ...emit import literal
from ..lowering import lowering
from .rowsums import is_row_sum, row_sums
from .segments import MIN_CALLS, segmented_loops
from .vforms import MATH_CALL, VERSION, ranged_operands, small, vectorises

__all__ = ["DECORATOR", "DTYPES", "HEADER", "MISMATCH", "Kernel", "kernel_source", "libm_globals", "libm_statement",
           "literal_of"]

HEADER = ("import math\n\nimport numba\nimport numpy as np\n\n"
          "from symsym.linkers.numba.as_scalar import as_scalar\n\n")
#: no ``cache=True``: the kernel gets its disk cache from :mod:`.diskcache`, where numba's
#: environment settings do not move it
DECORATOR = "\n@numba.njit(error_model=\"numpy\")\n"
#: dtype -> the numpy name written in the source
DTYPES = {np.dtype(np.float64): "np.float64", np.dtype(np.bool_): "np.bool_"}
#: a mismatch of run-time sizes in an unknown dim: the caller falls back to numpy
MISMATCH = "fused loop: run-time sizes differ in an unknown dim"


class Kernel:
    """A region's loop: ``source`` (the module text), ``args`` (the outside nodes it reads, in order),
    ``outputs`` (the region nodes it returns, in order), and whether it has run-time sizes to check."""

    __slots__ = ("source", "args", "outputs", "dynamic")

    def __init__(self, source: str, args: list[Node], outputs: list[Node], dynamic: bool):
        self.source, self.args, self.outputs, self.dynamic = source, args, outputs, dynamic


def kernel_source(nodes: list[Node], outputs: list[Node], shape: tuple) -> Kernel | None:
    """The loop for a region (``nodes`` in schedule order, all of ``shape``, but for the row sums of
    :mod:`.reductions` that end it), or None when a dim is unknown and no input says its size."""
    nodes = [n for n in nodes if not is_row_sum(n)]
    inside = {id(n) for n in nodes}
    args: list[Node] = []
    arg_of: dict[int, str] = {}
    values: dict[int, str] = {}
    for n in nodes:
        for i in n.inputs:
            if id(i) in inside or id(i) in values:
                continue
            i, was = _unbroadcast(i, shape, inside), i
            text = literal_of(i)
            if text is None:
                name = f"a{len(args)}"
                args.append(i)
                arg_of[id(i)] = name
                text = f"v{len(args) - 1}"
            values[id(i)] = values[id(was)] = text
    bounds = _bounds(shape, args)
    if bounds is None:
        return None
    d = len(shape)
    head, loads = [], []
    dynamic = None in shape
    if dynamic:
        head.extend(_size_checks(shape, args, bounds))
    for k, a in enumerate(args):
        if not a.shape:
            head.append(f"v{k} = as_scalar(a{k})")
        else:
            loads.append(f"v{k} = a{k}[{_index(a.shape, shape)}]")
    body, plain, checks = [], [], []  # plain: the statements on libm, for 0-d kernels and the far rerun
    used: set[str] = set()
    vector: set[str] = set()
    for j, n in enumerate(nodes):
        values[id(n)] = f"t{j}"
        form = lowering(n.op, "numba")
        calls = MATH_CALL.findall(form)
        used.update(calls)
        names = [values[id(i)] for i in n.inputs]
        text = form.format(*names)
        plain.append(libm_statement(f"t{j}", form, names))
        if d and calls and vectorises(form) and not small(shape):  # arrays (0-d: libm's latency wins)
            vector.update(calls)
            checks += [f"far += vmath.far({names[k]})" for k in ranged_operands(form)]
            body.append(f"t{j} = " + MATH_CALL.sub(r"vmath_\1(", text))
        else:
            body.append(plain[-1])
    lines = [f"def kernel({', '.join(f'a{k}' for k in range(len(args)))}):"]
    lines += ["    " + s for s in head]
    if d == 0:
        lines += ["    " + s for s in body]
        rets = [values[id(o)] for o in outputs]
    else:
        dims = ", ".join(bounds) + ("," if d == 1 else "")
        stored = [(j, o) for j, o in enumerate(outputs) if not is_row_sum(o)]
        lines += [f"    o{j} = np.empty(({dims}), {DTYPES[o.dtype]})" for j, o in stored]
        where = ", ".join(f"i{k}" for k in range(d))
        rows = row_sums(outputs, values, bounds)
        lines += ["    " + s for s in rows.setup]
        stores = [f"o{j}[{where}] = {values[id(o)]}" for j, o in stored] + rows.stores
        checks = list(dict.fromkeys(checks))
        if sum("vmath_" in s for s in body) >= MIN_CALLS:  # a long chain: one loop per math call, in blocks
            loops = ["    " + s for s in segmented_loops(bounds, loads, body, checks, stores)]
            loops += ["    " * d + s for s in rows.after]  # after the block loop, inside the outer loops
        else:
            loops = _loop_nest(bounds, loads + body + checks + stores, 1, rows.after)
        if vector:
            lines.append("    vmath.wide()")
        if checks:  # sin/cos of a finite |x| >= 2**20 anywhere: the whole loop again on libm
            again = _loop_nest(bounds, loads + plain + stores, 2, rows.after)
            lines += ["    far = 0"] + loops + ["    if far:"] + again
        else:
            lines += loops
        rets = [f"o{j}" for j in range(len(outputs))]
    lines.append(f"    return {rets[0]}" if len(rets) == 1 else f"    return ({', '.join(rets)})")
    binds = libm_globals(used) + (rows.binds if d else "")
    if vector:
        binds += f"from symsym.linkers.numba import vmath  # vmath {VERSION}\n"
        binds += "".join(f"vmath_{f} = vmath.{f}\n" for f in sorted(vector))
    header = HEADER + binds + "\n" + DECORATOR
    return Kernel(header + "\n".join(lines) + "\n", args, outputs, dynamic)


def _unbroadcast(i: Node, shape: tuple, inside: set) -> Node:
    """What the loop reads for input ``i``: for a ``broadcast_to`` of a static shape, the value broadcast,
    which the loop reads at index 0 along its size-1 dims as it reads any broadcast input (:func:`_index`);
    the view itself (zero strides, read-only) would be a strided array the kernel reads slowly and numba
    compiles a version for on the first call."""
    if i.op is not None and i.op.name == "broadcast_to" and None not in shape:
        x = i.inputs[0]
        if id(x) not in inside and x.dtype == i.dtype:
            return x
    return i


def libm_statement(target: str, form: str, names: list[str]) -> str:
    """``target = `` a scalar form on ``names``, each ``math.f(`` read as the global ``math_f(`` that
    :func:`libm_globals` binds: the one place a form becomes a statement of a numba kernel. (numba then
    types one global per call instead of an attribute lookup: a third of a long scalar chain's compile.)"""
    return f"{target} = " + MATH_CALL.sub(r"math_\1(", form.format(*names))


def libm_globals(calls) -> str:
    """The module lines binding ``math_f = math.f`` for each math function name in ``calls``."""
    return "".join(f"math_{f} = math.{f}\n" for f in sorted(calls))


def _loop_nest(bounds: list[str], inner: list[str], depth: int, after: Sequence[str] = ()) -> list[str]:
    """Loops over ``bounds`` (outermost first) around the statements ``inner``, indented from ``depth``;
    ``after`` runs after each innermost loop (inside the outer ones)."""
    lines = ["    " * (depth + k) + f"for i{k} in range({b}):" for k, b in enumerate(bounds)]
    pad = "    " * (depth + len(bounds))
    return lines + [pad + s for s in inner] + ["    " * (depth + len(bounds) - 1) + s for s in after]


def literal_of(n: Node) -> str | None:
    """A 0-d float or bool constant as source (inlined, so numba folds it), else None."""
    if not n.is_const or n.shape or n.dtype not in DTYPES:
        return None
    v = n.value.item()
    text = literal(v)  # a bool or a finite float, as generated numpy code writes it
    if text is not None:
        return text
    return "math.nan" if math.isnan(v) else "math.inf" if v > 0 else "(-math.inf)"


def _bounds(shape: tuple, args: list[Node]) -> list[str] | None:
    """Each loop's trip count as source: an input's run-time size wherever an input spans that dim (so
    one kernel serves every size), else the static size; None when an unknown dim has no input."""
    d = len(shape)
    out = []
    for k, size in enumerate(shape):
        src = None
        for m, a in enumerate(args):
            kk = k - (d - len(a.shape))
            if kk >= 0 and a.shape[kk] == size and (size is None or size != 1):
                src = f"a{m}.shape[{kk}]"
                break
        if src is None:
            if size is None:
                return None
            src = str(size)
        out.append(src)
    return out


def _size_checks(shape: tuple, args: list[Node], bounds: list[str]) -> list[str]:
    d = len(shape)
    checks = []
    for m, a in enumerate(args):
        for kk, size in enumerate(a.shape):
            k = kk + d - len(a.shape)
            if size is None and bounds[k] != f"a{m}.shape[{kk}]":
                checks.append(f"if a{m}.shape[{kk}] != {bounds[k]}:\n        raise ValueError({MISMATCH!r})")
    return checks


def _index(have: tuple, shape: tuple) -> str:
    """The subscript that reads an input of shape ``have`` at the loop indices (broadcast dims at 0)."""
    d = len(shape)
    parts = []
    for kk, size in enumerate(have):
        k = kk + d - len(have)
        parts.append("0" if size == 1 and shape[k] != 1 else f"i{k}")
    return ", ".join(parts)
