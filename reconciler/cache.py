"""The read cache: the completions last read from a target, so that the next read asks only what changed.

A read of the whole scope costs one request per page (about 1,000 requests for a million completions). The
cache (`.reconciler/cache/`, one file per scope; no secret in it, it names its target and the reconciler
version) keeps the records of the last read and the server's watermark: the largest `UpdatedOn` seen, as
the server wrote it (or this machine's time when it is written, if that is earlier: a stamp from a clock that
runs ahead must not move the range past what others write meanwhile). The range's start is the watermark less
the overlap and the time the last read took (the filters have minutes; clocks differ; a record written while a
long read ran may carry a stamp older than the watermark). The next read is exact, or it is a full read:

1. the records whose `UpdatedOn` is in the range (`from_CourseCompletedLesson_UpdatedOn`), merged by Id:
   every record created or changed since, unless its stamp is older than the range;
2. the table's `TotalItems` (a `size=1` request) for a cache of the whole table. Equal to the merged count:
   nothing was deleted, or as many records were written with stamps older than the range; then
3. the records created in the range whose `UpdatedOn` is before it (`from_…CreatedOn` and `to_…UpdatedOn`;
   none as a rule, 1 request). Those held records created in the range that neither read answers are gone.
   An unchanged scope costs these 3 requests.
4. When the counts differ (or for a cache of some lessons): each lesson's records created before the range
   (`CourseCompletedLesson_CourseLesson` and `to_…CreatedOn`, one `size=1` request each) against those held;
   a lesson that differs (deletions, or records stamped before the range) is read again, alone; or, when it
   differs by a few records over many pages, narrowed down by counting halves of its `CreatedOn` until a
   window of two pages at most, which is read. When what is left to do costs as much as a full read, the read
   is full. What the lessons' counts leave of the table's are records created in the range with an older
   `UpdatedOn` (read as in 3); anything left over means a full read.

Any doubt (a cache of another target or version, a full read older than `cache.max_age_hours`, a filter the
server ignores, an answer that does not add up, more to read again than a full read costs) means a full
read, and `-v` says why. Without a target profile in which `doctor` found the range filter and the counts
working, the first incremental read is checked against a full read once.

The date filters name a minute (`YYYY-MM-DDTHH:mm`), and the API does not say what a bound takes in: `to_X` the
whole minute X or only what comes before X:00:00 (or at it, as a DateTime compare), `from_X` X:00:00 itself or
only what comes after it. Nothing here assumes either. A read asks a minute more than it needs on a side it is
unsure of and keeps what it wanted (`from_` is always asked so, a minute early); a count must be exact, so a
`to_…CreatedOn` count is asked as the server was measured to count (`WHOLE_MINUTE` or `MINUTE_START`): by
`doctor` (the target profile), or else by the cache itself on completions it holds (`probe_created_until`: two
requests as a rule, once, the answer kept in the file). When it cannot be told, the read is full. Under
`MINUTE_START` a count cannot tell a record made in the very second its bound names (before it or at it): a
lesson holding one is read again, and windows are cut where none is.

What no count can show, so that only the maximum age bounds it: a record deleted while another is written
with both `CreatedOn` and `UpdatedOn` older than the range, in the same lesson (anywhere in the table when
the table's count is equal), and an update that sets `UpdatedOn` back before the range. The server stamps
both dates itself, so either takes a writer whose clock is behind by more than the overlap.

The file (gzip, JSON lines) never holds a read twice over: a first line says what it is (`format`, target,
version, watermark, scope; a file of another format, such as an older cache, is refused before anything else
is read), then the records a page to a line: each line the body of the answer that brought them, as the server
wrote it (its line breaks made spaces), or a JSON array of the records (keys in the server's order). A full read
writes each page's body as it arrives (to a temporary body, joined to the first line as a second gzip member
when the read is whole; a page the client kept no body of is encoded by msgspec in one call), and a cache is
loaded, once an incremental read proves worth it, a line at a time into columns by key (`Rows`: about 55 bytes
a record like the lists' in a process's memory, where a dict of them costs 500), a page of records at a time; an
incremental read's rewrite writes them back in Id order.
"""

from __future__ import annotations

import bisect
import dataclasses
import gzip
import hashlib
import heapq
import itertools
import json
import logging
import operator
import os
import shutil
import tempfile
import time
import zlib
from array import array
from collections import Counter
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from reconciler import __version__
from reconciler.client import parse_json
from reconciler.columns import Values, extended
from reconciler.config import CacheSettings, same_target
from reconciler.errors import ApiError, PartialRead, StopRun, TransportError
from reconciler.redact import scrub_bytes
from reconciler.timestamps import timestamp_instant

if TYPE_CHECKING:
    from reconciler.state import Convert, StateReader

log = logging.getLogger(__name__)

CACHE_FORMAT = "reconciler-read-cache/4"
COMPLETIONS = "/api/content/coursecompletedlessons"
CHANGED_SINCE = "from_CourseCompletedLesson_UpdatedOn"
CHANGED_UNTIL = "to_CourseCompletedLesson_UpdatedOn"
CREATED_SINCE = "from_CourseCompletedLesson_CreatedOn"
CREATED_UNTIL = "to_CourseCompletedLesson_CreatedOn"
BY_LESSON = "CourseCompletedLesson_CourseLesson"
RANGE_KEY = f"{COMPLETIONS}?{CHANGED_SINCE.casefold()}"
UPDATED_UNTIL_KEY = f"{COMPLETIONS}?{CHANGED_UNTIL.casefold()}"
CREATED_KEY = f"{COMPLETIONS}?{CREATED_SINCE.casefold()}"
CREATED_UNTIL_KEY = f"{COMPLETIONS}?{CREATED_UNTIL.casefold()}"
FILTER_KEYS = {RANGE_KEY: CHANGED_SINCE, UPDATED_UNTIL_KEY: CHANGED_UNTIL, CREATED_KEY: CREATED_SINCE,
               CREATED_UNTIL_KEY: CREATED_UNTIL}
BY_MEMBER = "CourseCompletedLesson_CourseMember"
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
# What `to_…CreatedOn=X` counts (the API does not say; `probe_created_until` tells): what was made before X+1:00,
# the whole minute X (the emulator's default), or what was made before X:00:00 (or at it: a DateTime compare).
WHOLE_MINUTE, MINUTE_START = "whole-minute", "minute-start"
UNTIL_BOUNDS = (WHOLE_MINUTE, MINUTE_START)
IGNORED = "ignored"
PROBE_SIZE = 10  # records asked of a probe's answer: a lesson and member have one completion as a rule
PROBE_TRIES, PROBE_GETS = 3, 2  # completions a probe tries at most, and of those how many it reads by Id
NEVER = 1 << 62  # the cost of a way not open
COUNTS_KEY = "counts"
DISTRUST_FILE = "distrusted.json"

CHUNK = 1000  # records a line of the file
HEADER_LIMIT = 1 << 24  # the longest first line read: a file of another format is refused without reading it all
STALE_SECONDS = 24 * 3600  # a temporary body this old was left by a run that was killed
COLUMNS = 64  # keys a cache holds as columns at most: a record of a shape with more is held as a record

_Kept = TypeVar("_Kept")
Record = dict[str, Any]
_ID = operator.itemgetter("Id")
_MACHINE = range(-(1 << 63), 1 << 63)  # the Ids a row holds (an Id past them: its record is held as it is)


class Doubt(Exception):
    """Why the cache cannot be trusted for this read: the read is then a full one."""


