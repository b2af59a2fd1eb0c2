"""The one place where HTTP happens: auth, pacing, retries, paging and error mapping for the Nexudus API.

Every request goes through one loop, `NexudusClient._exchange`: API requests by `request` (which maps
answers to errors), the token grant (sign-in, refresh, TOTP) by `_token_call`, with the same deadline,
pacing, timeouts, throttle waits, retries and -vv trace. Its steps are named: `_admit` (deadline, pacing,
auth), `_send`, `_goes_again` (classify an answer: throttled, renewed, retried, or final),
`_after_lost_answer`, `_trace`. The loop serves one request at a time, whichever thread sends it (`pages`
asks for the pages a read is promised in a thread of its own, at most two past the one its caller holds).
Every error leaving the client passes the one redactor (`redact.py`).
The client is handed its `httpx.Client` (or a transport), which is how the in-process emulator and the
real service share this code.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import math
import random
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, NotRequired, Required, TypedDict, Union

import httpx
import msgspec

from reconciler.config import ClientLimits, Credentials
from reconciler.errors import (
    ApiError,
    AuthError,
    DailyCapReached,
    DeadlineReached,
    Interrupted,
    MalformedAnswer,
    NotFoundError,
    PartialRead,
    SessionExpired,
    StopRun,
    ThrottledTooLong,
    TransportError,
    ValidationFailed,
    WriteRefused,
)
from reconciler.pacing import SLICE, Pacer, StopFlag, duration
from reconciler.redact import RedactingFilter, excerpt, redact, redact_error, remember

# The public names; the stop-the-run errors are re-exported for callers that import them from here.
__all__ = ["PAGE_SIZE", "AmbiguousWrite", "DailyCapReached", "DeadlineReached", "Interrupted", "NexudusClient", "Pacer",
           "Page", "PageRecords", "SessionExpired", "Stats", "StopRun", "ThrottledTooLong", "WriteRefused",
           "parse_json"]

log = logging.getLogger(__name__)
trace = logging.getLogger("reconciler.http")  # -vv: one line per request sent
trace.addFilter(RedactingFilter())  # the URLs are redacted as traced; this guards any other line of it

PAGE_SIZE = 1000  # the largest page asked for: the documented maximum (a bigger one is never trusted)
MAX_PAGES = 1_000_000  # a read without TotalItems stops here, whatever HasNextPage says
AHEAD = 2  # pages a read asks for past the one its caller holds (see `pages`)
# The longest a caller taking a page waits for the request of the next to be on the wire (see `_Ahead.take`).
HANDOFF = 0.005
SENT = "http11.send_request_body.complete"  # httpcore's trace event: a request is all on the wire
MAX_TRIES = 5
REQUEST_TIMEOUT = httpx.Timeout(60.0, connect=15.0)  # each connect, read and write
REQUEST_DEADLINE = 180.0  # one whole exchange, however the server trickles it
MAX_ANSWER_BYTES = 512 * 1024 * 1024
# Throttling of one request that never lets up (the server's own daily cap, say) stops the run once the
# waits it asked for add up to more than max_wait, or after this many answers whatever they asked.
MAX_THROTTLE_WAITS = 600
MAX_WAIT = 300.0  # the longest throttle wait slept through; a longer one stops the run (resume later)
REPORT_EVERY = 5.0  # with a wait listener, the longest slice of a wait between two reports of it
REAUTH_INTERVAL = 60.0  # a 401 within this long of a sign-in or refresh is the request's answer, not the session's
ENTITY_NAMES = {"coursecompletedlessons": "CourseCompletedLesson", "courses": "Course",
                "courselessons": "CourseLesson", "coursemembers": "CourseMember", "coworkers": "Coworker"}
_WAIT_N = re.compile(r"wait\s+(\d+(?:\.\d+)?|\.\d+)\s+second", re.IGNORECASE)
# Errors after which the server may have acted on the request (the answer was lost), as opposed to
# errors that prove it never arrived.
_AFTER_CODE = ("; the two-factor code may have been used: set NEXUDUS_TOTP to a fresh code and run again")
_MAYBE_SENT = (httpx.ReadError, httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.WriteError,
               httpx.WriteTimeout)


def _untrusted(error: BaseException) -> ssl.SSLCertVerificationError | None:
    """The certificate check that failed behind a connection error, if that is what it was."""
    seen: BaseException | None = error
    for _ in range(10):
        if seen is None or isinstance(seen, ssl.SSLCertVerificationError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _verify_message(error: ssl.SSLCertVerificationError) -> str:
    """What OpenSSL said of the certificate (an error made elsewhere than in a handshake may say less)."""
    return str(getattr(error, "verify_message", None) or getattr(error, "reason", None) or error)


class AmbiguousWrite(ApiError):
    """A write whose outcome is unknown: the request may have been done, but no answer came back, or one that is
    not the command envelope (an HTML page, JSON cut short, a success without the new Id)."""


class PageRecords(list[dict[str, Any]]):
    """A page's records, as `pages` hands them over, with `text`: the answer's body they were read from when it
    is UTF-8 JSON text that begins with its object (else None). Read again as the client reads a page in full
    (msgspec, then the standard library), its `Records` are these records (with every field, where a lean read
    kept only some); so the read cache writes the body away as it came rather than encoding every record again."""

    __slots__ = ("text",)

    def __init__(self, records: list[dict[str, Any]], text: bytes | None = None) -> None:
        super().__init__(records)
        self.text = text


@dataclass(frozen=True)
class Page:
    """One page of a listing as the server answered it, and the size it was asked for."""

    body: dict[str, Any]
    records: list[dict[str, Any]]
    size: int


class _ReadLeft(Exception):
    """Ends a thread fetching a page ahead once its read is left; never leaves the client."""


class _Gate:
    """Whether the thread asking ahead for a read may send, and whether it is sending. `drop` sets `left` and
    reads whether a request is on the wire under the lock under which the thread checks `left` and says it
    sends: so no request goes out once its read is left, and a read is never left waiting for an exchange it
    took for one not sent.

    Also how far the thread has got, for the caller's handoff (`_Ahead.take`), told under the read's condition
    `progress`: `sent_page`, the last page whose request is all on the wire (told by httpcore's trace of the
    exchange, `trace`), and `resting`, whether the thread has waited (pacing, a backoff, a throttle) since it last
    sent; and `traced`, whether the transport traces at all."""

    def __init__(self, progress: threading.Condition) -> None:
        self.left = threading.Event()
        self._lock = threading.Lock()
        self._on_wire = False
        self._progress = progress
        self.asking = 0  # the page the thread asks for now
        self.sent_page = 0
        self.resting = False
        self.traced = False  # whether the transport traces its exchanges (httpcore's do; an in-process one does not)

    def sending(self) -> None:
        """Just before a request goes: _ReadLeft once the read is left."""
        with self._lock:
            if self.left.is_set():
                raise _ReadLeft
            self._on_wire = True

    def sent(self) -> None:
        with self._lock:
            self._on_wire = False

    def leave(self) -> bool:
        """The read is left: whether a request is on the wire now (its exchange then ends on its own)."""
        with self._lock:
            self.left.set()
            return self._on_wire

    def wired(self) -> None:
        """The request for the page asked for now is all on the wire."""
        with self._progress:
            self.sent_page = max(self.sent_page, self.asking)
            self.resting = False
            self._progress.notify_all()

    def rest(self) -> None:
        """The thread waits before it sends again."""
        with self._progress:
            self.resting = True
            self._progress.notify_all()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's trace of an exchange (a request's `trace` extension), in the thread that sends it."""
        self.traced = True
        if event == SENT:
            self.wired()


