"""Graphs to and from JSON.

Never pickle: loading a graph file must run no code. Ops are looked up by name
in the op table (a name not in it is refused, so a file cannot point at an
arbitrary callable), params are plain JSON data, and every node is rebuilt
through its op's type rule, so an inconsistent file fails with a clear error.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .api import apply
from .errors import SerializationError, TwogradError
from .graph import Node, toposort
from .ops import OPS
from .site import Site

FORMAT = "twograd-graph"
VERSION = 1
_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
           "float16", "float32", "float64"}


def _enc(v):
    if isinstance(v, tuple):
        return {"tuple": [_enc(x) for x in v]}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SerializationError(f"cannot serialize param value {v!r}")


def _dec(v):
    if isinstance(v, dict):
        if set(v) != {"tuple"} or not isinstance(v["tuple"], list):
            raise SerializationError(f"bad param value {v!r}")
        return tuple(_dec(x) for x in v["tuple"])
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise SerializationError(f"bad param value {v!r}")


def to_json(outputs) -> dict:
    """The graph under ``outputs`` (a node or a list) as JSON-ready data."""
    single = isinstance(outputs, Node)
    outs = [outputs] if single else list(outputs)
    order = toposort(outs)
    index = {id(n): k for k, n in enumerate(order)}
    nodes = []
    for n in order:
        rec = {"name": n.name, "site": str(n.site) if n.site else None}
        if n.is_var:
            rec.update(kind="var", shape=list(n.shape), dtype=n.dtype.name)
        elif n.is_const:
            rec.update(kind="const", dtype=n.dtype.name, shape=list(n.shape), value=n.value.tolist())
        else:
            rec.update(kind="apply", op=n.op.name, inputs=[index[id(i)] for i in n.inputs],
                       params={k: _enc(v) for k, v in n.params.items()})
        nodes.append(rec)
    return {"format": FORMAT, "version": VERSION, "single": single,
            "nodes": nodes, "outputs": [index[id(o)] for o in outs]}


def _site(text):
    if not isinstance(text, str) or ":" not in text:
        return None
    f, _, line = text.rpartition(":")
    return Site(f, int(line)) if line.isdigit() else None


def _dtype(name):
    if name not in _DTYPES:
        raise SerializationError(f"unknown dtype {name!r}")
    return np.dtype(name)


def from_json(data) -> Node | list[Node]:
    """Rebuild a graph from :func:`to_json` data, checking everything."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise SerializationError("not a twograd graph (missing 'format': 'twograd-graph')")
    if data.get("version") != VERSION:
        raise SerializationError(f"unsupported graph format version {data.get('version')!r}")
    recs, outs = data.get("nodes"), data.get("outputs")
    if not isinstance(recs, list) or not isinstance(outs, list):
        raise SerializationError("'nodes' and 'outputs' must be lists")
    built: list[Node] = []
    for k, rec in enumerate(recs):
        try:
            built.append(_node(rec, built))
        except SerializationError as e:
            raise SerializationError(f"node {k}: {e}") from None
        except TwogradError as e:
            raise SerializationError(f"node {k} ({rec.get('op', rec.get('kind'))}) is inconsistent: {e}") from None
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SerializationError(f"node {k} is malformed: {type(e).__name__}: {e}") from None
    try:
        result = [built[i] for i in outs]
    except (IndexError, TypeError):
        raise SerializationError("'outputs' refers to nodes that do not exist") from None
    return result[0] if data.get("single") and len(result) == 1 else result


def _node(rec, built) -> Node:
    if not isinstance(rec, dict):
        raise SerializationError("a node must be an object")
    kind, name, site = rec.get("kind"), rec.get("name"), _site(rec.get("site"))
    if name is not None and not isinstance(name, str):
        raise SerializationError("'name' must be a string")
    if kind == "var":
        shape = tuple(rec["shape"])
        if not all(d is None or (isinstance(d, int) and d >= 0) for d in shape):
            raise SerializationError(f"bad shape {rec['shape']!r}")
        return Node(None, (), {}, shape, _dtype(rec["dtype"]), name, None, site)
    if kind == "const":
        arr = np.array(rec["value"], dtype=_dtype(rec["dtype"]))
        if list(arr.shape) != rec["shape"]:
            raise SerializationError(f"constant value does not have shape {rec['shape']!r}")
        arr.setflags(write=False)
        return Node(None, (), {}, arr.shape, arr.dtype, name, arr, site)
    if kind == "apply":
        op = OPS.get(rec["op"]) if isinstance(rec["op"], str) else None
        if op is None:
            raise SerializationError(f"unknown op {rec['op']!r}: only ops of the op table can be loaded")
        inputs = rec["inputs"]
        if not all(isinstance(i, int) and 0 <= i < len(built) for i in inputs):
            raise SerializationError("inputs must refer to earlier nodes")
        if not isinstance(rec["params"], dict):
            raise SerializationError("'params' must be an object")
        params = {k: _dec(v) for k, v in rec["params"].items()}
        return apply(op, tuple(built[i] for i in inputs), params, site=site, name=name)
    raise SerializationError(f"unknown node kind {kind!r}")


def save(outputs, path: str | os.PathLike) -> None:
    """Write the graph under ``outputs`` to ``path`` as JSON."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(to_json(outputs), f)


def load(path: str | os.PathLike) -> Node | list[Node]:
    """Read a graph written by :func:`save`; a bad file raises SerializationError."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SerializationError(f"{path}: not valid JSON: {e}") from None
    return from_json(data)
