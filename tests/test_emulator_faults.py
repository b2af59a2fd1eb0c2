"""Faults beyond list reads, over real HTTP: writes answered 500 or spoiled (a proxy's HTML page, a cut answer),
get-by-id spoiled, another writer deleting and creating between a reader's pages, and the Members Portal
re-creating a deleted completion."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from reconciler.emulator.app import OOPS, Settings
from reconciler.emulator.cli import build_parser, settings_from
from reconciler.emulator.errors import UsageError
from reconciler.emulator.limits import Limits

from .conftest import ROOT, EmulatorFactory

COMPLETIONS = "/api/content/coursecompletedlessons"
COWORKERS = "/api/spaces/coworkers"
NEW_COMPLETION = {"CourseLessonId": 2003, "CourseMemberId": 50001}
SEEDED = [900001, 900002, 900003, 900004, 900005]  # the five completions of tests/data/api-seed.yaml


def open_settings(**changes: Any) -> Settings:
    """No limits and no sign-in, so each test sees only the setting it is about."""
    return Settings(limits=Limits.off(), require_auth=False, **changes)


def all_ids(url: str) -> list[int]:
    return [r["Id"] for r in httpx.get(url + COMPLETIONS, params={"size": 1000}).json()["Records"]]


def page_ids(url: str, page: int, size: int) -> list[int]:
    reply = httpx.get(url + COMPLETIONS, params={"page": page, "size": size})
    assert reply.status_code == 200, reply.text
    return [r["Id"] for r in reply.json()["Records"]]


# --- writes ---------------------------------------------------------------------------------------------------

def test_write_fail_rate_answers_writes_500_and_does_not_do_them(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(write_fail_rate=1.0))
    created = httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION)
    deleted = httpx.delete(f"{server.url}{COMPLETIONS}/900001")
    for reply in (created, deleted):
        assert reply.status_code == 500 and reply.json()["Message"] == OOPS and reply.json()["WasSuccessful"] is False
    assert all_ids(server.url) == SEEDED  # reads are untouched, and nothing was written
    assert httpx.get(f"{server.url}{COMPLETIONS}/900001").status_code == 200


def test_write_garble_html_is_a_200_proxy_page_and_the_write_is_not_done(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(write_garble="html"))
    replies = [httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION),
               httpx.delete(f"{server.url}{COMPLETIONS}/900001"),
               httpx.put(server.url + COMPLETIONS, json={"Id": 900001, **NEW_COMPLETION})]
    for reply in replies:
        assert reply.status_code == 200 and reply.headers["Content-Type"].startswith("text/html")
        assert "Down for maintenance" in reply.text
    assert all_ids(server.url) == SEEDED
    assert httpx.get(f"{server.url}{COMPLETIONS}/900001").headers["Content-Type"].startswith("application/json")


def test_write_garble_truncated_does_the_write_and_cuts_its_answer(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(write_garble="truncated"))
    created = httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION)
    deleted = httpx.delete(f"{server.url}{COMPLETIONS}/900002")
    for reply in (created, deleted):
        assert reply.status_code == 200 and int(reply.headers["Content-Length"]) == len(reply.content)
        with pytest.raises(ValueError):
            json.loads(reply.content)
    assert created.content.startswith(b'{"Status":200,"Message":"CourseCompletedLesson was successfully created."')
    assert all_ids(server.url) == [900001, 900003, 900004, 900005, 900006]  # both were done


def test_write_garble_rate_spoils_a_share_of_writes_reproducibly(emulator: EmulatorFactory) -> None:
    def run() -> list[str]:
        server = emulator(settings=open_settings(write_garble="html", write_garble_rate=0.5, rng_seed=3))
        kinds = [httpx.post(server.url + COMPLETIONS, json=NEW_COMPLETION).headers["Content-Type"].split(";")[0]
                 for _ in range(20)]
        assert len(all_ids(server.url)) == 5 + kinds.count("application/json")
        return kinds

    first, second = run(), run()
    assert first == second and {"text/html", "application/json"} == set(first)


# --- get-by-id ------------------------------------------------------------------------------------------------

def test_get_garble_html_spoils_get_by_id_of_the_outage_collections_only(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(get_garble="html"))
    got = httpx.get(f"{server.url}{COMPLETIONS}/900001")
    assert got.status_code == 200 and got.headers["Content-Type"].startswith("text/html")
    assert "Down for maintenance" in got.text
    assert all_ids(server.url) == SEEDED  # lists are untouched
    assert httpx.get(f"{server.url}{COWORKERS}/10001").json()["Id"] == 10001  # so is another collection
    server.app.settings.outage_collections = frozenset({"coworkers"})
    assert httpx.get(f"{server.url}{COWORKERS}/10001").headers["Content-Type"].startswith("text/html")
    assert httpx.get(f"{server.url}{COMPLETIONS}/900001").json()["Id"] == 900001


def test_get_garble_truncated_is_a_prefix_of_the_real_record(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(get_garble="truncated"))
    cut = httpx.get(f"{server.url}{COMPLETIONS}/900001")
    server.app.settings.get_garble = None
    whole = httpx.get(f"{server.url}{COMPLETIONS}/900001")
    assert cut.status_code == 200 and len(cut.content) == len(whole.content) // 2
    assert whole.content.startswith(cut.content) and whole.json()["Id"] == 900001


def test_get_garble_rate_spoils_a_share_of_gets(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(get_garble="html", get_garble_rate=0.5, rng_seed=11))
    kinds = {httpx.get(f"{server.url}{COMPLETIONS}/900001").headers["Content-Type"].split(";")[0] for _ in range(20)}
    assert kinds == {"text/html", "application/json"}


# --- another writer between pages ------------------------------------------------------------------------------

def test_churn_between_pages_shifts_offset_paging_under_a_reader(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(churn_between_pages=1, rng_seed=1))
    assert page_ids(server.url, 1, 2) == [900001, 900002]  # page 1: nothing moves
    assert all_ids(server.url) == SEEDED
    second = page_ids(server.url, 2, 2)  # 900001 deleted, 900006 created, then the page is cut
    third = page_ids(server.url, 3, 2)  # 900002 deleted, 900007 created
    assert second == [900004, 900005] and third == [900007]
    assert 900003 not in second + third and 900003 in all_ids(server.url)  # there all along, never read
    assert all_ids(server.url) == [900003, 900004, 900005, 900006, 900007]


def test_churned_completions_are_new_pairs_of_real_enrolments(emulator: EmulatorFactory) -> None:
    def run() -> list[tuple[int, int]]:
        server = emulator(settings=open_settings(churn_between_pages=2, rng_seed=9))
        for page in (2, 2, 3):
            page_ids(server.url, page, 1)
        records = httpx.get(server.url + COMPLETIONS, params={"size": 1000}).json()["Records"]
        # Six steps: the five seeded records and the first one made are gone; no pair is held twice.
        assert [r["Id"] for r in records] == list(range(900007, 900012))
        assert len({(r["CourseMemberId"], r["CourseLessonId"]) for r in records}) == 5
        for record in records:
            got = httpx.get(f"{server.url}{COMPLETIONS}/{record['Id']}").json()
            member = httpx.get(f"{server.url}/api/content/coursemembers/{record['CourseMemberId']}").json()
            lesson = httpx.get(f"{server.url}/api/content/courselessons/{record['CourseLessonId']}").json()
            assert member["CourseId"] == lesson["CourseId"]
            assert got["SystemId"] is None and got["UpdatedBy"] == "other.admin@example.com"
        return [(r["CourseMemberId"], r["CourseLessonId"]) for r in records]

    assert run() == run()  # the same seed, the same churn


def test_no_churn_by_default_or_on_other_collections(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    page_ids(server.url, 2, 2)
    assert all_ids(server.url) == SEEDED
    server.app.settings.churn_between_pages = 3
    assert httpx.get(server.url + COWORKERS, params={"page": 2, "size": 1}).status_code == 200
    assert all_ids(server.url) == SEEDED


# --- the Members Portal ----------------------------------------------------------------------------------------

def test_recreate_deleted_brings_a_deleted_completion_back_as_a_new_record(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings(recreate_deleted=True))
    httpx.post(server.url + COMPLETIONS, json={**NEW_COMPLETION, "SystemId": "reconciler:x"})
    reply = httpx.delete(f"{server.url}{COMPLETIONS}/900006")
    assert reply.status_code == 200 and reply.json()["WasSuccessful"] is True
    assert httpx.get(f"{server.url}{COMPLETIONS}/900006").status_code == 404
    again = httpx.get(f"{server.url}{COMPLETIONS}/900007").json()
    assert (again["CourseMemberId"], again["CourseLessonId"]) == (50001, 2003)
    assert again["SystemId"] is None and again["UpdatedBy"] == "al@example.com"
    assert all_ids(server.url) == [*SEEDED, 900007]


def test_deleted_completions_stay_deleted_by_default(emulator: EmulatorFactory) -> None:
    server = emulator(settings=open_settings())
    assert httpx.delete(f"{server.url}{COMPLETIONS}/900001").json()["WasSuccessful"] is True
    assert all_ids(server.url) == SEEDED[1:]


# --- the serve flags --------------------------------------------------------------------------------------------

def test_serve_flags_set_the_write_and_get_faults() -> None:
    args = build_parser().parse_args([
        "serve", "--write-fail-rate", "0.25", "--write-garble", "truncated", "--write-garble-rate", "0.5",
        "--get-garble", "html", "--get-garble-rate", "0.75", "--churn-between-pages", "3", "--recreate-deleted"])
    settings = settings_from(args)
    assert (settings.write_fail_rate, settings.write_garble, settings.write_garble_rate) == (0.25, "truncated", 0.5)
    assert (settings.get_garble, settings.get_garble_rate) == ("html", 0.75)
    assert (settings.churn_between_pages, settings.recreate_deleted) == (3, True)
    assert settings_from(build_parser().parse_args(["serve"])) == Settings()


@pytest.mark.parametrize(("flags", "message"), [(["--write-fail-rate", "1.5"], "--write-fail-rate"),
                                                 (["--write-garble-rate", "-0.1"], "--write-garble-rate"),
                                                 (["--get-garble-rate", "2"], "--get-garble-rate"),
                                                 (["--churn-between-pages", "-1"], "--churn-between-pages")])
def test_serve_refuses_bad_fault_values(flags: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        settings_from(build_parser().parse_args(["serve", *flags]))


def test_the_fault_flags_are_documented() -> None:
    text = (ROOT / "docs" / "emulator.md").read_text()
    for row in ("| `--write-fail-rate R` (`write_fail_rate`) |",
                "| `--write-garble html\\|truncated` (`write_garble`), `--write-garble-rate R` (`write_garble_rate`) |",
                "| `--get-garble html\\|truncated` (`get_garble`), `--get-garble-rate R` (`get_garble_rate`) |",
                "| `--churn-between-pages N` (`churn_between_pages`) |",
                "| `--recreate-deleted` (`recreate_deleted`) |"):
        assert row in text
