"""`reconciler doctor`: measures the target before the tool trusts it, and writes the target profile.

Read-only by default, in about twenty requests (each check prints what it spent of its budget): sign-in
and refresh, the roles the runs need (by what the account can list and read), the page size served, how
each filter the reader relies on behaves (honoured or ignored, exact or substring, case), the date forms,
the server's clock, how it throttles if it does, and whether list records carry `SystemId`.

`--write-check` also writes, at most four times, to a lesson and member the user names (ideally a
sandbox course): it creates one completion with a doctor marker, reads it back from the list and by Id,
tries the same pair a second time, and undoes everything it made with the undo machinery of `apply`.
Every write is journaled like an apply's, so a killed check is undone with `reconciler undo JOURNAL`.

The findings go to `.reconciler/target-profile.json` (see profile.py), which `plan`, `apply` and
`export` then use against this target.
"""

from __future__ import annotations

import argparse
import io
import re
import statistics
import textwrap
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any, Literal, TextIO

import httpx

from reconciler import __version__
from reconciler.actions import Create, Ref, action_to_dict
from reconciler.apply import Executor
from reconciler.cache import (
    CHANGED_SINCE,
    CREATED_UNTIL,
    CREATED_UNTIL_KEY,
    IGNORED,
    MINUTE,
    RANGE_KEY,
    WHOLE_MINUTE,
    minute_text,
    probe_created_until,
)
from reconciler.client import PAGE_SIZE, AmbiguousWrite, NexudusClient, Page
from reconciler.config import Config, load_config
from reconciler.errors import (
    EXIT_BLOCKED,
    EXIT_ERROR,
    EXIT_OK,
    ApiError,
    AuthError,
    ReconcilerError,
    StopRun,
    TransportError,
    UsageError,
)
from reconciler.journal import Journal, new_apply_id, read_journal, write_budget
from reconciler.lock import LockHeld, target_lock
from reconciler.planning import write_document
from reconciler.profile import PROFILE_FORMAT, keep_other_profile, load_profile, profile_path
from reconciler.redact import excerpt, redact
from reconciler.schema_check import near_miss
from reconciler.spec import load_specs
from reconciler.state import COMPLETIONS, COURSES, COWORKERS, LESSONS, MEMBERS, Filter, StateReader
from reconciler.target import Target, connect
from reconciler.undo import CLOCK_SLACK, journal_history, plan_undo

READ_BUDGET = 30  # requests of a read-only run; the real service allows 120 a minute and 5,000 an hour
WRITE_BUDGET = 4
PROBE_SIZE = 10  # records asked of a filter probe: enough to see an ignored filter's strangers
MADE_UP_ID = 2_147_480_001  # an Id no record has (below the 32-bit limit a server may parse Ids with)
DOCTOR_MARKER = "reconciler-doctor:"  # never a spec's marker (reconciler:<name>), so no spec owns it
ENTITY = {COURSES: "Course", LESSONS: "CourseLesson", MEMBERS: "CourseMember", COWORKERS: "Coworker",
          COMPLETIONS: "CourseCompletedLesson"}
# The filters the reader and the executor rely on: (path, query name, the record field it filters).
FILTERS = ((LESSONS, "CourseLesson_Course", "CourseId"), (MEMBERS, "CourseMember_Course", "CourseId"),
           (MEMBERS, "CourseMember_Coworker", "CoworkerId"), (COWORKERS, "Coworker_Email", "Email"),
           (COMPLETIONS, "CourseCompletedLesson_CourseLesson", "CourseLessonId"),
           (COMPLETIONS, "CourseCompletedLesson_CourseMember", "CourseMemberId"),
           (COMPLETIONS, "CourseCompletedLesson_SystemId", "SystemId"))
WHAT_FOR = {"CourseLesson_Course": "the lessons of the courses a spec names",
            "CourseMember_Course": "the enrolments of the courses a spec names",
            "CourseMember_Coworker": "re-reading an enrolment whose answer was lost",
            "Coworker_Email": "members named by email",
            "CourseCompletedLesson_CourseLesson": "completions per lesson",
            "CourseCompletedLesson_CourseMember": "completions per member, and apply's re-reads",
            "CourseCompletedLesson_SystemId": "the records an owned spec made"}
Level = Literal["ok", "note", "limit", "fail", "skip"]
MARKS: dict[str, str] = {"ok": "ok", "note": "note", "limit": "LIMIT", "fail": "FAIL", "skip": "-"}
_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?")


@dataclass
class Finding:
    """One row of the table: a check, what was seen, what the tool will do about it, what it cost."""

    check: str
    level: Level
    seen: str
    action: str
    spent: int = 0
    budget: int = 0


