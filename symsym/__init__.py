"""symbol-to-symbol: gradients as new graph nodes, compiled to numpy code."""
