"""The read cache at its edges, over real HTTP against the emulator: records the service stamps in the past
(created through the API with the emulator's `backdate_minutes`), the request counts of scattered changes,
the fallback when reading lessons again costs as much as a full read, filters the server ignores, and the one
change no count can show, bounded by the maximum age."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cache import ReadCache
from reconciler.client import NexudusClient
from reconciler.config import CacheSettings
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.emulator.synthetic import build_space
from reconciler.state import StateReader
from reconciler.timestamps import timestamp_instant

PATH = "/api/content/coursecompletedlessons"
COMPLETIONS = "coursecompletedlessons"
PAGE = 20
MONTH = 30 * 24 * 60  # minutes: far older than any range


class Space:
    """A course of 6 lessons and 360 completions written over two days, served `page` a page."""

    def __init__(self, folder: Path, page: int = PAGE) -> None:
        self.store = Store()
        build_space(self.store, members=120, lessons=6, per_member=3)
        start = datetime.now(UTC) - timedelta(days=3)
        lessons = sorted(r["Id"] for r in self.store.iter_rows("courselessons"))
        for n, row in enumerate(self.store.iter_rows(COMPLETIONS)):  # 60 a lesson
            row["CreatedOn"] = row["UpdatedOn"] = precise_timestamp(start + timedelta(minutes=7 * n))
            row["CourseLessonId"] = lessons[n % len(lessons)]
        self.app = EmulatorApp(self.store, Settings(limits=Limits.off(), require_auth=False, max_page_size=page))
        self.server = BackgroundServer(self.app)
        self.server.__enter__()
        self.http = httpx.Client()
        self.api = NexudusClient(self.server.url, self.http)  # writes behind the reader's back, over HTTP
        self.folder = folder
        self.page = page
        self.lessons = sorted(r["Id"] for r in self.store.iter_rows("courselessons"))
        self.members = sorted(r["Id"] for r in self.store.iter_rows("coursemembers"))
        self.rng = random.Random(18)

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)
        self.store.close()

    def read(self, *, cache: bool = True, settings: CacheSettings | None = None) -> tuple[list[dict[str, Any]], int,
                                                                                           str]:
        client = NexudusClient(self.server.url, self.http)
        store = ReadCache(self.folder, self.server.url, settings or CacheSettings(), vouched=True) if cache else None
        records, partial = StateReader(client, store).completion_records(set(self.lessons))
        assert partial == []
        return records, client.stats.requests, store.last if store else "no cache"

    def compare(self, **kwargs: Any) -> tuple[bool, int, str]:
        """A read through the cache: whether it equals the full read made right after it, its requests, how."""
        got, requests, how = self.read(**kwargs)
        full, _, _ = self.read(cache=False)
        return got == full, requests, how

    def ids_in(self, lesson: int) -> list[int]:
        return sorted(r["Id"] for r in self.store.iter_rows(COMPLETIONS) if r["CourseLessonId"] == lesson)

    def create(self, lesson: int, backdate: tuple[float, float] = (0.0, 0.0)) -> int:
        """A completion created through the API, stamped `backdate` minutes before now (CreatedOn, UpdatedOn)."""
        self.app.settings.backdate_minutes = backdate
        try:
            return self.api.create(PATH, {"CourseLessonId": lesson, "CourseMemberId": self.rng.choice(self.members)})
        finally:
            self.app.settings.backdate_minutes = (0.0, 0.0)

    def delete(self, lesson: int) -> None:
        assert self.api.delete(PATH, self.rng.choice(self.ids_in(lesson)))

    def pages(self, lesson: int) -> int:
        return -(-len(self.ids_in(lesson)) // self.page)


@pytest.fixture
def space(tmp_path: Path) -> Iterator[Space]:
    made = Space(tmp_path / "cache")
    yield made
    made.close()


def test_the_emulator_stamps_a_created_record_in_the_past_when_asked(space: Space) -> None:
    record_id = space.create(space.lessons[0], backdate=(5, MONTH))
    row = space.store.rows[COMPLETIONS][record_id]
    created, updated = timestamp_instant(row["CreatedOn"]), timestamp_instant(row["UpdatedOn"])
    assert created is not None and updated is not None
    now = datetime.now(UTC)
    assert timedelta(minutes=4) < now - created < timedelta(minutes=6)
    assert timedelta(minutes=MONTH - 1) < now - updated < timedelta(minutes=MONTH + 1)


def test_a_create_with_an_old_updated_on_balanced_by_a_delete_in_its_lesson_is_found(space: Space) -> None:
    """Created now, its UpdatedOn a month old, and a delete in the same lesson: every count of the table and of
    the lesson stays as it was, and the range on UpdatedOn misses it; the read by CreatedOn finds it."""
    space.read()
    lesson = space.lessons[2]
    space.delete(lesson)
    space.create(lesson, backdate=(0, MONTH))
    exact, requests, how = space.compare()
    assert exact and how == "incremental"
    # The changes (none), the table's count (equal), those created since (the one), then a count per lesson and
    # the lesson with the delete again.
    assert requests == 3 + len(space.lessons) + space.pages(lesson)


def test_scattered_changes_cost_two_a_count_per_lesson_and_the_lessons_with_deletions(space: Space) -> None:
    space.read()
    for lesson in space.lessons:
        space.create(lesson)
    for row in [space.store.rows[COMPLETIONS][space.rng.choice(space.ids_in(x))] for x in space.lessons[:4]]:
        row["SystemId"], row["UpdatedOn"] = "edited", precise_timestamp(datetime.now(UTC))  # updates
    deleted = space.lessons[1], space.lessons[4]
    for lesson in deleted:
        space.delete(lesson)
    exact, requests, how = space.compare()
    assert exact and how == "incremental"
    assert requests == 2 + len(space.lessons) + sum(space.pages(x) for x in deleted)


def test_a_read_again_of_lessons_as_costly_as_a_full_read_is_a_full_read_and_says_why(space: Space) -> None:
    space.read()
    for lesson in space.lessons:  # a delete in every lesson: each would be read again
        space.delete(lesson)
    exact, requests, how = space.compare()
    assert exact
    assert how.startswith(f"full (6 of 6 lessons counted differ: counting the rest and reading those again costs "
                          f"at least {sum(space.pages(x) for x in space.lessons)} requests, a full read 18)")
    assert requests == 2 + len(space.lessons) + 18  # what was spent finding out, then the full read


def test_a_record_with_both_dates_old_and_no_delete_to_balance_it_is_found_by_its_lessons_count(
        space: Space) -> None:
    space.read()
    lesson = space.lessons[3]
    space.create(lesson, backdate=(MONTH, MONTH))
    exact, requests, how = space.compare()
    assert exact and how == "incremental"
    # The lesson (4 pages) is narrowed down instead of read again: one count splits its CreatedOn in halves, and
    # the half whose count differs (2 pages) is read.
    assert space.pages(lesson) == 4 and requests == 2 + len(space.lessons) + 1 + 2


def test_the_one_change_no_count_shows_is_bounded_by_the_maximum_age(space: Space) -> None:
    """Documented (cache.py, docs/real-nexudus.md): a delete balanced by a record whose both dates are older
    than the range leaves every count and every range as it was. The read stays wrong until the last full read
    is older than `cache.max_age_hours`."""
    space.read()
    lesson = space.lessons[0]
    space.delete(lesson)
    space.create(lesson, backdate=(MONTH, MONTH))
    exact, _, how = space.compare()
    assert not exact and how == "incremental"
    exact, _, how = space.compare(settings=CacheSettings(max_age_hours=1e-9))
    assert exact and how.startswith("full (the last full read is")
    assert space.compare() == (True, 3, "incremental")


@pytest.mark.parametrize("ignored", ["from_CourseCompletedLesson_CreatedOn", "to_CourseCompletedLesson_UpdatedOn"])
def test_a_date_filter_the_server_ignores_means_a_full_read_that_says_so(space: Space, ignored: str) -> None:
    space.read()
    space.app.settings.ignored_filters = frozenset({ignored})
    space.create(space.lessons[5])  # a record created since, which the other filter alone lets through
    exact, _, how = space.compare()
    assert exact
    assert how.startswith(f"full (the server ignored {ignored}="), how
    exact, _, how = space.compare()  # known for the rest of the run only: the next run asks again
    assert exact and how.startswith(f"full (the server ignored {ignored}=")


def test_a_lesson_count_the_server_does_not_bound_by_created_on_is_never_inexact(space: Space) -> None:
    """Counted by lesson alone, a lesson with records created since the range's start (the new one, and those
    written within the overlap) counts more than those held from before it (the answer's first record cannot
    show that the bound was ignored): it is read again, or a window of it is, which shows it."""
    space.read()
    space.app.settings.ignored_filters = frozenset({"to_CourseCompletedLesson_CreatedOn"})
    space.create(space.lessons[5])
    space.delete(space.lessons[0])
    exact, _, how = space.compare()
    assert exact
    assert how == "incremental" or how.startswith("full (the server ignored CourseCompletedLesson_CourseLesson, "
                                                  "from_CourseCompletedLesson_CreatedOn or to_"), how


def test_counts_by_lesson_match_what_the_server_holds(space: Space) -> None:
    """The test space is what the figures above assume: 60 completions a lesson, 3 pages each."""
    counts = Counter(r["CourseLessonId"] for r in space.store.iter_rows(COMPLETIONS))
    assert set(counts.values()) == {60} and {space.pages(x) for x in space.lessons} == {3}


def test_the_serve_flag_sets_the_backdating_and_is_documented() -> None:
    from reconciler.emulator.cli import build_parser, settings_from

    args = build_parser().parse_args(["serve", "--backdate-minutes", "0", "43200"])
    assert settings_from(args).backdate_minutes == (0.0, 43200.0)
    assert settings_from(build_parser().parse_args(["serve"])).backdate_minutes == (0.0, 0.0)
    docs = Path(__file__).parent.parent / "docs"
    assert "`--backdate-minutes CREATED UPDATED` (`backdate_minutes`)" in (docs / "emulator.md").read_text()
    assert "`backdate_minutes`" in (docs / "real-nexudus.md").read_text()


def test_a_delete_in_a_lesson_of_many_pages_is_narrowed_down_by_windows_of_created_on(tmp_path: Path) -> None:
    """Served 5 a page, a lesson is 12 pages: one delete in it is found by halving windows of CreatedOn (a count
    each) down to a window of 2 pages, which is read, instead of reading the 12 pages."""
    space = Space(tmp_path / "cache", page=5)
    try:
        space.read()
        lesson = space.lessons[2]
        space.delete(lesson)
        exact, requests, how = space.compare()
        assert exact and how == "incremental"
        # The changes, the table's count, 6 lesson counts; then 60 held halve to 30, 15 and 7 (3 counts) and the
        # window of 7 held (2 pages) is read.
        assert space.pages(lesson) == 12 and requests == 2 + len(space.lessons) + 3 + 2
        assert space.compare() == (True, 3, "incremental")
    finally:
        space.close()


@pytest.mark.parametrize(("stamp", "since"), [
    ("2026-08-27T08:47:09Z", True), ("2026-08-27T08:47:00.0000000Z", True), ("2026-08-27T08:46:59.9999999Z", False),
    ("2026-08-27T10:47:00+02:00", True), ("2026-08-27T10:46:59+02:00", False), ("2026-08-27T08:47:00", True),
    ("not a date", False), (None, False),
])
def test_created_since_judges_stamps_as_instants(stamp: str | None, since: bool) -> None:
    from reconciler.cache import created_since, minute_text

    moment = datetime(2026, 8, 27, 8, 47, tzinfo=UTC)
    assert created_since({"CreatedOn": stamp}, moment, minute_text(moment)) is since
