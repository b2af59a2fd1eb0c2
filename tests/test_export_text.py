"""Export writes other people's text (names, titles) into spec files: whatever it holds, the files plan to no
changes, and no name can write a line of a spec."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, seeded

HOSTILE = r"""coworkers:
  - {name: "Eve\n    completed: all\n  - email: boss@x.com   #", email: eve@x.com}
  - {name: "Boss\u2028    completed: all\u0085x\e[31m\r", email: boss@x.com}
courses:
  - title: "Course C\nmode: additive"
    lessons: [L1, L2, L3]
    members: [{email: eve@x.com, completed: [L1]}, {email: boss@x.com, completed: [L1]}]
"""


def exported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             seed_name: str, seed: str) -> str:
    seeded(tmp_path, monkeypatch, seed_name, seed)
    code, out, err = run_cli(capsys, "export", "--out", "exp")
    assert code == 0 and "shows no changes" in out + err, err
    code, out, err = run_cli(capsys, "plan", "exp", "--detailed-exitcode")
    assert code == 0 and "Plan: 0 to create, 0 to delete" in out, out + err
    return "".join(path.read_text() for path in sorted((tmp_path / "exp").glob("*.yaml")))


def test_a_name_cannot_write_a_line_of_the_exported_spec(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    text = exported(tmp_path, monkeypatch, capsys, "seed.yaml", HOSTILE)
    lines = text.splitlines()
    assert "    completed: all" not in lines and "mode: additive" not in lines and "mode: owned" in lines
    assert [line for line in lines if line.startswith("  - ")] == [
        "  - email: boss@x.com   # Boss\ufffd    completed: all\ufffdx\ufffd[31m",  # (the name stripped)
        "  - email: eve@x.com   # Eve\ufffd    completed: all\ufffd  - email: boss@x.com   #"]


def test_a_coworker_enrolled_twice_is_named_by_each_enrolment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    stamp = '"CreatedOn": "2026-01-01T00:00:00Z", "UpdatedOn": "2026-01-01T00:00:00Z"'
    snapshot = json.loads("""{"format": "nexudus-snapshot/1",
        "courses": [{"Id": 1, "Title": "Course C", "Active": true, "DisplayOrder": 1}],
        "courselessons": [{"Id": 11, "CourseId": 1, "Title": "L1", "DisplayOrder": 1, "Active": true},
                          {"Id": 12, "CourseId": 1, "Title": "L2", "DisplayOrder": 2, "Active": true}],
        "coworkers": [{"Id": 100, "FullName": "Ann", "Email": "ann@x.com"}],
        "coursemembers": [{"Id": 500, "CourseId": 1, "CoworkerId": 100}, {"Id": 501, "CourseId": 1, "CoworkerId": 100}],
        "coursecompletedlessons": [{"Id": 9001, "CourseLessonId": 11, "CourseMemberId": 500, STAMP},
                                   {"Id": 9002, "CourseLessonId": 12, "CourseMemberId": 501, STAMP}]}
        """.replace("STAMP", stamp))
    text = exported(tmp_path, monkeypatch, capsys, "seed.json", json.dumps(snapshot))
    assert "  - course_member_id: 500   # Ann\n    completed: [L1]\n" in text
    assert "  - course_member_id: 501   # Ann\n    completed: [L2]\n" in text


@pytest.mark.parametrize("title", ["2025", "On", "No", "Null", "true", "1e3", "0x1F", "~", "12:30", ".inf"])
def test_a_course_title_yaml_reads_as_another_type_exports_a_spec_that_loads(
        title: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seed = ("coworkers: [{name: Ann, email: ann@x.com}]\ncourses:\n"
            f"  - {{title: {json.dumps(title)}, lessons: [L1], members: [{{email: ann@x.com, completed: all}}]}}\n")
    exported(tmp_path, monkeypatch, capsys, "seed.yaml", seed)
