"""The backends behind ``twograd gradbench --backend``: the benchmark's own adapters, on an IR graph.

``prepare(cost, variables, wrt)`` returns ``run(arrays) -> list[np.ndarray]``:
the cost's value when ``wrt`` is empty, else its gradients with respect to
``wrt``. Both come from :meth:`benchmarks.backends.GraphBackend.program`, the
code ``twograd bench`` times, so the two harnesses cannot drift apart.

GradBench's functions are IR graphs the tool builds once per input shape, so
``--backend symnum`` is symnum's entry point for a graph: ``symnum.gradients``,
the program scheduled once per graph and cached (the benchmark's
``symnum-static`` column; the define-by-run tape, the ``symnum`` column, runs
a Python function, not a graph). ``--backend symsym`` differentiates and
compiles the graph once (``compiles``: the tool reports that as ``compile``)
and each run executes the result.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.graph import Node

from ..backends import BACKENDS, GraphBackend

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


class Engine:
    """A graph backend as the tool calls it: ``name`` (its ``--backend``), ``compiles`` and :meth:`prepare`."""

    def __init__(self, name: str, backend: GraphBackend):
        self.name = name
        self.backend = backend
        self.compiles = backend.compiles

    def prepare(self, cost: Node, variables: list[Node], wrt: list[Node]) -> Run:
        """``run(arrays)``: the gradients with respect to ``wrt``, or ``[value]`` when ``wrt`` is empty."""
        runner = self.backend.program(cost, variables, wrt)
        if wrt:
            return runner.grad
        forward = runner.forward
        return lambda arrays: [forward(arrays)]


ENGINE_BACKENDS = {"symnum": "symnum-static", "symsym": "symsym"}
"""Each ``--backend`` and the benchmark backend (:data:`benchmarks.backends.BACKENDS`) it runs."""

ENGINES: dict[str, Callable[[], Engine]] = {
    name: (lambda name=name, backend=backend: Engine(name, BACKENDS[backend]))
    for name, backend in ENGINE_BACKENDS.items()}
"""The engines by ``--backend`` name; each call makes one."""
