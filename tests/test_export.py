"""`reconciler export`: readable specs that plan to no changes, on the emulator's tricky cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from reconciler.cli import main
from reconciler.emulator.app import Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.store import Store
from reconciler.export import yaml_scalar

from .conftest import API_SEED, EmulatorFactory


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    (tmp_path / ".reconciler").mkdir()
    store = Store(str(tmp_path / ".reconciler" / "local.sqlite"))
    load_seed(API_SEED, store)
    # A duplicate (Al's "Safety" twice), and a completion in one of two same-titled courses.
    store.insert("coursecompletedlessons", {"CourseLessonId": 2001, "CourseMemberId": 50001}, updated_by="x")
    twin_member = store.insert("coursemembers", {"CourseId": 104, "CoworkerId": 10002, "Approved": True,
                                                 "Blocked": False}, updated_by="x")
    store.insert("coursecompletedlessons", {"CourseLessonId": 2007, "CourseMemberId": twin_member["Id"]},
                 updated_by="x")
    store.close()
    return tmp_path


@pytest.mark.parametrize("mode", ["owned", "additive"])
def test_a_plan_on_the_export_shows_no_changes(space: Path, mode: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--out", "exported", "--mode", mode]) == 0
    files = sorted(p.name for p in (space / "exported").iterdir() if p.is_file())
    assert files == ["onboarding-2026.yaml", "onboarding.yaml", "twin-103.yaml", "twin-104.yaml"]
    assert (space / "exported" / "schemas" / "completions.schema.json").is_file()  # what the specs point at
    assert main(["validate", "exported"]) == 0
    capsys.readouterr()
    assert main(["plan", "exported", "--detailed-exitcode"]) == 0
    out = capsys.readouterr().out
    assert "No changes." in out and "duplicate completion" in out  # the duplicate is reported, not touched


def test_the_exported_files_read_well(space: Path) -> None:
    assert main(["export", "--out", "exported"]) == 0
    onboarding = (space / "exported" / "onboarding.yaml").read_text()
    assert onboarding.startswith("# yaml-language-server: $schema=schemas/completions.schema.json\n")
    assert ("Mode owned: this spec deletes only the records carrying its marker (SystemId reconciler:onboarding),"
            in onboarding)
    assert "  - email: al@example.com   # Al Smith\n    completed: [Safety]\n" in onboarding
    assert "  - email: sal@example.com   # Sal Jones\n    completed: all\n" in onboarding
    assert onboarding.index("al@example.com") < onboarding.index("sal@example.com")  # members sorted
    assert "course: Onboarding\n" in onboarding
    unicode = (space / "exported" / "onboarding-2026.yaml").read_text()
    assert "email: Zoe.Bronte@Example.com   # Zoë Brontë" in unicode and "completed: [Sécurité]" in unicode
    twin = yaml.safe_load((space / "exported" / "twin-104.yaml").read_text())
    assert twin["course"] == {"id": 104} and twin["metadata"]["name"] == "twin-104"


def test_export_does_not_overwrite_without_force(space: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--out", "exported"]) == 0
    assert main(["export", "--out", "exported"]) == 1
    assert "pass --force to overwrite" in capsys.readouterr().err
    assert main(["export", "--out", "exported", "--force"]) == 0


@pytest.mark.parametrize("text", ["Welcome", "Safety: part 1", "yes", "123", "- dash", "#hash", "a # b", "Zoë",
                                  "'quoted'", "[x]", "null", " padded ", "@home", "x: y"])
def test_scalars_read_back_exactly(text: str) -> None:
    assert yaml.safe_load(f"key: {yaml_scalar(text)}") == {"key": text}


@pytest.mark.parametrize(("mode", "removed"), [("owned", 1), ("authoritative", 2), ("additive", 0)])
def test_export_names_the_duplicates_a_plan_on_it_removes(space: Path, mode: str, removed: int,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Al's "Safety" already has a duplicate (no marker); add one carrying the exported spec's own marker.
    store = Store(str(space / ".reconciler" / "local.sqlite"))
    store.insert("coursecompletedlessons", {"CourseLessonId": 2001, "CourseMemberId": 50001,
                                            "SystemId": "reconciler:onboarding"}, updated_by="x")
    store.close()
    assert main(["export", "--out", "exported", "--mode", mode]) == 0
    err = capsys.readouterr().err
    if removed:
        assert f"except removing {removed} duplicate completion(s)" in err and "Onboarding: " in err
    else:
        assert "shows no changes" in err and "except" not in err
    assert main(["plan", "exported", "--format", "json", "--allow-deletes", "10"]) == 0
    import json

    summary = json.loads(capsys.readouterr().out)["summary"]
    assert (summary["create"], summary["delete"]) == (0, removed)


def test_export_and_snapshot_write_nothing_while_another_writer_shifts_their_reads(
        demo: Path, emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Another writer between the pages of a read at offsets (a delete and a create, the total unmoved) shifts
    records past it, unsaid. What export writes becomes specs (a plan on an owned export deletes a record its read
    missed), what snapshot writes a seed: each reads again until two reads agree, and writes nothing if they never
    do."""
    server = emulator(seed=demo / "seed.yaml", settings=Settings(limits=Limits.off(), require_auth=False,
                                                                  max_page_size=20, rng_seed=7))
    monkeypatch.setenv("NEXUDUS_TOKEN", "token")
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\n")
    assert main(["--api", server.url, "apply", "--yes"]) == 0
    assert main(["--api", server.url, "export", "--out", "quiet"]) == 0  # no other writer: two reads agree
    assert "`reconciler plan quiet` shows no changes" in capsys.readouterr().err
    assert main(["--api", server.url, "plan", "quiet", "--detailed-exitcode"]) == 0
    capsys.readouterr()
    server.app.settings.churn_between_pages = 1
    for command in (["export", "--out", "busy"], ["snapshot", "--out", "busy.json"]):
        assert main(["--api", server.url, *command]) == 1
        err = capsys.readouterr().err
        assert "error: the completions changed between each of 4 reads in a row (another writer at work)" in err, err
        assert "nothing is written" in err
    assert not (demo / "busy").exists() and not (demo / "busy.json").exists()
