"""Derivatives of an op case's plain-numpy reference, and the checks of symnum against them.

The reference (``case.ref``) is numpy code no rule touches, so its finite
differences are the oracle for every rule: first derivatives by central
differences, Hessian-vector products (mixed ones included: the direction spans
every differentiated input at once) by second differences. The checks here
run symnum's tape (reverse mode, and reverse over reverse for ``H v``) and its
dual numbers (forward mode, and ``jvp`` of ``grad``) against them, each
raising AssertionError on a mismatch; ``tests/test_rule_mutants.py`` asserts
that a corrupted rule makes at least one of them fail. symsym's and PyTorch's
tests use the same references and the tape's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import symnum as S
from benchmarks.finite import central_differences
from symnum import engine

EPS = 1e-6
"""Step of a first difference: its rounding error is about ulp * |f| / EPS."""

EPS2 = 1e-4
"""Step of a second difference: its rounding error grows as ulp * |f| / EPS2**2."""


@dataclass
class Point:
    """A case at one point: float64 inputs, random output weights ``w`` and directions ``vs`` (one
    per differentiated input), so that every derivative is of the scalar ``sum(w * f(x))``."""

    case: object
    arrays: list
    weights: np.ndarray
    vs: list

    @property
    def wrt(self) -> tuple:
        return self.case.wrt

    def cost(self, arrays) -> float:
        return float(np.sum(np.asarray(self.case.ref(*arrays), dtype=np.float64) * self.weights))


def point(case, seed: int = 0) -> Point:
    """The case's inputs drawn from ``seed``, with weights and directions drawn after them."""
    rng = np.random.default_rng(seed)
    arrays = [np.asarray(a, dtype=np.float64) if np.asarray(a).dtype.kind == "f" else np.asarray(a)
              for a in case.inputs(rng)]
    weights = rng.standard_normal(np.shape(case.ref(*arrays)))
    vs = [rng.standard_normal(arrays[k].shape) for k in case.wrt]
    return Point(case, arrays, weights, vs)


def _placed(arrays, wrt, values) -> list:
    """``arrays`` with ``values`` in the differentiated positions ``wrt``."""
    out = list(arrays)
    for k, v in zip(wrt, values):
        out[k] = v
    return out


def _moved(arrays, wrt, deltas) -> list:
    return _placed(arrays, wrt, [arrays[k] + d for k, d in zip(wrt, deltas)])


def ref_gradient(pt: Point, h: float = EPS) -> list:
    """d cost / d x_k for every differentiated input, by central differences of the reference."""
    return [central_differences(lambda a, k=k: pt.cost(_placed(pt.arrays, [k], [a])), pt.arrays[k], h)
            for k in pt.wrt]


def ref_hvp(pt: Point, h: float = EPS2) -> list:
    """``H v`` of the cost, one block per differentiated input, with ``v`` = ``pt.vs`` over all of them:
    entry j of block k is (c(x + hv + h e_j) - c(x + hv - h e_j) - c(x - hv + h e_j) + c(x - hv - h e_j)) / 4h^2."""
    out = []
    for k in pt.wrt:
        def moved_grad(sign, k=k):
            shifted = _moved(pt.arrays, pt.wrt, [sign * h * v for v in pt.vs])
            return central_differences(lambda a: pt.cost(_placed(shifted, [k], [a])), shifted[k], h)
        out.append((moved_grad(1.0) - moved_grad(-1.0)) / (2 * h))
    return out


def ref_jvp(pt: Point, h: float = EPS) -> np.ndarray:
    """The output's directional derivative along ``pt.vs``, by central differences of the reference."""
    up = pt.case.ref(*_moved(pt.arrays, pt.wrt, [h * v for v in pt.vs]))
    down = pt.case.ref(*_moved(pt.arrays, pt.wrt, [-h * v for v in pt.vs]))
    return (np.asarray(up, dtype=np.float64) - np.asarray(down, dtype=np.float64)) / (2 * h)


