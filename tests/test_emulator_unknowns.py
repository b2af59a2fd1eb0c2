"""The emulator plays the answers only a live account settles (`reconciler doctor` measures each), over real
HTTP: SystemId dropped on create, SystemId absent from (or null in) list records, duplicate pairs refused with a
400, an enrolment delete blocked or cascading, batch get ignored, and a server clock that is off (its Date
header)."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest

from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.cli import build_parser, settings_from
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import InProcessTransport
from reconciler.emulator.store import Store

from .conftest import API_SEED, ROOT, EmulatorFactory

COMPLETIONS = "/api/content/coursecompletedlessons"
MEMBERS = "/api/content/coursemembers"
MARKED = {"CourseLessonId": 2003, "CourseMemberId": 50001, "SystemId": "reconciler:onboarding"}


def open_settings(**changes: Any) -> Settings:
    return Settings(limits=Limits.off(), require_auth=False, **changes)


def create(url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(url + COMPLETIONS, json=body)


def test_by_default_a_create_keeps_system_id_and_lists_show_it(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    reply = create(server.url, MARKED)
    new_id = reply.json()["Value"]["Id"]
    assert reply.json()["Value"]["SystemId"] == "reconciler:onboarding"
    assert httpx.get(f"{server.url}{COMPLETIONS}/{new_id}").json()["SystemId"] == "reconciler:onboarding"
    listed = httpx.get(server.url + COMPLETIONS, params={"size": 1000}).json()["Records"]
    assert all("SystemId" in r for r in listed)
    assert next(r for r in listed if r["Id"] == new_id)["SystemId"] == "reconciler:onboarding"


def test_drop_system_id_keeps_the_record_but_not_its_system_id(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(keep_system_id=False))
    reply = create(server.url, MARKED)
    assert reply.status_code == 200 and reply.json()["WasSuccessful"] is True
    new_id = reply.json()["Value"]["Id"]
    assert reply.json()["Value"]["SystemId"] is None
    assert httpx.get(f"{server.url}{COMPLETIONS}/{new_id}").json()["SystemId"] is None
    filtered = httpx.get(server.url + COMPLETIONS, params={"CourseCompletedLesson_SystemId": "reconciler:onboarding"})
    assert filtered.json()["TotalItems"] == 0


def test_system_id_absent_from_list_records_but_kept_by_get(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(system_id_in_lists="absent"))
    new_id = create(server.url, MARKED).json()["Value"]["Id"]
    for path in (COMPLETIONS, "/api/content/coursemembers", "/api/spaces/coworkers"):
        records = httpx.get(server.url + path, params={"size": 1000}).json()["Records"]
        assert records and all("SystemId" not in r for r in records)
    assert httpx.get(f"{server.url}{COMPLETIONS}/{new_id}").json()["SystemId"] == "reconciler:onboarding"
    # The server still filters on it: only list records leave it out.
    filtered = httpx.get(server.url + COMPLETIONS, params={"CourseCompletedLesson_SystemId": "reconciler:onboarding"})
    assert [r["Id"] for r in filtered.json()["Records"]] == [new_id]


def test_system_id_null_in_list_records_but_kept_by_get_and_create(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(system_id_in_lists="null"))
    made = create(server.url, MARKED).json()["Value"]
    assert made["SystemId"] == "reconciler:onboarding"
    for path in (COMPLETIONS, "/api/content/coursemembers", "/api/spaces/coworkers"):
        records = httpx.get(server.url + path, params={"size": 1000}).json()["Records"]
        assert records and all("SystemId" in r and r["SystemId"] is None for r in records)
    assert httpx.get(f"{server.url}{COMPLETIONS}/{made['Id']}").json()["SystemId"] == "reconciler:onboarding"
    filtered = httpx.get(server.url + COMPLETIONS, params={"CourseCompletedLesson_SystemId": "reconciler:onboarding"})
    assert [r["Id"] for r in filtered.json()["Records"]] == [made["Id"]]
    assert filtered.json()["Records"][0]["SystemId"] is None  # found by it, yet not shown


def test_duplicates_are_accepted_by_default(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    first, second = create(server.url, MARKED), create(server.url, MARKED)
    assert first.status_code == second.status_code == 200
    assert first.json()["Value"]["Id"] != second.json()["Value"]["Id"]


def test_refuse_duplicates_answers_the_validation_envelope(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(refuse_duplicates=True))
    assert create(server.url, MARKED).status_code == 200
    again = create(server.url, {**MARKED, "SystemId": "another"})
    assert again.status_code == 400
    body = again.json()
    assert body["WasSuccessful"] is False and body["Value"] is None
    assert body["Message"] == "CourseLessonId: The course member has already completed this lesson."
    assert body["Errors"] == [{"AttemptedValue": 2003, "Message": "The course member has already completed this "
                               "lesson.", "PropertyName": "CourseLessonId"}]
    # Another lesson of the same member, and the pair once its completion is deleted, are fine.
    assert create(server.url, {**MARKED, "CourseLessonId": 2002}).status_code == 200
    taken = [r["Id"] for r in httpx.get(server.url + COMPLETIONS, params={
        "CourseCompletedLesson_CourseMember": 50001, "size": 100}).json()["Records"] if r["CourseLessonId"] == 2003]
    for record_id in taken:
        assert httpx.delete(f"{server.url}{COMPLETIONS}/{record_id}").status_code == 200
    assert create(server.url, MARKED).status_code == 200


def members_completions(url: str, member_id: int) -> list[int]:
    body = httpx.get(url + COMPLETIONS, params={"CourseCompletedLesson_CourseMember": member_id, "size": 100}).json()
    return [r["Id"] for r in body["Records"]]


def test_deleting_an_enrolment_with_completions_is_blocked_by_default(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    done = members_completions(server.url, 50001)
    reply = httpx.delete(f"{server.url}{MEMBERS}/50001")
    assert reply.status_code == 200
    body = reply.json()
    assert body["WasSuccessful"] is False and body["Value"] is None and body["Status"] == 200
    assert body["Message"] == "You must delete all CourseCompletedLessons using this record before you can delete it."
    assert httpx.get(f"{server.url}{MEMBERS}/50001").status_code == 200  # nothing was deleted
    assert done and members_completions(server.url, 50001) == done
    for record_id in done:  # once its completions are gone, the enrolment goes
        assert httpx.delete(f"{server.url}{COMPLETIONS}/{record_id}").json()["WasSuccessful"] is True
    assert httpx.delete(f"{server.url}{MEMBERS}/50001").json()["WasSuccessful"] is True


def test_enrolment_delete_can_cascade_to_its_completions(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(enrolment_delete="cascade"))
    done = members_completions(server.url, 50002)
    others = httpx.get(server.url + COMPLETIONS, params={"size": 100}).json()["TotalItems"] - len(done)
    reply = httpx.delete(f"{server.url}{MEMBERS}/50002")
    assert reply.status_code == 200 and reply.json()["WasSuccessful"] is True
    assert reply.json()["Message"] == "CourseMember was successfully deleted."
    assert httpx.get(f"{server.url}{MEMBERS}/50002").status_code == 404
    assert len(done) == 3 and members_completions(server.url, 50002) == []
    assert all(httpx.get(f"{server.url}{COMPLETIONS}/{i}").status_code == 404 for i in done)
    assert httpx.get(server.url + COMPLETIONS).json()["TotalItems"] == others


def test_batch_get_can_be_ignored_like_any_unknown_query_name(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(batch_get="ignored"))
    add = [create(server.url, {"CourseLessonId": 2002, "CourseMemberId": 50001}) for _ in range(25)]
    assert all(reply.status_code == 200 for reply in add)  # 30 completions: more than a default page
    reply = httpx.get(server.url + COMPLETIONS + "?id=[900001,900003,1]")
    body = reply.json()
    assert reply.status_code == 200 and isinstance(body, dict)
    assert body["TotalItems"] == 30 and body["CurrentPage"] == 1 and body["CurrentPageSize"] == 25
    assert len(body["Records"]) == 25 and body["Records"][0]["Id"] == 900001
    filtered = httpx.get(server.url + COMPLETIONS + "?id=[900001]&CourseCompletedLesson_CourseMember=50003&size=5")
    assert [r["CourseMemberId"] for r in filtered.json()["Records"]] == [50003]  # the other parameters still count
    server.app.settings.batch_get = "honoured"
    assert [r["Id"] for r in httpx.get(server.url + COMPLETIONS + "?id=[900001,900003,1]").json()] == [900001, 900003]


def test_every_answer_carries_one_date_header_from_the_server_clock(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    for reply in (httpx.get(server.url + COMPLETIONS), httpx.get(server.url + COMPLETIONS + "/1"),
                  httpx.post(server.url + "/api/token", data={"grant_type": "password"})):
        dates = reply.headers.get_list("Date")
        assert len(dates) == 1, reply.headers
        assert abs(parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 3


@pytest.mark.parametrize("offset", [600.0, -45.0])
def test_clock_offset_moves_the_date_header(emulator: EmulatorFactory, offset: float) -> None:
    server = emulator(settings=open_settings(clock_offset_seconds=offset))
    date = httpx.get(server.url + COMPLETIONS).headers["Date"]
    assert abs(parsedate_to_datetime(date).timestamp() - time.time() - offset) < 3


def test_the_in_process_transport_carries_the_date_header_too() -> None:
    store = Store()
    load_seed(API_SEED, store)
    app = EmulatorApp(store, open_settings(clock_offset_seconds=-120))
    with httpx.Client(transport=InProcessTransport(app), base_url="http://local") as client:
        date = client.get(COMPLETIONS).headers["Date"]
    assert abs(parsedate_to_datetime(date).timestamp() - time.time() + 120) < 3
    assert app.requests_served == {"GET coursecompletedlessons": 1}
    store.close()


def test_requests_are_counted_by_route(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    app: EmulatorApp = server.app
    create(server.url, MARKED)
    httpx.get(server.url + COMPLETIONS)
    httpx.get(server.url + "/api/spaces/coworkers/10001")
    httpx.post(server.url + "/api/token", data={"grant_type": "password"})
    assert app.requests_served == {"POST coursecompletedlessons": 1, "GET coursecompletedlessons": 1,
                                   "GET coworkers": 1, "POST token": 1}


def test_serve_flags_set_the_new_variants() -> None:
    args = build_parser().parse_args(["serve", "--drop-system-id", "--no-system-id-in-lists",
                                      "--refuse-duplicates", "--clock-offset", "-90"])
    settings = settings_from(args)
    assert (settings.keep_system_id, settings.system_id_in_lists, settings.refuse_duplicates) == (False, "absent", True)
    assert settings.clock_offset_seconds == -90
    assert settings_from(build_parser().parse_args(["serve"])) == Settings()
    for word in ("yes", "absent", "null"):
        chosen = settings_from(build_parser().parse_args(["serve", "--system-id-in-lists", word]))
        assert chosen.system_id_in_lists == word
    chosen = settings_from(build_parser().parse_args(["serve", "--enrolment-delete", "cascade",
                                                      "--batch-get", "ignored"]))
    assert (chosen.enrolment_delete, chosen.batch_get) == ("cascade", "ignored")


def test_the_new_flags_are_documented() -> None:
    text = (ROOT / "docs" / "emulator.md").read_text()
    for flag, field_name in (("--drop-system-id", "keep_system_id"),
                             ("--system-id-in-lists yes\\|absent\\|null", "system_id_in_lists"),
                             ("--refuse-duplicates", "refuse_duplicates"),
                             ("--enrolment-delete blocked\\|cascade", "enrolment_delete"),
                             ("--batch-get honoured\\|ignored", "batch_get"),
                             ("--clock-offset SECONDS", "clock_offset_seconds")):
        assert f"| `{flag}` (`{field_name}`) |" in text
