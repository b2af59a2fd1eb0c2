"""The emulator against nexudus-api.md, over real HTTP: auth, envelopes, paging, filters, writes, errors."""

from __future__ import annotations

import base64
import json
import re
import time

import httpx
import pytest

from reconciler.emulator.app import OOPS, Settings
from reconciler.emulator.limits import Limits

from .conftest import EmulatorFactory

COMPLETIONS = "/api/content/coursecompletedlessons"
MEMBERS = "/api/content/coursemembers"
LESSONS = "/api/content/courselessons"
ENVELOPE_KEYS = {"Records", "CurrentPageSize", "CurrentPage", "CurrentOrderField", "CurrentSortDirection",
                 "FirstItem", "HasNextPage", "HasPreviousPage", "LastItem", "PageNumber", "PageSize",
                 "TotalItems", "TotalPages"}


def token(client: httpx.Client, email: str = "admin@example.com", password: str = "admin-pw", **extra: str) -> str:
    reply = client.post("/api/token", data={"grant_type": "password", "username": email, "password": password,
                                            **extra})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["access_token"])


def admin(base_url: str) -> httpx.Client:
    with httpx.Client(base_url=base_url) as auth:
        bearer = token(auth)
    return httpx.Client(base_url=base_url, headers={"Accept": "application/json", "Authorization": f"Bearer {bearer}"})


