"""The planner's lean records (issue 17): a change keeps its rarely-set fields in one slot, records are held
per lesson rather than per pair, and a saved plan read back shares the names its actions repeat. None of it
may change what a plan says."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from reconciler.actions import Create, Delete
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.errors import PlanFileError
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Mode, Origin, Ref
from reconciler.plan import Change, plan_changes
from reconciler.planning import load_plan, save_plan
from reconciler.render import Labels, plan_dict, typed_action
from reconciler.resolve import Resolution, ResolvedCompletions

ORIGIN = Origin("spec.yaml", 3)


def catalog() -> Catalog:
    result = Catalog(courses={1: Course(1, "Course")})
    for lesson, order in ((21, 2), (22, 1), (23, 3)):  # display order differs from Id order
        result.lessons[lesson] = Lesson(lesson, 1, f"Lesson {lesson}", order)
    for member in (10, 11, 12):
        result.members[member] = Member(member, 1, member + 100, f"Member {member}")
    return result


def resolved(name: str, mode: Mode, desired: dict[tuple[int, int], tuple[Origin, ...]],
             named: frozenset[int] = frozenset({10, 11, 12})) -> ResolvedCompletions:
    spec = CompletionsSpec(name, ORIGIN, Ref(ORIGIN, title="Course"), mode, ORIGIN)
    return ResolvedCompletions(spec, Course(1, "Course"), named, desired, {})


def test_undeletable_duplicates_are_reported_in_the_order_they_were_read() -> None:
    """Records are grouped per lesson, but drift lists the pairs in the order the read met them."""
    current = [Completion(9, 12, 23, "2026-01-01", "2026-01-01", lesson_title="Three"),
               Completion(3, 10, 21, "2026-01-01", "2026-01-01", lesson_title="One"),
               Completion(5, 12, 23, "2026-01-02", "2026-01-02", lesson_title="Three"),
               Completion(4, 10, 21, "2026-01-02", "2026-01-02", lesson_title="One")]
    spec = resolved("a", "additive", {(12, 23): (ORIGIN,), (10, 21): (ORIGIN,)})
    plan = plan_changes(Resolution([spec]), current, catalog())
    assert plan.actions == []
    assert plan.drift == ["duplicate completion #5 of lesson Three for 12 (kept #9); mode 'additive' may not delete it",
                          "duplicate completion #4 of lesson One for 10 (kept #3); mode 'additive' may not delete it"]
    assert (plan.unchanged, plan.existing_in_scope) == (2, 4)


def test_a_pair_two_specs_want_is_created_once_for_the_first() -> None:
    first = resolved("first", "owned", {(10, 21): (ORIGIN,), (11, 22): (ORIGIN,)})
    second = resolved("second", "owned", {(10, 21): (Origin("other.yaml", 9),), (12, 23): (ORIGIN,)})
    current = [Completion(7, 11, 22, "2026-01-01", "2026-01-01", "reconciler:first"),
               Completion(8, 12, 21, "2026-01-01", "2026-01-01", "reconciler:second")]
    plan = plan_changes(Resolution([first, second]), current, catalog())
    assert [(a.kind, a.member_id, a.lesson_id, a.spec, a.system_id, a.origin) for a in plan.actions] == [
        ("create", 10, 21, "first", "reconciler:first", ORIGIN),
        ("create", 12, 23, "second", "reconciler:second", ORIGIN),
        ("delete", 12, 21, "second", None, ORIGIN),
    ]
    assert plan.actions[2].record == current[1]
    assert (plan.unchanged, plan.existing_in_scope) == (1, 2)


def test_actions_come_in_member_then_lesson_display_order() -> None:
    spec = resolved("a", "authoritative", {(11, 21): (ORIGIN,), (11, 22): (ORIGIN,), (10, 23): (ORIGIN,)})
    current = [Completion(5, 11, 23, "2026-01-01", "2026-01-01"), Completion(6, 10, 22, "2026-01-01", "2026-01-01")]
    plan = plan_changes(Resolution([spec]), current, catalog())
    assert [(a.member_id, a.kind, a.lesson_id) for a in plan.actions] == [
        (10, "create", 23), (10, "delete", 22), (11, "create", 22), (11, "create", 21), (11, "delete", 23)]


def test_a_change_is_a_value_whatever_it_carries() -> None:
    create = Change("create", 1, 10, 21, "a", "declared", ORIGIN, system_id="reconciler:a")
    assert (create.record, create.note, create.coworker_id, create.sort_key, create.name, create.twin) == \
        (None, None, None, (), None, None)
    assert create == Change("create", 1, 10, 21, "a", "declared", ORIGIN, system_id="reconciler:a")
    assert hash(create) == hash(Change("create", 1, 10, 21, "a", "declared", ORIGIN, system_id="reconciler:a"))
    assert create != Change("create", 1, 10, 21, "a", "declared", ORIGIN, system_id="reconciler:b")
    assert create.pair == (10, 21)
    enrol = Change("enroll", 2, 0, 0, "m", "migrated", None, coworker_id=7, name="New", sort_key=(2, 7, 0))
    assert (enrol.coworker_id, enrol.name, enrol.sort_key, enrol.record) == (7, "New", (2, 7, 0), None)
    assert enrol != Change("enroll", 2, 0, 0, "m", "migrated", None, coworker_id=7, name="Old", sort_key=(2, 7, 0))
    assert "coworker_id=7" in repr(enrol) and "name='New'" in repr(enrol)
    assert len({create, enrol, Change("create", 1, 10, 21, "a", "declared", ORIGIN, system_id="reconciler:a")}) == 2


def saved(tmp_path: Path) -> tuple[Path, list[Change], Labels]:
    spec = resolved("a", "owned", {(m, x): (ORIGIN,) for m in (10, 11, 12) for x in (21, 22)})
    current = [Completion(5, 12, 23, "2026-01-01", "2026-01-01", "reconciler:a", "u5", "Lesson 23", "Member 12")]
    found = catalog()
    plan = plan_changes(Resolution([spec]), current, found)
    labels = Labels.from_catalog(found)
    path = tmp_path / "plan.json"
    save_plan(plan_dict(plan, labels, target="t", spec_digest="d", limits=DOCUMENTED_LIMITS, lazy=True), path)
    return path, plan.actions, labels


def test_a_saved_plan_is_let_go_once_written_not_left_to_the_collector(tmp_path: Path) -> None:
    """Saving leaves no cycle behind (the digest, taken once the actions are written, refers back to the document
    written): a plan of a million actions would otherwise stay in memory until the collector ran, which the
    planning stages pause."""
    gc.collect()
    gc.disable()
    try:
        saved(tmp_path)
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, dict) and "actions_digest" in o]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []


def test_a_saved_plan_reads_back_as_made_sharing_the_names_it_repeats(tmp_path: Path) -> None:
    path, changes, labels = saved(tmp_path)
    loaded = load_plan(path)
    assert list(loaded.actions) == [typed_action(c, labels) for c in changes]
    creates = [a for a in loaded.actions if isinstance(a, Create)]
    assert len(creates) == 6 and isinstance(loaded.actions[-1], Delete)
    assert all(a.course is creates[0].course for a in loaded.actions)
    assert creates[0].lesson is creates[2].lesson and creates[0].member is creates[1].member
    assert creates[0].lesson.name == "Lesson 22" and creates[1].lesson.name == "Lesson 21"


def test_an_edited_precondition_is_still_named(tmp_path: Path) -> None:
    path, _, _ = saved(tmp_path)
    doc = json.loads(path.read_text())
    del doc["actions_digest"]
    assert doc["actions"][2]["precondition"] == {"absent": {"CourseMemberId": 11, "CourseLessonId": 22}}
    doc["actions"][2]["precondition"]["absent"]["CourseLessonId"] = 23
    path.write_text(json.dumps(doc))
    with pytest.raises(PlanFileError, match=r"actions\[2\]\.precondition\.absent\.CourseLessonId is 23, but the "
                                            r"lesson's Id is 22"):
        load_plan(path)
