"""The live state: the catalog names resolve against, and the completions a plan needs.

Requests are the scarce resource (about 120 a minute on the real service), so each fetch picks the
cheapest shape: an entity listed wholesale, or filtered per course, lesson, member or email. The
floor is one full page (of the size the server serves) per page of records needed. No filter is
trusted: text filters may match substrings or ignore case, and a filter the server does not know is
silently ignored, so every filtered answer is confirmed record by record here. A completions read
whose pages do not add up leaves the state `partial`, and the plan then writes nothing.
"""

from __future__ import annotations

import logging
import operator
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, NoReturn, TypeVar

from reconciler.client import NexudusClient, Page
from reconciler.columns import READ_FIELDS, CompletionColumns
from reconciler.errors import AuthError, ConfigError, MalformedAnswer, PartialRead, UsageError
from reconciler.model import (
    MARKER_PREFIX,
    Catalog,
    Completion,
    Course,
    Coworker,
    Lesson,
    Member,
    SpecSet,
    split_teams,
)
from reconciler.schema_check import near_miss

if TYPE_CHECKING:
    from reconciler.cache import ReadCache

log = logging.getLogger(__name__)

COURSES = "/api/content/courses"
LESSONS = "/api/content/courselessons"
MEMBERS = "/api/content/coursemembers"
COWORKERS = "/api/spaces/coworkers"
COMPLETIONS = "/api/content/coursecompletedlessons"
FEW = 3  # up to this many filtered requests are made without first probing the wholesale size
SETTLE_READS = 3  # export and snapshot: reads after the first, until two in a row agree (`_settled`)
MAX_COST = 1 << 40  # the request cost of a way that is never taken while another works
CONFIRMED = 20  # at most this many members' completions are read again to confirm a plan's creates (`confirm_absent`)
PROBED = 50  # records of each kind read by Id to check that lists show SystemId (`check_markers_listed`):
# the two kinds' together are one batch request
# What the catalog keeps of each raw record of the tables it reads in bulk (the fields the catalog's records,
# `select`'s checks, `records_of_courses` and export use): a cohort's raw records die with their page.
SLIM_FIELDS: dict[str, tuple[str, ...]] = {
    MEMBERS: ("Id", "CourseId", "CoworkerId", "CoworkerFullName", "CoworkerTeamNames"),
    COWORKERS: ("Id", "FullName", "Email", "TeamNames"),
}


def slim(path: str, record: dict[str, Any]) -> dict[str, Any]:
    """The fields of `record` the catalog keeps (`SLIM_FIELDS`), sharing the record's values."""
    return {k: record[k] for k in SLIM_FIELDS[path] if k in record}


def course_from(record: dict[str, Any]) -> Course:
    return Course(int(record["Id"]), str(record.get("Title") or ""))


def lesson_from(record: dict[str, Any]) -> Lesson:
    order = record.get("DisplayOrder")
    return Lesson(int(record["Id"]), int(record.get("CourseId") or 0), str(record.get("Title") or ""),
                  order if isinstance(order, int) else 0)


def member_from(record: dict[str, Any]) -> Member:
    return Member(int(record["Id"]), int(record.get("CourseId") or 0), int(record.get("CoworkerId") or 0),
                  str(record.get("CoworkerFullName") or ""), split_teams(record.get("CoworkerTeamNames")))


def coworker_from(record: dict[str, Any]) -> Coworker:
    return Coworker(int(record["Id"]), str(record.get("FullName") or ""), str(record.get("Email") or ""),
                    split_teams(record.get("TeamNames")))


def completion_from(record: dict[str, Any]) -> Completion:
    return Completion(
        id=int(record["Id"]), member_id=int(record.get("CourseMemberId") or 0),
        lesson_id=int(record.get("CourseLessonId") or 0), created_on=str(record.get("CreatedOn") or ""),
        updated_on=str(record.get("UpdatedOn") or ""), system_id=record.get("SystemId"),
        unique_id=record.get("UniqueId"), lesson_title=str(record.get("CourseLessonTitle") or ""),
        member_name=str(record.get("CourseMemberCoworkerFullName") or ""))


@dataclass(frozen=True)
class Filter:
    """A list filter the reader sends, and the record field the server is meant to apply it to."""

    name: str
    field: str
    value: int | str

    @property
    def text(self) -> bool:
        return isinstance(self.value, str)

    def matches(self, record: dict[str, Any]) -> bool:
        """Exactly what we asked for: ids equal, text equal ignoring case (never the server's substring)."""
        found = record.get(self.field)
        if self.text:
            return isinstance(found, str) and found.strip().casefold() == str(self.value).strip().casefold()
        return bool(found == self.value)

    def contradicted_by(self, record: dict[str, Any]) -> bool:
        """A record the server could not have returned had it applied the filter at all (even as a
        substring match): the filter was silently ignored, and the answer is the whole table."""
        found = record.get(self.field)
        if self.text:
            return str(self.value).strip().casefold() not in str(found or "").casefold()
        return found != self.value


