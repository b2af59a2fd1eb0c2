"""Completions held as columns (`reconciler.columns`): read back exactly as the reader's values, and planned
(and drawn as a matrix) to the very same result as the same completions as a list."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.columns import CompletionColumns
from reconciler.matrix import matrix_section
from reconciler.model import (
    Catalog,
    Completion,
    CompletionsSpec,
    Course,
    Lesson,
    Member,
    MigrationSpec,
    Mode,
    Origin,
    Ref,
)
from reconciler.plan import Plan, plan_changes
from reconciler.resolve import Resolution, ResolvedCompletions, ResolvedMigration

ORIGIN = Origin("spec.yaml", 1)
# Three courses: each takes specs, 3 is a migration's target too; lesson 9 and member 99 are not in the catalog.
COURSE_LESSONS = {1: (1, 2, 3), 2: (4, 5), 3: (6, 7)}
COURSE_MEMBERS = {1: (10, 11, 12, 13), 2: (20, 21, 22), 3: (30, 31)}
LESSONS = (1, 2, 3, 4, 5, 6, 7, 9)
MEMBERS = (10, 11, 12, 13, 20, 21, 22, 30, 31, 99)
SPECS = ("a", "b", "c")
MARKERS = (None, "reconciler:a", "reconciler:b", "reconciler:c", "reconciler:m", "reconciler:a3", "reconciler:b3",
           "someone else")
STAMPS = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00.5Z", "", "not a date")


def catalog() -> Catalog:
    result = Catalog(courses={c: Course(c, f"Course {c}") for c in COURSE_LESSONS})
    for course, lessons in COURSE_LESSONS.items():
        for order, lesson in enumerate(lessons):
            result.lessons[lesson] = Lesson(lesson, course, f"Lesson {lesson}" if lesson != 2 else "", 3 - order)
    for course, members in COURSE_MEMBERS.items():
        for member in members:
            # coworkers 100..: members 10 and 30, 11 and 31 are one coworker in courses 1 and 3
            coworker = 100 + member % 10 if course != 2 else 200 + member
            result.members[member] = Member(member, course, coworker, f"Name {member}" if member != 13 else "")
    return result


def maps(found: Catalog) -> tuple[dict[int, str], dict[int, str]]:
    return ({x.id: x.title for x in found.lessons.values()}, {m.id: m.full_name for m in found.members.values()})


def compact(record: dict[str, Any], titles: dict[int, str], names: dict[int, str]) -> Completion:
    """What the reader makes of a raw record (`StateReader.completions`)."""
    lesson, member = record["CourseLessonId"], record["CourseMemberId"]
    return Completion(record["Id"], member, lesson, record["CreatedOn"], record["UpdatedOn"], record.get("SystemId"),
                      record.get("UniqueId"), titles.get(lesson) or str(record.get("CourseLessonTitle") or ""),
                      names.get(member) or str(record.get("CourseMemberCoworkerFullName") or ""))


unique_ids = st.one_of(st.none(), st.uuids().map(str), st.uuids().map(lambda u: str(u).upper()),
                       st.integers(0, 10**20).map(lambda n: f"u{n}"), st.text(max_size=8),
                       st.sampled_from([" 1", "+" + "0" * 31, "0" * 8 + "-" * 4 + "0" * 24]))


# Mostly a member and a lesson of one course (so that pairs repeat and migrations find their twins), else any.
pairs = st.one_of(st.sampled_from([(m, x) for c in COURSE_LESSONS for m in COURSE_MEMBERS[c]
                                   for x in COURSE_LESSONS[c]]),
                  st.tuples(st.sampled_from(MEMBERS), st.sampled_from(LESSONS)))


@st.composite
def raw_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    rows = draw(st.lists(st.tuples(pairs, st.sampled_from(MARKERS),
                                   st.sampled_from(STAMPS), st.sampled_from(STAMPS), unique_ids,
                                   st.sampled_from([None, "", "Own title", "Other title"]),
                                   st.sampled_from([None, "", "Own name"]), st.integers(1, 400)),
                         max_size=40))
    return [{"Id": record_id, "CourseMemberId": m, "CourseLessonId": x, "SystemId": marker, "CreatedOn": created,
             "UpdatedOn": updated, "UniqueId": uid, "CourseLessonTitle": title, "CourseMemberCoworkerFullName": name}
            for (m, x), marker, created, updated, uid, title, name, record_id in rows]


@st.composite
def resolution(draw: st.DrawFn) -> Resolution:
    completions = []
    for course in (1, 2, 3):  # (3: a migration's target, whose owned spec's records may be its twins)
        mode: Mode = draw(st.sampled_from(["additive", "owned", "authoritative"]))
        for name in draw(st.lists(st.sampled_from(SPECS), unique=True, max_size=2)):
            members, lessons = COURSE_MEMBERS[course] + (99,), COURSE_LESSONS[course] + (9,)
            named = draw(st.sets(st.sampled_from(members)))
            desired: dict[tuple[int, int], tuple[Origin, ...]]
            revoked: dict[tuple[int, int], tuple[Origin, str | None]]
            desired = {(m, x): (Origin(f"{name}.yaml", m),) for m in named
                       for x in draw(st.sets(st.sampled_from(lessons)))}
            revocable = [(m, x) for m in named for x in lessons if (m, x) not in desired]
            revoked = {pair: (Origin(f"{name}.yaml", 50), "why")
                       for pair in draw(st.sets(st.sampled_from(revocable)))} if revocable else {}
            origins = {m: Origin(f"{name}.yaml", 10 + m) for m in named if draw(st.booleans())}
            spec = CompletionsSpec(f"{name}{course}" if course != 1 else name, ORIGIN,
                                   Ref(ORIGIN, title=f"Course {course}"), mode, ORIGIN)
            completions.append(ResolvedCompletions(spec, Course(course, f"Course {course}"), frozenset(named),
                                                   desired, revoked, origins))
    migrations = []
    if draw(st.booleans()):
        lesson_map = {source: target for source, target in ((1, 6), (3, 7), (2, 7)) if draw(st.booleans())}
        migration = MigrationSpec("m", ORIGIN, Ref(ORIGIN, title="Course 1"), Ref(ORIGIN, title="Course 3"),
                             (), enroll=draw(st.booleans()), source_policy=draw(st.sampled_from(["keep", "remove"])),
                             strict=draw(st.booleans()))
        migrations.append(ResolvedMigration(migration, Course(1, "Course 1"), Course(3, "Course 3"), lesson_map,
                                            {1: Origin("m.yaml", 4)}))
    return Resolution(completions=completions, migrations=migrations)


def same_plan(left: Plan, right: Plan) -> None:
    assert left.actions == right.actions
    assert [a.sort_key for a in left.actions] == [a.sort_key for a in right.actions]
    assert (left.unchanged, left.existing_in_scope) == (right.unchanged, right.existing_in_scope)
    assert left.drift == right.drift
    assert left.warnings == right.warnings
    assert left.errors == right.errors
    assert left.partial == right.partial


@settings(max_examples=400, deadline=None)
@given(raw_records(), st.booleans())
def test_columns_read_back_as_the_reader_makes_each_record(records: list[dict[str, Any]], with_catalog: bool) -> None:
    titles, names = maps(catalog()) if with_catalog else ({}, {})
    columns = CompletionColumns(titles, names)
    assert [columns.add(record) for record in records] == list(range(len(records)))
    expected = [compact(record, titles, names) for record in records]
    assert list(columns) == expected and len(columns) == len(expected)
    assert columns == expected and expected == columns
    assert [columns[i] for i in range(-len(records), 0)] == expected
    assert columns[1:5] == expected[1:5]
    rows = list(range(len(records)))[::-2]
    taken = columns.take(rows)
    assert list(taken) == [expected[i] for i in rows]
    assert columns.take(range(len(records))) is columns
    assert list(CompletionColumns.of(expected)) == expected  # titles and names kept as made


def test_a_read_of_distinct_stamps_is_packed_and_reads_back() -> None:
    records = [{"Id": i, "CourseMemberId": i % 100, "CourseLessonId": i % 7,
                "CreatedOn": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i // 60 % 60:02d}Z",
                "UpdatedOn": f"2026-01-01T00:00:00.{i:07d}Z" if i % 3 else None,
                "SystemId": None if i % 2 else "reconciler:a", "UniqueId": str(uuid.UUID(int=i * 7919))}
               for i in range(10_000)]
    columns = CompletionColumns()
    for record in records:
        columns.add(record)
    assert list(columns) == [compact(record, {}, {}) for record in records]
    assert columns.nbytes() / len(columns) <= 60


@settings(max_examples=800, deadline=None)
@given(resolution(), raw_records())
def test_planning_from_columns_gives_the_same_plan_as_from_completions(
        resolved: Resolution, records: list[dict[str, Any]]) -> None:
    found = catalog()
    columns = CompletionColumns(*maps(found))
    for record in records:
        columns.add(record)
    as_list = list(columns)
    same_plan(plan_changes(resolved, columns, found), plan_changes(resolved, as_list, found))

    # And the matrix section (for every course, every member or the named ones).
    plan = plan_changes(resolved, as_list, found)
    for members in (None, {10, 12, 99}):
        assert (matrix_section(found, [1, 2, 3, 4], columns, plan.actions, members)
                == matrix_section(found, [1, 2, 3, 4], as_list, plan.actions, members))


def test_columns_taken_in_id_order_plan_as_the_list() -> None:
    """As the reader keeps them: the last read of an Id, in Id order."""
    found = catalog()
    columns = CompletionColumns(*maps(found))
    rows = [columns.add({"Id": i, "CourseMemberId": 10 + i % 3, "CourseLessonId": 1 + i % 2, "SystemId": "reconciler:a",
                         "CreatedOn": STAMPS[i % 2], "UpdatedOn": STAMPS[0]}) for i in (5, 3, 9, 3, 4, 8, 1)]
    kept = dict(zip((5, 3, 9, 3, 4, 8, 1), rows, strict=True))
    taken = columns.take([kept[i] for i in sorted(kept)])
    assert [c.id for c in taken] == [1, 3, 4, 5, 8, 9]
    spec = CompletionsSpec("a", ORIGIN, Ref(ORIGIN, title="Course 1"), "owned", ORIGIN)
    resolved = Resolution([ResolvedCompletions(spec, Course(1, "Course 1"), frozenset({10}), {(10, 1): (ORIGIN,)},
                                               {})])
    plan = plan_changes(resolved, taken, found)
    same_plan(plan, plan_changes(resolved, list(taken), found))
    assert [(a.kind, a.member_id, a.reason, a.record.id if a.record else None) for a in plan.actions] == [
        ("create", 10, "declared", None), ("delete", 10, "orphaned", 3), ("delete", 10, "orphaned", 9),
        ("delete", 11, "orphaned", 1), ("delete", 11, "orphaned", 4), ("delete", 12, "orphaned", 5),
        ("delete", 12, "orphaned", 8)]
    assert (plan.unchanged, plan.existing_in_scope) == (0, 6)
