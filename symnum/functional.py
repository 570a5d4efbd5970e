"""Function transforms over the tape engine, as in HIPS autograd and JAX.

``grad(f)`` is a new function: it runs ``f`` on fresh leaf tensors, sweeps the
tape back and returns numpy arrays. The transforms compose: called inside
another transform (or on tensors that require grad), a transform records its
own backward (``create_graph``) and returns tensors, so ``grad(grad(f))``,
``jacobian(grad(f))`` (the Hessian) and ``grad`` of a ``vjp`` all work.

Each differentiated argument gets a node of its own (an identity reshape) when
it already has history, so an inner ``grad`` only sees the paths through its
own argument: no perturbation confusion between nesting levels. An argument
given as an array is copied into its leaf, so a ``vjp_fn`` called later
differentiates at the values of the call even if the caller's array changed.

An argument the result does not depend on is handled as ``symsym.grad`` and
``symnum.grad`` do (``disconnected=``): ``grad``/``value_and_grad`` raise by
default; ``jacobian`` gives zeros by default, as ``symsym.jacobian`` does.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Sequence

import numpy as np

from common.errors import DTypeError, GradError, TreeError
from common.site import user_site
from common.tree import is_leaf, tree_flatten, tree_map, tree_structure, tree_unflatten

from . import engine, forward
from .batched import Batched, basis, batched, same_scale, unbatch
from .engine import disconnection_policy
from .mode import MODE
from .tape import tape
from .tensor import Tensor, wrap
from .transforms import argnums_of, output_tensor, transforming
from .trees import join_cotangent, joined, matching, regroup, shape_of, split, spread
from .vmap import Mapped, vmap


def _nested(args) -> bool:
    """Whether results must stay differentiable: inside a transform, or fed tensors with history."""
    return MODE.depth > 0 or any(isinstance(a, Tensor) and a.requires_grad for a in args)


def _input(a) -> Tensor:
    """A differentiable stand-in for argument ``a``."""
    if isinstance(a, Tensor) and a.requires_grad:
        return tape.reshape(a, a.shape)  # a fresh node, still connected to a's history
    if getattr(a.__class__, "twograd_apply", None) is not None:  # a batch of vmap: not one leaf
        raise GradError(f"grad of a vmap-ed argument ({a!r}) is not supported: for per-example gradients take "
                        f"grad of the sum of vmap(f) over the batch (at {user_site()})")
    data = np.array(a._data if isinstance(a, Tensor) else a)  # our own copy: see the module docstring
    if data.dtype.kind != "f":
        raise DTypeError(f"can only differentiate with respect to floating inputs, got dtype {data.dtype} "
                         f"(pass floats, e.g. 1.0 rather than 1; at {user_site()})")
    return wrap(data, True)


def _call(f: Callable, args, kwargs, nums, what: str) -> tuple[list, Tensor]:
    """Run ``f`` with arguments ``nums`` made differentiable: (those inputs, the output).

    Call inside ``transforming()`` so that ``f``'s ops are recorded.
    """
    args = list(args)
    for i in nums:
        if not -len(args) <= i < len(args):
            raise GradError(f"{what}: argnums {i} is out of range: the function was called with {len(args)} "
                            f"positional argument{'' if len(args) == 1 else 's'} (at {user_site()})")
        args[i] = _input(args[i])
    out = f(*args, **kwargs)
    return [args[i] for i in nums], out if out.__class__ is forward.Dual else output_tensor(out, what)


def _grads(out: Tensor, xs, seed, create_graph: bool, retain_graph: bool | None,
           disconnected: str = "zero") -> list:
    """Gradients of ``out`` (contracted with ``seed``) for each of ``xs``; an ``x`` it does not
    depend on gets what ``disconnected`` says (zeros by default)."""
    if out.requires_grad:
        return list(engine.grad([out], xs, None if seed is None else [seed], retain_graph=retain_graph,
                                create_graph=create_graph, disconnected=disconnected))
    if disconnected == "raise":
        raise _disconnected(len(xs), "grad")
    return [wrap(np.zeros(x.shape, x.dtype)) if disconnected == "zero" else None for x in xs]


def _disconnected(count: int, what: str) -> GradError:
    return GradError(f"{what}: the function's result does not depend on argument{'s' if count > 1 else ''} "
                     "it is differentiated with respect to: it is disconnected from them (no differentiable "
                     f"path leads to the result); pass disconnected='zero' or 'none' to allow this "
                     f"(at {user_site(3)})")


def _result(t: Tensor | None, nested: bool):
    """What a transform hands back: the tensor when nested, else a numpy array of one's own."""
    return t if nested or t is None else np.array(t._data)


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, disconnected: str = "raise") -> Callable:
    """``f``'s value and its gradient with respect to argument(s) ``argnums``.

    ``f`` must return a single-element tensor (or array). The gradient is an
    array like the argument (of its dtype), or a tuple of them when
    ``argnums`` is a tuple; an argument that is a pytree (a dict, list, tuple
    or namedtuple of arrays, :mod:`common.tree`) gets a gradient of the same
    structure. An argument ``f`` does not depend on is an error
    (``disconnected="raise"``), gets zeros (``"zero"``) or None (``"none"``).
    """
    single, nums = argnums_of(argnums, "grad")
    flat = _value_and_grad(f, nums, single, disconnected)

    def value_and_grad_f(*args, **kwargs):
        s = spread(f, args, nums, "grad")
        if s is None:
            return flat(*args, **kwargs)
        value, gs = _value_and_grad(s.fn, s.nums, False, disconnected)(*s.args, **kwargs)
        gs = regroup(gs, s.groups)
        return value, (gs[0] if single else tuple(gs))

    value_and_grad_f.__name__ = f"value_and_grad({getattr(f, '__name__', 'f')})"
    return value_and_grad_f


