"""Reading a list with the next page fetched ahead (`NexudusClient.pages`), against the emulator over real HTTP.

The emulator sits behind `Wire`, a WSGI middleware that records every request as it arrives, counts how
many are in flight at once, and answers a fault of a test's choosing for one page. The seed's five
completions are read two a page: pages 1, 2 and 3 (one a page: 1 to 5, where it takes more pages to tell).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from reconciler.client import AHEAD as PAGES_AHEAD
from reconciler.client import NexudusClient
from reconciler.config import ClientLimits, Credentials
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from reconciler.errors import (
    ApiError,
    AuthError,
    DeadlineReached,
    Interrupted,
    MalformedAnswer,
    PartialRead,
    ThrottledTooLong,
    TransportError,
    ValidationFailed,
)
from reconciler.state import COMPLETIONS, COWORKERS

from .conftest import API_SEED, ROOT

ADMIN = Credentials(username="admin@example.com", password="admin-pw")
AHEAD = "reconciler-page-ahead"  # the name of the thread a page is fetched ahead in
PATIENCE = 60.0  # the longest a test waits for something that happens at once unless the code is wrong
FOREVER = 250.0  # a throttle wait the client would sleep through (under its max_wait): a test ends it first
Start = Callable[[str, list[tuple[str, str]]], Any]
# What a fault answers for a page: status line, headers, body; or None to let the emulator answer.
Fault = Callable[[], tuple[str, list[tuple[str, str]], bytes]]
Rewrite = Callable[[dict[str, Any]], None]


class Wire:
    """In front of the emulator: every request recorded as it arrives (`seen`: "page=N&size=S" for list
    reads, the path otherwise), the most in flight at once, and faults or rewritten answers by page."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.seen: list[str] = []
        self.changed = threading.Condition()
        self.in_flight = 0
        self.most_in_flight = 0
        self.faults: dict[int, Fault] = {}
        self.rewrites: dict[int, Rewrite] = {}
        self.held: dict[int, threading.Event] = {}  # pages whose body follows their headers once the event is set
        self.stalled: dict[int, threading.Event] = {}  # pages answered at all only once the event is set

    def __call__(self, environ: dict[str, Any], start_response: Start) -> Iterable[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        page = int(query["page"][0]) if "page" in query else None
        with self.changed:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.seen.append(f"page={page}&size={query['size'][0]}" if page else environ.get("PATH_INFO", ""))
            self.changed.notify_all()
        try:
            if page in self.faults:
                status, headers, body = self.faults[page]()
                start_response(status, [*headers, ("Content-Length", str(len(body)))])
                return [body]
            if page in self.rewrites:
                return self._rewritten(environ, start_response, self.rewrites[page])
            if page in self.stalled:
                self.stalled[page].wait(PATIENCE)
            if page in self.held:
                return self._held(b"".join(self.app(environ, start_response)), self.held[page])
            return self.app(environ, start_response)
        finally:
            with self.changed:
                self.in_flight -= 1
                self.changed.notify_all()

    @staticmethod
    def _held(body: bytes, until: threading.Event) -> Iterator[bytes]:
        yield b""  # the status and headers go now
        until.wait(PATIENCE)
        yield body

    def _rewritten(self, environ: dict[str, Any], start_response: Start, rewrite: Rewrite) -> list[bytes]:
        answered: list[Any] = []
        body = json.loads(b"".join(self.app(environ, lambda status, headers: answered.append((status, headers)))))
        rewrite(body)
        text = json.dumps(body).encode()
        status, headers = answered[0]
        kept = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*kept, ("Content-Length", str(len(text)))])
        return [text]

    def pages(self) -> list[int]:
        return [int(s.split("&")[0].removeprefix("page=")) for s in self.seen if s.startswith("page=")]

    def wait_for(self, condition: Callable[[], bool]) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout=PATIENCE)

    def wait_for_briefly(self, condition: Callable[[], bool]) -> bool:
        """For what must not happen: a wait long enough for it to happen if the code were wrong (on a machine
        that is slow, the check is weaker, never wrong)."""
        with self.changed:
            return self.changed.wait_for(condition, timeout=0.5)


