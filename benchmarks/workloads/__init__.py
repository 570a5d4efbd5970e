"""The benchmark workloads: each written once, run by every backend.

A workload module registers itself with :func:`workload`; this package finds
its modules with :mod:`pkgutil`, so a new file here is all a new workload
needs. The interface::

    from benchmarks.workloads import Problem, workload

    @workload("chain", sizes=("sin-d3", "sin-d1000"), default=("sin-d1000",),
              check="sin-d3", doc="z = f(f(...f(w))) of depth d")
    def chain(size: str) -> Problem:
        depth = int(size.split("-d")[1])
        return Problem(
            fn=lambda ns, w: ...,               # the cost, written ONCE against a namespace
            args={"w": np.array(0.5)},           # seeded inputs, in fn's argument order
            wrt=("w",),                          # the arguments differentiated
            hand_grad=lambda w: [...],           # optional numpy gradient, in wrt order
                                                 # (a hessian workload gives hand_hessian instead)
            hand_forward=lambda w: ...,          # optional numpy cost
            scale=depth, family="sin", label="depth 1000")

``fn(ns, *args)`` returns a scalar and uses only ``ns.<op>(...)`` (the op
table's names) and Python operators, so the same function builds an IR graph
(``ns = common.api``), runs on symnum tensors (``ns = symnum``) or on a peer
library (``ns`` a small adapter). Kinds: ``grad`` (first derivative),
``hessian`` (the full Hessian of the one ``wrt``; ``hand_hessian`` returns it),
``train`` (also ``steps`` and ``lr``: plain SGD, or ``optimizer``, one of :mod:`common.optim`'s;
a loss curve per backend) and
``order`` (derivatives of order 1..``max_order`` of a scalar function; ``exact``
optionally gives the closed form ``exact(k, *args)``) and ``jacobian`` (``fn`` returns a vector; the
Jacobian of it with respect to the one ``wrt``, built in ``mode``: "forward", "reverse" or "auto";
``hand_jacobian`` returns it).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from common import optim

KINDS = ("grad", "hessian", "train", "order", "jacobian")


@dataclass
class Problem:
    """One size of one workload: the cost function, seeded inputs and references."""

    fn: Callable
    args: dict[str, np.ndarray]
    wrt: tuple[str, ...]
    hand_grad: Callable | None = None      # numpy gradient, a list in wrt order
    hand_forward: Callable | None = None   # numpy cost
    hand_hessian: Callable | None = None   # hessian: numpy Hessian of the one wrt, as a list of one array
    hand_jacobian: Callable | None = None  # jacobian: numpy Jacobian of the one wrt, as a list of one array
    mode: str = "auto"              # jacobian: "forward", "reverse" or "auto"
    scale: float = 1.0              # the x axis of time-vs-size plots
    family: str = ""                # sizes sharing a family form one line on those plots
    label: str = ""                 # a human description of the size
    steps: int = 0                  # train: SGD steps
    lr: float = 0.0                 # train: learning rate of plain SGD
    optimizer: object = None        # train: a common.optim optimiser (None: optim.sgd(lr))
    max_order: int = 1              # order: highest derivative
    exact: Callable | None = None   # order: exact(k, *args) -> k-th derivative
    _graph: tuple | None = field(default=None, repr=False)

    def graph(self):
        """The IR graph of the cost: ``(cost, [variable nodes in argument order])``, made once."""
        if self._graph is None:
            from common import api as T

            variables = [T.var(name, value.shape, value.dtype) for name, value in self.args.items()]
            self._graph = (self.fn(T, *variables), variables)
        return self._graph

    def hand_derivative(self, kind: str) -> Callable | None:
        """The hand-written derivative that workloads of ``kind`` compare and time: the Hessian for
        ``hessian``, the Jacobian for ``jacobian``, else the gradient (None where the workload has none)."""
        if kind == "jacobian":
            return self.hand_jacobian
        return self.hand_hessian if kind == "hessian" else self.hand_grad

    @property
    def arrays(self) -> list[np.ndarray]:
        return list(self.args.values())

    @property
    def wrt_index(self) -> list[int]:
        names = list(self.args)
        return [names.index(w) for w in self.wrt]


@dataclass
class Workload:
    """A registered workload: how to make each size, which to run by default, tolerances."""

    name: str
    make: Callable[[str], Problem]
    sizes: tuple[str, ...]
    default: tuple[str, ...]
    check: tuple[str, ...]
    kind: str = "grad"
    doc: str = ""
    rtol: float = 1e-9              # backend vs backend (and vs hand)
    fd_rtol: float = 1e-6           # vs finite differences
    fd_step: float = 1e-6           # finite-difference step, relative to max(1, |x|)
    hidden: bool = False            # left out of "all workloads" (test-only)


WORKLOADS: dict[str, Workload] = {}


def workload(name: str, sizes, default=None, check=None, kind: str = "grad", doc: str = "",
             rtol: float = 1e-9, fd_rtol: float = 1e-6, fd_step: float = 1e-6, hidden: bool = False):
    """Register ``make(size) -> Problem`` as workload ``name`` (a decorator)."""
    if kind not in KINDS:
        raise ValueError(f"workload {name!r}: kind must be one of {KINDS}, got {kind!r}")

    def register(make):
        sz = tuple(sizes)
        WORKLOADS[name] = Workload(name, make, sz, tuple(default or sz), tuple(check or sz[:1]),
                                   kind, doc or (make.__doc__ or "").strip().split("\n")[0],
                                   rtol, fd_rtol, fd_step, hidden)
        return make

    return register


def train(runner, problem: Problem) -> list[float]:
    """The problem's optimiser (plain SGD unless it names one) from its initial values; the loss at every
    step. The optimiser is :mod:`common.optim`'s, so every backend's gradients take the very same steps."""
    arrays = list(problem.arrays)
    idx = problem.wrt_index
    opt = problem.optimizer or optim.sgd(problem.lr)
    params = [arrays[i] for i in idx]
    state = opt.init(params)
    losses = []
    for _ in range(problem.steps):
        loss, grads = runner.value_and_grad(arrays)
        losses.append(float(loss))
        params, state = opt.update([np.asarray(g) for g in grads], state, params)
        for i, p in zip(idx, params):
            arrays[i] = p
    return losses


_loaded = False


def load_all() -> dict[str, Workload]:
    """Import every module of this package (each registers its workloads); the registry."""
    global _loaded
    if not _loaded:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
    return WORKLOADS


def get(name: str) -> Workload:
    load_all()
    if name not in WORKLOADS:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(sorted(WORKLOADS))}")
    return WORKLOADS[name]


def visible() -> list[Workload]:
    """The workloads a plain run covers, in registration order."""
    return [w for w in load_all().values() if not w.hidden]


def seeded(name: str, size: str) -> np.random.Generator:
    """A generator seeded by the workload and size, so inputs are the same on every run."""
    return np.random.default_rng(abs(hash_text(f"{name}/{size}")))


def hash_text(text: str) -> int:
    """A stable (not per-process salted) hash of ``text``."""
    h = 1469598103934665603
    for c in text.encode():
        h = ((h ^ c) * 1099511628211) % (1 << 63)
    return h
