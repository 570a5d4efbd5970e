"""``python -m benchmarks.gradbench --backend symnum|symnum-static|symsym|symsym-numba``: the GradBench tool."""

from .tool import main

raise SystemExit(main())
