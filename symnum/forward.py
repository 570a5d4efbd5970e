"""Forward mode: one evaluation that carries tangents along (dual numbers, autodidax's JVPTrace).

``jvp(f, primals, tangents)`` calls ``f`` on :class:`Dual` values, each a
primal and its tangent. Every op on a dual runs its numpy impl on the primals
and its JVP rule from the op table (:attr:`common.ops.Op.jvp`) on the
tangents, in the same pass: no tape, no backward sweep, about the cost of two
evaluations. An input without a tangent (a constant, an index array) is
:data:`~common.ops.ZERO` to the rules, which skip it.

Each ``jvp`` call is a *trace* with a level, higher than any trace running
around it. An op takes its inputs' highest trace; duals of lower traces are
constants to it (their primal side is the lower dual itself, so the op
recurses into that trace): ``jvp`` of a function that calls ``jvp`` never
confuses the two perturbations. Primals may be tape tensors that require
grad: the primal and tangent computations are then recorded, so ``grad`` of a
function that calls ``jvp`` (reverse over forward) works. The rules of a
trace run in a namespace of its own: :data:`forward` (the general one), or,
for :func:`jacfwd` at the top level, :data:`symnum.batched.batched`, so that
one pass carries every basis tangent at once through the ops' batching rules.

Forward over reverse: ``grad(f)`` called on duals (``jvp`` of a gradient,
a Hessian-vector product) records ``f``'s primal and tangent on the tape from
fresh leaves ``x``; the gradient is then one reverse sweep of the primal, and
its tangent one reverse sweep of the tangent, since d/de grad f(x + e t) =
H t = grad_x <grad f(x), t>. A Jacobian at duals is likewise the Jacobian of the
pair (primal, tangent) (:func:`symnum.functional.jacobian_of_duals`), and
:func:`jacfwd`'s batch of basis tangents reaches a reverse transform one column
at a time (:func:`by_columns`), so ``jacfwd(jacrev(f))`` and ``jacfwd(grad(f))``
are Hessians. This holds at the top level (duals of numbers), also when the
duals reach ``f`` through a closure rather than its argument (the gradient is
then a dual too); deeper mixes of the two are refused with a GradError.
Likewise ``jvp`` of a function that closes over tape tensors returns tensors on
the tape, whatever its primals.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from common.errors import DTypeError, GradError, LinAlgError, ShapeError, op_error
from common.ops import ZERO, Namespace, numeric
from common.overloads import install_operators
from common.site import user_site
from common.tree import tree_flatten, tree_unflatten

from . import engine
from .batched import Batched, basis, batched, unbatch
from .tape import record
from .tensor import Tensor, wrap
from .transforms import argnums_of, output_tensor, transforming

__all__ = ["Dual", "forward", "jacfwd", "jvp"]


class _Trace:
    """One running ``jvp``: its level (nesting depth order) and the namespace its rules run in."""

    __slots__ = ("level", "ns")

    def __init__(self, level: int, ns):
        self.level = level
        self.ns = ns


LEVELS = itertools.count(1)


class Dual:
    """A primal value and its tangent in one trace; ``shape``/``dtype`` are the primal's."""

    __slots__ = ("primal", "tangent", "trace")
    __array_ufunc__ = None  # numpy defers to our reflected operators: ``arr * d`` is a Dual

    def __init__(self, primal, tangent, trace: _Trace):
        self.primal = primal
        self.tangent = tangent
        self.trace = trace

    @property
    def shape(self) -> tuple:
        return self.primal.shape

    @property
    def ndim(self) -> int:
        return len(self.primal.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.primal.dtype

    @property
    def size(self) -> int:
        return int(np.prod(self.primal.shape, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.primal)

    def __repr__(self) -> str:
        return f"Dual(shape {self.shape}, {self.dtype}, level {self.trace.level})"


def untraced(op, inputs: tuple, params: dict):
    """``op`` on inputs no forward-mode trace holds: recorded when a tape tensor is among them, batched when a
    value of ``vmap`` is (a jvp inside a vmap: its primals are mapped), else on plain numbers."""
    for x in inputs:
        c = x.__class__
        if c in _NUMBERS:
            continue
        if isinstance(x, Tensor):
            return record(op, inputs, params)
        other = getattr(c, "twograd_apply", None)
        if other is not None:
            return other(op, inputs, params)
    try:
        return op.impl(*inputs, **params)
    except np.linalg.LinAlgError as e:
        raise refused(op, inputs, e) from None


def refused(op, inputs, err: np.linalg.LinAlgError) -> LinAlgError:
    """A matrix LAPACK refused on plain numbers (inside vmap or jvp), worded as the tape words it."""
    return op_error(LinAlgError, op.name, str(err), inputs, user_site())


def _held(v) -> bool:
    """Whether a transformation holds ``v``: a dual, a mapped value of ``vmap``, a tensor with history."""
    return getattr(v.__class__, "twograd_apply", None) is not None or (isinstance(v, Tensor) and v.requires_grad)


_new = object.__new__
_NUMBERS = frozenset({np.ndarray, np.float64, np.float32, np.float16, np.longdouble, np.complex128,
                      np.int64, np.int32, np.bool_, int, float, bool})
"""The classes of plain numbers: values no transformation holds and no tape records."""


def apply_duals(op, inputs: tuple, params: dict):
    """``op`` on values that may be duals: the impl on the primals, the JVP rule on the tangents."""
    if len(inputs) == 1 and not params:  # the bulk of a scalar chain, inlined: no loops, no ``**`` calls
        x = inputs[0]
        if x.__class__ is Dual and x.primal.__class__ in _NUMBERS and x.tangent.__class__ in _NUMBERS \
                and x.trace.ns is forward:
            p, t = x.primal, x.tangent
            try:
                out = op.impl(p)
            except np.linalg.LinAlgError as e:
                raise refused(op, (p,), e) from None
            diagonal = getattr(op.jvp, "self_adjoint", None)  # the JVP rule is the VJP rule: call that directly
            t = diagonal(numeric, t, out, p) if diagonal is not None else op.tangent(numeric, (t,), out, (p,), params)
            if t is ZERO:
                return out
            d = _new(Dual)  # Dual(out, t, trace) without the __init__ call
            d.primal, d.tangent, d.trace = out, t, x.trace
            return d
    top = None
    numbers = True  # every input a plain number or a dual of plain numbers in one trace
    for x in inputs:
        c = x.__class__
        if c is Dual:
            if top is None:
                top = x.trace
            elif x.trace is not top:
                numbers = False
                if x.trace.level > top.level:
                    top = x.trace
            if x.primal.__class__ not in _NUMBERS or x.tangent.__class__ not in _NUMBERS:
                numbers = False
        elif c not in _NUMBERS:
            numbers = False
    if top is None:
        return untraced(op, inputs, params)
    if numbers and top.ns is forward:
        return _on_numbers(op, inputs, params, top)
    primals = []
    tangents = []
    for x in inputs:
        if x.__class__ is Dual and x.trace is top:
            primals.append(x.primal)
            tangents.append(x.tangent)
        else:  # a constant; a tensor without history is its numbers (a batched trace's rules need numbers)
            primals.append(x._data if x.__class__ is Tensor and not x.requires_grad else x)
            tangents.append(ZERO)
    primals = tuple(primals)
    out = apply_duals(op, primals, params)
    t = op.tangent(top.ns, tangents, out, primals, params)
    return out if t is ZERO else Dual(out, t, top)


def _on_numbers(op, inputs: tuple, params: dict, trace: _Trace):
    """``apply_duals`` where every primal and tangent is a plain number: the impl on the primals, the JVP rule
    in the numeric namespace (each op there is its impl), with none of the general path's recursion."""
    primals = tuple([x.primal if x.__class__ is Dual else x for x in inputs])
    tangents = tuple([x.tangent if x.__class__ is Dual else ZERO for x in inputs])
    try:
        out = op.impl(*primals, **params)
    except np.linalg.LinAlgError as e:
        raise refused(op, primals, e) from None
    t = op.tangent(numeric, tangents, out, primals, params)
    return out if t is ZERO else Dual(out, t, trace)


forward = Namespace(apply_duals, "forward")
"""Every op of the table over values that may be duals: the namespace JVP rules run in."""

install_operators(Dual, forward)
Dual.twograd_apply = staticmethod(apply_duals)  # how a tape op (``symnum.sin(dual)``) hands a dual over


def _nested(values) -> bool:
    """Whether results must stay what they are: fed tape tensors that require grad, duals of an outer trace,
    or values of an enclosing ``vmap``."""
    return any(_held(v) for v in values)


def _primal(p):
    """The primal value of an argument: duals, mapped values and tensors with history as they are, else an
    array."""
    if _held(p):
        return p
    data = np.asarray(p._data if isinstance(p, Tensor) else p)
    if data.dtype.kind != "f":
        raise DTypeError(f"jvp: can only push tangents through floating inputs, got dtype {data.dtype} "
                         f"(pass floats, e.g. 1.0 rather than 1; at {user_site(3)})")
    return data


def _tangent(t, x, k: int):
    """The tangent of argument ``k``: of ``x``'s shape, in its dtype (duals and tensors as they are)."""
    if _held(t) or isinstance(t, Tensor):
        data = t
    else:
        data = np.asarray(t, dtype=x.dtype)
    if tuple(data.shape) != tuple(x.shape):
        raise ShapeError(f"jvp: tangent {k} has shape {tuple(data.shape)}, but its primal has shape "
                         f"{tuple(x.shape)} (at {user_site(3)})")
    return data


def split_dual(out, trace: _Trace) -> tuple:
    """(primal, tangent) of ``f``'s result in ``trace``; a result that carries no tangent gets zeros."""
    if out.__class__ is Dual and out.trace is trace:
        return out.primal, out.tangent
    if not hasattr(out, "shape"):
        try:
            out = np.asarray(out)
        except Exception:
            raise GradError(f"jvp: the function must return one array or tensor, got {type(out).__name__} "
                            f"(at {user_site(3)})") from None
    return out, np.zeros(out.shape, out.dtype if out.dtype.kind == "f" else np.float64)


def _plain(v, dtype=None) -> np.ndarray:
    """A result handed back at the top level: a numpy array of one's own."""
    data = np.array(v._data if isinstance(v, Tensor) else v)
    return data if dtype is None or data.dtype == dtype or data.dtype.kind != "f" else data.astype(dtype)


def _kept(v):
    """A result handed back nested: a tensor (an outer trace's dual, a mapped value) stays, numbers become a
    tensor."""
    return v if isinstance(v, Tensor) or getattr(v.__class__, "twograd_apply", None) is not None \
        else wrap(np.asarray(v))


def jvp(f: Callable, primals: Sequence, tangents: Sequence) -> tuple:
    """``(f(*primals), J v)`` in one forward pass: ``f`` runs once on dual numbers.

    ``tangents[k]`` has the shape of ``primals[k]`` (it is cast to its dtype).
    At the top level both results are numpy arrays; fed tensors that require
    grad (or duals of an enclosing ``jvp``) they stay differentiable.
    """
    primals, tangents = list(primals), list(tangents)
    if len(primals) != len(tangents):
        raise GradError(f"jvp: {len(primals)} primals but {len(tangents)} tangents (at {user_site()})")
    nested = _nested(primals) or _nested(tangents)
    trace = _Trace(next(LEVELS), forward)
    xs = [_primal(p) for p in primals]
    duals = [Dual(x, _tangent(t, x, k), trace) for k, (x, t) in enumerate(zip(xs, tangents))]
    out, tangent = split_dual(f(*duals), trace)
    if nested or _held(out) or _held(tangent):  # also a closure over a tape tensor or an outer trace's dual
        return _kept(out), _kept(tangent)
    out = _plain(out)
    return out, _plain(tangent, out.dtype)


def _argnums(argnums) -> tuple[bool, tuple[int, ...]]:
    return argnums_of(argnums, "jacfwd")


def jacfwd(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``f`` by forward mode, as a function: shape ``f(x).shape + x.shape``.

    At the top level ONE forward pass carries every basis tangent at once (a
    batch, through the ops' batching rules): a column per input element, so
    it is the cheap direction when ``x`` has fewer elements than ``f(x)``.
    Nested (tensors that require grad, duals), one ``jvp`` per column.
    """
    single, nums = _argnums(argnums)

    def jacfwd_f(*args, **kwargs):
        for i in nums:
            if not -len(args) <= i < len(args):
                raise GradError(f"jacfwd: argnums {i} is out of range for {len(args)} positional arguments "
                                f"(at {user_site()})")
        nested = _nested(args)
        jacs = [(_columns if nested else _batched_columns)(f, list(args), kwargs, i) for i in nums]
        return jacs[0] if single else tuple(jacs)

    jacfwd_f.__name__ = f"jacfwd({getattr(f, '__name__', 'f')})"
    return jacfwd_f


def _batched_columns(f: Callable, args: list, kwargs: dict, i: int) -> np.ndarray:
    """All columns of d f / d args[i] in one pass: the tangent is the batch of basis vectors."""
    x = _primal(args[i])
    n = x.size
    seed = basis(n, 0, n, x.dtype) if x.ndim == 1 else Batched(np.eye(n, dtype=x.dtype).reshape((n, *x.shape)))
    args[i] = Dual(x, seed, _Trace(next(LEVELS), batched))
    out, tangent = split_dual(f(*args, **kwargs), args[i].trace)
    out = _plain(out)
    if tangent.__class__ is Batched:
        cols = tangent.dense()
    else:
        cols = unbatch(tangent, n, out.shape)
    cols = np.asarray(cols).reshape((n, *out.shape))
    return _plain(np.moveaxis(cols, 0, -1).reshape(out.shape + x.shape), out.dtype)


def _columns(f: Callable, args: list, kwargs: dict, i: int):
    """The columns one ``jvp`` each, stacked on the tape so that the result stays differentiable."""
    x = args[i]
    n = int(np.prod(x.shape, dtype=np.int64))
    cols = []
    out_shape = None
    for k in range(n):
        e = np.zeros(x.shape, x.dtype)
        e.flat[k] = 1

        def g(xk):
            return f(*args[:i], xk, *args[i + 1:], **kwargs)

        out, col = jvp(g, [x], [e])
        out_shape = tuple(out.shape)
        cols.append(forward.reshape(col, (-1,)))
    stacked = forward.stack(cols, axis=-1) if cols else wrap(np.zeros((0,), x.dtype))
    return _kept(forward.reshape(stacked, out_shape + tuple(x.shape)) if cols else stacked)


def value_and_grad_of_duals(f: Callable, args: tuple, kwargs: dict, nums: tuple, single: bool) -> tuple:
    """``value_and_grad(f)`` at duals: (value, gradient) as duals, the tangents from the tape (see the
    module docstring)."""
    top = top_trace(args)
    columns = by_columns(lambda a: value_and_grad_of_duals(f, a, kwargs, nums, single), args, top, "grad")
    if columns is not None:
        return columns
    for a in args:
        if a.__class__ is Dual and a.trace is top and not (_numbers(a.primal) and _numbers(a.tangent)):
            raise GradError("grad of duals: forward over reverse is supported on duals of numbers (a jvp of a "
                            f"grad at the top level), not on tensors or nested duals (at {user_site(3)})")
    args = list(args)
    leaves = []
    for i in nums:
        a = args[i]
        if a.__class__ is not Dual or a.trace is not top:
            raise GradError(f"grad of duals: argument {i} carries no tangent of the enclosing jvp (at {user_site(3)})")
        leaf = wrap(np.array(a.primal), True)
        leaves.append((leaf, a.tangent))
        args[i] = Dual(leaf, a.tangent, top)
    with transforming():
        out, tangent = split_dual(f(*args, **kwargs), top)
        out = output_tensor(out, "grad")
        if out.size != 1:
            raise GradError(f"grad: the function must return a single element, got shape {out.shape} "
                            f"(at {user_site(3)})")
        xs = [leaf for leaf, _ in leaves]
        grads = _sweep(engine, out, xs)
        tangents = _sweep(engine, tangent, xs)
    value = Dual(_plain(out), _plain(tangent), top)
    duals = [Dual(g, t, top) for g, t in zip(grads, tangents)]
    return value, duals[0] if single else tuple(duals)


def value_and_grad_of_dual_result(out: Dual, xs: list, single: bool) -> tuple:
    """``value_and_grad(f)`` at plain values, for an ``f`` that closes over duals of an enclosing ``jvp``
    (and so returns one): the leaves ``xs`` were recorded on the tape through the dual's primal and tangent,
    so the gradient is one reverse sweep of each, a dual of that trace, as in
    :func:`value_and_grad_of_duals`. Deeper mixes (tensors with history, nested duals) are refused."""
    if out.primal.__class__ is Dual or out.tangent.__class__ is Dual:
        raise GradError("grad of a function closing over nested duals: forward over reverse is supported on "
                        f"duals of numbers (a jvp of a grad at the top level) (at {user_site(3)})")
    primal = output_tensor(out.primal, "grad")
    if primal.size != 1:
        raise GradError(f"grad: the function must return a single element, got shape {primal.shape} "
                        f"(at {user_site(3)})")
    grads, tangents = _sweep(engine, primal, xs), _sweep(engine, out.tangent, xs)
    value = Dual(_plain(primal), _plain(out.tangent), out.trace)
    duals = [Dual(g, t, out.trace) for g, t in zip(grads, tangents)]
    return value, duals[0] if single else tuple(duals)


def _numbers(v) -> bool:
    return isinstance(v, (np.ndarray, np.generic))


def top_trace(args) -> _Trace:
    """The innermost forward-mode trace among ``args`` (at least one is a dual)."""
    return max((a.trace for a in args if a.__class__ is Dual), key=lambda t: t.level)


def numbers_duals(args, top: _Trace) -> bool:
    """Whether every dual of ``top`` among ``args`` holds numbers: a primal and a tangent that are arrays."""
    return all(_numbers(a.primal) and _numbers(a.tangent) for a in args if a.__class__ is Dual and a.trace is top)


def by_columns(call: Callable, args: tuple, top: _Trace, what: str):
    """``call(args)`` where the duals of ``top`` carry a batch of tangents (:func:`jacfwd`'s basis columns) into
    a reverse transform, which takes duals of numbers (forward over reverse, see the module docstring): one
    call per column, on duals of a fresh trace, the results' tangents stacked back into a batch of ``top``.
    None when every tangent is numbers already (or a primal is not: the caller says what it takes)."""
    ks = [k for k, a in enumerate(args) if a.__class__ is Dual and a.trace is top]
    if not all(_numbers(args[k].primal) for k in ks) or all(_numbers(args[k].tangent) for k in ks):
        return None
    sizes = {args[k].tangent.value.shape[0] for k in ks if args[k].tangent.__class__ is Batched}
    if not sizes:  # tensors, nested duals: not a batch of columns
        return None
    if len(sizes) > 1:
        raise GradError(f"{what} of duals: the arguments carry batches of tangents of different sizes "
                        f"({sorted(sizes)}; at {user_site(4)})")
    n = sizes.pop()
    dense = {}
    for k in ks:  # each column's tangents (a plain tangent is the same for every column)
        t, shape = args[k].tangent, tuple(args[k].shape)
        dense[k] = t.dense().reshape((n, *shape)) if t.__class__ is Batched else np.broadcast_to(t, (n, *shape))
    outs = []
    for j in range(n):
        trace = _Trace(next(LEVELS), forward)
        cols = list(args)
        for k in ks:
            cols[k] = Dual(args[k].primal, dense[k][j], trace)
        leaves, treedef = tree_flatten(call(tuple(cols)))
        outs.append([split_dual(x, trace) for x in leaves])
    parts = [Dual(_plain(outs[0][i][0]), Batched(np.stack([_plain(o[i][1]) for o in outs])), top)
             for i in range(len(outs[0]))]
    return tree_unflatten(treedef, parts)


def _sweep(engine, out, xs) -> list:
    """d out / d xs as arrays (zeros where ``out`` does not depend on one)."""
    if not isinstance(out, Tensor) or not out.requires_grad:
        return [np.zeros(x.shape, x.dtype) for x in xs]
    gs = engine.grad([out], xs, retain_graph=True, disconnected="zero")
    return [np.array(g._data) if g is not None else np.zeros(x.shape, x.dtype) for g, x in zip(gs, xs)]
