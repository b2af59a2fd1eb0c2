"""Writes you can trust, over real HTTP: one apply at a time, undo that restores whatever the server
deleted, journals that survive a kill, bounded waits, saved plans that are checked, and 401s per item."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from reconciler.actions import actions_digest, document_digest
from reconciler.client import NexudusClient
from reconciler.config import Credentials
from reconciler.emulator.app import EmulatorApp, Settings, User
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space, write_spec
from reconciler.journal import read_journal
from reconciler.verify import verify

from .conftest import run_cli

USER, PASSWORD = "ops@example.com", "ops-Secret-7731"
CONFIG = ("limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000}\n"
          "safety: {max_delete_fraction: 1.0, max_deletes: 100000}\n")
ENV = {**os.environ, "NEXUDUS_USERNAME": USER, "NEXUDUS_PASSWORD": PASSWORD}
ENV.pop("NEXUDUS_API_URL", None)


class Served:
    """A synthetic space served over HTTP on 127.0.0.1, and folders whose specs name its members."""

    def __init__(self, tmp_path: Path, capsys: pytest.CaptureFixture[str], settings: Settings, *, members: int = 30,
                 per_member: int = 3, lessons: int = 6, wrap: Callable[[EmulatorApp], Any] | None = None) -> None:
        self.capsys = capsys
        self.store = Store()
        self.emails = build_space(self.store, members=members, lessons=lessons, per_member=per_member)
        self.store.save_user(account(USER, PASSWORD))
        self.app = EmulatorApp(self.store, settings)
        # `wrap`: WSGI middleware in front of the emulator, for a fault it does not play itself
        self.server = BackgroundServer(wrap(self.app) if wrap else self.app).__enter__()
        self.tmp = tmp_path

    def folder(self, name: str = "work", *, through: int = 3, mode: str = "authoritative") -> Path:
        work = self.tmp / name
        write_spec(work / "specs", self.emails, through=through, mode=mode)
        (work / "reconciler.yaml").write_text(f"target: {self.server.url}\n" + CONFIG)
        return work

    def close(self) -> None:
        self.server.__exit__(None, None, None)
        self.store.close()

    def run(self, work: Path, *argv: str, api_url: str | None = None) -> subprocess.CompletedProcess[str]:
        """`reconciler ARGV` in `work`, as `reconciler()` runs it but in this process: the same command, exit
        code and output, without a Python start-up and imports per call. Runs that must be separate
        processes (killed, or holding the lock against another) use `reconciler()`."""
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(work)
            patch.setenv("NEXUDUS_USERNAME", USER)
            patch.setenv("NEXUDUS_PASSWORD", PASSWORD)
            if api_url is None:
                patch.delenv("NEXUDUS_API_URL", raising=False)
            else:
                patch.setenv("NEXUDUS_API_URL", api_url)
            code, out, err = run_cli(self.capsys, *argv)
        return subprocess.CompletedProcess(["reconciler", *argv], code, out, err)

    def records(self) -> dict[int, dict[str, Any]]:
        return {row["Id"]: dict(row) for row in self.store.iter_rows("coursecompletedlessons")}

    def pairs(self) -> Counter[tuple[int, int]]:
        rows = self.store.iter_rows("coursecompletedlessons")
        return Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in rows)


ServedFactory = Callable[..., Served]


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[ServedFactory]:
    made: list[Served] = []

    def make(settings: Settings | None = None, **kwargs: Any) -> Served:
        made.append(Served(tmp_path, capsys, settings or Settings(limits=Limits.off()), **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def reconciler(work: Path, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reconciler", *argv], cwd=work, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def kill_apply_when(work: Path, ready: Callable[[str], bool], *, poll: float = 0.02) -> Path:
    """Start `apply specs --yes` in `work`, SIGKILL it once its journal's text satisfies `ready` (or after a
    minute), and return the journal it leaves."""
    process = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "specs", "--yes"], cwd=work, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal_dir = work / ".reconciler" / "journal"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        journals = list(journal_dir.glob("*.jsonl"))
        if journals and ready(journals[0].read_text()):
            break
        assert process.poll() is None, f"apply ended with exit {process.returncode} before it could be killed"
        time.sleep(poll)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    (journal,) = journal_dir.glob("*.jsonl")
    return journal


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- one apply at a time -------------------------------------------------------------------------

@pytest.mark.slow
def test_two_applies_from_one_folder_make_no_duplicate(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), latency_ms=15), members=40, per_member=0)
    work = space.folder()
    first = subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "specs", "--yes"], cwd=work, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((work / ".reconciler" / "journal").glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.02)  # the first apply holds the lock and is writing
    second = reconciler(work, "apply", "specs", "--yes")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    message = one_line_error(second)
    assert "another run from this folder holds its lock" in message and f"pid {first.pid}" in message
    assert "reconciler apply specs --yes" in message
    assert max(space.pairs().values()) == 1 and len(space.pairs()) == 40 * 3
    assert space.run(work, "plan", "specs", "--detailed-exitcode").returncode == 0


@pytest.mark.slow
def test_two_applies_from_two_folders_make_no_duplicate_or_say_so(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), latency_ms=10), members=40, per_member=0)
    left, right = space.folder("left", mode="owned"), space.folder("right", mode="owned")
    runs = [subprocess.Popen([sys.executable, "-m", "reconciler", "apply", "specs", "--yes"], cwd=work, env=ENV,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for work in (left, right)]
    results = [(run.wait(timeout=180), *run.communicate()) for run in runs]
    duplicated = max(space.pairs().values()) > 1
    if duplicated:
        assert any(code == 4 and "duplicate" in out.lower() for code, out, _ in results), results
    else:
        assert all(code == 0 for code, _, _ in results), results
    # Either way the next plan cleans up: what one run created twice carries the spec's marker.
    assert space.run(left, "apply", "specs", "--yes").returncode == 0
    assert max(space.pairs().values()) == 1 and len(space.pairs()) == 40 * 3


# --- undo restores whatever the server deleted ---------------------------------------------------

@pytest.mark.slow
def test_with_every_delete_answer_lost_undo_restores_every_record(served: ServedFactory) -> None:
    # Each lost answer costs the client a backoff (0.25 to 0.75 s) before the re-send finds the record gone:
    # three members, about ten deletes, are enough.
    space = served(Settings(limits=Limits.off()), members=3, per_member=5)
    work = space.folder(through=2)  # authoritative: lessons 3.. are deleted, 1..2 created where missing
    before = space.pairs()
    space.app.settings.lose_rate = 1.0  # every write is done, and no answer comes back
    applied = space.run(work, "apply", "specs", "--yes")
    assert applied.returncode in (0, 4), applied.stdout + applied.stderr
    space.app.settings.lose_rate = 0.0
    (journal,) = (work / ".reconciler" / "journal").glob("*.jsonl")
    gone = [entry for entry in read_journal(journal).outcomes.values() if entry["status"] == "gone"]
    assert len(gone) >= 6, "the deletes were answered 404 on the re-send"
    undo = space.run(work, "undo", str(journal), "--out", "undo.json")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert space.run(work, "apply", "--plan", "undo.json", "--yes").returncode == 0
    assert space.pairs() == before  # every deleted pair is back, every created one gone again


@pytest.mark.slow
def test_kill_with_a_delete_in_flight_then_resume_then_undo_restores_every_record(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), latency_ms=30), members=10, per_member=4)
    work = space.folder(through=1)
    before = space.pairs()
    def delete_in_flight(text: str) -> bool:  # a delete's intent written, its outcome not yet
        # Complete lines only: the line being written may end with "}" mid-way (the start entry goes in batches).
        lines = [json.loads(x) for x in text.split("\n")[:-1] if x.endswith("}")]
        intents = {x["seq"] for x in lines if x["type"] == "intent" and x["action"]["action"] == "delete"}
        answered = {x["seq"] for x in lines if x["type"] == "outcome"}
        return len(intents) >= 3 and bool(intents - answered)

    journal = kill_apply_when(work, delete_in_flight, poll=0.002)
    resumed = space.run(work, "apply", "--resume", str(journal), "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    undo = space.run(work, "undo", str(journal), "--out", "undo.json")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    applied = space.run(work, "apply", "--plan", "undo.json", "--yes")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert space.pairs() == before


@pytest.mark.slow
def test_a_journal_cut_mid_line_resumes_and_undoes(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), latency_ms=20), members=8, per_member=3)
    work = space.folder(through=2)
    before = space.pairs()
    journal = kill_apply_when(work, lambda text: text.count('"type":"outcome"') >= 10)
    with journal.open("a") as out:  # as if the kill had cut the line being written
        out.write('{"type":"intent","seq":')
    resumed = space.run(work, "apply", "--resume", str(journal), "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert space.run(work, "plan", "specs", "--detailed-exitcode").returncode == 0
    undo = space.run(work, "undo", str(journal), "--out", "undo.json")
    assert undo.returncode == 0, undo.stdout + undo.stderr
    assert space.run(work, "apply", "--plan", "undo.json", "--yes").returncode == 0
    assert space.pairs() == before


# --- bounded waits -------------------------------------------------------------------------------

def test_a_day_long_wait_ends_the_apply_within_a_minute_with_exit_3(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits(min_interval_ms=None, requests_per_minute=None, requests_per_hour=None,
                                          requests_per_day=None, writes_per_minute=None, writes_per_day=3),
                            throttle_status=429, retry_after_header=False), members=5, per_member=0)
    work = space.folder()
    started = time.monotonic()
    result = reconciler(work, "apply", "specs", "--yes", timeout=60)
    assert time.monotonic() - started < 60
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Resume with: reconciler apply --resume" in result.stdout and "Traceback" not in result.stderr
    assert "86" in result.stdout or "hours" in result.stdout or "24 h" in result.stdout  # says how long
    assert len(space.pairs()) == 3


# --- saved plans are checked, not believed -------------------------------------------------------

def _saved_plan(space: Served, work: Path) -> dict[str, Any]:
    made = space.run(work, "plan", "specs", "--out", "plan.json")
    assert made.returncode == 0, made.stdout + made.stderr
    loaded: dict[str, Any] = json.loads((work / "plan.json").read_text())
    return loaded


@pytest.mark.slow
def test_a_delete_re_pointed_at_another_members_record_deletes_nothing_of_theirs(served: ServedFactory) -> None:
    space = served(members=4, per_member=5)
    work = space.folder(through=2)
    plan = _saved_plan(space, work)
    delete = next(a for a in plan["actions"] if a["action"] == "delete")
    planned = {a["record"]["Id"] for a in plan["actions"] if a["action"] == "delete"}
    victim = next(r for r in space.records().values()
                  if r["CourseMemberId"] != delete["member"]["id"] and r["Id"] not in planned)
    for edited in ({"record": {**delete["record"], "Id": victim["Id"]},
                    "precondition": {"exists": {**delete["precondition"]["exists"], "Id": victim["Id"]}}},):
        delete.update(edited)
    # A careful forger recomputes the digest (it is a checksum, not a signature): the preconditions, checked
    # against fresh reads, still hold the line.
    plan["actions_digest"] = actions_digest(plan["actions"])
    (work / "edited.json").write_text(json.dumps(plan))
    result = space.run(work, "apply", "--plan", "edited.json", "--yes")
    assert victim["Id"] in space.records(), result.stdout + result.stderr
    assert f"record #{victim['Id']} is member {victim['CourseMemberId']}'s" in result.stdout
    # With the digest kept, the edit is refused outright.
    plan = _saved_plan(space, work)
    plan["actions"][0]["note"] = "edited"
    (work / "edited.json").write_text(json.dumps(plan))
    assert "actions were changed after the plan was made" in one_line_error(
        space.run(work, "apply", "--plan", "edited.json", "--yes"))


@pytest.mark.parametrize("corrupt", [
    lambda plan: "not json at all",
    lambda plan: json.dumps([1, 2]),
    lambda plan: json.dumps({**plan, "format_version": 2}),
    lambda plan: json.dumps({**plan, "actions": [{"action": "delete"}]}),
    lambda plan: json.dumps({**plan, "actions": [{**plan["actions"][0], "precondition": {}}]}),
    lambda plan: json.dumps({**plan, "actions": [{**plan["actions"][0], "lesson": {"id": "x"}}]}),
    lambda plan: json.dumps({**plan, "undo_of": "20260101T000000Z-abcdef", "actions_digest": "0" * 64}),
])
def test_a_malformed_saved_plan_is_one_line_and_exit_1(served: ServedFactory, corrupt: Any) -> None:
    space = served(members=3, per_member=2)
    work = space.folder(through=2)
    plan = _saved_plan(space, work)
    (work / "bad.json").write_text(corrupt(plan))
    message = one_line_error(space.run(work, "apply", "--plan", "bad.json", "--yes"))
    assert "bad.json" in message
    assert space.app.writes_seen == []


def test_a_forged_undo_of_does_not_skip_the_checks(served: ServedFactory) -> None:
    space = served(members=3, per_member=2)
    work = space.folder(through=2)
    plan = _saved_plan(space, work)
    plan["undo_of"] = "20260101T000000Z-abcdef"
    (work / "forged.json").write_text(json.dumps(plan))
    result = space.run(work, "apply", "--plan", "forged.json", "--yes")
    assert result.returncode == 1 and "document_digest does not match" in result.stderr, result.stderr
    plan["document_digest"] = document_digest(plan)  # forged with care: the journal it names is still looked for
    (work / "forged.json").write_text(json.dumps(plan))
    result = space.run(work, "apply", "--plan", "forged.json", "--yes")
    assert result.returncode == 3 and "whose journal" in result.stderr, result.stdout + result.stderr
    assert space.app.writes_seen == []


@pytest.mark.parametrize("damage", ['{"type":"intent"}\n', "hello\n", '{"type":"outcome","seq":"x"}\n'])
def test_a_damaged_journal_is_one_line_and_exit_1(served: ServedFactory, damage: str) -> None:
    space = served(members=3, per_member=2)
    work = space.folder(through=2)
    assert space.run(work, "apply", "specs", "--yes").returncode == 0
    (journal,) = (work / ".reconciler" / "journal").glob("*.jsonl")
    lines = journal.read_text().splitlines(keepends=True)
    journal.write_text("".join([lines[0], damage, *lines[1:]]))
    for command in (["apply", "--resume", str(journal), "--yes"], ["undo", str(journal)]):
        assert f"{journal}:2" in one_line_error(space.run(work, *command))


# --- 401 is one item's failure -------------------------------------------------------------------

def test_a_401_on_one_create_is_that_items_failure(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), stale_reference_status=401), members=6, per_member=0)
    work = space.folder(through=2)
    _saved_plan(space, work)
    gone = next(iter(space.store.rows["coursemembers"]))  # an enrolment deleted after the plan was made
    space.store.delete("coursemembers", gone)
    result = space.run(work, "apply", "--plan", "plan.json", "--yes")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "refused this write" in result.stdout and "role" not in result.stdout.split("Failed:")[1]
    assert "created       10" in result.stdout and "failed         2" in result.stdout


@pytest.mark.parametrize("status", [400, 401])
def test_a_refused_write_is_not_sent_again(served: ServedFactory, status: Literal[400, 401]) -> None:
    """A create refused (400 with Errors, or 401 after renewal: here an enrolment deleted since the plan) is looked
    for once more at the end, not sent again: each write of the plan goes once."""
    space = served(Settings(limits=Limits.off(), stale_reference_status=status), members=6, per_member=0)
    work = space.folder(through=2)
    _saved_plan(space, work)
    gone = next(iter(space.store.rows["coursemembers"]))
    space.store.delete("coursemembers", gone)
    result = space.run(work, "apply", "--plan", "plan.json", "--yes")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "created       10" in result.stdout and "failed         2" in result.stdout
    assert "(not there on re-read; not sent again)" in result.stdout
    assert len(space.app.writes_seen) == 12

def test_refused_creates_of_one_deleted_enrolment_do_not_stop_the_run(served: ServedFactory) -> None:
    """Four creates of one member whose enrolment is gone, refused first: that is one stale reference, not a
    missing role; the run goes on to every other member and claims no role."""
    space = served(Settings(limits=Limits.off(), stale_reference_status=401), members=6, per_member=0)
    work = space.folder(through=4)
    _saved_plan(space, work)
    gone = next(iter(space.store.rows["coursemembers"]))  # the first member's: its creates come first
    space.store.delete("coursemembers", gone)
    result = space.run(work, "apply", "--plan", "plan.json", "--yes")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "created       20" in result.stdout and "failed         4" in result.stdout
    assert "role" not in result.stdout + result.stderr


class GoneIsNotFound401:
    """WSGI middleware: get-by-id of a deleted enrolment answered as the live service answers it for a deleted
    coworker, 401 "Not found" (nexudus-api.md, Learned since)."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] == "GET" and "/coursemembers/" in path:
            found = self.app.store.get("coursemembers", int(path.rsplit("/", 1)[1]))
            if found is None:
                start_response("401 Unauthorized", [("Content-Type", "application/json")])
                return [b'"Not found"']
        return self.app(environ, start_response)


