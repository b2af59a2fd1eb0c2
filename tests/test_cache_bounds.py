"""The read cache whatever a date filter's bound takes in (the API names a minute, `YYYY-MM-DDTHH:mm`, and does not
say whether `to_X` takes in the whole minute X or stops at X:00:00, with it or without it, nor whether `from_X`
takes in X:00:00 itself): against the emulator playing each meaning over HTTP, `doctor`, `plan` and `apply` read
exactly what the server holds, through the cache, and never create a duplicate."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler.client import NexudusClient
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.cli import build_parser, settings_from
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.emulator.synthetic import build_space, write_spec

from .conftest import run_cli

USER, PASSWORD = "ops@example.com", "ops-Secret-7731"
PATH = "/api/content/coursecompletedlessons"
COMPLETIONS = "coursecompletedlessons"
UNTIL_KEY = f"{PATH}?to_coursecompletedlesson_createdon"
MEMBERS = 100  # two lessons each: 200 completions, two a minute, 5 pages a lesson at 20 a page
CONFIG = ("safety: {max_delete_fraction: 1.0, max_deletes: 100000}\n"
          "limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000}\n")
TO_BOUNDS = ("whole-minute", "at-or-before", "before")
FROM_BOUNDS = ("at-or-after", "after")
MEANINGS = [(to, since) for to in TO_BOUNDS for since in FROM_BOUNDS]


class Space:
    """A course of two lessons whose 200 completions were made two a minute until a few minutes ago: each minute
    one of the second lesson 45 seconds in, and one of the first 30 seconds in (where the whole minute and its start
    differ) or, every third minute, in its very first instant (`HH:mm:00.0000000`, where `<` and `<=` differ);
    served 20 a page, bounds taken as `to_bound` and `from_bound` say, the spec in `work` asking for exactly what
    the server holds (authoritative)."""

    def __init__(self, work: Path, to_bound: Any, from_bound: Any, members: int = MEMBERS) -> None:
        self.store = Store()
        emails = build_space(self.store, members=members, lessons=2, per_member=2)
        start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=members + 5)
        self.ids = sorted(r["Id"] for r in self.store.iter_rows(COMPLETIONS))  # lesson 1, lesson 2, lesson 1, ...
        for n, record_id in enumerate(self.ids):
            minute = n // 2
            second = 45 if n % 2 else 0 if minute % 3 == 0 else 30
            row = self.store.rows[COMPLETIONS][record_id]
            row["CreatedOn"] = row["UpdatedOn"] = precise_timestamp(start + timedelta(minutes=minute, seconds=second))
        self.store.save_user(account(USER, PASSWORD))
        self.app = EmulatorApp(self.store, Settings(limits=Limits.off(), require_auth=False, max_page_size=20,
                                                    to_bound=to_bound, from_bound=from_bound))
        self.server = BackgroundServer(self.app).__enter__()
        self.http = httpx.Client()
        self.api = NexudusClient(self.server.url, self.http)  # writes behind the tool's back, over HTTP
        write_spec(work / "specs", emails, through=2, mode="authoritative")
        (work / "reconciler.yaml").write_text(f"target: {self.server.url}\n" + CONFIG)
        self.work = work

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)
        self.store.close()

    def pairs(self) -> Counter[tuple[int, int]]:
        return Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in self.store.iter_rows(COMPLETIONS))

    def record(self, n: int) -> dict[str, Any]:
        return dict(self.store.rows[COMPLETIONS][self.ids[n]])

    def delete(self, n: int) -> tuple[int, int]:
        """Delete the n-th completion over the API; its (member, lesson)."""
        gone = self.record(n)
        assert self.api.delete(PATH, gone["Id"])
        return gone["CourseMemberId"], gone["CourseLessonId"]

    def create(self, pair: tuple[int, int], minutes_ago: float) -> None:
        """A completion made over the API by a writer whose clock is `minutes_ago` behind (both its dates)."""
        self.app.settings.backdate_minutes = (minutes_ago, minutes_ago)
        try:
            self.api.create(PATH, {"CourseMemberId": pair[0], "CourseLessonId": pair[1]})
        finally:
            self.app.settings.backdate_minutes = (0.0, 0.0)

    def completion_reads(self) -> int:
        return self.app.requests_served["GET coursecompletedlessons"]


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made: list[Space] = []

    def make(to_bound: str, from_bound: str, members: int = MEMBERS) -> Space:
        work = tmp_path / f"work-{len(made)}"
        made.append(Space(work, to_bound, from_bound, members))
        monkeypatch.chdir(work)
        return made[-1]

    monkeypatch.setenv("NEXUDUS_USERNAME", USER)
    monkeypatch.setenv("NEXUDUS_PASSWORD", PASSWORD)
    for name in ("NEXUDUS_API_URL", "NEXUDUS_TOKEN", "NEXUDUS_TOTP"):
        monkeypatch.delenv(name, raising=False)
    yield make
    for one in made:
        one.close()


def plan(capsys: pytest.CaptureFixture[str]) -> tuple[list[tuple[str, int, int]], str]:
    """`plan -v --format json`: its actions as (action, member, lesson), and what it logged."""
    code, out, err = run_cli(capsys, "-v", "plan", "specs", "--format", "json")
    assert code in (0, 2), err
    doc = json.loads(out)
    assert doc["partial"] == [] and doc["blocked"] is None, doc
    return sorted((a["action"], a["member"]["id"], a["lesson"]["id"]) for a in doc["actions"]), err


def doctor_measures(s: Space, capsys: pytest.CaptureFixture[str], to_bound: str) -> None:
    """`doctor` finds what a `to_…CreatedOn` bound counts, and writes it to the profile the runs use."""
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    profile = json.loads((s.work / ".reconciler" / "target-profile.json").read_text())
    measured = profile["filters"][UNTIL_KEY]
    assert measured["state"] == "honoured"
    assert measured["bound"] == ("whole-minute" if to_bound == "whole-minute" else "minute-start")


def incremental(err: str) -> bool:
    return "brought up to date" in err and "read cache: reading in full" not in err


@pytest.mark.parametrize("doctor", [True, False], ids=["doctor", "no-profile"])
@pytest.mark.parametrize(("to_bound", "from_bound"), MEANINGS, ids=[f"to-{t}-from-{f}" for t, f in MEANINGS])
def test_plans_through_the_cache_are_exact_whatever_the_date_bounds_take_in(
        space: Any, capsys: pytest.CaptureFixture[str], to_bound: str, from_bound: str, doctor: bool) -> None:
    s = space(to_bound, from_bound)
    if doctor:
        doctor_measures(s, capsys, to_bound)

    # Nothing changes on the server: no changes, twice; the second read through the cache.
    actions, err = plan(capsys)
    assert actions == [] and "reading in full: no cache yet" in err
    before = s.completion_reads()
    actions, err = plan(capsys)
    assert actions == [], err
    if doctor:  # vouched for by the profile: the changes (2 pages: asked from the minute before the range's start,
        # two a minute), those created since with an older UpdatedOn, a count per lesson
        assert incremental(err) and s.completion_reads() - before == 5, err
        assert "probe" not in err and "read cache: to_CourseCompletedLesson_CreatedOn=" not in err
    else:  # the bound measured by the cache itself (never assumed), the first incremental read checked once
        assert "read cache: to_CourseCompletedLesson_CreatedOn=" in err
        assert "checking the incremental read against a full read once" in err
        assert "differed" not in err

    # A completion made long before the range is deleted on the server: only its lesson's count shows it.
    gone = s.delete(41)
    actions, err = plan(capsys)
    assert actions == [("create", *gone)], err
    assert incremental(err), err
    assert "read cache: to_CourseCompletedLesson_CreatedOn=" not in err, err  # measured once, kept in the file
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert set(s.pairs().values()) == {1} and gone in s.pairs() and len(s.pairs()) == 2 * MEMBERS
    actions, err = plan(capsys)
    assert actions == [] and incremental(err), err

    # Another one is deleted, the plan sees it; then a writer whose clock is behind makes it again, stamped well
    # before the range (among the others): the next plan must not create it a second time.
    again = s.delete(80)
    assert plan(capsys)[0] == [("create", *again)]
    s.create(again, minutes_ago=90)
    actions, err = plan(capsys)
    assert actions == [] and incremental(err), err
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert set(s.pairs().values()) == {1} and len(s.pairs()) == 2 * MEMBERS
    assert run_cli(capsys, "plan", "specs", "--no-cache")[1].count("No changes.") == 1


@pytest.mark.parametrize(("to_bound", "from_bound"), MEANINGS, ids=[f"to-{t}-from-{f}" for t, f in MEANINGS])
def test_a_stale_range_and_a_deletion_in_one_run_are_found_whatever_the_bounds(
        space: Any, capsys: pytest.CaptureFixture[str], to_bound: str, from_bound: str) -> None:
    """Deletions on both sides of the range's start and a record made again an hour back, in one run."""
    s = space(to_bound, from_bound)
    doctor_measures(s, capsys, to_bound)
    plan(capsys)
    plan(capsys)
    first, last, middle = s.delete(10), s.delete(2 * MEMBERS - 3), s.delete(120)
    s.create(middle, minutes_ago=60)
    actions, err = plan(capsys)
    assert actions == sorted([("create", *first), ("create", *last)]), err
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert set(s.pairs().values()) == {1} and len(s.pairs()) == 2 * MEMBERS
    actions, err = plan(capsys)
    assert actions == [] and incremental(err), err


