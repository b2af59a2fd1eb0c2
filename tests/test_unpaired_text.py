"""A lone surrogate in a server's text (an emoji cut in half: valid JSON, `"Ann \\ud83d"`, which UTF-8 cannot
encode) in a name, a title or a SystemId: every command still runs, and what it writes says it as its escape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_cli, seeded

SNAPSHOT = r"""{"format": "nexudus-snapshot/1",
 "courses": [{"Id": 1, "Title": "Course C", "Active": true, "DisplayOrder": 1}],
 "courselessons": [{"Id": 11, "CourseId": 1, "Title": "L1 \ud83d", "DisplayOrder": 1, "Active": true},
                   {"Id": 12, "CourseId": 1, "Title": "L2", "DisplayOrder": 2, "Active": true}],
 "coworkers": [{"Id": 100, "FullName": "Ann \ud83d", "Email": "ann@x.com", "TeamNames": "Sales \udc00"}],
 "coursemembers": [{"Id": 500, "CourseId": 1, "CoworkerId": 100}],
 "coursecompletedlessons": [{"Id": 9001, "CourseLessonId": 11, "CourseMemberId": 500, "SystemId": "x \udc00",
                             "CreatedOn": "2026-01-01T00:00:00Z", "UpdatedOn": "2026-01-01T00:00:00Z"}]}
"""
SPEC = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: c}
course: Course C
mode: authoritative
members:
  - {email: ann@x.com, completed: [L2]}
"""


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return seeded(tmp_path, monkeypatch, "seed.json", SNAPSHOT, {"c.yaml": SPEC})


@pytest.mark.parametrize("words", [["plan", "specs"], ["plan", "specs", "--format", "markdown"],
                                   ["plan", "specs", "--format", "html"], ["report"], ["report", "--format", "html"]])
def test_every_output_of_a_lone_surrogate_is_its_escape(
        words: list[str], space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *words)
    assert code == 0 and "bug" not in err and "Ann " in out
    assert "\ud83d" not in out and "\\ud83d" in out


def test_a_saved_plan_holds_the_same_text_and_applies(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json", "--out", "plan.json", "--allow-deletes", "1")
    assert code == 0 and "bug" not in err
    for text in (out, (space / "plan.json").read_text()):  # JSON: the escape is the same character again
        delete = next(a for a in json.loads(text)["actions"] if a["action"] == "delete")
        assert delete["member"]["name"] == "Ann \ud83d" and delete["record"]["SystemId"] == "x \udc00"
    assert run_cli(capsys, "show", "plan.json")[0] == 0
    code, out, err = run_cli(capsys, "apply", "--plan", "plan.json", "--yes")
    assert code == 0 and "deleted        1" in out and "bug" not in err
    journal = next((space / ".reconciler" / "journal").glob("*.jsonl")).read_text()
    assert '"SystemId":"x \\udc00"' in journal  # the deleted record in full, its text as the server sent it
    assert all(json.loads(line) for line in journal.splitlines())
    assert run_cli(capsys, "plan", "specs", "--detailed-exitcode")[0] == 0


def test_a_snapshot_keeps_the_text_as_the_server_sent_it(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "snapshot", "--out", "again.json")
    assert code == 0 and "bug" not in err
    again = json.loads((space / "again.json").read_text())
    assert again["coworkers"][0]["FullName"] == "Ann \ud83d"
