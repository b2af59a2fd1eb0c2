"""The emulator's state: five entities in SQLite, mirrored in memory for fast reads.

Rows keep only an entity's own fields; the denormalised ones (`CourseTitle`, `CoworkerFullName`, ...)
are computed when a record is rendered, so they can never fall out of step with what they copy. Dates are
kept to 7 fractional digits; the app renders them in the form each endpoint uses.

Reads cost what they return, not what the store holds: each collection keeps its Ids sorted (a page is a
slice of them), and the columns lists filter on by Id (`CourseLesson_Course`, ...) get an index from value
to sorted Ids, built the first time a filter asks for it and kept up to date by every write.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import json
import math
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

Row = dict[str, Any]

COMMON_FIELDS = ("Id", "UniqueId", "CreatedOn", "UpdatedOn", "UpdatedBy", "IsNew", "SystemId")


@dataclass(frozen=True)
class Entity:
    """How one Nexudus entity looks on the wire and which list filters it takes."""

    name: str
    collection: str
    area: str
    own_fields: tuple[str, ...]
    computed_fields: tuple[str, ...]
    id_filters: dict[str, str] = field(default_factory=dict)
    text_filters: dict[str, str] = field(default_factory=dict)
    writable: bool = False
    # Own fields only get-by-id returns: list records leave them out (the current docs say so of lessons).
    detail_fields: tuple[str, ...] = ()

    @property
    def path(self) -> str:
        return f"/api/{self.area}/{self.collection}"


COWORKER = Entity(
    "Coworker", "coworkers", "spaces",
    own_fields=("FullName", "Email", "CompanyName", "TeamNames"),
    computed_fields=(),
    text_filters={"Coworker_Email": "Email", "Coworker_FullName": "FullName"},
)
COURSE = Entity(
    "Course", "courses", "content",
    own_fields=("Title", "Active", "DisplayOrder", "GroupName", "Visibility"),
    computed_fields=(),
    text_filters={"Course_Title": "Title"},
)
COURSE_LESSON = Entity(
    "CourseLesson", "courselessons", "content",
    own_fields=("CourseId", "Title", "DisplayOrder", "Active", "SectionTitle", "UnlockType", "CompletionType",
                "LessonContents"),
    computed_fields=("CourseTitle",),
    id_filters={"CourseLesson_Course": "CourseId"},
    text_filters={"CourseLesson_Course_Title": "CourseTitle", "CourseLesson_Title": "Title"},
    detail_fields=("LessonContents", "UnlockType", "CompletionType"),
)
COURSE_MEMBER = Entity(
    "CourseMember", "coursemembers", "content",
    own_fields=("CourseId", "CoworkerId", "Approved", "Blocked"),
    computed_fields=("CourseTitle", "CoworkerFullName", "CoworkerCompanyName", "CoworkerTeamNames",
                     "LastCompletedLessonId"),
    id_filters={"CourseMember_Course": "CourseId", "CourseMember_Coworker": "CoworkerId"},
    text_filters={"CourseMember_Course_Title": "CourseTitle", "CourseMember_Coworker_FullName": "CoworkerFullName",
                  "CourseMember_Coworker_TeamNames": "CoworkerTeamNames"},
    writable=True,
)
COMPLETION = Entity(
    "CourseCompletedLesson", "coursecompletedlessons", "content",
    own_fields=("CourseLessonId", "CourseMemberId"),
    computed_fields=("CourseLessonTitle", "CourseMemberCoworkerFullName", "CourseMemberCoworkerCompanyName",
                     "CourseMemberCoworkerTeamNames"),
    id_filters={"CourseCompletedLesson_CourseLesson": "CourseLessonId",
                "CourseCompletedLesson_CourseMember": "CourseMemberId"},
    text_filters={
        "CourseCompletedLesson_CourseLesson_Title": "CourseLessonTitle",
        "CourseCompletedLesson_CourseMember_Coworker_FullName": "CourseMemberCoworkerFullName",
        "CourseCompletedLesson_CourseMember_Coworker_CompanyName": "CourseMemberCoworkerCompanyName",
        "CourseCompletedLesson_CourseMember_Coworker_TeamNames": "CourseMemberCoworkerTeamNames",
    },
    writable=True,
)

ENTITIES: dict[str, Entity] = {e.collection: e for e in (COWORKER, COURSE, COURSE_LESSON, COURSE_MEMBER, COMPLETION)}
# Referential order: a snapshot or seed is loaded parents first.
LOAD_ORDER = ("coworkers", "courses", "courselessons", "coursemembers", "coursecompletedlessons")
# Each entity numbers from its own range, so an Id passed where another entity's belongs fails loudly.
ID_BASE = {"coworkers": 10_001, "courses": 101, "courselessons": 2_001, "coursemembers": 50_001,
           "coursecompletedlessons": 900_001}
# With block allocation, block k of an entity starts at ID_BASE + k * ID_BLOCK_SPAN; block 0 is the usual range.
ID_BLOCKS = 4
ID_BLOCK_SPAN = 10_000_000

DateForm = Literal["second", "precise", "millis"]
_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})?")


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, as the legacy docs write them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def precise_timestamp(moment: datetime, tick: int = 0) -> str:
    """ISO 8601 in UTC with 7 fractional digits: how the store keeps an instant. A `datetime` holds microseconds; the
    7th digit (100 ns) is `tick` (0-9), which a record's create takes from its Id, so that dates show the 7 digits
    the live service writes (`...:18.7760862Z`) and a client is made to read them."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}{tick % 10}Z"


