"""Apply: executes a typed plan's actions in order, journaled, paced by the client, never making a duplicate.

One executor serves `apply`, `apply --plan`, `apply --resume` and the plans `undo` makes. It dispatches
on the action's type and checks exactly the precondition the action carries: the plan said what must
hold, and the executor checks that, nothing it works out again. Its helpers each have their module:
`fresh.py` (re-reading state, preconditions), `explain.py` (what moved), `progress.py`, `interrupt.py`
(Ctrl-C), `verify.py` (after the run).
"""

from __future__ import annotations

import logging
import sys
from array import array
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TextIO

from reconciler.actions import Action, Create, Delete, Enroll, Mapped, Ref, action_to_dict
from reconciler.client import AmbiguousWrite, NexudusClient
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_INTERRUPTED,
    ApiError,
    AuthError,
    MalformedAnswer,
    StopRun,
    TransportError,
    ValidationFailed,
    WriteRefused,
)
from reconciler.fresh import Fresh, changed_since, member_of, replaced_records, stale_reason
from reconciler.interrupt import interruptible
from reconciler.journal import Journal
from reconciler.model import MARKER_PREFIX, NO_DATE, instant
from reconciler.pacing import LOGGED_WAIT, duration
from reconciler.progress import Progress
from reconciler.state import COMPLETIONS, MEMBERS, Filter, StateReader
from reconciler.undo import CLOCK_SLACK

log = logging.getLogger(__name__)

