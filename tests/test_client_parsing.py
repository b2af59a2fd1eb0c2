"""How the client reads a page: the JSON parsed (fast, yet as the standard library reads it), every record
checked, every Id seen once; each failure still named as before."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import httpx
import pytest

from reconciler.client import NexudusClient
from reconciler.errors import MalformedAnswer, PartialRead
from reconciler.state import COMPLETIONS, COWORKERS


def completion(record_id: int, **fields: object) -> dict[str, object]:
    return {"Id": record_id, "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "2026-01-01T00:00:00Z",
            "UpdatedOn": "2026-01-01T00:00:00Z", **fields}


def serving(body: Callable[[httpx.Request], bytes]) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(request), headers={"Content-Type": "application/json"})

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("value", [
    "1180591620717411303425",  # an integer past 64 bits stays that integer (not the nearest float)
    "-9223372036854775809",
    "NaN", "-Infinity", "1e400",  # json reads these as floats
    '"\\ud800"',  # a lone surrogate, escaped
    "0.30000000000000004", "-0", "5e-324", '"\\ud83d\\ude00"', '"\\u0000"',
])
def test_a_page_is_read_exactly_as_the_standard_library_reads_it(value: str) -> None:
    text = ('{"Records": [{"Id": 1, "Email": null, "Odd": ' + value + '}, {"Id": 18446744073709551616}], '
            '"TotalItems": 2}').encode()
    with serving(lambda _: text) as mocked:
        records = NexudusClient("https://x.example", mocked).list_all(COWORKERS)
    expected = json.loads(text)["Records"]
    assert [r["Id"] for r in records] == [1, 2 ** 64] and type(records[1]["Id"]) is int
    got, want = records[0]["Odd"], expected[0]["Odd"]
    assert type(got) is type(want) and (got == want or (math.isnan(got) and math.isnan(want)))
    if isinstance(want, float):
        assert math.copysign(1, got) == math.copysign(1, want)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16"])
def test_a_page_reads_the_same_in_every_encoding_json_allows(encoding: str) -> None:
    page = {"Records": [completion(1, SystemId="cohort"), completion(2, Title="Ça va")], "TotalItems": 2}
    with serving(lambda _: json.dumps(page, ensure_ascii=False).encode(encoding)) as mocked:
        records = NexudusClient("https://x.example", mocked).list_all(COMPLETIONS)
    assert records == page["Records"]


@pytest.mark.parametrize(("body", "complaint"), [
    (b'{"Records": [{"Id": 1}, {"Id"', r"answered JSON cut short after 29 bytes \(200\)"),
    (b'{"Records": [{"Id": 1},, ], "TotalItems": 1}', r"answered invalid JSON \(JSONDecodeError: "),
    (b'{"Records": [{"Id": 1, "Email": "\xff\xfe"}], "TotalItems": 1}', "answered bytes that are not UTF-8 text"),
    (b"", "answered JSON cut short after 0 bytes"),
])
def test_json_that_cannot_be_read_is_named(body: bytes, complaint: str) -> None:
    with serving(lambda _: body) as mocked:
        with pytest.raises(MalformedAnswer, match=complaint) as caught:
            NexudusClient("https://x.example", mocked).list_all(COWORKERS)
    assert "GET https://x.example/api/spaces/coworkers?" in str(caught.value)


@pytest.mark.parametrize(("bad", "complaint"), [
    ({"Id": True}, "has Id True, not an integer"),
    ({"CourseMemberId": None}, r"\(Id 1000\) has CourseMemberId = None"),
    ({"CreatedOn": 20260101}, r"\(Id 1000\) has CreatedOn = 20260101"),
    ({"UpdatedOn": None}, r"\(Id 1000\) has UpdatedOn = None"),
    ({"SystemId": ["a"]}, r"\(Id 1000\) has SystemId = \['a'\]"),
    ({"SystemId": 1.5}, r"\(Id 1000\) has SystemId = 1.5"),
    ({"UniqueId": {"x": 1}}, r"\(Id 1000\) has UniqueId = \{'x': 1\}"),
])
def test_the_last_record_of_a_full_page_is_checked_like_the_first(bad: dict[str, object], complaint: str) -> None:
    records = [completion(i) for i in range(1, 1000)] + [completion(1000, **bad)]

    with serving(lambda _: json.dumps({"Records": records, "TotalItems": 1000}).encode()) as mocked:
        with pytest.raises(MalformedAnswer, match=f"record 1000 of the page {complaint}"):
            NexudusClient("https://x.example", mocked).list_all(COMPLETIONS)


def test_a_missing_required_field_is_named_and_optional_ones_may_be_left_out_or_null() -> None:
    good = [completion(1), completion(2, SystemId=None), completion(3, SystemId="x")]
    with serving(lambda _: json.dumps({"Records": good, "TotalItems": 3}).encode()) as mocked:
        assert [r["Id"] for r in NexudusClient("https://x.example", mocked).list_all(COMPLETIONS)] == [1, 2, 3]
    bad = [*good, {k: v for k, v in completion(4).items() if k != "UpdatedOn"}]
    with serving(lambda _: json.dumps({"Records": bad, "TotalItems": 4}).encode()) as mocked:
        with pytest.raises(MalformedAnswer, match=r"record 4 of the page \(Id 4\) has no UpdatedOn"):
            NexudusClient("https://x.example", mocked).list_all(COMPLETIONS)


@pytest.mark.parametrize(("pages", "repeated"), [
    ([[1, 2, 3, 2, 3]], 2),  # within one page: the first Id seen twice
    ([[1, 2, 3], [4, 5, 1]], 1),  # on a later page
    ([[1, 2, 3], [7, 6, 6, 3]], 6),
])
def test_a_record_served_twice_is_named(pages: list[list[int]], repeated: int) -> None:
    total = sum(len(p) for p in pages)

    def body(request: httpx.Request) -> bytes:
        number = int(request.url.params["page"])
        ids = pages[number - 1]
        return json.dumps({"Records": [{"Id": i} for i in ids], "TotalItems": total, "CurrentPageSize": len(ids),
                           "HasNextPage": number < len(pages)}).encode()

    with serving(body) as mocked:
        client = NexudusClient("https://x.example", mocked)
        client.page_size = 3
        with pytest.raises(PartialRead, match=f"repeated record {repeated} of an earlier page"):
            client.list_all(COWORKERS)


@pytest.mark.parametrize(("content_type", "body"), [
    ("text/html", b"<html><title>Down for maintenance</title></html>"),
    ("application/json", b'{"Id": 7, "CourseLessonId": 5, "Course'),  # cut off
    ("application/json", b'"Not found"'),  # the 404's body, with a 200
    ("application/json", b'{"Records": []}'),  # not a record
])
def test_a_get_by_id_that_is_not_a_record_is_never_taken_for_gone(content_type: str, body: bytes) -> None:
    """Only a 404 says a record is gone; any other answer stops, named (an ownership check or a stale-delete check
    would otherwise take a maintenance page for "no such record")."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = NexudusClient("https://x.example", mocked)
        with pytest.raises(MalformedAnswer, match=r"GET https://x.example/api/content/coursecompletedlessons/7"):
            client.get(COMPLETIONS, 7)


def test_a_get_by_id_reads_the_record_or_a_404_as_gone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/7"):
            return httpx.Response(200, json=completion(7, SystemId="reconciler:x"))
        return httpx.Response(404, json="Not found")

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = NexudusClient("https://x.example", mocked)
        assert client.get(COMPLETIONS, 7) == completion(7, SystemId="reconciler:x")
        assert client.get(COMPLETIONS, 8) is None
