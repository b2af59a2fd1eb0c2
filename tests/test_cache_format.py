"""The read cache's file and what it holds (issue 17 x 18): a first line that says what the file is, then the
records a page to a line; an older format refused before anything else is read; values kept exactly (types, key
order, and what msgspec would not write: NaN, infinities, lone surrogates); a full read that holds no second copy
of the records it reads."""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import __version__
from reconciler.cache import CACHE_FORMAT, CHUNK, Body, ReadCache, Rows, read_line, write_records
from reconciler.client import NexudusClient
from reconciler.config import CacheSettings
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.emulator.synthetic import build_space
from reconciler.state import StateReader

COMPLETIONS = "coursecompletedlessons"


class Served:
    """A space of `members` x `per_member` completions written over days, served 20 a page over HTTP."""

    def __init__(self, folder: Path, *, members: int = 40, lessons: int = 5, per_member: int = 3,
                 page: int = 20) -> None:
        self.store = Store()
        build_space(self.store, members=members, lessons=lessons, per_member=per_member)
        start = datetime.now(UTC) - timedelta(days=3)
        for n, row in enumerate(self.store.iter_rows(COMPLETIONS)):
            row["CreatedOn"] = row["UpdatedOn"] = precise_timestamp(start + timedelta(minutes=7 * n))
        self.app = EmulatorApp(self.store, Settings(limits=Limits.off(), require_auth=False, max_page_size=page))
        self.server = BackgroundServer(self.app)
        self.server.__enter__()
        self.http = httpx.Client()
        self.folder = folder
        self.lessons = {r["Id"] for r in self.store.iter_rows("courselessons")}

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)
        self.store.close()

    def read(self, *, cache: bool = True) -> tuple[list[dict[str, Any]], int, str]:
        client = NexudusClient(self.server.url, self.http)
        store = ReadCache(self.folder, self.server.url, CacheSettings(), vouched=True) if cache else None
        records, partial = StateReader(client, store).completion_records(self.lessons)
        assert partial == []
        return records, client.stats.requests, store.last if store else "no cache"

    @property
    def path(self) -> Path:
        return self.folder / "completions-all.json.gz"

    def lines(self) -> list[Any]:
        with gzip.open(self.path, "rt", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]

    def touch(self) -> None:
        """An update behind the reader's back (so that the next read through the cache rewrites it)."""
        row = self.store.rows[COMPLETIONS][min(self.store.rows[COMPLETIONS])]
        row["SystemId"], row["UpdatedOn"] = "touched", precise_timestamp(datetime.now(UTC))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    made = Served(tmp_path / "cache")
    yield made
    made.close()


def records_of(line: Any) -> list[dict[str, Any]]:
    """The records of a line of a cache file: a page's body (an object) or an array of records."""
    records: list[dict[str, Any]] = line["Records"] if isinstance(line, dict) else line
    return records


def decoded(lines: list[Any]) -> list[dict[str, Any]]:
    """The records of a cache file's lines after the first."""
    return sorted((record for line in lines[1:] for record in records_of(line)), key=lambda r: r["Id"])


@pytest.mark.parametrize("incremental", [False, True])
def test_the_file_is_a_first_line_then_a_line_of_records_a_page(served: Served, incremental: bool) -> None:
    served.read()
    if incremental:  # written again from the rows held, not from a full read
        served.touch()
        assert served.read()[2] == "incremental"
    full, _, _ = served.read(cache=False)
    lines = served.lines()
    first = lines[0]
    assert first["format"] == CACHE_FORMAT == "reconciler-read-cache/4"
    assert first["target"] == served.server.url and first["reconciler"] == __version__ and first["kind"] == "all"
    assert first["records"] == len(full) == 120
    assert [list(r) for r in decoded(lines)] == [list(r) for r in full]  # keys in the server's order
    assert decoded(lines) == full
    assert all(all(isinstance(r, dict) for r in records_of(line)) for line in lines[1:])
    # A full read writes each page (20 records here) as it arrives, the body the server answered; the
    # incremental one CHUNK records a line, an array.
    if incremental:
        assert [type(line) for line in lines[1:]] == [list] and len(lines[1]) == 120
    else:
        assert [(line["CurrentPage"], len(line["Records"])) for line in lines[1:]] == [(n, 20) for n in range(1, 7)]
    assert [p.name for p in served.folder.iterdir()] == ["completions-all.json.gz"]  # no temporary file left


