"""The members × lessons matrix of every course a plan reaches, and the grid of cells drawn from it.

Two halves, both pure:
- `matrix_section` (planning side): catalog × current completions × the plan's changes → the optional
  `matrix` section of the plan document (specs/plan.schema.json): per course its lessons in DisplayOrder,
  the members whose completions were read in full, their teams, and which lessons the plan *keeps* for
  each. Kept pairs are all the actions do not say: before = kept + deleted, after = kept + created.
- `course_grids` (reading side): a plan (or report) document → per course a grid of cells, each one of
  NONE, KEPT, CREATE, DELETE, DEDUPE, with the actions placed on it; and the figures by lesson and by
  team. A document without a `matrix` (an older plan, an undo plan) still draws: rows and columns come
  from its actions alone, and cells without an action are unknown rather than empty.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from operator import add
from typing import Any

from reconciler.columns import CompletionColumns
from reconciler.model import Catalog, Completion, Lesson
from reconciler.plan import Change

# Cell codes (also the page's): one character each, so a row of cells is a short string.
NONE, KEPT, CREATE, DELETE, DEDUPE = ".", "k", "c", "d", "u"
HAS_NOW = frozenset((KEPT, DELETE, DEDUPE))  # a completion exists before the apply
HAS_AFTER = frozenset((KEPT, CREATE, DEDUPE))  # a completion exists after it
CHANGED = frozenset((CREATE, DELETE, DEDUPE))
NO_TEAM = "(no team)"


# --- planning side: the document's `matrix` section ---------------------------------------------

def matrix_section(catalog: Catalog, course_ids: Iterable[int], current: Iterable[Completion],
                   changes: Iterable[Change], members: Collection[int] | None = None) -> list[dict[str, Any]]:
    """One entry per course (in Id order): its lessons in DisplayOrder, and the members whose completions
    the plan read in full (`members`: those CourseMember Ids; None: every enrolled member) together with
    every member an action touches, each with a `kept` string: one character per lesson, "1" where a
    completion exists and the plan keeps it, "0" otherwise.

    Members this apply enrols have no enrolment yet; they are not rows here (their actions say it all).
    """
    courses = sorted(set(course_ids) & set(catalog.courses))
    lesson_course = {lesson.id: lesson.course_id for lesson in catalog.lessons.values()}
    deleted: set[int] = set()
    touched: dict[int, dict[int, str]] = defaultdict(dict)  # course → member Id → a name for it
    last: tuple[object, int] | None = None
    for change in changes:
        if change.extra is None:  # no record, no name (nearly every create): one member's run is taken once
            if change.member_id and (change.shared, change.member_id) != last:
                last = (change.shared, change.member_id)
                touched[change.shared[1]].setdefault(change.member_id, "")
            continue
        if change.kind == "delete" and change.record is not None:
            deleted.add(change.record.id)
        if change.member_id:  # 0: the enrolment this apply makes
            name = change.record.member_name if change.record is not None else change.name
            touched[change.course_id].setdefault(change.member_id, name or "")
    wanted = set(courses)
    if isinstance(current, CompletionColumns):
        kept_text = _kept_from_columns(catalog, courses, current, deleted, touched, members)
    else:
        # Member Id → lessons kept: a list, not a set (a set is several times the size: 100 MB at 200,000 members).
        kept: dict[int, list[int]] = defaultdict(list)
        for record in current:
            if record.id not in deleted and lesson_course.get(record.lesson_id) in wanted:
                kept[record.member_id].append(record.lesson_id)

        def kept_text(course_id: int, member_id: int, lessons: list[Lesson]) -> str:
            lessons_kept = kept.get(member_id, ())
            return "".join("1" if x.id in lessons_kept else "0" for x in lessons)

    sections = []
    for course_id in courses:
        lessons = catalog.lessons_of(course_id)
        enrolled = catalog.members_of(course_id)
        in_course = touched.get(course_id, {})
        rows: list[dict[str, Any]] = []
        for member in enrolled:
            if members is None or member.id in members or member.id in in_course:
                rows.append(_member_row(member.id, member.coworker_id, member.full_name, member.teams,
                                        kept_text(course_id, member.id, lessons)))
        # A record can name an enrolment the catalog does not list (withdrawn since): still a row.
        known = {m.id for m in enrolled}
        for member_id in sorted(set(in_course) - known):
            rows.append(_member_row(member_id, None, in_course[member_id], (),
                                    kept_text(course_id, member_id, lessons)))
        sections.append({
            "course": {"id": course_id, "title": catalog.courses[course_id].title},
            "lessons": [{"id": x.id, "title": x.title, "display_order": x.display_order} for x in lessons],
            "enrolled": len(enrolled),
            "members": rows,
        })
    return sections


def _member_row(member_id: int, coworker_id: int | None, name: str, teams: Iterable[str], kept: str
                ) -> dict[str, Any]:
    return {"id": member_id, "coworker_id": coworker_id, "name": name, "teams": list(teams), "kept": kept}


_KEPT_DIGITS = bytes.maketrans(b"\0\1", b"01")


def _kept_from_columns(catalog: Catalog, courses: list[int], current: CompletionColumns, deleted: set[int],
                       touched: dict[int, dict[int, str]], members: Collection[int] | None
                       ) -> Callable[[int, int, list[Lesson]], str]:
    """`kept_text` from completions held as columns: per course a byte per row member and lesson (no list a
    member, no object a record), for the members that become rows."""
    lesson_at: dict[int, tuple[int, int]] = {}  # lesson → (course, its column)
    member_at: dict[int, dict[int, int]] = {}  # course → member Id → its row
    cells: dict[int, bytearray] = {}
    for course_id in courses:
        lessons = catalog.lessons_of(course_id)
        lesson_at.update((x.id, (course_id, i)) for i, x in enumerate(lessons))
        in_course = touched.get(course_id, {})
        shown = [m.id for m in catalog.members_of(course_id) if members is None or m.id in members
                 or m.id in in_course]
        at = member_at[course_id] = {}
        for member_id in (*shown, *in_course):
            at.setdefault(member_id, len(at))
        cells[course_id] = bytearray(len(at) * len(lessons))
    widths = {course_id: len(catalog.lessons_of(course_id)) for course_id in courses}
    if len(courses) == 1:  # the usual plan: each row's cell found in C, not a Python step a record
        course_id = courses[0]
        found = cells[course_id]
        # A cell's place is its member's start + its lesson's column, made negative by `missing` (more than
        # either can make up) when either is not shown or the record is deleted.
        missing = -len(found) - widths[course_id] - 1
        starts = {member_id: row * widths[course_id] for member_id, row in member_at[course_id].items()}
        columns = {lesson: column for lesson, (_, column) in lesson_at.items()}
        places = map(add, map(starts.get, current.member_ids, repeat(missing)),
                     map(columns.get, current.lesson_ids, repeat(missing)))
        if deleted:
            places = map(add, places, map(dict.fromkeys(deleted, missing).get, current.ids, repeat(0)))
        deque(map(found.__setitem__, filter((0).__le__, places), repeat(1)), maxlen=0)
    else:
        _mark_kept(current, deleted, lesson_at, member_at, cells, widths)

    def kept_text(course_id: int, member_id: int, lessons: list[Lesson]) -> str:
        start = member_at[course_id][member_id] * len(lessons)
        return cells[course_id][start:start + len(lessons)].translate(_KEPT_DIGITS).decode()

    return kept_text


def _mark_kept(current: CompletionColumns, deleted: set[int], lesson_at: dict[int, tuple[int, int]],
               member_at: dict[int, dict[int, int]], cells: dict[int, bytearray], widths: dict[int, int]) -> None:
    """Each kept record's cell set, a record at a time (the plan reaches several courses)."""
    for record_id, member, lesson in zip(current.ids, current.member_ids, current.lesson_ids, strict=True):
        place = lesson_at.get(lesson)
        if place is None:
            continue
        row = member_at[place[0]].get(member)
        if row is not None and record_id not in deleted:
            cells[place[0]][row * widths[place[0]] + place[1]] = 1


