"""The client's bounded waits and session handling: throttling, deadlines, 401s, refresh and TOTP.

Everything runs against small `httpx.MockTransport` handlers and a fake clock, so nothing really sleeps;
one test runs the same session rules against the emulator over real HTTP.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from reconciler.client import MAX_THROTTLE_WAITS, DailyCapReached, NexudusClient, Pacer
from reconciler.config import ClientLimits, Credentials
from reconciler.emulator.app import Settings
from reconciler.emulator.limits import Limits
from reconciler.errors import (
    EXIT_BLOCKED,
    AuthError,
    DeadlineReached,
    SessionExpired,
    StopRun,
    ThrottledTooLong,
    WriteRefused,
)
from reconciler.state import COMPLETIONS

from .conftest import EmulatorFactory

PASSWORD = "pw-Very-Secret-77"
TOTP = "424242"
ADMIN = Credentials(username="admin@example.com", password=PASSWORD)
ADMIN_2FA = Credentials(username="admin@example.com", password=PASSWORD, totp=TOTP)
EPOCH_AT_START = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC
EMPTY_LIST = {"Records": [], "TotalItems": 0, "TotalPages": 0, "HasNextPage": False}
CREATED = {"Status": 200, "Message": "created", "Value": {"Id": 9}, "WasSuccessful": True}


class FakeTime:
    """A monotonic clock, a wall clock and a sleep that only records and moves both clocks on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def wall(self) -> float:
        return EPOCH_AT_START + self.now - 1000.0

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def client_with(handler: Any, fake_time: FakeTime, **kwargs: Any) -> NexudusClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return NexudusClient("https://x.example", http, sleep=fake_time.sleep, clock=fake_time.clock,
                         wall_clock=fake_time.wall, **kwargs)


def assert_no_secrets(error: BaseException, *secrets: str) -> None:
    for secret in (PASSWORD, TOTP, *secrets):
        assert secret not in str(error) and secret not in repr(error)


# --- throttling ----------------------------------------------------------------------------------

def _wait_a_day_429(request: httpx.Request) -> httpx.Response:
    return httpx.Response(429, text="API calls quota exceeded. Wait 86400 seconds.")


def _wait_a_day_409(request: httpx.Request) -> httpx.Response:
    return httpx.Response(409, headers={"Retry-After": "86400"})


@pytest.mark.parametrize("handler", [_wait_a_day_429, _wait_a_day_409], ids=["429-body", "409-header"])
def test_a_wait_of_a_day_stops_the_run_at_once(fake_time: FakeTime, handler: Any) -> None:
    client = client_with(handler, fake_time)
    with pytest.raises(ThrottledTooLong) as caught:
        client.request("GET", COMPLETIONS)
    assert fake_time.sleeps == []
    assert client.stats.requests == 1
    error = caught.value
    assert isinstance(error, StopRun) and error.exit_code == EXIT_BLOCKED == 3
    assert error.resume_after == 86400
    assert "86,400 s (24 h)" in str(error) and "until 2027-01-16 08:00:00 UTC" in str(error)


def test_max_wait_is_the_longest_wait_slept_through(fake_time: FakeTime) -> None:
    answers = iter([httpx.Response(409, headers={"Retry-After": "10"}), httpx.Response(200, json=EMPTY_LIST),
                    httpx.Response(409, headers={"Retry-After": "11"})])
    client = client_with(lambda request: next(answers), fake_time, max_wait=10)
    assert client.request("GET", COMPLETIONS).status_code == 200
    with pytest.raises(ThrottledTooLong, match="longer than the 10 s this run waits"):
        client.request("GET", COMPLETIONS)
    assert fake_time.sleeps == [10.0]


