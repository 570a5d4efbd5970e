"""Check the tape's gradients against central finite differences in float64.

``gradcheck`` compares, for every differentiable input, the full Jacobian the
backward sweep gives (one sweep per output element) with the one central
differences give (two evaluations per input element), and on a mismatch says
which input, which elements, and both numbers. ``gradgradcheck`` does the same
for the gradient itself, so second derivatives (the ``create_graph`` path)
are checked too.

By default the differences are taken of ``f`` itself, as PyTorch's checks do.
Given ``reference`` (plain numpy code computing what ``f`` computes), they
are taken of it instead: then no derivative rule takes part in the expected
numbers, and ``gradgradcheck`` compares second derivatives with second
differences of the reference, so a first-derivative rule that is right only
at the checked point (where its own finite differences agree with it) still
fails.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from common.errors import DTypeError, GradError
from common.site import user_site

from . import engine
from .mode import enable_grad, no_grad
from .tape import tape
from .tensor import Tensor, wrap


def _prepare(inputs) -> list:
    """Inputs as float64 tensors; arrays of floats require grad, tensors keep their flag."""
    if isinstance(inputs, (Tensor, np.ndarray)) or np.isscalar(inputs):
        inputs = [inputs]
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            data, req = np.asarray(x._data), x.requires_grad
        else:
            data = np.asarray(x)
            req = data.dtype.kind == "f"
        if data.dtype.kind == "f":
            data = data.astype(np.float64)
        out.append(Tensor(data, req))
    if not any(t.requires_grad for t in out):
        raise DTypeError(f"gradcheck: no input to check: none is a floating array or a tensor that requires "
                         f"grad (dtypes {', '.join(str(t.dtype) for t in out) or 'none'}); pass floats, e.g. "
                         f"np.array([1.0, 2.0]) rather than [1, 2] (at {user_site()})")
    return out


def _outputs(y) -> list[Tensor]:
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    return [t if isinstance(t, Tensor) else wrap(np.asarray(t)) for t in ys]


def _flat_value(f, xs) -> np.ndarray:
    with no_grad():
        ys = _outputs(f(*xs))
    return np.concatenate([np.asarray(t._data, dtype=np.float64).ravel() for t in ys]) if ys else np.zeros(0)


SECOND_EPS = 1e-4
"""The step of each difference in a second difference of a reference: its rounding error grows as
ulp * |f| / step**2, so the step is larger than a first difference's."""


def _of_arrays(reference: Callable) -> Callable:
    """A numpy function of arrays as a function of tensors with one flat float64 output."""
    def f(*xs):
        ys = reference(*[np.asarray(x._data) for x in xs])
        ys = list(ys) if isinstance(ys, (list, tuple)) else [ys]
        return wrap(np.concatenate([np.asarray(y, dtype=np.float64).ravel() for y in ys]))
    return f


def _reference_vjp(reference: Callable, n_in: int, wrt: list, eps: float) -> Callable:
    """``(inputs, u) -> J(inputs)^T u`` (flattened, over the inputs ``wrt``), J by central differences of
    ``reference``: what ``gradgradcheck`` differentiates, computed without a derivative rule."""
    flat = _of_arrays(reference)

    def vjp(*arrays):
        xs = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in arrays[:n_in]]
        u = np.concatenate([np.ravel(a) for a in arrays[n_in:]]) if len(arrays) > n_in else np.zeros(0)
        tensors = [wrap(x) for x in xs]
        return np.concatenate([u @ numeric_jacobian(flat, tensors, k, eps) for k in wrt]) if wrt else np.zeros(0)
    return vjp


def numeric_jacobian(f: Callable, xs: list, k: int, eps: float) -> np.ndarray:
    """d(flattened outputs)/d(xs[k]) by central differences: shape (outputs, inputs)."""
    base = xs[k]._data
    cols = []
    for j in range(base.size):
        plus, minus = base.copy(), base.copy()
        plus.flat[j] += eps
        minus.flat[j] -= eps
        args = list(xs)
        args[k] = wrap(plus)
        hi = _flat_value(f, args)
        args[k] = wrap(minus)
        lo = _flat_value(f, args)
        cols.append((hi - lo) / (2 * eps))
    n_out = _flat_value(f, xs).size
    return np.stack(cols, axis=1) if cols else np.zeros((n_out, 0))


