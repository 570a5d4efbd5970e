"""The project's integration test: every workload, at its check sizes, on hand, symnum and symsym.

Each result must match central finite differences of the reference
interpreter, and the backends must match each other and the hand-written
derivative; training workloads must give the same loss curve everywhere.
"""

import numpy as np
import pytest

from benchmarks import harness
from benchmarks.workloads import visible

WORKLOADS = [w for w in visible()]


@pytest.mark.parametrize("w", WORKLOADS, ids=[w.name for w in WORKLOADS])
def test_backends_agree_with_each_other_and_finite_differences(w):
    settings = harness.Settings(timing=False, memory=False)
    results = harness.run([(w, list(w.check))], settings, progress=False)
    assert results["checks"], "no cross-check ran"
    assert harness.failures(results) == []
    ran = {c["backend"] for c in results["cells"] if c["status"] == "ok"}
    if w.kind != "order":
        assert {"symnum", "symsym"} <= ran
        compared = {c["check"] for c in results["checks"]}
        assert "symsym vs symnum" in compared
        assert "symnum vs finite differences" in compared
    else:
        orders = {r["order"] for r in results["orders"]}
        assert orders == set(range(1, w.make(w.check[0]).max_order + 1))


def test_training_curves_are_identical_and_learn():
    from benchmarks.workloads import get

    for name in ("xor", "mlp-train"):
        w = get(name)
        results = harness.run([(w, list(w.check))], harness.Settings(timing=False, memory=False), progress=False)
        curves = {c["backend"]: c["loss"] for c in results["curves"]}
        assert {"hand", "symnum", "symsym"} <= set(curves)
        for loss in curves.values():
            np.testing.assert_allclose(loss, curves["hand"], rtol=1e-7)  # rounding, compounded over steps
        assert curves["hand"][-1] < 0.1 * curves["hand"][0]


def test_every_size_builds_and_its_hand_forward_matches_the_reference_cost():
    """Every size (not just the check sizes) builds a graph whose value is the hand forward."""
    from common import evaluate

    for w in WORKLOADS:
        for size in w.sizes:
            p = w.make(size)
            if p.hand_forward is None or sum(a.size for a in p.arrays) > 2e5:
                continue
            cost, variables = p.graph()
            got = evaluate(cost, dict(zip(variables, p.arrays)))
            np.testing.assert_allclose(got, p.hand_forward(*p.arrays), rtol=1e-10, err_msg=f"{w.name} {size}")
