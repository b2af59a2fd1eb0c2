"""The planning core: desired state × current state → a plan. Pure: no I/O, no clock, no httpx.

Per course, the desired pairs of every spec are united; each current record in reach of a spec's
mode is kept, or deleted for a reason (revoked, undeclared, orphaned, duplicate). The diff is a keyed
set difference, linear in the number of records. Completions held as columns (`columns.py`) are planned from
the columns, with no object a record, to the very plan their values would give.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise, repeat
from operator import add, attrgetter
from typing import Literal

from reconciler.columns import CompletionColumns
from reconciler.config import ClientLimits, Safety
from reconciler.errors import Problem
from reconciler.gc_pause import gc_paused
from reconciler.model import (
    MARKER_PREFIX,
    Catalog,
    Completion,
    MigrationSpec,
    Origin,
    instant,
    oldest_first,
    undated,
)
from reconciler.resolve import DesiredPairs, Pair, Resolution, ResolvedCompletions, ResolvedMigration

ChangeKind = Literal["enroll", "create", "delete"]
_RANK = {"enroll": 0, "create": 1, "delete": 2}


_HEADS: dict[tuple[ChangeKind, int, str, str, str | None], tuple[ChangeKind, int, str, str, str | None]] = {}
_MAX_HEADS = 65536  # past this many distinct heads (never, in practice), changes stop sharing them


class Change:
    """One write the planner decided (its internal, compact form; `render.typed_action` turns it into the
    write side's typed action). `record` is the full completion a delete removes; `origin` asked for it.

    A value (equal by its fields, hashable, never changed once made). A plan holds one per create, often
    millions: what the changes of one spec share (kind, course, spec, reason, SystemId) is one tuple they all
    point to, and the fields a create leaves empty (record, note, coworker_id, sort_key, name, twin) share
    one slot, so a create is 5 slots rather than 14 (72 bytes, not 144). Those two slots are read as they are by
    the loops over every change of a plan (`render.ActionEntries.encoded_batches`, `matrix.matrix_section`):
    `shared` (kind, course, spec, reason, SystemId) and `extra` (record, note, coworker_id, sort_key, name, twin),
    None for the usual create, which is then told from `shared` alone."""

    __slots__ = ("extra", "lesson_id", "member_id", "origin", "shared")

    member_id: int
    lesson_id: int
    origin: Origin | None
    shared: tuple[ChangeKind, int, str, str, str | None]
    extra: tuple[Completion | None, str | None, int | None, tuple[int, ...], str | None, str | None] | None

    def __init__(self, kind: ChangeKind, course_id: int, member_id: int, lesson_id: int, spec: str, reason: str,
                 origin: Origin | None = None, record: Completion | None = None, system_id: str | None = None,
                 note: str | None = None, coworker_id: int | None = None, sort_key: tuple[int, ...] = (),
                 name: str | None = None, twin: str | None = None) -> None:
        head = (kind, course_id, spec, reason, system_id)
        known = _HEADS.get(head)
        if known is None and len(_HEADS) < _MAX_HEADS:
            known = _HEADS[head] = head
        self.shared = known or head
        self.member_id, self.lesson_id, self.origin = member_id, lesson_id, origin
        if record is None and note is None and coworker_id is None and not sort_key and name is None and twin is None:
            self.extra = None
        else:
            self.extra = (record, note, coworker_id, sort_key, name, twin)

    def like(self, member_id: int, lesson_id: int, origin: Origin | None) -> Change:
        """This change for another pair and origin (a create of the same spec): what `Change(...)` with this
        one's other fields makes, without its checks (the planner makes one a desired pair missing)."""
        change = _new_change(Change)
        change.shared, change.extra = self.shared, self.extra
        change.member_id, change.lesson_id, change.origin = member_id, lesson_id, origin
        return change

    @property
    def kind(self) -> ChangeKind:
        return self.shared[0]

    @property
    def course_id(self) -> int:
        return self.shared[1]

    @property
    def spec(self) -> str:
        return self.shared[2]

    @property
    def reason(self) -> str:
        return self.shared[3]

    @property
    def system_id(self) -> str | None:
        return self.shared[4]

    @property
    def record(self) -> Completion | None:
        return self.extra[0] if self.extra else None

    @property
    def note(self) -> str | None:
        return self.extra[1] if self.extra else None

    @property
    def coworker_id(self) -> int | None:
        return self.extra[2] if self.extra else None

    @property
    def sort_key(self) -> tuple[int, ...]:
        return self.extra[3] if self.extra else ()

    @property
    def name(self) -> str | None:
        """The person, when the enrolment that names them does not exist yet."""
        return self.extra[4] if self.extra else None

    @property
    def twin(self) -> str | None:
        """Migrations: the target completion a create makes, or a source delete needs."""
        return self.extra[5] if self.extra else None

    @property
    def pair(self) -> Pair:
        return (self.member_id, self.lesson_id)

    def _fields(self) -> tuple[object, ...]:
        return (self.kind, self.course_id, self.member_id, self.lesson_id, self.spec, self.reason, self.origin,
                self.record, self.system_id, self.note, self.coworker_id, self.sort_key, self.name, self.twin)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Change:
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        names = ("kind", "course_id", "member_id", "lesson_id", "spec", "reason", "origin", "record", "system_id",
                 "note", "coworker_id", "sort_key", "name", "twin")
        return "Change(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, self._fields(), strict=True)) + ")"


_new_change = object.__new__


@dataclass
class Plan:
    actions: list[Change] = field(default_factory=list)
    unchanged: int = 0
    existing_in_scope: int = 0
    warnings: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    deletes_to_allow: int | None = None
    partial: list[str] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)  # found only against the live state (strict)

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for a in self.actions if a.kind == kind)

    def counts(self) -> Counter[ChangeKind]:
        """The actions of each kind, counted in one pass."""
        return Counter(change.shared[0] for change in self.actions)

    @property
    def has_changes(self) -> bool:
        return bool(self.actions)


def plan_changes(resolution: Resolution, current: Iterable[Completion], catalog: Catalog, *,
                 partial: Iterable[str] = ()) -> Plan:
    """The actions that take `current` to the desired state of `resolution`, within each mode's reach."""
    with gc_paused():
        return _plan_changes(resolution, current, catalog, list(partial))