def _value_and_grad(f: Callable, nums: tuple, single: bool, disconnected: str) -> Callable:
    """:func:`value_and_grad` over arguments that are arrays."""
    policy = disconnection_policy(disconnected, what="grad")

    def value_and_grad_f(*args, **kwargs):
        if any(a.__class__ is forward.Dual for a in args):  # forward over reverse: see symnum.forward
            return forward.value_and_grad_of_duals(f, args, kwargs, nums, single)
        if any(getattr(a.__class__, "twograd_apply", None) is not None for a in args):  # vmap(grad(f))
            return value_and_grad_of_mapped(f, args, kwargs, nums, single, disconnected)
        nested = _nested(args)
        with transforming():
            xs, out = _call(f, args, kwargs, nums, "grad")
            if out.__class__ is forward.Dual:  # f closes over an enclosing jvp's duals: reverse inside forward
                return forward.value_and_grad_of_dual_result(out, xs, single)
            if out.size != 1:
                raise GradError(f"grad: the function must return a single element, got shape {out.shape}; "
                                f"use jacobian or vjp for non-scalar functions (at {user_site()})")
            gs = _grads(out, xs, None, nested, None, policy)
        gs = [_result(g, nested) for g in gs]
        return _result(out, nested), (gs[0] if single else tuple(gs))

    return value_and_grad_f


def grad(f: Callable, argnums: int | Sequence[int] = 0, disconnected: str = "raise") -> Callable:
    """The gradient of scalar-valued ``f`` as a function (see :func:`value_and_grad`)."""
    vg = value_and_grad(f, argnums, disconnected)

    def grad_f(*args, **kwargs):
        return vg(*args, **kwargs)[1]

    grad_f.__name__ = f"grad({getattr(f, '__name__', 'f')})"
    return grad_f


def vjp(f: Callable, *primals) -> tuple:
    """``(f(*primals), vjp_fn)``; ``vjp_fn(ct)`` gives one cotangent per primal.

    The forward runs once; ``vjp_fn`` may be called many times (the tape is
    kept). Primals and the result may be pytrees: the cotangent has the
    result's structure and each cotangent handed back its primal's.
    """
    s = spread(f, primals, range(len(primals)), "vjp")
    g, seen = joined(f if s is None else s.fn, "vjp")
    out, flat_fn = _vjp(g, *(primals if s is None else s.args))
    tree_out, shapes = seen.treedef, seen.shapes  # kept: vjp_fn may be called later, in another thread

    def vjp_fn(cotangent):
        if tree_out is not None:
            cotangent = join_cotangent(cotangent, tree_out, shapes, "vjp")
        elif not tree_structure(cotangent).is_leaf:
            raise TreeError(f"vjp: the cotangent has structure {tree_structure(cotangent)!r}, but the function's "
                            f"result is one array (at {user_site()})")
        gs = flat_fn(cotangent)
        return gs if s is None else tuple(regroup(gs, s.groups))

    if tree_out is not None:
        out = tree_unflatten(tree_out, split(out, shapes))
    return out, vjp_fn