@pytest.mark.parametrize("get_gone", ["404", "401 Not found"])
def test_creates_refused_for_several_deleted_enrolments_each_fail_and_the_run_goes_on(
        served: ServedFactory, get_gone: str) -> None:
    """Three enrolments deleted since the plan, answered 401 as the live service may: each refused create reads
    back what it names (gone: 404, or 401 "Not found" as seen live), fails alone, and the run goes on to the
    members still enrolled. It stopped after the third, blaming a role, and each `--resume` stopped there too."""
    space = served(Settings(limits=Limits.off(), stale_reference_status=401), members=6, per_member=0,
                   wrap=GoneIsNotFound401 if get_gone != "404" else None)
    work = space.folder(through=2)
    _saved_plan(space, work)
    for gone in list(space.store.rows["coursemembers"])[:3]:
        space.store.delete("coursemembers", gone)
    result = space.run(work, "apply", "--plan", "plan.json", "--yes")
    said = result.stdout + result.stderr
    assert result.returncode == 4, said
    assert "created        6" in result.stdout and "failed         6" in result.stdout
    assert said.count("is gone on re-read: deleted since the plan was read") >= 3 and "role" not in said


def test_creates_refused_for_a_missing_role_stop_saying_so(served: ServedFactory) -> None:
    """An account that may list and read but not create: each refused create reads back its enrolment (there),
    and after three members the run stops, naming the role."""
    space = served(members=6, per_member=0)
    work = space.folder(through=2)
    _saved_plan(space, work)
    roles = [f"{e}-{r}" for e in ("Course", "CourseLesson", "CourseMember", "Coworker", "CourseCompletedLesson")
             for r in ("List", "Read")]
    limited = User.from_account(account(USER, PASSWORD, admin=False, roles=roles))
    space.app.users[USER.casefold()] = limited
    space.app.revoke_tokens()  # (the plan's session was the full account's)
    result = space.run(work, "apply", "--plan", "plan.json", "--yes")
    said = result.stdout + result.stderr
    assert result.returncode == 1, said
    assert "3 different members" in said and "may lack the CourseCompletedLesson-Create role" in said
    assert "is there: the account may lack the CourseCompletedLesson-Create role" in said
    assert space.pairs() == Counter()


