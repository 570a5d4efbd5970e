"""numpy's functions users reach for (erf, clip, cumsum, cumprod, sort, topk, take, var, pad, roll, ...), the
``x.at[key]`` scatter and integer labels in softmax_cross_entropy: values against numpy, gradients against
central differences (float64) and against PyTorch where it has the op, on the tape and on symsym's compiled
graphs (numpy and numba linkers), the edge cases (ties, zeros, bounds) with their documented conventions, and
the errors a user can cause. The generic checks of every op case (tests/opcases.py) run elsewhere."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symnum as S
from benchmarks.finite import central_differences
from common import api
from common.errors import DTypeError, ShapeError, TwogradError
from symsym import function, grad

try:  # PyTorch is a peer: the comparisons with it are skipped where it is absent
    import torch
except ImportError:  # pragma: no cover
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _rng(seed=0):
    return np.random.default_rng(seed)


def _tape_grad(f, x, w):
    """d sum(w * f(x)) / dx on the tape."""
    t = S.tensor(x, requires_grad=True)
    S.sum(f(S, t) * w).backward()
    return np.asarray(t.grad.data)


def _graph_grad(f, x, w, linker="numpy"):
    """d sum(w * f(x)) / dx from symsym's derivative graph, compiled by ``linker``."""
    v = api.var("x", x.shape, x.dtype)
    (g,) = grad(api.sum(f(api, v) * api.const(w)), [v])
    return np.asarray(function([v], g, linker=linker)(x))


def _fd_grad(ref, x, w):
    return central_differences(lambda a: float(np.sum(w * ref(a))), x, 1e-6)


# --- values against numpy, with numpy's defaults ---------------------------------------------------

VALUES = [
    ("cumsum-default-flattens", lambda ns, x: ns.cumsum(x), lambda x: np.cumsum(x)),
    ("cumprod-axis0", lambda ns, x: ns.cumprod(x, axis=0), lambda x: np.cumprod(x, axis=0)),
    ("argsort-default-last", lambda ns, x: ns.argsort(x), lambda x: np.argsort(x)),
    ("argmax-default-flat", lambda ns, x: ns.argmax(x), lambda x: np.argmax(x)),
    ("argmin-axis-keepdims", lambda ns, x: ns.argmin(x, axis=-1, keepdims=True),
     lambda x: np.argmin(x, axis=-1, keepdims=True)),
    ("sort-default-last", lambda ns, x: ns.sort(x), lambda x: np.sort(x)),
    ("sort-flat", lambda ns, x: ns.sort(x, axis=None), lambda x: np.sort(x, axis=None)),
    ("take-flat", lambda ns, x: ns.take(x, np.array([[1, 7], [3, 3]])), lambda x: np.take(x, [[1, 7], [3, 3]])),
    ("take-int-axis", lambda ns, x: ns.take(x, 2, axis=1), lambda x: np.take(x, 2, axis=1)),
    ("take-negative", lambda ns, x: ns.take(x, np.array([-1, 0]), axis=0), lambda x: np.take(x, [-1, 0], axis=0)),
    ("take_along_axis", lambda ns, x: ns.take_along_axis(x, np.array([[2], [0], [1]]), axis=1),
     lambda x: np.take_along_axis(x, np.array([[2], [0], [1]]), axis=1)),
    ("var-default", lambda ns, x: ns.var(x), lambda x: np.var(x)),
    ("var-ddof-keepdims", lambda ns, x: ns.var(x, axis=0, ddof=1, keepdims=True),
     lambda x: np.var(x, axis=0, ddof=1, keepdims=True)),
    ("std-axis", lambda ns, x: ns.std(x, axis=1, ddof=1), lambda x: np.std(x, axis=1, ddof=1)),
    ("pad-int", lambda ns, x: ns.pad(x, 2), lambda x: np.pad(x, 2)),
    ("pad-pair", lambda ns, x: ns.pad(x, (1, 3), constant_values=-2.0),
     lambda x: np.pad(x, (1, 3), constant_values=-2.0)),
    ("flip-default-all", lambda ns, x: ns.flip(x), lambda x: np.flip(x)),
    ("flip-axis", lambda ns, x: ns.flip(x, axis=-1), lambda x: np.flip(x, axis=-1)),
    ("roll-flat", lambda ns, x: ns.roll(x, 5), lambda x: np.roll(x, 5)),
    ("roll-axis-negative", lambda ns, x: ns.roll(x, -1, axis=0), lambda x: np.roll(x, -1, axis=0)),
    ("roll-more-than-length", lambda ns, x: ns.roll(x, 9, axis=1), lambda x: np.roll(x, 9, axis=1)),
    ("repeat-flat", lambda ns, x: ns.repeat(x, 2), lambda x: np.repeat(x, 2)),
    ("repeat-counts", lambda ns, x: ns.repeat(x, [1, 0, 3], axis=0), lambda x: np.repeat(x, [1, 0, 3], axis=0)),
    ("tile-int", lambda ns, x: ns.tile(x, 2), lambda x: np.tile(x, 2)),
    ("tile-longer-reps", lambda ns, x: ns.tile(x, (2, 1, 3)), lambda x: np.tile(x, (2, 1, 3))),
    ("split-sections", lambda ns, x: ns.split(x, 2, axis=1)[1], lambda x: np.split(x, 2, axis=1)[1]),
    ("split-indices", lambda ns, x: ns.split(x, [1, 3], axis=1)[2], lambda x: np.split(x, [1, 3], axis=1)[2]),
    ("split-indices-first", lambda ns, x: ns.split(x, [1])[0], lambda x: np.split(x, [1])[0]),
    ("clip-both", lambda ns, x: ns.clip(x, -0.5, 0.3), lambda x: np.clip(x, -0.5, 0.3)),
    ("logcumsumexp-far-apart", lambda ns, x: ns.logcumsumexp(x * 400, axis=1),
     lambda x: np.logaddexp.accumulate(x * 400, axis=1)),
]


