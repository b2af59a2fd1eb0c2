"""`reconciler doctor`: measure the target and write its profile (the checks live in reconciler/doctor.py)."""

from __future__ import annotations

from pathlib import Path

from reconciler.commands import Console, Outcome
from reconciler.doctor import run_doctor
from reconciler.errors import EXIT_BLOCKED, EXIT_OK


def doctor(paths: list[Path], *, write_check: bool = False, course: str | None = None,
           course_id: int | None = None, lesson: str | None = None, lesson_id: int | None = None,
           member: str | None = None, member_id: int | None = None, config_file: Path | None, api: str | None,
           console: Console) -> Outcome:
    """OK: the tool can work safely against the target; BLOCKED: it works with limits; ERROR: it cannot."""
    sandbox_flags = {"course": course, "course_id": course_id, "lesson": lesson, "lesson_id": lesson_id,
                     "member": member, "member_id": member_id}
    code = run_doctor(paths, config_file=config_file, api=api, out=console.stdout, write_check=write_check,
                      sandbox_flags=sandbox_flags, quiet=console.quiet)
    return Outcome.OK if code == EXIT_OK else Outcome.BLOCKED if code == EXIT_BLOCKED else Outcome.ERROR
