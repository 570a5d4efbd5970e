"""Corrupted derivative rules, in memory, for the mutation check (``tests/test_rule_mutants.py``).

A mutant is one op's rule for one input with one bug injected: its sign
flipped, a factor dropped (the cotangent, or the tangent, replaced by ones:
``cos(x)`` where the rule says ``g * cos(x)``), the wrong operand (one of
the output and the inputs replaced by another of the same shape and dtype:
``g * cos(out)``), or a rule right only at the checked point (see
:data:`KINDS`). :func:`replaced_vjp` and :func:`replaced_jvp` are the only
code here that knows how an op holds its rules; every mutant goes through them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np

from common.ops import NO_GRAD, ZERO

KINDS = ("sign", "factor", "operand", "point")
"""The bugs injected: a sign flip, a dropped factor, the wrong operand, and a rule right only at the point
where it is first called (the rule times ``1 + <x - x0, k>`` for input ``x``: the right numbers at ``x0``,
the wrong derivative there), which first-derivative checks cannot see."""


@contextmanager
def replaced_vjp(op, i: int, make: Callable) -> Iterator[None]:
    """Input ``i``'s VJP rule of ``op`` replaced by ``make(rule)`` while the block runs, then restored.

    ``rule`` and its replacement are ``(ns, g, out, *inputs, **params) -> cotangent``, as an op with
    one rule per input holds them; a variadic op's ``vjp_n`` is wrapped so that only input ``i``'s
    cotangent changes.
    """
    if op.vjp_n is not None:
        whole = op.vjp_n
        mine = make(lambda ns, g, out, *xs, **params: whole(ns, i, g, out, *xs, **params))

        def vjp_n(ns, j, g, out, *xs, **params):
            return mine(ns, g, out, *xs, **params) if j == i else whole(ns, j, g, out, *xs, **params)

        field, saved, new = "vjp_n", whole, vjp_n
    else:
        rules = list(op.vjps)
        rules[i] = make(rules[i])
        field, saved, new = "vjps", op.vjps, tuple(rules)
    setattr(op, field, new)
    try:
        yield
    finally:
        setattr(op, field, saved)


@contextmanager
def replaced_jvp(op, i: int, make: Callable) -> Iterator[None]:
    """``op``'s JVP rule with input ``i``'s term replaced by ``make(term)`` while the block runs.

    A JVP is linear in the tangents, so it is the sum of one term per input: ``term(ns, t, out, *inputs,
    **params)`` is the rule given tangent ``t`` on input ``i`` and ZERO on the others.
    """
    whole = op.jvp

    def term(ns, t, out, *xs, **params):
        return whole(ns, tuple(t if j == i else ZERO for j in range(len(xs))), out, *xs, **params)

    mine = make(term)

    def jvp(ns, tangents, out, *xs, **params):
        others = tuple(ZERO if j == i else t for j, t in enumerate(tangents))
        rest = whole(ns, others, out, *xs, **params) if any(t is not ZERO for t in others) else ZERO
        own = ZERO if tangents[i] is ZERO else mine(ns, tangents[i], out, *xs, **params)
        return own if rest is ZERO else rest if own is ZERO else rest + own

    op.jvp = jvp
    try:
        yield
    finally:
        op.jvp = whole


def _numbers(x):
    """``x``'s values as an array when it holds plain numbers (an array, a tape tensor), else None."""
    if isinstance(x, (np.ndarray, np.generic)):
        return x
    data = getattr(x, "data", None)
    return data if isinstance(data, (np.ndarray, np.generic)) else None


def _differ(a, b) -> bool:
    a, b = _numbers(a), _numbers(b)
    if a is None or b is None:
        return False
    return np.shape(a) != np.shape(b) or not np.allclose(a, b, rtol=1e-9, atol=1e-12)


def _like(a, b) -> bool:
    return np.shape(a) == np.shape(b) and getattr(a, "dtype", None) == getattr(b, "dtype", None) \
        and np.dtype(getattr(a, "dtype", "O")).kind == "f"


class Mutant:
    """One kind of bug, as ``make`` for :func:`replaced_vjp` / :func:`replaced_jvp`, for input ``i``'s rule.

    ``changed`` records whether the corrupted rule ever gave other numbers than the rule (a mutant
    that never does, such as a sign flip of a rule that gives zeros, is equivalent: no test can
    catch it). The wrong operand is the first substitution (input ``i`` by the output, the output
    by input ``i``, then pairs with the other inputs) that changes the rule's numbers on the first
    call that has numbers, and the first one the shapes allow where none does.
    """

    def __init__(self, kind: str, i: int):
        self.kind, self.i, self.changed, self.choice = kind, i, False, None
        self.x0 = self.k = None

    def _right_at_the_point(self, ns, x, orig):
        """``orig * (1 + <x - x0, k>)``, ``x0`` the input at the first call with numbers: equal to ``orig``
        there, its derivative off by ``orig * k``."""
        if self.x0 is None:
            if _numbers(x) is None:
                return orig
            self.x0 = np.array(_numbers(x), dtype=np.float64)
            self.k = np.random.default_rng(1).standard_normal(self.x0.shape)
        if np.shape(x) != self.x0.shape:
            return orig
        if _numbers(orig) is not None and np.any(_numbers(orig) != 0):
            self.changed = True  # a nonzero rule gets a nonzero wrong derivative
        return orig * (1.0 + ns.sum((x - self.x0) * self.k))

    def _substitutions(self, n: int) -> list:
        """(position replaced, position used) among [out, input 0, input 1, ...]."""
        me, out = 1 + self.i, 0
        pairs = [(me, out), (out, me)]
        for j in range(1, n + 1):
            if j != me:
                pairs += [(me, j), (j, me), (out, j), (j, out)]
        return pairs

    def _wrong_operand(self, rule, ns, g, out, xs, params, orig):
        operands = [out, *xs]
        fits = [(a, b) for a, b in self._substitutions(len(xs)) if _like(operands[a], operands[b])]
        tried = [self.choice] if self.choice in fits else fits
        for a, b in tried:
            swapped = list(operands)
            swapped[a] = operands[b]
            mut = rule(ns, g, swapped[0], *swapped[1:], **params)
            if self.choice is None and _numbers(orig) is None:
                self.choice = (a, b)  # no numbers to compare: the first substitution the shapes allow
            if self.choice == (a, b) or _differ(orig, mut):
                self.choice = (a, b)
                return mut
        return orig

    def __call__(self, rule: Callable) -> Callable:
        def corrupted(ns, g, out, *xs, **params):
            orig = rule(ns, g, out, *xs, **params)
            if orig is NO_GRAD or orig is ZERO:
                return orig
            if self.kind == "sign":
                mut = ns.neg(orig)
            elif self.kind == "factor":
                mut = rule(ns, ns.ones_like(g), out, *xs, **params)
            elif self.kind == "point":
                return self._right_at_the_point(ns, xs[self.i], orig)
            else:
                mut = self._wrong_operand(rule, ns, g, out, xs, params, orig)
            self.changed = self.changed or _differ(orig, mut)
            return mut
        return corrupted


def xent_dz_without_the_target_sum(rule: Callable) -> Callable:
    """softmax_cross_entropy's dL/dz as ``softmax(z) - t``, the factor ``sum(t)`` of ``softmax(z) * sum(t) - t``
    dropped: right wherever the targets sum to 1 (a ``make`` for :func:`replaced_vjp`, input 0)."""
    def corrupted(ns, g, out, z, t, axis):
        return ns.expand_dims(g, axis) * (ns.softmax(z, axis=axis) - t)
    return corrupted
