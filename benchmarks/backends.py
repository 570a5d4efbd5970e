"""One small adapter per way of computing a derivative.

A backend turns a :class:`~benchmarks.workloads.Problem` into a
:class:`Runner`: ``grad(arrays)`` gives the derivative (the gradient in
``wrt`` order; ``[H]`` for a Hessian; ``[d^k f]`` for order k), ``forward``
the cost. What it costs to get a runner is the backend's one-off price
(symsym's grad + optimise + compile; nothing for symnum, which pays per call).
Backends are found by name in :data:`BACKENDS`; peers (:mod:`benchmarks.peers`)
add themselves there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from common import count_nodes


class Unsupported(Exception):
    """This backend cannot run this problem (a one-line note, not a failure)."""


class Runner:
    """A backend's ready-to-call view of one problem."""

    def __init__(self, grad: Callable, forward: Callable | None = None, value_and_grad: Callable | None = None,
                 one_off: dict | None = None, nodes: dict | None = None):
        self.grad = grad
        self.forward = forward
        self._vg = value_and_grad
        self.one_off = one_off or {}
        self.nodes = nodes or {}

    def value_and_grad(self, arrays):
        """(cost, gradient) for a training step."""
        if self._vg is not None:
            return self._vg(arrays)
        return float(self.forward(arrays)), self.grad(arrays)


class Backend:
    """How one library computes derivatives. Subclasses fill in :meth:`prepare`."""

    name = "?"
    role = "twograd"        # "reference", "twograd" or "peer"
    kinds = ("grad", "hessian", "train", "order")

    def missing(self) -> str | None:
        """Why this backend cannot run here (not installed), or None."""
        return None

    def prepare(self, problem, kind: str, order: int = 1) -> Runner:
        raise NotImplementedError

    def version(self) -> str:
        return ""


def _split(problem):
    """The problem's wrt positions and a way to put wrt values back among the arguments."""
    idx = problem.wrt_index

    def full(arrays, x, i=idx[0]):
        return [x if k == i else a for k, a in enumerate(arrays)]

    return idx, full


class Hand(Backend):
    """The hand-written numpy derivative: the reference and the floor."""

    name = "hand"
    role = "reference"
    kinds = ("grad", "hessian", "train")

    def prepare(self, problem, kind, order=1):
        if problem.hand_grad is None or (kind == "order" and order != 1):
            raise Unsupported("no hand-written derivative")
        hg, hf = problem.hand_grad, problem.hand_forward
        return Runner(lambda arrays: hg(*arrays), (lambda arrays: hf(*arrays)) if hf else None)


class SymNum(Backend):
    """symbol-to-number: ``symnum.gradients`` on the workload's IR graph (a tape per call)."""

    name = "symnum"

    def version(self):
        import symnum
        return getattr(symnum, "__version__", "")

    def prepare(self, problem, kind, order=1):
        import symnum

        if kind in ("grad", "train"):
            cost, variables = problem.graph()
            wrt = [variables[i] for i in problem.wrt_index]
            gradients, evaluate = symnum.gradients, symnum.evaluate
            return Runner(lambda arrays: gradients(cost, wrt, dict(zip(variables, arrays))),
                          lambda arrays: evaluate(cost, dict(zip(variables, arrays))),
                          nodes={"forward": count_nodes(cost)})
        idx, full = _split(problem)
        fn = problem.fn
        f = lambda x, arrays: fn(symnum, *full(arrays, x))
        if kind == "hessian":
            return Runner(lambda arrays: [symnum.hessian(lambda x: f(x, arrays))(arrays[idx[0]])],
                          lambda arrays: symnum.evaluate(problem.graph()[0],
                                                         dict(zip(problem.graph()[1], arrays))))
        # order: grad of grad of ... of a scalar function, each through create_graph
        def kth(arrays):
            d = lambda x: f(x, arrays)
            for _ in range(order):
                d = symnum.grad(d)
            out = d(symnum.tensor(arrays[idx[0]], requires_grad=True))
            return [_numpy(out)]

        return Runner(kth)


def _numpy(value):
    import numpy as np

    for attr in ("data", "value"):
        inner = getattr(value, attr, None)
        if isinstance(inner, np.ndarray):
            return inner
    return np.asarray(value)


class SymSym(Backend):
    """symbol-to-symbol: ``symsym.grad`` adds nodes, ``symsym.function`` compiles them."""

    name = "symsym"

    def version(self):
        import symsym
        return getattr(symsym, "__version__", "")

    def prepare(self, problem, kind, order=1):
        import symsym

        cost, variables = problem.graph()
        wrt = [variables[i] for i in problem.wrt_index]
        t0 = time.perf_counter()
        if kind == "hessian":
            outputs = [symsym.hessian(cost, wrt[0])]
        elif kind == "order":
            d = cost
            for _ in range(order):
                d = symsym.grad(d, wrt[0])
                d = d[0] if isinstance(d, list) else d
            outputs = [d]
        else:
            grads = symsym.grad(cost, wrt)
            outputs = list(grads) if isinstance(grads, (list, tuple)) else [grads]
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        fn = symsym.function(variables, outputs)
        compile_total = time.perf_counter() - t0
        one_off = {"build": build, **split_timings(getattr(fn, "timings", None), compile_total)}
        one_off["total"] = build + compile_total
        nodes = {"forward": count_nodes(cost), "grad_raw": count_nodes(outputs),
                 "grad_opt": compiled_size(fn)}
        call = _caller(fn, len(outputs))
        forward = value_and_grad = None
        if kind in ("grad", "train", "hessian"):
            fwd = symsym.function(variables, [cost])
            forward = lambda arrays: fwd(*arrays)
            if kind == "train":
                both = _caller(symsym.function(variables, [cost, *outputs]), len(outputs) + 1)
                value_and_grad = lambda arrays: (lambda out: (float(out[0]), out[1:]))(both(arrays))
        return Runner(call, forward, value_and_grad, one_off, nodes)


def _caller(fn, n: int):
    """``arrays -> list of outputs`` whatever the compiled function returns for one output."""
    if n == 1:
        def call(arrays):
            out = fn(*arrays)
            return list(out) if isinstance(out, (list, tuple)) else [out]
        return call
    return lambda arrays: list(fn(*arrays))


def split_timings(timings, total: float) -> dict:
    """symsym's own phase timings as ``optimise`` and ``compile`` seconds."""
    if not isinstance(timings, dict) or not timings:
        return {"optimise": 0.0, "compile": total}
    opt = sum(v for k, v in timings.items() if isinstance(v, (int, float))
              and any(s in k for s in ("opt", "rewrite", "merge", "simplif")))
    return {"optimise": opt, "compile": max(total - opt, 0.0)}


def compiled_size(fn) -> int | None:
    """How many nodes the compiled function evaluates (after rewrites)."""
    graph = getattr(fn, "graph", None)
    if graph is None:
        return None
    try:
        return count_nodes(graph if not hasattr(graph, "outputs") else graph.outputs)
    except Exception:
        return None


BACKENDS: dict[str, Backend] = {b.name: b for b in (Hand(), SymNum(), SymSym())}
TWOGRAD = ("symnum", "symsym")
