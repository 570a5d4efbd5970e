"""Shared fixtures. ``tests/`` is on sys.path (pytest's rootdir import), so
tests import the op cases as ``from opcases import CASES``."""

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)


@pytest.fixture(scope="session", autouse=True)
def _peer_caches_in_tmp(tmp_path_factory):
    """PyTensor caches its compiled code in the home folder; in tests it goes to the session's tmp
    folder instead (peers run in worker processes, which inherit the environment)."""
    os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={tmp_path_factory.mktemp('pytensor')}")
    # the numba linker's kernels (symsym.linkers.cache), likewise, shared by the session's tests
    os.environ.setdefault("TWOGRAD_CACHE_DIR", str(tmp_path_factory.mktemp("twograd-kernels")))


@pytest.fixture(scope="module")
def module_kernel_cache(tmp_path_factory):
    """A kernel cache folder of the test module's own (``pytestmark = pytest.mark.usefixtures(...)``), for
    modules that count compiles or must not find another module's kernels."""
    folder = tmp_path_factory.mktemp("kernels")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TWOGRAD_CACHE_DIR", str(folder))
        yield folder
