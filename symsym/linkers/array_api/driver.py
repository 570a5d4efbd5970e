"""The Array-API driver: the numpy driver's schedule and memory plan, written against a namespace argument.

The source is one statement per node, as :func:`symsym.compile.straight_line`
writes it, with the same registers released after their last use; but every
statement calls the op's spelling (:mod:`.spellings`) with ``e``, the call's
:class:`Env`, so the one text runs on whatever library the arrays come from.
Constants are ``C[k]``: the graph's numpy constants, converted once per
library and device (:meth:`Driver.env`). Params enter the text only as
:func:`symsym.emit.literal` ``repr``\\ s or as names bound in its globals.
"""

from __future__ import annotations

import numpy as np

from common.errors import DTypeError, FeedError, GraphError, TwogradError
from common.graph import Node

from ...emit import literal
from ...memplan import last_uses, register, statement
from ..lowering import lowering

LINKER = "array_api"


class UnspelledOpError(TwogradError, NotImplementedError):
    """An op the Array-API linker cannot spell (at all, or for the library of the arrays given)."""


class MixedArraysError(FeedError):
    """One call's arrays come from two libraries or live on two devices."""


def library(xp) -> str:
    """A short name for the namespace ``xp``: numpy, torch, cupy, jax, dask or the module's own name."""
    import array_api_compat as c
    for name in ("numpy", "torch", "cupy", "jax", "dask"):
        if getattr(c, f"is_{name}_namespace")(xp):
            return name
    return xp.__name__


class Env:
    """What a spelling needs of its call: the namespace, the library's name, the device."""

    __slots__ = ("xp", "lib", "device", "_dtypes")

    def __init__(self, xp, device):
        self.xp, self.lib, self.device = xp, library(xp), device
        self._dtypes: dict = {}

    def dtype(self, name) -> object:
        """The library's dtype called ``name`` (``"float64"``), or a :class:`DTypeError` if it has none."""
        name = np.dtype(name).name if name is not None else "float64"
        found = self._dtypes.get(name)
        if found is None:
            found = getattr(self.xp, name, None)
            if found is None:
                raise DTypeError(f"symsym.function(linker='array_api'): {self.lib} has no dtype {name}")
            self._dtypes[name] = found
        return found


class Driver:
    """The compiled function of one graph: checks a call's arrays, then runs the generated ``fn``."""

    def __init__(self, fn, consts: list, nodes: list[Node], inputs: list[Node]):
        self.fn, self.consts, self.nodes, self.inputs = fn, consts, nodes, inputs
        self._envs: dict = {}

    def env(self, arrays) -> tuple:
        """The call's :class:`Env` and constants, made (and every op checked) once per library and device."""
        import array_api_compat as c
        for v, a in zip(self.inputs, arrays):
            if not c.is_array_api_obj(a):
                raise FeedError(f"input {v.name!r} takes an array of an Array-API library (numpy, torch, ...), "
                                f"got {type(a).__name__} (made at {v.site})")
        try:
            xp = c.array_namespace(*arrays) if arrays else c.array_namespace(np.zeros(0))
        except TypeError as err:
            kinds = ", ".join(sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays}))
            raise MixedArraysError(f"symsym.function(linker='array_api'): the arrays must come from one "
                                   f"library; got {kinds} ({err})") from None
        devices = [c.device(a) for a in arrays]
        if any(d != devices[0] for d in devices[1:]):
            raise MixedArraysError("symsym.function(linker='array_api'): the arrays must live on one device; "
                                   f"got {', '.join(sorted({str(d) for d in devices}))}")
        device = devices[0] if devices else None
        key = (xp.__name__, str(device))
        found = self._envs.get(key)
        if found is None:
            e = Env(xp, device)
            _check_library(self.nodes, e)
            consts = tuple(xp.asarray(np.array(v), dtype=e.dtype(np.asarray(v).dtype), device=device)
                           for v in self.consts)
            found = self._envs[key] = (e, consts)
        return found

    def __call__(self, *arrays):
        e, consts = self.env(arrays)
        for v, a in zip(self.inputs, arrays):
            shape = tuple(a.shape)
            if len(shape) != len(v.shape) or any(d is not None and d != s for d, s in zip(v.shape, shape)) \
                    or a.dtype != e.dtype(v.dtype):
                raise FeedError(f"input {v.name!r} expects shape {v.shape} and dtype {v.dtype}, got shape "
                                f"{shape} and {a.dtype} (a {e.lib} array; made at {v.site})")
        return self.fn(e, consts, *arrays)