class Rows:
    """Records held compactly, by Id (a dict of a dozen keys a record costs about 500 bytes; these, for records
    like the lists', about 55 in a process's memory): the records loaded from a file as columns by key
    (`columns.Values`: Ids and other integers as machine integers, texts as codes into their distinct values or
    packed, GUIDs as two numbers), each row's shape (its keys, in the order the server wrote them) a small code;
    beside them, as records, what a merge changed after (a few as a rule): those that replace a row, and those
    added. Each record comes back exactly as it went in (`record`: its keys in their order, its values and their
    types)."""

    def __init__(self) -> None:
        self.shapes: list[tuple[str, ...]] = []  # every shape held (or once held)
        self.known: dict[tuple[str, ...], int] = {}  # each shape's number
        self._rows = 0  # the rows loaded (the columns' length)
        self._shape: array[int] = array("B")  # by row: its shape's number
        self._columns: dict[str, Values] = {}
        self._current: bytearray | None = None  # by row: 1 while the columns hold its record (None: all do)
        self._over: dict[int, Record] = {}  # by Id: records that replace a row
        self._added: dict[int, Record] = {}  # by Id: records of no row, in the order put
        self._order: array[int] | None = None  # the rows by Id, when their Ids do not ascend as loaded
        self._indexed = True
        # `created_since` of every row loaded, for one `since` (and its text)
        self._judged: tuple[tuple[datetime, str], list[Any]] | None = None

    def __len__(self) -> int:
        self._index()
        gone = self._current.count(0) if self._current is not None else 0
        return self._rows - gone + len(self._over) + len(self._added)

    def shape(self, keys: tuple[str, ...]) -> int:
        """The number of a shape of record, added when new (ValueError for one without Id or CourseLessonId)."""
        found = self.known.get(keys)
        if found is None:
            if "Id" not in keys or "CourseLessonId" not in keys or not all(isinstance(k, str) for k in keys):
                raise ValueError(f"a record shape without Id or CourseLessonId: {list(keys)[:20]}")
            found = self.known[keys] = len(self.shapes)
            self.shapes.append(keys)
        return found

    # --- putting ---------------------------------------------------------------------------------------------

    def load(self, records: Any) -> int:
        """Hold the records of one line of the file (ValueError or TypeError when they are not records), as
        columns: each run of records of one shape a key at a time. Returns how many records there were."""
        if type(records) is not list:
            raise ValueError("a line of records is not a list")
        for record in records:
            if type(record) is not dict:
                raise ValueError(f"not a record: {str(record)[:80]}")
        keys = list(map(tuple, records))
        numbers = {shape: self.shape(shape) for shape in dict.fromkeys(keys)}
        ids = list(map(_ID, records))
        if not set(map(type, ids)) <= {int}:
            raise TypeError(f"an Id that is not an integer: {str(next(i for i in ids if type(i) is not int))[:80]}")
        if self._over or self._added or self._current is not None or \
                len(self._columns.keys() | {key for shape in numbers for key in shape}) > COLUMNS or \
                (ids and (min(ids) not in _MACHINE or max(ids) not in _MACHINE)):
            for record in records:  # held as records: rare (an Id past 64 bits, shapes of more keys than columns)
                self.put(record)
            return len(records)
        self._indexed, self._judged = False, None
        at = 0
        for number, run in itertools.groupby(map(numbers.__getitem__, keys)):
            count = len(list(run))
            taken = records[at:at + count] if count < len(records) else records
            at += count
            for key in self.shapes[number]:
                values = list(map(operator.itemgetter(key), taken))
                column = self._columns.get(key)
                if column is None:
                    column = self._columns[key] = Values.of(values)
                    column.pad(self._rows)
                column.extend(values)
            self._rows += count
            for column in self._columns.values():  # the keys this shape has not
                column.pad(self._rows - len(column))
            self._shape = extended(self._shape, [number], count)
        return len(records)

    def put(self, record: Record) -> None:
        """Hold a record (a copy), in place of the one of its Id if any (ValueError for one without Id or
        CourseLessonId)."""
        self.shape(tuple(record))
        record_id = record["Id"]
        row = self._find(record_id)
        if row is None:
            self._added[record_id] = dict(record)
        else:
            self._over[record_id] = dict(record)
            self._stale(row)

    def drop(self, record_id: int) -> None:
        """Let a record go (KeyError when none of that Id is held)."""
        if self._added.pop(record_id, None) is not None:
            return
        row = self._find(record_id)
        if row is None:
            raise KeyError(record_id)
        self._over.pop(record_id, None)
        self._stale(row)

    def _stale(self, row: int) -> None:
        if self._current is None:
            self._current = bytearray(b"\x01") * self._rows
        self._current[row] = 0

    # --- finding ---------------------------------------------------------------------------------------------

    def _ids(self) -> array[int]:
        column = self._columns.get("Id")
        return column.codes if column is not None else array("q")

    def _index(self) -> None:
        """After a load: the rows by Id when their Ids do not ascend (as a full read of the lists' order has
        them), and of an Id loaded twice (a record that moved between the pages of a read) the last record held
        in the place of the first, as a dict that takes both would hold it."""
        if self._indexed:
            return
        self._indexed = True
        ids = self._ids()
        if all(map(operator.lt, ids, itertools.islice(ids, 1, None))):
            self._order = None
            return
        self._order = array("I" if self._rows < 1 << 32 else "Q", sorted(range(self._rows), key=ids.__getitem__))
        twice = [(first, then) for first, then in itertools.pairwise(self._order) if ids[first] == ids[then]]
        for first, then in twice:
            self._stale(then)
            if ids[first] not in self._over:
                self._stale(first)
            self._over[ids[first]] = self._made([then])[0]

    def _find(self, record_id: int) -> int | None:
        """The row whose record (or the one that replaces it) is held for this Id; None when there is none."""
        self._index()
        ids, order = self._ids(), self._order
        if order is None:
            row = bisect.bisect_left(ids, record_id)
            if row >= len(ids):
                return None
        else:
            at = bisect.bisect_left(order, record_id, key=ids.__getitem__)
            if at >= len(order):
                return None
            row = order[at]
        if ids[row] != record_id or not (self._current is None or self._current[row] or record_id in self._over):
            return None
        return row

    def record(self, record_id: int) -> Record | None:
        """The record held of this Id (a new dict each time), or None."""
        return self.records([record_id])[0]

    def records(self, record_ids: Sequence[int]) -> list[Record | None]:
        """The records held of these Ids (None where there is none), the rows among them made at once."""
        found: list[Record | None] = [None] * len(record_ids)
        rows: list[int] = []
        ats: list[int] = []
        for at, record_id in enumerate(record_ids):
            held = self._added.get(record_id) or self._over.get(record_id)
            if held is not None:
                found[at] = dict(held)
            elif (row := self._find(record_id)) is not None:
                rows.append(row)
                ats.append(at)
        for at, record in zip(ats, self._made(rows), strict=True):
            found[at] = record
        return found

    def _made(self, rows: Sequence[int]) -> list[Record]:
        """The records of `rows` from the columns, a key at a time (a shape's rows at once)."""
        shapes = list(map(self._shape.__getitem__, rows))
        if not shapes:
            return []
        if shapes.count(shapes[0]) == len(shapes):
            keys = self.shapes[shapes[0]]
            return list(map(dict, map(zip, itertools.repeat(keys),
                                      zip(*[self._columns[key].take(rows) for key in keys], strict=True))))
        made: list[Record] = [{}] * len(rows)
        groups: dict[int, list[int]] = {}
        for at, shape in enumerate(shapes):
            groups.setdefault(shape, []).append(at)
        for ats in groups.values():
            for at, record in zip(ats, self._made([rows[at] for at in ats]), strict=True):
                made[at] = record
        return made

    # --- all of them -----------------------------------------------------------------------------------------

    def _live(self) -> Sequence[int]:
        """The rows whose records the columns hold."""
        self._index()
        every = range(self._rows)
        return every if self._current is None else list(itertools.compress(every, self._current))

    def _column(self, key: str, rows: Sequence[int], judge: Callable[[Any], Any] | None = None,
                head: Callable[[bytes], int | None] = lambda layout: None) -> list[Any]:
        """Each row's value of `key` (None where its shape has none), judged when `judge` is given."""
        column = self._columns.get(key)
        if column is None:
            values: list[Any] = [None] * len(rows)
            return list(map(judge, values)) if judge is not None else values
        values = column.take(rows) if judge is None else column.judged(rows, judge, head)
        lacking = {number for number, keys in enumerate(self.shapes) if key not in keys}
        if lacking:
            none = judge(None) if judge is not None else None
            for at, shape in enumerate(map(self._shape.__getitem__, rows)):
                if shape in lacking:
                    values[at] = none
        return values

    def values(self, key: str, judge: Callable[[Any], Any] | None = None,
               head: Callable[[bytes], int | None] = lambda layout: None) -> list[Any]:
        """Every record's value of `key` (None for a record without it), judged by `judge` when given, in one
        order for every key (`ids()`'s; not Id order), made a column at a time: what the counting of a cache
        of millions reads. `head` (see `Values.judged`) lets a judge that reads only the first characters of
        stamps of a layout be asked once per distinct such characters."""
        values = self._column(key, self._live(), judge, head)
        extra = [record.get(key) for record in itertools.chain(self._over.values(), self._added.values())]
        return values + (list(map(judge, extra)) if judge is not None else extra)

    def ids(self) -> list[int]:
        """Every record's Id, in the order `values` gives their values."""
        return self.values("Id")

    def created_since(self, since: datetime, since_text: str) -> list[bool]:
        """Whether each record's CreatedOn is at or after `since` (`stamp_since`), in `ids()`'s order: once per
        distinct minute of the stamps in the lists' form (all `stamp_since` reads of them), and for the rows loaded
        once per `since` (a read asks it again for each lesson it narrows down, and the rows never change)."""
        def judge(stamp: Any) -> bool:
            return stamp_since(stamp, since, since_text)

        self._index()
        if self._judged is None or self._judged[0] != (since, since_text):
            self._judged = ((since, since_text), self._column("CreatedOn", range(self._rows), judge, _minute_head))
        every = self._judged[1]
        live = every if self._current is None else list(itertools.compress(every, self._current))
        return live + [judge(record.get("CreatedOn")) for record in
                       itertools.chain(self._over.values(), self._added.values())]

    def chunks(self, lessons: Container[Any] | None = None) -> Iterator[list[Record]]:
        """The records (of `lessons`, when given) in Id order, about CHUNK at a time, each made as it is given."""
        live = self._live()
        if lessons is not None:
            live = list(itertools.compress(live, [lesson in lessons for lesson in
                                                  self._column("CourseLessonId", live)]))
        ids = self._ids()
        if self._order is not None:
            live = sorted(live, key=ids.__getitem__)
        extra = sorted((dict(record) for record in itertools.chain(self._over.values(), self._added.values())
                        if lessons is None or record.get("CourseLessonId") in lessons), key=_ID)
        extra_ids = list(map(_ID, extra))
        taken = 0
        for start in range(0, len(live), CHUNK):
            rows = live[start:start + CHUNK]
            if self._order is None and rows and rows[-1] - rows[0] == len(rows) - 1:  # ascending: a run of rows
                rows = range(rows[0], rows[-1] + 1)
            records = self._made(rows)
            if taken < len(extra):
                until = bisect.bisect_left(extra_ids, ids[live[start + CHUNK]], taken) \
                    if start + CHUNK < len(live) else len(extra)
                if until > taken:
                    records = sorted(records + extra[taken:until], key=_ID)
                    taken = until
            yield records
        if taken < len(extra):
            yield extra[taken:]

    def nbytes(self) -> int:
        """The bytes the rows' arrays hold (not the columns' tables, nor the records held beside them)."""
        arrays = [self._shape, *([self._order] if self._order is not None else [])]
        return (sum(len(a) * a.itemsize for a in arrays) + len(self._current or b"")
                + sum(column.nbytes() for column in self._columns.values()))