class _Ahead:
    """Pages `first` to `last` of a read, asked for one after the other in a thread of its own while the caller
    takes in the pages before: each request goes as soon as the one before is answered, up to AHEAD pages past the
    page the caller holds. The thread only sends and receives; the caller decodes and checks each answer as it
    takes it (`take`), while the next request is on the wire.

    `take` hands over a page's answer, or raises what asking for it raised, as the caller asking for the page
    would have met it; its wait ends at Ctrl-C like any wait of the caller's. `drop` is for a read that is left
    (or that goes on otherwise): a request not yet sent is not sent, a wait ends, and whatever comes of it is let
    go (nothing is printed). `drop` returns once the thread has ended, unless an exchange is on the wire: a read
    left at Ctrl-C (or by a caller that stopped) is not held up by it. That exchange then ends on its own, within
    the request's time bounds, holding the client's lock, so the next request still waits for it: one at a time.
    """

    def __init__(self, fetch: Callable[[int, _Gate], httpx.Response], first: int, last: int) -> None:
        self.first, self.last = first, last
        self._answered = threading.Condition()  # guards `_answers`, `_held` and the gate's progress
        self.gate = _Gate(self._answered)
        self._answers: dict[int, httpx.Response | BaseException] = {}
        self._held = first - 1  # the page the caller holds
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(fetch,), name="reconciler-page-ahead", daemon=True)

    def start(self) -> None:
        """Start asking (apart from making it: a read holds its `_Ahead` before a Ctrl-C can come during the
        start, so that it is dropped whatever happens)."""
        self._thread.start()

    def _run(self, fetch: Callable[[int, _Gate], httpx.Response]) -> None:
        try:
            for number in range(self.first, self.last + 1):
                with self._answered:
                    while number - self._held > AHEAD and not self.gate.left.is_set():
                        self._answered.wait()
                    if self.gate.left.is_set():
                        return
                    self.gate.asking = number
                answer: httpx.Response | BaseException
                try:
                    answer = fetch(number, self.gate)
                except BaseException as e:  # the reader's to raise (`take`) or let go (`drop`), never the thread's
                    answer = e
                with self._answered:
                    self._answers[number] = answer
                    self._answered.notify_all()
                if isinstance(answer, BaseException):
                    return
        finally:
            self._done.set()
            with self._answered:
                self._answered.notify_all()

    def take(self, number: int) -> httpx.Response:
        """Page `number`'s answer, once it is in (the caller then holds that page: room for one more ahead).

        The thread sends the next request as soon as this answer is in, at the moment the caller sets about
        decoding this one: which holds the interpreter for a millisecond or so at a time, and so holds that
        request back. So the answer is handed over once the next request is all on the wire (the server then works
        on it while the caller works on this one), or the thread rests or has stopped, or HANDOFF has passed,
        whichever comes first: the order of requests and answers is the same either way. Over a transport that does
        not trace its exchanges (the local emulator's, in this process: no server works beside the caller), at once.
        """
        with self._answered:
            while number not in self._answers and not self._done.is_set():
                self._answered.wait()  # Ctrl-C ends it: the read is then left (`drop`)
            answer = self._answers.pop(number, None)
            self._held = number
            self._answered.notify_all()
            if number < self.last and self.gate.traced and not isinstance(answer, BaseException):
                until = time.monotonic() + HANDOFF
                gate = self.gate
                while not (gate.sent_page > number or gate.resting or number + 1 in self._answers
                           or self._done.is_set()):
                    left = until - time.monotonic()
                    if left <= 0:
                        break
                    self._answered.wait(left)
        if isinstance(answer, BaseException):
            raise answer
        assert answer is not None, f"page {number} is not among pages {self.first}-{self.last} of this read"
        return answer

    def drop(self) -> None:
        on_wire = self.gate.leave()
        with self._answered:
            self._answered.notify_all()
        started = self._thread.ident is not None
        if started and self._thread is not threading.current_thread() and not on_wire:
            self._done.wait()  # not sending: `left` ends it within a slice
        self._answers.clear()


@dataclass
class _Call:
    """One call through the choke point, and what its attempts so far have cost."""

    method: str
    path: str
    url: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # The token grant itself: no session header, no renewal on a 401, counted as a request but not as a
    # read or a write of the API, and its failures worded for sign-in.
    grant: bool = False
    resend: bool = True  # may go again after the server may have acted on it
    tries: int = 0
    throttles: int = 0  # throttle answers in a row
    waited: float = 0.0  # seconds of throttle waits in a row
    slept_before: float = 0.0  # the client's `slept` when the call began: its waits are the difference
    renewed: bool = False

    @property
    def write(self) -> bool:
        return self.method != "GET" and not self.grant


@dataclass
class Stats:
    requests: int = 0
    reads: int = 0
    writes: int = 0
    throttled: int = 0
    retries: int = 0
    by_path: dict[str, int] = field(default_factory=dict)


