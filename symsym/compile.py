"""Compiled evaluation: a graph becomes one straight-line Python function over numpy.

The pipeline is rewrite -> schedule -> memory plan -> code generation:

* rewrite: :func:`symsym.optimize` (optional). Nodes are immutable, so the
  rewrites already work on a copy; no separate clone is needed;
* schedule: the topological order of what the outputs need;
* memory plan: each intermediate lives in a local variable (a register) that
  is released after the value's last use, either by handing the register to
  the statement that consumes it or by ``del``, so peak memory is that of the
  live values only;
* code generation: one statement per node, from the op's ``code`` template
  (a direct numpy expression) or a call to its impl, compiled once with
  :func:`compile`. Constants and impls are bound in the function's globals.

CPython's compiler takes ~10 microseconds a statement, so a graph of more than
:data:`MAX_STRAIGHT_LINE` statements (a 10^6-node chain and its gradient) runs
the same schedule and memory plan through a table-driven loop instead.
"""

from __future__ import annotations

import gc
import itertools
import re
import time
import warnings

import numpy as np

from common.errors import FeedError, GradError, GraphError, TreeError, TwogradError
from common.evaluate import check_value, evaluate
from common.gcpause import paused_gc
from common.graph import Node, toposort
from common.site import user_site
from common.tree import tree_flatten, tree_structure, tree_unflatten

from . import emit, loop_source
from .linkers import Lowered, get_linker
from .linkers.lowering import lowering
from .memplan import last_uses, register, statement
from .rewrite import optimized_order
from .trees import node_leaves

__all__ = ["MAX_STRAIGHT_LINE", "Function", "function"]

MAX_STRAIGHT_LINE = 60_000
_NP_ATTR = re.compile(r"\bnp\.(\w+)")


class _Lit:
    """A param as source text: ``str`` and ``repr`` are both the literal (or a global's name)."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __str__(self):
        return self.text

    __repr__ = __str__


class _Codegen:
    """Names for everything a generated function refers to: globals and templates."""

    def __init__(self):
        self.globals: dict = {"np": np, "np_add_reduce": np.add.reduce, **emit.KERNELS,
                              **{"np_" + u: getattr(np, u) for u in emit.UFUNCS.values()}}
        self._templates: dict = {}
        self._impls: dict = {}
        self._bound: dict = {}
        self.functions: dict = {}  # key -> (name, source): loop bodies and loops (symsym.loop_source)

    def body_source(self, order, outs, variables) -> str:
        """A loop body's ``def fn(...)`` (:mod:`symsym.loop_source` asks): the top level's schedule, memory
        plan and inlining, its 0-d values left numpy scalars (:func:`straight_line`)."""
        return straight_line(order, outs, variables, self, arrays=False)

    def bind(self, value, prefix: str) -> str:
        key = id(value)
        name = self._bound.get(key)
        if name is None:
            name = f"{prefix}{len(self._bound)}"
            self._bound[key] = name
            self.globals[name] = value
        return name

    def template(self, op):
        """The op's code template with ``np.f`` turned into a bound global ``np_f``."""
        t = self._templates.get(op)
        if t is None:
            code = lowering(op, "numpy")
            for attr in _NP_ATTR.findall(code):
                self.globals["np_" + attr] = getattr(np, attr)
            t = _NP_ATTR.sub(r"np_\1", code)
            self._templates[op] = t
        return t

    def impl(self, op) -> str:
        name = self._impls.get(op)
        if name is None:
            name = f"{op.name}_impl"
            self.globals[name] = op.impl
            self._impls[op] = name
        return name

    def params(self, params: dict) -> dict:
        out = {}
        for k, v in params.items():
            if not k.isidentifier():  # a param name becomes a keyword argument in the source
                raise GraphError(f"param name {k!r} is not an identifier")
            text = emit.literal(v)
            out[k] = _Lit(text if text is not None else self.bind(v, "p_"))
        return out

    def expression(self, node: Node, args: list[str]) -> str:
        op = node.op
        spelled = lowering(op, "numpy")
        if callable(spelled):  # an op whose spelling writes its own source (the loops: symsym.loop_source)
            text = spelled(self, node, args)
            if text is not None:
                return text
            spelled = None
        fast = emit.expression(node, args)
        if fast is not None:
            return fast
        params = node.params
        if spelled is not None:
            if not params:
                return self.template(op).format(*args, args=", ".join(args))
            return self.template(op).format(*args, args=", ".join(args), **self.params(params))
        kw = ", ".join(f"{k}={v}" for k, v in self.params(params).items())
        return f"{self.impl(op)}({', '.join(args + ([kw] if kw else []))})"


