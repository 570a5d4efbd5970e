"""A tanh MLP with a softmax cross-entropy: the workload deep learning is made of.

``mlp`` times one gradient of the mean loss with respect to every weight and
bias at three sizes, from per-op-overhead-bound (small) to matmul-bound
(large). ``mlp-train`` runs plain SGD on a generated two-spirals problem
(the book's §6.5.7 training loop) and records each backend's loss curve.
"""

from __future__ import annotations

import numpy as np

from . import Problem, seeded, workload

SIZES = {"small": ((32, 32, 32, 10), 16), "medium": ((784, 256, 256, 10), 64),
         "large": ((1024, 1024, 1024, 10), 256)}


def logits(ns, params, x):
    """tanh hidden layers, a linear output layer."""
    h = x
    last = len(params) // 2 - 1
    for k in range(0, len(params), 2):
        h = h @ params[k] + params[k + 1]
        if k // 2 < last:
            h = ns.tanh(h)
    return h


def mlp_fn(ns, *args):
    """args: W1, b1, ..., Wk, bk, X, Y; the mean softmax cross-entropy through the fused op."""
    *params, x, y = args
    return ns.mean(ns.softmax_cross_entropy(logits(ns, params, x), y))


def spelled_fn(ns, *args):
    """``mlp_fn`` with the cross-entropy spelled out as users write it: the max shift, exp, sum, log."""
    *params, x, y = args
    h = logits(ns, params, x)
    z = h - ns.max(h, axis=1, keepdims=True)
    logp = z - ns.log(ns.sum(ns.exp(z), axis=1, keepdims=True))
    return ns.mean(-ns.sum(y * logp, axis=1))


def hand_forward(*args):
    *params, x, y = args
    z = _forward(params, x)[-1]
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -np.sum(y * logp) / x.shape[0]


def _forward(params, x):
    """Every layer's output: the hidden activations, then the logits."""
    outs = [x]
    last = len(params) // 2 - 1
    for k in range(0, len(params), 2):
        a = outs[-1] @ params[k] + params[k + 1]
        outs.append(np.tanh(a) if k // 2 < last else a)
    return outs


def hand_grad(*args):
    """Backprop by hand: softmax minus one-hot, then matmuls and tanh' = 1 - h^2."""
    *params, x, y = args
    outs = _forward(params, x)
    z = outs.pop()
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    d = (p - y) / x.shape[0]
    grads = []
    for k in range(len(params) - 2, -1, -2):
        h = outs.pop()
        grads.append(d.sum(axis=0))
        grads.append(h.T @ d)
        if k:
            d = (d @ params[k].T) * (1.0 - h * h)
    return grads[::-1]


def init(rng, dims, batch, classes=None, x=None, labels=None):
    """Seeded weights (scaled by fan-in), small biases, inputs and one-hot targets."""
    args = {}
    for k, (a, b) in enumerate(zip(dims[:-1], dims[1:]), 1):
        args[f"W{k}"] = rng.standard_normal((a, b)) / np.sqrt(a)
        args[f"b{k}"] = 0.1 * rng.standard_normal(b)
    if x is None:
        x = rng.standard_normal((batch, dims[0]))
        labels = rng.integers(0, dims[-1], batch)
    args["X"] = x
    args["Y"] = np.eye(dims[-1])[labels]
    return args


def _problem(args, fn=mlp_fn, **kw) -> Problem:
    wrt = tuple(k for k in args if k[0] in "Wb")
    return Problem(fn, args, wrt, hand_grad=hand_grad, hand_forward=hand_forward, **kw)


@workload("mlp", sizes=tuple(SIZES), default=tuple(SIZES), check=("small",),
          doc="d mean softmax cross-entropy / d all weights of a tanh MLP, float64")
def mlp(size: str, fn=mlp_fn, name: str = "mlp") -> Problem:
    dims, batch = SIZES[size]
    nparams = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    return _problem(init(seeded(name, size), dims, batch), fn=fn, scale=nparams * batch, family="tanh",
                    label="-".join(map(str, dims)) + f", batch {batch}")


@workload("mlp-spelled", sizes=tuple(SIZES), default=("small",), check=("small",),
          doc="mlp with the cross-entropy spelled out (max shift, exp, sum, log), as users write it")
def mlp_spelled(size: str) -> Problem:
    return mlp(size, fn=spelled_fn, name="mlp-spelled")


def spirals(rng, classes: int = 3, per_class: int = 100, noise: float = 0.2):
    """Points on ``classes`` interleaved spiral arms in the plane, with labels."""
    xs, labels = [], []
    for c in range(classes):
        r = np.linspace(0.05, 1.0, per_class)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per_class) + noise * rng.standard_normal(per_class)
        xs.append(np.column_stack([r * np.sin(t), r * np.cos(t)]))
        labels.append(np.full(per_class, c))
    return np.concatenate(xs), np.concatenate(labels)


@workload("mlp-train", sizes=("spirals",), kind="train", rtol=1e-8,
          doc="SGD on three spirals with a 2-32-32-3 tanh MLP: one loss curve per backend")
def mlp_train(size: str) -> Problem:
    rng = seeded("mlp-train", size)
    x, labels = spirals(rng)
    args = init(rng, (2, 32, 32, 3), len(x), x=x, labels=labels)
    return _problem(args, steps=300, lr=0.3, scale=len(x), family="spirals",
                    label=f"2-32-32-3, {len(x)} points, 300 SGD steps")
