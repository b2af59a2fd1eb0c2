"""Each behaviour of the real service that nexudus-api.md lists as seen or unknown, played by a setting,
over real HTTP."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.cli import build_parser, main, settings_from
from reconciler.emulator.errors import UsageError
from reconciler.emulator.limits import Limits, wait_figure
from reconciler.emulator.seed import account, load_seed, snapshot_document
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import ENTITIES, Store

from .conftest import API_SEED, EmulatorFactory, run_cli

COMPLETIONS = "/api/content/coursecompletedlessons"
MEMBERS = "/api/content/coursemembers"
COWORKERS = "/api/spaces/coworkers"
NEW_COMPLETION = {"CourseLessonId": 2003, "CourseMemberId": 50001}


def open_settings(**changes: Any) -> Settings:
    """No limits and no sign-in, so each test sees only the setting it is about."""
    return Settings(limits=Limits.off(), require_auth=False, **changes)


def add_completions(url: str, count: int) -> list[int]:
    made = []
    for _ in range(count):
        reply = httpx.post(url + COMPLETIONS, json=NEW_COMPLETION)
        assert reply.status_code == 200, reply.text
        made.append(reply.json()["Value"]["Id"])
    return made


def listing(url: str, path: str = COMPLETIONS, **params: Any) -> dict[str, Any]:
    reply = httpx.get(url + path, params=params)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def ids(body: dict[str, Any]) -> list[int]:
    return [r["Id"] for r in body["Records"]]


# --- page size ------------------------------------------------------------------------------------

def test_max_page_size_caps_a_page_and_the_envelope_says_so(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(max_page_size=4))
    add_completions(server.url, 7)  # 12 in all
    first = listing(server.url, size=10)
    last = listing(server.url, size=10, page=3)
    assert len(first["Records"]) == 4 and first["CurrentPageSize"] == 4 and first["PageSize"] == 4
    assert first["TotalItems"] == 12 and first["TotalPages"] == 3 and first["HasNextPage"] is True
    assert len(last["Records"]) == 4 and last["HasNextPage"] is False and last["FirstItem"] == 9
    assert listing(server.url, size=3)["CurrentPageSize"] == 3  # below the cap: what was asked


def test_no_cap_below_a_large_max_page_size(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(max_page_size=100_000))
    body = listing(server.url, size=5000)
    assert body["CurrentPageSize"] == 5000 and len(body["Records"]) == 5


def test_report_requested_size_lies_in_the_envelope_and_serves_the_cap(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(max_page_size=4, report_requested_size=True))
    add_completions(server.url, 7)
    every = ids(listing(server.url, size=100, page=1)) + ids(listing(server.url, size=100, page=2)) \
        + ids(listing(server.url, size=100, page=3))
    first = listing(server.url, size=10)
    second = listing(server.url, size=10, page=2)
    assert first["CurrentPageSize"] == 10 and first["PageSize"] == 10 and first["TotalPages"] == 2
    assert ids(first) == every[0:4] and first["HasNextPage"] is True
    assert ids(second) == every[4:8] and second["HasNextPage"] is False  # 4 of 12 never come
    assert second["TotalItems"] == 12


# --- filters --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("mode", "name", "value", "expected"), [
    ("substring", "Coworker_Email", "al@example.com", {10001, 10002}),
    ("substring", "Coworker_Email", "EXAMPLE", {10001, 10002, 10003}),
    ("exact", "Coworker_Email", "al@example.com", {10001}),
    ("exact", "coworker_email", "ZOE.BRONTE@EXAMPLE.COM", {10003}),
    ("exact", "Coworker_Email", "example.com", set()),
    ("exact-case", "COWORKER_EMAIL", "Zoe.Bronte@Example.com", {10003}),
    ("exact-case", "Coworker_Email", "zoe.bronte@example.com", set()),
])
def test_email_filter_modes(emulator: EmulatorFactory, mode: str, name: str, value: str, expected: set[int]) -> None:
    server = emulator(settings=open_settings(email_filter=mode))
    body = listing(server.url, COWORKERS, **{name: value})
    assert set(ids(body)) == expected and body["TotalItems"] == len(expected)


def test_full_name_stays_a_substring_filter_whatever_the_email_mode(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(email_filter="exact-case"))
    assert set(ids(listing(server.url, COWORKERS, Coworker_FullName="AL"))) == {10001, 10002}


def test_ignored_filters_bring_back_the_whole_table(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(ignored_filters=frozenset({"coursecompletedlesson_systemid",
                                                                        "Coworker_Email"})))
    made = httpx.post(server.url + COMPLETIONS, json={**NEW_COMPLETION, "SystemId": "reconciler:x"}).json()
    assert made["WasSuccessful"]
    by_system = listing(server.url, CourseCompletedLesson_SystemId="reconciler:x")
    assert by_system["TotalItems"] == 6 and len(by_system["Records"]) == 6
    assert listing(server.url, COWORKERS, Coworker_Email="al@example.com")["TotalItems"] == 3
    # filters not named still work
    assert listing(server.url, CourseCompletedLesson_CourseMember=50001)["TotalItems"] == 2


def test_system_id_filter_is_honoured_by_default(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    httpx.post(server.url + COMPLETIONS, json={**NEW_COMPLETION, "SystemId": "reconciler:x"})
    assert listing(server.url, CourseCompletedLesson_SystemId="reconciler:x")["TotalItems"] == 1


# --- deleted coworkers and stale references --------------------------------------------------------

def test_a_deleted_coworker_is_listed_but_get_by_id_is_401_not_found(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(deleted_coworkers=frozenset({10002})))
    listed = listing(server.url, COWORKERS)
    gone = httpx.get(f"{server.url}{COWORKERS}/10002")
    alive = httpx.get(f"{server.url}{COWORKERS}/10001")
    assert 10002 in ids(listed) and listed["TotalItems"] == 3
    assert listing(server.url, COWORKERS, Coworker_Email="sal@example.com")["TotalItems"] == 1
    assert gone.status_code == 401 and gone.json() == "Not found"
    assert alive.status_code == 200 and alive.json()["Id"] == 10001
    enrol = httpx.post(server.url + MEMBERS, json={"CourseId": 102, "CoworkerId": 10002})
    assert enrol.status_code == 400 and enrol.json()["Errors"][0]["PropertyName"] == "CoworkerId"


def test_a_snapshot_row_marked_deleted_is_a_deleted_coworker(emulator: EmulatorFactory, tmp_path: Path) -> None:
    records: dict[str, list[dict[str, Any]]] = {
        "coworkers": [{"Id": 7, "FullName": "Gone", "Email": "x@example.com", "Deleted": True},
                      {"Id": 8, "FullName": "Live", "Email": "x@example.com", "Deleted": False}]}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot_document(records)))
    store = Store()
    load_seed(path, store)
    server = emulator(seed=None, store=store, settings=open_settings())
    both = listing(server.url, COWORKERS, Coworker_Email="x@example.com")
    assert ids(both) == [7, 8]
    assert httpx.get(f"{server.url}{COWORKERS}/7").status_code == 401
    assert httpx.get(f"{server.url}{COWORKERS}/8").status_code == 200


@pytest.mark.parametrize(("path", "body"), [
    (COMPLETIONS, {"CourseLessonId": 2001, "CourseMemberId": 1}),
    (COMPLETIONS, {"CourseLessonId": 9, "CourseMemberId": 50001}),
    (MEMBERS, {"CourseId": 1, "CoworkerId": 10001}),
    (MEMBERS, {"CourseId": 102, "CoworkerId": 1}),
    (MEMBERS, {"CourseId": 102, "CoworkerId": 10002}),  # deleted
])
def test_stale_references_can_answer_401_access_denied(emulator: EmulatorFactory, path: str,
                                                        body: dict[str, int]) -> None:
    server = emulator(settings=open_settings(stale_reference_status=401, deleted_coworkers=frozenset({10002})))
    before = listing(server.url, path)["TotalItems"]
    reply = httpx.post(server.url + path, json=body)
    assert reply.status_code == 401 and reply.json() == {"Message": "Access Denied."}
    assert listing(server.url, path)["TotalItems"] == before  # nothing was written


def test_stale_reference_401_leaves_other_validation_at_400(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(stale_reference_status=401))
    other_course = httpx.post(server.url + COMPLETIONS, json={"CourseLessonId": 2004, "CourseMemberId": 50001})
    missing_field = httpx.post(server.url + COMPLETIONS, json={"CourseLessonId": 2001})
    assert other_course.status_code == 400 and other_course.json()["Errors"][0]["PropertyName"] == "CourseLessonId"
    assert missing_field.status_code == 400


# --- outages and garbled reads ---------------------------------------------------------------------

def test_read_outage_is_503_html_for_list_reads_of_the_outage_collections_only(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(read_outage_seconds=60))
    down = httpx.get(server.url + COMPLETIONS)
    members = httpx.get(server.url + MEMBERS)
    by_id = httpx.get(f"{server.url}{COMPLETIONS}/900001")
    created = httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION)
    assert down.status_code == 503 and down.headers["Content-Type"].startswith("text/html")
    assert "<html" in down.text and len(down.content) < 500
    assert members.status_code == 200 and by_id.status_code == 200
    assert created.status_code == 200 and created.json()["WasSuccessful"]
    server.app.monotonic = lambda: server.app.started + 61  # the outage's minute has passed
    assert listing(server.url)["TotalItems"] == 6  # the write during the outage was done


def test_outage_collections_and_window_are_read_on_every_request(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    assert httpx.get(server.url + MEMBERS).status_code == 200
    server.app.settings.read_outage_seconds = 60
    server.app.settings.outage_collections = frozenset({"coursemembers"})
    assert httpx.get(server.url + MEMBERS).status_code == 503
    assert httpx.get(server.url + COMPLETIONS).status_code == 200
    server.app.settings.read_outage_seconds = 0
    assert httpx.get(server.url + MEMBERS).status_code == 200


def test_garble_html_is_a_200_maintenance_page(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="html"))
    reply = httpx.get(server.url + COMPLETIONS)
    assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/html")
    assert "Down for maintenance" in reply.text and reply.text.lstrip().startswith("<html")
    assert listing(server.url, MEMBERS)["TotalItems"] == 3  # other collections are untouched


def test_garble_truncated_is_a_prefix_of_the_real_body(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="truncated"))
    cut = httpx.get(server.url + COMPLETIONS)
    server.app.settings.garble = None
    whole = httpx.get(server.url + COMPLETIONS)
    assert cut.status_code == 200 and int(cut.headers["Content-Length"]) == len(cut.content)
    with pytest.raises(ValueError):
        json.loads(cut.content)
    assert len(cut.content) == len(whole.content) // 2 and whole.content.startswith(cut.content)
    assert whole.json()["TotalItems"] == 5


def test_garble_string_ids(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="string-ids"))
    records = listing(server.url)["Records"]
    assert [r["Id"] for r in records] == ["900001", "900002", "900003", "900004", "900005"]
    assert all(isinstance(r["CourseLessonId"], int) for r in records)


def test_garble_lying_total(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="lying-total"))
    first = listing(server.url, size=25)
    second = listing(server.url, size=25, page=2)
    assert first["TotalItems"] == 1005 and first["TotalPages"] == math.ceil(1005 / 25)
    assert len(first["Records"]) == 5 and first["HasNextPage"] is True
    assert second["Records"] == [] and second["HasNextPage"] is True
    assert listing(server.url, size=25, page=41)["HasNextPage"] is False


def test_garble_missing_field(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="missing-field"))
    records = listing(server.url)["Records"]
    assert len(records) == 5 and all("CourseLessonId" not in r and "CourseMemberId" in r for r in records)


def test_garble_endless_never_says_the_end(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(garble="endless"))
    pages = [listing(server.url, size=2, page=n) for n in (1, 3, 4, 50)]
    assert all(p["HasNextPage"] is True for p in pages)
    assert ids(pages[1]) == [900005] and ids(pages[2]) == [900005] and ids(pages[3]) == [900005]
    assert pages[3]["TotalItems"] == 5 and pages[3]["TotalPages"] == 3


# --- dates and ids --------------------------------------------------------------------------------

def _fixed_store(moment: datetime) -> Store:
    store = Store(clock=lambda: moment)
    load_seed(API_SEED, store)
    return store


def test_live_dates_are_whole_seconds_in_lists_and_precise_elsewhere(emulator: EmulatorFactory) -> None:
    store = _fixed_store(datetime(2026, 8, 27, 8, 29, 18, 776086, tzinfo=UTC))
    server = emulator(seed=None, store=store, settings=open_settings())
    listed = listing(server.url)["Records"][0]
    got = httpx.get(f"{server.url}{COMPLETIONS}/900001").json()
    created = httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION).json()
    assert listed["CreatedOn"] == listed["UpdatedOn"] == "2026-08-27T08:29:18Z"
    assert got["CreatedOn"] == got["UpdatedOn"] == "2026-08-27T08:29:18.776086Z"
    # (a record's create gives its 100 ns digit from its Id: the 7 digits seen live, a 0 trimmed)
    assert created["Value"]["CreatedOn"] == f"2026-08-27T08:29:18.776086{created['Value']['Id'] % 10}".rstrip("0") + "Z"
    assert created["UpdatedOn"] == "2026-08-27T08:29:18.776086Z"
    assert listing(server.url, from_CourseCompletedLesson_CreatedOn="2026-08-27T08:29")["TotalItems"] == 6
    assert listing(server.url, to_CourseCompletedLesson_CreatedOn="2026-08-27T08:28")["TotalItems"] == 0
    assert listing(server.url, to_CourseCompletedLesson_UpdatedOn="2026-08-27T08:29")["TotalItems"] == 6


def test_live_dates_trim_zeros_and_keep_a_seventh_digit(emulator: EmulatorFactory, tmp_path: Path) -> None:
    records = {"coworkers": [{"Id": 1, "FullName": "A", "Email": "a@x.io", "CreatedOn": "2026-08-27T08:29:18.7760862Z",
                              "UpdatedOn": "2026-08-27T08:29:18.5000000Z"},
                             {"Id": 2, "FullName": "B", "Email": "b@x.io", "CreatedOn": "2026-08-27T08:47:09Z",
                              "UpdatedOn": "2026-08-27T08:47:09.000Z"}]}
    path = tmp_path / "snap.json"
    path.write_text(json.dumps(snapshot_document(records)))
    store = Store()
    load_seed(path, store)
    server = emulator(seed=None, store=store, settings=open_settings())
    first = httpx.get(f"{server.url}{COWORKERS}/1").json()
    second = httpx.get(f"{server.url}{COWORKERS}/2").json()
    listed = listing(server.url, COWORKERS, orderBy="CreatedOn", dir="Descending")["Records"]
    assert (first["CreatedOn"], first["UpdatedOn"]) == ("2026-08-27T08:29:18.7760862Z", "2026-08-27T08:29:18.5Z")
    assert (second["CreatedOn"], second["UpdatedOn"]) == ("2026-08-27T08:47:09Z", "2026-08-27T08:47:09Z")
    assert [(r["Id"], r["CreatedOn"]) for r in listed] == [(2, "2026-08-27T08:47:09Z"), (1, "2026-08-27T08:29:18Z")]


def test_millis_dates_everywhere(emulator: EmulatorFactory) -> None:
    store = _fixed_store(datetime(2026, 8, 27, 8, 29, 18, 776086, tzinfo=UTC))
    server = emulator(seed=None, store=store, settings=open_settings(date_style="millis"))
    listed = listing(server.url)["Records"][0]
    got = httpx.get(f"{server.url}{COMPLETIONS}/900001").json()
    created = httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION).json()
    assert listed["CreatedOn"] == got["CreatedOn"] == created["Value"]["CreatedOn"] == "2026-08-27T08:29:18.776Z"
    assert created["UpdatedOn"] == "2026-08-27T08:29:18.776Z"


def test_live_list_dates_are_the_truncation_of_the_precise_ones(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    made = add_completions(server.url, 3)
    listed = {r["Id"]: r["CreatedOn"] for r in listing(server.url)["Records"]}
    for record_id in made:
        precise = httpx.get(f"{server.url}{COMPLETIONS}/{record_id}").json()["CreatedOn"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,6}[1-9])?Z", precise), precise
        assert listed[record_id] == precise[:19] + "Z"


def test_block_ids_are_not_in_creation_order_but_lists_are_in_id_order(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(id_allocation="blocks", rng_seed=5))
    made = add_completions(server.url, 10)
    assert len(set(made)) == 10 and made != sorted(made)
    assert any(later < earlier for earlier, later in itertools.pairwise(made))
    assert len({i // 10_000_000 for i in made}) >= 2  # widely spaced blocks
    listed = ids(listing(server.url, size=100))
    assert listed == sorted(listed) and set(made) <= set(listed)
    assert {r["Id"] for r in listing(server.url, CourseCompletedLesson_CourseMember=50001)["Records"]} == \
        {900001, *made}
    members = [httpx.post(server.url + MEMBERS, json={"CourseId": c, "CoworkerId": 10003}).json()["Value"]["Id"]
               for c in (101, 103, 104)]
    assert all(i % 10_000_000 >= 50_001 for i in members)  # each entity keeps its own range in every block


def test_sequential_ids_follow_creation_order(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    made = add_completions(server.url, 5)
    assert made == list(range(900006, 900011))


# --- throttling ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("wait", "text"), [(1.5, "1.5"), (1.43, "1.5"), (2.0, "2"), (0.01, "0.1"),
                                            (59.96, "60"), (86400, "86400")])
def test_wait_figures(wait: float, text: str) -> None:
    assert wait_figure(wait) == text


def test_429_says_the_real_wait_to_a_tenth_and_retry_after_in_whole_seconds(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=replace(Limits.off(), min_interval_ms=1500), require_auth=False,
                                        throttle_status=429))
    assert httpx.get(server.url + COMPLETIONS).status_code == 200
    throttled = httpx.get(server.url + COMPLETIONS)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    said = re.search(r"Wait (\d+(?:\.\d)?) seconds", throttled.text)
    assert said is not None and 1.0 < float(said.group(1)) <= 1.5 and "." in said.group(1)


@pytest.mark.parametrize("status", [409, 429])
def test_throttle_wait_advertises_a_day(emulator: EmulatorFactory, status: Literal[409, 429]) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=None, requests_per_minute=1),
                                        require_auth=False, throttle_status=status, throttle_wait_seconds=86400))
    assert httpx.get(server.url + COMPLETIONS).status_code == 200
    throttled = httpx.get(server.url + COMPLETIONS)
    assert throttled.status_code == status and throttled.headers["Retry-After"] == "86400"
    if status == 429:
        assert "Wait 86400 seconds" in throttled.text
    else:
        assert throttled.content == b""


def test_409_default_still_says_one_second(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=None, requests_per_minute=1),
                                        require_auth=False))
    httpx.get(server.url + COMPLETIONS)
    throttled = httpx.get(server.url + COMPLETIONS)
    assert (throttled.status_code, throttled.content, throttled.headers["Retry-After"]) == (409, b"", "1")


# --- token endpoint ---------------------------------------------------------------------------------

def _sign_in(url: str, **extra: str) -> dict[str, Any]:
    form = {"grant_type": "password", "username": "admin@example.com", "password": "admin-pw", **extra}
    reply = httpx.post(url + "/api/token", data=form)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def _refresh(url: str, token: str, client_id: str | None) -> httpx.Response:
    headers = {"client_id": client_id} if client_id is not None else {}
    return httpx.post(url + "/api/token", headers=headers, data={"grant_type": "refresh_token", "refresh_token": token})


def test_refresh_needs_the_client_id_header_given_at_sign_in(emulator: EmulatorFactory) -> None:
    server = emulator()
    first = _sign_in(server.url, client_id="my-app")
    missing = _refresh(server.url, first["refresh_token"], None)
    wrong = _refresh(server.url, first["refresh_token"], "admin@example.com")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_client"
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_client"
    right = _refresh(server.url, first["refresh_token"], "my-app")  # a refused refresh spent nothing
    assert right.status_code == 200
    again = _refresh(server.url, right.json()["refresh_token"], "my-app")
    assert again.status_code == 200


def test_client_id_with_a_hyphen_is_not_client_id(emulator: EmulatorFactory) -> None:
    server = emulator()
    first = _sign_in(server.url)
    reply = httpx.post(server.url + "/api/token", headers={"client-id": "admin@example.com"},
                       data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
    assert reply.status_code == 400 and reply.json()["error"] == "invalid_client"


def test_a_refresh_invalidates_every_earlier_refresh_token_of_that_client(emulator: EmulatorFactory) -> None:
    server = emulator()
    older, newer = _sign_in(server.url), _sign_in(server.url)
    other = _sign_in(server.url, client_id="other-app")
    assert _refresh(server.url, newer["refresh_token"], "admin@example.com").status_code == 200
    stale = _refresh(server.url, older["refresh_token"], "admin@example.com")
    assert stale.status_code == 400 and stale.json()["error"] == "invalid_grant"
    assert _refresh(server.url, other["refresh_token"], "other-app").status_code == 200


def test_client_id_header_reaches_the_app_in_process() -> None:
    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, Settings(limits=Limits.off()))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://local") as client:
        signed = client.post("/api/token", data={"grant_type": "password", "username": "admin@example.com",
                                                 "password": "admin-pw", "client_id": "cli"}).json()
        data = {"grant_type": "refresh_token", "refresh_token": signed["refresh_token"]}
        assert client.post("/api/token", data=data).json()["error"] == "invalid_client"
        assert client.post("/api/token", data=data, headers={"client_id": "cli"}).status_code == 200


def test_a_totp_code_is_accepted_once(emulator: EmulatorFactory) -> None:
    server = emulator()
    form = {"grant_type": "password", "username": "twofa@example.com", "password": "twofa-pw", "totp": "123456"}
    first = httpx.post(server.url + "/api/token", data=form)
    replay = httpx.post(server.url + "/api/token", data=form)
    assert first.status_code == 200
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_totp_can_be_reusable(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), totp_single_use=False))
    form = {"grant_type": "password", "username": "twofa@example.com", "password": "twofa-pw", "totp": "123456"}
    assert [httpx.post(server.url + "/api/token", data=form).status_code for _ in range(2)] == [200, 200]


def test_two_factor_without_a_code_is_two_factor_auth_check(emulator: EmulatorFactory) -> None:
    server = emulator()
    reply = httpx.post(server.url + "/api/token", data={"grant_type": "password", "username": "twofa@example.com",
                                                         "password": "twofa-pw"})
    assert reply.status_code == 400 and reply.json()["error"] == "two_factor_auth_check"


def test_an_account_that_must_reset_its_password_cannot_sign_in(emulator: EmulatorFactory) -> None:
    store = Store()
    load_seed(API_SEED, store)
    store.save_user(account("reset@example.com", "reset-pw", must_reset_password=True))
    server = emulator(seed=None, store=store)
    form = {"grant_type": "password", "username": "reset@example.com", "password": "reset-pw"}
    refused = httpx.post(server.url + "/api/token", data=form)
    wrong = httpx.post(server.url + "/api/token", data={**form, "password": "guess"})
    assert refused.status_code == 400 and refused.json()["error"] == "must_reset_password"
    assert "reset" in refused.json()["error_description"]
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"  # only the right password says so
    assert httpx.get(server.url + COMPLETIONS, auth=("reset@example.com", "reset-pw")).status_code == 401
    assert _sign_in(server.url)["token_type"] == "bearer"  # other accounts are unaffected


def test_serve_must_reset_password_flags_a_user_of_the_seed_or_of_user() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler", "emulator", "serve", "--port", "0", "--seed", str(API_SEED),
         "--limits", "off", "--user", "ops@example.com:ops-pw", "--must-reset-password", "ops@example.com",
         "--must-reset-password", "ADMIN@example.com"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().removeprefix("listening on ")
        assert url.startswith("http://127.0.0.1:"), url
        for email, password in (("ops@example.com", "ops-pw"), ("admin@example.com", "admin-pw")):
            reply = httpx.post(url + "/api/token", data={"grant_type": "password", "username": email,
                                                         "password": password})
            assert reply.status_code == 400 and reply.json()["error"] == "must_reset_password", email
        reader = {"grant_type": "password", "username": "reader@example.com", "password": "reader-pw"}
        assert httpx.post(url + "/api/token", data=reader).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    assert process.returncode == 0


def test_serve_must_reset_password_names_an_unknown_user() -> None:
    out, err = io.StringIO(), io.StringIO()
    code = main(["serve", "--port", "0", "--must-reset-password", "nobody@example.com"], stdout=out, stderr=err)
    assert code == 1 and "--must-reset-password nobody@example.com: no such user" in err.getvalue()
    assert out.getvalue() == ""  # refused before it listened


# --- the serve flags --------------------------------------------------------------------------------

def test_serve_flag_defaults_are_the_settings_defaults() -> None:
    assert settings_from(build_parser().parse_args(["serve"])) == Settings()


def test_serve_flags_set_every_variant() -> None:
    args = build_parser().parse_args([
        "serve", "--max-page-size", "50", "--report-requested-size", "--email-filter", "exact-case",
        "--ignore-filter", "CourseCompletedLesson_SystemId", "--ignore-filter", "Coworker_Email",
        "--deleted-coworker", "7", "--deleted-coworker", "9", "--stale-reference-status", "401",
        "--read-outage", "2.5", "--outage-collection", "coursemembers", "--outage-collection", "coworkers",
        "--garble", "lying-total", "--date-style", "millis", "--id-allocation", "blocks", "--create-value", "id",
        "--throttle-status", "429", "--throttle-wait", "86400", "--totp-reusable"])
    settings = settings_from(args)
    assert (settings.max_page_size, settings.report_requested_size, settings.email_filter) == (50, True, "exact-case")
    assert settings.ignored_filters == {"CourseCompletedLesson_SystemId", "Coworker_Email"}
    assert settings.deleted_coworkers == {7, 9} and settings.stale_reference_status == 401
    assert settings.read_outage_seconds == 2.5 and settings.outage_collections == {"coursemembers", "coworkers"}
    assert (settings.garble, settings.date_style, settings.id_allocation) == ("lying-total", "millis", "blocks")
    assert (settings.create_value, settings.throttle_wait_seconds, settings.totp_single_use) == ("id", 86400, False)
    assert set(ENTITIES) >= settings.outage_collections


@pytest.mark.parametrize(("flags", "message"), [(["--max-page-size", "0"], "--max-page-size"),
                                                 (["--throttle-wait", "0"], "--throttle-wait"),
                                                 (["--read-outage", "-1"], "--read-outage")])
def test_serve_refuses_bad_variant_values(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        settings_from(build_parser().parse_args(["serve", *flags]))


def test_a_seed_account_that_must_reset_its_password_stops_a_plan_with_one_line(
        emulator: EmulatorFactory, tmp_path: Path, demo: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The seed's `must_reset_password` (valid by the seed schema), and the product's answer to it over HTTP."""
    seed = tmp_path / "seed.yaml"
    seed.write_text(API_SEED.read_text(encoding="utf-8").replace("users:\n", "users:\n  - {email: reset@example.com, "
                    "password: reset-pw, admin: true, must_reset_password: true}\n", 1), encoding="utf-8")
    server = emulator(seed=seed, settings=Settings(limits=Limits.off()))
    (demo / "reconciler.yaml").write_text(f"target: {server.url}\n", encoding="utf-8")
    monkeypatch.setenv("NEXUDUS_USERNAME", "reset@example.com")
    monkeypatch.setenv("NEXUDUS_PASSWORD", "reset-pw")
    monkeypatch.delenv("NEXUDUS_TOKEN", raising=False)
    code, out, err = run_cli(capsys, "plan")
    assert code == 1, out + err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: ") and "must_reset_password" in line and "set a new password" in line
    assert "reset-pw" not in out + err


