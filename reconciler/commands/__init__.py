"""The subcommands, one module each: a function with explicit parameters that returns an `Outcome`.

`cli.py` parses the command line, calls one of these, and maps the outcome (or the error it raised) to
the exit code; no command picks an exit code or prints `error:` itself. This package imports nothing
heavy: each command module imports what it needs, and only the chosen one is imported.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import TextIO

from reconciler.errors import TargetMismatch


class Outcome(Enum):
    """How a command ended; `cli.exit_code` turns it into the documented exit code."""

    OK = "ok"  # done (0)
    NO_CHANGES = "no changes"  # plan: the target matches the specs (0)
    CHANGES = "changes"  # plan: there are changes (2 with --detailed-exitcode, else 0)
    BLOCKED = "blocked"  # a safety budget, a stale plan, or doctor's limits (3)
    STOPPED = "stopped"  # an apply stopped cleanly and can be resumed: the daily cap, a long wait, a deadline (3)
    FAILED = "failed"  # an apply finished with failed actions or did not converge (4)
    ERROR = "error"  # the command ran and found it cannot do its job; it said why (1)
    INTERRUPTED = "interrupted"  # Ctrl-C (130)


@dataclass(frozen=True)
class Console:
    """Where a command writes, and how much: the plan body and results on `stdout`, notes and progress on
    `stderr`. `quiet` keeps to what a script needs (the summary line, warnings and errors)."""

    stdout: TextIO
    stderr: TextIO
    stdin: TextIO | None = None  # where apply asks for its confirmation (default: the process's stdin)
    quiet: bool = False
    color: bool = False
    argv: list[str] = field(default_factory=list)  # the words the command was run with, for the lock's record

    def note(self, text: str) -> None:
        """A line for the person at the terminal (stderr), left out with -q."""
        if not self.quiet:
            print(text, file=self.stderr)

    def warn(self, text: str) -> None:
        """A warning (stderr), kept with -q: one line, whatever names it quotes (`render.shown`)."""
        from reconciler.render import shown

        print(f"warning: {shown(text)}", file=self.stderr)

    def input(self) -> TextIO:
        return self.stdin or sys.stdin

    def progress(self) -> TextIO:
        """Where a progress display goes: stderr, or nowhere with -q."""
        return _Discard() if self.quiet else self.stderr


class _Discard(io.StringIO):
    """A stream that keeps nothing."""

    def write(self, text: str) -> int:
        return len(text)


def check_journal_target(recorded: object, description: str) -> None:
    """`apply --resume` and `undo` act only on a journal of an apply to the configured target."""
    from reconciler.config import same_target  # (this package loads for --help, which reads no configuration)

    if not same_target(recorded, description):
        raise TargetMismatch(f"the journal is of an apply to {recorded}, not {description}")
