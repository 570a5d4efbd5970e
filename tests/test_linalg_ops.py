"""numpy.linalg's functions (``ns.linalg``): values, gradients and Hessian-vector products.

Each model is a scalar function of one matrix, written once against a
namespace, with a plain numpy/scipy twin and (where installed) a PyTorch twin.
On every backend (symnum's tape; symsym with the numpy and the numba linker)
the gradient must match central finite differences of the numpy twin and
PyTorch's, and H v must match second differences of the numpy twin and
PyTorch's double backward. Batched forms are checked against a loop over the
batch; bad input against the errors a user should see.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
from derivchecks import Models

import symnum
import symsym
from common import api as T
from common import evaluate
from common.errors import GradError, LinAlgError, ShapeError, TwogradError

try:
    import torch
except ImportError:  # PyTorch is optional: its comparisons are skipped
    torch = None

RNG = np.random.default_rng(11)
W = {k: RNG.standard_normal((4, 4)) for k in "abcd"}


def _w(key, shape):
    return W[key].ravel()[:math.prod(shape)].reshape(shape)


def _swap(x):
    return np.swapaxes(x, -1, -2)


def _conditioned(n, m=None):
    return lambda rng: rng.standard_normal((n, m or n)) * 0.4 + 2.5 * np.eye(n, m or n)


def _spread(m, n):
    def make(rng):
        base = np.zeros((m, n))
        k = min(m, n)
        base[range(k), range(k)] = np.arange(1, k + 1) * 1.5
        return base + 0.2 * rng.standard_normal((m, n))
    return make


def _t(ns, x):
    """x^T for a 2-d node, tensor or array."""
    return ns.transpose(x, (1, 0))


# name -> (twograd f(ns, x), numpy f(x), torch f(x) or None, inputs(rng))
B = RNG.standard_normal((3, 2))
MODELS = {
    "solve": (lambda ns, x: ns.sum(_w("a", (3, 2)) * ns.linalg.solve(x, B)),
              lambda x: np.sum(_w("a", (3, 2)) * np.linalg.solve(x, B)),
              lambda x: (torch.tensor(_w("a", (3, 2))) * torch.linalg.solve(x, torch.tensor(B))).sum(),
              _conditioned(3)),
    "solve-self": (lambda ns, x: ns.sum(_w("a", (3,)) * ns.linalg.solve(x, x[:, 0] * x[:, 1])),
                   lambda x: np.sum(_w("a", (3,)) * np.linalg.solve(x, x[:, 0] * x[:, 1])),
                   lambda x: (torch.tensor(_w("a", (3,))) * torch.linalg.solve(x, x[:, 0] * x[:, 1])).sum(),
                   _conditioned(3)),
    "solve_triangular": (lambda ns, x: ns.sum(_w("b", (3, 2))
                                              * ns.linalg.solve_triangular(x, B * x[:, :2], lower=True)),
                         lambda x: np.sum(_w("b", (3, 2)) * scipy.linalg.solve_triangular(x, B * x[:, :2], lower=True)),
                         lambda x: (torch.tensor(_w("b", (3, 2)))
                                    * torch.linalg.solve_triangular(x, torch.tensor(B) * x[:, :2], upper=False)).sum(),
                         _conditioned(3)),
    "solve_triangular-upper": (lambda ns, x: ns.sum(_w("b", (3, 2)) * ns.linalg.solve_triangular(x, B, lower=False)),
                               lambda x: np.sum(_w("b", (3, 2)) * scipy.linalg.solve_triangular(x, B, lower=False)),
                               lambda x: (torch.tensor(_w("b", (3, 2)))
                                          * torch.linalg.solve_triangular(x, torch.tensor(B), upper=True)).sum(),
                               _conditioned(3)),
    "cholesky": (lambda ns, x: ns.sum(_w("c", (3, 3)) * ns.linalg.cholesky(ns.matmul(x, _t(ns, x)))),
                 lambda x: np.sum(_w("c", (3, 3)) * np.linalg.cholesky(x @ x.T)),
                 lambda x: (torch.tensor(_w("c", (3, 3))) * torch.linalg.cholesky(x @ x.T)).sum(),
                 _conditioned(3)),
    "cholesky-nonsymmetric": (lambda ns, x: ns.sum(_w("c", (3, 3)) * ns.linalg.cholesky(x)),
                              lambda x: np.sum(_w("c", (3, 3)) * np.linalg.cholesky((x + x.T) / 2)),
                              None, lambda rng: _conditioned(3)(rng) + 1.0),
    "inv": (lambda ns, x: ns.sum(_w("d", (3, 3)) * ns.linalg.inv(x)),
            lambda x: np.sum(_w("d", (3, 3)) * np.linalg.inv(x)),
            lambda x: (torch.tensor(_w("d", (3, 3))) * torch.linalg.inv(x)).sum(), _conditioned(3)),
    "det": (lambda ns, x: ns.linalg.det(x), np.linalg.det, lambda x: torch.linalg.det(x), _conditioned(3)),
    "slogdet": (lambda ns, x: ns.linalg.slogdet(x)[1] * ns.linalg.slogdet(x)[0],
                lambda x: np.prod(np.linalg.slogdet(x)),
                lambda x: torch.prod(torch.stack(torch.linalg.slogdet(x))),
                lambda rng: rng.standard_normal((3, 3))),
    "eigh": (lambda ns, x: (ns.sum(_w("a", (3,)) * ns.linalg.eigh(x)[0])
                            + ns.sum(_w("b", (3, 3)) * ns.linalg.eigh(x)[1] ** 2)),
             lambda x: (np.sum(_w("a", (3,)) * np.linalg.eigh((x + x.T) / 2)[0])
                        + np.sum(_w("b", (3, 3)) * np.linalg.eigh((x + x.T) / 2)[1] ** 2)),
             lambda x: ((torch.tensor(_w("a", (3,))) * torch.linalg.eigh((x + x.T) / 2)[0]).sum()
                        + (torch.tensor(_w("b", (3, 3))) * torch.linalg.eigh((x + x.T) / 2)[1] ** 2).sum()),
             _spread(3, 3)),
    "svd": (lambda ns, x: (ns.sum(_w("a", (3,)) * ns.linalg.svd(x)[1])
                           + ns.sum(_w("b", (4, 3)) * ns.linalg.svd(x)[0] ** 2)
                           + ns.sum(_w("c", (3, 3)) * ns.linalg.svd(x)[2] ** 2)),
            lambda x: (np.sum(_w("a", (3,)) * np.linalg.svd(x)[1])
                       + np.sum(_w("b", (4, 3)) * np.linalg.svd(x, full_matrices=False)[0] ** 2)
                       + np.sum(_w("c", (3, 3)) * np.linalg.svd(x)[2] ** 2)),
            lambda x: ((torch.tensor(_w("a", (3,))) * torch.linalg.svd(x, full_matrices=False)[1]).sum()
                       + (torch.tensor(_w("b", (4, 3))) * torch.linalg.svd(x, full_matrices=False)[0] ** 2).sum()
                       + (torch.tensor(_w("c", (3, 3))) * torch.linalg.svd(x, full_matrices=False)[2] ** 2).sum()),
            _spread(4, 3)),
    "qr": (lambda ns, x: ns.sum(_w("a", (4, 3)) * ns.linalg.qr(x)[0]) + ns.sum(_w("b", (3, 3)) * ns.linalg.qr(x)[1]),
           lambda x: np.sum(_w("a", (4, 3)) * np.linalg.qr(x)[0]) + np.sum(_w("b", (3, 3)) * np.linalg.qr(x)[1]),
           lambda x: ((torch.tensor(_w("a", (4, 3))) * torch.linalg.qr(x)[0]).sum()
                      + (torch.tensor(_w("b", (3, 3))) * torch.linalg.qr(x)[1]).sum()),
           _spread(4, 3)),
}
for _ord in (None, "fro", "nuc", 2, -2, 1, -1, math.inf, -math.inf):
    MODELS[f"norm-matrix-{_ord}"] = (
        (lambda o: lambda ns, x: ns.linalg.norm(x * x[:, :1], ord=o))(_ord),
        (lambda o: lambda x: np.linalg.norm(x * x[:, :1], ord=o))(_ord),
        (lambda o: lambda x: torch.linalg.norm(x * x[:, :1], ord=o))(_ord), _spread(4, 3))
for _ord in (None, 1, 3, 0.5, math.inf, -math.inf):
    MODELS[f"norm-vector-{_ord}"] = (
        (lambda o: lambda ns, x: ns.sum(ns.linalg.norm(x * x, ord=o, axis=0, keepdims=True) * _w("d", (1, 3))))(_ord),
        (lambda o: lambda x: np.sum(np.linalg.norm(x * x, ord=o, axis=0, keepdims=True) * _w("d", (1, 3))))(_ord),
        (lambda o: lambda x: (torch.linalg.vector_norm(x * x, ord=2 if o is None else o, dim=0, keepdim=True)
                              * torch.tensor(_w("d", (1, 3)))).sum())(_ord), _spread(4, 3))

IDS = sorted(MODELS)
CHECKS = Models(MODELS, numba=("solve-self", "solve_triangular", "cholesky", "slogdet", "eigh", "qr",
                                 "norm-matrix-nuc"))


@pytest.mark.parametrize("name", IDS)
def test_value_matches_numpy(name):
    f, ref, _, _ = MODELS[name]
    x, _ = CHECKS.inputs(name)
    np.testing.assert_allclose(np.asarray(f(symnum, symnum.tensor(x))), ref(x), rtol=1e-10, atol=1e-12)
    xs = T.var("x", x.shape)
    np.testing.assert_allclose(symsym.function([xs], f(T, xs))(x), ref(x), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name, backend", CHECKS.runs)
def test_gradient_and_hvp_match_differences(name, backend):
    CHECKS.against_differences(name, backend, atol=1e-7, hvp_atol=1e-5)


@pytest.mark.skipif(torch is None, reason="PyTorch is not installed")
@pytest.mark.parametrize("name, backend", [r for r in CHECKS.runs if MODELS[r[0]][2] is not None])
def test_gradient_and_hvp_match_pytorch(name, backend):
    CHECKS.against_pytorch(name, backend, rtol=1e-8, atol=1e-10)


# ------------------------------------------------------------ batched forms

BATCHED = {
    "solve": (lambda ns, a, b: ns.linalg.solve(a, b), (3, 3), (3, 2)),
    "solve_triangular": (lambda ns, a, b: ns.linalg.solve_triangular(a, b, lower=True), (3, 3), (3, 2)),
    "cholesky": (lambda ns, a, b: ns.linalg.cholesky(ns.matmul(a, ns.transpose(a, (0, 2, 1))) + b[:, :1, :1]),
                 (3, 3), (3, 2)),
    "inv": (lambda ns, a, b: ns.linalg.inv(a) * b[:, :1, :1], (3, 3), (3, 2)),
    "det": (lambda ns, a, b: ns.linalg.det(a) * b[:, 0, 0], (3, 3), (3, 2)),
    "slogdet": (lambda ns, a, b: ns.linalg.slogdet(a)[1] * b[:, 0, 0], (3, 3), (3, 2)),
    "eigh": (lambda ns, a, b: ns.linalg.eigh(a)[0] * b[:, 0, :1], (3, 3), (3, 2)),
    "svd": (lambda ns, a, b: ns.linalg.svd(a)[1] * b[:, :1, 0], (4, 3), (3, 2)),
    "qr": (lambda ns, a, b: ns.linalg.qr(a)[1] * b[:, :1, :1], (4, 3), (3, 2)),
}


@pytest.mark.parametrize("name", sorted(BATCHED))
def test_batched_matches_a_loop_over_the_batch(name):
    """A stack of 3 problems: value and gradient are those of each problem on its own."""
    fn, sa, sb = BATCHED[name]
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, *sa)) * 0.4 + 2.5 * np.eye(*sa)
    b = rng.standard_normal((3, *sb)) + 2.0
    av, bv = T.var("a", a.shape), T.var("b", b.shape)
    out = fn(T, av, bv)
    wts = rng.standard_normal(out.shape)
    loss = T.sum(out * wts)
    f = symsym.function([av, bv], [out, *symsym.grad(loss, [av, bv])])
    value, ga, gb = f(a, b)
    for k in range(3):
        a1, b1 = T.var("a1", (1, *sa)), T.var("b1", (1, *sb))
        o1 = fn(T, a1, b1)
        f1 = symsym.function([a1, b1], [o1, *symsym.grad(T.sum(o1 * wts[k:k + 1]), [a1, b1])])
        v1, ga1, gb1 = f1(a[k:k + 1], b[k:k + 1])
        np.testing.assert_allclose(value[k:k + 1], v1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ga[k:k + 1], ga1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(gb[k:k + 1], gb1, rtol=1e-12, atol=1e-12)


def test_vmap_of_a_solve_matches_a_loop():
    rng = np.random.default_rng(6)
    a = rng.standard_normal((3, 3)) + 3 * np.eye(3)
    bs = rng.standard_normal((5, 3))
    got = np.asarray(symnum.vmap(lambda b: symnum.linalg.solve(a, b))(bs))
    np.testing.assert_allclose(got, np.stack([np.linalg.solve(a, b) for b in bs]), rtol=1e-12)


# ------------------------------------------------------------ bad input

def _line_of(fn) -> str:
    return f"{__file__}:{fn.__code__.co_firstlineno}"


@pytest.mark.parametrize("build, words", [
    (lambda: T.linalg.solve(T.var("a", (3, 4)), T.var("b", (3,))), "square"),
    (lambda: T.linalg.solve(T.var("a", (3, 3)), T.var("b", (4, 2))), "4 rows for a 3x3"),
    (lambda: T.linalg.cholesky(T.var("a", (3,))), "at least 2-d"),
    (lambda: T.linalg.det(T.var("a", (2, 3))), "square"),
    (lambda: T.linalg.solve_triangular(T.var("a", (2, 3, 3)), T.var("b", (4, 3, 1))), "batch dims"),
])
def test_bad_shapes_are_refused_at_build_time(build, words):
    with pytest.raises(ShapeError) as e:
        build()
    text = str(e.value)
    assert words in text and __file__ in text


@pytest.mark.parametrize("op, matrix, words", [
    ("cholesky", np.array([[1.0, 2.0], [2.0, 1.0]]), "not symmetric positive definite"),
    ("inv", np.array([[1.0, 2.0], [2.0, 4.0]]), "singular"),
    ("solve", np.array([[1.0, 2.0], [2.0, 4.0]]), "singular"),
    ("solve_triangular", np.array([[1.0, 0.0], [2.0, 0.0]]), "singular"),
])
@pytest.mark.parametrize("backend", ["evaluate", "compiled", "numba", "program", "tape"])
def test_bad_matrices_are_refused_at_run_time(op, matrix, words, backend):
    """A non-SPD matrix to cholesky, a singular one to a solve: a LinAlgError (a twograd error that is
    numpy's LinAlgError too, so code catching numpy's class still works) naming the op, the shapes and the
    user's line, on every path."""
    if backend == "numba":
        pytest.importorskip("numba")
    fn = getattr(T.linalg, op)
    a = T.var("a", (2, 2))
    args = (a, np.ones(2)) if op.startswith("solve") else (a,)
    with pytest.raises(np.linalg.LinAlgError) as e:
        if backend == "tape":
            getattr(symnum.linalg, op)(symnum.tensor(matrix), *args[1:])
        else:
            out = fn(*args)
            if backend == "evaluate":
                evaluate(out, {a: matrix})
            elif backend == "program":
                symnum.gradients(T.sum(out), [a], {a: matrix})
            else:
                symsym.function([a], out, linker="numpy" if backend == "compiled" else "numba")(matrix)
    assert isinstance(e.value, LinAlgError) and isinstance(e.value, TwogradError)
    text = str(e.value)
    assert words in text and op in text and "(2, 2)" in text and __file__ in text, text