def parse_timestamp(stamp: Any) -> tuple[datetime, int] | None:
    """A stored or wire date as (its whole second in UTC, its fraction in 100 ns ticks); None if not a date.

    Any number of fractional digits is read (the 8th and later are dropped); no offset means UTC.
    """
    found = _STAMP.fullmatch(stamp.strip()) if isinstance(stamp, str) else None
    if found is None:
        return None
    offset = found.group(3) or "Z"
    try:
        second = datetime.fromisoformat(found.group(1) + ("+00:00" if offset == "Z" else offset))
    except ValueError:
        return None
    return second.astimezone(UTC), int((found.group(2) or "0")[:7].ljust(7, "0"))


def timestamp_instant(stamp: Any) -> datetime | None:
    """The instant a stored date names, to the microsecond."""
    parsed = parse_timestamp(stamp)
    return None if parsed is None else parsed[0] + timedelta(microseconds=parsed[1] // 10)


def render_timestamp(stamp: Any, form: DateForm) -> Any:
    """A stored date as the API writes it: whole seconds (`...:09Z`), up to 7 fractional digits with trailing
    zeros trimmed (`...:18.7760862Z`), or milliseconds (`...:18.776Z`). Anything else is returned unchanged."""
    return _render_text(stamp, form) if isinstance(stamp, str) else stamp


@functools.lru_cache(maxsize=1 << 16)  # a list page renders two dates a record, often the same one twice
def _render_text(stamp: str, form: DateForm) -> str:
    found = _STAMP.fullmatch(stamp.strip())
    if found is None:
        return stamp
    whole, fraction, offset = found.groups()
    if offset in (None, "Z") and whole[0] != "0":  # already in UTC: the text is the second (once it is a date)
        try:
            datetime.fromisoformat(whole)
        except ValueError:
            return stamp
        text = whole
    else:
        parsed = parse_timestamp(stamp)
        if parsed is None:
            return stamp
        text = parsed[0].strftime("%Y-%m-%dT%H:%M:%S")
    ticks = int((fraction or "0")[:7].ljust(7, "0"))
    if form == "millis":
        return f"{text}.{ticks // 10_000:03d}Z"
    if form == "precise" and ticks:
        return f"{text}.{f'{ticks:07d}'.rstrip('0')}Z"
    return text + "Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


def _not_json(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text} is not a finite number")
    return number


# What the store wrote is JSON (`allow_nan=False`): NaN, Infinity or a number past a float read back are damage.
_STORED_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_not_json)


def _stored_json(text: str) -> Any:
    """A value the store wrote, read back strictly (ValueError or RecursionError for anything else)."""
    return _STORED_DECODER.decode(text)


