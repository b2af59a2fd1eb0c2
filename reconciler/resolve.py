"""Names → Ids: resolves a spec set against the live catalog into the desired state the planner takes.

Matching is exact: titles after trimming, emails without regard to case. The API's substring filters are
never trusted for this (`Onboarding` must not match `Onboarding 2026`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import ItemsView, Iterator, KeysView, ValuesView
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from reconciler.errors import Problem, SpecError
from reconciler.model import (
    Catalog,
    CompletionsSpec,
    Course,
    Lesson,
    LessonSet,
    Member,
    MemberSelector,
    MigrationSpec,
    Origin,
    Ref,
    SpecSet,
    TitleRefs,
)
from reconciler.schema_check import closest, near_miss

Pair = tuple[int, int]  # (CourseMemberId, CourseLessonId)


@dataclass(slots=True)
class _Rule:
    """One rule's lessons and place, shared by every member the rule names."""

    origin: Origin
    once: tuple[Origin, ...]
    lessons: tuple[int, ...]  # in the rule's order, each once
    counts: dict[int, int]  # lesson Id → how many times the rule names it (nearly always 1)
    members: list[int]


class DesiredPairs(dict[Pair, tuple[Origin, ...]]):
    """The desired pairs of a spec, each with the places of the rules that declare it, read-only.

    A dict to its readers (the planner takes one), held lean: each list of lessons once, each member's rules as one
    Id or a tuple of them, instead of a key and a tuple per pair (a spec of 200,000 members declares millions of
    pairs). Iteration follows the order the pairs were first declared in: rule by rule, member by member, lesson
    by lesson. The dict underneath stays empty."""

    def __init__(self) -> None:
        super().__init__()
        self._rules: list[_Rule] = []
        self._of: dict[int, int | tuple[int, ...]] = {}  # member Id → the index of its rules, in rule order
        self._size = 0
        self._shapes: dict[tuple[int, ...], tuple[tuple[int, ...], dict[int, int]]] = {}

    def declare(self, origin: Origin, lessons: list[int], members: list[int]) -> None:
        """A rule: every one of `members` completes every one of `lessons`."""
        key = tuple(lessons)
        shape = self._shapes.get(key)
        if shape is None:  # rules naming the same lessons (a cohort's: nearly all) share them
            counts: dict[int, int] = {}
            for lesson in lessons:
                counts[lesson] = counts.get(lesson, 0) + 1
            shape = self._shapes[key] = (tuple(counts), counts)
        unique, counts = shape
        index = len(self._rules)
        self._rules.append(_Rule(origin, (origin,), unique, counts, members))
        for member in members:
            before = self._of.get(member)
            if before is None:
                self._of[member] = index
                self._size += len(counts)
                continue
            earlier = (before,) if isinstance(before, int) else before
            self._size += sum(1 for x in counts if not any(x in self._rules[i].counts for i in earlier))
            self._of[member] = (*earlier, index)

    def _origins(self, member: int, lesson: int) -> tuple[Origin, ...] | None:
        rules = self._of.get(member)
        if rules is None:
            return None
        if isinstance(rules, int):
            rule = self._rules[rules]
            count = rule.counts.get(lesson, 0)
            if count == 0:
                return None
            return rule.once if count == 1 else (rule.origin,) * count
        found = tuple(self._rules[i].origin for i in rules for _ in range(self._rules[i].counts.get(lesson, 0)))
        return found or None

    def _pairs(self) -> Iterator[tuple[Pair, tuple[Origin, ...]]]:
        for index, rule in enumerate(self._rules):
            done: set[int] = set()  # members of several rules already taken in this one
            for member in rule.members:
                rules = self._of[member]
                if isinstance(rules, int):
                    for lesson in rule.lessons:
                        count = rule.counts[lesson]
                        yield (member, lesson), rule.once if count == 1 else (rule.origin,) * count
                    continue
                if member in done:
                    continue
                done.add(member)
                earlier = [self._rules[i].counts for i in rules if i < index]
                for lesson in rule.lessons:
                    if not any(lesson in counts for counts in earlier):
                        origins = self._origins(member, lesson)
                        assert origins is not None
                        yield (member, lesson), origins

    def runs(self) -> Iterator[tuple[Origin, int, tuple[int, ...]]]:
        """The pairs in iteration order, a run at a time: a rule's place, a member, and the lessons that rule is
        the first to declare for the member (that place is the first origin of each of those pairs). The planner
        reads millions of pairs so, without a key and a tuple of origins for each."""
        for index, rule in enumerate(self._rules):
            done: set[int] = set()  # as `_pairs`
            for member in rule.members:
                rules = self._of[member]
                if isinstance(rules, int):
                    yield rule.origin, member, rule.lessons
                    continue
                if member in done:
                    continue
                done.add(member)
                earlier = [self._rules[i].counts for i in rules if i < index]
                lessons = tuple(x for x in rule.lessons if not any(x in counts for counts in earlier))
                if lessons:
                    yield rule.origin, member, lessons

    def __getitem__(self, pair: Pair) -> tuple[Origin, ...]:
        found = self._origins(*pair)
        if found is None:
            raise KeyError(pair)
        return found

    def get(self, pair: Pair, default: Any = None) -> Any:
        found = self._origins(*pair)
        return default if found is None else found

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        return self._origins(pair[0], pair[1]) is not None

    def __iter__(self) -> Iterator[Pair]:
        return (pair for pair, _ in self._pairs())

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def keys(self) -> KeysView[Pair]:  # type: ignore[override]
        return KeysView(self)

    def values(self) -> ValuesView[tuple[Origin, ...]]:  # type: ignore[override]
        return _Values(self)

    def items(self) -> ItemsView[Pair, tuple[Origin, ...]]:  # type: ignore[override]
        return _Items(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, dict) and len(self) == len(other) and dict(self._pairs()) == dict(other.items())

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None

    def __repr__(self) -> str:
        return repr(dict(self._pairs()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self._pairs()),))

    def copy(self) -> dict[Pair, tuple[Origin, ...]]:
        """A plain dict of the same pairs (which can be changed)."""
        return dict(self._pairs())

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        # The dict underneath is empty: a write to it would be silently invisible to every read.
        raise TypeError("the desired pairs are read-only; take .copy() to change them")

    __setitem__ = __delitem__ = pop = popitem = setdefault = update = clear = __ior__ = _read_only


