"""Symbol-to-symbol backpropagation: Algorithms 6.5 and 6.6 of the Deep Learning book.

``grad`` never touches a number. It walks the graph backwards and, for each
node, asks every consumer's VJP rule (from the shared op table, run in the
*symbolic* namespace) for that consumer's share of the cotangent. The rules
answer with new IR nodes, so the result is more graph: it can be printed,
rewritten, compiled, or differentiated again.

The book's ``build_grad`` is recursive with a memo (the ``grad_table``); here
the recursion is unrolled into one sweep over the pruned graph in reverse
topological order, which visits a node only after all its consumers have their
entries, so a 10^6-node chain never meets Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from common.api import apply, symbolic
from common.backward import relevant_nodes, sweep
from common.body import Body, bodies_of
from common.errors import GradError
from common.gcpause import paused_gc
from common.graph import Node, lift, toposort
from common.ops import Kind
from common.sentinel import Sentinel
from common.site import pinned_site, user_site
from common.tree import tree_unflatten

from .rewrite.stability import stabilize
from .trees import node_leaves

__all__ = ["DISCONNECTED", "build_grad", "grad", "relevant_nodes", "stop_gradient"]

stop_gradient = symbolic.stop_gradient


DISCONNECTED = Sentinel("DISCONNECTED")
"""grad_table's marker for "no path from the cost" (PyTensor's DisconnectedType)."""

Trace = Callable[[Node, Node, int, object], None]


def _floating(n: Node) -> bool:
    return n.dtype.kind == "f"


def _seed(cost: Node) -> Node:
    if cost.shape == ():
        return lift(np.ones((), cost.dtype))
    return symbolic.ones_like(cost)


def shapes_agree(a: tuple, b: tuple) -> bool:
    """Whether shapes ``a`` and ``b`` can be the same: equal rank, and equal sizes where both are known."""
    return len(a) == len(b) and all(i is None or j is None or i == j for i, j in zip(a, b))


def _check_known(known_grads: dict | None) -> None:
    for k, v in (known_grads or {}).items():
        if not isinstance(k, Node) or not isinstance(v, Node):
            raise GradError("grad: known_grads must map graph nodes to graph nodes (use const() for arrays)")
        if not shapes_agree(k.shape, v.shape):
            raise GradError(f"grad: the known gradient {v!r} for {k!r} (made at {k.site}) "
                            f"does not have its shape")


def _roots(cost: Node, known_grads: dict | None) -> list[Node]:
    return [cost] + [k for k in (known_grads or {}) if k is not cost]


def build_grad(cost: Node, wrt: Sequence[Node], known_grads: dict | None = None,
               consider_constant: Iterable[Node] = (), ns=symbolic,
               trace: Trace | None = None) -> dict[int, Node]:
    """Fill the grad_table (node id -> cotangent node) for the pruned graph.

    Algorithm 6.6's ``build_grad(V)``: for each consumer C of V, take
    ``grad_table[C]`` and C's VJP rule for the input slot(s) where V appears;
    the sum of these terms is ``grad_table[V]``. Visiting nodes in reverse
    topological order means every consumer is done first, which is the memo
    the book's recursion relies on. ``trace(V, C, i, term)`` sees each term.
    The graph is differentiated exactly as given (``grad`` stabilises it first).
    """
    _check_known(known_grads)
    return _sweep(toposort(_roots(cost, known_grads)), cost, wrt, known_grads, consider_constant, ns, trace)


def _sweep(order: list[Node], cost: Node, wrt: Sequence[Node], known_grads: dict | None,
           consider_constant: Iterable[Node], ns, trace: Trace | None) -> dict[int, Node]:
    """``build_grad`` over ``order``, the toposort of the cost and the known gradients' nodes.

    The sweep itself is :func:`common.backward.sweep`, the one that also builds
    the bodies of reverse loops: a loop's derivative is made the same way.
    """
    known = {id(k): v for k, v in (known_grads or {}).items()}
    wrt_ids = {id(w) for w in wrt}
    blocked = {id(c) for c in consider_constant} - wrt_ids
    seeds = {k: [v] for k, v in known.items()}
    if id(cost) not in known:
        seeds[id(cost)] = [_seed(cost)]
    with pinned_site(user_site()):  # every node made here is made for the same user line
        return sweep(order, seeds, wrt_ids, ns, blocked, known, trace)


def _stable_table(cost: Node, ws: list[Node], known_grads: dict | None, consider_constant: Iterable[Node],
                  stable: bool, trace: Trace | None) -> tuple[dict[int, Node], list[Node]]:
    """The grad_table of the cost's forward graph in stable forms, and the ``wrt`` nodes as it knows them.

    Differentiating ``log(softmax(x))`` as written gives ``g / softmax(x) * ...``,
    inf times 0 where softmax underflows, even though ``optimize`` makes the
    value finite. Rewriting the forward graph first (a new graph: the user's
    nodes are untouched) means every derivative comes from a stable op's own
    VJP, and ``optimize`` later merges the rewritten forward with its own.
    """
    _check_known(known_grads)
    roots = _roots(cost, known_grads)
    order = toposort(roots)
    consider = list(consider_constant)
    memo = None
    if stable:
        keep = [*ws, *consider, *(k for k in (known_grads or {}) if k is not cost)]
        with pinned_site(user_site()):
            inner = stable_bodies(order)  # loops whose bodies hold unstable forms, rebuilt
            if inner:
                roots = [inner.get(id(r), r) for r in roots]
                order = toposort(roots)
            outer = stabilize(roots, order, keep)
        memo = _composed(inner, outer)
    if memo is None:
        return _sweep(order, cost, ws, known_grads, consider, symbolic, trace), ws

    def new(n: Node) -> Node:
        return memo.get(id(n), n)

    cost = new(cost)
    known = {new(k): v for k, v in (known_grads or {}).items()}
    ws = [new(w) for w in ws]
    order = toposort(_roots(cost, known))
    return _sweep(order, cost, ws, known, [new(c) for c in consider], symbolic, trace), ws


def _composed(first: dict[int, Node], then: dict[int, Node] | None) -> dict[int, Node] | None:
    """Old id -> newest node, through ``first`` and then ``then`` (either may be empty); None if both are."""
    if not first:
        return then
    out = {k: (then or {}).get(id(n), n) for k, n in first.items()}
    for k, n in (then or {}).items():
        out.setdefault(k, n)
    return out


def stable_bodies(order: list[Node]) -> dict[int, Node]:
    """Old id -> new node for the loop nodes of ``order`` whose bodies hold unstable forms, rebuilt with
    stable bodies (nested bodies first), and for the nodes above them.

    A loop's derivative is the derivative of its body, so the body must be in
    stable forms too (``log(softmax(h))`` inside a scan). Empty when no body
    has anything to rewrite: then nothing is rebuilt.
    """
    stable: dict[int, Body] = {}
    for body in _bodies_inside_out(order):
        inputs = list(body.inputs)
        outs = list(body.outputs)
        memo = _with_bodies(toposort([*outs, *inputs]), stable)
        outs = [memo.get(id(o), o) for o in outs]
        rewritten = stabilize(outs, toposort([*outs, *inputs]), inputs)
        if rewritten:
            outs = [rewritten.get(id(o), o) for o in outs]
        if any(a is not b for a, b in zip(outs, body.outputs)):
            stable[id(body)] = Body(inputs, outs)
    return _with_bodies(order, stable)


def _bodies_inside_out(order: list[Node]) -> list[Body]:
    """Every body the nodes of ``order`` hold, at any depth, each after the bodies nested in it."""
    out: list[Body] = []
    seen: set[int] = set()
    stack = [(b, False) for n in order if n.params and n.op.kind is Kind.CONTROL for _, b in bodies_of(n)]
    while stack:
        body, expanded = stack.pop()
        if expanded:
            out.append(body)
            continue
        if id(body) in seen:
            continue
        seen.add(id(body))
        stack.append((body, True))
        stack.extend((b, False) for n in toposort([*body.outputs, *body.inputs]) for _, b in bodies_of(n)
                     if id(b) not in seen)
    return out


def _with_bodies(order: list[Node], stable: dict[int, Body]) -> dict[int, Node]:
    """Old id -> new node: the loop nodes of ``order`` with their bodies swapped for ``stable``'s, and
    the nodes above them rebuilt."""
    memo: dict[int, Node] = {}
    if not stable:
        return memo
    for n in order:
        if n.op is None:
            continue
        inputs = tuple([memo.get(id(i), i) for i in n.inputs])
        params = n.params
        if any(isinstance(v, Body) and id(v) in stable for v in params.values()):
            params = {k: stable.get(id(v), v) if isinstance(v, Body) else v for k, v in params.items()}
        if params is not n.params or any(a is not b for a, b in zip(inputs, n.inputs)):
            memo[id(n)] = apply(n.op, inputs, params, site=n.site, name=n.name)
    return memo


def _name(cost: Node, w: Node) -> str | None:
    if not w.name:
        return None
    return f"d({cost.name or 'cost'})/d({w.name})"


def grad(cost: Node, wrt, known_grads: dict | None = None, consider_constant: Iterable[Node] = (),
         disconnected: str = "raise", trace: Trace | None = None, stable: bool = True):
    """Gradient nodes of ``cost`` with respect to ``wrt``: a node, or a pytree of nodes (a list, a dict of
    parameters, a namedtuple), the gradients then in the same structure.

    ``cost`` is seeded with ones (a non-scalar cost thus gives the gradient of
    its sum); ``known_grads`` maps nodes to given cotangents (TensorFlow's
    ``grad_ys``): each replaces whatever would flow into that node (for
    ``cost``, the seed). Nodes in ``consider_constant`` and ``stop_gradient(x)`` pass no
    gradient on. An input the cost does not depend on is an error naming it
    (``disconnected="raise"``), zeros (``"zero"``) or ``None`` (``"none"``).

    With ``stable`` (the default) the cost's forward graph is first rewritten
    to its numerically stable forms (:func:`symsym.rewrite.stability.stabilize`:
    ``log(softmax(x))`` -> ``log_softmax(x)``, ...), so the gradient is finite
    wherever the optimised value is; ``stable=False`` differentiates the graph
    exactly as written.
    """
    single = isinstance(wrt, Node)
    if not single and not isinstance(wrt, (list, tuple, dict)) and hasattr(wrt, "__iter__"):
        wrt = list(wrt)  # a generator or a view of a dict's values: the nodes it gives, in a list
    ws, structure = ([wrt], None) if single else node_leaves(wrt, "grad", "wrt")
    if disconnected not in ("raise", "zero", "none"):
        raise GradError(f"grad: disconnected must be 'raise', 'zero' or 'none', got {disconnected!r}")
    if not isinstance(cost, Node):
        raise GradError(f"grad: cost must be a graph node, got {type(cost).__name__}")
    for w in ws:
        if not isinstance(w, Node):
            raise GradError(f"grad: wrt must be graph nodes, got {type(w).__name__}")
        if not _floating(w):
            raise GradError(f"grad: cannot differentiate with respect to {w!r} of dtype {w.dtype} "
                            f"(only floating inputs get gradients; made at {w.site})")
    with paused_gc():
        table, seen = _stable_table(cost, ws, known_grads, consider_constant, stable, trace)
    out = []
    for w, s in zip(ws, seen):
        g = table.get(id(s), DISCONNECTED)
        if g is DISCONNECTED:
            if disconnected == "raise":
                raise GradError(
                    f"grad: {w!r} (made at {w.site}) is disconnected from the cost {cost!r}: no "
                    "differentiable path leads from it to the cost; pass disconnected='zero' or "
                    "'none' to allow this")
            g = symbolic.zeros_like(w) if disconnected == "zero" else None
        elif g.op is not None and not g.name and w.name:
            g = g.renamed(_name(cost, w))
        out.append(g)
    return out[0] if single else tree_unflatten(structure, out)
