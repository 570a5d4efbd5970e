"""Operator overloads and numpy-like methods, installed on any array-like class.

The IR's :class:`~common.graph.Node` and symnum's ``Tensor`` get the same
``+ - * / ** @``, comparisons, indexing and ``.sum()``-style methods, each one
call into a :class:`~common.ops.table.Namespace`, so the two front ends cannot
drift apart.
"""

from __future__ import annotations

from .ops.composed import FUNCTIONS, METHODS, At


def install_operators(cls, ns) -> None:
    """Give ``cls`` numpy's operators and methods, computed through ``ns``."""

    def binary(name):
        fn = getattr(ns, name)
        return (lambda self, other: fn(self, other)), (lambda self, other: fn(other, self))

    for op, dunder in [("add", "add"), ("sub", "sub"), ("mul", "mul"), ("div", "truediv"),
                       ("pow", "pow"), ("matmul", "matmul")]:
        fwd, rev = binary(op)
        setattr(cls, f"__{dunder}__", fwd)
        setattr(cls, f"__r{dunder}__", rev)
    for op in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(cls, f"__{op}__", binary(op)[0])
    cls.__hash__ = object.__hash__
    cls.__neg__ = lambda self: ns.neg(self)
    cls.__pos__ = lambda self: self
    cls.__abs__ = lambda self: ns.abs(self)
    cls.__getitem__ = lambda self, key: ns.getitem(self, key)

    cls.sum = lambda self, axis=None, keepdims=False: ns.sum(self, axis, keepdims)
    cls.mean = lambda self, axis=None, keepdims=False: ns.mean(self, axis, keepdims)
    cls.max = lambda self, axis=None, keepdims=False: ns.max(self, axis, keepdims)
    cls.min = lambda self, axis=None, keepdims=False: ns.min(self, axis, keepdims)
    cls.prod = lambda self, axis=None, keepdims=False: ns.prod(self, axis, keepdims)
    cls.reshape = lambda self, *shape: ns.reshape(self, *shape)
    cls.transpose = lambda self, *axes: ns.transpose(self, *axes)
    cls.squeeze = lambda self, axis=None: ns.squeeze(self, axis)
    cls.astype = lambda self, dtype: ns.cast(self, dtype)
    cls.T = property(lambda self: ns.transpose(self))
    cls.cumsum = lambda self, axis=None: ns.cumsum(self, axis)
    cls.cumprod = lambda self, axis=None: ns.cumprod(self, axis)
    cls.clip = lambda self, a_min=None, a_max=None: ns.clip(self, a_min, a_max)
    cls.argsort = lambda self, axis=-1: ns.argsort(self, axis)
    cls.argmax = lambda self, axis=None, keepdims=False: ns.argmax(self, axis, keepdims)
    cls.argmin = lambda self, axis=None, keepdims=False: ns.argmin(self, axis, keepdims)
    for name in METHODS:
        setattr(cls, name, (lambda fn: lambda self, *args, **kwargs: fn(ns, self, *args, **kwargs))(FUNCTIONS[name]))
    cls.at = property(lambda self: At(self, ns))