def analytic_jacobians(f: Callable, xs: list) -> list[np.ndarray]:
    """d(flattened outputs)/d(x) for each differentiable x, one reverse sweep per output element."""
    wrt = [x for x in xs if x.requires_grad]
    with enable_grad():
        ys = _outputs(f(*xs))
    rows: list[list] = [[] for _ in wrt]
    for y in ys:
        for e in range(y.size):
            if y.requires_grad and y.dtype.kind == "f":
                seed = np.zeros(y.shape, y.dtype)
                seed.flat[e] = 1
                gs = engine.grad([y], wrt, [seed], retain_graph=True, allow_unused=True)
            else:
                gs = [None] * len(wrt)
            for r, g, x in zip(rows, gs, wrt):
                r.append(np.zeros(x.size) if g is None else np.asarray(g._data, dtype=np.float64).ravel())
    return [np.stack(r) if r else np.zeros((0, x.size)) for r, x in zip(rows, wrt)]


def gradcheck(f: Callable, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-6,
              raise_exception: bool = True, reference: Callable | None = None) -> bool:
    """Whether ``f``'s backward matches central finite differences at ``inputs``.

    ``f`` takes tensors and returns a tensor (or a tuple of them). Inputs are
    cast to float64; float arrays and tensors with ``requires_grad`` are
    checked. On a mismatch raises a GradError that names the input, the worst
    elements and both values (or returns False if not ``raise_exception``).
    ``reference``, a numpy function of the input arrays giving ``f``'s value,
    is differenced instead of ``f`` when given.
    """
    xs = _prepare(inputs)
    analytic = analytic_jacobians(f, xs)
    wrt = [k for k, x in enumerate(xs) if x.requires_grad]
    numeric_f = f if reference is None else _of_arrays(reference)
    for k, a in zip(wrt, analytic):
        n = numeric_jacobian(numeric_f, xs, k, eps)
        bad = np.abs(a - n) > atol + rtol * np.abs(n)
        if bad.any() or a.shape != n.shape:
            if raise_exception:
                raise GradError(_report(k, xs[k], a, n, bad))
            return False
    return True


def _report(k: int, x: Tensor, a: np.ndarray, n: np.ndarray, bad: np.ndarray) -> str:
    lines = [f"gradcheck: Jacobian mismatch for input {k} (shape {x.shape}), "
             f"{int(bad.sum())} of {bad.size} entries; max abs diff {np.max(np.abs(a - n)):.3g}"]
    for o, j in list(zip(*np.nonzero(bad)))[:5]:
        idx = np.unravel_index(j, x.shape) if x.shape else ()
        lines.append(f"  output element {o}, input element {tuple(int(i) for i in idx)}: "
                     f"analytic {a[o, j]!r}, numeric {n[o, j]!r}")
    return "\n".join(lines)


def gradgradcheck(f: Callable, inputs, grad_outputs: Sequence | None = None, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-6, raise_exception: bool = True,
                  seed: int = 0, reference: Callable | None = None) -> bool:
    """Check second derivatives: gradcheck of ``(inputs, u) -> J(inputs)^T u``.

    ``u`` (random unless ``grad_outputs`` is given) is checked as an input too,
    so this covers the VJP's dependence on the cotangent and on the inputs,
    both computed through ``create_graph``. With ``reference`` the expected
    derivatives are second differences of it (each step :data:`SECOND_EPS`),
    not differences of the checked first derivative.
    """
    xs = _prepare(inputs)
    wrt = [k for k, x in enumerate(xs) if x.requires_grad]
    with enable_grad():
        ys = _outputs(f(*xs))
    if grad_outputs is None:
        rng = np.random.default_rng(seed)
        us = [rng.standard_normal(y.shape) for y in ys]
    else:
        us = [np.asarray(u, dtype=np.float64) for u in grad_outputs]
    n_in = len(xs)

    def first_derivative(*args):
        inner = list(args[:n_in])
        for k in wrt:
            if not inner[k].requires_grad:
                inner[k] = wrap(inner[k]._data, True)
        with enable_grad():
            outs = _outputs(f(*inner))
            live = [(y, u) for y, u in zip(outs, args[n_in:]) if y.requires_grad]
            if live:
                gs = engine.grad([y for y, _ in live], [inner[k] for k in wrt], [u for _, u in live],
                                   create_graph=True, allow_unused=True)
            else:
                gs = [None] * len(wrt)
            flat = [tape.reshape(g, -1) if g is not None else wrap(np.zeros(inner[k].size))
                    for g, k in zip(gs, wrt)]
            return tape.concatenate(flat) if flat else wrap(np.zeros(0))

    if reference is not None:
        reference, eps = _reference_vjp(reference, n_in, wrt, SECOND_EPS), SECOND_EPS
    return gradcheck(first_derivative, [*xs, *[wrap(u, True) for u in us]], eps, atol, rtol,
                     raise_exception, reference)
