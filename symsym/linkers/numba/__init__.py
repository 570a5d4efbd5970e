"""The numba lowering path: elementwise regions as compiled loops, loops of scalars as one kernel.

Everything numba compiles for a graph is written here, from the op table's
scalar forms (the ``scalar`` trait, or a spelling registered for ``"numba"``
in :mod:`symsym.linkers.lowering`):

* :mod:`.lower` is the linker's entry point (``lower(order, outs)``): it finds
  the regions (:mod:`.fuse`: which nodes a loop can hold, and how they
  group), cuts long ones (:mod:`.cut`), writes each as a loop nest
  (:mod:`.loopnest`, with row sums :mod:`.rowsums` and segmented math
  :mod:`.segments`) and hands 0-d chains to the LLVM path
  (:mod:`symsym.linkers.llvm`);
* :mod:`.loop_kernels` compiles a whole ``scan`` or ``while_loop`` of scalars;
* :mod:`.driver` holds what both kinds of kernel are built from: the lowered
  schedule's own ops (a kernel call, a pick of its results), the conversions
  and compile for the graph's types, the kernels' size limits;
* :mod:`.vforms`, :mod:`.vmath`, :mod:`.pairwise` and :mod:`.as_scalar` are
  the numba-side functions the generated kernels call; :mod:`.speedups` makes
  numba's own lowering linear in a kernel's length;
* :mod:`.diskcache` keeps numba's machine code of the kernels in the kernel
  cache folder (:mod:`symsym.linkers.cache`), whatever numba's settings say.

Importing this package does not import numba: :mod:`.lower` does, when the
linker is first used.
"""
