"""Resolving and fetching a plan's state: requests against the floor, and wall time, versus a naive client.

The space: 3,000 members enrolled in one course of 20 lessons, ~30,000 completions, every member named
by email. The floor is one full page per page of records needed, at the page size the server serves:
at 1,000, courses 1, lessons 1, enrolments 3, coworkers 3, completions 30 = 38 requests. The same read
runs against a server that serves only 300 a page (the real cap is unknown; the client must follow what
it is served), where the floor is 1 + 1 + 10 + 10 + 100 = 122. The goal: at most 1.2x the floor at both.
The naive baseline, run in the same process against the same store, lists with the default page size
(25) and looks each member up one request at a time.
Finally, a full fetch against a served emulator with the documented limits must draw no throttling.

Run: python -m benchmarks.bench_fetch
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.space import build_space, write_spec
from reconciler.client import NexudusClient
from reconciler.config import DOCUMENTED_LIMITS, Credentials
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer, InProcessTransport
from reconciler.emulator.store import Store
from reconciler.resolve import resolve
from reconciler.spec import load_specs
from reconciler.state import COMPLETIONS, COURSES, COWORKERS, LESSONS, MEMBERS, StateReader


def ours(client: NexudusClient, spec_dir: Path) -> tuple[int, int]:
    specs = load_specs([spec_dir])
    reader = StateReader(client)
    catalog = reader.catalog(specs)
    resolution = resolve(specs, catalog)
    lesson_ids = {x.id for x in catalog.lessons_of(101)}
    named = set(resolution.completions[0].named_members)
    completions, partial = reader.completions(lesson_ids, named, ["reconciler:cohort"])
    assert not partial
    return len(completions), len(named)


def naive(client: NexudusClient, emails: list[str]) -> tuple[int, int]:
    """What a straightforward client does: default page size, a lookup per member."""
    def pages(path: str, params: dict[str, object]) -> list[dict[str, object]]:
        page, found = 1, []
        while True:
            body = client.request("GET", path, params={**params, "page": page}).json()
            found += body["Records"]
            if not body["HasNextPage"]:
                return found
            page += 1

    course = next(c for c in pages(COURSES, {"Course_Title": "Cohort 2026"}) if c["Title"] == "Cohort 2026")
    pages(LESSONS, {"CourseLesson_Course": course["Id"]})
    members = {m["CoworkerId"]: m["Id"] for m in pages(MEMBERS, {"CourseMember_Course": course["Id"]})}
    total, named = 0, 0
    for email in emails:
        for coworker in pages(COWORKERS, {"Coworker_Email": email}):
            if coworker["Email"] == email and coworker["Id"] in members:
                named += 1
                total += len(pages(COMPLETIONS, {"CourseCompletedLesson_CourseMember": members[coworker["Id"]]}))
    return total, named


def main() -> None:
    store = Store()
    emails = build_space(store)
    records = {name: len(rows) for name, rows in store.rows.items()}

    def floor_at(page: int) -> int:
        return sum(math.ceil(records[name] / page) for name in
                   ("courses", "courselessons", "coursemembers", "coworkers", "coursecompletedlessons"))

    floor = floor_at(1000)
    with tempfile.TemporaryDirectory() as temporary:
        spec_dir = Path(temporary) / "specs"
        write_spec(spec_dir, emails)
        for cap in (1000, 300):
            capped = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False, max_page_size=cap))
            with httpx.Client(transport=InProcessTransport(capped)) as http:
                client = NexudusClient("http://local", http)
                found_here = ours(client, spec_dir)
            requests = client.stats.requests
            print(f"page size served {cap:>4}: {requests:4d} requests, floor {floor_at(cap):4d} "
                  f"({requests / floor_at(cap):.2f}x the floor; goal <= 1.20x); found {found_here[0]:,} completions")
        app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
        with httpx.Client(transport=InProcessTransport(app)) as http:
            client = NexudusClient("http://local", http)
            started = time.perf_counter()
            found, named = ours(client, spec_dir)
            our_time, our_requests = time.perf_counter() - started, client.stats.requests

            baseline = NexudusClient("http://local", http)
            started = time.perf_counter()
            naive_found, naive_named = naive(baseline, emails)
            naive_time, naive_requests = time.perf_counter() - started, baseline.stats.requests
        assert (found, named) == (naive_found, naive_named), "both readers must find the same state"

        print(f"space: {records['coursemembers']:,} members, {records['courselessons']} lessons, "
              f"{records['coursecompletedlessons']:,} completions; floor {floor} requests")
        print(f"ours : {our_requests:5d} requests ({our_requests / floor:.2f}x the floor), {our_time:6.2f} s")
        print(f"naive: {naive_requests:5d} requests ({naive_requests / floor:.2f}x the floor), {naive_time:6.2f} s")
        print(f"ratio: ours uses {naive_requests / our_requests:.0f}x fewer requests and "
              f"{naive_time / our_time:.1f}x less time than the naive client")
        print(f"at the documented 120 requests a minute: ours {our_requests / 120:.1f} min, "
              f"naive {naive_requests / 120:.1f} min")

        # The same fetch over HTTP against the documented limits: no throttling at all.
        store.save_user(account("bench@example.com", "bench-pw"))
        served = EmulatorApp(store, Settings(), users=[User.from_account(account("bench@example.com", "bench-pw"))])
        with BackgroundServer(served) as server, httpx.Client() as http:
            client = NexudusClient(server.url, http, credentials=Credentials(username="bench@example.com",
                                                                             password="bench-pw"),
                                   limits=DOCUMENTED_LIMITS)
            started = time.perf_counter()
            ours(client, spec_dir)
            print(f"documented limits, over HTTP: {client.stats.requests} requests in "
                  f"{time.perf_counter() - started:.1f} s, throttling responses received: {served.throttled_count}")


if __name__ == "__main__":
    main()
