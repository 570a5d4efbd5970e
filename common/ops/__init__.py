"""THE OP TABLE: every op, defined once, in one registry (:data:`OPS`).

Importing this package registers every family. Both backends, the printer,
the serializer and the test suite enumerate :data:`OPS`, so a new op is one
entry here that all of them pick up.
"""

from . import batching, control, control_rules, elementwise, linalg, nn, reduce, shape  # noqa: F401  (registers the ops and rules)
from . import conv, matrix, spectral  # noqa: F401  (linear algebra, convolution and pooling)
from .core import NO_GRAD, OPS, ZERO, Inputs, Kind, Namespace, Op, defop, numeric

__all__ = ["NO_GRAD", "OPS", "ZERO", "Inputs", "Kind", "Namespace", "Op", "defop", "numeric"]
