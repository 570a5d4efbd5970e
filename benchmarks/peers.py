"""Optional peers, side by side in the same run: PyTorch, JAX, HIPS autograd, PyTensor.

A workload's cost is written once against a namespace (``fn(ns, *args)``), so
a peer is a namespace mapping the few op names the workloads use onto its
library, plus a :class:`~benchmarks.backends.Backend` that differentiates with
the library's own machinery. Adding a peer is one small class. A peer that is
not installed is skipped with a one-line note.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import time

import numpy as np

from common.graph import count_nodes
from symnum.control import leaves, loop, rebuild, scan_steps, stack_steps

from . import peer_models
from .backends import BACKENDS, Backend, Runner, Unsupported


class PythonLoops:
    """``scan``, ``while_loop`` and ``cond`` as Python loops and branches (JAX's signatures), for the
    define-by-run peers (PyTorch, autograd): their tape records the steps that ran, as symnum's does.
    A subclass gives ``_stack(list)``, its library's stack along a new axis 0."""

    def scan(self, fn, init, xs, length=None, reverse=False):
        carry, ys = scan_steps(fn, init, xs, length, reverse)
        if not ys:
            raise Unsupported("a scan of length 0 (the Python loop cannot know its outputs' shapes)")
        return carry, stack_steps(ys, self._stack)

    def while_loop(self, cond_fn, body_fn, init, max_iter=None):
        return loop(cond_fn, body_fn, init, max_iter)

    def cond(self, pred, true_fn, false_fn, *operands):
        return (true_fn if bool(pred) else false_fn)(*operands)


class LaxLoops:
    """JAX's own ``lax.scan``, ``lax.while_loop`` (``max_iter`` as a counter in the carry) and ``lax.cond``."""

    def __init__(self, lax):
        self.lax = lax

    def scan(self, fn, init, xs, length=None, reverse=False):
        return self.lax.scan(fn, init, xs, length=length, reverse=reverse)

    def while_loop(self, cond_fn, body_fn, init, max_iter=None):
        if max_iter is None:
            return self.lax.while_loop(cond_fn, body_fn, init)
        bounded = self.lax.while_loop(lambda s: (s[0] < max_iter) & cond_fn(s[1]),
                                      lambda s: (s[0] + 1, body_fn(s[1])), (0, init))
        return bounded[1]

    def cond(self, pred, true_fn, false_fn, *operands):
        return self.lax.cond(pred, true_fn, false_fn, *operands)


JAX_WHILE_REVERSE = "Reverse-mode differentiation does not work for lax.while_loop"


class PyTensorLoops:
    """PyTensor's own loops: ``scan`` for a scan, a ``scan`` stopped by ``until`` (bounded by ``max_iter``)
    for a while loop, lazy ``ifelse`` for a branch; JAX's signatures mapped onto Theano's."""

    def scan(self, fn, init, xs, length=None, reverse=False):
        import pytensor
        import pytensor.tensor as pt

        columns = leaves(xs)
        carry0 = [pt.as_tensor_variable(c) for c in leaves(init)]
        nc, nx = len(carry0), len(columns)
        _, y_like = fn(init, None if xs is None else rebuild(xs, [c[0] for c in columns]))  # the y structure
        ny = len(leaves(y_like))

        def step(*args):
            carry, y = fn(rebuild(init, args[nx:nx + nc]), None if xs is None else rebuild(xs, args[:nx]))
            return [*leaves(carry), *leaves(y)]

        outs = pytensor.scan(step, sequences=columns, outputs_info=[*carry0, *[None] * ny], n_steps=length,
                             go_backwards=reverse, return_updates=False)
        outs = outs if isinstance(outs, list) else [outs]
        ys = [o[::-1] if reverse else o for o in outs[nc:]]
        return rebuild(init, [o[-1] for o in outs[:nc]]), rebuild(y_like, ys)

    def while_loop(self, cond_fn, body_fn, init, max_iter=None):
        import pytensor
        import pytensor.tensor as pt
        from pytensor.ifelse import ifelse
        from pytensor.scan.utils import until

        if max_iter is None:
            raise Unsupported("pytensor: a while loop is a scan with until, which needs a bound (max_iter)")
        carry0 = [pt.as_tensor_variable(c) for c in leaves(init)]

        def step(*carry):
            new = leaves(body_fn(rebuild(init, carry)))
            return new, until(pt.invert(cond_fn(rebuild(init, new))))

        outs = pytensor.scan(step, outputs_info=carry0, n_steps=max_iter, return_updates=False)
        outs = outs if isinstance(outs, list) else [outs]
        runs = cond_fn(init)      # a do-while: the scan runs only when the first test holds
        return rebuild(init, [ifelse(runs, o[-1], c) for o, c in zip(outs, carry0)])

    def cond(self, pred, true_fn, false_fn, *operands):
        from pytensor.ifelse import ifelse

        yes, no = true_fn(*operands), false_fn(*operands)
        return rebuild(yes, [ifelse(pred, a, b) for a, b in zip(leaves(yes), leaves(no), strict=True)])


class NumpyLike(PythonLoops):
    """The workloads' ops on a numpy-like module (``jax.numpy``, ``autograd.numpy``); loops and branches
    are Python's unless ``loops`` (JAX's :class:`LaxLoops`) gives them."""

    def __init__(self, xp, logsumexp, stop_gradient=None, loops=None):
        self.xp = xp
        self.logsumexp = logsumexp
        self._stop = stop_gradient
        if loops is not None:
            self.scan, self.while_loop, self.cond = loops.scan, loops.while_loop, loops.cond

    def _stack(self, xs):
        return self.xp.stack(xs)

    def __getattr__(self, name):
        if name in ("linalg", "nn"):  # twograd's spellings over the library's routines
            self.linalg, self.nn = peer_models.numpy_like_groups(self.xp)
            return getattr(self, name)
        return getattr(self.xp, name)

    def relu(self, x):
        return self.xp.maximum(x, 0.0)

    def sigmoid(self, x):
        return 1.0 / (1.0 + self.xp.exp(-x))

    def stop_gradient(self, x):
        if self._stop is None:
            raise Unsupported(f"{self.xp.__name__} has no stop_gradient")
        return self._stop(x)

    def sum(self, x, axis=None, keepdims=False):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def softmax_cross_entropy(self, z, t, axis=-1):
        return -self.xp.sum(t * (z - self.logsumexp(z, axis=axis, keepdims=True)), axis=axis)


class TorchOps(PythonLoops):
    """The workloads' ops in PyTorch (``dim``/``keepdim`` spelling); loops are Python's."""

    def __init__(self, torch):
        self.torch = torch

    def _stack(self, xs):
        return self.torch.stack(xs)

    def __getattr__(self, name):
        if name in ("linalg", "nn"):  # twograd's spellings over torch.linalg and torch.nn.functional
            self.linalg, self.nn = peer_models.torch_groups(self.torch)
            return getattr(self, name)
        return getattr(self.torch, name)

    def sum(self, x, axis=None, keepdims=False):
        return x.sum() if axis is None else x.sum(dim=axis, keepdim=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return x.mean() if axis is None else x.mean(dim=axis, keepdim=keepdims)

    def max(self, x, axis=None, keepdims=False):
        return x.amax() if axis is None else x.amax(dim=axis, keepdim=keepdims)

    def logsumexp(self, x, axis=None, keepdims=False):
        dims = tuple(range(x.ndim)) if axis is None else axis
        return self.torch.logsumexp(x, dim=dims, keepdim=keepdims)

    def expand_dims(self, x, axis):
        return x.unsqueeze(axis)

    def stop_gradient(self, x):
        return x.detach()

    def transpose(self, x, axes=None):
        return x.permute(*(axes if axes is not None else reversed(range(x.ndim))))

    def concatenate(self, xs, axis=0):
        return self.torch.cat(list(xs), dim=axis)

    def stack(self, xs, axis=0):
        return self.torch.stack(list(xs), dim=axis)

    def full(self, shape, value, dtype="float64"):
        if not isinstance(dtype, self.torch.dtype):  # a numpy dtype or its name
            dtype = getattr(self.torch, np.dtype(dtype).name)
        return self.torch.full(tuple(shape), value, dtype=dtype)

    def softmax_cross_entropy(self, z, t, axis=-1):
        return -(t * self.torch.log_softmax(z, dim=axis)).sum(dim=axis)


class Peer(Backend):
    """A peer library; ``module`` is what must be importable.

    ``max_nodes`` bounds the graphs it is known to handle, ``too_big`` says why: a larger one is
    skipped with that reason rather than left to run into its budget (or Python's stack).
    """

    role = "peer"
    module = ""
    max_nodes: int | None = None
    too_big = ""

    def missing(self):
        if importlib.util.find_spec(self.module) is None:
            return f"{self.name}: not installed (pip install {self.module})"
        return None

    def version(self):
        """The installed distribution's version, read from its metadata without importing it."""
        try:
            return importlib.metadata.version(self.module)
        except importlib.metadata.PackageNotFoundError:
            return getattr(importlib.import_module(self.module), "__version__", "")

    def check_size(self, problem) -> None:
        """Unsupported when the problem's graph is larger than this peer is known to handle."""
        if self.max_nodes is None:
            return
        n = count_nodes(problem.graph()[0])
        if n > self.max_nodes:
            raise Unsupported(f"{self.name}: {n} nodes > {self.max_nodes}: {self.too_big}")


def _timed_first_call(call, arrays):
    """A jit's first call is its compile: time it apart from the steady state."""
    t0 = time.perf_counter()
    call(arrays)
    return {"compile": time.perf_counter() - t0}


class Torch(Peer):
    """PyTorch eager autograd (CPU, one thread)."""

    name = module = "torch"

    kinds = (*Peer.kinds, "jacobian")

    def prepare(self, problem, kind, order=1):
        import torch

        torch.set_num_threads(1)
        ns, fn, idx = TorchOps(torch), problem.fn, problem.wrt_index
        if kind == "jacobian":
            return _torch_jacobian(torch, ns, problem)

        def leaves(arrays):
            ts = [torch.from_numpy(np.asarray(a)) for a in arrays]
            for i in idx:
                ts[i].requires_grad_(True)
            return ts

        def grad(arrays):
            ts = leaves(arrays)
            if kind == "hessian":
                i = idx[0]
                f = lambda x: fn(ns, *ts[:i], x, *ts[i + 1:])
                return [torch.autograd.functional.hessian(f, ts[i].detach()).numpy()]
            out = fn(ns, *ts)
            for _ in range(order if kind == "order" else 1):
                wrt = [ts[i] for i in idx]
                gs = torch.autograd.grad(out, wrt, create_graph=kind == "order")
                out = gs[0]
            return [out.detach().numpy()] if kind == "order" else [g.numpy() for g in gs]

        forward = lambda arrays: float(fn(ns, *[torch.from_numpy(np.asarray(a)) for a in arrays]))
        return Runner(grad, forward)


def _jacobian_mode(peer: str, problem) -> str:
    """The mode to build a Jacobian in: the peers leave forward or reverse to the user, so ``auto`` is
    twograd's alone (its cells skip the peers)."""
    if problem.mode not in ("forward", "reverse"):
        raise Unsupported(f"{peer}: forward or reverse mode is the user's choice (jacfwd or jacrev); "
                          f"no {problem.mode} mode")
    return problem.mode


def _at(fn, ns, i: int):
    """``(x, args) -> fn(ns, *args)`` with argument ``i`` replaced by ``x``: what jacfwd/jacrev differentiate."""
    return lambda x, args: fn(ns, *args[:i], x, *args[i + 1:])


def _torch_jacobian(torch, ns, problem) -> Runner:
    """``torch.func.jacfwd`` (a batch of dual-number tangents) or ``jacrev`` (vmap over vjp) of the
    workload's function of its one ``wrt`` argument."""
    i = problem.wrt_index[0]
    transform = {"forward": torch.func.jacfwd, "reverse": torch.func.jacrev}[_jacobian_mode("torch", problem)]
    jac, f = transform(_at(problem.fn, ns, i)), _at(problem.fn, ns, i)
    tensors = lambda arrays: [torch.from_numpy(np.asarray(a)) for a in arrays]
    return Runner(lambda arrays: (lambda ts: [jac(ts[i], ts).numpy()])(tensors(arrays)),
                  lambda arrays: (lambda ts: f(ts[i], ts).numpy())(tensors(arrays)))


class Jax(Peer):
    """JAX ``jit(grad)``, float64; the first call (tracing + XLA compile) is the one-off."""

    name = module = "jax"
    max_nodes = 2000
    too_big = ("XLA's compile time grows faster than the unrolled graph (tanh chains 500/1000/2000 deep: "
               "5/16/89 s; a 4612-node LSTM: over 5 min)")

    kinds = (*Peer.kinds, "jacobian")

    def prepare(self, problem, kind, order=1):
        self.check_size(problem)
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import logsumexp

        ns = NumpyLike(jnp, logsumexp, jax.lax.stop_gradient, LaxLoops(jax.lax))
        fn, idx = problem.fn, problem.wrt_index
        f = lambda *args: fn(ns, *args)
        if kind == "jacobian":
            transform = {"forward": jax.jacfwd, "reverse": jax.jacrev}[_jacobian_mode("jax", problem)]
            d = transform(f, argnums=idx[0])
        elif kind == "hessian":
            d = jax.hessian(f, argnums=idx[0])
        elif kind == "order":
            d = f
            for _ in range(order):
                d = jax.grad(d, argnums=idx[0])
        else:
            d = jax.grad(f, argnums=tuple(idx))
        d = jax.jit(d)
        jf = jax.jit(f)

        def grad(arrays):
            out = d(*arrays)
            out = out if isinstance(out, tuple) else (out,)
            return [np.asarray(o.block_until_ready()) for o in out]

        value = (lambda out: np.asarray(out.block_until_ready())) if kind == "jacobian" else float  # a vector
        runner = Runner(grad, lambda arrays: value(jf(*arrays)))
        try:
            runner.one_off = _timed_first_call(grad, problem.arrays)
        except ValueError as e:
            if JAX_WHILE_REVERSE not in str(e):
                raise
            raise Unsupported("jax: reverse mode through lax.while_loop is not supported (JAX refuses it)") from None
        runner.one_off["total"] = runner.one_off["compile"]
        return runner


class Autograd(Peer):
    """HIPS autograd: a tape of numpy calls, re-recorded on every call."""

    name = module = "autograd"
    kinds = (*Peer.kinds, "jacobian")

    def prepare(self, problem, kind, order=1):
        import autograd
        import autograd.numpy as anp

        def logsumexp(x, axis=None, keepdims=False):
            # autograd's own lives in autograd.scipy, which needs scipy; the max shift is exact either way
            m = anp.max(x, axis=axis, keepdims=True)
            s = m + anp.log(anp.sum(anp.exp(x - m), axis=axis, keepdims=True))
            return s if keepdims else anp.squeeze(s, axis=axis)

        ns, fn, idx = NumpyLike(anp, logsumexp), problem.fn, problem.wrt_index
        if kind == "jacobian":
            return _autograd_jacobian(autograd, ns, problem)

        def grad(arrays):
            def at(values):
                full = list(arrays)
                for i, v in zip(idx, values):
                    full[i] = v
                return fn(ns, *full)
            if kind == "hessian":
                return [autograd.hessian(lambda x: at((x,)))(arrays[idx[0]])]
            if kind == "order":
                d = lambda x: at((x,))
                for _ in range(order):
                    d = autograd.grad(d)
                return [np.asarray(d(arrays[idx[0]]))]
            return list(autograd.grad(lambda values: at(values))(tuple(arrays[i] for i in idx)))

        return Runner(grad, lambda arrays: float(fn(ns, *arrays)))


def _autograd_jacobian(autograd, ns, problem) -> Runner:
    """autograd has no batched transforms: forward mode is one ``make_jvp`` pass per column (its JVP
    rules, true forward mode), reverse mode ``autograd.jacobian``, one backward pass per row."""
    i, mode = problem.wrt_index[0], _jacobian_mode("autograd", problem)
    at = _at(problem.fn, ns, i)

    def jacobian(arrays):
        x, args = arrays[i], list(arrays)
        if mode == "reverse":
            return [autograd.jacobian(lambda v: at(v, args))(x)]
        push = autograd.make_jvp(lambda v: at(v, args))(x)
        cols = [push(e.reshape(x.shape))[1] for e in np.eye(x.size, dtype=x.dtype)]
        y = np.asarray(cols[0]) if cols else np.asarray(at(x, args))
        return [np.stack(cols, axis=-1).reshape(y.shape + x.shape)]

    return Runner(jacobian, lambda arrays: np.asarray(at(arrays[i], list(arrays))))


class PyTensor(Peer):
    """PyTensor (Theano's heir): symbolic grad, then a compiled function."""

    name = module = "pytensor"
    kinds = (*Peer.kinds, "jacobian")
    max_nodes = 2000
    too_big = "pytensor recurses once per node, which would pass Python's stack"

    def prepare(self, problem, kind, order=1):
        import pytensor
        import pytensor.tensor as pt
        from pytensor.tensor.special import log_softmax

        class Ops(PyTensorLoops):
            def __getattr__(self, name):
                return getattr(pt, name)

            def relu(self, x):
                return pt.maximum(x, 0.0)

            def sum(self, x, axis=None, keepdims=False):
                return pt.sum(x, axis=axis, keepdims=keepdims)

            def mean(self, x, axis=None, keepdims=False):
                return pt.mean(x, axis=axis, keepdims=keepdims)

            def softmax_cross_entropy(self, z, t, axis=-1):
                return -pt.sum(t * log_softmax(z, axis=axis), axis=axis)

            @property
            def nn(self):
                raise Unsupported("pytensor: the workloads' convolution and pooling are not spelled for pytensor")

        self.check_size(problem)
        if kind == "jacobian" and _jacobian_mode("pytensor", problem) == "forward":
            raise Unsupported("pytensor: no forward-mode Jacobian (its R-op pushes one tangent per graph)")
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 50 * self.max_nodes))  # PyTensor's documented workaround
        try:
            t0 = time.perf_counter()
            variables = [pt.tensor(name, dtype=str(a.dtype), shape=a.shape) for name, a in problem.args.items()]
            try:
                cost = problem.fn(Ops(), *variables)
            except TypeError as e:  # the model needs a static dim as a Python int; pytensor's are symbolic
                raise Unsupported(f"pytensor: the model needs static shapes as ints ({e})") from None
            wrt = [variables[i] for i in problem.wrt_index]
            if kind == "hessian":
                outputs = [pytensor.gradient.hessian(cost, wrt[0])]
            elif kind == "jacobian":  # reverse mode, the rows vectorised into one graph
                outputs = [pytensor.gradient.jacobian(cost, wrt[0], vectorize=True)]
            elif kind == "order":
                d = cost
                for _ in range(order):
                    d = pytensor.grad(d, wrt[0])
                outputs = [d]
            else:
                outputs = pytensor.grad(cost, wrt)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            f = pytensor.function(variables, outputs, on_unused_input="ignore")
            fwd = pytensor.function(variables, cost, on_unused_input="ignore")
        finally:
            sys.setrecursionlimit(limit)
        one_off = {"build": build, "compile": time.perf_counter() - t0}
        one_off["total"] = build + one_off["compile"]
        value = np.asarray if kind == "jacobian" else float  # a Jacobian's function is a vector
        return Runner(lambda arrays: [np.asarray(o) for o in f(*arrays)], lambda arrays: value(fwd(*arrays)),
                      one_off=one_off)


PEERS: dict[str, Peer] = {p.name: p for p in (Torch(), Jax(), Autograd(), PyTensor())}
BACKENDS.update(PEERS)


def installed() -> list[str]:
    """Names of the peers importable here."""
    return [name for name, p in PEERS.items() if p.missing() is None]