class NexudusClient:
    """A paced, retrying, authenticated client for one Nexudus base URL.

    Every wait is bounded. A throttle wait longer than `max_wait` seconds, throttling that never lets up,
    a session that cannot be renewed without a new two-factor code, and a request or wait that would go
    past `deadline` (an instant of `clock`, the monotonic clock) raise a StopRun: the run stops cleanly
    and is resumed later. `wall_clock` (epoch seconds) only turns waits into UTC times for messages and
    reads Retry-After dates.
    """

    def __init__(self, base_url: str, http: httpx.Client, *, credentials: Credentials | None = None,
                 auth_mode: str = "token", limits: ClientLimits | None = None, max_tries: int = MAX_TRIES,
                 sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, rng: random.Random | None = None,
                 max_wait: float = MAX_WAIT, deadline: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.credentials = credentials or Credentials()
        self.auth_mode = auth_mode
        self.max_tries = max_tries
        # Ctrl-C during an apply sets `stop`: every wait then ends within a fraction of a second, raising
        # Interrupted (the default sleep watches the flag; an injected one is checked after it returns).
        self.stop = StopFlag()
        self.sleep = sleep or self._sleep
        self.slept = 0.0  # seconds of every wait so far (pacing, backoff, throttling)
        self.clock = clock
        self.wall_clock = wall_clock
        self.max_wait = max_wait
        self.deadline = deadline
        # Told of every wait as it goes (seconds left, and what for: "for the write budget (...)"), at least
        # every `report_every` seconds of it: apply's progress sets it, so that no wait goes unexplained.
        self.wait_listener: Callable[[float, str], None] | None = None
        self.report_every = REPORT_EVERY
        self.pacer = Pacer(limits or ClientLimits(), clock=clock, sleep=self._wait, wait=self._pacing_wait)
        self.rng = rng or random.Random()
        self.stats = Stats()
        self.page_size = PAGE_SIZE  # lowered for the rest of the run once the server is seen to serve fewer
        self.ignored_filters: set[str] = set()  # "path?filter" the server was seen to ignore in this run
        # Other facts about the target this run saw ("systemid-dropped-on-create", "systemid-absent-from-lists"),
        # which a target profile that says otherwise is checked against.
        self.observed: set[str] = set()
        # Sent as `client_id` at sign-in; a refresh must carry the same value in its `client_id` header. One of
        # this client's own: a refresh invalidates the earlier refresh tokens of its client, and with the username
        # (what the server takes when none is sent) one run's refresh would end the session of another run of
        # the same account (a CI plan beside a long apply), which with two-factor sign-in cannot sign in again.
        self.client_id: str | None = f"reconciler-{secrets.token_hex(8)}" if self.credentials.username else None
        self._token: str | None = self.credentials.token
        self._refresh: str | None = None  # only the newest: a refresh invalidates the earlier ones
        self._expires: float | None = None
        self._refresh_margin = 0.0
        self._renewed_at: float | None = None  # clock() of the last sign-in or refresh
        self._totp_spent = False  # a code is good for seconds: it goes with the first sign-in only
        # One request in flight at a time, whichever thread sends it (a read fetches its next page in a
        # thread of its own): held by the one loop, the token grant and renewal included, and by the client's
        # other uses of the pacer, the session, the stats and the wait listener. Callers that read the pacer
        # themselves (apply's schedule and progress, doctor) do so between writes, when no read has a page in
        # flight. Reentrant: a request signs in or renews inside its own turn.
        self._lock = threading.RLock()
        self._local = threading.local()  # `left`: in a thread fetching a page ahead, set once its read is left
        remember(self.credentials.token, self.credentials.password)
        if self._basic:  # the header's value, which a server may echo whole
            remember(self._auth_header()["Authorization"].removeprefix("Basic "))

    # --- auth ------------------------------------------------------------------------------------

    def _auth_header(self) -> dict[str, str]:
        creds = self.credentials
        if self._basic:
            raw = f"{creds.username}:{creds.password}".encode()
            return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
        if self._token is None and creds.username and creds.password:
            self._sign_in()
        elif self._expires is not None and self.clock() > self._expires - self._refresh_margin:
            self._renew("the token is about to expire")
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    @property
    def _basic(self) -> bool:
        return self.auth_mode == "basic" and bool(self.credentials.username and self.credentials.password)

    def sign_in_now(self) -> float | None:
        """Sign in now rather than at the first request (for `doctor`); the token's lifetime in seconds when
        the server said it."""
        with self._lock, self._redacting():
            self._auth_header()
        return None if self._expires is None else self._expires - self.clock()

    def refresh_now(self) -> bool:
        """Trade the refresh token for new tokens now, with the client_id header; False if refused or none."""
        with self._lock, self._redacting():
            return self._refresh is not None and self._refresh_grant()

    def _renew_after_401(self) -> bool:
        """Renew the session for a 401, unless it was renewed so recently that the 401 is the request's own
        answer (the live service also answers 401 for a deleted record or a write naming one)."""
        creds = self.credentials
        if self._basic or not (self._refresh or (creds.username and creds.password)):
            return False
        if self._renewed_at is not None and self.clock() - self._renewed_at < REAUTH_INTERVAL:
            return False
        self._renew("the server answered 401")
        return True

    def _renew(self, why: str) -> None:
        """A new access token without replaying a two-factor code: refresh, else sign in again when the
        account needs no code, else stop the run and ask for a fresh code."""
        url = self.base_url + "/api/token"
        refused = False
        if self._refresh is not None:
            if self._refresh_grant():
                return
            refused = True
        creds = self.credentials
        if not (creds.username and creds.password):
            raise AuthError(f"the session ended ({why}) and cannot be renewed: the token in NEXUDUS_TOKEN is no "
                            "longer accepted and there is no NEXUDUS_USERNAME/NEXUDUS_PASSWORD to sign in again",
                            method="POST", url=url, status=401)
        if creds.totp is not None and self._totp_spent:
            how = "the token refresh was refused" if refused else "there is no refresh token"
            raise SessionExpired(f"the session ended ({why}) and {how}; signing in again needs a new two-factor "
                                 "code: set NEXUDUS_TOTP to a fresh code and resume", method="POST", url=url)
        self._sign_in(renewing=True)

    def _sign_in(self, *, renewing: bool = False) -> None:
        """The password grant, with the two-factor code the first time only."""
        creds = self.credentials
        url = self.base_url + "/api/token"
        if not (creds.username and creds.password):
            raise AuthError("there is no NEXUDUS_USERNAME/NEXUDUS_PASSWORD to sign in with", method="POST", url=url)
        form = {"grant_type": "password", "username": creds.username, "password": creds.password}
        if self.client_id:
            form["client_id"] = self.client_id
        if creds.totp is not None:
            if self._totp_spent:
                raise SessionExpired("signing in again needs a new two-factor code: set NEXUDUS_TOTP to a fresh "
                                     "code and resume", method="POST", url=url)
            form["totp"] = creds.totp
            self._totp_spent = True  # before sending: a code the server may have seen is never sent again
        status, body = self._token_call(form, {})
        if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            self._take_tokens(body)
            return
        error = body.get("error") if isinstance(body, dict) else None
        if error == "two_factor_auth_check":
            if renewing:
                raise SessionExpired("the session ended and signing in again needs a two-factor code (2FA is on "
                                     "for this account): set NEXUDUS_TOTP to a fresh code and resume",
                                     method="POST", url=url, status=status)
            raise AuthError(f"sign-in to {url} needs a two-factor code (2FA is on for this account): set "
                            "NEXUDUS_TOTP to a current code and run again", method="POST", url=url, status=status)
        if error == "must_reset_password":
            raise AuthError(f"sign-in to {url} was refused because the account must reset its password "
                            "(must_reset_password): set a new password in Nexudus, then update NEXUDUS_PASSWORD",
                            method="POST", url=url, status=status)
        detail = (body.get("error_description") or error) if isinstance(body, dict) else None
        raise AuthError(f"sign-in to {url} failed ({status}): {self._redact_said(str(detail or 'no reason given'))}",
                        method="POST", url=url, status=status)

    def _refresh_grant(self) -> bool:
        """Trade the refresh token for new tokens; False (and the refresh token dropped) if refused."""
        form = {"grant_type": "refresh_token", "refresh_token": self._refresh or ""}
        status, body = self._token_call(form, {"client_id": self.client_id} if self.client_id else {})
        if status == 200 and isinstance(body, dict) and isinstance(body.get("access_token"), str):
            self._take_tokens(body)
            return True
        error = (body.get("error_description") or body.get("error")) if isinstance(body, dict) else None
        log.info("the token refresh was refused (%s: %s)", status, self._redact_said(str(error or "no reason given")))
        self._refresh = None
        return False

    def _take_tokens(self, body: dict[str, Any]) -> None:
        self._token = str(body["access_token"])
        refresh = body.get("refresh_token")
        self._refresh = refresh if isinstance(refresh, str) and refresh else None
        remember(self._token, self._refresh)
        expires_in = body.get("expires_in")
        lifetime = float(expires_in) if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) \
            else None
        self._expires = self.clock() + lifetime if lifetime is not None else None
        # Refresh a little before expiry: a minute for the usual week-long token, less for short ones.
        self._refresh_margin = min(60.0, lifetime / 10) if lifetime is not None else 0.0
        self._renewed_at = self.clock()

    def _token_call(self, form: dict[str, str], headers: dict[str, str]) -> tuple[int, Any]:
        """POST /api/token through the choke point; (status, JSON) of the server's last answer.

        A form carrying a two-factor code is never resent after the server may have read it (a lost
        answer or a 5xx); a throttle answer is resent, since the server refused it unread.
        """
        call = _Call("POST", "/api/token", self.base_url + "/api/token", form=form, headers=headers, grant=True,
                     resend="totp" not in form)
        reply = self._exchange(call)
        return reply.status_code, _json_or_none(reply)

    # --- bounded waits -----------------------------------------------------------------------------

    def _check_deadline(self, method: str, url: str) -> None:
        if self.deadline is not None and self.clock() > self.deadline:
            raise DeadlineReached(f"the run's deadline ({self._utc_at(self.deadline)}) has passed: stopped cleanly "
                                  f"before {method} {url}; resume with a new run", method=method, url=url)

    def wait(self, seconds: float, *, of: float | None = None, reason: str = "") -> None:
        """Sleep as the client does (for a caller pacing itself, possibly in slices `of` a longer wait),
        reported to the wait listener with `reason`: bounded by the deadline (the whole wait is checked
        against it), ended by `stop`."""
        with self._lock:
            self._wait(seconds, whole=of, reason=reason)

    def _pacing_wait(self, seconds: float, budget: str) -> None:
        self._wait(seconds, reason=f"for the {budget}")

    def _wait(self, seconds: float, method: str = "", url: str = "", *, whole: float | None = None,
              reason: str = "") -> None:
        """Every sleep of the client (pacing, backoff, throttling): none may end past the run's deadline, and
        one that `stop` cuts short raises Interrupted. With a wait listener, it is told of the wait (the
        seconds left and `reason`) as it starts and then every `report_every` seconds, the wait being slept
        in slices that long."""
        whole = max(seconds, whole or 0.0)
        gate = getattr(self._local, "gate", None)
        if gate is not None:  # a thread asking ahead: its caller does not wait for it to send (`_Ahead.take`)
            gate.rest()
        if self.deadline is not None and self.clock() + whole > self.deadline:
            before = f" before {method} {url}" if method else ""
            raise DeadlineReached(f"the run's deadline ({self._utc_at(self.deadline)}) comes before the end of a "
                                  f"{duration(whole)} wait: stopped cleanly{before}; resume with a new run",
                                  method=method, url=url)
        self._check_stop(method, url)
        listener = self.wait_listener
        if listener is None:
            self.sleep(seconds)
            self.slept += seconds
            self._check_stop(method, url)
            return
        left = seconds
        while left > 1e-9:
            listener(left, reason)
            step = min(left, self.report_every)
            self.sleep(step)
            self.slept += step
            left -= step
            self._check_stop(method, url)

    def _sleep(self, seconds: float) -> None:
        """The default sleep: the stop flag's, in slices (Ctrl-C ends it), and in a thread fetching a page
        ahead, ended as well once the read it fetches for is left."""
        read_left = getattr(self._local, "left", None)
        if read_left is None:
            self.stop.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while not (self.stop.is_set or read_left.is_set()):
            remaining = end - time.monotonic()
            if remaining <= 0:
                return
            read_left.wait(min(remaining, SLICE))

    def _check_stop(self, method: str = "", url: str = "") -> None:
        if self.stop.is_set:
            raise Interrupted("interrupted", method=method, url=self._redact(url))
        self._check_read_left()

    def write_slot(self) -> tuple[float, str]:
        """`Pacer.next_slot` for a write: seconds until one may be sent, and the budget it waits for; DailyCapReached
        (saying the time of day the cap frees a write) when the daily budget is spent."""
        try:
            return self.pacer.next_slot(write=True)
        except DailyCapReached as e:
            raise self._dated(e) from None

    def _dated(self, e: DailyCapReached) -> DailyCapReached:
        """The daily cap's stop with the time of day it frees a write (the pacer's clock is monotonic)."""
        if e.resume_after is None:
            return e
        return DailyCapReached(f"{e}, at {_utc(self.wall_clock() + e.resume_after)}", resume_after=e.resume_after)

    def _check_read_left(self) -> None:
        """In a thread fetching a page ahead: stop (sending nothing more, waiting no longer) once its read is left."""
        read_left = getattr(self._local, "left", None)
        if read_left is not None and read_left.is_set():
            raise _ReadLeft

    def _wait_out_throttle(self, reply: httpx.Response, method: str, url: str, throttles: int,
                           waited: float = 0.0) -> float:
        """Sleep as the throttle answer asks, or stop the run when that wait is not one to sleep through;
        returns the wait, which the caller adds up over one request's throttled answers."""
        status = reply.status_code
        wait = _retry_after(reply, self.wall_clock())
        if wait > self.max_wait:
            until = _utc(self.wall_clock() + wait)
            raise ThrottledTooLong(f"{method} {url} was throttled ({status}): the server asked to wait "
                                   f"{duration(wait)}, until {until}, longer than the {duration(self.max_wait)} "
                                   f"this run waits; stopped cleanly: resume after {until}",
                                   method=method, url=url, status=status, resume_after=wait)
        if throttles > MAX_THROTTLE_WAITS or waited + wait > self.max_wait:
            # The daily cap allows a write again once the writes of the last 24 hours leave room under it as they
            # leave the window; those this machine knows of (this run's, and its journals') say when.
            frees = self.pacer.daily_write_frees() if method != "GET" else None
            when = (f"resume after {_utc(self.wall_clock() + frees)}, when the writes this machine made in the last 24 "
                    "hours leave room under the daily cap" if frees is not None else "resume in a few hours")
            raise ThrottledTooLong(f"{method} {url}: the server keeps throttling ({status}, {throttles} times in a row "
                                   f"over {duration(waited)}, though each wait was kept); its daily write cap may be "
                                   f"spent: stopped cleanly, {when}", method=method, url=url, status=status,
                                   resume_after=frees)
        log.info("throttled (%s) on %s %s; waiting %s", status, method, self._redact(url), duration(wait))
        path = httpx.URL(url).path or url
        self._wait(wait, method, url, reason=f"for the server: it throttled {method} {self._redact(path)} ({status}) "
                                             f"and asked for {duration(wait)}")
        return wait

    def _utc_at(self, instant: float) -> str:
        """A `clock` instant as a UTC time."""
        return _utc(self.wall_clock() + (instant - self.clock()))

    def _redact(self, text: str) -> str:
        """Text with every credential blanked out (ours, the two-factor code, anything shaped like one)."""
        return redact(text, [*self.credentials.secrets(), self._token, self._refresh])

    def _redact_said(self, text: str) -> str:
        """`_redact` for what a server wrote, which may echo the password: a short one too, where it stands alone."""
        return redact(text, [*self.credentials.secrets(), self._token, self._refresh],
                      words=[self.credentials.password])

    def _said(self, reply: httpx.Response) -> str:
        return self._redact_said(_message(reply))

    # --- the choke point ---------------------------------------------------------------------------

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                body: Any = None, retry_unsafe: bool = True) -> httpx.Response:
        """Send one API request with pacing, auth, throttling waits, bounded retries and error mapping.

        `retry_unsafe=False` (creates) never resends after the server may have acted: it raises
        AmbiguousWrite so that the caller can re-read before deciding to try again. A StopRun (a wait
        too long, throttling without end, a session that needs a new code, the deadline) ends the run.
        """
        call = _Call(method, path, self.base_url + path, params=params, json=body, resend=retry_unsafe)
        with self._redacting():
            return self._check(method, call.url, path, self._exchange(call))

    def _exchange(self, call: _Call) -> httpx.Response:
        """Attempts until an answer is final: each one admitted (deadline, pacing, auth), sent and
        classified; a failed or refused attempt either waits and goes again or raises."""
        with self._lock:
            call.slept_before = self.slept
            while True:
                headers = self._admit(call)
                sent = time.perf_counter()
                gate = getattr(self._local, "gate", None)  # a page asked for ahead: `drop` lets it be
                try:
                    try:
                        reply = self._send(call.method, call.url, params=call.params, json=call.json,
                                           data=call.form, headers=headers, told=None if call.grant else gate)
                    finally:
                        if gate is not None:
                            gate.sent()
                except httpx.HTTPError as e:
                    self.pacer.after(write=call.write)
                    self._trace(call, type(e).__name__, sent)
                    self._after_lost_answer(call, e)
                    continue
                self.pacer.after(write=call.write)
                self._trace(call, str(reply.status_code), sent)
                if not self._goes_again(call, reply):
                    return reply

    def _admit(self, call: _Call) -> dict[str, str]:
        """Before each attempt: the run's deadline, the request budget, the session; the headers to send.
        A page fetched ahead for a read that has been left is not sent."""
        self._check_read_left()
        self._check_deadline(call.method, call.url)
        try:
            self.pacer.before(write=call.write)
        except DailyCapReached as e:
            raise self._dated(e) from None
        headers = {"Accept": "application/json", **call.headers}
        if not call.grant:
            headers.update(self._auth_header())
        gate = getattr(self._local, "gate", None)
        if gate is not None:  # a page asked for ahead: the last look at its read (nothing counted or sent after)
            gate.sending()
        self._count(call)
        call.tries += 1
        return headers

    def _count(self, call: _Call) -> None:
        self.stats.requests += 1
        if call.grant:
            return
        route = call.path.split("?")[0]
        self.stats.by_path[route] = self.stats.by_path.get(route, 0) + 1
        if call.write:
            self.stats.writes += 1
        else:
            self.stats.reads += 1

    def _after_lost_answer(self, call: _Call, error: httpx.HTTPError) -> None:
        """No answer came (a connection refused, a timeout, a cut answer): back off and go again, unless the
        call may have been acted on and must not be resent, or its tries are spent."""
        call.throttles, call.waited = 0, 0.0
        reason = type(error).__name__
        untrusted = _untrusted(error)
        if untrusted is not None:  # the handshake refused the server: nothing was sent; trying again changes nothing
            raise TransportError(f"cannot reach {call.url}: its TLS certificate is not trusted "
                                 f"({_verify_message(untrusted)}); nothing was sent (a certificate "
                                 "of a private authority is trusted through SSL_CERT_FILE)",
                                 method=call.method, url=call.url) from None
        if call.grant:
            # A two-factor code goes once: whatever the failure, the server may have read it.
            if not call.resend or call.tries >= self.max_tries:
                raise TransportError(f"cannot reach {call.url} ({reason}){'' if call.resend else _AFTER_CODE}",
                                     method=call.method, url=call.url) from None
        else:
            if not call.resend and isinstance(error, _MAYBE_SENT):
                raise AmbiguousWrite(f"no answer to {call.method} {call.url} ({reason}); the write may have been "
                                     "done", method=call.method, url=call.url) from None
            if call.tries >= self.max_tries:
                raise TransportError(f"cannot reach {call.url} after {call.tries} tries ({reason}); nothing was "
                                     "decided on it: try again later", method=call.method, url=call.url) from None
        self._backoff(call.tries, f"{call.method} {self._redact(call.path)} ({reason})")

    def _goes_again(self, call: _Call, reply: httpx.Response) -> bool:
        """Whether an answer sends the call again: after the throttle wait it asks for, on a renewed session
        (a 401), or after a backoff (a 5xx); raises when a 5xx may not be resent or the tries are spent."""
        status = reply.status_code
        if status in (409, 429) and _is_throttle(reply):
            call.throttles += 1
            self.stats.throttled += 1
            call.waited += self._wait_out_throttle(reply, call.method, call.url, call.throttles, call.waited)
            call.tries -= 1  # refused unread: it costs no try
            return True
        call.throttles, call.waited = 0, 0.0
        if status == 401 and not call.grant and not call.renewed and self._renew_after_401():
            call.renewed = True
            call.tries -= 1
            return True
        if status < 500:
            return False
        if call.grant and (not call.resend or call.tries >= self.max_tries):
            raise TransportError(f"{status} from {call.method} {call.url}: {self._said(reply)}"
                                 f"{'; try again later' if call.resend else _AFTER_CODE}",
                                 method=call.method, url=call.url, status=status)
        if not call.resend:
            raise AmbiguousWrite(f"{status} from {call.method} {call.url}: {self._said(reply)}",
                                 method=call.method, url=call.url, status=status)
        if call.tries >= self.max_tries:
            raise TransportError(f"{status} from {call.method} {call.url} after {call.tries} tries: "
                                 f"{self._said(reply)}; the service seems to be down: try again later",
                                 method=call.method, url=call.url, status=status)
        self._backoff(call.tries, f"{call.method} {self._redact(call.path)} ({status})")
        return True

    def _trace(self, call: _Call, outcome: str, sent: float) -> None:
        """The -vv HTTP trace: one line per request sent, every credential redacted."""
        if not trace.isEnabledFor(logging.DEBUG):
            return
        url = httpx.URL(call.url).copy_merge_params(call.params) if call.params else httpx.URL(call.url)
        notes = [f"try {call.tries}"] if call.tries > 1 else []
        if (waited := self.slept - call.slept_before) > 0:
            notes.append(f"waited {duration(waited)}")
        elapsed = (time.perf_counter() - sent) * 1000
        trace.debug("%s %s %s %.0f ms%s", call.method, self._redact(str(url)), outcome, elapsed,
                    f" ({', '.join(notes)})" if notes else "")

    @contextmanager
    def _redacting(self) -> Iterator[None]:
        """Every error leaving the client with its message and URL through the one redactor."""
        try:
            yield
        except ApiError as e:
            redact_error(e)
            raise

    def _send(self, method: str, url: str, *, told: _Gate | None = None, **kwargs: Any) -> httpx.Response:
        """One exchange, bounded in time as a whole: a server that trickles its answer a byte at a time
        never trips the per-read timeout, so the body is read against a deadline as well. `told`: the gate of
        the page asked for ahead that this request is (not a token grant made on its way), told by httpcore's trace
        once the request is all on the wire (`_Ahead.take`)."""
        deadline = self.clock() + REQUEST_DEADLINE
        extensions = {"trace": told.trace} if told is not None else None
        with self.http.stream(method, url, timeout=REQUEST_TIMEOUT, extensions=extensions, **kwargs) as reply:
            chunks: list[bytes] = []
            size = 0
            for chunk in reply.iter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if self.clock() > deadline:
                    raise httpx.ReadTimeout(f"the answer took longer than {REQUEST_DEADLINE:.0f} s",
                                            request=reply.request)
                if size > MAX_ANSWER_BYTES:
                    raise httpx.ReadError(f"the answer is larger than {MAX_ANSWER_BYTES:,} bytes",
                                          request=reply.request)
            headers = [(k, v) for k, v in reply.headers.multi_items()
                       if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
            return httpx.Response(reply.status_code, headers=headers, content=b"".join(chunks),
                                  request=reply.request)

    def _backoff(self, tries: int, what: str) -> None:
        self.stats.retries += 1
        delay = min(30.0, 0.5 * 2 ** (tries - 1)) * (0.5 + self.rng.random())
        log.info("retrying %s in %.1f s", what, delay)
        self._wait(delay, reason=f"before retrying {what}")

    def _check(self, method: str, url: str, path: str, reply: httpx.Response) -> httpx.Response:
        status = reply.status_code
        if status == 401:
            # Reached only when a renewed (or fresh) session still gets 401: the answer is about this
            # request, and only a list read is surely a role question.
            entity = ENTITY_NAMES.get(_collection(path), "<Entity>")
            if method != "GET":
                raise WriteRefused(f"{method} {url}: the server refused this write (401: {self._said(reply)}); it "
                                   "answers so for a write that names a deleted or missing record",
                                   method=method, url=url, status=401)
            if not _is_collection(path):
                raise AuthError(f"GET {url}: the record could not be read (401: {self._said(reply)}): it was "
                                f"deleted, or the account lacks the {entity}-Read role", method=method, url=url,
                                status=401)
            raise AuthError(f"401 from {method} {url}: the account needs the {entity}-List role or full "
                            "administrator rights (or the credentials are wrong)", method=method, url=url, status=401)
        if status == 404:
            raise NotFoundError(f"404 from {method} {url}", method=method, url=url, status=404)
        if status == 400:
            raise ValidationFailed(f"400 from {method} {url}: {self._said(reply)}", method=method, url=url,
                                   status=400)
        if status >= 300:
            raise ApiError(f"{status} from {method} {url}: {self._said(reply)}", method=method, url=url,
                           status=status)
        if method != "GET":
            body = _json_or_none(reply)
            if not (isinstance(body, dict) and "WasSuccessful" in body) and status != 204:
                # Not the command envelope (a proxy's maintenance page, an answer cut short, an object that is not
                # it): whether the write was done is unknown, as when no answer came. The caller looks first.
                raise AmbiguousWrite(f"{method} {url} answered {status} with {_answer_kind(reply, body)}, not the "
                                     "command envelope: the write may or may not have been done", method=method,
                                     url=url, status=status)
            if isinstance(body, dict) and body.get("WasSuccessful") is False:
                raise ValidationFailed(f"{method} {url} was not successful: {self._said(reply)}", method=method,
                                       url=url, status=status)
        return reply

    # --- entity operations -----------------------------------------------------------------------

    def list_all(self, path: str, filters: Mapping[str, Any] | None = None, *,
                 first: Page | None = None) -> list[dict[str, Any]]:
        """Every record of a list endpoint (see `pages`)."""
        return [record for page in self.pages(path, filters, first=first) for record in page]

    def pages(self, path: str, filters: Mapping[str, Any] | None = None, *, first: Page | None = None,
              keep: Collection[str] | None = None) -> Generator[list[dict[str, Any]], None, None]:
        """Every record of a list endpoint, page by page as the server pages it (a caller that keeps only
        what it needs of each page holds one page at a time, not the whole list).

        Paging follows the answers, never our own `size`: the page size served is the number of records
        the first page holds when the server promises more; later pages are asked at that size so that
        page numbers mean the same to both sides. The read ends when `TotalItems` distinct records are
        in (or, without a total, when the server says there is no next page). Anything that does not add
        up (a short or empty page while more are promised, a total that moves, a record seen twice, pages
        past any sane bound) raises PartialRead: a partial list is never taken for the whole.
        `first` continues a read whose first page `count` already fetched.

        `keep` (a lean read): the fields of a record the caller reads. Each page is then decoded and checked in
        one pass of msgspec's that keeps of each record only those and the fields checked (`_SHAPES`), and of
        the envelope only what paging reads; its body is kept (`PageRecords.text`) for the read cache as ever. A
        page that pass does not take whole (not UTF-8 throughout, not an object, a field of the wrong type,
        anything at all) is read the full way, with the same checks and the same errors: what is accepted is the
        same either way but for one thing the pass does not read, an integer of more than 4,300 digits in a field
        it skips (which the standard library refuses to read).

        While the caller takes in a page, the next ones are already being asked for, in a thread of its own,
        so that our work on the pages in hand and the server's on the next overlap: the thread sends each
        request as soon as the one before is answered, and the caller decodes and checks each answer as it
        takes it, once the next request is on the wire (a few milliseconds at most: `_Ahead.take`). Only pages
        the read is promised are asked for so: those the first page's TotalItems promises at the size served
        (without a total, only the next, once the page in hand says there is one, by HasNextPage or TotalPages),
        never more than AHEAD pages past the one the caller holds. A read that runs to its end sends exactly the
        requests, in the order, it always did. It is safe because:
        - one request is in flight at a time: the one loop (pacing, auth, the token grant and its
          renewal, throttle waits, retries, stats, trace, wait listener) holds the client's lock, so a
          request the caller sends between pages waits for the one ahead to finish, and follows it;
        - each request ahead is the same `request` call as ever, and what it raises (TransportError,
          AuthError, a StopRun...) or what decoding its answer raises (MalformedAnswer) reaches the caller,
          unchanged, when the caller comes back for that page: where the caller would have met it. The checks
          across pages (a moving total, a short page, a record seen twice, endless pages) are made here, in
          the caller's thread, as before;
        - its waits watch the stop flag and the deadline as every wait does (Ctrl-C ends them within a
          fraction of a second), so the caller, waiting for a page, waits no longer than it would have
          asking for it;
        - a caller that leaves the read (a break, an exception, Ctrl-C, the generator closed) drops the pages
          ahead: a request not sent is not sent, a wait is cut short, answers and errors are let go. The read
          is left once the thread has ended, except while its request is on the wire: Ctrl-C is not held up
          by it, and that one exchange ends on its own, within the request's time bounds, holding the client's
          lock (the next request waits for it). Against the service, this is at most AHEAD pages read that were
          not needed, by a caller that stopped early or a read that stopped at a page that did not add up.
        """
        with self._redacting():
            yield from self._pages(path, filters, first, _lean_decoder(path, keep))

    def _pages(self, path: str, filters: Mapping[str, Any] | None, first: Page | None,
               lean: msgspec.json.Decoder[Any] | None) -> Generator[list[dict[str, Any]], None, None]:
        page = first or self._page(path, filters, 1, self.page_size, lean)
        size = page.size
        total = _total(page.body)
        seen: set[int] = set()
        number = 1
        ahead: _Ahead | None = None
        try:
            while True:
                where = f"GET {self.base_url}{path} (page {number}, size {size})"
                ids = [record["Id"] for record in page.records]
                fresh = set(ids)
                if number > 1 and total is not None and len(seen) == total and fresh <= seen:
                    # The page asked for because the server promised one past its total brings nothing new (it
                    # is empty, or the last again): the list is whole.
                    self._log_read(path, filters, len(seen), number - 1, size)
                    return
                if len(fresh) < len(ids) or not seen.isdisjoint(fresh):
                    repeated = next(i for n, i in enumerate(ids) if i in seen or i in ids[:n])
                    raise PartialRead(f"{where} repeated record {repeated} of an earlier page: the server's "
                                      "paging moved or is ignored", method="GET", url=self.base_url + path)
                seen |= fresh
                following = self._following(path, page, where, number, size, total, len(seen))
                if isinstance(following, int):
                    if following < size:  # the server's cap; this read's alone unless more surely follow (a
                        # short first page with no total that does not say more may be the list's end)
                        sure = total is not None or _says_more(page.body) is True
                        size = self._learn_page_size(following, path) if sure else following
                    if ahead is None or number + 1 > ahead.last:  # (the size served is known from page 1 on)
                        if ahead is not None:
                            ahead.drop()
                        # The pages the first page's total promises (without one: the next, as it says).
                        last = max(number + 1, math.ceil(total / size)) if total is not None else number + 1
                        ahead = self._fetch_ahead(path, filters, number + 1, last, size)
                        ahead.start()
                yield page.records
                if isinstance(following, PartialRead):
                    raise following
                if following is None:
                    self._log_read(path, filters, len(seen), number, size)
                    return
                number += 1
                assert ahead is not None
                page = self._page_of(ahead.take(number), path, size, lean)  # dropped below if that fails or Ctrl-C
        finally:
            if ahead is not None:
                ahead.drop()

    def _following(self, path: str, page: Page, where: str, number: int, size: int, total: int | None,
                   seen: int) -> int | PartialRead | None:
        """What comes after page `number` of a read, decided before the page is handed over (so that the
        next can be fetched meanwhile) and acted on after, as when it was decided then: the size to ask
        the next page at, None when the list is whole, or the PartialRead the read ends with.

        The read ends when the server says there is no more: `total` (TotalItems of the first page) distinct
        records are in and neither HasNextPage nor TotalPages promises another page (a page promised past the
        total must come back empty; with neither of them, once the total is in); without a total, when HasNextPage
        or TotalPages says so, or, from a server that says nothing of what follows, at an empty page. A short first
        page may be the server's cap whatever HasNextPage says (it may be worked out from the size asked): the next
        is asked at the size served. A total that moves, a later short or empty page while more are promised, more
        records than the total, or pages past any sane bound do not add up.
        """
        url = self.base_url + path
        now_total = _total(page.body)
        if now_total != total:
            return PartialRead(f"{where}: TotalItems changed from {total} to {now_total} during the read",
                               method="GET", url=url)
        served = len(page.records)
        more = _says_more(page.body, number)
        silent = total is None and more is None  # nothing says whether more pages follow
        whole = False  # all `total` records are in, while the server promises another page
        if total is not None:
            if seen > total:
                return PartialRead(f"{where}: {seen} distinct records, more than TotalItems ({total})",
                                   method="GET", url=url)
            if seen == total:
                if served == 0 or not more:
                    return None
                whole = True  # the next page must be empty: a record on it means TotalItems was short
            # A first page that holds fewer than asked may show the server's cap (its HasNextPage and TotalPages
            # may be worked out from the size we asked, so they are not believed then); a total without either
            # is read to the total.
            elif served == 0 or (more is False and not (number == 1 and 0 < served < size)):
                return PartialRead(f"{where} ended the list at {seen:,} of the {total:,} records its "
                                   "TotalItems promised", method="GET", url=url)
        elif served == 0 or (more is False and not (number == 1 and 0 < served < size)):
            return None  # (a short first page saying no more may be a cap: the next page, at its size, tells)
        if served < size and not whole:
            if number == 1:
                # The server's page cap, learned from the first page; from a silent server, perhaps the list's
                # end (then the next page, asked at this size, is empty).
                size = served
            elif not silent:
                return PartialRead(f"{where} served {served} records while more were promised", method="GET",
                                   url=url)
            # (a later short page from a silent server is most likely the end: the next, at the same size, is empty)
        limit = math.ceil(total / size) + 1 if total is not None else MAX_PAGES
        if number >= limit:
            return PartialRead(f"{where}: the server keeps promising more pages; stopped after {number}",
                               method="GET", url=url)
        return size

    def _fetch_ahead(self, path: str, filters: Mapping[str, Any] | None, first: int, last: int,
                     size: int) -> _Ahead:
        """Pages `first` to `last` of a read, asked for now in a thread of their own (see `pages`)."""

        def fetch(number: int, gate: _Gate) -> httpx.Response:
            self._local.left = gate.left  # what ends this thread's waits when the read is left
            # What `drop` does not wait for, what sends nothing once it is left, and what tells the caller how far
            # the thread has got (its request on the wire, or a wait: `_Ahead.take`).
            self._local.gate = gate
            # Its turn is waited for watching `left` too: a read may be left by a thread holding the lock
            # (a generator finalized while that thread is inside the client), which then waits for this one.
            if not self._lock.acquire(blocking=False):
                gate.rest()  # another holds the client (its own request, say): the caller need not wait for this one
                while not self._lock.acquire(timeout=SLICE):
                    self._check_read_left()
            try:
                return self._list_request(path, filters, number, size)
            finally:
                self._lock.release()

        return _Ahead(fetch, first, last)

    def _log_read(self, path: str, filters: Mapping[str, Any] | None, records: int, pages: int, size: int) -> None:
        where = f"{path}?{'&'.join(f'{k}={v}' for k, v in filters.items())}" if filters else path
        log.info("read %s: %s record%s in %d page%s of up to %d", self._redact(where), f"{records:,}",
                 "" if records == 1 else "s", pages, "" if pages == 1 else "s", size)

    def _learn_page_size(self, served: int, path: str) -> int:
        """The server served fewer records than asked while promising more: that is its page cap."""
        if served < self.page_size:
            log.info("the server serves at most %d records a page (asked %d) on %s; using %d from now on",
                     served, self.page_size, path, served)
            self.page_size = served
        return served

    def count(self, path: str, filters: Mapping[str, Any] | None = None, *,
              keep: Collection[str] | None = None) -> tuple[int | None, Page]:
        """TotalItems of a listing (None when the server gives none: the first page alone cannot tell how many
        follow) and its first page, in one request; `pages(first=...)` continues it (with the same `keep`: see
        `pages`)."""
        page = self._page(path, filters, 1, self.page_size, _lean_decoder(path, keep))
        return _total(page.body), page

    def page(self, path: str, filters: Mapping[str, Any] | None = None, *, size: int, number: int = 1) -> Page:
        """One page of a listing at exactly the size asked, checked like every page (`doctor` measures so)."""
        return self._page(path, filters, number, size)

    def pages_for(self, count: int) -> int:
        """Requests a list of `count` records takes at the page size this server serves."""
        return max(1, math.ceil(count / self.page_size))

    def _page(self, path: str, filters: Mapping[str, Any] | None, number: int, size: int,
              lean: msgspec.json.Decoder[Any] | None = None) -> Page:
        """One page of a listing (`page`/`size`, never PageNumber/PageSize), checked before it is believed."""
        with self._redacting():
            return self._page_of(self._list_request(path, filters, number, size), path, size, lean)

    def _list_request(self, path: str, filters: Mapping[str, Any] | None, number: int, size: int) -> httpx.Response:
        return self.request("GET", path, params={**(filters or {}), "page": number, "size": size, "orderBy": "Id"})

    def _page_of(self, reply: httpx.Response, path: str, size: int,
                 lean: msgspec.json.Decoder[Any] | None = None) -> Page:
        """A list answer as a page, once it is checked: an envelope of records of the types we use (by `lean`,
        when it takes the answer whole: see `pages`)."""
        text = reply.content  # kept when UTF-8 (never a NUL byte; UTF-16 and UTF-32 always have some)
        kept = text if text[:1] == b"{" and b"\x00" not in text else None
        if lean is not None and kept is not None and "html" not in reply.headers.get("Content-Type", "").lower():
            try:
                if not kept.isascii():  # the pass skips what it does not keep unread: UTF-8 is checked first
                    kept.decode("utf-8")
                envelope = lean.decode(kept)
            except (msgspec.DecodeError, ValueError, RecursionError):
                envelope = None  # read the full way below, which says what is wrong
            if envelope is not None and _bad_count(envelope) is None:
                return Page(envelope, PageRecords(envelope["Records"], kept), size)
        where = f"GET {reply.request.url if reply.request else self.base_url + path}"
        body = _decode(reply, where)
        if not isinstance(body, dict):
            raise MalformedAnswer(f"{where} answered {_json_kind(body)}, not a list envelope", method="GET",
                                  url=self.base_url + path, status=reply.status_code)
        records = body.get("Records")
        if not isinstance(records, list):
            raise MalformedAnswer(f"{where} answered an envelope without a Records list", method="GET",
                                  url=self.base_url + path, status=reply.status_code)
        bad = _bad_count(body)
        if bad is not None:
            raise MalformedAnswer(f"{where} answered {bad} = {body[bad]!r}, not a count", method="GET",
                                  url=self.base_url + path, status=reply.status_code)
        _check_records(records, _collection(path), where, self.base_url + path)
        return Page(body, PageRecords(records, kept), size)

    def create(self, path: str, fields: Mapping[str, Any]) -> int:
        """POST a new record and return its Id; AmbiguousWrite if the answer was lost."""
        with self._redacting():
            return self._create(path, fields)

    def _create(self, path: str, fields: Mapping[str, Any]) -> int:
        reply = self.request("POST", path, body=dict(fields), retry_unsafe=False)
        body = _json_or_none(reply)
        value = body.get("Value") if isinstance(body, dict) else None
        new_id = value.get("Id") if isinstance(value, dict) else None
        if not isinstance(new_id, int):  # said done, without saying what it made: looked for, as a lost answer
            raise AmbiguousWrite(f"POST {self.base_url}{path} succeeded without a new Id in Value: the record may "
                                 "have been made", method="POST", url=self.base_url + path)
        return new_id

    def delete(self, path: str, record_id: int) -> bool:
        """DELETE a record; True if this call deleted it, False if it was already gone (404); AmbiguousWrite when
        the answer says neither (the caller looks the record up)."""
        try:
            self.request("DELETE", f"{path}/{record_id}")
        except NotFoundError:
            return False
        return True

    def get(self, path: str, record_id: int) -> dict[str, Any] | None:
        """The record with this Id (get-by-id: the bare record), or None when the server says there is none (404).
        Any other answer (an HTML page, cut-off JSON, not a record) is a MalformedAnswer: never taken for "gone"."""
        try:
            reply = self.request("GET", f"{path}/{record_id}")
        except NotFoundError:
            return None
        where = f"GET {reply.request.url}"
        body = _decode(reply, where)
        if not isinstance(body, dict) or type(body.get("Id")) is not int:
            raise MalformedAnswer(f"{where} answered {_json_kind(body)}, not a record with an integer Id",
                                  method="GET", url=self.base_url + path, status=reply.status_code)
        return body

    def get_many(self, path: str, ids: list[int], *, chunk: int = 100) -> list[dict[str, Any]]:
        """The records with these Ids that exist, by batch get (`?id=[1,2,3]`), checked like list records.

        A server that ignores the batch parameter answers a list envelope instead: only the records asked
        for are kept from it, and those it does not hold are looked up one by one.
        """
        with self._redacting():
            return self._get_many(path, ids, chunk)

    def _get_many(self, path: str, ids: list[int], chunk: int) -> list[dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), chunk):
            part = wanted[start:start + chunk]
            reply = self.request("GET", path, params={"id": "[" + ",".join(map(str, part)) + "]"})
            where = f"GET {reply.request.url}"
            body = _decode(reply, where)
            records = body.get("Records") if isinstance(body, dict) else body
            if not isinstance(records, list):
                raise MalformedAnswer(f"{where} answered {_json_kind(body)}, not a list of records", method="GET",
                                      url=self.base_url + path, status=reply.status_code)
            _check_records(records, _collection(path), where, self.base_url + path)
            found.update((r["Id"], r) for r in records if r["Id"] in part)
            if isinstance(body, dict):  # the batch parameter was ignored
                for record_id in part:
                    if record_id not in found and (one := self.get(path, record_id)) is not None:
                        found[record_id] = one
        return [found[i] for i in wanted if i in found]


