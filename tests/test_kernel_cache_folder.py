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


def _refused(monkeypatch, folder):
    """The private temporary folder used instead of ``folder`` (which must be refused, with a warning)."""
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(folder))
    monkeypatch.setattr(cache, "_INSTEAD", {})
    with pytest.warns(RuntimeWarning, match="not private"):
        instead = cache.cache_dir()
    assert instead != folder and stat.S_IMODE(instead.stat().st_mode) == 0o700
    return instead


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
    instead = _refused(monkeypatch, shared)
    w, z = _scalar_graph()
    f = function([w], [z], linker="numba")
    assert not list(shared.iterdir())  # nothing written to, or read from, the shared folder
    np.testing.assert_allclose(f(np.asarray(0.3))[0], np.tanh(np.sin(0.3) * 3.0 + 0.25), rtol=1e-15)
    assert cache.cache_dir() == instead  # one temporary folder for the process, one warning


@posix
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_a_parent_others_may_write_makes_the_folder_unsafe(monkeypatch, tmp_path, mode):
    # another user may rename the private folder away and put their own in its place
    parent = tmp_path / "open"
    parent.mkdir()
    folder = parent / "kernels"
    folder.mkdir(mode=0o700)
    parent.chmod(mode)
    _refused(monkeypatch, folder)


@posix
def test_a_sticky_parent_is_safe_for_a_folder_of_ones_own(monkeypatch, tmp_path):
    # as /tmp: others may add entries but not rename or delete this user's
    parent = tmp_path / "sticky"
    parent.mkdir()
    parent.chmod(0o1777)
    folder = parent / "kernels"
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(folder))
    assert cache.cache_dir() == folder
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


@posix
@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="making a folder of another owner")
def test_a_parent_another_user_owns_makes_the_folder_unsafe(monkeypatch, tmp_path):
    parent = tmp_path / "theirs"
    parent.mkdir(mode=0o755)
    folder = parent / "kernels"
    folder.mkdir(mode=0o700)
    os.chown(parent, 65534, 65534)
    _refused(monkeypatch, folder)
