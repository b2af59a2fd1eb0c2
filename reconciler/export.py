"""Export: the live state as spec files, one per course, that plan to no changes against that state."""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from reconciler.columns import CompletionColumns
from reconciler.errors import UsageError
from reconciler.model import Completion, instant, marker_for
from reconciler.spec import EMAIL

# Relative to each exported spec: `export` writes the schemas into this folder beside the specs, so that an
# editor (yaml-language-server) finds them wherever the folder is checked out.
SCHEMA_REF = "schemas/completions.schema.json"
_MODE_NOTE = {
    "owned": ["Mode owned: this spec deletes only the records carrying its marker (SystemId reconciler:{name}),",
              "once no longer declared: those it creates, and any a spec of this name created before this export.",
              "Records created otherwise (outside this tool, or by another spec) are never deleted by it."],
    "additive": ["Mode additive: this spec only ever creates completions; it deletes nothing (except `revoke`)."],
    "authoritative": ["Mode authoritative: for every member listed here, completions of this course that the spec",
                      "does not declare are deleted, whoever created them. Members not listed are never touched."],
}


# Text that is certainly a plain YAML string: a first letter that starts none of YAML 1.1's implicit types
# (bool yes/no/on/off/true/false, null; numbers, dates, .inf start with a digit, sign or dot), then only
# letters, digits and `_.@+-` and single inner spaces. An address or a name is decided here without a parse.
_PLAIN_STRING = re.compile(r"[A-EG-MP-SU-XZa-eg-mp-su-xz_][A-Za-z0-9_.@+\-]*(?: [A-Za-z0-9_.@+\-]+)*\Z")


def yaml_scalar(value: str) -> str:
    """A YAML scalar that reads back as exactly `value`, in a block mapping or a flow list alike: plain when safe,
    double-quoted otherwise. Plain only for printable text: a line break (U+2028 and U+2029 too) ends a plain
    scalar in a block, and a control or invisible character is better seen as its escape."""
    if _PLAIN_STRING.match(value):
        return value
    plain = value.isprintable() and value.strip() == value and value \
        and not re.search(r"[:#\[\]{},&*!|>'\"%`]|^[-?@]", value)
    if plain:
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    quoted = json.dumps(value, ensure_ascii=False)
    # JSON leaves DEL, the C1 controls, the line and paragraph separators, format characters, lone surrogates and
    # noncharacters as they are; YAML refuses, folds or hides them. Each is written as its escape.
    return quoted if quoted.isprintable() else "".join(c if c.isprintable() else _escape(c) for c in quoted)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


