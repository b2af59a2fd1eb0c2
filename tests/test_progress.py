"""Apply's progress during pacing: rate and time left from the schedule, a line while it waits for the write
budget or for a server that throttles, failures counted apart; Ctrl-C during a pacing wait ends the run within
a second, journal intact."""

from __future__ import annotations

import io
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

import httpx
import pytest

from reconciler.actions import Action, action_to_dict
from reconciler.apply import Executor, Result
from reconciler.client import NexudusClient
from reconciler.config import ClientLimits, Config, Credentials, Safety
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account, load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.errors import Interrupted
from reconciler.journal import Journal, read_journal
from reconciler.model import SpecSet
from reconciler.pacing import Pacer, StopFlag
from reconciler.planning import make_plan
from reconciler.progress import Progress
from reconciler.spec import load_specs
from reconciler.state import COMPLETIONS
from reconciler.target import Target

from .conftest import EXAMPLES

ADMIN = Credentials(username="pace.admin@example.com", password="pace-Pw-Secret-2718")


class FakeTime:
    """A monotonic clock that only a sleep moves on; every sleep recorded."""

    def __init__(self) -> None:
        self.now = 500.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def seeded_app(settings: Settings, monotonic: Callable[[], float] = time.monotonic) -> EmulatorApp:
    store = Store()
    load_seed(EXAMPLES / "seed.yaml", store)
    return EmulatorApp(store, settings, users=[User.from_account(account(ADMIN.username or "", ADMIN.password or ""))],
                       monotonic=monotonic)


def copy_specs(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for spec in EXAMPLES.glob("*.yaml"):
        if spec.name not in ("seed.yaml", "reconciler.yaml"):
            (folder / spec.name).write_text(spec.read_text())
    return folder


def config_and_specs(tmp_path: Path) -> tuple[Config, SpecSet]:
    """A configuration whose safety budgets let every planned delete through, and a copy of the example specs."""
    config = Config(target="http://emulator", target_origin="test", base_dir=tmp_path,
                    safety=Safety(max_delete_fraction=1.0, max_deletes=10_000), state_dir=tmp_path / ".reconciler")
    return config, load_specs([copy_specs(tmp_path / "specs")])


def run_journaled(client: NexudusClient, actions: Sequence[Action], journal_path: Path, out: TextIO) -> Result:
    """The executor over `actions` under a journal that starts as `apply` starts one, progress to `out`."""
    with Journal(journal_path) as journal:
        journal.write({"type": "start", "apply_id": "t", "target": client.base_url, "spec_digest": "",
                       "actions": [action_to_dict(a) for a in actions]})
        return Executor(client, journal, progress_out=out, recheck_members=False).run(list(enumerate(actions)))


def test_the_schedule_gives_rate_and_time_left_after_a_burst() -> None:
    fake = FakeTime()
    pacer = Pacer(ClientLimits(writes_per_minute=10), clock=fake.clock, sleep=fake.sleep)
    out = io.StringIO()
    progress = Progress(30, out, every=5.0, pacer=pacer, clock=fake.clock)
    for _ in range(10):  # a burst: the minute's budget in 0.1 s
        pacer.before(write=True)
        fake.now += 0.01
        pacer.after(write=True)
        progress.step("created")
    wait, budget = pacer.next_slot(write=True)
    assert wait == pytest.approx(59.91) and budget == "write budget (10 writes a minute)"  # the first answer's minute
    assert pacer.time_for_writes(20) == pytest.approx(120.0)  # two more minutes, the last as the burst's last
    assert pacer.time_for_writes(1) == pytest.approx(59.91)
    progress.waiting(wait, budget)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("1/30 done (1 applied, 0 failed, 0 skipped); 10/min, about ")
    assert lines[-1] == "10/30 done (10 applied, 0 failed, 0 skipped); waiting 60 s for the write budget (10 writes " \
                        "a minute)"
    fake.now += 5.0
    progress.step("failed")
    assert out.getvalue().splitlines()[-1] == "11/30 done (10 applied, 1 failed, 0 skipped); 10/min, about 1.9 min left"


def test_a_paced_apply_says_it_waits_and_counts_failures_apart(tmp_path: Path) -> None:
    app = seeded_app(Settings(limits=Limits.off(), unsuccessful_rate=0.25, rng_seed=3))
    fake = FakeTime()
    config, specs = config_and_specs(tmp_path)
    out = io.StringIO()
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(writes_per_minute=6),
                               sleep=fake.sleep, clock=fake.clock)
        plan = make_plan(Target(client, server.url, ADMIN), specs, config).typed
        assert len(plan.actions) >= 12
        result = run_journaled(client, plan.actions, tmp_path / "journal.jsonl", out)
    lines = out.getvalue().splitlines()
    waits = [line for line in lines if "waiting" in line]
    assert waits and all(line.endswith("for the write budget (6 writes a minute)") for line in waits), lines
    assert max(fake.sleeps) <= 5.0  # the wait was slept in steps short enough to say so every few seconds
    assert sum(fake.sleeps) >= 60 * (len(plan.actions) // 6 - 1)  # and the budget was kept
    total = len(plan.actions)
    first_pass = [line for line in lines if line.startswith(f"{total}/{total} done (") and "retrying" not in line]
    counted = counts_in(first_pass[-1])
    assert counted["failed"] >= 1 and sum(counted.values()) == total, lines  # failures are not "applied"
    final = counts_in(lines[-1])  # each failure is tried once more at the end, and counted as it came out
    assert final["failed"] == len(result.failed) and sum(final.values()) == total, lines
    assert result.stopped is None


def counts_in(line: str) -> dict[str, int]:
    """`12/30 done (9 applied, 2 failed, 1 skipped); ...` → {"applied": 9, "failed": 2, "skipped": 1}"""
    inside = line.split("(", 1)[1].split(")", 1)[0]
    return {name: int(number) for number, name in (part.split() for part in inside.split(", "))}


def test_an_interrupt_during_a_pacing_wait_stops_before_the_next_intent(tmp_path: Path) -> None:
    app = seeded_app(Settings(limits=Limits.off()))
    fake = FakeTime()
    client: NexudusClient

    def sleep_then_ctrl_c(seconds: float) -> None:
        fake.sleep(seconds)
        client.stop.set()  # as the SIGINT handler does, in the middle of the wait

    config, specs = config_and_specs(tmp_path)
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(writes_per_minute=3),
                               sleep=fake.sleep, clock=fake.clock)
        plan = make_plan(Target(client, server.url, ADMIN), specs, config).typed
        client.sleep = sleep_then_ctrl_c
        result = run_journaled(client, plan.actions, tmp_path / "journal.jsonl", io.StringIO())
    assert result.stopped == "interrupted" and result.stop_code == 130
    assert sum(result.counts.values()) == 3 and len(fake.sleeps) == 1  # the burst, then one slice of the wait
    state = read_journal(tmp_path / "journal.jsonl")
    assert set(state.intents) == set(state.outcomes) == {0, 1, 2}