def basic(email: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{email}:{password}".encode()).decode()


# --- auth ----------------------------------------------------------------------------------------

def test_token_password_grant_gives_a_bearer_token(emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client(base_url=server.url) as client:
        reply = client.post("/api/token", data={"grant_type": "password", "username": "ADMIN@example.com",
                                                "password": "admin-pw"})
        body = reply.json()
        assert reply.status_code == 200
        assert body["token_type"] == "bearer" and body["expires_in"] == 604799
        assert body["access_token"] and body["refresh_token"]
        listed = client.get(COMPLETIONS, headers={"Authorization": f"Bearer {body['access_token']}"})
        assert listed.status_code == 200


def test_token_json_body_is_unsupported_grant_type(emulator: EmulatorFactory) -> None:
    server = emulator()
    reply = httpx.post(server.url + "/api/token",
                       json={"grant_type": "password", "username": "admin@example.com", "password": "admin-pw"})
    assert reply.status_code == 400
    assert reply.json() == {"error": "unsupported_grant_type"}


def test_token_bad_password_is_invalid_grant(emulator: EmulatorFactory) -> None:
    server = emulator()
    reply = httpx.post(server.url + "/api/token",
                       data={"grant_type": "password", "username": "admin@example.com", "password": "wrong"})
    assert reply.status_code == 400
    assert reply.json() == {"error": "invalid_grant", "error_description": "The user name or password is incorrect."}


def test_token_totp_required_when_the_account_has_two_factor(emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client(base_url=server.url) as client:
        without = client.post("/api/token", data={"grant_type": "password", "username": "twofa@example.com",
                                                  "password": "twofa-pw"})
        assert without.status_code == 400 and without.json()["error"] == "two_factor_auth_check"
        wrong = client.post("/api/token", data={"grant_type": "password", "username": "twofa@example.com",
                                                "password": "twofa-pw", "totp": "654321"})
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert token(client, "twofa@example.com", "twofa-pw", totp="123456")


def test_refresh_grant_issues_a_new_token_once(emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client(base_url=server.url) as client:
        first = client.post("/api/token", data={"grant_type": "password", "username": "admin@example.com",
                                                "password": "admin-pw"}).json()
        same_client = {"client_id": "admin@example.com"}  # no client_id at sign-in: the username stands for it
        refreshed = client.post("/api/token", headers=same_client,
                                data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
        assert refreshed.status_code == 200
        new = refreshed.json()["access_token"]
        assert new != first["access_token"]
        assert client.get(COMPLETIONS, headers={"Authorization": f"Bearer {new}"}).status_code == 200
        again = client.post("/api/token", headers=same_client,
                            data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]})
        assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_expired_token_is_401(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), token_ttl=1))
    with httpx.Client(base_url=server.url) as client:
        bearer = {"Authorization": f"Bearer {token(client)}"}
        assert client.get(COMPLETIONS, headers=bearer).status_code == 200
        time.sleep(1.1)
        assert client.get(COMPLETIONS, headers=bearer).status_code == 401


def test_basic_auth_and_missing_or_bad_credentials(emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client(base_url=server.url) as client:
        assert client.get(COMPLETIONS, headers={"Authorization": basic("admin@example.com", "admin-pw")}) \
            .status_code == 200
        for headers in ({}, {"Authorization": basic("admin@example.com", "nope")},
                        {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic %%%"}):
            reply = client.get(COMPLETIONS, headers=headers)
            assert reply.status_code == 401
            assert reply.json() == {"Message": "Authorization has been denied for this request."}


def test_roles_allow_only_what_they_name_and_the_rest_is_401(emulator: EmulatorFactory) -> None:
    server = emulator()
    with httpx.Client(base_url=server.url) as client:
        reader = {"Authorization": basic("reader@example.com", "reader-pw")}
        assert client.get(COMPLETIONS, headers=reader).status_code == 200
        assert client.get(COMPLETIONS + "/900001", headers=reader).status_code == 401  # needs -Read
        assert client.get(MEMBERS, headers=reader).status_code == 401
        assert client.post(COMPLETIONS, headers=reader, json={}).status_code == 401
        writer = {"Authorization": basic("writer@example.com", "writer-pw")}
        created = client.post(COMPLETIONS, headers=writer, json={"CourseLessonId": 2002, "CourseMemberId": 50001})
        assert created.status_code == 200 and created.json()["WasSuccessful"] is True
        assert client.delete(COMPLETIONS + f"/{created.json()['Value']['Id']}", headers=writer).status_code == 401


# --- lists ---------------------------------------------------------------------------------------

def test_list_envelope_has_all_thirteen_keys_and_defaults(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        body = client.get(COMPLETIONS).json()
    assert set(body) == ENVELOPE_KEYS
    assert body["CurrentPage"] == 1 and body["CurrentPageSize"] == 25 and body["PageSize"] == 25
    assert body["CurrentOrderField"] == "Id" and body["CurrentSortDirection"] == 1
    assert body["TotalItems"] == 5 and body["TotalPages"] == 1 and body["HasNextPage"] is False
    assert body["FirstItem"] == 1 and body["LastItem"] == 5
    record = body["Records"][0]
    for key in ("Id", "CourseLessonId", "CourseLessonTitle", "CourseMemberId", "CourseMemberCoworkerFullName",
                "CourseMemberCoworkerCompanyName", "CourseMemberCoworkerTeamNames", "UniqueId", "CreatedOn",
                "UpdatedOn", "UpdatedBy", "IsNew", "SystemId", "ToStringText"):
        assert key in record
    assert record["CourseLessonTitle"] == "Safety" and record["CourseMemberCoworkerFullName"] == "Al Smith"


def test_modern_envelope_leaves_out_page_number_and_size(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), envelope="modern", sort_direction_style="text"))
    with admin(server.url) as client:
        body = client.get(COMPLETIONS).json()
    assert set(body) == ENVELOPE_KEYS - {"PageNumber", "PageSize"}
    assert body["CurrentSortDirection"] == "ASC"


def _seed_many(client: httpx.Client, count: int) -> None:
    for _ in range(count):
        assert client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001}).json()["WasSuccessful"]


def test_paging_and_page_past_the_end(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        _seed_many(client, 7)  # 12 in all
        first = client.get(COMPLETIONS, params={"page": 1, "size": 5}).json()
        third = client.get(COMPLETIONS, params={"page": 3, "size": 5}).json()
        past = client.get(COMPLETIONS, params={"page": 4, "size": 5}).json()
    assert first["TotalPages"] == 3 and first["HasNextPage"] is True and first["HasPreviousPage"] is False
    assert len(third["Records"]) == 2 and third["HasNextPage"] is False and third["FirstItem"] == 11
    assert past["Records"] == [] and past["HasNextPage"] is False
    ids = [r["Id"] for r in first["Records"]]
    assert ids == sorted(ids)


def test_page_size_is_capped_at_1000(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        body = client.get(COMPLETIONS, params={"size": 5000}).json()
    assert body["CurrentPageSize"] == 1000 and body["PageSize"] == 1000


def test_page_number_and_page_size_query_names_are_ignored(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        _seed_many(client, 30)
        body = client.get(COMPLETIONS, params={"PageNumber": 2, "PageSize": 100, "Bogus": "x"}).json()
    assert body["CurrentPage"] == 1 and body["CurrentPageSize"] == 25 and len(body["Records"]) == 25


@pytest.mark.parametrize(("direction", "descending"), [
    ("1", False), ("-1", True), ("0", False), ("Ascending", False), ("Descending", True), ("", False)])
def test_dir_forms(emulator: EmulatorFactory, direction: str, descending: bool) -> None:
    server = emulator()
    with admin(server.url) as client:
        body = client.get(COMPLETIONS, params={"orderby": "Id", "dir": direction}).json()
    ids = [r["Id"] for r in body["Records"]]
    assert ids == sorted(ids, reverse=descending)


def test_dir_one_can_mean_descending_as_a_setting(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), dir_one_means="descending"))
    with admin(server.url) as client:
        body = client.get(COMPLETIONS, params={"orderBy": "Id", "dir": "1"}).json()
        ascending = client.get(COMPLETIONS, params={"orderBy": "Id", "dir": "0"}).json()
    ids = [r["Id"] for r in body["Records"]]
    assert ids == sorted(ids, reverse=True)
    # The envelope says the direction in the same encoding (0 ascending, 1 descending), not as 1/-1.
    assert (body["CurrentSortDirection"], ascending["CurrentSortDirection"]) == (1, 0)


def test_order_by_another_field(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        body = client.get(COMPLETIONS, params={"orderBy": "CourseLessonTitle", "dir": "Descending"}).json()
    titles = [r["CourseLessonTitle"].casefold() for r in body["Records"]]
    assert titles == sorted(titles, reverse=True) and body["CurrentOrderField"] == "CourseLessonTitle"


@pytest.mark.parametrize(("path", "params", "expected"), [
    (COMPLETIONS, {"CourseCompletedLesson_CourseMember": "50001"}, 1),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson": "2001"}, 2),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson_Title": "safety"}, 3),  # substring, any case
    (COMPLETIONS, {"CourseCompletedLesson_CourseMember_Coworker_FullName": "AL"}, 4),  # Al, and Sal's 3
    (COMPLETIONS, {"CourseCompletedLesson_CourseMember_Coworker_CompanyName": "corp"}, 3),
    (COMPLETIONS, {"CourseCompletedLesson_CourseMember_Coworker_TeamNames": "support"}, 3),
    (COMPLETIONS, {"CourseCompletedLesson_CourseLesson_Title": "SÉCURITÉ"}, 1),
    ("/api/content/courses", {"Course_Title": "onboarding"}, 2),
    ("/api/content/courselessons", {"CourseLesson_Course": "101"}, 3),
    ("/api/content/courselessons", {"CourseLesson_Course_Title": "2026"}, 2),
    ("/api/content/courselessons", {"CourseLesson_Title": "Safety"}, 2),
    (MEMBERS, {"CourseMember_Course": "101"}, 2),
    (MEMBERS, {"CourseMember_Coworker": "10001"}, 1),
    (MEMBERS, {"CourseMember_Course_Title": "Onboarding"}, 3),
    (MEMBERS, {"CourseMember_Coworker_FullName": "zoë"}, 1),
    (MEMBERS, {"CourseMember_Coworker_TeamNames": "sales"}, 2),
    ("/api/spaces/coworkers", {"Coworker_Email": "al@example.com"}, 1),  # exact: not sal@ (seen live)
    ("/api/spaces/coworkers", {"coworker_EMAIL": "al@example.com"}, 1),  # query names ignore case
    ("/api/spaces/coworkers", {"Coworker_Email": "ZOE.BRONTE@EXAMPLE.COM"}, 1),
    ("/api/spaces/coworkers", {"Coworker_FullName": "smith"}, 1),
    ("/api/spaces/coworkers", {"Id": "10002"}, 1),
])
def test_filters(emulator: EmulatorFactory, path: str, params: dict[str, str], expected: int) -> None:
    server = emulator()
    with admin(server.url) as client:
        body = client.get(path, params=params).json()
    assert body["TotalItems"] == expected, body["Records"]


def test_unique_id_and_system_id_filters(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        made = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001,
                                              "SystemId": "reconciler:onboarding"}).json()["Value"]["Id"]
        record = client.get(f"{COMPLETIONS}/{made}").json()
        by_unique = client.get(COMPLETIONS, params={"UniqueId": record["UniqueId"]}).json()
        by_system = client.get(COMPLETIONS, params={"CourseCompletedLesson_SystemId": "RECONCILER:"}).json()
    assert [r["Id"] for r in by_unique["Records"]] == [made]
    assert [r["Id"] for r in by_system["Records"]] == [made]
    assert record["SystemId"] == "reconciler:onboarding"


