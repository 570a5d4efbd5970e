"""What the loop and branch ops' type rules share: a body param, and a body's inputs and carries checked
against the values the op gives it.

Each raises :class:`~common.errors.ShapeError` or :class:`~common.errors.DTypeError`
with a plain message; :func:`common.graph.apply` adds the op, the shapes and
the user's line, as for every op.
"""

from __future__ import annotations

from ..body import Body, is_tuple
from ..errors import DTypeError, ShapeError, TwogradError
from ..ops.params import int_param
from ..ops.shapes import shape_str


def type_of(x) -> str:
    return f"{shape_str(x.shape)}:{x.dtype}"


def agree(a, b) -> bool:
    """Whether ``a`` and ``b`` can have the same type: dtype equal, shapes equal where both are known."""
    return a.dtype == b.dtype and len(a.shape) == len(b.shape) and all(
        i is None or j is None or i == j for i, j in zip(a.shape, b.shape))


def body_param(v, name: str) -> Body:
    """A body param: a :class:`common.body.Body`, nothing else."""
    if not isinstance(v, Body):
        raise ShapeError(f"param {name!r} must be a body (a subgraph), got {type(v).__name__}")
    for o in v.outputs:
        if is_tuple(o):
            raise ShapeError(f"param {name!r}: a body's outputs must be arrays, not a loop's tuple {o!r}")
    return v


def check_inputs(body: Body, name: str, given, what: str) -> None:
    if len(body.inputs) != len(given):
        raise ShapeError(f"param {name!r} takes {len(body.inputs)} inputs, but the op has {len(given)} {what}")
    for k, (v, x) in enumerate(zip(body.inputs, given)):
        if not agree(v, x):
            raise mismatch(f"{name} input {k} is declared {type_of(v)}, but gets {type_of(x)}", v, x)


def mismatch(message: str, a, b) -> TwogradError:
    return DTypeError(message) if a.dtype != b.dtype else ShapeError(message)


def check_carries(body: Body, name: str, carries) -> None:
    for k, c in enumerate(carries):
        out = body.outputs[k]
        if not agree(out, c):
            raise mismatch(f"the body's carry {k} goes in as {type_of(c)} but comes out as {type_of(out)} "
                            f"(carry out must equal carry in, in shape and dtype)", out, c)


def count_param(inputs, ncarry, name: str = "ncarry", lo: int = 0) -> int:
    return int_param(ncarry, name, lo, len(inputs))


def types_of(nodes) -> str:
    return ", ".join(type_of(n) for n in nodes)
