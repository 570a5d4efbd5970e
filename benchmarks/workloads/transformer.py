"""One pre-norm transformer block and a next-token cross-entropy: the model most gradients are taken of today.

``x + attn(ln1(x))``, then ``+ mlp(ln2(.))``, then a linear read-out to the
vocabulary and the mean cross-entropy against integer next-token labels. The
attention is causal multi-head (the mask applied through ``where``, fused q/k/v
weights as GPT-2's ``c_attn``), the MLP 4x wide with the exact GELU
``x/2 (1 + erf(x/sqrt 2))``. Inputs are the block's (already embedded) tokens;
the gradient is with respect to every weight. Sizes ``d<model>-h<heads>-t<tokens>-b<batch>``;
the vocabulary is ``d`` wide.

The hand-written backprop below is what a careful engineer writes in numpy:
every matmul on 2-d (batch * tokens) views where it can be, the softmaxes and
layer norms in place, the attention's q/k/v cotangents written straight into
the fused weight's cotangent buffer through a strided view.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from . import Problem, seeded, workload

SIZES = ("d16-h2-t8-b2", "d64-h4-t32-b8", "d256-h8-t128-b8")
PARAMS = ("g1", "c1", "wqkv", "wo", "g2", "c2", "w1", "b1", "w2", "b2", "wout")
EPS = 1e-5          # the layer norms' epsilon (PyTorch's default)
MASKED = -1e9       # a masked score: exp of it, shifted by the row's max, is exactly 0 in float64
SQRT_HALF = math.sqrt(0.5)
GELU_PDF = 1.0 / math.sqrt(2.0 * math.pi)


def _dims(size: str) -> tuple[int, int, int, int]:
    d, h, t, b = (int(part[1:]) for part in size.split("-"))
    return d, h, t, b


def make_fn(d: int, heads: int, t: int, b: int):
    """The cost as ``fn(ns, *params, x, labels, mask)``; the dims are Python ints (a graph's shapes need not be)."""
    dh = d // heads
    scale = 1.0 / math.sqrt(dh)

    def layer_norm(ns, x, g, c):
        xc = x - ns.mean(x, axis=-1, keepdims=True)
        var = ns.mean(xc * xc, axis=-1, keepdims=True)
        return xc / ns.sqrt(var + EPS) * g + c

    def transformer_fn(ns, g1, c1, wqkv, wo, g2, c2, w1, b1, w2, b2, wout, x, labels, mask):
        qkv = ns.transpose(ns.reshape(layer_norm(ns, x, g1, c1) @ wqkv, (b, t, 3, heads, dh)), (2, 0, 3, 1, 4))
        q, k, v = qkv[0], qkv[1], qkv[2]                                     # (b, heads, t, dh) each
        s = ns.where(mask, (q @ ns.transpose(k, (0, 1, 3, 2))) * scale, MASKED)
        a = ns.reshape(ns.transpose(ns.softmax(s, axis=-1) @ v, (0, 2, 1, 3)), (b, t, d))
        x = x + a @ wo
        u = layer_norm(ns, x, g2, c2) @ w1 + b1
        x = x + (0.5 * u * (1.0 + ns.erf(u * SQRT_HALF))) @ w2 + b2
        z = ns.reshape(x @ wout, (b * t, d))
        return ns.mean(ns.softmax_cross_entropy(z, labels))

    return transformer_fn


# ------------------------------------------------------------ by hand

def _layer_norm(x, g, c):
    """(x - mean) / sqrt(var + eps) * g + c over the last axis, and what its backward needs (x-hat, 1/std)."""
    xhat = x - x.mean(axis=-1, keepdims=True)
    rstd = np.mean(xhat * xhat, axis=-1, keepdims=True)
    rstd += EPS
    np.sqrt(rstd, out=rstd)
    np.reciprocal(rstd, out=rstd)
    xhat *= rstd
    h = xhat * g
    h += c
    return h, xhat, rstd


def _layer_norm_back(dh, g, xhat, rstd):
    """The cotangents of g and c, and dh turned in place into x's: rstd (dxhat - mean dxhat - xhat mean(dxhat xhat))."""
    gg = np.einsum("ij,ij->j", dh, xhat)
    gc = dh.sum(axis=0)
    dh *= g
    m1 = dh.mean(axis=-1, keepdims=True)
    m2 = np.einsum("ij,ij->i", dh, xhat)[:, None]
    m2 /= dh.shape[1]
    dh -= m1
    dh -= xhat * m2
    dh *= rstd
    return gg, gc, dh


def make_hand(d: int, heads: int, t: int, b: int):
    """``(hand_forward, hand_grad)`` for one size."""
    dh, n = d // heads, b * t
    scale = 1.0 / math.sqrt(dh)

    def forward(g1, c1, wqkv, wo, g2, c2, w1, b1, w2, b2, wout, x, labels, mask):
        x0 = x.reshape(n, d)
        h1, xhat1, rstd1 = _layer_norm(x0, g1, c1)
        qkv = (h1 @ wqkv).reshape(b, t, 3, heads, dh).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        p = np.matmul(q, k.transpose(0, 1, 3, 2))                     # (b, heads, t, t)
        p *= scale
        np.copyto(p, MASKED, where=~mask)
        p -= p.max(axis=-1, keepdims=True)
        np.exp(p, out=p)
        p /= p.sum(axis=-1, keepdims=True)
        att = np.matmul(p, v).transpose(0, 2, 1, 3).reshape(n, d)        # heads side by side again (one copy)
        x1 = att @ wo
        x1 += x0
        h2, xhat2, rstd2 = _layer_norm(x1, g2, c2)
        u = h2 @ w1
        u += b1
        e = u * SQRT_HALF
        erf(e, out=e)
        e += 1.0
        gl = u * e
        gl *= 0.5
        x2 = gl @ w2
        x2 += b2
        x2 += x1
        z = x2 @ wout
        return (h1, xhat1, rstd1, q, k, v, p, att, xhat2, rstd2, h2, u, e, gl, x2), z

    def log_softmax(z):
        z -= z.max(axis=1, keepdims=True)
        z -= np.log(np.exp(z).sum(axis=1, keepdims=True))
        return z

    def hand_forward(*args):
        _, z = forward(*args)
        return -log_softmax(z)[np.arange(n), args[-2]].mean()

    def hand_grad(g1, c1, wqkv, wo, g2, c2, w1, b1, w2, b2, wout, x, labels, mask):
        """Backprop by hand: softmax minus one-hot, the MLP (GELU' = (1 + erf)/2 + u phi(u)), the second
        norm, the attention (softmax' as p (dp - rowsum(dp p)), masked entries' p being 0), the first norm."""
        (h1, xhat1, rstd1, q, k, v, p, att, xhat2, rstd2, h2, u, e, gl, x2), z = forward(
            g1, c1, wqkv, wo, g2, c2, w1, b1, w2, b2, wout, x, labels, mask)
        dz = log_softmax(z)
        np.exp(dz, out=dz)
        dz[np.arange(n), labels] -= 1.0
        dz /= n
        gwout = x2.T @ dz
        dx = dz @ wout.T                                                 # (n, d): the residual stream's cotangent
        gb2 = dx.sum(axis=0)
        gw2 = gl.T @ dx
        du = dx @ w2.T                                                   # (n, 4d)
        e *= 0.5                                                         # GELU'(u) = (1 + erf)/2 + u phi(u)
        pdf = np.square(u, out=gl)
        pdf *= -0.5
        np.exp(pdf, out=pdf)
        pdf *= GELU_PDF
        pdf *= u
        pdf += e
        du *= pdf
        gb1 = du.sum(axis=0)
        gw1 = h2.T @ du
        dh2 = du @ w1.T
        gg2, gc2, dx1 = _layer_norm_back(dh2, g2, xhat2, rstd2)
        dx1 += dx                                                        # the residual
        gwo = att.T @ dx1
        datt = (dx1 @ wo.T).reshape(b, t, heads, dh).transpose(0, 2, 1, 3)   # (b, heads, t, dh), a view
        dp = np.matmul(datt, v.transpose(0, 1, 3, 2))                     # (b, heads, t, t)
        dqkv = np.empty((b, t, 3, heads, dh))
        parts = dqkv.transpose(2, 0, 3, 1, 4)                              # q, k, v cotangents in place
        np.matmul(p.transpose(0, 1, 3, 2), datt, out=parts[2])
        dp -= np.einsum("bhij,bhij->bhi", dp, p)[..., None]
        dp *= p
        dp *= scale
        np.matmul(dp, k, out=parts[0])
        np.matmul(dp.transpose(0, 1, 3, 2), q, out=parts[1])
        dqkv = dqkv.reshape(n, 3 * d)
        gwqkv = h1.T @ dqkv
        dh1 = dqkv @ wqkv.T
        gg1 = np.einsum("ij,ij->j", dh1, xhat1)
        gc1 = dh1.sum(axis=0)
        return [gg1, gc1, gwqkv, gwo, gg2, gc2, gw1, gb1, gw2, gb2, gwout]

    return hand_forward, hand_grad


@workload("transformer", sizes=SIZES, default=SIZES[1:], check=SIZES[:1], rtol=1e-8, fd_rtol=1e-6,
          doc="d mean next-token cross-entropy / d all weights of one pre-norm transformer block")
def transformer(size: str) -> Problem:
    d, heads, t, b = _dims(size)
    rng = seeded("transformer", size)
    shapes = {"g1": (d,), "c1": (d,), "wqkv": (d, 3 * d), "wo": (d, d), "g2": (d,), "c2": (d,),
              "w1": (d, 4 * d), "b1": (4 * d,), "w2": (4 * d, d), "b2": (d,), "wout": (d, d)}
    args = {}
    for name, shape in shapes.items():
        if name[0] == "w":
            args[name] = rng.standard_normal(shape) / math.sqrt(shape[0])
        else:
            args[name] = (1.0 if name[0] == "g" else 0.0) + 0.1 * rng.standard_normal(shape)
    args["x"] = rng.standard_normal((b, t, d))
    args["labels"] = rng.integers(0, d, b * t)
    args["mask"] = np.tril(np.ones((t, t), dtype=bool))
    hand_forward, hand_grad = make_hand(d, heads, t, b)
    nparams = sum(int(np.prod(s)) for s in shapes.values())
    return Problem(make_fn(d, heads, t, b), args, PARAMS, hand_grad=hand_grad, hand_forward=hand_forward,
                   scale=nparams * b * t, family="pre-norm",
                   label=f"d {d}, {heads} heads, {t} tokens, batch {b}")