def _vjp(f: Callable, *primals) -> tuple:
    """:func:`vjp` over primals and a result that are arrays."""
    nested = _nested(primals)
    with transforming():
        xs = [_input(p) for p in primals]
        out = output_tensor(f(*xs), "vjp")

    def vjp_fn(cotangent):
        with transforming():
            gs = _grads(out, xs, cotangent, nested, True)
        return tuple(_result(g, nested) for g in gs)

    return _result(out, nested), vjp_fn


def jvp(f: Callable, primals: Sequence, tangents: Sequence) -> tuple:
    """``(f(*primals), J v)``: forward mode, one pass on dual numbers (:func:`symnum.forward.jvp`).

    Primals, tangents and the result may be pytrees; each tangent has its
    primal's structure, and ``J v`` the result's.
    """
    primals, tangents = list(primals), list(tangents)
    if len(primals) != len(tangents):
        return forward.jvp(f, primals, tangents)  # which says what is wrong
    matching(primals, tangents, "jvp")
    s = spread(f, primals, range(len(primals)), "jvp")
    if s is not None:
        tangents = [t for k, p in enumerate(primals)
                    for t in ([tangents[k]] if tree_structure(p).is_leaf else tree_flatten(tangents[k])[0])]
        f, primals = s.fn, s.args
    g, seen = joined(f, "jvp")
    out, tangent = forward.jvp(g, primals, tangents)
    if seen.treedef is None:
        return out, tangent
    return (tree_unflatten(seen.treedef, split(out, seen.shapes)),
            tree_unflatten(seen.treedef, split(tangent, seen.shapes)))


def jacobian(f: Callable, argnums: int | Sequence[int] = 0, disconnected: str = "zero",
             mode: str = "auto") -> Callable:
    """The Jacobian of ``f`` as a function: shape ``f(x).shape + x.shape``.

    Arguments and the result may be pytrees: the Jacobian is then the
    result's structure of (a tuple over ``argnums`` of) the argument's
    structure of blocks ``f(x)[i].shape + x[j].shape``, as JAX's. The result's
    leaves are joined into one vector, so it is still one sweep.
    """
    return over_trees(lambda g, nums: _jacobian(g, nums, disconnected, mode), f, argnums, "jacobian")


def jacfwd(f: Callable, argnums: int | Sequence[int] = 0) -> Callable:
    """The Jacobian of ``f`` by forward mode (:func:`symnum.forward.jacfwd`), over pytrees as :func:`jacobian`."""
    return over_trees(forward.jacfwd, f, argnums, "jacfwd")


def over_trees(make: Callable, f: Callable, argnums, what: str) -> Callable:
    """The Jacobian transform ``make(f, argnums)`` taking pytree arguments and results (see :func:`jacobian`)."""
    single, nums = argnums_of(argnums, what)
    g, seen = joined(f, what)
    flat = make(g, argnums)

    def jacobian_f(*args, **kwargs):
        s = spread(f, args, nums, what)
        if s is None:
            jacs = flat(*args, **kwargs)
            jacobian_f.mode = getattr(flat, "mode", None)
            if seen.treedef is None:
                return jacs
            jacs, groups, shapes = [jacs] if single else list(jacs), [None] * len(nums), \
                [shape_of(args[i]) for i in nums]
            treedef, parts = seen.treedef, seen
        else:
            h, parts = joined(s.fn, what)
            jacs, groups = list(make(h, s.nums)(*s.args, **kwargs)), s.groups
            shapes = [shape_of(s.args[i]) for i in s.nums]
            treedef = parts.treedef
        if treedef is None:  # one array out: a block per differentiated leaf
            blocks = regroup(jacs, groups)
            return blocks[0] if single else tuple(blocks)
        pieces = [split(j, parts.shapes, shape) for j, shape in zip(jacs, shapes)]  # per leaf in: per leaf out
        rows = []
        for k in range(len(parts.shapes)):
            blocks = regroup([p[k] for p in pieces], groups)
            rows.append(blocks[0] if single else tuple(blocks))
        return tree_unflatten(treedef, rows)

    jacobian_f.__name__ = f"{what}({getattr(f, '__name__', 'f')})"
    jacobian_f.mode = getattr(flat, "mode", None)
    return jacobian_f


