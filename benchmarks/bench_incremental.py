"""Below the floor: a drift check of a large scope through the read cache, against the full read, in one run.

The space (issue 18): 1,000,000 completions over 50 lessons of one course, written over months (so the
watermark means something), seeded straight into the emulator's store and served over HTTP at 1,000 a page.
Each line is one read of every completion of the course through the cache (`cache.py`), checked record for
record against a full read made right after it, whose requests (the floor: one request per page) are
printed beside it, with the issue's budget for the line:

- nothing changed: at most 3 requests;
- 1,000 scattered changes (creates, updates and deletes over all lessons): at most 2 + 50 + the requests of
  reading again the lessons with deletions (or, when those cost as much, the full read).

Run: python -m benchmarks.bench_incremental [COMPLETIONS]   (100000 for a quick look)
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from reconciler.cache import ReadCache
from reconciler.client import NexudusClient
from reconciler.config import CacheSettings
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.state import StateReader

LESSONS = 50
COMPLETIONS = "coursecompletedlessons"


def build(store: Store, completions: int) -> tuple[list[int], list[int]]:
    """One course of LESSONS lessons and `completions` completions written over 200 days (straight into the
    store: no request is spent on it). Returns the lessons' and the enrolments' Ids."""
    rng = random.Random(18)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    stamp = precise_timestamp(start)
    common = {"UniqueId": None, "CreatedOn": stamp, "UpdatedOn": stamp, "UpdatedBy": "bench@example.com",
              "IsNew": False, "SystemId": None}
    store.load("courses", [{**common, "Id": 101, "Title": "Big course", "Active": True, "DisplayOrder": 1,
                            "GroupName": None, "Visibility": "Everyone"}])
    lessons = list(range(2001, 2001 + LESSONS))
    store.load("courselessons", [{**common, "Id": i, "CourseId": 101, "Title": f"Lesson {n + 1}", "DisplayOrder": n + 1,
                                  "Active": True, "SectionTitle": None, "UnlockType": "Always",
                                  "CompletionType": "Manual"} for n, i in enumerate(lessons)])
    members = max(1, completions * 2 // LESSONS)
    store.load("coworkers", [{**common, "Id": 10_001 + n, "FullName": f"Member {n}", "Email": f"m{n}@example.com",
                              "CompanyName": "Co", "TeamNames": "Cohort"} for n in range(members)])
    store.load("coursemembers", [{**common, "Id": 50_001 + n, "CourseId": 101, "CoworkerId": 10_001 + n,
                                  "Approved": True, "Blocked": False} for n in range(members)])
    rows, seconds = [], 200 * 24 * 3600 / completions
    for n in range(completions):
        at = precise_timestamp(start + timedelta(seconds=n * seconds))
        rows.append({**common, "Id": 900_001 + n, "UniqueId": f"u{n}", "CreatedOn": at, "UpdatedOn": at,
                     "CourseLessonId": lessons[n % LESSONS], "CourseMemberId": 50_001 + rng.randrange(members)})
    store.load(COMPLETIONS, rows)
    return lessons, [50_001 + n for n in range(members)]


class Clock:
    """The emulator's clock: a day passes between two runs (as between two nightly drift checks), and 80
    seconds between two changes (1,000 changes a day)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 8, 1, tzinfo=UTC)  # after the seeded completions

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=80)
        return self.now

    def next_day(self) -> None:
        self.now += timedelta(days=1)


class Bench:
    def __init__(self, store: Store, clock: Clock, server: BackgroundServer, http: httpx.Client, lessons: list[int],
                 members: list[int]) -> None:
        self.store, self.clock, self.server, self.http = store, clock, server, http
        self.lessons, self.members = lessons, members
        self.folder = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
        self.rng = random.Random(7)

    def read(self, label: str, budget: str = "") -> int:
        """One read through the cache, then the full read it must equal; prints both. Returns the cached read's
        requests."""
        self.clock.next_day()
        client = NexudusClient(self.server.url, self.http)
        cache = ReadCache(self.folder, self.server.url, CacheSettings(), vouched=True)
        began = time.perf_counter()
        got, partial = StateReader(client, cache).completion_records(set(self.lessons))
        spent = time.perf_counter() - began
        floor = NexudusClient(self.server.url, self.http)
        full, _ = StateReader(floor).completion_records(set(self.lessons))
        assert partial == [] and got == full, f"{label}: the cached read differs from the full read"
        asked, least = client.stats.requests, floor.stats.requests
        print(f"{label:<66} {asked:>7,} {least:>6,} {asked / least:>6.1%} {budget:>9} {spent:>7.1f}  {cache.last}",
              flush=True)
        return asked

    # --- changes behind the tool's back, spread over every lesson ---

    def create(self, count: int) -> None:
        for _ in range(count):
            self.store.insert(COMPLETIONS, {"CourseLessonId": self.rng.choice(self.lessons),
                                            "CourseMemberId": self.rng.choice(self.members)},
                              updated_by="portal@example.com")

    def update(self, count: int) -> None:
        rows = self.store.rows[COMPLETIONS]
        for record_id in self.rng.sample(sorted(rows), count):
            rows[record_id]["SystemId"] = f"edited-{record_id}"
            rows[record_id]["UpdatedOn"] = precise_timestamp(self.clock())

    def delete(self, count: int) -> set[int]:
        """Delete `count` random completions; the lessons they were in."""
        rows = self.store.rows[COMPLETIONS]
        gone = self.rng.sample(sorted(rows), count)
        hit = {rows[i]["CourseLessonId"] for i in gone}
        for record_id in gone:
            self.store.delete(COMPLETIONS, record_id)
        return hit

    def scattered(self, creates: int, updates: int, deletes: int) -> tuple[str, str]:
        """Changes spread over every lesson; the line's label and its budget (2 + 50 + the re-reads of the
        lessons with deletions, in requests at the page size served)."""
        self.create(creates)
        self.update(updates)
        hit = self.delete(deletes)
        per_lesson = {x: 0 for x in hit}
        for row in self.store.rows[COMPLETIONS].values():
            if row["CourseLessonId"] in per_lesson:
                per_lesson[row["CourseLessonId"]] += 1
        again = sum(max(1, -(-n // 1000)) for n in per_lesson.values())
        label = f"{creates + updates + deletes:,} changes: {creates} creates, {updates} updates, {deletes} deletes"
        return f"{label} ({len(hit)} lessons)", f"{2 + LESSONS + again:,}"


def main(completions: int = 1_000_000) -> None:
    began = time.perf_counter()
    clock = Clock()
    store = Store(clock=clock)
    lessons, members = build(store, completions)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    print(f"{len(store.rows[COMPLETIONS]):,} completions over {LESSONS} lessons, 1,000 a page "
          f"(seeded in {time.perf_counter() - began:.0f} s)")
    print(f"{'read of the whole course':<66} {'cached':>7} {'full':>6} {'ratio':>6} {'budget':>9} {'s':>7}  how")
    with BackgroundServer(app) as server, httpx.Client(timeout=600) as http:
        bench = Bench(store, clock, server, http, lessons, members)
        bench.read("first run (no cache): a full read")
        bench.read("nothing changed", "3")
        bench.read(*bench.scattered(500, 500, 0))
        bench.read(*bench.scattered(490, 490, 20))
        bench.read(*bench.scattered(334, 333, 333))
        bench.read("nothing changed", "3")
    store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
