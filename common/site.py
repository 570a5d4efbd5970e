"""Where in the user's code a node was made.

Errors are most useful when they point at the user's line, not at ours, so
every node records the first stack frame outside twograd's own packages.
"""

from __future__ import annotations

import os
import sys
import threading

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INTERNAL = tuple(os.path.join(_ROOT, pkg) + os.sep for pkg in ("common", "symnum", "symsym"))


_KNOWN: dict[str, bool] = {}  # file name -> whether it is library code (asked once per file)


class Site:
    """A ``file:line`` pair, formatted only when shown (creation is on hot paths)."""

    __slots__ = ("filename", "lineno")

    def __init__(self, filename: str, lineno: int):
        self.filename = filename
        self.lineno = lineno

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"

    __repr__ = __str__


class _Pin(threading.local):
    """The pinned site of the running thread: one thread's ``symsym.grad`` must not lend its
    user's line to the nodes another thread makes meanwhile."""

    site: Site | None = None


_PIN = _Pin()


class pinned_site:
    """Within ``with pinned_site(site):``, :func:`user_site` answers ``site`` without a frame walk
    (in this thread only).

    A library routine that makes many nodes on behalf of one user call
    (``symsym.grad``, a rewrite pass) would otherwise walk the same frames up to
    the same user line once per node; it finds that line once and pins it.
    """

    __slots__ = ("site", "_saved")

    def __init__(self, site: Site | None):
        self.site = site

    def __enter__(self) -> Site | None:
        self._saved = _PIN.site
        _PIN.site = self.site
        return self.site

    def __exit__(self, *exc) -> None:
        _PIN.site = self._saved


def user_site(depth: int = 1) -> Site | None:
    """The innermost frame, from ``depth`` up, that is not twograd's own code (or this thread's
    pinned site)."""
    pinned = _PIN.site
    if pinned is not None:
        return pinned
    f = sys._getframe(depth)
    internal = _INTERNAL
    while f is not None and f.f_code.co_filename.startswith(internal):
        f = f.f_back
    if f is None:
        return None
    return Site(f.f_code.co_filename, f.f_lineno)


def user_code(depth: int = 1, tries: int = 2) -> Site | tuple | None:
    """:func:`user_site` for hot paths that know how deep the user's frame usually is: that
    frame's ``(code, instruction offset)``, which :func:`site_of` words as a Site only when one
    is shown.

    The symnum tape notes where the first op that saves each version of a
    leaf was recorded. In
    CPython 3.11 ``sys._getframe(depth)`` makes a frame object for that frame
    only (the user's is long-lived: made once), each file is classified once,
    and a line number, which costs a search of the code's line table, is
    found only when shown. So the frames at ``depth`` and up to ``tries - 1``
    above it (an operator's wrapper) are tried first, then the pinned site,
    then a walk.
    """
    known = _KNOWN
    try:
        for d in range(depth, depth + tries):
            f = sys._getframe(d)
            name = f.f_code.co_filename
            inside = known.get(name)
            if inside is None:
                inside = known[name] = name.startswith(_INTERNAL)
            if not inside:
                return f.f_code, f.f_lasti
        return user_site(depth + tries + 1)  # (+1: user_site's own frame)
    except ValueError:  # the stack is not that deep
        return None


def site_of(where: Site | tuple | None) -> Site | None:
    """The Site of what :func:`user_code` answered."""
    if where is None or isinstance(where, Site):
        return where
    code, offset = where
    for start, end, line in code.co_lines():
        if start <= offset < end and line is not None:
            return Site(code.co_filename, line)
    return Site(code.co_filename, code.co_firstlineno)
