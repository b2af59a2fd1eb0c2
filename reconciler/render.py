"""Renderers: a plan becomes one dict (the versioned JSON form), and that dict becomes text or Markdown.

Output goes to the stream given; nothing here reads the network or the clock. A plan of a million actions
streams: its actions are made as they are written (`ActionEntries`), the JSON goes out in pieces
(`json_pieces`) and the text one member at a time.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]  # json.dumps' own parts
from pathlib import Path
from typing import Any, TextIO

from reconciler.actions import Action as TypedAction
from reconciler.actions import Create, Delete, Enroll, Mapped, Record, Ref
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits
from reconciler.model import Catalog, Completion, Origin
from reconciler.plan import Change, Plan, estimate_writes

FORMAT_VERSION = 1
MARKDOWN_LIMIT = 60_000


@dataclass(frozen=True)
class Labels:
    """Display names for Ids, taken from the catalog when the plan is made."""

    courses: dict[int, str]
    lessons: dict[int, str]
    members: dict[int, str]

    @classmethod
    def from_catalog(cls, catalog: Catalog) -> Labels:
        return cls({c.id: c.title for c in catalog.courses.values()},
                   {x.id: x.title for x in catalog.lessons.values()},
                   {m.id: m.full_name for m in catalog.members.values()})


def record_of(record: Completion) -> Record:
    return Record(record.id, record.member_id, record.lesson_id, record.created_on, record.updated_on,
                  record.system_id, record.unique_id, record.lesson_title, record.member_name)


def typed_action(action: Change, labels: Labels) -> TypedAction:
    """The planner's action as the write side's typed action, with the names shown beside its Ids."""
    common: dict[str, Any] = {
        "course": Ref(action.course_id, labels.courses.get(action.course_id, "")),
        "member": Ref(action.member_id or None,  # None: the enrolment is made by this apply
                      labels.members.get(action.member_id) or action.name or ""),
        "lesson": Ref(action.lesson_id, labels.lessons.get(action.lesson_id, "")),
        "spec": action.spec, "reason": action.reason, "origin": str(action.origin) if action.origin else None,
        "note": action.note, "twin": action.twin, "coworker_id": action.coworker_id,
    }
    if action.kind == "create":
        return Create(**common, system_id=action.system_id)
    if action.kind == "delete" and action.record is not None:
        return Delete(**common, record=record_of(action.record))
    return Enroll(**common)


def action_dict(action: Change, labels: Labels, shared: dict[tuple[Any, ...], Any] | None = None
                ) -> dict[str, Any]:
    """The JSON form of the planner's change, built directly (a plan of 100,000 changes need not type each
    one first); the same dict as `action_to_dict(typed_action(action, labels))`, which a test checks.

    With `shared`, the course, member and lesson parts are one dict per course, member and lesson for the
    whole plan (a plan document is never changed once made): a million actions hold a third as much."""
    member = action.member_id or None  # None: the enrolment is made by this apply
    name = labels.members.get(action.member_id) or action.name or ""
    if shared is None:
        shared = {}
    course_part = shared.get(("c", action.course_id))
    if course_part is None:
        course_part = shared[("c", action.course_id)] = {"id": action.course_id,
                                                          "title": labels.courses.get(action.course_id, "")}
    member_part = shared.get(("m", member, name))
    if member_part is None:
        member_part = shared[("m", member, name)] = {"id": member, "name": name}
    lesson_part = shared.get(("l", action.lesson_id))
    if lesson_part is None:
        lesson_part = shared[("l", action.lesson_id)] = {"id": action.lesson_id,
                                                          "title": labels.lessons.get(action.lesson_id, "")}
    origin = shared.get(("o", action.origin)) if action.origin else None
    if origin is None and action.origin:
        origin = shared[("o", action.origin)] = str(action.origin)
    entry: dict[str, Any] = {
        "action": action.kind, "course": course_part, "member": member_part, "lesson": lesson_part,
        "spec": action.spec, "reason": action.reason, "origin": origin,
    }
    if action.note:
        entry["note"] = action.note
    if action.twin:
        entry["twin"] = action.twin
    if action.coworker_id is not None:
        entry["coworker_id"] = action.coworker_id
    if action.kind == "create":
        entry["system_id"] = action.system_id
        entry["precondition"] = {"absent": {"CourseMemberId": member, "CourseLessonId": action.lesson_id}}
    elif action.kind == "delete" and action.record is not None:
        record = action.record
        entry["record"] = {"Id": record.id, "CourseMemberId": record.member_id, "CourseLessonId": record.lesson_id,
                           "CourseLessonTitle": record.lesson_title,
                           "CourseMemberCoworkerFullName": record.member_name, "CreatedOn": record.created_on,
                           "UpdatedOn": record.updated_on, "SystemId": record.system_id,
                           "UniqueId": record.unique_id}
        entry["precondition"] = {"exists": {"Id": record.id, "CourseMemberId": record.member_id,
                                            "CourseLessonId": record.lesson_id, "UpdatedOn": record.updated_on}}
    else:
        entry["precondition"] = {"not_enrolled": {"CourseId": action.course_id, "CoworkerId": action.coworker_id}}
    return entry


class ActionEntries(Mapped[dict[str, Any]]):
    """A plan document's `actions`: the JSON form of each change, made when it is read rather than held.

    A plan of a million creates would hold a million dicts (about a gigabyte) that are only ever written
    out once or twice; this sequence makes each as it is needed (`action_dict`), so writing a plan streams.
    It reads like the list it stands for (len, index, iterate, compare), and is never changed."""

    __slots__ = ("_labels",)

    def __init__(self, changes: Sequence[Change], labels: Labels) -> None:
        super().__init__(changes, lambda change: action_dict(change, labels))
        self._labels = labels

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ActionEntries | list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ActionEntries({len(self)} actions)"

    def encoded(self) -> Iterator[str]:
        """Each action as one line of JSON: exactly `json.dumps(action_dict(change, labels),
        ensure_ascii=False)` (a test checks)."""
        return chain.from_iterable(self.encoded_batches())

    def encoded_batches(self, size: int = 2048) -> Iterator[list[str]]:
        """`encoded`, `size` lines at a time. A create's line is its lesson between two parts that one member's
        creates share (course, member, spec, reason, origin, marker), made once per member; other actions go the
        long way. A create with none of the fields only some changes carry (the planner's usual create: its
        `Change.extra` is None) is told, and its run found, from what its spec's changes share (`Change.shared`)
        alone: a plan of a million creates encodes in half the time."""
        labels = self._labels
        lessons: dict[int, str] = {}
        courses: dict[int, str] = {}
        texts: dict[str | None, str] = {None: "null"}
        last: tuple[Any, ...] = ()  # the run of the creates that go the long way
        last_head: tuple[Any, ...] | None = None  # the run of the usual creates (head, member, origin)
        last_member = 0
        last_origin: Origin | None = None
        head = middle = ""
        batch: list[str] = []
        keep = batch.append

        def encode(value: Any) -> str:
            return json.dumps(value, ensure_ascii=False)

        def text(value: str | None) -> str:  # a few distinct values (spec names, reasons, markers)
            found = texts.get(value)
            if found is None:
                found = texts[value] = encode(value)
            return found

        def parts(course_id: int, member_id: int, name: str | None, spec: str, reason: str, system_id: str | None,
                  origin: Origin | None) -> tuple[str, str]:
            """A create's line before its lesson, and between its lesson and the lesson's Id."""
            member = str(member_id) if member_id else "null"
            shown = labels.members.get(member_id) or name or ""
            course = courses.get(course_id)
            if course is None:
                course = courses[course_id] = encode({"id": course_id, "title": labels.courses.get(course_id, "")})
            where = encode_basestring(str(origin)) if origin else "null"
            return ((f'{{"action": "create", "course": {course}, "member": {{"id": {member}, "name": '
                     f'{encode_basestring(shown)}}}, "lesson": '),
                    (f', "spec": {text(spec)}, "reason": {text(reason)}, "origin": {where}, '
                     f'"system_id": {text(system_id)}, "precondition": {{"absent": '
                     f'{{"CourseMemberId": {member}, "CourseLessonId": '))

        for change in self._source:
            fields = change.shared  # (kind, course, spec, reason, SystemId), shared by a spec's creates
            if change.extra is None and fields[0] == "create":
                if fields is not last_head or change.member_id != last_member or change.origin is not last_origin:
                    last_head, last_member, last_origin, last = fields, change.member_id, change.origin, ()
                    head, middle = parts(fields[1], last_member, None, fields[2], fields[3], fields[4], last_origin)
            elif change.kind != "create" or change.note or change.twin or change.coworker_id is not None:
                keep(encode(action_dict(change, labels)))
                if len(batch) >= size:
                    yield batch
                    batch = []
                    keep = batch.append
                continue
            else:
                key = (change.course_id, change.member_id, change.name, change.spec, change.reason, change.system_id)
                if key != last or change.origin is not last_origin:
                    last, last_origin, last_head = key, change.origin, None
                    head, middle = parts(*key, last_origin)
            lesson = lessons.get(change.lesson_id)
            if lesson is None:
                lesson = lessons[change.lesson_id] = encode(
                    {"id": change.lesson_id, "title": labels.lessons.get(change.lesson_id, "")})
            keep(f"{head}{lesson}{middle}{change.lesson_id}}}}}}}")
            if len(batch) >= size:
                yield batch
                batch = []
                keep = batch.append
        if batch:
            yield batch

    def group_keys(self) -> Iterator[tuple[tuple[int, str], tuple[int | None, str]]]:
        """Each action's course and member as the text groups them, without making its dict."""
        courses, members = self._labels.courses, self._labels.members
        for change in self._source:
            yield ((change.course_id, courses.get(change.course_id, "")),
                   (change.member_id or None, members.get(change.member_id) or change.name or ""))


