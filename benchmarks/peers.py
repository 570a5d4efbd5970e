"""Optional peers, side by side in the same run: PyTorch (eager and torch.compile), JAX, HIPS autograd,
PyTensor (its numba and C backends).

A workload's cost is written once against a namespace (``fn(ns, *args)``), so
a peer is a namespace mapping the few op names the workloads use onto its
library, plus a :class:`~benchmarks.backends.Backend` that differentiates with
the library's own machinery. Adding a peer is one small class. A peer that is
not installed (or lacks what it needs, such as a C++ compiler) is skipped with
a one-line note.

Each peer is timed at its best, as its own users run it and under twograd's
one-thread rule: one thread (XLA's too), the inputs converted to the library's
values once, outside the timed calls, the outputs left in its types until the
cross-checks, each compile in the one-off. Each peer says so in :meth:`Peer.settings`,
which the report and ``results.json`` carry.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable

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

    def __init__(self, xp, logsumexp, stop_gradient=None, loops=None, erf=None):
        self.xp = xp
        self.logsumexp = logsumexp
        self._stop = stop_gradient
        self._erf = erf
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

    def erf(self, x):
        if self._erf is None:
            raise Unsupported(f"{self.xp.__name__} has no erf")
        return self._erf(x)

    def softmax(self, x, axis=-1):
        return self.xp.exp(x - self.logsumexp(x, axis=axis, keepdims=True))

    def sum(self, x, axis=None, keepdims=False):
        return self.xp.sum(x, axis=axis, keepdims=keepdims)

    def mean(self, x, axis=None, keepdims=False):
        return self.xp.mean(x, axis=axis, keepdims=keepdims)

    def softmax_cross_entropy(self, z, t, axis=-1):
        if _integer(t):   # class indices: as one-hot rows (the libraries' own cross-entropies do the same)
            t = one_hot(self.xp, t, z.shape[axis], axis)
        return -self.xp.sum(t * (z - self.logsumexp(z, axis=axis, keepdims=True)), axis=axis)


def _integer(t) -> bool:
    """Whether targets are integer class indices (rather than probabilities)."""
    return np.dtype(str(t.dtype).replace("torch.", "")).kind in "iu"


def one_hot(xp, labels, classes: int, axis: int = -1):
    """Float one-hot rows of integer ``labels``, the class axis at ``axis``, in the numpy-like ``xp``."""
    hot = xp.asarray(labels[..., None] == xp.arange(classes), dtype="float64")
    return hot if axis in (-1, hot.ndim - 1) else xp.moveaxis(hot, -1, axis)


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

    def softmax(self, x, axis=-1):
        return self.torch.softmax(x, dim=axis)

    def softmax_cross_entropy(self, z, t, axis=-1):
        if _integer(t):   # class indices: PyTorch's own cross_entropy (classes on dim 1)
            return self.torch.nn.functional.cross_entropy(z.movedim(axis, 1), t, reduction="none")
        return -(t * self.torch.log_softmax(z, dim=axis)).sum(dim=axis)


class Peer(Backend):
    """A peer library; ``module`` is what must be importable.

    ``max_nodes`` bounds the graphs it is known to handle, ``too_big`` says why: a larger one is
    skipped with that reason rather than left to run into its budget (or Python's stack).

    A peer is timed as its own users run it: :meth:`inputs` turns the problem's numpy arrays into the
    library's values (tensors, device arrays) once, outside the timed region (see
    :func:`peer_runner`), and :meth:`settings` says what the timed region holds.
    """

    role = "peer"
    module = ""
    max_nodes: int | None = None
    too_big = ""
    mode = ""               # the library's mode this column runs (one peer per mode)
    timed_region = ""       # what one timed call does
    outside = ""            # what happens once, outside the timed calls
    one_off_holds = ""      # what the one-off cost counts

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

    def setup(self) -> None:
        """What must be set before the library is first imported (its worker calls this first)."""

    def inputs(self, arrays: list, wrt: tuple = ()) -> list:
        """The problem's numpy arrays as the library's own values (numpy itself unless overridden);
        ``wrt``: the indices of the arguments that will be differentiated (PyTorch marks them)."""
        return list(arrays)

    def runtime(self) -> dict:
        """The library's own runtime settings (threads, linker), as this process has them."""
        return {}

    def settings(self) -> dict:
        """How this peer is run, for the report and ``results.json``: version, mode, threads, what the
        timed region holds and what stays outside it, what the one-off counts, the graph-size limit."""
        from .timing import thread_limits

        out = {"version": self.version(), "mode": self.mode, "runtime": self.runtime(),
               "blas": thread_limits().get("threadpoolctl"), "timed": self.timed_region, "outside": self.outside,
               "one_off": self.one_off_holds}
        if self.max_nodes is not None:
            out["max_nodes"] = f"graphs over {self.max_nodes} nodes skipped: {self.too_big}"
        return out

    def check_size(self, problem) -> None:
        """Unsupported when the problem's graph is larger than this peer is known to handle."""
        if self.max_nodes is None:
            return
        n = count_nodes(problem.graph()[0])
        if n > self.max_nodes:
            raise Unsupported(f"{self.name}: {n} nodes > {self.max_nodes}: {self.too_big}")


