"""The planner's, the matrix's and the JSON writer's fast paths give exactly what the long ways give: a spec's
desired pairs read a run at a time (`DesiredPairs.runs`, `Change.like`), counts made in C when no pair has
several records, the matrix of one course marked in C, and matrix rows encoded by one encoder."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.columns import CompletionColumns
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.matrix import matrix_section
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Mode, Origin, Ref
from reconciler.plan import Change, Plan, plan_changes
from reconciler.render import Labels, format_json, plan_dict
from reconciler.resolve import DesiredPairs, Resolution, ResolvedCompletions

ORIGIN = Origin("spec.yaml", 1)
COURSE_LESSONS = {1: (1, 2, 3, 4), 2: (5, 6)}
COURSE_MEMBERS = {1: (10, 11, 12, 13), 2: (20, 21)}
MARKERS = (None, "reconciler:a", "reconciler:b", "someone else")

rules = st.lists(st.tuples(st.integers(1, 9), st.lists(st.sampled_from((1, 2, 3, 4, 9)), max_size=5),
                           st.lists(st.sampled_from((10, 11, 12, 13, 99)), max_size=5)), max_size=4)


def catalog() -> Catalog:
    found = Catalog(courses={c: Course(c, f"Course {c}") for c in COURSE_LESSONS})
    for course, lessons in COURSE_LESSONS.items():
        for order, lesson in enumerate(lessons):
            found.lessons[lesson] = Lesson(lesson, course, f"Lesson {lesson}", 4 - order)
    for course, members in COURSE_MEMBERS.items():
        for member in members:
            found.members[member] = Member(member, course, 100 + member, f"Name {member}", ("Team",))
    return found


def declared(drawn: list[tuple[int, list[int], list[int]]]) -> DesiredPairs:
    desired = DesiredPairs()
    for line, lessons, members in drawn:
        desired.declare(Origin("spec.yaml", line), lessons, members)
    return desired


@settings(max_examples=300, deadline=None)
@given(rules)
def test_runs_are_the_pairs_in_order_each_with_its_first_origin(drawn: list[tuple[int, list[int], list[int]]]
                                                                ) -> None:
    desired = declared(drawn)
    from_runs = [((member, lesson), origin) for origin, member, run in desired.runs() for lesson in run]
    assert from_runs == [(pair, origins[0]) for pair, origins in desired.items()]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[Resolution, list[dict[str, Any]]]:
    """One spec for course 1 with lean desired pairs (the fast path), maybe another for course 2 (so that course
    1 is read from some rows, not all); records with or without duplicates, some out of any course."""
    mode: Mode = draw(st.sampled_from(["additive", "owned", "authoritative"]))
    desired = declared(draw(rules))
    named = frozenset(member for member, _ in desired) | draw(st.sets(st.sampled_from((10, 11, 12, 13))))
    revocable = [(m, x) for m in named for x in (1, 2, 3) if (m, x) not in desired]
    revoked: dict[tuple[int, int], tuple[Origin, str | None]] = {}
    if draw(st.booleans()) and revocable:
        revoked = {pair: (Origin("spec.yaml", 50), "why") for pair in draw(st.sets(st.sampled_from(revocable)))}
    completions = [ResolvedCompletions(CompletionsSpec("a", ORIGIN, Ref(ORIGIN, title="Course 1"), mode, ORIGIN),
                                       Course(1, "Course 1"), named, desired, revoked)]
    if draw(st.booleans()):
        other = DesiredPairs()
        other.declare(Origin("b.yaml", 2), [5], [20])
        completions.append(ResolvedCompletions(
            CompletionsSpec("b", ORIGIN, Ref(ORIGIN, title="Course 2"), "owned", ORIGIN), Course(2, "Course 2"),
            frozenset({20}), other, {}))
    members = (10, 11, 12, 13, 20, 21, 99)
    lessons = (1, 2, 3, 4, 5, 6, 9) if len(completions) > 1 else (1, 2, 3, 4)
    unique = draw(st.booleans())  # no pair with several records: counted in C
    pairs = draw(st.lists(st.tuples(st.sampled_from(members), st.sampled_from(lessons)), max_size=40, unique=unique))
    records = [{"Id": 1000 - i, "CourseMemberId": m, "CourseLessonId": x, "SystemId": draw(st.sampled_from(MARKERS)),
                "CreatedOn": f"2026-01-0{1 + i % 3}T00:00:00Z", "UpdatedOn": "2026-01-01T00:00:00Z",
                "UniqueId": None} for i, (m, x) in enumerate(pairs)]
    return Resolution(completions=completions), records


def same_plan(left: Plan, right: Plan) -> None:
    assert left.actions == right.actions  # every field of each change
    assert [a.sort_key for a in left.actions] == [a.sort_key for a in right.actions]
    assert (left.unchanged, left.existing_in_scope, left.drift, left.warnings) == \
        (right.unchanged, right.existing_in_scope, right.drift, right.warnings)


@settings(max_examples=500, deadline=None)
@given(worlds())
def test_planning_lean_desired_pairs_from_columns_is_the_long_way(world: tuple[Resolution, list[dict[str, Any]]]
                                                                  ) -> None:
    resolution, records = world
    found = catalog()
    columns = CompletionColumns({x.id: x.title for x in found.lessons.values()},
                                {m.id: m.full_name for m in found.members.values()})
    for record in records:
        columns.add(record)
    as_list: list[Completion] = list(columns)
    plain = Resolution(completions=[ResolvedCompletions(r.spec, r.course, r.named_members, dict(r.desired.items()),
                                                        r.revoked) for r in resolution.completions])
    fast = plan_changes(resolution, columns, found)
    same_plan(fast, plan_changes(resolution, as_list, found))
    same_plan(fast, plan_changes(plain, columns, found))  # the desired pairs as a plain dict: the long way
    for courses in ([1], [1, 2]):  # one course: its cells marked in C
        for members in (None, {10, 12, 99}):
            assert (matrix_section(found, courses, columns, fast.actions, members)
                    == matrix_section(found, courses, as_list, fast.actions, members))


def test_a_change_like_another_is_the_change_made_in_full() -> None:
    made = Change("create", 1, 10, 2, "a", "declared", ORIGIN, system_id="reconciler:a")
    like = Change("create", 1, 0, 0, "a", "declared", system_id="reconciler:a").like(10, 2, ORIGIN)
    assert like == made and hash(like) == hash(made) and repr(like) == repr(made)


def test_matrix_rows_are_written_as_json_dumps_writes_each() -> None:
    rows: list[Any] = [{"id": 1, "coworker_id": None, "name": "B\u00f8 \u2603 \"q\"\n", "teams": ["T\u00e9am", "x"],
                        "kept": "0101"},
                       {"id": 2, "coworker_id": 3, "name": "", "teams": [], "kept": "", "extra": [1.5, True, None]},
                       "a string", 7, [1, {"a": "b"}], {"\u00e9": 1e100, "n": -0.0}]
    course = {"course": {"id": 1, "title": "C"}, "lessons": [], "enrolled": 2, "members": rows}
    doc = plan_dict(Plan(), Labels({}, {}, {}), target="t", spec_digest="d", limits=DOCUMENTED_LIMITS)
    doc["matrix"] = [course, {"course": {"id": 2}, "members": []}]
    text = format_json(doc)
    assert json.loads(text)["matrix"] == json.loads(json.dumps(doc["matrix"]))
    for row in rows:
        assert "\n      " + json.dumps(row, ensure_ascii=False) in text


def test_creates_made_in_order_or_not_plan_as_the_long_way() -> None:
    """Members in Id order, each rule's lessons in DisplayOrder (4, 3, 2, 1 here): the creates are made in the
    plan's order and not sorted again; any other order is sorted. Both as the plain dict of the same pairs."""
    found = catalog()
    records = [{"Id": i, "CourseMemberId": m, "CourseLessonId": x, "SystemId": "reconciler:a",
                "CreatedOn": "2026-01-01T00:00:00Z", "UpdatedOn": "2026-01-01T00:00:00Z", "UniqueId": None}
               for i, (m, x) in enumerate([(11, 3), (10, 1), (13, 4), (12, 2), (11, 2)])]
    columns = CompletionColumns()
    for record in records:
        columns.add(record)
    for drawn in ([(1, [4, 3, 2, 1], [10, 11]), (2, [4, 2], [12, 13])], [(1, [1, 2, 3, 4], [10, 11])],
                  [(1, [4, 3], [11, 10])], [(1, [4, 3], [10, 11]), (2, [2], [10])]):
        desired = declared(drawn)
        spec = CompletionsSpec("a", ORIGIN, Ref(ORIGIN, title="Course 1"), "owned", ORIGIN)
        lean = Resolution([ResolvedCompletions(spec, Course(1, "Course 1"), frozenset({10, 11, 12, 13}), desired, {})])
        plain = Resolution([ResolvedCompletions(spec, Course(1, "Course 1"), frozenset({10, 11, 12, 13}),
                                                dict(desired.items()), {})])
        fast = plan_changes(lean, columns, found)
        same_plan(fast, plan_changes(plain, columns, found))
        same_plan(fast, plan_changes(lean, list(columns), found))
        assert [(a.member_id, a.lesson_id) for a in fast.actions if a.kind == "create"] == sorted(
            ((a.member_id, a.lesson_id) for a in fast.actions if a.kind == "create"),
            key=lambda pair: (pair[0], -pair[1]))