def _jacobian(f: Callable, argnums: int | Sequence[int] = 0, disconnected: str = "zero",
              mode: str = "auto") -> Callable:
    """:func:`jacobian` over arguments and a result that are arrays.

    At the top level it is one batched sweep: reverse mode (:func:`jacrev`:
    the tape recorded once, swept back once for a batch of basis cotangents,
    a row per output element) or forward mode (:func:`symnum.forward.jacfwd`:
    one pass carrying a column per input element). ``mode="auto"`` takes the
    one with the smaller batch, forward when the inputs have fewer elements
    than the output (book section 6.5.9); it decides on the first call for
    each set of argument shapes (the output's shape is only known by running
    ``f``) and says what it chose in the function's ``mode`` attribute.
    ``"forward"`` or ``"reverse"`` forces one. Nested (inside a transform, on
    tensors with history), one reverse sweep per row keeps the result
    differentiable; inside a ``vmap``, forward mode (one ``jvp`` per column runs on
    the mapped values). An argument ``f`` does not depend on gets zeros
    (``disconnected="zero"``, as in ``symsym.jacobian``) or is an error (``"raise"``).
    """
    if mode not in ("auto", "forward", "reverse"):
        raise GradError(f"jacobian: mode must be 'auto', 'forward' or 'reverse', got {mode!r} (at {user_site()})")
    single, nums = argnums_of(argnums, "jacobian")
    policy = _jacobian_policy(disconnected)
    rows = _jacobian_rows(f, nums, policy)
    rev = _jacobian_batched(f, nums, policy)
    fwd = forward.jacfwd(f, nums)
    chosen: dict[tuple, str] = {}  # argument shapes -> the mode auto took for them

    def jacobian_f(*args, **kwargs):
        duals = any(a.__class__ is forward.Dual for a in args)
        if duals and forward.numbers_duals(args, top := forward.top_trace(args)):
            return jacobian_of_duals(f, args, kwargs, nums, single, top, disconnected)
        if duals and (columns := forward.by_columns(
                lambda a: jacobian_f(*a, **kwargs), args, forward.top_trace(args), "jacobian")) is not None:
            return columns
        if _nested(args) or duals:
            jacs = rows(*args, **kwargs)
        elif any(getattr(a.__class__, "twograd_apply", None) is not None for a in args):  # inside a vmap
            if mode == "reverse":
                raise GradError(f"jacobian: inside a vmap it is built in forward mode (a jvp per column runs "
                                f"on mapped values), not mode='reverse' (at {user_site()})")
            jacs = fwd(*args, **kwargs)
            jacobian_f.mode = "forward"
        else:
            key = tuple(tuple(np.shape(a)) for a in args)
            how = mode if mode != "auto" else chosen.get(key)
            if how is None:  # record f once; its output's size decides, before any sweep
                xs_size, out_size, jacs = rev(*args, _twograd_probe=True, **kwargs)
                chosen[key] = "forward" if xs_size < out_size else "reverse"
                if jacs is None:
                    jacs = fwd(*args, **kwargs)
            else:
                jacs = fwd(*args, **kwargs) if how == "forward" else rev(*args, **kwargs)[2]
            jacobian_f.mode = chosen.get(key, mode)
        return jacs[0] if single else tuple(jacs)

    jacobian_f.__name__ = f"jacobian({getattr(f, '__name__', 'f')})"
    jacobian_f.mode = mode
    return jacobian_f


