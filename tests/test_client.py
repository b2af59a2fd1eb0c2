"""NexudusClient and StateReader against the emulator over real HTTP."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from reconciler.client import AmbiguousWrite, NexudusClient, Pacer
from reconciler.config import DOCUMENTED_LIMITS, ClientLimits, Credentials
from reconciler.emulator.app import Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import account
from reconciler.emulator.store import Store
from reconciler.emulator.synthetic import build_space
from reconciler.errors import (
    AuthError,
    MalformedAnswer,
    PartialRead,
    ThrottledTooLong,
    TransportError,
    ValidationFailed,
)
from reconciler.spec import load_specs
from reconciler.state import COMPLETIONS, COWORKERS, StateReader

from .conftest import EmulatorFactory

ADMIN = Credentials(username="admin@example.com", password="admin-pw")


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


class RecordingSleep:
    """Sleeps for real (the server's windows must pass) and records every wait the client chose."""

    def __init__(self, real: bool = True) -> None:
        self.waits: list[float] = []
        self.real = real

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.real:
            time.sleep(seconds)


def client_for(url: str, http: httpx.Client, **kwargs: object) -> NexudusClient:
    kwargs.setdefault("credentials", ADMIN)
    return NexudusClient(url, http, **kwargs)  # type: ignore[arg-type]


# --- auth ----------------------------------------------------------------------------------------

def test_password_grant_once_then_bearer(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    client = client_for(server.url, http)
    assert len(list(client.list_all(COMPLETIONS))) == 5
    assert len(list(client.list_all(COWORKERS))) == 3
    assert client.stats.requests == 3  # one sign-in, two lists


def test_static_token_from_the_environment(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    token = http.post(server.url + "/api/token", data={"grant_type": "password", "username": "admin@example.com",
                                                       "password": "admin-pw"}).json()["access_token"]
    client = client_for(server.url, http, credentials=Credentials.from_env({"NEXUDUS_TOKEN": token}))
    assert len(list(client.list_all(COMPLETIONS))) == 5


def test_basic_auth_as_a_setting(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    client = client_for(server.url, http, auth_mode="basic")
    assert len(list(client.list_all(COMPLETIONS))) == 5
    assert client.stats.requests == 1  # no token request


def test_totp_is_sent_with_the_password_grant(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    creds = Credentials(username="twofa@example.com", password="twofa-pw", totp="123456")
    assert len(list(client_for(server.url, http, credentials=creds).list_all(COMPLETIONS))) == 5


def test_token_expiry_is_refreshed_before_it_bites(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), token_ttl=1))
    client = client_for(server.url, http)
    list(client.list_all(COMPLETIONS))
    time.sleep(1.1)
    assert len(list(client.list_all(COMPLETIONS))) == 5
    assert client.stats.requests == 4  # sign-in, list, refresh, list


def test_a_401_mid_run_re_authenticates_once(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    now = [0.0]
    client = client_for(server.url, http, clock=lambda: now[0])
    list(client.list_all(COMPLETIONS))
    server.app.revoke_tokens()
    now[0] += 61  # a 401 within a minute of signing in is the request's answer, not the session's
    assert len(list(client.list_all(COMPLETIONS))) == 5
    assert client.stats.requests == 5  # sign-in, list, the 401, a refresh, list


def test_a_401_just_after_sign_in_is_the_requests_answer(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    client = client_for(server.url, http)
    list(client.list_all(COMPLETIONS))
    server.app.revoke_tokens()
    with pytest.raises(AuthError, match="needs the CourseCompletedLesson-List role"):
        list(client.list_all(COMPLETIONS))
    assert client.stats.requests == 3  # sign-in, list, the 401: no second sign-in within the minute


def test_bad_credentials_say_so_without_the_password(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    client = client_for(server.url, http, credentials=Credentials(username="admin@example.com",
                                                                  password="wrong-Secret-991"))
    with pytest.raises(AuthError) as caught:
        list(client.list_all(COMPLETIONS))
    assert "The user name or password is incorrect." in str(caught.value)
    assert "wrong-Secret-991" not in str(caught.value) and "wrong-Secret-991" not in repr(caught.value)


def test_a_missing_role_names_the_role(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    client = client_for(server.url, http, credentials=Credentials(username="reader@example.com", password="reader-pw"))
    assert len(list(client.list_all(COMPLETIONS))) == 5
    with pytest.raises(AuthError, match="needs the CourseMember-List role or full administrator rights"):
        list(client.list_all("/api/content/coursemembers"))


# --- paging --------------------------------------------------------------------------------------

def test_paging_at_the_1000_cap(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator()
    rows = [{"Id": 2_000_000 + i, "CourseLessonId": 2001, "CourseMemberId": 50001, "UniqueId": str(i),
             "CreatedOn": "2026-01-01T00:00:00.000Z", "UpdatedOn": "2026-01-01T00:00:00.000Z", "UpdatedBy": "x",
             "IsNew": False, "SystemId": None} for i in range(2_500)]
    server.app.store.load("coursecompletedlessons", rows)
    client = client_for(server.url, http, auth_mode="basic")
    records = list(client.list_all(COMPLETIONS))
    assert len(records) == 2_505 and len({r["Id"] for r in records}) == 2_505
    assert client.stats.requests == 3


def test_a_server_that_ignores_paging_is_an_error_not_an_endless_loop(http: httpx.Client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "PageNumber" not in str(request.url) and "PageSize" not in str(request.url)
        return httpx.Response(200, json={"Records": [{"Id": 1}, {"Id": 2}], "HasNextPage": True, "TotalPages": 9})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        client = NexudusClient("https://x.example", mocked)
        with pytest.raises(PartialRead, match="paging moved or is ignored"):
            client.list_all(COWORKERS)
        assert client.stats.requests == 2


def test_unknown_keys_are_tolerated(http: httpx.Client) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        records = [{"Id": 7, "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "2026-01-01T00:00:00Z",
                    "UpdatedOn": "2026-01-01T00:00:00Z", "Surprise": {"x": 1}}]
        # (no TotalItems: a short first page is read on, at its size, to an empty page)
        return httpx.Response(200, json={"Records": records if request.url.params["page"] == "1" else [],
                                         "TotalPages": 1, "ExtraEnvelopeKey": True})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        completions, partial = StateReader(NexudusClient("https://x.example", mocked)).completions({5})
    assert [(c.id, c.member_id, c.created_on, c.system_id) for c in completions] == [(7, 9, "2026-01-01T00:00:00Z",
                                                                                       None)]
    assert partial == []


@pytest.mark.parametrize(("records", "complaint"), [
    ([{"Id": 7, "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "x", "UpdatedOn": "x"}, "junk"],
     "record 2 of the page is a string"),
    ([{"Id": "7", "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "x", "UpdatedOn": "x"}],
     "has Id '7', not an integer"),
    ([{"Id": 7, "CourseMemberId": 9, "CreatedOn": "x", "UpdatedOn": "x"}], r"\(Id 7\) has no CourseLessonId"),
    ([{"Id": 7, "CourseLessonId": 5, "CourseMemberId": 9, "CreatedOn": "x", "UpdatedOn": "x", "SystemId": 3}],
     r"\(Id 7\) has SystemId = 3"),
])
def test_a_record_that_is_not_what_the_api_documents_is_an_error(records: list[object], complaint: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Records": records, "TotalItems": len(records)})

    with httpx.Client(transport=httpx.MockTransport(handler)) as mocked:
        with pytest.raises(MalformedAnswer, match=complaint) as caught:
            StateReader(NexudusClient("https://x.example", mocked)).completions({5})
    assert "GET https://x.example/api/content/coursecompletedlessons?" in str(caught.value)


# --- throttling, 5xx, lost answers ---------------------------------------------------------------

@pytest.mark.parametrize(("status", "header", "advertised", "expected"), [
    (409, True, None, 1.0),  # the documented answer: always "Retry-After: 1", whatever the real wait
    (429, True, 42.3, 43.0),  # Retry-After in whole seconds
    (429, False, 42.3, 42.3),  # no header: the body's "Wait 42.3 seconds"
])
def test_throttling_waits_as_told(emulator: EmulatorFactory, http: httpx.Client, status: int, header: bool,
                                  advertised: float | None, expected: float) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=None, requests_per_minute=2),
                                        throttle_status=status, retry_after_header=header,  # type: ignore[arg-type]
                                        throttle_wait_seconds=advertised))
    sleep = RecordingSleep(real=False)
    client = client_for(server.url, http, auth_mode="basic", sleep=sleep)
    client.request("GET", COMPLETIONS)
    client.request("GET", COMPLETIONS)
    with pytest.raises(ThrottledTooLong, match="keeps throttling"):
        client.request("GET", COMPLETIONS)  # the fake sleep never lets the minute pass
    assert client.stats.throttled > 1
    assert sleep.waits[0] == expected


def test_a_throttled_request_succeeds_after_retry_after(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits(min_interval_ms=800, requests_per_minute=None)))
    sleep = RecordingSleep()
    client = client_for(server.url, http, auth_mode="basic", sleep=sleep)
    client.request("GET", COMPLETIONS)
    assert client.request("GET", COMPLETIONS).status_code == 200
    assert sleep.waits == [1.0] and client.stats.throttled == 1


def test_the_client_budget_keeps_the_documented_limits_from_throttling(emulator: EmulatorFactory,
                                                                      http: httpx.Client) -> None:
    server = emulator(settings=Settings())  # the documented limits, including 1 request per 100 ms
    client = client_for(server.url, http, limits=DOCUMENTED_LIMITS)
    for _ in range(12):
        client.request("GET", COMPLETIONS)
    assert client.stats.throttled == 0 and server.app.throttled_count == 0


def test_5xx_bursts_are_retried_with_backoff(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), fail_rate=0.5, rng_seed=3))
    sleep = RecordingSleep(real=False)
    client = client_for(server.url, http, auth_mode="basic", sleep=sleep)
    for _ in range(10):
        assert client.request("GET", COMPLETIONS).status_code == 200
    assert client.stats.retries == len(sleep.waits) > 0
    assert all(0 < wait <= 45 for wait in sleep.waits)


def test_a_permanent_500_gives_up_after_bounded_tries(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), fail_rate=1.0))
    sleep = RecordingSleep(real=False)
    client = client_for(server.url, http, auth_mode="basic", sleep=sleep)
    with pytest.raises(TransportError, match=r"500 from GET .* after 5 tries: Ooops!"):
        client.request("GET", COMPLETIONS)
    assert len(sleep.waits) == 4  # a backoff between each of the 5 tries
    assert client.stats.requests == 5


def test_an_unreachable_server(http: httpx.Client) -> None:
    client = NexudusClient("http://127.0.0.1:9", http, sleep=RecordingSleep(real=False))
    with pytest.raises(TransportError, match=r"cannot reach http://127.0.0.1:9/api/content/courses after 5 tries"):
        client.request("GET", "/api/content/courses")


def test_a_create_whose_answer_is_lost_is_never_resent(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), lose_rate=1.0))
    client = client_for(server.url, http, auth_mode="basic", sleep=RecordingSleep(real=False))
    with pytest.raises(AmbiguousWrite, match="may have been done"):
        client.create(COMPLETIONS, {"CourseLessonId": 2003, "CourseMemberId": 50001})
    assert client.stats.writes == 1
    assert len(list(client.list_all(COMPLETIONS, {"CourseCompletedLesson_CourseMember": 50001}))) == 2


def test_was_successful_false_is_a_failure_with_the_message(emulator: EmulatorFactory, http: httpx.Client) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), unsuccessful_rate=1.0))
    client = client_for(server.url, http, auth_mode="basic")
    with pytest.raises(ValidationFailed, match="was not successful: CourseCompletedLesson could not be saved"):
        client.create(COMPLETIONS, {"CourseLessonId": 2003, "CourseMemberId": 50001})
    with pytest.raises(ValidationFailed):
        client.delete(COMPLETIONS, 900001)


def test_a_validation_error_carries_the_servers_message(emulator: EmulatorFactory, http: httpx.Client) -> None:
    client = client_for(emulator().url, http, auth_mode="basic")
    with pytest.raises(ValidationFailed, match=re.escape("CourseMemberId: The course member does not exist.")):
        client.create(COMPLETIONS, {"CourseLessonId": 2003, "CourseMemberId": 1})


def test_delete_of_a_missing_record_is_already_done(emulator: EmulatorFactory, http: httpx.Client) -> None:
    client = client_for(emulator().url, http, auth_mode="basic")
    assert client.delete(COMPLETIONS, 900001) is True
    assert client.delete(COMPLETIONS, 900001) is False


@pytest.mark.parametrize("batch_get", ["honoured", "ignored"])
def test_get_many_finds_the_same_records_whether_the_batch_is_honoured_or_ignored(
        emulator: EmulatorFactory, http: httpx.Client, batch_get: str) -> None:
    """A server that ignores `?id=[...]` answers the first page of the whole table: the records asked for on it are
    kept, the others looked up one by one, and an Id that does not exist is simply not there."""
    store = Store()
    build_space(store, members=20, lessons=6, per_member=3)
    store.save_user(account(ADMIN.username or "", ADMIN.password or ""))
    settings = Settings(limits=Limits.off(), batch_get=batch_get)  # type: ignore[arg-type]
    server = emulator(seed=None, store=store, settings=settings)
    client = client_for(server.url, http, auth_mode="basic")
    every = [record["Id"] for record in client.list_all(COMPLETIONS)]
    assert len(every) == 60
    wanted = [every[0], every[1], every[-1], every[len(every) // 2], 123456789]
    found = client.get_many(COMPLETIONS, wanted)
    assert [record["Id"] for record in found] == sorted(wanted[:4])
    gets = client.stats.by_path.get(COMPLETIONS, 0)
    # (one batch request honoured; ignored: the page, then by Id those the page did not hold, the missing one too)
    assert client.stats.requests - gets == (3 if batch_get == "ignored" else 0)


def test_the_pacer_spaces_requests_by_the_budget() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    pacer = Pacer(ClientLimits(writes_per_minute=2, min_interval_ms=100, writes_per_day=3), clock=lambda: now[0],
                  sleep=sleep)
    for _ in range(3):
        pacer.before(write=True)
        now[0] += 0.02  # the answer takes 20 ms; the next request waits from the answer
        pacer.after(write=True)
    assert waits[0] == pytest.approx(0.1)  # min interval, counted from the first answer (t=0.02)
    assert now[0] == pytest.approx(60.04)  # the third waited for the first answer to leave the minute
    from reconciler.client import DailyCapReached

    with pytest.raises(DailyCapReached):
        pacer.before(write=True)
    pacer.before(write=False)  # reads are not capped by the daily write budget


# --- the state reader: exact matches over substring filters --------------------------------------

def test_coworkers_by_email_are_confirmed_exactly(emulator: EmulatorFactory, http: httpx.Client,
                                                  tmp_path: Path) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), email_filter="substring"))  # al@ also finds sal@
    client = client_for(server.url, http, auth_mode="basic")
    (tmp_path / "s.yaml").write_text("apiVersion: reconciler/v1\nkind: Completions\nmetadata: {name: s}\n"
                                     "course: Onboarding\nmembers:\n  - {email: al@example.com, completed: all}\n"
                                     "  - {email: zoe.bronte@example.com, completed: all}\n")
    catalog = StateReader(client).catalog(load_specs([tmp_path]))
    assert sorted(c.email for c in catalog.coworkers.values()) == ["Zoe.Bronte@Example.com", "al@example.com"]
