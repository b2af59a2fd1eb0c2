"""Apply: executes a typed plan's actions in order, journaled, paced by the client, never making a duplicate.

One executor serves `apply`, `apply --plan`, `apply --resume` and the plans `undo` makes. It dispatches
on the action's type and checks exactly the precondition the action carries: the plan said what must
hold, and the executor checks that, nothing it works out again.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from deepdiff import DeepDiff

from reconciler.actions import Action, Create, Delete, Enroll, Ref, action_to_dict, describe
from reconciler.client import AmbiguousWrite, NexudusClient
from reconciler.errors import ApiError, StopRun, WriteRefused
from reconciler.journal import Journal
from reconciler.model import MARKER_PREFIX, same_instant
from reconciler.state import COMPLETIONS, MEMBERS, Filter, StateReader

log = logging.getLogger(__name__)

DONE = {"created", "deleted", "gone", "enrolled", "skipped"}
CREATE_TRIES = 3
REFUSALS_TO_STOP = 3  # writes of one kind refused (401) with none accepted: a role is missing, not a record
ROLE_OF = {"create": "CourseCompletedLesson-Create", "delete": "CourseCompletedLesson-Delete",
           "enroll": "CourseMember-Create"}


@dataclass
class Result:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: list[tuple[Action, str]] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    stopped: str | None = None
    stop_code: int = 3
    warnings: list[str] = field(default_factory=list)


# --- reading what is there now -------------------------------------------------------------------

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


def describe_changes(planned: dict[str, Any], found: dict[str, Any]) -> str:
    """What moved in a record between the plan and now, field by field (deepdiff does the comparing)."""
    keys = [key for key in planned if key in found]
    diff = DeepDiff({k: planned[k] for k in keys}, {k: found[k] for k in keys}, verbose_level=2)
    changes = []
    for kind in ("values_changed", "type_changes"):
        for path, change in diff.get(kind, {}).items():
            name = path.removeprefix("root[").removesuffix("]").strip("'")
            changes.append(f"{name} {change['old_value']!r} → {change['new_value']!r}")
    return "; ".join(sorted(changes)) or "UpdatedOn moved"


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
            return f"changed since the plan: {describe_changes(action.record.as_api(), found)}"
        return None
    if (action.precondition.course_id, action.precondition.coworker_id) in fresh.enrolled:
        return "already enrolled"
    return None


# --- progress ------------------------------------------------------------------------------------

class Progress:
    """A bar with count, rate and ETA on a terminal; otherwise a plain line every few seconds."""

    def __init__(self, total: int, out: TextIO, *, every: float = 5.0) -> None:
        self.total = total
        self.out = out
        self.every = every
        self.done = 0
        self.started = time.monotonic()
        self._last_line = self.started
        self._bar: Any = None
        isatty = getattr(out, "isatty", None)
        if isatty and isatty() and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=out, unit="write", dynamic_ncols=True)

    def step(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(1)
            return
        now = time.monotonic()
        if now - self._last_line >= self.every:
            self._last_line = now
            rate = self.done / max(now - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else 0.0
            print(f"applied {self.done:,}/{self.total:,} ({rate * 60:.0f}/min, about {eta / 60:.1f} min left)",
                  file=self.out, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


@contextmanager
def interruptible() -> Iterator[list[bool]]:
    """Ctrl-C sets a flag that the loop checks between writes, so the write in flight completes."""
    flag = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: no handler, Ctrl-C behaves as usual
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


# --- the executor --------------------------------------------------------------------------------

class Executor:
    """Runs typed actions in order under a journal: an intent line before every write, an outcome after."""

    def __init__(self, client: NexudusClient, journal: Journal, *, fail_fast: bool = False,
                 progress_out: TextIO | None = None, recheck_members: bool | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.journal = journal
        self.fail_fast = fail_fast
        self.progress_out = progress_out or sys.stderr
        self.now = now
        self.enrolled: dict[tuple[int, int], int] = {}
        self.ownership_checked = False
        self.ownership_lost = False
        self.twins_missing: set[str] = set()  # migrated completions whose create failed in this apply
        # Another writer (a second machine, a person in the portal) may create what we are about to: each
        # member's completions are re-read just before their creates, when the read budget has room.
        self.recheck_members = spare_reads(client) if recheck_members is None else recheck_members
        self._member_pairs: dict[int, dict[int, int]] = {}
        self._refused: dict[str, int] = defaultdict(int)
        self._accepted: dict[str, int] = defaultdict(int)

    def run(self, numbered: list[tuple[int, Action]], fresh: Fresh | None = None) -> Result:
        result = Result()
        if fresh is not None:
            self.enrolled.update(fresh.enrolled)
        progress = Progress(len(numbered), self.progress_out)
        failed: list[tuple[int, Action, str]] = []
        try:
            with interruptible() as interrupted:
                for seq, action in numbered:
                    if interrupted[0]:
                        result.stopped, result.stop_code = "interrupted", 130
                        break
                    reason = stale_reason(action, fresh) if fresh is not None else None
                    if reason is not None:
                        self._outcome(seq, "skipped", message=reason)
                        result.skipped.append((action, reason))
                        progress.step()
                        continue
                    status = self._run_one(seq, action, result, look_first=False)
                    progress.step()
                    if status is None:
                        break
                    if status == "failed":
                        failed.append((seq, action, result.failed.pop()[1]))
                        if self.fail_fast:
                            result.stopped, result.stop_code = "--fail-fast: an action failed", 4
                            break
                # Failures such as `WasSuccessful: false` or a burst of 5xx are often passing: each failed
                # action gets one more try at the end (a create looks for its completion first).
                if result.stopped or self.fail_fast:
                    result.failed.extend((action, message) for _, action, message in failed)
                    failed = []
                for index, (seq, action, _message) in enumerate(failed):
                    if interrupted[0] or self._run_one(seq, action, result, look_first=True) is None:
                        if not result.stopped:
                            result.stopped, result.stop_code = "interrupted", 130
                        result.failed.extend((a, m) for _, a, m in failed[index + (0 if interrupted[0] else 1):])
                        break
        finally:
            progress.close()
        if result.stopped:
            self.journal.write({"type": "stop", "why": result.stopped, "at": self.now().isoformat()})
        if self.ownership_lost:
            result.warnings.append("the target did not keep the SystemId written on create, so owned mode cannot "
                                   "work against it: deletes justified by ownership were skipped")
        return result

    def _run_one(self, seq: int, action: Action, result: Result, *, look_first: bool) -> str | None:
        """Execute, journal the outcome and count it; None when the run must stop (it says why)."""
        try:
            status, new_id, message = self._execute(seq, action, look_first=look_first)
        except StopRun as e:
            result.stopped, result.stop_code = str(e), e.exit_code
            return None
        self._outcome(seq, status, new_id, message)
        if action.twin and isinstance(action, Create):
            if status == "failed":
                self.twins_missing.add(action.twin)
            else:
                self.twins_missing.discard(action.twin)
        if status == "failed":
            result.failed.append((action, message or "failed"))
        elif status == "skipped":
            result.skipped.append((action, message or ""))
        else:
            result.counts[status] += 1
        if self._refused[action.kind] >= REFUSALS_TO_STOP and not self._accepted[action.kind]:
            result.stopped = (f"every {action.kind} so far was refused with 401: the account seems to lack the "
                              f"{ROLE_OF[action.kind]} role (or full administrator rights)")
            result.stop_code = 1
            return None
        return status

    def _outcome(self, seq: int, status: str, new_id: int | None = None, message: str | None = None) -> None:
        entry: dict[str, Any] = {"type": "outcome", "seq": seq, "status": status, "at": self.now().isoformat()}
        if new_id is not None:
            entry["id"] = new_id
        if message:
            entry["message"] = message
        self.journal.write(entry)

    def _intent(self, seq: int, attempt: int, action: Action) -> None:
        self.journal.write({"type": "intent", "seq": seq, "attempt": attempt, "at": self.now().isoformat(),
                            "action": action_to_dict(action)})

    def _execute(self, seq: int, action: Action, *, look_first: bool = False) -> tuple[str, int | None, str | None]:
        try:
            if isinstance(action, Create):
                outcome = self._create(seq, action, look_first=look_first)
            elif isinstance(action, Delete):
                outcome = self._delete(seq, action)
            else:
                outcome = self._enroll(seq, action)
        except WriteRefused as e:
            self._refused[action.kind] += 1
            return "failed", None, str(e)
        except StopRun:
            raise
        except ApiError as e:
            return "failed", None, str(e)
        if outcome[0] in ("created", "deleted", "enrolled"):
            self._accepted[action.kind] += 1
        return outcome

    def _create(self, seq: int, action: Create, *, look_first: bool = False) -> tuple[str, int | None, str | None]:
        member = member_of(action, self.enrolled)
        if member is None:
            return "failed", None, "the member is not enrolled (its enrolment failed or was skipped)"
        lesson = action.precondition.lesson_id
        if look_first:
            found = self._find_completion(member, lesson)
            if found is not None:
                return "created", found, f"found #{found} on re-read after an earlier failure"
        elif self.recheck_members:
            pairs = self._member_pairs.get(member)
            if pairs is None:
                pairs = self._member_pairs[member] = self._completions_of(member)
            if lesson in pairs:
                return "skipped", None, (f"already exists (#{pairs[lesson]}): made by another writer since the "
                                         "plan was read")
        body: dict[str, Any] = {"CourseLessonId": lesson, "CourseMemberId": member}
        if action.system_id:
            body["SystemId"] = action.system_id
        sent = action if action.member.id == member else _with_member(action, member)
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, sent)
            try:
                new_id = self.client.create(COMPLETIONS, body)
            except AmbiguousWrite as e:
                # The answer was lost: the completion may exist. Look before sending it again.
                found = self._find_completion(member, lesson)
                if found is not None:
                    return "created", found, f"{e}; found #{found} on re-read"
                log.info("create of lesson %s for member %s not found after a lost answer; sending again",
                         lesson, member)
                continue
            self._check_ownership(new_id, action.system_id)
            return "created", new_id, None
        return "failed", None, f"no answer after {CREATE_TRIES} tries, and the completion is not there"

    def _completions_of(self, member: int) -> dict[int, int]:
        """lesson → the oldest Id, of one member's completions as the server has them now."""
        found: dict[int, int] = {}
        reader = StateReader(self.client)
        for record in reader.select(COMPLETIONS, Filter("CourseCompletedLesson_CourseMember", "CourseMemberId",
                                                        member)):
            found.setdefault(record["CourseLessonId"], record["Id"])
        return found

    def _find_completion(self, member: int, lesson: int) -> int | None:
        return self._completions_of(member).get(lesson)

    def _check_ownership(self, new_id: int, system_id: str | None) -> None:
        """Once per apply, read a created record back: does the target keep SystemId?"""
        if self.ownership_checked or not system_id:
            return
        self.ownership_checked = True
        record = self.client.get(COMPLETIONS, new_id)
        if record is not None and record.get("SystemId") != system_id:
            self.ownership_lost = True
            self.client.observed.add("systemid-dropped-on-create")  # a target profile saying otherwise is wrong

    def _delete(self, seq: int, action: Delete) -> tuple[str, int | None, str | None]:
        record = action.record
        marker_based = action.reason == "orphaned" or (
            action.reason == "duplicate" and str(record.system_id or "").startswith(MARKER_PREFIX))
        if self.ownership_lost and marker_based:
            return "skipped", None, "the target does not keep SystemId; deletes by ownership are disabled"
        if action.twin in self.twins_missing:
            return "skipped", None, "its migrated twin was not created, so the source is kept"
        self._intent(seq, 1, action)
        gone_before = not self.client.delete(COMPLETIONS, record.id)
        # "gone" keeps the full record in the intent above: undo restores it whatever this outcome says,
        # because a delete whose first answer was lost is re-sent and then answered 404.
        return ("gone", None, "already deleted (404)") if gone_before else ("deleted", None, None)

    def _enroll(self, seq: int, action: Enroll) -> tuple[str, int | None, str | None]:
        course, coworker = action.precondition.course_id, action.precondition.coworker_id
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, action)
            try:
                new_id = self.client.create(MEMBERS, {"CourseId": course, "CoworkerId": coworker})
            except AmbiguousWrite:
                found = next((r["Id"] for r in self.client.list_all(MEMBERS, {"CourseMember_Coworker": coworker})
                              if r.get("CourseId") == course and r.get("CoworkerId") == coworker), None)
                if found is not None:
                    self.enrolled[(course, coworker)] = found
                    return "enrolled", found, "answer lost; found on re-read"
                continue
            self.enrolled[(course, coworker)] = new_id
            return "enrolled", new_id, None
        return "failed", None, f"no answer after {CREATE_TRIES} tries, and the enrolment is not there"


