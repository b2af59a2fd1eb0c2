"""`reconciler snapshot`: a copy of the scope's raw records that plans the same locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main

from .conftest import EXAMPLES


def test_a_snapshot_plans_the_same_as_the_state_it_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source"
    shutil.copytree(EXAMPLES, source, ignore=shutil.ignore_patterns(".reconciler", "github-actions"))
    monkeypatch.chdir(source)
    assert main(["snapshot", "--course", "Onboarding 101", "--course", "Makerspace Safety", "--out", "snap.json"]) == 0
    snapshot = json.loads((source / "snap.json").read_text())
    assert snapshot["format"] == "nexudus-snapshot/1"
    assert [c["Title"] for c in snapshot["courses"]] == ["Onboarding 101", "Makerspace Safety"]
    assert "CourseLessonTitle" in snapshot["coursecompletedlessons"][0]  # raw records, as the API returns them
    for name in ("host-training.yaml", "coffee-bar-migration.yaml"):  # their courses are not in the snapshot
        (source / name).unlink()
    assert main(["plan", "--format", "json"]) == 0
    original = json.loads(capsys.readouterr().out)

    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("onboarding.yaml", "makerspace.yaml"):
        shutil.copy(source / name, copy / name)
    monkeypatch.chdir(copy)
    assert main(["emulator", "seed", str(source / "snap.json")]) == 0
    capsys.readouterr()
    assert main(["plan", "--format", "json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["actions"] == original["actions"] and planned["summary"] == original["summary"]


def test_an_unknown_course_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reconciler.yaml").write_text(f"seed: {EXAMPLES / 'seed.yaml'}\n")
    assert main(["snapshot", "--course", "Onboarding"]) == 1
    assert "no course 'Onboarding'; did you mean 'Onboarding 101'?" in capsys.readouterr().err
