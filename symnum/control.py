"""Control flow on the tape: ``scan``, ``while_loop`` and ``cond`` as the Python they are.

Symbol-to-number needs no loop ops: the tape records whatever ran, so a loop
is a Python loop and a branch is a Python ``if`` (define-by-run, §6.5.5). These
three functions exist so that one model function ``fn(ns, ...)`` runs on both
backends: with ``ns = common.api`` they build loop and branch ops whose bodies
are subgraphs (and symsym differentiates them into reverse loops); with
``ns = symnum`` they are the plain loops below, and their gradient is the
tape's own backward through every step that ran, at any order
(``create_graph=True`` records the backward too).

The signatures are JAX's (``jax.lax.scan``, ``while_loop``, ``cond``), the same
as the IR builders'. Carries and per-step outputs are a tensor (or array, or
Python number), or a tuple/list nesting of those (:func:`common.tree.flatten`,
the graph's own; ``xs`` and ``y`` may be None). As on the graph, a step must
give back a carry of the structure (lists and tuples told apart), shapes and dtypes it was given;
on the tape that is checked at every step, and a mismatch is an error naming
the user's line. What the tape cannot do is check the branch not taken by
``cond``, or the shapes of outputs of a scan of length 0 before running a
step: a scan of length 0 runs its step once, without recording, only to learn
the shapes of its (empty) outputs.

Slicing a sequence ``xs`` that requires grad records one ``getitem`` per step,
whose backward is a scatter into a zero array of the whole sequence: fine for
the sequences models feed (data), quadratic in the length for a long
differentiated one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.errors import DTypeError, GraphError, ShapeError, op_error
from common.site import user_site
from common.tree import flatten, unflatten

from .mode import no_grad
from .tape import tape
from .tensor import Tensor
from .vmap import Mapped

_SEQ = (tuple, list)


def leaves(tree) -> list:
    """The leaves of a nest of lists/tuples (:func:`common.tree.flatten`'s order); None has none."""
    return [] if tree is None else flatten(tree)[0]


def rebuild(tree, values) -> object:
    """``tree``'s nest with its leaves replaced by ``values`` (in :func:`leaves` order); None stays None."""
    return None if tree is None else unflatten(flatten(tree)[1], list(values))


def _nest(tree) -> str:
    """A nest's shape in words, for an error: ``tuple(leaf, list(leaf, leaf))``."""
    if isinstance(tree, _SEQ):
        return f"{type(tree).__name__}({', '.join(_nest(t) for t in tree)})"
    return "None" if tree is None else "leaf"


def _dtype(x) -> np.dtype | None:
    """A leaf's dtype, or None for a Python number (which takes the other side's, as on the graph)."""
    if isinstance(x, (bool, int, float)):
        return None
    dtype = getattr(x, "dtype", None)  # not np.asarray(x) first: a vmap batch would be read as its elements
    return np.dtype(dtype if dtype is not None else np.asarray(x).dtype)


def check_carry(op: str, given, returned) -> None:
    """Raise unless ``returned`` has ``given``'s structure and, leaf by leaf, its shape and dtype."""
    if type(given) is Tensor and type(returned) is Tensor:  # the usual carry: one tensor, checked in place
        a, b = given._data, returned._data
        if a.shape == b.shape and a.dtype == b.dtype:
            return
    before, after = (None, None) if given is None or returned is None else (flatten(given), flatten(returned))
    if before is None or before[1] != after[1]:
        raise op_error(GraphError, op, f"the body must return a carry of the structure it was given: "
                       f"got {_nest(returned)} for {_nest(given)}", site=user_site())
    for k, (a, b) in enumerate(zip(before[0], after[0], strict=True)):
        if np.shape(a) != np.shape(b):
            raise op_error(ShapeError, op, f"carry leaf {k} changes shape from {np.shape(a)} to {np.shape(b)}",
                           (a, b), user_site())
        da, db = _dtype(a), _dtype(b)
        if da is not None and db is not None and da != db:
            raise op_error(DTypeError, op, f"carry leaf {k} changes dtype from {da} to {db}", (a, b), user_site())


def _length(xs, length: int | None) -> int:
    """The number of steps: ``length``, or the leading dimension every leaf of ``xs`` shares."""
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves(xs)}
    if None in sizes:
        raise op_error(ShapeError, "scan", "every leaf of xs needs a leading axis to scan over", leaves(xs),
                       user_site())
    if length is not None and (isinstance(length, bool) or not isinstance(length, (int, np.integer))
                               or length < 0):
        raise op_error(ShapeError, "scan", f"length must be a non-negative int, got {length!r}", site=user_site())
    if len(sizes) > 1 or (length is not None and sizes and sizes != {length}):
        want = f"length={length}" if length is not None else "one length"
        raise op_error(ShapeError, "scan", f"the leaves of xs must have {want} along axis 0, got {sorted(sizes)}",
                       leaves(xs), user_site())
    if not sizes and length is None:
        raise op_error(ShapeError, "scan", "with no xs, give the number of steps as length=", site=user_site())
    return int(length) if length is not None else sizes.pop()


