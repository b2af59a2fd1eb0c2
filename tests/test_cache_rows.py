"""The rows a read cache holds (`cache.Rows`): records kept as columns, each given back exactly as it went in
(its keys in their order, its values and their types), whatever a merge puts, replaces or drops after."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.cache import Rows, minute_text, stamp_since

START = datetime(2026, 3, 1, tzinfo=UTC)


def same(a: Any, b: Any) -> bool:
    """Exactly the same JSON value: types, key order, NaN for NaN, the sign of a zero."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    return bool(a == b)


def lists_record(n: int, member: int = 1, *, stamp: str | None = None) -> dict[str, Any]:
    """A record as the emulator lists it (14 keys)."""
    made = stamp or (START + timedelta(seconds=7 * n)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    return {"Id": 900_000 + n, "CourseLessonId": 2000 + n % 20, "CourseMemberId": 50_000 + member,
            "CourseLessonTitle": f"Lesson {n % 20}", "CourseMemberCoworkerFullName": f"Member {member}",
            "CourseMemberCoworkerCompanyName": "Co", "CourseMemberCoworkerTeamNames": "Cohort",
            "UniqueId": str(uuid.UUID(int=n * 7919 + 1)), "CreatedOn": made, "UpdatedOn": made,
            "UpdatedBy": "bench@example.com", "IsNew": False, "SystemId": None, "ToStringText": f"Lesson {n % 20}"}


ODD_VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 1 << 70, -(1 << 70), (1 << 63) - 1, -(1 << 63), 1.0, -0.0, 0.0, float("nan"),
    float("inf"), float("-inf"), "", "1", "True", "x\ny", "\udc00 lone", "é 12", "2026-03-01T10:00:00Z",
    "2026-03-01T10:00:00.1234567Z", "0f8fad5b-d9cb-469f-a165-70867728950e", "0F8FAD5B-D9CB-469F-A165-70867728950E",
    "0f8fad5b-d9cb-469f-a165-70867728950", [1, {"a": True}], {"b": [None, 1.5], "a": {}}, [], {},
]


def test_each_record_comes_back_as_it_went_in_whatever_its_values() -> None:
    """Values of every kind, in columns chosen by the first page (ints, GUIDs, texts): a bool is never an int,
    an int past 64 bits, a NaN or a nested object comes back as it went in; keys keep their order per shape."""
    records = [lists_record(n) for n in range(30)]
    for at, value in enumerate(ODD_VALUES * 2):  # each kind of value under each key, after pages that set a kind
        record = lists_record(100 + at)
        key = list(record)[at % len(record)]
        if key not in ("Id", "CourseLessonId"):
            record[key] = value
        records.append(record)
    records.append({"CourseLessonId": 7, "Extra": [1, 2], "Id": 5})  # another shape: other keys, another order
    rows = Rows()
    assert rows.load(records[:30]) == 30 and rows.load(records[30:]) == len(records) - 30
    assert len(rows) == len(records)
    for record in records:
        back = rows.record(record["Id"])
        assert back is not None and same(back, record), (record, back)
    assert rows.record(1) is None
    flags = Rows()
    flags.load([{**lists_record(n), "IsNew": value} for n, value in enumerate([False, True, 1, 0, 1.0, True])])
    assert [type(flags.values("IsNew")[n]) for n in range(6)] == [bool, bool, int, int, float, bool]


def test_put_replace_and_drop_as_a_dict_by_id_would() -> None:
    rows = Rows()
    rows.load([lists_record(n) for n in range(10)])
    changed = {**lists_record(3), "UpdatedOn": "2026-04-01T00:00:00.000Z", "SystemId": "marker"}
    rows.put(changed)
    changed["SystemId"] = "changed after it was put"  # the rows hold a copy
    rows.put({"Id": 1, "CourseLessonId": 9, "New": True})
    rows.drop(900_005)
    rows.drop(1)
    rows.put({"Id": 900_005, "CourseLessonId": 2, "Back": 1.5})
    assert len(rows) == 10
    assert rows.record(900_003)["SystemId"] == "marker"  # type: ignore[index]
    assert rows.record(1) is None and same(rows.record(900_005), {"Id": 900_005, "CourseLessonId": 2, "Back": 1.5})
    assert rows.records([900_003, 1, 900_009]) == [rows.record(900_003), None, lists_record(9)]
    try:
        rows.drop(1)
    except KeyError:
        pass
    else:
        raise AssertionError("dropping what is not held is a KeyError")
    every = [record for chunk in rows.chunks() for record in chunk]
    assert [r["Id"] for r in every] == sorted(r["Id"] for r in every) and len(every) == 10
    scoped = [record for chunk in rows.chunks({2, 2003}) for record in chunk]
    assert [r["Id"] for r in scoped] == [900_003, 900_005]


