"""Code generation for the loop and branch ops: a Python ``for``/``while``/``if`` over generated bodies.

A body (:class:`common.body.Body`, a closed subgraph whose inputs are
variables) is compiled once, by the same straight-line generator and memory
plan as the top level, into a function of its own (``body1(a0, a1, ...)``,
returning the tuple of its outputs) defined next to ``fn`` in the generated
module. The loop op becomes one more generated function that runs it:

* ``scan``: a ``for`` over the steps (``range(n)``, or backwards), each step
  one call of the body on the carries, each sequence's slice ``xs0[t]`` and
  the loop-invariant inputs; every stacked output (and, for a scan that saves
  them for its reverse loop, every carry-in) is allocated once before the loop
  with its static shape and dtype and written per step (``ys0[t] = y0``);
* ``while_loop``: ``while cond1(...)[0]:`` around the body call, counting the
  steps when there is a bound, collecting the carry-ins when it saves them;
* ``cond``: a conditional expression, ``(body1(...) if p else body2(...))``,
  so only the taken branch's function runs;
* ``checkpoint``: one call of its body's function (its backward is another
  checkpoint, whose body runs the forward again);
* ``item``: ``r5[k]``, an element of the tuple a loop or branch returns.

Each is the op's spelling for the ``"numpy"`` linker, registered in
:mod:`symsym.linkers.lowering` as a writer ``(codegen, node, registers) ->
source`` (the op table's ``code`` templates are the other ops' spellings).

A 0-d carry runs as a numpy scalar (a body returns its 0-d values as they
come, and the loop starts with ``c0 = c0[()]``): scalar arithmetic is several
times cheaper than 0-d arrays' ufunc calls, which is most of a scalar ODE
step; the top level makes 0-d results arrays again.

Nothing is unrolled: the source has the same size whatever the number of
steps, and a step costs one Python call plus the body's own statements. As
everywhere in generated code, params reach the source only through
:func:`symsym.emit.literal`, and dtypes and helpers as bound globals. A body
the generator cannot write (a sequence output of unknown shape) falls back to
the op's impl (the reference interpreter) for that node alone.
"""

from __future__ import annotations

import numpy as np

from common.body import Body
from common.control.checkpoint_op import CHECKPOINT
from common.control.cond_op import COND
from common.control.item_op import ITEM
from common.control.scan_op import SCAN
from common.control.while_op import WHILE_LOOP
from common.graph import Node, toposort

from .emit import literal
from .linkers.lowering import register_lowering

__all__ = ["functions_source", "tuple_source"]


def _item(gen, node: Node, args: list[str]) -> str:
    return f"{args[0]}[{literal(int(node.params['index']))}]"


def _cond(gen, node: Node, args: list[str]) -> str:
    t, f = _body(gen, node.params["true_body"]), _body(gen, node.params["false_body"])
    operands = ", ".join(args[1:])
    return f"({t}({operands}) if {args[0]} else {f}({operands}))"


def _checkpoint(gen, node: Node, args: list[str]) -> str:
    return f"{_body(gen, node.params['body'])}({', '.join(args)})"


def _loop(make_function):
    """A writer for a loop op: the call of its generated function, or None (the impl runs it instead)."""
    def write(gen, node: Node, args: list[str]) -> str | None:
        fn = make_function(gen, node)
        return None if fn is None else f"{fn}({', '.join(args)})"
    return write


def _define(gen, key, prefix: str, make) -> str:
    """The name of the generated function for ``key``, writing its source with ``make(name)`` once."""
    known = gen.functions.get(key)
    if known is None:
        name = f"{prefix}{len(gen.functions)}"
        gen.functions[key] = (name, None)  # the name is taken before ``make`` defines the bodies it calls
        gen.functions[key] = known = (name, make(name))
    return known[0]


def _body(gen, body: Body) -> str:
    """The generated function computing ``body``: ``def bodyN(a0, ...)`` returning its outputs' tuple.

    The schedule is the body's toposort (its outputs in reverse, as at the top
    level); the memory plan and inlining are the top level's
    (``gen.body_source``: :func:`symsym.compile.straight_line`).
    """

    def make(name: str) -> str:
        outs = list(body.outputs)
        source = gen.body_source(toposort(outs[::-1]), outs, list(body.inputs))
        return source.replace("def fn(", f"def {name}(", 1)

    return _define(gen, ("body", id(body)), "body", make)


def _static(shape) -> bool:
    return None not in shape


def _alloc(gen, target: str, n: str, shape: tuple, dtype) -> str:
    """``target = np_empty((n, *shape), dtype)`` for a static ``shape``."""
    gen.globals["np_empty"] = np.empty
    return f"    {target} = np_empty(({n},) + {literal(tuple(shape))}, {gen.bind(np.dtype(dtype), 'dt')})"


def tuple_source(names: list[str]) -> str:
    """Source of a tuple of ``names``: ``()``, ``(a,)``, ``(a, b)``."""
    return "(" + (names[0] + "," if len(names) == 1 else ", ".join(names)) + ")"