def plan_dict(plan: Plan, labels: Labels, *, target: str, spec_digest: str, limits: ClientLimits,
              lazy: bool = False) -> dict[str, Any]:
    """The plan's JSON form. Its `actions` are a list of dicts, or with `lazy` an `ActionEntries` that makes
    each as it is read (for a plan that is written out and read, never validated or changed in place)."""
    writes = len(plan.actions)
    shared: dict[tuple[Any, ...], Any] = {}
    estimate = estimate_writes(writes, limits)
    counts = plan.counts()
    return {
        "format_version": FORMAT_VERSION,
        "target": target,
        "spec_digest": spec_digest,
        "limits": {k: v for k, v in vars(limits).items()},
        "summary": {"create": counts["create"], "delete": counts["delete"], "enroll": counts["enroll"],
                    "unchanged": plan.unchanged, "existing_in_scope": plan.existing_in_scope, "writes": writes,
                    "estimate": estimate.describe(), "estimate_seconds": round(estimate.seconds, 1),
                    "estimate_days": estimate.days,
                    "estimate_documented": (estimate_writes(writes, DOCUMENTED_LIMITS).describe()
                                            if limits != DOCUMENTED_LIMITS and writes else None)},
        "actions": (ActionEntries(plan.actions, labels) if lazy
                    else [action_dict(a, labels, shared) for a in plan.actions]),
        "warnings": list(plan.warnings),
        "drift": list(plan.drift),
        "partial": list(plan.partial),
        "blocked": blocked_of(plan),
    }