def test_an_id_loaded_twice_is_held_once_as_last_loaded_and_ids_need_not_ascend() -> None:
    """A full read's pages can bring a record twice (it moved while the read ran): the file holds both, the rows
    the last, once; Ids that do not ascend are found all the same."""
    first, then = lists_record(4), {**lists_record(4), "UpdatedOn": "2026-05-01T00:00:00Z"}
    records = [lists_record(n) for n in (9, 2, 7)] + [first] + [lists_record(n) for n in (1, 8)] + [then]
    rows = Rows()
    assert rows.load(records[:4]) == 4 and rows.load(records[4:]) == 3
    assert len(rows) == 6 and rows.record(900_004) == then
    assert sorted(rows.ids()) == [900_000 + n for n in (1, 2, 4, 7, 8, 9)]
    assert [r["Id"] for chunk in rows.chunks() for r in chunk] == [900_000 + n for n in (1, 2, 4, 7, 8, 9)]


def test_many_distinct_stamps_and_names_are_packed_exactly_in_well_under_100_bytes_a_record() -> None:
    """20,000 records like the emulator's, each stamp distinct (packed once past a few thousand), with a few odd
    values among them: every record back exactly, at well under 100 bytes a record in the rows' arrays."""
    count = 20_000
    records = [lists_record(n, member=n // 10) for n in range(count)]
    records[15_000]["CreatedOn"] = "2026-03-01T10:00:00.123456789012345678901Z"  # too many digits to pack
    records[15_001]["CreatedOn"] = None
    records[15_002]["CourseMemberCoworkerFullName"] = "Zoë 12"  # not ASCII
    records[15_003]["UniqueId"] = records[15_003]["UniqueId"].upper()
    rows = Rows()
    for start in range(0, count, 1000):
        rows.load(records[start:start + 1000])
    assert rows.nbytes() / count < 80, rows.nbytes() / count
    assert all(same(rows.record(r["Id"]), r) for r in records[::97] + records[14_990:15_010])
    assert [r for chunk in rows.chunks() for r in chunk] == records
    since = START + timedelta(hours=20)
    since_text = minute_text(since)
    assert rows.created_since(since, since_text) == [stamp_since(r["CreatedOn"], since, since_text) for r in records]
    assert rows.values("CourseMemberId") == [r["CourseMemberId"] for r in records]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats() | st.text(max_size=8)
    | st.sampled_from(ODD_VALUES[16:]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6)
keys = st.sampled_from(["CreatedOn", "UpdatedOn", "SystemId", "UniqueId", "Title", "Extra"])
records = st.builds(
    lambda record_id, lesson, first, fields: {**({"Id": record_id} if first else {}), "CourseLessonId": lesson,
                                              **fields, **({} if first else {"Id": record_id})},
    st.integers(1, 40) | st.integers(-(1 << 64), 1 << 64), st.integers(1, 4) | json_values, st.booleans(),
    st.dictionaries(keys, json_values | st.sampled_from(["2026-03-01T10:00:00Z", "2026-03-01T09:59:59.000Z"]),
                    max_size=4))
operations = st.lists(st.tuples(st.sampled_from(["load", "put", "drop"]), st.lists(records, max_size=6)),
                      max_size=8)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_rows_hold_what_a_dict_by_id_would(steps: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """Any loads (as a cache file is read, and after puts and drops), puts and drops: the rows hold exactly what a
    dict of the records by Id would, and give them back by Id, in Id order and as columns."""
    rows = Rows()
    model: dict[Any, dict[str, Any]] = {}
    since = datetime(2026, 3, 1, 10, tzinfo=UTC)

    def created_since_as_the_model_says() -> None:  # asked after each step: it is kept between asks
        new = dict(zip(rows.ids(), rows.created_since(since, minute_text(since)), strict=True))
        assert new == {i: stamp_since(r.get("CreatedOn"), since, minute_text(since)) for i, r in model.items()}

    for what, batch in steps:
        created_since_as_the_model_says()
        if what == "load":  # a load after puts or drops holds its records as puts would
            rows.load(batch)
            model.update((r["Id"], r) for r in batch)
        elif what == "put":
            for record in batch:
                rows.put(record)
                model[record["Id"]] = dict(record)
        elif what == "drop":
            for record in batch:
                if record["Id"] in model:
                    rows.drop(record["Id"])
                    del model[record["Id"]]
    assert len(rows) == len(model)
    for record_id, record in model.items():
        assert same(rows.record(record_id), record)
    assert same([r for chunk in rows.chunks() for r in chunk], [model[i] for i in sorted(model)])
    assert sorted(rows.ids()) == sorted(model)
    by_id = dict(zip(rows.ids(), rows.values("CourseLessonId"), strict=True))
    assert all(same(by_id[i], r["CourseLessonId"]) for i, r in model.items())
    created_since_as_the_model_says()