def test_a_budget_wait_past_the_deadline_stops_before_sleeping_or_journaling(tmp_path: Path) -> None:
    app = seeded_app(Settings(limits=Limits.off()))
    fake = FakeTime()
    config, specs = config_and_specs(tmp_path)
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(writes_per_minute=3),
                               sleep=fake.sleep, clock=fake.clock)
        plan = make_plan(Target(client, server.url, ADMIN), specs, config).typed
        client.deadline = fake.now + 30  # the minute's three writes fit; the wait for the fourth does not
        result = run_journaled(client, plan.actions, tmp_path / "journal.jsonl", io.StringIO())
    assert result.stop_code == 3 and result.stopped and "deadline" in result.stopped
    assert fake.sleeps == []
    state = read_journal(tmp_path / "journal.jsonl")
    assert set(state.intents) == set(state.outcomes) == {0, 1, 2}


def test_an_interrupt_during_a_throttle_wait_after_the_intent_closes_it_in_the_journal(tmp_path: Path) -> None:
    """The server throttles the third write: Ctrl-C in that wait stops the run with the write's intent
    answered by an outcome (not sent: the resume looks first), so the journal has no write left open."""
    server_limits = Limits(min_interval_ms=None, requests_per_minute=None, requests_per_hour=None,
                           requests_per_day=None, writes_per_minute=2, writes_per_day=None)
    app = seeded_app(Settings(limits=server_limits))
    fake = FakeTime()
    client: NexudusClient

    def sleep_then_ctrl_c(seconds: float) -> None:
        fake.sleep(seconds)
        client.stop.set()

    config, specs = config_and_specs(tmp_path)
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(), sleep=fake.sleep,
                               clock=fake.clock)
        plan = make_plan(Target(client, server.url, ADMIN), specs, config).typed
        client.sleep = sleep_then_ctrl_c
        result = run_journaled(client, plan.actions, tmp_path / "journal.jsonl", io.StringIO())
    assert result.stopped == "interrupted" and result.stop_code == 130 and app.throttled_count == 1
    state = read_journal(tmp_path / "journal.jsonl")
    assert set(state.intents) == set(state.outcomes) == {0, 1, 2}
    assert state.outcomes[2]["status"] == "failed" and "stopped before an answer came" in state.outcomes[2]["message"]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_bar_shows_the_wait_and_the_failures_not_a_burst_rate() -> None:
    fake = FakeTime()
    pacer = Pacer(ClientLimits(writes_per_minute=10), clock=fake.clock, sleep=fake.sleep)
    out = Terminal()
    progress = Progress(30, out, pacer=pacer, clock=fake.clock)
    for index in range(10):
        pacer.before(write=True)
        fake.now += 0.01
        pacer.after(write=True)
        progress.step("failed" if index == 3 else "created")
    progress.waiting(*pacer.next_slot(write=True))
    progress.close()
    states = out.getvalue().replace("\n", "\r").split("\r")
    assert "10/30" in states[-2] and states[-2].endswith(", 1 failed, waiting 60 s for the write budget (10 writes a "
                                                          "minute)")
    assert "/s" not in out.getvalue() and "1 failed, 10/min, about 2.0 min left" in out.getvalue()


