"""Vectorising a graph: one batched graph instead of a loop of copies.

``vectorize(outputs, {v: V}, batch)`` rewrites ``outputs`` so that a variable
``v`` of shape ``s`` is replaced by ``V`` of shape ``(batch, *s)``: every node
that depends on ``v`` gains a leading batch axis, everything else is shared
unchanged. This is PyTensor's ``vectorize_graph`` (and JAX's ``vmap`` as a
graph transform): the Jacobian and the Hessian run the reverse pass once, on a
batch of basis cotangents, instead of once per row.

The batching rules live in the op table (:mod:`common.ops.batching`), shared
with symnum; here they run on the symbolic namespace, so they add nodes.
"""

from __future__ import annotations

from common.api import symbolic
from common.errors import GradError
from common.forward_sweeps import batch_sweep
from common.graph import Node, toposort

__all__ = ["vectorize"]


def vectorize(outputs, mapping: dict[Node, Node], batch: int) -> list[Node]:
    """``outputs`` with each key of ``mapping`` replaced by a batch of values.

    Every value in ``mapping`` has shape ``(batch, *key.shape)``. Returns one
    node per output, each of shape ``(batch, *output.shape)`` (an output that
    does not depend on the keys is broadcast along the batch axis).
    """
    outs = [outputs] if isinstance(outputs, Node) else list(outputs)
    for k, v in mapping.items():
        if v.shape[1:] != k.shape or v.shape[0] != batch:
            raise GradError(f"vectorize: batch for {k!r} has shape {v.shape}, expected "
                            f"({batch}, *{k.shape})")
    new: dict[int, tuple[Node, bool]] = {id(k): (v, True) for k, v in mapping.items()}
    batch_sweep(toposort(outs), new, symbolic)
    result = []
    for o in outs:
        node, batched = new[id(o)]
        if not batched:
            if None in node.shape:
                raise GradError(f"vectorize: output {node!r} has an unknown shape and does not depend "
                                "on the batched inputs")
            node = symbolic.broadcast_to(symbolic.expand_dims(node, 0), (batch, *node.shape))
        result.append(node)
    return result