def test_a_decimal_wait_is_kept(fake_time: FakeTime) -> None:
    answers = iter([httpx.Response(429, text="API calls quota exceeded. Wait 1.5 seconds."),
                    httpx.Response(200, json=EMPTY_LIST)])
    client = client_with(lambda request: next(answers), fake_time)
    assert client.request("GET", COMPLETIONS).status_code == 200
    assert fake_time.sleeps == [1.5] and client.stats.throttled == 1


@pytest.mark.parametrize(("status", "headers", "text", "expected"), [
    (409, {"Retry-After": "0.5"}, "", 0.5),  # said explicitly: no floor
    (409, {}, "", 1.0),  # nothing said: 1 s
    (409, {"Retry-After": "Fri, 15 Jan 2027 08:01:30 GMT"}, "", 90.0),  # an HTTP date, against the wall clock
    (429, {"Retry-After": "2"}, "Wait 1.5 seconds", 2.0),  # the header first
    (429, {"Retry-After": "soon"}, "Wait 3 seconds", 3.0),  # an unreadable header: the body
    (429, {}, "Too many requests", 1.0),
])
def test_the_wait_asked_for(fake_time: FakeTime, status: int, headers: dict[str, str], text: str,
                            expected: float) -> None:
    answers = iter([httpx.Response(status, headers=headers, text=text), httpx.Response(200, json=EMPTY_LIST)])
    client_with(lambda request: next(answers), fake_time).request("GET", COMPLETIONS)
    assert fake_time.sleeps == [pytest.approx(expected)]


def test_throttling_without_end_stops_after_a_bound(fake_time: FakeTime) -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(409, headers={"Retry-After": "1"})  # as when the server's daily cap is spent

    client = client_with(handler, fake_time)
    with pytest.raises(ThrottledTooLong) as caught:
        client.request("POST", COMPLETIONS, body={"CourseLessonId": 1, "CourseMemberId": 2})
    # A minute of Retry-After: 1 is an ordinary per-minute window; five minutes of it is not.
    assert len(calls) == int(client.max_wait) + 1 < MAX_THROTTLE_WAITS
    assert fake_time.sleeps == [1.0] * int(client.max_wait)
    assert "keeps throttling" in str(caught.value) and "daily write cap may be spent" in str(caught.value)
    assert caught.value.exit_code == 3 and caught.value.resume_after is None


def test_throttled_writes_that_never_let_up_say_when_the_daily_cap_frees_a_write(fake_time: FakeTime) -> None:
    """The writes this machine made in the last 24 hours (its journals, told to the pacer) say the latest time the
    daily cap frees one: the stop says to resume then, not "in a few hours"."""
    client = client_with(lambda request: httpx.Response(409, headers={"Retry-After": "1"}), fake_time,
                         limits=ClientLimits(writes_per_day=5000))
    client.pacer.note_past_writes([3600.0, 7200.0])  # an hour and two hours ago
    with pytest.raises(ThrottledTooLong) as caught:
        client.request("POST", COMPLETIONS, body={"CourseLessonId": 1, "CourseMemberId": 2})
    frees = 86400 - 7200 - client.max_wait  # the oldest leaves the window a day after it was made
    assert caught.value.resume_after == pytest.approx(frees)
    said = str(caught.value)
    assert "daily write cap may be spent: stopped cleanly, resume after " in said and "room under the daily cap" in said
    with pytest.raises(ThrottledTooLong) as reads:  # a read has no daily cap of its own: the old words
        client_with(lambda request: httpx.Response(409, headers={"Retry-After": "1"}), fake_time,
                    limits=ClientLimits(writes_per_day=5000)).request("GET", COMPLETIONS)
    assert "resume in a few hours" in str(reads.value) and reads.value.resume_after is None

def test_a_throttled_sign_in_waits_and_signs_in_once(fake_time: FakeTime) -> None:
    forms: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/token":
            forms.append(dict(parse_qsl(request.content.decode())))
            if len(forms) == 1:
                return httpx.Response(429, text="Wait 1.5 seconds")
            return httpx.Response(200, json={"access_token": "tok", "refresh_token": "rt", "expires_in": 3600})
        return httpx.Response(200, json=EMPTY_LIST)

    client_with(handler, fake_time, credentials=ADMIN).request("GET", COMPLETIONS)
    assert fake_time.sleeps == [1.5] and len(forms) == 2


