"""Recording: ops on tensors run their numpy impl and, when a gradient may be
asked for, leave a :class:`TapeNode` behind.

This is the symbol-to-number half of §6.5.5: nothing symbolic is built, only
the numbers the backward sweep will need (each op's inputs and output) and
where each input came from. A node is recorded only when grad mode is on and
some input requires grad through a differentiable argument; otherwise the op
is a plain numpy call plus one Tensor. Nodes point at their *parents* (the
producing node, or the leaf tensor), never at the tensors they made, so
dropping the output tensors and clearing ``args``/``out`` after a backward
frees every saved array.

Saved values never change: tensors' arrays are never written (see
:mod:`symnum.tensor`), and numpy operands, which the caller may still write
to, are copied when a node saves them. A leaf is the one thing a node refers
to by identity, and its value may be replaced (``leaf.data = ...``): the
sweep checks that the leaf still holds the array the node saved. For the
error's sake the first op that saves each version of a leaf notes the user's
line on the leaf (one frame lookup per leaf and version; the bulk of a tape,
ops on op outputs, pays nothing). Nodes hold no state of a sweep, so any
number of sweeps (threads) may share one tape.
"""

from __future__ import annotations

import operator

import numpy as np

from common.errors import DTypeError, LinAlgError, ShapeError, TwogradError, op_error
from common.ops import OPS, Namespace
from common.ops.table import EMPTY
from common.overloads import install_operators
from common.site import user_code, user_site

from .mode import MODE
from .tensor import Tensor, wrap


class TapeNode:
    """One recorded op: what the backward sweep needs to apply its VJP rules.

    ``args`` are the input values and ``out`` the output value (both cleared
    once a backward without ``retain_graph`` is done with them); ``parents[i]``
    is the node that made input ``i``, the leaf tensor it is, or None when no
    gradient flows to it. A one-input op (most of a deep chain) stores its
    value and its parent bare, not in tuples: two allocations fewer per op,
    and the sweep's run along a chain reads them directly; :func:`inputs_of`
    gives both forms as tuples.

    Two facts are kept at record time so that a sweep need not walk the tape
    before it starts: ``level``, one more than the highest level among the
    parents (leaves are level 0), so a node's consumers all have higher levels
    and a sweep taking nodes highest level first meets a node only after all
    of its consumers (no dependency counting); and ``leaf``, the leaves the
    node depends on: the leaf tensor itself when there is one (a chain), a
    frozenset of the ``id`` of each when there are several, up to
    :data:`MAX_LEAVES` (the nodes hold them alive, so the ids stay theirs),
    or None for more. A :func:`grad` with respect to every leaf the outputs
    depend on (a training step: all the parameters) then knows without a walk
    that every node leads to an input (nothing to prune).
    """

    # ``hooks`` is a slot (None until a hook is registered): a sweep reads it on every node. There is
    # no __init__: ``TapeNode()`` is the cheapest way to make a slotted object, and the ops fill it in
    __slots__ = ("op", "params", "args", "out", "parents", "level", "leaf", "hooks")

    def __repr__(self):
        return f"<TapeNode {self.op.name}{' (freed)' if self.args is None else ''}>"


MAX_LEAVES = 32
"""The most leaves a node keeps track of (see :class:`TapeNode`): merging two nodes' sets costs their
size per op, so a tape over more leaves than this sweeps with a pruning walk instead."""

_UNSEEN = object()  # no leaf met yet, in _lineage


def inputs_of(node: TapeNode) -> tuple:
    """``(parents, args)`` of ``node`` as tuples, however it stores them (args None once freed)."""
    parents, args = node.parents, node.args
    if parents.__class__ is tuple:
        return parents, args
    return (parents,), None if args is None else (args,)


def _lineage(parents) -> tuple:
    """``(level, leaf)`` of a node with these parents (see :class:`TapeNode`)."""
    level, leaf = 0, _UNSEEN
    for p in parents:
        if p is None:
            continue
        if p.__class__ is TapeNode:
            if p.level > level:
                level = p.level
            p = p.leaf
        if leaf is _UNSEEN:
            leaf = p
        elif leaf is not p:
            leaf = merge_leaves(leaf, p)
    return level + 1, leaf


