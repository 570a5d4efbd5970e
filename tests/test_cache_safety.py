"""What the kernel cache loads runs, so it loads only what it checked (symsym/linkers/cache.py).

A hostile neighbour (another user, a group member, a shared ``NUMBA_CACHE_DIR``)
must not be able to put code in the user's process through the cache, and an
accident (a torn write, a full disk) must cost one compile, not the kernel.
Each test has a cache folder of its own (``TWOGRAD_CACHE_DIR``) and an empty
registry of loaded kernels, so what it checks is read from disk. Modes and
owners are checked as bits, since the suite may run as root, which writes
anywhere.
"""

from __future__ import annotations

import os
import pickle
import stat

import numpy as np
import pytest

from common import api as T
from symsym import function
from symsym.linkers import cache
from symsym.linkers.llvm import jit as llvm_jit

pytest.importorskip("numba")

from symsym.linkers.numba import diskcache

posix = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX owners and modes")

#: set by a planted pickle when it is unpickled
PLANTED: list[str] = []


def _ran(what: str) -> None:
    PLANTED.append(what)


class _Payload:
    """Unpickles into a call of :func:`_ran`: code run by whoever loads the file."""

    def __reduce__(self):
        return _ran, ("planted pickle",)


@pytest.fixture
def kernels(monkeypatch, tmp_path):
    """A fresh private cache folder, and nothing loaded yet in this process."""
    folder = tmp_path / "kernels"
    monkeypatch.setenv("TWOGRAD_CACHE_DIR", str(folder))
    monkeypatch.setattr(diskcache, "LOADED", {})
    monkeypatch.setattr(cache, "_INSTEAD", {})
    monkeypatch.setattr(llvm_jit, "LOADED", {})
    PLANTED.clear()
    return folder


def _array_graph():
    x = T.var("x", (3,))
    return x, T.sum(T.tanh(T.sin(x) * 3.0 + 0.25))


def _compiled(monkeypatch=None):
    """A numba kernel's function, built as a new process would (nothing loaded): checks its value."""
    if monkeypatch is not None:
        monkeypatch.setattr(diskcache, "LOADED", {})
    x, z = _array_graph()
    f = function([x], [z], linker="numba")
    v = np.array([0.1, -0.2, 0.3])
    np.testing.assert_allclose(f(v)[0], np.sum(np.tanh(np.sin(v) * 3.0 + 0.25)), rtol=1e-13)
    (fn,) = diskcache.LOADED.values()
    return fn


def _numba_files(folder):
    return sorted(p for p in folder.rglob("*") if p.suffix in (".nbi", ".nbc"))


# ---------------------------------------------------------------------------- where numba's files go


def test_numba_cache_dir_does_not_move_the_kernels_pickles(kernels, monkeypatch, tmp_path):
    from numba.core import caching, config

    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(shared))
    monkeypatch.setattr(config, "CACHE_DIR", str(shared))
    fn = _compiled()
    assert not [p for p in shared.rglob("*") if p.is_file()]  # nothing written where others can predict
    names = {p.suffix for p in _numba_files(kernels)}
    assert names == {".nbi", ".nbc"}  # numba's index and data live in the checked folder
    # where numba's own locators would look for this kernel: a pickle planted there is never loaded
    index = caching.FunctionCache(fn.py_func)._cache_file._index_path
    assert index.startswith(str(shared))
    with open(index, "wb") as f:
        pickle.dump(_Payload(), f)
    _compiled(monkeypatch)
    assert PLANTED == []


# ---------------------------------------------------------------------------- privacy


@posix
def test_files_are_private_whatever_the_umask(kernels):
    old = os.umask(0o002)
    try:
        _compiled()
        w = T.var("w", ())
        g = function([w], [T.tanh(T.sin(w) * 3.0 + 0.25)], linker="numba")  # an LLVM object file too
        np.testing.assert_allclose(g(np.asarray(0.3))[0], np.tanh(np.sin(0.3) * 3.0 + 0.25), rtol=1e-15)
    finally:
        os.umask(old)
    made = list(kernels.rglob("*"))
    assert {p.suffix for p in made} >= {".py", ".nbi", ".nbc", ".o"}
    for p in [kernels, *made]:
        st = p.lstat()
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        assert stat.S_IMODE(st.st_mode) == want, p
        assert st.st_uid == os.getuid(), p


def _scalar_object(kernels, monkeypatch):
    """The LLVM object file of a scalar kernel, compiled into ``kernels``, and nothing of it loaded in this
    process; returns (graph, path)."""
    w = T.var("w", ())
    z = T.tanh(T.sin(w) * 1.75 - 0.5)
    function([w], [z], linker="numba")
    (path,) = kernels.glob("l*.o")
    monkeypatch.setattr(llvm_jit, "LOADED", {})
    return (w, z), path


def _check_scalar(graph):
    w, z = graph
    f = function([w], [z], linker="numba")
    np.testing.assert_allclose(f(np.asarray(0.3))[0], np.tanh(np.sin(0.3) * 1.75 - 0.5), rtol=1e-15)


@posix
def test_a_cache_file_others_may_write_is_not_loaded(kernels, monkeypatch):
    pytest.importorskip("llvmlite")
    graph, path = _scalar_object(kernels, monkeypatch)
    path.chmod(0o664)  # as an earlier run under umask 002 left it: a group member may have rewritten it
    with pytest.warns(RuntimeWarning, match="not private"):
        _check_scalar(graph)
    assert stat.S_IMODE(path.lstat().st_mode) == 0o600  # compiled again and written private


@posix
def test_a_cache_file_that_is_a_link_is_not_followed(kernels, monkeypatch, tmp_path):
    pytest.importorskip("llvmlite")
    graph, path = _scalar_object(kernels, monkeypatch)
    elsewhere = tmp_path / "elsewhere.o"
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere)
    with pytest.warns(RuntimeWarning, match="not private"):
        _check_scalar(graph)
    assert path.is_file() and not path.is_symlink()


# ---------------------------------------------------------------------------- damage


@pytest.mark.parametrize("suffix", [".nbc", ".nbi"])
def test_a_torn_numba_cache_file_is_compiled_again(kernels, monkeypatch, suffix):
    _compiled()
    (torn,) = [p for p in _numba_files(kernels) if p.suffix == suffix]
    data = torn.read_bytes()
    torn.write_bytes(data[: len(data) // 2])  # a crash mid-write, a full disk
    with pytest.warns(RuntimeWarning, match="damaged") as seen:
        fn = _compiled(monkeypatch)
    assert len([w for w in seen if "damaged" in str(w.message)]) == 1
    assert sum(fn.stats.cache_misses.values()) == 1  # compiled again
    fn = _compiled(monkeypatch)  # and written whole: the next process loads it
    assert sum(fn.stats.cache_hits.values()) == 1 and sum(fn.stats.cache_misses.values()) == 0


def test_a_whole_numba_cache_file_that_does_not_rebuild_is_compiled_again(kernels, monkeypatch):
    fn = _compiled()
    (data,) = [p for p in _numba_files(kernels) if p.suffix == ".nbc"]
    fn._cache._cache_file._write(data, ("not", "a compile result"))  # passes its digest, unpickles
    with pytest.warns(RuntimeWarning, match="does not rebuild"):
        fn = _compiled(monkeypatch)
    assert sum(fn.stats.cache_misses.values()) == 1
    fn = _compiled(monkeypatch)
    assert sum(fn.stats.cache_hits.values()) == 1