def straight_line(order, outs, variables, gen: _Codegen, arrays: bool = True) -> str:
    """Source of ``def fn(inputs...)``: one statement per node, registers reused after last use.

    With ``arrays`` a 0-d output is returned as a 0-d array; a loop body
    (:mod:`symsym.loop_source`) leaves it a numpy scalar, whose arithmetic in the
    next step is several times cheaper.

    A small value used once, by the very next statement, is written into that
    statement instead (``r8 = (r8 * np_cos(r7))``): the schedule is the same,
    and CPython compiles one statement where it would compile two.
    """
    names: dict[int, str] = {}
    for k, v in enumerate(variables):
        names[id(v)] = f"a{k}"
    last = last_uses(order, outs)
    end = emit.aliases(order, last)
    uses: dict[int, int] = {}
    for n in order:
        for i in n.inputs:
            uses[id(i)] = uses.get(id(i), 0) + 1
    steps = [k for k, n in enumerate(order) if n.op is not None]
    following = dict(zip(steps, steps[1:]))
    depth: dict[int, int] = {}
    carried: list[str] = []
    free: list[str] = []
    fresh = itertools.count()
    lines = [f"def fn({', '.join(names[id(v)] for v in variables)}):"]
    for k, n in enumerate(order):
        if n.op is None:
            if n.value is not None:
                names[id(n)] = gen.bind(_scalar(n.value), "c")
            continue
        args = [names[id(i)] for i in n.inputs]
        dead = carried
        carried = []
        for i in n.inputs:
            if last.get(id(i)) == k and i.value is None and id(i) not in depth:
                r = names[id(i)]
                if r not in dead:
                    dead.append(r)
        into = emit.inplace_input(n, k, last, end) if dead else None  # only a dying input is reusable
        target = args[into] if into is not None and args[into] in dead else None
        if target is not None:
            expr = f"np_{emit.UFUNCS[n.op.name]}({', '.join(args)}, out={target})"
        else:
            expr = gen.expression(n, args)
        if _inlined(n, k, last, uses, following, depth):
            carried = dead  # the consumer's statement releases them
            names[id(n)] = expr
            continue
        if target is not None:
            dead.remove(target)
        else:
            target = register(dead, free, lambda: f"r{next(fresh)}")
        names[id(n)] = target
        statement(lines, target, expr, dead, free)
    # numpy returns scalars for 0-d results; anything with a dimension is already an array
    rets = ", ".join(names[id(o)] if o.shape or not arrays else f"np_asarray({names[id(o)]})" for o in outs)
    gen.globals["np_asarray"] = np.asarray
    lines.append(f"    return ({rets},)")
    return "\n".join(lines) + "\n"


#: values of at most this many elements may be written into their one consumer's expression
INLINE_SIZE = 256
#: and expressions nest at most this deep (CPython's parser has a nesting limit)
INLINE_DEPTH = 8


def _inlined(n: Node, k: int, last: dict, uses: dict, following: dict, depth: dict) -> bool:
    """Whether ``n`` (statement ``k``) goes into its consumer's expression; notes its depth if so."""
    if uses.get(id(n)) != 1 or last.get(id(n)) != following.get(k) or None in n.shape:
        return False
    size = 1
    for d in n.shape:
        size *= d
    if size > INLINE_SIZE:
        return False
    inner = 0
    for i in n.inputs:
        d = depth.get(id(i), 0)
        if d > inner:
            inner = d
    if inner >= INLINE_DEPTH:
        return False
    depth[id(n)] = inner + 1
    return True


_LOOP_SOURCE = '''def fn(*args):
    r = list(regs)
    r[:len(args)] = args
    for impl, out, ins, kw, dead in program:
        r[out] = impl(*[r[i] for i in ins], **kw)
        for d in dead:
            r[d] = None
    return tuple(np_asarray(r[i]) for i in results)
'''


def _scalar(value):
    """A 0-d constant as a numpy scalar: the same dtype and promotion, and numpy's scalar fast path.

    ``1.0 - y * y`` on numpy scalars is about five times faster with a scalar ``1.0`` than with a
    0-d array, which goes through the full ufunc machinery; a scalar chain pays that per op.
    """
    return value[()] if value.__class__ is np.ndarray and value.ndim == 0 else value


