"""The command line's one boundary: every outcome and error maps to its documented exit code, an expected
error prints one `error:` line once, and a bug prints one line pointing at its saved traceback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import reconciler.cli
import reconciler.commands.show
from reconciler.cli import CODES, PIPE_SIZE, exit_code, widen_pipe
from reconciler.commands import Outcome
from reconciler.errors import (
    DailyCapReached,
    FileProblems,
    ReconcilerError,
    SpecError,
    StalePlan,
    StopRun,
    TargetMismatch,
    UsageError,
)

from .conftest import EXAMPLES, ROOT, run_cli

DOCUMENTED = {  # PRODUCT.md and README.md
    Outcome.OK: 0, Outcome.NO_CHANGES: 0, Outcome.CHANGES: 2, Outcome.BLOCKED: 3, Outcome.STOPPED: 3,
    Outcome.FAILED: 4, Outcome.ERROR: 1, Outcome.INTERRUPTED: 130,
}


@pytest.mark.parametrize("outcome", list(Outcome), ids=lambda o: o.name)
def test_every_outcome_has_its_documented_exit_code(outcome: Outcome) -> None:
    assert exit_code(outcome, detailed_exitcode=True) == DOCUMENTED[outcome]
    assert CODES[outcome] == DOCUMENTED[outcome]


def test_changes_exit_2_only_when_asked() -> None:
    assert exit_code(Outcome.CHANGES) == 0
    assert exit_code(Outcome.CHANGES, detailed_exitcode=True) == 2
    assert exit_code(Outcome.NO_CHANGES, detailed_exitcode=True) == 0


@pytest.mark.parametrize(("error", "code"), [
    (UsageError("x"), 1), (SpecError([]), 1), (TargetMismatch("x"), 1), (StalePlan("x"), 3), (StopRun("x"), 3),
    (DailyCapReached("x"), 3), (KeyboardInterrupt(), 130), (RuntimeError("x"), 1), (BrokenPipeError(), 1),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v))
def test_errors_map_to_their_documented_codes(error: BaseException, code: int) -> None:
    assert exit_code(error) == code


@pytest.fixture
def bug_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where a bug's traceback is saved during the test (the temporary folder)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_bug_inside_a_command_is_one_line_and_a_saved_traceback(
        bug_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def broken(*args: object, **kwargs: object) -> Outcome:
        raise RuntimeError("the renderer fell over")

    monkeypatch.setattr(reconciler.commands.show, "show", broken)
    code, out, err = run_cli(capsys, "show", "plan.json")
    assert code == 1 and out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: a bug in reconciler (RuntimeError: the renderer fell over)")
    saved = [p for p in bug_folder.iterdir() if p.name.startswith("reconciler-bug-")]
    assert len(saved) == 1 and str(saved[0]) in err
    text = saved[0].read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: the renderer fell over" in text
    assert "in broken" in text and "reconciler show plan.json" in text


def test_a_bug_report_never_holds_a_credential(bug_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    def leaky(*args: object, **kwargs: object) -> Outcome:
        raise ValueError("GET https://ops:hunter2-secret@example.com/api?access_token=abc123def456 failed")

    monkeypatch.setattr(reconciler.commands.show, "show", leaky)
    code, _, err = run_cli(capsys, "show", "plan.json")
    saved = next(bug_folder.iterdir()).read_text()
    assert code == 1
    for secret in ("hunter2-secret", "abc123def456"):
        assert secret not in err and secret not in saved


@pytest.mark.parametrize(("raised", "code", "said"), [
    (KeyboardInterrupt(), 130, "interrupted\n"), (BrokenPipeError(), 1, ""),
    (DailyCapReached("the daily write budget is spent"), 3, "error: the daily write budget is spent\n"),
])
def test_interrupts_broken_pipes_and_expected_errors_are_caught_at_the_boundary(
        raised: BaseException, code: int, said: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    def stop(*args: object, **kwargs: object) -> Outcome:
        raise raised

    monkeypatch.setattr(reconciler.commands.show, "show", stop)
    assert run_cli(capsys, "show", "plan.json") == (code, "", said)


def test_an_expected_error_is_printed_once_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "show", str(tmp_path / "missing.json"))
    assert code == 1 and out == ""
    assert err.count("error:") == 1 and err.startswith("error: ") and len(err.splitlines()) == 1


def test_a_usage_error_exits_1_not_argparse_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "plan", "--no-such-flag")
    assert code == 1 and out == ""
    assert err == "error: reconciler: unrecognized arguments: --no-such-flag (see --help)\n"
    assert run_cli(capsys, "frobnicate")[0] == 1


def test_no_command_prints_error_itself() -> None:
    """Only cli.main prints `error:`; a command raises and the boundary prints."""
    for path in sorted((ROOT / "reconciler" / "commands").glob("*.py")):
        assert not re.search(r"""["']error:""", path.read_text()), path
    assert issubclass(SpecError, FileProblems) and issubclass(FileProblems, ReconcilerError)


