"""Reads you can trust, over real HTTP: the emulator plays each way the real service misbehaves, and no
run writes on the strength of a read it could not verify."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space, write_spec

from .conftest import run_cli

USER, PASSWORD = "ops@example.com", "ops-Secret-7731"
LIFTED = "safety: {max_delete_fraction: 1.0, max_deletes: 100000}\n"
FAST = "limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000}\n"


class Space:
    """A synthetic space in an emulator served over HTTP, and a folder whose specs name its members."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings, *, members: int = 40,
                 per_member: int = 4, through: int = 3, mode: str = "authoritative") -> None:
        self.store = Store()
        self.emails = build_space(self.store, members=members, lessons=8, per_member=per_member)
        self.store.save_user(account(USER, PASSWORD))
        self.app = EmulatorApp(self.store, settings)
        self.server = BackgroundServer(self.app).__enter__()
        self.work = tmp_path / "work"
        write_spec(self.work / "specs", self.emails, through=through, mode=mode)
        (self.work / "reconciler.yaml").write_text(f"target: {self.server.url}\n" + LIFTED + FAST)
        monkeypatch.chdir(self.work)
        monkeypatch.setenv("NEXUDUS_USERNAME", USER)
        monkeypatch.setenv("NEXUDUS_PASSWORD", PASSWORD)
        monkeypatch.delenv("NEXUDUS_API_URL", raising=False)
        self.through = through

    def close(self) -> None:
        self.server.__exit__(None, None, None)
        self.store.close()

    def pairs(self) -> Counter[tuple[int, int]]:
        rows = self.store.iter_rows("coursecompletedlessons")
        return Counter((r["CourseMemberId"], r["CourseLessonId"]) for r in rows)

    def expected_counts(self) -> tuple[int, int, int]:
        """(create, delete, unchanged) of an authoritative spec giving every member lessons 1..through."""
        wanted = {row["Id"] for row in self.store.iter_rows("courselessons") if row["DisplayOrder"] <= self.through}
        members = [row["Id"] for row in self.store.iter_rows("coursemembers")]
        have = self.pairs()
        create = sum(1 for m in members for lesson in wanted if (m, lesson) not in have)
        delete = sum(count for (_, lesson), count in have.items() if lesson not in wanted)
        unchanged = sum(1 for (_, lesson) in have if lesson in wanted)
        return create, delete, unchanged


