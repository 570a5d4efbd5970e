"""A step-by-step trace of ``build_grad`` on a live graph (Algorithm 6.6, narrated).

Each step is one application of a VJP rule: the node V whose gradient is being
built, the consumer C whose rule was called, which input slot of C V fills,
and the nodes the rule added to the graph. Printing an :class:`Explanation`
lets a reader follow the book's algorithm on their own graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.graph import Node, toposort
from common.printing import pprint

from .grad import grad

__all__ = ["Explanation", "Step", "explain"]


@dataclass
class Step:
    node: Node          # V: the node whose gradient receives a term
    consumer: Node      # C: the op whose VJP rule was applied
    slot: int           # V is input ``slot`` of C
    term: Node          # the cotangent term the rule returned
    added: list         # nodes the rule added to the graph (inputs first)

    def __str__(self) -> str:
        v = self.node.name or pprint(self.node)
        rule = f"{self.consumer.op.name}.vjp[{self.slot}]"
        lines = [f"grad_table[{v}] += {rule}(grad_table[{_short(self.consumer)}])  "
                 f"# consumer {_short(self.consumer)}"]
        for n in self.added:
            lines.append(f"    + {n.op.name if n.op else 'const'}: {_short(n)}")
        return "\n".join(lines)


def _short(n: Node, width: int = 60) -> str:
    text = n.name or pprint(n)
    return text if len(text) <= width else text[:width - 3] + "..."


@dataclass
class Explanation:
    cost: Node
    wrt: list
    grads: list
    steps: list = field(default_factory=list)

    def __str__(self) -> str:
        head = [f"build_grad for {_short(self.cost)} with respect to "
                + ", ".join(w.name or repr(w) for w in self.wrt),
                f"grad_table[{_short(self.cost)}] = 1 (the seed)"]
        body = [f"{k + 1}. {s}" for k, s in enumerate(self.steps)]
        tail = [f"result: {w.name or repr(w)} -> {pprint(g) if g is not None else None}"
                for w, g in zip(self.wrt, self.grads)]
        return "\n".join(head + body + tail)

    __repr__ = __str__


def explain(cost: Node, wrt, **kwargs) -> Explanation:
    """Run ``grad(cost, wrt, **kwargs)`` and record every rule application."""
    ws = [wrt] if isinstance(wrt, Node) else list(wrt)
    known = {id(n) for n in toposort([cost, *ws])}
    steps: list[Step] = []

    def trace(v, consumer, slot, term):
        added = [n for n in toposort(term) if id(n) not in known]
        known.update(id(n) for n in added)
        steps.append(Step(v, consumer, slot, term, added))

    grads = grad(cost, ws, trace=trace, **kwargs)
    return Explanation(cost, ws, grads, steps)
