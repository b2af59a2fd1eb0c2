"""The typed plan on the write side: Create, Delete and Enroll, each with its precondition, and the one
serializer between them and the plan's JSON form (`specs/plan.schema.json`).

A saved plan, a journal and an undo plan are all read back through `plan_from_document`, which validates
the document against the schema and then checks that every action agrees with itself (a delete's
precondition names the very record it carries). The executor checks exactly the precondition an action
carries, nothing it works out again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, overload

from reconciler import UNPAIRED
from reconciler.errors import PlanFileError
from reconciler.schema_check import conforms
from reconciler.schemas import schema, validator

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Ref:
    """An Id with the name shown beside it (a course's or lesson's title, a member's name)."""

    id: int | None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """A completion as the API named its fields: what a delete removes, journals and undo restores."""

    id: int
    member_id: int
    lesson_id: int
    created_on: str
    updated_on: str
    system_id: str | None = None
    unique_id: str | None = None
    lesson_title: str = ""
    member_name: str = ""

    def as_api(self) -> dict[str, Any]:
        return {"Id": self.id, "CourseMemberId": self.member_id, "CourseLessonId": self.lesson_id,
                "CourseLessonTitle": self.lesson_title, "CourseMemberCoworkerFullName": self.member_name,
                "CreatedOn": self.created_on, "UpdatedOn": self.updated_on, "SystemId": self.system_id,
                "UniqueId": self.unique_id}

    @classmethod
    def from_api(cls, raw: dict[str, Any]) -> Record:
        return cls(int(raw["Id"]), int(raw["CourseMemberId"]), int(raw["CourseLessonId"]),
                   str(raw.get("CreatedOn") or ""), str(raw.get("UpdatedOn") or ""), raw.get("SystemId"),
                   raw.get("UniqueId"), str(raw.get("CourseLessonTitle") or ""),
                   str(raw.get("CourseMemberCoworkerFullName") or ""))


# --- preconditions -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Absent:
    """No completion of this lesson exists for this member (None: the member this apply enrols)."""

    member_id: int | None
    lesson_id: int


@dataclass(frozen=True, slots=True)
class Exists:
    """This record exists, still for this member and lesson, with this UpdatedOn."""

    id: int
    member_id: int
    lesson_id: int
    updated_on: str


@dataclass(frozen=True, slots=True)
class NotEnrolled:
    course_id: int
    coworker_id: int


# --- actions -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Common:
    course: Ref
    member: Ref
    lesson: Ref
    spec: str
    reason: str
    origin: str | None = None
    note: str | None = None
    twin: str | None = None
    coworker_id: int | None = None


@dataclass(frozen=True, slots=True)
class Create(_Common):
    kind: ClassVar[str] = "create"
    rank: ClassVar[int] = 1
    system_id: str | None = None

    @property
    def precondition(self) -> Absent:
        return Absent(self.member.id, self.lesson.id or 0)


@dataclass(frozen=True, slots=True)
class Delete(_Common):
    kind: ClassVar[str] = "delete"
    rank: ClassVar[int] = 2
    record: Record = field(default=Record(0, 0, 0, "", ""))

    @property
    def precondition(self) -> Exists:
        return Exists(self.record.id, self.record.member_id, self.record.lesson_id, self.record.updated_on)


@dataclass(frozen=True, slots=True)
class Enroll(_Common):
    kind: ClassVar[str] = "enroll"
    rank: ClassVar[int] = 0

    @property
    def precondition(self) -> NotEnrolled:
        return NotEnrolled(self.course.id or 0, self.coworker_id or 0)


Action = Create | Delete | Enroll


def describe(action: Action) -> str:
    if isinstance(action, Enroll):  # an enrolment names no lesson (its lesson Id is 0)
        who = action.member.name or f"coworker {action.coworker_id}"
        return f"enrol {who} in {action.course.name or action.course.id}"
    return f"{action.kind} {action.lesson.name or action.lesson.id} for {action.member.name or action.member.id}"


# --- the JSON form -------------------------------------------------------------------------------

def action_to_dict(action: Action) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "action": action.kind,
        "course": {"id": action.course.id, "title": action.course.name},
        "member": {"id": action.member.id, "name": action.member.name},
        "lesson": {"id": action.lesson.id, "title": action.lesson.name},
        "spec": action.spec, "reason": action.reason, "origin": action.origin,
    }
    if action.note:
        entry["note"] = action.note
    if action.twin:
        entry["twin"] = action.twin
    if action.coworker_id is not None:
        entry["coworker_id"] = action.coworker_id
    if isinstance(action, Create):
        entry["system_id"] = action.system_id
        entry["precondition"] = {"absent": {"CourseMemberId": action.member.id, "CourseLessonId": action.lesson.id}}
    elif isinstance(action, Delete):
        entry["record"] = action.record.as_api()
        entry["precondition"] = {"exists": {"Id": action.record.id, "CourseMemberId": action.record.member_id,
                                            "CourseLessonId": action.record.lesson_id,
                                            "UpdatedOn": action.record.updated_on}}
    else:
        entry["precondition"] = {"not_enrolled": {"CourseId": action.course.id, "CoworkerId": action.coworker_id}}
    return entry