def stack_steps(steps: list, stack: Callable) -> object:
    """The per-step outputs (each of ``steps[0]``'s structure) stacked leaf by leaf with ``stack``."""
    columns = list(zip(*(leaves(y) for y in steps), strict=True))
    return rebuild(steps[0], [stack(list(column)) for column in columns])


_FAN_IN = 64


def _stack_tape(parts: list):
    """``stack(parts)`` built as a tree of stacks and concatenations of at most ``_FAN_IN`` inputs each.

    The same values, but a backward sweep calls an op's VJP rule once per input
    and hands each call all the inputs, so one stack of n steps' outputs would
    cost n^2 in the sweep (seconds at 10^4 steps); the tree costs n log n.
    """
    level = [tape.stack(parts[k:k + _FAN_IN]) for k in range(0, len(parts), _FAN_IN)]
    while len(level) > 1:
        groups = [level[k:k + _FAN_IN] for k in range(0, len(level), _FAN_IN)]
        level = [tape.concatenate(g, axis=0) if len(g) > 1 else g[0] for g in groups]
    return level[0]


def _empty(y) -> object:
    """The stacked outputs of a scan of length 0, from one unrecorded step's outputs ``y``."""
    return rebuild(y, [np.zeros((0, *np.shape(v)), dtype=_dtype(v) or np.float64) for v in leaves(y)])


def _no_check(given, returned) -> None:
    """A library that checks nothing itself (a peer's Python loop)."""


def scan_steps(fn: Callable, init, xs, length: int | None = None, reverse: bool = False,
               check: Callable = _no_check) -> tuple:
    """The loop of :func:`scan`, on any arrays that slice along axis 0: ``(final carry, [y per step])``
    in the order of ``xs``, left unstacked (define-by-run peers stack with their own library)."""
    n = _length(xs, length)
    columns = leaves(xs)
    order = range(n - 1, -1, -1) if reverse else range(n)
    carry, ys = init, [None] * n
    for i in order:
        x = rebuild(xs, [column[i] for column in columns])
        out = fn(carry, x)
        if not isinstance(out, _SEQ) or len(out) != 2:
            raise op_error(GraphError, "scan", f"the body must return a pair (carry, y), got {type(out).__name__}",
                           site=user_site())
        check(carry, out[0])
        carry, ys[i] = out
    return carry, ys


def scan(fn: Callable, init, xs, length: int | None = None, reverse: bool = False) -> tuple:
    """Run ``carry, y = fn(carry, x)`` for each slice ``x`` of ``xs`` along axis 0: ``(final carry, ys)``.

    ``xs`` is a tensor/array, a tuple/list of them (sliced alike) or None
    (then ``length`` steps with ``x = None``). ``ys`` stacks the steps' ``y``
    along a new axis 0 in the order of ``xs``, also when ``reverse=True``
    runs the steps last slice first. Every step is recorded on the tape as the
    ops it ran, so the gradient is the tape's.
    """
    carry, ys = scan_steps(fn, init, xs, length, reverse, lambda a, b: check_carry("scan", a, b))
    if ys:
        return carry, stack_steps(ys, _stack_tape)
    with no_grad():
        x = rebuild(xs, [np.zeros(np.shape(c)[1:], dtype=_dtype(c)) for c in leaves(xs)])
        return carry, _empty(fn(init, x)[1])


def _truth(op: str, pred) -> bool:
    """A predicate's truth: a bool, or a tensor/array with one element."""
    if np.size(pred) != 1:
        raise op_error(ShapeError, op, "the predicate must be a scalar", [pred], user_site())
    return bool(pred.item() if isinstance(pred, Tensor) else np.asarray(pred).item())


