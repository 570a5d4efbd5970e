"""The backward sweep: Kahn's algorithm over the tape, each op's VJP rules on numbers.

Given output tensors and their cotangents, the sweep

1. finds the tape nodes that lead from the outputs to what is asked for and
   counts, for each node, how many of those nodes consume it (its pending
   dependencies); with requested ``inputs`` (:func:`grad`) it first prunes
   the nodes that cannot reach any of them;
2. pops nodes whose consumers are all done, so each node's gradient is
   complete (fan-out summed) before its VJP rules run, and hands each
   parent its cotangent;
3. frees every node's saved values as soon as its rules have run, unless
   ``retain_graph``.

Everything is a loop over explicit stacks: a chain of 10^6 ops is fine. With
``create_graph`` the rules run in the tape namespace on tensors, so the
gradients come out with their own history (gradients of gradients).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from common.errors import GradError
from common.ops import NO_GRAD, numeric

from .batched import Batched, same_scale
from .mode import MODE
from .tape import TapeNode, tape
from .tensor import Tensor

_stamps = itertools.count(1)

_FREED = ("cannot backward through the graph a second time: the values saved by {op} were freed "
          "by the previous backward. Pass retain_graph=True to the first backward (or grad) call "
          "to keep them.")


def backward(tensors: Sequence[Tensor], grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf they reach."""
    seeds = _seeds(tensors, grad_tensors, create_graph)
    sweep(tensors, seeds, None, create_graph if retain_graph is None else retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False) -> tuple:
    """d(outputs)/d(inputs), contracted with ``grad_outputs``, as a tuple of Tensors.

    Unlike :func:`backward` nothing is accumulated into ``.grad``; only the
    part of the tape between the outputs and ``inputs`` is swept. An input the
    outputs do not depend on is an error unless ``allow_unused`` (then None).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if isinstance(grad_outputs, Tensor) or (grad_outputs is not None and not isinstance(grad_outputs,
                                                                                         (list, tuple))):
        grad_outputs = [grad_outputs]
    for k, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise GradError(f"grad: input {k} does not require grad, so it has no gradient")
    seeds = _seeds(outputs, grad_outputs, create_graph)
    found = sweep(outputs, seeds, inputs, create_graph if retain_graph is None else retain_graph,
                  create_graph)
    results = []
    for k, g in enumerate(found):
        if g is None:
            if not allow_unused:
                raise GradError(f"grad: input {k} (shape {inputs[k].shape}) was not used to compute the "
                                "outputs; pass allow_unused=True to get None for it")
            results.append(None)
        else:
            results.append(g if isinstance(g, Tensor) else Tensor(g))
    return tuple(results)


def _seeds(outputs, grad_outputs, create_graph: bool) -> list:
    """The cotangent of each output: given, or 1 for a single-element output."""
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise GradError(f"got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs")
    seeds = []
    for k, y in enumerate(outputs):
        if not isinstance(y, Tensor):
            raise GradError(f"output {k} is a {type(y).__name__}, not a Tensor")
        if not y.requires_grad:
            raise GradError(f"output {k} does not require grad and has no grad_fn: nothing it depends on "
                            "requires grad (or it was computed under no_grad)")
        g = None if grad_outputs is None else grad_outputs[k]
        if g is None:
            if y.size != 1:
                raise GradError(f"grad can be implicitly created only for single-element outputs; output "
                                f"{k} has shape {y.shape}: pass gradient= (or grad_outputs=) of that shape")
            g = np.ones_like(y.data)
        elif isinstance(g, Tensor):
            g = g if create_graph else g.data
        else:
            g = np.array(g, dtype=y.dtype)  # a copy: the sweep may hand it to a leaf's .grad
        if g.shape != y.shape:
            raise GradError(f"gradient for output {k} has shape {g.shape}, expected {y.shape}")
        seeds.append(Tensor(g) if create_graph and not isinstance(g, Tensor) else g)
    return seeds


def sweep(outputs, seeds, inputs, retain_graph: bool, create_graph: bool, prune: bool = True,
          ns=None) -> list | None:
    """The engine behind :func:`backward` (``inputs is None``) and :func:`grad`.

    With ``inputs`` given, returns their gradients (None where none flowed)
    and touches no ``.grad``; otherwise accumulates into leaves and returns None.
    ``prune=False`` skips the pruning pass when the caller knows every node
    leads to an input (a tape recorded only downstream of them). ``ns`` is
    the namespace the rules run in: by default the tape with
    ``create_graph``, else numbers (:data:`symnum.batched.batched` sweeps a
    batch of cotangents at once).
    """
    leaf_acc: dict[int, list] = {}  # id(leaf) -> [leaf, gradient so far]
    roots = []
    root_seeds = []
    for y, g in zip(outputs, seeds):
        if y.grad_fn is None:
            _add_leaf(leaf_acc, y, g)
        else:
            roots.append(y.grad_fn)
            root_seeds.append(g)

    stamp = next(_stamps)
    if inputs is None:
        targets = None
        _count(roots, stamp)
    else:
        targets = {}
        for k, x in enumerate(inputs):
            targets.setdefault(id(x.grad_fn or x), []).append(k)
        if prune:
            _count_pruned(roots, stamp, targets)
        else:
            _count(roots, stamp)

    ready = []
    for node, g in zip(roots, root_seeds):
        if node._deps < 0:
            continue
        node._g = g if node._g is None else node._g + g
        if node._deps == 0 and node not in ready:
            ready.append(node)
    found = [None] * len(inputs) if inputs is not None else None
    prev = MODE.enabled
    MODE.enabled = create_graph
    try:
        _run(ready, leaf_acc, targets, found, retain_graph, create_graph,
             ns or (tape if create_graph else numeric))
    finally:
        MODE.enabled = prev

    for key, (leaf, g) in leaf_acc.items():
        if leaf.hooks:
            g = _run_hooks(leaf.hooks, g, create_graph)
        if targets is None:
            leaf.grad = accumulate(leaf.grad, g)
        else:
            for k in targets.get(key, ()):
                found[k] = g
    return found


def _count(roots, stamp) -> None:
    """Give every node reachable from ``roots`` its number of consumers among them."""
    stack = []
    for n in roots:
        if n._mark != stamp:
            n._mark, n._deps, n._g = stamp, 0, None
            stack.append(n)
    pop, push = stack.pop, stack.append
    while stack:
        for p in pop().parents:
            if p.__class__ is TapeNode:
                if p._mark != stamp:
                    p._mark, p._deps, p._g = stamp, 1, None
                    push(p)
                else:
                    p._deps += 1


def _count_pruned(roots, stamp, targets) -> None:
    """Like :func:`_count`, over only the nodes that lead to a target; the rest get ``_deps = -1``."""
    order = []
    stack = [(n, False) for n in roots]
    while stack:  # iterative post-order: a node is placed after all of its parents
        n, expanded = stack.pop()
        if expanded:
            order.append(n)
        elif n._mark != stamp:
            n._mark = stamp
            stack.append((n, True))
            for p in n.parents:
                if p.__class__ is TapeNode and p._mark != stamp:
                    stack.append((p, False))
    for n in order:  # parents before consumers
        lead = id(n) in targets
        if not lead:
            for p in n.parents:
                if p is not None and (id(p) in targets if p.__class__ is not TapeNode else p._deps >= 0):
                    lead = True
                    break
        n._deps, n._g = (0 if lead else -1), None
    for n in order:
        if n._deps >= 0:
            for p in n.parents:
                if p.__class__ is TapeNode and p._deps >= 0:
                    p._deps += 1


def _run(ready, leaf_acc, targets, found, retain_graph, create_graph, ns) -> None:
    """Pop nodes whose gradient is complete and push it through their VJP rules.

    The hot loop of define-by-run: a rule is called directly (what
    ``Op.vjp`` does, minus a call), and only for parents that take a gradient.
    """
    pruned = targets is not None
    owned: set[int] = set()  # nodes and leaves whose gradient so far is a sum made here
    pop, push = ready.pop, ready.append
    while ready:
        node = pop()
        g = node._g
        node._g = None
        args = node.args
        if args is None:
            raise GradError(_FREED.format(op=node.op.name))
        if g is not None:
            if node.hooks is not None:
                g = _run_hooks(node.hooks, g, create_graph)
            if pruned:
                for k in targets.get(id(node), ()):
                    found[k] = g
            op, params, out = node.op, node.params, node.out
            rules, rule_n = op.vjps, op.vjp_n
            if create_graph:
                args, out = _as_tensors(node), Tensor(out, True, node)
        for i, p in enumerate(node.parents):
            if p is None:
                continue
            node_parent = p.__class__ is TapeNode
            if node_parent and p._deps < 0 or not node_parent and pruned and id(p) not in targets:
                continue
            if g is not None:
                if rule_n is not None:
                    gi = rule_n(ns, i, g, out, *args, **params)
                elif params:
                    gi = rules[i](ns, g, out, *args, **params)
                else:
                    gi = rules[i](ns, g, out, *args)
                if gi is not NO_GRAD:
                    if not node_parent:
                        _add_leaf(leaf_acc, p, gi, owned)
                    elif p._g is None:
                        p._g = gi
                    else:
                        p._g = add_owned(owned, id(p), p._g, gi)
            if node_parent:
                p._deps -= 1
                if p._deps == 0:
                    push(p)
        if not retain_graph:
            node.args = node.out = None


def _add_leaf(acc, leaf, g, owned=None) -> None:
    entry = acc.get(id(leaf))
    if entry is None:
        acc[id(leaf)] = [leaf, g]
    else:
        entry[1] = entry[1] + g if owned is None else add_owned(owned, id(leaf), entry[1], g)


def add_owned(owned: set, key: int, old, g):
    """``old + g`` for fan-out, written into ``old`` when this sweep made ``old`` by such a sum.

    Nothing else can see such an array (a rule's result may alias its
    cotangent or a saved value, a sum never does), so adding in place is safe
    and spares an allocation per fan-out, which on big cotangents is most of
    an add's cost. Tensors (``create_graph``) are never written in place.
    """
    if key in owned:
        a, b = old, g
        if old.__class__ is Batched and g.__class__ is Batched and same_scale(old, g):
            a, b = old.value, g.value
        if a.__class__ is np.ndarray and b.__class__ is np.ndarray and a.shape == b.shape and a.dtype == b.dtype:
            np.add(a, b, out=a)
            return old
    new = old + g
    if new.__class__ is np.ndarray or new.__class__ is Batched:
        owned.add(key)
    return new


def _as_tensors(node) -> tuple:
    """The node's inputs as tensors carrying their history, for rules run with create_graph."""
    out = []
    for a, p in zip(node.args, node.parents):
        if p is None:
            out.append(a)
        elif p.__class__ is TapeNode:
            out.append(Tensor(a, True, p))
        else:
            out.append(p)
    return tuple(out)


def _run_hooks(hooks, g, create_graph):
    t = g if isinstance(g, Tensor) else Tensor(g)
    for fn in list(hooks):
        r = fn(t)
        if r is not None:
            t = r if isinstance(r, Tensor) else Tensor(np.asarray(r))
    return t if create_graph else t.data


def accumulate(old: Tensor | None, g) -> Tensor:
    """``old + g`` as a new Tensor (``.grad`` accumulation).

    Numbers are copied when first stored: rules pass cotangents on unchanged
    or as read-only broadcast views, and two ``.grad`` must never share memory.
    A ``g`` with history (``create_graph``) is added on the tape instead.
    """
    if isinstance(g, Tensor):
        if g.requires_grad:
            return g if old is None else old + g
        g = g.data
    if old is None:
        return Tensor(np.array(g))
    return Tensor(np.asarray(old.data + g))