def _plan_changes(resolution: Resolution, current: Iterable[Completion], catalog: Catalog,
                  partial: list[str]) -> Plan:
    plan = Plan(partial=partial)
    specs_by_course: dict[int, list[ResolvedCompletions]] = defaultdict(list)
    for resolved in resolution.completions:
        specs_by_course[resolved.course.id].append(resolved)
    order = {lesson.id: (lesson.display_order, lesson.id) for lesson in catalog.lessons.values()}
    if isinstance(current, CompletionColumns):
        presorted = _plan_columns(plan, resolution, specs_by_course, current, catalog, order)
    else:
        _plan_records(plan, resolution, specs_by_course, current, catalog, order)
        presorted = False

    def sort_key(change: Change) -> tuple[int, ...]:
        """A course's changes carry no key (a tuple each, on a plan of millions): it is made here, as
        `_plan_course` would have (course, member, rank, lesson order, record Id)."""
        if change.sort_key:
            return change.sort_key
        return (change.course_id, change.member_id, _RANK[change.kind],
                *order.get(change.lesson_id, (0, change.lesson_id)), change.record.id if change.record else 0)

    if resolution.migrations:
        _to_be_enrolled(plan, catalog, order)
        _one_create_a_pair(plan)
        _one_delete_a_record(plan)
    if not presorted:
        plan.actions.sort(key=sort_key)
    plan.warnings.extend(str(w) for w in resolution.warnings)
    if resolution.suspect_teams:
        _check_suspect_teams(plan, resolution, catalog)
    return plan


def _check_suspect_teams(plan: Plan, resolution: Resolution, catalog: Catalog) -> None:
    """A `team:` rule no member is in, close to a team members are in, is an error when the plan deletes what the
    rule would give that team's members: the records of its lessons its own spec made (orphaned), or any of them a
    spec of the course names and no longer declares (undeclared): a typo (`Comunity`) would take back what the rule
    meant (`Community`) gave. Otherwise it stays a warning: a rule may name a team before it has members."""
    for suspect in resolution.suspect_teams:
        if not suspect.lessons:
            continue  # (a revoke's: a typo there deletes less, not more)
        members = {m.id for m in catalog.members_of(suspect.course_id) if suspect.near in m.teams}
        taken = sum(1 for c in plan.actions
                    if c.kind == "delete" and c.course_id == suspect.course_id and c.member_id in members
                    and c.lesson_id in suspect.lessons
                    and (c.reason == "undeclared" or (c.reason == "orphaned" and c.record is not None
                                                      and c.record.system_id == suspect.marker)))
        if taken:
            origin = suspect.origin
            plan.errors.append(Problem(origin.path, origin.line, origin.column,
                                       f"no member of {catalog.courses[suspect.course_id].title!r} is in team "
                                       f"{suspect.team!r}; did you mean {suspect.near!r}? This plan would delete "
                                       f"{taken} completion(s) of members of {suspect.near!r} that this rule would "
                                       "declare under that name: correct the name (team names match exactly, case "
                                       "included), or make those deletes in a change of their own"))


def _to_be_enrolled(plan: Plan, catalog: Catalog, order: dict[int, tuple[int, int]]) -> None:
    """The creates of members a migration of the set is to enrol (resolved with the coworker's Id, negative, as
    their member's: `_Resolver.to_be_enrolled`) made creates for that coworker once enrolled, after the enrolment;
    an error where the migration does not enrol them (it enrols only members with progress to carry)."""
    enrolled = {(c.course_id, c.coworker_id) for c in plan.actions if c.kind == "enroll"}
    said: set[tuple[int, int]] = set()
    kept: list[Change] = []
    for change in plan.actions:
        if change.member_id >= 0:
            kept.append(change)
            continue
        course, coworker = change.course_id, -change.member_id
        found = catalog.coworkers.get(coworker)
        name = found.full_name if found is not None else f"coworker {coworker}"
        if (course, coworker) not in enrolled:
            if (course, coworker) not in said and change.origin is not None:
                said.add((course, coworker))
                title = catalog.courses[course].title if course in catalog.courses else course
                plan.errors.append(Problem(change.origin.path, change.origin.line, change.origin.column,
                                           f"{name} is not enrolled in {title!r}, and the migration into it enrols "
                                           "only members with progress to carry: they have none"))
            continue
        lesson = change.lesson_id
        kept.append(Change("create", course, 0, lesson, change.spec, change.reason, change.origin,
                           system_id=change.system_id, coworker_id=coworker, name=name,
                           sort_key=(course, coworker, 0, 1, *order.get(lesson, (0, lesson)), 0)))
    plan.actions[:] = kept


def _one_create_a_pair(plan: Plan) -> None:
    """A pair a migration carries is created once, by the first migration that carries it, even when a spec of
    its target course declares it or another migration carries it too (and a coworker is enrolled once): the
    migration's create is what lets `source: remove` delete the source (the executor keeps a source while its
    twin is missing). Without this the plan counted every one, and the apply made the first and called the
    others "made by another writer"."""

    def pair(change: Change) -> tuple[int, int, int]:  # a member to be enrolled by their coworker's Id
        return change.course_id, change.member_id or -(change.coworker_id or 0), change.lesson_id

    seen: set[tuple[bool, int, int, int]] = set()
    kept: list[Change] = []
    for change in plan.actions:
        if change.reason == "migrated" and change.kind in ("create", "enroll"):
            key = (change.kind == "enroll", *pair(change))
            if key in seen:
                continue
            seen.add(key)
        kept.append(change)
    plan.actions[:] = [c for c in kept if c.kind != "create" or c.reason == "migrated" or (False, *pair(c)) not in seen]


def _one_delete_a_record(plan: Plan) -> None:
    """A record that a `source: remove` migration removes and a spec of its course deletes too (undeclared in
    `authoritative` mode, orphaned, a duplicate) is deleted once, by the migration: its delete waits for the twin
    (the executor keeps a source whose twin failed), so the credit moves rather than disappears. Without this the
    plan counted the record twice, the apply sent a second delete, and an undo restored it twice."""
    migrated = {c.record.id for c in plan.actions if c.kind == "delete" and c.reason == "migrated" and c.record}
    seen: set[int] = set()
    kept: list[Change] = []
    for change in plan.actions:
        record = change.record if change.kind == "delete" else None
        if record is not None:
            if record.id in seen or (record.id in migrated and change.reason != "migrated"):
                continue
            seen.add(record.id)
        kept.append(change)
    if len(kept) != len(plan.actions):
        plan.actions[:] = kept


