"""Loading a saved plan: the schema sees one action of a list of plain ones (`plain_action`), so a plan of
160,000 actions loads in seconds; the fast path never accepts what the schema refuses."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from reconciler.actions import actions_digest, document_digest, plain_action, plain_matrix_row, plan_from_document
from reconciler.config import ClientLimits
from reconciler.errors import PlanFileError
from reconciler.plan import estimate_writes
from reconciler.schemas import schema

from .conftest import run_cli

CREATE: dict[str, Any] = {
    "action": "create", "course": {"id": 1, "title": "C"}, "member": {"id": 101, "name": "Ann"},
    "lesson": {"id": 11, "title": "Welcome"}, "spec": "s", "reason": "declared", "origin": "s.yaml:3:5",
    "system_id": "reconciler:s", "precondition": {"absent": {"CourseMemberId": 101, "CourseLessonId": 11}}}
RECORD: dict[str, Any] = {"Id": 5, "CourseMemberId": 101, "CourseLessonId": 11, "CourseLessonTitle": "Welcome",
                          "CourseMemberCoworkerFullName": "Ann", "CreatedOn": "2026-01-01", "UpdatedOn": "2026-01-02",
                          "SystemId": None, "UniqueId": "u5"}
DELETE: dict[str, Any] = {
    "action": "delete", "course": {"id": 1, "title": "C"}, "member": {"id": 101, "name": "Ann"},
    "lesson": {"id": 11, "title": "Welcome"}, "spec": "s", "reason": "revoked", "origin": None, "note": "why",
    "record": RECORD,
    "precondition": {"exists": {"Id": 5, "CourseMemberId": 101, "CourseLessonId": 11, "UpdatedOn": "2026-01-02"}}}
ENROLL: dict[str, Any] = {
    "action": "enroll", "course": {"id": 2, "title": "D"}, "member": {"id": None, "name": "Bo"},
    "lesson": {"id": 0, "title": ""}, "spec": "m", "reason": "migrated", "origin": "m.yaml:1:1", "coworker_id": 7,
    "twin": "2:7:12", "precondition": {"not_enrolled": {"CourseId": 2, "CoworkerId": 7}}}
ODD = st.one_of(st.none(), st.booleans(), st.integers(-1, 3), st.floats(allow_nan=False, max_value=9, min_value=-9),
                st.text(max_size=3), st.sampled_from(["create", "delete", "enroll", "declared", "undo", "x"]),
                st.lists(st.integers(0, 2), max_size=2), st.just({}), st.just({"id": 1}), st.just({"id": None}))
PATHS = [(), ("course",), ("member",), ("lesson",), ("record",), ("precondition",), ("precondition", "absent"),
         ("precondition", "exists"), ("precondition", "not_enrolled")]
KEYS = ["action", "course", "member", "lesson", "spec", "reason", "origin", "note", "system_id", "coworker_id",
        "twin", "record", "precondition", "id", "title", "name", "Id", "CourseMemberId", "CourseLessonId",
        "CreatedOn", "UpdatedOn", "SystemId", "UniqueId", "CourseId", "CoworkerId", "absent", "exists", "other"]


def document(actions: list[Any]) -> dict[str, Any]:
    """A plan document of `actions`, its summary what they give (a saved plan's is checked against them)."""
    kinds = [entry.get("action") if isinstance(entry, dict) else None for entry in actions]
    estimate = estimate_writes(len(actions), ClientLimits())  # "limits": {}, none configured
    return {"format_version": 1, "target": "t", "spec_digest": "d", "limits": {},
            "summary": {"create": kinds.count("create"), "delete": kinds.count("delete"),
                        "enroll": kinds.count("enroll"), "unchanged": 0, "existing_in_scope": 0,
                        "writes": len(actions), "estimate": estimate.describe(),
                        "estimate_seconds": round(estimate.seconds, 1), "estimate_days": estimate.days,
                        "estimate_documented": None},
            "actions": actions, "warnings": [], "drift": [], "partial": [], "blocked": None}


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    """A valid action with a few parts changed, removed or added: mostly still plain, often not."""
    entry = copy.deepcopy(draw(st.sampled_from([CREATE, DELETE, ENROLL])))
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PATHS))
        target: Any = entry
        for part in path:
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from(KEYS))
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(ODD)
    return entry


