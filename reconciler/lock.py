"""One apply at a time from one folder, whatever its target: an flock'd file under `.reconciler/locks/`.

One lock for the folder, not one per target: a target is named as it was given (`--api`, `NEXUDUS_API_URL`,
`reconciler.yaml`), and `http://127.0.0.1:8080` and `http://localhost:8080/` are one server that two spellings
must not let two applies write to at once (each making what the other makes: duplicates).

The operating system holds the lock for as long as the holder's file descriptor is open, and drops it
when the holder dies, even by SIGKILL; so a lock file that still names a holder while its flock is free
is the trace of a dead run, taken over with a warning. The file says who holds it (pid, host, start
time, command, target), for the message another run shows; it holds no secret.

Two runs on different machines do not share this lock: verification reports duplicates a concurrent
writer made (PRODUCT.md).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciler.errors import ReconcilerError

log = logging.getLogger(__name__)

# A holder writes its details just after taking the flock: a reader that finds the flock taken but the
# file empty may be looking in between, so it reads again a few times before giving up on the details.
_READ_TRIES = 5
_READ_PAUSE = 0.05


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a target's lock. `started` is an ISO 8601 instant in UTC."""

    pid: int
    host: str
    started: str
    command: str
    target: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started} (command: {self.command})"


class LockHeld(ReconcilerError):
    """Another run from this folder holds its lock; exit 1 and let it finish."""

    def __init__(self, path: Path, target: str, holder: LockInfo | None) -> None:
        self.path = path
        self.target = target
        self.holder = holder
        who = (f"{holder.describe()}, writing to {holder.target}" if holder else
               "a process whose details cannot be read")
        super().__init__(f"another run from this folder holds its lock (one run writes from a folder at a time, "
                         f"whatever the target): {who}; nothing was written to {target}. Wait for it to finish: "
                         f"the lock ({path}) is released when that process ends, however it ends")


def lock_path(state_dir: Path) -> Path:
    """The lock file of the state folder (`.reconciler`): one, whatever the target."""
    return state_dir / "locks" / "writes.lock"


@contextmanager
def target_lock(state_dir: Path, target: str, command: str) -> Iterator[LockInfo]:
    """Hold the folder's lock, for writing to `target`, for the duration of the block; raises LockHeld when another
    run holds it.

    The lock belongs to an open file description, not to a process: a second `target_lock` inside the holding
    process is refused too, as a nested apply should be.
    """
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockHeld(path, target, _read_holder(fd, patient=True)) from None
        if os.fstat(fd).st_size:
            previous = _read_holder(fd, patient=False)
            log.warning("taking over the lock of %s from a run that ended without releasing it: %s; lock file %s",
                        target, previous.describe() if previous else "its details are unreadable", path)
        mine = LockInfo(os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds"),
                        command, target)
        _write(fd, json.dumps(asdict(mine), ensure_ascii=False).encode() + b"\n")
        try:
            yield mine
        finally:
            # Emptied while still held, never unlinked: another run may have this inode open already, and
            # after an unlink it could lock the orphan while a third run locks a new file of the same name.
            os.ftruncate(fd, 0)
            os.fsync(fd)
    finally:
        os.close(fd)  # closing the last descriptor of the open file description releases the flock


def _write(fd: int, data: bytes) -> None:
    os.ftruncate(fd, 0)
    written = 0
    while written < len(data):
        written += os.pwrite(fd, data[written:], written)
    os.fsync(fd)


def _read_holder(fd: int, *, patient: bool) -> LockInfo | None:
    for attempt in range(_READ_TRIES if patient else 1):
        if attempt:
            time.sleep(_READ_PAUSE)
        size = os.fstat(fd).st_size
        holder = _parse(os.pread(fd, size, 0)) if size else None
        if holder is not None:
            return holder
    return None


def _parse(raw: bytes) -> LockInfo | None:
    try:
        data: Any = json.loads(raw.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    pid, host, started, command, target = (data.get(k) for k in ("pid", "host", "started", "command", "target"))
    if not isinstance(pid, int) or isinstance(pid, bool):
        return None
    if not (isinstance(host, str) and isinstance(started, str) and isinstance(command, str)
            and isinstance(target, str)):
        return None
    return LockInfo(pid, host, started, command, target)
