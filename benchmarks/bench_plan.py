"""The planning core on 1,000,000 desired × 1,000,000 current completions, and rendering 100,000 actions.

Each figure is compared with a floor measured in the same run: for planning, the bare keyed set
difference any planner must do (no modes, no duplicates, no provenance); for rendering, json.dumps of
the same number of small dicts. Peak memory is the process's peak RSS growth while planning.

Run: python -m benchmarks.bench_plan
"""

from __future__ import annotations

import gc
import io
import json
import resource
import time

from reconciler.config import DOCUMENTED_LIMITS
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Origin, Ref
from reconciler.plan import plan_changes
from reconciler.render import Labels, markdown, plan_dict, write_json
from reconciler.resolve import Resolution, ResolvedCompletions

MEMBERS, LESSONS = 100_000, 10


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build() -> tuple[Resolution, list[Completion], Catalog]:
    catalog = Catalog(courses={1: Course(1, "Cohort")})
    for lesson in range(1, LESSONS + 1):
        catalog.lessons[lesson] = Lesson(lesson, 1, f"Lesson {lesson}", lesson)
    for member in range(MEMBERS):
        catalog.members[member] = Member(member, 1, member, f"Member {member}")
    origin = Origin("cohort.yaml", 7)
    # Desired: every member × every lesson (1,000,000). Current: 1,000,000 records, of which 90% are
    # declared, 5% are ours and no longer declared (orphans), 5% are someone else's.
    desired = {(m, x): (origin,) for m in range(MEMBERS) for x in range(1, LESSONS + 1)}
    current = []
    for i in range(MEMBERS * LESSONS):
        member, lesson = divmod(i, LESSONS)
        lesson += 1
        if i % 20 == 0:  # not declared: shift to a member outside the spec
            member += MEMBERS
        marker = "reconciler:cohort" if i % 40 != 0 else None
        current.append(Completion(i + 1, member, lesson, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
                                  marker))
    spec = CompletionsSpec("cohort", origin, Ref(origin, title="Cohort"), "owned", origin)
    resolved = ResolvedCompletions(spec, Course(1, "Cohort"), frozenset(range(MEMBERS)), desired, {})
    return Resolution(completions=[resolved]), current, catalog


def main() -> None:
    resolution, current, catalog = build()
    desired = resolution.completions[0].desired
    gc.collect()

    started = time.perf_counter()
    wanted, have = set(desired), {c.pair for c in current}
    floor_creates, floor_deletes = len(wanted - have), len(have - wanted)
    floor = time.perf_counter() - started
    del wanted, have
    gc.collect()

    rss_before = peak_rss_mib()
    started = time.perf_counter()
    plan = plan_changes(resolution, current, catalog)
    elapsed = time.perf_counter() - started
    rss_growth = peak_rss_mib() - rss_before
    print(f"plan 1,000,000 desired x 1,000,000 current: {elapsed:.2f} s "
          f"({plan.count('create'):,} creates, {plan.count('delete'):,} deletes, {plan.unchanged:,} unchanged); "
          f"peak RSS grew {rss_growth:,.0f} MiB (process peak {peak_rss_mib():,.0f} MiB)")
    print(f"floor (bare set difference): {floor:.2f} s ({floor_creates:,} / {floor_deletes:,}); "
          f"ratio ours/floor {elapsed / floor:.1f}x; goal: under 10 s and 2 GiB")

    actions = plan.actions[:100_000]
    plan.actions = actions
    labels = Labels.from_catalog(catalog)
    started = time.perf_counter()
    # As `reconciler plan` renders: the actions made as they are written (`lazy`).
    doc = plan_dict(plan, labels, target="https://spaces.nexudus.com", spec_digest="bench", limits=DOCUMENTED_LIMITS,
                    lazy=True)
    write_json(doc, io.StringIO())
    json_time = time.perf_counter() - started
    started = time.perf_counter()
    text = markdown(doc)
    markdown_time = time.perf_counter() - started
    started = time.perf_counter()
    json.dumps([{"action": a.kind, "member": a.member_id, "lesson": a.lesson_id} for a in actions])
    dump_floor = time.perf_counter() - started
    print(f"render 100,000 actions: JSON {json_time:.2f} s, Markdown {markdown_time:.2f} s ({len(text):,} chars); "
          f"floor json.dumps of bare dicts {dump_floor:.2f} s; ratio JSON/floor {json_time / dump_floor:.1f}x; "
          "goal: under 2 s")


if __name__ == "__main__":
    main()
