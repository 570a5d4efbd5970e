"""Param checks shared by every op: what a param may be, said once.

An op's params reach its type rule two ways: from a builder (``sum(x, axis=1)``,
normalised by the op's ``bind``) and from a graph file (``common.load``). Both
end in the type rule, so the type rule checks its params with these functions
and the two ways cannot disagree: a param that is not a plain int, bool,
dtype name, shape or index spec of the expected form is refused before it can
reach numpy or the code generator. A string of Python where an axis goes is
just a wrong axis.

Each check raises :class:`ShapeError` (or :class:`DTypeError` for dtypes)
naming the param; the caller adds the op, the shapes and the site.
"""

from __future__ import annotations

import reprlib

import numpy as np

from ..errors import DTypeError, ShapeError

MAX_INT = 2 ** 62
"""The largest magnitude of an int param (an index, a bound, a diagonal offset)."""
MAX_DIM = 2 ** 40
"""The largest dim of a static shape."""
MAX_SIZE = 2 ** 40
"""The most elements a static shape may hold."""
MAX_NDIM = 64
"""numpy's limit on the number of dims."""
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                    "float16", "float32", "float64"})
"""The dtype names an op param (or a graph file) may name."""

_short = reprlib.Repr()
_short.maxstring = _short.maxother = 60
_short.maxlevel = 3


def shown(v) -> str:
    """``repr(v)``, cut short: a hostile value should not flood the message."""
    return _short.repr(v)


def _bad(name: str, v, want: str) -> ShapeError:
    return ShapeError(f"param {name!r} must be {want}, got {shown(v)}")


def is_int(v) -> bool:
    """A real integer: a Python or numpy int, never a bool."""
    cls = v.__class__
    return cls is int or (cls is not bool and isinstance(v, (int, np.integer)))


def int_param(v, name: str, lo: int = -MAX_INT, hi: int = MAX_INT) -> int:
    """``v`` as an int in ``[lo, hi]``."""
    if not is_int(v):
        raise _bad(name, v, "an int")
    v = int(v)
    if not lo <= v <= hi:
        raise ShapeError(f"param {name!r} = {shown(v)} is out of range [{lo}, {hi}]")
    return v


def bool_param(v, name: str) -> bool:
    """``v`` as a bool; ints and strings are not bools."""
    if v is True or v is False:
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    raise _bad(name, v, "a bool")


def float_param(v, name: str) -> float:
    """``v`` as a float (any, NaN and infinities included); bools and strings are not numbers."""
    if isinstance(v, (float, np.floating)) or is_int(v):
        return float(v)
    raise _bad(name, v, "a number")


def float_value(v, name: str) -> float:
    """A number param in normal form: a float (a builder's ``float(value)``)."""
    if not isinstance(v, (float, np.floating)):
        raise _bad(name, v, "a float")
    return v


_DTYPE_NAMES: dict = {}
"""dtype_param's answers by argument (a dtype, a scalar type or a name): ``np.dtype(v).name`` is a Python
property of numpy's, and a rule casting to its operand's dtype asks for it on every backward sweep."""


def dtype_param(v, name: str = "dtype") -> str:
    """The canonical name of a supported dtype, from anything numpy reads as one (a builder's argument)."""
    try:
        return _DTYPE_NAMES[v]
    except (KeyError, TypeError):  # not met yet, or unhashable (not a dtype: the checks below say so)
        pass
    try:
        d = np.dtype(v) if isinstance(v, (str, np.dtype, type)) else None
    except TypeError:
        d = None
    if d is None or d.name not in DTYPES:
        raise _dtype_error(name, v)
    if len(_DTYPE_NAMES) < 256:  # the dtypes a program meets: a handful (the bound only guards odd keys)
        _DTYPE_NAMES[v] = d.name
    return d.name


def dtype_name(v, name: str = "dtype") -> str:
    """A dtype param in normal form: the canonical name of a supported dtype (``"float32"``)."""
    if v.__class__ is not str or v not in DTYPES:
        raise _dtype_error(name, v)
    return v


def _dtype_error(name, v) -> DTypeError:
    return DTypeError(f"param {name!r} must name one of {', '.join(sorted(DTYPES))}, got {shown(v)}")


def tuple_param(v, name: str) -> tuple:
    """``v`` as a tuple (a list or tuple from a builder; a tuple in normal form)."""
    if isinstance(v, (tuple, list)):
        return tuple(v)
    raise _bad(name, v, "a tuple")


