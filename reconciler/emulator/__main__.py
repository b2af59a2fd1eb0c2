"""`python -m reconciler.emulator serve|seed ...`: the emulator on its own, without the product's command line."""

from reconciler.emulator.cli import main

raise SystemExit(main(prog="python -m reconciler.emulator"))
