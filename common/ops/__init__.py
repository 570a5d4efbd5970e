"""THE OP TABLE: every op, defined once, in one registry (:data:`OPS`).

Importing this package registers every family. Both backends, the printer,
the serializer and the test suite enumerate :data:`OPS`, so a new op is one
entry here that all of them pick up.
"""

from . import (  # noqa: F401  (registers the ops and rules)
    batching,
    control,
    control_rules,
    conv,
    elementwise,
    linalg,
    matrix,
    nn,
    ordering,
    reduce,
    scans,
    shape,
    spectral,
)
from .core import NO_GRAD, OPS, ZERO, Inputs, Kind, Namespace, Op, defop, numeric

__all__ = ["NO_GRAD", "OPS", "ZERO", "Inputs", "Kind", "Namespace", "Op", "defop", "numeric"]
