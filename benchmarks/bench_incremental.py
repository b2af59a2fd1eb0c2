"""Below the floor: a drift check of a large scope through the read cache, against the full read, in one run.

The space: 100,000 completions over 50 lessons of one course (written over months, so the watermark means
something), served over HTTP at 1,000 a page. Each line is one read of every completion of the course,
through the cache (`cache.py`), checked record for record against a full read made right after it; the
full read's requests (the floor: one request per page) are printed beside it.

Run: python -m benchmarks.bench_incremental [COMPLETIONS]
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
MEMBERS_PER_LESSON_SHARE = 0.5
COMPLETIONS = "coursecompletedlessons"


def build(store: Store, completions: int) -> tuple[set[int], list[int]]:
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
    members = completions * 2 // LESSONS
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
    return set(lessons), [50_001 + n for n in range(members)]


def main(completions: int = 100_000) -> None:
    store = Store()
    lessons, members = build(store, completions)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    folder = Path(tempfile.mkdtemp(prefix="bench-incremental-"))
    rng = random.Random(7)
    print(f"{len(store.rows[COMPLETIONS]):,} completions over {LESSONS} lessons, 1,000 a page")
    print(f"{'read':<44} {'cached':>7} {'full':>6} {'ms':>7}  how")
    with BackgroundServer(app) as server, httpx.Client() as http:
        def read(label: str) -> None:
            client = NexudusClient(server.url, http)
            cache = ReadCache(folder, server.url, CacheSettings(), vouched=True)
            began = time.perf_counter()
            got, partial = StateReader(client, cache).completion_records(lessons)
            spent = (time.perf_counter() - began) * 1000
            floor = NexudusClient(server.url, http)
            full, _ = StateReader(floor).completion_records(lessons)
            assert partial == [] and got == full, f"{label}: the cached read differs from the full read"
            print(f"{label:<44} {client.stats.requests:>7} {floor.stats.requests:>6} {spent:>7.0f}  {cache.last}")

        def create(count: int) -> None:
            for _ in range(count):
                store.insert(COMPLETIONS, {"CourseLessonId": rng.choice(sorted(lessons)),
                                           "CourseMemberId": rng.choice(members)}, updated_by="x@example.com")

        def delete(count: int) -> list[int]:
            gone = rng.sample(sorted(store.rows[COMPLETIONS]), count)
            hit = {store.rows[COMPLETIONS][i]["CourseLessonId"] for i in gone}
            for record_id in gone:
                store.delete(COMPLETIONS, record_id)
            return sorted(hit)

        read("first run (no cache): a full read")
        read("nothing changed")
        create(5)
        read("5 creates")
        hit = delete(5)
        read(f"5 deletes (in {len(hit)} lessons)")
        create(3)
        hit = delete(3)
        read(f"3 creates and 3 deletes (in {len(hit)} lessons)")
        hit = delete(1000)
        create(1000)
        read(f"1,000 creates, 1,000 deletes (in {len(hit)} lessons)")
        read("nothing changed")
    store.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