def _plan_records(plan: Plan, resolution: Resolution, specs_by_course: dict[int, list[ResolvedCompletions]],
                  current: Iterable[Completion], catalog: Catalog, order: dict[int, tuple[int, int]]) -> None:
    """The changes, from completions as values."""
    records_in = current if isinstance(current, Sequence) else list(current)  # read twice at most
    lesson_course = {lesson.id: lesson.course_id for lesson in catalog.lessons.values()}
    # Per course and lesson, each member's first record (a dict per lesson rather than one keyed by pairs: no
    # pair tuple a record, a hundred megabytes on a read of millions), and the others of the pairs that have
    # more (duplicates are rare: a list per pair would cost more than the record itself).
    first_by_course: dict[int, dict[int, dict[int, Completion]]] = defaultdict(dict)
    more_by_course: dict[int, dict[Pair, list[Completion]]] = defaultdict(dict)
    for record in records_in:
        course_id = lesson_course.get(record.lesson_id)
        if course_id in specs_by_course:
            by_lesson = first_by_course[course_id]
            first = by_lesson.get(record.lesson_id)
            if first is None:
                by_lesson[record.lesson_id] = {record.member_id: record}
            elif record.member_id in first:
                more_by_course[course_id].setdefault((record.member_id, record.lesson_id), []).append(record)
            else:
                first[record.member_id] = record

    for course_id in sorted(specs_by_course):
        _plan_course(plan, specs_by_course[course_id], first_by_course.pop(course_id, {}),
                     more_by_course[course_id], records_in)
    if resolution.migrations:
        by_pair: dict[Pair, list[Completion]] = defaultdict(list)
        for record in records_in:
            by_pair[record.pair].append(record)
        settled: set[Pair] = set()
        counted: set[Pair] = set()
        for migration in resolution.migrations:
            _plan_migration(plan, migration, by_pair, by_pair, catalog, order, resolution.completions,
                            twins=by_pair, settled=settled, counted=counted, migrations=resolution.migrations,
                            held=by_pair.get)


class _CourseRules:
    """One course's specs as the rules both planning paths apply: what is desired (and by which spec), revoked,
    in reach of the mode, and deletable by whom; the changes they make."""

    def __init__(self, plan: Plan, specs: list[ResolvedCompletions]) -> None:
        self.plan, self.specs = plan, specs
        self.course_id = specs[0].course.id
        self.mode = specs[0].spec.mode  # one course takes one mode (checked when resolving)
        self.owned = self.mode == "owned"
        self.revoked: dict[Pair, tuple[ResolvedCompletions, Origin, str | None]] = {}
        self.named: set[int] = set()
        self.authority: set[int] = set()  # whose undeclared completions `authoritative` deletes
        self.markers = {r.spec.marker: r for r in specs}
        # Each spec's marker made once: a create carries it, and `spec.marker` makes a new string each time (a
        # string a create, 75 MB on a plan of a million creates).
        self.marker_of = {id(r): r.spec.marker for r in specs}
        self._creates_of: dict[int, Change] = {}  # per spec, what its creates share (`create_of`)
        self.creates = plan.actions  # where creates go (the columns path keeps them apart, to order them cheaply)
        # The desired pairs; the spec that wants each is looked up only when several specs share the course.
        self.wanted_by: dict[Pair, ResolvedCompletions] | None = None
        if len(specs) == 1:
            self.desired = specs[0].desired
        else:
            self.desired, self.wanted_by = {}, {}
            for resolved in specs:
                for pair, origins in resolved.desired.items():
                    if pair not in self.desired:
                        self.desired[pair] = origins
                        self.wanted_by[pair] = resolved
        for resolved in specs:
            self.named |= resolved.named_members
            self.authority |= resolved.authority
            for pair, (origin, reason) in resolved.revoked.items():
                self.revoked.setdefault(pair, (resolved, origin, reason))

    def in_reach(self, record: Completion) -> bool:
        if record.member_id in self.named:
            return True
        return self.owned and record.system_id in self.markers

    def deletable(self, member_id: int, system_id: str | None) -> ResolvedCompletions | None:
        """The spec whose mode may delete a record of this member with this SystemId, if any (revoke aside)."""
        if self.mode == "authoritative" and member_id in self.authority:
            return next(r for r in self.specs if member_id in r.authority)
        if self.owned and system_id in self.markers:
            return self.markers[system_id]
        return None

    def delete(self, record: Completion, spec: ResolvedCompletions, reason: str, origin: Origin | None,
               note: str | None = None) -> None:  # its sort key is made when the plan is sorted
        self.plan.actions.append(Change("delete", self.course_id, record.member_id, record.lesson_id, spec.spec.name,
                                        reason, origin, record, note=note))

    def create(self, pair: Pair, origins: tuple[Origin, ...]) -> None:
        resolved = self.specs[0] if self.wanted_by is None else self.wanted_by[pair]
        self.creates.append(self.create_of(resolved).like(pair[0], pair[1], origins[0]))

    def create_of(self, resolved: ResolvedCompletions) -> Change:
        """The create a spec's missing pair is (its member, lesson and origin to be filled in: `Change.like`)."""
        made = self._creates_of.get(id(resolved))
        if made is None:
            made = self._creates_of[id(resolved)] = Change("create", self.course_id, 0, 0, resolved.spec.name,
                                                           "declared", system_id=self.marker_of[id(resolved)])
        return made

    def take_back(self, record: Completion, owner: ResolvedCompletions) -> None:
        """Delete a record the mode reaches and no spec declares."""
        if self.mode == "authoritative":
            self.delete(record, owner, "undeclared", owner.member_origins.get(record.member_id, owner.spec.origin))
        else:
            self.delete(record, owner, "orphaned", owner.spec.origin)

    def settle(self, pair: Pair, found: list[Completion]) -> None:
        """A pair with several records, or a revoked one: `found` in the order read."""
        plan, mode = self.plan, self.mode
        reachable = [r for r in found if self.in_reach(r)]
        if not reachable and pair not in self.revoked:
            return
        plan.existing_in_scope += len(reachable)
        ordered = oldest_first(found)
        if pair in self.revoked:
            spec, origin, reason = self.revoked[pair]
            for record in ordered:
                self.delete(record, spec, "revoked", origin, reason)
            plan.existing_in_scope += len(found) - len(reachable)
            return
        if pair in self.desired:
            plan.unchanged += 1
            keeper, extras = ordered[0], ordered[1:]
            if extras and _no_oldest(plan, ordered):
                return
            for record in extras:
                owner = self.deletable(record.member_id, record.system_id)
                if owner is not None:
                    self.delete(record, owner, "duplicate", owner.spec.origin, _kept_note(keeper, record))
                else:
                    lesson = record.lesson_title or str(record.lesson_id)
                    plan.drift.append(f"duplicate completion #{record.id} of lesson {lesson} for "
                                      f"{record.member_name or record.member_id!s} (kept #{keeper.id}); "
                                      f"mode {mode!r} may not delete it")
            return
        for record in ordered:
            owner = self.deletable(record.member_id, record.system_id)
            if owner is not None:
                self.take_back(record, owner)
        undeletable = [r for r in ordered if self.deletable(r.member_id, r.system_id) is None and self.in_reach(r)]
        if len(undeletable) > 1:
            plan.drift.append(f"{len(undeletable)} completions of lesson "
                              f"{undeletable[0].lesson_title or undeletable[0].lesson_id!s} for "
                              f"{undeletable[0].member_name or undeletable[0].member_id!s} "
                              f"(#{', #'.join(str(r.id) for r in undeletable)}) are duplicates the mode may not delete")