def test_date_range_filters(emulator: EmulatorFactory) -> None:
    minute = time.strftime("%Y-%m-%dT%H:%M", time.gmtime())  # taken before the records are made
    before = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 3600))
    server = emulator()
    with admin(server.url) as client:
        since = client.get(COMPLETIONS, params={"from_CourseCompletedLesson_CreatedOn": minute}).json()
        assert since["TotalItems"] == 5
        assert client.get(COMPLETIONS, params={"to_CourseCompletedLesson_CreatedOn": before}).json()["TotalItems"] == 0
        later = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 60))
        assert client.get(COMPLETIONS, params={"to_CourseCompletedLesson_UpdatedOn": later}).json()["TotalItems"] == 5
        bad = client.get(COMPLETIONS, params={"from_CourseCompletedLesson_CreatedOn": "yesterday"})
    assert bad.status_code == 400 and bad.json()["Errors"][0]["PropertyName"] == "from_CourseCompletedLesson_CreatedOn"


def test_a_non_numeric_id_filter_is_a_400_in_the_validation_shape(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        reply = client.get(COMPLETIONS, params={"CourseCompletedLesson_CourseMember": "abc"})
    assert reply.status_code == 400
    body = reply.json()
    assert body["WasSuccessful"] is False and body["Value"] is None
    assert body["Errors"][0]["PropertyName"] == "CourseCompletedLesson_CourseMember"


# --- get, batch get, 404 -------------------------------------------------------------------------

def test_get_by_id_is_the_bare_full_record_and_unknown_is_404(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        record = client.get(f"{COMPLETIONS}/900001").json()
        missing = client.get(f"{COMPLETIONS}/1")
        garbage = client.get(f"{COMPLETIONS}/abc")
        unknown_entity = client.get("/api/content/nothing")
    assert record["Id"] == 900001 and "Records" not in record
    assert "CustomFields" in record and "LocalizationDetails" in record
    for reply in (missing, garbage, unknown_entity):
        assert reply.status_code == 404 and reply.json() == "Not found"


def test_lesson_lists_leave_out_contents_unlock_and_completion_type_which_get_by_id_returns(
        emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        listed = client.get(LESSONS, params={"CourseLesson_Course": 101}).json()["Records"]
        got = client.get(f"{LESSONS}/{listed[0]['Id']}").json()
    details = {"LessonContents", "UnlockType", "CompletionType"}
    assert len(listed) == 3 and all(details.isdisjoint(r) for r in listed)
    assert all({"Id", "CourseId", "CourseTitle", "Title", "DisplayOrder", "Active", "SectionTitle"} <= set(r)
               for r in listed)
    assert details <= set(got) and (got["UnlockType"], got["CompletionType"]) == ("Always", "Manual")
    assert {k: v for k, v in got.items() if k not in details | {"LocalizationDetails", "CustomFields",
                                                                 "CreatedOn", "UpdatedOn"}} == \
        {k: v for k, v in listed[0].items() if k not in ("CreatedOn", "UpdatedOn")}


def test_batch_get_returns_an_array(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        reply = client.get(COMPLETIONS + "?id=[900001,900003,1]")
        bad = client.get(COMPLETIONS + "?id=[oops")
    assert [r["Id"] for r in reply.json()] == [900001, 900003]
    assert bad.status_code == 400


# --- writes --------------------------------------------------------------------------------------

def test_create_returns_the_command_envelope_and_stores_system_id(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        reply = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001,
                                               "SystemId": "reconciler:x"})
        body = reply.json()
        stored = client.get(f"{COMPLETIONS}/{body['Value']['Id']}").json()
        member = client.get(f"{MEMBERS}/50001").json()
    assert reply.status_code == 200 and body["WasSuccessful"] is True and body["Status"] == 200
    assert set(body) == {"Status", "Message", "Value", "OpenInDialog", "OpenInWindow", "RedirectURL", "JavaScript",
                         "UpdatedOn", "UpdatedBy", "Errors", "WasSuccessful"}
    assert body["Value"]["Id"] == stored["Id"] and body["UpdatedBy"] == "admin@example.com"
    assert body["Value"] == stored  # Value is the whole created record (seen live)
    assert stored["SystemId"] == "reconciler:x" and stored["CourseLessonTitle"] == "Welcome"
    assert member["LastCompletedLessonId"] == 2003


def test_create_value_can_be_the_id_only_as_the_docs_say(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), create_value="id"))
    with admin(server.url) as client:
        body = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001}).json()
    assert set(body["Value"]) == {"Id"} and body["Value"]["Id"] > 900005


