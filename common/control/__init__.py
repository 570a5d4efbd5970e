"""Loops, branches and checkpoints: the ``scan``, ``while_loop``, ``cond`` and ``checkpoint`` ops, and ``item``,
which reads their outputs.

Each op runs *bodies*, closed subgraphs held in its params (:mod:`common.body`).
Its builder (``scan(fn, init, xs)``, JAX's signatures) traces the user's
Python functions once into bodies (:mod:`common.control.trace`), adds one
node and returns its outputs as ``item`` nodes in the user's own nesting.
Every fact of an op sits in that op's module, as JAX keeps every fact of
``scan_p`` in one file: builder, type rule, impl, pullback, JVP and batching
rules (:mod:`~common.control.scan_op`, :mod:`~common.control.while_op`,
:mod:`~common.control.cond_op`, :mod:`~common.control.checkpoint_op`, :mod:`~common.control.item_op`); what they
share is in :mod:`~common.control.bodies` (a body's VJP, JVP and batched
form) and :mod:`~common.control.checks` (their type rules' checks).

**How loops keep the one rule.** Every op inside a body keeps its one shared
VJP and JVP rule; each rule of a loop op is again a loop op whose body is made
from the forward body by those rules, swept by the sweeps every backend
shares. What a sweep must know about a loop is a trait of its op (``outputs``:
its value is a tuple; ``saving``: its forward can stack what its VJP reads),
never its name. Importing this package registers the five ops; nothing below
it in :mod:`common` imports it.
"""

from . import item_op  # noqa: F401  (registers item)
from .checkpoint_op import checkpoint
from .cond_op import cond
from .scan_op import scan
from .while_op import while_loop

__all__ = ["checkpoint", "cond", "scan", "while_loop"]
