"""The loop example of ``twograd show scan`` and ``twograd explain scan``: a recurrence as one scan op.

The chain example (:mod:`benchmarks.figure`) unrolls: its graph grows with its
depth. Here the same kind of chain, h_t = f(w h_{t-1} + x_t), is one ``scan``
node whose body is one step, and symsym's derivative of it is one reverse
``scan`` whose body is the derivative of that step (Theano's scan gradient):
neither graph grows with the sequence length, and the printout shows both
bodies.
"""

from __future__ import annotations

import numpy as np

from common import api as T
from common import count_nodes, debugprint, pprint


def scan_example(f: str = "sin", length: int = 3):
    """``(z, w)``: z = h_T + sum_t h_t^2 for h_t = f(w h_{t-1} + x_t), h_0 = 0.5, x_t evenly in [0, 1]."""
    w = T.var("w", ())
    step = getattr(T, f)
    xs = T.const(np.linspace(0.0, 1.0, length)).renamed("x")
    h, hs = T.scan(lambda h, x: (step(w * h + x), h * h), T.const(0.5).renamed("h0"), xs)
    return (h + T.sum(hs)).renamed("z"), w


def _indented(text: str, indent: int = 2) -> str:
    return " " * indent + text.replace("\n", "\n" + " " * indent)


def show_scan(f: str, length: int, order: int) -> str:
    """The forward graph, its order-``order`` derivative as grad builds it, and after rewrites, as text."""
    import symsym

    from .figure import derivative

    z, w = scan_example(f, length)
    d = derivative(z, w, order)
    (opt,), rep = symsym.optimize([d])
    return "\n".join([
        f"forward graph (h_t = {f}(w h_(t-1) + x_t), {length} steps, as one scan):",
        _indented(pprint(z)), "", debugprint(z), "",
        f"derivative graph, order {order} (as grad builds it: each derivative of a scan is a scan over the "
        "derivative of its body, the reverse one last step first):",
        _indented(pprint(d)), "",
        f"after rewrites ({rep['nodes_before']} -> {rep['nodes_after']} nodes):", _indented(pprint(opt)), "",
        f"graph sizes: forward {count_nodes(z)} nodes, derivative {count_nodes(d)} nodes: the same at any "
        f"sequence length (--depth), where the unrolled chain's grow with it",
    ])
