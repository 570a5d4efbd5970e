"""Graphs to and from JSON.

Never pickle: loading a graph file must run no code. Ops are looked up by name
in the op table (a name not in it is refused, so a file cannot point at an
arbitrary callable), params are plain JSON data, and every node is rebuilt
through its op's type rule, which checks each param exactly as it does for a
graph built from Python (:mod:`common.ops.params`). A string of Python where
an axis goes is refused like any other wrong axis, before it can reach numpy
or the code generator. Each node's declared shape and dtype must be what the
type rule infers, constants must fit their dtype, and sizes, ints and nesting
are bounded, so a file cannot make ``load`` (or a later compile) allocate
without limit. Any refusal is a :class:`SerializationError` naming the node.
"""

from __future__ import annotations

import inspect
import json
import math
import os

import numpy as np

from .body import Body, is_tuple
from .errors import SerializationError, TwogradError
from .graph import Node, apply, toposort
from .ops import OPS
from .ops.params import DTYPES, MAX_DIM, MAX_INT, MAX_NDIM, MAX_SIZE, is_int, shown
from .site import Site

FORMAT = "twograd-graph"
VERSION = 1
MAX_DEPTH = 32
"""How deeply a param value may nest tuples."""


class FileSite(Site):
    """Where a loaded node without a recorded site came from: the file and the node's index."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.filename}:node {self.lineno}"

    __repr__ = __str__


def _enc(v, bodies: dict[int, int]):
    """A param value's JSON form. A body is written in full where first met and as ``{"body_ref": k}``
    after that (``bodies``: id -> k, in the order their writing completed), so a body two loop nodes
    share (a loop and its saving copy, the branches' shared inputs) is one body again when loaded."""
    if isinstance(v, tuple):
        return {"tuple": [_enc(x, bodies) for x in v]}
    if isinstance(v, Body):
        k = bodies.get(id(v))
        if k is not None:
            return {"body_ref": k}
        text = {"body": _body_json(v, bodies)}
        bodies[id(v)] = len(bodies)
        return text
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SerializationError(f"cannot serialize param value {v!r}")


def _body_json(body: Body, bodies: dict[int, int]) -> dict:
    """A body as its own node list (its own index space), its inputs and outputs indices into it."""
    nodes, index = _records([*body.outputs, *body.inputs], bodies)
    return {"nodes": nodes, "inputs": [index[id(v)] for v in body.inputs],
            "outputs": [index[id(o)] for o in body.outputs]}


def _body(v, name: str, depth: int, bodies: list[Body]) -> Body:
    """A body param from its JSON form, every node rebuilt and checked as at the top level."""
    if not isinstance(v, dict) or set(v) != {"nodes", "inputs", "outputs"}:
        raise SerializationError(f"param {name!r}: a body must have exactly 'nodes', 'inputs' and 'outputs'")
    recs, ins, outs = v["nodes"], v["inputs"], v["outputs"]
    if not isinstance(recs, list) or not isinstance(ins, list) or not isinstance(outs, list):
        raise SerializationError(f"param {name!r}: a body's 'nodes', 'inputs' and 'outputs' must be lists")
    try:
        built = _build(recs, "<body>", depth + 1, bodies)
    except SerializationError as e:
        raise SerializationError(f"param {name!r}: {e}") from None
    for i in [*ins, *outs]:
        if not (is_int(i) and 0 <= i < len(built)):
            raise SerializationError(f"param {name!r}: a body's inputs and outputs must refer to its nodes")
    try:
        body = Body([built[i] for i in ins], [built[i] for i in outs])
    except TwogradError as e:
        raise SerializationError(f"param {name!r}: not a valid body: {e}") from None
    bodies.append(body)
    return body


def _dec(v, name: str, depth: int = 0, bodies: list[Body] | None = None):
    """A param value from its JSON form; recursion (tuples, bodies in bodies) is bounded by :data:`MAX_DEPTH`."""
    if isinstance(v, dict):
        if depth >= MAX_DEPTH:
            raise SerializationError(f"param {name!r} nests tuples or bodies more than {MAX_DEPTH} deep")
        if set(v) == {"body"} and bodies is not None:
            return _body(v["body"], name, depth, bodies)
        if set(v) == {"body_ref"} and bodies is not None:
            k = v["body_ref"]
            if not (is_int(k) and 0 <= k < len(bodies)):
                raise SerializationError(f"param {name!r}: body_ref {shown(k)} is not a body read before it")
            return bodies[k]
        if set(v) != {"tuple"} or not isinstance(v["tuple"], list):
            raise SerializationError(f"bad param value {shown(v)} for param {name!r}")
        return tuple(_dec(x, name, depth + 1, bodies) for x in v["tuple"])
    if is_int(v) and abs(v) > MAX_INT:
        raise SerializationError(f"param {name!r} = {shown(v)} is larger than {MAX_INT}")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SerializationError(f"bad param value {shown(v)} for param {name!r}")


def to_json(outputs) -> dict:
    """The graph under ``outputs`` (a node or a list) as JSON-ready data."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    nodes, index = _records(outs, {})
    return {"format": FORMAT, "version": VERSION, "single": single,
            "nodes": nodes, "outputs": [index[id(o)] for o in outs]}


def _records(outs: list[Node], bodies: dict[int, int]) -> tuple[list[dict], dict[int, int]]:
    """The JSON records of the nodes under ``outs`` in topological order, and each node's index
    (``bodies``: the bodies written so far, see :func:`_enc`)."""
    order = toposort(outs)
    index = {id(n): k for k, n in enumerate(order)}
    nodes = []
    for n in order:
        rec = {"name": n.name, "site": str(n.site) if n.site and not isinstance(n.site, FileSite) else None}
        if n.is_var:
            rec.update(kind="var", shape=list(n.shape), dtype=n.dtype.name)
        elif n.is_const:
            rec.update(kind="const", dtype=n.dtype.name, shape=list(n.shape), value=n.value.tolist())
        else:
            rec.update(kind="apply", op=n.op.name, inputs=[index[id(i)] for i in n.inputs],
                       params={k: _enc(v, bodies) for k, v in n.params.items()}, shape=list(n.shape),
                       dtype="tuple" if is_tuple(n) else n.dtype.name)
        nodes.append(rec)
    return nodes, index


def from_json(data, source: str = "<json>") -> Node | list[Node]:
    """Rebuild a graph from :func:`to_json` data, checking everything.

    ``source`` names where the data came from: a node whose record has no
    site is reported as made at ``source:node k``.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SerializationError("not a twograd graph (missing 'format': 'twograd-graph')")
    if data.get("version") != VERSION:
        raise SerializationError(f"unsupported graph format version {shown(data.get('version'))}")
    recs, outs = data.get("nodes"), data.get("outputs")
    if not isinstance(recs, list) or not isinstance(outs, list):
        raise SerializationError("'nodes' and 'outputs' must be lists")
    built = _build(recs, source, 0, [])
    if not all(is_int(i) and 0 <= i < len(built) for i in outs):
        raise SerializationError("'outputs' refers to nodes that do not exist")
    result = [built[i] for i in outs]
    return result[0] if data.get("single") is True and len(result) == 1 else result


def _build(recs: list, source: str, depth: int, bodies: list[Body]) -> list[Node]:
    """The nodes of a node list (the file's, or a body's at nesting ``depth``), each checked in turn
    (``bodies``: those read so far, in order, which a ``body_ref`` names)."""
    built: list[Node] = []
    for k, rec in enumerate(recs):
        try:
            built.append(_node(rec, built, FileSite(source, k), depth, bodies))
        except SerializationError as e:
            raise SerializationError(f"node {k}: {e}") from None
        except TwogradError as e:  # the type rule's refusal
            raise SerializationError(f"node {k} ({rec.get('op')}) is inconsistent: {e}") from None
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError, RecursionError) as e:
            raise SerializationError(f"node {k} is malformed: {type(e).__name__}: {shown(str(e))}") from None
    return built