@pytest.mark.parametrize("name, fn, ref", VALUES, ids=[v[0] for v in VALUES])
def test_values_match_numpy_on_the_tape_and_compiled(name, fn, ref):
    x = _rng().standard_normal((3, 4))
    want = ref(x)
    got_tape = fn(S, S.tensor(x))
    np.testing.assert_allclose(np.asarray(got_tape.data), want, rtol=1e-12, atol=1e-12)
    v = api.var("x", x.shape)
    out = fn(api, v)
    assert out.shape == np.shape(want) and out.dtype == np.asarray(want).dtype
    np.testing.assert_allclose(function([v], out)(x), want, rtol=1e-12, atol=1e-12)


def test_methods_have_numpys_names():
    x = _rng().standard_normal((3, 4))
    t = S.tensor(x)
    for method, ref in [("cumsum", np.cumsum(x)), ("var", x.var()), ("std", x.std()), ("argmax", x.argmax()),
                        ("argsort", x.argsort())]:
        np.testing.assert_allclose(np.asarray(getattr(t, method)().data), ref, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(t.clip(-0.1, 0.2).data), x.clip(-0.1, 0.2))
    np.testing.assert_allclose(np.asarray(t.repeat(2, axis=1).data), x.repeat(2, axis=1))
    np.testing.assert_allclose(np.asarray(t.take([0, 5]).data), x.take([0, 5]))
    v = api.var("x", (3, 4))
    assert v.cumprod(axis=1).shape == (3, 4) and v.var(axis=0, ddof=1).shape == (4,)


def test_var_still_makes_graph_inputs():
    """``api.var(name, shape)`` is a graph input; ``api.var(node)`` numpy's variance."""
    v = api.var("w", (2, 3), "float32")
    assert v.is_var and v.name == "w" and v.dtype == np.float32
    assert api.var(name="u").is_var
    assert api.var(v).op is not None and api.var(v).shape == ()


# --- gradients: central differences, then PyTorch ---------------------------------------------------

