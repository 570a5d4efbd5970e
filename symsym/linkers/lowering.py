"""How each linker spells each op: the lowering registry.

A linker turns a node into code by asking :func:`lowering` for its op's
*spelling* in that linker: a template the linker knows how to fill (for the
numpy driver a numpy expression like ``"np.sin({0})"``, for the numba loops a
scalar expression like ``"math.sin({0})"``), or ``None`` when the linker has
no spelling and must fall back (the numpy driver then calls the op's impl; the
numba linker leaves the node to the numpy driver).

The op table holds the two spellings every op file already writes, as traits:
``code`` is the ``"numpy"`` linker's and ``scalar`` the ``"numba"`` linker's
(and so the LLVM path's, which reads the same scalar forms). Every other
spelling lives in the folder of the linker that uses it, registered with
:func:`register_lowering` when that folder is imported, so a new lowering path
is one new folder and no op file changes: a GPU linker registers, say,
``register_lowering("erf", "array_api", ...)`` next to its code generator.
A registered spelling wins over the op table's default for that linker.

This is PyTensor's ``numba_funcify.register(Op)`` and JAX's
``mlir.register_lowering(prim, rule, platform)``, kept as data: a dict keyed by
``(linker, op name)``, readable and listable (:func:`spellings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from common.graph import Node
from common.ops.table import OPS, Op

__all__ = ["DEFAULTS", "Lowered", "lowering", "register_lowering", "spellings"]


@dataclass
class Lowered:
    """A linker's answer: the schedule the driver runs, its outputs, and each kernel's source (what a
    linker's ``lower`` makes of a schedule with the spellings registered here)."""

    order: list[Node]
    outs: list[Node]
    kernels: list[str] = field(default_factory=list)


#: linker name -> the op table trait that is its spelling when nothing is registered
DEFAULTS: dict[str, Callable[[Op], object]] = {
    "numpy": lambda op: op.code,
    "numba": lambda op: op.scalar,
}
_REGISTERED: dict[tuple[str, str], object] = {}


def register_lowering(op: str | Op, linker: str, spelling: object) -> None:
    """Spell ``op`` as ``spelling`` in ``linker`` (replacing the op table's default there)."""
    name = op.name if isinstance(op, Op) else op
    if name not in OPS:
        raise KeyError(f"register_lowering: no op {name!r} in the op table")
    _REGISTERED[(linker, name)] = spelling


def lowering(op: Op, linker: str) -> object | None:
    """``op``'s spelling in ``linker``: a registered one, else the op table's default, else None."""
    found = _REGISTERED.get((linker, op.name))
    if found is not None:
        return found
    default = DEFAULTS.get(linker)
    return default(op) if default is not None else None


def spellings(linker: str) -> dict[str, object]:
    """Every op of the table that ``linker`` can spell, with its spelling (for listings and tests)."""
    out = {}
    for name, op in OPS.items():
        s = lowering(op, linker)
        if s is not None:
            out[name] = s
    return out
