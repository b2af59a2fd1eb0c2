"""Names → Ids: resolves a spec set against the live catalog into the desired state the planner takes.

Matching is exact: titles after trimming, emails without regard to case. The API's substring filters are
never trusted for this (`Onboarding` must not match `Onboarding 2026`).
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from dataclasses import dataclass, field

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
)
from reconciler.schema_check import near_miss

Pair = tuple[int, int]  # (CourseMemberId, CourseLessonId)


@dataclass
class ResolvedCompletions:
    spec: CompletionsSpec
    course: Course
    named_members: frozenset[int]
    desired: dict[Pair, tuple[Origin, ...]]
    revoked: dict[Pair, tuple[Origin, str | None]]
    member_origins: dict[int, Origin] = field(default_factory=dict)  # the first rule naming each member


@dataclass
class ResolvedMigration:
    spec: MigrationSpec
    source: Course
    target: Course
    lesson_map: dict[int, int]  # source lesson Id → target lesson Id
    map_origins: dict[int, Origin] = field(default_factory=dict)  # source lesson Id → its lessons: entry


@dataclass
class Resolution:
    completions: list[ResolvedCompletions] = field(default_factory=list)
    migrations: list[ResolvedMigration] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

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
        self._lessons_found: dict[tuple[int, int | None, str | None], Lesson] = {}
        self._by_email: dict[str, list[int]] = defaultdict(list)
        for coworker in catalog.coworkers.values():
            self._by_email[coworker.email.strip().casefold()].append(coworker.id)

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

    def lesson(self, ref: Ref, course: Course) -> Lesson | None:
        key = (course.id, ref.id, ref.title)
        found = self._lessons_found.get(key)
        if found is None:
            found = self._lesson(ref, course)
            if found is not None:  # a failure is reported at each place that names it
                self._lessons_found[key] = found
        return found

    def _lesson(self, ref: Ref, course: Course) -> Lesson | None:
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
                                  "name it as {id: N}")
        else:
            hint = near_miss(ref.title or "", (x.title for x in lessons))
            self.fail(ref.origin, f"no lesson {ref} in {course.title!r}{hint}")
        return None

    def lessons(self, chosen: LessonSet, course: Course) -> list[Lesson]:
        every = self.catalog.lessons_of(course.id)
        if chosen.kind == "all":
            return every
        if chosen.kind == "through":
            last = self.lesson(chosen.lessons[0], course)
            if last is None:
                return []
            return every[:every.index(last) + 1]
        found = (self.lesson(ref, course) for ref in chosen.lessons)
        return [x for x in found if x is not None]

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
                teams = {t for m in enrolled for t in m.teams}
                self.warnings.append(_problem(origin, f"no member of {course.title!r} is in team {team!r}"
                                                      f"{near_miss(team, teams)}"))
            return chosen
        if selector.by == "coworker_id":
            coworker_id = int(selector.value)
            chosen = self.catalog.enrolments_of(course.id, coworker_id)
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
        chosen = [m for c in coworker_ids for m in self.catalog.enrolments_of(course.id, c)]
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


def email_near_miss(email: str, catalog: Catalog) -> str:
    """'; did you mean X?' only for an address of the space's coworkers that is one slip away: a wrong
    suggestion would name another person, so when in doubt there is none."""
    found = difflib.get_close_matches(email, {e.strip().casefold(): None for e in catalog.known_emails}, n=1,
                                      cutoff=0.88)
    return f"; did you mean {found[0]!r}?" if found else ""


def resolve(specs: SpecSet, catalog: Catalog) -> Resolution:
    """The desired state of every spec; raises SpecError naming every name that does not resolve."""
    resolver = _Resolver(catalog)
    result = Resolution()
    for spec in specs.completions:
        course = resolver.course(spec.course)
        if course is None:
            continue
        # Pair → the rules' places: one shared tuple per rule (a spec of 200,000 members declares millions of
        # pairs, nearly all named once), extended only where rules overlap.
        desired: dict[Pair, tuple[Origin, ...]] = {}
        named: dict[int, Origin] = {}
        for rule in spec.members:
            lessons = resolver.lessons(rule.completed, course)
            origin = rule.member.origin
            once = (origin,)
            for member in resolver.members(rule.member, course):
                named.setdefault(member.id, origin)
                for lesson in lessons:
                    pair = (member.id, lesson.id)
                    before = desired.get(pair)
                    desired[pair] = once if before is None else (*before, origin)
        revoked: dict[Pair, tuple[Origin, str | None]] = {}
        for revocation in spec.revocations:
            lessons = resolver.lessons(revocation.lessons, course)
            for member in resolver.members(revocation.member, course):
                named.setdefault(member.id, revocation.member.origin)
                for lesson in lessons:
                    pair = (member.id, lesson.id)
                    if pair in desired:
                        resolver.fail(revocation.lessons.origin,
                                      f"{member.full_name or revocation.member} has {lesson.title!r} both declared "
                                      f"({desired[pair][0]}) and revoked; remove one of them")
                    revoked.setdefault(pair, (revocation.member.origin, revocation.reason))
        result.completions.append(ResolvedCompletions(
            spec, course, frozenset(named), desired, revoked, named))

    for migration in specs.migrations:
        source, target = resolver.course(migration.source_course), resolver.course(migration.target_course)
        if source is None or target is None:
            continue
        if source.id == target.id:
            resolver.fail(migration.target_course.origin, "a migration's from and to name the same course")
            continue
        mapping: dict[int, int] = {}
        origins: dict[int, Origin] = {}
        for source_ref, target_ref in migration.lesson_map:
            from_lesson, to_lesson = resolver.lesson(source_ref, source), resolver.lesson(target_ref, target)
            if from_lesson and to_lesson:
                mapping[from_lesson.id] = to_lesson.id
                origins[from_lesson.id] = source_ref.origin
        result.migrations.append(ResolvedMigration(migration, source, target, mapping, origins))

    _cross_checks(result, resolver)
    if resolver.problems:
        raise SpecError(resolver.problems)
    result.warnings = sorted(resolver.warnings)
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
