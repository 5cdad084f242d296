"""``python -m benchmarks``: run the suite (``--help`` for the options)."""

from benchmarks.run import main

raise SystemExit(main())
