"""The emulator's lists cost their page, not their table, and stay exact: every page a slice of a kept order,
kept right across writes, writes out of Id order and records edited in place."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import ENTITIES, Row, Store, StoredRow, render_timestamp

from .conftest import EmulatorFactory

COMPLETIONS = "/api/content/coursecompletedlessons"
MEMBERS = "/api/content/coursemembers"
COWORKERS = "/api/spaces/coworkers"
LESSONS = (2001, 2002, 2003, 2004)
STAMP = "2026-01-01T00:00:00.0000000Z"


def record(record_id: int, **fields: Any) -> Row:
    return {"Id": record_id, "UniqueId": f"u{record_id}", "CreatedOn": STAMP, "UpdatedOn": STAMP,
            "UpdatedBy": "test@example.com", "IsNew": False, "SystemId": None, **fields}


def space(members: int = 60) -> Store:
    """One course of four lessons; member n completed the lessons n % 4 + 1 of them, from the first."""
    store = Store()
    store.load("courses", [record(101, Title="Cohort", Active=True, DisplayOrder=1, GroupName=None,
                                  Visibility="Everyone")])
    store.load("courselessons", [record(i, CourseId=101, Title=f"Lesson {n + 1}", DisplayOrder=n + 1, Active=True,
                                        SectionTitle=None, UnlockType="Always", CompletionType="Manual")
                                 for n, i in enumerate(LESSONS)])
    store.load("coworkers", [record(10_001 + n, FullName=f"Member {n}", Email=f"m{n}@example.com",
                                    CompanyName="Co", TeamNames=None) for n in range(members)])
    store.load("coursemembers", [record(50_001 + n, CourseId=101, CoworkerId=10_001 + n, Approved=True,
                                        Blocked=False) for n in range(members)])
    rows, next_id = [], 900_001
    for n in range(members):
        for lesson in LESSONS[:n % 4 + 1]:
            rows.append(record(next_id, CourseLessonId=lesson, CourseMemberId=50_001 + n))
            next_id += 1
    store.load("coursecompletedlessons", rows)
    return store


def client(store: Store, **settings: Any) -> httpx.Client:
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False, **settings))
    return httpx.Client(transport=InProcessTransport(app), base_url="http://emulator")


def read_all(http: httpx.Client, path: str, size: int, **params: Any) -> tuple[list[int], set[int]]:
    """Every Id of a listing, page by page as a client pages it, and the TotalItems each page claimed."""
    found: list[int] = []
    totals: set[int] = set()
    page = 1
    while True:
        body = http.get(path, params={**params, "page": page, "size": size}).json()
        found += [r["Id"] for r in body["Records"]]
        totals.add(body["TotalItems"])
        if not body["HasNextPage"]:
            return found, totals
        page += 1


class Counting(StoredRow):
    """A stored record that notes every read of it, to show which records a request looked at."""

    __slots__ = ()
    touched: ClassVar[set[int]] = set()

    def _note(self) -> None:
        Counting.touched.add(dict.__getitem__(self, "Id"))

    def get(self, key: str, default: Any = None) -> Any:
        self._note()
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self._note()
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note()
        return super().__contains__(key)


def counted(store: Store, collection: str) -> None:
    table = store.rows[collection]
    for record_id, row in table.items():
        table[record_id] = Counting(row)


# --- exact ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "filters", "wanted"), [
    (COMPLETIONS, {}, lambda r: True),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson": 2003}, lambda r: r["CourseLessonId"] == 2003),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson": 2002, "CourseCompletedLesson_CourseMember": 50_004},
     lambda r: r["CourseLessonId"] == 2002 and r["CourseMemberId"] == 50_004),
    (COMPLETIONS, {"CourseCompletedLesson_CourseMember_Coworker_FullName": "member 1"},
     lambda r: str(r["CourseMemberId"] - 50_001).startswith("1")),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson": 2001, "CourseCompletedLesson_CourseLesson_Title": "2"},
     lambda r: False),
    (MEMBERS, {"CourseMember_Course": 101}, lambda r: True),
    (MEMBERS, {"CourseMember_Course": 999}, lambda r: False),
    (COWORKERS, {"id": 10_007}, lambda r: r["Id"] == 10_007),
])
def test_paging_a_list_either_way_gives_each_record_once_in_order(path: str, filters: dict[str, Any],
                                                                   wanted: Any) -> None:
    store = space()
    collection = path.rsplit("/", 1)[-1]
    expected = [r["Id"] for r in store.iter_rows(collection) if wanted(r)]
    with client(store) as http:
        for size in (1, 7, 1000):
            ascending, totals = read_all(http, path, size, orderBy="Id", **filters)
            descending, _ = read_all(http, path, size, orderBy="Id", dir="-1", **filters)
            assert ascending == expected and totals == {len(expected)}
            assert descending == expected[::-1]


def test_sorting_by_a_field_pages_the_same_order_as_one_big_page() -> None:
    with client(space()) as http:
        whole = http.get(COMPLETIONS, params={"orderBy": "CourseMemberCoworkerFullName", "size": 1000}).json()
        names = [r["CourseMemberCoworkerFullName"] for r in whole["Records"]]
        assert names == sorted(names, key=str.casefold) and len(set(names)) > 10
        for direction in ("Ascending", "Descending"):
            one = [r["Id"] for r in http.get(COMPLETIONS, params={
                "orderBy": "CourseMemberCoworkerFullName", "dir": direction, "size": 1000}).json()["Records"]]
            paged, _ = read_all(http, COMPLETIONS, 9, orderBy="CourseMemberCoworkerFullName", dir=direction)
            assert paged == one and len(paged) == len(whole["Records"])
            assert (one == [r["Id"] for r in whole["Records"]]) == (direction == "Ascending")


def test_writes_between_pages_show_on_the_next_page() -> None:
    store = space()
    # Members 2 and 20-29: 26 records.
    name_filter = {"CourseCompletedLesson_CourseMember_Coworker_FullName": "Member 2"}
    with client(store) as http:
        first = http.get(COMPLETIONS, params={**name_filter, "size": 10, "page": 1}).json()
        assert first["TotalItems"] == 26
        first_ids = [r["Id"] for r in first["Records"]]
        assert http.delete(f"{COMPLETIONS}/{first_ids[0]}").status_code == 200
        made = http.post(COMPLETIONS, json={"CourseLessonId": 2004, "CourseMemberId": 50_003})  # Member 2's
        made_id = made.json()["Value"]["Id"]
        second = http.get(COMPLETIONS, params={**name_filter, "size": 10, "page": 2}).json()
        assert second["TotalItems"] == 26 and second["Records"][0]["Id"] != first_ids[-1]
        assert second["Records"][0]["Id"] == read_all(http, COMPLETIONS, 1000, **name_filter)[0][10]
        by_lesson, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_CourseLesson=2004)
        assert by_lesson[-1] == made_id and first_ids[0] not in read_all(http, COMPLETIONS, 5)[0]


def test_a_record_edited_in_place_is_listed_as_it_now_is() -> None:
    store = space()
    with client(store) as http:
        before, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_CourseLesson=2001)
        marked, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_SystemId="edited")
        assert marked == []
        row = store.rows["coursecompletedlessons"][before[0]]
        row["CourseLessonId"] = 2004  # behind the API's back, as a test of a changed server does
        row.update(SystemId="edited")
        after, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_CourseLesson=2001)
        moved, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_CourseLesson=2004)
        marked, _ = read_all(http, COMPLETIONS, 5, CourseCompletedLesson_SystemId="edited")
    assert after == before[1:] and before[0] in moved and marked == [before[0]]


def test_ids_allocated_out_of_order_still_list_in_id_order(emulator: EmulatorFactory) -> None:
    store = space(members=8)
    server = emulator(store=store, settings=Settings(limits=Limits.off(), require_auth=False,
                                                     id_allocation="blocks", rng_seed=3))
    with httpx.Client(base_url=server.url) as http:
        made = [http.post(COMPLETIONS, json={"CourseLessonId": 2002, "CourseMemberId": 50_002}).json()["Value"]["Id"]
                for _ in range(12)]
        assert made != sorted(made)
        for gone in made[::3]:
            assert http.delete(f"{COMPLETIONS}/{gone}").status_code == 200
        listed, totals = read_all(http, COMPLETIONS, 4)
        lesson, _ = read_all(http, COMPLETIONS, 4, CourseCompletedLesson_CourseLesson=2002)
    kept = set(made) - set(made[::3])
    assert listed == sorted(listed) and kept <= set(listed) and totals == {len(listed)}
    assert lesson == sorted(lesson) and kept <= set(lesson)
    assert [r["Id"] for r in store.iter_rows("coursecompletedlessons")] == listed


# --- cost ----------------------------------------------------------------------------------------

def test_a_page_reads_only_the_records_on_it() -> None:
    store = space(members=400)  # 1,000 completions
    counted(store, "coursecompletedlessons")
    all_ids = list(store.rows["coursecompletedlessons"])
    with client(store) as http:
        Counting.touched = set()
        page = http.get(COMPLETIONS, params={"page": 30, "size": 10, "orderBy": "Id"}).json()
        assert [r["Id"] for r in page["Records"]] == all_ids[290:300] and page["TotalItems"] == 1000
        assert Counting.touched == set(all_ids[290:300])

        Counting.touched = set()
        page = http.get(COMPLETIONS, params={"page": 3, "size": 10, "dir": "-1"}).json()
        assert Counting.touched == {r["Id"] for r in page["Records"]} == set(all_ids[-30:-20])

        # A filter by an Id column reads its index (built by the first such read, which looks at every record).
        http.get(COMPLETIONS, params={"CourseCompletedLesson_CourseLesson": 2003, "size": 10})
        Counting.touched = set()
        page = http.get(COMPLETIONS, params={"CourseCompletedLesson_CourseLesson": 2003, "size": 10,
                                             "page": 4}).json()
        assert len(page["Records"]) == 10 and Counting.touched == {r["Id"] for r in page["Records"]}

        # Any other filter looks at every record once, for the first page; the pages after it do not.
        name_filter = {"CourseCompletedLesson_CourseMember_Coworker_FullName": "member 3"}
        Counting.touched = set()
        http.get(COMPLETIONS, params={**name_filter, "size": 10})
        assert Counting.touched == set(all_ids)
        Counting.touched = set()
        page = http.get(COMPLETIONS, params={**name_filter, "size": 10, "page": 2}).json()
        assert len(page["Records"]) == 10 and Counting.touched == {r["Id"] for r in page["Records"]}


# --- units ---------------------------------------------------------------------------------------

def test_rendered_records_carry_the_same_computed_fields_as_value() -> None:
    store = space(members=6)
    store.load("coursecompletedlessons", [record(999_999, CourseLessonId=7, CourseMemberId=None)])  # no parents
    store.load("coursemembers", [record(59_999, CourseId=101, CoworkerId=10_003, Approved=True, Blocked=False,
                                        CourseTitle="kept as stored")])
    for entity in ENTITIES.values():
        for row in store.iter_rows(entity.collection):
            shown = store.render(entity, row, full=False)
            for name in entity.computed_fields:
                assert shown[name] == store.value(entity, row, name), (entity.name, name)
    member = store.render(ENTITIES["coursemembers"], store.rows["coursemembers"][50_004], full=False)
    assert (member["CourseTitle"], member["CoworkerFullName"], member["LastCompletedLessonId"]) == (
        "Cohort", "Member 3", 2004)
    assert store.render(ENTITIES["coursemembers"], store.rows["coursemembers"][59_999],
                        full=False)["CourseTitle"] == "kept as stored"


@pytest.mark.parametrize(("stamp", "second", "precise", "millis"), [
    ("2026-01-01T10:00:00.1234567Z", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.1234567Z",
     "2026-01-01T10:00:00.123Z"),
    (" 2026-01-01T10:00:00.50Z ", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.5Z", "2026-01-01T10:00:00.500Z"),
    ("2026-01-01T10:00:00", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.000Z"),
    ("2026-01-01T01:00:00.123456789+02:00", "2025-12-31T23:00:00Z", "2025-12-31T23:00:00.1234567Z",
     "2025-12-31T23:00:00.123Z"),
    ("2026-02-30T10:00:00Z", "2026-02-30T10:00:00Z", "2026-02-30T10:00:00Z", "2026-02-30T10:00:00Z"),
    ("yesterday", "yesterday", "yesterday", "yesterday"),
])
def test_dates_render_in_each_form(stamp: str, second: str, precise: str, millis: str) -> None:
    assert render_timestamp(stamp, "second") == second
    assert render_timestamp(stamp, "precise") == precise
    assert render_timestamp(stamp, "millis") == millis


def test_edits_in_place_are_counted_and_the_store_keeps_its_own_copy() -> None:
    given = record(5, FullName="A", Email="a@example.com", CompanyName=None, TeamNames=None)
    store = Store()
    store.load("coworkers", [given])
    stored = store.rows["coworkers"][5]
    given["FullName"] = "changed after loading"
    assert stored["FullName"] == "A"
    before = store.generation
    edits: list[Callable[[Row], object]] = [
        lambda r: r.__setitem__("FullName", "B"), lambda r: r.update(Email="b@example.com"),
        lambda r: r.pop("TeamNames"), lambda r: r.setdefault("TeamNames", "T")]
    for edit in edits:
        edit(stored)
        assert store.generation != before
        before = store.generation
    assert store.generation == before  # reading is not an edit