def same_values(held: Record, record: Record) -> bool:
    """Whether two records hold the same values, of the same types: `==` takes 1, True and 1.0 for one value, and
    a record whose IsNew went from 1 to true would otherwise be kept as it was."""
    return held == record and [type(held[key]) for key in record] == list(map(type, record.values()))


def _minute_head(layout: bytes) -> int | None:
    """The characters `stamp_since` reads of a stamp of this layout: the first 16 of one in the lists' form."""
    return 16 if len(layout) >= 20 and layout[-1:] == b"Z" and layout[16:17] == b":" and layout[10:11] == b"T" \
        else None


def _second_head(layout: bytes) -> int | None:
    """The characters `first_second` reads of a stamp of this layout: the first 19 of one in the lists' form."""
    return 19 if _minute_head(layout) is not None else None


@dataclass
class Entry:
    """One cache file: the records of a scope (`kind` all: the whole table; lessons: exactly `lessons`)."""

    path: Path
    kind: str
    lessons: frozenset[int]
    records: Rows
    watermark: str
    full_read_at: float
    span_seconds: float
    verified: bool
    page_size: int | None = None  # the page size the server served the full read at
    full_requests: int = 0  # what the last full read cost
    count: int = 0  # the rows the file holds after its first line
    until: str | None = None  # what `to_…CreatedOn` was measured to count (`UNTIL_BOUNDS`), when it was
    first_line: bytes = b""  # the file's first line as `_entry` read it (`_load` reads the rest only if it is so)


@dataclass
class Merge:
    """An incremental read under way: the entry's records as brought up to date so far (the entry's own rows,
    changed in place)."""

    entry: Entry
    since: datetime  # the range's start, a whole minute
    records: Rows
    watermark: str
    returned: set[int] = field(default_factory=set)  # Ids the range read answered
    reread: set[int] = field(default_factory=set)  # lessons read again whole
    fresh: list[Record] = field(default_factory=list)  # what those reads answered
    recent_known: bool = False  # the records created since `since` with an older UpdatedOn have been read
    dirty: bool = False  # whether the records or the watermark differ from the entry's (else it is not rewritten)

    def keep(self, records: Sequence[Record]) -> None:
        """Records as the server has them now, in turn: each held if in the entry's scope (and the merge dirty
        when it differs from the one held, its keys' order included), dropped if it moved out. Those held of
        their Ids are made at once (a lesson read again brings thousands)."""
        rows, kind, lessons = self.records, self.entry.kind, self.entry.lessons
        since: dict[int, Record | None] = {}  # what this call left held of an Id
        for record, first in zip(records, rows.records([record["Id"] for record in records]), strict=True):
            record_id = record["Id"]
            held = since.get(record_id, first)
            if kind == "all" or record["CourseLessonId"] in lessons:
                if held is None or tuple(held) != tuple(record) or not same_values(held, record):
                    rows.put(record)
                    self.dirty = True
                since[record_id] = record
            else:
                if held is not None:
                    rows.drop(record_id)
                    self.dirty = True
                since[record_id] = None
            watermark = newest((str(record.get("UpdatedOn")),), self.watermark)
            self.dirty = self.dirty or watermark != self.watermark
            self.watermark = watermark

    def drop(self, record_id: int) -> None:
        self.records.drop(record_id)
        self.dirty = True

    def pending(self) -> list[int]:
        """Held records created since the range's start that the range read did not answer (outside lessons read
        again): deleted since, unless their UpdatedOn was set back (`ReadCache._recent` tells which)."""
        if self.recent_known:
            return []
        rows = self.records
        return [record_id for record_id, lesson, new in zip(
                    rows.ids(), rows.values("CourseLessonId"), rows.created_since(self.since, minute_text(self.since)),
                    strict=True)
                if new and record_id not in self.returned and lesson not in self.reread]