@pytest.mark.parametrize(("to_bound", "from_bound"), MEANINGS, ids=[f"to-{t}-from-{f}" for t, f in MEANINGS])
def test_a_record_made_in_the_first_second_of_the_range_start_is_neither_lost_nor_counted_on_a_guess(
        space: Any, capsys: pytest.CaptureFixture[str], to_bound: str, from_bound: str) -> None:
    """101 members: the newest completion is made at minute 100, so the range starts at minute 90, in whose first
    instant a completion of the first lesson was made. A `from_` bound at that minute that leaves its own instant
    out does not answer it (it is asked from the minute before). Counted to that minute, a server that takes in the
    instant it names (`<=`) counts it among those made before; a delete in the same lesson then leaves the count
    as it was: the lesson is read again instead (`MINUTE_START`), and the delete is found."""
    s = space(to_bound, from_bound, members=101)
    doctor_measures(s, capsys, to_bound)
    assert s.record(180)["CreatedOn"].endswith(":00.0000000Z")  # minute 90, the first lesson's
    plan(capsys)
    gone = s.delete(20)  # the first lesson's, long before the range
    actions, err = plan(capsys)
    assert actions == [("create", *gone)] and incremental(err), err
    if to_bound != "whole-minute":
        assert "holds a completion made in the first second of" in err, err