def _identity(out):
    return out


def _outputs(out) -> list:
    """A derivative's outputs (one value or a tuple/list of them) as a list of numpy arrays."""
    out = out if isinstance(out, (tuple, list)) else (out,)
    return [np.asarray(o) for o in out]


def peer_runner(peer: Peer, grad: Callable, forward: Callable | None, wrt: tuple = (), sync: Callable = _identity,
                value: Callable = float, one_off: dict | None = None) -> Runner:
    """A peer's runner from its calls on the library's own values (``grad(values)``, ``forward(values)``).

    ``runner.grad(arrays)`` converts (``peer.inputs(arrays, wrt)``), calls and brings the outputs back to numpy: what
    the cross-checks and training need. The timed functions (:meth:`Runner.timed`) convert once, when
    made, and then only call and ``sync`` (JAX's ``block_until_ready``: its calls return before the work
    is done), leaving the outputs in the library's types, as its users hold them.
    """
    def plain(call, back, marked):
        return lambda arrays: back(sync(call(peer.inputs(arrays, marked))))

    def stage(call, marked):
        def made(arrays):
            values = peer.inputs(arrays, marked)
            return lambda: sync(call(values))
        return made

    staged = {"grad": stage(grad, wrt)}
    if forward is not None:
        staged["forward"] = stage(forward, ())
    return Runner(plain(grad, _outputs, wrt), plain(forward, value, ()) if forward is not None else None,
                  one_off=one_off, staged=staged)


def _timed_first_call(runner: Runner, arrays: list, one_off: dict | None = None) -> dict:
    """A compiled peer's first call is (the rest of) its compile: time it into the one-off."""
    one_off = dict(one_off or {})
    t0 = time.perf_counter()
    runner.grad(arrays)
    one_off["compile"] = one_off.get("compile", 0.0) + time.perf_counter() - t0
    one_off["total"] = one_off.get("build", 0.0) + one_off["compile"]
    return one_off


class Torch(Peer):
    """PyTorch eager autograd (CPU, one thread)."""

    name = module = "torch"
    mode = "eager"
    kinds = (*Peer.kinds, "jacobian")
    timed_region = ("the workload's function on tensors made once, then torch.autograd.grad (Hessian: "
                    "torch.autograd.functional.hessian, vectorize=True; Jacobian: torch.func.jacfwd/jacrev); "
                    "outputs left as tensors")
    outside = ("torch.from_numpy of the inputs (requires_grad set) before the timed calls; outputs to numpy "
               "after")
    one_off_holds = "nothing to prepare (eager)"

    def setup(self):
        """One thread within ops and one between them (the latter can only be set before any parallel work)."""
        import torch

        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)

    def runtime(self):
        import torch

        return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}

    def inputs(self, arrays, wrt=()):
        import torch

        ts = [torch.from_numpy(np.asarray(a)) for a in arrays]
        for i in wrt:
            ts[i].requires_grad_(True)
        return ts

    def compiled(self, torch, f: Callable) -> Callable:
        """The function this column runs: eager, as written."""
        return f

    def prepare(self, problem, kind, order=1):
        import torch

        torch.set_num_threads(1)
        ns, fn, idx = TorchOps(torch), problem.fn, problem.wrt_index
        if kind == "jacobian":
            return _torch_jacobian(self, torch, ns, problem)
        f = self.compiled(torch, lambda *ts: fn(ns, *ts))
        if kind == "hessian":
            i = idx[0]
            grad = lambda ts: torch.autograd.functional.hessian(lambda x: f(*ts[:i], x, *ts[i + 1:]), ts[i],
                                                                vectorize=True)
        elif kind == "order":
            def grad(ts):
                out = f(*ts)
                for _ in range(order):
                    (out,) = torch.autograd.grad(out, [ts[idx[0]]], create_graph=True)
                return out.detach()
        else:
            grad = lambda ts: torch.autograd.grad(f(*ts), [ts[i] for i in idx])

        def forward(ts):
            with torch.no_grad():
                return f(*ts)

        return peer_runner(self, grad, forward, idx, value=lambda out: float(out))


