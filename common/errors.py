"""The project's errors: one base class, one subclass per kind of mistake.

Every error a user can cause derives from :class:`TwogradError`, so
``except TwogradError`` catches all of them. Messages name the op, the shapes
and dtypes involved and the user's own ``file:line`` where the offending node
was made, because a graph error is usually raised far from the line that
caused it (at evaluation, at ``grad``, at compile time).
"""

from __future__ import annotations

from collections.abc import Iterable


class TwogradError(Exception):
    """Base of every error twograd raises for a user's mistake."""


class ShapeError(TwogradError, ValueError):
    """Shapes that do not fit an op (broadcasting, matmul, reshape, ...)."""


class DTypeError(TwogradError, TypeError):
    """A dtype an op cannot take, or a fed value of the wrong dtype."""


class FeedError(TwogradError, ValueError):
    """A missing, extra or ill-typed value fed for a graph input."""


class SerializationError(TwogradError, ValueError):
    """A graph file that is corrupt, hostile or of an unknown format."""


class GradError(TwogradError):
    """A gradient that cannot be taken: disconnected input, double backward, ..."""


class TreeError(TwogradError, ValueError):
    """Pytrees that do not fit a transform: structures that differ where they must agree, a leaf that is not
    an array (or a node, a tensor)."""


class GraphError(TwogradError, TypeError):
    """Misuse of graph nodes, such as asking a symbolic value for its truth."""


def describe(values: Iterable) -> str:
    """Shapes and dtypes of some arrays or nodes, as ``(3, 4):float64, ()``."""
    parts = []
    for v in values:
        shape = getattr(v, "shape", None)
        dtype = getattr(v, "dtype", None)
        if shape is None:
            parts.append(type(v).__name__)
        else:
            dims = ", ".join("?" if d is None else str(d) for d in shape)
            if len(shape) == 1:
                dims += ","
            parts.append(f"({dims}):{dtype}")
    return ", ".join(parts)


def op_error(cls: type[TwogradError], op: str, message: str, inputs=(), site=None) -> TwogradError:
    """Build ``cls`` with the op name, the inputs' shapes/dtypes and the site."""
    text = f"{op}: {message}"
    if inputs:
        text += f" [inputs: {describe(inputs)}]"
    if site:
        text += f" (node made at {site})"
    return cls(text)
