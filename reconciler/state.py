"""The live state: the catalog names resolve against, and the completions a plan needs.

Requests are the scarce resource (about 120 a minute on the real service), so each fetch picks the
cheapest shape: an entity listed wholesale, or filtered per course, lesson, member or email. The
floor is one full page per 1000 records needed. Text filters match substrings and ignore case on the
server, so every text match is confirmed exactly here. A completions read that fails after its
retries leaves the state `partial`, and the planner then refuses to delete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from reconciler.client import PAGE_SIZE, NexudusClient, ceil_pages
from reconciler.errors import ApiError, UsageError
from reconciler.model import Catalog, Completion, Course, Coworker, Lesson, Member, SpecSet, split_teams
from reconciler.schema_check import near_miss

log = logging.getLogger(__name__)

COURSES = "/api/content/courses"
LESSONS = "/api/content/courselessons"
MEMBERS = "/api/content/coursemembers"
COWORKERS = "/api/spaces/coworkers"
COMPLETIONS = "/api/content/coursecompletedlessons"
FEW = 3  # up to this many filtered requests are made without first probing the wholesale size


def course_from(record: dict[str, Any]) -> Course:
    return Course(int(record["Id"]), str(record.get("Title") or ""))


def lesson_from(record: dict[str, Any]) -> Lesson:
    order = record.get("DisplayOrder")
    return Lesson(int(record["Id"]), int(record.get("CourseId") or 0), str(record.get("Title") or ""),
                  order if isinstance(order, int) else 0)


def member_from(record: dict[str, Any]) -> Member:
    return Member(int(record["Id"]), int(record.get("CourseId") or 0), int(record.get("CoworkerId") or 0),
                  str(record.get("CoworkerFullName") or ""), split_teams(record.get("CoworkerTeamNames")))


def coworker_from(record: dict[str, Any]) -> Coworker:
    return Coworker(int(record["Id"]), str(record.get("FullName") or ""), str(record.get("Email") or ""),
                    split_teams(record.get("TeamNames")))


def completion_from(record: dict[str, Any]) -> Completion:
    return Completion(
        id=int(record["Id"]), member_id=int(record.get("CourseMemberId") or 0),
        lesson_id=int(record.get("CourseLessonId") or 0), created_on=str(record.get("CreatedOn") or ""),
        updated_on=str(record.get("UpdatedOn") or ""), system_id=record.get("SystemId"),
        unique_id=record.get("UniqueId"), lesson_title=str(record.get("CourseLessonTitle") or ""),
        member_name=str(record.get("CourseMemberCoworkerFullName") or ""))


def _valid(records: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    return (r for r in records if isinstance(r.get("Id"), int))


class StateReader:
    """Reads what a spec set needs through one client, counting what it asked for."""

    def __init__(self, client: NexudusClient) -> None:
        self.client = client

    # --- the catalog -----------------------------------------------------------------------------

    def catalog(self, specs: SpecSet, *, all_courses: bool = False) -> Catalog:
        catalog = Catalog()
        for record in _valid(self.client.list_all(COURSES)):
            course = course_from(record)
            catalog.courses[course.id] = course
        wanted = set(catalog.courses) if all_courses else self._named_courses(specs, catalog)
        self._per_course(catalog, wanted, LESSONS, "CourseLesson_Course", lesson_from, catalog.lessons)
        self._per_course(catalog, wanted, MEMBERS, "CourseMember_Course", member_from, catalog.members)
        emails = {str(rule.value).casefold() for spec in specs.completions
                  for rule in [*(r.member for r in spec.members), *(r.member for r in spec.revocations)]
                  if rule.by == "email"}
        self._coworkers(catalog, emails)
        return catalog

    def _named_courses(self, specs: SpecSet, catalog: Catalog) -> set[int]:
        refs = [s.course for s in specs.completions]
        refs += [r for m in specs.migrations for r in (m.source_course, m.target_course)]
        wanted: set[int] = set()
        for ref in refs:
            if ref.id is not None:
                wanted.add(ref.id)
            else:
                wanted |= {c.id for c in catalog.courses.values() if c.title.strip() == ref.title}
        return wanted & set(catalog.courses)

    def _per_course(self, catalog: Catalog, courses: set[int], path: str, course_filter: str,
                    build: Any, into: dict[int, Any]) -> None:
        for record in self.records_of_courses(path, course_filter, courses, len(catalog.courses)):
            item = build(record)
            into[item.id] = item

    def records_of_courses(self, path: str, course_filter: str, courses: set[int],
                           all_courses: int) -> list[dict[str, Any]]:
        """Lessons or enrolments of `courses`: filtered per course, or listed wholesale for most courses."""
        if not courses:
            return []
        if len(courses) <= FEW or len(courses) < all_courses // 2:
            found = []
            for course_id in sorted(courses):
                found += [r for r in _valid(self.client.list_all(path, {course_filter: course_id}))
                          if r.get("CourseId") == course_id]  # confirm the filter
            return found
        return [r for r in _valid(self.client.list_all(path)) if r.get("CourseId") in courses]

    def snapshot(self, course_titles: Iterable[str] = ()) -> dict[str, list[dict[str, Any]]]:
        """The raw records of the named courses (all courses when none), as the API returned them."""
        courses = list(_valid(self.client.list_all(COURSES)))
        wanted_titles = [t.strip() for t in course_titles]
        if wanted_titles:
            chosen = [c for c in courses if str(c.get("Title") or "").strip() in wanted_titles]
            missing = set(wanted_titles) - {str(c.get("Title") or "").strip() for c in chosen}
            if missing:
                titles = [str(c.get("Title") or "") for c in courses]
                raise UsageError("; ".join(f"no course {t!r}{near_miss(t, titles)}" for t in sorted(missing)))
        else:
            chosen = courses
        ids = {int(c["Id"]) for c in chosen}
        lessons = self.records_of_courses(LESSONS, "CourseLesson_Course", ids, len(courses))
        members = self.records_of_courses(MEMBERS, "CourseMember_Course", ids, len(courses))
        coworker_ids = {m.get("CoworkerId") for m in members}
        coworkers = [c for c in _valid(self.client.list_all(COWORKERS)) if c["Id"] in coworker_ids] \
            if coworker_ids else []
        completions, partial = self.completion_records({int(x["Id"]) for x in lessons})
        if partial:
            raise ApiError("the snapshot would be incomplete: " + "; ".join(partial))
        return {"courses": chosen, "courselessons": lessons, "coursemembers": members, "coworkers": coworkers,
                "coursecompletedlessons": completions}

    def _coworkers(self, catalog: Catalog, emails: set[str]) -> None:
        """Coworkers for the emails named: filtered one by one for a few, listed wholesale for a cohort.

        Every coworker whose email matches is kept, so that two sharing an email show as ambiguous.
        """
        if not emails:
            return
        pending = set(emails)

        def keep(records: Iterable[dict[str, Any]]) -> None:
            for record in _valid(records):
                coworker = coworker_from(record)
                email = coworker.email.strip().casefold()
                if email in emails:  # exact, whatever the server's filter matched
                    catalog.coworkers[coworker.id] = coworker
                    pending.discard(email)

        if len(pending) > FEW:
            total, first = self.client.count(COWORKERS)
            keep(first)
            pages_left = ceil_pages(total) - 1
            if pages_left <= 0:
                return
            if len(pending) > pages_left or total <= PAGE_SIZE:
                keep(self.client.list_all(COWORKERS, start_page=2))
                return
        for email in sorted(pending):
            keep(self.client.list_all(COWORKERS, {"Coworker_Email": email}))

    # --- completions -----------------------------------------------------------------------------

    def completions(self, lesson_ids: set[int], named_members: set[int] | None = None,
                    markers: Iterable[str] = ()) -> tuple[list[Completion], list[str]]:
        """Every completion of `lesson_ids` (or, when cheaper, of `named_members` plus those carrying
        `markers`); the planner narrows this to its scope. Returns (completions, partial-read reasons)."""
        records, partial = self.completion_records(lesson_ids, named_members, markers)
        return [completion_from(r) for r in records], partial

    def completion_records(self, lesson_ids: set[int], named_members: set[int] | None = None,
                           markers: Iterable[str] = ()) -> tuple[list[dict[str, Any]], list[str]]:
        """The raw records behind `completions`, sorted by Id."""
        if not lesson_ids:
            return [], []
        markers = sorted(set(markers))
        by_member = None if named_members is None else len(named_members) + len(markers)
        partial: list[str] = []
        found: dict[int, dict[str, Any]] = {}

        def keep(records: Iterable[dict[str, Any]]) -> None:
            for record in _valid(records):
                if record.get("CourseLessonId") in lesson_ids:
                    found[record["Id"]] = record

        def filtered(pairs: list[tuple[str, Any]]) -> None:
            for name, value in pairs:
                try:
                    keep(self.client.list_all(COMPLETIONS, {name: value}))
                except ApiError as e:
                    partial.append(f"reading completions where {name}={value} failed: {e}")

        per_lesson: list[tuple[str, Any]] = [("CourseCompletedLesson_CourseLesson", i) for i in sorted(lesson_ids)]
        per_member: list[tuple[str, Any]] = [("CourseCompletedLesson_CourseMember", i)
                                             for i in sorted(named_members or ())]
        per_member += [("CourseCompletedLesson_SystemId", m) for m in markers]
        cheapest_filter = min(len(per_lesson), by_member if by_member is not None else len(per_lesson))
        if cheapest_filter <= FEW:
            filtered(per_lesson if len(per_lesson) <= (by_member or len(per_lesson)) else per_member)
            return [found[i] for i in sorted(found)], partial
        try:
            total, first = self.client.count(COMPLETIONS)
        except ApiError as e:
            filtered(per_lesson)
            partial.append(f"sizing the completions failed: {e}")
            return [found[i] for i in sorted(found)], partial
        in_scope = sum(1 for r in _valid(first) if r.get("CourseLessonId") in lesson_ids)
        share = in_scope / max(1, len(first))
        wholesale = ceil_pages(total)
        estimate_lessons = len(per_lesson) + int(share * total / PAGE_SIZE)
        log.debug("completions: %d in all; wholesale %d pages, per lesson ~%d, per member ~%s", total, wholesale,
                  estimate_lessons, by_member)
        if wholesale <= estimate_lessons and (by_member is None or wholesale <= by_member):
            keep(first)
            if total > PAGE_SIZE:
                try:
                    keep(self.client.list_all(COMPLETIONS, start_page=2))
                except ApiError as e:
                    partial.append(f"reading all completions failed: {e}")
        elif by_member is not None and by_member < estimate_lessons:
            filtered(per_member)
        else:
            filtered(per_lesson)
        return [found[i] for i in sorted(found)], partial
