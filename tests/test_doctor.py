"""`reconciler doctor` against the emulator in each setting, over real HTTP: the finding and the exit code, the
request budget, the write check's four writes (all undone, journaled), and the target profile that plan,
apply and export then use (measured by the requests the emulator served)."""

from __future__ import annotations

import io
import json
import re
import shlex
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.cli import build_parser
from reconciler.doctor import Finding, write_table
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account, load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store

from .conftest import EXAMPLES, ROOT, run_cli

USER, PASSWORD = "ops@example.com", "ops-Secret-7731"
FAST = ("limits: {min_interval_ms: 0, writes_per_minute: 100000, requests_per_minute: 100000, "
        "requests_per_hour: 1000000}\n")
STAMP = "2026-01-01T00:00:00.0000000Z"
OPEN = Settings(limits=Limits.off())
SANDBOX = ["--course", "Onboarding 101", "--lesson", "Kitchen etiquette", "--member", "bob@example.com"]
OWNED_SPEC = """apiVersion: reconciler/v1
kind: Completions
metadata: {name: onboarding}
course: Onboarding 101
members:
  - {email: bob@example.com, completed: [Welcome]}
"""


def seeded() -> Store:
    store = Store()
    load_seed(EXAMPLES / "seed.yaml", store)
    return store


