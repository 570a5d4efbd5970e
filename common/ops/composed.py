"""numpy functions made of table ops: var, std, sort, topk, take, pad, flip, tile, split, ... and ``x.at[i]``.

Each is written once against a namespace ``ns`` of op functions, as the VJP
rules are, so the same function builds nodes (``common.api``), records a tape
(``symnum``) or computes numbers. None needs an op of its own: its gradient
is the composition's, and each graph is what a hand-written one would be (a
slice for flip and split, a broadcast and reshape for tile and repeat, a
gather for take, a scatter for pad). The results have numpy's meaning and
defaults; mistakes are errors naming the function, the shapes and the
user's line (:func:`_error`).

:data:`FUNCTIONS` lists them by name; :func:`bound` gives the user-facing
function over one namespace, which is how ``common.api`` and ``symnum``
export them and :mod:`common.overloads` makes the methods.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from .. import kernels
from ..errors import DTypeError, ShapeError, TwogradError, op_error
from ..site import user_site
from .index import FULL, parse_key, view
from .params import is_int, shown
from .shapes import norm_axis, one_axis, shape_str


def _error(name: str, message: str, *inputs, cls: type[TwogradError] = ShapeError) -> TwogradError:
    """A user's mistake in ``name``: the message, the inputs' shapes and the user's own line."""
    return op_error(cls, name, message, [x for x in inputs if hasattr(x, "shape")], user_site(2))


def _axes(name: str, x, axis) -> tuple:
    try:
        return norm_axis(axis, len(x.shape))
    except TwogradError as e:
        raise _error(name, str(e), x) from None


def _axis(name: str, x, axis) -> int:
    try:
        return one_axis(axis, len(x.shape))
    except TwogradError as e:
        raise _error(name, str(e), x) from None


def _static(name: str, x) -> tuple:
    if None in x.shape:
        raise _error(name, f"needs its input's dims known, got unknown dims in {shape_str(x.shape)}", x)
    return tuple(x.shape)


def _flat(ns, x):
    return x if len(x.shape) == 1 else ns.reshape(x, (-1,))


def _slice(axis: int, start=None, stop=None, step=None) -> tuple:
    return (FULL,) * axis + (("slice", start, stop, step),)


# --- statistics -----------------------------------------------------------------------------

def var(ns, x, axis=None, ddof=0, keepdims=False):
    """Variance along ``axis``: mean squared deviation, divided by ``n - ddof`` (numpy's ``var``; PyTorch's
    ``correction``). Centred first (two passes), so it stays accurate when the mean is large."""
    axes = _axes("var", x, axis)
    if not is_int(ddof):
        raise _error("var", f"ddof must be an int, got {shown(ddof)}", x)
    d = x - ns.mean(x, axis=axes, keepdims=True)
    total = ns.sum(d * d, axis=axes, keepdims=bool(keepdims))
    dims = [x.shape[a] for a in axes]
    n = ns.count(x, axis=axes) if None in dims else float(math.prod(dims))
    return total / (n - int(ddof))


def std(ns, x, axis=None, ddof=0, keepdims=False):
    """Standard deviation, sqrt(var(x, axis, ddof)); its gradient is infinite/NaN where the variance is
    zero (sqrt'(0) = inf, as in PyTorch)."""
    return ns.sqrt(var(ns, x, axis, ddof, keepdims))


# --- order ----------------------------------------------------------------------------------

def take_along_axis(ns, x, indices, axis=-1):
    """numpy's ``take_along_axis``: ``x`` indexed along ``axis`` by ``indices`` (same number of
    dimensions, the others broadcasting). One gather; its gradient scatters back, repeated indices
    accumulating. ``axis=None`` indexes the flattened input with 1-d indices."""
    if axis is None:
        x, axis = _flat(ns, x), 0
    if len(indices.shape) != len(x.shape):
        raise _error("take_along_axis", f"indices need as many dimensions as x ({len(x.shape)}), got "
                     f"{len(indices.shape)}", x, indices)
    if np.dtype(indices.dtype).kind not in "iu":
        raise _error("take_along_axis", f"indices must be integers, got {indices.dtype}", x, indices,
                     cls=DTypeError)
    a = _axis("take_along_axis", x, axis)
    shape = _static("take_along_axis", x)
    nd = len(shape)
    arrays = [indices if d == a else np.arange(shape[d]).reshape((1,) * d + (-1,) + (1,) * (nd - d - 1))
              for d in range(nd)]
    return ns.getitem(x, *arrays, index=tuple(("array", d) for d in range(nd)))