_NONE: dict[int, Completion] = {}
_NO_PAIRS: dict[Pair, list[Completion]] = {}


def _plan_course(plan: Plan, specs: list[ResolvedCompletions], records: dict[int, dict[int, Completion]],
                 more: dict[Pair, list[Completion]], current: Sequence[Completion]) -> None:
    """One course's changes; `records` holds each member's first record per lesson (lesson → member →
    record), `more` the other records of the pairs that have several."""
    rules = _CourseRules(plan, specs)
    named, markers, desired, revoked, owned = rules.named, rules.markers, rules.desired, rules.revoked, rules.owned
    for pair, origins in desired.items():
        if pair[0] not in records.get(pair[1], _NONE):
            rules.create(pair, origins)

    slow: set[Pair] = set(more)  # pairs with several records, or revoked: taken below in the order read
    slow.update(pair for pair in revoked if pair[0] in records.get(pair[1], _NONE))
    for lesson_id, by_member in records.items():
        for member_id, first in by_member.items():
            if not (member_id in named or (owned and first.system_id in markers)):
                continue  # out of reach (a slow pair out of reach is skipped below too, unless revoked)
            pair = (member_id, lesson_id)
            if slow and pair in slow:
                continue  # taken below
            plan.existing_in_scope += 1
            if pair in desired:
                plan.unchanged += 1
                continue
            owner = rules.deletable(member_id, first.system_id)
            if owner is not None:
                rules.take_back(first, owner)
    if not slow:
        return
    ordered_pairs: list[Pair] = []  # the order their first records were read in (drift is listed so)
    pending = set(slow)
    for record in current:
        if record.lesson_id in records and (record.member_id, record.lesson_id) in pending:
            pending.discard(record.pair)
            ordered_pairs.append(record.pair)
            if not pending:
                break
    for pair in ordered_pairs:
        member_id, lesson_id = pair
        first = records[lesson_id][member_id]
        rules.settle(pair, [first, *more[pair]] if pair in more else [first])


# --- planning from columns -----------------------------------------------------------------------

def _plan_columns(plan: Plan, resolution: Resolution, specs_by_course: dict[int, list[ResolvedCompletions]],
                  columns: CompletionColumns, catalog: Catalog, order: dict[int, tuple[int, int]]) -> bool:
    """The changes, from completions held as columns (`columns.py`), to the same plan as `_plan_records`: no
    object a record, a `Completion` made only for a record that becomes a change, drift, or a migration's input.
    Returns whether they are already in the plan's order (they are made so when no migration adds to them).

    Per course, one byte per member and lesson counts its records (none, one, several); a pair with one record
    is decided from its columns, the rest (duplicates, revoked pairs) are settled as `_plan_course` does."""
    lesson_course = {lesson.id: lesson.course_id for lesson in catalog.lessons.values()}
    course_of = {lesson: lesson_course.get(lesson) for lesson in set(columns.lesson_ids)}
    lessons_by_course: dict[int, list[int]] = defaultdict(list)
    for lesson, course_id in course_of.items():
        if course_id in specs_by_course:
            lessons_by_course[course_id].append(lesson)
    rows_by_course: dict[int, Sequence[int]] = {}
    if len(lessons_by_course) == 1 and sum(map(len, lessons_by_course.values())) == len(course_of):
        rows_by_course[next(iter(lessons_by_course))] = range(len(columns))  # every record in one course
    elif lessons_by_course:
        held: dict[int, array[int]] = {course_id: array("q") for course_id in lessons_by_course}
        wanted = {lesson: held[course_id] for course_id, lessons in lessons_by_course.items() for lesson in lessons}
        for row, lesson in enumerate(columns.lesson_ids):
            rows = wanted.get(lesson)
            if rows is not None:
                rows.append(row)
        rows_by_course.update(held)
    for course_id in sorted(specs_by_course):
        start = len(plan.actions)
        creates, ordered = _plan_course_columns(plan, specs_by_course[course_id], columns,
                                                rows_by_course.get(course_id, range(0)),
                                                lessons_by_course.get(course_id, []), order)
        if resolution.migrations:  # sorted with the migrations' changes, by `_plan_changes`
            plan.actions.extend(creates)
        else:
            others = plan.actions[start:]
            del plan.actions[start:]
            plan.actions.extend(_in_order(creates, others, order, ordered))
    if resolution.migrations:
        sources = {lesson for m in resolution.migrations for lesson in m.lesson_map}
        sources |= {x.id for m in resolution.migrations for x in catalog.lessons_of(m.source.id)}
        targets = {lesson for m in resolution.migrations for lesson in m.lesson_map.values()}
        by_pair: dict[Pair, list[Completion]] = defaultdict(list)
        present: dict[Pair, int] = {}  # a target pair with a record → its first row
        twins: dict[Pair, list[Completion]] = {}  # a target pair with more than one record → all of them
        for row, (member, lesson) in enumerate(zip(columns.member_ids, columns.lesson_ids, strict=True)):
            if lesson in sources:
                by_pair[(member, lesson)].append(columns.completion(row))
            if lesson in targets:
                pair = (member, lesson)
                first = present.setdefault(pair, row)
                if first != row:
                    twins.setdefault(pair, [columns.completion(first)]).append(columns.completion(row))
        settled: set[Pair] = set()
        counted: set[Pair] = set()

        def records_of(pair: Pair) -> list[Completion] | None:
            more = twins.get(pair)
            return more if more is not None else [columns.completion(present[pair])] if pair in present else None

        for migration in resolution.migrations:
            _plan_migration(plan, migration, by_pair, present, catalog, order, resolution.completions,
                            twins=twins, settled=settled, counted=counted, migrations=resolution.migrations,
                            held=records_of)
    return not resolution.migrations


def _in_order(creates: list[Change], others: list[Change], order: dict[int, tuple[int, int]],
              ordered: bool = False) -> Iterator[Change]:
    """One course's changes (none made by a migration) in the plan's order (`_plan_changes`' `sort_key`),
    without a key tuple a change: the creates (often millions) are sorted by the lesson's rank in DisplayOrder,
    then (stably) by member, keys that are objects already made (unless `ordered`: they were made in that order);
    the deletes (few) by the full key; then merged."""
    if not ordered:
        lessons = sorted({c.lesson_id for c in creates}, key=lambda lesson: order.get(lesson, (0, lesson)))
        rank = {lesson: i for i, lesson in enumerate(lessons)}
        creates.sort(key=lambda c: rank[c.lesson_id])
        creates.sort(key=attrgetter("member_id"))

    def key(change: Change) -> tuple[int, ...]:
        return (change.member_id, _RANK[change.kind], *order.get(change.lesson_id, (0, change.lesson_id)),
                change.record.id if change.record else 0)

    others.sort(key=key)
    return heapq.merge(creates, others, key=key)