def _collection(path: str) -> str:
    parts = [p for p in path.split("?")[0].split("/") if p]
    return parts[2] if len(parts) >= 3 else ""


def _is_collection(path: str) -> bool:
    return len([p for p in path.split("?")[0].split("/") if p]) == 3


def _json_or_none(reply: httpx.Response) -> Any:
    try:
        return reply.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None


def _message(reply: httpx.Response) -> str:
    body = _json_or_none(reply)
    if isinstance(body, dict):
        errors = body.get("Errors")
        if isinstance(errors, list) and errors:
            parts = [f"{e.get('PropertyName') or ''}: {e.get('Message')}".strip(": ") for e in errors
                     if isinstance(e, dict)]
            if parts:
                return "; ".join(parts)
        if body.get("Message"):
            return str(body["Message"])
    if isinstance(body, str):
        return body
    text = reply.text.strip()
    return excerpt(text, 200) if text else reply.reason_phrase


def _is_throttle(reply: httpx.Response) -> bool:
    """409 is documented as the throttle answer (empty body); a 409 with a command envelope is not."""
    if reply.status_code == 429:
        return True
    body = _json_or_none(reply)
    return not (isinstance(body, dict) and "WasSuccessful" in body)


def _retry_after(reply: httpx.Response, now: float) -> float:
    """Seconds a throttle answer asks to wait: `Retry-After` (seconds, or an HTTP date, against `now` in
    epoch seconds), else the body's `Wait N seconds` (N may be a decimal), else 1 s. What the server
    says is taken as said (0.5 is 0.5); the 1 s floor is only for an answer that says nothing."""
    header = reply.headers.get("Retry-After", "").strip()
    if header:
        seconds: float | None
        try:
            seconds = float(header)
        except ValueError:
            try:
                when = parsedate_to_datetime(header)
            except (TypeError, ValueError, IndexError, OverflowError):
                when = None
            if when is not None and when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = max(0.0, when.timestamp() - now) if when is not None else None
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
        log.info("unreadable Retry-After %r; reading the body instead", excerpt(header, 40))
    found = _WAIT_N.search(reply.text[:2000] if reply.content else "")
    if found:
        return float(found.group(1))
    return 1.0


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Fields a record must carry, with their types, before anything is planned on it.
_INT = (int,)
_TEXT = (str,)
_TEXT_OR_NONE = (str, type(None))
REQUIRED_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "coursecompletedlessons": (("CourseLessonId", _INT), ("CourseMemberId", _INT), ("CreatedOn", _TEXT),
                               ("UpdatedOn", _TEXT)),
    "courselessons": (("CourseId", _INT),),
    "coursemembers": (("CourseId", _INT), ("CoworkerId", _INT)),
    "courses": (),
    "coworkers": (),
}
OPTIONAL_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "coursecompletedlessons": (("SystemId", _TEXT_OR_NONE), ("UniqueId", _TEXT_OR_NONE)),
    "courselessons": (("Title", _TEXT_OR_NONE),),
    "coursemembers": (("CoworkerTeamNames", _TEXT_OR_NONE),),
    "courses": (("Title", _TEXT_OR_NONE),),
    "coworkers": (("Email", _TEXT_OR_NONE), ("TeamNames", _TEXT_OR_NONE)),
}


