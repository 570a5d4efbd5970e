"""One or more test cases for every op of the op table.

Each case is written against a namespace (``fn(ns, *inputs)``), so the same
case runs on numbers (``common.numeric``), on IR nodes (``common.api.symbolic``)
and on symnum tensors, with a plain-numpy reference (``ref``) as the oracle.
Inputs are drawn away from kinks so that finite differences are valid there.
``test_every_op_has_a_case`` fails when an op is added without a case here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from common.ops import OPS, Kind


@dataclass
class Case:
    op: str
    id: str
    fn: Callable                    # (ns, *inputs) -> output
    ref: Callable                   # (*arrays) -> expected output, plain numpy
    inputs: Callable                # rng -> list of arrays
    wrt: tuple = (0,)               # inputs to differentiate
    second_order: bool = True       # whether gradgradcheck applies


CASES: list[Case] = []

BODIED = frozenset(name for name, op in OPS.items() if op.kind is Kind.CONTROL)
"""Ops that run bodies (scan, while_loop, cond) and item, which reads their tuple value: a case here is a
function of arrays, theirs take subgraphs, so they are checked in tests/test_control_*.py instead."""


def case(op, fn, ref, inputs, wrt=(0,), id=None, second_order=True):
    CASES.append(Case(op, id or op, fn, ref, inputs, tuple(wrt), second_order))


def normal(*shape):
    return lambda rng: [rng.standard_normal(shape)]


def positive(*shape):
    return lambda rng: [rng.uniform(0.5, 2.0, shape)]


def away_from_zero(*shape):
    return lambda rng: [rng.choice([-1.0, 1.0], shape) * rng.uniform(0.3, 2.0, shape)]


def two(shape_a, shape_b, low=None):
    def make(rng):
        if low is None:
            return [rng.standard_normal(shape_a), rng.standard_normal(shape_b)]
        return [rng.uniform(low, low + 1.5, shape_a), rng.uniform(low, low + 1.5, shape_b)]
    return make


def distinct(*shape):
    """Values with no ties, spaced well beyond a finite-difference step."""
    def make(rng):
        n = int(np.prod(shape))
        return [(rng.permutation(n) * 0.37 - n * 0.1).reshape(shape)]
    return make


# --- elementwise, unary
for name, ref, make in [
    ("neg", np.negative, normal(3, 4)),
    ("exp", np.exp, normal(3, 4)),
    ("log", np.log, positive(3, 4)),
    ("log1p", np.log1p, positive(3, 4)),
    ("expm1", np.expm1, normal(3, 4)),
    ("sin", np.sin, normal(3, 4)),
    ("cos", np.cos, normal(3, 4)),
    ("tan", np.tan, lambda rng: [rng.uniform(-1, 1, (3, 4))]),
    ("tanh", np.tanh, normal(3, 4)),
    ("sinh", lambda x: (np.exp(x) - np.exp(-x)) / 2, normal(3, 4)),
    ("cosh", lambda x: (np.exp(x) + np.exp(-x)) / 2, normal(3, 4)),
    ("arcsin", lambda x: np.arctan2(x, np.sqrt(1 - x * x)), lambda rng: [rng.uniform(-0.8, 0.8, (3, 4))]),
    ("arctan", lambda x: np.arctan2(x, np.ones_like(x)), normal(3, 4)),
    ("sigmoid", lambda x: 1 / (1 + np.exp(-x)), normal(3, 4)),
    ("relu", lambda x: np.maximum(x, 0), away_from_zero(3, 4)),
    ("softplus", lambda x: np.log1p(np.exp(x)), normal(3, 4)),
    ("sqrt", np.sqrt, positive(3, 4)),
    ("square", np.square, normal(3, 4)),
    ("abs", np.abs, away_from_zero(3, 4)),
]:
    case(name, (lambda n: lambda ns, x: getattr(ns, n)(x))(name), ref, make)

case("sign", lambda ns, x: ns.sign(x), np.sign, away_from_zero(3, 4), wrt=())
case("cast", lambda ns, x: ns.cast(x, "float32"), lambda x: x.astype(np.float32), normal(3), wrt=())
case("cast", lambda ns, x: ns.cast(ns.cast(x, "float32"), "float64"),
     lambda x: x.astype(np.float32).astype(np.float64), normal(3), id="cast-roundtrip", wrt=())
case("cast", lambda ns, x: ns.cast(x, "float64"), lambda x: x.astype(np.float64), normal(3), id="cast-same-dtype")
case("stop_gradient", lambda ns, x: ns.stop_gradient(x), lambda x: x, normal(3), wrt=())

# --- elementwise, binary (broadcasting included)
for name, ref in [("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.divide)]:
    fn = (lambda n: lambda ns, x, y: getattr(ns, n)(x, y))(name)
    case(name, fn, ref, two((3, 4), (3, 4), low=0.5), wrt=(0, 1))
    case(name, fn, ref, two((2, 3, 4), (3, 1), low=0.5), wrt=(0, 1), id=f"{name}-broadcast")
    case(name, fn, ref, two((4,), ()), wrt=(0, 1), id=f"{name}-scalar") if name != "div" else None
case("pow", lambda ns, x, y: ns.pow(x, y), np.power, two((3, 4), (4,), low=0.5), wrt=(0, 1))
case("pow", lambda ns, x: x ** 3, lambda x: x ** 3, normal(5), id="pow-int-exponent")
for name, ref in [("maximum", np.maximum), ("minimum", np.minimum)]:
    fn = (lambda n: lambda ns, x, y: getattr(ns, n)(x, y))(name)
    case(name, fn, ref, lambda rng: [rng.standard_normal((3, 4)), rng.standard_normal((3, 4)) + 0.05], wrt=(0, 1))
    case(name, fn, ref, lambda rng: [rng.standard_normal((2, 4)), rng.standard_normal((4,)) + 0.05],
         wrt=(0, 1), id=f"{name}-broadcast")
for name, ref in [("lt", np.less), ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal),
                  ("eq", np.equal), ("ne", np.not_equal)]:
    case(name, (lambda n: lambda ns, x, y: getattr(ns, n)(x, y))(name), ref,
         lambda rng: [np.round(rng.standard_normal((3, 4))), np.round(rng.standard_normal((4,)))], wrt=())
case("where", lambda ns, x, y: ns.where(ns.gt(x, 0), x, y), lambda x, y: np.where(x > 0, x, y),
     lambda rng: [rng.choice([-1.0, 1.0], (3, 4)) * rng.uniform(0.3, 1, (3, 4)), rng.standard_normal((4,))],
     wrt=(0, 1))

# --- reductions
for name, ref, make in [("sum", np.sum, normal(2, 3, 4)), ("mean", np.mean, normal(2, 3, 4)),
                        ("max", np.max, distinct(2, 3, 4)), ("min", np.min, distinct(2, 3, 4)),
                        ("prod", np.prod, positive(2, 3, 4))]:
    case(name, (lambda n: lambda ns, x: getattr(ns, n)(x))(name), ref, make, id=f"{name}-all")
    case(name, (lambda n: lambda ns, x: getattr(ns, n)(x, axis=1))(name),
         (lambda r: lambda x: r(x, axis=1))(ref), make, id=f"{name}-axis")
    case(name, (lambda n: lambda ns, x: getattr(ns, n)(x, axis=(0, 2), keepdims=True))(name),
         (lambda r: lambda x: r(x, axis=(0, 2), keepdims=True))(ref), make, id=f"{name}-keepdims")
case("prod", lambda ns, x: ns.prod(x, axis=1),
     lambda x: np.prod(x, axis=1), lambda rng: [np.array([[0.0, 2.0, 3.0], [1.5, 0.5, 2.0]])],
     id="prod-with-zero")
case("logsumexp", lambda ns, x: ns.logsumexp(x, axis=-1),
     lambda x: np.log(np.sum(np.exp(x), axis=-1)), normal(3, 4))
case("logsumexp", lambda ns, x: ns.logsumexp(x, axis=None, keepdims=True),
     lambda x: np.log(np.sum(np.exp(x), keepdims=True)), normal(3, 4), id="logsumexp-all")
case("count", lambda ns, x: ns.count(x, axis=(0, 2)), lambda x: np.float64(x.shape[0] * x.shape[2]),
     normal(2, 3, 4), wrt=())

# --- linear algebra
for sa, sb in [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
               ((2, 1, 3, 4), (5, 4, 2))]:
    case("matmul", lambda ns, a, b: ns.matmul(a, b), np.matmul, two(sa, sb), wrt=(0, 1),
         id=f"matmul-{len(sa)}d-{len(sb)}d-{sa[0]}")
case("einsum", lambda ns, a, b: ns.einsum("ij,jk->ik", a, b), lambda a, b: np.einsum("ij,jk->ik", a, b),
     two((3, 4), (4, 5)), wrt=(0, 1))
case("einsum", lambda ns, a, b: ns.einsum("bij,j->bi", a, b), lambda a, b: np.einsum("bij,j->bi", a, b),
     two((2, 3, 4), (4,)), wrt=(0, 1), id="einsum-batched")
case("einsum", lambda ns, a, b: ns.einsum("...ij,jk", a, b), lambda a, b: np.einsum("...ij,jk", a, b),
     two((2, 3, 4), (4, 5)), wrt=(0, 1), id="einsum-ellipsis-implicit")
case("einsum", lambda ns, a: ns.einsum("ij->", a), lambda a: np.einsum("ij->", a), normal(3, 4),
     id="einsum-total")
case("transpose", lambda ns, x: ns.transpose(x), np.transpose, normal(2, 3, 4))
case("transpose", lambda ns, x: ns.transpose(x, (1, 2, 0)), lambda x: np.transpose(x, (1, 2, 0)),
     normal(2, 3, 4), id="transpose-perm")

# --- shape
case("reshape", lambda ns, x: ns.reshape(x, (4, -1)), lambda x: x.reshape(4, -1), normal(2, 3, 4))
case("reshape_like", lambda ns, x, r: ns.reshape_like(x, r), lambda x, r: x.reshape(r.shape),
     two((2, 6), (3, 4)))
case("broadcast_to", lambda ns, x: ns.broadcast_to(x, (2, 3, 4)),
     lambda x: np.broadcast_to(x, (2, 3, 4)), normal(3, 1))
case("broadcast_like", lambda ns, x, r: ns.broadcast_like(x, r),
     lambda x, r: np.broadcast_to(x, r.shape), two((3, 1), (2, 3, 4)))
case("sum_to", lambda ns, x: ns.sum_to(x, (3, 1)), lambda x: x.sum(axis=(0, 2)).reshape(3, 1), normal(2, 3, 4))
case("sum_like", lambda ns, x, r: ns.sum_like(x, r), lambda x, r: x.sum(axis=(0, 2)).reshape(3, 1),
     two((2, 3, 4), (3, 1)))
case("expand_dims", lambda ns, x: ns.expand_dims(x, (0, -1)), lambda x: np.expand_dims(x, (0, -1)),
     normal(3, 4))
case("squeeze", lambda ns, x: ns.squeeze(x, 1), lambda x: np.squeeze(x, 1), normal(3, 1, 4))
case("squeeze", lambda ns, x: ns.squeeze(x), lambda x: np.squeeze(x), normal(1, 3, 1), id="squeeze-all")
case("getitem", lambda ns, x: x[1, 1:3], lambda x: x[1, 1:3], normal(3, 4))
case("getitem", lambda ns, x: x[None, ..., ::-2], lambda x: x[None, ..., ::-2], normal(2, 3, 4),
     id="getitem-none-ellipsis-step")
case("getitem", lambda ns, x: x[np.array([0, 2, 0]), 1:], lambda x: x[np.array([0, 2, 0]), 1:],
     normal(3, 4), id="getitem-array-repeated")
case("getitem", lambda ns, x: x[:, np.array([[0, 1], [2, 0]]), np.array([1, 0])],
     lambda x: x[:, np.array([[0, 1], [2, 0]]), np.array([1, 0])], normal(2, 3, 4), id="getitem-arrays-broadcast")
case("getitem", lambda ns, x: x[np.array([0, 1]), :, np.array([2, 3])],
     lambda x: x[np.array([0, 1]), :, np.array([2, 3])], normal(2, 3, 4), id="getitem-arrays-separated")


def _scatter_ref(g, like):
    out = np.zeros_like(like)
    np.add.at(out, np.array([0, 2, 0]), g)
    return out


case("scatter_add", lambda ns, g, like: ns.scatter_add(g, like, np.array([0, 2, 0]), index=(("array", 0),)),
     _scatter_ref, two((3, 4), (3, 4)))
case("concatenate", lambda ns, a, b: ns.concatenate([a, b], axis=1),
     lambda a, b: np.concatenate([a, b], axis=1), two((2, 3), (2, 5)), wrt=(0, 1))
case("concat_part", lambda ns, g, a, b: ns.concat_part(g, a, b, axis=1, part=1),
     lambda g, a, b: g[:, 3:], lambda rng: [rng.standard_normal((2, 8)), np.zeros((2, 3)), np.zeros((2, 5))])
case("stack", lambda ns, a, b: ns.stack([a, b], axis=1), lambda a, b: np.stack([a, b], axis=1),
     two((2, 3), (2, 3)), wrt=(0, 1))
case("tril", lambda ns, x: ns.tril(x), np.tril, normal(4, 4))
case("triu", lambda ns, x: ns.triu(x, 1), lambda x: np.triu(x, 1), normal(2, 3, 4))
case("zeros_like", lambda ns, x: ns.zeros_like(x), np.zeros_like, normal(3), wrt=())
case("ones_like", lambda ns, x: ns.ones_like(x), np.ones_like, normal(3), wrt=())
case("full_like", lambda ns, x: ns.full_like(x, 2.5), lambda x: np.full_like(x, 2.5), normal(3), wrt=())
case("full", lambda ns: ns.full((2, 3), 1.5), lambda: np.full((2, 3), 1.5), lambda rng: [], wrt=())

# --- nn
case("softmax", lambda ns, x: ns.softmax(x, axis=-1),
     lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True), normal(3, 4))
case("log_softmax", lambda ns, x: ns.log_softmax(x, axis=0),
     lambda x: x - np.log(np.exp(x).sum(0, keepdims=True)), normal(3, 4))


def _xent_ref(z, t):
    return -np.sum(t * (z - np.log(np.exp(z).sum(-1, keepdims=True))), axis=-1)


def _xent_inputs(rng):
    t = rng.uniform(0.1, 1, (3, 4))
    return [rng.standard_normal((3, 4)), t / t.sum(-1, keepdims=True)]


case("softmax_cross_entropy", lambda ns, z, t: ns.softmax_cross_entropy(z, t), _xent_ref, _xent_inputs,
     wrt=(0, 1))
# targets that are not probabilities: dL/dz = softmax(z) * sum(t) - t, a factor that is 1 on the case above
case("softmax_cross_entropy", lambda ns, z, t: ns.softmax_cross_entropy(z, t), _xent_ref, two((3, 4), (3, 4), low=0.1),
     wrt=(0, 1), id="softmax_cross_entropy-unnormalised")


# --- numpy's functions: elementwise, scans, order, and those composed from ops
import math  # noqa: E402

from common.ops import composed as F  # noqa: E402

for name, ref, make in [
    ("arccos", lambda x: np.pi / 2 - np.arctan2(x, np.sqrt(1 - x * x)), lambda rng: [rng.uniform(-0.8, 0.8, (3, 4))]),
    ("arcsinh", lambda x: np.log(x + np.sqrt(x * x + 1)), normal(3, 4)),
    ("arccosh", lambda x: np.log(x + np.sqrt(x * x - 1)), lambda rng: [rng.uniform(1.2, 3.0, (3, 4))]),
    ("arctanh", lambda x: 0.5 * np.log((1 + x) / (1 - x)), lambda rng: [rng.uniform(-0.8, 0.8, (3, 4))]),
    ("erf", np.vectorize(math.erf), normal(3, 4)),
    ("erfc", np.vectorize(math.erfc), normal(3, 4)),
]:
    case(name, (lambda n: lambda ns, x: getattr(ns, n)(x))(name), ref, make)
case("logaddexp", lambda ns, x, y: ns.logaddexp(x, y), lambda x, y: np.log(np.exp(x) + np.exp(y)),
     two((3, 4), (4,)), wrt=(0, 1))
case("arctan2", lambda ns, y, x: ns.arctan2(y, x), lambda y, x: 2 * np.arctan(y / (np.sqrt(x * x + y * y) + x)),
     lambda rng: [rng.standard_normal((3, 4)), rng.uniform(0.3, 2.0, (4,))], wrt=(0, 1))
case("hypot", lambda ns, x, y: ns.hypot(x, y), lambda x, y: np.sqrt(x * x + y * y), two((3, 4), (3, 1), low=0.5),
     wrt=(0, 1))


def _clip_inputs(rng):
    """x away from the bounds (inside and beyond both), bounds near -0.5 and 0.5."""
    x = rng.choice([-1.0, 1.0], (3, 4)) * rng.choice([0.1, 0.25, 0.8, 1.3], (3, 4)) + rng.uniform(-0.05, 0.05, (3, 4))
    return [x, rng.uniform(-0.55, -0.45, (4,)), rng.uniform(0.45, 0.55, (3, 1))]


case("clip", lambda ns, x, lo, hi: ns.clip(x, lo, hi), lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
     _clip_inputs, wrt=(0, 1, 2))
case("clip", lambda ns, x: ns.clip(x, None, 0.5), lambda x: np.minimum(x, 0.5), lambda rng: _clip_inputs(rng)[:1],
     id="clip-upper-only")
case("cumsum", lambda ns, x: ns.cumsum(x, axis=1), lambda x: np.add.accumulate(x, axis=1), normal(2, 3, 4))
case("cumsum", lambda ns, x: ns.cumsum(x), lambda x: np.add.accumulate(x.reshape(-1)), normal(3, 4),
     id="cumsum-flat")
case("cumprod", lambda ns, x: ns.cumprod(x, axis=-1), lambda x: np.multiply.accumulate(x, axis=-1),
     lambda rng: [rng.uniform(0.5, 1.5, (3, 4)) * rng.choice([-1.0, 1.0], (3, 4))])
case("cumprod", lambda ns, x: ns.cumprod(x, axis=1), lambda x: np.multiply.accumulate(x, axis=1),
     lambda rng: [np.array([[0.0, 2.0, 3.0, 0.5], [1.5, 0.0, 2.0, 0.0], [1.2, 0.8, -1.1, 0.0]])],
     id="cumprod-with-zeros")
case("logcumsumexp", lambda ns, x: ns.logcumsumexp(x, axis=0), lambda x: np.log(np.cumsum(np.exp(x), axis=0)),
     normal(4, 3))
case("logcumsumexp", lambda ns, x: ns.logcumsumexp(x), lambda x: np.log(np.cumsum(np.exp(x.reshape(-1)))),
     normal(2, 3), id="logcumsumexp-flat")
case("argsort", lambda ns, x: ns.argsort(x), lambda x: np.argsort(x, kind="stable"), distinct(3, 4), wrt=())
case("argsort", lambda ns, x: ns.argsort(x, axis=None), lambda x: np.argsort(x, axis=None, kind="stable"),
     lambda rng: [np.round(rng.standard_normal((3, 4)))], wrt=(), id="argsort-flat-ties")
case("argmax", lambda ns, x: ns.argmax(x, axis=1), lambda x: np.argmax(x, axis=1), distinct(3, 4), wrt=())
case("argmax", lambda ns, x: ns.argmax(x), np.argmax, distinct(3, 4), wrt=(), id="argmax-flat")
case("argmin", lambda ns, x: ns.argmin(x, axis=0, keepdims=True), lambda x: np.argmin(x, axis=0, keepdims=True),
     distinct(3, 4), wrt=())
case("getitem", lambda ns, x: F.sort(ns, x, axis=0), lambda x: np.sort(x, axis=0), distinct(3, 4), id="sort")
case("getitem", lambda ns, x: F.topk(ns, x, 2)[0], lambda x: -np.sort(-x, axis=-1)[:, :2], distinct(3, 4),
     id="topk")
case("getitem", lambda ns, x: F.take(ns, x, np.array([[2, 0], [1, 2]]), axis=1),
     lambda x: x[:, np.array([[2, 0], [1, 2]])], normal(2, 3), id="take")
case("getitem", lambda ns, x: F.take(ns, x, np.array([5, 0, 5])), lambda x: x.reshape(-1)[[5, 0, 5]],
     normal(2, 3), id="take-flat")
case("getitem", lambda ns, x: F.take_along_axis(ns, x, np.array([[0, 2, 2], [1, 1, 0]]), axis=1),
     lambda x: np.array([[x[0, 0], x[0, 2], x[0, 2]], [x[1, 1], x[1, 1], x[1, 0]]]), normal(2, 3),
     id="take_along_axis")
case("sum", lambda ns, x: F.var(ns, x, axis=1, ddof=1),
     lambda x: ((x - x.mean(1, keepdims=True)) ** 2).sum(1) / (x.shape[1] - 1), normal(3, 5), id="var")
case("sqrt", lambda ns, x: F.std(ns, x), lambda x: np.sqrt(((x - x.mean()) ** 2).mean()), normal(3, 4), id="std")
case("getitem", lambda ns, x: F.flip(ns, x, axis=(0, 2)), lambda x: x[::-1, :, ::-1], normal(2, 3, 4), id="flip")
case("concatenate", lambda ns, x: F.roll(ns, x, (1, -2), axis=(0, 1)),
     lambda x: np.concatenate([x[-1:], x[:-1]], 0)[:, [2, 3, 0, 1]], normal(3, 4), id="roll")
case("broadcast_to", lambda ns, x: F.repeat(ns, x, 2, axis=0), lambda x: x[[0, 0, 1, 1]], normal(2, 3),
     id="repeat")
case("getitem", lambda ns, x: F.repeat(ns, x, [2, 0, 1], axis=1), lambda x: x[:, [0, 0, 2]], normal(2, 3),
     id="repeat-counts")
case("broadcast_to", lambda ns, x: F.tile(ns, x, (2, 1, 2)),
     lambda x: np.concatenate([np.concatenate([x, x], 1)[None]] * 2, 0), normal(2, 3), id="tile")
case("getitem", lambda ns, x: (lambda p: p[0] * p[2] + p[1])(F.split(ns, x, 3, axis=1)),
     lambda x: x[:, 0:2] * x[:, 4:6] + x[:, 2:4], normal(2, 6), id="split")
case("concatenate", lambda ns, x: F.pad(ns, x, ((1, 0), (2, 1)), constant_values=1.5),
     lambda x: np.block([[np.full((1, 7), 1.5)], [np.full((3, 2), 1.5), x, np.full((3, 1), 1.5)]]), normal(3, 4),
     id="pad")


def _at_add_ref(x, v):
    out = x.copy()
    np.add.at(out, (np.array([2, 0, 2]), slice(1, None)), v)
    return out


case("scatter_add", lambda ns, x, v: F.At(x, ns)[np.array([2, 0, 2]), 1:].add(v), _at_add_ref,
     two((3, 4), (3,)), wrt=(0, 1), id="at-add")
case("where", lambda ns, x, v: F.At(x, ns)[np.array([2, 0]), 1:].set(v),
     lambda x, v: np.concatenate([x[:, :1], np.where(np.array([[1], [0], [1]]) == 1, v[[1, 0, 0]], x[:, 1:])], 1),
     two((3, 4), (2, 3)), wrt=(0, 1), id="at-set")
_LABELS = np.array([3, 0, 1])


def _sparse_xent_ref(z, axis=-1):
    z = np.moveaxis(z, axis, -1)
    return np.log(np.exp(z).sum(-1)) - z[np.arange(3), _LABELS]


case("sparse_softmax_cross_entropy", lambda ns, z: ns.sparse_softmax_cross_entropy(z, _LABELS), _sparse_xent_ref,
     normal(3, 4))
case("sparse_softmax_cross_entropy", lambda ns, z: F.softmax_cross_entropy(ns, z, _LABELS, axis=0),
     lambda z: _sparse_xent_ref(z, 0), normal(4, 3), id="softmax_cross_entropy-labels")


def _cumprod_grad_ref(g, x):
    """sum_{j >= i} g_j prod_{l <= j, l != i} x_l, term by term (rows along axis 1)."""
    out = np.zeros_like(x)
    for r in range(x.shape[0]):
        for i in range(x.shape[1]):
            out[r, i] = sum(g[r, j] * np.prod(np.delete(x[r, :j + 1], i)) for j in range(i, x.shape[1]))
    return out


case("cumprod_grad", lambda ns, g, x: ns.cumprod_grad(g, x, axis=1), _cumprod_grad_ref,
     lambda rng: [rng.standard_normal((3, 4)), np.array([[0.0, 2.0, 3.0, 0.5], [1.5, 0.0, 2.0, 0.0],
                                                         [1.2, 0.8, -1.1, 0.9]])], wrt=(0, 1))
