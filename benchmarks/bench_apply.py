"""Applying 2,000 writes against the emulator over HTTP.

1. The emulator limits writes to 600 a minute (and keeps the documented 1 request per 100 ms); the
   client is given the same budget. Figures: achieved writes a minute ÷ the limit (goal at least 0.95)
   and throttling responses received (goal 0).
2. Limits off on both sides: writes a second, against a floor of bare POSTs with httpx in the same run.

Run: python -m benchmarks.bench_apply [--writes N]
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import httpx

from benchmarks.space import build_space, write_spec
from reconciler.client import NexudusClient
from reconciler.commands.apply import execute_plan
from reconciler.config import ClientLimits, Config, Credentials
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.planning import make_plan
from reconciler.spec import load_specs
from reconciler.target import Target

CREDENTIALS = Credentials(username="bench@example.com", password="bench-pw")


def run(writes: int, server_limits: Limits, client_limits: ClientLimits, folder: Path) -> tuple[float, int, int]:
    store = Store()
    emails = build_space(store, members=writes // 10, lessons=10, per_member=0)
    admin = User.from_account(account(CREDENTIALS.username or "", CREDENTIALS.password or ""))
    app = EmulatorApp(store, Settings(limits=server_limits), users=[admin])
    write_spec(folder / "specs", emails, through=10)
    specs = load_specs([folder / "specs"])
    config = Config(target="http://bench", target_origin="bench", base_dir=folder, limits=client_limits,
                    state_dir=folder / ".reconciler")
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=CREDENTIALS, limits=client_limits)
        target = Target(client, server.url, CREDENTIALS)
        planned = make_plan(target, specs, config)
        assert planned.plan.count("create") == writes
        started = time.perf_counter()
        result, _ = execute_plan(target, config, planned.typed, progress_out=io.StringIO())
        elapsed = time.perf_counter() - started
    store.close()
    assert not result.failed and result.counts["created"] == writes
    return elapsed, app.throttled_count, client.stats.throttled


def bare_posts(writes: int) -> float:
    """The floor: POSTs straight from httpx, no pacing, no journal."""
    store = Store()
    build_space(store, members=writes // 10, lessons=10, per_member=0)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with BackgroundServer(app) as server, httpx.Client() as http:
        started = time.perf_counter()
        for n in range(writes):
            http.post(server.url + "/api/content/coursecompletedlessons",
                      json={"CourseLessonId": 2001 + n % 10, "CourseMemberId": 50_001 + n // 10})
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--writes", type=int, default=2000)
    writes = parser.parse_args().writes
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        limit = 600
        server = Limits(min_interval_ms=100, requests_per_minute=None, requests_per_hour=None, requests_per_day=None,
                        writes_per_minute=limit, writes_per_day=None)
        client = ClientLimits(writes_per_minute=limit, min_interval_ms=100)
        elapsed, throttled, seen = run(writes, server, client, folder / "paced")
        achieved = writes / elapsed * 60
        print(f"paced: {writes:,} writes in {elapsed:.1f} s = {achieved:.0f} writes/min; limit {limit}/min; "
              f"ratio {achieved / limit:.3f} (goal >= 0.95); throttling responses {throttled} (client saw {seen})")

        elapsed, throttled, _ = run(writes, Limits.off(), ClientLimits(), folder / "free")
        floor = bare_posts(writes)
        print(f"limits off: {writes / elapsed:.0f} writes/s (journaled, fsynced, checked); "
              f"bare httpx POSTs {writes / floor:.0f} writes/s; ratio {elapsed / floor:.2f}x the floor's time")


if __name__ == "__main__":
    main()