class _Absent:
    """A field the record does not carry, told apart from one that is null."""


_ABSENT = _Absent()
# Per collection, every field checked and the types it may have (`_Absent` where it may be left out), for
# the one tight pass that clears a whole page; only a page that fails it is gone through again, slowly,
# for the first problem to name.
_SHAPES: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    collection: (("Id", _INT), *REQUIRED_FIELDS[collection],
                 *((name, (*types, _Absent)) for name, types in OPTIONAL_FIELDS.get(collection, ())))
    for collection in REQUIRED_FIELDS}


def _records_fit(records: list[Any], collection: str) -> bool:
    """Whether every record passes `_check_records`, without saying which one does not."""
    shape = _SHAPES.get(collection, (("Id", _INT),))
    for record in records:
        if type(record) is not dict:
            return False
        get = record.get
        for name, types in shape:
            if type(get(name, _ABSENT)) not in types:
                return False
    return True


_COUNTS = ("TotalItems", "TotalPages", "CurrentPageSize")  # an envelope's counts: absent, null or a count
_PAGING = (*_COUNTS, "HasNextPage")  # what of an envelope paging reads


def _bad_count(body: dict[str, Any]) -> str | None:
    """The first of an envelope's counts that is neither absent, null nor a count (a bool is not one), or None."""
    return next((name for name in _COUNTS if (value := body.get(name)) is not None
                 and (type(value) is not int or value < 0)), None)