class _Items(ItemsView[Pair, tuple[Origin, ...]]):
    _mapping: DesiredPairs

    def __iter__(self) -> Iterator[tuple[Pair, tuple[Origin, ...]]]:
        return self._mapping._pairs()


class _Values(ValuesView[tuple[Origin, ...]]):
    _mapping: DesiredPairs

    def __iter__(self) -> Iterator[tuple[Origin, ...]]:
        return (origins for _, origins in self._mapping._pairs())


@dataclass
class ResolvedCompletions:
    spec: CompletionsSpec
    course: Course
    named_members: frozenset[int]  # by `members` or by `revoke`: read, and in reach
    desired: dict[Pair, tuple[Origin, ...]]
    revoked: dict[Pair, tuple[Origin, str | None]]
    member_origins: dict[int, Origin] = field(default_factory=dict)  # the first rule naming each member
    # Those named by `members` (None: all of `named_members`): in `authoritative` mode, what the spec does not declare
    # of theirs is deleted. A member named only to `revoke` a lesson loses that lesson, not the rest.
    declared_members: frozenset[int] | None = None

    @property
    def authority(self) -> frozenset[int]:
        """The members whose undeclared completions `authoritative` mode deletes."""
        return self.named_members if self.declared_members is None else self.declared_members


@dataclass
class ResolvedMigration:
    spec: MigrationSpec
    source: Course
    target: Course
    lesson_map: dict[int, int]  # source lesson Id → target lesson Id
    map_origins: dict[int, Origin] = field(default_factory=dict)  # source lesson Id → its lessons: entry


class SuspectTeam(NamedTuple):
    """A `team:` rule no member of its course is in, whose name is close to a team that members are in; for a rule
    of `members:`, its spec's marker and the lessons it declares (a revoke's declares none)."""

    origin: Origin
    course_id: int
    team: str
    near: str
    marker: str = ""
    lessons: frozenset[int] = frozenset()


