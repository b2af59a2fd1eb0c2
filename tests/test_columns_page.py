"""A page of records taken in at once (`CompletionColumns.add_page` and `ById.put_many`, what the full read does)
gives exactly what taking them in one at a time gives (`add` and `put`): the same columns to the last code, the
same records in the same order, the same error, odd records included. And the reader's columns are the records
it reads, whichever way it reads them."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.client import NexudusClient
from reconciler.columns import CompletionColumns
from reconciler.model import Catalog, Completion, Course, Lesson, Member
from reconciler.state import ById, StateReader


class Text(str):
    """A text that is not exactly a str (`add` keeps it as the value it is)."""


def guid(n: int) -> str:
    return str(uuid.UUID(int=n))


# Near misses of a lower-case GUID's text: what int(..., 16) or a loose test would take, a character out of place.
def near_misses(text: str) -> list[str]:
    return [text.upper(), text[:9] + text[9].upper() + text[10:] if text[9].isalpha() else text.upper(),
            text.replace("-", "_", 1), "+" + text[1:], " " + text[1:], text[:35] + " ", text[:8] + "_" + text[9:],
            text[:35] + "\n", text[:8] + "\n" + text[9:], text[:12] + "٣" + text[13:], text[:12] + "g" + text[13:],
            text + "0", text[:-1], text.replace("-", ""), text[:8] + text[9:] + "0", Text(text)]


unique_ids = st.one_of(
    st.none(), st.integers(0, 2**128 - 1).map(guid), st.integers(0, 2**128 - 1).map(lambda n: guid(n).upper()),
    st.integers(0, 2**128 - 1).flatmap(lambda n: st.sampled_from(near_misses(guid(n)))),
    st.text(max_size=40), st.sampled_from(["0" * 8 + "-" * 4 + "0" * 24, "1" * 36, "-" * 36, "\n".join("ab")]))
STAMPS = ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00.5Z", "", "not a date")
stamps = st.one_of(st.sampled_from(STAMPS), st.sampled_from([None, 1, True, 1.0, Text(STAMPS[0])]),
                   st.text(max_size=30), st.text("0123456789-:.%TZ\n", max_size=40))
markers = st.sampled_from([None, "reconciler:a", "reconciler:b", 1, True, Text("reconciler:a")])
labels = st.sampled_from([None, "", "Own", "Other", 5])
ABSENT = object()


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"Id": draw(st.integers(1, 60)), "CourseMemberId": draw(st.integers(10, 16)),
                              "CourseLessonId": draw(st.integers(1, 6)), "CreatedOn": draw(stamps),
                              "UpdatedOn": draw(stamps)}
    for field, values in (("SystemId", markers), ("UniqueId", unique_ids), ("CourseLessonTitle", labels),
                          ("CourseMemberCoworkerFullName", labels)):
        value = draw(st.one_of(st.just(ABSENT), values))
        if value is not ABSENT:
            record[field] = value
    return record


@st.composite
def lower_guid_pages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records whose UniqueIds are all lower-case GUIDs but, perhaps, one near miss: the page test's edge."""
    found = draw(st.lists(records(), min_size=1, max_size=12))
    for record in found:
        record["UniqueId"] = guid(draw(st.integers(0, 2**128 - 1)))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(found) - 1))
        found[at]["UniqueId"] = draw(st.sampled_from(near_misses(found[at]["UniqueId"])))
    return found


@st.composite
def paged(draw: st.DrawFn, items: list[Any]) -> list[list[Any]]:
    cuts = sorted(draw(st.lists(st.integers(0, len(items)), max_size=4)))
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True)]


catalog_maps = st.tuples(st.dictionaries(st.integers(1, 6), st.sampled_from(["", "Lesson", "Title"])),
                         st.dictionaries(st.integers(10, 16), st.sampled_from(["", "Name"])))


FIELDS = [field.name for field in dataclasses.fields(Completion)]


def typed(c: Completion) -> tuple[tuple[type, Any], ...]:
    """A completion's fields with their types (a `Text` equals its str: the columns must keep which it was)."""
    return tuple((type(v), v) for v in map(c.__getattribute__, FIELDS))