# --- reading side: a document's grids -----------------------------------------------------------

@dataclass
class Row:
    """A member of a course: an enrolment, or (member_id None) a coworker this apply enrols."""

    member_id: int | None
    coworker_id: int | None
    name: str
    teams: tuple[str, ...]
    cells: list[str]
    enrol: bool = False
    actions: list[int] = field(default_factory=list)  # indexes into the document's actions

    @property
    def key(self) -> str:
        return f"m{self.member_id}" if self.member_id is not None else f"c{self.coworker_id}"

    @property
    def team(self) -> str:
        """The team the row is grouped under: its first."""
        return self.teams[0] if self.teams else NO_TEAM


@dataclass
class CourseGrid:
    id: int | None
    title: str
    lessons: list[tuple[int | None, str]]
    rows: list[Row]
    enrolled: int | None  # enrolments in the catalog; None when the document has no matrix for the course
    index: dict[str, int] = field(default_factory=dict)  # row key → position
    columns: dict[int | None, int] = field(default_factory=dict)  # lesson Id → position

    @property
    def from_matrix(self) -> bool:
        """Whether the current state is known (cells without an action are then truly not completed)."""
        return self.enrolled is not None

    def column(self, lesson_id: int | None, title: str) -> int:
        if lesson_id not in self.columns:
            self.columns[lesson_id] = len(self.lessons)
            self.lessons.append((lesson_id, title))
            for row in self.rows:
                row.cells.append(NONE)
        return self.columns[lesson_id]

    def row(self, member_id: int | None, coworker_id: int | None, name: str) -> Row:
        key = f"m{member_id}" if member_id is not None else f"c{coworker_id}"
        if key not in self.index:
            self.index[key] = len(self.rows)
            self.rows.append(Row(member_id, coworker_id, name, (), [NONE] * len(self.lessons)))
        return self.rows[self.index[key]]

    def count(self, codes: Collection[str]) -> int:
        return sum(1 for row in self.rows for cell in row.cells if cell in codes)

    def by_lesson(self) -> list[LessonFigures]:
        figures = [LessonFigures(title, len(self.rows)) for _, title in self.lessons]
        for row in self.rows:
            for figure, cell in zip(figures, row.cells, strict=True):
                figure.add(cell)
        return figures

    def by_team(self) -> list[TeamFigures]:
        """Per team (a member counts in each of their teams), sorted by name with no team last."""
        teams: dict[str, TeamFigures] = {}
        lessons = len(self.lessons)
        for row in self.rows:
            for team in row.teams or (NO_TEAM,):
                figure = teams.setdefault(team, TeamFigures(team, lessons))
                figure.members += 1
                figure.now += sum(1 for cell in row.cells if cell in HAS_NOW)
                figure.after += sum(1 for cell in row.cells if cell in HAS_AFTER)
                figure.all_done_after += all(cell in HAS_AFTER for cell in row.cells) and lessons > 0
        return sorted(teams.values(), key=lambda t: (t.team == NO_TEAM, t.team.casefold()))


