"""Checkpointing on the tape: ``checkpoint(f)`` records f's inputs and outputs only, and runs f again in
the backward pass (``torch.utils.checkpoint``, under JAX's ``jax.checkpoint`` spelling).

The forward runs ``f`` on fresh leaves and drops what it recorded, so none
of its intermediates outlives the call (what it recorded says whether ``f``
reads a tensor that requires grad other than its arguments, a closure whose
gradient would be lost: an error); the call leaves one tape node whose inputs are f's
tensor arguments and whose value is f's float outputs, packed into one array
(a single output is its own array; several are raveled and joined, and the
caller gets views of the join). The node's op is made for the call: its VJP
rule runs ``f`` again under a fresh recording and sweeps that small tape
backwards with the cotangent it is given, in the namespace it is given, so
the rule is right for every sweep: numbers, a recorded backward
(``create_graph=True``: the recomputation is recorded on the arguments'
own history, so grad of grad works) and batched cotangents (a Jacobian).
The rule is asked once per input; the sweep is done once per cotangent (its
result kept by the cotangent's identity, so sweeps of one tape in several
threads never read each other's).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from common.errors import GradError, TwogradError, op_error
from common.ops import NO_GRAD, Kind
from common.ops.table import EMPTY, Op
from common.site import user_site
from common.tree import flatten, unflatten

from . import engine
from .mode import MODE, enable_grad
from .tape import TapeNode, inputs_of, record, tape
from .tensor import Tensor, wrap

__all__ = ["checkpoint"]


def checkpoint(f: Callable) -> Callable:
    """``f`` whose intermediates the backward pass recomputes instead of keeping them.

    The returned function takes and returns what ``f`` does (tensors,
    arrays, numbers, nests of them); values and gradients, at every order,
    are ``f``'s. A gradient keeps only its arguments and its outputs, so a
    deep chain split into checkpointed segments keeps one array per segment
    (and one segment's intermediates while it runs backwards).
    """
    if not callable(f):
        raise op_error(TwogradError, "checkpoint", f"expected a function, got a {type(f).__name__}",
                       site=user_site(2))

    @functools.wraps(f)
    def remat(*args):
        leaves, struct = flatten(list(args))
        tensors = [k for k, x in enumerate(leaves) if type(x) is Tensor]
        if not MODE.enabled or not any(leaves[k].requires_grad for k in tensors) or \
                any(getattr(type(x), "twograd_apply", None) is not None for x in leaves):
            return f(*args)  # nothing to save (or another trace, forward mode or vmap, runs f itself)
        site = user_site(2)
        struct = _shared(struct)  # kept per call by the rule: one copy for the calls of a loop
        fixed = [None if type(x) is Tensor else x for x in leaves]  # the tensors are the node's inputs
        layout: list = []  # filled by the forward: the outputs' nest, with the non-float ones kept as they are

        def run(values, forward: bool = False) -> Tensor | None:
            """f on the arguments with the tensors' values replaced, its float outputs packed (the forward's
            outputs noted in ``layout``; a recomputation's are dropped with its tape)."""
            filled = list(fixed)
            for k, v in zip(tensors, values):
                filled[k] = v
            outs, out_struct = flatten(f(*unflatten(struct, filled)))
            floats = [k for k, o in enumerate(outs) if type(o) is Tensor and o.dtype.kind == "f"]
            if forward:
                layout[:] = [out_struct, outs, floats]
            return _pack(tape, [outs[k] for k in floats])

        def impl(*arrays):
            xs = [wrap(a, a.dtype.kind == "f") for a in arrays]
            with enable_grad():  # recorded (and dropped) only to learn what f reads: see _closed_over
                packed = run(xs, forward=True)
            if packed is None:
                return np.zeros(0)
            if _closed_over(packed, xs):
                raise op_error(GradError, "checkpoint", f"{getattr(f, '__name__', 'f')} uses a tensor that "
                               "requires grad and is not one of its arguments (closed over): its gradient would "
                               "be lost; pass it as an argument", site=site)
            return packed._data

        op = Op("checkpoint", _no_infer, impl, vjp_n=_pullback(run), nin=None, kind=Kind.CONTROL,
                doc=f"checkpoint({getattr(f, '__name__', 'f')}): recomputed in the backward pass")
        packed = record(op, tuple(leaves[k] for k in tensors), EMPTY)
        out_struct, outs, floats = layout
        layout.clear()  # the rule keeps no output alive
        if not floats:
            return unflatten(out_struct, outs)
        for k, v in zip(floats, _unpack(packed, [outs[k] for k in floats])):
            outs[k] = v
        return unflatten(out_struct, outs)

    return remat


def _closed_over(packed: Tensor, xs: list) -> bool:
    """Whether ``packed`` (f's output, recorded from the fresh leaves ``xs``) depends on any other leaf.

    Each tape node knows its leaves (:class:`~symnum.tape.TapeNode`); past
    :data:`~symnum.tape.MAX_LEAVES` of them it knows none, and the tape is walked.
    """
    mine = {id(x) for x in xs}
    node = packed.grad_fn
    if node is None:
        return packed.requires_grad and id(packed) not in mine
    leaf = node.leaf
    if leaf.__class__ is frozenset:
        return not leaf <= mine
    if leaf is not None:
        return id(leaf) not in mine
    seen, stack = set(), [node]
    while stack:
        for p in inputs_of(stack.pop())[0]:
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            if p.__class__ is TapeNode:
                stack.append(p)
            elif id(p) not in mine:
                return True
    return False


def _no_infer(*inputs):
    return (), np.dtype(np.float64)  # a checkpoint's node is never built as a graph node: no type rule to ask


_STRUCTS: dict = {}


def _shared(struct):
    """One copy of each nest structure (a loop's steps checkpoint one nest again and again)."""
    if len(_STRUCTS) > 1024:
        _STRUCTS.clear()
    return _STRUCTS.setdefault(struct, struct)


def _stackable(outs: list) -> bool:
    """Whether the outputs share one shape and dtype (an LSTM step's states): packed by stacking."""
    return all(o.shape == outs[0].shape and o.dtype == outs[0].dtype for o in outs)


def _pack(ns, outs: list):
    """The float outputs as one tensor: a lone one itself, several of one type stacked, others raveled
    and joined (one dtype)."""
    if not outs:
        return None
    if len(outs) == 1:
        return outs[0]
    if _stackable(outs):
        return ns.stack(outs)
    dtype = np.result_type(*[o.dtype for o in outs])
    return ns.concatenate([ns.reshape(ns.cast(o, dtype), (-1,)) for o in outs])


def _unpack(packed: Tensor, like: list) -> list:
    """The outputs :func:`_pack` joined, read back from ``packed`` (recorded views of it), in their dtypes:
    one view each when they were stacked."""
    if len(like) == 1:
        return [packed]
    if _stackable(like):
        return [tape.getitem(packed, index=(("int", k),)) for k in range(len(like))]
    parts, at = [], 0
    for o in like:
        n = int(np.prod(o.shape, dtype=np.int64))
        part = tape.reshape(tape.getitem(packed, index=(("slice", at, at + n, None),)), o.shape)
        parts.append(part if part.dtype == o.dtype else tape.cast(part, o.dtype))
        at += n
    return parts


def _pullback(run: Callable) -> Callable:
    """The VJP rule of one checkpointed call: f recomputed and swept once per cotangent, asked per input."""
    swept: dict[int, tuple] = {}  # id(g) -> (g, the inputs' cotangents it gives), per sweep under way

    def rule(ns, i, g, out, *args):
        entry = swept.get(id(g))
        if entry is None:  # (g is held by its entry, so its id is not reused while the entry lives)
            entry = swept[id(g)] = (g, _recomputed(run, ns, g, args))
        cts = entry[1]
        ct = cts[i]
        cts[i] = NO_GRAD  # given once: the rule holds no array longer than the sweep needs it
        if all(c is NO_GRAD for c in cts):
            swept.pop(id(g), None)
        return ct

    return rule


def _recomputed(run: Callable, ns, g, args) -> list:
    """Each argument's cotangent: f run again on fresh inputs under a recording, swept back from ``g``."""
    create = ns is tape
    with enable_grad():
        if create:  # tensors with history: a view of each starts a tape that leads back to its own history
            xs = [tape.getitem(a, index=()) if a.requires_grad else a for a in args]
        else:
            xs = [wrap(a, a.dtype.kind == "f") for a in args]
        packed = run(xs)
    wanted = [k for k, x in enumerate(xs) if x.requires_grad]
    cts: list = [NO_GRAD] * len(args)
    if packed is None or not packed.requires_grad or not wanted:
        return cts
    retain = create  # a recorded backward reads the recomputation's values again
    found = engine.sweep([packed], [g], [xs[k] for k in wanted], retain, create, ns=ns)
    for k, ct in zip(wanted, found):
        if ct is not None:
            cts[k] = ct
    return cts
