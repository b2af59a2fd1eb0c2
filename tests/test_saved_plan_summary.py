"""A saved plan's `summary` must be what its actions give: show, the pull-request comment and apply print it,
while the actions (which the digest covers) are what gets applied. A hand-edited summary is refused like
edited actions (exit 1, one line naming the field), by both ways of reading the plan."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import PlanFileError
from reconciler.planning import load_plan

from .conftest import run_cli


def saved_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The examples' plan (26 creates, 2 deletes, 2 enrolments), saved to plan.json."""
    code, _, err = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0, err
    return demo / "plan.json"


def with_summary(plan: Path, name: str, **changes: Any) -> Path:
    """A copy of `plan` named `name` whose summary line is edited as a person would (the layout kept: one
    action a line, so that apply reads it a line at a time)."""
    lines = plan.read_text(encoding="utf-8").splitlines(keepends=True)
    (at,) = [n for n, line in enumerate(lines) if line.startswith('  "summary": ')]
    summary = json.loads(lines[at].removeprefix('  "summary": ').rstrip().removesuffix(","))
    assert set(changes) <= set(summary)
    summary.update(changes)
    lines[at] = '  "summary": ' + json.dumps(summary, ensure_ascii=False) + ",\n"
    edited = plan.with_name(name)
    edited.write_text("".join(lines), encoding="utf-8")
    return edited


def refusal(path: Path) -> str:
    """The loader's error for `path`, the same whether the plan is read whole (show) or a line at a time
    (apply --plan)."""
    with pytest.raises(PlanFileError) as whole:
        load_plan(path)
    with pytest.raises(PlanFileError) as lean:
        load_plan(path, lean=True)
    assert str(lean.value) == str(whole.value)
    return str(whole.value)


def test_show_refuses_a_plan_whose_delete_count_was_edited(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = saved_plan(demo, capsys)
    assert run_cli(capsys, "show", "plan.json", "--format", "markdown")[0] == 0
    with_summary(plan, "edited.json", delete=0)
    code, out, err = run_cli(capsys, "show", "edited.json", "--format", "markdown")
    assert code == 1, out + err
    assert "0 to delete" not in out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: edited.json: "), err
    assert "summary.delete is 0, but its actions give 2" in lines[0]


def test_apply_refuses_a_plan_whose_create_count_was_edited(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = saved_plan(demo, capsys)
    with_summary(plan, "edited.json", create=2)
    code, out, err = run_cli(capsys, "apply", "--plan", "edited.json", "--yes")
    assert code == 1, out + err
    assert "Plan: 2 to create" not in out and "Applied to" not in out
    assert "summary.create is 2, but its actions give 26" in err
    assert not (demo / ".reconciler" / "journal").exists()
    code, out, _ = run_cli(capsys, "plan", "--format", "json")  # nothing was written
    assert code == 0 and json.loads(out)["summary"]["create"] == 26


@pytest.mark.parametrize(("field", "value"), [
    ("create", 25), ("delete", 3), ("enroll", 0), ("writes", 3),
    ("estimate", "3 write requests (no rate limits configured)"), ("estimate_seconds", 7.5), ("estimate_days", 2),
    ("estimate_documented", "30 write requests: about 3 hours at 60 writes a minute"),
])
def test_every_derivable_summary_field_is_checked_by_both_readings(demo: Path, capsys: pytest.CaptureFixture[str],
                                                                   field: str, value: Any) -> None:
    plan = saved_plan(demo, capsys)
    load_plan(plan)
    load_plan(plan, lean=True)
    message = refusal(with_summary(plan, "edited.json", **{field: value}))
    assert message.startswith(f"{plan.with_name('edited.json')}: summary.{field} is {value!r}, but ")
    assert "(was the plan edited?)" in message


def test_every_mismatch_is_named_at_once(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = saved_plan(demo, capsys)
    message = refusal(with_summary(plan, "edited.json", create=2, writes=6))
    assert "summary.create is 2, but its actions give 26" in message
    assert "summary.writes is 6, but its actions give 30" in message


def test_a_missing_documented_estimate_is_accepted_but_a_false_one_is_not(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An undo plan leaves `estimate_documented` null: null hides a line, it states nothing false."""
    plan = saved_plan(demo, capsys)
    assert load_plan(with_summary(plan, "null.json", estimate_documented=None)).document["summary"]["writes"] == 30
    assert "summary.estimate_documented" in refusal(with_summary(plan, "false.json", estimate_documented="no writes"))


def test_limits_no_configuration_gives_are_refused_not_a_crash(demo: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    plan = saved_plan(demo, capsys)
    text = plan.read_text(encoding="utf-8")
    assert '"requests_per_minute": null' in text
    edited = demo / "edited.json"
    edited.write_text(text.replace('"requests_per_minute": null', '"requests_per_minute": -1', 1), encoding="utf-8")
    assert "limits.requests_per_minute is -1" in refusal(edited)
    code, _, err = run_cli(capsys, "show", "edited.json")
    assert code == 1 and "limits.requests_per_minute is -1" in err and "Traceback" not in err