DONE = {"created", "deleted", "gone", "enrolled", "skipped"}
CREATE_TRIES = 3
# Writes of one kind refused (401) for this many different members (or records) with none accepted, while the
# session holds: most likely a missing role, not a deleted record (the live service answers 401 for both).
REFUSALS_TO_STOP = 3
# Actions in a row that failed for the service's sake (a 5xx past its retries, no answer, a maintenance page),
# of more than one member: the run stops, resumable, rather than spend the day's writes on an outage. Failures of
# one member alone may be that member's (the live service answers its "Ooops" 500 to permanent refusals too).
OUTAGE_TO_STOP = 5
# A delete's intent journals the record as the server has it just before (every field: who recorded it, custom
# fields, what a list leaves out), read by Id for this many deletes at a time: one batch request.
FULL_RECORDS = 100
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
    # The other records the fresh read before the writes found in the pairs the actions delete from (pairs with
    # none are left out): what verification does not take for a pair made again since.
    before: dict[tuple[int, int], set[int]] = field(default_factory=dict)


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
        self.ownership_lost: str | None = None  # why owned mode cannot work against the target, once seen
        self.twins_missing: set[str] = set()  # migrated completions whose create failed in this apply
        self.twins_made: set[str] = set()  # and those this apply created, or found made or there
        # Another writer (a second machine, a person in the portal) may create what we are about to: each
        # member's completions are re-read just before their creates, when the read budget has room.
        # (None: decided by `run`, from the plan's members and writes.)
        self.recheck_members = recheck_members
        self._member_pairs: dict[int, dict[int, int]] = {}
        # The member in hand's lessons this run created (lesson → Id): a plan naming a pair twice (a hand-made one,
        # or one made before a planner's fix) still makes it once. A member at a time, as a plan's creates come.
        self._made: dict[int, dict[int, int]] = {}
        self._refused: dict[str, set[object]] = defaultdict(set)  # by kind: the members (records) refused
        self._accepted: dict[str, int] = defaultdict(int)
        self._open_intent: int | None = None  # the seq whose intent is journaled and outcome not yet
        self._outage = False  # whether the action in hand failed for the service's sake
        self._refusal = False  # whether it was refused (401 after renewal, 400): sending it again cannot help
        self._outages: list[int] = []  # the members of such failures in a row
        self._deletes: array[int] = array("q")  # the run's deletes' record Ids, in order (`_full_record`)
        self._next_delete = 0  # where in them the next batch read starts
        self._asked: set[int] = set()  # the Ids the batch read last asked for
        self._full: dict[int, dict[str, Any]] = {}  # what it found: Id → the whole record
        # The records the run deletes whose pair a migration's create in it makes again (`replaced_records`): not
        # "already there" for that create.
        self._replaced: frozenset[int] = frozenset()
        self._replaced_pairs: dict[tuple[int, int], set[int]] = {}  # their pairs (member, lesson) → their Ids
        self._gone: set[int] = set()  # those of them this run has deleted (or found gone)
        # The source deletes kept because their twin's create failed, by twin: sent once its try at the end makes it.
        self._waiting: dict[str, list[tuple[int, Delete]]] = {}
        self.progress = Progress(0, self.progress_out)

    def run(self, numbered: Sequence[tuple[int, Action]], fresh: Fresh | None = None,
            sent: Mapping[int, str] | None = None) -> Result:
        """Run the actions. `sent` (a resume): the actions an earlier run of this journal sent without an outcome
        after, by when it first sent each: a create of them whose pair `fresh` shows a record of carrying its marker,
        made since, made it (the run stopped before its answer), and is counted created, not skipped."""
        result = Result()
        if self.recheck_members is None:
            members = {a.member.id or -(a.coworker_id or 0) for _, a in numbered if isinstance(a, Create)}
            self.recheck_members = spare_reads(self.client, len(members), len(numbered))
        self._deletes = array("q", (a.record.id for _, a in numbered if isinstance(a, Delete)))
        self._replaced = replaced_records(a for _, a in numbered)
        self._replaced_pairs = {}
        for _, a in numbered:
            if isinstance(a, Delete) and a.record.id in self._replaced:
                self._replaced_pairs.setdefault((a.record.member_id, a.record.lesson_id), set()).add(a.record.id)
        self._gone = set()
        self._next_delete, self._asked, self._full, self._waiting = 0, set(), {}, {}
        if fresh is not None:
            self.enrolled.update(fresh.enrolled)
            for _, action in numbered:  # (kept only where a pair has other records: a million deletes hold none)
                if isinstance(action, Delete):
                    pair = (action.record.member_id, action.record.lesson_id)
                    others = {r["Id"] for r in fresh.pairs.get(pair, [])} - {action.record.id}
                    if others:
                        result.before.setdefault(pair, set()).update(others)
        progress = self.progress = Progress(len(numbered), self.progress_out, pacer=self.client.pacer,
                                            clock=self.client.clock)
        failed: list[tuple[int, Action, str, bool]] = []  # (seq, action, message, refused)
        # Every wait the client makes during the run (the write budget, the server's throttling, a backoff)
        # is told to the progress, at least every `progress.every` seconds while it lasts.
        listener, self.client.wait_listener = self.client.wait_listener, progress.on_wait
        report_every, self.client.report_every = self.client.report_every, min(self.client.report_every,
                                                                               progress.every)
        try:
            with interruptible(self.client.stop) as stop:
                for seq, action in numbered:
                    if stop.is_set:
                        result.stopped, result.stop_code = "interrupted", EXIT_INTERRUPTED
                        break
                    reason = stale_reason(action, fresh, self._replaced) if fresh is not None else None
                    made = self._made_in_flight(action, fresh, sent.get(seq)) if reason and sent else None
                    if made is not None:
                        self._outcome(seq, "created", made, "found on the resume: the create in flight when the "
                                                            "run stopped made it (it carries its marker)")
                        result.counts["created"] += 1
                        if action.twin:
                            self.twins_made.add(action.twin)
                        progress.step("created")
                        continue
                    if reason is not None:
                        self._outcome(seq, "skipped", message=reason)
                        result.skipped.append((action, reason))
                        progress.step("skipped")
                        continue
                    status = self._run_one(seq, action, result, look_first=False)
                    if status is None:
                        break
                    progress.step("skipped" if status == "waiting" else status)
                    if status == "failed":
                        failed.append((seq, action, result.failed.pop()[1], self._refusal))
                        if self.fail_fast:
                            result.stopped, result.stop_code = "--fail-fast: an action failed", 4
                            break
                # Failures such as `WasSuccessful: false` or a burst of 5xx are often passing: each failed
                # action gets one more try at the end (a create looks for its completion first). A refusal (a 400
                # with Errors, a 401 after renewal) would be refused again, a write wasted: a create refused only
                # looks (another writer may have made the pair, which a server refusing duplicates answers 400), a
                # delete refused is read back (a 401 may answer one of a record already gone), an enrolment stays
                # failed.
                if result.stopped or self.fail_fast:
                    result.failed.extend((action, message) for _, action, message, _ in failed)
                    failed = []
                for index, (seq, action, message, refused) in enumerate(failed):
                    if refused and isinstance(action, Enroll):
                        result.failed.append((action, message))
                        continue
                    status = None if stop.is_set else self._run_one(seq, action, result, look_first=True,
                                                                    refused=message if refused else None)
                    if status is None:
                        if not result.stopped:
                            result.stopped, result.stop_code = "interrupted", EXIT_INTERRUPTED
                        result.failed.extend((a, m) for _, a, m, _ in failed[index + (0 if stop.is_set else 1):])
                        break
                    progress.retried(status)
                    if status == "created" and action.twin and not self._send_waiting(action.twin, result):
                        result.failed.extend((a, m) for _, a, m, _ in failed[index + 1:])
                        break
        finally:
            self.client.wait_listener, self.client.report_every = listener, report_every
            progress.close()
        if result.stopped:
            self.journal.write({"type": "stop", "why": result.stopped, "at": self.now().isoformat()})
        if self.ownership_lost:
            result.warnings.append(f"{self.ownership_lost}, so owned mode cannot work against it: deletes justified "
                                   "by ownership were skipped; it is recorded in the target profile, and plans now "
                                   "refuse owned specs (`reconciler doctor --write-check` measures it anew)")
        return result

    def _send_waiting(self, twin: str, result: Result) -> bool:
        """The source deletes kept for want of `twin`, which the try at the end has now made: sent (each its
        skip taken back, and kept where the run stops first); False when the run must stop."""
        for seq, action in self._waiting.pop(twin, []):
            kept = [(a, m) for a, m in result.skipped if a is action]
            result.skipped = [(a, m) for a, m in result.skipped if a is not action]
            status = self._run_one(seq, action, result, look_first=False)
            if status is None:
                result.skipped.extend(kept)
                return False
            self.progress.retried(status)
        return True

    def _run_one(self, seq: int, action: Action, result: Result, *, look_first: bool,
                 refused: str | None = None) -> str | None:
        """Execute, journal the outcome and count it; None when the run must stop (it says why). `refused`: the
        refusal of the action's earlier try: a create is then only looked for and a delete read back, not sent
        again."""
        try:
            status, new_id, message = self._execute(seq, action, look_first=look_first, refused=refused)
        except StopRun as e:
            result.stopped, result.stop_code = str(e), e.exit_code
            if self._open_intent == seq:  # stopped in a wait after the intent: the resume re-reads it
                self._outcome(seq, "failed", message=f"stopped before an answer came ({e}); the resume looks first")
            return None
        self._outcome(seq, status, new_id, message)
        if action.twin and isinstance(action, Create):
            if status == "failed":
                self.twins_missing.add(action.twin)
            else:
                self.twins_missing.discard(action.twin)
                self.twins_made.add(action.twin)
        if isinstance(action, Delete) and status in ("deleted", "gone") and action.record.id in self._replaced:
            self._gone.add(action.record.id)
        if status == "failed":
            result.failed.append((action, message or "failed"))
        elif status in ("skipped", "waiting"):
            result.skipped.append((action, message or ""))
        else:
            result.counts[status] += 1
        if status == "failed" and self._outage:
            self._outages.append(action.record.member_id if isinstance(action, Delete) else
                                 action.member.id or action.coworker_id or 0)
        else:
            self._outages = []
        if len(self._outages) >= OUTAGE_TO_STOP and len(set(self._outages)) > 1:
            result.stopped = (f"{len(self._outages)} actions in a row, of {len(set(self._outages))} members, failed "
                              f"for the service's sake (the last: {message}): stopped, so that an outage does not "
                              "spend the day's writes")
            result.stop_code = EXIT_BLOCKED
            return None
        refusals = len(self._refused[action.kind])
        if refusals >= REFUSALS_TO_STOP and not self._accepted[action.kind]:
            result.stopped = (f"every {action.kind} so far was refused with 401 ({refusals} different "
                              f"{'records' if isinstance(action, Delete) else 'members'}, while the account's reads "
                              f"are accepted): the account may lack the {ROLE_OF[action.kind]} role (`reconciler "
                              "doctor --write-check` checks it), or what they name was deleted")
            result.stop_code = 1
            return None
        return status

    def _made_in_flight(self, action: Action, fresh: Fresh | None, sent_at: str | None) -> int | None:
        """The Id of the record a create sent at `sent_at` by a run that stopped before its answer made, as `fresh`
        shows its pair: carrying its marker, created no earlier than it was sent (the clocks' slack allowed, as
        undo allows it); None when there is none, or it is no create."""
        if not isinstance(action, Create) or fresh is None or not sent_at or not action.system_id:
            return None
        member = member_of(action, fresh.enrolled)
        sent = instant(sent_at)
        if sent == NO_DATE:
            return None
        since = sent - CLOCK_SLACK
        for record in fresh.pairs.get((member or 0, action.precondition.lesson_id)) or ():
            if (record.get("SystemId") == action.system_id and record["Id"] not in self._replaced
                    and instant(str(record.get("CreatedOn") or "")) >= since):
                return int(record["Id"])
        return None

    def _outcome(self, seq: int, status: str, new_id: int | None = None, message: str | None = None) -> None:
        entry: dict[str, Any] = {"type": "outcome", "seq": seq, "status": status, "at": self.now().isoformat()}
        if new_id is not None:
            entry["id"] = new_id
        if message:
            entry["message"] = message
        self.journal.write(entry)
        self._open_intent = None

    def _intent(self, seq: int, attempt: int, action: Action, record: dict[str, Any] | None = None) -> None:
        """Journal a write about to be sent, once the write budget allows it (waiting here, not inside the
        request, so that the wait shows in the progress and Ctrl-C during it leaves no intent open); a delete's
        with the `record` as the server has it (`_full_record`)."""
        self._await_write_budget()
        entry = {"type": "intent", "seq": seq, "attempt": attempt, "at": self.now().isoformat(),
                 "action": action_to_dict(action)}
        if record is not None:
            entry["record"] = record
        self.journal.write(entry)
        self._open_intent = seq

    def _full_record(self, record_id: int) -> dict[str, Any] | None:
        """The whole record a delete removes, as get-by-id has it now, read in batches of the deletes to come
        (`FULL_RECORDS` a request); None when the read cannot be made (no Read role, a failure: the plan's
        record, which undo needs, is journaled all the same) or the record is gone (the delete then says so)."""
        if record_id not in self._asked:
            deletes, at = self._deletes, self._next_delete
            while at < len(deletes) and deletes[at] != record_id:  # (past the deletes skipped as stale)
                at += 1
            if at < len(deletes):
                wanted = list(deletes[at:at + FULL_RECORDS])
                self._next_delete = at + len(wanted)
            else:  # a delete tried again at the end, behind the batches: read alone (and no scan again)
                wanted = [record_id]
                self._next_delete = at
            self._asked, self._full = set(wanted), {}
            try:
                self._full = {r["Id"]: r for r in self.client.get_many(COMPLETIONS, wanted)}
            except StopRun:
                raise
            except ApiError as e:
                log.info("could not read the records of %d delete(s) whole before deleting them: %s", len(wanted), e)
        return self._full.get(record_id)

    def _await_write_budget(self) -> None:
        """Wait for the write budget through the client's wait, which reports it to the progress as it goes."""
        logged = False
        while True:
            wait, budget = self.client.write_slot()
            if wait <= 0:
                return
            if not logged and wait >= LOGGED_WAIT:
                log.info("waiting %s for the %s", duration(round(wait, 1)), budget)
                logged = True
            self.client.wait(wait, reason=f"for the {budget}")

    def _execute(self, seq: int, action: Action, *, look_first: bool = False,
                 refused: str | None = None) -> tuple[str, int | None, str | None]:
        self._outage = self._refusal = False
        try:
            if isinstance(action, Create):
                outcome = self._create(seq, action, look_first=look_first, refused=refused)
            elif isinstance(action, Delete):
                outcome = self._delete(seq, action, refused=refused)
            else:
                outcome = self._enroll(seq, action)
        except WriteRefused as e:
            self._check_session(e)
            self._refusal = True
            gone, there = self._what_it_names(action)
            if gone is not None:  # a stale reference: this item's failure, and no sign of a missing role
                return "failed", None, f"{e}: {gone}"
            self._refused[action.kind].add(action.record.id if isinstance(action, Delete) else
                                           action.member.id or action.coworker_id or action.member.name)
            return "failed", None, f"{e}; {there}" if there else str(e)
        except StopRun:
            raise
        except ApiError as e:
            self._outage = _an_outage(e)
            self._refusal = isinstance(e, ValidationFailed) and e.status == 400
            return "failed", None, str(e)
        if outcome[0] in ("created", "deleted", "enrolled"):
            self._accepted[action.kind] += 1
        return outcome

    def _twin_there(self, twin: str) -> bool:
        """Whether a migrated source's twin (`course:coworker:lesson`), which was there when the plan was made (no
        create of it in this apply), is there now: read just before the source's delete (the enrolment, then its
        completions), so that the credit moves rather than disappears."""
        course, coworker, lesson = (int(part) for part in twin.split(":"))
        member = self.enrolled.get((course, coworker)) or self._enrolment(course, coworker)
        there = member is not None and any(r["CourseLessonId"] == lesson for r in self._records_of(member))
        if there:  # (read once: the other source records of the pair, duplicates, go for it too)
            self.twins_made.add(twin)
        return there

    def _what_it_names(self, action: Action) -> tuple[str | None, str | None]:
        """After a write refused with 401 (which the live service answers both for a write naming a deleted record,
        a stale `CourseMemberId` among them, and for a missing role): whether what it names is gone, read now (one
        request; two when get-by-id is refused too). (why it is gone, None) when it is: that item's failure, never
        counted towards the stop for a missing role; (None, what is there) when it is there; (None, None) when it
        cannot be told."""
        role = ROLE_OF[action.kind]

        def exists(path: str, record_id: int) -> bool:
            try:
                return self.client.get(path, record_id) is not None
            except AuthError as e:  # seen live: get-by-id of a deleted record answers 401 "Not found"
                if "(401: Not found)" in str(e):
                    return False
                raise

        try:
            if isinstance(action, Delete):
                if not exists(COMPLETIONS, action.record.id):
                    return f"#{action.record.id} is gone on re-read", None
                return None, f"#{action.record.id} is there on re-read: the account may lack the {role} role"
            if isinstance(action, Create):
                member = member_of(action, self.enrolled)
                if member is None:
                    return None, None
                try:
                    found = exists(MEMBERS, member)
                except AuthError:  # get-by-id refused too (no Read role): the coworker's enrolments, if known
                    coworker = action.coworker_id
                    if coworker is None:
                        return None, None
                    found = self._enrolment(action.course.id or 0, coworker) == member
                if not found:
                    return (f"the enrolment it names (CourseMemberId {member}) is gone on re-read: deleted since the "
                            "plan was read"), None
                return None, f"the enrolment it names (#{member}) is there: the account may lack the {role} role"
        except StopRun:
            raise
        except ApiError as e:
            log.info("could not read back what a refused write names: %s", e)
        return None, None

    def _check_session(self, refused: WriteRefused) -> None:
        """A write refused with 401 (after the client renewed the session where it could) is that item's failure
        only while the session holds: one read of a page of one record says whether the server still takes the
        credentials. If it too is refused, the run stops, resumable (a token that expired, an account changed)."""
        try:
            self.client.page(COMPLETIONS, size=1)
        except StopRun:
            raise
        except AuthError:
            raise StopRun(f"{refused.method} {refused.url} was refused with 401, and then a read too: the server no "
                          "longer accepts these credentials (a NEXUDUS_TOKEN expires; an account can be changed); "
                          "with credentials it accepts, finish with `reconciler apply --resume` on this run's "
                          "journal") from None
        except ApiError as e:  # the check itself failed (the network, a maintenance page): the item's failure stands
            log.info("could not check the session after a refused write: %s", e)

    def _create(self, seq: int, action: Create, *, look_first: bool = False,
                refused: str | None = None) -> tuple[str, int | None, str | None]:
        member = member_of(action, self.enrolled)
        if member is None:
            return "failed", None, "the member is not enrolled (its enrolment failed or was skipped)"
        lesson = action.precondition.lesson_id
        made = self._made.get(member)
        if made is None:
            self._made.clear()
            made = self._made[member] = {}
        if lesson in made:
            return "skipped", None, f"already created by this apply (#{made[lesson]}): the plan names the pair twice"
        status, new_id, message = self._make(seq, action, member, lesson, look_first=look_first, refused=refused)
        if status == "created" and new_id is not None:
            made[lesson] = new_id
        return status, new_id, message

    def _make(self, seq: int, action: Create, member: int, lesson: int, *, look_first: bool,
              refused: str | None) -> tuple[str, int | None, str | None]:
        """`_create` once the member is known and the pair is not one this run made."""
        if look_first:
            found, other = self._find_completion(member, lesson, action.system_id)
            if found is not None:
                return "created", found, f"found #{found} on re-read after an earlier failure"
            if other is not None:
                return "skipped", None, f"{_not_ours(other, action.system_id)}; not counted as this apply's"
            replaced = self._replaced_pairs.get((member, lesson))
            if refused is not None and not (replaced and replaced <= self._gone):
                self._refusal = True
                return "failed", None, f"{refused} (not there on re-read; not sent again)"
            # (A pair whose records this run deleted since: a server refusing a second record of a pair refused the
            # create for them, and takes it now. Sent again once.)
        elif self.recheck_members:
            pairs = self._member_pairs.get(member)
            if pairs is None:
                # Only the member in hand: a plan's creates come a member at a time, and one read per member
                # kept for a whole apply of millions would grow with it.
                self._member_pairs.clear()
                pairs = self._member_pairs[member] = self._completions_of(member)
            if lesson in pairs:
                return "skipped", None, (f"already exists (#{pairs[lesson]}): made by another writer since the "
                                         "plan was read")
        body: dict[str, Any] = {"CourseLessonId": lesson, "CourseMemberId": member}
        if action.system_id:
            body["SystemId"] = action.system_id
        sent = action if action.member.id == member else _with_member(action, member)
        unclear: AmbiguousWrite | None = None
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, sent)
            try:
                new_id = self.client.create(COMPLETIONS, body)
            except AmbiguousWrite as e:
                # The answer was lost: the completion may exist. Look before sending it again.
                unclear = e
                found, other = self._find_completion(member, lesson, action.system_id)
                if found is not None:
                    return "created", found, f"{e}; found #{found} on re-read"
                if other is not None:  # the pair is complete: not sent again
                    return "skipped", None, f"{e}; {_not_ours(other, action.system_id)}; not sent again"
                log.info("create of lesson %s for member %s not found after a lost answer; sending again",
                         lesson, member)
                continue
            self._check_ownership(new_id, action.system_id, member)
            return "created", new_id, None
        self._outage = True
        return "failed", None, f"{CREATE_TRIES} tries, and the completion is not there (the last: {unclear})"

    def _completions_of(self, member: int) -> dict[int, int]:
        """lesson → the oldest Id, of one member's completions as the server has them now."""
        found: dict[int, int] = {}
        for record in self._records_of(member):
            if record["Id"] not in self._replaced:
                found.setdefault(record["CourseLessonId"], record["Id"])
        return found

    def _records_of(self, member: int) -> list[dict[str, Any]]:
        """One member's completions as the server has them now (by the member filter, verified)."""
        return StateReader(self.client).select(COMPLETIONS, Filter("CourseCompletedLesson_CourseMember",
                                                                   "CourseMemberId", member))

    def _find_completion(self, member: int, lesson: int, marker: str | None) -> tuple[int | None, int | None]:
        """After a try whose outcome is not known (an answer lost, a failure the server may have acted on): the Id
        of the pair's record this apply made, else None; and else that of a record another writer made (the
        Members Portal completes a lesson when the member opens it), else None. Only a record carrying the
        action's `marker` is this apply's (as the list shows it, or, where the list shows none, as a read by its Id
        does): one counted as this apply's is one its undo deletes. (A target that drops the marker on create
        leaves this apply's own record counted as another's: kept by an undo, which is the safe side.)"""
        records = [r for r in self._records_of(member)
                   if r["CourseLessonId"] == lesson and r["Id"] not in self._replaced]
        if not records:
            return None, None
        if marker:
            for record in records:
                if record.get("SystemId") == marker:
                    return record["Id"], None
            for record in records:
                if not record.get("SystemId"):  # lists may leave SystemId out, or show it null
                    whole = self.client.get(COMPLETIONS, record["Id"])
                    if whole is not None and whole.get("SystemId") == marker:
                        return record["Id"], None
        return None, records[0]["Id"]

    def _check_ownership(self, new_id: int, system_id: str | None, member: int) -> None:
        """Once per apply, read a created record back as owned mode reads it, in a list (the member's
        completions), and by its Id when the list does not show the marker: is it kept, and shown in lists?"""
        if self.ownership_checked or not system_id:
            return
        self.ownership_checked = True
        by_member = Filter("CourseCompletedLesson_CourseMember", "CourseMemberId", member)
        try:
            listed = None
            if not StateReader(self.client).known_ignored(COMPLETIONS, by_member):
                # One page of the member's completions (one request, whatever the filter does: a record of another
                # member on it is not looked at); not on it, the record is read by its Id alone.
                page = self.client.page(COMPLETIONS, {by_member.name: member}, size=self.client.page_size)
                listed = next((r for r in page.records if r.get("Id") == new_id and by_member.matches(r)), None)
            if listed is not None and listed.get("SystemId") == system_id:
                return
            record = self.client.get(COMPLETIONS, new_id)
        except StopRun:
            raise
        except AuthError:  # no Read role: the read-back cannot be made (and is not tried again)
            return
        except ApiError as e:  # the create stands; the next one reads back instead (a list without SystemId says so)
            log.info("could not read back completion %s to check its SystemId (%s); the next create will", new_id, e)
            self.ownership_checked = False
            return
        if record is not None and record.get("SystemId") != system_id:
            self.ownership_lost = "the target did not keep the SystemId written on create"
            self.client.observed.add("systemid-dropped-on-create")  # a target profile saying otherwise is wrong
        elif listed is not None and record is not None:  # kept (get-by-id shows it), not shown in the list
            shown = f"show SystemId {listed['SystemId']!r}" if "SystemId" in listed else "leave SystemId out"
            self.ownership_lost = (f"the target's completion lists {shown} for a record created with the marker "
                                   "(get-by-id shows it)")
            self.client.observed.add("systemid-absent-from-lists")

    def _delete(self, seq: int, action: Delete, *, refused: str | None = None) -> tuple[str, int | None, str | None]:
        record = action.record
        marker_based = action.reason == "orphaned" or (
            action.reason == "duplicate" and str(record.system_id or "").startswith(MARKER_PREFIX))
        if self.ownership_lost and marker_based:
            return "skipped", None, f"{self.ownership_lost}: deletes by ownership are disabled"
        if action.twin in self.twins_missing:  # ("waiting": not done, as a skip is: a resume looks again)
            self._waiting.setdefault(action.twin, []).append((seq, action))
            return "waiting", None, "its migrated twin was not created, so the source is kept"
        if action.reason == "migrated" and action.twin and action.twin not in self.twins_made \
                and not self._twin_there(action.twin):
            return "skipped", None, "its twin in the target, there when the plan was made, is gone: the source is kept"
        if refused is not None:  # refused before (a 401 may be the answer for a record already gone): look only
            self._refusal = True
            if self.client.get(COMPLETIONS, record.id) is None:
                return "gone", None, f"{refused}; #{record.id} is gone on re-read"
            return "failed", None, f"{refused} (still there on re-read; not sent again)"
        whole = self._full_record(record.id)
        if whole is not None:  # read now, whatever the plan was made from (a read cache, a saved plan)
            changed = changed_since(action, whole)
            if changed is not None:
                return "skipped", None, changed
        unclear: AmbiguousWrite | None = None
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, action, whole if attempt == 1 else None)  # the record once is enough
            try:
                gone_before = not self.client.delete(COMPLETIONS, record.id)
            except AmbiguousWrite as e:
                # The answer said neither done nor refused: the record read back by its Id settles it (gone, or
                # still there: not deleted, so it is safe to send again).
                unclear = e
                try:
                    still = self.client.get(COMPLETIONS, record.id)
                except StopRun:
                    raise
                except ApiError as error:
                    self._outage = _an_outage(error)
                    return "failed", None, f"{e}; reading #{record.id} back failed too ({error})"
                if still is None:
                    return "deleted", None, f"{e}; #{record.id} is gone on re-read"
                changed = changed_since(action, still)
                if changed is not None:
                    return "skipped", None, f"{e}; #{record.id} is still there: {changed}"
                continue
            # "gone" keeps the full record in the intent above: undo restores it whatever this outcome says,
            # because a delete whose first answer was lost is re-sent and then answered 404.
            return ("gone", None, "already deleted (404)") if gone_before else ("deleted", None, None)
        self._outage = True
        return "failed", None, f"{unclear}; #{record.id} is still there after {CREATE_TRIES} tries"

    def _enroll(self, seq: int, action: Enroll) -> tuple[str, int | None, str | None]:
        course, coworker = action.precondition.course_id, action.precondition.coworker_id
        unclear: AmbiguousWrite | None = None
        for attempt in range(1, CREATE_TRIES + 1):
            self._intent(seq, attempt, action)
            try:
                new_id = self.client.create(MEMBERS, {"CourseId": course, "CoworkerId": coworker})
            except AmbiguousWrite as e:
                unclear = e
                found = self._enrolment(course, coworker)
                if found is not None:
                    self.enrolled[(course, coworker)] = found
                    return "enrolled", found, "answer lost; found on re-read"
                continue
            except ValidationFailed:  # ("already a member of this course", when another writer enrolled them since)
                found = self._enrolment(course, coworker)
                if found is None:
                    raise
                self.enrolled[(course, coworker)] = found
                return "skipped", found, f"already enrolled (#{found}): made by another writer since the plan was read"
            self.enrolled[(course, coworker)] = new_id
            return "enrolled", new_id, None
        self._outage = True
        return "failed", None, f"{CREATE_TRIES} tries, and the enrolment is not there (the last: {unclear})"

    def _enrolment(self, course: int, coworker: int) -> int | None:
        """The Id of the coworker's enrolment in the course, read now; None when there is none."""
        return next((r["Id"] for r in self.client.list_all(MEMBERS, {"CourseMember_Coworker": coworker})
                     if r.get("CourseId") == course and r.get("CoworkerId") == coworker), None)


