"""A large synthetic plan, built straight from the model (no emulator, no HTTP): one owned course of 30
lessons and any number of members, for tests of the review page and the report at scale, and for
benchmarks/bench_html.py."""

from __future__ import annotations

import random
from typing import Any

from reconciler.config import DOCUMENTED_LIMITS
from reconciler.matrix import matrix_section
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Origin, Ref
from reconciler.plan import Plan, plan_changes
from reconciler.render import Labels, plan_dict
from reconciler.resolve import Resolution, ResolvedCompletions

MEMBERS, LESSONS = 20_000, 30
TEAMS = ["Sales", "Support", "Design", "Engineering", "Community", "Operations", "Finance", "Legal"]
STAMP = "2026-01-01T00:00:00.000Z"


def space(members: int = MEMBERS, seed: int = 1, *, fresh: bool = False
          ) -> tuple[Catalog, list[Completion], dict[tuple[int, int], tuple[Origin, ...]]]:
    """One course of 30 lessons: each member should have lessons 1..t (t from 5 to 30) and has 1..c now, half
    of it made by the spec; `fresh`: a new course that everyone should have completed and nobody has.
    Returns the catalog, the current completions and what the spec asks (member, lesson) → its rule."""
    rng = random.Random(seed)
    catalog = Catalog(courses={1: Course(1, "Onboarding 2026")})
    for lesson in range(1, LESSONS + 1):
        catalog.lessons[lesson] = Lesson(lesson, 1, f"Lesson {lesson}", lesson)
    desired: dict[tuple[int, int], tuple[Origin, ...]] = {}
    current: list[Completion] = []
    record_id = 1
    for member in range(1, members + 1):
        teams = tuple(rng.sample(TEAMS, rng.choice((0, 1, 1, 1, 2))))
        catalog.members[member] = Member(member, 1, 100_000 + member, f"Member {member:05d} Lastname", teams)
        through, done = (LESSONS, 0) if fresh else (rng.randint(5, LESSONS), rng.randint(0, LESSONS))
        rule = Origin("cohort.yaml", 8 + member)
        for lesson in range(1, through + 1):
            desired[(member, lesson)] = (rule,)
        for lesson in range(1, done + 1):
            marker = "reconciler:cohort" if rng.random() < 0.5 else None
            current.append(Completion(record_id, member, lesson, STAMP, STAMP, marker, f"u{record_id}",
                                      f"Lesson {lesson}", f"Member {member:05d} Lastname"))
            record_id += 1
    return catalog, current, desired


def build(members: int = MEMBERS, seed: int = 1, *,
          fresh: bool = False) -> tuple[Plan, Catalog, list[Completion], set[int]]:
    """The owned spec's plan on `space`: it creates the missing completions and takes back what the spec no
    longer asks. `fresh`: the worst case, every cell a create."""
    catalog, current, desired = space(members, seed, fresh=fresh)
    origin = Origin("cohort.yaml", 7)
    spec = CompletionsSpec("cohort", origin, Ref(origin, title="Onboarding 2026"), "owned", origin)
    named = set(range(1, members + 1))
    resolved = ResolvedCompletions(spec, Course(1, "Onboarding 2026"), frozenset(named), desired, {})
    plan = plan_changes(Resolution(completions=[resolved]), current, catalog)
    return plan, catalog, current, named


def plan_document(members: int = MEMBERS) -> dict[str, Any]:
    """The plan document of `build`, with its matrix section, as `plan --out` would save it."""
    plan, catalog, current, named = build(members)
    doc = plan_dict(plan, Labels.from_catalog(catalog), target="https://spaces.nexudus.com", spec_digest="bench",
                    limits=DOCUMENTED_LIMITS)
    doc["matrix"] = matrix_section(catalog, [1], current, plan.actions, named)
    return doc


def report_document(members: int = MEMBERS) -> dict[str, Any]:
    """The state of `space` as `reconciler report` reads it: the matrix, no action."""
    catalog, current, _ = space(members)
    return {"target": "https://spaces.nexudus.com", "generated": "now",
            "matrix": matrix_section(catalog, [1], current, ()), "actions": []}
