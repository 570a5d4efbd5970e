"""``common.optim``: sgd, momentum and adam follow torch.optim's trajectories, on either backend's gradients.

The model is a small tanh MLP with a softmax cross-entropy, in float64. The
reference trajectory is PyTorch's own: its autograd gradients stepped by
``torch.optim.SGD`` / ``Adam``; ours are symnum's or symsym's gradients stepped
by ``common.optim``. After 50 steps the parameters agree to 1e-9.
"""

from __future__ import annotations

import numpy as np
import pytest

import symnum as S
import symsym
from common import api as T
from common import optim
from common.errors import TwogradError

torch = pytest.importorskip("torch")

STEPS = 50
OPTIMISERS = {
    "sgd": (lambda: optim.sgd(0.3), lambda ps: torch.optim.SGD(ps, lr=0.3)),
    "momentum": (lambda: optim.momentum(0.1, 0.9), lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
    "adam": (lambda: optim.adam(0.02, 0.8, 0.99, 1e-6),
             lambda ps: torch.optim.Adam(ps, lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
}


def loss_fn(ns, w1, b1, w2, b2, x, labels):
    return ns.mean(ns.softmax_cross_entropy(ns.tanh(x @ w1 + b1) @ w2 + b2, labels))


def _data():
    rng = np.random.default_rng(7)
    params = {"hidden": (rng.standard_normal((3, 8)) / 2, 0.1 * rng.standard_normal(8)),
              "out": [rng.standard_normal((8, 4)) / 3, 0.1 * rng.standard_normal(4)]}
    x = rng.standard_normal((16, 3))
    labels = np.eye(4)[rng.integers(0, 4, 16)]
    return params, x, labels


def _flat(p):
    return [*p["hidden"], *p["out"]]


def _torch_trajectory(kind: str) -> list[np.ndarray]:
    params, x, labels = _data()
    ts = [torch.tensor(a, requires_grad=True) for a in _flat(params)]
    opt = OPTIMISERS[kind][1](ts)
    tx, ty = torch.tensor(x), torch.tensor(labels)
    for _ in range(STEPS):
        opt.zero_grad()
        loss = -(ty * torch.log_softmax(torch.tanh(tx @ ts[0] + ts[1]) @ ts[2] + ts[3], dim=-1)).sum(-1).mean()
        loss.backward()
        opt.step()
    return [t.detach().numpy() for t in ts]


def _symnum_grads(x, labels):
    g = S.grad(lambda *ps: loss_fn(S, *ps, x, labels), argnums=(0, 1, 2, 3))
    return lambda p: g(*_flat(p))


def _symsym_grads(x, labels):
    variables = [T.var(n, a.shape) for n, a in zip(("w1", "b1", "w2", "b2"), _flat(_data()[0]))]
    cost = loss_fn(T, *variables, T.const(x), T.const(labels))
    f = symsym.function(variables, symsym.grad(cost, variables))
    return lambda p: f(*_flat(p))


def _tree(p, grads):
    """The gradients in the parameters' structure."""
    return {"hidden": (grads[0], grads[1]), "out": [grads[2], grads[3]]}


@pytest.mark.parametrize("backend", ["symnum", "symsym"])
@pytest.mark.parametrize("kind", list(OPTIMISERS))
def test_trajectory_matches_torch_optim(kind, backend):
    params, x, labels = _data()
    grads_of = (_symnum_grads if backend == "symnum" else _symsym_grads)(x, labels)
    opt = OPTIMISERS[kind][0]()
    state = opt.init(params)
    start = [a.copy() for a in _flat(params)]
    for _ in range(STEPS):
        params, state = opt.update(_tree(params, grads_of(params)), state, params)
    ours, ref = _flat(params), _torch_trajectory(kind)
    for a, b, s in zip(ours, ref, start):
        assert np.abs(b - s).max() > 1e-2             # the parameters moved
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert isinstance(params, dict) and isinstance(params["hidden"], tuple) and isinstance(params["out"], list)


def test_update_leaves_its_inputs_alone_and_keeps_float32():
    p = {"w": np.ones(3, np.float32)}
    g = {"w": np.full(3, 0.5, np.float32)}
    opt = optim.adam(0.1)
    state = opt.init(p)
    new, state2 = opt.update(g, state, p)
    assert new["w"].dtype == np.float32 and state2.step == 1
    np.testing.assert_array_equal(p["w"], 1.0)
    np.testing.assert_array_equal(state.mean["w"], 0.0)
    np.testing.assert_allclose(new["w"], 1.0 - 0.1, rtol=1e-6)   # the first Adam step is lr * sign(g)


def test_bad_trees_are_clear_errors():
    opt = optim.momentum(0.1)
    p = {"w": np.ones(3), "b": np.zeros(2)}
    state = opt.init(p)
    with pytest.raises(TwogradError, match=r"momentum.update: the gradients' structure .* differs.*test_optim.py"):
        opt.update({"w": np.ones(3)}, state, p)
    with pytest.raises(TwogradError, match=r"momentum.update: gradient leaf 0 has shape \(3,\), its parameter \(2,\)"):
        opt.update({"w": np.ones(2), "b": np.ones(3)}, state, p)  # leaves in sorted key order: b, w
    with pytest.raises(TwogradError, match=r"adam.init: parameter leaf 0 is a str"):
        optim.adam().init(["w"])
    with pytest.raises(TwogradError, match=r"sgd.update: gradient leaf 0 is a ndarray of dtype int64"):
        optim.sgd(0.1).update([np.ones(2, np.int64)], (), [np.ones(2)])
