"""Pictures of graphs with the nodes ``grad`` added marked (Figure 6.10 of the book).

Matplotlib only, no Graphviz: nodes are laid out in layers by their depth
(longest path from an input), left to right within a layer, and drawn as
labelled boxes; added nodes are filled orange. ``common.to_dot`` gives the
same picture as DOT text for those who have Graphviz.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from common.errors import GraphError
from common.graph import Node, toposort
from common.graph import variable as var
from common.printing import to_dot

from .forward import jvp
from .grad import grad
from .rewrite import optimize

__all__ = ["added_nodes", "draw", "draw_grad", "draw_jvp", "draw_panels"]

ADDED = "#f4a261"
ORIGINAL = "#e9f1f7"


def added_nodes(forward, extended) -> list[Node]:
    """The nodes of ``extended`` that are not in ``forward``: what grad added."""
    old = {id(n) for n in toposort(forward)}
    return [n for n in toposort(extended) if id(n) not in old]


def _label(n: Node) -> str:
    """The box text; a ``$`` is escaped so that matplotlib shows it instead of parsing mathtext."""
    if n.is_var:
        text = n.name or "?"
    elif n.is_const:
        text = n.label()
    else:
        text = n.op.name + (f"\n{n.name}" if n.name else "")
    return text.replace("$", r"\$")


def draw(outputs, highlight: Iterable[Node] = (), ax=None, title: str | None = None):
    """Draw the graph under ``outputs``; nodes in ``highlight`` are filled orange. Returns the figure."""
    import matplotlib

    if ax is None:
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        order = toposort(outputs)
        fig, ax = plt.subplots(figsize=(max(4, len(order) ** 0.5 * 2.2), max(3, len(order) ** 0.5 * 1.6)))
    else:
        fig = ax.figure
        order = toposort(outputs)
    marked = {id(n) for n in highlight}
    depth: dict[int, int] = {}
    for n in order:
        depth[id(n)] = 1 + max((depth[id(i)] for i in n.inputs), default=-1)
    layers: dict[int, list[Node]] = {}
    for n in order:
        layers.setdefault(depth[id(n)], []).append(n)
    pos = {}
    for d, nodes in layers.items():
        for k, n in enumerate(nodes):
            pos[id(n)] = (k - (len(nodes) - 1) / 2, d)
    for n in order:
        x1, y1 = pos[id(n)]
        for i in n.inputs:
            x0, y0 = pos[id(i)]
            ax.annotate("", xy=(x1, y1 - 0.18), xytext=(x0, y0 + 0.18),
                        arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8})
    for n in order:
        x, y = pos[id(n)]
        ax.text(x, y, _label(n), ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.3", "fc": ADDED if id(n) in marked else ORIGINAL,
                      "ec": "#333333"})
    xs = [p[0] for p in pos.values()] or [0]
    ys = [p[1] for p in pos.values()] or [0]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.7)
    ax.axis("off")
    if title:
        ax.set_title(title)
    return fig


def draw_grad(cost: Node, wrt, simplify: bool = True, ax=None, dot: bool = False):
    """Draw ``cost`` and its gradient graph with the added nodes marked (or give DOT text).

    With ``simplify``, the algebraic rewrites first drop the products with the
    seed one, so the picture matches the book's Figure 6.10.
    """
    grads = grad(cost, wrt)
    gs = [grads] if isinstance(grads, Node) else list(grads)
    if simplify:
        gs, _ = optimize(gs, passes=("algebra", "merge"))
    outs = [cost, *gs]
    added = added_nodes([cost], outs)
    if dot:
        return to_dot(outs, highlight=added, title="d(cost)/d(wrt): added nodes filled")
    return draw(outs, highlight=added, ax=ax, title="forward graph and the nodes grad added (orange)")


def draw_jvp(y: Node, x: Node, v: Node | None = None, simplify: bool = True, ax=None, dot: bool = False):
    """Draw ``y`` and its forward-mode tangent graph (``jvp(y, x, v)``) with the added nodes marked, the
    forward-mode counterpart of :func:`draw_grad` (or give DOT text).

    ``v`` defaults to a variable ``d<x>``: the picture shows the tangent pushed from x up to y, each
    node's local derivative multiplied in as the sweep passes it.
    """
    if v is None:
        v = var(f"d{x.name or 'x'}", x.shape, x.dtype)
    t = jvp(y, x, v)
    if simplify:
        (t,), _ = optimize([t], passes=("algebra", "merge"))
    outs = [y, t]
    added = added_nodes([y, v], outs)
    if dot:
        return to_dot(outs, highlight=added, title="d(y) along d(x): added nodes filled")
    return draw(outs, highlight=added, ax=ax, title="forward graph and the tangent nodes jvp added (orange)")


def draw_panels(panels: Sequence[tuple], title: str | None = None):
    """Several graphs side by side in one figure: ``panels`` holds ``(outputs, highlight, title)`` each
    (e.g. the reverse-mode and forward-mode graphs of one function). Returns the figure."""
    if not panels:
        raise GraphError("draw_panels: no panels to draw (give (outputs, highlight, title) for each graph)")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    sizes = [len(toposort(outputs)) ** 0.5 for outputs, _, _ in panels]
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(sum(max(4, s * 2.2) for s in sizes), max(3, max(sizes) * 1.6)))
    for ax, (outputs, highlight, sub) in zip(axes.flat, panels):
        draw(outputs, highlight=highlight, ax=ax, title=sub)
    if title:
        fig.suptitle(title)
    return fig