class Body:
    """The records of a full read a page at a time as they arrive (`FullRead`'s hook), each page a line of a
    temporary file beside the cache, so that nothing holds them all; with the newest UpdatedOn seen. Each page is
    compressed and written as it is taken in (the body of its answer as it came, or encoded when the client kept
    none), in the read's thread: the request for the next page is on the wire by then, and zlib lets go of the
    interpreter while it works, so the server's work on the next page and the thread asking for it go on
    meanwhile. (A thread of the body's own cost more: its compression ran beside the read's own work and took a
    core from a server on the same machine; about 10 ms of a plan of 3,000 members against the local emulator
    served.) `against`: the rows of an incremental read to check record for record (the Ids in scope that differ
    are noted)."""

    def __init__(self, folder: Path, against: Rows | None = None, lesson_ids: set[int] | None = None) -> None:
        self.count = 0  # the records written
        self.watermark, self._last = "", None
        self._best_at: datetime | None = None  # the watermark's instant (None: not read yet)
        self.against, self.lesson_ids = against, lesson_ids or set()
        self.differ: set[int] = set()
        self.path: Path | None = None
        self._out: Any = None
        self._failed: OSError | None = None  # what stopped the writing (only the cache is lost)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for stale in folder.glob(".body.*"):  # left by a run that was killed
                if time.time() - stale.stat().st_mtime > STALE_SECONDS:
                    stale.unlink(missing_ok=True)
            handle, name = tempfile.mkstemp(dir=folder, prefix=".body.")
            self.path = Path(name)
            self._out = gzip.GzipFile(fileobj=os.fdopen(handle, "wb"), mode="wb", compresslevel=1)
        except OSError as e:
            log.warning("warning: the read cache in %s could not be written (%s)", folder, e)
            self.close()

    def keep(self, page: list[Record]) -> None:
        """A page of raw records (or a whole table read at once: written CHUNK records a line). A page that cannot
        be written (a full disk) costs only the cache: the body is let go, and the read goes on; anything else
        that fails is a fault, raised here."""
        try:  # a page holds a handful of distinct stamps: each is judged once, in the order they came
            stamps: Iterable[Any] = dict.fromkeys([record.get("UpdatedOn") for record in page])
        except TypeError:  # a stamp that is a list or an object
            stamps = [record.get("UpdatedOn") for record in page]
        for stamp in stamps:
            if stamp != self._last:
                self._newer(stamp)
        if self.against is not None:
            self._check(page, self.against)
        if self._out is None or not page:
            return
        try:
            self._write(self._out, page)
        except OSError as e:
            self._failed = e  # said once, as the body is let go
            self.close()
            return
        self.count += len(page)

    @staticmethod
    def _write(out: Any, page: list[Record]) -> None:
        """The answer's body the page was read from, as it came, when the client kept it (`PageRecords.text`: a
        line of its own once any line break in it, which JSON allows only between values, is a space), else CHUNK
        records a line."""
        text = getattr(page, "text", None)
        if text is not None:  # copied only when it holds a line break (a server's pretty print), or a credential
            text = scrub_bytes(text)
            if b"\n" in text or b"\r" in text:
                text = text.replace(b"\n", b" ").replace(b"\r", b" ")
            out.write(text)
            out.write(b"\n")
            return
        for start in range(0, len(page), CHUNK):
            write_records(out, page if len(page) <= CHUNK else page[start:start + CHUNK])

    def _check(self, page: list[Record], against: Rows) -> None:
        """Note the records in scope that differ from those the incremental read holds (made a page at once)."""
        scope = [record for record in page if record["CourseLessonId"] in self.lesson_ids]
        for record, held in zip(scope, against.records([record["Id"] for record in scope]), strict=True):
            if held is not None and same_values(held, record):
                self.differ.discard(record["Id"])
            else:
                self.differ.add(record["Id"])

    def _newer(self, stamp: Any) -> None:
        """The watermark (as `newest`): a UTC stamp of the lists' form is compared as text with one of its length
        and form (which orders as the instant does); any other is read."""
        self._last = stamp
        text, best = str(stamp), self.watermark
        if len(text) == len(best) and text[-1:] == best[-1:] == "Z" and text[10:11] == best[10:11] == "T":
            if text > best:
                self.watermark, self._best_at = text, None
            return
        at, best_at = timestamp_instant(text), self._best_at or timestamp_instant(best)
        if at is not None and (best_at is None or at > best_at):
            self.watermark, self._best_at = text, at

    def finish(self) -> Path | None:
        """Stop writing: the body's file, complete (None when it could not be written)."""
        out, self._out = self._out, None
        if out is None:
            return None
        failed, self._failed = self._failed, None
        raw = out.fileobj
        try:
            try:
                out.close()
            finally:
                raw.close()
        except OSError as e:
            failed = failed or e
        if failed is not None:
            log.warning("warning: the read cache could not be written (%s)", failed)
            return None
        return self.path

    def close(self) -> None:
        """Stop writing and delete the body (after `ReadCache._commit`, or when the read is not to be kept)."""
        try:
            self.finish()
        except OSError:
            pass
        finally:
            if self.path is not None:
                self.path.unlink(missing_ok=True)
                self.path = None


_ENCODE = msgspec.json.Encoder().encode


def write_records(out: Any, records: list[Record]) -> None:
    """One line of the file: the records as a JSON array, by msgspec in one call; by the standard library when
    msgspec would not write them exactly: a lone surrogate (which it refuses), NaN or an infinity (which it
    writes as null: so a line with more nulls than the records' values of None is written again)."""
    try:
        text = _ENCODE(records)
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError):
        text = b""
    if not text or (b"null" in text and text.count(b"null") != operator.countOf(
            itertools.chain.from_iterable(map(dict.values, records)), None)):
        text = json.dumps(records, separators=(",", ":")).encode()
    out.write(scrub_bytes(text))
    out.write(b"\n")


def read_line(line: bytes) -> Any:
    """The records of a line of the file: a JSON array of them (`write_records`), or the body of the answer they
    came in (an object: its `Records`), read as the client reads an answer (`parse_json`: msgspec, or the
    standard library when msgspec refuses it: NaN, an infinity, a lone surrogate)."""
    value = parse_json(line)
    if type(value) is dict:
        value = value.get("Records")
    return value


def created_since(record: Record, since: datetime, since_text: str) -> bool:
    """Whether the record's CreatedOn is at or after `since` (a whole minute, `since_text` its minute_text), as
    instants."""
    return stamp_since(record.get("CreatedOn"), since, since_text)


def stamp_since(stamp: Any, since: datetime, since_text: str) -> bool:
    """Whether a stamp is at or after `since` (`created_since`). A UTC stamp in the lists' form
    (`2026-08-27T08:47:09Z`, or with fractions) is judged by its minute alone, which orders as its instant does
    (a million of them are judged per read); any other form is read."""
    if isinstance(stamp, str) and len(stamp) >= 20 and stamp[-1] == "Z" and stamp[16] == ":" and stamp[10] == "T":
        return stamp[:16] >= since_text
    at = timestamp_instant(stamp)
    return at is not None and at >= since


def minute_text(moment: datetime) -> str:
    """The range filter's format: `YYYY-MM-DDTHH:mm`, in UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def first_second(stamp: Any, minute: datetime, text: str) -> bool:
    """Whether a stamp is in the first second of `minute` (`text` its minute_text): the one second a `MINUTE_START`
    count may take either way (`<` or `<=` X:00:00), and a list's whole seconds cannot tell which."""
    if isinstance(stamp, str) and len(stamp) >= 20 and stamp[-1] == "Z" and stamp[16] == ":" and stamp[10] == "T":
        return stamp[:16] == text and stamp[17:19] == "00"
    at = timestamp_instant(stamp)
    return at is not None and minute <= at < minute + SECOND


def probe_created_until(client: Any, records: Iterable[Record]) -> tuple[str | None, str]:
    """What `to_…CreatedOn=HH:mm` counts on this server (`WHOLE_MINUTE` or `MINUTE_START`; `IGNORED`; None when no
    completion could tell), and what was seen. Read-only: for a completion of `records` (newest first is best) made
    inside a minute (not in its first second, by the list's stamp, or for `PROBE_GETS` of them by get-by-id's),
    whether the bound at its minute counts it (the whole minute; then the bound at the minute before must not) or
    not (then the bound at the next minute must: else it is gone, and another is tried). Each request is filtered
    by the completion's lesson and member, so that its answer holds a handful of records: 2 requests as a rule."""
    tries, gets = PROBE_TRIES, PROBE_GETS
    tried: set[int] = set()
    for record in records:
        if tries <= 0:
            break
        record_id, lesson, member = record.get("Id"), record.get("CourseLessonId"), record.get("CourseMemberId")
        at = timestamp_instant(record.get("CreatedOn"))
        if at is None or type(record_id) is not int or type(lesson) is not int or type(member) is not int or \
                record_id in tried:
            continue
        tried.add(record_id)
        if not (at.second or at.microsecond):  # the list's whole seconds: get-by-id has them to 100 ns
            if gets <= 0:
                continue
            gets -= 1
            try:
                got = client.get(COMPLETIONS, record_id)
            except (TransportError, StopRun):
                raise
            except ApiError:
                continue
            at = timestamp_instant(got.get("CreatedOn")) if got is not None else None
            if at is None or not (at.second or at.microsecond):
                continue
        tries -= 1
        minute = at.replace(second=0, microsecond=0)
        made = f"completion {record_id} (made {at.isoformat().replace('+00:00', 'Z')})"
        within = _counts(client, record_id, lesson, member, minute)
        if within is None:
            continue
        if within:
            before = _counts(client, record_id, lesson, member, minute - MINUTE)
            if before is None:
                continue
            if before:
                return IGNORED, f"{CREATED_UNTIL}={minute_text(minute - MINUTE)} counted {made}"
            return WHOLE_MINUTE, (f"{CREATED_UNTIL}={minute_text(minute)} counted {made}, "
                                  f"{minute_text(minute - MINUTE)} did not: a bound takes in the whole minute it names")
        if _counts(client, record_id, lesson, member, minute + MINUTE):
            return MINUTE_START, (f"{CREATED_UNTIL}={minute_text(minute)} did not count {made}, "
                                  f"{minute_text(minute + MINUTE)} did: a bound stops at the minute it names")
    return None, "no completion made inside a minute answered both ways (none held, or none left)"