class RevokeAfter:
    """WSGI middleware: the emulator, whose sessions all end after the `writes`-th create (a token that expires
    mid-apply)."""

    def __init__(self, app: EmulatorApp, writes: int) -> None:
        self.app, self.left = app, writes

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        answer = self.app(environ, start_response)
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/coursecompletedlessons"):
            self.left -= 1
            if self.left == 0:
                self.app.revoke_tokens()
        return answer


class GoneThenDenied:
    """WSGI middleware: a delete of a completion that another writer removes just before it arrives, answered as
    the live service answers a write naming a missing record: 401 "Access Denied."."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if environ["REQUEST_METHOD"] == "DELETE" and "/coursecompletedlessons/" in path:
            self.app.store.delete("coursecompletedlessons", int(path.rsplit("/", 1)[1]))
            start_response("401 Unauthorized", [("Content-Type", "application/json")])
            return [b'{"Message": "Access Denied."}']
        return self.app(environ, start_response)


def test_a_delete_refused_for_a_record_already_gone_is_read_back_as_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A refused delete is not sent again; it is read back by its Id at the end, and a record that is gone is gone
    (not a failure of the run)."""
    store = Store()
    emails = build_space(store, members=4, lessons=4, per_member=3)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with BackgroundServer(GoneThenDenied(app)) as server:  # type: ignore[arg-type]
        work = tmp_path / "work"
        write_spec(work / "specs", emails[:1], through=1, mode="authoritative")
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n" + CONFIG)
        monkeypatch.chdir(work)
        monkeypatch.setenv("NEXUDUS_TOKEN", "token")
        code, out, err = run_cli(capsys, "apply", "specs", "--yes", "--allow-deletes", "10")
        assert code == 0, out + err
        assert "deleted        2" in out and "failed         0" in out
        journal = next((work / ".reconciler" / "journal").glob("*.jsonl")).read_text()
        assert journal.count('"status":"gone"') == 2 and journal.count('"type":"intent"') == 2  # each sent once