def _plan_course_columns(plan: Plan, specs: list[ResolvedCompletions], columns: CompletionColumns,
                         rows: Sequence[int], lessons: list[int], order: dict[int, tuple[int, int]]
                         ) -> tuple[list[Change], bool]:
    """One course's changes from the rows of its records (in the order read) and its lessons among them: its
    creates returned, with whether they were made in the plan's order (by member, then lesson in `order`: a spec
    that lists its members in Id order, each rule its lessons in DisplayOrder), the rest added to the plan.

    Each pass over the rows that needs no decision runs in C (`map`, `array`, `bytearray`): the rows' cells, and
    their counts when no pair has several records (the usual read); the desired pairs are read a run at a time
    (`DesiredPairs.runs`) and their creates made from one (`Change.like`)."""
    rules = _CourseRules(plan, specs)
    creates: list[Change] = []
    rules.creates = creates
    named, desired, revoked, owned = rules.named, rules.desired, rules.revoked, rules.owned
    whole = isinstance(rows, range) and len(rows) == len(columns)
    if whole:
        rows = range(len(columns))

    def read(column: array[int]) -> Iterable[int]:
        """The column's values at `rows` (the column itself when they are all of it), afresh at each call."""
        return column if whole else map(column.__getitem__, rows)

    # Member and lesson as positions (members in the order first read); per pair a byte: its records, up to 2
    # ("several"); and each row's pair as its place in `counts` (made once, read twice).
    lesson_at = {lesson: i for i, lesson in enumerate(lessons)}
    width = len(lessons)
    member_at = dict.fromkeys(read(columns.member_ids), 0)
    for place, member in enumerate(member_at):
        member_at[member] = place * width
    counts = bytearray(len(member_at) * width)

    def cells_of(typecode: str) -> array[int]:
        return array(typecode, map(add, map(member_at.__getitem__, read(columns.member_ids)),
                                   map(lesson_at.__getitem__, read(columns.lesson_ids))))

    try:
        cells = cells_of("i")
    except OverflowError:  # past 2**31 members × lessons
        cells = cells_of("q")
    deque(map(counts.__setitem__, cells, repeat(1)), maxlen=0)
    several = counts.count(1) != len(cells)  # some pair has more than one record: count them
    if several:
        counts = bytearray(len(counts))
        for at in cells:
            if counts[at] < 2:
                counts[at] += 1

    wanted = bytearray(len(counts))  # the desired pairs that have a record
    ordered = True  # whether the creates are made in the plan's order (known for lean desired pairs only)
    if isinstance(desired, DesiredPairs) and rules.wanted_by is None:
        resolved = specs[0]  # what `rules.create` makes, from one change
        make = rules.create_of(resolved).like
        keep = creates.append
        ranked: dict[tuple[int, ...], bool] = {}  # per run of lessons: whether it is in DisplayOrder
        previous: int | None = None
        for origin, member, run in desired.runs():
            if ordered:  # each member's run after the last one's, its lessons in order
                fine = ranked.get(run)
                if fine is None:
                    places = [order.get(lesson, (0, lesson)) for lesson in run]
                    fine = ranked[run] = all(a < b for a, b in pairwise(places))
                ordered = fine and (previous is None or member > previous)
                previous = member
            start = member_at.get(member)
            if start is None:
                for lesson in run:
                    keep(make(member, lesson, origin))
                continue
            for lesson in run:
                offset = lesson_at.get(lesson)
                if offset is not None and counts[start + offset]:
                    wanted[start + offset] = 1
                else:
                    keep(make(member, lesson, origin))
    else:
        ordered = False
        for pair, origins in desired.items():
            start = member_at.get(pair[0])
            offset = lesson_at.get(pair[1])
            if start is None or offset is None or not counts[start + offset]:
                rules.create(pair, origins)
            else:
                wanted[start + offset] = 1

    # Per SystemId code: whether `owned` reaches it, and the spec that may delete it (when no member rule does).
    systems: dict[int, tuple[bool, ResolvedCompletions | None]] = {}
    for code in set(read(columns.systems.codes)):
        system_id = columns.systems.decode(code)
        owner = rules.markers.get(system_id) if owned and system_id is not None else None
        systems[code] = (owner is not None, owner)
    reached = {code: found[0] for code, found in systems.items()}
    authoritative = rules.mode == "authoritative"
    revoked_members = {member for member, _ in revoked}
    check = several or bool(revoked_members)  # whether any row can be a slow one
    slow: dict[Pair, list[int]] = {}  # pairs with several records, or revoked: their rows in the order read
    existing = unchanged = 0
    for row, at, member, lesson, code in zip(rows, cells, read(columns.member_ids), read(columns.lesson_ids),
                                             read(columns.systems.codes), strict=True):
        if check and (counts[at] == 2 or (member in revoked_members and (member, lesson) in revoked)):
            slow.setdefault((member, lesson), []).append(row)
            continue
        if member not in named and not reached[code]:
            continue  # out of reach
        existing += 1
        if wanted[at]:
            unchanged += 1
            continue
        if authoritative and member in rules.authority:
            rules.take_back(columns.completion(row), next(r for r in specs if member in r.authority))
        elif owned:
            owner = systems[code][1]
            if owner is not None:
                rules.take_back(columns.completion(row), owner)
    plan.existing_in_scope += existing
    plan.unchanged += unchanged
    for pair, found in slow.items():
        rules.settle(pair, [columns.completion(row) for row in found])
    return creates, ordered