class Site:
    """An emulator served over HTTP, its store, and a working folder whose reconciler.yaml targets it."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch, settings: Settings, store: Store | None,
                 users: list[dict[str, Any]], config: str) -> None:
        self.store = store if store is not None else seeded()
        for user in [account(USER, PASSWORD), *users]:
            self.store.save_user(user)
        self.app = EmulatorApp(self.store, settings)
        self.server = BackgroundServer(self.app).__enter__()
        self.work = folder
        self.work.mkdir(parents=True)
        (self.work / "reconciler.yaml").write_text(f"target: {self.server.url}\n" + config)
        monkeypatch.chdir(self.work)
        monkeypatch.setenv("NEXUDUS_USERNAME", USER)
        monkeypatch.setenv("NEXUDUS_PASSWORD", PASSWORD)
        for name in ("NEXUDUS_API_URL", "NEXUDUS_TOKEN", "NEXUDUS_TOTP"):
            monkeypatch.delenv(name, raising=False)

    @property
    def profile_file(self) -> Path:
        return self.work / ".reconciler" / "target-profile.json"

    def profile(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.profile_file.read_text())
        return found

    def served(self) -> int:
        return sum(self.app.requests_served.values())

    def writes(self) -> int:
        return len(self.app.writes_seen)

    def completions(self) -> dict[int, tuple[int, int, Any]]:
        return {r["Id"]: (r["CourseMemberId"], r["CourseLessonId"], r["SystemId"])
                for r in self.store.iter_rows("coursecompletedlessons")}

    def close(self) -> None:
        self.server.__exit__(None, None, None)
        self.store.close()


SiteFactory = Callable[..., Site]


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SiteFactory]:
    made: list[Site] = []

    def make(settings: Settings = OPEN, *, store: Store | None = None, users: list[dict[str, Any]] | None = None,
             config: str = FAST, name: str = "work") -> Site:
        made.append(Site(tmp_path / name, monkeypatch, settings, store, users or [], config))
        return made[-1]

    yield make
    for one in made:
        one.close()


def finding(site: Site, check: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [f for f in site.profile()["findings"] if f["check"] == check]
    assert len(found) == 1, [f["check"] for f in site.profile()["findings"]]
    return found[0]


def requests_printed(out: str) -> int:
    found = re.search(r"^Requests: (\d+)", out, re.MULTILINE)
    assert found, out
    return int(found.group(1))


# --- read-only checks, one emulator setting at a time ----------------------------------------------------

@pytest.mark.slow
def test_doctor_against_the_default_emulator_stays_inside_its_budget(
        site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(Settings(), config="")  # the documented limits on both sides, as against the real service
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    assert out.splitlines()[0] == f"Target: {s.server.url} (doctor: read-only)"
    assert requests_printed(out) == s.served() <= 30
    assert "Result: the tool can work safely against this target." in out
    assert s.writes() == 0
    profile = s.profile()
    assert profile["target"] == s.server.url and profile["format"] == "reconciler-target-profile/1"
    # (the seed's completions have no SystemId: lists that show it empty everywhere settle nothing)
    assert profile["page_size"]["cap"] is None and profile["system_id"]["in_list_records"] is None
    assert finding(s, "SystemId in lists")["level"] == "note"
    assert {v["state"] for v in profile["filters"].values()} == {"honoured"}
    assert profile["filters"]["/api/spaces/coworkers?coworker_email"] | {"match": "exact", "case": "insensitive"} == \
        profile["filters"]["/api/spaces/coworkers?coworker_email"]
    assert all(v == "yes" for v in profile["roles"].values()) and len(profile["roles"]) == 7
    assert profile["dates"]["lists"] == "whole seconds, UTC (Z)" and profile["dates"]["get"].startswith("up to ")
    assert finding(s, "sign-in")["seen"].startswith("password grant; the token lasts 7 days; a refresh with the "
                                                    "client_id header works")
    assert finding(s, "throttling")["level"] == "ok" and finding(s, "clock")["level"] == "ok"
    text = s.profile_file.read_text()
    assert PASSWORD not in text and "access_token" not in text
    # The table: a mark, the check and what it spent of its budget, per row.
    assert re.search(r"^ok\s+filter Coworker_Email\s+honoured", out, re.MULTILINE)
    assert re.search(r"^\s+3 of 3 requests", out, re.MULTILINE)


READ_ONLY_CASES = [
    ("page cap", {"max_page_size": 20}, "page size", "note", "asked 1,000 and was served 20 records", 0),
    ("page cap hidden by the envelope", {"max_page_size": 20, "report_requested_size": True}, "page size", "note",
     "the envelope claims CurrentPageSize 1000, not the 20 records it holds", 0),
    ("email filter by substring", {"email_filter": "substring"}, "filter Coworker_Email", "ok",
     "; substring, ignoring case", 0),
    ("email filter exact", {}, "filter Coworker_Email", "ok", "; exact, ignoring case", 0),
    ("email filter exact and case-sensitive", {"email_filter": "exact-case"}, "filter Coworker_Email", "ok",
     "; exact, minding case", 0),
    ("SystemId filter ignored", {"ignored_filters": frozenset({"CourseCompletedLesson_SystemId"})},
     "filter CourseCompletedLesson_SystemId", "note", "ignored: CourseCompletedLesson_SystemId=", 0),
    ("member filter ignored", {"ignored_filters": frozenset({"CourseCompletedLesson_CourseMember"})},
     "filter CourseCompletedLesson_CourseMember", "note", "answered 97 of 97 records", 0),
    ("email filter ignored", {"ignored_filters": frozenset({"coworker_email"})}, "filter Coworker_Email", "note",
     "ignored: Coworker_Email=", 0),
    ("SystemId absent from lists", {"system_id_in_lists": "absent"}, "SystemId in lists", "limit",
     "completion list records have no SystemId", 3),
    ("dates in milliseconds", {"date_style": "millis"}, "dates", "ok",
     "lists: up to 3 fractional digits, UTC (Z); get-by-id: up to 3 fractional digits, UTC (Z)", 0),
    ("clock ten minutes ahead", {"clock_offset_seconds": 600.0}, "clock", "limit", "s ahead of this machine's", 3),
    ("clock half a minute behind", {"clock_offset_seconds": -30.0}, "clock", "note", "s behind this machine's", 0),
]


@pytest.mark.parametrize(("changes", "check", "level", "seen", "exit_code"),
                         [case[1:] for case in READ_ONLY_CASES], ids=[case[0] for case in READ_ONLY_CASES])
def test_each_setting_gives_its_finding_and_exit_code(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                                      changes: dict[str, Any], check: str, level: str, seen: str,
                                                      exit_code: int) -> None:
    s = site(replace(OPEN, **changes))
    code, out, err = run_cli(capsys, "doctor")
    assert code == exit_code, out + err
    found = finding(s, check)
    assert found["level"] == level and seen in found["seen"], found
    assert requests_printed(out) == s.served() <= 30 and s.writes() == 0
    others = [f for f in s.profile()["findings"] if f["check"] != check and f["level"] in ("limit", "fail")]
    assert others == []


def test_findings_land_in_the_profile_the_runs_use(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, max_page_size=20, email_filter="exact-case",
                     ignored_filters=frozenset({"CourseLesson_Course", "CourseCompletedLesson_SystemId"})))
    assert run_cli(capsys, "doctor")[0] == 0
    profile = s.profile()
    assert profile["page_size"]["cap"] == 20
    states = {v["filter"]: v["state"] for v in profile["filters"].values()}
    assert states["CourseLesson_Course"] == states["CourseCompletedLesson_SystemId"] == "ignored"
    assert states["CourseMember_Course"] == "honoured"
    assert profile["filters"]["/api/spaces/coworkers?coworker_email"]["case"] == "sensitive"


def test_a_clock_far_off_is_measured(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, clock_offset_seconds=-600.0))
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 3 and "undo of an apply killed mid-create allows 120 s" in out
    assert abs(s.profile()["clock_offset_seconds"] + 600) < 2


@pytest.mark.slow
def test_throttling_met_during_the_checks_is_reported(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(Settings(limits=replace(Limits.off(), min_interval_ms=100), throttle_status=429,
                      retry_after_header=False))
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    seen = finding(s, "throttling")["seen"]
    assert re.match(r"throttled \d+ time\(s\): 429, no Retry-After, body 'API calls quota exceeded\. Wait 0\.1 "
                    r"seconds\.'", seen), seen
    assert s.profile()["throttling"]["status"] == 429
    # What was sent again after a "wait" is said apart, and the rest keeps to the budget.
    found = re.search(r"Requests: (\d+) \(budget 30\); writes: 0; (\d+) of the requests were answered 'wait' "
                      r"\(throttled\) and sent again, outside the budget", out)
    assert found is not None, out
    assert int(found[2]) > 0 and int(found[1]) - int(found[2]) <= 30


def test_an_account_without_list_roles_cannot_work(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    s = site(Settings(limits=Limits.off()),
             users=[account("reader@example.com", "reader-pw", admin=False, roles=["CourseCompletedLesson-List"])])
    monkeypatch.setenv("NEXUDUS_USERNAME", "reader@example.com")
    monkeypatch.setenv("NEXUDUS_PASSWORD", "reader-pw")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1
    roles = finding(s, "roles")
    assert roles["level"] == "fail" and "lacks Course-List, CourseLesson-List, CourseMember-List, Coworker-List" \
        in roles["seen"]
    assert "Result: cannot work safely against this target: roles:" in out
    assert s.profile()["roles"]["CourseCompletedLesson-List"] == "yes"


def test_an_account_that_cannot_read_completions_works_with_limits(site: SiteFactory,
                                                                   capsys: pytest.CaptureFixture[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    lister = [f"{e}-List" for e in ("Course", "CourseLesson", "CourseMember", "Coworker", "CourseCompletedLesson")]
    s = site(Settings(limits=Limits.off()),
             users=[account("lister@example.com", "lister-pw", admin=False, roles=[*lister, "Coworker-Read"])])
    monkeypatch.setenv("NEXUDUS_USERNAME", "lister@example.com")
    monkeypatch.setenv("NEXUDUS_PASSWORD", "lister-pw")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 3
    assert finding(s, "roles")["level"] == "limit" and "give the account CourseCompletedLesson-Read" in out


def test_a_wrong_password_stops_at_sign_in_and_writes_no_profile(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = site()
    monkeypatch.setenv("NEXUDUS_PASSWORD", "not-it")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and "The user name or password is incorrect." in out
    assert not s.profile_file.exists() and "not-it" not in out
    assert s.served() == 1  # the sign-in, and nothing after it


def test_two_factor_sign_in_and_refresh(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = site(users=[account("twofa@example.com", "twofa-pw", totp="123456")])
    monkeypatch.setenv("NEXUDUS_USERNAME", "twofa@example.com")
    monkeypatch.setenv("NEXUDUS_PASSWORD", "twofa-pw")
    monkeypatch.setenv("NEXUDUS_TOTP", "123456")
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0, out
    assert finding(s, "sign-in")["seen"].startswith("password grant with a two-factor code; the token lasts 7 days; "
                                                    "a refresh with the client_id header works")
    assert "123456" not in s.profile_file.read_text()


def test_a_list_that_cannot_be_believed_means_it_cannot_work(site: SiteFactory,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, garble="html"))
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 1 and "answered an HTML page" in out
    assert finding(s, "filter CourseCompletedLesson_CourseLesson")["seen"].startswith(
        "not checked: its list answer cannot be believed")


def test_doctor_on_the_local_emulator(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "doctor")
    assert code == 0, out + err
    assert out.startswith("Target: local emulator (") and "none needed: the local emulator" in out
    profile = json.loads((demo / ".reconciler" / "target-profile.json").read_text())
    assert profile["target"].startswith("local emulator (")
    code, out, err = run_cli(capsys, "plan")  # the demo's owned specs still plan: the profile allows owned mode
    assert code == 0, out + err
    code, out, _ = run_cli(capsys, "-q", "doctor")  # what a script needs: the target, the profile, the verdict
    lines = out.splitlines()
    assert code == 0 and len(lines) == 3 and lines[0].startswith("Target: local emulator (")
    assert lines[1].startswith("Profile: ") and lines[2] == "Result: the tool can work safely against this target."


# --- the write check --------------------------------------------------------------------------------------

def test_write_check_makes_four_writes_and_undoes_them(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site()
    before = s.completions()
    code, out, err = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 0, out + err
    assert s.writes() == 4 and [w[0] for w in s.app.writes_seen] == ["POST", "POST", "DELETE", "DELETE"]
    assert s.completions() == before
    assert "writes: 4 (at most 4, all undone)" in out
    profile = s.profile()
    assert profile["system_id"]["kept_on_create"] is True and profile["duplicates"] == "accepted"
    assert profile["create_value"] == "record" and profile["system_id"]["write_check_at"]
    assert profile["roles"]["CourseCompletedLesson-Create"] == profile["roles"]["CourseCompletedLesson-Delete"] \
        == "yes"
    assert finding(s, "duplicate pair")["seen"].startswith("accepted: the same pair created again made #")
    # The check's journal first, then the one of its undo (which names it).
    journals = sorted((s.work / ".reconciler" / "journal").glob("*.jsonl"),
                      key=lambda path: json.loads(path.read_text().splitlines()[0])["undo_of"] is not None)
    assert len(journals) == 2 and journals[0].stem in journals[1].read_text().splitlines()[0]
    entries = [json.loads(line) for path in journals for line in path.read_text().splitlines()]
    intents = [e for e in entries if e["type"] == "intent"]
    assert [e["action"]["action"] for e in intents] == ["create", "create", "delete", "delete"]
    assert all(e["action"]["system_id"].startswith("reconciler-doctor:") for e in intents[:2])
    # `reconciler undo` of the check's journal finds nothing left to undo.
    code, out, err = run_cli(capsys, "undo", str(journals[0]))
    assert code == 0 and "No changes." in out, out + err


def test_write_check_counts_requests_and_writes(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site()
    code, out, _ = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 0
    found = re.search(r"^Requests: (\d+) \((\d+) for the read-only checks, budget 30; (\d+) for the write check\)",
                      out, re.MULTILINE)
    assert found, out
    total, checks, write_check = map(int, found.groups())
    assert total == s.served() == checks + write_check and checks <= 30 and write_check <= 14


def test_duplicates_refused(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, refuse_duplicates=True))
    before = s.completions()
    code, out, err = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 0, out + err
    assert finding(s, "duplicate pair")["seen"].startswith("refused: 400 from POST")
    assert "already completed this lesson" in finding(s, "duplicate pair")["seen"]
    assert s.profile()["duplicates"] == "refused" and s.writes() == 3 and s.completions() == before


def test_value_holding_only_the_id(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, create_value="id"))
    assert run_cli(capsys, "doctor", "--write-check", *SANDBOX)[0] == 0
    assert s.profile()["create_value"] == "id"
    assert "Value holds only the Id" in finding(s, "write check: create")["seen"]


def test_system_id_dropped_on_create_makes_owned_unavailable(site: SiteFactory,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, keep_system_id=False))
    (s.work / "onboarding.yaml").write_text(OWNED_SPEC)
    before = s.completions()
    code, out, _ = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 3
    assert finding(s, "SystemId on create")["level"] == "limit" and s.profile()["system_id"]["kept_on_create"] is False
    assert "Specs in owned mode here: onboarding.yaml (onboarding)" in out
    assert s.completions() == before and s.writes() == 4
    # A later read-only run keeps what the write check measured.
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 3 and "dropped (--write-check of " in out
    # Measuring another target from this folder (the local emulator) keeps this one's profile aside: plans against
    # it still refuse owned specs, and its next read-only run still knows what the write check measured.
    assert run_cli(capsys, "--api", "local", "doctor")[0] == 0
    assert s.profile()["target"].startswith("local emulator (")
    code, _, err = run_cli(capsys, "plan", "onboarding.yaml")
    assert code == 1 and "mode owned cannot work against" in err
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 3 and "dropped (--write-check of " in out and s.profile()["target"] == s.server.url


def test_system_id_shown_empty_in_lists_makes_owned_unavailable(site: SiteFactory,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Lists that show SystemId as null: a read-only run cannot tell (nobody may have set one); the write check
    reads its own record back in the list, as owned mode reads it, and owned specs are then refused."""
    s = site(replace(OPEN, system_id_in_lists="null"))
    assert run_cli(capsys, "doctor")[0] == 0
    assert finding(s, "SystemId in lists")["level"] == "note" and s.profile()["system_id"]["in_list_records"] is None
    code, out, _ = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 3, out
    found = finding(s, "SystemId on create")
    assert found["level"] == "limit" and "but list records show it as None" in found["seen"], found
    assert s.profile()["system_id"] | {"kept_on_create": True, "in_list_records": False} == s.profile()["system_id"]
    (s.work / "specs").mkdir()
    (s.work / "specs" / "onboarding.yaml").write_text(OWNED_SPEC)
    code, _, err = run_cli(capsys, "plan", "specs")
    assert code == 1 and "mode owned cannot work against" in err
    assert run_cli(capsys, "doctor")[0] == 3  # a later read-only run keeps what the write check measured