@pytest.mark.parametrize(("to_bound", "from_bound"), MEANINGS, ids=[f"to-{t}-from-{f}" for t, f in MEANINGS])
def test_the_emulator_plays_each_meaning_of_a_date_bound(space: Any, to_bound: str, from_bound: str) -> None:
    s = space(to_bound, from_bound)
    on, inside = s.record(60), s.record(63)  # made at HH:mm:00.0000000, and a minute later at HH:mm:45
    minute = on["CreatedOn"][:16]

    def found(name: str, value: str) -> set[int]:
        return {r["Id"] for r in s.api.list_all(PATH, {name: value})} & {on["Id"], inside["Id"]}

    to_ = "to_CourseCompletedLesson_CreatedOn"
    assert found(to_, minute) == (set() if to_bound == "before" else {on["Id"]})
    assert found(to_, inside["CreatedOn"][:16]) == ({on["Id"], inside["Id"]} if to_bound == "whole-minute"
                                                    else {on["Id"]})
    expected_from = {on["Id"], inside["Id"]} if from_bound == "at-or-after" else {inside["Id"]}
    assert found("from_CourseCompletedLesson_UpdatedOn", minute) == expected_from


def test_serve_flags_choose_the_bounds() -> None:
    args = build_parser().parse_args(["serve", "--to-bound", "at-or-before", "--from-bound", "after"])
    assert (settings_from(args).to_bound, settings_from(args).from_bound) == ("at-or-before", "after")
    default = settings_from(build_parser().parse_args(["serve"]))
    assert (default.to_bound, default.from_bound) == ("whole-minute", "at-or-after") and default == Settings()
