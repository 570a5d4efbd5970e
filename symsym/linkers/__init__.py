"""Linkers: the last step of ``symsym.function``, which decides what actually runs.

``symsym.function(inputs, outputs, linker="numpy")`` rewrites the graph,
schedules it and plans its memory the same way whatever the linker; the
linker then *lowers* the schedule. The driver that runs it is always the
straight-line Python the numpy code generator writes (:mod:`symsym.compile`):
one statement per node of the lowered schedule, registers freed after their
last use. So a linker is small, and it is data-in, data-out:

``Linker.lower(order, outs) -> Lowered(order, outs, kernels)``
    takes the schedule (a topological list of nodes, leaves included) and the
    output nodes, and returns an equivalent schedule in which some groups of
    nodes are replaced by single nodes whose op's ``impl`` is native code (a
    fused loop), plus the source of each kernel for ``Function.source``. A
    node the linker does not know (an op without a scalar form, a loop or a
    branch with subgraph params, a matmul that belongs on BLAS) is left as it
    is, and the driver runs its numpy impl: falling back is the default, never
    a special case.
``Linker.missing() -> str | None``
    why the linker cannot run here (its compiler is not installed), or None.

Linkers, found by name in :data:`LINKERS`:

* ``"numpy"`` (the default): lowers nothing; every node is a numpy call.
* ``"numba"``: maximal elementwise regions become one ``@numba.njit`` loop
  each, 0-d chains one native function, and a scan or while loop of scalars
  one kernel with the loop inside, from each op's scalar form.
* ``"array_api"``: lowers nothing, but writes its own driver (``build``)
  against the namespace of each call's arrays, so one compiled function runs
  on numpy arrays, PyTorch tensors, array_api_strict arrays (:mod:`.array_api`).

The folder holds one folder per lowering path and what they share:

* :mod:`.lowering`, the per-op registry: how each linker spells each op
  (``register_lowering(op, linker, spelling)``). The op table's ``code`` and
  ``scalar`` traits are the numpy and numba defaults; every other spelling
  (the loops' code writers, the numba loop kernels' forms) is registered from
  the folder of the path that uses it, so a new linker is one new folder and
  no op file changes; and :class:`Lowered`, what a linker's lowering returns;
* :mod:`.numba` (fused loops, loop kernels, vectorised math) and :mod:`.llvm`
  (0-d chains as LLVM functions), the two native paths;
* :mod:`.cache`, the kernel cache on disk both native paths load from.

A linker with a ``build(order, outs, inputs)`` method writes the driver
itself (the Array-API linker: its namespace is known only at call time).
"""

from __future__ import annotations

import importlib.util

from common.errors import TwogradError
from common.graph import Node

from .lowering import Lowered

__all__ = ["LINKERS", "Linker", "Lowered", "LinkerError", "get_linker"]


class LinkerError(TwogradError, ValueError):
    """An unknown linker, or one whose compiler is not installed here."""


class Linker:
    """The numpy linker: every node runs its numpy impl (nothing is lowered)."""

    name = "numpy"

    def missing(self) -> str | None:
        return None

    def lower(self, order: list[Node], outs: list[Node]) -> Lowered:
        return Lowered(order, outs)


class _Numba(Linker):
    """Found lazily: importing numba costs a second, paid only by who asks for it (and not even then by a
    graph whose regions are all 0-d: those compile with llvmlite alone, :mod:`.llvm.chains`)."""

    name = "numba"

    def missing(self) -> str | None:
        if importlib.util.find_spec("numba") is None:
            return "numba is not installed (pip install 'twograd[native]')"
        return None

    def lower(self, order: list[Node], outs: list[Node]) -> Lowered:
        from .numba.lower import lower
        return lower(order, outs)


class _ArrayApi(Linker):
    """Lowers nothing: it writes its own driver, against the namespace of each call's arrays
    (:mod:`.array_api`), found lazily as numba is."""

    name = "array_api"

    def missing(self) -> str | None:
        if importlib.util.find_spec("array_api_compat") is None:
            return "array-api-compat is not installed (pip install 'twograd[array]')"
        return None

    def build(self, order: list[Node], outs: list[Node], inputs: list[Node]):
        """The driver (a callable on arrays of any Array-API library) and its source."""
        from .array_api import build
        return build(order, outs, inputs)


LINKERS: dict[str, Linker] = {"numpy": Linker(), "numba": _Numba(), "array_api": _ArrayApi()}


def get_linker(name: str) -> Linker:
    """The linker called ``name``, or a :class:`LinkerError` saying why it cannot be had."""
    linker = LINKERS.get(name) if isinstance(name, str) else None
    if linker is None:
        raise LinkerError(f"symsym.function: unknown linker {name!r}; known: {', '.join(sorted(LINKERS))}")
    why = linker.missing()
    if why is not None:
        raise LinkerError(f"symsym.function: linker {name!r} cannot run here: {why}")
    return linker