class StoredRow(dict[str, Any]):
    """A record as the store holds it: a dict that counts edits made to it in place.

    The API has no update, but tests change records behind its back (a back-dated stamp, a moved
    completion); the store's indexes cannot see such an edit, so every one is counted in `edits` and an
    index built before the count last moved is rebuilt before it is used.
    """

    __slots__ = ()
    edits = 0

    def __setitem__(self, key: str, value: Any) -> None:
        StoredRow.edits += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        StoredRow.edits += 1
        super().__delitem__(key)

    def __ior__(self, other: Any) -> StoredRow:  # type: ignore[override,misc]
        StoredRow.edits += 1
        return super().__ior__(other)

    def pop(self, key: str, *default: Any) -> Any:
        StoredRow.edits += 1
        return super().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        StoredRow.edits += 1
        return super().popitem()

    def setdefault(self, key: str, default: Any = None) -> Any:
        StoredRow.edits += 1
        return super().setdefault(key, default)

    def update(self, *args: Any, **kwargs: Any) -> None:
        StoredRow.edits += 1
        super().update(*args, **kwargs)

    def clear(self) -> None:
        StoredRow.edits += 1
        super().clear()


class Store:
    """All records, persisted in SQLite (`path`, or memory when None) and indexed in memory.

    Callers hold `lock` around any sequence of reads and writes that must be consistent; the WSGI app
    takes it once per request.
    """

    def __init__(self, path: str | None = None, *, clock: Callable[[], datetime] = utc_now) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL" if path else "PRAGMA journal_mode=MEMORY")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for name in ENTITIES:
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {name} (Id INTEGER PRIMARY KEY, data TEXT NOT NULL)")
        self.rows: dict[str, dict[int, Row]] = {}
        # Each collection's Ids in ascending order: a page in Id order is a slice of this list.
        self._ids: dict[str, list[int]] = {}
        # Collections whose `rows` dict is no longer in Id order (a write out of order); `iter_rows` re-sorts.
        self._unsorted: set[str] = set()
        # (collection, column) -> column value -> Ids holding it, ascending; built on first use.
        self._indexes: dict[tuple[str, str], dict[Any, list[int]]] = {}
        self._indexed_at = StoredRow.edits
        self._writes = 0
        for name in LOAD_ORDER:
            loaded = self._db.execute(f"SELECT Id, data FROM {name} ORDER BY Id")  # noqa: S608 - fixed names
            try:
                self.rows[name] = {int(i): StoredRow(_stored_json(d)) for i, d in loaded}
            except (TypeError, ValueError, RecursionError):  # a file changed by hand: said as a damaged store
                raise sqlite3.DatabaseError(f"the table {name} holds a row the emulator did not write") from None
            self._ids[name] = list(self.rows[name])
        self._completions_by_member: dict[int, list[int]] = {}
        self._member_by_pair: dict[tuple[int, int], int] = {}
        for row in self.rows["coursecompletedlessons"].values():
            self._completions_by_member.setdefault(row["CourseMemberId"], []).append(row["Id"])
        for row in self.rows["coursemembers"].values():
            self._member_by_pair[(row["CourseId"], row["CoworkerId"])] = row["Id"]

    def users(self) -> list[Row]:
        """Accounts saved with the store (from seeds and --user), password hashes only."""
        found = self._db.execute("SELECT value FROM meta WHERE key LIKE 'user:%' ORDER BY key")
        try:
            return [_stored_json(value) for (value,) in found]
        except (TypeError, ValueError, RecursionError):
            raise sqlite3.DatabaseError("the table meta holds a user the emulator did not write") from None

    def save_user(self, account: Row) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (f"user:{str(account['email']).casefold()}", json.dumps(account, allow_nan=False)))

    def close(self) -> None:
        self._db.close()

    # --- reading ---------------------------------------------------------------------------------

    def is_empty(self) -> bool:
        return not any(self.rows.values())

    def get(self, collection: str, record_id: int) -> Row | None:
        return self.rows[collection].get(record_id)

    def member_for(self, course_id: int, coworker_id: int) -> int | None:
        return self._member_by_pair.get((course_id, coworker_id))

    def completions_of_member(self, member_id: int) -> list[int]:
        return self._completions_by_member.get(member_id, [])

    @property
    def generation(self) -> tuple[int, int]:
        """Moves on every change to any record (through the store or in place): what a cache of answers
        computed from the records is keyed on."""
        return self._writes, StoredRow.edits

    def ids(self, collection: str) -> Sequence[int]:
        """Every Id of a collection, ascending. The store's own list: read it, never change it."""
        return self._ids[collection]

    def ids_where(self, collection: str, column: str, value: Any) -> Sequence[int]:
        """The Ids of the records whose `column` equals `value`, ascending, from an index (built on first use,
        kept by every write). The store's own list: read it, never change it."""
        if column == "Id":
            return [value] if isinstance(value, int) and value in self.rows[collection] else []
        self._check_indexes()
        index = self._indexes.get((collection, column))
        if index is None:
            index = {}
            for record_id in self._ids[collection]:
                index.setdefault(self.rows[collection][record_id].get(column), []).append(record_id)
            self._indexes[(collection, column)] = index
        return index.get(value, [])

    def _check_indexes(self) -> None:
        """Drop every index if a record was edited in place since they were built (they may be wrong)."""
        if self._indexed_at != StoredRow.edits:
            self._indexes.clear()
            self._indexed_at = StoredRow.edits

    def value(self, entity: Entity, row: Row, name: str) -> Any:
        """One field of a record as the API shows it, computing denormalised fields on demand."""
        if name in row:
            return row[name]
        getter = _COMPUTED.get((entity.collection, name))
        return getter(self, row) if getter else None

    def render(self, entity: Entity, row: Row, *, full: bool) -> Row:
        """The record as the API returns it; lists (`full=False`) leave out the collection-like fields and the
        entity's `detail_fields`."""
        get = row.get
        record: Row = {name: get(name) for name in (_OWN if full else _LISTED)[entity.collection]}
        derived = _DERIVED.get(entity.collection)
        if derived is not None:
            for name, computed in zip(entity.computed_fields, derived(self, row), strict=True):
                record[name] = row[name] if name in row else computed  # as `value` gives it
        for name in COMMON_FIELDS[1:]:
            record[name] = get(name)
        shown = _TO_STRING[entity.collection]
        record["ToStringText"] = record[shown] if shown in record else self.value(entity, row, shown)
        if full:
            record["LocalizationDetails"] = None
            record["CustomFields"] = {"Data": []}
        return record

    # --- writing ---------------------------------------------------------------------------------

    def next_id(self, collection: str) -> int:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"next_id:{collection}",)).fetchone()
        ids = self._ids[collection]
        current = (ids[-1] if ids else ID_BASE[collection] - 1) + 1
        return max(int(found[0]), current) if found else current

    def next_block_id(self, collection: str, block: int) -> int:
        """The next Id of block `block` (0 ..< ID_BLOCKS) of a collection; never one used before."""
        start = ID_BASE[collection] + block * ID_BLOCK_SPAN
        end = start + ID_BLOCK_SPAN
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"next_id:{collection}:{block}",)).fetchone()
        ids = self._ids[collection]
        below = bisect.bisect_left(ids, end)  # the highest Id of the block, if any, is just below `end`
        current = (ids[below - 1] if below and ids[below - 1] >= start else start - 1) + 1
        return max(int(found[0]), current) if found else current

    def insert(self, collection: str, fields: Row, *, updated_by: str, block: int | None = None) -> Row:
        """Create one record with a fresh Id and the common fields; persisted before it returns.

        `block` takes the Id from that block (see `next_block_id`) instead of after the highest Id.
        """
        moment = self.clock()
        record_id = self.next_id(collection) if block is None else self.next_block_id(collection, block)
        now = precise_timestamp(moment, record_id) if moment.microsecond else precise_timestamp(moment)
        row = StoredRow({"Id": record_id, "UniqueId": str(uuid.uuid4()), "CreatedOn": now,
                         "UpdatedOn": now, "UpdatedBy": updated_by, "IsNew": False, "SystemId": None})
        dict.update(row, fields)  # not an edit: the record is not stored yet
        self._write_rows(collection, [row])
        if block is not None:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (f"next_id:{collection}:{block}", str(record_id + 1)))
        return row

    def load(self, collection: str, rows: Iterable[Row]) -> int:
        """Insert records that already carry their Ids (seeds and snapshots) in one transaction.

        The store keeps its own copy of each record (see `StoredRow`): read them back from `rows`."""
        return self._write_rows(collection, list(rows))

    def delete(self, collection: str, record_id: int) -> Row | None:
        row = self.rows[collection].pop(record_id, None)
        if row is None:
            return None
        self._db.execute(f"DELETE FROM {collection} WHERE Id = ?", (record_id,))  # noqa: S608
        self._writes += 1
        _discard(self._ids[collection], record_id)
        self._check_indexes()
        for (name, column), index in self._indexes.items():
            if name == collection:
                held = index.get(row.get(column))
                if held is not None:
                    _discard(held, record_id)
        if collection == "coursecompletedlessons":
            self._completions_by_member[row["CourseMemberId"]].remove(record_id)
        elif collection == "coursemembers":
            self._member_by_pair.pop((row["CourseId"], row["CoworkerId"]), None)
        return row

    def replace(self, collection: str, record_id: int, fields: Row, *, updated_by: str) -> Row:
        """An update (PUT): the record with `fields` in place of its own, its Id, UniqueId and CreatedOn kept, stamped
        now; persisted before it returns."""
        old = self.delete(collection, record_id)
        if old is None:
            raise KeyError(record_id)
        kept: Row = {name: old[name] for name in ("Id", "UniqueId", "CreatedOn", "IsNew") if name in old}
        row = StoredRow({**kept, "UpdatedOn": precise_timestamp(self.clock()), "UpdatedBy": updated_by,
                         "SystemId": None, **fields})
        self._write_rows(collection, [row])
        return row

    def _write_rows(self, collection: str, given: list[Row]) -> int:
        if not given:
            return 0
        rows = [row if type(row) is StoredRow else StoredRow(row) for row in given]
        table = self.rows[collection]
        ids = self._ids[collection]
        in_order = (not ids or rows[0]["Id"] > ids[-1]) and all(
            a["Id"] < b["Id"] for a, b in itertools.pairwise(rows))
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO {collection} (Id, data) VALUES (?, ?)",  # noqa: S608
                [(row["Id"], json.dumps(row, allow_nan=False)) for row in rows],
            )
            top = max(row["Id"] for row in rows) + 1
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                "MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (f"next_id:{collection}", str(top)),
            )
        self._writes += 1
        self._check_indexes()
        indexes = [(column, index) for (name, column), index in self._indexes.items() if name == collection]
        for row in rows:
            record_id = row["Id"]
            table[record_id] = row
            for column, index in indexes:
                _add(index.setdefault(row.get(column), []), record_id)
            if collection == "coursecompletedlessons":
                self._completions_by_member.setdefault(row["CourseMemberId"], []).append(record_id)
            elif collection == "coursemembers":
                self._member_by_pair[(row["CourseId"], row["CoworkerId"])] = record_id
        if in_order:
            ids.extend(row["Id"] for row in rows)
        else:
            if len(rows) < 64:
                for row in rows:
                    bisect.insort(ids, row["Id"])
            else:
                ids.extend(row["Id"] for row in rows)
                ids.sort()
            self._unsorted.add(collection)
        return len(rows)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def clear(self) -> None:
        with self._transaction():
            for name in ENTITIES:
                self._db.execute(f"DELETE FROM {name}")  # noqa: S608
            self._db.execute("DELETE FROM meta")
        for name in ENTITIES:
            self.rows[name] = {}
            self._ids[name] = []
        self._writes += 1
        self._indexes.clear()
        self._unsorted.clear()
        self._completions_by_member.clear()
        self._member_by_pair.clear()

    def iter_rows(self, collection: str) -> Iterator[Row]:
        """Every record of a collection, in Id order."""
        if collection in self._unsorted:
            self.rows[collection] = {i: self.rows[collection][i] for i in self._ids[collection]}
            self._unsorted.discard(collection)
        return iter(self.rows[collection].values())


