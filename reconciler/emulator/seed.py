"""Loading an emulator store from a seed: the friendly YAML of examples/seed.yaml, or a JSON snapshot.

A JSON snapshot is `{"format": "nexudus-snapshot/1", "<collection>": [records as the API returns them]}`;
Ids are kept, denormalised fields are dropped (the store computes them) and unknown keys are ignored, except
a coworker's `"Deleted": true`, which marks a deleted coworker that lists still show (see the emulator docs).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.emulator.app import User
from reconciler.emulator.store import COMMON_FIELDS, ENTITIES, LOAD_ORDER, Row, Store, precise_timestamp
from reconciler.errors import Problem, SeedError
from reconciler.schema_check import near_miss, schema_problems
from reconciler.schemas import validator
from reconciler.yamlfile import Document, LoadError, load_file, read_text

SNAPSHOT_FORMAT = "nexudus-snapshot/1"
SEED_ACTOR = "seed@reconciler"


@dataclass(frozen=True)
class SeedResult:
    counts: dict[str, int]
    users: int


def load_seed(path: Path, store: Store) -> SeedResult:
    """Load `path` into `store`, which must be empty. Raises SeedError naming every problem."""
    if not store.is_empty():
        raise SeedError([Problem(str(path), 1, 1, "the store already holds records; seed an empty store")])
    if path.suffix.lower() == ".json":
        return _load_snapshot(path, store)
    return _load_friendly(path, store)


def account(email: str, password: str, *, admin: bool = True, roles: list[str] | None = None,
            totp: str | None = None) -> Row:
    """A user account as the store keeps it: the password only as a salted hash."""
    return {"email": email, "password_hash": User.hash_password(password), "admin": admin,
            "roles": sorted(roles or []), "totp": totp}


# --- friendly YAML -------------------------------------------------------------------------------

def _load_friendly(path: Path, store: Store) -> SeedResult:
    documents, problems = load_file(path)
    if problems:
        raise SeedError(problems)
    if len(documents) != 1:
        raise SeedError([Problem(str(path), 1, 1, "a seed file holds exactly one YAML document")])
    document = documents[0]
    problems = schema_problems(document, validator("seed"))
    if problems:
        raise SeedError(problems)
    records, accounts, problems = _friendly_records(document, store)
    if problems:
        raise SeedError(problems)
    counts = {name: store.load(name, records[name]) for name in LOAD_ORDER}
    for user in accounts:
        store.save_user(user)
    return SeedResult(counts, len(accounts))


def _friendly_records(doc: Document, store: Store) -> tuple[dict[str, list[Row]], list[Row], list[Problem]]:
    data: dict[str, Any] = doc.data or {}
    now = precise_timestamp(store.clock())
    records: dict[str, list[Row]] = {name: [] for name in LOAD_ORDER}
    problems: list[Problem] = []
    next_ids = {name: store.next_id(name) for name in LOAD_ORDER}

    def new(collection: str, fields: Row, system_id: str | None = None) -> Row:
        row: Row = {"Id": next_ids[collection], "UniqueId": _uuid(collection, next_ids[collection]),
                    "CreatedOn": now, "UpdatedOn": now, "UpdatedBy": SEED_ACTOR, "IsNew": False,
                    "SystemId": system_id, **fields}
        next_ids[collection] += 1
        records[collection].append(row)
        return row

    coworkers: dict[str, int] = {}
    for i, person in enumerate(data.get("coworkers", [])):
        email = person["email"].strip()
        if email.casefold() in coworkers:
            problems.append(doc.problem(("coworkers", i, "email"), f"coworker {email!r} is listed twice"))
            continue
        teams = person.get("teams") or []
        row = new("coworkers", {"FullName": person["name"], "Email": email, "CompanyName": person.get("company"),
                                "TeamNames": ", ".join(teams) if teams else None}, person.get("system_id"))
        coworkers[email.casefold()] = row["Id"]

    for c, course in enumerate(data.get("courses", [])):  # titles may repeat, as on the real service
        course_row = new("courses", {"Title": course["title"], "Active": course.get("active", True),
                                     "DisplayOrder": c + 1, "GroupName": course.get("group"),
                                     "Visibility": course.get("visibility", "Everyone")})
        lessons: dict[str, int] = {}
        for n, lesson in enumerate(course.get("lessons", [])):
            spec = {"title": lesson} if isinstance(lesson, str) else lesson
            if spec["title"] in lessons:
                problems.append(doc.problem(("courses", c, "lessons", n),
                                            f"lesson {spec['title']!r} is listed twice in this course"))
                continue
            lesson_row = new("courselessons", {
                "CourseId": course_row["Id"], "Title": spec["title"], "DisplayOrder": n + 1,
                "Active": spec.get("active", True), "SectionTitle": spec.get("section"),
                "UnlockType": "Always", "CompletionType": "Manual"})
            lessons[spec["title"]] = lesson_row["Id"]
        enrolled: set[str] = set()
        for m, member in enumerate(course.get("members", [])):
            spec = {"email": member} if isinstance(member, str) else member
            at = ("courses", c, "members", m) + (() if isinstance(member, str) else ("email",))
            email = spec["email"].strip().casefold()
            if email not in coworkers:
                problems.append(doc.problem(at, f"no coworker {spec['email']!r}{near_miss(email, coworkers)}"))
                continue
            if email in enrolled:
                problems.append(doc.problem(at, f"{spec['email']!r} is enrolled twice in this course"))
                continue
            enrolled.add(email)
            member_row = new("coursemembers", {"CourseId": course_row["Id"], "CoworkerId": coworkers[email],
                                               "Approved": True, "Blocked": False})
            done = spec.get("completed", [])
            for k, title in enumerate(list(lessons) if done == "all" else done):
                if title not in lessons:
                    hint = near_miss(title, lessons)
                    problems.append(doc.problem(("courses", c, "members", m, "completed", k),
                                                f"no lesson {title!r} in {course['title']!r}{hint}"))
                    continue
                new("coursecompletedlessons", {"CourseLessonId": lessons[title], "CourseMemberId": member_row["Id"]},
                    spec.get("system_id"))

    accounts = [account(u["email"], u["password"], admin=u.get("admin", False), roles=u.get("roles"),
                        totp=u.get("totp")) for u in data.get("users", [])]
    return records, accounts, problems


def _uuid(collection: str, record_id: int) -> str:
    """Deterministic UniqueIds for seeded records, so a seeded demo prints the same every time."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler-seed:{collection}:{record_id}"))