# --- the deadline --------------------------------------------------------------------------------

def test_a_deadline_in_the_past_stops_before_any_request(fake_time: FakeTime) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json=EMPTY_LIST)

    client = client_with(handler, fake_time, credentials=ADMIN, deadline=fake_time.now - 1)
    with pytest.raises(DeadlineReached) as caught:
        client.request("GET", COMPLETIONS)
    assert calls == [] and client.stats.requests == 0
    assert caught.value.exit_code == 3 and "deadline" in str(caught.value)


def test_a_wait_that_would_end_after_the_deadline_is_not_slept(fake_time: FakeTime) -> None:
    client = client_with(lambda request: httpx.Response(409, headers={"Retry-After": "10"}), fake_time,
                         deadline=fake_time.now + 5)
    with pytest.raises(DeadlineReached):
        client.request("GET", COMPLETIONS)
    assert fake_time.sleeps == [] and client.stats.requests == 1


def test_pacing_past_the_deadline_stops_too(fake_time: FakeTime) -> None:
    client = client_with(lambda request: httpx.Response(200, json=EMPTY_LIST), fake_time,
                         limits=ClientLimits(min_interval_ms=1000), deadline=fake_time.now + 0.5)
    client.request("GET", COMPLETIONS)
    with pytest.raises(DeadlineReached):
        client.request("GET", COMPLETIONS)
    assert fake_time.sleeps == [] and client.stats.requests == 1


def test_the_daily_cap_is_a_stop_with_a_resume_time() -> None:
    now = [0.0]
    pacer = Pacer(ClientLimits(writes_per_day=1), clock=lambda: now[0], sleep=lambda seconds: None)
    pacer.before(write=True)
    pacer.after(write=True)
    now[0] = 3600.0
    with pytest.raises(DailyCapReached) as caught:
        pacer.before(write=True)
    assert isinstance(caught.value, StopRun) and caught.value.exit_code == 3
    assert caught.value.resume_after == pytest.approx(82800.0)


# --- a fake Nexudus with a token endpoint --------------------------------------------------------

class FakeNexudus:
    """A token endpoint plus completions, recording every token request the client makes.

    Bearer tokens it issued are accepted until `revoke()`; writes answer 401 "Access Denied." when
    `refuse_writes` (as the live service does for a write naming a deleted record); `GET …/{id}` of a
    deleted record answers 401 "Not found".
    """

    def __init__(self, *, expires_in: int = 3600, refresh_ok: bool = True, refuse_writes: bool = False) -> None:
        self.expires_in = expires_in
        self.refresh_ok = refresh_ok
        self.refuse_writes = refuse_writes
        self.password_error: str | None = None
        self.forms: list[dict[str, str]] = []
        self.headers: list[httpx.Headers] = []
        self.valid: set[str] = set()
        self.issued: list[str] = []

    def revoke(self) -> None:
        self.valid.clear()

    def grants(self) -> list[str]:
        return [form["grant_type"] for form in self.forms]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/token":
            return self._token(request)
        if request.headers.get("Authorization", "").removeprefix("Bearer ") not in self.valid:
            return httpx.Response(401, json={"Message": "Authorization has been denied for this request."})
        if request.method != "GET":
            if self.refuse_writes:
                return httpx.Response(401, json={"Message": "Access Denied."})
            return httpx.Response(200, json=CREATED)
        if request.url.path.endswith("/404"):
            return httpx.Response(404, json="Not found")
        if request.url.path.rstrip("/").split("/")[-1].isdigit():
            return httpx.Response(401, json="Not found")
        return httpx.Response(200, json=EMPTY_LIST)

    def _token(self, request: httpx.Request) -> httpx.Response:
        form = dict(parse_qsl(request.content.decode()))
        self.forms.append(form)
        self.headers.append(request.headers)
        if form["grant_type"] == "refresh_token" and (not self.refresh_ok or form["refresh_token"] != self.issued[-1]):
            return httpx.Response(400, json={"error": "invalid_grant",
                                             "error_description": "The refresh token is invalid or has expired."})
        if form["grant_type"] == "password" and self.password_error:
            return httpx.Response(400, json={"error": self.password_error})
        number = len(self.issued) + 1
        access, refresh = f"access-SECRET-{number}", f"refresh-SECRET-{number}"
        self.valid.add(access)
        self.issued.append(refresh)
        return httpx.Response(200, json={"access_token": access, "token_type": "bearer",
                                         "expires_in": self.expires_in, "refresh_token": refresh})