GRADS = [
    ("erf", lambda ns, x: ns.erf(x), np.vectorize(math.erf)),
    ("erfc", lambda ns, x: ns.erfc(x), np.vectorize(math.erfc)),
    ("cumprod-zeros", lambda ns, x: ns.cumprod(x * np.array([1.0, 0.0, 1.0, 1.0]), axis=1),
     lambda x: np.cumprod(x * np.array([1.0, 0.0, 1.0, 1.0]), axis=1)),
    ("cumprod-two-zeros-flat", lambda ns, x: ns.cumprod(x * np.array([1.0, 0.0, 1.0, 0.0])),
     lambda x: np.cumprod(x * np.array([1.0, 0.0, 1.0, 0.0]))),
    ("logcumsumexp", lambda ns, x: ns.logcumsumexp(x, axis=1), lambda x: np.logaddexp.accumulate(x, axis=1)),
    ("var-ddof", lambda ns, x: ns.var(x, axis=1, ddof=1), lambda x: np.var(x, axis=1, ddof=1)),
    ("std", lambda ns, x: ns.std(x, axis=0), lambda x: np.std(x, axis=0)),
    ("sort", lambda ns, x: ns.sort(x, axis=0), lambda x: np.sort(x, axis=0)),
    ("topk-values", lambda ns, x: ns.topk(x, 3)[0], lambda x: -np.sort(-x, axis=-1)[:, :3]),
    ("roll", lambda ns, x: ns.roll(x, 3), lambda x: np.roll(x, 3)),
    ("repeat-counts", lambda ns, x: ns.repeat(x, [2, 0, 1, 1], axis=1), lambda x: np.repeat(x, [2, 0, 1, 1], axis=1)),
    ("tile", lambda ns, x: ns.tile(x, (1, 2)), lambda x: np.tile(x, (1, 2))),
    ("pad", lambda ns, x: ns.pad(x, ((0, 2), (1, 1)), constant_values=0.5),
     lambda x: np.pad(x, ((0, 2), (1, 1)), constant_values=0.5)),
    ("take", lambda ns, x: ns.take(x, np.array([0, 0, 2]), axis=1), lambda x: np.take(x, [0, 0, 2], axis=1)),
    ("arccos", lambda ns, x: ns.arccos(x * 0.3), lambda x: np.arccos(x * 0.3)),
    ("arctanh", lambda ns, x: ns.arctanh(x * 0.3), lambda x: np.arctanh(x * 0.3)),
]


#: the numba linker on the derivative graphs of the new scalar forms (erf's libm form fused with the exp of its
#: rule) and of ops it runs through numpy between fused loops (cumprod_grad); each compile costs a second or two
NUMBA = {"erf", "erfc", "arccos", "cumprod-zeros"}
LINKED = [(*g, "numpy") for g in GRADS] + [(*g, "numba") for g in GRADS if g[0] in NUMBA]


@pytest.mark.parametrize("name, fn, ref, linker", LINKED, ids=[f"{g[0]}-{g[3]}" for g in LINKED])
def test_gradients_match_central_differences(name, fn, ref, linker):
    if linker == "numba":
        pytest.importorskip("numba")
    rng = _rng(1)
    x = rng.standard_normal((3, 4))
    w = rng.standard_normal(np.shape(ref(x)))
    want = _fd_grad(ref, x, w)
    np.testing.assert_allclose(_tape_grad(fn, x, w), want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_graph_grad(fn, x, w, linker), want, rtol=1e-6, atol=1e-7)


