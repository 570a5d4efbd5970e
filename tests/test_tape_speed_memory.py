"""symnum.memory: glibc keeps the pages a tape frees, unless the user chose otherwise.

The thresholds are process-wide and set once at import, so each case runs in
a fresh interpreter. No timing: the page-fault count of a repeated gradient
is what the setting is for, and it is a count.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLIBC = sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")

# a 784-256-256-10 MLP gradient on the tape, five times: the page faults of the last call
FAULTS = """
import resource
import numpy as np
import symnum

rng = np.random.default_rng(0)
dims = (784, 256, 256, 10)
params = [a for m, n in zip(dims, dims[1:]) for a in (rng.standard_normal((m, n)) / m ** 0.5, np.zeros(n))]
x, y = rng.standard_normal((64, 784)), np.eye(10)[rng.integers(0, 10, 64)]

def step():
    leaves = [symnum.tensor(p, requires_grad=True) for p in params]
    h = x
    for k in range(0, len(leaves), 2):
        h = h @ leaves[k] + leaves[k + 1]
        if k < len(leaves) - 2:
            h = symnum.tanh(h)
    loss = symnum.mean(symnum.softmax_cross_entropy(h, y))
    return [g.numpy() for g in symnum.grad(loss, leaves)]

for _ in range(4):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _run(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("TWOGRAD_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**clean, "OPENBLAS_NUM_THREADS": "1", **env},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


KEPT = "import symnum.memory as m; print(m.KEPT)"


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_set_on_glibc_by_default():
    assert _run(KEPT) == "True"


@pytest.mark.parametrize("env", [{"TWOGRAD_MALLOC": "system"}, {"MALLOC_TRIM_THRESHOLD_": "131072"},
                                 {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_left_alone_when_the_user_chose(env):
    assert _run(KEPT, **env) == "False"


@pytest.mark.skipif(not GLIBC, reason="the thresholds are glibc's")
def test_a_repeated_gradient_reuses_the_pages_the_last_one_freed():
    # each call allocates ~5 MB it frees at the end (leaf copies, saved activations, gradients): 1300 pages
    # if glibc handed them back every time; kept, the fifth call faults in next to none of them
    assert int(_run(FAULTS)) < 100
