"""Each op's JVP rule checked against its own VJP rules and against finite differences.

A JVP rule computes J u, a VJP rule J^T v, both written against a namespace.
They are two descriptions of one Jacobian, so for any u and v the transpose
identity <J u, v> = <u, J^T v> must hold: checked here per input (a tangent on
one input, ZERO on the others, so the rules' skipping of ZERO is exercised)
and for all inputs at once, on every application of every op in the op cases
of ``tests/opcases.py``. That is the two rules' agreement, not evidence that
either is right, and it is skipped where the JVP rule is the VJP rule itself
(there it holds for any rule linear in g). Finite differences in float64 are the independent
reference for J u itself. The guard at the end fails when an op has no JVP rule.
"""

from __future__ import annotations

import numpy as np
import pytest
from opcases import BODIED, CASES, input_values

from common import api
from common.graph import toposort
from common.ops import NO_GRAD, OPS, ZERO, numeric

SEED = 11


def _applications(case, rng):
    """Every (op, inputs, params) of the case's own op, the case built as a graph (so ``x ** 3``,
    ``x[1:]`` are ops too) and each application's inputs evaluated."""
    arrays = case.inputs(rng)
    xs = [api.var(f"x{i}", a.shape, a.dtype) for i, a in enumerate(arrays)]
    out = case.fn(api.symbolic, *xs)
    mine = [n for n in toposort([out]) if n.op is not None and n.op.name == case.op]
    feed = dict(zip(xs, arrays))
    return [(n.op, input_values(n, feed), n.params, _carried(n, xs)) for n in mine]


def _carried(node, xs) -> tuple:
    """Which inputs of ``node`` may carry a tangent: the case's variables and computed values, not the
    constants the case wrote (``3`` in ``x ** 3``: d/dy x**y is undefined at the case's negative x)."""
    return tuple(any(x is v for v in xs) or x.op is not None for x in node.inputs)


def _calls():
    rng = np.random.default_rng(SEED)
    out = []
    for case in CASES:
        for k, app in enumerate(_applications(case, rng)):
            out.append((f"{case.id}-{k}", *app))
    return out


CALLS = _calls()
IDS = [c[0] for c in CALLS]


def _values(op, inputs, carried) -> list[int]:
    """Positions of the float value inputs that carry a tangent (not constants, index arrays,
    reference shapes or conditions)."""
    return [i for i, x in enumerate(inputs) if carried[i]
            and i not in op.index and i not in op.shape_only and np.asarray(x).dtype.kind == "f"]


def _tangents(op, inputs, carried, rng, only=None) -> tuple:
    return tuple(rng.standard_normal(np.shape(x)).astype(np.asarray(x).dtype)
                 if i in _values(op, inputs, carried) and (only is None or i == only) else ZERO
                 for i, x in enumerate(inputs))


def _inner(a, b) -> float:
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


def _rtol(out, inputs) -> float:
    """1e-10 in float64; a float32 value anywhere (a cast) loses the rest."""
    wide = all(np.asarray(x).dtype in (np.float64, np.bool_) or np.asarray(x).dtype.kind in "iu"
               for x in (out, *inputs))
    return 1e-10 if wide else 1e-5


def _check_transpose(op, inputs, params, tangents, rng):
    out = op.impl(*inputs, **params)
    jv = op.tangent(numeric, tangents, out, inputs, params)
    if np.asarray(out).dtype.kind != "f":
        assert jv is ZERO, f"{op.name}: a non-float output must get no tangent"
        return
    v = rng.standard_normal(np.shape(out))
    if jv is ZERO:
        lhs = 0.0
    else:
        assert np.shape(jv) == np.shape(out), f"{op.name}: tangent shape {np.shape(jv)}, output {np.shape(out)}"
        lhs = _inner(jv, v)
    rhs = 0.0
    g = v.astype(np.asarray(out).dtype)
    for i, t in enumerate(tangents):
        if t is ZERO:
            continue
        ct = op.vjp(numeric, i, g, out, inputs, params)
        if ct is not NO_GRAD:
            rhs += _inner(t, ct)
    scale = max(abs(lhs), abs(rhs), 1.0)
    assert abs(lhs - rhs) <= _rtol(out, inputs) * scale, f"{op.name}: <J u, v> = {lhs} but <u, J^T v> = {rhs}"


ARGS = "cid, op, inputs, params, carried"

SELF_ADJOINT = ("the JVP rule is the VJP rule run on the tangent, so <J u, v> = <u, J^T v> holds for any rule "
                "linear in g, right or wrong; test_jvp_against_finite_differences checks this op")


def _skip_self_adjoint(op) -> None:
    if getattr(op.jvp, "self_adjoint", None) is not None:
        pytest.skip(SELF_ADJOINT)


@pytest.mark.parametrize(ARGS, CALLS, ids=IDS)
def test_transpose_identity_per_input(cid, op, inputs, params, carried):
    _skip_self_adjoint(op)
    rng = np.random.default_rng(SEED)
    for i in _values(op, inputs, carried):
        _check_transpose(op, inputs, params, _tangents(op, inputs, carried, rng, only=i), rng)


@pytest.mark.parametrize(ARGS, CALLS, ids=IDS)
def test_transpose_identity_all_inputs(cid, op, inputs, params, carried):
    _skip_self_adjoint(op)
    rng = np.random.default_rng(SEED + 1)
    _check_transpose(op, inputs, params, _tangents(op, inputs, carried, rng), rng)


def _float64(x) -> bool:
    return np.asarray(x).dtype.kind != "f" or np.asarray(x).dtype == np.float64


FD_CALLS = [c for c in CALLS
            if any(c[1].differentiable(i) for i in _values(c[1], c[2], c[4]))
            and all(_float64(x) for x in (c[1].impl(*c[2], **c[3]), *c[2]))]


@pytest.mark.parametrize(ARGS, FD_CALLS, ids=[c[0] for c in FD_CALLS])
def test_jvp_against_finite_differences(cid, op, inputs, params, carried):
    """J u against (f(x + h u) - f(x - h u)) / 2h, a tangent on every differentiable input."""
    rng = np.random.default_rng(SEED + 2)
    tangents = tuple(t if t is ZERO or op.differentiable(i) else ZERO
                     for i, t in enumerate(_tangents(op, inputs, carried, rng)))
    out = op.impl(*inputs, **params)
    jv = op.tangent(numeric, tangents, out, inputs, params)
    h = 1e-6
    plus = [x if t is ZERO else x + h * t for x, t in zip(inputs, tangents)]
    minus = [x if t is ZERO else x - h * t for x, t in zip(inputs, tangents)]
    fd = (op.impl(*plus, **params) - op.impl(*minus, **params)) / (2 * h)
    np.testing.assert_allclose(np.asarray(jv), fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", sorted(OPS))
def test_every_op_has_a_jvp_rule(name):
    """An op without a JVP rule would make forward mode fail (or worse, fall back silently)."""
    assert callable(OPS[name].jvp), f"op {name!r} has no JVP rule: give its defop a jvp="


def test_a_rule_is_skipped_when_no_input_has_a_tangent():
    x = np.array([1.0, 2.0])
    op = OPS["sin"]
    assert op.tangent(numeric, (ZERO,), np.sin(x), (x,), {}) is ZERO


def test_every_op_is_checked_here():
    """The cases reach every op that has inputs (so every JVP rule above runs at least once)."""
    seen = {c[1].name for c in CALLS}
    missing = sorted(n for n, op in OPS.items() if op.nin != 0 and n not in seen and n not in BODIED)
    assert not missing, f"ops with no application in tests/opcases.py: {missing}"