@pytest.mark.parametrize("transform", ["vmap", "jvp"])
def test_a_refused_matrix_inside_vmap_or_jvp_is_a_linalg_error(transform):
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(LinAlgError) as e:
        if transform == "vmap":
            symnum.vmap(lambda t: symnum.linalg.inv(t))(np.stack([np.eye(2), singular]))
        else:
            symnum.jvp(lambda t: symnum.linalg.inv(t), (singular,), (np.eye(2),))
    text = str(e.value)
    shape = "(2, 2, 2)" if transform == "vmap" else "(2, 2)"  # vmap's op runs on the whole stack
    assert "inv" in text and "singular" in text and shape in text and __file__ in text, text


@pytest.mark.parametrize("backend", ["tape", "compiled", "numba"])
def test_a_gradient_that_needs_an_inverse_of_a_singular_matrix_is_a_linalg_error(backend):
    """det's gradient is det(a) a^-T: at a singular a its inverse fails, in the backward sweep (the tape)
    or the derivative graph (symsym), with the op, the shapes and the user's line."""
    if backend == "numba":
        pytest.importorskip("numba")
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    with pytest.raises(LinAlgError) as e:
        if backend == "tape":
            symnum.grad(lambda t: symnum.linalg.det(t))(singular)
        else:
            a = T.var("a", (2, 2))
            g = symsym.grad(T.linalg.det(a), a)
            symsym.function([a], g, linker="numpy" if backend == "compiled" else "numba")(singular)
    text = str(e.value)
    op = "det (its gradient)" if backend == "tape" else "inv:"  # the tape's rule, or symsym's inv node
    assert "singular" in text and op in text and "(2, 2)" in text and __file__ in text, text