def _plan_migration(plan: Plan, migration: ResolvedMigration, records: Mapping[Pair, list[Completion]],
                    present: Container[Pair], catalog: Catalog, order: dict[int, tuple[int, int]],
                    specs: Sequence[ResolvedCompletions] = (), *, twins: Mapping[Pair, list[Completion]] = _NO_PAIRS,
                    settled: set[Pair] | None = None, counted: set[Pair] | None = None,
                    migrations: Sequence[ResolvedMigration] = (),
                    held: Callable[[Pair], list[Completion] | None] = _NO_PAIRS.get) -> None:
    """Per coworker: enrol in the target if needed, create each missing mapped completion, then (with
    `source: remove`) delete the source completion, which the executor does only once its twin exists.
    `records`: the source lessons' records by pair, in the order read; `present`: the pairs with a record;
    `specs`: the completions specs, whose revoke of a pair the migration carries is an error (each apply would
    undo the last). `twins`: the target pairs with more than one record (any other pair there may be in it too),
    duplicates of a pair the migration carries: where no completions spec manages the target course (its mode
    decides there), the oldest is kept and the others carrying the migration's marker deleted, the rest reported
    as drift; `settled` holds the pairs already so decided (two migrations may carry one), `counted` the carried
    pairs already counted unchanged (each is counted once, and not at all where a spec of the target course
    declares it: the spec counted it), and `migrations` are all of the set's (a record carrying the marker of any
    of them into this course is theirs); `held`: a target pair's records (None for none).

    With `source: remove`, a twin that only a completions spec's records make (or this tool's marker of no spec or
    migration of the run: `_lent_by`) is not one the source may go for: an `owned` spec takes them back when it
    stops declaring the pair, and the credit would be gone with them (the source deleted in an earlier apply). The
    source is kept, and said so; once an owned spec stops declaring the pair, its records go and the migration
    makes its own twin, which the source's delete waits for."""
    spec = migration.spec
    source, target = migration.source.id, migration.target.id
    managed = any(resolved.course.id == target for resolved in specs)
    declared_there = [resolved.desired for resolved in specs if resolved.course.id == target]  # counted there
    settled = set() if settled is None else settled
    counted = set() if counted is None else counted
    # The migrations into this course own the records carrying their markers, whichever settles a pair first.
    owners = {m.spec.marker: m.spec for m in migrations if m.target.id == target} if migrations else {spec.marker: spec}
    revoked = {pair: origin for resolved in specs if resolved.course.id == target
               for pair, (origin, _) in resolved.revoked.items()}
    revoked_at_source = {pair: origin for resolved in specs if resolved.course.id == source
                         for pair, (origin, _) in resolved.revoked.items()}
    kept = [resolved.desired for resolved in specs if resolved.course.id == source] \
        if spec.source_policy == "remove" else []  # what a spec of the source course declares, which it removes
    target_member = {m.coworker_id: m for m in catalog.members_of(target)}
    source_lessons = {x.id: x for x in catalog.lessons_of(source)}
    # What the specs of the source course create in this apply is progress to carry too, as if it were there: else
    # the next plan carries it (two applies to converge), or finds an error this one should have said.
    planned = {(c.member_id, c.lesson_id) for c in plan.actions
               if c.kind == "create" and c.course_id == source and c.reason != "migrated"} \
        if any(resolved.course.id == source for resolved in specs) else set()
    # The target records this plan deletes (an `owned` spec's orphans; the duplicates migrations settle, this one's
    # added below as it goes): a pair whose every record goes is not a twin that exists, or `source: remove` would
    # delete the source as well, and the credit would be gone; the migration makes its own twin (its marker), which
    # the source's delete waits for. Nor is a record the plan deletes a twin a source may go for (`_lent_by`).
    taken: dict[Pair, set[int]] = defaultdict(set)
    for c in plan.actions:
        if c.kind == "delete" and c.course_id == target and c.reason != "migrated" and c.record is not None:
            taken[c.pair].add(c.record.id)
    # Who could take a twin back: a completions spec whose marker it carries (by that marker), but a migration.
    lenders = {resolved.spec.marker: (resolved.spec.mode, resolved.spec.name) for resolved in specs}
    carriers = {m.spec.marker for m in migrations} | {spec.marker}
    leaning: dict[tuple[str, str], int] = defaultdict(int)  # sources kept, by who could take their twins back
    unmapped: dict[int, int] = defaultdict(int)
    not_enrolled: list[str] = []
    for member in catalog.members_of(source):
        done = [(lesson, oldest_first(records.get((member.id, lesson), []))) for lesson in source_lessons]
        done = [(lesson, found) for lesson, found in done if found or (member.id, lesson) in planned]
        for lesson, _ in done:
            if lesson not in migration.lesson_map:
                unmapped[lesson] += 1
        mapped = [(lesson, found) for lesson, found in done if lesson in migration.lesson_map]
        if not mapped:
            continue
        twin_member = target_member.get(member.coworker_id)

        def key(rank: int, lesson: int, record_id: int = 0, coworker: int = member.coworker_id) -> tuple[int, ...]:
            return (target, coworker, 0, rank, *order.get(lesson, (0, lesson)), record_id)

        if twin_member is None:
            if not spec.enroll:
                not_enrolled.append(member.full_name or f"coworker {member.coworker_id}")
                continue
            plan.actions.append(Change("enroll", target, 0, 0, spec.name, "migrated", spec.target_course.origin,
                                       coworker_id=member.coworker_id, name=member.full_name,
                                       sort_key=key(0, 0)))
        for lesson, found in mapped:
            twin_lesson = migration.lesson_map[lesson]
            entry = migration.map_origins.get(lesson, spec.origin)  # the lessons: entry that maps it
            twin = f"{target}:{member.coworker_id}:{twin_lesson}"
            against = revoked.get((twin_member.id if twin_member is not None else -member.coworker_id, twin_lesson))
            if against is not None:
                plan.errors.append(Problem(against.path, against.line, against.column,
                                           f"{member.full_name or f'coworker {member.coworker_id}'} has "
                                           f"{catalog.lessons[twin_lesson].title!r} both migrated ({entry}) and "
                                           "revoked; remove one of them"))
                continue
            exists = twin_member is not None and (twin_member.id, twin_lesson) in present \
                and not _all_taken((twin_member.id, twin_lesson), taken, twins)
            revoking = revoked_at_source.get((member.id, lesson))
            if revoking is not None and not exists:  # the revoke takes the credit away, the twin would keep it
                plan.errors.append(Problem(revoking.path, revoking.line, revoking.column,
                                           f"{member.full_name or f'coworker {member.coworker_id}'} has "
                                           f"{source_lessons[lesson].title!r} both revoked and carried to "
                                           f"{migration.target.title!r} by a migration ({entry}); remove one of "
                                           "them"))
                continue
            pair = (twin_member.id if twin_member is not None else 0, twin_lesson)
            if exists:
                if pair not in counted and not any(pair in d for d in declared_there):
                    plan.unchanged += 1  # once a pair: not again for another migration, nor for a spec declaring it
                    counted.add(pair)
                if not managed and pair in twins and pair not in settled:
                    settled.add(pair)
                    taken[pair].update(_settle_migrated_twins(plan, owners, target, oldest_first(twins[pair]),
                                                              entry, key(2, twin_lesson)))
            else:
                plan.actions.append(Change("create", target, twin_member.id if twin_member else 0, twin_lesson,
                                           spec.name, "migrated", entry, system_id=spec.marker,
                                           coworker_id=member.coworker_id, name=member.full_name, twin=twin,
                                           note=f"from {source_lessons[lesson].title!r} "
                                                f"({f'#{found[0].id}' if found else 'created by this apply'})",
                                           sort_key=key(1, twin_lesson)))
            if spec.source_policy == "remove":
                declared = next((d.get((member.id, lesson)) for d in kept if (member.id, lesson) in d), None)
                if declared is not None:
                    plan.errors.append(Problem(entry.path, entry.line, entry.column,
                                               f"{member.full_name or f'coworker {member.coworker_id}'} has "
                                               f"{source_lessons[lesson].title!r} both declared ({declared[0]}) and "
                                               "removed from the source by this migration (source: remove); "
                                               "remove one of them"))
                    continue
                lender = _lent_by(lenders, carriers, held(pair), taken.get(pair)) if exists else None
                if lender is not None:
                    leaning[lender] += len(found)
                    continue
                plan.existing_in_scope += len(found)
                for record in found:
                    plan.actions.append(Change("delete", source, member.id, lesson, spec.name, "migrated",
                                               entry, record, twin=twin,
                                               note=f"moved to {migration.target.title!r}",
                                               sort_key=key(2, lesson, record.id)))
    for lesson, count in sorted(unmapped.items()):
        title = source_lessons[lesson].title
        message = (f"lesson {title!r} of {migration.source.title!r} has {count} completion(s) but no mapping; "
                   "they are not migrated")
        if spec.strict:
            plan.errors.append(Problem(spec.origin.path, spec.origin.line, spec.origin.column, message))
        else:
            plan.warnings.append(f"{spec.origin}: {message}")
    for (mode, who), count in sorted(leaning.items()):
        kept_sources = (f"{spec.origin}: {count} source completion(s) of {migration.source.title!r} kept (source: "
                        f"remove): their copies in {migration.target.title!r} are records")
        anyway = f"revoke them in a spec of {migration.source.title!r} to have them removed anyway"
        if mode == "owned":
            plan.warnings.append(f"{kept_sources} of the owned spec {who!r} only, which takes them back once it "
                                 "stops declaring them; the migration then makes its own copies and removes the "
                                 "sources")
        elif mode:
            plan.warnings.append(f"{kept_sources} of the {mode} spec {who!r} only, which could take them back once "
                                 f"owned; {anyway}")
        else:
            plan.warnings.append(f"{kept_sources} carrying {who!r} only, the marker of no spec or migration of "
                                 "this run: a spec left out of it could take them back; plan with every spec of "
                                 f"{migration.target.title!r} to have the sources removed, or {anyway}")
    if not_enrolled:
        names = ", ".join(sorted(not_enrolled)[:5]) + (f" and {len(not_enrolled) - 5} more" if len(not_enrolled) > 5
                                                       else "")
        origin = spec.target_course.origin
        plan.errors.append(Problem(origin.path, origin.line, origin.column,
                                   f"{len(not_enrolled)} member(s) with progress to migrate are not enrolled in "
                                   f"{migration.target.title!r} ({names}); enrol them, or set enroll: true"))