def blocked_of(plan: Plan) -> dict[str, Any] | None:
    """The document's `blocked`: why `plan.apply_budgets` blocked the plan, and the --allow-deletes that lifts it
    (None when no flag does); None when nothing blocks it. `apply` reads it back (`still_blocked`)."""
    if not plan.blocked:
        return None
    return {"reasons": list(plan.blocked), "allow_deletes": plan.deletes_to_allow}


def apply_hint(doc: dict[str, Any], saved: Path, what: str = "plan") -> str:
    """What `plan --out` and `undo --out` say once the file is saved: how to apply it, with the --allow-deletes that
    a budget's block needs (apply refuses it without), or that nothing lifts a block of an incomplete read."""
    command = f"reconciler apply --plan {shlex.quote(str(saved))}"
    blocked = doc.get("blocked")
    if not blocked:
        return f"saved the {what} to {saved}; apply it with: {command}"
    if blocked.get("allow_deletes") is None:
        return f"saved the {what} to {saved}; it is blocked by an incomplete read, which no flag lifts: make it again"
    return (f"saved the {what} to {saved}; it is blocked: once its deletes are reviewed, apply it with: {command} "
            f"--allow-deletes {blocked['allow_deletes']}")


def target_line(doc: dict[str, Any]) -> str:
    """The first line of every plan and apply (PRODUCT.md), so nobody mistakes the local store for the real one."""
    return f"Target: {doc['target']}"


def summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    line = (f"Plan: {s['create']:,} to create, {s['delete']:,} to delete, {s['enroll']:,} to enrol, "
            f"{s['unchanged']:,} unchanged. {s['estimate'][0].upper()}{s['estimate'][1:]}.")
    if s.get("estimate_documented"):
        line += f" At the real service's documented limits: {s['estimate_documented']}."
    return line


def quiet_lines(doc: dict[str, Any]) -> list[str]:
    """A plan with -q: what a script needs, in `write_text`'s order and words: the target, the warnings, the
    summary line (a line of its own, as scripts grep it) and why it is blocked."""
    warnings = ["Warnings:", *(f"  {shown(line)}" for line in doc["warnings"])] if doc["warnings"] else []
    return [shown(target_line(doc)), *warnings, summary_line(doc), *map(shown, blocked_lines(doc))]


def blocked_lines(doc: dict[str, Any]) -> list[str]:
    blocked = doc.get("blocked")
    if not blocked:
        return []
    lines = [f"Blocked: {reason}." for reason in blocked["reasons"]]
    if blocked.get("allow_deletes") is not None and not doc["partial"]:
        lines.append(f"Review the deletes, then re-run with --allow-deletes {blocked['allow_deletes']} to proceed.")
    return lines


# --- JSON ----------------------------------------------------------------------------------------

class Deferred:
    """A document value known only once the parts before it are written (a saved plan's actions digest,
    taken over the action lines as they stream out)."""

    def __init__(self, value: Callable[[], Any]) -> None:
        self.value = value


def json_pieces(doc: dict[str, Any], *, on_action: Callable[[list[str]], None] | None = None
                ) -> Iterator[str]:
    """The document with one top-level key, and one action, per line, as pieces to write in turn (a plan
    of a million actions is never one string).

    json's `indent` switches to its pure-Python encoder (six times slower on a big plan); encoding each
    piece with the C encoder keeps a 100,000-action plan fast and still readable and diffable.
    `on_action` sees the actions' lines as they go, a batch at a time (a saved plan takes its digest so).
    """
    return (piece for _, piece in keyed_json_pieces(doc, on_action=on_action))


