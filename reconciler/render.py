"""Renderers: a plan becomes one dict (the versioned JSON form), and that dict becomes text or Markdown.

Output goes to the stream given; nothing here reads the network or the clock.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, TextIO

from reconciler.actions import Action as TypedAction
from reconciler.actions import Create, Delete, Enroll, Record, Ref, action_to_dict
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


def action_dict(action: Change, labels: Labels) -> dict[str, Any]:
    return action_to_dict(typed_action(action, labels))


def plan_dict(plan: Plan, labels: Labels, *, target: str, spec_digest: str, limits: ClientLimits,
              actions: list[TypedAction] | None = None) -> dict[str, Any]:
    writes = len(plan.actions)
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
        "actions": [action_to_dict(a) for a in actions] if actions is not None else
                   [action_dict(a, labels) for a in plan.actions],
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

def format_json(doc: dict[str, Any]) -> str:
    """The document with one top-level key, and one action, per line.

    json's `indent` switches to its pure-Python encoder (six times slower on a big plan); encoding each
    piece with the C encoder keeps a 100,000-action plan fast and still readable and diffable.
    """
    def encode(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in doc.items():
        if isinstance(value, list) and value:
            items = ",\n    ".join(encode(item) for item in value)
            parts.append(f"  {encode(key)}: [\n    {items}\n  ]")
        else:
            parts.append(f"  {encode(key)}: {encode(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


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
            where = f"member {member_id}" if member_id is not None else "enrolled by this apply"
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

def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown(doc: dict[str, Any], *, rows: int = 200, full_plan_hint: str = "the JSON plan") -> str:
    """Markdown for a pull-request comment: always under MARKDOWN_LIMIT characters, whatever the plan."""
    while True:
        text = _markdown(doc, rows, full_plan_hint)
        if len(text) < MARKDOWN_LIMIT or rows == 0:
            return text[: MARKDOWN_LIMIT - 1]
        rows //= 2


def _markdown(doc: dict[str, Any], rows: int, hint: str) -> str:
    actions = doc["actions"]
    lines = ["### reconciler plan", "", f"Target: `{_cell(doc['target'])}`", "", f"**{summary_line(doc)}**", ""]
    for line in blocked_lines(doc):
        lines.append(f"> :no_entry: {line}")
    if doc.get("blocked"):
        lines.append("")
    if not actions:
        lines += ["No changes.", ""]
    else:
        counts: Counter[tuple[str, str, str]] = Counter()
        for entry in actions:
            counts[(entry["course"]["title"], entry["lesson"]["title"], entry["action"])] += 1
        keys = sorted({(c, x) for c, x, _ in counts})
        lines += ["| Course | Lesson | Create | Delete | Enrol |", "|---|---|---:|---:|---:|"]
        shown_keys = keys[:100]
        for course, lesson in shown_keys:
            lines.append(f"| {_cell(course)} | {_cell(lesson)} | {counts[(course, lesson, 'create')]:,} | "
                         f"{counts[(course, lesson, 'delete')]:,} | {counts[(course, lesson, 'enroll')]:,} |")
        if len(keys) > len(shown_keys):
            lines.append(f"| … {len(keys) - len(shown_keys):,} more lessons | | | | |")
        lines.append("")
        shown = actions[:rows]
        lines += [f"<details><summary>First {len(shown):,} of {len(actions):,} actions</summary>", "",
                  "| | Course | Member | Lesson | Why | Where |", "|---|---|---|---|---|---|"]
        for entry in shown:
            why = entry["reason"] + (f": {entry['note']}" if entry.get("note") else "")
            lines.append(f"| {_SIGN[entry['action']]} {entry['action']} | {_cell(entry['course']['title'])} | "
                         f"{_cell(entry['member']['name'])} | {_cell(entry['lesson']['title'])} | {_cell(why)} | "
                         f"{_cell(entry.get('origin') or '')} |")
        lines += ["", "</details>", ""]
        if len(actions) > len(shown):
            lines += [f"… and {len(actions) - len(shown):,} more actions, not shown; the full plan is in {hint}.", ""]
    for title, key in (("Warnings", "warnings"), ("Drift the mode may not repair", "drift"),
                       ("Partial reads", "partial")):
        items = doc[key]
        if items:
            lines.append(f"**{title}** ({len(items):,})")
            lines += [f"- {_cell(item)}" for item in items[:50]]
            if len(items) > 50:
                lines.append(f"- … {len(items) - 50:,} more")
            lines.append("")
    return "\n".join(lines) + "\n"
