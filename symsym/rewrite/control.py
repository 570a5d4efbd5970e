"""Rewrites of loops and branches: their bodies optimised, invariants hoisted, dead carries dropped.

A loop node (:mod:`common.control`) is one node to the other passes: its
bodies sit in its params, where no traversal looks. This module opens them.

* :func:`open_bodies` (before the local rules run on the outer graph): each
  body is rewritten by the same passes as the graph around it (CSE, folding,
  algebra, stability, nested loops), and the nodes of a ``scan`` or
  ``while_loop`` body that depend only on its loop-invariant inputs (the
  closed-over non-sequences and constants, never a carry or a slice) move out
  of the loop: each becomes an outer node, fed back in as a new explicit input,
  so it is computed once instead of once per step (a ``cond``'s branches keep
  theirs: only the taken branch may run). The outer passes then merge the
  hoisted nodes with equal ones outside (the ``W.T`` of a forward body and of
  its reverse body become one node).
* :func:`prune` (after them): what the outer graph does not read is removed.
  A loop's output nobody reads is dropped from its body; a carry whose final
  value nobody reads and that no live output depends on inside the body
  (through any number of steps) is dropped with its input; so are sequences
  and invariant inputs the remaining body no longer reaches; a scan that
  stacks its carry-ins for a reverse loop stops stacking them when nothing
  reads the stack. And when a graph holds both a loop and its saving copy
  (``grad`` makes one for the reverse loop: the same op, inputs and params
  but ``save=True``), the plain one's outputs are read off the saving one, so
  the forward loop runs once.

Every pass here is iterative over the outer graph; bodies are opened one
level per call of ``optimize`` on the body (nesting depth, never graph size,
bounds the recursion).
"""

from __future__ import annotations

from collections.abc import Callable

from common.api import apply
from common.body import Body, inner_nodes, is_tuple
from common.control.item_op import picked
from common.graph import Node, rebuild, replace, toposort, variable
from common.ops import Kind

from .residuals import loop_key, save_residuals
from .rules import merge_key, remake

__all__ = ["has_loops", "open_bodies", "prune"]

CONTROL = Kind.CONTROL


def has_loops(order: list[Node]) -> bool:
    """Whether any node of ``order`` is a loop or a branch (the passes here have work)."""
    for n in order:
        op = n.op
        if op is not None and op.kind is CONTROL:
            return True
    return False


def _is_loop(n: Node) -> bool:
    """Whether ``n`` runs bodies (a loop or a branch: its value is a tuple that ``item`` nodes read)."""
    return n.op is not None and n.op.outputs is not None


def _picks(n: Node) -> bool:
    return n.op is not None and n.op.picks


# ------------------------------------------------------------------ bodies and hoisting

def open_bodies(outs: list[Node], optimize_body: Callable[[Body], Body], counts: dict,
                hoist: bool = True) -> list[Node]:
    """``outs`` with every loop's bodies optimised by ``optimize_body`` and (with ``hoist``) its invariants
    hoisted."""
    outs = _share_primals(outs, counts)
    if hoist:
        outs = save_residuals(outs, counts)
    memo: dict[int, tuple] = {}

    def fn(node: Node, inputs: tuple) -> Node:
        if not _is_loop(node):
            return _remade(node, inputs)
        params = dict(node.params)
        for key in _body_params(params):
            body = params[key]
            hit = memo.get(id(body))
            if hit is None:
                hit = memo[id(body)] = (body, optimize_body(body))
            params[key] = hit[1]
        if hoist and node.op.invariant_from is not None:
            inputs, params = _hoisted(node.op.invariant_from(params), inputs, params, counts)
        if all(params[k] is node.params[k] for k in params) and len(inputs) == len(node.inputs) and \
                all(a is b for a, b in zip(inputs, node.inputs)):
            return node
        return apply(node.op, inputs, params, site=node.site)

    return rebuild(outs, fn)


def _body_params(params: dict) -> list[str]:
    """The names of the params that hold bodies."""
    return [k for k, v in params.items() if isinstance(v, Body)]


def _remade(node: Node, inputs: tuple) -> Node:
    if all(a is b for a, b in zip(inputs, node.inputs)):
        return node
    return remake(node, inputs)