def _an_outage(error: ApiError) -> bool:
    """Whether a write failed for the service's sake (down, failing, answering pages that are not the API's),
    not for the item's (a refusal, a validation failure)."""
    return isinstance(error, TransportError | MalformedAnswer | AmbiguousWrite) or (error.status or 0) >= 500


class Numbered(Mapped[tuple[int, Action]]):
    """Actions with their index in the plan (the journal's `seq`), made as they are read: what
    `list(enumerate(actions))` holds, without a tuple per action for the whole apply."""

    __slots__ = ()

    def __init__(self, actions: Sequence[Action]) -> None:
        super().__init__(range(len(actions)), lambda index: (index, actions[index]))


def _not_ours(record_id: int, marker: str | None) -> str:
    """What a record of the pair found on re-read that does not carry the create's marker is said to be
    (`Executor._find_completion`)."""
    if marker:
        return f"#{record_id} is there on re-read without this apply's marker: made by another writer"
    return (f"#{record_id} is there on re-read; the create carries no marker, so it cannot be told from another "
            "writer's")


def _with_member(action: Create, member: int) -> Create:
    """The create as sent: for a member enrolled during the apply, with that enrolment's Id."""
    return replace(action, member=Ref(member, action.member.name))


def spare_reads(client: NexudusClient, reads: int, writes: int) -> bool:
    """Whether the request budget leaves room for `reads` (one per member with creates) beside `writes` without
    slowing the writes. Each window counts: the least interval and the minute's requests always, and the hour's
    once the run's requests are more than it allows (at the real service's documented limits, 5,000 requests an
    hour beside 60 writes a minute leave room for about 0.39 reads a write; the minute's 120, for one)."""
    limits = client.pacer.limits
    write_interval = max([60.0 / n for n in (limits.writes_per_minute,) if n], default=0.0)
    if write_interval == 0.0 or not writes:
        return True
    requests = writes + reads
    request_interval = max([60.0 / n for n in (limits.requests_per_minute,) if n] +
                           [3600.0 / n for n in (limits.requests_per_hour,) if n and requests > n] +
                           [(limits.min_interval_ms or 0) / 1000.0], default=0.0)
    return request_interval * requests <= write_interval * writes
