"""Loading an emulator store from a seed: the friendly YAML of examples/seed.yaml, or a JSON snapshot.

A JSON snapshot is `{"format": "nexudus-snapshot/1", "<collection>": [records as the API returns them]}`;
Ids are kept, denormalised fields are dropped (the store computes them) and unknown keys are ignored, except
a coworker's `"Deleted": true`, which marks a deleted coworker that lists still show (see the emulator docs).
"""

from __future__ import annotations

import difflib
import json
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

_SNAPSHOT_REFERENCES = {"courselessons": ("CourseId",), "coursemembers": ("CourseId", "CoworkerId"),
                        "coursecompletedlessons": ("CourseLessonId", "CourseMemberId")}


def _load_snapshot(path: Path, store: Store, replace: bool) -> SeedResult:
    shown = str(path)
    try:
        data = _snapshot_lines(path)
        if data is None:  # not the layout `snapshot` writes: a whole-document parse, within the file limit
            data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise SeedError([Problem(shown, e.lineno, e.colno, f"JSON syntax: {e.msg}")]) from e
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
    _make_room(path, store, replace)
    counts = {name: store.load(name, records[name]) for name in LOAD_ORDER}
    return SeedResult(counts, 0)


MAX_SNAPSHOT_BYTES = 4 * 1024 * 1024 * 1024  # a snapshot of 1,000,000 completions is about 500 MB


def _snapshot_lines(path: Path) -> dict[str, Any] | None:
    """A snapshot in the layout `reconciler snapshot` writes (one key a line, one record a line), read a
    line at a time so that its size is bounded by the records, not by one string of the whole file; None
    when the file has another layout (it is then parsed whole, within MAX_FILE_BYTES)."""
    if path.stat().st_size > MAX_SNAPSHOT_BYTES:
        raise SeedError([Problem(str(path), 1, 1, f"the snapshot is larger than {MAX_SNAPSHOT_BYTES:,} bytes")])
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