def test_completions_are_not_unique_per_member_and_lesson(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        for _ in range(2):
            assert client.post(COMPLETIONS, json={"CourseLessonId": 2001, "CourseMemberId": 50001}).status_code == 200
        found = client.get(COMPLETIONS, params={"CourseCompletedLesson_CourseMember": 50001}).json()
    assert [r["CourseLessonId"] for r in found["Records"]] == [2001, 2001, 2001]


@pytest.mark.parametrize(("body", "prop"), [
    ({"CourseLessonId": 2001}, "CourseMemberId"),
    ({"CourseLessonId": 2001, "CourseMemberId": 1}, "CourseMemberId"),
    ({"CourseLessonId": 9, "CourseMemberId": 50001}, "CourseLessonId"),
    ({"CourseLessonId": "x", "CourseMemberId": 50001}, "CourseLessonId"),
    ({"CourseLessonId": True, "CourseMemberId": 50001}, "CourseLessonId"),
    ({"CourseLessonId": 2004, "CourseMemberId": 50001}, "CourseLessonId"),  # a lesson of another course
    ({"CourseLessonId": 2001, "CourseMemberId": 50001, "SystemId": 5}, "SystemId"),
])
def test_create_validation_errors(emulator: EmulatorFactory, body: dict[str, object], prop: str) -> None:
    server = emulator()
    with admin(server.url) as client:
        reply = client.post(COMPLETIONS, json=body)
    assert reply.status_code == 400
    answer = reply.json()
    assert answer["WasSuccessful"] is False and answer["Value"] is None
    assert answer["Message"].startswith(f"{prop}: ")
    assert answer["Errors"][0]["PropertyName"] == prop and set(answer["Errors"][0]) == {
        "AttemptedValue", "Message", "PropertyName"}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_malformed_bodies_get_the_error_shape_not_a_traceback(emulator: EmulatorFactory, raw: bytes) -> None:
    server = emulator()
    with admin(server.url) as client:
        reply = client.post(COMPLETIONS, content=raw, headers={"Content-Type": "application/json"})
    assert reply.status_code == 400
    assert reply.json()["WasSuccessful"] is False and "Traceback" not in reply.text


def test_delete_then_delete_again_is_404(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        first = client.delete(f"{COMPLETIONS}/900001")
        second = client.delete(f"{COMPLETIONS}/900001")
    assert first.status_code == 200 and first.json()["WasSuccessful"] is True
    assert second.status_code == 404 and second.json() == "Not found"


def test_enrol_and_unenrol_course_members(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        made = client.post(MEMBERS, json={"CourseId": 102, "CoworkerId": 10001})
        again = client.post(MEMBERS, json={"CourseId": 102, "CoworkerId": 10001})
        member = client.get(f"{MEMBERS}/{made.json()['Value']['Id']}").json()
        with_progress = client.delete(f"{MEMBERS}/50001")
        removed = client.delete(f"{MEMBERS}/{member['Id']}")
    assert made.json()["WasSuccessful"] and member["CourseTitle"] == "Onboarding 2026"
    assert member["CoworkerFullName"] == "Al Smith" and member["CoworkerTeamNames"] == "Sales"
    assert again.status_code == 400 and again.json()["Errors"][0]["PropertyName"] == "CoworkerId"
    assert with_progress.status_code == 200 and with_progress.json()["WasSuccessful"] is False
    assert removed.status_code == 200 and removed.json()["WasSuccessful"] is True


def test_read_only_entities_refuse_writes(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        assert client.post("/api/content/courses", json={"Title": "x"}).status_code == 405
        assert client.put("/api/content/courses", json={"Id": 101, "Title": "x"}).status_code == 405


def test_update_is_a_put_of_the_full_record_and_clears_what_it_leaves_out(emulator: EmulatorFactory) -> None:
    """nexudus-api.md, Writing: `PUT /api/content/coursecompletedlessons` (no Id in the URL), the full record with
    `Id` in the body; fields left out are cleared. It answers the command envelope, and is a write."""
    server = emulator()
    with admin(server.url) as client:
        made = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001,
                                              "SystemId": "reconciler:x"}).json()["Value"]
        time.sleep(0.01)
        reply = client.put(COMPLETIONS, json={"Id": made["Id"], "CourseLessonId": 2002, "CourseMemberId": 50001})
        after = client.get(f"{COMPLETIONS}/{made['Id']}").json()
        unknown = client.put(COMPLETIONS, json={"Id": 12345, "CourseLessonId": 2002, "CourseMemberId": 50001})
        no_id = client.put(COMPLETIONS, json={"CourseLessonId": 2002, "CourseMemberId": 50001})
        no_member = client.put(COMPLETIONS, json={"Id": made["Id"], "CourseLessonId": 2002})
        with_id = client.put(f"{COMPLETIONS}/{made['Id']}", json={"Id": made["Id"], "CourseLessonId": 2002,
                                                                 "CourseMemberId": 50001})
        listed = client.get(COMPLETIONS, params={"CourseCompletedLesson_CourseLesson": 2002}).json()["Records"]
    body = reply.json()
    assert reply.status_code == 200 and body["WasSuccessful"] is True and body["Value"]["Id"] == made["Id"]
    assert body["Message"] == "CourseCompletedLesson was successfully updated."
    assert after["CourseLessonId"] == 2002 and after["SystemId"] is None  # left out: cleared
    assert after["CreatedOn"] == made["CreatedOn"] and after["UniqueId"] == made["UniqueId"]
    assert after["UpdatedOn"] > made["UpdatedOn"]
    assert [r["Id"] for r in listed].count(made["Id"]) == 1
    assert unknown.status_code == 404 and unknown.json() == "Not found"
    assert no_id.status_code == 400 and no_id.json()["Errors"][0]["PropertyName"] == "Id"
    assert no_member.status_code == 400 and no_member.json()["Errors"][0]["PropertyName"] == "CourseMemberId"
    assert with_id.status_code == 405  # no Id in the URL
    assert ("PUT", COMPLETIONS) in [(method, path) for method, path, _ in server.app.writes_seen]


def test_an_update_needs_the_edit_role(emulator: EmulatorFactory) -> None:
    server = emulator()  # the seed's writer may list and create completions, not edit them
    with httpx.Client(base_url=server.url, headers={"Authorization": basic("writer@example.com", "writer-pw")}) \
            as client:
        made = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
        refused = client.put(COMPLETIONS, json={"Id": made.json()["Value"]["Id"], "CourseLessonId": 2003,
                                                "CourseMemberId": 50001})
    assert made.status_code == 200 and refused.status_code == 401


def test_commands_none_for_completions(emulator: EmulatorFactory) -> None:
    """nexudus-api.md: `GET …/commands` lists them, `POST …/runcommand` runs one; none is documented for
    completions: the list is empty, and running one is refused in the validation shape."""
    server = emulator()
    with admin(server.url) as client:
        listed = client.get(f"{COMPLETIONS}/commands")
        ran = client.post(f"{COMPLETIONS}/runcommand", json={"Key": "X", "Ids": [900001], "Parameters": []})
        still = client.get(f"{COMPLETIONS}/900001")
    assert listed.status_code == 200 and listed.json() == []
    assert ran.status_code == 400 and ran.json()["WasSuccessful"] is False
    assert ran.json()["Errors"][0]["PropertyName"] == "Key" and still.status_code == 200


# --- throttling ----------------------------------------------------------------------------------

def test_throttling_is_409_with_empty_body_and_retry_after(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=None, requests_per_minute=3)))
    with admin(server.url) as client:
        statuses = [client.get(COMPLETIONS) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 409]
    assert statuses[3].content == b"" and statuses[3].headers["Retry-After"] == "1"