@dataclass
class LessonFigures:
    title: str
    members: int
    now: int = 0
    after: int = 0
    create: int = 0
    delete: int = 0

    def add(self, cell: str) -> None:
        self.now += cell in HAS_NOW
        self.after += cell in HAS_AFTER
        self.create += cell == CREATE
        self.delete += cell == DELETE


@dataclass
class TeamFigures:
    team: str
    lessons: int
    members: int = 0
    now: int = 0
    after: int = 0
    all_done_after: int = 0

    @property
    def possible(self) -> int:
        return self.members * self.lessons


def rate(part: int, whole: int) -> str:
    """A share as a whole percentage ("–" of nothing); 99.6% shows as 99%, so 100% means every one."""
    if not whole:
        return "–"
    return f"{part * 100 // whole}%"


@dataclass
class Placement:
    """Where one action of the document sits: its course, row and column (-1: an enrolment)."""

    course: int
    row: int
    column: int


def course_grids(doc: dict[str, Any]) -> tuple[list[CourseGrid], list[Placement]]:
    """The grids of a plan or report document, and each action's place on them (in the actions' order)."""
    grids: list[CourseGrid] = []
    by_course: dict[int | None, int] = {}
    teams_of_coworker: dict[int, tuple[str, ...]] = {}
    for section in doc.get("matrix") or []:
        lessons = [(x["id"], x.get("title", "")) for x in section["lessons"]]
        grid = CourseGrid(section["course"]["id"], section["course"].get("title", ""), lessons, [],
                          section.get("enrolled", len(section["members"])))
        grid.columns = {lesson_id: position for position, (lesson_id, _) in enumerate(lessons)}
        for member in section["members"]:
            kept = member.get("kept", "")
            row = grid.row(member["id"], member.get("coworker_id"), member.get("name", ""))
            row.teams = tuple(member.get("teams", ()))
            row.cells = [KEPT if kept[i:i + 1] == "1" else NONE for i in range(len(lessons))]
            if row.coworker_id is not None and row.teams:
                teams_of_coworker.setdefault(row.coworker_id, row.teams)
        by_course[grid.id] = len(grids)
        grids.append(grid)

    placements = []
    for number, entry in enumerate(doc.get("actions") or []):
        course_id = entry["course"]["id"]
        if course_id not in by_course:
            by_course[course_id] = len(grids)
            grids.append(CourseGrid(course_id, entry["course"].get("title", ""), [], [], None))
        grid = grids[by_course[course_id]]
        member, kind = entry["member"], entry["action"]
        row = grid.row(member["id"], entry.get("coworker_id"), member.get("name", ""))
        if not row.name:
            row.name = member.get("name", "")
        row.actions.append(number)
        if kind == "enroll":
            row.enrol = True
            placements.append(Placement(by_course[course_id], grid.index[row.key], -1))
            continue
        column = grid.column(entry["lesson"]["id"], entry["lesson"].get("title", ""))
        placements.append(Placement(by_course[course_id], grid.index[row.key], column))
        cell = row.cells[column]
        if kind == "create":
            row.cells[column] = CREATE
        elif cell in (KEPT, DEDUPE) or (not grid.from_matrix and entry.get("reason") == "duplicate"):
            row.cells[column] = DEDUPE  # another record of the pair stays
        else:
            row.cells[column] = DELETE
    for grid in grids:
        for row in grid.rows:
            if not row.teams and row.coworker_id is not None:
                row.teams = teams_of_coworker.get(row.coworker_id, ())
    return grids, placements