def _expect(where: str, name: str, found: object, wanted: object, what: str) -> None:
    if found != wanted:
        raise PlanFileError(f"{where}.precondition.{name} is {found!r}, but {what} is {wanted!r}: the action "
                            "does not agree with itself (was the plan edited?); plan again")


def _ref(named: dict[str, Any], label: str, refs: dict[Any, Any] | None) -> Ref:
    """`{"id": …, "title"/"name": …}` as a Ref; with `refs`, one Ref for each Id and name (a plan's actions
    name few courses and lessons many times, and each member a few times)."""
    key = (named["id"], named.get(label, ""))
    if refs is None:
        return Ref(*key)
    found = refs.get(key)
    if found is None:
        found = refs[key] = Ref(*key)
    return found


def _shared(text: Any, refs: dict[Any, Any] | None) -> Any:
    """One string for each text that many actions repeat (spec, reason, origin, marker): a plan read back
    would otherwise hold a string of its own for each, per action."""
    if refs is None or type(text) is not str:
        return text
    return refs.setdefault(text, text)


def action_from_dict(entry: dict[str, Any], where: str, refs: dict[Any, Any] | None = None) -> Action:
    """One action of a document that already passed the schema; `where` names it in errors. `refs` (any dict,
    kept across the actions of one document) shares the Refs that name the same thing, and the texts that
    many actions repeat."""
    course, member, lesson = _ref(entry["course"], "title", refs), _ref(entry["member"], "name", refs), \
        _ref(entry["lesson"], "title", refs)
    get = entry.get
    spec, reason, origin = _shared(entry["spec"], refs), _shared(entry["reason"], refs), _shared(get("origin"), refs)
    note, twin, coworker_id = get("note"), get("twin"), get("coworker_id")
    kind = entry["action"]
    condition = entry["precondition"]

    if kind == "create":
        absent = condition.get("absent")
        if absent is None:
            raise PlanFileError(f"{where}.precondition: a create needs 'absent'")
        if absent.get("CourseMemberId") != member.id or absent.get("CourseLessonId") != lesson.id:
            _expect(where, "absent.CourseMemberId", absent.get("CourseMemberId"), member.id, "the member's Id")
            _expect(where, "absent.CourseLessonId", absent.get("CourseLessonId"), lesson.id, "the lesson's Id")
        if lesson.id is None:
            raise PlanFileError(f"{where}.lesson.id: a create needs a lesson Id")
        if member.id is None and coworker_id is None:
            raise PlanFileError(f"{where}: a create for a member this apply enrols needs coworker_id")
        return Create(course, member, lesson, spec, reason, origin, note, twin, coworker_id,
                      _shared(get("system_id"), refs))
    if kind == "delete":
        exists, raw = condition.get("exists"), get("record")
        if exists is None or raw is None:
            raise PlanFileError(f"{where}: a delete needs 'record' and precondition 'exists'")
        record = Record.from_api(raw)
        _expect(where, "exists.Id", exists.get("Id"), record.id, "the record's Id")
        _expect(where, "exists.CourseMemberId", exists.get("CourseMemberId"), record.member_id,
                "the record's CourseMemberId")
        _expect(where, "exists.CourseLessonId", exists.get("CourseLessonId"), record.lesson_id,
                "the record's CourseLessonId")
        _expect(where, "exists.UpdatedOn", exists.get("UpdatedOn"), record.updated_on, "the record's UpdatedOn")
        _expect(where, "exists.CourseMemberId", record.member_id, member.id, "the action's member Id")
        _expect(where, "exists.CourseLessonId", record.lesson_id, lesson.id, "the action's lesson Id")
        return Delete(course, member, lesson, spec, reason, origin, note, twin, coworker_id, record)
    enrolment = condition.get("not_enrolled")
    if enrolment is None:
        raise PlanFileError(f"{where}.precondition: an enrolment needs 'not_enrolled'")
    _expect(where, "not_enrolled.CourseId", enrolment.get("CourseId"), course.id, "the course's Id")
    _expect(where, "not_enrolled.CoworkerId", enrolment.get("CoworkerId"), coworker_id, "the coworker_id")
    if coworker_id is None:
        raise PlanFileError(f"{where}.coworker_id: an enrolment needs the coworker's Id")
    return Enroll(course, member, lesson, spec, reason, origin, note, twin, coworker_id)


