"""Cutting long fused regions into kernels (symsym/linkers/cut.py): every piece within the limits.

An unrolled diagonal LSTM is one elementwise region of thousands of nodes
reading hundreds of values; cut by node count alone its pieces had too many
arguments and were left to numpy whole. Cut by values too, every piece is a
kernel, and the results still equal the numpy linker's.
"""

from __future__ import annotations

import numpy as np
import pytest

from common import api as T
from common.graph import toposort
from symsym import function
from symsym.linkers.numba import cut
from symsym.linkers.numba.lower import _consumers, _needed, _outside_inputs

pytest.importorskip("numba")


def _wide_region(width: int, depth: int):
    """``width`` inputs, each through ``depth`` steps that also read the next input: many values at once."""
    xs = [T.var(f"x{k}", (100,)) for k in range(width)]
    ys = list(xs)
    for step in range(depth):
        ys = [T.tanh(ys[k] * 0.5 + xs[(k + step + 1) % width]) for k in range(width)]
    return xs, ys


def test_every_piece_stays_within_the_limits():
    xs, ys = _wide_region(40, 6)
    out = sum(ys[1:], ys[0])
    order = toposort([out])
    nodes = [n for n in order if n.op is not None and not n.is_const]
    consumers = _consumers(order, [out])
    got = cut.pieces(nodes, consumers, 50, 16)
    assert [n for p in got for n in p] == nodes  # consecutive, in order, nothing lost
    for p in got:
        inside = {id(n) for n in p}
        assert len(p) <= 50
        assert len(p) == 1 or len(_needed(p, inside, consumers)) + len(_outside_inputs(p, inside)) <= 16


def test_a_region_with_many_values_becomes_kernels_equal_to_numpy(monkeypatch, tmp_path):
    """The same cut inside ``function``, at a smaller value limit so that few, cheap kernels show it."""
    from symsym.linkers.numba import lower as numba_linker

    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(numba_linker, "MAX_KERNEL_VALUES", 12)
    xs = [T.var(f"x{k}", (100,)) for k in range(16)]
    ys = list(xs)
    for step in range(2):
        ys = [ys[k] * 0.5 + xs[(k + step + 1) % 16] * ys[k] for k in range(16)]
    out = sum(ys[1:], ys[0])
    f = function(xs, [out], linker="numba")
    driver = f.source.split("\n# kernel")[0]
    assert driver.count("_impl(") >= 3  # cut into several kernels...
    assert "np_" not in driver and " * " not in driver and " + " not in driver  # ...that hold every node
    args = [np.random.default_rng(k).uniform(-1, 1, 100) for k in range(16)]
    np.testing.assert_allclose(f(*args)[0], function(xs, [out])(*args)[0], rtol=1e-12)