# --- 401s ----------------------------------------------------------------------------------------

def test_a_401_on_a_write_with_a_fresh_session_is_that_writes_failure(fake_time: FakeTime) -> None:
    server = FakeNexudus(refuse_writes=True)
    client = client_with(server, fake_time, credentials=ADMIN)
    client.request("GET", COMPLETIONS)
    with pytest.raises(WriteRefused) as caught:
        client.create(COMPLETIONS, {"CourseLessonId": 1, "CourseMemberId": 2})
    assert server.grants() == ["password"]  # no second sign-in: the token was fresh
    message = str(caught.value)
    assert "the server refused this write (401: Access Denied.)" in message
    assert "role" not in message.lower()
    assert isinstance(caught.value, AuthError) and not isinstance(caught.value, StopRun)
    assert_no_secrets(caught.value, *server.issued, "access-SECRET-1")


def test_a_401_on_a_write_after_a_minute_renews_once_then_refuses(fake_time: FakeTime) -> None:
    server = FakeNexudus(refuse_writes=True)
    client = client_with(server, fake_time, credentials=ADMIN)
    client.request("GET", COMPLETIONS)
    fake_time.now += 61
    with pytest.raises(WriteRefused):
        client.create(COMPLETIONS, {"CourseLessonId": 1, "CourseMemberId": 2})
    assert server.grants() == ["password", "refresh_token"]
    assert client.stats.writes == 2  # the write, and once more on the renewed session


def test_a_401_on_a_get_by_id_says_the_record_could_not_be_read(fake_time: FakeTime) -> None:
    client = client_with(FakeNexudus(), fake_time, credentials=ADMIN)
    assert client.get("/api/spaces/coworkers", 404) is None
    with pytest.raises(AuthError, match=r"the record could not be read \(401: Not found\): it was deleted"):
        client.get("/api/spaces/coworkers", 77)


def test_a_401_on_a_list_still_names_the_role(fake_time: FakeTime) -> None:
    server = FakeNexudus()
    client = client_with(server, fake_time, credentials=ADMIN)
    client.request("GET", COMPLETIONS)
    server.revoke()
    with pytest.raises(AuthError, match="needs the CourseCompletedLesson-List role"):
        client.request("GET", COMPLETIONS)
    assert server.grants() == ["password"]


# --- sign-in, refresh, TOTP ----------------------------------------------------------------------

def test_sign_in_sends_client_id_and_refresh_carries_it_as_a_header(fake_time: FakeTime) -> None:
    server = FakeNexudus(expires_in=600)
    client = client_with(server, fake_time, credentials=ADMIN)
    for _ in range(3):
        client.request("GET", COMPLETIONS)
        fake_time.now += 600
    assert server.grants() == ["password", "refresh_token", "refresh_token"]
    assert server.forms[0]["client_id"] == client.client_id and client.client_id.startswith("reconciler-")
    for form, headers in zip(server.forms[1:], server.headers[1:], strict=True):
        assert headers["client_id"] == client.client_id
        assert "password" not in form and "totp" not in form
    # each refresh presents the newest refresh token: the earlier ones are spent
    assert [form["refresh_token"] for form in server.forms[1:]] == server.issued[:2]