def _table_driven(order, outs, variables, gen: _Codegen) -> str:
    """The same schedule and memory plan as data, for graphs too big to compile as source."""
    slot: dict[int, int] = {id(v): k for k, v in enumerate(variables)}
    regs: list = [None] * len(variables)
    last = last_uses(order, outs)
    free: list[int] = []
    program = []

    def new_slot() -> int:
        regs.append(None)
        return len(regs) - 1

    for k, n in enumerate(order):
        if n.op is None:
            if n.value is not None:
                slot[id(n)] = len(regs)
                regs.append(_scalar(n.value))
            continue
        ins = tuple([slot[id(i)] for i in n.inputs])
        dead = []
        for i, s in zip(n.inputs, ins):
            if last.get(id(i)) == k and i.value is None and s not in dead:
                dead.append(s)
        out = register(dead, free, new_slot)
        slot[id(n)] = out
        free.extend(dead)
        program.append((n.op.impl, out, ins, n.params, tuple(dead)))
    gen.globals.update(regs=regs, program=program, results=[slot[id(o)] for o in outs],
                       np_asarray=np.asarray)
    return _LOOP_SOURCE


def _built(link, lowered, inputs, outputs, outs, single, trees, out_tree, report, t0, t1) -> Function:
    """A function whose driver the linker writes (:mod:`symsym.linkers.array_api`): it checks its own arrays."""
    driver, source = link.build(lowered.order, lowered.outs, inputs)
    f = Function()
    f.inputs, f.outputs, f.graph, f.source, f.report = inputs, [outputs] if single else list(outputs), outs, \
        source, report
    f.timings = {"optimize": t1 - t0, "compile": time.perf_counter() - t1}
    f._fn, f._single, f._trees, f._out_tree, f._check = driver, single, trees, out_tree, None
    return f


class Function:
    """A compiled graph: call it with arrays for ``inputs``; get arrays for the outputs.

    ``source`` is the generated Python, ``graph`` the optimised outputs,
    ``report`` the rewrite report (or None) and ``timings`` the seconds this
    function cost to make: ``timings["optimize"]`` (rewrites and schedule) and
    ``timings["compile"]`` (code generation and Python's compile), the keys
    ``twograd bench`` reports.
    """

    __slots__ = ("inputs", "outputs", "graph", "source", "report", "timings", "_fn", "_single",
                 "_check", "_trees", "_out_tree")

    def __call__(self, *arrays):
        if self._trees is not None:
            arrays = _tree_arguments(arrays, self._trees)
        inputs = self.inputs
        if len(arrays) != len(inputs):
            raise FeedError(f"function takes {len(inputs)} inputs "
                            f"({', '.join(repr(v.name) for v in inputs)}), got {len(arrays)}")
        if self._check is None:  # a driver that checks its own arrays (the Array-API linker's)
            return self._results(self._fn(*arrays))
        args = arrays
        for a, (shape, dtype) in zip(arrays, self._check):
            if type(a) is not np.ndarray or a.shape != shape or a.dtype != dtype:
                args = [check_value(v, a) for v, a in zip(inputs, arrays)]
                break
        try:
            results = self._fn(*args)
        except TwogradError:
            raise
        except (ValueError, IndexError, TypeError, ArithmeticError):
            # the reference interpreter names the failing node and the user's line
            evaluate(self.graph, dict(zip(inputs, args)))
            raise
        return self._results(results)

    def _results(self, results):
        if self._out_tree is not None:
            return tree_unflatten(self._out_tree, list(results))
        return results[0] if self._single else list(results)

    def __repr__(self):
        return f"<symsym.Function {len(self.inputs)} inputs -> {len(self.graph)} outputs>"


def _tree_arguments(args: tuple, trees: list) -> list:
    """The arrays of a call given as pytrees (one per argument, each in its input's structure), in order."""
    if len(args) != len(trees):
        raise FeedError(f"function takes {len(trees)} arguments ({', '.join(map(repr, trees))}), got {len(args)} "
                        f"(at {user_site()})")
    flat = []
    for k, (a, want) in enumerate(zip(args, trees)):
        leaves, got = tree_flatten(a)
        if got != want:
            raise TreeError(f"function: argument {k} has structure {got!r}, but the input has {want!r} "
                            f"(* a leaf; at {user_site()})")
        flat.extend(leaves)
    return flat


def function(inputs, outputs, optimize: bool = True, passes=None,
             fast_math: bool = False, linker: str = "numpy") -> Function:
    """Compile ``outputs`` (a node or a pytree of nodes) as a function of ``inputs`` (variables).

    ``inputs`` is a list (or tuple) with one entry per argument of the
    compiled function, each a variable or a pytree of variables (a dict of
    parameters: :mod:`common.tree`); anything else (a dict, a namedtuple) is
    the one argument. The function takes each argument in its input's
    structure and returns the outputs' structure (a list of nodes gives a
    list of arrays, a dict a dict).

    ``fast_math`` lets the rewrites assume finite values (``x * 0 -> 0``); by
    default a NaN or inf fed in propagates as numpy propagates it. ``linker``
    (:mod:`symsym.linkers`) lowers the schedule: ``"numpy"`` runs every node
    as a numpy call, ``"numba"`` fuses elementwise regions into compiled loops.
    """
    collect = gc.isenabled()
    with paused_gc():
        return _function(inputs, outputs, optimize, passes, fast_math, linker, collect)


