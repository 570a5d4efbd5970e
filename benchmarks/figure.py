"""The book's Figure 6.10 from the command line: z = f(f(f(w))) and what grad adds to it.

``chain_example`` builds the chain with the book's names (w, x, y, z), and
``derivative`` takes symsym's gradient ``order`` times; the drawing itself is
symsym's (:func:`symsym.draw`), with the nodes grad added marked.
"""

from __future__ import annotations

from common import api as T

BOOK_NAMES = ("x", "y", "z")


def chain_example(f: str = "sin", depth: int = 3):
    """(z, w): the book's chain; intermediate nodes named x, y, then z3, z4, ..., the last z."""
    w = T.var("w", ())
    h = w
    step = getattr(T, f)
    for k in range(depth):
        name = "z" if k == depth - 1 else (BOOK_NAMES[k] if k < 2 else f"z{k + 1}")
        h = step(h).renamed(name)
    return h, w


def derivative(z, w, order: int = 1):
    """d^order z / dw^order as symsym graph nodes (raw: no rewrites)."""
    import symsym

    d = z
    for _ in range(order):
        d = symsym.grad(d, w)
    return d


def book_form(z, d):
    """``d`` as the book draws it: products with the seed one removed, and each
    ``cos`` of a named node labelled ``f'(name)`` (for f = sin, f' = cos).

    Forward nodes keep their identity, so what grad added can still be told apart.
    """
    import symsym
    from common.graph import apply_like, rebuild

    (simple,), _ = symsym.optimize([d], passes=("algebra", "merge"))

    def label(node, inputs):
        same = all(a is b for a, b in zip(inputs, node.inputs))
        new = node if same else apply_like(node, inputs)
        if node.op is not None and node.op.name == "cos" and node.inputs[0].name and not node.name:
            return new.renamed(f"f'({node.inputs[0].name})")
        return new

    (book,) = rebuild([simple], label)
    return book


def draw(forward, outputs, path: str, title: str) -> str:
    """Draw ``outputs``'s graph to ``path`` (and an SVG beside it), marking what grad added."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import symsym

    fig = symsym.draw(outputs, highlight=symsym.added_nodes(forward, outputs), title=title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if path.endswith(".png"):
        fig.savefig(path[:-4] + ".svg", bbox_inches="tight")
    plt.close(fig)
    return path
