"""The planning core on 1,000,000 desired × 1,000,000 current completions, and rendering 100,000 actions.

Each figure is compared with a floor measured in the same run: for planning, the bare keyed set
difference any planner must do (no modes, no duplicates, no provenance); for rendering, json.dumps of
the same number of small dicts. Peak memory is the process's peak RSS growth while planning.

Then the same records both ways, each in a process of its own (forked, so that one's peak does not hide the
other's): as a list of `Completion` values (what the reader returned until now) and as `CompletionColumns`
(`reconciler/columns.py`), with what holding them costs, the plan and the matrix section: time, peak RSS
growth, and whether the two plans are the same.

Run: python -m benchmarks.bench_plan
"""

from __future__ import annotations

import gc
import io
import json
import os
import resource
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from reconciler.columns import CompletionColumns
from reconciler.config import DOCUMENTED_LIMITS
from reconciler.matrix import matrix_section
from reconciler.model import Catalog, Completion, CompletionsSpec, Course, Lesson, Member, Origin, Ref
from reconciler.plan import plan_changes
from reconciler.render import Labels, markdown, plan_dict, write_json
from reconciler.resolve import Resolution, ResolvedCompletions

MEMBERS, LESSONS = 100_000, 10


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_mib(field: str) -> float:
    """This process's VmRSS (now) or VmHWM (its peak since `reset_peak`), from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> float:
    """Start measuring the peak again from now (Linux 4.0+); returns the RSS now."""
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")
    return memory_mib("VmRSS")


def build() -> tuple[Resolution, list[Completion], Catalog]:
    resolution, catalog = build_specs()
    current = []
    for i in range(MEMBERS * LESSONS):
        member, lesson = divmod(i, LESSONS)
        lesson += 1
        if i % 20 == 0:  # not declared: shift to a member outside the spec
            member += MEMBERS
        marker = "reconciler:cohort" if i % 40 != 0 else None
        current.append(Completion(i + 1, member, lesson, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z",
                                  marker))
    return resolution, current, catalog


def build_specs() -> tuple[Resolution, Catalog]:
    catalog = Catalog(courses={1: Course(1, "Cohort")})
    for lesson in range(1, LESSONS + 1):
        catalog.lessons[lesson] = Lesson(lesson, 1, f"Lesson {lesson}", lesson)
    for member in range(MEMBERS):
        catalog.members[member] = Member(member, 1, member, f"Member {member}")
    origin = Origin("cohort.yaml", 7)
    # Desired: every member × every lesson (1,000,000). Current (`build`, `raw_records`): 1,000,000 records, of
    # which 90% are declared, 5% are ours and no longer declared (orphans), 5% are someone else's.
    desired: dict[tuple[int, int], tuple[Origin, ...]] = {(m, x): (origin,) for m in range(MEMBERS)
                                                          for x in range(1, LESSONS + 1)}
    spec = CompletionsSpec("cohort", origin, Ref(origin, title="Cohort"), "owned", origin)
    resolved = ResolvedCompletions(spec, Course(1, "Cohort"), frozenset(range(MEMBERS)), desired, {})
    return Resolution(completions=[resolved]), catalog


def raw_records() -> Iterator[dict[str, Any]]:
    """The current completions of `build`, as the API lists them (with a GUID each, as the service gives)."""
    for i in range(MEMBERS * LESSONS):
        member, lesson = divmod(i, LESSONS)
        lesson += 1
        if i % 20 == 0:
            member += MEMBERS
        yield {"Id": i + 1, "CourseMemberId": member, "CourseLessonId": lesson, "CreatedOn": "2026-01-01T00:00:00.000Z",
               "UpdatedOn": "2026-01-01T00:00:00.000Z", "SystemId": "reconciler:cohort" if i % 40 != 0 else None,
               "UniqueId": str(uuid.UUID(int=i * 2654435761 + 1)), "CourseLessonTitle": f"Lesson {lesson}",
               "CourseMemberCoworkerFullName": f"Member {member}"}


def forked(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """`run()` in a child process (its memory figures its own), its answer sent back as JSON."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(read)
        try:
            answer = json.dumps(run()).encode()
        except BaseException as e:
            answer = json.dumps({"error": repr(e)}).encode()
        with os.fdopen(write, "wb") as out:
            out.write(answer)
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer_in:
        answer = json.loads(answer_in.read())
    os.waitpid(child, 0)
    if "error" in answer:
        raise RuntimeError(answer["error"])
    return dict(answer)


def both_ways() -> None:
    """The same records as a list of values and as columns: holding them, planning, the matrix section. Each way
    in a process of its own that builds everything itself (nothing shared with this one, nothing copied on
    write), memory measured from /proc: what the records hold, then the peak above that of each stage."""

    def run(as_columns: bool) -> dict[str, Any]:
        resolution, catalog = build_specs()
        titles = {x.id: x.title for x in catalog.lessons.values()}
        names = {m.id: m.full_name for m in catalog.members.values()}
        gc.collect()
        base = reset_peak()
        current: CompletionColumns | list[Completion]
        if as_columns:
            current = CompletionColumns(titles, names)
            for record in raw_records():
                current.add(record)
        else:  # as the reader made them: a few records at a time, made into values
            current = []
            chunk = CompletionColumns(titles, names)
            for record in raw_records():
                chunk.add(record)
                if len(chunk) == 10_000:
                    current.extend(chunk)
                    chunk = CompletionColumns(titles, names)
            current.extend(chunk)
            del chunk
        gc.collect()
        held = reset_peak() - base
        before = memory_mib("VmRSS")
        started = time.perf_counter()
        plan = plan_changes(resolution, current, catalog)
        elapsed = time.perf_counter() - started
        planned = memory_mib("VmHWM") - before
        before = reset_peak()
        started = time.perf_counter()
        section = matrix_section(catalog, [1], current, plan.actions, None)
        matrix_time = time.perf_counter() - started
        return {"held": held, "plan": elapsed, "plan_rss": planned, "matrix": matrix_time,
                "matrix_rss": memory_mib("VmHWM") - before, "digest": hash(tuple(plan.actions)),
                "counts": [len(plan.actions), plan.unchanged, plan.existing_in_scope, len(plan.drift)],
                "matrix_digest": hash(json.dumps(section))}

    ways = {"list of Completion": forked(lambda: run(False)), "CompletionColumns": forked(lambda: run(True))}
    records = MEMBERS * LESSONS
    for name, figures in ways.items():
        print(f"{name:>18}: {records:,} records held in {figures['held']:,.0f} MiB "
              f"({figures['held'] * 2**20 / records:,.0f} bytes a record); plan {figures['plan']:.2f} s, "
              f"peak +{figures['plan_rss']:,.0f} MiB; matrix section {figures['matrix']:.2f} s, "
              f"peak +{figures['matrix_rss']:,.0f} MiB")
    first, second = ways.values()
    same = all(first[k] == second[k] for k in ("digest", "counts", "matrix_digest"))
    print(f"same plan and matrix both ways: {'yes' if same else 'NO'}; columns/list plan time "
          f"{second['plan'] / first['plan']:.2f}x")
    if not same:
        raise SystemExit(1)


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
    del plan, actions, doc, current
    gc.collect()
    both_ways()


if __name__ == "__main__":
    main()