TORCH = [  # (name, ours, torch's, inputs)
    ("erf", lambda ns, x: ns.erf(x), lambda x: torch.erf(x), lambda r: r.standard_normal((3, 4))),
    ("erfc", lambda ns, x: ns.erfc(x), lambda x: torch.erfc(x), lambda r: r.standard_normal((3, 4))),
    ("arccos", lambda ns, x: ns.arccos(x), torch.acos if torch else None, lambda r: r.uniform(-0.9, 0.9, (3, 4))),
    ("arcsinh", lambda ns, x: ns.arcsinh(x), torch.asinh if torch else None, lambda r: r.standard_normal((3, 4))),
    ("arccosh", lambda ns, x: ns.arccosh(x), torch.acosh if torch else None, lambda r: r.uniform(1.1, 3, (3, 4))),
    ("arctanh", lambda ns, x: ns.arctanh(x), torch.atanh if torch else None, lambda r: r.uniform(-0.9, 0.9, (3, 4))),
    ("logaddexp", lambda ns, x: ns.logaddexp(x, x[::-1] * 2), lambda x: torch.logaddexp(x, x.flip(0) * 2),
     lambda r: r.standard_normal((3, 4))),
    ("arctan2", lambda ns, x: ns.arctan2(x, x[::-1] + 0.1), lambda x: torch.atan2(x, x.flip(0) + 0.1),
     lambda r: r.standard_normal((3, 4))),
    ("hypot", lambda ns, x: ns.hypot(x, x[::-1] * 2), lambda x: torch.hypot(x, x.flip(0) * 2),
     lambda r: r.standard_normal((3, 4))),
    ("cumsum", lambda ns, x: ns.cumsum(x, axis=0), lambda x: torch.cumsum(x, 0), lambda r: r.standard_normal((3, 4))),
    ("cumprod-zeros", lambda ns, x: ns.cumprod(x, axis=1), lambda x: torch.cumprod(x, 1),
     lambda r: r.standard_normal((3, 5)) * np.array([1, 0, 1, 0, 1.0])),
    ("logcumsumexp", lambda ns, x: ns.logcumsumexp(x, axis=1), lambda x: torch.logcumsumexp(x, 1),
     lambda r: r.standard_normal((3, 4))),
    ("sort-ties", lambda ns, x: ns.sort(x, axis=1), lambda x: torch.sort(x, dim=1, stable=True)[0],
     lambda r: np.round(r.standard_normal((3, 6)))),
    ("var", lambda ns, x: ns.var(x, axis=1, ddof=1), lambda x: torch.var(x, 1, correction=1),
     lambda r: r.standard_normal((3, 4))),
    ("std", lambda ns, x: ns.std(x, axis=0), lambda x: torch.std(x, 0, correction=0),
     lambda r: r.standard_normal((3, 4))),
    ("pad", lambda ns, x: ns.pad(x, ((1, 0), (2, 3)), constant_values=0.7),
     lambda x: torch.nn.functional.pad(x, (2, 3, 1, 0), value=0.7), lambda r: r.standard_normal((3, 4))),
    ("flip", lambda ns, x: ns.flip(x, axis=1), lambda x: torch.flip(x, (1,)), lambda r: r.standard_normal((3, 4))),
    ("roll", lambda ns, x: ns.roll(x, (1, -3), axis=(0, 1)), lambda x: torch.roll(x, (1, -3), (0, 1)),
     lambda r: r.standard_normal((3, 4))),
    ("repeat", lambda ns, x: ns.repeat(x, 3, axis=1), lambda x: torch.repeat_interleave(x, 3, 1),
     lambda r: r.standard_normal((3, 4))),
    ("tile", lambda ns, x: ns.tile(x, (2, 3)), lambda x: torch.tile(x, (2, 3)), lambda r: r.standard_normal((3, 4))),
    ("take_along_axis", lambda ns, x: ns.take_along_axis(x, np.array([[0, 0], [3, 1], [2, 2]]), axis=1),
     lambda x: torch.gather(x, 1, torch.tensor([[0, 0], [3, 1], [2, 2]])), lambda r: r.standard_normal((3, 4))),
    ("clip-tensor-bounds", lambda ns, x: ns.clip(x, -0.5 + x[::-1] * 0, 0.5),
     lambda x: torch.clamp(x, -0.5 + x.flip(0) * 0, torch.tensor(0.5, dtype=torch.float64)),
     lambda r: r.standard_normal((3, 4))),
]