def test_with_totp_a_refused_refresh_asks_for_a_fresh_code(fake_time: FakeTime) -> None:
    server = FakeNexudus(expires_in=600, refresh_ok=False)
    client = client_with(server, fake_time, credentials=ADMIN_2FA)
    client.request("GET", COMPLETIONS)
    fake_time.now += 600
    with pytest.raises(SessionExpired) as caught:
        client.request("GET", COMPLETIONS)
    assert server.grants() == ["password", "refresh_token"]
    assert [form.get("totp") for form in server.forms] == [TOTP, None]  # sent once, never replayed
    assert "set NEXUDUS_TOTP to a fresh code and resume" in str(caught.value)
    assert caught.value.exit_code == 3
    assert_no_secrets(caught.value, *server.issued, "access-SECRET-1")


def test_with_totp_a_401_after_a_minute_refreshes_and_never_replays_the_code(fake_time: FakeTime) -> None:
    server = FakeNexudus()
    client = client_with(server, fake_time, credentials=ADMIN_2FA)
    client.request("GET", COMPLETIONS)
    server.revoke()
    fake_time.now += 61
    client.request("GET", COMPLETIONS)
    server.revoke()
    server.refresh_ok = False
    fake_time.now += 61
    with pytest.raises(SessionExpired):
        client.request("GET", COMPLETIONS)
    assert server.grants() == ["password", "refresh_token", "refresh_token"]
    assert sum("totp" in form for form in server.forms) == 1


def test_without_totp_a_refused_refresh_signs_in_again(fake_time: FakeTime) -> None:
    server = FakeNexudus(expires_in=600, refresh_ok=False)
    client = client_with(server, fake_time, credentials=ADMIN)
    client.request("GET", COMPLETIONS)
    fake_time.now += 600
    client.request("GET", COMPLETIONS)
    assert server.grants() == ["password", "refresh_token", "password"]


def test_two_factor_check_at_first_sign_in_is_a_clear_auth_error(fake_time: FakeTime) -> None:
    server = FakeNexudus()
    server.password_error = "two_factor_auth_check"
    with pytest.raises(AuthError, match=r"needs a two-factor code .* set NEXUDUS_TOTP") as caught:
        client_with(server, fake_time, credentials=ADMIN).request("GET", COMPLETIONS)
    assert not isinstance(caught.value, StopRun)
    assert_no_secrets(caught.value)


def test_two_factor_check_when_renewing_stops_the_run(fake_time: FakeTime) -> None:
    server = FakeNexudus(expires_in=600, refresh_ok=False)
    client = client_with(server, fake_time, credentials=ADMIN)
    client.request("GET", COMPLETIONS)
    server.password_error = "two_factor_auth_check"
    fake_time.now += 600
    with pytest.raises(SessionExpired, match="set NEXUDUS_TOTP to a fresh code and resume"):
        client.request("GET", COMPLETIONS)


def test_must_reset_password_says_so(fake_time: FakeTime) -> None:
    server = FakeNexudus()
    server.password_error = "must_reset_password"
    with pytest.raises(AuthError, match="must reset its password") as caught:
        client_with(server, fake_time, credentials=ADMIN).request("GET", COMPLETIONS)
    assert_no_secrets(caught.value)


# --- the emulator over real HTTP -----------------------------------------------------------------

_SINGLE_USE = "totp_single_use" in {f.name for f in dataclasses.fields(Settings)}


@pytest.fixture
def recorded_http() -> Iterator[tuple[httpx.Client, list[dict[str, str]]]]:
    forms: list[dict[str, str]] = []

    def record(request: httpx.Request) -> None:
        if request.url.path == "/api/token":
            forms.append(dict(parse_qsl(request.content.decode())))

    with httpx.Client(event_hooks={"request": [record]}) as http:
        yield http, forms