def test_throttling_as_429_says_wait_n_seconds(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=None, writes_per_minute=1),
                                        throttle_status=429))
    with admin(server.url) as client:
        ok = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
        throttled = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
        read = client.get(COMPLETIONS)  # reads are not writes: still allowed
    assert ok.status_code == 200 and read.status_code == 200
    assert throttled.status_code == 429
    wait = int(throttled.headers["Retry-After"])
    said = re.search(r"Wait (\d+(?:\.\d)?) seconds", throttled.text)
    assert said is not None, throttled.text
    assert 50 <= wait <= 60 and wait - 1 < float(said.group(1)) <= wait  # the body's N to 0.1 s, rounded up


def test_min_interval_between_requests(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=300, requests_per_minute=None)))
    with admin(server.url) as client:
        first = client.get(COMPLETIONS)
        quick = client.get(COMPLETIONS)
        time.sleep(0.35)
        later = client.get(COMPLETIONS)
    assert (first.status_code, quick.status_code, later.status_code) == (200, 409, 200)


# --- faults --------------------------------------------------------------------------------------

def test_fail_rate_gives_500_oops(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), fail_rate=1.0))
    with admin(server.url) as client:
        reply = client.get(COMPLETIONS)
    assert reply.status_code == 500 and reply.json()["Message"] == OOPS


