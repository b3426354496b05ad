"""`python -m bench` is `gts simulate`."""

from bench.cli import main

raise SystemExit(main())
