"""A linear-time replacement for one quadratic step of numba's lowering, used while compiling kernels.

``numba.core.lowering.Lower._find_singly_assigned_variable`` rescans a
variable's whole defining block once per variable, so lowering a block of n
statements costs O(n^2): a 3,000-statement scalar chain (a depth-1000 chain
and its gradient) spent two thirds of a 30-second compile there. The
replacement counts each block's assignments once and computes the same set.
It is installed only around the linker's own compiles (:func:`linear_lowering`)
and only when numba's method is the one it replaces (same name and
attributes); otherwise numba runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections import Counter, defaultdict

__all__ = ["linear_lowering"]


def _find_singly_assigned_variable(self):
    """numba's method, with one count of each block's assignment targets instead of a scan per variable."""
    from numba.core import ir
    from numba.core.analysis import compute_use_defs, must_use_alloca

    blocks = self.func_ir.blocks
    sav = set()
    if not self.func_ir.func_id.is_generator:
        use_defs = compute_use_defs(blocks)
        alloca_vars = must_use_alloca(blocks)
        var_assign_map = defaultdict(set)
        for blk, vl in use_defs.defmap.items():
            for var in vl:
                var_assign_map[var].add(blk)
        var_use_map = defaultdict(set)
        for blk, vl in use_defs.usemap.items():
            for var in vl:
                var_use_map[var].add(blk)
        counts: dict = {}
        for var in var_assign_map:
            if var not in alloca_vars and len(var_assign_map[var]) == 1 and len(var_use_map[var]) == 0:
                [defblk] = var_assign_map[var]
                per_block = counts.get(defblk)
                if per_block is None:
                    per_block = Counter(stmt.target.name for stmt in self.blocks[defblk].find_insts(ir.Assign))
                    counts[defblk] = per_block
                if per_block[var] == 1:
                    sav.add(var)
    self._singly_assigned_vars = sav
    self._blk_local_varmap = {}


@contextlib.contextmanager
def linear_lowering():
    """numba's lowering with the linear step, for the duration of the block."""
    from numba.core import lowering

    cls = getattr(lowering, "Lower", None)
    old = getattr(cls, "_find_singly_assigned_variable", None)
    if old is None or not hasattr(cls, "blocks") and not hasattr(cls, "init"):
        yield
        return
    cls._find_singly_assigned_variable = _find_singly_assigned_variable
    try:
        yield
    finally:
        cls._find_singly_assigned_variable = old
