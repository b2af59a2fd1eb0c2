"""The emulator's cost per list page as its tables grow: 10,000 to 200,000 members.

For each size: a space of N members enrolled in one course of 20 lessons, 10 completions each (benchmarks/space.py),
served over HTTP from this process (limits off, no auth). A bare httpx loop in its own process then reads, a
page of 1,000 at a time in Id order, what a plan reads: the courses, the course's lessons and enrolments (filtered
by course), the coworkers, every completion, and the completions of one lesson (filtered by lesson); and a few
pages at the end of the completions (where an offset scan costs most). Printed per read: pages, milliseconds a
page (wall, as the reader saw it; and the emulator's CPU, which other work on the machine does not inflate), and
each as a ratio of the smallest size's (goal: flat, about 1.0x, so that a read's total time grows with its rows
only).

Run: python -m benchmarks.bench_emulator [--sizes 10000,50000,200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from collections import defaultdict
from typing import Any

from benchmarks.space import build_space
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store

PAGE = 1000
LESSON = 2001

READER = """
import json, sys, time, httpx
base, plan = sys.argv[1], json.loads(sys.argv[2])
timings = {}
with httpx.Client(timeout=600, headers={"Accept": "application/json"}) as http:
    for name, path, filters, first, last in plan:
        pages, started, number = 0, time.perf_counter(), first
        while True:
            params = {**filters, "page": number, "size": PAGE, "orderBy": "Id"}
            body = http.get(base + path, params=params, headers={"X-Bench-Read": name}).json()
            pages += 1
            if not body["HasNextPage"] or (last is not None and number >= last):
                break
            number += 1
        timings[name] = [pages, time.perf_counter() - started]
print(json.dumps(timings))
""".replace("PAGE", str(PAGE))


def reads(members: int) -> list[tuple[str, str, dict[str, Any], int, int | None]]:
    """(name, path, filters, first page, last page or None for all) of each read, in the order a plan makes them."""
    completions = members * 10
    last = -(-completions // PAGE)
    return [
        ("courses", "/api/content/courses", {}, 1, None),
        ("lessons of the course", "/api/content/courselessons", {"CourseLesson_Course": 101}, 1, None),
        ("enrolments of the course", "/api/content/coursemembers", {"CourseMember_Course": 101}, 1, None),
        ("coworkers", "/api/spaces/coworkers", {}, 1, None),
        ("completions", "/api/content/coursecompletedlessons", {}, 1, None),
        ("completions of one lesson", "/api/content/coursecompletedlessons",
         {"CourseCompletedLesson_CourseLesson": LESSON}, 1, None),
        ("last 10 pages of completions", "/api/content/coursecompletedlessons", {}, max(1, last - 9), None),
    ]


class Meter:
    """WSGI middleware adding up the CPU time the emulator spends on each read (named by a request header)."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.cpu: defaultdict[str, float] = defaultdict(float)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        started = time.thread_time()  # each request is served on a thread of its own
        try:
            return self.app(environ, start_response)
        finally:
            with self.lock:
                self.cpu[environ.get("HTTP_X_BENCH_READ", "")] += time.thread_time() - started


def measure(members: int) -> dict[str, list[float]]:
    """Each read's [pages, wall seconds, emulator CPU seconds]."""
    store = Store()
    started = time.perf_counter()
    build_space(store, members=members, lessons=20, per_member=10)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    print(f"{members:>7,} members: space built in {time.perf_counter() - started:.1f} s", flush=True)
    meter = Meter(app)
    with BackgroundServer(meter) as server:  # type: ignore[arg-type]
        found = subprocess.run([sys.executable, "-c", READER, server.url, json.dumps(reads(members))],
                               capture_output=True, text=True, timeout=7200, check=True)
    store.close()
    timings: dict[str, list[float]] = json.loads(found.stdout)
    for name, figures in timings.items():
        figures.append(meter.cpu[name])
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,50000,200000")
    sizes = [int(x) for x in parser.parse_args().sizes.split(",")]
    results: dict[int, dict[str, list[float]]] = {}
    for members in sizes:
        results[members] = measure(members)
        smallest = results[sizes[0]]
        for name, (pages, wall, cpu) in results[members].items():
            base_pages, base_wall, base_cpu = smallest[name]
            wall_ms, cpu_ms = wall / pages * 1000, cpu / pages * 1000
            print(f"{'':>9}{name:<30} {int(pages):>6,} pages {wall:7.2f} s; a page: {wall_ms:6.2f} ms wall "
                  f"({wall_ms / (base_wall / base_pages * 1000):.2f}x), {cpu_ms:6.2f} ms emulator CPU "
                  f"({cpu_ms / (base_cpu / base_pages * 1000):.2f}x the {sizes[0]:,}-member figures)", flush=True)
    first = results[sizes[0]]
    for members in sizes[1:]:
        grown = members / sizes[0]
        wall = sum(r[1] for r in results[members].values()) / sum(r[1] for r in first.values())
        cpu = sum(r[2] for r in results[members].values()) / sum(r[2] for r in first.values())
        print(f"growth {sizes[0]:,} -> {members:,}: {grown:.1f}x members cost {wall:.1f}x wall, {cpu:.1f}x emulator "
              f"CPU (goal: about {grown:.1f}x)")


if __name__ == "__main__":
    main()
