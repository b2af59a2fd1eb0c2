"""`reconciler emulator ...`: the emulator's own command line (serve, seed), loaded only when run."""

from __future__ import annotations

from reconciler.commands import Console, Outcome
from reconciler.errors import EXIT_INTERRUPTED, EXIT_OK
from reconciler.target import run_emulator


def emulator(words: list[str], *, console: Console) -> Outcome:
    """Hand the words after `emulator` to the emulator, which prints its own errors (it is its own program)."""
    code = run_emulator(words, console.stdout, console.stderr)
    return Outcome.OK if code == EXIT_OK else Outcome.INTERRUPTED if code == EXIT_INTERRUPTED else Outcome.ERROR
