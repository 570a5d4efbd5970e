"""symsym.jacobian's mode choice (forward when x has fewer elements than y) and the chain's cheapest
multiplication order (book section 6.5.9), against hand-written Jacobians and a brute-force search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import symsym as Y
from common.api import symbolic as T
from common.api import var
from common.errors import GradError
from symsym.jacmode import chain_order

RNG = np.random.default_rng(0)
W1, W2 = RNG.standard_normal((6, 3)) / 2, RNG.standard_normal((40, 6)) / 2


def _net(x):
    return T.tanh(W2 @ T.tanh(W1 @ x))


def _hand(xv):
    """dy/dx of tanh(W2 tanh(W1 x)) by the chain rule in numpy."""
    h = np.tanh(W1 @ xv)
    y = np.tanh(W2 @ h)
    return (1 - y ** 2)[:, None] * W2 @ ((1 - h ** 2)[:, None] * W1)


def test_auto_picks_forward_for_a_tall_jacobian_and_reverse_for_a_wide_one():
    x = var("x", (3,))
    xv = np.array([0.3, -0.5, 0.8])
    tall = Y.jacobian(_net(x), x)
    assert Y.jacobian_mode(tall) == "forward"
    np.testing.assert_allclose(Y.function([x], tall)(xv), _hand(xv), rtol=1e-12, atol=1e-14)
    z = var("z", (40,))
    wide = Y.jacobian(T.sum(T.tanh(W1.T @ T.tanh(W2.T @ z))), z)
    assert Y.jacobian_mode(wide) == "reverse"


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_forced_modes_agree_with_the_hand_jacobian(mode):
    x = var("x", (3,))
    xv = np.array([-0.2, 0.1, 0.6])
    j = Y.jacobian(_net(x), x, mode=mode)
    assert Y.jacobian_mode(j) == mode
    np.testing.assert_allclose(Y.function([x], j)(xv), _hand(xv), rtol=1e-12, atol=1e-14)
    assert Y.jacobian_mode(_net(x)) is None


def test_a_bad_mode_is_a_grad_error():
    x = var("x", (3,))
    with pytest.raises(GradError, match="mode"):
        Y.jacobian(T.sin(x), x, mode="sideways")


def _brute(dims, i, j):
    """The cheapest product J_j ... J_i by trying every split (exponential; small chains only)."""
    if i == j:
        return 0
    return min(_brute(dims, i, s) + _brute(dims, s + 1, j) + dims[j] * dims[s] * dims[i - 1] for s in range(i, j))


@pytest.mark.parametrize("seed", range(6))
def test_chain_order_is_the_cheapest_bracketing(seed):
    dims = list(np.random.default_rng(seed).integers(1, 60, 6))
    cost, order = chain_order(dims)
    assert cost == _brute(dims, 1, len(dims) - 1)
    assert sorted(order.replace("(", " ").replace(")", " ").split()) == sorted(f"J{k}" for k in range(1, 6))


def test_chain_order_prefers_a_mixed_order_when_the_ends_are_both_large():
    # x and y have 100 elements, the middle 1: neither pure forward nor pure reverse is cheapest
    cost, order = chain_order([100, 100, 1, 100, 100])
    forward = 100 * 1 * 100 + 100 * 100 * 100 + 100 * 100 * 100  # J2 J1, then J3 (.), then J4 (.)
    assert cost < forward
    assert order == "((J4 J3) (J2 J1))"


def test_explain_jacobian_shows_the_chain_a_line_per_link():
    x = var("x", (3,))
    plan = Y.explain_jacobian(_net(x), x)
    assert plan.dims == [3, 6, 6, 40, 40]
    text = str(plan)
    assert len(text.splitlines()) == 4 + 4  # a head, four links, the costs, the order, the mode
    assert "forward mode" in text and "cheapest order: (J4 (J3 (J2 J1)))" in text
    assert plan.forward == 6 * 6 * 3 + 40 * 6 * 3 + 40 * 40 * 3
    assert plan.reverse == 40 * 40 * 6 + 40 * 6 * 6 + 40 * 6 * 3  # ((J4 J3) J2) J1


def test_a_fork_is_one_link_and_long_chains_are_walked_without_recursion():
    x = var("x", (4,))
    fork = T.sin(x) * T.cos(x)
    plan = Y.explain_jacobian(T.exp(fork), x)
    assert plan.dims == [4, 4, 4]
    y = x
    for _ in itertools.repeat(None, 5000):
        y = T.sin(y)
    plan = Y.explain_jacobian(y, x)
    assert len(plan.dims) == 5001 and "not searched" in plan.order and plan.cost == plan.forward
    assert len(str(plan).splitlines()) == 5000 + 4
