"""The leaves a tape node records (``TapeNode.leaf``), and the sweeps that trust them to skip pruning.

A grad with respect to every leaf the outputs depend on sweeps without a
pruning walk; any other grad must still prune exactly: the gradients, the
hooks that run and the nodes whose values are freed are what a pruned sweep
gives. Expected gradients are closed forms computed with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
from symnum.tape import MAX_LEAVES


def _leaves(n: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [S.tensor(rng.standard_normal(3), requires_grad=True) for _ in range(n)]


def test_a_chain_records_its_one_leaf():
    (x,) = _leaves(1)
    y = S.sin(S.sin(x))
    assert y.grad_fn.leaf is x


def test_several_leaves_are_recorded_by_id():
    a, b, c = _leaves(3)
    y = (a * b) + S.tanh(c)
    assert y.grad_fn.leaf == frozenset({id(a), id(b), id(c)})
    z = y * a  # a again: the set does not change
    assert z.grad_fn.leaf == y.grad_fn.leaf


def test_more_than_max_leaves_are_not_tracked():
    xs = _leaves(MAX_LEAVES + 1)
    total = xs[0]
    for x in xs[1:]:
        total = total + x
    assert total.grad_fn.leaf is None
    grads = S.grad(S.sum(total * total), xs)
    expected = 2 * sum(np.asarray(x.data) for x in xs)
    for g in grads:
        np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12)


def test_grad_with_respect_to_every_leaf_matches_the_closed_form():
    a, b, c = _leaves(3)
    loss = S.sum(S.sin(a) * b + c * c)
    ga, gb, gc = S.grad(loss, [a, b, c])
    na, nb, nc = (np.asarray(t.data) for t in (a, b, c))
    np.testing.assert_allclose(ga.numpy(), np.cos(na) * nb, rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), np.sin(na), rtol=1e-12)
    np.testing.assert_allclose(gc.numpy(), 2 * nc, rtol=1e-12)


@pytest.mark.parametrize("wrt", [0, 1])
def test_a_subset_of_the_leaves_still_prunes(wrt):
    """Only the branch that leads to the input runs: a hook on the other branch never fires, and that
    branch keeps its saved values (no rule of it ran, so nothing of it was freed)."""
    a, b = _leaves(2)
    left, right = S.sin(a), S.cos(b)
    fired = []
    left.register_hook(lambda g: fired.append("left"))
    right.register_hook(lambda g: fired.append("right"))
    loss = S.sum(left * right)
    (g,) = S.grad(loss, [(a, b)[wrt]])
    na, nb = np.asarray(a.data), np.asarray(b.data)
    expected = np.cos(na) * np.cos(nb) if wrt == 0 else -np.sin(nb) * np.sin(na)
    np.testing.assert_allclose(g.numpy(), expected, rtol=1e-12)
    assert fired == [("left", "right")[wrt]]
    skipped = (right, left)[wrt]
    assert skipped.grad_fn.args is not None


def test_a_non_leaf_input_among_tracked_leaves():
    """An intermediate tensor as the input: the root's leaves are not all inputs, so the sweep prunes."""
    a, b = _leaves(2)
    h = S.sin(a) + b
    loss = S.sum(h * h)
    (g,) = S.grad(loss, [h])
    np.testing.assert_allclose(g.numpy(), 2 * (np.sin(np.asarray(a.data)) + np.asarray(b.data)), rtol=1e-12)


def test_leaf_tracking_on_a_long_tape_of_many_leaves():
    """Each op adds a leaf: the sets stop growing past MAX_LEAVES, and the gradient is right."""
    xs = _leaves(4 * MAX_LEAVES, seed=1)
    total = xs[0] * 1.0
    for x in xs[1:]:
        total = total * 0.5 + S.sin(x)
    grads = S.grad(S.sum(total), xs)
    n = len(xs)
    for k, (x, g) in enumerate(zip(xs, grads)):
        scale = 0.5 ** (n - 1 - k)
        local = 1.0 if k == 0 else np.cos(np.asarray(x.data))
        np.testing.assert_allclose(g.numpy(), scale * local * np.ones(3), rtol=1e-12)