def jacrev(f: Callable, argnums: int | Sequence[int] = 0, disconnected: str = "zero") -> Callable:
    """The Jacobian of ``f`` by reverse mode: one batched sweep of the rows (nested: one sweep per row).

    The cheap direction when ``f(x)`` has fewer elements than ``x``.
    """
    return jacobian(f, argnums, disconnected, mode="reverse")


def jacobian_of_duals(f: Callable, args: tuple, kwargs: dict, nums: tuple, single: bool, top,
                      disconnected: str):
    """``jacobian(f)`` at duals of numbers (a ``jvp`` or ``jacfwd`` of a Jacobian): the Jacobian's tangent is
    the Jacobian of ``f``'s tangent. Row k of the Jacobian is the gradient of ``f_k``, whose derivative
    along t is its Hessian times t, and that Hessian is symmetric, so it is also the gradient of
    ``f_k``'s tangent. Both are one top-level Jacobian of the pair (value, tangent), recorded once."""
    def pair(*xs):
        a = list(args)
        for i, x in zip(nums, xs):
            a[i] = forward.Dual(x, a[i].tangent, top) if a[i].__class__ is forward.Dual and a[i].trace is top else x
        leaves, treedef = tree_flatten(f(*a, **kwargs))
        split_ = [forward.split_dual(y, top) for y in leaves]
        return (tree_unflatten(treedef, [p for p, _ in split_]), tree_unflatten(treedef, [t for _, t in split_]))

    primals = [a.primal if a.__class__ is forward.Dual and a.trace is top else a for a in (args[i] for i in nums)]
    jac_p, jac_t = jacobian(pair, 0 if single else tuple(range(len(nums))), disconnected)(*primals)
    return tree_map(lambda p, t: forward.Dual(p, t, top), jac_p, jac_t)


def _jacobian_policy(disconnected: str) -> str:
    policy = disconnection_policy(disconnected, what="jacobian")
    if policy == "none":
        raise GradError(f"jacobian: disconnected must be 'zero' or 'raise' (a Jacobian has no None rows) "
                        f"(at {user_site(3)})")
    return policy


def _jacobian_rows(f: Callable, nums: tuple, policy: str) -> Callable:
    """One reverse sweep per output element over a tape recorded once, each kept on the tape (for nesting)."""
    def rows_f(*args, **kwargs) -> list:
        nested = _nested(args)
        with transforming():
            xs, out = _call(f, args, kwargs, nums, "jacobian")
            rows: list[list] = [[] for _ in xs]
            for k in range(out.size):
                seed = np.zeros(out.shape, out.dtype)
                seed.flat[k] = 1
                for r, g in zip(rows, _grads(out, xs, seed, nested, True, policy)):
                    r.append(g)
            return [_stack_rows(r, out.shape, x.shape, x.dtype, nested) for r, x in zip(rows, xs)]

    return rows_f


def _jacobian_batched(f: Callable, nums: tuple, policy: str) -> Callable:
    """Reverse mode in batched sweeps: ``(inputs' size, output's size, Jacobians)``, numbers in and out
    (with ``_twograd_probe``, Jacobians None and no sweep when forward mode would be cheaper).

    The rows of the identity over the output are the batch of cotangents
    (:func:`_basis_blocks`, a block at a time when the output is large), so
    every VJP rule runs once per block through its op's batching rule.
    """
    def batched_f(*args, _twograd_probe: bool = False, **kwargs) -> tuple:
        with transforming():
            xs, out = _call(f, args, kwargs, nums, "jacobian")
            m = out.size
            if _twograd_probe and sum(x.size for x in xs) < m:  # forward mode is the cheaper: no sweep
                return sum(x.size for x in xs), m, None
            jacs = [np.zeros((m, x.size), x.dtype) for x in xs]
            if m and not out.requires_grad and policy == "raise":
                raise _disconnected(len(xs), "jacobian")
            if m and out.requires_grad:
                for start, rows, block in _basis_blocks(out.shape, out.dtype):
                    hs = engine.sweep([out], [block], xs, start + rows < m, False, ns=batched)
                    if start == 0 and policy == "raise" and None in hs:
                        raise _disconnected(len(xs), "jacobian")
                    for jac, h, x in zip(jacs, hs, xs):
                        _store(jac[start:start + rows], h, rows, x.shape)
        jacs = [j.reshape(tuple(out.shape) + tuple(x.shape)) for j, x in zip(jacs, xs)]
        return sum(x.size for x in xs), m, jacs

    return batched_f