def _node(rec, built, here: FileSite, depth: int, bodies: list[Body]) -> Node:
    if not isinstance(rec, dict):
        raise SerializationError("a node must be an object")
    kind, name, site = rec.get("kind"), rec.get("name"), _site(rec.get("site"), here)
    if name is not None and not isinstance(name, str):
        raise SerializationError("'name' must be a string")
    if kind == "var":
        return Node(None, (), {}, _shape(rec.get("shape"), unknown=True), _dtype(rec.get("dtype")), name, None, site)
    if kind == "const":
        arr = _constant(rec.get("value"), _dtype(rec.get("dtype")))
        if arr.shape != _shape(rec.get("shape"), unknown=False):
            raise SerializationError(f"constant value does not have shape {shown(rec.get('shape'))}")
        arr.setflags(write=False)
        return Node(None, (), {}, arr.shape, arr.dtype, name, arr, site)
    if kind == "apply":
        return _apply(rec, built, site, name, depth, bodies)
    raise SerializationError(f"unknown node kind {shown(kind)}")


def _apply(rec, built, site, name, depth: int, bodies: list[Body]) -> Node:
    """An op's node, rebuilt through its type rule, which checks every param."""
    op = OPS.get(rec.get("op")) if isinstance(rec.get("op"), str) else None
    if op is None:
        raise SerializationError(f"unknown op {shown(rec.get('op'))}: only ops of the op table can be loaded")
    inputs, params = rec.get("inputs"), rec.get("params", {})
    if not isinstance(inputs, list) or not all(is_int(i) and 0 <= i < len(built) for i in inputs):
        raise SerializationError(f"{op.name}: inputs must refer to earlier nodes, got {shown(inputs)}")
    if op.nin is not None and len(inputs) != op.nin:
        raise SerializationError(f"{op.name} takes {op.nin} inputs, got {len(inputs)}")
    if not isinstance(params, dict):
        raise SerializationError(f"{op.name}: 'params' must be an object")
    for key in params:
        if key not in op.params:
            raise SerializationError(f"{op.name}: param {shown(key)} is not one of its params "
                                     f"({', '.join(op.params) or 'none'})")
    params = {key: _dec(v, key, depth, bodies) for key, v in params.items()}
    for key in _required(op):
        if key not in params:
            raise SerializationError(f"{op.name}: param {key!r} is missing")
    node = apply(op, tuple(built[i] for i in inputs), params, site=site, name=name)
    _limits(node.shape, f"{op.name}'s result shape")
    if "shape" in rec and _shape(rec["shape"], unknown=True) != node.shape:
        raise SerializationError(f"{op.name}: declared shape {shown(rec['shape'])} is not the inferred "
                                 f"{list(node.shape)}")
    if "dtype" in rec and (is_tuple(node) != (rec["dtype"] == "tuple") or (
            not is_tuple(node) and _dtype(rec["dtype"]) != node.dtype)):
        raise SerializationError(f"{op.name}: declared dtype {shown(rec['dtype'])} is not the inferred {node.dtype}")
    return node