# What a YAML file may hold (YAML 1.1's printable set, as PyYAML and libyaml read it).
_YAML_REFUSES = re.compile("[^\t\n\r -~\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Every line break YAML knows (a comment ends at the first), and the others Python's splitlines knows.
_OTHER_LINE_BREAKS = re.compile("[\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
_NOT_IN_COMMENT = frozenset(("Cc", "Cf", "Cs", "Zl", "Zp"))
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def comment(text: str) -> str:
    """Live text (a name, a title) as the rest of a `#` comment line: every character that would end the line for
    YAML (a line break, U+2028, U+2029, U+0085), every control or format character (a direction override, an
    escape sequence) and whatever a YAML file may not hold (a lone surrogate, a noncharacter) as U+FFFD; so that
    no name can write a line of the spec (`Eve\\n    completed: all`), nor hide or break one."""
    if text.isprintable():
        return text
    return "".join("\ufffd" if unicodedata.category(c) in _NOT_IN_COMMENT or _YAML_REFUSES.match(c) else c
                   for c in text)


def _nameable(text: str) -> bool:
    """Whether a spec can name a record by this text (a title, an address): one that YAML can hold in a file either
    parser reads. A lone surrogate (a server's text cut mid-emoji) has no escape libyaml accepts."""
    return bool(text) and not _LONE_SURROGATE.search(text)


def slug(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")[:80] or "course"


def _pairs(completions: Sequence[Any]) -> Iterator[tuple[int, int]]:
    """(member, lesson) of each completion: from the columns' arrays, or from raw records."""
    if isinstance(completions, CompletionColumns):
        return zip(completions.member_ids, completions.lesson_ids, strict=True)
    return ((r["CourseMemberId"], r["CourseLessonId"]) for r in completions)


def export_specs(records: dict[str, Any], *, mode: str, target: str) -> dict[str, str]:
    """File name → spec text, for every course in `records` (raw API records, as `snapshot` reads them; the
    completions raw or as `CompletionColumns`)."""
    courses = records["courses"]
    title_count = Counter(str(c.get("Title") or "").strip() for c in courses)
    lessons_by_course: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for lesson in records["courselessons"]:
        lessons_by_course[lesson["CourseId"]].append(lesson)
    members_by_course: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for member in records["coursemembers"]:
        members_by_course[member["CourseId"]].append(member)
    coworkers = {c["Id"]: c for c in records["coworkers"]}
    email_count = Counter(str(c.get("Email") or "").strip().casefold() for c in coworkers.values())
    done: dict[int, set[int]] = defaultdict(set)
    for member_id, lesson_id in _pairs(records["coursecompletedlessons"]):
        done[member_id].add(lesson_id)

    files: dict[str, str] = {}
    names = spec_names(courses)
    for course in sorted(courses, key=lambda c: (str(c.get("Title") or ""), c["Id"])):
        title = str(course.get("Title") or "").strip()
        name = names[course["Id"]]
        lessons = sorted(lessons_by_course[course["Id"]], key=lambda x: (x.get("DisplayOrder") or 0, x["Id"]))
        lesson_titles = Counter(str(x.get("Title") or "").strip() for x in lessons)

        def lesson_ref(lesson: dict[str, Any], titles: Counter[str] = lesson_titles) -> str:
            text = str(lesson.get("Title") or "").strip()
            return yaml_scalar(text) if _nameable(text) and titles[text] == 1 else f"{{id: {lesson['Id']}}}"

        refs = {x["Id"]: lesson_ref(x) for x in lessons}  # once per lesson, not once per member

        lines = [f"# yaml-language-server: $schema={SCHEMA_REF}",
                 f"# Exported from {comment(target)}: {comment(title) or course['Id']!s}.",
                 *(f"# {line.replace('{name}', comment(name))}" for line in _MODE_NOTE[mode]),
                 "apiVersion: reconciler/v1", "kind: Completions", "metadata:", f"  name: {yaml_scalar(name)}",
                 "course: " + (yaml_scalar(title) if _nameable(title) and title_count[title] == 1
                               else f"{{id: {course['Id']}}}"),
                 f"mode: {mode}"]
        entries = []
        all_ids = {x["Id"] for x in lessons}
        enrolments = Counter(m.get("CoworkerId") for m in members_by_course[course["Id"]])
        for member in members_by_course[course["Id"]]:
            completed = done.get(member["Id"], set()) & all_ids
            if not completed:
                continue
            coworker = coworkers.get(member.get("CoworkerId"), {})
            email = str(coworker.get("Email") or "").strip()
            full_name = str(member.get("CoworkerFullName") or coworker.get("FullName") or "").strip()
            if enrolments[member.get("CoworkerId")] > 1:  # the same coworker twice in the course: each enrolment
                selector, sort_key = f"course_member_id: {member['Id']}", (2, str(member["Id"]))
            elif email_count[email.casefold()] == 1 and EMAIL.match(email) and email.isprintable():
                selector, sort_key = f"email: {yaml_scalar(email)}", (0, email.casefold())
            else:  # no address, a shared one, or one the spec language refuses (`plan` would not read it back)
                selector, sort_key = f"coworker_id: {member['CoworkerId']}", (1, str(member["CoworkerId"]))
            if completed == all_ids:
                what = "all"
            else:
                what = "[" + ", ".join(refs[x["Id"]] for x in lessons if x["Id"] in completed) + "]"
            shown = f"   # {comment(full_name)}" if full_name else ""
            entries.append((sort_key, [f"  - {selector}{shown}", f"    completed: {what}"]))
        if entries:
            lines.append("members:")
            for _, entry in sorted(entries):
                lines.extend(entry)
        else:
            lines.append("members: []")
        text = "\n".join(lines) + "\n"
        if text.count("\n") != len(lines) or _OTHER_LINE_BREAKS.search(text) or _YAML_REFUSES.search(text):
            # Every name and title went through `yaml_scalar` or `comment`: live text never makes a line of its own.
            raise RuntimeError(f"the spec exported for course {course['Id']} has a line that live text broke")
        files[f"{name}.yaml"] = text
    return files


def spec_names(courses: list[dict[str, Any]]) -> dict[int, str]:
    """Course Id → the exported spec's metadata.name (its title's slug; with the Id where titles or slugs clash,
    and a count after it where even that is taken: each name, and so each file, is one course's)."""
    title_count = Counter(str(c.get("Title") or "").strip() for c in courses)
    names: dict[int, str] = {}
    used: set[str] = set()
    for course in sorted(courses, key=lambda c: (str(c.get("Title") or ""), c["Id"])):
        title = str(course.get("Title") or "").strip()
        name = base = slug(title)
        if name in used or title_count[title] > 1:
            name = f"{base}-{course['Id']}"
        again = 1
        while name in used:  # `B-7` took `b-7` before the two courses titled `b`, Ids 7 and 8
            again += 1
            name = f"{base}-{course['Id']}-{again}"
        used.add(name)
        names[course["Id"]] = name
    return names


def duplicates_to_remove(records: dict[str, Any], *, mode: str) -> dict[str, int]:
    """Course title → how many duplicate completions a plan on the export removes: the extras (all but the
    oldest of one member's lesson) that the exported spec's mode may delete, i.e. in `owned` mode those
    carrying the exported spec's own marker, in `authoritative` mode all of them. Export says so, since
    for those the plan on the export is not "no changes"."""
    if mode == "additive":
        return {}
    names = spec_names(records["courses"])
    titles = {c["Id"]: str(c.get("Title") or "").strip() or str(c["Id"]) for c in records["courses"]}
    course_of = {x["Id"]: x["CourseId"] for x in records["courselessons"]}
    completions = records["coursecompletedlessons"]
    # The pairs with duplicates (a set of the pairs seen: no record held twice), then their records' places.
    seen: set[tuple[int, int]] = set()
    twice: set[tuple[int, int]] = set()
    for pair in _pairs(completions):
        if pair[1] in course_of:
            if pair in seen:
                twice.add(pair)
            else:
                seen.add(pair)
    del seen
    more: dict[tuple[int, int], list[int]] = {}
    if twice:
        for at, pair in enumerate(_pairs(completions)):
            if pair in twice:
                more.setdefault(pair, []).append(at)
    found: Counter[str] = Counter()
    for (_, lesson), places in more.items():
        course = course_of[lesson]
        marker = marker_for(names[course])
        same = [_created_id_system(completions[at]) for at in places]
        extras = sorted(same, key=lambda r: (instant(r[0]), r[1]))[1:]
        found[titles[course]] += sum(1 for r in extras if mode == "authoritative" or r[2] == marker)
    return {title: count for title, count in sorted(found.items()) if count}


def _created_id_system(record: Any) -> tuple[str, int, str | None]:
    """CreatedOn, Id and SystemId of a completion, raw or as a `Completion`."""
    if isinstance(record, Completion):
        return record.created_on or "", record.id, record.system_id
    return str(record.get("CreatedOn") or ""), record["Id"], record.get("SystemId")


def write_files(files: dict[str, str], folder: Path, *, force: bool) -> list[Path]:
    """Write the exported specs into `folder`. A folder that already holds other specs is refused: `plan`
    on it would see both (two specs of one course) and the exported state would not plan to no changes."""
    others = other_specs(folder, set(files))
    if others:
        more = f" and {len(others) - 1} more" if others[1:] else ""
        raise UsageError(f"{folder} already holds specs ({others[0]}{more}); export into a folder of its own "
                         "with --out DIR, so that `reconciler plan DIR` shows the live state")
    folder.mkdir(parents=True, exist_ok=True)
    clashes = [folder / name for name in files if (folder / name).exists()]
    if clashes and not force:
        raise UsageError(f"{clashes[0]} exists (and {len(clashes) - 1} more); pass --force to overwrite"
                         if len(clashes) > 1 else f"{clashes[0]} exists; pass --force to overwrite")
    written = []
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
        written.append(folder / name)
    return written


SPEC_MARK = "apiVersion: reconciler/"


def other_specs(folder: Path, ours: set[str]) -> list[Path]:
    """The spec files under `folder` that an export would not write (by their `apiVersion: reconciler/...`
    line near the top; hidden folders such as `.reconciler/` are not looked into)."""
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if path.suffix not in (".yaml", ".yml") or not path.is_file() or str(relative) in ours \
                or any(part.startswith(".") for part in relative.parts):
            continue
        with path.open("r", encoding="utf-8", errors="replace") as file:
            if SPEC_MARK in file.read(4096):
                found.append(path)
    return found
