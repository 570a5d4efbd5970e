"""``vmap``: a function of one example run on a whole batch at once (JAX's vmap, autodidax's BatchTrace).

``vmap(f)(xs)`` calls ``f`` once, on :class:`Mapped` values: each holds the
batch with its batch axis in front, but shows ``f`` one example's shape. An op
on a mapped value runs the op's batching rule from the op table
(:attr:`common.ops.Op.batch`, :mod:`common.ops.batching`), the very rules
that batch a Jacobian's or a Hessian's rows, so a loop over the examples
becomes one op each, with no rule written twice.

Each ``vmap`` call is a trace with a level drawn from the same counter as
forward mode's (:mod:`symnum.forward`); an op takes its inputs' highest
trace, and the values of lower traces are constants to it that the rule's
namespace (this module's :data:`mapped`) hands down again: ``vmap`` of a
function that calls ``vmap`` keeps the two batch axes apart. A mapped value
may hold tape tensors, so the batched ops are recorded when the inputs
require grad: ``grad(lambda xs: sum(vmap(loss)(xs)))`` gives per-example
gradients in one recorded pass (the examples are independent, so the
gradient of the sum is each example's gradient), and ``vmap(grad(loss))``
is that same pass (:func:`symnum.functional.value_and_grad_of_mapped`). A ``jvp`` inside a
``vmap`` pushes mapped tangents through mapped primals (``vmap`` of ``jvp``
over the basis is forward mode's Jacobian).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from common.errors import GradError, ShapeError
from common.ops import Namespace
from common.ops.batching import apply_batched
from common.overloads import install_operators
from common.site import user_site
from common.tree import broadcast_prefix, tree_flatten, tree_leaves, tree_unflatten

from .batched import PerElement
from .forward import LEVELS, Dual, apply_duals, untraced
from .tape import weak_scalar
from .tensor import Tensor
from .trees import check_leaves

__all__ = ["Mapped", "mapped", "vmap"]


class _Trace:
    """One running ``vmap``: its level (nesting order, shared with forward mode's traces)."""

    __slots__ = ("level",)

    def __init__(self, level: int):
        self.level = level


class Mapped(PerElement):
    """A batch of values, its batch axis in front of ``value``; ``shape``/``ndim``/``dtype`` are one example's."""

    __slots__ = ("value", "trace")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * m`` is Mapped

    def __init__(self, value, trace: _Trace):
        self.value = value
        self.trace = trace

    @property
    def shape(self) -> tuple:
        return tuple(self.value.shape[1:])

    @property
    def ndim(self) -> int:
        return len(self.value.shape) - 1

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d mapped value")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"Mapped({self.value.shape[0]} x {self.shape}, {self.dtype}, level {self.trace.level})"


_SCALARS = (bool, int, float)


def _apply(op, inputs: tuple, params: dict):
    """``op`` on values that may be mapped: the batching rule of the highest trace, else the op as it is."""
    top = None
    for x in inputs:
        cls = x.__class__
        if (cls is Mapped or cls is Dual) and (top is None or x.trace.level > top.level):
            top = x.trace
    if top is None:
        return untraced(op, inputs, params)
    if not isinstance(top, _Trace):  # a forward-mode trace is the innermost: it runs the op itself
        return apply_duals(op, inputs, params)
    if any(x.__class__ in _SCALARS for x in inputs):
        inputs = tuple(weak_scalar(x, inputs) if x.__class__ in _SCALARS else x for x in inputs)
    flags = tuple(x.__class__ is Mapped and x.trace is top for x in inputs)
    values = tuple(x.value if b else x for x, b in zip(inputs, flags))
    out, out_batched = apply_batched(mapped, op, values, flags, params)
    return Mapped(out, top) if out_batched else out


mapped = Namespace(_apply, "mapped")
"""Every op of the table over values that may be mapped (the namespace batching rules run in for ``vmap``)."""

install_operators(Mapped, mapped)
Mapped.twograd_apply = staticmethod(_apply)  # how a tape op (``symnum.sin(m)``) hands a mapped value over


def _axes(in_axes, nargs: int) -> tuple:
    """One axis spec per positional argument, from ``in_axes`` as JAX takes it: an int or None for the
    whole argument, or (for a pytree argument) a prefix of its structure with an int or None at each leaf."""
    if in_axes is None or isinstance(in_axes, (int, np.integer)) and not isinstance(in_axes, bool):
        axes = (in_axes,) * nargs
    elif isinstance(in_axes, (tuple, list)):
        if len(in_axes) != nargs:
            raise GradError(f"vmap: in_axes has {len(in_axes)} entries but the function was called with {nargs} "
                            f"positional arguments (at {user_site(3)})")
        axes = tuple(in_axes)
    else:
        raise GradError(f"vmap: in_axes must be an int, None or a tuple of them, got {in_axes!r} "
                        f"(at {user_site(3)})")
    for a in tree_leaves(list(axes)):
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise GradError(f"vmap: each in_axes entry must be an int or None (or a pytree of them), got {a!r} "
                            f"(at {user_site(3)})")
    if not tree_leaves(list(axes)):
        raise GradError(f"vmap: in_axes maps no argument (all None); at least one must carry the batch "
                        f"(at {user_site(3)})")
    return axes


def _spread(args: tuple, axes: tuple) -> tuple[list, list, list]:
    """The arguments' leaves, one axis (or None) for each, and each argument's structure."""
    leaves, leaf_axes, defs = [], [], []
    for k, (x, a) in enumerate(zip(args, axes)):
        xs, treedef = tree_flatten(x)
        if treedef.is_leaf:
            xs, each = [x], [a] if not isinstance(a, (tuple, list, dict)) else broadcast_prefix(a, x, "vmap")
        else:
            each = broadcast_prefix(a, x, f"vmap: in_axes for argument {k}")
            check_leaves([v for v, b in zip(xs, each) if b is not None], treedef, "vmap", f"argument {k}")
        leaves.extend(xs)
        leaf_axes.extend(each)
        defs.append(treedef)
    return leaves, leaf_axes, defs


def _as_value(x):
    """An argument as ``vmap`` moves its axes: tensors, duals and mapped values as they are, else an array."""
    if isinstance(x, (Tensor, Mapped, Dual)) or isinstance(x, np.ndarray):
        return x
    return np.asarray(x)


def _move(x, src: int, dst: int):
    """``x`` with axis ``src`` moved to ``dst`` (numpy for arrays, the op table's transpose for the rest)."""
    if src == dst:
        return x
    if isinstance(x, np.ndarray):
        return np.moveaxis(x, src, dst)
    perm = [a for a in range(len(x.shape)) if a != src]
    perm.insert(dst, src)
    return mapped.transpose(x, tuple(perm))


def _normal(axis: int, ndim: int, what: str, k: int) -> int:
    if not -ndim <= axis < ndim:
        raise ShapeError(f"vmap: {what} {axis} is out of range for {what.split()[0]} {k} of {ndim} dims "
                         f"(at {user_site(4)})")
    return axis % ndim


def _batch_in(args: list, axes: tuple, trace: _Trace) -> tuple[list, int]:
    """The arguments with each mapped one's batch axis moved to the front and wrapped; the batch size."""
    size = None
    out = []
    for k, (x, a) in enumerate(zip(args, axes)):
        if a is None:
            out.append(x)
            continue
        x = _as_value(x)
        a = _normal(a, len(x.shape), "argument in_axes", k)
        n = x.shape[a]
        if size is not None and n != size:
            raise ShapeError(f"vmap: argument {k} has {n} examples along axis {a}, but an earlier argument has "
                             f"{size} (shape {tuple(x.shape)}; at {user_site(3)})")
        size = n
        out.append(Mapped(_move(x, a, 0), trace))
    return out, size


def _batch_out(y, trace: _Trace, size: int, out_axes: int):
    """One result with the batch axis at ``out_axes`` (a result the batch never reached is repeated)."""
    if y.__class__ is Mapped and y.trace is trace:
        value = y.value
    else:
        y = _as_value(y)
        if isinstance(y, np.ndarray):
            value = np.broadcast_to(y, (size, *y.shape))
        else:
            value = mapped.broadcast_to(mapped.expand_dims(y, 0), (size, *y.shape))
    dst = _normal(out_axes, len(value.shape), "out_axes", 0)
    value = _move(value, 0, dst)
    return np.array(value) if isinstance(value, np.ndarray) else value


def _batch_outs(out, trace: _Trace, size: int, out_axes):
    """:func:`_batch_out` on each leaf of ``f``'s result, a pytree (``value_and_grad``'s ``(value, (g0, g1))``,
    a dict), ``out_axes`` an int or a prefix of its structure."""
    leaves, treedef = tree_flatten(out)
    axes = broadcast_prefix(out_axes, out, "vmap: out_axes")
    return tree_unflatten(treedef, [_batch_out(y, trace, size, a) for y, a in zip(leaves, axes)])


def vmap(f: Callable, in_axes: int | None | Sequence[int | None] = 0, out_axes: int = 0) -> Callable:
    """``f`` mapped over a batch axis of its arguments, as one call on the whole batch.

    ``in_axes`` is an int (every positional argument is mapped over that
    axis), None, or a tuple with an int or None per positional argument
    (None: the argument is the same for every example); keyword arguments
    are passed as they are. ``out_axes`` is where the batch axis goes in the
    result (or in each result, when ``f`` returns tuples or lists, nested or not).
    Numbers in, numpy arrays out; tape tensors (and mapped values of an
    enclosing ``vmap``) stay what they are.
    """
    out_leaves = tree_leaves(out_axes)
    if not out_leaves or any(not isinstance(a, (int, np.integer)) or isinstance(a, bool) for a in out_leaves):
        raise GradError(f"vmap: out_axes must be an int (or a pytree of ints), got {out_axes!r} (at {user_site()})")

    def vmap_f(*args, **kwargs):
        axes = _axes(in_axes, len(args))
        leaves, leaf_axes, defs = _spread(args, axes)
        trace = _Trace(next(LEVELS))
        batched, size = _batch_in(leaves, tuple(leaf_axes), trace)
        if size is None:
            raise GradError(f"vmap: in_axes maps no array (the mapped arguments hold none; at {user_site()})")
        rebuilt, at = [], 0
        for d in defs:
            rebuilt.append(tree_unflatten(d, batched[at:at + d.num_leaves]))
            at += d.num_leaves
        return _batch_outs(f(*rebuilt, **kwargs), trace, size, out_axes)

    vmap_f.__name__ = f"vmap({getattr(f, '__name__', 'f')})"
    return vmap_f
