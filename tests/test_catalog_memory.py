"""The catalog read page by page, and the resolver's lean desired pairs: the same values as before, in less
memory (issue 17)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.client import NexudusClient
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space, write_spec
from reconciler.model import Catalog, Origin
from reconciler.resolve import DesiredPairs, resolve
from reconciler.spec import load_specs
from reconciler.state import (
    COURSES,
    COWORKERS,
    LESSONS,
    MEMBERS,
    SLIM_FIELDS,
    StateReader,
    course_from,
    coworker_from,
    lesson_from,
    member_from,
)

Pair = tuple[int, int]


class Space:
    def __init__(self, tmp_path: Path, settings: Settings, members: int) -> None:
        self.store = Store()
        self.emails = build_space(self.store, members=members, lessons=6, per_member=2)
        self.http = httpx.Client(transport=InProcessTransport(EmulatorApp(self.store, settings)))
        self.specs = load_specs([write_spec(tmp_path / "specs", self.emails, through=3)])

    def client(self) -> NexudusClient:
        return NexudusClient("http://local", self.http)

    def whole_catalog(self) -> Catalog:
        """The catalog built from whole raw tables, as the reader built it before it read page by page."""
        client = self.client()
        catalog = Catalog()
        for record in client.list_all(COURSES):
            catalog.courses[int(record["Id"])] = course_from(record)
        for record in client.list_all(LESSONS):
            if record["CourseId"] == 101:  # the course the spec names
                catalog.lessons[int(record["Id"])] = lesson_from(record)
        for record in client.list_all(MEMBERS):
            if record["CourseId"] == 101:
                catalog.members[int(record["Id"])] = member_from(record)
        coworkers = client.list_all(COWORKERS)
        for record in coworkers:
            catalog.coworkers[int(record["Id"])] = coworker_from(record)
        catalog.known_emails = [str(r.get("Email")) for r in coworkers if r.get("Email")]
        return catalog


@pytest.fixture
def small_pages(tmp_path: Path) -> Iterator[Space]:
    # 7 records a page: a cohort of 50 takes eight pages of enrolments and of coworkers.
    space = Space(tmp_path, Settings(limits=Limits.off(), require_auth=False, max_page_size=7), 50)
    yield space
    space.http.close()
    space.store.close()


def test_catalog_read_page_by_page_equals_the_one_built_from_whole_tables(small_pages: Space) -> None:
    client = small_pages.client()
    catalog = StateReader(client).catalog(small_pages.specs)
    expected = small_pages.whole_catalog()
    assert len(catalog.members) == 50 and len(catalog.coworkers) == 50
    assert catalog == expected
    assert client.stats.requests > 16  # it did read page by page


def test_catalog_through_an_ignored_filter_equals_the_whole_one(tmp_path: Path) -> None:
    ignored = frozenset({"CourseMember_Course", "CourseLesson_Course"})
    space = Space(tmp_path, Settings(limits=Limits.off(), require_auth=False, max_page_size=7,
                                     ignored_filters=ignored), 30)
    # Another course, whose records (first by Id) show that the server ignored the filter per course.
    space.store.load("courses", [{"Id": 102, "Title": "Other", "Active": True}])
    space.store.load("courselessons", [{"Id": 1999, "CourseId": 102, "Title": "Elsewhere", "DisplayOrder": 1}])
    space.store.load("coursemembers", [{"Id": 40_001, "CourseId": 102, "CoworkerId": 10_001}])
    try:
        client = space.client()
        reader = StateReader(client)
        catalog = reader.catalog(space.specs)
        assert catalog == space.whole_catalog()
        assert "/api/content/coursemembers?coursemember_course" in client.ignored_filters
        resolved = resolve(space.specs, catalog).completions[0]
        assert len(resolved.desired) == 30 * 3
        # The table the ignored filter brought is kept for the rest of the run: reading it again asks nothing.
        before = client.stats.requests
        assert [m["Id"] for m in reader.table(MEMBERS)] == [40_001, *sorted(catalog.members)]
        assert client.stats.requests == before
    finally:
        space.http.close()
        space.store.close()


def reference(rules: list[tuple[Origin, list[int], list[int]]]) -> dict[Pair, tuple[Origin, ...]]:
    """The dict the resolver built before: a key and a tuple per pair."""
    desired: dict[Pair, tuple[Origin, ...]] = {}
    for origin, lessons, members in rules:
        for member in members:
            for lesson in lessons:
                before = desired.get((member, lesson))
                desired[(member, lesson)] = (origin,) if before is None else (*before, origin)
    return desired


@pytest.mark.parametrize("seed", range(40))
def test_desired_pairs_read_exactly_as_the_dict_they_replace(seed: int) -> None:
    rng = random.Random(seed)
    rules = []
    for line in range(rng.randint(0, 8)):
        lessons = [rng.randint(1, 6) for _ in range(rng.randint(0, 5))]  # repeats, as a list may name one twice
        members = rng.sample(range(100, 120), rng.randint(0, 10))
        rules.append((Origin("s.yaml", line + 1), lessons, members))
    desired = DesiredPairs()
    for origin, lessons, members in rules:
        desired.declare(origin, lessons, members)
    expected = reference(rules)
    assert list(desired.items()) == list(expected.items())  # the same order: the planner's creates follow it
    assert list(desired) == list(expected) and list(desired.values()) == list(expected.values())
    assert len(desired) == len(expected) and bool(desired) == bool(expected)
    assert desired == expected and dict(desired) == expected and set(desired) == set(expected)
    for member in range(99, 121):
        for lesson in range(0, 8):
            pair = (member, lesson)
            assert (pair in desired) == (pair in expected)
            assert desired.get(pair) == expected.get(pair)
            if pair in expected:
                assert desired[pair] == expected[pair]
            else:
                with pytest.raises(KeyError):
                    desired[pair]


def test_a_rule_shares_one_tuple_of_places_across_its_pairs() -> None:
    desired = DesiredPairs()
    origin = Origin("s.yaml", 3)
    desired.declare(origin, [1, 2, 3], list(range(1000)))
    values = {id(v) for v in desired.values()}
    assert len(desired) == 3000 and len(values) == 1


def test_a_snapshot_after_the_catalog_still_holds_the_records_as_the_api_returned_them(small_pages: Space) -> None:
    reader = StateReader(small_pages.client())
    reader.catalog(small_pages.specs)
    after_catalog = reader.snapshot()
    assert after_catalog == StateReader(small_pages.client()).snapshot()
    assert "CompanyName" in after_catalog["coworkers"][0]  # a field the catalog does not keep


def test_an_export_snapshot_keeps_the_enrolments_and_coworkers_slim_and_otherwise_the_same(small_pages: Space
                                                                                           ) -> None:
    """Export (`columns`) writes a few fields of each enrolment and coworker: it holds only those (at 200,000
    members the raw records were hundreds of MiB), the same records and values as the raw snapshot's otherwise."""
    raw = StateReader(small_pages.client()).snapshot()
    lean = StateReader(small_pages.client()).snapshot(columns=True)
    for path, name in ((MEMBERS, "coursemembers"), (COWORKERS, "coworkers")):
        fields = set(SLIM_FIELDS[path])
        assert len(lean[name]) == len(raw[name]) == 50
        assert lean[name] == [{k: v for k, v in r.items() if k in fields} for r in raw[name]]
        assert all(set(r) - fields for r in raw[name])  # the raw ones carry more: the test tells them apart
    assert lean["courses"] == raw["courses"] and lean["courselessons"] == raw["courselessons"]


def test_the_desired_pairs_refuse_a_write_that_no_read_would_see() -> None:
    desired = DesiredPairs()
    desired.declare(Origin("a.yaml", 3, 5), [1, 2], [10])
    with pytest.raises(TypeError, match="read-only"):
        desired[(10, 3)] = ()
    with pytest.raises(TypeError, match="read-only"):
        desired.update({(10, 3): ()})
    copy = desired.copy()
    copy[(10, 3)] = ()
    assert (10, 3) in copy and (10, 3) not in desired and len(desired) == 2