def keyed_json_pieces(doc: dict[str, Any], *, on_action: Callable[[list[str]], None] | None = None
                      ) -> Iterator[tuple[str | None, str]]:
    """`json_pieces`, each with the top-level key it belongs to (None: the braces around them all). A
    document's pieces up to a key do not depend on the keys after it."""
    def encode(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    yield None, "{\n"
    for number, (key, value) in enumerate(doc.items()):
        if isinstance(value, Deferred):
            value = value.value()
        comma = ",\n" if number else ""
        if key == "matrix" and isinstance(value, list) and value:  # one member per line, not one per course
            yield key, f"{comma}  {encode(key)}: [\n    "
            for index, course in enumerate(value):
                yield key, (",\n    " if index else "") + _matrix_course_json(course)
            yield key, "\n  ]"
        elif isinstance(value, ActionEntries | list) and value:
            batches = (value.encoded_batches(2048) if isinstance(value, ActionEntries)
                       else _in_batches(map(encode, value), 2048))
            watch = on_action if key == "actions" else None
            yield key, f"{comma}  {encode(key)}: [\n    "
            separator = ""
            for batch in batches:
                if watch is not None:
                    watch(batch)
                yield key, separator + ",\n    ".join(batch)
                separator = ",\n    "
            yield key, "\n  ]"
        else:
            yield key, f"{comma}  {encode(key)}: {encode(list(value) if isinstance(value, ActionEntries) else value)}"
    yield None, "\n}\n"


def _in_batches(items: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(islice(items, size)):
        yield batch


def format_json(doc: dict[str, Any]) -> str:
    """The document as `json_pieces` writes it, in one string (for documents of a reasonable size)."""
    return "".join(json_pieces(doc))


class ChunkedWriter:
    """Many small pieces written in chunks of about `chunk` characters (one write per piece is slow)."""

    def __init__(self, out: TextIO, chunk: int = 1 << 16) -> None:
        self.out = out
        self.chunk = chunk
        self._buffer: list[str] = []
        self._size = 0

    def write(self, piece: str) -> None:
        self._buffer.append(piece)
        self._size += len(piece)
        if self._size >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self.out.write("".join(self._buffer))
            self._buffer.clear()
            self._size = 0


def write_pieces(pieces: Iterable[str], out: TextIO) -> None:
    writer = ChunkedWriter(out)
    for piece in pieces:
        writer.write(piece)
    writer.flush()


def _matrix_course_json(course: Any) -> str:
    members = course.get("members") if isinstance(course, dict) else None
    if not members:
        return json.dumps(course, ensure_ascii=False)
    head = json.dumps({k: v for k, v in course.items() if k != "members"}, ensure_ascii=False)[:-1]
    rows = ",\n      ".join(_each_dumped(members))
    return f'{head}{", " if len(head) > 1 else ""}"members": [\n      {rows}\n    ]}}'


def _each_dumped(values: Iterable[Any]) -> list[str]:
    """`json.dumps(value, ensure_ascii=False)` of each value, by one encoder: json.dumps makes its C encoder
    anew for every value, half the time of a small dict (a matrix row: 50,000 rows a course are common)."""
    if c_make_encoder is None:  # pragma: no cover - CPython has it
        return [json.dumps(value, ensure_ascii=False) for value in values]
    defaults = json.JSONEncoder(ensure_ascii=False)  # json.dumps' own settings, and its `default`
    encoder = c_make_encoder({}, defaults.default, encode_basestring, None, defaults.key_separator,
                             defaults.item_separator, defaults.sort_keys, defaults.skipkeys, defaults.allow_nan)
    return ["".join(encoder(value, 0)) if type(value) is not str else encode_basestring(value) for value in values]


def write_json(doc: dict[str, Any], out: TextIO) -> None:
    write_pieces(json_pieces(doc), out)


# --- text ----------------------------------------------------------------------------------------

_COLORS = {"create": "\033[32m", "delete": "\033[31m", "enroll": "\033[36m", "warn": "\033[33m", "bold": "\033[1m"}
_RESET = "\033[0m"
_SIGN = {"create": "+", "delete": "-", "enroll": "~"}


def _action_text(entry: dict[str, Any]) -> str:
    lesson = entry["lesson"]["title"] or f"lesson {entry['lesson']['id']}"
    if entry["action"] == "enroll":
        return f"~ enrol    in {entry['course']['title']}  ({entry['spec']})"
    text = f"{_SIGN[entry['action']]} {entry['action']:<7}  {lesson}"
    if entry["action"] == "delete":
        record = entry["record"]
        text += f"  #{record['Id']}, completed {record['CreatedOn'][:10] or 'on an unknown date'}  [{entry['reason']}"
        text += f": {entry['note']}]" if entry.get("note") else "]"
    if entry.get("origin"):
        text += f"  ({entry['origin']})"
    return text


def _group_keys(entry: dict[str, Any]) -> tuple[tuple[int, str], tuple[int | None, str]]:
    return (entry["course"]["id"], entry["course"]["title"]), (entry["member"]["id"], entry["member"]["name"])


def _grouped(actions: Sequence[dict[str, Any]]
             ) -> Iterator[tuple[tuple[int, str], Iterator[tuple[tuple[int | None, str], list[dict[str, Any]]]]]]:
    """The actions by course, then by member, each in the order first seen. A plan's actions come sorted by
    course and member, so the groups are runs and stream one member at a time; only when they are not (a
    migration's source deletes, a hand-made document) are they gathered first."""
    keys = actions.group_keys() if isinstance(actions, ActionEntries) else map(_group_keys, actions)
    seen_courses: set[tuple[int, str]] = set()
    seen: set[tuple[Any, Any]] = set()
    last: tuple[Any, Any] | None = None
    runs = True
    for key in keys:
        if key != last:
            if key in seen or (last is not None and key[0] != last[0] and key[0] in seen_courses):
                runs = False
                break
            seen.add(key)
            seen_courses.add(key[0])
            last = key
    seen.clear()
    if not runs:
        gathered: dict[tuple[int, str], dict[tuple[int | None, str], list[dict[str, Any]]]] = \
            defaultdict(lambda: defaultdict(list))
        for entry in actions:
            course, member = _group_keys(entry)
            gathered[course][member].append(entry)
        for course, by_member in gathered.items():
            yield course, iter(by_member.items())
        return
    entries = iter(actions)
    head = next(entries, None)

    def members_of(course: tuple[int, str]) -> Iterator[tuple[tuple[int | None, str], list[dict[str, Any]]]]:
        nonlocal head
        while head is not None and _group_keys(head)[0] == course:
            key, group, head = _group_keys(head), [head], None
            for entry in entries:
                if _group_keys(entry) != key:
                    head = entry
                    break
                group.append(entry)
            yield key[1], group

    while head is not None:
        course = _group_keys(head)[0]
        members = members_of(course)
        yield course, members
        for _ in members:  # whatever the reader left of this course
            pass


BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))  # marks, embeddings, overrides
_UNSHOWN = {**{code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
               for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *BIDI)},
            ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def shown(text: str) -> str:
    """Live text (a name, a title, a SystemId) as a terminal may show it: every control character, line break
    and direction override as its escape (`\\x1b`, `\\n`, `\\u202e`), so that no name can move the cursor,
    hide the rest of a line, forge a line of the plan or turn a delete into what reads as a create."""
    return text.translate(_UNSHOWN)


