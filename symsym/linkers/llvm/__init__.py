"""The LLVM lowering path: a 0-d chain of scalar ops as one native function, with no numba in between.

:mod:`.forms` turns an op's scalar form into an LLVM IR template,
:mod:`.chains` writes a chain of them as one ``METH_FASTCALL`` function, and
:mod:`.jit` compiles it with llvmlite and caches the object code in the
kernel cache (:mod:`symsym.linkers.cache`).
"""