def _invariant_frontier(body: Body, first: int) -> list[Node]:
    """The nodes of ``body`` worth computing outside the loop: those that depend on the invariant
    inputs (``body.inputs[first:]``) and nothing else variable, and that some variant node or an
    output reads. Constant-only nodes stay in (the rewrites fold them, and they cost no input)."""
    invariant = {id(v) for v in body.inputs[first:]}
    formal = {id(v) for v in body.inputs}
    movable: set[int] = set()
    order = inner_nodes(body.outputs, formal)
    for n in order:
        if n.op is None or is_tuple(n) or n.op.kind is CONTROL:
            continue
        if all(id(i) in movable or id(i) in invariant or i.is_const for i in n.inputs) and \
                any(id(i) in movable or id(i) in invariant for i in n.inputs):
            movable.add(id(n))
    if not movable:
        return []
    read: set[int] = {id(o) for o in body.outputs}
    for n in order:
        if id(n) not in movable:
            read.update(id(i) for i in n.inputs)
    return [n for n in order if id(n) in movable and id(n) in read]


def _hoisted(first: int, inputs: tuple, params: dict, counts: dict) -> tuple[tuple, dict]:
    """A loop's inputs and params with its invariant computations (on inputs ``first:``, the op's
    ``invariant_from``) moved outside."""
    keys = _body_params(params)
    frontier: list[Node] = []
    seen: set[int] = set()
    for key in keys:
        for n in _invariant_frontier(params[key], first):
            if id(n) not in seen:
                seen.add(id(n))
                frontier.append(n)
    if not frontier:
        return inputs, params
    outer = replace(frontier, {v: x for key in keys for v, x in zip(params[key].inputs[first:], inputs[first:])})
    stand_ins = [variable(n.name or f"hoisted{k}", n.shape, n.dtype) for k, n in enumerate(frontier)]
    swap = dict(zip(frontier, stand_ins))
    params = dict(params)
    for key in keys:
        body = params[key]
        params[key] = Body([*body.inputs, *stand_ins], replace(list(body.outputs), swap))
    counts["loops"] = counts.get("loops", 0) + len(frontier)
    return (*inputs, *outer), params


# ------------------------------------------------------------------ dead outputs, carries, inputs

def prune(outs: list[Node], counts: dict) -> list[Node]:
    """``outs`` with each loop reduced to what is read of it, and saving twins shared (see the module)."""
    order = toposort(outs)
    outs = _share_twins(outs, order, counts)
    order = toposort(outs)
    used = _used_outputs(order, outs)
    new_loop: dict[int, tuple[Node, dict]] = {}

    def fn(node: Node, inputs: tuple) -> Node:
        if node.op is None:
            return node
        if _picks(node):
            t = node.inputs[0]
            hit = new_loop.get(id(t))
            if hit is not None:
                return picked(hit[0], hit[1][node.params["index"]], node.site)
            return _remade(node, inputs)
        if _is_loop(node) and id(node) in used:
            pruned = _prune(node, inputs, used[id(node)])
            if pruned is not None:
                counts["loops"] = counts.get("loops", 0) + 1
                new_loop[id(node)] = pruned
                return pruned[0]
        return _remade(node, inputs)

    return rebuild(outs, fn)


def _share_primals(outs: list[Node], counts: dict) -> list[Node]:
    """Each loop whose tangent loop (made by its JVP rule) is in the graph read off that tangent loop.

    A tangent loop names its primal in its ``primal`` param (see
    :func:`common.control.checks.primal_param`). This runs first among the
    loop rewrites, and drops every ``primal`` param as it goes: the rewrites
    after it change loops' inputs and outputs, which the record would no
    longer describe.
    """
    order = toposort(outs)
    tangent: dict = {}
    recorded = False
    for n in order:
        if _is_loop(n) and n.params.get("primal") is not None:
            recorded = True
            pairs, positions, outputs = n.params["primal"]
            key = loop_key(n.op.name, [n.inputs[i] for i in positions], dict(pairs))
            tangent.setdefault(key, (n, dict(outputs)))
    if not recorded:
        return outs
    redirect: dict[int, tuple] = {}
    for n in order:
        if _is_loop(n):
            hit = tangent.get(loop_key(n.op.name, n.inputs, n.params))
            if hit is not None and hit[0] is not n and (not n.params.get("save") or hit[0].params.get("save")):
                redirect[id(n)] = hit
    if redirect:
        counts["loops"] = counts.get("loops", 0) + len(redirect)

        def read_off(node: Node, inputs: tuple) -> Node:
            if _picks(node) and id(node.inputs[0]) in redirect:
                loop, outputs = redirect[id(node.inputs[0])]
                return picked(loop, outputs[node.params["index"]], node.site)
            return _remade(node, inputs)

        outs = rebuild(outs, read_off)

    def unrecorded(node: Node, inputs: tuple) -> Node:
        if _is_loop(node) and "primal" in node.params:
            params = {k: v for k, v in node.params.items() if k != "primal"}
            return apply(node.op, inputs, params, site=node.site)
        return _remade(node, inputs)

    return rebuild(outs, unrecorded)


