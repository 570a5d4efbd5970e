"""A compiled function meets NaN, inf and out-of-domain inputs as the numpy it calls does.

Every op case (tests/opcases.py) and a scan get inputs with NaN, +-inf, a
negative number and zero in them, and run through ``symsym.function`` on both
linkers, three times: with warnings turned into errors, with them ignored,
and with them as errors again. The oracle is the reference interpreter
(``common.evaluate``: each op's numpy impl called from ordinary Python code)
under the same warning filter: the values must be the same, NaN for NaN and
inf for inf, and where numpy's warning becomes an error, the compiled
function raises that warning, never an error of its own making (numpy 2.5
imports ``warnings`` through the calling frame's builtins when it warns).
A fused numba loop computes without numpy's floating-point checks, so on that
linker a warning-as-error is allowed only where numpy raised one, and
otherwise the values must be numpy's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from opcases import CASES

from common import api as T
from common.errors import TwogradError
from common.evaluate import evaluate
from symsym import function

#: what the inputs get, in turn: every value a float op may not expect
SPECIAL = (np.nan, np.inf, -np.inf, -1.5, 0.0)
LINKERS = ["numpy", pytest.param("numba", marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("numba") is None, reason="numba is not installed"))]


def _poisoned(arrays: list, shift: int = 0) -> list[np.ndarray]:
    """Each float array with SPECIAL written over its first elements (each array from its own place in the
    cycle, so two inputs do not always meet the same value), the rest left as they were."""
    out = []
    for k, a in enumerate(arrays):
        a = np.array(a)
        if a.dtype.kind == "f":
            flat = a.reshape(-1)
            for j in range(min(flat.size, len(SPECIAL))):
                flat[j] = SPECIAL[(j + k + shift) % len(SPECIAL)]
        out.append(a)
    return out


def _warning(category, message) -> tuple:
    """A warning as ``(category, message)``; a 0-d carry runs as a numpy scalar, whose ufuncs say
    ``scalar divide`` where an array's say ``divide``: the same condition in the same operation."""
    return category, str(message).replace("scalar ", "")


def _outcome(run, mode: str):
    """``(arrays, warnings shown)`` of ``run()`` under the filter ``mode``, or ``(None, the warning
    raised)`` where ``mode`` is ``"error"``."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter(mode)
        try:
            values = [np.asarray(v) for v in run()]
        except Warning as w:
            return None, _warning(type(w), w)
    return values, {_warning(w.category, w.message) for w in shown}


def _check(xs, outs, arrays, linker: str) -> None:
    """Errors, then shown as they come ("always"), then errors again: the same values as numpy's and
    numpy's warnings. The schedule is not the interpreter's, so where several ops warn another may warn
    first; on the numba linker only a region run by numpy warns."""
    f = function(xs, outs, linker=linker)
    feed = dict(zip(xs, arrays))
    try:
        values, numpy_warns = _outcome(lambda: evaluate(outs, feed), "always")
    except TwogradError as e:  # an input the op refuses (a singular matrix): the same clear error, compiled
        for mode in ("error", "always"):
            with warnings.catch_warnings(), pytest.raises(type(e)):
                warnings.simplefilter(mode)
                f(*arrays)
        return
    for mode in ("error", "always", "error"):
        got, warned = _outcome(lambda: f(*arrays), mode)
        if got is None:
            assert warned in numpy_warns, f"the compiled function raised {warned}, numpy gives {numpy_warns}"
            continue
        if linker == "numpy":
            assert mode != "error" or not numpy_warns, f"numpy raises one of {numpy_warns}, the function did not"
            assert warned == (set() if mode == "error" else numpy_warns), f"{mode}: numpy gives {numpy_warns}"
        else:
            assert warned <= numpy_warns, f"{mode}: numpy gives {numpy_warns}, the compiled function {warned}"
        for g, w in zip(got, values):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300, equal_nan=True)


@pytest.mark.parametrize("linker", LINKERS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_every_op_case_meets_nonfinite_inputs_as_numpy_does(case, linker):
    arrays = _poisoned(case.inputs(np.random.default_rng(5)))
    xs = [T.var(f"x{k}", a.shape, a.dtype) for k, a in enumerate(arrays)]
    _check(xs, [case.fn(T.symbolic, *xs)], arrays, linker)


@pytest.mark.parametrize("linker", LINKERS)
def test_a_scan_meets_nonfinite_inputs_as_numpy_does(linker):
    """A scan of scalars (the numba linker compiles its loop whole) and one of vectors (a generated Python
    loop over a body): log, sqrt and a division per step, on sequences with NaN, inf and negatives."""
    xs, vs = T.var("xs", (12,)), T.var("vs", (6, 3))
    h0, v0 = T.var("h0", ()), T.var("v0", (3,))

    def step(h, x):
        h = h * 0.5 + T.log(x) - T.sqrt(x) / (x - 2.0)
        return h, T.exp(h) * x

    def vstep(v, x):
        v = T.tanh(v) + T.log(x) * T.sqrt(x + 1.0)
        return v, v / x

    h, ys = T.scan(step, h0, xs)
    v, ws = T.scan(vstep, v0, vs)
    rng = np.random.default_rng(6)
    arrays = [np.array([2.0, 1.0, *_poisoned([rng.uniform(0.5, 3.0, 10)])[0]]), _poisoned([rng.uniform(0.5, 3, (6, 3))],
              shift=2)[0], np.asarray(0.25), np.array([0.5, -0.5, 1.0])]
    _check([xs, vs, h0, v0], [h, ys, v, ws], arrays, linker)
