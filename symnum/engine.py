"""The backward sweep: each op's VJP rules on numbers, over the tape, consumers first.

Given output tensors and their cotangents, the sweep

1. with requested ``inputs`` (:func:`grad`), leaves out the nodes that cannot
   reach any of them (known without a walk when every node depends on one
   leaf, an input: see :class:`~symnum.tape.TapeNode`);
2. takes the waiting node of highest *level* (recorded with each node: its
   consumers are all higher), so each node's gradient is complete (fan-out
   summed) before its VJP rules run, and hands each parent its cotangent;
3. frees every node's saved values as soon as its rules have run, unless
   ``retain_graph``.

Nothing is counted beforehand and everything is a loop over explicit stacks
and heaps: a chain of 10^6 ops is fine. With ``create_graph`` the rules run in
the tape namespace on tensors, so the gradients come out with their own
history (gradients of gradients).
"""

from __future__ import annotations

import heapq
import operator
from collections.abc import Callable, Sequence

import numpy as np

from common.errors import GradError
from common.gcpause import paused_gc
from common.ops import NO_GRAD, numeric
from common.sentinel import Sentinel
from common.site import site_of, user_site

from .mode import MODE
from .tape import TapeNode, backward_failure, inputs_of, tape
from .tensor import ACCUMULATING, Tensor, VersionError, accumulate, wrap

_FREED = ("cannot backward through the graph a second time: the values saved by {op} were freed "
          "by the previous backward. Pass retain_graph=True to the first backward (or grad) call "
          "to keep them.")