GUARD_FIELDS = ("blocked", "partial")
"""The fields apply --plan reads to decide whether it may write at all (`commands/apply.still_blocked`): a
safety budget's block and the reads that did not add up. The saved plan's digest covers them."""


def guard_of(document: dict[str, Any]) -> dict[str, Any] | None:
    """What of `GUARD_FIELDS` a document's digest covers: None when the plan blocks nothing (`blocked` null,
    `partial` empty), so that such a plan digests as before (the actions alone); else the fields."""
    guard = {name: document.get(name) for name in GUARD_FIELDS}
    if guard["blocked"] is None and not guard["partial"]:
        return None
    return guard


def actions_digest(actions: Iterable[dict[str, Any]], guard: dict[str, Any] | None = None) -> str:
    """SHA-256 over the actions' JSON lines, and over the guard fields (`guard_of`) when the plan blocks
    anything: a plan whose actions, `blocked` or `partial` were edited after it was made no longer matches.
    (JSON objects keep their key order through a save and a load, so the lines read back are the lines
    saved.)"""
    digest = ActionsDigest()
    encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(entry, ensure_ascii=False), one encoder
    digest.add([encode(entry) for entry in actions])
    return digest.hexdigest(guard)


DOCUMENT_DIGEST_FIELDS = ("warnings", "drift", "matrix", "undo_of", "summary", "limits")
"""What `document_digest` covers: what show draws beside the actions that nothing else checks (`blocked` and
`partial` are `actions_digest`'s, the target and the spec digest are checked by apply against the target and the
specs). The summary and the limits are checked against the actions first (`planning.check_summary`, which names
the field), but the counts the actions do not give (unchanged, existing in scope) and limits edited with an
estimate to match are this digest's."""