@pytest.mark.skipif(not _SINGLE_USE, reason="the emulator has no Settings(totp_single_use=...) yet")
def test_a_long_session_with_totp_against_the_emulator(emulator: EmulatorFactory, fake_time: FakeTime,
                                                       recorded_http: tuple[httpx.Client, list[dict[str, str]]]
                                                       ) -> None:
    server = emulator(settings=Settings(limits=Limits.off(), totp_single_use=True))
    http, forms = recorded_http
    creds = Credentials(username="twofa@example.com", password="twofa-pw", totp="123456")
    client = NexudusClient(server.url, http, credentials=creds, clock=fake_time.clock, sleep=fake_time.sleep,
                           wall_clock=fake_time.wall)
    assert len(client.list_all(COMPLETIONS)) == 5
    fake_time.now += 604799  # the token's lifetime: renewed by refresh, with the client_id header
    assert len(client.list_all(COMPLETIONS)) == 5
    server.app.revoke_tokens()
    fake_time.now += 61  # a 401 a minute later: renewed by refresh again
    assert len(client.list_all(COMPLETIONS)) == 5
    assert [form["grant_type"] for form in forms] == ["password", "refresh_token", "refresh_token"]
    # Every token and refresh token is now past its lifetime on the server's clock.
    real_wall = server.app.wall_clock
    server.app.wall_clock = lambda: real_wall() + 16 * 86400
    fake_time.now += 61
    with pytest.raises(SessionExpired, match="set NEXUDUS_TOTP to a fresh code and resume"):
        client.list_all(COMPLETIONS)
    assert sum("totp" in form for form in forms) == 1


# --- an answer that trickles ---------------------------------------------------------------------

def test_an_answer_that_trickles_ends_within_the_deadline(fake_time: FakeTime) -> None:
    """The server sends a byte a minute: no single read times out, but the whole answer has a deadline,
    and a read that keeps trickling ends as an error after the bounded retries, not never."""
    from reconciler.client import REQUEST_DEADLINE
    from reconciler.errors import TransportError

    chunks_sent = []

    def trickle() -> Any:
        for _ in range(10_000):
            fake_time.now += 60.0  # a minute passes before each byte
            chunks_sent.append(1)
            yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Stream(trickle()))

    client = client_with(handler, fake_time)
    with pytest.raises(TransportError, match="ReadTimeout"):
        client.request("GET", COMPLETIONS)
    per_try = REQUEST_DEADLINE / 60.0 + 1
    assert len(chunks_sent) <= client.max_tries * per_try  # each try gave up at the deadline


class _Stream(httpx.SyncByteStream):
    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks

    def __iter__(self) -> Any:
        yield from self.chunks


def test_a_token_answer_that_trickles_ends_within_the_deadline(fake_time: FakeTime) -> None:
    """The token grant goes through the same choke point: its answer has the same whole-exchange deadline,
    and a grant carrying a two-factor code is not sent again after the server may have read it."""
    from reconciler.client import REQUEST_DEADLINE
    from reconciler.errors import TransportError

    chunks_sent = []
    grants = []

    def trickle() -> Any:
        for _ in range(10_000):
            fake_time.now += 60.0
            chunks_sent.append(1)
            yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        grants.append(request.url.path)
        return httpx.Response(200, stream=_Stream(trickle()))

    client = client_with(handler, fake_time, credentials=ADMIN_2FA)
    with pytest.raises(TransportError, match=r"ReadTimeout.*the two-factor code may have been used") as raised:
        client.list_all(COMPLETIONS)
    assert grants == ["/api/token"]  # once: the code may have been read
    assert len(chunks_sent) <= REQUEST_DEADLINE / 60.0 + 1
    assert_no_secrets(raised.value)
