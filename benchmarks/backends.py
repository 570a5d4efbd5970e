"""One adapter per way of computing a derivative: the benchmark and the GradBench tool both use these.

A backend turns a :class:`~benchmarks.workloads.Problem` into a
:class:`Runner` (:meth:`Backend.prepare`): ``grad(arrays)`` gives the
derivative (the gradient in ``wrt`` order; ``[H]`` for a Hessian; ``[d^k f]``
for order k), ``forward`` the cost. What it costs to get a runner is the
backend's one-off price, in :attr:`Runner.one_off` (symsym's grad + optimise +
compile; nothing for symnum, which pays per call). The backends that work on
an IR graph also answer :meth:`GraphBackend.program`, ``(cost, variables,
wrt) -> Runner``, which is what the GradBench tool
(:mod:`benchmarks.gradbench.engines`) calls and what their ``prepare`` is
made of, so that both harnesses run the same code.

The three twograd backends are the book's two ways of backpropagating, the
first in its two styles:

* ``symnum``: symbol-to-number, define-by-run (the Torch style): the
  workload's function runs on ``symnum`` tensors, recording a tape on every
  call, which ``symnum.grad`` sweeps backwards;
* ``symnum-static``: symbol-to-number on the IR graph (the Caffe style):
  ``symnum.gradients`` runs a program scheduled once per graph and cached;
* ``symsym``: symbol-to-symbol: ``symsym.grad`` adds the derivative's nodes to
  the graph, ``symsym.function`` rewrites and compiles them once;
* ``symsym-numba``: the same graph through the numba linker: elementwise
  regions fused into compiled loops, scalar chains as LLVM functions, loops
  of scalars compiled whole (listed when numba is installed).

Backends are found by name in :data:`BACKENDS`; peers (:mod:`benchmarks.peers`)
add themselves there.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from common import count_nodes

Arrays = list
"""A problem's argument values, as numpy arrays in its argument order."""


class Unsupported(Exception):
    """This backend cannot run this problem (a one-line note, not a failure)."""


class Runner:
    """A backend's ready-to-call view of one problem.

    ``one_off`` holds the seconds paid once to get it, under the keys
    ``build`` (the derivative's graph), ``optimise``, ``compile`` and
    ``total`` (those a backend has); ``nodes`` the graph sizes ``forward``,
    ``grad_raw`` and ``grad_opt``. ``staged`` maps ``"grad"`` or ``"forward"`` to
    ``arrays -> (() -> out)`` for a backend whose calls take its own library's values
    (tensors, device arrays): see :meth:`timed`.
    """

    def __init__(self, grad: Callable | None, forward: Callable | None = None,
                 value_and_grad: Callable | None = None, one_off: dict | None = None, nodes: dict | None = None,
                 staged: dict[str, Callable] | None = None):
        self.grad = grad
        self.forward = forward
        self._vg = value_and_grad
        self.one_off = one_off or {}
        self.nodes = nodes or {}
        self.staged = staged or {}

    def timed(self, which: str, arrays: Arrays) -> Callable[[], object]:
        """``which`` (``"grad"`` or ``"forward"``) on ``arrays`` as a function of nothing, to be timed.

        A library's users keep their values in its own types (tensors, arrays on a device), so a
        backend with a stage converts the numpy arrays here, once, and the timed calls are the
        library's call alone, its outputs left in its own types (their conversion back to numpy is
        the cross-checks' business, not the timed region's)."""
        stage = self.staged.get(which)
        if stage is not None:
            return stage(arrays)
        fn = getattr(self, which)
        return lambda: fn(arrays)

    def value_and_grad(self, arrays: Arrays) -> tuple[float, list]:
        """(cost, gradient) for a training step."""
        if self._vg is not None:
            return self._vg(arrays)
        return float(self.forward(arrays)), self.grad(arrays)


class Backend:
    """How one library computes derivatives. Subclasses fill in :meth:`prepare`."""

    name = "?"
    role = "twograd"        # "reference", "twograd" or "peer"
    kinds = ("grad", "hessian", "train", "order")
    about = ""              # one sentence for ``twograd list``: what this backend runs

    def missing(self) -> str | None:
        """Why this backend cannot run here (not installed), or None."""
        return None

    def prepare(self, problem, kind: str, order: int = 1) -> Runner:
        raise NotImplementedError

    def version(self) -> str:
        return ""

    def supports(self, kind: str) -> None:
        """Unsupported (with the reason) when this backend does not do ``kind``."""
        if kind not in self.kinds:
            raise Unsupported(f"{self.name} does not do {kind}")


class GraphBackend(Backend):
    """A backend that differentiates an IR graph: :meth:`program` is its one entry point."""

    compiles = False        # whether getting a program costs a one-off worth reporting (GradBench's "compile")

    def program(self, cost, variables: list, wrt: list) -> Runner:
        """The gradient of ``cost`` with respect to ``wrt`` as ``grad``, its value as ``forward``; with
        ``wrt`` empty only the value (``grad`` is None)."""
        raise NotImplementedError