def _scan_function(gen, node: Node) -> str | None:
    """``def scanN(c0.., xs0.., k0..)``: the loop, or None when an output's shape is not static."""
    p, ins = node.params, node.inputs
    body, nc, nx = p["body"], p["ncarry"], p["nx"]
    ys = body.outputs[nc:]
    save = bool(p.get("save"))
    carries = ins[:nc]
    if not all(_static(y.shape) for y in ys) or (save and not all(_static(c.shape) for c in carries)):
        return None
    length = p.get("length")
    if length is None:
        length = next((x.shape[0] for x in ins[nc:nc + nx] if x.shape[0] is not None), None)
    fn = _body(gen, body)
    key = ("scan", id(body), nc, nx, length, bool(p.get("reverse")), save,
           tuple((c.shape, c.dtype.str) for c in carries) if save else ())

    def make(name: str) -> str:
        cs = [f"c{i}" for i in range(nc)]
        xs = [f"xs{i}" for i in range(nx)]
        ks = [f"k{i}" for i in range(len(ins) - nc - nx)]
        lines = [f"def {name}({', '.join(cs + xs + ks)}):", *_as_scalars(cs, carries)]
        n = literal(int(length)) if length is not None else "n"
        if length is None:
            lines.append("    n = len(xs0)")
        lines += _length_checks(xs, ins[nc:nc + nx], n, length is None)
        stacked = [f"ys{j}" for j in range(len(ys))]
        kept = [f"cs{k}" for k in range(nc)] if save else []
        lines += [_alloc(gen, s, n, y.shape, y.dtype) for s, y in zip(stacked, ys)]
        lines += [_alloc(gen, s, n, c.shape, c.dtype) for s, c in zip(kept, carries)]
        lines.append(f"    for t in {f'range({n} - 1, -1, -1)' if p.get('reverse') else f'range({n})'}:")
        lines += [f"        {s}[t] = {c}" for s, c in zip(kept, cs)]
        step = [f"y{j}" for j in range(len(ys))]
        call = f"{fn}({', '.join(cs + [x + '[t]' for x in xs] + ks)})"
        lines.append(f"        {tuple_source(cs + step)} = {call}" if cs or step else f"        {call}")
        lines += [f"        {s}[t] = {y}" for s, y in zip(stacked, step)]
        lines.append(f"    return {tuple_source(cs + stacked + kept)}")
        return "\n".join(lines) + "\n"

    return _define(gen, key, "scan", make)


def _length_checks(names: list[str], xs, n: str, first_sets_n: bool) -> list[str]:
    """A check of each sequence whose leading dim is unknown until run time against the trip count ``n``:
    a shorter one would fail mid-loop, a longer one be read in part, silently. On a mismatch the function
    raises and its caller reruns the graph on the reference interpreter, which names the scan and its line."""
    return [f"    if len({x}) != {n}:\n        raise ValueError('scan: sequence lengths differ')"
            for k, (x, node) in enumerate(zip(names, xs)) if node.shape[0] is None and not (first_sets_n and k == 0)]


def _as_scalars(names: list[str], carries) -> list[str]:
    """Statements making each 0-d carry a numpy scalar: a step's arithmetic on scalars is several times
    cheaper than on 0-d arrays (the top level makes 0-d results arrays again)."""
    return [f"    {c} = {c}[()]" for c, x in zip(names, carries) if x.shape == ()]


def _stacked(parts: list, like) -> np.ndarray:
    """The carry-ins a while loop saved, stacked (an empty stack of ``like``'s type when it ran no step)."""
    if parts:
        return np.stack(parts)
    like = np.asarray(like)
    return np.empty((0, *like.shape), like.dtype)


def _while_function(gen, node: Node) -> str:
    """``def whileN(c0.., k0..)``: ``while`` the condition holds (and the bound allows), call the body."""
    p, ins = node.params, node.inputs
    nc, max_iter, save = p["ncarry"], p.get("max_iter"), bool(p.get("save"))
    test, fn = _body(gen, p["cond_body"]), _body(gen, p["body"])
    key = ("while", id(p["cond_body"]), id(p["body"]), nc, max_iter, save)

    def make(name: str) -> str:
        cs = [f"c{i}" for i in range(nc)]
        args = ", ".join(cs + [f"k{i}" for i in range(len(ins) - nc)])
        lines = [f"def {name}({args}):", *_as_scalars(cs, ins[:nc])]
        kept = [f"cs{k}" for k in range(nc)] if save else []
        lines += [f"    {s} = []" for s in kept]
        if max_iter is None:
            lines.append(f"    while {test}({args})[0]:")
        else:
            lines.append(f"    for _ in range({literal(int(max_iter))}):")
            lines.append(f"        if not {test}({args})[0]:")
            lines.append("            break")
        lines += [f"        {s}.append({c})" for s, c in zip(kept, cs)]
        lines.append(f"        {tuple_source(cs)} = {fn}({args})")
        if save:
            gen.globals["stacked_carries"] = _stacked
            kept = [f"stacked_carries({s}, {c})" for s, c in zip(kept, cs)]
        lines.append(f"    return {tuple_source(cs + kept)}")
        return "\n".join(lines) + "\n"

    return _define(gen, key, "loop", make)


def functions_source(gen) -> str:
    """The source of every body and loop function the generated ``fn`` calls, in definition order."""
    return "".join("\n" + source for _, source in gen.functions.values())


# the numpy linker's spellings of the loop and branch ops: writers called with (codegen, node, registers)
register_lowering(ITEM, "numpy", _item)
register_lowering(COND, "numpy", _cond)
register_lowering(CHECKPOINT, "numpy", _checkpoint)
register_lowering(SCAN, "numpy", _loop(_scan_function))
register_lowering(WHILE_LOOP, "numpy", _loop(_while_function))
