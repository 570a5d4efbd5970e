"""A 0-d region (a scalar chain) as one LLVM function, written straight from the scalar forms.

numba's Python front end costs milliseconds per statement of a scalar chain
(its IR analyses, typing each call), and its compile grows past linear on
long functions, so the numba linker used to cut a chain into 5,000-node
kernels and leave pieces with long signatures to numpy. A 0-d region needs
none of what numba offers (no loops, no arrays): each node is a few IR
instructions from its op's scalar form (:mod:`.forms`), so the region
is written as LLVM IR text directly and compiled with llvmlite (numba's own
dependency), without numba's front end, in one function however long.

The function has CPython's ``METH_FASTCALL`` signature and is called as a
builtin (:mod:`.jit`): it reads its arguments with ``PyFloat_AsDouble``
(a float, a numpy scalar or a 0-d array alike; a bool with
``PyObject_IsTrue``), runs the chain in registers and returns Python floats
and bools (a tuple when there are several), exactly what the numba kernels
return, so the numba linker treats both kernels alike.

A region past :data:`MAX_NODES` is cut in schedule order into several
functions. A region whose forms the translator does not know, or one past
what is left of :data:`MAX_TOTAL_NODES` for its graph, gets no kernel here
(``None``) and takes numba's path: slower to compile, the same values.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.graph import Node

from ..lowering import lowering
from . import jit as llvm_jit
from .forms import BOOL, DOUBLE, double_literal, template

__all__ = ["ENABLED", "MAX_NODES", "MAX_TOTAL_NODES", "ScalarKernel", "scalar_kernel", "scalar_kernels"]

#: whether 0-d regions take this path (tests of numba's own 0-d kernels switch it off)
ENABLED = True
#: the most nodes of one function. LLVM's code generation of one long basic block grows faster than
#: linearly (register allocation and instruction selection; measured, a sin chain and its gradient: 3,000
#: nodes 0.06 s, 30,000 nodes 1.0 s, 100,000 nodes 15 s), so a longer region is cut in schedule order
#: into functions of at most this many nodes (about 2 s each), which pass values as Python floats
MAX_NODES = 40_000
#: the most nodes compiled this way for one graph (about five functions of MAX_NODES, 10 s cold): past it
#: 0-d regions take numba's path, which has its own bound, so a 10^6-node graph compiles in bounded time
MAX_TOTAL_NODES = 200_000

_TYPES = {np.dtype(np.float64): DOUBLE, np.dtype(np.bool_): BOOL}
_HEADER = ("declare double @PyFloat_AsDouble(ptr)\ndeclare i32 @PyObject_IsTrue(ptr)\n"
           "declare ptr @PyErr_Occurred()\ndeclare i32 @PyErr_BadArgument()\n"
           "declare ptr @PyFloat_FromDouble(double)\ndeclare ptr @PyBool_FromLong(i64)\n"
           "declare ptr @PyTuple_New(i64)\ndeclare i32 @PyTuple_SetItem(ptr, i64, ptr)\ndeclare void @Py_DecRef(ptr)\n")


class ScalarKernel:
    """A compiled 0-d region: ``fn`` (the builtin to call with ``args``' values), ``args`` (the outside
    nodes it reads), ``outputs`` (the region nodes it returns), ``source`` (its IR) and ``key``."""

    __slots__ = ("fn", "args", "outputs", "source", "key")

    def __init__(self, fn, args: list[Node], outputs: list[Node], source: str, key: str):
        self.fn, self.args, self.outputs, self.source, self.key = fn, args, outputs, source, key

    def describe(self) -> str:
        return f"LLVM IR, cache key {self.key}"


def scalar_kernels(nodes: list[Node], needed: Callable[[list[Node]], list[Node]],
                   budget: int) -> list[tuple[list[Node], ScalarKernel]] | None:
    """A 0-d region (``nodes`` in schedule order) as functions of at most :data:`MAX_NODES` nodes, cut in
    schedule order (so no piece reads a later one), each with the nodes it holds; ``needed(piece)`` says
    which of a piece's values are read outside it. None when the region should take numba's path: a form
    without a template, or more than ``budget`` nodes."""
    if not ENABLED or len(nodes) > budget:
        return None
    pieces = []
    for start in range(0, len(nodes), MAX_NODES):
        piece = nodes[start:start + MAX_NODES]
        k = scalar_kernel(piece, needed(piece))
        if k is None:
            return None
        pieces.append((piece, k))
    return pieces


def scalar_kernel(nodes: list[Node], outputs: list[Node]) -> ScalarKernel | None:
    """The compiled function of a 0-d region (``nodes`` in schedule order; ``outputs`` are the values
    needed outside), or None when it should take numba's path."""
    if not ENABLED or len(nodes) > MAX_NODES:
        return None
    written = module_text(nodes, outputs)
    if written is None:
        return None
    text, args = written
    try:
        k = llvm_jit.key(text)
    except ImportError:  # no llvmlite here (numba itself then cannot run either): numba's path says why
        return None
    name = f"twograd_{k}"
    text = text.replace("define ptr @kernel(", f"define ptr @{name}(", 1)
    fn = llvm_jit.load(text, k, name)
    return ScalarKernel(fn, args, outputs, text, k)