@settings(max_examples=600, deadline=None)
@given(mutated())
def test_a_plain_action_is_one_the_schema_accepts(entry: Any) -> None:
    valid = Draft202012Validator(schema("plan")).is_valid(document([entry]))
    if plain_action(entry):
        assert valid
    # and a plan of such actions is judged the same whichever way it is checked
    doc = document([CREATE, entry])
    with_schema = Draft202012Validator(schema("plan")).is_valid(doc)
    try:
        plan_from_document(doc, "p")
    except PlanFileError as e:
        assert not with_schema or "does not agree with itself" in str(e) or "needs" in str(e)
    else:
        assert with_schema


def test_the_plans_the_tool_writes_take_the_fast_path() -> None:
    assert all(plain_action(a) for a in (CREATE, DELETE, ENROLL))
    assert not plain_action({**CREATE, "reason": ["declared"]}) and not plain_action({**CREATE, "extra": 1})
    assert not plain_action({**CREATE, "precondition": {"absent": {"CourseMemberId": 1, "CourseLessonId": True}}})


def test_a_bad_action_deep_in_a_plan_is_still_named(tmp_path: Path) -> None:
    actions = [copy.deepcopy(CREATE) for _ in range(50)]
    actions[37]["lesson"]["id"] = "11"
    with pytest.raises(PlanFileError, match=r"actions\[37\]\.lesson\.id: '11' is not of type"):
        plan_from_document(document(actions), "plan.json")


def test_a_large_saved_plan_loads_and_applies(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the command line: a saved plan of many plain actions is read back whole (schema, digest,
    each action's self-consistency) and `show` renders it."""
    code, _, _ = run_cli(capsys, "plan", "--out", "plan.json")
    assert code == 0
    saved = json.loads((demo / "plan.json").read_text())
    create = next(a for a in saved["actions"] if a["action"] == "create")
    many = []
    for n in range(2000):
        one = copy.deepcopy(create)
        one["lesson"]["id"] = one["precondition"]["absent"]["CourseLessonId"] = 100_000 + n
        many.append(one)
    saved["actions"] = many
    saved["summary"] = document(many)["summary"]  # the demo's limits are none too
    saved["actions_digest"] = actions_digest(many)
    saved["document_digest"] = document_digest(saved)
    (demo / "big.json").write_text(json.dumps(saved))
    code, out, err = run_cli(capsys, "show", "big.json", "--format", "json")
    assert code == 0, err
    assert len(json.loads(out)["actions"]) == 2000
    many[1999]["lesson"]["id"] = None
    saved["actions_digest"] = actions_digest(many)
    (demo / "big.json").write_text(json.dumps(saved))
    code, _, err = run_cli(capsys, "show", "big.json")
    assert code != 0 and "actions[1999]" in err


ROW: dict[str, Any] = {"id": 50001, "coworker_id": 10001, "name": "Ann", "teams": ["Sales"], "kept": "0110"}
ROW_ODD = st.one_of(ODD, st.sampled_from(["01", "012", "", "1\n", " 1"]), st.lists(st.text(max_size=2), max_size=2),
                    st.lists(st.integers(0, 1), max_size=2))


@st.composite
def mutated_rows(draw: st.DrawFn) -> Any:
    row = copy.deepcopy(ROW)
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(["id", "coworker_id", "name", "teams", "kept", "other"]))
        if draw(st.booleans()):
            row.pop(key, None)
        else:
            row[key] = draw(ROW_ODD)
    return row


def with_matrix(rows: list[Any]) -> dict[str, Any]:
    doc = document([CREATE, CREATE])
    doc["matrix"] = [{"course": {"id": 1, "title": "C"}, "lessons": [{"id": 11, "title": "Welcome"}], "enrolled": 2,
                      "members": rows}]
    return doc


@settings(max_examples=400, deadline=None)
@given(mutated_rows())
def test_a_plain_matrix_row_is_one_the_schema_accepts(row: Any) -> None:
    if plain_matrix_row(row):
        assert Draft202012Validator(schema("plan")).is_valid(with_matrix([row]))
    doc = with_matrix([ROW, row])
    with_schema = Draft202012Validator(schema("plan")).is_valid(doc)
    try:
        plan_from_document(doc, "p")
    except PlanFileError:
        assert not with_schema
    else:
        assert with_schema


def test_a_bad_matrix_row_deep_in_a_plan_is_still_named() -> None:
    rows = [dict(ROW, id=50001 + n) for n in range(30)]
    rows[21] = dict(rows[21], kept="01x")
    with pytest.raises(PlanFileError, match=r"matrix\[0\]\.members\[21\]\.kept: '01x' does not match"):
        plan_from_document(with_matrix(rows), "plan.json")