def format_2(served: Served, full: list[dict[str, Any]]) -> list[Any]:
    """The lines of a cache of format 2: a first line, each shape of record once, then rows `[shape, value, ...]`."""
    shape = list(full[0])
    return [{"format": "reconciler-read-cache/2", "target": served.server.url, "reconciler": __version__,
             "kind": "all", "lessons": [], "watermark": full[-1]["UpdatedOn"],
             "full_read_at": datetime.now(UTC).timestamp(), "span_seconds": 1.0, "verified": True, "page_size": 20,
             "full_requests": 7, "records": len(full)},
            {"shape": shape}, [[0, *r.values()] for r in full]]


@pytest.mark.parametrize("older", [1, 2, 3])
def test_a_cache_of_an_older_format_is_refused_then_replaced(served: Served, older: int) -> None:
    """Format 1 was one JSON document (every record at once), format 2 a line per shape of record then lines of
    rows, format 3 lines of records only (never a page's body); each is refused by its first line, without
    being read whole, and the full read that follows writes the new format."""
    full, _, _ = served.read(cache=False)
    served.folder.mkdir(parents=True)
    lines: list[Any] = format_2(served, full)
    if older == 1:
        lines = [{**lines[0], "format": "reconciler-read-cache/1", "shapes": [lines[1]["shape"]],
                  "records": lines[2]}]
    elif older == 3:
        lines = [{**lines[0], "format": "reconciler-read-cache/3"}, full]
    with gzip.open(served.path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(line) + "\n" for line in lines))
    got, _, how = served.read()
    assert got == full
    assert how == f"full ({served.path} is not a read cache (reconciler-read-cache/4))"
    assert served.lines()[0]["format"] == CACHE_FORMAT
    assert served.read() == (full, 3, "incremental")


def test_a_file_with_fewer_rows_than_its_first_line_says_is_damaged(served: Served) -> None:
    served.read()
    lines = served.lines()
    with gzip.open(served.path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(item) + "\n" for item in lines[:-1]))  # the last line of rows lost
    got, _, how = served.read()
    assert got == served.read(cache=False)[0]
    assert how.startswith(f"full (the cache {served.path} is damaged (ValueError('") and "records, the first" in how


def test_a_cache_is_read_past_its_first_line_only_when_the_changes_make_it_worth_it(served: Served) -> None:
    """When the changes since the watermark cost as many pages as a full read, the records held are never loaded
    (a repeated plan of 200,000 members held them beside the full read: 1.4 GiB); the damaged body shows it."""
    served.read()
    lines = served.lines()
    with gzip.open(served.path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(item) + "\n" for item in lines[:-1]))  # damaged: a line of rows lost
    for row in served.store.iter_rows(COMPLETIONS):  # every record changed since
        row["UpdatedOn"] = precise_timestamp(datetime.now(UTC))
    got, _, how = served.read()
    assert got == served.read(cache=False)[0]
    assert how.startswith("full (120 completions changed since ") and how.endswith(": as many pages as a full read)")