def _twin_key(n: Node, shapes: _Shapes):
    """What a loop computes, its bodies' outputs aside: op, inputs (by identity), other params, and the
    structure of every body but the one whose outputs a saving twin may extend."""
    items = tuple(sorted((k, shapes.of(v) if isinstance(v, Body) else v) for k, v in n.params.items()
                         if k not in ("save", "body")))
    return (n.op.name, tuple(map(id, n.inputs)), items)


class _Shapes:
    """A small int per distinct computation, for comparing bodies structurally (hash-consing, iterative:
    each node's key holds its inputs' ints, never their keys, so a long body makes no deep tuple).

    ``grad`` differentiates a loop whose body it rewrote to stable forms, and
    ``optimize`` rewrites the user's own loop body to the same forms: two
    bodies, one computation."""

    def __init__(self):
        self.ints: dict = {}
        self.outs: dict[int, tuple] = {}

    def _int(self, key) -> int:
        try:
            return self.ints.setdefault(key, len(self.ints))
        except TypeError:  # an unhashable param: this node equals only itself
            return self.ints.setdefault(("node", id(key)), len(self.ints))

    def outputs(self, body: Body) -> tuple:
        """One int per output of ``body``, equal for equal computations of equal inputs."""
        hit = self.outs.get(id(body))
        if hit is None:
            keys = {id(v): self._int(("input", k, v.shape, v.dtype.str)) for k, v in enumerate(body.inputs)}
            for n in inner_nodes(body.outputs, set(keys)):
                if id(n) in keys:
                    continue
                if n.op is None:
                    keys[id(n)] = self._int(merge_key(n) or ("node", id(n)))
                    continue
                params = tuple(sorted((k, ("body", self.of(v)) if isinstance(v, Body) else v)
                                      for k, v in n.params.items()))
                keys[id(n)] = self._int((n.op.name, params, tuple([keys[id(i)] for i in n.inputs])))
            hit = self.outs[id(body)] = (len(body.inputs), *[keys[id(o)] for o in body.outputs])
        return hit

    def of(self, body: Body) -> int:
        return self._int(("body", self.outputs(body)))


def _share_twins(outs: list[Node], order: list[Node], counts: dict) -> list[Node]:
    """Each plain loop that has a saving twin in the graph replaced by that twin.

    The twin's outputs start with the plain loop's: the same carries and ys
    (a scan that stacks residuals for its reverse loop has more ys after
    them), then the stacked carry-ins.
    """
    shapes = _Shapes()
    saving: dict = {}
    for n in order:
        if n.op is not None and n.op.saving is not None and n.params.get("save"):
            saving.setdefault(_twin_key(n, shapes), []).append(n)
    if not saving:
        return outs
    mapping = {}
    for n in order:
        if n.op is not None and n.op.saving is not None and not n.params.get("save"):
            mine = shapes.outputs(n.params["body"])
            for twin in saving.get(_twin_key(n, shapes), ()):
                if shapes.outputs(twin.params["body"])[:len(mine)] == mine:
                    mapping[n] = twin
                    break
    if not mapping:
        return outs
    counts["loops"] = counts.get("loops", 0) + len(mapping)
    return replace(outs, mapping)


def _used_outputs(order: list[Node], outs: list[Node]) -> dict[int, set | None]:
    """For each loop node, the indices of its outputs that ``item`` nodes read (None: all, read otherwise)."""
    used: dict[int, set | None] = {}
    for n in order:
        if _is_loop(n):
            used.setdefault(id(n), set())
        for i in n.inputs:
            if is_tuple(i) and id(i) in used:
                if n.op.picks and used[id(i)] is not None:
                    used[id(i)].add(n.params["index"])
                else:
                    used[id(i)] = None
    for o in outs:
        if id(o) in used:
            used[id(o)] = None
    return used


def _prune(node: Node, inputs: tuple, used: set | None):
    """(new node, old output index -> new) when some of ``node`` is dead, else None (the op's ``prune``)."""
    if used is None or node.op.prune is None:
        return None
    return node.op.prune(node, inputs, used)