@pytest.mark.parametrize("op", ["cholesky", "inv", "det", "eigh", "svd", "qr", "solve"])
def test_nan_in_nan_out(op):
    a = np.full((3, 3), np.nan)
    fn = getattr(symnum.linalg, op)
    out = fn(symnum.tensor(a), np.ones(3)) if op == "solve" else fn(symnum.tensor(a))
    outs = out if isinstance(out, tuple) else (out,)
    assert all(np.isnan(np.asarray(o)).any() for o in outs)


def test_wide_qr_and_full_svd_have_no_gradient_but_values():
    x = T.var("x", (2, 3))
    q, r = T.linalg.qr(x)
    np.testing.assert_allclose(symsym.function([x], r)(np.arange(6.0).reshape(2, 3) + np.eye(2, 3)),
                               np.linalg.qr(np.arange(6.0).reshape(2, 3) + np.eye(2, 3))[1])
    with pytest.raises(GradError, match="m >= n"):
        symsym.grad(T.sum(r), x)
    with pytest.raises(GradError, match="full_matrices"):
        symsym.grad(T.sum(T.linalg.svd(x, full_matrices=True)[0]), x)


def test_eigenvector_gradient_is_not_finite_at_a_repeated_eigenvalue():
    """The documented behaviour: F = 1/(w_j - w_i) is infinite there (values' own gradient stays finite)."""
    a = np.diag([1.0, 1.0, 2.0])
    g = symnum.grad(lambda t: symnum.sum(symnum.linalg.eigh(t)[1] * np.arange(9.0).reshape(3, 3)))(a)
    assert not np.all(np.isfinite(g))
    g = symnum.grad(lambda t: symnum.sum(symnum.linalg.eigh(t)[0] * np.arange(3.0)))(a)
    assert np.all(np.isfinite(g))