def assert_same_columns(left: CompletionColumns, right: CompletionColumns) -> None:
    assert [typed(c) for c in left] == [typed(c) for c in right]
    for a, b in ((left.ids, right.ids), (left.member_ids, right.member_ids), (left.lesson_ids, right.lesson_ids)):
        assert (a.typecode, a) == (b.typecode, b)
    for one, other in ((left.created, right.created), (left.updated, right.updated), (left.systems, right.systems)):
        assert (one.codes.typecode, one.codes) == (other.codes.typecode, other.codes)
        assert [(type(v), v) for v in one.values] == [(type(v), v) for v in other.values]
        assert (one.packer is None) == (other.packer is None)
        if one.packer is not None and other.packer is not None:
            assert (one.packer.shapes, one.packer.values) == (other.packer.shapes, other.packer.values)
    assert left.nbytes() == right.nbytes()


def one_at_a_time(pages: list[list[dict[str, Any]]], titles: dict[int, str],
                  names: dict[int, str]) -> tuple[CompletionColumns, list[int]]:
    columns = CompletionColumns(titles, names)
    return columns, [columns.add(record) for page in pages for record in page]


def by_page(pages: list[list[dict[str, Any]]], titles: dict[int, str],
            names: dict[int, str]) -> tuple[CompletionColumns, list[int]]:
    columns = CompletionColumns(titles, names)
    return columns, [row for page in pages for row in columns.add_page(page)]


@settings(max_examples=500, deadline=None)
@given(st.lists(records(), max_size=30).flatmap(paged), catalog_maps)
def test_a_page_at_a_time_makes_the_columns_a_record_at_a_time_makes(pages: list[list[dict[str, Any]]],
                                                                      maps: tuple[dict[int, str], dict[int, str]]
                                                                      ) -> None:
    expected, expected_rows = one_at_a_time(pages, *maps)
    found, rows = by_page(pages, *maps)
    assert rows == expected_rows
    assert_same_columns(found, expected)


@settings(max_examples=300, deadline=None)
@given(st.lists(lower_guid_pages(), max_size=4), catalog_maps)
def test_unique_ids_a_page_at_a_time_are_exactly_the_regexes_guids(pages: list[list[dict[str, Any]]],
                                                                    maps: tuple[dict[int, str], dict[int, str]]
                                                                    ) -> None:
    expected, _ = one_at_a_time(pages, *maps)
    found, _ = by_page(pages, *maps)
    assert_same_columns(found, expected)
    assert [found.unique_id(row) for row in range(len(found))] == [r.get("UniqueId") for p in pages for r in p]


def test_many_distinct_stamps_and_shapes_pack_as_one_at_a_time() -> None:
    """Past 4,096 distinct stamps a column packs them, and past 256 shapes keeps them whole: mid-page too."""
    made = [{"Id": i, "CourseMemberId": i % 13, "CourseLessonId": i % 5, "UniqueId": guid(i * 7919),
             "CreatedOn": f"2025-01-01T{i:06d}Z" + "x" * (i % 300) if i % 7 else None,
             "UpdatedOn": f"2026-01-01T00:00:00.{i:07d}Z", "SystemId": f"reconciler:{i % 3}" if i % 2 else None}
            for i in range(9_000)]
    pages = [made[at:at + 700] for at in range(0, len(made), 700)]
    expected, _ = one_at_a_time(pages, {}, {})
    found, _ = by_page(pages, {}, {})
    assert found.created.packer is not None and len(found.created.packer.shapes) == 256
    assert_same_columns(found, expected)


# Columns whose stamps are packed (past 4,096 distinct): CreatedOn with its 256 shapes taken, UpdatedOn with few.
PACKED = [{"Id": i, "CourseMemberId": 10, "CourseLessonId": 1, "UpdatedOn": f"2026-01-01T00:00:00.{i:07d}Z",
           "CreatedOn": f"2025-01-01T{i:06d}{chr(97 + i % 300 // 26)}{chr(97 + i % 26)}"} for i in range(4200)]


