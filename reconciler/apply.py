"""Apply: executes plan actions in order, journaled, paced by the client, never making a duplicate.

One executor serves `apply`, `apply --plan`, `apply --resume` and the plans `undo` makes. Actions are the
plan's JSON form (render.action_dict), so that a saved plan and a journal replay exactly what was shown.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TextIO

from deepdiff import DeepDiff

from reconciler.client import AmbiguousWrite, DailyCapReached, NexudusClient
from reconciler.errors import ApiError
from reconciler.journal import Journal
from reconciler.model import MARKER_PREFIX
from reconciler.state import COMPLETIONS, MEMBERS, StateReader

log = logging.getLogger(__name__)

Action = dict[str, Any]
DONE = {"created", "deleted", "gone", "enrolled", "skipped"}
CREATE_TRIES = 3


@dataclass
class Result:
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: list[tuple[Action, str]] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    stopped: str | None = None
    warnings: list[str] = field(default_factory=list)


# --- reading what is there now -------------------------------------------------------------------

@dataclass
class Fresh:
    """The current state of everything a list of actions touches, read just before they run."""

    pairs: dict[tuple[int, int], list[dict[str, Any]]]
    records: dict[int, dict[str, Any]]
    enrolled: dict[tuple[int, int], int]


def read_fresh(client: NexudusClient, actions: list[Action]) -> Fresh:
    reader = StateReader(client)
    enrolled: dict[tuple[int, int], int] = {}
    courses = {a["course"]["id"] for a in actions if a["action"] == "enroll" or not a["member"]["id"]}
    for course_id in sorted(courses):
        for member in reader.records_of_courses(MEMBERS, "CourseMember_Course", {course_id}, 0):
            enrolled[(course_id, member["CoworkerId"])] = member["Id"]
    lessons = {a["lesson"]["id"] for a in actions if a["action"] in ("create", "delete")}
    members = {m for a in actions if a["action"] in ("create", "delete") if (m := member_of(a, enrolled)) is not None}
    records, partial = reader.completion_records(lessons, members) if lessons else ([], [])
    if partial:
        raise ApiError("could not re-read the current state: " + "; ".join(partial))
    pairs: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        pairs[(record["CourseMemberId"], record["CourseLessonId"])].append(record)
    return Fresh(pairs, {r["Id"]: r for r in records}, enrolled)


def member_of(action: Action, enrolled: dict[tuple[int, int], int]) -> int | None:
    """The enrolment an action is for; for one whose enrolment was planned, the one that exists now."""
    member: int | None = action["member"]["id"]
    if member is None:
        member = enrolled.get((action["course"]["id"], action.get("coworker_id") or 0))
    return member


def describe_changes(planned: dict[str, Any], found: dict[str, Any]) -> str:
    """What moved in a record between the plan and now, field by field (deepdiff does the comparing)."""
    keys = [key for key in planned if key in found]
    diff = DeepDiff({k: planned[k] for k in keys}, {k: found[k] for k in keys}, verbose_level=2)
    changes = []
    for kind in ("values_changed", "type_changes"):
        for path, change in diff.get(kind, {}).items():
            field = path.removeprefix("root[").removesuffix("]").strip("'")
            changes.append(f"{field} {change['old_value']!r} → {change['new_value']!r}")
    return "; ".join(sorted(changes)) or "UpdatedOn moved"


def stale_reason(action: Action, fresh: Fresh) -> str | None:
    """Why this action's precondition no longer holds, or None when it may run."""
    kind = action["action"]
    if kind == "create":
        member = member_of(action, fresh.enrolled)
        if member is None:
            return None  # its enrolment is still to be made: the completion cannot exist yet
        existing = fresh.pairs.get((member, action["lesson"]["id"]))
        return f"already exists (#{existing[0]['Id']})" if existing else None
    if kind == "delete":
        planned = action["record"]
        found = fresh.records.get(planned["Id"])
        if found is None:
            return "already gone"
        if found.get("UpdatedOn") != planned.get("UpdatedOn"):
            return f"changed since the plan: {describe_changes(planned, found)}"
        return None
    if kind == "enroll" and (action["course"]["id"], action["coworker_id"]) in fresh.enrolled:
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
    def __init__(self, client: NexudusClient, journal: Journal, *, fail_fast: bool = False,
                 progress_out: TextIO | None = None, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.client = client
        self.journal = journal
        self.fail_fast = fail_fast
        self.progress_out = progress_out or sys.stderr
        self.now = now
        self.enrolled: dict[tuple[int, int], int] = {}
        self.ownership_checked = False
        self.ownership_lost = False
        self.twins_missing: set[str] = set()  # migrated completions whose create failed in this apply

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
                        result.stopped = "interrupted"
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
                            result.stopped = "--fail-fast: an action failed"
                            break
                # Failures such as `WasSuccessful: false` or a burst of 5xx are often passing: each failed
                # action gets one more try at the end (a create looks for its completion first).
                if result.stopped or self.fail_fast:
                    result.failed.extend((action, message) for _, action, message in failed)
                    failed = []
                for index, (seq, action, _message) in enumerate(failed):
                    if interrupted[0] or self._run_one(seq, action, result, look_first=True) is None:
                        result.stopped = result.stopped or "interrupted"
                        result.failed.extend((a, m) for _, a, m in failed[index:])
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
        """Execute, journal the outcome and count it; None when the daily write cap stops the run."""
        try:
            status, new_id, message = self._execute(seq, action, look_first=look_first)
        except DailyCapReached as e:
            result.stopped = f"daily write cap: {e}"
            return None
        self._outcome(seq, status, new_id, message)
        twin = action.get("twin")
        if twin and action["action"] == "create":
            if status == "failed":
                self.twins_missing.add(twin)
            else:
                self.twins_missing.discard(twin)
        if status == "failed":
            result.failed.append((action, message or "failed"))
        elif status == "skipped":
            result.skipped.append((action, message or ""))
        else:
            result.counts[status] += 1
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
                            "action": action})

    def _execute(self, seq: int, action: Action, *, look_first: bool = False) -> tuple[str, int | None, str | None]:
        kind = action["action"]
        try:
            if kind == "create":
                return self._create(seq, action, look_first=look_first)
            if kind == "delete":
                return self._delete(seq, action)
            if kind == "enroll":
                return self._enroll(seq, action)
        except DailyCapReached:
            raise
        except ApiError as e:
            return "failed", None, str(e)
        return "failed", None, f"unknown action {kind!r}"

    def _create(self, seq: int, action: Action, *, look_first: bool = False) -> tuple[str, int | None, str | None]:
        member = member_of(action, self.enrolled)
        if member is None:
            return "failed", None, "the member is not enrolled (its enrolment failed or was skipped)"
        lesson = action["lesson"]["id"]
        if look_first:
            found = self._find_completion(member, lesson)
            if found is not None:
                return "created", found, f"found #{found} on re-read after an earlier failure"
        body: dict[str, Any] = {"CourseLessonId": lesson, "CourseMemberId": member}
        if action.get("system_id"):
            body["SystemId"] = action["system_id"]
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, {**action, "member": {**action["member"], "id": member}})
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
            self._check_ownership(new_id, body.get("SystemId"))
            return "created", new_id, None
        return "failed", None, f"no answer after {CREATE_TRIES} tries, and the completion is not there"

    def _find_completion(self, member: int, lesson: int) -> int | None:
        for record in self.client.list_all(COMPLETIONS, {"CourseCompletedLesson_CourseMember": member}):
            if record.get("CourseLessonId") == lesson and record.get("CourseMemberId") == member:
                found: int = record["Id"]
                return found
        return None

    def _check_ownership(self, new_id: int, system_id: str | None) -> None:
        """Once per apply, read a created record back: does the target keep SystemId?"""
        if self.ownership_checked or not system_id:
            return
        self.ownership_checked = True
        record = self.client.get(COMPLETIONS, new_id)
        if record is not None and record.get("SystemId") != system_id:
            self.ownership_lost = True

    def _delete(self, seq: int, action: Action) -> tuple[str, int | None, str | None]:
        record = action["record"]
        marker_based = action["reason"] == "orphaned" or (
            action["reason"] == "duplicate" and str(record.get("SystemId") or "").startswith(MARKER_PREFIX))
        if self.ownership_lost and marker_based:
            return "skipped", None, "the target does not keep SystemId; deletes by ownership are disabled"
        if action.get("twin") in self.twins_missing:
            return "skipped", None, "its migrated twin was not created, so the source is kept"
        self._intent(seq, 1, action)
        gone_before = not self.client.delete(COMPLETIONS, record["Id"])
        return ("gone", None, "already deleted (404)") if gone_before else ("deleted", None, None)

    def _enroll(self, seq: int, action: Action) -> tuple[str, int | None, str | None]:
        course, coworker = action["course"]["id"], action["coworker_id"]
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, action)
            try:
                new_id = self.client.create(MEMBERS, {"CourseId": course, "CoworkerId": coworker})
            except AmbiguousWrite:
                found = next((r["Id"] for r in self.client.list_all(MEMBERS, {"CourseMember_Coworker": coworker})
                              if r.get("CourseId") == course), None)
                if found is not None:
                    self.enrolled[(course, coworker)] = found
                    return "enrolled", found, "answer lost; found on re-read"
                continue
            self.enrolled[(course, coworker)] = new_id
            return "enrolled", new_id, None
        return "failed", None, f"no answer after {CREATE_TRIES} tries, and the enrolment is not there"


def verify(client: NexudusClient, actions: list[Action], done: list[tuple[Action, int | None]]) -> list[str]:
    """Re-read what the applied actions touched; the list of what did not converge (empty when it did)."""
    if not done:
        return []
    fresh = read_fresh(client, [a for a, _ in done])
    problems = []
    for action, new_id in done:
        lesson, member = action["lesson"]["id"], action["member"]["id"]
        if action["action"] == "create" and member is not None and not fresh.pairs.get((member, lesson)):
            problems.append(f"{action['member']['name']}: {action['lesson']['title']} was created (#{new_id}) "
                            "but is not there")
        if action["action"] == "delete" and action["record"]["Id"] in fresh.records:
            problems.append(f"{action['member']['name']}: #{action['record']['Id']} was deleted but is still there")
    return problems
