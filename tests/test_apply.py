"""Apply: confirmation, journal, saved plans, staleness, undo, faults over real HTTP, and SIGKILL."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.cli import main
from reconciler.client import NexudusClient
from reconciler.commands.apply import execute_plan
from reconciler.config import ClientLimits, Config, Credentials, Safety
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account, load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space, write_spec
from reconciler.journal import read_journal
from reconciler.planning import make_plan
from reconciler.spec import load_specs
from reconciler.target import Target

from .conftest import EmulatorFactory

FAST_LIMITS = "limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000}\n"
ADMIN = Credentials(username="ops@example.com", password="ops-Secret-7731")


def wait_for_outcomes(journal_dir: Path, count: int, timeout: float = 60) -> None:
    """Until the one journal in `journal_dir` records `count` outcomes (the apply is then mid-run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        journals = list(journal_dir.glob("*.jsonl")) if journal_dir.exists() else []
        if journals and journals[0].read_text().count('"type":"outcome"') >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"the apply did not reach {count} outcomes in {timeout} s")


def journal_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_apply_needs_yes_without_a_terminal(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply"]) == 1
    assert "refusing to apply without confirmation" in capsys.readouterr().err
    assert main(["plan", "--detailed-exitcode"]) == 2  # nothing was applied


def test_apply_converges_journals_every_write_and_verifies(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apply", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "created       26" in out and "deleted        2" in out and "enrolled       2" in out
    assert "Converged: all 30 planned changes are in place." in out
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    lines = journal_lines(journal)
    assert lines[0]["type"] == "start" and len(lines[0]["actions"]) == 30  # type: ignore[arg-type]
    assert lines[-1]["type"] == "end"
    seen_intent: set[object] = set()
    for line in lines[1:-1]:
        if line["type"] == "intent":
            seen_intent.add(line["seq"])
        if line["type"] == "outcome":
            assert line["seq"] in seen_intent  # never an outcome without its intent first
    deletes = [line["action"] for line in lines if line["type"] == "intent"
               and line["action"]["action"] == "delete"]  # type: ignore[index]
    assert len(deletes) == 2 and all(d["record"]["CreatedOn"] and d["record"]["Id"] for d in deletes)  # type: ignore[index]
    assert main(["plan", "--detailed-exitcode"]) == 0


def test_a_blocked_plan_is_not_applied_unless_lifted(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nsafety: {max_deletes: 1}\n")
    assert main(["apply", "--yes"]) == 3
    assert not (demo / ".reconciler" / "journal").exists()
    assert main(["apply", "--yes", "--allow-deletes", "2"]) == 0


def test_a_saved_plan_is_applied_as_reviewed(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--out", "plan.json"]) == 0
    assert main(["apply", "--plan", "plan.json", "--yes"]) == 0
    assert "created       26" in capsys.readouterr().out
    assert main(["apply", "--plan", "plan.json", "--yes"]) == 0  # again: every precondition is now false
    out = capsys.readouterr().out
    assert "skipped       30" in out and "already exists" in out and "already gone" in out


def test_a_saved_plan_refuses_changed_specs_and_another_target(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--out", "plan.json"]) == 0
    (demo / "makerspace.yaml").write_text((demo / "makerspace.yaml").read_text() + "# edited\n")
    assert main(["apply", "--plan", "plan.json", "--yes"]) == 3
    assert "stale plan: the spec files changed" in capsys.readouterr().err
    plan = json.loads((demo / "plan.json").read_text())
    plan["target"] = "https://spaces.nexudus.com"
    (demo / "other.json").write_text(json.dumps(plan))
    assert main(["apply", "--plan", "other.json", "--yes"]) == 3
    assert "it was made against https://spaces.nexudus.com" in capsys.readouterr().err


def test_drift_since_the_plan_is_skipped_or_refused_with_strict(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--out", "plan.json"]) == 0
    plan = json.loads((demo / "plan.json").read_text())
    revoked = next(a for a in plan["actions"] if a["action"] == "delete")
    store = Store(str(demo / ".reconciler" / "local.sqlite"))  # someone deletes it meanwhile
    store.delete("coursecompletedlessons", revoked["record"]["Id"])
    store.close()
    assert main(["apply", "--plan", "plan.json", "--yes", "--strict"]) == 3
    assert "1 of 30 actions no longer hold" in capsys.readouterr().err
    assert main(["apply", "--plan", "plan.json", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "skipped        1" in out and "already gone" in out and "created       26" in out


def test_undo_restores_the_previous_pairs_exactly(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def pairs() -> Counter[tuple[int, int]]:
        store = Store(str(demo / ".reconciler" / "local.sqlite"))
        try:
            rows = store.iter_rows("coursecompletedlessons")
            return Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in rows)
        finally:
            store.close()

    assert main(["plan"]) == 0
    before = pairs()
    assert main(["apply", "--yes"]) == 0
    assert pairs() != before
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    capsys.readouterr()
    # 26 deletes are 60% of the 43 completions the apply's members hold in its lessons: blocked, as a plan is.
    assert main(["undo", str(journal), "--out", "undo.json"]) == 3
    out = capsys.readouterr().out
    assert "Plan: 2 to create, 26 to delete" in out and "original completion dates cannot be restored" in out
    assert "re-run with --allow-deletes 26 to proceed" in out
    origins = [a["origin"] for a in json.loads((demo / "undo.json").read_text())["actions"]]
    assert all(re.fullmatch(rf"{re.escape(str(journal))}: start\.actions\[\d+\]", o) for o in origins)  # not lines
    assert main(["apply", "--plan", "undo.json", "--yes", "--allow-deletes", "26"]) == 0
    assert pairs() == before
    out = capsys.readouterr().out  # lifted, it is not shown as blocked on its way to being applied
    assert "Blocked:" not in out and "re-run with" not in out
    assert "Lifted by --allow-deletes 26: 26 deletes are 60% of the 43 existing completions in scope" in out


# --- faults over real HTTP ------------------------------------------------------------------------

@pytest.mark.slow
def test_faults_converge_in_two_applies_without_duplicates_or_stray_deletes(tmp_path: Path) -> None:
    store = Store()
    emails = build_space(store, members=40, lessons=8, per_member=3)
    store.save_user(account(ADMIN.username or "", ADMIN.password or ""))
    # A clock sixty times fast: the emulator's per-minute windows pass in a second, so throttling
    # happens often but costs little; the client's sleeps are scaled to match.
    app = EmulatorApp(store, Settings(
        limits=Limits(min_interval_ms=None, requests_per_minute=None, requests_per_hour=None, requests_per_day=None,
                      writes_per_minute=40, writes_per_day=None),
        fail_rate=0.10, lose_rate=0.15, unsuccessful_rate=0.10, rng_seed=11), monotonic=lambda: time.monotonic() * 60)
    before = {row["Id"]: dict(row) for row in store.iter_rows("coursecompletedlessons")}
    spec_dir = tmp_path / "specs"
    write_spec(spec_dir, emails, through=4, mode="authoritative")
    specs = load_specs([spec_dir])
    config = Config(target="http://emulator", target_origin="test", base_dir=tmp_path,
                    safety=Safety(max_delete_fraction=1.0, max_deletes=10_000), state_dir=tmp_path / ".reconciler")
    with BackgroundServer(app) as server, httpx.Client() as http:
        client = NexudusClient(server.url, http, credentials=ADMIN, limits=ClientLimits(),
                               sleep=lambda seconds: time.sleep(seconds / 60))
        target = Target(client, server.url, ADMIN)
        first = make_plan(target, specs, config)
        planned_deletes = {a["record"]["Id"] for a in first.doc["actions"] if a["action"] == "delete"}
        assert first.plan.count("create") > 50 and len(planned_deletes) > 10
        _, journal_one = execute_plan(target, config, first.typed)
        second = make_plan(target, specs, config)
        _, journal_two = execute_plan(target, config, second.typed)
        assert make_plan(target, specs, config).plan.actions == []  # converged
    assert app.throttled_count > 0 and client.stats.retries > 0  # the faults really happened

    pairs = Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in store.iter_rows("coursecompletedlessons"))
    assert max(pairs.values()) == 1  # not one duplicate
    deleted = set(before) - {row["Id"] for row in store.iter_rows("coursecompletedlessons")}
    assert deleted <= planned_deletes  # nothing outside the plan was deleted

    intents = [line for path in (journal_one, journal_two) for line in journal_lines(path) if line["type"] == "intent"]
    created_pairs = {(i["action"]["member"]["id"], i["action"]["lesson"]["id"])  # type: ignore[index]
                     for i in intents if i["action"]["action"] == "create"}  # type: ignore[index]
    deleted_ids = {i["action"]["record"]["Id"] for i in intents if i["action"]["action"] == "delete"}  # type: ignore[index]
    for method, _path, body in app.writes_seen:
        if method == "POST":
            assert (body["CourseMemberId"], body["CourseLessonId"]) in created_pairs
        else:
            assert int(_path.rsplit("/", 1)[1]) in deleted_ids


# --- SIGKILL mid-apply ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("recovery", ["resume", "apply again"])
def test_a_killed_apply_recovers_without_duplicates(tmp_path: Path, recovery: str) -> None:
    store = Store()
    emails = build_space(store, members=30, lessons=6, per_member=1)
    admin = User.from_account(account(ADMIN.username or "", ADMIN.password or ""))
    app = EmulatorApp(store, Settings(limits=Limits.off(), latency_ms=15, lose_rate=0.1, rng_seed=3), users=[admin])
    work = tmp_path / "work"
    write_spec(work / "specs", emails, through=5)
    env = {**os.environ, "NEXUDUS_USERNAME": ADMIN.username or "", "NEXUDUS_PASSWORD": ADMIN.password or ""}
    with BackgroundServer(app) as server:
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n" + FAST_LIMITS)
        command = [sys.executable, "-m", "reconciler", "apply", "specs", "--yes"]
        process = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal_dir = work / ".reconciler" / "journal"
        wait_for_outcomes(journal_dir, 25)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        (journal,) = journal_dir.glob("*.jsonl")
        state = read_journal(journal)
        assert not state.ended and 25 <= len(state.outcomes) < len(state.actions)

        follow = [sys.executable, "-m", "reconciler", "apply", "--resume", str(journal), "--yes"] \
            if recovery == "resume" else command
        result = subprocess.run(follow, cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert str(ADMIN.password) not in result.stdout + result.stderr
        check = subprocess.run([sys.executable, "-m", "reconciler", "plan", "specs", "--detailed-exitcode",
                                "--out", "plan.json"], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert check.returncode == 0, check.stdout + check.stderr
        assert str(ADMIN.password) not in check.stdout + check.stderr
        for path in work.rglob("*"):  # journals, the saved plan, everything the runs wrote
            if path.is_file():
                assert (ADMIN.password or "").encode() not in path.read_bytes(), path
    pairs = Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in store.iter_rows("coursecompletedlessons"))
    assert max(pairs.values()) == 1


def test_a_create_in_flight_at_a_kill_is_counted_created_by_the_resume(demo: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """The server made the completion, the run died before journaling the answer: the resume finds it carrying the
    create's marker, made since it was sent, and counts it created (with its Id in the journal), not "skipped:
    already exists" as if another writer had made it."""
    assert main(["apply", "--yes"]) == 0
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    lines = journal.read_text().splitlines(keepends=True)
    entries = [json.loads(line) for line in lines]
    last = max(i for i, e in enumerate(entries)
               if e["type"] == "outcome" and e["status"] == "created")  # the last create's answer, never journaled
    made, seq = entries[last]["id"], entries[last]["seq"]
    journal.write_text("".join(lines[:last]))  # (the intent before it kept; what came after lost with the run)
    capsys.readouterr()
    assert main(["apply", "--resume", str(journal), "--yes"]) == 0
    out = capsys.readouterr().out
    assert "already exists" not in out and "created        1" in out and "skipped        0" in out
    outcome = [e for e in journal_lines(journal) if e["type"] == "outcome" and e["seq"] == seq][-1]
    assert outcome["status"] == "created" and outcome["id"] == made
    assert main(["plan", "--detailed-exitcode"]) == 0


def test_the_daily_write_cap_stops_cleanly_and_holds_across_runs(demo: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 5}\n")
    assert main(["apply", "--yes"]) == 3
    out = capsys.readouterr().out
    assert "created        4" in out and "deleted        1" in out and "daily write" in out
    assert re.search(r"the next write is allowed in 86,\d{3}(\.\d)? s \(24 h\), at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC",
                     out), out  # (the time of day too: a number of seconds alone says little a day ahead)
    assert "Resume with: reconciler apply --resume" in out
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    assert journal_lines(journal)[-1]["type"] == "stop"
    assert main(["apply", "--resume", str(journal), "--yes"]) == 3  # the same day: the budget is spent
    assert "created        0" in capsys.readouterr().out
    (demo / "reconciler.yaml").write_text("target: local\nseed: seed.yaml\n")  # as if the next day came
    assert main(["apply", "--resume", str(journal), "--yes"]) == 0
    assert "25 of 30 actions left" in capsys.readouterr().out
    assert main(["plan", "--detailed-exitcode"]) == 0



def test_plan_and_apply_say_when_earlier_writes_leave_too_little_of_the_daily_cap(
        demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The estimate is the writes under the limits; the writes earlier applies made today (their journals) are
    said beside it when the cap will stop this one, before apply asks, with how many can go now."""
    config = demo / "reconciler.yaml"
    config.write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 5}\n")
    assert main(["plan"]) == 0
    assert "daily write cap" not in capsys.readouterr().err  # no journal yet: the estimate holds
    assert main(["apply", "--yes"]) == 3
    capsys.readouterr()
    assert main(["plan"]) == 0
    assert ("warning: the daily write cap: earlier applies against this target made 5 writes in the last 24 hours "
            "(the cap is 5 a day), so none of these 25 can go now: an apply stops cleanly (resumable); the next "
            "write is allowed in ") in capsys.readouterr().err
    config.write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 8}\n")
    assert main(["apply", "--yes", "-q"]) == 3
    assert "so 3 of these 25 can go now, then an apply stops cleanly" in capsys.readouterr().err
    config.write_text("target: local\nseed: seed.yaml\nlimits: {writes_per_day: 100}\n")
    assert main(["plan"]) == 0  # 8 spent, 92 left for 22: they fit, nothing to say
    assert "daily write cap" not in capsys.readouterr().err

@pytest.mark.slow
def test_ctrl_c_stops_after_the_write_in_flight(tmp_path: Path) -> None:
    store = Store()
    emails = build_space(store, members=30, lessons=6, per_member=1)
    admin = User.from_account(account(ADMIN.username or "", ADMIN.password or ""))
    app = EmulatorApp(store, Settings(limits=Limits.off(), latency_ms=20), users=[admin])
    work = tmp_path / "work"
    write_spec(work / "specs", emails, through=5)
    env = {**os.environ, "NEXUDUS_USERNAME": ADMIN.username or "", "NEXUDUS_PASSWORD": ADMIN.password or ""}
    with BackgroundServer(app) as server:
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n" + FAST_LIMITS)
        process = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "specs", "--yes"], cwd=work,
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        journal_dir = work / ".reconciler" / "journal"
        wait_for_outcomes(journal_dir, 10)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, out + err
        assert "Traceback" not in err and "Resume with: reconciler apply --resume" in out
        (journal,) = journal_dir.glob("*.jsonl")
        state = read_journal(journal)
        assert set(state.intents) == set(state.outcomes)  # the write in flight was finished and recorded
        assert journal_lines(journal)[-1] == {"type": "stop", "why": "interrupted",
                                              "at": journal_lines(journal)[-1]["at"]}
        resumed = subprocess.run([sys.executable, "-m", "reconciler", "apply", "--resume", str(journal), "--yes"],
                                 cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr


def test_progress_without_a_terminal_prints_a_plain_line() -> None:
    from reconciler.progress import Progress

    out = io.StringIO()
    progress = Progress(4, out, every=0.0)
    for status in ("created", "failed", "skipped", "deleted"):
        progress.step(status)
    progress.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("4/4 done (2 applied, 1 failed, 1 skipped); ")
    assert lines[-1].endswith("s left")
    assert "\r" not in out.getvalue()


def test_a_record_changed_since_the_plan_is_explained_field_by_field() -> None:
    from reconciler.actions import Delete, Record, Ref
    from reconciler.fresh import Fresh, stale_reason

    planned = {"Id": 7, "CourseMemberId": 1, "CourseLessonId": 2, "SystemId": None,
               "UpdatedOn": "2026-01-01T00:00:00.000Z", "CreatedOn": "2026-01-01T00:00:00.000Z"}
    found = {**planned, "SystemId": "reconciler:x", "UpdatedOn": "2026-02-01T00:00:00.000Z", "Extra": 1}
    action = Delete(Ref(3), Ref(1), Ref(2), "spec", "undeclared", record=Record.from_api(planned))
    reason = stale_reason(action, Fresh({}, {7: found}, {}))
    assert reason == ("changed since the plan: SystemId None → 'reconciler:x'; "
                      "UpdatedOn '2026-01-01T00:00:00.000Z' → '2026-02-01T00:00:00.000Z'")


@pytest.mark.parametrize(("reads", "writes", "spare"), [
    (2_000, 2_000, True),  # 4,000 requests: within the hour's 5,000; the minute's 120 hold a read a write
    (4_000, 4_000, False),  # past the hour's 5,000: a read a write would slow the writes by about a half
    (1_000, 10_000, True),  # a read per ten writes fits even the hour's budget
    (4_000, 10_000, False),
])
def test_reads_beside_writes_only_where_the_documented_budget_has_room(reads: int, writes: int,
                                                                       spare: bool) -> None:
    from reconciler.apply import spare_reads
    from reconciler.config import DOCUMENTED_LIMITS

    with httpx.Client() as http:
        client = NexudusClient("https://x.example", http, limits=DOCUMENTED_LIMITS)
        assert spare_reads(client, reads, writes) is spare
        assert spare_reads(NexudusClient("https://x.example", http), reads, writes)  # no limits: always room


def test_a_deletes_intent_journals_the_whole_record_as_the_server_has_it(demo: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Every field the server holds, read by Id just before (who recorded it, custom fields, what lists leave out),
    beside the plan's record that undo uses."""
    assert main(["apply", "--yes"]) == 0
    capsys.readouterr()
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    entries: list[dict[str, Any]] = [json.loads(line) for line in journal.read_text().splitlines()]
    deletes = [e for e in entries if e["type"] == "intent" and e["action"]["action"] == "delete"]
    assert len(deletes) == 2
    for entry in deletes:
        whole = entry["record"]
        assert whole["Id"] == entry["action"]["record"]["Id"]
        assert {"UpdatedBy", "IsNew", "CustomFields", "CourseMemberCoworkerCompanyName"} <= whole.keys()
        assert whole["UpdatedBy"] == "seed@reconciler"


def test_the_resume_command_printed_names_the_target_the_run_was_given(
        demo: Path, emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose target came from --api prints a resume command with it, which works as printed (without it, the
    command would name the folder's own target, and the journal is refused there); and with --yes, which the run
    was given (there is no terminal to confirm on, as in CI)."""
    import shlex

    server = emulator(seed=demo / "seed.yaml", settings=Settings(limits=Limits.off(), require_auth=False))
    monkeypatch.setenv("NEXUDUS_TOKEN", "token")
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\nlimits: {writes_per_day: 5}\n")
    assert main(["--api", server.url, "apply", "--yes"]) == 3
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("Resume with: ")]
    words = shlex.split(line.removeprefix("Resume with: "))
    assert words[:4] == ["reconciler", "--api", server.url, "apply"] and words[-1] == "--yes"
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\n")  # as if the next day came
    assert main(words[1:]) == 0
    assert "25 of 30 actions left" in capsys.readouterr().out


def test_one_target_spelled_two_ways_is_one_target(
        demo: Path, emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Scheme and host are not case-sensitive and a default port is no port: a plan saved with --api spelled one way
    applies with it spelled another; and a journal or a plan that recorded another spelling (written before targets
    had one) is of the same target: resumed, undone, and counted against the day's cap."""
    server = emulator(seed=demo / "seed.yaml", settings=Settings(limits=Limits.off(), require_auth=False))
    monkeypatch.setenv("NEXUDUS_TOKEN", "token")
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\n")
    port = server.url.rsplit(":", 1)[1]
    shouting, plain = f"HTTP://LocalHost:{port}/", f"http://localhost:{port}"
    assert main(["--api", shouting, "plan", "--out", "plan.json"]) == 0
    saved = json.loads((demo / "plan.json").read_text())
    assert saved["target"] == plain
    assert main(["--api", plain, "apply", "--plan", "plan.json", "--yes"]) == 0
    assert "created       26" in capsys.readouterr().out
    (journal,) = (demo / ".reconciler" / "journal").glob("*.jsonl")
    lines = journal.read_text().splitlines()
    start = json.loads(lines[0])
    assert start["target"] == plain
    journal.write_text("\n".join([json.dumps({**start, "target": shouting}), *lines[1:]]) + "\n")
    (demo / "plan.json").write_text(json.dumps({**saved, "target": shouting}))
    assert main(["--api", plain, "apply", "--plan", "plan.json", "--yes"]) == 0  # every precondition now false
    assert "skipped       30" in capsys.readouterr().out
    assert main(["--api", plain, "undo", str(journal), "--out", "undo.json", "--allow-deletes", "26"]) == 0
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\nlimits: {writes_per_day: 40}\n")
    assert main(["--api", plain, "apply", "--plan", "undo.json", "--yes"]) == 3
    captured = capsys.readouterr()
    assert "earlier applies against this target made 30 writes in the last 24 hours" in captured.err
    assert "Stopped: the daily write budget of 40 is spent" in captured.out


class EnrolledMeanwhile:
    """WSGI middleware: another writer enrols the member just before each enrolment of ours arrives (two applies
    from two folders), which the service then refuses: 400 "already a member of this course"."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/coursemembers"):
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            b"".join(self.app({**environ, "wsgi.input": io.BytesIO(body)}, lambda *answer: None))  # the other's
            environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


def test_an_enrolment_another_writer_made_meanwhile_is_skipped_and_its_creates_go_on(
        demo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A 400 to an enrolment is read back: the member enrolled by another writer since the plan was read is skipped
    (not failed), and the migration's creates for them are made on that enrolment."""
    store = Store()
    load_seed(demo / "seed.yaml", store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with BackgroundServer(EnrolledMeanwhile(app)) as server:  # type: ignore[arg-type]
        monkeypatch.setenv("NEXUDUS_TOKEN", "token")
        (demo / "reconciler.yaml").write_text("seed: seed.yaml\n")
        assert main(["--api", server.url, "apply", "--yes"]) == 0
        out = capsys.readouterr().out
        assert "failed         0" in out and "already enrolled (#" in out and "Converged" in out
        assert main(["--api", server.url, "plan", "--detailed-exitcode"]) == 0


def test_a_plan_does_not_create_what_its_read_missed_under_churn(
        demo: Path, emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Another writer between the pages of a read at offsets (a delete and a create: the total does not move) shifts
    records past it. A plan creating for a few members reads their completions again: no create is planned for a
    pair that exists, and a warning says what the second read found."""
    server = emulator(seed=demo / "seed.yaml", settings=Settings(limits=Limits.off(), require_auth=False,
                                                                  max_page_size=20, rng_seed=5))
    monkeypatch.setenv("NEXUDUS_TOKEN", "token")
    (demo / "reconciler.yaml").write_text("seed: seed.yaml\n")
    assert main(["--api", server.url, "apply", "--yes"]) == 0
    assert main(["--api", server.url, "plan", "--detailed-exitcode"]) == 0
    capsys.readouterr()
    server.app.settings.churn_between_pages = 1
    assert main(["--api", server.url, "plan", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    held = {(r["CourseMemberId"], r["CourseLessonId"]) for r in server.app.store.iter_rows("coursecompletedlessons")}
    creates = [(a["member"]["id"], a["lesson"]["id"]) for a in doc["actions"] if a["action"] == "create"]
    assert [pair for pair in creates if pair in held] == []  # each create is of a pair the churn deleted
    assert any("found by a second read of their members" in w for w in doc["warnings"]), doc["warnings"]
