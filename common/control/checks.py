"""What the loop and branch ops' type rules share: a body param, and a body's inputs and carries checked
against the values the op gives it.

Each raises :class:`~common.errors.ShapeError` or :class:`~common.errors.DTypeError`
with a plain message; :func:`common.graph.apply` adds the op, the shapes and
the user's line, as for every op.
"""

from __future__ import annotations

from ..body import Body, is_tuple
from ..errors import DTypeError, ShapeError, TwogradError
from ..ops import OPS
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


class _Application:
    """An op's inputs and params where a node is read (an ``outputs`` trait), before the node exists."""

    __slots__ = ("inputs", "params")

    def __init__(self, inputs, params):
        self.inputs, self.params = inputs, params


def primal_param(v, op: str, inputs, params: dict) -> None:
    """A tangent loop's ``primal`` param (None, or what its JVP rule records), checked as a builder makes it.

    A tangent loop computes its primal loop's outputs too. ``primal`` says
    which loop that is: ``(params, positions, outputs)``, the primal's params
    but ``save`` and ``primal`` as ``(name, value)`` pairs, the positions of
    the tangent loop's inputs that are the primal's inputs (in order), and
    ``(primal output, own output)`` pairs. symsym's loop rewrites read it to
    run the loop once when a graph holds both. The primal's type rule must
    accept those inputs and params, and each pair's outputs must have one type.
    """
    if v is None:
        return
    if not (isinstance(v, tuple) and len(v) == 3 and all(isinstance(x, tuple) for x in v)):
        raise ShapeError("param 'primal' must be a tuple (params, positions, outputs) of tuples")
    pairs, positions, outputs = v
    names = [k for k in OPS[op].params if k not in ("save", "primal")]
    if not all(isinstance(kv, tuple) and len(kv) == 2 and kv[0] in names for kv in pairs) or \
            len({kv[0] for kv in pairs}) != len(pairs):
        raise ShapeError(f"param 'primal': its params must be (name, value) pairs of {op}'s params "
                         f"({', '.join(names)}), each once")
    for i in positions:
        int_param(i, "primal", 0, len(inputs) - 1)
    if len(set(positions)) != len(positions):
        raise ShapeError("param 'primal': an input position is given twice")
    primal = _Application(tuple(inputs[i] for i in positions), dict(pairs))
    OPS[op].infer(*primal.inputs, **primal.params)
    theirs, mine = OPS[op].outputs(primal), OPS[op].outputs(_Application(inputs, params))
    for kv in outputs:
        if not (isinstance(kv, tuple) and len(kv) == 2):
            raise ShapeError("param 'primal': its outputs must be (primal output, own output) pairs")
        k, j = int_param(kv[0], "primal", 0, len(theirs) - 1), int_param(kv[1], "primal", 0, len(mine) - 1)
        (a_shape, a_dtype), (b_shape, b_dtype) = theirs[k], mine[j]
        if a_dtype != b_dtype or len(a_shape) != len(b_shape) or any(
                i is not None and j is not None and i != j for i, j in zip(a_shape, b_shape)):
            raise ShapeError(f"param 'primal': the primal's output {k} and output {j} differ in type")