@dataclass
class Resolution:
    completions: list[ResolvedCompletions] = field(default_factory=list)
    migrations: list[ResolvedMigration] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    suspect_teams: list[SuspectTeam] = field(default_factory=list)

    @property
    def course_ids(self) -> set[int]:
        ids = {r.course.id for r in self.completions}
        for m in self.migrations:
            ids |= {m.source.id, m.target.id}
        return ids


def _problem(origin: Origin, message: str) -> Problem:
    return Problem(origin.path, origin.line, origin.column, message)


class _Resolver:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.suspect_teams: list[SuspectTeam] = []
        self._lessons_found: dict[tuple[int, int | None, str | None], Lesson] = {}
        # By course, kind and lessons: a list of titles by its titles, others by each lesson's (Id, title).
        self._lesson_sets: dict[tuple[int, str, tuple[str, ...] | tuple[tuple[int | None, str | None], ...]],
                                list[Lesson]] = {}
        self._by_email: dict[str, list[int]] = defaultdict(list)
        for coworker in catalog.coworkers.values():
            self._by_email[coworker.email.strip().casefold()].append(coworker.id)
        self._enrolled = catalog.index().by_coworker  # `Catalog.enrolments_of`, the catalog being whole by now
        self.enrolling: dict[int, list[int]] = {}  # course → the sources of the set's migrations into it that enrol

    def fail(self, origin: Origin, message: str) -> None:
        self.problems.append(_problem(origin, message))

    def course(self, ref: Ref) -> Course | None:
        courses = self.catalog.courses
        if ref.id is not None:
            found = courses.get(ref.id)
            if found is None:
                self.fail(ref.origin, f"no course with Id {ref.id}")
            return found
        matches = [c for c in courses.values() if c.title.strip() == ref.title]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(str(c.id) for c in sorted(matches, key=lambda c: c.id))
            self.fail(ref.origin, f"course title {ref} is ambiguous (Ids {ids}); name it as {{id: N}}")
        else:
            self.fail(ref.origin, f"no course {ref}{near_miss(ref.title or '', (c.title for c in courses.values()))}")
        return None

    def lesson(self, ref: Ref, course: Course, by_id: str = "as {id: N}") -> Lesson | None:
        """The lesson `ref` names in `course`, or None (a problem said); `by_id`: how the place may name it by Id."""
        key = (course.id, ref.id, ref.title)
        found = self._lessons_found.get(key)
        if found is None:
            found = self._lesson(ref, course, by_id)
            if found is not None:  # a failure is reported at each place that names it
                self._lessons_found[key] = found
        return found

    def _lesson(self, ref: Ref, course: Course, by_id: str) -> Lesson | None:
        lessons = self.catalog.lessons_of(course.id)
        if ref.id is not None:
            found = next((x for x in lessons if x.id == ref.id), None)
            if found is None:
                where = self.catalog.lessons.get(ref.id)
                elsewhere = f" (it belongs to course {where.course_id})" if where else ""
                self.fail(ref.origin, f"no lesson with Id {ref.id} in {course.title!r}{elsewhere}")
            return found
        matches = [x for x in lessons if x.title.strip() == ref.title]
        if len(matches) == 1:
            return matches[0]
        if matches:
            ids = ", ".join(str(x.id) for x in matches)
            self.fail(ref.origin, f"lesson title {ref} is ambiguous in {course.title!r} (Ids {ids}); "
                                  f"name it {by_id}")
        else:
            hint = near_miss(ref.title or "", (x.title for x in lessons))
            self.fail(ref.origin, f"no lesson {ref} in {course.title!r}{hint}")
        return None

    def lessons(self, chosen: LessonSet, course: Course) -> list[Lesson]:
        """The lessons a rule names (not to be changed: a set every lesson of which was found is shared by the
        rules that name the same lessons, a cohort's 200,000 alike)."""
        every = self.catalog.lessons_of(course.id)
        if chosen.kind == "all":
            return every
        refs = chosen.lessons
        titles = refs.titles if isinstance(refs, TitleRefs) else None
        key = (course.id, chosen.kind, titles if titles is not None else tuple((ref.id, ref.title) for ref in refs))
        known = self._lesson_sets.get(key)
        if known is not None:
            return known
        if chosen.kind == "through":
            last = self.lesson(refs[0], course)
            if last is None:
                return []
            found = every[:every.index(last) + 1]
        else:
            if titles is not None:  # a title found before is found again without making its Ref
                done = self._lessons_found
                named = [done.get((course.id, None, title)) or self.lesson(refs[i], course)
                         for i, title in enumerate(titles)]
            else:
                named = [self.lesson(ref, course) for ref in refs]
            found = [x for x in named if x is not None]
            if len(found) < len(named):  # a failure is reported at each place that names it
                return found
        self._lesson_sets[key] = found
        return found

    def members(self, selector: MemberSelector, course: Course, *, enrolment_required: bool = True) -> list[Member]:
        origin = selector.origin
        if selector.by == "course_member_id":
            found = self.catalog.members.get(int(selector.value))
            if found is None or found.course_id != course.id:
                self.fail(origin, f"no enrolment with Id {selector.value} in {course.title!r}")
                return []
            return [found]
        if selector.by == "team":
            team = str(selector.value)
            enrolled = self.catalog.members_of(course.id)
            chosen = [m for m in enrolled if team in m.teams]
            if not chosen:
                # A warning: a rule may be written before its team has members. A name close to a team of the
                # course's members may be a typo, which an `owned` spec would pay for in deletes of that team's
                # records: the planner makes it an error if the plan deletes them (`plan.suspect_teams`).
                near = closest(team, {t for m in enrolled for t in m.teams})
                self.warnings.append(_problem(origin, f"no member of {course.title!r} is in team {team!r}"
                                                      + (f"; did you mean {near!r}?" if near else "")))
                if near is not None:
                    self.suspect_teams.append(SuspectTeam(origin, course.id, team, near))
            return chosen
        if selector.by == "coworker_id":
            coworker_id = int(selector.value)
            chosen = self.catalog.enrolments_of(course.id, coworker_id) or self.to_be_enrolled(course, [coworker_id])
            if not chosen and enrolment_required:
                absent = self.catalog.absent_coworkers.get(coworker_id)
                if absent is not None:
                    self.fail(origin, f"coworker {coworker_id} {absent}")
                else:
                    self.fail(origin, f"{selector} is not enrolled in {course.title!r}")
            return chosen
        email = str(selector.value).strip().casefold()
        coworker_ids = self._by_email.get(email, [])
        if not coworker_ids:
            self.fail(origin, f"no coworker with email {selector.value!r}{email_near_miss(email, self.catalog)}")
            return []
        by_coworker = self._enrolled
        chosen = [m for c in coworker_ids for m in by_coworker.get((course.id, c), ())]
        chosen = chosen or self.to_be_enrolled(course, coworker_ids)
        if len(coworker_ids) > 1:
            # Two coworkers can share an address (one may be deleted yet still listed): the one enrolled
            # in this course is meant when only one is; otherwise nobody can tell which.
            if len({m.coworker_id for m in chosen}) == 1:
                return chosen
            self.fail(origin, f"email {selector.value!r} is ambiguous: coworkers "
                              f"{', '.join(map(str, sorted(coworker_ids)))} share it"
                              f"{' and none is enrolled in ' + repr(course.title) if not chosen else ''}; "
                              "name the member by coworker_id")
            return []
        if not chosen and enrolment_required:
            self.fail(origin, f"{selector} is not enrolled in {course.title!r}")
        return chosen

    def to_be_enrolled(self, course: Course, coworker_ids: list[int]) -> list[Member]:
        """The member a migration of the set may enrol in `course` (PRODUCT: a member not enrolled is an error
        "unless a migration enrols"): a coworker enrolled in the source of a migration into it that enrols, as
        a member to be (its Id the coworker's, negative); the plan holds the migration to it."""
        sources = self.enrolling.get(course.id)
        if not sources:
            return []
        found = [c for c in coworker_ids if any(self._enrolled.get((source, c)) for source in sources)]
        coworkers = self.catalog.coworkers
        return [Member(-c, course.id, c, coworkers[c].full_name if c in coworkers else "") for c in found]


