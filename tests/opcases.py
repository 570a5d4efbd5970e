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

from common import evaluate
from common.graph import inputs_of
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


def input_values(node, feed: dict) -> tuple:
    """The values of ``node``'s inputs, from the part of ``feed`` they depend on (a mask's coordinates
    read only the mask, not the array it indexes)."""
    if not node.inputs:
        return ()
    needed = set(inputs_of(list(node.inputs)))
    return tuple(evaluate(list(node.inputs), {x: a for x, a in feed.items() if x in needed}))


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


def half_positive(*shape):
    """Values of either sign, half of them positive wherever drawn: a mask ``x > 0`` of the same count in every
    draw, so that draws stack into a batch (a batch of masks of different counts is ragged)."""
    def make(rng):
        n = int(np.prod(shape))
        signs = rng.permutation(np.repeat([-1.0, 1.0], [n - n // 2, n // 2]))
        return [(signs * rng.uniform(0.3, 2.0, n)).reshape(shape)]
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
_MASK = np.array([[True, False, True], [False, False, True]])
case("getitem", lambda ns, x: x[_MASK], lambda x: x[_MASK], normal(2, 3, 4), id="getitem-mask-leading")
case("getitem", lambda ns, x: x[:, _MASK[1]], lambda x: x[:, _MASK[1]], normal(2, 3, 4), id="getitem-mask-after-slice")



case("getitem", lambda ns, x, m: x[m > 0], lambda x, m: x[m > 0],
     lambda rng: normal(3, 4)(rng) + half_positive(3, 4)(rng), id="getitem-mask-computed")
case("argwhere", lambda ns, x: ns.argwhere(x > 0), lambda x: np.argwhere(x > 0), half_positive(3, 4), wrt=())
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


# --- linear algebra: solves, factorisations (each matrix drawn well conditioned, its spectrum well spread)

def _conditioned(*shape):
    """Square matrices away from singular: noise plus 3 I."""
    return lambda rng: [rng.standard_normal(shape) * 0.5 + 3 * np.eye(shape[-1])]


def _with_rhs(shape_a, shape_b):
    return lambda rng: [rng.standard_normal(shape_a) * 0.5 + 3 * np.eye(shape_a[-1]), rng.standard_normal(shape_b)]


def _spread(*shape):
    """Matrices whose eigenvalues (of the symmetric part) or singular values are far apart: a spread
    diagonal plus small noise, so the vectors' gradients are well defined."""
    def make(rng):
        m, n = shape[-2:]
        base = np.zeros((m, n))
        k = min(m, n)
        base[range(k), range(k)] = np.arange(1, k + 1) * 1.5
        return [base + 0.2 * rng.standard_normal(shape)]
    return make


def _sym_ref(x):
    return (x + np.swapaxes(x, -1, -2)) / 2


def _sym(ns, x):
    return (x + ns.transpose(x, _last_swap(x))) / 2


def _last_swap(x):
    perm = list(range(x.ndim))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return tuple(perm)


def _spd_ref(x):
    return x @ np.swapaxes(x, -1, -2)


def _spd(ns, x):
    """x x^T: positive definite, and well conditioned for a well-conditioned x."""
    return ns.matmul(x, ns.transpose(x, _last_swap(x)))


case("solve", lambda ns, a, b: ns.solve(a, b), np.linalg.solve, _with_rhs((3, 3), (3, 2)), wrt=(0, 1))
case("solve", lambda ns, a, b: ns.solve(a, b), np.linalg.solve, _with_rhs((3, 3), (3,)), wrt=(0, 1),
     id="solve-vector")
case("solve", lambda ns, a, b: ns.solve(a, b), np.linalg.solve, _with_rhs((2, 3, 3), (3, 2)), wrt=(0, 1),
     id="solve-batched")


def _tri_ref(lower):
    import scipy.linalg

    def ref(a, b):
        return scipy.linalg.solve_triangular(a, b, lower=lower)
    return ref


case("solve_triangular", lambda ns, a, b: ns.solve_triangular(a, b, lower=True), _tri_ref(True),
     _with_rhs((3, 3), (3, 2)), wrt=(0, 1))
case("solve_triangular", lambda ns, a, b: ns.solve_triangular(a, b, lower=False), _tri_ref(False),
     _with_rhs((3, 3), (3,)), wrt=(0, 1), id="solve_triangular-upper-vector")
case("solve_triangular", lambda ns, a, b: ns.solve_triangular(a, b, lower=True),
     lambda a, b: np.stack([_tri_ref(True)(a[i], b) for i in range(2)]), _with_rhs((2, 3, 3), (3, 2)), wrt=(0, 1),
     id="solve_triangular-batched")
case("cholesky", lambda ns, x: ns.cholesky(_spd(ns, x)), lambda x: np.linalg.cholesky(_spd_ref(x)),
     _conditioned(3, 3))
case("cholesky", lambda ns, x: ns.cholesky(_spd(ns, x)), lambda x: np.linalg.cholesky(_spd_ref(x)),
     _conditioned(2, 3, 3),
     id="cholesky-batched")


def _cholesky_grad_ref(lower, g):
    """a's cotangent entry by entry, <g, dL(E_ij)>, from the tangent dL = L Phi(L^-1 sym(E) L^-T) of each
    basis direction E_ij (the JVP's formula, itself checked against finite differences)."""
    n = lower.shape[-1]
    if lower.ndim > 2:
        return np.stack([_cholesky_grad_ref(li, gi) for li, gi in zip(lower, g)])
    ell = np.tril(lower)
    inv = np.linalg.inv(ell)
    out = np.empty((n, n))
    for i in range(n):
        for j in range(n):
            e = np.zeros((n, n))
            e[i, j] += 0.5
            e[j, i] += 0.5
            z = inv @ e @ inv.T
            dl = ell @ (np.tril(z) - np.diag(np.diag(z)) / 2)
            out[i, j] = np.sum(g * dl)
    return out


def _factor_and_cotangent(*shape):
    """A lower-triangular factor away from singular (noise in its lower triangle, 3 on its diagonal) and a
    cotangent (its upper triangle is never read)."""
    return lambda rng: [np.tril(rng.standard_normal(shape)) * 0.5 + 3 * np.eye(shape[-1]), rng.standard_normal(shape)]


case("cholesky_grad", lambda ns, lower, g: ns.cholesky_grad(lower, g), _cholesky_grad_ref,
     _factor_and_cotangent(3, 3), wrt=(0, 1))
case("cholesky_grad", lambda ns, lower, g: ns.cholesky_grad(lower, g), _cholesky_grad_ref,
     _factor_and_cotangent(2, 3, 3), wrt=(0, 1), id="cholesky_grad-batched")
case("inv", lambda ns, a: ns.inv(a), np.linalg.inv, _conditioned(3, 3))
case("inv", lambda ns, a: ns.inv(a), np.linalg.inv, _conditioned(2, 3, 3), id="inv-batched")
case("det", lambda ns, a: ns.det(a), np.linalg.det, _conditioned(3, 3))
case("det", lambda ns, a: ns.det(a), np.linalg.det, _conditioned(2, 3, 3), id="det-batched")
case("slogdet_logabs", lambda ns, a: ns.slogdet_logabs(a), lambda a: np.linalg.slogdet(a)[1],
     lambda rng: [rng.standard_normal((2, 3, 3))])
case("slogdet_sign", lambda ns, a: ns.slogdet_sign(a), lambda a: np.linalg.slogdet(a)[0],
     lambda rng: [rng.standard_normal((2, 3, 3))], wrt=())
case("eigh_w", lambda ns, x: ns.eigh_w(_sym(ns, x)), lambda x: np.linalg.eigh(_sym_ref(x))[0], _spread(3, 3))
case("eigh_w", lambda ns, x: ns.eigh_w(_sym(ns, x)), lambda x: np.linalg.eigh(_sym_ref(x))[0], _spread(2, 3, 3),
     id="eigh_w-batched")
case("eigh_v", lambda ns, x: ns.eigh_v(_sym(ns, x)) ** 2, lambda x: np.linalg.eigh(_sym_ref(x))[1] ** 2,
     _spread(3, 3))
case("svd_s", lambda ns, x: ns.svd_s(x, full_matrices=False), lambda x: np.linalg.svd(x)[1], _spread(4, 3))
case("svd_s", lambda ns, x: ns.svd_s(x, full_matrices=False), lambda x: np.linalg.svd(x)[1], _spread(2, 3, 4),
     id="svd_s-wide-batched")
case("svd_u", lambda ns, x: ns.svd_u(x, full_matrices=False) ** 2,
     lambda x: np.linalg.svd(x, full_matrices=False)[0] ** 2, _spread(4, 3))
case("svd_vh", lambda ns, x: ns.svd_vh(x, full_matrices=False) ** 2,
     lambda x: np.linalg.svd(x, full_matrices=False)[2] ** 2, _spread(4, 3))
case("svd_u", lambda ns, x: ns.svd_u(x, full_matrices=False) ** 2,
     lambda x: np.linalg.svd(x, full_matrices=False)[0] ** 2, _spread(3, 4), id="svd_u-wide")
case("svd_vh", lambda ns, x: ns.svd_vh(x, full_matrices=False) ** 2,
     lambda x: np.linalg.svd(x, full_matrices=False)[2] ** 2, _spread(3, 4), id="svd_vh-wide")
case("qr_q", lambda ns, x: ns.qr_q(x), lambda x: np.linalg.qr(x)[0], _spread(4, 3))
case("qr_r", lambda ns, x: ns.qr_r(x), lambda x: np.linalg.qr(x)[1], _spread(4, 3))
case("qr_r", lambda ns, x: ns.qr_r(x), lambda x: np.linalg.qr(x)[1], _spread(2, 3, 3), id="qr_r-batched")


# --- convolution and pooling, against sums written out offset by offset (windows: position by position)

def _padded(x, padding, fill=0.0):
    return np.pad(x, ((0, 0),) * (x.ndim - len(padding)) + tuple((p, p) for p in padding), constant_values=fill)


def _taps(size, stride, dilation, off):
    """The input positions that kernel offset ``off`` meets, one slice per spatial dim."""
    return tuple(slice(q * dl, q * dl + (m - 1) * st + 1, st) for m, st, dl, q in zip(size, stride, dilation, off))


def _groups(channels, groups):
    step = channels // groups
    return [slice(k * step, (k + 1) * step) for k in range(groups)]


def _conv_ref(x, w, stride, padding, dilation, groups):
    """out[n, o, pos]: the sum over offsets and the group's channels c of xp[n, c, pos*st + off*dl] w[o, c, off]."""
    xp = _padded(x, padding)
    k = w.shape[2:]
    size = [(s - dl * (kk - 1) - 1) // st + 1 for s, kk, st, dl in zip(xp.shape[2:], k, stride, dilation)]
    out = np.zeros((x.shape[0], w.shape[0], *size))
    for off in np.ndindex(*k):
        taps = xp[(slice(None), slice(None)) + _taps(size, stride, dilation, off)]
        for gi, go in zip(_groups(x.shape[1], groups), _groups(w.shape[0], groups)):
            out[:, go] += np.einsum("nc...,oc->no...", taps[:, gi], w[(go, slice(None)) + off])
    return out


def _conv_transpose_ref(g, w, size, stride, padding, dilation, groups):
    """The adjoint of ``_conv_ref`` in x: each output gradient spread back over the taps it read."""
    cg = w.shape[1]
    xp = np.zeros((g.shape[0], cg * groups, *(s + 2 * p for s, p in zip(size, padding))))
    for off in np.ndindex(*w.shape[2:]):
        at = (slice(None),) + _taps(g.shape[2:], stride, dilation, off)
        for gi, go in zip(_groups(cg * groups, groups), _groups(w.shape[0], groups)):
            xp[(slice(None), gi) + at[1:]] += np.einsum("no...,oc->nc...", g[:, go], w[(go, slice(None)) + off])
    return xp[(slice(None), slice(None)) + tuple(slice(p, p + s) for p, s in zip(padding, size))]


def _conv_weight_ref(x, g, ksize, stride, padding, dilation, groups):
    """The adjoint of ``_conv_ref`` in w: each offset's taps against the output gradient."""
    xp = _padded(x, padding)
    o = g.shape[1]
    out = np.zeros((o, x.shape[1] // groups, *ksize))
    for off in np.ndindex(*ksize):
        taps = xp[(slice(None), slice(None)) + _taps(g.shape[2:], stride, dilation, off)]
        for gi, go in zip(_groups(x.shape[1], groups), _groups(o, groups)):
            summed = [0, *range(2, g.ndim)]  # the batch and every position
            out[(go, slice(None)) + off] = np.tensordot(g[:, go], taps[:, gi], axes=(summed, summed))
    return out


def _windows_ref(x, ksize, stride, padding, fill):
    xp = _padded(x, padding, fill)
    size = [(s - kk) // st + 1 for s, kk, st in zip(xp.shape[-2:], ksize, stride)]
    out = np.zeros((*x.shape[:-2], *size, *ksize))
    for i, j in np.ndindex(*size):
        out[..., i, j, :, :] = xp[..., i * stride[0]:i * stride[0] + ksize[0], j * stride[1]:j * stride[1] + ksize[1]]
    return out


_C2 = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
case("conv", lambda ns, x, w: ns.conv(x, w, **_C2), lambda x, w: _conv_ref(x, w, **_C2),
     two((2, 4, 5, 6), (6, 2, 3, 2)), wrt=(0, 1), id="conv-2d-groups")
case("conv", lambda ns, x, w: ns.conv(x, w, stride=2, padding=1, dilation=2),
     lambda x, w: _conv_ref(x, w, (2,), (1,), (2,), 1), two((2, 3, 9), (4, 3, 3)), wrt=(0, 1), id="conv-1d")
_T2 = dict(size=(5, 6), **_C2)
case("conv_transpose", lambda ns, g, w: ns.conv_transpose(g, w, **_T2), lambda g, w: _conv_transpose_ref(g, w, **_T2),
     two((2, 6, 3, 4), (6, 2, 3, 2)), wrt=(0, 1))
_W2 = dict(ksize=(3, 2), **_C2)
case("conv_weight", lambda ns, x, g: ns.conv_weight(x, g, **_W2), lambda x, g: _conv_weight_ref(x, g, **_W2),
     two((2, 4, 5, 6), (2, 6, 3, 4)), wrt=(0, 1))
case("windows", lambda ns, x: ns.max(ns.windows(x, (2, 3), (2, 2), (0, 1), 1), axis=(-2, -1)),
     lambda x: _windows_ref(x, (2, 3), (2, 2), (0, 1), 0.0).max(axis=(-2, -1)), distinct(2, 3, 5, 6),
     id="windows-max-pool")
case("windows", lambda ns, x: ns.windows(x, (3, 3), (2, 1), (1, 1), 1),
     lambda x: _windows_ref(x, (3, 3), (2, 1), (1, 1), 0.0), normal(2, 5, 4))


def _unwindows_ref(g, size, ksize, stride, padding):
    out_sp = g.shape[-4:-2]
    xp = np.zeros((*g.shape[:-4], *(s + 2 * p for s, p in zip(size, padding))))
    for i, j in np.ndindex(*out_sp):
        xp[..., i * stride[0]:i * stride[0] + ksize[0], j * stride[1]:j * stride[1] + ksize[1]] += g[..., i, j, :, :]
    return xp[..., padding[0]:padding[0] + size[0], padding[1]:padding[1] + size[1]]


case("unwindows", lambda ns, g: ns.unwindows(g, (5, 4), (3, 3), (2, 1), (1, 1), 1),
     lambda g: _unwindows_ref(g, (5, 4), (3, 3), (2, 1), (1, 1)), normal(2, 3, 4, 3, 3))
