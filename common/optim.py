"""Optimisers on pytrees of numpy arrays: ``sgd``, ``momentum`` and ``adam``, with torch.optim's arithmetic.

Both backends hand back gradients as numpy arrays (``symnum.grad``,
``symsym.function``), so an optimiser needs nothing of either: it maps
arrays to arrays. The spelling is optax's, a pair of pure functions::

    opt = optim.adam(1e-3)
    state = opt.init(params)                               # params: an array, or nested dicts/lists/tuples of them
    params, state = opt.update(grads, state, params)       # new params and state; nothing is changed in place

``update`` returns the new parameters themselves (optax returns updates to add),
because here there is nothing else to apply them to. The arithmetic is
PyTorch's, operation for operation, so a trajectory matches ``torch.optim``'s
to rounding: SGD ``p - lr g``; momentum (PyTorch's dampening 0, not
Nesterov) ``b = mu b + g, p - lr b`` with ``b = g`` on the first step; Adam
with both bias corrections, ``eps`` added after the square root of the
corrected second moment, and the first moment moved by a lerp.

A parameter keeps its dtype (a float32 model trains in float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .errors import FeedError
from .site import user_site
from .tree import tree_flatten, tree_unflatten


class Optimizer(NamedTuple):
    """``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``."""

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], tuple[Any, Any]]


def _arrays(name: str, what: str, leaves: list) -> list[np.ndarray]:
    """The leaves as floating numpy arrays; anything else is an error naming the optimiser and the leaf."""
    out = []
    for k, leaf in enumerate(leaves):
        a = leaf if isinstance(leaf, np.ndarray) else (np.asarray(leaf) if isinstance(leaf, (float, np.floating))
                                                        else None)
        if a is None or a.dtype.kind not in "fc":
            shown = f"{type(leaf).__name__}" + (f" of dtype {a.dtype}" if a is not None else "")
            raise _error(name, f"{what} leaf {k} is a {shown}, not a floating numpy array")
        out.append(a)
    return out


def _leaves(name: str, grads, params, states=()) -> tuple[list, list, list, list[list]]:
    """The parameters' structure and arrays, the gradients' arrays (same structure and shapes) and each
    state tree's leaves."""
    p, spec = tree_flatten(params)
    g, gspec = tree_flatten(grads)
    if gspec != spec:
        raise _error(name, f"the gradients' structure {gspec!r} differs from the parameters' {spec!r} (* a leaf)")
    p, g = _arrays(name, "parameter", p), _arrays(name, "gradient", g)
    for k, (a, b) in enumerate(zip(p, g)):
        if a.shape != b.shape:
            raise _error(name, f"gradient leaf {k} has shape {b.shape}, its parameter {a.shape}")
    return spec, p, g, [tree_flatten(s)[0] for s in states]


def _error(name: str, message: str) -> FeedError:
    """The error for a bad tree, naming the optimiser's call and the user's line that made it."""
    site = user_site(2)
    return FeedError(f"{name}: {message}" + (f" (called at {site})" if site else ""))


def _zeros(name: str, params) -> Any:
    """A tree of zeros shaped and typed as ``params`` (checked: every leaf a floating array)."""
    leaves, spec = tree_flatten(params)
    return tree_unflatten(spec, [np.zeros_like(a) for a in _arrays(name, "parameter", leaves)])


# --- the optimisers -------------------------------------------------------------------------------------

def sgd(lr: float) -> Optimizer:
    """Plain gradient descent, ``p - lr g`` (``torch.optim.SGD(lr=lr)``); its state is empty."""
    def init(params):
        _zeros("sgd.init", params)
        return ()

    def update(grads, state, params):
        spec, p, g, _ = _leaves("sgd.update", grads, params)
        return tree_unflatten(spec, [a - lr * b for a, b in zip(p, g)]), state

    return Optimizer(init, update)


class MomentumState(NamedTuple):
    step: int
    buffer: Any   # the velocity, shaped as the parameters


def momentum(lr: float, mu: float = 0.9) -> Optimizer:
    """Heavy-ball momentum as ``torch.optim.SGD(lr=lr, momentum=mu)``: ``b = mu b + g`` (``b = g`` on the
    first step, dampening 0), ``p - lr b``."""
    def init(params):
        return MomentumState(0, _zeros("momentum.init", params))

    def update(grads, state, params):
        spec, p, g, (buf,) = _leaves("momentum.update", grads, params, (state.buffer,))
        if state.step == 0:
            new = [np.array(b, copy=True) for b in g]
        else:
            new = [mu * v + b for v, b in zip(buf, g)]
        return (tree_unflatten(spec, [a - lr * v for a, v in zip(p, new)]),
                MomentumState(state.step + 1, tree_unflatten(spec, new)))

    return Optimizer(init, update)


class AdamState(NamedTuple):
    step: int
    mean: Any       # first moment, shaped as the parameters
    square: Any     # second moment


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Optimizer:
    """Adam as ``torch.optim.Adam(lr=lr, betas=(b1, b2), eps=eps)``: ``m += (1 - b1)(g - m)``,
    ``v = b2 v + (1 - b2) g^2``, then ``p - lr/(1 - b1^t) m / (sqrt(v)/sqrt(1 - b2^t) + eps)``: eps
    outside the root and after the second moment's bias correction, as PyTorch places it."""
    def init(params):
        return AdamState(0, _zeros("adam.init", params), _zeros("adam.init", params))

    def update(grads, state, params):
        spec, p, g, (m, v) = _leaves("adam.update", grads, params, (state.mean, state.square))
        t = state.step + 1
        step_size = lr / (1.0 - b1 ** t)
        root2 = math.sqrt(1.0 - b2 ** t)
        new_m, new_v, new_p = [], [], []
        for a, gi, mi, vi in zip(p, g, m, v):
            mi = mi + (1.0 - b1) * (gi - mi)
            vi = b2 * vi + (1.0 - b2) * (gi * gi)
            denom = np.sqrt(vi) / root2 + eps
            new_m.append(mi)
            new_v.append(vi)
            new_p.append(a - step_size * (mi / denom))
        return tree_unflatten(spec, new_p), AdamState(t, tree_unflatten(spec, new_m), tree_unflatten(spec, new_v))

    return Optimizer(init, update)