def test_a_cache_rewritten_after_its_first_line_was_read_is_not_mixed_with_it(served: Served,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Its first line is read, then the changes are counted, then the rest is read: another run that rewrote the
    file meanwhile makes this one read in full rather than take one file's first line with another's records."""
    served.read()
    served.touch()
    count = NexudusClient.count

    def rewritten_meanwhile(client: NexudusClient, *args: Any, **kwargs: Any) -> Any:
        lines = served.lines()
        with gzip.open(served.path, "wt", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(item) + "\n" for item in [{**lines[0], "span_seconds": 9.5}, *lines[1:]]))
        return count(client, *args, **kwargs)

    monkeypatch.setattr(NexudusClient, "count", rewritten_meanwhile)
    got, _, how = served.read()
    monkeypatch.undo()
    assert got == served.read(cache=False)[0]
    assert how == f"full (the cache {served.path} was rewritten while this run read it)"


def test_a_cache_that_cannot_be_written_costs_only_the_cache(served: Served, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    served.folder.parent.mkdir(parents=True, exist_ok=True)
    served.folder.write_text("not a folder")
    with caplog.at_level(logging.WARNING, logger="reconciler"):
        got, _, how = served.read()
    assert got == served.read(cache=False)[0] and how.startswith("full (")
    assert "could not be written" in caplog.text
    assert served.folder.read_text() == "not a folder"


def test_values_keep_their_types_and_order_through_the_cache(served: Served) -> None:
    """Shared while loading, a value is never mistaken for an equal one of another type (True is 1 in a dict)."""
    rows = sorted(served.store.rows[COMPLETIONS])
    values: list[Any] = [True, 1, 1.0, "1", None, [1, {"a": False}], {"b": [None, 0]}, 0, False, "True"]
    for record_id, value in zip(rows, values * 3, strict=False):
        served.store.rows[COMPLETIONS][record_id]["IsNew"] = value
    served.read()
    served.touch()
    got, _, how = served.read()
    full, _, _ = served.read(cache=False)
    assert how == "incremental"
    assert json.dumps(got) == json.dumps(full)
    assert [type(r["IsNew"]) for r in got] == [type(r["IsNew"]) for r in full]
    got_again, _, how = served.read()  # loaded from the file written by the incremental read
    assert how == "incremental" and json.dumps(got_again) == json.dumps(full)


def test_a_value_that_changes_only_its_type_is_taken_as_a_change(served: Served) -> None:
    """The records the range read answers again (the newest) are compared with those held value and type: 0 for
    false, true for 1 or 1.0 for 1 is a change, though `==` takes them for one value."""
    newest = max(served.store.rows[COMPLETIONS])
    for before, after in ((False, 0), (1, True), (1, 1.0)):
        served.store.rows[COMPLETIONS][newest]["IsNew"] = before
        served.read(cache=False)
        served.read()  # the cache holds `before`
        served.store.rows[COMPLETIONS][newest]["IsNew"] = after  # its UpdatedOn as it was
        got, _, how = served.read()
        assert how == "incremental"
        assert json.dumps(got) == json.dumps(served.read(cache=False)[0]), (before, after)
        again, _, how = served.read()  # and the file written then holds it
        assert how == "incremental" and json.dumps(again) == json.dumps(got)


def test_a_cache_file_damaged_where_gzip_reads_it_mid_stream_is_read_in_full(served: Served) -> None:
    """Damage in the compressed body that zlib finds (not gzip's own checks) costs a full read, not a traceback."""
    served.read()
    data = served.path.read_bytes()
    for at in range(len(data) // 2, len(data) - 8):  # a byte whose change zlib itself refuses
        damaged = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
        try:
            gzip.decompress(damaged)
        except zlib.error:
            break
        except (OSError, EOFError):
            continue
    else:
        pytest.fail("no byte of the file made zlib refuse it")
    served.path.write_bytes(damaged)
    got, _, how = served.read()
    assert got == served.read(cache=False)[0]
    assert how.startswith(f"full (the cache {served.path} cannot be read (")


def test_values_msgspec_would_not_write_exactly_go_through_the_cache_as_they_were(served: Served) -> None:
    """msgspec writes NaN and infinities as null and refuses a lone surrogate: a page that holds one is written
    by the standard library (as the server's JSON had it), whether a full read or an incremental one wrote it."""
    rows = sorted(served.store.rows[COMPLETIONS])
    placed: dict[int, Any] = {  # the first page without a lone surrogate (which alone sends a page to json)
        0: float("nan"), 3: float("inf"), 6: -float("inf"), 9: [None, float("nan")], 12: 2**70, 15: "null",
        40: "\ud800", 43: {"null": None}, 46: None, 49: 1e300, 52: -0.0}
    for at, value in placed.items():
        served.store.rows[COMPLETIONS][rows[at]]["IsNew"] = value
    full, _, _ = served.read(cache=False)
    assert served.read()[2] == "full (no cache yet)"
    got, _, how = served.read()  # loaded from the file the full read wrote
    assert how == "incremental" and json.dumps(got) == json.dumps(full)
    assert [type(r["IsNew"]) for r in got] == [type(r["IsNew"]) for r in full]
    served.touch()
    assert served.read()[2] == "incremental"  # the file written again from the rows held
    got, _, how = served.read()
    full, _, _ = served.read(cache=False)
    assert how == "incremental" and json.dumps(got) == json.dumps(full)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "\ud800", 2**70, "null", [None], {"null": None},
                                   "é", None])
def test_a_line_of_records_reads_back_as_it_was_written(value: Any) -> None:
    records = [{"Id": 1, "CourseLessonId": 2, "SystemId": None}, {"Id": 2, "CourseLessonId": 2, "X": value}]
    out = io.BytesIO()
    write_records(out, records)
    line = out.getvalue()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    back = read_line(line)
    assert json.dumps(back) == json.dumps(records) and [list(r) for r in back] == [list(r) for r in records]


def test_a_full_read_through_the_cache_holds_no_second_copy_of_the_records(tmp_path: Path) -> None:
    """The records of a full read go to the file page by page: the read's peak memory with the cache is about
    its peak without."""
    space = Served(tmp_path / "cache", members=1500, lessons=20, per_member=10, page=500)
    try:
        peaks, hows = [], []
        for cache in (False, True):
            client = NexudusClient(space.server.url, space.http)
            store = ReadCache(space.folder, space.server.url, CacheSettings(), vouched=True) if cache else None
            tracemalloc.start()
            try:  # compact values, as `plan` keeps them: raw records kept beside them would show
                completions, partial = StateReader(client, store).completions(space.lessons)
                peaks.append(tracemalloc.get_traced_memory()[1])
            finally:
                tracemalloc.stop()
            assert len(completions) == 15_000 and partial == []
            hows.append(store.last if store else "")
            del completions
        assert hows[1] == "full (no cache yet)" and space.path.exists()
        assert peaks[1] < peaks[0] * 1.3, peaks  # 1.75 times as much when the raw records were kept
    finally:
        space.close()


# --- the rows held ---------------------------------------------------------------------------------------

def test_rows_give_back_each_record_as_it_was() -> None:
    rows = Rows()
    records: list[dict[str, Any]] = [
        {"Id": 1, "CourseLessonId": 7, "CreatedOn": "2026-01-01T00:00:00Z", "SystemId": None},
        {"CourseLessonId": 8, "Id": 2, "Extra": [1, {"a": True}]},  # another shape: other keys, another order
        {"Id": 3, "CourseLessonId": 7, "CreatedOn": "2026-01-02T00:00:00Z", "SystemId": True},
    ]
    for record in records:
        rows.put(record)
    assert len(rows) == 3 and len(rows.shapes) == 2
    back = [rows.record(i) for i in (1, 2, 3)]
    assert back == records and [list(r) for r in back if r] == [list(r) for r in records]
    assert [rows.record(i)["CourseLessonId"] for i in (1, 2, 3)] == [7, 8, 7]  # type: ignore[index]
    assert [rows.record(i).get("CreatedOn") for i in (1, 2, 3)] == [  # type: ignore[union-attr]
        "2026-01-01T00:00:00Z", None, "2026-01-02T00:00:00Z"]
    assert rows.record(3)["SystemId"] is True  # type: ignore[index]


def test_rows_refuse_what_is_not_a_record() -> None:
    rows = Rows()
    with pytest.raises(ValueError, match="without Id or CourseLessonId"):
        rows.put({"Id": 1, "Title": "a lesson?"})
    bad_lines: list[Any] = [[[0, 1, 2]], [{"Id": 1}], [{"CourseLessonId": 1}], [None], {"rows": []}, "[]"]
    for bad in bad_lines:
        with pytest.raises(ValueError):
            rows.load(bad)
    with pytest.raises(TypeError):
        rows.load([{"Id": [1], "CourseLessonId": 2}])
    loaded = rows.load([{"Id": 1, "CourseLessonId": 2}, {"CourseLessonId": 2, "Id": 3, "SystemId": "x"}])
    assert loaded == 2 and sorted(rows.ids()) == [1, 3] and len(rows.shapes) == 2
    assert [rows.record(i) for i in (1, 3)] == [{"Id": 1, "CourseLessonId": 2},
                                                {"CourseLessonId": 2, "Id": 3, "SystemId": "x"}]


@pytest.mark.parametrize(("stamps", "newest"), [
    (["2026-03-01T10:00:00.000Z", "2026-03-01T09:00:00.000Z"], "2026-03-01T10:00:00.000Z"),
    (["2026-03-01T10:00:00Z", "2026-03-01T10:00:00.5Z", "2026-03-01T09:59:59.9Z"], "2026-03-01T10:00:00.5Z"),
    (["2026-03-01T10:00:00.000Z", "2026-03-01T12:00:00+01:00", "2026-03-01T10:30:00.000Z"],
     "2026-03-01T12:00:00+01:00"),
    (["2026-03-01T10:00:00.000Z", "2026-03-01T12:00:00+01:00", "2026-03-01T11:30:00.000Z"],
     "2026-03-01T11:30:00.000Z"),
    (["2026-03-01T12:00:00+01:00", "2026-03-01T10:59:00.000Z", "2026-03-01T11:00:01+00:00"],
     "2026-03-01T11:00:01+00:00"),
    ([None, "not a date", "2026-03-01T10:00:00Z", None], "2026-03-01T10:00:00Z"),
])
@pytest.mark.parametrize("paged", [False, True])
def test_a_full_reads_watermark_is_its_newest_stamp_as_an_instant(tmp_path: Path, stamps: list[str | None],
                                                                  newest: str, paged: bool) -> None:
    body = Body(tmp_path)
    records = [{"Id": n, "CourseLessonId": 1, "UpdatedOn": stamp} for n, stamp in enumerate(stamps)]
    try:
        for page in [records[:1], records[1:]] if paged else [records + records[::-1]]:
            body.keep(page)
        assert body.watermark == newest
    finally:
        body.close()
    assert list(tmp_path.iterdir()) == []


def test_a_body_writes_a_long_page_chunk_records_a_line(tmp_path: Path) -> None:
    """A whole table handed over at once (a filter the server ignored) is still written a bounded line at a
    time."""
    body = Body(tmp_path)
    records = [{"Id": n, "CourseLessonId": 1, "UpdatedOn": [n]} for n in range(2 * CHUNK + 5)]  # unhashable stamps
    try:
        body.keep(records)
        body.keep([])
        path = body.finish()
        assert path is not None and body.count == len(records)
        with gzip.open(path, "rb") as handle:
            lines = [read_line(line) for line in handle]
        assert [len(line) for line in lines] == [CHUNK, CHUNK, 5]
        assert [r for line in lines for r in line] == records
    finally:
        body.close()


@pytest.mark.skipif(not Path("/dev/full").exists() or not Path("/proc/self/fd").is_dir(),
                    reason="a full disk is played by /dev/full, the body's file found in /proc/self/fd")
def test_a_body_that_cannot_be_written_midway_costs_only_the_cache(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A page that cannot be written (a full disk) costs only the cache: the read goes on, told once."""
    body = Body(tmp_path)
    records = [{"Id": n, "CourseLessonId": 1, "UpdatedOn": "2026-03-01T10:00:00Z", "Text": os.urandom(50).hex()}
               for n in range(CHUNK)]
    assert body.path is not None
    try:
        written = [int(fd.name) for fd in Path("/proc/self/fd").iterdir() if fd.resolve() == body.path.resolve()]
        assert len(written) == 1
        full = os.open("/dev/full", os.O_WRONLY)
        os.dup2(full, written[0])  # the disk full from now on
        os.close(full)
        with caplog.at_level(logging.WARNING, logger="reconciler"):
            for _ in range(5):
                body.keep(records)
            assert body.finish() is None
        assert caplog.text.count("the read cache could not be written") == 1
        assert body.watermark == "2026-03-01T10:00:00Z"
    finally:
        body.close()
    assert list(tmp_path.iterdir()) == []


def test_a_body_that_fails_otherwise_says_so(tmp_path: Path) -> None:
    """Anything but an OSError while a page is written is a fault, raised to the read."""
    body = Body(tmp_path)
    try:
        with pytest.raises(TypeError):
            body.keep([{"Id": 1, "CourseLessonId": 1, "Odd": object()}])  # not JSON at all
    finally:
        body.close()
    assert list(tmp_path.iterdir()) == []


def test_a_body_left_by_a_killed_run_is_removed_a_day_later(served: Served) -> None:
    served.folder.mkdir(parents=True)
    old, recent = served.folder / ".body.killed", served.folder / ".body.running"
    for path in (old, recent):
        path.write_bytes(b"\x1f\x8b")
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    assert served.read()[2] == "full (no cache yet)"
    assert sorted(p.name for p in served.folder.iterdir()) == [".body.running", "completions-all.json.gz"]


# A page's body as a server may write it: pretty-printed (line breaks between values), with values that only the
# standard library reads (NaN, an integer past 64 bits, a lone surrogate) and keys in its own order.
ODD_BODY = (b'{\r\n  "TotalItems": 2,\n  "Records": [\n    {"CourseLessonId": 2, "Id": 1, "X": NaN, "Big": '
            + str(2**70).encode() + b', "SystemId": null},\n    {"Id": 2, "CourseLessonId": 2, "T": "\\ud800 a\\nb"}'
            b'\n  ],\n  "HasNextPage": false\n}\n')


@pytest.mark.parametrize("answered", [ODD_BODY, b" " + ODD_BODY, b"\xef\xbb\xbf" + ODD_BODY,
                                      ODD_BODY.decode().encode("utf-16-le"), ODD_BODY.decode().encode("utf-32-le")],
                         ids=["as-is", "space-first", "byte-order-mark", "utf-16-le", "utf-32-le"])
def test_a_page_is_written_as_the_body_it_came_in_and_reads_back_as_the_client_read_it(tmp_path: Path,
                                                                                      answered: bytes) -> None:
    """Through the client (a server answering ODD_BODY, as it is or otherwise encoded) and a Body: the page's
    records come back from the file exactly as the client read them (values, types and key order), whether the
    body was kept as it came (UTF-8 that begins with its object) or the records were encoded again (a body that
    begins otherwise, or is UTF-16 or UTF-32 without a byte-order mark, which also begins with `{`)."""
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=answered, headers={"Content-Type": "application/json"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        pages = list(NexudusClient("https://x.example", mocked).pages("/api/spaces/coworkers"))
    [page] = pages
    assert page.text == (ODD_BODY if answered == ODD_BODY else None)  # type: ignore[attr-defined]
    body = Body(tmp_path)
    try:
        body.keep(page)
        path = body.finish()
        assert path is not None
        with gzip.open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
        assert lines[-1] == b"" and len(lines) == 2  # one line, whatever line breaks the body held
        back = read_line(lines[0])
        assert json.dumps(back) == json.dumps(page) and [list(r) for r in back] == [list(r) for r in page]
        assert back[0]["Big"] == 2**70 and back[1]["T"] == "\ud800 a\nb" and back[0]["X"] != back[0]["X"]
    finally:
        body.close()


def test_a_line_that_is_neither_records_nor_a_body_of_records_is_damage(served: Served) -> None:
    served.read()
    lines = served.lines()
    with gzip.open(served.path, "wt", encoding="utf-8") as handle:
        handle.write("".join(json.dumps(item) + "\n" for item in [*lines[:-1], {"Records": "none"}]))
    got, _, how = served.read()
    assert got == served.read(cache=False)[0]
    assert how.startswith(f"full (the cache {served.path} is damaged (ValueError('a line of records is not a list")