def _torch_reference(fn, x, w):
    """PyTorch's value, gradient and Hessian-vector product (by double backward) of sum(w * fn(x))."""
    tx = torch.tensor(x, requires_grad=True)
    out = fn(tx)
    (g,) = torch.autograd.grad((out * torch.tensor(w)).sum(), tx, create_graph=True)
    u = np.linspace(-1, 1, x.size).reshape(x.shape)
    if g.requires_grad:
        (h,) = torch.autograd.grad((g * torch.tensor(u)).sum(), tx, allow_unused=True, materialize_grads=True)
    else:  # a linear op: its gradient is a constant
        h = torch.zeros_like(tx)
    return out.detach().numpy(), g.detach().numpy(), h.numpy(), u


@needs_torch
@pytest.mark.parametrize("name, ours, theirs, make", TORCH, ids=[t[0] for t in TORCH])
def test_value_gradient_and_second_order_match_pytorch(name, ours, theirs, make):
    rng = _rng(2)
    x = make(rng)
    w = rng.standard_normal(np.shape(theirs(torch.tensor(x))))
    value, g, h, u = _torch_reference(theirs, x, w)
    # the tape: value, gradient, and the gradient's directional derivative (double backward)
    t = S.tensor(x, requires_grad=True)
    out = ours(S, t)
    np.testing.assert_allclose(np.asarray(out.data), value, rtol=1e-12, atol=1e-12)
    (gt,) = S.grad(S.sum(out * w), [t], create_graph=True)
    np.testing.assert_allclose(np.asarray(gt.data), g, rtol=1e-10, atol=1e-12)
    if gt.requires_grad:
        (ht,) = S.grad(S.sum(gt * u), [t], disconnected="zero")
        np.testing.assert_allclose(np.asarray(ht.data), h, rtol=1e-9, atol=1e-10)
    else:  # a linear op's gradient is a constant, recorded as one
        assert not h.any()
    # symsym: the derivative graph and its own derivative, compiled
    v = api.var("x", x.shape)
    (gv,) = grad(api.sum(ours(api, v) * api.const(w)), [v])
    (hv,) = grad(api.sum(gv * api.const(u)), [v], disconnected="zero")
    got_g, got_h = function([v], [gv, hv])(x)
    np.testing.assert_allclose(got_g, g, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_h, h, rtol=1e-9, atol=1e-10)


# --- conventions at ties, zeros and bounds ------------------------------------------------------------

def test_sort_ties_give_each_place_its_own_cotangent():
    """Stable: tied elements keep their input order, each takes the cotangent of the place it sorts to."""
    x = np.array([2.0, 1.0, 2.0, 1.0])
    w = np.array([10.0, 20.0, 30.0, 40.0])
    # sorted: x[1], x[3], x[0], x[2] -> places 0..3
    np.testing.assert_array_equal(_tape_grad(lambda ns, t: ns.sort(t), x, w), [30.0, 10.0, 40.0, 20.0])
    np.testing.assert_array_equal(_graph_grad(lambda ns, t: ns.sort(t), x, w), [30.0, 10.0, 40.0, 20.0])


def test_topk_is_largest_first_with_lower_index_first_on_ties():
    x = np.array([[1.0, 3.0, 3.0, 0.5, 3.0], [4.0, -1.0, 2.0, 2.0, 0.0]])
    vals, idx = S.topk(S.tensor(x), 3)
    np.testing.assert_array_equal(np.asarray(idx.data), [[1, 2, 4], [0, 2, 3]])
    np.testing.assert_array_equal(np.asarray(vals.data), [[3.0, 3.0, 3.0], [4.0, 2.0, 2.0]])
    assert np.asarray(idx.data).dtype.kind == "i" and not idx.requires_grad
    w = np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0]])
    want = np.array([[0.0, 1.0, 2.0, 0.0, 4.0], [8.0, 0.0, 16.0, 32.0, 0.0]])
    np.testing.assert_array_equal(_tape_grad(lambda ns, t: ns.topk(t, 3)[0], x, w), want)
    np.testing.assert_array_equal(_graph_grad(lambda ns, t: ns.topk(t, 3)[0], x, w), want)
    if torch is not None:  # PyTorch's values agree (its order among ties is unspecified)
        np.testing.assert_array_equal(torch.topk(torch.tensor(x), 3).values.numpy(), np.asarray(vals.data))


