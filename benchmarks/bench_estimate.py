"""The plan's estimate of apply time against the measured apply, at the documented limits.

For 100, 200 and 2,000 creates (10 per member), the plan says how long its writes take under the
client's budget (60 writes and 120 requests a minute, 100 ms apart); then the apply runs against a served
emulator with the client's clock running ten times fast (its sleeps shortened to match), so that the
budget binds exactly as it would, in a tenth of the time. Measured time = real time × 10. Goal: the
estimate within 10% of the measured time at every size.

Run: python -m benchmarks.bench_estimate [--sizes 100,200,2000] [--speed 10]
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
from reconciler.config import DOCUMENTED_LIMITS, Config, Credentials
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.planning import make_plan
from reconciler.spec import load_specs
from reconciler.target import Target


def measure(writes: int, speed: float, folder: Path) -> tuple[float, float]:
    store = Store()
    emails = build_space(store, members=writes // 10, lessons=10, per_member=0)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    write_spec(folder / "specs", emails, through=10)
    config = Config(target="http://bench", target_origin="bench", base_dir=folder, limits=DOCUMENTED_LIMITS,
                    state_dir=folder / ".reconciler")
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=Credentials(token="bench"), limits=DOCUMENTED_LIMITS,
                               clock=lambda: time.monotonic() * speed,
                               sleep=lambda seconds: time.sleep(seconds / speed))
        target = Target(client, server.url, Credentials(token="bench"))
        planned = make_plan(target, load_specs([folder / "specs"]), config)
        estimate = float(planned.doc["summary"]["estimate_seconds"])
        # A fresh client, so that the plan's reads do not count against the apply's first minute.
        client = NexudusClient(server.url, http, credentials=Credentials(token="bench"), limits=DOCUMENTED_LIMITS,
                               clock=lambda: time.monotonic() * speed,
                               sleep=lambda seconds: time.sleep(seconds / speed))
        target = Target(client, server.url, Credentials(token="bench"))
        started = time.perf_counter()
        result, _ = execute_plan(target, config, planned.typed, progress_out=io.StringIO())
        measured = (time.perf_counter() - started) * speed
    store.close()
    assert result.counts["created"] == writes, dict(result.counts)
    return estimate, measured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,200,2000")
    parser.add_argument("--speed", type=float, default=10.0)
    args = parser.parse_args()
    for writes in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as temporary:
            estimate, measured = measure(writes, args.speed, Path(temporary))
        print(f"{writes:>5,} writes: estimate {estimate:7.1f} s, measured {measured:7.1f} s "
              f"(clock x{args.speed:g}); off by {abs(estimate - measured) / measured:.1%} (goal <= 10%)", flush=True)


if __name__ == "__main__":
    main()