def _lean_decoder(path: str, keep: Collection[str] | None) -> msgspec.json.Decoder[Any] | None:
    """The decoder of a lean read of `path` that keeps the fields `keep` (see `pages`), or None for a full read."""
    return None if keep is None else _lean_decoder_of(_collection(path), tuple(sorted(keep)))


@functools.cache
def _lean_decoder_of(collection: str, keep: tuple[str, ...]) -> msgspec.json.Decoder[Any]:
    """An envelope whose `Records` are objects with the fields `_SHAPES` checks, of the types it allows (leaving
    out one it lets be absent), and the fields `keep` of any value; all else is skipped unread."""
    typed_dict: Any = TypedDict  # the types are made here, at run time, from the shapes
    union: Any = Union
    fields: dict[str, Any] = {}
    for name, types in _SHAPES.get(collection, (("Id", _INT),)):
        allowed = union[tuple(t for t in types if t is not _Absent)]
        fields[name] = NotRequired[allowed] if _Absent in types else Required[allowed]
    for name in keep:
        fields.setdefault(name, NotRequired[Any])
    record = typed_dict(f"Lean{ENTITY_NAMES.get(collection, collection)}", fields)
    envelope = typed_dict("LeanEnvelope", {"Records": Required[list.__class_getitem__(record)],
                                           **{name: NotRequired[Any] for name in _PAGING}})
    return msgspec.json.Decoder(envelope)