def test_norm_refuses_what_numpy_refuses():
    x = T.var("x", (2, 3, 4))
    with pytest.raises(ShapeError, match="norm"):
        T.linalg.norm(x, ord=2)
    with pytest.raises(ShapeError, match="matrix norm"):
        T.linalg.norm(T.var("v", (3,)), ord="fro")


@pytest.mark.parametrize("n", [1, 129, 300])
def test_cholesky_gradient_past_one_block_matches_pytorch(n):
    """cholesky_grad runs Murray's blocked algorithm for n past its block size (128): its cotangent of a
    equals PyTorch's for a random cotangent of L (a batch of two, one with a factor's worth of blocks and
    a ragged last block)."""
    if torch is None:
        pytest.skip("PyTorch is not installed")
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n, n))
    a = x @ np.swapaxes(x, -1, -2) / n + np.eye(n)
    g = rng.standard_normal((2, n, n))
    at = torch.tensor(a, requires_grad=True)
    torch.linalg.cholesky(at).backward(torch.tensor(g))
    want = at.grad.numpy()
    want = (want + np.swapaxes(want, -1, -2)) / 2  # torch's is the symmetric one already, up to rounding
    got = symnum.grad(lambda t: symnum.sum(symnum.linalg.cholesky(t) * g))(a)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
    lower = T.var("l", (2, n, n))
    cot = T.var("g", (2, n, n))
    compiled = symsym.function([lower, cot], T.cholesky_grad(lower, cot))
    np.testing.assert_allclose(compiled(np.linalg.cholesky(a), g), want, rtol=1e-9, atol=1e-9 * np.abs(want).max())