class Aborted(Exception):
    """A check met an error after which nothing more can be measured (no sign-in, no server)."""

    def __init__(self, error: ReconcilerError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class Sandbox:
    """What `--write-check` writes to: a course (title or Id), one of its lessons, one enrolled member."""

    course: str | int
    lesson: str | int
    member: str | int  # an email, or the enrolment (CourseMember) Id


class Wire:
    """Every answer the client receives, seen through an httpx response hook: its `Date` against our clock,
    and any throttle answer (status, Retry-After, body). Token answers are never read."""

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self.wall_clock = wall_clock
        self.offsets: list[float] = []
        self.throttles: list[tuple[int, str | None, str]] = []

    def __call__(self, response: httpx.Response) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                when = parsedate_to_datetime(date)
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
                self.offsets.append(when.timestamp() - self.wall_clock())
        if response.status_code in (409, 429) and not response.url.path.rstrip("/").endswith("/api/token"):
            text = response.read().decode("utf-8", "replace")
            if response.status_code == 429 or '"WasSuccessful"' not in text:
                retry_after = response.headers.get("Retry-After")  # kept and shown: redacted as any server text
                self.throttles.append((response.status_code, redact(retry_after) if retry_after is not None else None,
                                       excerpt(text, 120)))

    @contextmanager
    def watching(self, http: httpx.Client) -> Iterator[Wire]:
        hooks = {name: list(found) for name, found in http.event_hooks.items()}
        http.event_hooks = {**hooks, "response": [*hooks.get("response", []), self]}
        try:
            yield self
        finally:
            http.event_hooks = hooks


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    profile: dict[str, Any] = field(default_factory=dict)
    aborted: ReconcilerError | None = None
    requests: int = 0
    writes: int = 0
    write_check_requests: int = 0
    throttled: int = 0  # requests answered "wait" (409/429), sent again: outside the budget
    journals: list[Path] = field(default_factory=list)

    @property
    def paused(self) -> StopRun | None:
        """The stop that ended the run, when it is one to wait out (the server asked for a long wait, the run was
        interrupted) and no check failed before it: nothing is known to be wrong, the checks are not finished."""
        stop = self.aborted
        if isinstance(stop, StopRun) and not any(f.level == "fail" for f in self.findings):
            return stop
        return None

    @property
    def exit_code(self) -> int:
        if self.paused is not None:
            return self.paused.exit_code  # (a long Retry-After: 3, as apply stops for it)
        if self.aborted is not None or any(f.level == "fail" for f in self.findings):
            return EXIT_ERROR
        return EXIT_BLOCKED if any(f.level == "limit" for f in self.findings) else EXIT_OK


class Doctor:
    """Runs the checks against one target, in order, through the target's client."""

    def __init__(self, target: Target, config: Config, *, wall_clock: Callable[[], float] = time.time) -> None:
        self.target = target
        self.client: NexudusClient = target.client
        self.config = config
        self.wall_clock = wall_clock
        self.report = Report()
        self.samples: dict[str, Page] = {}
        self.unreadable: dict[str, str] = {}  # path → why its list could not be read
        self.got: dict[str, dict[str, Any]] = {}  # a record of each collection read by Id
        self.roles: dict[str, str] = {}
        self.profile: dict[str, Any] = self.report.profile
        self.profile.update({
            "format": PROFILE_FORMAT, "target": target.description,
            "measured_at": datetime.fromtimestamp(wall_clock(), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "reconciler": __version__, "page_size": {}, "filters": {},
            "system_id": {"in_list_records": None, "kept_on_create": None, "write_check_at": None},
            "duplicates": None, "create_value": None, "dates": {}, "clock_offset_seconds": None,
            "throttling": None, "roles": self.roles})

    # --- running -----------------------------------------------------------------------------------

    def run(self, sandbox: Sandbox | None = None) -> Report:
        wire = Wire(self.wall_clock)
        start = self.client.stats.requests, self.client.stats.writes
        with wire.watching(self.client.http):
            try:
                self._sign_in()
                self._lists_and_reads()
                self._page_size()
                for path, name, field_name in FILTERS:
                    self._filter(path, name, field_name)
                self._range_and_counts()
                self._created_until()
                self._batch_get()
                self._dates()
                self._system_id_in_lists()
                if sandbox is not None:
                    before = self.client.stats.requests
                    try:
                        self._write_check(sandbox)
                    finally:
                        self.report.write_check_requests = self.client.stats.requests - before
                else:
                    self._write_check_not_run()
                self._unknowns_left()
            except Aborted as stopped:
                self.report.aborted = stopped.error
                level: Level = "note" if isinstance(stopped.error, StopRun) else "fail"  # (a wait: not a verdict)
                self.add("stopped", level, str(stopped.error), "nothing more could be measured; try again later"
                         if isinstance(stopped.error, TransportError | StopRun) else "fix the cause and run again")
            self._clock(wire)
            self._throttling(wire)
            self.report.throttled = len(wire.throttles)
        self.report.requests = self.client.stats.requests - start[0]
        self.report.writes = self.client.stats.writes - start[1]
        self.profile["requests"], self.profile["writes"] = self.report.requests, self.report.writes
        self.profile["findings"] = [{"check": f.check, "level": f.level, "seen": f.seen, "action": f.action}
                                    for f in self.report.findings]
        return self.report

    def add(self, check: str, level: Level, seen: str, action: str, spent: int = 0, budget: int = 0) -> Finding:
        finding = Finding(check, level, seen, action, spent, budget)
        self.report.findings.append(finding)
        return finding

    @contextmanager
    def _counted(self) -> Iterator[list[int]]:
        """The requests made inside the block, in a one-item list filled in when it ends."""
        before = self.client.stats.requests
        spent = [0]
        try:
            yield spent
        finally:
            spent[0] = self.client.stats.requests - before

    # --- sign-in -----------------------------------------------------------------------------------

    def _sign_in(self) -> None:
        credentials = self.target.credentials
        if self.config.is_local:
            self.add("sign-in", "ok", "none needed: the local emulator runs in this process", "nothing to renew")
            return
        if self.config.auth == "basic":
            self.add("sign-in", "ok", f"Basic auth as {credentials.username}, sent with every request (checked by "
                     "the reads below)", "nothing to renew")
            return
        if not (credentials.username and credentials.password):
            self.add("sign-in", "note", "a token from NEXUDUS_TOKEN: its lifetime is not known and it cannot be "
                     "refreshed", "stops with a clear error when the server no longer accepts it; set "
                     "NEXUDUS_USERNAME and NEXUDUS_PASSWORD for long applies")
            return
        with self._counted() as spent:
            try:
                lifetime = self.client.sign_in_now()
                refreshed = self.client.refresh_now()
            except (AuthError, TransportError, StopRun) as e:
                raise Aborted(e) from None
        how = "password grant" + (" with a two-factor code" if credentials.totp else "")
        life = f"the token lasts {_span(lifetime)}" if lifetime is not None else "the token's lifetime is not given"
        if refreshed:
            self.add("sign-in", "ok", f"{how}; {life}; a refresh with the client_id header works",
                     "keeps a long apply signed in by refresh, never replaying a two-factor code", spent[0], 2)
        elif credentials.totp:
            self.add("sign-in", "limit", f"{how}; {life}; the refresh with the client_id header was refused",
                     "a long apply stops when the token expires and asks for a fresh NEXUDUS_TOTP (resume with "
                     "--resume)", spent[0], 2)
        else:
            self.add("sign-in", "note", f"{how}; {life}; the refresh with the client_id header was refused",
                     "signs in again with the password when the token expires", spent[0], 2)

    # --- roles: what the account can list and read ----------------------------------------------------

    def _lists_and_reads(self) -> None:
        refused: list[str] = []
        broken: list[str] = []
        with self._counted() as spent:
            for path, entity in ENTITY.items():
                try:
                    self.samples[path] = self.client.page(path, size=PAGE_SIZE)
                    self.roles[f"{entity}-List"] = "yes"
                except AuthError:
                    self.roles[f"{entity}-List"] = "no"
                    refused.append(f"{entity}-List")
                    self.unreadable[path] = f"the account cannot list {entity}"
                except (TransportError, StopRun) as e:
                    raise Aborted(e) from None
                except ApiError as e:
                    broken.append(str(e))
                    self.unreadable[path] = f"its list answer cannot be believed ({type(e).__name__})"
            if refused and len(refused) == len(ENTITY) and not self.config.is_local:
                raise Aborted(AuthError("every list answered 401: the credentials were refused, or the account "
                                        "may list nothing"))
            for path in (COMPLETIONS, COWORKERS):
                self._read_one(path)
        checked = [f"{ENTITY[p]}-Read" for p in (COMPLETIONS, COWORKERS) if self.roles.get(f"{ENTITY[p]}-Read")]
        has = [name for name, state in self.roles.items() if state == "yes"]
        unread = [name for name in checked if self.roles[name] == "no"]
        seen = f"has {_names(has) or 'none'}"
        if refused or unread:
            seen += f"; lacks {_names(refused + unread)} (401)"
        seen += ("; not checked: CourseCompletedLesson-Create and -Delete (they take a write: --write-check), "
                 "CourseMember-Create (migrations with enroll: true)")
        if refused:
            self.add("roles", "fail", seen,
                     f"no plan can read its state: give the account {_names(refused)} (or full administrator "
                     "rights)", spent[0], 7)
        elif "CourseCompletedLesson-Read" in unread:
            self.add("roles", "limit", seen, "plan works; apply cannot read back what it writes: give the account "
                     "CourseCompletedLesson-Read", spent[0], 7)
        else:
            self.add("roles", "ok" if not unread else "note", seen, "nothing: the runs have what they read with"
                     + ("; a coworker named by Id who is not enrolled is reported as unreadable" if unread else ""),
                     spent[0], 7)
        for problem in broken:
            self.add("list answers", "fail", problem, "no run can trust this target's lists; nothing is written "
                     "on them")

    def _read_one(self, path: str) -> None:
        sample = self.samples.get(path)
        if sample is None or not sample.records:
            return
        record_id = sample.records[0]["Id"]
        if path == COWORKERS and MEMBERS in self.samples and self.samples[MEMBERS].records:
            record_id = self.samples[MEMBERS].records[-1].get("CoworkerId") or record_id  # an enrolled one
        name = f"{ENTITY[path]}-Read"
        try:
            found = self.client.get(path, int(record_id))
        except AuthError:
            self.roles[name] = "no"
            return
        except (TransportError, StopRun) as e:
            raise Aborted(e) from None
        except ApiError:
            return
        if found is not None:
            self.roles[name] = "yes"
            self.got[path] = found

    # --- page size ---------------------------------------------------------------------------------

    def _page_size(self) -> None:
        sizes = self.profile["page_size"]
        sizes["asked"] = PAGE_SIZE
        capped = []
        largest: tuple[int, str] = (0, "")
        for path, page in self.samples.items():
            total = _total(page)
            served = len(page.records)
            largest = max(largest, (total, path))
            if served < min(PAGE_SIZE, total):
                capped.append((served, path, total, page.body.get("CurrentPageSize")))
        if capped:
            served, path, total, reported = min(capped)
            honest = reported == served
            sizes.update({"cap": served, "served": served, "reported": reported, "table": path})
            envelope = "the envelope says so" if honest else \
                f"the envelope claims CurrentPageSize {reported!r}, not the {served} records it holds"
            self.add("page size", "note", f"asked 1,000 and was served {served:,} records ({ENTITY[path]}, "
                     f"{total:,} in all); {envelope}", f"asks pages of {served:,} from the first request, so its "
                     "request estimates hold; counts the records served, never the envelope's size", 0, 1)
            return
        total, path = largest
        if total > PAGE_SIZE:
            with self._counted() as spent:
                try:
                    bigger = self.client.page(path, size=2 * PAGE_SIZE)
                except (TransportError, StopRun) as e:
                    raise Aborted(e) from None
                except ApiError:
                    bigger = None
            more = f"; {len(bigger.records):,} at size=2,000" if bigger is not None else ""
            sizes.update({"cap": None, "served": PAGE_SIZE, "above": len(bigger.records) if bigger else None})
            self.add("page size", "ok", f"served 1,000 records at size=1,000 ({ENTITY[path]}, {total:,} in all)"
                     f"{more}", "asks 1,000 (the documented maximum; a larger page is never trusted) and learns a "
                     "smaller cap from any page that serves fewer", spent[0], 1)
            return
        sizes.update({"cap": None, "served": total})
        where = f" (the largest, {ENTITY[path]}, holds {total:,})" if path else ""
        self.add("page size", "ok", f"every table came whole in one page of size=1,000{where}: no cap met",
                 "asks 1,000 and learns a smaller cap from the first page that serves fewer "
                 "while more are promised", 0, 1)

    # --- filters -----------------------------------------------------------------------------------

    def _filter(self, path: str, name: str, field_name: str) -> None:
        check = f"filter {name}"
        key = f"{path}?{name.casefold()}"
        entry: dict[str, Any] = {"filter": name, "path": path, "state": "unknown"}
        self.profile["filters"][key] = entry
        budget = 3 if name == "Coworker_Email" else 1
        sample = self.samples.get(path)
        if sample is None:
            self.add(check, "skip", f"not checked: {self.unreadable.get(path, 'no sample')}", "-", 0, budget)
            return
        if _total(sample) == 0:
            self.add(check, "skip", f"not checked: no {ENTITY[path]} records to test it on",
                     "checks every record the filter returns, as always", 0, budget)
            return
        value, made_up = _probe_value(sample.records, field_name)
        with self._counted() as spent:
            try:
                state, seen = self._judge(path, sample, Filter(name, field_name, value), made_up)
                entry["state"] = state
                if name == "Coworker_Email" and state == "honoured" and isinstance(value, str):
                    match, case = self._email_kind(value, sample)
                    entry.update({"match": match, "case": case})
                    seen += f"; {match}, {'ignoring' if case == 'insensitive' else 'minding'} case" \
                        if case != "unknown" else f"; {match}"
            except Aborted:
                raise
            except ApiError as e:
                state, seen = "unknown", str(e)
                failed = True
            else:
                failed = False
        if failed:
            self.add(check, "fail", seen, "no run can trust this target's lists; nothing is written on them",
                     spent[0], budget)
            return
        uses = WHAT_FOR[name]
        if state == "ignored":
            action = (f"treats it as ignored from the first request: {uses} come from reading "
                      f"{ENTITY[path]} whole, or another filter that works")
            self.add(check, "note", f"ignored: {seen}", action, spent[0], budget)
        elif state == "honoured":
            action = f"uses it for {uses}, and still checks every record it returns"
            if entry.get("match") == "substring":
                action = f"uses it for {uses}, keeping only exact matches (it matches substrings)"
            if entry.get("case") == "sensitive":
                action += ("; an address the filter misses because of its case is looked for in the whole "
                           "coworker list")
            self.add(check, "ok", f"honoured: {seen}", action, spent[0], budget)
        else:
            self.add(check, "skip", f"cannot tell: {seen}", "checks every record the filter returns, as always",
                     spent[0], budget)

    def _range_and_counts(self) -> None:
        """Whether the read cache's incremental reads can work here: the range filter on UpdatedOn keeps what it
        should (a bound after every record finds none; one at the newest record's minute finds it and nothing
        older), and a `size=1` request counts as a whole page does (3 requests)."""
        check = f"filter {CHANGED_SINCE} and counts"
        entry: dict[str, Any] = {"filter": CHANGED_SINCE, "path": COMPLETIONS, "state": "unknown"}
        self.profile["filters"][RANGE_KEY] = entry
        self.profile["counts"] = {"state": "unknown"}
        sample = self.samples.get(COMPLETIONS)
        stamps = [at for r in (sample.records if sample else []) if (at := _instant(r.get("UpdatedOn")))]
        if sample is None or not stamps:
            self.add(check, "skip", "not checked: no completions to test them on",
                     "the first incremental read is checked against a full read", 0, 3)
            return
        newest = max(stamps)
        with self._counted() as spent:
            try:
                after = self.client.page(COMPLETIONS, {CHANGED_SINCE: minute_text(datetime.now(UTC).replace(
                    year=datetime.now(UTC).year + 1))}, size=1)
                # The minute before the newest record's: whether `from_X` takes in X:00:00 itself or not, it is in.
                since = newest.replace(second=0, microsecond=0) - MINUTE
                near = self.client.page(COMPLETIONS, {CHANGED_SINCE: minute_text(since)}, size=PROBE_SIZE)
                one = self.client.page(COMPLETIONS, size=1)
            except (TransportError, StopRun) as e:
                raise Aborted(e) from None
            except ApiError as e:
                self.add(check, "fail", str(e), "no run can trust this target's lists; nothing is written on them",
                         spent[0], 3)
                return
        older = [r for r in near.records if (_instant(r.get("UpdatedOn")) or since) < since]
        everything = _total(sample)
        if older or (_total(after) == everything and everything > 0):
            entry["state"] = "ignored"
        elif _total(after) == 0 and _total(near) >= 1:
            entry["state"] = "honoured"
        counts = "exact" if one.body.get("TotalItems") == sample.body.get("TotalItems") is not None else "unknown"
        self.profile["counts"]["state"] = counts
        seen = (f"{CHANGED_SINCE}: {entry['state']} (a bound after every record answered {_total(after):,}; one at "
                f"{minute_text(since)} answered {_total(near):,}, {len(older)} older); size=1 counts: {counts}")
        if entry["state"] == "honoured" and counts == "exact":
            self.add(check, "ok", seen, "reads through the cache ask only what changed since the last read, "
                     "checked by counts", spent[0], 3)
        else:
            self.add(check, "note", seen, "reads through the cache fall back to full reads", spent[0], 3)

    def _created_until(self) -> None:
        """What `to_…CreatedOn=HH:mm` counts: the whole minute, or what was made before HH:mm:00 (the API does not
        say). The read cache's counts by lesson take it as measured here, or measure it themselves (2 requests as a
        rule: `cache.probe_created_until`, on the newest completions of the sample)."""
        check = f"filter {CREATED_UNTIL}"
        budget = 8
        sample = self.samples.get(COMPLETIONS)
        if sample is None or not sample.records:
            self.add(check, "skip", "not checked: no completions to test it on", "the read cache measures it on the "
                     "completions it holds before it counts by it", 0, budget)
            return
        newest = sorted(sample.records, key=lambda r: (_instant(r.get("CreatedOn")) or datetime.min.replace(
            tzinfo=UTC), r.get("Id") or 0), reverse=True)
        with self._counted() as spent:
            try:
                bound, seen = probe_created_until(self.client, newest)
            except (TransportError, StopRun) as e:
                raise Aborted(e) from None
            except ApiError as e:
                bound, seen = None, str(e)
        if bound is None:
            self.add(check, "skip", f"cannot tell what it counts: {seen}", "the read cache measures it on the "
                     "completions it holds before it counts by it", spent[0], budget)
            return
        entry: dict[str, Any] = {"filter": CREATED_UNTIL, "path": COMPLETIONS,
                                 "state": "ignored" if bound == IGNORED else "honoured"}
        if bound != IGNORED:
            entry["bound"] = bound
        self.profile["filters"][CREATED_UNTIL_KEY] = entry
        if bound == IGNORED:
            self.add(check, "note", f"ignored: {seen}", "reads through the cache fall back to full reads", spent[0],
                     budget)
            return
        meaning = "the whole minute it names" if bound == WHOLE_MINUTE else "what was made before the minute it names"
        self.add(check, "ok", f"counts {meaning}: {seen}", "the read cache counts by lesson accordingly", spent[0],
                 budget)

    def _probe(self, path: str, name: str, value: Any) -> Page:
        try:
            return self.client.page(path, {name: value}, size=PROBE_SIZE)
        except (TransportError, StopRun) as e:
            raise Aborted(e) from None

    def _judge(self, path: str, sample: Page, wanted: Filter, made_up: bool) -> tuple[str, str]:
        """honoured | ignored | unknown, and what was seen, from one filtered request against the sample."""
        everything = _total(sample)
        probe = self._probe(path, wanted.name, wanted.value)
        got = _total(probe)
        strangers = [r for r in probe.records if wanted.contradicted_by(r)]
        shown = repr(wanted.value) if not made_up else f"{wanted.value!r} (no record has it)"
        if strangers:
            return "ignored", (f"{wanted.name}={shown} answered {got:,} of {everything:,} records, among them "
                               f"{wanted.field} = {strangers[0].get(wanted.field)!r}")
        if made_up:
            if got == 0:
                return "honoured", f"{wanted.name}={shown} found none of {everything:,}"
            return "unknown", f"{wanted.name}={shown} answered {got:,} records"
        if got < everything:
            return "honoured", f"{wanted.name}={shown} answered {got:,} of {everything:,}, each matching"
        return "unknown", f"every record has {wanted.field} = {wanted.value!r}"

    def _email_kind(self, email: str, sample: Page) -> tuple[str, str]:
        """(exact | substring, insensitive | sensitive | unknown) of an honoured Coworker_Email."""
        known = {str(r.get("Email") or "").casefold() for r in sample.records}
        part = email[1:]
        while part and part.casefold() in known:
            part = part[1:]
        match = "exact"
        if part:
            found = self._probe(COWORKERS, "Coworker_Email", part)
            if _total(found) > 0 or found.records:
                match = "substring"
        other = email.swapcase()
        if other == email:
            return match, "unknown"
        found = self._probe(COWORKERS, "Coworker_Email", other)
        same = [r for r in found.records if str(r.get("Email") or "").casefold() == email.casefold()]
        return match, "insensitive" if same else "sensitive"

    # --- batch get, dates, SystemId in lists -------------------------------------------------------------

    def _batch_get(self) -> None:
        sample = self.samples.get(COMPLETIONS)
        if sample is None or len(sample.records) < 2:
            self.add("batch get by Id", "skip", "not checked: fewer than two completions",
                     "apply asks ?id=[…] and looks up one by one whatever the answer leaves out", 0, 1)
            return
        ids = sorted(r["Id"] for r in sample.records[:2])
        with self._counted() as spent:
            try:
                reply = self.client.request("GET", COMPLETIONS, params={"id": f"[{ids[0]},{ids[1]}]"})
                body: Any = reply.json()
            except (TransportError, StopRun) as e:
                raise Aborted(e) from None
            except (ApiError, ValueError):
                body = None
        if isinstance(body, list) and sorted(r.get("Id") or 0 for r in body if isinstance(r, dict)) == ids:
            self.add("batch get by Id", "ok", f"?id=[{ids[0]},{ids[1]}] answered exactly those two records",
                     "apply re-reads the records it deletes in batches of 100", spent[0], 1)
        else:
            self.add("batch get by Id", "note", "?id=[…] did not answer a list of just those records",
                     "apply keeps only the records it asked for and looks the others up one by one", spent[0], 1)

    def _dates(self) -> None:
        listed = [r.get(name) for page in self.samples.values() for r in page.records[:50]
                  for name in ("CreatedOn", "UpdatedOn")]
        got = [r.get(name) for r in self.got.values() for name in ("CreatedOn", "UpdatedOn")]
        forms = {"lists": _date_forms(listed), "get": _date_forms(got)}
        self.profile["dates"] = {k: v for k, v in forms.items() if v is not None}
        bad = [str(s) for s in [*listed, *got] if s is not None and _STAMP.fullmatch(str(s).strip()) is None]
        if bad:
            self.add("dates", "fail", f"unreadable dates, such as {bad[0]!r}", "cannot tell a record that changed "
                     "from one that did not, nor the oldest of duplicates: nothing can be planned safely")
            return
        if forms["lists"] is None and forms["get"] is None:
            self.add("dates", "skip", "not checked: no records", "compares dates as instants, never as strings")
            return
        seen = "; ".join(f"{where}: {form}" for where, form in (("lists", forms["lists"]),
                                                                ("get-by-id", forms["get"])) if form)
        zoneless = "no time zone" in seen
        self.add("dates", "note" if zoneless else "ok", seen, "compares dates as instants, never as strings; a list's "
                 "whole second matches a get's fraction" + ("; dates without a zone are read as UTC" if zoneless
                                                             else ""))

    def _system_id_in_lists(self) -> None:
        sample = self.samples.get(COMPLETIONS)
        ids = self.profile["system_id"]
        if sample is None or not sample.records:
            self.add("SystemId in lists", "skip", "not checked: no completions to look at",
                     "--write-check settles it with a record of its own")
            return
        records = sample.records
        if any("SystemId" not in r for r in records):
            ids["in_list_records"] = False
            self.add("SystemId in lists", "limit", "completion list records have no SystemId",
                     "owned mode cannot find its records: plan and apply refuse owned specs (additive and "
                     "authoritative work)")
            return
        if all(r.get("SystemId") is None for r in records):
            # A field that is always empty may be the records' (made in the portal) or the lists' (a value they
            # do not show): only a record of our own, read back (--write-check), tells.
            self.add("SystemId in lists", "note", f"completion list records have a SystemId field, but it is empty "
                     f"in all {len(records):,} read", "whether lists show a SystemId that was set: --write-check "
                     "settles it with a record of its own")
            return
        ids["in_list_records"] = True
        ours = [r for r in records if str(r.get("SystemId") or "").startswith("reconciler:")]
        if ours:
            ids["kept_on_create"] = True
            self.add("SystemId in lists", "ok", f"completion list records carry SystemId; {len(ours):,} of "
                     f"{len(records):,} read carry a reconciler marker, so creates keep it",
                     "owned mode finds its records by their marker in list reads")
        else:
            self.add("SystemId in lists", "ok", "completion list records carry SystemId",
                     "owned mode finds its records by their marker in list reads (whether a create keeps it: "
                     "--write-check)")

    # --- clock and throttling (from every answer of the run) ---------------------------------------------

    def _clock(self, wire: Wire) -> None:
        if not wire.offsets:
            self.add("clock", "skip", "no Date header in the answers", "allows 120 s between the clocks when "
                     "undo looks for the create in flight of a killed apply")
            return
        offset = statistics.median(wire.offsets) + 0.5  # a Date header is cut to the whole second
        self.profile["clock_offset_seconds"] = round(offset, 1)
        way = "ahead of" if offset > 0 else "behind"
        seen = f"the server's Date is {abs(offset):,.0f} s {way} this machine's clock ({len(wire.offsets)} answers)"
        if abs(offset) < 1.5:
            seen = f"the server's Date agrees with this machine's clock, to the second ({len(wire.offsets)} answers)"
        slack = CLOCK_SLACK.total_seconds()
        if abs(offset) > slack:
            self.add("clock", "limit", seen, f"undo of an apply killed mid-create allows {slack:.0f} s between the "
                     "clocks and may miss that create: set this machine's clock (NTP), or tell the space if its "
                     "server's is off")
        elif abs(offset) > 5:
            self.add("clock", "note", seen, f"within the {slack:.0f} s undo allows; dates are the server's")
        else:
            self.add("clock", "ok", seen, "nothing")

    def _throttling(self, wire: Wire) -> None:
        if not wire.throttles:
            self.profile["throttling"] = None
            self.add("throttling", "ok", "not throttled during the checks (not provoked: requests were paced)",
                     "paces every run inside the configured limits")
            return
        status, retry_after, body = wire.throttles[0]
        self.profile["throttling"] = {"status": status, "retry_after": retry_after, "body": body,
                                      "count": len(wire.throttles)}
        header = f"Retry-After: {retry_after}" if retry_after else "no Retry-After"
        text = f"body {body.strip()!r}" if body.strip() else "an empty body"
        self.add("throttling", "note", f"throttled {len(wire.throttles)} time(s): {status}, {header}, {text}",
                 "waits as asked (Retry-After, else the body's 'Wait N seconds', else 1 s); stops cleanly "
                 "(resumable) when asked to wait longer than --max-wait")

    # --- what no read-only check can tell ---------------------------------------------------------------

    def _write_check_not_run(self) -> None:
        earlier = load_profile(self.config.state_dir, self.target.description)  # this target's, if it has one
        ids = self.profile["system_id"]
        if earlier is not None:
            old = earlier.document.get("system_id") or {}
            if isinstance(old, dict) and old.get("write_check_at"):
                # What a write check measured stays true until another one says otherwise.
                ids["kept_on_create"] = old.get("kept_on_create")
                ids["write_check_at"] = old.get("write_check_at")
                if ids.get("in_list_records") is None and old.get("in_list_records") is False:
                    ids["in_list_records"] = False  # its own record, read back: what lists showing null hide
                self.profile["duplicates"] = earlier.document.get("duplicates")
                self.profile["create_value"] = earlier.document.get("create_value")
            elif isinstance(old, dict) and old.get("seen_by_apply_at"):
                # What an apply saw its own creates do (`profile.record_ownership_lost`) stays too.
                ids["seen_by_apply_at"] = old.get("seen_by_apply_at")
                if old.get("kept_on_create") is False:
                    ids["kept_on_create"] = False
                if old.get("in_list_records") is False and ids.get("in_list_records") is None:
                    ids["in_list_records"] = False
        when, seen = ids.get("write_check_at"), ids.get("seen_by_apply_at")
        if not when and seen and (ids.get("kept_on_create") is False or ids.get("in_list_records") is False):
            what = "dropped on create" if ids.get("kept_on_create") is False else "not shown in list records"
            self.add("SystemId on create", "limit", f"{what} (seen by an apply at {seen})", "owned mode cannot "
                     "work: plan and apply refuse owned specs (`doctor --write-check` measures it anew)")
        elif when and ids.get("kept_on_create") is False:
            self.add("SystemId on create", "limit", f"dropped (--write-check of {when})", "owned mode cannot work: "
                     "plan and apply refuse owned specs (additive and authoritative work)")
        elif when and ids.get("in_list_records") is False:
            self.add("SystemId on create", "limit", f"kept, but not shown in list records (--write-check of {when})",
                     "owned mode cannot find its records in list reads: plan and apply refuse owned specs")
        elif when:
            self.add("SystemId on create", "ok", f"kept (--write-check of {when})", "owned mode works")
        elif ids.get("kept_on_create"):
            pass  # the SystemId row said so: reconciler's own records carry their markers
        else:
            self.add("SystemId on create", "skip", "not checked: it takes a write (--write-check)",
                     "apply reads its first create back and, if SystemId was dropped, skips every delete that relies "
                     "on ownership")
        duplicates = self.profile.get("duplicates")
        self.add("duplicate pair", "note" if duplicates == "accepted" else "ok" if duplicates else "skip",
                 f"{duplicates} (--write-check of {when})" if duplicates else
                 "not checked: it takes writes (--write-check)", "never relies on a refusal: a create whose "
                 "answer was lost is re-read before it is sent again")

    def _unknowns_left(self) -> None:
        self.add("stale reference", "skip", "not checked: it would take a write naming a missing record",
                 "a 400 or 401 on one write is that write's failure, reported; the run goes on")
        self.add("enrolment delete", "skip", "not checked: doctor writes no enrolments",
                 "reconciler never deletes enrolments")

    # --- the write check ---------------------------------------------------------------------------------

    def _write_check(self, sandbox: Sandbox) -> None:
        started = self.client.stats.requests
        # A sandbox that names nothing usable is the operator's to fix, not a finding about the target: a UsageError,
        # before anything is written (nor the profile, which keeps what an earlier write check measured).
        try:
            course, lesson, member = self._resolve(sandbox)
        except (TransportError, StopRun) as e:
            raise Aborted(e) from None
        except UsageError as e:
            raise UsageError(f"--write-check: {e}; nothing was written: name a course, one of its lessons and an "
                             "enrolled member who has not completed it") from None
        except ApiError as e:
            self.add("write check", "fail", f"not run: {e}", "nothing was written; name a course, one of its lessons "
                     "and an enrolled member who has not completed it", self.client.stats.requests - started)
            return
        description = f"{lesson.name} for {member.name} in {course.name}"
        if self.pair(member.id or 0, lesson.id or 0):
            raise UsageError(f"--write-check: {member.name} has already completed {lesson.name}; nothing was written: "
                             "the check never touches a real completion; name a lesson the member has not completed "
                             "(ideally in a sandbox course)")
        state_dir = self.config.state_dir
        self.client.pacer.note_past_writes(write_budget(state_dir / "journal", self.target.description).ages)
        try:
            with target_lock(state_dir, self.target.description, "reconciler doctor --write-check"):
                WriteCheck(self, course, lesson, member, description).run(started)
        except LockHeld as e:
            self.add("write check", "fail", f"not run: {e}", "nothing was written; run it when the apply is done")

    def _resolve(self, sandbox: Sandbox) -> tuple[Ref, Ref, Ref]:
        reader = StateReader(self.client)
        courses = reader.table(COURSES)
        if isinstance(sandbox.course, int):
            chosen = [c for c in courses if c["Id"] == sandbox.course]
        else:
            chosen = [c for c in courses if str(c.get("Title") or "").strip() == sandbox.course.strip()]
        if not chosen:
            titles = [str(c.get("Title") or "") for c in courses]
            hint = near_miss(sandbox.course, titles) if isinstance(sandbox.course, str) else ""
            raise UsageError(f"no course {sandbox.course!r}{hint}")
        if len(chosen) > 1:
            raise UsageError(f"{len(chosen)} courses are titled {sandbox.course!r}: name it by Id (--course-id)")
        course = Ref(chosen[0]["Id"], str(chosen[0].get("Title") or ""))
        lessons = reader.select(LESSONS, Filter("CourseLesson_Course", "CourseId", course.id or 0))
        if isinstance(sandbox.lesson, int):
            hits = [x for x in lessons if x["Id"] == sandbox.lesson]
        else:
            hits = [x for x in lessons if str(x.get("Title") or "").strip() == sandbox.lesson.strip()]
        if len(hits) != 1:
            titles = [str(x.get("Title") or "") for x in lessons]
            hint = near_miss(sandbox.lesson, titles) if isinstance(sandbox.lesson, str) else ""
            raise UsageError(f"{course.name} has {'no' if not hits else len(hits)} lesson(s) {sandbox.lesson!r}"
                             f"{hint}" + (": name it by Id (--lesson-id)" if hits else ""))
        lesson = Ref(hits[0]["Id"], str(hits[0].get("Title") or ""))
        members = reader.select(MEMBERS, Filter("CourseMember_Course", "CourseId", course.id or 0))
        if isinstance(sandbox.member, int):
            enrolled = [m for m in members if m["Id"] == sandbox.member]
        else:
            people = {c["Id"] for c in reader.select(COWORKERS, Filter("Coworker_Email", "Email", sandbox.member))}
            enrolled = [m for m in members if m.get("CoworkerId") in people]
        if len(enrolled) != 1:
            why = "is not enrolled in" if not enrolled else f"matches {len(enrolled)} enrolments of"
            raise UsageError(f"{sandbox.member!r} {why} {course.name}" + ("" if not enrolled else
                                                                          ": name it by --member-id"))
        found = enrolled[0]
        member = Ref(found["Id"], str(found.get("CoworkerFullName") or sandbox.member))
        return course, lesson, member

    def pair(self, member: int, lesson: int) -> list[dict[str, Any]]:
        """The completions of this member and lesson now, by a fresh verified read."""
        try:
            records = StateReader(self.client).select(
                COMPLETIONS, Filter("CourseCompletedLesson_CourseMember", "CourseMemberId", member))
        except ApiError as e:  # nothing may be written, or judged undone, on a read that failed
            raise Aborted(e) from None
        return [r for r in records if r.get("CourseLessonId") == lesson]


class WriteCheck:
    """At most four writes: create, the same pair again, and the undo of whatever they made."""

    def __init__(self, doctor: Doctor, course: Ref, lesson: Ref, member: Ref, description: str) -> None:
        self.doctor = doctor
        self.client = doctor.client
        self.course, self.lesson, self.member = course, lesson, member
        self.description = description
        self.apply_id = new_apply_id()
        folder = doctor.config.state_dir / "journal"
        self.journal_path = folder / f"{self.apply_id}.jsonl"
        self.markers = (f"{DOCTOR_MARKER}{self.apply_id}", f"{DOCTOR_MARKER}{self.apply_id}:again")

    def _create_action(self, marker: str) -> Create:
        return Create(self.course, self.member, self.lesson, "doctor", "declared", None,
                      note="reconciler doctor --write-check: undone at once", system_id=marker)

    def run(self, before: int) -> None:
        """`before`: the client's request count when the write check began (its reads count with the create)."""
        creates = [self._create_action(m) for m in self.markers]
        made: list[int] = []
        try:
            self._creates(creates, made, before)
        finally:
            self._undo(made)

    def _creates(self, creates: list[Create], made: list[int], before: int) -> None:
        doctor = self.doctor
        roles = doctor.roles
        with Journal(self.journal_path) as journal:
            journal.write({"type": "start", "apply_id": self.apply_id, "target": doctor.target.description,
                           "spec_digest": "", "undo_of": None, "command": "reconciler doctor --write-check",
                           "actions": [action_to_dict(a) for a in creates]})
            doctor.report.journals.append(self.journal_path)
            first, value, refusal = self._send(journal, 0, creates[0], made)
            if first is None:
                roles["CourseCompletedLesson-Create"] = "no" if "401" in (refusal or "") else roles.get(
                    "CourseCompletedLesson-Create", "not checked")
                doctor.add("write check: create", "fail", f"{self.description}: refused ({refusal})",
                           "apply cannot create completions here: check the CourseCompletedLesson-Create role and "
                           "that the member and lesson still exist", self.client.stats.requests - before,
                           WRITE_BUDGET)
            else:
                made.append(first)
                roles["CourseCompletedLesson-Create"] = "yes"
                shape = "the whole record" if isinstance(value, dict) and set(value) - {"Id"} else "only the Id"
                doctor.profile["create_value"] = "record" if shape == "the whole record" else "id"
                doctor.add("write check: create", "ok", f"created #{first}: {self.description}; Value holds "
                           f"{shape}", "reads Value's Id and nothing else it cannot do without",
                           self.client.stats.requests - before)
                self._read_back(first, value)
                second, _, refusal = self._send(journal, 1, creates[1], made)
                if second is not None:
                    made.append(second)
                    doctor.profile["duplicates"] = "accepted"
                    doctor.add("duplicate pair", "note", f"accepted: the same pair created again made #{second}",
                               "never relies on a refusal: a create whose answer was lost is re-read before it is "
                               "sent again, and duplicates found are cleaned up as the mode allows")
                else:
                    doctor.profile["duplicates"] = "refused"
                    doctor.add("duplicate pair", "ok", f"refused: {refusal}", "takes the same care anyway: a "
                               "create whose answer was lost is re-read before it is sent again")
            journal.write({"type": "end", "summary": {"created": len(made)}})

    def _send(self, journal: Journal, seq: int, action: Create,
              made: list[int]) -> tuple[int | None, Any, str | None]:
        """One create, journaled: (new Id, Value, None), or (None, None, why it was refused). A lost answer is
        looked for among the pair's records (not those `made` already), as apply does, never sent again."""
        at = datetime.now(UTC).isoformat()
        journal.write({"type": "intent", "seq": seq, "attempt": 1, "at": at, "action": action_to_dict(action)})
        body = {"CourseLessonId": self.lesson.id, "CourseMemberId": self.member.id, "SystemId": action.system_id}
        outcome: dict[str, Any] = {"type": "outcome", "seq": seq}
        try:
            reply = self.client.request("POST", COMPLETIONS, body=body, retry_unsafe=False)
            answer = reply.json()
            value = answer.get("Value") if isinstance(answer, dict) else None
            new_id = value.get("Id") if isinstance(value, dict) else None
            if not isinstance(new_id, int):  # said done without what it made: looked for, as `client.create` does
                raise AmbiguousWrite(f"POST {COMPLETIONS} succeeded without a new Id in Value: the record may have "
                                     "been made", method="POST", url=COMPLETIONS)
        except AmbiguousWrite as e:
            found = [r for r in self.doctor.pair(self.member.id or 0, self.lesson.id or 0)
                     if r.get("SystemId") in (action.system_id, None) and r["Id"] not in made]
            new_id, value = (found[-1]["Id"], None) if found else (None, None)
            outcome.update({"status": "created" if new_id else "failed", "message": f"{e}; re-read"})
        except (StopRun, TransportError) as e:
            journal.write({**outcome, "status": "failed", "message": str(e), "at": datetime.now(UTC).isoformat()})
            raise Aborted(e) from None
        except (ApiError, ValueError) as e:
            journal.write({**outcome, "status": "failed", "message": str(e), "at": datetime.now(UTC).isoformat()})
            return None, None, str(e)
        else:
            outcome["status"] = "created"
        if new_id is not None:
            outcome["id"] = new_id
        journal.write({**outcome, "at": datetime.now(UTC).isoformat()})
        return new_id, value, None if new_id else "no answer, and not found on re-read"

    def _read_back(self, new_id: int, value: Any) -> None:
        doctor = self.doctor
        ids = doctor.profile["system_id"]
        marker = self.markers[0]
        listed = next((r for r in doctor.pair(self.member.id or 0, self.lesson.id or 0) if r["Id"] == new_id), None)
        try:
            got = self.client.get(COMPLETIONS, new_id)
            doctor.roles["CourseCompletedLesson-Read"] = "yes"
        except AuthError:
            got = None
            doctor.roles["CourseCompletedLesson-Read"] = "no"
        except (TransportError, StopRun) as e:
            raise Aborted(e) from None
        except ApiError:  # not a record (a maintenance page): the read-back says nothing
            got = None
        in_list = listed is not None and listed.get("SystemId") == marker  # as owned mode reads it: in a list
        kept = any(isinstance(r, dict) and r.get("SystemId") == marker for r in (listed, got, value))
        ids["kept_on_create"] = kept
        ids["write_check_at"] = doctor.profile["measured_at"]
        if listed is not None:
            ids["in_list_records"] = in_list
        where = " and ".join(name for name, r in (("the list", listed), ("get-by-id", got))
                             if isinstance(r, dict) and r.get("SystemId") == marker)
        if not kept:
            shown = (got or listed or {}).get("SystemId")
            doctor.add("SystemId on create", "limit", f"dropped: #{new_id} reads back with SystemId {shown!r}, "
                       f"not {marker!r}", "owned mode cannot work: plan and apply refuse owned specs (additive "
                       "and authoritative work)")
        elif not in_list:
            shown = "leave it out" if listed is None or "SystemId" not in listed else \
                f"show it as {listed['SystemId']!r}"
            doctor.add("SystemId on create", "limit", f"kept ({where}), but list records {shown}",
                       "owned mode cannot find its records in list reads: plan and apply refuse owned specs")
        else:
            doctor.add("SystemId on create", "ok", f"kept: {where} show the marker the create sent",
                       "owned mode works")

    def _undo(self, made: list[int]) -> None:
        """The undo of the check's journal, planned and applied as `reconciler undo` would, then verified."""
        doctor = self.doctor
        try:
            self._undo_and_verify(made)
        except Aborted as e:
            doctor.add("write check: undo", "fail", f"not done: {e}", f"undo it once the server answers: "
                       f"reconciler undo {self.journal_path} --out undo.json && reconciler apply --plan undo.json")
            raise

    def _undo_and_verify(self, made: list[int]) -> None:
        doctor = self.doctor
        state = read_journal(self.journal_path)
        history = journal_history(state)
        before = self.client.stats.requests
        live = doctor.pair(self.member.id or 0, self.lesson.id or 0)
        undo = plan_undo(history, live, str(self.journal_path))
        if undo.actions:
            undo_id = new_apply_id()
            path = self.journal_path.parent / f"{undo_id}.jsonl"
            with Journal(path) as journal:
                journal.write({"type": "start", "apply_id": undo_id, "target": doctor.target.description,
                               "spec_digest": "", "undo_of": self.apply_id,
                               "command": "reconciler doctor --write-check",
                               "actions": [action_to_dict(a) for a in undo.actions]})
                doctor.report.journals.append(path)
                result = Executor(self.client, journal, progress_out=io.StringIO()).run(list(enumerate(undo.actions)))
                if not result.stopped:
                    journal.write({"type": "end", "summary": dict(result.counts)})
            if result.counts.get("deleted"):
                doctor.roles["CourseCompletedLesson-Delete"] = "yes"
            elif any("401" in why for _, why in result.failed):
                doctor.roles["CourseCompletedLesson-Delete"] = "no"
        left = [r["Id"] for r in doctor.pair(self.member.id or 0, self.lesson.id or 0)]
        spent = self.client.stats.requests - before
        if left:
            doctor.add("write check: undo", "fail", f"still there: {', '.join(f'#{i}' for i in left)}",
                       f"undo it: reconciler undo {self.journal_path} --out undo.json && reconciler apply --plan "
                       "undo.json; apply cannot delete here: check the CourseCompletedLesson-Delete role", spent)
        elif made:
            doctor.add("write check: undo", "ok", f"deleted {', '.join(f'#{i}' for i in made)}; journals in "
                       f"{self.journal_path.parent}", "nothing left behind", spent)


# --- helpers -------------------------------------------------------------------------------------------

def _instant(stamp: Any) -> datetime | None:
    from reconciler.timestamps import timestamp_instant

    return timestamp_instant(stamp)


def _total(page: Page) -> int:
    value = page.body.get("TotalItems")
    return value if isinstance(value, int) and not isinstance(value, bool) else len(page.records)


def _probe_value(records: list[dict[str, Any]], field_name: str) -> tuple[int | str, bool]:
    """A value of `field_name` to filter by that the first record does not have (so that an ignored filter
    shows at once), the rarest of the sample; or one no record has (made up) when every record agrees."""
    first = records[0].get(field_name) if records else None
    values = Counter(v for r in records if (v := r.get(field_name)) not in (None, "") and v != first
                     and isinstance(v, int | str) and not isinstance(v, bool))
    if values:
        return min(values, key=lambda v: (values[v], str(v))), False
    if field_name in ("SystemId", "Email"):
        return f"{DOCTOR_MARKER}no-such-value", True
    return MADE_UP_ID, True


def _date_forms(stamps: list[Any]) -> str | None:
    digits = 0
    zones: set[str] = set()
    seen = False
    for stamp in stamps:
        found = _STAMP.fullmatch(stamp.strip()) if isinstance(stamp, str) else None
        if found is None:
            continue
        seen = True
        digits = max(digits, len(found.group(1) or ""))
        zone = found.group(2)
        zones.add("UTC (Z)" if zone == "Z" else f"offset {zone}" if zone else "no time zone")
    if not seen:
        return None
    precision = f"up to {digits} fractional digits" if digits else "whole seconds"
    return f"{precision}, {', '.join(sorted(zones))}"


def _span(seconds: float) -> str:
    if seconds >= 86400 * 2:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 7200:
        return f"{seconds / 3600:.0f} hours"
    return f"{seconds / 60:.0f} minutes"


def _writes(report: Report) -> str:
    """The writes the journals announce, and the requests beyond them: a delete whose answer was lost is sent
    again (and answered 404); a create never is."""
    intents = sum(1 for path in report.journals for line in path.read_text(encoding="utf-8").splitlines()
                  if '"type":"intent"' in line)
    again = report.writes - intents
    return f"{intents} (at most {WRITE_BUDGET}, all undone)" + (
        f"; {_count(again, 'request')} sent again after a lost answer" if again > 0 else "")


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _names(roles: list[str]) -> str:
    return ", ".join(roles)


# --- the command -----------------------------------------------------------------------------------------

def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="spec files or folders, to name the specs a limit affects (default: here)")
    parser.add_argument("--write-check", action="store_true",
                        help=f"also create one completion, read it back, try its pair again, and undo it all (at "
                             f"most {WRITE_BUDGET} writes, journaled); needs a course, lesson and member")
    for name, what in (("course", "title"), ("lesson", "title"), ("member", "email")):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(f"--{name}", metavar=what.upper(), help=f"--write-check: the {name} by {what}")
        group.add_argument(f"--{name}-id", type=int, metavar="N",
                           help=f"--write-check: the {name} by Id" + (" (its enrolment Id)" if name == "member"
                                                                      else ""))


def sandbox_from(flags: Mapping[str, str | int | None], config: Config) -> Sandbox:
    """The lesson and member `--write-check` writes to: flags first (`course`, `course_id`, `lesson`,
    `lesson_id`, `member`, `member_id`), then reconciler.yaml's `doctor:`."""
    saved: Mapping[str, Any] = config.doctor or {}
    picked: dict[str, str | int] = {}
    for name, by_id in (("course", "id"), ("lesson", "id"), ("member", "course_member_id")):
        flag, flag_id = flags.get(name), flags.get(f"{name}_id")
        if flag_id is not None:
            picked[name] = int(flag_id)
        elif flag:
            picked[name] = str(flag)
        elif name in saved:
            value = saved[name]
            picked[name] = int(value[by_id]) if isinstance(value, dict) else str(value)
    missing = [name for name in ("course", "lesson", "member") if name not in picked]
    if missing:
        raise UsageError("--write-check needs a course, a lesson of it and an enrolled member who has not completed "
                         f"it (missing: {', '.join(missing)}): --course C --lesson L --member EMAIL, or `doctor: "
                         "{course: C, lesson: L, member: EMAIL}` in reconciler.yaml; ideally a sandbox course")
    return Sandbox(picked["course"], picked["lesson"], picked["member"])


def run_doctor(paths: list[Path], *, config_file: Path | None, api: str | None, out: TextIO,
               write_check: bool = False, sandbox_flags: Mapping[str, str | int | None] | None = None,
               quiet: bool = False) -> int:
    """Measure the target, print the table and the verdict to `out`, write the profile; the exit code. `quiet`
    (-q): the target, the profile written and the verdict only."""
    config = load_config(config_flag=config_file, api_flag=api, paths=paths)
    sandbox = sandbox_from(sandbox_flags or {}, config) if write_check else None
    with connect(config, profile=False) as target:
        report = Doctor(target, config).run(sandbox)
        description = target.description
    mode = f"doctor --write-check: at most {WRITE_BUDGET} writes, all undone" if sandbox else "doctor: read-only"
    print(f"Target: {description} ({mode})" + ("" if quiet else "\n"), file=out)
    if not quiet:
        write_table(report.findings, out)
    checks = report.requests - report.write_check_requests
    line = f"\nRequests: {report.requests}"
    if sandbox:
        line += f" ({checks} for the read-only checks, budget {READ_BUDGET}; {report.write_check_requests} for the " \
                f"write check); writes: {_writes(report)}"
    else:
        line += f" (budget {READ_BUDGET}); writes: {report.writes}"
    if report.throttled:
        line += (f"; {report.throttled} of the requests were answered 'wait' (throttled) and sent again, outside "
                 "the budget")
    if not quiet:
        print(line, file=out)
    for path in report.journals:
        print(f"Journal: {path}", file=out)
    if report.aborted is None:
        path = profile_path(config.state_dir)
        keep_other_profile(config.state_dir, description)
        write_document(report.profile, path)
        print(f"Profile: {path}: plan, apply and export against {description} use it", file=out)
    code = report.exit_code
    print(_verdict(report, code, _owned_specs(paths, config)), file=out)
    return code


def _owned_specs(paths: list[Path], config: Config) -> list[str]:
    """`file (name)` of each spec in owned mode under PATH, for the verdict; none if the specs do not load."""
    try:
        specs = load_specs(paths or [Path(".")], exclude=[config.seed] if config.seed else [],
                           require_any=False)
    except ReconcilerError:
        return []
    return [f"{spec.origin.path} ({spec.name})" for spec in specs.completions if spec.mode == "owned"]


def _verdict(report: Report, code: int, owned: list[str]) -> str:
    if report.paused is not None:
        return (f"Result: not measured in full: {report.paused}; nothing the checks saw so far rules the tool out. "
                "Run `reconciler doctor` again later (no profile was written).")
    if code == EXIT_ERROR:
        reasons = [f"{f.check}: {f.seen}" for f in report.findings if f.level == "fail"]
        return "Result: cannot work safely against this target: " + "; ".join(reasons)
    if code == EXIT_BLOCKED:
        limits = [f"{f.check}: {f.action}" for f in report.findings if f.level == "limit"]
        affected = ""
        if owned and any("owned" in f.action for f in report.findings if f.level == "limit"):
            affected = f" Specs in owned mode here: {', '.join(owned)}."
        return "Result: works against this target, with limits: " + "; ".join(limits) + "." + affected
    return "Result: the tool can work safely against this target."


def write_table(findings: list[Finding], out: TextIO, width: int = 118) -> None:
    """check (and the requests it spent of its budget) | what was seen | what the tool will do about it."""
    widths = (5, 34, 38)
    rest = max(24, width - sum(widths) - len(widths))
    print(" ".join(text.ljust(size) for text, size in zip(("", "check (requests)", "seen"), widths, strict=True))
          + " the tool will", file=out)
    for f in findings:
        spent = (f"{f.spent} of {f.budget} requests" if f.spent <= f.budget else  # (failed answers asked again)
                 f"{f.spent} requests ({f.budget} budgeted, the rest sent again)") if f.budget else \
            _count(f.spent, "request") if f.spent else ""
        cells = [[MARKS[f.level]], [*textwrap.wrap(f.check, widths[1], break_long_words=False), spent],
                 textwrap.wrap(f.seen, widths[2]), textwrap.wrap(f.action, rest)]
        for parts in zip_longest(*cells, fillvalue=""):
            line = " ".join(part.ljust(size) for part, size in zip(parts, (*widths, rest), strict=True))
            if line.strip():
                print(line.rstrip(), file=out)

