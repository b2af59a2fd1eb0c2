"""The pull-request comment: a plan (its JSON form) as Markdown, under 60,000 characters whatever its size.

What a reviewer must see comes first: the summary and why the plan is blocked (with what to change in CI
to lift it), then every delete (member, lesson, reason, spec line) as long as they fit, the deletes that
do not fit counted per member, then enrolments and creates as they fit, then a per-course, per-lesson
count (in DisplayOrder) of everything not listed. Every cut says it was cut. Pure: a dict in, text out.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

from reconciler.render import BIDI, MARKDOWN_LIMIT, summary_line

Entry = dict[str, Any]

# The variable the example workflows and action.yml read for `--allow-deletes` (docs/ci.md).
ALLOW_DELETES_VARIABLE = "RECONCILER_ALLOW_DELETES"
_COUNT_ROWS = 100  # lessons in the count table before it is cut
_NOTE = 80  # characters of a note (a revoke reason, what a duplicate duplicates) shown in a row
_LIST_ITEMS = 50  # warnings, drift or partial reads listed before "… N more"
_ITEM = 400  # characters of one such item


def pull_request_markdown(doc: dict[str, Any], *, full_plan_hint: str = "the JSON plan",
                          limit: int = MARKDOWN_LIMIT) -> str:
    actions: list[Entry] = doc["actions"]
    head = _head(doc)
    tail = _tail(doc, limit // 5)
    if not actions:
        return _fit(head + "No changes.\n\n" + tail, limit)
    room = limit - len(head) - len(tail) - 1
    parts = _Parts(actions, _lesson_order(doc), full_plan_hint)
    # Deletes first: as many in full as fit with the rest counted per member (so that every delete is seen),
    # beside the count of everything else; only if even that cannot fit, the rest is counted by lesson.
    # Then creates, in what is left.
    per_member = len(parts.body(0, 0, per_member=True)) <= room
    shown_deletes = _most(len(parts.deletes), lambda k: len(parts.body(k, 0, per_member=per_member)) <= room,
                          parts.most_rows(room))
    shown_others = _most(len(parts.others),
                         lambda j: len(parts.body(shown_deletes, j, per_member=per_member)) <= room,
                         parts.most_rows(room))
    return _fit(head + parts.body(shown_deletes, shown_others, per_member=per_member) + tail, limit)


def _most(count: int, fits: Callable[[int], bool], most: int) -> int:
    """The largest k in 0..min(count, most) for which fits(k) holds (taken as monotone), else 0."""
    low, high = 0, min(count, most)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _fit(text: str, limit: int) -> str:
    """The last guard: a body over the limit (only with absurdly long names) is cut, and says so."""
    if len(text) < limit:
        return text
    note = "\n\n… cut here to stay under GitHub's comment size; the full plan is in the JSON plan.\n"
    return text[: limit - len(note) - 1] + note


# --- the parts -----------------------------------------------------------------------------------

def _head(doc: dict[str, Any]) -> str:
    lines = [f"### reconciler plan for `{code(doc['target'])}`", "", f"**{plain(summary_line(doc))}**",
             ""]
    blocked = doc.get("blocked")
    if blocked:
        for reason in blocked["reasons"]:
            lines.append(f"> :no_entry: **Blocked**: {plain(reason)}.")
        allow = blocked.get("allow_deletes")
        if doc.get("partial") or allow is None:
            lines.append("> No flag lifts this block: run the plan again once every read of the current state "
                         "completes.")
        else:
            lines += [">",
                      f"> To proceed, review every delete below, then lift the budget for up to this many deletes: "
                      f"`--allow-deletes {allow}` on the command line; in CI (the example workflows), set the "
                      f"repository variable `{ALLOW_DELETES_VARIABLE}` to `{allow}` (Settings → Secrets and "
                      "variables → Actions → Variables) and re-run this check, and delete the variable once the "
                      "apply has run. Raising `safety` in `reconciler.yaml` lifts it for every later plan too."]
        lines.append("")
    return "\n".join(lines) + "\n"


def _tail(doc: dict[str, Any], room: int) -> str:
    """Warnings, drift and partial reads: each list bounded, the whole within `room`."""
    items = _LIST_ITEMS
    while True:
        lines: list[str] = []
        for title, key in (("Partial reads", "partial"), ("Warnings", "warnings"),
                           ("Drift the mode may not repair", "drift")):
            found = doc.get(key) or []
            if found:
                lines.append(f"**{title}** ({len(found):,})")
                lines += [f"- {_clip(plain(item), _ITEM)}" for item in found[:items]]
                if len(found) > items:
                    lines.append(f"- … {len(found) - items:,} more (cut to fit), in the JSON plan")
                lines.append("")
        text = "\n".join(lines) + ("\n" if lines else "")
        if len(text) <= room or items == 0:
            return text
        items //= 2


class _Parts:
    """The body's sections for any number of deletes and creates listed in full; every entry is turned into
    its row and its count keys once, so that trying many cuts stays cheap on a plan of 100,000 actions."""

    SHORTEST_ROW = 20  # no row is shorter: more rows than room // SHORTEST_ROW can never fit

    def __init__(self, actions: list[Entry], order: dict[tuple[int, int], tuple[int, ...]], hint: str) -> None:
        self.deletes = [a for a in actions if a["action"] == "delete"]
        self.others = [a for a in actions if a["action"] != "delete"]  # enrolments and creates, in plan order
        self.total = len(actions)
        self.order = order
        self.hint = hint
        self.delete_rows = [self._delete_row(e) for e in self.deletes[: MARKDOWN_LIMIT // self.SHORTEST_ROW]]
        self.other_rows = [self._other_row(e) for e in self.others[: MARKDOWN_LIMIT // self.SHORTEST_ROW]]
        self.delete_courses = [_course_key(e) for e in self.deletes]
        self.delete_members = [(_course_key(e), _member(e)) for e in self.deletes]
        self.delete_counts = [self._count_key(e) for e in self.deletes]
        self.other_counts = [self._count_key(e) for e in self.others]
        self.titles: dict[tuple[int, int], tuple[str, str]] = {}
        self.course_rank: dict[int, int] = {}
        for entry in actions:
            key = self._count_key(entry)[:2]
            self.course_rank.setdefault(key[0], len(self.course_rank))
            lesson = "(enrolments)" if entry["action"] == "enroll" else _lesson(entry)
            self.titles.setdefault(key, (_course(entry), lesson))

    @staticmethod
    def _count_key(entry: Entry) -> tuple[int, int, str]:
        lesson_id = 0 if entry["action"] == "enroll" else (entry["lesson"]["id"] or 0)
        return (entry["course"]["id"] or 0, lesson_id, entry["action"])

    @staticmethod
    def _delete_row(entry: Entry) -> str:
        return (f"| {plain(_member(entry))} | {plain(_lesson(entry))} | {plain(_why(entry))} | "
                f"{plain(entry.get('origin') or entry['spec'])} |")

    @staticmethod
    def _other_row(entry: Entry) -> str:
        sign = "~ enrol" if entry["action"] == "enroll" else "+ create"
        lesson = "" if entry["action"] == "enroll" else _lesson(entry)
        return (f"| {sign} | {plain(_course(entry))} | {plain(_member(entry))} | {plain(lesson)} | "
                f"{plain(_why(entry))} | {plain(entry.get('origin') or entry['spec'])} |")

    def most_rows(self, room: int) -> int:
        return min(len(self.delete_rows) + len(self.other_rows), max(1, room // self.SHORTEST_ROW))

    def body(self, listed_deletes: int, listed_others: int, *, per_member: bool) -> str:
        return (self._deletes_section(listed_deletes, per_member) + self._others_section(listed_others)
                + self._count_section(listed_deletes, listed_others))

    def _deletes_section(self, shown: int, per_member: bool) -> str:
        deletes = self.deletes
        if not deletes:
            return ""
        rest = len(deletes) - shown
        listed, after = "every one listed", []
        if rest:
            counts = Counter(self.delete_members[shown:])
            # Whose credit goes is what a reviewer needs; when even the per-member count cannot fit, the count
            # table below still has every delete, by lesson.
            if per_member:
                listed = f"{shown:,} listed, the other {rest:,} counted per member"
                after = [f"The other {rest:,} deletes, by member: one each, or ×N (all are listed in {self.hint}):",
                         "", self._per_member(counts)]
            else:
                listed = f"{shown:,} listed, the other {rest:,} counted by lesson below"
                after = [f"The other {rest:,} deletes, of {len(counts):,} members, are too many to name here (cut "
                         f"to fit): they are counted by lesson below and listed in {self.hint}.", ""]
        lines = [f"#### Deletes ({len(deletes):,}: {listed})", ""]
        by_course: dict[tuple[int, str], list[str]] = {}
        for key, row in zip(self.delete_courses[:shown], self.delete_rows[:shown], strict=True):
            by_course.setdefault(key, []).append(row)
        for (_, course), rows in by_course.items():
            lines += [f"**{plain(course)}**", "", "| Member | Lesson | Why | Spec |", "|---|---|---|---|", *rows, ""]
        return "\n".join([*lines, *after]) + "\n"

    @staticmethod
    def _per_member(counts: Counter[tuple[tuple[int, str], str]]) -> str:
        by_course: dict[tuple[int, str], list[str]] = {}
        totals: Counter[tuple[int, str]] = Counter()
        for (course, member), count in counts.items():
            by_course.setdefault(course, []).append(plain(member) + (f" ×{count:,}" if count > 1 else ""))
            totals[course] += count
        lines = [f"- **{plain(course[1])}** ({totals[course]:,}): {', '.join(named)}"
                 for course, named in by_course.items()]
        return "\n".join(lines) + "\n\n"

    def _others_section(self, shown: int) -> str:
        others = self.others
        if not others:
            return ""
        enrolments = sum(1 for key in self.other_counts if key[2] == "enroll")
        creates = len(others) - enrolments
        listed = ("every one listed" if shown == len(others) else f"the first {shown:,} listed" if shown else
                  "too many to list here: counted below")
        if enrolments:
            what = f"{enrolments:,} to enrol" + (f" and {creates:,} to create" if creates else "")
            lines = [f"#### Enrolments and creates ({what}: {listed})", ""]
        else:
            lines = [f"#### Creates ({creates:,}: {listed})", ""]
        if shown:
            lines += [f"<details><summary>{shown:,} of {len(others):,}</summary>", "",
                      "| | Course | Member | Lesson | Why | Spec |", "|---|---|---|---|---|---|",
                      *self.other_rows[:shown], "", "</details>", ""]
        return "\n".join(lines) + "\n"

    def _count_section(self, listed_deletes: int, listed_others: int) -> str:
        """Per course and lesson, in DisplayOrder: the actions not listed above."""
        counts = Counter(self.delete_counts[listed_deletes:])
        counts.update(self.other_counts[listed_others:])
        if not counts:
            return ""
        rest = sum(counts.values())
        keys = sorted({key[:2] for key in counts}, key=self._rank)
        lines = [f"#### Not listed above: {rest:,} of {self.total:,} actions, by course and lesson", "",
                 "| Course | Lesson | Create | Delete | Enrol |", "|---|---|---:|---:|---:|"]
        for key in keys[:_COUNT_ROWS]:
            course, lesson = self.titles[key]
            lines.append(f"| {plain(course)} | {plain(lesson)} | {counts[(*key, 'create')]:,} | "
                         f"{counts[(*key, 'delete')]:,} | {counts[(*key, 'enroll')]:,} |")
        if len(keys) > _COUNT_ROWS:
            hidden = keys[_COUNT_ROWS:]
            actions = sum(counts[(*k, kind)] for k in hidden for kind in ("create", "delete", "enroll"))
            lines.append(f"| … cut: {len(hidden):,} more lessons ({actions:,} actions) not shown | | | | |")
        return "\n".join(lines) + "\n\n"

    def _rank(self, key: tuple[int, int]) -> tuple[int, ...]:
        course_id, lesson_id = key
        within = (-1,) if lesson_id == 0 else self.order.get(key, (len(self.order), lesson_id))
        return (self.course_rank[course_id], *within)


def _lesson_order(doc: dict[str, Any]) -> dict[tuple[int, int], tuple[int, ...]]:
    """(course Id, lesson Id) → its place in DisplayOrder, from the plan's matrix when it has one; lessons
    it does not name sort after, by Id."""
    order: dict[tuple[int, int], tuple[int, ...]] = {}
    for course in doc.get("matrix") or []:
        course_id = course.get("course", {}).get("id")
        for position, lesson in enumerate(course.get("lessons") or []):
            order[(course_id, lesson.get("id"))] = (position,)
    return order


# --- words and cells -----------------------------------------------------------------------------

def _course_key(entry: Entry) -> tuple[int, str]:
    return (entry["course"]["id"] or 0, _course(entry))


def _course(entry: Entry) -> str:
    return str(entry["course"].get("title") or f"course {entry['course']['id']}")


def _member(entry: Entry) -> str:
    member = entry["member"]
    if member.get("name"):
        return str(member["name"])
    if member.get("id") is not None:
        return f"member {member['id']}"
    return f"coworker {entry.get('coworker_id')}"


def _lesson(entry: Entry) -> str:
    return str(entry["lesson"].get("title") or f"lesson {entry['lesson']['id']}")


def _why(entry: Entry) -> str:
    note = entry.get("note")
    return f"{entry['reason']}: {_clip(str(note), _NOTE)}" if note else str(entry["reason"])


def _clip(text: str, most: int) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


# A line break ends a row (and lets a name forge a heading); a direction override turns the rest of a line around.
_BREAKS = {**{point: " " for point in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)},
           **{point: f"\\u{point:04x}" for point in BIDI}}
_PLAIN = str.maketrans({**_BREAKS, "&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`",
                        "*": "\\*", "_": "\\_", "~": "\\~", "[": "\\[", "]": "\\]", "|": "\\|",
                        "@": "@\u200b", "#": "#\u200b"})
_CODE = str.maketrans({**_BREAKS, "`": "'", "|": "\\|"})
_LINK = re.compile(r"(?i)(://|www\.)")


def plain(text: object) -> str:
    """Live text (a name, a title, a reason) as GitHub shows it and nothing more: no HTML, no emphasis, no link,
    no `@mention` (which would notify someone) or `#123` (which would link an issue), no line break (which would
    end a table row, and let a name forge a heading), no `|` (which would end a cell)."""
    return _LINK.sub(lambda found: found[0][:-1] + "\u200b" + found[0][-1], str(text).translate(_PLAIN))


def code(text: object) -> str:
    """Text for a code span (a target, a path): no backtick to end it, no line break, no `|` to end a cell."""
    return str(text).translate(_CODE)
