"""The read cache: the completions last read from a target, so that the next read asks only what changed.

A read of the whole scope costs one request per page (about 1,000 requests for a million completions). The
cache (`.reconciler/cache/`, one file per scope; no secret in it, it names its target and the reconciler
version) keeps the records of the last read and the server's watermark: the largest `UpdatedOn` seen, as
the server wrote it. The next read is exact, or it is a full read:

1. what changed since the watermark, less the overlap and the time the last read took (the range filter
   `from_CourseCompletedLesson_UpdatedOn` has minutes; clocks differ; a record written while a long read
   ran may carry a stamp older than the watermark), merged by Id: every record created or changed since
   the last read is then known, so the merged set holds every live record, plus those deleted since;
2. counts, each a `size=1` request: the whole table's `TotalItems` (for a cache of the whole table), or
   each lesson's. A count equal to the merged count proves nothing was deleted; a lesson counted lower is
   read again, alone; a count higher than the merged one cannot be explained (a record written with an
   `UpdatedOn` before the range) and means a full read.

Any doubt (a cache of another target or version, a full read older than `cache.max_age_hours`, a range
filter the server ignores, an answer that does not add up, more changes than a full read costs) means a
full read, and `-v` says why. Without a target profile in which `doctor` found the range filter and the
counts working, the first incremental read is checked against a full read once. What no count can show: a
record created with an `UpdatedOn` older than the range *and* a delete in the same lesson; the maximum age
bounds how long such drift can go unseen.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from reconciler import __version__
from reconciler.config import CacheSettings
from reconciler.emulator.store import timestamp_instant
from reconciler.errors import PartialRead

if TYPE_CHECKING:
    from reconciler.state import StateReader

log = logging.getLogger(__name__)

CACHE_FORMAT = "reconciler-read-cache/1"
COMPLETIONS = "/api/content/coursecompletedlessons"
CHANGED_SINCE = "from_CourseCompletedLesson_UpdatedOn"
BY_LESSON = "CourseCompletedLesson_CourseLesson"
RANGE_KEY = f"{COMPLETIONS}?{CHANGED_SINCE.casefold()}"
COUNTS_KEY = "counts"
DISTRUST_FILE = "distrusted.json"

_Kept = TypeVar("_Kept")
Record = dict[str, Any]


class Doubt(Exception):
    """Why the cache cannot be trusted for this read: the read is then a full one."""


@dataclass
class Entry:
    """One cache file: the records of a scope (`kind` all: the whole table; lessons: exactly `lessons`)."""

    path: Path
    kind: str
    lessons: frozenset[int]
    records: dict[int, Record]
    watermark: str
    full_read_at: float
    span_seconds: float
    verified: bool
    page_size: int | None = None  # the page size the server served the full read at
    full_requests: int = 0  # what the last full read cost


def minute_text(moment: datetime) -> str:
    """The range filter's format: `YYYY-MM-DDTHH:mm`, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def newest(stamps: Iterable[str], start: str = "") -> str:
    """The latest of `start` and `stamps`, compared as instants, kept as the server wrote it."""
    best, best_at = start, timestamp_instant(start)
    for stamp in stamps:
        at = timestamp_instant(stamp)
        if at is not None and (best_at is None or at > best_at):
            best, best_at = stamp, at
    return best


