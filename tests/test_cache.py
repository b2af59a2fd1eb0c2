"""The read cache over real HTTP against the emulator: an incremental read gives exactly the records a full
read gives, or it is a full read (and `-v` says why)."""

from __future__ import annotations

import gzip
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from reconciler import __version__
from reconciler.cache import ReadCache
from reconciler.client import NexudusClient
from reconciler.config import CacheSettings
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store, precise_timestamp
from reconciler.emulator.synthetic import build_space, write_spec
from reconciler.errors import ConfigError
from reconciler.state import StateReader

from .conftest import run_cli

USER, PASSWORD = "ops@example.com", "ops-Secret-7731"
COMPLETIONS = "coursecompletedlessons"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = ("safety: {max_delete_fraction: 1.0, max_deletes: 100000}\n"
          "limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000}\n")


class Site:
    """A space served over HTTP whose completions were written over weeks (not all in one second)."""

    def __init__(self, tmp_path: Path, *, members: int = 60, lessons: int = 6, per_member: int = 3) -> None:
        self.store = Store()
        self.emails = build_space(self.store, members=members, lessons=lessons, per_member=per_member)
        for n, row in enumerate(self.store.rows[COMPLETIONS].values()):
            row["CreatedOn"] = row["UpdatedOn"] = precise_timestamp(BASE + timedelta(minutes=7 * n))
        self.store.save_user(account(USER, PASSWORD))
        # 20 a page, so that a read of a few hundred records takes pages, as a large one does.
        self.app = EmulatorApp(self.store, Settings(limits=Limits.off(), require_auth=False, max_page_size=20))
        self.server = BackgroundServer(self.app).__enter__()
        self.http = httpx.Client()
        self.folder = tmp_path / "cache"
        self.lessons = {r["Id"] for r in self.store.iter_rows("courselessons")}
        self.members = [r["Id"] for r in self.store.iter_rows("coursemembers")]
        self.rng = random.Random(7)

    def close(self) -> None:
        self.http.close()
        self.server.__exit__(None, None, None)
        self.store.close()

    def read(self, *, cache: bool = True, settings: CacheSettings | None = None, vouched: bool = True,
             lessons: set[int] | None = None, target: str | None = None) -> tuple[list[dict[str, Any]], int, str]:
        client = NexudusClient(self.server.url, self.http)
        store = ReadCache(self.folder, target or self.server.url, settings or CacheSettings(), vouched=vouched) \
            if cache else None
        records, partial = StateReader(client, store).completion_records(lessons or self.lessons)
        assert partial == []
        return records, client.stats.requests, store.last if store else "no cache"

    def exact(self, **kwargs: Any) -> tuple[int, str]:
        """Read through the cache, check it against a full read record for record; (requests, how)."""
        got, requests, how = self.read(**kwargs)
        full, _, _ = self.read(cache=False, lessons=kwargs.get("lessons"))
        assert got == full, how
        return requests, how

    # --- changes behind the tool's back ---

    def now(self) -> str:
        return precise_timestamp(datetime.now(UTC))

    def create(self, lesson: int | None = None, member: int | None = None, stamp: str | None = None) -> int:
        row = self.store.insert(COMPLETIONS, {"CourseLessonId": lesson or self.rng.choice(sorted(self.lessons)),
                                              "CourseMemberId": member or self.rng.choice(self.members)},
                                updated_by="someone@example.com")
        if stamp is not None:
            row["CreatedOn"] = row["UpdatedOn"] = stamp
        return int(row["Id"])

    def delete(self, record_id: int | None = None) -> dict[str, Any]:
        record_id = record_id or self.rng.choice(sorted(self.store.rows[COMPLETIONS]))
        row = self.store.delete(COMPLETIONS, record_id)
        assert row is not None
        return row

    def update(self, record_id: int | None = None, *, move: bool = False) -> None:
        row = self.store.rows[COMPLETIONS][record_id or self.rng.choice(sorted(self.store.rows[COMPLETIONS]))]
        row["SystemId"] = f"edited-{self.rng.random()}"
        if move:
            row["CourseLessonId"] = self.rng.choice(sorted(self.lessons))
        row["UpdatedOn"] = self.now()


