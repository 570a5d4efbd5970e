"""The peers (PyTorch, JAX, HIPS autograd, PyTensor) and their worker processes.

Each installed peer computes every workload it claims, at the workload's small check size, and
agrees with the hand-written numpy reference (or the closed form, for higher orders); a workload
it cannot run says why. These skip when the peer is not installed. The worker tests use fake
peers (any machine runs them): a one-off past its budget is killed and reported, the run goes on.
"""

import os
import time

import numpy as np
import pytest

from benchmarks import harness
from benchmarks.backends import BACKENDS, Hand, Unsupported
from benchmarks.finite import rel_err
from benchmarks.peers import PEERS, Peer
from benchmarks.workloads import get, visible

# torch.compile and PyTensor's C backend compile every graph with a C++ compiler (seconds each, cold): they
# are checked on a few workloads that cover their kinds (first derivatives, a Hessian, a refused order)
COMPILERS = {"torch-compile": ("chain", "mlp", "rosenbrock", "order"), "pytensor-cvm": ("chain", "mlp", "rosenbrock")}
# PyTensor's numba mode compiles the transformer's attention graph for over a minute cold; the benchmark
# cross-checks it, here the other peers check the adapters that workload calls
LEFT_OUT = {"pytensor-numba": ("transformer",)}
CASES = [(peer, w.name, size) for peer in PEERS for w in visible() for size in w.check
         if w.name in COMPILERS.get(peer, (w.name,)) and w.name not in LEFT_OUT.get(peer, ())]


def _reference_orders(problem, order: int, x):
    """Derivatives of order 1..``order``: the closed form where the workload has one, else symsym's."""
    if problem.exact is not None:
        return [problem.exact(k, x) for k in range(1, order + 1)]
    symsym = BACKENDS["symsym"]
    return [symsym.prepare(problem, "order", k).grad(problem.arrays)[0] for k in range(1, order + 1)]


@pytest.mark.parametrize("peer, name, size", CASES, ids=[f"{p}-{n}-{s}" for p, n, s in CASES])
def test_peer_computes_what_it_claims_and_agrees_with_the_reference(peer, name, size):
    backend, w = PEERS[peer], get(name)
    if backend.missing():
        pytest.skip(backend.missing())
    problem = w.make(size)
    if w.kind not in backend.kinds:
        pytest.skip(f"{peer} does not claim {w.kind}")
    try:
        if w.kind == "order":   # up to order 3: PyTensor takes ~50 s to compile order 6 of sin(sin(sin(w)))
            x = problem.arrays[problem.wrt_index[0]]
            top = min(problem.max_order, 3)
            got = [float(np.asarray(backend.prepare(problem, "order", k).grad(problem.arrays)[0]))
                   for k in range(1, top + 1)]
            want = _reference_orders(problem, top, x)
            assert rel_err(got, [float(np.asarray(v)) for v in want]) <= w.rtol
            return
        runner = backend.prepare(problem, w.kind)
    except Unsupported as e:
        assert str(e).startswith(f"{peer}:") and len(str(e)) > len(peer) + 10, f"no reason given: {e!r}"
        return
    out = runner.grad(problem.arrays)
    assert rel_err([np.asarray(o) for o in out], problem.hand_derivative(w.kind)(*problem.arrays)) <= w.rtol
    if runner.forward is not None and problem.hand_forward is not None:
        assert rel_err(runner.forward(problem.arrays), problem.hand_forward(*problem.arrays)) <= w.rtol


@pytest.mark.parametrize("peer", [p for p, b in PEERS.items() if b.max_nodes is not None])
def test_a_graph_larger_than_a_peer_handles_is_skipped_with_the_reason(peer):
    """No peer library needed: the limit is checked before the peer is asked."""
    backend = PEERS[peer]
    big = get("chain").make("sin-d10000")
    with pytest.raises(Unsupported, match=f"^{peer}: 10001 nodes > {backend.max_nodes}: .{{20,}}"):
        backend.check_size(big)
    backend.check_size(get("chain").make("sin-d10"))


# --- fake peers: the worker process, its budget and its errors ------------------------------------------
# Module level, so that a worker (a fresh interpreter) can unpickle them by name; ``module = "json"`` is
# importable everywhere.

class SlowOnDeepChains(Peer):
    """The hand-written gradient, except that a chain deeper than 3 'compiles' for a minute."""

    name = "slow-peer"
    module = "json"

    def prepare(self, problem, kind, order=1):
        if problem.label and "depth 3," not in problem.label:
            time.sleep(60)
        return Hand().prepare(problem, kind, order)


class Raises(Peer):
    name = "raising-peer"
    module = "json"

    def prepare(self, problem, kind, order=1):
        raise ValueError("boom in the peer")


class Dies(Peer):
    name = "dying-peer"
    module = "json"

    def prepare(self, problem, kind, order=1):
        os._exit(3)


def _run_with(monkeypatch, peer, sizes, **settings):
    monkeypatch.setitem(BACKENDS, peer.name, peer)
    return harness.run([(get("chain"), sizes)],
                       harness.Settings(min_time=0.005, min_count=2, max_time=0.02, memory=False,
                                        peers=(peer.name,), **settings), progress=False)


def _cells(results, backend):
    return {c["size"]: c for c in results["cells"] if c["backend"] == backend}


def test_a_one_off_past_its_budget_is_killed_reported_and_the_run_goes_on(monkeypatch):
    peer = SlowOnDeepChains()
    assert "depth 3," in get("chain").make("sin-d3").label    # what the fake peer goes by
    results = _run_with(monkeypatch, peer, ["sin-d10", "sin-d3"], peer_budget=1.0)
    cells = _cells(results, peer.name)
    slow, quick = cells["sin-d10"], cells["sin-d3"]
    assert slow["status"] == "skipped"
    assert "compile over budget" in slow["note"] and "1 s" in slow["note"]
    assert quick["status"] == "ok" and quick["time"]["median"] > 0    # a fresh worker took the next cell
    assert any(c["check"] == f"{peer.name} vs symnum" and c["ok"] for c in results["checks"])
    assert all(c["status"] == "ok" for c in results["cells"] if c["backend"] != peer.name)
    assert results["ok"]


def test_an_error_in_the_worker_fails_its_cell_with_the_error(monkeypatch):
    results = _run_with(monkeypatch, Raises(), ["sin-d3"])
    cell = _cells(results, "raising-peer")["sin-d3"]
    assert cell["status"] == "error" and cell["note"] == "ValueError: boom in the peer"
    assert "in the peer's worker" in cell["traceback"]
    assert not results["ok"]
    assert _cells(results, "symsym")["sin-d3"]["status"] == "ok"


def test_a_worker_that_dies_fails_its_cell_and_the_run_goes_on(monkeypatch):
    results = _run_with(monkeypatch, Dies(), ["sin-d3"])
    cell = _cells(results, "dying-peer")["sin-d3"]
    assert cell["status"] == "error" and "worker process died (exit code 3)" in cell["note"]
    assert _cells(results, "symsym")["sin-d3"]["status"] == "ok"


def test_a_missing_peer_is_a_note_not_a_failure(monkeypatch):
    class Absent(Peer):
        name = "absent-peer"
        module = "twograd_no_such_module_anywhere"

    results = _run_with(monkeypatch, Absent(), ["sin-d3"])
    assert results["ok"]
    assert results["notes"] == ["absent-peer: not installed (pip install twograd_no_such_module_anywhere)"]
    assert not _cells(results, "absent-peer")