def test_unsuccessful_rate_is_200_with_was_successful_false_and_nothing_done(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), unsuccessful_rate=1.0))
    with admin(server.url) as client:
        reply = client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
        deleted = client.delete(f"{COMPLETIONS}/900001")
        total = client.get(COMPLETIONS).json()["TotalItems"]
    assert reply.status_code == 200 and reply.json()["WasSuccessful"] is False
    assert deleted.status_code == 200 and deleted.json()["WasSuccessful"] is False
    assert total == 5


def test_lose_rate_does_the_write_then_drops_the_connection(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), lose_rate=1.0))
    with admin(server.url) as client:
        before = client.get(COMPLETIONS, params={"CourseCompletedLesson_CourseMember": 50001}).json()["TotalItems"]
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(COMPLETIONS, json={"CourseLessonId": 2003, "CourseMemberId": 50001})
        after = client.get(COMPLETIONS, params={"CourseCompletedLesson_CourseMember": 50001}).json()["TotalItems"]
    assert (before, after) == (1, 2)


def test_faults_are_reproducible_with_a_seed(emulator: EmulatorFactory) -> None:
    def run() -> list[int]:
        server = emulator(settings=Settings(limits=Limits.off(), fail_rate=0.5, rng_seed=7))
        with admin(server.url) as client:
            return [client.get(COMPLETIONS).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second and {200, 500} <= set(first)


def test_latency_is_added(emulator: EmulatorFactory) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), latency_ms=150))
    with admin(server.url) as client:
        started = time.perf_counter()
        client.get(COMPLETIONS)
        assert time.perf_counter() - started >= 0.15


def test_json_body_values_are_never_tracebacks(emulator: EmulatorFactory) -> None:
    server = emulator()
    with admin(server.url) as client:
        replies = [client.get(COMPLETIONS, params={"page": "x", "size": "-4", "orderBy": "nope", "dir": "sideways"}),
                   client.get(COMPLETIONS + "/99999999999999999999999"),
                   client.delete(COMPLETIONS + "/abc")]
    assert replies[0].status_code == 200 and replies[0].json()["CurrentPageSize"] == 25
    assert replies[1].status_code == 404 and replies[2].status_code == 404
    for reply in replies:
        json.loads(reply.text)
