"""Duplicates of a pair keep the oldest (the smallest CreatedOn as an instant): where a CreatedOn of theirs is not a
date, which is the oldest cannot be told, and none is deleted (drift, said), rather than a guess."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .conftest import run_cli

SPEC = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: course-c}
course: Course C
mode: authoritative
members:
  - {email: ana@x.com, completed: [L1]}
"""


def seed(stamps: list[str]) -> dict[str, Any]:
    """Course C (lessons L1, L2), Ana enrolled, and her L1 once for each of `stamps` (its CreatedOn)."""
    return {"format": "nexudus-snapshot/1",
            "courses": [{"Id": 1, "Title": "Course C", "Active": True, "DisplayOrder": 1}],
            "courselessons": [{"Id": 11, "CourseId": 1, "Title": "L1", "DisplayOrder": 1, "Active": True},
                              {"Id": 12, "CourseId": 1, "Title": "L2", "DisplayOrder": 2, "Active": True}],
            "coworkers": [{"Id": 100, "FullName": "Ana Ruiz", "Email": "ana@x.com"}],
            "coursemembers": [{"Id": 500, "CourseId": 1, "CoworkerId": 100}],
            "coursecompletedlessons": [{"Id": 9000 + n, "CourseLessonId": 11, "CourseMemberId": 500,
                                        "CreatedOn": stamp, "UpdatedOn": "2026-01-01T00:00:00Z"}
                                       for n, stamp in enumerate(stamps, 1)]}


@pytest.mark.parametrize("stamp", ["yesterday", ""])
def test_duplicates_with_a_created_on_that_is_not_a_date_are_not_settled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], stamp: str) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    (tmp_path / "reconciler.yaml").write_text("seed: seed.json\n")
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "c.yaml").write_text(SPEC)
    (tmp_path / "seed.json").write_text(json.dumps(seed(["2026-01-01T00:00:00Z", stamp])))
    code, out, err = run_cli(capsys, "plan", "specs", "--detailed-exitcode")
    assert code == 0, out + err
    assert "Plan: 0 to create, 0 to delete, 0 to enrol, 1 unchanged." in out
    assert f"(#9001, #9002): the CreatedOn of #9002 ({stamp!r}) is not a date, so the oldest, which is kept, " \
        "cannot be told; none is deleted" in out
    (tmp_path / "seed.json").unlink()  # a new space, both dated: the younger goes
    (tmp_path / ".reconciler" / "local.sqlite").unlink()
    (tmp_path / "seed.json").write_text(json.dumps(seed(["2026-01-02T00:00:00Z", "2026-01-01T00:00:00Z"])))
    code, out, _ = run_cli(capsys, "plan", "specs")
    assert code == 0 and "Plan: 0 to create, 1 to delete" in out and "- delete   L1  #9001" in out
