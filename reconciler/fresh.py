"""Re-reading what is there now, just before actions run, and whether each action's precondition holds."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.actions import Action, Create, Delete, Enroll
from reconciler.client import NexudusClient
from reconciler.errors import ApiError
from reconciler.model import same_instant
from reconciler.state import COMPLETIONS, MEMBERS, StateReader


@dataclass
class Fresh:
    """The current state of everything a list of actions touches, read just before they run."""

    pairs: dict[tuple[int, int], list[dict[str, Any]]]
    records: dict[int, dict[str, Any]]
    enrolled: dict[tuple[int, int], int]


def read_fresh(client: NexudusClient, actions: Sequence[Action], *, confirm_missing: bool = True) -> Fresh:
    """Completions of every lesson and member the actions name, and the enrolments of the courses where
    an enrolment is planned; a read that does not add up raises (nothing is written on it).

    A delete's record that is not among its member's and lesson's completions is looked up by Id
    (`confirm_missing`), so that a record that is now someone else's is named as such, not as gone."""
    reader = StateReader(client)
    enrolled: dict[tuple[int, int], int] = {}
    courses = {a.course.id or 0 for a in actions if isinstance(a, Enroll) or a.member.id is None}
    for course_id in sorted(courses):
        for member in reader.records_of_courses(MEMBERS, "CourseMember_Course", {course_id}, 0):
            enrolled[(course_id, member["CoworkerId"])] = member["Id"]
    lessons = {a.lesson.id or 0 for a in actions if not isinstance(a, Enroll)}
    members = {m for a in actions if not isinstance(a, Enroll) if (m := member_of(a, enrolled)) is not None}
    members |= {a.record.member_id for a in actions if isinstance(a, Delete)}
    records, partial = reader.completion_records(lessons, members) if lessons else ([], [])
    if partial:
        raise ApiError("could not re-read the current state in full, so nothing was written: " + "; ".join(partial))
    missing = [a.record.id for a in actions if isinstance(a, Delete)]
    if confirm_missing and missing:
        present = {r["Id"] for r in records}
        records += client.get_many(COMPLETIONS, [i for i in missing if i not in present])
    pairs: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        pairs[(record["CourseMemberId"], record["CourseLessonId"])].append(record)
    return Fresh(pairs, {r["Id"]: r for r in records}, enrolled)


def member_of(action: Action, enrolled: dict[tuple[int, int], int]) -> int | None:
    """The enrolment an action is for; for one whose enrolment was planned, the one that exists now."""
    if action.member.id is not None:
        return action.member.id
    return enrolled.get((action.course.id or 0, action.coworker_id or 0))


def stale_reason(action: Action, fresh: Fresh) -> str | None:
    """Why the precondition this action carries no longer holds, or None when it may run."""
    if isinstance(action, Create):
        member = member_of(action, fresh.enrolled)
        if member is None:
            return None  # its enrolment is still to be made: the completion cannot exist yet
        existing = fresh.pairs.get((member, action.precondition.lesson_id))
        return f"already exists (#{existing[0]['Id']})" if existing else None
    if isinstance(action, Delete):
        wanted = action.precondition
        found = fresh.records.get(wanted.id)
        if found is None:
            return "already gone"
        if (found["CourseMemberId"], found["CourseLessonId"]) != (wanted.member_id, wanted.lesson_id):
            return (f"record #{wanted.id} is member {found['CourseMemberId']}'s completion of lesson "
                    f"{found['CourseLessonId']}, not member {wanted.member_id}'s of lesson {wanted.lesson_id} as "
                    "planned: not deleted")
        if not same_instant(str(found.get("UpdatedOn") or ""), wanted.updated_on):
            from reconciler.explain import describe_changes  # deepdiff loads only when a change is explained

            return f"changed since the plan: {describe_changes(action.record.as_api(), found)}"
        return None
    if (action.precondition.course_id, action.precondition.coworker_id) in fresh.enrolled:
        return "already enrolled"
    return None