def _numpy(value) -> np.ndarray:
    """A backend's output as a numpy array (a symnum tensor's read-only view, or the array itself)."""
    numpy = getattr(value, "numpy", None)
    return numpy() if numpy is not None else np.asarray(value)


class Hand(Backend):
    """The hand-written numpy derivative: the reference and the floor."""

    name = "hand"
    role = "reference"
    kinds = ("grad", "hessian", "train", "jacobian")
    about = "the hand-written numpy derivative: the reference every ratio divides by"

    def prepare(self, problem, kind, order=1):
        hg, hf = problem.hand_derivative(kind), problem.hand_forward
        if hg is None or (kind == "order" and order != 1):
            raise Unsupported("no hand-written derivative")
        return Runner(lambda arrays: hg(*arrays), (lambda arrays: hf(*arrays)) if hf else None)


class SymNum(Backend):
    """symbol-to-number, define-by-run: the workload's function on ``symnum`` tensors, a tape per call."""

    name = "symnum"
    kinds = ("grad", "hessian", "train", "order", "jacobian")
    about = ("symbol-to-number, define-by-run (the Torch style): the workload's function runs on symnum "
             "tensors, recording a tape on every call, and symnum.grad sweeps it backwards")

    def version(self):
        import symnum
        return getattr(symnum, "__version__", "")

    def prepare(self, problem, kind, order=1):
        import symnum

        self.supports(kind)
        fn, idx = problem.fn, problem.wrt_index
        forward = lambda arrays: _numpy(fn(symnum, *arrays))   # no leaf requires grad: nothing recorded
        if kind == "hessian":
            return Runner(_tape_hessian(symnum, fn, idx[0]), forward)
        if kind == "jacobian":
            jac = symnum.jacobian(lambda x, *arrays: fn(symnum, *_with(arrays, idx[0], x)), mode=problem.mode)
            runner = Runner(lambda arrays: [jac(arrays[idx[0]], *arrays)], forward)
            runner.mode = lambda: jac.mode  # what auto chose (made once: it decides once for the shapes)
            return runner
        if kind == "order":
            return Runner(_tape_order(symnum, fn, idx[0], order))

        def value_and_grad(arrays):
            args = list(arrays)
            leaves = [symnum.tensor(arrays[i], requires_grad=True) for i in idx]
            for i, leaf in zip(idx, leaves):
                args[i] = leaf
            out = fn(symnum, *args)
            return out, [g.numpy() for g in symnum.grad(out, leaves)]

        def staged_grad(arrays):
            """The timed call on values a Torch-style user holds: every argument a tensor made once (the
            differentiated ones requiring grad), so the tape meets no numpy array it must copy to stay
            right if the caller writes to it; each call records a tape and sweeps it."""
            args = [symnum.tensor(a, requires_grad=i in idx) for i, a in enumerate(arrays)]
            leaves = [args[i] for i in idx]
            return lambda: symnum.grad(fn(symnum, *args), leaves)

        return Runner(lambda arrays: value_and_grad(arrays)[1], forward,
                      lambda arrays: (lambda out, grads: (float(_numpy(out)), grads))(*value_and_grad(arrays)),
                      staged={"grad": staged_grad})


def _with(arrays: Arrays, i: int, x) -> list:
    """``arrays`` with argument ``i`` replaced by ``x``."""
    return [x if k == i else a for k, a in enumerate(arrays)]


def _tape_hessian(symnum, fn, i: int) -> Callable:
    """``arrays -> [H]``: ``symnum.hessian`` of the function of argument ``i`` (a tape per call)."""
    return lambda arrays: [symnum.hessian(lambda x: fn(symnum, *_with(arrays, i, x)))(arrays[i])]


def _tape_order(symnum, fn, i: int, order: int) -> Callable:
    """``arrays -> [d^order f]``: ``symnum.grad`` nested ``order`` times (each level through create_graph)."""
    def kth(arrays):
        d = lambda x: fn(symnum, *_with(arrays, i, x))
        for _ in range(order):
            d = symnum.grad(d)
        return [_numpy(d(symnum.tensor(arrays[i], requires_grad=True)))]
    return kth


class SymNumStatic(GraphBackend):
    """symbol-to-number on the IR graph: ``symnum.gradients`` runs a program scheduled once and cached."""

    name = "symnum-static"
    kinds = ("grad", "train")
    about = ("symbol-to-number on the IR graph (the Caffe style): symnum.gradients runs a program scheduled "
             "once per graph and cached; first derivatives only")

    def version(self):
        import symnum
        return getattr(symnum, "__version__", "")

    def program(self, cost, variables, wrt):
        import symnum

        gradients, evaluate = symnum.gradients, symnum.evaluate
        forward = lambda arrays: evaluate(cost, dict(zip(variables, arrays, strict=True)))
        grad = (lambda arrays: list(gradients(cost, wrt, dict(zip(variables, arrays, strict=True))))) if wrt \
            else None
        return Runner(grad, forward, nodes={"forward": count_nodes(cost)})

    def supports(self, kind):
        if kind not in self.kinds:
            raise Unsupported(f"{self.name}: symnum.gradients gives first derivatives; "
                              f"{kind} is define-by-run only (the symnum column)")

    def prepare(self, problem, kind, order=1):
        self.supports(kind)
        cost, variables = problem.graph()
        return self.program(cost, variables, [variables[i] for i in problem.wrt_index])


