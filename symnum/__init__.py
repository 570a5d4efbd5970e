"""symbol-to-number: a tape recorded while evaluating, swept backwards."""
