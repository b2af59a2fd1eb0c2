"""`python -m reconciler` is the same program as the `reconciler` command."""

from reconciler.cli import run

run()
