"""`reconciler snapshot`: a copy of the scope's raw records that plans the same locally."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reconciler.cli import main
from reconciler.emulator.store import ENTITIES, Store
from reconciler.emulator.synthetic import build_space

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


def test_a_snapshot_larger_than_the_spec_file_limit_seeds_line_by_line(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`snapshot` writes one record a line; `emulator seed` reads it a line at a time, so its size is not
    bounded by the 50 MB limit on a file parsed whole (a snapshot of 1,000,000 completions is about 500 MB)."""
    import reconciler.emulator.seed as emulator_seed
    from reconciler.cli import main as cli
    from reconciler.planning import write_document
    from reconciler.snapshot import snapshot_document

    store = Store()
    build_space(store, members=200, lessons=5, per_member=3)
    records = {name: [store.render(ENTITIES[name], row, full=False) for row in store.iter_rows(name)]
               for name in ("courses", "courselessons", "coursemembers", "coworkers", "coursecompletedlessons")}
    snapshot = tmp_path / "big.json"
    write_document(snapshot_document(records), snapshot)
    monkeypatch.setattr(emulator_seed, "MAX_FILE_BYTES", 1000)  # far below the snapshot's size
    assert snapshot.stat().st_size > 100_000
    assert cli(["emulator", "seed", str(snapshot), "--db", str(tmp_path / "copy.sqlite")]) == 0
    copy = Store(str(tmp_path / "copy.sqlite"))
    assert {r["Id"] for r in copy.iter_rows("coursecompletedlessons")} == \
        {r["Id"] for r in store.iter_rows("coursecompletedlessons")}
    copy.close()
    # Another layout (one line, as a hand-made file might be) is parsed whole, within the file limit.
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps(snapshot_document(records)))
    assert cli(["emulator", "seed", str(compact), "--db", str(tmp_path / "other.sqlite")]) == 1
