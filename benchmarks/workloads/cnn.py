"""A LeNet-5-shaped convolutional network: derivatives through convolutions and max pooling.

conv 1->6 5x5, relu, max pool 2, conv 6->16 5x5, relu, max pool 2, dense
256->120->84->10 with relus, mean softmax cross-entropy, on 28x28 inputs; the
gradient with respect to every weight and bias. The hand-written backprop
below is the im2col one: each convolution one BLAS matmul over a strided
view's columns, its input's cotangent one matmul and 25 strided adds back,
each 2x2 pool three elementwise maxima, its backward a reshape and its mask.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import Problem, seeded, workload

SIZES = ("b16", "b128")
SHAPES = {"w1": (6, 1, 5, 5), "b1": (6, 1, 1), "w2": (16, 6, 5, 5), "b2": (16, 1, 1), "W3": (256, 120),
          "b3": (120,), "W4": (120, 84), "b4": (84,), "W5": (84, 10), "b5": (10,)}


def cnn_fn(ns, w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, x, y):
    h = ns.nn.max_pool2d(ns.relu(ns.nn.conv2d(x, w1) + b1), 2)
    h = ns.nn.max_pool2d(ns.relu(ns.nn.conv2d(h, w2) + b2), 2)
    h = ns.reshape(h, (x.shape[0], 256))
    h = ns.relu(h @ w3 + b3)
    h = ns.relu(h @ w4 + b4)
    return ns.mean(ns.softmax_cross_entropy(h @ w5 + b5, y))


# ------------------------------------------------------------ by hand

def _columns(x, k):
    """im2col: (N, C*k*k, P) columns of x's k x k windows (stride 1, no padding), and the output side."""
    n, c, h, _ = x.shape
    o = h - k + 1
    win = sliding_window_view(x, (k, k), axis=(2, 3))                 # (N, C, o, o, k, k), a view
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * k * k, o * o), o


def _conv_relu_pool(x, w, b):
    """relu(conv(x, w) + b) and its 2x2 max pool; the columns and the pre-pool activations for the backward."""
    cols, o = _columns(x, w.shape[-1])
    z = np.matmul(w.reshape(w.shape[0], -1), cols)                     # (N, O, P)
    z = z.reshape(x.shape[0], w.shape[0], o, o)
    z += b
    np.maximum(z, 0.0, out=z)
    return cols, z, _pool(z)


def _pool(z):
    """2x2 max pool as three elementwise maxima of the four corners' strided slices (numpy's
    ``max(axis=(3, 5))`` of the blocks runs its inner loop once per output over 2x2, tens of times slower)."""
    pooled = np.maximum(z[:, :, 0::2, 0::2], z[:, :, 0::2, 1::2])
    np.maximum(pooled, z[:, :, 1::2, 0::2], out=pooled)
    return np.maximum(pooled, z[:, :, 1::2, 1::2], out=pooled)


def _unpool_relu(g, z, pooled):
    """The cotangent of relu(.)'s input from the pooled cotangent: to each window's max, where positive."""
    n, c, o, _ = z.shape
    blocks = z.reshape(n, c, o // 2, 2, o // 2, 2)
    hit = blocks == pooled[:, :, :, None, :, None]
    hit &= blocks > 0.0
    return np.multiply(hit, g[:, :, :, None, :, None]).reshape(n, c, o, o)


def _forward(w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, x):
    cols1, z1, p1 = _conv_relu_pool(x, w1, b1)
    cols2, z2, p2 = _conv_relu_pool(p1, w2, b2)
    h2 = p2.reshape(x.shape[0], 256)
    a3 = h2 @ w3
    a3 += b3
    np.maximum(a3, 0.0, out=a3)
    a4 = a3 @ w4
    a4 += b4
    np.maximum(a4, 0.0, out=a4)
    z = a4 @ w5
    z += b5
    return (cols1, z1, p1, cols2, z2, p2, h2, a3, a4), z


def _log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
    return z


def hand_forward(*args):
    *params, x, y = args
    _, z = _forward(*params, x)
    return -np.sum(y * _log_softmax(z)) / x.shape[0]


def hand_grad(*args):
    """Backprop by hand: softmax minus targets, the dense layers, then each conv block's mask and im2col."""
    w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, x, y = args
    (cols1, z1, p1, cols2, z2, p2, h2, a3, a4), z = _forward(w1, b1, w2, b2, w3, b3, w4, b4, w5, b5, x)
    n = x.shape[0]
    d = np.exp(_log_softmax(z))
    d -= y
    d /= n
    g5, gb5 = a4.T @ d, d.sum(axis=0)
    d = d @ w5.T
    d *= a4 > 0.0
    g4, gb4 = a3.T @ d, d.sum(axis=0)
    d = d @ w4.T
    d *= a3 > 0.0
    g3, gb3 = h2.T @ d, d.sum(axis=0)
    d = (d @ w3.T).reshape(p2.shape)
    dz2 = _unpool_relu(d, z2, p2).reshape(n, w2.shape[0], -1)          # (N, 16, 64)
    g2 = np.tensordot(dz2, cols2, axes=([0, 2], [0, 2])).reshape(w2.shape)
    gb2 = dz2.sum(axis=(0, 2)).reshape(b2.shape)
    dcols = np.matmul(w2.reshape(w2.shape[0], -1).T, dz2)                # (N, 150, 64)
    dcols = dcols.reshape(n, 6, 5, 5, 8, 8)
    dp1 = np.zeros(p1.shape)
    for i in range(5):
        for j in range(5):
            dp1[:, :, i:i + 8, j:j + 8] += dcols[:, :, i, j]
    dz1 = _unpool_relu(dp1, z1, p1).reshape(n, w1.shape[0], -1)        # (N, 6, 576)
    g1 = np.tensordot(dz1, cols1, axes=([0, 2], [0, 2])).reshape(w1.shape)
    gb1 = dz1.sum(axis=(0, 2)).reshape(b1.shape)
    return [g1, gb1, g2, gb2, g3, gb3, g4, gb4, g5, gb5]


@workload("cnn", sizes=SIZES, default=SIZES, check=SIZES[:1], rtol=1e-8, fd_step=1e-8,
          doc="d mean softmax cross-entropy / d all weights of a LeNet-5-shaped CNN on 28x28 inputs")
def cnn(size: str) -> Problem:
    batch = int(size[1:])
    rng = seeded("cnn", size)
    args = {}
    for name, shape in SHAPES.items():
        fan_in = int(np.prod(shape[1:])) if name[0] == "w" else shape[0]
        args[name] = (rng.standard_normal(shape) / np.sqrt(fan_in) if name[0] in "wW"
                      else 0.1 * rng.standard_normal(shape))
    args["X"] = rng.standard_normal((batch, 1, 28, 28))
    args["Y"] = np.eye(10)[rng.integers(0, 10, batch)]
    return Problem(cnn_fn, args, tuple(SHAPES), hand_grad=hand_grad, hand_forward=hand_forward,
                   scale=batch, family="lenet", label=f"LeNet-5 shape, batch {batch}")
