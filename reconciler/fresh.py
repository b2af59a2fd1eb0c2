"""Re-reading what is there now, just before actions run, and whether each action's precondition holds."""

from __future__ import annotations

import operator
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.actions import Action, Create, Delete, Enroll
from reconciler.client import NexudusClient
from reconciler.columns import CompletionColumns
from reconciler.errors import ApiError
from reconciler.model import same_instant
from reconciler.state import COMPLETIONS, MEMBERS, StateReader

_PACKED = 1 << 31  # member and lesson Ids below this pack into one 63-bit key


def api_record(columns: CompletionColumns, row: int) -> dict[str, Any]:
    """Row `row` of a read as the API names its fields (what a precondition and its explanation compare)."""
    c = columns.completion(row)
    return {"Id": c.id, "CourseMemberId": c.member_id, "CourseLessonId": c.lesson_id, "CreatedOn": c.created_on,
            "UpdatedOn": c.updated_on, "SystemId": c.system_id, "UniqueId": c.unique_id,
            "CourseLessonTitle": c.lesson_title, "CourseMemberCoworkerFullName": c.member_name}


class RecordsById(Mapping[int, dict[str, Any]]):
    """A read's records by Id, each made as a dict when asked for: the read's columns (in Id order, searched
    by bisection) and a few records looked up by Id beside them. A read of millions of completions costs its
    columns (about 45 bytes a record), not a dict a record."""

    def __init__(self, columns: CompletionColumns, extra: Mapping[int, dict[str, Any]] | None = None) -> None:
        self._columns = columns
        ids = columns.ids
        self._ordered = all(map(operator.lt, ids, ids[1:]))
        self._rows: dict[int, int] | None = None if self._ordered else {i: row for row, i in enumerate(ids)}
        self._extra = dict(extra or {})

    def _row(self, record_id: int) -> int | None:
        if self._rows is not None:
            return self._rows.get(record_id)
        ids = self._columns.ids
        at = bisect_left(ids, record_id)
        return at if at < len(ids) and ids[at] == record_id else None

    def __getitem__(self, record_id: int) -> dict[str, Any]:
        row = self._row(record_id) if type(record_id) is int else None
        if row is not None:
            return api_record(self._columns, row)
        return self._extra[record_id]

    def __contains__(self, record_id: object) -> bool:
        return (type(record_id) is int and self._row(record_id) is not None) or record_id in self._extra

    def __iter__(self) -> Iterator[int]:
        yield from self._columns.ids
        yield from (i for i in self._extra if self._row(i) is None)

    def __len__(self) -> int:
        return len(self._columns) + sum(1 for i in self._extra if self._row(i) is None)


class RecordsByPair(Mapping[tuple[int, int], list[dict[str, Any]]]):
    """A read's records by (member, lesson), in Id order, each list made when asked for: a sorted array of the
    pairs (8 bytes a record, and 8 more for the rows) searched by bisection, not a dict of lists."""

    def __init__(self, columns: CompletionColumns, extra: Sequence[dict[str, Any]] = ()) -> None:
        self._columns = columns
        members, lessons = columns.member_ids, columns.lesson_ids
        self._by_pair: dict[tuple[int, int], list[int]] | None = None
        if all(0 <= i < _PACKED for i in members) and all(0 <= i < _PACKED for i in lessons):
            keys = array("q", map(operator.or_, map(operator.lshift, members, [32] * len(members)), lessons))
            order = sorted(range(len(keys)), key=keys.__getitem__)  # stable: Id order within a pair
            self._keys = array("q", map(keys.__getitem__, order))
            self._rows = array("q", order)
        else:
            self._keys, self._rows = array("q"), array("q")
            self._by_pair = {}
            for row, pair in enumerate(zip(members, lessons, strict=True)):
                self._by_pair.setdefault(pair, []).append(row)
        self._extra: dict[tuple[int, int], list[dict[str, Any]]] = {}
        for record in extra:
            self._extra.setdefault((record["CourseMemberId"], record["CourseLessonId"]), []).append(record)

    def _rows_of(self, member: Any, lesson: Any) -> Sequence[int]:
        if self._by_pair is not None:
            return self._by_pair.get((member, lesson), [])
        if type(member) is not int or type(lesson) is not int or not (0 <= member < _PACKED and 0 <= lesson < _PACKED):
            return ()
        key = member << 32 | lesson
        return self._rows[bisect_left(self._keys, key):bisect_right(self._keys, key)]

    def __getitem__(self, pair: tuple[int, int]) -> list[dict[str, Any]]:
        found = [api_record(self._columns, row) for row in self._rows_of(*pair)] + self._extra.get(pair, [])
        if not found:
            raise KeyError(pair)
        return found

    def __iter__(self) -> Iterator[tuple[int, int]]:
        seen = set()
        for member, lesson in zip(self._columns.member_ids, self._columns.lesson_ids, strict=True):
            if (member, lesson) not in seen:
                seen.add((member, lesson))
                yield member, lesson
        yield from (pair for pair in self._extra if pair not in seen)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Fresh:
    """The current state of everything a list of actions touches, read just before they run: records by
    (member, lesson) and by Id (mappings; `read_fresh` makes them over the read's columns), enrolments."""

    pairs: Mapping[tuple[int, int], list[dict[str, Any]]]
    records: Mapping[int, dict[str, Any]]
    enrolled: dict[tuple[int, int], int]


