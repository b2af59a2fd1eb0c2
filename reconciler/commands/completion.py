"""`reconciler completion bash|zsh|fish`: the shell completion script, generated from the parser by shtab."""

from __future__ import annotations

import argparse
from typing import Literal

import shtab

from reconciler.commands import Console, Outcome


def completion(shell: Literal["bash", "zsh", "fish"], parser: argparse.ArgumentParser, *,
               console: Console) -> Outcome:
    """Print the script that completes `parser`'s commands and options in `shell` (install: see README)."""
    console.stdout.write(shtab.complete(parser, shell=shell))
    return Outcome.OK
