"""Named singleton markers, PyTensor-style "sentinel types instead of None".

A marker such as ``NO_GRAD`` says something ``None`` cannot: that no gradient
flows (as opposed to a gradient not computed yet), and it stays itself when
copied or pickled, so ``is`` comparisons always work.
"""

from __future__ import annotations


class Sentinel:
    """A marker compared by identity; one instance per name."""

    __slots__ = ("name",)
    _made: dict[str, Sentinel] = {}

    def __new__(cls, name: str):
        made = cls._made.get(name)
        if made is None:
            made = super().__new__(cls)
            made.name = name
            cls._made[name] = made
        return made

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return (Sentinel, (self.name,))

    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self
