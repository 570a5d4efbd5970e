"""The op table's scalar forms (the ``scalar`` trait) against the numpy impls, compiled by numba.

Every elementwise op either has a scalar form or is listed in
:data:`FALLBACK` with the reason it runs its numpy impl between fused loops;
a new elementwise op fails here until it is one or the other. Every form is
compiled once (all of them in one function, so numba compiles once) and run
on a grid of ordinary and edge values (signed zeros, subnormals, overflow,
inf, NaN) in every pairing, and must equal the impl there.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scalarcases import EDGES, input_kinds

from common.ops import OPS, Kind

numba = pytest.importorskip("numba")

#: elementwise ops without a scalar form, and why they fall back to numpy between kernels
FALLBACK = {
    "cast": "a dtype conversion: its result follows numpy's casting rules for each pair of dtypes, and the "
            "numba linker fuses float64 values only",
}

def _elementwise():
    return {name: op for name, op in OPS.items() if op.kind is Kind.ELEMENTWISE}


def test_every_elementwise_op_has_a_scalar_form_or_a_documented_fallback():
    missing = [name for name, op in _elementwise().items() if op.scalar is None and name not in FALLBACK]
    assert not missing, f"elementwise ops with neither a scalar form nor a FALLBACK reason: {missing}"
    stale = [name for name in FALLBACK if name in OPS and OPS[name].scalar is not None]
    assert not stale, f"ops listed as falling back that have a scalar form: {stale}"


def _grid():
    """Every pairing of the edge values, then random normals; a condition alternates."""
    a = np.array(EDGES)
    x = np.concatenate([np.repeat(a, len(a)), np.random.default_rng(0).standard_normal(200)])
    y = np.concatenate([np.tile(a, len(a)), np.random.default_rng(1).standard_normal(200)])
    c = (np.arange(x.size) % 3) == 0
    return x, y, c


@pytest.fixture(scope="module")
def forms():
    """(op name, compiled result, numpy result) for every op with a scalar form, from one numba function."""
    ops = [(name, op) for name, op in _elementwise().items() if op.scalar is not None]
    names = {"f": ["fa", "fb", "fc"], "b": ["ca", "cb", "cc"]}
    lines = ["def run(x, y, c, out):", "    for i in range(x.shape[0]):",
             "        fa = x[i]", "        fb = y[i]", "        fc = x[x.shape[0] - 1 - i]",
             "        ca = c[i]", "        cb = c[i]", "        cc = c[i]"]
    for row, (_, op) in enumerate(ops):
        args = [names[k][pos] for pos, k in enumerate(input_kinds(op))]
        lines.append(f"        out[{row}, i] = " + op.scalar.format(*args))
    ns = {"math": math, "np": np}
    exec("\n".join(lines), ns)
    run = numba.njit(error_model="numpy")(ns["run"])
    x, y, c = _grid()
    out = np.empty((len(ops), x.size))
    run(x, y, c, out)
    results = []
    for row, (name, op) in enumerate(ops):
        vals = {"f": [x, y, x[::-1]], "b": [c, c, c]}
        args = [vals[k][pos] for pos, k in enumerate(input_kinds(op))]
        with np.errstate(all="ignore"):
            ref = np.asarray(op.impl(*args), dtype=np.float64)
        results.append((name, out[row], ref, args))
    return results


def _mismatches(got, ref, rtol=1e-14):
    both_nan = np.isnan(got) & np.isnan(ref)
    same = (got == ref) & (np.signbit(got) == np.signbit(ref))
    finite = np.isfinite(got) & np.isfinite(ref) & (got != 0) & (ref != 0)
    with np.errstate(invalid="ignore"):
        close = finite & (np.abs(got - ref) <= rtol * np.abs(ref))
    return ~(both_nan | same | close)


def test_scalar_forms_equal_the_numpy_impls_on_edge_values(forms):
    assert len(forms) >= 30
    bad = []
    for name, got, ref, args in forms:
        wrong = np.flatnonzero(_mismatches(got, ref))
        if wrong.size:
            k = wrong[0]
            bad.append(f"{name}{tuple(float(a[k]) for a in args)}: scalar form {got[k]!r}, numpy {ref[k]!r}")
    assert not bad, "\n".join(bad)


def test_the_comparison_of_forms_can_fail():
    """The checker itself: a sign of zero, a NaN against a number and a last-digit error all count."""
    got = np.array([0.0, np.nan, 1.0 + 1e-12, 2.0])
    ref = np.array([-0.0, 1.0, 1.0, 2.0])
    assert _mismatches(got, ref).tolist() == [True, True, True, False]