def sort(ns, x, axis=-1):
    """x sorted along ``axis`` (None: flattened), ascending. Its gradient goes back through the sorting
    permutation; tied elements keep their order (a stable sort), so each gets the cotangent of its own
    place, as PyTorch's ``sort(stable=True)``."""
    if axis is None:
        x, axis = _flat(ns, x), 0
    a = _axis("sort", x, axis)
    return take_along_axis(ns, x, ns.argsort(x, axis=a), a)


def topk(ns, x, k, axis=-1):
    """PyTorch's ``topk``: the ``k`` largest elements along ``axis``, largest first, and their indices
    (integers: no gradient). Ties: the lower index comes first."""
    a = _axis("topk", x, axis)
    n = x.shape[a]
    if not is_int(k) or k < 0 or (n is not None and k > n):
        raise _error("topk", f"k = {shown(k)} must be an int in [0, {n}] (the length of axis {a})", x)
    idx = ns.getitem(ns.argsort(-x, axis=a), index=_slice(a, 0, int(k)))
    return take_along_axis(ns, x, idx, a), idx


def take(ns, x, indices, axis=None):
    """numpy's ``take``: elements of ``x`` (flattened for ``axis=None``) at integer ``indices`` (an int, an
    array or an integer node) along ``axis``; the result has the indices' shape there. A gather."""
    if axis is None:
        x, axis = _flat(ns, x), 0
    a = _axis("take", x, axis)
    if is_int(indices):
        return ns.getitem(x, index=(FULL,) * a + (("int", int(indices)),))
    if not hasattr(indices, "dtype"):
        indices = np.asarray(indices)
    if np.dtype(indices.dtype).kind not in "iu":
        raise _error("take", f"indices must be integers, got {indices.dtype}", x, cls=DTypeError)
    return ns.getitem(x, indices, index=(FULL,) * a + (("array", 0),))


def nonzero(ns, x) -> tuple:
    """numpy's ``nonzero``: one integer array per axis, the coordinates of x's nonzero (true) elements in
    row-major order; ``x[x.nonzero()]`` is ``x[mask]``. The columns of one ``argwhere``."""
    if len(x.shape) == 0:
        raise _error("nonzero", "needs at least a 1-d input", x)
    where = ns.argwhere(x)
    return tuple(ns.getitem(where, index=(FULL, ("int", d))) for d in range(len(x.shape)))


# --- rearrangements -------------------------------------------------------------------------

def flip(ns, x, axis=None):
    """x reversed along ``axis`` (every axis for None): one step -1 slice."""
    axes = _axes("flip", x, axis)
    spec = tuple(("slice", None, None, -1) if d in axes else FULL for d in range(len(x.shape)))
    return ns.getitem(x, index=spec)


def roll(ns, x, shift, axis=None):
    """numpy's ``roll``: elements shifted by ``shift`` along ``axis`` (flattened for None), those pushed off
    one end coming back at the other. Two slices joined per axis."""
    if axis is None:
        if not is_int(shift):
            raise _error("roll", f"shift must be an int when axis is None, got {shown(shift)}", x)
        shape = _static("roll", x)
        return ns.reshape(roll(ns, _flat(ns, x), shift, 0), shape)
    shifts = (shift,) if is_int(shift) else tuple(shift)
    axes = (axis,) if is_int(axis) else tuple(axis)
    if len(shifts) == 1:
        shifts = shifts * len(axes)
    if len(shifts) != len(axes) or not all(is_int(s) for s in shifts):
        raise _error("roll", f"shift {shown(shift)} and axis {shown(axis)} do not match", x)
    out = x
    for s, ax in zip(shifts, axes):
        a = _axis("roll", x, ax)
        n = _static("roll", x)[a]
        s = int(s) % n if n else 0
        if s:
            out = ns.concatenate([ns.getitem(out, index=_slice(a, n - s)),
                                  ns.getitem(out, index=_slice(a, 0, n - s))], axis=a)
    return out


def repeat(ns, x, repeats, axis=None):
    """numpy's ``repeat``: each element ``repeats`` times in a row along ``axis`` (flattened for None). An int
    count is a broadcast and a reshape (the gradient sums each run); a list of counts is a gather."""
    if axis is None:
        x, axis = _flat(ns, x), 0
    a = _axis("repeat", x, axis)
    shape = _static("repeat", x)
    if is_int(repeats):
        r = int(repeats)
        if r < 0:
            raise _error("repeat", f"repeats must be >= 0, got {r}", x)
        wide = ns.broadcast_to(ns.expand_dims(x, a + 1), shape[:a + 1] + (r,) + shape[a + 1:])
        return ns.reshape(wide, shape[:a] + (shape[a] * r,) + shape[a + 1:])
    if hasattr(repeats, "op") or hasattr(repeats, "grad_fn"):
        raise _error("repeat", "repeats must be ints or an array of ints (the result's shape depends on them)", x)
    counts = np.asarray(repeats)
    if counts.dtype.kind not in "iu" or counts.ndim > 1 or counts.size not in (1, shape[a]) or (counts < 0).any():
        raise _error("repeat", f"repeats must be one count or {shape[a]} counts >= 0 for axis {a}, got "
                     f"{shown(repeats)}", x)
    where = np.repeat(np.arange(shape[a]), np.broadcast_to(counts, (shape[a],)))
    return ns.getitem(x, where, index=(FULL,) * a + (("array", 0),))