class ListsMissNewRecords:
    """WSGI middleware: completion lists (not reads by Id) leave out the records made after it started, as a list
    read at offsets misses records another writer's deletes shifted past it between two pages."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.above = app.store.next_id("coursecompletedlessons") - 1

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        listed = environ["REQUEST_METHOD"] == "GET" and environ["PATH_INFO"].endswith("/coursecompletedlessons") \
            and "id=" not in environ.get("QUERY_STRING", "")
        if not listed:
            return self.app(environ, start_response)
        answer: list[Any] = []
        body = b"".join(self.app(environ, lambda status, headers, *rest: answer.extend([status, headers])))
        envelope = json.loads(body)
        kept = [r for r in envelope["Records"] if r["Id"] <= self.above]
        envelope["TotalItems"] -= len(envelope["Records"]) - len(kept)
        envelope["Records"] = kept
        body = json.dumps(envelope).encode()
        start_response(answer[0], [(k, v) for k, v in answer[1] if k.lower() != "content-length"]
                       + [("Content-Length", str(len(body)))])
        return [body]


def test_a_create_the_verification_list_misses_is_read_by_its_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Verification re-reads the scope as lists; a record made by this run that the list read misses (another
    writer's deletes between two pages shift it past the read) is read by the Id its create answered before it is
    called missing: the run converged, and says so."""
    store = Store()
    emails = build_space(store, members=4, lessons=4, per_member=1)
    app = EmulatorApp(store, Settings(limits=Limits.off(), require_auth=False))
    with BackgroundServer(ListsMissNewRecords(app)) as server:  # type: ignore[arg-type]
        work = tmp_path / "work"
        write_spec(work / "specs", emails[:2], through=3)
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n" + CONFIG)
        monkeypatch.chdir(work)
        monkeypatch.setenv("NEXUDUS_TOKEN", "token")
        code, out, err = run_cli(capsys, "apply", "specs", "--yes")
        assert code == 0, out + err
        assert "Not converged" not in out + err and "failed         0" in out
        created = int(out.split("created", 1)[1].split()[0])
        assert created >= 4 and len(store.rows["coursecompletedlessons"]) == 4 + created


