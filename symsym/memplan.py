"""The memory plan every driver shares: when a value dies, and which register a new value takes.

The numpy driver's generated source and table (:mod:`symsym.compile`) and the
Array-API driver (:mod:`symsym.linkers.array_api`) schedule the same way, so
the plan lives once, below both.
"""

from __future__ import annotations

from common.graph import Node

__all__ = ["last_uses", "register", "statement"]


def last_uses(order: list[Node], outs: list[Node]):
    """Last use of every value: the statement index after which it can be dropped."""
    last: dict[int, int] = {}
    for k, n in enumerate(order):
        for i in n.inputs:
            last[id(i)] = k
    end = len(order)
    for o in outs:
        last[id(o)] = end
    return last


def register(dead: list, free: list, fresh):
    """Where a new value lives: a dying input's register, else a freed one, else ``fresh()``.

    The one memory-plan policy of both code paths (generated source and table).
    """
    if dead:
        return dead.pop(0)
    if free:
        return free.pop()
    return fresh()


def statement(lines: list, target: str, expr: str, dead: list, free: list) -> None:
    """``target = expr`` as a line of source, releasing (``del``, then free for reuse) what dies there."""
    if dead:
        lines.append(f"    {target} = {expr}; del {', '.join(dead)}")
        free.extend(dead)
    else:
        lines.append(f"    {target} = {expr}")
