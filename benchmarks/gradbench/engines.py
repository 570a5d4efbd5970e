"""The backends behind ``twograd gradbench --backend``: the benchmark's columns, under the same names.

Each engine's :meth:`prepare` turns a :class:`~.functions.Function` (a model
written once against a namespace, and what to derive from it) and the
input's shapes into ``run(arrays) -> list[np.ndarray]`` plus the one-off
timings paid to get it (``build``, ``compile``), which the tool reports apart
from the runs.

- ``symnum``: define-by-run (the Torch style): every run calls the model on
  ``symnum`` tensors, recording a tape that ``symnum.grad`` sweeps backwards;
  forward mode is ``symnum.jvp``'s dual numbers, and nested derivatives are
  the tape's own (``create_graph``) and the duals' levels. Nothing is built
  once, so there is no one-off to report.
- ``symnum-static``: the model's IR graph, built once per shape, run by
  ``symnum.gradients``' program (the Caffe style), scheduled once and cached.
  That program gives first derivatives, of the value or of tangents the
  graph holds: a Hessian-vector product is the program's gradient of the
  graph's own directional derivative (a tangent built by
  :func:`common.forward_sweeps.tangent_sweep`, reverse over forward), and
  forward mode is such tangents evaluated.
- ``symsym`` and ``symsym-numba``: the graph's derivative nodes are added once
  (``symsym.grad``, forward over reverse with ``symsym.jvp``) and compiled by
  the numpy or numba linker; each run executes the compiled function.

Derivatives inside the model (saddle's and particle's, taken in the body of
a loop that is itself differentiated) are graph on both graph paradigms,
made by the IR's shared sweeps (:func:`graph_derivative`), and tape
transforms on the tape (:func:`tape_derivative`).

The value and first-derivative paths of the graph engines are
:meth:`benchmarks.backends.GraphBackend.program`, the code ``twograd bench``
times, so the two harnesses cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from common import api as T
from common.backward import sweep
from common.forward_sweeps import tangent_sweep
from common.graph import Node, toposort

from ..backends import BACKENDS, GraphBackend

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


def graph_of(function, shapes: dict[str, tuple], statics: tuple) -> tuple[Node, list[Node], list[Node]]:
    """The model's IR graph for these shapes: (output, variables in input order, the ``wrt`` variables)."""
    variables = {k: T.var(k, shape) for k, shape in shapes.items()}
    out = function.model(T, variables, statics)
    return out, list(variables.values()), [variables[w] for w in function.differentiated(variables)]


def graph_tangent(y: Node, x: Node | list[Node], v) -> Node:
    """dy/dx along ``v`` as a node of the graph (forward mode over the graph, one sweep from ``x``); ``x``
    and ``v`` may be lists (the tangent along all of them at once)."""
    xs, vs = ([x], [v]) if isinstance(x, Node) else (x, v)
    tangents = {id(x): T.const(np.asarray(v, dtype=x.dtype)) for x, v in zip(xs, vs, strict=True)}
    tangent_sweep(toposort([y]), tangents, T.symbolic)
    out = tangents.get(id(y))
    return T.zeros_like(y) if out is None else out