def _stack_rows(rows, out_shape, x_shape, dtype, nested):
    if not rows:
        return _result(wrap(np.zeros(out_shape + x_shape, dtype)), nested)
    if nested:
        return tape.reshape(tape.stack(rows), out_shape + x_shape)
    return np.stack([np.asarray(r._data) for r in rows]).reshape(out_shape + x_shape)


WINDOW_ROWS = 128
"""How many Hessian rows of a vector ``x`` one batched sweep computes: the sweep's fixed cost
(tens of microseconds) against the rows x (rows + band) numbers each op touches."""

SWEEP_ELEMENTS = 1 << 16
"""How many Hessian entries one batched sweep computes for an ``x`` of several axes: a batch
this size stays in cache, and a Hessian larger than it is swept a block of rows at a time."""


def hessian(f: Callable, argnums: int = 0) -> Callable:
    """The Hessian of scalar ``f`` with respect to one argument: shape ``x.shape + x.shape``.

    Reverse over reverse: the gradient is recorded once (``create_graph``),
    then swept back once for a whole batch of basis cotangents (the rows of
    the identity), each VJP rule running through its op's batching rule
    (:mod:`symnum.batched`): one sweep for all the rows instead of one per
    row. For a vector ``x`` the rows are windowed: each carries only the
    columns it may reach, so a banded Hessian (Rosenbrock's is tridiagonal)
    costs its band, not n^2 numbers per op. Nested (inside a transform, or on tensors with history), the rows
    are swept one by one on the tape so the result stays differentiable.
    """
    if not isinstance(argnums, int):
        raise GradError(f"hessian takes a single argnums (an int) (at {user_site()})")
    def hessian_f(*args, **kwargs):
        if _nested(args) or -len(args) <= argnums < len(args) and not is_leaf(args[argnums]):
            # a pytree argument: blocks for each pair of its leaves (made here: most calls never need it)
            return jacobian(grad(f, argnums, disconnected="zero"), argnums)(*args, **kwargs)
        with transforming():
            (x,), out = _call(f, args, kwargs, (argnums,), "hessian")
            if out.size != 1:
                raise GradError(f"hessian: the function must return a single element, got shape {out.shape} "
                                f"(at {user_site()})")
            (g,) = _grads(out, [x], None, True, True)
            if not g.requires_grad:  # the gradient is constant: f is at most linear
                return np.zeros(x.shape + x.shape, x.dtype)
            n = x.size
            hess = np.zeros((n, n), x.dtype)
            for start, rows, block in _basis_blocks(x.shape, g.dtype):
                (h,) = engine.sweep([g], [block], [x], start + rows < n, False, ns=batched)
                _store(hess[start:start + rows], h, rows, x.shape)
        return hess.reshape(x.shape + x.shape)

    hessian_f.__name__ = f"hessian({getattr(f, '__name__', 'f')})"
    return hessian_f


def _batch_summands(old: Batched, g) -> tuple:
    """Two arrays whose sum is ``old + g`` when both batches carry one factor and window, else the two
    as they are: how the engine adds a Hessian sweep's fan-out in place without knowing :class:`Batched`."""
    return (old.value, g.value) if g.__class__ is Batched and same_scale(old, g) else (old, g)


engine.register_batch_type(Batched, _batch_summands)