def module_text(nodes: list[Node], outputs: list[Node]) -> tuple[str, list[Node]] | None:
    """The region as an LLVM module (its function named ``@kernel``) and the outside nodes it reads, or
    None when a form has no template."""
    inside = {id(n) for n in nodes}
    values: dict[int, str] = {}
    args: list[Node] = []
    for n in nodes:
        for i in n.inputs:
            if id(i) not in inside and id(i) not in values:
                lit = _literal(i)
                if lit is None:
                    values[id(i)] = f"%a{len(args)}"
                    args.append(i)
                else:
                    values[id(i)] = lit
    body, declares = _body(nodes, values)
    if body is None:
        return None
    text = "".join([_HEADER, *sorted(d + "\n" for d in declares),
                    "\ndefine ptr @kernel(ptr %self, ptr %args, i64 %nargs) {\n",
                    _reads(args), "body:\n", *body, _returns(outputs, values), "}\n"])
    return text, args


def _literal(n: Node) -> str | None:
    """A 0-d float64 or bool constant as an IR literal (exact bits), else None."""
    if not n.is_const or n.shape or n.dtype not in _TYPES:
        return None
    v = n.value.item()
    if n.dtype == np.bool_:
        return "true" if v else "false"
    return double_literal(v)


def _body(nodes: list[Node], values: dict) -> tuple[list[str] | None, set]:
    """Each node's instructions from its form's template; None when one has none or of the wrong type."""
    body: list[str] = []
    declares: set[str] = set()
    for j, n in enumerate(nodes):
        t = template(lowering(n.op, "numba"), tuple([_TYPES[i.dtype] for i in n.inputs]))
        if t is None or t.type != _TYPES.get(n.dtype):
            return None, declares
        operands = [values[id(i)] for i in n.inputs]
        if t.text:
            body.append(t.text.format(*operands, p=j))
        values[id(n)] = t.result.format(*operands, p=j)
        declares |= t.declares
    return body, declares


def _reads(args: list[Node]) -> str:
    """Check the argument count, read each argument; a read that may have failed (``-1`` back) is checked
    with ``PyErr_Occurred`` at once, and a raised one returns NULL before any other argument's
    ``__float__``/``__bool__`` runs (CPython's protocol: no code runs with an exception set)."""
    lines = [f"entry:\n  %ok = icmp eq i64 %nargs, {len(args)}\n  br i1 %ok, label %read0, label %wrong\n",
             "wrong:\n  %bad = call i32 @PyErr_BadArgument()\n  ret ptr null\nfail:\n  ret ptr null\n"]
    for k, a in enumerate(args):
        lines.append(f"read{k}:\n  %p{k} = getelementptr ptr, ptr %args, i64 {k}\n  %o{k} = load ptr, ptr %p{k}\n")
        if a.dtype == np.bool_:
            lines.append(f"  %i{k} = call i32 @PyObject_IsTrue(ptr %o{k})\n  %a{k} = icmp ne i32 %i{k}, 0\n"
                         f"  %m{k} = icmp slt i32 %i{k}, 0\n")
        else:
            lines.append(f"  %a{k} = call double @PyFloat_AsDouble(ptr %o{k})\n"
                         f"  %m{k} = fcmp oeq double %a{k}, 0xBFF0000000000000\n")
        after = f"read{k + 1}" if k + 1 < len(args) else "body"
        lines.append(f"  br i1 %m{k}, label %check{k}, label %{after}\n"
                     f"check{k}:\n  %err{k} = call ptr @PyErr_Occurred()\n  %raised{k} = icmp ne ptr %err{k}, null\n"
                     f"  br i1 %raised{k}, label %fail, label %{after}\n")
    if not args:
        lines.append("read0:\n  br label %body\n")
    return "".join(lines)


def _boxed(k: int, value: str, type_: str) -> str:
    if type_ == BOOL:
        return f"  %w{k} = zext i1 {value} to i64\n  %r{k} = call ptr @PyBool_FromLong(i64 %w{k})\n"
    return f"  %r{k} = call ptr @PyFloat_FromDouble(double {value})\n"


def _returns(outputs: list[Node], values: dict) -> str:
    """One Python object per output (a tuple of them when several); NULL if one cannot be made."""
    if len(outputs) == 1:
        o = outputs[0]
        return _boxed(0, values[id(o)], _TYPES[o.dtype]) + "  ret ptr %r0\n"
    lines = [f"  %t = call ptr @PyTuple_New(i64 {len(outputs)})\n  %tnull = icmp eq ptr %t, null\n"
             "  br i1 %tnull, label %fail, label %fill\nfill:\n"]
    missing = "false"
    for k, o in enumerate(outputs):
        lines.append(_boxed(k, values[id(o)], _TYPES[o.dtype]))
        lines.append(f"  %s{k} = call i32 @PyTuple_SetItem(ptr %t, i64 {k}, ptr %r{k})\n"
                     f"  %z{k} = icmp eq ptr %r{k}, null\n  %zz{k} = or i1 {missing}, %z{k}\n")
        missing = f"%zz{k}"
    lines.append(f"  br i1 {missing}, label %drop, label %done\ndrop:\n  call void @Py_DecRef(ptr %t)\n"
                 "  ret ptr null\ndone:\n  ret ptr %t\n")
    return "".join(lines)
