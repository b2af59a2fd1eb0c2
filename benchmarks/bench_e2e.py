"""The whole loop through the command line, against a served emulator, at 3,000 to 200,000 members.

For each size: a space of N members enrolled in one course of 20 lessons, about half completed (10 each),
every member named by email in one spec (`through: Lesson 12`, owned). The emulator serves it over HTTP
from this process (limits off) and records every request it is sent. Then, each as a separate process:

- `reconciler plan specs --format json --out plan.json`: wall time, client CPU, peak memory (max RSS of
  the command), requests;
- the bare replay: the very same GET requests, sent by a bare httpx loop that reads each body and does
  nothing else, in its own process: the floor our own work is measured against (ratio = plan wall ÷
  replay wall; goal <= 2);
- the same replay's process timed as a whole, as the plan is (the interpreter's start and httpx's import included):
  printed beside the ratio, which stays against the loop alone;
- reading the saved plan back as `apply --plan` does (`load_plan(lean=True)`, a line at a time) and as `show`
  does (`load_plan`, the whole document), timed;
- `reconciler export --out exported` and `reconciler plan exported --detailed-exitcode`: the round trip
  (the plan on the export must show no changes).

- with `--apply SECONDS`: `reconciler apply --plan plan.json --yes --max-duration SECONDS` on the saved plan
  (limits off): the plan read back, every precondition re-read, then as many writes as fit, journaled, until
  the duration stops it cleanly (exit 3, resumable): wall, CPU, peak memory, writes done and writes a second.

Every command runs with the tool's bytecode compiled first, as `pip install` leaves it (`tool_env`).

Finally the growth factor between sizes (goal: each 5x in members costs at most 6x in time).
`--courses K` spreads the members over K courses of 20 lessons (one spec file each): `--sizes 200000 --courses 20`
is 20 courses of 10,000.

Run: python -m benchmarks.bench_e2e [--sizes 3000,10000,50000,200000] [--courses 1] [--no-export] [--no-cache]
[--stages] [--apply SECONDS] [--repeat N]
(`--repeat N`: the plan and its bare replay N times each, alternately, each plan reading as the first does (no read
cache yet); the medians are printed and compared, with their ranges: one run of each varies by several percent on
a shared machine.)
(`--stages`: the plan once more, printing its RSS after each stage: specs, catalog, resolve, completions, plan,
matrix, saved.)
(`--no-cache`: plan without the read cache, which is on by default and writes a full read away page by page.)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import reconciler
from benchmarks.space import build_courses, write_spec
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store

LOAD = """
import sys, time
from pathlib import Path
from reconciler.planning import load_plan
started = time.perf_counter()
plan = load_plan(Path(sys.argv[1]), lean=sys.argv[2] == "lean")
print(time.perf_counter() - started, len(plan.actions))
"""

STAGES = """
import os, sys, time
started = time.perf_counter()
out = open(os.environ["BENCH_STAGES"], "a")