def test_write_check_settings_from_reconciler_yaml(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(config=FAST + "doctor: {course: Onboarding 101, lesson: {id: 2006}, member: {course_member_id: 50002}}\n")
    before = s.completions()
    code, out, err = run_cli(capsys, "doctor", "--write-check")
    assert code == 0, out + err
    assert "Kitchen etiquette for Bob Okafor in Onboarding 101" in finding(s, "write check: create")["seen"]
    assert s.completions() == before and s.writes() == 4


def test_write_check_needs_a_sandbox(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site()
    code, _, err = run_cli(capsys, "doctor", "--write-check", "--course", "Onboarding 101")
    assert code == 1 and "--write-check needs a course, a lesson of it and an enrolled member" in err
    assert "missing: lesson, member" in err and s.served() == 0


def test_write_check_never_touches_a_real_completion(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """A sandbox pair already completed is the operator's to fix: one error line, no verdict on the target, nothing
    written, and the profile an earlier run wrote is left as it was."""
    s = site()
    profile = s.work / ".reconciler" / "target-profile.json"
    assert run_cli(capsys, "doctor")[0] == 0 and profile.is_file()
    before = profile.read_bytes()
    code, out, err = run_cli(capsys, "doctor", "--write-check", "--course", "Onboarding 101", "--lesson", "Welcome",
                             "--member", "bob@example.com")
    assert code == 1 and err.startswith("error: --write-check: Bob Okafor has already completed Welcome;")
    assert err.count("\n") == 1 and "Result:" not in out
    assert s.writes() == 0 and profile.read_bytes() == before


def test_write_check_names_a_near_miss(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site()
    code, _, err = run_cli(capsys, "doctor", "--write-check", "--course", "Onboarding 10", "--lesson", "Welcome",
                           "--member", "bob@example.com")
    assert code == 1 and err.startswith("error: --write-check: ") and "no course 'Onboarding 10'" in err
    assert "Onboarding 101" in err and s.writes() == 0


# --- plan, apply and export use the profile ----------------------------------------------------------------

def build_store(courses: list[tuple[str, int, int, int]], coworkers: int) -> Store:
    """`courses`: (title, lessons, members, lessons each member completed); members are the first coworkers."""
    def row(record_id: int, **fields: object) -> dict[str, object]:
        return {"Id": record_id, "UniqueId": f"u{record_id}", "CreatedOn": STAMP, "UpdatedOn": STAMP,
                "UpdatedBy": "seed@example.com", "IsNew": False, "SystemId": None, **fields}

    store = Store()
    store.load("coworkers", [row(10_001 + n, FullName=f"Person {n}", Email=f"person{n}@example.com",
                                 CompanyName="Co", TeamNames="") for n in range(coworkers)])
    lessons, members, done = [], [], []
    lesson_id, member_id, done_id = 2_001, 50_001, 900_001
    for index, (_, lesson_count, member_count, completed) in enumerate(courses):
        course_id = 101 + index
        ids = list(range(lesson_id, lesson_id + lesson_count))
        lesson_id += lesson_count
        lessons += [row(i, CourseId=course_id, Title=f"Lesson {n + 1}", DisplayOrder=n + 1, Active=True,
                        SectionTitle=None, UnlockType="Always", CompletionType="Manual") for n, i in enumerate(ids)]
        for n in range(member_count):
            members.append(row(member_id, CourseId=course_id, CoworkerId=10_001 + n, Approved=True, Blocked=False))
            for lesson in ids[:completed]:
                done.append(row(done_id, CourseLessonId=lesson, CourseMemberId=member_id))
                done_id += 1
            member_id += 1
    store.load("courses", [row(101 + i, Title=c[0], Active=True, DisplayOrder=i, GroupName=None,
                               Visibility="Everyone") for i, c in enumerate(courses)])
    store.load("courselessons", lessons)
    store.load("coursemembers", members)
    store.load("coursecompletedlessons", done)
    return store


def additive_spec(folder: Path, course: str, emails: list[str]) -> None:
    folder.mkdir(exist_ok=True)
    lines = ["apiVersion: reconciler/v1", "kind: Completions", "metadata: {name: cohort}", f"course: {course}",
             "mode: additive", "members:", *(f"  - {{email: {e}, completed: all}}" for e in emails)]
    (folder / "cohort.yaml").write_text("\n".join(lines) + "\n")


def counted(site: Site, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str, int]:
    before = site.served()
    code, out, err = run_cli(capsys, *argv)
    return code, out, err, site.served() - before


def test_plan_starts_from_the_measured_page_size(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    # 300 coworkers, served 20 a page: five emails are five filtered reads, not the whole list in 15 pages.
    s = site(replace(OPEN, max_page_size=20), store=build_store([("Cohort", 3, 5, 1)], coworkers=300))
    additive_spec(s.work / "specs", "Cohort", [f"person{n}@example.com" for n in range(5)])
    code, blind, err, without = counted(s, capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert run_cli(capsys, "doctor")[0] == 0 and s.profile()["page_size"]["cap"] == 20
    code, profiled, err, used = counted(s, capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert json.loads(profiled)["summary"] == json.loads(blind)["summary"]
    # sign-in, courses, lessons, enrolments, then coworkers: 15 pages, or a count and 5 filtered reads; 3 lessons.
    assert (without, used) == (22, 13)


def test_plan_and_apply_avoid_a_filter_known_to_be_ignored(site: SiteFactory,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # The member filter is ignored: without a profile, a plan naming two members reads all 490 completions through
    # it (10 pages of 50); with one, it reads the three lessons of its course instead (1 page each).
    def make(name: str) -> Site:
        store = build_store([("Small", 3, 10, 1), ("Big", 8, 60, 8)], coworkers=60)
        made: Site = site(replace(OPEN, max_page_size=50,
                                  ignored_filters=frozenset({"CourseCompletedLesson_CourseMember"})),
                          store=store, name=name)
        additive_spec(made.work / "specs", "Small", ["person0@example.com", "person1@example.com"])
        return made

    blind = make("blind")
    code, out, err, plan_without = counted(blind, capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    code, _, err, apply_without = counted(blind, capsys, "apply", "specs", "--yes")
    assert code == 0, err
    measured = make("measured")
    assert run_cli(capsys, "doctor")[0] == 0
    assert measured.profile()["filters"][
        "/api/content/coursecompletedlessons?coursecompletedlesson_coursemember"]["state"] == "ignored"
    code, profiled, err, plan_with = counted(measured, capsys, "plan", "specs", "--format", "json")
    assert code == 0, err
    assert json.loads(profiled)["summary"] == json.loads(out)["summary"]
    code, _, err, apply_with = counted(measured, capsys, "apply", "specs", "--yes")
    assert code == 0, err
    # sign-in, courses, lessons, enrolments, 2 emails; completions (blind: through the ignored filter, then one
    # count that confirms its answer was the whole table).
    assert (plan_without, plan_with) == (6 + 10 + 1, 6 + 3)
    # The apply: its plan's reads, 4 creates, and the verification's 3 lesson reads (by then the blind run knows too).
    assert (apply_without, apply_with) == (6 + 10 + 1 + 4 + 3, 6 + 3 + 4 + 3)
    assert blind.completions().keys() == measured.completions().keys()


def test_owned_specs_are_refused_before_any_request(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, system_id_in_lists="absent"))
    (s.work / "specs").mkdir()
    (s.work / "specs" / "onboarding.yaml").write_text(OWNED_SPEC)
    code, out, err, spent = counted(s, capsys, "plan", "specs")
    assert code == 1 and spent > 0, out + err  # no profile: the read finds it out, and stops
    assert "its completion lists carry no SystemId" in err
    assert run_cli(capsys, "doctor")[0] == 3
    for command in (["plan", "specs"], ["apply", "specs", "--yes"]):
        code, out, err, spent = counted(s, capsys, *command)
        assert code == 1 and spent == 0, out + err
        assert "specs/onboarding.yaml:4:9: mode owned cannot work against" in err  # owned by default
        assert "its list records leave SystemId out" in err and "use mode additive or authoritative" in err
    assert s.writes() == 0


def plans_an_orphan_then_stops_when_lists_hide_system_id(s: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """The plan of an owned spec with one orphan deletes it; once lists show every SystemId as null, the plan reads a
    few records by Id and stops."""
    code, out, _ = run_cli(capsys, "plan", "specs")
    assert code == 0 and "1 to delete" in out
    s.app.settings = replace(s.app.settings, system_id_in_lists="null")
    code, out, err = run_cli(capsys, "plan", "specs")
    assert code == 1, out + err
    assert "its completion lists carry no SystemId, and owned mode knows its own records only by that marker" in err


def test_lists_that_show_system_id_as_null_are_found_out_by_the_plan(site: SiteFactory,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """Without a profile, a plan over lists that show every SystemId as null reads a few records by Id: one that
    holds a marker the list hid stops the plan (it would say "no changes" over the orphan it should delete). A
    space where nobody set one plans as before."""
    s = site()
    two = OWNED_SPEC.replace("[Welcome]", "[Welcome, Kitchen etiquette, Booking meeting rooms]")
    (s.work / "specs").mkdir()
    (s.work / "specs" / "onboarding.yaml").write_text(two)
    s.app.settings = replace(s.app.settings, system_id_in_lists="null")
    code, out, err = run_cli(capsys, "plan", "specs")  # no record holds a marker yet
    assert code == 0 and "Plan: 2 to create" in out, out + err
    s.app.settings = replace(s.app.settings, system_id_in_lists="yes")
    assert run_cli(capsys, "apply", "specs", "--yes")[0] == 0
    assert sum(1 for _, _, marker in s.completions().values() if marker == "reconciler:onboarding") == 2
    # Booking meeting rooms now an orphan of the spec
    (s.work / "specs" / "onboarding.yaml").write_text(OWNED_SPEC.replace("[Welcome]", "[Welcome, Kitchen etiquette]"))
    plans_an_orphan_then_stops_when_lists_hide_system_id(s, capsys)


def test_export_takes_additive_where_owned_cannot_work(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, system_id_in_lists="absent"))
    assert run_cli(capsys, "doctor")[0] == 3
    code, _, err = run_cli(capsys, "export", "--out", "exported", "--course", "Coffee Bar Basics")
    assert code == 0, err
    assert "note: exported in mode additive, not owned" in err
    assert "mode: additive" in (s.work / "exported" / "coffee-bar-basics.yaml").read_text()
    code, _, err = run_cli(capsys, "export", "--out", "again", "--mode", "owned")
    assert code == 1 and "--mode owned cannot work against" in err


def test_a_run_that_contradicts_the_profile_says_so(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, max_page_size=20))
    (s.work / "specs").mkdir()
    (s.work / "specs" / "onboarding.yaml").write_text(OWNED_SPEC)
    assert run_cli(capsys, "doctor")[0] == 0
    s.app.settings = replace(s.app.settings, max_page_size=10,
                             ignored_filters=frozenset({"CourseMember_Course"}))
    code, out, err = run_cli(capsys, "plan", "specs")
    assert code == 0, out + err
    assert "warning: the target profile (" in err and "says the server serves 20 records a page, but it served 10 " \
        "in this run; run `reconciler doctor` again" in err
    assert "says the server honours the filter CourseMember_Course, but it ignored it in this run" in err


def test_a_profile_of_another_target_is_not_used(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    s = site(replace(OPEN, system_id_in_lists="absent"))
    (s.work / "specs").mkdir()
    (s.work / "specs" / "onboarding.yaml").write_text(OWNED_SPEC)
    assert run_cli(capsys, "doctor")[0] == 3
    other = site(name="other")
    monkeypatch.chdir(s.work)  # the profile above is here, and names the first server
    code, out, err = run_cli(capsys, "-v", "--api", other.server.url, "plan", "specs")
    assert code == 0, out + err
    assert f"is of {s.server.url}, not {other.server.url}: not used" in err


def test_write_check_never_resends_a_create_whose_answer_was_lost(site: SiteFactory,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    s = site(replace(OPEN, lose_rate=1.0))  # every write is done, and its answer never comes
    before = s.completions()
    code, out, err = run_cli(capsys, "doctor", "--write-check", *SANDBOX)
    assert code == 0, out + err
    methods = [w[0] for w in s.app.writes_seen]
    assert methods.count("POST") == 2  # each create found on re-read, never sent again
    assert s.completions() == before
    assert "writes: 4 (at most 4, all undone); 2 requests sent again after a lost answer" in out
    journal = next(p for p in (s.work / ".reconciler" / "journal").glob("*.jsonl")
                   if json.loads(p.read_text().splitlines()[0])["undo_of"] is None)
    outcomes = [json.loads(line) for line in journal.read_text().splitlines() if '"outcome"' in line]
    assert [o["status"] for o in outcomes] == ["created", "created"]
    assert all("re-read" in o["message"] for o in outcomes) and outcomes[0]["id"] != outcomes[1]["id"]


@pytest.mark.parametrize(("cap", "seen"), [(1000, "served 1,000 records at size=1,000 (Coworker, 1,100 in all); "
                                                   "1,000 at size=2,000"),
                                           (5000, "; 1,100 at size=2,000")])
def test_page_size_above_a_thousand_is_measured_but_never_used(site: SiteFactory, capsys: pytest.CaptureFixture[str],
                                                               cap: int, seen: str) -> None:
    s = site(replace(OPEN, max_page_size=cap), store=build_store([("Cohort", 1, 1, 0)], coworkers=1100))
    code, out, _ = run_cli(capsys, "doctor")
    assert code == 0, out
    page = finding(s, "page size")
    assert seen in page["seen"] and "asks 1,000 (the documented maximum" in page["action"]
    assert s.profile()["page_size"]["cap"] is None


def test_real_nexudus_opens_with_the_first_ten_minutes_and_its_commands_parse() -> None:
    text = (ROOT / "docs" / "real-nexudus.md").read_text()
    first = text.split("\n## ", 2)[1]
    assert first.startswith("Your first ten minutes on a real account")
    commands = [line.split("#")[0].strip() for line in first.splitlines() if line.strip().startswith("reconciler ")]
    assert [c.split()[1] for c in commands] == ["doctor", "doctor", "export", "plan", "undo", "apply"]
    for command in commands:
        build_parser().parse_args(shlex.split(command)[1:])  # raises on a flag the command does not take
    for step in ("reconciler apply completions/", "NEXUDUS_USERNAME", "Roles", "target-profile.json"):
        assert step in first


def test_a_profile_kept_aside_is_found_under_any_spelling_of_its_target(tmp_path: Path) -> None:
    """The folder's profile of one target, recorded under an older spelling, is kept aside when another target is
    measured, and found again for the first however it is spelled now."""
    from reconciler.profile import PROFILE_FORMAT, keep_other_profile, load_profile, profile_path

    state = tmp_path / ".reconciler"
    state.mkdir()
    profile_path(state).write_text(json.dumps({"format": PROFILE_FORMAT, "target": "HTTPS://Spaces.Example.COM:443/",
                                               "measured_at": "then", "system_id": {"kept_on_create": False}}))
    keep_other_profile(state, "http://127.0.0.1:9")
    assert not profile_path(state).exists()
    found = load_profile(state, "https://spaces.example.com")
    assert found is not None and found.system_id_kept is False and found.path.parent.name == "profiles"
    assert load_profile(state, "http://127.0.0.1:9") is None


def test_a_profile_that_saw_system_id_in_lists_does_not_hide_lists_that_stopped_showing_it(
        site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """doctor measured lists showing SystemId; the server then shows it as null. The plan still reads a few records
    by Id, and stops: it said "No changes" over the orphan it should delete, and blamed a filter."""
    s = site()
    (s.work / "specs").mkdir()
    spec = s.work / "specs" / "onboarding.yaml"
    spec.write_text(OWNED_SPEC.replace("[Welcome]", "[Welcome, Kitchen etiquette]"))
    assert run_cli(capsys, "doctor", "--write-check", *SANDBOX)[0] == 0
    assert s.profile()["system_id"]["in_list_records"] is True
    assert run_cli(capsys, "apply", "specs", "--yes")[0] == 0
    spec.write_text(OWNED_SPEC)  # Kitchen etiquette now an orphan of the spec
    plans_an_orphan_then_stops_when_lists_hide_system_id(s, capsys)


def test_a_day_long_wait_is_a_pause_not_a_verdict(site: SiteFactory, capsys: pytest.CaptureFixture[str]) -> None:
    """The server answers with Retry-After: 86400 (a day): doctor stops as apply does (exit 3, nothing written) and
    says the checks are not finished; it said the tool "cannot work safely against this target" (exit 1)."""
    s = site(Settings(limits=replace(Limits.off(), requests_per_minute=3), throttle_wait_seconds=86400))
    code, out, err = run_cli(capsys, "doctor")
    assert code == 3, out + err
    assert "Result: not measured in full:" in out and "Run `reconciler doctor` again later" in out
    assert "cannot work safely" not in out and "works against this target" not in out
    assert not s.profile_file.exists()


def test_export_without_a_profile_sees_lists_without_system_id(site: SiteFactory,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """No doctor run: the export's own read shows lists that leave SystemId out, so it writes additive specs (owned
    ones the plan on them refused) and refuses --mode owned, as after doctor."""
    site(replace(OPEN, system_id_in_lists="absent"))
    code, _, err = run_cli(capsys, "export", "--out", "exported")
    assert code == 0, err
    assert "note: exported in mode additive, not owned: the completion lists of" in err
    assert run_cli(capsys, "plan", "exported", "--detailed-exitcode")[0] == 0
    code, _, err = run_cli(capsys, "export", "--out", "again", "--mode", "owned")
    assert code == 1 and "--mode owned cannot work against" in err and "leave SystemId out" in err


def test_a_check_that_sent_answers_again_says_so_not_more_of_its_budget_than_it_has() -> None:
    """A check whose failed answers were asked again spent more requests than it budgeted: "8 of 7" read as a
    miscount."""
    out = io.StringIO()
    write_table([Finding("roles", "ok", "all there", "nothing", 8, 7),
                 Finding("sign-in", "ok", "yes", "nothing", 2, 2)], out)
    assert "8 requests (7 budgeted, the rest sent again)" in out.getvalue()
    assert "2 of 2 requests" in out.getvalue() and " of 7 " not in out.getvalue()