def merge_leaves(a, b):
    """The leaves of a node whose inputs depend on leaves ``a`` and ``b`` (see :class:`TapeNode`):
    one leaf tensor, a frozenset of leaf ids, or None for more than :data:`MAX_LEAVES`."""
    if a is None or b is None:
        return None
    if a.__class__ is not frozenset:
        if b.__class__ is not frozenset:
            return frozenset((id(a), id(b))) if a is not b else a
        a, b = b, a
    if b.__class__ is not frozenset:  # a set and one leaf: most merges (a layer's weight joins)
        key = id(b)
        if key in a:
            return a
        merged = a.union((key,))
    elif b <= a:
        return a
    elif a <= b:
        return b
    else:
        merged = a | b
    return merged if len(merged) <= MAX_LEAVES else None


_PY_SCALARS = (bool, int, float)


def weak_scalar(x, args):
    """A Python scalar as an array, typed weakly against the array inputs (numpy 2)."""
    dtypes = [a.dtype for a in args if hasattr(a, "dtype")]
    return np.asarray(x, dtype=np.result_type(*dtypes, x) if dtypes else None)


def record(op, inputs, params):
    """Run ``op`` on tensors/arrays/scalars; record a tape node if a gradient may flow.

    This is the ``apply`` of the tape namespace, for every op without a fast
    path of its own (:func:`_unary`, :func:`_binary`): one pass over the
    inputs, and allocations only for the node and the output tensor. The
    output's shape and dtype are numpy's: the type rule runs only to word an
    error when numpy refuses.
    """
    args = []
    parents = []
    need = False
    scalars = False
    foreign = None  # positions of operands that are not tensors or scalars: the caller may write to them
    enabled = MODE.enabled
    for x in inputs:
        if type(x) is Tensor:
            args.append(x._data)
            if enabled and x.requires_grad:
                need = True
                made = x.grad_fn
                if made is None:
                    if x._saved_at is None:  # the first op to save this version of the leaf
                        x._saved_at = user_code(2, 3)  # (2: above user_code and record; 3: an operator's wrappers)
                    parents.append(x)
                else:
                    parents.append(made)
            else:
                parents.append(None)
        else:
            if isinstance(x, Tensor):
                raise TypeError("Tensor subclasses are not supported")
            if isinstance(x, _PY_SCALARS):
                scalars = True
            elif not isinstance(x, np.generic):
                other = getattr(x.__class__, "twograd_apply", None)
                if other is not None:  # a value of another trace (forward mode's duals) applies the op itself
                    return other(op, inputs, params)
                foreign = [len(args)] if foreign is None else [*foreign, len(args)]
            args.append(x)
            parents.append(None)
    if scalars:
        args = [weak_scalar(a, args) if isinstance(a, _PY_SCALARS) else a for a in args]
    try:
        out = op.impl(*args, **params)
    except (ValueError, IndexError, TypeError, np.exceptions.AxisError) as e:
        raise _explain(op, args, params, e) from None
    if need and out.dtype.kind == "f":
        need = False
        for i, p in enumerate(parents):
            if p is not None:
                if op.differentiable(i):
                    need = True
                else:
                    parents[i] = None
        if need:
            if foreign is not None:  # keep copies of our own: see the module docstring
                for i in foreign:
                    args[i] = np.array(args[i])
            node = TapeNode()
            node.op, node.params, node.out, node.hooks = op, params, out, None
            node.level, node.leaf = _lineage(parents)
            if len(args) == 1:  # stored bare: see TapeNode
                node.args, node.parents = args[0], parents[0]
            else:
                node.args, node.parents = tuple(args), tuple(parents)
            return wrap(out, True, node)
    return wrap(out)