@pytest.fixture
def wire() -> Iterator[tuple[Wire, str]]:
    store = Store()
    load_seed(API_SEED, store)
    front = Wire(EmulatorApp(store, Settings(limits=Limits.off(), latency_ms=20)))
    with BackgroundServer(front) as server:  # type: ignore[arg-type]
        yield front, server.url
    store.close()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client() as client:
        yield client


@pytest.fixture(autouse=True)
def no_thread_left_or_exception_printed(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every test ends with no thread fetching a page ahead, and no thread having died of an exception."""
    died: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(f"{args.exc_type.__name__}: "
                                                                          f"{args.exc_value}"))
    yield died
    assert after_their_exchange(ahead_threads()) == []
    assert died == []


def client_for(url: str, http: httpx.Client, **kwargs: Any) -> NexudusClient:
    kwargs.setdefault("credentials", ADMIN)
    kwargs.setdefault("auth_mode", "basic")  # no token request: the requests seen are the reads'
    kwargs.setdefault("limits", ClientLimits(min_interval_ms=0, requests_per_minute=None, requests_per_hour=None))
    client = NexudusClient(url, http, **kwargs)
    client.page_size = 2
    return client


def ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == AHEAD]


def after_their_exchange(threads: list[threading.Thread]) -> list[threading.Thread]:
    """The threads still running once each has had the time to end its exchange on the wire (a read that is left
    does not wait for that exchange; it ends on its own)."""
    for thread in threads:
        thread.join(PATIENCE)
    return [t for t in threads if t.is_alive()]


# --- the overlap, and nothing more on the wire -----------------------------------------------------

def test_the_next_page_is_asked_for_while_the_caller_still_holds_the_one_before(wire: tuple[Wire, str],
                                                                               http: httpx.Client) -> None:
    front, url = wire
    client = client_for(url, http)
    with contextlib.closing(client.pages(COMPLETIONS)) as pages:
        first = next(pages)
        # Nothing more is asked of the read: the request for page 2 is on its way all the same.
        assert front.wait_for(lambda: front.pages()[:2] == [1, 2]), front.seen
        rest = list(pages)
    assert len(first) == 2 and [len(page) for page in rest] == [2, 1]
    assert front.pages() == [1, 2, 3] and client.stats.requests == 3  # nothing asked past the last page


def test_pages_are_asked_for_one_after_the_other_up_to_two_past_the_one_the_caller_holds(
        wire: tuple[Wire, str], http: httpx.Client) -> None:
    """Each request goes as soon as the one before is answered, before the caller has taken that answer in; never
    more than PAGES_AHEAD pages past the page the caller holds, nor past the last page the total promised."""
    front, url = wire
    client = client_for(url, http)
    client.page_size = 1
    with contextlib.closing(client.pages(COMPLETIONS)) as pages:
        held = [next(pages)]  # page 1 in hand: pages 2 and 3 are asked for, one after the other
        assert front.wait_for(lambda: front.pages() == [1, 2, 3] and front.in_flight == 0), front.seen
        assert not front.wait_for_briefly(lambda: len(front.seen) > 3), front.seen  # page 4 waits for room
        held.append(next(pages))  # page 2 in hand: room for page 4
        assert front.wait_for(lambda: front.pages() == [1, 2, 3, 4] and front.in_flight == 0), front.seen
        held += list(pages)
    assert [[r["Id"] for r in page] for page in held] == [[r["Id"]] for page in held for r in page]
    assert len({r["Id"] for page in held for r in page}) == 5
    assert front.pages() == [1, 2, 3, 4, 5] and client.stats.requests == 5  # nothing asked past the last page
    assert PAGES_AHEAD == 2


@pytest.mark.parametrize(("settings", "first", "expected"), [
    ({}, None, ["page=1&size=2", "page=2&size=2", "page=3&size=2"]),
    ({"envelope": "modern"}, None, ["page=1&size=2", "page=2&size=2", "page=3&size=2"]),
    # A server that serves fewer than asked: its cap is learned from page 1, the rest asked at it.
    ({"max_page_size": 2}, 1000, ["page=1&size=1000", "page=2&size=2", "page=3&size=2"]),
    # `count` fetched page 1; the read goes on from it.
    ({}, "count", ["page=1&size=2", "page=2&size=2", "page=3&size=2"]),
])
def test_a_read_to_its_end_sends_the_requests_it_always_did_in_order(wire: tuple[Wire, str], http: httpx.Client,
                                                                     settings: dict[str, Any], first: Any,
                                                                     expected: list[str]) -> None:
    front, url = wire
    for name, value in settings.items():
        setattr(front.app.settings, name, value)
    client = client_for(url, http)
    if first == 1000:
        client.page_size = 1000
    start = client.count(COMPLETIONS)[1] if first == "count" else None
    records = client.list_all(COMPLETIONS, first=start)
    assert sorted(r["Id"] for r in records) == sorted({r["Id"] for r in records}) and len(records) == 5
    assert front.seen == expected
    assert client.stats.requests == len(expected)


def test_a_request_between_pages_waits_for_the_page_fetched_ahead(wire: tuple[Wire, str], http: httpx.Client) -> None:
    front, url = wire
    client = client_for(url, http)
    found = []
    for _ in client.pages(COMPLETIONS):
        found.append(len(client.list_all(COWORKERS)))  # the caller's own read of two pages, mid-read
    assert found == [3, 3, 3]
    assert sorted(front.pages()) == [1, 1, 1, 1, 2, 2, 2, 2, 3] and len(front.seen) == 9
    assert front.most_in_flight == 1  # one request in flight at any time, whichever thread sent it


# --- the handoff: a page is handed over once the request for the next is on the wire ---------------

class Traced(httpx.BaseTransport):
    """httpx's own transport, noting in `events` ("sent", N) as the request for page N is all on the wire (the trace
    httpcore gives the client); with `silent`, it gives none, as a transport that does not trace."""

    def __init__(self, events: list[tuple[str, int]], *, silent: bool = False) -> None:
        self.inner = httpx.HTTPTransport()
        self.events = events
        self.silent = silent

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        told = request.extensions.get("trace")
        page = int(request.url.params.get("page", "0"))
        if self.silent:
            request.extensions = {k: v for k, v in request.extensions.items() if k != "trace"}
        elif told is not None:
            def trace(event: str, info: dict[str, Any]) -> None:
                if event == "http11.send_request_body.complete":
                    self.events.append(("sent", page))
                told(event, info)

            request.extensions = {**request.extensions, "trace": trace}
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def read_noting_handoffs(client: NexudusClient, events: list[tuple[str, int]],
                         release: dict[int, threading.Event] | None = None) -> list[int]:
    """Read the completions a record a page, noting ("handed", N) as page N reaches the caller (and setting
    `release[N + 1]`, when there is one: the server may answer page N + 1 now); the Ids read."""
    client.page_size = 1
    ids = []
    for number, page in enumerate(client.pages(COMPLETIONS), start=1):
        events.append(("handed", number))
        if release and number + 1 in release:
            release[number + 1].set()
        ids += [r["Id"] for r in page]
    return ids


def test_a_page_is_handed_over_once_the_request_for_the_next_is_on_the_wire(
        wire: tuple[Wire, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """So the server works on the next page while the caller decodes this one, rather than the caller's decoding
    holding the next request back. Only httpcore's trace can end the wait here: the bound is made long, and the
    server answers pages 3 to 5 only once the caller has the page before (so no answer has begun either)."""
    front, url = wire
    monkeypatch.setattr("reconciler.client.HANDOFF", PATIENCE)
    for number in (3, 4, 5):
        front.stalled[number] = threading.Event()
    events: list[tuple[str, int]] = []
    started = time.monotonic()
    with httpx.Client(transport=Traced(events)) as http:
        ids = read_noting_handoffs(client_for(url, http), events, release=front.stalled)
    assert time.monotonic() - started < PATIENCE / 2  # not the bound (nor the server's wait for the caller)
    assert len(ids) == len(set(ids)) == 5 and front.pages() == [1, 2, 3, 4, 5]
    # Page 1 is the caller's own request; pages 2 to 4 come from the thread, each once page N + 1 is sent.
    for number in (2, 3, 4):
        assert events.index(("sent", number + 1)) < events.index(("handed", number)), events


def test_a_transport_that_does_not_trace_holds_no_page_back(wire: tuple[Wire, str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the trace nothing says a request is on the wire: each page is handed over as soon as it is in, as it
    always was. Here the server answers page 3 only once the caller has page 2 (and the bound is long)."""
    front, url = wire
    monkeypatch.setattr("reconciler.client.HANDOFF", PATIENCE)
    front.stalled[3] = threading.Event()
    sent: list[tuple[str, int]] = []
    handed: list[tuple[str, int]] = []
    started = time.monotonic()
    with httpx.Client(transport=Traced(sent, silent=True)) as http:
        ids = read_noting_handoffs(client_for(url, http), handed, release=front.stalled)
    assert time.monotonic() - started < PATIENCE / 2  # not the bound: page 2 came before page 3's answer
    assert len(ids) == 5 and front.pages() == [1, 2, 3, 4, 5] and sent == []
    assert handed == [("handed", n) for n in range(1, 6)]


