"""``python -m benchmarks.gradbench --backend symnum|symsym``: the GradBench tool."""

from .tool import main

raise SystemExit(main())
