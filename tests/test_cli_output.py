"""How much the command line says: -q keeps to what a script needs, -v and -vv set the loggers, logs go to
stderr, and `--version` is on the first screen of `--help`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler import __version__

from .conftest import run_cli


@pytest.fixture(autouse=True)
def loggers_restored() -> Iterator[None]:
    """main() sets the loggers' levels and handler; put them back for the tests that follow."""
    root, http = logging.getLogger("reconciler"), logging.getLogger("reconciler.http")
    saved = (root.level, list(root.handlers), http.level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    http.setLevel(saved[2])


def test_quiet_plan_prints_only_the_target_and_the_summary_line(demo: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "-q", "plan")
    assert code == 0 and err == ""
    target, summary = out.splitlines()  # the target on the first line, as every plan's (PRODUCT.md)
    assert target == f"Target: local emulator ({demo / '.reconciler' / 'local.sqlite'})"
    assert summary.startswith("Plan: 26 to create, 2 to delete, 2 to enrol, ")
    code, loud, _ = run_cli(capsys, "plan")
    assert loud.splitlines()[0] == target and summary in loud.splitlines()


def test_quiet_works_after_the_command_too_and_keeps_the_exit_code(demo: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "plan", "-q", "--detailed-exitcode")
    assert code == 2 and len(out.splitlines()) == 2


def test_quiet_plan_keeps_why_it_is_blocked(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    code, out, _ = run_cli(capsys, "-q", "plan")
    lines = out.splitlines()
    assert code == 3 and lines[0].startswith("Target: ") and lines[1].startswith("Plan: ")
    assert lines[2].startswith("Blocked: ")
    assert lines[-1] == "Review the deletes, then re-run with --allow-deletes 2 to proceed."


def test_quiet_apply_prints_the_summaries_not_the_plan_body(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "-q", "apply", "--yes")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"Target: local emulator ({demo / '.reconciler' / 'local.sqlite'})"
    assert lines[1].startswith("Plan: 26 to create")
    assert lines[2] == (f"Applied to local emulator ({demo / '.reconciler' / 'local.sqlite'}): 26 created, "
                        "2 deleted, 2 enrolled, 0 skipped, 0 failed")
    assert lines[3].startswith("Journal: ") and lines[4] == "Converged: all 30 planned changes are in place."
    assert len(lines) == 5 and err == ""  # no progress either


def test_quiet_export_prints_only_its_summary(demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "-q", "export", "--out", str(tmp_path / "exported"))
    assert code == 0 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("exported 5 course(s) from local emulator")
    assert (tmp_path / "exported" / "makerspace-safety.yaml").is_file()
    code, out, _ = run_cli(capsys, "export", "--out", str(tmp_path / "again"))
    assert code == 0 and len(out.splitlines()) == 5  # without -q, the files written


@pytest.mark.parametrize(("flags", "level", "http"), [
    ((), logging.WARNING, logging.WARNING), (("-q",), logging.ERROR, logging.WARNING),
    (("-v",), logging.INFO, logging.WARNING), (("-vv",), logging.DEBUG, logging.DEBUG),
    (("-v", "-v"), logging.DEBUG, logging.DEBUG),
])
def test_verbosity_sets_the_loggers(flags: tuple[str, ...], level: int, http: int, demo: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, *flags, "validate", "--offline")[0] == 0
    assert logging.getLogger("reconciler").level == level
    assert logging.getLogger("reconciler.http").getEffectiveLevel() == http


def test_log_lines_go_to_stderr_only(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "-vv", "validate", "--offline")[0] == 0
    logging.getLogger("reconciler.http").debug("GET https://example.com/api 200 (3 ms)")
    logging.getLogger("reconciler.state").info("read 3 pages")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "GET https://example.com/api 200 (3 ms)\nread 3 pages\n"


def test_version_is_on_the_first_screen_of_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert f"reconciler {__version__}" in "\n".join(out.splitlines()[:10])
    assert "--version" in out.splitlines()[0]
    assert run_cli(capsys, "--version") == (0, f"reconciler {__version__}\n", "")


def test_a_command_help_lists_its_own_options_and_the_global_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "apply", "--help")
    assert code == 0
    for option in ("--resume JOURNAL", "--fail-fast", "--max-wait SECONDS", "--no-cache", "-q, --quiet", "--api URL"):
        assert option in out, option
