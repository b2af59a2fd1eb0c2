"""`reconciler report`: where courses stand, without a plan — completion by lesson and by team, and the
members × lessons matrix, as Markdown (bounded, for a comment or an issue) or as the HTML page.

The courses are those the specs at PATH name (a migration names two), or `--course` titles, or every
course when neither names any. Their completions are read in full, so every enrolled member is a row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.errors import PartialRead, UsageError
from reconciler.markdown import code, plain
from reconciler.matrix import CourseGrid, course_grids, matrix_section, rate
from reconciler.model import Catalog, SpecSet
from reconciler.render import MARKDOWN_LIMIT
from reconciler.schema_check import near_miss
from reconciler.state import COURSES, LESSONS, MEMBERS, StateReader, course_from, lesson_from, member_from
from reconciler.target import Target

REPORT_FORMAT = "reconciler-report/1"


def chosen_courses(catalog: Catalog, specs: SpecSet, titles: Sequence[str]) -> set[int]:
    """The Ids of the courses to report on; a title that names no course is an error with its near miss."""
    wanted: set[int] = set()
    problems = []
    named: list[tuple[str, int | None]] = [(title.strip(), None) for title in titles]
    if not named:
        refs = [s.course for s in specs.completions]
        refs += [r for m in specs.migrations for r in (m.source_course, m.target_course)]
        named = [(ref.title.strip() if ref.title is not None else "", ref.id) for ref in refs]
    if not named:
        return set(catalog.courses)
    all_titles = [c.title for c in catalog.courses.values()]
    for title, course_id in named:
        if course_id is not None:
            if course_id not in catalog.courses:
                problems.append(f"no course with Id {course_id}")
            wanted.add(course_id)
            continue
        found = {c.id for c in catalog.courses.values() if c.title.strip() == title}
        if not found:
            problems.append(f"no course {title!r}{near_miss(title, all_titles)}")
        wanted |= found
    if problems:
        raise UsageError("; ".join(problems))
    return wanted


def read_report(target: Target, specs: SpecSet, titles: Sequence[str], *, generated: str) -> dict[str, Any]:
    """The report document: the target, when it was read, and the `matrix` of each course, read in full."""
    reader = StateReader(target.client, target.cache)
    catalog = Catalog()
    for record in reader.table(COURSES):
        course = course_from(record)
        catalog.courses[course.id] = course
    ids = chosen_courses(catalog, specs, titles)
    for record in reader.records_of_courses(LESSONS, "CourseLesson_Course", ids, len(catalog.courses)):
        lesson = lesson_from(record)
        catalog.lessons[lesson.id] = lesson
    for record in reader.records_of_courses(MEMBERS, "CourseMember_Course", ids, len(catalog.courses)):
        member = member_from(record)
        catalog.members[member.id] = member
    current, partial = reader.completions({x.id for x in catalog.lessons.values() if x.course_id in ids})
    if partial:
        raise PartialRead("the report would be incomplete: " + "; ".join(partial))
    return {"format": REPORT_FORMAT, "target": target.description, "generated": generated,
            "matrix": matrix_section(catalog, ids, current, ()), "actions": []}


# --- Markdown ------------------------------------------------------------------------------------

def report_markdown(doc: dict[str, Any], *, rows: int = 100) -> str:
    """Markdown always under MARKDOWN_LIMIT characters: the figures in full, the matrix's first rows."""
    grids, _ = course_grids(doc)
    while True:
        text = _markdown(doc, grids, rows)
        if len(text) < MARKDOWN_LIMIT or rows == 0:
            return _cut(text)
        rows //= 2


def _cut(text: str) -> str:
    """`text` under MARKDOWN_LIMIT characters: whole, or cut at the end of a line and saying so (the courses
    left out, and where the whole report is)."""
    if len(text) < MARKDOWN_LIMIT:
        return text
    note = ("\n\n> **Cut here** to stay under {limit:,} characters: {left:,} more course{s} not shown. "
            "`reconciler report --format html` shows the whole report.\n")
    end = text.rfind("\n", 0, MARKDOWN_LIMIT - len(note) - 100)
    left = text.count("\n#### ", end)
    return text[:end] + note.format(limit=MARKDOWN_LIMIT, left=left, s="" if left == 1 else "s")


def _markdown(doc: dict[str, Any], grids: list[CourseGrid], rows: int) -> str:
    done = sum(grid.count("k") for grid in grids)
    cells = sum(len(grid.rows) * len(grid.lessons) for grid in grids)
    lines = ["### reconciler report", "", f"Target: `{code(doc['target'])}`", "",
             f"**Read at {plain(doc.get('generated', ''))}: {len(grids):,} course{'s' if len(grids) != 1 else ''}, "
             f"{done:,} of {cells:,} lesson completions ({rate(done, cells)}).**", ""]
    if not grids:
        lines += ["No course to report on.", ""]
    for grid in grids:
        members, lessons = len(grid.rows), len(grid.lessons)
        course_done = grid.count("k")
        complete = sum(1 for row in grid.rows if row.cells and all(cell == "k" for cell in row.cells))
        lines += [f"#### {plain(grid.title)}", "",
                  f"{members:,} members, {lessons:,} lessons: {course_done:,} of {members * lessons:,} completions "
                  f"({rate(course_done, members * lessons)}); {complete:,} member{'s' if complete != 1 else ''} "
                  "with every lesson.", "",
                  "| Lesson | Completed | Rate |", "|---|---:|---:|"]
        for position, figure in enumerate(grid.by_lesson(), start=1):
            lines.append(f"| {position}. {plain(figure.title)} | {figure.now:,} of {members:,} | "
                         f"{rate(figure.now, members)} |")
        lines += ["", "| Team | Members | Completions | Rate | Every lesson done |", "|---|---:|---:|---:|---:|"]
        for team in grid.by_team():
            lines.append(f"| {plain(team.team)} | {team.members:,} | {team.now:,} of {team.possible:,} | "
                         f"{rate(team.now, team.possible)} | {team.all_done_after:,} |")
        lines.append("")
        if rows and grid.rows:
            ordered = sorted(grid.rows, key=lambda r: (r.team == "(no team)", r.team.casefold(), r.name.casefold()))
            shown = ordered[:rows]
            numbers = " | ".join(str(n) for n in range(1, lessons + 1))
            lines += [f"<details><summary>Members × lessons ({len(shown):,} of {members:,} members; ✓ completed)"
                      "</summary>", "", f"| Member | Team | {numbers} |",
                      "|---|---|" + "---|" * lessons]
            for row in shown:
                marks = " | ".join("✓" if cell == "k" else " " for cell in row.cells)
                lines.append(f"| {plain(row.name)} | {plain(', '.join(row.teams))} | {marks} |")
            lines += ["", "</details>", ""]
            if members > len(shown):
                lines += [f"… {members - len(shown):,} more members; `reconciler report --format html` shows them "
                          "all.", ""]
    return "\n".join(lines) + "\n"
