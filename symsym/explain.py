"""A step-by-step trace of ``build_grad`` on a live graph (Algorithm 6.6, narrated).

Each step is one application of a VJP rule: the node V whose gradient is being
built, the consumer C whose rule was called, which input slot of C V fills,
and the nodes the rule added to the graph. Printing an :class:`Explanation`
lets a reader follow the book's algorithm on their own graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.graph import Node, toposort
from common.printing import pprint, summary

from .grad import grad
from .jacmode import ChainPlan, chain_plan

__all__ = ["Explanation", "Step", "explain"]


@dataclass
class Step:
    node: Node          # V: the node whose gradient receives a term
    consumer: Node      # C: the op whose VJP rule was applied
    slot: int           # V is input ``slot`` of C
    term: Node          # the cotangent term the rule returned
    added: list         # nodes the rule added to the graph (inputs first)

    def __str__(self) -> str:
        v = summary(self.node)
        rule = f"{self.consumer.op.name}.vjp[{self.slot}]"
        lines = [f"grad_table[{v}] += {rule}(grad_table[{_short(self.consumer)}])  "
                 f"# consumer {_short(self.consumer)}"]
        for n in self.added:
            lines.append(f"    + {n.op.name if n.op else 'const'}: {_short(n)}")
        return "\n".join(lines)


def _short(n: Node, width: int = 60) -> str:
    return summary(n, width)


def _result(g: Node | None) -> str:
    """A gradient's full text; its binding lines (shared subexpressions) indented under the result."""
    return "None" if g is None else pprint(g).replace("\n", "\n    ")


def _new_nodes(term: Node, known: set[int]) -> list[Node]:
    """The nodes under ``term`` not in ``known``, inputs first, and add them to ``known``.

    The walk stops at known nodes, so the whole trace visits each node once
    (a toposort of every term would make a long chain's trace quadratic). The
    cotangent of a loop or branch (one term per output that got one) is walked part by part.
    """
    out: list[Node] = []
    parts = getattr(term, "parts", None)
    stack = [(t, False) for t in reversed(list(parts.values()) if parts is not None else [term])]
    while stack:
        n, done = stack.pop()
        if done:
            out.append(n)
        elif id(n) not in known:
            known.add(id(n))
            stack.append((n, True))
            stack.extend((i, False) for i in reversed(n.inputs) if id(i) not in known)
    return out


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
        tail = [f"result: {w.name or repr(w)} -> {_result(g)}"
                for w, g in zip(self.wrt, self.grads)]
        return "\n".join(head + body + tail)

    __repr__ = __str__


def explain(cost: Node, wrt, **kwargs) -> Explanation:
    """Run ``grad(cost, wrt, **kwargs)`` and record every rule application."""
    ws = [wrt] if isinstance(wrt, Node) else list(wrt)
    known = {id(n) for n in toposort([cost, *ws])}
    steps: list[Step] = []

    def trace(v, consumer, slot, term):
        steps.append(Step(v, consumer, slot, term, _new_nodes(term, known)))

    grads = grad(cost, ws, trace=trace, **kwargs)
    return Explanation(cost, ws, grads, steps)


def explain_jacobian(y: Node, x: Node) -> ChainPlan:
    """The Jacobian dy/dx as book section 6.5.9 counts it: the chain of ops from x to y, each link's
    Jacobian size, the forward and reverse costs, the cheapest multiplication order (dynamic programming
    over the chain's sizes) and the mode ``symsym.jacobian`` picks. A line per link: linear in the chain."""
    return chain_plan(y, x)