def email_near_miss(email: str, catalog: Catalog) -> str:
    """'; did you mean X?' only for an address of the space's coworkers that is one slip away: a wrong
    suggestion would name another person, so when in doubt there is none."""
    import difflib  # (imported only for a name that did not resolve)

    found = difflib.get_close_matches(email, {e.strip().casefold(): None for e in catalog.known_emails}, n=1,
                                      cutoff=0.88)
    return f"; did you mean {found[0]!r}?" if found else ""


@dataclass(frozen=True, slots=True)
class _Clash:
    """A revoked pair, for the check that no spec of its course declares it."""

    spec: int  # the revoking spec's place among the resolved
    pair: Pair
    origin: Origin  # the revoke entry's lessons
    what: str  # "<member> has '<lesson>'"

    def declared_at(self, declared: Origin) -> str:
        return f"{self.what} both declared ({declared}) and revoked; remove one of them"


def _course_of(catalog: Catalog, ref: Ref) -> Course | None:
    """The course `ref` names, when exactly one (without a word otherwise: `_Resolver.course` says it)."""
    if ref.id is not None:
        return catalog.courses.get(ref.id)
    matches = [c for c in catalog.courses.values() if c.title.strip() == ref.title]
    return matches[0] if len(matches) == 1 else None


def resolve(specs: SpecSet, catalog: Catalog) -> Resolution:
    """The desired state of every spec; raises SpecError naming every name that does not resolve."""
    resolver = _Resolver(catalog)
    for migration in specs.migrations:
        source, target = _course_of(catalog, migration.source_course), _course_of(catalog, migration.target_course)
        if migration.enroll and source is not None and target is not None:
            resolver.enrolling.setdefault(target.id, []).append(source.id)
    result = Resolution()
    clashes: list[_Clash] = []  # what each spec revokes and does not declare itself
    for spec in specs.completions:
        course = resolver.course(spec.course)
        if course is None:
            continue
        # Pair → the rules' places, held per rule (see DesiredPairs).
        desired = DesiredPairs()
        named: dict[int, Origin] = {}
        ids_of: dict[int, tuple[list[Lesson], list[int]]] = {}  # the Ids of a shared list of lessons, by identity
        for rule in spec.members:
            lessons = resolver.lessons(rule.completed, course)
            origin = rule.member.origin
            suspects = len(resolver.suspect_teams)
            members = [member.id for member in resolver.members(rule.member, course)]
            if len(resolver.suspect_teams) > suspects:  # (a team no one is in, close to one: what the rule gives)
                resolver.suspect_teams[-1] = resolver.suspect_teams[-1]._replace(
                    marker=spec.marker, lessons=frozenset(lesson.id for lesson in lessons))
            for member_id in members:
                named.setdefault(member_id, origin)
            known = ids_of.get(id(lessons))
            if known is None or known[0] is not lessons:
                known = ids_of[id(lessons)] = (lessons, [lesson.id for lesson in lessons])
            desired.declare(origin, known[1], members)
        revoked: dict[Pair, tuple[Origin, str | None]] = {}
        by_members = frozenset(named)
        for revocation in spec.revocations:
            lessons = resolver.lessons(revocation.lessons, course)
            for member in resolver.members(revocation.member, course):
                named.setdefault(member.id, revocation.member.origin)
                for lesson in lessons:
                    pair = (member.id, lesson.id)
                    clash = _Clash(len(result.completions), pair, revocation.lessons.origin,
                                   f"{member.full_name or revocation.member} has {lesson.title!r}")
                    if pair in desired:
                        resolver.fail(clash.origin, clash.declared_at(desired[pair][0]))
                    else:
                        clashes.append(clash)  # declared by another spec of the course? (below)
                    revoked.setdefault(pair, (revocation.member.origin, revocation.reason))
        result.completions.append(ResolvedCompletions(
            spec, course, frozenset(named), desired, revoked, named, by_members))
    for clash in clashes:  # a pair one spec declares and another revokes: each apply would undo the last
        revoking = result.completions[clash.spec]
        for other in result.completions:
            declared = other.desired.get(clash.pair) if other.course.id == revoking.course.id else None
            if declared is not None and other is not revoking:
                resolver.fail(clash.origin, clash.declared_at(declared[0]))
                break

    for migration in specs.migrations:
        source, target = resolver.course(migration.source_course), resolver.course(migration.target_course)
        if source is None or target is None:
            continue
        if source.id == target.id:
            resolver.fail(migration.target_course.origin, "a migration's from and to name the same course")
            continue
        mapping: dict[int, int] = {}
        origins: dict[int, Origin] = {}
        targets: dict[int, Ref] = {}
        for source_ref, target_ref in migration.lesson_map:
            from_lesson = resolver.lesson(source_ref, source, "by Id, in a list: "
                                                              "lessons: [{from: {id: N}, to: ...}]")
            to_lesson = resolver.lesson(target_ref, target)
            if from_lesson and to_lesson:
                # (the same lesson named twice in two ways, its title and its Id: the spec's check sees only words)
                if from_lesson.id in mapping:
                    resolver.fail(source_ref.origin, f"source lesson {source_ref} is {from_lesson.title!r}, named "
                                                     f"already at {origins[from_lesson.id]}")
                    continue
                earlier = targets.setdefault(to_lesson.id, target_ref)
                if earlier is not target_ref:
                    resolver.fail(target_ref.origin, f"target lesson {target_ref} is {to_lesson.title!r}, named "
                                                     f"already at {earlier.origin}")
                    continue
                mapping[from_lesson.id] = to_lesson.id
                origins[from_lesson.id] = source_ref.origin
        result.migrations.append(ResolvedMigration(migration, source, target, mapping, origins))

    _cross_checks(result, resolver)
    if resolver.problems:
        raise SpecError(resolver.problems)
    result.warnings = sorted(resolver.warnings)
    result.suspect_teams = resolver.suspect_teams
    return result


