"""What a peer's timed region holds: the library's call, not the conversion of its inputs.

Each peer converts the problem's numpy arrays to its own values (tensors, device arrays) once, when its
timed function is made; the calls that are timed reuse them. These tests make the conversion cost an
hour on a fake clock (which also ticks a microsecond per reading, so that time passes): a timed region
that converted would read at least an hour a call. No wall clock is read by any assert.
"""

import pytest

from benchmarks import harness, report
from benchmarks.backends import BACKENDS, Hand
from benchmarks.peers import PEERS, XLA_ONE_THREAD, Peer, cxx_compiler, installed, peer_runner
from benchmarks.peerworker import Remote, _Served
from benchmarks.timing import measure
from benchmarks.workloads import get

HOUR = 3600.0


class FakeClock:
    """A clock that ticks one microsecond per reading; :meth:`spend` moves it on by more."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


def _slow_inputs(monkeypatch, peer: Peer, clock: FakeClock) -> list:
    """Make ``peer``'s conversion cost an hour of ``clock`` and count the conversions."""
    calls = []
    convert = peer.inputs

    def slow(arrays, wrt=()):
        calls.append(len(arrays))
        clock.spend(HOUR)
        return convert(arrays, wrt)

    monkeypatch.setattr(peer, "inputs", slow)
    return calls


def _timed_per_call(fn, clock: FakeClock) -> float:
    return measure(fn, min_time=1e-5, min_count=3, max_time=1e-4, min_sample=1e-6, clock=clock).median


@pytest.mark.parametrize("name", list(PEERS))
def test_a_peers_timed_calls_exclude_the_conversion_of_its_inputs(monkeypatch, name):
    peer = PEERS[name]
    if peer.missing():
        pytest.skip(peer.missing())
    problem = get("chain").make("sin-d3")
    runner = peer.prepare(problem, "grad")
    clock = FakeClock()
    calls = _slow_inputs(monkeypatch, peer, clock)
    for which in ("grad", "forward"):
        fn = runner.timed(which, problem.arrays)
        made = len(calls)
        assert _timed_per_call(fn, clock) < 1.0, f"{name} {which}: a conversion inside the timed calls"
        assert len(calls) == made, f"{name} {which}: converted while being timed"
    # the slow converter is the one the peer's calls use: the untimed path pays it on every call
    before = clock.now
    runner.grad(problem.arrays)
    assert clock.now - before >= HOUR


class CountingPeer(Peer):
    """The hand-written gradient behind a conversion step (a module-level class, so a worker can load it)."""

    name = "counting-peer"
    module = "json"
    mode = "hand-written numpy"
    timed_region = "the hand-written gradient"
    outside = "a copy of the inputs"

    def prepare(self, problem, kind, order=1):
        hand = Hand().prepare(problem, kind, order)
        return peer_runner(self, hand.grad, hand.forward)


def test_the_worker_converts_a_peers_inputs_once_outside_every_sample(monkeypatch):
    peer = CountingPeer()
    clock = FakeClock()
    calls = _slow_inputs(monkeypatch, peer, clock)
    served = _Served(peer)
    problem = harness.make_problem(get("chain"), "sin-d3")
    served.prepare(0, *problem.origin, problem.args, "grad", 1)
    converted = len(calls)   # the first call converts (it is the cross-check's call)
    samples = [served.sample(0, "grad", 5, clock) for _ in range(3)]
    assert max(samples) < 1.0
    assert len(calls) == converted + 1   # once, for all the samples
    served.sample(0, "forward", 5, clock)
    assert len(calls) == converted + 2


def test_the_report_and_results_carry_each_peers_settings(monkeypatch):
    peer = CountingPeer()
    monkeypatch.setitem(BACKENDS, peer.name, peer)
    results = harness.run([(get("chain"), ["sin-d3"])],
                          harness.Settings(min_time=0.005, min_count=2, max_time=0.02, memory=False,
                                           backends=("hand",), peers=(peer.name,)), progress=False)
    settings = results["peer_settings"][peer.name]
    assert settings["mode"] == "hand-written numpy" and settings["outside"] == "a copy of the inputs"
    assert "timed: the hand-written gradient" in report.markdown_report(results, [])


def test_jax_runs_xla_on_one_thread_set_before_jax_starts_in_its_worker():
    if PEERS["jax"].missing():
        pytest.skip(PEERS["jax"].missing())
    remote = Remote(PEERS["jax"], 60.0)
    try:
        settings = remote.settings()
    finally:
        remote.close()
    assert XLA_ONE_THREAD in settings["runtime"]["XLA_FLAGS"]
    assert "device_put" in settings["outside"] and "block_until_ready" in settings["timed"]


def test_cxx_compiler_is_cxx_or_one_on_the_path(monkeypatch, tmp_path):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert cxx_compiler() is None
    gxx = tmp_path / "clang++"
    gxx.write_text("#!/bin/sh\n")
    gxx.chmod(0o755)
    assert cxx_compiler() == str(gxx)
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert cxx_compiler() is None


def test_torch_compile_without_a_compiler_says_so_and_is_not_run(monkeypatch, capsys):
    from benchmarks import cli, peers

    if PEERS["torch"].missing():
        pytest.skip(PEERS["torch"].missing())
    monkeypatch.setattr(peers, "cxx_compiler", lambda: None)
    why = PEERS["torch-compile"].missing()
    assert why.startswith("torch-compile: torch.compile cannot run here") and "C++ compiler" in why
    assert "torch-compile" not in installed() and "torch" in installed()
    cli.main(["list"])
    out = capsys.readouterr().out
    assert "torch-compile  cannot run" in out and "needs a C++ compiler" in out