class GraphEngine:
    """A graph backend as the tool calls it: the IR graph built once per shape, then run."""

    def __init__(self, name: str, backend: GraphBackend):
        self.name = name
        self.backend = backend

    def prepare(self, function, shapes: dict[str, tuple], statics: tuple) -> tuple[Run, list[dict]]:
        start = time.perf_counter_ns()
        if function.derive == "nested":
            nested = function.model
            graphs = [nested_graph(fn, program_shapes, nested.inner) for fn, program_shapes in nested.programs]
            built = time.perf_counter_ns()
            programs = [self.value_and_grad(out, xs, nested.outer) for out, xs in graphs]
            run = lambda arrays: nested.drive(programs, arrays)
            done = time.perf_counter_ns()
            return run, self.one_off(start, built, done)
        out, variables, wrt = graph_of(function, shapes, statics)
        built = time.perf_counter_ns()
        if function.derive == "jvp":
            run = self.tangents(out, variables, wrt, function.seeds(shapes, statics))
        else:
            run = self.derive(function.derive, out, variables, wrt)
        done = time.perf_counter_ns()
        return run, self.one_off(start, built, done)

    def one_off(self, start: int, built: int, done: int) -> list[dict]:
        """The reported one-offs: ``build`` (the graph), ``compile`` (what getting the program cost)."""
        timings = [{"name": "build", "nanoseconds": built - start}]
        if self.backend.compiles:
            timings.append({"name": "compile", "nanoseconds": done - built})
        return timings

    def derive(self, derive: str, out: Node, variables: list[Node], wrt: list[Node]) -> Run:
        if derive == "value":
            forward = self.backend.program(out, variables, []).forward
            return lambda arrays: [forward(arrays)]
        if derive == "grad":
            return self.backend.program(out, variables, wrt).grad
        if derive == "grad_hdiag":
            return self.grad_hdiag(out, variables, wrt[0])
        raise ValueError(f"{self.name}: no derivative {derive!r}")

    def grad_hdiag(self, cost: Node, variables: list[Node], x: Node) -> Run:
        """``[g, H 1]``: the gradient and the Hessian times ones (its diagonal when H is diagonal)."""
        import symnum

        tangent = graph_tangent(cost, x, np.ones(x.shape))     # <grad f, 1> as a graph
        gradients = symnum.gradients
        return lambda arrays: [gradients(out, x, dict(zip(variables, arrays, strict=True)))
                               for out in (cost, tangent)]

    def tangents(self, out: Node, variables: list[Node], wrt: list[Node], seeds: list[list]) -> Run:
        """``[J s for s in seeds]``: forward mode along each seed (one tangent per ``wrt``), one program."""
        import symnum

        outputs = [graph_tangent(out, *moving(wrt, seed)) for seed in seeds]
        read = {id(node) for node in toposort(outputs)}          # a derivative may not read every input
        fed = [k for k, v in enumerate(variables) if id(v) in read]
        return lambda arrays: symnum.evaluate(outputs, {variables[k]: arrays[k] for k in fed})

    def value_and_grad(self, out: Node, xs: list[Node], mode: str) -> Callable:
        """``arrays -> (value, gradient with respect to xs[0])`` of the graph: the program's reverse sweep
        (``"r"``), or forward mode, a tangent per element of ``xs[0]`` evaluated with the value (``"f"``)."""
        import symnum

        x = xs[0]
        if mode == "r":
            evaluate, gradients = symnum.evaluate, symnum.gradients
            return lambda arrays: (lambda feed: (evaluate(out, feed), gradients(out, x, feed)))(
                dict(zip(xs, arrays, strict=True)))
        outputs = [out, *(graph_tangent(out, x, e) for e in basis(x))]
        return lambda arrays: (lambda got: (got[0], np.reshape(got[1:], x.shape)))(
            symnum.evaluate(outputs, dict(zip(xs, arrays, strict=True))))


class SymSymEngine(GraphEngine):
    """symsym's columns: second derivatives are more graph, compiled with the first."""

    def grad_hdiag(self, cost, variables, x):
        import symsym

        g = symsym.grad(cost, x)
        hv = symsym.jvp(g, [x], [T.const(np.ones(x.shape))])   # forward over reverse
        fn = symsym.function(variables, [g, hv], linker=self.backend.linker)
        return lambda arrays: fn(*arrays)

    def tangents(self, out, variables, wrt, seeds):
        import symsym

        outputs = [(lambda xs, vs: symsym.jvp(out, xs, [T.const(v) for v in vs]) if xs else T.zeros_like(out))(
            *moving(wrt, seed)) for seed in seeds]
        fn = symsym.function(variables, outputs, linker=self.backend.linker)
        return lambda arrays: fn(*arrays)

    def value_and_grad(self, out, xs, mode):
        import symsym

        x = xs[0]
        if mode == "r":
            derivative = [symsym.grad(out, x)]
        else:
            derivative = [symsym.jvp(out, [x], [T.const(e)]) for e in basis(x)]
        fn = symsym.function(xs, [out, *derivative], linker=self.backend.linker)
        return lambda arrays: (lambda got: (got[0], np.reshape(got[1:], x.shape)))(fn(*arrays))


class TapeEngine:
    """symnum's define-by-run column: each run records a fresh tape; there is no one-off."""

    name = "symnum"

    def prepare(self, function, shapes: dict[str, tuple], statics: tuple) -> tuple[Run, list[dict]]:
        import symnum

        names = list(shapes)
        wrt = [names.index(w) for w in function.differentiated(names)]
        model = function.model

        def call(arrays):
            return model(symnum, dict(zip(names, arrays, strict=True)), statics)

        def tensors(arrays, leaves=()):
            return [symnum.tensor(a, requires_grad=i in leaves) for i, a in enumerate(arrays)]

        if function.derive == "nested":
            nested = function.model
            programs = [tape_value_and_grad(fn, nested.inner, nested.outer) for fn, _ in nested.programs]
            return (lambda arrays: nested.drive(programs, arrays)), []
        if function.derive == "value":
            return (lambda arrays: [np.asarray(call(tensors(arrays)).numpy())]), []
        if function.derive == "jvp":
            seeds = function.seeds(shapes, statics)

            moved = [moving(wrt, seed) for seed in seeds]

            def tangents(arrays):
                def at(positions):
                    def f(*xs):
                        args = tensors(arrays)
                        for i, x in zip(positions, xs):
                            args[i] = x
                        return call(args)
                    return f
                return [symnum.jvp(at(positions), [arrays[i] for i in positions], vs)[1]
                        for positions, vs in moved]
            return tangents, []
        if function.derive == "grad":
            def grad(arrays):
                args = tensors(arrays, wrt)
                return [g.numpy() for g in symnum.grad(call(args), [args[i] for i in wrt])]
            return grad, []
        if function.derive == "grad_hdiag":
            i = wrt[0]

            def grad_hdiag(arrays):
                args = tensors(arrays)

                def gradient(x):
                    return symnum.grad(lambda x: call(args[:i] + [x] + args[i + 1:]))(x)
                g, hv = symnum.jvp(gradient, (arrays[i],), (np.ones_like(arrays[i]),))  # forward over reverse
                return [np.asarray(g), np.asarray(hv)]
            return grad_hdiag, []
        raise ValueError(f"symnum: no derivative {function.derive!r}")