def document_digest(document: dict[str, Any]) -> str:
    """SHA-256 over a saved plan's `DOCUMENT_DIGEST_FIELDS` that it has, a line `key<TAB>canonical JSON` each: the
    warnings, the drift, the matrix (whose names the page's action table shows), the apply an undo plan reverses,
    the summary and the limits, so that one edited after the plan was saved is refused as an edited action is."""
    digest = hashlib.sha256()
    for key in DOCUMENT_DIGEST_FIELDS:
        if key in document:
            line = key + "\t" + json.dumps(document[key], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
            digest.update(line.encode("utf-8", UNPAIRED) + b"\n")
    return digest.hexdigest()


def check_document_digest(document: dict[str, Any], source: str) -> None:
    """PlanFileError unless a saved document carries the `document_digest` its fields give: a plan without one
    was edited (the field taken out with the rest), or saved by a version before it, and is planned again."""
    recorded = document.get("document_digest")
    if recorded is None:
        raise PlanFileError(f"{source}: the plan carries no document_digest, so its warnings, drift, matrix, "
                            "undo_of, summary and limits cannot be checked (was it edited, or saved by an older "
                            "reconciler?); make it again (`plan --out`, or `undo JOURNAL --out` for an undo plan) and "
                            "apply it as saved")
    if recorded != document_digest(document):
        raise PlanFileError(f"{source}: the plan's warnings, drift, matrix, undo_of, summary or limits were changed "
                            "after it was saved (document_digest does not match); plan again and apply the plan as "
                            "saved")


class ActionsDigest:
    """`actions_digest` taken as the lines are written: `add` the actions' JSON lines, a batch at a time,
    then `hexdigest` with the document's guard fields once they are known."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._first = True

    def add(self, lines: list[str]) -> None:
        if lines:
            text = "\n".join(lines)
            data = text.encode("utf-8", UNPAIRED)  # as the file has it (a lone surrogate as its escape)
            self._hash.update(data if self._first else b"\n" + data)
            self._first = False

    def hexdigest(self, guard: dict[str, Any] | None = None) -> str:
        """The digest of the lines added so far, with `guard` (`guard_of` the document) folded in after
        them as one line no action line can be (an action line is a JSON object; this starts with '#')."""
        if guard is None:
            return self._hash.hexdigest()
        folded = self._hash.copy()
        line = "#guard " + json.dumps(guard, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        data = line.encode("utf-8", UNPAIRED)
        folded.update(data if self._first else b"\n" + data)
        return folded.hexdigest()


class Mapped(Sequence[_T]):
    """`make` of each item of `source`, made when it is read and never held: a plan of a million actions
    would otherwise hold a million dicts (or tuples) that are only read once or twice. It reads like the
    list it stands for (len, index, slice, iterate), and is never changed."""

    __slots__ = ("_make", "_source")

    def __init__(self, source: Sequence[Any], make: Callable[[Any], _T]) -> None:
        self._source = source
        self._make = make

    def __len__(self) -> int:
        return len(self._source)

    @overload
    def __getitem__(self, index: int) -> _T: ...

    @overload
    def __getitem__(self, index: slice) -> list[_T]: ...

    def __getitem__(self, index: int | slice) -> _T | list[_T]:
        if isinstance(index, slice):
            return list(map(self._make, self._source[index]))
        return self._make(self._source[index])

    def __iter__(self) -> Iterator[_T]:
        return map(self._make, self._source)


class ActionDicts(Mapped[dict[str, Any]]):
    """Typed actions read as their JSON form (`action_to_dict`), each made when it is read: the `actions` of a
    plan document that is only shown, never written back (a saved plan loaded for apply keeps its typed
    actions, not a dict each as well)."""

    __slots__ = ()

    def __init__(self, actions: Sequence[Action]) -> None:
        super().__init__(actions, action_to_dict)

    def __repr__(self) -> str:
        return f"ActionDicts({len(self)} actions)"


@dataclass(frozen=True)
class TypedPlan:
    """A plan document read back and checked: the header as written, and typed actions."""

    document: dict[str, Any]
    actions: tuple[Action, ...]

    @property
    def target(self) -> str:
        return str(self.document["target"])


def plan_from_document(document: Any, source: str, *, saved: bool = False) -> TypedPlan:
    """Validate a plan document (schema, then each action's self-consistency, then its digest) and type its
    actions. A `saved` document (a plan or undo plan read from a file, for show and apply --plan) must carry
    `actions_digest`, and it must match its actions and guard fields (`guard_of`); a document made in this
    process (no digest) is checked for the rest. (A saved plan's `document_digest` is checked by `load_plan`,
    once its summary is.)

    Any mismatch is one PlanFileError naming `source` and the field, never a traceback.
    """
    if not isinstance(document, dict):
        raise PlanFileError(f"{source} is not a saved plan (not a JSON object)")
    check_schema(for_schema(document), source)
    refs: dict[Any, Any] = {}
    actions = tuple(action_from_dict(entry, f"{source}: actions[{index}]", refs)
                    for index, entry in enumerate(document["actions"]))
    check_digest(document, lambda: actions_digest(document["actions"], guard_of(document)), source, saved=saved)
    return TypedPlan(document, actions)


def check_schema(document: dict[str, Any], source: str) -> None:
    """PlanFileError naming the first field of `document` that specs/plan.schema.json refuses, if any."""
    if conforms(document, schema("plan")):  # jsonschema only to say what is wrong (see schema_check)
        return
    errors = sorted(validator("plan").iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = _dotted(first.absolute_path)
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise PlanFileError(f"{source}: {where or 'the document'}: {first.message}{more}")


def check_digest(document: dict[str, Any], digest: Callable[[], str], source: str, *, saved: bool) -> None:
    """PlanFileError unless the document's `actions_digest` is `digest()` (taken over its actions and guard
    fields); a `saved` document must carry one."""
    recorded = document.get("actions_digest")
    if recorded is None and saved:
        raise PlanFileError(f"{source}: the plan carries no actions_digest, so its actions and its blocked and "
                            "partial fields cannot be checked (was it edited? The JSON `plan --format json` prints "
                            "is for reading: only the file `plan --out FILE` saves can be applied or shown); plan "
                            "again with --out and apply the plan as saved")
    if recorded is not None and recorded != digest():
        raise PlanFileError(f"{source}: the actions were changed after the plan was made, or its blocked or "
                            "partial fields were (actions_digest does not match); plan again and apply the plan "
                            "as saved")


def for_schema(document: dict[str, Any]) -> dict[str, Any]:
    """The document as the schema needs to see it. jsonschema costs tens of microseconds an action (about
    20 s for a plan of 160,000), so when every action has a plain shape (`plain_action`, which the schema
    certainly accepts) the schema sees only the first; otherwise it sees them all and explains the first
    problem exactly as before. The same for each course's matrix rows (`plain_matrix_row`). (Property tests
    check the shapes against the schema.)"""
    trimmed = dict(document)
    actions = document.get("actions")
    if isinstance(actions, list) and len(actions) > 1 and all(map(plain_action, actions)):
        trimmed["actions"] = actions[:1]
    matrix = document.get("matrix")
    if isinstance(matrix, list):  # a row per member: as many as the actions
        courses = []
        for course in matrix:
            rows = course.get("members") if isinstance(course, dict) else None
            if isinstance(rows, list) and len(rows) > 1 and all(map(plain_matrix_row, rows)):
                course = {**course, "members": rows[:1]}
            courses.append(course)
        trimmed["matrix"] = courses
    return trimmed


_ROW_KEYS = frozenset(("id", "coworker_id", "name", "teams", "kept"))


def plain_matrix_row(row: Any) -> bool:
    """Whether a matrix row has a shape that specs/plan.schema.json certainly accepts."""
    return (type(row) is dict and {"id", "name", "teams", "kept"} <= row.keys() <= _ROW_KEYS
            and type(row["id"]) is int and (row.get("coworker_id") is None or type(row["coworker_id"]) is int)
            and type(row["name"]) is str and type(row["teams"]) is list
            and all(type(team) is str for team in row["teams"])
            and type(row["kept"]) is str and not row["kept"].strip("01"))


_REQUIRED = frozenset(("action", "course", "member", "lesson", "spec", "reason", "origin", "precondition"))
_ALLOWED = _REQUIRED | {"note", "system_id", "coworker_id", "twin", "record"}
_REASONS = frozenset(("declared", "migrated", "revoked", "undeclared", "orphaned", "duplicate", "undo"))
_RECORD_REQUIRED = frozenset(("Id", "CourseMemberId", "CourseLessonId", "CreatedOn", "UpdatedOn", "SystemId"))
_RECORD_ALLOWED = _RECORD_REQUIRED | {"CourseLessonTitle", "CourseMemberCoworkerFullName", "UniqueId"}


def _named(value: Any) -> bool:
    return (type(value) is dict and "id" in value and value.keys() <= {"id", "title", "name"}
            and (value["id"] is None or type(value["id"]) is int)
            and type(value.get("title", "")) is str and type(value.get("name", "")) is str)


def _text_or_none(value: Any) -> bool:
    return value is None or type(value) is str


def _record(value: Any) -> bool:
    return (type(value) is dict and _RECORD_REQUIRED <= value.keys() <= _RECORD_ALLOWED
            and type(value["Id"]) is int and type(value["CourseMemberId"]) is int
            and type(value["CourseLessonId"]) is int and type(value["CreatedOn"]) is str
            and type(value["UpdatedOn"]) is str and _text_or_none(value["SystemId"])
            and _text_or_none(value.get("UniqueId")) and type(value.get("CourseLessonTitle", "")) is str
            and type(value.get("CourseMemberCoworkerFullName", "")) is str)


def _precondition(value: Any) -> bool:
    if type(value) is not dict or len(value) != 1:
        return False
    (kind, fields), = value.items()
    if type(fields) is not dict:
        return False
    if kind == "absent":
        return (fields.keys() == {"CourseMemberId", "CourseLessonId"} and type(fields["CourseLessonId"]) is int
                and (fields["CourseMemberId"] is None or type(fields["CourseMemberId"]) is int))
    if kind == "exists":
        return (fields.keys() == {"Id", "CourseMemberId", "CourseLessonId", "UpdatedOn"}
                and type(fields["Id"]) is int and type(fields["CourseMemberId"]) is int
                and type(fields["CourseLessonId"]) is int and type(fields["UpdatedOn"]) is str)
    if kind == "not_enrolled":
        return (fields.keys() == {"CourseId", "CoworkerId"} and type(fields["CourseId"]) is int
                and type(fields["CoworkerId"]) is int)
    return False


def plain_action(entry: Any) -> bool:
    """Whether an action has a shape that specs/plan.schema.json certainly accepts (a subset of what it
    accepts: anything else is left to the schema, which explains it)."""
    return (type(entry) is dict and _REQUIRED <= entry.keys() <= _ALLOWED
            and entry["action"] in ("create", "delete", "enroll")
            and type(entry["reason"]) is str and entry["reason"] in _REASONS
            and _named(entry["course"]) and _named(entry["member"]) and _named(entry["lesson"])
            and type(entry["spec"]) is str and _text_or_none(entry["origin"])
            and type(entry.get("note", "")) is str and type(entry.get("twin", "")) is str
            and _text_or_none(entry.get("system_id"))
            and (entry.get("coworker_id") is None or type(entry["coworker_id"]) is int)
            and ("record" not in entry or _record(entry["record"])) and _precondition(entry["precondition"]))


def _dotted(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
