"""The two backends behind one call: prepare a graph once, then run it on arrays.

``prepare(cost, variables, wrt)`` returns ``run(arrays) -> list[np.ndarray]``:
the cost's value when ``wrt`` is empty, else its gradients with respect to
``wrt``. The split mirrors the two paradigms: symnum has nothing to prepare
(each run evaluates the graph while recording a tape and sweeps it back), while
symsym does all its symbolic work up front (``grad`` adds the derivative nodes,
``function`` optimises and compiles) and each run only executes the result.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.graph import Node

Run = Callable[[list[np.ndarray]], list[np.ndarray]]


class SymNum:
    """Symbol-to-number: every run evaluates the IR graph and backpropagates on numbers."""

    name = "symnum"
    compiles = False

    def prepare(self, cost: Node, variables: list[Node], wrt: list[Node]) -> Run:
        import symnum

        if not wrt:
            return lambda arrays: [symnum.evaluate(cost, dict(zip(variables, arrays, strict=True)))]
        return lambda arrays: list(symnum.gradients(cost, wrt, dict(zip(variables, arrays, strict=True))))


class SymSym:
    """Symbol-to-symbol: derivative nodes are added and compiled once; runs execute them."""

    name = "symsym"
    compiles = True

    def prepare(self, cost: Node, variables: list[Node], wrt: list[Node]) -> Run:
        import symsym

        outputs = list(symsym.grad(cost, wrt)) if wrt else [cost]
        fn = symsym.function(variables, outputs)
        return lambda arrays: list(fn(*arrays))


ENGINES = {"symnum": SymNum, "symsym": SymSym}
"""The backends by name, as ``--backend`` takes them."""