def _with_member(action: Create, member: int) -> Create:
    """The create as sent: for a member enrolled during the apply, with that enrolment's Id."""
    return replace(action, member=Ref(member, action.member.name))


def spare_reads(client: NexudusClient) -> bool:
    """Whether the request budget leaves room for a read beside each write without slowing the writes:
    true at the real service's documented limits (120 requests, 60 writes a minute) and with no limits."""
    limits = client.pacer.limits
    write_interval = max([60.0 / n for n in (limits.writes_per_minute,) if n], default=0.0)
    request_interval = max([60.0 / n for n in (limits.requests_per_minute,) if n] +
                           [(limits.min_interval_ms or 0) / 1000.0], default=0.0)
    return write_interval == 0.0 or request_interval * 2 <= write_interval


# --- verification --------------------------------------------------------------------------------

@dataclass
class Verification:
    """Whether the target converged to the plan: what is not in place and why, and duplicates made by a
    concurrent writer of the pairs this run created."""

    missing: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)

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
            if action.record.id in fresh.records:
                result.missing.append(f"{describe(action)}: #{action.record.id} is still there ({why})")
        elif (action.course.id or 0, action.coworker_id or 0) not in known:
            result.missing.append(f"enrol {action.member.name or action.coworker_id} in {action.course.name}: "
                                  f"not enrolled ({why})")
    return result
