"""twograd's benchmark harness: workloads, timing, cross-checks, tables, plots."""

__version__ = "0.1.0"
