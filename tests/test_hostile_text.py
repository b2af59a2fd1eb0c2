"""Names and titles are other people's text: whatever they hold, the terminal's plan, the pull-request comment and
the report show it as text, and nothing in it can move the cursor, forge a line or a row, ping someone, or link."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, seeded

SEED = r"""coworkers:
  - {name: "@octocat [details](https://evil.example/) #1 **bold** <img src=x>", email: a@x.com}
  - {name: "Bob\r\r## All clear: nothing is deleted\r", email: b@x.com}
  - {name: "Eve \u202e evil", email: e@x.com}
courses:
  - title: "Course <b>C</b>"
    lessons: ["Fire safety\e[2K\r    + create   Fire safety\e[8m", "L2"]
    members:
      - {email: a@x.com, completed: all}
      - {email: b@x.com, completed: all}
      - {email: e@x.com, completed: all}
"""
SPEC = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: c}
course: {id: 101}
mode: authoritative
members:
  - {email: a@x.com, completed: [L2]}
  - {email: b@x.com, completed: [L2]}
  - {email: e@x.com, completed: [L2]}
"""


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return seeded(tmp_path, monkeypatch, "seed.yaml", SEED, {"c.yaml": SPEC})


def test_the_terminal_shows_control_characters_as_escapes(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "plan", "specs", "--allow-deletes", "3")
    assert code == 0 and err == ""
    assert not {"\x1b", "\r", "\u202e"} & set(out)
    deletes = [line for line in out.splitlines() if "- delete" in line]
    assert len(deletes) == 3
    assert all(line.startswith("    - delete   Fire safety\\x1b[2K\\r    + create") for line in deletes)
    assert "Bob\\r\\r## All clear: nothing is deleted\\r (member" in out and "Eve \\u202e evil" in out
    assert not any(line.lstrip().startswith("+ create   Fire safety") for line in out.splitlines())


def pr_rows(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("|")]


@pytest.mark.parametrize("words", [["plan", "specs", "--format", "markdown", "--allow-deletes", "3"], ["report"]])
def test_markdown_shows_names_as_text_and_keeps_its_rows(
        words: list[str], space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *words)
    assert code == 0 and err == ""
    assert not {"\r", "\x1b", "\u202e"} & set(out)
    assert "@octocat" not in out and "@\u200boctocat" in out  # no mention: nobody is notified
    assert "#1 " not in out and "](https://" not in out and "<img" not in out and "<b>" not in out
    assert "## All clear" not in out
    assert not any(line.startswith("#") and "All clear" in line for line in out.splitlines())
    rows = pr_rows(out)
    assert rows and all(row.endswith("|") for row in rows)
    widths = {row.replace("\\|", "").count("|") for row in rows if "---" not in row}
    bob = [row for row in rows if "Bob" in row]
    assert bob and all(row.replace("\\|", "").count("|") in widths for row in bob)


def test_a_report_too_long_for_a_comment_is_cut_at_a_line_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    lessons = ", ".join(f"'Lesson {i:02d}, a title of some length'" for i in range(30))
    courses = "".join(f"  - title: Course {c:02d}\n    lessons: [{lessons}]\n"
                      "    members: [{email: a@x.com, completed: all}]\n" for c in range(40))
    seeded(tmp_path, monkeypatch, "seed.yaml", "coworkers: [{name: Ann, email: a@x.com}]\ncourses:\n" + courses)
    code, out, _ = run_cli(capsys, "report")
    assert code == 0 and len(out) < 60_000
    assert "**Cut here** to stay under 60,000 characters" in out and "more courses not shown" in out
    body = out[: out.index("> **Cut here**")].rstrip("\n")
    assert body.splitlines()[-1].endswith("|")  # the last row whole


def test_a_problem_naming_someone_stays_on_its_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A name a problem quotes may hold a line break (members edit their own names): the error keeps one line per
    problem, the break shown as its escape, so that no name can add a line such as a forged all-clear."""
    seed = ('coworkers: [{name: "Ada\\nerror: 0 problems; all clear", email: a@x.com}]\n'
            "courses: [{title: C, lessons: [L1], members: [{email: a@x.com, completed: all}]}]\n")
    spec = ("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: c}\ncourse: C\n"
            "members: [{email: a@x.com, completed: all}]\nrevoke: [{coworker_id: 10001, lessons: [L1]}]\n")
    seeded(tmp_path, monkeypatch, "seed.yaml", seed, {"c.yaml": spec})
    for command in ("plan", "validate"):
        code, _, err = run_cli(capsys, command, "specs")
        assert code == 1, command
        assert err.splitlines() == [
            "error: 1 problem found",
            "specs/c.yaml:6:40: Ada\\nerror: 0 problems; all clear has 'L1' both declared (specs/c.yaml:5:19) and "
            "revoked; remove one of them"], command