def test_a_journal_of_another_target_exits_1_in_resume_and_in_undo(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):  # two local emulators: two targets
        shutil.copytree(EXAMPLES, folder, ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    monkeypatch.chdir(first)
    assert run_cli(capsys, "apply", "--yes")[0] == 0
    journal = next((first / ".reconciler" / "journal").glob("*.jsonl"))
    monkeypatch.chdir(second)
    resumed = run_cli(capsys, "apply", "--resume", str(journal))
    undone = run_cli(capsys, "undo", str(journal))
    for code, out, err in (resumed, undone):
        assert code == 1 and out == ""
        assert err == (f"error: the journal is of an apply to local emulator ({first / '.reconciler' / 'local.sqlite'})"
                       f", not local emulator ({second / '.reconciler' / 'local.sqlite'})\n")


def test_a_stale_saved_plan_exits_3_with_one_error_line(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "plan", "--out", "plan.json")[0] == 0
    with (demo / "makerspace.yaml").open("a") as spec:
        spec.write("  - {email: tomas@example.com, completed: all}\n")
    code, _, err = run_cli(capsys, "apply", "--plan", "plan.json", "--yes")
    assert code == 3
    assert err == "error: stale plan: the spec files changed since it was made; plan again\n"


def test_a_reader_that_went_away_is_not_an_error_message() -> None:
    """`reconciler ... | head` with head gone before the first write: exit 1, nothing on stderr."""
    argv = ("completion", "bash")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = subprocess.run([sys.executable, "-m", "reconciler", *argv], stdout=write_end,
                                 stderr=subprocess.PIPE, text=True, timeout=60, check=False)
    finally:
        os.close(write_end)
    assert (process.returncode, process.stderr) == (1, "")


@pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are Linux's (F_SETPIPE_SZ)")
def test_the_command_widens_its_output_pipe_so_that_it_need_not_wait_on_its_reader() -> None:
    """Standard output into a pipe is widened to PIPE_SIZE (where the system allows that much), so that a plan of
    megabytes printed into `jq` or a CI step is not held up every 64 KiB; into anything else, nothing changes."""
    import fcntl

    probe_read, probe_write = os.pipe()  # whether this system lets a pipe have PIPE_SIZE at all
    try:
        fcntl.fcntl(probe_write, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        allowed = True
    except PermissionError:
        allowed = False
    finally:
        os.close(probe_read)
        os.close(probe_write)
    read_end, write_end = os.pipe()
    try:
        before = fcntl.fcntl(write_end, fcntl.F_GETPIPE_SZ)
        process = subprocess.run([sys.executable, "-m", "reconciler", "--version"], stdout=write_end,
                                 stderr=subprocess.PIPE, text=True, timeout=60, check=False)
        after = fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
        printed = os.read(read_end, 1000).decode()
    finally:
        os.close(read_end)
        os.close(write_end)
    assert process.returncode == 0 and printed.startswith("reconciler"), process.stderr
    assert before < PIPE_SIZE
    assert after == (PIPE_SIZE if allowed else before)


@pytest.mark.skipif(sys.platform != "linux", reason="pipe sizes are Linux's (F_SETPIPE_SZ)")
def test_a_pipe_made_larger_is_left_so_and_anything_else_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`widen_pipe` only ever makes a pipe larger (PIPE_SIZE made smaller here, so that a pipe larger than it can be
    made without privileges), and leaves a file as it is."""
    import fcntl

    monkeypatch.setattr(reconciler.cli, "PIPE_SIZE", 4 * 65536)
    sizes = {}
    for made in (65536, 16 * 65536):  # smaller than PIPE_SIZE, and larger
        read_end, write_end = os.pipe()
        try:
            try:
                fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, made)
            except PermissionError:
                pytest.skip(f"this system allows no pipe of {made:,} bytes")
            with os.fdopen(os.dup(write_end), "w") as out:
                widen_pipe(out)
            sizes[made] = fcntl.fcntl(read_end, fcntl.F_GETPIPE_SZ)
        finally:
            os.close(read_end)
            os.close(write_end)
    assert sizes == {65536: 4 * 65536, 16 * 65536: 16 * 65536}
    with (tmp_path / "out.txt").open("w") as out:
        widen_pipe(out)  # not a pipe: nothing to do, and nothing raised
        out.write("still a file")
    assert (tmp_path / "out.txt").read_text() == "still a file"


def test_a_plan_saved_to_a_folder_is_refused_in_one_line(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = {p.name for p in demo.iterdir()}
    code, _, err = run_cli(capsys, "plan", "--out", ".")
    assert code == 1 and err.strip() == "error: . is a folder: name the file to write", err
    assert {p.name for p in demo.iterdir()} - before == {".reconciler"}  # the run's state; no temporary file


def test_a_limit_past_what_a_saved_plan_can_hold_is_refused_in_the_config(demo: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A saved plan's summary is checked against its limits (a limit past 2**53 is none a configuration gives):
    such a limit is refused where it is written, not by the plan it would have made."""
    config = demo / "reconciler.yaml"
    config.write_text(config.read_text() + "limits: {writes_per_day: 100000000000000000000}\n")
    code, _, err = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 1 and "reconciler.yaml:" in err and "writes_per_day" in err, err
    assert not (demo / "plan.json").exists()