def _add(ids: list[int], record_id: int) -> None:
    """Put an Id into an ascending list: appended when it is the highest, as new Ids usually are."""
    if not ids or record_id > ids[-1]:
        ids.append(record_id)
    else:
        bisect.insort(ids, record_id)


def _discard(ids: list[int], record_id: int) -> None:
    at = bisect.bisect_left(ids, record_id)
    if at < len(ids) and ids[at] == record_id:
        del ids[at]


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def _parent(store: Store, collection: str, record_id: Any) -> Row:
    found = store.rows[collection].get(record_id) if isinstance(record_id, int) else None
    return found or {}


def _member_coworker(store: Store, row: Row) -> Row:
    return _parent(store, "coworkers", _parent(store, "coursemembers", row.get("CourseMemberId")).get("CoworkerId"))


def _last_completed(store: Store, row: Row) -> int | None:
    ids = store.completions_of_member(row["Id"])
    return store.rows["coursecompletedlessons"][max(ids)]["CourseLessonId"] if ids else None


_COMPUTED: dict[tuple[str, str], Callable[[Store, Row], Any]] = {
    ("courselessons", "CourseTitle"): lambda s, r: _parent(s, "courses", r.get("CourseId")).get("Title"),
    ("coursemembers", "CourseTitle"): lambda s, r: _parent(s, "courses", r.get("CourseId")).get("Title"),
    ("coursemembers", "CoworkerFullName"): lambda s, r: _parent(s, "coworkers", r.get("CoworkerId")).get("FullName"),
    ("coursemembers", "CoworkerCompanyName"):
        lambda s, r: _parent(s, "coworkers", r.get("CoworkerId")).get("CompanyName"),
    ("coursemembers", "CoworkerTeamNames"): lambda s, r: _parent(s, "coworkers", r.get("CoworkerId")).get("TeamNames"),
    ("coursemembers", "LastCompletedLessonId"): _last_completed,
    ("coursecompletedlessons", "CourseLessonTitle"):
        lambda s, r: _parent(s, "courselessons", r.get("CourseLessonId")).get("Title"),
    ("coursecompletedlessons", "CourseMemberCoworkerFullName"): lambda s, r: _member_coworker(s, r).get("FullName"),
    ("coursecompletedlessons", "CourseMemberCoworkerCompanyName"):
        lambda s, r: _member_coworker(s, r).get("CompanyName"),
    ("coursecompletedlessons", "CourseMemberCoworkerTeamNames"): lambda s, r: _member_coworker(s, r).get("TeamNames"),
}