@pytest.fixture
def site(tmp_path: Path) -> Any:
    made: list[Site] = []

    def make(**kwargs: Any) -> Site:
        made.append(Site(tmp_path, **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


# --- the reader ----------------------------------------------------------------------------------------

def test_an_unchanged_scope_costs_three_requests(site: Any) -> None:
    s = site()
    assert s.exact() == (9, "full (no cache yet)")
    # The changes since the range's start (none), the table's count, those created since with an older UpdatedOn.
    assert s.exact() == (3, "incremental")


def test_creates_updates_and_moves_are_merged(site: Any) -> None:
    s = site()
    s.read()
    for _ in range(3):
        s.create()
    s.update()
    s.update(move=True)
    assert s.exact() == (3, "incremental")


def test_deletes_are_found_by_counts_and_only_their_lessons_are_read_again(site: Any) -> None:
    s = site()
    s.read()
    gone = s.delete()
    requests, how = s.exact()
    assert how == "incremental"
    assert requests == 2 + len(s.lessons) + 2  # changes, table count, a count per lesson, the one lesson again
    assert gone["Id"] not in {r["Id"] for r in s.read()[0]}


def test_a_delete_and_a_create_in_the_same_lesson_keep_the_counts_but_not_the_merge(site: Any) -> None:
    s = site()
    s.read()
    gone = s.delete()
    other = next(m for m in s.members if m != gone["CourseMemberId"])
    s.create(gone["CourseLessonId"], other)  # the lesson's count and the table's count are unchanged
    requests, how = s.exact()
    assert how == "incremental" and requests == 2 + len(s.lessons) + 2


def test_a_delete_balanced_by_a_create_elsewhere_is_found_per_lesson(site: Any) -> None:
    s = site()
    s.read()
    gone = s.delete()
    s.create(next(x for x in s.lessons if x != gone["CourseLessonId"]))
    assert s.exact()[1] == "incremental"


def test_records_written_within_the_overlap_are_found(site: Any) -> None:
    s = site()
    s.create()  # the watermark is now the current minute
    s.read()
    before = precise_timestamp(datetime.now(UTC) - timedelta(minutes=4))
    s.create(stamp=before)  # written late, stamped before the watermark, within the 10-minute overlap
    row = s.store.rows[COMPLETIONS][sorted(s.store.rows[COMPLETIONS])[0]]
    row["SystemId"], row["UpdatedOn"] = "late edit", before
    assert s.exact()[1] == "incremental"


def test_a_stamp_from_a_clock_running_ahead_does_not_move_the_range_past_later_changes(site: Any) -> None:
    s = site()
    s.read()
    s.create(stamp=precise_timestamp(datetime.now(UTC) + timedelta(minutes=60)))  # a writer an hour ahead
    assert s.exact()[1] == "incremental"
    # Then writers whose clocks are right: an update, and a delete balanced by a create in its lesson.
    s.update()
    gone = s.delete()
    s.create(gone["CourseLessonId"], next(m for m in s.members if m != gone["CourseMemberId"]))
    assert s.exact()[1] == "incremental"


def test_a_record_stamped_before_the_range_is_found_by_its_lessons_count(site: Any) -> None:
    s = site()
    s.read()
    lesson = min(s.lessons)
    s.create(lesson, stamp="2025-06-01T00:00:00.0000000Z")
    # The changes (none), the table's count (one more), a count per lesson, the one lesson again (31 records).
    assert s.exact() == (2 + len(s.lessons) + 2, "incremental")


def test_a_range_filter_the_server_ignores_means_a_full_read(site: Any) -> None:
    s = site()
    s.read()
    s.app.settings.ignored_filters = frozenset({"from_CourseCompletedLesson_UpdatedOn"})
    s.delete()
    _, how = s.exact()
    assert how.startswith("full (the server ignored from_CourseCompletedLesson_UpdatedOn")


def test_a_lesson_filter_the_server_ignores_means_a_full_read(site: Any) -> None:
    s = site()
    s.read(lessons={min(s.lessons)})  # per lesson: a cache of exactly that lesson
    s.app.settings.ignored_filters = frozenset({"CourseCompletedLesson_CourseLesson"})
    _, how = s.exact(lessons={min(s.lessons)})
    assert how.startswith("full (")  # the lesson's count is the table's: more than it holds


def test_a_cache_of_another_target_another_version_or_too_old_is_not_used(site: Any) -> None:
    s = site()
    s.read(target="https://elsewhere.example")
    assert s.exact()[1] == "full (the cache is of https://elsewhere.example, not " + s.server.url + ")"
    path = s.folder / "completions-all.json.gz"

    def rewrite(rows: list[Any] | None = None, **fields: Any) -> None:
        """Change fields of the cache's first line; `rows`: one line of rows instead of those after it."""
        with gzip.open(path, "rt") as handle:
            lines = handle.readlines()
        doc = json.loads(lines[0])
        doc.update(fields)
        body = lines[1:] if rows is None else [json.dumps(rows) + "\n"]
        with gzip.open(path, "wt") as handle:
            handle.write(json.dumps(doc) + "\n" + "".join(body))

    rewrite(reconciler="0.0.1")
    assert s.exact()[1] == f"full (the cache was written by reconciler 0.0.1, not {__version__})"
    rewrite(full_read_at=datetime.now(UTC).timestamp() - 8 * 24 * 3600)
    assert s.exact()[1].startswith("full (the last full read is 192.0 hours old (cache.max_age_hours: 168)")
    assert s.exact(settings=CacheSettings(max_age_hours=1e-9))[1].startswith("full (the last full read is")
    rewrite(rows=[[7, 1]])
    how = s.exact()[1]
    assert how.startswith("full (the cache") and "damaged" in how


def test_without_a_vouching_profile_the_first_incremental_read_is_checked_by_a_full_read(site: Any) -> None:
    s = site()
    s.read(vouched=False)
    s.delete()
    requests, how = s.exact(vouched=False)
    assert how == "full (checking the incremental read)" and requests > 2
    assert s.exact(vouched=False)[1] == "incremental"  # checked once, trusted since


def test_the_check_of_the_first_incremental_read_holds_for_the_plan_s_lean_read(site: Any) -> None:
    """A plan reads completions lean (only the fields its columns read); the full read that checks the first
    incremental one compares whole records, so it reads them whole, and the cache is trusted after it."""
    s = site()

    def planned() -> tuple[list[tuple[int, int, int, str]], str]:
        store = ReadCache(s.folder, s.server.url, CacheSettings(), vouched=False)
        found, partial = StateReader(NexudusClient(s.server.url, s.http), store).completions(s.lessons)
        assert partial == []
        return [(c.id, c.member_id, c.lesson_id, c.updated_on) for c in found], store.last

    assert planned()[1].startswith("full (no cache")
    s.delete()
    checked, how = planned()
    assert how == "full (checking the incremental read)"
    again, how = planned()
    assert how == "incremental" and again == checked
    full = [(r["Id"], r["CourseMemberId"], r["CourseLessonId"], r["UpdatedOn"]) for r in s.read(cache=False)[0]]
    assert checked == full


def test_an_owned_read_the_cache_answers_stops_where_lists_carry_no_system_id(site: Any) -> None:
    """A cache filled and proved by reads of another mode (no markers: SystemId not asked for) answers an owned
    read incrementally: it stops as a list read does (owned mode would find none of its records)."""
    s = site()
    s.app.settings.system_id_in_lists = "absent"
    s.read(vouched=False)
    s.delete()
    assert s.exact(vouched=False)[1] == "full (checking the incremental read)"
    store = ReadCache(s.folder, s.server.url, CacheSettings(), vouched=False)
    reader = StateReader(NexudusClient(s.server.url, s.http), store)
    with pytest.raises(ConfigError, match="its completion lists carry no SystemId"):
        reader.completions(s.lessons, markers=["reconciler:cohort"])
    assert store.last == "incremental"  # the cache answered


def test_a_cache_that_differed_from_the_full_read_is_never_used_again(site: Any) -> None:
    s = site()
    s.read(vouched=False)
    # Undetectable by counts: a delete and a create stamped long before, in the same lesson.
    gone = s.delete()
    s.create(gone["CourseLessonId"], stamp="2025-06-01T00:00:00.0000000Z")
    assert s.exact(vouched=False)[1] == "full (the incremental read differed: not trusted again)"
    assert s.exact(vouched=False)[1].startswith("full (an incremental read of this target once differed")
    assert s.exact(vouched=True)[1].startswith("full (an incremental read of this target once differed")


@pytest.mark.parametrize("seed", range(6))
def test_random_changes_between_runs_always_read_exactly(site: Any, seed: int) -> None:
    """Property: whatever happens between runs, the incremental read equals the full read, record for record
    (or it is a full read). The one change no count shows (a create stamped before the range, minus the
    overlap, in the same run as a delete) is left out: the maximum age bounds it."""
    s = site(members=40, lessons=5, per_member=3)
    rng = random.Random(seed)
    s.rng = rng
    s.read()
    incremental = 0
    for _ in range(8):
        deleted, early = False, False
        for _ in range(rng.randrange(0, 6)):
            kind = rng.choice(["create", "delete", "update", "move", "late", "pair", "early"])
            if kind == "create":
                s.create()
            elif kind == "delete" and s.store.rows[COMPLETIONS] and not early:
                s.delete()
                deleted = True
            elif kind == "update":
                s.update()
            elif kind == "move":
                s.update(move=True)
            elif kind == "late":
                s.create(stamp=precise_timestamp(datetime.now(UTC) - timedelta(minutes=rng.randrange(0, 9))))
            elif kind == "pair" and s.store.rows[COMPLETIONS] and not early:
                gone = s.delete()
                deleted = True
                s.create(gone["CourseLessonId"])
            elif kind == "early" and not deleted:  # no delete may balance it this round
                s.create(stamp="2025-06-01T00:00:00.0000000Z")
                early = True
        _, how = s.exact()
        incremental += how == "incremental"
    assert incremental >= 2


# --- the commands --------------------------------------------------------------------------------------

@pytest.fixture
def cli_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, site: Any) -> Any:
    s = site(members=50, lessons=6, per_member=3)
    work = tmp_path / "work"
    write_spec(work / "specs", s.emails, course_title="Cohort 2026", through=3, mode="authoritative")
    (work / "reconciler.yaml").write_text(f"target: {s.server.url}\n" + CONFIG)
    monkeypatch.chdir(work)
    monkeypatch.setenv("NEXUDUS_USERNAME", USER)
    monkeypatch.setenv("NEXUDUS_PASSWORD", PASSWORD)
    monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
    s.work = work
    return s


def plan_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[dict[str, Any], str]:
    code, out, err = run_cli(capsys, "-v", "plan", "specs", "--format", "json", *extra)
    assert code == 0, err
    doc = json.loads(out)
    return doc, err


def test_plan_with_the_cache_equals_plan_without_it_after_random_changes(cli_site: Any,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    s = cli_site
    rng = random.Random(3)
    s.rng = rng
    _, err = plan_json(capsys)
    assert "read cache: reading in full: no cache yet" in err
    assert (s.work / ".reconciler" / "cache" / "completions-all.json.gz").exists()
    for round_ in range(5):
        for _ in range(rng.randrange(1, 5)):
            rng.choice([s.create, s.delete, s.update])()
        cached, err = plan_json(capsys)
        full, full_err = plan_json(capsys, "--no-cache")
        assert "read cache" not in full_err
        assert cached == full
        if round_ == 0:
            assert "checking the incremental read against a full read once" in err
    assert "read cache: reading in full" not in err  # the last runs were incremental


def test_no_cache_neither_reads_nor_writes_the_cache(cli_site: Any, capsys: pytest.CaptureFixture[str]) -> None:
    plan_json(capsys, "--no-cache")
    assert not (cli_site.work / ".reconciler" / "cache").exists()
    for command in (["report", "specs"], ["snapshot"], ["export", "--out", "out"]):
        code, _, err = run_cli(capsys, *command, "--no-cache")
        assert code == 0, err
    assert not (cli_site.work / ".reconciler" / "cache").exists()


def test_snapshot_and_report_through_the_cache_equal_a_full_read(cli_site: Any,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    s = cli_site
    for _ in range(2):
        assert run_cli(capsys, "snapshot", "--out", "warm.json")[0] == 0
    s.create()
    s.delete()
    assert run_cli(capsys, "-v", "snapshot", "--out", "cached.json")[0] == 0
    assert run_cli(capsys, "snapshot", "--out", "full.json", "--no-cache")[0] == 0
    assert json.loads(Path("cached.json").read_text()) == json.loads(Path("full.json").read_text())
    cached = run_cli(capsys, "report", "specs")
    full = run_cli(capsys, "report", "specs", "--no-cache")
    strip = [line for line in cached[1].splitlines() if "UTC" not in line]
    assert strip == [line for line in full[1].splitlines() if "UTC" not in line]


def test_apply_with_the_cache_converges_and_re_reads_its_preconditions(cli_site: Any,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    s = cli_site
    plan_json(capsys)
    plan_json(capsys)  # checked once against a full read
    s.delete()
    s.create()
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    cached, _ = plan_json(capsys)
    full, _ = plan_json(capsys, "--no-cache")
    assert cached == full and cached["summary"]["create"] == cached["summary"]["delete"] == 0


def test_the_configuration_can_switch_the_cache_off(cli_site: Any, capsys: pytest.CaptureFixture[str]) -> None:
    (cli_site.work / "reconciler.yaml").write_text(f"target: {cli_site.server.url}\n" + CONFIG
                                                   + "cache: {enabled: false}\n")
    _, err = plan_json(capsys)
    assert "read cache" not in err and not (cli_site.work / ".reconciler" / "cache").exists()


@pytest.mark.parametrize("ignored", [False, True])
def test_doctor_says_whether_the_range_filter_and_counts_work_and_later_reads_trust_it(
        cli_site: Any, capsys: pytest.CaptureFixture[str], ignored: bool) -> None:
    s = cli_site
    if ignored:
        s.app.settings.ignored_filters = frozenset({"from_CourseCompletedLesson_UpdatedOn"})
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    profile = json.loads((s.work / ".reconciler" / "target-profile.json").read_text())
    key = "/api/content/coursecompletedlessons?from_coursecompletedlesson_updatedon"
    assert profile["filters"][key]["state"] == ("ignored" if ignored else "honoured")
    assert profile["counts"]["state"] == "exact"
    plan_json(capsys)
    s.create()
    s.update()
    cached, err = plan_json(capsys)
    assert cached == plan_json(capsys, "--no-cache")[0]
    if ignored:  # known from the profile: no request is spent on the range filter
        assert "reading in full: the server ignores from_CourseCompletedLesson_UpdatedOn" in err
    else:  # vouched for by the profile: no check against a full read
        assert "read cache: reading in full" not in err and "checking the incremental" not in err
