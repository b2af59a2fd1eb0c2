"""`apply --plan` holds a large plan lean: the saved plan read a line at a time into typed actions (the very
checks and errors of reading it whole), the journal's start entry written a batch at a time, the preconditions'
re-read kept as columns and looked up by bisection, the actions numbered without a tuple each."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.actions import Create, Delete, Record, Ref
from reconciler.apply import Numbered
from reconciler.columns import CompletionColumns
from reconciler.errors import PlanFileError
from reconciler.fresh import Fresh, RecordsById, RecordsByPair, api_record, stale_reason
from reconciler.journal import Journal
from reconciler.planning import load_plan, save_plan

from .test_plan_loading import CREATE, DELETE, ENROLL, document


def creates(count: int) -> list[dict[str, Any]]:
    found = []
    for n in range(count):
        entry = copy.deepcopy(CREATE)
        member, lesson = 100 + n // 3, 10 + n % 3
        entry["member"] = {"id": member, "name": f"M{member}"}
        entry["lesson"] = {"id": lesson, "title": f"L{lesson}"}
        entry["precondition"]["absent"] = {"CourseMemberId": member, "CourseLessonId": lesson}
        found.append(entry)
    return found


def saved(tmp_path: Path, actions: list[dict[str, Any]], **extra: Any) -> Path:
    path = tmp_path / "plan.json"
    doc = document(actions)
    doc.update(extra)
    save_plan(doc, path)
    return path


def both(path: Path) -> tuple[Any, Any]:
    return load_plan(path), load_plan(path, lean=True)


@pytest.mark.parametrize("count", [0, 1, 2, 5000])
def test_the_lean_reading_types_the_same_actions_and_keeps_the_header(tmp_path: Path, count: int) -> None:
    path = saved(tmp_path, [*creates(count), DELETE, ENROLL] if count else [])
    whole, lean = both(path)
    assert lean.actions == whole.actions
    assert type(lean.document["actions"]) is not list or not lean.actions  # a view over the typed actions
    assert list(lean.document["actions"]) == list(whole.document["actions"])
    assert {k: v for k, v in lean.document.items() if k != "actions"} == \
        {k: v for k, v in whole.document.items() if k not in ("actions", "matrix")}
    if count >= 2:  # texts repeated across the actions are one string each
        assert lean.actions[0].spec is lean.actions[1].spec and lean.actions[0].origin is lean.actions[1].origin


def _edited(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("edit", [
    ('"CourseLessonId": 11}}}', '"CourseLessonId": 12}}}'),  # an action that does not agree with itself
    ('"reason": "declared"', '"reason": "nope"'),  # a shape the schema refuses
    ('"lesson": {"id": 11, "title": "L11"}', '"lesson": {"id": 11, "title": "L11b"}'),  # digest
    ('"blocked": null', '"blocked": {"reasons": ["x"], "allow_deletes": 1}'),  # a guard field: digest
    ('"target": "t"', '"target": 5'),  # the header: schema
])
def test_an_edited_plan_fails_the_lean_reading_exactly_as_the_whole_one(tmp_path: Path, edit: tuple[str, str]
                                                                         ) -> None:
    path = saved(tmp_path, creates(4))
    _edited(path, *edit)
    with pytest.raises(PlanFileError) as whole:
        load_plan(path)
    with pytest.raises(PlanFileError) as lean:
        load_plan(path, lean=True)
    assert str(lean.value) == str(whole.value)


def test_other_layouts_read_whole(tmp_path: Path) -> None:
    path = saved(tmp_path, creates(3))
    doc = json.loads(path.read_text())
    for text in (json.dumps(doc), json.dumps(doc, indent=4)):  # one line; an action over many lines
        path.write_text(text)
        assert load_plan(path, lean=True).actions == load_plan(path).actions
    path.write_text(json.dumps(doc)[:-5])
    with pytest.raises(PlanFileError, match="not JSON"):
        load_plan(path, lean=True)


def test_the_start_entry_is_the_line_write_makes(tmp_path: Path) -> None:
    header = {"type": "start", "apply_id": "a", "target": "t", "spec_digest": "é", "undo_of": None}
    actions = [*creates(5000), DELETE]
    with Journal(tmp_path / "a.jsonl") as journal:
        journal.write({**header, "actions": actions})
    with Journal(tmp_path / "b.jsonl") as journal:
        journal.write_start(header, iter(actions))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def _record(record_id: int, member: int, lesson: int) -> dict[str, Any]:
    return {"Id": record_id, "CourseMemberId": member, "CourseLessonId": lesson, "CreatedOn": "2026-01-01",
            "UpdatedOn": f"2026-01-0{record_id % 9 + 1}", "SystemId": None, "UniqueId": None,
            "CourseLessonTitle": "L", "CourseMemberCoworkerFullName": "M"}


@pytest.mark.parametrize("big", [False, True])
def test_the_reread_by_pair_and_by_id_reads_like_dicts(big: bool) -> None:
    offset = 1 << 40 if big else 0  # Ids past what packs into one key: a dict of rows instead
    raw = [_record(i, offset + 1 + i % 4, 10 + i % 3) for i in range(1, 60)]
    columns = CompletionColumns()
    for record in raw:
        columns.add(record)
    extra = [_record(500, 9, 9)]
    pairs, records = RecordsByPair(columns, extra), RecordsById(columns, {500: extra[0]})
    expected: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for record in [*raw, *extra]:
        expected.setdefault((record["CourseMemberId"], record["CourseLessonId"]), []).append(record)
    assert dict(pairs.items()) == expected and len(pairs) == len(expected)
    assert pairs.get((offset + 1, 99)) is None and pairs.get((-1, 10)) is None
    assert dict(records.items()) == {r["Id"]: r for r in [*raw, *extra]}
    assert 61 not in records and 500 in records and records.get(3) == api_record(columns, 2)


def test_stale_reasons_over_the_columns() -> None:
    columns = CompletionColumns()
    columns.add(_record(7, 1, 2))
    fresh = Fresh(RecordsByPair(columns), RecordsById(columns), {})
    create = Create(Ref(3), Ref(1), Ref(2), "s", "declared")
    assert stale_reason(create, fresh) == "already exists (#7)"
    assert stale_reason(Create(Ref(3), Ref(1), Ref(4), "s", "declared"), fresh) is None
    delete = Delete(Ref(3), Ref(1), Ref(2), "s", "revoked", record=Record(7, 1, 2, "", "2026-01-08"))
    assert stale_reason(delete, fresh) is None


def test_numbered_reads_like_enumerate() -> None:
    actions = [Create(Ref(1), Ref(n), Ref(2), "s", "declared") for n in range(3)]
    numbered = Numbered(actions)
    assert list(numbered) == list(enumerate(actions)) and len(numbered) == 3
    assert numbered[-1] == (2, actions[2]) and numbered[1:] == [(1, actions[1]), (2, actions[2])]
