"""Undo, planned purely: a journal's entries and the live records of its scope → the actions that restore
what the apply deleted and remove what it created. No I/O here, like the planner beside it.

What counts is what the server may have done, not the outcome line that followed: a delete whose intent
was journaled may have been carried out whatever came after it (no outcome after a kill, "gone" after a
lost answer and a 404 on the re-send, "failed" after a 5xx that the server had acted on), so every such
record that is absent now is restored, unless its member and lesson have a completion again (one the undo does
not delete). Likewise a create that was sent but never answered is looked for among the live records.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from reconciler.actions import Action, Create, Delete, Enroll, Record
from reconciler.config import Safety
from reconciler.journal import JournalState
from reconciler.model import NO_DATE, instant
from reconciler.plan import Change, Plan, apply_budgets

# A record of the pair created this long before the intent was written still counts as the in-flight
# create's (the server's clock and ours differ by about this much).
CLOCK_SLACK = timedelta(seconds=120)


@dataclass(frozen=True)
class Sent:
    """What the journal says of one action: the action as last sent (if it was), when, and its outcome."""

    seq: int
    action: Action
    sent: bool
    sent_at: str | None
    status: str | None
    new_id: int | None


@dataclass
class UndoPlan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def plan_undo(history: list[Sent], live: list[dict[str, Any]], journal: str) -> UndoPlan:
    """The inverse of an apply, from what its journal says was sent and what is there now."""
    by_id = {record["Id"]: record for record in live}
    by_pair: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in live:
        by_pair[(record["CourseMemberId"], record["CourseLessonId"])].append(record)
    result = UndoPlan()
    restored = kept_enrolments = 0
    behind = _server_behind(history, by_id)
    restoring: dict[tuple[int, int], int] = {}  # a pair is restored once, however many of its records went
    said: set[int] = set()  # the deleted records a restore names
    undoing: set[int] = set()  # a record is deleted once, however many creates found it
    # What the apply created, which the undo deletes, is no completion "again" of a pair it deleted from: an apply
    # that swapped a pair's record (an owned spec's orphan deleted, a migration's twin made) gets the old one back.
    made_by = {item.seq: _made_by(item, item.action, by_id, by_pair, behind) for item in history
               if isinstance(item.action, Create) and item.sent}
    made = {found["Id"] for records in made_by.values() for found in records}
    for item in history:
        action = item.action
        where = f"{journal}: start.actions[{item.seq}]"  # the action in the journal's plan (not a line)
        if isinstance(action, Delete) and item.sent:
            gone = action.record
            pair = (gone.member_id, gone.lesson_id)
            if gone.id in by_id or any(record["Id"] not in made for record in by_pair.get(pair, ())):
                continue  # never deleted, or its member and lesson have a completion again
            if pair in restoring:  # one completion a pair: a duplicate of one restored is not made again
                index = restoring[pair]
                if gone.id not in said:
                    said.add(gone.id)
                    first = result.actions[index]
                    result.actions[index] = replace(first, note=f"{first.note}; #{gone.id}, of the same member and "
                                                                "lesson, is not made again (a duplicate)")
                continue
            restoring[pair] = len(result.actions)
            said.add(gone.id)
            restored += 1
            result.actions.append(Create(
                action.course, action.member, action.lesson, action.spec, "undo", where,
                note=f"restores #{gone.id}, completed {gone.created_on or '?'}; the new record is dated today",
                system_id=gone.system_id))
        elif isinstance(action, Create) and item.sent:  # whatever followed: a resume may have found it there
            for found in made_by[item.seq]:
                if found["Id"] in undoing:
                    continue
                undoing.add(found["Id"])
                result.actions.append(Delete(
                    action.course, replace(action.member, id=found["CourseMemberId"]), action.lesson, action.spec,
                    "undo", where, note=f"undoes the create of #{found['Id']}",
                    record=Record.from_api(found)))
        elif isinstance(action, Enroll) and item.status == "enrolled":
            kept_enrolments += 1
    result.actions.sort(key=lambda a: (a.course.id or 0, a.member.id or 0, a.rank, a.lesson.id or 0))
    if restored:
        result.warnings.append(f"{restored} recreated completion(s) get today's date: the original completion dates "
                               "cannot be restored")
    if kept_enrolments:
        result.warnings.append(f"{kept_enrolments} enrolment(s) the apply made are kept")
    return result


def undo_budgets(undone: UndoPlan, existing_in_scope: int, safety: Safety, allow_deletes: int | None = None) -> Plan:
    """The undo's deletes under a plan's delete budgets (`plan.apply_budgets`: the same words, and the same
    --allow-deletes lifts them): an undo takes credit away like any plan. `existing_in_scope` is what the apply
    left in its scope, the live completions of its lessons for its members, against which `max_delete_fraction`
    is measured. None of an undo's deletes is a migration's source delete (the budgets' one exemption). The plan
    returned holds the deletes alone; its `blocked` and `deletes_to_allow` are what the undo plan records
    (`render.blocked_of`)."""
    deletes = [Change("delete", a.course.id or 0, a.member.id or 0, a.lesson.id or 0, a.spec, a.reason)
               for a in undone.actions if isinstance(a, Delete)]
    return apply_budgets(Plan(deletes, existing_in_scope=existing_in_scope), safety, allow_deletes)


def _server_behind(history: list[Sent], by_id: dict[int, dict[str, Any]]) -> timedelta:
    """How far the server's clock is behind this machine's, as the apply's own answered creates show it (the
    median of when each was sent less the CreatedOn the server gave it; none when it is not behind): a server
    stamping its records minutes behind made a create in flight at a kill look older than its intent."""
    gaps: list[float] = []  # seconds
    for item in history:
        record = by_id.get(item.new_id) if item.new_id is not None else None
        if isinstance(item.action, Create) and item.status == "created" and record is not None and item.sent_at:
            created = instant(str(record.get("CreatedOn") or ""))
            if created != NO_DATE:
                gaps.append((instant(item.sent_at) - created).total_seconds())
    return timedelta(seconds=max(0.0, statistics.median(gaps))) if gaps else timedelta(0)


def _made_by(item: Sent, action: Create, by_id: dict[int, dict[str, Any]],
             by_pair: dict[tuple[int, int], list[dict[str, Any]]], behind: timedelta = timedelta(0)
             ) -> list[dict[str, Any]]:
    """The live record(s) this create made: the Id its outcome names, or, for a create whose answer never
    came (killed in flight, then found "already there" by the resume, or failed after lost answers),
    records of its pair carrying its marker and created no earlier than it was sent (by the server's clock,
    `behind` this machine's)."""
    if item.status == "created" and item.new_id is not None:
        found = by_id.get(item.new_id)
        return [found] if found is not None else []
    if action.member.id is None or item.sent_at is None:
        return []
    since = instant(item.sent_at) - behind - CLOCK_SLACK
    return [record for record in by_pair.get((action.member.id, action.lesson.id or 0), [])
            if record.get("SystemId") == action.system_id and instant(str(record.get("CreatedOn") or "")) >= since]


def journal_history(state: JournalState) -> list[Sent]:
    """What the journal says of each action: as last sent, when, and its last outcome."""
    history = []
    for seq, planned in enumerate(state.typed_actions()):
        intents = state.intents.get(seq, [])
        outcome = state.outcomes.get(seq, {})
        new_id = outcome.get("id")
        history.append(Sent(seq, state.last_sent(seq) or planned, bool(intents),
                            str(intents[0].get("at")) if intents else None, outcome.get("status"),
                            new_id if isinstance(new_id, int) else None))
    return history