def cxx_compiler() -> str | None:
    """The C++ compiler torch.compile's CPU backend (inductor) would build with: ``$CXX``, else the first
    of g++, clang++, c++ on the PATH; None when there is none (then torch.compile cannot run here)."""
    cxx = os.environ.get("CXX")
    if cxx:
        return shutil.which(cxx)
    return next((path for path in map(shutil.which, ("g++", "clang++", "c++")) if path), None)


class TorchCompile(Torch):
    """PyTorch with torch.compile (inductor, CPU, one thread): the compile in the one-off."""

    name = "torch-compile"
    mode = "torch.compile (inductor, default mode)"
    kinds = ("grad", "hessian", "train")
    max_nodes = 2000
    too_big = ("torch.compile traces the unrolled Python loop, and inductor's compile grows with it "
               "(a 1000-deep chain takes tens of seconds)")
    timed_region = ("the compiled function (its backward compiled by AOTAutograd) on tensors made once, then "
                    "torch.autograd.grad (Hessian: torch.func.hessian compiled whole); outputs left as tensors")
    one_off_holds = "tracing and inductor's C++ compile (the first call)"

    def missing(self):
        why = super().missing()
        if why is None and cxx_compiler() is None:
            return (f"{self.name}: torch.compile cannot run here: its CPU backend (inductor) needs a C++ "
                    "compiler (none of $CXX, g++, clang++, c++ found)")
        return why

    def compiled(self, torch, f):
        return torch.compile(f)

    def prepare(self, problem, kind, order=1):
        if kind not in self.kinds:
            raise Unsupported(f"{self.name}: no {kind} (double backward through a compiled function is not "
                              "supported; the torch column has it)" if kind == "order"
                              else f"{self.name}: no {kind} (the torch column has it)")
        self.check_size(problem)
        import torch

        if kind == "hessian":   # compiled whole: double backward through a compiled function is not supported
            torch.set_num_threads(1)
            ns, fn, i = TorchOps(torch), problem.fn, problem.wrt_index[0]
            h = torch.compile(torch.func.hessian(lambda x, ts: fn(ns, *ts[:i], x, *ts[i + 1:])))
            runner = peer_runner(self, lambda ts: h(ts[i], ts), None)
        else:
            runner = super().prepare(problem, kind, order)
        try:
            runner.one_off = _timed_first_call(runner, problem.arrays)
        except Exception as e:
            if type(e).__module__.startswith("torch._dynamo") or type(e).__name__ == "InductorError":
                raise Unsupported(f"{self.name}: torch.compile fails on this workload "
                                  f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
            raise
        return runner


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


def _torch_jacobian(peer: Peer, torch, ns, problem) -> Runner:
    """``torch.func.jacfwd`` (a batch of dual-number tangents) or ``jacrev`` (vmap over vjp) of the
    workload's function of its one ``wrt`` argument."""
    i = problem.wrt_index[0]
    transform = {"forward": torch.func.jacfwd, "reverse": torch.func.jacrev}[_jacobian_mode(peer.name, problem)]
    jac, f = transform(_at(problem.fn, ns, i)), _at(problem.fn, ns, i)
    return peer_runner(peer, lambda ts: jac(ts[i], ts), lambda ts: f(ts[i], ts), value=np.asarray)


XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


class Jax(Peer):
    """JAX ``jit(grad)``, float64, XLA on one thread, inputs on the device; the compile is the one-off."""

    name = module = "jax"
    mode = "jit, float64 (jax_enable_x64), CPU"
    max_nodes = 2000
    too_big = ("XLA's compile time grows faster than the unrolled graph (tanh chains 500/1000/2000 deep: "
               "5/16/89 s; a 4612-node LSTM: over 5 min)")
    timed_region = "the jitted derivative on device arrays, then jax.block_until_ready on its outputs"
    outside = "jax.device_put of the inputs before the timed calls; outputs to numpy after"
    one_off_holds = "tracing and XLA's compile (the first call)"

    kinds = (*Peer.kinds, "jacobian")

    def setup(self):
        """XLA's CPU thread pool to one thread, as twograd's BLAS: XLA reads the flags when JAX starts."""
        flags = os.environ.get("XLA_FLAGS", "")
        if XLA_ONE_THREAD not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()

    def runtime(self):
        return {"XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}

    def inputs(self, arrays, wrt=()):
        import jax

        return [jax.device_put(a) for a in arrays]

    def prepare(self, problem, kind, order=1):
        self.check_size(problem)
        self.setup()   # in this process too, in case JAX is not imported yet (a worker did it first)
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax.scipy.special import erf, logsumexp

        ns = NumpyLike(jnp, logsumexp, jax.lax.stop_gradient, LaxLoops(jax.lax), erf)
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
        d, jf = jax.jit(d), jax.jit(f)
        value = np.asarray if kind == "jacobian" else float  # a Jacobian's function is a vector
        runner = peer_runner(self, lambda xs: d(*xs), lambda xs: jf(*xs), sync=jax.block_until_ready, value=value)
        try:
            runner.one_off = _timed_first_call(runner, problem.arrays)
        except ValueError as e:
            if JAX_WHILE_REVERSE not in str(e):
                raise
            raise Unsupported("jax: reverse mode through lax.while_loop is not supported (JAX refuses it)") from None
        return runner


class Autograd(Peer):
    """HIPS autograd: a tape of numpy calls, re-recorded on every call."""

    name = module = "autograd"
    mode = "tape re-recorded per call"
    kinds = (*Peer.kinds, "jacobian")
    timed_region = "the whole call on the numpy inputs: recording the tape and sweeping it"
    outside = "nothing to convert: autograd takes and returns numpy arrays"
    one_off_holds = "nothing to prepare"

    def prepare(self, problem, kind, order=1):
        import autograd
        import autograd.numpy as anp

        def logsumexp(x, axis=None, keepdims=False):
            # autograd's own lives in autograd.scipy, which needs scipy; the max shift is exact either way
            m = anp.max(x, axis=axis, keepdims=True)
            s = m + anp.log(anp.sum(anp.exp(x - m), axis=axis, keepdims=True))
            return s if keepdims else anp.squeeze(s, axis=axis)

        ns, fn, idx = NumpyLike(anp, logsumexp, erf=_autograd_erf()), problem.fn, problem.wrt_index
        if kind == "jacobian":
            return _autograd_jacobian(self, autograd, ns, problem)

        def grad(arrays):
            def at(values):
                full = list(arrays)
                for i, v in zip(idx, values):
                    full[i] = v
                return fn(ns, *full)
            if kind == "hessian":
                return autograd.hessian(lambda x: at((x,)))(arrays[idx[0]])
            if kind == "order":
                d = lambda x: at((x,))
                for _ in range(order):
                    d = autograd.grad(d)
                return d(arrays[idx[0]])
            return autograd.grad(lambda values: at(values))(tuple(arrays[i] for i in idx))

        return peer_runner(self, grad, lambda arrays: fn(ns, *arrays))


def _autograd_erf():
    """autograd's differentiable erf (it lives in autograd.scipy, which needs scipy), or None."""
    try:
        from autograd.scipy.special import erf
    except ImportError:
        return None
    return erf


def _autograd_jacobian(peer: Peer, autograd, ns, problem) -> Runner:
    """autograd has no batched transforms: forward mode is one ``make_jvp`` pass per column (its JVP
    rules, true forward mode), reverse mode ``autograd.jacobian``, one backward pass per row."""
    i, mode = problem.wrt_index[0], _jacobian_mode("autograd", problem)
    at = _at(problem.fn, ns, i)

    def jacobian(arrays):
        x, args = arrays[i], list(arrays)
        if mode == "reverse":
            return autograd.jacobian(lambda v: at(v, args))(x)
        push = autograd.make_jvp(lambda v: at(v, args))(x)
        cols = [push(e.reshape(x.shape))[1] for e in np.eye(x.size, dtype=x.dtype)]
        y = np.asarray(cols[0]) if cols else np.asarray(at(x, args))
        return np.stack(cols, axis=-1).reshape(y.shape + x.shape)

    return peer_runner(peer, jacobian, lambda arrays: at(arrays[i], list(arrays)), value=np.asarray)


class PyTensor(Peer):
    """PyTensor in its default mode (numba, in PyTensor 3): symbolic grad, then a compiled function."""

    name = "pytensor-numba"
    module = "pytensor"
    mode = "NUMBA"          # pytensor.function's mode: PyTensor 3's default linker
    kinds = (*Peer.kinds, "jacobian")
    max_nodes = 2000
    too_big = "pytensor recurses once per node, which would pass Python's stack"
    trust_input = True      # the inputs are the problem's own arrays, already of the right types: no checks
    timed_region = "the compiled function on the numpy inputs (trust_input: no input checks)"
    outside = "nothing to convert: pytensor takes numpy arrays; its outputs are numpy arrays"
    one_off_holds = "the symbolic derivative (build), pytensor.function and the first call (compile)"

    def runtime(self):
        import pytensor

        return {"linker": str(pytensor.compile.mode.get_mode(self.mode).linker)}

    def prepare(self, problem, kind, order=1):
        import pytensor
        import pytensor.tensor as pt
        from pytensor.tensor.special import log_softmax, softmax

        peer = self.name

        class Ops(PyTensorLoops):
            def __getattr__(self, name):
                return getattr(pt, name)

            def relu(self, x):
                return pt.maximum(x, 0.0)

            def sum(self, x, axis=None, keepdims=False):
                return pt.sum(x, axis=axis, keepdims=keepdims)

            def mean(self, x, axis=None, keepdims=False):
                return pt.mean(x, axis=axis, keepdims=keepdims)

            def softmax(self, x, axis=-1):
                return softmax(x, axis=axis)

            def softmax_cross_entropy(self, z, t, axis=-1):
                if _integer(t):
                    t = pt.cast(pt.eq(pt.shape_padright(t), pt.arange(z.shape[axis])), "float64")
                    t = t if axis in (-1, z.ndim - 1) else pt.moveaxis(t, -1, axis)
                return -pt.sum(t * log_softmax(z, axis=axis), axis=axis)

            @property
            def nn(self):
                raise Unsupported(f"{peer}: the workloads' convolution and pooling are not spelled for pytensor")

        self.check_size(problem)
        if kind == "jacobian" and _jacobian_mode(self.name, problem) == "forward":
            raise Unsupported(f"{self.name}: no forward-mode Jacobian (its R-op pushes one tangent per graph)")
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, 50 * self.max_nodes))  # PyTensor's documented workaround
        try:
            t0 = time.perf_counter()
            variables = [pt.tensor(name, dtype=str(a.dtype), shape=a.shape) for name, a in problem.args.items()]
            try:
                cost = problem.fn(Ops(), *variables)
            except TypeError as e:  # the model needs a static dim as a Python int; pytensor's are symbolic
                raise Unsupported(f"{self.name}: the model needs static shapes as ints ({e})") from None
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
            f = pytensor.function(variables, outputs, on_unused_input="ignore", mode=self.mode)
            fwd = pytensor.function(variables, cost, on_unused_input="ignore", mode=self.mode)
            f.trust_input = fwd.trust_input = self.trust_input
            compile_ = time.perf_counter() - t0
            value = np.asarray if kind == "jacobian" else float  # a Jacobian's function is a vector
            runner = peer_runner(self, lambda xs: f(*xs), lambda xs: fwd(*xs), value=value)
            runner.forward(problem.arrays)   # numba compiles on the first call: the forward's in no timing
            runner.one_off = _timed_first_call(runner, problem.arrays, {"build": build, "compile": compile_})
        finally:
            sys.setrecursionlimit(limit)
        return runner


class PyTensorC(PyTensor):
    """PyTensor through its C backend (C ops run by its C virtual machine, PyTensor 2's default)."""

    name = "pytensor-cvm"
    mode = "CVM"
    trust_input = False     # its C code reads unchecked inputs wrongly (xor's training: a DimShuffle error)
    timed_region = "the compiled function on the numpy inputs (its input checks included)"

    def missing(self):
        why = super().missing()
        if why is None and cxx_compiler() is None:
            return f"{self.name}: PyTensor's C backend needs a C++ compiler (none of $CXX, g++, clang++, c++ found)"
        return why

    def runtime(self):
        """The linker, and the BLAS its C dot products link to: none where PyTensor found none to link
        (a pip install, typically), and then its matrix products are its own slower loops."""
        import pytensor

        return {**super().runtime(), "blas__ldflags": pytensor.config.blas__ldflags or "none found"}


PEERS: dict[str, Peer] = {p.name: p for p in (Torch(), TorchCompile(), Jax(), Autograd(), PyTensor(), PyTensorC())}
BACKENDS.update(PEERS)


def installed() -> list[str]:
    """Names of the peers that can run here (installed, and what they need found)."""
    return [name for name, p in PEERS.items() if p.missing() is None]