def _tape_grads(pt: Point, create_graph: bool):
    """The tape's ``J^T w``: the output seeded with the weights, so that no op but the case's own runs
    (a ``sum`` in the cost would carry a mutant of ``sum`` twice, and two sign flips cancel)."""
    xs = [S.Tensor(a, requires_grad=k in pt.wrt) for k, a in enumerate(pt.arrays)]
    wrt = [xs[k] for k in pt.wrt]
    out = pt.case.fn(S.tape, *xs)
    return wrt, engine.grad([out], wrt, [pt.weights], create_graph=create_graph, disconnected="zero")


def _close(got, want, what: str, rtol: float, atol: float) -> None:
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol,
                               err_msg=f"{what} against the numpy reference")


def check_gradient(pt: Point) -> None:
    """The tape's gradient against central differences of the reference."""
    for k, g, want in zip(pt.wrt, tape_gradient(pt), ref_gradient(pt)):
        _close(g, want, f"{pt.case.id}: d/dx{k}", 1e-6, 1e-7)


def tape_hvp(pt: Point) -> list:
    """Reverse over reverse on the tape (``create_graph``): ``H v`` as the gradient of ``<J^T w, v>``, one
    array per differentiated input."""
    wrt, grads = _tape_grads(pt, create_graph=True)
    live = [(g, v) for g, v in zip(grads, pt.vs) if g.requires_grad]
    if not live:
        return [np.zeros_like(pt.arrays[k]) for k in pt.wrt]
    return [np.asarray(g.data) for g in engine.grad([g for g, _ in live], wrt, [v for _, v in live],
                                                      disconnected="zero")]


def tape_gradient(pt: Point) -> list:
    """The tape's ``J^T w``, one array per differentiated input."""
    return [np.asarray(g.data) for g in _tape_grads(pt, create_graph=False)[1]]


def hvp_atol(pt: Point) -> float:
    """The absolute tolerance of a second difference: 1e-6, or its rounding error where that is larger
    (four costs of size |c| each off by an ulp, over 4 h^2: about 2 ulp(|c|) / h^2, taken twice)."""
    return max(1e-6, 4 * np.finfo(np.float64).eps * abs(float(pt.cost(pt.arrays))) / EPS2 ** 2)


def check_hvp(pt: Point) -> None:
    """The tape's ``H v`` (:func:`tape_hvp`) against second differences of the reference, every block
    (the mixed ones included)."""
    for k, g, want in zip(pt.wrt, tape_hvp(pt), ref_hvp(pt)):
        _close(g, want, f"{pt.case.id}: (H v) block x{k}", 1e-5, hvp_atol(pt))


def check_jvp(pt: Point) -> None:
    """Forward mode (dual numbers) along ``pt.vs`` against central differences of the reference."""
    def f(*xs):
        return pt.case.fn(S, *_placed(pt.arrays, pt.wrt, xs))

    _, jv = S.jvp(f, [pt.arrays[k] for k in pt.wrt], pt.vs)
    _close(jv, ref_jvp(pt), f"{pt.case.id}: J v", 1e-6, 1e-7)


def _contracted(pt: Point, out):
    """``sum(w * out)`` spelled without the case's own op (a mutant of ``sum`` met twice would cancel)."""
    if pt.case.op in ("sum", "mul"):
        return S.einsum("...,...->", out, pt.weights)
    return S.sum(out * pt.weights)


def check_forward_over_reverse(pt: Point) -> None:
    """symnum's ``jvp`` of ``grad``: the gradient is swept on the tape, and its tangent is the gradient of
    the tape's ``J v`` (the op's JVP rule recorded, then the VJP rules of the ops that rule used): ``H v``
    against second differences of the reference, one block at a time."""
    want = ref_hvp(pt)
    for n, k in enumerate(pt.wrt):
        def block(*xs, n=n):
            cost = lambda *ys: _contracted(pt, pt.case.fn(S, *_placed(pt.arrays, pt.wrt, ys)))
            return S.grad(cost, argnums=tuple(range(len(xs))), disconnected="zero")(*xs)[n]

        _, hv = S.jvp(block, [pt.arrays[j] for j in pt.wrt], pt.vs)
        _close(hv, want[n], f"{pt.case.id}: forward-over-reverse (H v) block x{k}", 1e-5, hvp_atol(pt))


FIRST_ORDER = (check_gradient, check_jvp)
SECOND_ORDER = (check_hvp, check_forward_over_reverse)
