"""The emulator's state: five entities in SQLite, mirrored in memory for fast reads.

Rows keep only an entity's own fields; the denormalised ones (`CourseTitle`, `CoworkerFullName`, ...)
are computed when a record is rendered, so they can never fall out of step with what they copy. Dates are
kept to 7 fractional digits; the app renders them in the form each endpoint uses.
"""

from __future__ import annotations

import itertools
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
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
    own_fields=("CourseId", "Title", "DisplayOrder", "Active", "SectionTitle", "UnlockType", "CompletionType"),
    computed_fields=("CourseTitle",),
    id_filters={"CourseLesson_Course": "CourseId"},
    text_filters={"CourseLesson_Course_Title": "CourseTitle", "CourseLesson_Title": "Title"},
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


def precise_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with 7 fractional digits (the last always 0): how the store keeps an instant."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}0Z"


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
    parsed = parse_timestamp(stamp)
    if parsed is None:
        return stamp
    second, ticks = parsed
    text = second.strftime("%Y-%m-%dT%H:%M:%S")
    if form == "millis":
        return f"{text}.{ticks // 10_000:03d}Z"
    if form == "precise" and ticks:
        return f"{text}.{f'{ticks:07d}'.rstrip('0')}Z"
    return text + "Z"


def utc_now() -> datetime:
    return datetime.now(UTC)


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
        for name in LOAD_ORDER:
            loaded = self._db.execute(f"SELECT Id, data FROM {name} ORDER BY Id")  # noqa: S608 - fixed names
            self.rows[name] = {int(i): json.loads(d) for i, d in loaded}
        self._completions_by_member: dict[int, list[int]] = {}
        self._member_by_pair: dict[tuple[int, int], int] = {}
        for row in self.rows["coursecompletedlessons"].values():
            self._completions_by_member.setdefault(row["CourseMemberId"], []).append(row["Id"])
        for row in self.rows["coursemembers"].values():
            self._member_by_pair[(row["CourseId"], row["CoworkerId"])] = row["Id"]

    def users(self) -> list[Row]:
        """Accounts saved with the store (from seeds and --user), password hashes only."""
        found = self._db.execute("SELECT value FROM meta WHERE key LIKE 'user:%' ORDER BY key")
        return [json.loads(value) for (value,) in found]

    def save_user(self, account: Row) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                         (f"user:{str(account['email']).casefold()}", json.dumps(account)))

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

    def value(self, entity: Entity, row: Row, name: str) -> Any:
        """One field of a record as the API shows it, computing denormalised fields on demand."""
        if name in row:
            return row[name]
        getter = _COMPUTED.get((entity.collection, name))
        return getter(self, row) if getter else None

    def render(self, entity: Entity, row: Row, *, full: bool) -> Row:
        """The record as the API returns it; lists (`full=False`) leave out the collection-like fields."""
        record: Row = {name: row.get(name) for name in ("Id", *entity.own_fields)}
        for name in entity.computed_fields:
            record[name] = self.value(entity, row, name)
        for name in COMMON_FIELDS[1:]:
            record[name] = row.get(name)
        record["ToStringText"] = self.value(entity, row, _TO_STRING[entity.collection])
        if full:
            record["LocalizationDetails"] = None
            record["CustomFields"] = {"Data": []}
        return record

    # --- writing ---------------------------------------------------------------------------------

    def next_id(self, collection: str) -> int:
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"next_id:{collection}",)).fetchone()
        current = max(self.rows[collection], default=ID_BASE[collection] - 1) + 1
        return max(int(found[0]), current) if found else current

    def next_block_id(self, collection: str, block: int) -> int:
        """The next Id of block `block` (0 ..< ID_BLOCKS) of a collection; never one used before."""
        start = ID_BASE[collection] + block * ID_BLOCK_SPAN
        end = start + ID_BLOCK_SPAN
        found = self._db.execute("SELECT value FROM meta WHERE key = ?", (f"next_id:{collection}:{block}",)).fetchone()
        current = max((i for i in self.rows[collection] if start <= i < end), default=start - 1) + 1
        return max(int(found[0]), current) if found else current

    def insert(self, collection: str, fields: Row, *, updated_by: str, block: int | None = None) -> Row:
        """Create one record with a fresh Id and the common fields; persisted before it returns.

        `block` takes the Id from that block (see `next_block_id`) instead of after the highest Id.
        """
        now = precise_timestamp(self.clock())
        record_id = self.next_id(collection) if block is None else self.next_block_id(collection, block)
        row: Row = {"Id": record_id, "UniqueId": str(uuid.uuid4()), "CreatedOn": now,
                    "UpdatedOn": now, "UpdatedBy": updated_by, "IsNew": False, "SystemId": None}
        row.update(fields)
        self._write_rows(collection, [row])
        if block is not None:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                             (f"next_id:{collection}:{block}", str(record_id + 1)))
        return row

    def load(self, collection: str, rows: Iterable[Row]) -> int:
        """Insert records that already carry their Ids (seeds and snapshots) in one transaction."""
        return self._write_rows(collection, list(rows))

    def delete(self, collection: str, record_id: int) -> Row | None:
        row = self.rows[collection].pop(record_id, None)
        if row is None:
            return None
        self._db.execute(f"DELETE FROM {collection} WHERE Id = ?", (record_id,))  # noqa: S608
        if collection == "coursecompletedlessons":
            self._completions_by_member[row["CourseMemberId"]].remove(record_id)
        elif collection == "coursemembers":
            self._member_by_pair.pop((row["CourseId"], row["CoworkerId"]), None)
        return row

    def _write_rows(self, collection: str, rows: list[Row]) -> int:
        if not rows:
            return 0
        table = self.rows[collection]
        in_order = rows[0]["Id"] > max(table, default=0) and all(
            a["Id"] < b["Id"] for a, b in itertools.pairwise(rows))
        with self._transaction():
            self._db.executemany(
                f"INSERT INTO {collection} (Id, data) VALUES (?, ?)",  # noqa: S608
                [(row["Id"], json.dumps(row)) for row in rows],
            )
            top = max(row["Id"] for row in rows) + 1
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = "
                "MAX(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (f"next_id:{collection}", str(top)),
            )
        for row in rows:
            table[row["Id"]] = row
            if collection == "coursecompletedlessons":
                self._completions_by_member.setdefault(row["CourseMemberId"], []).append(row["Id"])
            elif collection == "coursemembers":
                self._member_by_pair[(row["CourseId"], row["CoworkerId"])] = row["Id"]
        if not in_order:
            # Lists page in Id order by walking this dict, so it must stay sorted.
            self.rows[collection] = dict(sorted(table.items()))
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
        self._completions_by_member.clear()
        self._member_by_pair.clear()

    def iter_rows(self, collection: str) -> Iterator[Row]:
        return iter(self.rows[collection].values())


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
