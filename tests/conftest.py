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
