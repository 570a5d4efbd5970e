"""The engine sums a Hessian sweep's batched cotangents through the hook symnum registers for them,
without importing the batch type itself."""

import ast
from pathlib import Path

import numpy as np

from symnum import engine
from symnum.batched import Batched


def test_a_fan_out_of_batches_is_added_into_the_sum_the_sweep_made(rng):
    a, b, c = (rng.standard_normal((3, 4)) for _ in range(3))
    owned: set = set()
    first = engine.add_owned(owned, 7, Batched(a, 2.0), Batched(b, 2.0))
    np.testing.assert_allclose(first.dense(), 2 * (a + b), rtol=1e-15)
    second = engine.add_owned(owned, 7, first, Batched(c, 2.0))
    assert second is first  # the sweep's own sum, added into
    np.testing.assert_allclose(second.dense(), 2 * (a + b + c), rtol=1e-15)


def test_batches_of_other_factors_make_a_new_sum(rng):
    a, b, c = (rng.standard_normal((3, 4)) for _ in range(3))
    owned: set = set()
    first = engine.add_owned(owned, 7, Batched(a, 2.0), Batched(b, 2.0))
    kept = first.dense().copy()
    second = engine.add_owned(owned, 7, first, Batched(c, -3.0))
    np.testing.assert_allclose(second.dense(), 2 * (a + b) - 3 * c, rtol=1e-14)
    np.testing.assert_array_equal(first.dense(), kept)


def test_a_batch_keeps_its_dtype_where_a_gradient_is_cast(rng):
    g = Batched(rng.standard_normal((2, 3)))
    assert engine.as_dtype(g, np.dtype(np.float32)) is g


def test_the_engine_imports_no_batch_type():
    tree = ast.parse(Path(engine.__file__).read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "batched" not in modules and "symnum.batched" not in modules