_Kept = TypeVar("_Kept")
_RECORD_ID = operator.itemgetter("Id")


def _ids_of(completions: Sequence[Any], *, columns: bool) -> array[int]:
    """The Ids of a read's completions (columns or raw records), sorted: what two reads are compared by."""
    if columns and isinstance(completions, CompletionColumns):
        return array("q", sorted(completions.ids))
    return array("q", sorted(record["Id"] for record in completions))


def _as_it_is(record: dict[str, Any]) -> dict[str, Any]:
    return record


@dataclass(frozen=True)
class Convert(Generic[_Kept]):
    """How a completions read keeps each record in scope: `one` a record at a time; `page`, when given, the
    records in scope of a page at once, what `one` makes of each in order (a full read takes them so: every µs a
    record is wall time there). `fields`, when given: every field of a record they read (the read is then lean:
    `NexudusClient.pages(keep=...)`)."""

    one: Callable[[dict[str, Any]], _Kept]
    page: Callable[[list[dict[str, Any]]], Sequence[_Kept]] | None = None
    fields: tuple[str, ...] | None = None


@dataclass
class FullRead:
    """What a full completions read saw, for the read cache: every raw record, handed to `keep` a page at a time
    as it arrives (the cache writes the page away at once, compressed, while the request for the next is on the
    wire), and whether they are the whole table (`all`), exactly the lessons asked (`lessons`), or neither
    (None: not cacheable)."""

    keep: Callable[[list[dict[str, Any]]], None]
    kind: str | None = None


class ById(Generic[_Kept]):
    """Records by Id, the last read of an Id winning, returned in Id order. A read nearly always arrives in
    Id order, so the records are a list until an Id does not ascend, and only then a dict (a dict of
    millions of entries costs a hundred bytes each). The Ids are an array, and so are the records when they
    are ints (the rows of `CompletionColumns`): 16 bytes a record rather than 80 on a read of millions."""

    def __init__(self) -> None:
        self._ids = array("q")
        self._kept: list[_Kept] | array[int] | None = None
        self._by_id: dict[int, _Kept] | None = None

    def put(self, record_id: int, kept: _Kept) -> None:
        if self._by_id is not None:
            self._by_id[record_id] = kept
        elif self._kept is None:
            self._ids.append(record_id)
            self._kept = array("q", [kept]) if type(kept) is int else [kept]  # type: ignore[list-item]
        elif record_id > self._ids[-1]:
            self._ids.append(record_id)
            self._kept.append(kept)  # type: ignore[arg-type]
        else:
            self._by_id = dict(zip(self._ids, self._kept, strict=True))  # type: ignore[arg-type]
            self._ids, self._kept = array("q"), None
            self._by_id[record_id] = kept

    def put_many(self, record_ids: Sequence[int], kept: Sequence[_Kept]) -> None:
        """`put` of each pair in turn, a page at a time: Ids that ascend past those kept (nearly every page of a
        read) are appended at once, and once the records are by Id a page is one update."""
        if not record_ids:
            return
        if self._kept is None and self._by_id is None:  # the first decides what the records are
            self.put(record_ids[0], kept[0])
            record_ids, kept = record_ids[1:], kept[1:]
        if self._by_id is not None:
            self._by_id.update(zip(record_ids, kept, strict=True))
            return
        try:  # machine integers, else `put` meets the Id at its record and raises there
            ids: array[int] | None = array("q", record_ids)
        except (TypeError, OverflowError):
            ids = None
        if (ids is not None and (not ids or record_ids[0] > self._ids[-1])
                and all(map(operator.lt, record_ids, record_ids[1:]))):
            try:  # all or nothing (`fromlist`): a record that does not fit is `put`'s to raise, at its record
                if isinstance(self._kept, array):
                    self._kept.fromlist(list(kept))  # type: ignore[arg-type]
                else:
                    self._kept.extend(kept)  # type: ignore[union-attr]
            except (TypeError, OverflowError):
                pass
            else:
                self._ids.extend(ids)
                return
        for record_id, one in zip(record_ids, kept, strict=True):
            self.put(record_id, one)

    def in_order(self) -> Sequence[_Kept]:
        if self._by_id is None:
            return self._kept if self._kept is not None else []  # type: ignore[return-value]
        return [self._by_id[i] for i in sorted(self._by_id)]


class Unverifiable(Exception):
    """List records do not carry the field a filter works on, so its results cannot be confirmed."""