def write_text(doc: dict[str, Any], out: TextIO, *, color: bool = False) -> None:
    """The plan as text, each live text in it `shown`."""
    def paint(kind: str, text: str) -> str:
        return f"{_COLORS[kind]}{text}{_RESET}" if color else text

    out.write(shown(target_line(doc)) + "\n")
    lines: list[str] = []
    for (course_id, course_title), members in _grouped(doc["actions"]):
        lines.append(f"\n{paint('bold', shown(course_title) or f'course {course_id}')} (course {course_id})\n")
        for (member_id, name), entries in members:
            where = f"member {member_id}" if member_id is not None else "to be enrolled"
            lines.append(f"  {shown(name) or 'member'} ({where})\n")
            for entry in entries:
                lines.append("    " + paint(entry["action"], shown(_action_text(entry))) + "\n")
            if len(lines) > 4096:
                out.write("".join(lines))
                lines.clear()
    out.write("".join(lines))
    if not doc["actions"]:
        out.write("\nNo changes.\n")
    for title, key in (("Warnings", "warnings"), ("Drift the mode may not repair", "drift"),
                       ("Partial reads", "partial")):
        if doc[key]:
            out.write(f"\n{paint('warn', title)}:\n")
            for line in doc[key]:
                out.write(f"  {shown(line)}\n")
    out.write("\n" + summary_line(doc) + "\n")
    for line in blocked_lines(doc):
        out.write(paint("delete", shown(line)) + "\n")


# --- Markdown ------------------------------------------------------------------------------------

def markdown(doc: dict[str, Any], *, full_plan_hint: str = "the JSON plan", limit: int = MARKDOWN_LIMIT) -> str:
    """Markdown for a pull-request comment, always under `limit` characters: see markdown.py. Its first line
    names the target, as every plan's does ("### reconciler plan for `TARGET`")."""
    from reconciler.markdown import pull_request_markdown  # it builds on this module's summary lines

    return pull_request_markdown(doc, full_plan_hint=full_plan_hint, limit=limit)
