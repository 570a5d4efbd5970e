"""Graph rewrites, each a pure function from graph to graph, and ``optimize``.

The pass families (one module each): :mod:`~.merge` (CSE), :mod:`~.fold`
(constant folding), :mod:`~.algebra` (neutral elements and identities; the
ones true only for finite values under ``fast_math``),
:mod:`~.stability` (stable forms), :mod:`~.loops` (inside loops and branches:
their bodies rewritten by the same passes, loop invariants hoisted, dead
carries dropped) and :mod:`~.dce` (dead code). ``optimize``
runs the selected local rules together in one bottom-up rebuild, hash-consing
as it goes. Each rule sees already-final inputs and is re-applied to its own
replacement, so one O(n) rebuild reaches the fixed point; another runs only
when a rewrite built a fresh subgraph (``-softplus(-x)``) that the rebuild has
not visited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import partial

from common.body import Body
from common.errors import TwogradError
from common.gcpause import paused_gc
from common.graph import Node, toposort

from .algebra import algebra, algebra_rule, fast_algebra_rule
from .control import has_loops, open_bodies, prune
from .dce import dropped
from .fold import fold, fold_rule
from .merge import merge
from .rules import run_rules
from .stability import stability, stability_rule

__all__ = ["DEFAULT_PASSES", "PASSES", "algebra", "fold", "merge", "optimize", "stability"]

#: each pass that is a local rule (merge and dce are not), by name
PASS_RULES = {"fold": fold_rule, "algebra": algebra_rule, "stability": stability_rule}
#: the rules that ``fast_math`` replaces: identities true only for finite values (``x * 0 -> 0``)
FAST_PASS_RULES = {**PASS_RULES, "algebra": fast_algebra_rule}
PASSES = ("merge", "fold", "algebra", "stability", "loops", "dce")
DEFAULT_PASSES = PASSES


def optimize(outputs, passes: Iterable[str] = DEFAULT_PASSES, max_iter: int = 4, fast_math: bool = False):
    """Rewrite ``outputs`` to a fixed point; return ``(new_outputs, report)``.

    ``outputs`` is a node (then a node comes back) or a list of nodes.
    ``report`` holds ``nodes_before``, ``nodes_after``, ``iterations`` and
    per-pass counts under ``passes`` (rewrites fired; for ``dce``, the nodes
    that the rewritten outputs no longer reach). By default every rewrite
    keeps IEEE semantics (a NaN or inf in an input propagates as numpy
    propagates it); ``fast_math=True`` also applies identities that hold only
    for finite values, such as ``x * 0 -> 0`` and ``x - x -> 0``.
    """
    with paused_gc():
        outs, report, _ = optimized_order(outputs, passes, max_iter, fast_math)
    return outs, report


def optimized_order(outputs, passes: Iterable[str] = DEFAULT_PASSES, max_iter: int = 4,
                    fast_math: bool = False):
    """``optimize`` plus the rewritten graph's schedule: ``toposort`` of the outputs, last first.

    The compiler schedules the outputs in that order, and the report needs the
    same traversal, so it is done once.
    """
    single = isinstance(outputs, Node)
    outs: Sequence[Node] = [outputs] if single else list(outputs)
    passes = tuple(passes)
    unknown = set(passes) - set(PASSES)
    if unknown:
        raise TwogradError(f"unknown rewrite passes {sorted(unknown)}; known: {PASSES}")
    table = FAST_PASS_RULES if fast_math else PASS_RULES
    rules = [(p, table[p]) for p in passes if p in table]
    use_merge = "merge" in passes
    counts = {p: 0 for p in passes}
    before = toposort(outs)
    first = before
    loops = has_loops(before)
    if loops:  # bodies are rewritten by the same passes; invariants are hoisted before the outer merge
        body_passes = partial(_optimized_body, passes=passes, max_iter=max_iter, fast_math=fast_math)
        outs = open_bodies(outs, body_passes, counts, hoist="loops" in passes)
        first = None
    iterations = 0
    for _ in range(max_iter if (rules or use_merge) else 0):
        iterations += 1
        fired: dict[str, int] = {}
        new = run_rules(outs, rules, merge=use_merge, counts=fired, order=first if iterations == 1 else None)
        for k, v in fired.items():
            counts[k] += v
        outs = new
        if not fired.get("stability"):
            break  # only stability builds subgraphs that the rebuild has not yet seen
    if loops and "loops" in passes:
        outs = prune(outs, counts)
        if use_merge:
            outs = run_rules(outs, (), merge=True)
    after = toposort(outs[::-1])
    if "dce" in passes:
        counts["dce"] = dropped(before, after)
    report = {"nodes_before": len(before), "nodes_after": len(after), "iterations": iterations,
              "passes": counts}
    return (outs[0] if single else outs), report, after


def _optimized_body(body: Body, passes: tuple, max_iter: int, fast_math: bool) -> Body:
    """``body`` with its outputs rewritten by ``passes`` (the same passes as the graph holding it)."""
    outs, _, _ = optimized_order(list(body.outputs), passes, max_iter, fast_math)
    if all(a is b for a, b in zip(outs, body.outputs)):
        return body
    return Body(body.inputs, outs)
