"""THE OP TABLE: every op, defined once, in one registry (:data:`OPS`).

Importing this package registers every family of array ops. Both backends,
the printer, the serializer and the test suite enumerate :data:`OPS`, so a new
op is one entry here that all of them pick up. The loop and branch ops
(``scan``, ``while_loop``, ``cond``, ``item``) join the table from
:mod:`common.control`, which builds on it: nothing here knows them.

Modules, bottom-up: ``params`` (param checks), ``shapes`` (type-rule
helpers), ``traits`` (kinds and input sets), ``index`` (index specs),
``batching`` (batching rules), ``table`` (:class:`Op`, :func:`defop`, the
numeric and symbolic namespaces), ``rules`` (helpers rules are written with),
then one module per family.
"""

from . import conv, elementwise, linalg, matrix, nn, ordering, reduce, scans, shape, spectral  # noqa: F401  (registers the ops)
from .table import NO_GRAD, OPS, ZERO, Namespace, Op, defop, numeric, symbolic
from .traits import Inputs, Kind

__all__ = ["NO_GRAD", "OPS", "ZERO", "Inputs", "Kind", "Namespace", "Op", "defop", "numeric", "symbolic"]
