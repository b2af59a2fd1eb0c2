"""The nouns: specs as people wrote them, the catalog they are resolved against, and live completions.

Everything here is a plain frozen value, independent of YAML and of HTTP, so that the planner can be
tested without files or a server.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Literal, overload

from reconciler.errors import Problem

Mode = Literal["additive", "owned", "authoritative"]
SelectorKind = Literal["email", "coworker_id", "course_member_id", "team"]
MARKER_PREFIX = "reconciler:"


def marker_for(spec_name: str) -> str:
    """The SystemId written on every record a spec creates; `owned` mode deletes only these."""
    return MARKER_PREFIX + spec_name


@dataclass(frozen=True, order=True, slots=True)
class Origin:
    """Where in a spec file something was asked for."""

    path: str
    line: int
    column: int = 1

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True, slots=True)
class Ref:
    """A course or lesson named by exact title or by Id."""

    origin: Origin
    title: str | None = None
    id: int | None = None

    def __str__(self) -> str:
        return repr(self.title) if self.title is not None else f"{{id: {self.id}}}"


@dataclass(frozen=True, slots=True)
class MemberSelector:
    by: SelectorKind
    value: str | int
    origin: Origin

    def __str__(self) -> str:
        return f"{self.by} {self.value!r}" if self.by != "email" else str(self.value)

    @property
    def key(self) -> tuple[str, str | int]:
        """Equal for selectors naming the same thing the same way (emails without regard to case)."""
        return (self.by, self.value.casefold() if isinstance(self.value, str) and self.by == "email" else self.value)


class TitleRefs(Sequence[Ref]):
    """The lessons of a list that names each by title (nearly every list), as the Refs a tuple would hold, each
    made when asked for: the titles, and each one's place packed as `line << 32 | column`. A spec of 200,000
    members lists two million lessons, and a Ref with its Origin costs 140 bytes where a place costs 8. Equal to
    (and hashed as) the tuple of its Refs."""

    __slots__ = ("path", "places", "titles")

    def __init__(self, path: str, titles: tuple[str, ...], places: array[int]) -> None:
        if len(titles) != len(places):
            raise ValueError(f"{len(titles)} titles, {len(places)} places")
        self.path, self.titles, self.places = path, titles, places

    def __len__(self) -> int:
        return len(self.titles)

    @overload
    def __getitem__(self, index: int) -> Ref: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[Ref, ...]: ...

    def __getitem__(self, index: int | slice) -> Ref | tuple[Ref, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        place = self.places[index]
        return Ref(Origin(self.path, place >> 32, place & 0xFFFFFFFF), title=self.titles[index])

    def __iter__(self) -> Iterator[Ref]:
        return map(self.__getitem__, range(len(self.titles)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TitleRefs):
            return (self.path, self.titles, self.places) == (other.path, other.titles, other.places)
        return isinstance(other, tuple) and tuple(self) == other

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return repr(tuple(self))


@dataclass(frozen=True, slots=True)
class LessonSet:
    """`all`, a list of lessons, or `{through: X}` (every lesson up to X in DisplayOrder); a list of titles only
    as `TitleRefs`."""

    kind: Literal["all", "list", "through"]
    origin: Origin
    lessons: tuple[Ref, ...] | TitleRefs = ()


@dataclass(frozen=True, slots=True)
class MemberRule:
    member: MemberSelector
    completed: LessonSet


@dataclass(frozen=True, slots=True)
class Revocation:
    member: MemberSelector
    lessons: LessonSet
    reason: str | None


@dataclass(frozen=True, slots=True)
class CompletionsSpec:
    name: str
    origin: Origin
    course: Ref
    mode: Mode
    mode_origin: Origin
    members: tuple[MemberRule, ...] = ()
    revocations: tuple[Revocation, ...] = ()

    @property
    def marker(self) -> str:
        return marker_for(self.name)


@dataclass(frozen=True, slots=True)
class MigrationSpec:
    name: str
    origin: Origin
    source_course: Ref
    target_course: Ref
    lesson_map: tuple[tuple[Ref, Ref], ...]
    enroll: bool = False
    source_policy: Literal["keep", "remove"] = "keep"
    strict: bool = False

    @property
    def marker(self) -> str:
        return marker_for(self.name)


@dataclass(frozen=True, slots=True)
class SpecSet:
    completions: tuple[CompletionsSpec, ...] = ()
    migrations: tuple[MigrationSpec, ...] = ()
    files: tuple[str, ...] = ()
    digest: str = ""
    # With `load_specs(keep_going=True)` (validate): the problems of the files left out, to be said with the
    # problems of the rest, every one at once.
    problems: tuple[Problem, ...] = ()


# --- the catalog: what names resolve against -----------------------------------------------------

@dataclass(frozen=True, slots=True)
class Course:
    id: int
    title: str


@dataclass(frozen=True, slots=True)
class Lesson:
    id: int
    course_id: int
    title: str
    display_order: int


@dataclass(frozen=True, slots=True)
class Coworker:
    id: int
    full_name: str
    email: str
    teams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Member:
    """An enrolment (CourseMember): the Id completions carry as CourseMemberId."""

    id: int
    course_id: int
    coworker_id: int
    full_name: str = ""
    teams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Completion:
    """A live CourseCompletedLesson record: what a delete journals in full."""

    id: int
    member_id: int
    lesson_id: int
    created_on: str = ""
    updated_on: str = ""
    system_id: str | None = None
    unique_id: str | None = None
    lesson_title: str = ""
    member_name: str = ""

    @property
    def pair(self) -> tuple[int, int]:
        return (self.member_id, self.lesson_id)


NO_DATE = datetime.min.replace(tzinfo=UTC)  # what `instant` makes of a stamp that is not a date (it sorts first)


@lru_cache(maxsize=65536)
def instant(stamp: str) -> datetime:
    """A timestamp as an instant, whatever its precision: lists write whole seconds, creates and gets up to
    seven fractional digits. Dates are compared this way, never as strings. Unknown dates sort first."""
    text = stamp.strip()
    if not text:
        return NO_DATE
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most six fractional digits; the seventh is below a microsecond
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:min(digits, 6)]}{rest[digits:]}" if digits else head + rest
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return NO_DATE
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def same_instant(a: str, b: str) -> bool:
    """Whether two stamps name the same moment, at the precision of the coarser one (a list's whole
    seconds against a get's fractions)."""
    left, right = instant(a), instant(b)
    if left == right:
        return True
    if "." not in a or "." not in b:
        return left.replace(microsecond=0) == right.replace(microsecond=0)
    return False


def oldest_first(records: list[Completion]) -> list[Completion]:
    """Duplicates in keeping order: the smallest CreatedOn as an instant first, ties to the smaller Id."""
    return sorted(records, key=lambda r: (instant(r.created_on), r.id)) if len(records) > 1 else records


def undated(records: Sequence[Completion]) -> Completion | None:
    """The first of `records` whose CreatedOn is not a date (so the oldest of them cannot be told), else None."""
    return next((r for r in records if instant(r.created_on) == NO_DATE), None) if len(records) > 1 else None


_TEAMS: dict[str, tuple[str, ...]] = {}  # each distinct TeamNames text split once (a cohort shares a few)


def split_teams(raw: object) -> tuple[str, ...]:
    """TeamNames arrive as one comma-separated string. Each of the first 4,096 distinct texts is split once and its
    tuple shared (every enrolment and coworker of a catalog read passes here; a cohort shares a handful of texts)."""
    if not isinstance(raw, str):
        return ()
    teams = _TEAMS.get(raw)
    if teams is None:
        teams = tuple(t.strip() for t in raw.split(",") if t.strip())
        if len(_TEAMS) < 4096:
            _TEAMS[raw] = teams
    return teams


@dataclass
class Catalog:
    """The courses, lessons, enrolments and coworkers that a spec set's names resolve against."""

    courses: dict[int, Course] = field(default_factory=dict)
    lessons: dict[int, Lesson] = field(default_factory=dict)
    members: dict[int, Member] = field(default_factory=dict)
    coworkers: dict[int, Coworker] = field(default_factory=dict)
    # Every email of the space's coworkers, when the run read them all (for "did you mean"), else empty.
    known_emails: list[str] = field(default_factory=list)
    # Coworkers named by Id who are not enrolled and could not be found: Id → why.
    absent_coworkers: dict[int, str] = field(default_factory=dict)

    _index: _CatalogIndex | None = field(default=None, repr=False, compare=False)

    def lessons_of(self, course_id: int) -> list[Lesson]:
        """The course's lessons in DisplayOrder (ties by Id)."""
        return self.index().lessons.get(course_id, [])

    def members_of(self, course_id: int) -> list[Member]:
        """The course's enrolments, by Id."""
        return self.index().members.get(course_id, [])

    def enrolments_of(self, course_id: int, coworker_id: int) -> list[Member]:
        """The coworker's enrolments in the course (one, unless the data is odd)."""
        return self.index().by_coworker.get((course_id, coworker_id), [])

    def index(self) -> _CatalogIndex:
        """Lookups by course and coworker, built once in time linear in the catalog (and again only if the
        catalog has grown since: the reader fills it before anything resolves against it)."""
        size = (len(self.lessons), len(self.members))
        if self._index is None or self._index.size != size:
            self._index = _CatalogIndex.build(self, size)
        return self._index


@dataclass
class _CatalogIndex:
    size: tuple[int, int]
    lessons: dict[int, list[Lesson]]
    members: dict[int, list[Member]]
    by_coworker: dict[tuple[int, int], list[Member]]

    @classmethod
    def build(cls, catalog: Catalog, size: tuple[int, int]) -> _CatalogIndex:
        lessons: dict[int, list[Lesson]] = {}
        for lesson in sorted(catalog.lessons.values(), key=lambda x: (x.display_order, x.id)):
            lessons.setdefault(lesson.course_id, []).append(lesson)
        members: dict[int, list[Member]] = {}
        by_coworker: dict[tuple[int, int], list[Member]] = {}
        for member in sorted(catalog.members.values(), key=lambda m: m.id):
            members.setdefault(member.course_id, []).append(member)
            by_coworker.setdefault((member.course_id, member.coworker_id), []).append(member)
        return cls(size, lessons, members, by_coworker)