def _basis_blocks(shape: tuple, dtype):
    """``(start, rows, seed)``: the identity's rows, a block at a time, as batched cotangents.

    A vector's blocks are windowed (:func:`symnum.batched.basis`), so a banded
    Hessian costs about rows x (rows + band) numbers per op; other shapes get
    one dense block of rows moved along the identity.
    """
    n = int(np.prod(shape, dtype=np.int64))
    if len(shape) == 1:
        step = max(1, min(n, WINDOW_ROWS))
        for start in range(0, n, step):
            rows = min(step, n - start)
            yield start, rows, basis(rows, start, n, dtype)
        return
    step = max(1, SWEEP_ELEMENTS // n)
    seed = np.zeros((min(step, n), n), dtype)
    diag = np.arange(len(seed))
    for start in range(0, n, step):
        rows = min(step, n - start)
        if start:
            seed[diag, start - step + diag] = 0  # the previous block's ones
        seed[diag[:rows], start + diag[:rows]] = 1
        yield start, rows, Batched(seed[:rows].reshape((rows, *shape)))


def _store(rows_out: np.ndarray, h, rows: int, shape: tuple) -> None:
    """Write swept rows into their block of the result (the scale applied on the way)."""
    if h is None:
        return  # the block is zero already
    if h.__class__ is Batched and h.n is not None:
        rows_out[:, h.lo:h.hi] = h.window()
    elif h.__class__ is Batched:
        np.multiply(h.value, h.scale, out=rows_out.reshape(h.value.shape))
    else:
        rows_out[...] = unbatch(h, rows, shape).reshape(rows_out.shape)


def hvp(f: Callable, x, v):
    """The Hessian-vector product ``H v`` of scalar ``f`` at ``x``, without forming H (§6.5.10).

    ``H v`` is the gradient of ``<grad f(x), v>``: two reverse sweeps. ``x``
    may be a pytree, ``v`` then of its structure, and so is ``H v``.
    """
    matching([x], [v], "hvp")
    leaves, treedef = tree_flatten(v)
    vs = [u._data if isinstance(u, Tensor) and not _nested([u]) else u for u in leaves]

    def inner(x):  # <grad f(x), v>, leaf by leaf
        terms = [tape.sum(g * u) for g, u in zip(tree_flatten(grad(f, disconnected="zero")(x))[0], vs)]
        return functools.reduce(operator.add, terms)

    return grad(inner, disconnected="zero")(x)


def value_and_grad_of_mapped(f: Callable, args: tuple, kwargs: dict, nums: tuple, single: bool,
                             disconnected: str) -> tuple:
    """``value_and_grad(f)`` called on mapped arguments, that is ``vmap(grad(f))``: each example's value and
    gradient, as mapped values of the enclosing ``vmap``.

    One recorded pass: the gradient of the batch's summed values with respect to the whole batch is each
    example's own gradient, the examples being independent. A differentiated argument the batch does not
    reach is broadcast to it first, so that it too gets one gradient per example. On batches of numbers
    (a ``vmap(grad(f))`` not itself inside another transformation).
    """
    top = max((a.trace for a in args if a.__class__ is Mapped), key=lambda t: t.level)
    nums = tuple(i % len(args) if -len(args) <= i < len(args) else i for i in nums)
    size = next(a.value.shape[0] for a in args if a.__class__ is Mapped and a.trace is top)
    axes, values = [], []
    for k, a in enumerate(args):
        if a.__class__ is Mapped and a.trace is top and isinstance(a.value, np.ndarray):
            axes.append(0)
            values.append(a.value)
        elif getattr(a.__class__, "twograd_apply", None) is not None or (isinstance(a, Tensor) and a.requires_grad):
            raise GradError(f"vmap(grad(f)) takes batches of numbers: argument {k} is {a!r}, held by another "
                            f"transformation (at {user_site(3)})")
        elif k in nums:
            x = np.asarray(a)
            axes.append(0)
            values.append(np.broadcast_to(x, (size, *x.shape)))
        else:
            axes.append(None)
            values.append(a)
    per_example = []

    def total(*batch):
        ys = vmap(lambda *xs: f(*xs, **kwargs), in_axes=tuple(axes))(*batch)
        if tuple(ys.shape) != (size,):
            raise GradError(f"grad: the function must return a single element per example, got shape "
                            f"{tuple(ys.shape)[1:]} (at {user_site(4)})")
        per_example.append(ys)
        return tape.sum(ys)

    _, grads = value_and_grad(total, nums, disconnected)(*values)
    value = per_example[0]
    value = Mapped(np.array(value._data) if isinstance(value, Tensor) else np.asarray(value), top)
    grads = tuple(Mapped(g, top) for g in (grads if isinstance(grads, tuple) else (grads,)))
    return value, grads[0] if single else grads
