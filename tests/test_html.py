"""The plan's matrix section, the HTML page (without a browser), `show` and `report`, on the demo space.

The browser's side (the page drawn, read back cell by cell, filters clicked) is tests/test_html_browser.py.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from reconciler.actions import document_digest
from reconciler.cli import main
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.errors import PlanFileError
from reconciler.matrix import CREATE, DEDUPE, DELETE, KEPT, NONE, course_grids, matrix_section
from reconciler.model import Catalog, Completion, Course, Lesson, Member, Origin
from reconciler.plan import Change, Plan
from reconciler.planning import load_plan
from reconciler.render import MARKDOWN_LIMIT, Labels, format_json, plan_dict
from reconciler.render_html import html_page
from reconciler.report import report_markdown
from reconciler.schemas import schema

from .conftest import EXAMPLES
from .synthetic_plan import report_document


def seed_completions() -> dict[str, dict[str, set[str]]]:
    """examples/seed.yaml read here, independently of the emulator: course → email → lessons completed."""
    seed = yaml.safe_load((EXAMPLES / "seed.yaml").read_text())
    found: dict[str, dict[str, set[str]]] = {}
    for course in seed["courses"]:
        members: dict[str, set[str]] = {}
        for entry in course.get("members", []):
            if isinstance(entry, str):
                members[entry.casefold()] = set()
                continue
            done = entry.get("completed", [])
            members[entry["email"].casefold()] = set(course["lessons"]) if done == "all" else set(done)
        found[course["title"]] = members
    return found


def saved_plan(demo: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["plan", "--out", "plan.json", *extra]) in (0, 2)
    capsys.readouterr()
    loaded: dict[str, Any] = json.loads((demo / "plan.json").read_text())
    return loaded


# --- the matrix section ------------------------------------------------------------------------

def test_the_plan_carries_the_matrix_of_the_state_it_was_made_on(demo: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    doc = saved_plan(demo, capsys)
    Draft202012Validator(schema("plan")).validate(doc)
    seed = seed_completions()
    courses = {section["course"]["title"]: section for section in doc["matrix"]}
    # The specs name five courses (the migration two): each is in the matrix, lessons in DisplayOrder.
    assert sorted(courses) == sorted(seed)
    onboarding = courses["Onboarding 101"]
    assert [x["title"] for x in onboarding["lessons"]][:3] == ["Welcome", "House rules", "Safety briefing"]
    assert [x["display_order"] for x in onboarding["lessons"]] == sorted(x["display_order"]
                                                                         for x in onboarding["lessons"])
    rows = {m["name"]: m for m in onboarding["members"]}
    assert rows["Alice Martin"]["kept"] == "1111111" and rows["Alice Martin"]["teams"] == ["Sales"]
    assert rows["Carol Jensen"]["kept"] == "0000000"  # her only completion, Welcome, is revoked
    assert rows["Zoë Laurent"]["teams"] == ["Design", "Community"]
    # Before the apply a member has kept + deleted: that is the seed, course by course (a migration reads
    # every member, so every enrolment is a row).
    deletes = Counter(a["course"]["title"] for a in doc["actions"] if a["action"] == "delete")
    for title, section in courses.items():
        assert section["enrolled"] == len(section["members"]) == len(seed[title])
        kept = sum(m["kept"].count("1") for m in section["members"])
        assert kept + deletes[title] == sum(len(done) for done in seed[title].values()), title
    # A create is never on a kept pair; a delete's record is for a member who is a row.
    for action in doc["actions"]:
        if action["action"] == "enroll":
            continue
        section = courses[action["course"]["title"]]
        position = [x["id"] for x in section["lessons"]].index(action["lesson"]["id"])
        member = next((m for m in section["members"] if m["id"] == action["member"]["id"]), None)
        if action["action"] == "create" and member is not None:
            assert member["kept"][position] == "0"
        if action["action"] == "delete":
            assert member is not None and member["kept"][position] == "0"


def _change(kind: str, member: int, lesson: int, reason: str, record: Completion | None = None) -> Change:
    return Change(kind, 1, member, lesson, "s", reason, Origin("s.yaml", 3), record)  # type: ignore[arg-type]


def test_the_matrix_rows_are_the_members_read_in_full_and_those_an_action_touches() -> None:
    catalog = Catalog(courses={1: Course(1, "C")},
                      lessons={11: Lesson(11, 1, "Second", 2), 12: Lesson(12, 1, "First", 1)},
                      members={1: Member(1, 1, 101, "Ann", ("Sales",)), 2: Member(2, 1, 102, "Bo"),
                               3: Member(3, 1, 103, "Cy", ("Ops", "Sales"))})
    current = [Completion(1, 1, 11, "2026-01-01"), Completion(2, 1, 11, "2026-02-01"),  # a duplicate
               Completion(3, 1, 12, "2026-01-01"),  # revoked below
               Completion(4, 2, 12, "2026-01-01"),  # Bo: not named, not touched
               Completion(5, 3, 11, "2026-01-01", system_id="reconciler:s"),  # Cy: an orphan
               Completion(6, 9, 11, "2026-01-01", member_name="Dee")]  # an enrolment the catalog lost
    changes = [_change("delete", 1, 11, "duplicate", current[1]), _change("delete", 1, 12, "revoked", current[2]),
               _change("delete", 3, 11, "orphaned", current[4]), _change("delete", 9, 11, "orphaned", current[5])]
    section = matrix_section(catalog, [1], current, changes, members={1})
    (course,) = section
    assert [x["title"] for x in course["lessons"]] == ["First", "Second"] and course["enrolled"] == 3
    assert [(m["id"], m["name"], m["kept"]) for m in course["members"]] == [
        (1, "Ann", "01"), (3, "Cy", "00"), (9, "Dee", "00")]
    assert course["members"][1]["teams"] == ["Ops", "Sales"] and course["members"][2]["coworker_id"] is None

    doc = plan_dict(Plan(actions=changes), Labels.from_catalog(catalog), target="t", spec_digest="d",
                    limits=DOCUMENTED_LIMITS)
    doc["matrix"] = section
    Draft202012Validator(schema("plan")).validate(doc)
    (grid,), placements = course_grids(doc)
    assert {row.name: row.cells for row in grid.rows} == {"Ann": [DELETE, DEDUPE], "Cy": [NONE, DELETE],
                                                          "Dee": [NONE, DELETE]}
    assert [(p.row, p.column) for p in placements] == [(0, 1), (0, 0), (1, 1), (2, 1)]
    lessons = grid.by_lesson()
    assert [(f.title, f.now, f.after, f.delete) for f in lessons] == [("First", 1, 0, 1), ("Second", 3, 1, 2)]


def test_without_a_matrix_the_grid_comes_from_the_actions_alone() -> None:
    changes = [_change("create", 1, 11, "declared"),
               _change("delete", 1, 12, "duplicate", Completion(7, 1, 12, "2026-01-01")),
               _change("delete", 2, 12, "revoked", Completion(8, 2, 12, "2026-01-01"))]
    doc = plan_dict(Plan(actions=changes), Labels({1: "C"}, {11: "A", 12: "B"}, {1: "Ann", 2: "Bo"}), target="t",
                    spec_digest="d", limits=DOCUMENTED_LIMITS)
    (grid,), _ = course_grids(doc)
    assert not grid.from_matrix and grid.lessons == [(11, "A"), (12, "B")]
    assert [row.cells for row in grid.rows] == [[CREATE, DEDUPE], [NONE, DELETE]]
    page = html_page(doc)
    assert "carries no matrix" in page


def test_the_matrix_is_written_one_member_per_line_and_reads_back_equal() -> None:
    section = [{"course": {"id": 1, "title": "C"}, "lessons": [{"id": 11, "title": "A"}], "enrolled": 2,
                "members": [{"id": 1, "name": "Ann", "teams": [], "kept": "1"},
                            {"id": 2, "name": "Bo", "teams": ["X"], "kept": "0"}]}]
    text = format_json({"a": 1, "matrix": section})
    assert json.loads(text) == {"a": 1, "matrix": section}
    assert '\n      {"id": 1, "name": "Ann", "teams": [], "kept": "1"},\n' in text
    assert format_json(json.loads(text)) == text


def test_a_plan_without_a_matrix_still_loads_and_shows(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = saved_plan(demo, capsys)
    del doc["matrix"]  # (a plan saved before the matrix was, its document digest made without it)
    doc["document_digest"] = document_digest(doc)
    (demo / "old.json").write_text(format_json(doc))
    assert len(load_plan(demo / "old.json").actions) == len(doc["actions"])
    assert main(["show", "old.json", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "carries no matrix" in page


def test_a_malformed_matrix_is_refused_naming_the_field(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = saved_plan(demo, capsys)
    doc["matrix"][0]["members"][0]["kept"] = "11x"
    (demo / "bad.json").write_text(format_json(doc))
    with pytest.raises(PlanFileError, match=r"matrix\[0\]\.members\[0\]\.kept"):
        load_plan(demo / "bad.json")
    assert main(["show", "bad.json"]) == 1
    assert "matrix[0].members[0].kept" in capsys.readouterr().err


# --- show ---------------------------------------------------------------------------------------

def test_show_round_trips_the_saved_plan_in_every_format(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = {}
    for form in ("text", "markdown", "json", "html"):
        assert main(["plan", "--out", "plan.json", "--out-html", "page.html", "--format", form]) == 0
        outputs[form] = capsys.readouterr().out
    saved = (demo / "plan.json").read_text()
    for form in ("text", "markdown", "json", "html"):
        assert main(["show", "plan.json", "--format", form]) == 0
        shown = capsys.readouterr().out
        if form == "json":
            assert shown == saved  # byte for byte: the reviewed file is the applied file
            assert json.loads(outputs["json"]) == {k: v for k, v in json.loads(saved).items()
                                                   if k not in ("spec_paths", "actions_digest", "document_digest")}
        else:
            assert shown == outputs[form], form
    assert outputs["html"] == (demo / "page.html").read_text()
    assert main(["show", "missing.json"]) == 1


def test_show_refuses_an_edited_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = saved_plan(demo, capsys)
    doc["actions"][0]["lesson"]["title"] = "Something else"
    (demo / "plan.json").write_text(format_json(doc))
    assert main(["show", "plan.json", "--format", "html"]) == 1
    assert "actions_digest does not match" in capsys.readouterr().err


@pytest.mark.parametrize("edit", ["warnings", "matrix", "drift"])
def test_show_and_apply_refuse_a_plan_whose_page_fields_were_edited(
        demo: Path, capsys: pytest.CaptureFixture[str], edit: str) -> None:
    """The warnings, the drift and the matrix are drawn beside the actions (the page's action table takes its
    member names from the matrix), and no other check covers them: an edited one was drawn without a word."""
    doc = saved_plan(demo, capsys)
    if edit == "matrix":
        assert doc["matrix"][0]["members"][0]["name"] != "Someone Else"
        doc["matrix"][0]["members"][0]["name"] = "Someone Else"
    else:
        doc[edit] = [*doc[edit], "reviewed: nothing to see"]
    (demo / "plan.json").write_text(format_json(doc))
    for command in (["show", "plan.json", "--format", "html"], ["apply", "--plan", "plan.json", "--yes"]):
        assert main(command) == 1
        err = capsys.readouterr().err
        assert "the plan's warnings, drift, matrix, undo_of, summary or limits were changed after it was saved" \
            in err, command


# --- the page, read as HTML --------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def test_the_page_is_self_contained_and_fetches_nothing(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--format", "html"]) == 0
    page = capsys.readouterr().out
    parsed = _Tags()
    parsed.feed(page)
    names = {tag for tag, _ in parsed.tags}
    assert not names & {"link", "img", "iframe", "object", "embed", "base", "audio", "video", "source", "frame"}
    for tag, attrs in parsed.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
    csp = next(attrs["content"] for tag, attrs in parsed.tags if attrs.get("http-equiv") == "Content-Security-Policy")
    assert csp is not None and "default-src 'none'" in csp and "connect-src" not in csp
    assert "url(" not in page and "@import" not in page
    code = "\n".join(parsed.scripts)
    for word in ("fetch(", "XMLHttpRequest", "WebSocket", "import(", "sendBeacon", "EventSource", "http://", "https://"):
        assert word not in code, word
    assert page.count("<script") == 2


def test_hostile_names_stay_text(tmp_path: Path) -> None:
    evil = "</script><script>window.pwned=1</script><!--"
    catalog = Catalog(courses={1: Course(1, "<b>Course</b>")}, lessons={11: Lesson(11, 1, "<img src=x>", 1)},
                      members={1: Member(1, 1, 101, evil, ("<i>team</i>",))})
    changes = [Change("create", 1, 1, 11, "s&co", "declared", Origin("a<b>.yaml", 1))]
    doc = plan_dict(Plan(actions=changes), Labels.from_catalog(catalog), target="https://x.example/<script>",
                    spec_digest="d", limits=DOCUMENTED_LIMITS)
    doc["matrix"] = matrix_section(catalog, [1], [], changes, {1})
    page = html_page(doc)
    assert page.count("<script") == 2 and "window.pwned" in page
    data = page.split('id="reconciler-data">', 1)[1].split("</script>", 1)[0]
    assert "<" not in data and ">" not in data and json.loads(data)["courses"][0]["rows"][0][2] == evil
    assert "<img src=x>" not in page and "&lt;img src=x&gt;" in page and "<b>Course</b>" not in page


def test_a_blocked_plan_says_so_at_the_top(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    assert main(["plan", "--format", "html"]) == 3
    page = capsys.readouterr().out
    top = page.split('<section id="overview">', 1)[0]
    assert "This plan is blocked" in top and "2 deletes exceed max_deletes (1)" in top
    assert "--allow-deletes 2" in top and "Target: <code>local emulator" in top
    assert "Plan: 26 to create, 2 to delete, 2 to enrol, 51 unchanged." in top


# --- report -------------------------------------------------------------------------------------

def test_report_numbers_are_the_seed(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("### reconciler report") and len(text) < MARKDOWN_LIMIT
    seed = yaml.safe_load((EXAMPLES / "seed.yaml").read_text())
    teams = {c["email"].casefold(): c["teams"] for c in seed["coworkers"]}
    done = seed_completions()
    total_done = total_cells = 0
    for course in seed["courses"]:
        members = done[course["title"]]
        lessons = course["lessons"]
        total_done += sum(len(x) for x in members.values())
        total_cells += len(members) * len(lessons)
        section = text.split(f"#### {course['title']}\n", 1)[1].split("####", 1)[0]
        for position, lesson in enumerate(lessons, start=1):
            count = sum(1 for x in members.values() if lesson in x)
            assert f"| {position}. {lesson} | {count} of {len(members)} | {count * 100 // len(members)}% |" in section
        by_team: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for email, completed in members.items():
            for team in teams[email] or ["(no team)"]:
                by_team[team][0] += 1
                by_team[team][1] += len(completed)
                by_team[team][2] += len(completed) == len(lessons)
        for team, (count, completions, complete) in by_team.items():
            possible = count * len(lessons)
            assert (f"| {team} | {count} | {completions} of {possible} | {completions * 100 // possible}% | "
                    f"{complete} |") in section, (course["title"], team)
    assert f"{total_done} of {total_cells} lesson completions ({total_done * 100 // total_cells}%)" in text


def test_report_by_course_title_and_as_a_page(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--course", "Makerspace Safety"]) == 0
    text = capsys.readouterr().out
    assert "#### Makerspace Safety" in text and "Onboarding 101" not in text
    assert main(["report", "--course", "Makerspace Safty"]) == 1
    assert "no course 'Makerspace Safty'; did you mean 'Makerspace Safety'?" in capsys.readouterr().err
    assert main(["report", "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!DOCTYPE html>") and "<h1>reconciler report</h1>" in page
    assert re.search(r"Read at \d{4}-\d\d-\d\d \d\d:\d\d UTC: 5 courses, ", page)


@pytest.mark.slow
def test_report_markdown_stays_under_the_limit_for_20000_members() -> None:
    report = report_document(20_000)
    text = report_markdown(report)
    assert len(text) < MARKDOWN_LIMIT and "20,000 members, 30 lessons" in text
    assert "more members; `reconciler report --format html` shows them all." in text
    (grid,), _ = course_grids(report)
    assert grid.count(KEPT) == sum(m["kept"].count("1") for m in report["matrix"][0]["members"]) > 0
