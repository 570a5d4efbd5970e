"""The mutation check: a wrong derivative rule must fail the checks against the numpy reference.

For every op and every input its cases differentiate, each rule bug of
``tests/mutation.py`` (sign flip, dropped factor, wrong operand, and a rule
right only at the checked point) is injected in memory into the op's VJP rule
and, apart, into its JVP rule; the checks of ``tests/refchecks.py`` (finite
differences of the case's numpy reference: the gradient and J v, and second
differences: H v by reverse over reverse and by ``jvp`` of ``grad``) must then
fail on at least one of the op's cases. The last kind is caught only by the
second differences: a first-derivative check passes it by construction. A
mutant that gives the same numbers as the rule wherever it runs (and, for the
last kind, a rule that gives zeros) is equivalent, since nothing could catch
it, and is skipped with that reason.
"""

from __future__ import annotations

import numpy as np
import pytest
import refchecks
from mutation import KINDS, Mutant, replaced_jvp, replaced_vjp, xent_dz_without_the_target_sum
from opcases import BODIED, CASES

from common import api
from common.graph import toposort
from common.ops import OPS

CHECKS = refchecks.FIRST_ORDER + refchecks.SECOND_ORDER
DIFF = [c for c in CASES if c.wrt]


def _differentiated(case) -> set:
    """Positions of the case's own op's inputs that depend on a differentiated variable."""
    arrays = case.inputs(np.random.default_rng(0))
    xs = [api.var(f"x{k}", np.shape(a), np.asarray(a).dtype) for k, a in enumerate(arrays)]
    out = case.fn(api.symbolic, *xs)
    wrt = {id(xs[k]) for k in case.wrt}
    found = set()
    for node in toposort([out]):
        if node.op is not None and node.op.name == case.op:
            for i, x in enumerate(node.inputs):
                if node.op.differentiable(i) and any(id(n) in wrt for n in toposort([x])):
                    found.add(i)
    return found


INPUTS = {}  # op name -> {input position: [cases differentiating it]}
for _case in DIFF:
    for _i in _differentiated(_case):
        INPUTS.setdefault(_case.op, {}).setdefault(_i, []).append(_case)

MUTANTS = [(name, i, kind, mode) for name in sorted(INPUTS) for i in sorted(INPUTS[name])
           for mode in ("vjp", "jvp") for kind in KINDS]

NO_DERIVATIVE = {"sign", "stop_gradient", "lt", "le", "gt", "ge", "eq", "ne", "zeros_like", "ones_like",
                 "full_like", "full", "count", "argmax", "argmin", "argsort", "argwhere", "slogdet_sign"}
"""Ops whose output carries no derivative (piecewise constant, boolean, integer, or independent of the input
values)."""


def _failures(case, checks) -> list:
    """The names of the checks that fail on ``case`` (an exception counts as a failure)."""
    pt = refchecks.point(case)
    failed = []
    for check in checks:
        try:
            check(pt)
        except Exception:  # any error of a check is a failed test
            failed.append(check.__name__)
    return failed


@pytest.mark.parametrize("case", DIFF, ids=[c.id for c in DIFF])
def test_the_reference_checks_pass_on_the_rules(case):
    """Without a bug every check passes: a failure under a mutant is the mutant's doing."""
    assert _failures(case, CHECKS) == []


@pytest.mark.parametrize("name, i, kind, mode", MUTANTS, ids=[f"{m[0]}-x{m[1]}-{m[3]}-{m[2]}" for m in MUTANTS])
def test_a_corrupted_rule_fails_the_reference_checks(name, i, kind, mode):
    op = OPS[name]
    replaced = replaced_vjp if mode == "vjp" else replaced_jvp
    changed = False
    for case in INPUTS[name][i]:
        mutant = Mutant(kind, i)
        with replaced(op, i, mutant):
            failed = _failures(case, CHECKS)
        if failed:
            return
        changed = changed or mutant.changed
    if not changed:
        pytest.skip(f"equivalent mutant: the corrupted rule gives the rule's own numbers on every case of {name}")
    pytest.fail(f"{name}: its {mode.upper()} rule for input {i} with a {kind} bug passes every reference check "
                f"on cases {[c.id for c in INPUTS[name][i]]}")


def test_every_op_with_a_derivative_has_mutants():
    """A new op gets mutants as soon as it has a case that differentiates it."""
    with_mutants = {m[0] for m in MUTANTS}
    assert with_mutants.isdisjoint(NO_DERIVATIVE)
    missing = set(OPS) - BODIED - NO_DERIVATIVE - with_mutants
    assert not missing, f"ops with a derivative but no case that differentiates them: {sorted(missing)}"
    for name in NO_DERIVATIVE:
        assert not any(OPS[name].differentiable(i) for i in range(OPS[name].nin or 0)), name


def test_softmax_cross_entropy_without_the_target_sum_fails():
    cases = {c.id: c for c in CASES if c.op == "softmax_cross_entropy"}
    with replaced_vjp(OPS["softmax_cross_entropy"], 0, xent_dz_without_the_target_sum):
        assert "check_gradient" in _failures(cases["softmax_cross_entropy-unnormalised"], CHECKS)
        # on probabilities the gradient is right, and the mixed second derivative d/dt dL/dz is not
        assert _failures(cases["softmax_cross_entropy"], CHECKS) == ["check_hvp"]


@pytest.mark.parametrize("mode", ["vjp", "jvp"])
def test_a_rule_right_only_at_the_point_passes_first_order_and_fails_second_order(mode):
    """What the second differences are for: the ``point`` mutant gives the rule's own numbers at the
    checked point, so only a second-order check sees it."""
    case = next(c for c in CASES if c.id == "sin")
    replaced = replaced_vjp if mode == "vjp" else replaced_jvp
    with replaced(OPS["sin"], 0, Mutant("point", 0)):
        assert _failures(case, refchecks.FIRST_ORDER) == []
        assert _failures(case, refchecks.SECOND_ORDER) != []
