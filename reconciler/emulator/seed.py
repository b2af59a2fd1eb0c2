"""Loading an emulator store from a seed: the friendly YAML of examples/seed.yaml, or a JSON snapshot.

A JSON snapshot is `{"format": "nexudus-snapshot/1", "<collection>": [records as the API returns them]}`;
Ids are kept, denormalised fields are dropped (the store computes them) and unknown keys are ignored, except
a coworker's `"Deleted": true`, which marks a deleted coworker that lists still show (see the emulator docs).
It is read by its content in any JSON layout; nesting past MAX_DEPTH and numbers an answer could not carry (NaN,
Infinity, out of range) are errors at their place, as syntax is.
"""

from __future__ import annotations

import difflib
import json
import math
import re
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from reconciler.emulator.app import User
from reconciler.emulator.errors import Problem, SeedError
from reconciler.emulator.store import COMMON_FIELDS, ENTITIES, ID_BASE, LOAD_ORDER, Row, Store, precise_timestamp

SNAPSHOT_FORMAT = "nexudus-snapshot/1"
SEED_ACTOR = "seed@reconciler"
# The seed's JSON Schema is data, shared with the product (which publishes it for editors): read, not imported.
SCHEMA_FILE = ("schemas", "seed.schema.json")
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ALIASED_NODES = 500_000  # nodes reached again through YAML aliases (no "billion laughs")
MAX_DEPTH = 200


@dataclass(frozen=True)
class SeedResult:
    counts: dict[str, int]
    users: int


def load_seed(path: Path, store: Store, *, replace: bool = False) -> SeedResult:
    """Load `path` into `store`, which must be empty unless `replace` (it is then emptied first). Raises SeedError
    naming every problem; the file is read and checked whole before the store is looked at, so that a file that
    cannot be read is named as such, and one that is refused leaves the store as it was."""
    if path.suffix.lower() == ".json":
        return _load_snapshot(path, store, replace)
    return _load_friendly(path, store, replace)


def _make_room(path: Path, store: Store, replace: bool) -> None:
    """Before a checked seed is loaded: the store emptied (`replace`), else refused unless it is empty."""
    if replace:
        store.clear()
    elif not store.is_empty():
        raise SeedError([Problem(str(path), 1, 1, "the store already holds records; seed an empty store")])


def account(email: str, password: str, *, admin: bool = True, roles: list[str] | None = None,
            totp: str | None = None, must_reset_password: bool = False) -> Row:
    """A user account as the store keeps it: the password only as a salted hash."""
    return {"email": email, "password_hash": User.hash_password(password), "admin": admin,
            "roles": sorted(roles or []), "totp": totp, "must_reset_password": must_reset_password}


# --- friendly YAML -------------------------------------------------------------------------------

def _load_friendly(path: Path, store: Store, replace: bool) -> SeedResult:
    documents = _yaml_documents(path)
    if len(documents) != 1:
        raise SeedError([Problem(str(path), 1, 1, "a seed file holds exactly one YAML document")])
    document = documents[0]
    problems = _schema_problems(document)
    if problems:
        raise SeedError(problems)
    records, accounts, problems = _friendly_records(document, store, fresh=replace)
    if problems:
        raise SeedError(problems)
    _make_room(path, store, replace)
    counts = {name: store.load(name, records[name]) for name in LOAD_ORDER}
    for user in accounts:
        store.save_user(user)
    return SeedResult(counts, len(accounts))


def _friendly_records(doc: Document, store: Store, *, fresh: bool = False
                      ) -> tuple[dict[str, list[Row]], list[Row], list[Problem]]:
    """The seed's records, with Ids the store would give next (`fresh`: an emptied store's, for a replace)."""
    data: dict[str, Any] = doc.data or {}
    now = precise_timestamp(store.clock())
    records: dict[str, list[Row]] = {name: [] for name in LOAD_ORDER}
    problems: list[Problem] = []
    next_ids = {name: ID_BASE[name] if fresh else store.next_id(name) for name in LOAD_ORDER}

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
                        totp=u.get("totp"), must_reset_password=u.get("must_reset_password", False))
                for u in data.get("users", [])]
    return records, accounts, problems


