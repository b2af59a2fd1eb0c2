"""Spec files → the typed spec model: discovery, safe parsing, schema checks, offline meaning checks.

Every problem in every file is collected and raised together as one SpecError, sorted by place.
Checks that need the live catalog (unknown titles, enrolment) live in resolve.py.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from reconciler.config import CONFIG_NAME
from reconciler.errors import Problem, SpecError, UsageError
from reconciler.gc_pause import gc_paused
from reconciler.model import (
    CompletionsSpec,
    LessonSet,
    MemberRule,
    MemberSelector,
    MigrationSpec,
    Origin,
    Ref,
    Revocation,
    SpecSet,
    TitleRefs,
)
from reconciler.schema_check import dotted, near_miss, schema_problems
from reconciler.yamlfile import Cursor, Document, PathKey, broken_link, load_file

API_VERSION = "reconciler/v1"
KINDS = {"Completions": "completions", "Migration": "migration"}
SELECTORS = ("email", "coworker_id", "course_member_id", "team")
SPEC_KEYS = {"metadata", "course", "members", "revoke", "mode", "from", "to", "lessons", "enroll"}
OUR_HEADER_VALUES = {API_VERSION.casefold(), *(kind.casefold() for kind in KINDS)}  # a header's, whatever its case
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def discover(paths: Sequence[Path], exclude: Iterable[Path] = ()) -> list[Path]:
    """Every *.yaml/*.yml below `paths` except reconciler.yaml, the excluded files and hidden folders."""
    skip = {os.path.realpath(p) for p in exclude}
    found: dict[Path, None] = {}
    for given in paths or [Path(".")]:
        if given.is_file():
            candidates = [given]
        elif given.is_dir():  # a link that leads nowhere is kept, for the loader to say so (a spec must not vanish)
            named = sorted(p for p in _below(given) if p.suffix in (".yaml", ".yml"))
            odd = [Problem(str(p), 1, 1, "not a file (a pipe, socket or device named as a spec): it cannot be read "
                                         "as one") for p in named if p.exists() and not p.is_file() and not p.is_dir()]
            if odd:
                raise SpecError(odd)
            candidates = [p for p in named if p.is_file() or (p.is_symlink() and not p.exists())]
        elif given.exists():  # /dev/null, a pipe, a socket: nothing a spec can be read from as a file
            raise SpecError([Problem(str(given), 1, 1, "not a file or folder (a device, pipe or socket): name YAML "
                                                       "spec files or folders of them")])
        else:
            raise SpecError([Problem(str(given), 1, 1, broken_link(given) or "no such file or folder")])
        for path in candidates:
            if path.name == CONFIG_NAME or os.path.realpath(path) in skip:
                continue
            found.setdefault(path, None)
    return list(found)


def _below(folder: Path) -> Iterator[Path]:
    """Every entry below `folder` but in hidden folders (links to folders not followed, as `rglob` does); a SpecError
    naming each folder that cannot be read, whose specs would otherwise drop out of the set without a word."""
    unreadable: list[Problem] = []

    def refused(error: OSError) -> None:
        unreadable.append(Problem(str(error.filename or folder), 1, 1,
                                  f"cannot read folder: {error.strerror or error}; its specs would be left out"))

    for top, folders, files in os.walk(folder, onerror=refused):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        base = Path(top)
        yield from (base / name for name in files if not name.startswith("."))
    if unreadable:
        raise SpecError(unreadable)


def load_specs(paths: Sequence[Path], exclude: Iterable[Path] = (), *, require_any: bool = True,
               keep_going: bool = False) -> SpecSet:
    """Read, check and model every spec below `paths`; raises SpecError listing every problem. With `keep_going`
    (validate, to say every problem at once), the specs that have none are returned with the problems of the rest
    (`SpecSet.problems`), for their names to be resolved too.

    A set with no spec at all (no Completions or Migration document) is most often a wrong PATH, and
    planning it would show "no changes" for nothing: it is a UsageError unless `require_any` is False.
    """
    files = discover(paths, exclude)
    problems: list[Problem] = []
    completions: list[CompletionsSpec] = []
    migrations: list[MigrationSpec] = []
    contents: list[str] = []
    spec_files: list[Path] = []
    with gc_paused():
        for path in files:
            specs, found, holds_spec = _read_file(path)
            problems.extend(found)
            completions.extend(spec for spec in specs if isinstance(spec, CompletionsSpec))
            migrations.extend(spec for spec in specs if isinstance(spec, MigrationSpec))
            if holds_spec:
                spec_files.append(path)
                contents.append(hashlib.sha256(path.read_bytes()).hexdigest())
    problems.extend(_meaning(completions, migrations))
    if problems and not (keep_going and (completions or migrations)):
        raise SpecError(problems)
    if require_any and not completions and not migrations:
        searched = ", ".join(repr(str(p)) for p in paths or [Path(".")])
        raise UsageError(f"no spec found under {searched}: a spec is a YAML document with "
                         f"apiVersion: {API_VERSION} and kind: Completions or Migration")
    # The digest names the spec files' content (exactly the files holding a spec: not a seed or other
    # YAML beside them), wherever they are checked out and whatever the order.
    digest = hashlib.sha256("\n".join(sorted(contents)).encode()).hexdigest()
    return SpecSet(tuple(completions), tuple(migrations), tuple(str(f) for f in spec_files), digest, tuple(problems))


def _read_file(path: Path) -> tuple[list[CompletionsSpec | MigrationSpec], list[Problem], bool]:
    """The specs in one file, their problems, and whether the file read as YAML and holds a spec (its YAML
    values are let go on return, before the collector looks at what is left)."""
    documents, load_problems = load_file(path, str(path))
    if not load_problems and all(document.data is None for document in documents):
        # Not a spec, and skipped as other YAML is; but a spec file emptied by mistake must not vanish unsaid.
        logging.getLogger(__name__).warning("warning: %s is empty (no YAML value in it): skipped, not a spec", path)
    problems = list(load_problems)
    holds_spec = bool(load_problems)
    specs: list[CompletionsSpec | MigrationSpec] = []
    for document in documents:
        spec, found = _model(document)
        problems.extend(found)
        holds_spec = holds_spec or spec is not None or bool(found)
        if spec is not None:
            specs.append(spec)
    return specs, problems, holds_spec and not load_problems


def _model(doc: Document) -> tuple[CompletionsSpec | MigrationSpec | None, list[Problem]]:
    data = doc.data
    if data is None:
        return None, []
    if not isinstance(data, dict):
        return None, [doc.problem((), "a spec must be a mapping with apiVersion, kind and metadata")]
    api_version, kind = data.get("apiVersion"), data.get("kind")
    # A header key spelled in another case (`Kind:`, `apiversion:`) is said once, at its place, as that key: in a
    # file that is a spec (its keys, or such a key's value ours), not in other YAML sharing the folder.
    variants = {wanted: [found for found in data if isinstance(found, str) and found != wanted
                         and found.casefold() == wanted.casefold()] for wanted in ("apiVersion", "kind")}
    ours = SPEC_KEYS & set(data) or any(str(data[found]).casefold() in OUR_HEADER_VALUES
                                         for found in (*variants["apiVersion"], *variants["kind"]))
    respelled = {wanted: found for wanted, found in variants.items() if wanted not in data and found and ours}
    if api_version is None and kind is None and not respelled:
        # Other YAML may share the folder (CI workflows, say): skip it, unless it looks like a spec that
        # lost its header, which must not vanish without a word.
        if SPEC_KEYS & set(data):
            return None, [doc.problem((), f"missing apiVersion and kind (expected apiVersion: {API_VERSION} and "
                                          "kind: Completions or Migration)")]
        return None, []
    problems: list[Problem] = []
    for wanted, spelled in respelled.items():
        problems.extend(doc.problem((found,), f"unknown key {found!r}; did you mean {wanted!r}? (keys are "
                                              "case-sensitive)", key=True) for found in spelled)
    if api_version != API_VERSION and "apiVersion" not in respelled:
        where: PathKey = ("apiVersion",) if "apiVersion" in data else ()
        problems.append(doc.problem(where, f"apiVersion must be {API_VERSION!r}, not {api_version!r}"
                                    if api_version is not None else f"missing apiVersion: {API_VERSION}"))
    if not isinstance(kind, str) or kind not in KINDS:
        where = ("kind",) if "kind" in data else ()
        if "kind" not in respelled:
            problems.append(doc.problem(where, f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}"
                                        f"{near_miss(str(kind), KINDS)}" if kind is not None else "missing kind"))
        return None, problems
    misplaced = _through_in_lists(doc) if kind == "Completions" else {}
    problems.extend(misplaced.values())
    # apiVersion was checked above, with a better message than the schema's const.
    said = {f"missing required key {wanted!r}" for wanted in respelled} | {
        f"unknown key {found!r}" for spelled in respelled.values() for found in spelled}
    problems.extend(p for p in schema_problems(_for_schema(doc, kind), KINDS[kind], explained=misplaced)
                    if not p.message.startswith("apiVersion must be")
                    and not any(p.message.startswith(text) for text in said))
    if problems:
        return None, problems
    if kind == "Completions":
        return _completions(doc)
    lessons = data.get("lessons")
    keys = [key for key in lessons if type(key) is not str] if isinstance(lessons, dict) else []
    if keys:  # `1.10: A` is the number 1.1 to YAML, `Yes:` is True: another lesson, or none, silently
        return None, [doc.problem(("lessons", key), f"lessons: YAML reads this key as the "
                                  f"{_YAML_TYPES.get(type(key), type(key).__name__)} {_as_yaml(key)}, not as a lesson "
                                  "title: put the title in quotes, as written", key=True) for key in keys]
    return _migration(doc), []


_YAML_TYPES = {int: "number", float: "number", bool: "boolean", type(None): "value"}


def _as_yaml(key: Any) -> str:
    return "null" if key is None else str(key).lower() if type(key) is bool else str(key)


def _for_schema(doc: Document, kind: str) -> Document:
    """The document as the schema needs to see it. jsonschema costs tens of microseconds a node, so a
    member list of 200,000 entries would take most of a plan's time. When every entry of a list has one of
    the plain shapes below, which the schema certainly accepts, the schema sees only the first; otherwise
    it sees them all, and explains their problems exactly as before. (A property test checks the shapes
    against the schema.)"""
    data = doc.data
    if kind != "Completions" or not isinstance(data, dict):
        return doc
    trimmed = dict(data)
    for name, plain in (("members", plain_member), ("revoke", plain_revocation)):
        entries = data.get(name)
        if isinstance(entries, list) and len(entries) > 1 and all(map(plain, entries)):
            trimmed[name] = entries[:1]
    return doc.with_data(trimmed)


def _plain_lesson(value: Any) -> bool:
    if type(value) is str:
        return bool(value)
    return type(value) is dict and len(value) == 1 and type(value.get("id")) is int and value["id"] >= 1


def _plain_selector(entry: dict[str, Any]) -> bool:
    named = ""
    for key in SELECTORS:
        if key in entry:
            if named:
                return False
            named = key
    if not named:
        return False
    value = entry[named]
    if named in ("email", "team"):
        return type(value) is str and bool(value)
    return type(value) is int and value >= 1


def plain_member(entry: Any) -> bool:
    """A members entry of a shape the schema certainly accepts (a subset of what it accepts)."""
    if type(entry) is not dict or len(entry) != 2 or "completed" not in entry or not _plain_selector(entry):
        return False
    completed = entry["completed"]
    if completed == "all":
        return True
    if type(completed) is list:
        return all(_plain_lesson(x) for x in completed)
    return type(completed) is dict and len(completed) == 1 and "through" in completed and \
        _plain_lesson(completed["through"])


def plain_revocation(entry: Any) -> bool:
    """A revoke entry of a shape the schema certainly accepts."""
    if type(entry) is not dict or "lessons" not in entry or not _plain_selector(entry):
        return False
    extra = set(entry) - {"lessons", "reason", *SELECTORS}
    if extra or ("reason" in entry and type(entry["reason"]) is not str) or len(entry) > 3:
        return False
    lessons = entry["lessons"]
    return lessons == "all" or (type(lessons) is list and bool(lessons) and all(_plain_lesson(x) for x in lessons))


def _through_in_lists(doc: Document) -> dict[PathKey, Problem]:
    """`{through: X}` written as an item of a lesson list, by the path of that item.

    The schema alone would say the item misses `id` and has an unknown key `through`, which sends the
    reader the wrong way: `through` is not a lesson but a whole lesson set, so it gets one problem of its own.
    """
    found: dict[PathKey, Problem] = {}
    data = doc.data
    for section, field in (("members", "completed"), ("revoke", "lessons")):
        entries = data.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            lessons = entry.get(field) if isinstance(entry, dict) else None
            if not isinstance(lessons, list):
                continue  # most often: `all` or `{through: X}`
            for j, item in enumerate(lessons):
                if not (isinstance(item, dict) and "through" in item):
                    continue
                at: PathKey = (section, i, field, j)
                last = item["through"] if isinstance(item["through"], str) else "X"
                if section == "members":
                    fix = (f"it stands alone, as completed: {{through: {last}}} (every lesson up to and including "
                           f"{last}), not inside a list")
                else:
                    fix = "revoke takes no range: list each lesson to remove, or write lessons: all"
                found[at] = doc.problem((*at, "through"), f"{dotted(at)}: 'through' is not a lesson; {fix}", key=True)
    return found


def _origin(at_value: Cursor, at: PathKey = (), *, key: bool = False) -> Origin:
    line, column = at_value.place(at, key=key)
    return Origin(at_value.path, line, column)


def _ref(at_value: Cursor, value: Any, at: PathKey) -> Ref:
    if isinstance(value, dict):
        return Ref(_origin(at_value, at), id=int(value["id"]))
    return Ref(_origin(at_value, at), title=str(value).strip())


def _selector(entry_at: Cursor, entry: dict[str, Any], problems: list[Problem]) -> MemberSelector:
    """The member a members or revoke entry names (found at `entry_at`); a malformed email into `problems`."""
    by = "email" if "email" in entry else next(name for name in SELECTORS if name in entry)  # emails: nearly all
    value = entry[by]
    if by == "email":
        value = value.strip()
        if not EMAIL.match(value):
            problems.append(entry_at.problem((by,), f"malformed email {value!r}"))
    elif by == "team":
        value = value.strip()
    return MemberSelector(by, value, _origin(entry_at, (by,)))  # type: ignore[arg-type]


class _LessonSets:
    """Lesson sets as written, the lesson titles of each distinct text read once: a list of 200,000 members
    most often names one `through:` for all of them, which differ only in their places."""

    def __init__(self) -> None:
        self.titles: dict[str, str] = {}

    def read(self, entry_at: Cursor, name: str, value: Any) -> LessonSet:
        """The lesson set `value`, written as `name` of the entry at `entry_at`."""
        origin = _origin(entry_at, (name,))
        if value == "all":
            return LessonSet("all", origin)
        if isinstance(value, dict):
            return LessonSet("through", origin, (self.ref(entry_at, value["through"], (name, "through")),))
        if all(type(item) is str for item in value):  # titles only: their places, each Ref made when asked for
            places = entry_at.child((name,)).item_places()
            if len(places) == len(value):
                return LessonSet("list", origin, TitleRefs(entry_at.path, tuple(map(self.title, value)), places))
        return LessonSet("list", origin, tuple(self.ref(entry_at, item, (name, i)) for i, item in enumerate(value)))

    def title(self, text: str) -> str:
        """A lesson's title as written, stripped: one string for each distinct text."""
        title = self.titles.get(text)
        if title is None:
            title = self.titles[text] = text.strip()
        return title

    def ref(self, entry_at: Cursor, lesson: Any, at: PathKey) -> Ref:
        if type(lesson) is str:
            return Ref(_origin(entry_at, at), title=self.title(lesson))
        return _ref(entry_at, lesson, at)


def _completions(doc: Document) -> tuple[CompletionsSpec, list[Problem]]:
    data: dict[str, Any] = doc.data
    root = doc.cursor()
    lesson_sets = _LessonSets()
    problems: list[Problem] = []
    rules = []
    for entry, entry_at in zip(data.get("members", []), root.child(("members",)).items(), strict=True):
        rules.append(MemberRule(_selector(entry_at, entry, problems),
                                lesson_sets.read(entry_at, "completed", entry["completed"])))
    revocations = []
    for entry, entry_at in zip(data.get("revoke", []), root.child(("revoke",)).items(), strict=True):
        revocations.append(Revocation(_selector(entry_at, entry, problems),
                                      lesson_sets.read(entry_at, "lessons", entry["lessons"]),
                                      entry.get("reason")))
    spec = CompletionsSpec(
        name=data["metadata"]["name"], origin=_origin(root, ("metadata", "name")),
        course=_ref(root, data["course"], ("course",)), mode=data.get("mode", "owned"),
        mode_origin=_origin(root, ("mode",) if "mode" in data else ("course",)),
        members=tuple(rules), revocations=tuple(revocations))
    return spec, problems


def _migration(doc: Document) -> MigrationSpec:
    data: dict[str, Any] = doc.data
    root = doc.cursor()
    lessons = data["lessons"]
    if isinstance(lessons, list):  # [{from: ..., to: ...}]: a source lesson named by Id too
        pairs = tuple((_ref(root, entry["from"], ("lessons", i, "from")), _ref(root, entry["to"], ("lessons", i, "to")))
                      for i, entry in enumerate(lessons))
    else:
        pairs = tuple((Ref(_origin(root, ("lessons", source), key=True), title=str(source).strip()),
                       _ref(root, target, ("lessons", source)))
                      for source, target in lessons.items())
    return MigrationSpec(
        name=data["metadata"]["name"], origin=_origin(root, ("metadata", "name")),
        source_course=_ref(root, data["from"]["course"], ("from", "course")),
        target_course=_ref(root, data["to"]["course"], ("to", "course")),
        lesson_map=pairs, enroll=data.get("enroll", False), source_policy=data.get("source", "keep"),
        strict=data.get("strict", False))


def _ref_key(ref: Ref) -> tuple[str, str | int | None]:
    return ("title", ref.title) if ref.title is not None else ("id", ref.id)


def _problem(origin: Origin, message: str) -> Problem:
    return Problem(origin.path, origin.line, origin.column, message)


def _meaning(completions: list[CompletionsSpec], migrations: list[MigrationSpec]) -> list[Problem]:
    """Checks across specs that need no live data."""
    problems: list[Problem] = []
    names: dict[str, Origin] = {}
    every: list[CompletionsSpec | MigrationSpec] = [*completions, *migrations]
    for spec in every:
        first = names.setdefault(spec.name, spec.origin)
        if first is not spec.origin:
            problems.append(_problem(spec.origin, f"metadata.name {spec.name!r} is already used at {first}"))

    modes: dict[tuple[str, str | int | None], CompletionsSpec] = {}
    for spec in completions:
        other = modes.setdefault(_ref_key(spec.course), spec)
        if other is not spec and other.mode != spec.mode:
            problems.append(_problem(spec.mode_origin, f"course {spec.course} is managed in mode {other.mode!r} by "
                                                       f"{other.name!r} ({other.origin}) and {spec.mode!r} here; "
                                                       "one course takes one mode"))
        problems.extend(_declared_and_revoked(spec))

    for migration in migrations:
        if _ref_key(migration.source_course) == _ref_key(migration.target_course):
            problems.append(_problem(migration.target_course.origin, "a migration's from and to name the same course"))
        targets: dict[tuple[str, str | int | None], Ref] = {}
        sources: dict[tuple[str, str | int | None], Ref] = {}
        for source, target in migration.lesson_map:
            seen = targets.setdefault(_ref_key(target), source)
            if seen is not source:
                problems.append(_problem(target.origin, f"target lesson {target} is named twice in the map "
                                                        f"(also for {seen} at {seen.origin})"))
            earlier = sources.setdefault(_ref_key(source), source)
            if earlier is not source:
                problems.append(_problem(source.origin, f"source lesson {source} is named twice in the map "
                                                        f"(also at {earlier.origin})"))
    return problems


def _declared_and_revoked(spec: CompletionsSpec) -> list[Problem]:
    """The same member, named the same way, both declared and revoked for a lesson (literal check)."""
    if not spec.revocations:
        return []  # most specs revoke nothing: no need to gather what 200,000 members declare
    declared: dict[tuple[str, str | int], list[LessonSet]] = {}
    for rule in spec.members:
        declared.setdefault(rule.member.key, []).append(rule.completed)
    problems = []
    for revocation in spec.revocations:
        for wanted in declared.get(revocation.member.key, []):
            clash = _overlap(wanted, revocation.lessons)
            if clash:
                problems.append(_problem(revocation.lessons.origin,
                                         f"{revocation.member} has {clash} both declared ({wanted.origin}) and "
                                         "revoked; remove one of them"))
    return problems


def _overlap(wanted: LessonSet, revoked: LessonSet) -> str:
    if wanted.kind == "all" or revoked.kind == "all":
        if wanted.kind == "all" and revoked.kind == "list":
            return f"lesson {revoked.lessons[0]}"
        if revoked.kind == "all" and wanted.kind != "through" and (wanted.kind == "all" or wanted.lessons):
            return "lessons"
        if wanted.kind == "all" and revoked.kind == "all":
            return "every lesson"
        return ""
    if wanted.kind == "list" and revoked.kind == "list":
        names = {(r.title, r.id) for r in wanted.lessons}
        for ref in revoked.lessons:
            if (ref.title, ref.id) in names:
                return f"lesson {ref}"
    return ""
