"""Mistakes a user can make at the edges of the command line: each is one `error:` line and exit 1, never
a bug report, and nothing is written where it should not be."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, run_cli


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "bug" not in lines[0], err
    return lines[0]


@pytest.mark.parametrize("words", [
    ["init", "afile"],
    ["init", "afile/sub"],
    ["schemas", "--out", "afile"],
    ["emulator", "seed", str(EXAMPLES / "seed.yaml"), "--db", "afile/store.sqlite"],
])
def test_a_path_the_file_system_refuses_is_an_error_naming_it(
        words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    code, _, err = run_cli(capsys, *words)
    assert code == 1
    assert "afile" in one_error(err)
    assert not list(tmp_path.glob("**/reconciler-bug-*"))


@pytest.mark.parametrize(("words", "says"), [
    (["plan", "--allow-deletes", "-5"], "argument --allow-deletes: '-5' is not a whole number of 0 or more"),
    (["apply", "--allow-deletes", "many"], "argument --allow-deletes: 'many' is not a whole number of 0 or more"),
    (["apply", "--max-wait", "-1"], "argument --max-wait: '-1' is not a number of seconds of 0 or more"),
    (["apply", "--max-duration", "nan"], "argument --max-duration: 'nan' is not a number of seconds of 0 or more"),
])
def test_a_budget_or_a_wait_below_zero_is_refused(words: list[str], says: str, demo: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, *words)
    assert (code, out) == (1, "")
    assert says in one_error(err)
    assert not (demo / ".reconciler" / "journal").exists()


def test_export_into_a_folder_of_specs_is_refused_and_writes_nothing(demo: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def specs_and_files() -> list[str]:  # the local emulator's state folder (.reconciler/) aside
        return sorted(p.name for p in demo.iterdir() if not p.name.startswith("."))

    before = specs_and_files()
    code, _, err = run_cli(capsys, "export")
    assert code == 1
    assert "already holds specs" in one_error(err) and "--out DIR" in err
    assert specs_and_files() == before
    # into a folder of its own it works, and plan there shows no changes
    code, _, err = run_cli(capsys, "export", "--out", "exported")
    assert code == 0, err
    code, out, err = run_cli(capsys, "plan", "exported", "--detailed-exitcode")
    assert code == 0, out + err
    # exporting again over its own files needs --force, and then works
    code, _, err = run_cli(capsys, "export", "--out", "exported")
    assert code == 1 and "pass --force to overwrite" in one_error(err)
    code, _, err = run_cli(capsys, "export", "--out", "exported", "--force")
    assert code == 0, err


@pytest.mark.parametrize("words", [["show"], ["apply", "--yes", "--plan"], ["undo"], ["apply", "--yes", "--resume"]])
def test_a_plan_or_journal_nested_too_deeply_is_an_error_not_a_bug(
        words: list[str], demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(capsys, *words, "deep.json")
    assert code == 1 and "nested too deeply to read" in one_error(err)


@pytest.mark.parametrize("damage", [b"not a database\n", b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_damaged_local_store_is_an_error_saying_what_to_do(
        damage: bytes, demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / ".reconciler").mkdir(exist_ok=True)
    (demo / ".reconciler" / "local.sqlite").write_bytes(damage)
    code, out, err = run_cli(capsys, "plan")
    assert code == 1 and out == ""
    assert "the local emulator's store" in one_error(err) and "is damaged" in err and "move it aside" in err
    (demo / ".reconciler" / "local.sqlite").unlink()
    assert run_cli(capsys, "plan")[0] == 0  # seeded again