def _explain(op, args, params, err) -> TwogradError:
    """A twograd error for numpy's complaint, with the type rule's words when it has some (a matrix LAPACK
    refused is a LinAlgError: its type rule has nothing to say)."""
    if isinstance(err, np.linalg.LinAlgError):
        return op_error(LinAlgError, op.name, str(err), args, user_site())
    kind, message = ShapeError, str(err)
    try:
        op.infer(*[np.asarray(a) if not hasattr(a, "shape") else a for a in args], **params)
    except TwogradError as e:
        kind, message = type(e), str(e)
    except Exception:  # the type rule choked too: numpy's message is the best we have
        pass
    if isinstance(err, TypeError) and kind is ShapeError:
        kind = DTypeError
    return op_error(kind, op.name, message, args, user_site())


def backward_failure(op, args, err: np.linalg.LinAlgError) -> LinAlgError:
    """The error for a matrix LAPACK refused while ``op``'s VJP rule ran in a backward sweep (det's
    gradient needs the inverse of a singular matrix): the op, its inputs' shapes and the user's line
    (the tape keeps no sites: the line that asked for the gradient). One already worded (a rule's op
    recorded on the tape, with ``create_graph``) stays as it is."""
    if isinstance(err, TwogradError):
        return err
    return op_error(LinAlgError, f"{op.name} (its gradient)", str(err), args, user_site())


def _unary(op):
    """``op``'s function for one tensor argument: :func:`record` with the loop unrolled.

    Unary ops on tensors are the bulk of define-by-run code (and of deep
    chains), so they skip the generic input pass; anything else falls back to it.
    """
    impl = op.impl
    differentiable = op.differentiable(0)
    new = object.__new__

    def fn(x):
        if x.__class__ is not Tensor:
            other = getattr(x.__class__, "twograd_apply", None)  # a dual (forward mode) applies the op itself
            return record(op, (x,), EMPTY) if other is None else other(op, (x,), EMPTY)
        data = x._data
        try:
            out = impl(data)
        except (ValueError, IndexError, TypeError) as e:
            raise _explain(op, (data,), EMPTY, e) from None
        t = new(Tensor)
        t._data = out
        # a tensor that requires grad holds floats, and every param-free unary op keeps them floats
        if differentiable and x.requires_grad and MODE.enabled:
            node = TapeNode()  # one store per slot: a multiple assignment would build and unpack a tuple
            node.op = op
            node.params = EMPTY
            node.args = data  # one input: stored bare (see TapeNode)
            node.out = out
            node.hooks = None
            made = x.grad_fn
            if made is None:
                if x._saved_at is None:  # as in record (2: above user_code and this function)
                    x._saved_at = user_code(2)
                node.parents = x
                node.level = 1
                node.leaf = x
            else:
                node.parents = made
                node.level = made.level + 1
                node.leaf = made.leaf
            t.requires_grad = True
            t.grad_fn = node
        else:
            t.requires_grad = False
            t.grad_fn = None
        return t

    fn.__name__ = fn.__qualname__ = op.name
    fn.__doc__ = op.doc
    return fn


_OPERATORS = {np.add: operator.add, np.subtract: operator.sub, np.multiply: operator.mul,
              np.true_divide: operator.truediv, np.matmul: operator.matmul}
"""numpy's ufuncs that Python's operators call: on numpy scalars (a 0-d result) the operator takes
numpy's scalar fast path, several times cheaper than the ufunc call, with the same result."""


