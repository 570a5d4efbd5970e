"""What the scalar-form tests of both native paths share: the edge values, and which inputs are conditions.

Tests import these as ``from scalarcases import EDGES, input_kinds`` (the tests folder is on the path).
"""

from __future__ import annotations

import math

import numpy as np

from common.errors import TwogradError

#: the values every scalar form is run on, in every pairing: signed zeros, subnormals, overflow and
#: underflow thresholds of exp, the largest floats, infinities and NaN
EDGES = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 0.7, 3.0, 1e-300, 5e-324, 710.0, -710.0, 1e308, -1e308,
         math.inf, -math.inf, math.nan]


def nin(op) -> int:
    """An op's input count (a variadic op is tried with two)."""
    return op.nin if op.nin is not None else 2


def input_kinds(op) -> list[str]:
    """For each input: "b" where the type rule asks for a bool (a condition), else "f"."""
    n = nin(op)
    kinds = []
    for pos in range(n):
        probe = [np.zeros((), np.float64)] * n
        try:
            op.infer(*probe)
            kinds.append("f")
            continue
        except TwogradError:
            pass
        probe[pos] = np.zeros((), bool)
        try:
            op.infer(*probe)
            kinds.append("b")
        except TwogradError:
            kinds.append("f")
    return kinds