@pytest.fixture
def space(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    made: list[Space] = []

    def make(settings: Settings | None = None, **kwargs: Any) -> Space:
        made.append(Space(tmp_path, monkeypatch, settings or Settings(limits=Limits.off()), **kwargs))
        return made[-1]

    yield make
    for one in made:
        one.close()


def plan_counts(out: str) -> tuple[int, int, int]:
    summary = json.loads(out)["summary"]
    return summary["create"], summary["delete"], summary["unchanged"]


# --- answers that cannot be believed -------------------------------------------------------------

@pytest.mark.parametrize("garble", ["html", "truncated", "string-ids", "missing-field"])
def test_an_answer_that_is_not_the_documented_one_stops_the_run_with_no_write(
        space: Any, capsys: pytest.CaptureFixture[str], garble: str) -> None:
    s = space(Settings(limits=Limits.off(), garble=garble))  # type: ignore[arg-type]
    before = s.pairs()
    for command in (["plan", "specs"], ["apply", "specs", "--yes"]):
        code, out, err = run_cli(capsys, *command)
        assert code == 1, out + err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: GET "), err  # one line, no traceback
        assert "/api/content/coursecompletedlessons" in lines[0] and PASSWORD not in err
        assert "Traceback" not in err
    assert s.app.writes_seen == [] and s.pairs() == before


def test_html_maintenance_page_is_named_as_such(space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    space(Settings(limits=Limits.off(), garble="html"))
    _, _, err = run_cli(capsys, "plan", "specs")
    assert "answered an HTML page" in err and "try again later" in err


def test_a_total_that_lies_blocks_every_write(space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = space(Settings(limits=Limits.off(), garble="lying-total"))
    code, out, _ = run_cli(capsys, "plan", "specs")
    assert code == 3
    assert "Blocked: incomplete read" in out and "Partial reads" in out
    code, out, _ = run_cli(capsys, "apply", "specs", "--yes", "--allow-deletes", "100000")
    assert code == 3 and "Blocked: incomplete read" in out
    assert s.app.writes_seen == []


def test_a_total_too_low_blocks_every_write(space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """TotalItems says one page while HasNextPage says more: the read is not cut at the total (the plan would then
    create what exists), it goes on, finds more records than the total, and stops every write."""
    s = space(Settings(limits=Limits.off(), garble="low-total"), members=300, per_member=4)  # 1,200: two pages
    before = s.pairs()
    code, out, _ = run_cli(capsys, "plan", "specs")
    assert code == 3 and "Blocked: incomplete read" in out and "more than TotalItems (1000)" in out
    code, out, _ = run_cli(capsys, "apply", "specs", "--yes", "--allow-deletes", "100000")
    assert code == 3 and "Blocked: incomplete read" in out
    assert s.app.writes_seen == [] and s.pairs() == before


@pytest.mark.parametrize("cap", [1000, 70])
def test_a_server_that_counts_nothing_is_read_to_an_empty_page(space: Any, capsys: pytest.CaptureFixture[str],
                                                              cap: int) -> None:
    """No TotalItems, TotalPages or HasNextPage on any list (completions, enrolments, coworkers, lessons): every
    list is read until a page comes back empty, at the size the server served (its cap, or the list's end)."""
    collections = frozenset({"coursecompletedlessons", "coursemembers", "coworkers", "courselessons", "courses"})
    s = space(Settings(limits=Limits.off(), garble="no-counts", outage_collections=collections, max_page_size=cap),
              members=300, per_member=4)
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()
    assert json.loads(out)["partial"] == []


@pytest.mark.parametrize(("garble", "cap", "reported", "members"), [
    # No total; a cap under the size asked, HasNextPage worked out from the size asked: false on the first page.
    ("no-total", 500, True, 800),
    ("no-total", 500, False, 800),
    ("total-only", 1000, False, 1200),  # a total, but no HasNextPage or TotalPages
    ("total-only", 500, True, 1200),
])
def test_a_server_with_some_counts_is_read_whole(space: Any, capsys: pytest.CaptureFixture[str], garble: str,
                                                 cap: int, reported: bool, members: int) -> None:
    collections = frozenset({"coursecompletedlessons", "coursemembers", "coworkers", "courselessons", "courses"})
    s = space(Settings(limits=Limits.off(), garble=garble, max_page_size=cap,  # type: ignore[arg-type]
                       report_requested_size=reported, outage_collections=collections), members=members, per_member=1)
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts() and json.loads(out)["partial"] == []


def test_endless_has_next_page_with_an_honest_total_reads_exactly(space: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    s = space(Settings(limits=Limits.off(), garble="endless"), members=300, per_member=4)
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()


@pytest.mark.slow
def test_a_read_outage_longer_than_the_retries_writes_nothing_and_the_next_run_converges(
        space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = space(Settings(limits=Limits.off(), read_outage_seconds=3600))
    before = s.pairs()
    code, _, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 1 and "try again later" in err and "Traceback" not in err
    assert s.app.writes_seen == [] and s.pairs() == before
    s.app.settings.read_outage_seconds = 0  # the service is back
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert run_cli(capsys, "plan", "specs", "--detailed-exitcode")[0] == 0
    assert max(s.pairs().values()) == 1


# --- paging that follows the server --------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("members", [50, 160, 500])  # 250, 800 and 2,500 completions in scope
@pytest.mark.parametrize("honest", [True, False])
def test_counts_are_exact_under_a_page_cap_of_300(space: Any, capsys: pytest.CaptureFixture[str], members: int,
                                                  honest: bool) -> None:
    s = space(Settings(limits=Limits.off(), max_page_size=300, report_requested_size=not honest),
              members=members, per_member=5)
    assert s.store.rows["coursecompletedlessons"].__len__() == members * 5
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert max(s.pairs().values()) == 1  # not one duplicate
    assert run_cli(capsys, "plan", "specs", "--detailed-exitcode")[0] == 0


def test_ignored_filters_still_give_exact_counts(space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    ignored = frozenset({"CourseCompletedLesson_CourseLesson", "CourseCompletedLesson_CourseMember",
                         "CourseCompletedLesson_SystemId", "CourseLesson_Course", "CourseMember_Course",
                         "Coworker_Email"})
    s = space(Settings(limits=Limits.off(), ignored_filters=ignored), members=3, per_member=4)
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()
    code, out, err = run_cli(capsys, "apply", "specs", "--yes")
    assert code == 0, out + err
    assert max(s.pairs().values()) == 1
    assert run_cli(capsys, "plan", "specs", "--detailed-exitcode")[0] == 0


# --- emails --------------------------------------------------------------------------------------

def _respell(s: Space, old: str, new: str) -> None:
    spec = s.work / "specs" / "cohort.yaml"
    spec.write_text(spec.read_text().replace(f"email: {old}", f"email: {new}"))


def test_a_mixed_case_email_resolves_against_an_exact_case_sensitive_filter(
        space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = space(Settings(limits=Limits.off(), email_filter="exact-case"), members=2, per_member=2)
    _respell(s, "member1@example.com", "Member1@Example.COM")
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()


def test_two_coworkers_sharing_an_email_resolve_to_the_enrolled_one(
        space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = space(members=2, per_member=2)
    deleted = dict(s.store.rows["coworkers"][10_001], Id=19_999, FullName="Member 0 (old account)")
    s.store.load("coworkers", [deleted])
    s.app.settings.deleted_coworkers = frozenset({19_999})
    code, out, err = run_cli(capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert plan_counts(out) == s.expected_counts()
    # Enrolled both: nobody can tell which is meant, and the error names both.
    s.store.load("coursemembers", [dict(s.store.rows["coursemembers"][50_001], Id=59_999, CoworkerId=19_999,
                                        UniqueId="u59999")])
    code, _, err = run_cli(capsys, "plan", "specs")
    assert code == 1 and "10001, 19999 share it" in err and "specs/cohort.yaml:7:" in err


def test_a_misspelt_email_suggests_the_close_coworker_or_nobody(space: Any,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    s = space(members=12, per_member=1)
    _respell(s, "member1@example.com", "memebr1@example.com")
    _respell(s, "member2@example.com", "nobody-like-this@elsewhere.org")
    code, _, err = run_cli(capsys, "plan", "specs")
    assert code == 1
    assert "'memebr1@example.com'; did you mean 'member1@example.com'?" in err
    unknown = next(line for line in err.splitlines() if "nobody-like-this" in line)
    assert "did you mean" not in unknown


def test_a_coworker_id_that_does_not_exist_says_so(space: Any, capsys: pytest.CaptureFixture[str]) -> None:
    s = space(members=2, per_member=1)
    spec = s.work / "specs" / "cohort.yaml"
    spec.write_text(spec.read_text() + "  - {coworker_id: 77777, completed: all}\n")
    code, _, err = run_cli(capsys, "plan", "specs")
    assert code == 1 and "coworker 77777 does not exist" in err and "not enrolled" not in err


def test_a_filter_answer_that_is_neither_filtered_nor_whole_is_not_taken_for_the_table() -> None:
    """A server that answers a member filter with records of other members (so it did not apply it) but
    not with the whole table either: the reader notices by the unfiltered total and reads the table."""
    import httpx

    from reconciler.client import NexudusClient
    from reconciler.state import StateReader

    def record(n: int, member: int) -> dict[str, object]:
        return {"Id": n, "CourseLessonId": 7, "CourseMemberId": member, "CreatedOn": "2026-01-01T00:00:00Z",
                "UpdatedOn": "2026-01-01T00:00:00Z"}

    table = [record(n, member=n % 5) for n in range(1, 41)]

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        rows = table[:10] if "CourseCompletedLesson_CourseMember" in params else table  # odd: half-applied
        size, page = int(params["size"]), int(params["page"])
        chunk = rows[(page - 1) * size: page * size]
        return httpx.Response(200, json={"Records": chunk, "TotalItems": len(rows),
                                         "HasNextPage": page * size < len(rows)})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        reader = StateReader(NexudusClient("https://x.example", http))
        # One named member and three lessons: the member filter is the cheapest way, and it is the one odd.
        found, partial = reader.completions({7, 8, 9}, named_members={1})
    assert partial == [] and sorted(c.id for c in found) == list(range(1, 41))


def test_owned_mode_stops_where_completion_lists_carry_no_system_id(space: Any,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Whether list records carry SystemId is unknown live: where they do not, owned mode cannot find what it made,
    and a plan that said "no changes" over them would leave every record it should delete. It stops, saying so."""
    s = space(Settings(limits=Limits.off(), system_id_in_lists="absent"), members=6, per_member=4, mode="owned")
    before = s.pairs()
    for command in (["plan", "specs"], ["apply", "specs", "--yes"]):
        code, out, err = run_cli(capsys, *command)
        assert code == 1, out + err
        assert "mode owned cannot work against" in err and "carry no SystemId" in err and "Traceback" not in err
    assert s.app.writes_seen == [] and s.pairs() == before
    s.app.settings.system_id_in_lists = "yes"  # the same space where lists carry it: owned mode plans
    code, out, err = run_cli(capsys, "plan", "specs")
    assert code in (0, 2), out + err


def test_an_export_over_a_read_that_does_not_add_up_writes_nothing(space: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    space(Settings(limits=Limits.off(), garble="lying-total"))
    code, out, err = run_cli(capsys, "export", "--out", "exported")
    assert code == 1, out + err
    assert "the completions came back incomplete, so nothing is written" in err and "snapshot" not in err
    assert not Path("exported").exists()