def _check_records(records: list[Any], collection: str, where: str, url: str) -> None:
    """Every record an object with an integer Id and the fields we use, of the types we use them as."""
    if _records_fit(records, collection):
        return
    required = REQUIRED_FIELDS.get(collection, ())
    optional = OPTIONAL_FIELDS.get(collection, ())
    for index, record in enumerate(records, start=1):
        problem = None
        if not isinstance(record, dict):
            problem = f"is {_json_kind(record)}, not a record"
        elif type(record.get("Id")) is not int:
            problem = f"has Id {record.get('Id')!r}, not an integer"
        else:
            for name, types in required:
                value = record.get(name)
                if name not in record or type(value) not in types:
                    problem = f"(Id {record['Id']}) has {name} = {value!r}" if name in record else \
                        f"(Id {record['Id']}) has no {name}"
                    break
            else:
                for name, types in optional:
                    if name in record and type(record[name]) not in types:
                        problem = f"(Id {record['Id']}) has {name} = {record[name]!r}"
                        break
        if problem is not None:
            raise MalformedAnswer(f"{where}: record {index} of the page {problem}", method="GET", url=url)


def _total(body: dict[str, Any]) -> int | None:
    value = body.get("TotalItems")
    return value if isinstance(value, int) else None


def _says_more(body: dict[str, Any], number: int = 1) -> bool | None:
    """Whether the list envelope of page `number` promises another page (HasNextPage, or TotalPages past it);
    None when it says nothing either way (neither field)."""
    pages = body.get("TotalPages")
    if "HasNextPage" not in body and not isinstance(pages, int):
        return None
    return body.get("HasNextPage") is True or (isinstance(pages, int) and number < pages)


