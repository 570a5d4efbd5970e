"""The facts an op states about itself besides its rules: its kind, and sets of its input positions.

Described on :class:`common.ops.table.Op`, where each trait is a field; they
live apart from the table so that the rules keyed by them (the batching rules
of :mod:`common.ops.batching`) can read them below the table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(str, Enum):
    """What sort of op an op is: the one fact most backends branch on first."""

    ELEMENTWISE = "elementwise"  # one output element per broadcast position, from the inputs' elements there
    REDUCTION = "reduction"      # combines the elements along its ``axis`` param
    SHAPE = "shape"              # moves, copies, selects or sums elements, and nothing else
    LINALG = "linalg"            # matrix products and contractions
    NN = "nn"                    # neural-network forms (softmax and friends) along an axis
    CONSTANT = "constant"        # its value depends on no input's values (only shapes and params)
    CONTROL = "control"          # runs bodies (subgraphs in its params): loops, branches, and their item
    KERNEL = "kernel"            # a linker's compiled kernel, or the pick of its output (lowered schedules only)


@dataclass(frozen=True)
class Inputs:
    """Some input positions of an op: the ``fixed`` ones and, for a variadic op, every one from ``rest`` on."""

    fixed: tuple[int, ...] = ()
    rest: int | None = None

    def __contains__(self, i: int) -> bool:
        return i in self.fixed or (self.rest is not None and i >= self.rest)

    def __bool__(self) -> bool:
        return bool(self.fixed) or self.rest is not None

    def of(self, n: int) -> tuple[int, ...]:
        """The positions among an application's ``n`` inputs."""
        return tuple(i for i in range(n) if i in self)


NONE = Inputs()
ALL = Inputs((), 0)


def inputs_from(k: int) -> Inputs:
    """Input ``k`` and every one after it (a variadic op's tail: index arrays, reference shapes)."""
    return Inputs((), k)


def as_inputs(spec) -> Inputs:
    """An input-set trait as given to :func:`defop` (positions, True for all, or an :class:`Inputs`)."""
    if isinstance(spec, Inputs):
        return spec
    if spec is True:
        return ALL
    if spec is False or spec is None:
        return NONE
    if isinstance(spec, int):
        return Inputs((spec,))
    return Inputs(tuple(spec))
