"""Taking in a full read's pages of completions, on the main thread: the cost a record of the old way (each record
added to the columns and put by Id, one at a time: `CompletionColumns.add`, `ById.put`) and of the page at a time
(`CompletionColumns.add_page`, `ById.put_many`, what the reader's `keep` does now), in the same run, and the ratio.

While the main thread takes in a page the client fetches the next one in a thread of its own, under the GIL: every
µs a record here is wall time on a read of 500,000 records. The goal: at least 2x cheaper, at most 1.8 µs a record.

The pages are the emulator's, read through the client as the plan reads them (`synthetic.build_space`: one course,
one stamp, no SystemId, a lower-case GUID each), and the same records as a service's after many writes (a stamp of
its own each, markers on most): the texts then take the slower way of `_Texts.add_many`. Each figure is the best
of 3; the two ways run in turn. Then the whole read through `StateReader.read_completions` over the same pages
held in memory, the old way being what the reader does for any other `convert`.

Run: python -m benchmarks.bench_columns [members, default 10000]
"""

from __future__ import annotations

import functools
import gc
import operator
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import httpx

from reconciler.client import NexudusClient, Page
from reconciler.columns import READ_FIELDS, CompletionColumns
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space
from reconciler.state import COMPLETIONS, ById, Convert, StateReader

Pages = list[list[dict[str, Any]]]
Maps = tuple[dict[int, str], dict[int, str]]
_ID = operator.itemgetter("Id")


def emulator_pages(members: int) -> Pages:
    store = Store()
    build_space(store, members=members)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with httpx.Client(transport=InProcessTransport(app)) as http:
        return list(NexudusClient("http://local", http).pages(COMPLETIONS))


def after_writes(pages: Pages) -> Pages:
    """The same records as a service's after many writes: stamps of their own (to the second: packed, see
    `_Packer`; and to the 10⁻⁷ s: kept whole), a marker on 9 in 10."""
    changed = []
    for page in pages:
        changed.append([{**record, "CreatedOn": f"2026-03-{1 + i % 28:02d}T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:"
                                                f"{i % 60:02d}Z",
                         "UpdatedOn": f"2026-04-01T10:00:{i % 60:02d}.{i:07d}Z",
                         "SystemId": "reconciler:cohort" if i % 10 else None}
                        for record in page for i in [record["Id"]]])
    return changed


def one_at_a_time(pages: Pages, lesson_ids: set[int], maps: Maps) -> tuple[CompletionColumns, ById[int]]:
    """What the reader's `keep` did with each page (and does for any other `convert`)."""
    columns, found = CompletionColumns(*maps), ById[int]()
    for page in pages:
        for record in page:
            if record["CourseLessonId"] in lesson_ids:
                found.put(record["Id"], columns.add(record))
    return columns, found


def by_page(pages: Pages, lesson_ids: set[int], maps: Maps) -> tuple[CompletionColumns, ById[int]]:
    """What the reader's `keep` does with each page now."""
    columns, found = CompletionColumns(*maps), ById[int]()
    for page in pages:
        in_scope = [record for record in page if record["CourseLessonId"] in lesson_ids]
        found.put_many(list(map(_ID, in_scope)), columns.add_page(in_scope))
    return columns, found


class HeldPages:
    """The client's face the reader's full read uses, over pages already read (no fetching: only the taking in)."""

    def __init__(self, pages: Pages) -> None:
        self.held = pages
        self.page_size = len(pages[0])
        self.ignored_filters: set[str] = set()
        self.observed: set[str] = set()

    def count(self, path: str, filters: Any = None, *, keep: Any = None) -> tuple[int, Page]:
        return sum(map(len, self.held)), Page({}, self.held[0], self.page_size)

    def pages_for(self, count: int) -> int:
        return -(-count // self.page_size)

    def pages(self, path: str, filters: Any = None, *, first: Page | None = None,
              keep: Any = None) -> Iterator[list[dict[str, Any]]]:
        yield from self.held


def through_reader(pages: Pages, lesson_ids: set[int], maps: Maps, *, old: bool) -> CompletionColumns:
    columns = CompletionColumns(*maps)
    # The old way: a record at a time (a convert without `page`); the new: as `StateReader.completions` reads.
    convert = Convert(functools.partial(CompletionColumns.add, columns)) if old else \
        Convert(columns.add, columns.add_page, READ_FIELDS)
    reader = StateReader(cast(NexudusClient, HeldPages(pages)))
    rows, partial = reader.read_completions(lesson_ids, None, (), convert)
    assert not partial
    return columns.take(rows)


def best_of_3(run: Callable[[], object], records: int) -> float:
    """The least µs a record of 3 runs (the collector run before each, as a read's pages are fresh)."""
    best = float("inf")
    for _ in range(3):
        gc.collect()
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / records * 1e6


def compare(label: str, pages: Pages, lesson_ids: set[int], maps: Maps) -> None:
    records = sum(map(len, pages))
    expected, expected_found = one_at_a_time(pages, lesson_ids, maps)
    found, found_by_id = by_page(pages, lesson_ids, maps)
    assert list(found) == list(expected) and list(found_by_id.in_order()) == list(expected_found.in_order())
    assert found.nbytes() == expected.nbytes()
    old = best_of_3(lambda: one_at_a_time(pages, lesson_ids, maps), records)
    new = best_of_3(lambda: by_page(pages, lesson_ids, maps), records)
    print(f"{label:<34} a record at a time {old:5.2f} µs/record, a page at a time {new:5.2f} µs/record: "
          f"{old / new:4.1f}x cheaper ({records:,} records, {len(pages)} pages)")


def main() -> None:
    members = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    pages = emulator_pages(members)
    maps = ({r["CourseLessonId"]: r["CourseLessonTitle"] for page in pages for r in page},
            {r["CourseMemberId"]: r["CourseMemberCoworkerFullName"] for page in pages for r in page})
    lesson_ids = set(maps[0])
    compare("emulator pages (synthetic space)", pages, lesson_ids, maps)
    compare("the same, stamps and markers", after_writes(pages), lesson_ids, maps)
    records = sum(map(len, pages))
    assert list(through_reader(pages, lesson_ids, maps, old=True)) == list(
        through_reader(pages, lesson_ids, maps, old=False))
    old = best_of_3(lambda: through_reader(pages, lesson_ids, maps, old=True), records)
    new = best_of_3(lambda: through_reader(pages, lesson_ids, maps, old=False), records)
    print(f"{'StateReader.read_completions':<34} a record at a time {old:5.2f} µs/record, a page at a time "
          f"{new:5.2f} µs/record: {old / new:4.1f}x cheaper (goal: >= 2x, <= 1.80 µs/record)")


if __name__ == "__main__":
    main()