def dims_param(shape, name: str = "shape", minus_one: bool = False) -> tuple:
    """A static shape: non-negative ints (and one ``-1`` where ``minus_one``), within the limits."""
    if is_int(shape):
        shape = (shape,)
    shape = tuple_param(shape, name)
    if len(shape) > MAX_NDIM:
        raise ShapeError(f"param {name!r} has {len(shape)} dims, more than {MAX_NDIM}")
    out = tuple(int_param(d, name, -1 if minus_one else 0, MAX_DIM) for d in shape)
    if minus_one and out.count(-1) > 1:
        raise ShapeError(f"param {name!r} = {out} has more than one -1")
    size_limit(out, name)
    return out


def shape_param(shape, name: str = "shape", minus_one: bool = False) -> tuple:
    """A static-shape param in normal form: a tuple that :func:`dims_param` accepts."""
    if not isinstance(shape, tuple):
        raise _bad(name, shape, "a tuple of dims")
    return dims_param(shape, name, minus_one)


def size_limit(shape, name: str = "shape") -> None:
    """Refuse a shape of more than :data:`MAX_SIZE` known elements."""
    size = 1
    for d in shape:
        if d is not None and d > 0:
            size *= d
    if size > MAX_SIZE:
        raise ShapeError(f"param {name!r} = {shown(shape)} has {size} elements, more than {MAX_SIZE}")


def axis_param(axis, ndim: int, name: str = "axis") -> int:
    """One axis in normal form: an int in ``[0, ndim)``."""
    if not is_int(axis) or not 0 <= axis < ndim:
        raise ShapeError(f"param {name!r} must be an axis in [0, {ndim}), got {shown(axis)}")
    return int(axis)


def axes_param(axes, ndim: int, name: str = "axis") -> tuple:
    """Axes in normal form: a tuple of increasing ints in ``[0, ndim)``."""
    if not isinstance(axes, tuple):
        raise _bad(name, axes, "a tuple of axes")
    prev = -1
    for a in axes:
        if not (a.__class__ is int or is_int(a)) or not prev < a < ndim:
            raise ShapeError(f"param {name!r} must be increasing axes in [0, {ndim}), got {shown(axes)}")
        prev = a
    return axes


INDEX_ARITY = {"int": 1, "slice": 3, "new": 0, "ellipsis": 0, "array": 1}
"""Each index-entry kind and how many values follow it (read here and by :mod:`common.ops.index`)."""


def index_param(spec, narrays: int, name: str = "index") -> tuple:
    """An index spec in normal form (see :mod:`common.ops.index`, which reads it).

    Each entry is ``("int", i)``, ``("slice", start, stop, step)`` with ints or
    None and a non-zero step, ``("new",)``, ``("ellipsis",)`` (at most one) or
    ``("array", k)`` naming one of the ``narrays`` index inputs.
    """
    if not isinstance(spec, tuple):
        raise _bad(name, spec, "a tuple of index entries")
    ellipses = 0
    for s in spec:
        if not isinstance(s, tuple) or not s or INDEX_ARITY.get(s[0] if isinstance(s[0], str) else None) != len(s) - 1:
            raise _bad(name, s, "an index entry ('int', i), ('slice', start, stop, step), ('new',), "
                                "('ellipsis',) or ('array', k)")
        kind = s[0]
        if kind == "int":
            int_param(s[1], name)
        elif kind == "slice":
            for b in s[1:]:
                if b is not None:
                    int_param(b, name)
            if s[3] == 0:
                raise ShapeError(f"param {name!r}: a slice step cannot be zero")
        elif kind == "array":
            int_param(s[1], name, 0, narrays - 1)
        elif kind == "ellipsis":
            ellipses += 1
    if ellipses > 1:
        raise ShapeError(f"param {name!r}: an index can only have a single ellipsis")
    return spec


def einsum_param(spec, ndims, name: str = "spec") -> tuple[list[str], str]:
    """An einsum spec in normal form, ``"ij,jk->ik"``: one term of letters per operand, each as long
    as its operand's ndim, and output letters that are distinct and appear in some term."""
    if not isinstance(spec, str) or spec.count("->") != 1:
        raise _bad(name, spec, "an explicit einsum spec such as 'ij,jk->ik'")
    lhs, rhs = spec.split("->")
    terms = lhs.split(",")
    if not (lhs.replace(",", "") + rhs).isascii() or not all(t.isalpha() for t in terms if t) \
            or (rhs and not rhs.isalpha()):
        raise _bad(name, spec, "letters, commas and one '->'")
    if len(terms) != len(ndims) or any(len(t) != nd for t, nd in zip(terms, ndims)):
        raise ShapeError(f"param {name!r} = {shown(spec)} does not match operands of {list(ndims)} dims")
    if len(set(rhs)) != len(rhs) or not set(rhs) <= set(lhs):
        raise ShapeError(f"param {name!r} = {shown(spec)}: output letters must be distinct and in an operand")
    return terms, rhs