ENGINE_BACKENDS = ("symnum-static", "symsym", "symsym-numba")
"""The graph engines, by the benchmark backend (:data:`benchmarks.backends.BACKENDS`) each runs."""


def _graph_engine(name: str) -> GraphEngine:
    backend = BACKENDS[name]
    return (SymSymEngine if name.startswith("symsym") else GraphEngine)(name, backend)


ENGINES: dict[str, Callable[[], object]] = {"symnum": TapeEngine}
ENGINES.update({name: (lambda name=name: _graph_engine(name)) for name in ENGINE_BACKENDS
                if BACKENDS[name].missing() is None})
"""The engines by ``--backend`` name (``symsym-numba`` only where numba is installed); each call makes one."""


# ------------------------------------------------------------ nested derivatives

def moving(wrt: list, seed: list) -> tuple[list, list]:
    """The inputs (nodes or positions) a seed moves and their tangents: an input whose tangent is all zeros
    is held still, so no tangent is computed through the part of the graph only it reaches."""
    pairs = [(x, v) for x, v in zip(wrt, seed, strict=True) if np.any(v)]
    return [x for x, _ in pairs], [v for _, v in pairs]


def graph_gradient(y: Node, x: Node) -> Node:
    """dy/dx of a scalar node as a node (the IR's shared reverse sweep, :func:`common.backward.sweep`).

    The loop ops build their reverse bodies with the same sweep, so it works
    inside a body being traced: the gradient a loop's body takes of itself.
    """
    table = sweep(toposort([y]), {id(y): [T.full(y.shape, 1.0, dtype=y.dtype)]}, {id(x)}, T.symbolic)
    g = table.get(id(x))
    return T.zeros_like(x) if g is None else g


def basis(x) -> np.ndarray:
    return np.eye(int(np.prod(x.shape)), dtype=np.float64).reshape((-1, *x.shape))


def graph_derivative(mode: str) -> Callable:
    """``d(f, x)``: the gradient of scalar ``f`` at node ``x`` as graph, by reverse mode (``"r"``: one sweep)
    or forward mode (``"f"``: one tangent per element of ``x``)."""
    if mode == "r":
        return lambda f, x: graph_gradient(f(x), x)
    return lambda f, x: (lambda y: T.stack([graph_tangent(y, x, e) for e in basis(x)]).reshape(x.shape))(f(x))


def tape_derivative(mode: str) -> Callable:
    """``d(f, x)``: the gradient of scalar ``f`` at ``x`` on the tape: ``symnum.grad`` (``"r"``) or one
    ``symnum.jvp`` per element of ``x`` (``"f"``); nested in another's, each keeps its own perturbation."""
    import symnum

    if mode == "r":
        return lambda f, x: symnum.grad(f)(x)
    return lambda f, x: symnum.reshape(symnum.stack([symnum.jvp(f, (x,), (e,))[1] for e in basis(x)]), x.shape)


def nested_graph(fn: Callable, shapes: tuple, inner: str) -> tuple[Node, list[Node]]:
    """``fn(T, d, *variables)``'s graph, its inner derivatives ``d`` taken by ``inner`` mode: (out, variables)."""
    xs = [T.var(f"a{k}", shape) for k, shape in enumerate(shapes)]
    return fn(T, graph_derivative(inner), *xs), xs


def tape_value_and_grad(fn: Callable, inner: str, outer: str) -> Callable:
    """``arrays -> (value, gradient with respect to arrays[0])`` of ``fn(symnum, d, *tensors)`` on the
    tape: ``symnum.value_and_grad`` (``"r"``) or a ``symnum.jvp`` per element (``"f"``) around the
    inner derivatives ``d`` taken by ``inner`` mode."""
    import symnum

    d = tape_derivative(inner)

    def run(arrays):
        others = [symnum.tensor(a) for a in arrays[1:]]
        f = lambda x: fn(symnum, d, x, *others)
        x = arrays[0]
        if outer == "r":
            value, g = symnum.value_and_grad(f)(x)
            return np.asarray(value), np.asarray(g)
        pairs = [symnum.jvp(f, (x,), (e,)) for e in basis(x)]
        return np.asarray(pairs[0][0]), np.reshape([t for _, t in pairs], x.shape)
    return run
