"""Pausing Python's cyclic garbage collector while a graph is built or rewritten.

Graphs are acyclic and their nodes immutable, so the collector can never free
one of them; yet building 10^6 nodes triggers thousands of collections that
each scan every node made so far. Pausing it for the duration of ``grad``,
``optimize`` or ``function`` makes those linear again; reference counting
still frees everything as usual.
"""

from __future__ import annotations

import gc


class paused_gc:  # lower case: used as a function, ``with paused_gc():``
    """Disable the cyclic collector inside the block (re-enabling it only if it was on).

    A class, not a ``contextlib`` generator: symnum enters it once per gradient, where the
    generator's machinery cost several times the pause itself.
    """

    __slots__ = ("_was_on",)

    def __enter__(self) -> None:
        self._was_on = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc) -> None:
        if self._was_on:
            gc.enable()