def _lowered(link, order: list[Node], outs: list[Node]):
    """The linker's schedule, or the numpy linker's (every node a numpy call, with one warning naming the
    cause) if lowering raises: a linker's failure costs speed, never the function or its values."""
    try:
        return link.lower(order, outs)
    except TwogradError:
        raise
    except Exception as e:
        warnings.warn(f"symsym.function(linker={link.name!r}) could not lower the graph ({type(e).__name__}: "
                      f"{e}); every node runs as a numpy call instead", RuntimeWarning, stacklevel=4)
        return Lowered(order, outs)


def _function(inputs, outputs, optimize, passes, fast_math=False, linker="numpy", collect=False) -> Function:
    link = get_linker(linker)
    t0 = time.perf_counter()
    single = isinstance(outputs, Node)
    out_tree = None
    if single or outputs is None:
        outs = [outputs]
    elif type(outputs) is list and all(isinstance(o, Node) or o is None for o in outputs):
        outs = list(outputs)
    else:
        outs, out_tree = node_leaves(outputs, "function", "the outputs")
    trees = None
    if type(inputs) not in (list, tuple):
        inputs = [inputs]
        trees = [tree_structure(inputs[0])]
    inputs = list(inputs)
    if not all(isinstance(v, Node) for v in inputs):
        trees = [tree_structure(v) for v in inputs]
        inputs = [n for v in inputs for n in node_leaves(v, "function", "an input")[0]]
    for v in inputs:
        if not isinstance(v, Node) or not v.is_var:
            raise FeedError(f"function inputs must be graph variables, got {v!r}")
    if len({id(v) for v in inputs}) != len(inputs):
        raise FeedError("function: an input is listed twice")
    for o in outs:
        if not isinstance(o, Node):
            raise GradError(f"function outputs must be graph nodes, got {type(o).__name__}"
                            + (" (a disconnected gradient?)" if o is None else ""))
    report = None
    if optimize:
        kwargs = {} if passes is None else {"passes": passes}
        outs, report, order = optimized_order(outs, fast_math=fast_math, **kwargs)
    else:
        order = toposort(outs[::-1])  # gradients come out last-layer first: backprop order frees most
    t1 = time.perf_counter()
    given = {id(v) for v in inputs}
    missing = [n for n in order if n.is_var and id(n) not in given]
    if missing:
        raise FeedError("function: the outputs depend on inputs that were not listed: "
                        + ", ".join(f"{v.name!r} (made at {v.site})" for v in missing))
    lowered = _lowered(link, order, outs)
    if hasattr(link, "build"):
        return _built(link, lowered, inputs, outputs, outs, single, trees, out_tree, report, t0, t1)
    gen = _Codegen()
    statements = sum(1 for n in lowered.order if n.op is not None)
    build = straight_line if statements <= MAX_STRAIGHT_LINE else _table_driven
    source = build(lowered.order, lowered.outs, inputs, gen)
    source += loop_source.functions_source(gen)
    namespace = gen.globals
    # no "__builtins__" of ours: exec gives the code Python's own, as any module has, because what it calls
    # reads them from its frame (numpy 2.5 imports ``warnings`` through ``__import__`` when a ufunc warns). A
    # reduced set was never a boundary; what keeps a graph from running code is the text itself, which holds
    # params only as validated literals (:func:`symsym.emit.literal`) and everything else as names bound in
    # its globals (tests/test_security_load.py)
    exec(compile(source, f"<symsym.function {len(outs)} outputs>", "exec"), namespace)
    if collect and lowered.kernels:
        # compiling leaves the collector hundreds of thousands of new objects to look at, and the first
        # call would pay that pass (0.1-0.3 s): pay it here, with the compile
        gc.collect()
    t2 = time.perf_counter()

    f = Function()
    f.inputs = inputs
    f.outputs = [outputs] if single else list(outputs)
    f.graph = outs
    f.source = "\n".join([source, *lowered.kernels])
    f.report = report
    f.timings = {"optimize": t1 - t0, "compile": t2 - t1}
    f._fn = namespace["fn"]
    f._single = single
    f._trees = trees
    f._out_tree = out_tree
    f._check = [(v.shape, v.dtype) for v in inputs]  # what needs no further checking
    return f