class StateReader:
    """Reads what a spec set needs through one client, counting what it asked for.

    No filter is trusted: every record a filtered read returns is checked against the filter. A filter
    the server ignored is noted on the client (for the rest of the run) and its answer, which is then
    the whole table, serves every later read of that table from memory.
    """

    def __init__(self, client: NexudusClient, cache: ReadCache | None = None) -> None:
        self.client = client
        self.cache = cache  # completions last read (`cache.py`); apply's re-reads never pass one
        self._tables: dict[str, list[dict[str, Any]]] = {}
        self._verified: set[str] = set()  # "path?filter" seen honoured, said once at -v
        self.paged = False  # whether a completions read took more than a page (`confirm_absent` is then worth it)

    # --- filtered reads that verify their filter --------------------------------------------------

    def known_ignored(self, path: str, wanted: Filter | str) -> bool:
        """Whether the filter (or the filter of that name: whether one is ignored depends on its name alone) is
        known to be ignored on `path`."""
        name = wanted if isinstance(wanted, str) else wanted.name
        return f"{path}?{name.casefold()}" in self.client.ignored_filters

    def table(self, path: str) -> list[dict[str, Any]]:
        """Every record of `path`, read once per reader."""
        if path not in self._tables:
            self._tables[path] = self.client.list_all(path)
        return self._tables[path]

    def select(self, path: str, wanted: Filter) -> list[dict[str, Any]]:
        """The records of `path` that match `wanted` exactly, by the server's filter where it works."""
        key = f"{path}?{wanted.name.casefold()}"
        if path in self._tables or self.known_ignored(path, wanted):
            return [r for r in self.table(path) if wanted.matches(r)]
        records = self.client.list_all(path, {wanted.name: wanted.value})
        if any(wanted.field not in r for r in records):
            self.client.observed.add(f"{wanted.field.lower()}-absent-from-lists")
            raise Unverifiable(f"{path} list records carry no {wanted.field}, so the {wanted.name} filter cannot "
                               "be confirmed")
        if any(wanted.contradicted_by(r) for r in records):
            log.info("the server ignored the filter %s on %s (it answered records that do not match); reading "
                     "that table whole for the rest of the run", wanted.name, path)
            self.client.ignored_filters.add(key)
            self._tables[path] = records if self._is_whole(path, len(records)) else self.client.list_all(path)
        elif key not in self._verified:
            self._verified.add(key)
            log.info("the filter %s on %s is honoured: every record answered matches it", wanted.name, path)
        return [r for r in records if wanted.matches(r)]

    def _is_whole(self, path: str, count: int) -> bool:
        """Whether an answer of `count` records is the whole table (a filter's answer is taken for the
        whole table only when the unfiltered total says so: one request of one page)."""
        total, _ = self.client.count(path)
        return total == count

    # --- the catalog -----------------------------------------------------------------------------

    def catalog(self, specs: SpecSet, *, all_courses: bool = False) -> Catalog:
        catalog = Catalog()
        for record in self.table(COURSES):
            course = course_from(record)
            catalog.courses[course.id] = course
        wanted = set(catalog.courses) if all_courses else self._named_courses(specs, catalog)
        self._per_course(catalog, wanted, LESSONS, "CourseLesson_Course", lesson_from, catalog.lessons)
        self._per_course(catalog, wanted, MEMBERS, "CourseMember_Course", member_from, catalog.members)
        selectors = [rule for spec in specs.completions
                     for rule in [*(r.member for r in spec.members), *(r.member for r in spec.revocations)]]
        emails: dict[str, str] = {}
        for rule in selectors:
            if rule.by == "email":
                emails.setdefault(str(rule.value).strip().casefold(), str(rule.value).strip())
        self._coworkers(catalog, emails)
        enrolled = {m.coworker_id for m in catalog.members.values()}
        for coworker_id in sorted({int(r.value) for r in selectors if r.by == "coworker_id"} - enrolled):
            self._look_up_coworker(catalog, coworker_id)
        return catalog

    def release(self) -> None:
        """Let go of the tables the catalog was read from (a cohort's coworkers and enrolments, kept as `slim`
        makes them: tens of megabytes at 200,000 members); a later read of one of them asks again. What a
        completions read kept whole stays: a later completions read of this run is served from it."""
        self._tables = {path: kept for path, kept in self._tables.items() if path == COMPLETIONS}

    def _named_courses(self, specs: SpecSet, catalog: Catalog) -> set[int]:
        refs = [s.course for s in specs.completions]
        refs += [r for m in specs.migrations for r in (m.source_course, m.target_course)]
        wanted: set[int] = set()
        for ref in refs:
            if ref.id is not None:
                wanted.add(ref.id)
            else:
                wanted |= {c.id for c in catalog.courses.values() if c.title.strip() == ref.title}
        return wanted & set(catalog.courses)

    def _per_course(self, catalog: Catalog, courses: set[int], path: str, course_filter: str,
                    build: Any, into: dict[int, Any]) -> None:
        if path not in SLIM_FIELDS:
            records: Iterable[dict[str, Any]] = self.records_of_courses(path, course_filter, courses,
                                                                        len(catalog.courses))
        else:
            records = self._slim_records_of_courses(path, course_filter, courses, len(catalog.courses))
        for record in records:
            item = build(record)
            into[item.id] = item

    def _slim_records_of_courses(self, path: str, course_filter: str, courses: set[int],
                                 all_courses: int) -> Iterator[dict[str, Any]]:
        """`records_of_courses` page by page, each record as `slim` keeps it: the same requests, and a table
        kept whole for the rest of the run is kept slim."""
        if not courses:
            return
        if len(courses) <= FEW or len(courses) < all_courses // 2:
            log.info("%s of %d course(s): filtered per course (%s)", path, len(courses), course_filter)
            for course_id in sorted(courses):
                yield from self._slim_select(path, Filter(course_filter, "CourseId", course_id))
            return
        log.info("%s of %d course(s) of %d: the whole table, read once", path, len(courses), all_courses)
        yield from (r for r in self._slim_table(path) if r.get("CourseId") in courses)

    def _slim_table(self, path: str, first: Page | None = None,
                    each: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
        """`table`, each record kept as `slim` makes it while its page is read (`first` from a `count` that kept
        the same fields); `each`, when the table is read now, takes in each page of them as it arrives (while the
        server answers the next)."""
        if path not in self._tables:
            table: list[dict[str, Any]] = []
            for page in self.client.pages(path, first=first, keep=SLIM_FIELDS[path]):  # the raw records, lean
                slimmed = [slim(path, r) for r in page]
                if each is not None:
                    each(slimmed)
                table += slimmed
            self._tables[path] = table
        return self._tables[path]

    def _slim_select(self, path: str, wanted: Filter) -> Iterator[dict[str, Any]]:
        """`select` page by page, each record as `slim` keeps it (the same requests and checks: the records
        matching come out as their page arrives; a missing field raises once every page is in)."""
        key = f"{path}?{wanted.name.casefold()}"
        if path in self._tables or self.known_ignored(path, wanted):
            yield from (r for r in self.table(path) if wanted.matches(r))
            return
        kept: list[dict[str, Any]] = []  # every record, slim: the whole table if the filter proves ignored
        absent = ignored = False
        matching: list[dict[str, Any]] = []
        for page in self.client.pages(path, {wanted.name: wanted.value}, keep=SLIM_FIELDS[path]):
            absent = absent or any(wanted.field not in r for r in page)
            ignored = ignored or any(wanted.contradicted_by(r) for r in page)
            slimmed = [slim(path, r) for r in page]
            kept += slimmed
            if not absent:
                matching += [r for r in slimmed if wanted.matches(r)]
        if absent:
            self.client.observed.add(f"{wanted.field.lower()}-absent-from-lists")
            raise Unverifiable(f"{path} list records carry no {wanted.field}, so the {wanted.name} filter cannot "
                               "be confirmed")
        if ignored:
            log.info("the server ignored the filter %s on %s (it answered records that do not match); reading "
                     "that table whole for the rest of the run", wanted.name, path)
            self.client.ignored_filters.add(key)
            self._tables[path] = kept if self._is_whole(path, len(kept)) else self._slim_table(path)
        elif key not in self._verified:
            self._verified.add(key)
            log.info("the filter %s on %s is honoured: every record answered matches it", wanted.name, path)
        yield from matching

    def records_of_courses(self, path: str, course_filter: str, courses: set[int],
                           all_courses: int) -> list[dict[str, Any]]:
        """Lessons or enrolments of `courses`: filtered per course, or listed wholesale for most courses."""
        if not courses:
            return []
        if len(courses) <= FEW or len(courses) < all_courses // 2:
            log.info("%s of %d course(s): filtered per course (%s)", path, len(courses), course_filter)
            found = []
            for course_id in sorted(courses):
                found += self.select(path, Filter(course_filter, "CourseId", course_id))
            return found
        log.info("%s of %d course(s) of %d: the whole table, read once", path, len(courses), all_courses)
        return [r for r in self.table(path) if r.get("CourseId") in courses]

    def snapshot(self, course_titles: Iterable[str] = (), *, columns: bool = False) -> dict[str, Any]:
        """The raw records of the named courses (all courses when none), as the API returned them; with
        `columns` (export), the completions as `CompletionColumns` (a read of millions then holds tens of bytes
        a record, each page's raw records dying as the next arrives), and the enrolments and coworkers as `slim`
        keeps them (the fields export writes: at 200,000 members, hundreds of MiB less)."""
        if not columns:
            for path in SLIM_FIELDS:  # a catalog read before kept these slim: the snapshot reads them as they are
                self._tables.pop(path, None)
        courses = self.table(COURSES)
        wanted_titles = [t.strip() for t in course_titles]
        if wanted_titles:
            chosen = [c for c in courses if str(c.get("Title") or "").strip() in wanted_titles]
            missing = set(wanted_titles) - {str(c.get("Title") or "").strip() for c in chosen}
            if missing:
                titles = [str(c.get("Title") or "") for c in courses]
                raise UsageError("; ".join(f"no course {t!r}{near_miss(t, titles)}" for t in sorted(missing)))
        else:
            chosen = courses
        ids = {int(c["Id"]) for c in chosen}
        lessons = self.records_of_courses(LESSONS, "CourseLesson_Course", ids, len(courses))
        if columns:
            members = list(self._slim_records_of_courses(MEMBERS, "CourseMember_Course", ids, len(courses)))
        else:
            members = self.records_of_courses(MEMBERS, "CourseMember_Course", ids, len(courses))
        coworker_ids = {m.get("CoworkerId") for m in members}
        everyone = self._slim_table(COWORKERS) if columns else self.table(COWORKERS)
        coworkers = [c for c in everyone if c["Id"] in coworker_ids] if coworker_ids else []
        lesson_ids = {int(x["Id"]) for x in lessons}
        completions: Sequence[Any]
        if columns:
            completions, partial = self.completions(lesson_ids)
        else:
            completions, partial = self.completion_records(lesson_ids)
        if partial:
            raise PartialRead("the completions came back incomplete, so nothing is written: " + "; ".join(partial))
        completions = self._settled(lesson_ids, completions, columns=columns)
        return {"courses": chosen, "courselessons": lessons, "coursemembers": members, "coworkers": coworkers,
                "coursecompletedlessons": completions}

    def _settled(self, lesson_ids: set[int], completions: Sequence[Any], *, columns: bool) -> Sequence[Any]:
        """The completions of `lesson_ids` as two reads in a row find them: the same records (by Id) both times.

        What export and snapshot write becomes a spec or a seed, so a record their read missed would later be
        deleted (owned, authoritative) or lost. A read at offsets misses records when another writer deletes or
        creates between its pages (those after the change shift past it), and what the read cache holds may miss
        a delete; neither tells. So the completions are read again from the server, in full, until two reads in a
        row agree, at most SETTLE_READS times more; else PartialRead, and nothing is written. (A read of one page
        costs one request more.)"""
        held = _ids_of(completions, columns=columns)
        for _ in range(SETTLE_READS):
            self._tables.pop(COMPLETIONS, None)  # from the server, not from what this run kept of it
            again, partial = self._read_direct(lesson_ids, columns=columns)
            if partial:
                raise PartialRead("the completions came back incomplete, so nothing is written: " + "; ".join(partial))
            ids = _ids_of(again, columns=columns)
            if ids == held:
                return again
            if log.isEnabledFor(logging.INFO):  # (sets of millions of Ids only when said)
                log.info("completions: a read found %d record(s) the one before did not, and missed %d it had: "
                         "another writer between the reads; reading again", len(set(ids) - set(held)),
                         len(set(held) - set(ids)))
            held = ids
        raise PartialRead(f"the completions changed between each of {SETTLE_READS + 1} reads in a row (another writer "
                          "at work): a read at offsets may then miss records, so nothing is written; try again when "
                          "they are quiet")

    def _read_direct(self, lesson_ids: set[int], *, columns: bool) -> tuple[Sequence[Any], list[str]]:
        """`completions` (columns) or `completion_records` (raw, sorted by Id), read from the server in full."""
        if columns:
            kept = CompletionColumns()
            rows, partial = self.read_completions(lesson_ids, None, (), Convert(kept.add, kept.add_page, READ_FIELDS))
            return kept.take(rows), partial
        records, partial = self.read_completions(lesson_ids, None, (), Convert(_as_it_is))
        return list(records), partial

    def _coworkers(self, catalog: Catalog, emails: dict[str, str]) -> None:
        """Coworkers for the emails named (folded → as written): filtered one by one for a few, listed
        wholesale for a cohort. Each address is sent as the spec wrote it; one the filter does not find
        is looked for in the whole list, which cannot miss it because of case (the filter may be exact and
        case-sensitive). Every coworker whose email matches is kept, so that two sharing one show."""
        if not emails:
            return
        pending = set(emails)

        def keep(records: Iterable[dict[str, Any]]) -> None:
            for record in records:
                email = str(record.get("Email") or "").strip().casefold()  # as of `coworker_from(record).email`
                if email in emails:  # exact, whatever the server's filter matched
                    coworker = coworker_from(record)
                    catalog.coworkers[coworker.id] = coworker
                    pending.discard(email)

        def known(records: list[dict[str, Any]]) -> None:
            catalog.known_emails = [str(r.get("Email")) for r in records if r.get("Email")]

        def whole() -> None:
            records = self.table(COWORKERS)
            keep(records)
            known(records)

        if len(pending) > FEW and COWORKERS not in self._tables:
            total, first = self.client.count(COWORKERS, keep=SLIM_FIELDS[COWORKERS])
            if total is None or self.client.pages_for(total) <= len(pending):  # (no count: the list, to its end)
                known(self._slim_table(COWORKERS, first, each=keep))  # each page taken in as it arrives
                return
        if COWORKERS in self._tables:
            whole()
            return
        for email in sorted(pending):
            keep(self.select(COWORKERS, Filter("Coworker_Email", "Email", emails[email])))
        if pending:
            log.info("%d email(s) not found by the Coworker_Email filter; looking them up in the whole list",
                     len(pending))
            whole()

    def _look_up_coworker(self, catalog: Catalog, coworker_id: int) -> None:
        """A coworker named by Id who is not enrolled: does it exist at all? (Only for the message.)"""
        try:
            record = self.client.get(COWORKERS, coworker_id)
        except AuthError:
            catalog.absent_coworkers[coworker_id] = "cannot be read (deleted, or the account lacks Coworker-Read)"
            return
        except MalformedAnswer as e:  # only for the message: the lookup's own failure is named there
            catalog.absent_coworkers[coworker_id] = f"could not be looked up ({e})"
            return
        if record is None:
            catalog.absent_coworkers[coworker_id] = "does not exist"
        elif type(record.get("Id")) is int:
            coworker = coworker_from(record)
            catalog.coworkers.setdefault(coworker.id, coworker)

    # --- completions -----------------------------------------------------------------------------

    def completions(self, lesson_ids: set[int], named_members: set[int] | None = None,
                    markers: Iterable[str] = (), *, catalog: Catalog | None = None
                    ) -> tuple[CompletionColumns, list[str]]:
        """Every completion of `lesson_ids` (or, when cheaper, of `named_members` plus those carrying
        `markers`); the planner narrows this to its scope. Returns (completions, partial-read reasons).

        Each record is added to columns as it arrives (`columns.py`: a few bytes a record, titles and names
        from `catalog`), so a read of millions of records never holds them as raw JSON nor as an object each;
        the columns read back as `Completion` values."""
        titles = {x.id: x.title for x in catalog.lessons.values()} if catalog else {}
        names = {m.id: m.full_name for m in catalog.members.values()} if catalog else {}
        columns = CompletionColumns(titles, names)
        convert = Convert(columns.add, columns.add_page, READ_FIELDS)
        rows, partial = self._collect(lesson_ids, named_members, markers, convert)
        return columns.take(rows), partial

    def completion_records(self, lesson_ids: set[int], named_members: set[int] | None = None,
                           markers: Iterable[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
        """The raw records behind `completions`, sorted by Id, and the reasons any read was partial."""
        records, partial = self._collect(lesson_ids, named_members, markers, Convert(_as_it_is))
        return list(records), partial

    def _collect(self, lesson_ids: set[int], named_members: set[int] | None, markers: Iterable[str],
                 convert: Convert[_Kept]) -> tuple[Sequence[_Kept], list[str]]:
        """The completions of `lesson_ids`: from the read cache and what changed since, when it can be
        proven exact, else by a full read (which then refreshes the cache)."""
        if self.cache is not None and lesson_ids:
            return self.cache.collect(self, lesson_ids, named_members, markers, convert)
        return self.read_completions(lesson_ids, named_members, markers, convert)

    def refuse_owned_without_system_id(self, markers: Sequence[str]) -> NoReturn:
        """Owned mode (its `markers`) over completion lists that carry no SystemId cannot find what it made: a plan
        would say "no changes" over every record it should delete. A ConfigError saying so."""
        self.client.observed.add("systemid-absent-from-lists")
        names = ", ".join(m.removeprefix(MARKER_PREFIX) for m in markers)
        raise ConfigError(f"mode owned cannot work against {self.client.base_url}: its completion lists carry no "
                          f"SystemId, and owned mode knows its own records only by that marker (spec {names}); use "
                          "mode additive or authoritative")

    def check_markers_listed(self, current: CompletionColumns, lesson_ids: set[int],
                             declared: Callable[[tuple[int, int]], bool], markers: Sequence[str]) -> None:
        """Owned mode (its `markers`, over the completions of `lesson_ids`) where no record read shows a SystemId:
        the API leaves open whether lists carry it, and a list that shows every one as null looks like a space
        where nobody set one, while a plan would say "no changes" over every record it should delete. Some of
        the records, of the pairs owned specs declare and of those they do not (an orphan's), are read by their
        Ids (one request): one that shows a marker the list did not is a ConfigError, as for lists without the
        field. (Even where a target profile measured lists showing SystemId: the server may have changed since.)"""
        if not markers or current.some_system_id():
            return
        # The last rows read, which a read by Id leaves with the largest Ids: Ids come in blocks, not in creation
        # order, but what an owned spec made since it was adopted is mostly in the latest blocks. (From the end,
        # and only as far as it takes.)
        lessons, members = current.lesson_ids, current.member_ids
        mine: list[int] = []
        others: list[int] = []
        for row in reversed(range(len(lessons))):
            lesson = lessons[row]
            if lesson not in lesson_ids:
                continue
            group = mine if declared((members[row], lesson)) else others
            if len(group) < PROBED:
                group.append(row)
                if len(mine) == len(others) == PROBED:
                    break
        if not (mine or others):
            return
        try:
            records = self.client.get_many(COMPLETIONS, [current.ids[row] for row in mine + others])
        except AuthError as e:  # no Read role for get-by-id: what the lists show is all there is
            log.info("could not read completions by Id to check that lists show SystemId: %s", e)
            return
        if any(str(r.get("SystemId") or "").startswith(MARKER_PREFIX) for r in records):
            self.refuse_owned_without_system_id(markers)

    def confirm_absent(self, pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
        """Of the (member, lesson) pairs a plan would create, those a read of their members' completions made now
        finds (one request a member, for up to CONFIRMED members, after a completions read that took more than a
        page; none when the member filter is known ignored, or its answer cannot be trusted). A list read at
        offsets misses a record that another writer's delete and create between two pages shift past it, with its
        total unchanged: a plan would create what exists, and a drift check would report it."""
        members = sorted({member for member, _ in pairs})
        by_member = "CourseCompletedLesson_CourseMember"
        if not self.paged or not members or len(members) > CONFIRMED or self.known_ignored(COMPLETIONS, by_member):
            return set()  # (a read of one page a request shifts nothing)
        found: set[tuple[int, int]] = set()
        try:
            for member in members:
                for record in self.select(COMPLETIONS, Filter(by_member, "CourseMemberId", member)):
                    pair = (record["CourseMemberId"], record["CourseLessonId"])
                    if pair in pairs:
                        found.add(pair)
        except (Unverifiable, PartialRead) as e:  # the first read stands
            log.info("the plan's creates were not confirmed: %s", e)
            return set()
        return found

    def read_completions(self, lesson_ids: set[int], named_members: set[int] | None, markers: Iterable[str],
                         convert: Convert[_Kept], seen: FullRead | None = None,
                         ) -> tuple[Sequence[_Kept], list[str]]:
        """The completions of `lesson_ids` by the cheapest way, each page kept as `convert` makes it (and
        every raw record kept in `seen`, with what they cover, when given).

        A read that fails outright (the server down past the retries, an answer that is not what the
        API documents) raises; one whose pages do not add up is reported as partial, and the plan then
        writes nothing.
        """
        if not lesson_ids:
            return [], []
        markers = sorted(set(markers))
        by_member = None if named_members is None else len(named_members) + len(markers)
        partial: list[str] = []
        found: ById[_Kept] = ById()
        whole = [False]  # a filter the server ignored brought the whole table: everything in scope is kept

        by_page, one, lean = convert.page, convert.one, convert.fields

        def keep(records: list[dict[str, Any]]) -> None:
            if markers and any("SystemId" not in record for record in records):
                self.refuse_owned_without_system_id(markers)
            if records and "SystemId" not in records[0]:  # (a page's first says it: no scan of millions)
                self.client.observed.add("systemid-absent-from-lists")  # (export then writes additive specs)
            if len(records) >= self.client.page_size:  # a full page: a next one was (or will be) read at an offset
                self.paged = True
            if seen is not None:
                seen.keep(records)
            if by_page is not None:
                in_scope = [record for record in records if record["CourseLessonId"] in lesson_ids]
                found.put_many(list(map(_RECORD_ID, in_scope)), by_page(in_scope))
                return
            for record in records:
                if record["CourseLessonId"] in lesson_ids:
                    found.put(record["Id"], one(record))

        def per_lesson_read() -> None:
            log.info("completions: filtered per lesson (%d lesson(s))", len(per_lesson))
            filtered(per_lesson)
            if seen is not None and not whole[0] and not partial:
                seen.kind = "lessons"

        def filtered(wanted: list[Filter]) -> None:
            for one in wanted:
                if whole[0]:
                    return
                if self.known_ignored(COMPLETIONS, one):
                    keep(self.table(COMPLETIONS))
                    whole[0] = True
                    return
                try:
                    streamed, ignored = 0, False
                    for page in self.client.pages(COMPLETIONS, {one.name: one.value}, keep=lean):
                        if any(one.field not in r for r in page):
                            self.client.observed.add(f"{one.field.lower()}-absent-from-lists")
                            raise Unverifiable(f"{COMPLETIONS} list records carry no {one.field}, so the "
                                               f"{one.name} filter cannot be confirmed")
                        ignored = ignored or any(one.contradicted_by(r) for r in page)
                        streamed += len(page)
                        keep(page)
                    if ignored:
                        log.info("the server ignored the filter %s on %s; reading no more of it this run",
                                 one.name, COMPLETIONS)
                        self.client.ignored_filters.add(f"{COMPLETIONS}?{one.name.casefold()}")
                        if not self._is_whole(COMPLETIONS, streamed):  # not the whole table after all: read it
                            for page in self.client.pages(COMPLETIONS, keep=lean):
                                keep(page)
                        whole[0] = True
                    elif f"{COMPLETIONS}?{one.name.casefold()}" not in self._verified:
                        self._verified.add(f"{COMPLETIONS}?{one.name.casefold()}")
                        log.info("the filter %s on %s is honoured: every record answered matches it", one.name,
                                 COMPLETIONS)
                except PartialRead as e:
                    partial.append(f"reading completions where {one.name}={one.value} was incomplete: {e}")

        per_lesson = [Filter("CourseCompletedLesson_CourseLesson", "CourseLessonId", i) for i in sorted(lesson_ids)]
        by_id, by_marker = "CourseCompletedLesson_CourseMember", "CourseCompletedLesson_SystemId"

        def per_member() -> list[Filter]:
            """A filter for each named member, then one for each marker (made only when this way is taken: a cohort
            names thousands)."""
            return [*(Filter(by_id, "CourseMemberId", i) for i in sorted(named_members or ())),
                    *(Filter(by_marker, "SystemId", m) for m in markers)]

        # A filter known to be ignored (by a target profile, or earlier in this run) reads the whole table: a
        # way through it is taken only when nothing cheaper works.
        sent = ([by_id] if named_members else []) + ([by_marker] if markers else [])  # the filters the way sends
        if by_member is not None and any(self.known_ignored(COMPLETIONS, name) for name in sent):
            by_member = None
        lesson_cost = len(per_lesson) if not self.known_ignored(COMPLETIONS, per_lesson[0]) else MAX_COST

        def by_members() -> None:
            filters = per_member()
            log.info("completions: filtered per member (%d filter(s))", len(filters))
            try:
                filtered(filters)
            except Unverifiable as e:
                log.info("%s; reading per lesson instead", e)
                filtered(per_lesson)

        cheapest_filter = min(lesson_cost, by_member if by_member is not None else lesson_cost)
        if cheapest_filter <= FEW and COMPLETIONS not in self._tables:
            if lesson_cost <= (by_member or lesson_cost):
                per_lesson_read()
            else:
                by_members()
            return found.in_order(), partial
        if COMPLETIONS in self._tables:
            keep(self._tables[COMPLETIONS])
            return found.in_order(), partial
        total, first = self.client.count(COMPLETIONS, keep=lean)
        in_scope = sum(1 for r in first.records if r["CourseLessonId"] in lesson_ids)
        share = in_scope / max(1, len(first.records))
        # A table the server does not count costs what a filtered way does not know: it is read whole only when
        # no filter works.
        wholesale = self.client.pages_for(total) if total is not None else MAX_COST
        estimate_lessons = lesson_cost + (int(share * total / self.client.page_size) if total is not None else 0)
        log.debug("completions: %s in all; wholesale %d pages, per lesson ~%d, per member %s", total, wholesale,
                  estimate_lessons, f"~{by_member}" if by_member is not None else "n/a (not every member is named)")
        if wholesale <= estimate_lessons and (by_member is None or wholesale <= by_member):
            log.info("completions: the whole table (%d page(s) of %d records), cheaper than filtering", wholesale,
                     self.client.page_size)
            try:
                for page in self.client.pages(COMPLETIONS, first=first, keep=lean):
                    keep(page)
                if seen is not None:
                    seen.kind = "all"
            except PartialRead as e:
                partial.append(f"reading all completions was incomplete: {e}")
        elif by_member is not None and by_member < estimate_lessons:
            by_members()
        else:
            per_lesson_read()
        return found.in_order(), partial