def test_integer_results_carry_no_gradient():
    x = S.tensor(_rng().standard_normal((3, 4)), requires_grad=True)
    for out in (S.argsort(x), S.argmax(x, axis=1), S.argmin(x), S.topk(x, 2)[1]):
        assert out.dtype.kind == "i" and not out.requires_grad
    v = api.var("x", (3, 4))
    with pytest.raises(TwogradError):
        grad(api.sum(api.cast(api.argmax(v, axis=1), "float64")), [v])


def test_cumprod_gradient_with_zeros_matches_the_closed_form():
    """d/dx_i sum_j w_j prod_{l <= j} x_l = sum_{j >= i} w_j prod_{l <= j, l != i} x_l, zeros anywhere."""
    x = np.array([[2.0, 0.0, 3.0, 0.0, 5.0], [0.0, 0.0, 1.5, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 0.0]])
    w = _rng(3).standard_normal(x.shape)
    want = np.array([[sum(w[r, j] * np.prod(np.delete(x[r, :j + 1], i)) for j in range(i, 5)) for i in range(5)]
                     for r in range(3)])
    f = lambda ns, t: ns.cumprod(t, axis=1)
    np.testing.assert_allclose(_tape_grad(f, x, w), want, rtol=1e-13)
    np.testing.assert_allclose(_graph_grad(f, x, w), want, rtol=1e-13)
    assert np.isfinite(_graph_grad(f, x, w, "numba")).all()