def _check_library(nodes: list[Node], e: Env) -> None:
    """Refuse, before anything runs, an op whose spelling is written for other libraries, or a dtype the
    library lacks."""
    for n in nodes:
        e.dtype(n.dtype)
        spelled = lowering(n.op, LINKER)
        libraries = getattr(spelled, "libraries", None)
        wanted = libraries(n) if libraries is not None else None
        if wanted is not None and e.lib not in wanted:
            raise UnspelledOpError(f"symsym.function(linker='array_api'): op {n.op.name!r} has no spelling for "
                                   f"{e.lib} arrays (it has one for {', '.join(sorted(wanted))}; node made at "
                                   f"{n.site})")
        needs = getattr(spelled, "requires", None)
        if needs is not None and not hasattr(e.xp, needs):
            raise UnspelledOpError(f"symsym.function(linker='array_api'): op {n.op.name!r} has no spelling for "
                                   f"{e.lib} arrays (its namespace has no {needs}; node made at {n.site})")


def unspelled(order: list[Node]) -> None:
    """Refuse at ``function()`` time a schedule with an op the linker has no spelling for."""
    missing = {}
    for n in order:
        if n.op is not None and lowering(n.op, LINKER) is None:
            missing.setdefault(n.op.name, n)
    if missing:
        where = "; ".join(f"{name!r} (made at {n.site})" for name, n in missing.items())
        raise UnspelledOpError(f"symsym.function(linker='array_api'): no Array-API spelling for op {where}; "
                               "compile it with linker='numpy' instead")


def _prefix(name: str) -> str:
    """The global name prefix of an op's spelling: its name where that is a plain ASCII word (the op table's
    names are), else a bare ``s_``, so no op name is ever written into the source unchecked."""
    return f"s_{name}_" if name.isascii() and name.isidentifier() else "s_"


def build(order: list[Node], outs: list[Node], variables: list[Node]) -> tuple[Driver, str]:
    """The driver of a schedule and its source (the memory plan is :mod:`symsym.memplan`'s)."""

    unspelled(order)
    names = {id(v): f"a{k}" for k, v in enumerate(variables)}
    glob: dict = {}
    bound: dict = {}

    def bind(value, prefix: str) -> str:
        name = bound.get(id(value))
        if name is None:
            name = bound[id(value)] = f"{prefix}{len(bound)}"
            glob[name] = value
        return name

    last = last_uses(order, outs)
    consts: list = []
    free: list[str] = []
    fresh = iter(range(len(order)))
    nodes = [n for n in order if n.op is not None]
    lines = [f"def fn(e, C{''.join(', ' + names[id(v)] for v in variables)}):"]
    for k, n in enumerate(order):
        if n.op is None:
            if n.value is not None:
                names[id(n)] = f"C[{len(consts)}]"
                consts.append(n.value)
            continue
        spelled = lowering(n.op, LINKER)
        args = [names[id(i)] for i in n.inputs]
        kw = []
        for p, v in n.params.items():
            if not p.isidentifier():
                raise GraphError(f"param name {p!r} is not an identifier")
            text = literal(v)
            kw.append(f"{p}={text if text is not None else bind(v, 'p_')}")
        if getattr(spelled, "typed", False):
            kw.append(f"out={literal(np.dtype(n.dtype).name)}")
        expr = f"{bind(spelled, _prefix(n.op.name))}(e, {', '.join(args + kw)})"
        dead = []
        for i in n.inputs:
            r = names[id(i)]
            if last.get(id(i)) == k and i.value is None and r not in dead:
                dead.append(r)
        target = register(dead, free, lambda: f"r{next(fresh)}")
        names[id(n)] = target
        statement(lines, target, expr, dead, free)
    # numpy reduces to scalars: a 0-d output is made an array of the library again
    rets = "".join((names[id(o)] if o.shape else f"e.xp.asarray({names[id(o)]})") + ", " for o in outs)
    lines.append(f"    return ({rets})")
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<symsym.function array_api {len(outs)} outputs>", "exec"), glob)
    return Driver(glob["fn"], consts, nodes, variables), source
