"""Verification after an apply: every planned pair, record and enrolment re-read and compared with the plan."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.actions import Action, Create, Delete, describe
from reconciler.client import NexudusClient
from reconciler.fresh import member_of, read_fresh


@dataclass
class Verification:
    """Whether the target converged to the plan: what is not in place and why, and duplicates made by a
    concurrent writer of the pairs this run created."""

    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    # Pairs deleted by this run and made again since (by the Members Portal, say, which completes a "Visited"
    # lesson when its member opens it): drift to report, not a failure of the run, and not to fight in a loop.
    returned: list[str] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return not self.missing and not self.duplicates


def verify(client: NexudusClient, actions: Sequence[tuple[int, Action]],
           outcomes: dict[int, dict[str, Any]]) -> Verification:
    """Re-read every planned pair, record and enrolment and compare with the plan."""
    result = Verification()
    if not actions:
        return result
    fresh = read_fresh(client, [a for _, a in actions], confirm_missing=False)
    known = fresh.enrolled
    deleted = {a.record.id for _, a in actions if isinstance(a, Delete)}
    for seq, action in actions:
        outcome = outcomes.get(seq, {})
        why = outcome.get("message") or outcome.get("status") or "not attempted"
        if isinstance(action, Create):
            member = member_of(action, known)
            found = fresh.pairs.get((member, action.lesson.id or 0), []) if member is not None else []
            if not found:
                result.missing.append(f"{describe(action)}: not there ({why})")
            elif len(found) > 1 and outcome.get("status") == "created":
                ids = ", ".join(f"#{r['Id']}" for r in found)
                result.duplicates.append(f"{action.member.name or member}: {action.lesson.name or action.lesson.id} "
                                         f"now has {len(found)} completions ({ids}): another writer created it at "
                                         "the same time")
        elif isinstance(action, Delete):
            record = action.record
            if record.id in fresh.records:
                result.missing.append(f"{describe(action)}: #{record.id} is still there ({why})")
            elif action.reason != "duplicate":  # (a duplicate's delete leaves the pair its kept record)
                again = [r for r in fresh.pairs.get((record.member_id, record.lesson_id), []) if r["Id"] not in deleted]
                if again:
                    made = ", ".join(f"#{r['Id']} (created {r.get('CreatedOn') or 'at an unknown time'})"
                                     for r in again)
                    result.returned.append(f"{describe(action)}: #{record.id} is deleted, and the pair was made again "
                                           f"since: {made}")
        elif (action.course.id or 0, action.coworker_id or 0) not in known:
            result.missing.append(f"enrol {action.member.name or action.coworker_id} in {action.course.name}: "
                                  f"not enrolled ({why})")
    return result
