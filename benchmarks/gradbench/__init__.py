"""twograd as a GradBench tool: every backend, measured by GradBench's own harness.

GradBench (github.com/gradbench/gradbench, the successor of Microsoft's
ADBench) runs an "eval" process that sends JSON messages to a "tool" process
and checks its answers against a reference. ``twograd gradbench --backend
symnum|symnum-static|symsym|symsym-numba`` (or ``python -m
benchmarks.gradbench``) is such a tool; the backends are the benchmark's
columns, under the same names. It answers all 12 of GradBench's evals.

- :mod:`.models`: the evals' functions, written once against a namespace of ops;
- :mod:`.functions`: each module's functions: input parsing, model, derivative, output format;
- :mod:`.engines`: the backends behind one prepare/run interface;
- :mod:`.tool`: the protocol loop and the command line;
- :mod:`.pipe`: an eval and a tool piped into each other, as the harness does.
"""
