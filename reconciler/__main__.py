"""`python -m reconciler` is the same program as the `reconciler` command."""

from reconciler.cli import main

raise SystemExit(main())
