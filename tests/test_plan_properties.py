"""Properties of the planning core, for random desired and current states (hypothesis)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.config import Safety
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Origin, Ref
from reconciler.plan import Change, apply_budgets, plan_changes
from reconciler.resolve import Resolution, ResolvedCompletions

LESSONS = (1, 2, 3, 4)
MEMBERS = (10, 11, 12, 13, 14)
MARKERS = (None, "reconciler:spec", "reconciler:other")
ORIGIN = Origin("spec.yaml", 1)


def catalog() -> Catalog:
    result = Catalog(courses={1: Course(1, "C")})
    for lesson in LESSONS:
        result.lessons[lesson] = Lesson(lesson, 1, f"L{lesson}", lesson)
    for member in MEMBERS:
        result.members[member] = Member(member, 1, member + 100, f"M{member}")
    return result


@st.composite
def world(draw: st.DrawFn) -> tuple[ResolvedCompletions, list[Completion]]:
    mode = draw(st.sampled_from(["additive", "owned", "authoritative"]))
    named = draw(st.sets(st.sampled_from(MEMBERS)))
    desired: dict[tuple[int, int], tuple[Origin, ...]]
    revoked: dict[tuple[int, int], tuple[Origin, str | None]]
    desired = {(m, x): (ORIGIN,) for m in named for x in draw(st.sets(st.sampled_from(LESSONS)))}
    revocable = [(m, x) for m in named for x in LESSONS if (m, x) not in desired]
    revoked = {pair: (ORIGIN, "why") for pair in draw(st.sets(st.sampled_from(revocable))) } if revocable else {}
    records = draw(st.lists(st.tuples(st.sampled_from(MEMBERS), st.sampled_from(LESSONS), st.sampled_from(MARKERS),
                                      st.integers(0, 5)), max_size=25))
    current = [Completion(i + 1, m, x, f"2026-01-0{day + 1}", f"2026-01-0{day + 1}", marker)
               for i, (m, x, marker, day) in enumerate(records)]
    spec = CompletionsSpec("spec", ORIGIN, Ref(ORIGIN, title="C"), mode, ORIGIN)  # type: ignore[arg-type]
    resolved = ResolvedCompletions(spec, Course(1, "C"), frozenset(named), desired, revoked)
    return resolved, current


def apply_actions(current: list[Completion], actions: list[Change]) -> list[Completion]:
    after = {c.id: c for c in current}
    next_id = max(after, default=0) + 1000
    for action in actions:
        if action.kind == "create":
            after[next_id] = Completion(next_id, action.member_id, action.lesson_id, "2026-02-01", "2026-02-01",
                                        action.system_id)
            next_id += 1
        elif action.kind == "delete":
            assert action.record is not None
            del after[action.record.id]
    return list(after.values())


@pytest.mark.slow
@settings(max_examples=600, deadline=None)
@given(world())
def test_applying_the_plan_reaches_the_desired_state_and_touches_nothing_out_of_reach(
        state: tuple[ResolvedCompletions, list[Completion]]) -> None:
    resolved, current = state
    mode = resolved.spec.mode
    plan = plan_changes(Resolution(completions=[resolved]), current, catalog())
    after = apply_actions(current, plan.actions)
    pairs_after = {c.pair for c in after}

    assert set(resolved.desired) <= pairs_after  # every declared completion exists
    assert not set(resolved.revoked) & pairs_after  # every revoked one is gone
    kept_ids = {c.id for c in after}
    for record in current:
        if record.id in kept_ids:
            continue
        # why may it be deleted?
        assert (record.pair in resolved.revoked
                or (mode == "authoritative" and record.member_id in resolved.named_members)
                or (mode == "owned" and record.system_id == "reconciler:spec")), (mode, record)
    if mode == "additive":
        assert all(a.reason == "revoked" for a in plan.actions if a.kind == "delete")
    if mode == "authoritative":  # within reach, exactly the desired set, without duplicates
        named_after = [c.pair for c in after if c.member_id in resolved.named_members]
        assert sorted(named_after) == sorted(set(named_after)) and set(named_after) == set(resolved.desired)
    if mode == "owned":
        assert {c.pair for c in after if c.system_id == "reconciler:spec"} <= set(resolved.desired)
    for action in plan.actions:
        if action.kind == "create":
            assert action.system_id == "reconciler:spec" and action.pair in resolved.desired

    again = plan_changes(Resolution(completions=[resolved]), after, catalog())
    assert again.actions == []  # planning again yields nothing


@settings(max_examples=300, deadline=None)
@given(world())
def test_creates_come_before_deletes_for_each_member_and_order_is_deterministic(
        state: tuple[ResolvedCompletions, list[Completion]]) -> None:
    resolved, current = state
    first = plan_changes(Resolution(completions=[resolved]), current, catalog())
    second = plan_changes(Resolution(completions=[resolved]), list(reversed(current)), catalog())
    assert first.actions == second.actions
    seen_delete: set[int] = set()
    for action in first.actions:
        if action.kind == "delete":
            seen_delete.add(action.member_id)
        else:
            assert action.member_id not in seen_delete


@settings(max_examples=300, deadline=None)
@given(world(), st.integers(0, 30))
def test_budgets_block_exactly_when_a_limit_is_passed(state: tuple[ResolvedCompletions, list[Completion]],
                                                      allow: int) -> None:
    resolved, current = state
    plan = plan_changes(Resolution(completions=[resolved]), current, catalog())
    safety = Safety(max_delete_fraction=0.3, min_existing=5, max_deletes=3)
    apply_budgets(plan, safety)
    deletes, existing = plan.count("delete"), plan.existing_in_scope
    over = deletes > 3 or (existing >= 5 and deletes / existing > 0.3)
    assert bool(plan.blocked) == over
    apply_budgets(plan, safety, allow_deletes=allow)
    assert bool(plan.blocked) == (over and deletes > allow)
    partial = replace(plan, partial=["read failed"])
    apply_budgets(partial, safety, allow_deletes=10_000)
    assert partial.blocked and "incomplete read" in partial.blocked[0]  # creates too, and even "no changes"