def backward(tensors: Sequence[Tensor], grad_tensors=None, retain_graph: bool | None = None,
             create_graph: bool = False) -> None:
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf they reach."""
    tensors = _listed(tensors)
    seeds = _seeds(tensors, grad_tensors, create_graph)
    sweep(tensors, seeds, None, create_graph if retain_graph is None else retain_graph, create_graph)


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None, create_graph: bool = False,
         allow_unused: bool = False, disconnected: str | None = None) -> tuple:
    """d(outputs)/d(inputs), contracted with ``grad_outputs``, as a tuple of Tensors.

    Unlike :func:`backward` nothing is accumulated into ``.grad``; only the
    part of the tape between the outputs and ``inputs`` is swept. An input the
    outputs do not depend on is an error (``disconnected="raise"``, the
    default, as in ``symsym.grad``), gets zeros (``"zero"``) or None
    (``"none"``; PyTorch's ``allow_unused=True`` says the same). Each
    gradient has its input's dtype (a float32 input gets float32).
    """
    policy = disconnection_policy(disconnected, allow_unused, "grad")
    outputs = _listed(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if isinstance(grad_outputs, Tensor) or (grad_outputs is not None and not isinstance(grad_outputs,
                                                                                         (list, tuple))):
        grad_outputs = [grad_outputs]
    for k, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise GradError(f"grad: input {k} does not require grad, so it has no gradient (at {user_site()})")
    seeds = _seeds(outputs, grad_outputs, create_graph)
    found = sweep(outputs, seeds, inputs, create_graph if retain_graph is None else retain_graph,
                  create_graph)
    results = []
    for k, g in enumerate(found):
        x = inputs[k]
        if g is None:
            if policy == "raise":
                raise GradError(f"grad: input {k} (shape {x.shape}) was not used to compute the outputs: it is "
                                "disconnected from them; pass disconnected='zero' or 'none' (or allow_unused=True) "
                                f"to allow this (at {user_site()})")
            results.append(wrap(np.zeros(x.shape, x.dtype)) if policy == "zero" else None)
        else:
            g = as_dtype(g, x._data.dtype)
            results.append(g if g.__class__ is Tensor else wrap(g))
    return tuple(results)


DISCONNECTED = ("raise", "zero", "none")
"""What a gradient entry point does for an input the outputs do not depend on, as in ``symsym.grad``."""


def disconnection_policy(disconnected: str | None, allow_unused: bool = False, what: str = "grad") -> str:
    """The checked ``disconnected=`` choice: ``"raise"`` unless given (``allow_unused`` means ``"none"``)."""
    if disconnected is None:
        return "none" if allow_unused else "raise"
    if disconnected not in DISCONNECTED:
        raise GradError(f"{what}: disconnected must be 'raise', 'zero' or 'none', got {disconnected!r} "
                        f"(at {user_site()})")
    return disconnected


def as_dtype(g, dtype):
    """Cotangent ``g`` in its input's ``dtype``: a float32 leaf gets a float32 gradient, as in PyTorch
    (a float64 operand makes float64 cotangents upstream of it)."""
    if g.__class__ in _BATCHES or g.dtype == dtype:
        return g
    if isinstance(g, Tensor):
        return tape.cast(g, dtype) if g.requires_grad else wrap(g._data.astype(dtype))
    return g.astype(dtype)


def _listed(outputs) -> list:
    """Outputs as a list: a list or tuple of them, or one (a Tensor, or a numpy array by mistake, which must
    not be iterated into its elements and reported as a float)."""
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]


def _described(v) -> str:
    """``v``'s type, shape and dtype, for an error message."""
    arr = np.asarray(v) if isinstance(v, (np.ndarray, np.generic, int, float, complex, bool)) else None
    if arr is None:
        return f"of type {type(v).__name__}"
    return f"{type(v).__name__} of shape {arr.shape} and dtype {arr.dtype}"


def _seeds(outputs, grad_outputs, create_graph: bool) -> list:
    """The cotangent of each output: given, or 1 for a single-element output."""
    if grad_outputs is not None and len(grad_outputs) != len(outputs):
        raise GradError(f"grad: got {len(grad_outputs)} grad_outputs for {len(outputs)} outputs "
                        f"(at {user_site()})")
    seeds = []
    for k, y in enumerate(outputs):
        if not isinstance(y, Tensor):
            raise GradError(f"grad: output {k} is {_described(y)}, not a Tensor: compute it from symnum tensors "
                            f"(at {user_site()})")
        if not y.requires_grad:
            raise GradError(f"grad: output {k} ({_described(y._data)}) does not require grad and has no grad_fn: "
                            f"nothing it depends on requires grad (or it was computed under no_grad) "
                            f"(at {user_site()})")
        g = None if grad_outputs is None else grad_outputs[k]
        if g is None:
            if y.size != 1:
                raise GradError(f"grad can be implicitly created only for single-element outputs; output "
                                f"{k} has shape {y.shape}: pass gradient= (or grad_outputs=) of that shape")
            d = y._data  # 1 in its dtype: a 0-d seed without ones_like's Python-level calls
            g = np.array(1, d.dtype) if d.ndim == 0 else np.ones(d.shape, d.dtype)
        elif isinstance(g, Tensor):
            g = g if create_graph else g._data
        else:
            g = np.array(g, dtype=y.dtype)  # a copy: the sweep may hand it to a leaf's .grad
        if g.shape != y.shape:
            raise GradError(f"gradient for output {k} has shape {g.shape}, expected {y.shape}")
        seeds.append(wrap(g) if create_graph and not isinstance(g, Tensor) else g)
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

    A sweep's state (the gradients so far, the nodes waiting) lives in a dict
    and a heap of its own, never on the nodes, so sweeps of one tape may run at once.
    """
    leaf_acc: dict[int, list] = {}  # id(leaf) -> [leaf, gradient so far]
    grads: dict = {}  # node -> its gradient so far, for the nodes reached and not yet swept
    for y, g in zip(outputs, seeds):
        node = y.grad_fn
        if node is None:
            _add_leaf(leaf_acc, y, g)
        else:
            old = grads.get(node)
            grads[node] = g if old is None else old + g

    targets = at_nodes = leads = None
    if inputs is not None:
        targets = {}
        for k, x in enumerate(inputs):
            made = x.grad_fn
            if made is not None:
                at_nodes = targets
                key = id(made)
            else:
                key = id(x)
            have = targets.get(key)
            if have is None:
                targets[key] = [k]
            else:
                have.append(k)
        if prune and not _all_lead(grads, targets):
            leads = _leading(grads, targets, _lowest_level(inputs))
            for node in [n for n in grads if n not in leads]:
                del grads[node]

    found = [None] * len(inputs) if inputs is not None else None
    if grads:
        prev = MODE.enabled
        MODE.enabled = create_graph
        try:
            with paused_gc():  # the sweep makes no cycles: collections would only rescan the tape
                _run(grads, leads, leaf_acc, targets, at_nodes, found, retain_graph, create_graph,
                     ns or (tape if create_graph else numeric))
        finally:
            MODE.enabled = prev

    if targets is not None:
        for key, (leaf, g) in leaf_acc.items():
            if leaf.hooks:
                g = _run_hooks(leaf.hooks, g, create_graph, leaf)
            for k in targets.get(key, ()):
                found[k] = g
        return found
    for leaf, g in leaf_acc.values():
        if g.dtype != leaf._data.dtype:
            g = as_dtype(g, leaf._data.dtype)
        if leaf.hooks:
            g = _run_hooks(leaf.hooks, g, create_graph, leaf)
        leaf_acc[id(leaf)][1] = g
    with ACCUMULATING:
        for leaf, g in leaf_acc.values():
            leaf.grad = accumulate(leaf.grad, g)
    return None


def _all_lead(roots, targets) -> bool:
    """Whether every node reachable from ``roots`` surely leads to a target, known without a walk:
    every leaf a root depends on is a target (see :class:`TapeNode`), and every node depends on
    some leaf, which its consumers depend on too."""
    for n in roots:
        leaf = n.leaf
        if leaf is None:
            return False
        if leaf.__class__ is frozenset:
            for key in leaf:
                if key not in targets:
                    return False
        elif id(leaf) not in targets:
            return False
    return True


def _lowest_level(inputs) -> int:
    """The lowest level of the nodes that made ``inputs`` (0 when one is a leaf): no node below it can lead
    to one of them, since a node's consumers all have higher levels."""
    return min((x.grad_fn.level if x.grad_fn is not None else 0) for x in inputs)


def _leading(roots, targets, floor: int = 0) -> set:
    """The nodes reachable from ``roots`` that lead to a target: the only ones a pruned sweep runs.

    One walk finds the reachable nodes, not going below ``floor`` (the lowest
    target's level), so a gradient taken with respect to values with a long
    history (a derivative nested in another's, at every step of a loop) walks
    only the tape recorded since; taken by level (parents before consumers),
    a node leads to a target when it is one or a parent does.
    """
    seen = set(roots)
    stack = list(seen)
    pop, push, add = stack.pop, stack.append, seen.add
    while stack:
        for p in inputs_of(pop())[0]:
            if p.__class__ is TapeNode and p not in seen and p.level >= floor:
                add(p)
                push(p)
    leads = set()
    for n in sorted(seen, key=_LEVEL):
        if id(n) in targets:
            leads.add(n)
            continue
        for p in inputs_of(n)[0]:
            if p is not None and (p in leads if p.__class__ is TapeNode else id(p) in targets):
                leads.add(n)
                break
    return leads


_LEVEL = operator.attrgetter("level")
_ABSENT = Sentinel("ABSENT")


def _run(grads, leads, leaf_acc, targets, at_nodes, found, retain_graph, create_graph, ns) -> None:
    """Sweep the nodes in ``grads`` and everything they lead to, highest level first, pushing each
    node's gradient through its VJP rules.

    The hot loop of define-by-run. A node's consumers all have higher levels
    than it (:class:`TapeNode`), so when a node is the highest of those still
    waiting, every consumer that will ever send it a gradient has done so:
    its gradient is complete, with no count of consumers made beforehand.
    The waiting nodes sit in a heap; a parent at least as high as all of them
    is swept next without a trip through the heap, so a chain is followed in
    a local loop. A rule is called directly (what ``Op.pullback`` does through
    ``Op.vjp``, minus two calls: the documented fast path), and only for parents
    that take a gradient; an op that answers the pullback protocol itself (a
    loop's ``vjp_all``) is never on a tape, its value being a tuple. A node reached only by
    "no gradient" is swept all the same (its parents learn the same, its
    values are freed), as every node reached is.
    """
    pruned = targets is not None
    owned: set[int] = set()  # nodes and leaves whose gradient so far is a sum made here
    heap = [(-n.level, k, n) for k, n in enumerate(grads)]
    heapq.heapify(heap)
    count = len(heap)
    push, pop = heapq.heappush, heapq.heappop
    get_g = grads.get
    node = pop(heap)[2]
    g = grads.pop(node)
    chains = not create_graph and at_nodes is None  # rules on numbers, no gradient asked of a node
    while True:
        parents = node.parents
        if parents.__class__ is not tuple and chains and g is not None:
            node, g = _chain(node, g, grads, heap, leads, retain_graph, ns)
            parents = node.parents
        args = node.args
        if parents.__class__ is not tuple:  # one input, stored bare (see TapeNode): inputs_of, inlined
            parents = (parents,)
            if args is not None:
                args = (args,)
        saved = args
        if args is None:
            raise GradError(_FREED.format(op=node.op.name))
        if g is not None:
            if node.hooks is not None:
                g = _run_hooks(node.hooks, g, create_graph, node)
            if at_nodes is not None:
                for k in at_nodes.get(id(node), ()):
                    found[k] = g
            op, params, out = node.op, node.params, node.out
            rules, rule_n = op.vjps, op.vjp_n
            if create_graph:
                args, out = _as_tensors(args, parents), wrap(out, True, node)
        nxt = nxt_g = None
        for i, p in enumerate(parents):
            if p is None:
                continue
            is_node = p.__class__ is TapeNode
            if is_node:
                if leads is not None and p not in leads:
                    continue
            elif pruned and id(p) not in targets:
                continue
            elif p._data is not saved[i]:
                raise _replaced(node, i, p, saved[i])
            try:
                if g is None:
                    gi = NO_GRAD
                elif rule_n is not None:
                    gi = rule_n(ns, i, g, out, *args, **params)
                elif params:
                    gi = rules[i](ns, g, out, *args, **params)
                else:
                    gi = rules[i](ns, g, out, *args)
            except np.linalg.LinAlgError as e:
                raise backward_failure(op, args, e) from None
            if not is_node:
                if gi is not NO_GRAD:
                    entry = leaf_acc.get(id(p))
                    if entry is None:
                        leaf_acc[id(p)] = [p, gi]
                    else:
                        entry[1] = add_owned(owned, id(p), entry[1], gi)
                continue
            if gi is NO_GRAD:
                gi = None
            if p is nxt:  # a second input from the same parent (x * x)
                if gi is not None:
                    nxt_g = gi if nxt_g is None else add_owned(owned, id(p), nxt_g, gi)
                continue
            old = get_g(p, _ABSENT)
            if old is _ABSENT:  # reached for the first time
                if nxt is None and (not heap or p.level >= -heap[0][0]):
                    nxt, nxt_g = p, gi
                else:
                    grads[p] = gi
                    push(heap, (-p.level, count, p))
                    count += 1
            elif gi is not None:
                grads[p] = gi if old is None else add_owned(owned, id(p), old, gi)
        if not retain_graph:
            node.args = node.out = None
        if nxt is not None and heap and -heap[0][0] > nxt.level:  # a later parent waits higher up
            grads[nxt] = nxt_g
            push(heap, (-nxt.level, count, nxt))
            count += 1
            nxt = None
        if nxt is not None:
            node, g = nxt, nxt_g
        elif heap:
            node = pop(heap)[2]
            g = grads.pop(node)
        else:
            return


def _chain(node, g, grads, heap, leads, retain_graph, ns) -> tuple:
    """Sweep a run of one-parent nodes (a chain: ``sin(sin(x))``) from ``node`` with gradient ``g``:
    ``(node, g)`` where the run ends, still to be swept by the general loop.

    A node whose one parent is a node met here for the first time, at least
    as high as every node waiting, hands that parent its whole gradient: the
    parent is next, with no heap, no fan-out sum and no loop over inputs. The
    run stops at a leaf, at a parent another consumer reached already (its
    gradient is a sum), behind a higher waiting node, at a hook, a pruned
    parent, a freed node or a rule that gives no gradient; the general loop
    does what each of those needs.
    """
    top = -heap[0][0] if heap else 0
    while True:
        p = node.parents
        if p.__class__ is not TapeNode or node.hooks is not None:  # several inputs (a tuple), or a leaf
            return node, g
        if p.level < top or p in grads or (leads is not None and p not in leads):
            return node, g
        x = node.args  # the one input's value, or None once freed
        op = node.op
        if x is None or op.vjp_n is not None:
            return node, g
        params = node.params
        try:
            gi = op.vjps[0](ns, g, node.out, x, **params) if params else op.vjps[0](ns, g, node.out, x)
        except np.linalg.LinAlgError as e:
            raise backward_failure(op, (x,), e) from None
        if gi is NO_GRAD:
            return node, g
        if not retain_graph:
            node.args = node.out = None
        node, g = p, gi


def _add_leaf(acc, leaf, g, owned=None) -> None:
    entry = acc.get(id(leaf))
    if entry is None:
        acc[id(leaf)] = [leaf, g]
    else:
        entry[1] = entry[1] + g if owned is None else add_owned(owned, id(leaf), entry[1], g)


_BATCHES: dict[type, Callable] = {}
"""Cotangent classes holding a whole batch of cotangents (:class:`symnum.batched.Batched`), each with
``summands(old, g)``: two arrays whose sum is ``old + g``, or ``old, g`` themselves when there are none.
Their module registers them (:func:`register_batch_type`), so the engine imports none of them."""


def register_batch_type(cls: type, summands: Callable) -> None:
    """Let sweeps carry cotangents of class ``cls``: they keep their own dtype (:func:`as_dtype`), and a
    fan-out sum of them that the sweep made is added into in place through ``summands`` (:func:`add_owned`)."""
    _BATCHES[cls] = summands


def add_owned(owned: set, key: int, old, g):
    """``old + g`` for fan-out, written into ``old`` when this sweep made ``old`` by such a sum.

    Nothing else can see such an array (a rule's result may alias its
    cotangent or a saved value, a sum never does), so adding in place is safe
    and spares an allocation per fan-out, which on big cotangents is most of
    an add's cost. Tensors (``create_graph``) are never written in place.
    """
    if key in owned:
        a, b = old, g
        if old.__class__ is not np.ndarray:
            summands = _BATCHES.get(old.__class__)
            if summands is not None:
                a, b = summands(old, g)
        if a.__class__ is np.ndarray and b.__class__ is np.ndarray and a.shape == b.shape and a.dtype == b.dtype:
            np.add(a, b, out=a)
            return old
    new = old + g
    if new.__class__ is np.ndarray or new.__class__ in _BATCHES:
        owned.add(key)
    return new


def _as_tensors(args: tuple, parents: tuple) -> tuple:
    """A node's inputs as tensors carrying their history, for rules run with create_graph."""
    out = []
    for a, p in zip(args, parents):
        if p is None:
            out.append(a)
        elif p.__class__ is TapeNode:
            out.append(wrap(a, True, p))
        else:
            out.append(p)  # the leaf itself: the sweep checked that it still holds the saved value
    return tuple(out)


def _replaced(node: TapeNode, i: int, leaf: Tensor, saved) -> VersionError:
    """The error for a leaf whose value was replaced after ``node`` saved it (as ``saved``)."""
    version, saved_at, assigned_at = leaf.replaced(saved)
    return VersionError(
        f"{node.op.name}: an input (input {i}, a leaf of shape {leaf.shape}) saved at {site_of(saved_at)} was "
        f"modified in place after it was saved (version {leaf._version}, expected "
        f"{'an earlier one' if version is None else version}: its .data was assigned at {assigned_at}); the "
        "gradient would be for a value it no longer has. Run the forward again after changing it")


def _run_hooks(hooks, g, create_graph, owner):
    """Run the hooks on gradient ``g`` of ``owner`` (a node or a leaf); each may return a replacement
    of the same shape and dtype."""
    t = g if isinstance(g, Tensor) else wrap(g)
    for fn in list(hooks):
        r = fn(t)
        if r is not None:
            r = r if isinstance(r, Tensor) else wrap(np.asarray(r))
            if r.shape != t.shape or r.dtype != t.dtype:
                raise _bad_hook(fn, owner, t, r)
            t = r
    return t if create_graph else t._data


def _bad_hook(fn, owner, expected: Tensor, got: Tensor) -> GradError:
    """The error for a hook that returned a gradient of another shape or dtype."""
    code = getattr(fn, "__code__", None) or getattr(type(fn).__call__, "__code__", None)
    where = f" defined at {code.co_filename}:{code.co_firstlineno}" if code else ""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    what = (f"the output of {owner.op.name}" if owner.__class__ is TapeNode
            else f"a leaf of shape {owner.shape}")
    return GradError(f"hook {name}{where} on the gradient of {what} returned shape {got.shape} and dtype "
                     f"{got.dtype}; a hook must return a gradient of shape {expected.shape} and dtype "
                     f"{expected.dtype} (or None)")
