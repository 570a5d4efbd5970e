"""The transformer workload: its hand-written backprop against finite differences, every backend against it.

The hand backprop is the reference every ratio of the benchmark is measured
against, so it is checked on its own first (central differences of its own
numpy forward, on every weight), then the IR's cost against the numpy
forward, then symnum, symsym and two peers (PyTorch eager and HIPS autograd,
whose adapters spell the integer-label cross-entropy, the softmax and erf)
against the hand gradient, on the workload's small check size.
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
import symsym
from benchmarks.finite import central_differences, rel_err
from benchmarks.workloads import get
from common import evaluate


@pytest.fixture(scope="module")
def problem():
    w = get("transformer")
    return w.make(w.check[0])


@pytest.fixture(scope="module")
def hand(problem):
    return problem.hand_grad(*problem.arrays)


def test_hand_backprop_matches_central_differences(problem, hand):
    """Every element of each weight up to 48, else 48 drawn at random: each a central difference."""
    arrays, rng = problem.arrays, np.random.default_rng(3)
    for k, i in enumerate(problem.wrt_index):
        flat = arrays[i].ravel()
        picks = np.arange(flat.size) if flat.size <= 48 else rng.choice(flat.size, 48, replace=False)

        def cost(xs, i=i):
            full = flat.copy()
            full[picks] = xs
            args = list(arrays)
            args[i] = full.reshape(arrays[i].shape)
            return problem.hand_forward(*args)
        fd = central_differences(cost, flat[picks])
        assert rel_err(hand[k].ravel()[picks], fd) < 1e-7, problem.wrt[k]


def test_the_graph_computes_the_hand_forward(problem):
    cost, variables = problem.graph()
    got = evaluate(cost, dict(zip(variables, problem.arrays)))
    np.testing.assert_allclose(got, problem.hand_forward(*problem.arrays), rtol=1e-12)
    assert problem.arrays[-1].dtype == bool and problem.arrays[-2].dtype.kind == "i"   # a mask, integer labels


def test_symnum_and_symsym_match_the_hand_backprop(problem, hand):
    arrays = problem.arrays
    tape = S.grad(lambda *a: problem.fn(S, *a), argnums=tuple(problem.wrt_index))(*arrays)
    assert rel_err(list(tape), hand) < 1e-10
    cost, variables = problem.graph()
    f = symsym.function(variables, symsym.grad(cost, [variables[i] for i in problem.wrt_index]))
    assert rel_err(f(*arrays), hand) < 1e-10


@pytest.mark.parametrize("peer", ["torch", "autograd"])
def test_peers_match_the_hand_backprop(problem, hand, peer):
    pytest.importorskip(peer)
    from benchmarks.peers import PEERS

    runner = PEERS[peer].prepare(problem, "grad")
    assert rel_err(runner.grad(problem.arrays), hand) < 1e-10
    assert abs(runner.forward(problem.arrays) - problem.hand_forward(*problem.arrays)) < 1e-12