def _counts(client: Any, record_id: int, lesson: int, member: int, minute: datetime) -> bool | None:
    """Whether `to_…CreatedOn=minute` counts the completion (filtered by its lesson and member); None when the
    answer cannot show it (more records than it holds)."""
    page = client.page(COMPLETIONS, {BY_LESSON: lesson, BY_MEMBER: member, CREATED_UNTIL: minute_text(minute)},
                       size=PROBE_SIZE)
    if any(r.get("Id") == record_id for r in page.records):
        return True
    total = page.body.get("TotalItems")
    return False if type(total) is int and total <= len(page.records) else None


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
    working (otherwise the first incremental read is checked against a full read). `until`: what `to_…CreatedOn`
    was measured to count (`UNTIL_BOUNDS`), or None when nothing measured it: the cache then measures it itself when
    a count needs it (`probe_created_until`) and keeps it in its file. A caller that gives none vouches for the
    whole minute, the emulator's default; `target.read_cache` gives the profile's, or None."""

    def __init__(self, folder: Path, target: str, settings: CacheSettings, *, vouched: bool = False,
                 until: str | None = WHOLE_MINUTE, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.folder = folder
        self.target = target
        self.settings = settings
        self.vouched = vouched
        self.until = until if until in UNTIL_BOUNDS else None
        self.clock = clock
        self.monotonic = monotonic
        self.last: str = ""  # how the last read went: "full (why)" or "incremental"
        self._full_requests = 0  # what a full read of the entry under way cost
        self._until = self.until  # what the read under way counts by: `until`, else the file's, else measured

    # --- the read ---------------------------------------------------------------------------------

    def collect(self, reader: StateReader, lesson_ids: set[int], named_members: set[int] | None,
                markers: Iterable[str], convert: Convert[_Kept]) -> tuple[Sequence[_Kept], list[str]]:
        started = self.monotonic()
        entry: Entry | None = None
        self._until = self.until
        try:
            entry = self._entry(lesson_ids)
            self._until = self.until or entry.until
            records, watermark, dirty = self._incremental(reader, entry, lesson_ids)
        except Doubt as e:
            why = str(e)
            if entry is not None:
                entry.records = Rows()  # let the rows go before the full read: it holds its own
        else:
            span = self.monotonic() - started
            if entry.verified or self.vouched:
                if dirty or not entry.verified or entry.until != self._until:
                    self._save(reader, entry.path, entry.kind, entry.lessons, records, watermark, entry.full_read_at,
                               span, True, entry.full_requests)
                self.last = "incremental"
                log.info("read cache: %s brought up to date (%d completions); exact by counts", entry.path.name,
                         len(records))
                if any("SystemId" not in keys for keys in records.shapes):  # as a list read does
                    if markers:
                        reader.refuse_owned_without_system_id(sorted(set(markers)))
                    reader.client.observed.add("systemid-absent-from-lists")
                return _in_scope(records, lesson_ids, convert), []
            why = ("no target profile vouches for the range filter and counts (`reconciler doctor`): checking the "
                   "incremental read against a full read once")
            log.info("read cache: %s", why)
            in_scope = sum(1 for lesson in records.values("CourseLessonId") if lesson in lesson_ids)
            body = Body(self.folder, records, lesson_ids)
            try:
                asked = reader.client.stats.requests
                # Its records are compared whole with those held: a lean read (`Convert.fields`) would keep too few.
                whole = dataclasses.replace(convert, fields=None)
                found, partial, kind = self._full(reader, lesson_ids, named_members, markers, whole, body)
                if partial or kind is None:
                    return found, partial
                if body.differ or len(found) != in_scope:
                    log.warning("warning: read cache: an incremental read of %s differed from the full read; the "
                                "cache is not used for it again (delete %s to try anew)", self.target, self.folder)
                    self._distrust()
                    self.last = "full (the incremental read differed: not trusted again)"
                    return found, partial
                body.against = None
                self._commit(reader, body, kind, lesson_ids, started, verified=True,
                             cost=reader.client.stats.requests - asked)
                self.last = "full (checking the incremental read)"
                return found, partial
            finally:
                body.close()
        log.info("read cache: reading in full: %s", why)
        self.last = f"full ({why})"
        body = Body(self.folder)
        try:
            asked = reader.client.stats.requests
            found, partial, kind = self._full(reader, lesson_ids, named_members, markers, convert, body)
            if not partial and kind is not None:
                self._commit(reader, body, kind, lesson_ids, started, verified=entry.verified if entry else False,
                             cost=reader.client.stats.requests - asked)
            return found, partial
        finally:
            body.close()

    @staticmethod
    def _full(reader: StateReader, lesson_ids: set[int], named_members: set[int] | None, markers: Iterable[str],
              convert: Convert[_Kept], body: Body) -> tuple[Sequence[_Kept], list[str], str | None]:
        """A full read, each raw record handed to `body` as it arrives; with what it covers (`FullRead.kind`)."""
        from reconciler.state import FullRead

        seen = FullRead(body.keep)
        found, partial = reader.read_completions(lesson_ids, named_members, markers, convert, seen)
        return found, partial, seen.kind

    def _incremental(self, reader: StateReader, entry: Entry,
                     lesson_ids: set[int]) -> tuple[Rows, str, bool]:
        """The entry brought up to date exactly, its new watermark, and whether either changed; Doubt when that
        cannot be proven."""
        client = reader.client
        least = 3 if entry.kind == "all" else 2 + len(entry.lessons)
        if least >= entry.full_requests:
            raise Doubt(f"a full read costs no more ({entry.full_requests} requests) than the fewest an incremental "
                        f"one takes ({least})")
        for key, name in FILTER_KEYS.items():
            if key in client.ignored_filters:
                raise Doubt(f"the server ignores {name}")
        mark = timestamp_instant(entry.watermark)
        if mark is None:
            raise Doubt(f"the cache's watermark {entry.watermark!r} is not a date")
        since = mark - timedelta(minutes=self.settings.overlap_minutes, seconds=entry.span_seconds)
        since = since.replace(second=0, microsecond=0)
        if entry.page_size is not None:  # what a full read would cost is judged at the size the server serves
            client.page_size = min(client.page_size, entry.page_size)
        self._full_requests = entry.full_requests
        merge = Merge(entry, since, entry.records, entry.watermark)
        try:
            changed = self._changes(client, merge)
            if entry.kind == "all":
                table = self._table_count(reader)
                if table == len(merge.records):  # nothing deleted, or as many records stamped before the range
                    self._recent(client, merge)
                if table != len(merge.records):
                    self._explain(reader, merge, table)
            else:
                self._recent(client, merge)
                self._per_lesson(reader, merge, sorted(entry.lessons), None)
        except PartialRead as e:
            raise Doubt(f"an answer did not add up: {e}") from None
        log.info("read cache: %d completion(s) changed since %s", changed, minute_text(since))
        return merge.records, merge.watermark, merge.dirty

    def _changes(self, client: Any, merge: Merge) -> int:
        """Every record changed since the range's start, merged by Id (1 request when they fit a page). Asked from
        the minute before: whether `from_X` takes in X:00:00 itself or not, every record from the start is in. The
        entry's records are loaded only once the count shows the read worth it: a run that reads in full anyway
        never holds them beside what it reads (at 200,000 members, half a GiB)."""
        since, held = merge.since, merge.entry.count
        asked = {CHANGED_SINCE: minute_text(since - MINUTE)}
        total, first = client.count(COMPLETIONS, asked)
        if total is None:
            raise Doubt("a count answered no TotalItems")
        self._within(first.records, since, client)
        if total > client.page_size and client.pages_for(total) >= client.pages_for(held):
            raise Doubt(f"{total:,} completions changed since {minute_text(since - MINUTE)}: as many pages as a full "
                        "read")
        self._load(merge.entry)
        for page in client.pages(COMPLETIONS, asked, first=first):
            self._within(page, since, client)
            merge.returned.update(record["Id"] for record in page)
            merge.keep(page)
        return int(total)

    def _within(self, page: list[Record], since: datetime, client: Any) -> None:
        """Every record the range filter answered is in what was asked (from the minute before the range); else the
        server ignored it."""
        for record in page:
            at = timestamp_instant(record.get("UpdatedOn"))
            if at is None:
                raise Doubt(f"completion {record['Id']} has no readable UpdatedOn ({record.get('UpdatedOn')!r})")
            if at < since - MINUTE:
                client.ignored_filters.add(RANGE_KEY)
                raise Doubt(f"the server ignored {CHANGED_SINCE}={minute_text(since - MINUTE)}: it answered completion "
                            f"{record['Id']} of UpdatedOn {record.get('UpdatedOn')}")

    def _recent(self, client: Any, merge: Merge) -> None:
        """The records created since the range's start whose UpdatedOn is before it (a writer's clock behind, a
        stamp set back): the range missed them, so they are read by CreatedOn (1 request; there are none as a
        rule). Held records created since the start that neither read returns were deleted. Asked from the minute
        before the start, up to its minute (whichever bound each takes in, every record it must find is in: the
        more it finds are held as they are)."""
        since = merge.since
        filters = {CREATED_SINCE: minute_text(since - MINUTE), CHANGED_UNTIL: minute_text(since)}
        total, first = client.count(COMPLETIONS, filters)
        if total is None:
            raise Doubt("a count answered no TotalItems")
        self._created_since(first.records, since, client)
        if total > client.page_size and client.pages_for(total) >= self._full_requests:
            raise Doubt(f"{total:,} completions created since {minute_text(since)} carry an older UpdatedOn: as "
                        "many pages as a full read")
        found: dict[int, Record] = {}
        for page in client.pages(COMPLETIONS, filters, first=first):
            self._created_since(page, since, client)
            found.update((r["Id"], r) for r in page)
        for record_id in merge.pending():
            if record_id not in found:
                merge.drop(record_id)
        merge.keep([record for record in found.values() if record["CourseLessonId"] not in merge.reread])
        merge.recent_known = True
        late = sum(1 for r in found.values() if (timestamp_instant(r.get("CreatedOn")) or since) >= since
                   and (timestamp_instant(r.get("UpdatedOn")) or since) < since)
        if late:
            log.info("read cache: %d completion(s) created since %s with an UpdatedOn before it", late,
                     minute_text(since))

    def _created_since(self, page: list[Record], since: datetime, client: Any) -> None:
        """What `_recent` asked: created at or after the minute before `since`, updated before the minute after it."""
        for record in page:
            created, updated = timestamp_instant(record.get("CreatedOn")), timestamp_instant(record.get("UpdatedOn"))
            if created is None or created < since - MINUTE:
                client.ignored_filters.add(CREATED_KEY)
                raise Doubt(f"the server ignored {CREATED_SINCE}={minute_text(since - MINUTE)}: it answered completion "
                            f"{record['Id']} of CreatedOn {record.get('CreatedOn')}")
            if updated is None or updated >= since + MINUTE:
                client.ignored_filters.add(UPDATED_UNTIL_KEY)
                raise Doubt(f"the server ignored {CHANGED_UNTIL}={minute_text(since)}: it answered completion "
                            f"{record['Id']} of UpdatedOn {record.get('UpdatedOn')}")

    def _explain(self, reader: StateReader, merge: Merge, table: int) -> None:
        """The table's count differs from what is held: count each lesson, read again those that differ, and
        account for every record."""
        lessons = sorted(set(merge.records.values("CourseLessonId")))
        if len(lessons) + 2 >= reader.client.pages_for(table):
            raise Doubt(f"the server counts {table:,} completions, {len(merge.records):,} held, and counting "
                        f"{len(lessons)} lessons costs as much as a full read")
        self._per_lesson(reader, merge, lessons, table)
        if not merge.recent_known and (table != len(merge.records) or merge.pending()):
            self._recent(reader.client, merge)
        if table != len(merge.records):  # records in lessons the cache never saw, or a change meanwhile
            raise Doubt(f"the lessons' counts do not add up to the table's ({table:,}; {len(merge.records):,} "
                        "accounted for)")

    def _per_lesson(self, reader: StateReader, merge: Merge, lessons: list[int], table: int | None) -> None:
        """Each lesson's records created before the range's start, counted (one `size=1` request each): those
        held are exactly the server's unless some were deleted or written with dates before the range. A lesson
        whose count differs is read again, alone, unless that costs as much as a full read; so is a lesson whose
        count cannot be told (`MINUTE_START`: a record made in the start's first second)."""
        client, since = reader.client, merge.since
        until = self._bound(reader, merge)
        full = min(client.pages_for(table) if table is not None else NEVER, self._full_requests or NEVER)
        older: Counter[int] = Counter()
        newer: Counter[int] = Counter()
        since_text = minute_text(since)
        rows = merge.records
        edges: set[int] = set()  # lessons holding a record made in the first second of `since` (`MINUTE_START`)
        held, new = rows.values("CourseLessonId"), rows.created_since(since, since_text)
        newer.update(itertools.compress(held, new))
        older.update(itertools.compress(held, [not n for n in new]))
        if until == MINUTE_START:
            edge = rows.values("CreatedOn", lambda stamp: first_second(stamp, since, since_text), _second_head)
            edges.update(lesson for lesson, n, e in zip(held, new, edge, strict=True) if n and e)
        differ: dict[int, int | None] = {}
        again = 0
        for done, lesson in enumerate(lessons, 1):
            counted = None if lesson in edges else self._count(reader, lesson, since, until)
            if counted != older[lesson]:
                differ[lesson] = counted
                again += self._cost_again(client, counted, older[lesson], newer[lesson])
                # What is left of this way (the lessons still to count, those to read again) against a full read.
                if again + len(lessons) - done >= full:
                    raise Doubt(f"{len(differ)} of {done} lessons counted differ: counting the rest and reading "
                                f"those again costs at least {again + len(lessons) - done} requests, a full read "
                                f"{full}")
        for lesson, counted in differ.items():
            if counted is not None and self._narrows(client, counted, older[lesson], newer[lesson]) and \
                    self._narrow(reader, merge, lesson, counted, until):
                continue
            if counted is None:
                log.info("read cache: lesson %d holds a completion made in the first second of %s, which a count to "
                         "that minute may take either way: reading it again", lesson, since_text)
            else:
                log.info("read cache: lesson %d counts %d completion(s) created before %s, %d held: reading it again",
                         lesson, counted, since_text, older[lesson])
            fresh: list[Record] = []
            for page in client.pages(COMPLETIONS, {BY_LESSON: lesson}):
                if any(r.get("CourseLessonId") != lesson for r in page):
                    raise Doubt(f"the server ignored {BY_LESSON}")
                fresh += page
            merge.reread.add(lesson)
            merge.fresh += fresh
        whole = {lesson for lesson in differ if lesson in merge.reread}
        if whole:
            for record_id, lesson in zip(rows.ids(), rows.values("CourseLessonId"), strict=True):
                if lesson in whole:
                    merge.drop(record_id)
            merge.keep(merge.fresh)

    def _bound(self, reader: StateReader, merge: Merge) -> str:
        """What a `to_…CreatedOn` count asks by: as a target profile or this cache's file says it was measured, or
        measured now on the records held, those the range read answered first (then the file keeps it); Doubt when
        it cannot be told, or the server ignores the filter."""
        if self._until is not None:
            return self._until
        rows = merge.records

        def candidates() -> Iterator[Record]:
            """Those the range read answered, newest first; then, only if they could not tell, the newest held."""
            def made(record: Record) -> str:
                return str(record.get("CreatedOn"))

            answered = [record for record in rows.records(list(merge.returned)) if record is not None]
            yield from sorted(answered, key=made, reverse=True)
            ids, created = rows.ids(), list(map(str, rows.values("CreatedOn")))
            newest = heapq.nlargest(PROBE_TRIES + PROBE_GETS, range(len(ids)), key=created.__getitem__)
            yield from (record for record in rows.records([ids[at] for at in newest]) if record is not None)

        until, seen = probe_created_until(reader.client, candidates())
        if until == IGNORED:
            reader.client.ignored_filters.add(CREATED_UNTIL_KEY)
            raise Doubt(f"the server ignored {CREATED_UNTIL}: {seen}")
        if until not in UNTIL_BOUNDS:
            raise Doubt(f"what {CREATED_UNTIL}=HH:mm counts is not known here and could not be measured ({seen}); "
                        "`reconciler doctor` measures it")
        log.info("read cache: %s", seen)
        self._until = until
        merge.dirty = True  # the file keeps it
        return until

    @staticmethod
    def _narrows(client: Any, counted: int, held: int, newer: int) -> bool:
        """Whether a lesson whose count differs by a few of many pages is narrowed down by counting windows of
        its CreatedOn rather than read again whole (a delete among 20 pages: about 6 requests instead of 20)."""
        pages = int(client.pages_for(counted + newer))
        return pages >= 4 and abs(held - counted) * 4 <= pages

    def _cost_again(self, client: Any, counted: int | None, held: int, newer: int) -> int:
        """What bringing a lesson whose count differs (or cannot be told: None) up to date is expected to cost."""
        if counted is None:
            return int(client.pages_for(held + newer))
        pages = int(client.pages_for(counted + newer))
        if self._narrows(client, counted, held, newer):
            return min(pages, abs(held - counted) * (pages.bit_length() + 2))
        return pages

    def _narrow(self, reader: StateReader, merge: Merge, lesson: int, counted: int, until: str) -> bool:
        """Bring a lesson's records created before the range up to date by halving windows of CreatedOn: a window
        whose count equals the records held in it is taken as it is (as a lesson's is), one that differs is split
        at the middle of what is held, down to a window of two pages at most, which is read. A window's count is
        the count before its end less the count before its start (so no `from_` bound is counted by). False
        (nothing done) when a held record has no readable CreatedOn."""
        client, since = reader.client, merge.since
        since_text = minute_text(since)
        held: list[tuple[datetime, int]] = []
        rows = merge.records
        ids = [record_id for record_id, of, new in zip(rows.ids(), rows.values("CourseLessonId"),
                                                       rows.created_since(since, since_text), strict=True)
               if of == lesson and not new]
        for record_id, record in zip(ids, rows.records(ids), strict=True):
            at = timestamp_instant(record.get("CreatedOn")) if record is not None else None
            if at is None:
                return False
            held.append((at, record_id))
        held.sort()
        log.info("read cache: lesson %d counts %d completion(s) created before %s, %d held: narrowing it down by "
                 "CreatedOn", lesson, counted, since_text, len(held))
        # (start, end, the server's count in [start, end), the server's count before start, those held in it)
        windows: list[tuple[datetime | None, datetime, int, int, list[tuple[datetime, int]]]] = [
            (None, since, counted, 0, held)]
        while windows:
            start, end, server, below, inside = windows.pop()
            if server == len(inside):
                continue
            middle = self._middle(inside, start, until)
            if client.pages_for(max(server, len(inside))) <= 2 or middle is None or middle >= end:
                self._read_window(client, merge, lesson, start, end, inside, until)
                continue
            left = self._count(reader, lesson, middle, until) - below
            windows.append((start, middle, left, below, [x for x in inside if x[0] < middle]))
            windows.append((middle, end, server - left, below + left, [x for x in inside if x[0] >= middle]))
        after = sum(1 for of, new in zip(rows.values("CourseLessonId"), rows.created_since(since, since_text),
                                         strict=True) if of == lesson and not new)
        if after != counted:
            raise Doubt(f"lesson {lesson} counts {counted:,} completions created before {since_text}; its windows "
                        f"add up to {after:,}")
        return True

    @staticmethod
    def _middle(inside: list[tuple[datetime, int]], start: datetime | None, until: str) -> datetime | None:
        """Where a window is split: the minute of the middle record held, after `start`; under `MINUTE_START`, the
        first such minute in whose first second no record held was made (a count may take one either way)."""
        if not inside:
            return None
        middle = inside[len(inside) // 2][0].replace(second=0, microsecond=0)
        if start is not None and middle <= start:
            middle = start + MINUTE
        if until == MINUTE_START:
            at = bisect.bisect_left(inside, middle, key=operator.itemgetter(0))
            while at < len(inside) and inside[at][0] < middle + SECOND:
                middle += MINUTE
                at = bisect.bisect_left(inside, middle, key=operator.itemgetter(0))
        return middle

    def _read_window(self, client: Any, merge: Merge, lesson: int, start: datetime | None, end: datetime,
                     inside: list[tuple[datetime, int]], until: str) -> None:
        """Read a lesson's records created in [start, end) and hold them instead of those held there: asked from the
        minute before `start` (whichever `from_` means) to `end` as `until` counts, the rest of the answer left."""
        filters: dict[str, Any] = {BY_LESSON: lesson, CREATED_UNTIL: minute_text(end - MINUTE if until == WHOLE_MINUTE
                                                                                 else end)}
        if start is not None:
            filters[CREATED_SINCE] = minute_text(start - MINUTE)
        fresh: list[Record] = []
        for page in client.pages(COMPLETIONS, filters):
            for record in page:
                at = timestamp_instant(record.get("CreatedOn"))
                if record.get("CourseLessonId") != lesson or at is None or (at >= end if until == WHOLE_MINUTE
                                                                           else at > end) or \
                        (start and at < start - MINUTE):
                    raise Doubt(f"the server ignored {BY_LESSON}, {CREATED_SINCE} or {CREATED_UNTIL}: asked for "
                                f"lesson {lesson}'s completions created from {minute_text(start) if start else '-'} "
                                f"to {minute_text(end)}, it answered completion {record['Id']} of lesson "
                                f"{record.get('CourseLessonId')} created {record.get('CreatedOn')}")
                if at < end and (start is None or at >= start):
                    fresh.append(record)
        for _, record_id in inside:
            merge.drop(record_id)
        merge.keep(fresh)

    @staticmethod
    def _table_count(reader: StateReader) -> int:
        """The table's count: one `size=1` request."""
        total = reader.client.page(COMPLETIONS, {}, size=1).body.get("TotalItems")
        if not isinstance(total, int) or isinstance(total, bool):
            raise Doubt("a count answered no TotalItems")
        return total

    def _count(self, reader: StateReader, lesson: int, before: datetime, until: str) -> int:
        """A lesson's records created before `before` (a whole minute), asked as `until` says the server counts:
        one `size=1` request."""
        bound = before - MINUTE if until == WHOLE_MINUTE else before
        page = reader.client.page(COMPLETIONS, {BY_LESSON: lesson, CREATED_UNTIL: minute_text(bound)}, size=1)
        total = page.body.get("TotalItems")
        if not isinstance(total, int) or isinstance(total, bool):
            raise Doubt("a count answered no TotalItems")
        for record in page.records:
            if record.get("CourseLessonId") != lesson:
                raise Doubt(f"the server ignored {BY_LESSON}")
            created = timestamp_instant(record.get("CreatedOn"))
            if created is not None and (created >= before if until == WHOLE_MINUTE else created > before):
                reader.client.ignored_filters.add(CREATED_UNTIL_KEY)
                raise Doubt(f"the server ignored {CREATED_UNTIL}: it counted completion {record['Id']} of CreatedOn "
                            f"{record.get('CreatedOn')}")
        return total

    # --- the files ----------------------------------------------------------------------------------

    def path_of(self, kind: str, lessons: Iterable[int] = ()) -> Path:
        if kind == "all":
            return self.folder / "completions-all.json.gz"
        digest = hashlib.sha256(",".join(map(str, sorted(lessons))).encode()).hexdigest()[:16]
        return self.folder / f"completions-lessons-{digest}.json.gz"

    def _entry(self, lesson_ids: set[int]) -> Entry:
        """The cache entry that covers `lesson_ids`, its first line checked (its records are loaded by `_load` once
        a read needs them); Doubt saying why there is none."""
        if self._distrusted():
            raise Doubt(f"an incremental read of this target once differed from a full read ({DISTRUST_FILE})")
        why = "no cache yet"
        for path in (self.path_of("all"), self.path_of("lessons", lesson_ids)):
            try:
                with gzip.open(path, "rb") as handle:
                    first = handle.readline(HEADER_LIMIT)
                try:
                    doc = json.loads(first) if first.endswith(b"\n") else None
                except (ValueError, RecursionError):
                    doc = None
                entry = self._checked(path, doc, lesson_ids)
                entry.first_line = first
                return entry
            except FileNotFoundError:
                continue
            except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:
                raise Doubt(f"the cache {path} cannot be read ({e})") from None
        raise Doubt(why)

    @staticmethod
    def _load(entry: Entry) -> None:
        """The records after the first line, into `entry.records`; Doubt when the file is damaged, or is no longer
        the one whose first line `_entry` checked (another run rewrote it meanwhile)."""
        rows, count = entry.records, 0
        try:
            with gzip.open(entry.path, "rb") as handle:
                if handle.readline(HEADER_LIMIT) != entry.first_line:
                    raise Doubt(f"the cache {entry.path} was rewritten while this run read it")
                for line in handle:
                    count += rows.load(read_line(line))
            if count != entry.count:
                raise ValueError(f"{count:,} records, the first line says {entry.count:,}")
        except (KeyError, IndexError, TypeError, ValueError, RecursionError) as e:
            raise Doubt(f"the cache {entry.path} is damaged ({e!r})") from None
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as e:  # zlib: damage gzip finds mid-stream
            raise Doubt(f"the cache {entry.path} cannot be read ({e})") from None

    def _checked(self, path: Path, doc: Any, lesson_ids: set[int]) -> Entry:
        """The entry a cache file's first line describes, without its records; Doubt when it is not to be used."""
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
            raise Doubt(f"{path} is not a read cache ({CACHE_FORMAT})")
        if not same_target(doc.get("target"), self.target):
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
        try:
            kind, lessons = doc.get("kind"), frozenset(doc.get("lessons") or ())
        except TypeError as e:
            raise Doubt(f"the cache {path} is damaged ({e!r})") from None
        if kind not in ("all", "lessons") or (kind == "lessons" and lessons != lesson_ids):
            raise Doubt("the cache does not cover these lessons")
        size, cost, count = doc.get("page_size"), doc.get("full_requests"), doc.get("records")
        if not isinstance(count, int) or isinstance(count, bool):
            raise Doubt(f"the cache {path} is damaged (no count of records: {str(count)[:40]})")
        until = doc.get("until")
        return Entry(path, kind, lessons, Rows(), str(doc.get("watermark") or ""), float(full_read_at),
                     float(doc.get("span_seconds") or 0.0), doc.get("verified") is True,
                     size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None,
                     cost if isinstance(cost, int) and not isinstance(cost, bool) else 0, count,
                     until if until in UNTIL_BOUNDS else None)

    def _distrust(self) -> None:
        """Incremental reads of this target are not to be trusted again (until the folder is deleted)."""
        path = self.folder / DISTRUST_FILE
        try:
            known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(sorted({*known, self.target})), encoding="utf-8")
        except (OSError, ValueError, TypeError, RecursionError) as e:
            log.warning("warning: %s could not be written (%s)", path, e)

    def _distrusted(self) -> bool:
        try:
            known = json.loads((self.folder / DISTRUST_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError, RecursionError):
            return True
        return not isinstance(known, list) or self.target in known

    def _header(self, reader: StateReader, kind: str, lessons: frozenset[int], watermark: str, full_read_at: float,
                span: float, verified: bool, full_requests: int, count: int) -> bytes:
        doc = {"format": CACHE_FORMAT, "target": self.target, "reconciler": __version__, "kind": kind,
               "lessons": sorted(lessons), "watermark": self._not_ahead(watermark), "full_read_at": full_read_at,
               "read_at": self.clock(), "span_seconds": round(span, 3), "verified": verified,
               "page_size": reader.client.page_size, "full_requests": full_requests, "records": count,
               "until": self._until}
        return json.dumps(doc, separators=(",", ":")).encode() + b"\n"

    def _not_ahead(self, watermark: str) -> str:
        """The watermark, or this machine's time when a stamp ahead of it made the watermark later: one writer whose
        clock runs ahead would otherwise move the next range's start past what later writers, whose clocks are
        right, change meanwhile. (A server whose own clock is ahead of this machine's only makes the range longer.)
        """
        at, now = timestamp_instant(watermark), datetime.fromtimestamp(self.clock(), UTC)
        if at is None or at <= now:
            return watermark
        log.info("read cache: the newest UpdatedOn read, %s, is ahead of this machine's clock: the next read starts "
                 "from now instead", watermark)
        return now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def _commit(self, reader: StateReader, body: Body, kind: str, lesson_ids: set[int], started: float, *,
                verified: bool, cost: int) -> None:
        """A whole full read's body becomes the cache: its first line, then the body (a second gzip member)."""
        source = body.finish()
        if source is None:
            return
        lessons = frozenset(lesson_ids) if kind == "lessons" else frozenset()
        path = self.path_of(kind, lessons)
        header = self._header(reader, kind, lessons, body.watermark, self.clock(), self.monotonic() - started,
                              verified, cost, body.count)
        try:
            def write(handle: Any) -> None:
                with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1) as first:
                    first.write(header)
                with source.open("rb") as rest:
                    shutil.copyfileobj(rest, handle, 1 << 20)

            self._replace(path, write)
        except OSError as e:
            log.warning("warning: the read cache %s could not be written (%s)", path, e)

    def _save(self, reader: StateReader, path: Path, kind: str, lessons: frozenset[int], records: Rows,
              watermark: str, full_read_at: float, span: float, verified: bool, full_requests: int) -> None:
        """Write the entry a line of records at a time; a cache that cannot be written only costs the next run a
        full read."""
        header = self._header(reader, kind, lessons, watermark, full_read_at, span, verified, full_requests,
                              len(records))

        def write(handle: Any) -> None:
            with gzip.GzipFile(fileobj=handle, mode="wb", compresslevel=1) as out:
                out.write(header)
                held = itertools.chain.from_iterable(records.chunks())
                while chunk := list(itertools.islice(held, CHUNK)):
                    write_records(out, chunk)

        try:
            self._replace(path, write)
        except OSError as e:
            log.warning("warning: the read cache %s could not be written (%s)", path, e)

    @staticmethod
    def _replace(path: Path, write: Callable[[Any], None]) -> None:
        """Write `path` atomically (a temporary file beside it, then renamed)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(handle, "wb") as raw:
                write(raw)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def _in_scope(rows: Rows, lesson_ids: set[int], convert: Convert[_Kept]) -> list[_Kept]:
    """The records of `lesson_ids`, by Id, as `convert` makes them: about CHUNK at a time through its `page` when
    it has one (a record at a time cost a plan of 200,000 members seconds), each made only as it is taken."""
    found: list[_Kept] = []
    for records in rows.chunks(lesson_ids):
        found.extend(convert.page(records) if convert.page is not None else map(convert.one, records))
    return found