@settings(max_examples=100, deadline=None)
@given(st.lists(records(), max_size=30).flatmap(paged))
def test_a_page_at_a_time_makes_the_columns_a_record_at_a_time_makes_once_packed(
        pages: list[list[dict[str, Any]]]) -> None:
    expected, _ = one_at_a_time([PACKED, *pages], {}, {})
    found, _ = by_page([PACKED, *pages], {}, {})
    assert found.created.packer is not None and found.updated.packer is not None
    assert_same_columns(found, expected)


@pytest.mark.parametrize("cuts", [(4095, 4096), (4096, 4097), (4095, 4097), (1, 4097)])
def test_the_4097th_distinct_stamp_packs_the_column_as_one_at_a_time(cuts: tuple[int, int]) -> None:
    made = [{"Id": i, "CourseMemberId": 1, "CourseLessonId": 1, "CreatedOn": STAMPS[0],
             "UpdatedOn": f"2026-01-01T00:00:00.{i:07d}Z"} for i in range(4097)]
    pages = [made[:cuts[0]], made[cuts[0]:cuts[1]], made[cuts[1]:]]
    expected, _ = one_at_a_time(pages, {}, {})
    found, _ = by_page(pages, {}, {})
    assert found.updated.packer is not None
    assert_same_columns(found, expected)


class Untitled:
    """A title that cannot be made a text."""

    def __str__(self) -> str:
        raise ValueError("no text")


def broken(record: dict[str, Any], **change: Any) -> dict[str, Any]:
    return {k: v for k, v in {**record, **change}.items() if v is not ABSENT}


def outcome(run: Callable[[], Any]) -> tuple[Any, ...]:
    """What `run` returns, or the error it raises (its type and message)."""
    try:
        return ("returned", run())
    except Exception as e:
        return ("raised", type(e), str(e))


GOOD = {"Id": 5, "CourseMemberId": 10, "CourseLessonId": 1, "CreatedOn": STAMPS[0], "UpdatedOn": STAMPS[0],
        "UniqueId": guid(5)}


@pytest.mark.parametrize("bad", [broken(GOOD, CourseMemberId=ABSENT), broken(GOOD, Id="7"),
                                 broken(GOOD, Id=2**63), broken(GOOD, CreatedOn=["x"]),
                                 broken(GOOD, UniqueId={"a": 1}), broken(GOOD, CourseLessonTitle=Untitled()),
                                 broken(GOOD, CourseLessonId=1.5), broken(GOOD, CourseLessonId=[1])])
def test_a_page_with_a_broken_record_raises_what_one_at_a_time_raises(bad: dict[str, Any]) -> None:
    page = [GOOD, broken(GOOD, Id=6), bad, broken(GOOD, Id=8, CourseMemberId=ABSENT)]
    expected = outcome(lambda: one_at_a_time([page], {}, {}))
    assert expected[0] == "raised"
    assert outcome(lambda: by_page([page], {}, {})) == expected


def all_puts(pages: Sequence[Sequence[tuple[int, Any]]], many: bool) -> ById[Any]:
    found: ById[Any] = ById()
    for page in pages:
        if many:
            found.put_many([i for i, _ in page], [k for _, k in page])
        else:
            for record_id, kept in page:
                found.put(record_id, kept)
    return found


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.lists(st.tuples(st.integers(-3, 40), st.integers(0, 99))),
                 st.lists(st.tuples(st.integers(-3, 40), st.text(max_size=2))),
                 st.lists(st.integers(0, 60), unique=True).map(lambda ids: [(i, i * 2) for i in sorted(ids)]))
       .flatmap(paged))
def test_put_many_keeps_what_put_keeps_in_the_same_order(pages: list[list[tuple[int, Any]]]) -> None:
    """Ascending or not, duplicates (the last wins), ints kept (an array) or anything else (a list)."""
    expected, found = all_puts(pages, many=False).in_order(), all_puts(pages, many=True).in_order()
    assert (type(found), list(found)) == (type(expected), list(expected))