def tile(ns, x, reps):
    """numpy's ``tile``: ``x`` repeated ``reps`` times along each axis (reps padded with ones in front, or x
    with length-1 axes). One broadcast and one reshape; the gradient sums the copies."""
    reps = (reps,) if is_int(reps) else tuple(reps)
    if not all(is_int(r) and r >= 0 for r in reps):
        raise _error("tile", f"reps must be ints >= 0, got {shown(reps)}", x)
    shape = _static("tile", x)
    nd = max(len(shape), len(reps))
    shape = (1,) * (nd - len(shape)) + shape
    reps = (1,) * (nd - len(reps)) + tuple(int(r) for r in reps)
    interleaved = tuple(v for d, r in zip(shape, reps) for v in (1, d))
    wide = ns.broadcast_to(ns.reshape(x, interleaved), tuple(v for d, r in zip(shape, reps) for v in (r, d)))
    return ns.reshape(wide, tuple(d * r for d, r in zip(shape, reps)))


def split(ns, x, indices_or_sections, axis=0) -> list:
    """numpy's ``split``: a list of slices of ``x`` along ``axis``, either ``N`` equal parts (an error if the
    axis does not divide evenly) or cut at the given indices."""
    a = _axis("split", x, axis)
    n = _static("split", x)[a]
    if is_int(indices_or_sections):
        parts = int(indices_or_sections)
        if parts <= 0 or n % parts:
            raise _error("split", f"cannot split axis {a} of length {n} into {parts} equal parts", x)
        cuts = [n // parts * k for k in range(1, parts)]
    else:
        cuts = list(indices_or_sections)
        if not all(is_int(c) for c in cuts):
            raise _error("split", f"indices must be ints, got {shown(indices_or_sections)}", x)
    bounds = [0, *(int(c) for c in cuts), None]
    return [ns.getitem(x, index=_slice(a, lo, hi)) for lo, hi in zip(bounds, bounds[1:])]


def pad(ns, x, pad_width, mode="constant", constant_values=0):
    """numpy's ``pad`` in ``"constant"`` mode: ``x`` inside a border of ``constant_values``. ``pad_width`` is
    numpy's: an int, a (before, after) pair, or one pair per axis. Each padded axis is one concatenate of
    x between two constant blocks (``full_like`` of a broadcast slice of x: constants made from x's shape,
    so they follow x through every transform); the gradient is x's part of the cotangent."""
    if mode != "constant":
        raise _error("pad", f"mode {shown(mode)} is not supported (only 'constant')", x)
    shape = _static("pad", x)
    try:
        widths = np.broadcast_to(np.asarray(pad_width), (len(shape), 2))
    except ValueError:
        raise _error("pad", f"pad_width {shown(pad_width)} is not an int, a pair or a pair per axis", x) from None
    if widths.dtype.kind not in "iu" or (widths < 0).any():
        raise _error("pad", f"pad_width must be ints >= 0, got {shown(pad_width)}", x)
    if not isinstance(constant_values, (int, float)) or isinstance(constant_values, bool):
        raise _error("pad", f"constant_values must be a number, got {shown(constant_values)}", x)
    if 0 in shape:
        raise _error("pad", "cannot pad an empty array", x)
    out = x
    for a, (before, after) in enumerate(widths):
        if not before and not after:
            continue
        edge = ns.getitem(out, index=_slice(a, 0, 1))
        dims = tuple(out.shape)
        parts = [ns.full_like(ns.broadcast_to(edge, dims[:a] + (int(w),) + dims[a + 1:]), float(constant_values))
                 if w else None for w in (before, after)]
        out = ns.concatenate([p for p in (parts[0], out, parts[1]) if p is not None], axis=a)
    return out


# --- losses -----------------------------------------------------------------------------------

def softmax_cross_entropy(ns, logits, targets, axis=-1):
    """-sum(targets * log_softmax(logits)) along axis, one loss per row. ``targets`` are probabilities
    (one-hot or soft: the ``softmax_cross_entropy`` op) or integer class indices of the logits' shape
    without axis (PyTorch's ``cross_entropy``: the ``sparse_softmax_cross_entropy`` op)."""
    dtype = getattr(targets, "dtype", None)
    if dtype is None:
        targets = np.asarray(targets)
        dtype = targets.dtype
    name = "sparse_softmax_cross_entropy" if np.dtype(dtype).kind in "iu" else "softmax_cross_entropy"
    return getattr(ns, name)(logits, targets, axis)


# --- x.at[key]: functional scatter (JAX's spelling) --------------------------------------------

class At:
    """``x.at``: indexing it gives an :class:`AtIndex`, whose ``add``/``set``/``get`` build new values."""

    __slots__ = ("x", "ns")

    def __init__(self, x, ns):
        self.x, self.ns = x, ns

    def __getitem__(self, key) -> AtIndex:
        try:
            spec, arrays = parse_key(key, getattr(self.x, "shape", None))
        except TwogradError as e:
            raise _error("at", str(e), self.x) from None
        return AtIndex(self.x, self.ns, spec, arrays)


class AtIndex:
    """``x.at[key]``: ``add(v)`` is x with v added at key (repeated indices accumulate, as ``np.add.at``),
    ``set(v)`` x with v written there, ``get()`` is ``x[key]``. v broadcasts to ``x[key]``'s shape. Both are
    differentiable in x and v: a scatter of v (the existing ``scatter_add`` op, whose adjoint is a gather)
    and, for set, a ``where`` that keeps x's cotangent off the overwritten places."""

    __slots__ = ("x", "ns", "spec", "arrays")

    def __init__(self, x, ns, spec, arrays):
        self.x, self.ns, self.spec, self.arrays = x, ns, spec, arrays

    def get(self):
        return self.ns.getitem(self.x, *self.arrays, index=self.spec)

    def _scattered(self, name: str, v):
        ns, x = self.ns, self.x
        target = self.get()
        try:
            if None in target.shape:
                v = ns.broadcast_like(v, target)
            elif tuple(np.shape(v)) != tuple(target.shape):
                v = _broadcast(ns, v, tuple(target.shape))
        except (TwogradError, ValueError):
            raise _error(f"at[].{name}", f"values of shape {shape_str(np.shape(v))} do not broadcast to the "
                         f"selected shape {shape_str(target.shape)}", x, v) from None
        return ns.scatter_add(v, x, *self.arrays, index=self.spec), target

    def add(self, v):
        """x with ``v`` added at the key; an element named k times gets all k additions."""
        return self.x + self._scattered("add", v)[0]

    def set(self, v):
        """x with ``v`` written at the key. An element named twice by constant index arrays is an error (which
        write wins would be arbitrary); with computed indices the writes to it add up."""
        ns, x = self.ns, self.x
        if self.arrays and all(isinstance(a, np.ndarray) for a in self.arrays) and None not in x.shape:
            if not kernels.distinct_positions(tuple(x.shape), view(self.spec).key(self.arrays)):
                raise _error("at[].set", "the index names some element more than once", x)
        scattered, target = self._scattered("set", v)
        if all(isinstance(a, np.ndarray) for a in self.arrays) and None not in x.shape:
            hit = np.zeros(tuple(x.shape), np.bool_)  # constant indices: the written places are a constant
            hit[view(self.spec).key(self.arrays)] = True
        else:
            hit = ns.ne(ns.scatter_add(ns.ones_like(target), x, *self.arrays, index=self.spec), 0)
        return ns.where(hit, scattered, x)


def _broadcast(ns, v, shape: tuple):
    """``v`` broadcast to ``shape``: numpy's view for plain numbers (a constant stays one, under every
    namespace), the op for values a namespace holds (so v's gradient is summed back)."""
    if isinstance(v, (np.ndarray, np.generic, int, float)):
        return np.broadcast_to(v, shape)
    return ns.broadcast_to(v, shape)


# --- the table of them ------------------------------------------------------------------------

FUNCTIONS: dict[str, Callable] = {f.__name__: f for f in (
    var, std, sort, topk, take, take_along_axis, nonzero, flip, roll, repeat, tile, split, pad, softmax_cross_entropy)}
"""Every function here by its numpy (or PyTorch, for topk) name."""

METHODS: Sequence[str] = ("var", "std", "take", "repeat", "flip", "nonzero")
"""Those that numpy arrays (or torch tensors, for flip) also have as methods."""


def bound(fn: Callable, ns) -> Callable:
    """``fn`` over namespace ``ns``: the user-facing function (``api.var(x)``, ``symnum.topk(t, 3)``)."""
    @functools.wraps(fn)
    def user(*args, **kwargs):
        return fn(ns, *args, **kwargs)
    return user
