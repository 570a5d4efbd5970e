"""What every rewrite pass shares: the driver of local rules, rebuilding a node cheaply, reading constants.

A pass is a *rule* ``rule(node) -> Node | None``: given a node whose inputs
are already rewritten, return a replacement or ``None`` to keep it.
:func:`run_rules` drives any list of rules through one bottom-up rebuild, so
a rule sees inputs that are already in their final form and a single traversal
reaches the fixed point of local rewrites.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from common.graph import Node, apply_like, made, toposort
from common.site import pinned_site, user_site

Rule = Callable[[Node], "Node | None"]


def remake(node: Node, inputs: tuple) -> Node:
    """``node`` over ``inputs``; the original itself when nothing changed.

    When the new inputs have the old shapes and dtypes, the type rule would
    give the same answer, so the node is built directly (the hot path of
    every pass) instead of re-running inference.
    """
    old = node.inputs
    for a, b in zip(inputs, old):  # plain loops: this runs for every node of every pass
        if a is not b:
            break
    else:
        return node
    for a, b in zip(inputs, old):
        if a.shape != b.shape or a.dtype != b.dtype:
            return apply_like(node, inputs)
    return made(node.op, inputs, node.params, node.shape, node.dtype, node.name, node.site)


def same_type(a: Node, b: Node) -> bool:
    """Whether ``b`` can stand for ``a``: the same dtype and a surely equal shape."""
    return a.dtype == b.dtype and a.shape == b.shape


def constant_value(n: Node):
    """The single value ``n`` holds everywhere, if that is known statically, else None.

    Sees constants (any shape, all elements equal), and the constant-valued
    builders ``ones_like``, ``zeros_like``, ``full_like``, ``full`` and
    broadcasts of such a value.
    """
    while True:
        if n.value is not None:
            v = n.value
            if v.size == 0:
                return None
            first = v.flat[0]
            if v.size == 1 or (v.size <= 4096 and bool(np.all(v == first))):
                return first
            return None
        op = n.op
        if op is None:
            return None
        name = op.name
        if name == "ones_like":
            return 1
        if name == "zeros_like":
            return 0
        if name in ("full_like", "full"):
            return n.params["value"]
        if name in ("broadcast_to", "broadcast_like", "cast"):
            n = n.inputs[0]
            continue
        return None


def is_value(n: Node, v) -> bool:
    s = constant_value(n)
    return s is not None and s == v


_SMALL = 64  # constants up to this many elements are compared by value


def merge_key(n: Node):
    """A hashable identity for what ``n`` computes, or None to never merge it."""
    op = n.op
    if op is None:
        v = n.value
        if v is None or v.size > _SMALL:
            return None
        return ("const", v.dtype.str, v.shape, v.tobytes())
    params = n.params
    if not params:
        return (op, (), tuple(map(id, n.inputs)))  # hashable: no need to try
    key = (op, tuple(params.items()), tuple(map(id, n.inputs)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def run_rules(outputs: Sequence[Node], rules: Sequence[tuple[str, Rule]], merge: bool = True,
              counts: dict[str, int] | None = None, order: list[Node] | None = None,
              opaque: set[int] | None = None, memo: dict[int, Node] | None = None) -> list[Node]:
    """One bottom-up rebuild applying ``rules`` at every node until none fires.

    With ``merge``, each finished node is then hash-consed (:func:`merge_key`),
    so equal subgraphs become one node. Each rule sees inputs that are already
    final, so local rewrites reach their fixed point in this single traversal.
    ``counts`` (pass name -> how many times it fired) is updated in place;
    ``order``, if given, is ``toposort(outputs)``.

    ``opaque`` (ids of nodes someone holds on to, such as ``grad``'s ``wrt``)
    are rebuilt over their new inputs but never rewritten; the id of each one's
    rebuilt form is added to the set, so a rule that looks into its inputs can
    leave them whole. ``memo``, if given, is filled with old id -> new node.
    """
    counts = {} if counts is None else counts
    new: dict[int, Node] = {} if memo is None else memo
    table: dict = {}
    outs = list(outputs)
    with pinned_site(user_site()):  # nodes a rule builds are made for the same user line
        for node in order if order is not None else toposort(outs):
            if node.op is None:
                cur = node
            else:
                cur = remake(node, tuple([new[id(i)] for i in node.inputs]))
                for _ in range(0 if opaque is not None and id(node) in opaque else 16):
                    if cur.op is None:
                        break
                    for name, rule in rules:
                        rep = rule(cur)
                        if rep is not None and rep is not cur:
                            counts[name] = counts.get(name, 0) + 1
                            cur = rep
                            break
                    else:
                        break
            if merge:
                key = merge_key(cur)
                if key is not None:
                    other = table.setdefault(key, cur)  # one hash of the key, not two
                    if other is not cur:
                        counts["merge"] = counts.get("merge", 0) + 1
                        cur = other
            new[id(node)] = cur
            if opaque is not None and id(node) in opaque:
                opaque.add(id(cur))
    return [new[id(o)] for o in outs]
