"""A lean read (`NexudusClient.pages(keep=...)`): each page decoded and checked in one pass that keeps only the
fields asked for and those checked. Whatever the server answers, it accepts what the full read accepts (but for
an integer of more than 4,300 digits in a field it does not read), refuses it with the same words, and keeps the
same values of the fields it keeps; its body still goes to the read cache as it came."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from reconciler.client import NexudusClient, PageRecords
from reconciler.columns import READ_FIELDS
from reconciler.errors import ApiError
from reconciler.state import COMPLETIONS, COWORKERS, MEMBERS, SLIM_FIELDS

# What the client checks of each record, per collection: always kept by a lean read.
CHECKED = {COMPLETIONS: {"Id", "CourseLessonId", "CourseMemberId", "CreatedOn", "UpdatedOn", "SystemId", "UniqueId"},
           MEMBERS: {"Id", "CourseId", "CoworkerId", "CoworkerTeamNames"},
           COWORKERS: {"Id", "Email", "TeamNames"}}
KEEP = {COMPLETIONS: READ_FIELDS, MEMBERS: SLIM_FIELDS[MEMBERS], COWORKERS: SLIM_FIELDS[COWORKERS]}


def completion(record_id: object, **fields: object) -> dict[str, object]:
    return {"Id": record_id, "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "2026-01-01T00:00:00Z",
            "UpdatedOn": "2026-01-02T00:00:00Z", "CourseLessonTitle": "Lesson 5", "UpdatedBy": "ops@example.com",
            "CourseMemberCoworkerFullName": "Ana", "ToStringText": "Lesson 5", "IsNew": False, **fields}


def member(record_id: int, **fields: object) -> dict[str, object]:
    return {"Id": record_id, "CourseId": 3, "CoworkerId": 40 + record_id, "CoworkerFullName": "Ana",
            "CoworkerTeamNames": "Ops", "CoworkerEmail": "ana@example.com", **fields}


def coworker(record_id: int, **fields: object) -> dict[str, object]:
    return {"Id": record_id, "FullName": "Ana", "Email": f"a{record_id}@example.com", "TeamNames": None,
            "CompanyName": "Co", **fields}


def envelope(records: list[Any], **fields: object) -> bytes:
    return json.dumps({"Records": records, "TotalItems": len(records), "HasNextPage": False, **fields}).encode()


# Bodies as the service (or something in its way) may answer them: each is read lean and in full.
BODIES: list[tuple[str, str, bytes, str]] = [
    ("plain", COMPLETIONS, envelope([completion(1), completion(2, SystemId="rc:x", UniqueId=None)]), "json"),
    ("extra envelope keys", COMPLETIONS, envelope([completion(1)], CurrentPage=1, Other={"a": [1]}), "json"),
    ("no optional fields", COMPLETIONS,
     envelope([{k: v for k, v in completion(1).items() if k not in ("SystemId", "UniqueId", "CourseLessonTitle")}]),
     "json"),
    ("a bool for an Id", COMPLETIONS, envelope([completion(1), completion(True)]), "json"),
    ("a float for an Id", COMPLETIONS, envelope([completion(1.0)]), "json"),
    ("a string Id", COMPLETIONS, envelope([completion("7")]), "json"),
    ("a missing required field", COMPLETIONS,
     envelope([{k: v for k, v in completion(1).items() if k != "UpdatedOn"}]), "json"),
    ("a null required field", COMPLETIONS, envelope([completion(1, CourseMemberId=None)]), "json"),
    ("a number for SystemId", COMPLETIONS, envelope([completion(1, SystemId=3)]), "json"),
    ("a list for UniqueId", COMPLETIONS, envelope([completion(1, UniqueId=["x"])]), "json"),
    ("a record that is not an object", COMPLETIONS, envelope([completion(1), "junk"]), "json"),
    ("an Id past 64 bits", COMPLETIONS, envelope([completion(2 ** 70)]), "json"),
    ("a negative total", COMPLETIONS, envelope([completion(1)], TotalItems=-1), "json"),
    ("a boolean total", COMPLETIONS, envelope([completion(1)], TotalItems=True), "json"),
    ("a text page count", COMPLETIONS, envelope([completion(1)], TotalPages="1"), "json"),
    ("a float page size", COMPLETIONS, envelope([completion(1)], CurrentPageSize=1.0), "json"),
    ("Records null", COMPLETIONS, b'{"Records": null, "TotalItems": 0}', "json"),
    ("no Records", COMPLETIONS, b'{"TotalItems": 0}', "json"),
    ("a list, not an envelope", COMPLETIONS, b"[]", "json"),
    ("cut short", COMPLETIONS, envelope([completion(1)])[:-9], "json"),
    ("NaN in a field kept", COMPLETIONS, envelope([completion(1)]).replace(b'"Ana"', b"NaN"), "json"),
    ("NaN in a field skipped", COMPLETIONS, envelope([completion(1)]).replace(b"false", b"NaN"), "json"),
    ("a lone surrogate", COMPLETIONS, envelope([completion(1, CourseLessonTitle="\ud800")]), "json"),
    ("a byte-order mark", COMPLETIONS, b"\xef\xbb\xbf" + envelope([completion(1)]), "json"),
    ("white space first", COMPLETIONS, b"\n  " + envelope([completion(1)]), "json"),
    ("UTF-16", COMPLETIONS, envelope([completion(1)]).decode().encode("utf-16-le"), "json"),
    ("not UTF-8", COMPLETIONS, envelope([completion(1, CourseLessonTitle="x")]).replace(b'"x"', b'"\xff"'), "json"),
    ("not UTF-8 in a field skipped", COMPLETIONS,
     envelope([completion(1, UpdatedBy="x")]).replace(b'"x"', b'"\xe9t\xe9"'), "json"),
    ("not UTF-8 in a key skipped", COMPLETIONS, envelope([completion(1)], x=1).replace(b'"x"', b'"\xff"'), "json"),
    ("an overlong sequence skipped", COMPLETIONS,
     envelope([completion(1, UpdatedBy="x")]).replace(b'"x"', b'"\xc0\xaf"'), "json"),
    ("UTF-8 beyond ASCII", COMPLETIONS, envelope([completion(1, UpdatedBy="Łódź", CourseLessonTitle="Ça va")]),
     "json"),
    ("nested too deeply, skipped", COMPLETIONS,
     envelope([completion(1, UpdatedBy="x")]).replace(b'"x"', b"[" * 100_000 + b"]" * 100_000), "json"),
    ("JSON served as HTML", COMPLETIONS, envelope([completion(1)]), "html"),
    ("a key twice", COMPLETIONS, envelope([completion(1)]).replace(b'{"Id": 1,', b'{"Id": 9, "Id": 1,'), "json"),
    ("a member page", MEMBERS, envelope([member(1), member(2, CoworkerTeamNames=None)]), "json"),
    ("a member without a coworker", MEMBERS, envelope([{k: v for k, v in member(1).items() if k != "CoworkerId"}]),
     "json"),
    ("a member with numeric teams", MEMBERS, envelope([member(1, CoworkerTeamNames=7)]), "json"),
    ("a coworker page", COWORKERS, envelope([coworker(1), coworker(2, Email=None)]), "json"),
    ("a coworker without an email", COWORKERS, envelope([{k: v for k, v in coworker(1).items() if k != "Email"}]),
     "json"),
    ("a coworker with a numeric email", COWORKERS, envelope([coworker(1, Email=5)]), "json"),
]


def serving(body: bytes, kind: str) -> httpx.Client:
    content_type = "text/html; charset=utf-8" if kind == "html" else "application/json"

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"Content-Type": content_type})

    return httpx.Client(transport=httpx.MockTransport(handler))


def outcome(read: Callable[[NexudusClient], list[list[dict[str, Any]]]], body: bytes, kind: str) -> tuple[str, Any]:
    with serving(body, kind) as mocked:
        try:
            return "read", read(NexudusClient("https://x.example", mocked))
        except ApiError as e:
            return type(e).__name__, str(e)


# Valid pages the one pass leaves to the full way (msgspec refuses the text, or it is not kept for the cache): read
# whole, as ever, so that a page written to the cache record by record is written whole.
READ_THE_FULL_WAY = {"NaN in a field kept", "NaN in a field skipped", "a lone surrogate", "a byte-order mark",
                     "white space first", "UTF-16"}


@pytest.mark.parametrize(("name", "path", "body", "kind"), BODIES, ids=[name for name, *_ in BODIES])
def test_a_lean_read_accepts_refuses_and_reads_exactly_as_the_full_read(name: str, path: str, body: bytes,
                                                                         kind: str) -> None:
    full = outcome(lambda client: list(client.pages(path)), body, kind)
    lean = outcome(lambda client: list(client.pages(path, keep=KEEP[path])), body, kind)
    if full[0] != "read":
        assert lean == full  # the same error, in the same words
        return
    assert lean[0] == "read"
    kept = CHECKED[path] | set(KEEP[path])
    projected = [[{k: v for k, v in record.items() if k in kept} for record in page] for page in full[1]]
    got = [[dict(record) for record in page] for page in lean[1]]
    assert got == ([[dict(record) for record in page] for page in full[1]] if name in READ_THE_FULL_WAY
                   else projected)
    assert [text_of(page) for page in lean[1]] == [text_of(page) for page in full[1]]  # the body, for the cache


def text_of(page: list[dict[str, Any]]) -> bytes | None:
    assert isinstance(page, PageRecords)
    return page.text


def test_the_one_thing_a_lean_read_takes_that_a_full_read_refuses_is_a_huge_integer_it_does_not_read() -> None:
    """The standard library refuses an integer of more than 4,300 digits; the lean pass skips a field it does not
    keep unread. Anywhere it reads, the same integer is refused the full way."""
    huge = "1" * 5_000
    skipped = envelope([completion(1, UpdatedBy="x")]).replace(b'"x"', huge.encode())
    assert outcome(lambda client: list(client.pages(COMPLETIONS)), skipped, "json")[0] == "MalformedAnswer"
    lean = outcome(lambda client: list(client.pages(COMPLETIONS, keep=READ_FIELDS)), skipped, "json")
    assert lean[0] == "read" and [r["Id"] for page in lean[1] for r in page] == [1]
    kept = envelope([completion(1, CourseLessonTitle="x")]).replace(b'"x"', huge.encode())
    assert outcome(lambda client: list(client.pages(COMPLETIONS, keep=READ_FIELDS)), kept, "json") == \
        outcome(lambda client: list(client.pages(COMPLETIONS)), kept, "json")


def test_a_lean_read_keeps_nothing_it_was_not_asked_for_and_the_body_whole() -> None:
    body = envelope([completion(1), completion(2, SystemId="rc:x")])
    with serving(body, "json") as mocked:
        client = NexudusClient("https://x.example", mocked)
        (lean,) = list(client.pages(COMPLETIONS, keep=("Id", "CourseLessonTitle")))
        total, first = client.count(COMPLETIONS, keep=("Id",))
    assert {key for record in lean for key in record} == CHECKED[COMPLETIONS] - {"UniqueId"} | {"CourseLessonTitle"}
    assert "UpdatedBy" not in lean[0] and "ToStringText" not in lean[0]
    assert text_of(lean) == body and json.loads(body)["Records"][0]["UpdatedBy"] == "ops@example.com"
    assert total == 2 and set(first.body) == {"Records", "TotalItems", "HasNextPage"}
    assert [set(r) for r in first.records] == [CHECKED[COMPLETIONS] - {"SystemId", "UniqueId"},
                                              CHECKED[COMPLETIONS] - {"UniqueId"}]
