"""The emulator's own expected errors: its command line prints the message on one line and exits 1.

The emulator stands alone (it imports nothing from the product), so these mirror, not reuse, the product's
errors; `reconciler/target.py` turns a SeedError into the product's when the local target loads a seed.
"""

from __future__ import annotations

from dataclasses import dataclass


class EmulatorError(Exception):
    """Root of every error a user of the emulator can cause."""


class UsageError(EmulatorError):
    """The command line asks for something that cannot be done."""


@dataclass(frozen=True, order=True)
class Problem:
    """One problem in a seed, at one place. Lines and columns count from 1."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class SeedError(EmulatorError):
    """A seed (friendly YAML or JSON snapshot) has problems; all of them are carried, sorted by place."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(head + "\n" + "\n".join(str(p) for p in self.problems))
