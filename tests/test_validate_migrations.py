"""`validate` against a reachable target reports what `plan` finds only against the live completions of a
migration's courses: members with progress to migrate who are not enrolled (`enroll: false`), and a source
lesson with completions but no mapping under `strict: true`; the same text, place and exit code as plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import run_cli

MIGRATION = "coffee-bar-migration.yaml"


def edit_migration(demo: Path, old: str, new: str) -> None:
    path = demo / MIGRATION
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def validate_and_plan(capsys: pytest.CaptureFixture[str]) -> tuple[tuple[int, str], tuple[int, str]]:
    code, _, validated = run_cli(capsys, "validate")
    plan_code, _, planned = run_cli(capsys, "plan")
    return (code, validated), (plan_code, planned)


def test_validate_reports_members_to_migrate_who_are_not_enrolled(demo: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(capsys, "validate")[0] == 0
    edit_migration(demo, "enroll: true", "enroll: false")
    (code, validated), (plan_code, planned) = validate_and_plan(capsys)
    assert plan_code == 1
    assert f"{MIGRATION}:9:14: 2 member(s) with progress to migrate are not enrolled" in planned
    assert (code, validated) == (plan_code, planned)


def test_validate_reports_an_unmapped_lesson_under_strict(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_migration(demo, "  Cleaning the machine: Cleaning down\n", "")
    edit_migration(demo, "\nsource: keep\n", "\nsource: keep\nstrict: true\n")
    (code, validated), (plan_code, planned) = validate_and_plan(capsys)
    assert plan_code == 1
    assert f"{MIGRATION}:7:9: lesson 'Cleaning the machine' of 'Coffee Bar Basics' has 2 completion(s) but no " \
           "mapping" in planned
    assert (code, validated) == (plan_code, planned)


def test_validate_warns_of_an_unmapped_lesson_as_plan_does(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_migration(demo, "  Cleaning the machine: Cleaning down\n", "")
    code, out, err = run_cli(capsys, "validate")
    assert code == 0 and out.startswith("valid: ")
    assert f"warning: {MIGRATION}:7:9: lesson 'Cleaning the machine' of 'Coffee Bar Basics' has 2 completion(s) " \
           "but no mapping; they are not migrated" in err
    code, out, _ = run_cli(capsys, "plan")
    assert code == 0 and "no mapping; they are not migrated" in out


def test_validate_says_once_a_problem_that_two_checks_find(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The checks of the specs alone and those of their names on the target find some problems both: each is said
    once, and counted once, as plan says it."""
    (demo / "extra.yaml").write_text("apiVersion: reconciler/v1\nkind: Migration\nmetadata: {name: same}\n"
                                     "from: {course: Makerspace Safety}\nto: {course: Makerspace Safety}\n"
                                     "lessons: {Intro: Intro}\n")
    (code, validated), (plan_code, planned) = validate_and_plan(capsys)
    assert code == plan_code == 1 and validated == planned
    assert validated.splitlines() == ["error: 1 problem found",
                                      "extra.yaml:5:14: a migration's from and to name the same course"]
    (demo / "extra.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: extra}\n"
                                     "course: Makerspace Safety\nmode: owned\nmembers: []\n")
    code, _, validated = run_cli(capsys, "validate")
    assert code == 1 and validated.startswith("error: 1 problem found\n")
    assert validated.count("one course takes one mode") == 1