@pytest.mark.parametrize("ids", [[1, 2, "3"], [1, 2, 2**63], [3, 2, 1.5], [1, 2, 3]])
@pytest.mark.parametrize("kept", [[0, 1, 2], [0, 1, "2"], [0, 1, 2**63]])
def test_put_many_raises_what_put_raises(ids: list[Any], kept: list[Any]) -> None:
    pages = [[(0, 0)], list(zip(ids, kept, strict=True))]
    expected = outcome(lambda: list(all_puts(pages, many=False).in_order()))
    assert outcome(lambda: list(all_puts(pages, many=True).in_order())) == expected


# --- through the reader ----------------------------------------------------------------------------------

FILTERS = {"CourseCompletedLesson_CourseLesson": "CourseLessonId", "CourseCompletedLesson_CourseMember":
           "CourseMemberId", "CourseCompletedLesson_SystemId": "SystemId"}


@st.composite
def tables(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A completions table as the service may list it: distinct Ids in any order, fields of the types the client
    takes (UniqueId and SystemId text or null or absent), odd values otherwise."""
    found = draw(st.lists(records(), max_size=40, unique_by=lambda r: r["Id"]))
    for record in found:
        for field in ("CreatedOn", "UpdatedOn"):
            if type(record[field]) is not str:
                record[field] = str(record[field])
        for field in ("SystemId", "UniqueId", "CourseLessonTitle", "CourseMemberCoworkerFullName"):
            if field in record and record[field] is not None and type(record[field]) is not str:
                record[field] = str(record[field])
    return found


@settings(max_examples=150, deadline=None)
@given(tables(), st.sets(st.integers(1, 6), min_size=1), st.one_of(st.none(), st.sets(st.integers(10, 16))),
       st.lists(st.sampled_from(["reconciler:a", "reconciler:b"]), unique=True), st.integers(3, 9),
       catalog_maps)
def test_the_readers_columns_are_the_records_it_reads(table: list[dict[str, Any]], lessons: set[int],
                                                      members: set[int] | None, marked: list[str], cap: int,
                                                      maps: tuple[dict[int, str], dict[int, str]]) -> None:
    """Wholesale or filtered per lesson or per member (a record read twice, Ids out of order), pages of `cap`:
    the columns a read makes equal the raw records it keeps, as the reader makes each."""
    titles, names = maps
    if marked:  # owned mode reads only lists that carry SystemId (it stops at one that does not: test_reads)
        for record in table:
            record.setdefault("SystemId", None)

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        rows = [r for r in table
                if all(str(r.get(field)) == params[name] for name, field in FILTERS.items() if name in params)]
        size, page = min(int(params["size"]), cap), int(params["page"])
        return httpx.Response(200, json={"Records": rows[(page - 1) * size: page * size], "TotalItems": len(rows),
                                         "HasNextPage": page * size < len(rows)})

    catalog = Catalog(courses={1: Course(1, "Course")})
    catalog.lessons = {i: Lesson(i, 1, title, i) for i, title in titles.items()}
    catalog.members = {i: Member(i, 1, i, name) for i, name in names.items()}
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        found, partial = StateReader(NexudusClient("https://x.example", http)).completions(
            lessons, members, marked, catalog=catalog)
        raw, raw_partial = StateReader(NexudusClient("https://x.example", http)).completion_records(
            lessons, members, marked)
    assert partial == raw_partial == []
    expected = [Completion(r["Id"], r["CourseMemberId"], r["CourseLessonId"], r["CreatedOn"], r["UpdatedOn"],
                           r.get("SystemId"), r.get("UniqueId"),
                           titles.get(r["CourseLessonId"]) or str(r.get("CourseLessonTitle") or ""),
                           names.get(r["CourseMemberId"]) or str(r.get("CourseMemberCoworkerFullName") or ""))
                for r in raw]
    assert [typed(c) for c in found] == [typed(c) for c in expected]
    assert sorted(c.id for c in found) == [c.id for c in found]
