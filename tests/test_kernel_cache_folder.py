"""The kernel cache folder must be the user's own: what it holds runs (symsym/linkers/cache.py)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from common import api as T
from symsym import function
from symsym.linkers import cache

pytest.importorskip("llvmlite")
posix = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")


def _scalar_graph():
    w = T.var("w", ())
    return w, T.tanh(T.sin(w) * 3.0 + 0.25)


@posix
def test_a_new_folder_is_made_private(monkeypatch, tmp_path):
    folder = tmp_path / "fresh" / "kernels"
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(folder))
    w, z = _scalar_graph()
    f = function([w], [z], linker="numba")
    assert cache.cache_dir() == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(folder.glob("l*.o"))  # the kernel's code went there
    np.testing.assert_allclose(f(np.asarray(0.3))[0], np.tanh(np.sin(0.3) * 3.0 + 0.25), rtol=1e-15)


@posix
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o722])
def test_a_folder_others_may_write_is_not_used(monkeypatch, tmp_path, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(shared))
    monkeypatch.setattr(cache, "_INSTEAD", {})
    with pytest.warns(RuntimeWarning, match="not private"):
        instead = cache.cache_dir()
    assert instead != shared and stat.S_IMODE(instead.stat().st_mode) == 0o700
    w, z = _scalar_graph()
    f = function([w], [z], linker="numba")
    assert not list(shared.iterdir())  # nothing written to, or read from, the shared folder
    np.testing.assert_allclose(f(np.asarray(0.3))[0], np.tanh(np.sin(0.3) * 3.0 + 0.25), rtol=1e-15)
    assert cache.cache_dir() == instead  # one temporary folder for the process, one warning