def mark(stage):
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    now, peak = (int(status[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM"))
    print(f"  {stage:<12} RSS {now:6,} MiB, peak {peak:6,} MiB, at {time.perf_counter() - started:6.1f} s",
          file=out, flush=True)

def after(owner, name, stage):
    inner = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = inner(*args, **kwargs)
        mark(stage)
        return result
    setattr(owner, name, wrapped)

import reconciler.commands.plan as command
import reconciler.planning as planning
from reconciler.cli import main
from reconciler.state import StateReader
after(command, "load_spec_set", "specs")
after(StateReader, "catalog", "catalog")
after(planning, "resolve", "resolve")
after(StateReader, "completions", "completions")
after(planning, "plan_changes", "plan")
after(planning, "matrix_section", "matrix")
after(command, "save_plan", "saved")
code = main(sys.argv[1:])
mark("done")
sys.exit(code)
"""

REPLAY = """
import sys, time, httpx
urls = [line.rstrip("\\n") for line in open(sys.argv[1])]
started = time.perf_counter()
with httpx.Client(timeout=120) as http:
    for url in urls:
        http.get(url, headers={"Accept": "application/json", "Authorization": "Bearer bench"}).read()
print(time.perf_counter() - started)
"""


class Recorder:
    """WSGI middleware that records the URL of every request, for the bare replay."""

    def __init__(self, app: EmulatorApp, base: list[str]) -> None:
        self.app = app
        self.base = base
        self.urls: list[str] = []
        self.writes = 0  # requests other than GET (the token's aside)
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        query = environ.get("QUERY_STRING", "")
        with self.lock:
            self.urls.append(self.base[0] + environ.get("PATH_INFO", "") + (f"?{query}" if query else ""))
            if environ.get("REQUEST_METHOD") != "GET" and not environ.get("PATH_INFO", "").endswith("/token"):
                self.writes += 1
        return self.app(environ, start_response)


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str],
                                                                     dict[str, float]]:
    """Run `command` under GNU time: wall seconds, user+sys CPU seconds, peak RSS in MiB."""
    report = cwd / ".time"
    result = subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%e %U %S %M", *command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=7200)
    wall, user, system, rss = report.read_text().split()[-4:]
    return result, {"wall": float(wall), "cpu": float(user) + float(system), "rss": int(rss) / 1024}


def tool_env() -> dict[str, str]:
    """The environment of the commands measured, once the tool's bytecode is compiled (where Python looks for it),
    as `pip install` compiles it: an environment with PYTHONDONTWRITEBYTECODE set would otherwise compile every
    module of the tool again in every command (about 60 ms each time)."""
    env = {**os.environ, "NEXUDUS_TOKEN": "bench"}
    env.pop("NEXUDUS_API_URL", None)
    compiled = subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(reconciler.__file__).parent)],
                              env=env, check=False, capture_output=True, text=True, timeout=600)
    if compiled.returncode != 0:  # a read-only tree, say: the commands then compile what they import, each time
        print(f"(the tool's bytecode could not be compiled first: {compiled.stdout.strip()[-200:]})", flush=True)
    return env


def measure(members: int, work: Path, *, courses: int = 1, export: bool = True, cache: bool = True,
            stages: bool = False, apply: float = 0, repeat: int = 1) -> dict[str, Any]:
    store = Store()
    for title, emails in build_courses(store, courses, members // courses, lessons=20, per_member=10):
        write_spec(work / "specs", emails, title, through=12)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    base = [""]
    recorder = Recorder(app, base)
    # Limits off on both sides (the client's pacing would otherwise be the whole story).
    (work / "reconciler.yaml").write_text("limits: {min_interval_ms: 0, requests_per_minute: 100000000, "
                                          "requests_per_hour: 100000000, writes_per_minute: 100000000}\n")
    env = tool_env()
    with BackgroundServer(recorder) as server:  # type: ignore[arg-type]
        base[0] = server.url
        command = [sys.executable, "-m", "reconciler", "--api", server.url]
        plans: list[dict[str, float]] = []
        replays: list[float] = []  # the loop alone
        replay_processes: list[float] = []  # the whole process (the interpreter's start and httpx's import)
        requests: list[str] = []
        for run in range(repeat):  # the plan and its replay, one after the other, `repeat` times
            shutil.rmtree(work / ".reconciler", ignore_errors=True)  # each run reads as the first (no cache yet)
            recorder.urls.clear()
            plan, one = timed([*command, "plan", "specs", "--format", "json", "--out", "plan.json",
                               *([] if cache else ["--no-cache"])], work, env)
            assert plan.returncode in (0, 3), plan.stderr[-2000:]
            if run == 0:
                requests = list(recorder.urls)
                (work / "urls.txt").write_text("\n".join(requests) + "\n")
            assert sorted(recorder.urls) == sorted(requests), "a plan run made other requests than the first"
            plans.append(one)
            replayed, replay_run = timed([sys.executable, "-c", REPLAY, str(work / "urls.txt")], work, env)
            assert replayed.returncode == 0, replayed.stderr[-2000:]
            replays.append(float(replayed.stdout.strip()))
            replay_processes.append(replay_run["wall"])
        plan_time = {"wall": statistics.median(p["wall"] for p in plans),
                     "cpu": statistics.median(p["cpu"] for p in plans), "rss": max(p["rss"] for p in plans)}
        replay_wall = statistics.median(replays)
        replay_process = statistics.median(replay_processes)
        runs = (f" (the median of {repeat} runs each: plan {min(p['wall'] for p in plans):.2f}-"
                f"{max(p['wall'] for p in plans):.2f} s, replay {min(replays):.2f}-{max(replays):.2f} s)"
                if repeat > 1 else "")
        summary = json.loads((work / "plan.json").read_text())["summary"]
        if stages:  # the same plan again, in a process that says its memory after each stage
            print(f"{members:>7,} members: RSS by stage of `plan` (current, and the peak so far)", flush=True)
            subprocess.run([sys.executable, "-c", STAGES, "--api", server.url, "plan", "specs", "--format", "json",
                            "--out", "staged.json", *([] if cache else ["--no-cache"])], cwd=work,
                           env={**env, "BENCH_STAGES": str(work / "stages.txt")}, capture_output=True,
                           timeout=7200, check=False)
            print((work / "stages.txt").read_text(), end="", flush=True)
        # What `apply --plan` and `show` pay to read the saved plan back (schema, digest, every action typed and
        # checked): apply a line at a time, show the whole document.
        load_seconds = {}
        for way in ("lean", "whole"):
            loaded = subprocess.run([sys.executable, "-c", LOAD, str(work / "plan.json"), way], capture_output=True,
                                    text=True, timeout=7200, check=True, env=env)
            load_seconds[way] = float(loaded.stdout.split()[0])
        # Printed now, so that the plan's figures survive whatever the export then does at this size.
        print(f"{members:>7,} members: plan {plan_time['wall']:7.2f} s wall, {plan_time['cpu']:7.2f} s CPU, "
              f"{plan_time['rss']:6.0f} MiB peak, {len(requests):,} requests; bare replay {replay_wall:6.2f} s; "
              f"ratio {plan_time['wall'] / replay_wall:.2f}x (goal <= 2; against the replay as a whole process, "
              f"{replay_process:.2f} s, {plan_time['wall'] / replay_process:.2f}x){runs}; "
              f"{summary['create']:,} to create, {summary['unchanged']:,} unchanged; the saved plan loads in "
              f"{load_seconds['lean']:.1f} s as apply --plan reads it, {load_seconds['whole']:.1f} s as show does",
              flush=True)

        if apply:
            recorder.urls.clear()
            recorder.writes = 0
            applied, apply_time = timed([*command, "apply", "--plan", "plan.json", "--yes", "--max-duration",
                                         str(apply), *([] if cache else ["--no-cache"])], work, env)
            tail = (applied.stdout.strip().splitlines() or applied.stderr.strip().splitlines() or [""])[-1]
            print(f"{'':>16}apply  {apply_time['wall']:7.1f} s wall, {apply_time['cpu']:7.1f} s CPU, "
                  f"{apply_time['rss']:6.0f} MiB peak, exit {applied.returncode}, {len(recorder.urls):,} requests "
                  f"of which {recorder.writes:,} writes ({recorder.writes / apply_time['wall']:,.0f} a second over "
                  f"the whole run, the plan's loading and the preconditions' reads included): {tail[-160:]}",
                  flush=True)
        if not export:
            store.close()
            return {"members": members, "plan": plan_time, "requests": len(requests), "replay": replay_wall,
                    "summary": summary, "export": None}
        recorder.urls.clear()
        export_run, export_time = timed([*command, "export", "--out", "exported", *([] if cache else ["--no-cache"])],
                                        work, env)
        assert export_run.returncode == 0, export_run.stderr[-2000:]
        export_requests = len(recorder.urls)
        recorder.urls.clear()
        again, again_time = timed([*command, "plan", "exported", "--detailed-exitcode",
                                   *([] if cache else ["--no-cache"])], work, env)
    store.close()
    return {"members": members, "plan": plan_time, "requests": len(requests), "replay": replay_wall,
            "summary": summary, "export": export_time, "export_requests": export_requests,
            "round_trip": again.returncode, "round_trip_time": again_time,
            "round_trip_tail": again.stdout.strip().splitlines()[-1:] + again.stderr.strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="3000,10000,50000,200000")
    parser.add_argument("--no-export", action="store_true", help="measure the plan only (no export round trip)")
    parser.add_argument("--no-cache", action="store_true", help="run every command with --no-cache")
    parser.add_argument("--stages", action="store_true", help="also print the plan's memory after each stage")
    parser.add_argument("--courses", type=int, default=1, help="spread the members over this many courses")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run the plan and its bare replay N times each, alternately, and take the medians")
    parser.add_argument("--apply", type=float, default=0, metavar="SECONDS",
                        help="also apply the saved plan for at most this long (limits off)")
    options = parser.parse_args()
    sizes = [int(x) for x in options.sizes.split(",")]
    results = []
    for members in sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bench-e2e-{members}-"))
        try:
            started = time.perf_counter()
            found = measure(members, work, courses=options.courses, export=not options.no_export,
                            cache=not options.no_cache, stages=options.stages, apply=options.apply,
                            repeat=max(1, options.repeat))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        results.append(found)
        export = found["export"]
        if export is None:
            continue
        print(f"{'':>16}export {export['wall']:7.1f} s wall, {export['cpu']:7.1f} s CPU, {export['rss']:6.0f} MiB "
              f"peak, {found['export_requests']:,} requests; plan on the export: exit {found['round_trip']} "
              f"({'no changes' if found['round_trip'] == 0 else 'CHANGES'}) in "
              f"{found['round_trip_time']['wall']:.1f} s, "
              f"{found['round_trip_time']['rss']:.0f} MiB; {' / '.join(found['round_trip_tail'])} "
              f"[{time.perf_counter() - started:.0f} s in all]", flush=True)
    for before, after in itertools.pairwise(results):
        members = after["members"] / before["members"]
        cost = after["plan"]["wall"] / before["plan"]["wall"]
        print(f"growth {before['members']:,} -> {after['members']:,}: {members:.1f}x members cost {cost:.1f}x plan "
              f"wall (goal <= {members * 6 / 5:.1f}x), {after['plan']['cpu'] / before['plan']['cpu']:.1f}x CPU")


if __name__ == "__main__":
    main()