def test_clip_at_the_bounds_follows_pytorch():
    """x exactly at a bound counts as inside: its gradient is 1 and the bound's 0 (PyTorch's clamp)."""
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    lo, hi = np.full(5, -0.5), np.full(5, 0.5)
    tx, tlo, thi = (S.tensor(a, requires_grad=True) for a in (x, lo, hi))
    S.sum(S.clip(tx, tlo, thi)).backward()
    np.testing.assert_array_equal(np.asarray(tx.grad.data), [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(np.asarray(tlo.grad.data), [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(np.asarray(thi.grad.data), [0, 0, 0, 0, 1])
    if torch is not None:
        px, plo, phi = (torch.tensor(a, requires_grad=True) for a in (x, lo, hi))
        torch.clamp(px, plo, phi).sum().backward()
        for ours, theirs in ((tx, px), (tlo, plo), (thi, phi)):
            np.testing.assert_array_equal(np.asarray(ours.grad.data), theirs.grad.numpy())


def test_clip_keeps_float32_and_one_sided_bounds():
    x = np.linspace(-2, 2, 5).astype(np.float32)
    out = S.clip(S.tensor(x), None, 1.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(out.data), np.clip(x, None, 1.0))
    assert api.clip(api.var("x", (5,), "float32"), -1.0).dtype == np.float32


def test_logaddexp_and_erfc_are_stable_where_naive_forms_fail():
    x = np.array([1000.0, -1000.0, 0.0])
    np.testing.assert_allclose(S.logaddexp(S.tensor(x), S.tensor(x)).data, x + np.log(2))
    g = _tape_grad(lambda ns, t: ns.logaddexp(t, t * 0 + 1000.0), x, np.ones(3))
    np.testing.assert_allclose(g, [0.5, 0.0, 0.0], atol=1e-300)
    assert S.erfc(S.tensor(np.array(10.0))).data > 0  # 1 - erf(10) is exactly 0 in float64


# --- integer labels ----------------------------------------------------------------------------------

@needs_torch
@pytest.mark.parametrize("shape, axis", [((5, 4), -1), ((2, 4, 3), 1)])
def test_integer_labels_match_pytorch_cross_entropy(shape, axis):
    rng = _rng(4)
    z = rng.standard_normal(shape)
    rows = tuple(d for i, d in enumerate(shape) if i != axis % len(shape))
    y = rng.integers(0, shape[axis], rows)
    w = rng.standard_normal(rows)
    tz = torch.tensor(z, requires_grad=True)
    loss = torch.nn.functional.cross_entropy(tz, torch.tensor(y), reduction="none")
    (tg,) = torch.autograd.grad((loss * torch.tensor(w)).sum(), tz)
    t = S.tensor(z, requires_grad=True)
    out = S.softmax_cross_entropy(t, y, axis=axis)
    np.testing.assert_allclose(np.asarray(out.data), loss.detach().numpy(), rtol=1e-12)
    S.sum(out * w).backward()
    np.testing.assert_allclose(np.asarray(t.grad.data), tg.numpy(), rtol=1e-10, atol=1e-14)
    v = api.var("z", shape)
    (gv,) = grad(api.sum(api.softmax_cross_entropy(v, y, axis=axis) * api.const(w)), [v])
    np.testing.assert_allclose(function([v], gv)(z), tg.numpy(), rtol=1e-10, atol=1e-14)
    # one-hot targets give the same loss through the probability form
    onehot = np.moveaxis(np.eye(shape[axis])[y], -1, axis % len(shape))
    np.testing.assert_allclose(np.asarray(S.softmax_cross_entropy(S.tensor(z), onehot, axis=axis).data),
                               loss.detach().numpy(), rtol=1e-12)


def test_integer_labels_as_a_graph_input():
    z, y = api.var("z", (4, 3)), api.var("y", (4,), "int64")
    loss = api.sum(api.softmax_cross_entropy(z, y))
    (g,) = grad(loss, [z])
    zs = _rng(5).standard_normal((4, 3))
    ys = np.array([2, 0, 1, 1])
    f = function([z, y], [loss, g])
    value, gz = f(zs, ys)
    p = np.exp(zs) / np.exp(zs).sum(1, keepdims=True)
    np.testing.assert_allclose(value, -np.log(p[np.arange(4), ys]).sum(), rtol=1e-12)
    np.testing.assert_allclose(gz, p - np.eye(3)[ys], rtol=1e-12, atol=1e-15)


# --- x.at[key] -------------------------------------------------------------------------------------------

@needs_torch
def test_at_add_and_set_match_pytorch_index_put():
    rng = _rng(6)
    x, v = rng.standard_normal((4, 3)), rng.standard_normal((3, 3))
    idx = np.array([2, 0, 2])
    w = rng.standard_normal((4, 3))
    for accumulate in (True, False):
        key = idx if accumulate else np.array([2, 0, 3])
        px, pv = torch.tensor(x, requires_grad=True), torch.tensor(v, requires_grad=True)
        pout = px.index_put((torch.tensor(key),), pv, accumulate=accumulate)
        (pout * torch.tensor(w)).sum().backward()
        tx, tv = S.tensor(x, requires_grad=True), S.tensor(v, requires_grad=True)
        out = tx.at[key].add(tv) if accumulate else tx.at[key].set(tv)
        np.testing.assert_allclose(np.asarray(out.data), pout.detach().numpy(), rtol=1e-14)
        S.sum(out * w).backward()
        np.testing.assert_allclose(np.asarray(tx.grad.data), px.grad.numpy())
        np.testing.assert_allclose(np.asarray(tv.grad.data), pv.grad.numpy())
        nx, nv = api.var("x", x.shape), api.var("v", v.shape)
        nout = nx.at[key].add(nv) if accumulate else nx.at[key].set(nv)
        gx, gv = grad(api.sum(nout * api.const(w)), [nx, nv])
        got = function([nx, nv], [nout, gx, gv])(x, v)
        for a, b in zip(got, (pout.detach().numpy(), px.grad.numpy(), pv.grad.numpy())):
            np.testing.assert_allclose(a, b, rtol=1e-14)


def test_at_with_slices_broadcast_values_and_get():
    x = np.arange(12.0).reshape(3, 4)
    t = S.tensor(x, requires_grad=True)
    out = t.at[1:, ::2].set(-1.0)
    want = x.copy()
    want[1:, ::2] = -1.0
    np.testing.assert_array_equal(np.asarray(out.data), want)
    S.sum(out).backward()
    np.testing.assert_array_equal(np.asarray(t.grad.data), (want != -1.0).astype(float))
    v = S.tensor(np.array([1.0, 2.0]), requires_grad=True)
    S.sum(S.tensor(x).at[0, 1:3].add(v) * 3).backward()
    np.testing.assert_array_equal(np.asarray(v.grad.data), [3.0, 3.0])  # summed over the broadcast
    np.testing.assert_array_equal(np.asarray(t.at[2].get().data), x[2])
    node = api.var("x", (3, 4))
    out = node.at[np.array([0, 0]), 1].add(2.0)
    np.testing.assert_array_equal(function([node], out)(x), x + np.array([[0, 4, 0, 0], [0] * 4, [0] * 4]))


# --- errors ---------------------------------------------------------------------------------------------

ERRORS = [
    ("cumsum", lambda ns, x: ns.cumsum(x, axis=2), ShapeError),
    ("argmax", lambda ns, x: ns.argmax(x, axis=-3), ShapeError),
    ("sort", lambda ns, x: ns.sort(x, axis=5), ShapeError),
    ("topk", lambda ns, x: ns.topk(x, 5), ShapeError),
    ("topk", lambda ns, x: ns.topk(x, 2, axis=2), ShapeError),
    ("take_along_axis", lambda ns, x: ns.take_along_axis(x, np.array([0, 1]), axis=1), ShapeError),
    ("take_along_axis", lambda ns, x: ns.take_along_axis(x, np.array([[0.5]]), axis=1), DTypeError),
    ("take", lambda ns, x: ns.take(x, np.array([0.0]), axis=0), DTypeError),
    ("split", lambda ns, x: ns.split(x, 3, axis=1), ShapeError),
    ("pad", lambda ns, x: ns.pad(x, 1, mode="reflect"), ShapeError),
    ("pad", lambda ns, x: ns.pad(x, ((1, 2), (3, -1))), ShapeError),
    ("repeat", lambda ns, x: ns.repeat(x, [1, 2], axis=0), ShapeError),
    ("var", lambda ns, x: ns.var(x, axis=4), ShapeError),
    ("flip", lambda ns, x: ns.flip(x, axis=(0, 0)), ShapeError),
    ("at[].set", lambda ns, x: x.at[np.array([1, 1])].set(0.0), ShapeError),
    ("at[].add", lambda ns, x: x.at[0].add(np.ones(3)), ShapeError),
    ("sparse_softmax_cross_entropy", lambda ns, x: ns.softmax_cross_entropy(x, np.array([0, 1])), ShapeError),
    ("sparse_softmax_cross_entropy", lambda ns, x: ns.sparse_softmax_cross_entropy(x, np.zeros(3)), DTypeError),
]


@pytest.mark.parametrize("where", ["tape", "graph"])
@pytest.mark.parametrize("name, fn, cls", ERRORS, ids=[f"{e[0]}-{k}" for k, e in enumerate(ERRORS)])
def test_bad_input_names_the_function_the_shapes_and_the_line(name, fn, cls, where):
    x = S.tensor(np.zeros((3, 4))) if where == "tape" else api.var("x", (3, 4))
    ns = S if where == "tape" else api
    with pytest.raises(cls) as info:
        fn(ns, x)
    text = str(info.value)
    assert name in text and "(3, 4)" in text and "test_numpy_ops.py" in text, text


def test_labels_out_of_range_are_refused_when_evaluated():
    with pytest.raises(ShapeError, match="class indices in \\[0, 4\\)"):
        S.softmax_cross_entropy(S.tensor(np.zeros((2, 4))), np.array([1, 4]))