@pytest.mark.slow
def test_ctrl_c_during_a_long_pacing_wait_ends_the_apply_within_a_second(tmp_path: Path) -> None:
    app = seeded_app(Settings(limits=Limits.off()))
    work = copy_specs(tmp_path / "work")
    env = {**os.environ, "NEXUDUS_USERNAME": ADMIN.username or "", "NEXUDUS_PASSWORD": ADMIN.password or ""}
    env.pop("NEXUDUS_API_URL", None)
    with BackgroundServer(app) as server:
        (work / "reconciler.yaml").write_text(f"target: {server.url}\nlimits: {{writes_per_minute: 2, "
                                              "min_interval_ms: 0, requests_per_minute: 100000}\n")
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "--yes"], cwd=work, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal_dir = work / ".reconciler" / "journal"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the minute's two writes are made: a 60 s wait has begun
            journals = list(journal_dir.glob("*.jsonl")) if journal_dir.exists() else []
            if journals and journals[0].read_text().count('"type":"outcome"') >= 2:
                break
            time.sleep(0.02)
        time.sleep(0.5)
        interrupted = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        took = time.monotonic() - interrupted
    assert process.returncode == 130, out + err
    assert took < 5, f"Ctrl-C took {took:.1f} s to act"
    assert "waiting" in err and "for the write budget (2 writes a minute)" in err
    assert "Traceback" not in err and "Resume with: reconciler apply --resume" in out
    (journal,) = journal_dir.glob("*.jsonl")
    state = read_journal(journal)
    assert set(state.intents) == set(state.outcomes) and len(state.outcomes) == 2
    last = json.loads(journal.read_text().splitlines()[-1])
    assert last["type"] == "stop" and last["why"] == "interrupted"


def test_the_default_sleep_wakes_within_a_fraction_of_a_second_of_the_stop_flag() -> None:
    flag = StopFlag()
    threading.Timer(0.1, flag.set).start()
    started = time.monotonic()
    flag.sleep(30.0)
    assert time.monotonic() - started < 2.0 and flag.is_set


class StampedOut(io.StringIO):
    """Progress output that notes the fake clock's time of every line written."""

    def __init__(self, fake: FakeTime) -> None:
        super().__init__()
        self.fake = fake
        self.stamps: list[float] = []

    def write(self, text: str) -> int:
        self.stamps.extend(self.fake.now for _ in range(text.count("\n")))
        return super().write(text)


