"""The op table's batching rules, on numbers and on symbols, against a loop over the batch.

Each op case is run with a batch of 3 inputs in every pattern of batched and
unbatched inputs; the batched result must equal the numpy reference applied
to each batch element. The same rules run on the numeric namespace (what a
batched interpreter computes) and on the symbolic one (what ``vectorize``
builds, evaluated by the reference interpreter).
"""

import itertools

import numpy as np
import pytest

import common
from common import api as T
from common.graph import inputs_of
from common.ops import OPS, numeric
from common.ops.batching import apply_batched
from symsym import vectorize
from tests.opcases import CASES

B = 3



def _last_apply(case, arrays):
    """(op, inputs, params) of the last application of the case's op, on numbers."""
    seen = []

    def apply(op, inputs, params):
        seen.append((op, inputs, params))
        return op.impl(*inputs, **params)

    case.fn(common.ops.Namespace(apply), *arrays)
    mine = [s for s in seen if s[0].name == case.op]
    if not mine:
        pytest.skip(f"case {case.id} applies {case.op} through numpy's operators")
    return mine[-1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_numeric_batching_matches_a_loop(case):
    rng = np.random.default_rng(0)
    batches = [case.inputs(rng) for _ in range(B)]
    op, inputs, params = _last_apply(case, batches[0])
    if op.batch is None:
        pytest.skip(f"{op.name} has no batching rule")
    per_row = [_last_apply(case, b)[1] for b in batches]
    n = len(inputs)
    for pattern in itertools.product([False, True], repeat=n):
        if not any(pattern):
            continue
        # Inputs the case derives from others (index arrays, refs) stay those of row 0 unless batched.
        if any(p and not isinstance(inputs[i], np.ndarray) for i, p in enumerate(pattern)):
            continue
        args = tuple(np.stack([row[i] for row in per_row]) if p else inputs[i] for i, p in enumerate(pattern))
        out, batched = apply_batched(numeric, op, args, pattern, params)
        rows = [op.impl(*(row[i] if p else inputs[i] for i, p in enumerate(pattern)), **params)
                for row in per_row]
        expected = np.stack(rows)
        got = np.asarray(out) if batched else np.broadcast_to(out, expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12,
                                   err_msg=f"{op.name} batched={pattern}")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vectorize_matches_a_loop(case):
    rng = np.random.default_rng(1)
    batches = [case.inputs(rng) for _ in range(B)]
    for k in case.wrt:
        xs = [T.var(f"x{i}", np.shape(a), np.asarray(a).dtype) for i, a in enumerate(batches[0])]
        out = case.fn(T.symbolic, *xs)
        big = T.var("batch", (B, *xs[k].shape), xs[k].dtype)
        (vout,) = vectorize([out], {xs[k]: big}, B)
        used = {id(v) for v in inputs_of(vout)}
        feed = {x: a for x, a in zip(xs, batches[0]) if id(x) in used}
        feed[big] = np.stack([b[k] for b in batches])
        got = common.evaluate(vout, feed)
        expected = np.stack([case.ref(*(b[k] if i == k else a for i, a in enumerate(batches[0])))
                             for b in batches])
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_per_element_fallback_for_an_op_without_a_rule():
    op = OPS["softmax"]
    saved, op.batch = op.batch, None
    try:
        x = np.random.default_rng(2).standard_normal((B, 4))
        out, batched = apply_batched(numeric, op, (x,), (True,), {"axis": 0})
    finally:
        op.batch = saved
    assert batched
    np.testing.assert_allclose(out, np.stack([np.exp(r) / np.exp(r).sum() for r in x]))
