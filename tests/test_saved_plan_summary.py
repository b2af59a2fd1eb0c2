"""A saved plan's `summary` must be what its actions give: show, the pull-request comment and apply print it,
while the actions (which the digest covers) are what gets applied. A hand-edited summary is refused like
edited actions (exit 1, one line naming the field), by both ways of reading the plan."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from reconciler.actions import document_digest
from reconciler.errors import PlanFileError
from reconciler.planning import load_plan
from reconciler.render import format_json

from .conftest import run_cli


def saved_plan(demo: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """The examples' plan (26 creates, 2 deletes, 2 enrolments), saved to plan.json."""
    code, _, err = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0, err
    return demo / "plan.json"


def with_summary(plan: Path, name: str, *, signed: bool = False, **changes: Any) -> Path:
    """A copy of `plan` named `name` whose summary line is edited as a person would (the layout kept: one
    action a line, so that apply reads it a line at a time). `signed`: with the `document_digest` made again to
    match, as a plan saved so would carry (what the summary's own check finds, not the digest)."""
    return with_line(plan, name, "summary", signed=signed, **changes)


def with_line(plan: Path, name: str, key: str, *, signed: bool = False, **changes: Any) -> Path:
    """`with_summary` for the top-level object `key` (summary, limits)."""
    lines = plan.read_text(encoding="utf-8").splitlines(keepends=True)
    (at,) = [n for n, line in enumerate(lines) if line.startswith(f'  "{key}": ')]
    value = json.loads(lines[at].removeprefix(f'  "{key}": ').rstrip().removesuffix(","))
    assert set(changes) <= set(value)
    value.update(changes)
    lines[at] = f'  "{key}": ' + json.dumps(value, ensure_ascii=False) + ",\n"
    if signed:
        digest = document_digest(json.loads("".join(lines)))
        (line,) = [n for n, text in enumerate(lines) if text.startswith('  "document_digest": ')]
        lines[line] = re.sub('"[0-9a-f]{64}"', f'"{digest}"', lines[line])
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
    loaded = load_plan(with_summary(plan, "null.json", signed=True, estimate_documented=None))
    assert loaded.document["summary"]["writes"] == 30
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


@pytest.mark.parametrize(("key", "changes"), [
    ("summary", {"unchanged": 4_000}), ("summary", {"existing_in_scope": 1}),
    ("limits", {"requests_per_hour": 99}),  # (no estimate depends on it)
])
def test_what_the_actions_do_not_give_is_covered_by_the_document_digest(
        demo: Path, capsys: pytest.CaptureFixture[str], key: str, changes: dict[str, Any]) -> None:
    """The counts that show prints beside the actions and the limits it names, edited as a person would: the
    summary's own check cannot tell, the document digest does, by both readings; and show refuses the plan."""
    plan = saved_plan(demo, capsys)
    message = refusal(with_line(plan, "edited.json", key, **changes))
    assert message.startswith(f"{plan.with_name('edited.json')}: the plan's warnings, drift, matrix, undo_of, "
                              "summary or limits were changed after it was saved (document_digest does not match)")
    assert load_plan(with_line(plan, "signed.json", key, signed=True, **changes)).document[key][next(iter(changes))] \
        == next(iter(changes.values()))
    code, _, err = run_cli(capsys, "show", "edited.json")
    assert code == 1 and "document_digest does not match" in err and "Traceback" not in err


def test_a_plan_without_its_document_digest_is_refused(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Taking the digest out with the edit it would have caught is no way around it."""
    plan = saved_plan(demo, capsys)
    doc = json.loads(plan.read_text(encoding="utf-8"))
    del doc["document_digest"]
    stripped = plan.with_name("stripped.json")
    stripped.write_text(format_json(doc), encoding="utf-8")  # (as saved: one action a line)
    assert "the plan carries no document_digest" in refusal(stripped)
    code, out, err = run_cli(capsys, "apply", "--plan", "stripped.json", "--yes")
    assert code == 1 and "the plan carries no document_digest" in err and "Applied" not in out
    assert not (demo / ".reconciler" / "journal").exists()
