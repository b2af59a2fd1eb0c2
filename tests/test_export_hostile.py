"""`reconciler export` on hostile live text: names, titles and addresses that hold line breaks, control and format
characters, lone surrogates, YAML's other types or clashing slugs, and coworkers enrolled twice. Whatever they hold,
each exported line stays one line, each comment stays a comment, every file reads with libyaml (the parser `plan`
uses on files too large to read twice), and `plan` on the export shows no changes."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_cli

STAMP = {"CreatedOn": "2026-01-01T00:00:00Z", "UpdatedOn": "2026-01-01T00:00:00Z"}
# Every line break YAML knows (a comment or a plain scalar ends at the first one), and Python's others.
BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


def snapshot(courses: list[tuple[int, str, list[str]]], coworkers: list[tuple[int, str, str]],
             members: list[tuple[int, int, int]], done: list[tuple[int, int]]) -> dict[str, Any]:
    """A JSON snapshot seed: courses (Id, title, lesson titles: lesson Ids are the course's Id × 10 + 1, + 2, ...),
    coworkers (Id, name, email), enrolments (Id, course Id, coworker Id), completions (lesson Id, enrolment Id)."""
    return {"format": "nexudus-snapshot/1",
            "courses": [{"Id": i, "Title": title, "Active": True, "DisplayOrder": i} for i, title, _ in courses],
            "courselessons": [{"Id": i * 10 + n, "CourseId": i, "Title": lesson, "DisplayOrder": n, "Active": True}
                              for i, _, lessons in courses for n, lesson in enumerate(lessons, 1)],
            "coworkers": [{"Id": i, "FullName": name, "Email": email} for i, name, email in coworkers],
            "coursemembers": [{"Id": i, "CourseId": course, "CoworkerId": coworker} for i, course, coworker in members],
            "coursecompletedlessons": [{"Id": 9000 + n, "CourseLessonId": lesson, "CourseMemberId": member, **STAMP}
                                       for n, (lesson, member) in enumerate(done, 1)]}


def round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
               seed: dict[str, Any], unchanged: int, *export: str) -> dict[str, str]:
    """Seed a local space, export it and plan on the export: no changes, `unchanged` completions kept (every one of
    the space's: none left out of the export). The exported files, by name. Every line of them is one line, every
    comment free of control, format and separator characters, every file read by libyaml as by PyYAML."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    (tmp_path / "seed.json").write_text(json.dumps(seed), encoding="utf-8")
    (tmp_path / "reconciler.yaml").write_text("seed: seed.json\n")
    code, out, err = run_cli(capsys, "export", "--out", "exp", *export)
    assert code == 0 and "shows no changes" in err, out + err
    code, out, err = run_cli(capsys, "plan", "exp", "--detailed-exitcode")
    assert code == 0, out + err
    assert f"Plan: 0 to create, 0 to delete, 0 to enrol, {unchanged} unchanged." in out, out + err
    files = {path.name: path.read_text(encoding="utf-8") for path in sorted((tmp_path / "exp").glob("*.yaml"))}
    for name, text in files.items():
        lines = text.split("\n")
        assert not [line for line in lines if set(line) & set(BREAKS)], name  # one line each, whatever the text
        for line in lines:  # a comment: no control, format or separator character (nothing hidden, nothing moved)
            if "#" in line and not line.startswith("# yaml-language-server"):
                words = line[line.index("#"):]
                assert not [c for c in words if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp")], line
        assert yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))["kind"] == "Completions", name
    return files


def test_a_name_writes_only_a_comment_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The brief's repro (a name that writes `completed: all` and a member entry), ESC, every YAML line break, and
    format characters (a direction override, isolates, a zero-width space, a BOM): each a U+FFFD in the comment."""
    names = ["Eve\n    completed: all\n  - email: boss@x.com   #", "Boss", "Esc\x1b[31mape\x1b[0m",
             "Cr\r    completed: all", "Nel\x85    completed: all", "Ls\u2028  - email: eve@x.com",
             "Ps\u2029mode: authoritative", "Rlo \u202enimda\u202c", "Iso\u2066late\u2069", "Zw\u200bsp\ufeff"]
    coworkers = [(100 + n, name, f"m{n}@x.com") for n, name in enumerate(names)]
    coworkers[1] = (101, "Boss", "boss@x.com")
    seed = snapshot([(1, "Course C", ["L1", "L2", "L3"])], coworkers,
                    [(500 + n, 1, 100 + n) for n in range(len(names))], [(11, 500 + n) for n in range(len(names))])
    text = round_trip(tmp_path, monkeypatch, capsys, seed, len(names))["course-c.yaml"]
    spec = yaml.safe_load(text)
    assert spec["mode"] == "owned" and all(entry["completed"] == ["L1"] for entry in spec["members"])
    assert len(spec["members"]) == len(names)
    entries = [line for line in text.splitlines() if line.startswith("  - ")]
    assert "  - email: m0@x.com   # Eve\ufffd    completed: all\ufffd  - email: boss@x.com   #" in entries
    assert "  - email: m8@x.com   # Iso\ufffdlate\ufffd" in entries
    assert "  - email: m7@x.com   # Rlo \ufffdnimda\ufffd" in entries
    assert "  - email: m2@x.com   # Esc\ufffd[31mape\ufffd[0m" in entries


def test_titles_with_line_separators_and_lone_surrogates_export_specs_that_read_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """U+2028 and U+2029 in a plain scalar end it in a block (`course: A<LS>B` is not YAML); a title with a lone
    surrogate has no escape libyaml accepts, so such a course or lesson is named by its Id."""
    seed = snapshot([(1, "Course\u2028C", ["L\u20291", "L2", "Cut \ud83d", "Tab\there"]),
                     (2, "Cut \ud83d course", ["Zero\u200bwidth", "BOM\ufeff"])],
                    [(100, "Ann", "ann@x.com")], [(500, 1, 100), (501, 2, 100)],
                    [(11, 500), (13, 500), (14, 500), (21, 501)])
    files = round_trip(tmp_path, monkeypatch, capsys, seed, 4)
    first, second = (yaml.safe_load(files[name]) for name in ("coursec.yaml", "cut-course.yaml"))
    assert first["course"] == "Course\u2028C" and second["course"] == {"id": 2}
    assert first["members"][0]["completed"] == ["L\u20291", {"id": 13}, "Tab\there"]
    assert second["members"][0]["completed"] == ["Zero\u200bwidth"]
    assert 'course: "Course\\u2028C"' in files["coursec.yaml"]  # the separator seen, as its escape
    assert '["Zero\\u200bwidth"]' in files["cut-course.yaml"]


def test_an_address_the_spec_language_refuses_names_the_member_by_coworker_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """An address `plan` calls malformed (no @, no dot, a space, a line separator) or cannot send (a lone surrogate)
    was written as `email:` and the plan on the export failed; such a member is named by `coworker_id`."""
    emails = ["ann", "bob@x", "c d@x.com", "e\u2028f@x.com", "g\x85h@x.com", "i\u3000j@x.com", "k\ud83d@x.com",
              "fine@x.com"]
    seed = snapshot([(1, "Course C", ["L1", "L2"])], [(100 + n, f"P{n}", e) for n, e in enumerate(emails)],
                    [(500 + n, 1, 100 + n) for n in range(len(emails))], [(11, 500 + n) for n in range(len(emails))])
    spec = yaml.safe_load(round_trip(tmp_path, monkeypatch, capsys, seed, len(emails))["course-c.yaml"])
    named = [{key: value for key, value in entry.items() if key != "completed"} for entry in spec["members"]]
    assert named == [{"email": "fine@x.com"}, *({"coworker_id": 100 + n} for n in range(len(emails) - 1))]


def test_a_coworker_enrolled_twice_is_named_by_each_enrolment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The brief's repro: Ann (coworker 100) enrolled as 500 and 501, L1 done in one, L2 in the other. Written twice
    as `email: ann@x.com`, the plan on the export created each entry's lessons for both enrolments."""
    seed = snapshot([(1, "Course C", ["L1", "L2"])], [(100, "Ann", "ann@x.com"), (101, "Bob", "bob@x.com")],
                    [(500, 1, 100), (501, 1, 100), (502, 1, 101)], [(11, 500), (12, 501), (12, 502)])
    for mode in ("owned", "authoritative"):
        (tmp_path / mode).mkdir()
        files = round_trip(tmp_path / mode, monkeypatch, capsys, seed, 3, "--mode", mode)
        spec = yaml.safe_load(files["course-c.yaml"])
        assert spec["members"] == [{"email": "bob@x.com", "completed": ["L2"]},
                                   {"course_member_id": 500, "completed": ["L1"]},
                                   {"course_member_id": 501, "completed": ["L2"]}]
        assert "ann@x.com" not in files["course-c.yaml"]


# Titles YAML 1.1 reads as another type (a number, a bool, null, a date, a time), titles that slug to such names,
# titles whose slugs clash (`~` and `!!` both slug to `course`; `B-7` takes `b-7` before the two courses titled `b`
# with Ids 7 and 8 want it), each a course with one member and one completion.
TITLES = ["2025", "On", "No", "Null", "true", "1e3", "0x1F", "~", "12:30", ".inf", "2025-01-01", "0o17", "1_000",
          "2025!", "ON!", "Yes.", "!!", "Course", "B-7", "b", "b", "NULL "]


def test_titles_yaml_reads_as_other_types_or_that_clash_export_one_spec_each_with_no_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    courses = [(30 + n, title, ["L1"]) for n, title in enumerate(TITLES) if title != "b"]
    courses += [(7, "b", ["L1"]), (8, "b", ["L1"])]
    seed = snapshot(courses, [(100, "Ann", "ann@x.com")], [(500 + i, i, 100) for i, _, _ in courses],
                    [(i * 10 + 1, 500 + i) for i, _, _ in courses])
    files = round_trip(tmp_path, monkeypatch, capsys, seed, len(courses))
    assert len(files) == len(courses)  # one spec a course: none overwritten by another of the same name
    specs = [yaml.safe_load(text) for text in files.values()]
    assert sorted(f"{spec['metadata']['name']}.yaml" for spec in specs) == sorted(files)  # names are strings
    titled = {spec["course"] for spec in specs if isinstance(spec["course"], str)}
    assert titled == {title.strip() for title in TITLES if title != "b"}
    assert {spec["metadata"]["name"] for spec in specs} >= {"2025", "on", "no", "null", "true", "1e3", "0x1f",
                                                            "b-7", "b-7-2", "b-8", "course"}