def _lent_by(lenders: Mapping[str, tuple[str, str]], carriers: Container[str], records: list[Completion] | None,
             taken: set[int] | None) -> tuple[str, str] | None:
    """Who could take back every record a target pair has (but those the plan deletes), so that a source must not
    go for them: (mode, name) of the completions spec whose marker the first carries (`lenders`: marker → the
    spec's mode and name), or ("", the marker) for this tool's marker of no spec or migration of the run, which may
    be a spec left out of it. None when a record is one a spec cannot take back by no longer declaring it: made
    outside this tool, or by a migration (`carriers`: the run's migrations' markers). An `owned` spec takes its
    records back once it stops declaring them; another mode could once made owned: the credit the twin carries
    would go with them, the source removed by then."""
    kept = [r for r in records or () if not taken or r.id not in taken]
    first = None
    for record in kept:
        marker = record.system_id or ""
        if marker in carriers or not marker.startswith(MARKER_PREFIX):
            return None
        first = first or lenders.get(marker) or ("", marker)
    return first


def _all_taken(pair: Pair, taken: Mapping[Pair, set[int]], twins: Mapping[Pair, list[Completion]]) -> bool:
    """Whether this plan deletes every record of a target pair that has one (`taken`: the records it deletes, by
    pair; `twins`: the records of the pairs with more than one, and maybe of others)."""
    gone = taken.get(pair) if taken else None
    return gone is not None and len(gone) >= max(len(twins.get(pair, ())), 1)


def _settle_migrated_twins(plan: Plan, owners: Mapping[str, MigrationSpec], target: int, ordered: list[Completion],
                           entry: Origin, sort_key: tuple[int, ...]) -> list[int]:
    """Duplicates of a pair migrations carry into a course no completions spec manages: the oldest is kept, the
    others that carry the marker of a migration into the course (`owners`: marker → migration) are deleted, the
    rest reported as drift. `sort_key`: the pair's delete's, its record Id (last) to be filled in. Returns the Ids
    of the records deleted."""
    keeper = ordered[0]
    plan.existing_in_scope += len(ordered) - 1
    deleted: list[int] = []
    if _no_oldest(plan, ordered):
        return deleted
    for record in ordered[1:]:
        owner = owners.get(record.system_id or "")
        if owner is not None:
            plan.actions.append(Change("delete", target, record.member_id, record.lesson_id, owner.name, "duplicate",
                                       entry, record, note=_kept_note(keeper, record),
                                       sort_key=(*sort_key[:-1], record.id)))
            deleted.append(record.id)
        else:
            names = ", ".join(repr(m.name) for m in owners.values())
            plan.drift.append(f"duplicate completion #{record.id} of lesson {record.lesson_title or record.lesson_id} "
                              f"for {record.member_name or record.member_id!s} (kept #{keeper.id}); migrations "
                              f"({names}) delete only the duplicates they made (their SystemId)")
    return deleted


def _no_oldest(plan: Plan, ordered: list[Completion]) -> bool:
    """Whether duplicates of a pair cannot be settled because a CreatedOn of theirs is not a date (the oldest is
    kept, and which that is cannot be told): none is deleted, and it is reported as drift."""
    unknown = undated(ordered)
    if unknown is None:
        return False
    first, ids = ordered[0], ", #".join(str(i) for i in sorted(r.id for r in ordered))
    plan.drift.append(f"duplicate completions of lesson {first.lesson_title or first.lesson_id!s} for "
                      f"{first.member_name or first.member_id!s} (#{ids}): the "
                      f"CreatedOn of #{unknown.id} ({unknown.created_on!r}) is not a date, so the oldest, which is "
                      "kept, cannot be told; none is deleted")
    return True


# --- safety budgets ------------------------------------------------------------------------------

def conserved_deletes(plan: Plan) -> int:
    """Source deletes of `source: remove` migrations: each is made only once its twin exists in the target
    course (the executor checks), so the credit moves rather than disappears."""
    return sum(1 for a in plan.actions if a.kind == "delete" and a.reason == "migrated" and a.twin)