def _binary(op, swap: bool = False):
    """``op``'s function for two operands, at least one a tensor: :func:`record` unrolled for two.

    Binary arithmetic is the other bulk of define-by-run code: the operands
    are read without the generic pass, a Python scalar becomes a numpy scalar
    of the other operand's floating dtype (numpy's weak typing, without
    ``result_type``), and a numpy array operand is copied only when a node
    saves it. Anything else (both operands plain, integer tensors with Python
    scalars, other objects) falls back to :func:`record`. With ``swap`` the
    function is a reflected operator (``__radd__``): ``fn(x, y)`` is ``op(y, x)``.
    """
    impl = _OPERATORS.get(op.impl, op.impl)
    d0, d1 = op.differentiable(0), op.differentiable(1)
    new = object.__new__
    ndarray = np.ndarray

    def fn(x, y):
        if swap:
            x, y = y, x
        cx, cy = x.__class__, y.__class__
        if cx is Tensor:
            a = x._data
            if cy is Tensor:
                b = y._data
            elif cy in _PY_SCALARS and a.dtype.kind == "f":
                b = a.dtype.type(y)
            elif cy is ndarray or isinstance(y, np.generic):
                b = y
            else:
                return record(op, (x, y), EMPTY)
        elif cy is Tensor:
            b = y._data
            if cx in _PY_SCALARS and b.dtype.kind == "f":
                a = b.dtype.type(x)
            elif cx is ndarray or isinstance(x, np.generic):
                a = x
            else:
                return record(op, (x, y), EMPTY)
        else:
            return record(op, (x, y), EMPTY)
        try:
            out = impl(a, b)
        except (ValueError, IndexError, TypeError, np.exceptions.AxisError) as e:
            raise _explain(op, (a, b), EMPTY, e) from None
        t = new(Tensor)
        t._data = out
        rx = d0 and cx is Tensor and x.requires_grad
        ry = d1 and cy is Tensor and y.requires_grad
        if (rx or ry) and out.dtype.kind == "f" and MODE.enabled:
            px = py = None
            if rx:
                px = x.grad_fn
                if px is None:  # a leaf: as in record (2: above user_code and this function)
                    px = x
                    if x._saved_at is None:
                        x._saved_at = user_code(2)
            if ry:
                py = y.grad_fn
                if py is None:
                    py = y
                    if y._saved_at is None:
                        y._saved_at = user_code(2)
            if cx is ndarray:  # keep copies of our own: see the module docstring
                a = np.array(a)
            elif cy is ndarray:
                b = np.array(b)
            node = TapeNode()
            node.op = op
            node.params = EMPTY
            node.args = (a, b)
            node.out = out
            node.hooks = None
            node.parents = (px, py)
            # _lineage unrolled for two parents
            if px is None:
                px, py = py, None
            if px.__class__ is TapeNode:
                level, leaf = px.level, px.leaf
            else:
                level, leaf = 0, px
            if py is not None:
                if py.__class__ is TapeNode:
                    if py.level > level:
                        level = py.level
                    py = py.leaf
                if py is not leaf:
                    leaf = merge_leaves(leaf, py)
            node.level = level + 1
            node.leaf = leaf
            t.requires_grad = True
            t.grad_fn = node
        else:
            t.requires_grad = False
            t.grad_fn = None
        return t

    fn.__name__ = fn.__qualname__ = f"__r{op.name}__" if swap else op.name
    fn.__doc__ = op.doc
    return fn


tape = Namespace(record, "symnum")
"""Every op of the table over tensors, recording a tape: ``tape.sin(t)``.

VJP rules run in this namespace when ``create_graph=True``, so the backward
sweep is itself recorded and can be differentiated again.
"""

_DUNDERS = {"+": "add", "-": "sub", "*": "mul", "/": "truediv", "**": "pow", "@": "matmul"}
"""Python's names for its binary arithmetic operators, by symbol (``__add__``, ``__radd__``)."""

install_operators(Tensor, tape)
for _op in OPS.values():
    if _op.bind is None and _op.nin == 1:
        setattr(tape, _op.name, _unary(_op))
    elif _op.bind is None and _op.nin == 2:
        setattr(tape, _op.name, _binary(_op))
        _dunder = _DUNDERS.get(_op.infix)
        if _dunder is not None:  # the operator is the op's function itself (no wrapper's call)
            setattr(Tensor, f"__{_dunder}__", getattr(tape, _op.name))
            setattr(Tensor, f"__r{_dunder}__", _binary(_op, swap=True))
Tensor.__neg__ = tape.neg