_REQUIRED: dict = {}


def _required(op) -> tuple:
    """The params ``op``'s type rule cannot do without (those with no default)."""
    names = _REQUIRED.get(op.name)
    if names is None:
        sig = inspect.signature(op.infer).parameters
        names = _REQUIRED[op.name] = tuple(p for p in op.params if sig[p].default is inspect.Parameter.empty)
    return names


def _site(text, here: FileSite) -> Site:
    """The recorded ``file:line``, else where in the file the node is."""
    if isinstance(text, str) and ":" in text:
        f, _, line = text.rpartition(":")
        if line.isascii() and line.isdigit() and len(line) < 10:
            return Site(f, int(line))
    return here


def _shape(dims, unknown: bool) -> tuple:
    """A declared shape: a list of non-negative ints (or None where ``unknown``), within the limits."""
    if not isinstance(dims, list) or not all(
            (d is None and unknown) or (is_int(d) and 0 <= d <= MAX_DIM) for d in dims):
        raise SerializationError(f"bad shape {shown(dims)}: dims are ints in [0, {MAX_DIM}]"
                                 + (" or null" if unknown else ""))
    shape = tuple(dims)
    _limits(shape, "shape")
    return shape


def _limits(shape: tuple, what: str) -> None:
    if len(shape) > MAX_NDIM or any(d is not None and d > MAX_DIM for d in shape):
        raise SerializationError(f"{what} {shown(shape)} has over {MAX_NDIM} dims or a dim over {MAX_DIM}")
    if math.prod(d for d in shape if d) > MAX_SIZE:
        raise SerializationError(f"{what} {shown(shape)} has more than {MAX_SIZE} elements")


def _dtype(name) -> np.dtype:
    if not isinstance(name, str) or name not in DTYPES:
        raise SerializationError(f"unknown dtype {shown(name)}")
    return np.dtype(name)


def _constant(value, dtype: np.dtype) -> np.ndarray:
    """A constant's array, refused unless every value fits ``dtype`` as it is (numpy would wrap or round)."""
    try:
        raw = np.array(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise SerializationError("constant value is not a (rectangular) nested list of numbers") from None
    kinds = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}[dtype.kind]
    if raw.size and raw.dtype.kind not in kinds:
        raise SerializationError(f"constant values of kind {raw.dtype} do not fit dtype {dtype}")
    if raw.size and dtype.kind in "iu":
        info = np.iinfo(dtype)
        if raw.min() < info.min or raw.max() > info.max:
            raise SerializationError(f"constant values out of the range of {dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        arr = raw.astype(dtype)
    if dtype.kind == "f" and raw.size and not np.array_equal(np.isfinite(arr), np.isfinite(raw)):
        raise SerializationError(f"constant values overflow {dtype}")
    return arr


class _Overflow:
    """A float literal too large for a float (``1e400``): no value, so anything using it is refused."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _float(text: str):
    v = float(text)
    return v if math.isfinite(v) else _Overflow(text)


def save(outputs, path: str | os.PathLike) -> None:
    """Write the graph under ``outputs`` to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_json(outputs), f)


def load(path: str | os.PathLike) -> Node | list[Node]:
    """Read a graph written by :func:`save`; a bad file raises SerializationError.

    Nodes whose records have no site are reported as made at ``path:node k``.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f, parse_float=_float)
    except ValueError as e:  # bad JSON, bad UTF-8, an int literal of thousands of digits
        raise SerializationError(f"{path}: not valid JSON: {shown(str(e))}") from None
    except RecursionError:
        raise SerializationError(f"{path}: JSON nested too deeply") from None
    except OSError as e:  # missing, a directory, unreadable
        raise SerializationError(f"{path}: cannot read the graph file: {e.strerror or e}") from None
    return from_json(data, str(path))