def apply_budgets(plan: Plan, safety: Safety, allow_deletes: int | None = None) -> Plan:
    """Block the plan (in place) when its deletes exceed a budget that --allow-deletes does not cover.

    Conserved deletes (see `conserved_deletes`) count neither as deletes nor as existing completions: a
    migration of 20,000 completions is not a plan that deletes everything in scope.
    """
    conserved = conserved_deletes(plan)
    deletes = plan.count("delete") - conserved
    plan.blocked = []
    plan.deletes_to_allow = None
    if plan.partial:
        plan.blocked.append("incomplete read: the current state could not be read in full, so nothing may be "
                            "written (a create could duplicate a record the read missed); run the plan again")
    note = (f"{conserved:,} source delete{'s' if conserved != 1 else ''} of a migration "
            f"{'are' if conserved != 1 else 'is'} outside the delete budget: each is made only once its copy "
            "in the target course exists, so no credit is lost")
    if conserved and note not in plan.warnings:
        plan.warnings.append(note)
    lifted = allow_deletes is not None and deletes <= allow_deletes
    over = []
    if deletes > safety.max_deletes:
        over.append(f"{deletes:,} deletes exceed max_deletes ({safety.max_deletes:,})")
    existing = plan.existing_in_scope - conserved
    if existing >= safety.min_existing and existing and deletes / existing > safety.max_delete_fraction:
        over.append(f"{deletes:,} deletes are {deletes / existing:.0%} of the {existing:,} existing completions "
                    f"in scope, over max_delete_fraction ({safety.max_delete_fraction:.0%})")
    if over and lifted:  # said in every form of the plan, so that a lift left in place is never silent
        said = (f"the delete budget is lifted by --allow-deletes {allow_deletes:,}: " + "; ".join(over)
                + " (review its deletes)")
        if said not in plan.warnings:
            plan.warnings.append(said)
    if over and not lifted:
        plan.blocked.extend(over)
        # No --allow-deletes lifts a block that an incomplete read also holds: the plan must be made again.
        plan.deletes_to_allow = None if plan.partial else deletes
    return plan


# --- the write estimate --------------------------------------------------------------------------

@dataclass(frozen=True)
class WriteEstimate:
    writes: int
    seconds: float
    days: int
    per_minute: float | None
    per_day: int | None

    def describe(self) -> str:
        """In words, with figures formatted like the counts: "1,200 write requests: about 20 minutes at 60
        writes a minute", "20,000 write requests: 4 days at 5,000 writes a day"."""
        noun = f"{self.writes:,} write request{'s' if self.writes != 1 else ''}"
        if not self.writes:
            return "no writes"
        if self.per_minute is None and self.per_day is None:
            return f"{noun} (no rate limits configured)"
        if self.days > 1:
            return f"{noun}: {self.days:,} days at {self.per_day:,} writes a day"
        if self.per_minute is None:
            return f"{noun}: within one day's cap of {self.per_day:,} writes"
        return f"{noun}: about {_duration(self.seconds)} at {_figure(self.per_minute)} writes a minute"


def estimate_writes(writes: int, limits: ClientLimits) -> WriteEstimate:
    """How long `writes` take under the client's budget: its sliding windows played out (the burst a
    per-minute window allows, then the wait for it to slide, and the least interval), then the daily cap."""
    paces = [60.0 / n for n in (limits.writes_per_minute, limits.requests_per_minute) if n]
    if limits.min_interval_ms:
        paces.append(limits.min_interval_ms / 1000.0)
    interval = max(paces, default=0.0)
    per_minute = 60.0 / interval if interval else None
    per_day = limits.writes_per_day
    days = math.ceil(writes / per_day) if per_day and writes else (1 if writes else 0)
    if per_day and writes > per_day:
        last = writes - (days - 1) * per_day
        seconds = (days - 1) * 86400.0 + paced_seconds(last, limits)
    else:
        seconds = paced_seconds(writes, limits)
    return WriteEstimate(writes, seconds, days, per_minute, per_day)


SIMULATED_WRITES = 20_000  # past this many, the steady rate of the last simulated hour is extrapolated
_WINDOWS = ("requests_per_minute", "requests_per_hour", "writes_per_minute")  # the pacer's sliding windows


def paced_seconds(writes: int, limits: ClientLimits) -> float:
    """The time `writes` back-to-back writes take under the client's own pacer (`pacing.Pacer`: the request
    and write windows slide, each request waits for the least interval after the previous one), played out
    on a simulated clock, from the first write sent to the last one done. The round trip of each request
    is not known here: zero. The daily cap is the caller's (it stops an apply; it does not pace it).

    The pacer's schedule, write by write: a write goes once the least interval since the one before has passed
    and, in each window of `cap` requests a `span`, once the write `cap` places back has left it (at its time
    plus `span`); the same times as the pacer's own waits come to (a test plays the pacer out against it)."""
    least = (limits.min_interval_ms or 0) / 1000.0
    simulated = min(writes, SIMULATED_WRITES)
    # A window that holds every simulated write never fills, so it never makes one wait: it is left out (the
    # result is the same; with limits that never bind, as when they are switched off, there is nothing to play).
    limits = replace(limits, writes_per_day=None, **{name: None for name in _WINDOWS
                                                     if (getattr(limits, name) or 0) >= simulated})
    windows = [(cap, span) for span, cap in ((60.0, limits.requests_per_minute), (3600.0, limits.requests_per_hour),
                                             (60.0, limits.writes_per_minute)) if cap]
    if not (windows or least):
        return 0.0
    marks = [0.0] * simulated  # when each write goes: the first at once
    now = 0.0
    for k in range(1, simulated):
        due = now + least
        for cap, span in windows:
            if k >= cap and marks[k - cap] + span > due:
                due = marks[k - cap] + span
        marks[k] = now = due
    if writes > simulated:  # extrapolate at the rate of the last simulated hour (or of all of it)
        since = next((i for i, t in enumerate(marks) if t >= now - 3600.0), 0)
        done = simulated - 1 - since
        rate = (now - marks[since]) / done if done else least
        now += (writes - simulated) * rate
    return now + least


def _figure(value: float) -> str:
    """A rate as people write it: whole numbers with thousands separators, one decimal below ten."""
    if value >= 10 or value == round(value):
        return f"{round(value):,}"
    return f"{value:.1f}".removesuffix(".0")


def _duration(seconds: float) -> str:
    if seconds < 90:
        whole = max(1, round(seconds))
        return f"{whole} second{'s' if whole != 1 else ''}"
    minutes = seconds / 60
    if minutes < 90:
        return f"{round(minutes)} minutes"
    hours = minutes / 60
    return f"{_figure(round(hours, 1))} hours"


def _kept_note(keeper: Completion, extra: Completion) -> str:
    """Why `keeper` is kept and `extra` deleted: the oldest, or of two made at the same time (list dates have whole
    seconds, and Ids are allocated in blocks, not in creation order), the smaller Id: a tie said as one."""
    if keeper.created_on and instant(keeper.created_on) == instant(extra.created_on):
        return f"tie with #{keeper.id} (both created {keeper.created_on}): the smaller Id is kept"
    return f"duplicate of #{keeper.id}, the oldest (created {keeper.created_on or 'unknown'}), which is kept"