def _cross_checks(result: Resolution, resolver: _Resolver) -> None:
    by_course: dict[int, ResolvedCompletions] = {}
    for resolved in result.completions:
        other = by_course.setdefault(resolved.course.id, resolved)
        if other is not resolved and other.spec.mode != resolved.spec.mode:
            resolver.fail(resolved.spec.mode_origin,
                          f"course {resolved.course.title!r} is managed in mode {other.spec.mode!r} by "
                          f"{other.spec.name!r} ({other.spec.origin}) and {resolved.spec.mode!r} here; "
                          "one course takes one mode")
    for migration in result.migrations:
        manager = by_course.get(migration.target.id)
        if manager is not None and manager.spec.mode == "authoritative":
            resolver.fail(migration.spec.target_course.origin,
                          f"{migration.target.title!r} is managed authoritatively by {manager.spec.name!r} "
                          f"({manager.spec.origin}), which would delete what this migration creates")
    into = {m.target.id: m for m in result.migrations}
    for migration in result.migrations:
        feeder = into.get(migration.source.id)
        if feeder is not None and migration.spec.source_policy == "remove":
            resolver.fail(migration.spec.source_course.origin,
                          f"{migration.source.title!r} is the target of {feeder.spec.name!r} "
                          f"({feeder.spec.target_course.origin}) and a source this migration removes from: each "
                          "apply would carry progress into it and take it out again; migrate in two steps, or keep "
                          "the source")
    # A source lesson that a `source: remove` migration takes out once its own twin exists cannot also be carried
    # by another: the removal waits for one twin only, so a completion whose other twin failed would be lost.
    carried: dict[tuple[int, int], ResolvedMigration] = {}
    for migration in result.migrations:
        for lesson in migration.lesson_map:
            first = carried.setdefault((migration.source.id, lesson), migration)
            if first is migration or "remove" not in (first.spec.source_policy, migration.spec.source_policy):
                continue
            remover = first if first.spec.source_policy == "remove" else migration
            found = resolver.catalog.lessons.get(lesson)
            title = found.title if found is not None else str(lesson)
            resolver.fail(migration.map_origins.get(lesson, migration.spec.origin),
                          f"lesson {title!r} of {migration.source.title!r} is carried by {first.spec.name!r} "
                          f"({first.map_origins.get(lesson, first.spec.origin)}) and by {migration.spec.name!r}, and "
                          f"{remover.spec.name!r} removes it from the source (source: remove): a completion is "
                          "removed once one twin exists, so the other could lose it; carry each lesson with one "
                          "migration, or keep the source in both")
