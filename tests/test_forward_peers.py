"""The peers on the jacobian workload: torch.func.jacfwd/jacrev, jax.jacfwd/jacrev, autograd's make_jvp
per column and its jacobian, PyTensor's (reverse) jacobian in both its modes, against the chain rule written out by hand
(the workload's closed form). Skipped where the peer is not installed."""

import numpy as np
import pytest

from benchmarks.backends import Unsupported
from benchmarks.finite import rel_err
from benchmarks.peers import PEERS
from benchmarks.workloads import get

MODES = {"torch": ("forward", "reverse"), "jax": ("forward", "reverse"), "autograd": ("forward", "reverse"),
         "pytensor-numba": ("reverse",), "pytensor-cvm": ("reverse",)}
CASES = [(peer, f"n{n}-m{m}-{mode}") for peer, modes in MODES.items() for n, m in ((10, 1000), (1000, 10))
         for mode in modes]


@pytest.mark.parametrize("peer, size", CASES, ids=[f"{p}-{s}" for p, s in CASES])
def test_peer_jacobian_in_each_mode_matches_the_closed_form(peer, size):
    if PEERS[peer].missing():
        pytest.skip(PEERS[peer].missing())
    problem = get("jacobian").make(size)
    runner = PEERS[peer].prepare(problem, "jacobian")
    (jac,) = runner.grad(problem.arrays)
    (want,) = problem.hand_jacobian(*problem.arrays)
    assert np.asarray(jac).shape == want.shape
    assert rel_err(np.asarray(jac), want) <= 1e-12
    assert rel_err(np.asarray(runner.forward(problem.arrays)), problem.hand_forward(*problem.arrays)) <= 1e-12


def test_pytensor_has_no_forward_mode_jacobian_and_says_so():
    pytest.importorskip("pytensor")
    with pytest.raises(Unsupported, match="^pytensor-numba: no forward-mode Jacobian"):
        PEERS["pytensor-numba"].prepare(get("jacobian").make("n10-m1000-forward"), "jacobian")


@pytest.mark.parametrize("peer", list(MODES))
def test_peers_leave_the_mode_to_the_user_so_auto_is_skipped_with_the_reason(peer):
    if PEERS[peer].missing():
        pytest.skip(PEERS[peer].missing())
    assert "jacobian" in PEERS[peer].kinds
    with pytest.raises(Unsupported, match=f"^{peer}: forward or reverse mode is the user's choice"):
        PEERS[peer].prepare(get("jacobian").make("n10-m1000-auto"), "jacobian")