def _answer_kind(reply: httpx.Response, body: Any) -> str:
    """What an answer that is not a JSON object was, in a few words (an HTML page with its title)."""
    text = reply.content
    if "html" in reply.headers.get("Content-Type", "").lower() or text.lstrip()[:1] == b"<":
        title = re.search(rb"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = excerpt(title.group(1).decode("utf-8", "replace").strip(), 80) if title else ""
        return f"an HTML page{' (' + repr(shown) + ')' if shown else ''}"
    if not text.strip():
        return "an empty body"
    if body is None and text.strip() != b"null":
        return "JSON cut short or not JSON"
    return _json_kind(body)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({excerpt(value, 60)!r})"
    return {list: "a list", dict: "an object", bool: "a boolean"}.get(type(value), "a number")


_JSON = msgspec.json.Decoder()


def parse_json(text: bytes) -> Any:
    """JSON text as values: by msgspec (twice as fast on a page of a thousand records), and by the standard
    library whenever msgspec refuses the text, so that what is read and how a failure is worded are the same
    either way (json also takes NaN, numbers past a float, UTF-16, a byte-order mark and lone surrogates).
    Not orjson: it reads an integer past 64 bits as a float, without a word. The read cache reads the bodies it
    keeps (`PageRecords.text`) with it too, so that they read back as a full read of the page reads them."""
    try:
        return _JSON.decode(text)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return json.loads(text)


def _decode(reply: httpx.Response, where: str) -> Any:
    """The JSON of an answer that must be JSON; anything else is a MalformedAnswer that says what came."""
    text = reply.content
    content_type = reply.headers.get("Content-Type", "")
    stripped = text.lstrip()[:1]
    if "html" in content_type.lower() or stripped == b"<":
        title = re.search(rb"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        shown = excerpt(title.group(1).decode("utf-8", "replace").strip(), 80) if title else ""
        raise MalformedAnswer(f"{where} answered an HTML page ({reply.status_code}"
                              f"{', ' + repr(shown) if shown else ''}), not JSON: the service may be under "
                              "maintenance; try again later", method=reply.request.method, url=str(reply.url),
                              status=reply.status_code)
    try:
        return parse_json(text)
    except UnicodeDecodeError:
        problem = "bytes that are not UTF-8 text"
    except RecursionError:
        problem = "JSON nested too deeply to read"
    except ValueError as e:
        cut = isinstance(e, json.JSONDecodeError) and e.pos >= len(text.rstrip()) - 1
        problem = (f"JSON cut short after {len(text):,} bytes" if cut else
                   f"invalid JSON ({e.__class__.__name__}: {str(e)[:80]})")
    raise MalformedAnswer(f"{where} answered {problem} ({reply.status_code})", method=reply.request.method,
                          url=str(reply.url), status=reply.status_code)