def test_a_page_ahead_waiting_for_its_turn_holds_no_page_back(wire: tuple[Wire, str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The pacing of the next request (here half a second between requests) is not waited for by the caller."""
    front, url = wire
    monkeypatch.setattr("reconciler.client.HANDOFF", PATIENCE)
    events: list[tuple[str, int]] = []
    paced = ClientLimits(min_interval_ms=500, requests_per_minute=None, requests_per_hour=None)
    with httpx.Client(transport=Traced(events)) as http:
        ids = read_noting_handoffs(client_for(url, http, limits=paced), events)
    assert len(ids) == 5 and front.pages() == [1, 2, 3, 4, 5]
    for number in (2, 3, 4):  # handed over while the thread waits to send the next
        assert events.index(("handed", number)) < events.index(("sent", number + 1)), events


# --- leaving a read --------------------------------------------------------------------------------

class Stop(Exception):
    """The caller's own reason to leave a read."""


@pytest.mark.parametrize("how", ["break", "exception", "close"])
def test_leaving_a_read_leaves_no_thread_and_loses_no_exception(wire: tuple[Wire, str], http: httpx.Client,
                                                                 capsys: pytest.CaptureFixture[str], how: str) -> None:
    front, url = wire
    client = client_for(url, http)
    if how == "break":
        with contextlib.closing(client.pages(COMPLETIONS)) as pages:
            for _ in pages:
                break
    elif how == "exception":
        with pytest.raises(Stop, match="the caller's own"):
            for _ in client.pages(COMPLETIONS):
                raise Stop("the caller's own")
    else:
        pages = client.pages(COMPLETIONS)
        next(pages)
        pages.close()
    assert after_their_exchange(ahead_threads()) == []
    assert front.pages() in ([1], [1, 2], [1, 2, 3])  # at most the pages asked for ahead, never more
    assert client.stats.requests == len(front.seen)
    assert capsys.readouterr().err == ""


def test_an_error_on_a_page_fetched_ahead_for_a_read_left_is_let_go(wire: tuple[Wire, str], http: httpx.Client,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    front, url = wire
    front.faults[2] = lambda: ("200 OK", [("Content-Type", "application/json")], b'{"Records": [')
    client = client_for(url, http)
    pages = client.pages(COMPLETIONS)
    next(pages)
    assert front.wait_for(lambda: front.pages()[:2] == [1, 2] and front.in_flight == 0)
    pages.close()  # page 2's MalformedAnswer is nobody's: not raised, not printed
    assert after_their_exchange(ahead_threads()) == [] and capsys.readouterr().err == ""


class Throttled:
    """Page 2 throttled with a wait the client would sleep through; `waiting` is set once it does."""

    def __init__(self, front: Wire, client: NexudusClient) -> None:
        self.waiting = threading.Event()
        self.reasons: list[str] = []
        front.faults[2] = lambda: ("429 Too Many Requests", [("Retry-After", str(int(FOREVER)))],
                                   f"Wait {FOREVER:.0f} seconds".encode())
        client.wait_listener = self.heard
        client.report_every = FOREVER  # told once, as the wait starts: then one sleep of minutes

    def heard(self, left: float, reason: str) -> None:
        self.reasons.append(reason)
        self.waiting.set()


def test_leaving_a_read_ends_the_throttle_wait_of_its_page_ahead(wire: tuple[Wire, str], http: httpx.Client) -> None:
    front, url = wire
    client = client_for(url, http)
    throttled = Throttled(front, client)
    pages = client.pages(COMPLETIONS)
    next(pages)
    assert throttled.waiting.wait(PATIENCE)  # the page ahead sleeps through a wait of minutes
    closing = threading.Thread(target=pages.close)
    closing.start()
    closing.join(PATIENCE)  # not the minutes of the wait: leaving the read ends it
    assert not closing.is_alive() and ahead_threads() == []
    assert front.pages() == [1, 2] and "throttled GET" in throttled.reasons[0]


def test_ctrl_c_ends_the_wait_of_a_page_fetched_ahead(wire: tuple[Wire, str], http: httpx.Client) -> None:
    front, url = wire
    client = client_for(url, http)
    throttled = Throttled(front, client)
    pages = client.pages(COMPLETIONS)
    next(pages)
    # Ctrl-C during an apply sets the stop flag (interrupt.py); here, once page 2's wait has begun.
    def ctrl_c_once_waiting() -> None:
        if throttled.waiting.wait(PATIENCE):
            client.stop.set()

    ctrl_c = threading.Thread(target=ctrl_c_once_waiting)
    ctrl_c.start()
    with pytest.raises(Interrupted):
        next(pages)  # the caller, waiting for page 2, gets the stop as it would asking for it
    ctrl_c.join()
    pages.close()
    assert ahead_threads() == [] and front.pages() == [1, 2]


def test_ctrl_c_while_the_thread_asking_ahead_starts_leaves_the_read_all_the_same(wire: tuple[Wire, str],
                                                                                   http: httpx.Client,
                                                                                   monkeypatch: pytest.MonkeyPatch
                                                                                   ) -> None:
    """Under load the caller may wait a while for the thread it starts to run: a Ctrl-C then still leaves the read,
    and page 2's 500 is not retried by a thread nobody holds."""
    front, url = wire
    front.faults[2] = lambda: ("500 Internal Server Error", [("Content-Type", "application/json")], b"{}")
    start = threading.Thread.start

    def start_then_ctrl_c(thread: threading.Thread) -> None:
        start(thread)
        if thread.name == AHEAD:
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start_then_ctrl_c)
    # The retry's wait is a real one, as in a run: the read is left during it, however loaded the machine (with
    # no wait at all the thread could retry before the caller, not yet scheduled again, had left the read).
    client = client_for(url, http)
    with pytest.raises(KeyboardInterrupt):
        list(client.pages(COMPLETIONS))
    assert after_their_exchange(ahead_threads()) == []
    assert front.pages() in ([1], [1, 2])  # not [1, 2, 2, 2, 2...]


def test_the_deadline_stops_a_page_fetched_ahead_as_it_stops_any_request(wire: tuple[Wire, str],
                                                                         http: httpx.Client) -> None:
    front, url = wire
    client = client_for(url, http)
    client.deadline = client.clock() + FOREVER / 2  # page 2's wait would end past it
    Throttled(front, client)
    got: list[list[dict[str, Any]]] = []
    with pytest.raises(DeadlineReached, match=r"deadline .* comes before the end of a 250 s \(4 min\) wait: stopped "
                                              r"cleanly before GET http://127\.0\.0\.1:\d+/api/content/coursecompletedlessons"):
        got.extend(client.pages(COMPLETIONS))
    assert len(got) == 1 and front.pages() == [1, 2]


# --- an error on the next page reaches the caller as it always did ---------------------------------

def html() -> tuple[str, list[tuple[str, str]], bytes]:
    return "200 OK", [("Content-Type", "text/html")], b"<html><title>Down for maintenance</title></html>"


def oops() -> tuple[str, list[tuple[str, str]], bytes]:
    return "500 Internal Server Error", [("Content-Type", "application/json")], b'{"Message": "Ooops!"}'


def refused() -> tuple[str, list[tuple[str, str]], bytes]:
    return "401 Unauthorized", [("Content-Type", "application/json")], b'{"Message": "Authorization denied"}'


def telling() -> tuple[str, list[tuple[str, str]], bytes]:
    """An answer that repeats a credential: it must never reach a message."""
    body = json.dumps({"Message": "bad paging for admin@example.com:admin-pw", "WasSuccessful": False})
    return "400 Bad Request", [("Content-Type", "application/json")], body.encode()


def far_off() -> tuple[str, list[tuple[str, str]], bytes]:
    return "429 Too Many Requests", [("Content-Type", "text/plain")], b"Wait 86400 seconds"


@pytest.mark.parametrize(("fault", "error"), [
    (html, MalformedAnswer), (oops, TransportError), (refused, AuthError), (telling, ValidationFailed),
    (far_off, ThrottledTooLong),
], ids=["html", "5xx", "401", "400-with-a-secret", "throttled-a-day"])
def test_an_error_on_the_page_fetched_ahead_reaches_the_caller_where_and_as_it_always_did(
        wire: tuple[Wire, str], http: httpx.Client, fault: Fault, error: type[ApiError]) -> None:
    front, url = wire
    front.faults[2] = fault
    options: dict[str, Any] = {"sleep": lambda seconds: None, "wall_clock": lambda: 1_800_000_000.0}
    got: list[list[dict[str, Any]]] = []
    with pytest.raises(error) as caught:
        got.extend(client_for(url, http, **options).pages(COMPLETIONS))
    assert len(got) == 1  # page 1 in the caller's hands, then the error, where asking for page 2 meets it
    # The very error (message, URL, status) asking for page 2 oneself gives, redacted alike.
    with pytest.raises(error) as asked:
        client_for(url, http, **options).page(COMPLETIONS, size=2, number=2)
    assert (str(caught.value), caught.value.url, caught.value.status) == \
        (str(asked.value), asked.value.url, asked.value.status)
    assert "admin-pw" not in str(caught.value) and "admin-pw" not in caught.value.url


# --- the checks across pages stay where they were, and nothing is asked past what the first page promised ----

def test_a_total_that_moves_is_caught_after_the_page_and_no_page_it_promises_is_fetched(wire: tuple[Wire, str],
                                                                                         http: httpx.Client) -> None:
    front, url = wire

    def grow(body: dict[str, Any]) -> None:
        body["TotalItems"] += 1

    front.rewrites[2] = grow
    got: list[list[dict[str, Any]]] = []
    with pytest.raises(PartialRead, match=r"\(page 2, size 2\): TotalItems changed from 5 to 6 during the read"):
        got.extend(client_for(url, http).pages(COMPLETIONS))
    # Page 3 (promised by page 1) may have been asked for while page 2 was checked; page 4, which only the moved
    # total would promise, never is.
    assert len(got) == 2 and after_their_exchange(ahead_threads()) == [] and front.pages() in ([1, 2], [1, 2, 3])


def test_a_record_seen_twice_is_caught_before_the_page_is_handed_over(wire: tuple[Wire, str],
                                                                     http: httpx.Client) -> None:
    front, url = wire
    first = http.get(f"{url}{COMPLETIONS}?page=1&size=2&orderBy=Id", auth=("admin@example.com", "admin-pw"))
    front.seen.clear()

    def repeat(body: dict[str, Any]) -> None:
        body["Records"][0] = first.json()["Records"][0]

    front.rewrites[2] = repeat
    got: list[list[dict[str, Any]]] = []
    with pytest.raises(PartialRead, match=rf"\(page 2, size 2\) repeated record {first.json()['Records'][0]['Id']} "
                                          "of an earlier page"):
        got.extend(client_for(url, http).pages(COMPLETIONS))
    assert len(got) == 1 and after_their_exchange(ahead_threads()) == [] and front.pages() in ([1, 2], [1, 2, 3])


CTRL_C_ON_THE_WIRE = """
import contextlib, os, signal, sys, threading
import httpx
from tests.test_prefetch import COMPLETIONS, PATIENCE, Wire, ahead_threads, after_their_exchange, client_for
from reconciler.emulator.app import EmulatorApp, Settings
from reconciler.emulator.limits import Limits
from reconciler.emulator.seed import load_seed
from reconciler.emulator.server import BackgroundServer
from reconciler.emulator.store import Store
from tests.conftest import API_SEED

store = Store()
load_seed(API_SEED, store)
front = Wire(EmulatorApp(store, Settings(limits=Limits.off())))
answer = threading.Event()

def slow():
    answer.wait(10)  # page 2 is answered once told (or after 10 s, when the read waited for it)
    return "503 Service Unavailable", [("Content-Type", "text/plain")], b"down"

def ctrl_c_once_on_the_wire():
    if front.wait_for(lambda: front.pages()[-1:] == [2] and front.in_flight == 1):
        os.kill(os.getpid(), signal.SIGINT)

front.faults[2] = slow
with BackgroundServer(front) as server, httpx.Client() as http:
    client = client_for(server.url, http)
    for where in ("waiting for page 2", "taking in page 1"):
        answer.clear()
        front.seen.clear()
        threading.Thread(target=ctrl_c_once_on_the_wire).start()
        try:
            with contextlib.closing(client.pages(COMPLETIONS)) as pages:
                for page in pages:
                    if where == "taking in page 1":
                        threading.Event().wait(PATIENCE)  # the caller's own work, which Ctrl-C ends
        except KeyboardInterrupt:
            print(f"Ctrl-C {where}: out while page 2 was still on the wire:", front.in_flight == 1)
        answer.set()
        print("threads left after their exchange:", after_their_exchange(ahead_threads()))
        front.wait_for(lambda: front.in_flight == 0)  # page 2's exchange over before the next round counts anew
        print("pages asked:", front.pages())
"""


def test_ctrl_c_while_a_page_is_on_the_wire_is_not_held_up_by_it() -> None:
    """A real SIGINT (as at a terminal, no stop flag: plan, report, export) while page 2's request is on the wire,
    the caller waiting for it or still taking in page 1: the read is left at once, not once the server answers;
    that exchange then ends on its own, and its 503 is not retried. In a process of its own, so the signal is
    its alone."""
    result = subprocess.run([sys.executable, "-c", CTRL_C_ON_THE_WIRE], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.stdout.splitlines() == [
        "Ctrl-C waiting for page 2: out while page 2 was still on the wire: True",
        "threads left after their exchange: []", "pages asked: [1, 2]",
        "Ctrl-C taking in page 1: out while page 2 was still on the wire: True",
        "threads left after their exchange: []", "pages asked: [1, 2]"], result.stdout + result.stderr
    assert result.returncode == 0 and result.stderr == ""