class ReadCache:
    """The cache of one target in `folder`; `vouched` when a target profile found the range filter and counts
    working (otherwise the first incremental read is checked against a full read)."""

    def __init__(self, folder: Path, target: str, settings: CacheSettings, *, vouched: bool = False,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.target = target
        self.settings = settings
        self.vouched = vouched
        self.clock = clock
        self.monotonic = monotonic
        self.last: str = ""  # how the last read went: "full (why)" or "incremental"
        self._reread: list[Record] = []  # records read again by lesson in the read under way
        self._full_requests = 0  # what a full read of the entry under way cost

    # --- the read ---------------------------------------------------------------------------------

    def collect(self, reader: StateReader, lesson_ids: set[int], named_members: set[int] | None,
                markers: Iterable[str], convert: Callable[[Record], _Kept]) -> tuple[list[_Kept], list[str]]:
        from reconciler.state import FullRead

        started = self.monotonic()
        entry: Entry | None = None
        try:
            entry = self._entry(lesson_ids)
            records, watermark = self._incremental(reader, entry, lesson_ids)
        except Doubt as e:
            why = str(e)
        else:
            span = self.monotonic() - started
            if entry.verified or self.vouched:
                self._save(reader, entry.path, entry.kind, entry.lessons, records, watermark, entry.full_read_at, span,
                           True, entry.full_requests)
                self.last = "incremental"
                log.info("read cache: %d changed or re-read records merged into %s; exact by counts",
                         len(records), entry.path.name)
                return _in_scope(records.values(), lesson_ids, convert), []
            why = ("no target profile vouches for the range filter and counts (`reconciler doctor`): checking the "
                   "incremental read against a full read once")
            log.info("read cache: %s", why)
            seen = FullRead()
            asked = reader.client.stats.requests
            found, partial = reader.read_completions(lesson_ids, named_members, markers, convert, seen)
            if partial or seen.kind is None:
                return found, partial
            full = {r["Id"]: r for r in seen.records}
            agree = _in_scope(records.values(), lesson_ids, dict) == _in_scope(full.values(), lesson_ids, dict)
            if not agree:
                log.warning("warning: read cache: an incremental read of %s differed from the full read; the cache "
                            "is not used for it again (delete %s to try anew)", self.target, self.folder)
                self._distrust()
                self.last = "full (the incremental read differed: not trusted again)"
                return found, partial
            self._store(reader, seen, lesson_ids, started, verified=True, cost=reader.client.stats.requests - asked)
            self.last = "full (checking the incremental read)"
            return found, partial
        log.info("read cache: reading in full: %s", why)
        self.last = f"full ({why})"
        seen = FullRead()
        asked = reader.client.stats.requests
        found, partial = reader.read_completions(lesson_ids, named_members, markers, convert, seen)
        if not partial and seen.kind is not None:
            self._store(reader, seen, lesson_ids, started, verified=entry.verified if entry else False,
                        cost=reader.client.stats.requests - asked)
        return found, partial

    def _incremental(self, reader: StateReader, entry: Entry, lesson_ids: set[int]) -> tuple[dict[int, Record], str]:
        """The entry brought up to date exactly, and its new watermark; Doubt when that cannot be proven."""
        client = reader.client
        least = 2 if entry.kind == "all" else 1 + len(entry.lessons)
        if least >= entry.full_requests:
            raise Doubt(f"a full read costs no more ({entry.full_requests} requests) than the fewest an incremental "
                        f"one takes ({least})")
        if RANGE_KEY in client.ignored_filters:
            raise Doubt(f"the server ignores {CHANGED_SINCE}")
        mark = timestamp_instant(entry.watermark)
        if mark is None:
            raise Doubt(f"the cache's watermark {entry.watermark!r} is not a date")
        since = mark - timedelta(minutes=self.settings.overlap_minutes, seconds=entry.span_seconds)
        since = since.replace(second=0, microsecond=0)
        if entry.page_size is not None:  # what a full read would cost is judged at the size the server serves
            client.page_size = min(client.page_size, entry.page_size)
        records = dict(entry.records)
        watermark = entry.watermark
        self._full_requests = entry.full_requests
        self._reread = []
        try:
            total, first = client.count(COMPLETIONS, {CHANGED_SINCE: minute_text(since)})
            self._within(first.records, since, client)
            if total > client.page_size and client.pages_for(total) >= client.pages_for(len(records)):
                raise Doubt(f"{total:,} completions changed since {minute_text(since)}: as many pages as a full read")
            for page in client.pages(COMPLETIONS, {CHANGED_SINCE: minute_text(since)}, first=first):
                self._within(page, since, client)
                for record in page:
                    if entry.kind == "all" or record["CourseLessonId"] in entry.lessons:
                        records[record["Id"]] = record
                    else:  # moved out of the scope
                        records.pop(record["Id"], None)
                watermark = newest((str(r.get("UpdatedOn")) for r in page), watermark)
            changed = total
            if entry.kind == "all":
                table = self._count(reader, None)
                if table != len(records):
                    self._explain(reader, entry, records, table)
                    if table != len(records):  # records in lessons the cache never saw, or a change meanwhile
                        raise Doubt(f"the lessons' counts do not add up to the table's ({table:,})")
            else:
                self._per_lesson(reader, sorted(entry.lessons), records)
        except PartialRead as e:
            raise Doubt(f"an answer did not add up: {e}") from None
        log.info("read cache: %d completion(s) changed since %s", changed, minute_text(since))
        return records, newest((str(r.get("UpdatedOn")) for r in self._reread), watermark)

    def _within(self, page: list[Record], since: datetime, client: Any) -> None:
        """Every record the range filter answered is in the range; else the server ignored it."""
        for record in page:
            at = timestamp_instant(record.get("UpdatedOn"))
            if at is None:
                raise Doubt(f"completion {record['Id']} has no readable UpdatedOn ({record.get('UpdatedOn')!r})")
            if at < since:
                client.ignored_filters.add(RANGE_KEY)
                raise Doubt(f"the server ignored {CHANGED_SINCE}={minute_text(since)}: it answered completion "
                            f"{record['Id']} of UpdatedOn {record.get('UpdatedOn')}")

    def _explain(self, reader: StateReader, entry: Entry, records: dict[int, Record], table: int) -> None:
        if table > len(records):
            raise Doubt(f"the server counts {table:,} completions, more than the {len(records):,} the cache and the "
                        "changes hold (a record written with an UpdatedOn before the range, or during the read)")
        lessons = sorted({r["CourseLessonId"] for r in records.values()})
        if len(lessons) + 2 >= reader.client.pages_for(len(records)):
            raise Doubt(f"{len(records) - table:,} completion(s) deleted, and counting {len(lessons)} lessons costs "
                        "as much as a full read")
        self._per_lesson(reader, lessons, records)

    def _per_lesson(self, reader: StateReader, lessons: list[int], records: dict[int, Record]) -> None:
        """Each lesson counted (one `size=1` request); a lesson counted lower than held is read again alone."""
        held = Counter(r["CourseLessonId"] for r in records.values())
        short: dict[int, int] = {}
        for lesson in lessons:
            counted = self._count(reader, lesson)
            if counted > held[lesson]:
                raise Doubt(f"the server counts {counted:,} completions of lesson {lesson}, more than the "
                            f"{held[lesson]:,} the cache and the changes hold (a record written with an UpdatedOn "
                            "before the range, or during the read)")
            if counted < held[lesson]:
                short[lesson] = counted
        again = sum(reader.client.pages_for(counted) for counted in short.values())
        if again >= self._full_requests:
            raise Doubt(f"reading {len(short)} lessons with deletions again ({again} requests) costs as much as a "
                        f"full read ({self._full_requests})")
        for lesson, counted in short.items():
            log.info("read cache: lesson %d has %d completion(s) fewer than held: reading it again", lesson,
                     held[lesson] - counted)
            fresh: list[Record] = []
            for page in reader.client.pages(COMPLETIONS, {BY_LESSON: lesson}):
                if any(r.get("CourseLessonId") != lesson for r in page):
                    raise Doubt(f"the server ignored {BY_LESSON}")
                fresh += page
            if len(fresh) != counted:
                raise Doubt(f"lesson {lesson} changed while it was read")
            for record_id in [i for i, r in records.items() if r["CourseLessonId"] == lesson]:
                del records[record_id]
            records.update((r["Id"], r) for r in fresh)
            self._reread += fresh

    def _count(self, reader: StateReader, lesson: int | None) -> int:
        filters = {} if lesson is None else {BY_LESSON: lesson}
        page = reader.client.page(COMPLETIONS, filters, size=1)
        total = page.body.get("TotalItems")
        if not isinstance(total, int) or isinstance(total, bool):
            raise Doubt("a count answered no TotalItems")
        if lesson is not None and any(r.get("CourseLessonId") != lesson for r in page.records):
            raise Doubt(f"the server ignored {BY_LESSON}")
        return total

    # --- the files ----------------------------------------------------------------------------------

    def path_of(self, kind: str, lessons: Iterable[int] = ()) -> Path:
        if kind == "all":
            return self.folder / "completions-all.json.gz"
        digest = hashlib.sha256(",".join(map(str, sorted(lessons))).encode()).hexdigest()[:16]
        return self.folder / f"completions-lessons-{digest}.json.gz"

    def _entry(self, lesson_ids: set[int]) -> Entry:
        """The cache entry that covers `lesson_ids`, checked; Doubt saying why there is none."""
        if self._distrusted():
            raise Doubt(f"an incremental read of this target once differed from a full read ({DISTRUST_FILE})")
        why = "no cache yet"
        for path in (self.path_of("all"), self.path_of("lessons", lesson_ids)):
            try:
                with gzip.open(path, "rt", encoding="utf-8") as handle:
                    doc = json.load(handle)
            except FileNotFoundError:
                continue
            except (OSError, ValueError, EOFError) as e:
                raise Doubt(f"the cache {path} cannot be read ({e})") from None
            return self._checked(path, doc, lesson_ids)
        raise Doubt(why)

    def _checked(self, path: Path, doc: Any, lesson_ids: set[int]) -> Entry:
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
            raise Doubt(f"{path} is not a read cache ({CACHE_FORMAT})")
        if doc.get("target") != self.target:
            raise Doubt(f"the cache is of {doc.get('target')}, not {self.target}")
        if doc.get("reconciler") != __version__:
            raise Doubt(f"the cache was written by reconciler {doc.get('reconciler')}, not {__version__}")
        full_read_at = doc.get("full_read_at")
        if not isinstance(full_read_at, int | float):
            raise Doubt("the cache does not say when it was read in full")
        age = self.clock() - full_read_at
        if age > self.settings.max_age_hours * 3600 or age < -3600:
            raise Doubt(f"the last full read is {age / 3600:.1f} hours old (cache.max_age_hours: "
                        f"{self.settings.max_age_hours:g})")
        kind, lessons = doc.get("kind"), frozenset(doc.get("lessons") or ())
        if kind not in ("all", "lessons") or (kind == "lessons" and lessons != lesson_ids):
            raise Doubt("the cache does not cover these lessons")
        try:
            shapes = [tuple(s) for s in doc["shapes"]]
            records = {}
            for row in doc["records"]:
                record = dict(zip(shapes[row[0]], row[1:], strict=True))
                records[record["Id"]] = record
        except (KeyError, IndexError, TypeError, ValueError) as e:
            raise Doubt(f"the cache {path} is damaged ({e!r})") from None
        size, cost = doc.get("page_size"), doc.get("full_requests")
        return Entry(path, kind, lessons, records, str(doc.get("watermark") or ""), float(full_read_at),
                     float(doc.get("span_seconds") or 0.0), doc.get("verified") is True,
                     size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None,
                     cost if isinstance(cost, int) and not isinstance(cost, bool) else 0)

    def _distrust(self) -> None:
        """Incremental reads of this target are not to be trusted again (until the folder is deleted)."""
        path = self.folder / DISTRUST_FILE
        try:
            known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(sorted({*known, self.target})), encoding="utf-8")
        except (OSError, ValueError, TypeError) as e:
            log.warning("warning: %s could not be written (%s)", path, e)

    def _distrusted(self) -> bool:
        try:
            known = json.loads((self.folder / DISTRUST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError):
            return True
        return not isinstance(known, list) or self.target in known

    def _store(self, reader: StateReader, seen: Any, lesson_ids: set[int], started: float, *, verified: bool,
               cost: int) -> None:
        records = {r["Id"]: r for r in seen.records}
        lessons = frozenset(lesson_ids) if seen.kind == "lessons" else frozenset()
        watermark = newest(str(r.get("UpdatedOn")) for r in records.values())
        self._save(reader, self.path_of(seen.kind, lessons), seen.kind, lessons, records, watermark, self.clock(),
                   self.monotonic() - started, verified, cost)

    def _save(self, reader: StateReader, path: Path, kind: str, lessons: frozenset[int], records: dict[int, Record],
              watermark: str, full_read_at: float, span: float, verified: bool, full_requests: int) -> None:
        """Write the entry atomically; a cache that cannot be written only costs the next run a full read."""
        shapes: dict[tuple[str, ...], int] = {}
        rows = []
        for record_id in sorted(records):
            record = records[record_id]
            shape = shapes.setdefault(tuple(record), len(shapes))
            rows.append([shape, *record.values()])
        doc = {"format": CACHE_FORMAT, "target": self.target, "reconciler": __version__, "kind": kind,
               "lessons": sorted(lessons), "watermark": watermark, "full_read_at": full_read_at,
               "read_at": self.clock(), "span_seconds": round(span, 3), "verified": verified,
               "page_size": reader.client.page_size,
               "full_requests": full_requests, "shapes": [list(s) for s in shapes], "records": rows}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(handle, "wb") as raw, gzip.open(raw, "wt", encoding="utf-8", compresslevel=1) as out:
                    json.dump(doc, out, separators=(",", ":"))
                os.replace(temporary, path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as e:
            log.warning("warning: the read cache %s could not be written (%s)", path, e)


def _in_scope(records: Iterable[Record], lesson_ids: set[int], convert: Callable[[Record], _Kept]) -> list[_Kept]:
    kept = sorted((r for r in records if r["CourseLessonId"] in lesson_ids), key=lambda r: r["Id"])
    return [convert(r) for r in kept]
