"""Keeping the pages a tape frees for the next tape: glibc malloc's thresholds.

A define-by-run tape keeps every op's inputs and outputs until its sweep, and
the leaves are copies, so one gradient's arrays peak at about twice what a
hand-written backprop keeps alive, and they are all freed together when the
tape goes. glibc hands the freed top of its heap back to the system once it
exceeds the *trim threshold* (by default twice the largest mmap'd block freed
so far: a few MB for an MLP's weights), so the next call takes every page
back through a page fault and the kernel zeroes it again. On a
784-256-256-10 MLP that was about 1300 faults per gradient, most of what the
tape cost over hand-written numpy; the arithmetic itself is the same.

:func:`keep_freed_pages` sets the two thresholds once, at import, to the
values glibc grows them to by itself in a program that works with big arrays
(blocks up to 32 MiB from the heap, up to 64 MiB of free heap kept), so a
gradient reuses the last one's pages. Nothing changes for any other C
library, nor when the user chose: ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_`` set (glibc's own tunables), or
``TWOGRAD_MALLOC=system``.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 32 << 20
"""Blocks at least this big are mmap'd (glibc's own ceiling for its sliding threshold, 64-bit)."""

TRIM_THRESHOLD = 64 << 20
"""Free memory at the top of the heap beyond this goes back to the system (twice the above, as glibc sets it)."""

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_pages() -> bool:
    """Set glibc's mmap and trim thresholds (see the module docstring); whether they were set.

    Both are set together: setting either one stops glibc's sliding
    threshold, which would leave every block over 128 KiB mmap'd afresh.
    """
    if os.environ.get("TWOGRAD_MALLOC") == "system" or any(k in os.environ for k in _USER_SETTINGS):
        return False
    if not sys.platform.startswith("linux") or not _glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def _glibc() -> bool:
    """Whether the C library is glibc (musl and others have no such thresholds)."""
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


KEPT = keep_freed_pages()
"""Whether this process runs with the thresholds set here."""
