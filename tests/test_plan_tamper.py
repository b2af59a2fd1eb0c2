"""A saved plan is applied only as it was saved: its actions_digest covers the actions and the fields that
block it (`blocked`, `partial`), and a saved plan without one is refused (exit 1, one line, no writes)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.actions import actions_digest
from reconciler.planning import save_plan

from .conftest import run_cli

BUDGET = "target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n"


def blocked_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A plan the delete budget blocks (2 deletes, max_deletes 1), saved to blocked.json."""
    (demo / "reconciler.yaml").write_text(BUDGET)
    code, out, _ = run_cli(capsys, "plan", "--out", "blocked.json")
    assert code == 3 and "--allow-deletes 2" in out
    saved: dict[str, Any] = json.loads((demo / "blocked.json").read_text())
    assert saved["blocked"] is not None and saved["partial"] == []
    return saved


def write(demo: Path, name: str, doc: dict[str, Any]) -> None:
    (demo / name).write_text(json.dumps(doc, ensure_ascii=False, indent=2))


def refused(capsys: pytest.CaptureFixture[str], name: str, *extra: str) -> str:
    """Apply `name`; it must be refused with exit 1 and one `error:` line naming the file, nothing written."""
    code, out, err = run_cli(capsys, "apply", "--plan", name, "--yes", *extra)
    lines = err.strip().splitlines()
    assert code == 1, out + err
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], err
    assert "bug" not in err.lower() and "Traceback" not in err
    assert "Applied to" not in out
    return lines[0]


def no_journal(demo: Path) -> bool:
    return not (demo / ".reconciler" / "journal").exists()


def test_a_block_set_to_null_by_hand_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = blocked_plan(demo, capsys)
    write(demo, "edited.json", {**saved, "blocked": None})
    message = refused(capsys, "edited.json")
    assert "actions_digest does not match" in message and "blocked" in message
    assert no_journal(demo)
    code, _, err = run_cli(capsys, "show", "edited.json")
    assert code == 1 and "actions_digest does not match" in err


def test_a_block_with_a_smaller_allowance_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = blocked_plan(demo, capsys)
    lowered = copy.deepcopy(saved)
    lowered["blocked"]["allow_deletes"] = 0
    write(demo, "edited.json", lowered)
    refused(capsys, "edited.json", "--allow-deletes", "0")
    assert no_journal(demo)


def test_an_incomplete_read_cleared_by_hand_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = blocked_plan(demo, capsys)
    doc = {key: value for key, value in saved.items() if key != "actions_digest"}
    doc["partial"] = ["a page of coursecompletedlessons came back short"]
    doc["blocked"] = {"reasons": ["the read of the current state was incomplete"], "allow_deletes": None}
    save_plan(doc, demo / "partial.json")  # as the tool saves a plan made on an incomplete read
    code, out, _ = run_cli(capsys, "apply", "--plan", "partial.json", "--yes", "--allow-deletes", "100")
    assert code == 3 and "Blocked: the read of the current state was incomplete." in out  # no flag lifts it
    partial: dict[str, Any] = json.loads((demo / "partial.json").read_text())
    write(demo, "edited.json", {**partial, "partial": []})
    assert "partial" in refused(capsys, "edited.json", "--allow-deletes", "100")
    write(demo, "edited.json", {**partial, "partial": [], "blocked": None})
    refused(capsys, "edited.json")
    assert no_journal(demo)


def test_a_plan_without_its_digest_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = blocked_plan(demo, capsys)
    stripped = {key: value for key, value in saved.items() if key != "actions_digest"}
    write(demo, "stripped.json", stripped)
    assert "carries no actions_digest" in refused(capsys, "stripped.json", "--allow-deletes", "2")
    write(demo, "stripped.json", {**stripped, "blocked": None})
    assert "carries no actions_digest" in refused(capsys, "stripped.json")
    code, _, err = run_cli(capsys, "show", "stripped.json")
    assert code == 1 and "carries no actions_digest" in err
    assert no_journal(demo)


def test_an_action_added_with_the_digest_removed_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    code, _, _ = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0
    saved: dict[str, Any] = json.loads((demo / "plan.json").read_text())
    added = copy.deepcopy(next(a for a in saved["actions"] if a["action"] == "create"))
    added["lesson"]["id"] = added["precondition"]["absent"]["CourseLessonId"] = 987_654
    edited = {key: value for key, value in saved.items() if key != "actions_digest"}
    edited["actions"] = [*saved["actions"], added]
    write(demo, "added.json", edited)
    assert "carries no actions_digest" in refused(capsys, "added.json")
    write(demo, "added.json", {**edited, "actions_digest": saved["actions_digest"]})
    assert "actions_digest does not match" in refused(capsys, "added.json")
    assert no_journal(demo)


def test_an_unedited_blocked_plan_stays_blocked_until_lifted(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = blocked_plan(demo, capsys)
    assert saved["actions_digest"] != actions_digest(saved["actions"])  # the block is folded in
    code, out, _ = run_cli(capsys, "apply", "--plan", "blocked.json", "--yes")
    assert code == 3 and "--allow-deletes 2" in out and no_journal(demo)
    code, out, _ = run_cli(capsys, "apply", "--plan", "blocked.json", "--yes", "--allow-deletes", "1")
    assert code == 3 and no_journal(demo)
    code, out, err = run_cli(capsys, "apply", "--plan", "blocked.json", "--yes", "--allow-deletes", "2")
    assert code == 0, out + err
    assert "Converged" in out


def test_an_unedited_plan_applies(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0
    saved: dict[str, Any] = json.loads((demo / "plan.json").read_text())
    assert saved["actions_digest"] == actions_digest(saved["actions"])  # a plan that blocks nothing: as before
    code, out, err = run_cli(capsys, "apply", "--plan", "plan.json", "--yes")
    assert code == 0, out + err
    assert "Converged" in out


def test_the_printed_json_plan_is_refused_with_the_way_to_save_one(demo: Path, capsys: pytest.CaptureFixture[str]
                                                                   ) -> None:
    """`plan --format json > file` prints the plan for reading (no digest, no spec paths): apply and show refuse it
    and say that only the file `plan --out FILE` saves can be applied."""
    code, out, _ = run_cli(capsys, "plan", "--format", "json")
    assert code == 0
    (demo / "printed.json").write_text(out)
    for command in (["apply", "--plan", "printed.json", "--yes"], ["show", "printed.json"]):
        code, _, err = run_cli(capsys, *command)
        assert code == 1 and "only the file `plan --out FILE` saves can be applied or shown" in err
    assert no_journal(demo)
