"""Forward mode as graphs: the tangent of ``y`` along ``v``, built by one forward sweep.

``jvp(y, x, v)`` visits ``y``'s ancestors in topological order (inputs first)
and gives each node that depends on ``x`` a tangent node, made by its op's JVP
rule from the op table run in the symbolic namespace: the same rule that
symnum's dual numbers run on numbers. A node none of whose inputs has a
tangent gets none (:data:`~common.ops.ZERO`), so the tangent graph follows
only the paths from ``x``, and nothing of the reverse sweep (no cotangent
placeholder, no second pass) is involved. The sweep is a loop over the
toposort, so 10^6-node chains are fine.

``jacfwd(y, x)`` vectorises that tangent graph over the basis of ``x``'s
space: one batched graph, one column per element of ``x`` (the cheap
direction when ``x`` is small and ``y`` large); ``jacrev`` is the reverse
``jacobian`` (one row per element of ``y``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from common.api import const, symbolic, var
from common.errors import GradError, TreeError
from common.forward_sweeps import tangent_sweep
from common.graph import Node, toposort
from common.site import user_site
from common.tree import tree_flatten, tree_unflatten

from .grad import shapes_agree
from .trees import node_leaves, over_pairs
from .vectorize import vectorize

__all__ = ["jacfwd", "jvp", "static_size"]


def jvp(y, x, v, trace: Callable[[Node, Node], None] | None = None):
    """The Jacobian-vector product J v of ``y`` with respect to ``x`` as a node of ``y``'s shape.

    ``x`` and ``v`` may be lists or other pytrees of one structure (the sum of
    the products: a tangent per input), and ``y`` a pytree (J v then in its
    structure). The tangent of a node is cast to the node's dtype; a ``y`` that
    does not depend on ``x`` gets zeros. ``trace(node, tangent)``, if given,
    hears of each tangent as the sweep makes it (``symsym.explain_jvp``
    narrates the sweep with it).
    """
    if isinstance(x, (list, tuple)) and isinstance(v, (list, tuple)):  # a list of inputs, a tuple of tangents
        x, v = list(x), list(v)
    xs, x_def = ([x], None) if isinstance(x, Node) else node_leaves(x, "jvp", "x")
    vs, v_def = ([v], None) if isinstance(v, Node) or x_def is None else tree_flatten(v)
    if len(xs) != len(vs):
        raise GradError(f"jvp: {len(xs)} inputs but {len(vs)} tangents")
    if x_def is not None and v_def is not None and v_def != x_def:
        raise TreeError(f"jvp: v has structure {v_def!r}, but x has {x_def!r} (* a leaf; at {user_site()})")
    tangents: dict[int, Node] = {}
    for xi, vi in zip(xs, vs):
        if not isinstance(vi, Node):
            vi = const(np.asarray(vi, dtype=xi.dtype))
        if not shapes_agree(vi.shape, xi.shape):
            raise GradError(f"jvp: tangent of shape {vi.shape} for an input of shape {xi.shape} "
                            f"(made at {xi.site})")
        tangents[id(xi)] = vi if vi.dtype == xi.dtype else symbolic.cast(vi, xi.dtype)
    ys, y_def = ([y], None) if isinstance(y, Node) else node_leaves(y, "jvp", "y")
    tangent_sweep(toposort(ys), tangents, symbolic, trace)
    outs = [tangents.get(id(yi)) for yi in ys]
    outs = [symbolic.zeros_like(yi) if o is None else o for yi, o in zip(ys, outs)]
    return outs[0] if y_def is None else tree_unflatten(y_def, outs)


def static_size(n: Node, what: str) -> int:
    if None in n.shape:
        raise GradError(f"{what}: needs a static shape, got {n!r} (made at {n.site})")
    return int(np.prod(n.shape, dtype=np.int64))


def jacfwd(y, x):
    """dy/dx by forward mode, shape ``y.shape + x.shape``: the tangent graph of :func:`jvp` for a
    placeholder ``v``, vectorised over the basis of ``x`` (one batched graph of n columns). Over
    pytrees of nodes as :func:`symsym.jacobian`."""
    return over_pairs(_jacfwd, y, x, "jacfwd")


def _jacfwd(y: Node, x: Node) -> Node:
    static_size(y, "jacfwd")  # a block y.shape + x.shape: a computed count has none
    n = static_size(x, "jacfwd")
    v = var(f"tangent of {x.name or 'input'}", x.shape, x.dtype)
    col = jvp(y, x, v)
    basis = const(np.eye(n, dtype=x.dtype).reshape((n, *x.shape)))
    (cols,) = vectorize([col], {v: basis}, n)  # (n, *y.shape)
    k = len(y.shape)
    cols = symbolic.transpose(cols, tuple(range(1, k + 1)) + (0,)) if k else cols
    return symbolic.reshape(cols, y.shape + x.shape)