def _uuid(collection: str, record_id: int) -> str:
    """Deterministic UniqueIds for seeded records, so a seeded demo prints the same every time."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"reconciler-seed:{collection}:{record_id}"))


# --- JSON snapshot -------------------------------------------------------------------------------

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_SNAPSHOT_REFERENCES = {"courselessons": ("CourseId",), "coursemembers": ("CourseId", "CoworkerId"),
                        "coursecompletedlessons": ("CourseLessonId", "CourseMemberId")}


def _load_snapshot(path: Path, store: Store, replace: bool) -> SeedResult:
    shown = str(path)
    data = _read_snapshot(path)
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
            row = {k: record.get(k) for k in kept if k != "Deleted" or record.get(k) is True}
            huge = [k for k, v in row.items() if isinstance(v, int) and not INT64_MIN <= v <= INT64_MAX]
            if huge:  # the store (SQLite) holds 64-bit integers
                problems.append(Problem(shown, 1, 1, f"{name}[{i}]: {', '.join(huge)} out of range (a whole number "
                                                     f"from {INT64_MIN:,} to {INT64_MAX:,})"))
                continue
            rows[record["Id"]] = row
        records[name] = sorted(rows.values(), key=lambda r: r["Id"])
    if problems:
        raise SeedError(problems)
    _make_room(path, store, replace)
    counts = {name: store.load(name, records[name]) for name in LOAD_ORDER}
    return SeedResult(counts, 0)


MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024 * 1024  # a snapshot of 1,000,000 completions is about 500 MB
_JSON_SPACE = " \t\r\n"  # the only whitespace JSON has


def _read_snapshot(path: Path) -> Any:
    """A snapshot's JSON value, whatever its layout: read a record a line when it has the layout `reconciler
    snapshot` writes (so its size is bounded by MAX_SNAPSHOT_BYTES, not by one string of the whole file), else
    parsed whole within MAX_FILE_BYTES; SeedError naming file, line and column for anything it cannot be."""
    shown = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_SNAPSHOT_BYTES:
            raise SeedError([Problem(shown, 1, 1, f"the snapshot is larger than {MAX_SNAPSHOT_BYTES:,} bytes")])
        found = _snapshot_lines(path)
    except (OSError, UnicodeDecodeError) as e:
        raise SeedError([Problem(shown, 1, 1, f"cannot read the snapshot: {e}")]) from e
    if not isinstance(found, _Detour):
        return found
    if size > MAX_FILE_BYTES:  # too large to parse whole: it must have the layout read a record a line
        raise SeedError([Problem(shown, found.line, found.column,
                                 f"{found.reason}: a snapshot of more than {MAX_FILE_BYTES:,} bytes is read a record "
                                 "a line, laid out as `reconciler snapshot` writes it")])
    text = _read_text(path)
    try:
        return _decode(text)
    except _Refused as e:
        raise SeedError([Problem(shown, e.lineno, e.colno, e.msg)]) from None
    except json.JSONDecodeError as e:
        raise SeedError([Problem(shown, e.lineno, e.colno, f"JSON syntax: {e.msg}")]) from None


@dataclass(frozen=True)
class _Detour:
    """Where, and why, a snapshot leaves the layout `reconciler snapshot` writes (it is then parsed whole)."""

    line: int
    column: int
    reason: str


def _snapshot_lines(path: Path) -> dict[str, Any] | _Detour:
    """A snapshot in the layout `reconciler snapshot` writes: `{` alone on the first line, then one
    `"key": value` or `"key": [` a line, one record a line, `]` and `}` alone; blank lines and any indentation
    allowed, every comma checked as JSON has them. Read a line at a time; a _Detour at the first line that is
    laid out otherwise (the file may still be JSON). SeedError for what is wrong in any layout: nesting past
    MAX_DEPTH, a number that is not finite."""
    data: dict[str, Any] = {}
    current: list[Any] | None = None  # the list whose records the lines hold, else the top object's entries
    first, more = True, False  # no item yet in the list or object being read; the last item ended with ','
    number = 1
    with path.open(encoding="utf-8") as lines:
        if lines.readline().strip(_JSON_SPACE) != "{":
            return _Detour(1, 1, "the first line is not '{' alone")
        for number, line in enumerate(lines, start=2):
            text = line.strip(_JSON_SPACE)
            if not text:
                continue
            if text in (("]", "],") if current is not None else ("}",)):
                if more:
                    return _Detour(number, _column(line), "a ',' ends the item before the end of its list or object")
                if current is None:
                    after = _next_text(lines, number)
                    return data if after is None else _Detour(after, 1, "more follows the closing '}'")
                current, first, more = None, False, text.endswith(",")
                continue
            if not (first or more):
                return _Detour(number, _column(line), "no ',' between this line and the item before")
            item = text.removesuffix(",")
            first, more = False, len(item) < len(text)
            try:
                if current is not None:  # one record, 2 levels below the document's top
                    current.append(_decode(item, within=2))
                elif item.endswith("["):  # `"key": [`, the records on the lines that follow
                    key = _decode(item.removesuffix("[").rstrip(_JSON_SPACE).removesuffix(":"))
                    if not isinstance(key, str):
                        return _Detour(number, _column(line), "this line is not one '\"key\": value' nor one "
                                                              "'\"key\": ['")
                    data[key] = current = []
                    first = True
                else:  # `"key": value`, read as an object of its own: the document's top object
                    data.update(_decode("{" + item + "}"))
            except _Refused as e:  # wrong in any layout: said at its place
                shift = 0 if current is not None else 1  # the `{` put before an entry
                raise SeedError([Problem(str(path), number, _column(line) + e.pos - shift, e.msg)]) from None
            except json.JSONDecodeError:
                what = "one whole record" if current is not None else "one '\"key\": value' nor one '\"key\": ['"
                return _Detour(number, _column(line), f"this line is not {what}")
    return _Detour(number, 1, "the file ends before its closing '}'")


def _column(line: str) -> int:
    """The column of a line's first character that is not JSON whitespace."""
    return len(line) - len(line.lstrip(_JSON_SPACE)) + 1


def _next_text(lines: Iterable[str], number: int) -> int | None:
    """The number of the first line after line `number` that holds more than whitespace, if any does."""
    return next((n for n, line in enumerate(lines, start=number + 1) if line.strip(_JSON_SPACE)), None)


class _Refused(json.JSONDecodeError):
    """JSON a snapshot may not hold in any layout: nested more than MAX_DEPTH levels deep, or a number that is not
    finite (an answer could not carry it) or has more digits than Python reads. `msg` is the whole message."""


class _NotFinite(ValueError):
    """From the decoder's hooks: a number that is not finite; where it is, `_bad_number` finds."""


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e400 reads as infinity
        raise _NotFinite(text)
    return number


def _no_constant(text: str) -> Any:
    raise _NotFinite(text)


_SNAPSHOT_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|-?(?:Infinity|NaN)|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?')


def _decode(text: str, *, within: int = 0) -> Any:
    """`text`, a JSON value `within` levels below the document's top, as a value; json.JSONDecodeError at the
    place of any problem (`_Refused` for those that are not syntax), never RecursionError: the document may nest
    MAX_DEPTH levels deep, as a friendly seed may, so that no record is too deep to store or to serve."""
    limit = MAX_DEPTH - within
    too_deep = f"JSON nested more than {MAX_DEPTH} levels deep"
    try:
        value = _SNAPSHOT_DECODER.decode(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:  # nested past what Python reads, which is far past MAX_DEPTH
        raise _Refused(too_deep, text, _nesting_past(text, limit) or 0) from None
    except ValueError:  # a hook's _NotFinite, or an integer of more digits than Python converts
        at, why = _bad_number(text)
        raise _Refused(why, text, at) from None
    # A record a line most often holds one `{` and no `[`: found out at once, before the values are looked at.
    if ("[" in text or text.find("{", 1) >= 0) and _deeper_than(value, limit):
        raise _Refused(too_deep, text, _nesting_past(text, limit) or 0)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether lists and objects nest in `value` (as JSON decodes it) more than `limit` levels deep, looked at a
    level at a time."""
    level, depth = [value], 0
    while True:
        level = [item for item in level if type(item) in (dict, list)]  # the containers `depth + 1` levels down
        if not level:
            return False
        depth += 1
        if depth > limit:
            return True
        level = [child for item in level for child in (item.values() if type(item) is dict else item)]


def _nesting_past(text: str, limit: int) -> int | None:
    """Where `text` opens a list or object more than `limit` levels deep, outside its strings; None if nowhere."""
    depth = 0
    for token in _JSON_TOKEN.finditer(text):
        if token[0] in ("[", "{", "]", "}"):
            depth += 1 if token[0] in "[{" else -1
            if depth > limit:
                return token.start()
    return None


def _bad_number(text: str) -> tuple[int, str]:
    """The place of the first number in `text` that JSON does not allow or Python cannot read, and why."""
    most = sys.get_int_max_str_digits()
    for token in _JSON_TOKEN.finditer(text):
        literal = token[0]
        if literal[-1] in "yN":  # Infinity, -Infinity, NaN
            return token.start(), f"JSON has no {literal}: a number must be finite"
        if literal[0] in '"[]{}':
            continue
        if any(mark in literal for mark in ".eE"):
            if not math.isfinite(float(literal)):
                return token.start(), f"the number {literal} is too large to be read as a finite number"
        elif most and len(literal.lstrip("-")) > most:
            return token.start(), f"the number {literal[:12]}… has more than {most:,} digits"
    return 0, "a number here cannot be read"


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def snapshot_document(records: dict[str, list[Row]]) -> dict[str, Any]:
    """A snapshot holding `records` (collection → API records), in the load order."""
    return {"format": SNAPSHOT_FORMAT, **{name: records.get(name, []) for name in LOAD_ORDER}}


# --- reading a friendly seed: YAML that remembers places, checked against the seed schema -------------------

PathKey = tuple[Any, ...]
Place = tuple[int, int]
_SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class Document:
    """A seed's plain data, and the place of each value and key by path (for problems that name the line)."""

    path: str
    data: Any = None
    values: dict[PathKey, Place] = field(default_factory=dict)
    keys: dict[PathKey, Place] = field(default_factory=dict)

    def problem(self, at: PathKey, message: str, *, key: bool = False) -> Problem:
        """A problem at the value (or key) at `at`, else at its nearest ancestor that has a place."""
        probe = tuple(at)
        while probe and probe not in (self.keys if key else self.values) and probe not in self.values:
            probe = probe[:-1]
        line, column = (self.keys.get(probe) if key else None) or self.values.get(probe, (1, 1))
        return Problem(self.path, line, column, message)


def _read_text(path: Path) -> str:
    shown = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SeedError([Problem(shown, 1, 1, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}")])
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SeedError([Problem(shown, 1, 1, f"file is not UTF-8 text ({e.reason} at byte {e.start})")]) from e
    except OSError as e:
        raise SeedError([Problem(shown, 1, 1, f"cannot read file: {e.strerror or e}")]) from e


def _yaml_documents(path: Path) -> list[Document]:
    """Every YAML document in `path`, built from the safe composer's nodes so each value keeps its place."""
    text = _read_text(path)
    try:
        return _compose(text, str(path), _SAFE_LOADER)
    except yaml.YAMLError:  # only from libyaml's loader: read again for the pure-Python parser's plainer message
        return _compose(text, str(path), yaml.SafeLoader)


def _compose(text: str, shown: str, loader_class: type[yaml.SafeLoader]) -> list[Document]:
    documents: list[Document] = []
    loader: yaml.SafeLoader | None = None
    try:
        loader = loader_class(text)
        while loader.check_node():
            node = loader.get_node()
            if node is not None:
                document = Document(shown)
                document.data = _Builder(loader, document).build(node, (), 0, aliased=False)
                documents.append(document)
    except yaml.YAMLError as e:
        if loader_class is not yaml.SafeLoader:
            raise
        raise SeedError([_syntax_problem(e, text, shown)]) from e
    finally:
        if loader is not None:
            loader.dispose()
    return documents


def _syntax_problem(error: yaml.YAMLError, text: str, shown: str) -> Problem:
    if isinstance(error, yaml.reader.ReaderError):
        before = text[:max(0, error.position)]
        line, column = before.count("\n") + 1, len(before) - before.rfind("\n")
        code = error.character if isinstance(error.character, int) else ord(str(error.character)[:1] or "?")
        return Problem(shown, line, column, f"YAML: the character U+{code:04X} is not allowed in YAML text")
    if not isinstance(error, yaml.MarkedYAMLError):
        return Problem(shown, 1, 1, f"YAML error: {error}")
    mark = error.problem_mark or error.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    what = f"{error.context}, {error.problem}" if error.context else (error.problem or "invalid YAML")
    started = error.context_mark
    if "'\\t'" in what:
        what = "a tab character is not allowed here; indent with spaces"
    elif error.context and started is not None and mark is not None and started.line != mark.line:
        what += f" (it started on line {started.line + 1}, column {started.column + 1})"
    return Problem(shown, line, column, f"YAML syntax: {what}")


class _Builder:
    """Plain values from a node tree: duplicate keys refused, what aliases expand to bounded, places kept."""

    def __init__(self, loader: yaml.SafeLoader, document: Document) -> None:
        self.loader, self.document, self.seen, self.budget = loader, document, set[int](), MAX_ALIASED_NODES

    def fail(self, node: yaml.Node, message: str) -> SeedError:
        return SeedError([Problem(self.document.path, *_place(node), message)])

    def build(self, node: yaml.Node, at: PathKey, depth: int, *, aliased: bool) -> Any:
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            aliased = aliased or id(node) in self.seen
            self.seen.add(id(node))
        self.budget -= aliased
        if self.budget < 0:
            raise self.fail(node, f"aliases expand to more than {MAX_ALIASED_NODES:,} nodes; refused")
        if depth > MAX_DEPTH:
            raise self.fail(node, f"the document is nested more than {MAX_DEPTH} levels deep")
        self.document.values.setdefault(at, _place(node))
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, i), depth + 1, aliased=aliased) for i, item in enumerate(node.value)]
        if not isinstance(node, yaml.MappingNode):
            return self.scalar(node)
        self.loader.flatten_mapping(node)  # `<<: *defaults` merge keys
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else []
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise self.fail(key_node, "a mapping key must be a plain value")
            if key in result:
                first = self.document.keys[(*at, key)][0]
                raise self.fail(key_node, f"duplicate key {key!r} (first defined on line {first})")
            self.document.keys[(*at, key)] = _place(key_node)
            result[key] = self.build(value_node, (*at, key), depth + 1, aliased=aliased)
        return result

    def scalar(self, node: yaml.Node) -> Any:
        if node.tag == "tag:yaml.org,2002:str":  # the common case, without the constructor's dispatch
            return node.value
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise self.fail(node, f"YAML: {e.problem}") from e


def _place(node: yaml.Node) -> Place:
    return node.start_mark.line + 1, node.start_mark.column + 1


@cache
def seed_validator() -> Draft202012Validator:
    return Draft202012Validator(seed_schema())


@cache
def seed_schema() -> dict[str, Any]:
    """The friendly seed's JSON Schema (draft 2020-12), read as data from the reconciler package."""
    text = resources.files("reconciler").joinpath(*SCHEMA_FILE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


def _schema_problems(document: Document) -> list[Problem]:
    errors = seed_validator().iter_errors(document.data)
    return sorted({p for error in errors for p in _explain(document, error)})


_KIND = {"string": "a string", "object": "a mapping", "array": "a list", "boolean": "true or false",
         "integer": "a whole number", "number": "a number", "null": "null"}
_TYPES: dict[str, Any] = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def _explain(document: Document, error: ValidationError) -> list[Problem]:
    """One schema error in words: the seed schema uses type, required, additionalProperties, minLength,
    pattern and oneOf (of a string or a mapping, of 'all' or a list)."""
    at: PathKey = tuple(error.absolute_path)
    subject = _dotted(at) or "the document"
    instance: Any = error.instance
    schema: Any = error.schema
    rule: Any = error.validator_value
    within = f" in {_dotted(at)}" if at else ""
    if error.validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(schema.get("properties", {}))
        return [document.problem((*at, key), f"unknown key {key!r}{within}"
                                 + (near_miss(str(key), allowed) or f" (allowed: {', '.join(allowed)})"), key=True)
                for key in instance if key not in allowed]
    if error.validator == "required":
        return [document.problem(at, f"missing required key {key!r}{within}")
                for key in rule if isinstance(instance, dict) and key not in instance]
    if error.validator == "type":
        return [document.problem(at, f"{subject} must be {_KIND.get(str(rule))}, "
                                     f"not {_type_name(instance)}")]
    if error.validator == "minLength":
        return [document.problem(at, f"{subject} must not be empty")]
    if error.validator == "pattern":
        return [document.problem(at, f"{subject} {instance!r} does not match the pattern {rule}")]
    if error.validator == "oneOf":
        branches: list[Any] = rule
        fitting = [i for i, b in enumerate(branches) if _fits(instance, b)]
        inner = [e for e in error.context or [] if e.schema_path and e.schema_path[0] in fitting]
        if len(fitting) == 1 and inner and "const" not in branches[fitting[0]]:
            return [p for e in inner for p in _explain(document, e)]
        kinds = [_KIND.get(str(b["type"]), str(b["type"])) for b in branches if "type" in b]
        constants = [b["const"] for b in branches if "const" in b]
        shown = repr(instance) if isinstance(instance, str | int | float) else _type_name(instance)
        hint = near_miss(instance, [c for c in constants if isinstance(c, str)]) if isinstance(instance, str) else ""
        return [document.problem(at, f"{subject} must be {' or '.join(kinds + [repr(c) for c in constants])}, "
                                     f"not {shown}{hint}")]
    return [document.problem(at, f"{subject}: {error.message}")]


def _fits(instance: Any, branch: Any) -> bool:
    if "const" in branch:
        return type(instance) is type(branch["const"])
    return isinstance(instance, _TYPES.get(str(branch.get("type")), object))


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    names = {str: "a string", list: "a list", dict: "a mapping", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def _dotted(at: PathKey) -> str:
    """A path as people write it: courses[0].members[2]."""
    return "".join(f"[{part}]" if isinstance(part, int) else (f".{part}" if i else str(part))
                   for i, part in enumerate(at))


def near_miss(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'X'?' for the closest choice, or '' when nothing is close."""
    folded = {c.casefold(): c for c in choices}
    found = difflib.get_close_matches(word.casefold(), list(folded), n=1, cutoff=0.6)
    return f"; did you mean {folded[found[0]]!r}?" if found else ""