def loop(cond_fn: Callable, body_fn: Callable, init, max_iter: int | None = None, truth: Callable = bool,
         check: Callable = _no_check):
    """The loop of :func:`while_loop` with the predicate read by ``truth``, for any library's values."""
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer))
                                 or max_iter < 0):
        raise op_error(ShapeError, "while_loop", f"max_iter must be a non-negative int, got {max_iter!r}",
                       site=user_site())
    val, steps = init, 0
    while (max_iter is None or steps < max_iter) and truth(cond_fn(val)):
        new = body_fn(val)
        check(val, new)
        val, steps = new, steps + 1
    return val


def while_loop(cond_fn: Callable, body_fn: Callable, init, max_iter: int | None = None):
    """``val = body_fn(val)`` while ``cond_fn(val)`` holds (at most ``max_iter`` times): the final ``val``.

    The trip count is whatever the data make it; the tape records the steps
    that ran, so reverse mode through it is the tape's backward (no bound
    needed, unlike a graph, which must keep every step's values).

    Under :func:`symnum.vmap` a predicate that differs across the batch has
    no one truth: the loop runs while any element's holds, and an element
    whose predicate is false keeps its carry (a ``where`` on the tape), JAX's
    rule and symsym's. A kept step is the identity on the tape, so each
    element's gradient is that of its own trip count.
    """
    running = []  # the last predicate, when it is a batch of them

    def truth(pred) -> bool:
        running[:] = [pred] if _batched(pred) else []
        if running:
            return bool(_flags(pred).any())
        return _truth("while_loop", pred)

    def step(val):
        new = body_fn(val)
        if not running:
            return new
        check_carry("while_loop", val, new)
        keep = running[0]
        return rebuild(new, [tape.where(keep, n, o) for n, o in zip(leaves(new), leaves(val))])

    return loop(cond_fn, step, init, max_iter, truth, lambda a, b: check_carry("while_loop", a, b))


def _flags(pred: Mapped) -> np.ndarray:
    """Every element's truth in a batch of predicates (through nested batches and tensors)."""
    v = pred
    while not isinstance(v, np.ndarray):
        v = v.value if isinstance(v, Mapped) else v._data if isinstance(v, Tensor) else np.asarray(v)
    return v.astype(bool)


def cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``true_fn(*operands)`` if ``pred`` else ``false_fn(*operands)``: only the taken branch runs.

    So only the taken branch is on the tape, and the gradient of
    ``cond(x > 0, sqrt, square, x)`` at x = -1 is -2, not the NaN a ``where``
    over both branches gives.

    Under :func:`symnum.vmap` a predicate that differs across the batch has
    no one truth. The tape then does what it always does, runs what each
    element takes: the branch is run element by element and the outputs
    stacked back into the batch. No ``where`` over both branches, so the
    gradient keeps the property above (``vmap(grad(f))`` at x = -1 is -2).
    """
    if _batched(pred):
        return _per_element(pred, true_fn, false_fn, operands)
    return (true_fn if _truth("cond", pred) else false_fn)(*operands)


def _batched(pred) -> bool:
    """Whether ``pred`` is a batch of predicates inside a running ``vmap``."""
    return isinstance(pred, Mapped)


def _per_element(pred, true_fn: Callable, false_fn: Callable, operands: tuple):
    """``cond`` for each element of ``pred``'s batch (the operands mapped by the same vmap sliced alike),
    its outputs stacked back into that batch."""
    trace = pred.trace

    def element(x, i: int):
        return x.value[i] if isinstance(x, Mapped) and x.trace is trace else x

    outs = [cond(element(pred, i), true_fn, false_fn, *[element(x, i) for x in operands])
            for i in range(pred.value.shape[0])]
    for out in outs[1:]:
        check_carry("cond", outs[0], out)
    parts = [leaves(out) for out in outs]

    def batch(values: list):  # on the tape where an output is; plain numbers stay numbers, as vmap gives them
        if any(isinstance(v, Tensor) and v.requires_grad for v in values):
            return Mapped(tape.stack(values, axis=0), trace)
        return Mapped(np.stack([v._data if isinstance(v, Tensor) else v for v in values]), trace)

    return rebuild(outs[0], [batch([p[k] for p in parts]) for k in range(len(parts[0]))])


__all__ = ["cond", "scan", "while_loop"]