class SymSym(GraphBackend):
    """symbol-to-symbol: ``symsym.grad`` adds nodes, ``symsym.function`` compiles them."""

    name = "symsym"
    compiles = True
    linker = "numpy"
    kinds = ("grad", "hessian", "train", "order", "jacobian")
    about = ("symbol-to-symbol: symsym.grad adds the derivative's nodes to the graph, symsym.function "
             "rewrites and compiles them to numpy code once; each call runs that code")

    def version(self):
        import symsym
        return getattr(symsym, "__version__", "")

    def program(self, cost, variables, wrt):
        return self._runner(cost, variables, wrt, "grad" if wrt else "value")

    def prepare(self, problem, kind, order=1):
        self.supports(kind)
        cost, variables = problem.graph()
        return self._runner(cost, variables, [variables[i] for i in problem.wrt_index], kind, order, problem.mode)

    def _runner(self, cost, variables, wrt, kind: str, order: int = 1, mode: str = "auto") -> Runner:
        """Derive (timed as ``build``), compile (symsym's own ``optimize``/``compile`` timings), and for
        the kinds the benchmark times a forward of, compile the cost alone too (not counted)."""
        import symsym

        t0 = time.perf_counter()
        outputs = _symbolic(symsym, cost, wrt, kind, order, mode)
        build = time.perf_counter() - t0
        fn = symsym.function(variables, outputs, linker=self.linker)
        one_off = {"build": build, "optimise": fn.timings["optimize"], "compile": fn.timings["compile"]}
        one_off["total"] = sum(one_off.values())
        nodes = {"forward": count_nodes(cost)}
        if kind == "value":
            return Runner(None, lambda arrays: fn(*arrays)[0], one_off=one_off, nodes=nodes)
        nodes.update(grad_raw=count_nodes(outputs), grad_opt=count_nodes(fn.graph))
        forward = value_and_grad = None
        if kind != "order":
            fwd = symsym.function(variables, [cost], linker=self.linker)
            forward = lambda arrays: fwd(*arrays)[0]
        if kind == "train":
            both = symsym.function(variables, [cost, *outputs], linker=self.linker)
            value_and_grad = lambda arrays: (lambda out: (float(out[0]), out[1:]))(both(*arrays))
        runner = Runner(lambda arrays: fn(*arrays), forward, value_and_grad, one_off, nodes)
        if kind == "jacobian":
            runner.mode = lambda: symsym.jacobian_mode(outputs[0])
        return runner


class SymSymNumba(SymSym):
    """symbol-to-symbol through the numba linker: the same rewrites, elementwise regions as compiled loops."""

    name = "symsym-numba"
    linker = "numba"
    about = ("symsym with the numba linker: the same optimised graph, each elementwise region (and the row sums "
             "it feeds) fused into one vectorised loop, scalar chains as one LLVM function, loops of scalars "
             "compiled whole (kernels cached on disk); matmuls on BLAS")

    def missing(self):
        from symsym.linkers import LINKERS
        return LINKERS["numba"].missing()

    def version(self):
        import numba
        return numba.__version__


def _symbolic(symsym, cost, wrt: list, kind: str, order: int, mode: str = "auto") -> list:
    """The outputs symsym compiles for ``kind``: the cost, its gradients, its Hessian, its Jacobian (built in
    ``mode``) or its ``order``-th derivative, as graph nodes."""
    if kind == "value":
        return [cost]
    if kind == "jacobian":
        return [symsym.jacobian(cost, wrt[0], mode=mode)]
    if kind == "hessian":
        return [symsym.hessian(cost, wrt[0])]
    if kind == "order":
        d = cost
        for _ in range(order):
            d = symsym.grad(d, wrt[0])
        return [d]
    return list(symsym.grad(cost, wrt))


BACKENDS: dict[str, Backend] = {b.name: b for b in (Hand(), SymNum(), SymNumStatic(), SymSym(), SymSymNumba())}
TWOGRAD = tuple(name for name, b in BACKENDS.items() if b.role == "twograd")
"""The twograd backends, in the order the tables show them."""
COMPILED = tuple(name for name in TWOGRAD if isinstance(BACKENDS[name], SymSym))
"""The twograd backends that pay a one-off compile: the amortisation table has a row for each."""
OWN = tuple(BACKENDS)
"""What a run measures unless told otherwise: the hand-written reference and the twograd backends
(peers, added to :data:`BACKENDS` by :mod:`benchmarks.peers`, are chosen apart)."""
