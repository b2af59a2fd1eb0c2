"""Ctrl-C during an apply: the first sets the client's stop flag, so that the write in flight finishes and
the run stops at the next wait or between two writes; a second stops at once (KeyboardInterrupt)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from reconciler.pacing import StopFlag


@contextmanager
def interruptible(flag: StopFlag) -> Iterator[StopFlag]:
    """SIGINT sets `flag` (the handler only sets it: no I/O, no lock) while the block runs."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag.is_set:
            raise KeyboardInterrupt
        flag.set()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
        flag.clear()