def read_fresh(client: NexudusClient, actions: Sequence[Action], *, confirm_missing: bool = True) -> Fresh:
    """Completions of every lesson and member the actions name, and the enrolments of the courses where
    an enrolment is planned; a read that does not add up raises (nothing is written on it).

    A delete's record that is not among its member's and lesson's completions is looked up by Id
    (`confirm_missing`), so that a record that is now someone else's is named as such, not as gone.

    The read is held as columns (`columns.py`), so a re-read of millions of completions before an apply costs
    tens of bytes a record."""
    reader = StateReader(client)
    enrolled: dict[tuple[int, int], int] = {}
    courses = {a.course.id or 0 for a in actions if isinstance(a, Enroll) or a.member.id is None}
    for course_id in sorted(courses):
        for member in reader.records_of_courses(MEMBERS, "CourseMember_Course", {course_id}, 0):
            enrolled[(course_id, member["CoworkerId"])] = member["Id"]
    lessons = {a.lesson.id or 0 for a in actions if not isinstance(a, Enroll)}
    members = {m for a in actions if not isinstance(a, Enroll) if (m := member_of(a, enrolled)) is not None}
    members |= {a.record.member_id for a in actions if isinstance(a, Delete)}
    columns, partial = reader.completions(lessons, members) if lessons else (CompletionColumns(), [])
    del members, lessons
    if partial:
        raise ApiError("could not re-read the current state in full, so nothing was written: " + "; ".join(partial))
    records = RecordsById(columns)
    extra: list[dict[str, Any]] = []
    missing = [a.record.id for a in actions if isinstance(a, Delete)]
    if confirm_missing and missing:
        extra = client.get_many(COMPLETIONS, [i for i in missing if i not in records])
        records = RecordsById(columns, {r["Id"]: r for r in extra})
    return Fresh(RecordsByPair(columns, extra), records, enrolled)


def changed_since(action: Delete, found: Mapping[str, Any]) -> str | None:
    """Why the record a delete removes, as read now (`found`), is no longer the record it was planned on: another
    pair's, or changed since (its UpdatedOn, where both reads show one; or the SystemId the plan saw, which a delete
    by ownership goes by); None when it is the same."""
    wanted = action.precondition
    if (found.get("CourseMemberId"), found.get("CourseLessonId")) != (wanted.member_id, wanted.lesson_id):
        return (f"record #{wanted.id} is member {found.get('CourseMemberId')}'s completion of lesson "
                f"{found.get('CourseLessonId')}, not member {wanted.member_id}'s of lesson {wanted.lesson_id} as "
                "planned: not deleted")
    now, then = str(found.get("UpdatedOn") or ""), wanted.updated_on
    marker = action.record.system_id  # (a plan from lists that leave SystemId out compares no marker)
    if (now and then and not same_instant(now, then)) or (marker and found.get("SystemId") != marker):
        from reconciler.explain import describe_changes  # deepdiff loads only when a change is explained

        return f"changed since the plan: {describe_changes(action.record.as_api(), dict(found))}"
    return None


def member_of(action: Action, enrolled: dict[tuple[int, int], int]) -> int | None:
    """The enrolment an action is for; for one whose enrolment was planned, the one that exists now."""
    if action.member.id is not None:
        return action.member.id
    return enrolled.get((action.course.id or 0, action.coworker_id or 0))


def replaced_records(actions: Iterable[Action]) -> frozenset[int]:
    """The records a plan deletes (not as a migration's source) whose pair a migration's create in it makes again:
    an `owned` spec of the target course takes its record back, and the migration makes its own twin, which its
    source's delete waits for. Such a record does not make the create's pair "already there": else the create is
    skipped, the record deleted, and the credit gone with the source. An undo's restore is such a create too: the
    undo of that apply deletes the twin and makes the spec's record again."""
    going: dict[tuple[int | None, int], set[int]] = {}
    carried: list[tuple[int | None, int]] = []
    for action in actions:
        if isinstance(action, Delete) and action.reason != "migrated":
            going.setdefault((action.record.member_id, action.record.lesson_id), set()).add(action.record.id)
        elif isinstance(action, Create) and (action.twin or action.reason == "undo") and action.member.id is not None:
            carried.append((action.member.id, action.precondition.lesson_id))
    if not going:
        return frozenset()
    return frozenset(record for pair in carried for record in going.get(pair, ()))


def stale_reason(action: Action, fresh: Fresh, replaced: Container[int] = frozenset()) -> str | None:
    """Why the precondition this action carries no longer holds, or None when it may run (`replaced`: the records
    the plan deletes whose pair it makes again, `replaced_records`)."""
    if isinstance(action, Create):
        member = member_of(action, fresh.enrolled)
        if member is None:
            return None  # its enrolment is still to be made: the completion cannot exist yet
        existing = [r for r in fresh.pairs.get((member, action.precondition.lesson_id)) or ()
                    if r["Id"] not in replaced]
        return f"already exists (#{existing[0]['Id']})" if existing else None
    if isinstance(action, Delete):
        found = fresh.records.get(action.precondition.id)
        return "already gone" if found is None else changed_since(action, found)
    if (action.precondition.course_id, action.precondition.coworker_id) in fresh.enrolled:
        return "already enrolled"
    return None