_TO_STRING = {
    "coworkers": "FullName",
    "courses": "Title",
    "courselessons": "Title",
    "coursemembers": "CoworkerFullName",
    "coursecompletedlessons": "CourseLessonTitle",
}

# What a record shows of its own, in the order the API writes it.
_OWN = {e.collection: ("Id", *e.own_fields) for e in ENTITIES.values()}
_LISTED = {e.collection: tuple(n for n in _OWN[e.collection] if n not in e.detail_fields) for e in ENTITIES.values()}


def _lesson_derived(store: Store, row: Row) -> tuple[Any, ...]:
    return (_parent(store, "courses", row.get("CourseId")).get("Title"),)


def _member_derived(store: Store, row: Row) -> tuple[Any, ...]:
    coworker = _parent(store, "coworkers", row.get("CoworkerId"))
    return (_parent(store, "courses", row.get("CourseId")).get("Title"), coworker.get("FullName"),
            coworker.get("CompanyName"), coworker.get("TeamNames"), _last_completed(store, row))


def _completion_derived(store: Store, row: Row) -> tuple[Any, ...]:
    coworker = _member_coworker(store, row)
    return (_parent(store, "courselessons", row.get("CourseLessonId")).get("Title"), coworker.get("FullName"),
            coworker.get("CompanyName"), coworker.get("TeamNames"))


# The denormalised fields of a record, all at once (each parent looked up once), in `computed_fields` order:
# the same values `_COMPUTED` gives one at a time.
_DERIVED: dict[str, Callable[[Store, Row], tuple[Any, ...]]] = {
    "courselessons": _lesson_derived,
    "coursemembers": _member_derived,
    "coursecompletedlessons": _completion_derived,
}
