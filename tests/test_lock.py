"""The per-target apply lock: held across processes, released by death (even SIGKILL), refused when nested."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.errors import EXIT_ERROR
from reconciler.lock import LockHeld, lock_path, target_lock

from .conftest import ROOT

TARGET = "http://127.0.0.1:8123"

# Takes the lock, says so, and holds it until its standard input closes (or it is killed).
HOLDER = """
import sys
from pathlib import Path
from reconciler.lock import target_lock
with target_lock(Path(sys.argv[1]), sys.argv[2], "reconciler apply completions/ --yes") as info:
    print("held", info.pid, flush=True)
    sys.stdin.read()
print("released", flush=True)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding the lock of TARGET under tmp_path; stopped at teardown whatever happened."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), TARGET], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().split() == ["held", str(process.pid)]
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        for stream in (process.stdin, process.stdout):
            if stream:
                stream.close()


def test_the_lock_file_is_the_folders_under_locks(tmp_path: Path) -> None:
    path = lock_path(tmp_path)
    assert path == tmp_path / "locks" / "writes.lock"
    with target_lock(tmp_path, TARGET, "reconciler apply") as info:
        written = json.loads(path.read_text())
        assert written == {"pid": os.getpid(), "host": socket.gethostname(), "started": info.started,
                           "command": "reconciler apply", "target": TARGET}
        assert info.started.endswith("+00:00")
    assert path.exists() and path.read_bytes() == b""  # emptied, never unlinked


def test_another_process_holding_the_lock_is_named(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    path = lock_path(tmp_path)
    with pytest.raises(LockHeld) as caught, target_lock(tmp_path, TARGET, "reconciler apply --yes"):
        pytest.fail("the lock was taken twice")
    error = caught.value
    assert error.exit_code == EXIT_ERROR
    assert error.holder is not None and error.holder.pid == holder.pid
    message = str(error)
    for part in (f"pid {holder.pid}", f"on {socket.gethostname()}", f"started {error.holder.started}",
                 "(command: reconciler apply completions/ --yes)", f"the lock ({path})", TARGET):
        assert part in message, (part, message)
    assert json.loads(path.read_text())["pid"] == holder.pid  # the refused attempt left the holder's details


def test_release_lets_the_next_one_in(tmp_path: Path, holder: subprocess.Popen[str],
                                      caplog: pytest.LogCaptureFixture) -> None:
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.close()
    assert holder.stdout.readline().strip() == "released"
    assert holder.wait(timeout=30) == 0
    assert lock_path(tmp_path).read_bytes() == b""
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"), \
            target_lock(tmp_path, TARGET, "next") as info:
        assert info.pid == os.getpid()
    assert not caplog.records  # a clean release leaves nothing to take over


def test_a_holder_killed_by_sigkill_is_taken_over_with_a_warning(tmp_path: Path, holder: subprocess.Popen[str],
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    dead = json.loads(lock_path(tmp_path).read_text())
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=30) == -signal.SIGKILL
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"), \
            target_lock(tmp_path, TARGET, "reconciler apply --resume j.jsonl") as info:
        assert info.pid == os.getpid()
        assert json.loads(lock_path(tmp_path).read_text())["command"] == "reconciler apply --resume j.jsonl"
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    for part in (f"pid {holder.pid}", f"on {dead['host']}", f"started {dead['started']}",
                 "(command: reconciler apply completions/ --yes)", "ended without releasing"):
        assert part in record.getMessage(), (part, record.getMessage())


def test_nested_acquisition_in_one_process_is_refused(tmp_path: Path) -> None:
    with target_lock(tmp_path, TARGET, "outer") as outer:
        with pytest.raises(LockHeld) as caught, target_lock(tmp_path, TARGET, "inner"):
            pytest.fail("the lock was taken twice in one process")
        assert caught.value.holder == outer
        assert json.loads(lock_path(tmp_path).read_text())["command"] == "outer"  # still the outer's
    with target_lock(tmp_path, TARGET, "after") as after:
        assert after.command == "after"


def test_one_server_named_two_ways_is_one_lock(tmp_path: Path) -> None:
    """`http://127.0.0.1:P` and `http://localhost:P/` are one server: two applies from one folder never write at
    once, whatever their targets are called (each would make what the other makes)."""
    with target_lock(tmp_path, "http://127.0.0.1:8080", "reconciler apply --yes"):
        with pytest.raises(LockHeld) as caught, target_lock(tmp_path, "http://localhost:8080/", "two"):
            pass
    said = str(caught.value)
    assert "another run from this folder holds its lock" in said and "writing to http://127.0.0.1:8080" in said
    assert "nothing was written to http://localhost:8080/" in said


def test_an_unreadable_lock_file_is_taken_over_with_a_warning(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    path = lock_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text('{"pid": 12')  # a holder killed while writing its details
    with caplog.at_level(logging.WARNING, logger="reconciler.lock"), target_lock(tmp_path, TARGET, "apply"):
        pass
    assert "its details are unreadable" in caplog.text


# Opens a journal for writing, as an apply or a resume of it does, says so, and holds it until its input closes.
JOURNAL_HOLDER = """
import sys
from pathlib import Path
from reconciler.journal import Journal
with Journal(Path(sys.argv[1])):
    print("writing", flush=True)
    sys.stdin.read()
"""


def test_a_journal_another_run_writes_is_not_resumed_from_any_folder(demo: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from reconciler.cli import main

    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 10}\n")
    assert main(["apply", "--yes"]) == 3  # stopped at the cap: resumable
    journal = next((demo / ".reconciler" / "journal").glob("*.jsonl"))
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")
    capsys.readouterr()
    before = journal.read_bytes()
    # The apply (or a resume of it) still running elsewhere: another folder's lock is not this one's, so the
    # journal itself is what keeps two runs from carrying out the same actions (duplicates).
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    other = subprocess.Popen([sys.executable, "-c", JOURNAL_HOLDER, str(journal)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert other.stdout is not None and other.stdout.readline() == "writing\n"
        assert main(["apply", "--resume", str(journal), "--yes"]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert f"error: another run is writing the journal {journal} right now" in err and "nothing was written" in err
        assert journal.read_bytes() == before
        assert main(["plan", "--format", "json"]) == 0
        assert json.loads(capsys.readouterr().out)["summary"]["writes"] == 20  # nothing was sent either
    finally:
        if other.stdin:
            other.stdin.close()
        other.wait(timeout=30)
        if other.stdout:
            other.stdout.close()
    assert main(["apply", "--resume", str(journal), "--yes"]) == 0  # once it has ended
    assert ": 20 of 30 actions left." in capsys.readouterr().out
