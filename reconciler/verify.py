"""Verification after an apply: every planned pair, record and enrolment re-read and compared with the plan."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from reconciler.actions import Action, Create, Delete, describe
from reconciler.client import NexudusClient
from reconciler.errors import ApiError, StopRun
from reconciler.fresh import member_of, read_fresh
from reconciler.model import instant
from reconciler.state import COMPLETIONS
from reconciler.undo import CLOCK_SLACK

log = logging.getLogger(__name__)


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


def verify(client: NexudusClient, actions: Sequence[tuple[int, Action]], outcomes: dict[int, dict[str, Any]],
           before: Mapping[tuple[int, int], Collection[int]] | None = None) -> Verification:
    """Re-read every planned pair, record and enrolment and compare with the plan. `before`: the records of the
    pairs deleted from that the apply's fresh read found (a record among them was not made again since)."""
    result = Verification()
    if not actions:
        return result
    fresh = read_fresh(client, [a for _, a in actions], confirm_missing=False)
    known = fresh.enrolled
    deleted = {a.record.id for _, a in actions if isinstance(a, Delete)}
    # The records this run's creates made: one in a pair it deleted from is its own (an owned spec's orphan swapped
    # for a migration's twin, say), not one made again since.
    ours = {outcomes[seq]["id"] for seq, a in actions
            if isinstance(a, Create) and type(outcomes.get(seq, {}).get("id")) is int}
    listed = _created_but_not_listed(client, actions, outcomes, fresh.pairs, known)
    for seq, action in actions:
        outcome = outcomes.get(seq, {})
        why = outcome.get("message") or outcome.get("status") or "not attempted"
        if isinstance(action, Create):
            member = member_of(action, known)
            found = fresh.pairs.get((member, action.lesson.id or 0), []) if member is not None else []
            if not found and seq in listed:
                continue  # there, read by its Id: the list read missed it (another writer shifted the pages)
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
            elif action.reason != "duplicate" and outcome.get("status") in ("deleted", "gone"):
                # (a duplicate's delete leaves the pair its kept record; an owned delete, a record of another's)
                done_at = instant(str(outcome.get("at") or ""))  # (unknown: the earliest instant there is)
                since = done_at - CLOCK_SLACK if done_at.year > 1 else done_at  # (the server's clock against ours)
                pair = (record.member_id, record.lesson_id)
                seen = (before or {}).get(pair, ())
                again = [r for r in fresh.pairs.get(pair, []) if r["Id"] not in deleted and r["Id"] not in seen
                         and r["Id"] not in ours and instant(str(r.get("CreatedOn") or "")) >= since]
                if again:
                    made = ", ".join(f"#{r['Id']} (created {r.get('CreatedOn') or 'at an unknown time'})"
                                     for r in again)
                    result.returned.append(f"{describe(action)}: #{record.id} is deleted, and the pair was made again "
                                           f"since: {made}")
        elif (action.course.id or 0, action.coworker_id or 0) not in known:
            result.missing.append(f"enrol {action.member.name or action.coworker_id} in {action.course.name}: "
                                  f"not enrolled ({why})")
    return result


def _created_but_not_listed(client: NexudusClient, actions: Sequence[tuple[int, Action]],
                            outcomes: dict[int, dict[str, Any]], pairs: Mapping[tuple[int, int], Any],
                            known: dict[tuple[int, int], int]) -> set[int]:
    """The creates (their `seq`) that the re-read did not list but whose record, by the Id their outcome holds,
    exists with their pair: lists are read page by page at offsets, so another writer's creates and deletes between
    two pages can shift a record past the read. Read by Id (100 a request), only for creates not listed."""
    wanted: dict[int, tuple[int, tuple[int, int]]] = {}  # record Id → (seq, pair)
    for seq, action in actions:
        outcome = outcomes.get(seq, {})
        if not isinstance(action, Create) or outcome.get("status") != "created" or type(outcome.get("id")) is not int:
            continue
        member = member_of(action, known)
        pair = (member or 0, action.lesson.id or 0)
        if member is not None and not pairs.get(pair):
            wanted[outcome["id"]] = (seq, pair)
    if not wanted:
        return set()
    try:
        found = client.get_many(COMPLETIONS, list(wanted))
    except StopRun:
        raise
    except ApiError as e:  # (no Read role for reads by Id, say): they stay reported as not there
        log.info("could not read the created records the lists did not show by their Ids: %s", e)
        return set()
    return {wanted[r["Id"]][0] for r in found if r.get("Id") in wanted
            and (r.get("CourseMemberId"), r.get("CourseLessonId")) == wanted[r["Id"]][1]}
