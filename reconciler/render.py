"""Renderers: a plan becomes one dict (the versioned JSON form), and that dict becomes text or Markdown.

Output goes to the stream given; nothing here reads the network or the clock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, TextIO

from reconciler.actions import Action as TypedAction
from reconciler.actions import Create, Delete, Enroll, Record, Ref
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits
from reconciler.model import Catalog, Completion
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


def plan_dict(plan: Plan, labels: Labels, *, target: str, spec_digest: str, limits: ClientLimits) -> dict[str, Any]:
    writes = len(plan.actions)
    shared: dict[tuple[Any, ...], Any] = {}
    estimate = estimate_writes(writes, limits)
    return {
        "format_version": FORMAT_VERSION,
        "target": target,
        "spec_digest": spec_digest,
        "limits": {k: v for k, v in vars(limits).items()},
        "summary": {"create": plan.count("create"), "delete": plan.count("delete"), "enroll": plan.count("enroll"),
                    "unchanged": plan.unchanged, "existing_in_scope": plan.existing_in_scope, "writes": writes,
                    "estimate": estimate.describe(), "estimate_seconds": round(estimate.seconds, 1),
                    "estimate_days": estimate.days,
                    "estimate_documented": (estimate_writes(writes, DOCUMENTED_LIMITS).describe()
                                            if limits != DOCUMENTED_LIMITS and writes else None)},
        "actions": [action_dict(a, labels, shared) for a in plan.actions],
        "warnings": list(plan.warnings),
        "drift": list(plan.drift),
        "partial": list(plan.partial),
        "blocked": ({"reasons": list(plan.blocked), "allow_deletes": plan.deletes_to_allow}
                    if plan.blocked else None),
    }


def summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    line = (f"Plan: {s['create']:,} to create, {s['delete']:,} to delete, {s['enroll']:,} to enrol, "
            f"{s['unchanged']:,} unchanged. {s['estimate'][0].upper()}{s['estimate'][1:]}.")
    if s.get("estimate_documented"):
        line += f" At the real service's documented limits: {s['estimate_documented']}."
    return line


def blocked_lines(doc: dict[str, Any]) -> list[str]:
    blocked = doc.get("blocked")
    if not blocked:
        return []
    lines = [f"Blocked: {reason}." for reason in blocked["reasons"]]
    if blocked.get("allow_deletes") is not None and not doc["partial"]:
        lines.append(f"Review the deletes, then re-run with --allow-deletes {blocked['allow_deletes']} to proceed.")
    return lines


# --- JSON ----------------------------------------------------------------------------------------

def format_json(doc: dict[str, Any], *, encoded_actions: list[str] | None = None) -> str:
    """The document with one top-level key, and one action, per line.

    json's `indent` switches to its pure-Python encoder (six times slower on a big plan); encoding each
    piece with the C encoder keeps a 100,000-action plan fast and still readable and diffable.
    `encoded_actions` are the actions already encoded (`encode_actions`), when the caller has them.
    """
    def encode(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in doc.items():
        if key == "matrix" and isinstance(value, list) and value:  # one member per line, not one per course
            courses = ",\n    ".join(_matrix_course_json(course) for course in value)
            parts.append(f"  {encode(key)}: [\n    {courses}\n  ]")
        elif key == "actions" and value and encoded_actions is not None:
            items = ",\n    ".join(encoded_actions)
            parts.append(f"  {encode(key)}: [\n    {items}\n  ]")
        elif isinstance(value, list) and value:
            items = ",\n    ".join(encode(item) for item in value)
            parts.append(f"  {encode(key)}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _matrix_course_json(course: Any) -> str:
    members = course.get("members") if isinstance(course, dict) else None
    if not members:
        return json.dumps(course, ensure_ascii=False)
    head = json.dumps({k: v for k, v in course.items() if k != "members"}, ensure_ascii=False)[:-1]
    rows = ",\n      ".join(json.dumps(member, ensure_ascii=False) for member in members)
    return f'{head}{", " if len(head) > 1 else ""}"members": [\n      {rows}\n    ]}}'


def write_json(doc: dict[str, Any], out: TextIO) -> None:
    out.write(format_json(doc))


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


def write_text(doc: dict[str, Any], out: TextIO, *, color: bool = False) -> None:
    def paint(kind: str, text: str) -> str:
        return f"{_COLORS[kind]}{text}{_RESET}" if color else text

    out.write(f"Target: {doc['target']}\n")
    grouped: dict[tuple[int, str], dict[tuple[int, str], list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for entry in doc["actions"]:
        course = (entry["course"]["id"], entry["course"]["title"])
        member = (entry["member"]["id"], entry["member"]["name"])
        grouped[course][member].append(entry)
    for (course_id, course_title), members in grouped.items():
        out.write(f"\n{paint('bold', course_title or f'course {course_id}')} (course {course_id})\n")
        for (member_id, name), entries in members.items():
            where = f"member {member_id}" if member_id is not None else "to be enrolled"
            out.write(f"  {name or 'member'} ({where})\n")
            for entry in entries:
                out.write("    " + paint(entry["action"], _action_text(entry)) + "\n")
    if not doc["actions"]:
        out.write("\nNo changes.\n")
    for title, key in (("Warnings", "warnings"), ("Drift the mode may not repair", "drift"),
                       ("Partial reads", "partial")):
        if doc[key]:
            out.write(f"\n{paint('warn', title)}:\n")
            for line in doc[key]:
                out.write(f"  {line}\n")
    out.write("\n" + summary_line(doc) + "\n")
    for line in blocked_lines(doc):
        out.write(paint("delete", line) + "\n")


# --- Markdown ------------------------------------------------------------------------------------

def markdown(doc: dict[str, Any], *, full_plan_hint: str = "the JSON plan", limit: int = MARKDOWN_LIMIT) -> str:
    """Markdown for a pull-request comment, always under `limit` characters: see markdown.py."""
    from reconciler.markdown import pull_request_markdown  # it builds on this module's summary lines

    return pull_request_markdown(doc, full_plan_hint=full_plan_hint, limit=limit)