def test_one_runs_refresh_does_not_end_another_runs_session() -> None:
    """Two runs of one two-factor account at once (a CI plan beside a long apply): each signs in as a client of its
    own, so the refresh of one leaves the other's refresh token good (a refresh invalidates the earlier tokens of
    its client). With the username for both, the other could only stop for a new code."""
    from reconciler.client import NexudusClient
    from reconciler.config import Credentials
    from reconciler.emulator.app import User
    from reconciler.emulator.server import BackgroundServer

    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, Settings(limits=Limits.off(), token_ttl=1, totp_single_use=False),
                      users=[User("ops@example.com", User.hash_password("pw"), admin=True, totp="123456")])
    credentials = Credentials(username="ops@example.com", password="pw", totp="123456")
    with BackgroundServer(app) as server, httpx.Client() as first_http, httpx.Client() as second_http:
        apply_run = NexudusClient(server.url, first_http, credentials=credentials)
        plan_run = NexudusClient(server.url, second_http, credentials=credentials)
        assert apply_run.client_id != plan_run.client_id
        courses = apply_run.list_all("/api/content/courses")
        assert plan_run.list_all("/api/content/courses") == courses
        deadline = time.monotonic() + 1.2
        while time.monotonic() < deadline:  # both tokens expire
            time.sleep(0.1)
        assert plan_run.list_all("/api/content/courses") == courses  # renewed by refresh
        assert apply_run.list_all("/api/content/courses") == courses  # its own refresh token still good
    store.close()