# --- JSON snapshot -------------------------------------------------------------------------------

_SNAPSHOT_REFERENCES = {"courselessons": ("CourseId",), "coursemembers": ("CourseId", "CoworkerId"),
                        "coursecompletedlessons": ("CourseLessonId", "CourseMemberId")}


def _load_snapshot(path: Path, store: Store) -> SeedResult:
    shown = str(path)
    try:
        data = _snapshot_lines(path)
        if data is None:  # not the layout `snapshot` writes: a whole-document parse, within the file limit
            data = json.loads(read_text(path, shown))
    except json.JSONDecodeError as e:
        raise SeedError([Problem(shown, e.lineno, e.colno, f"JSON syntax: {e.msg}")]) from e
    except LoadError as e:
        raise SeedError([e.problem]) from e
    except (OSError, UnicodeDecodeError) as e:
        raise SeedError([Problem(shown, 1, 1, f"cannot read the snapshot: {e}")]) from e
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise SeedError([Problem(shown, 1, 1, f'not a snapshot: expected {{"format": "{SNAPSHOT_FORMAT}", ...}}')])
    problems: list[Problem] = []
    for key in data:
        if key != "format" and key not in ENTITIES:
            problems.append(Problem(shown, 1, 1, f"unknown key {key!r}{near_miss(key, ENTITIES)}"))
    records: dict[str, list[Row]] = {}
    for name in LOAD_ORDER:
        raw = data.get(name, [])
        if not isinstance(raw, list):
            problems.append(Problem(shown, 1, 1, f"{name} must be a list of records"))
            continue
        entity = ENTITIES[name]
        kept = ("Id", *entity.own_fields, *COMMON_FIELDS[1:])
        if name == "coworkers":
            kept = (*kept, "Deleted")
        rows: dict[int, Row] = {}
        for i, record in enumerate(raw):
            if not isinstance(record, dict) or not _is_id(record.get("Id")):
                problems.append(Problem(shown, 1, 1, f"{name}[{i}] must be a record with a whole-number Id"))
                continue
            bad = [ref for ref in _SNAPSHOT_REFERENCES.get(name, ()) if not _is_id(record.get(ref))]
            if bad:
                problems.append(Problem(shown, 1, 1, f"{name}[{i}] (Id {record['Id']}): {', '.join(bad)} "
                                                     "must be a whole number"))
                continue
            if record["Id"] in rows:
                problems.append(Problem(shown, 1, 1, f"{name}[{i}]: Id {record['Id']} appears twice"))
                continue
            rows[record["Id"]] = {k: record.get(k) for k in kept if k != "Deleted" or record.get(k) is True}
        records[name] = sorted(rows.values(), key=lambda r: r["Id"])
    if problems:
        raise SeedError(problems)
    counts = {name: store.load(name, records[name]) for name in LOAD_ORDER}
    return SeedResult(counts, 0)


MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024 * 1024  # a snapshot of 1,000,000 completions is about 500 MB


def _snapshot_lines(path: Path) -> dict[str, Any] | None:
    """A snapshot in the layout `reconciler snapshot` writes (one key a line, one record a line), read a
    line at a time so that its size is bounded by the records, not by one string of the whole file; None
    when the file has another layout (it is then parsed whole, within the spec file limit)."""
    if path.stat().st_size > MAX_SNAPSHOT_BYTES:
        raise LoadError(Problem(str(path), 1, 1, f"the snapshot is larger than {MAX_SNAPSHOT_BYTES:,} bytes"))
    data: dict[str, Any] = {}
    current: list[Any] | None = None
    with path.open(encoding="utf-8") as lines:
        if lines.readline().strip() != "{":
            return None
        for number, line in enumerate(lines, start=2):
            text = line.strip()
            if current is not None:
                if text in ("]", "],"):
                    current = None
                    continue
                try:
                    current.append(json.loads(text.removesuffix(",")))
                except json.JSONDecodeError as e:
                    raise SeedError([Problem(str(path), number, e.colno, f"JSON syntax: {e.msg}")]) from e
                continue
            if text == "}":
                return data
            if text.endswith("["):
                key = json.loads(text.removesuffix("[").rstrip().removesuffix(":"))
                data[key] = current = []
                continue
            try:
                entry = json.loads("{" + text.removesuffix(",") + "}")
            except json.JSONDecodeError:
                return None
            data.update(entry)
    return None


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def snapshot_document(records: dict[str, list[Row]]) -> dict[str, Any]:
    """A snapshot holding `records` (collection → API records), in the load order."""
    return {"format": SNAPSHOT_FORMAT, **{name: records.get(name, []) for name in LOAD_ORDER}}