def test_a_server_throttling_the_writes_is_said_while_it_waits(tmp_path: Path) -> None:
    """The server allows 6 writes a minute and the client does not know it (it keeps only a least interval):
    the server's throttle waits (409, `Retry-After: 1`, a minute of them) are said at least every 5 s, and the
    least interval's sub-second waits print no `waiting 0 s` line."""
    server_limits = Limits(min_interval_ms=None, requests_per_minute=None, requests_per_hour=None,
                           requests_per_day=None, writes_per_minute=6, writes_per_day=None)
    fake = FakeTime()
    app = seeded_app(Settings(limits=server_limits), monotonic=fake.clock)  # the server's windows on the fake clock
    config, specs = config_and_specs(tmp_path)
    out = StampedOut(fake)
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(min_interval_ms=100),
                               sleep=fake.sleep, clock=fake.clock)
        plan = make_plan(Target(client, server.url, ADMIN), specs, config).typed
        assert len(plan.actions) >= 12
        started = fake.now
        result = run_journaled(client, plan.actions, tmp_path / "journal.jsonl", out)
        ended = fake.now
    lines = out.getvalue().splitlines()
    total = len(plan.actions)
    assert result.stopped is None and not result.failed, lines
    assert app.throttled_count >= 50 and ended - started >= 60  # a minute and more of the server's waits
    server_waits = [line for line in lines if "waiting" in line and "for the server" in line]
    assert server_waits, lines
    assert all(line.endswith(f"; waiting 1 s for the server: it throttled POST {COMPLETIONS} (409) and asked for 1 s")
               for line in server_waits), server_waits
    assert any(line.startswith(f"6/{total} done (6 applied,") for line in server_waits)  # while the 7th write waited
    stamps = [started, *out.stamps, ended]
    assert max(later - earlier for earlier, later in itertools.pairwise(stamps)) <= 5.0 + 0.2, \
        list(zip(out.stamps, lines, strict=True))
    assert not [line for line in lines if "waiting 0 s" in line or "least interval" in line], lines
    assert lines[-1].startswith(f"{total}/{total} done ({total} applied, 0 failed, 0 skipped); ")
    assert lines[-1].endswith(f"{total * 60 / (ended - started):,.0f}/min measured over "
                              f"{ended - started:,.1f} s ({round((ended - started) / 60)} min), 0 s left"), lines[-1]
    assert client.wait_listener is None  # the executor's listener is gone with its run


def test_the_final_rate_is_the_one_measured_not_the_budget_s_long_run_figure() -> None:
    """124 writes in 3.6 s inside an hour's budget of 5,000 requests: the run went at 2,067/min, not 83/min."""
    fake = FakeTime()
    pacer = Pacer(ClientLimits(requests_per_hour=5000), clock=fake.clock, sleep=fake.sleep)
    out = io.StringIO()
    progress = Progress(124, out, pacer=pacer, clock=fake.clock)
    for _ in range(124):
        pacer.before(write=True)
        fake.now += 3.6 / 124
        pacer.after(write=True)
        progress.step("created")
    assert out.getvalue().splitlines()[-1] == ("124/124 done (124 applied, 0 failed, 0 skipped); 2,067/min measured "
                                               "over 3.6 s, 0 s left")


class FixedRandom(random.Random):
    """A backoff's jitter, fixed."""

    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_every_wait_of_the_client_is_told_to_its_listener_in_slices() -> None:
    """Throttle waits (`Wait N seconds`, Retry-After) and backoffs reach the wait listener with the time left and
    the reason, every `report_every` seconds while they last; Ctrl-C still ends a long wait after one slice."""
    fake = FakeTime()
    answers = iter([httpx.Response(429, text="API calls quota exceeded. Wait 12 seconds."),
                    httpx.Response(503, text="busy"),
                    httpx.Response(409, headers={"Retry-After": "3"}),
                    httpx.Response(200, json={"Records": [], "TotalItems": 0, "TotalPages": 0, "HasNextPage": False})])
    http = httpx.Client(transport=httpx.MockTransport(lambda request: next(answers)))
    client = NexudusClient("https://x.example", http, sleep=fake.sleep, clock=fake.clock, rng=FixedRandom(0.5))
    told: list[tuple[float, str]] = []
    client.wait_listener = lambda seconds, reason: told.append((seconds, reason))
    assert client.request("GET", COMPLETIONS).status_code == 200
    throttled_429 = f"for the server: it throttled GET {COMPLETIONS} (429) and asked for 12 s"
    assert told[:3] == [(12.0, throttled_429), (7.0, throttled_429), (2.0, throttled_429)]
    assert told[3][0] == pytest.approx(0.5) and told[3][1] == f"before retrying GET {COMPLETIONS} (503)"
    assert told[4:] == [(3.0, f"for the server: it throttled GET {COMPLETIONS} (409) and asked for 3 s")]
    assert fake.sleeps == [5.0, 5.0, 2.0, pytest.approx(0.5), 3.0]

    def sleep_then_ctrl_c(seconds: float) -> None:
        fake.sleep(seconds)
        client.stop.set()

    client.sleep = sleep_then_ctrl_c
    client.http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(409, headers={"Retry-After": "60"})))
    told.clear()
    with pytest.raises(Interrupted):
        client.request("GET", COMPLETIONS)
    assert len(told) == 1 and fake.sleeps[-1] == 5.0  # one slice, then the stop flag ends the wait
