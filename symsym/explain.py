"""A step-by-step trace of ``build_grad`` on a live graph (Algorithm 6.6, narrated).

Each step is one application of a VJP rule: the node V whose gradient is being
built, the consumer C whose rule was called, which input slot of C V fills,
and the nodes the rule added to the graph. Printing an :class:`Explanation`
lets a reader follow the book's algorithm on their own graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.graph import Node, toposort
from common.graph import variable as var
from common.printing import pprint, summary

from .forward import jvp
from .grad import grad
from .jacmode import ChainPlan, chain_plan

__all__ = ["Explanation", "ForwardExplanation", "ForwardStep", "Step", "explain", "explain_jvp"]


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


@dataclass
class ForwardStep:
    node: Node          # the node whose tangent the sweep made
    fed: list           # its inputs that carried a tangent in
    tangent: Node       # that tangent
    added: list         # nodes the JVP rule added to the graph (inputs first)

    def __str__(self) -> str:
        args = ", ".join(_short(i, 30) for i in self.node.inputs)
        fed = ", ".join(f"tangent[{_short(i, 30)}]" for i in self.fed)
        lines = [f"tangent[{_short(self.node)}] = {self.node.op.name}.jvp({args}; {fed})"]
        for n in self.added:
            lines.append(f"    + {n.op.name if n.op else 'const'}: {_short(n)}")
        return "\n".join(lines)


@dataclass
class ForwardExplanation:
    """Forward mode on a live graph: the sweep from the input up, one JVP rule per node (book section 6.5.9).

    Printed beside :class:`Explanation`, it shows the other order of the same chain rule: the tangent
    of each node is its op's local derivative times its inputs' tangents, computed input first, where
    ``build_grad`` multiplies from the output down.
    """

    output: Node
    wrt: Node
    seed: Node
    tangent: Node
    steps: list = field(default_factory=list)

    def __str__(self) -> str:
        head = [f"forward mode (jvp) for {_short(self.output)} with respect to {self.wrt.name or repr(self.wrt)}",
                f"tangent[{self.wrt.name or repr(self.wrt)}] = {_short(self.seed)} (the seed)"]
        body = [f"{k + 1}. {s}" for k, s in enumerate(self.steps)]
        tail = [f"result: d{self.output.name or 'y'} = {_result(self.tangent)}"]
        return "\n".join(head + body + tail)

    __repr__ = __str__


def explain_jvp(y: Node, x: Node, v: Node | None = None) -> ForwardExplanation:
    """Run ``jvp(y, x, v)`` and record every JVP rule application, input first.

    ``v`` defaults to a variable named ``d<x>`` of x's shape, so that the result reads as the
    tangent of y in terms of x's (``dz = dw * f'(w) * f'(x) * f'(y)`` for the book's chain).
    """
    if v is None:
        v = var(f"d{x.name or 'x'}", x.shape, x.dtype)
    known = {id(n) for n in toposort([y, x, v])}
    have = {id(x)}  # the nodes holding a tangent so far
    steps: list[ForwardStep] = []

    def trace(n: Node, t: Node) -> None:
        steps.append(ForwardStep(n, [i for i in n.inputs if id(i) in have], t, _new_nodes(t, known)))
        have.add(id(n))

    tangent = jvp(y, x, v, trace=trace)
    return ForwardExplanation(y, x, v, tangent, steps)


def explain_jacobian(y: Node, x: Node) -> ChainPlan:
    """The Jacobian dy/dx as book section 6.5.9 counts it: the chain of ops from x to y, each link's
    Jacobian size, the forward and reverse costs, the cheapest multiplication order (dynamic programming
    over the chain's sizes) and the mode ``symsym.jacobian`` picks. A line per link: linear in the chain."""
    return chain_plan(y, x)
