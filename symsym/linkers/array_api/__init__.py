"""The Array-API linker: one compiled graph for numpy arrays, PyTorch tensors, array_api_strict arrays, ...

``symsym.function(inputs, outputs, linker="array_api")`` rewrites, schedules
and memory-plans the graph as every linker does; the driver (:mod:`.driver`)
is then written against a namespace argument instead of numpy, and each call
takes its namespace from its arrays (``array_api_compat.array_namespace``),
so one compiled function returns numpy arrays for numpy arrays and tensors
on the same device for tensors. Each op's spelling lives in
:mod:`.spellings`, through the lowering registry: the standard's functions
where it has them, the library's own call where it has none.

An op with no spelling is refused at ``function()`` time
(:class:`~.driver.UnspelledOpError`), and an op spelled for some libraries only
(scatter-add with index arrays, ``einsum``, ``erf``) at the first call on
another library, before anything runs: nothing goes through numpy behind the
user's back. Arrays from two libraries or two devices in one call, or a dtype
the library lacks, are refused the same way.

Coverage (every other op of the table is spelled for every library;
``spellings("array_api")`` in :mod:`..lowering` lists them):

=============================  ==============================================
op                             spelled for
=============================  ==============================================
conv, conv_transpose,          none yet: refused at ``function()`` time
conv_weight, windows,          (compile with ``linker="numpy"``)
unwindows, cholesky_grad,
scan, while_loop, cond,
item, checkpoint
erf, erfc, einsum              numpy, torch (the standard has none)
scatter_add                    every library for int/slice keys (an
                               assignment); numpy and torch for index
                               arrays (a scatter-add)
cumprod, cumprod_grad          namespaces with ``cumulative_prod`` (2024.12)
solve_triangular               torch's own; elsewhere ``linalg.solve`` of
                               the triangle
=============================  ==============================================

Memory: registers are released after their last use as in the numpy
driver; no statement writes into an input's buffer (a library may not allow
it, and a view may share it), so the plan frees but does not reuse buffers.
"""

from __future__ import annotations

from . import spellings  # noqa: F401  (registers every spelling)
from .driver import Driver, MixedArraysError, UnspelledOpError, build

__all__ = ["Driver", "MixedArraysError", "UnspelledOpError", "build"]