def test_a_token_that_stops_being_accepted_mid_apply_stops_the_run_to_resume(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A NEXUDUS_TOKEN cannot be renewed: once the server refuses it, every write would fail one by one under a wrong
    reason. The first refused write is checked with a read; refused too, the run stops (exit 3), resumable, and the
    resume with a token the server takes converges."""
    store = Store()
    emails = build_space(store, members=6, lessons=6, per_member=0)
    store.save_user(account(USER, PASSWORD))
    app = EmulatorApp(store, Settings(limits=Limits.off()))
    with BackgroundServer(RevokeAfter(app, 3)) as server:  # type: ignore[arg-type]
        work = tmp_path / "work"
        write_spec(work / "specs", emails, through=2)
        (work / "reconciler.yaml").write_text(f"target: {server.url}\n" + CONFIG)
        monkeypatch.chdir(work)
        for name in ("NEXUDUS_USERNAME", "NEXUDUS_PASSWORD", "NEXUDUS_API_URL"):
            monkeypatch.delenv(name, raising=False)
        grant = {"grant_type": "password", "username": USER, "password": PASSWORD}
        monkeypatch.setenv("NEXUDUS_TOKEN", httpx.post(f"{server.url}/api/token", data=grant).json()["access_token"])
        code, out, err = run_cli(capsys, "apply", "specs", "--yes")
        assert code == 3, out + err
        assert "no longer accepts these credentials" in out + err and "role" not in out + err
        assert len(store.rows["coursecompletedlessons"]) == 3  # the fourth was refused, and no more were tried
        (journal,) = (work / ".reconciler" / "journal").glob("*.jsonl")
        monkeypatch.setenv("NEXUDUS_TOKEN", httpx.post(f"{server.url}/api/token", data=grant).json()["access_token"])
        code, out, err = run_cli(capsys, "apply", "--resume", str(journal), "--yes")
        assert code == 0, out + err
        assert run_cli(capsys, "plan", "specs", "--detailed-exitcode")[0] == 0


def test_a_saved_plan_applies_from_any_folder(served: ServedFactory, tmp_path: Path) -> None:
    space = served(members=4, per_member=2)
    work = space.folder(through=2)
    (work / "seed.yaml").write_text("# not a spec: not part of the digest\n")
    _saved_plan(space, work)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = space.run(elsewhere, "apply", "--plan", str(work / "plan.json"), "--yes", api_url=space.server.url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Converged" in result.stdout
    assert space.run(work, "plan", "specs", "--detailed-exitcode").returncode == 0


def test_fail_fast_stops_at_the_first_failed_action_with_exit_4(served: ServedFactory) -> None:
    space = served(Settings(limits=Limits.off(), unsuccessful_rate=1.0), members=3, per_member=0)
    work = space.folder()
    result = space.run(work, "apply", "specs", "--yes", "--fail-fast")
    assert result.returncode == 4, result.stdout + result.stderr  # an action failed: not "blocked" (3)
    assert "--fail-fast: an action failed" in result.stdout
    assert "Resume with: reconciler apply --resume" in result.stdout
    assert "failed         1" in result.stdout and space.pairs() == Counter()


# --- writes answered with something that is not the command envelope, and outages -----------------

def _journal(work: Path) -> Path:
    (journal,) = (work / ".reconciler" / "journal").glob("*.jsonl")
    return journal


def test_deletes_answered_with_a_maintenance_page_are_looked_up_and_an_outage_stops_the_run(
        served: ServedFactory) -> None:
    """A proxy's maintenance page (200, HTML) says nothing of the delete: the record is read back, is still
    there, and is sent again, three times, then the action fails; five such failures in a row, of more than one
    member, stop the run (exit 3), resumable, with nothing counted done that was not. Once the service is back,
    the resume converges."""
    space = served(Settings(limits=Limits.off(), write_garble="html"), members=4, per_member=6, lessons=6)
    work = space.folder(through=1)  # deletes only: five a member
    before = space.records()
    result = space.run(work, "apply", "specs", "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    # (the first member's five deletes alone could be that member's; the second member's first makes it an outage)
    assert "6 actions in a row, of 2 members, failed for the service's sake" in result.stdout
    assert "is still there after 3 tries" in result.stdout and "Resume with: reconciler apply --resume" in result.stdout
    assert space.records() == before  # no delete was done, and none is claimed
    outcomes = read_journal(_journal(work)).outcomes.values()
    assert [entry["status"] for entry in outcomes] == ["failed"] * 6
    assert len(space.app.writes_seen) == 6 * 3  # each delete sent again while it is still there, three times
    space.app.settings.write_garble = None
    resumed = space.run(work, "apply", "--resume", str(_journal(work)), "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert space.run(work, "plan", "specs", "--detailed-exitcode").returncode == 0


def test_writes_done_but_answered_with_cut_json_are_found_done_without_a_duplicate(served: ServedFactory) -> None:
    """The write was done, its answer cut short: each delete is found gone and each create found made, on re-read,
    and nothing is sent twice."""
    space = served(Settings(limits=Limits.off(), write_garble="truncated"), members=6, per_member=3, lessons=6)
    work = space.folder(through=4)
    result = space.run(work, "apply", "specs", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Converged" in result.stdout
    outcomes = list(read_journal(_journal(work)).outcomes.values())
    assert {entry["status"] for entry in outcomes} == {"created", "deleted"}
    assert all("not the command envelope" in entry["message"] for entry in outcomes)
    assert max(space.pairs().values()) == 1
    posts = [body for method, _, body in space.app.writes_seen if method == "POST"]
    assert len(posts) == len({(b["CourseMemberId"], b["CourseLessonId"]) for b in posts})  # each pair sent once
    assert space.run(work, "plan", "specs", "--detailed-exitcode").returncode == 0


def test_creates_failing_with_500_stop_the_run_after_five_in_a_row(served: ServedFactory) -> None:
    """Every write answered 500 (reads work): a create is never resent blind (it is looked for first), each
    fails after its tries, and the fifth in a row (of three members) stops the run rather than spend the day's
    writes."""
    space = served(Settings(limits=Limits.off(), write_fail_rate=1.0), members=6, per_member=0)
    work = space.folder(through=2)
    result = space.run(work, "apply", "specs", "--yes")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "5 actions in a row, of 3 members, failed for the service's sake" in result.stdout
    assert "3 tries, and the completion is not there (the last: 500 from POST" in result.stdout
    assert space.pairs() == Counter()
    assert len([w for w in space.app.writes_seen if w[0] == "POST"]) == 5 * 3  # three tries each, looked for between


def test_a_deleted_pair_made_again_since_is_reported_as_drift_not_a_failure(served: ServedFactory) -> None:
    """The Members Portal completes a lesson its member opens: a pair deleted by the run may be there again by the
    time it is verified. That is drift to report (exit 0), not a failure to fight."""
    space = served(Settings(limits=Limits.off(), recreate_deleted=True), members=3, per_member=3)
    work = space.folder(through=1)
    result = space.run(work, "apply", "specs", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deleted pair(s) made again since (drift" in result.stdout
    assert "made again: " in result.stdout and "is deleted, and the pair was made again since: #" in result.stdout
    assert "Converged" in result.stdout


@pytest.mark.parametrize(("settings", "warned"), [
    ({"keep_system_id": False}, "the target did not keep the SystemId written on create"),
    ({"system_id_in_lists": "null"}, "the target's completion lists show SystemId None for a record created with the "
                                     "marker (get-by-id shows it)"),
])
def test_an_owned_apply_reads_its_first_create_back_as_owned_mode_reads_it(served: ServedFactory,
                                                                           settings: dict[str, Any],
                                                                           warned: str) -> None:
    """Owned mode finds its records by their marker in list reads: the first create is read back in its member's
    list, and a target that drops the marker, or lists that show it empty, are said once, at the end."""
    space = served(Settings(limits=Limits.off(), **settings), members=3, per_member=0)
    work = space.folder(through=2, mode="owned")
    result = space.run(work, "apply", "specs", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"warning: {warned}, so owned mode cannot work against it" in result.stdout
    assert len(space.pairs()) == 6
    # Remembered in the target profile: the next plan refuses owned specs rather than plan "No writes" over records
    # it cannot tell are its own (a doctor run without --write-check keeps it too).
    for command in (["plan", "specs"], ["doctor"], ["plan", "specs"]):
        again = space.run(work, *command)
        assert again.returncode != 0, again.stdout + again.stderr
    assert "mode owned cannot work against" in again.stderr and "an apply found that" in again.stderr


def test_an_owned_apply_on_a_target_that_shows_its_marker_warns_of_nothing(served: ServedFactory) -> None:
    space = served(members=3, per_member=0)
    result = space.run(space.folder(through=2, mode="owned"), "apply", "specs", "--yes")
    assert result.returncode == 0 and "warning" not in result.stdout, result.stdout


class RefuseMember:
    """WSGI middleware: the emulator, answering every create for one enrolment with the service's 500 "Ooops" (the
    text the live service also gives a permanent refusal), not done."""

    def __init__(self, app: EmulatorApp, member: int) -> None:
        self.app, self.member = app, member

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ["PATH_INFO"].endswith("/coursecompletedlessons"):
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            if json.loads(body or b"{}").get("CourseMemberId") == self.member:
                start_response("500 Internal Server Error", [("Content-Type", "application/json")])
                return [json.dumps({"Message": "Ooops! There was a problem while running this action..."}).encode()]
        return self.app(environ, start_response)


def test_one_members_creates_failing_with_500_do_not_stop_the_run(served: ServedFactory) -> None:
    """Five failures in a row of one member may be that member's (a permanent refusal looks like an outage's 500):
    the run goes on to the others, and every other member converges (exit 4 for the failed ones)."""
    space = served(members=3, per_member=0, wrap=lambda app: RefuseMember(app, 50001))
    result = space.run(space.folder(through=6), "apply", "specs", "--yes")
    code, out, err = result.returncode, result.stdout, result.stderr
    assert code == 4, out + err
    assert "in a row" not in out and "failed         6" in out and "created       12" in out
    pairs = Counter(r["CourseMemberId"] for r in space.store.iter_rows("coursecompletedlessons"))
    assert pairs == Counter({50002: 6, 50003: 6})


@pytest.mark.parametrize("saved", [False, True], ids=["apply specs", "apply --plan"])
def test_a_record_of_another_left_in_a_deleted_pair_is_not_made_again(served: ServedFactory, saved: bool) -> None:
    """Owned mode deletes its own record of a pair and leaves another writer's duplicate: that record was there
    before the apply, and verification does not call it made again. `apply --plan` knows it from its fresh read
    before the writes; `apply specs` by its age (one made within the clock's slack of the delete, two minutes,
    would be taken for one made again)."""
    space = served(members=2, per_member=0, lessons=3)
    work = space.folder(through=2, mode="owned")
    assert space.run(work, "apply", "specs", "--yes").returncode == 0
    ours = next(r for r in space.records().values() if r["CourseLessonId"] == 2002)
    theirs = space.store.insert("coursecompletedlessons", {"CourseLessonId": 2002,
                                                            "CourseMemberId": ours["CourseMemberId"]},
                                updated_by="someone@example.com")
    if not saved:
        space.store.rows["coursecompletedlessons"][theirs["Id"]]["CreatedOn"] = "2026-01-01T00:00:00Z"
    write_spec(work / "specs", space.emails, through=1, mode="owned")
    if saved:
        _saved_plan(space, work)
    result = space.run(work, "apply", *(["--plan", "plan.json"] if saved else ["specs"]), "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deleted        2" in result.stdout and "made again" not in result.stdout


def test_verification_of_a_journal_whose_outcomes_carry_no_time(served: ServedFactory) -> None:
    """An outcome without its `at` (a journal written by hand, say) is verified all the same: the pair made again
    is still reported, with no time to measure it from."""
    space = served(Settings(limits=Limits.off(), recreate_deleted=True), members=2, per_member=3)
    work = space.folder(through=1)
    assert space.run(work, "apply", "specs", "--yes").returncode == 0
    state = read_journal(_journal(work))
    untimed = {seq: {k: v for k, v in outcome.items() if k != "at"} for seq, outcome in state.outcomes.items()}
    with httpx.Client() as http:
        client = NexudusClient(space.server.url, http, credentials=Credentials(username=USER, password=PASSWORD))
        checked = verify(client, list(enumerate(state.typed_actions())), untimed)
    assert checked.converged and checked.returned
