"""``python -m benchmarks`` is the ``twograd`` command."""

from .cli import main

raise SystemExit(main())
