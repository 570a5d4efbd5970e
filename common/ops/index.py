"""Index specs: a numpy indexing key as an op param, and the one place that reads it.

``x[1, 2:5, None, ..., idx]`` becomes a getitem node whose ``index`` param is
a tuple of entries, the format graph files hold:

* ``("int", i)``, ``("slice", start, stop, step)`` (ints or None),
  ``("new",)`` (numpy's ``None``), ``("ellipsis",)``;
* ``("array", k)``: the ``k``-th integer-array index, which is an *input* of
  the node (after ``x``), so the spec itself holds no array.

The stored tuple stays plain data: hashable, JSON, checked by
:func:`common.ops.params.index_param` and written into generated code only
as the source :class:`IndexSpec` builds from exact ints. :class:`IndexSpec` is
the tuple's canonical *view*, and every reader asks it: the impls (the numpy
key), the type rule (the result shape), printing and codegen (the key as
text), symnum's batched numbers (one int, one unit-step range). A view is made
once per distinct spec (:func:`view`), so the impls pay a dict lookup, not a
decoding, per call.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ..errors import ShapeError
from .params import INDEX_ARITY, is_int, shown
from .shapes import broadcast_shapes, shape_str

__all__ = ["FULL", "IndexSpec", "behind", "parse_key", "span", "take", "view"]

FULL = ("slice", None, None, None)
"""The entry ``:``: a whole axis."""

_CONSUMES = frozenset(("int", "slice", "array"))  # the entries that use up an axis of x


def take(i: int, axis: int = 0) -> tuple:
    """The spec of ``x[:, ..., :, i]`` with ``i`` at ``axis`` (one element along one axis)."""
    return (FULL,) * axis + (("int", i),)


def span(start: int, stop: int, axis: int = 0) -> tuple:
    """The spec of ``x[:, ..., :, start:stop]`` with the slice at ``axis``."""
    return (FULL,) * axis + (("slice", start, stop, None),)


def behind(spec: tuple, n: int = 1) -> tuple:
    """``spec`` applied behind ``n`` leading axes (a batch axis) that it leaves whole."""
    return (FULL,) * n + tuple(spec)


def _is_array_index(k) -> bool:
    return isinstance(k, (list, np.ndarray)) or (hasattr(k, "dtype") and hasattr(k, "shape")
                                                   and not isinstance(k, np.generic))


def parse_key(key, shape=None) -> tuple[tuple, list]:
    """Split a user's indexing key into a spec and its integer-array parts (the node's extra inputs).

    A boolean mask is numpy's: it stands for as many axes as it has, and
    ``x[mask]`` is ``x[mask.nonzero()]``, so it becomes one integer-array
    entry per axis it covers. A constant mask (a numpy array, a constant
    node) is read now, so its count and the result's shape are known; a
    computed one (a tensor, a node) becomes its coordinates through the
    ``argwhere`` op, whose count an IR graph knows only when it runs. With
    ``shape`` (x's) a mask whose dims differ from those of the axes it covers
    is refused here, as numpy refuses it.

    Raises :class:`ShapeError` for what the IR cannot index with: a 0-d
    boolean, float arrays, slice bounds that are not ints, more than one
    ellipsis, a mask of the wrong shape.
    """
    if not isinstance(key, tuple):
        key = (key,)
    if shape is not None:
        _check_masks(key, tuple(shape))
    spec, arrays = [], []
    for k in key:
        if k is None:
            spec.append(("new",))
        elif k is Ellipsis:
            spec.append(("ellipsis",))
        elif isinstance(k, slice):
            parts = []
            for p in (k.start, k.stop, k.step):
                if p is not None and not isinstance(p, Integral):
                    raise ShapeError(f"param 'index': slice bounds must be ints or None, got {shown(p)}")
                parts.append(None if p is None else int(p))
            spec.append(("slice", *parts))
        elif isinstance(k, (bool, np.bool_)):
            raise ShapeError("boolean scalar indices are not supported")
        elif isinstance(k, Integral):
            spec.append(("int", int(k)))
        elif _is_mask(k):
            for coords in _mask_coords(k):
                spec.append(("array", len(arrays)))
                arrays.append(coords)
        elif _is_array_index(k):
            spec.append(("array", len(arrays)))
            arrays.append(_array_index(k))
        else:
            raise ShapeError(f"unsupported index {shown(k)}")
    if sum(1 for s in spec if s[0] == "ellipsis") > 1:
        raise ShapeError("an index can only have a single ellipsis")
    return tuple(spec), arrays


def _is_mask(k) -> bool:
    """Whether a key entry is a boolean mask (an array, a list of bools, a boolean tensor or node)."""
    if isinstance(k, list):
        return bool(k) and np.asarray(k).dtype.kind == "b"
    return _is_array_index(k) and np.dtype(k.dtype).kind == "b"


def _mask_coords(mask) -> tuple:
    """``mask.nonzero()``: numbers for a constant mask, the ``argwhere`` op's columns for a computed one."""
    if isinstance(mask, list):
        mask = np.asarray(mask)
    value = mask if isinstance(mask, np.ndarray) else mask.value if getattr(mask, "is_const", False) else None
    if len(mask.shape) == 0:
        raise ShapeError("a 0-d boolean index is not supported (it adds an axis of length 0 or 1); "
                         "use where() instead")
    if isinstance(value, np.ndarray):  # constant: read now, so the count is static
        return np.nonzero(value)
    return mask.nonzero()


def _check_masks(key: tuple, shape: tuple) -> None:
    """Each mask's dims against the dims of the axes of x it covers (numpy's rule)."""
    masks = [(tuple(np.shape(k)) if isinstance(k, list) else tuple(k.shape)) if _is_mask(k) else None
             for k in key]
    widths = [0 if k is None or k is Ellipsis else 1 if dims is None else len(dims) for k, dims in zip(key, masks)]
    spare = len(shape) - sum(widths)  # the axes an ellipsis stands for
    at = 0
    for k, width, dims in zip(key, widths, masks):
        if k is Ellipsis:
            at += max(spare, 0)
        elif dims is not None:
            covered = shape[at:at + width]
            if len(covered) < width or any(None not in (a, b) and a != b for a, b in zip(dims, covered)):
                raise ShapeError(f"boolean mask of shape {shape_str(dims)} does not match axes {at} to "
                                 f"{at + width - 1} of x, of shape {shape_str(shape)} (a mask covers as many "
                                 "axes as it has, each of its own length)")
        at += width


def _array_index(k):
    """An integer-array index as the node input it becomes (a list as an array; ``[]`` as int64)."""
    dtype = np.asarray(k).dtype if isinstance(k, list) else np.dtype(k.dtype)
    if isinstance(k, list) and not k:
        return np.zeros(0, np.int64)
    if dtype.kind not in "iu":
        raise ShapeError(f"array indices must be integers, got {dtype}")
    return np.asarray(k) if isinstance(k, list) else k


def _int(v) -> int | None:
    """A spec's int as an exact ``int`` (so its ``repr`` is a literal), None kept; anything else refused."""
    if v is None:
        return None
    if not is_int(v):
        raise ValueError(f"index spec: {shown(v)} is not an int")
    return int(v)


def _entry(s) -> tuple:
    """One entry in canonical form: a known kind, its arity, exact ints."""
    if s.__class__ is not tuple or not s or s[0].__class__ is not str or INDEX_ARITY.get(s[0]) != len(s) - 1:
        raise ValueError(f"index spec: malformed entry {shown(s)}")
    kind = s[0]
    if kind == "int" or kind == "array":
        k = _int(s[1])
        if k is None or (kind == "array" and k < 0):
            raise ValueError(f"index spec: malformed entry {shown(s)}")
        return (kind, k)
    if kind == "slice":
        return (kind, *(_int(b) for b in s[1:]))
    return (kind,)


def _subscript_text(e: tuple) -> str | int:
    """An entry as it reads inside brackets (``2``, ``1:-1``, ``::2``, ``None``, ``...``); an array's number."""
    kind = e[0]
    if kind == "int":
        return repr(e[1])
    if kind == "slice":
        a, b, c = ("" if v is None else repr(v) for v in e[1:])
        return f"{a}:{b}" + (f":{c}" if c else "")
    if kind == "new":
        return "None"
    if kind == "ellipsis":
        return "..."
    return e[1]


def _value_text(e: tuple) -> str | int:
    """An entry as an expression outside brackets (``slice(1, -1, None)``); an array's number."""
    if e[0] == "slice":
        return "slice(" + ", ".join(repr(v) for v in e[1:]) + ")"
    return _subscript_text(e)


def _numpy_part(e: tuple):
    kind = e[0]
    if kind == "int":
        return e[1]
    if kind == "slice":
        return slice(*e[1:])
    if kind == "new":
        return None
    if kind == "ellipsis":
        return Ellipsis
    return None  # an array: filled in by IndexSpec.key


class IndexSpec:
    """The canonical, immutable view of one stored index spec, with what its readers need.

    Built from a spec by :func:`view` (cached); the entries are checked for
    form (a known kind, its arity, ints that are exact ``int``), so every text
    the view writes is made of ``repr``\\ s of ints, ``None``, ``...`` and
    ``slice``. Whether the ints are in range and the arrays exist is the type
    rule's business (:func:`common.ops.params.index_param` and :meth:`shape`).
    """

    __slots__ = ("spec", "entries", "has_arrays", "_key", "_arrays_at", "_only_arrays", "_one_array", "_consumed",
                 "_ellipsis", "_sub", "_val")

    def __init__(self, spec: tuple):
        if spec.__class__ is not tuple:
            raise ValueError(f"index spec: {shown(spec)} is not a tuple")
        self.spec = spec
        self.entries = entries = tuple(_entry(s) for s in spec)
        self._arrays_at = tuple((pos, e[1]) for pos, e in enumerate(entries) if e[0] == "array")
        self.has_arrays = bool(self._arrays_at)
        self._only_arrays = self.has_arrays and all(e == ("array", k) for k, e in enumerate(entries))
        self._key = key = tuple(_numpy_part(e) for e in entries)
        self._one_array = None
        if len(self._arrays_at) == 1:
            pos, k = self._arrays_at[0]
            self._one_array = (key[:pos], k, key[pos + 1:])
        self._consumed = sum(1 for e in entries if e[0] in _CONSUMES)
        self._ellipsis = sum(1 for e in entries if e[0] == "ellipsis")
        if self._ellipsis > 1:
            raise ValueError("index spec: more than one ellipsis")
        self._sub = tuple(_subscript_text(e) for e in entries)
        self._val = tuple(_value_text(e) for e in entries)

    def __repr__(self) -> str:
        return f"IndexSpec({self.spec!r})"

    # --- numbers -------------------------------------------------------------

    def key(self, arrays=()) -> tuple:
        """The numpy key, with the index arrays (the node's inputs after x) put in their places."""
        if not self._arrays_at:
            return self._key
        if self._only_arrays:  # x[i, j]: the arrays are the key
            return arrays if arrays.__class__ is tuple else tuple(arrays)
        if self._one_array is not None:  # one array among basic entries: no list
            before, k, after = self._one_array
            return (*before, arrays[k], *after)
        key = list(self._key)
        for pos, k in self._arrays_at:
            key[pos] = arrays[k]
        return tuple(key)

    def shape(self, shape: tuple, array_shapes) -> tuple:
        """numpy's result shape of ``x[key]`` for a static (maybe partly unknown) ``shape`` of x.

        Raises :class:`ShapeError` for too many indices or an int out of
        bounds of a known dim. Advanced indices (arrays, and ints alongside
        them) put their broadcast shape where the first one stood if they
        are adjacent, else in front: numpy's rule.
        """
        if self._consumed > len(shape):
            raise ShapeError(f"too many indices ({self._consumed}) for shape {shape_str(shape)}")
        rest = (FULL,) * (len(shape) - self._consumed)
        full = []
        for e in self.entries:  # an ellipsis of no axes stays, as numpy keeps it: it parts advanced indices
            full.extend((rest or (e,)) if e[0] == "ellipsis" else (e,))
        if not self._ellipsis:
            full.extend(rest)
        out, adv, adv_at, dim = [], [], [], 0
        for pos, e in enumerate(full):
            kind = e[0]
            if kind == "new":
                out.append(1)
                continue
            if kind == "ellipsis":
                continue
            d = shape[dim]
            dim += 1
            if kind == "slice":
                out.append(None if d is None else len(range(*slice(*e[1:]).indices(d))))
                continue
            if kind == "int":
                if d is not None and not -d <= e[1] < d:
                    raise ShapeError(f"index {e[1]} is out of bounds for axis {dim - 1} with size {d}")
                if not self.has_arrays:
                    continue
                adv.append(())
            else:
                adv.append(tuple(array_shapes[e[1]]))
            adv_at.append((len(out), pos))
        if not adv:
            return tuple(out)
        positions = [p for _, p in adv_at]
        adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
        at = adv_at[0][0] if adjacent else 0
        return tuple(out[:at]) + broadcast_shapes(*adv) + tuple(out[at:])

    # --- text ----------------------------------------------------------------

    def parts(self, arrays) -> list:
        """Each entry as subscript text (``2``, ``1:-1``, ``None``, ``...``); an array entry is ``arrays[k]``
        itself (a node for printing, a name for source)."""
        return [arrays[t] if t.__class__ is int else t for t in self._sub]

    def subscript(self, arrays: list[str]) -> str:
        """Source for the inside of ``x[...]``, array entries named by ``arrays``: ``0, 1:3`` (``1:,``
        for one entry, so it stays a tuple key; ``()`` for none)."""
        if not self._sub:
            return "()"
        text = ", ".join(self.parts(arrays))
        return text + "," if len(self._sub) == 1 else text

    def key_source(self, arrays: list[str]) -> str:
        """Source of the key as a tuple value, for a call: ``(slice(1, None, None), a, )``."""
        return "(" + "".join((arrays[t] if t.__class__ is int else t) + ", " for t in self._val) + ")"

    # --- one-entry specs (symnum's windowed batches) ----------------------------

    @property
    def single_int(self) -> int | None:
        """``i`` when the spec is ``x[i]`` alone, else None."""
        e = self.entries
        return e[0][1] if len(e) == 1 and e[0][0] == "int" else None

    def unit_range(self, n: int) -> tuple[int, int] | None:
        """``(start, stop)`` that ``x[a:b]`` (alone, step 1) selects of ``n`` elements, else None."""
        e = self.entries
        if len(e) != 1 or e[0][0] != "slice" or e[0][3] not in (None, 1):
            return None
        start, stop, _ = slice(e[0][1], e[0][2]).indices(n)
        return start, stop


_VIEWS: dict[tuple, IndexSpec] = {}
_MAX_VIEWS = 4096


def view(spec: tuple) -> IndexSpec:
    """The :class:`IndexSpec` of a stored spec, made once per distinct spec.

    Raises ValueError for a spec that is not of the form (a type rule's
    :func:`~common.ops.params.index_param` says what is wrong in words).
    """
    v = _VIEWS.get(spec)
    if v is None:
        v = IndexSpec(spec)
        if len(_VIEWS) >= _MAX_VIEWS:
            _VIEWS.clear()
        _VIEWS[spec] = v
    return v
